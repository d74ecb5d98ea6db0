//! The session runs in a worker, never in the page (see the README, *One connection for
//! all tabs*): a `SharedWorker` holds one session for every tab of the origin, each tab a
//! view on it; where there is no `SharedWorker`, and for the widget in another site's
//! frame, a dedicated `Worker` holds the page's own. Both run this crate's session program
//! (`src/bin/jabberwock-session.rs`), which is [`super::Session`] as a page used to run it.
//!
//! The page (built with the `page` feature) hands each call of [`super`]'s public functions
//! to the worker as a [`Command`] (one line at the top of each: the rest of the function is
//! what the worker runs, and is left out of the page's build), and the worker sends back
//! every view signal that changes: the session's to every tab, those of the open
//! conversation only to the tab that has it open (each tab opens its own; see
//! [`TabViews`]). What only a page has, the worker gets from its tabs:
//! `localStorage` (the tabs send theirs and keep what the worker writes), whether any tab
//! is shown (XEP-0352, unread counting, "seen"), desktop notifications (a tab shows them),
//! and the entry for resuming after a reload (the worker sends its latest; each tab writes
//! it as it goes away).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use jabberwock_client_core::chat::ChatMessage;
use jabberwock_client_core::muc::{Occupant, RoomMessage};
use jabberwock_client_core::splice;
use jabberwock_client_core::tabs::{Command, TabView, TabViews, ToTab, ToWorker};
use leptos::prelude::{GetUntracked, Set};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use super::rooms;
use crate::state::{json, AppState};
use crate::{browser, settings};

/// The worker's script, next to the page.
const WORKER_SCRIPT: &str = "session-worker.js";

/// `localStorage["jabberwock.shared-tabs"] = "0"` gives each tab of a browser a session of
/// its own.
const SWITCH_KEY: &str = "jabberwock.shared-tabs";

/// What is sent to the worker when a tab joins: the client's own values.
const STORED_PREFIX: &str = "jabberwock.";

/// Where a page keeps the conversation it has open for the next page of the same tab
/// (`sessionStorage`, as the resumption entry).
const OPEN_KEY: &str = "jabberwock.open";

/// A tab tells the worker the user is there at most this often (pointer moves come many
/// times a second).
const ACTIVITY_EVERY_MS: i64 = 1000;

/// A page's link to its worker.
struct Link {
    /// The worker's port; a dedicated `Worker` stands in for one (it has the same
    /// `postMessage` and `onmessage`).
    port: web_sys::MessagePort,
    state: AppState,
    /// The latest resumption entry the worker sent (or the one this tab's previous page
    /// left, until the worker says otherwise).
    resume: Option<String>,
    last_activity_sent: i64,
}

/// The worker's tabs (one, for a dedicated worker).
#[derive(Default)]
struct Tabs {
    ports: BTreeMap<u32, Port>,
    next: u32,
    /// What each tab shows: whether it is visible, its open conversation.
    views: TabViews,
    /// The resumption entry last sent, so that an unchanged one is not sent again.
    resume: Option<String>,
    resume_pending: bool,
}

/// A tab, as the worker sees it.
struct Port {
    port: web_sys::MessagePort,
    /// The fields of its conversation's view as last sent, so that only changes go.
    sent: BTreeMap<&'static str, String>,
    /// Its conversation's or room's lists as it has them, so that only a change goes.
    lists: ViewLists,
}

/// The lists of a tab's view that grow (per-tab list signals of [`AppState`]), each as the
/// tab has it: `None` when not sent yet, or when it asked for it again.
#[derive(Default)]
struct ViewLists {
    messages: Option<Vec<ChatMessage>>,
    room_messages: Option<Vec<RoomMessage>>,
    occupants: Option<Vec<Occupant>>,
}

/// A tab's view's lists as they are now (empty where it has no conversation, or no room,
/// open).
pub struct ShownLists<'a> {
    pub messages: &'a [ChatMessage],
    pub room_messages: &'a [RoomMessage],
    pub occupants: &'a [Occupant],
}

