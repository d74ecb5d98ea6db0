//! How this page was asked to run: as the full client, or as a widget on another site
//! (see `widget.js`, which loads this same build in an iframe with its options in the
//! query string).
//!
//! `?widget` compact layout for an embedded frame
//! `&domain=example.org` the XMPP domain: an address without `@` is taken as a user there
//! `&endpoint=wss://…` the server URL, instead of discovery
//! `&jid=user@example.org` the address the sign-in form starts with
//! `&theme=light|dark|system` the colour scheme to start with
//! `&away-after=300` seconds of idle time before showing as away (0: never), by default

use std::sync::OnceLock;


#[derive(Clone, Debug, Default)]
pub struct Config {
    pub widget: bool,
    pub domain: Option<String>,
    pub endpoint: Option<String>,
    pub jid: Option<String>,
    pub theme: Option<String>,
    pub away_after_secs: Option<u32>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn get() -> &'static Config {
    CONFIG.get_or_init(|| {
        // The worker holding a shared session is never a widget's.
        let Some(window) = web_sys::window() else { return Config::default() };
        let search = window.location().search().unwrap_or_default();
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else { return Config::default() };
        let text = |k: &str| params.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Config {
            widget: params.has("widget"),
            domain: text("domain"),
            endpoint: text("endpoint"),
            jid: text("jid"),
            theme: text("theme").filter(|t| matches!(t.as_str(), "light" | "dark" | "system")),
            away_after_secs: text("away-after").and_then(|v| v.parse().ok()),
        }
    })
}

impl Config {
    /// The address typed in the sign-in form, completed with the configured domain.
    pub fn complete_address(&self, typed: &str) -> String {
        let typed = typed.trim();
        match &self.domain {
            Some(d) if !typed.is_empty() && !typed.contains('@') => format!("{typed}@{d}"),
            _ => typed.to_owned(),
        }
    }
}
