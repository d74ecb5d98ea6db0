//! Where a stanza goes (RFC 6120 §10, RFC 6121 §8): to a local account, to a service
//! domain's module, or to a remote server; and what the sender gets back when it cannot.
//!
//! Every stanza first passes the modules' filters. Sessions are found through the
//! [`crate::registry`]; what happens to a message or presence at a local account is
//! [`crate::im`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jabberwock_proto::{Stanza, StanzaError, StanzaKind};
use jid::Jid;
use tokio::sync::oneshot;

use crate::im;
use crate::modules::{self, IqTarget, Verdict};
use crate::server::Server;
use crate::stanzas::bounce_reply;

/// Routes a stanza and delivers any error or reply back to its local sender.
pub async fn route(server: &Arc<Server>, st: Stanza) {
    for reply in Box::pin(route_or_reply(server, st)).await {
        deliver_to_sender(server, reply);
    }
}

/// Routes `st` (its `from` is trusted). What the server itself answers the sender (iq
/// results, errors) is returned instead of routed, so callers can hand it straight back
/// to a local session.
pub async fn route_or_reply(server: &Arc<Server>, st: Stanza) -> Vec<Stanza> {
    let to = match st.to().map(Jid::new) {
        Some(Ok(to)) => to,
        Some(Err(_)) => return bounce_reply(&st, StanzaError::jid_malformed()),
        None => return Vec::new(),
    };
    // Parsed once: filters and local delivery need the sender.
    let from = st.from().and_then(|f| Jid::new(f).ok());
    if let Some(from) = &from {
        for filter in &server.modules.filters {
            match filter.filter(server, &st, from, &to).await {
                Verdict::Pass => {}
                Verdict::Drop => return Vec::new(),
                Verdict::Bounce(e) => return bounce_reply(&st, e),
            }
        }
    }
    let domain = to.domain().as_str();
    if server.config.served_domain(domain).is_none() {
        return match server.modules.service(domain) {
            Some(service) => service.clone().handle(server, st, &to).await,
            None => crate::s2s::send(server, st),
        };
    }
    match st.kind() {
        StanzaKind::Iq => iq_to_local(server, st, &to).await,
        StanzaKind::Message if to.node().is_none() => {
            // Messages to the server itself: nothing here consumes them.
            bounce_reply(&st, StanzaError::service_unavailable())
        }
        StanzaKind::Message => match im::message::deliver(server, st, from.as_ref(), &to).await {
            Ok(()) => Vec::new(),
            Err((st, e)) => bounce_reply(&st, e),
        },
        StanzaKind::Presence if to.node().is_none() => Vec::new(),
        StanzaKind::Presence => {
            im::presence::inbound(server, st, &to).await;
            Vec::new()
        }
        StanzaKind::Other => Vec::new(),
    }
}

/// Whether `domain` is ours: a served domain or a module's service domain.
pub fn is_local_domain(server: &Server, domain: &str) -> bool {
    local_domain(server, domain).is_some()
}

/// Our own name for `domain` (names compare case-insensitively), if it is ours: a served
/// domain or a module's service domain. Federation speaks for both.
pub fn local_domain<'a>(server: &'a Server, domain: &str) -> Option<&'a str> {
    server.config.served_domain(domain).or_else(|| server.modules.service_domain(&domain.to_ascii_lowercase()))
}

/// Delivers a server-generated reply to the full JID it is addressed to: a local session,
/// a service, or a remote entity over federation.
fn deliver_to_sender(server: &Arc<Server>, reply: Stanza) {
    let Some(Ok(to)) = reply.to().map(Jid::new) else { return };
    if let Some(service) = server.modules.service(to.domain().as_str()) {
        // On its own task: the service may be busy with the stanza this replies to.
        let (server, service) = (server.clone(), service.clone());
        tokio::spawn(async move {
            service.handle(&server, reply, &to).await;
        });
        return;
    }
    if server.config.served_domain(to.domain().as_str()).is_none() {
        // A reply that cannot reach a remote sender has nowhere further to go: replies
        // are errors or results, which never bounce.
        crate::s2s::send(server, reply);
        return;
    }
    if let Some(resource) = to.resource() {
        if let Some(h) = server.sessions.get(to.to_bare().as_str(), resource.as_str()) {
            // Replies never bounce: one a full session refuses is dropped.
            let _ = h.deliver(reply);
        }
    }
}