impl ViewLists {
    /// Sends the tab the change from what it has to `now`, list by list.
    fn show(&mut self, port: &web_sys::MessagePort, now: &ShownLists) {
        show_list(port, "messages", &mut self.messages, now.messages);
        show_list(port, "room_messages", &mut self.room_messages, now.room_messages);
        show_list(port, "occupants", &mut self.occupants, now.occupants);
    }

    /// Forgets what the tab has of `field`, which it asked for again; false when it is
    /// none of these lists.
    fn forget(&mut self, field: &str) -> bool {
        match field {
            "messages" => self.messages = None,
            "room_messages" => self.room_messages = None,
            "occupants" => self.occupants = None,
            _ => return false,
        }
        true
    }
}

thread_local! {
    /// The tab whose message the worker is handling: the one that opens a conversation.
    static CURRENT_TAB: Cell<Option<u32>> = const { Cell::new(None) };
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
    static TABS: RefCell<Option<Tabs>> = const { RefCell::new(None) };
    /// The worker's signals, which the session writes and the tabs mirror.
    static STATE: Cell<Option<AppState>> = const { Cell::new(None) };
}

// ---- in a page ----

/// Whether this page shares the session of the origin's other tabs.
fn shared_wanted() -> bool {
    let has_shared_worker = js_sys::Reflect::has(&js_sys::global(), &"SharedWorker".into()).unwrap_or(false);
    has_shared_worker && !crate::config::get().widget && browser::stored(SWITCH_KEY).as_deref() != Some("0")
}

/// This page's release: the name of its script, which trunk makes from its content.
fn release() -> String {
    let link = browser::window().document().and_then(|d| d.query_selector("link[rel=modulepreload][href$='.js']").ok().flatten());
    link.and_then(|l| l.get_attribute("href")).unwrap_or_default()
}

/// Starts or joins the worker that holds the session, with `saved` (the resumption entry
/// this tab's previous page left) for it to resume if it has no session yet.
pub fn connect(state: AppState, saved: Option<String>) {
    let url = format!("{WORKER_SCRIPT}?release={}", String::from(js_sys::encode_uri_component(&release())));
    // A classic worker (see session-worker.js).
    let shared = shared_wanted();
    let worker: Result<web_sys::EventTarget, JsValue> = if shared {
        let options = web_sys::WorkerOptions::new();
        options.set_name("jabberwock-session");
        web_sys::SharedWorker::new_with_worker_options(&url, &options).map(Into::into)
    } else {
        web_sys::Worker::new(&url).map(Into::into)
    };
    let Ok(worker) = worker else {
        return state.login_error.set(Some("This browser cannot run the client: it has no web workers".into()));
    };
    // Its script missing, or refused: nothing can sign in.
    let on_error = Closure::<dyn FnMut()>::new(move || {
        state.login_error.set(Some("The client could not start its connection worker; reload the page".into()));
    });
    let _ = worker.add_event_listener_with_callback("error", on_error.as_ref().unchecked_ref());
    on_error.forget();
    let port: web_sys::MessagePort = match worker.dyn_ref::<web_sys::SharedWorker>() {
        Some(shared) => shared.port(),
        None => worker.unchecked_into(),
    };
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        if let Some(message) = e.data().as_string().as_deref().and_then(ToTab::from_json) {
            from_worker(state, message);
        }
    });
    port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let stored = browser::stored_keys()
        .into_iter()
        .filter(|k| k.starts_with(STORED_PREFIX))
        .filter_map(|k| browser::stored(&k).map(|v| (k, v)))
        .collect();
    let open = browser::session_storage().and_then(|storage| {
        let open = storage.get_item(OPEN_KEY).ok().flatten();
        let _ = storage.remove_item(OPEN_KEY);
        open
    });
    let hello = ToWorker::Hello { visible: browser::document_visible(), online: browser::network_up(), stored, resume: saved.clone(), open };
    let _ = port.post_message(&hello.to_json().into());
    LINK.with(|l| *l.borrow_mut() = Some(Link { port, state, resume: saved, last_activity_sent: 0 }));
    // Held until this page ends, so that a shared worker learns of its end even without a
    // `pagehide` (a tab that crashed or that the system killed): see [`ToWorker::Alive`].
    // A dedicated worker ends with its page.
    if shared {
        let lock = format!("jabberwock.tab.{}", browser::nonce());
        browser::request_lock(&lock.clone(), move || {
            post(&ToWorker::Alive { lock });
            js_sys::Promise::new(&mut |_, _| {})
        });
    }
    browser::forward_stores(|key, value| post(&ToWorker::Stored { key: key.to_owned(), value: value.map(str::to_owned) }));
}

