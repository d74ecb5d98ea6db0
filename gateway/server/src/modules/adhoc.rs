//! XEP-0050 ad-hoc commands at the server's domain: lists the commands modules offer
//! ([`super::AdhocCommand`]) to whoever may run them, and runs them, a form then its
//! submission. The commands hold no state between the two steps, so the session id only
//! ties them together for the client.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};
use crate::server::Server;

pub const COMMANDS: &str = "http://jabber.org/protocol/commands";

pub struct AdhocCommands;

impl Module for AdhocCommands {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[COMMANDS]);
        host.iq(IqRoute { target: IqTarget::Host, name: "command", ns: COMMANDS }, self);
    }
}

/// The values of a submitted form's fields, by `var`.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, Vec<String>>);

impl Fields {
    fn of(form: &Element) -> Fields {
        let fields = form.children().filter(|f| f.name() == "field" && f.ns() == ns::DATA_FORMS).filter_map(|f| {
            let values = f.children().filter(|v| v.name() == "value").map(|v| v.text()).collect();
            Some((f.attr("var")?.to_owned(), values))
        });
        Fields(fields.collect())
    }

    /// Every value of field `var`.
    pub fn all(&self, var: &str) -> &[String] {
        self.0.get(var).map_or(&[], Vec::as_slice)
    }

    /// The single value of a required field.
    pub fn required(&self, var: &str) -> Result<&str, StanzaError> {
        match self.all(var).first().map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(StanzaError::bad_request().with_text(format!("the field {var} is required"))),
        }
    }
}

/// What a completed command tells its requester: a note, and a result form if it has one.
pub struct Completed {
    pub note: String,
    pub result: Option<Element>,
}

/// The commands `requester` may run at `domain`, for disco#items on the commands node
/// (XEP-0050 §2.2).
pub fn items_for(server: &Server, requester: &jid::Jid, domain: &str) -> Element {
    let mut query = Element::new("query", ns::DISCO_ITEMS).with_attr("node", COMMANDS);
    for command in server.modules.commands().iter().filter(|c| c.allowed(server, requester)) {
        query.push(
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", domain)
                .with_attr("node", command.node())
                .with_attr("name", command.name()),
        );
    }
    query
}

/// disco#info on a command's node (XEP-0050 §2.3), if `node` is one `requester` may run.
pub fn info_for(server: &Server, requester: &jid::Jid, node: &str) -> Option<Element> {
    let command = server.modules.commands().iter().find(|c| c.node() == node && c.allowed(server, requester))?;
    let feature = |var: &str| Element::new("feature", ns::DISCO_INFO).with_attr("var", var);
    Some(
        Element::new("query", ns::DISCO_INFO)
            .with_attr("node", node)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "automation")
                    .with_attr("type", "command-node")
                    .with_attr("name", command.name()),
            )
            .with_child(feature(COMMANDS))
            .with_child(feature(ns::DATA_FORMS)),
    )
}

#[async_trait]
impl IqHandler for AdhocCommands {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        if !cx.set {
            return Err(StanzaError::bad_request());
        }
        let node = payload.attr("node").unwrap_or_default();
        let command = cx.server.modules.commands().iter().find(|c| c.node() == node).ok_or_else(StanzaError::item_not_found)?;
        if !command.allowed(cx.server, cx.from) {
            return Err(StanzaError::forbidden());
        }
        let reply = |status: &str, session: &str| {
            Element::new("command", COMMANDS).with_attr("node", node).with_attr("sessionid", session).with_attr("status", status)
        };
        let session = payload.attr("sessionid").map(str::to_owned).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let submitted = payload.children().find(|x| x.name() == "x" && x.ns() == ns::DATA_FORMS && x.attr("type") == Some("submit"));
        match payload.attr("action").unwrap_or("execute") {
            "cancel" => return Ok(Some(reply("canceled", &session))),
            "execute" | "complete" | "next" => {}
            other => return Err(StanzaError::bad_request().with_text(format!("no action {other:?} here"))),
        }
        if let (Some(form), None) = (command.form(), submitted) {
            let actions = Element::new("actions", COMMANDS).with_attr("execute", "complete").with_child(Element::new("complete", COMMANDS));
            return Ok(Some(reply("executing", &session).with_child(actions).with_child(form)));
        }
        let fields = submitted.map(Fields::of).unwrap_or_default();
        let done = command.complete(cx.server, cx.from, &fields).await?;
        let mut out = reply("completed", &session).with_child(Element::new("note", COMMANDS).with_attr("type", "info").with_text(done.note));
        if let Some(result) = done.result {
            out.push(result);
        }
        Ok(Some(out))
    }
}
