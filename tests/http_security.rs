//! What the HTTP side tells browsers and believes from them: the web client's
//! Content-Security-Policy and the other security headers, HSTS on encrypted responses,
//! which page origins may open WebSocket and BOSH sessions, and discovery links that do not
//! follow the request's Host header.

use std::net::SocketAddr;

use base64::Engine;
use jabberwock_tests::{TestServer, DOMAIN, TIMEOUT};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Sends `head` (a request line and headers, without the blank line) and returns the
/// status and the whole response.
async fn exchange(mut io: impl AsyncRead + AsyncWrite + Unpin, head: &str) -> (u16, String) {
    io.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, io.read_to_end(&mut out)).await.expect("response in time").unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    (status(&out), out)
}

fn status(response: &str) -> u16 {
    response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends a whole request and returns the status of the response, whose connection may
/// stay open (a WebSocket, a BOSH session).
async fn status_of(server: &TestServer, request: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = vec![0; 4096];
    let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut out)).await.expect("response in time").unwrap();
    status(&String::from_utf8_lossy(&out[..n]))
}

async fn plain(addr: SocketAddr, head: &str) -> (u16, String) {
    exchange(tokio::net::TcpStream::connect(addr).await.unwrap(), head).await
}

async fn tls(addr: SocketAddr, head: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let stream = jabberwock_tests::tls_connector(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    exchange(stream, head).await
}

/// The value of response header `name`, if present.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = &response[..response.find("\r\n\r\n").unwrap_or(response.len())];
    head.lines().skip(1).find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// The sources of directive `name` in a Content-Security-Policy.
fn directive<'a>(policy: &'a str, name: &str) -> Vec<&'a str> {
    let found = policy.split(';').map(str::trim).find(|d| d.split_whitespace().next() == Some(name));
    found.map(|d| d.split_whitespace().skip(1).collect()).unwrap_or_default()
}

fn sha256_source(script: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script)))
}

const LOADER: &str = "import init from '/app-1234.js'; await init({ module_or_path: '/app-1234_bg.wasm' });";

/// A built client as trunk lays it out: a page with an inline module loader, and assets.
fn write_client(root: &std::path::Path, loader: &str) {
    let page = format!(
        "<!doctype html><html><head><link rel=\"modulepreload\" href=\"/app-1234.js\">\
         <script type=\"module\">{loader}</script></head><body></body></html>"
    );
    std::fs::write(root.join("index.html"), page).unwrap();
    std::fs::write(root.join("app-1234.js"), "export default async function init() {}").unwrap();
    std::fs::write(root.join("style-0123456789abcdef.css"), "body {}").unwrap();
    std::fs::write(root.join("widget.js"), "// the loader other sites embed").unwrap();
}

async fn with_client(extra_http: &str) -> (TestServer, tempfile::TempDir) {
    let web = tempfile::tempdir().unwrap();
    write_client(web.path(), LOADER);
    let tables = format!("[http]\nweb_root = {:?}\n{extra_http}", web.path().display().to_string());
    (TestServer::start_with_tables("", &tables).await, web)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost")
}

