//! XEP-0133 service administration: the accounts listed in `admins` add and delete
//! accounts, change passwords, end sessions, count and list who is online and send
//! announcements, as ad-hoc commands (XEP-0050) from any client that has them (Gajim,
//! Psi, slixmpp's `xep_0133`…).

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, StanzaError};
use jid::Jid;

use super::adhoc::{Completed, Fields};
use super::{AdhocCommand, Host, Module};
use crate::accounts::AccountError;
use crate::administration;
use crate::server::Server;

const ADMIN: &str = "http://jabber.org/protocol/admin";

pub struct ServiceAdministration;

impl Module for ServiceAdministration {
    fn register(self: Arc<Self>, host: &mut Host) {
        for kind in [
            Kind::AddUser,
            Kind::DeleteUser,
            Kind::ChangeUserPassword,
            Kind::EndUserSession,
            Kind::GetRegisteredUsersNum,
            Kind::GetOnlineUsersNum,
            Kind::GetOnlineUsersList,
            Kind::Announce,
        ] {
            host.command(Arc::new(kind));
        }
    }
}

/// One of the XEP-0133 commands offered.
#[derive(Clone, Copy)]
enum Kind {
    AddUser,
    DeleteUser,
    ChangeUserPassword,
    EndUserSession,
    GetRegisteredUsersNum,
    GetOnlineUsersNum,
    GetOnlineUsersList,
    Announce,
}

impl Kind {
    /// The node, the name, and the fields of the form: (var, type, label).
    fn spec(self) -> (&'static str, &'static str, &'static [(&'static str, &'static str, &'static str)]) {
        match self {
            Kind::AddUser => (
                concat!("http://jabber.org/protocol/admin#", "add-user"),
                "Add a user",
                &[
                    ("accountjid", "jid-single", "The Jabber ID for the account to be added"),
                    ("password", "text-private", "The password for this account"),
                    ("password-verify", "text-private", "Retype password"),
                ],
            ),
            Kind::DeleteUser => (concat!("http://jabber.org/protocol/admin#", "delete-user"), "Delete users", &[("accountjids", "jid-multi", "The Jabber ID(s) to delete")]),
            Kind::ChangeUserPassword => (
                concat!("http://jabber.org/protocol/admin#", "change-user-password"),
                "Change a user's password",
                &[("accountjid", "jid-single", "The Jabber ID for this account"), ("password", "text-private", "The new password")],
            ),
            Kind::EndUserSession => {
                (concat!("http://jabber.org/protocol/admin#", "end-user-session"), "End user sessions", &[("accountjids", "jid-multi", "The Jabber ID(s) whose sessions end")])
            }
            Kind::GetRegisteredUsersNum => (concat!("http://jabber.org/protocol/admin#", "get-registered-users-num"), "Get the number of registered users", &[]),
            Kind::GetOnlineUsersNum => (concat!("http://jabber.org/protocol/admin#", "get-online-users-num"), "Get the number of online users", &[]),
            Kind::GetOnlineUsersList => (concat!("http://jabber.org/protocol/admin#", "get-online-users-list"), "Get the list of online users", &[]),
            Kind::Announce => (
                concat!("http://jabber.org/protocol/admin#", "announce"),
                "Send an announcement to all online users",
                &[("subject", "text-single", "Subject"), ("announcement", "text-multi", "Announcement")],
            ),
        }
    }
}

fn field(var: &str, kind: &str, label: &str) -> Element {
    Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind).with_attr("label", label)
}

/// A form of `type` with the XEP-0133 FORM_TYPE.
fn form(kind: &str) -> Element {
    Element::new("x", ns::DATA_FORMS).with_attr("type", kind).with_child(
        field("FORM_TYPE", "hidden", "").with_child(Element::new("value", ns::DATA_FORMS).with_text(ADMIN)),
    )
}

/// A result form with one field of `values`.
fn result(var: &str, kind: &str, label: &str, values: impl IntoIterator<Item = String>) -> Element {
    let mut f = field(var, kind, label);
    for v in values {
        f.push(Element::new("value", ns::DATA_FORMS).with_text(v));
    }
    form("result").with_child(f)
}

/// A bare JID of a served domain, as (domain, user).
fn local_account(server: &Server, jid: &str) -> Result<(String, String), StanzaError> {
    administration::local_account(&server.config, jid).map_err(|why| StanzaError::not_acceptable().with_text(why))
}

