//! A BOSH client (XEP-0124/0206) of raw XML over plain HTTP requests, one connection each.

use std::net::SocketAddr;

use jabberwock_proto::{ns, reader, Element, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TIMEOUT;

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";

/// One HTTP request on its own connection; returns the status and the raw response.
pub async fn http(addr: SocketAddr, method: &str, extra_headers: &str, body: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    // The server may answer (413) and close before a huge body is written whole.
    let _ = tcp.write_all(req.as_bytes()).await;
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT * 3, tcp.read_to_string(&mut out)).await.expect("response in time").unwrap();
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out)
}

/// POSTs a body and parses the `<body/>` the server answers.
pub async fn post(addr: SocketAddr, body: &str) -> (u16, Element) {
    let (status, raw) = http(addr, "POST", "", body).await;
    let xml = &raw[raw.find("\r\n\r\n").expect("headers end") + 4..];
    let el = reader::parse_element(xml.as_bytes(), &Limits::unlimited()).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert!(el.is("body", HTTPBIND), "{raw}");
    (status, el)
}

/// A session-creation request.
pub fn creation(wait: u32, rid: u64) -> String {
    format!("<body xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}' to='localhost' wait='{wait}' hold='1' ver='1.6' xmpp:version='1.0' content='text/xml; charset=utf-8'/>")
}

/// A BOSH session as a client sees it: where it posts, its sid, the last rid it used.
pub struct Bosh {
    pub addr: SocketAddr,
    pub sid: String,
    pub rid: u64,
}

impl Bosh {
    /// Creates a session; returns it with the stream features of the creation response.
    pub async fn create(addr: SocketAddr, wait: u32) -> (Bosh, Element) {
        Self::create_at(addr, wait, 1000).await
    }

    /// [`Bosh::create`] with the first request id.
    pub async fn create_at(addr: SocketAddr, wait: u32, rid: u64) -> (Bosh, Element) {
        let (status, body) = post(addr, &creation(wait, rid)).await;
        assert_eq!(status, 200, "{}", body.to_xml_string());
        let sid = body.attr("sid").expect("sid").to_owned();
        assert_eq!(body.attr("xmpp:version"), Some("1.0"));
        assert!(body.attr("inactivity").is_some() && body.attr("requests").is_some());
        let features = body.child("features", ns::STREAM).expect("features in the creation response").clone();
        (Bosh { addr, sid, rid }, features)
    }

    pub fn next(&mut self, attrs: &str, content: &str) -> String {
        self.rid += 1;
        format!("<body xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='{}' sid='{}'{attrs}>{content}</body>", self.rid, self.sid)
    }

    pub async fn send(&mut self, attrs: &str, content: &str) -> Element {
        let body = self.next(attrs, content);
        let (status, el) = post(self.addr, &body).await;
        assert_eq!(status, 200, "{}", el.to_xml_string());
        el
    }

    /// SCRAM-SHA-256 (no PLAIN over plain HTTP), restart, bind.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        let client = crate::scram::Client::new(user, "n,,", Vec::new());
        let auth = format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", client.first());
        let r = self.send("", &auth).await;
        let challenge = r.child("challenge", ns::SASL).expect("challenge").text();
        let response = format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>", client.last(&challenge, password));
        let r = self.send("", &response).await;
        assert!(r.child("success", ns::SASL).is_some(), "{}", r.to_xml_string());
        let r = self.send(" xmpp:restart='true' to='localhost'", "").await;
        assert!(r.child("features", ns::STREAM).and_then(|f| f.child("bind", ns::BIND)).is_some(), "{}", r.to_xml_string());
        let r = self
            .send("", "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bosh</resource></bind></iq>")
            .await;
        r.child("iq", ns::CLIENT).and_then(|iq| iq.child("bind", ns::BIND)).and_then(|b| b.child_text("jid", ns::BIND)).expect("bound")
    }
}
