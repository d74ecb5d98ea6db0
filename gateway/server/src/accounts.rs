//! Accounts: creation, passwords and deletion, shared by the CLI, in-band registration
//! and SASL. Only SCRAM salted keys are stored (as JSON), never the password.

use jabberwock_sasl::{derive_credentials, Decoy, StoredCredentials};
use jabberwock_storage::{StorageError, Store, UserRef};

use crate::server::Server;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0:?} is not a valid username")]
    InvalidUsername(String),
    #[error("the password is empty, too long or contains characters SASLprep refuses")]
    InvalidPassword,
    #[error("the account already exists")]
    AlreadyExists,
    #[error("no such account")]
    NotFound,
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for AccountError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::AlreadyExists => AccountError::AlreadyExists,
            StorageError::NotFound => AccountError::NotFound,
            other => AccountError::Storage(other),
        }
    }
}

/// The longest password accepted (as PLAIN's field limit).
const MAX_PASSWORD: usize = 1023;

/// Nodeprep (RFC 7622) of a username; `None` if it cannot be an account's localpart.
pub use jabberwock_proto::localpart::normalize as normalize_user;

/// The stored form of a new password. PBKDF2 takes milliseconds by design, so it runs on
/// the blocking pool, never on a thread that drives other sessions.
async fn credentials_for(password: &str, iterations: u32) -> Result<Vec<u8>, AccountError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(AccountError::InvalidPassword);
    }
    let password = password.to_owned();
    let creds = tokio::task::spawn_blocking(move || derive_credentials(&password, iterations))
        .await
        .map_err(|_| AccountError::InvalidPassword)?
        .map_err(|_| AccountError::InvalidPassword)?;
    Ok(serde_json::to_vec(&creds).expect("credentials serialize"))
}

/// Creates `user@host`; returns the normalized username.
pub async fn create(store: &Store, host: &str, user: &str, password: &str, iterations: u32) -> Result<String, AccountError> {
    let user = normalize_user(user).ok_or_else(|| AccountError::InvalidUsername(user.to_owned()))?;
    let blob = credentials_for(password, iterations).await?;
    store.create_account(UserRef { host, user: &user }, &blob).await?;
    Ok(user)
}

pub async fn set_password(store: &Store, host: &str, user: &str, password: &str, iterations: u32) -> Result<(), AccountError> {
    let user = normalize_user(user).ok_or_else(|| AccountError::InvalidUsername(user.to_owned()))?;
    let blob = credentials_for(password, iterations).await?;
    store.set_account(UserRef { host, user: &user }, &blob).await?;
    // Tokens stood for the old password.
    crate::session::fast::revoke_all(store, host, &user).await?;
    Ok(())
}

/// Deletes the account and all its data.
pub async fn delete(store: &Store, host: &str, user: &str) -> Result<(), AccountError> {
    let user = normalize_user(user).ok_or_else(|| AccountError::InvalidUsername(user.to_owned()))?;
    if store.delete_account(UserRef { host, user: &user }).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

/// The stored SCRAM credentials of a (normalized) user.
pub async fn credentials(server: &Server, host: &str, user: &str) -> Result<Option<StoredCredentials>, StorageError> {
    let blob = server.store.get_account(UserRef { host, user }).await?;
    Ok(blob.and_then(|b| serde_json::from_slice(&b).ok()))
}

pub async fn exists(server: &Server, host: &str, user: &str) -> bool {
    matches!(server.store.get_account(UserRef { host, user }).await, Ok(Some(_)))
}

/// Where the secret behind the decoy salts is kept: the server's own scope, not a domain's.
const DECOY_SECRET: (UserRef<'static>, &str) = (UserRef { host: "", user: "" }, "sasl-decoy-secret");

/// What SASL shows for usernames without an account (see [`Decoy`]), with the secret
/// stored on first use so the salts stay the same across restarts.
pub async fn decoy(store: &Store, iterations: u32) -> Result<Decoy, StorageError> {
    let (scope, key) = DECOY_SECRET;
    let stored = store.kv_get(scope, key).await?.and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok());
    let secret = match stored {
        Some(secret) => secret,
        None => {
            let secret = Decoy::generate_secret();
            store.kv_set(scope, key, Some(&secret)).await?;
            secret
        }
    };
    Ok(Decoy::new(secret, iterations))
}
