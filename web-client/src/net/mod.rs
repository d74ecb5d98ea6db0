//! The live session: one [`Client`] (the protocol logic, from the core crate) wired to a
//! browser transport, to timers for reconnecting, and to the view signals.
//!
//! The session lives in a thread-local because browser callbacks (socket events, timers)
//! reach it from outside the view tree. Views call the public functions here; nothing in
//! this module decides how things look. The session runs in a worker ([`shared`]): in the
//! page, each public function hands its call to the worker first.

mod actions;
mod bosh;
mod discovery;
pub mod rooms;
pub mod shared;
mod websocket;

use std::cell::RefCell;
use std::collections::BTreeMap;

use jabberwock_client_core::chat;
use jabberwock_client_core::connection::reconnect_delay_ms;
use jabberwock_client_core::discovery::Endpoints;
use jabberwock_client_core::framing::{ws_decode, ws_encode};
use jabberwock_client_core::muc::{Occupant, Room};
use jabberwock_client_core::tabs::{Command, TabViews};
use jabberwock_client_core::{Account, Client, ConnError, Event, Frame, Input, Limits, Phase, Resumable, Show};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::state::{json, AppState, Row, Status};
use crate::{browser, drafts, kept, settings, unread};
use bosh::BoshTransport;
pub use actions::{correct_last, correctable, dismiss_upload, moderate, retract, send_reply, toggle_reaction, upload};
pub use discovery::link_endpoint_usable;
use websocket::WsTransport;

/// Where to connect, in order of preference: WebSocket first, then BOSH.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    WebSocket(String),
    Bosh(String),
}

impl Endpoint {
    fn url(&self) -> &str {
        match self {
            Endpoint::WebSocket(u) | Endpoint::Bosh(u) => u,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Endpoint::WebSocket(_) => "websocket",
            Endpoint::Bosh(_) => "bosh",
        }
    }

    /// `kind url`, as saved for resuming after a reload.
    fn to_saved(&self) -> String {
        format!("{} {}", self.kind(), self.url())
    }

    fn from_saved(s: &str) -> Option<Endpoint> {
        match s.split_once(' ')? {
            ("websocket", url) => Some(Endpoint::WebSocket(url.to_owned())),
            ("bosh", url) => Some(Endpoint::Bosh(url.to_owned())),
            _ => None,
        }
    }
}

fn endpoint_list(e: &Endpoints) -> Vec<Endpoint> {
    e.websocket.iter().cloned().map(Endpoint::WebSocket).chain(e.bosh.iter().cloned().map(Endpoint::Bosh)).collect()
}

enum Transport {
    Ws(WsTransport),
    Bosh(BoshTransport),
}

