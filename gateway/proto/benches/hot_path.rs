//! The c2s hot path, step by step, for a typical ~200-byte chat message:
//!
//! * `read`: a batch of messages fed to [`StreamReader`] in 4 KiB chunks, pulled out as
//!   [`Stanza`]s;
//! * `route`: what the server does to a stanza a bound client sent before handing it to
//!   the recipient: check the claimed `from`, stamp `from`, read `to` and parse it as a JID
//!   (and take its bare form for the router lookup);
//! * `write`: [`Stanza::write_to`] into a `jabber:client` stream;
//!
//! and, as the baseline measured in the same run, the DOM path: `Stanza::to_element()`,
//! `from` stamped on the tree, then `Element::write_to`.
//!
//! No criterion: a few warm-up rounds, then the median of several measured rounds, each
//! over a whole batch. Run with `cargo bench -p jabberwock-proto --bench hot_path`.
//! Environment: `HOT_PATH_MESSAGES` (batch size, default 20000), `HOT_PATH_ROUNDS`
//! (measured rounds, default 15). Without `--bench` (as under `cargo test --all-targets`)
//! it only does a quick smoke run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use jabberwock_proto::jid::Jid;
use jabberwock_proto::{ns, Limits, ReadEvent, Stanza, StreamReader};

const CHUNK: usize = 4096;
const WARMUP_ROUNDS: usize = 3;
const SENDER: &str = "alice@localhost/phone-8Xz2";

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A chat message as clients send it: addressed to a bare JID, with an id, a body and a
/// chat state, about 200 bytes.
fn message(i: usize) -> String {
    format!(
        "<message to='user{r}@localhost' type='chat' id='msg-{i:08}'><body>Hello number {i:08}, \
         are we still on for lunch at noon? &lt;3</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        r = i % 1000
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The input: the messages back to back, cut into 4 KiB reads as a socket would deliver
/// them.
struct Input {
    chunks: Vec<Vec<u8>>,
    messages: usize,
    bytes: usize,
}

fn input(n: usize) -> Input {
    let mut all = Vec::new();
    for i in 0..n {
        all.extend_from_slice(message(i).as_bytes());
    }
    Input { bytes: all.len(), chunks: all.chunks(CHUNK).map(<[u8]>::to_vec).collect(), messages: n }
}

/// A reader past the stream header, as on an authenticated stream.
fn open_reader() -> StreamReader {
    let mut r = StreamReader::new(Limits::default());
    r.feed(HEADER.as_bytes());
    assert!(matches!(r.next_event(), Ok(Some(ReadEvent::StreamOpen(_)))));
    r
}

/// (a) Feeds every chunk and collects the stanzas.
fn read_all(input: &Input) -> Vec<Stanza> {
    let mut r = open_reader();
    let mut out = Vec::with_capacity(input.messages);
    for chunk in &input.chunks {
        r.feed(chunk);
        while let Some(ev) = r.next_event().expect("valid input") {
            match ev {
                ReadEvent::Stanza(st) => out.push(st),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    out
}

/// (b) What `Session::on_active_stanza` and the router do with the start tag.
#[inline]
fn route(st: &mut Stanza) -> usize {
    if let Some(claimed) = st.from() {
        assert_eq!(claimed, SENDER);
    }
    st.set_attr("from", SENDER);
    let to = Jid::new(st.to().expect("addressed")).expect("valid JID");
    let bare = to.to_bare();
    black_box(bare.as_str()).len()
}

/// (b) without the JID parsing: only the start-tag attributes.
#[inline]
fn route_attrs(st: &mut Stanza) -> usize {
    if let Some(claimed) = st.from() {
        assert_eq!(claimed, SENDER);
    }
    st.set_attr("from", SENDER);
    black_box(st.to().expect("addressed")).len()
}

/// The DOM baseline for (b)+(c): parse the whole stanza into a tree, stamp `from` on the
/// tree, serialize the tree.
#[inline]
fn dom_rewrite(st: &Stanza, out: &mut Vec<u8>) {
    let mut el = st.to_element().expect("valid stanza");
    el.set_attr("from", SENDER);
    let to = Jid::new(el.attr("to").expect("addressed")).expect("valid JID");
    black_box(to.to_bare());
    el.write_to(out, ns::CLIENT);
}

/// Output is written like the transport does: appended, then flushed (cleared) now and
/// then; the buffer stays allocated.
const FLUSH_AT: usize = 64 * 1024;

#[derive(Default)]
struct Samples {
    read: Vec<Duration>,
    route: Vec<Duration>,
    route_attrs: Vec<Duration>,
    write: Vec<Duration>,
    dom: Vec<Duration>,
    pipeline: Vec<Duration>,
    dom_pipeline: Vec<Duration>,
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let v = f();
    (start.elapsed(), v)
}

fn round(input: &Input, s: &mut Samples, out: &mut Vec<u8>) {
    // (a)
    let (d, mut stanzas) = time(|| read_all(input));
    assert_eq!(stanzas.len(), input.messages);
    s.read.push(d);
    let pristine = stanzas.clone();

    // (b) attributes only, on a copy.
    let mut copy = pristine.clone();
    let (d, sum) = time(|| copy.iter_mut().map(route_attrs).sum::<usize>());
    black_box(sum);
    s.route_attrs.push(d);
    drop(copy);

    // (b)
    let (d, sum) = time(|| stanzas.iter_mut().map(route).sum::<usize>());
    black_box(sum);
    s.route.push(d);

    // (c)
    out.clear();
    let (d, ()) = time(|| {
        for st in &stanzas {
            st.write_to(out, ns::CLIENT);
            if out.len() >= FLUSH_AT {
                black_box(&out[..]);
                out.clear();
            }
        }
    });
    s.write.push(d);

    // Baseline for (b)+(c): the DOM, on the same stanzas as they came out of the reader.
    out.clear();
    let (d, ()) = time(|| {
        for st in &pristine {
            dom_rewrite(st, out);
            if out.len() >= FLUSH_AT {
                black_box(&out[..]);
                out.clear();
            }
        }
    });
    s.dom.push(d);
    drop(pristine);
    drop(stanzas);

    // The fused pipeline, each stanza going from the reader straight to the output.
    out.clear();
    let (d, ()) = time(|| {
        let mut r = open_reader();
        for chunk in &input.chunks {
            r.feed(chunk);
            while let Some(ReadEvent::Stanza(mut st)) = r.next_event().expect("valid input") {
                route(&mut st);
                st.write_to(out, ns::CLIENT);
                if out.len() >= FLUSH_AT {
                    black_box(&out[..]);
                    out.clear();
                }
            }
        }
    });
    s.pipeline.push(d);

    out.clear();
    let (d, ()) = time(|| {
        let mut r = open_reader();
        for chunk in &input.chunks {
            r.feed(chunk);
            while let Some(ReadEvent::Stanza(st)) = r.next_event().expect("valid input") {
                dom_rewrite(&st, out);
                if out.len() >= FLUSH_AT {
                    black_box(&out[..]);
                    out.clear();
                }
            }
        }
    });
    s.dom_pipeline.push(d);
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) only a quick
    // smoke run checks that the benchmark works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { env_usize("HOT_PATH_MESSAGES", 20_000) } else { 200 };
    let rounds = if measuring { env_usize("HOT_PATH_ROUNDS", 15).max(1) } else { 1 };
    let input = input(n);
    let sample = message(0);
    println!(
        "hot path: {n} messages of ~{} bytes ({} bytes in {} chunks of {CHUNK}), {WARMUP_ROUNDS} warm-up + {rounds} rounds",
        sample.len(),
        input.bytes,
        input.chunks.len()
    );

    // Sanity: the no-DOM and the DOM paths write the same bytes.
    {
        let mut st = read_all(&input).swap_remove(0);
        let mut dom = Vec::new();
        dom_rewrite(&st, &mut dom);
        route(&mut st);
        let mut fast = Vec::new();
        st.write_to(&mut fast, ns::CLIENT);
        assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(dom).unwrap());
    }

    let mut out = Vec::with_capacity(FLUSH_AT + 4096);
    let mut warm = Samples::default();
    for _ in 0..WARMUP_ROUNDS {
        round(&input, &mut warm, &mut out);
    }
    let mut s = Samples::default();
    for _ in 0..rounds {
        round(&input, &mut s, &mut out);
    }

    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    let rows = [
        ("(a) read: 4 KiB chunks -> Stanza", median(&s.read)),
        ("(b) route: check/set from, parse to", median(&s.route)),
        ("(b') of which start-tag attributes only", median(&s.route_attrs)),
        ("(c) write: Stanza::write_to", median(&s.write)),
        ("DOM: to_element + set from + Element::write_to", median(&s.dom)),
        ("pipeline, no DOM: (a)+(b)+(c) fused", median(&s.pipeline)),
        ("pipeline, DOM: (a)+DOM fused", median(&s.dom_pipeline)),
    ];
    println!();
    println!("| step | median ns/msg | min ns/msg | msgs/s (median) | MB/s of input |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let all = [&s.read, &s.route, &s.route_attrs, &s.write, &s.dom, &s.pipeline, &s.dom_pipeline];
    for ((name, med), samples) in rows.iter().zip(all) {
        let min = samples.iter().min().copied().unwrap_or_default();
        let ns = per(*med);
        let mbps = input.bytes as f64 / med.as_secs_f64() / 1e6;
        println!("| {name} | {ns:.0} | {:.0} | {:.0} | {mbps:.0} |", per(min), 1e9 / ns);
    }
    let sum = per(median(&s.read)) + per(median(&s.route)) + per(median(&s.write));
    let rewrite = per(median(&s.route)) + per(median(&s.write));
    let dom = per(median(&s.dom));
    println!();
    println!("sum of steps (a)+(b)+(c): {sum:.0} ns/msg");
    println!(
        "after the reader, no-DOM (b)+(c) vs DOM: {rewrite:.0} vs {dom:.0} ns/msg -> DOM costs {:.1}x",
        dom / rewrite
    );
    println!(
        "whole path, no-DOM vs DOM pipeline: {:.0} vs {:.0} ns/msg -> DOM costs {:.2}x",
        per(median(&s.pipeline)),
        per(median(&s.dom_pipeline)),
        per(median(&s.dom_pipeline)) / per(median(&s.pipeline))
    );
    // On a shared, noisy machine the ratio within each round (all variants measured
    // back to back) is steadier than the ratio of medians.
    let ratios = |num: &[Duration], den: &[Duration]| -> f64 {
        let mut r: Vec<f64> = num.iter().zip(den).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64()).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let rewrite_rounds: Vec<Duration> = s.route.iter().zip(&s.write).map(|(a, b)| *a + *b).collect();
    println!(
        "median of per-round ratios: DOM / no-DOM after the reader {:.1}x, whole path {:.2}x",
        ratios(&s.dom, &rewrite_rounds),
        ratios(&s.dom_pipeline, &s.pipeline)
    );
}