async fn iq_to_local(server: &Arc<Server>, st: Stanza, to: &Jid) -> Vec<Stanza> {
    let is_request = matches!(st.stanza_type(), Some("get" | "set"));
    if let Some(resource) = to.resource() {
        return match server.sessions.get(to.to_bare().as_str(), resource.as_str()) {
            Some(h) => match h.deliver(st) {
                Ok(()) => Vec::new(),
                // The session holds too much output already.
                Err(st) if is_request => bounce_reply(&st, StanzaError::resource_constraint()),
                Err(_) => Vec::new(),
            },
            None if is_request => bounce_reply(&st, StanzaError::service_unavailable()),
            None => Vec::new(),
        };
    }
    if !is_request {
        // Results and errors for the server or an account's bare JID answer requests the
        // server sent (for itself, or on an account's behalf); nothing else awaits them.
        server.iq_requests.complete(st);
        return Vec::new();
    }
    let target = match to.node() {
        None => IqTarget::Host,
        Some(_) => {
            let bare = to.to_bare();
            if !crate::accounts::exists(server, bare.domain().as_str(), bare.node().map(|n| n.as_str()).unwrap_or_default()).await {
                return bounce_reply(&st, StanzaError::service_unavailable());
            }
            IqTarget::Account
        }
    };
    modules::dispatch_iq(server, target, &st).await
}

/// Iqs the server itself sent to a local session, waiting for their answer.
#[derive(Default)]
pub struct IqRequests {
    pending: Mutex<HashMap<String, oneshot::Sender<Stanza>>>,
}

/// How long the server waits for an answer to its own iq.
const IQ_TIMEOUT: Duration = Duration::from_secs(10);

impl IqRequests {
    /// Sends `iq` (a get or set with a unique id, from a served domain) to the local full
    /// JID it is addressed to, and waits for the result or error. Only to a session of
    /// this process: the answer of one on another cluster node would reach that node.
    pub async fn send(&self, server: &Server, iq: Stanza) -> Option<Stanza> {
        let to = Jid::new(iq.to()?).ok()?;
        let handle = server.sessions.get(to.to_bare().as_str(), to.resource()?.as_str()).filter(crate::registry::SessionHandle::is_local)?;
        let id = iq.id()?.to_owned();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("iq requests").insert(id.clone(), tx);
        let reply = match handle.deliver(iq) {
            Ok(()) => tokio::time::timeout(IQ_TIMEOUT, rx).await.ok(),
            Err(_) => None,
        };
        self.pending.lock().expect("iq requests").remove(&id);
        reply?.ok()
    }

    /// Routes `iq` (a get or set with a unique id, from a served domain or a local
    /// account's bare JID) anywhere, and waits for its result or error: from another
    /// server, a service, or the bounce if it cannot be delivered.
    pub async fn request(&self, server: &Arc<Server>, iq: Stanza) -> Option<Stanza> {
        let id = iq.id()?.to_owned();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("iq requests").insert(id.clone(), tx);
        route(server, iq).await;
        let reply = tokio::time::timeout(IQ_TIMEOUT, rx).await.ok();
        self.pending.lock().expect("iq requests").remove(&id);
        reply?.ok()
    }

    /// An iq result or error for the server: completes the request waiting for it.
    fn complete(&self, st: Stanza) {
        let Some(id) = st.id() else { return };
        let waiting = self.pending.lock().expect("iq requests").remove(id);
        if let Some(tx) = waiting {
            let _ = tx.send(st);
        }
    }
}
