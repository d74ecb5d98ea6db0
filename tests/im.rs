//! RFC 6121 over real connections: roster, every subscription transition, presence,
//! message routing and offline storage, plus the server iqs.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{befriend, Client, TestServer};

const QUIET: Duration = Duration::from_millis(300);

async fn users(server: &TestServer, names: &[&str]) {
    for n in names {
        server.adduser(n, "pw").await;
    }
}

/// Logs in, fetches the roster and sends initial presence (consuming its echo).
async fn online(server: &TestServer, user: &str, resource: &str) -> Client {
    let mut c = Client::login(server.c2s, user, "pw", resource).await;
    let roster = c.iq("r0", "<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>").await;
    assert_eq!(roster.attr("type"), Some("result"));
    c.send("<presence/>").await;
    let own = c.jid.clone();
    c.expect("own presence echo", move |e| e.name() == "presence" && e.attr("from") == Some(own.as_str())).await;
    c
}

fn is_presence_from(e: &Element, from_prefix: &str, kind: Option<&str>) -> bool {
    e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with(from_prefix)) && e.attr("type") == kind
}

/// Waits for a roster push for `jid` and returns its item.
async fn push_for(c: &mut Client, jid: &str) -> Element {
    let jid = jid.to_owned();
    let iq = c
        .expect("roster push", |e| {
            e.name() == "iq"
                && e.attr("type") == Some("set")
                && e.child("query", ns::ROSTER).and_then(|q| q.child("item", ns::ROSTER)).and_then(|i| i.attr("jid"))
                    == Some(jid.as_str())
        })
        .await;
    iq.child("query", ns::ROSTER).unwrap().child("item", ns::ROSTER).unwrap().clone()
}

async fn roster_item(c: &mut Client, jid: &str) -> Option<Element> {
    let r = c.iq("rg", "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>").await;
    let item = r.child("query", ns::ROSTER)?.children().find(|i| i.attr("jid") == Some(jid)).cloned();
    item
}

fn sub(item: &Element) -> (&str, Option<&str>) {
    (item.attr("subscription").unwrap_or(""), item.attr("ask"))
}

#[tokio::test]
async fn roster_set_get_remove_and_versioning() {
    let server = TestServer::start().await;
    users(&server, &["alice"]).await;
    let mut a1 = online(&server, "alice", "one").await;
    let mut a2 = online(&server, "alice", "two").await;
    let set = a1
        .iq(
            "s1",
            "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' name='Carol'><group>Friends</group></item></query></iq>",
        )
        .await;
    assert_eq!(set.attr("type"), Some("result"));
    // Pushed to both interested resources.
    for c in [&mut a1, &mut a2] {
        let item = push_for(c, "carol@localhost").await;
        assert_eq!(item.attr("name"), Some("Carol"));
        assert_eq!(item.child_text("group", ns::ROSTER).as_deref(), Some("Friends"));
        assert_eq!(sub(&item), ("none", None));
    }
    let r = a1.iq("g", "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>").await;
    let ver = r.child("query", ns::ROSTER).unwrap().attr("ver").unwrap().to_owned();
    // XEP-0237: an unchanged version gets an empty result.
    let same = a1.iq("g2", &format!("<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>")).await;
    assert_eq!(same.attr("type"), Some("result"));
    assert!(same.first_child().is_none(), "{}", same.to_xml_string());
    let old = a1.iq("g3", "<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='0'/></iq>").await;
    assert_eq!(old.child("query", ns::ROSTER).unwrap().children().count(), 1);
    // Bad sets.
    let dup = a1
        .iq("b1", "<iq type='set' id='b1'><query xmlns='jabber:iq:roster'><item jid='x@localhost'><group>G</group><group>G</group></item></query></iq>")
        .await;
    assert_eq!(dup.attr("type"), Some("error"));
    let two = a1
        .iq("b2", "<iq type='set' id='b2'><query xmlns='jabber:iq:roster'><item jid='x@localhost'/><item jid='y@localhost'/></query></iq>")
        .await;
    assert!(two.child("error", ns::CLIENT).and_then(|e| e.child("bad-request", ns::STANZA_ERRORS)).is_some());
    // Remove.
    let rm = a2
        .iq("rm", "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' subscription='remove'/></query></iq>")
        .await;
    assert_eq!(rm.attr("type"), Some("result"));
    let removed = push_for(&mut a1, "carol@localhost").await;
    assert_eq!(removed.attr("subscription"), Some("remove"));
    assert!(roster_item(&mut a1, "carol@localhost").await.is_none());
    // Someone else's roster is off limits.
    let other = a1.iq("o", "<iq type='get' id='o' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>").await;
    assert_eq!(other.attr("type"), Some("error"));
}

