//! A client that stops reading holds a bounded part of the server's memory: what is sent
//! to it beyond `limits.max_session_output_bytes` goes elsewhere, its stream is closed
//! with an error after `limits.write_timeout_secs`, and nothing its correspondent sent is
//! lost without the correspondent being told.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use jabberwock_proto::{ns, Element, ReadEvent};
use jabberwock_tests::{befriend, memory_kb, watch_memory, Client, ServerProcess};

const MESSAGES: usize = 200;
const BODY_BYTES: usize = 100_000;
/// The output bound the server runs with, and how far its anonymous memory may grow while
/// one client takes nothing. Measured: 13 to 23 MB, that is the bound in the mailbox
/// and again in the stuck write, plus what handling the sender's stanzas costs anyway
/// (parsing, the archive, offline storage and SQLite's page caches) and the allocator's
/// slack. With the bound set out of reach (1 GiB) the same flood grew it by 70 MB.
const OUTPUT_BOUND: usize = 1 << 20;
const MAX_GROWTH_KB: u64 = 32 * 1024;

/// The `id` of a message from bob, as `m<number>`.
fn message_number(el: &Element) -> Option<usize> {
    el.attr("id")?.strip_prefix('m')?.parse().ok()
}

/// Reads `client` until `done` holds for an element, and returns every element before it.
async fn read_until(client: &mut Client, what: &str, done: impl Fn(&Element) -> bool) -> Vec<Element> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = client.next_event_by(deadline).await.unwrap_or_else(|| panic!("timed out waiting for {what}"));
        if let ReadEvent::Stanza(st) = ev {
            let el = st.to_element().expect("parses");
            if done(&el) {
                return seen;
            }
            seen.push(el);
        }
    }
}

fn numbers(elements: &[Element], pred: impl Fn(&Element) -> bool) -> BTreeSet<usize> {
    elements.iter().filter(|e| pred(e)).filter_map(message_number).collect()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServerProcess::new(Path::new(env!("CARGO_BIN_EXE_jabberwock-test-server")), dir.path());
    server.configure(&format!("[limits]\nmax_session_output_bytes = {OUTPUT_BOUND}\nwrite_timeout_secs = 2\n"));
    server.admin(&["adduser", "alice@localhost", "alice-pw"]).await;
    server.admin(&["adduser", "bob@localhost", "bob-pw"]).await;
    server.start().await;

    let mut alice = Client::login_with_receive_buffer(server.c2s, "alice", "alice-pw", "phone", 4096).await;
    let mut bob = Client::login(server.c2s, "bob", "bob-pw", "desk").await;
    alice.send("<presence/>").await;
    bob.send("<presence/>").await;
    befriend(&mut alice, "alice@localhost", &mut bob, "bob@localhost").await;
    alice.ping().await;
    bob.ping().await;
    // Anonymous memory only: the pages of the program's code that the flood touches for
    // the first time count in its resident size too.
    let before_kb = memory_kb(server.pid(), "RssAnon");
    let (stop_watching, most) = watch_memory(server.pid(), "RssAnon");

    // From here on alice reads nothing; bob sends as fast as he can.
    let body = "x".repeat(BODY_BYTES);
    for i in 0..MESSAGES {
        bob.send(format!("<message to='alice@localhost/phone' type='chat' id='m{i}'><body>{body}</body></message>")).await;
    }
    // bob's session was never held up: it answers at once, after any error for his
    // messages, which it sends back in order.
    bob.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let mut to_bob = read_until(&mut bob, "bob's ping", |e| e.attr("id") == Some("after")).await;
    // The server gives up on alice after the write deadline: she goes offline.
    let alice_gone = |e: &Element| e.name() == "presence" && e.attr("from") == Some("alice@localhost/phone") && e.attr("type") == Some("unavailable");
    if !to_bob.iter().any(alice_gone) {
        to_bob.extend(read_until(&mut bob, "alice's unavailable presence", alice_gone).await);
    }
    let _ = stop_watching.send(());
    let peak_kb = most.await.expect("the memory watch");
    let growth_kb = peak_kb.saturating_sub(before_kb);
    eprintln!("server memory (anonymous): {before_kb} kB before, at most {peak_kb} kB (+{growth_kb} kB)");
    assert!(growth_kb <= MAX_GROWTH_KB, "the server grew by {growth_kb} kB, more than {MAX_GROWTH_KB} kB");

    // alice finally reads: what the server had written, then the stream error. Which one
    // depends on where the server's writes stopped: over the bound she is closed with
    // policy-violation, which then waits behind the rest like any output; if the writes
    // were stuck before the session could tell her, connection-timeout.
    let transcript = alice.read_to_close().await;
    let error = transcript.stream_error();
    assert!(matches!(error.as_deref(), Some("connection-timeout" | "policy-violation")), "{error:?}, last: {:?}", transcript.events.last());
    assert!(transcript.closed);
    let errors = transcript.events.iter().filter(|ev| matches!(ev, ReadEvent::Stanza(st) if st.is("error", ns::STREAM))).count();
    assert_eq!(errors, 1, "one stream error, then the close");
    let first_stream: Vec<Element> = transcript
        .events
        .iter()
        .filter_map(|ev| match ev {
            ReadEvent::Stanza(st) if st.name() == "message" => st.to_element().ok(),
            _ => None,
        })
        .collect();
    let delivered = numbers(&first_stream, |_| true);
    let bounced = numbers(&to_bob, |e| e.name() == "message" && e.attr("type") == Some("error"));

    // What she did not get waits in offline storage.
    let mut again = Client::login(server.c2s, "alice", "alice-pw", "again").await;
    again.send("<presence/>").await;
    again.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let mut offline_stanzas = read_until(&mut again, "the offline messages", |e| e.attr("id") == Some("after")).await;
    // Offline storage sends a page at a time, each once the last was written: the rest
    // follow the ping's answer.
    while let Some(ReadEvent::Stanza(st)) = again.next_event_by(tokio::time::Instant::now() + Duration::from_secs(1)).await {
        offline_stanzas.push(st.to_element().expect("parses"));
    }
    let offline = numbers(&offline_stanzas, |e| e.name() == "message" && e.child("delay", ns::DELAY).is_some());
    eprintln!("{} delivered before the close, {} offline, {} bounced", delivered.len(), offline.len(), bounced.len());

    assert!(!offline.is_empty(), "messages over the bound go to offline storage");
    assert!(bounced.is_disjoint(&delivered) && bounced.is_disjoint(&offline), "a message bob was told failed was delivered too");
    let accounted: BTreeSet<usize> = delivered.iter().chain(&offline).chain(&bounced).copied().collect();
    let missing: Vec<usize> = (0..MESSAGES).filter(|i| !accounted.contains(i)).collect();
    assert!(missing.is_empty(), "lost without an error: {missing:?}");
    bob.ping().await;
}