fn post(message: &ToWorker) {
    LINK.with(|l| {
        if let Some(link) = l.borrow().as_ref() {
            let _ = link.port.post_message(&message.to_json().into());
        }
    });
}

/// In the page: hands `command` to the worker and returns true. In the worker: false, and
/// the caller runs it. (Inlined, so that the page's build sees the constant and leaves the
/// session's code out.)
#[inline(always)]
pub fn forward(command: Command) -> bool {
    if cfg!(feature = "page") {
        post(&ToWorker::Command { command });
    }
    cfg!(feature = "page")
}

/// [`forward`] for an upload: the file goes next to the command (a `File` crosses to the
/// worker as it is).
#[inline(always)]
pub fn forward_upload(conv: &str, file: &web_sys::File) -> bool {
    if cfg!(feature = "page") {
        post_upload(conv, file);
    }
    cfg!(feature = "page")
}

fn post_upload(conv: &str, file: &web_sys::File) {
    LINK.with(|l| {
        if let Some(link) = l.borrow().as_ref() {
            let text = ToWorker::Command { command: Command::Upload { conv: conv.to_owned() } }.to_json();
            let _ = link.port.post_message(&js_sys::Array::of2(&text.into(), file));
        }
    });
}

/// [`forward`] for a sign of the user, at most every few seconds.
#[inline(always)]
pub fn forward_activity() -> bool {
    if cfg!(feature = "page") {
        post_activity();
    }
    cfg!(feature = "page")
}

fn post_activity() {
    let now = browser::now_ms();
    let due = LINK.with(|l| {
        let mut l = l.borrow_mut();
        let link = l.as_mut().filter(|link| now - link.last_activity_sent >= ACTIVITY_EVERY_MS);
        link.map(|link| link.last_activity_sent = now).is_some()
    });
    if due {
        post(&ToWorker::Command { command: Command::UserActive });
    }
}

/// In the page: reads from what the worker showed it (`None` in the worker).
pub fn shown<R>(f: impl FnOnce(&AppState) -> R) -> Option<R> {
    LINK.with(|l| l.borrow().as_ref().map(|link| f(&link.state)))
}

/// The page was shown or hidden: the worker is told (true); false in the worker.
#[inline(always)]
pub fn tab_visible(visible: bool) -> bool {
    if cfg!(feature = "page") {
        if visible {
            post_activity();
        }
        post(&ToWorker::Visible { visible });
    }
    cfg!(feature = "page")
}

/// The page goes away: keeps the latest resumption entry for this tab's next page (which
/// resumes with it should the worker be gone by then) and leaves the worker.
pub fn page_hidden() {
    let Some(link) = LINK.with(|l| l.borrow_mut().take()) else { return };
    if let Some(storage) = browser::session_storage() {
        if let Some(entry) = &link.resume {
            let _ = storage.set_item(super::RESUME_KEY, entry);
        }
        if let Some(open) = link.state.active.get_untracked() {
            let _ = storage.set_item(OPEN_KEY, &open);
        }
    }
    let _ = link.port.post_message(&ToWorker::Bye.to_json().into());
}

