//! The sidebar: our own presence, adding contacts, requests, and the contact list.

use jabberwock_client_core::Show as Availability;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use super::Avatar;
use crate::net;
use crate::state::{AppState, Row};

#[component]
pub fn Sidebar() -> impl IntoView {
    view! {
        <aside class="sidebar" aria-label="Contacts">
            <MeCard/>
            <AddContact/>
            <Requests/>
            <super::room::RoomList/>
            <ContactList/>
        </aside>
    }
}

#[component]
fn MeCard() -> impl IntoView {
    let state = expect_context::<AppState>();
    let me = move || state.me.get().unwrap_or_default();
    let draft = RwSignal::new(state.own_status.get_untracked());
    let apply = move || net::set_presence(state.own_show.get_untracked(), draft.get_untracked());
    view! {
        <section class="me-card" aria-label="Your presence">
            // The picture is also the control that changes it (a file input, keyboard-reachable).
            <label class="avatar-picker" title="Change your picture">
                {move || {
                    let jid = me();
                    let name = jabberwock_client_core::address::local(&jid).unwrap_or(&jid).to_owned();
                    view! { <Avatar jid=jid.clone() name=name status=Signal::derive(move || state.own_show.get().key())/> }
                }}
                <input
                    class="sr-only"
                    type="file"
                    accept="image/png,image/jpeg,image/gif,image/webp"
                    aria-label="Change your picture"
                    data-testid="avatar-file"
                    on:change=move |ev| {
                        let input: web_sys::HtmlInputElement = event_target(&ev);
                        if let Some(file) = input.files().and_then(|f| f.get(0)) {
                            net::set_avatar(file);
                        }
                        input.set_value("");
                    }
                />
            </label>
            <div class="me-info">
                <div class="me-jid" title=me>{me}</div>
                <div class="me-controls">
                    <select
                        class="presence-select"
                        aria-label="Your availability"
                        data-testid="presence-select"
                        prop:value=move || state.own_show.get().key()
                        on:change=move |ev| net::set_presence(Availability::from_key(&event_target_value(&ev)).unwrap_or_default(), draft.get_untracked())
                    >
                        {Availability::ALL
                            .into_iter()
                            .map(|s| view! { <option value=s.key()>{s.label()}</option> })
                            .collect_view()}
                    </select>
                    <input
                        class="status-input"
                        type="text"
                        placeholder="Status message"
                        aria-label="Status message"
                        maxlength="200"
                        prop:value=move || draft.get()
                        on:input=move |ev| draft.set(event_target_value(&ev))
                        on:change=move |_| apply()
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Enter" {
                                // Commits the text: `change` follows.
                                if let Some(el) = ev.target().and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(t).ok()) {
                                    let _ = el.blur();
                                }
                            }
                        }
                    />
                </div>
            </div>
        </section>
    }
}

#[component]
fn AddContact() -> impl IntoView {
    let open = RwSignal::new(false);
    let address = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    // The address field has the focus as soon as the form opens.
    let address_field: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(f) = address_field.get() {
            let _ = f.focus();
        }
    });
    // A conversation without adding them: no subscription request, nothing in the roster.
    let message_only = move |_| match jabberwock_client_core::address::parse_bare(&address.get_untracked()) {
        Ok(jid) => {
            address.set(String::new());
            name.set(String::new());
            error.set(None);
            open.set(false);
            net::open_chat(Some(jid));
        }
        Err(e) => error.set(Some(e.to_string())),
    };
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        match net::add_contact(&address.get_untracked(), &name.get_untracked()) {
            Ok(()) => {
                address.set(String::new());
                name.set(String::new());
                error.set(None);
                open.set(false);
            }
            Err(e) => error.set(Some(e)),
        }
    };
    view! {
        <section class="add-contact">
            <button
                class="btn btn-secondary btn-block"
                type="button"
                aria-expanded=move || open.get().to_string()
                aria-controls="add-contact-form"
                on:click=move |_| open.update(|o| *o = !*o)
            >
                <span aria-hidden="true">"+ "</span>
                "Add contact"
            </button>
            <Show when=move || open.get()>
                <form id="add-contact-form" class="add-form" on:submit=submit aria-label="Add a contact">
                    <label class="field">
                        <span class="field-label">"Their address"</span>
                        <input
                            node_ref=address_field
                            type="text"
                            inputmode="email"
                            autocapitalize="none"
                            spellcheck="false"
                            placeholder="friend@example.org"
                            required
                            prop:value=move || address.get()
                            on:input=move |ev| address.set(event_target_value(&ev))
                        />
                    </label>
                    <label class="field">
                        <span class="field-label">"Name (optional)"</span>
                        <input
                            type="text"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev))
                        />
                    </label>
                    <Show when=move || error.get().is_some()>
                        <div class="form-error" role="alert">{move || error.get().unwrap_or_default()}</div>
                    </Show>
                    <div class="form-actions">
                        <button class="btn btn-ghost" type="button" on:click=move |_| open.set(false)>"Cancel"</button>
                        <button class="btn btn-secondary" type="button" title="Write to them without adding them" on:click=message_only>
                            "Message"
                        </button>
                        <button class="btn btn-primary" type="submit">"Send request"</button>
                    </div>
                </form>
            </Show>
        </section>
    }
}

