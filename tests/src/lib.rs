//! Helpers for the black-box tests: start a real server on loopback, and speak raw XML to
//! it over real TCP and TLS.

pub mod bosh;
pub mod cluster;
pub mod scram;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jabberwock::config::Config;
use jabberwock::server::Running;
use jabberwock_proto::{ns, Element, Limits, ReadEvent, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for anything the server should send.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub const DOMAIN: &str = "localhost";

/// A server running in this process on loopback ports, with its data in a temporary
/// directory.
pub struct TestServer {
    pub running: Option<Running>,
    pub c2s: SocketAddr,
    pub direct_tls: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// The `storage` key of a test server's config. With `JABBERWOCK_TEST_STORAGE` set to a
/// PostgreSQL server's URL (without a database, such as `postgres://postgres@127.0.0.1:5432`),
/// the suites run on PostgreSQL: each server gets a database named after its data
/// directory, created on first use, so a restarted server finds its data again. Otherwise
/// the key is left out and the server uses SQLite in `dir`.
pub fn test_storage(dir: &Path) -> String {
    if on_postgres() {
        format!("storage = '{}'\n", test_storage_url(dir))
    } else {
        String::new()
    }
}

/// Whether the suites run on PostgreSQL (see [`test_storage`]).
pub fn on_postgres() -> bool {
    std::env::var_os("JABBERWOCK_TEST_STORAGE").is_some()
}

/// The storage URL of a test server keeping its data in `dir` (see [`test_storage`]).
pub fn test_storage_url(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let Ok(server) = std::env::var("JABBERWOCK_TEST_STORAGE") else { return format!("sqlite://{}", dir.join("jabberwock.db").display()) };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    format!("{}/jw_test_{:016x}", server.trim_end_matches('/'), hasher.finish())
}

/// The config the tests start from: loopback listeners on free ports, data in `dir`.
/// `top` is TOML for top-level keys, `tables` for tables such as `[limits]`.
pub fn test_config(dir: &Path, top: &str, tables: &str) -> Config {
    let text = format!(
        "data_dir = {dir:?}\nlog = 'warn'\nallow_registration = true\n{storage}{top}\n{tables}\n",
        dir = dir.display().to_string(),
        storage = test_storage(dir),
    );
    let mut config = Config::parse(&text).expect("test config is valid");
    let loopback = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listen.c2s = loopback.clone();
    config.listen.c2s_direct_tls = loopback.clone();
    config.http.listen = loopback.clone();
    config.http.listen_tls = loopback.clone();
    config.s2s.listen = loopback;
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// `top` is TOML for the top level of the config (before any table).
    pub async fn start_with(top: &str) -> TestServer {
        Self::start_with_tables(top, "").await
    }

    /// `tables` is TOML with tables such as `[limits]` or `[auth]`.
    pub async fn start_with_tables(top: &str, tables: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, top, tables).await
    }

    pub async fn start_in(dir: tempfile::TempDir, top: &str, tables: &str) -> TestServer {
        let config = test_config(dir.path(), top, tables);
        Self::start_config(dir, config).await
    }

    /// Starts with a config the test built (from [`test_config`]) in `dir`.
    pub async fn start_config(dir: tempfile::TempDir, config: Config) -> TestServer {
        let running = jabberwock::server::start(config).await.expect("server starts");
        TestServer {
            c2s: running.c2s[0],
            direct_tls: running.c2s_direct_tls[0],
            http: running.http[0],
            https: running.https[0],
            running: Some(running),
            dir,
        }
    }

    /// Stops the server gracefully and returns its data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.running.take().expect("running").shutdown().await;
        self.dir
    }

    pub async fn adduser(&self, user: &str, password: &str) {
        let server = &self.running.as_ref().expect("running").server;
        let domain = &server.config.domains[0];
        let iterations = server.config.auth.scram_iterations;
        jabberwock::accounts::create(&server.store, domain, user, password, iterations).await.expect("account created");
    }
}

/// A raw client connection: whatever the server sends is read back as events with the
/// project's stream reader.
pub struct Client {
    io: Box<dyn Io>,
    reader: StreamReader,
    pub jid: String,
    /// The domain the client's streams are addressed to.
    pub domain: String,
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts any certificate: the tests' server uses a generated self-signed one.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A verifier that accepts any server certificate, for TLS clients a test builds itself.
pub fn any_certificate() -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
    Arc::new(AcceptAnyCert(Arc::new(rustls::crypto::ring::default_provider())))
}