#[tokio::test]
async fn the_web_client_runs_its_own_scripts_and_wasm_and_nothing_else() {
    let (server, web) = with_client("").await;
    for path in ["/", "/index.html", "/some/client/route"] {
        let (status, page) = plain(server.http, &get(path)).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains(LOADER), "{path}: {page}");
        let policy = header(&page, "content-security-policy").unwrap_or_else(|| panic!("{path}: no policy: {page}"));
        assert_eq!(directive(policy, "default-src"), ["'none'"], "{policy}");
        assert_eq!(directive(policy, "script-src"), ["'self'", "'wasm-unsafe-eval'", &sha256_source(LOADER)], "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("'unsafe-eval'"), "{policy}");
        assert_eq!(directive(policy, "frame-ancestors"), ["'self'"], "{policy}");
        assert_eq!(directive(policy, "base-uri"), ["'none'"], "{policy}");
        assert_eq!(directive(policy, "manifest-src"), ["'self'"], "the app manifest: {policy}");
        assert_eq!(directive(policy, "worker-src"), ["'self'"], "the service worker: {policy}");
        assert_eq!(directive(policy, "object-src"), Vec::<&str>::new(), "objects fall under default-src: {policy}");
        assert_eq!(header(&page, "x-frame-options"), Some("SAMEORIGIN"), "{page}");
        assert_eq!(header(&page, "x-content-type-options"), Some("nosniff"), "{page}");
        assert_eq!(header(&page, "referrer-policy"), Some("no-referrer"), "{page}");
        assert_eq!(header(&page, "cache-control"), Some("no-cache"), "{page}");
    }

    // Assets named by their content hash are kept forever; names that stay across releases
    // are checked at each use.
    for (path, cache) in [("/style-0123456789abcdef.css", "public, max-age=31536000, immutable"), ("/widget.js", "no-cache"), ("/app-1234.js", "no-cache")] {
        let (status, response) = plain(server.http, &get(path)).await;
        assert_eq!(status, 200, "{path}: {response}");
        assert_eq!(header(&response, "cache-control"), Some(cache), "{path}");
    }

    // Every other response carries the policy too, without any inline script allowed.
    for path in ["/app-1234.js", "/healthz", "/.well-known/host-meta"] {
        let (status, response) = plain(server.http, &get(path)).await;
        assert_eq!(status, 200, "{path}: {response}");
        let policy = header(&response, "content-security-policy").unwrap_or_else(|| panic!("{path}: {response}"));
        assert_eq!(directive(policy, "script-src"), ["'self'", "'wasm-unsafe-eval'"], "{path}: {policy}");
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"), "{path}");
    }

    // A rebuilt client is served with the hash of its new loader at once.
    let rebuilt = "import init from '/app-5678.js'; await init();";
    write_client(web.path(), rebuilt);
    let (_, page) = plain(server.http, &get("/")).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert_eq!(directive(policy, "script-src"), ["'self'", "'wasm-unsafe-eval'", &sha256_source(rebuilt)], "{policy}");
}

