//! XEP-0004 data forms, as a list of fields the view renders by type (a room's
//! configuration, say), and the submission built back from the values the user set.

use jabberwock_proto::Element;

use crate::ns;

/// Fields a form may hold; a server sending more is cut off there.
pub const MAX_FIELDS: usize = 200;
/// Values (and options) a field may hold.
pub const MAX_VALUES: usize = 200;

/// XEP-0004 §3.3 field types. A type we do not know is kept by name and shown as a line
/// of text, as §3.3 asks for a field without a type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldKind {
    Boolean,
    Fixed,
    Hidden,
    JidMulti,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextPrivate,
    TextSingle,
    Unknown(String),
}

impl FieldKind {
    fn parse(t: Option<&str>) -> FieldKind {
        match t {
            Some("boolean") => FieldKind::Boolean,
            Some("fixed") => FieldKind::Fixed,
            Some("hidden") => FieldKind::Hidden,
            Some("jid-multi") => FieldKind::JidMulti,
            Some("jid-single") => FieldKind::JidSingle,
            Some("list-multi") => FieldKind::ListMulti,
            Some("list-single") => FieldKind::ListSingle,
            Some("text-multi") => FieldKind::TextMulti,
            Some("text-private") => FieldKind::TextPrivate,
            None | Some("text-single") => FieldKind::TextSingle,
            Some(other) => FieldKind::Unknown(other.to_owned()),
        }
    }

