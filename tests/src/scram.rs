//! A minimal SCRAM-SHA-256 client (RFC 5802), written against the RFC rather than the
//! server's code, to check whole exchanges, channel binding included, end to end.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub struct Client {
    pub gs2: String,
    pub cb_data: Vec<u8>,
    pub first_bare: String,
}

impl Client {
    pub fn new(user: &str, gs2: &str, cb_data: Vec<u8>) -> Self {
        Client { gs2: gs2.to_owned(), cb_data, first_bare: format!("n={user},r=clientnonce0123456789") }
    }

    pub fn first(&self) -> String {
        B64.encode(format!("{}{}", self.gs2, self.first_bare))
    }

    /// The client-final message for the server-first message.
    pub fn last(&self, server_first_b64: &str, password: &str) -> String {
        let server_first = String::from_utf8(B64.decode(server_first_b64.trim()).unwrap()).unwrap();
        let field = |k: &str| server_first.split(',').find_map(|f| f.strip_prefix(k)).unwrap().to_owned();
        let (nonce, salt, iters) = (field("r="), B64.decode(field("s=")).unwrap(), field("i=").parse::<u32>().unwrap());
        let mut cbind = self.gs2.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iters, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        B64.encode(format!("{without_proof},p={}", B64.encode(proof)))
    }
}