pub fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(any_certificate())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What the server sent, read until it closed or went quiet.
#[derive(Debug, Default)]
pub struct Transcript {
    pub events: Vec<ReadEvent>,
    /// The server's bytes, for assertions on raw output.
    pub raw: String,
    /// The server closed the connection (EOF) within [`TIMEOUT`].
    pub closed: bool,
}

impl Transcript {
    /// The condition of the `<stream:error>` the server sent, if any.
    pub fn stream_error(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            ReadEvent::Stanza(st) if st.is("error", ns::STREAM) => {
                let el = st.to_element().ok()?;
                let condition = el.children().find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text");
                condition.map(|c| c.name().to_owned())
            }
            _ => None,
        })
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Client { io: Box::new(tcp), reader: StreamReader::new(Limits::unlimited()), jid: String::new(), domain: DOMAIN.to_owned() }
    }

    /// Connects with direct TLS (XEP-0368).
    pub async fn connect_direct_tls(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from(DOMAIN).expect("name");
        let tls = tls_connector(&[b"xmpp-client"]).connect(name, tcp).await.expect("TLS handshake");
        Client { io: Box::new(tls), reader: StreamReader::new(Limits::unlimited()), jid: String::new(), domain: DOMAIN.to_owned() }
    }

    /// A client over a connection the test set up itself (a server-to-server stream, say).
    pub fn from_io(io: impl Io + 'static) -> Client {
        Client { io: Box::new(io), reader: StreamReader::new(Limits::unlimited()), jid: String::new(), domain: DOMAIN.to_owned() }
    }

    /// The connection, for a TLS upgrade; what was read but not consumed is dropped.
    pub fn into_io(self) -> Box<dyn Io> {
        self.io
    }

    /// Reads what follows as a new stream (after SASL success).
    pub fn restart_reader(&mut self) {
        self.reader.restart();
    }

    pub async fn send(&mut self, data: impl AsRef<[u8]>) {
        self.io.write_all(data.as_ref()).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// Writes, ignoring failure: for tests where the server may already have hung up.
    pub async fn send_lossy(&mut self, data: impl AsRef<[u8]>) -> bool {
        self.io.write_all(data.as_ref()).await.is_ok() && self.io.flush().await.is_ok()
    }

    pub async fn open_stream(&mut self, to: &str) {
        self.send(format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        ))
        .await;
    }

    /// The next event the server sends; panics after [`TIMEOUT`].
    pub async fn next_event(&mut self) -> ReadEvent {
        tokio::time::timeout(TIMEOUT, self.next_event_inner()).await.expect("timed out waiting for the server")
    }

    /// The next event the server sends, or `None` at `deadline`: for waits longer than
    /// [`TIMEOUT`].
    pub async fn next_event_by(&mut self, deadline: tokio::time::Instant) -> Option<ReadEvent> {
        tokio::time::timeout_at(deadline, self.next_event_inner()).await.ok()
    }

    async fn next_event_inner(&mut self) -> ReadEvent {
        self.read_event().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next event the server sends, `Ok(None)` at `deadline`, or why there is none
    /// (the server closed the connection, say): for tests in which servers go away.
    pub async fn try_next_event_by(&mut self, deadline: tokio::time::Instant) -> Result<Option<ReadEvent>, String> {
        tokio::time::timeout_at(deadline, self.read_event()).await.map_or(Ok(None), |read| read.map(Some))
    }

    async fn read_event(&mut self) -> Result<ReadEvent, String> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(ev) = self.reader.next_event().map_err(|e| format!("the server sent bad XML: {e:?}"))? {
                return Ok(ev);
            }
            let n = self.io.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".to_owned());
            }
            self.reader.feed(&buf[..n]);
        }
    }

    /// The next top-level element, skipping nothing: panics on a header or close.
    pub async fn next_element(&mut self) -> Element {
        match self.next_event().await {
            ReadEvent::Stanza(st) => st.to_element().expect("parses"),
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Skips elements until one satisfies `pred`; panics after [`TIMEOUT`].
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        self.expect_within(TIMEOUT, what, pred).await
    }

    /// [`Client::expect`] for what comes after slow work (large writes to storage, say),
    /// waiting up to `wait`.
    pub async fn expect_within(&mut self, wait: Duration, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.next_event_inner())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if let ReadEvent::Stanza(st) = ev {
                let el = st.to_element().expect("parses");
                if pred(&el) {
                    return el;
                }
            }
        }
    }

    /// Asserts nothing matching `pred` arrives within `wait`.
    pub async fn expect_none(&mut self, wait: Duration, what: &str, pred: impl Fn(&Element) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(ev) = tokio::time::timeout_at(deadline, self.next_event_inner()).await {
            if let ReadEvent::Stanza(st) = ev {
                let el = st.to_element().expect("parses");
                assert!(!pred(&el), "unexpected {what}: {}", el.to_xml_string());
            }
        }
    }

    /// Reads everything until the server closes the connection or [`TIMEOUT`] passes.
    pub async fn read_to_close(mut self) -> Transcript {
        let mut t = Transcript::default();
        let mut reader = StreamReader::new(Limits::unlimited());
        std::mem::swap(&mut reader, &mut self.reader);
        let mut buf = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while let Ok(Some(ev)) = reader.next_event() {
            t.events.push(ev);
        }
        loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    t.closed = true;
                    break;
                }
                Ok(Ok(n)) => {
                    t.raw.push_str(&String::from_utf8_lossy(&buf[..n]));
                    reader.feed(&buf[..n]);
                    while let Ok(Some(ev)) = reader.next_event() {
                        t.events.push(ev);
                    }
                }
                Err(_) => break,
            }
        }
        t
    }

    /// Header and features: returns the features element.
    pub async fn expect_header_and_features(&mut self) -> Element {
        match self.next_event().await {
            ReadEvent::StreamOpen(h) => assert_eq!(h.content_ns, ns::CLIENT),
            other => panic!("expected a stream header, got {other:?}"),
        }
        let features = self.next_element().await;
        assert!(features.is("features", ns::STREAM), "expected features, got {}", features.to_xml_string());
        features
    }

    /// STARTTLS on a plain connection; returns the features of the encrypted stream.
    pub async fn starttls(mut self) -> (Client, Element) {
        let domain = self.domain.clone();
        self.open_stream(&domain).await;
        let f = self.expect_header_and_features().await;
        assert!(f.child("starttls", ns::TLS).is_some());
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        let proceed = self.next_element().await;
        assert!(proceed.is("proceed", ns::TLS));
        let name = rustls::pki_types::ServerName::try_from(domain).expect("name");
        let tls = tls_connector(&[]).connect(name, self.io).await.expect("TLS handshake");
        let mut c = Client { io: Box::new(tls), reader: StreamReader::new(Limits::unlimited()), jid: String::new(), domain: self.domain };
        let domain = c.domain.clone();
        c.open_stream(&domain).await;
        let f = c.expect_header_and_features().await;
        (c, f)
    }

    /// SASL PLAIN then resource binding on an encrypted stream whose features were read.
    pub async fn authenticate_and_bind(&mut self, user: &str, password: &str, resource: Option<&str>) {
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await;
        let result = self.next_element().await;
        assert!(result.is("success", ns::SASL), "login failed: {}", result.to_xml_string());
        self.reader.restart();
        let domain = self.domain.clone();
        self.open_stream(&domain).await;
        let f = self.expect_header_and_features().await;
        assert!(f.child("bind", ns::BIND).is_some());
        let res = resource.map(|r| format!("<resource>{r}</resource>")).unwrap_or_default();
        self.send(format!("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")).await;
        let iq = self.next_element().await;
        assert_eq!(iq.attr("type"), Some("result"), "bind failed: {}", iq.to_xml_string());
        self.jid = iq.child("bind", ns::BIND).and_then(|b| b.child_text("jid", ns::BIND)).expect("bound jid");
    }

    /// A bound, authenticated session over STARTTLS.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, resource: &str) -> Client {
        Self::login_at(addr, DOMAIN, user, password, resource).await
    }

    /// [`Client::login`] over a socket whose receive buffer is set to `bytes` before it
    /// connects (the TCP window follows it): a client that stops reading soon stops the
    /// server's writes.
    pub async fn login_with_receive_buffer(addr: SocketAddr, user: &str, password: &str, resource: &str, bytes: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer size");
        let tcp = socket.connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (mut c, _) = Client::from_io(tcp).starttls().await;
        c.authenticate_and_bind(user, password, Some(resource)).await;
        c
    }

    /// [`Client::login`] on a server for another domain.
    pub async fn login_at(addr: SocketAddr, domain: &str, user: &str, password: &str, resource: &str) -> Client {
        let mut c = Client::connect(addr).await;
        c.domain = domain.to_owned();
        let (mut c, _) = c.starttls().await;
        c.authenticate_and_bind(user, password, Some(resource)).await;
        c
    }

    /// Sends an iq and waits for the reply with the same id.
    pub async fn iq(&mut self, id: &str, xml: &str) -> Element {
        self.send(xml).await;
        self.expect(&format!("iq reply {id}"), |e| e.name() == "iq" && e.attr("id") == Some(id)).await
    }
}

