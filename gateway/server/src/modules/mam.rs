//! XEP-0313 message archive management (`urn:xmpp:mam:2`): every one-to-one message is
//! kept in the archive of each local party, with a XEP-0359 stanza-id, and an account
//! pages through its archive with XEP-0059 result sets.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{escape, ns, Element, Stanza, StanzaError};
use jabberwock_storage::{ArchiveAppend, ArchiveDelete, ArchiveQuery, StorageError, Store, UserRef};
use jid::{BareJid, Jid};
use tokio::sync::{mpsc, oneshot};

use super::{AccountHooks, AccountReport, Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, MessageHooks, Module, SentMessage, ShutdownHooks};
use crate::cache::{AccountCache, Weigh};
use crate::config::ArchiveDefault;
use crate::im::roster::{self, Account};
use crate::server::Server;
use crate::stanzas::{forwarded, now_us, random_id, xep0082};

const STORE: &str = "mam";
const PREFS: &str = "mam_prefs";
/// Results per page when the client names no `max`, and the most it may ask for.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 250;
/// Most archive items written in one transaction.
const MAX_BATCH: usize = 4096;
/// How long the writer gathers items before committing: one fsync then covers every
/// message of that window instead of a few.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

enum WriterRequest {
    Append(ArchiveAppend),
    /// Takes back an append: the message it archived bounced.
    Retract(SentEntry),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Archive writes leave the delivery path: a writer task commits whatever has queued up
/// in one transaction, so one durable commit covers many messages. The queue is bounded:
/// when messages arrive faster than the database can archive them, delivery waits for
/// the writer instead of a backlog growing without limit (and being lost on a crash).
struct ArchiveWriter {
    tx: mpsc::Sender<WriterRequest>,
}

/// Archive items (and requests) that may wait for the writer: about a second of a busy
/// server's traffic.
const QUEUE: usize = 16_384;

impl ArchiveWriter {
    /// Starts the writer, and the hourly retention sweep when `retention_days` is set.
    fn start(store: Store, retention_days: u64, metrics: WriterMetrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        if retention_days > 0 {
            tokio::spawn(expire_old_messages(store.clone(), retention_days));
        }
        tokio::spawn(write_batches(store, rx, metrics));
        ArchiveWriter { tx }
    }

    async fn append(&self, item: ArchiveAppend) {
        let _ = self.tx.send(WriterRequest::Append(item)).await;
    }

    async fn retract(&self, entry: SentEntry) {
        let _ = self.tx.send(WriterRequest::Retract(entry)).await;
    }

    /// Waits until every append queued so far is committed.
    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(WriterRequest::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn expire_old_messages(store: Store, retention_days: u64) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(retention_days as i64);
        match store.archive_expire(STORE, (cutoff.unix_timestamp_nanos() / 1000) as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "archive retention removed old messages"),
            Err(e) => tracing::error!(error = %e, "archive retention failed"),
        }
    }
}

