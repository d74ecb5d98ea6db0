//! The user's preferences, kept in `localStorage`: when to show as away, and whether to
//! show desktop notifications. A widget's configuration may set the default.

use crate::browser;

const AWAY_AFTER: &str = "jabberwock.away-after-secs";
const NOTIFICATIONS: &str = "jabberwock.notifications";

/// Idle time after which we show as away by default.
pub const DEFAULT_AWAY_AFTER_SECS: u32 = 300;

fn get(key: &str) -> Option<String> {
    browser::stored(key)
}

fn set(key: &str, value: &str) {
    browser::store(key, Some(value));
}

/// Seconds without activity before showing as away; `None`: never.
pub fn away_after_secs() -> Option<u32> {
    let secs =
        get(AWAY_AFTER).and_then(|v| v.parse().ok()).or(crate::config::get().away_after_secs).unwrap_or(DEFAULT_AWAY_AFTER_SECS);
    (secs > 0).then_some(secs)
}

pub fn set_away_after_secs(secs: Option<u32>) {
    set(AWAY_AFTER, &secs.unwrap_or(0).to_string());
}

/// Desktop notifications were asked for (the browser must allow them too).
pub fn notifications() -> bool {
    get(NOTIFICATIONS).is_some_and(|v| v == "1")
}

pub fn set_notifications(on: bool) {
    set(NOTIFICATIONS, if on { "1" } else { "0" });
}
