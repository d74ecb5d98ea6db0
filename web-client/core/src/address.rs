//! JIDs as the client handles them: user input is validated and normalised once here;
//! addresses that come from the server (already normalised) are split as text.
//!
//! The checks are RFC 7622's structural rules plus case folding. Full PRECIS/IDNA
//! normalisation is left to the server, which refuses what it cannot normalise; the
//! Unicode tables it needs would more than double the size of the browser build.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("enter an address like name@example.org")]
    Empty,
    #[error("“{0}” is not a valid address; use the form name@example.org")]
    Invalid(String),
    #[error("“{0}” has no user name; use the form name@example.org")]
    NoLocalpart(String),
}

/// A validated, normalised bare JID entered by the user (an account or a contact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub local: String,
    pub domain: String,
}

impl Account {
    /// Accepts `user@domain` and also `user@domain/resource` (the resource is dropped).
    pub fn parse(input: &str) -> Result<Account, AddressError> {
        let bare = parse_bare(input)?;
        let (local, domain) = bare.split_once('@').ok_or_else(|| AddressError::NoLocalpart(input.trim().to_owned()))?;
        Ok(Account { local: local.to_owned(), domain: domain.to_owned() })
    }

    pub fn bare(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Validates and normalises a bare JID typed by the user. A domain alone is allowed
/// (contacts can be services).
pub fn parse_bare(input: &str) -> Result<String, AddressError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(AddressError::Empty);
    }
    let invalid = || AddressError::Invalid(input.to_owned());
    let without_resource = bare(input);
    let (local, domain) = match without_resource.split_once('@') {
        Some((l, d)) => (Some(l), d),
        None => (None, without_resource),
    };
    let domain = domain.trim_end_matches('.').to_lowercase();
    let domain_ok = !domain.is_empty()
        && domain.len() <= 1023
        && domain.split('.').all(|label| !label.is_empty() && label.len() <= 63)
        && !domain
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@/\\\"'<>&:".contains(c) && !(c == ':' && domain.starts_with('[')));
    if !domain_ok {
        return Err(invalid());
    }
    match local {
        None => Ok(domain),
        Some(l) => {
            // RFC 7622 §3.3.1: these may not appear in a localpart.
            let local_ok = !l.is_empty()
                && l.len() <= 1023
                && !l.chars().any(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c));
            if !local_ok {
                return Err(invalid());
            }
            Ok(format!("{}@{domain}", l.to_lowercase()))
        }
    }
}

/// `user@domain` of `user@domain/resource`.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// The resource, if the JID has one.
pub fn resource(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, r)| r)
}

/// The domain part.
pub fn domain(jid: &str) -> &str {
    let b = bare(jid);
    b.rsplit_once('@').map_or(b, |(_, d)| d)
}

/// The localpart, if any.
pub fn local(jid: &str) -> Option<&str> {
    bare(jid).split_once('@').map(|(l, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_validated_and_normalised() {
        assert_eq!(Account::parse(" Alice@LocalHost ").unwrap(), Account { local: "alice".into(), domain: "localhost".into() });
        assert_eq!(Account::parse("bob@example.org/phone").unwrap().bare(), "bob@example.org");
        assert_eq!(Account::parse(""), Err(AddressError::Empty));
        assert!(matches!(Account::parse("example.org"), Err(AddressError::NoLocalpart(_))));
        assert!(matches!(Account::parse("a@b@c"), Err(AddressError::Invalid(_))));
        assert!(matches!(Account::parse("@example.org"), Err(AddressError::Invalid(_))));
    }

    #[test]
    fn server_addresses_split_as_text() {
        assert_eq!(bare("a@b/c/d"), "a@b");
        assert_eq!(resource("a@b/c/d"), Some("c/d"));
        assert_eq!(resource("a@b"), None);
        assert_eq!(domain("a@b/c"), "b");
        assert_eq!(domain("b/c"), "b");
        assert_eq!(local("a@b/c"), Some("a"));
        assert_eq!(local("b"), None);
        assert_eq!(parse_bare("Service.Example.org").unwrap(), "service.example.org");
        assert_eq!(parse_bare("Zoë@Example.ORG.").unwrap(), "zoë@example.org");
        assert_eq!(parse_bare("a@[::1]").unwrap(), "a@[::1]");
        for bad in ["a b@c", "a@b c", "a@b..c", "a<b@c", "a@", "a\u{7}@b", "a@b@c", "a:b@c", "a@b:c"] {
            assert!(parse_bare(bad).is_err(), "{bad}");
        }
    }
}
