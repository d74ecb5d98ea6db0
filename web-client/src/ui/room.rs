//! Group chats: the sidebar's room list (bookmarks, rooms we are in, invitations), the
//! join / create dialog with the public room browser, and the room view (messages,
//! occupants, subject, the moderator and owner actions, the settings form).

use jabberwock_client_core::actions::picker_choices;
use jabberwock_client_core::chat::{linkify, Segment};
use jabberwock_client_core::form::{Field, FieldKind, Form};
use jabberwock_client_core::muc::{Affiliation, Occupant, Role, Room, RoomMessage, RoomSettings, RoomState};
use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::html;
use leptos::prelude::*;

use super::actions::{self as msg_actions, Compose};
use super::chat::Composer;
use super::Avatar;
use crate::browser;
use crate::net;
use crate::net::rooms as rooms_net;
use crate::state::{AppState, RoomRow};

/// The sidebar section: invitations, then the rooms (bookmarked or joined).
#[component]
pub fn RoomList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let dialog = RwSignal::new(false);
    view! {
        <section class="rooms" aria-labelledby="rooms-title">
            <div class="rooms-head">
                <h2 id="rooms-title" class="section-title">"Rooms"</h2>
                <button
                    class="btn btn-ghost btn-sm"
                    type="button"
                    aria-expanded=move || dialog.get().to_string()
                    aria-controls="join-room-form"
                    data-testid="join-room-open"
                    on:click=move |_| dialog.update(|d| *d = !*d)
                >
                    "Join or create"
                </button>
            </div>
            <Show when=move || dialog.get()>
                <JoinDialog close=Callback::new(move |()| dialog.set(false))/>
            </Show>
            <Invitations/>
            <ul class="room-list" role="list">
                <For each=move || state.rooms.get() key=RoomRow::key let:row>
                    <RoomRowView row=row/>
                </For>
            </ul>
        </section>
    }
}

#[component]
fn RoomRowView(row: RoomRow) -> impl IntoView {
    let state = expect_context::<AppState>();
    let jid = row.jid.clone();
    let open = move |_| {
        // A bookmark we are not in: join it (as the bookmark says) on the way.
        if !row.joined && state.rooms.with_untracked(|r| r.iter().any(|r| r.jid == jid && r.problem.is_none())) {
            let nick = rooms_net::default_nick();
            if let Err(e) = rooms_net::join(&jid, &nick, "") {
                state.toast(e);
            }
        }
        net::open_chat(Some(jid.clone()));
    };
    let active_jid = row.jid.clone();
    let is_active = move || state.active.get().as_deref() == Some(active_jid.as_str());
    let label = match (row.unread, row.mentions) {
        (0, _) => row.name.clone(),
        (n, 0) => format!("{}, {n} unread", row.name),
        (n, m) => format!("{}, {n} unread, {m} mentioning you", row.name),
    };
    let mentioned = row.mentions > 0;
    let sub = row.problem.clone().unwrap_or_else(|| if row.joined { row.jid.clone() } else { "Not joined".into() });
    view! {
        <li>
            <button
                class="contact room-row"
                class:active=is_active
                class:mentioned=mentioned
                type="button"
                aria-label=label
                data-room=row.jid.clone()
                data-testid="room-row"
                on:click=open
            >
                <Avatar jid=row.jid.clone() name=row.name.clone()/>
                <span class="contact-main">
                    <span class="contact-name">{row.name.clone()}</span>
                    <span class="contact-sub" class:problem=row.problem.is_some()>{sub}</span>
                </span>
                {(row.mentions > 0).then(|| view! { <span class="badge mention" aria-hidden="true">"@"</span> })}
                {(row.unread > 0).then(|| view! { <span class="badge" aria-hidden="true">{row.unread}</span> })}
            </button>
        </li>
    }
}

