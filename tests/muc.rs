//! XEP-0045 multi-user chat over real connections: the service, room creation and
//! configuration, joins, presence, messages, history, nick changes, private messages,
//! roles and affiliations, and what happens when occupants go away.

use std::time::Duration;

use jabberwock_proto::{ns, Element};
use jabberwock_tests::{Client, TestServer};

const QUIET: Duration = Duration::from_millis(300);
const SERVICE: &str = "conference.localhost";
const ROOM: &str = "room@conference.localhost";

fn muc_x(e: &Element) -> Option<&Element> {
    e.child("x", ns::MUC_USER)
}

fn codes(e: &Element) -> Vec<String> {
    muc_x(e).map(|x| x.children().filter(|c| c.name() == "status").filter_map(|c| c.attr("code")).map(str::to_owned).collect()).unwrap_or_default()
}

fn item(e: &Element) -> Option<&Element> {
    muc_x(e)?.child("item", ns::MUC_USER)
}

fn presence_from<'a>(from: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e| e.name() == "presence" && e.attr("from") == Some(from)
}

fn body_is<'a>(text: &'a str) -> impl Fn(&Element) -> bool + 'a {
    move |e| e.name() == "message" && e.child_text("body", ns::CLIENT).as_deref() == Some(text)
}

fn error_condition(e: &Element) -> Option<String> {
    let error = e.child("error", ns::CLIENT)?;
    error.children().find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text").map(|c| c.name().to_owned())
}

/// Joins `room` as `nick` and reads up to the subject, which ends the join (§7.2.16).
async fn join(c: &mut Client, room: &str, nick: &str, extra: &str) -> Element {
    c.send(format!("<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>{extra}</x></presence>")).await;
    let own = format!("{room}/{nick}");
    let me = c.expect("self-presence", |e| presence_from(&own)(e) && codes(e).contains(&"110".to_owned())).await;
    me
}

async fn read_subject(c: &mut Client) -> Element {
    c.expect("subject", |e| e.name() == "message" && e.child("subject", ns::CLIENT).is_some()).await
}

