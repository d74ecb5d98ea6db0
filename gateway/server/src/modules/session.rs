//! RFC 3921 session establishment: a no-op since RFC 6121, which older clients (strophe.js,
//! Converse.js) still send after binding and treat a failure as a failed login.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

pub struct LegacySession;

#[async_trait]
impl Module for LegacySession {
    fn features(&self) -> &'static [&'static str] {
        &[]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[
            IqRoute { target: IqTarget::Account, name: "session", ns: ns::SESSION },
            IqRoute { target: IqTarget::Host, name: "session", ns: ns::SESSION },
        ]
    }

    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if !cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(None)
    }
}