#[component]
fn Invitations() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <Show when=move || state.invitations.with(|i| !i.is_empty())>
            <ul class="invitations" aria-label="Invitations">
                <For each=move || state.invitations.get() key=|i| i.room.clone() let:inv>
                    {
                        let (room, room2) = (inv.room.clone(), inv.room.clone());
                        view! {
                            <li class="invitation" data-testid="invitation">
                                <span>
                                    <strong>{inv.from.clone()}</strong>
                                    " invites you to "
                                    <strong>{inv.room.clone()}</strong>
                                    {inv.reason.clone().map(|r| view! { <q>{r}</q> })}
                                </span>
                                <span class="request-actions">
                                    <button
                                        class="btn btn-primary btn-sm"
                                        type="button"
                                        on:click=move |_| {
                                            if let Err(e) = rooms_net::accept_invitation(&room, &rooms_net::default_nick()) {
                                                state.toast(e);
                                            }
                                        }
                                    >
                                        "Join"
                                    </button>
                                    <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| rooms_net::decline_invitation(&room2)>
                                        "Dismiss"
                                    </button>
                                </span>
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
    }
}

/// Join a room by address, or create one with a few settings; or pick a public one.
#[component]
fn JoinDialog(close: Callback<()>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let address = RwSignal::new(String::new());
    let nick = RwSignal::new(rooms_net::default_nick());
    let password = RwSignal::new(String::new());
    let create = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let public = RwSignal::new(true);
    let members_only = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let input: NodeRef<html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(i) = input.get() {
            let _ = i.focus();
        }
    });
    // Find the services now: a bare room name goes to the first one.
    rooms_net::discover();
    let full_address = move || {
        let a = address.get_untracked().trim().to_owned();
        match state.services.with_untracked(|s| s.first().cloned()) {
            Some(service) if !a.contains('@') && !a.is_empty() => format!("{a}@{service}"),
            _ => a,
        }
    };
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let room = full_address();
        let result = if create.get_untracked() {
            let settings = RoomSettings {
                name: Some(name.get_untracked().trim().to_owned()).filter(|n| !n.is_empty()),
                public: Some(public.get_untracked()),
                members_only: Some(members_only.get_untracked()),
                password: Some(password.get_untracked()).filter(|p| !p.is_empty()),
            };
            rooms_net::create(&room, &nick.get_untracked(), settings)
        } else {
            rooms_net::join(&room, &nick.get_untracked(), &password.get_untracked())
        };
        match result {
            Ok(()) => {
                close.run(());
                net::open_chat(Some(jabberwock_client_core::address::parse_bare(&room).unwrap_or(room)));
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let hint = move || match state.services.get().first() {
        Some(s) => format!("room@{s}, or just a name for {s}"),
        None => "room@conference.example.org".to_owned(),
    };
    view! {
        <form
            id="join-room-form"
            class="add-form join-room"
            aria-label="Join or create a room"
            on:submit=submit
            on:keydown=move |ev: KeyboardEvent| {
                if ev.key() == "Escape" {
                    close.run(());
                }
            }
        >
            <label class="field">
                <span class="field-label">"Room address"</span>
                <input
                    node_ref=input
                    type="text"
                    autocapitalize="none"
                    spellcheck="false"
                    required
                    placeholder=hint
                    data-testid="room-address"
                    prop:value=move || address.get()
                    on:input=move |ev| address.set(event_target_value(&ev))
                />
            </label>
            <label class="field">
                <span class="field-label">"Your nickname"</span>
                <input type="text" required data-testid="room-nick" prop:value=move || nick.get() on:input=move |ev| nick.set(event_target_value(&ev))/>
            </label>
            <label class="field">
                <span class="field-label">"Password (if the room has one)"</span>
                <input type="password" autocomplete="off" prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
            </label>
            <label class="check">
                <input type="checkbox" data-testid="room-create" prop:checked=move || create.get() on:change=move |ev| create.set(event_target_checked(&ev))/>
                <span>"Create a new room"</span>
            </label>
            <Show when=move || create.get()>
                <fieldset class="create-settings">
                    <legend class="sr-only">"New room settings"</legend>
                    <label class="field">
                        <span class="field-label">"Name (optional)"</span>
                        <input type="text" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    </label>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || public.get() on:change=move |ev| public.set(event_target_checked(&ev))/>
                        <span>"Listed publicly"</span>
                    </label>
                    <label class="check">
                        <input
                            type="checkbox"
                            prop:checked=move || members_only.get()
                            on:change=move |ev| members_only.set(event_target_checked(&ev))
                        />
                        <span>"Members only"</span>
                    </label>
                </fieldset>
            </Show>
            <Show when=move || error.get().is_some()>
                <div class="form-error" role="alert">{move || error.get().unwrap_or_default()}</div>
            </Show>
            <div class="form-actions">
                <button class="btn btn-ghost" type="button" on:click=move |_| close.run(())>"Cancel"</button>
                <button class="btn btn-primary" type="submit" data-testid="room-join">
                    {move || if create.get() { "Create" } else { "Join" }}
                </button>
            </div>
            <PublicRooms address=address/>
        </form>
    }
}

/// The public rooms of the server's services (XEP-0045 §6.3); picking one fills the address.
#[component]
fn PublicRooms(address: RwSignal<String>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let asked = RwSignal::new(false);
    view! {
        <div class="public-rooms">
            <button
                class="btn btn-ghost btn-sm"
                type="button"
                disabled=move || state.services.with(Vec::is_empty)
                on:click=move |_| {
                    asked.set(true);
                    for s in state.services.get_untracked() {
                        rooms_net::browse(&s);
                    }
                }
            >
                "Browse public rooms"
            </button>
            <Show when=move || asked.get()>
                <ul class="public-list" aria-label="Public rooms">
                    <For each=move || state.public_rooms.get() key=|r| r.jid.clone() let:room>
                        {
                            let jid = room.jid.clone();
                            view! {
                                <li>
                                    <button class="btn btn-ghost btn-sm public-room" type="button" on:click=move |_| address.set(jid.clone())>
                                        {room.name.clone().unwrap_or_else(|| room.jid.clone())}
                                        <span class="muted">{format!(" {}", room.jid)}</span>
                                    </button>
                                </li>
                            }
                        }
                    </For>
                    <Show when=move || state.public_rooms.with(Vec::is_empty)>
                        <li class="muted">"No public rooms"</li>
                    </Show>
                </ul>
            </Show>
        </div>
    }
}

/// Consecutive messages of one person within this window share one header.
const GROUP_WINDOW_MS: i64 = 5 * 60 * 1000;

#[component]
pub fn RoomPane() -> impl IntoView {
    let state = expect_context::<AppState>();
    let room = Memo::new(move |_| state.open_room());
    let jid = move || room.with(|r| r.as_ref().map(|r| r.jid.clone()).unwrap_or_default());
    let name = move || jabberwock_client_core::address::local(&jid()).unwrap_or_default().to_owned();
    let log: NodeRef<html::Div> = NodeRef::new();
    // The newest message in view when one arrives, and when the room opens.
    Effect::new(move |prev: Option<(String, usize)>| {
        let now = room.with(|r| r.as_ref().map(|r| (r.jid.clone(), r.messages.len())).unwrap_or_default());
        if prev.as_ref() != Some(&now) {
            browser::next_frame(move || {
                // The room view may be gone by then (another conversation opened).
                if let Some(el) = log.try_get_untracked().flatten() {
                    el.set_scroll_top(el.scroll_height());
                }
            });
        }
        now
    });
    let messages = move || {
        room.with(|r| {
            let Some(r) = r else { return Vec::new() };
            let mut prev: Option<&RoomMessage> = None;
            r.messages
                .iter()
                .map(|m| {
                    let first = prev.is_none_or(|p| p.author_key() != m.author_key() || m.timestamp_ms - p.timestamp_ms > GROUP_WINDOW_MS);
                    prev = Some(m);
                    // Whether we may remove it changes its menu.
                    (m.clone(), first, r.can_remove(m))
                })
                .collect::<Vec<_>>()
        })
    };
    let history = move || room.with(|r| r.as_ref().map(|r| (r.history.loading, r.history.started && !r.history.complete)).unwrap_or_default());
    let left = move || room.with(|r| r.as_ref().and_then(|r| if let RoomState::Left(why) = &r.state { Some(why.clone()) } else { None }));
    // On a phone the occupants take the place of the messages when asked for.
    let people = RwSignal::new(false);
    provide_context(Compose::new());
    let drop_over = RwSignal::new(false);
    let (on_drag_over, on_drag_leave, on_drop) = msg_actions::drop_handlers(state, drop_over);
    view! {
        <section
            class="chat room"
            class:people-open=move || people.get()
            class:drop-over=move || drop_over.get()
            aria-label="Group chat"
            data-testid="room-view"
            on:dragover=on_drag_over
            on:dragleave=on_drag_leave
            on:drop=on_drop
        >
            <RoomHeader room=room people=people/>
            <Show when=move || left().is_some()>
                <div class="room-problem" role="alert" data-testid="room-problem">{move || left().unwrap_or_default()}</div>
                <JoinAgain room=room/>
            </Show>
            <div class="room-body">
                <div
                    class="log"
                    node_ref=log
                    role="log"
                    aria-live="polite"
                    aria-relevant="additions"
                    aria-label=move || format!("Messages in {}", name())
                    tabindex="0"
                    data-testid="room-log"
                >
                    <Show when=move || history().0 || history().1>
                        <div class="load-older">
                            <button class="btn btn-ghost btn-sm" type="button" disabled=move || history().0 on:click=move |_| rooms_net::load_older(&jid())>
                                {move || if history().0 { "Loading history…" } else { "Load earlier messages" }}
                            </button>
                        </div>
                    </Show>
                    <For each=messages key=|(m, first, removable)| format!("{}:{}:{}:{first}:{removable}", m.nick, m.id, version(m)) let:item>
                        <RoomBubble room=room msg=item.0 first=item.1/>
                    </For>
                </div>
                <Occupants room=room/>
            </div>
            <ConfigForm room=room/>
            <msg_actions::Uploads/>
            <msg_actions::ComposerBanner/>
            <Composer room=room/>
        </section>
    }
}

/// Out of a room (refused, kicked …): try again, with another nick or the password.
#[component]
fn JoinAgain(room: Memo<Option<Room>>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let nick = RwSignal::new(room.with_untracked(|r| r.as_ref().map(|r| r.nick.clone()).unwrap_or_default()));
    let password = RwSignal::new(String::new());
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(jid) = room.with_untracked(|r| r.as_ref().map(|r| r.jid.clone())) else { return };
        if let Err(e) = rooms_net::join(&jid, &nick.get_untracked(), &password.get_untracked()) {
            state.toast(e);
        }
    };
    view! {
        <form class="rename-form join-again" aria-label="Join again" on:submit=submit>
            <input type="text" aria-label="Nickname" required prop:value=move || nick.get() on:input=move |ev| nick.set(event_target_value(&ev))/>
            <input
                type="password"
                aria-label="Room password (if it has one)"
                placeholder="Password, if any"
                autocomplete="off"
                prop:value=move || password.get()
                on:input=move |ev| password.set(event_target_value(&ev))
            />
            <button class="btn btn-primary btn-sm" type="submit" data-testid="room-join-again">"Join again"</button>
        </form>
    }
}

