//! The whole client without I/O: the connection, the roster, the conversations and our
//! own presence, driven by transport input and user actions, answering with [`Event`]s.
//!
//! The view layer owns one [`Client`] per login. It hands transport input to
//! [`Client::receive`], user actions to the other methods, writes every [`Event::Send`]
//! to the transport, and refreshes what the other events name.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jabberwock_proto::Element;
use sha2::Sha256;

use crate::account;
use crate::actions::{self, Outcome, Reference};
use crate::address::{self, Account};
use crate::avatar::{self, Avatars};
use crate::blocking::{self, BlockList};
use crate::bookmarks::{self, Bookmarks};
use crate::chat::{parse_timestamp, Chats, Delivery, Direction};
use crate::connection::{ConnError, ConnEvent, Connection, Credential, Features, Phase};
use crate::framing::{Frame, Input};
use crate::muc::{self, Rooms};
use crate::ns;
use crate::outbox::{Outbox, Queued};
use crate::resume::{Resumable, SavedKeys, SavedPresence, SavedSm};
use crate::roster::{ContactView, Roster, Subscription};
use crate::sm::StreamManagement;
use crate::upload::{self, UploadEvent};
use crate::stanza::{
    self, CarbonKind, ChatState, Incoming, IncomingMessage, IqType, MessageType, PresenceInfo, PresenceKind, Show,
};

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Hand to the transport.
    Send(Frame),
    Phase(Phase),
    /// Online on a new session, or on the previous one resumed (XEP-0198): then nothing
    /// was lost, and our presence is what it was.
    Online {
        jid: String,
        resumed: bool,
    },
    Failed(ConnError),
    RosterChanged,
    /// A conversation changed; `incoming` when the peer wrote (for notifications).
    ChatChanged {
        with: String,
        incoming: bool,
    },
    /// Someone asks to see our presence.
    SubscriptionRequest {
        from: String,
    },
    /// Something the user should be told that is not a connection failure.
    Notice(String),
    /// The server took the new password (XEP-0077): sign in with it from now on.
    PasswordChanged {
        password: String,
    },
    /// A group chat changed; `mention` when a new message names us (to notify).
    RoomChanged {
        room: String,
        mention: bool,
    },
    /// The rooms we are in, the invitations, or the services and public rooms known.
    RoomsChanged,
    /// About the upload service or an upload under way (XEP-0363).
    Upload(UploadEvent),
}

/// Messages per archive page.
pub const HISTORY_PAGE: u32 = 50;

/// What an outstanding iq of ours was for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    FetchRoster,
    /// A XEP-0313 query for the conversation with `with`.
    History {
        with: String,
        query_id: String,
    },
    SaveItem {
        jid: String,
    },
    RemoveItem {
        jid: String,
    },
    FetchBlockList,
    /// The vCard of `jid`, for its picture.
    VCard {
        jid: String,
    },
    /// A contact's XEP-0084 data item, of this type.
    AvatarData {
        jid: String,
        mime: String,
    },
    /// Our vCard, to store it again with this picture.
    VCardForPhoto {
        mime: String,
        bytes: Vec<u8>,
    },
    /// Our vCard stored with this picture.
    SetPhoto {
        mime: String,
        bytes: Vec<u8>,
    },
    ChangePassword {
        password: String,
    },
    /// A XEP-0191 block (`block`) or unblock of `jid`.
    Block {
        jid: String,
        block: bool,
    },
}

pub struct Client {
    conn: Connection,
    pub roster: Roster,
    pub chats: Chats,
    pub blocked: BlockList,
    pub avatars: Avatars,
    pub rooms: Rooms,
    pub bookmarks: Bookmarks,
    own: PresenceInfo,
    /// Set while we show as away because the user is idle: what to go back to.
    auto_away: Option<Show>,
    id_prefix: String,
    next_id: u64,
    /// Keys the archive query ids (the random nonce the client was made with), which
    /// must not be guessable from the stanza ids our contacts see: whoever knows a query
    /// id can slip "history" into its results.
    query_key: Vec<u8>,
    pending: Vec<(String, Pending)>,
    /// What we last told the server with XEP-0352 (a new stream starts active; a resumed
    /// one is as we left it, which may not be known after a reload).
    csi_active: Option<bool>,
    /// Messages written while the connection was down, sent once it is back.
    outbox: Outbox,
    /// What message actions keep between messages.
    pub(crate) actions: actions::State,
    pub(crate) upload: upload::State,
}

impl Client {
    /// `nonce`: fresh random printable text (no `,`); it seeds SCRAM and stanza ids.
    pub fn new(account: Account, password: &str, resource: Option<String>, nonce: String) -> Self {
        Self::with_connection(
            Connection::new(account, Credential::Password(password.to_owned()), resource, nonce.clone()),
            &nonce,
        )
    }

    /// A client that creates the account (XEP-0077) with `password`, then signs in to it.
    pub fn register(account: Account, password: &str, resource: Option<String>, nonce: String) -> Self {
        let conn = Connection::new(account, Credential::Password(password.to_owned()), resource, nonce.clone()).registering();
        Self::with_connection(conn, &nonce)
    }

    fn with_connection(conn: Connection, nonce: &str) -> Self {
        let query_key = nonce.as_bytes().to_vec();
        let id_prefix = keyed_id(&query_key, 0)[..6].to_owned();
        Client {
            conn,
            roster: Roster::default(),
            chats: Chats::new(),
            blocked: BlockList::default(),
            avatars: Avatars::default(),
            rooms: Rooms::new(id_prefix.clone(), [query_key.as_slice(), b"muc"].concat()),
            bookmarks: Bookmarks::new(id_prefix.clone()),
            own: PresenceInfo::default(),
            auto_away: None,
            id_prefix,
            next_id: 0,
            query_key,
            pending: Vec::new(),
            csi_active: Some(true),
            outbox: Outbox::default(),
            actions: actions::State::default(),
            upload: upload::State::default(),
        }
    }

    /// A client that resumes the session a page saved before it went away
    /// ([`Client::resumable`]), signing in with the saved FAST token or keys. `None` when
    /// the saved state does not hold together.
    pub fn from_resumable(saved: &Resumable, nonce: String) -> Option<Client> {
        let account = Account::parse(address::bare(&saved.jid)).ok()?;
        let resource = address::resource(&saved.jid).map(str::to_owned);
        // Either only resumes: if the session is gone, the user signs in again.
        let credential = match (&saved.token, &saved.keys) {
            (Some(token), _) => Credential::Token(token.clone()),
            (None, Some(keys)) => Credential::Keys(keys.to_keys()?),
            (None, None) => return None,
        };
        let sm = StreamManagement::restore(
            saved.sm.id.clone(),
            saved.sm.max_secs,
            saved.sm.inbound,
            saved.sm.acked,
            saved.sm.unacked_elements()?,
        );
        // Kept keys only resume (`ConnError::SessionExpired` when the session is gone); a FAST token, which the
        // server issued to this device for signing in, starts a new session when the old
        // one is gone (a server restart), so a reload never asks for the password.
        let mut conn = Connection::new(account, credential, resource, nonce.clone()).resuming(Some((sm, saved.jid.clone())));
        if let Some(device) = &saved.device {
            conn = conn.with_device(device.clone());
        }
        let mut c = Client::with_connection(conn, &nonce);
        c.own = PresenceInfo { show: Show::from_key(&saved.show).unwrap_or_default(), status: saved.status.clone(), priority: 0 };
        for p in &saved.presence {
            let info = PresenceInfo {
                show: Show::from_key(&p.show).unwrap_or_default(),
                status: p.status.clone(),
                priority: p.priority,
            };
            c.roster.presence_available(address::bare(&p.jid), address::resource(&p.jid).unwrap_or(""), info);
        }
        for (jid, message) in &saved.requests {
            c.roster.add_request(jid, message.clone());
        }
        c.rooms.restore(&saved.rooms);
        c.auto_away = saved.idle_from.as_deref().and_then(Show::from_key);
        c.csi_active = None;
        Some(c)
    }

    /// What a page keeps to resume this session after a reload, `None` when the server
    /// does not allow resumption. `endpoint` is the view layer's note of where it ran.
    pub fn resumable(&self, endpoint: &str, now_ms: i64) -> Option<Resumable> {
        let sm = self.conn.stream_management()?;
        let (id, jid) = (sm.id()?, self.conn.jid()?);
        // A FAST token signs the next stream in; the SCRAM keys are kept only for servers
        // that issue none.
        let token = self.conn.token().cloned();
        let keys = if token.is_some() { None } else { self.conn.keys().map(SavedKeys::from) };
        if keys.is_none() && token.is_none() {
            return None;
        }
        Some(Resumable {
            jid: jid.to_owned(),
            endpoint: endpoint.to_owned(),
            saved_at_ms: now_ms,
            sm: SavedSm {
                id: id.to_owned(),
                max_secs: sm.max_secs().unwrap_or(60),
                inbound: sm.inbound(),
                acked: sm.acked(),
                unacked: sm.unacked().map(Element::to_xml_string).collect(),
            },
            keys,
            token,
            device: Some(self.conn.device().to_owned()),
            show: self.own.show.key().to_owned(),
            status: self.own.status.clone(),
            idle_from: self.auto_away.map(|s| s.key().to_owned()),
            presence: self
                .roster
                .all_presence()
                .map(|(bare, res, p)| SavedPresence {
                    jid: if res.is_empty() { bare.to_owned() } else { format!("{bare}/{res}") },
                    show: p.show.key().to_owned(),
                    status: p.status.clone(),
                    priority: p.priority,
                })
                .collect(),
            requests: self.roster.requests().map(|(j, m)| (j.to_owned(), m.map(str::to_owned))).collect(),
            rooms: self.rooms.in_rooms(),
        })
    }

    /// A fresh connection for a new attempt (after a network loss), keeping the roster,
    /// the conversations and our presence; it resumes the dropped session if the server
    /// kept it. Signs in with `password`, else with the FAST token the server issued
    /// (which can also start a new session), else with the keys of the last sign-in
    /// (which can only resume). Returns false when there is nothing to sign in with.
    pub fn restart(&mut self, password: Option<&str>, nonce: String) -> bool {
        let credential = match (password, self.conn.token(), self.conn.keys()) {
            (Some(p), _, _) => Credential::Password(p.to_owned()),
            (None, Some(t), _) => Credential::Token(t.clone()),
            (None, None, Some(k)) => Credential::Keys(k.clone()),
            (None, None, None) => return false,
        };
        let account = self.conn.account().clone();
        let resource = self.conn.resource().map(str::to_owned);
        let resume = self.conn.take_resumable();
        let device = self.conn.device().to_owned();
        let mut conn = Connection::new(account, credential, resource, nonce).resuming(resume).with_device(device);
        // An account not yet created (the first endpoint could not be reached) still is.
        if self.conn.registers() {
            conn = conn.registering();
        }
        self.conn = conn;
        true
    }

    pub fn phase(&self) -> Phase {
        self.conn.phase()
    }

    pub fn jid(&self) -> Option<&str> {
        self.conn.jid()
    }

    pub fn account(&self) -> &Account {
        self.conn.account()
    }

    pub fn features(&self) -> &Features {
        self.conn.features()
    }

    pub fn own_presence(&self) -> &PresenceInfo {
        &self.own
    }