fn from_worker(state: AppState, message: ToTab) {
    match message {
        ToTab::State { field, value } => {
            state.apply(&field, &value);
        }
        // A change to a list this tab does not have as the worker thinks: all of it again.
        ToTab::Splice { field, len, head, tail, items } => {
            if let Some(again) = state.splice(&field, len, head, tail, &items) {
                post(&again);
            }
        }
        // Over the origin's quota: better nothing than an outdated copy.
        ToTab::Stored { key, value } => {
            if !browser::keep_here(&key, value.as_deref()) {
                browser::keep_here(&key, None);
            }
        }
        ToTab::Resume { entry } => LINK.with(|l| {
            if let Some(link) = l.borrow_mut().as_mut() {
                link.resume = entry;
            }
        }),
        ToTab::Notify { title, body, conversation } => {
            if settings::notifications() && browser::notifications_allowed() {
                let open = conversation.clone();
                browser::notify(&title, &body, &conversation, move || super::open_chat(Some(open)));
            }
        }
        ToTab::Log { what, text } => browser::debug(&what, &text),
    }
}

// ---- in the worker ----

/// The worker's start: the session's signals are mirrored to every tab that connects.
pub fn run_worker() {
    let _ = any_spawner::Executor::init_wasm_bindgen();
    let state = AppState::new();
    STATE.with(|s| s.set(Some(state)));
    TABS.with(|t| *t.borrow_mut() = Some(Tabs::default()));
    state.watch(
        |field, value| to_tabs(&ToTab::State { field: field.to_owned(), value }),
        |field, len, head, tail, items| to_tabs(&ToTab::Splice { field: field.to_owned(), len, head, tail, items }),
    );
    browser::forward_stores(|key, value| to_tabs(&ToTab::Stored { key: key.to_owned(), value: value.map(str::to_owned) }));
    browser::forward_log(|what, text| to_tabs(&ToTab::Log { what: what.to_owned(), text: text.to_owned() }));
    let scope = js_sys::global();
    // What came while this program loaded (session-worker.js kept it).
    let waiting = js_sys::Reflect::get(&scope, &"jabberwockPending".into()).map(|p| js_sys::Array::from(&p)).unwrap_or_default();
    if let Some(shared) = scope.dyn_ref::<web_sys::SharedWorkerGlobalScope>() {
        let on_connect = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(|e: web_sys::MessageEvent| {
            if let Ok(port) = e.ports().get(0).dyn_into::<web_sys::MessagePort>() {
                tab_connected(port);
            }
        });
        shared.set_onconnect(Some(on_connect.as_ref().unchecked_ref()));
        on_connect.forget();
        for e in waiting.iter() {
            if let Ok(port) = e.unchecked_into::<web_sys::MessageEvent>().ports().get(0).dyn_into::<web_sys::MessagePort>() {
                tab_connected(port);
            }
        }
    } else {
        // A dedicated worker: its one page talks to the worker's own scope, which has the
        // same `postMessage` and `onmessage` as a port.
        let tab = tab_connected(scope.unchecked_into());
        for e in waiting.iter() {
            from_tab(tab, e.unchecked_into::<web_sys::MessageEvent>().data());
        }
    }
}

fn worker_state() -> Option<AppState> {
    STATE.with(Cell::get)
}

/// A tab's port: its messages are read from now on; returns the tab's number.
fn tab_connected(port: web_sys::MessagePort) -> u32 {
    let tab = TABS.with(|t| {
        let mut t = t.borrow_mut();
        let tabs = t.get_or_insert_with(Tabs::default);
        tabs.next += 1;
        tabs.ports.insert(tabs.next, Port { port: port.clone(), sent: BTreeMap::new(), lists: ViewLists::default() });
        tabs.next
    });
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| from_tab(tab, e.data()));
    port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    tab
}

fn send_to(port: &web_sys::MessagePort, message: &ToTab) {
    let _ = port.post_message(&message.to_json().into());
}

fn to_tabs(message: &ToTab) {
    let text: JsValue = message.to_json().into();
    TABS.with(|t| {
        for tab in t.borrow().iter().flat_map(|t| t.ports.values()) {
            let _ = tab.port.post_message(&text);
        }
    });
}

