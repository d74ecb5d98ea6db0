//! SASL PLAIN (RFC 4616): offered only over TLS.

use crate::{ScramCredentials, SaslFailure};

/// The three fields of a PLAIN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: Option<String>,
    /// SASLprepped.
    pub username: String,
    pub password: String,
}

pub fn parse(_msg: &[u8]) -> Result<PlainMessage, SaslFailure> {
    todo!()
}

/// Checks a password against stored SCRAM credentials, in constant time.
pub fn verify(_password: &str, _creds: &ScramCredentials) -> bool {
    todo!()
}
