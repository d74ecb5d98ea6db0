//! The module host: every XEP the server implements is a guest here, one file each.
//!
//! A module is registered with one line in [`Modules::standard`]. In
//! [`Module::register`] it tells the [`Host`] what it takes part in, the way a Prosody
//! plugin hooks events:
//! - iq payloads it answers ([`IqRoute`]: whom the iq is for, the payload's name and
//!   namespace), and the disco features it brings;
//! - hooks on the stanza path, called in registration order: [`StanzaFilter`] (a stanza
//!   about to be routed), [`MessageHooks`] (a message leaving a session, reaching an
//!   account, or finding no resource), [`PresenceHooks`] (available presence going out,
//!   a resource becoming available or unavailable) and [`SessionHooks`] (a session
//!   ending or hibernating);
//! - features set up inside a XEP-0386 Bind2 request ([`InlineBindFeature`]);
//! - [`Service`]s on their own domains (`conference.example.org`): every stanza for such
//!   a domain, from local or remote senders, goes to its service;
//! - HTTP routes merged into the web side;
//! - [`Listener`]s on ports of their own (external components);
//! - [`AdhocCommand`]s at the server's domain (XEP-0050), which the `adhoc` module lists
//!   and runs; an [`AccountReport`] of what it keeps of an account (`jabberwock user`);
//! - its own state, which other modules reach with [`Modules::get`].
//!
//! The core (sessions, routing, transports) calls the hooks and names no XEP. An iq get or
//! set that no module claims gets `service-unavailable` (RFC 6120 §8.4).

pub mod blocking;
pub mod adhoc;
pub mod admin;
pub mod bookmarks;
pub mod caps;
pub mod carbons;
pub mod component;
pub mod contact;
pub mod disco;
pub mod entity_time;
pub mod external_services;
pub mod host_meta;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod private;
pub mod push;
pub mod register;
pub mod session;
pub mod upload;
pub mod vcard;
pub mod version;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{Element, Stanza, StanzaError};
use jabberwock_storage::{Store, UserRef};
use jid::{BareJid, FullJid, Jid};

use crate::config::Config;
use crate::registry::ConnId;
use crate::server::Server;
use crate::stanzas::{error_reply, iq_result};

/// Whom an iq is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server's domain.
    Host,
    /// A local account's bare JID (including the sender's own, or no `to`).
    Account,
}

#[derive(Clone, Copy, Debug)]
pub struct IqRoute {
    pub target: IqTarget,
    pub name: &'static str,
    pub ns: &'static str,
}

/// What a module sees of an iq request.
pub struct IqCtx<'a> {
    pub server: &'a Arc<Server>,
    /// The requester; a full JID for local sessions.
    pub from: &'a Jid,
    /// The domain or bare JID the iq is for.
    pub to: &'a Jid,
    /// `type='set'` (otherwise `get`).
    pub set: bool,
    /// Stanzas for the requester that must arrive before the iq result.
    before_result: std::sync::Mutex<Vec<Stanza>>,
}

impl IqCtx<'_> {
    /// Queues a stanza for the requester ahead of the result (MAM results, for example).
    pub fn send_before_result(&self, st: Stanza) {
        self.before_result.lock().expect("iq context").push(st);
    }
}

/// `Ok(Some(payload))` or `Ok(None)` for an empty result.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// A module: registers what it takes part in, and owns its state.
pub trait Module: Any + Send + Sync {
    fn register(self: Arc<Self>, host: &mut Host);
}

#[async_trait]
pub trait IqHandler: Send + Sync {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult;
}

/// What a filter decides about a stanza about to be routed.
pub enum Verdict {
    Pass,
    /// Goes nowhere, silently.
    Drop,
    /// Goes nowhere; the sender gets this error.
    Bounce(StanzaError),
}

#[async_trait]
pub trait StanzaFilter: Send + Sync {
    /// `st` from `from` (trusted) is about to be routed to `to`.
    async fn filter(&self, server: &Server, st: &Stanza, from: &Jid, to: &Jid) -> Verdict;
}

/// A message a local session sent, around its routing.
pub struct SentMessage<'a> {
    pub server: &'a Arc<Server>,
    pub sender: &'a FullJid,
    pub to: &'a Jid,
    pub stanza: &'a Stanza,
    /// What modules keep between [`MessageHooks::sending`] and [`MessageHooks::sent`].
    pub notes: axum::http::Extensions,
}

