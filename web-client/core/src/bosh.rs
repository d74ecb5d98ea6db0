//! XEP-0124 BOSH carrying XMPP as XEP-0206 says, without I/O: connection [`Frame`]s go in,
//! HTTP request bodies come out, and response bodies turn back into [`Input`]s.
//!
//! The caller sends every request [`Bosh::next_request`] returns (as a POST), feeds each
//! response body to [`Bosh::on_response`], and asks for the next requests again. There is
//! always one request held by the server, so that it can push stanzas at any time.

use jabberwock_proto::{reader, Element, Limits, Node};

use crate::framing::{Frame, Input};
use crate::ns;

pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// How long the server may hold a request, in seconds; the client's HTTP timeout must be
/// longer.
pub const WAIT_SECS: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoshError {
    #[error("the server's BOSH response is malformed")]
    Malformed,
}

/// A request to POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoshRequest {
    pub rid: u64,
    pub body: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Create,
    Restart,
    Terminate,
}

pub struct Bosh {
    domain: String,
    next_rid: u64,
    sid: Option<String>,
    /// Stanzas and negotiation elements waiting for a request.
    queue: Vec<Element>,
    control: Option<Control>,
    in_flight: u32,
    /// Requests the server lets us have outstanding (`requests`, XEP-0124 §7.1).
    max_requests: u32,
    /// Creation or termination sent: nothing but its answer until then.
    waiting_for_creation: bool,
    terminated: bool,
    limits: Limits,
}

impl Bosh {
    /// `first_rid`: a random number well below 2^53 (XEP-0124 §14.1).
    pub fn new(domain: &str, first_rid: u64) -> Self {
        Bosh {
            domain: domain.to_owned(),
            next_rid: first_rid,
            sid: None,
            queue: Vec::new(),
            control: None,
            in_flight: 0,
            max_requests: 1,
            waiting_for_creation: false,
            terminated: false,
            limits: Limits::default(),
        }
    }

    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Queues a frame from the connection. A restart needs no answer from the server to be
    /// in effect, so it yields the [`Input::Opened`] the connection waits for.
    pub fn push(&mut self, frame: Frame) -> Vec<Input> {
        match frame {
            Frame::Open { restart: false, .. } => {
                self.control = Some(Control::Create);
                vec![]
            }
            Frame::Open { restart: true, .. } => {
                self.control = Some(Control::Restart);
                vec![Input::Opened { id: self.sid.clone() }]
            }
            Frame::Element(el) => {
                self.queue.push(el);
                vec![]
            }
            Frame::Close => {
                self.control = Some(Control::Terminate);
                vec![]
            }
        }
    }

    fn body(&mut self, extra: &[(&str, &str)], children: &[Element]) -> BoshRequest {
        let rid = self.next_rid;
        self.next_rid += 1;
        self.in_flight += 1;
        let mut body = Element::new("body", NS_HTTPBIND).with_attr("rid", rid.to_string());
        if let Some(sid) = &self.sid {
            body.set_attr("sid", sid.as_str());
        }
        for (k, v) in extra {
            body.set_attr(*k, *v);
        }
        for c in children {
            body.push(c.clone());
        }
        let mut xml = body.to_xml_string();
        if extra.iter().any(|(k, _)| k.starts_with("xmpp:")) {
            // Declare the xmpp: prefix on the body.
            let at = "<body".len();
            xml.insert_str(at, &format!(" xmlns:xmpp='{NS_XBOSH}'"));
        }
        BoshRequest { rid, body: xml }
    }

