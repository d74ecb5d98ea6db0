//! One load-test session, the way a real client opens it: TCP, stream header, STARTTLS,
//! TLS, in-band registration (XEP-0077), SASL PLAIN, stream restart, resource binding and
//! initial presence.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use jabberwock_proto::{ns, Limits, ReadEvent, Stanza, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub type Tls = TlsStream<TcpStream>;

/// Read buffer used while negotiating; freed once the session is idle.
const NEGOTIATION_BUF: usize = 8 * 1024;

/// What a session needs to start.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub connector: tokio_rustls::TlsConnector,
    pub password: String,
    /// Register the account in-band first; an existing account (`conflict`) is fine.
    pub register: bool,
}

/// An established, bound and available session.
pub struct Session {
    pub index: usize,
    pub jid: String,
    pub io: Tls,
    /// The reader, past the last stanza negotiation read. Bytes the server sent after the
    /// presence echo stay buffered here.
    pub reader: StreamReader,
}

/// A connection and a reader over it.
struct Xml<S> {
    io: S,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Xml<S> {
    fn new(io: S) -> Self {
        Xml { io, reader: StreamReader::new(Limits::unlimited()), buf: vec![0; NEGOTIATION_BUF] }
    }

    async fn send(&mut self, data: &str) -> Result<(), String> {
        self.io.write_all(data.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        self.io.flush().await.map_err(|e| format!("write: {e}"))
    }

    async fn next_event(&mut self) -> Result<ReadEvent, String> {
        loop {
            match self.reader.next_event() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(format!("the server sent bad XML: {e}")),
            }
            let n = self.io.read(&mut self.buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.reader.feed(&self.buf[..n]);
        }
    }

    async fn next_stanza(&mut self, what: &str) -> Result<Stanza, String> {
        match self.next_event().await? {
            ReadEvent::Stanza(st) if st.is("error", ns::STREAM) => {
                Err(format!("stream error while waiting for {what}: {}", st.inner()))
            }
            ReadEvent::Stanza(st) => Ok(st),
            ReadEvent::StreamOpen(_) => Err(format!("unexpected stream header while waiting for {what}")),
            ReadEvent::StreamClose => Err(format!("the server closed the stream while waiting for {what}")),
        }
    }

    async fn open_stream(&mut self, domain: &str) -> Result<Stanza, String> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        match self.next_event().await? {
            ReadEvent::StreamOpen(_) => {}
            other => return Err(format!("expected a stream header, got {other:?}")),
        }
        let features = self.next_stanza("stream features").await?;
        if !features.is("features", ns::STREAM) {
            return Err(format!("expected stream features, got <{}>", features.name()));
        }
        Ok(features)
    }

    /// Waits for the iq reply with this id.
    async fn iq_reply(&mut self, id: &str) -> Result<Stanza, String> {
        loop {
            let st = self.next_stanza(&format!("the reply to iq {id}")).await?;
            if st.name() == "iq" && st.id() == Some(id) {
                return Ok(st);
            }
        }
    }
}

/// Opens session number `index` as user `<prefix><index>`.
pub async fn establish(target: &Target, prefix: &str, index: usize) -> Result<Session, String> {
    let user = format!("{prefix}{index}");
    let domain = target.domain.as_str();
    let tcp = TcpStream::connect(target.addr).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;

    let mut plain = Xml::new(tcp);
    let features = plain.open_stream(domain).await?;
    if !features.inner().contains("starttls") {
        return Err("the server does not offer STARTTLS".into());
    }
    plain.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
    let proceed = plain.next_stanza("<proceed/>").await?;
    if !proceed.is("proceed", ns::TLS) {
        return Err(format!("STARTTLS refused: <{}>", proceed.name()));
    }
    let name = rustls::pki_types::ServerName::try_from(domain.to_owned()).map_err(|e| format!("server name: {e}"))?;
    let tls = target.connector.connect(name, plain.io).await.map_err(|e| format!("TLS handshake: {e}"))?;

    let mut x = Xml::new(tls);
    let features = x.open_stream(domain).await?;
    let password = &target.password;
    if target.register {
        if !features.inner().contains(ns::REGISTER_FEATURE) {
            return Err("the server does not offer in-band registration (allow_registration = false?)".into());
        }
        x.send(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>{user}</username><password>{password}</password></query></iq>"
        ))
        .await?;
        let reply = x.iq_reply("reg").await?;
        match reply.stanza_type() {
            Some("result") => {}
            Some("error") if reply.inner().contains("<conflict") => {}
            _ => return Err(format!("registration failed: {}", String::from_utf8_lossy(&reply.to_bytes()))),
        }
    }
    if !features.inner().contains(">PLAIN<") {
        return Err("the server does not offer SASL PLAIN".into());
    }
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    x.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await?;
    let result = x.next_stanza("the SASL result").await?;
    if !result.is("success", ns::SASL) {
        return Err(format!("authentication failed: {}", String::from_utf8_lossy(&result.to_bytes())));
    }
    x.reader.restart();
    let features = x.open_stream(domain).await?;
    if !features.inner().contains(ns::BIND) {
        return Err("the server does not offer resource binding".into());
    }
    x.send(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>",
    )
    .await?;
    let reply = x.iq_reply("bind").await?;
    if reply.stanza_type() != Some("result") {
        return Err(format!("bind failed: {}", String::from_utf8_lossy(&reply.to_bytes())));
    }
    let jid = jid_of_bind(&reply).ok_or("bind result without a JID")?;

    // Initial presence: the server echoes it to the session itself (RFC 6121 §4.2.2).
    x.send("<presence/>").await?;
    loop {
        let st = x.next_stanza("the presence echo").await?;
        if st.name() == "presence" && st.from() == Some(jid.as_str()) {
            break;
        }
    }
    let Xml { io, mut reader, .. } = x;
    reader.release_buffer();
    Ok(Session { index, jid, io, reader })
}

fn jid_of_bind(reply: &Stanza) -> Option<String> {
    let el = reply.to_element().ok()?;
    el.child("bind", ns::BIND)?.child_text("jid", ns::BIND)
}

/// With `deadline`, as one error.
pub async fn establish_within(
    target: &Target,
    prefix: &str,
    index: usize,
    deadline: Duration,
) -> Result<Session, String> {
    match tokio::time::timeout(deadline, establish(target, prefix, index)).await {
        Ok(r) => r.map_err(|e| format!("{prefix}{index}: {e}")),
        Err(_) => Err(format!("{prefix}{index}: not established within {deadline:?}")),
    }
}

/// Accepts any certificate: the server under test uses a generated self-signed one.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    jabberwock_tests::tls_connector(&[])
}