    pub(crate) fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.id_prefix, self.next_id)
    }

    /// A XEP-0313 query id that no id seen on the wire tells.
    fn query_id(&mut self) -> String {
        self.next_id += 1;
        keyed_id(&self.query_key, self.next_id)
    }

    pub(crate) fn is_online(&self) -> bool {
        self.conn.is_online()
    }

    pub(crate) fn send(&mut self, el: Element, out: &mut Vec<Event>) {
        for e in self.conn.send(el) {
            if let ConnEvent::Send(f) = e {
                out.push(Event::Send(f));
            }
        }
    }

    fn lift(&mut self, events: Vec<ConnEvent>, out: &mut Vec<Event>, now_ms: i64) {
        for e in events {
            match e {
                ConnEvent::Send(f) => out.push(Event::Send(f)),
                ConnEvent::Phase(p) => {
                    // What we knew of others is stale, unless the session may be resumed:
                    // the server then keeps what changes meanwhile for us.
                    if p == Phase::Closed && self.conn.stream_management().is_none() {
                        self.roster.clear_presence();
                        out.push(Event::RosterChanged);
                    }
                    out.push(Event::Phase(p));
                }
                ConnEvent::Failed(e) => out.push(Event::Failed(e)),
                ConnEvent::Online { jid, resumed } => {
                    out.push(Event::Online { jid, resumed });
                    if resumed {
                        self.on_resumed(out);
                    } else {
                        self.on_online(out);
                    }
                }
                ConnEvent::Stanza(el) => self.on_stanza(el, out, now_ms),
            }
        }
    }

    /// The transport is connected.
    pub fn start(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let ev = self.conn.start();
        self.lift(ev, &mut out, 0);
        out
    }

    pub fn receive(&mut self, input: Input, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        let ev = self.conn.receive(input);
        self.lift(ev, &mut out, now_ms);
        out
    }

    pub fn transport_closed(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let ev = self.conn.transport_closed();
        self.lift(ev, &mut out, 0);
        out
    }

    /// Signs out: unavailable presence, then the stream close.
    pub fn disconnect(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if self.conn.is_online() {
            self.send(stanza::unavailable(), &mut out);
        }
        let ev = self.conn.close();
        self.lift(ev, &mut out, 0);
        out
    }

    fn on_online(&mut self, out: &mut Vec<Event>) {
        // A new session: what was under way, and what we knew of others, went with the old.
        self.pending.clear();
        self.chats.reset_loading();
        self.csi_active = Some(true);
        self.roster.clear_presence();
        out.push(Event::RosterChanged);
        // RFC 6121 §2.2: the roster first, then initial presence (which makes the server
        // probe our contacts and deliver offline messages).
        let id = self.id();
        self.pending.push((id.clone(), Pending::FetchRoster));
        self.send(stanza::roster_get(&id), out);
        // XEP-0280: copies of what our other devices send and receive. A server without
        // carbons answers with an error, which is ignored like any unexpected result.
        let id = self.id();
        self.send(stanza::enable_carbons(&id), out);
        let own = self.own.clone();
        self.send(stanza::presence(&own), out);
        self.blocked.clear();
        self.fetch_block_list(out);
        self.avatars.reset_fetching();
        let me = self.account().bare();
        self.fetch_vcard(&me, out);
        let rejoin = self.rooms.rejoin_all(&own);
        self.apply(rejoin, out);
        let load = self.bookmarks.start(&self.account().bare());
        self.apply_bookmarks(load, out);
        self.discover_upload(out);
        self.flush_outbox(out);
    }

    /// A XEP-0084 notification from `from`: the picture it names is fetched, unless we have
    /// it or are fetching it already.
    fn on_avatar_metadata(&mut self, from: &str, named: Option<(String, String)>, out: &mut Vec<Event>) {
        let what = named.as_ref().map_or(avatar::Announced::None, |(item, _)| avatar::Announced::Photo(item.clone()));
        if let (Some(bare), Some((item, mime))) = (self.avatars.on_announced(from, what), named) {
            let id = self.id();
            self.send(avatar::data_request(&id, &bare, &item), out);
            self.pending.push((id, Pending::AvatarData { jid: bare, mime }));
        }
        out.push(Event::RosterChanged);
    }

    /// Asks for the vCard of `bare` (ours: to no one), for its picture.
    fn fetch_vcard(&mut self, bare: &str, out: &mut Vec<Event>) {
        self.avatars.want(bare);
        let id = self.id();
        let to = (bare != self.account().bare()).then_some(bare);
        self.send(avatar::vcard_request(&id, to), out);
        self.pending.push((id, Pending::VCard { jid: bare.to_owned() }));
    }

    fn fetch_block_list(&mut self, out: &mut Vec<Event>) {
        let id = self.id();
        self.pending.push((id.clone(), Pending::FetchBlockList));
        self.send(blocking::request(&id), out);
    }

    /// Carries out what the bookmarks decided: joining the autojoin rooms we are not in.
    fn apply_bookmarks(&mut self, effects: Vec<bookmarks::Effect>, out: &mut Vec<Event>) {
        for e in effects {
            match e {
                bookmarks::Effect::Send(el) => self.send(el, out),
                bookmarks::Effect::Changed => out.push(Event::RoomsChanged),
                bookmarks::Effect::Notice(n) => out.push(Event::Notice(n)),
                bookmarks::Effect::Join(list) => {
                    let default_nick = self.account().local.clone();
                    for b in list {
                        if self.rooms.get(&b.jid).is_some() {
                            continue;
                        }
                        let nick = b.nick.as_deref().unwrap_or(&default_nick);
                        match self.rooms.join(&b.jid, nick, b.password.as_deref(), &self.own) {
                            Ok(effects) => self.apply(effects, out),
                            Err(e) => out.push(Event::Notice(format!("Could not join {}: {e}", b.jid))),
                        }
                    }
                }
            }
        }
    }

    /// Carries out what the group chats decided.
    fn apply(&mut self, effects: Vec<muc::Effect>, out: &mut Vec<Event>) {
        for e in effects {
            match e {
                muc::Effect::Send(el) => self.send(el, out),
                muc::Effect::Changed { room, mention } => out.push(Event::RoomChanged { room, mention }),
                muc::Effect::ListChanged => out.push(Event::RoomsChanged),
                muc::Effect::Notice(n) => out.push(Event::Notice(n)),
            }
        }
    }

    /// The previous session goes on: its answers still arrive, and only a page that was
    /// reloaded needs the roster again (the server sent the presence and the pushes).
    fn on_resumed(&mut self, out: &mut Vec<Event>) {
        if !self.roster.is_loaded() {
            let id = self.id();
            self.pending.push((id.clone(), Pending::FetchRoster));
            self.send(stanza::roster_get(&id), out);
            self.discover_upload(out);
        }
        if !self.blocked.is_loaded() {
            self.fetch_block_list(out);
        }
        // A reloaded page knows nobody in its rooms yet, nor its bookmarks.
        let own = self.own.clone();
        let rejoin = self.rooms.rejoin_restored(&own);
        self.apply(rejoin, out);
        if !self.bookmarks.loaded {
            let load = self.bookmarks.start(&self.account().bare());
            self.apply_bookmarks(load, out);
        }
        out.push(Event::RosterChanged);
        self.flush_outbox(out);
    }

    fn take_pending(&mut self, id: &str) -> Option<Pending> {
        let at = self.pending.iter().position(|(i, _)| i == id)?;
        Some(self.pending.remove(at).1)
    }

    fn on_stanza(&mut self, el: Element, out: &mut Vec<Event>, now_ms: i64) {
        if let Some(effects) = self.rooms.receive(&el, &self.own, now_ms) {
            return self.apply(effects, out);
        }
        if let Some(effects) = self.bookmarks.receive(&el, &self.account().bare()) {
            return self.apply_bookmarks(effects, out);
        }
        if let Some((from, named)) = avatar::metadata_event(&el) {
            return self.on_avatar_metadata(&from, named, out);
        }
        // XEP-0153: an available presence may announce its sender's picture.
        if let (true, None, Some(from), Some(what)) = (el.is("presence", ns::CLIENT), el.attr("type"), el.attr("from"), avatar::announced(&el)) {
            if let Some(bare) = self.avatars.on_announced(from, what) {
                self.fetch_vcard(&bare, out);
            }
        }
        match Incoming::classify(el) {
            Incoming::Message(m) => self.on_message(m, false, out, now_ms),
            Incoming::Carbon { from, kind, message } => {
                // XEP-0280 §11: a copy is only believed from our own bare JID; anyone else
                // could forge messages "from" our contacts or "by" us.
                if from != self.account().bare() {
                    return;
                }
                match kind {
                    CarbonKind::Received => self.on_message(message, true, out, now_ms),
                    CarbonKind::Sent => self.on_sent_elsewhere(message, out, now_ms),
                }
            }
            Incoming::Presence { from, kind } => self.on_presence(&from, kind, out),
            Incoming::RosterPush { id, from, items } => {
                // RFC 6121 §2.1.6: only pushes from our own account count.
                if from.as_deref().is_some_and(|f| address::bare(f) != self.account().bare()) {
                    let err = stanza::iq_error(&id, from.as_deref(), "forbidden", "auth");
                    return self.send(err, out);
                }
                for item in items {
                    self.roster.apply_push(item);
                }
                self.send(stanza::iq_result(&id, None), out);
                out.push(Event::RosterChanged);
            }
            Incoming::IqResult { id, payload, .. } => match self.take_pending(&id) {
                Some(Pending::FetchRoster) => {
                    if let Some(q) = payload.filter(|q| q.is("query", ns::ROSTER)) {
                        let items = q
                            .children()
                            .filter(|c| c.is("item", ns::ROSTER))
                            .filter_map(crate::roster::RosterItem::from_element)
                            .collect();
                        self.roster.set_all(items);
                    } else {
                        // An empty result means "unchanged" with versioning; we sent none.
                        self.roster.set_all(Vec::new());
                    }
                    out.push(Event::RosterChanged);
                }
                Some(Pending::History { with, .. }) => {
                    let fin = payload.filter(|f| f.is("fin", ns::MAM));
                    let first = fin.as_ref().and_then(|f| f.child("set", ns::RSM)).and_then(|s| s.child_text("first", ns::RSM));
                    let h = self.chats.history_mut(&with);
                    h.loading = false;
                    h.complete = fin.as_ref().is_none_or(|f| f.attr("complete") == Some("true")) || first.is_none();
                    if first.is_some() {
                        h.oldest = first;
                    }
                    out.push(Event::ChatChanged { with, incoming: false });
                }
                Some(Pending::FetchBlockList) => {
                    match payload.filter(|l| l.is("blocklist", ns::BLOCKING)) {
                        Some(list) => self.blocked.set_all(&list),
                        None => self.blocked.refused(),
                    }
                    out.push(Event::RosterChanged);
                }
                Some(Pending::VCard { jid }) => {
                    self.avatars.on_vcard(&jid, payload.as_ref().filter(|v| v.is("vCard", ns::VCARD)));
                    out.push(Event::RosterChanged);
                }
                Some(Pending::AvatarData { jid, mime }) => {
                    self.avatars.on_avatar_data(&jid, &mime, payload.as_ref());
                    out.push(Event::RosterChanged);
                }
                Some(Pending::VCardForPhoto { mime, bytes }) => self.store_photo(payload.as_ref(), mime, bytes, out),
                Some(Pending::SetPhoto { mime, bytes }) => {
                    let me = self.account().bare();
                    self.avatars.set_own(&me, &mime, &bytes);
                    // XEP-0153 §3.2: presence again, which the server stamps with the new
                    // picture's hash, so contacts fetch it.
                    let own = self.own.clone();
                    self.send(stanza::presence(&own), out);
                    out.push(Event::RosterChanged);
                }
                Some(Pending::ChangePassword { password }) => {
                    out.push(Event::Notice("Your password was changed".into()));
                    out.push(Event::PasswordChanged { password });
                }
                Some(Pending::SaveItem { .. } | Pending::RemoveItem { .. } | Pending::Block { .. }) => {}
                None => self.upload_answer(&id, Ok(payload), out),
            },
            Incoming::IqError { id, error, .. } => match self.take_pending(&id) {
                Some(Pending::FetchRoster) => {
                    self.roster.set_all(Vec::new());
                    out.push(Event::RosterChanged);
                    out.push(Event::Notice(format!("Could not load your contacts: {}", error.describe())));
                }
                Some(Pending::SaveItem { jid }) => out.push(Event::Notice(format!("Could not add {jid}: {}", error.describe()))),
                Some(Pending::RemoveItem { jid }) => {
                    out.push(Event::Notice(format!("Could not remove {jid}: {}", error.describe())))
                }
                Some(Pending::FetchBlockList) => {
                    self.blocked.refused();
                    out.push(Event::RosterChanged);
                }
                Some(Pending::ChangePassword { .. }) => {
                    out.push(Event::Notice(format!("The password was not changed: {}", error.describe())))
                }
                Some(Pending::VCard { jid } | Pending::AvatarData { jid, .. }) => {
                    self.avatars.on_vcard(&jid, None);
                    out.push(Event::RosterChanged);
                }
                // No vCard yet (XEP-0054 §3.1 allows item-not-found): one with only the picture.
                Some(Pending::VCardForPhoto { mime, bytes }) => self.store_photo(None, mime, bytes, out),
                Some(Pending::SetPhoto { .. }) => {
                    out.push(Event::Notice(format!("Your picture was not changed: {}", error.describe())))
                }
                Some(Pending::Block { jid, block }) => {
                    let what = if block { "block" } else { "unblock" };
                    out.push(Event::Notice(format!("Could not {what} {jid}: {}", error.describe())))
                }
                Some(Pending::History { with, .. }) => {
                    // No archive here (or not for us): nothing more to load.
                    let h = self.chats.history_mut(&with);
                    h.loading = false;
                    h.complete = true;
                    out.push(Event::ChatChanged { with, incoming: false });
                }
                None => self.upload_answer(&id, Err(error), out),
            },
            Incoming::IqRequest { id, from, kind, payload } => {
                // XEP-0191 pushes come from our own account, like roster pushes.
                let ours = from.as_deref().is_none_or(|f| f == self.account().bare());
                let reply = match (&kind, &payload) {
                    (IqType::Set, Some(p)) if ours && self.blocked.apply_push(p) => {
                        out.push(Event::RosterChanged);
                        stanza::iq_result(&id, from.as_deref())
                    }
                    (IqType::Get, Some(p)) if p.is("ping", ns::PING) => stanza::iq_result(&id, from.as_deref()),
                    (IqType::Get, Some(p)) if p.is("query", ns::DISCO_INFO) => {
                        stanza::iq_result(&id, from.as_deref()).with_child(crate::caps::disco_info(p.attr("node")))
                    }
                    _ => stanza::iq_error(&id, from.as_deref(), "service-unavailable", "cancel"),
                };
                self.send(reply, out);
            }
            Incoming::ArchivedMessage(m) => {
                // XEP-0313 §4.2: our archive answers from our bare JID (or from no one, our
                // server); as with carbons, a result from anyone else is a forgery.
                if m.archive.as_deref().is_some_and(|a| a != self.account().bare()) {
                    return;
                }
                let Some(with) = self.pending.iter().find_map(|(_, p)| match p {
                    Pending::History { with, query_id } if *query_id == m.query_id => Some(with.clone()),
                    _ => None,
                }) else {
                    return;
                };
                let (direction, peer) = if address::bare(&m.from) == self.account().bare() {
                    (Direction::Out, address::bare(&m.to))
                } else {
                    (Direction::In, address::bare(&m.from))
                };
                if peer != with {
                    return;
                }
                let ts = m.stamp.as_deref().and_then(parse_timestamp).unwrap_or(0);
                if m.extras.is_reference() {
                    // Its message may be on an older page, not loaded yet.
                    let sender = if direction == Direction::Out { self.account().bare().to_owned() } else { peer.to_owned() };
                    let r = Reference { direction, sender, body: m.body, extras: m.extras, at_ms: ts };
                    if r.apply(&mut self.chats, &with) == Outcome::Unmatched {
                        self.actions.orphans.keep(&with, r);
                    }
                    return;
                }
                let Some(body) = m.body.filter(|b| !b.trim().is_empty()) else { return };
                let (body, fresh) = actions::prepare(body, &m.extras);
                self.chats.archived(&with, direction, m.id.clone(), body, ts);
                if let Some(id) = m.id {
                    self.annotate(&with, direction, &id, &fresh);
                    self.actions.orphans.adopt(&mut self.chats, &with, &id);
                }
            }
            Incoming::Other(_) => {}
        }
    }

    /// A message from someone else: delivered to us directly, or (`carbon`) a copy of one
    /// another of our devices received.
    fn on_message(&mut self, m: IncomingMessage, carbon: bool, out: &mut Vec<Event>, now_ms: i64) {
        // A private message from a room occupant is a conversation with that occupant.
        let from = self.rooms.conversation_of(&m.from);
        match m.kind {
            MessageType::Error => {
                if carbon {
                    return;
                }
                let (Some(id), Some(error)) = (&m.id, &m.error) else { return };
                if self.chats.failed(&from, id, error.describe()) {
                    out.push(Event::ChatChanged { with: from, incoming: false });
                }
            }
            MessageType::Chat | MessageType::Normal => {
                if from.is_empty() || from == self.account().bare() {
                    // Our own, not as a carbon: nothing to show.
                    return;
                }
                let typing_changed = m.chat_state.is_some_and(|st| self.chats.peer_state(&from, st));
                let body = m.body.filter(|b| !b.trim().is_empty());
                // XEP-0184 §5: confirm receipt, from the device it was delivered to (not
                // for copies), and only to those allowed to see our presence (§8), since a
                // receipt tells that we are online.
                if body.is_some() && m.receipt_request && !carbon {
                    let allowed = self.roster.get(&from).is_some_and(|i| i.subscription.they_see_us());
                    if let (true, Some(for_id)) = (allowed, m.id.as_deref()) {
                        let id = self.id();
                        self.send(stanza::receipt(&id, &m.from, for_id, m.kind == MessageType::Chat), out);
                    }
                }
                let ts = m.delay.as_deref().and_then(parse_timestamp).unwrap_or(now_ms);
                // A receipt, marker, correction, retraction or reaction changes the message
                // it refers to. One for a message we do not have is dropped, except a
                // correction (XEP-0308), shown as a message of its own.
                if m.extras.is_reference() {
                    let correction = m.extras.replaces.is_some();
                    let r = Reference { direction: Direction::In, sender: from.clone(), body: body.clone(), extras: m.extras.clone(), at_ms: ts };
                    if r.apply(&mut self.chats, &from) == Outcome::Applied {
                        out.push(Event::ChatChanged { with: from, incoming: false });
                        return;
                    }
                    if !correction {
                        if typing_changed {
                            out.push(Event::ChatChanged { with: from, incoming: false });
                        }
                        return;
                    }
                }
                let Some(body) = body else {
                    if typing_changed {
                        out.push(Event::ChatChanged { with: from, incoming: false });
                    }
                    return;
                };
                let (body, fresh) = actions::prepare(body, &m.extras);
                let id = m.id.unwrap_or_else(|| self.id());
                let unread = self.chats.incoming(&from, id.clone(), body, ts);
                self.annotate(&from, Direction::In, &id, &fresh);
                if unread || self.chats.is_reading(&from) {
                    out.push(Event::ChatChanged { with: from, incoming: true });
                }
            }
            MessageType::Groupchat | MessageType::Headline => {}
        }
    }

    /// XEP-0280: a message another of our devices sent, shown as ours.
    fn on_sent_elsewhere(&mut self, m: IncomingMessage, out: &mut Vec<Event>, now_ms: i64) {
        if !matches!(m.kind, MessageType::Chat | MessageType::Normal) {
            return;
        }
        let to = address::bare(&m.to).to_owned();
        if to.is_empty() || to == self.account().bare() {
            return;
        }
        let ts = m.delay.as_deref().and_then(parse_timestamp).unwrap_or(now_ms);
        let body = m.body.filter(|b| !b.trim().is_empty());
        if m.extras.is_reference() {
            let correction = m.extras.replaces.is_some();
            let sender = self.account().bare().to_owned();
            let r = Reference { direction: Direction::Out, sender, body: body.clone(), extras: m.extras.clone(), at_ms: ts };
            if r.apply(&mut self.chats, &to) == Outcome::Applied {
                out.push(Event::ChatChanged { with: to, incoming: false });
                return;
            }
            if !correction {
                return;
            }
        }
        let Some(body) = body else { return };
        let (body, fresh) = actions::prepare(body, &m.extras);
        let id = m.id.unwrap_or_else(|| self.id());
        let new = self.chats.sent_elsewhere(&to, id.clone(), body, ts);
        self.annotate(&to, Direction::Out, &id, &fresh);
        if new {
            out.push(Event::ChatChanged { with: to, incoming: false });
        }
    }

    fn on_presence(&mut self, from: &str, kind: PresenceKind, out: &mut Vec<Event>) {
        let bare = address::bare(from).to_owned();
        if bare == self.account().bare() {
            // Our other devices; shown later.
            return;
        }
        match kind {
            PresenceKind::Available(info) => {
                self.roster.presence_available(&bare, address::resource(from).unwrap_or(""), info);
                out.push(Event::RosterChanged);
            }
            PresenceKind::Unavailable { .. } => {
                self.roster.presence_unavailable(&bare, address::resource(from));
                out.push(Event::RosterChanged);
            }
            PresenceKind::Subscribe { status } => {
                // A contact we asked (or already see) asking back: approve, since adding
                // someone means sharing presence both ways.
                let asked = self.roster.get(&bare).is_some_and(|i| i.ask || i.subscription.sees_them());
                let approved = self.roster.get(&bare).is_some_and(|i| i.subscription.they_see_us());
                if asked || approved {
                    self.send(stanza::subscription("subscribed", &bare), out);
                } else {
                    self.roster.add_request(&bare, status);
                    out.push(Event::SubscriptionRequest { from: bare });
                    out.push(Event::RosterChanged);
                }
            }
            PresenceKind::Unsubscribed => {
                // A refusal of our pending request (the server also pushes the roster).
                if self.roster.get(&bare).is_some_and(|i| i.ask) {
                    out.push(Event::Notice(format!("{bare} declined to share their presence")));
                }
                self.roster.presence_unavailable(&bare, None);
                out.push(Event::RosterChanged);
            }
            PresenceKind::Unsubscribe => {
                self.roster.take_request(&bare);
                out.push(Event::RosterChanged);
            }
            PresenceKind::Subscribed | PresenceKind::Probe => {}
            PresenceKind::Error(e) => {
                self.roster.presence_error(&bare, e.describe());
                out.push(Event::RosterChanged);
            }
        }
    }

    // ---- user actions ----

    /// Sets our presence (and remembers it for the next connection).
    pub fn set_presence(&mut self, show: Show, status: Option<String>) -> Vec<Event> {
        // A choice of the user's ends an automatic away.
        self.auto_away = None;
        self.own.status = status.filter(|s| !s.trim().is_empty());
        self.change_show(show)
    }

    fn change_show(&mut self, show: Show) -> Vec<Event> {
        self.own.show = show;
        let mut out = Vec::new();
        let own = self.own.clone();
        self.send(stanza::presence(&own), &mut out);
        let to_rooms = self.rooms.broadcast_presence(&own);
        self.apply(to_rooms, &mut out);
        out
    }

    /// We show as away because the user is idle ([`Client::set_idle`]).
    pub fn is_idle(&self) -> bool {
        self.auto_away.is_some()
    }

    /// The user went idle (`true`) or came back. Idle while online or free to chat, we
    /// show as away; back, as we were. Away, not available or do not disturb are the
    /// user's choice and stay; so does anything chosen while idle.
    pub fn set_idle(&mut self, idle: bool) -> Vec<Event> {
        match (idle, self.auto_away) {
            (true, None) if matches!(self.own.show, Show::Online | Show::Chat) => {
                self.auto_away = Some(self.own.show);
                self.change_show(Show::Away)
            }
            (false, Some(before)) => {
                self.auto_away = None;
                self.change_show(before)
            }
            _ => Vec::new(),
        }
    }

    /// Adds a contact and asks to see their presence; with pre-approval, they will see
    /// ours as soon as they ask.
    pub fn add_contact(&mut self, jid: &str, name: Option<&str>) -> Result<Vec<Event>, address::AddressError> {
        let jid = address::parse_bare(jid)?;
        let mut out = Vec::new();
        if jid == self.account().bare() {
            out.push(Event::Notice("That is your own address".into()));
            return Ok(out);
        }
        let groups = self.roster.get(&jid).map(|i| i.groups.clone()).unwrap_or_default();
        let id = self.id();
        self.pending.push((id.clone(), Pending::SaveItem { jid: jid.clone() }));
        self.send(stanza::roster_set(&id, &jid, name.map(str::trim), &groups), &mut out);
        self.send(stanza::subscription("subscribe", &jid), &mut out);
        if self.features().pre_approval && !self.roster.get(&jid).is_some_and(|i| i.subscription.they_see_us()) {
            self.send(stanza::subscription("subscribed", &jid), &mut out);
        }
        Ok(out)
    }

    /// Accepts a subscription request, and asks for theirs in return.
    pub fn accept(&mut self, jid: &str) -> Vec<Event> {
        let mut out = Vec::new();
        self.roster.take_request(jid);
        self.send(stanza::subscription("subscribed", jid), &mut out);
        let item = self.roster.get(jid);
        if !item.is_some_and(|i| i.ask || i.subscription.sees_them()) {
            self.send(stanza::subscription("subscribe", jid), &mut out);
        }
        out.push(Event::RosterChanged);
        out
    }

    pub fn deny(&mut self, jid: &str) -> Vec<Event> {
        let mut out = Vec::new();
        self.roster.take_request(jid);
        self.send(stanza::subscription("unsubscribed", jid), &mut out);
        out.push(Event::RosterChanged);
        out
    }

    /// Renames a contact, keeping its groups.
    pub fn rename(&mut self, jid: &str, name: &str) -> Vec<Event> {
        let groups = self.roster.get(jid).map(|i| i.groups.clone()).unwrap_or_default();
        self.update_contact(jid, name, &groups)
    }

    /// Sets a contact's name and groups (RFC 6121 §2.4); an empty name clears it.
    pub fn update_contact(&mut self, jid: &str, name: &str, groups: &[String]) -> Vec<Event> {
        let mut out = Vec::new();
        let mut groups: Vec<String> = groups.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        groups.sort();
        groups.dedup();
        let id = self.id();
        self.pending.push((id.clone(), Pending::SaveItem { jid: jid.to_owned() }));
        self.send(stanza::roster_set(&id, jid, Some(name.trim()), &groups), &mut out);
        out
    }

    pub fn remove_contact(&mut self, jid: &str) -> Vec<Event> {
        let mut out = Vec::new();
        let id = self.id();
        self.pending.push((id.clone(), Pending::RemoveItem { jid: jid.to_owned() }));
        self.send(stanza::roster_remove(&id, jid), &mut out);
        out
    }

    /// Sends a chat message, or queues it while the connection is down; nothing when the
    /// text is blank, a notice when the outbox is full.
    pub fn send_message(&mut self, to: &str, body: &str, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        if body.trim().is_empty() {
            return out;
        }
        let id = self.id();
        let Some(delivery) = self.send_or_queue(to, Some(&id), stanza::chat_message(&id, to, body), &mut out) else { return out };
        self.chats.outgoing(to, id, body.to_owned(), now_ms, delivery);
        out.push(Event::ChatChanged { with: to.to_owned(), incoming: false });
        out
    }

    /// Sends `el` to `to`, or, while the connection is down, puts it in the outbox with
    /// the message `marked` showing a clock until it goes. `None`, with a notice, when the
    /// outbox is full: the caller then shows nothing of it.
    pub(crate) fn send_or_queue(&mut self, to: &str, marked: Option<&str>, el: Element, out: &mut Vec<Event>) -> Option<Delivery> {
        if self.conn.is_online() {
            self.send(el, out);
            Some(Delivery::Sent)
        } else if self.outbox.push(Queued { to: to.to_owned(), marked: marked.map(str::to_owned), stanza: el }) {
            Some(Delivery::Queued)
        } else {
            out.push(Event::Notice("Too many messages are waiting for the connection; send this one once it is back".into()));
            None
        }
    }

    /// Sends what was written while the connection was down, in the order it was written.
    fn flush_outbox(&mut self, out: &mut Vec<Event>) {
        for q in self.outbox.take() {
            self.send(q.stanza, out);
            if let Some(id) = &q.marked {
                self.chats.dequeued(&q.to, id);
            }
            out.push(Event::ChatChanged { with: q.to, incoming: false });
        }
    }

    /// The user is typing to `to` (or stopped: `false`). Sends XEP-0085 `composing` or
    /// `paused` when the peer uses chat states and ours changed.
    pub fn typing(&mut self, to: &str, typing: bool) -> Vec<Event> {
        let mut out = Vec::new();
        let state = if typing { ChatState::Composing } else { ChatState::Paused };
        // "paused" only ends a "composing".
        let due = typing || self.chats.our_state_is(to, ChatState::Composing);
        if due && self.conn.is_online() && self.chats.our_state(to, state) {
            self.send(stanza::chat_state(to, state), &mut out);
        }
        out
    }

    /// The conversations and rooms on screen in a shown tab (see
    /// [`crate::tabs::TabViews::reading`]): their messages are read, and read as they come.
    pub fn set_reading(&mut self, reading: std::collections::BTreeSet<String>) {
        let (rooms, chats) = reading.into_iter().partition(|j| self.rooms.get(j).is_some());
        self.chats.set_reading(chats);
        self.rooms.set_reading(rooms);
    }

    /// A group chat action (join, send, kick …: the methods of [`Rooms`]), given our
    /// presence; only while online.
    pub fn room_action(&mut self, action: impl FnOnce(&mut Rooms, &PresenceInfo) -> Vec<muc::Effect>) -> Vec<Event> {
        let mut out = Vec::new();
        if self.conn.is_online() {
            let effects = action(&mut self.rooms, &self.own);
            self.apply(effects, &mut out);
        }
        out
    }

    /// What the user writes in a room (a message, a reply, a correction, a reaction, a
    /// retraction): [`Client::room_action`], and while the connection is down a notice that
    /// it was not sent (a room's messages do not wait in the outbox: they would have to
    /// wait for the room to be joined again too).
    pub fn write_in_room(&mut self, action: impl FnOnce(&mut Rooms) -> Vec<muc::Effect>) -> Vec<Event> {
        if !self.conn.is_online() {
            return vec![Event::Notice("Not sent: a room can be written to only while connected".into())];
        }
        self.room_action(|rooms, _| action(rooms))
    }

    /// A bookmark change ([`Bookmarks::save`], [`Bookmarks::remove`]); only while online.
    pub fn bookmark_action(&mut self, action: impl FnOnce(&mut Bookmarks) -> Vec<bookmarks::Effect>) -> Vec<Event> {
        let mut out = Vec::new();
        if self.conn.is_online() {
            let effects = action(&mut self.bookmarks);
            self.apply_bookmarks(effects, &mut out);
        }
        out
    }


    /// Loads the next older page of the conversation with `with` from the server's archive
    /// (XEP-0313): the newest page the first time, then further back each call.
    pub fn load_history(&mut self, with: &str) -> Vec<Event> {
        let mut out = Vec::new();
        let h = self.chats.history(with);
        if h.loading || h.complete || !self.conn.is_online() {
            return out;
        }
        let (id, query_id) = (self.id(), self.query_id());
        let before = h.oldest.clone();
        let q = stanza::archive_query(&id, &query_id, with, before.as_deref(), HISTORY_PAGE);
        let h = self.chats.history_mut(with);
        h.loading = true;
        h.started = true;
        self.pending.push((id, Pending::History { with: with.to_owned(), query_id }));
        self.send(q, &mut out);
        out
    }

    /// XEP-0352: tells the server whether the user is looking (a visible tab), so that it
    /// can hold back unimportant traffic while not. Only when the server offers it.
    pub fn set_client_active(&mut self, active: bool) -> Vec<Event> {
        let mut out = Vec::new();
        if self.features().csi && self.csi_active != Some(active) {
            self.csi_active = Some(active);
            let name = if active { "active" } else { "inactive" };
            self.send(Element::new(name, ns::CSI), &mut out);
        }
        out
    }

    /// Blocks (`block`) or unblocks `jid` (XEP-0191). The server's push, which every
    /// resource of the account gets, changes what is shown.
    pub fn block(&mut self, jid: &str, block: bool) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.conn.is_online() {
            out.push(Event::Notice("Not connected: try again once online".into()));
            return out;
        }
        let id = self.id();
        self.pending.push((id.clone(), Pending::Block { jid: jid.to_owned(), block }));
        self.send(blocking::change(&id, jid, block), &mut out);
        out
    }

    /// Changes the account's password (XEP-0077), typed twice. The server's answer comes
    /// as a notice, and on success as [`Event::PasswordChanged`].
    pub fn change_password(&mut self, password: &str, again: &str) -> Result<Vec<Event>, account::PasswordError> {
        account::check_new_password(password, again)?;
        let mut out = Vec::new();
        if !self.conn.is_online() {
            out.push(Event::Notice("Not connected: try again once online".into()));
            return Ok(out);
        }
        let id = self.id();
        let request = account::change_password(&id, &self.account().domain, &self.account().local, password);
        self.pending.push((id, Pending::ChangePassword { password: password.to_owned() }));
        self.send(request, &mut out);
        Ok(out)
    }

    /// Sets our picture (`mime`, one of the raster types shown): our vCard is read, then
    /// stored again with it, every other field kept.
    pub fn set_avatar(&mut self, mime: &str, bytes: Vec<u8>) -> Vec<Event> {
        let mut out = Vec::new();
        if bytes.len() > avatar::MAX_PHOTO_BYTES {
            out.push(Event::Notice(format!("The picture is too large (at most {} KiB)", avatar::MAX_PHOTO_BYTES / 1024)));
            return out;
        }
        if !self.conn.is_online() {
            out.push(Event::Notice("Not connected: try again once online".into()));
            return out;
        }
        let id = self.id();
        self.send(avatar::vcard_request(&id, None), &mut out);
        self.pending.push((id, Pending::VCardForPhoto { mime: mime.to_owned(), bytes }));
        out
    }

    fn store_photo(&mut self, current: Option<&Element>, mime: String, bytes: Vec<u8>, out: &mut Vec<Event>) {
        let card = avatar::with_photo(current.filter(|v| v.is("vCard", ns::VCARD)), &mime, &bytes);
        let id = self.id();
        self.send(avatar::vcard_set(&id, card), out);
        self.pending.push((id, Pending::SetPhoto { mime, bytes }));
    }

    /// Everyone to show: the roster (sorted), then people who wrote to us without being in
    /// it.
    pub fn contacts(&self) -> Vec<ContactView> {
        let mut all = self.roster.sorted();
        for jid in self.chats.jids().filter(|j| self.roster.get(j).is_none()) {
            all.push(ContactView {
                jid: jid.to_owned(),
                name: self.rooms.occupant_label(jid).unwrap_or_else(|| address::local(jid).unwrap_or(jid).to_owned()),
                subscription: Subscription::None,
                pending_out: false,
                groups: Vec::new(),
                presence: None,
                error: None,
                in_roster: false,
                blocked: false,
            });
        }
        for c in &mut all {
            c.blocked = self.blocked.is_blocked(&c.jid);
        }
        all
    }
}