/// Walks the whole RFC 6121 subscription state machine between two online users.
#[tokio::test]
async fn subscription_state_machine() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = online(&server, "alice", "a").await;
    let mut bob = online(&server, "bob", "b").await;

    // none → none + pending out; bob sees the request (none + pending in).
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    assert_eq!(sub(&push_for(&mut alice, "bob@localhost").await), ("none", Some("subscribe")));
    let req = bob.expect("subscribe", |e| is_presence_from(e, "alice@localhost", Some("subscribe"))).await;
    assert_eq!(req.attr("from"), Some("alice@localhost"), "subscription stanzas carry bare JIDs");

    // bob approves: bob from, alice to; alice gets bob's presence.
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("from", None));
    assert_eq!(sub(&push_for(&mut alice, "bob@localhost").await), ("to", None));
    alice.expect("subscribed", |e| is_presence_from(e, "bob@localhost", Some("subscribed"))).await;
    alice.expect("bob's presence", |e| is_presence_from(e, "bob@localhost/b", None)).await;

    // The reverse direction: both.
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("from", Some("subscribe")));
    alice.expect("subscribe", |e| is_presence_from(e, "bob@localhost", Some("subscribe"))).await;
    alice.send("<presence to='bob@localhost' type='subscribed'/>").await;
    assert_eq!(sub(&push_for(&mut alice, "bob@localhost").await), ("both", None));
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("both", None));
    bob.expect("alice's presence", |e| is_presence_from(e, "alice@localhost/a", None)).await;

    // Presence updates flow both ways now.
    alice.send("<presence><show>away</show><status>lunch</status></presence>").await;
    let p = bob.expect("alice away", |e| is_presence_from(e, "alice@localhost/a", None)).await;
    assert_eq!(p.child_text("show", ns::CLIENT).as_deref(), Some("away"));

    // alice unsubscribes from bob: alice from, bob to.
    alice.send("<presence to='bob@localhost' type='unsubscribe'/>").await;
    assert_eq!(sub(&push_for(&mut alice, "bob@localhost").await), ("from", None));
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("to", None));
    bob.expect("unsubscribe", |e| is_presence_from(e, "alice@localhost", Some("unsubscribe"))).await;

    // bob cancels alice's remaining subscription... from alice's side: alice revokes bob's.
    alice.send("<presence to='bob@localhost' type='unsubscribed'/>").await;
    assert_eq!(sub(&push_for(&mut alice, "bob@localhost").await), ("none", None));
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("none", None));
    bob.expect("unsubscribed", |e| is_presence_from(e, "alice@localhost", Some("unsubscribed"))).await;
    bob.expect("alice unavailable", |e| is_presence_from(e, "alice@localhost/a", Some("unavailable"))).await;

    // With no subscription, presence no longer reaches bob.
    alice.send("<presence><status>back</status></presence>").await;
    bob.expect_none(QUIET, "presence without subscription", |e| is_presence_from(e, "alice@localhost", None)).await;

    // A denied request: bob asks, alice refuses; bob ends with none and no ask.
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("none", Some("subscribe")));
    alice.expect("subscribe", |e| is_presence_from(e, "bob@localhost", Some("subscribe"))).await;
    alice.send("<presence to='bob@localhost' type='unsubscribed'/>").await;
    assert_eq!(sub(&push_for(&mut bob, "alice@localhost").await), ("none", None));
}

#[tokio::test]
async fn pending_request_is_delivered_at_login_and_pre_approval_works() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob", "carol"]).await;
    let mut alice = online(&server, "alice", "a").await;
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    push_for(&mut alice, "bob@localhost").await;
    // bob was offline: the request waits for him.
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    bob.expect("stored subscribe", |e| is_presence_from(e, "alice@localhost", Some("subscribe"))).await;

    // Pre-approval: carol approves alice before alice asks; alice's request is then
    // answered by the server at once.
    let mut carol = online(&server, "carol", "c").await;
    carol.send("<presence to='alice@localhost' type='subscribed'/>").await;
    let item = push_for(&mut carol, "alice@localhost").await;
    assert_eq!(item.attr("approved"), Some("true"));
    alice.send("<presence to='carol@localhost' type='subscribe'/>").await;
    alice.expect("auto subscribed", |e| is_presence_from(e, "carol@localhost", Some("subscribed"))).await;
    let item = push_for(&mut carol, "alice@localhost").await;
    assert_eq!(sub(&item), ("from", None));
    carol.expect_none(QUIET, "a request already approved", |e| is_presence_from(e, "alice@localhost", Some("subscribe"))).await;
}

