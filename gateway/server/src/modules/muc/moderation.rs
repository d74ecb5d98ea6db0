//! XEP-0425 message moderation: a moderator retracts an occupant's message. Everyone in
//! the room is told (a XEP-0424 retraction from the room), and the archive keeps a
//! tombstone in the message's place, with the same id.

use jabberwock_proto::{ns, Element, StanzaError};
use jid::Jid;

use super::room::{Out, Role, Room};
use crate::stanzas::{random_id, xep0082};

/// What a moderation produced.
pub struct Moderated {
    /// The retraction, to every occupant.
    pub out: Out,
    /// The retraction as the room archives it (without `to`).
    pub announcement: Element,
    /// What the archive keeps in place of the message.
    pub tombstone: Element,
}

impl Room {
    /// `<moderate id='…'><retract/><reason/></moderate>` from the device `by`.
    pub fn moderate(&mut self, by: &Jid, request: &Element) -> Result<Moderated, StanzaError> {
        let moderator = self.occupant_of(by).ok_or_else(|| StanzaError::forbidden().with_text("join the room first"))?;
        if moderator.role != Role::Moderator {
            return Err(StanzaError::forbidden().with_text("only moderators retract others' messages"));
        }
        let id = request.attr("id").filter(|id| !id.is_empty()).ok_or_else(|| StanzaError::bad_request().with_text("which message?"))?;
        if request.child("retract", ns::MESSAGE_RETRACT).is_none() {
            return Err(StanzaError::feature_not_implemented().with_text("only retraction is supported"));
        }
        let moderated = Element::new("moderated", ns::MESSAGE_MODERATE)
            .with_attr("by", self.nick_jid(&moderator.nick))
            .with_child(Element::new("occupant-id", ns::OCCUPANT_ID).with_attr("id", self.occupant_id(&moderator.real)));
        let reason = request.child("reason", ns::MESSAGE_MODERATE).map(|r| Element::new("reason", ns::MESSAGE_RETRACT).with_text(r.text()));

        let mut retract = Element::new("retract", ns::MESSAGE_RETRACT).with_attr("id", id).with_child(moderated.clone());
        let mut retracted =
            Element::new("retracted", ns::MESSAGE_RETRACT).with_attr("stamp", xep0082(time::OffsetDateTime::now_utc())).with_child(moderated);
        if let Some(r) = reason {
            retract.push(r.clone());
            retracted.push(r);
        }
        let announcement = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", self.jid.as_str())
            .with_attr("id", random_id())
            .with_child(retract);
        // The tombstone keeps who wrote the message, and its ids.
        let original = self.kept_message(id);
        let mut tombstone = Element::new("message", ns::CLIENT).with_attr("type", "groupchat");
        tombstone.set_attr("from", original.as_ref().and_then(|m| m.attr("from")).unwrap_or(self.jid.as_str()));
        tombstone.push(retracted);
        if let Some(original) = &original {
            for kept in original.children().filter(|c| c.is("stanza-id", ns::SID) || c.is("occupant-id", ns::OCCUPANT_ID)) {
                tombstone.push(kept.clone());
            }
        }
        self.replace_kept(id, &tombstone);
        Ok(Moderated { out: self.to_everyone(&announcement), announcement, tombstone })
    }
}

/// The room's id of a reflected message.
pub(super) fn room_id_of<'a>(message: &'a Element, room: &str) -> Option<&'a str> {
    message.children().find(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(room)).and_then(|c| c.attr("id"))
}
