//! What an administrator does to a running server, whether from the control socket
//! (`jabberwock passwd`, `announce`…) or over XMPP (XEP-0133): account changes that also
//! end the sessions they concern, announcements, who is online.

use std::sync::Arc;

use jabberwock_proto::{Element, Stanza, StreamError, StreamErrorCondition};

use crate::accounts::{self, AccountError};
use crate::config::Config;
use crate::server::Server;

/// A bare JID of a served domain (`user@domain`), as (domain, user).
pub fn local_account(config: &Config, jid: &str) -> Result<(String, String), String> {
    let bare = jid::BareJid::new(jid.trim()).map_err(|e| format!("{jid:?} is not a valid JID: {e}"))?;
    let user = bare.node().ok_or_else(|| format!("{jid:?} has no username (expected user@domain)"))?.to_string();
    let host = config
        .served_domain(bare.domain().as_str())
        .ok_or_else(|| format!("{} is not a served domain (domains = {:?})", bare.domain(), config.domains))?;
    Ok((host.to_owned(), user))
}

/// Ends one session (`user@domain/resource`) or all of an account's (`user@domain`) with a
/// `policy-violation` stream error carrying `reason`; returns the full JIDs ended.
pub fn end_sessions_of(server: &Server, jid: &str, reason: &str) -> Result<Vec<String>, String> {
    let full = jid::Jid::new(jid.trim()).map_err(|e| format!("{jid:?} is not a valid JID: {e}"))?;
    let (host, user) = local_account(&server.config, full.to_bare().as_str())?;
    let only = full.resource().map(|r| r.as_str().to_owned());
    let ended = server.end_sessions(&format!("{user}@{host}"), |r| only.as_deref().is_none_or(|o| o == r), || {
        StreamError::with_text(StreamErrorCondition::PolicyViolation, reason)
    });
    Ok(ended.into_iter().map(|resource| format!("{user}@{host}/{resource}")).collect())
}

/// Creates an account; returns its normalized username.
pub async fn create_account(server: &Server, host: &str, user: &str, password: &str) -> Result<String, AccountError> {
    accounts::create(&server.store, host, user, password, server.config.auth.scram_iterations).await
}

/// Changes a password and ends every session signed in with the old one; returns how many.
pub async fn change_password(server: &Server, host: &str, user: &str, password: &str) -> Result<usize, AccountError> {
    accounts::set_password(&server.store, host, user, password, server.config.auth.scram_iterations).await?;
    let ended = server.end_sessions(&format!("{user}@{host}"), |_| true, || {
        StreamError::with_text(StreamErrorCondition::NotAuthorized, "the password changed")
    });
    Ok(ended.len())
}

/// Deletes an account with its data and ends its sessions; returns how many.
pub async fn delete_account(server: &Server, host: &str, user: &str) -> Result<usize, AccountError> {
    let bare = jid::BareJid::new(&format!("{user}@{host}")).map_err(|_| AccountError::InvalidUsername(user.to_owned()))?;
    accounts::delete(&server.store, host, user).await?;
    server.modules.account_deleted(&bare);
    let ended = server.end_sessions(bare.as_str(), |_| true, || {
        StreamError::with_text(StreamErrorCondition::NotAuthorized, "account deleted")
    });
    Ok(ended.len())
}

/// A headline from each domain to every available resource of its users (what Prosody's
/// `mod_announce` sends): read by those online, stored for nobody. Returns how many got it.
pub fn announce(server: &Arc<Server>, domains: &[&str], subject: Option<&str>, text: &str) -> usize {
    let mut sent = 0;
    for (bare, list) in server.sessions.all() {
        let Some(domain) = bare.rsplit_once('@').map(|(_, d)| d).filter(|d| domains.contains(d)) else { continue };
        for r in list.iter().filter(|r| r.available) {
            let mut message = Element::new("message", jabberwock_proto::ns::CLIENT)
                .with_attr("from", domain)
                .with_attr("to", format!("{bare}/{}", r.resource))
                .with_attr("type", "headline");
            if let Some(subject) = subject.filter(|s| !s.is_empty()) {
                message.push(Element::new("subject", jabberwock_proto::ns::CLIENT).with_text(subject));
            }
            message.push(Element::new("body", jabberwock_proto::ns::CLIENT).with_text(text));
            if r.handle.deliver(Stanza::from_element(&message)).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

/// The accounts of `domain` with at least one available resource, sorted.
pub fn online_accounts(server: &Server, domain: &str) -> Vec<String> {
    let mut online: Vec<String> = server
        .sessions
        .all()
        .into_iter()
        .filter(|(bare, list)| bare.rsplit_once('@').is_some_and(|(_, d)| d == domain) && list.iter().any(|r| r.available))
        .map(|(bare, _)| bare)
        .collect();
    online.sort();
    online
}
