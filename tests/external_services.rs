//! XEP-0215 external service discovery: configured STUN and TURN servers, with TURN
//! credentials coturn accepts (its REST scheme with `use-auth-secret`), for local
//! accounts only.

use base64::Engine;
use hmac::{Hmac, Mac};
use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer, DOMAIN};

const EXTDISCO: &str = "urn:xmpp:extdisco:2";
const SECRET: &str = "shared-with-coturn";

const CONFIG: &str = "[external_services]\nturn_secret = 'shared-with-coturn'\ncredential_ttl_secs = 600\n\
    [[external_services.service]]\ntype = 'stun'\nhost = 'stun.example.org'\nport = 3478\ntransport = 'udp'\n\
    [[external_services.service]]\ntype = 'turn'\nhost = 'turn.example.org'\nport = 3478\ntransport = 'udp'\n\
    [[external_services.service]]\ntype = 'turns'\nhost = 'turn.example.org'\nport = 5349\ntransport = 'tcp'\n";

fn services(reply: &Element, wrapper: &str) -> Vec<Element> {
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml_string());
    reply.child(wrapper, EXTDISCO).expect("the payload").children().cloned().collect()
}

/// What coturn computes from the username with its `static-auth-secret`.
fn coturn_password(username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn stun_and_turn_services_with_time_limited_turn_credentials() {
    let server = TestServer::start_with_tables("", CONFIG).await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    let info = alice.iq("info", &format!("<iq type='get' to='{DOMAIN}' id='info'><query xmlns='{}'/></iq>", ns::DISCO_INFO)).await;
    assert!(info.to_xml_string().contains(EXTDISCO), "advertised: {}", info.to_xml_string());

    let all = alice.iq("all", &format!("<iq type='get' to='{DOMAIN}' id='all'><services xmlns='{EXTDISCO}'/></iq>")).await;
    let all = services(&all, "services");
    assert_eq!(all.len(), 3);
    let stun = &all[0];
    assert_eq!((stun.attr("type"), stun.attr("host"), stun.attr("port"), stun.attr("transport")), (Some("stun"), Some("stun.example.org"), Some("3478"), Some("udp")));
    assert!(stun.attr("username").is_none(), "STUN needs no credentials");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for turn in &all[1..] {
        let username = turn.attr("username").expect("a username");
        let (expiry, user) = username.split_once(':').expect("<expiry>:<user>");
        assert_eq!(user, "alice@localhost");
        let expiry: i64 = expiry.parse().expect("a Unix time");
        assert!((now + 590..=now + 610).contains(&expiry), "valid for the configured 600 s: {expiry} vs {now}");
        assert_eq!(turn.attr("password"), Some(coturn_password(username).as_str()), "coturn would accept it");
        assert_eq!(turn.attr("restricted"), Some("1"));
        assert!(turn.attr("expires").is_some_and(|e| e.ends_with('Z')));
    }

    let only_turn = alice.iq("turn", &format!("<iq type='get' to='{DOMAIN}' id='turn'><services xmlns='{EXTDISCO}' type='turn'/></iq>")).await;
    assert_eq!(services(&only_turn, "services").len(), 1);

    let ask = format!("<iq type='get' to='{DOMAIN}' id='cred'><credentials xmlns='{EXTDISCO}'><service type='turns' host='turn.example.org'/></credentials></iq>");
    let creds = services(&alice.iq("cred", &ask).await, "credentials");
    assert_eq!((creds.len(), creds[0].attr("port")), (1, Some("5349")));
    let unknown = format!("<iq type='get' to='{DOMAIN}' id='none'><credentials xmlns='{EXTDISCO}'><service type='turn' host='elsewhere.example'/></credentials></iq>");
    let none = alice.iq("none", &unknown).await;
    assert!(none.child("error", ns::CLIENT).and_then(|e| e.child("item-not-found", ns::STANZA_ERRORS)).is_some(), "{}", none.to_xml_string());
}

#[tokio::test]
async fn no_services_configured_means_nothing_advertised() {
    let server = TestServer::start().await;
    server.adduser("alice", "pw").await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "phone").await;
    let reply = alice.iq("all", &format!("<iq type='get' to='{DOMAIN}' id='all'><services xmlns='{EXTDISCO}'/></iq>")).await;
    assert!(reply.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some(), "{}", reply.to_xml_string());
}
