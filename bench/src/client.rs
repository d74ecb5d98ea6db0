//! One load-test session, the way a real client opens it, over either transport:
//!
//! * TCP: stream header, STARTTLS, TLS;
//! * WebSocket (RFC 7395): the `xmpp` subprotocol at `/xmpp-websocket`, one element per
//!   text message, `<open/>` instead of the stream header;
//!
//! then SASL PLAIN, stream restart, resource binding and initial presence (or, with
//! [`Auth::Fast`], one SASL2 exchange signing in with a FAST token and binding inline,
//! then initial presence); or, on a connection of its own beforehand, in-band
//! registration (XEP-0077), which also fetches each account's FAST token. Past the connection, everything goes through [`Tx`] and [`Rx`], which
//! hide the transport from the negotiation and from the message phase.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use jabberwock_proto::{Limits, ReadEvent, Stanza, StreamHeader, StreamReader, ns, reader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Tls = TlsStream<TcpStream>;
type Ws = WebSocketStream<TcpStream>;

/// Read buffer of a session (a TCP one's is allocated when reading, freed once idle).
const READ_BUF: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::WebSocket => "WebSocket",
        })
    }
}

/// How sessions sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// SASL PLAIN, stream restart, resource binding: one PBKDF2 on the server per login.
    Plain,
    /// SASL SCRAM-SHA-256, stream restart, resource binding: the PBKDF2 is the client's
    /// (this tool's); the server checks the proof against its stored keys.
    Scram,
    /// SASL2 with a FAST token (XEP-0484, HT-SHA-256-NONE) and Bind2 inline: no PBKDF2 and
    /// no restart. The token comes from a password login at registration.
    Fast,
}

/// What a session needs to start.
#[derive(Clone)]
pub struct Target {
    /// The STARTTLS client port.
    pub addr: SocketAddr,
    /// A second node of a cluster serving the same accounts: odd sessions sign in there.
    pub peer_addr: Option<SocketAddr>,
    /// The HTTP listener serving `/xmpp-websocket`, for WebSocket sessions.
    pub ws_addr: Option<SocketAddr>,
    pub domain: String,
    pub connector: tokio_rustls::TlsConnector,
    pub password: String,
    pub auth: Auth,
    /// With [`Auth::Fast`]: each account's current token, by session index.
    pub tokens: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<usize, String>>>,
}

impl Target {
    /// The target session `index` signs in at: with a peer node, odd sessions go there.
    pub fn for_session(&self, index: usize) -> Target {
        let mut target = self.clone();
        if let (Some(peer), 1) = (self.peer_addr, index % 2) {
            target.addr = peer;
        }
        target
    }
}

const SASL2: &str = "urn:xmpp:sasl:2";
const FAST: &str = "urn:xmpp:fast:0";

fn user_agent(index: usize) -> String {
    format!("<user-agent id='load-{index}'/>")
}

/// Keeps the token a SASL2 success carries, for the account's next login.
fn keep_token(target: &Target, index: usize, success: &Stanza) -> Result<(), String> {
    let el = success.to_element().map_err(|_| "unreadable SASL2 success")?;
    let token = el.child("token", FAST).and_then(|t| t.attr("token")).ok_or("no FAST token in the SASL2 success")?;
    target.tokens.lock().expect("tokens").insert(index, token.to_owned());
    Ok(())
}

/// An established, bound and available session.
pub struct Session {
    pub index: usize,
    pub jid: String,
    /// The TCP socket under the session, to check that the server keeps it open.
    pub fd: RawFd,
    /// With XEP-0198 enabled, the stanzas received since (the `h` to acknowledge).
    pub sm_handled: Option<u32>,
    pub tx: Tx,
    pub rx: Rx,
}

