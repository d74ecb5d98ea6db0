//! What the user was writing in each conversation, kept in `localStorage` so that a reload,
//! a lost session or another conversation opened meanwhile never loses it. Signing out
//! forgets the account's drafts (the computer may be shared).

use crate::browser;

/// A draft longer than this is not kept (a paste of a whole document, say).
const MAX_DRAFT_BYTES: usize = 16 * 1024;

fn key(account: &str, with: &str) -> String {
    format!("jabberwock.draft.{account}.{with}")
}

pub fn get(account: &str, with: &str) -> String {
    browser::stored(&key(account, with)).unwrap_or_default()
}

/// Keeps `text` as the draft for `with`; blank text removes it.
pub fn set(account: &str, with: &str, text: &str) {
    let keep = !text.trim().is_empty() && text.len() <= MAX_DRAFT_BYTES;
    browser::store(&key(account, with), keep.then_some(text));
}

/// Forgets every draft of `account`.
pub fn forget_all(account: &str) {
    let prefix = format!("jabberwock.draft.{account}.");
    for k in browser::stored_keys().into_iter().filter(|k| k.starts_with(&prefix)) {
        browser::store(&k, None);
    }
}
