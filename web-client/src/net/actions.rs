//! The user's message actions (XEP-0308, 0424, 0444, 0461, 0333) and file uploads
//! (XEP-0363), on the live session. The protocol is the core's; here are the browser's
//! parts: the PUT with its progress, and the signals the views read.

use std::cell::RefCell;
use std::collections::BTreeMap;

use jabberwock_client_core::actions::last_correctable;
use jabberwock_client_core::chat::ChatMessage;
use jabberwock_client_core::muc::{Effect, Room, Rooms};
use jabberwock_client_core::upload::{Slot, UploadEvent};
use jabberwock_client_core::{Client, Event};
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use jabberwock_client_core::tabs::Command;

use super::{shared, with_session, Session};
use crate::browser;
use crate::state::Upload;

/// Runs a core action on the session and hands its events over; false when nothing was
/// sent (offline, or not allowed).
fn act(f: impl FnOnce(&mut Session, i64) -> Vec<Event>) -> bool {
    with_session(|s| {
        let events = f(s, browser::now_ms());
        let sent = !events.is_empty();
        s.handle(events);
        sent
    })
    .unwrap_or(false)
}

/// Whether `conv` is a room of ours: actions there go through the room (the XEPs name
/// a room's messages by the room's ids).
pub(super) fn is_room(s: &Session, conv: &str) -> bool {
    s.client.rooms.get(conv).is_some()
}

/// [`act`] with the room's version of an action when `conv` is a room.
fn act_in(conv: &str, room: impl FnOnce(&mut Rooms, i64) -> Vec<Effect>, chat: impl FnOnce(&mut Client, i64) -> Vec<Event>) -> bool {
    act(|s, now| if is_room(s, conv) { s.client.write_in_room(|rooms| room(rooms, now)) } else { chat(&mut s.client, now) })
}

pub fn correct_last(conv: &str, id: &str, text: &str) -> bool {
    if shared::forward(Command::CorrectLast { conv: conv.to_owned(), id: id.to_owned(), text: text.to_owned() }) {
        return true;
    }
    act_in(conv, |r, now| r.correct(conv, id, text, now), |c, now| c.correct_last(conv, id, text, now))
}

pub fn retract(conv: &str, id: &str) -> bool {
    if shared::forward(Command::Retract { conv: conv.to_owned(), id: id.to_owned() }) {
        return true;
    }
    act_in(conv, |r, now| r.retract(conv, id, now), |c, now| c.retract(conv, id, now))
}

pub fn toggle_reaction(conv: &str, id: &str, emoji: &str) -> bool {
    if shared::forward(Command::ToggleReaction { conv: conv.to_owned(), id: id.to_owned(), emoji: emoji.to_owned() }) {
        return true;
    }
    act_in(conv, |r, now| r.toggle_reaction(conv, id, emoji, now), |c, now| c.toggle_reaction(conv, id, emoji, now))
}

pub fn send_reply(conv: &str, reply_to: &str, text: &str) -> bool {
    if shared::forward(Command::SendReply { conv: conv.to_owned(), reply_to: reply_to.to_owned(), text: text.to_owned() }) {
        return true;
    }
    act_in(conv, |r, now| r.send_reply(conv, reply_to, text, now), |c, now| c.send_reply(conv, reply_to, text, now))
}

/// XEP-0425: as a moderator of the room `conv`, removes the message `id` for everyone.
pub fn moderate(conv: &str, id: &str) -> bool {
    if shared::forward(Command::Moderate { conv: conv.to_owned(), id: id.to_owned() }) {
        return true;
    }
    act_in(conv, |r, _| r.moderate(conv, id, None), |_, _| Vec::new())
}

/// Our last message in `conv` that may still be corrected: its id and text.
pub fn correctable(conv: &str) -> Option<(String, String)> {
    let in_room = |room: &Room| room.correctable().map(|m| (Room::key_of(m).to_owned(), m.body.clone()));
    let in_chat = |m: &ChatMessage| (m.id.clone(), m.body.clone());
    // A tab has the open conversation as the worker showed it.
    let shown = shared::shown(|state| {
        if state.active.get_untracked().as_deref() != Some(conv) {
            return None;
        }
        match untrack(|| state.open_room()).filter(|r| r.jid == conv).as_ref().map(in_room) {
            Some(found) => found,
            None => state.messages.with_untracked(|msgs| last_correctable(msgs).map(in_chat)),
        }
    });
    shown.unwrap_or_else(|| {
        with_session(|s| match s.client.rooms.get(conv) {
            Some(room) => in_room(room),
            None => s.client.correctable(conv).map(in_chat),
        })
        .flatten()
    })
}

