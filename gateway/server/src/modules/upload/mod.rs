//! XEP-0363 HTTP file upload: a service on `upload.<domain>` hands out slots, and the
//! HTTP listeners take each file once (PUT) and serve it (GET, HEAD) under `/upload/`.
//!
//! A slot request from a local account is checked against the size limit, the allowed
//! types, the account's rate of requests and its quotas (bytes in 24 hours, bytes
//! stored). The slot is recorded at once, so it counts against the quotas whether or not
//! a file follows. Its PUT URL carries an expiry and an HMAC of the slot (service, id,
//! name, size, type, expiry) under a secret kept in storage, and works once; its GET URL
//! is unguessable (144 random bits). [`http`] serves both.
//!
//! Storage, under the service's domain: map `upload_files` of the service (id →
//! [`FileRecord`]) and map `upload_usage` of each owner (id → [`Usage`]), for the quotas.
//! The bytes are in a [`blobs::BlobStore`] under `<data_dir>/uploads`. A sweep, run with
//! slot requests at most every `min(expire_after_secs, 1 hour)`, deletes expired files
//! and slots never used; deleting an account deletes its files.

mod blobs;
mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind};
use jabberwock_storage::{Store, UserRef};
use jid::{BareJid, Jid};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AccountHooks, Host, Module, Service};
use crate::config::{Config, UploadConfig};
use crate::server::Server;
use crate::session::Throttle;
use crate::stanzas::{bounce_reply, error_reply, iq_result};
use blobs::{BlobStore, FsBlobs};

pub const NS: &str = "urn:xmpp:http:upload:0";
const FILES: &str = "upload_files";
const USAGE: &str = "upload_usage";
const SECRET: &str = "upload_secret";
/// Longest file name, in bytes (as most file systems allow).
const MAX_NAME_BYTES: usize = 255;
const DAY_SECS: i64 = 86_400;

/// A slot, and once `uploaded`, its file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    owner: String,
    name: String,
    size: u64,
    content_type: Option<String>,
    /// When the slot was handed out (Unix seconds).
    created: i64,
    uploaded: bool,
}

/// What a slot counts against its owner's quotas.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Usage {
    size: u64,
    created: i64,
}

pub struct Upload {
    /// One service per served domain, by the service's domain.
    services: HashMap<String, Arc<UploadService>>,
    store: Store,
}

impl Upload {
    pub fn new(config: &Config, store: &Store) -> Self {
        let services = if config.upload.enabled {
            let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobs::new(config.data_dir.join("uploads")));
            config
                .domains
                .iter()
                .map(|parent| {
                    let domain = format!("{}.{parent}", config.upload.subdomain);
                    let service = UploadService {
                        domain: domain.clone(),
                        parent: parent.clone(),
                        base_url: base_url(config, parent),
                        config: config.upload.clone(),
                        secret: tokio::sync::OnceCell::new(),
                        requests: Throttle::new(config.upload.slots_per_minute, Duration::from_secs(60)),
                        last_sweep: Mutex::new(None),
                        blobs: blobs.clone(),
                    };
                    (domain, Arc::new(service))
                })
                .collect()
        } else {
            HashMap::new()
        };
        Upload { services, store: store.clone() }
    }
}

/// The origins (`scheme://host[:port]`) uploaded files are served from, for the web
/// client's Content-Security-Policy: it shows uploaded images inline.
pub fn public_origins(config: &Config) -> Vec<String> {
    if !config.upload.enabled {
        return Vec::new();
    }
    let mut origins: Vec<String> = config
        .domains
        .iter()
        .map(|d| {
            let url = base_url(config, d);
            match url.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
                None => url,
            }
        })
        .collect();
    origins.sort();
    origins.dedup();
    origins
}

/// Where clients reach the HTTP listeners: the configured public URL, or else the served
/// domain on the HTTPS listener's port (plain HTTP's if there is no HTTPS listener).
fn base_url(config: &Config, domain: &str) -> String {
    if let Some(url) = &config.http.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    match (config.http.listen_tls.first(), config.http.listen.first()) {
        (Some(tls), _) => format!("https://{domain}:{}", tls.port()),
        (None, Some(plain)) => format!("http://{domain}:{}", plain.port()),
        (None, None) => format!("https://{domain}"),
    }
}

impl Module for Upload {
    fn register(self: Arc<Self>, host: &mut Host) {
        for service in self.services.values() {
            host.service(service.domain.clone(), &service.parent, "HTTP File Upload", service.clone());
        }
        if !self.services.is_empty() {
            host.http_routes(http::routes());
            host.account_hooks(self);
        }
    }
}

