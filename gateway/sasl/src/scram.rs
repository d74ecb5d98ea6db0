//! SCRAM (RFC 5802, RFC 7677) on the server side, with channel binding for -PLUS.
//!
//! Failure conditions, so the session can map them to `<failure/>`:
//! * `malformed-request`: the message breaks the SCRAM grammar or the exchange order (this
//!   includes a -PLUS exchange whose client does not send `p=`, and `p=` sent on a mechanism
//!   without -PLUS).
//! * `incorrect-encoding`: `c=` or `p=` in client-final is not valid base64.
//! * `not-authorized`: well-formed but refused: wrong proof, unknown user, a channel-binding
//!   type this connection cannot provide, mismatched channel-binding data or nonce, and `y`
//!   while the connection supports channel binding (a downgrade).

use std::mem;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ChannelBinding, SaslFailure};

/// The smallest iteration count RFC 7677 allows, and our default.
pub const DEFAULT_ITERATIONS: u32 = 4096;

const SALT_LEN: usize = 16;
/// Random bytes in our part of the nonce; base64 turns them into 32 printable characters.
const NONCE_BYTES: usize = 24;
/// Real client messages are well under 1 KiB; the cap bounds what we keep and hash.
const MAX_MESSAGE_LEN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
        }
    }

    /// A StoredKey is a hash output, so its length tells which hash produced it.
    pub(crate) fn from_key_len(len: usize) -> Option<HashAlg> {
        [HashAlg::Sha1, HashAlg::Sha256].into_iter().find(|alg| alg.output_len() == len)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail.
        const ANY_KEY: &str = "HMAC accepts any key length";
        match self {
            HashAlg::Sha1 => {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).expect(ANY_KEY);
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            HashAlg::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect(ANY_KEY);
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// RFC 5802 Hi(), which is PBKDF2 with HMAC as the PRF and one output block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// What the server keeps for one hash: never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// The RFC 5802 §3 keys for a password that has already been SASLprepped.
    pub(crate) fn compute(alg: HashAlg, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted_password = alg.hi(password.as_bytes(), salt, iterations);
        let client_key = alg.hmac(&salted_password, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: alg.hash(&client_key),
            server_key: alg.hmac(&salted_password, b"Server Key"),
        }
    }
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
///
/// Any `iterations >= 1` is accepted (0 is `malformed-request`); the server should pass
/// [`DEFAULT_ITERATIONS`] or more. A password SASLprep rejects, or one that prepares to
/// nothing, is `malformed-request`.
pub fn derive_credentials(password: &str, iterations: u32) -> Result<StoredCredentials, SaslFailure> {
    if iterations == 0 {
        return Err(SaslFailure::MalformedRequest);
    }
    let password = saslprep(password)?;
    let derive = |alg| ScramCredentials::compute(alg, &password, &random_bytes(SALT_LEN), iterations);
    Ok(StoredCredentials { sha1: derive(HashAlg::Sha1), sha256: derive(HashAlg::Sha256) })
}

/// SASLprep (RFC 4013); an error or an empty result is `malformed-request`.
pub(crate) fn saslprep(s: &str) -> Result<String, SaslFailure> {
    match stringprep::saslprep(s) {
        Ok(prepped) if !prepped.is_empty() => Ok(prepped.into_owned()),
        _ => Err(SaslFailure::MalformedRequest),
    }
}

/// XEP-0474's string of what was offered: the mechanism names sorted and joined by U+001E,
/// then, when channel-binding types were announced (XEP-0440), U+001F and the types sorted
/// and joined the same way.
pub fn downgrade_protection_string(mechanisms: &[&str], bindings: Option<&[&str]>) -> String {
    let sorted_joined = |items: &[&str]| {
        let mut items = items.to_vec();
        items.sort_unstable();
        items.join("\u{1e}")
    };
    let mut s = sorted_joined(mechanisms);
    if let Some(bindings) = bindings {
        s.push('\u{1f}');
        s.push_str(&sorted_joined(bindings));
    }
    s
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// What a username without an account is shown, so that it cannot be told from a real
/// account: a salt stable for the name, unpredictable without the server's secret (kept
/// across restarts, so reconnecting shows no change), and the iteration count new
/// passwords get (accounts derived with another count stand out through `i=` anyway).
#[derive(Clone)]
pub struct Decoy {
    secret: [u8; 32],
    iterations: u32,
}

impl Decoy {
    pub fn new(secret: [u8; 32], iterations: u32) -> Decoy {
        Decoy { secret, iterations }
    }

    /// A new random secret, for a server that has none stored yet.
    pub fn generate_secret() -> [u8; 32] {
        let mut secret = [0; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    }

    fn salt(&self, alg: HashAlg, username: &str) -> Vec<u8> {
        // Keyed by the hash as well, so the SHA-1 and SHA-256 salts differ as real ones do.
        let mut input = vec![alg as u8];
        input.extend_from_slice(username.as_bytes());
        let mut salt = HashAlg::Sha256.hmac(&self.secret, &input);
        salt.truncate(SALT_LEN);
        salt
    }

    /// Credentials no password matches, shaped like a real account's: checking a PLAIN
    /// password against them takes as long as checking a real one.
    pub fn credentials(&self, alg: HashAlg, username: &str) -> ScramCredentials {
        let len = alg.hmac(b"", b"").len();
        ScramCredentials { salt: self.salt(alg, username), iterations: self.iterations, stored_key: vec![0; len], server_key: vec![0; len] }
    }
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
    alg: HashAlg,
    plus: bool,
    bindings: Vec<ChannelBinding>,
    /// XEP-0474: what was offered, hashed into server-first's `d=`.
    offered: Option<String>,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingServerFirst(Exchange),
    AwaitingClientFinal {
        exchange: Exchange,
        server_first: String,
        creds: Option<ScramCredentials>,
    },
    /// Finished, successfully or not: every further call is out of order.
    Done,
}

/// What client-first fixed for the rest of the exchange.
struct Exchange {
    username: String,
    client_first_bare: String,
    /// The client's nonce; from server-first on, with ours appended.
    nonce: String,
    /// What `c=` must decode to: the gs2 header as sent, then the channel-binding data.
    cbind_input: Vec<u8>,
}

impl ScramServer {
    /// `plus`: the -PLUS variant was chosen. `bindings`: what this connection can offer
    /// (empty without TLS); a client that says `y` while bindings exist is refused as a
    /// downgrade. Pass the connection's bindings for the non-PLUS mechanisms too, since that
    /// is how the downgrade is noticed.
    pub fn new(alg: HashAlg, plus: bool, bindings: Vec<ChannelBinding>) -> Self {
        ScramServer { alg, plus, bindings, offered: None, state: State::AwaitingClientFirst }
    }

    /// XEP-0474 downgrade protection: server-first carries `d=`, the hash of what was
    /// offered (see [`downgrade_protection_string`]), so a client can tell whether someone
    /// removed mechanisms or channel-binding types from what it saw.
    pub fn with_downgrade_protection(mut self, offered: String) -> Self {
        self.offered = Some(offered);
        self
    }

    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, SaslFailure> {
        // Whatever fails below ends the exchange.
        let State::AwaitingClientFirst = mem::replace(&mut self.state, State::Done) else {
            return Err(SaslFailure::MalformedRequest);
        };
        let msg = message_text(msg)?;
        // Neither header field can contain a comma (saslname escapes it), so this split is exact.
        let mut fields = msg.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(SaslFailure::MalformedRequest);
        };
        let cb_data = self.binding_data(flag)?;
        let authzid = match authzid {
            "" => None,
            a => Some(decode_saslname(a.strip_prefix("a=").ok_or(SaslFailure::MalformedRequest)?)?),
        };

        let mut attrs = bare.split(',');
        // A leading `m=` (a mandatory extension; we know none) fails here too.
        let username = saslprep(&decode_saslname(attr(attrs.next(), 'n')?)?)?;
        let nonce = attr(attrs.next(), 'r')?;
        // RFC 5802 §5.1: printable ASCII except ','.
        if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(SaslFailure::MalformedRequest);
        }
        check_extensions(attrs)?;

        let mut cbind_input = msg.as_bytes()[..msg.len() - bare.len()].to_vec();
        cbind_input.extend_from_slice(cb_data);
        self.state = State::AwaitingServerFirst(Exchange {
            username: username.clone(),
            client_first_bare: bare.to_owned(),
            nonce: nonce.to_owned(),
            cbind_input,
        });
        Ok(ClientFirst { username, authzid })
    }

    /// Applies the gs2 channel-binding flag; returns the binding data `c=` must carry.
    fn binding_data(&self, flag: &str) -> Result<&[u8], SaslFailure> {
        match flag {
            "n" if !self.plus => Ok(&[]),
            // `y`: the client could bind but thinks we cannot. We can, so someone removed
            // the -PLUS mechanisms from what the client saw.
            "y" if !self.plus => match self.bindings.is_empty() {
                true => Ok(&[]),
                false => Err(SaslFailure::NotAuthorized),
            },
            _ => {
                let name = flag.strip_prefix("p=").ok_or(SaslFailure::MalformedRequest)?;
                let valid_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !self.plus || !valid_name {
                    return Err(SaslFailure::MalformedRequest);
                }
                self.bindings
                    .iter()
                    .find(|b| b.kind.as_str() == name)
                    .map(|b| b.data.as_slice())
                    .ok_or(SaslFailure::NotAuthorized)
            }
        }
    }

    /// The server-first message. `None` for an unknown user: a deterministic fake salt is
    /// used so the reply does not reveal whether the account exists, and the exchange then
    /// fails with `not-authorized`.
    ///
    /// Called out of order, it returns an empty message and ends the exchange, so the next
    /// step fails with `malformed-request`.
    pub fn server_first(&mut self, creds: Option<&ScramCredentials>, decoy: &Decoy) -> Vec<u8> {
        self.server_first_with_nonce(creds, decoy, &B64.encode(random_bytes(NONCE_BYTES)))
    }

    /// `server_first` with our part of the nonce given, so the RFC test vectors can be replayed.
    fn server_first_with_nonce(&mut self, creds: Option<&ScramCredentials>, decoy: &Decoy, server_nonce: &str) -> Vec<u8> {
        let State::AwaitingServerFirst(mut exchange) = mem::replace(&mut self.state, State::Done) else {
            return Vec::new();
        };
        let (salt, iterations) = match creds {
            Some(c) => (B64.encode(&c.salt), c.iterations),
            None => (B64.encode(decoy.salt(self.alg, &exchange.username)), decoy.iterations),
        };
        exchange.nonce.push_str(server_nonce);
        let mut server_first = format!("r={},s={salt},i={iterations}", exchange.nonce);
        if let Some(offered) = &self.offered {
            server_first.push_str(",d=");
            server_first.push_str(&B64.encode(self.alg.hash(offered.as_bytes())));
        }
        let reply = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal { exchange, server_first, creds: creds.cloned() };
        reply
    }

    /// Checks the proof and the channel binding; returns the server-final message
    /// (`v=…`) to send in `<success/>`.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        let State::AwaitingClientFinal { exchange, server_first, creds } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        let msg = message_text(msg)?;
        // The proof must come last: it signs everything before it.
        let (without_proof, proof) = msg.rsplit_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let proof = proof.strip_prefix("p=").ok_or(SaslFailure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let cbind_input = attr(attrs.next(), 'c')?;
        let nonce = attr(attrs.next(), 'r')?;
        check_extensions(attrs)?;
        let cbind_input = decode_b64(cbind_input)?;
        let proof = decode_b64(proof)?;

        // `c=` ties the proof to the gs2 header the client sent and, for -PLUS, to this TLS
        // channel: a mismatch means tampering or a man in the middle.
        if cbind_input != exchange.cbind_input || nonce != exchange.nonce {
            return Err(SaslFailure::NotAuthorized);
        }
        if proof.len() != self.alg.output_len() {
            return Err(SaslFailure::MalformedRequest);
        }
        let Some(creds) = creds else {
            return Err(SaslFailure::NotAuthorized);
        };

        let auth_message = format!("{},{server_first},{without_proof}", exchange.client_first_bare);
        let client_signature = self.alg.hmac(&creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.alg.hash(&client_key).ct_eq(&creds.stored_key)) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = self.alg.hmac(&creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

fn message_text(msg: &[u8]) -> Result<&str, SaslFailure> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(SaslFailure::MalformedRequest);
    }
    std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)
}

/// The value of a required `<name>=<value>` attribute, which must be non-empty.
fn attr(field: Option<&str>, name: char) -> Result<&str, SaslFailure> {
    field
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('='))
        .filter(|value| !value.is_empty())
        .ok_or(SaslFailure::MalformedRequest)
}

/// Optional extensions may be ignored, but must be well-formed; `m=` marks one we would have
/// to understand, and we understand none.
fn check_extensions<'a>(mut attrs: impl Iterator<Item = &'a str>) -> Result<(), SaslFailure> {
    let well_formed = |a: &str| {
        let b = a.as_bytes();
        b.len() > 2 && b[0].is_ascii_alphabetic() && b[0] != b'm' && b[1] == b'=' && !b.contains(&0)
    };
    match attrs.all(well_formed) {
        true => Ok(()),
        false => Err(SaslFailure::MalformedRequest),
    }
}

