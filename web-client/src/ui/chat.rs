//! The conversation pane: header, message log with day separators and grouping, composer.

use jabberwock_client_core::actions::version;
use jabberwock_client_core::chat::{linkify, ChatMessage, Delivery, Direction, Segment};
use jabberwock_client_core::muc::Room;
use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::html;
use leptos::prelude::*;

use super::actions::{self as msg_actions, Compose};
use super::Avatar;
use crate::browser;
use crate::drafts;
use crate::net;
use crate::state::AppState;

/// Consecutive messages from the same side within this window share one header.
const GROUP_WINDOW_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, PartialEq)]
enum Item {
    Day(String),
    /// Above the oldest message that was unread when the conversation opened.
    NewMessages,
    Message { msg: ChatMessage, first: bool },
}

impl Item {
    /// Identifies the item across renders; changes when what it shows changes.
    fn key(&self) -> String {
        match self {
            Item::Day(d) => format!("day:{d}"),
            Item::NewMessages => "new-messages".to_owned(),
            Item::Message { msg, first } => {
                format!("{:?}:{}:{}:{first}:{:x}", msg.direction, msg.id, msg.timestamp_ms, version(msg))
            }
        }
    }
}

/// At most this many items are in the page: a window over the conversation that moves by
/// [`WINDOW_STEP`] when the reader scrolls near one of its ends. The browser's scroll
/// anchoring (`overflow-anchor`) keeps what is on screen in place as items come and go
/// outside the view.
const WINDOW: usize = 150;
const WINDOW_STEP: usize = 50;
/// How close to an end of the window (in pixels) the window moves.
const WINDOW_EDGE_PX: i32 = 600;

/// The open conversation and its newest message (id and time).
type Newest = (Option<String>, Option<(String, i64)>);

fn items(messages: &[ChatMessage], first_unread: Option<&str>) -> Vec<Item> {
    let mut out = Vec::with_capacity(messages.len() + 4);
    let mut last_day = String::new();
    let mut prev: Option<&ChatMessage> = None;
    for m in messages {
        let day = browser::day_key(m.timestamp_ms);
        let new_day = day != last_day;
        if new_day {
            out.push(Item::Day(browser::day_label(m.timestamp_ms)));
            last_day = day;
        }
        let unread_from_here = m.direction == Direction::In && first_unread == Some(m.id.as_str());
        if unread_from_here {
            out.push(Item::NewMessages);
        }
        let first = new_day
            || unread_from_here
            || prev.is_none_or(|p| p.direction != m.direction || m.timestamp_ms - p.timestamp_ms > GROUP_WINDOW_MS);
        out.push(Item::Message { msg: m.clone(), first });
        prev = Some(m);
    }
    out
}

#[component]
pub fn ChatPane() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <section class="chat" aria-label="Conversation">
            <Show
                when=move || state.active.get().is_some()
                fallback=|| {
                    view! {
                        <div class="chat-empty">
                            <svg class="chat-empty-art" viewBox="0 0 120 96" aria-hidden="true" focusable="false">
                                <rect x="8" y="10" width="76" height="50" rx="14" fill="var(--accent-soft)"/>
                                <path d="M26 60l-8 16 22-16z" fill="var(--accent-soft)"/>
                                <rect x="40" y="34" width="72" height="46" rx="14" fill="var(--accent)"/>
                                <path d="M96 80l8 12-22-12z" fill="var(--accent)"/>
                                <circle cx="62" cy="57" r="4" fill="#fff"/>
                                <circle cx="76" cy="57" r="4" fill="#fff"/>
                                <circle cx="90" cy="57" r="4" fill="#fff"/>
                            </svg>
                            <h2>"No conversation selected"</h2>
                            <p class="muted">"Choose a contact to start chatting."</p>
                        </div>
                    }
                }
            >
                <Conversation/>
            </Show>
        </section>
    }
}

