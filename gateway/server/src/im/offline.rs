//! XEP-0160 offline messages: stored durably before the sender moves on, delivered in
//! order with a XEP-0203 delay stamp when the user next sends available presence.

use std::sync::Arc;

use jabberwock_proto::{ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{ArchiveDelete, ArchiveQuery, NewArchiveItem, StorageError, UserRef};
use jid::{BareJid, Jid};

use crate::server::Server;
use crate::session::random_id;

const STORE: &str = "offline";

/// Stores a message for the existing account `to`.
pub async fn store(server: &Arc<Server>, to: &BareJid, st: Stanza) -> Result<(), (Stanza, StanzaError)> {
    let (Some(node), domain) = (to.node(), to.domain().as_str()) else {
        return Err((st, StanzaError::service_unavailable()));
    };
    let u = UserRef { host: domain, user: node.as_str() };
    let Ok(mut el) = st.to_element() else {
        return Err((st, StanzaError::bad_request()));
    };
    let now = time::OffsetDateTime::now_utc();
    el.push(Element::new("delay", ns::DELAY).with_attr("from", domain).with_attr("stamp", xep0082(now)).with_text("Offline storage"));
    let payload = Stanza::from_element(&el).to_bytes();
    let with = st.from().and_then(|f| Jid::new(f).ok()).map(|j| j.to_bare().to_string()).unwrap_or_default();
    let stamp_us = (now.unix_timestamp_nanos() / 1000) as i64;
    let item = NewArchiveItem { id: &random_id(), stamp_us, with: &with, payload: &payload };
    match server.store.archive_append(u, STORE, item, Some(server.config.limits.offline_quota)).await {
        Ok(()) => Ok(()),
        Err(StorageError::QuotaExceeded) => {
            Err((st, StanzaError::service_unavailable().with_text("the recipient's offline storage is full")))
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            Err((st, StanzaError::internal_server_error()))
        }
    }
}

/// Takes every stored message for the user, oldest first. They are deleted only after
/// they were read, so a failure leaves them stored.
pub async fn take_all(server: &Server, host: &str, user: &str) -> Vec<Stanza> {
    let u = UserRef { host, user };
    let page = match server.store.archive_query(u, STORE, &ArchiveQuery::default()).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "reading offline messages failed");
            return Vec::new();
        }
    };
    if page.items.is_empty() {
        return Vec::new();
    }
    let ids: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    if let Err(e) = server.store.archive_delete(u, STORE, ArchiveDelete::Ids(&ids)).await {
        tracing::error!(error = %e, "deleting delivered offline messages failed");
        return Vec::new();
    }
    page.items.iter().filter_map(|i| reader::parse_stanza(&i.payload, &Limits::unlimited()).ok()).collect()
}

/// An XEP-0082 timestamp in UTC, with milliseconds.
pub fn xep0082(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&f).expect("valid format")
}
