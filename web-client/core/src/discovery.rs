//! XEP-0156: finding a domain's WebSocket and BOSH endpoints from its host-meta, in JSON
//! (`/.well-known/host-meta.json`) or XRD (`/.well-known/host-meta`) form.

use jabberwock_proto::{reader, Limits};

use crate::ns;

pub const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";
pub const BOSH_REL: &str = "urn:xmpp:alt-connections:xbosh";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub websocket: Vec<String>,
    pub bosh: Vec<String>,
}

impl Endpoints {
    pub fn is_empty(&self) -> bool {
        self.websocket.is_empty() && self.bosh.is_empty()
    }

    fn add(&mut self, rel: &str, href: &str) {
        let href = href.trim();
        let list = match rel {
            WEBSOCKET_REL if href.starts_with("wss://") || href.starts_with("ws://") => &mut self.websocket,
            BOSH_REL if href.starts_with("https://") || href.starts_with("http://") => &mut self.bosh,
            _ => return,
        };
        if !list.iter().any(|h| h == href) {
            list.push(href.to_owned());
        }
    }

    /// Prefers encrypted endpoints, keeping the document's order otherwise.
    fn sort(&mut self) {
        self.websocket.sort_by_key(|h| !h.starts_with("wss:"));
        self.bosh.sort_by_key(|h| !h.starts_with("https:"));
    }
}

/// The host-meta URLs to try for `domain`, JSON first.
pub fn host_meta_urls(base: &str) -> [String; 2] {
    let base = base.trim_end_matches('/');
    [format!("{base}/.well-known/host-meta.json"), format!("{base}/.well-known/host-meta")]
}

/// Reads `{"links": [{"rel": …, "href": …}, …]}`.
pub fn parse_json(doc: &str) -> Option<Endpoints> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let mut out = Endpoints::default();
    for link in v.get("links")?.as_array()? {
        if let (Some(rel), Some(href)) = (link.get("rel").and_then(|r| r.as_str()), link.get("href").and_then(|h| h.as_str())) {
            out.add(rel, href);
        }
    }
    out.sort();
    Some(out)
}

/// Reads `<XRD><Link rel=… href=…/></XRD>`.
pub fn parse_xrd(doc: &str) -> Option<Endpoints> {
    // The document may start with an XML declaration, which the element reader refuses.
    let body = match doc.trim_start().strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>")? + 2..],
        None => doc,
    };
    let root = reader::parse_element(body.as_bytes(), &Limits::default()).ok()?;
    if !root.is("XRD", ns::XRD) {
        return None;
    }
    let mut out = Endpoints::default();
    for link in root.children().filter(|c| c.is("Link", ns::XRD)) {
        if let (Some(rel), Some(href)) = (link.attr("rel"), link.attr("href")) {
            out.add(rel, href);
        }
    }
    out.sort();
    Some(out)
}

/// Whether a server URL that came with the page's address (`?endpoint=`, as the widget
/// passes it) may be used without the user choosing it: it is on the page's own origin (a
/// `ws:`/`wss:` URL on the same host and port as the `http:`/`https:` page), or it is one
/// the deployment advertises in the host-meta of the page's origin (`advertised`). Any
/// other server would receive the sign-in of whoever followed a link someone else wrote.
pub fn link_endpoint_allowed(endpoint: &str, page_origin: &str, advertised: &Endpoints) -> bool {
    let endpoint = endpoint.trim();
    let same_origin = origin_of(endpoint).is_some_and(|o| Some(o) == origin_of(page_origin));
    same_origin || advertised.websocket.iter().chain(&advertised.bosh).any(|e| e == endpoint)
}

/// `(scheme, host, port)` of an `http(s):` or `ws(s):` URL, WebSocket schemes counted as
/// their HTTP twins and default ports filled in.
fn origin_of(url: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ("http", 80),
        "https" | "wss" => ("https", 443),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => (&authority[..colon], authority[colon + 1..].parse().ok()?),
        _ => (authority, default_port),
    };
    (!host.is_empty()).then(|| (scheme, host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_host_meta() {
        let doc = r#"{"links":[
            {"rel":"urn:xmpp:alt-connections:xbosh","href":"http://h:5280/http-bind"},
            {"rel":"urn:xmpp:alt-connections:websocket","href":"ws://h:5280/xmpp-websocket"},
            {"rel":"urn:xmpp:alt-connections:websocket","href":"wss://h/xmpp-websocket"},
            {"rel":"urn:xmpp:alt-connections:websocket","href":"javascript:alert(1)"},
            {"rel":"other","href":"https://x"}]}"#;
        assert_eq!(
            parse_json(doc).unwrap(),
            Endpoints {
                websocket: vec!["wss://h/xmpp-websocket".into(), "ws://h:5280/xmpp-websocket".into()],
                bosh: vec!["http://h:5280/http-bind".into()]
            }
        );
        assert!(parse_json("{}").is_none());
        assert!(parse_json("<html>").is_none());
        assert!(parse_json(r#"{"links":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn xrd_host_meta() {
        let doc = "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n\
            <Link rel='urn:xmpp:alt-connections:websocket' href='ws://h:5280/xmpp-websocket'/>\n\
            <Link rel='urn:xmpp:alt-connections:xbosh' href='http://h:5280/http-bind'/>\n</XRD>\n";
        assert_eq!(
            parse_xrd(doc).unwrap(),
            Endpoints { websocket: vec!["ws://h:5280/xmpp-websocket".into()], bosh: vec!["http://h:5280/http-bind".into()] }
        );
        assert!(parse_xrd("<html/>").is_none());
        assert!(parse_xrd("not xml").is_none());
    }

    #[test]
    fn urls() {
        assert_eq!(
            host_meta_urls("https://example.org/"),
            ["https://example.org/.well-known/host-meta.json".to_owned(), "https://example.org/.well-known/host-meta".to_owned()]
        );
    }

    #[test]
    fn endpoints_from_the_link_only_on_this_origin_or_advertised_by_it() {
        let none = Endpoints::default();
        let page = "https://chat.example.org";
        for ok in [
            "wss://chat.example.org/xmpp-websocket",
            "wss://Chat.Example.org:443/xmpp-websocket",
            "https://chat.example.org/http-bind",
            " https://chat.example.org ",
        ] {
            assert!(link_endpoint_allowed(ok, page, &none), "{ok}");
        }
        for refused in [
            "wss://evil.example/xmpp-websocket",
            "ws://chat.example.org/xmpp-websocket",
            "wss://chat.example.org:8443/xmpp-websocket",
            "wss://chat.example.org.evil.example/xmpp-websocket",
            "wss://chat.example.org@evil.example/xmpp-websocket",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!link_endpoint_allowed(refused, page, &none), "{refused}");
        }
        assert!(link_endpoint_allowed("ws://localhost:5280/xmpp-websocket", "http://localhost:5280", &none));
        assert!(!link_endpoint_allowed("ws://localhost:5281/xmpp-websocket", "http://localhost:5280", &none));
        assert!(!link_endpoint_allowed("wss://chat.example.org/xmpp-websocket", "null", &none), "a page without an origin");

        // What the deployment advertises at the page's origin.
        let advertised =
            Endpoints { websocket: vec!["wss://xmpp.example.org/ws".into()], bosh: vec!["https://xmpp.example.org/bosh".into()] };
        assert!(link_endpoint_allowed("wss://xmpp.example.org/ws", page, &advertised));
        assert!(link_endpoint_allowed("https://xmpp.example.org/bosh", page, &advertised));
        assert!(!link_endpoint_allowed("wss://xmpp.example.org/other", page, &advertised));
    }
}