/// What the writer reports: how many requests wait for it, and how large its batches are.
struct WriterMetrics {
    queue: prometheus_client::metrics::gauge::Gauge,
    batch: crate::metrics::Histogram,
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<WriterRequest>, metrics: WriterMetrics) {
    let mut batch: Vec<ArchiveAppend> = Vec::new();
    let mut committed_retractions = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut next = Some(first);
        while let Some(req) = next {
            match req {
                WriterRequest::Append(item) => batch.push(item),
                WriterRequest::Retract(entry) => match batch.iter().position(|i| entry.matches(i)) {
                    Some(at) => {
                        batch.remove(at);
                    }
                    // Already in an earlier commit.
                    None => committed_retractions.push(entry),
                },
                // Someone waits for the archive: commit now.
                WriterRequest::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            next = if batch.len() < MAX_BATCH { tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten() } else { None };
        }
        metrics.queue.set(rx.len() as i64);
        if !batch.is_empty() {
            metrics.batch.observe(batch.len() as f64);
            commit(&store, &batch).await;
            batch.clear();
        }
        for entry in committed_retractions.drain(..) {
            let u = UserRef { host: &entry.host, user: &entry.user };
            if let Err(e) = store.archive_delete(u, STORE, ArchiveDelete::Ids(&[entry.id.as_str()])).await {
                tracing::error!(error = %e, "retracting an archived message failed");
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Pauses before each new attempt at a batch the database refused: a database that is
/// locked by another process or briefly failing gets about twenty seconds (plus its busy
/// timeout per attempt) to recover. Meanwhile the writer's queue fills and delivery waits.
const RETRY_PAUSES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(15),
];

/// Archive items given up on since the server started, after every attempt failed.
static LOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Commits a batch, retrying as [`RETRY_PAUSES`] allows; what still fails is counted in
/// [`LOST`] and logged as an error, never dropped silently.
async fn commit(store: &Store, batch: &[ArchiveAppend]) {
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let e = match store.archive_append_batch(batch).await {
            Ok(()) => return,
            // An id already archived (an earlier attempt that did commit, or a clash): the
            // items go one by one, skipping those already there.
            Err(StorageError::AlreadyExists) => return commit_each(store, batch).await,
            Err(e) => e,
        };
        match pauses.next() {
            Some(pause) => {
                tracing::warn!(error = %e, items = batch.len(), "archiving messages failed; trying again");
                tokio::time::sleep(*pause).await;
            }
            None => {
                let lost = LOST.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed) + batch.len() as u64;
                tracing::error!(error = %e, items = batch.len(), lost_since_start = lost, "archiving messages failed; they are not in the archive");
                return;
            }
        }
    }
}

async fn commit_each(store: &Store, batch: &[ArchiveAppend]) {
    for i in batch {
        let u = UserRef { host: &i.host, user: &i.user };
        let item = jabberwock_storage::NewArchiveItem { id: &i.id, stamp_us: i.stamp_us, with: &i.with, payload: &i.payload };
        match store.archive_append(u, &i.store, item, None).await {
            Ok(()) | Err(StorageError::AlreadyExists) => {}
            Err(e) => {
                let lost = LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::error!(error = %e, lost_since_start = lost, "archiving a message failed; it is not in the archive");
            }
        }
    }
}

impl Weigh for ArchiveDefault {
    fn weigh(&self) -> usize {
        0
    }
}

pub struct Mam {
    writer: ArchiveWriter,
    /// Each account's default archiving preference: it is read for every message.
    prefs: AccountCache<ArchiveDefault>,
    /// The operator's default, for accounts that set none.
    default: ArchiveDefault,
    /// Messages an account's archive may hold; 0: no quota.
    quota: u64,
}

impl Mam {
    pub fn new(store: Store, limits: &crate::config::LimitsConfig, metrics: &crate::metrics::Metrics) -> Self {
        let writer_metrics = WriterMetrics { queue: metrics.archive_queue.clone(), batch: metrics.archive_batch.clone() };
        Mam {
            writer: ArchiveWriter::start(store, limits.archive_retention_days, writer_metrics),
            prefs: AccountCache::new(limits.account_cache()),
            default: limits.archive_default,
            quota: limits.archive_quota,
        }
    }

    /// Queues an item for any archive (a room's, say) on the batching writer.
    pub(crate) async fn append(&self, item: ArchiveAppend) {
        self.writer.append(item).await;
    }

    /// Waits until every item queued so far is committed.
    pub(crate) async fn flush(&self) {
        self.writer.flush().await;
    }
}

impl Module for Mam {
    fn register(self: Arc<Self>, host: &mut Host) {
        // On the domain too: some clients (profanity 0.13) look for it there only.
        host.features(&[ns::SID, ns::MAM]);
        host.account_features(&[ns::MAM]);
        host.iqs(
            &[
                IqRoute { target: IqTarget::Account, name: "query", ns: ns::MAM },
                IqRoute { target: IqTarget::Account, name: "prefs", ns: ns::MAM },
            ],
            self.clone(),
        );
        host.message_hooks(self.clone());
        host.account_hooks(self.clone());
        host.account_report(self.clone());
        host.shutdown_hooks(self);
    }
}

#[async_trait]
impl AccountReport for Mam {
    async fn report(&self, server: &Server, account: UserRef<'_>) -> Vec<String> {
        let held = server.store.archive_count(account, STORE).await.map_or_else(|e| format!("unknown ({e})"), |n| n.to_string());
        vec![format!("archived messages (XEP-0313): {held}")]
    }
}

impl AccountHooks for Mam {
    fn deleted(&self, account: &BareJid) {
        self.prefs.forget(account.as_str());
    }

    fn changed_elsewhere(&self, account: &BareJid) {
        self.prefs.forget(account.as_str());
    }
}

#[async_trait]
impl ShutdownHooks for Mam {
    /// Everything queued reaches the database before it closes.
    async fn stopping(&self, _server: &Arc<Server>) {
        self.writer.flush().await;
    }
}

#[async_trait]
impl MessageHooks for Mam {
    /// A message a local account sends is archived before it is routed, so that it comes
    /// before any reply in the sender's archive.
    async fn sending(&self, m: &mut SentMessage<'_>) -> Result<(), StanzaError> {
        let owner = m.sender.to_bare();
        let Some(a) = Account::of(&owner) else { return Ok(()) };
        if let Some(id) = self.store(m.server, &owner, &m.to.to_bare(), m.stanza).await? {
            m.notes.insert(SentEntry { host: a.host.to_owned(), user: a.user.to_owned(), id });
        }
        Ok(())
    }

    /// A sent message that bounced is taken back out of its sender's archive.
    async fn sent(&self, m: &mut SentMessage<'_>, bounced: bool) {
        if let (true, Some(entry)) = (bounced, m.notes.remove::<SentEntry>()) {
            self.writer.retract(entry).await;
        }
    }

    /// A message for a local account is kept in its archive and stamped with the archive
    /// id as a XEP-0359 stanza-id (any stanza-id claiming to be ours is removed first).
    async fn delivering(&self, server: &Server, to: &BareJid, from: &BareJid, st: &mut Stanza) -> Result<(), StanzaError> {
        strip_forged_stanza_ids(st, to);
        if let Some(id) = self.store(server, to, from, st).await? {
            let mut xml = Vec::from(&b"<stanza-id"[..]);
            escape::namespace_declaration(&mut xml, "", ns::SID);
            escape::attribute(&mut xml, "id", &id);
            escape::attribute(&mut xml, "by", to.as_str());
            xml.extend_from_slice(b"/>");
            st.append_raw_child(std::str::from_utf8(&xml).expect("UTF-8"));
        }
        Ok(())
    }

    /// A message that bounced (the recipient's offline storage was full, say) was never
    /// delivered: it leaves the recipient's archive, found by the stanza-id stamped above.
    async fn not_delivered(&self, _server: &Server, to: &BareJid, st: &Stanza) {
        let Some(a) = Account::of(to) else { return };
        if !st.inner().contains(ns::SID) {
            return;
        }
        let Ok(el) = st.to_element() else { return };
        let ours = el.children().find(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(to.as_str()));
        if let Some(id) = ours.and_then(|c| c.attr("id")) {
            self.writer.retract(SentEntry { host: a.host.to_owned(), user: a.user.to_owned(), id: id.to_owned() }).await;
        }
    }
}

#[async_trait]
impl IqHandler for Mam {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        if cx.from.to_bare() != owner {
            return Err(StanzaError::forbidden());
        }
        let a = Account::of(&owner).ok_or_else(StanzaError::bad_request)?;
        match (payload.name(), cx.set) {
            ("prefs", false) => Ok(Some(prefs_element(self.load_default(cx.server, &owner, a).await))),
            ("prefs", true) => {
                let default = match payload.attr("default") {
                    Some(value) => ArchiveDefault::parse(value).ok_or_else(StanzaError::bad_request)?,
                    None => self.default,
                };
                let u = UserRef { host: a.host, user: a.user };
                cx.server.store.kv_set(u, PREFS, Some(default.as_str().as_bytes())).await.map_err(internal)?;
                self.prefs.forget(owner.as_str());
                crate::cluster::account_changed(cx.server, &owner).await;
                Ok(Some(prefs_element(default)))
            }
            ("query", false) => Ok(Some(query_form())),
            ("query", true) => {
                // The query must see every message already queued for the archive.
                self.writer.flush().await;
                let u = UserRef { host: a.host, user: a.user };
                let (results, fin) = query(cx.server, u, STORE, owner.as_str(), false, cx.from, payload).await?;
                for r in results {
                    cx.send_before_result(r);
                }
                Ok(Some(fin))
            }
            _ => Err(StanzaError::bad_request()),
        }
    }
}

