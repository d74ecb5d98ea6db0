//! Server features, one file per XEP or RFC area.
//!
//! A module declares the iq payloads it answers ([`IqRoute`]: whom the iq is addressed to,
//! and the payload's name and namespace) and the disco features it brings. Adding a XEP
//! is one new file plus one line in [`Modules::standard`]. An iq get or set that no module
//! claims gets `service-unavailable` (RFC 6120 §8.4).

pub mod blocking;
pub mod caps;
pub mod carbons;
pub mod disco;
pub mod last;
pub mod mam;
pub mod pep;
pub mod ping;
pub mod private;
pub mod register;
pub mod session;
pub mod vcard;
pub mod version;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{Element, Stanza, StanzaError};
use jid::Jid;

use crate::im::{error_reply, iq_result};
use crate::server::Server;

/// Whom an iq is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server's domain.
    Host,
    /// A local account's bare JID (including the sender's own, or no `to`).
    Account,
}

#[derive(Clone, Copy, Debug)]
pub struct IqRoute {
    pub target: IqTarget,
    pub name: &'static str,
    pub ns: &'static str,
}

/// What a module sees of an iq request.
pub struct IqCtx<'a> {
    pub server: &'a Arc<Server>,
    /// The requester; a full JID for local sessions.
    pub from: &'a Jid,
    /// The domain or bare JID the iq is for.
    pub to: &'a Jid,
    /// `type='set'` (otherwise `get`).
    pub set: bool,
    /// Stanzas for the requester that must arrive before the iq result.
    before_result: std::sync::Mutex<Vec<Stanza>>,
}

impl IqCtx<'_> {
    /// Queues a stanza for the requester ahead of the result (MAM results, for example).
    pub fn send_before_result(&self, st: Stanza) {
        self.before_result.lock().expect("iq context").push(st);
    }
}

/// `Ok(Some(payload))` or `Ok(None)` for an empty result.
pub type IqResult = Result<Option<Element>, StanzaError>;

#[async_trait]
pub trait Module: Send + Sync {
    /// Disco features advertised by the server.
    fn features(&self) -> &'static [&'static str];
    /// Disco features advertised on every account's bare JID.
    fn account_features(&self) -> &'static [&'static str] {
        &[]
    }
    fn iq_routes(&self) -> &'static [IqRoute];
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult;
}

pub struct Modules {
    routes: HashMap<(IqTarget, &'static str, &'static str), Arc<dyn Module>>,
    features: Vec<&'static str>,
    account_features: Vec<&'static str>,
}

impl Modules {
    pub fn standard() -> Self {
        Self::new(vec![
            Arc::new(crate::im::roster::RosterModule),
            Arc::new(disco::Disco),
            Arc::new(ping::Ping),
            Arc::new(version::Version),
            Arc::new(last::LastActivity),
            Arc::new(vcard::VCard),
            Arc::new(private::PrivateStorage),
            Arc::new(register::Register),
            Arc::new(carbons::Carbons),
            Arc::new(mam::Mam),
            Arc::new(blocking::Blocking),
            Arc::new(pep::Pep),
            Arc::new(session::LegacySession),
        ])
    }

    fn new(list: Vec<Arc<dyn Module>>) -> Self {
        let mut routes = HashMap::new();
        let mut features = Vec::new();
        let mut account_features = Vec::new();
        for m in list {
            for r in m.iq_routes() {
                let previous = routes.insert((r.target, r.name, r.ns), m.clone());
                assert!(previous.is_none(), "two modules claim {} {}", r.name, r.ns);
            }
            features.extend_from_slice(m.features());
            account_features.extend_from_slice(m.account_features());
        }
        for list in [&mut features, &mut account_features] {
            list.sort_unstable();
            list.dedup();
        }
        Modules { routes, features, account_features }
    }

    /// Every disco feature of the server.
    pub fn features(&self) -> &[&'static str] {
        &self.features
    }

    /// Every disco feature of an account.
    pub fn account_features(&self) -> &[&'static str] {
        &self.account_features
    }
}

/// Answers an iq get/set for the server or a local account: returns what goes back to the
/// requester, the result or error last.
pub async fn dispatch_iq(server: &Arc<Server>, target: IqTarget, st: &Stanza) -> Vec<Stanza> {
    let mut emitted = Vec::new();
    let result = async {
        let el = st.to_element().map_err(|_| StanzaError::bad_request())?;
        let payload = el.first_child().ok_or_else(StanzaError::bad_request)?;
        let module = server
            .modules
            .routes
            .get(&(target, payload.name(), payload.ns()))
            .ok_or_else(StanzaError::service_unavailable)?;
        let from = st.from().and_then(|f| Jid::new(f).ok()).ok_or_else(StanzaError::bad_request)?;
        let to = st.to().and_then(|t| Jid::new(t).ok()).ok_or_else(StanzaError::bad_request)?;
        let cx = IqCtx { server, from: &from, to: &to, set: st.stanza_type() == Some("set"), before_result: Default::default() };
        let result = module.handle_iq(&cx, payload).await;
        emitted = cx.before_result.into_inner().expect("iq context");
        result
    }
    .await;
    emitted.push(match result {
        Ok(payload) => iq_result(st, payload),
        Err(e) => error_reply(st, e),
    });
    emitted
}
