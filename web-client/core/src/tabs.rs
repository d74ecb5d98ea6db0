//! What the tabs of one browser and the shared worker that holds their XMPP session say to
//! each other (see the web client's README, *One connection for all tabs*).
//!
//! A tab sends [`ToWorker`]: the user's actions as [`Command`]s, whether it is shown, and
//! what it keeps for the session in `localStorage`, which a worker cannot reach. The
//! worker sends [`ToTab`]: each view signal that changed, values to keep, the latest entry
//! for resuming after a reload, and notifications to show. Both go as JSON text over the
//! worker's `MessagePort`s; a message that does not parse is ignored (it can only come from
//! another release of the page, which uses another worker, or from a bug).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::form::Form;
use crate::muc::{Affiliation, Role, RoomSettings};
use crate::stanza::Show;

/// The largest message either side accepts: a tab's first message carries what the origin
/// keeps in `localStorage` (browsers give it about 5 MB).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// A user action, as the views call it on the session (`src/net` in the web client).
// Externally tagged, as all three: an internally tagged enum costs the WebAssembly a
// buffering deserializer per type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Sign in (or, `create`, create the account first, XEP-0077) at the endpoints the page
    /// found (`websocket URL` or `bosh URL`, in order).
    SignIn { address: String, password: String, endpoints: Vec<String>, create: bool },
    Logout,
    OpenChat { with: Option<String> },
    LoadOlder,
    Typing { to: String, typing: bool },
    SendMessage { to: String, body: String },
    ReconnectNow,
    AddContact { jid: String, name: String },
    Accept { jid: String },
    Deny { jid: String },
    RemoveContact { jid: String },
    /// Our new picture, already made a small JPEG by the tab (a worker has no canvas).
    SetAvatar { data_url: String },
    ChangePassword { password: String, again: String },
    Block { jid: String, block: bool },
    UpdateContact { jid: String, name: String, groups: Vec<String> },
    SetPresence { show: Show, status: String },
    NetworkOnline,
    NetworkOffline,
    UserActive,
    IdleSettingChanged,
    CorrectLast { conv: String, id: String, text: String },
    Retract { conv: String, id: String },
    ToggleReaction { conv: String, id: String, emoji: String },
    SendReply { conv: String, reply_to: String, text: String },
    /// XEP-0425, in a room we moderate.
    Moderate { conv: String, id: String },
    /// A file to upload to `conv`; the file itself travels next to the message.
    Upload { conv: String },
    DismissUpload { request: u64 },
    Join { room: String, nick: String, password: String },
    CreateRoom { room: String, nick: String, settings: RoomSettings },
    Leave { room: String },
    ChangeNick { room: String, nick: String },
    SetSubject { room: String, subject: String },
    Invite { room: String, jid: String },
    SetRole { room: String, nick: String, role: Role },
    SetAffiliation { room: String, nick: String, affiliation: Affiliation },
    RequestConfig { room: String },
    SubmitConfig { room: String, form: Option<Form> },
    Destroy { room: String },
    RoomLoadOlder { room: String },
    DiscoverRooms,
    BrowseRooms { service: String },
    SetBookmarked { room: String, on: bool },
    AcceptInvitation { room: String, nick: String },
    DeclineInvitation { room: String },
}

/// From a tab to the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// A tab joins: whether it is shown, whether its browser has a network, the origin's
    /// `jabberwock.*` values from `localStorage`, the resumption entry its previous page
    /// saved, if any (used only when the worker has no session yet), and the conversation
    /// that page had open, to open again (a new tab opens none).
    Hello { visible: bool, online: bool, stored: Vec<(String, String)>, resume: Option<String>, open: Option<String> },
    Command { command: Command },
    /// The tab was shown or hidden.
    Visible { visible: bool },
    /// The tab wrote (or, `None`, removed) a value in `localStorage`.
    Stored { key: String, value: Option<String> },
    /// The tab could not apply a [`ToTab::Splice`] of `field`: it asks for the whole value.
    Resend { field: String },
    /// The tab holds the Web Lock named `lock` for as long as it lives: the worker asks for
    /// it, and gets it once the tab is gone, even a tab that died without a [`ToWorker::Bye`].
    Alive { lock: String },
    /// The tab goes away.
    Bye,
}