// ---------------------------------------------------------------------------------------
// Bad input, slow clients and throttling.

/// The `<auth/>` element for SASL PLAIN.
pub fn plain_auth(user: &str, password: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")
}

impl Client {
    /// Connects from a chosen local address (any of 127.0.0.0/8 works on loopback), so a
    /// test can look like several clients to per-address limits.
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(local, 0)).expect("bind the local address");
        let tcp = socket.connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Client { io: Box::new(tcp), reader: StreamReader::new(Limits::unlimited()), jid: String::new(), domain: DOMAIN.to_owned() }
    }

    /// SASL PLAIN on a stream whose features were read: returns `<success/>` or
    /// `<failure/>` without restarting the stream.
    pub async fn try_plain(&mut self, user: &str, password: &str) -> Element {
        self.send(plain_auth(user, password)).await;
        self.next_element().await
    }

    /// After `<success/>`: opens the new stream and returns its features.
    pub async fn restart_stream(&mut self) -> Element {
        self.reader.restart();
        self.open_stream(DOMAIN).await;
        self.expect_header_and_features().await
    }

    /// Sends initial presence and waits for the server's echo of it (RFC 6121 §4.2.2):
    /// from then on the session is available, and a message to the bare JID reaches it
    /// rather than offline storage.
    pub async fn available(&mut self) {
        self.send("<presence/>").await;
        let own = self.jid.clone();
        self.expect("own presence", |e| e.name() == "presence" && e.attr("from") == Some(own.as_str())).await;
    }

    /// Pings the server and asserts the result. As a session's stanzas are handled in
    /// order, everything sent before has been processed once this returns.
    pub async fn ping(&mut self) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("ping{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let to = self.domain.clone();
        let pong = self.iq(&id, &format!("<iq type='get' id='{id}' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
        assert_eq!(pong.attr("type"), Some("result"), "ping failed: {}", pong.to_xml_string());
    }

    /// From now on, everything written on the connection as it is now (plain TCP, or the
    /// TLS layer) goes out one byte per write, with `pace`'s pause after each byte.
    pub fn paced(self, pace: &Pace) -> Client {
        let io = Paced { inner: self.io, pace: pace.clone(), pause: None, unflushed: false };
        Client { io: Box::new(io), reader: self.reader, jid: self.jid, domain: self.domain }
    }
}

/// The speed of [`Client::paced`] connections: one byte, then a pause, until stopped.
#[derive(Clone, Debug)]
pub struct Pace {
    pause: Duration,
    on: Arc<std::sync::atomic::AtomicBool>,
}

impl Pace {
    pub fn new(pause: Duration) -> Pace {
        Pace { pause, on: Arc::new(std::sync::atomic::AtomicBool::new(true)) }
    }

    /// Writes go out at full speed again.
    pub fn stop(&self) {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct Paced {
    inner: Box<dyn Io>,
    pace: Pace,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// A byte was written and not yet flushed to the layer below.
    unflushed: bool,
}

impl AsyncRead for Paced {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Paced {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::future::Future;
        use std::task::{ready, Poll};
        if !self.pace.is_on() {
            return std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        // Each byte leaves on its own before the pause: flush, wait, then write one more.
        if self.unflushed {
            ready!(std::pin::Pin::new(&mut self.inner).poll_flush(cx))?;
            self.unflushed = false;
            self.pause = Some(Box::pin(tokio::time::sleep(self.pace.pause)));
        }
        if let Some(pause) = self.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let n = ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..buf.len().min(1)]))?;
        self.unflushed = n > 0;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// The real `jabberwock` command as a child process, for restarts and `kill -9`.

/// The server binary run as a process on loopback ports, with its config file and data in
/// a directory that outlives restarts. Admin subcommands run against the same config.
pub struct ServerProcess {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// The client port of the current (or last) run.
    pub c2s: SocketAddr,
    /// The HTTP (WebSocket, BOSH) port of the current (or last) run.
    pub http: SocketAddr,
    /// The loopback address every listener binds (127.0.0.1 unless [`ServerProcess::listen_on`]).
    host: std::net::IpAddr,
    child: Option<tokio::process::Child>,
    /// TOML tables added to the config file, such as `[limits]`.
    tables: String,
    /// The storage URL, when not the one [`test_storage`] picks for `dir`.
    storage: Option<String>,
    /// Top-level keys of the config file.
    top: String,
}

impl ServerProcess {
    /// A server for `bin` (`env!("CARGO_BIN_EXE_jabberwock-test-server")`) keeping its
    /// data in `dir`; not started yet, but the admin subcommands already work.
    pub fn new(bin: &Path, dir: &Path) -> ServerProcess {
        let p = ServerProcess {
            bin: bin.into(),
            dir: dir.into(),
            c2s: free_port(),
            http: free_port(),
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            child: None,
            tables: String::new(),
            top: "log = 'warn'".to_owned(),
            storage: None,
        };
        p.write_config();
        p
    }

    /// Adds TOML tables (such as `[limits]`) to the config of the next start.
    pub fn configure(&mut self, tables: &str) {
        self.tables = tables.to_owned();
        self.write_config();
    }

    /// Binds every listener to `host` (another loopback address, say) from the next start.
    pub fn listen_on(&mut self, host: std::net::IpAddr) {
        self.host = host;
        self.write_config();
    }

    /// Replaces the top-level keys of the config (`log = 'warn'` by default) for the next start.
    pub fn configure_top(&mut self, top: &str) {
        self.top = top.to_owned();
        self.write_config();
    }

    /// Keeps the data at this storage URL from the next start (and admin command) on.
    pub fn set_storage(&mut self, url: &str) {
        self.storage = Some(url.to_owned());
        self.write_config();
    }

    /// The storage URL the server uses.
    pub fn storage_url(&self) -> String {
        self.storage.clone().unwrap_or_else(|| test_storage_url(&self.dir))
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("jabberwock.toml")
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.join("server.log")
    }

    /// Only the client port must be known in advance; the other listeners take any port.
    fn write_config(&self) {
        let text = format!(
            "data_dir = {dir:?}\nstorage = '{storage}'\n{top}\n[listen]\nc2s = ['{c2s}']\nc2s_direct_tls = ['{host}:0']\n\
             [http]\nlisten = ['{http}']\nlisten_tls = ['{host}:0']\n[s2s]\nlisten = ['{host}:0']\n{tables}\n",
            dir = self.dir.display().to_string(),
            storage = self.storage_url(),
            c2s = self.c2s,
            http = self.http,
            host = self.host,
            tables = self.tables,
            top = self.top,
        );
        std::fs::write(self.config_path(), text).expect("write the config");
    }

    /// What the server wrote to stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `serve` on fresh ports and waits until the client port accepts connections.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.c2s = free_port_on(self.host);
        self.http = free_port_on(self.host);
        self.write_config();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = tokio::process::Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the server");
        let child = self.child.insert(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("the server exited with {status} while starting:\n{}", self.log());
            }
            if TcpStream::connect(self.c2s).await.is_ok() {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server did not listen in time:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: no chance to flush or close anything.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL");
    }

    /// `kill -TERM` and waits for a clean exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid").to_string();
        let sent = tokio::process::Command::new("kill").arg("-TERM").arg(&pid).status().await.expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit after SIGTERM:\n{}", self.log()))
            .expect("wait");
        assert!(status.success(), "the server exited with {status} after SIGTERM:\n{}", self.log());
    }

    /// Runs an admin subcommand (`adduser`, `passwd`, `deluser`…) against this server's
    /// config; returns whether it succeeded, and its output.
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run the command");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Runs an admin subcommand that must succeed.
    pub async fn admin(&self, args: &[&str]) {
        let (ok, output) = self.cli(args).await;
        assert!(ok, "`jabberwock {}` failed: {output}", args.join(" "));
    }
}

/// A figure in kB from `/proc/<pid>/status`, such as `VmRSS` (memory resident now) or
/// `RssAnon` (the part of it that is not a mapped file, such as the program's code).
pub fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in the process status"))
}

/// Samples `field` of process `pid` (see [`memory_kb`]) until the returned sender is
/// dropped or fired; the task then yields the largest figure seen.
pub fn watch_memory(pid: u32, field: &'static str) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut most = memory_kb(pid, field);
        loop {
            tokio::select! {
                _ = &mut stopped => return most,
                _ = tokio::time::sleep(Duration::from_millis(5)) => most = most.max(memory_kb(pid, field)),
            }
        }
    });
    (stop, task)
}

