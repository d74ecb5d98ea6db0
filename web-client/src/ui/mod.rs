//! The components. They read [`AppState`] signals and call [`crate::net`] for actions;
//! no XMPP logic lives here.

mod actions;
mod chat;
mod login;
mod room;
mod roster;
mod settings;

use leptos::prelude::*;

use crate::browser;
use crate::net;
use crate::state::{AppState, Status};

#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new();
    provide_context(state);
    theme::apply(&theme::stored());

    // Unread counting and presence follow the tab's visibility; a returning network
    // cuts the reconnect wait short.
    let doc = browser::window().document().expect("document");
    let on_visibility =
        wasm_bindgen::closure::Closure::<dyn FnMut()>::new(|| net::visibility_changed(browser::document_visible()));
    doc.set_onvisibilitychange(Some(wasm_bindgen::JsCast::unchecked_ref(on_visibility.as_ref())));
    on_visibility.forget();
    let on_online = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(net::network_online);
    browser::window().set_ononline(Some(wasm_bindgen::JsCast::unchecked_ref(on_online.as_ref())));
    on_online.forget();
    let on_offline = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(net::network_offline);
    browser::window().set_onoffline(Some(wasm_bindgen::JsCast::unchecked_ref(on_offline.as_ref())));
    on_offline.forget();
    // Signs of the user, for automatic away.
    let on_activity = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(net::user_active);
    for event in ["pointerdown", "pointermove", "keydown", "wheel", "touchstart", "focus"] {
        let _ =
            browser::window().add_event_listener_with_callback(event, wasm_bindgen::JsCast::unchecked_ref(on_activity.as_ref()));
    }
    on_activity.forget();
    // A reload keeps the session: saved as the page goes, resumed by the next one.
    let on_pagehide = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(net::page_hidden);
    browser::window().set_onpagehide(Some(wasm_bindgen::JsCast::unchecked_ref(on_pagehide.as_ref())));
    on_pagehide.forget();
    // A page the browser kept in its back-forward cache left the session at `pagehide`:
    // shown again, it starts afresh and joins the session as a new tab would.
    let on_pageshow = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::PageTransitionEvent)>::new(|e: web_sys::PageTransitionEvent| {
        if e.persisted() {
            let _ = browser::window().location().reload();
        }
    });
    browser::window().set_onpageshow(Some(wasm_bindgen::JsCast::unchecked_ref(on_pageshow.as_ref())));
    on_pageshow.forget();
    net::start_page(state);
    // The title counts unread messages, and room messages that name us.
    Effect::new(move |_| {
        let unread = state.total_unread.get() + state.rooms.with(|rooms| rooms.iter().map(|r| r.mentions).sum::<u32>());
        browser::set_title(&if unread > 0 { format!("({unread}) Jabberwock") } else { "Jabberwock".to_owned() });
    });
    // Not inside another site's page: the widget is a frame of the embedding site.
    if !crate::config::get().widget {
        browser::register_service_worker();
    }

    let signed_in = move || state.me.get().is_some();
    view! {
        <div class="app" class:widget=crate::config::get().widget>
            <TopBar/>
            <Show when=signed_in fallback=|| view! { <login::LoginView/> }>
                <Shell/>
            </Show>
            <Toasts/>
        </div>
    }
}

#[component]
fn Shell() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <main class="shell" class:chat-open=move || state.active.get().is_some()>
            <roster::Sidebar/>
            <Show when=move || state.room.with(Option::is_some) fallback=|| view! { <chat::ChatPane/> }>
                <room::RoomPane/>
            </Show>
        </main>
    }
}

#[component]
fn TopBar() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <header class="topbar">
            <div class="brand">
                <Logo/>
                <span class="brand-name">"Jabberwock"</span>
            </div>
            <div class="topbar-right">
                <StatusPill/>
                <Show when=move || state.me.get().is_some()>
                    <settings::SettingsMenu/>
                </Show>
                <theme::ThemeToggle/>
                <Show when=move || state.me.get().is_some()>
                    <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| net::logout()>"Sign out"</button>
                </Show>
            </div>
        </header>
    }
}

/// The connection status, always visible, announced politely to screen readers.
#[component]
fn StatusPill() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <div
            class="status-pill"
            role="status"
            aria-live="polite"
            data-tone=move || state.status.get().tone()
            data-transport=move || state.transport.get()
            title=move || match state.transport.get() {
                "websocket" => "Connection: WebSocket",
                "bosh" => "Connection: BOSH (HTTP long polling)",
                _ => "Not connected",
            }
            data-testid="connection-status"
        >
            <span class="status-light" aria-hidden="true"></span>
            <span class="status-text">{move || state.status.get().label()}</span>
            <Show when=move || matches!(state.status.get(), Status::Reconnecting(_) | Status::Offline)>
                <button class="link-btn" type="button" data-testid="reconnect-now" on:click=move |_| net::reconnect_now()>
                    "Reconnect now"
                </button>
            </Show>
        </div>
    }
}

