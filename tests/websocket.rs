//! RFC 7395 WebSocket and XEP-0156 discovery over real sockets, sharing the session core
//! with TCP clients.

use futures_util::{SinkExt, StreamExt};
use jabberwock_proto::{ns, reader, Element, Limits};
use jabberwock_tests::{Client, TestServer, DOMAIN, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Any byte stream a WebSocket runs over (plain TCP or TLS).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

fn request(server: &TestServer, protocol: Option<&str>, origin: Option<&str>) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{}/xmpp-websocket", server.http).into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    req
}

async fn connect(server: &TestServer) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(request(server, Some("xmpp"), None)).await.expect("handshake");
    assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "xmpp");
    ws
}

async fn send<S: Io>(ws: &mut WebSocketStream<S>, xml: &str) {
    ws.send(Message::Text(xml.into())).await.expect("send");
}

/// The next text message as an element; `None` once the server closed.
async fn recv<S: Io>(ws: &mut WebSocketStream<S>) -> Option<Element> {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("timed out waiting for the server")?;
        match msg.ok()? {
            Message::Text(t) => return Some(reader::parse_element(t.as_bytes(), &Limits::unlimited()).expect("one element per message")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn expect<S: Io>(ws: &mut WebSocketStream<S>, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
    loop {
        let el = recv(ws).await.unwrap_or_else(|| panic!("closed while waiting for {what}"));
        if pred(&el) {
            return el;
        }
    }
}

const OPEN: &str = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

/// Opens the stream and returns the features.
async fn open<S: Io>(ws: &mut WebSocketStream<S>) -> Element {
    send(ws, OPEN).await;
    let open = recv(ws).await.unwrap();
    assert!(open.is("open", ns::FRAMING), "{}", open.to_xml_string());
    assert_eq!(open.attr("from"), Some(DOMAIN));
    let features = recv(ws).await.unwrap();
    assert!(features.is("features", ns::STREAM), "{}", features.to_xml_string());
    features
}

/// SCRAM-SHA-256 over plain ws:// (PLAIN is never offered without encryption), then bind.
async fn login(server: &TestServer, user: &str, password: &str) -> (Ws, String) {
    sign_in(connect(server).await, user, password).await
}

/// [`login`] on a WebSocket the test opened itself.
async fn sign_in<S: Io>(mut ws: WebSocketStream<S>, user: &str, password: &str) -> (WebSocketStream<S>, String) {
    let f = open(&mut ws).await;
    let mechs: Vec<String> = f.child("mechanisms", ns::SASL).unwrap().children().map(|m| m.text()).collect();
    assert!(mechs.contains(&"SCRAM-SHA-256".to_owned()) && !mechs.contains(&"PLAIN".to_owned()), "{mechs:?}");
    let client = jabberwock_tests::scram::Client::new(user, "n,,", Vec::new());
    send(&mut ws, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", client.first())).await;
    let challenge = recv(&mut ws).await.unwrap();
    assert!(challenge.is("challenge", ns::SASL), "{}", challenge.to_xml_string());
    let last = client.last(&challenge.text(), password);
    send(&mut ws, &format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{last}</response>")).await;
    let success = recv(&mut ws).await.unwrap();
    assert!(success.is("success", ns::SASL), "{}", success.to_xml_string());
    let f = open(&mut ws).await;
    assert!(f.child("bind", ns::BIND).is_some());
    send(&mut ws, "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>").await;
    let bound = recv(&mut ws).await.unwrap();
    let jid = bound.child("bind", ns::BIND).and_then(|b| b.child_text("jid", ns::BIND)).expect("bound");
    (ws, jid)
}

#[tokio::test]
async fn handshake_requires_the_xmpp_subprotocol_and_an_allowed_origin() {
    let server = TestServer::start().await;
    let refused = tokio_tungstenite::connect_async(request(&server, None, None)).await.unwrap_err();
    assert!(matches!(refused, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 400), "{refused:?}");
    let foreign = tokio_tungstenite::connect_async(request(&server, Some("xmpp"), Some("https://evil.example"))).await.unwrap_err();
    assert!(matches!(foreign, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 403), "{foreign:?}");
    let local = tokio_tungstenite::connect_async(request(&server, Some("xmpp"), Some("http://localhost:8080"))).await;
    assert!(local.is_ok(), "localhost pages may connect");
}

#[tokio::test]
async fn websocket_and_tcp_users_talk_to_each_other() {
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    let (mut ws, jid) = login(&server, "alice", "secret").await;
    assert_eq!(jid, "alice@localhost/web");
    let mut bob = Client::login(server.c2s, "bob", "secret", "tcp").await;
    bob.send("<presence/>").await;
    send(&mut ws, "<presence xmlns='jabber:client'/>").await;
    expect(&mut ws, "own presence", |e| e.name() == "presence").await;

    send(&mut ws, "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>from the web</body></message>").await;
    let m = bob.expect("message from ws", |e| e.name() == "message").await;
    assert_eq!(m.attr("from"), Some("alice@localhost/web"));
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("from the web"));

    bob.send("<message to='alice@localhost/web' type='chat'><body>from tcp</body></message>").await;
    let m = expect(&mut ws, "message from tcp", |e| e.name() == "message").await;
    assert_eq!(m.ns(), ns::CLIENT, "every stanza declares jabber:client");
    assert_eq!(m.child_text("body", ns::CLIENT).as_deref(), Some("from tcp"));

    // The close handshake: <close/> answered with <close/>, then the socket ends.
    send(&mut ws, "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>").await;
    let close = recv(&mut ws).await.expect("a close element");
    assert!(close.is("close", ns::FRAMING));
    assert!(recv(&mut ws).await.is_none());
}

#[tokio::test]
async fn oversized_and_malformed_messages_end_the_stream_with_an_error() {
    let server = TestServer::start_with_tables("", "[limits]\nmax_stanza_bytes = 10000\n").await;
    for (bad, condition) in [
        (format!("<message xmlns='jabber:client'><body>{}</body></message>", "x".repeat(12_000)), "policy-violation"),
        ("<message xmlns='jabber:client'><body>unclosed</message>".to_owned(), "not-well-formed"),
    ] {
        let mut ws = connect(&server).await;
        open(&mut ws).await;
        send(&mut ws, &bad).await;
        let err = expect(&mut ws, "stream error", |e| e.is("error", ns::STREAM)).await;
        assert!(err.child(condition, ns::STREAM_ERRORS).is_some(), "{}", err.to_xml_string());
        let close = recv(&mut ws).await.expect("close after the error");
        assert!(close.is("close", ns::FRAMING));
    }
}

async fn http_get(server: &TestServer, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: chat.example:5280\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

#[tokio::test]
async fn host_meta_advertises_the_websocket_and_bosh_endpoints() {
    let server = TestServer::start().await;
    let xml = http_get(&server, "/.well-known/host-meta").await;
    assert!(xml.starts_with("HTTP/1.1 200"), "{xml}");
    let lower = xml.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/xrd+xml"), "{xml}");
    assert!(lower.contains("access-control-allow-origin: *"), "{xml}");
    // On the served domain and this listener's port, whatever Host the request named.
    let port = server.http.port();
    let websocket = format!("rel='urn:xmpp:alt-connections:websocket' href='ws://localhost:{port}/xmpp-websocket'");
    assert!(xml.contains(&websocket), "{xml}");
    assert!(xml.contains(&format!("rel='urn:xmpp:alt-connections:xbosh' href='http://localhost:{port}/http-bind'")), "{xml}");
    let json = http_get(&server, "/.well-known/host-meta.json").await;
    assert!(json.to_ascii_lowercase().contains("content-type: application/json"), "{json}");
    assert!(json.contains(&format!(r#""href":"ws://localhost:{port}/xmpp-websocket""#)), "{json}");
    let page = http_get(&server, "/").await;
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("Jabberwock"), "{page}");
    assert!(page.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{page}");
}

/// A logged-in TCP user who must be unaffected by another connection's bad input.
async fn bystander(server: &TestServer) -> Client {
    server.adduser("bystander", "secret").await;
    Client::login(server.c2s, "bystander", "secret", "b").await
}

async fn still_works(c: &mut Client) {
    let pong = c.iq("alive", "<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn hostile_websocket_input_gets_the_stream_error_and_disturbs_nobody() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let deep = format!("<message xmlns='jabber:client'>{}{}</message>", "<a>".repeat(1000), "</a>".repeat(1000));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // A stanza split across two messages: each message must be a whole element.
        (vec!["<message xmlns='jabber:client' to='x@localhost'><body>half", "</body></message>"], "not-well-formed"),
        // TCP framing on a WebSocket.
        (vec!["<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"], "not-well-formed"),
        (vec!["<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message xmlns='jabber:client'>&a;</message>"], "restricted-xml"),
        (vec!["<message xmlns='jabber:client'><body>&undefined;</body></message>"], "restricted-xml"),
        (vec![deep.as_str()], "policy-violation"),
        (vec!["<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere.example' version='1.0'/>"], "host-unknown"),
    ];
    for (messages, condition) in cases {
        let mut ws = connect(&server).await;
        if !messages[0].starts_with("<open") {
            open(&mut ws).await;
        }
        for m in messages {
            let _ = ws.send(Message::Text(m.into())).await;
        }
        let err = expect(&mut ws, "stream error", |e| e.is("error", ns::STREAM)).await;
        assert!(err.child(condition, ns::STREAM_ERRORS).is_some(), "expected {condition}: {}", err.to_xml_string());
        assert!(recv(&mut ws).await.is_some_and(|c| c.is("close", ns::FRAMING)));
        assert!(recv(&mut ws).await.is_none(), "the socket closes after <close/>");
        still_works(&mut other).await;
    }
    // A binary frame: XMPP frames are text.
    let mut ws = connect(&server).await;
    open(&mut ws).await;
    ws.send(Message::Binary(vec![0, 1, 2, 3].into())).await.unwrap();
    let err = expect(&mut ws, "stream error", |e| e.is("error", ns::STREAM)).await;
    assert!(err.child("unsupported-encoding", ns::STREAM_ERRORS).is_some(), "{}", err.to_xml_string());
    // A subprotocol other than xmpp is refused at the handshake.
    let chat = tokio_tungstenite::connect_async(request(&server, Some("chat"), None)).await.unwrap_err();
    assert!(matches!(chat, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 400), "{chat:?}");
    still_works(&mut other).await;
}

/// The mechanisms offered on a fresh WebSocket stream.
async fn mechanisms<S: Io>(ws: &mut WebSocketStream<S>) -> Vec<String> {
    let f = open(ws).await;
    f.child("mechanisms", ns::SASL).unwrap().children().map(|m| m.text()).collect()
}

#[tokio::test]
async fn wss_and_a_trusted_proxy_count_as_encrypted() {
    let server = TestServer::start().await;
    // Direct HTTPS: wss:// with the server's certificate.
    let tcp = tokio::net::TcpStream::connect(server.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let tls = jabberwock_tests::tls_connector(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let mut req = format!("wss://{}/xmpp-websocket", server.https).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (mut wss, _) = tokio_tungstenite::client_async(req, tls).await.expect("wss handshake");
    assert!(mechanisms(&mut wss).await.contains(&"PLAIN".to_owned()), "PLAIN is offered over TLS");

    // Behind a TLS-terminating proxy on loopback (trusted by default).
    let mut req = request(&server, Some("xmpp"), None);
    req.headers_mut().insert("X-Forwarded-Proto", "https".parse().unwrap());
    let (mut proxied, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert!(mechanisms(&mut proxied).await.contains(&"PLAIN".to_owned()));

    // Plain ws:// without a proxy's word: no PLAIN.
    let mut plain = connect(&server).await;
    assert!(!mechanisms(&mut plain).await.contains(&"PLAIN".to_owned()));
}

/// Stanzas before `<open/>` (or after SASL success, before the restart's `<open/>`) reach
/// a stream with no domain yet: they must end it with a stream error, not end the task.
#[tokio::test]
async fn stanzas_before_open_get_a_stream_error() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj11c2VyLHI9YWJj</auth>";
    let register = "<iq xmlns='jabber:client' type='set' id='r1'><query xmlns='jabber:iq:register'><username>mallory</username><password>x</password></query></iq>";
    let bind = "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>";
    let message = "<message xmlns='jabber:client' to='bystander@localhost'><body>hi</body></message>";
    for first in [auth, register, bind, message] {
        let mut ws = connect(&server).await;
        send(&mut ws, first).await;
        let err = expect(&mut ws, "stream error", |e| e.is("error", ns::STREAM)).await;
        assert!(err.child("not-well-formed", ns::STREAM_ERRORS).is_some(), "{first}: {}", err.to_xml_string());
        assert!(recv(&mut ws).await.is_some_and(|c| c.is("close", ns::FRAMING)), "{first}: <close/> after the error");
        assert!(recv(&mut ws).await.is_none(), "{first}: the socket closes");
    }
    // After SASL success the client must open a new stream before anything else.
    server.adduser("carol", "secret").await;
    let mut ws = connect(&server).await;
    open(&mut ws).await;
    let client = jabberwock_tests::scram::Client::new("carol", "n,,", Vec::new());
    send(&mut ws, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", client.first())).await;
    let challenge = expect(&mut ws, "challenge", |e| e.is("challenge", ns::SASL)).await.text();
    send(&mut ws, &format!("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>", client.last(&challenge, "secret"))).await;
    expect(&mut ws, "success", |e| e.is("success", ns::SASL)).await;
    send(&mut ws, bind).await;
    let err = expect(&mut ws, "stream error", |e| e.is("error", ns::STREAM)).await;
    assert!(err.child("not-well-formed", ns::STREAM_ERRORS).is_some(), "{}", err.to_xml_string());
    still_works(&mut other).await;
}

/// In-band registration carries a password: over plain ws:// from another machine (no TLS,
/// no trusted proxy saying there was) it is neither offered nor accepted. From this
/// machine, as signing in, it is.
#[tokio::test]
async fn registration_is_refused_over_plain_http_from_elsewhere() {
    // The tests' configuration allows registration.
    let server = TestServer::start().await;
    let mut local = connect(&server).await;
    let f = open(&mut local).await;
    assert!(f.child("register", ns::REGISTER_FEATURE).is_some(), "from this machine: {}", f.to_xml_string());
    send(
        &mut local,
        "<iq xmlns='jabber:client' type='set' id='r'><query xmlns='jabber:iq:register'><username>dora</username><password>secret</password></query></iq>",
    )
    .await;
    let reply = expect(&mut local, "the registration", |e| e.name() == "iq").await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml_string());

    // Through the local proxy (trusted by default), for a client elsewhere, over plain HTTP.
    let mut req = request(&server, Some("xmpp"), None);
    req.headers_mut().insert("X-Forwarded-For", "203.0.113.7".parse().unwrap());
    req.headers_mut().insert("X-Forwarded-Proto", "http".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("handshake");
    let f = open(&mut ws).await;
    assert!(f.child("register", ns::REGISTER_FEATURE).is_none(), "{}", f.to_xml_string());
    send(
        &mut ws,
        "<iq xmlns='jabber:client' type='set' id='r'><query xmlns='jabber:iq:register'><username>eve</username><password>secret</password></query></iq>",
    )
    .await;
    let reply = expect(&mut ws, "the refusal", |e| e.name() == "iq").await;
    assert_eq!(reply.attr("type"), Some("error"), "{}", reply.to_xml_string());
    assert!(reply.child("error", ns::CLIENT).and_then(|e| e.child("not-allowed", ns::STANZA_ERRORS)).is_some());
    // Nothing was created: eve cannot sign in over TCP and TLS either.
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let failure = c.try_plain("eve", "secret").await;
    assert!(failure.is("failure", ns::SASL), "{}", failure.to_xml_string());
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_given_up_after_the_write_deadline() {
    let server = TestServer::start_with_tables("", "[limits]\nwrite_timeout_secs = 1\n").await;
    server.adduser("alice", "secret").await;
    server.adduser("bob", "secret").await;
    // alice's side takes little before the server's writes wait.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.http).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request(&server, Some("xmpp"), None), tcp).await.expect("handshake");
    let (mut ws, _) = sign_in(ws, "alice", "secret").await;
    send(&mut ws, "<presence xmlns='jabber:client'/>").await;
    let mut bob = Client::login(server.c2s, "bob", "secret", "tcp").await;
    bob.send("<presence/>").await;
    // bob subscribes to alice, so he sees her go.
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    expect(&mut ws, "subscription request", |e| e.attr("type") == Some("subscribe")).await;
    send(&mut ws, "<presence xmlns='jabber:client' to='bob@localhost' type='subscribed'/>").await;
    bob.expect("alice available", |e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/web") && e.attr("type").is_none()).await;

    // alice reads nothing from here on.
    let body = "x".repeat(100_000);
    for i in 0..40 {
        bob.send(format!("<message to='alice@localhost/web' type='chat' id='m{i}'><body>{body}</body></message>")).await;
    }
    bob.expect("alice given up", |e| e.name() == "presence" && e.attr("from") == Some("alice@localhost/web") && e.attr("type") == Some("unavailable")).await;
    bob.ping().await;
    // Then she reads: what was queued, the stream error, the close.
    let mut last = Vec::new();
    while let Some(el) = recv(&mut ws).await {
        last.push(el);
    }
    let errors: Vec<&Element> = last.iter().filter(|e| e.is("error", ns::STREAM)).collect();
    assert_eq!(errors.len(), 1, "one stream error after {} elements", last.len());
    // connection-timeout, or policy-violation if the session could still tell her it was
    // over the bound before the writes stopped.
    let condition = errors[0].children().next().map(|c| c.name().to_owned());
    assert!(matches!(condition.as_deref(), Some("connection-timeout" | "policy-violation")), "{}", errors[0].to_xml_string());
}

/// A client on another machine reaching plain ws:// (here through the trusted proxy on
/// loopback, which forwards its address and no `https`) may not sign in: its credentials
/// would cross the network in clear. The same client over HTTPS may, and so may it when
/// the operator allows it.
#[tokio::test]
async fn signing_in_over_plain_http_from_elsewhere_is_refused() {
    let remote = |server: &TestServer, proto: Option<&str>| {
        let mut req = request(server, Some("xmpp"), None);
        req.headers_mut().insert("X-Forwarded-For", "192.0.2.10".parse().unwrap());
        if let Some(p) = proto {
            req.headers_mut().insert("X-Forwarded-Proto", p.parse().unwrap());
        }
        req
    };
    let server = TestServer::start().await;
    server.adduser("alice", "secret").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(remote(&server, None)).await.unwrap();
    assert!(mechanisms(&mut ws).await.is_empty(), "no mechanism is offered in clear to another machine");
    send(&mut ws, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth>").await;
    let failure = recv(&mut ws).await.unwrap();
    assert!(failure.child("encryption-required", ns::SASL).is_some(), "{}", failure.to_xml_string());

    let (mut tls, _) = tokio_tungstenite::connect_async(remote(&server, Some("https"))).await.unwrap();
    assert!(mechanisms(&mut tls).await.contains(&"SCRAM-SHA-256".to_owned()), "behind a proxy that terminated TLS it may");

    let dev = TestServer::start_with_tables("", "[http]\nallow_unencrypted_auth = true").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(remote(&dev, None)).await.unwrap();
    assert!(mechanisms(&mut ws).await.contains(&"SCRAM-SHA-256".to_owned()), "allowed by the operator");
}