fn internal(e: StorageError) -> StanzaError {
    tracing::error!(error = %e, "archive storage failed");
    StanzaError::internal_server_error()
}

fn prefs_element(default: ArchiveDefault) -> Element {
    Element::new("prefs", ns::MAM)
        .with_attr("default", default.as_str())
        .with_child(Element::new("always", ns::MAM))
        .with_child(Element::new("never", ns::MAM))
}

/// The fields a query may filter on (XEP-0313 §4.1.1).
fn query_form() -> Element {
    let field = |var: &str, kind: &str| Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind);
    let form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(field("FORM_TYPE", "hidden").with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MAM)))
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"))
        .with_child(field("before-id", "text-single"))
        .with_child(field("after-id", "text-single"));
    Element::new("query", ns::MAM).with_child(form)
}


fn form_value(query: &Element, var: &str) -> Option<String> {
    let form = query.child("x", ns::DATA_FORMS)?;
    let field = form.children().find(|f| f.attr("var") == Some(var))?;
    field.child_text("value", ns::DATA_FORMS).filter(|v| !v.is_empty())
}

fn parse_stamp(s: &str) -> Result<i64, StanzaError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| StanzaError::bad_request().with_text(format!("{s:?} is not an XEP-0082 date-time")))?;
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}

/// The form fields a query may use (XEP-0313 §4.1.1 and the before-id/after-id extension).
const FIELDS: [&str; 6] = ["FORM_TYPE", "with", "start", "end", "before-id", "after-id"];