/// From the worker to a tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToTab {
    /// A view signal (a field of the web client's `AppState`, by name) has a new value,
    /// as JSON text (read with the same code that reads the kept conversations). Those of
    /// the open conversation go only to the tab that has it open.
    State { field: String, value: String },
    /// A list signal changed in one run (see [`crate::splice`]): of the `len` items the
    /// tab has, keep the first `head` and the last `tail`, and put `items` (a JSON array)
    /// between. A tab whose list does not have `len` items asks for the whole value
    /// ([`ToWorker::Resend`]).
    Splice { field: String, len: usize, head: usize, tail: usize, items: String },
    /// Keep this value in `localStorage` (`None`: remove it) for the session.
    Stored { key: String, value: Option<String> },
    /// The latest entry for resuming the session after a reload (written by the last
    /// tab as it goes away); `None` when there is nothing to resume.
    Resume { entry: Option<String> },
    /// A desktop notification, shown by one tab; a click opens `conversation` there.
    Notify { title: String, body: String, conversation: String },
    /// A line of the protocol log (`jabberwock.debug`), for the tabs' consoles.
    Log { what: String, text: String },
}

impl ToWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for anything else than a message of this version, or a message too large.
    pub fn from_json(text: &str) -> Option<ToWorker> {
        parse(text)
    }
}

impl ToTab {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for anything else than a message of this version, or a message too large.
    pub fn from_json(text: &str) -> Option<ToTab> {
        parse(text)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    if text.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// What each tab shows: whether it is visible, and which conversation or room it has
/// open. The open conversation is the tab's, not the session's: the worker sends each tab
/// the view of its own, and a message is read when any shown tab has its conversation open
/// ([`TabViews::reading`]). A tab that goes away leaves nothing behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TabViews {
    tabs: BTreeMap<u32, TabView>,
}

/// One tab's view of the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TabView {
    pub visible: bool,
    /// The open conversation (a bare JID, or `room@service/nick` for a private message)
    /// or room.
    pub open: Option<String>,
    /// The open conversation's unread count when the tab opened it, and when: its "New
    /// messages" line goes above those.
    pub reading_from: Option<(u32, i64)>,
}

impl TabViews {
    /// Tab `tab` joins (or says again) with nothing open; returns whether any tab being
    /// shown changed.
    pub fn join(&mut self, tab: u32, visible: bool) -> bool {
        let before = self.any_visible();
        self.tabs.insert(tab, TabView { visible, ..TabView::default() });
        before != self.any_visible()
    }

    /// Tab `tab` is now shown or hidden; returns whether any tab being shown changed.
    pub fn set_visible(&mut self, tab: u32, visible: bool) -> bool {
        let before = self.any_visible();
        if let Some(view) = self.tabs.get_mut(&tab) {
            view.visible = visible;
        }
        before != self.any_visible()
    }

    /// Tab `tab` opens `conv` (or closes what it had), which had `unread` messages unread
    /// at `now_ms`.
    pub fn open(&mut self, tab: u32, conv: Option<String>, unread: u32, now_ms: i64) {
        if let Some(view) = self.tabs.get_mut(&tab) {
            view.reading_from = conv.is_some().then_some((unread, now_ms));
            view.open = conv;
        }
    }

    /// `conv` is gone (a contact removed, a room left): every tab that had it open closes
    /// it. Returns those tabs.
    pub fn close(&mut self, conv: &str) -> Vec<u32> {
        let mut closed = Vec::new();
        for (tab, view) in &mut self.tabs {
            if view.open.as_deref() == Some(conv) {
                *view = TabView { visible: view.visible, ..TabView::default() };
                closed.push(*tab);
            }
        }
        closed
    }

    /// The session ended: no tab has anything open.
    pub fn close_all(&mut self) {
        for view in self.tabs.values_mut() {
            *view = TabView { visible: view.visible, ..TabView::default() };
        }
    }

    /// Tab `tab` went away; returns whether any tab being shown changed.
    pub fn leave(&mut self, tab: u32) -> bool {
        let before = self.any_visible();
        self.tabs.remove(&tab);
        before != self.any_visible()
    }

