//! Members-only rooms (XEP-0045 §7.2.5): only members, admins and owners may enter;
//! anyone else gets `registration-required`.

use jabberwock_proto::{Element, StanzaError, StanzaErrorCondition};

use super::options::{bool_value, field, parse_bool, Limits, RoomConfig, RoomOption};
use super::room::{Affiliation, Join, Room};

pub struct MembersOnly;

impl RoomOption for MembersOnly {
    fn var(&self) -> &'static str {
        "muc#roomconfig_membersonly"
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var(), "boolean", "Only members may enter").with_child(bool_value(config.members_only))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], _: &Limits) -> Result<(), StanzaError> {
        config.members_only = parse_bool(self.var(), values)?;
        Ok(())
    }

    fn features(&self, config: &RoomConfig) -> &'static [&'static str] {
        if config.members_only {
            &["muc_membersonly"]
        } else {
            &["muc_open"]
        }
    }

    fn check_join(&self, room: &Room, join: &Join<'_>) -> Result<(), StanzaError> {
        if room.config.members_only && join.affiliation < Affiliation::Member {
            return Err(StanzaError::new(StanzaErrorCondition::RegistrationRequired).with_text("this room is for members only"));
        }
        Ok(())
    }
}
