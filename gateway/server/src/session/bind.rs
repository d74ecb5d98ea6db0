//! Resource binding (RFC 6120 §7) and the legacy session establishment no-op.

use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind, StreamError, StreamErrorCondition};

use super::{Bound, Session};
use crate::stanzas::random_id;
use crate::stanzas::iq_result;
use crate::registry::{BindError, Routed};
use crate::stream::{Flow, Frame};

pub(super) async fn on_stanza_before_bind(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    if st.kind() != StanzaKind::Iq {
        return s.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "bind a resource first"), out);
    }
    let Ok(el) = st.to_element() else {
        return s.fail(StreamError::new(StreamErrorCondition::InvalidXml), out);
    };
    let payload = el.first_child();
    match (el.attr("type"), payload.map(|p| (p.name(), p.ns()))) {
        (Some("set"), Some(("bind", ns::BIND))) => {
            let requested = payload.and_then(|p| p.child_text("resource", ns::BIND)).unwrap_or_default();
            match bind(s, requested.trim()) {
                Ok(full) => {
                    let result = Element::new("bind", ns::BIND).with_child(Element::new("jid", ns::BIND).with_text(full));
                    out.push(Frame::Stanza(iq_result(&st, Some(result))));
                }
                Err(e) => out.push(Frame::Stanza(crate::stanzas::error_reply(&st, e))),
            }
            Flow::Continue
        }
        (Some("set"), Some(("session", ns::SESSION))) => {
            out.push(Frame::Stanza(iq_result(&st, None)));
            Flow::Continue
        }
        _ => s.fail(StreamError::with_text(StreamErrorCondition::NotAuthorized, "bind a resource first"), out),
    }
}

/// Binds the requested resource (or a generated one) and returns the full JID.
fn bind(s: &mut Session, requested: &str) -> Result<String, StanzaError> {
    let user = s.user.clone().expect("authenticated before bind");
    let domain = s.domain().to_owned();
    let resource = if requested.is_empty() { random_id() } else { requested.to_owned() };
    let full = jid::FullJid::new(&format!("{user}@{domain}/{resource}"))
        .map_err(|e| StanzaError::bad_request().with_text(format!("invalid resource: {e}")))?;
    let bare = full.to_bare().to_string();
    let resource = full.resource().to_string();
    let max = s.server.config.limits.max_resources;
    match s.server.sessions.bind(&bare, &resource, s.handle.clone(), max) {
        Ok(Some(old)) => {
            old.send(Routed::Close(StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new connection for the same resource",
            )));
        }
        Ok(None) => {}
        Err(BindError::TooManyResources) => {
            s.server.metrics.limit_hit(crate::metrics::Limit::Resources);
            return Err(StanzaError::resource_constraint().with_text("too many sessions for this account"));
        }
    }
    tracing::info!(jid = %full, conn = s.conn, "resource bound");
    let jid_text = full.to_string();
    s.start_active(Bound {
        jid: full,
        bare,
        user,
        domain,
        resource,
        available: false,
        initial_presence_sent: false,
        directed: Default::default(),
    });
    Ok(jid_text)
}
