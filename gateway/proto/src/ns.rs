//! Namespace names used across the server.

pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
/// XEP-0114 external components' streams.
pub const COMPONENT: &str = "jabber:component:accept";
pub const DIALBACK: &str = "jabber:server:dialback";
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
pub const BIDI: &str = "urn:xmpp:bidi";
pub const BIDI_FEATURE: &str = "urn:xmpp:features:bidi";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
pub const SASL2: &str = "urn:xmpp:sasl:2";
pub const BIND2: &str = "urn:xmpp:bind:0";
pub const FAST: &str = "urn:xmpp:fast:0";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const ROSTER: &str = "jabber:iq:roster";
pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const PING: &str = "urn:xmpp:ping";
pub const VERSION: &str = "jabber:iq:version";
pub const LAST: &str = "jabber:iq:last";
pub const VCARD: &str = "vcard-temp";
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
pub const PEP_VCARD_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
pub const PRIVATE: &str = "jabber:iq:private";
pub const REGISTER: &str = "jabber:iq:register";
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
pub const DELAY: &str = "urn:xmpp:delay";
pub const MSGOFFLINE: &str = "msgoffline";
pub const DATA_FORMS: &str = "jabber:x:data";
pub const SM: &str = "urn:xmpp:sm:3";
pub const CARBONS: &str = "urn:xmpp:carbons:2";
pub const FORWARD: &str = "urn:xmpp:forward:0";
pub const HINTS: &str = "urn:xmpp:hints";
pub const MAM: &str = "urn:xmpp:mam:2";
pub const RSM: &str = "http://jabber.org/protocol/rsm";
pub const SID: &str = "urn:xmpp:sid:0";
pub const CSI: &str = "urn:xmpp:csi:0";
pub const BLOCKING: &str = "urn:xmpp:blocking";
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
pub const CAPS: &str = "http://jabber.org/protocol/caps";
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const PUBSUB_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// `jabber:client`, `jabber:server` and `jabber:component:accept` are the content
/// namespaces: a stanza written into a stream takes that stream's content namespace.
pub fn is_content_ns(ns: &str) -> bool {
    ns == CLIENT || ns == SERVER || ns == COMPONENT
}
pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const MUC_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const MUC_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
pub const MUC_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const CONFERENCE: &str = "jabber:x:conference";
pub const MESSAGE_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const MESSAGE_MODERATE: &str = "urn:xmpp:message-moderate:1";
pub const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
pub const BOOKMARKS_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
pub const STORAGE_BOOKMARKS: &str = "storage:bookmarks";
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const TIME: &str = "urn:xmpp:time";
pub const EXTDISCO: &str = "urn:xmpp:extdisco:2";
pub const PUSH: &str = "urn:xmpp:push:0";