#[component]
pub fn Logo() -> impl IntoView {
    view! {
        <svg class="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
            <rect width="32" height="32" rx="9" fill="var(--accent)"/>
            <path d="M9 10.5h14a2.5 2.5 0 0 1 2.5 2.5v6.5a2.5 2.5 0 0 1-2.5 2.5h-7l-4.5 3.5v-3.5H9A2.5 2.5 0 0 1 6.5 19.5V13A2.5 2.5 0 0 1 9 10.5z" fill="#fff"/>
            <circle cx="12" cy="16.25" r="1.4" fill="var(--accent)"/>
            <circle cx="16" cy="16.25" r="1.4" fill="var(--accent)"/>
            <circle cx="20" cy="16.25" r="1.4" fill="var(--accent)"/>
        </svg>
    }
}

/// The contact's picture when we have one, else initials on a colour derived from the
/// address. Pictures are only ever `data:` URLs of raster images (see the core's avatar).
#[component]
pub fn Avatar(jid: String, name: String, #[prop(optional)] status: Option<Signal<&'static str>>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let hue = jid.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360;
    let initials: String = name
        .split(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-')
        .filter(|w| !w.is_empty())
        .take(2)
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .flat_map(char::to_uppercase)
        .collect();
    let initials = if initials.is_empty() { "?".to_owned() } else { initials };
    let bare = jabberwock_client_core::address::bare(&jid).to_owned();
    let picture = move || state.avatars.with(|a| a.get(&bare).cloned());
    view! {
        <span class="avatar" style:--avatar-hue=hue.to_string() aria-hidden="true">
            {move || match picture() {
                Some(url) => view! { <img class="avatar-img" src=url.to_string() alt="" decoding="async"/> }.into_any(),
                None => initials.clone().into_any(),
            }}
            {status.map(|s| view! { <span class="presence-dot" data-status=move || s.get()></span> })}
        </span>
    }
}

/// A labelled field for a new password (typed twice where one is chosen).
#[component]
pub fn NewPasswordField(label: &'static str, value: RwSignal<String>) -> impl IntoView {
    view! {
        <label class="field">
            <span class="field-label">{label}</span>
            <input
                type="password"
                autocomplete="new-password"
                required
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
            />
        </label>
    }
}

#[component]
fn Toasts() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <div class="toasts" role="region" aria-label="Notifications" aria-live="polite">
            <For each=move || state.toasts.get() key=|t| t.id let:toast>
                <div class="toast">
                    <span>{toast.text.clone()}</span>
                    <button
                        class="icon-btn"
                        type="button"
                        aria-label="Dismiss"
                        on:click=move |_| state.toasts.update(|t| t.retain(|x| x.id != toast.id))
                    >
                        "×"
                    </button>
                </div>
            </For>
        </div>
    }
}

pub mod theme {
    use leptos::prelude::*;

    use crate::browser;

    const KEY: &str = "jabberwock.theme";

    /// The user's choice, else the one the page was configured with, else the system's.
    pub fn stored() -> String {
        browser::local_storage()
            .and_then(|s| s.get_item(KEY).ok().flatten())
            .or_else(|| crate::config::get().theme.clone())
            .unwrap_or_else(|| "system".into())
    }

    pub fn apply(theme: &str) {
        if let Some(root) = browser::window().document().and_then(|d| d.document_element()) {
            match theme {
                "light" | "dark" => {
                    let _ = root.set_attribute("data-theme", theme);
                }
                _ => {
                    let _ = root.remove_attribute("data-theme");
                }
            }
        }
    }

    /// Cycles system → dark → light.
    #[component]
    pub fn ThemeToggle() -> impl IntoView {
        let theme = RwSignal::new(stored());
        let next = move || match theme.get().as_str() {
            "system" => "dark",
            "dark" => "light",
            _ => "system",
        };
        let label = move || match theme.get().as_str() {
            "dark" => "Theme: dark",
            "light" => "Theme: light",
            _ => "Theme: system",
        };
        view! {
            <button
                class="icon-btn theme-toggle"
                type="button"
                title=label
                aria-label=label
                data-theme-choice=move || theme.get()
                on:click=move |_| {
                    let n = next();
                    apply(n);
                    if let Some(s) = browser::local_storage() {
                        let _ = s.set_item(KEY, n);
                    }
                    theme.set(n.to_owned());
                }
            >
                <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                    {move || match theme.get().as_str() {
                        // A moon for dark, a sun for light, a half-filled circle for "as the system".
                        "dark" => view! { <path d="M12 3a9 9 0 1 0 9 9 7 7 0 0 1-9-9z" fill="currentColor"/> }.into_any(),
                        "light" => view! {
                            <g fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round">
                                <circle cx="12" cy="12" r="4" fill="currentColor"/>
                                <path d="M12 2v2M12 20v2M2 12h2M20 12h2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4"/>
                            </g>
                        }
                        .into_any(),
                        _ => view! {
                            <g>
                                <circle cx="12" cy="12" r="8.5" fill="none" stroke="currentColor" stroke-width="2"/>
                                <path d="M12 3.5a8.5 8.5 0 0 1 0 17z" fill="currentColor"/>
                            </g>
                        }
                        .into_any(),
                    }}
                </svg>
            </button>
        }
    }
}
