//! What an administrator does to a running server, whether from the control socket
//! (`jabberwock passwd`, `announce`…) or over XMPP (XEP-0133): account changes that also
//! end the sessions they concern, announcements, who is online.

use std::sync::Arc;

use jabberwock_proto::{Element, Stanza, StreamError, StreamErrorCondition};

use crate::accounts::{self, AccountError};
use crate::server::Server;

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
