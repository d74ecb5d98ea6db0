//! XEP-0092: the server's software name and version.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};

pub struct Version;

impl Module for Version {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::VERSION]);
        host.iqs(&[IqRoute { target: IqTarget::Host, name: "query", ns: ns::VERSION }], self);
    }
}

#[async_trait]
impl IqHandler for Version {
    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(Some(
            Element::new("query", ns::VERSION)
                .with_child(Element::new("name", ns::VERSION).with_text("Jabberwock"))
                .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION"))),
        ))
    }
}