#[tokio::test]
async fn subscribing_to_a_missing_account_is_refused() {
    let server = TestServer::start().await;
    users(&server, &["alice"]).await;
    let mut alice = online(&server, "alice", "a").await;
    alice.send("<presence to='nobody@localhost' type='subscribe'/>").await;
    alice.expect("unsubscribed", |e| is_presence_from(e, "nobody@localhost", Some("unsubscribed"))).await;
    assert_eq!(sub(&roster_item(&mut alice, "nobody@localhost").await.unwrap()), ("none", None));
}

#[tokio::test]
async fn presence_probes_directed_presence_and_unavailable_on_disconnect() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob", "carol"]).await;
    let mut alice = online(&server, "alice", "a").await;
    let mut bob = online(&server, "bob", "b").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;

    // A second resource of bob learns alice's presence (probe) and its sibling's.
    let mut bob2 = Client::login(server.c2s, "bob", "pw", "b2").await;
    bob2.send("<presence><priority>5</priority></presence>").await;
    bob2.expect("alice via probe", |e| is_presence_from(e, "alice@localhost/a", None)).await;
    // alice sees bob2 arrive.
    let p = alice.expect("bob2 available", |e| is_presence_from(e, "bob@localhost/b2", None)).await;
    assert_eq!(p.child_text("priority", ns::CLIENT).as_deref(), Some("5"));

    // Directed presence to carol (no subscription), then unavailable reaches her too.
    let mut carol = online(&server, "carol", "c").await;
    alice.send("<presence to='carol@localhost/c'><status>hi carol</status></presence>").await;
    carol.expect("directed", |e| is_presence_from(e, "alice@localhost/a", None)).await;
    drop(alice); // the TCP connection just dies
    carol.expect("unavailable to directed", |e| is_presence_from(e, "alice@localhost/a", Some("unavailable"))).await;
    bob.expect("unavailable to subscriber", |e| is_presence_from(e, "alice@localhost/a", Some("unavailable"))).await;
}

#[tokio::test]
async fn message_routing_follows_rfc_6121() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = online(&server, "alice", "a").await;
    let mut hi = Client::login(server.c2s, "bob", "pw", "hi").await;
    hi.send("<presence><priority>10</priority></presence>").await;
    let mut lo = Client::login(server.c2s, "bob", "pw", "lo").await;
    lo.send("<presence><priority>1</priority></presence>").await;
    let mut neg = Client::login(server.c2s, "bob", "pw", "neg").await;
    neg.send("<presence><priority>-1</priority></presence>").await;
    let body = |b: &'static str| move |e: &Element| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(b);

    // Bare JID: the highest priority only.
    alice.send("<message to='bob@localhost' type='chat'><body>one</body></message>").await;
    let m = hi.expect("bare to top priority", body("one")).await;
    assert_eq!(m.attr("from"), Some("alice@localhost/a"), "the server stamps the full JID");
    lo.expect_none(QUIET, "bare message at lower priority", body("one")).await;
    // Full JID: that resource, even with negative priority.
    alice.send("<message to='bob@localhost/neg'><body>two</body></message>").await;
    neg.expect("full JID", body("two")).await;
    // Headline to bare: every non-negative resource.
    alice.send("<message to='bob@localhost' type='headline'><body>three</body></message>").await;
    hi.expect("headline hi", body("three")).await;
    lo.expect("headline lo", body("three")).await;
    neg.expect_none(QUIET, "headline to negative priority", body("three")).await;
    // An absent resource: chat falls back to the bare JID.
    alice.send("<message to='bob@localhost/gone' type='chat'><body>four</body></message>").await;
    hi.expect("fallback to bare", body("four")).await;
    // Unknown account: service-unavailable.
    alice.send("<message to='nobody@localhost' id='m5'><body>five</body></message>").await;
    let err = alice.expect("error", |e| e.name() == "message" && e.attr("id") == Some("m5")).await;
    assert_eq!(err.attr("type"), Some("error"));
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some());
    // A remote domain cannot be reached yet: remote-server-not-found, never silence.
    alice.send("<message to='x@remote.example' id='m6'><body>six</body></message>").await;
    let err = alice.expect("bounce", |e| e.name() == "message" && e.attr("id") == Some("m6")).await;
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("remote-server-not-found", ns::STANZA_ERRORS)).is_some());
}