    /// The next request to send now, if one is due.
    pub fn next_request(&mut self) -> Option<BoshRequest> {
        if self.terminated || self.waiting_for_creation {
            return None;
        }
        if self.sid.is_none() {
            if self.control != Some(Control::Create) {
                return None;
            }
            self.control = None;
            self.waiting_for_creation = true;
            let wait = WAIT_SECS.to_string();
            let domain = self.domain.clone();
            return Some(self.body(
                &[
                    ("to", &domain),
                    ("content", "text/xml; charset=utf-8"),
                    ("hold", "1"),
                    ("wait", &wait),
                    ("ver", "1.6"),
                    ("xml:lang", "en"),
                    ("xmpp:version", "1.0"),
                ],
                &[],
            ));
        }
        if self.in_flight >= self.max_requests {
            return None;
        }
        match self.control.take() {
            Some(Control::Restart) => {
                let domain = self.domain.clone();
                return Some(self.body(&[("to", &domain), ("xml:lang", "en"), ("xmpp:restart", "true")], &[]));
            }
            Some(Control::Terminate) => {
                let queued = std::mem::take(&mut self.queue);
                self.terminated = true;
                return Some(self.body(&[("type", "terminate")], &queued));
            }
            Some(Control::Create) | None => {}
        }
        if !self.queue.is_empty() {
            let queued = std::mem::take(&mut self.queue);
            return Some(self.body(&[], &queued));
        }
        // Keep one request held so the server can push.
        (self.in_flight == 0).then(|| self.body(&[], &[]))
    }

    /// A response arrived (HTTP 200). Returns what the connection should see.
    pub fn on_response(&mut self, text: &str) -> Result<Vec<Input>, BoshError> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let body = reader::parse_element(text.as_bytes(), &self.limits).map_err(|_| BoshError::Malformed)?;
        if !body.is("body", NS_HTTPBIND) {
            return Err(BoshError::Malformed);
        }
        let mut out = Vec::new();
        if self.sid.is_none() {
            let sid = body.attr("sid").ok_or(BoshError::Malformed)?;
            self.sid = Some(sid.to_owned());
            self.waiting_for_creation = false;
            // Two requests at most: one held, one to send with.
            self.max_requests = body.attr("requests").and_then(|r| r.parse().ok()).unwrap_or(2).clamp(1, 2);
            out.push(Input::Opened { id: body.attr("authid").or(Some(sid)).map(str::to_owned) });
        }
        for node in body.nodes() {
            if let Node::Element(el) = node {
                out.push(Input::Element(in_client_ns(el)));
            }
        }
        if body.attr("type") == Some("terminate") {
            self.terminated = true;
            out.push(Input::Closed { see_other: None });
        }
        Ok(out)
    }

    /// A request failed (network error or HTTP error status): the session is over.
    pub fn on_failure(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.terminated = true;
    }
}