fn from_tab(tab: u32, data: JsValue) {
    // Text, or [text, file] for an upload.
    let (text, file) = match data.as_string() {
        Some(text) => (text, None),
        None => {
            let parts = js_sys::Array::from(&data);
            (parts.get(0).as_string().unwrap_or_default(), parts.get(1).dyn_into::<web_sys::File>().ok())
        }
    };
    let Some(message) = ToWorker::from_json(&text) else { return };
    let Some(state) = worker_state() else { return };
    match message {
        ToWorker::Hello { visible, online, stored, resume, open } => {
            browser::set_tabs_online(online);
            for (key, value) in &stored {
                browser::keep_here(key, Some(value));
            }
            let port = TABS.with(|t| t.borrow().as_ref().and_then(|t| t.ports.get(&tab).map(|p| p.port.clone())));
            if let Some(port) = &port {
                for (field, value) in state.snapshot() {
                    send_to(port, &ToTab::State { field: field.to_owned(), value });
                }
                let entry = TABS.with(|t| t.borrow().as_ref().and_then(|t| t.resume.clone()));
                send_to(port, &ToTab::Resume { entry });
            }
            if !super::has_session() {
                if let Some(saved) = resume {
                    super::resume_from(state, &saved);
                }
            }
            super::thaw();
            let shown_changed = TABS.with(|t| t.borrow_mut().as_mut().is_some_and(|t| t.views.join(tab, visible)));
            if shown_changed {
                visibility_follows();
            }
            // The conversation this tab's previous page had open, or none; either way the
            // tab is sent its view.
            as_tab(tab, || super::open_chat(open));
        }
        ToWorker::Command { command } => as_tab(tab, || run(state, command, file)),
        ToWorker::Visible { visible } => {
            if visible {
                super::user_active();
            }
            set_visible(tab, visible);
        }
        ToWorker::Stored { key, value } => {
            browser::keep_here(&key, value.as_deref());
        }
        // Between two messages the watched signals are as the tabs were last told: the
        // value now is what the next change is made against.
        ToWorker::Resend { field } => {
            let whole = state.snapshot().into_iter().find(|(f, _)| *f == field);
            let conversation = TABS.with(|t| {
                let mut t = t.borrow_mut();
                let Some(port) = t.as_mut().and_then(|t| t.ports.get_mut(&tab)) else { return false };
                match whole {
                    Some((_, value)) => {
                        send_to(&port.port, &ToTab::State { field, value });
                        false
                    }
                    // A list of the tab's own view: all of it, with its view.
                    None => port.lists.forget(&field),
                }
            });
            if conversation {
                super::tabs_changed();
            }
        }
        // Granted once the tab is gone, however it went.
        ToWorker::Alive { lock } => {
            browser::request_lock(&lock, move || {
                tab_gone(tab);
                js_sys::Promise::resolve(&JsValue::UNDEFINED)
            });
        }
        ToWorker::Bye => tab_gone(tab),
    }
}

/// Tab `tab` closed (said [`ToWorker::Bye`], or its lock came free; either may come second,
/// and then does nothing): its port and view go with it.
fn tab_gone(tab: u32) {
    let gone = TABS.with(|t| {
        let mut t = t.borrow_mut();
        let tabs = t.as_mut()?;
        tabs.ports.remove(&tab)?;
        Some((tabs.views.leave(tab), tabs.ports.is_empty()))
    });
    let Some((changed, last)) = gone else { return };
    // The last tab gone, the worker ends with it: the session stays as that tab saved it
    // (not even marked inactive, which would outlive us into the resumed stream).
    if last {
        return super::freeze();
    }
    if changed {
        visibility_follows();
    }
    super::tabs_changed();
}

/// Runs `f` on behalf of tab `tab` (see [`current_tab`]).
fn as_tab(tab: u32, f: impl FnOnce()) {
    let before = CURRENT_TAB.with(|c| c.replace(Some(tab)));
    f();
    CURRENT_TAB.with(|c| c.set(before));
}

/// In the worker: the tab whose message is being handled.
pub fn current_tab() -> Option<u32> {
    CURRENT_TAB.with(Cell::get)
}

