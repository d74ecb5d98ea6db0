//! Password-protected rooms (XEP-0045 §7.2.6): a join without the room secret is refused
//! with `not-authorized`; owners and admins need it too, as in Prosody and ejabberd.

use jabberwock_proto::{ns, Element, StanzaError};

use super::options::{bool_value, field, parse_bool, value, Limits, RoomConfig, RoomOption};
use super::room::{Join, Room};

/// Whether the room has a secret. Turning it off clears the secret.
pub struct PasswordProtected;

impl RoomOption for PasswordProtected {
    fn var(&self) -> &'static str {
        "muc#roomconfig_passwordprotectedroom"
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var(), "boolean", "A password is required to enter").with_child(bool_value(!config.password.is_empty()))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], _: &Limits) -> Result<(), StanzaError> {
        if !parse_bool(self.var(), values)? {
            config.password.clear();
        }
        Ok(())
    }

    fn features(&self, config: &RoomConfig) -> &'static [&'static str] {
        if config.password.is_empty() {
            &["muc_unsecured"]
        } else {
            &["muc_passwordprotected"]
        }
    }

    fn check_join(&self, room: &Room, join: &Join<'_>) -> Result<(), StanzaError> {
        let secret = &room.config.password;
        if secret.is_empty() || join.password == Some(secret.as_str()) {
            return Ok(());
        }
        Err(StanzaError::not_authorized().with_text("this room needs a password"))
    }
}

/// The secret itself, never shown back in the form.
pub struct Secret;

impl RoomOption for Secret {
    fn var(&self) -> &'static str {
        "muc#roomconfig_roomsecret"
    }

    fn field(&self, _config: &RoomConfig) -> Element {
        field(self.var(), "text-private", "Password").with_child(value(""))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], limits: &Limits) -> Result<(), StanzaError> {
        let secret = values.first().cloned().unwrap_or_default();
        if secret.len() > limits.max_text_bytes {
            return Err(StanzaError::not_acceptable().with_text("the password is too long"));
        }
        // An empty value keeps the current secret: the form never shows it.
        if !secret.is_empty() {
            config.password = secret;
        }
        Ok(())
    }
}

/// The `<password/>` of a join's `<x xmlns='http://jabber.org/protocol/muc'/>`.
pub fn of_join(x: Option<&Element>) -> Option<String> {
    x.and_then(|x| x.child_text("password", ns::MUC))
}
