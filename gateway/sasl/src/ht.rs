//! The HT-SHA-256 hashed-token mechanisms (draft-schmaus-kitten-sasl-ht), used by FAST
//! (XEP-0484) to sign a returning device in with a token instead of the password.
//!
//! The client sends `authcid NUL HMAC(token, "Initiator" || cb-data)` and gets
//! `HMAC(token, "Responder" || cb-data)` back; `cb-data` is the channel binding the
//! mechanism names (none for -NONE).
//!
//! Tokens are longer than SHA-256's block, so HMAC keys itself with SHA-256(token): the
//! server keeps only that hash ([`TokenKey`]) and never the token. The hash is still a
//! credential for these mechanisms (whoever holds it can sign in until the token expires
//! or rotates), which is why tokens are short-lived and bound to one device.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ChannelBinding, ChannelBindingType, SaslFailure};

/// Random bytes in a token: 80 characters of base64, more than SHA-256's 64-byte block.
const TOKEN_BYTES: usize = 60;

/// SHA-256 of a token: what HMAC keys itself with, and all the server stores.
pub type TokenKey = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HtMechanism {
    /// No channel binding.
    Sha256None,
    /// `tls-exporter` (RFC 9266).
    Sha256Expr,
    /// `tls-server-end-point` (RFC 5929).
    Sha256Endp,
}

impl HtMechanism {
    /// Strongest first. (-UNIQ needs `tls-unique`, which TLS 1.3 does not have and our TLS
    /// stack does not export, so it is never offered.)
    pub const ALL: [HtMechanism; 3] = [HtMechanism::Sha256Expr, HtMechanism::Sha256Endp, HtMechanism::Sha256None];

    pub fn name(self) -> &'static str {
        match self {
            HtMechanism::Sha256None => "HT-SHA-256-NONE",
            HtMechanism::Sha256Expr => "HT-SHA-256-EXPR",
            HtMechanism::Sha256Endp => "HT-SHA-256-ENDP",
        }
    }

    pub fn from_name(name: &str) -> Option<HtMechanism> {
        HtMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn binding(self) -> Option<ChannelBindingType> {
        match self {
            HtMechanism::Sha256None => None,
            HtMechanism::Sha256Expr => Some(ChannelBindingType::TlsExporter),
            HtMechanism::Sha256Endp => Some(ChannelBindingType::TlsServerEndPoint),
        }
    }

    /// The mechanisms a connection with these channel bindings supports.
    pub fn offered(bindings: &[ChannelBindingType]) -> Vec<HtMechanism> {
        HtMechanism::ALL.into_iter().filter(|m| m.binding().is_none_or(|b| bindings.contains(&b))).collect()
    }
}

/// A new token for the client, and the key the server keeps of it.
pub fn new_token() -> (String, TokenKey) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let token = B64URL.encode(bytes);
    let key = token_key(&token);
    (token, key)
}

pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// The client's initial response, parsed: who, and the proof to check with [`HtExchange::verify`].
pub struct HtExchange {
    mechanism: HtMechanism,
    pub username: String,
    proof: Vec<u8>,
    cb_data: Vec<u8>,
}

impl HtExchange {
    /// Parses `authcid NUL proof` and finds the channel binding the mechanism needs on
    /// this connection.
    pub fn parse(mechanism: HtMechanism, msg: &[u8], bindings: &[ChannelBinding]) -> Result<HtExchange, SaslFailure> {
        let nul = msg.iter().position(|b| *b == 0).ok_or(SaslFailure::MalformedRequest)?;
        let (user, proof) = (&msg[..nul], &msg[nul + 1..]);
        if user.is_empty() || user.len() > 1023 || proof.len() != 32 {
            return Err(SaslFailure::MalformedRequest);
        }
        let username = crate::scram::saslprep(std::str::from_utf8(user).map_err(|_| SaslFailure::MalformedRequest)?)?;
        let cb_data = match mechanism.binding() {
            None => Vec::new(),
            Some(kind) => bindings.iter().find(|b| b.kind == kind).map(|b| b.data.clone()).ok_or(SaslFailure::InvalidMechanism)?,
        };
        Ok(HtExchange { mechanism, username, proof: proof.to_vec(), cb_data })
    }

    pub fn mechanism(&self) -> HtMechanism {
        self.mechanism
    }

    /// Checks the proof against `key` (in constant time); on success returns the
    /// responder message for `<additional-data/>`.
    pub fn verify(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let expected = hmac(key, b"Initiator", &self.cb_data);
        bool::from(expected.ct_eq(&self.proof)).then(|| hmac(key, b"Responder", &self.cb_data))
    }
}

fn hmac(key: &[u8], label: &[u8], cb_data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(label);
    mac.update(cb_data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes, keyed with the token itself.
    fn client_proof(token: &str, label: &[u8], cb: &[u8]) -> Vec<u8> {
        hmac(token.as_bytes(), label, cb)
    }

    #[test]
    fn the_stored_hash_verifies_what_the_client_signs_with_the_token() {
        let (token, key) = new_token();
        assert!(token.len() > 64, "a token must be longer than the HMAC block for its hash to be the key");
        let mut msg = b"juliet\0".to_vec();
        msg.extend(client_proof(&token, b"Initiator", b""));
        let ex = HtExchange::parse(HtMechanism::Sha256None, &msg, &[]).unwrap();
        assert_eq!(ex.username, "juliet");
        assert_eq!(ex.verify(&key), Some(client_proof(&token, b"Responder", b"")));
        let (_, other) = new_token();
        assert_eq!(ex.verify(&other), None);
    }

    #[test]
    fn channel_binding_is_part_of_the_proof() {
        let (token, key) = new_token();
        let cb = vec![ChannelBinding { kind: ChannelBindingType::TlsExporter, data: b"exported".to_vec() }];
        let mut msg = b"juliet\0".to_vec();
        msg.extend(client_proof(&token, b"Initiator", b"exported"));
        assert!(HtExchange::parse(HtMechanism::Sha256Expr, &msg, &cb).unwrap().verify(&key).is_some());
        // The same proof without the binding (a relayed login) fails.
        assert!(HtExchange::parse(HtMechanism::Sha256None, &msg, &cb).unwrap().verify(&key).is_none());
        assert_eq!(HtExchange::parse(HtMechanism::Sha256Endp, &msg, &cb).err(), Some(SaslFailure::InvalidMechanism));
    }

    #[test]
    fn malformed_messages() {
        for msg in [&b"no-nul"[..], b"\0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", b"juliet\0short"] {
            assert_eq!(HtExchange::parse(HtMechanism::Sha256None, msg, &[]).err(), Some(SaslFailure::MalformedRequest));
        }
    }

    #[test]
    fn offered_follows_the_bindings() {
        assert_eq!(HtMechanism::offered(&[]), [HtMechanism::Sha256None]);
        assert_eq!(HtMechanism::offered(&[ChannelBindingType::TlsExporter]), [HtMechanism::Sha256Expr, HtMechanism::Sha256None]);
    }
}