struct Session {
    state: AppState,
    /// Kept in memory only, to reconnect after a network loss; never stored. A session
    /// resumed after a reload has none (until the user changes it): it signs in again with
    /// its FAST token, or resumes with its keys.
    password: Option<String>,
    /// The version of the pictures last handed to the views.
    pictures_shown: std::cell::Cell<Option<u64>>,
    /// The unread counts kept in the browser were put back (once per page and sign-in).
    unread_restored: bool,
    /// The conversations kept in the browser were put back; until then nothing is saved
    /// over them.
    kept_restored: bool,
    /// Saves the conversations a moment after they change.
    keep_timer: Option<i32>,
    endpoints: Vec<Endpoint>,
    /// Which endpoint the current attempt uses.
    endpoint: usize,
    /// Endpoints tried since the last successful open (or the start of this round).
    tried: usize,
    /// The endpoint that opened last: each new round of attempts starts there, so that a
    /// server that was down for a while does not leave us on the fallback.
    worked: Option<usize>,
    client: Client,
    transport: Option<Transport>,
    /// Tags callbacks with the attempt they belong to.
    generation: u32,
    /// The current socket reached `open`.
    opened: bool,
    /// Consecutive failed attempts since we were last online.
    attempt: u32,
    ever_online: bool,
    signing_out: bool,
    retry_timer: Option<i32>,
    /// Turns "composing" into "paused" when the user stops typing.
    typing_timer: Option<i32>,
    /// The last sign of the user (pointer, keys, the tab shown), for automatic away.
    last_activity_ms: i64,
    idle: bool,
    idle_timer: Option<i32>,
    /// In the worker, its last tab gone: nothing is read or acknowledged (see [`freeze`]).
    frozen: bool,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    static GENERATION: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> Option<R> {
    SESSION.with(|s| s.borrow_mut().as_mut().map(f))
}

fn next_generation() -> u32 {
    GENERATION.with(|g| {
        g.set(g.get().wrapping_add(1));
        g.get()
    })
}

/// A transport is dropped after the current callback returns, never inside its own.
fn discard(t: Option<Transport>) {
    if let Some(t) = t {
        browser::set_timeout(0, move || drop(t));
    }
}

/// A per-tab resource, so that two tabs are two sessions rather than replacing each other.
fn resource() -> String {
    let key = "jabberwock.resource";
    let stored = browser::session_storage().and_then(|s| s.get_item(key).ok().flatten());
    stored.unwrap_or_else(|| {
        let r = format!("web-{}", &browser::nonce().replace(['+', '/', '='], "")[..6]);
        if let Some(s) = browser::session_storage() {
            let _ = s.set_item(key, &r);
        }
        r
    })
}

/// Where a page keeps its session for the next page of the same tab (see
/// [`jabberwock_client_core::resume`]): written when the page goes away, removed as soon
/// as it is read back.
pub(crate) const RESUME_KEY: &str = "jabberwock.resume";

/// How long after a change the conversations are saved in the browser: at once after a
/// burst of changes, since the worker's storage is its tabs, and a tab going away cannot
/// wait for the worker.
const KEEP_DELAY_MS: i32 = 0;

/// The page goes away (reload, navigation, tab closed): the tab keeps the session's latest
/// resumption entry for its next page (see [`shared`]). The worker ends with its last page,
/// which drops the connection without ending the session: the server keeps it for its
/// resumption window.
pub fn page_hidden() {
    shared::page_hidden();
}

/// At the page's start: joins the worker that holds the session (the one the origin's
/// tabs share, if there is one), with the session the previous page of this tab saved for
/// it to resume if it has none. Without a session to join or resume, the user signs in.
pub fn start_page(state: AppState) {
    let saved = browser::session_storage().and_then(|storage| {
        let saved = storage.get_item(RESUME_KEY).ok().flatten();
        let _ = storage.remove_item(RESUME_KEY);
        saved
    });
    shared::connect(state, saved);
}

/// Whether a session exists (online, or on its way).
fn has_session() -> bool {
    SESSION.with(|s| s.borrow().is_some())
}

/// The current session's entry for resuming it after a reload, if it can be resumed.
fn resumable_entry() -> Option<String> {
    with_session(|s| s.resumable_entry()).flatten()
}

/// In the worker, its last tab gone: the connection is dropped at once and nothing more is
/// read or acknowledged, so that the resumption entry that tab kept is the session's last
/// state (the server keeps the session; the next page resumes from the entry). A tab that
/// joins before the worker ends [`thaw`]s it.
fn freeze() {
    with_session(|s| {
        s.generation = next_generation();
        if let Some(t) = s.retry_timer.take() {
            browser::clear_timeout(t);
        }
        drop(s.transport.take());
        s.frozen = true;
    });
}

/// A tab joined a frozen worker: the session resumes on a new connection.
fn thaw() {
    with_session(|s| {
        if std::mem::take(&mut s.frozen) {
            let events = s.client.transport_closed();
            s.handle(events);
            s.attempt = 0;
            s.connect();
        }
    });
}

/// In the worker: resumes the session saved in `saved` (a resumption entry), if it is
/// recent enough.
fn resume_from(state: AppState, saved: &str) -> bool {
    let Some(saved) = Resumable::from_json(saved) else { return false };
    if saved.expired(browser::now_ms()) {
        return false;
    }
    let (Some(endpoint), Some(client)) =
        (Endpoint::from_saved(&saved.endpoint), Client::from_resumable(&saved, browser::nonce()))
    else {
        return false;
    };
    let bare = jabberwock_client_core::address::bare(&saved.jid).to_owned();
    // Should the session be gone, the sign-in form asks for this account's password.
    state.prefill.set(Some(bare.clone()));
    state.me.set(Some(bare));
    state.own_show.set(client.own_presence().show);
    state.own_status.set(client.own_presence().status.clone().unwrap_or_default());
    let mut session = Session::new(state, None, vec![endpoint], client, true);
    // Shown at once, from the browser: the network may not be there.
    session.restore_kept();
    // Away because idle before the reload: available again on the first sign of the user.
    session.idle = session.client.is_idle();
    start_session(session);
    true
}

/// Starts a login from the form.
pub fn login(state: AppState, address: String, password: String, server: String) {
    start(state, address, password, server, false);
}

/// Creates the account (XEP-0077) from the form, then signs in to it.
pub fn create_account(state: AppState, address: String, password: String, again: String, server: String) {
    if let Err(e) = jabberwock_client_core::account::check_new_password(&password, &again) {
        return state.login_error.set(Some(e.to_string()));
    }
    start(state, address, password, server, true);
}

/// Finds the server (in the page: its fetches are the page's), then signs in.
fn start(state: AppState, address: String, password: String, server: String, create: bool) {
    let account = match Account::parse(&address) {
        Ok(a) => a,
        Err(e) => return state.login_error.set(Some(e.to_string())),
    };
    if password.is_empty() {
        return state.login_error.set(Some("Enter your password".into()));
    }
    if state.status.get_untracked().busy() {
        return;
    }
    state.login_error.set(None);
    state.status.set(Status::Discovering);
    spawn_local(async move {
        let server = server.trim().to_owned();
        let endpoints = if server.is_empty() {
            discovery::discover(&account.domain).await
        } else if server.starts_with("ws://") || server.starts_with("wss://") {
            Ok(Endpoints { websocket: vec![server], bosh: vec![] })
        } else if (server.starts_with("http://") || server.starts_with("https://"))
            && server.trim_end_matches('/').ends_with("/http-bind")
        {
            Ok(Endpoints { websocket: vec![], bosh: vec![server] })
        } else if server.starts_with("http://") || server.starts_with("https://") {
            let base = server.trim_end_matches('/');
            discovery::from_base(base)
                .await
                .map(discovery::usable)
                .ok_or_else(|| format!("No XMPP endpoints were found at {base}"))
        } else {
            Err("The server URL must start with wss://, ws://, https:// or http://".into())
        };
        let endpoints = match endpoints.map(|e| endpoint_list(&e)) {
            Ok(e) if e.is_empty() => Err(format!("The server for {} offers neither WebSocket nor BOSH", account.domain)),
            other => other,
        };
        match endpoints {
            Ok(endpoints) => sign_in(state, account, password, endpoints, create),
            Err(msg) => {
                state.status.set(Status::SignedOut);
                state.login_error.set(Some(msg));
            }
        }
    });
}

/// Signs in to `account` (or, `create`, creates it first) at `endpoints`, in order.
fn sign_in(state: AppState, account: Account, password: String, endpoints: Vec<Endpoint>, create: bool) {
    let saved = endpoints.iter().map(Endpoint::to_saved).collect();
    if shared::forward(Command::SignIn { address: account.bare(), password: password.clone(), endpoints: saved, create }) {
        return;
    }
    let client = if create {
        Client::register(account, &password, Some(resource()), browser::nonce())
    } else {
        Client::new(account, &password, Some(resource()), browser::nonce())
    };
    start_session(Session::new(state, Some(password), endpoints, client, false));
}

/// In the worker: [`sign_in`] as a page asked for it.
fn sign_in_from(state: AppState, address: &str, password: String, endpoints: &[String], create: bool) {
    let endpoints: Vec<Endpoint> = endpoints.iter().filter_map(|e| Endpoint::from_saved(e)).collect();
    match Account::parse(address) {
        Ok(account) if !endpoints.is_empty() => sign_in(state, account, password, endpoints, create),
        _ => state.status.set(Status::SignedOut),
    }
}

fn start_session(session: Session) {
    if let Some(mut old) = SESSION.with(|s| s.borrow_mut().replace(session)) {
        discard(old.transport.take());
    }
    with_session(|s| {
        s.refresh_roster();
        s.refresh_views();
        s.connect();
        s.arm_idle_timer();
    });
}

impl Session {
    /// `resumed`: the client resumes a session from before a reload, which counts as
    /// having been online.
    fn new(state: AppState, password: Option<String>, endpoints: Vec<Endpoint>, client: Client, resumed: bool) -> Self {
        Session {
            state,
            password,
            pictures_shown: std::cell::Cell::new(None),
            unread_restored: false,
            kept_restored: false,
            keep_timer: None,
            endpoints,
            endpoint: 0,
            worked: None,
            tried: 0,
            client,
            transport: None,
            generation: 0,
            opened: false,
            attempt: 0,
            ever_online: resumed,
            signing_out: false,
            retry_timer: None,
            typing_timer: None,
            last_activity_ms: browser::now_ms(),
            idle: false,
            idle_timer: None,
            frozen: false,
        }
    }

