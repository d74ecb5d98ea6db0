//! Resource binding (RFC 6120 §7), inline in SASL2 (XEP-0386 Bind2), and the legacy
//! session establishment no-op.

use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind, StreamError, StreamErrorCondition};
use sha2::{Digest, Sha256};

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
            match bind(s, requested.trim()).await {
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

/// The longest Bind2 `<tag/>` kept in a resource, in characters.
const MAX_TAG_CHARS: usize = 32;

/// Bind2's `<bind/>` in the SASL2 inline features, with what can be set up inside it:
/// stream management and client state indication (parts of the session) and what
/// modules offer.
pub(super) fn bind2_feature(server: &crate::server::Server) -> Element {
    let mut inline = Element::new("inline", ns::BIND2);
    let module_features = server.modules.bind_features.iter().map(|f| f.namespace());
    for var in [ns::SM, ns::CSI].into_iter().chain(module_features) {
        inline.push(Element::new("feature", ns::BIND2).with_attr("var", var));
    }
    Element::new("bind", ns::BIND2).with_child(inline)
}

/// XEP-0386: binds the resource of a SASL2 login and sets up the features its request
/// carries. Returns the full JID and `<bound/>`; what the features send goes to `out`.
pub(super) async fn bind2(s: &mut Session, request: &Element, device: Option<&str>, out: &mut Vec<Frame>) -> Result<(String, Element), StanzaError> {
    let resource = bind2_resource(s, request.child_text("tag", ns::BIND2), device);
    let jid_text = bind(s, &resource).await?;
    let jid = s.bound.as_ref().expect("just bound").jid.clone();
    let server = s.server.clone();
    let mut bound = Element::new("bound", ns::BIND2);
    for el in request.children() {
        match (el.name(), el.ns()) {
            ("enable", ns::SM) => bound.push(s.enable_sm(el.attr("resume"))),
            ("inactive", ns::CSI) => s.csi.set_inactive(true, out),
            _ => {
                if let Some(f) = server.modules.bind_features.iter().find(|f| f.namespace() == el.ns()) {
                    if let Some(result) = f.bound(&server, &jid, s.conn, el).await {
                        bound.push(result);
                    }
                }
            }
        }
    }
    Ok((jid_text, bound))
}

/// A Bind2 resource: the client's tag, then a part derived from the account and the
/// device, so that a device keeps its resource from one login to the next (its new
/// session replaces a stale one) while its accounts cannot be linked through it. Random
/// without a device id.
fn bind2_resource(s: &Session, tag: Option<String>, device: Option<&str>) -> String {
    let stable = match device {
        Some(d) => {
            let digest = Sha256::digest(format!("{}@{}\0{d}", s.user.as_deref().unwrap_or_default(), s.domain()));
            digest[..6].iter().map(|b| format!("{b:02x}")).collect()
        }
        None => random_id(),
    };
    let tag: String = tag.unwrap_or_default().trim().chars().filter(|c| !c.is_control() && !c.is_whitespace()).take(MAX_TAG_CHARS).collect();
    match tag.is_empty() {
        true => stable,
        false => format!("{tag}.{stable}"),
    }
}

/// Binds the requested resource (or a generated one) and returns the full JID.
async fn bind(s: &mut Session, requested: &str) -> Result<String, StanzaError> {
    let user = s.user.clone().expect("authenticated before bind");
    let domain = s.domain().to_owned();
    let resource = if requested.is_empty() { random_id() } else { requested.to_owned() };
    let full = jid::FullJid::new(&format!("{user}@{domain}/{resource}"))
        .map_err(|e| StanzaError::bad_request().with_text(format!("invalid resource: {e}")))?;
    let bare = full.to_bare().to_string();
    let resource = full.resource().to_string();
    let max = s.server.config.limits.max_resources;
    match s.server.sessions.bind(&bare, &resource, s.handle.clone(), max).await {
        Ok(Some(old)) => {
            old.send(Routed::Close(crate::registry::replaced()));
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
