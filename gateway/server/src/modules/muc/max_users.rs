//! The occupant limit (XEP-0045 §7.2.10): a full room refuses newcomers with
//! `service-unavailable`, except its owners and admins.

use jabberwock_proto::{Element, StanzaError};

use super::options::{field, parse_number, value, Limits, RoomConfig, RoomOption};
use super::room::{Affiliation, Join, Room};

pub struct MaxUsers;

impl RoomOption for MaxUsers {
    fn var(&self) -> &'static str {
        "muc#roomconfig_maxusers"
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var(), "text-single", "Most occupants").with_child(value(config.max_users.to_string()))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], limits: &Limits) -> Result<(), StanzaError> {
        config.max_users = parse_number(self.var(), values, limits.max_users)?.max(1);
        Ok(())
    }

    fn check_join(&self, room: &Room, join: &Join<'_>) -> Result<(), StanzaError> {
        let full = room.occupants.len() >= room.config.max_users as usize;
        if full && join.affiliation < Affiliation::Admin && room.occupant(join.nick).is_none() {
            return Err(StanzaError::service_unavailable().with_text("the room is full"));
        }
        Ok(())
    }
}
