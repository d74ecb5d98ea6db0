//! Message actions and file sharing in the conversation: the per-message menu (react,
//! reply, edit, retract), the reactions under a message, the reply quote, attachments,
//! the composer's reply/edit banner, the attach button, the drop zone and the uploads'
//! progress. What they do is in the core ([`jabberwock_client_core::actions`]); every
//! string from the network is rendered as text.

use jabberwock_client_core::actions::{self, file_name, is_image, picker_choices, reaction_counts, reply_quote, Annotations, Reply};
use jabberwock_client_core::chat::{ChatMessage, Direction};
use jabberwock_client_core::upload::human_size;
use leptos::ev::{DragEvent, KeyboardEvent};
use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::net;
use crate::state::AppState;

/// What the composer is doing besides writing a new message; shared by the messages'
/// menus and the composer.
#[derive(Clone, Copy)]
pub struct Compose {
    pub text: RwSignal<String>,
    /// Replying to (message id, quote).
    pub reply: RwSignal<Option<(String, String)>>,
    /// Correcting our message with this id.
    pub editing: RwSignal<Option<String>>,
    /// The message whose menu is open.
    pub menu: RwSignal<Option<String>>,
    pub input: NodeRef<html::Textarea>,
}

impl Compose {
    pub fn new() -> Self {
        Compose {
            text: RwSignal::new(String::new()),
            reply: RwSignal::new(None),
            editing: RwSignal::new(None),
            menu: RwSignal::new(None),
            input: NodeRef::new(),
        }
    }

    fn set_text(&self, text: String) {
        if let Some(i) = self.input.get_untracked() {
            i.set_value(&text);
            let _ = i.focus();
        }
        self.text.set(text);
    }

    /// Starts correcting our message `id` (its text into the composer).
    pub fn edit(&self, id: String, text: String) {
        self.reply.set(None);
        self.editing.set(Some(id));
        self.set_text(text);
    }

    pub fn cancel(&self) {
        if self.editing.get_untracked().is_some() {
            self.set_text(String::new());
        }
        self.editing.set(None);
        self.reply.set(None);
    }

    /// Sends what the composer holds: a correction, a reply or a new message. Returns
    /// whether it went.
    pub fn send(&self, to: &str) -> bool {
        let body = self.text.get_untracked();
        let sent = match (self.editing.get_untracked(), self.reply.get_untracked()) {
            (Some(id), _) => net::correct_last(to, &id, &body),
            (None, Some((id, _))) => net::send_reply(to, &id, &body),
            (None, None) => net::send_message(to, &body),
        };
        if sent {
            self.editing.set(None);
            self.reply.set(None);
            self.set_text(String::new());
        }
        sent
    }

    /// Up in an empty composer: correct our last message.
    pub fn edit_last(&self, to: &str) -> bool {
        match net::correctable(to) {
            Some((id, text)) if self.text.get_untracked().is_empty() => {
                self.edit(id, text);
                true
            }
            _ => false,
        }
    }
}

/// The body of a message: retracted, a file, or its text (`text`, already linkified).
pub fn body(annotations: &Annotations, text: AnyView) -> AnyView {
    if annotations.retracted {
        return view! { <em class="retracted">"message retracted"</em> }.into_any();
    }
    match annotations.oob.clone() {
        Some(url) => view! { <Attachment url=url/> }.into_any(),
        None => text,
    }
}

/// An image shows as a lazy-loaded preview of bounded size (the URL only ever as `src`);
/// any other file as a link with its name.
#[component]
fn Attachment(url: String) -> impl IntoView {
    let name = file_name(&url);
    let href = url.clone();
    if is_image(&url) {
        view! {
            <a class="attachment image" href=href target="_blank" rel="noopener noreferrer nofollow">
                <img src=url loading="lazy" decoding="async" alt=format!("Image: {name}") data-testid="image-preview"/>
            </a>
        }
        .into_any()
    } else {
        view! {
            <a class="attachment file" href=href target="_blank" rel="noopener noreferrer nofollow" download=name.clone()>
                <span aria-hidden="true">"📎 "</span>
                {name.clone()}
            </a>
        }
        .into_any()
    }
}