impl Session {
    /// Whether the server has closed this connection (non-destructive: peeks at the socket).
    pub fn closed_by_peer(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the socket is open as long as `self` is, and the buffer is one byte;
        // MSG_PEEK leaves the data in place.
        let n = unsafe { libc::recv(self.fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        // 0 is end of file; -1 with EAGAIN is an open, quiet connection; data is not
        // expected on an idle session but means it is still open.
        n == 0 || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
    }

    /// Sends `<iq type='set'>` with this payload and waits for its result.
    pub async fn iq_set(&mut self, id: &str, payload: &str) -> Result<(), String> {
        self.tx.send(&format!("<iq type='set' id='{id}' xmlns='jabber:client'>{payload}</iq>")).await?;
        let reply = iq_reply(&mut self.rx, id).await?;
        if reply.stanza_type() != Some("result") {
            return Err(format!("iq {id} failed: {}", String::from_utf8_lossy(&reply.to_bytes())));
        }
        Ok(())
    }

    /// Enables XEP-0198 (without resumption) and waits for `<enabled/>`; from then on the
    /// session must answer the server's `<r/>` (see the message phase's reader).
    pub async fn enable_sm(&mut self) -> Result<(), String> {
        self.tx.send(&format!("<enable xmlns='{}'/>", ns::SM)).await?;
        loop {
            let st = self.rx.next_stanza("<enabled/>").await?;
            if st.is("enabled", ns::SM) {
                self.sm_handled = Some(0);
                return Ok(());
            }
            if st.is("failed", ns::SM) {
                return Err(format!("stream management refused: {}", st.inner()));
            }
        }
    }
}

impl Session {
    /// The bare JID.
    pub fn bare(&self) -> &str {
        bare(&self.jid)
    }
}

/// The bare form of a JID.
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// The sending side of a session: whole elements (or a stream header).
pub enum Tx {
    Tcp(WriteHalf<Tls>),
    Ws(SplitSink<Ws, Message>),
}

impl Tx {
    pub async fn send(&mut self, data: &str) -> Result<(), String> {
        match self {
            Tx::Tcp(io) => write_flush(io, data).await,
            Tx::Ws(sink) => sink.send(Message::text(data)).await.map_err(|e| format!("WebSocket send: {e}")),
        }
    }

    fn transport(&self) -> Transport {
        match self {
            Tx::Tcp(_) => Transport::Tcp,
            Tx::Ws(_) => Transport::WebSocket,
        }
    }
}

/// The receiving side of a session, as stream events: on a WebSocket, `<open/>` and
/// `<close/>` are the stream's opening and end, every other message one stanza.
pub enum Rx {
    Tcp(Box<Bytes<ReadHalf<Tls>>>),
    Ws(SplitStream<Ws>),
}

impl Rx {
    /// The next event. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn next_event(&mut self) -> Result<ReadEvent, String> {
        match self {
            Rx::Tcp(bytes) => bytes.next_event().await,
            Rx::Ws(stream) => loop {
                let text = match stream.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => return Err("the server sent a binary WebSocket message".into()),
                    // The WebSocket layer answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return Err("the server closed the connection".into()),
                    Some(Err(e)) => return Err(format!("WebSocket read: {e}")),
                };
                let st = reader::parse_stanza(text.as_bytes(), &Limits::unlimited())
                    .map_err(|e| format!("the server sent bad XML: {e}"))?;
                return Ok(if st.is("open", ns::FRAMING) {
                    ReadEvent::StreamOpen(StreamHeader { from: st.from().map(str::to_owned), ..Default::default() })
                } else if st.is("close", ns::FRAMING) {
                    ReadEvent::StreamClose
                } else {
                    ReadEvent::Stanza(st)
                });
            },
        }
    }

    pub async fn next_stanza(&mut self, what: &str) -> Result<Stanza, String> {
        stanza_of(self.next_event().await?, what)
    }

    /// After SASL success: a new stream follows.
    fn restart(&mut self) {
        match self {
            Rx::Tcp(bytes) => bytes.reader.restart(),
            Rx::Ws(_) => {}
        }
    }

    /// Frees the read buffers of an idle session.
    fn release(&mut self) {
        match self {
            Rx::Tcp(bytes) => {
                bytes.reader.release_buffer();
                bytes.buf = Vec::new();
            }
            Rx::Ws(_) => {}
        }
    }
}

