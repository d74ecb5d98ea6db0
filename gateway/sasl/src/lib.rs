//! Server-side SASL mechanisms, without I/O.
//!
//! The session drives an exchange step by step and looks up credentials between steps, so
//! nothing here blocks or touches storage.
//!
//! Interface (implemented in `scram.rs` and `plain.rs`):
//! * [`derive_credentials`]: password → [`StoredCredentials`] (salted keys for SHA-1 and
//!   SHA-256). The password itself is never stored.
//! * [`Mechanism`]: the names we offer and which ones a connection may use.
//! * [`ScramServer`]: the SCRAM exchange (RFC 5802, RFC 7677), with channel binding for the
//!   -PLUS variants (RFC 9266 `tls-exporter`, RFC 5929 `tls-server-end-point`).
//! * [`ht`]: the HT-SHA-256 hashed-token mechanisms of FAST (XEP-0484).
//! * [`downgrade_protection_string`]: what XEP-0474 hashes into SCRAM's server-first.
//! * [`plain`]: parsing the PLAIN message and checking it against stored credentials.

pub mod ht;
mod mechanism;
pub mod plain;
mod scram;

pub use mechanism::Mechanism;
pub use scram::{
    derive_credentials, downgrade_protection_string, ClientFirst, Decoy, HashAlg, ScramCredentials, ScramServer, StoredCredentials, DEFAULT_ITERATIONS,
};

/// Channel-binding data the transport can provide for this connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelBinding {
    pub kind: ChannelBindingType,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBindingType {
    TlsExporter,
    TlsServerEndPoint,
}

impl ChannelBindingType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }
}

/// RFC 6120 §6.5 SASL failure conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslFailure {
    #[error("aborted")]
    Aborted,
    #[error("account-disabled")]
    AccountDisabled,
    #[error("credentials-expired")]
    CredentialsExpired,
    #[error("encryption-required")]
    EncryptionRequired,
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    #[error("invalid-authzid")]
    InvalidAuthzid,
    #[error("invalid-mechanism")]
    InvalidMechanism,
    #[error("malformed-request")]
    MalformedRequest,
    #[error("mechanism-too-weak")]
    MechanismTooWeak,
    #[error("not-authorized")]
    NotAuthorized,
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name of the condition inside `<failure/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}
