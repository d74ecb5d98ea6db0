//! SCRAM (RFC 5802, RFC 7677) on the server side, with channel binding for -PLUS.

use serde::{Deserialize, Serialize};

use crate::{ChannelBinding, SaslFailure};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

/// What the server keeps for one hash: never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// An account's credentials for every SCRAM hash we offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub sha1: ScramCredentials,
    pub sha256: ScramCredentials,
}

impl StoredCredentials {
    pub fn for_alg(&self, alg: HashAlg) -> &ScramCredentials {
        match alg {
            HashAlg::Sha1 => &self.sha1,
            HashAlg::Sha256 => &self.sha256,
        }
    }
}

/// SASLprep(password), then a fresh random salt per hash and `iterations` rounds of PBKDF2.
pub fn derive_credentials(_password: &str, _iterations: u32) -> Result<StoredCredentials, SaslFailure> {
    todo!()
}

/// What the client-first message tells the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// The authentication identity: SASLprepped, with `=2C`/`=3D` decoded.
    pub username: String,
    /// The authorization identity, if the client sent one.
    pub authzid: Option<String>,
}

/// One SCRAM exchange: `client_first` → `server_first` → `client_final`.
pub struct ScramServer {
    _alg: HashAlg,
}

impl ScramServer {
    /// `plus`: the -PLUS variant was chosen. `bindings`: what this connection can offer
    /// (empty without TLS); a client that says `y` while bindings exist is refused as a
    /// downgrade.
    pub fn new(alg: HashAlg, _plus: bool, _bindings: Vec<ChannelBinding>) -> Self {
        ScramServer { _alg: alg }
    }

    pub fn client_first(&mut self, _msg: &[u8]) -> Result<ClientFirst, SaslFailure> {
        todo!()
    }

    /// The server-first message. `None` for an unknown user: a deterministic fake salt is
    /// used so the reply does not reveal whether the account exists, and the exchange then
    /// fails with `not-authorized`.
    pub fn server_first(&mut self, _creds: Option<&ScramCredentials>) -> Vec<u8> {
        todo!()
    }

    /// Checks the proof and the channel binding; returns the server-final message
    /// (`v=…`) to send in `<success/>`.
    pub fn client_final(&mut self, _msg: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        todo!()
    }
}