    /// Several values (one a line in the view).
    pub fn is_multi(&self) -> bool {
        matches!(self, FieldKind::JidMulti | FieldKind::ListMulti | FieldKind::TextMulti)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FormOption {
    pub label: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    /// Empty only for `fixed` fields, which are text to show and are not submitted.
    pub var: String,
    pub kind: FieldKind,
    pub label: Option<String>,
    pub desc: Option<String>,
    pub required: bool,
    pub values: Vec<String>,
    pub options: Vec<FormOption>,
}

impl Field {
    /// What to show as the field's name.
    pub fn title(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.var)
    }

    /// The single value (the first one).
    pub fn value(&self) -> &str {
        self.values.first().map_or("", String::as_str)
    }

    /// A boolean field's value (XEP-0004 §3.3: `1` or `true`).
    pub fn is_true(&self) -> bool {
        matches!(self.value(), "1" | "true")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Form {
    pub title: Option<String>,
    pub instructions: Vec<String>,
    pub fields: Vec<Field>,
}

impl Form {
    /// The form in `<x xmlns='jabber:x:data'/>`; `None` when `x` is not one.
    pub fn parse(x: &Element) -> Option<Form> {
        if !x.is("x", ns::DATA_FORMS) {
            return None;
        }
        let fields = x
            .children()
            .filter(|f| f.is("field", ns::DATA_FORMS))
            .filter_map(|f| {
                let kind = FieldKind::parse(f.attr("type"));
                let var = f.attr("var").unwrap_or_default().to_owned();
                // Only a fixed field may go without a name: nothing else could be submitted.
                if var.is_empty() && kind != FieldKind::Fixed {
                    return None;
                }
                let values = f.children().filter(|v| v.is("value", ns::DATA_FORMS)).take(MAX_VALUES).map(Element::text).collect();
                let options = f
                    .children()
                    .filter(|o| o.is("option", ns::DATA_FORMS))
                    .take(MAX_VALUES)
                    .filter_map(|o| {
                        let value = o.child_text("value", ns::DATA_FORMS)?;
                        Some(FormOption { label: o.attr("label").map_or_else(|| value.clone(), str::to_owned), value })
                    })
                    .collect();
                Some(Field {
                    var,
                    kind,
                    label: f.attr("label").filter(|l| !l.is_empty()).map(str::to_owned),
                    desc: f.child_text("desc", ns::DATA_FORMS).filter(|d| !d.is_empty()),
                    required: f.child("required", ns::DATA_FORMS).is_some(),
                    values,
                    options,
                })
            })
            .take(MAX_FIELDS)
            .collect();
        Some(Form {
            title: x.child_text("title", ns::DATA_FORMS).filter(|t| !t.is_empty()),
            instructions: x.children().filter(|i| i.is("instructions", ns::DATA_FORMS)).map(Element::text).collect(),
            fields,
        })
    }

    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var == var)
    }

    /// Sets a field's values; returns false when the form has no such field (a server
    /// that does not offer a setting is not sent it).
    pub fn set(&mut self, var: &str, values: Vec<String>) -> bool {
        match self.fields.iter_mut().find(|f| f.var == var && f.kind != FieldKind::Fixed) {
            Some(f) => {
                f.values = values;
                true
            }
            None => false,
        }
    }

    pub fn set_bool(&mut self, var: &str, on: bool) -> bool {
        self.set(var, vec![if on { "1" } else { "0" }.to_owned()])
    }

    /// The `<x type='submit'/>` with every field but the fixed ones (XEP-0004 §3.2).
    pub fn submission(&self) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for f in self.fields.iter().filter(|f| f.kind != FieldKind::Fixed) {
            let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", f.var.as_str());
            for v in &f.values {
                field.push(Element::new("value", ns::DATA_FORMS).with_text(v.as_str()));
            }
            x.push(field);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::parse;

    #[test]
    fn fields_are_read_by_type_and_submitted_back() {
        let x = parse(
            "<x xmlns='jabber:x:data' type='form'><title>Room</title><instructions>Set it up</instructions>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field type='fixed'><value>General</value></field>\
             <field var='muc#roomconfig_roomname' type='text-single' label='Name'><value>Lobby</value></field>\
             <field var='muc#roomconfig_publicroom' type='boolean' label='Public'><value>1</value><required/></field>\
             <field var='muc#roomconfig_whois' type='list-single'><option label='Moderators'><value>moderators</value></option>\
             <option><value>anyone</value></option><value>moderators</value></field>\
             <field var='admins' type='jid-multi'><value>a@x</value><value>b@x</value></field>\
             <field var='x-future' type='colour-picker'><value>red</value></field>\
             <field var='plain'><value>no type</value></field>\
             <field type='text-single'><value>no name</value></field></x>",
        );
        let mut form = Form::parse(&x).unwrap();
        assert_eq!(form.title.as_deref(), Some("Room"));
        assert_eq!(form.instructions, ["Set it up"]);
        let kinds: Vec<_> = form.fields.iter().map(|f| f.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                FieldKind::Hidden,
                FieldKind::Fixed,
                FieldKind::TextSingle,
                FieldKind::Boolean,
                FieldKind::ListSingle,
                FieldKind::JidMulti,
                FieldKind::Unknown("colour-picker".into()),
                FieldKind::TextSingle,
            ],
            "a field without a name is dropped"
        );
        let public = form.field("muc#roomconfig_publicroom").unwrap();
        assert!(public.is_true() && public.required);
        assert_eq!(public.title(), "Public");
        let whois = form.field("muc#roomconfig_whois").unwrap();
        assert_eq!(whois.options.iter().map(|o| o.label.as_str()).collect::<Vec<_>>(), ["Moderators", "anyone"]);
        assert!(form.set_bool("muc#roomconfig_publicroom", false));
        assert!(form.set("muc#roomconfig_roomname", vec!["Kitchen".into()]));
        assert!(!form.set("muc#roomconfig_nosuch", vec!["1".into()]), "not offered: not sent");

        let sub = form.submission();
        assert_eq!(sub.attr("type"), Some("submit"));
        let sent: Vec<(String, Vec<String>)> = sub
            .children()
            .map(|f| (f.attr("var").unwrap().to_owned(), f.children().map(Element::text).collect()))
            .collect();
        assert_eq!(sent.len(), 7, "everything but the fixed text");
        assert_eq!(sent[1], ("muc#roomconfig_roomname".to_owned(), vec!["Kitchen".to_owned()]));
        assert_eq!(sent[2], ("muc#roomconfig_publicroom".to_owned(), vec!["0".to_owned()]));
        assert_eq!(sent[4].1, ["a@x", "b@x"]);
        assert_eq!(sent[5], ("x-future".to_owned(), vec!["red".to_owned()]), "unknown types go back as they came");
        assert!(Form::parse(&parse("<query xmlns='jabber:x:data'/>")).is_none());
    }

    #[test]
    fn oversized_forms_are_cut() {
        let many: String = (0..MAX_FIELDS + 50).map(|i| format!("<field var='f{i}'><value>v</value></field>")).collect();
        let form = Form::parse(&parse(&format!("<x xmlns='jabber:x:data' type='form'>{many}</x>"))).unwrap();
        assert_eq!(form.fields.len(), MAX_FIELDS);
    }
}
