//! Mediated invitations (XEP-0045 §7.8.2) and their declines (§7.8.3). Direct
//! invitations (XEP-0249) go from client to client and need nothing here.
//!
//! In a members-only room the invitee becomes a member, when the inviter may invite:
//! a moderator always, another occupant when the room allows invitations.

use jabberwock_proto::{ns, Element, Stanza, StanzaError};
use jid::Jid;

use super::room::{Affiliation, Out, Role, Room};

/// What an invitation changed.
pub struct Invited {
    pub out: Out,
    /// The room's affiliations changed (a new member), so a persistent room is saved.
    pub affiliations_changed: bool,
}

impl Room {
    /// An `<x xmlns='http://jabber.org/protocol/muc#user'/>` with `<invite/>`s or a
    /// `<decline/>`, from the device `from`.
    pub fn invitation(&mut self, from: &Jid, x: &Element) -> Result<Invited, StanzaError> {
        if let Some(decline) = x.child("decline", ns::MUC_USER) {
            return Ok(Invited { out: self.decline(from, decline)?, affiliations_changed: false });
        }
        let inviter = self.occupant_of(from).ok_or_else(|| StanzaError::not_acceptable().with_text("join the room first"))?;
        if !self.config.allow_invites && inviter.role != Role::Moderator {
            return Err(StanzaError::forbidden().with_text("only moderators may invite to this room"));
        }
        let mut out = Vec::new();
        let mut affiliations_changed = false;
        for invite in x.children().filter(|c| c.is("invite", ns::MUC_USER)) {
            let to = invite.attr("to").and_then(|t| Jid::new(t).ok()).ok_or_else(|| StanzaError::jid_malformed().with_text("invite whom?"))?;
            if self.affiliation(&to.to_bare()) == Affiliation::Outcast {
                return Err(StanzaError::forbidden().with_text(format!("{} is banned from this room", to.to_bare())));
            }
            if self.config.members_only && self.affiliation(&to.to_bare()) < Affiliation::Member {
                if self.affiliations.len() >= super::room::MAX_AFFILIATIONS {
                    return Err(StanzaError::resource_constraint().with_text("this room has too many members"));
                }
                self.affiliations.insert(to.to_bare().to_string(), Affiliation::Member);
                affiliations_changed = true;
            }
            let mut said = Element::new("invite", ns::MUC_USER).with_attr("from", from.as_str());
            if let Some(reason) = invite.child("reason", ns::MUC_USER) {
                said.push(reason.clone());
            }
            let mut x = Element::new("x", ns::MUC_USER).with_child(said);
            if !self.config.password.is_empty() {
                x.push(Element::new("password", ns::MUC_USER).with_text(self.config.password.as_str()));
            }
            let message = Element::new("message", ns::CLIENT)
                .with_attr("from", self.jid.as_str())
                .with_attr("to", to.as_str())
                .with_child(x)
                .with_child(Element::new("x", ns::CONFERENCE).with_attr("jid", self.jid.as_str()));
            out.push(Stanza::from_element(&message));
        }
        if out.is_empty() {
            return Err(StanzaError::bad_request().with_text("an invitation names at least one invitee"));
        }
        Ok(Invited { out, affiliations_changed })
    }

    /// The invitee says no: the inviter learns it, from the room.
    fn decline(&self, from: &Jid, decline: &Element) -> Result<Out, StanzaError> {
        let to = decline.attr("to").and_then(|t| Jid::new(t).ok()).ok_or_else(|| StanzaError::jid_malformed().with_text("decline to whom?"))?;
        let mut said = Element::new("decline", ns::MUC_USER).with_attr("from", from.to_bare().as_str());
        if let Some(reason) = decline.child("reason", ns::MUC_USER) {
            said.push(reason.clone());
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_attr("to", to.as_str())
            .with_child(Element::new("x", ns::MUC_USER).with_child(said));
        Ok(vec![Stanza::from_element(&message)])
    }
}