/// The quote of the message a reply answers (found by `quote`), above its text.
pub fn quote_view(annotations: &Annotations, quote: impl FnOnce(&Reply) -> Option<String>) -> Option<AnyView> {
    let quote = quote(annotations.reply.as_ref()?)?;
    Some(view! { <blockquote class="reply-quote" data-testid="reply-quote">{quote}</blockquote> }.into_any())
}

/// The quote above a one-to-one reply: from the open conversation.
pub fn chat_quote(reply: &Reply) -> Option<String> {
    expect_context::<AppState>().messages.with_untracked(|all| reply_quote(all, reply))
}

/// The reactions under the message `id`: one button per emoji with its count (who
/// reacted on hover and for screen readers; `name` says who a reaction's key is, `me`
/// is ours); pressing one adds or removes ours.
#[component]
pub fn Reactions(id: String, annotations: Annotations, me: String, #[prop(into)] name: Callback<String, String>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let counts = reaction_counts(&annotations, &me);
    if counts.is_empty() {
        return None;
    }
    let buttons = counts
        .into_iter()
        .map(|c| {
            let who = c.by.iter().map(|w| if *w == me { "you".to_owned() } else { name.run(w.clone()) }).collect::<Vec<_>>().join(", ");
            let (id, emoji) = (id.clone(), c.emoji.clone());
            let label = format!("{} {}: {who}", c.emoji, c.by.len());
            view! {
                <button
                    class="reaction"
                    type="button"
                    class:ours=c.ours
                    aria-pressed=if c.ours { "true" } else { "false" }
                    aria-label=label.clone()
                    title=label
                    on:click=move |_| {
                        if let Some(conv) = state.active.get_untracked() {
                            net::toggle_reaction(&conv, &id, &emoji);
                        }
                    }
                >
                    {c.emoji.clone()}
                    " "
                    <span class="count">{c.by.len()}</span>
                </button>
            }
        })
        .collect_view();
    Some(view! { <div class="reactions" role="group" aria-label="Reactions" data-testid="reactions">{buttons}</div> })
}

/// What a message's menu acts on.
#[derive(Clone, Debug)]
pub struct MenuTarget {
    /// The key the actions name it by.
    pub id: String,
    pub body: String,
    pub ours: bool,
    /// The emoji offered.
    pub choices: Vec<String>,
    /// We may remove it for everyone, as a room's moderator (XEP-0425).
    pub removable: bool,
}

impl MenuTarget {
    /// A one-to-one message; `None` when nothing can be done to it.
    pub fn chat(msg: &ChatMessage) -> Option<MenuTarget> {
        (!msg.annotations.retracted && !msg.id.is_empty()).then(|| MenuTarget {
            id: msg.id.clone(),
            body: msg.body.clone(),
            ours: msg.direction == Direction::Out,
            choices: picker_choices(msg),
            removable: false,
        })
    }
}