    fn connect(&mut self) {
        if let Some(t) = self.retry_timer.take() {
            browser::clear_timeout(t);
        }
        discard(self.transport.take());
        self.generation = next_generation();
        self.opened = false;
        if self.client.phase() == Phase::Closed && !self.client.restart(self.password.as_deref(), browser::nonce()) {
            self.state.login_error.set(Some(ConnError::SessionExpired.to_string()));
            return self.end(Status::SignedOut);
        }
        // No network, the browser says (to the worker, its tabs do): as a failed attempt,
        // which waits for the network to come back.
        if !browser::network_up() {
            let events = self.client.transport_closed();
            return self.handle(events);
        }
        let endpoint = self.endpoints[self.endpoint].clone();
        self.state.transport.set(endpoint.kind());
        self.state.status.set(if self.ever_online { Status::Reconnecting(0) } else { Status::Connecting });
        match &endpoint {
            Endpoint::WebSocket(url) => match WsTransport::open(url, self.generation) {
                Ok(t) => self.transport = Some(Transport::Ws(t)),
                Err(e) => {
                    self.state.toast(e);
                    let events = self.client.transport_closed();
                    self.handle(events);
                }
            },
            Endpoint::Bosh(url) => {
                // Nothing to wait for: the session-creation request is the first exchange.
                let domain = self.client.account().domain.clone();
                self.transport = Some(Transport::Bosh(BoshTransport::new(url, &domain, self.generation)));
                let events = self.client.start();
                self.handle(events);
            }
        }
    }

    /// Hands a frame to the transport; a BOSH restart yields input at once.
    fn transmit(&mut self, frame: Frame) -> Vec<Input> {
        match &mut self.transport {
            Some(Transport::Ws(t)) => {
                t.send(&ws_encode(&frame));
                vec![]
            }
            Some(Transport::Bosh(t)) => t.send(frame),
            None => vec![],
        }
    }