#[async_trait]
pub trait MessageHooks: Send + Sync {
    /// A local session sends a message; it is routed next, unless a hook refuses it (the
    /// sender then gets the error, and the hooks' `sent` see it bounced).
    async fn sending(&self, _m: &mut SentMessage<'_>) -> Result<(), StanzaError> {
        Ok(())
    }
    /// It was routed; `bounced` when it went nowhere (blocked, unknown, unreachable).
    async fn sent(&self, _m: &mut SentMessage<'_>, _bounced: bool) {}
    /// A message from `from` is about to reach the local account `to`, at its resources
    /// or in offline storage.
    /// A hook that refuses it sends it back to its sender with the error.
    async fn delivering(&self, _server: &Server, _to: &BareJid, _from: &BareJid, _st: &mut Stanza) -> Result<(), StanzaError> {
        Ok(())
    }
    /// After [`MessageHooks::delivering`], the message did not reach `to` after all (its
    /// offline storage refused it, or no session would take it) and goes back to its
    /// sender: undo what `delivering` recorded.
    async fn not_delivered(&self, _server: &Server, _to: &BareJid, _st: &Stanza) {}
    /// It was handed to these resources of `to`.
    fn delivered(&self, _server: &Server, _to: &BareJid, _resources: &[&str], _st: &Stanza) {}
    /// No resource of `to` takes the message: keep it for later. `None` leaves it to the
    /// next module; with none, the sender gets `service-unavailable` (RFC 6121 §8.5.2.2.1).
    async fn store_offline(&self, _server: &Arc<Server>, _to: &BareJid, _st: &Stanza) -> Option<Result<(), StanzaError>> {
        None
    }
}

/// A resource of a local account became available (or changed its presence).
pub struct Available<'a> {
    pub server: &'a Arc<Server>,
    pub jid: &'a FullJid,
    pub presence: &'a Stanza,
    pub priority: i8,
    /// The first available presence since the resource was bound or last unavailable.
    pub initial: bool,
    /// Stanzas for the resource itself, after the contacts' presence.
    pub out: Vec<Stanza>,
    /// Stanzas from storage for the resource, after `out`, each with the receipt that
    /// tells its store when the client has it.
    pub stored: Vec<(Stanza, crate::registry::Receipt)>,
}

#[async_trait]
pub trait PresenceHooks: Send + Sync {
    /// A resource's available presence, before it is broadcast.
    async fn broadcasting(&self, _server: &Server, _from: &FullJid, _st: &mut Stanza) {}
    async fn available(&self, _ev: &mut Available<'_>) {}
    /// A resource became unavailable (also when its session ends).
    async fn unavailable(&self, _server: &Server, _from: &FullJid, _st: &Stanza) {}
}

#[async_trait]
pub trait SessionHooks: Send + Sync {
    /// The session bound to `jid` on connection `conn` ended, cleanly or not.
    async fn ended(&self, _server: &Arc<Server>, _jid: &FullJid, _conn: ConnId) {}
    /// A message reached the session of `jid` while its client may not see it: the
    /// connection dropped and XEP-0198 resumption is pending, or the client said it is
    /// inactive (XEP-0352; a phone app the system may have suspended).
    async fn unseen(&self, _server: &Arc<Server>, _jid: &FullJid, _st: &Stanza) {}
}

/// A feature a module sets up inside a XEP-0386 Bind2 request, as the session is bound
/// (carbons, for one), so a client has it from its first stanza on.
#[async_trait]
pub trait InlineBindFeature: Send + Sync {
    /// The feature's namespace: advertised in Bind2's `<inline/>`, and the namespace of the
    /// request elements handed to [`InlineBindFeature::bound`].
    fn namespace(&self) -> &'static str;
    /// The Bind2 request carried `el` for the session just bound to `jid` on `conn`:
    /// returns what goes into `<bound/>`, if anything.
    async fn bound(&self, server: &Arc<Server>, jid: &FullJid, conn: ConnId, el: &Element) -> Option<Element>;
}

/// What is known of a connection before it authenticates.
pub struct Unauthenticated<'a> {
    pub server: &'a Arc<Server>,
    /// The served domain the stream is addressed to.
    pub domain: &'a str,
    pub peer_ip: std::net::IpAddr,
    /// A password sent on this stream crosses no network in clear: see [`StreamStage`].
    pub password_safe: bool,
}