impl Session {
    /// XEP-0333: the conversations on screen in a shown tab: say we displayed their last
    /// message (one open only in a hidden tab is not seen).
    pub(super) fn mark_displayed(&mut self) {
        for conv in shared::reading() {
            let events = self.client.mark_displayed(&conv);
            self.handle(events);
        }
    }

    pub(super) fn on_upload(&mut self, event: UploadEvent) {
        match event {
            UploadEvent::Service(_) => {}
            UploadEvent::Slot { request, slot } => {
                let file = FILES.with(|f| f.borrow_mut().remove(&request));
                if let Some((conv, file)) = file {
                    put(self.state.uploads, request, conv, file, slot);
                }
            }
            UploadEvent::Failed { request, reason } => {
                FILES.with(|f| f.borrow_mut().remove(&request));
                set_upload(self.state.uploads, request, |u| u.error = Some(format!("Upload failed: {reason}")));
            }
        }
    }
}

thread_local! {
    /// The files waiting for their slot, by upload request, with their conversation.
    static FILES: RefCell<BTreeMap<u64, (String, web_sys::File)>> = const { RefCell::new(BTreeMap::new()) };
}

fn set_upload(uploads: RwSignal<Vec<Upload>>, request: u64, f: impl FnOnce(&mut Upload)) {
    uploads.update(|all| {
        if let Some(u) = all.iter_mut().find(|u| u.request == request) {
            f(u);
        }
    });
}

/// Sends `file` to the open conversation `conv`: asks for a slot (or says at once why
/// not), then PUTs it with progress, then sends the link.
pub fn upload(conv: &str, file: web_sys::File) {
    if shared::forward_upload(conv, &file) {
        return;
    }
    let size = file.size() as u64;
    let name = file.name();
    let kind = file.type_();
    let Some((uploads, asked)) = with_session(|s| {
        s.client.set_secure_page(browser::origin().starts_with("https:"));
        let asked = s.client.request_upload(&name, size, Some(&kind));
        (s.state.uploads, asked.map(|(request, events)| {
            s.handle(events);
            request
        }))
    }) else {
        return;
    };
    match asked {
        Ok(request) => {
            FILES.with(|f| f.borrow_mut().insert(request, (conv.to_owned(), file)));
            uploads.update(|u| u.push(Upload { request, name, size, sent: 0, error: None }));
        }
        Err(reason) => {
            // Not a request: a number no request has, so the entry can be dismissed.
            let request = u64::MAX - uploads.with_untracked(Vec::len) as u64;
            uploads.update(|u| u.push(Upload { request, name, size, sent: 0, error: Some(reason) }));
        }
    }
}

pub fn dismiss_upload(request: u64) {
    if shared::forward(Command::DismissUpload { request }) {
        return;
    }
    with_session(|s| s.state.uploads.update(|u| u.retain(|x| x.request != request)));
}

/// The PUT (XMLHttpRequest, for its upload progress events), then the message.
fn put(uploads: RwSignal<Vec<Upload>>, request: u64, conv: String, file: web_sys::File, slot: Slot) {
    let fail = move |why: String| set_upload(uploads, request, |u| u.error = Some(format!("Upload failed: {why}")));
    let Ok(xhr) = web_sys::XmlHttpRequest::new() else { return fail("the browser refused".into()) };
    if xhr.open("PUT", &slot.put).is_err() {
        return fail("the upload address is not usable".into());
    }
    for (name, value) in &slot.headers {
        let _ = xhr.set_request_header(name, value);
    }
    if !file.type_().is_empty() {
        let _ = xhr.set_request_header("Content-Type", &file.type_());
    }
    let on_progress = Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
        set_upload(uploads, request, |u| u.sent = e.loaded() as u64);
    });
    if let Ok(upload) = xhr.upload() {
        upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    }
    on_progress.forget();
    let done_xhr = xhr.clone();
    let get = slot.get.clone();
    let on_done = Closure::once(move || {
        let status = done_xhr.status().unwrap_or(0);
        if (200..300).contains(&status) {
            uploads.update(|u| u.retain(|x| x.request != request));
            act_in(&conv, |r, now| r.send_file(&conv, &get, now), |c, now| c.send_file(&conv, &get, now));
        } else if status == 0 {
            fail("the upload service could not be reached".into());
        } else {
            fail(format!("the upload service answered {status}"));
        }
    });
    xhr.set_onloadend(Some(on_done.as_ref().unchecked_ref()));
    on_done.forget();
    if xhr.send_with_opt_blob(Some(&file)).is_err() {
        fail("the file could not be sent".into());
    }
}