    fn handle(&mut self, events: Vec<Event>) {
        let mut roster = false;
        let mut chat = false;
        let mut rooms = false;
        let mut immediate = Vec::new();
        for e in events {
            match e {
                Event::Send(frame) => {
                    let closing = frame == Frame::Close;
                    immediate.extend(self.transmit(frame));
                    if closing && self.signing_out {
                        // Do not wait long for the server's answer.
                        let generation = self.generation;
                        browser::set_timeout(1500, move || on_close(generation, 1000));
                    }
                }
                Event::Phase(p) => self.phase(p),
                Event::Online { jid, resumed } => {
                    self.ever_online = true;
                    self.arm_self_ping();
                    self.attempt = 0;
                    let bare = jabberwock_client_core::address::bare(&jid).to_owned();
                    if !self.kept_restored {
                        self.restore_kept();
                        (roster, chat) = (true, true);
                    }
                    if !std::mem::replace(&mut self.unread_restored, true) {
                        for (with, n) in unread::get(&bare) {
                            self.client.chats.restore_unread(&with, n);
                        }
                        roster = true;
                    }
                    self.state.me.set(Some(bare));
                    self.state.login_error.set(None);
                    // Our chosen presence survives reconnects and new sign-ins (the client
                    // keeps it across reconnects, and a resumed session kept it).
                    let show = self.state.own_show.get_untracked();
                    let status = self.state.own_status.get_untracked();
                    let own = self.client.own_presence();
                    let same = own.show == show && own.status.as_deref().unwrap_or("") == status;
                    let mut ev = self.client.set_client_active(browser::document_visible());
                    for j in self.open_chats() {
                        if !self.client.chats.history(&j).started {
                            ev.extend(self.client.load_history(&j));
                        }
                    }
                    if !resumed && !same {
                        ev.extend(self.client.set_presence(show, Some(status)));
                    }
                    for e in ev {
                        if let Event::Send(f) = e {
                            immediate.extend(self.transmit(f));
                        }
                    }
                }
                Event::Failed(e) => self.failed(e),
                Event::RosterChanged | Event::SubscriptionRequest { .. } => roster = true,
                Event::ChatChanged { with, incoming } => {
                    roster = true;
                    chat |= shared::views(|v| v.open_anywhere().contains(with.as_str()));
                    if incoming {
                        self.notify(&with);
                    }
                }
                Event::Notice(n) => self.state.toast(n),
                // The token and keys of the old password no longer sign in.
                Event::PasswordChanged { password } => self.password = Some(password),
                Event::RoomChanged { room, mention } => {
                    rooms = true;
                    if mention {
                        self.notify_mention(&room);
                    }
                }
                Event::RoomsChanged => rooms = true,
                Event::Upload(u) => self.on_upload(u),
            }
        }
        if roster {
            self.refresh_roster();
            self.keep_soon();
        }
        if rooms {
            // An open room may just have let us in, or a room a shown tab has open been joined.
            self.client.set_reading(shared::reading());
            for open in shared::open_anywhere() {
                self.open_room(&open);
            }
            self.refresh_rooms();
        } else if chat {
            self.refresh_views();
        }
        if chat {
            self.mark_displayed();
        }
        for input in immediate {
            let events = self.client.receive(input, browser::now_ms());
            self.handle(events);
        }
        shared::session_changed();
    }

    /// The entry for resuming this session after a reload, unless it is ending.
    fn resumable_entry(&self) -> Option<String> {
        if self.signing_out {
            return None;
        }
        Some(self.client.resumable(&self.endpoints[self.endpoint].to_saved(), browser::now_ms())?.to_json())
    }

    /// Puts back what the browser kept of this account's conversations (once per page and
    /// sign-in).
    fn restore_kept(&mut self) {
        if !std::mem::replace(&mut self.kept_restored, true) {
            kept::restore(&mut self.client);
        }
    }

    /// Saves the conversations in the browser shortly: one write for a burst of changes.
    fn keep_soon(&mut self) {
        if self.kept_restored && self.keep_timer.is_none() {
            self.keep_timer = Some(browser::set_timeout(KEEP_DELAY_MS, || {
                with_session(Session::keep_now);
            }));
        }
    }

    /// Saves the conversations in the browser now (the page may be going away).
    fn keep_now(&mut self) {
        if let Some(t) = self.keep_timer.take() {
            browser::clear_timeout(t);
        }
        if self.kept_restored && !self.signing_out {
            kept::save(&self.client);
        }
    }

    /// A desktop notification for a new message from `with`, when asked for and the tab
    /// is hidden.
    fn notify(&self, with: &str) {
        if browser::document_visible() || !settings::notifications() || !browser::notifications_allowed() {
            return;
        }
        let Some(msg) = self.client.chats.last(with) else { return };
        let name = self.client.roster.get(with).map_or(with, |i| i.display_name()).to_owned();
        let body: String = jabberwock_client_core::actions::summary(msg).chars().take(140).collect();
        show_notification(&name, &body, with);
    }

    /// Arms the timer that turns a quiet user into an away one.
    fn arm_idle_timer(&mut self) {
        let Some(after) = settings::away_after_secs().map(|s| i64::from(s) * 1000) else { return };
        if self.idle_timer.is_some() || self.idle {
            return;
        }
        let due = (self.last_activity_ms + after - browser::now_ms()).clamp(0, i64::from(i32::MAX));
        self.idle_timer = Some(browser::set_timeout(due as i32, move || {
            with_session(|s| {
                s.idle_timer = None;
                if browser::now_ms() - s.last_activity_ms < after {
                    return s.arm_idle_timer();
                }
                s.idle = true;
                let ev = s.client.set_idle(true);
                s.handle(ev);
                s.show_own_presence();
            });
        }));
    }

