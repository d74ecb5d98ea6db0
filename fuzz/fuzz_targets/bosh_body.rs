//! XEP-0124/0206: an HTTP request's `<body/>` and the stream events it carries.
#![no_main]

use jabberwock_fuzz::{check_stanza, small_limits};
use jabberwock_proto::bosh::{body_events, parse_request, MAX_RID};
use jabberwock_proto::{Node, ReadEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(request) = parse_request(data, &small_limits()) else { return };
    assert!(request.rid <= MAX_RID);
    let Ok(events) = body_events(&request.body) else { return };
    // Each child element becomes one stanza (one in no namespace is written as
    // jabber:client; the session refuses it either way, as it is no stanza).
    let children: Vec<_> =
        request.body.nodes().iter().filter_map(|n| if let Node::Element(el) = n { Some(el) } else { None }).collect();
    let stanzas: Vec<_> =
        events.iter().filter_map(|ev| if let ReadEvent::Stanza(st) = ev { Some(st) } else { None }).collect();
    assert_eq!(stanzas.len(), children.len());
    for (st, child) in stanzas.into_iter().zip(children) {
        check_stanza(st);
        assert!(st.is(child.name(), child.ns()));
        assert!(child.attrs().all(|(k, v)| st.attr(k) == Some(v)));
    }
});
