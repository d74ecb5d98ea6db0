//! XEP-0363 HTTP File Upload: finding the server's upload service, asking it for a slot,
//! and checking the slot before the browser sends the file anywhere.
//!
//! The PUT itself is the view layer's (it needs the browser's HTTP stack and its progress
//! events); what it is given has been checked here: https URLs when the page is https, no
//! header but the three the XEP allows, nothing oversized.

use jabberwock_proto::Element;

use crate::client::{Client, Event};
use crate::ns;
use crate::stanza::ErrorInfo;

/// Longest URL accepted in a slot: a longer one is not a URL anyone needs.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest header value accepted in a slot.
pub const MAX_HEADER_BYTES: usize = 4096;
/// At most this many services on the server are asked whether they take uploads.
pub const MAX_PROBED_ITEMS: usize = 20;

/// An upload service, from its disco#info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub jid: String,
    /// `max-file-size` from its XEP-0128 form, when it names one.
    pub max_file_size: Option<u64>,
}

/// Where to PUT a file and where it will be served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub put: String,
    pub get: String,
    /// Only `Authorization`, `Cookie` and `Expires` (XEP-0363 §5).
    pub headers: Vec<(String, String)>,
}

/// What the view layer hears about an upload it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    /// The upload service is known (or changed).
    Service(Service),
    /// The slot for upload `request` is ready: PUT the file there.
    Slot { request: u64, slot: Slot },
    /// No slot for upload `request`: why, for the user.
    Failed { request: u64, reason: String },
}

/// Why a slot answer is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("the upload service's answer has no slot")]
    NoSlot,
    #[error("the upload service gave no {0} URL")]
    MissingUrl(&'static str),
    #[error("the upload service gave an unusable {0} URL")]
    BadUrl(&'static str),
    #[error("the upload service gave an insecure {0} URL on a secure page")]
    Insecure(&'static str),
    #[error("the upload service asked for a header it may not set ({0})")]
    Header(String),
}

pub fn disco_items(id: &str, to: &str) -> Element {
    crate::stanza::iq("get", id, Some(to)).with_child(Element::new("query", ns::DISCO_ITEMS))
}

pub fn disco_info(id: &str, to: &str) -> Element {
    crate::stanza::iq("get", id, Some(to)).with_child(Element::new("query", ns::DISCO_INFO))
}

/// The service `jid` answered disco#info with `query`: an upload service, if it says so.
pub fn service_from_info(jid: &str, query: &Element) -> Option<Service> {
    let features = query.children().filter(|f| f.is("feature", ns::DISCO_INFO));
    if !features.into_iter().any(|f| f.attr("var") == Some(ns::UPLOAD)) {
        return None;
    }
    let max_file_size = query
        .children()
        .filter(|x| x.is("x", ns::DATA_FORMS))
        .find(|x| x.children().any(|f| f.attr("var") == Some("FORM_TYPE") && f.child_text("value", ns::DATA_FORMS).as_deref() == Some(ns::UPLOAD)))
        .and_then(|x| x.children().find(|f| f.attr("var") == Some("max-file-size")))
        .and_then(|f| f.child_text("value", ns::DATA_FORMS))
        .and_then(|v| v.trim().parse().ok());
    Some(Service { jid: jid.to_owned(), max_file_size })
}

/// Whether a file of `size` bytes may go to `service`: a sentence for the user if not.
pub fn check_size(size: u64, service: &Service) -> Result<(), String> {
    match service.max_file_size {
        Some(max) if size > max => Err(format!("This file is {}; the server takes files up to {}.", human_size(size), human_size(max))),
        _ if size == 0 => Err("This file is empty.".to_owned()),
        _ => Ok(()),
    }
}

/// `1.5 MB`, `300 KB`, `12 bytes`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1_000_000.0),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} bytes"),
    }
}

/// XEP-0363 §4: a slot for `filename` of `size` bytes.
pub fn slot_request(id: &str, service: &str, filename: &str, size: u64, content_type: Option<&str>) -> Element {
    let request = Element::new("request", ns::UPLOAD)
        .with_attr("filename", filename)
        .with_attr("size", size.to_string())
        .with_opt_attr("content-type", content_type.filter(|t| !t.is_empty()));
    crate::stanza::iq("get", id, Some(service)).with_child(request)
}