    fn show_own_presence(&self) {
        let own = self.client.own_presence();
        self.state.own_show.set(own.show);
        self.state.own_status.set(own.status.clone().unwrap_or_default());
    }

    fn phase(&mut self, p: Phase) {
        let status = match p {
            Phase::Connecting if self.ever_online => Status::Reconnecting(0),
            Phase::Connecting => Status::Connecting,
            Phase::Authenticating | Phase::Binding if self.ever_online => Status::Reconnecting(0),
            Phase::Authenticating | Phase::Binding => Status::Authenticating,
            Phase::Online => Status::Online,
            Phase::Closing | Phase::Closed => return,
        };
        self.state.status.set(status);
    }

    fn failed(&mut self, e: ConnError) {
        if self.signing_out {
            return;
        }
        // The transport never opened: try the next endpoint, if any.
        if !self.opened && matches!(e, ConnError::ConnectionLost) {
            self.tried += 1;
            if self.tried < self.endpoints.len() {
                self.endpoint = (self.endpoint + 1) % self.endpoints.len();
                let generation = self.generation;
                browser::set_timeout(0, move || {
                    with_session(|s| {
                        if s.generation == generation {
                            s.connect();
                        }
                    });
                });
                return;
            }
        }
        if !self.ever_online {
            let message = match e {
                ConnError::ConnectionLost if !self.opened => {
                    let tried: Vec<&str> = self.endpoints.iter().map(Endpoint::url).collect();
                    format!("Could not reach the server (tried {})", tried.join(", "))
                }
                other => other.to_string(),
            };
            self.state.login_error.set(Some(message));
            self.end(Status::SignedOut);
            return;
        }
        if e.is_permanent() {
            self.state.login_error.set(Some(e.to_string()));
            self.end(Status::SignedOut);
            return;
        }
        // The next round starts again at the endpoint that worked last.
        self.tried = 0;
        if let Some(worked) = self.worked {
            self.endpoint = worked;
        }
        let ms = reconnect_delay_ms(self.attempt, browser::random());
        self.attempt += 1;
        self.state.status.set(if browser::network_up() { Status::Reconnecting(ms.div_ceil(1000)) } else { Status::Offline });
        let generation = self.generation;
        self.retry_timer = Some(browser::set_timeout(ms as i32, move || {
            with_session(|s| {
                if s.generation == generation {
                    s.retry_timer = None;
                    s.connect();
                }
            });
        }));
    }

    /// Ends the session and clears what was shown.
    fn end(&mut self, status: Status) {
        for t in [self.retry_timer.take(), self.idle_timer.take(), self.typing_timer.take()].into_iter().flatten() {
            browser::clear_timeout(t);
        }
        discard(self.transport.take());
        self.generation = next_generation();
        let st = self.state;
        st.status.set(status);
        st.me.set(None);
        st.rows.set(Vec::new());
        st.requests.set(Vec::new());
        st.blocked.set(None);
        st.roster_loaded.set(false);
        st.total_unread.set(0);
        st.rooms.set(Vec::new());
        st.invitations.set(Vec::new());
        shared::change_views(TabViews::close_all);
        self.refresh_views();
        st.transport.set("");
        shared::session_changed();
        // Dropped after this callback: the session is gone.
        browser::set_timeout(0, || {
            SESSION.with(|s| {
                let mut s = s.borrow_mut();
                if s.as_ref().is_some_and(|s| s.transport.is_none() && s.retry_timer.is_none()) {
                    *s = None;
                }
            });
        });
    }

    fn refresh_roster(&self) {
        let chats = &self.client.chats;
        let rows: Vec<Row> = self
            .client
            .contacts()
            .into_iter()
            .map(|c| {
                let preview = chats.last(&c.jid).map(|m| {
                    let prefix = if m.direction == jabberwock_client_core::chat::Direction::Out { "You: " } else { "" };
                    let text: String = jabberwock_client_core::actions::summary(m).chars().take(80).collect();
                    format!("{prefix}{text}")
                });
                Row { unread: chats.unread(&c.jid), preview, typing: chats.is_typing(&c.jid), contact: c }
            })
            .collect();
        // Recent conversations first, newest on top; the others keep the roster's order.
        let mut rows = rows;
        rows.sort_by_key(|r| std::cmp::Reverse(chats.last(&r.contact.jid).map(|m| m.timestamp_ms)));
        self.state.rows.set(rows);
        self.state.blocked.set(self.client.blocked.available().then(|| self.client.blocked.jids().map(str::to_owned).collect()));
        let pictures = self.client.avatars.version();
        if self.pictures_shown.replace(Some(pictures)) != Some(pictures) {
            self.state.avatars.set(self.client.avatars.all().map(|(jid, url)| (jid.to_owned(), url)).collect());
        }
        self.state.requests.set(self.client.roster.requests().map(|(j, m)| (j.to_owned(), m.map(str::to_owned))).collect());
        self.state.roster_loaded.set(self.client.roster.is_loaded());
        if self.unread_restored {
            unread::set(&self.client.account().bare(), chats.unread_counts());
        }
        self.state.total_unread.set(chats.total_unread());
    }

