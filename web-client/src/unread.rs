//! Unread counts per conversation, kept in `localStorage` so that they survive a reload and
//! signing in again (the messages themselves come back from the archive, but whether they
//! were read does not). Signing out forgets them, as it forgets drafts.

use std::cell::RefCell;

use crate::browser;

thread_local! {
    /// What was written last, so that the many refreshes that change no count write nothing.
    static WRITTEN: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

/// At most this many conversations' counts are kept.
const MAX_KEPT: usize = 200;

fn key(account: &str) -> String {
    format!("jabberwock.unread.{account}")
}

/// The counts kept for `account`: (bare JID, count) pairs.
pub fn get(account: &str) -> Vec<(String, u32)> {
    let Some(text) = browser::local_storage().and_then(|s| s.get_item(&key(account)).ok().flatten()) else { return Vec::new() };
    text.lines()
        .filter_map(|line| {
            let (jid, n) = line.split_once('\t')?;
            Some((jid.to_owned(), n.parse().ok().filter(|n| *n > 0)?))
        })
        .take(MAX_KEPT)
        .collect()
}

/// Keeps `counts` (those above zero) as `account`'s, replacing what was kept.
pub fn set<'a>(account: &str, counts: impl Iterator<Item = (&'a str, u32)>) {
    let text: String = counts.filter(|(_, n)| *n > 0).take(MAX_KEPT).map(|(jid, n)| format!("{jid}\t{n}\n")).collect();
    if WRITTEN.with(|w| { let w = w.borrow(); w.0 == account && w.1 == text }) {
        return;
    }
    let Some(storage) = browser::local_storage() else { return };
    let _ = if text.is_empty() { storage.remove_item(&key(account)) } else { storage.set_item(&key(account), &text) };
    WRITTEN.with(|w| *w.borrow_mut() = (account.to_owned(), text));
}

pub fn forget(account: &str) {
    if let Some(storage) = browser::local_storage() {
        let _ = storage.remove_item(&key(account));
    }
    WRITTEN.with(|w| *w.borrow_mut() = Default::default());
}