fn account_error(e: AccountError) -> StanzaError {
    match e {
        AccountError::AlreadyExists => StanzaError::conflict().with_text(e.to_string()),
        AccountError::NotFound => StanzaError::item_not_found().with_text(e.to_string()),
        AccountError::InvalidUsername(_) | AccountError::InvalidPassword => StanzaError::not_acceptable().with_text(e.to_string()),
        AccountError::Storage(_) => StanzaError::internal_server_error(),
    }
}

#[async_trait]
impl AdhocCommand for Kind {
    fn node(&self) -> &'static str {
        self.spec().0
    }

    fn name(&self) -> &'static str {
        self.spec().1
    }

    /// The configured admins, signed in here.
    fn allowed(&self, server: &Server, requester: &Jid) -> bool {
        server.config.served_domain(requester.domain().as_str()).is_some()
            && server.config.admins.iter().any(|admin| *admin == requester.to_bare().as_str())
    }

    fn form(&self) -> Option<Element> {
        let (_, name, fields) = self.spec();
        if fields.is_empty() {
            return None;
        }
        let mut f = form("form").with_child(Element::new("title", ns::DATA_FORMS).with_text(name));
        for (var, kind, label) in fields {
            let mut field = field(var, kind, label);
            if *var != "subject" {
                field.push(Element::new("required", ns::DATA_FORMS));
            }
            f.push(field);
        }
        Some(f)
    }

    async fn complete(&self, server: &Arc<Server>, requester: &Jid, fields: &Fields) -> Result<Completed, StanzaError> {
        let done = |note: String| Ok(Completed { note, result: None });
        let domain = requester.domain().as_str();
        match self {
            Kind::AddUser => {
                let (host, user) = local_account(server, fields.required("accountjid")?)?;
                let password = fields.required("password")?;
                if fields.all("password-verify").first().map(String::as_str) != Some(password) {
                    return Err(StanzaError::not_acceptable().with_text("the passwords differ"));
                }
                let user = administration::create_account(server, &host, &user, password).await.map_err(account_error)?;
                tracing::info!(admin = %requester.to_bare(), "account {user}@{host} created through XEP-0133");
                done(format!("created {user}@{host}"))
            }
            Kind::DeleteUser => {
                let mut deleted = Vec::new();
                for jid in fields.all("accountjids") {
                    let (host, user) = local_account(server, jid)?;
                    administration::delete_account(server, &host, &user).await.map_err(account_error)?;
                    tracing::info!(admin = %requester.to_bare(), "account {user}@{host} deleted through XEP-0133");
                    deleted.push(format!("{user}@{host}"));
                }
                done(format!("deleted {}", deleted.join(", ")))
            }
            Kind::ChangeUserPassword => {
                let (host, user) = local_account(server, fields.required("accountjid")?)?;
                let ended = administration::change_password(server, &host, &user, fields.required("password")?)
                    .await
                    .map_err(account_error)?;
                done(format!("password changed for {user}@{host}; {ended} sessions ended"))
            }
            Kind::EndUserSession => {
                let mut ended = 0;
                for jid in fields.all("accountjids") {
                    ended += administration::end_sessions_of(server, jid, "ended by an administrator")
                        .map_err(|why| StanzaError::not_acceptable().with_text(why))?
                        .len();
                }
                done(format!("{ended} sessions ended"))
            }
            Kind::GetRegisteredUsersNum => {
                let count = server.store.list_accounts(domain).await.map_err(|_| StanzaError::internal_server_error())?.len();
                Ok(Completed {
                    note: format!("{count} registered users"),
                    result: Some(result("registeredusersnum", "text-single", "The number of registered users", [count.to_string()])),
                })
            }
            Kind::GetOnlineUsersNum => {
                let count = administration::online_accounts(server, domain).len();
                Ok(Completed {
                    note: format!("{count} online users"),
                    result: Some(result("onlineusersnum", "text-single", "The number of online users", [count.to_string()])),
                })
            }
            Kind::GetOnlineUsersList => {
                let online = administration::online_accounts(server, domain);
                Ok(Completed {
                    note: format!("{} online users", online.len()),
                    result: Some(result("onlineuserjids", "jid-multi", "The list of all online users", online)),
                })
            }
            Kind::Announce => {
                let text = fields.all("announcement").join("\n");
                if text.trim().is_empty() {
                    return Err(StanzaError::bad_request().with_text("the field announcement is required"));
                }
                let subject = fields.all("subject").first().map(String::as_str);
                let sent = administration::announce(server, &[domain], subject, &text);
                done(format!("sent to {sent} sessions"))
            }
        }
    }
}
