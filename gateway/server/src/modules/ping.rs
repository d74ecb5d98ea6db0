//! XEP-0199: the server answers pings addressed to it.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

pub struct Ping;

#[async_trait]
impl Module for Ping {
    fn features(&self) -> &'static [&'static str] {
        &[ns::PING]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[IqRoute { target: IqTarget::Host, name: "ping", ns: ns::PING }]
    }

    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(None)
    }
}
