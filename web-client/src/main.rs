//! The Jabberwock web client: Leptos views over `jabberwock-client-core`.
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

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(ui::App);
}