#[component]
fn RoomHeader(room: Memo<Option<Room>>, people: RwSignal<bool>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let jid = move || room.with(|r| r.as_ref().map(|r| r.jid.clone()).unwrap_or_default());
    let title = move || {
        let j = jid();
        let named = room.with(|r| r.as_ref().and_then(|r| r.name.clone()));
        named.unwrap_or_else(|| jabberwock_client_core::address::local(&j).unwrap_or(&j).to_owned())
    };
    let subject = move || room.with(|r| r.as_ref().and_then(|r| r.subject.clone()));
    let is = move |f: fn(&Room) -> bool| room.with(|r| r.as_ref().is_some_and(f));
    let bookmarked = move || state.bookmarked.get().is_some();
    // Which small form the header shows: a nick, a subject or an address to invite.
    let editing = RwSignal::new(None::<(&'static str, String)>);
    let menu = RwSignal::new(false);
    let confirm_destroy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some((what, value)) = editing.get_untracked() else { return };
        let room = jid();
        match what {
            "nick" => rooms_net::change_nick(&room, &value),
            "subject" => rooms_net::set_subject(&room, &value),
            _ => {
                if let Err(e) = rooms_net::invite(&room, &value) {
                    return state.toast(e);
                }
            }
        }
        editing.set(None);
    };
    let action = move |what: &'static str, start: String| {
        menu.set(false);
        editing.set(Some((what, start)));
    };
    view! {
        <header class="chat-head">
            <button class="icon-btn back" type="button" aria-label="Back to contacts" on:click=move |_| net::open_chat(None)>
                "‹"
            </button>
            {move || view! { <Avatar jid=jid() name=title()/> }}
            <div class="chat-title">
                <h2 data-testid="room-title">{title}</h2>
                <div class="chat-status muted" data-testid="room-subject">
                    {move || subject().unwrap_or_else(|| "No subject".into())}
                    " · "
                    {jid}
                </div>
                <Show when=move || editing.get().is_some()>
                    <form
                        class="rename-form"
                        aria-label="Room action"
                        on:submit=submit
                        on:keydown=move |ev: KeyboardEvent| {
                            if ev.key() == "Escape" {
                                editing.set(None);
                            }
                        }
                    >
                        <input
                            type="text"
                            data-testid="room-action-input"
                            aria-label=move || match editing.get().map(|e| e.0) {
                                Some("nick") => "New nickname",
                                Some("subject") => "New subject",
                                _ => "Address to invite",
                            }
                            prop:value=move || editing.get().map(|e| e.1).unwrap_or_default()
                            on:input=move |ev| editing.update(|e| if let Some(e) = e { e.1 = event_target_value(&ev) })
                        />
                        <button class="btn btn-primary btn-sm" type="submit">"OK"</button>
                        <button class="btn btn-ghost btn-sm" type="button" on:click=move |_| editing.set(None)>"Cancel"</button>
                    </form>
                </Show>
            </div>
            <button
                class="btn btn-ghost btn-sm occupants-toggle"
                type="button"
                aria-pressed=move || people.get().to_string()
                on:click=move |_| people.update(|p| *p = !*p)
            >
                "People"
            </button>
            <button
                class="icon-btn bookmark"
                type="button"
                aria-pressed=move || bookmarked().to_string()
                aria-label=move || if bookmarked() { "Remove bookmark" } else { "Bookmark (join on sign-in)" }
                title=move || if bookmarked() { "Remove bookmark" } else { "Bookmark (join on sign-in)" }
                data-testid="room-bookmark"
                on:click=move |_| rooms_net::set_bookmarked(&jid(), !bookmarked())
            >
                {move || if bookmarked() { "★" } else { "☆" }}
            </button>
            <div class="settings room-menu">
                <button
                    class="btn btn-ghost btn-sm"
                    type="button"
                    aria-haspopup="true"
                    aria-expanded=move || menu.get().to_string()
                    data-testid="room-menu"
                    on:click=move |_| menu.update(|m| *m = !*m)
                >
                    "Room ▾"
                </button>
                <Show when=move || menu.get()>
                    <div
                        class="settings-panel room-menu-panel"
                        role="group"
                        aria-label="Room actions"
                        on:keydown=move |ev: KeyboardEvent| {
                            if ev.key() == "Escape" {
                                menu.set(false);
                            }
                        }
                    >
                        <button class="btn btn-ghost btn-sm btn-block" type="button" data-testid="room-invite" on:click=move |_| action("invite", String::new())>
                            "Invite someone…"
                        </button>
                        <button
                            class="btn btn-ghost btn-sm btn-block"
                            type="button"
                            on:click=move |_| action("nick", room.with_untracked(|r| r.as_ref().map(|r| r.nick.clone()).unwrap_or_default()))
                        >
                            "Change nickname…"
                        </button>
                        <button class="btn btn-ghost btn-sm btn-block" type="button" on:click=move |_| action("subject", subject().unwrap_or_default())>
                            "Change subject…"
                        </button>
                        <Show when=move || is(Room::is_owner)>
                            <button
                                class="btn btn-ghost btn-sm btn-block"
                                type="button"
                                data-testid="room-settings"
                                on:click=move |_| {
                                    menu.set(false);
                                    rooms_net::request_config(&jid());
                                }
                            >
                                "Settings…"
                            </button>
                            <Show
                                when=move || confirm_destroy.get()
                                fallback=move || view! {
                                    <button class="btn btn-ghost btn-sm btn-block" type="button" on:click=move |_| confirm_destroy.set(true)>
                                        "Destroy room…"
                                    </button>
                                }
                            >
                                <button
                                    class="btn btn-danger btn-sm btn-block"
                                    type="button"
                                    on:click=move |_| {
                                        confirm_destroy.set(false);
                                        menu.set(false);
                                        rooms_net::destroy(&jid());
                                    }
                                >
                                    "Destroy it for everyone"
                                </button>
                            </Show>
                        </Show>
                        <button
                            class="btn btn-ghost btn-sm btn-block"
                            type="button"
                            data-testid="room-leave"
                            on:click=move |_| {
                                menu.set(false);
                                rooms_net::leave(&jid());
                            }
                        >
                            "Leave"
                        </button>
                    </div>
                </Show>
            </div>
        </header>
    }
}

