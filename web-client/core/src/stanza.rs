//! Building the stanzas the client sends, and reading the ones it receives into typed form.
//!
//! Everything here is pure: elements in, elements out. Serialisation and framing belong to
//! the transport ([`crate::framing`]).

use jabberwock_proto::Element;

use crate::actions::Extras;
use crate::ns;
use crate::roster::RosterItem;

/// Availability, as in RFC 6121 §4.7.2.1 (`Online` is presence without `<show/>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Show {
    Chat,
    #[default]
    Online,
    Away,
    Xa,
    Dnd,
}

impl Show {
    pub const ALL: [Show; 5] = [Show::Online, Show::Chat, Show::Away, Show::Xa, Show::Dnd];

    pub fn from_show(show: Option<&str>) -> Show {
        match show {
            Some("chat") => Show::Chat,
            Some("away") => Show::Away,
            Some("xa") => Show::Xa,
            Some("dnd") => Show::Dnd,
            _ => Show::Online,
        }
    }

    /// The `<show/>` value, `None` for plain availability.
    pub fn as_show(self) -> Option<&'static str> {
        match self {
            Show::Chat => Some("chat"),
            Show::Online => None,
            Show::Away => Some("away"),
            Show::Xa => Some("xa"),
            Show::Dnd => Some("dnd"),
        }
    }

    /// A stable key for styling and tests.
    pub fn key(self) -> &'static str {
        self.as_show().unwrap_or("online")
    }

    /// The inverse of [`Show::key`].
    pub fn from_key(key: &str) -> Option<Show> {
        Show::ALL.into_iter().find(|s| s.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            Show::Chat => "Free to chat",
            Show::Online => "Online",
            Show::Away => "Away",
            Show::Xa => "Not available",
            Show::Dnd => "Do not disturb",
        }
    }

    /// Higher is "more reachable"; used to pick the best resource on equal priority.
    pub fn rank(self) -> u8 {
        match self {
            Show::Chat => 4,
            Show::Online => 3,
            Show::Away => 2,
            Show::Xa => 1,
            Show::Dnd => 0,
        }
    }
}

/// What an available presence says.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresenceInfo {
    pub show: Show,
    pub status: Option<String>,
    pub priority: i8,
}

/// A stanza error (RFC 6120 §8.3), reduced to what the user is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorInfo {
    pub condition: String,
    pub text: Option<String>,
}