#[component]
fn Requests() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <Show when=move || !state.requests.get().is_empty()>
            <section class="requests" aria-labelledby="requests-title">
                <h2 id="requests-title" class="section-title">"Contact requests"</h2>
                <ul class="request-list">
                    <For each=move || state.requests.get() key=|(j, m)| (j.clone(), m.clone()) let:req>
                        {
                            let (jid, message) = req;
                            let accept_jid = jid.clone();
                            let deny_jid = jid.clone();
                            view! {
                                <li class="request" data-jid=jid.clone()>
                                    <div class="request-text">
                                        <strong>{jid.clone()}</strong>
                                        " wants to add you as a contact"
                                        {message.map(|m| view! { <q class="request-msg">{m}</q> })}
                                    </div>
                                    <div class="request-actions">
                                        <button
                                            class="btn btn-primary btn-sm"
                                            type="button"
                                            aria-label=format!("Accept {jid}")
                                            on:click=move |_| net::accept(&accept_jid)
                                        >
                                            "Accept"
                                        </button>
                                        <button
                                            class="btn btn-ghost btn-sm"
                                            type="button"
                                            aria-label=format!("Deny {jid}")
                                            on:click=move |_| net::deny(&deny_jid)
                                        >
                                            "Deny"
                                        </button>
                                    </div>
                                </li>
                            }
                        }
                    </For>
                </ul>
            </section>
        </Show>
    }
}

/// One line of the contact list: a group title or a contact (with the group it is listed
/// under, when there are groups).
#[derive(Clone, PartialEq)]
enum Line {
    Group(String),
    Contact(Option<String>, Row),
}

/// Fixed heights (matching style.css), so that the position of any line is known without
/// rendering it: only the lines in view are in the page.
const CONTACT_HEIGHT: f64 = 58.0;
const GROUP_HEIGHT: f64 = 32.0;
/// Lines rendered above and below the visible ones.
const OVERSCAN: usize = 10;

impl Line {
    fn height(&self) -> f64 {
        match self {
            Line::Group(_) => GROUP_HEIGHT,
            Line::Contact(..) => CONTACT_HEIGHT,
        }
    }
}

