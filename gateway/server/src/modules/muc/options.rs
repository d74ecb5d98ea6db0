//! A room's configuration (`muc#roomconfig`), and the options it is made of.
//!
//! Each option is a [`RoomOption`]: its field in the owner's form, how a submitted value
//! is applied, the disco features it adds to the room, and, for options that restrict
//! who may join (password, members-only, occupant limit), a check on every join. The
//! plain ones are in [`OPTIONS`] below; an option with behaviour has its own file.

use jabberwock_proto::{ns, Element, StanzaError};
use serde::{Deserialize, Serialize};

use super::room::{Join, Room};

/// Everything an owner can configure, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    /// The room secret; empty when the room has none.
    pub password: String,
    pub moderated: bool,
    pub max_users: u32,
    /// Everyone sees occupants' real JIDs (non-anonymous); otherwise only moderators do.
    pub whois_anyone: bool,
    pub allow_pm: bool,
    pub allow_invites: bool,
    /// Participants may change the subject; otherwise only moderators.
    pub change_subject: bool,
    /// Messages go to the room's archive (XEP-0313), which also serves history on join.
    pub archive: bool,
    /// Messages of history sent on join when the client asks for none in particular.
    pub history_length: u32,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            password: String::new(),
            moderated: false,
            max_users: 200,
            whois_anyone: false,
            allow_pm: true,
            allow_invites: false,
            change_subject: false,
            archive: true,
            history_length: 20,
        }
    }
}

/// The service's limits, which options and rooms check against.
pub struct Limits {
    pub max_users: u32,
    pub max_text_bytes: usize,
    /// Groupchat messages per second one occupant may send, after a burst of as many.
    pub messages_per_sec: u32,
}

pub trait RoomOption: Sync {
    fn var(&self) -> &'static str;
    /// The field with the room's current value, for the owner's form.
    fn field(&self, config: &RoomConfig) -> Element;
    fn submit(&self, config: &mut RoomConfig, values: &[String], limits: &Limits) -> Result<(), StanzaError>;
    /// Disco#info features the option gives the room.
    fn features(&self, _config: &RoomConfig) -> &'static [&'static str] {
        &[]
    }
    /// Refuses a join the option does not allow.
    fn check_join(&self, _room: &Room, _join: &Join<'_>) -> Result<(), StanzaError> {
        Ok(())
    }
}

/// Every option, in the order of the form.
pub const OPTIONS: &[&dyn RoomOption] = &[
    &Text { var: "muc#roomconfig_roomname", label: "Name", get: |c| &c.name, set: |c, v| c.name = v },
    &Text { var: "muc#roomconfig_roomdesc", label: "Description", get: |c| &c.description, set: |c, v| c.description = v },
    &Flag { var: "muc#roomconfig_persistentroom", label: "Keep the room when it is empty", get: |c| c.persistent, set: |c, v| c.persistent = v, on: &["muc_persistent"], off: &["muc_temporary"] },
    &Flag { var: "muc#roomconfig_publicroom", label: "List the room publicly", get: |c| c.public, set: |c, v| c.public = v, on: &["muc_public"], off: &["muc_hidden"] },
    &super::members_only::MembersOnly,
    &super::password::PasswordProtected,
    &super::password::Secret,
    &Flag { var: "muc#roomconfig_moderatedroom", label: "Only participants may speak", get: |c| c.moderated, set: |c, v| c.moderated = v, on: &["muc_moderated"], off: &["muc_unmoderated"] },
    &super::max_users::MaxUsers,
    &Whois,
    &Flag { var: "muc#roomconfig_allowpm", label: "Occupants may send private messages", get: |c| c.allow_pm, set: |c, v| c.allow_pm = v, on: &[], off: &[] },
    &Flag { var: "muc#roomconfig_allowinvites", label: "Participants may invite", get: |c| c.allow_invites, set: |c, v| c.allow_invites = v, on: &[], off: &[] },
    &Flag { var: "muc#roomconfig_changesubject", label: "Participants may change the subject", get: |c| c.change_subject, set: |c, v| c.change_subject = v, on: &[], off: &[] },
    &Flag { var: "muc#roomconfig_enablearchiving", label: "Archive messages", get: |c| c.archive, set: |c, v| c.archive = v, on: &[ns::MAM], off: &[] },
    &HistoryLength,
];

pub fn field(var: &str, kind: &str, label: &str) -> Element {
    Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind).with_attr("label", label)
}

pub fn value(v: impl Into<String>) -> Element {
    Element::new("value", ns::DATA_FORMS).with_text(v)
}

pub fn bool_value(v: bool) -> Element {
    value(if v { "1" } else { "0" })
}

pub fn parse_bool(var: &str, values: &[String]) -> Result<bool, StanzaError> {
    match values.first().map(String::as_str) {
        Some("1" | "true") => Ok(true),
        Some("0" | "false") | None => Ok(false),
        Some(other) => Err(StanzaError::not_acceptable().with_text(format!("{var}: {other:?} is not a boolean"))),
    }
}

