//! Avatars: contacts' pictures, and our own.
//!
//! Contacts announce a picture by the SHA-1 of its bytes in their presence (XEP-0153
//! `vcard-temp:x:update`); the picture itself is the PHOTO of their vCard (XEP-0054),
//! fetched once per announced hash. Pictures published as XEP-0084 avatars reach us the
//! same way where the server keeps the two in step (XEP-0398: Jabberwock does, as does
//! Prosody's mod_vcard_legacy). Our own picture is set by storing it in our vCard, which
//! such a server publishes as a XEP-0084 avatar too and announces in our presence.
//!
//! Contacts that publish XEP-0084 avatars are also heard directly where the server sends
//! PEP notifications (we ask for them in our capabilities, `+notify`): the metadata names
//! the picture's hash and type, and the data item is fetched once per hash.
//!
//! Pictures are only ever shown as images of a few raster types, from a `data:` URL built
//! here; anything else, or anything over [`MAX_PHOTO_BYTES`], is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::Element;
use sha1::{Digest, Sha1};

use crate::address;
use crate::ns;
use crate::stanza::iq;

/// The largest picture kept, in bytes (decoded). Avatars are small by convention (XEP-0084
/// suggests under 8 KiB for the common case); a contact's 5 MB photo is not worth the memory.
pub const MAX_PHOTO_BYTES: usize = 96 * 1024;
/// At most this many pictures are kept; beyond, the oldest fetched is dropped (and fetched
/// again if its contact is shown and announces it).
pub const MAX_KEPT: usize = 500;

/// At most this many pictures are asked for at once; a picture announced meanwhile is
/// asked for at its sender's next presence.
pub const MAX_FETCHING: usize = 64;

/// Image types shown (SVG is not: it is a document, not a picture).
const TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What a presence said of its sender's picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announced {
    /// A picture with this hash (lowercase hex SHA-1).
    Photo(String),
    /// No picture.
    None,
}

