//! What the views show, as signals. Only plain data lives here; the connection itself is
//! in [`crate::net`], which writes these signals as events arrive.

use jabberwock_client_core::bookmarks::Bookmark;
use jabberwock_client_core::chat::ChatMessage;
use jabberwock_client_core::muc::{Invitation, Occupant, PublicRoom, Room, RoomMessage};
use jabberwock_client_core::splice;
use jabberwock_client_core::tabs::ToWorker;
use jabberwock_client_core::{ContactView, Show};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The connection status that is always on screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    SignedOut,
    Discovering,
    Connecting,
    Authenticating,
    Online,
    /// Waiting to try again; seconds until the next attempt.
    Reconnecting(u32),
    /// The browser reports no network; we try again when it is back.
    Offline,
}

impl Status {
    pub fn label(&self) -> String {
        match self {
            Status::SignedOut => "Signed out".into(),
            Status::Discovering => "Finding server…".into(),
            Status::Connecting => "Connecting…".into(),
            Status::Authenticating => "Signing in…".into(),
            Status::Online => "Online".into(),
            Status::Reconnecting(0) => "Reconnecting…".into(),
            Status::Reconnecting(s) => format!("Reconnecting in {s}s"),
            Status::Offline => "Offline".into(),
        }
    }

    /// For styling: `ok`, `busy` or `down`.
    pub fn tone(&self) -> &'static str {
        match self {
            Status::Online => "ok",
            Status::Discovering | Status::Connecting | Status::Authenticating | Status::Reconnecting(_) => "busy",
            Status::SignedOut | Status::Offline => "down",
        }
    }

    pub fn busy(&self) -> bool {
        self.tone() == "busy"
    }
}

/// One roster row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub contact: ContactView,
    pub unread: u32,
    pub preview: Option<String>,
    /// They are typing to us (XEP-0085).
    pub typing: bool,
}

/// One line of the sidebar's room list: a room we are in, or a bookmarked one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomRow {
    pub jid: String,
    pub name: String,
    pub joined: bool,
    /// Why we are not in it (refused, kicked, destroyed …).
    pub problem: Option<String>,
    pub unread: u32,
    pub mentions: u32,
    pub bookmarked: bool,
}

