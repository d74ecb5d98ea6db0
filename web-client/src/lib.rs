//! The browser client. Its XMPP logic will live in plain Rust here, tested natively; the
//! Leptos views come with the web-client work.