/// Refuses a form the server would otherwise misread: another FORM_TYPE or an unknown field.
fn check_form(payload: &Element) -> Result<(), StanzaError> {
    let Some(form) = payload.child("x", ns::DATA_FORMS) else { return Ok(()) };
    for field in form.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let var = field.attr("var").unwrap_or_default();
        if !FIELDS.contains(&var) {
            return Err(StanzaError::bad_request().with_text(format!("unsupported field {var:?}")));
        }
    }
    match form_value(payload, "FORM_TYPE") {
        Some(t) if t != ns::MAM => Err(StanzaError::bad_request().with_text("FORM_TYPE must be urn:xmpp:mam:2")),
        _ => Ok(()),
    }
}

/// Answers a XEP-0313 query on the archive `store` of `u`, which answers as `archive`
/// (an account's or a room's bare JID) to `requester`: the result messages, and the
/// `<fin/>` for the iq result. `by_occupant`: a room's archive, filed by occupant JID.
pub(super) async fn query(
    server: &Server,
    u: UserRef<'_>,
    store: &str,
    archive: &str,
    by_occupant: bool,
    requester: &Jid,
    payload: &Element,
) -> Result<(Vec<Stanza>, Element), StanzaError> {
    check_form(payload)?;
    // An account's archive files messages under the other party's bare JID, a room's
    // under the occupant JID (room@service/nick): `with` is read the same way.
    let with = form_value(payload, "with")
        .map(|w| {
            let jid = Jid::new(&w).map_err(|_| StanzaError::jid_malformed())?;
            Ok::<_, StanzaError>(if by_occupant { jid.to_string() } else { jid.to_bare().to_string() })
        })
        .transpose()?;
    let start = form_value(payload, "start").map(|s| parse_stamp(&s)).transpose()?;
    let end = form_value(payload, "end").map(|s| parse_stamp(&s)).transpose()?;
    let set = payload.child("set", ns::RSM);
    let max = set
        .and_then(|s| s.child_text("max", ns::RSM))
        .map(|m| m.trim().parse::<usize>().map_err(|_| StanzaError::bad_request()))
        .transpose()?
        .unwrap_or(DEFAULT_PAGE)
        .min(MAX_PAGE);
    let after = set.and_then(|s| s.child_text("after", ns::RSM)).or_else(|| form_value(payload, "after-id"));
    let before_el = set.and_then(|s| s.child("before", ns::RSM));
    let before = before_el.map(Element::text).filter(|b| !b.is_empty()).or_else(|| form_value(payload, "before-id"));
    let q = ArchiveQuery {
        with: with.as_deref(),
        start_us: start,
        end_us: end,
        after_id: after.as_deref(),
        before_id: before.as_deref(),
        limit: Some(max),
        max_bytes: None,
        // An empty <before/> asks for the last page.
        last_page: before_el.is_some(),
    };
    let page = match server.store.archive_query(u, store, &q).await {
        Ok(page) => page,
        Err(StorageError::NotFound) => return Err(StanzaError::item_not_found().with_text("no such archive id")),
        Err(e) => return Err(internal(e)),
    };
    let queryid = payload.attr("queryid");
    let mut results = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let stamp = time::OffsetDateTime::from_unix_timestamp_nanos(item.stamp_us as i128 * 1000).map(xep0082).unwrap_or_default();
        let original = String::from_utf8_lossy(&item.payload);
        let mut result = Vec::from(&b"<result"[..]);
        escape::namespace_declaration(&mut result, "", ns::MAM);
        if let Some(qid) = queryid {
            escape::attribute(&mut result, "queryid", qid);
        }
        escape::attribute(&mut result, "id", &item.id);
        result.push(b'>');
        let mut inner = String::from_utf8(result).expect("UTF-8");
        inner.push_str(&forwarded(&original, Some(&stamp)));
        inner.push_str("</result>");
        let attrs = vec![("from".to_owned(), archive.to_owned()), ("to".to_owned(), requester.to_string()), ("id".to_owned(), random_id())];
        results.push(Stanza::from_parts("message", ns::CLIENT, attrs, Vec::new(), inner.into()));
    }
    let mut rsm = Element::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        rsm.push(Element::new("first", ns::RSM).with_text(first.id.clone()));
        rsm.push(Element::new("last", ns::RSM).with_text(last.id.clone()));
    }
    Ok((results, Element::new("fin", ns::MAM).with_attr("complete", if page.complete { "true" } else { "false" }).with_child(rsm)))
}

