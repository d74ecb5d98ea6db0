//! XEP-0202 entity time: the server's clock, in UTC.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};
use crate::stanzas::xep0082;

pub struct EntityTime;

impl Module for EntityTime {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::TIME]);
        host.iqs(&[IqRoute { target: IqTarget::Host, name: "time", ns: ns::TIME }], self);
    }
}

#[async_trait]
impl IqHandler for EntityTime {
    async fn handle_iq(&self, cx: &IqCtx<'_>, _payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        Ok(Some(
            Element::new("time", ns::TIME)
                .with_child(Element::new("tzo", ns::TIME).with_text("+00:00"))
                .with_child(Element::new("utc", ns::TIME).with_text(xep0082(time::OffsetDateTime::now_utc()))),
        ))
    }
}