/// The picture a presence announces (XEP-0153 §3.2); `None` when it says nothing, which
/// leaves what we know unchanged (an empty `<x/>` means "not ready", §4.3).
pub fn announced(presence: &Element) -> Option<Announced> {
    let photo = presence.child("x", ns::VCARD_UPDATE)?.child("photo", ns::VCARD_UPDATE)?;
    let hash = photo.text().trim().to_ascii_lowercase();
    Some(if hash.is_empty() { Announced::None } else { Announced::Photo(hash) })
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Picture {
    hash: String,
    /// Shared: views hold it without copying the picture.
    data_url: Arc<str>,
}

#[derive(Clone, Debug, Default)]
pub struct Avatars {
    pictures: BTreeMap<String, Picture>,
    /// Bare JIDs whose vCard is being fetched.
    fetching: BTreeSet<String>,
    /// Order in which pictures were kept, oldest first, for [`MAX_KEPT`].
    kept_order: Vec<String>,
    /// Bumped at each change, so views know when to look again.
    version: u64,
}

impl Avatars {
    /// The picture of `jid` as a `data:` URL for an `<img>`, if we have it.
    pub fn data_url(&self, jid: &str) -> Option<&str> {
        self.pictures.get(address::bare(jid)).map(|p| &*p.data_url)
    }

    /// Every picture kept, by bare JID.
    pub fn all(&self) -> impl Iterator<Item = (&str, Arc<str>)> {
        self.pictures.iter().map(|(jid, p)| (jid.as_str(), p.data_url.clone()))
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// A presence from `jid` said this of its picture: returns the bare JID whose vCard to
    /// fetch, when it names a picture we do not have and are not fetching already.
    pub fn on_announced(&mut self, jid: &str, what: Announced) -> Option<String> {
        let bare = address::bare(jid).to_owned();
        match what {
            Announced::None => {
                if self.pictures.remove(&bare).is_some() {
                    self.version += 1;
                }
                None
            }
            Announced::Photo(hash) => {
                let have = self.pictures.get(&bare).is_some_and(|p| p.hash == hash);
                // Presences from many senders at once ask for no more than MAX_FETCHING.
                let room = self.fetching.len() < MAX_FETCHING;
                (!have && room && self.fetching.insert(bare.clone())).then_some(bare)
            }
        }
    }

    /// Asks for the vCard of `bare` ourselves (our own, at sign-in), unless already asked.
    pub fn want(&mut self, bare: &str) -> bool {
        self.fetching.insert(bare.to_owned())
    }

    /// The vCard of `bare` arrived (`None`: it could not be had).
    pub fn on_vcard(&mut self, bare: &str, vcard: Option<&Element>) {
        self.on_picture(bare, vcard.and_then(photo_of));
    }

    /// A XEP-0084 data item of `bare` arrived (the answer's `<pubsub/>`), of the type its
    /// metadata named (`None`: it could not be had).
    pub fn on_avatar_data(&mut self, bare: &str, mime: &str, pubsub: Option<&Element>) {
        let data = pubsub
            .filter(|p| p.is("pubsub", ns::PUBSUB))
            .and_then(|p| p.child("items", ns::PUBSUB))
            .and_then(|i| i.child("item", ns::PUBSUB))
            .and_then(|i| i.child_text("data", ns::AVATAR_DATA));
        self.on_picture(bare, data.and_then(|b64| picture(mime, &b64)));
    }

    fn on_picture(&mut self, bare: &str, picture: Option<(String, Vec<u8>)>) {
        self.fetching.remove(bare);
        let Some((mime, bytes)) = picture else {
            // No usable picture: show none rather than an outdated one.
            if self.pictures.remove(bare).is_some() {
                self.version += 1;
            }
            return;
        };
        let hash = hex_sha1(&bytes);
        let data_url = format!("data:{mime};base64,{}", B64.encode(&bytes)).into();
        self.keep(bare, Picture { hash, data_url });
    }

    /// Our own new picture, as stored: shown at once.
    pub fn set_own(&mut self, own: &str, mime: &str, bytes: &[u8]) {
        let picture = Picture { hash: hex_sha1(bytes), data_url: format!("data:{mime};base64,{}", B64.encode(bytes)).into() };
        self.keep(own, picture);
    }

    /// Forgets what is being fetched (a new session asks again).
    pub fn reset_fetching(&mut self) {
        self.fetching.clear();
    }

    fn keep(&mut self, bare: &str, picture: Picture) {
        if self.pictures.get(bare) == Some(&picture) {
            return;
        }
        self.kept_order.retain(|j| j != bare);
        self.kept_order.push(bare.to_owned());
        self.pictures.insert(bare.to_owned(), picture);
        while self.kept_order.len() > MAX_KEPT {
            let oldest = self.kept_order.remove(0);
            self.pictures.remove(&oldest);
        }
        self.version += 1;
    }
}

/// The vCard's PHOTO as (type, bytes), when it is a picture we show.
fn photo_of(vcard: &Element) -> Option<(String, Vec<u8>)> {
    let photo = vcard.child("PHOTO", ns::VCARD)?;
    picture(&photo.child_text("TYPE", ns::VCARD)?, &photo.child_text("BINVAL", ns::VCARD)?)
}

/// A picture given as its type and base64 text, when it is one we show.
fn picture(mime: &str, base64: &str) -> Option<(String, Vec<u8>)> {
    let mime = mime.trim().to_ascii_lowercase();
    if !TYPES.contains(&mime.as_str()) {
        return None;
    }
    // Base64 is 4/3 of the bytes: refuse a long text before decoding it.
    if base64.len() > MAX_PHOTO_BYTES * 4 / 3 + 1024 {
        return None;
    }
    let compact: String = base64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = B64.decode(compact).ok()?;
    (bytes.len() <= MAX_PHOTO_BYTES && !bytes.is_empty()).then_some((mime, bytes))
}

/// A XEP-0084 metadata notification: who published it, and the picture it names (with its
/// type) or `None` for "no picture" (an empty `<metadata/>`, §4.2). `None` for any other
/// message.
pub fn metadata_event(message: &Element) -> Option<(String, Option<(String, String)>)> {
    let items = message.child("event", ns::PUBSUB_EVENT)?.child("items", ns::PUBSUB_EVENT)?;
    if items.attr("node") != Some(ns::AVATAR_METADATA) {
        return None;
    }
    let from = address::bare(message.attr("from")?).to_owned();
    let metadata = items.child("item", ns::PUBSUB_EVENT)?.child("metadata", ns::AVATAR_METADATA)?;
    // Of several formats, the first one we show.
    let info = metadata
        .children()
        .filter(|i| i.is("info", ns::AVATAR_METADATA))
        .find(|i| i.attr("type").is_some_and(|t| TYPES.contains(&t.to_ascii_lowercase().as_str())) && i.attr("url").is_none());
    // Only formats we do not show: as good as none.
    let named = info.and_then(|i| Some((i.attr("id")?.to_ascii_lowercase(), i.attr("type")?.to_ascii_lowercase())));
    Some((from, named))
}

/// Asks `bare` for its XEP-0084 data item `id`.
pub fn data_request(id: &str, bare: &str, item: &str) -> Element {
    iq("get", id, Some(bare)).with_child(
        Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("items", ns::PUBSUB)
                .with_attr("node", ns::AVATAR_DATA)
                .with_child(Element::new("item", ns::PUBSUB).with_attr("id", item)),
        ),
    )
}

/// The picture in a `data:` URL of a type we show (what a canvas gives back), as (type, bytes).
pub fn from_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    let mime = head.strip_suffix(";base64")?.to_ascii_lowercase();
    let bytes = B64.decode(data).ok()?;
    TYPES.contains(&mime.as_str()).then_some((mime, bytes))
}

