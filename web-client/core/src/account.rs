//! XEP-0077 for a signed-in user: changing the account's password.

use jabberwock_proto::Element;

use crate::ns;
use crate::stanza::iq;

/// The shortest password the client proposes to send; the server may want more.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why a new password is not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("The new password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("The two passwords differ")]
    Mismatch,
}

/// Checks a new password typed twice.
pub fn check_new_password(password: &str, again: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password != again {
        return Err(PasswordError::Mismatch);
    }
    Ok(())
}

/// XEP-0077 §3.3: the request that changes `local@domain`'s password.
pub fn change_password(id: &str, domain: &str, local: &str, password: &str) -> Element {
    iq("set", id, Some(domain)).with_child(
        Element::new("query", ns::REGISTER)
            .with_child(Element::new("username", ns::REGISTER).with_text(local))
            .with_child(Element::new("password", ns::REGISTER).with_text(password)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_are_checked_before_sending() {
        assert_eq!(check_new_password("short", "short"), Err(PasswordError::TooShort));
        assert_eq!(check_new_password("long enough", "long enougH"), Err(PasswordError::Mismatch));
        assert_eq!(check_new_password("long enough", "long enough"), Ok(()));
        let r = change_password("p1", "localhost", "user", "long enough");
        let q = r.child("query", ns::REGISTER).unwrap();
        assert_eq!((r.attr("type"), r.attr("to")), (Some("set"), Some("localhost")));
        assert_eq!(q.child_text("username", ns::REGISTER).as_deref(), Some("user"));
        assert_eq!(q.child_text("password", ns::REGISTER).as_deref(), Some("long enough"));
    }
}