    /// Sends each tab the view of the conversation or room it has open (the per-tab
    /// signals of [`AppState`]): the messages, where its "New messages" line goes and the
    /// archive's state, or the room (its messages, its occupants and the rest) and its
    /// bookmark. A conversation open in several tabs is made into JSON once; its lists go
    /// as a change to what each tab has.
    fn refresh_views(&self) {
        let (chats, rooms) = (&self.client.chats, &self.client.rooms);
        let mut made: BTreeMap<Option<String>, [(&'static str, String); 4]> = BTreeMap::new();
        // The occupants of each room open in a tab, as the list that goes to its tabs.
        let occupants: BTreeMap<String, Vec<Occupant>> =
            shared::open_anywhere().into_iter().filter_map(|c| rooms.get(&c).map(|r| (c, r.occupant_list()))).collect();
        shared::show_views(|view| {
            let conv = view.open.as_deref();
            let room = conv.and_then(|c| rooms.get(c));
            let chat = conv.filter(|_| room.is_none());
            let messages = chat.map_or(&[][..], |c| chats.messages(c));
            let line = match (chat, view.reading_from) {
                (Some(_), Some((unread, opened))) => chat::first_unread(messages, unread, opened),
                _ => None,
            };
            let mut fields = vec![("first_unread", json(&line))];
            let shared = made.entry(view.open.clone()).or_insert_with(|| {
                let h = chat.map(|c| chats.history(c)).unwrap_or_default();
                let bookmark = room.and_then(|r| self.client.bookmarks.get(&r.jid));
                let history = json(&(h.loading, h.started && !h.complete));
                let shown_room = json(&room.map(Room::without_lists));
                [("active", json(&conv)), ("history", history), ("room", shown_room), ("bookmarked", json(&bookmark))]
            });
            fields.extend(shared.iter().cloned());
            let room_messages = room.map_or(&[][..], |r| &r.messages);
            let occupants = conv.and_then(|c| occupants.get(c)).map_or(&[][..], Vec::as_slice);
            (fields, shared::ShownLists { messages, room_messages, occupants })
        });
    }

    /// What the tabs show changed (a conversation opened or closed, a tab shown, hidden or
    /// gone): what is read, the unread counts, "seen" and the tabs' views follow.
    fn tabs_changed(&mut self) {
        self.client.set_reading(shared::reading());
        self.refresh_roster();
        // With the tabs' views.
        self.refresh_rooms();
        self.mark_displayed();
    }

    /// The one-to-one conversations open in any tab.
    fn open_chats(&self) -> Vec<String> {
        shared::open_anywhere().into_iter().filter(|j| self.client.rooms.get(j).is_none()).collect()
    }
}

/// A desktop notification; a click opens `conversation` (in the worker of a shared
/// session, a tab shows it).
fn show_notification(title: &str, body: &str, conversation: &str) {
    if browser::in_worker() {
        return shared::notify(title, body, conversation);
    }
    let open = conversation.to_owned();
    browser::notify(title, body, conversation, move || open_chat(Some(open)));
}

// ---- transport callbacks ----

fn on_open(generation: u32) {
    with_session(|s| {
        if s.generation != generation {
            return;
        }
        s.opened = true;
        s.tried = 0;
        s.worked = Some(s.endpoint);
        let events = s.client.start();
        s.handle(events);
    });
}

fn on_text(generation: u32, text: String) {
    with_session(|s| {
        if s.generation != generation {
            return;
        }
        let events = match ws_decode(&text, &Limits::default()) {
            Ok(input) => s.client.receive(input, browser::now_ms()),
            Err(_) => {
                discard(s.transport.take());
                s.client.transport_closed()
            }
        };
        s.handle(events);
    });
}

fn on_bosh_response(generation: u32, text: String) {
    with_session(|s| {
        if s.generation != generation {
            return;
        }
        let Some(Transport::Bosh(t)) = &mut s.transport else { return };
        let Some(inputs) = t.on_response(&text) else {
            return on_transport_lost(s);
        };
        if !s.opened && t.is_open() {
            s.opened = true;
            s.tried = 0;
            s.worked = Some(s.endpoint);
        }
        let terminated = t.is_terminated();
        for input in inputs {
            let events = s.client.receive(input, browser::now_ms());
            s.handle(events);
        }
        if terminated && s.generation == generation {
            on_transport_lost(s);
        }
    });
}

fn on_bosh_failure(generation: u32) {
    with_session(|s| {
        if s.generation != generation {
            return;
        }
        if let Some(Transport::Bosh(t)) = &mut s.transport {
            t.on_failure();
        }
        on_transport_lost(s);
    });
}

/// The transport is gone, whatever kind it was.
fn on_transport_lost(s: &mut Session) {
    discard(s.transport.take());
    let events = s.client.transport_closed();
    s.handle(events);
    if s.signing_out {
        s.end(Status::SignedOut);
    }
}

fn on_close(generation: u32, _code: u16) {
    with_session(|s| {
        if s.generation != generation {
            return;
        }
        on_transport_lost(s);
    });
}

// ---- user actions ----

pub fn logout() {
    if shared::forward(Command::Logout) {
        return;
    }
    let found = with_session(|s| {
        s.signing_out = true;
        drafts::forget_all(&s.client.account().bare());
        unread::forget(&s.client.account().bare());
        kept::forget(&s.client.account().bare());
        if s.transport.is_some() && s.opened {
            let events = s.client.disconnect();
            s.handle(events);
        } else {
            s.end(Status::SignedOut);
        }
    });
    if found.is_none() {
        SESSION.with(|s| s.borrow_mut().take());
    }
}

/// Opens a conversation or room in this tab (or closes the open one); the other tabs keep
/// theirs.
pub fn open_chat(jid: Option<String>) {
    if shared::forward(Command::OpenChat { with: jid.clone() }) {
        return;
    }
    let Some(tab) = shared::current_tab() else { return };
    with_session(|s| {
        // Where reading starts, before opening marks it all read (placed once the messages
        // are there: after a reload they come from the archive).
        let unread = jid.as_deref().map_or(0, |j| s.client.chats.unread(j));
        shared::change_views(|v| v.open(tab, jid.clone(), unread, browser::now_ms()));
        // The first time, the newest page of the archive (a room's own, for a room).
        match jid.as_deref() {
            Some(room) if s.client.rooms.get(room).is_some() => s.open_room(room),
            Some(j) if !s.client.chats.history(j).started => {
                let ev = s.client.load_history(j);
                s.handle(ev);
            }
            _ => {}
        }
        s.tabs_changed();
    });
}

/// Closes `conv` in every tab that has it open (a contact removed, a room left).
fn close_everywhere(conv: &str) {
    with_session(|s| {
        shared::change_views(|v| v.close(conv));
        s.tabs_changed();
    });
}

/// In the worker: what the tabs show changed (see [`shared`]).
fn tabs_changed() {
    with_session(Session::tabs_changed);
}

/// Loads an older page of this tab's conversation.
pub fn load_older() {
    if shared::forward(Command::LoadOlder) {
        return;
    }
    let open = shared::current_tab().and_then(|tab| shared::views(|v| v.get(tab).and_then(|t| t.open.clone())));
    with_session(|s| {
        if let Some(j) = open.filter(|j| s.client.rooms.get(j).is_none()) {
            let ev = s.client.load_history(&j);
            s.handle(ev);
            s.refresh_views();
        }
    });
}

/// Stops typing after this long without a keystroke.
const PAUSED_AFTER_MS: i32 = 5000;

/// The user typed in the composer for `to` (`typing`), or cleared it.
pub fn typing(to: &str, typing: bool) {
    if shared::forward(Command::Typing { to: to.to_owned(), typing }) {
        return;
    }
    with_session(|s| {
        // Chat states go to a contact, not to a whole room.
        if actions::is_room(s, to) {
            return;
        }
        if let Some(t) = s.typing_timer.take() {
            browser::clear_timeout(t);
        }
        let ev = s.client.typing(to, typing);
        s.handle(ev);
        if typing {
            let to = to.to_owned();
            s.typing_timer = Some(browser::set_timeout(PAUSED_AFTER_MS, move || {
                with_session(|s| {
                    s.typing_timer = None;
                    let ev = s.client.typing(&to, false);
                    s.handle(ev);
                });
            }));
        }
    });
}

/// Sends a message, or queues it while offline; false when it was refused (blank, or the
/// outbox full), and the text should stay where it is.
pub fn send_message(to: &str, body: &str) -> bool {
    // The worker says so should the outbox be full.
    if shared::forward(Command::SendMessage { to: to.to_owned(), body: body.to_owned() }) {
        return !body.trim().is_empty();
    }
    with_session(|s| {
        if let Some(t) = s.typing_timer.take() {
            browser::clear_timeout(t);
        }
        if actions::is_room(s, to) {
            let events = s.client.write_in_room(|rooms| rooms.send(to, body, browser::now_ms()));
            let sent = events.iter().any(|e| !matches!(e, Event::Notice(_)));
            s.handle(events);
            return sent;
        }
        let events = s.client.send_message(to, body, browser::now_ms());
        let taken = events.iter().any(|e| matches!(e, Event::ChatChanged { .. }));
        s.handle(events);
        taken
    })
    .unwrap_or(false)
}

/// "Reconnect now": the next attempt starts at once, and the backoff starts over.
pub fn reconnect_now() {
    if shared::forward(Command::ReconnectNow) {
        return;
    }
    with_session(|s| {
        if s.retry_timer.is_some() {
            s.attempt = 0;
            s.connect();
        }
    });
}

pub fn add_contact(jid: &str, name: &str) -> Result<(), String> {
    if shared::forward(Command::AddContact { jid: jid.to_owned(), name: name.to_owned() }) {
        return jabberwock_client_core::address::parse_bare(jid).map(drop).map_err(|e| e.to_string());
    }
    with_session(|s| {
        let name = Some(name.trim()).filter(|n| !n.is_empty());
        let events = s.client.add_contact(jid, name).map_err(|e| e.to_string())?;
        s.handle(events);
        Ok(())
    })
    .unwrap_or_else(|| Err("Not connected".into()))
}

pub fn accept(jid: &str) {
    if shared::forward(Command::Accept { jid: jid.to_owned() }) {
        return;
    }
    with_session(|s| {
        let ev = s.client.accept(jid);
        s.handle(ev);
    });
}

pub fn deny(jid: &str) {
    if shared::forward(Command::Deny { jid: jid.to_owned() }) {
        return;
    }
    with_session(|s| {
        let ev = s.client.deny(jid);
        s.handle(ev);
    });
}

pub fn remove_contact(jid: &str) {
    if shared::forward(Command::RemoveContact { jid: jid.to_owned() }) {
        return;
    }
    with_session(|s| {
        let ev = s.client.remove_contact(jid);
        s.handle(ev);
    });
    close_everywhere(jid);
}

/// Sets our picture from a file the user picked: made a square JPEG of 128 pixels first.
pub fn set_avatar(file: web_sys::File) {
    spawn_local(async move { set_avatar_picture(browser::square_jpeg(file, 128).await) });
}

/// Sets our picture from the JPEG made of the file (a `data:` URL), or says why not.
fn set_avatar_picture(picture: Result<String, String>) {
    if let Ok(data_url) = &picture {
        if shared::forward(Command::SetAvatar { data_url: data_url.clone() }) {
            return;
        }
    }
    let picture = picture.and_then(|url| {
        jabberwock_client_core::avatar::from_data_url(&url).ok_or_else(|| "The picture could not be read".to_owned())
    });
    match picture {
        Ok((mime, bytes)) => {
            with_session(|s| {
                let ev = s.client.set_avatar(&mime, bytes);
                s.handle(ev);
            });
        }
        // In a tab of a shared session, the tab says it.
        Err(e) => {
            shared::shown(|state| state.toast(e.clone())).or_else(|| with_session(|s| s.state.toast(e)));
        }
    }
}

/// Changes the account's password; an error says why it was not sent.
pub fn change_password(password: &str, again: &str) -> Result<(), String> {
    // Checked in the page too, which says at once what is wrong with it.
    jabberwock_client_core::account::check_new_password(password, again).map_err(|e| e.to_string())?;
    if shared::forward(Command::ChangePassword { password: password.to_owned(), again: again.to_owned() }) {
        return Ok(());
    }
    with_session(|s| {
        let ev = s.client.change_password(password, again).map_err(|e| e.to_string())?;
        s.handle(ev);
        Ok(())
    })
    .unwrap_or_else(|| Err("Not connected".into()))
}

/// Blocks (`block`) or unblocks `jid` (XEP-0191).
pub fn block(jid: &str, block: bool) {
    if shared::forward(Command::Block { jid: jid.to_owned(), block }) {
        return;
    }
    with_session(|s| {
        let ev = s.client.block(jid, block);
        s.handle(ev);
    });
}

pub fn update_contact(jid: &str, name: &str, groups: &[String]) {
    if shared::forward(Command::UpdateContact { jid: jid.to_owned(), name: name.to_owned(), groups: groups.to_vec() }) {
        return;
    }
    with_session(|s| {
        let ev = s.client.update_contact(jid, name, groups);
        s.handle(ev);
    });
}

pub fn set_presence(show: Show, status: String) {
    if shared::forward(Command::SetPresence { show, status: status.clone() }) {
        return;
    }
    with_session(|s| {
        s.state.own_show.set(show);
        s.state.own_status.set(status.clone());
        let ev = s.client.set_presence(show, Some(status));
        s.handle(ev);
    });
}

/// The tab was hidden or shown (in the worker: whether any tab is shown changed): the
/// client state (XEP-0352) follows; being shown is a sign of the user. What is read
/// follows each tab ([`tabs_changed`]).
pub fn visibility_changed(visible: bool) {
    if shared::tab_visible(visible) {
        return;
    }
    if visible {
        user_active();
    }
    with_session(|s| {
        // A phone may end a hidden page without a `pagehide`.
        if !visible {
            s.keep_now();
        }
        let ev = s.client.set_client_active(visible);
        s.handle(ev);
    });
}

/// The browser says the network is back: do not wait for the backoff timer; a connection
/// that survived the outage is online again.
pub fn network_online() {
    if shared::forward(Command::NetworkOnline) {
        return;
    }
    with_session(|s| {
        if s.retry_timer.is_some() {
            s.attempt = 0;
            s.connect();
        } else if s.client.phase() == Phase::Online {
            s.state.status.set(Status::Online);
        }
    });
}

/// The browser says the network is gone: say so, whatever the connection still believes.
pub fn network_offline() {
    if shared::forward(Command::NetworkOffline) {
        return;
    }
    with_session(|s| s.state.status.set(Status::Offline));
}

/// A sign of the user (pointer, keyboard, the tab shown): back from idle if we were, and
/// the idle countdown starts again.
pub fn user_active() {
    if shared::forward_activity() {
        return;
    }
    with_session(|s| {
        s.last_activity_ms = browser::now_ms();
        if s.idle {
            s.idle = false;
            let ev = s.client.set_idle(false);
            s.handle(ev);
            s.show_own_presence();
        }
        s.arm_idle_timer();
    });
}

/// The idle setting changed: the countdown follows it.
pub fn idle_setting_changed() {
    if shared::forward(Command::IdleSettingChanged) {
        return;
    }
    with_session(|s| {
        if let Some(t) = s.idle_timer.take() {
            browser::clear_timeout(t);
        }
        s.arm_idle_timer();
    });
}