impl RoomRow {
    /// Changes whenever anything the line shows changes.
    pub fn key(&self) -> String {
        format!("{}:{}:{}:{:?}:{}:{}:{}", self.jid, self.name, self.joined, self.problem, self.unread, self.mentions, self.bookmarked)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toast {
    pub id: u64,
    pub text: String,
}

#[derive(Clone, Copy)]
pub struct AppState {
    pub status: RwSignal<Status>,
    /// `websocket` or `bosh` while a session exists.
    pub transport: RwSignal<&'static str>,
    /// Shown on the login form.
    pub login_error: RwSignal<Option<String>>,
    /// The address the login form starts with, when known better than the last one typed
    /// (the account of a session that could not be resumed).
    pub prefill: RwSignal<Option<String>>,
    /// Our bare JID while a session exists (online or reconnecting).
    pub me: RwSignal<Option<String>>,
    pub own_show: RwSignal<Show>,
    pub own_status: RwSignal<String>,
    pub rows: RwSignal<Vec<Row>>,
    pub requests: RwSignal<Vec<(String, Option<String>)>>,
    /// Pictures by bare JID, as `data:` URLs (ours included).
    pub avatars: RwSignal<std::collections::HashMap<String, std::sync::Arc<str>>>,
    /// The addresses we blocked (XEP-0191); `None` when the server has no blocking.
    pub blocked: RwSignal<Option<Vec<String>>>,
    pub roster_loaded: RwSignal<bool>,
    pub active: RwSignal<Option<String>>,
    pub messages: RwSignal<Vec<ChatMessage>>,
    /// The oldest message that was unread when the conversation opened: a "new messages"
    /// line goes above it.
    pub first_unread: RwSignal<Option<String>>,
    /// The active conversation's archive: (loading, more to load).
    pub history: RwSignal<(bool, bool)>,
    pub total_unread: RwSignal<u32>,
    pub toasts: RwSignal<Vec<Toast>>,
    pub rooms: RwSignal<Vec<RoomRow>>,
    /// The open room, when the active conversation is one, without its messages and
    /// occupants: those are the two lists below, which the worker sends as changes (the
    /// views read the three together, [`AppState::open_room`]).
    pub room: RwSignal<Option<Room>>,
    pub room_messages: RwSignal<Vec<RoomMessage>>,
    /// In the order of their nicks.
    pub occupants: RwSignal<Vec<Occupant>>,
    /// The open room's bookmark.
    pub bookmarked: RwSignal<Option<Bookmark>>,
    pub invitations: RwSignal<Vec<Invitation>>,
    /// Group chat services found on our server, and the public rooms listed.
    pub services: RwSignal<Vec<String>>,
    pub public_rooms: RwSignal<Vec<PublicRoom>>,
    /// Files being uploaded (XEP-0363), or whose upload failed.
    pub uploads: RwSignal<Vec<Upload>>,
}

/// A file on its way to the upload service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub request: u64,
    pub name: String,
    pub size: u64,
    /// Bytes sent so far.
    pub sent: u64,
    pub error: Option<String>,
}

impl AppState {
    pub fn new() -> Self {
        AppState {
            status: RwSignal::new(Status::SignedOut),
            transport: RwSignal::new(""),
            login_error: RwSignal::new(None),
            prefill: RwSignal::new(None),
            me: RwSignal::new(None),
            own_show: RwSignal::new(Show::Online),
            own_status: RwSignal::new(String::new()),
            rows: RwSignal::new(Vec::new()),
            requests: RwSignal::new(Vec::new()),
            blocked: RwSignal::new(None),
            avatars: RwSignal::new(Default::default()),
            roster_loaded: RwSignal::new(false),
            active: RwSignal::new(None),
            messages: RwSignal::new(Vec::new()),
            first_unread: RwSignal::new(None),
            history: RwSignal::new((false, false)),
            total_unread: RwSignal::new(0),
            toasts: RwSignal::new(Vec::new()),
            rooms: RwSignal::new(Vec::new()),
            room: RwSignal::new(None),
            room_messages: RwSignal::new(Vec::new()),
            occupants: RwSignal::new(Vec::new()),
            bookmarked: RwSignal::new(None),
            invitations: RwSignal::new(Vec::new()),
            services: RwSignal::new(Vec::new()),
            public_rooms: RwSignal::new(Vec::new()),
            uploads: RwSignal::new(Vec::new()),
        }
    }

    /// The open room with its messages and occupants (tracked, as the views read it).
    pub fn open_room(&self) -> Option<Room> {
        self.room.get().map(|room| room.with_lists(self.room_messages.get(), self.occupants.get()))
    }

