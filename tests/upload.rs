//! XEP-0363 HTTP file upload against the real server: slots over XMPP, the file over
//! HTTP (PUT once, GET and HEAD with ranges, CORS), the limits, quotas and expiry, and
//! what a bad request gets.

use std::net::SocketAddr;
use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{free_port, test_config, Client, TestServer, DOMAIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPLOAD: &str = "urn:xmpp:http:upload:0";
const SERVICE: &str = "upload.localhost";

/// A server whose upload URLs point at its plain-HTTP listener, with `tables` added.
async fn server(tables: &str) -> (TestServer, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let mut config = test_config(dir.path(), "", tables);
    config.http.listen = vec![http];
    config.http.public_url = Some(format!("http://{http}"));
    let server = TestServer::start_config(dir, config).await;
    server.adduser("alice", "pw").await;
    let alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    (server, alice)
}

/// Asks for a slot; the iq reply (a result with `<slot/>`, or an error).
async fn request(alice: &mut Client, name: &str, size: &str, content_type: Option<&str>) -> Element {
    let ct = content_type.map(|t| format!(" content-type='{t}'")).unwrap_or_default();
    let xml = format!("<iq type='get' to='{SERVICE}' id='slot'><request xmlns='{UPLOAD}' filename='{name}' size='{size}'{ct}/></iq>");
    alice.iq("slot", &xml).await
}

/// The PUT and GET URLs of a granted slot.
async fn slot(alice: &mut Client, name: &str, size: usize, content_type: Option<&str>) -> (String, String) {
    let reply = request(alice, name, &size.to_string(), content_type).await;
    let slot = reply.child("slot", UPLOAD).unwrap_or_else(|| panic!("no slot: {}", reply.to_xml_string()));
    let url = |which: &str| slot.child(which, UPLOAD).and_then(|e| e.attr("url")).expect("a url").to_owned();
    (url("put"), url("get"))
}

fn error_condition(reply: &Element) -> String {
    assert_eq!(reply.attr("type"), Some("error"), "{}", reply.to_xml_string());
    let error = reply.child("error", ns::CLIENT).expect("an error");
    error.children().find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text").map(|c| c.name().to_owned()).unwrap_or_default()
}

struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request to an absolute `http://` URL; `body` sent as given, after the
/// headers (which must include any Content-Length).
async fn http(method: &str, url: &str, headers: &[(&str, String)], body: &[u8]) -> HttpResponse {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let addr: SocketAddr = host.parse().expect("host:port");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    // The server may answer (and close) before taking a body it refuses.
    let _ = tcp.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await.expect("an answer in time").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    HttpResponse { status, head, body: raw[split + 4..].to_vec() }
}

async fn put(url: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
    let mut headers = vec![("Content-Length", body.len().to_string())];
    if let Some(t) = content_type {
        headers.push(("Content-Type", t.to_owned()));
    }
    http("PUT", url, &headers, body).await
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn a_file_goes_up_once_and_comes_down_whole_or_in_ranges() {
    let (_server, mut alice) = server("").await;
    // The service is listed by the domain and says what it takes.
    let items = alice.iq("items", &format!("<iq type='get' to='{DOMAIN}' id='items'><query xmlns='{}'/></iq>", ns::DISCO_ITEMS)).await;
    let listed = items.child("query", ns::DISCO_ITEMS).is_some_and(|q| q.children().any(|i| i.attr("jid") == Some(SERVICE)));
    assert!(listed, "{}", items.to_xml_string());
    let info = alice.iq("info", &format!("<iq type='get' to='{SERVICE}' id='info'><query xmlns='{}'/></iq>", ns::DISCO_INFO)).await;
    let xml = info.to_xml_string();
    assert!(xml.contains(&format!("var='{UPLOAD}'")) || xml.contains(&format!("var=\"{UPLOAD}\"")), "{xml}");
    assert!(xml.contains("max-file-size") && xml.contains("104857600"), "{xml}");

    let data = content(100_000);
    let (put_url, get_url) = slot(&mut alice, "report final.txt", data.len(), Some("text/plain")).await;
    assert!(put_url.starts_with("http://") && get_url.contains("/report%20final%2Etxt"), "{put_url} {get_url}");
    assert!(!get_url.contains('?'), "the GET URL carries no signature: {get_url}");

    // A forged signature, then the real upload, then a second attempt.
    let forged = put_url.replace("sig=", "sig=x");
    assert_eq!(put(&forged, Some("text/plain"), &data).await.status, 403);
    assert_eq!(http("GET", &get_url, &[], b"").await.status, 404, "nothing to get before the upload");
    let created = put(&put_url, Some("text/plain"), &data).await;
    assert_eq!(created.status, 201, "{}", created.head);
    assert_eq!(created.header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(put(&put_url, Some("text/plain"), &data).await.status, 409, "a slot is used once");

    let got = http("GET", &get_url, &[], b"").await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert!(got.body == data, "the file comes back as it went up");
    assert_eq!(got.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(got.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(got.header("content-security-policy").is_some_and(|p| p.contains("sandbox")), "{}", got.head);
    assert!(got.header("content-disposition").is_some_and(|d| d.starts_with("attachment")), "{}", got.head);

    let part = http("GET", &get_url, &[("Range", "bytes=1000-1999".into())], b"").await;
    assert_eq!(part.status, 206, "{}", part.head);
    assert_eq!(part.header("content-range").as_deref(), Some("bytes 1000-1999/100000"));
    assert!(part.body == data[1000..2000]);
    let tail = http("GET", &get_url, &[("Range", "bytes=-10".into())], b"").await;
    assert!(tail.status == 206 && tail.body == data[data.len() - 10..]);
    let beyond = http("GET", &get_url, &[("Range", "bytes=100000-".into())], b"").await;
    assert_eq!(beyond.status, 416);

    let head = http("HEAD", &get_url, &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("100000"));
    assert!(head.body.is_empty());

    let preflight = http("OPTIONS", &put_url, &[("Origin", "https://elsewhere.example".into()), ("Access-Control-Request-Method", "PUT".into())], b"").await;
    assert!(preflight.status == 204 || preflight.status == 200, "{}", preflight.head);
    assert!(preflight.header("access-control-allow-methods").is_some_and(|m| m.contains("PUT")), "{}", preflight.head);
    assert!(preflight.header("access-control-allow-headers").is_some_and(|h| h.contains("Content-Type")), "{}", preflight.head);
}

#[tokio::test]
async fn uploads_that_do_not_match_their_slot_are_refused_and_leave_nothing() {
    let (server, mut alice) = server("").await;
    let data = content(5000);
    let (put_url, get_url) = slot(&mut alice, "photo.png", data.len(), Some("image/png")).await;
    assert_eq!(put(&put_url, Some("image/png"), &content(6000)).await.status, 413, "larger than the slot");
    assert_eq!(put(&put_url, Some("text/html"), &data).await.status, 400, "another type");
    assert_eq!(http("PUT", &put_url, &[("Content-Type", "image/png".into())], &data).await.status, 411, "no length");
    // A body that stops half-way: the server gives up on it and keeps nothing.
    let headers = [("Content-Type", "image/png".to_owned()), ("Content-Length", data.len().to_string())];
    let cut = tokio::time::timeout(Duration::from_secs(1), http("PUT", &put_url, &headers, &data[..2500])).await;
    assert!(cut.is_err(), "the server waits for the rest of the body, until the client goes");
    let uploads = server.dir.path().join("uploads").join(SERVICE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "a partial upload is discarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http("GET", &get_url, &[], b"").await.status, 404);
    // The slot still works for the real file.
    assert_eq!(put(&put_url, Some("image/png"), &data).await.status, 201);
    let got = http("GET", &get_url, &[], b"").await;
    assert!(got.status == 200 && got.body == data);
    assert!(got.header("content-disposition").is_some_and(|d| d.starts_with("inline")), "{}", got.head);
}

#[tokio::test]
async fn bad_slot_requests_get_the_xeps_errors_and_cost_nothing() {
    let tables = "[upload]\nmax_file_bytes = 1000\nquota_bytes_per_day = 3000\nslots_per_minute = 10\nallowed_types = ['image/*', 'text/plain']";
    let (_server, mut alice) = server(tables).await;
    let too_large = request(&mut alice, "big.png", "1001", Some("image/png")).await;
    assert_eq!(error_condition(&too_large), "not-acceptable");
    let max = too_large.child("error", ns::CLIENT).and_then(|e| e.child("file-too-large", UPLOAD)).and_then(|f| f.child_text("max-file-size", UPLOAD));
    assert_eq!(max.as_deref(), Some("1000"), "{}", too_large.to_xml_string());
    for size in ["-5", "0", "abc", "", "1e3", "99999999999999999999999"] {
        assert_eq!(error_condition(&request(&mut alice, "a.png", size, None).await), "bad-request", "size {size:?}");
    }
    let long = "x".repeat(10_000);
    // (A NUL cannot even be written in XML: the stream would end.)
    for name in ["../../etc/passwd", "a/b.png", "line&#10;break.png", "back\\slash.png", "", long.as_str()] {
        let reply = request(&mut alice, name, "1000", None).await;
        assert_eq!(error_condition(&reply), "bad-request", "name {name:?}: {}", reply.to_xml_string());
    }
    assert_eq!(error_condition(&request(&mut alice, "page.html", "1000", Some("text/html")).await), "not-acceptable");
    // None of that counted: the day's quota still holds three files of 1000 bytes.
    for i in 0..3 {
        slot(&mut alice, &format!("ok{i}.png"), 1000, Some("image/png")).await;
    }
    let over = request(&mut alice, "one-more.png", "1", Some("image/png")).await;
    assert_eq!(error_condition(&over), "resource-constraint", "{}", over.to_xml_string());
}

#[tokio::test]
async fn slot_requests_are_rate_limited_per_account() {
    let (_server, mut alice) = server("[upload]\nslots_per_minute = 5").await;
    for i in 0..5 {
        slot(&mut alice, &format!("f{i}.txt"), 10, None).await;
    }
    assert_eq!(error_condition(&request(&mut alice, "f5.txt", "10", None).await), "resource-constraint");
}

#[tokio::test]
async fn an_account_holds_a_bounded_number_of_files() {
    let (_server, mut alice) = server("[upload]\nmax_files = 3").await;
    for i in 0..3 {
        slot(&mut alice, &format!("tiny{i}.txt"), 1, None).await;
    }
    let over = request(&mut alice, "tiny3.txt", "1", None).await;
    assert_eq!(error_condition(&over), "resource-constraint", "{}", over.to_xml_string());
}

#[tokio::test]
async fn urls_and_files_expire() {
    // Times are whole seconds on the server, so each check keeps a margin of more than a
    // second from its boundary (a loaded CI machine adds its own delays).
    let (server, mut alice) = server("[upload]\nslot_lifetime_secs = 1\nexpire_after_secs = 6").await;
    let data = content(1000);
    let (late_put, _) = slot(&mut alice, "late.txt", data.len(), None).await;
    let (put_url, get_url) = slot(&mut alice, "kept.txt", data.len(), None).await;
    assert_eq!(put(&put_url, None, &data).await.status, 201);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(put(&late_put, None, &data).await.status, 403, "an expired upload URL");
    assert_eq!(http("GET", &get_url, &[], b"").await.status, 200, "the file is kept until it expires");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http("GET", &get_url, &[], b"").await.status != 404 {
        assert!(tokio::time::Instant::now() < deadline, "the file never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Slot requests sweep, at most once per expire_after_secs: the expired file leaves the disk.
    let uploads = server.dir.path().join("uploads").join(SERVICE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        slot(&mut alice, &format!("next{i}.txt"), 10, None).await;
        if std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the expired file is still on disk");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn deleting_an_account_deletes_its_files() {
    let (server, mut alice) = server("").await;
    let data = content(1000);
    let (put_url, get_url) = slot(&mut alice, "mine.txt", data.len(), None).await;
    assert_eq!(put(&put_url, None, &data).await.status, 201);
    let uploads = server.dir.path().join("uploads").join(SERVICE);
    assert_eq!(std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0), 1);
    let remove = "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    assert_eq!(alice.iq("rm", remove).await.attr("type"), Some("result"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the deleted account's file is still on disk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http("GET", &get_url, &[], b"").await.status, 404);
}