impl ErrorInfo {
    pub fn from_stanza(el: &Element) -> ErrorInfo {
        let error = el.child("error", ns::CLIENT);
        let condition = error
            .and_then(|e| e.children().find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text"))
            .map_or("undefined-condition", |c| c.name())
            .to_owned();
        let text = error.and_then(|e| e.child_text("text", ns::STANZA_ERRORS)).filter(|t| !t.is_empty());
        ErrorInfo { condition, text }
    }

    /// A sentence for the user.
    pub fn describe(&self) -> String {
        let what = match self.condition.as_str() {
            "item-not-found" | "recipient-unavailable" => "the address does not exist or is unavailable",
            "remote-server-not-found" | "remote-server-timeout" => "their server cannot be reached",
            "service-unavailable" => "the service is unavailable",
            "forbidden" | "not-allowed" | "not-authorized" => "this is not allowed",
            "jid-malformed" => "the address is not valid",
            "policy-violation" => "the server's policy refused it",
            "resource-constraint" => "the server is overloaded",
            other => other,
        };
        match &self.text {
            Some(t) => format!("{what} ({t})"),
            None => what.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Normal,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    fn parse(t: Option<&str>) -> MessageType {
        match t {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        }
    }
}

/// XEP-0085: what the other side is doing in a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatState {
    Active,
    Composing,
    Paused,
    Inactive,
    Gone,
}

impl ChatState {
    pub fn name(self) -> &'static str {
        match self {
            ChatState::Active => "active",
            ChatState::Composing => "composing",
            ChatState::Paused => "paused",
            ChatState::Inactive => "inactive",
            ChatState::Gone => "gone",
        }
    }

    pub fn from_name(name: &str) -> Option<ChatState> {
        [ChatState::Active, ChatState::Composing, ChatState::Paused, ChatState::Inactive, ChatState::Gone]
            .into_iter()
            .find(|s| s.name() == name)
    }

    fn element(self) -> Element {
        Element::new(self.name(), ns::CHATSTATES)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingMessage {
    pub from: String,
    pub to: String,
    pub id: Option<String>,
    pub kind: MessageType,
    pub body: Option<String>,
    pub thread: Option<String>,
    /// XEP-0203 delay stamp, for messages stored while we were offline.
    pub delay: Option<String>,
    /// For `type='error'`: what went wrong.
    pub error: Option<ErrorInfo>,
    pub chat_state: Option<ChatState>,
    /// XEP-0184: the sender asks for a delivery receipt.
    pub receipt_request: bool,
    /// What it says about other messages (a receipt, a correction …), and what it carries.
    pub extras: Extras,
}

impl IncomingMessage {
    fn from_element(el: &Element) -> IncomingMessage {
        IncomingMessage {
            from: el.attr("from").unwrap_or_default().to_owned(),
            to: el.attr("to").unwrap_or_default().to_owned(),
            id: el.attr("id").map(str::to_owned),
            kind: MessageType::parse(el.attr("type")),
            body: el.child_text("body", ns::CLIENT),
            thread: el.child_text("thread", ns::CLIENT),
            delay: el.child("delay", ns::DELAY).and_then(|d| d.attr("stamp")).map(str::to_owned),
            error: (el.attr("type") == Some("error")).then(|| ErrorInfo::from_stanza(el)),
            chat_state: el.children().filter(|c| c.ns() == ns::CHATSTATES).find_map(|c| ChatState::from_name(c.name())),
            receipt_request: el.child("request", ns::RECEIPTS).is_some(),
            extras: Extras::parse(el),
        }
    }
}

/// XEP-0280: which way a carbon copy went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarbonKind {
    /// Sent by another of our devices.
    Sent,
    /// Received by another of our devices.
    Received,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceKind {
    Available(PresenceInfo),
    Unavailable { status: Option<String> },
    Subscribe { status: Option<String> },
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error(ErrorInfo),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
}

/// A received top-level element, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Message(IncomingMessage),
    Presence {
        from: String,
        kind: PresenceKind,
    },
    /// RFC 6121 §2.1.6: the server changed the roster (an `iq` set we must answer).
    RosterPush {
        id: String,
        from: Option<String>,
        items: Vec<RosterItem>,
    },
    IqResult {
        id: String,
        from: Option<String>,
        payload: Option<Element>,
    },
    IqError {
        id: String,
        from: Option<String>,
        error: ErrorInfo,
    },
    /// Any other request; it must be answered.
    IqRequest {
        id: String,
        from: Option<String>,
        kind: IqType,
        payload: Option<Element>,
    },
    /// XEP-0313: one archived message, answering our query `query_id`.
    ArchivedMessage(ArchivedMessage),
    /// XEP-0280: a copy of a message another of our devices sent or received. `from` is
    /// the wrapper's sender, which must be our own bare JID for the copy to be believed.
    Carbon {
        from: String,
        kind: CarbonKind,
        message: IncomingMessage,
    },
    /// Not a stanza we know (or malformed); ignored.
    Other(Element),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Who sent the result: the archive answering (our own bare JID), or `None` when
    /// the stanza has no `from`, which means our server on our behalf.
    pub archive: Option<String>,
    pub query_id: String,
    /// The archive's id for it, for paging.
    pub archive_id: String,
    /// When the server archived it.
    pub stamp: Option<String>,
    pub from: String,
    pub to: String,
    pub id: Option<String>,
    pub body: Option<String>,
    pub extras: Extras,
}

impl Incoming {
    pub fn classify(el: Element) -> Incoming {
        if el.ns() != ns::CLIENT {
            return Incoming::Other(el);
        }
        match el.name() {
            "message" if el.child("result", ns::MAM).is_some() => {
                let Some(result) = el.child("result", ns::MAM) else { return Incoming::Other(el) };
                let forwarded = result.child("forwarded", ns::FORWARD);
                let inner = forwarded.and_then(|f| f.child("message", ns::CLIENT));
                match (result.attr("queryid"), result.attr("id"), inner) {
                    (Some(q), Some(a), Some(m)) => Incoming::ArchivedMessage(ArchivedMessage {
                        archive: el.attr("from").map(str::to_owned),
                        query_id: q.to_owned(),
                        archive_id: a.to_owned(),
                        stamp: forwarded
                            .and_then(|f| f.child("delay", ns::DELAY))
                            .and_then(|d| d.attr("stamp"))
                            .map(str::to_owned),
                        from: m.attr("from").unwrap_or_default().to_owned(),
                        to: m.attr("to").unwrap_or_default().to_owned(),
                        id: m.attr("id").map(str::to_owned),
                        body: m.child_text("body", ns::CLIENT),
                        extras: Extras::parse(m),
                    }),
                    _ => Incoming::Other(el),
                }
            }
            "message" => {
                let carbon = [("sent", CarbonKind::Sent), ("received", CarbonKind::Received)]
                    .into_iter()
                    .find_map(|(name, kind)| el.child(name, ns::CARBONS).map(|c| (kind, c)));
                if let Some((kind, c)) = carbon {
                    let inner = c.child("forwarded", ns::FORWARD).and_then(|f| f.child("message", ns::CLIENT));
                    return match inner {
                        Some(m) => Incoming::Carbon {
                            from: el.attr("from").unwrap_or_default().to_owned(),
                            kind,
                            message: IncomingMessage::from_element(m),
                        },
                        None => Incoming::Other(el),
                    };
                }
                Incoming::Message(IncomingMessage::from_element(&el))
            }
            "presence" => {
                let Some(from) = el.attr("from").map(str::to_owned) else { return Incoming::Other(el) };
                let status = el.child_text("status", ns::CLIENT).filter(|s| !s.is_empty());
                let kind = match el.attr("type") {
                    None => PresenceKind::Available(PresenceInfo {
                        show: Show::from_show(el.child_text("show", ns::CLIENT).as_deref().map(str::trim)),
                        status,
                        priority: el.child_text("priority", ns::CLIENT).and_then(|p| p.trim().parse().ok()).unwrap_or(0),
                    }),
                    Some("unavailable") => PresenceKind::Unavailable { status },
                    Some("subscribe") => PresenceKind::Subscribe { status },
                    Some("subscribed") => PresenceKind::Subscribed,
                    Some("unsubscribe") => PresenceKind::Unsubscribe,
                    Some("unsubscribed") => PresenceKind::Unsubscribed,
                    Some("probe") => PresenceKind::Probe,
                    Some("error") => PresenceKind::Error(ErrorInfo::from_stanza(&el)),
                    Some(_) => return Incoming::Other(el),
                };
                Incoming::Presence { from, kind }
            }
            "iq" => {
                let Some(id) = el.attr("id").map(str::to_owned) else { return Incoming::Other(el) };
                let from = el.attr("from").map(str::to_owned);
                match el.attr("type") {
                    Some("result") => Incoming::IqResult { id, from, payload: el.first_child().cloned() },
                    Some("error") => Incoming::IqError { id, from, error: ErrorInfo::from_stanza(&el) },
                    Some(t @ ("get" | "set")) => {
                        let kind = if t == "get" { IqType::Get } else { IqType::Set };
                        let payload = el.first_child().cloned();
                        match &payload {
                            Some(q) if kind == IqType::Set && q.is("query", ns::ROSTER) => {
                                let items = q
                                    .children()
                                    .filter(|c| c.is("item", ns::ROSTER))
                                    .filter_map(RosterItem::from_element)
                                    .collect();
                                Incoming::RosterPush { id, from, items }
                            }
                            _ => Incoming::IqRequest { id, from, kind, payload },
                        }
                    }
                    _ => Incoming::Other(el),
                }
            }
            _ => Incoming::Other(el),
        }
    }
}

// ---- builders ----

fn stanza(name: &str) -> Element {
    Element::new(name, ns::CLIENT)
}

pub fn iq(kind: &str, id: &str, to: Option<&str>) -> Element {
    stanza("iq").with_attr("type", kind).with_attr("id", id).with_opt_attr("to", to)
}

pub fn bind(id: &str, resource: Option<&str>) -> Element {
    let mut b = Element::new("bind", ns::BIND);
    if let Some(r) = resource {
        b.push(Element::new("resource", ns::BIND).with_text(r));
    }
    iq("set", id, None).with_child(b)
}

/// The RFC 3921 session establishment, for old servers that still require it.
pub fn session(id: &str) -> Element {
    iq("set", id, None).with_child(Element::new("session", ns::SESSION))
}

pub fn roster_get(id: &str) -> Element {
    iq("get", id, None).with_child(Element::new("query", ns::ROSTER))
}

/// Adds or updates a roster item (RFC 6121 §2.3).
pub fn roster_set(id: &str, jid: &str, name: Option<&str>, groups: &[String]) -> Element {
    let mut item = Element::new("item", ns::ROSTER).with_attr("jid", jid).with_opt_attr("name", name.filter(|n| !n.is_empty()));
    for g in groups {
        item.push(Element::new("group", ns::ROSTER).with_text(g.as_str()));
    }
    iq("set", id, None).with_child(Element::new("query", ns::ROSTER).with_child(item))
}

/// Removes a roster item (RFC 6121 §2.5), which also cancels both subscriptions.
pub fn roster_remove(id: &str, jid: &str) -> Element {
    let item = Element::new("item", ns::ROSTER).with_attr("jid", jid).with_attr("subscription", "remove");
    iq("set", id, None).with_child(Element::new("query", ns::ROSTER).with_child(item))
}

pub fn iq_result(id: &str, to: Option<&str>) -> Element {
    iq("result", id, to)
}

pub fn iq_error(id: &str, to: Option<&str>, condition: &str, error_type: &str) -> Element {
    let error = stanza("error").with_attr("type", error_type).with_child(Element::new(condition, ns::STANZA_ERRORS));
    iq("error", id, to).with_child(error)
}

/// Our own broadcast presence, with our capabilities (XEP-0115).
pub fn presence(info: &PresenceInfo) -> Element {
    let mut p = stanza("presence").with_child(crate::caps::element());
    if let Some(show) = info.show.as_show() {
        p.push(stanza("show").with_text(show));
    }
    if let Some(status) = info.status.as_deref().filter(|s| !s.is_empty()) {
        p.push(stanza("status").with_text(status));
    }
    if info.priority != 0 {
        p.push(stanza("priority").with_text(info.priority.to_string()));
    }
    p
}

pub fn unavailable() -> Element {
    stanza("presence").with_attr("type", "unavailable")
}

/// `subscribe`, `subscribed`, `unsubscribe` or `unsubscribed` to `to`.
pub fn subscription(kind: &str, to: &str) -> Element {
    stanza("presence").with_attr("type", kind).with_attr("to", to)
}

/// A chat message; it carries `<active/>` (XEP-0085 §5.1), which also tells the peer we
/// support chat states, asks for a delivery receipt (XEP-0184) and chat markers (XEP-0333),
/// and repeats its id as its origin-id (XEP-0359), the id other messages refer to it by.
pub fn chat_message(id: &str, to: &str, body: &str) -> Element {
    stanza("message")
        .with_attr("type", "chat")
        .with_attr("id", id)
        .with_attr("to", to)
        .with_child(stanza("body").with_text(body))
        .with_child(ChatState::Active.element())
        .with_child(Element::new("request", ns::RECEIPTS))
        .with_child(Element::new("markable", ns::MARKERS))
        .with_child(Element::new("origin-id", ns::SID).with_attr("id", id))
}

/// XEP-0184: tells `to` (the full JID it came from) that their message `for_id` arrived.
/// A receipt for a chat message is of type `chat` too, so that the sender's server copies
/// it (XEP-0280) to the sender's other devices, which show the message as well. Its
/// `<store/>` hint (XEP-0334) asks for it in the archive, where a reload finds it.
pub fn receipt(id: &str, to: &str, for_id: &str, chat: bool) -> Element {
    stanza("message")
        .with_opt_attr("type", chat.then_some("chat"))
        .with_attr("id", id)
        .with_attr("to", to)
        .with_child(Element::new("received", ns::RECEIPTS).with_attr("id", for_id))
        .with_child(Element::new("store", ns::HINTS))
}

/// XEP-0280: asks the server for copies of what our other devices send and receive.
pub fn enable_carbons(id: &str) -> Element {
    iq("set", id, None).with_child(Element::new("enable", ns::CARBONS))
}

/// XEP-0313: the last `max` messages exchanged with `with`, before the archive id `before`
/// (the newest page when `None`).
pub fn archive_query(id: &str, query_id: &str, with: &str, before: Option<&str>, max: u32) -> Element {
    mam_query(id, query_id, None, Some(with), before, max)
}

/// XEP-0313 on a group chat: the last `max` messages of `room`'s own archive, before the
/// archive id `before`.
pub fn room_archive_query(id: &str, query_id: &str, room: &str, before: Option<&str>, max: u32) -> Element {
    mam_query(id, query_id, Some(room), None, before, max)
}

fn mam_query(id: &str, query_id: &str, archive: Option<&str>, with: Option<&str>, before: Option<&str>, max: u32) -> Element {
    let field = |var: &str, value: &str, hidden: bool| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_opt_attr("type", hidden.then_some("hidden"))
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
    };
    let mut form = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit").with_child(field("FORM_TYPE", ns::MAM, true));
    if let Some(with) = with {
        form.push(field("with", with, false));
    }
    let set = Element::new("set", ns::RSM)
        .with_child(Element::new("max", ns::RSM).with_text(max.to_string()))
        .with_child(Element::new("before", ns::RSM).with_text(before.unwrap_or_default()));
    iq("set", id, archive).with_child(Element::new("query", ns::MAM).with_attr("queryid", query_id).with_child(form).with_child(set))
}

/// A standalone chat state notification (no body, never stored offline).
pub fn chat_state(to: &str, state: ChatState) -> Element {
    stanza("message")
        .with_attr("type", "chat")
        .with_attr("to", to)
        .with_child(state.element())
        .with_child(Element::new("no-store", "urn:xmpp:hints"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::Subscription;
    use jabberwock_proto::{reader, Limits};

    fn parse(xml: &str) -> Element {
        reader::parse_element(xml.as_bytes(), &Limits::default()).unwrap()
    }

    fn round_trip(el: &Element) -> Element {
        parse(&el.to_xml_string())
    }

    #[test]
    fn built_stanzas_serialise_with_the_client_namespace_and_round_trip() {
        let m = chat_message("m1", "bob@localhost", "hi <b>&amp; ' \"");
        let xml = m.to_xml_string();
        assert!(
            xml.starts_with("<message xmlns=\"jabber:client\"") || xml.starts_with("<message xmlns='jabber:client'"),
            "{xml}"
        );
        assert!(!xml.contains("<b>"), "text is escaped: {xml}");
        assert_eq!(round_trip(&m), m);
        let Incoming::Message(msg) = Incoming::classify(round_trip(&m)) else { panic!() };
        assert_eq!(msg.body.as_deref(), Some("hi <b>&amp; ' \""));
        assert_eq!(msg.kind, MessageType::Chat);

        for el in [
            bind("b1", Some("web")),
            bind("b2", None),
            session("s1"),
            roster_get("r1"),
            roster_set("r2", "bob@localhost", Some("Bob"), &["Friends".into()]),
            roster_remove("r3", "bob@localhost"),
            iq_result("x", Some("localhost")),
            iq_error("y", Some("localhost"), "service-unavailable", "cancel"),
            presence(&PresenceInfo { show: Show::Away, status: Some("lunch".into()), priority: 5 }),
            unavailable(),
            subscription("subscribe", "bob@localhost"),
        ] {
            assert_eq!(round_trip(&el), el);
        }
    }

    #[test]
    fn presence_is_classified() {
        let p = parse("<presence xmlns='jabber:client' from='bob@localhost/web'><show>dnd</show><status>busy</status><priority>-1</priority></presence>");
        assert_eq!(
            Incoming::classify(p),
            Incoming::Presence {
                from: "bob@localhost/web".into(),
                kind: PresenceKind::Available(PresenceInfo { show: Show::Dnd, status: Some("busy".into()), priority: -1 })
            }
        );
        let ours = presence(&PresenceInfo { show: Show::Xa, status: None, priority: 0 }).with_attr("from", "a@b/c");
        assert!(matches!(
            Incoming::classify(round_trip(&ours)),
            Incoming::Presence { kind: PresenceKind::Available(PresenceInfo { show: Show::Xa, status: None, priority: 0 }), .. }
        ));
        for (t, expected) in [
            ("unavailable", PresenceKind::Unavailable { status: None }),
            ("subscribe", PresenceKind::Subscribe { status: None }),
            ("subscribed", PresenceKind::Subscribed),
            ("unsubscribe", PresenceKind::Unsubscribe),
            ("unsubscribed", PresenceKind::Unsubscribed),
            ("probe", PresenceKind::Probe),
        ] {
            let p = parse(&format!("<presence xmlns='jabber:client' from='bob@localhost' type='{t}'/>"));
            assert_eq!(Incoming::classify(p), Incoming::Presence { from: "bob@localhost".into(), kind: expected });
        }
        let err = parse(
            "<presence xmlns='jabber:client' from='x@nowhere' type='error'><error type='cancel'>\
             <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        let Incoming::Presence { kind: PresenceKind::Error(e), .. } = Incoming::classify(err) else { panic!() };
        assert_eq!(e.condition, "remote-server-not-found");
        assert_eq!(e.describe(), "their server cannot be reached");
        // No from: not something we can attribute.
        assert!(matches!(Incoming::classify(parse("<presence xmlns='jabber:client'/>")), Incoming::Other(_)));
    }

    #[test]
    fn iqs_are_classified() {
        let push = parse(
            "<iq xmlns='jabber:client' type='set' id='p1'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost' name='Bob' subscription='both'><group>Work</group></item></query></iq>",
        );
        let Incoming::RosterPush { id, from, items } = Incoming::classify(push) else { panic!() };
        assert_eq!((id.as_str(), from), ("p1", None));
        assert_eq!(items[0].jid, "bob@localhost");
        assert_eq!(items[0].subscription, Subscription::Both);
        assert_eq!(items[0].groups, ["Work"]);

        let ping = parse("<iq xmlns='jabber:client' type='get' id='q' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        let Incoming::IqRequest { kind, payload, .. } = Incoming::classify(ping) else { panic!() };
        assert_eq!(kind, IqType::Get);
        assert!(payload.unwrap().is("ping", ns::PING));

        let err = parse(
            "<iq xmlns='jabber:client' type='error' id='e'><error type='cancel'><item-not-found \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>nope</text></error></iq>",
        );
        let Incoming::IqError { error, .. } = Incoming::classify(err) else { panic!() };
        assert_eq!(error, ErrorInfo { condition: "item-not-found".into(), text: Some("nope".into()) });
        assert!(matches!(Incoming::classify(parse("<iq xmlns='jabber:client' type='get'/>")), Incoming::Other(_)));
        assert!(matches!(Incoming::classify(parse("<iq xmlns='other' type='get' id='1'/>")), Incoming::Other(_)));
    }

    #[test]
    fn chat_states_round_trip() {
        for st in [ChatState::Active, ChatState::Composing, ChatState::Paused, ChatState::Inactive, ChatState::Gone] {
            let el = round_trip(&chat_state("bob@x", st).with_attr("from", "a@x/r"));
            let Incoming::Message(m) = Incoming::classify(el) else { panic!() };
            assert_eq!((m.chat_state, m.body), (Some(st), None));
        }
        let Incoming::Message(m) = Incoming::classify(round_trip(&chat_message("1", "b@x", "hi"))) else { panic!() };
        assert_eq!(m.chat_state, Some(ChatState::Active));
        assert_eq!(ChatState::from_name("typing"), None);
    }

    #[test]
    fn archive_queries_and_results() {
        let q = round_trip(&archive_query("q1", "Q", "bob@x", None, 50));
        let query = q.child("query", ns::MAM).unwrap();
        assert_eq!(query.attr("queryid"), Some("Q"));
        let form = query.child("x", ns::DATA_FORMS).unwrap();
        let values: Vec<_> = form
            .children()
            .map(|f| (f.attr("var").unwrap().to_owned(), f.child_text("value", ns::DATA_FORMS).unwrap()))
            .collect();
        assert_eq!(values, [("FORM_TYPE".to_owned(), ns::MAM.to_owned()), ("with".to_owned(), "bob@x".to_owned())]);
        let set = query.child("set", ns::RSM).unwrap();
        assert_eq!(set.child_text("max", ns::RSM).as_deref(), Some("50"));
        assert_eq!(set.child_text("before", ns::RSM).as_deref(), Some(""), "empty before: the last page");
        let q = archive_query("q2", "Q", "bob@x", Some("A7"), 20);
        assert_eq!(
            q.child("query", ns::MAM).unwrap().child("set", ns::RSM).unwrap().child_text("before", ns::RSM).as_deref(),
            Some("A7")
        );

        let result = parse(
            "<message xmlns='jabber:client' to='a@x/r' from='a@x'><result xmlns='urn:xmpp:mam:2' queryid='Q' id='A1'>\
             <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2024-01-02T03:04:05Z'/>\
             <message xmlns='jabber:client' from='bob@x/p' to='a@x' type='chat' id='m9'><body>old</body></message>\
             </forwarded></result></message>",
        );
        assert_eq!(
            Incoming::classify(result),
            Incoming::ArchivedMessage(ArchivedMessage {
                archive: Some("a@x".into()),
                query_id: "Q".into(),
                archive_id: "A1".into(),
                stamp: Some("2024-01-02T03:04:05Z".into()),
                from: "bob@x/p".into(),
                to: "a@x".into(),
                id: Some("m9".into()),
                body: Some("old".into()),
                extras: Extras::default(),
            })
        );
        let broken = parse("<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' queryid='Q' id='A1'/></message>");
        assert!(matches!(Incoming::classify(broken), Incoming::Other(_)));
    }

    #[test]
    fn carbons_and_receipts_are_classified() {
        let m = round_trip(&chat_message("m1", "bob@x", "hi"));
        let Incoming::Message(m) = Incoming::classify(m) else { panic!() };
        assert!(m.receipt_request);
        let r = round_trip(&receipt("r1", "bob@x/p", "b7", true).with_attr("from", "a@x/r"));
        let Incoming::Message(r) = Incoming::classify(r) else { panic!() };
        assert_eq!((r.extras.received.as_deref(), r.body, r.kind), (Some("b7"), None, MessageType::Chat));
        // The old form: the id on the message.
        let old = parse("<message xmlns='jabber:client' from='b@x' id='m3'><received xmlns='urn:xmpp:receipts'/></message>");
        let Incoming::Message(old) = Incoming::classify(old) else { panic!() };
        assert_eq!(old.extras.received.as_deref(), Some("m3"));
        assert!(enable_carbons("c1").child("enable", ns::CARBONS).is_some());

        let carbon = parse(
            "<message xmlns='jabber:client' from='a@x' to='a@x/r' type='chat'><sent xmlns='urn:xmpp:carbons:2'>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='a@x/phone' to='b@x' type='chat' id='p1'>\
             <body>hey</body></message></forwarded></sent></message>",
        );
        let Incoming::Carbon { from, kind, message } = Incoming::classify(carbon) else { panic!() };
        assert_eq!((from.as_str(), kind), ("a@x", CarbonKind::Sent));
        assert_eq!((message.from.as_str(), message.to.as_str(), message.body.as_deref()), ("a@x/phone", "b@x", Some("hey")));
        // A receipt's <received/> is not a carbon.
        assert!(matches!(
            Incoming::classify(parse(
                "<message xmlns='jabber:client' from='b@x'><received xmlns='urn:xmpp:receipts' id='1'/></message>"
            )),
            Incoming::Message(_)
        ));
    }

    #[test]
    fn offline_messages_keep_their_delay_stamp() {
        let m = parse(
            "<message xmlns='jabber:client' from='bob@localhost/x' type='chat' id='7'><body>later</body>\
             <delay xmlns='urn:xmpp:delay' from='localhost' stamp='2024-01-02T03:04:05Z'>Offline Storage</delay></message>",
        );
        let Incoming::Message(m) = Incoming::classify(m) else { panic!() };
        assert_eq!(m.delay.as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(m.id.as_deref(), Some("7"));
    }
}