    pub fn toast(&self, text: impl Into<String>) {
        let text = text.into();
        let id = js_sys::Date::now() as u64 ^ (self.toasts.with_untracked(Vec::len) as u64);
        self.toasts.update(|t| {
            t.push(Toast { id, text });
            if t.len() > 4 {
                t.remove(0);
            }
        });
        let toasts = self.toasts;
        crate::browser::set_timeout(8000, move || toasts.update(|t| t.retain(|x| x.id != id)));
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// Lists every signal of [`AppState`] but `transport` (a `&'static str`, handled by hand),
/// for a shared session (`net::shared`): the session's signals, which the worker's own
/// copies hold and every tab mirrors, then those of the open conversation, which belong to
/// the tab (the worker sends each tab the view of its own; see `net::shared`). A list
/// (`session_lists`, `per_tab_lists`) goes whole to a tab that joins, then as changes
/// (see `jabberwock_client_core::splice`), so that one new contact row or message costs
/// one, not the list.
macro_rules! mirrored_signals {
    (
        session: $($field:ident),* ;
        session_lists: $($list:ident),* ;
        per_tab: $($tab_field:ident),* ;
        per_tab_lists: $($tab_list:ident),* $(,)?
    ) => {
        impl AppState {
            /// Every session signal's value, by name, as JSON: what a tab that joins is sent.
            pub fn snapshot(&self) -> Vec<(&'static str, String)> {
                let mut all = vec![("transport", json(&self.transport.get_untracked()))];
                $(all.push((stringify!($field), self.$field.with_untracked(json)));)*
                $(all.push((stringify!($list), self.$list.with_untracked(json)));)*
                all
            }

            /// Calls `changed` with a session signal's name and value whenever one changes,
            /// and `spliced` with a list's name and its change (the `len` items it had, the
            /// `head` and `tail` kept, and the items between as JSON).
            pub fn watch(&self, changed: fn(&'static str, String), spliced: fn(&'static str, usize, usize, usize, String)) {
                let transport = self.transport;
                Effect::new(move |_| changed("transport", json(&transport.get())));
                $(
                    let signal = self.$field;
                    Effect::new(move |_| changed(stringify!($field), signal.with(json)));
                )*
                $(
                    let signal = self.$list;
                    // What the tabs have: the value the last change was made against.
                    let mut sent = signal.get_untracked();
                    Effect::new(move |_| {
                        signal.with(|now| {
                            if let Some((len, head, tail, run)) = splice::advance(&mut sent, now) {
                                spliced(stringify!($list), len, head, tail, json(run));
                            }
                        })
                    });
                )*
            }

            /// Sets the signal named `field` to `value`; false for an unknown name or a value
            /// of the wrong shape.
            pub fn apply(&self, field: &str, value: &str) -> bool {
                match field {
                    "transport" => {
                        self.transport.set(match value {
                            "\"websocket\"" => "websocket",
                            "\"bosh\"" => "bosh",
                            _ => "",
                        });
                        true
                    }
                    $(stringify!($field) => serde_json::from_str(value).map(|v| self.$field.set(v)).is_ok(),)*
                    $(stringify!($list) => serde_json::from_str(value).map(|v| self.$list.set(v)).is_ok(),)*
                    $(stringify!($tab_field) => serde_json::from_str(value).map(|v| self.$tab_field.set(v)).is_ok(),)*
                    $(stringify!($tab_list) => serde_json::from_str(value).map(|v| self.$tab_list.set(v)).is_ok(),)*
                    _ => false,
                }
            }

            /// Changes the list signal named `field` as the worker's splice says; when it
            /// does not fit what the list holds, the message asking for all of it.
            pub fn splice(&self, field: &str, len: usize, head: usize, tail: usize, items: &str) -> Option<ToWorker> {
                match field {
                    $(stringify!($list) => receive_splice(self.$list, field, len, head, tail, items),)*
                    $(stringify!($tab_list) => receive_splice(self.$tab_list, field, len, head, tail, items),)*
                    _ => None,
                }
            }
        }
    };
}

/// A change to a list signal, as the worker sent it (the views are not woken when it
/// does not fit).
fn receive_splice<T>(signal: RwSignal<Vec<T>>, field: &str, len: usize, head: usize, tail: usize, items: &str) -> Option<ToWorker>
where
    T: for<'de> Deserialize<'de> + Send + Sync + 'static,
{
    let mut answer = None;
    signal.maybe_update(|list| {
        answer = splice::receive(field, list, len, head, tail, items);
        answer.is_none()
    });
    answer
}

/// A value as the worker sends it to its tabs.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

mirrored_signals!(
    session: status, login_error, prefill, me, own_show, own_status, requests, avatars, blocked, roster_loaded, total_unread, toasts,
        rooms, invitations, services, public_rooms, uploads;
    session_lists: rows;
    per_tab: active, first_unread, history, room, bookmarked;
    per_tab_lists: messages, room_messages, occupants,
);