fn set_visible(tab: u32, visible: bool) {
    let changed = TABS.with(|t| t.borrow_mut().as_mut().is_some_and(|t| t.views.set_visible(tab, visible)));
    if changed {
        visibility_follows();
    }
    super::tabs_changed();
}

/// The session is shown while any tab is.
fn visibility_follows() {
    let any = TABS.with(|t| t.borrow().as_ref().is_some_and(|t| t.views.any_visible()));
    browser::set_tabs_visible(any);
    super::visibility_changed(any);
}

/// In the worker: reads what the tabs show.
pub fn views<R>(f: impl FnOnce(&TabViews) -> R) -> R {
    TABS.with(|t| match t.borrow().as_ref() {
        Some(tabs) => f(&tabs.views),
        None => f(&TabViews::default()),
    })
}

/// In the worker: changes what the tabs show (a tab opens a conversation, one is closed
/// everywhere).
pub fn change_views<R>(f: impl FnOnce(&mut TabViews) -> R) -> Option<R> {
    TABS.with(|t| t.borrow_mut().as_mut().map(|t| f(&mut t.views)))
}

/// In the worker: the conversations open in any tab.
pub fn open_anywhere() -> Vec<String> {
    views(|v| v.open_anywhere().into_iter().map(str::to_owned).collect())
}

/// In the worker: the conversations open in a shown tab, whose messages are read.
pub fn reading() -> BTreeSet<String> {
    views(TabViews::reading)
}

/// In the worker: sends each tab its conversation's view, as `view` makes it: the fields
/// that changed since they were last sent to it, and the changes to its lists.
pub fn show_views<'a>(mut view: impl FnMut(&TabView) -> (Vec<(&'static str, String)>, ShownLists<'a>)) {
    TABS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(tabs) = t.as_mut() else { return };
        for (tab, port) in &mut tabs.ports {
            let Some(tab_view) = tabs.views.get(*tab) else { continue };
            let (fields, lists) = view(tab_view);
            for (field, value) in fields {
                if port.sent.get(field) != Some(&value) {
                    send_to(&port.port, &ToTab::State { field: field.to_owned(), value: value.clone() });
                    port.sent.insert(field, value);
                }
            }
            port.lists.show(&port.port, &lists);
        }
    });
}

/// Sends a tab the change to its list `field`: the run that differs from what it has (one
/// message, for a new one), or all of it the first time.
fn show_list<T: serde::Serialize + Clone + PartialEq>(port: &web_sys::MessagePort, field: &str, sent: &mut Option<Vec<T>>, now: &[T]) {
    let Some(sent) = sent else {
        send_to(port, &ToTab::State { field: field.into(), value: json(now) });
        *sent = Some(now.to_vec());
        return;
    };
    if let Some((len, head, tail, run)) = splice::advance(sent, now) {
        send_to(port, &ToTab::Splice { field: field.into(), len, head, tail, items: json(run) });
    }
}

/// In the worker: the session changed; its resumption entry goes to the tabs shortly (one
/// for a burst of changes).
pub fn session_changed() {
    if !browser::in_worker() {
        return;
    }
    let pending = TABS.with(|t| t.borrow_mut().as_mut().map(|t| std::mem::replace(&mut t.resume_pending, true)));
    if pending == Some(false) {
        browser::set_timeout(0, || {
            let entry = super::resumable_entry();
            let changed = TABS.with(|t| {
                let mut t = t.borrow_mut();
                let tabs = t.as_mut()?;
                tabs.resume_pending = false;
                (tabs.resume != entry).then(|| tabs.resume.clone_from(&entry))
            });
            if changed.is_some() {
                to_tabs(&ToTab::Resume { entry });
            }
        });
    }
}

/// In the worker: a desktop notification, shown by the tab that connected first.
pub fn notify(title: &str, body: &str, conversation: &str) {
    let message = ToTab::Notify { title: title.to_owned(), body: body.to_owned(), conversation: conversation.to_owned() };
    TABS.with(|t| {
        if let Some(tab) = t.borrow().as_ref().and_then(|t| t.ports.values().next()) {
            send_to(&tab.port, &message);
        }
    });
}