impl AccountHooks for Upload {
    /// The account's files go with it (its usage map is under the service's domain, so
    /// deleting the account's own data left it in place for this).
    fn deleted(&self, account: &BareJid) {
        for service in self.services.values().filter(|s| s.parent == account.domain().as_str()) {
            let (service, store, owner) = (service.clone(), self.store.clone(), account.to_string());
            tokio::spawn(async move { service.delete_files_of(&store, &owner).await });
        }
    }
}

pub(crate) struct UploadService {
    domain: String,
    /// The served domain whose accounts may upload here.
    parent: String,
    base_url: String,
    config: UploadConfig,
    /// The key of the PUT URLs' signatures, read from storage (or made) on first use.
    secret: tokio::sync::OnceCell<[u8; 32]>,
    /// Slot requests per account in the last minute.
    requests: Throttle,
    last_sweep: Mutex<Option<Instant>>,
    blobs: Arc<dyn BlobStore>,
}

#[async_trait]
impl Service for UploadService {
    async fn handle(&self, server: &Arc<Server>, st: Stanza, to: &Jid) -> Vec<Stanza> {
        if st.kind() != StanzaKind::Iq || to.node().is_some() {
            return bounce_reply(&st, StanzaError::service_unavailable());
        }
        if !matches!(st.stanza_type(), Some("get" | "set")) {
            return Vec::new();
        }
        let (Ok(el), Some(from)) = (st.to_element(), st.from().and_then(|f| Jid::new(f).ok())) else {
            return vec![error_reply(&st, StanzaError::bad_request())];
        };
        let Some(payload) = el.first_child() else { return vec![error_reply(&st, StanzaError::bad_request())] };
        let get = st.stanza_type() == Some("get");
        let reply = match (payload.name(), payload.ns(), get) {
            ("query", ns::DISCO_INFO, true) => Ok(Some(self.disco_info())),
            ("query", ns::DISCO_ITEMS, true) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
            ("ping", ns::PING, true) => Ok(None),
            ("request", NS, true) => self.request_slot(server, &from.to_bare(), payload).await.map(Some),
            _ => Err(StanzaError::service_unavailable()),
        };
        vec![match reply {
            Ok(payload) => iq_result(&st, payload),
            Err(e) => error_reply(&st, e),
        }]
    }
}

