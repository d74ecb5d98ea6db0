//! The client side of SCRAM (RFC 5802) with SHA-1 and SHA-256 (RFC 7677), without channel
//! binding: a browser page cannot see the TLS layer, so the GS2 header is always `n,,`.
//!
//! The caller supplies the client nonce; this module never touches a random source.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Fewer PBKDF2 rounds than this make a stolen server key cheap to attack; more than the
/// maximum would let a hostile server freeze the page.
pub const MIN_ITERATIONS: u32 = 1;
pub const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    pub fn from_mechanism(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-1" => Some(ScramHash::Sha1),
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("the password contains characters that SASLprep forbids")]
    InvalidPassword,
    #[error("the user name contains characters that SASLprep forbids")]
    InvalidUsername,
    #[error("the server's challenge is malformed")]
    MalformedChallenge,
    #[error("the server's nonce does not extend ours")]
    NonceMismatch,
    #[error("the server asked for {0} PBKDF2 iterations, outside the accepted range")]
    IterationCount(u32),
    #[error("the server reported an error: {0}")]
    ServerError(String),
    #[error("the server's signature is wrong: it does not know the password")]
    BadServerSignature,
    #[error("the exchange is not at the step that accepts this message")]
    OutOfOrder,
    /// Kept keys no longer fit: the server salts the password differently now (it was
    /// changed, say). Only the password can sign in.
    #[error("the saved sign-in keys are out of date")]
    KeysOutdated,
}

/// What SCRAM derives from the password for one salt and iteration count (RFC 5802 §3):
/// enough to sign in again to this server without the password, which they do not reveal.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub client_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys").field("hash", &self.hash).field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// What proves who we are: the password, or keys derived from it earlier.
enum Secret {
    Password(String),
    Keys(ScramKeys),
}

enum Step {
    Initial,
    /// `client-first-message` sent.
    SentFirst,
    /// `client-final-message` sent; the expected server signature is kept.
    SentFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

/// One SCRAM exchange, from `client-first-message` to the check of the server signature.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    secret: Secret,
    nonce: String,
    step: Step,
    /// The keys of this exchange, once the server's salt is known.
    keys: Option<ScramKeys>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ScramClient").field("hash", &self.hash).field("username", &self.username).finish_non_exhaustive()
    }
}

impl ScramClient {
    /// `nonce` must be printable ASCII without `,` (for example base64 of 18+ random bytes).
    pub fn new(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Result<Self, ScramError> {
        let username = stringprep::saslprep(username).map_err(|_| ScramError::InvalidUsername)?.into_owned();
        let password = stringprep::saslprep(password).map_err(|_| ScramError::InvalidPassword)?.into_owned();
        Self::with_secret(hash, username, Secret::Password(password), nonce)
    }

    /// Signs in with keys a previous exchange derived ([`ScramClient::keys`]); fails with
    /// [`ScramError::KeysOutdated`] if the server's salt or iteration count changed since.
    pub fn with_keys(username: &str, keys: ScramKeys, nonce: &str) -> Result<Self, ScramError> {
        let username = stringprep::saslprep(username).map_err(|_| ScramError::InvalidUsername)?.into_owned();
        Self::with_secret(keys.hash, username, Secret::Keys(keys), nonce)
    }

    fn with_secret(hash: ScramHash, username: String, secret: Secret, nonce: &str) -> Result<Self, ScramError> {
        debug_assert!(nonce.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b','), "nonce must be printable without ','");
        Ok(ScramClient { hash, username, secret, nonce: nonce.to_owned(), step: Step::Initial, keys: None })
    }

    /// The keys derived in this exchange (after [`ScramClient::client_final`]), to sign
    /// in again later without the password.
    pub fn keys(&self) -> Option<&ScramKeys> {
        self.keys.as_ref()
    }

    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", escape_saslname(&self.username), self.nonce)
    }

    /// The `client-first-message`, as sent in `<auth/>`.
    pub fn client_first(&mut self) -> String {
        self.step = Step::SentFirst;
        format!("n,,{}", self.client_first_bare())
    }

    /// Answers the `server-first-message` with the `client-final-message`.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        if !matches!(self.step, Step::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        let attrs = parse_attrs(server_first)?;
        if let Some(e) = find(&attrs, 'e') {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        if find(&attrs, 'm').is_some() {
            return Err(ScramError::MalformedChallenge);
        }
        let nonce = find(&attrs, 'r').ok_or(ScramError::MalformedChallenge)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt =
            B64.decode(find(&attrs, 's').ok_or(ScramError::MalformedChallenge)?).map_err(|_| ScramError::MalformedChallenge)?;
        let iterations: u32 =
            find(&attrs, 'i').ok_or(ScramError::MalformedChallenge)?.parse().map_err(|_| ScramError::MalformedChallenge)?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::IterationCount(iterations));
        }

        let h = self.hash;
        let keys = match &self.secret {
            Secret::Password(password) => {
                let salted = h.salted_password(password.as_bytes(), &salt, iterations);
                let (client_key, server_key) = (h.hmac(&salted, b"Client Key"), h.hmac(&salted, b"Server Key"));
                ScramKeys { hash: h, salt, iterations, client_key, server_key }
            }
            Secret::Keys(k) if k.salt == salt && k.iterations == iterations => k.clone(),
            Secret::Keys(_) => return Err(ScramError::KeysOutdated),
        };
        let client_key = &keys.client_key;
        let stored_key = h.hash(client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare(), server_first, without_proof);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        let server_signature = h.hmac(&keys.server_key, auth_message.as_bytes());
        self.keys = Some(keys);
        self.step = Step::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the `server-final-message` (from `<success/>` or a last challenge).
    pub fn verify_server_final(&mut self, server_final: &str) -> Result<(), ScramError> {
        let Step::SentFinal { server_signature } = &self.step else { return Err(ScramError::OutOfOrder) };
        let attrs = parse_attrs(server_final)?;
        if let Some(e) = find(&attrs, 'e') {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let v =
            B64.decode(find(&attrs, 'v').ok_or(ScramError::MalformedChallenge)?).map_err(|_| ScramError::MalformedChallenge)?;
        if !constant_time_eq(&v, server_signature) {
            return Err(ScramError::BadServerSignature);
        }
        self.step = Step::Done;
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        matches!(self.step, Step::Done)
    }
}