/// Checks the service's answer; `secure_page`: the page is served over https, so that the
/// browser would refuse (or leak) plain http.
pub fn parse_slot(payload: Option<&Element>, secure_page: bool) -> Result<Slot, SlotError> {
    let slot = payload.filter(|p| p.is("slot", ns::UPLOAD)).ok_or(SlotError::NoSlot)?;
    let url = |name: &'static str| -> Result<(String, &Element), SlotError> {
        let el = slot.child(name, ns::UPLOAD).ok_or(SlotError::MissingUrl(name))?;
        let url = el.attr("url").ok_or(SlotError::MissingUrl(name))?;
        if url.len() > MAX_URL_BYTES || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SlotError::BadUrl(name));
        }
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") || url.split_once("://").is_none_or(|(_, rest)| rest.is_empty() || rest.starts_with('/')) {
            return Err(SlotError::BadUrl(name));
        }
        if secure_page && !https {
            return Err(SlotError::Insecure(name));
        }
        Ok((url.to_owned(), el))
    };
    let (put, put_el) = url("put")?;
    let (get, _) = url("get")?;
    let mut headers = Vec::new();
    for h in put_el.children().filter(|h| h.is("header", ns::UPLOAD)) {
        let name = h.attr("name").unwrap_or_default();
        let canonical = ["Authorization", "Cookie", "Expires"].into_iter().find(|a| a.eq_ignore_ascii_case(name));
        let value = h.text();
        match canonical {
            // A line break would start another header.
            Some(n) if value.len() <= MAX_HEADER_BYTES && !value.contains(['\r', '\n']) => headers.push((n.to_owned(), value)),
            _ => return Err(SlotError::Header(name.chars().take(40).collect())),
        }
    }
    Ok(Slot { put, get, headers })
}

/// What the client keeps for uploads: the service, and the iqs under way.
#[derive(Clone, Debug, Default)]
pub struct State {
    service: Option<Service>,
    pending: Vec<(String, Query)>,
    next_request: u64,
    /// The page is https: slots must be too.
    secure_page: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Query {
    Items,
    Info(String),
    Slot(u64),
}

impl Client {
    /// Looks for the server's upload service (disco#items, then disco#info of each).
    pub(crate) fn discover_upload(&mut self, out: &mut Vec<Event>) {
        let id = self.id();
        let domain = self.account().domain.clone();
        self.upload.pending.push((id.clone(), Query::Items));
        self.send(disco_items(&id, &domain), out);
    }

    /// An iq answer that no other part of the client was waiting for: perhaps ours.
    pub(crate) fn upload_answer(&mut self, id: &str, answer: Result<Option<Element>, ErrorInfo>, out: &mut Vec<Event>) {
        let Some(at) = self.upload.pending.iter().position(|(i, _)| i == id) else { return };
        let (_, query) = self.upload.pending.remove(at);
        match (query, answer) {
            (Query::Items, Ok(Some(q))) if q.is("query", ns::DISCO_ITEMS) => {
                let jids: Vec<String> = q.children().filter_map(|i| i.attr("jid")).take(MAX_PROBED_ITEMS).map(str::to_owned).collect();
                for jid in jids {
                    let id = self.id();
                    self.upload.pending.push((id.clone(), Query::Info(jid.clone())));
                    self.send(disco_info(&id, &jid), out);
                }
            }
            (Query::Info(jid), Ok(Some(q))) if q.is("query", ns::DISCO_INFO) && self.upload.service.is_none() => {
                if let Some(service) = service_from_info(&jid, &q) {
                    self.upload.service = Some(service.clone());
                    out.push(Event::Upload(UploadEvent::Service(service)));
                }
            }
            (Query::Slot(request), Ok(payload)) => {
                let event = match parse_slot(payload.as_ref(), self.upload.secure_page) {
                    Ok(slot) => UploadEvent::Slot { request, slot },
                    Err(e) => UploadEvent::Failed { request, reason: e.to_string() },
                };
                out.push(Event::Upload(event));
            }
            (Query::Slot(request), Err(e)) => {
                let reason = match e.condition.as_str() {
                    "not-acceptable" => format!("the server refused this file: {}", e.text.as_deref().unwrap_or("too large")),
                    "resource-constraint" => format!("the upload quota is used up{}", e.text.map(|t| format!(" ({t})")).unwrap_or_default()),
                    _ => e.describe(),
                };
                out.push(Event::Upload(UploadEvent::Failed { request, reason }));
            }
            _ => {}
        }
    }

    pub fn upload_service(&self) -> Option<&Service> {
        self.upload.service.as_ref()
    }

    /// Tells the client the page is served over https (slots must then be https too).
    pub fn set_secure_page(&mut self, secure: bool) {
        self.upload.secure_page = secure;
    }

