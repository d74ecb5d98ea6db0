//! XEP-0157 contact addresses: whom to contact about the server (abuse, security,
//! support…), from `[contact]`, as a XEP-0128 form in the server's disco#info.

use std::sync::Arc;

use jabberwock_proto::{ns, Element};

use super::{Host, Module};

pub const FORM_TYPE: &str = "http://jabber.org/network/serverinfo";

pub struct ContactAddresses;

impl Module for ContactAddresses {
    fn register(self: Arc<Self>, host: &mut Host) {
        let contact = &host.config.contact;
        if contact.fields().iter().all(|(_, uris)| uris.is_empty()) {
            return;
        }
        let value = |v: &str| Element::new("value", ns::DATA_FORMS).with_text(v);
        let mut form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", "FORM_TYPE").with_attr("type", "hidden").with_child(value(FORM_TYPE)));
        for (var, uris) in contact.fields() {
            let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", "list-multi");
            for uri in uris {
                field.push(value(uri));
            }
            form.push(field);
        }
        host.server_form(form);
    }
}
