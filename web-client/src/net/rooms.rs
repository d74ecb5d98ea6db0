//! Group chats and bookmarks on the live session: the actions the room views call, the
//! signals they read, mention notifications, and the XEP-0410 self-ping timer.

use jabberwock_client_core::bookmarks::Bookmark;
use jabberwock_client_core::form::Form;
use jabberwock_client_core::muc::{check_join, Affiliation, Effect, Role, RoomSettings, RoomState, Rooms};
use jabberwock_client_core::PresenceInfo;
use leptos::prelude::*;

use jabberwock_client_core::tabs::Command;

use super::{shared, with_session, Session};
use crate::state::RoomRow;
use crate::{browser, settings};

/// How often each joined room is asked whether it still has us.
const SELF_PING_MS: i32 = 5 * 60 * 1000;

impl Session {
    /// Writes the room signals: the sidebar's list (bookmarks and the rooms we are in),
    /// the invitations and what room discovery found; and each tab's open room.
    pub(super) fn refresh_rooms(&self) {
        let rooms = &self.client.rooms;
        let bookmarks = &self.client.bookmarks;
        let mut rows: Vec<RoomRow> = rooms
            .all()
            .map(|r| {
                let b = bookmarks.get(&r.jid);
                RoomRow {
                    jid: r.jid.clone(),
                    name: b.and_then(|b| b.name.clone()).or_else(|| r.name.clone()).unwrap_or_else(|| local(&r.jid)),
                    joined: r.is_joined(),
                    problem: match &r.state {
                        RoomState::Left(why) => Some(why.clone()),
                        _ => None,
                    },
                    unread: r.unread,
                    mentions: r.mentions,
                    bookmarked: b.is_some(),
                }
            })
            .collect();
        for b in bookmarks.all().filter(|b| rooms.get(&b.jid).is_none()) {
            rows.push(RoomRow {
                jid: b.jid.clone(),
                name: b.name.clone().unwrap_or_else(|| local(&b.jid)),
                joined: false,
                problem: None,
                unread: 0,
                mentions: 0,
                bookmarked: true,
            });
        }
        rows.sort_by_key(|r| r.name.to_lowercase());
        let st = self.state;
        st.rooms.set(rows);
        st.invitations.set(rooms.invitations.clone());
        st.services.set(rooms.services.clone());
        st.public_rooms.set(rooms.public.values().flatten().cloned().collect());
        // The open rooms and their bookmarks.
        self.refresh_views();
    }

    /// A desktop notification for a message that names us, when asked for and the tab is
    /// hidden (as for one-to-one messages).
    pub(super) fn notify_mention(&self, room: &str) {
        if browser::document_visible() || !settings::notifications() || !browser::notifications_allowed() {
            return;
        }
        let Some(msg) = self.client.rooms.get(room).and_then(|r| r.messages.iter().rev().find(|m| m.mention)) else { return };
        let body: String = msg.body.chars().take(140).collect();
        super::show_notification(&format!("{} in {}", msg.nick, local(room)), &body, room);
    }

    /// Online: the self-ping timer runs for as long as this connection does.
    pub(super) fn arm_self_ping(&mut self) {
        let generation = self.generation;
        browser::set_timeout(SELF_PING_MS, move || {
            with_session(|s| {
                if s.generation != generation {
                    return;
                }
                let ev = s.client.room_action(|rooms, _| rooms.self_ping());
                s.handle(ev);
                s.arm_self_ping();
            });
        });
    }

    /// Opens a room (or the open room was joined): its newest history the first time.
    pub(super) fn open_room(&mut self, room: &str) {
        if self.client.rooms.get(room).is_some_and(|r| r.is_joined() && !r.history.started) {
            let ev = self.client.room_action(|rooms, _| rooms.load_history(room));
            self.handle(ev);
        }
    }
}

fn local(jid: &str) -> String {
    jabberwock_client_core::address::local(jid).unwrap_or(jid).to_owned()
}

/// Runs a room action on the session and refreshes what the views show.
fn room_do(action: impl FnOnce(&mut Rooms, &PresenceInfo) -> Vec<Effect>) {
    with_session(|s| {
        let ev = s.client.room_action(action);
        s.handle(ev);
        s.refresh_rooms();
    });
}

/// [`room_do`] for an action that may refuse what the user typed: `Err` is the message.
fn room_try(action: impl FnOnce(&mut Rooms, &PresenceInfo) -> Result<Vec<Effect>, String>) -> Result<(), String> {
    with_session(|s| {
        let mut result = Ok(());
        let ev = s.client.room_action(|rooms, own| {
            action(rooms, own).unwrap_or_else(|e| {
                result = Err(e);
                Vec::new()
            })
        });
        s.handle(ev);
        s.refresh_rooms();
        result
    })
    .unwrap_or_else(|| Err("Not connected".into()))
}

/// The nick to offer: the account's local part.
pub fn default_nick() -> String {
    let shown = shared::shown(|state| state.me.get_untracked().map(|me| local(&me)));
    shown.unwrap_or_else(|| with_session(|s| s.client.account().local.clone())).unwrap_or_default()
}

