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
    browser::local_storage().and_then(|s| s.get_item(&key(account, with)).ok().flatten()).unwrap_or_default()
}

/// Keeps `text` as the draft for `with`; blank text removes it.
pub fn set(account: &str, with: &str, text: &str) {
    let Some(storage) = browser::local_storage() else { return };
    if text.trim().is_empty() || text.len() > MAX_DRAFT_BYTES {
        let _ = storage.remove_item(&key(account, with));
    } else {
        let _ = storage.set_item(&key(account, with), text);
    }
}

/// Forgets every draft of `account`.
pub fn forget_all(account: &str) {
    let Some(storage) = browser::local_storage() else { return };
    let prefix = format!("jabberwock.draft.{account}.");
    let n = storage.length().unwrap_or(0);
    let keys: Vec<String> = (0..n).filter_map(|i| storage.key(i).ok().flatten()).filter(|k| k.starts_with(&prefix)).collect();
    for k in keys {
        let _ = storage.remove_item(&k);
    }
}
