//! XEP-0012 last activity: the server's uptime, or how long ago an account was online
//! and its last status, recorded whenever a resource goes unavailable.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError};
use jabberwock_storage::UserRef;
use jid::FullJid;

use super::{AccountReport, Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module, PresenceHooks};
use crate::im::roster::{self, Account};
use crate::server::Server;

const STORE: &str = "last_activity";

pub struct LastActivity;

/// When the account was last seen, and its last status.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    unix_secs: i64,
    status: String,
}

fn answer(seconds: u64, status: Option<String>) -> Element {
    let el = Element::new("query", ns::LAST).with_attr("seconds", seconds.to_string());
    match status.filter(|s| !s.is_empty()) {
        Some(s) => el.with_text(s),
        None => el,
    }
}

impl Module for LastActivity {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::LAST]);
        host.iqs(
            &[IqRoute { target: IqTarget::Host, name: "query", ns: ns::LAST }, IqRoute { target: IqTarget::Account, name: "query", ns: ns::LAST }],
            self.clone(),
        );
        host.account_report(self.clone());
        host.presence_hooks(self);
    }
}

#[async_trait]
impl AccountReport for LastActivity {
    async fn report(&self, server: &Server, account: UserRef<'_>) -> Vec<String> {
        let raw = server.store.kv_get(account, STORE).await.ok().flatten();
        let last = raw.and_then(|r| serde_json::from_slice::<Record>(&r).ok());
        let when = last
            .and_then(|l| time::OffsetDateTime::from_unix_timestamp(l.unix_secs).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
        vec![format!("last signed out (XEP-0012): {}", when.as_deref().unwrap_or("never"))]
    }
}

#[async_trait]
impl PresenceHooks for LastActivity {
    async fn unavailable(&self, server: &Server, from: &FullJid, st: &Stanza) {
        let Some(user) = from.node() else { return };
        let status = st.to_element().ok().and_then(|e| e.child_text("status", ns::CLIENT)).unwrap_or_default();
        let record = Record { unix_secs: time::OffsetDateTime::now_utc().unix_timestamp(), status };
        let json = serde_json::to_vec(&record).expect("serializes");
        if let Err(e) = server.store.kv_set(UserRef { host: from.domain().as_str(), user: user.as_str() }, STORE, Some(&json)).await {
            tracing::warn!(error = %e, "recording last activity failed");
        }
    }
}

#[async_trait]
impl IqHandler for LastActivity {
    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        if cx.to.node().is_none() {
            return Ok(Some(answer(cx.server.started.elapsed().as_secs(), None)));
        }
        let target = cx.to.to_bare();
        let a = Account::of(&target).ok_or_else(StanzaError::bad_request)?;
        // §4: only the account itself and its subscribers may know when it was online.
        let requester = cx.from.to_bare();
        let allowed = requester == target
            || roster::get(cx.server, a, requester.as_str()).await.is_some_and(|i| i.subscription.has_from());
        if !allowed {
            return Err(StanzaError::forbidden());
        }
        if cx.server.sessions.resources(target.as_str()).iter().any(|r| r.available) {
            return Ok(Some(answer(0, None)));
        }
        let raw = cx.server.store.kv_get(UserRef { host: a.host, user: a.user }, STORE).await.ok().flatten();
        let last: Record = raw.and_then(|r| serde_json::from_slice(&r).ok()).ok_or_else(StanzaError::item_not_found)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(Some(answer(now.saturating_sub(last.unix_secs).max(0) as u64, Some(last.status))))
    }
}