/// An XMPP stream read from a byte stream (plain TCP, then TLS).
pub struct Bytes<R> {
    io: R,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Bytes<R> {
    fn new(io: R) -> Self {
        Bytes { io, reader: StreamReader::new(Limits::unlimited()), buf: Vec::new() }
    }

    async fn next_event(&mut self) -> Result<ReadEvent, String> {
        loop {
            match self.reader.next_event() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(format!("the server sent bad XML: {e}")),
            }
            if self.buf.is_empty() {
                self.buf = vec![0; READ_BUF];
            }
            let n = self.io.read(&mut self.buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.reader.feed(&self.buf[..n]);
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(io: &mut W, data: &str) -> Result<(), String> {
    io.write_all(data.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    io.flush().await.map_err(|e| format!("write: {e}"))
}

fn stanza_of(event: ReadEvent, what: &str) -> Result<Stanza, String> {
    match event {
        ReadEvent::Stanza(st) if st.is("error", ns::STREAM) => {
            Err(format!("stream error while waiting for {what}: {}", st.inner()))
        }
        ReadEvent::Stanza(st) => Ok(st),
        ReadEvent::StreamOpen(_) => Err(format!("unexpected stream header while waiting for {what}")),
        ReadEvent::StreamClose => Err(format!("the server closed the stream while waiting for {what}")),
    }
}

fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
    )
}

/// Opens (or, after authentication, reopens) the stream and returns its features.
async fn open_stream(tx: &mut Tx, rx: &mut Rx, domain: &str) -> Result<Stanza, String> {
    match tx.transport() {
        Transport::Tcp => tx.send(&stream_header(domain)).await?,
        Transport::WebSocket => {
            tx.send(&format!("<open xmlns='{}' to='{domain}' version='1.0'/>", ns::FRAMING)).await?;
        }
    }
    match rx.next_event().await? {
        ReadEvent::StreamOpen(_) => {}
        other => return Err(format!("expected the stream's opening, got {other:?}")),
    }
    expect_features(rx.next_stanza("stream features").await?)
}

fn expect_features(st: Stanza) -> Result<Stanza, String> {
    if st.is("features", ns::STREAM) { Ok(st) } else { Err(format!("expected stream features, got <{}>", st.name())) }
}

/// Waits for the iq reply with this id.
async fn iq_reply(rx: &mut Rx, id: &str) -> Result<Stanza, String> {
    loop {
        let st = rx.next_stanza(&format!("the reply to iq {id}")).await?;
        if st.name() == "iq" && st.id() == Some(id) {
            return Ok(st);
        }
    }
}

/// Plain TCP, STARTTLS, TLS.
async fn connect_tcp(target: &Target, mut tcp: TcpStream) -> Result<(Tx, Rx), String> {
    let domain = target.domain.as_str();
    {
        let (rd, mut wr) = tcp.split();
        let mut plain = Bytes::new(rd);
        write_flush(&mut wr, &stream_header(domain)).await?;
        match plain.next_event().await? {
            ReadEvent::StreamOpen(_) => {}
            other => return Err(format!("expected a stream header, got {other:?}")),
        }
        let features = expect_features(stanza_of(plain.next_event().await?, "stream features")?)?;
        if !features.inner().contains("starttls") {
            return Err("the server does not offer STARTTLS".into());
        }
        write_flush(&mut wr, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
        let proceed = stanza_of(plain.next_event().await?, "<proceed/>")?;
        if !proceed.is("proceed", ns::TLS) {
            return Err(format!("STARTTLS refused: <{}>", proceed.name()));
        }
    }
    let name = rustls::pki_types::ServerName::try_from(domain.to_owned()).map_err(|e| format!("server name: {e}"))?;
    let tls = target.connector.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
    let (rd, wr) = tokio::io::split(tls);
    Ok((Tx::Tcp(wr), Rx::Tcp(Box::new(Bytes::new(rd)))))
}

/// The WebSocket handshake. `X-Forwarded-Proto: https` from 127.0.0.1 (a trusted proxy
/// by default) makes the server treat the connection as encrypted and offer PLAIN, as it
/// does behind a TLS-terminating proxy; over bare ws:// it offers SCRAM only.
async fn connect_websocket(addr: SocketAddr, tcp: TcpStream) -> Result<(Tx, Rx), String> {
    let mut request =
        format!("ws://{addr}/xmpp-websocket").into_client_request().map_err(|e| format!("WebSocket request: {e}"))?;
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", "xmpp".parse().expect("header value"));
    headers.insert("X-Forwarded-Proto", "https".parse().expect("header value"));
    // tungstenite's default 128 KiB read buffer per connection would make the tool's
    // memory the limit; messages here are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUF);
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
        .await
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    if response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()) != Some("xmpp") {
        return Err("the server did not accept the xmpp subprotocol".into());
    }
    let (sink, stream) = ws.split();
    Ok((Tx::Ws(sink), Rx::Ws(stream)))
}

/// Connects over `transport` (STARTTLS and TLS on TCP) and opens the stream; returns the
/// TCP socket, both sides and the stream's features.
async fn connect(target: &Target, transport: Transport) -> Result<(RawFd, Tx, Rx, Stanza), String> {
    let addr = match transport {
        Transport::Tcp => target.addr,
        Transport::WebSocket => target.ws_addr.ok_or("no WebSocket address")?,
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let fd = tcp.as_raw_fd();
    let (mut tx, mut rx) = match transport {
        Transport::Tcp => connect_tcp(target, tcp).await?,
        Transport::WebSocket => connect_websocket(addr, tcp).await?,
    };
    let features = open_stream(&mut tx, &mut rx, &target.domain).await?;
    Ok((fd, tx, rx, features))
}

/// Creates the account `<prefix><index>` in-band (XEP-0077), then closes the stream. An
/// existing account (`conflict`) is fine: reruns reuse the accounts.
pub async fn register(target: &Target, transport: Transport, prefix: &str, index: usize) -> Result<(), String> {
    let user = format!("{prefix}{index}");
    let (_, mut tx, mut rx, features) = connect(target, transport).await?;
    if !features.inner().contains(ns::REGISTER_FEATURE) {
        return Err("the server does not offer in-band registration (turned off in its config?)".into());
    }
    let password = &target.password;
    tx.send(&format!(
        "<iq type='set' id='reg' xmlns='jabber:client'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{password}</password></query></iq>"
    ))
    .await?;
    let reply = iq_reply(&mut rx, "reg").await?;
    match reply.stanza_type() {
        Some("result") => {}
        Some("error") if reply.inner().contains("<conflict") => {}
        _ => return Err(format!("registration of {user} failed: {}", String::from_utf8_lossy(&reply.to_bytes()))),
    }
    if target.auth == Auth::Fast {
        // A password login on the same stream, asking for the token the sessions use.
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        tx.send(&format!(
            "<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{creds}</initial-response>{}\
             <request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/></authenticate>",
            user_agent(index)
        ))
        .await?;
        let result = rx.next_stanza("the SASL2 result").await?;
        if !result.is("success", SASL2) {
            return Err(format!("the token request failed: {}", String::from_utf8_lossy(&result.to_bytes())));
        }
        keep_token(target, index, &result)?;
    }
    tx.send(match transport {
        Transport::Tcp => "</stream:stream>",
        Transport::WebSocket => "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    })
    .await
}

/// Opens session number `index` as user `<prefix><index>`: signs in (see [`Auth`]),
/// binds, sends initial presence. The account must exist.
pub async fn establish(target: &Target, transport: Transport, prefix: &str, index: usize) -> Result<Session, String> {
    let user = format!("{prefix}{index}");
    let (fd, mut tx, mut rx, features) = connect(target, transport).await?;
    let jid = match target.auth {
        Auth::Plain | Auth::Scram => sign_in_sasl(target, &mut tx, &mut rx, &features, &user).await?,
        Auth::Fast => sign_in_fast(target, &mut tx, &mut rx, &features, &user, index).await?,
    };

    // Initial presence: the server echoes it to the session itself (RFC 6121 §4.2.2).
    tx.send("<presence xmlns='jabber:client'/>").await?;
    loop {
        let st = rx.next_stanza("the presence echo").await?;
        if st.name() == "presence" && st.from() == Some(jid.as_str()) {
            break;
        }
    }
    rx.release();
    Ok(Session { index, jid, fd, sm_handled: None, tx, rx })
}

/// SASL PLAIN or SCRAM-SHA-256, restart, bind: returns the bound JID.
async fn sign_in_sasl(target: &Target, tx: &mut Tx, rx: &mut Rx, features: &Stanza, user: &str) -> Result<String, String> {
    let domain = target.domain.as_str();
    let password = &target.password;
    let mechanism = if target.auth == Auth::Scram { "SCRAM-SHA-256" } else { "PLAIN" };
    if !features.inner().contains(&format!(">{mechanism}<")) {
        return Err(format!("the server does not offer SASL {mechanism}"));
    }
    let result = if target.auth == Auth::Scram {
        let scram = jabberwock_tests::scram::Client::new(user, "n,,", Vec::new());
        tx.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", scram.first())).await?;
        let challenge = rx.next_stanza("the SCRAM challenge").await?;
        let server_first = challenge.to_element().map_err(|_| "unreadable challenge")?.text();
        tx.send(&format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>", scram.last(&server_first, password)))
            .await?;
        rx.next_stanza("the SASL result").await?
    } else {
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        tx.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await?;
        rx.next_stanza("the SASL result").await?
    };
    if !result.is("success", ns::SASL) {
        return Err(format!("authentication failed: {}", String::from_utf8_lossy(&result.to_bytes())));
    }
    rx.restart();
    let features = open_stream(tx, rx, domain).await?;
    if !features.inner().contains(ns::BIND) {
        return Err("the server does not offer resource binding".into());
    }
    tx.send(
        "<iq type='set' id='bind' xmlns='jabber:client'>\
         <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>",
    )
    .await?;
    let reply = iq_reply(rx, "bind").await?;
    if reply.stanza_type() != Some("result") {
        return Err(format!("bind failed: {}", String::from_utf8_lossy(&reply.to_bytes())));
    }
    jid_of_bind(&reply).ok_or_else(|| "bind result without a JID".into())
}

/// One SASL2 exchange with the account's FAST token and Bind2 inline: returns the bound
/// JID, and keeps the token that replaces the one used.
async fn sign_in_fast(target: &Target, tx: &mut Tx, rx: &mut Rx, features: &Stanza, user: &str, index: usize) -> Result<String, String> {
    if !features.inner().contains(">HT-SHA-256-NONE<") {
        return Err("the server does not offer FAST with HT-SHA-256-NONE".into());
    }
    let token = target.tokens.lock().expect("tokens").get(&index).cloned().ok_or("no FAST token for this account")?;
    let mut proof = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    proof.update(b"Initiator");
    let mut initial = format!("{user}\0").into_bytes();
    initial.extend_from_slice(&proof.finalize().into_bytes());
    let initial = base64::engine::general_purpose::STANDARD.encode(initial);
    tx.send(&format!(
        "<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{initial}</initial-response>{}\
         <fast xmlns='{FAST}'/><bind xmlns='urn:xmpp:bind:0'><tag>load</tag></bind></authenticate>",
        user_agent(index)
    ))
    .await?;
    let result = rx.next_stanza("the SASL2 result").await?;
    if !result.is("success", SASL2) {
        return Err(format!("FAST authentication failed: {}", String::from_utf8_lossy(&result.to_bytes())));
    }
    keep_token(target, index, &result)?;
    let el = result.to_element().map_err(|_| "unreadable SASL2 success")?;
    el.child_text("authorization-identifier", SASL2).ok_or_else(|| "SASL2 success without a JID".into())
}

fn jid_of_bind(reply: &Stanza) -> Option<String> {
    let el = reply.to_element().ok()?;
    el.child("bind", ns::BIND)?.child_text("jid", ns::BIND)
}

/// With `deadline`, as one error.
pub async fn establish_within(
    target: &Target,
    transport: Transport,
    prefix: &str,
    index: usize,
    deadline: Duration,
) -> Result<Session, String> {
    match tokio::time::timeout(deadline, establish(target, transport, prefix, index)).await {
        Ok(r) => r.map_err(|e| format!("{transport} {prefix}{index}: {e}")),
        Err(_) => Err(format!("{transport} {prefix}{index}: not established within {deadline:?}")),
    }
}

/// Accepts any certificate: the server under test uses a generated self-signed one.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    jabberwock_tests::tls_connector(&[])
}
