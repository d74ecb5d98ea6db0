//! The sign-in form.

use jabberwock_client_core::Account;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Logo, NewPasswordField};
use crate::state::AppState;
use crate::{browser, config, net};

const LAST_ADDRESS: &str = "jabberwock.last-address";

#[component]
pub fn LoginView() -> impl IntoView {
    let state = expect_context::<AppState>();
    let config = config::get();
    let remembered =
        state.prefill.get_untracked().or_else(|| config.jid.clone()).unwrap_or_else(|| {
            browser::local_storage().and_then(|s| s.get_item(LAST_ADDRESS).ok().flatten()).unwrap_or_default()
        });
    let address = RwSignal::new(remembered);
    let password = RwSignal::new(String::new());
    let server = RwSignal::new(String::new());
    // Creating an account (XEP-0077) instead of signing in: the password twice.
    let creating = RwSignal::new(false);
    let again = RwSignal::new(String::new());
    // A server URL in the page's address is used only once it proves to be this site's;
    // otherwise the user is told, and may still enter it under "Advanced".
    let ignored_link = RwSignal::new(None::<String>);
    if let Some(url) = config.endpoint.clone() {
        spawn_local(async move {
            if net::link_endpoint_usable(&url).await {
                server.set(url);
            } else {
                ignored_link.set(Some(url));
            }
        });
    }
    // Where the password will go, always in view: the server URL, or the domain whose
    // discovery finds it (with `?domain=`, an address without `@` is a user there).
    let destination = move || {
        let url = server.get();
        if !url.trim().is_empty() {
            return Some(url.trim().to_owned());
        }
        Account::parse(&config.complete_address(&address.get())).ok().map(|a| format!("found from {}", a.domain))
    };
    let placeholder = config.domain.as_ref().map_or_else(|| "you@example.org".to_owned(), |d| format!("you@{d}"));
    let busy = move || state.status.get().busy();
    // The first field still to fill has the focus: the address, or the password when the
    // address is known.
    let address_field: NodeRef<leptos::html::Input> = NodeRef::new();
    let password_field: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        let field = if address.get_untracked().is_empty() { address_field.get() } else { password_field.get() };
        if let Some(f) = field {
            let _ = f.focus();
        }
    });

    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let typed = config.complete_address(&address.get_untracked());
        if let Some(s) = browser::local_storage() {
            let _ = s.set_item(LAST_ADDRESS, &typed);
        }
        if creating.get_untracked() {
            net::create_account(state, typed, password.get_untracked(), again.get_untracked(), server.get_untracked());
        } else {
            net::login(state, typed, password.get_untracked(), server.get_untracked());
        }
    };

    view! {
        <main class="login-page">
            <form class="login-card" on:submit=submit aria-labelledby="login-title" novalidate>
                <div class="login-logo"><Logo/></div>
                <h1 id="login-title">{move || if creating.get() { "Create an account" } else { "Sign in to chat" }}</h1>
                <p class="muted">
                    {move || if creating.get() { "Choose your address and a password." } else { "Use your XMPP address and password." }}
                </p>

                <label class="field">
                    <span class="field-label">"Address"</span>
                    <input
                        node_ref=address_field
                        type="text"
                        name="address"
                        inputmode="email"
                        autocomplete="username"
                        autocapitalize="none"
                        spellcheck="false"
                        placeholder=placeholder
                        required
                        prop:value=move || address.get()
                        on:input=move |ev| address.set(event_target_value(&ev))
                    />
                </label>
                <label class="field">
                    <span class="field-label">"Password"</span>
                    <input
                        node_ref=password_field
                        type="password"
                        name="password"
                        autocomplete=move || if creating.get() { "new-password" } else { "current-password" }
                        required
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))
                    />
                </label>
                <Show when=move || creating.get()>
                    <NewPasswordField label="Password again" value=again/>
                </Show>

                {move || destination().map(|d| view! {
                    <p class="login-server field-hint" data-testid="login-server">"Server: " <strong>{d}</strong></p>
                })}
                {move || ignored_link.get().map(|url| view! {
                    <p class="login-server field-hint" role="status" data-testid="ignored-server">
                        "This link named the server " <strong>{url}</strong>
                        ", which is not this site's: it is not used. Enter it under Advanced only if you trust it."
                    </p>
                })}

                <details class="advanced">
                    <summary>"Advanced"</summary>
                    <div class="field">
                        <label class="field-label" for="server-url">"Server URL"</label>
                        <input
                            id="server-url"
                            type="url"
                            name="server"
                            placeholder="wss://chat.example.org/xmpp-websocket"
                            aria-describedby="server-url-hint"
                            prop:value=move || server.get()
                            on:input=move |ev| server.set(event_target_value(&ev))
                        />
                        <span id="server-url-hint" class="field-hint">
                            "Leave empty to discover it from your address. A WebSocket URL, or the server's web address."
                        </span>
                    </div>
                </details>

                <Show when=move || state.login_error.get().is_some()>
                    <div class="form-error" role="alert" data-testid="login-error">
                        {move || state.login_error.get().unwrap_or_default()}
                    </div>
                </Show>

                <button class="btn btn-primary btn-block" type="submit" disabled=busy>
                    <Show when=busy fallback=move || if creating.get() { "Create account" } else { "Sign in" }>
                        <span class="spinner" aria-hidden="true"></span>
                        {move || state.status.get().label()}
                    </Show>
                </button>
                <button
                    class="link-btn login-switch"
                    type="button"
                    on:click=move |_| {
                        creating.update(|c| *c = !*c);
                        state.login_error.set(None);
                    }
                >
                    {move || if creating.get() { "I already have an account" } else { "Create an account" }}
                </button>
            </form>
            <p class="login-foot muted">"Your password is sent only as a SCRAM proof and is never stored."</p>
        </main>
    }
}