#[component]
fn RoomBubble(room: Memo<Option<Room>>, msg: RoomMessage, first: bool) -> impl IntoView {
    let time = browser::format_time(msg.timestamp_ms);
    let full = browser::format_full(msg.timestamp_ms);
    // Text nodes only: message text is never parsed as HTML.
    let text = linkify(&msg.body)
        .into_iter()
        .map(|s| match s {
            Segment::Text(t) => t.to_owned().into_any(),
            Segment::Link(l) => view! { <a href=l.to_owned() target="_blank" rel="noopener noreferrer nofollow">{l.to_owned()}</a> }.into_any(),
        })
        .collect_view();
    let out = msg.outgoing;
    let failed = msg.error.is_some();
    let who = if msg.nick.is_empty() { "The room".to_owned() } else { msg.nick.clone() };
    let (quote, target, own_key) = room.with_untracked(|r| {
        let Some(r) = r else { return (None, None, String::new()) };
        let quote = msg_actions::quote_view(&msg.annotations, |reply| r.reply_quote(reply));
        // Reactions, replies and retractions name the room's id: none before it is known.
        let target = (msg.stanza_id.is_some() && !msg.annotations.retracted).then(|| msg_actions::MenuTarget {
            id: Room::key_of(&msg).to_owned(),
            body: msg.body.clone(),
            ours: out,
            choices: picker_choices(&msg),
            removable: r.can_remove(&msg),
        });
        (quote, target, r.own_key())
    });
    let body = match &msg.moderation {
        Some(m) => {
            let by = m.by.as_ref().map_or_else(|| "a moderator".to_owned(), |b| format!("{b} (moderator)"));
            let reason = m.reason.as_ref().map_or_else(String::new, |r| format!(": {r}"));
            view! { <em class="retracted" data-testid="moderated">{format!("removed by {by}{reason}")}</em> }.into_any()
        }
        None => msg_actions::body(&msg.annotations, text.into_any()),
    };
    // Reactions are kept by occupant id where the room gives them: shown by nick.
    let name = move |key: String| room.with_untracked(|r| r.as_ref().and_then(|r| r.nick_of(&key)).unwrap_or(key));
    view! {
        <div
            class="msg"
            class:out=out
            class:in=!out
            class:first=first
            class:mention=msg.mention
            class:failed=failed
            data-testid="room-message"
            data-mention=msg.mention.to_string()
            tabindex="0"
        >
            {(first && !out).then(|| view! { <span class="msg-nick">{who.clone()}</span> })}
            <div class="bubble">
                <span class="sr-only">{if out { "You: ".to_owned() } else { format!("{who}: ") }}</span>
                {quote}
                <span class="body">{body}</span>
                <span class="meta">
                    {msg.edited.then(|| view! { <span class="edited" title="Edited by its sender">"edited"</span> })}
                    <time title=full>{time}</time>
                    {out.then(|| if msg.reflected {
                        view! { <span class="tick delivered" role="img" aria-label="sent to the room" title="Sent to the room">"✓✓"</span> }.into_any()
                    } else {
                        view! { <span class="tick" role="img" aria-label="sending" title="Sending">"✓"</span> }.into_any()
                    })}
                </span>
            </div>
            <msg_actions::MessageMenu target=target/>
            <msg_actions::Reactions id=Room::key_of(&msg).to_owned() annotations=msg.annotations.clone() me=own_key name=name/>
            {msg.error.map(|e| view! { <div class="msg-error" role="alert">{format!("Not delivered: {e}")}</div> })}
        </div>
    }
}

