//! What the tabs of one browser and the shared worker that holds their XMPP session say to
//! each other (see the web client's README, *One connection for all tabs*).
//!
//! A tab sends [`ToWorker`]: the user's actions as [`Command`]s, whether it is shown, and
//! what it keeps for the session in `localStorage`, which a worker cannot reach. The
//! worker sends [`ToTab`]: each view signal that changed, values to keep, the latest entry
//! for resuming after a reload, and notifications to show. Both go as JSON text over the
//! worker's `MessagePort`s; a message that does not parse is ignored (it can only come from
//! another release of the page, which uses another worker, or from a bug).

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
    /// `jabberwock.*` values from `localStorage`, and the resumption entry its previous
    /// page saved, if any (used only when the worker has no session yet).
    Hello { visible: bool, online: bool, stored: Vec<(String, String)>, resume: Option<String> },
    Command { command: Command },
    /// The tab was shown or hidden.
    Visible { visible: bool },
    /// The tab wrote (or, `None`, removed) a value in `localStorage`.
    Stored { key: String, value: Option<String> },
    /// The tab goes away.
    Bye,
}

/// From the worker to a tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToTab {
    /// A view signal (a field of the web client's `AppState`, by name) has a new value,
    /// as JSON text (read with the same code that reads the kept conversations).
    State { field: String, value: String },
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

/// Which tabs are shown, so that the session is active (XEP-0352) while any is: `changed`
/// says whether the answer to "is any shown?" changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visibility {
    shown: Vec<(u32, bool)>,
}

impl Visibility {
    /// Tab `tab` is now shown or hidden (a new tab is added); returns whether any tab
    /// being shown changed.
    pub fn set(&mut self, tab: u32, visible: bool) -> bool {
        let before = self.any();
        match self.shown.iter_mut().find(|(t, _)| *t == tab) {
            Some(entry) => entry.1 = visible,
            None => self.shown.push((tab, visible)),
        }
        before != self.any()
    }

    /// Tab `tab` went away; returns whether any tab being shown changed.
    pub fn remove(&mut self, tab: u32) -> bool {
        let before = self.any();
        self.shown.retain(|(t, _)| *t != tab);
        before != self.any()
    }

    pub fn any(&self) -> bool {
        self.shown.iter().any(|(_, v)| *v)
    }

    /// The tabs still there.
    pub fn tabs(&self) -> impl Iterator<Item = u32> + '_ {
        self.shown.iter().map(|(t, _)| *t)
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
            },
            ToWorker::Hello { visible: false, online: true, stored: vec![], resume: None },
            ToWorker::Visible { visible: false },
            ToWorker::Stored { key: "jabberwock.notifications".into(), value: Some("1".into()) },
            ToWorker::Stored { key: "jabberwock.draft.a@example.org.b@example.org".into(), value: None },
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
        for text in ["", "{}", "{\"state\":{\"field\":\"me\"}}", "{\"notify\":{\"title\":1}}", "\"eval\"", "{\"resume\":{\"entry\":7}}"] {
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

    #[test]
    fn the_session_is_active_while_any_tab_is_shown() {
        let mut v = Visibility::default();
        assert!(!v.any());
        assert!(v.set(1, true), "the first shown tab makes the session active");
        assert!(!v.set(2, false), "a hidden tab changes nothing");
        assert!(!v.set(2, true), "a second shown tab changes nothing");
        assert!(!v.set(1, false), "one of two shown tabs hidden: still active");
        assert!(v.set(2, false), "the last shown tab hidden: inactive");
        assert!(v.set(1, true));
        assert!(v.remove(1), "the shown tab closed: inactive");
        assert!(!v.remove(1), "closing it twice changes nothing");
        assert_eq!(v.tabs().collect::<Vec<_>>(), vec![2]);
        assert!(!v.remove(7), "an unknown tab changes nothing");
    }
}