/// XEP-0313 §5.1.1: chat and normal messages with a body are archived, and so are those
/// a XEP-0334 `<store/>` hint asks for (reactions, receipts, chat markers: without them a
/// client that loads history cannot show what happened to a message), unless a hint
/// forbids storing them. Only a message naming the hints namespace is parsed.
fn archivable(st: &Stanza) -> bool {
    if !matches!(st.stanza_type().unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    let inner = st.inner();
    let has_body = inner.contains("<body");
    if !inner.contains(ns::HINTS) {
        return has_body;
    }
    let Ok(el) = st.to_element() else { return has_body };
    let hint = |name: &str| el.child(name, ns::HINTS).is_some();
    !(hint("no-store") || hint("no-permanent-store")) && (has_body || hint("store"))
}

impl Mam {
    /// The account's default archiving preference.
    async fn load_default(&self, server: &Server, owner: &BareJid, a: Account<'_>) -> ArchiveDefault {
        self.prefs
            .get_or_load(owner.as_str(), || async {
                match server.store.kv_get(UserRef { host: a.host, user: a.user }, PREFS).await {
                    Ok(Some(v)) => std::str::from_utf8(&v).ok().and_then(ArchiveDefault::parse).unwrap_or(self.default),
                    _ => self.default,
                }
            })
            .await
    }

    /// Queues `st` for `owner`'s archive (with `with`, the other party) if it qualifies
    /// and the account's preferences allow; returns the archive id.
    async fn store(&self, server: &Server, owner: &BareJid, with: &BareJid, st: &Stanza) -> Result<Option<String>, StanzaError> {
        let Some(a) = Account::of(owner) else { return Ok(None) };
        if !archivable(st) {
            return Ok(None);
        }
        match self.load_default(server, owner, a).await {
            ArchiveDefault::Never => return Ok(None),
            ArchiveDefault::Roster if roster::get(server, a, with.as_str()).await.is_none() => return Ok(None),
            _ => {}
        }
        if self.quota > 0 {
            // Counted in storage (messages still in the write queue, at most a batch, are
            // not): one query per archived message, paid only with a quota.
            let held = server.store.archive_count(UserRef { host: a.host, user: a.user }, STORE).await.unwrap_or(0);
            if held >= self.quota {
                server.metrics.limit_hit(crate::metrics::Limit::ArchiveQuota);
                return Err(StanzaError::resource_constraint().with_text(format!("the message archive of {owner} is full")));
            }
        }
        let id = random_id();
        let item = ArchiveAppend {
            host: a.host.to_owned(),
            user: a.user.to_owned(),
            store: STORE.to_owned(),
            id: id.clone(),
            stamp_us: now_us(),
            with: with.to_string(),
            payload: st.to_bytes(),
        };
        self.writer.append(item).await;
        Ok(Some(id))
    }
}

/// Where a sent message went in its sender's archive, so that a bounce can take it back.
#[derive(Clone)]
struct SentEntry {
    host: String,
    user: String,
    id: String,
}

impl SentEntry {
    fn matches(&self, item: &ArchiveAppend) -> bool {
        item.id == self.id && item.user == self.user && item.host == self.host
    }
}

fn strip_forged_stanza_ids(st: &mut Stanza, owner: &BareJid) {
    // Only parsed when a stanza-id might name the owner (a room's do not).
    if !(st.inner().contains(ns::SID) && st.inner().contains(owner.as_str())) {
        return;
    }
    let Ok(mut el) = st.to_element() else { return };
    let ours = |c: &Element| c.is("stanza-id", ns::SID) && c.attr("by") == Some(owner.as_str());
    if el.children().any(ours) {
        el.retain_children(|c| !ours(c));
        *st = Stanza::from_element(&el);
    }
}
