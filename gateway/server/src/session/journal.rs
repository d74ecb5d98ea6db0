//! The durable record of what a parked XEP-0198 session holds.
//!
//! A parked session keeps its unacknowledged messages, and whatever arrives for it, in
//! memory until it is resumed or its window passes. Each of those messages has already
//! been acknowledged to its sender, so a crash must not lose them: they are written
//! through to storage as they are queued, under a journal of their own. On resumption or
//! expiry the journal is deleted (on expiry only after the messages were routed again to
//! another resource or offline storage); a journal still there when the server starts
//! belonged to a session the process did not outlive, and its messages go to offline
//! storage then.
//!
//! Storage: the journal's messages are archive items of the user, in a store named after
//! the journal; the server-wide list of journals is a map of the domain (`user = ""`). In
//! a cluster each node has its own list, so the node that takes over after a dead one
//! routes that node's journals (XEP-0198's timeout, on its behalf).

use std::sync::Arc;

use jabberwock_proto::{reader, Limits, Stanza, StanzaKind};
use jabberwock_storage::{ArchiveAppend, ArchiveDelete, ArchiveQuery, UserRef};
use jid::BareJid;

use crate::server::Server;
use crate::stanzas::{now_us, random_id};

/// The domain's map of live journals (journal id → the user's localpart) of `node` in a
/// cluster, or of the one server.
fn journals(node: Option<&str>) -> String {
    match node {
        Some(node) => format!("sm-journals.{node}"),
        None => "sm-journals".to_owned(),
    }
}

/// This process's map of live journals.
fn own_journals(server: &Server) -> String {
    journals(server.sessions.cluster().as_deref().map(crate::cluster::Cluster::node))
}
/// Messages read back per storage query when a journal is recovered.
const RECOVERY_PAGE: usize = 500;

pub(crate) struct Journal {
    /// The map it is listed in.
    list: String,
    id: String,
    domain: String,
    user: String,
}

impl Journal {
    /// Starts a journal for a session of `domain`'s `user` that is being parked.
    pub(crate) async fn open(server: &Server, domain: &str, user: &str) -> Journal {
        let journal = Journal { list: own_journals(server), id: random_id(), domain: domain.to_owned(), user: user.to_owned() };
        let listed = server.store.map_set(UserRef { host: domain, user: "" }, &journal.list, &journal.id, Some(user.as_bytes())).await;
        if let Err(e) = listed {
            tracing::error!(error = %e, user, "could not record a parked session; its messages live in memory only");
        }
        journal
    }

    fn store(&self) -> String {
        store_name(&self.id)
    }

    /// Writes the messages among `stanzas` (those worth routing again: not errors) in one
    /// transaction.
    pub(crate) async fn record<'a>(&self, server: &Server, stanzas: impl IntoIterator<Item = &'a Stanza>) {
        let stamp_us = now_us();
        let items: Vec<ArchiveAppend> = stanzas
            .into_iter()
            .filter(|st| worth_rerouting(st))
            .map(|st| ArchiveAppend {
                host: self.domain.clone(),
                user: self.user.clone(),
                store: self.store(),
                id: random_id(),
                stamp_us,
                with: String::new(),
                payload: st.to_bytes(),
            })
            .collect();
        if items.is_empty() {
            return;
        }
        if let Err(e) = server.store.archive_append_batch(&items).await {
            tracing::error!(error = %e, user = %self.user, "could not record a parked session's messages; they live in memory only");
        }
    }

    /// Deletes the journal: its messages were handed to a connection or routed again.
    pub(crate) async fn discard(self, server: &Server) {
        delete(server, &self.list, &self.domain, &self.user, &self.id).await;
    }
}

/// Messages (other than errors) are what a session that never delivered them routes
/// again; iqs and presence are not kept beyond it (XEP-0198 §5, RFC 6121 §8.5).
pub(crate) fn worth_rerouting(st: &Stanza) -> bool {
    st.kind() == StanzaKind::Message && st.stanza_type() != Some("error")
}

fn store_name(journal: &str) -> String {
    format!("sm-journal.{journal}")
}

async fn delete(server: &Server, list: &str, domain: &str, user: &str, journal: &str) {
    let deleted = server.store.archive_delete(UserRef { host: domain, user }, &store_name(journal), ArchiveDelete::All).await;
    let unlisted = match deleted {
        Ok(_) => server.store.map_set(UserRef { host: domain, user: "" }, list, journal, None).await,
        Err(e) => Err(e),
    };
    if let Err(e) = unlisted {
        // Left for the next start, which routes the messages again: a duplicate at worst.
        tracing::warn!(error = %e, user, "could not delete a parked session's journal");
    }
}

/// At start, before any client connects: routes the messages of every journal left by a
/// process that ended while sessions were parked (to offline storage, since nobody is
/// signed in yet), then deletes the journals. In a cluster, the same for cluster node
/// `node` once it is gone (its users may be signed in elsewhere by then). Returns how
/// many messages were routed.
pub(crate) async fn recover(server: &Arc<Server>, node: Option<&str>) -> usize {
    let list = journals(node);
    let mut total = 0;
    for domain in &server.config.domains {
        let journals = match server.store.map_all(UserRef { host: domain, user: "" }, &list).await {
            Ok(journals) => journals,
            Err(e) => {
                tracing::error!(error = %e, %domain, "could not read parked sessions' journals");
                continue;
            }
        };
        for (journal, user) in journals {
            let user = String::from_utf8_lossy(&user).into_owned();
            let routed = recover_one(server, domain, &user, &journal).await;
            tracing::info!(%domain, %user, messages = routed, "routed the messages of a session parked when its server stopped");
            delete(server, &list, domain, &user, &journal).await;
            total += routed;
        }
    }
    total
}

async fn recover_one(server: &Arc<Server>, domain: &str, user: &str, journal: &str) -> usize {
    let Ok(bare) = BareJid::new(&format!("{user}@{domain}")) else { return 0 };
    let u = UserRef { host: domain, user };
    let store = store_name(journal);
    let mut after: Option<String> = None;
    let mut routed = 0;
    loop {
        let q = ArchiveQuery { after_id: after.as_deref(), limit: Some(RECOVERY_PAGE), ..Default::default() };
        let page = match server.store.archive_query(u, &store, &q).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, user, "could not read a parked session's journal");
                return routed;
            }
        };
        for item in &page.items {
            if let Ok(st) = reader::parse_stanza(&item.payload, &Limits::unlimited()) {
                crate::im::message::reroute(server, st, &bare).await;
                routed += 1;
            }
        }
        match page.items.last() {
            Some(last) if !page.complete => after = Some(last.id.clone()),
            _ => return routed,
        }
    }
}
