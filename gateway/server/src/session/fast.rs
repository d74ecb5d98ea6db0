//! XEP-0484 FAST tokens: a device that signed in with its password may ask for a token
//! and sign in with it next time, without the password or PBKDF2.
//!
//! A token belongs to one account and one device (the SASL2 user-agent id) and to the
//! HT mechanism it was requested for. The server keeps only its hash (see
//! [`jabberwock_sasl::ht`]), in the account's map store under a hash of the device id.
//! Each use replaces it (in the same write that consumes it), so a token that was used
//! once is refused after; a password change drops all of an account's tokens, and a
//! client may invalidate its own.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_sasl::ht::{self, HtExchange, HtMechanism, TokenKey};
use jabberwock_sasl::SaslFailure;
use jabberwock_storage::{StorageError, Store, UserRef, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::server::Server;

/// The map store of an account's tokens, by device.
const STORE: &str = "fast-tokens";

#[derive(Serialize, Deserialize)]
struct StoredToken {
    /// SHA-256 of the token, base64.
    key: String,
    mechanism: String,
    /// Unix seconds.
    expires: i64,
}

/// A token just issued, for `<token/>`.
pub(super) struct Issued {
    pub token: String,
    pub expires: time::OffsetDateTime,
}

/// The map key of a device's token: its user-agent id, hashed to a fixed size.
fn device_key(user_agent_id: &str) -> String {
    Sha256::digest(user_agent_id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Issues a new token for the device, replacing any it had. An account holds at most
/// `auth.max_fast_tokens_per_account`: for a new device beyond that, the tokens that
/// expire first go (expired ones first of all), in the same write.
pub(super) async fn issue(server: &Server, host: &str, user: &str, user_agent_id: &str, mechanism: HtMechanism) -> Result<Issued, StorageError> {
    let u = UserRef { host, user };
    let device = device_key(user_agent_id);
    let (value, issued) = new_token(server, mechanism);
    let mut others: Vec<(String, i64)> = server
        .store
        .map_all(u, STORE)
        .await?
        .into_iter()
        .filter(|(key, _)| *key != device)
        .map(|(key, v)| (key, serde_json::from_slice::<StoredToken>(&v).map_or(i64::MIN, |t| t.expires)))
        .collect();
    let keep = server.config.auth.max_fast_tokens_per_account - 1;
    others.sort_by_key(|(_, expires)| *expires);
    let evicted = others.len().saturating_sub(keep);
    let mut writes: Vec<Write> = others[..evicted].iter().map(|(key, _)| Write::Map { store: STORE, key, value: None }).collect();
    writes.push(Write::Map { store: STORE, key: &device, value: Some(&value) });
    server.store.write_batch(u, &writes).await?;
    Ok(issued)
}

/// A token and its stored form.
fn new_token(server: &Server, mechanism: HtMechanism) -> (Vec<u8>, Issued) {
    let (token, key) = ht::new_token();
    let expires = now() + time::Duration::seconds(server.config.auth.fast_token_lifetime_secs as i64);
    let stored = StoredToken { key: B64.encode(key), mechanism: mechanism.name().to_owned(), expires: expires.unix_timestamp() };
    (serde_json::to_vec(&stored).expect("token serializes"), Issued { token, expires })
}

/// Checks a FAST login and replaces the token it used, in one write: by a new token for
/// `next` (returned), or by nothing when the client invalidates it (`None`). A wrong
/// proof, another device's or mechanism's token, or none at all is `not-authorized`; the
/// right proof with an expired token is `credentials-expired` (and the token goes).
pub(super) async fn verify_and_rotate(
    server: &Server,
    host: &str,
    user: &str,
    user_agent_id: &str,
    exchange: &HtExchange,
    next: Option<HtMechanism>,
) -> Result<(Vec<u8>, Option<Issued>), SaslFailure> {
    let u = UserRef { host, user };
    let device = device_key(user_agent_id);
    let stored = server.store.map_get(u, STORE, &device).await.map_err(|_| SaslFailure::TemporaryAuthFailure)?;
    let stored: Option<StoredToken> = stored.and_then(|v| serde_json::from_slice(&v).ok());
    let Some(stored) = stored.filter(|t| t.mechanism == exchange.mechanism().name()) else {
        return Err(SaslFailure::NotAuthorized);
    };
    let key: TokenKey = B64.decode(&stored.key).ok().and_then(|k| k.try_into().ok()).ok_or(SaslFailure::NotAuthorized)?;
    let responder = exchange.verify(&key).ok_or(SaslFailure::NotAuthorized)?;
    let expired = stored.expires <= now().unix_timestamp();
    // Used once: replaced, whatever follows.
    let (value, issued) = match next.filter(|_| !expired) {
        Some(mechanism) => {
            let (value, issued) = new_token(server, mechanism);
            (Some(value), Some(issued))
        }
        None => (None, None),
    };
    server.store.map_set(u, STORE, &device, value.as_deref()).await.map_err(|_| SaslFailure::TemporaryAuthFailure)?;
    if expired {
        return Err(SaslFailure::CredentialsExpired);
    }
    Ok((responder, issued))
}

/// Drops every token of the account (its password changed).
pub async fn revoke_all(store: &Store, host: &str, user: &str) -> Result<(), StorageError> {
    let u = UserRef { host, user };
    let devices = store.map_all(u, STORE).await?;
    let writes: Vec<Write> = devices.iter().map(|(key, _)| Write::Map { store: STORE, key, value: None }).collect();
    if writes.is_empty() {
        return Ok(());
    }
    store.write_batch(u, &writes).await
}