#[component]
fn Conversation() -> impl IntoView {
    let state = expect_context::<AppState>();
    let active = move || state.active.get().unwrap_or_default();
    let contact = Memo::new(move |_| {
        let a = active();
        state.rows.with(|rows| rows.iter().find(|r| r.contact.jid == a).map(|r| r.contact.clone()))
    });
    let name = move || contact.get().map(|c| c.name).unwrap_or_else(active);
    let status_line = move || {
        contact.get().map_or_else(String::new, |c| match (&c.presence, c.pending_out) {
            (Some(p), _) => p.status.clone().map_or_else(|| p.show.label().to_owned(), |s| format!("{} · {s}", p.show.label())),
            (None, true) => "Awaiting approval".into(),
            (None, false) => "Offline".into(),
        })
    };
    let status_key = Signal::derive(move || contact.get().map_or("offline", |c| c.status_key()));
    let typing = Memo::new(move |_| {
        let a = active();
        state.rows.with(|rows| rows.iter().any(|r| r.contact.jid == a && r.typing))
    });

    let compose = Compose::new();
    provide_context(compose);
    let drop_over = RwSignal::new(false);
    let (on_drag_over, on_drag_leave, on_drop) = msg_actions::drop_handlers(state, drop_over);
    let log: NodeRef<html::Div> = NodeRef::new();
    let all = Memo::new(move |_| {
        let first_unread = state.first_unread.get();
        state.messages.with(|m| items(m, first_unread.as_deref()))
    });
    // The first item of the window, by key; `None`: the newest items.
    let anchor = RwSignal::new(None::<String>);
    let window = Memo::new(move |_| {
        let anchor = anchor.get();
        all.with(|all| {
            let last_start = all.len().saturating_sub(WINDOW);
            let start = anchor.and_then(|k| all.iter().position(|i| i.key() == k)).unwrap_or(last_start).min(last_start);
            (start, all.len(), all[start..(start + WINDOW).min(all.len())].to_vec())
        })
    });
    let at_start = move || window.with(|w| w.0 == 0);
    // Keep the newest message in view when one arrives (not when older ones load), and when
    // another conversation opens.
    Effect::new(move |prev: Option<Newest>| {
        let current = (state.active.get(), state.messages.with(|m| m.last().map(|m| (m.id.clone(), m.timestamp_ms))));
        if prev.as_ref() != Some(&current) {
            anchor.set(None);
            // A conversation just opened with unread messages starts at the first of them.
            let opened = prev.as_ref().is_none_or(|p| p.0 != current.0);
            browser::next_frame(move || {
                // The conversation may be gone by then (another view opened).
                let Some(el) = log.try_get_untracked().flatten() else { return };
                let line = if opened { el.query_selector(".new-messages").ok().flatten() } else { None };
                match line {
                    Some(line) => line.scroll_into_view(),
                    None => el.set_scroll_top(el.scroll_height()),
                }
            });
        }
        current
    });
    let on_scroll = move |_| {
        let Some(el) = log.get_untracked() else { return };
        let (start, len, ref shown) = *window.read_untracked();
        let key_at = |i: usize| all.with_untracked(|a| a.get(i).map(Item::key));
        if el.scroll_top() < WINDOW_EDGE_PX {
            if start > 0 {
                anchor.set(key_at(start.saturating_sub(WINDOW_STEP)));
            } else {
                // The oldest loaded: the next page from the archive.
                let (loading, more) = state.history.get_untracked();
                if more && !loading {
                    net::load_older();
                }
            }
        } else if el.scroll_height() - el.scroll_top() - el.client_height() < WINDOW_EDGE_PX && start + shown.len() < len {
            let next = start + WINDOW_STEP;
            anchor.set(if next + WINDOW >= len { None } else { key_at(next) });
        }
    };

    let confirm_remove = RwSignal::new(false);
    // Someone who wrote without being a contact gets "Add" and "Block", not "Remove".
    let in_roster = move || contact.get().is_some_and(|c| c.in_roster);
    let can_block = move || state.blocked.with(Option::is_some);
    let blocked = move || state.blocked.with(|b| b.as_ref().is_some_and(|list| list.iter().any(|j| *j == active())));
    // Editing the contact: its name and its groups (comma-separated).
    let editing = RwSignal::new(None::<(String, String)>);
    let groups_text = move || contact.get().map(|c| c.groups.join(", ")).unwrap_or_default();

    view! {
        <header class="chat-head">
            <button
                class="icon-btn back"
                type="button"
                aria-label=move || match state.total_unread.get() {
                    0 => "Back to contacts".to_owned(),
                    n => format!("Back to contacts, {n} unread"),
                }
                on:click=move |_| net::open_chat(None)
            >
                "‹"
                // On a phone the contact list is hidden: this says someone else wrote.
                <Show when=move || { state.total_unread.get() > 0 }>
                    <span class="back-unread" aria-hidden="true">{move || state.total_unread.get()}</span>
                </Show>
            </button>
            {move || view! { <Avatar jid=active() name=name() status=status_key/> }}
            <div class="chat-title">
                <Show
                    when=move || editing.get().is_some()
                    fallback=move || {
                        view! {
                            <h2 data-testid="chat-title">
                                {name}
                                <button
                                    class="icon-btn rename"
                                    type="button"
                                    aria-label="Edit name and groups"
                                    title="Edit name and groups"
                                    on:click=move |_| editing.set(Some((name(), groups_text())))
                                >
                                    "✎"
                                </button>
                            </h2>
                        }
                    }
                >
                    <form
                        class="rename-form"
                        aria-label="Edit contact"
                        on:submit=move |ev: SubmitEvent| {
                            ev.prevent_default();
                            if let Some((n, g)) = editing.get_untracked() {
                                let groups: Vec<String> = g.split(',').map(str::to_owned).collect();
                                net::update_contact(&active(), &n, &groups);
                            }
                            editing.set(None);
                        }
                        on:keydown=move |ev: KeyboardEvent| {
                            if ev.key() == "Escape" {
                                editing.set(None);
                            }
                        }
                    >
                        <input
                            type="text"
                            aria-label="Contact name"
                            placeholder="Name"
                            prop:value=move || editing.get().map(|e| e.0).unwrap_or_default()
                            on:input=move |ev| editing.update(|e| if let Some(e) = e { e.0 = event_target_value(&ev) })
                        />
                        <input
                            type="text"
                            aria-label="Groups, separated by commas"
                            placeholder="Groups, e.g. Work, Family"
                            prop:value=move || editing.get().map(|e| e.1).unwrap_or_default()
                            on:input=move |ev| editing.update(|e| if let Some(e) = e { e.1 = event_target_value(&ev) })
                        />
                        <button class="btn btn-primary btn-sm" type="submit">"Save"</button>
                        <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| editing.set(None)>"Cancel"</button>
                    </form>
                </Show>
                <div class="chat-status muted">
                    <span class="sr-only">"Status: "</span>
                    <span data-testid="chat-status">{move || if blocked() { "Blocked".to_owned() } else { status_line() }}</span>
                    " · "
                    {active}
                </div>
            </div>
            <div class="chat-actions">
                <Show when=move || blocked()>
                    <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| net::block(&active(), false)>"Unblock"</button>
                </Show>
                <Show when=move || !blocked() && !in_roster()>
                    <button
                        class="btn btn-secondary btn-sm"
                        type="button"
                        title="Add to your contacts and ask to see their presence"
                        on:click=move |_| {
                            if let Err(e) = net::add_contact(&active(), "") {
                                state.toast(e);
                            }
                        }
                    >
                        "Add"
                    </button>
                </Show>
                <Show when=move || !blocked() && can_block() && !confirm_remove.get()>
                    <button class="btn btn-ghost btn-sm" type="button" title="Block: no more messages, presence or requests from them" on:click=move |_| net::block(&active(), true)>
                        "Block"
                    </button>
                </Show>
                <Show when=move || in_roster()>
                    <Show
                        when=move || confirm_remove.get()
                        fallback=move || {
                            view! {
                                <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| confirm_remove.set(true)>
                                    "Remove"
                                </button>
                            }
                        }
                    >
                        <span class="confirm">
                            "Remove this contact?"
                            <button
                                class="btn btn-danger btn-sm"
                                type="button"
                                on:click=move |_| {
                                    confirm_remove.set(false);
                                    net::remove_contact(&active());
                                }
                            >
                                "Remove"
                            </button>
                            <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| confirm_remove.set(false)>
                                "Keep"
                            </button>
                        </span>
                    </Show>
                </Show>
            </div>
        </header>
        <div
            class="log"
            node_ref=log
            role="log"
            aria-live="polite"
            aria-relevant="additions"
            aria-label=move || format!("Messages with {}", name())
            tabindex="0"
            data-testid="message-log"
            class:drop-over=move || drop_over.get()
            on:scroll=on_scroll
            on:dragover=on_drag_over
            on:dragleave=on_drag_leave
            on:drop=on_drop
        >
            <Show when=move || at_start() && (state.history.get().1 || state.history.get().0)>
                <div class="load-older">
                    <button
                        class="btn btn-ghost btn-sm"
                        type="button"
                        disabled=move || state.history.get().0
                        on:click=move |_| net::load_older()
                    >
                        {move || if state.history.get().0 { "Loading history…" } else { "Load earlier messages" }}
                    </button>
                </div>
            </Show>
            <Show when=move || all.with(Vec::is_empty) && !state.history.get().0>
                <p class="log-empty muted">{move || format!("This is the beginning of your conversation with {}.", name())}</p>
            </Show>
            <For each=move || window.with(|w| w.2.clone()) key=Item::key let:item>
                {match item {
                    Item::Day(label) => view! { <div class="day-sep" role="separator"><span>{label}</span></div> }.into_any(),
                    Item::NewMessages => {
                        view! { <div class="day-sep new-messages" role="separator" data-testid="new-messages"><span>"New messages"</span></div> }
                            .into_any()
                    }
                    Item::Message { msg, first } => view! { <MessageBubble msg=msg first=first/> }.into_any(),
                }}
            </For>
        </div>
        <div class="typing" aria-live="polite" data-testid="typing">
            <Show when=move || typing.get()>
                <span class="typing-dots" aria-hidden="true"><i></i><i></i><i></i></span>
                {move || format!("{} is typing…", name())}
            </Show>
        </div>
        <msg_actions::Uploads/>
        <msg_actions::ComposerBanner/>
        <Composer/>
    }
}