/// The "⋯" button of a message and its menu: a row of emoji, then reply, edit (our last
/// message), retract (ours) and remove (a moderator's). Escape closes it and gives the
/// focus back to the button.
#[component]
pub fn MessageMenu(target: Option<MenuTarget>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let compose = expect_context::<Compose>();
    let msg = target?;
    let id = msg.id.clone();
    let open = {
        let id = id.clone();
        Memo::new(move |_| compose.menu.get().as_deref() == Some(id.as_str()))
    };
    let toggle: NodeRef<html::Button> = NodeRef::new();
    let menu: NodeRef<html::Div> = NodeRef::new();
    let close = move || {
        compose.menu.set(None);
        if let Some(b) = toggle.get_untracked() {
            let _ = b.focus();
        }
    };
    // The first item takes the focus when the menu opens.
    Effect::new(move |_| {
        if open.get() {
            if let Some(first) = menu.get().and_then(|m| m.query_selector("button").ok().flatten()) {
                let _ = first.unchecked_into::<web_sys::HtmlElement>().focus();
            }
        }
    });
    let conv = move || state.active.get_untracked().unwrap_or_default();
    let (ours, removable) = (msg.ours, msg.removable);
    let choices = msg.choices;
    let quote = actions::quote(&msg.body);
    let body = msg.body.clone();
    let toggle_id = id.clone();
    // Built each time the menu opens.
    let items = move || {
        let emoji = choices
            .iter()
            .map(|e| {
                let (id, e) = (id.clone(), e.clone());
                view! {
                    <button
                        type="button"
                        role="menuitem"
                        class="emoji"
                        aria-label=format!("React with {e}")
                        on:click={
                            let e = e.clone();
                            move |_| {
                                net::toggle_reaction(&conv(), &id, &e);
                                close();
                            }
                        }
                    >
                        {e.clone()}
                    </button>
                }
            })
            .collect_view();
        let (reply_id, quote) = (id.clone(), quote.clone());
        let on_reply = move |_| {
            compose.editing.set(None);
            compose.reply.set(Some((reply_id.clone(), quote.clone())));
            compose.menu.set(None);
            if let Some(i) = compose.input.get_untracked() {
                let _ = i.focus();
            }
        };
        // Only our last message may be corrected (XEP-0308).
        let can_edit = ours && net::correctable(&conv()).is_some_and(|(last, _)| last == id);
        let (edit_id, body) = (id.clone(), body.clone());
        let edit = can_edit.then(|| {
            view! {
                <button
                    type="button"
                    role="menuitem"
                    on:click=move |_| {
                        compose.menu.set(None);
                        compose.edit(edit_id.clone(), body.clone());
                    }
                >
                    "Edit"
                </button>
            }
        });
        // Retracting ours, or removing another's as a moderator: for everyone, at once.
        let for_everyone = |label: &'static str, title: &'static str, act: fn(&str, &str) -> bool| {
            let id = id.clone();
            view! {
                <button
                    type="button"
                    role="menuitem"
                    class="danger"
                    title=title
                    on:click=move |_| {
                        act(&conv(), &id);
                        close();
                    }
                >
                    {label}
                </button>
            }
        };
        let retract = ours.then(|| for_everyone("Retract", "Retract this message", net::retract));
        let remove = (removable && !ours).then(|| for_everyone("Remove", "Remove this message for everyone in the room", net::moderate));
        view! {
            <div class="emoji-row" role="group" aria-label="React">{emoji}</div>
            <button type="button" role="menuitem" on:click=on_reply>"Reply"</button>
            {edit}
            {retract}
            {remove}
        }
    };
    Some(view! {
        <div class="msg-actions">
            <button
                class="icon-btn menu-toggle"
                type="button"
                node_ref=toggle
                aria-label="Message actions"
                aria-haspopup="menu"
                aria-expanded=move || if open.get() { "true" } else { "false" }
                data-testid="message-menu"
                on:click=move |_| compose.menu.set(if open.get_untracked() { None } else { Some(toggle_id.clone()) })
            >
                "⋯"
            </button>
            <Show when=move || open.get()>
                <div
                    class="menu"
                    role="menu"
                    aria-label="Message actions"
                    node_ref=menu
                    on:keydown=move |ev: KeyboardEvent| {
                        if ev.key() == "Escape" {
                            ev.prevent_default();
                            close();
                        }
                    }
                >
                    {items.clone()}
                </div>
            </Show>
        </div>
    })
}