/// In the worker: does what a tab asked. What the page would show next to a form (a
/// refused room address, say) comes as a notice to every tab.
fn run(state: AppState, command: Command, file: Option<web_sys::File>) {
    let notice = |result: Result<(), String>| {
        if let Err(e) = result {
            state.toast(e);
        }
    };
    match command {
        Command::SignIn { address, password, endpoints, create } => super::sign_in_from(state, &address, password, &endpoints, create),
        Command::Logout => super::logout(),
        Command::OpenChat { with } => super::open_chat(with),
        Command::LoadOlder => super::load_older(),
        Command::Typing { to, typing } => super::typing(&to, typing),
        Command::SendMessage { to, body } => {
            super::send_message(&to, &body);
        }
        Command::ReconnectNow => super::reconnect_now(),
        Command::AddContact { jid, name } => notice(super::add_contact(&jid, &name)),
        Command::Accept { jid } => super::accept(&jid),
        Command::Deny { jid } => super::deny(&jid),
        Command::RemoveContact { jid } => super::remove_contact(&jid),
        Command::SetAvatar { data_url } => super::set_avatar_picture(Ok(data_url)),
        Command::ChangePassword { password, again } => notice(super::change_password(&password, &again)),
        Command::Block { jid, block } => super::block(&jid, block),
        Command::UpdateContact { jid, name, groups } => super::update_contact(&jid, &name, &groups),
        Command::SetPresence { show, status } => super::set_presence(show, status),
        Command::NetworkOnline => {
            browser::set_tabs_online(true);
            super::network_online();
        }
        Command::NetworkOffline => {
            browser::set_tabs_online(false);
            super::network_offline();
        }
        Command::UserActive => super::user_active(),
        Command::IdleSettingChanged => super::idle_setting_changed(),
        Command::CorrectLast { conv, id, text } => {
            super::correct_last(&conv, &id, &text);
        }
        Command::Retract { conv, id } => {
            super::retract(&conv, &id);
        }
        Command::ToggleReaction { conv, id, emoji } => {
            super::toggle_reaction(&conv, &id, &emoji);
        }
        Command::SendReply { conv, reply_to, text } => {
            super::send_reply(&conv, &reply_to, &text);
        }
        Command::Moderate { conv, id } => {
            super::moderate(&conv, &id);
        }
        Command::Upload { conv } => {
            if let Some(file) = file {
                super::upload(&conv, file);
            }
        }
        Command::DismissUpload { request } => super::dismiss_upload(request),
        Command::Join { room, nick, password } => notice(rooms::join(&room, &nick, &password)),
        Command::CreateRoom { room, nick, settings } => notice(rooms::create(&room, &nick, settings)),
        Command::Leave { room } => rooms::leave(&room),
        Command::ChangeNick { room, nick } => rooms::change_nick(&room, &nick),
        Command::SetSubject { room, subject } => rooms::set_subject(&room, &subject),
        Command::Invite { room, jid } => notice(rooms::invite(&room, &jid)),
        Command::SetRole { room, nick, role } => rooms::set_role(&room, &nick, role),
        Command::SetAffiliation { room, nick, affiliation } => rooms::set_affiliation(&room, &nick, affiliation),
        Command::RequestConfig { room } => rooms::request_config(&room),
        Command::SubmitConfig { room, form } => rooms::submit_config(&room, form),
        Command::Destroy { room } => rooms::destroy(&room),
        Command::RoomLoadOlder { room } => rooms::load_older(&room),
        Command::DiscoverRooms => rooms::discover(),
        Command::BrowseRooms { service } => rooms::browse(&service),
        Command::SetBookmarked { room, on } => rooms::set_bookmarked(&room, on),
        Command::AcceptInvitation { room, nick } => notice(rooms::accept_invitation(&room, &nick)),
        Command::DeclineInvitation { room } => rooms::decline_invitation(&room),
    }
}
