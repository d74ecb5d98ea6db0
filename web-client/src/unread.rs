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
    let Some(text) = browser::stored(&key(account)) else { return Vec::new() };
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
    browser::store(&key(account), Some(text.as_str()).filter(|t| !t.is_empty()));
    WRITTEN.with(|w| *w.borrow_mut() = (account.to_owned(), text));
}

pub fn forget(account: &str) {
    browser::store(&key(account), None);
    WRITTEN.with(|w| *w.borrow_mut() = Default::default());
}