#[component]
fn MessageBubble(msg: ChatMessage, first: bool) -> impl IntoView {
    let state = expect_context::<AppState>();
    let me = move || state.me.get_untracked().unwrap_or_default();
    let out = msg.direction == Direction::Out;
    let time = browser::format_time(msg.timestamp_ms);
    let full = browser::format_full(msg.timestamp_ms);
    let failed = msg.delivery == Delivery::Failed;
    // Text nodes only: message text is never parsed as HTML.
    let body = linkify(&msg.body)
        .into_iter()
        .map(|s| match s {
            Segment::Text(t) => t.to_owned().into_any(),
            Segment::Link(l) => {
                view! { <a href=l.to_owned() target="_blank" rel="noopener noreferrer nofollow">{l.to_owned()}</a> }.into_any()
            }
        })
        .collect_view();
    let quote = msg_actions::quote_view(&msg.annotations, msg_actions::chat_quote);
    let body = msg_actions::body(&msg.annotations, body.into_any());
    let seen = msg.annotations.seen;
    view! {
        <div
            class="msg"
            class:out=out
            class:in=!out
            class:first=first
            class:failed=failed
            data-direction=if out { "out" } else { "in" }
            data-id=msg.id.clone()
            tabindex="0"
        >
            <div class="bubble">
                <span class="sr-only">{if out { "You: " } else { "Them: " }}</span>
                {quote}
                <span class="body">{body}</span>
                <span class="meta">
                    {msg.edited.then(|| view! { <span class="edited" title="Edited by its sender">"edited"</span> })}
                    <time title=full>{time}</time>
                    {out.then(|| match msg.delivery {
                        Delivery::Failed => {
                            view! { <span class="tick failed" role="img" aria-label="not delivered" title="Not delivered">"!"</span> }
                                .into_any()
                        }
                        Delivery::Delivered => {
                            view! { <span class="tick delivered" role="img" aria-label="delivered" title="Delivered">"✓✓"</span> }
                                .into_any()
                        }
                        Delivery::Queued => {
                            view! {
                                <span class="tick queued" role="img" aria-label="waiting to send" title="Waiting for the connection">
                                    "◷"
                                </span>
                            }
                                .into_any()
                        }
                        Delivery::Sent | Delivery::Received => {
                            view! { <span class="tick" role="img" aria-label="sent" title="Sent">"✓"</span> }.into_any()
                        }
                    })}
                    // XEP-0333: the peer displayed it.
                    {(out && seen).then(|| view! { <span class="tick seen" role="img" aria-label="seen" title="Seen">"👁"</span> })}
                </span>
            </div>
            <msg_actions::MessageMenu target=msg_actions::MenuTarget::chat(&msg)/>
            <msg_actions::Reactions id=msg.id.clone() annotations=msg.annotations.clone() me=me() name=|who: String| who/>
            {msg.error.map(|e| view! { <div class="msg-error" role="alert">{format!("Not delivered: {e}")}</div> })}
        </div>
    }
}