    /// Asks for a slot to upload `filename`; the answer comes as an [`UploadEvent`] with
    /// the returned request number. A file the service would refuse is refused here
    /// first, with a sentence for the user.
    pub fn request_upload(&mut self, filename: &str, size: u64, content_type: Option<&str>) -> Result<(u64, Vec<Event>), String> {
        let Some(service) = self.upload.service.clone() else { return Err("This server offers no file upload.".to_owned()) };
        check_size(size, &service)?;
        if !self.is_online() {
            return Err("Not connected.".to_owned());
        }
        // Path separators are not part of a name (a file from a drop has none anyway).
        let name = filename.rsplit(['/', '\\']).next().filter(|n| !n.trim().is_empty()).unwrap_or("file");
        self.upload.next_request += 1;
        let request = self.upload.next_request;
        let id = self.id();
        self.upload.pending.push((id.clone(), Query::Slot(request)));
        let mut out = Vec::new();
        self.send(slot_request(&id, &service.jid, name, size, content_type), &mut out);
        Ok((request, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{online, sent, stanza};
    use jabberwock_proto::{reader, Limits};

    fn parse(xml: &str) -> Element {
        reader::parse_element(xml.as_bytes(), &Limits::default()).unwrap()
    }

    fn slot(inner: &str) -> Element {
        parse(&format!("<slot xmlns='urn:xmpp:http:upload:0'>{inner}</slot>"))
    }

    const GOOD: &str = "<put url='https://up.x/p/1/cat.png'><header name='Authorization'>Basic Zm9v</header><header name='expires'>soon</header></put><get url='https://up.x/g/1/cat.png'/>";

    #[test]
    fn a_good_slot_is_taken() {
        let s = parse_slot(Some(&slot(GOOD)), true).unwrap();
        assert_eq!((s.put.as_str(), s.get.as_str()), ("https://up.x/p/1/cat.png", "https://up.x/g/1/cat.png"));
        assert_eq!(s.headers, [("Authorization".to_owned(), "Basic Zm9v".to_owned()), ("Expires".to_owned(), "soon".to_owned())]);
        // Plain http is fine on a plain http page (a development server).
        assert!(parse_slot(Some(&slot("<put url='http://localhost:5280/u/1'/><get url='http://localhost:5280/u/1'/>")), false).is_ok());
    }

    #[test]
    fn bad_slots_are_refused() {
        let long = format!("https://up.x/{}", "a".repeat(MAX_URL_BYTES));
        for (inner, secure, expected) in [
            ("<get url='https://up.x/g'/>", true, SlotError::MissingUrl("put")),
            ("<put url='https://up.x/p'/>", true, SlotError::MissingUrl("get")),
            ("<put/><get url='https://up.x/g'/>", true, SlotError::MissingUrl("put")),
            ("<put url='http://up.x/p'/><get url='https://up.x/g'/>", true, SlotError::Insecure("put")),
            ("<put url='https://up.x/p'/><get url='http://up.x/g'/>", true, SlotError::Insecure("get")),
            ("<put url='javascript:alert(1)'/><get url='https://up.x/g'/>", false, SlotError::BadUrl("put")),
            ("<put url='https://up.x/p'/><get url='https:///g'/>", false, SlotError::BadUrl("get")),
            ("<put url='https://up.x/p q'/><get url='https://up.x/g'/>", false, SlotError::BadUrl("put")),
            (&format!("<put url='{long}'/><get url='https://up.x/g'/>"), true, SlotError::BadUrl("put")),
            (&format!("<put url='https://up.x/p'/><get url='{long}'/>"), true, SlotError::BadUrl("get")),
            ("<put url='https://up.x/p'><header name='Origin'>evil</header></put><get url='https://up.x/g'/>", true, SlotError::Header("Origin".into())),
            ("<put url='https://up.x/p'><header name='Cookie'>a&#10;X-Evil: 1</header></put><get url='https://up.x/g'/>", true, SlotError::Header("Cookie".into())),
        ] {
            assert_eq!(parse_slot(Some(&slot(inner)), secure), Err(expected), "{inner}");
        }
        let huge = format!("<put url='https://up.x/p'><header name='Cookie'>{}</header></put><get url='https://up.x/g'/>", "c".repeat(MAX_HEADER_BYTES + 1));
        assert!(matches!(parse_slot(Some(&slot(&huge)), true), Err(SlotError::Header(_))));
        assert_eq!(parse_slot(None, true), Err(SlotError::NoSlot));
        assert_eq!(parse_slot(Some(&parse("<query xmlns='jabber:iq:roster'/>")), true), Err(SlotError::NoSlot));
    }

    #[test]
    fn sizes_are_checked_before_asking() {
        let s = Service { jid: "upload.x".into(), max_file_size: Some(1_000_000) };
        assert!(check_size(1_000_000, &s).is_ok());
        assert_eq!(check_size(2_500_000, &s), Err("This file is 2.5 MB; the server takes files up to 1.0 MB.".into()));
        assert!(check_size(0, &s).is_err());
        assert!(check_size(u64::MAX, &Service { jid: "u".into(), max_file_size: None }).is_ok(), "no limit named");
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(300_000), "300 KB");
    }

    #[test]
    fn the_service_is_discovered_and_slots_requested() {
        let mut c = online("");
        assert_eq!(c.request_upload("a.png", 10, None), Err("This server offers no file upload.".into()));
        let mut out = Vec::new();
        c.discover_upload(&mut out);
        let items = sent(&out);
        assert_eq!((items[0].attr("to"), items[0].child("query", ns::DISCO_ITEMS).is_some()), (Some("localhost"), true));
        let id = items[0].attr("id").unwrap();
        let ev = stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{id}' from='localhost'><query xmlns='http://jabber.org/protocol/disco#items'><item jid='conference.localhost'/><item jid='upload.localhost'/></query></iq>"));
        let infos = sent(&ev);
        assert_eq!(infos.len(), 2);
        let info_id = |to: &str| infos.iter().find(|i| i.attr("to") == Some(to)).unwrap().attr("id").unwrap().to_owned();
        stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{}' from='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='http://jabber.org/protocol/muc'/></query></iq>", info_id("conference.localhost")));
        assert!(c.upload_service().is_none());
        let ev = stanza(&mut c, &format!(
            "<iq xmlns='jabber:client' type='result' id='{}' from='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'>\
             <feature var='urn:xmpp:http:upload:0'/><x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field><field var='max-file-size'><value>1000</value></field></x></query></iq>",
            info_id("upload.localhost")
        ));
        let service = Service { jid: "upload.localhost".into(), max_file_size: Some(1000) };
        assert!(ev.contains(&Event::Upload(UploadEvent::Service(service.clone()))));
        assert_eq!(c.upload_service(), Some(&service));

        // Too large: refused before asking.
        assert!(c.request_upload("big.png", 1001, Some("image/png")).unwrap_err().contains("up to 1 KB"));
        let (request, out) = c.request_upload("C:\\photos\\cat.png", 600, Some("image/png")).unwrap();
        let r = sent(&out)[0].clone();
        let req = r.child("request", ns::UPLOAD).unwrap();
        assert_eq!((r.attr("to"), req.attr("filename"), req.attr("size"), req.attr("content-type")), (Some("upload.localhost"), Some("cat.png"), Some("600"), Some("image/png")));
        let ev = stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{}' from='upload.localhost'><slot xmlns='urn:xmpp:http:upload:0'>{GOOD}</slot></iq>", r.attr("id").unwrap()));
        assert!(matches!(&ev[..], [Event::Upload(UploadEvent::Slot { request: n, slot })] if *n == request && slot.get.ends_with("cat.png")));
        // An oversized answer: refused, and said so.
        let (request, out) = c.request_upload("dog.png", 600, None).unwrap();
        let id = sent(&out)[0].attr("id").unwrap().to_owned();
        let long = "a".repeat(MAX_URL_BYTES);
        let ev = stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{id}'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://up.x/{long}'/><get url='https://up.x/g'/></slot></iq>"));
        assert_eq!(ev, [Event::Upload(UploadEvent::Failed { request, reason: "the upload service gave an unusable put URL".into() })]);
        // An error from the service.
        let (request, out) = c.request_upload("dog.png", 600, None).unwrap();
        let id = sent(&out)[0].attr("id").unwrap().to_owned();
        let ev = stanza(&mut c, &format!("<iq xmlns='jabber:client' type='error' id='{id}'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>daily quota</text></error></iq>"));
        assert_eq!(ev, [Event::Upload(UploadEvent::Failed { request, reason: "the upload quota is used up (daily quota)".into() })]);
        // An answer nobody asked for is ignored.
        assert!(stanza(&mut c, "<iq xmlns='jabber:client' type='result' id='zzz'><slot xmlns='urn:xmpp:http:upload:0'/></iq>").is_empty());
    }
}
