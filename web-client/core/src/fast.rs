//! XEP-0484 FAST tokens, client side: a token the server issued to this device signs it
//! in again with HT-SHA-256-NONE (draft-schmaus-kitten-sasl-ht), without the password or
//! the keys derived from it. Each use brings the next token; a used one is refused.
//!
//! Browsers give page scripts no TLS channel binding, so only the -NONE variant is used.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The only token mechanism this client uses.
pub const MECHANISM: &str = "HT-SHA-256-NONE";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastToken {
    pub token: String,
    /// XEP-0082 date-time, as the server sent it.
    pub expiry: String,
}

impl std::fmt::Debug for FastToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("FastToken").field("expiry", &self.expiry).finish_non_exhaustive()
    }
}

fn hmac(token: &str, label: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().to_vec()
}

impl FastToken {
    /// The initial response: `authcid NUL HMAC(token, "Initiator")`.
    pub fn initial_response(&self, username: &str) -> Vec<u8> {
        let mut msg = format!("{username}\0").into_bytes();
        msg.extend(hmac(&self.token, b"Initiator"));
        msg
    }

    /// What the server's `<additional-data/>` must be: it knew the token too.
    pub fn expected_responder(&self) -> Vec<u8> {
        hmac(&self.token, b"Responder")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_and_responder_differ_and_depend_on_the_token() {
        let t = FastToken { token: "secret-token".into(), expiry: "2030-01-01T00:00:00Z".into() };
        let msg = t.initial_response("juliet");
        assert!(msg.starts_with(b"juliet\0"));
        assert_eq!(msg.len(), "juliet\0".len() + 32);
        assert_ne!(&msg[7..], t.expected_responder().as_slice());
        let other = FastToken { token: "other".into(), ..t.clone() };
        assert_ne!(other.expected_responder(), t.expected_responder());
        assert!(!format!("{t:?}").contains("secret"));
    }
}