pub fn join(room: &str, nick: &str, password: &str) -> Result<(), String> {
    check_join(room, nick)?;
    if shared::forward(Command::Join { room: room.to_owned(), nick: nick.to_owned(), password: password.to_owned() }) {
        return Ok(());
    }
    room_try(|rooms, own| rooms.join(room, nick, Some(password), own))
}

pub fn create(room: &str, nick: &str, settings: RoomSettings) -> Result<(), String> {
    check_join(room, nick)?;
    if shared::forward(Command::CreateRoom { room: room.to_owned(), nick: nick.to_owned(), settings: settings.clone() }) {
        return Ok(());
    }
    room_try(|rooms, own| rooms.create(room, nick, settings, own))
}

/// Leaves the room and closes it.
pub fn leave(room: &str) {
    if shared::forward(Command::Leave { room: room.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.leave(room));
    super::close_everywhere(room);
}

pub fn change_nick(room: &str, nick: &str) {
    if shared::forward(Command::ChangeNick { room: room.to_owned(), nick: nick.to_owned() }) {
        return;
    }
    room_do(|rooms, own| rooms.change_nick(room, nick, own));
}

pub fn set_subject(room: &str, subject: &str) {
    if shared::forward(Command::SetSubject { room: room.to_owned(), subject: subject.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.set_subject(room, subject));
}

pub fn invite(room: &str, jid: &str) -> Result<(), String> {
    jabberwock_client_core::address::parse_bare(jid).map_err(|e| e.to_string())?;
    if shared::forward(Command::Invite { room: room.to_owned(), jid: jid.to_owned() }) {
        return Ok(());
    }
    room_try(|rooms, _| rooms.invite(room, jid, None))
}

pub fn set_role(room: &str, nick: &str, role: Role) {
    if shared::forward(Command::SetRole { room: room.to_owned(), nick: nick.to_owned(), role }) {
        return;
    }
    room_do(|rooms, _| rooms.set_role(room, nick, role, None));
}

pub fn set_affiliation(room: &str, nick: &str, affiliation: Affiliation) {
    if shared::forward(Command::SetAffiliation { room: room.to_owned(), nick: nick.to_owned(), affiliation }) {
        return;
    }
    room_do(|rooms, _| rooms.set_affiliation(room, nick, affiliation, None));
}

pub fn request_config(room: &str) {
    if shared::forward(Command::RequestConfig { room: room.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.request_config(room));
}

/// Submits the owner's edits (`None`: cancels).
pub fn submit_config(room: &str, form: Option<Form>) {
    if shared::forward(Command::SubmitConfig { room: room.to_owned(), form: form.clone() }) {
        return;
    }
    room_do(|rooms, _| rooms.submit_config(room, form.as_ref()));
}

pub fn destroy(room: &str) {
    if shared::forward(Command::Destroy { room: room.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.destroy(room, None));
}

pub fn load_older(room: &str) {
    if shared::forward(Command::RoomLoadOlder { room: room.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.load_history(room));
}

/// Finds the server's group chat services (once), then lists their public rooms.
pub fn discover() {
    if shared::forward(Command::DiscoverRooms) {
        return;
    }
    let domain = with_session(|s| s.client.account().domain.clone()).unwrap_or_default();
    room_do(|rooms, _| rooms.discover(&domain));
}

pub fn browse(service: &str) {
    if shared::forward(Command::BrowseRooms { service: service.to_owned() }) {
        return;
    }
    room_do(|rooms, _| rooms.browse(service));
}

/// Bookmarks the room (with autojoin, and the nick we use in it), or removes its bookmark.
pub fn set_bookmarked(room: &str, on: bool) {
    if shared::forward(Command::SetBookmarked { room: room.to_owned(), on }) {
        return;
    }
    with_session(|s| {
        let nick = s.client.rooms.get(room).map(|r| r.nick.clone());
        let ev = s.client.bookmark_action(|b| {
            if on {
                b.save(Bookmark { jid: room.to_owned(), nick, autojoin: true, ..Default::default() })
            } else {
                b.remove(room)
            }
        });
        s.handle(ev);
        s.refresh_rooms();
    });
}

/// Accepts an invitation: joins with the nick given.
pub fn accept_invitation(room: &str, nick: &str) -> Result<(), String> {
    check_join(room, nick)?;
    if shared::forward(Command::AcceptInvitation { room: room.to_owned(), nick: nick.to_owned() }) {
        return Ok(());
    }
    let invitation = with_session(|s| s.client.rooms.take_invitation(room)).flatten();
    let password = invitation.and_then(|i| i.password).unwrap_or_default();
    join(room, nick, &password)?;
    super::open_chat(Some(room.to_owned()));
    Ok(())
}

pub fn decline_invitation(room: &str) {
    if shared::forward(Command::DeclineInvitation { room: room.to_owned() }) {
        return;
    }
    with_session(|s| {
        s.client.rooms.take_invitation(room);
        s.refresh_rooms();
    });
}