pub fn parse_number(var: &str, values: &[String], max: u32) -> Result<u32, StanzaError> {
    let v = values.first().map(String::as_str).unwrap_or_default();
    match v.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(StanzaError::not_acceptable().with_text(format!("{var}: {v:?} is not a number from 0 to {max}"))),
    }
}

/// A free-text option.
struct Text {
    var: &'static str,
    label: &'static str,
    get: fn(&RoomConfig) -> &String,
    set: fn(&mut RoomConfig, String),
}

impl RoomOption for Text {
    fn var(&self) -> &'static str {
        self.var
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var, "text-single", self.label).with_child(value((self.get)(config).as_str()))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], limits: &Limits) -> Result<(), StanzaError> {
        let text = values.join("\n");
        if text.len() > limits.max_text_bytes {
            return Err(StanzaError::not_acceptable().with_text(format!("{} is longer than {} bytes", self.var, limits.max_text_bytes)));
        }
        (self.set)(config, text);
        Ok(())
    }
}

/// A yes/no option, with the disco features of each state.
struct Flag {
    var: &'static str,
    label: &'static str,
    get: fn(&RoomConfig) -> bool,
    set: fn(&mut RoomConfig, bool),
    on: &'static [&'static str],
    off: &'static [&'static str],
}

impl RoomOption for Flag {
    fn var(&self) -> &'static str {
        self.var
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var, "boolean", self.label).with_child(bool_value((self.get)(config)))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], _: &Limits) -> Result<(), StanzaError> {
        (self.set)(config, parse_bool(self.var, values)?);
        Ok(())
    }

    fn features(&self, config: &RoomConfig) -> &'static [&'static str] {
        if (self.get)(config) {
            self.on
        } else {
            self.off
        }
    }
}

/// Who sees occupants' real JIDs: moderators (semi-anonymous) or anyone (non-anonymous).
struct Whois;

impl RoomOption for Whois {
    fn var(&self) -> &'static str {
        "muc#roomconfig_whois"
    }

    fn field(&self, config: &RoomConfig) -> Element {
        let option = |v: &str, label: &str| {
            Element::new("option", ns::DATA_FORMS).with_attr("label", label).with_child(value(v))
        };
        field(self.var(), "list-single", "Who may see real addresses")
            .with_child(value(if config.whois_anyone { "anyone" } else { "moderators" }))
            .with_child(option("moderators", "Moderators"))
            .with_child(option("anyone", "Anyone"))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], _: &Limits) -> Result<(), StanzaError> {
        config.whois_anyone = match values.first().map(String::as_str) {
            Some("anyone") => true,
            Some("moderators") | None => false,
            Some(other) => return Err(StanzaError::not_acceptable().with_text(format!("muc#roomconfig_whois: {other:?}"))),
        };
        Ok(())
    }

    fn features(&self, config: &RoomConfig) -> &'static [&'static str] {
        if config.whois_anyone {
            &["muc_nonanonymous"]
        } else {
            &["muc_semianonymous"]
        }
    }
}

/// How many messages of history a join gets by default (XEP-0045 `muc#maxhistoryfetch`).
struct HistoryLength;

/// The most history messages a room sends on join.
pub const MAX_HISTORY: u32 = 100;

impl RoomOption for HistoryLength {
    fn var(&self) -> &'static str {
        "muc#maxhistoryfetch"
    }

    fn field(&self, config: &RoomConfig) -> Element {
        field(self.var(), "text-single", "Messages of history sent on join").with_child(value(config.history_length.to_string()))
    }

    fn submit(&self, config: &mut RoomConfig, values: &[String], _: &Limits) -> Result<(), StanzaError> {
        config.history_length = parse_number(self.var(), values, MAX_HISTORY)?;
        Ok(())
    }
}

/// The owner's configuration form (XEP-0045 §10.2).
pub fn form(config: &RoomConfig) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(Element::new("title", ns::DATA_FORMS).with_text("Room configuration"))
        .with_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "FORM_TYPE")
                .with_attr("type", "hidden")
                .with_child(value(ns::MUC_ROOMCONFIG)),
        );
    for option in OPTIONS {
        x.push(option.field(config));
    }
    x
}

/// Applies a submitted form over `config`. Unknown fields are refused, so that an owner
/// never believes a setting took effect when it did not.
pub fn submit(config: &RoomConfig, form: &Element, limits: &Limits) -> Result<RoomConfig, StanzaError> {
    let mut next = config.clone();
    for f in form.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let var = f.attr("var").unwrap_or_default();
        let values: Vec<String> = f.children().filter(|v| v.is("value", ns::DATA_FORMS)).map(Element::text).collect();
        if var == "FORM_TYPE" {
            if values.first().is_some_and(|v| v != ns::MUC_ROOMCONFIG) {
                return Err(StanzaError::bad_request().with_text("FORM_TYPE must be muc#roomconfig"));
            }
            continue;
        }
        let option = OPTIONS.iter().find(|o| o.var() == var);
        let option = option.ok_or_else(|| StanzaError::not_acceptable().with_text(format!("unknown field {var:?}")))?;
        option.submit(&mut next, &values, limits)?;
    }
    Ok(next)
}