#[tokio::test]
async fn offline_messages_are_stored_in_order_with_a_quota() {
    let server = TestServer::start_with_tables("", "[limits]\noffline_quota = 3\n").await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = online(&server, "alice", "a").await;
    for i in 1..=3 {
        alice.send(format!("<message to='bob@localhost' type='chat'><body>m{i}</body></message>")).await;
    }
    alice.send("<message to='bob@localhost' type='chat' id='over'><body>m4</body></message>").await;
    let err = alice.expect("quota error", |e| e.attr("id") == Some("over")).await;
    assert!(err.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some());

    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    for i in 1..=3 {
        let want = format!("m{i}");
        let m = bob.expect("offline message", |e| e.name() == "message").await;
        assert_eq!(m.child_text("body", ns::CLIENT), Some(want));
        assert!(m.child("delay", ns::DELAY).is_some_and(|d| d.attr("stamp").is_some()));
    }
    // Delivered once only.
    drop(bob);
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    bob.expect_none(QUIET, "redelivery", |e| e.name() == "message").await;
}

#[tokio::test]
async fn server_iqs() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = online(&server, "alice", "a").await;
    let info = alice.iq("d", "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let q = info.child("query", ns::DISCO_INFO).unwrap();
    assert!(q.child("identity", ns::DISCO_INFO).is_some_and(|i| i.attr("category") == Some("server")));
    let features: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [ns::PING, ns::VERSION, ns::LAST, ns::VCARD, ns::PRIVATE, ns::DISCO_ITEMS] {
        assert!(features.contains(&f), "{f} not in {features:?}");
    }
    let items = alice.iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    assert_eq!(items.attr("type"), Some("result"));
    let v = alice.iq("v", "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>").await;
    assert_eq!(v.child("query", ns::VERSION).and_then(|q| q.child_text("name", ns::VERSION)).as_deref(), Some("Jabberwock"));
    let up = alice.iq("l", "<iq type='get' id='l' to='localhost'><query xmlns='jabber:iq:last'/></iq>").await;
    assert!(up.child("query", ns::LAST).and_then(|q| q.attr("seconds")).is_some());
    // Unknown payloads: service-unavailable, to the server and to an account.
    for (id, to) in [("u1", "localhost"), ("u2", "bob@localhost")] {
        let r = alice.iq(id, &format!("<iq type='get' id='{id}' to='{to}'><query xmlns='urn:example:none'/></iq>")).await;
        assert!(r.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some(), "{}", r.to_xml_string());
    }
    // An iq to an unavailable full JID.
    let r = alice.iq("u3", "<iq type='get' id='u3' to='bob@localhost/none'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert!(r.child("error", ns::CLIENT).and_then(|e| e.child("service-unavailable", ns::STANZA_ERRORS)).is_some());
    // An iq without payload is a bad request.
    let r = alice.iq("u4", "<iq type='get' id='u4' to='localhost'/>").await;
    assert!(r.child("error", ns::CLIENT).and_then(|e| e.child("bad-request", ns::STANZA_ERRORS)).is_some());

    // vCard: set own, read by someone else; nobody writes another's.
    let set = alice.iq("vc", "<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>Alice A</FN></vCard></iq>").await;
    assert_eq!(set.attr("type"), Some("result"));
    let mut bob = online(&server, "bob", "b").await;
    let card = bob.iq("vg", "<iq type='get' id='vg' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>").await;
    assert_eq!(card.child("vCard", ns::VCARD).and_then(|v| v.child_text("FN", ns::VCARD)).as_deref(), Some("Alice A"));
    let forbidden = bob.iq("vs", "<iq type='set' id='vs' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>").await;
    assert_eq!(forbidden.attr("type"), Some("error"));

    // Private XML storage.
    let set = alice
        .iq("ps", "<iq type='set' id='ps'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><x>1</x></prefs></query></iq>")
        .await;
    assert_eq!(set.attr("type"), Some("result"));
    let got = alice.iq("pg", "<iq type='get' id='pg'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>").await;
    let prefs = got.child("query", ns::PRIVATE).and_then(|q| q.child("prefs", "urn:example:prefs")).unwrap();
    assert_eq!(prefs.child_text("x", "urn:example:prefs").as_deref(), Some("1"));
    let reserved = alice.iq("pr", "<iq type='set' id='pr'><query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query></iq>").await;
    assert!(reserved.child("error", ns::CLIENT).and_then(|e| e.child("not-acceptable", ns::STANZA_ERRORS)).is_some());

    // Last activity of a contact needs a subscription.
    let denied = bob.iq("la", "<iq type='get' id='la' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>").await;
    assert!(denied.child("error", ns::CLIENT).and_then(|e| e.child("forbidden", ns::STANZA_ERRORS)).is_some());
}

#[tokio::test]
async fn in_band_registration_password_change_and_cancel() {
    let server = TestServer::start().await;
    let (mut c, f) = Client::connect(server.c2s).await.starttls().await;
    assert!(f.child("register", ns::REGISTER_FEATURE).is_some());
    let form = c.iq("f", "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>").await;
    assert!(form.child("query", ns::REGISTER).and_then(|q| q.child("username", ns::REGISTER)).is_some());
    let ok = c
        .iq("r", "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>dave</username><password>pw1</password></query></iq>")
        .await;
    assert_eq!(ok.attr("type"), Some("result"));
    let dup = c
        .iq("r2", "<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>dave</username><password>x</password></query></iq>")
        .await;
    assert!(dup.child("error", ns::CLIENT).and_then(|e| e.child("conflict", ns::STANZA_ERRORS)).is_some());
    c.authenticate_and_bind("dave", "pw1", Some("r")).await;
    let change = c
        .iq("p", "<iq type='set' id='p'><query xmlns='jabber:iq:register'><username>dave</username><password>pw2</password></query></iq>")
        .await;
    assert_eq!(change.attr("type"), Some("result"));
    let mut again = Client::login(server.c2s, "dave", "pw2", "other").await;
    let cancel = again.iq("x", "<iq type='set' id='x'><query xmlns='jabber:iq:register'><remove/></query></iq>").await;
    assert_eq!(cancel.attr("type"), Some("result"));
    let t = c.read_to_close().await;
    assert_eq!(t.stream_error().as_deref(), Some("not-authorized"));
    // The account is gone.
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let creds = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("\0dave\0pw2")
    };
    c.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")).await;
    assert!(c.next_element().await.is("failure", ns::SASL));
}

