//! XEP-0077 in-band registration: creating an account before authentication (when the
//! operator allows it), and changing the password or cancelling the account after.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError, StreamError, StreamErrorCondition};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module, PreAuthHooks, StreamFeatures, StreamStage, Unauthenticated};
use crate::accounts::{self, AccountError};
use crate::server::Server;
use crate::stanzas::{error_reply, iq_result};

pub struct Register;

fn form() -> Element {
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("instructions", ns::REGISTER).with_text("Choose a username and password."))
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
}

fn account_error(e: AccountError) -> StanzaError {
    match e {
        AccountError::AlreadyExists => StanzaError::conflict(),
        AccountError::InvalidUsername(_) => StanzaError::jid_malformed().with_text(e.to_string()),
        AccountError::InvalidPassword => StanzaError::not_acceptable().with_text(e.to_string()),
        AccountError::NotFound => StanzaError::item_not_found(),
        AccountError::Storage(err) => {
            tracing::error!(error = %err, "account storage failed");
            StanzaError::internal_server_error()
        }
    }
}

fn credentials_of(query: &Element) -> Result<(String, String), StanzaError> {
    match (query.child_text("username", ns::REGISTER), query.child_text("password", ns::REGISTER)) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok((u, p)),
        _ => Err(StanzaError::not_acceptable().with_text("username and password are required")),
    }
}

impl Module for Register {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::REGISTER]);
        // XEP-0077 §3.3 addresses a change to the server; RFC 6120 §10.3.3 lets a client
        // address its own account. Both mean the sender's account.
        host.iqs(
            &[
                IqRoute { target: IqTarget::Account, name: "query", ns: ns::REGISTER },
                IqRoute { target: IqTarget::Host, name: "query", ns: ns::REGISTER },
            ],
            self.clone(),
        );
        host.pre_auth_hooks(self.clone());
        host.stream_features(self);
    }
}

/// Registration carries a password: offered where signing in is, over TLS (at the server or
/// a trusted proxy) or from this machine; a plain-HTTP WebSocket or BOSH stream from
/// elsewhere is not offered it.
impl StreamFeatures for Register {
    fn feature(&self, server: &Server, stage: StreamStage) -> Option<Element> {
        let offered = !stage.authenticated && stage.password_safe && server.config.allow_registration;
        offered.then(|| Element::new("register", ns::REGISTER_FEATURE))
    }
}

#[async_trait]
impl PreAuthHooks for Register {
    /// A registration request, when the operator allows them.
    async fn iq(&self, c: &Unauthenticated<'_>, st: &Stanza) -> Option<Stanza> {
        if !c.server.config.allow_registration {
            return None;
        }
        if !c.password_safe {
            return Some(error_reply(st, StanzaError::not_allowed().with_text("register over an encrypted connection")));
        }
        let el = st.to_element().ok()?;
        let query = el.first_child().filter(|q| q.is("query", ns::REGISTER))?;
        Some(match el.attr("type") {
            Some("get") => iq_result(st, Some(form())),
            Some("set") => match register(c, query).await {
                Ok(()) => iq_result(st, None),
                Err(e) => error_reply(st, e),
            },
            _ => error_reply(st, StanzaError::bad_request()),
        })
    }
}

async fn register(c: &Unauthenticated<'_>, query: &Element) -> Result<(), StanzaError> {
    if query.child("remove", ns::REGISTER).is_some() {
        return Err(StanzaError::not_allowed().with_text("authenticate to cancel an account"));
    }
    let (user, password) = credentials_of(query)?;
    // Registrations per address share the failed-login throttle's window and limit.
    let key = format!("register {}", crate::session::address_key(c.peer_ip));
    if !c.server.throttle.allowed(&key) {
        return Err(StanzaError::resource_constraint().with_text("too many registrations from this address"));
    }
    let iterations = c.server.config.auth.scram_iterations;
    let user = accounts::create(&c.server.store, c.domain, &user, &password, iterations).await.map_err(account_error)?;
    c.server.throttle.count(&key);
    tracing::info!(user = %user, domain = %c.domain, ip = %c.peer_ip, "account registered in-band");
    Ok(())
}

#[async_trait]
impl IqHandler for Register {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        // To the server: only a local account's own (a remote sender's domain differs).
        let own = match cx.to.node() {
            None if cx.from.domain() == cx.to.domain() => cx.from.to_bare(),
            None => return Err(StanzaError::forbidden()),
            Some(_) => cx.to.to_bare(),
        };
        if cx.from.to_bare() != own {
            return Err(StanzaError::forbidden());
        }
        let host = own.domain().as_str();
        let user = own.node().ok_or_else(StanzaError::bad_request)?.as_str();
        if !cx.set {
            return Ok(Some(
                Element::new("query", ns::REGISTER)
                    .with_child(Element::new("registered", ns::REGISTER))
                    .with_child(Element::new("username", ns::REGISTER).with_text(user)),
            ));
        }
        if payload.child("remove", ns::REGISTER).is_some() {
            accounts::delete(&cx.server.store, host, user).await.map_err(account_error)?;
            cx.server.modules.account_deleted(&own);
            tracing::info!(%user, %host, "account cancelled in-band");
            // The result goes out first (the requester's reply is written before its
            // mailbox is read); then every session of the account ends.
            cx.server.end_sessions(own.as_str(), |_| true, || {
                StreamError::with_text(StreamErrorCondition::NotAuthorized, "account deleted")
            });
            return Ok(None);
        }
        let (name, password) = credentials_of(payload)?;
        if accounts::normalize_user(&name).as_deref() != Some(user) {
            return Err(StanzaError::bad_request().with_text("the username must be the account's own"));
        }
        accounts::set_password(&cx.server.store, host, user, &password, cx.server.config.auth.scram_iterations)
            .await
            .map_err(account_error)?;
        // Whoever signed in with the old password is out; the session that changed it stays.
        let changer = cx.from.resource().map(|r| r.as_str().to_owned());
        cx.server.end_sessions(own.as_str(), |r| changer.as_deref() != Some(r), || {
            StreamError::with_text(StreamErrorCondition::NotAuthorized, "the password changed")
        });
        tracing::info!(%user, %host, "password changed in-band");
        Ok(None)
    }
}