/// HMAC-SHA-256 of `n` under `key`, as 22 URL-safe characters: unpredictable without the
/// key, and distinct for each `n`.
pub(crate) fn keyed_id(key: &[u8], n: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&n.to_be_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connection::tests::{bind_result, features_bind, features_sasl, parse};
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    pub(crate) fn sent(events: &[Event]) -> Vec<Element> {
        events.iter().filter_map(|e| if let Event::Send(Frame::Element(el)) = e { Some(el.clone()) } else { None }).collect()
    }

    /// A client for user@localhost, online, with the initial roster `items` loaded.
    pub(crate) fn online(items: &str) -> Client {
        online_with(items, "")
    }

    /// [`online`], with more stream features after SASL (besides bind, ver and sub).
    fn online_with(items: &str, more_features: &str) -> Client {
        let mut c = Client::new(
            Account { local: "user".into(), domain: "localhost".into() },
            "pencil",
            Some("web".into()),
            "fyko+d2lbbFgONRv9qkxdawL".into(),
        );
        sign_in_with_scram(&mut c);
        let mut features = features_bind();
        if !more_features.is_empty() {
            for n in parse(&format!("<x xmlns='{}'>{more_features}</x>", ns::STREAM)).nodes() {
                if let jabberwock_proto::Node::Element(e) = n {
                    features.push(e.clone());
                }
            }
        }
        let ev = c.receive(Input::Element(features), 0);
        let bind_id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = c.receive(bind_result(&bind_id, "user@localhost/web"), 0);
        assert!(ev.contains(&Event::Online { jid: "user@localhost/web".into(), resumed: false }));
        let out: Vec<Element> = sent(&ev).into_iter().filter(|e| e.ns() != ns::SM).collect();
        assert!(out[0].child("query", ns::ROSTER).is_some(), "roster first");
        assert!(out[1].child("enable", ns::CARBONS).is_some(), "then carbons");
        assert!(out[2].is("presence", ns::CLIENT) && out[2].attr("type").is_none(), "then initial presence");
        let roster_id = out[0].attr("id").unwrap().to_owned();
        let ev = c.receive(
            Input::Element(parse(&format!(
                "<iq xmlns='jabber:client' type='result' id='{roster_id}'><query xmlns='jabber:iq:roster'>{items}</query></iq>"
            ))),
            0,
        );
        assert!(ev.contains(&Event::RosterChanged));
        assert!(c.roster.is_loaded());
        c
    }

    /// From `start` to the stream restarted after SCRAM-SHA-1 with the RFC 5802 example's
    /// nonce and password ("pencil"): the server's bind features come next.
    fn sign_in_with_scram(c: &mut Client) {
        c.start();
        c.receive(Input::Opened { id: None }, 0);
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])), 0);
        let sasl = |name: &str, t: &str| Input::Element(Element::new(name, ns::SASL).with_text(B64.encode(t)));
        c.receive(sasl("challenge", "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"), 0);
        c.receive(sasl("success", "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), 0);
        c.receive(Input::Opened { id: None }, 0);
    }

    pub(crate) fn stanza(c: &mut Client, xml: &str) -> Vec<Event> {
        c.receive(Input::Element(parse(xml)), 1_000)
    }

    #[test]
    fn adding_a_contact_asks_and_pre_approves() {
        let mut c = online("");
        let ev = c.add_contact(" Bob@LocalHost ", Some("Bob")).unwrap();
        let out = sent(&ev);
        assert_eq!(out.len(), 3);
        let item = out[0].child("query", ns::ROSTER).unwrap().child("item", ns::ROSTER).unwrap();
        assert_eq!((item.attr("jid"), item.attr("name")), (Some("bob@localhost"), Some("Bob")));
        assert_eq!((out[1].attr("type"), out[1].attr("to")), (Some("subscribe"), Some("bob@localhost")));
        assert_eq!(out[2].attr("type"), Some("subscribed"), "pre-approval, since the server offers it");
        assert!(c.add_contact("not a jid@", None).is_err());
        assert!(sent(&c.add_contact("user@localhost", None).unwrap()).is_empty());

        // The server pushes the item with ask; we answer the push.
        let ev = stanza(
            &mut c,
            "<iq xmlns='jabber:client' type='set' id='push1'><query xmlns='jabber:iq:roster'>\
            <item jid='bob@localhost' name='Bob' subscription='none' ask='subscribe'/></query></iq>",
        );
        assert_eq!(sent(&ev)[0].attr("type"), Some("result"));
        assert_eq!(sent(&ev)[0].attr("id"), Some("push1"));
        assert!(c.roster.view("bob@localhost").unwrap().pending_out);

        // Bob accepts and asks back: we approve automatically.
        stanza(
            &mut c,
            "<iq xmlns='jabber:client' type='set' id='push2'><query xmlns='jabber:iq:roster'>\
            <item jid='bob@localhost' subscription='to'/></query></iq>",
        );
        let ev = stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost' type='subscribe'/>");
        assert_eq!(sent(&ev)[0].attr("type"), Some("subscribed"));
        assert_eq!(c.roster.requests().count(), 0);

        stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost/phone'><show>away</show></presence>");
        assert_eq!(c.roster.view("bob@localhost").unwrap().status_key(), "away");
        stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost/phone' type='unavailable'/>");
        assert_eq!(c.roster.view("bob@localhost").unwrap().status_key(), "offline");
    }

    #[test]
    fn incoming_requests_wait_for_the_user() {
        let mut c = online("");
        let ev = stanza(
            &mut c,
            "<presence xmlns='jabber:client' from='eve@localhost' type='subscribe'><status>hi, it's Eve</status></presence>",
        );
        assert!(ev.contains(&Event::SubscriptionRequest { from: "eve@localhost".into() }));
        assert!(sent(&ev).is_empty(), "nothing is approved behind the user's back");
        assert_eq!(c.roster.requests().collect::<Vec<_>>(), [("eve@localhost", Some("hi, it's Eve"))]);

        let out = sent(&c.accept("eve@localhost"));
        assert_eq!(out.iter().map(|e| e.attr("type").unwrap()).collect::<Vec<_>>(), ["subscribed", "subscribe"]);
        assert_eq!(c.roster.requests().count(), 0);

        stanza(&mut c, "<presence xmlns='jabber:client' from='mallory@localhost' type='subscribe'/>");
        let out = sent(&c.deny("mallory@localhost"));
        assert_eq!(out[0].attr("type"), Some("unsubscribed"));
        assert_eq!(c.roster.requests().count(), 0);

        // A request withdrawn before we answered.
        stanza(&mut c, "<presence xmlns='jabber:client' from='x@localhost' type='subscribe'/>");
        stanza(&mut c, "<presence xmlns='jabber:client' from='x@localhost' type='unsubscribe'/>");
        assert_eq!(c.roster.requests().count(), 0);
    }

    #[test]
    fn a_refusal_is_reported() {
        let mut c = online("<item jid='bob@localhost' subscription='none' ask='subscribe'/>");
        let ev = stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost' type='unsubscribed'/>");
        assert!(ev.contains(&Event::Notice("bob@localhost declined to share their presence".into())));
    }

    #[test]
    fn forged_roster_pushes_are_refused() {
        let mut c = online("");
        let ev = stanza(
            &mut c,
            "<iq xmlns='jabber:client' type='set' id='evil' from='mallory@evil.example/x'>\
            <query xmlns='jabber:iq:roster'><item jid='mallory@evil.example' subscription='both'/></query></iq>",
        );
        assert_eq!(sent(&ev)[0].attr("type"), Some("error"));
        assert!(c.roster.is_empty());
        // From our own bare JID is fine.
        stanza(
            &mut c,
            "<iq xmlns='jabber:client' type='set' id='ok' from='user@localhost'>\
            <query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query></iq>",
        );
        assert_eq!(c.roster.len(), 1);
    }

    #[test]
    fn chatting() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let ev = c.send_message("bob@localhost", "hello <there>", 500);
        let out = sent(&ev);
        assert_eq!(out[0].child_text("body", ns::CLIENT).as_deref(), Some("hello <there>"));
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        assert!(sent(&c.send_message("bob@localhost", "   ", 501)).is_empty());

        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b1'><body>hi!</body></message>",
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: true }));
        assert_eq!(c.chats.unread("bob@localhost"), 1);
        c.set_reading(["bob@localhost".to_owned()].into());
        assert_eq!(c.chats.unread("bob@localhost"), 0);
        let bodies: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["hello <there>", "hi!"]);

        // Offline delivery keeps the original time.
        stanza(
            &mut c,
            "<message xmlns='jabber:client' from='carol@localhost/x' type='chat'><body>earlier</body>\
            <delay xmlns='urn:xmpp:delay' stamp='1970-01-01T00:00:00.250Z'/></message>",
        );
        assert_eq!(c.chats.messages("carol@localhost")[0].timestamp_ms, 250);
        // Strangers who write to us show up after the roster.
        let names: Vec<_> = c.contacts().into_iter().map(|c| c.jid).collect();
        assert_eq!(names, ["bob@localhost", "carol@localhost"]);

        // Chat states and empty bodies do not make messages.
        stanza(&mut c, "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert_eq!(c.chats.messages("bob@localhost").len(), 2);
    }

    #[test]
    fn corrections_show_in_place_of_what_they_correct() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let ours = sent(&c.send_message("bob@localhost", "lunch?", 500))[0].attr("id").unwrap().to_owned();
        stanza(&mut c, "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b1'><body>sure, at noom</body></message>");
        // As Converse.js sends an edit.
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b2'><body>sure, at noon</body>\
            <replace xmlns='urn:xmpp:message-correct:0' id='b1'/></message>",
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        let shown: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| (m.body.as_str(), m.edited)).collect();
        assert_eq!(shown, [("lunch?", false), ("sure, at noon", true)]);
        // Bob cannot rewrite what we said: a "correction" of our id is a message of its own.
        let forged = format!(
            "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b3'><body>I never said that</body>\
            <replace xmlns='urn:xmpp:message-correct:0' id='{ours}'/></message>"
        );
        stanza(&mut c, &forged);
        let bodies: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["lunch?", "sure, at noon", "I never said that"]);
        // Our other device corrects our message: a carbon of the edit.
        let carbon = format!(
            "<message xmlns='jabber:client' from='user@localhost' to='user@localhost/web' type='chat'>\
            <sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
            <message xmlns='jabber:client' from='user@localhost/phone' to='bob@localhost' type='chat' id='a9'>\
            <body>lunch at noon?</body><replace xmlns='urn:xmpp:message-correct:0' id='{ours}'/></message>\
            </forwarded></sent></message>"
        );
        stanza(&mut c, &carbon);
        assert_eq!(c.chats.messages("bob@localhost")[0].body, "lunch at noon?");
        assert!(c.chats.messages("bob@localhost")[0].edited);
    }

    #[test]
    fn delivery_receipts_are_asked_for_and_given() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/><item jid='eve@localhost' subscription='to'/>");
        let out = sent(&c.send_message("bob@localhost", "ping", 1));
        assert!(out[0].child("request", ns::RECEIPTS).is_some());
        let id = out[0].attr("id").unwrap().to_owned();
        assert_eq!(c.chats.messages("bob@localhost")[0].delivery, crate::chat::Delivery::Sent);

        // A receipt from someone else changes nothing; bob's marks it delivered.
        let receipt = |from: &str| {
            format!(
                "<message xmlns='jabber:client' from='{from}' id='r1'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
            )
        };
        assert!(stanza(&mut c, &receipt("eve@localhost/x")).is_empty());
        let ev = stanza(&mut c, &receipt("bob@localhost/phone"));
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        assert_eq!(c.chats.messages("bob@localhost")[0].delivery, crate::chat::Delivery::Delivered);
        assert_eq!(c.chats.messages("bob@localhost").len(), 1, "a receipt is not a message");

        // Bob asks for one: answered to the full JID it came from, with his id.
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b7'><body>pong</body>\
             <request xmlns='urn:xmpp:receipts'/></message>",
        );
        let out = sent(&ev);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("to"), Some("bob@localhost/phone"));
        assert_eq!(out[0].child("received", ns::RECEIPTS).unwrap().attr("id"), Some("b7"));
        assert!(out[0].child("body", ns::CLIENT).is_none());
        assert_eq!(out[0].attr("type"), Some("chat"), "so that bob's other devices get a copy");

        // Not to someone who may not see our presence, nor without a request.
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='eve@localhost/x' type='chat' id='e1'><body>hi</body>\
             <request xmlns='urn:xmpp:receipts'/></message>",
        );
        assert!(sent(&ev).is_empty());
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/phone' type='chat' id='b8'><body>x</body></message>",
        );
        assert!(sent(&ev).is_empty());
    }

    #[test]
    fn carbons_show_what_our_other_devices_send_and_receive() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let carbon = |outer_from: &str, kind: &str, inner: &str| {
            format!(
                "<message xmlns='jabber:client' from='{outer_from}' to='user@localhost/web' type='chat'>\
                 <{kind} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded></{kind}></message>"
            )
        };
        let mine = "<message xmlns='jabber:client' from='user@localhost/phone' to='bob@localhost' type='chat' id='p1'>\
                    <body>from my phone</body><request xmlns='urn:xmpp:receipts'/></message>";
        let theirs = "<message xmlns='jabber:client' from='bob@localhost/a' to='user@localhost/phone' type='chat' id='b1'>\
                      <body>to my phone</body><request xmlns='urn:xmpp:receipts'/></message>";

        // Forged copies (not from our own bare JID) are dropped.
        for from in ["bob@localhost", "user@localhost/phone", "mallory@evil.example", ""] {
            assert!(stanza(&mut c, &carbon(from, "sent", mine)).is_empty(), "{from}");
            assert!(stanza(&mut c, &carbon(from, "received", theirs)).is_empty(), "{from}");
        }
        assert!(c.chats.messages("bob@localhost").is_empty());

        let ev = stanza(&mut c, &carbon("user@localhost", "sent", mine));
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        assert!(sent(&ev).is_empty(), "no receipt for our own message");
        let ev = stanza(&mut c, &carbon("user@localhost", "received", theirs));
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: true }));
        assert!(sent(&ev).is_empty(), "the device it was delivered to answers the receipt request");
        let msgs: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| (m.direction, m.body.as_str())).collect();
        assert_eq!(msgs, [(Direction::Out, "from my phone"), (Direction::In, "to my phone")]);
        // The same copy again is shown once.
        stanza(&mut c, &carbon("user@localhost", "sent", mine));
        assert_eq!(c.chats.messages("bob@localhost").len(), 2);

        // Bob's receipt for the phone's message, copied to us, marks it delivered.
        let receipt = "<message xmlns='jabber:client' from='bob@localhost/a' to='user@localhost/phone'>\
                       <received xmlns='urn:xmpp:receipts' id='p1'/></message>";
        stanza(&mut c, &carbon("user@localhost", "received", receipt));
        assert_eq!(c.chats.messages("bob@localhost")[0].delivery, crate::chat::Delivery::Delivered);

        // A copy without a message inside is ignored.
        let ev =
            stanza(&mut c, "<message xmlns='jabber:client' from='user@localhost'><sent xmlns='urn:xmpp:carbons:2'/></message>");
        assert!(ev.is_empty());
    }

    #[test]
    fn history_pages_back_through_the_archive() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        stanza(&mut c, "<message xmlns='jabber:client' from='bob@localhost/a' type='chat' id='b2'><body>live</body></message>");
        let out = sent(&c.load_history("bob@localhost"));
        let (id, qid) =
            (out[0].attr("id").unwrap().to_owned(), out[0].child("query", ns::MAM).unwrap().attr("queryid").unwrap().to_owned());
        assert!(sent(&c.load_history("bob@localhost")).is_empty(), "one query at a time");
        let archived = |qid: &str, aid: &str, from: &str, to: &str, mid: &str, body: &str, stamp: &str| {
            format!(
                "<message xmlns='jabber:client' to='user@localhost/web'><result xmlns='urn:xmpp:mam:2' queryid='{qid}' id='{aid}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>\
                 <message xmlns='jabber:client' from='{from}' to='{to}' type='chat' id='{mid}'><body>{body}</body></message>\
                 </forwarded></result></message>"
            )
        };
        stanza(&mut c, &archived(&qid, "A1", "user@localhost/web", "bob@localhost", "u1", "from me", "1970-01-01T00:00:00.500Z"));
        stanza(&mut c, &archived(&qid, "A2", "bob@localhost/a", "user@localhost", "b2", "live", "1970-01-01T00:00:02Z"));
        stanza(&mut c, &archived("other", "A3", "bob@localhost/a", "user@localhost", "x", "not ours", "1970-01-01T00:00:03Z"));
        let ev = stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='result' id='{id}'><fin xmlns='urn:xmpp:mam:2' complete='false'>\
            <set xmlns='http://jabber.org/protocol/rsm'><first>A1</first><last>A2</last></set></fin></iq>"
            ),
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        let msgs: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| (m.direction, m.body.as_str())).collect();
        assert_eq!(msgs, [(Direction::Out, "from me"), (Direction::In, "live")]);
        assert_eq!(c.chats.history("bob@localhost").oldest.as_deref(), Some("A1"));

        // The next page goes back from A1 and is the last.
        let out = sent(&c.load_history("bob@localhost"));
        let set = out[0].child("query", ns::MAM).unwrap().child("set", ns::RSM).unwrap();
        assert_eq!(set.child_text("before", ns::RSM).as_deref(), Some("A1"));
        let id = out[0].attr("id").unwrap().to_owned();
        stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='result' id='{id}'><fin xmlns='urn:xmpp:mam:2' complete='true'>\
            <set xmlns='http://jabber.org/protocol/rsm'/></fin></iq>"
            ),
        );
        assert!(c.chats.history("bob@localhost").complete);
        assert!(sent(&c.load_history("bob@localhost")).is_empty(), "nothing more to load");

        // A server without an archive answers with an error: done, quietly.
        let out = sent(&c.load_history("carol@localhost"));
        let id = out[0].attr("id").unwrap().to_owned();
        let ev = stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='error' id='{id}'><error type='cancel'>\
            <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
        );
        assert!(!ev.iter().any(|e| matches!(e, Event::Notice(_))));
        assert!(c.chats.history("carol@localhost").complete);
    }

    /// The history of bob, asked for once: the iq's id and the query id.
    pub(crate) fn ask_history(c: &mut Client, with: &str) -> (String, String) {
        let out = sent(&c.load_history(with));
        (out[0].attr("id").unwrap().to_owned(), out[0].child("query", ns::MAM).unwrap().attr("queryid").unwrap().to_owned())
    }

    #[test]
    fn archive_results_count_only_from_our_own_archive() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let (id, qid) = ask_history(&mut c, "bob@localhost");
        let result = |from: &str, aid: &str, body: &str| {
            format!(
                "<message xmlns='jabber:client' {from} to='user@localhost/web'><result xmlns='urn:xmpp:mam:2' queryid='{qid}' id='{aid}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='1970-01-01T00:00:01Z'/>\
                 <message xmlns='jabber:client' from='bob@localhost/a' to='user@localhost' type='chat' id='{aid}'><body>{body}</body></message>\
                 </forwarded></result></message>"
            )
        };
        // Anyone may send us a message that looks like a result, with the right query id.
        for forger in ["bob@localhost", "bob@localhost/a", "user@localhost/phone", "localhost", "mallory@evil.example", ""] {
            stanza(&mut c, &result(&format!("from='{forger}'"), "F", "forged"));
        }
        stanza(&mut c, &result("from='user@localhost'", "A1", "from our archive"));
        stanza(&mut c, &result("", "A2", "from our server"));
        stanza(
            &mut c,
            &format!("<iq xmlns='jabber:client' type='result' id='{id}'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>"),
        );
        let bodies: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["from our archive", "from our server"]);
    }

    #[test]
    fn archive_query_ids_cannot_be_guessed_from_the_ids_contacts_see() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let message_id = sent(&c.send_message("bob@localhost", "hi", 0))[0].attr("id").unwrap().to_owned();
        let mut query_ids = Vec::new();
        for with in ["a@localhost", "b@localhost", "c@localhost"] {
            let (iq_id, qid) = ask_history(&mut c, with);
            for seen in [&message_id, &iq_id] {
                assert!(!qid.contains(seen.as_str()) && qid[..4] != seen[..4], "{qid} follows from {seen}");
            }
            assert!(qid.len() >= 22, "{qid}: at least 128 bits");
            query_ids.push(qid);
        }
        for (i, a) in query_ids.iter().enumerate() {
            for b in &query_ids[i + 1..] {
                assert!(a[..4] != b[..4], "consecutive query ids look alike: {query_ids:?}");
            }
        }
    }

    #[test]
    fn client_state_indication_follows_the_tab() {
        let mut c = online("");
        assert!(sent(&c.set_client_active(false)).is_empty(), "this server offers no CSI");
        let mut c = online_with("", "<csi xmlns='urn:xmpp:csi:0'/>");
        let out = sent(&c.set_client_active(false));
        assert!(out[0].is("inactive", ns::CSI));
        assert!(sent(&c.set_client_active(false)).is_empty(), "only changes");
        assert!(sent(&c.set_client_active(true))[0].is("active", ns::CSI));
    }

    #[test]
    fn typing_notifications() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        assert!(sent(&c.typing("bob@localhost", true)).is_empty(), "bob has not shown he uses chat states");
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/a' type='chat'>\
            <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        assert!(c.chats.is_typing("bob@localhost"));
        assert!(c.chats.messages("bob@localhost").is_empty(), "a chat state is not a message");

        let out = sent(&c.typing("bob@localhost", true));
        assert!(out[0].child("composing", ns::CHATSTATES).is_some());
        assert!(sent(&c.typing("bob@localhost", true)).is_empty(), "sent once");
        let out = sent(&c.typing("bob@localhost", false));
        assert!(out[0].child("paused", ns::CHATSTATES).is_some());
        assert!(sent(&c.typing("bob@localhost", false)).is_empty());

        stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/a' type='chat'><body>done</body>\
            <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert!(!c.chats.is_typing("bob@localhost"));
    }

    #[test]
    fn message_errors_mark_the_message() {
        let mut c = online("<item jid='bob@nowhere' subscription='both'/>");
        let out = sent(&c.send_message("bob@nowhere", "are you there?", 1));
        let id = out[0].attr("id").unwrap().to_owned();
        let ev = stanza(
            &mut c,
            &format!(
                "<message xmlns='jabber:client' from='bob@nowhere' type='error' id='{id}'><error type='cancel'>\
            <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            ),
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@nowhere".into(), incoming: false }));
        let m = &c.chats.messages("bob@nowhere")[0];
        assert_eq!(m.delivery, crate::chat::Delivery::Failed);
        assert_eq!(m.error.as_deref(), Some("their server cannot be reached"));
    }

    #[test]
    fn requests_from_the_server_are_answered() {
        let mut c = online("");
        let ev =
            stanza(&mut c, "<iq xmlns='jabber:client' type='get' id='p' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        assert_eq!(sent(&ev)[0].attr("type"), Some("result"));
        let ev = stanza(&mut c, "<iq xmlns='jabber:client' type='get' id='d' from='bob@localhost/x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
        assert!(sent(&ev)[0].child("query", ns::DISCO_INFO).is_some());
        let ev = stanza(
            &mut c,
            "<iq xmlns='jabber:client' type='get' id='v' from='bob@localhost/x'><query xmlns='jabber:iq:version'/></iq>",
        );
        assert_eq!(sent(&ev)[0].attr("type"), Some("error"));
        assert_eq!((sent(&ev)[0].attr("id"), sent(&ev)[0].attr("to")), (Some("v"), Some("bob@localhost/x")));
    }

    #[test]
    fn presence_changes_and_sign_out() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let out = sent(&c.set_presence(Show::Dnd, Some("meeting".into())));
        assert_eq!(out[0].child_text("show", ns::CLIENT).as_deref(), Some("dnd"));
        assert_eq!(out[0].child_text("status", ns::CLIENT).as_deref(), Some("meeting"));
        stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost/a'/>");
        assert_eq!(c.roster.online_count(), 1);

        let ev = c.disconnect();
        assert_eq!(sent(&ev)[0].attr("type"), Some("unavailable"));
        assert!(ev.contains(&Event::Send(Frame::Close)));
        assert!(ev.contains(&Event::Phase(Phase::Closing)));
        let ev = c.receive(Input::Closed { see_other: None }, 0);
        assert!(ev.contains(&Event::Phase(Phase::Closed)));
        assert_eq!(c.roster.online_count(), 0, "presence we knew is stale once offline");
        assert!(sent(&c.send_message("bob@localhost", "x", 0)).is_empty(), "queued, not sent");
    }

    #[test]
    fn blocking_follows_the_servers_pushes() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let ev = c.block("spam@evil", true);
        let req = &sent(&ev)[0];
        assert!(req.child("block", ns::BLOCKING).is_some());
        assert!(!c.blocked.is_blocked("spam@evil"), "shown once the server says so");
        let push = "<iq xmlns='jabber:client' type='set' id='p1'><block xmlns='urn:xmpp:blocking'><item jid='spam@evil'/></block></iq>";
        let ev = stanza(&mut c, push);
        assert!(ev.contains(&Event::RosterChanged) && sent(&ev)[0].attr("type") == Some("result"));
        assert!(c.blocked.is_blocked("spam@evil"));
        // Someone else cannot change our list.
        let forged = "<iq xmlns='jabber:client' type='set' id='p2' from='spam@evil/x'><unblock xmlns='urn:xmpp:blocking'/></iq>";
        let ev = stanza(&mut c, forged);
        assert_eq!(sent(&ev)[0].attr("type"), Some("error"));
        assert!(c.blocked.is_blocked("spam@evil"));
        // A stranger who wrote shows as blocked, with no roster entry.
        stanza(&mut c, "<message xmlns='jabber:client' from='spam@evil/x' type='chat'><body>buy</body></message>");
        let stranger = c.contacts().into_iter().find(|v| v.jid == "spam@evil").unwrap();
        assert!(stranger.blocked && !stranger.in_roster);
        // A refused request is told.
        let ev = c.block("bob@localhost", true);
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let err = format!("<iq xmlns='jabber:client' type='error' id='{id}'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
        assert!(stanza(&mut c, &err).iter().any(|e| matches!(e, Event::Notice(n) if n.contains("Could not block bob@localhost"))));
    }

    #[test]
    fn pictures_announced_in_presence_come_from_vcards_and_ours_is_stored_in_ours() {
        use base64::Engine;
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        let png = b"\x89PNG-ish";
        let hash: String = <sha1::Sha1 as sha1::Digest>::digest(png).iter().map(|b| format!("{b:02x}")).collect();
        let p = format!("<presence xmlns='jabber:client' from='bob@localhost/a'><x xmlns='vcard-temp:x:update'><photo>{hash}</photo></x></presence>");
        let out = sent(&stanza(&mut c, &p));
        let req = out.iter().find(|e| e.child("vCard", ns::VCARD).is_some()).expect("the vCard is asked for");
        assert_eq!(req.attr("to"), Some("bob@localhost"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        let answer = format!(
            "<iq xmlns='jabber:client' type='result' from='bob@localhost' id='{}'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard></iq>",
            req.attr("id").unwrap()
        );
        assert!(stanza(&mut c, &answer).contains(&Event::RosterChanged));
        assert_eq!(c.avatars.data_url("bob@localhost"), Some(format!("data:image/png;base64,{b64}").as_str()));

        // Ours: read our vCard, store it again with the picture.
        assert!(c.set_avatar("image/png", vec![0; avatar::MAX_PHOTO_BYTES + 1]).iter().any(|e| matches!(e, Event::Notice(_))));
        let get = sent(&c.set_avatar("image/png", png.to_vec()))[0].clone();
        assert!(get.attr("to").is_none() && get.attr("type") == Some("get"));
        let current = format!("<iq xmlns='jabber:client' type='result' id='{}'><vCard xmlns='vcard-temp'><FN>User</FN></vCard></iq>", get.attr("id").unwrap());
        let set = sent(&stanza(&mut c, &current))[0].clone();
        let card = set.child("vCard", ns::VCARD).unwrap();
        assert_eq!(card.child_text("FN", ns::VCARD).as_deref(), Some("User"));
        assert!(card.child("PHOTO", ns::VCARD).is_some());
        let out = sent(&stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{}'/>", set.attr("id").unwrap())));
        assert!(c.avatars.data_url("user@localhost").is_some());
        assert!(out.iter().any(|e| e.is("presence", ns::CLIENT)), "presence again, for the new hash");
    }

    #[test]
    fn an_account_not_yet_created_is_still_created_on_the_next_attempt() {
        let account = Account { local: "newbie".into(), domain: "localhost".into() };
        let mut c = Client::register(account, "pencil", None, "fyko+d2lbbFgONRv9qkxdawL".into());
        c.start();
        c.transport_closed();
        assert!(c.restart(Some("pencil"), "fyko+d2lbbFgONRv9qkxdawL".into()));
        c.start();
        c.receive(Input::Opened { id: None }, 0);
        let features = parse(
            "<features xmlns='http://etherx.jabber.org/streams'><register xmlns='http://jabber.org/features/iq-register'/>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></features>",
        );
        let out = sent(&c.receive(Input::Element(features), 0));
        assert!(out[0].child("query", ns::REGISTER).is_some(), "{out:?}");
    }

    #[test]
    fn changing_the_password() {
        let mut c = online("");
        assert!(c.change_password("short", "short").is_err(), "checked before anything is sent");
        let ev = c.change_password("a new secret", "a new secret").unwrap();
        let req = &sent(&ev)[0];
        assert_eq!(req.attr("to"), Some("localhost"));
        let id = req.attr("id").unwrap().to_owned();
        let ev = stanza(&mut c, &format!("<iq xmlns='jabber:client' type='result' id='{id}'/>"));
        assert!(ev.contains(&Event::PasswordChanged { password: "a new secret".into() }));
        // A refusal says why, and changes nothing.
        let ev = c.change_password("another secret", "another secret").unwrap();
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let err = format!("<iq xmlns='jabber:client' type='error' id='{id}'><error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
        let ev = stanza(&mut c, &err);
        assert!(ev.iter().any(|e| matches!(e, Event::Notice(n) if n.starts_with("The password was not changed"))));
        assert!(!ev.iter().any(|e| matches!(e, Event::PasswordChanged { .. })));
    }

    #[test]
    fn a_server_without_blocking_is_not_offered_it() {
        let mut c = online("");
        assert!(c.blocked.available());
        // The block list request went out with the initial stanzas; the server refuses it.
        let id = c.pending.iter().find(|(_, p)| *p == Pending::FetchBlockList).map(|(id, _)| id.clone()).unwrap();
        let err = format!("<iq xmlns='jabber:client' type='error' id='{id}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
        stanza(&mut c, &err);
        assert!(!c.blocked.available() && c.blocked.is_loaded());
    }

    #[test]
    fn what_is_written_offline_is_sent_in_order_once_back() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        c.transport_closed();
        for text in ["first", "second"] {
            let ev = c.send_message("bob@localhost", text, 5);
            assert!(sent(&ev).is_empty() && ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: false }));
        }
        let queued: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| (m.body.as_str(), m.delivery)).collect();
        assert_eq!(queued, [("first", Delivery::Queued), ("second", Delivery::Queued)]);

        // Back online on a new session: the roster, carbons, presence, then the messages.
        let out = back_online(&mut c);
        let bodies: Vec<String> = out.iter().filter(|e| e.is("message", ns::CLIENT)).filter_map(|m| m.child_text("body", ns::CLIENT)).collect();
        assert_eq!(bodies, ["first", "second"]);
        assert!(out.iter().position(|e| e.is("presence", ns::CLIENT)) < out.iter().position(|e| e.is("message", ns::CLIENT)));
        let ids: Vec<&str> = out.iter().filter(|e| e.is("message", ns::CLIENT)).filter_map(|m| m.attr("id")).collect();
        let shown: Vec<_> = c.chats.messages("bob@localhost").iter().map(|m| (m.id.as_str(), m.delivery)).collect();
        assert_eq!(shown, [(ids[0], Delivery::Sent), (ids[1], Delivery::Sent)], "the ids shown are the ids sent");
        assert!(sent(&c.send_message("bob@localhost", "third", 6)).iter().any(|e| e.is("message", ns::CLIENT)), "online again");
    }

    /// A client whose connection was lost signs in again on a new session; what it sends.
    fn back_online(c: &mut Client) -> Vec<Element> {
        assert!(c.restart(Some("pencil"), "fyko+d2lbbFgONRv9qkxdawL".into()));
        sign_in_with_scram(c);
        let ev = c.receive(Input::Element(features_bind()), 0);
        let bind_id = sent(&ev)[0].attr("id").unwrap().to_owned();
        sent(&c.receive(bind_result(&bind_id, "user@localhost/web"), 0))
    }

    #[test]
    fn replies_corrections_and_reactions_written_offline_wait_with_the_messages() {
        let bob = "bob@localhost";
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        stanza(&mut c, "<message xmlns='jabber:client' from='bob@localhost/a' type='chat' id='b1'><body>hello</body></message>");
        let mine = c.chats.messages(bob).len();
        c.send_message(bob, "mine", 1);
        let mine = c.chats.messages(bob)[mine].id.clone();
        c.transport_closed();

        let ev = c.send_reply(bob, "b1", "answer", 2);
        assert!(sent(&ev).is_empty());
        let reply = c.chats.messages(bob).last().unwrap().clone();
        assert_eq!((reply.body.as_str(), reply.delivery), ("answer", Delivery::Queued));
        assert!(sent(&c.correct_last(bob, &reply.id, "answer!", 3)).is_empty());
        assert!(sent(&c.toggle_reaction(bob, "b1", "👍", 4)).is_empty());
        // Shown at once, as they will be once sent.
        let shown = c.chats.message(bob, &reply.id).unwrap();
        assert_eq!((shown.body.as_str(), shown.edited, shown.delivery), ("answer!", true, Delivery::Queued));
        assert_eq!(c.chats.message(bob, "b1").unwrap().annotations.reactions.len(), 1);
        // A retraction does not wait: the user is told.
        let ev = c.retract(bob, &mine, 5);
        assert!(sent(&ev).is_empty() && ev.iter().any(|e| matches!(e, Event::Notice(_))));
        assert!(!c.chats.message(bob, &mine).unwrap().annotations.retracted);

        let out = back_online(&mut c);
        let messages: Vec<&Element> = out.iter().filter(|e| e.is("message", ns::CLIENT)).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(messages[0].attr("id"), Some(reply.id.as_str()));
        assert_eq!(messages[0].child("reply", ns::REPLY).and_then(|r| r.attr("id")), Some("b1"));
        assert_eq!(messages[1].child("replace", ns::CORRECT).and_then(|r| r.attr("id")), Some(reply.id.as_str()));
        assert_eq!(messages[1].child_text("body", ns::CLIENT).as_deref(), Some("answer!"));
        assert_eq!(messages[2].child("reactions", ns::REACTIONS).and_then(|r| r.attr("id")), Some("b1"));
        assert_eq!(c.chats.message(bob, &reply.id).unwrap().delivery, Delivery::Sent, "the clock is gone");
    }

    #[test]
    fn a_full_outbox_refuses_a_correction_and_leaves_the_message_as_it_was() {
        let bob = "bob@localhost";
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        c.transport_closed();
        for n in 0..crate::outbox::MAX_QUEUED {
            c.send_message(bob, &format!("m{n}"), 1);
        }
        let last = c.chats.messages(bob).last().unwrap().clone();
        let ev = c.correct_last(bob, &last.id, "changed", 2);
        assert!(ev.iter().any(|e| matches!(e, Event::Notice(_))));
        assert_eq!(c.chats.message(bob, &last.id), Some(&last));
    }

    #[test]
    fn writing_in_a_room_while_offline_is_refused_with_a_notice() {
        let mut c = online("");
        c.room_action(|rooms, own| rooms.join("lobby@conference.localhost", "ann", None, own).unwrap());
        c.transport_closed();
        let ev = c.write_in_room(|rooms| rooms.send("lobby@conference.localhost", "hi", 5));
        assert!(matches!(ev.as_slice(), [Event::Notice(_)]), "{ev:?}");
    }

    #[test]
    fn a_restart_keeps_the_models() {
        let mut c = online("<item jid='bob@localhost' subscription='both'/>");
        stanza(&mut c, "<message xmlns='jabber:client' from='bob@localhost/a' type='chat'><body>hi</body></message>");
        let ev = c.transport_closed();
        assert!(ev.contains(&Event::Failed(ConnError::ConnectionLost)));
        assert_eq!(c.phase(), Phase::Closed);
        assert!(c.restart(Some("pencil"), "abcdefgh".into()));
        assert_eq!(c.phase(), Phase::Connecting);
        let ev = c.start();
        assert!(ev.contains(&Event::Send(Frame::Open { to: "localhost".into(), restart: false })));
        assert_eq!(c.roster.len(), 1);
        assert_eq!(c.chats.messages("bob@localhost").len(), 1);
    }

    #[test]
    fn a_reloaded_page_resumes_from_what_it_saved() {
        let mut c = online_with("<item jid='bob@localhost' subscription='both'/>", "<sm xmlns='urn:xmpp:sm:3'/>");
        stanza(&mut c, "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='300'/>");
        stanza(&mut c, "<presence xmlns='jabber:client' from='bob@localhost/a'><status>here</status></presence>");
        stanza(&mut c, "<presence xmlns='jabber:client' from='carol@localhost' type='subscribe'/>");
        c.set_idle(true);
        // The server has the roster query, the carbons request, both presences, and the
        // block list, vCard, bookmarks' disco#info and upload service requests.
        stanza(&mut c, "<a xmlns='urn:xmpp:sm:3' h='8'/>");
        let out = sent(&c.send_message("bob@localhost", "unacknowledged", 5));
        assert!(out[1].is("r", ns::SM));

        // The page goes away: what it keeps says nothing of the password.
        let saved = c.resumable("websocket ws://localhost/xmpp-websocket", 10_000).expect("resumable");
        let json = saved.to_json();
        assert!(!json.contains("pencil"));
        let saved = Resumable::from_json(&json).unwrap();
        assert_eq!(saved.sm.unacked.len(), 1, "the message waits for an ack");
        assert_eq!((saved.sm.acked, saved.sm.inbound), (8, 2));
        assert_eq!(saved.show.as_str(), "away");
        assert_eq!(saved.idle_from.as_deref(), Some("online"), "away because idle");

        // The new page signs in with the saved keys and resumes.
        let mut c = Client::from_resumable(&saved, "fyko+d2lbbFgONRv9qkxdawL".into()).unwrap();
        assert!(c.roster.best_presence("bob@localhost").is_some(), "presence is shown from the start");
        assert_eq!(c.own_presence().show, Show::Away);
        assert!(c.is_idle(), "back to available on the first sign of the user");
        assert_eq!(c.roster.requests().count(), 1);
        // Started without a network: the first attempt fails, the page is saved again (a
        // reload while still offline), and the next attempt still resumes.
        let _ = c.transport_closed();
        assert!(c.roster.best_presence("bob@localhost").is_some(), "the server keeps what changes meanwhile");
        assert_eq!(c.resumable("x", 11_000).map(|r| (r.sm.id, r.jid)), Some(("sm1".into(), "user@localhost/web".into())));
        assert!(c.restart(None, "fyko+d2lbbFgONRv9qkxdawL".into()));
        sign_in_with_scram(&mut c);
        let mut features = features_bind();
        features.push(Element::new("sm", ns::SM));
        let out = sent(&c.receive(Input::Element(features), 0));
        assert_eq!(out[0].attr("previd"), Some("sm1"));
        assert_eq!(out[0].attr("h"), Some("2"), "the two presences we had");
        let ev = stanza(&mut c, "<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='8'/>");
        assert!(ev.contains(&Event::Online { jid: "user@localhost/web".into(), resumed: true }));
        let out = sent(&ev);
        let names: Vec<_> = out.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["message", "r", "iq", "iq", "iq", "iq"], "the message again, then the roster, upload service, block list and bookmarks; no new presence");
        assert_eq!(out[0].child_text("body", ns::CLIENT).as_deref(), Some("unacknowledged"));
        assert!(out[2].child("query", ns::ROSTER).is_some());
        assert!(out.iter().any(|e| e.child("blocklist", ns::BLOCKING).is_some()));
        // A message that waited on the server while the page reloaded arrives.
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' from='bob@localhost/a' type='chat' id='w1'><body>while away</body></message>",
        );
        assert!(ev.contains(&Event::ChatChanged { with: "bob@localhost".into(), incoming: true }));
        assert!(c.roster.best_presence("bob@localhost").is_some());
        assert!(c.resumable("x", 20_000).is_some(), "and it can be saved again");
    }

    #[test]
    fn idle_means_away_until_back() {
        let mut c = online("");
        c.set_presence(Show::Chat, Some("around".into()));
        let out = sent(&c.set_idle(true));
        assert_eq!(out[0].child_text("show", ns::CLIENT).as_deref(), Some("away"));
        assert_eq!(out[0].child_text("status", ns::CLIENT).as_deref(), Some("around"), "the status text stays");
        assert!(c.set_idle(true).is_empty(), "once");
        let out = sent(&c.set_idle(false));
        assert_eq!(out[0].child_text("show", ns::CLIENT).as_deref(), Some("chat"), "back as before");
        assert!(c.set_idle(false).is_empty());

        // A presence the user chose is not overridden, nor restored over.
        c.set_presence(Show::Dnd, None);
        assert!(c.set_idle(true).is_empty());
        c.set_presence(Show::Online, None);
        c.set_idle(true);
        c.set_presence(Show::Xa, Some("gone home".into()));
        assert!(c.set_idle(false).is_empty(), "chosen while idle: kept");
        assert_eq!(c.own_presence().show, Show::Xa);
    }

    #[test]
    fn group_chats_go_through_the_rooms_and_are_rejoined_on_a_new_session_only() {
        let mut c = online_with("", "<sm xmlns='urn:xmpp:sm:3'/>");
        stanza(&mut c, "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='300'/>");
        let ev = c.room_action(|rooms, own| rooms.join("lobby@conference.localhost", "ann", None, own).unwrap());
        assert!(ev.contains(&Event::RoomsChanged));
        assert_eq!(sent(&ev)[0].attr("to"), Some("lobby@conference.localhost/ann"));
        let ev = stanza(
            &mut c,
            "<presence xmlns='jabber:client' from='lobby@conference.localhost/ann'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/><status code='110'/></x></presence>",
        );
        assert!(ev.contains(&Event::RoomChanged { room: "lobby@conference.localhost".into(), mention: false }));
        assert!(c.roster.best_presence("lobby@conference.localhost").is_none(), "a room is not a contact");
        let ev = stanza(
            &mut c,
            "<message xmlns='jabber:client' type='groupchat' from='lobby@conference.localhost/bob' id='g1'><body>ann, hi</body></message>",
        );
        assert!(ev.contains(&Event::RoomChanged { room: "lobby@conference.localhost".into(), mention: true }));
        assert!(c.chats.messages("lobby@conference.localhost").is_empty());
        // A private message from an occupant is a conversation with them, not with the room.
        stanza(
            &mut c,
            "<message xmlns='jabber:client' type='chat' from='lobby@conference.localhost/bob' id='p1'><body>psst</body>\
             <x xmlns='http://jabber.org/protocol/muc#user'/></message>",
        );
        assert_eq!(c.chats.messages("lobby@conference.localhost/bob").len(), 1);
        // Our presence reaches the room.
        let out = sent(&c.set_presence(Show::Away, None));
        assert_eq!(out.iter().filter_map(|p| p.attr("to")).collect::<Vec<_>>(), ["lobby@conference.localhost/ann"]);

        // The connection drops and comes back, signing in again up to the stream features.
        let reconnect = |c: &mut Client| {
            c.transport_closed();
            assert!(c.room_action(|rooms, _| rooms.self_ping()).is_empty(), "offline: nothing sent");
            assert!(c.restart(Some("pencil"), "fyko+d2lbbFgONRv9qkxdawL".into()));
            sign_in_with_scram(c);
            let mut features = features_bind();
            features.push(Element::new("sm", ns::SM));
            let out = sent(&c.receive(Input::Element(features), 0));
            assert!(out[0].is("resume", ns::SM));
        };
        let to_room = |ev: &[Event]| sent(ev).iter().filter(|e| e.attr("to") == Some("lobby@conference.localhost/ann")).count();
        // Resumed: the room kept us, nothing to send (the server has all eleven stanzas).
        stanza(&mut c, "<a xmlns='urn:xmpp:sm:3' h='11'/>");
        reconnect(&mut c);
        let ev = stanza(&mut c, "<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='11'/>");
        assert!(ev.contains(&Event::Online { jid: "user@localhost/web".into(), resumed: true }));
        assert_eq!(to_room(&ev), 0);
        assert!(c.rooms.get("lobby@conference.localhost").unwrap().is_joined());
        // A new session: the room forgot us; we join again.
        reconnect(&mut c);
        let ev = stanza(&mut c, "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
        let bind_id = sent(&ev).iter().find(|e| e.child("bind", ns::BIND).is_some()).unwrap().attr("id").unwrap().to_owned();
        let ev = c.receive(bind_result(&bind_id, "user@localhost/web"), 0);
        assert!(ev.contains(&Event::Online { jid: "user@localhost/web".into(), resumed: false }));
        assert_eq!(to_room(&ev), 1);
        let join = sent(&ev).into_iter().find(|e| e.attr("to") == Some("lobby@conference.localhost/ann")).unwrap();
        assert!(join.child("x", ns::MUC).is_some());
        assert_eq!(c.rooms.get("lobby@conference.localhost").unwrap().state, crate::muc::RoomState::Joining);
    }

    #[test]
    fn a_reloaded_page_keeps_its_rooms() {
        let mut c = online_with("", "<sm xmlns='urn:xmpp:sm:3'/>");
        stanza(&mut c, "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='300'/>");
        c.room_action(|rooms, own| rooms.join("lobby@conference.localhost", "ann", None, own).unwrap());
        stanza(
            &mut c,
            "<presence xmlns='jabber:client' from='lobby@conference.localhost/ann'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/><status code='110'/></x></presence>",
        );
        // The server has all nine: roster, carbons, presence, block list, vCard, bookmarks,
        // the upload service, the join, the room's info.
        stanza(&mut c, "<a xmlns='urn:xmpp:sm:3' h='9'/>");
        let saved = c.resumable("websocket ws://localhost/xmpp-websocket", 10_000).unwrap();
        assert_eq!(saved.rooms, [("lobby@conference.localhost".to_owned(), "ann".to_owned())]);
        // The next page resumes (signing in with the saved keys), and joins again: the
        // room still has us, and tells us who is there.
        let mut c = Client::from_resumable(&Resumable::from_json(&saved.to_json()).unwrap(), "fyko+d2lbbFgONRv9qkxdawL".into()).unwrap();
        assert_eq!(c.rooms.get("lobby@conference.localhost").unwrap().nick, "ann");
        sign_in_with_scram(&mut c);
        let mut features = features_bind();
        features.push(Element::new("sm", ns::SM));
        c.receive(Input::Element(features), 0);
        let ev = stanza(&mut c, "<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='9'/>");
        let joins: Vec<_> = sent(&ev).into_iter().filter(|e| e.attr("to") == Some("lobby@conference.localhost/ann")).collect();
        assert_eq!(joins.len(), 1);
        assert!(joins[0].child("x", ns::MUC).is_some(), "joined again");
        assert_eq!(c.rooms.get("lobby@conference.localhost").unwrap().state, crate::muc::RoomState::Joining);
        stanza(
            &mut c,
            "<presence xmlns='jabber:client' from='lobby@conference.localhost/ann'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/><status code='110'/></x></presence>",
        );
        assert!(c.rooms.get("lobby@conference.localhost").unwrap().is_joined());
    }

    #[test]
    fn bookmarked_rooms_are_joined_on_sign_in() {
        let mut c = online("");
        // online() answered the roster; the bookmarks' disco#info is the next iq out.
        let disco = |c: &mut Client| {
            let ev = c.bookmark_action(|b| b.start("user@localhost"));
            sent(&ev)[0].attr("id").unwrap().to_owned()
        };
        let id = disco(&mut c);
        let ev = stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='result' id='{id}' from='user@localhost'><query xmlns='http://jabber.org/protocol/disco#info'>\
                 <feature var='urn:xmpp:bookmarks:1#compat'/></query></iq>"
            ),
        );
        let id = sent(&ev)[0].attr("id").unwrap().to_owned();
        let ev = stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='result' id='{id}' from='user@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                 <items node='urn:xmpp:bookmarks:1'><item id='team@conference.localhost'>\
                 <conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item></items></pubsub></iq>"
            ),
        );
        assert!(ev.contains(&Event::RoomsChanged));
        let joins: Vec<_> = sent(&ev).into_iter().filter(|e| e.is("presence", ns::CLIENT)).collect();
        assert_eq!(joins[0].attr("to"), Some("team@conference.localhost/user"), "our local part when the bookmark names no nick");
        assert!(joins[0].child("c", ns::CAPS).is_some(), "with our capabilities, for +notify");
        assert_eq!(c.rooms.get("team@conference.localhost").unwrap().state, crate::muc::RoomState::Joining);
        // Our disco#info says we want bookmark notifications, and echoes the caps node.
        let node = format!("{}#{}", crate::caps::NODE, crate::caps::ver());
        let ev = stanza(
            &mut c,
            &format!("<iq xmlns='jabber:client' type='get' id='d' from='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"),
        );
        let q = sent(&ev)[0].child("query", ns::DISCO_INFO).unwrap().clone();
        assert_eq!(q.attr("node"), Some(node.as_str()));
        assert!(q.children().any(|f| f.attr("var") == Some("urn:xmpp:bookmarks:1+notify")));
    }

    #[test]
    fn removing_and_renaming() {
        let mut c = online("<item jid='bob@localhost' subscription='both'><group>Work</group></item>");
        let out = sent(&c.rename("bob@localhost", "Robert"));
        let item = out[0].child("query", ns::ROSTER).unwrap().child("item", ns::ROSTER).unwrap();
        assert_eq!(item.attr("name"), Some("Robert"));
        assert_eq!(item.child_text("group", ns::ROSTER).as_deref(), Some("Work"), "groups are kept");
        let out =
            sent(&c.update_contact("bob@localhost", "Bob", &[" Friends ".into(), "".into(), "Work".into(), "Friends".into()]));
        let item = out[0].child("query", ns::ROSTER).unwrap().child("item", ns::ROSTER).unwrap();
        let groups: Vec<_> = item.children().map(|g| g.text()).collect();
        assert_eq!(groups, ["Friends", "Work"], "trimmed, deduplicated, without empty names");
        let out = sent(&c.remove_contact("bob@localhost"));
        let rid = out[0].attr("id").unwrap().to_owned();
        let ev = stanza(
            &mut c,
            &format!(
                "<iq xmlns='jabber:client' type='error' id='{rid}'><error type='cancel'>\
            <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
        );
        assert!(matches!(&ev[0], Event::Notice(n) if n.starts_with("Could not remove bob@localhost")));
    }
}