fn hex_sha1(bytes: &[u8]) -> String {
    Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks for the vCard of `bare` (XEP-0054); `None` for our own.
pub fn vcard_request(id: &str, bare: Option<&str>) -> Element {
    iq("get", id, bare).with_child(Element::new("vCard", ns::VCARD))
}

/// Our vCard with its PHOTO replaced by this picture, keeping every other field.
pub fn with_photo(current: Option<&Element>, mime: &str, bytes: &[u8]) -> Element {
    let mut card = Element::new("vCard", ns::VCARD);
    if let Some(current) = current {
        for child in current.children().filter(|c| !c.is("PHOTO", ns::VCARD)) {
            card.push(child.clone());
        }
    }
    card.with_child(
        Element::new("PHOTO", ns::VCARD)
            .with_child(Element::new("TYPE", ns::VCARD).with_text(mime))
            .with_child(Element::new("BINVAL", ns::VCARD).with_text(B64.encode(bytes))),
    )
}

/// Stores `card` as our vCard.
pub fn vcard_set(id: &str, card: Element) -> Element {
    iq("set", id, None).with_child(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::connection::tests::parse(xml)
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n-not-really-a-png";

    fn vcard(mime: &str, bytes: &[u8]) -> Element {
        parse(&format!(
            "<vCard xmlns='vcard-temp'><FN>Bob</FN><PHOTO><TYPE>{mime}</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard>",
            B64.encode(bytes)
        ))
    }

    #[test]
    fn a_picture_announced_is_fetched_once_and_shown() {
        let mut a = Avatars::default();
        let hash = hex_sha1(PNG);
        let p = parse(&format!("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>{hash}</photo></x></presence>"));
        let what = announced(&p).unwrap();
        assert_eq!(a.on_announced("bob@x/phone", what.clone()), Some("bob@x".into()));
        assert_eq!(a.on_announced("bob@x/laptop", what.clone()), None, "already being fetched");
        a.on_vcard("bob@x", Some(&vcard("image/png", PNG)));
        assert_eq!(a.data_url("bob@x/any"), Some(format!("data:image/png;base64,{}", B64.encode(PNG)).as_str()));
        assert_eq!(a.on_announced("bob@x/phone", what), None, "we have it");
        // A new picture is fetched; "no picture" removes it.
        assert_eq!(a.on_announced("bob@x/phone", Announced::Photo("00".repeat(20))), Some("bob@x".into()));
        let v = a.version();
        a.on_announced("bob@x/phone", Announced::None);
        assert!(a.data_url("bob@x").is_none() && a.version() > v);
        // Saying nothing changes nothing.
        assert_eq!(announced(&parse("<presence xmlns='jabber:client'/>")), None);
        assert_eq!(announced(&parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'/></presence>")), None);
    }

    #[test]
    fn only_small_raster_pictures_are_shown() {
        let mut a = Avatars::default();
        a.on_vcard("svg@x", Some(&vcard("image/svg+xml", b"<svg onload='alert(1)'/>")));
        a.on_vcard("html@x", Some(&vcard("text/html", b"<b>hi</b>")));
        a.on_vcard("huge@x", Some(&vcard("image/jpeg", &vec![0u8; MAX_PHOTO_BYTES + 1])));
        a.on_vcard("broken@x", Some(&parse("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>!!!</BINVAL></PHOTO></vCard>")));
        a.on_vcard("none@x", Some(&parse("<vCard xmlns='vcard-temp'><FN>No photo</FN></vCard>")));
        a.on_vcard("gone@x", None);
        for jid in ["svg@x", "html@x", "huge@x", "broken@x", "none@x", "gone@x"] {
            assert!(a.data_url(jid).is_none(), "{jid}");
        }
        a.on_vcard("ok@x", Some(&vcard("IMAGE/JPEG", &vec![1u8; MAX_PHOTO_BYTES])));
        assert!(a.data_url("ok@x").unwrap().starts_with("data:image/jpeg;base64,"));
    }

    #[test]
    fn a_canvas_picture_is_taken_from_its_data_url() {
        let url = format!("data:image/jpeg;base64,{}", B64.encode(PNG));
        assert_eq!(from_data_url(&url), Some(("image/jpeg".to_owned(), PNG.to_vec())));
        assert_eq!(from_data_url("data:image/svg+xml;base64,PHN2Zy8+"), None);
        assert_eq!(from_data_url("data:image/png,notbase64"), None);
        assert_eq!(from_data_url("https://example.org/x.png"), None);
    }

    #[test]
    fn xep_0084_notifications_name_the_picture_and_its_data_is_taken() {
        let hash = hex_sha1(PNG);
        let event = |metadata: &str| {
            parse(&format!(
                "<message xmlns='jabber:client' from='bob@x/phone'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
                 <items node='urn:xmpp:avatar:metadata'><item id='{hash}'>{metadata}</item></items></event></message>"
            ))
        };
        let m = event(&format!(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='x' type='image/svg+xml' bytes='9'/>\
             <info id='{hash}' type='image/png' bytes='9'/></metadata>"
        ));
        assert_eq!(metadata_event(&m), Some(("bob@x".to_owned(), Some((hash.clone(), "image/png".to_owned())))));
        assert_eq!(metadata_event(&event("<metadata xmlns='urn:xmpp:avatar:metadata'/>")), Some(("bob@x".to_owned(), None)));
        assert_eq!(metadata_event(&parse("<message xmlns='jabber:client' from='bob@x'><body>hi</body></message>")), None);

        let mut a = Avatars::default();
        let answer = |b64: &str| {
            parse(&format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'>\
                 <item id='{hash}'><data xmlns='urn:xmpp:avatar:data'>{b64}</data></item></items></pubsub>"
            ))
        };
        a.on_avatar_data("bob@x", "image/png", Some(&answer(&B64.encode(PNG))));
        assert!(a.data_url("bob@x").unwrap().starts_with("data:image/png;base64,"));
        a.on_avatar_data("eve@x", "image/png", Some(&answer("not base64!")));
        a.on_avatar_data("mal@x", "text/html", Some(&answer(&B64.encode(b"<b>x</b>"))));
        assert!(a.data_url("eve@x").is_none() && a.data_url("mal@x").is_none());
        let r = data_request("d1", "bob@x", &hash);
        assert_eq!(r.attr("to"), Some("bob@x"));
        assert!(r.child("pubsub", ns::PUBSUB).and_then(|p| p.child("items", ns::PUBSUB)).is_some_and(|i| i.attr("node") == Some(ns::AVATAR_DATA)));
    }

    #[test]
    fn pictures_asked_for_at_once_are_bounded() {
        let mut a = Avatars::default();
        let asked = (0..MAX_FETCHING + 10).filter(|n| a.on_announced(&format!("u{n}@x/r"), Announced::Photo("ab".repeat(20))).is_some()).count();
        assert_eq!(asked, MAX_FETCHING);
        a.on_vcard("u0@x", None);
        assert_eq!(a.on_announced("late@x/r", Announced::Photo("ab".repeat(20))), Some("late@x".into()), "room again once one answered");
    }

    #[test]
    fn the_number_of_pictures_kept_is_bounded() {
        let mut a = Avatars::default();
        for n in 0..MAX_KEPT + 3 {
            a.on_vcard(&format!("u{n}@x"), Some(&vcard("image/png", format!("picture {n}").as_bytes())));
        }
        assert!(a.data_url("u0@x").is_none() && a.data_url("u2@x").is_none(), "the oldest went");
        assert!(a.data_url("u3@x").is_some() && a.data_url(&format!("u{}@x", MAX_KEPT + 2)).is_some());
    }

    #[test]
    fn our_picture_goes_into_our_vcard_keeping_the_rest() {
        let current = parse("<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>R0lG</BINVAL></PHOTO></vCard>");
        let card = with_photo(Some(&current), "image/png", PNG);
        assert_eq!(card.child_text("FN", ns::VCARD).as_deref(), Some("Alice"));
        let photos: Vec<_> = card.children().filter(|c| c.is("PHOTO", ns::VCARD)).collect();
        assert_eq!(photos.len(), 1);
        assert_eq!(photos[0].child_text("TYPE", ns::VCARD).as_deref(), Some("image/png"));
        assert_eq!(B64.decode(photos[0].child_text("BINVAL", ns::VCARD).unwrap()).unwrap(), PNG);
        let set = vcard_set("v1", card);
        assert_eq!((set.attr("type"), set.attr("to")), (Some("set"), None));
        assert_eq!(vcard_request("v2", Some("bob@x")).attr("to"), Some("bob@x"));
    }
}