/// Changes whenever what a room message shows changes: its text, what actions did to it,
/// its arrival.
fn version(m: &RoomMessage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&m.body, m.edited, &m.annotations, m.moderation.is_some(), m.reflected, m.error.is_some(), &m.stanza_id).hash(&mut h);
    h.finish()
}

/// The occupants, grouped by role, with what we may do to each.
#[component]
fn Occupants(room: Memo<Option<Room>>) -> impl IntoView {
    let groups = move || {
        room.with(|r| {
            r.as_ref()
                .map(|r| r.occupants_grouped().into_iter().map(|(role, list)| (role, list.into_iter().cloned().collect::<Vec<_>>())).collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let count = move || room.with(|r| r.as_ref().map_or(0, |r| r.occupants.len()));
    view! {
        <aside class="occupants" aria-label="Occupants" data-testid="occupants">
            <h3 class="section-title">{move || format!("{} here", count())}</h3>
            <For each=groups key=occupant_group_key let:group>
                <div class="group" role="group" aria-label=group.0.label()>
                    <h4 class="group-title">{group.0.label()}</h4>
                    <ul class="occupant-list" role="list">
                        {group.1.into_iter().map(|o| view! { <OccupantRow room=room occupant=o/> }).collect_view()}
                    </ul>
                </div>
            </For>
        </aside>
    }
}

/// Changes whenever anything an occupant line shows changes.
fn occupant_group_key((role, list): &(Role, Vec<Occupant>)) -> String {
    let lines: Vec<String> = list
        .iter()
        .map(|o| format!("{}/{}/{}/{}", o.nick, o.affiliation.name(), o.presence.show.key(), o.jid.is_some()))
        .collect();
    format!("{}:{}", role.name(), lines.join(","))
}

#[component]
fn OccupantRow(room: Memo<Option<Room>>, occupant: Occupant) -> impl IntoView {
    let open = RwSignal::new(false);
    let jid = room.with_untracked(|r| r.as_ref().map(|r| r.jid.clone()).unwrap_or_default());
    let ours = room.with_untracked(|r| r.as_ref().is_some_and(|r| r.nick == occupant.nick));
    let (moderate, ban) = room.with_untracked(|r| r.as_ref().map_or((false, false), |r| (r.can_moderate(), r.can_ban())));
    let standing = match occupant.affiliation {
        Affiliation::None => None,
        a => Some(a.name()),
    };
    let status = occupant.presence.show.key();
    let voiced = occupant.role != Role::Visitor;
    // A click handler doing `f(room, nick)` and closing the actions.
    let on = {
        let nick = occupant.nick.clone();
        move |f: fn(&str, &str)| {
            let (jid, nick) = (jid.clone(), nick.clone());
            move |_| {
                open.set(false);
                f(&jid, &nick);
            }
        }
    };
    let voice: fn(&str, &str) =
        if voiced { |room, nick| rooms_net::set_role(room, nick, Role::Visitor) } else { |room, nick| rooms_net::set_role(room, nick, Role::Participant) };
    view! {
        <li class="occupant" data-nick=occupant.nick.clone() data-role=occupant.role.name() data-status=status>
            <button
                class="occupant-name"
                type="button"
                aria-expanded=move || open.get().to_string()
                aria-label=format!("{}{}", occupant.nick, standing.map(|s| format!(" ({s})")).unwrap_or_default())
                on:click=move |_| open.update(|o| *o = !*o)
            >
                <span class="presence-dot" data-status=status aria-hidden="true"></span>
                {occupant.nick.clone()}
                {standing.map(|s| view! { <span class="muted standing">{s}</span> })}
                {ours.then(|| view! { <span class="muted standing">"(you)"</span> })}
            </button>
            <Show when=move || open.get() && !ours>
                <div class="occupant-actions" role="group" aria-label="Actions">
                    <button class="btn btn-ghost btn-sm" type="button" on:click=on(|room, nick| net::open_chat(Some(format!("{room}/{nick}"))))>
                        "Private message"
                    </button>
                    {moderate.then(|| view! {
                        <button class="btn btn-ghost btn-sm" type="button" on:click=on(voice)>
                            {if voiced { "Revoke voice" } else { "Grant voice" }}
                        </button>
                        <button class="btn btn-ghost btn-sm" type="button" on:click=on(|room, nick| rooms_net::set_role(room, nick, Role::None))>
                            "Kick"
                        </button>
                    })}
                    {ban.then(|| view! {
                        <button class="btn btn-danger btn-sm" type="button" on:click=on(|room, nick| rooms_net::set_affiliation(room, nick, Affiliation::Outcast))>
                            "Ban"
                        </button>
                    })}
                </div>
            </Show>
        </li>
    }
}

/// The owner's settings form, rendered from the room's data form field by field.
#[component]
fn ConfigForm(room: Memo<Option<Room>>) -> impl IntoView {
    let form = RwSignal::new(None::<Form>);
    // A new form from the room replaces what is shown.
    Effect::new(move |_| form.set(room.with(|r| r.as_ref().and_then(|r| r.config.clone()))));
    let jid = move || room.with_untracked(|r| r.as_ref().map(|r| r.jid.clone()).unwrap_or_default());
    view! {
        <Show when=move || form.with(Option::is_some)>
            <form
                class="config-form"
                aria-label="Room settings"
                data-testid="room-config"
                on:submit=move |ev: SubmitEvent| {
                    ev.prevent_default();
                    rooms_net::submit_config(&jid(), form.get_untracked());
                }
            >
                <h3>{move || form.with(|f| f.as_ref().and_then(|f| f.title.clone())).unwrap_or_else(|| "Room settings".into())}</h3>
                {move || form.with(|f| f.as_ref().map(|f| f.instructions.iter().map(|i| view! { <p class="muted">{i.clone()}</p> }).collect_view()))}
                {move || {
                    form.with(|f| {
                        f.as_ref()
                            .map(|f| f.fields.iter().enumerate().map(|(i, field)| view! { <FieldView form=form index=i field=field.clone()/> }).collect_view())
                    })
                }}
                <div class="form-actions">
                    <button class="btn btn-ghost" type="button" on:click=move |_| rooms_net::submit_config(&jid(), None)>"Cancel"</button>
                    <button class="btn btn-primary" type="submit">"Save settings"</button>
                </div>
            </form>
        </Show>
    }
}

/// One field, by its type; edits go back into the form.
#[component]
fn FieldView(form: RwSignal<Option<Form>>, index: usize, field: Field) -> impl IntoView {
    let set = move |values: Vec<String>| {
        form.update(|f| {
            if let Some(field) = f.as_mut().and_then(|f| f.fields.get_mut(index)) {
                field.values = values;
            }
        })
    };
    let title = field.title().to_owned();
    let desc = field.desc.clone().map(|d| view! { <span class="field-hint">{d}</span> });
    match field.kind.clone() {
        FieldKind::Hidden => ().into_any(),
        FieldKind::Fixed => view! { <p class="field-fixed">{field.value().to_owned()}</p> }.into_any(),
        FieldKind::Boolean => view! {
            <label class="check">
                <input type="checkbox" prop:checked=field.is_true() on:change=move |ev| set(vec![if event_target_checked(&ev) { "1" } else { "0" }.to_owned()])/>
                <span>{title}{desc}</span>
            </label>
        }
        .into_any(),
        FieldKind::ListSingle => view! {
            <label class="field">
                <span class="field-label">{title}</span>
                <select prop:value=field.value().to_owned() on:change=move |ev| set(vec![event_target_value(&ev)])>
                    {field.options.iter().map(|o| view! { <option value=o.value.clone() selected=field.values.contains(&o.value)>{o.label.clone()}</option> }).collect_view()}
                </select>
                {desc}
            </label>
        }
        .into_any(),
        FieldKind::ListMulti => view! {
            <fieldset class="field">
                <legend class="field-label">{title}</legend>
                {field
                    .options
                    .iter()
                    .map(|o| {
                        let value = o.value.clone();
                        view! {
                            <label class="check">
                                <input
                                    type="checkbox"
                                    prop:checked=field.values.contains(&o.value)
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        let value = value.clone();
                                        form.update(|f| {
                                            if let Some(field) = f.as_mut().and_then(|f| f.fields.get_mut(index)) {
                                                field.values.retain(|v| *v != value);
                                                if on {
                                                    field.values.push(value);
                                                }
                                            }
                                        })
                                    }
                                />
                                <span>{o.label.clone()}</span>
                            </label>
                        }
                    })
                    .collect_view()}
                {desc}
            </fieldset>
        }
        .into_any(),
        FieldKind::TextMulti | FieldKind::JidMulti => view! {
            <label class="field">
                <span class="field-label">{title}</span>
                <textarea rows="3" prop:value=field.values.join("\n") on:input=move |ev| set(event_target_value(&ev).lines().map(str::to_owned).collect())></textarea>
                <span class="field-hint">"One per line"</span>
                {desc}
            </label>
        }
        .into_any(),
        // Text, a password, an address, or a type we do not know: one line of text.
        kind => view! {
            <label class="field">
                <span class="field-label">{title}</span>
                <input
                    type=if kind == FieldKind::TextPrivate { "password" } else { "text" }
                    prop:value=field.value().to_owned()
                    on:input=move |ev| set(vec![event_target_value(&ev)])
                />
                {desc}
            </label>
        }
        .into_any(),
    }
}
