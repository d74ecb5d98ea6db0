//! SASL PLAIN (RFC 4616): offered only over TLS.
//!
//! [`parse`] fails with `malformed-request` for: not exactly three NUL-separated fields,
//! a field that is not UTF-8 or longer than 1023 bytes, an empty authcid or password
//! (RFC 4616 requires at least one character), or a username or password that SASLprep
//! rejects or prepares to nothing.

use subtle::ConstantTimeEq;

use crate::scram::{saslprep, HashAlg};
use crate::{SaslFailure, ScramCredentials};

/// RFC 4616 requires accepting 255 bytes per field; we allow more, but not without bound.
const MAX_FIELD_LEN: usize = 1023;

/// The three fields of a PLAIN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: Option<String>,
    /// SASLprepped.
    pub username: String,
    /// SASLprepped.
    pub password: String,
}

/// Parses `[authzid] NUL authcid NUL passwd`. The authzid is returned as sent (an empty
/// one is `None`); interpreting it is up to the caller.
pub fn parse(msg: &[u8]) -> Result<PlainMessage, SaslFailure> {
    let mut fields = msg.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    let authzid = field_text(authzid)?;
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        username: saslprep(field_text(authcid)?)?,
        password: saslprep(field_text(passwd)?)?,
    })
}

fn field_text(field: &[u8]) -> Result<&str, SaslFailure> {
    match field.len() <= MAX_FIELD_LEN {
        true => std::str::from_utf8(field).map_err(|_| SaslFailure::MalformedRequest),
        false => Err(SaslFailure::MalformedRequest),
    }
}

/// Checks a password against stored SCRAM credentials, in constant time.
///
/// Works with either hash's credentials, told apart by the StoredKey length. The password
/// is SASLprepped first (again, if it came from [`parse`]; SASLprep is idempotent), and one
/// SASLprep rejects never matches.
pub fn verify(password: &str, creds: &ScramCredentials) -> bool {
    let (Ok(password), Some(alg)) = (saslprep(password), HashAlg::from_key_len(creds.stored_key.len())) else {
        return false;
    };
    let expected = ScramCredentials::compute(alg, &password, &creds.salt, creds.iterations);
    expected.stored_key.ct_eq(&creds.stored_key).into()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::derive_credentials;

    #[test]
    fn parses_the_three_fields() {
        let msg = parse(b"\0juliet\0pencil").unwrap();
        assert_eq!(msg, PlainMessage { authzid: None, username: "juliet".into(), password: "pencil".into() });

        let msg = parse(b"romeo@montague.lit\0juliet\0pen cil").unwrap();
        assert_eq!(msg.authzid.as_deref(), Some("romeo@montague.lit"));
        assert_eq!(msg.username, "juliet");
        assert_eq!(msg.password, "pen cil");
    }

    #[test]
    fn saslpreps_username_and_password() {
        // U+00AD maps to nothing; U+00A0 (no-break space) maps to a space.
        let msg = parse("\0I\u{ad}X\0a\u{a0}b".as_bytes()).unwrap();
        assert_eq!(msg.username, "IX");
        assert_eq!(msg.password, "a b");
    }

    #[test]
    fn rejects_bad_messages() {
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"juliet\0pencil".to_vec(),
            b"\0juliet\0pencil\0".to_vec(),
            b"\0\0pencil".to_vec(),
            b"\0juliet\0".to_vec(),
            b"\0jul\xffiet\0pencil".to_vec(),
            b"\xff\0juliet\0pencil".to_vec(),
            "\0bell\u{7}\0pencil".as_bytes().to_vec(),
            "\0juliet\0\u{ad}".as_bytes().to_vec(),
            format!("\0{long}\0pencil").into_bytes(),
            format!("\0juliet\0{long}").into_bytes(),
            format!("{long}\0juliet\0pencil").into_bytes(),
        ];
        for msg in cases {
            assert_eq!(parse(&msg), Err(SaslFailure::MalformedRequest), "{}", msg.escape_ascii());
        }
        let longest = "x".repeat(MAX_FIELD_LEN);
        assert!(parse(format!("{longest}\0{longest}\0{longest}").as_bytes()).is_ok());
    }

    #[test]
    fn verifies_against_both_hashes() {
        let stored = derive_credentials("pencil", 4096).unwrap();
        for creds in [&stored.sha1, &stored.sha256] {
            assert!(verify("pencil", creds));
            assert!(verify("pen\u{ad}cil", creds), "SASLprep-equivalent");
            assert!(!verify("pencil2", creds));
            assert!(!verify("Pencil", creds));
            assert!(!verify("pen\u{7}cil", creds));
        }
    }

    #[test]
    fn verify_refuses_unusable_credentials() {
        let mut creds = derive_credentials("pencil", 4096).unwrap().sha256;
        creds.stored_key.truncate(16);
        assert!(!verify("pencil", &creds));
    }

    #[test]
    fn parse_then_verify() {
        let stored = derive_credentials("pencil", 4096).unwrap();
        let msg = parse(b"\0juliet\0pencil").unwrap();
        assert!(verify(&msg.password, &stored.sha256));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(4616);
        for _ in 0..5000 {
            let len = rng.random_range(0..64);
            let msg: Vec<u8> = (0..len).map(|_| if rng.random_bool(0.2) { 0 } else { rng.random() }).collect();
            let _ = parse(&msg);
        }
    }
}