/// Undoes the saslname escaping: `=2C` is ',' and `=3D` is '='; any other '=' is an error.
fn decode_saslname(s: &str) -> Result<String, SaslFailure> {
    if s.is_empty() || s.contains('\0') {
        return Err(SaslFailure::MalformedRequest);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escaped = match rest.get(i + 1..i + 3) {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(SaslFailure::MalformedRequest),
        };
        out.push(escaped);
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn decode_b64(s: &str) -> Result<Vec<u8>, SaslFailure> {
    B64.decode(s).map_err(|_| SaslFailure::IncorrectEncoding)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ChannelBindingType;

    /// The decoy of a server with a fixed secret.
    fn decoy() -> Decoy {
        Decoy::new([7; 32], DEFAULT_ITERATIONS)
    }

    /// The client side of the last step: given everything the client sent and received, the
    /// client-final message and the server-final message it should get back.
    fn client_final(
        alg: HashAlg,
        password: &str,
        client_first: &str,
        cb_data: &[u8],
        server_first: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64.decode(fields.next().unwrap().strip_prefix("s=").unwrap()).unwrap();
        let iterations = fields.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();

        // The gs2 header ends after its second comma.
        let header_len = client_first.match_indices(',').nth(1).unwrap().0 + 1;
        let (gs2_header, bare) = client_first.split_at(header_len);
        let mut cbind_input = gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind_input));
        let auth_message = format!("{bare},{server_first},{without_proof}");

        let salted_password = alg.hi(password.as_bytes(), &salt, iterations);
        let client_key = alg.hmac(&salted_password, b"Client Key");
        let signature = alg.hmac(&alg.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = alg.hmac(&salted_password, b"Server Key");
        let server_signature = alg.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        )
    }

    fn exporter(data: &[u8]) -> Vec<ChannelBinding> {
        vec![ChannelBinding { kind: ChannelBindingType::TlsExporter, data: data.to_vec() }]
    }

    /// Runs a whole exchange as a client with `password` would, against `stored`.
    fn exchange(
        mut server: ScramServer,
        alg: HashAlg,
        stored: Option<&StoredCredentials>,
        password: &str,
        client_first: &str,
        cb_data: &[u8],
    ) -> Result<Vec<u8>, SaslFailure> {
        server.client_first(client_first.as_bytes())?;
        let server_first = server.server_first(stored.map(|s| s.for_alg(alg)), &decoy());
        let (msg, expected) = client_final(alg, password, client_first, cb_data, &server_first);
        let reply = server.client_final(&msg)?;
        assert_eq!(reply, expected, "server signature");
        Ok(reply)
    }

    fn server_first_fields(msg: &[u8]) -> (String, Vec<u8>, String) {
        let msg = String::from_utf8(msg.to_vec()).unwrap();
        let fields: Vec<&str> = msg.split(',').collect();
        assert_eq!(fields.len(), 3, "{msg}");
        let nonce = fields[0].strip_prefix("r=").unwrap().to_owned();
        let salt = B64.decode(fields[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations = fields[2].strip_prefix("i=").unwrap().to_owned();
        (nonce, salt, iterations)
    }

    #[test]
    fn rfc5802_sha1_vector() {
        let mut server = ScramServer::new(HashAlg::Sha1, false, Vec::new());
        let first = server.client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first, ClientFirst { username: "user".into(), authzid: None });
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = ScramCredentials::compute(HashAlg::Sha1, "pencil", &salt, 4096);
        assert_eq!(
            server.server_first_with_nonce(Some(&creds), &decoy(), "3rfcNHYJY1ZVvWVs7j"),
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let reply = server
            .client_final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(reply, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        server.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = ScramCredentials::compute(HashAlg::Sha256, "pencil", &salt, 4096);
        assert_eq!(
            server.server_first_with_nonce(Some(&creds), &decoy(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let reply = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn downgrade_protection_hash_is_in_server_first() {
        let offered = downgrade_protection_string(&["SCRAM-SHA-256", "PLAIN", "SCRAM-SHA-256-PLUS"], Some(&["tls-server-end-point", "tls-exporter"]));
        assert_eq!(offered, "PLAIN\u{1e}SCRAM-SHA-256\u{1e}SCRAM-SHA-256-PLUS\u{1f}tls-exporter\u{1e}tls-server-end-point");
        assert_eq!(downgrade_protection_string(&["SCRAM-SHA-1", "PLAIN"], None), "PLAIN\u{1e}SCRAM-SHA-1");
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new()).with_downgrade_protection(offered.clone());
        server.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = ScramCredentials::compute(HashAlg::Sha256, "pencil", &salt, 4096);
        let first = String::from_utf8(server.server_first_with_nonce(Some(&creds), &decoy(), "x")).unwrap();
        let d = first.rsplit_once(",d=").expect("d= attribute").1;
        assert_eq!(B64.decode(d).unwrap(), Sha256::digest(offered.as_bytes()).to_vec());
    }

    #[test]
    fn rfc_vector_with_a_wrong_proof_fails() {
        let mut server = ScramServer::new(HashAlg::Sha1, false, Vec::new());
        server.client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = ScramCredentials::compute(HashAlg::Sha1, "pencil", &salt, 4096);
        server.server_first_with_nonce(Some(&creds), &decoy(), "3rfcNHYJY1ZVvWVs7j");
        let result =
            server.client_final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert_eq!(result, Err(SaslFailure::NotAuthorized));
    }

    #[test]
    fn derive_credentials_shape() {
        let a = derive_credentials("pencil", 4096).unwrap();
        let b = derive_credentials("pencil", 4096).unwrap();
        for (creds, len) in [(&a.sha1, 20), (&a.sha256, 32)] {
            assert_eq!(creds.iterations, 4096);
            assert!(creds.salt.len() >= 16);
            assert_eq!(creds.stored_key.len(), len);
            assert_eq!(creds.server_key.len(), len);
        }
        assert_ne!(a.sha1.salt, a.sha256.salt, "a salt per hash");
        assert_ne!(a.sha256.salt, b.sha256.salt, "a fresh salt per derivation");
        assert_ne!(a.sha256.stored_key, b.sha256.stored_key);
        assert_eq!(a.for_alg(HashAlg::Sha1), &a.sha1);
        assert_eq!(a.for_alg(HashAlg::Sha256), &a.sha256);
    }

    #[test]
    fn derive_credentials_matches_the_rfc_keys() {
        // With the salt fixed, the derivation must reproduce the keys behind the RFC 5802 vector.
        let creds = derive_credentials("pencil", 4096).unwrap();
        let fixed = ScramCredentials::compute(HashAlg::Sha1, "pencil", &creds.sha1.salt, 4096);
        assert_eq!(creds.sha1, fixed);
    }

    #[test]
    fn derive_credentials_rejects_bad_input() {
        assert_eq!(derive_credentials("pencil", 0), Err(SaslFailure::MalformedRequest));
        // U+0007 is a prohibited control character; U+00AD alone maps to nothing.
        assert_eq!(derive_credentials("pen\u{7}cil", 4096), Err(SaslFailure::MalformedRequest));
        assert_eq!(derive_credentials("\u{ad}", 4096), Err(SaslFailure::MalformedRequest));
        assert!(derive_credentials("pencil", 1).is_ok());
    }

    #[test]
    fn credentials_are_serde_types() {
        fn storable<T: Serialize + for<'de> Deserialize<'de>>() {}
        storable::<StoredCredentials>();
    }

    #[test]
    fn full_exchange_both_hashes() {
        let stored = derive_credentials("correct horse", 4096).unwrap();
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let server = ScramServer::new(alg, false, Vec::new());
            let first = "n,,n=juliet,r=0123456789abcdef";
            assert!(exchange(server, alg, Some(&stored), "correct horse", first, b"").is_ok());
        }
    }

    #[test]
    fn saslprepped_passwords_match() {
        // SASLprep maps U+00AD to nothing, so both spellings are the same password.
        let stored = derive_credentials("I\u{ad}X", 4096).unwrap();
        let server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "IX", "n,,n=user,r=abcdefgh", b"").is_ok());
    }

    #[test]
    fn wrong_password_fails() {
        let stored = derive_credentials("correct horse", 4096).unwrap();
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let server = ScramServer::new(alg, false, Vec::new());
            let result = exchange(server, alg, Some(&stored), "battery staple", "n,,n=juliet,r=abcdefgh", b"");
            assert_eq!(result, Err(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn authzid_is_reported_and_bound() {
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        let first = server.client_first(b"n,a=admin=3Dx=2Cy,n=juliet,r=abc").unwrap();
        assert_eq!(first, ClientFirst { username: "juliet".into(), authzid: Some("admin=x,y".into()) });

        // The authzid is part of the gs2 header, which `c=` repeats.
        let stored = derive_credentials("pw", 4096).unwrap();
        let server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "pw", "n,a=admin,n=juliet,r=abc", b"").is_ok());
    }

    #[test]
    fn gs2_header_change_is_refused() {
        let stored = derive_credentials("pw", 4096).unwrap();
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        server.client_first(b"n,a=admin,n=juliet,r=abc").unwrap();
        let server_first = server.server_first(Some(&stored.sha256), &decoy());
        // A client that signs a header without the authzid it sent.
        let (msg, _) = client_final(HashAlg::Sha256, "pw", "n,,n=juliet,r=abc", b"", &server_first);
        assert_eq!(server.client_final(&msg), Err(SaslFailure::NotAuthorized));
    }

    #[test]
    fn unknown_user_fails_and_looks_like_a_known_one() {
        let stored = derive_credentials("pw", DEFAULT_ITERATIONS).unwrap();
        let first = "n,,n=nobody,r=abcdefgh";

        let mut known = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        known.client_first(b"n,,n=juliet,r=abcdefgh").unwrap();
        let (known_nonce, known_salt, known_iterations) =
            server_first_fields(&known.server_first(Some(&stored.sha256), &decoy()));

        let mut unknown = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        unknown.client_first(first.as_bytes()).unwrap();
        let reply = unknown.server_first(None, &decoy());
        let (nonce, salt, iterations) = server_first_fields(&reply);
        assert_eq!(nonce.len(), known_nonce.len());
        assert_eq!(salt.len(), known_salt.len());
        assert_eq!(iterations, known_iterations);

        // Asking again shows the same salt; another name or hash shows another.
        let salt_of = |alg, first: &str| {
            let mut s = ScramServer::new(alg, false, Vec::new());
            s.client_first(first.as_bytes()).unwrap();
            server_first_fields(&s.server_first(None, &decoy())).1
        };
        assert_eq!(salt_of(HashAlg::Sha256, first), salt);
        assert_ne!(salt_of(HashAlg::Sha256, "n,,n=somebody,r=abcdefgh"), salt);
        assert_ne!(salt_of(HashAlg::Sha1, first), salt);

        let (msg, _) = client_final(HashAlg::Sha256, "pw", first, b"", &reply);
        assert_eq!(unknown.client_final(&msg), Err(SaslFailure::NotAuthorized));
    }

    #[test]
    fn the_decoy_shows_the_configured_count_and_its_secrets_salt() {
        let shown = |decoy: &Decoy| {
            let mut s = ScramServer::new(HashAlg::Sha256, false, Vec::new());
            s.client_first(b"n,,n=nobody,r=abcdefgh").unwrap();
            server_first_fields(&s.server_first(None, decoy))
        };
        let (_, salt, iterations) = shown(&Decoy::new([7; 32], 10_000));
        assert_eq!(iterations, "10000");
        assert_eq!(shown(&Decoy::new([7; 32], 10_000)).1, salt, "the same secret, the same salt");
        assert_ne!(shown(&Decoy::new([8; 32], 10_000)).1, salt);
        // A PLAIN check against the decoy's credentials fails, whatever the password.
        let creds = Decoy::new([7; 32], 4096).credentials(HashAlg::Sha256, "nobody");
        assert_eq!(creds.stored_key.len(), derive_credentials("pw", 4096).unwrap().sha256.stored_key.len());
        assert!(!crate::plain::verify("", &creds) && !crate::plain::verify("pw", &creds));
    }

    #[test]
    fn plus_with_tls_exporter() {
        let stored = derive_credentials("pw", 4096).unwrap();
        let first = "p=tls-exporter,,n=juliet,r=abcdefgh";
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let server = ScramServer::new(alg, true, exporter(b"exporter bytes"));
            assert!(exchange(server, alg, Some(&stored), "pw", first, b"exporter bytes").is_ok());

            // A man in the middle has a different TLS channel, hence different data.
            let server = ScramServer::new(alg, true, exporter(b"exporter bytes"));
            let result = exchange(server, alg, Some(&stored), "pw", first, b"other channel");
            assert_eq!(result, Err(SaslFailure::NotAuthorized));
        }
    }

    #[test]
    fn plus_requires_a_binding_we_have() {
        let mut server = ScramServer::new(HashAlg::Sha256, true, exporter(b"x"));
        let result = server.client_first(b"p=tls-server-end-point,,n=juliet,r=abc");
        assert_eq!(result, Err(SaslFailure::NotAuthorized));

        let no_usable_p =
            ["n,,n=juliet,r=abc", "y,,n=juliet,r=abc", "p=,,n=juliet,r=abc", "p=tls exporter,,n=juliet,r=abc"];
        for first in no_usable_p {
            let mut server = ScramServer::new(HashAlg::Sha256, true, exporter(b"x"));
            assert_eq!(server.client_first(first.as_bytes()), Err(SaslFailure::MalformedRequest), "{first}");
        }

        let server_end_point =
            vec![ChannelBinding { kind: ChannelBindingType::TlsServerEndPoint, data: b"cert hash".to_vec() }];
        let stored = derive_credentials("pw", 4096).unwrap();
        let server = ScramServer::new(HashAlg::Sha256, true, server_end_point);
        let first = "p=tls-server-end-point,,n=juliet,r=abc";
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "pw", first, b"cert hash").is_ok());
    }

    #[test]
    fn y_is_a_downgrade_when_we_can_bind() {
        let mut server = ScramServer::new(HashAlg::Sha256, false, exporter(b"x"));
        assert_eq!(server.client_first(b"y,,n=juliet,r=abc"), Err(SaslFailure::NotAuthorized));

        // Without channel binding on our side, `y` is honest, and so is `n` with it.
        let stored = derive_credentials("pw", 4096).unwrap();
        let server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "pw", "y,,n=juliet,r=abc", b"").is_ok());
        let server = ScramServer::new(HashAlg::Sha256, false, exporter(b"x"));
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "pw", "n,,n=juliet,r=abc", b"").is_ok());
    }

    #[test]
    fn p_on_a_mechanism_without_plus_is_refused() {
        let mut server = ScramServer::new(HashAlg::Sha256, false, exporter(b"x"));
        assert_eq!(server.client_first(b"p=tls-exporter,,n=juliet,r=abc"), Err(SaslFailure::MalformedRequest));
    }

    #[test]
    fn username_escapes_and_saslprep() {
        let stored = derive_credentials("pw", 4096).unwrap();
        let server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(exchange(server, HashAlg::Sha256, Some(&stored), "pw", "n,,n=a=2Cb=3Dc,r=abc", b"").is_ok());

        let cases = [
            ("n,,n=a=2Cb=3Dc,r=abc", Ok("a,b=c")),
            ("n,,n=I\u{ad}X,r=abc", Ok("IX")),
            ("n,,n=a=2cb,r=abc", Err(SaslFailure::MalformedRequest)),
            ("n,,n=a=,r=abc", Err(SaslFailure::MalformedRequest)),
            ("n,,n=a=2,r=abc", Err(SaslFailure::MalformedRequest)),
            ("n,,n=a=é1,r=abc", Err(SaslFailure::MalformedRequest)),
            ("n,,n=bell\u{7},r=abc", Err(SaslFailure::MalformedRequest)),
            ("n,,n=\u{ad},r=abc", Err(SaslFailure::MalformedRequest)),
        ];
        for (msg, expected) in cases {
            let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
            let result = server.client_first(msg.as_bytes()).map(|f| f.username);
            assert_eq!(result, expected.map(String::from), "{msg}");
        }
    }

    #[test]
    fn malformed_client_first() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=juliet,r=abc",
            b"n,b=x,n=juliet,r=abc",
            b"n,a=,n=juliet,r=abc",
            b"n,,m=ext,n=juliet,r=abc",
            b"n,,n=juliet,r=abc,m=ext",
            b"n,,r=abc,n=juliet",
            b"n,,n=juliet",
            b"n,,n=,r=abc",
            b"n,,n=juliet,r=",
            b"n,,n=juliet,r=ab c",
            b"n,,n=juliet,r=ab\xc3\xa9",
            b"n,,n=juliet,r=abc,",
            b"n,,n=juliet,r=abc,xy=1",
            b"n,,n=juliet,r=abc,x=",
            b"n,,n=jul\xffiet,r=abc",
        ];
        for &msg in cases {
            let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
            assert_eq!(server.client_first(msg), Err(SaslFailure::MalformedRequest), "{}", msg.escape_ascii());
        }
        let mut long = b"n,,n=juliet,r=".to_vec();
        long.resize(MAX_MESSAGE_LEN + 1, b'a');
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert_eq!(server.client_first(&long), Err(SaslFailure::MalformedRequest));

        // Unknown optional extensions are ignored.
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(server.client_first(b"n,,n=juliet,r=abc,x=whatever").is_ok());
    }

    /// A server at the client-final step for user "juliet" (password "pw"), with the
    /// client-final message a correct client would send.
    fn at_client_final() -> (ScramServer, String) {
        let stored = derive_credentials("pw", 4096).unwrap();
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        let first = "n,,n=juliet,r=abcdefgh";
        server.client_first(first.as_bytes()).unwrap();
        let server_first = server.server_first(Some(&stored.sha256), &decoy());
        let (msg, _) = client_final(HashAlg::Sha256, "pw", first, b"", &server_first);
        (server, String::from_utf8(msg).unwrap())
    }

    #[test]
    fn bad_base64_is_incorrect_encoding() {
        let (mut server, msg) = at_client_final();
        let msg = msg.replacen("c=biws", "c=bi*s", 1);
        assert_eq!(server.client_final(msg.as_bytes()), Err(SaslFailure::IncorrectEncoding));

        let (mut server, msg) = at_client_final();
        let (without_proof, _) = msg.rsplit_once(',').unwrap();
        let msg = format!("{without_proof},p=abc");
        assert_eq!(server.client_final(msg.as_bytes()), Err(SaslFailure::IncorrectEncoding));
    }

    #[test]
    fn malformed_or_mismatched_client_final() {
        type Mangle = fn(&str, &str, &str) -> String;
        let cases: [(Mangle, SaslFailure); 10] = [
            (|c, r, p| format!("{p},{c},{r}"), SaslFailure::MalformedRequest),
            (|c, r, p| format!("{r},{c},{p}"), SaslFailure::MalformedRequest),
            (|c, _, p| format!("{c},{p}"), SaslFailure::MalformedRequest),
            (|c, r, _| format!("{c},{r}"), SaslFailure::MalformedRequest),
            (|c, r, p| format!("{c},{r},m=x,{p}"), SaslFailure::MalformedRequest),
            (|c, r, p| format!("{c},{r},{p},x=y"), SaslFailure::MalformedRequest),
            (|c, r, _| format!("{c},{r},p={}", B64.encode([0u8; 20])), SaslFailure::MalformedRequest),
            (|c, r, p| format!("{c},{r}x,{p}"), SaslFailure::NotAuthorized),
            (|_, r, p| format!("c=eSws,{r},{p}"), SaslFailure::NotAuthorized),
            // An unknown extension is well-formed, but the proof was computed without it.
            (|c, r, p| format!("{c},{r},x=y,{p}"), SaslFailure::NotAuthorized),
        ];
        for (mangle, expected) in cases {
            let (mut server, msg) = at_client_final();
            let fields: Vec<&str> = msg.split(',').collect();
            let bad = mangle(fields[0], fields[1], fields[2]);
            assert_eq!(server.client_final(bad.as_bytes()), Err(expected), "{bad}");
        }
    }

    #[test]
    fn out_of_order_steps() {
        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert_eq!(server.client_final(b"c=biws,r=abc,p=AAAA"), Err(SaslFailure::MalformedRequest));

        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        assert!(server.server_first(None, &decoy()).is_empty());
        assert_eq!(server.client_first(b"n,,n=juliet,r=abc"), Err(SaslFailure::MalformedRequest));

        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        server.client_first(b"n,,n=juliet,r=abc").unwrap();
        assert_eq!(server.client_first(b"n,,n=juliet,r=abc"), Err(SaslFailure::MalformedRequest));
        assert!(server.server_first(None, &decoy()).is_empty(), "a failed step ends the exchange");

        let mut server = ScramServer::new(HashAlg::Sha256, false, Vec::new());
        server.client_first(b"n,,n=juliet,r=abc").unwrap();
        assert_eq!(server.client_final(b"c=biws,r=abc,p=AAAA"), Err(SaslFailure::MalformedRequest));

        let (mut server, msg) = at_client_final();
        assert!(server.client_final(msg.as_bytes()).is_ok());
        assert_eq!(server.client_final(msg.as_bytes()), Err(SaslFailure::MalformedRequest), "no replay");
        assert!(server.server_first(None, &decoy()).is_empty());
    }

    #[test]
    fn a_failed_final_step_cannot_be_retried() {
        let (mut server, msg) = at_client_final();
        assert_eq!(server.client_final(b"c=biws"), Err(SaslFailure::MalformedRequest));
        assert_eq!(server.client_final(msg.as_bytes()), Err(SaslFailure::MalformedRequest));
    }

    /// Messages built from SCRAM's own punctuation and attribute names reach deeper into the
    /// parser than uniform bytes do.
    fn random_message(rng: &mut StdRng) -> Vec<u8> {
        #[rustfmt::skip]
        const PIECES: &[&[u8]] = &[
            b",", b"=", b"n", b"y", b"p=", b"a=", b"n=", b"r=", b"c=", b"m=", b"=2C", b"=3D", b"biws",
            b"tls-exporter", b"abc", b"\0", b"\xff", b"\xc3\xa9", b"\xc2\xad", b"=2", b"AAAA", b"==",
        ];
        let len = rng.random_range(0..24);
        match rng.random_bool(0.3) {
            true => (0..len * 4).map(|_| rng.random()).collect(),
            false => (0..len).flat_map(|_| PIECES[rng.random_range(0..PIECES.len())].iter().copied()).collect(),
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(5802);
        let creds = ScramCredentials::compute(HashAlg::Sha1, "pw", b"salt", 1);
        for _ in 0..3000 {
            let plus = rng.random_bool(0.5);
            // -PLUS is only offered with channel binding.
            let bindings = if plus || rng.random_bool(0.5) { exporter(b"x") } else { Vec::new() };
            let mut server = ScramServer::new(HashAlg::Sha1, plus, bindings.clone());
            let _ = server.client_first(&random_message(&mut rng));
            let _ = server.server_first(Some(&creds), &decoy());
            let _ = server.client_final(&random_message(&mut rng));

            // Past a valid first step, so client_final parses for real.
            let mut server = ScramServer::new(HashAlg::Sha1, plus, bindings);
            let first: &[u8] = if plus { b"p=tls-exporter,,n=u,r=abc" } else { b"n,,n=u,r=abc" };
            server.client_first(first).unwrap();
            let known = rng.random_bool(0.5).then_some(&creds);
            server.server_first(known, &decoy());
            let mut last = random_message(&mut rng);
            if rng.random_bool(0.5) {
                last.extend_from_slice(b",p=");
                last.extend_from_slice(B64.encode(random_message(&mut rng)).as_bytes());
            }
            let _ = server.client_final(&last);
        }
    }
}
