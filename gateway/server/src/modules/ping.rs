//! XEP-0199: the server answers pings addressed to it, and to an account's bare JID (a
//! ping without `to` is for the account, RFC 6120 §10.3.3: clients use it as a keepalive).

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};

pub struct Ping;

impl Module for Ping {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::PING]);
        host.iqs(
            &[IqRoute { target: IqTarget::Host, name: "ping", ns: ns::PING }, IqRoute { target: IqTarget::Account, name: "ping", ns: ns::PING }],
            self,
        );
    }
}

#[async_trait]
impl IqHandler for Ping {
    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(None)
    }
}