/// A client nonce from random bytes (18 or more): base64, which has no `,`.
pub fn nonce_from_bytes(random: &[u8]) -> String {
    B64.encode(random)
}

/// RFC 5802 §5.1: `=` and `,` in a user name are escaped as `=3D` and `=2C`.
pub fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn parse_attrs(msg: &str) -> Result<Vec<(char, &str)>, ScramError> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(ScramError::MalformedChallenge),
            }
        })
        .collect()
}

fn find<'a>(attrs: &[(char, &'a str)], key: char) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 §5: user "user", password "pencil".
    #[test]
    fn rfc5802_sha1_vector() {
        let mut c = ScramClient::new(ScramHash::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        assert_eq!(
            c.client_final(server_first).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        assert!(c.is_done());
    }

    /// RFC 7677 §3: user "user", password "pencil".
    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            c.client_final(server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
    }

    /// The keys of one exchange sign in again without the password, to the same salt only.
    #[test]
    fn derived_keys_sign_in_without_the_password() {
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let mut c = ScramClient::new(ScramHash::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert!(c.keys().is_none());
        c.client_first();
        let with_password = c.client_final(server_first).unwrap();
        let keys = c.keys().unwrap().clone();
        assert!(!format!("{keys:?}").contains("client_key"), "keys are not printed");

        let mut k = ScramClient::with_keys("user", keys.clone(), "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        k.client_first();
        assert_eq!(k.client_final(server_first).unwrap(), with_password);
        k.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        assert!(k.is_done());

        let mut k = ScramClient::with_keys("user", keys, "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        k.client_first();
        let resalted = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=AAAAR+Q6sek8bf92,i=4096";
        assert_eq!(k.client_final(resalted), Err(ScramError::KeysOutdated));
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut c = ScramClient::new(ScramHash::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL").unwrap();
        c.client_first();
        c.client_final("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
        assert_eq!(c.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="), Err(ScramError::BadServerSignature));
        assert!(!c.is_done());
    }

    #[test]
    fn hostile_challenges_are_refused() {
        let fresh = || {
            let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc").unwrap();
            c.client_first();
            c
        };
        // The server must extend our nonce, not replace or merely echo it.
        assert_eq!(fresh().client_final("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"), Err(ScramError::NonceMismatch));
        assert_eq!(fresh().client_final("r=abc,s=QSXCR+Q6sek8bf92,i=4096"), Err(ScramError::NonceMismatch));
        assert_eq!(fresh().client_final("r=abcdef,s=QSXCR+Q6sek8bf92,i=0"), Err(ScramError::IterationCount(0)));
        assert_eq!(fresh().client_final("r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999"), Err(ScramError::IterationCount(99_999_999)));
        assert_eq!(fresh().client_final("r=abcdef,s=!!!,i=4096"), Err(ScramError::MalformedChallenge));
        assert_eq!(fresh().client_final("garbage"), Err(ScramError::MalformedChallenge));
        assert_eq!(fresh().client_final("m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"), Err(ScramError::MalformedChallenge));
        assert_eq!(fresh().client_final("e=other-error"), Err(ScramError::ServerError("other-error".into())));
        // Steps out of order.
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc").unwrap();
        assert_eq!(c.client_final("r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"), Err(ScramError::OutOfOrder));
        assert_eq!(c.verify_server_final("v=AAAA"), Err(ScramError::OutOfOrder));
    }

    #[test]
    fn user_names_are_escaped_and_passwords_prepared() {
        let mut c = ScramClient::new(ScramHash::Sha256, "a=b,c", "pencil", "n0nce").unwrap();
        assert_eq!(c.client_first(), "n,,n=a=3Db=2Cc,r=n0nce");
        // SASLprep maps non-ASCII spaces to a space; forbids control characters.
        assert!(ScramClient::new(ScramHash::Sha256, "user", "pass\u{7}word", "n").is_err());
        let mut a = ScramClient::new(ScramHash::Sha256, "user", "pen\u{00A0}cil", "abc").unwrap();
        let mut b = ScramClient::new(ScramHash::Sha256, "user", "pen cil", "abc").unwrap();
        a.client_first();
        b.client_first();
        let first = "r=abcdef,s=QSXCR+Q6sek8bf92,i=4096";
        assert_eq!(a.client_final(first), b.client_final(first));
    }

    #[test]
    fn nonces_are_printable_without_commas() {
        let n = nonce_from_bytes(&[0xff; 18]);
        assert_eq!(n.len(), 24);
        assert!(n.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b','));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = ScramClient::new(ScramHash::Sha1, "user", "hunter2", "abc").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