#[tokio::test]
async fn a_username_that_normalizes_twice_cannot_register() {
    let server = TestServer::start().await;
    server.adduser("\u{3c3}bob", "victim's").await;
    // `Ϲ` (U+03F9) prepares to `Σ`, and `Σ` to `σ`: an account stored as `Σbob` would
    // bind, and be sent stanzas, as σbob.
    let (mut c, _) = Client::connect(server.c2s).await.starttls().await;
    let reg = c
        .iq("r", "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>\u{3f9}bob</username><password>pw</password></query></iq>")
        .await;
    assert!(reg.child("error", ns::CLIENT).and_then(|e| e.child("jid-malformed", ns::STANZA_ERRORS)).is_some(), "{}", reg.to_xml_string());
    let victim = Client::login(server.c2s, "\u{3c3}bob", "victim's", "r").await;
    assert_eq!(victim.jid, "\u{3c3}bob@localhost/r");
}

#[tokio::test]
async fn the_vcard_photo_hash_is_stamped_into_presence() {
    let server = TestServer::start().await;
    users(&server, &["alice"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    // BINVAL of "hello": its SHA-1 is the XEP-0153 photo hash.
    let set = alice
        .iq("v", "<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVs\nbG8=</BINVAL></PHOTO></vCard></iq>")
        .await;
    assert_eq!(set.attr("type"), Some("result"));
    alice.send("<presence/>").await;
    let echo = alice.expect("own presence", |e| e.name() == "presence").await;
    let photo = echo.child("x", ns::VCARD_UPDATE).and_then(|x| x.child_text("photo", ns::VCARD_UPDATE));
    assert_eq!(photo.as_deref(), Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"));
    // A client that states its own hash is left alone.
    alice.send("<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>").await;
    let echo = alice.expect("own presence", |e| e.name() == "presence").await;
    assert_eq!(echo.child("x", ns::VCARD_UPDATE).and_then(|x| x.child_text("photo", ns::VCARD_UPDATE)).as_deref(), Some(""));
}

/// What clients such as profanity, poezio and mcabber run into (RFC 6120 §10.3.3, XEP-0085
/// §5.5, XEP-0334, XEP-0202, XEP-0313 on the domain).
#[tokio::test]
async fn keepalive_pings_chat_states_offline_entity_time_and_domain_features() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;

    // An iq ping without `to` is for the account, and the server answers it.
    let pong = alice.iq("k", "<iq type='get' id='k'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong:?}");

    // Offline, bob gets no stale chat state and nothing marked no-store; the message is kept.
    alice.send("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    alice.send("<message to='bob@localhost' type='chat'><body>forget me</body><no-store xmlns='urn:xmpp:hints'/></message>").await;
    alice.send("<message to='bob@localhost' type='chat'><body>keep me</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    alice.ping().await;
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let kept = bob.expect("the stored message", |e| e.name() == "message").await;
    assert_eq!(kept.child_text("body", ns::CLIENT).as_deref(), Some("keep me"), "the first stored message: {kept:?}");
    bob.expect_none(Duration::from_millis(300), "anything else stored", |e| e.name() == "message").await;

    // Entity time, and the archive advertised on the domain as well as on accounts.
    let t = alice.iq("t", "<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>").await;
    let utc = t.child("time", "urn:xmpp:time").and_then(|x| x.child_text("utc", "urn:xmpp:time")).unwrap_or_default();
    assert!(utc.ends_with('Z') && utc.len() >= 20, "{t:?}");
    let info = alice.iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let features: Vec<&str> = info.child("query", ns::DISCO_INFO).unwrap().children().filter_map(|f| f.attr("var")).collect();
    for f in [ns::MAM, "urn:xmpp:time", ns::PING] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    // XEP-0050: listing the ad-hoc commands gives an empty list, not an error.
    let commands = alice.iq("c", "<iq type='get' id='c' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>").await;
    assert_eq!(commands.attr("type"), Some("result"), "{commands:?}");
}

/// XEP-0157: the operator's contact addresses in the server's disco#info.
#[tokio::test]
async fn contact_addresses_are_in_the_servers_disco_info() {
    let server = TestServer::start_with_tables("", "[contact]\nadmin = ['xmpp:admin@localhost']\nabuse = ['mailto:abuse@example.org', 'https://example.org/abuse']").await;
    users(&server, &["alice"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let info = alice.iq("i", "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let form = info
        .child("query", ns::DISCO_INFO)
        .and_then(|q| q.children().find(|x| x.name() == "x"))
        .expect("a XEP-0128 form");
    let values = |var: &str| -> Vec<String> {
        form.children().find(|f| f.attr("var") == Some(var)).map(|f| f.children().map(|v| v.text()).collect()).unwrap_or_default()
    };
    assert_eq!(values("FORM_TYPE"), ["http://jabber.org/network/serverinfo"]);
    assert_eq!(values("admin-addresses"), ["xmpp:admin@localhost"]);
    assert_eq!(values("abuse-addresses"), ["mailto:abuse@example.org", "https://example.org/abuse"]);
    assert!(values("security-addresses").is_empty());
}

/// A password change ends the account's other sessions, not the one that made it.
#[tokio::test]
async fn a_password_change_ends_the_accounts_other_sessions() {
    let server = TestServer::start().await;
    users(&server, &["alice"]).await;
    let mut phone = Client::login(server.c2s, "alice", "pw", "phone").await;
    let other = Client::login(server.c2s, "alice", "pw", "laptop").await;
    let r = phone
        .iq("pw", "<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>alice</username><password>new</password></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let gone = other.read_to_close().await;
    assert_eq!(gone.stream_error().as_deref(), Some("not-authorized"), "{}", gone.raw);
    phone.ping().await;
    let mut again = Client::connect(server.c2s).await.starttls().await.0;
    assert!(again.try_plain("alice", "pw").await.is("failure", ns::SASL), "the old password no longer works");

    // Addressed to the server, as XEP-0077 §3.3 shows it, the change is the sender's own.
    let r = phone
        .iq("pw2", "<iq type='set' id='pw2' to='localhost'><query xmlns='jabber:iq:register'><username>alice</username><password>newer</password></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let mut again = Client::connect(server.c2s).await.starttls().await.0;
    assert!(again.try_plain("alice", "newer").await.is("success", ns::SASL));
    // Naming another account is refused, whoever it is addressed to.
    let other = "<query xmlns='jabber:iq:register'><username>bob</username><password>x</password></query>";
    for to in ["localhost", "bob@localhost"] {
        let r = phone.iq("pw3", &format!("<iq type='set' id='pw3' to='{to}'>{other}</iq>")).await;
        assert_eq!(r.attr("type"), Some("error"), "to {to}: {r:?}");
    }
}