    pub fn any_visible(&self) -> bool {
        self.tabs.values().any(|v| v.visible)
    }

    /// The conversations being read: open in a shown tab.
    pub fn reading(&self) -> BTreeSet<String> {
        self.tabs.values().filter(|v| v.visible).filter_map(|v| v.open.clone()).collect()
    }

    /// The conversations open in any tab, shown or not.
    pub fn open_anywhere(&self) -> BTreeSet<&str> {
        self.tabs.values().filter_map(|v| v.open.as_deref()).collect()
    }

    pub fn get(&self, tab: u32) -> Option<&TabView> {
        self.tabs.get(&tab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::{Field, FieldKind};

    fn every_command() -> Vec<Command> {
        let s = |v: &str| v.to_owned();
        let form = Form {
            fields: vec![Field {
                var: s("muc#roomconfig_roomname"),
                kind: FieldKind::TextSingle,
                label: Some(s("Name")),
                desc: None,
                values: vec![s("Café <&> \"ünïcode\" 🎉")],
                options: vec![],
                required: false,
            }],
            ..Default::default()
        };
        vec![
            Command::SignIn { address: s("a@example.org"), password: s("p\"w\\"), endpoints: vec![s("websocket wss://h/ws")], create: false },
            Command::SignIn { address: s("a@example.org"), password: s("x"), endpoints: vec![s("bosh https://h/http-bind")], create: true },
            Command::Logout,
            Command::OpenChat { with: Some(s("b@example.org")) },
            Command::OpenChat { with: None },
            Command::LoadOlder,
            Command::Typing { to: s("b@example.org"), typing: true },
            Command::SendMessage { to: s("b@example.org"), body: s("line one\nline two </body>") },
            Command::ReconnectNow,
            Command::AddContact { jid: s("c@example.org"), name: s("C") },
            Command::Accept { jid: s("c@example.org") },
            Command::Deny { jid: s("c@example.org") },
            Command::RemoveContact { jid: s("c@example.org") },
            Command::SetAvatar { data_url: s("data:image/jpeg;base64,AAAA") },
            Command::ChangePassword { password: s("n"), again: s("n") },
            Command::Block { jid: s("d@example.org"), block: true },
            Command::UpdateContact { jid: s("c@example.org"), name: s("C"), groups: vec![s("Work"), s("Friends")] },
            Command::SetPresence { show: Show::Dnd, status: s("busy") },
            Command::NetworkOnline,
            Command::NetworkOffline,
            Command::UserActive,
            Command::IdleSettingChanged,
            Command::CorrectLast { conv: s("b@example.org"), id: s("m1"), text: s("fixed") },
            Command::Retract { conv: s("b@example.org"), id: s("m1") },
            Command::ToggleReaction { conv: s("b@example.org"), id: s("m1"), emoji: s("👍") },
            Command::SendReply { conv: s("b@example.org"), reply_to: s("m1"), text: s("yes") },
            Command::Moderate { conv: s("r@muc.example.org"), id: s("stanza-1") },
            Command::Upload { conv: s("b@example.org") },
            Command::DismissUpload { request: u64::MAX },
            Command::Join { room: s("r@muc.example.org"), nick: s("me"), password: s("") },
            Command::CreateRoom {
                room: s("r@muc.example.org"),
                nick: s("me"),
                settings: RoomSettings { name: Some(s("R")), public: Some(false), members_only: Some(true), ..Default::default() },
            },
            Command::Leave { room: s("r@muc.example.org") },
            Command::ChangeNick { room: s("r@muc.example.org"), nick: s("me2") },
            Command::SetSubject { room: s("r@muc.example.org"), subject: s("topic") },
            Command::Invite { room: s("r@muc.example.org"), jid: s("c@example.org") },
            Command::SetRole { room: s("r@muc.example.org"), nick: s("x"), role: Role::Visitor },
            Command::SetAffiliation { room: s("r@muc.example.org"), nick: s("x"), affiliation: Affiliation::Outcast },
            Command::RequestConfig { room: s("r@muc.example.org") },
            Command::SubmitConfig { room: s("r@muc.example.org"), form: Some(form) },
            Command::SubmitConfig { room: s("r@muc.example.org"), form: None },
            Command::Destroy { room: s("r@muc.example.org") },
            Command::RoomLoadOlder { room: s("r@muc.example.org") },
            Command::DiscoverRooms,
            Command::BrowseRooms { service: s("muc.example.org") },
            Command::SetBookmarked { room: s("r@muc.example.org"), on: true },
            Command::AcceptInvitation { room: s("r@muc.example.org"), nick: s("me") },
            Command::DeclineInvitation { room: s("r@muc.example.org") },
        ]
    }

    #[test]
    fn every_command_survives_the_trip_to_the_worker() {
        for command in every_command() {
            let message = ToWorker::Command { command };
            assert_eq!(ToWorker::from_json(&message.to_json()), Some(message));
        }
    }

    #[test]
    fn tab_messages_round_trip() {
        let messages = [
            ToWorker::Hello {
                visible: true,
                online: false,
                stored: vec![("jabberwock.unread.a@example.org".into(), "b@example.org\t3\n".into())],
                resume: Some("{\"v\":1}".into()),
                open: Some("b@example.org".into()),
            },
            ToWorker::Hello { visible: false, online: true, stored: vec![], resume: None, open: None },
            ToWorker::Visible { visible: false },
            ToWorker::Stored { key: "jabberwock.notifications".into(), value: Some("1".into()) },
            ToWorker::Stored { key: "jabberwock.draft.a@example.org.b@example.org".into(), value: None },
            ToWorker::Resend { field: "messages".into() },
            ToWorker::Alive { lock: "jabberwock.tab.3f2a9c".into() },
            ToWorker::Bye,
        ];
        for m in messages {
            assert_eq!(ToWorker::from_json(&m.to_json()), Some(m));
        }
    }

    #[test]
    fn worker_messages_round_trip() {
        let messages = [
            ToTab::State { field: "status".into(), value: "{\"Reconnecting\":4}".into() },
            ToTab::State { field: "me".into(), value: "null".into() },
            ToTab::Splice { field: "messages".into(), len: 10_000, head: 10_000, tail: 0, items: "[{\"id\":\"m1\"}]".into() },
            ToTab::Stored { key: "jabberwock.kept.a@example.org".into(), value: Some("{}".into()) },
            ToTab::Stored { key: "jabberwock.unread.a@example.org".into(), value: None },
            ToTab::Resume { entry: Some("{\"jid\":\"a@example.org/web\"}".into()) },
            ToTab::Resume { entry: None },
            ToTab::Notify { title: "Bob".into(), body: "<b>hi</b>".into(), conversation: "b@example.org".into() },
            ToTab::Log { what: "ws in".into(), text: "<message/>".into() },
        ];
        for m in messages {
            assert_eq!(ToTab::from_json(&m.to_json()), Some(m));
        }
    }

    #[test]
    fn garbled_and_unknown_messages_are_ignored() {
        for text in [
            "",
            "null",
            "42",
            "[]",
            "{}",
            "not json",
            "{\"hello\":{}}",
            "\"launch_missiles\"",
            "{\"command\":{\"command\":\"format_disk\"}}",
            "{\"command\":{\"command\":{\"send_message\":{\"to\":\"b@example.org\"}}}}",
            "{\"visible\":{\"visible\":\"yes\"}}",
            "{\"command\":{\"command\":{\"dismiss_upload\":{\"request\":-1}}}}",
            "\"bye",
            "{\"bye\":null,\"visible\":{\"visible\":true}}",
        ] {
            assert_eq!(ToWorker::from_json(text), None, "{text}");
        }
        for text in ["", "{}", "{\"state\":{\"field\":\"me\"}}", "{\"splice\":{\"field\":\"messages\",\"len\":-1,\"head\":0,\"tail\":0,\"items\":\"[]\"}}", "{\"notify\":{\"title\":1}}", "\"eval\"", "{\"resume\":{\"entry\":7}}"] {
            assert_eq!(ToTab::from_json(text), None, "{text}");
        }
    }

    #[test]
    fn oversized_messages_are_ignored() {
        let body = "x".repeat(MAX_MESSAGE_BYTES);
        let big = ToWorker::Command { command: Command::SendMessage { to: "b@example.org".into(), body } }.to_json();
        assert!(big.len() > MAX_MESSAGE_BYTES);
        assert_eq!(ToWorker::from_json(&big), None);
        let big = ToTab::Stored { key: "k".into(), value: Some("y".repeat(MAX_MESSAGE_BYTES)) }.to_json();
        assert_eq!(ToTab::from_json(&big), None);
    }

    fn set(convs: &[&str]) -> BTreeSet<String> {
        convs.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn the_session_is_active_while_any_tab_is_shown() {
        let mut v = TabViews::default();
        assert!(!v.any_visible());
        assert!(v.join(1, true), "the first shown tab makes the session active");
        assert!(!v.join(2, false), "a hidden tab changes nothing");
        assert!(!v.set_visible(2, true), "a second shown tab changes nothing");
        assert!(!v.set_visible(1, false), "one of two shown tabs hidden: still active");
        assert!(v.set_visible(2, false), "the last shown tab hidden: inactive");
        assert!(v.set_visible(1, true));
        assert!(v.leave(1), "the shown tab closed: inactive");
        assert!(!v.leave(1), "closing it twice changes nothing");
        assert!(v.get(1).is_none() && v.get(2).is_some());
        assert!(!v.leave(7), "an unknown tab changes nothing");
        assert!(!v.set_visible(7, true), "nor does one that never said hello");
        assert!(v.get(7).is_none());
    }

    #[test]
    fn each_tab_keeps_its_own_conversation() {
        let mut v = TabViews::default();
        v.join(1, true);
        v.join(2, true);
        v.open(1, Some("bob@x".into()), 3, 100);
        v.open(2, Some("room@muc.x".into()), 0, 200);
        assert_eq!(v.get(1).unwrap().open.as_deref(), Some("bob@x"));
        assert_eq!(v.get(1).unwrap().reading_from, Some((3, 100)), "where its New messages line goes");
        assert_eq!(v.get(2).unwrap().open.as_deref(), Some("room@muc.x"));
        assert_eq!(v.reading(), set(&["bob@x", "room@muc.x"]));
        // A conversation is read while any shown tab has it open.
        v.set_visible(2, false);
        assert_eq!(v.reading(), set(&["bob@x"]), "open only in a hidden tab: not read");
        assert_eq!(v.open_anywhere(), ["bob@x", "room@muc.x"].into());
        v.open(2, Some("bob@x".into()), 0, 300);
        v.set_visible(1, false);
        assert_eq!(v.reading(), set(&[]));
        v.set_visible(2, true);
        assert_eq!(v.reading(), set(&["bob@x"]));
        v.open(2, None, 0, 400);
        assert_eq!((v.get(2).unwrap().open.as_ref(), v.get(2).unwrap().reading_from), (None, None));
        assert_eq!(v.reading(), set(&[]));
        // Opening in a tab that never said hello (or is gone) keeps nothing.
        v.open(9, Some("carol@x".into()), 1, 500);
        assert!(v.get(9).is_none() && !v.open_anywhere().contains("carol@x"));
    }

    #[test]
    fn a_conversation_gone_closes_in_every_tab() {
        let mut v = TabViews::default();
        v.join(1, true);
        v.join(2, false);
        v.join(3, true);
        v.open(1, Some("bob@x".into()), 0, 1);
        v.open(2, Some("bob@x".into()), 0, 1);
        v.open(3, Some("carol@x".into()), 0, 1);
        assert_eq!(v.close("bob@x"), [1, 2]);
        assert_eq!(v.reading(), set(&["carol@x"]));
        assert!(v.get(2).is_some_and(|t| !t.visible), "what a tab shows stays");
        v.close_all();
        assert!(v.open_anywhere().is_empty() && v.any_visible());
    }

    #[test]
    fn closed_tabs_leave_nothing_behind() {
        let mut v = TabViews::default();
        for tab in 0..10_000 {
            v.join(tab, tab % 2 == 0);
            v.open(tab, Some(format!("c{tab}@x")), tab, i64::from(tab));
            v.leave(tab);
        }
        assert_eq!(v, TabViews::default());
    }
}