/// XEP-0206 §6: stanzas in a body without their own `xmlns` are in `jabber:client`.
fn in_client_ns(el: &Element) -> Element {
    if el.ns() != NS_HTTPBIND {
        return el.clone();
    }
    let mut copy = Element::new(el.name(), ns::CLIENT);
    for (k, v) in el.attrs() {
        copy.set_attr(k, v);
    }
    for n in el.nodes() {
        match n {
            Node::Element(c) => copy.push(in_client_ns(c)),
            Node::Text(t) => copy.push_text(t.as_str()),
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        reader::parse_element(xml.as_bytes(), &Limits::default()).unwrap()
    }

    fn open(b: &mut Bosh) -> BoshRequest {
        assert!(b.push(Frame::Open { to: "localhost".into(), restart: false }).is_empty());
        b.next_request().unwrap()
    }

    const CREATED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' \
        xmlns:stream='http://etherx.jabber.org/streams' sid='S1' wait='30' requests='2' hold='1' inactivity='60' \
        xmpp:version='1.0' authid='A1'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features></body>";

    #[test]
    fn session_creation() {
        let mut b = Bosh::new("localhost", 1000);
        assert!(b.next_request().is_none(), "nothing before the connection opens");
        let req = open(&mut b);
        assert_eq!(req.rid, 1000);
        let el = parse(&req.body);
        assert!(el.is("body", NS_HTTPBIND));
        assert_eq!(el.attr("to"), Some("localhost"));
        assert_eq!(el.attr("rid"), Some("1000"));
        assert_eq!(el.attr("sid"), None);
        assert_eq!(el.attr("xmpp:version"), Some("1.0"));
        assert!(b.next_request().is_none(), "nothing else until the session exists");

        let inputs = b.on_response(CREATED).unwrap();
        assert_eq!(inputs[0], Input::Opened { id: Some("A1".into()) });
        let Input::Element(f) = &inputs[1] else { panic!() };
        assert!(f.is("features", ns::STREAM));
        assert_eq!(b.sid(), Some("S1"));

        // Now a poll is held.
        let poll = b.next_request().unwrap();
        assert_eq!(poll.rid, 1001);
        let el = parse(&poll.body);
        assert_eq!(el.attr("sid"), Some("S1"));
        assert!(el.nodes().is_empty());
        assert!(b.next_request().is_none(), "one poll at a time");
    }

    #[test]
    fn stanzas_restart_and_terminate() {
        let mut b = Bosh::new("localhost", 1);
        open(&mut b);
        b.on_response(CREATED).unwrap();
        let _poll = b.next_request().unwrap();

        // Sending uses the second slot, with the stanza inside.
        b.push(Frame::Element(Element::new("auth", ns::SASL).with_attr("mechanism", "SCRAM-SHA-1")));
        let req = b.next_request().unwrap();
        let el = parse(&req.body);
        assert!(el.first_child().unwrap().is("auth", ns::SASL));
        assert!(b.next_request().is_none(), "both slots in use");
        b.push(Frame::Element(Element::new("response", ns::SASL)));
        assert!(b.next_request().is_none(), "queued until a slot frees");

        // The poll comes back with a challenge; the queued element goes out.
        let inputs = b
            .on_response("<body xmlns='http://jabber.org/protocol/httpbind'><challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>eA==</challenge></body>")
            .unwrap();
        assert!(matches!(&inputs[0], Input::Element(e) if e.is("challenge", ns::SASL)));
        let req = b.next_request().unwrap();
        assert!(parse(&req.body).first_child().unwrap().is("response", ns::SASL));

        // A restart is in effect at once for the connection.
        b.on_response("<body xmlns='http://jabber.org/protocol/httpbind'/>").unwrap();
        let inputs = b.push(Frame::Open { to: "localhost".into(), restart: true });
        assert_eq!(inputs, [Input::Opened { id: Some("S1".into()) }]);
        let req = b.next_request().unwrap();
        let el = parse(&req.body);
        assert_eq!(el.attr("xmpp:restart"), Some("true"));
        assert_eq!(el.attr("to"), Some("localhost"));

        // Unprefixed stanzas in a response are jabber:client.
        let inputs = b
            .on_response("<body xmlns='http://jabber.org/protocol/httpbind'><message from='a@b'><body>hi</body></message></body>")
            .unwrap();
        let Input::Element(m) = &inputs[0] else { panic!() };
        assert!(m.is("message", ns::CLIENT));
        assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("hi"));

        // Terminate carries what is queued.
        b.push(Frame::Element(Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")));
        b.push(Frame::Close);
        let req = b.next_request().unwrap();
        let el = parse(&req.body);
        assert_eq!(el.attr("type"), Some("terminate"));
        assert!(el.first_child().unwrap().is("presence", ns::CLIENT));
        assert!(b.is_terminated());
        assert!(b.next_request().is_none());
    }

    #[test]
    fn the_server_ends_the_session() {
        let mut b = Bosh::new("localhost", 1);
        open(&mut b);
        b.on_response(CREATED).unwrap();
        b.next_request().unwrap();
        let inputs = b
            .on_response(
                "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-stream-error'>\
                 <stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict \
                 xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></body>",
            )
            .unwrap();
        assert!(matches!(&inputs[0], Input::Element(e) if e.is("error", ns::STREAM)));
        assert_eq!(inputs[1], Input::Closed { see_other: None });
        assert!(b.next_request().is_none());
        assert_eq!(b.on_response("<html/>"), Err(BoshError::Malformed));
    }

    #[test]
    fn a_failed_request_ends_it() {
        let mut b = Bosh::new("localhost", 1);
        open(&mut b);
        b.on_failure();
        assert!(b.is_terminated());
        assert!(b.next_request().is_none());
    }
}
