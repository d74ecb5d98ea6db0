//! XEP-0215 external service discovery: the STUN and TURN servers a client uses for
//! calls, for the server's own accounts. With a secret shared with coturn
//! (`use-auth-secret`), each TURN service comes with credentials made for the request
//! by coturn's REST scheme: the username is `<expiry>:<bare JID>` and the password the
//! base64 HMAC-SHA1 of the username under the secret, so coturn checks them without
//! asking us.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use jabberwock_proto::{ns, Element, StanzaError};
use sha1::Sha1;

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};
use crate::config::{ExternalService, ExternalServicesConfig};
use crate::stanzas::xep0082;

pub struct ExternalServices {
    config: ExternalServicesConfig,
}

impl ExternalServices {
    pub fn new(config: &ExternalServicesConfig) -> Self {
        ExternalServices { config: config.clone() }
    }
}

impl Module for ExternalServices {
    fn register(self: Arc<Self>, host: &mut Host) {
        if self.config.services.is_empty() {
            return;
        }
        host.features(&[ns::EXTDISCO]);
        host.iqs(
            &[
                IqRoute { target: IqTarget::Host, name: "services", ns: ns::EXTDISCO },
                IqRoute { target: IqTarget::Host, name: "credentials", ns: ns::EXTDISCO },
            ],
            self,
        );
    }
}

#[async_trait]
impl IqHandler for ExternalServices {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        if cx.set {
            return Err(StanzaError::bad_request());
        }
        // Credentials are for our own accounts only, not for users of other servers.
        let requester = cx.from.to_bare();
        if requester.node().is_none() || cx.server.config.served_domain(requester.domain().as_str()).is_none() {
            return Err(StanzaError::forbidden());
        }
        let now = time::OffsetDateTime::now_utc();
        let listed = |s: &ExternalService| self.element(s, requester.as_str(), now);
        match payload.name() {
            // §3.1: every service, or those of one type.
            "services" => {
                let wanted = payload.attr("type");
                let services = self.config.services.iter().filter(|s| wanted.is_none_or(|t| t == s.kind));
                Ok(Some(services.fold(Element::new("services", ns::EXTDISCO), |el, s| el.with_child(listed(s)))))
            }
            // §3.3: credentials for one service, named by host and type (and port).
            _ => {
                let asked = payload.child("service", ns::EXTDISCO).ok_or_else(StanzaError::bad_request)?;
                let port = asked.attr("port").map(|p| p.parse::<u16>().map_err(|_| StanzaError::bad_request())).transpose()?;
                let service = self
                    .config
                    .services
                    .iter()
                    .find(|s| Some(s.host.as_str()) == asked.attr("host") && Some(s.kind.as_str()) == asked.attr("type") && port.is_none_or(|p| p == s.port))
                    .ok_or_else(StanzaError::item_not_found)?;
                Ok(Some(Element::new("credentials", ns::EXTDISCO).with_child(listed(service))))
            }
        }
    }
}

impl ExternalServices {
    fn element(&self, s: &ExternalService, user: &str, now: time::OffsetDateTime) -> Element {
        let mut el = Element::new("service", ns::EXTDISCO).with_attr("type", s.kind.as_str()).with_attr("host", s.host.as_str()).with_attr("port", s.port.to_string());
        if let Some(t) = &s.transport {
            el.set_attr("transport", t.as_str());
        }
        if let Some(n) = &s.name {
            el.set_attr("name", n.as_str());
        }
        if let (true, Some(secret)) = (s.kind.starts_with("turn"), &self.config.turn_secret) {
            let expires = now + time::Duration::seconds(self.config.credential_ttl_secs as i64);
            let (username, password) = turn_credentials(secret, user, expires.unix_timestamp());
            el.set_attr("restricted", "1");
            el.set_attr("username", username);
            el.set_attr("password", password);
            el.set_attr("expires", xep0082(expires));
        }
        el
    }
}

/// coturn's REST API scheme: `<expiry>:<user>`, and base64(HMAC-SHA1(secret, username)).
pub fn turn_credentials(secret: &str, user: &str, expires_unix: i64) -> (String, String) {
    let username = format!("{expires_unix}:{user}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    let password = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mac.finalize().into_bytes());
    (username, password)
}
