//! What this client does: its XEP-0030 disco#info answer, and the XEP-0115 capabilities
//! hash of it that goes with our presence, through which the server learns which PEP
//! nodes we want notifications of (`<node>+notify`, XEP-0163 §4.3): bookmarks.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::Element;
use sha1::{Digest, Sha1};

use crate::ns;

/// Identifies the software in `<c node=…/>` (XEP-0115 §4).
pub const NODE: &str = "urn:xmpp:jabberwock:web-client";

/// (category, type, name) of our one identity.
const IDENTITY: (&str, &str, &str) = ("client", "web", "Jabberwock");

/// XEP-0402 §3.2: notifications of changes to our bookmarks.
const BOOKMARKS_NOTIFY: &str = "urn:xmpp:bookmarks:1+notify";
/// XEP-0084: contacts' new pictures, as PEP notifications.
const AVATAR_NOTIFY: &str = "urn:xmpp:avatar:metadata+notify";

const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::CAPS,
    ns::PING,
    ns::CHATSTATES,
    ns::RECEIPTS,
    ns::CORRECT,
    ns::RETRACT,
    ns::REACTIONS,
    ns::REPLY,
    ns::MARKERS,
    ns::MUC,
    ns::CONFERENCE,
    BOOKMARKS_NOTIFY,
    AVATAR_NOTIFY,
];

/// The `<query xmlns='disco#info'/>` answering a request for `node` (none, or our
/// `NODE#ver`, which must be echoed).
pub fn disco_info(node: Option<&str>) -> Element {
    let (category, kind, name) = IDENTITY;
    let mut q = Element::new("query", ns::DISCO_INFO).with_opt_attr("node", node).with_child(
        Element::new("identity", ns::DISCO_INFO).with_attr("category", category).with_attr("type", kind).with_attr("name", name),
    );
    for f in FEATURES {
        q.push(Element::new("feature", ns::DISCO_INFO).with_attr("var", *f));
    }
    q
}

/// XEP-0115 §5.1: the verification string of [`disco_info`] (one identity, features, no
/// forms), SHA-1 in base64.
pub fn ver() -> String {
    let (category, kind, name) = IDENTITY;
    let mut features = FEATURES.to_vec();
    features.sort_unstable();
    let s = format!("{category}/{kind}//{name}<{}", features.iter().map(|f| format!("{f}<")).collect::<String>());
    B64.encode(Sha1::digest(s.as_bytes()))
}

/// The `<c/>` our presence carries.
pub fn element() -> Element {
    Element::new("c", ns::CAPS).with_attr("hash", "sha-1").with_attr("node", NODE).with_attr("ver", ver())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_that_of_the_disco_answer() {
        // Computed over what disco_info says, the way XEP-0115 §5.1 orders it.
        let q = disco_info(Some("n"));
        let mut s = String::from("client/web//Jabberwock<");
        let mut features: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
        features.sort();
        assert!(features.contains(&"urn:xmpp:bookmarks:1+notify"));
        for f in features {
            s.push_str(f);
            s.push('<');
        }
        assert_eq!(ver(), B64.encode(Sha1::digest(s.as_bytes())));
        assert_eq!(q.attr("node"), Some("n"));
        let c = element();
        assert_eq!((c.attr("hash"), c.attr("node")), (Some("sha-1"), Some(NODE)));
    }
}
