//! The settings menu in the top bar: automatic away and desktop notifications.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::NewPasswordField;
use crate::state::AppState;
use crate::{browser, net, settings};

/// Choices for "away when idle", in seconds (0: never).
const AWAY_CHOICES: [(u32, &str); 5] =
    [(60, "After 1 minute"), (300, "After 5 minutes"), (900, "After 15 minutes"), (1800, "After 30 minutes"), (0, "Never")];

#[component]
pub fn SettingsMenu() -> impl IntoView {
    let state = expect_context::<AppState>();
    let open = RwSignal::new(false);
    let away = RwSignal::new(settings::away_after_secs().unwrap_or(0));
    let notifications = RwSignal::new(settings::notifications() && browser::notifications_allowed());
    let toggle_notifications = move |on: bool| {
        if !on {
            settings::set_notifications(false);
            notifications.set(false);
            return;
        }
        spawn_local(async move {
            let allowed = browser::ask_notifications().await;
            settings::set_notifications(allowed);
            notifications.set(allowed);
            if !allowed {
                state.toast("Notifications are blocked for this site in the browser's settings");
            }
        });
    };
    // Closes on Escape anywhere and on a click outside the menu, like any popover.
    let root: NodeRef<leptos::html::Div> = NodeRef::new();
    let escape = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" && open.get_untracked() {
            open.set(false);
        }
    });
    let outside = window_event_listener(leptos::ev::pointerdown, move |ev| {
        let inside = root.get_untracked().zip(ev.target()).is_some_and(|(menu, target)| {
            wasm_bindgen::JsCast::dyn_ref::<web_sys::Node>(&target).is_some_and(|t| menu.contains(Some(t)))
        });
        if !inside && open.get_untracked() {
            open.set(false);
        }
    });
    on_cleanup(move || {
        escape.remove();
        outside.remove();
    });
    view! {
        <div class="settings" node_ref=root>
            <button
                class="icon-btn"
                type="button"
                aria-label="Settings"
                title="Settings"
                aria-expanded=move || open.get().to_string()
                aria-controls="settings-panel"
                on:click=move |_| open.update(|o| *o = !*o)
            >
                <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                    <path
                        fill="currentColor"
                        d="M19.4 13a7.5 7.5 0 0 0 0-2l2.1-1.6-2-3.5-2.5 1a7.4 7.4 0 0 0-1.7-1L15 3.2h-4l-.4 2.7a7.4 7.4 0 0 0-1.7 1l-2.5-1-2 3.5L6.6 11a7.5 7.5 0 0 0 0 2l-2.1 1.6 2 3.5 2.5-1c.5.4 1.1.7 1.7 1l.4 2.7h4l.4-2.7c.6-.3 1.2-.6 1.7-1l2.5 1 2-3.5zM13 15.5a3.5 3.5 0 1 1 0-7 3.5 3.5 0 0 1 0 7z"
                        transform="translate(-1 0)"
                    />
                </svg>
            </button>
            <Show when=move || open.get()>
                <div
                    id="settings-panel"
                    class="settings-panel"
                    role="dialog"
                    aria-label="Settings"
                >
                    <label class="field">
                        <span class="field-label">"Show me as away when idle"</span>
                        <select
                            data-testid="away-after"
                            prop:value=move || away.get().to_string()
                            on:change=move |ev| {
                                let secs: u32 = event_target_value(&ev).parse().unwrap_or(0);
                                settings::set_away_after_secs((secs > 0).then_some(secs));
                                away.set(secs);
                                net::idle_setting_changed();
                            }
                        >
                            {AWAY_CHOICES
                                .into_iter()
                                .map(|(secs, label)| view! { <option value=secs.to_string()>{label}</option> })
                                .collect_view()}
                        </select>
                    </label>
                    <Show when=move || state.blocked.with(Option::is_some)>
                        <div class="field">
                            <span class="field-label" id="blocked-title">"Blocked"</span>
                            <Show
                                when=move || state.blocked.with(|b| b.as_ref().is_some_and(|l| !l.is_empty()))
                                fallback=|| view! { <p class="field-hint">"Nobody is blocked."</p> }
                            >
                                <ul class="block-list" aria-labelledby="blocked-title" data-testid="block-list">
                                    <For each=move || state.blocked.get().unwrap_or_default() key=|j| j.clone() let:jid>
                                        <li>
                                            <span title=jid.clone()>{jid.clone()}</span>
                                            <button
                                                class="btn btn-ghost btn-sm"
                                                type="button"
                                                aria-label=format!("Unblock {jid}")
                                                on:click=move |_| net::block(&jid, false)
                                            >
                                                "Unblock"
                                            </button>
                                        </li>
                                    </For>
                                </ul>
                            </Show>
                        </div>
                    </Show>
                    <ChangePassword/>
                    // Browsers refuse notifications to a frame of another site (the widget).
                    <Show when=|| !crate::config::get().widget>
                    <label class="check">
                        <input
                            type="checkbox"
                            prop:checked=move || notifications.get()
                            on:change=move |ev| toggle_notifications(event_target_checked(&ev))
                        />
                        <span>
                            "Desktop notifications"
                            <span class="field-hint">"For new messages while this tab is in the background"</span>
                        </span>
                    </label>
                    </Show>
                </div>
            </Show>
        </div>
    }
}

/// XEP-0077: a new password, typed twice.
#[component]
fn ChangePassword() -> impl IntoView {
    let open = RwSignal::new(false);
    let password = RwSignal::new(String::new());
    let again = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match net::change_password(&password.get_untracked(), &again.get_untracked()) {
            Ok(()) => {
                password.set(String::new());
                again.set(String::new());
                error.set(None);
                open.set(false);
            }
            Err(e) => error.set(Some(e)),
        }
    };
    view! {
        <div class="field">
            <button
                class="btn btn-ghost btn-sm"
                type="button"
                aria-expanded=move || open.get().to_string()
                aria-controls="password-form"
                on:click=move |_| open.update(|o| *o = !*o)
            >
                "Change password"
            </button>
            <Show when=move || open.get()>
                <form id="password-form" class="password-form" aria-label="Change password" on:submit=submit>
                    <NewPasswordField label="New password" value=password/>
                    <NewPasswordField label="New password again" value=again/>
                    <Show when=move || error.get().is_some()>
                        <div class="form-error" role="alert">{move || error.get().unwrap_or_default()}</div>
                    </Show>
                    <button class="btn btn-primary btn-sm" type="submit">"Change"</button>
                </form>
            </Show>
        </div>
    }
}