/// Above the composer: what the next message answers, or that it corrects one; with a
/// button (and Escape) to cancel.
#[component]
pub fn ComposerBanner() -> impl IntoView {
    let compose = expect_context::<Compose>();
    let what = move || match (compose.editing.get(), compose.reply.get()) {
        (Some(_), _) => Some(("Editing your message".to_owned(), String::new())),
        (None, Some((_, quote))) => Some(("Replying to".to_owned(), quote)),
        (None, None) => None,
    };
    view! {
        <Show when=move || what().is_some()>
            <div class="composer-banner" data-testid="composer-banner" role="status">
                <span class="label">{move || what().map(|w| w.0)}</span>
                <blockquote class="reply-quote">{move || what().map(|w| w.1)}</blockquote>
                <button class="icon-btn" type="button" aria-label="Cancel" on:click=move |_| compose.cancel()>
                    "✕"
                </button>
            </div>
        </Show>
    }
}

/// The files of the open conversation on their way, with progress, or why they failed.
#[component]
pub fn Uploads() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <div class="uploads" aria-live="polite">
            <For each=move || state.uploads.get() key=|u| (u.request, u.sent, u.error.clone()) let:u>
                <div class="upload" class:failed=u.error.is_some() data-testid="upload">
                    <span class="name">{u.name.clone()} " (" {human_size(u.size)} ")"</span>
                    {match u.error.clone() {
                        Some(e) => view! {
                            <span class="error" role="alert">{e}</span>
                            <button class="icon-btn" type="button" aria-label="Dismiss" on:click=move |_| net::dismiss_upload(u.request)>
                                "✕"
                            </button>
                        }
                        .into_any(),
                        None => view! {
                            <progress max=u.size.to_string() value=u.sent.to_string() aria-label=format!("Uploading {}", u.name)></progress>
                        }
                        .into_any(),
                    }}
                </div>
            </For>
        </div>
    }
}

/// Uploads each of `files` to the open conversation.
pub fn upload_files(state: AppState, files: Option<web_sys::FileList>) {
    let (Some(files), Some(conv)) = (files, state.active.get_untracked()) else { return };
    for i in 0..files.length() {
        if let Some(f) = files.get(i) {
            net::upload(&conv, f);
        }
    }
}

/// The paper-clip button and the file chooser it opens.
#[component]
pub fn AttachButton() -> impl IntoView {
    let state = expect_context::<AppState>();
    let picker: NodeRef<html::Input> = NodeRef::new();
    view! {
        <input
            type="file"
            class="sr-only"
            tabindex="-1"
            aria-hidden="true"
            multiple
            node_ref=picker
            data-testid="file-input"
            on:change=move |_| {
                if let Some(p) = picker.get_untracked() {
                    upload_files(state, p.files());
                    p.set_value("");
                }
            }
        />
        <button
            class="icon-btn attach"
            type="button"
            aria-label="Attach a file"
            title="Attach a file"
            on:click=move |_| {
                if let Some(p) = picker.get_untracked() {
                    p.click();
                }
            }
        >
            <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                <path
                    d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5"
                    fill="none"
                    stroke="currentColor"
                    stroke-width="1.8"
                    stroke-linecap="round"
                />
            </svg>
        </button>
    }
}

/// Drag and drop onto the conversation: shows the drop zone while a file is over it.
pub fn drop_handlers(state: AppState, over: RwSignal<bool>) -> (impl Fn(DragEvent) + Copy, impl Fn(DragEvent) + Copy, impl Fn(DragEvent) + Copy) {
    let has_files = |ev: &DragEvent| ev.data_transfer().is_some_and(|d| d.types().includes(&"Files".into(), 0));
    let on_over = move |ev: DragEvent| {
        if has_files(&ev) {
            ev.prevent_default();
            over.set(true);
        }
    };
    let on_leave = move |_: DragEvent| over.set(false);
    let on_drop = move |ev: DragEvent| {
        over.set(false);
        if has_files(&ev) {
            ev.prevent_default();
            upload_files(state, ev.data_transfer().and_then(|d| d.files()));
        }
    };
    (on_over, on_leave, on_drop)
}