/// Creates `room` as an instant room (§10.1.2) with `alice`.
async fn create_instant(alice: &mut Client, room: &str) {
    let me = join(alice, room, "alice", "").await;
    assert!(codes(&me).contains(&"201".to_owned()), "a new room says it was created: {me:?}");
    assert_eq!(item(&me).and_then(|i| i.attr("affiliation")), Some("owner"));
    read_subject(alice).await;
    let r = alice
        .iq("inst", &format!("<iq type='set' id='inst' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

async fn configure(c: &mut Client, room: &str, fields: &[(&str, &str)]) -> Element {
    let fields: String = fields.iter().map(|(var, v)| format!("<field var='{var}'><value>{v}</value></field>")).collect();
    c.iq(
        "cfg",
        &format!(
            "<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{fields}</x></query></iq>"
        ),
    )
    .await
}

async fn users(server: &TestServer, names: &[&str]) {
    for u in names {
        server.adduser(u, "pw").await;
    }
}

/// alice, bob and carol, signed in (without presence).
async fn alice_bob_carol(server: &TestServer) -> (Client, Client, Client) {
    users(server, &["alice", "bob", "carol"]).await;
    let alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let carol = Client::login(server.c2s, "carol", "pw", "c").await;
    (alice, bob, carol)
}

#[tokio::test]
async fn the_service_is_discoverable_and_lists_public_rooms() {
    let server = TestServer::start().await;
    users(&server, &["alice"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let items = alice.iq("items", "<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let q = items.child("query", ns::DISCO_ITEMS).expect("items");
    assert!(q.children().any(|i| i.attr("jid") == Some(SERVICE)), "{items:?}");
    let info = alice.iq("info", &format!("<iq type='get' id='info' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    let q = info.child("query", ns::DISCO_INFO).expect("info");
    assert!(q.children().any(|i| i.name() == "identity" && i.attr("category") == Some("conference") && i.attr("type") == Some("text")));
    assert!(q.children().any(|f| f.attr("var") == Some(ns::MUC)));

    create_instant(&mut alice, ROOM).await;
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_roomname", "The Room"), ("muc#roomconfig_persistentroom", "1")]).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let rooms = alice.iq("rooms", &format!("<iq type='get' id='rooms' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")).await;
    let listed = rooms.child("query", ns::DISCO_ITEMS).unwrap().children().find(|i| i.attr("jid") == Some(ROOM)).cloned();
    assert_eq!(listed.and_then(|i| i.attr("name").map(str::to_owned)).as_deref(), Some("The Room"));
    let info = alice.iq("rinfo", &format!("<iq type='get' id='rinfo' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    let features: Vec<&str> = info.child("query", ns::DISCO_INFO).unwrap().children().filter_map(|f| f.attr("var")).collect();
    for f in [ns::MUC, "muc_persistent", "muc_public", "muc_open", "muc_unsecured", "muc_semianonymous", ns::MAM, ns::OCCUPANT_ID] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
}

#[tokio::test]
async fn occupants_see_each_other_talk_change_nicks_and_leave() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut carol) = alice_bob_carol(&server).await;

    // Before it is configured, the room is the owner's alone.
    alice.send(format!("<presence to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    alice.expect("self-presence", |e| codes(e).contains(&"201".to_owned())).await;
    read_subject(&mut alice).await;
    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let refused = bob.expect("locked room", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&refused).as_deref(), Some("item-not-found"));
    let r = alice.iq("inst", &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));

    alice.send(format!("<message to='{ROOM}' type='groupchat'><body>before bob</body></message>")).await;
    alice.expect("own message reflected", body_is("before bob")).await;

    let me = join(&mut bob, ROOM, "bob", "").await;
    assert_eq!(item(&me).and_then(|i| i.attr("role")), Some("participant"));
    // Semi-anonymous: bob, no moderator, does not see alice's real JID; alice does see his.
    let seen_by_alice = alice.expect("bob arrives", presence_from("room@conference.localhost/bob")).await;
    assert_eq!(item(&seen_by_alice).and_then(|i| i.attr("jid")), Some("bob@localhost/b"));
    let history = bob.expect("history", body_is("before bob")).await;
    assert_eq!(history.attr("from"), Some("room@conference.localhost/alice"));
    assert!(history.child("delay", ns::DELAY).is_some());
    read_subject(&mut bob).await;

    // A client cannot claim an occupant-id; the room's own is stamped instead.
    bob.send(format!("<message to='{ROOM}' type='groupchat' id='m1'><body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>")).await;
    let at_alice = alice.expect("bob's message", body_is("hello")).await;
    let at_bob = bob.expect("bob's own message", body_is("hello")).await;
    assert_eq!(at_alice.attr("from"), Some("room@conference.localhost/bob"));
    let id_of = |e: &Element| e.child("occupant-id", ns::OCCUPANT_ID).and_then(|o| o.attr("id")).map(str::to_owned);
    assert_eq!(id_of(&at_alice), id_of(&at_bob));
    assert_ne!(id_of(&at_alice).as_deref(), Some("forged"));
    let sid = at_alice.child("stanza-id", ns::SID).expect("stanza-id");
    assert_eq!(sid.attr("by"), Some(ROOM));

    // A second device of bob's joins under the same nick: others see no new occupant.
    let mut bob2 = Client::login(server.c2s, "bob", "pw", "b2").await;
    join(&mut bob2, ROOM, "bob", "").await;
    read_subject(&mut bob2).await;
    alice.expect_none(QUIET, "a second bob", presence_from("room@conference.localhost/bob")).await;
    alice.send(format!("<message to='{ROOM}' type='groupchat'><body>to both devices</body></message>")).await;
    bob.expect("device one", body_is("to both devices")).await;
    bob2.expect("device two", body_is("to both devices")).await;

    // Private messages reach the occupant's devices, from the sender's occupant JID.
    alice.send(format!("<message to='{ROOM}/bob' type='chat'><body>psst</body></message>")).await;
    let pm = bob.expect("private message", body_is("psst")).await;
    assert_eq!(pm.attr("from"), Some("room@conference.localhost/alice"));
    bob2.expect("private message on the second device", body_is("psst")).await;

    // Nick conflicts and changes.
    carol.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let taken = carol.expect("nick taken", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&taken).as_deref(), Some("conflict"));
    assert!(taken.child("x", ns::MUC).is_some(), "the error keeps the MUC payload: {taken:?}");
    join(&mut carol, ROOM, "carol", "<history maxchars='0'/>").await;
    carol.expect_none(QUIET, "history after maxchars=0", |e| e.child("body", ns::CLIENT).is_some() && e.child("delay", ns::DELAY).is_some()).await;
    carol.send(format!("<presence to='{ROOM}/caroline'/>")).await;
    let gone = alice.expect("carol's old nick", |e| presence_from("room@conference.localhost/carol")(e) && e.attr("type") == Some("unavailable")).await;
    assert!(codes(&gone).contains(&"303".to_owned()));
    assert_eq!(item(&gone).and_then(|i| i.attr("nick")), Some("caroline"));
    alice.expect("carol's new nick", presence_from("room@conference.localhost/caroline")).await;

    // Subject: participants may not change it by default; the owner may.
    carol.send(format!("<message to='{ROOM}' type='groupchat'><subject>mine</subject></message>")).await;
    let refused = carol.expect("subject refused", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    alice.send(format!("<message to='{ROOM}' type='groupchat'><subject>Topic</subject></message>")).await;
    let s = carol.expect("subject", |e| e.child_text("subject", ns::CLIENT).as_deref() == Some("Topic")).await;
    assert_eq!(s.attr("from"), Some("room@conference.localhost/alice"));

    // Self-ping (XEP-0410): joined answers, not joined is not-acceptable.
    let pong = carol.iq("sp", &format!("<iq type='get' id='sp' to='{ROOM}/caroline'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(pong.attr("type"), Some("result"));
    let mut dave = Client::login(server.c2s, "carol", "pw", "other").await;
    let no = dave.iq("sp2", &format!("<iq type='get' id='sp2' to='{ROOM}/caroline'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(error_condition(&no).as_deref(), Some("not-acceptable"));

    // Leaving, and a session that just disconnects, both end in unavailable presence.
    carol.send(format!("<presence to='{ROOM}/caroline' type='unavailable'/>")).await;
    let left = carol.expect("own leave", |e| e.attr("type") == Some("unavailable")).await;
    assert!(codes(&left).contains(&"110".to_owned()));
    alice.expect("carol left", |e| presence_from("room@conference.localhost/caroline")(e) && e.attr("type") == Some("unavailable")).await;
    drop(bob2);
    alice.expect_none(QUIET, "bob leaving while a device remains", |e| presence_from("room@conference.localhost/bob")(e) && e.attr("type") == Some("unavailable")).await;
    drop(bob);
    alice.expect("bob's last device gone", |e| presence_from("room@conference.localhost/bob")(e) && e.attr("type") == Some("unavailable")).await;
}

#[tokio::test]
async fn passwords_members_only_kick_and_ban() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut carol) = alice_bob_carol(&server).await;
    create_instant(&mut alice, ROOM).await;
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_passwordprotectedroom", "1"), ("muc#roomconfig_roomsecret", "sesame")]).await;
    assert_eq!(r.attr("type"), Some("result"));

    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let e = bob.expect("no password", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-authorized"));
    join(&mut bob, ROOM, "bob", "<password>sesame</password>").await;
    read_subject(&mut bob).await;

    // Unknown fields and bad values are refused, and change nothing.
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_bogus", "1")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_maxusers", "lots")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    // Only owners configure; only moderators kick.
    let r = configure(&mut bob, ROOM, &[("muc#roomconfig_roomname", "mine")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let r = bob.iq("kick", &format!("<iq type='set' id='kick' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='alice' role='none'/></query></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"));

    // The owner kicks bob, then bans him.
    let r = alice.iq("kick", &format!("<iq type='set' id='kick' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let kicked = bob.expect("kicked", |e| e.attr("type") == Some("unavailable")).await;
    assert!(codes(&kicked).contains(&"307".to_owned()) && codes(&kicked).contains(&"110".to_owned()), "{kicked:?}");
    let r = alice.iq("ban", &format!("<iq type='set' id='ban' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='outcast'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'><password>sesame</password></x></presence>")).await;
    let e = bob.expect("banned", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    let list = alice.iq("list", &format!("<iq type='get' id='list' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query></iq>")).await;
    let q = list.child("query", ns::MUC_ADMIN).expect("list");
    assert!(q.children().any(|i| i.attr("jid") == Some("bob@localhost")), "{list:?}");

    // Members only: carol is refused until she is made a member.
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_membersonly", "1"), ("muc#roomconfig_passwordprotectedroom", "0")]).await;
    assert_eq!(r.attr("type"), Some("result"));
    carol.send(format!("<presence to='{ROOM}/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let e = carol.expect("members only", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("registration-required"));
    let r = alice.iq("mem", &format!("<iq type='set' id='mem' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='carol@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    join(&mut carol, ROOM, "carol", "").await;

    // The last owner cannot leave the room ownerless.
    let r = alice.iq("own", &format!("<iq type='set' id='own' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='alice@localhost' affiliation='member'/></query></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
}

#[tokio::test]
async fn persistent_rooms_survive_a_restart_with_their_archive() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    create_instant(&mut alice, ROOM).await;
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_roomname", "Kept")]).await;
    assert_eq!(r.attr("type"), Some("result"));
    for i in 0..3 {
        alice.send(format!("<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")).await;
        alice.expect("reflected", body_is(&format!("m{i}"))).await;
    }
    drop(alice);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, "", "").await;

    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let me = join(&mut bob, ROOM, "bob", "").await;
    assert!(!codes(&me).contains(&"201".to_owned()), "the room was kept, not created again");
    for i in 0..3 {
        bob.expect("history from the archive", body_is(&format!("m{i}"))).await;
    }
    read_subject(&mut bob).await;
    // XEP-0313 on the room: the archive pages with the room's stanza-ids.
    bob.send(format!("<iq type='set' id='q' to='{ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='x'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>")).await;
    let mut results = Vec::new();
    let fin = loop {
        let e = bob.next_element().await;
        if e.name() == "iq" {
            break e;
        }
        if let Some(r) = e.child("result", ns::MAM) {
            results.push(r.child("forwarded", ns::FORWARD).and_then(|f| f.child("message", ns::CLIENT)).and_then(|m| m.child_text("body", ns::CLIENT)).unwrap_or_default());
        }
    };
    assert_eq!(fin.attr("type"), Some("result"), "{fin:?}");
    assert_eq!(results, ["m1", "m2"]);

    // `with` filters by occupant JID, never by real JID (which would say who said what).
    for (with, expected) in [(format!("{ROOM}/alice"), 3), (format!("{ROOM}/bob"), 0), ("alice@localhost".to_owned(), 0)] {
        bob.send(format!(
            "<iq type='set' id='w' to='{ROOM}'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='with'><value>{with}</value></field></x></query></iq>"
        ))
        .await;
        let mut n = 0;
        loop {
            let e = bob.next_element().await;
            if e.name() == "iq" {
                assert_eq!(e.attr("type"), Some("result"), "{e:?}");
                break;
            }
            n += usize::from(e.child("result", ns::MAM).is_some());
        }
        assert_eq!(n, expected, "with={with}");
    }
}

#[tokio::test]
async fn hostile_input_gets_the_xep_errors_and_others_carry_on() {
    let server = TestServer::start_with_tables("", "[muc]\nmax_rooms_per_user = 3\nmax_messages_per_sec = 5\nmax_text_bytes = 1000").await;
    users(&server, &["alice", "mallory"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let mut mallory = Client::login(server.c2s, "mallory", "pw", "m").await;
    create_instant(&mut alice, ROOM).await;
    join(&mut mallory, ROOM, "mallory", "").await;
    read_subject(&mut mallory).await;

    // A flood: the first burst is reflected, the rest refused with policy-violation.
    for i in 0..20 {
        mallory.send(format!("<message to='{ROOM}' type='groupchat'><body>flood {i}</body></message>")).await;
    }
    let refused = mallory.expect("flood refused", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&refused).as_deref(), Some("policy-violation"));
    alice.expect("the burst", body_is("flood 0")).await;
    alice.expect_none(QUIET, "the flood's tail", body_is("flood 19")).await;

    // A subject longer than the limit, a non-occupant's message, an admin iq from a
    // participant, a nick longer than a resource may be.
    alice.send(format!("<message to='{ROOM}' type='groupchat'><subject>{}</subject></message>", "x".repeat(2000))).await;
    let e = alice.expect("long subject", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    let mut outsider = Client::login(server.c2s, "alice", "pw", "outside").await;
    outsider.send(format!("<message to='{ROOM}' type='groupchat'><body>sneaking in</body></message>")).await;
    let e = outsider.expect("not an occupant", |e| e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    let e = mallory.iq("adm", &format!("<iq type='set' id='adm' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='alice@localhost' affiliation='outcast'/></query></iq>")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-allowed"));
    mallory.send(format!("<presence to='{ROOM}/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>", "n".repeat(1100))).await;
    let e = mallory.expect("bad nick", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("jid-malformed"));
    assert!(e.child("x", ns::MUC).is_some(), "the error keeps the join's payload (RFC 6120 §8.3.1): {e:?}");

    // A join without a nick, and a room size beyond the service's limit.
    mallory.send(format!("<presence to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let e = mallory.expect("no nick", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("jid-malformed"));
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_maxusers", "1000000")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));

    // Joining room after room: the fourth is refused.
    for n in 1..=2 {
        join(&mut mallory, &format!("r{n}@{SERVICE}"), "m", "").await;
    }
    mallory.send(format!("<presence to='r3@{SERVICE}/m'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let e = mallory.expect("too many rooms", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));

    // The room still works for everyone else.
    alice.send(format!("<message to='{ROOM}' type='groupchat'><body>still here</body></message>")).await;
    alice.expect("room works", body_is("still here")).await;
}

#[tokio::test]
async fn invitations_relayed_iqs_moderation_and_destruction() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut carol) = alice_bob_carol(&server).await;
    create_instant(&mut alice, ROOM).await;
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_membersonly", "1")]).await;
    assert_eq!(r.attr("type"), Some("result"));
    // Invitations go to bare JIDs: the invitees are available.
    for c in [&mut bob, &mut carol] {
        c.available().await;
    }

    // A mediated invitation makes bob a member of the members-only room.
    alice.send(format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@localhost'><reason>join us</reason></invite></x></message>")).await;
    let inv = bob.expect("invitation", |e| e.name() == "message" && muc_x(e).is_some_and(|x| x.child("invite", ns::MUC_USER).is_some())).await;
    assert_eq!(inv.attr("from"), Some(ROOM));
    let invite = muc_x(&inv).unwrap().child("invite", ns::MUC_USER).unwrap();
    assert_eq!(invite.attr("from"), Some("alice@localhost/a"));
    assert_eq!(invite.child_text("reason", ns::MUC_USER).as_deref(), Some("join us"));
    join(&mut bob, ROOM, "bob", "").await;
    read_subject(&mut bob).await;
    // carol declines hers; alice learns it from the room.
    alice.send(format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'/></x></message>")).await;
    carol.expect("invitation", |e| muc_x(e).is_some_and(|x| x.child("invite", ns::MUC_USER).is_some())).await;
    carol.send(format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='alice@localhost/a'><reason>busy</reason></decline></x></message>")).await;
    let declined = alice.expect("decline", |e| muc_x(e).is_some_and(|x| x.child("decline", ns::MUC_USER).is_some())).await;
    assert_eq!(muc_x(&declined).unwrap().child("decline", ns::MUC_USER).unwrap().attr("from"), Some("carol@localhost"));
    // A participant may not invite while the room does not allow it.
    bob.send(format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'/></x></message>")).await;
    let e = bob.expect("invite refused", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));

    // An iq to an occupant JID reaches its client, and the answer comes back to the asker.
    alice.send(format!("<iq type='get' id='ver1' to='{ROOM}/bob'><query xmlns='jabber:iq:version'/></iq>")).await;
    let asked = bob.expect("relayed iq", |e| e.name() == "iq" && e.attr("type") == Some("get")).await;
    assert_eq!(asked.attr("from"), Some("room@conference.localhost/alice"));
    let relay_id = asked.attr("id").unwrap().to_owned();
    bob.send(format!("<iq type='result' id='{relay_id}' to='{ROOM}/alice'><query xmlns='jabber:iq:version'><name>bobclient</name></query></iq>")).await;
    let answer = alice.expect("relayed answer", |e| e.name() == "iq" && e.attr("id") == Some("ver1")).await;
    assert_eq!(answer.attr("from"), Some("room@conference.localhost/bob"));
    assert_eq!(answer.child("query", "jabber:iq:version").and_then(|q| q.child_text("name", "jabber:iq:version")).as_deref(), Some("bobclient"));

    // XEP-0425: the owner retracts bob's message; everyone is told; the archive keeps a tombstone.
    bob.send(format!("<message to='{ROOM}' type='groupchat'><body>regrettable</body></message>")).await;
    let msg = alice.expect("bob's message", body_is("regrettable")).await;
    let id = msg.child("stanza-id", ns::SID).and_then(|s| s.attr("id")).unwrap().to_owned();
    let r = bob.iq("mod1", &format!("<iq type='set' id='mod1' to='{ROOM}'><moderate id='{id}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"), "a participant cannot moderate");
    let r = alice.iq("mod2", &format!("<iq type='set' id='mod2' to='{ROOM}'><moderate id='{id}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let retraction = bob.expect("retraction", |e| e.child("retract", ns::MESSAGE_RETRACT).is_some()).await;
    let retract = retraction.child("retract", ns::MESSAGE_RETRACT).unwrap();
    assert_eq!(retract.attr("id"), Some(id.as_str()));
    assert_eq!(retract.child("moderated", ns::MESSAGE_MODERATE).and_then(|m| m.attr("by")), Some("room@conference.localhost/alice"));
    bob.send(format!("<iq type='set' id='q' to='{ROOM}'><query xmlns='urn:xmpp:mam:2'/></iq>")).await;
    let mut tombstone = None;
    loop {
        let e = bob.next_element().await;
        if e.name() == "iq" {
            break;
        }
        let Some(result) = e.child("result", ns::MAM) else { continue };
        let m = result.child("forwarded", ns::FORWARD).and_then(|f| f.child("message", ns::CLIENT)).unwrap();
        assert!(m.child_text("body", ns::CLIENT).as_deref() != Some("regrettable"), "the retracted text is gone from the archive");
        if result.attr("id") == Some(id.as_str()) {
            tombstone = m.child("retracted", ns::MESSAGE_RETRACT).cloned();
        }
    }
    assert!(tombstone.is_some(), "the archive keeps a tombstone under the message's id");

    // Destruction: everyone leaves with the alternate venue; the room is gone.
    let r = bob.iq("d1", &format!("<iq type='set' id='d1' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@{SERVICE}'/></query></iq>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let r = alice.iq("d2", &format!("<iq type='set' id='d2' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@{SERVICE}'><reason>moving</reason></destroy></query></iq>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    let gone = bob.expect("destroyed", |e| e.attr("type") == Some("unavailable")).await;
    let destroy = muc_x(&gone).and_then(|x| x.child("destroy", ns::MUC_USER)).expect("destroy element");
    assert_eq!(destroy.attr("jid"), Some("new@conference.localhost"));
    let info = bob.iq("i", &format!("<iq type='get' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    assert_eq!(error_condition(&info).as_deref(), Some("item-not-found"), "the destroyed room is gone: {info:?}");
    // Its name stays taken for a while: a join learns where the room went.
    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let gone = bob.expect("a tombstone", |e| e.name() == "presence" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&gone).as_deref(), Some("gone"));
    let text = gone.child("error", ns::CLIENT).and_then(|e| e.child_text("text", ns::STANZA_ERRORS)).unwrap_or_default();
    assert!(text.contains("xmpp:new@conference.localhost?join"), "{text}");
}

#[tokio::test]
async fn bookmarks_are_one_list_for_pep_and_private_storage_clients() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = Client::login(server.c2s, "alice", "pw", "a").await;
    let info = alice.iq("di", "<iq type='get' id='di' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(info.child("query", ns::DISCO_INFO).unwrap().children().any(|f| f.attr("var") == Some("urn:xmpp:bookmarks:1#compat")));

    // A XEP-0402 client publishes a bookmark, as the XEP says to.
    let publish = |id: &str, room: &str, name: &str| {
        format!(
            "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'>\
             <item id='{room}'><conference xmlns='urn:xmpp:bookmarks:1' name='{name}' autojoin='true'><nick>al</nick></conference></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>max</value></field>\
             <field var='pubsub#send_last_published_item'><value>never</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>\
             </pubsub></iq>"
        )
    };
    for (i, (room, name)) in [("one@conference.localhost", "One"), ("two@conference.localhost", "Two")].iter().enumerate() {
        let r = alice.iq(&format!("p{i}"), &publish(&format!("p{i}"), room, name)).await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
    // A XEP-0048 client sees them in private storage.
    let got = alice.iq("g", "<iq type='get' id='g'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await;
    let storage = got.child("query", ns::PRIVATE).and_then(|q| q.child("storage", "storage:bookmarks")).expect("storage");
    let confs: Vec<(String, String, String)> = storage
        .children()
        .map(|c| (c.attr("jid").unwrap_or_default().to_owned(), c.attr("name").unwrap_or_default().to_owned(), c.child_text("nick", "storage:bookmarks").unwrap_or_default()))
        .collect();
    assert_eq!(confs, [("one@conference.localhost".into(), "One".into(), "al".into()), ("two@conference.localhost".into(), "Two".into(), "al".into())]);

    // It stores a new list: one renamed, one dropped, one added; PEP has exactly that.
    let r = alice
        .iq(
            "s",
            "<iq type='set' id='s'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
             <conference jid='one@conference.localhost' name='Uno' autojoin='true'><nick>al</nick></conference>\
             <conference jid='three@conference.localhost' name='Three' autojoin='false'/></storage></query></iq>",
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let items = alice.iq("i", "<iq type='get' id='i'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>").await;
    let mut got: Vec<(String, String)> = items
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .unwrap()
        .children()
        .map(|i| (i.attr("id").unwrap().to_owned(), i.child("conference", "urn:xmpp:bookmarks:1").and_then(|c| c.attr("name")).unwrap_or_default().to_owned()))
        .collect();
    got.sort();
    assert_eq!(got, [("one@conference.localhost".into(), "Uno".into()), ("three@conference.localhost".into(), "Three".into())]);

    // The node is private to its owner.
    let mut bob = Client::login(server.c2s, "bob", "pw", "b").await;
    let r = bob.iq("x", "<iq type='get' id='x' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>").await;
    assert_eq!(r.attr("type"), Some("error"), "{r:?}");
}

#[tokio::test]
async fn in_a_moderated_room_visitors_ask_for_voice_and_a_moderator_grants_it() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, _carol) = alice_bob_carol(&server).await;
    create_instant(&mut alice, ROOM).await;
    let r = configure(&mut alice, ROOM, &[("muc#roomconfig_moderatedroom", "1")]).await;
    assert_eq!(r.attr("type"), Some("result"));
    let me = join(&mut bob, ROOM, "bob", "").await;
    assert_eq!(item(&me).and_then(|i| i.attr("role")), Some("visitor"));
    read_subject(&mut bob).await;
    bob.send(format!("<message to='{ROOM}' type='groupchat'><body>can I talk?</body></message>")).await;
    let e = bob.expect("a visitor may not speak", |e| e.name() == "message" && e.attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));

    let form = |fields: &str, kind: &str| {
        format!(
            "<message to='{ROOM}'><x xmlns='jabber:x:data' type='{kind}'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>{fields}</x></message>"
        )
    };
    bob.send(form("<field var='muc#role'><value>participant</value></field>", "submit")).await;
    let request = alice.expect("the voice request", |e| e.child("x", ns::DATA_FORMS).is_some()).await;
    let x = request.child("x", ns::DATA_FORMS).unwrap();
    let value = |var: &str| x.children().find(|f| f.attr("var") == Some(var)).and_then(|f| f.child_text("value", ns::DATA_FORMS));
    assert_eq!(value("muc#roomnick").as_deref(), Some("bob"));
    assert_eq!(value("muc#jid").as_deref(), Some("bob@localhost"));
    alice.send(form("<field var='muc#roomnick'><value>bob</value></field><field var='muc#request_allow'><value>true</value></field>", "submit")).await;
    let voiced = bob.expect("bob's new role", |e| presence_from("room@conference.localhost/bob")(e) && item(e).and_then(|i| i.attr("role")) == Some("participant")).await;
    assert!(codes(&voiced).contains(&"110".to_owned()));
    bob.send(format!("<message to='{ROOM}' type='groupchat'><body>thanks</body></message>")).await;
    alice.expect("bob speaks", body_is("thanks")).await;
}

#[tokio::test]
async fn a_hibernated_session_stays_in_its_rooms_until_its_resumption_window_ends() {
    let server = TestServer::start_with_tables("", "[limits]\nresume_window_secs = 2").await;
    let (mut alice, mut bob, _carol) = alice_bob_carol(&server).await;
    create_instant(&mut alice, ROOM).await;
    bob.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>").await;
    bob.expect("stream management", |e| e.name() == "enabled").await;
    join(&mut bob, ROOM, "bob", "").await;
    alice.expect("bob arrives", presence_from("room@conference.localhost/bob")).await;
    // The connection vanishes without a closing stream: the session is kept for
    // resumption, and bob stays in the room meanwhile.
    drop(bob);
    let left = |e: &Element| presence_from("room@conference.localhost/bob")(e) && e.attr("type") == Some("unavailable");
    alice.expect_none(Duration::from_millis(1200), "bob leaving while his session may be resumed", left).await;
    // Once the window passes, the session ends, and with it bob's presence in the room.
    alice.expect("bob leaves after the resumption window", left).await;
}

/// A device that joins a room it is already in (a reloaded page that kept its session) gets
/// the room's state again, as a new joiner would; the others see nothing happen.
#[tokio::test]
async fn a_device_already_in_a_room_that_joins_again_gets_its_state_again() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, _carol) = alice_bob_carol(&server).await;
    create_instant(&mut alice, ROOM).await;
    join(&mut bob, ROOM, "bob", "").await;
    read_subject(&mut bob).await;
    alice.expect("bob arrives", presence_from("room@conference.localhost/bob")).await;

    // Everyone else first, then its own presence, then the subject (§7.2.3–§7.2.16).
    bob.send(format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x></presence>")).await;
    bob.expect("alice, listed again", presence_from("room@conference.localhost/alice")).await;
    let me = bob.expect("own presence again", |e| presence_from("room@conference.localhost/bob")(e) && codes(e).contains(&"110".to_owned())).await;
    assert!(!codes(&me).contains(&"201".to_owned()), "not created again: {me:?}");
    read_subject(&mut bob).await;
    alice.expect_none(std::time::Duration::from_millis(300), "bob's presence again", presence_from("room@conference.localhost/bob")).await;
}
