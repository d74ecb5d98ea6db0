//! Voice requests (XEP-0045 §7.13): in a moderated room a visitor asks for voice with a
//! `muc#request` form; the room passes it to every moderator as a form to approve, and a
//! moderator who submits it with `muc#request_allow` makes the visitor a participant.

use jabberwock_proto::{ns, Element, Stanza, StanzaError};
use jid::Jid;

use super::options::{bool_value, field, value};
use super::room::{Out, Role, Room};

pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#request";

fn form_value(form: &Element, var: &str) -> Option<String> {
    form.children().find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))?.child_text("value", ns::DATA_FORMS)
}

/// The `muc#request` form of a message, if it carries one.
pub fn request_form(message: &Element) -> Option<&Element> {
    message.children().find(|x| x.is("x", ns::DATA_FORMS) && form_value(x, "FORM_TYPE").as_deref() == Some(FORM_TYPE))
}

impl Room {
    /// A voice request from a visitor, or a moderator's answer to one.
    pub fn voice(&mut self, from: &Jid, form: &Element) -> Result<Out, StanzaError> {
        let sender = self.occupant_of(from).ok_or_else(|| StanzaError::not_acceptable().with_text("join the room first"))?;
        if sender.role == Role::Moderator {
            // An approval: the form comes back with the nick and the decision.
            if !matches!(form_value(form, "muc#request_allow").as_deref(), Some("1" | "true")) {
                return Ok(Vec::new());
            }
            let nick = form_value(form, "muc#roomnick").ok_or_else(|| StanzaError::bad_request().with_text("whose request?"))?;
            return self.set_role(from, &nick, Role::Participant);
        }
        if sender.role != Role::Visitor {
            return Err(StanzaError::bad_request().with_text("you have voice already"));
        }
        let (nick, real) = (sender.nick.clone(), sender.real.clone());
        let mut out = Vec::new();
        for moderator in self.occupants.iter().filter(|o| o.role == Role::Moderator) {
            let mut x = Element::new("x", ns::DATA_FORMS)
                .with_attr("type", "form")
                .with_child(Element::new("title", ns::DATA_FORMS).with_text("Voice request"))
                .with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", "FORM_TYPE").with_attr("type", "hidden").with_child(value(FORM_TYPE)))
                .with_child(field("muc#role", "list-single", "Requested role").with_child(value("participant")));
            // Moderators see real JIDs in any room.
            x.push(field("muc#jid", "jid-single", "User ID").with_child(value(real.as_str())));
            x.push(field("muc#roomnick", "text-single", "Room nickname").with_child(value(nick.as_str())));
            x.push(field("muc#request_allow", "boolean", "Grant voice to this person?").with_child(bool_value(false)));
            for d in &moderator.devices {
                let message = Element::new("message", ns::CLIENT)
                    .with_attr("from", self.jid.as_str())
                    .with_attr("to", d.jid.as_str())
                    .with_child(x.clone());
                out.push(Stanza::from_element(&message));
            }
        }
        Ok(out)
    }
}