impl UploadService {
    fn disco_info(&self) -> Element {
        let field = |var: &str, value: String| {
            Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
        };
        let form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(field("FORM_TYPE", NS.to_owned()).with_attr("type", "hidden"))
            .with_child(field("max-file-size", self.config.max_file_bytes.to_string()));
        Element::new("query", ns::DISCO_INFO)
            .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "store").with_attr("type", "file").with_attr("name", "HTTP File Upload"))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", NS))
            .with_child(form)
    }

    /// XEP-0363 §4: a slot, or the reason there is none. Nothing is written on refusal.
    async fn request_slot(&self, server: &Server, owner: &BareJid, req: &Element) -> Result<Element, StanzaError> {
        if owner.domain().as_str() != self.parent || owner.node().is_none() {
            return Err(StanzaError::forbidden().with_text(format!("only accounts of {} may upload here", self.parent)));
        }
        let name = req.attr("filename").ok_or_else(|| StanzaError::bad_request().with_text("no filename"))?;
        check_name(name)?;
        let size = parse_size(req.attr("size"))?;
        if size > self.config.max_file_bytes {
            let too_large = Element::new("file-too-large", NS)
                .with_child(Element::new("max-file-size", NS).with_text(self.config.max_file_bytes.to_string()));
            return Err(StanzaError::not_acceptable().with_text("the file is too large").with_app_condition(too_large));
        }
        let content_type = req.attr("content-type").filter(|t| !t.is_empty());
        if let Some(t) = content_type {
            check_content_type(t, &self.config.allowed_types)?;
        }
        let owner = owner.to_string();
        if !self.requests.allowed(&owner) {
            return Err(StanzaError::resource_constraint().with_text("too many upload requests; try again in a minute"));
        }
        self.requests.count(&owner);
        self.sweep_if_due(server).await;
        let now = unix_now();
        let usage = self.usage(server, &owner).await?;
        let today: u64 = usage.iter().filter(|u| u.created > now - DAY_SECS).map(|u| u.size).sum();
        let stored: u64 = usage.iter().map(|u| u.size).sum();
        if today + size > self.config.quota_bytes_per_day {
            return Err(StanzaError::resource_constraint().with_text("daily upload quota reached"));
        }
        if stored + size > self.config.quota_bytes {
            return Err(StanzaError::resource_constraint().with_text("upload quota reached: older files must expire first"));
        }
        // Also what each request reads back: the account's usage list stays this short.
        if usage.len() >= self.config.max_files {
            return Err(StanzaError::resource_constraint().with_text("too many files: older ones must expire first"));
        }

        let id = slot_id();
        let record = FileRecord { owner: owner.clone(), name: name.to_owned(), size, content_type: content_type.map(str::to_owned), created: now, uploaded: false };
        let usage = serde_json::to_vec(&Usage { size, created: now }).expect("serializes");
        let stored_record = serde_json::to_vec(&record).expect("serializes");
        let store = &server.store;
        let written = async {
            store.map_set(UserRef { host: &self.domain, user: &owner }, USAGE, &id, Some(&usage)).await?;
            store.map_set(UserRef { host: &self.domain, user: "" }, FILES, &id, Some(&stored_record)).await
        };
        if let Err(e) = written.await {
            tracing::error!(error = %e, "recording an upload slot failed");
            return Err(StanzaError::internal_server_error());
        }
        let expires = now + self.config.slot_lifetime_secs as i64;
        let signature = self.sign(server, &id, &record, expires).await?;
        let path = self.file_path(&id, name);
        let put = format!("{}{path}?expires={expires}&sig={signature}", self.base_url);
        let get = format!("{}{path}", self.base_url);
        tracing::info!(%owner, size, "upload slot handed out");
        Ok(Element::new("slot", NS)
            .with_child(Element::new("put", NS).with_attr("url", put))
            .with_child(Element::new("get", NS).with_attr("url", get)))
    }

    /// `/upload/<service>/<id>/<name>`, the name percent-encoded.
    fn file_path(&self, id: &str, name: &str) -> String {
        let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("/upload/{}/{id}/{name}", self.domain)
    }

    async fn usage(&self, server: &Server, owner: &str) -> Result<Vec<Usage>, StanzaError> {
        let entries = server.store.map_all(UserRef { host: &self.domain, user: owner }, USAGE).await.map_err(|e| {
            tracing::error!(error = %e, "reading upload usage failed");
            StanzaError::internal_server_error()
        })?;
        Ok(entries.iter().filter_map(|(_, raw)| serde_json::from_slice(raw).ok()).collect())
    }

    async fn secret(&self, server: &Server) -> Result<&[u8; 32], StanzaError> {
        self.secret
            .get_or_try_init(|| async {
                let scope = UserRef { host: &self.domain, user: "" };
                if let Some(secret) = server.store.kv_get(scope, SECRET).await?.and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok()) {
                    return Ok(secret);
                }
                let secret: [u8; 32] = rand::random();
                server.store.kv_set(scope, SECRET, Some(&secret)).await?;
                Ok(secret)
            })
            .await
            .map_err(|e: jabberwock_storage::StorageError| {
                tracing::error!(error = %e, "reading the upload secret failed");
                StanzaError::internal_server_error()
            })
    }

    /// The PUT URL's signature: HMAC-SHA256 of everything the upload must match.
    async fn sign(&self, server: &Server, id: &str, record: &FileRecord, expires: i64) -> Result<String, StanzaError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret(server).await?).expect("any key length");
        let content_type = record.content_type.as_deref().unwrap_or("");
        mac.update(format!("{}\n{id}\n{}\n{}\n{content_type}\n{expires}", self.domain, record.name, record.size).as_bytes());
        Ok(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, mac.finalize().into_bytes()))
    }

    pub(crate) async fn record(&self, server: &Server, id: &str) -> Option<FileRecord> {
        let raw = server.store.map_get(UserRef { host: &self.domain, user: "" }, FILES, id).await.ok()??;
        serde_json::from_slice(&raw).ok()
    }

    /// Whether a file is past its time (and is served no more, swept or not).
    fn expired(&self, record: &FileRecord, now: i64) -> bool {
        self.config.expire_after_secs > 0 && now >= record.created + self.config.expire_after_secs as i64
    }

    /// Deletes a slot: its bytes, its record and its place in the owner's quota.
    async fn delete(&self, store: &Store, id: &str, owner: &str) {
        if let Err(e) = self.blobs.delete(&format!("{}/{id}", self.domain)).await {
            tracing::warn!(error = %e, "deleting an uploaded file failed");
            return;
        }
        let _ = store.map_set(UserRef { host: &self.domain, user: "" }, FILES, id, None).await;
        let _ = store.map_set(UserRef { host: &self.domain, user: owner }, USAGE, id, None).await;
    }

    /// Runs the sweep if it has not run for `min(expire_after_secs, 1 hour)`.
    async fn sweep_if_due(&self, server: &Server) {
        let every = Duration::from_secs(match self.config.expire_after_secs {
            0 => 3600,
            secs => secs.min(3600),
        });
        {
            let mut last = self.last_sweep.lock().expect("sweep time");
            if last.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *last = Some(Instant::now());
        }
        let now = unix_now();
        let files = server.store.map_all(UserRef { host: &self.domain, user: "" }, FILES).await.unwrap_or_default();
        let mut deleted = 0;
        for (id, raw) in files {
            let Ok(record) = serde_json::from_slice::<FileRecord>(&raw) else { continue };
            // A slot whose URL expired unused leaves nothing behind.
            let unused = !record.uploaded && now >= record.created + self.config.slot_lifetime_secs as i64;
            if unused || self.expired(&record, now) {
                self.delete(&server.store, &id, &record.owner).await;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(service = %self.domain, deleted, "expired uploads deleted");
        }
    }

    async fn delete_files_of(&self, store: &Store, owner: &str) {
        let entries = store.map_all(UserRef { host: &self.domain, user: owner }, USAGE).await.unwrap_or_default();
        for (id, _) in &entries {
            self.delete(store, id, owner).await;
        }
        tracing::info!(%owner, files = entries.len(), "a deleted account's uploads deleted");
    }
}

