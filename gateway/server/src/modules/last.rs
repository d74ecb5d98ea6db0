//! XEP-0012 last activity: the server's uptime, or how long ago an account was online.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};
use crate::im::presence;
use crate::im::roster::{self, Account};

pub struct LastActivity;

fn answer(seconds: u64, status: Option<String>) -> Element {
    let el = Element::new("query", ns::LAST).with_attr("seconds", seconds.to_string());
    match status.filter(|s| !s.is_empty()) {
        Some(s) => el.with_text(s),
        None => el,
    }
}

#[async_trait]
impl Module for LastActivity {
    fn features(&self) -> &'static [&'static str] {
        &[ns::LAST]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[
            IqRoute { target: IqTarget::Host, name: "query", ns: ns::LAST },
            IqRoute { target: IqTarget::Account, name: "query", ns: ns::LAST },
        ]
    }

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
        if cx.server.router.resources(target.as_str()).iter().any(|r| r.available) {
            return Ok(Some(answer(0, None)));
        }
        let last = presence::last_activity(cx.server, a.host, a.user).await.ok_or_else(StanzaError::item_not_found)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(Some(answer(now.saturating_sub(last.unix_secs).max(0) as u64, Some(last.status))))
    }
}
