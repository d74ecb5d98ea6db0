//! RFC 3921 session establishment: a no-op since RFC 6121, which older clients (strophe.js,
//! Converse.js) still send after binding and treat a failure as a failed login.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};

pub struct LegacySession;

impl Module for LegacySession {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.iqs(&[
            IqRoute { target: IqTarget::Account, name: "session", ns: ns::SESSION },
            IqRoute { target: IqTarget::Host, name: "session", ns: ns::SESSION },
        ], self);
    }
}

#[async_trait]
impl IqHandler for LegacySession {
    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if !cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(None)
    }
}