/// A loopback address with a port that was free a moment ago, for a listener a test
/// configures before starting it. The port is taken below the kernel's ephemeral range
/// (32768 and up on Linux): there, the outgoing connections of tests running in parallel
/// take their local ports, and one of them could take the port before the server binds it.
pub fn free_port() -> SocketAddr {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// [`free_port`] on another (loopback) address.
pub fn free_port_on(host: std::net::IpAddr) -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    loop {
        // Each RandomState has fresh keys: a random number without another dependency.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = 20_000 + (random % 12_000) as u16;
        if let Ok(l) = std::net::TcpListener::bind((host, port)) {
            return l.local_addr().expect("local address");
        }
    }
}

/// `x` subscribes to `y`, and `y` approves.
pub async fn subscribe(x: &mut Client, x_bare: &str, y: &mut Client, y_bare: &str) {
    x.send(format!("<presence to='{y_bare}' type='subscribe'/>")).await;
    y.expect("subscribe", |e| e.name() == "presence" && e.attr("from") == Some(x_bare) && e.attr("type") == Some("subscribe")).await;
    y.send(format!("<presence to='{x_bare}' type='subscribed'/>")).await;
    x.expect("subscribed", |e| e.name() == "presence" && e.attr("from") == Some(y_bare) && e.attr("type") == Some("subscribed")).await;
}

