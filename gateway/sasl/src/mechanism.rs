use crate::scram::HashAlg;
use crate::ChannelBindingType;

/// The mechanisms the server can offer, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub const ALL: [Mechanism; 5] =
        [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus, Mechanism::ScramSha256, Mechanism::ScramSha1, Mechanism::Plain];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash and whether channel binding is required; `None` for PLAIN.
    pub fn scram(self) -> Option<(HashAlg, bool)> {
        match self {
            Mechanism::ScramSha256Plus => Some((HashAlg::Sha256, true)),
            Mechanism::ScramSha1Plus => Some((HashAlg::Sha1, true)),
            Mechanism::ScramSha256 => Some((HashAlg::Sha256, false)),
            Mechanism::ScramSha1 => Some((HashAlg::Sha1, false)),
            Mechanism::Plain => None,
        }
    }

    /// What a connection may use: PLAIN only over TLS, -PLUS only with channel binding.
    pub fn offered(tls: bool, bindings: &[ChannelBindingType], allow_plain: bool) -> Vec<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| match m {
                Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus => tls && !bindings.is_empty(),
                Mechanism::Plain => tls && allow_plain,
                _ => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None, "names are case-sensitive");
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }

    #[test]
    fn scram_parameters() {
        assert_eq!(Mechanism::ScramSha256Plus.scram(), Some((HashAlg::Sha256, true)));
        assert_eq!(Mechanism::ScramSha1Plus.scram(), Some((HashAlg::Sha1, true)));
        assert_eq!(Mechanism::ScramSha256.scram(), Some((HashAlg::Sha256, false)));
        assert_eq!(Mechanism::ScramSha1.scram(), Some((HashAlg::Sha1, false)));
        assert_eq!(Mechanism::Plain.scram(), None);
    }

    #[test]
    fn offered_depends_on_the_connection() {
        use Mechanism::*;
        let exporter = [ChannelBindingType::TlsExporter];
        // Without TLS: neither PLAIN (cleartext password) nor -PLUS, even if asked.
        assert_eq!(Mechanism::offered(false, &[], true), [ScramSha256, ScramSha1]);
        assert_eq!(Mechanism::offered(false, &exporter, true), [ScramSha256, ScramSha1]);
        // TLS without channel binding: no -PLUS.
        assert_eq!(Mechanism::offered(true, &[], true), [ScramSha256, ScramSha1, Plain]);
        assert_eq!(Mechanism::offered(true, &[], false), [ScramSha256, ScramSha1]);
        assert_eq!(Mechanism::offered(true, &exporter, false), [ScramSha256Plus, ScramSha1Plus, ScramSha256, ScramSha1]);
        assert_eq!(Mechanism::offered(true, &exporter, true), Mechanism::ALL);
    }
}
