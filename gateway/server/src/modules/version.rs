//! XEP-0092: the server's software name and version.

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

pub struct Version;

#[async_trait]
impl Module for Version {
    fn features(&self) -> &'static [&'static str] {
        &[ns::VERSION]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[IqRoute { target: IqTarget::Host, name: "query", ns: ns::VERSION }]
    }

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