/// Where a stream is when it offers its features.
#[derive(Clone, Copy, Debug)]
pub struct StreamStage {
    pub authenticated: bool,
    /// A password sent on this stream crosses no network in clear: TLS (directly or at a
    /// trusted proxy), a client on this machine, or `http.allow_unencrypted_auth`. The
    /// same rule as for signing in.
    pub password_safe: bool,
}

#[async_trait]
pub trait PreAuthHooks: Send + Sync {
    /// An iq before authentication: the reply, if this module answers it.
    async fn iq(&self, c: &Unauthenticated<'_>, st: &Stanza) -> Option<Stanza>;
}

pub trait StreamFeatures: Send + Sync {
    /// A feature for `<stream:features/>` at this stage of the stream.
    fn feature(&self, server: &Server, stage: StreamStage) -> Option<Element>;
}

pub trait AccountHooks: Send + Sync {
    /// The account and its stored data were deleted: forget what is cached of it.
    fn deleted(&self, account: &BareJid);

    /// Another node of the cluster changed the account's data
    /// ([`crate::cluster::account_changed`]): forget what is cached of it.
    fn changed_elsewhere(&self, _account: &BareJid) {}
}

/// What a module keeps of an account, for an administrator's `jabberwock user`: a few
/// lines such as "archived messages: 1 204".
#[async_trait]
pub trait AccountReport: Send + Sync {
    async fn report(&self, server: &Server, account: UserRef<'_>) -> Vec<String>;
}

#[async_trait]
pub trait ShutdownHooks: Send + Sync {
    /// The server is stopping: finish what is in flight before storage closes.
    async fn stopping(&self, server: &Arc<Server>);
}

/// A service on its own domain.
#[async_trait]
pub trait Service: Send + Sync {
    /// A stanza for the service's domain, a bare JID or a full JID on it, from a local or
    /// remote sender (`from` trusted). Returns what goes back to the sender.
    async fn handle(&self, server: &Arc<Server>, st: Stanza, to: &Jid) -> Vec<Stanza>;
}

/// A module's own TCP listener: each accepted connection is handed to it.
#[async_trait]
pub trait Listener: Send + Sync {
    async fn serve(&self, server: Arc<Server>, tcp: tokio::net::TcpStream, peer: std::net::SocketAddr);
}

/// A listener's addresses and who serves them.
pub struct ListenerEntry {
    pub addrs: Vec<std::net::SocketAddr>,
    pub listener: Arc<dyn Listener>,
}

/// A XEP-0050 command at the server's domain, offered by a module ([`Host::command`]) and
/// run by the `adhoc` module: a form to fill in (or none), then the action.
#[async_trait]
pub trait AdhocCommand: Send + Sync {
    /// The command's node (`http://jabber.org/protocol/admin#add-user`).
    fn node(&self) -> &'static str;
    /// Its human-readable name.
    fn name(&self) -> &'static str;
    /// Whether `requester` may see and run it.
    fn allowed(&self, server: &Server, requester: &Jid) -> bool;
    /// The `jabber:x:data` form shown on `execute`; `None` runs at once.
    fn form(&self) -> Option<Element>;
    /// Runs the command with the submitted fields.
    async fn complete(&self, server: &Arc<Server>, requester: &Jid, fields: &adhoc::Fields) -> Result<adhoc::Completed, StanzaError>;
}

/// What modules register, and the hooks in the order they run.
pub struct Host<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    routes: HashMap<(IqTarget, &'static str, &'static str), Arc<dyn IqHandler>>,
    features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    server_forms: Vec<Element>,
    filters: Vec<Arc<dyn StanzaFilter>>,
    message_hooks: Vec<Arc<dyn MessageHooks>>,
    presence_hooks: Vec<Arc<dyn PresenceHooks>>,
    session_hooks: Vec<Arc<dyn SessionHooks>>,
    pre_auth_hooks: Vec<Arc<dyn PreAuthHooks>>,
    stream_features: Vec<Arc<dyn StreamFeatures>>,
    bind_features: Vec<Arc<dyn InlineBindFeature>>,
    account_hooks: Vec<Arc<dyn AccountHooks>>,
    shutdown_hooks: Vec<Arc<dyn ShutdownHooks>>,
    account_reports: Vec<Arc<dyn AccountReport>>,
    services: HashMap<String, ServiceEntry>,
    http: Vec<axum::Router<Arc<Server>>>,
    listeners: Vec<ListenerEntry>,
    commands: Vec<Arc<dyn AdhocCommand>>,
}

struct ServiceEntry {
    /// The served domain the service belongs to, whose disco#items list it.
    parent: String,
    name: String,
    service: Arc<dyn Service>,
}

impl Host<'_> {
    pub fn iq(&mut self, route: IqRoute, handler: Arc<dyn IqHandler>) {
        let previous = self.routes.insert((route.target, route.name, route.ns), handler);
        assert!(previous.is_none(), "two modules claim {} {}", route.name, route.ns);
    }