/// The composer of a conversation; `room`: of the open room, which takes messages only
/// while we are in it (nothing waits in the outbox for a room).
#[component]
pub(super) fn Composer(#[prop(optional)] room: Option<Memo<Option<Room>>>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let compose = expect_context::<Compose>();
    let (text, input) = (compose.text, compose.input);
    let online = move || state.status.get() == crate::state::Status::Online;
    // A chat takes messages even offline (they wait in the outbox).
    let joined = move || room.is_none_or(|r| online() && r.with(|r| r.as_ref().is_some_and(Room::is_joined)));
    let placeholder = move || match (room.is_some(), joined(), online()) {
        (true, true, _) => "Write to the room",
        (true, false, _) => "Not in the room",
        (false, _, true) => "Write a message",
        (false, _, false) => "Offline — messages will be sent once reconnected",
    };
    let account = move || state.me.get_untracked().unwrap_or_default();
    let send = move || {
        // Offline, a message waits in the outbox and goes out on reconnect.
        if let Some(to) = state.active.get_untracked() {
            if compose.send(&to) {
                drafts::set(&account(), &to, "");
            }
        }
    };
    // When a conversation opens: its draft back in the composer, and the focus there.
    Effect::new(move |_| {
        let active = state.active.get();
        text.set(active.map(|to| drafts::get(&account(), &to)).unwrap_or_default());
        if let Some(i) = input.get() {
            let _ = i.focus();
        }
    });
    view! {
        <form
            class="composer"
            on:submit=move |ev: SubmitEvent| {
                ev.prevent_default();
                send();
            }
        >
            <textarea
                node_ref=input
                rows="1"
                placeholder=placeholder
                aria-label=if room.is_some() { "Message to the room" } else { "Message" }
                data-testid=if room.is_some() { "room-composer" } else { "composer" }
                prop:value=move || text.get()
                on:input=move |ev| {
                    let value = event_target_value(&ev);
                    if let Some(to) = state.active.get_untracked() {
                        net::typing(&to, !value.trim().is_empty());
                        drafts::set(&account(), &to, &value);
                    }
                    text.set(value);
                }
                on:keydown=move |ev: KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    } else if ev.key() == "ArrowUp" && state.active.get_untracked().is_some_and(|to| compose.edit_last(&to)) {
                        ev.prevent_default();
                    } else if ev.key() == "Escape" {
                        compose.cancel();
                    }
                }
                on:paste=move |ev: leptos::ev::ClipboardEvent| {
                    let files = ev.clipboard_data().and_then(|d| d.files()).filter(|f| f.length() > 0);
                    if files.is_some() {
                        ev.prevent_default();
                        msg_actions::upload_files(state, files);
                    }
                }
            ></textarea>
            <msg_actions::AttachButton/>
            <button
                class="btn btn-primary send"
                type="submit"
                aria-label="Send"
                disabled=move || text.get().trim().is_empty() || !joined()
            >
                <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                    <path d="M3 20.5 21 12 3 3.5l.01 6.6L15 12 3.01 13.9z" fill="currentColor"/>
                </svg>
            </button>
        </form>
    }
}
