//! The Jabberwock web client: Leptos views over `jabberwock-client-core`, in two programs:
//! the page (`src/main.rs`: the views) and the worker that holds the XMPP session for the
//! page, or for every tab of the origin (`src/bin/jabberwock-session.rs`; see
//! [`net::shared`]).
//!
//! * [`state`]: the signals the views read;
//! * [`net`]: the live session (transport, reconnects) that writes them;
//! * [`ui`]: the components;
//! * [`browser`]: clock, randomness, timers, notifications and formatting from the browser;
//! * [`settings`]: the user's preferences;
//! * [`config`]: how the page was asked to run (full client, or a widget on another site).

mod browser;
mod config;
mod drafts;
mod kept;
mod net;
mod settings;
mod state;
mod ui;
mod unread;

/// The page: the views, over the session in the worker.
pub fn page() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(ui::App);
}

/// The worker (loaded by `session-worker.js`): the session, without views.
pub fn worker() {
    console_error_panic_hook::set_once();
    net::shared::run_worker();
}