/// Mutual presence subscription between two online users.
pub async fn befriend(a: &mut Client, a_bare: &str, b: &mut Client, b_bare: &str) {
    subscribe(a, a_bare, b, b_bare).await;
    subscribe(b, b_bare, a, a_bare).await;
}

// ---------------------------------------------------------------------------------------
// XEP-0114 components.

/// A raw XEP-0114 component connection: a stand-in for a gateway or an app server.
pub struct Component {
    tcp: TcpStream,
    reader: StreamReader,
    pub stream_id: String,
}

impl Component {
    pub async fn connect(addr: SocketAddr, domain: &str) -> Component {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let header = format!("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>");
        tcp.write_all(header.as_bytes()).await.unwrap();
        let mut c = Component { tcp, reader: StreamReader::new(Limits::unlimited()), stream_id: String::new() };
        match c.next().await {
            Some(ReadEvent::StreamOpen(h)) => c.stream_id = h.id.unwrap_or_default(),
            other => panic!("expected a stream header, got {other:?}"),
        }
        c
    }

    pub async fn next(&mut self) -> Option<ReadEvent> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(ev) = self.reader.next_event().expect("well-formed") {
                return Some(ev);
            }
            let n = tokio::time::timeout(TIMEOUT, self.tcp.read(&mut buf)).await.expect("in time").unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.reader.feed(&buf[..n]);
        }
    }

    pub async fn element(&mut self) -> Element {
        match self.next().await {
            Some(ReadEvent::Stanza(st)) => st.to_element().unwrap(),
            other => panic!("expected an element, got {other:?}"),
        }
    }

    pub async fn handshake(&mut self, secret: &str) -> Element {
        let proof: String = <sha1::Sha1 as sha1::Digest>::digest(format!("{}{secret}", self.stream_id).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("<handshake>{proof}</handshake>")).await;
        self.element().await
    }

    pub async fn send(&mut self, xml: &str) {
        self.tcp.write_all(xml.as_bytes()).await.unwrap();
    }
}