/// The server brings the client published in `static/web-client/` inside its binary: with
/// no `web_root` and no local build, that is what `/` serves.
#[tokio::test]
async fn the_embedded_client_is_served_without_a_build_on_disk() {
    let published = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../static/web-client");
    let files: Vec<String> =
        std::fs::read_dir(&published).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    // The page's module, named by its content (the session's worker, `jabberwock-session_bg.wasm`, is not).
    let wasm = files.iter().find(|f| f.starts_with("jabberwock-web-client-") && f.ends_with("_bg.wasm")).expect("a published module");
    let size = |name: &str| std::fs::metadata(published.join(name)).unwrap().len().to_string();

    let server = TestServer::start_with_tables("", "").await;
    for path in ["/", "/index.html", "/a/client/route"] {
        let (status, page) = plain(server.http, &get(path)).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains(wasm.as_str()), "{path} does not load {wasm}: {page}");
        assert_eq!(header(&page, "cache-control"), Some("no-cache"), "{path}");
        let policy = header(&page, "content-security-policy").unwrap();
        assert_eq!(directive(policy, "script-src").len(), 3, "the loader's hash is allowed: {policy}");
    }

    let (status, raw) = plain(server.http, &get(&format!("/{wasm}"))).await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(header(&raw, "content-type"), Some("application/wasm"));
    assert_eq!(header(&raw, "content-encoding"), None);
    assert_eq!(header(&raw, "content-length"), Some(size(wasm).as_str()));
    assert_eq!(header(&raw, "cache-control"), Some("public, max-age=31536000, immutable"));
    let (status, raw) = plain(server.http, &get("/widget.js")).await;
    assert_eq!((status, header(&raw, "cache-control")), (200, Some("no-cache")), "other sites embed it by this name: {raw}");

    let (status, gzipped) = plain(server.http, &format!("{}\r\nAccept-Encoding: br, gzip", get(&format!("/{wasm}")))).await;
    assert_eq!(status, 200);
    assert_eq!(header(&gzipped, "content-encoding"), Some("gzip"));
    assert_eq!(header(&gzipped, "content-length"), Some(size(&format!("{wasm}.gz")).as_str()));
    assert_eq!(header(&gzipped, "content-type"), Some("application/wasm"));

    let (status, _) = plain(server.http, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn sites_allowed_to_embed_the_client_are_its_only_other_frame_ancestors() {
    let (server, _web) = with_client("embed_origins = ['https://shop.example.org']").await;
    let (_, page) = plain(server.http, &get("/")).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert_eq!(directive(policy, "frame-ancestors"), ["'self'", "https://shop.example.org"], "{policy}");
    assert!(directive(policy, "script-src").contains(&sha256_source(LOADER).as_str()), "{policy}");
    assert_eq!(header(&page, "x-frame-options"), None, "it would forbid the embedding site: {page}");
}

#[tokio::test]
async fn hsts_is_sent_on_encrypted_responses_only() {
    let server = TestServer::start().await;
    let healthz = "GET /healthz HTTP/1.1\r\nHost: chat.example.org";
    let (status, secure) = tls(server.https, healthz).await;
    assert_eq!(status, 200, "{secure}");
    assert_eq!(header(&secure, "strict-transport-security"), Some("max-age=31536000"), "{secure}");
    let (_, clear) = plain(server.http, healthz).await;
    assert_eq!(header(&clear, "strict-transport-security"), None, "{clear}");
    // A TLS-terminating proxy on loopback (trusted by default) that says HTTPS.
    let (_, proxied) = plain(server.http, &format!("{healthz}\r\nX-Forwarded-Proto: https")).await;
    assert_eq!(header(&proxied, "strict-transport-security"), Some("max-age=31536000"), "{proxied}");
    // Not to a browser on this machine, which would then refuse plain HTTP to any local site.
    for local in ["localhost:5443", "127.0.0.1:5443", "[::1]:5443"] {
        let (_, response) = tls(server.https, &format!("GET /healthz HTTP/1.1\r\nHost: {local}")).await;
        assert_eq!(header(&response, "strict-transport-security"), None, "{local}: {response}");
    }

    let untrusted = TestServer::start_with_tables("", "[http]\ntrusted_proxies = []\nhsts_max_age_secs = 600").await;
    let (_, claimed) = plain(untrusted.http, &format!("{healthz}\r\nX-Forwarded-Proto: https")).await;
    assert_eq!(header(&claimed, "strict-transport-security"), None, "only a trusted proxy is believed: {claimed}");
    let (_, secure) = tls(untrusted.https, healthz).await;
    assert_eq!(header(&secure, "strict-transport-security"), Some("max-age=600"), "{secure}");

    let off = TestServer::start_with_tables("", "[http]\nhsts_max_age_secs = 0").await;
    let (_, secure) = tls(off.https, healthz).await;
    assert_eq!(header(&secure, "strict-transport-security"), None, "{secure}");
}

/// The status of a WebSocket handshake from a page of `origin`, asking for `host`.
async fn websocket_status(server: &TestServer, host: &str, origin: &str) -> u16 {
    let request = format!(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
    );
    status_of(server, &request).await
}

/// The status of a BOSH session creation from a page of `origin`, and whether a CORS
/// preflight from it is answered with its origin.
async fn bosh_status(server: &TestServer, host: &str, origin: &str) -> (u16, bool) {
    let body = "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' wait='1' hold='1' ver='1.6'/>";
    let request = format!(
        "POST /http-bind HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let status = status_of(server, &request).await;
    let preflight = format!(
        "OPTIONS /http-bind HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type"
    );
    let (_, answer) = plain(server.http, &preflight).await;
    (status, header(&answer, "access-control-allow-origin") == Some(origin))
}

#[tokio::test]
async fn a_page_may_open_sessions_only_from_a_configured_origin_whatever_host_it_names() {
    let server = TestServer::start_with_tables(
        "",
        "[http]\npublic_url = 'https://chat.example.org'\nallowed_origins = ['https://app.example.net']",
    )
    .await;
    let http_host = format!("localhost:{}", server.http.port());
    // Any site can point its name at the server: its pages then send its own name as Host.
    for (host, origin) in [("evil.example", "http://evil.example"), ("evil.example:5280", "http://evil.example:5280")] {
        assert_eq!(websocket_status(&server, host, origin).await, 403, "{origin}");
        assert_eq!(bosh_status(&server, host, origin).await, (403, false), "{origin}");
    }
    for origin in [
        "https://chat.example.org",     // http.public_url
        "https://app.example.net",      // http.allowed_origins
        &format!("http://{http_host}"), // the served domain
        "http://127.0.0.1:8080",        // a page on the browser's own machine
    ] {
        assert_eq!(websocket_status(&server, "evil.example", origin).await, 101, "{origin}");
        assert_eq!(bosh_status(&server, &http_host, origin).await, (200, true), "{origin}");
    }
    for origin in ["http://chat.example.org", "https://chat.example.org:8443", "null"] {
        assert_eq!(websocket_status(&server, "chat.example.org", origin).await, 403, "{origin}");
    }
}

fn host_meta_links(response: &str) -> Vec<String> {
    response.split("href='").skip(1).filter_map(|rest| rest.split_once('\'')).map(|(href, _)| href.to_owned()).collect()
}

#[tokio::test]
async fn discovery_advertises_the_configured_server_not_the_host_asked() {
    let server = TestServer::start().await;
    let (http_port, https_port) = (server.http.port(), server.https.port());
    let request = |host: &str| format!("GET /.well-known/host-meta HTTP/1.1\r\nHost: {host}");
    let (_, response) = plain(server.http, &request("evil.example")).await;
    assert_eq!(
        host_meta_links(&response),
        [format!("ws://localhost:{http_port}/xmpp-websocket"), format!("http://localhost:{http_port}/http-bind")],
        "{response}"
    );
    let (_, response) = tls(server.https, &request("evil.example")).await;
    assert_eq!(
        host_meta_links(&response),
        [format!("wss://localhost:{https_port}/xmpp-websocket"), format!("https://localhost:{https_port}/http-bind")]
    );
    // Behind a TLS-terminating proxy, the browser used the default port.
    let (_, response) = plain(server.http, &format!("{}\r\nX-Forwarded-Proto: https", request("evil.example"))).await;
    assert_eq!(host_meta_links(&response), ["wss://localhost/xmpp-websocket", "https://localhost/http-bind"]);

    // The request's Host picks among the served domains.
    let two = TestServer::start_with("domains = ['example.org', 'example.net']").await;
    let port = two.http.port();
    let (_, response) = plain(two.http, &request(&format!("EXAMPLE.NET:{port}"))).await;
    assert_eq!(host_meta_links(&response)[0], format!("ws://example.net:{port}/xmpp-websocket"));
    let (_, response) = plain(two.http, &request("evil.example")).await;
    assert_eq!(host_meta_links(&response)[0], format!("ws://example.org:{port}/xmpp-websocket"));

    // With a public URL, that one.
    let public = TestServer::start_with_tables("", "[http]\npublic_url = 'https://chat.example.org/'").await;
    let (_, response) = plain(public.http, &request("evil.example")).await;
    assert_eq!(host_meta_links(&response), ["wss://chat.example.org/xmpp-websocket", "https://chat.example.org/http-bind"]);
}

/// With uploads enabled, the page may show images from where uploads are served (the web
/// client previews them inline) and send files there, and images come from nowhere else.
#[tokio::test]
async fn images_come_from_this_origin_and_the_upload_service_only() {
    let (server, _web) = with_client("[upload]\nenabled = false").await;
    let (_, page) = plain(server.http, &get("/")).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert_eq!(directive(policy, "img-src"), ["'self'", "data:"], "no uploads, no other origin: {policy}");
    assert_eq!(directive(policy, "connect-src"), ["'self'", "https:", "wss:"], "{policy}");

    let web = tempfile::tempdir().unwrap();
    write_client(web.path(), LOADER);
    let tables =
        format!("[http]\nweb_root = {:?}\npublic_url = \"https://files.example.org/chat/\"\n[upload]\nenabled = true\n", web.path().display().to_string());
    let server = TestServer::start_with_tables("", &tables).await;
    let (_, page) = plain(server.http, &get("/")).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert_eq!(directive(policy, "img-src"), ["'self'", "data:", "https://files.example.org"], "{policy}");

    // A development server on plain http: its upload origin is named for connections too.
    let web = tempfile::tempdir().unwrap();
    write_client(web.path(), LOADER);
    let tables = format!("[http]\nweb_root = {:?}\npublic_url = \"http://files.test:8080\"\n", web.path().display().to_string());
    let server = TestServer::start_with_tables("", &tables).await;
    let (_, page) = plain(server.http, &get("/")).await;
    let policy = header(&page, "content-security-policy").unwrap();
    assert_eq!(directive(policy, "img-src"), ["'self'", "data:", "http://files.test:8080"], "{policy}");
    assert_eq!(directive(policy, "connect-src"), ["'self'", "https:", "wss:", "http://files.test:8080"], "{policy}");
}