#[component]
fn ContactList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let filter = RwSignal::new(String::new());
    let online = move || state.rows.with(|r| r.iter().filter(|r| r.contact.online()).count());
    // With roster groups, one section per group (a contact may be in several), the
    // ungrouped last; each keeps the online-first order.
    let has_groups = Memo::new(move |_| state.rows.with(|r| r.iter().any(|r| !r.contact.groups.is_empty())));
    let lines = Memo::new(move |_| {
        let f = filter.get().to_lowercase();
        let matches = |r: &&Row| f.is_empty() || r.contact.name.to_lowercase().contains(&f) || r.contact.jid.contains(&f);
        state.rows.with(|rows| {
            if !has_groups.get() {
                return rows.iter().filter(matches).map(|r| Line::Contact(None, r.clone())).collect::<Vec<_>>();
            }
            let mut groups: std::collections::BTreeMap<&str, Vec<&Row>> = Default::default();
            let mut other = Vec::new();
            for r in rows.iter().filter(matches) {
                if r.contact.groups.is_empty() {
                    other.push(r);
                }
                for g in &r.contact.groups {
                    groups.entry(g).or_default().push(r);
                }
            }
            let other = (!other.is_empty()).then_some(("Other contacts", other));
            let mut out = Vec::new();
            for (g, rows) in groups.into_iter().chain(other) {
                out.push(Line::Group(g.to_owned()));
                out.extend(rows.into_iter().map(|r| Line::Contact(Some(g.to_owned()), r.clone())));
            }
            out
        })
    });
    // Where each line starts; the last entry is the height of the whole list.
    let offsets = Memo::new(move |_| {
        lines.with(|l| {
            let mut y = 0.0;
            let mut out = Vec::with_capacity(l.len() + 1);
            out.push(y);
            for line in l {
                y += line.height();
                out.push(y);
            }
            out
        })
    });
    let scroller: NodeRef<leptos::html::Div> = NodeRef::new();
    let viewport = RwSignal::new((0.0f64, 900.0f64));
    let measure = move || {
        if let Some(el) = scroller.get_untracked() {
            viewport.set((f64::from(el.scroll_top()), f64::from(el.client_height().max(1))));
        }
    };
    let range = Memo::new(move |_| {
        let (top, height) = viewport.get();
        offsets.with(|o| {
            let n = o.len() - 1;
            let first = o[1..].partition_point(|end| *end <= top);
            let last = o[..n].partition_point(|start| *start < top + height);
            (first.saturating_sub(OVERSCAN), (last + OVERSCAN).min(n))
        })
    });
    // The visible lines, in runs under their group (whose title may be scrolled away).
    let sections = Memo::new(move |_| {
        let (first, last) = range.get();
        lines.with(|l| {
            let mut out: Vec<(Option<String>, bool, Vec<Row>)> = Vec::new();
            for line in &l[first..last] {
                match line {
                    Line::Group(g) => out.push((Some(g.clone()), true, Vec::new())),
                    Line::Contact(g, row) => match out.last_mut() {
                        Some((current, _, rows)) if current == g => rows.push(row.clone()),
                        _ => out.push((g.clone(), false, vec![row.clone()])),
                    },
                }
            }
            out
        })
    });
    // After a resize or a new list, what is in view may differ.
    Effect::new(move |_| {
        lines.track();
        measure();
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());
    view! {
        <section class="contacts" aria-labelledby="contacts-title">
            <div class="contacts-head">
                <h2 id="contacts-title" class="section-title">
                    "Contacts"
                    <span class="count">{move || format!("{} online", online())}</span>
                </h2>
                <input
                    class="search"
                    type="search"
                    placeholder="Search"
                    aria-label="Search contacts"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))
                />
            </div>
            <Show
                when=move || !lines.with(Vec::is_empty)
                fallback=move || {
                    view! {
                        <p class="empty muted">
                            {move || {
                                if !state.roster_loaded.get() {
                                    "Loading contacts…"
                                } else if filter.get().is_empty() {
                                    "No contacts yet. Add someone by their address."
                                } else {
                                    "No contact matches."
                                }
                            }}
                        </p>
                    }
                }
            >
                <div class="contact-scroll" node_ref=scroller on:scroll=move |_| measure() data-testid="contact-scroll">
                    <div
                        class="contact-window"
                        style:height=move || format!("{}px", offsets.with(|o| o[o.len() - 1]))
                        style:padding-top=move || format!("{}px", offsets.with(|o| o[range.get().0]))
                    >
                        <For each=move || sections.get() key=|(g, header, rows)| (g.clone(), *header, format!("{rows:?}")) let:section>
                            {
                                let (group, header, rows) = section;
                                let title = group.clone().unwrap_or_default();
                                let grouped = group.is_some();
                                view! {
                                    <div class="group" role=grouped.then_some("group") aria-label=grouped.then(|| title.clone())>
                                        {header.then(|| view! { <h3 class="group-title">{title.clone()}</h3> })}
                                        <ul class="contact-list" role="list">
                                            {rows.into_iter().map(|row| view! { <ContactRow row=row/> }).collect_view()}
                                        </ul>
                                    </div>
                                }
                            }
                        </For>
                    </div>
                </div>
            </Show>
        </section>
    }
}

#[component]
fn ContactRow(row: Row) -> impl IntoView {
    let state = expect_context::<AppState>();
    let c = row.contact;
    let jid = c.jid.clone();
    let open_jid = jid.clone();
    let active_jid = jid.clone();
    let is_active = move || state.active.get().as_deref() == Some(active_jid.as_str());
    let status_key = c.status_key();
    let secondary = match (&c.error, &row.preview, &c.presence) {
        _ if row.typing => "typing…".to_owned(),
        (Some(e), _, _) => e.clone(),
        (None, _, Some(p)) if p.status.is_some() => p.status.clone().unwrap_or_default(),
        (None, Some(preview), _) => preview.clone(),
        _ => c.status_label(),
    };
    let label = format!(
        "{}, {}{}",
        c.name,
        c.status_label(),
        if row.unread > 0 { format!(", {} unread", row.unread) } else { String::new() }
    );
    view! {
        <li>
            <button
                class="contact"
                class:active=is_active.clone()
                type="button"
                data-jid=jid.clone()
                data-status=status_key
                aria-label=label
                aria-current=move || if is_active() { "true" } else { "false" }
                on:click=move |_| net::open_chat(Some(open_jid.clone()))
            >
                <Avatar jid=jid.clone() name=c.name.clone() status=Signal::derive(move || status_key)/>
                <span class="contact-main">
                    <span class="contact-name">{c.name.clone()}</span>
                    <span class="contact-sub" class:pending=c.pending_out>{secondary}</span>
                </span>
                {(row.unread > 0).then(|| view! { <span class="badge" aria-hidden="true">{row.unread}</span> })}
            </button>
        </li>
    }
}