/// A file name is one path segment of printable characters.
fn check_name(name: &str) -> Result<(), StanzaError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    match bad {
        true => Err(StanzaError::bad_request().with_text(format!("the file name must be 1 to {MAX_NAME_BYTES} bytes, without / \\ or control characters"))),
        false => Ok(()),
    }
}

/// A positive decimal size, nothing else (no sign, no spaces).
fn parse_size(size: Option<&str>) -> Result<u64, StanzaError> {
    let invalid = || StanzaError::bad_request().with_text("size must be a positive number of bytes");
    let size = size.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).ok_or_else(invalid)?;
    size.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(invalid)
}

/// `type/subtype`, and one the operator allows.
fn check_content_type(t: &str, allowed: &[String]) -> Result<(), StanzaError> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    let valid = t.len() <= 255 && t.split_once('/').is_some_and(|(a, b)| token(a) && token(b));
    if !valid {
        return Err(StanzaError::bad_request().with_text("content-type must be a MIME type"));
    }
    let t = t.to_ascii_lowercase();
    let top = t.split('/').next().unwrap_or_default();
    let permitted = allowed.is_empty()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&t) || a.strip_suffix("/*").is_some_and(|a| a.eq_ignore_ascii_case(top)));
    match permitted {
        true => Ok(()),
        false => Err(StanzaError::not_acceptable().with_text("this type of file may not be uploaded here")),
    }
}

/// Random bytes in a slot id: 144 bits.
const SLOT_ID_BYTES: usize = 18;
/// A slot id's length in URL-safe base64.
pub(crate) const SLOT_ID_LEN: usize = SLOT_ID_BYTES * 4 / 3;

fn slot_id() -> String {
    let bytes: [u8; SLOT_ID_BYTES] = rand::random();
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_types() {
        assert!(check_name("cat picture.jpg").is_ok());
        assert!(check_name("снимок.png").is_ok());
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "nul\0byte", "line\nbreak", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size(Some("1024")).ok(), Some(1024));
        for bad in [None, Some(""), Some("0"), Some("-5"), Some("+5"), Some(" 5"), Some("1e6"), Some("99999999999999999999999")] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        let images = ["image/*".to_owned()];
        assert!(check_content_type("image/png", &images).is_ok());
        assert!(check_content_type("IMAGE/PNG", &images).is_ok());
        assert!(check_content_type("text/html", &images).is_err());
        assert!(check_content_type("text/html", &[]).is_ok());
        for bad in ["", "text", "text/", "/html", "text/html; charset=utf-8", "a b/c"] {
            assert!(check_content_type(bad, &[]).is_err(), "{bad:?}");
        }
    }
}