    /// Routes each of `routes` to `handler`.
    pub fn iqs(&mut self, routes: &[IqRoute], handler: Arc<dyn IqHandler>) {
        for r in routes {
            self.iq(*r, handler.clone());
        }
    }

    /// Disco features of the server's domain.
    pub fn features(&mut self, features: &[&'static str]) {
        self.features.extend_from_slice(features);
    }

    /// Disco features of every account's bare JID.
    pub fn account_features(&mut self, features: &[&'static str]) {
        self.account_features.extend_from_slice(features);
    }

    /// A XEP-0128 data form in the server's disco#info.
    pub fn server_form(&mut self, form: Element) {
        self.server_forms.push(form);
    }

    pub fn filter(&mut self, f: Arc<dyn StanzaFilter>) {
        self.filters.push(f);
    }

    pub fn message_hooks(&mut self, h: Arc<dyn MessageHooks>) {
        self.message_hooks.push(h);
    }

    pub fn presence_hooks(&mut self, h: Arc<dyn PresenceHooks>) {
        self.presence_hooks.push(h);
    }

    pub fn session_hooks(&mut self, h: Arc<dyn SessionHooks>) {
        self.session_hooks.push(h);
    }

    pub fn pre_auth_hooks(&mut self, h: Arc<dyn PreAuthHooks>) {
        self.pre_auth_hooks.push(h);
    }

    pub fn stream_features(&mut self, f: Arc<dyn StreamFeatures>) {
        self.stream_features.push(f);
    }

    pub fn bind_feature(&mut self, f: Arc<dyn InlineBindFeature>) {
        self.bind_features.push(f);
    }

    pub fn account_hooks(&mut self, h: Arc<dyn AccountHooks>) {
        self.account_hooks.push(h);
    }

    pub fn shutdown_hooks(&mut self, h: Arc<dyn ShutdownHooks>) {
        self.shutdown_hooks.push(h);
    }

    pub fn account_report(&mut self, r: Arc<dyn AccountReport>) {
        self.account_reports.push(r);
    }

    /// Serves `domain` (a subdomain of the served `parent`, listed in its disco#items as
    /// `name`) with `service`.
    pub fn service(&mut self, domain: String, parent: &str, name: &str, service: Arc<dyn Service>) {
        assert!(self.config.served_domain(&domain).is_none(), "{domain} is served as a host of accounts");
        let previous = self.services.insert(domain.clone(), ServiceEntry { parent: parent.to_owned(), name: name.to_owned(), service });
        assert!(previous.is_none(), "two services claim {domain}");
    }

    /// HTTP routes, merged into every HTTP and HTTPS listener's app.
    pub fn http_routes(&mut self, routes: axum::Router<Arc<Server>>) {
        self.http.push(routes);
    }

    /// Listens on `addrs` (when the server starts) and hands every connection to `listener`.
    pub fn listener(&mut self, addrs: Vec<std::net::SocketAddr>, listener: Arc<dyn Listener>) {
        self.listeners.push(ListenerEntry { addrs, listener });
    }

    /// An ad-hoc command at the server's domain.
    pub fn command(&mut self, command: Arc<dyn AdhocCommand>) {
        assert!(self.commands.iter().all(|c| c.node() != command.node()), "two modules claim command {}", command.node());
        self.commands.push(command);
    }
}

/// The registered modules, with their routes and hooks.
pub struct Modules {
    routes: HashMap<(IqTarget, &'static str, &'static str), Arc<dyn IqHandler>>,
    features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    server_forms: Vec<Element>,
    pub(crate) filters: Vec<Arc<dyn StanzaFilter>>,
    pub(crate) message_hooks: Vec<Arc<dyn MessageHooks>>,
    pub(crate) presence_hooks: Vec<Arc<dyn PresenceHooks>>,
    pub(crate) session_hooks: Vec<Arc<dyn SessionHooks>>,
    pub(crate) pre_auth_hooks: Vec<Arc<dyn PreAuthHooks>>,
    stream_features: Vec<Arc<dyn StreamFeatures>>,
    pub(crate) bind_features: Vec<Arc<dyn InlineBindFeature>>,
    account_hooks: Vec<Arc<dyn AccountHooks>>,
    shutdown_hooks: Vec<Arc<dyn ShutdownHooks>>,
    account_reports: Vec<Arc<dyn AccountReport>>,
    services: HashMap<String, ServiceEntry>,
    http: Vec<axum::Router<Arc<Server>>>,
    listeners: Vec<ListenerEntry>,
    commands: Vec<Arc<dyn AdhocCommand>>,
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

/// A module in a [`ModuleList`]: its type, itself, and how it registers its hooks.
type Listed = (TypeId, Arc<dyn Any + Send + Sync>, Box<dyn FnOnce(&mut Host)>);

/// Collects modules of any type for [`Modules::new`].
#[derive(Default)]
pub struct ModuleList {
    modules: Vec<Listed>,
}

impl ModuleList {
    pub fn with<M: Module>(mut self, m: M) -> Self {
        let m = Arc::new(m);
        let registering = m.clone();
        self.modules.push((TypeId::of::<M>(), m, Box::new(move |host: &mut Host| registering.register(host))));
        self
    }
}

impl Modules {
    /// Every module the server runs, in hook order.
    pub fn standard(config: &Config, store: &Store, metrics: &crate::metrics::Metrics) -> Self {
        let list = ModuleList::default()
            .with(blocking::Blocking::new(&config.limits))
            .with(crate::im::roster::RosterModule)
            .with(disco::Disco)
            .with(contact::ContactAddresses)
            .with(external_services::ExternalServices::new(&config.external_services))
            .with(ping::Ping)
            .with(version::Version)
            .with(entity_time::EntityTime)
            .with(last::LastActivity)
            .with(vcard::VCard)
            .with(private::PrivateStorage::standard())
            .with(register::Register)
            .with(caps::Caps::new(&config.limits))
            .with(mam::Mam::new(store.clone(), &config.limits, metrics))
            .with(carbons::Carbons)
            // Before offline storage: push only notifies; offline storage keeps the message.
            .with(push::Push::new(&config.push, &config.limits))
            .with(offline::Offline::default())
            .with(pep::Pep)
            .with(muc::Muc::new(config))
            .with(upload::Upload::new(config, store))
            .with(component::Components::new(config))
            .with(session::LegacySession)
            .with(host_meta::HostMeta)
            .with(adhoc::AdhocCommands)
            .with(admin::ServiceAdministration);
        Self::new(config, store, list)
    }

    pub fn new(config: &Config, store: &Store, list: ModuleList) -> Self {
        let mut host = Host {
            config,
            store,
            routes: HashMap::new(),
            features: Vec::new(),
            account_features: Vec::new(),
            server_forms: Vec::new(),
            filters: Vec::new(),
            message_hooks: Vec::new(),
            presence_hooks: Vec::new(),
            session_hooks: Vec::new(),
            pre_auth_hooks: Vec::new(),
            stream_features: Vec::new(),
            bind_features: Vec::new(),
            account_hooks: Vec::new(),
            shutdown_hooks: Vec::new(),
            account_reports: Vec::new(),
            services: HashMap::new(),
            http: Vec::new(),
            listeners: Vec::new(),
            commands: Vec::new(),
        };
        let mut by_type = HashMap::new();
        for (type_id, module, register) in list.modules {
            register(&mut host);
            by_type.insert(type_id, module);
        }
        for list in [&mut host.features, &mut host.account_features] {
            list.sort_unstable();
            list.dedup();
        }
        Modules {
            routes: host.routes,
            features: host.features,
            account_features: host.account_features,
            server_forms: host.server_forms,
            filters: host.filters,
            message_hooks: host.message_hooks,
            presence_hooks: host.presence_hooks,
            session_hooks: host.session_hooks,
            pre_auth_hooks: host.pre_auth_hooks,
            stream_features: host.stream_features,
            bind_features: host.bind_features,
            account_hooks: host.account_hooks,
            shutdown_hooks: host.shutdown_hooks,
            account_reports: host.account_reports,
            services: host.services,
            http: host.http,
            listeners: host.listeners,
            commands: host.commands,
            by_type,
        }
    }

    /// What the modules keep of an account, a line each.
    pub async fn account_report(&self, server: &Server, account: UserRef<'_>) -> Vec<String> {
        let mut lines = Vec::new();
        for r in &self.account_reports {
            lines.extend(r.report(server, account).await);
        }
        lines
    }

    /// The ad-hoc commands at the server's domain, in registration order.
    pub fn commands(&self) -> &[Arc<dyn AdhocCommand>] {
        &self.commands
    }

    /// The running instance of module `M`, if it is registered: how a module reaches
    /// another's state.
    pub fn get<M: Module>(&self) -> Option<&M> {
        self.by_type.get(&TypeId::of::<M>()).and_then(|m| m.downcast_ref::<M>())
    }

    /// Every disco feature of the server.
    pub fn features(&self) -> &[&'static str] {
        &self.features
    }

    /// Every disco feature of an account.
    pub fn account_features(&self) -> &[&'static str] {
        &self.account_features
    }

    /// The XEP-0128 forms of the server's disco#info.
    pub fn server_forms(&self) -> &[Element] {
        &self.server_forms
    }

    /// The service on `domain`, if a module serves it.
    pub fn service(&self, domain: &str) -> Option<&Arc<dyn Service>> {
        self.services.get(domain).map(|s| &s.service)
    }

    /// The registered name of the service domain `domain`.
    pub fn service_domain(&self, domain: &str) -> Option<&str> {
        self.services.get_key_value(domain).map(|(d, _)| d.as_str())
    }

    /// The services of the served domain `parent`: (domain, name), for its disco#items.
    pub fn services_of<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.services.iter().filter(move |(_, s)| s.parent == parent).map(|(d, s)| (d.as_str(), s.name.as_str()))
    }

    /// The modules' stream features at this stage of the stream.
    pub fn stream_features<'a>(&'a self, server: &'a Server, stage: StreamStage) -> impl Iterator<Item = Element> + 'a {
        self.stream_features.iter().filter_map(move |f| f.feature(server, stage))
    }

    /// An account was deleted.
    pub fn account_deleted(&self, account: &BareJid) {
        for h in &self.account_hooks {
            h.deleted(account);
        }
    }

    /// Another node of the cluster changed the account's data.
    pub fn account_changed_elsewhere(&self, account: &BareJid) {
        for h in &self.account_hooks {
            h.changed_elsewhere(account);
        }
    }

    /// Lets every module finish what is in flight, before storage closes.
    pub async fn stopping(&self, server: &Arc<Server>) {
        for h in &self.shutdown_hooks {
            h.stopping(server).await;
        }
    }

    /// The HTTP routes modules added.
    pub fn http_routes(&self) -> impl Iterator<Item = &axum::Router<Arc<Server>>> {
        self.http.iter()
    }

    /// The modules' own listeners.
    pub fn listeners(&self) -> &[ListenerEntry] {
        &self.listeners
    }
}

/// Answers an iq get/set for the server or a local account: returns what goes back to the
/// requester, the result or error last.
pub async fn dispatch_iq(server: &Arc<Server>, target: IqTarget, st: &Stanza) -> Vec<Stanza> {
    let mut emitted = Vec::new();
    let result = async {
        let el = st.to_element().map_err(|_| StanzaError::bad_request())?;
        let payload = el.first_child().ok_or_else(StanzaError::bad_request)?;
        let handler = server
            .modules
            .routes
            .get(&(target, payload.name(), payload.ns()))
            .ok_or_else(StanzaError::service_unavailable)?;
        let from = st.from().and_then(|f| Jid::new(f).ok()).ok_or_else(StanzaError::bad_request)?;
        let to = st.to().and_then(|t| Jid::new(t).ok()).ok_or_else(StanzaError::bad_request)?;
        let cx = IqCtx { server, from: &from, to: &to, set: st.stanza_type() == Some("set"), before_result: Default::default() };
        let result = handler.handle_iq(&cx, payload).await;
        emitted = cx.before_result.into_inner().expect("iq context");
        result
    }
    .await;
    emitted.push(match result {
        Ok(payload) => iq_result(st, payload),
        Err(e) => error_reply(st, e),
    });
    emitted
}
