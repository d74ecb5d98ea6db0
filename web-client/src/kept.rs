//! The account's contacts and recent conversations, kept in `localStorage` so that a page
//! started without a network shows them (what is kept, and its bounds:
//! [`jabberwock_client_core::kept`]). Signing out forgets them, as it forgets drafts.
//!
//! `localStorage` rather than IndexedDB: what is kept is one bounded value per account
//! (at most [`MAX_BYTES`] of JSON), and reading it synchronously lets the first render of
//! a page started offline show the conversation, with no transaction to wait for.

use std::cell::RefCell;

use jabberwock_client_core::client::Client;
use jabberwock_client_core::kept::{Kept, MAX_BYTES};

use crate::browser;

thread_local! {
    /// What was written last, so that a save that changes nothing writes nothing.
    static WRITTEN: RefCell<String> = const { RefCell::new(String::new()) };
}

fn key(account: &str) -> String {
    format!("jabberwock.kept.{account}")
}

/// Shows in `client` what was kept for its account, if anything.
pub fn restore(client: &mut Client) {
    let account = client.account().bare();
    let Some(text) = browser::stored(&key(&account)) else { return };
    if let Some(kept) = Kept::from_json(&text) {
        kept.restore(client);
    }
}

/// Keeps what `client` shows now, replacing what was kept for its account.
pub fn save(client: &Client) {
    let account = client.account().bare();
    let text = Kept::of(client, MAX_BYTES).to_json();
    if WRITTEN.with(|w| *w.borrow() == text) {
        return;
    }
    // Over the origin's quota: better nothing than an outdated copy.
    if !browser::store(&key(&account), Some(&text)) {
        browser::store(&key(&account), None);
    }
    WRITTEN.with(|w| *w.borrow_mut() = text);
}

pub fn forget(account: &str) {
    browser::store(&key(account), None);
    WRITTEN.with(|w| w.borrow_mut().clear());
}
