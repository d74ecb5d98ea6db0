//! What a browser tab keeps across a reload to resume its stream (XEP-0198) instead of
//! signing in again: the stream-management state, the bound JID, what authenticates the
//! resuming stream (the FAST token the server issued this device, XEP-0484, else the
//! SCRAM keys), and what the server will not send again (the presence we had received,
//! our own presence, pending requests).
//!
//! The password is not part of it. The SCRAM keys (RFC 5802 §3) are derived from it with
//! the server's salt; they sign in to this server only, and cannot be turned back into
//! the password. The view layer keeps this in `sessionStorage`, which lives as long as the
//! tab, writes it only when the page goes away and removes it when it reads it back.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::{reader, Limits};
use serde::{Deserialize, Serialize};

use crate::fast::FastToken;
use crate::scram::{ScramHash, ScramKeys};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumable {
    /// Our full JID.
    pub jid: String,
    /// Where the stream ran, for the view layer to connect to again.
    pub endpoint: String,
    /// When this was saved, ms since the Unix epoch.
    pub saved_at_ms: i64,
    pub sm: SavedSm,
    /// The SCRAM keys of the last password sign-in, if there was one on this page.
    #[serde(default)]
    pub keys: Option<SavedKeys>,
    /// The FAST token for the next sign-in, if the server issues them.
    #[serde(default)]
    pub token: Option<FastToken>,
    /// The SASL2 user-agent id the token belongs to.
    #[serde(default)]
    pub device: Option<String>,
    /// Our presence: `show` key and status text.
    pub show: String,
    pub status: Option<String>,
    /// Shown as away because the user was idle: the `show` key to go back to.
    #[serde(default)]
    pub idle_from: Option<String>,
    /// Available presence received, per full JID.
    pub presence: Vec<SavedPresence>,
    /// Subscription requests not answered yet: JID and message.
    pub requests: Vec<(String, Option<String>)>,
    /// The group chats we are in, room JID and nick: the server keeps us in them while
    /// the session lives, and the next page takes them up again.
    #[serde(default)]
    pub rooms: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSm {
    pub id: String,
    pub max_secs: u32,
    pub inbound: u32,
    pub acked: u32,
    /// Sent and not acknowledged, as XML.
    pub unacked: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedKeys {
    pub mechanism: String,
    pub salt: String,
    pub iterations: u32,
    pub client_key: String,
    pub server_key: String,
}

impl std::fmt::Debug for SavedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedKeys").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

impl From<&ScramKeys> for SavedKeys {
    fn from(k: &ScramKeys) -> Self {
        SavedKeys {
            mechanism: k.hash.mechanism().to_owned(),
            salt: B64.encode(&k.salt),
            iterations: k.iterations,
            client_key: B64.encode(&k.client_key),
            server_key: B64.encode(&k.server_key),
        }
    }
}

impl SavedKeys {
    pub fn to_keys(&self) -> Option<ScramKeys> {
        Some(ScramKeys {
            hash: ScramHash::from_mechanism(&self.mechanism)?,
            salt: B64.decode(&self.salt).ok()?,
            iterations: self.iterations,
            client_key: B64.decode(&self.client_key).ok()?,
            server_key: B64.decode(&self.server_key).ok()?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPresence {
    pub jid: String,
    pub show: String,
    pub status: Option<String>,
    pub priority: i8,
}

impl Resumable {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// `None` for anything unreadable: the caller then signs in afresh.
    pub fn from_json(text: &str) -> Option<Resumable> {
        let r: Resumable = serde_json::from_str(text).ok()?;
        r.sm.unacked_elements()?;
        match (&r.keys, &r.token) {
            (Some(keys), _) => drop(keys.to_keys()?),
            (None, Some(_)) => {}
            (None, None) => return None,
        }
        Some(r)
    }

    /// The server has given up the session by now (its `max`, less a margin for the
    /// time the new connection takes).
    pub fn expired(&self, now_ms: i64) -> bool {
        let window_ms = i64::from(self.sm.max_secs) * 1000;
        now_ms < self.saved_at_ms || now_ms - self.saved_at_ms > window_ms - 5000
    }
}

impl SavedSm {
    pub fn unacked_elements(&self) -> Option<Vec<jabberwock_proto::Element>> {
        self.unacked.iter().map(|x| reader::parse_element(x.as_bytes(), &Limits::default()).ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Resumable {
        Resumable {
            jid: "user@localhost/web".into(),
            endpoint: "websocket ws://localhost/xmpp-websocket".into(),
            saved_at_ms: 1_000_000,
            sm: SavedSm {
                id: "sm1".into(),
                max_secs: 300,
                inbound: 4,
                acked: 2,
                unacked: vec!["<message xmlns='jabber:client' to='bob@localhost' id='m3'><body>x</body></message>".into()],
            },
            keys: Some(SavedKeys::from(&ScramKeys {
                hash: ScramHash::Sha256,
                salt: vec![1, 2, 3],
                iterations: 4096,
                client_key: vec![9; 32],
                server_key: vec![8; 32],
            })),
            token: None,
            device: None,
            show: "away".into(),
            status: Some("lunch".into()),
            idle_from: None,
            presence: vec![SavedPresence { jid: "bob@localhost/a".into(), show: "online".into(), status: None, priority: 1 }],
            requests: vec![("carol@localhost".into(), Some("hi".into()))],
            rooms: vec![("lobby@conference.localhost".into(), "ann".into())],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let r = sample();
        let json = r.to_json();
        assert_eq!(Resumable::from_json(&json), Some(r.clone()));
        let keys = r.keys.as_ref().unwrap();
        assert_eq!(keys.to_keys().unwrap().client_key, vec![9; 32]);
        assert!(!format!("{:?}", r.keys).contains(&keys.client_key), "keys are not printed");
        assert_eq!(Resumable::from_json("{}"), None);
        assert_eq!(Resumable::from_json(&json.replace("<message", "<message<")), None, "bad XML");
        assert_eq!(Resumable::from_json(&json.replace("SCRAM-SHA-256", "PLAIN")), None);
    }

    #[test]
    fn an_entry_of_an_older_page_with_its_open_conversation_still_resumes() {
        // The open conversation is now each tab's own, kept by the tab next to the entry.
        let json = sample().to_json().replacen("\"rooms\":", "\"active\":\"bob@localhost\",\"rooms\":", 1);
        assert!(json.contains("\"active\":\"bob@localhost\""));
        assert_eq!(Resumable::from_json(&json), Some(sample()));
    }

    #[test]
    fn a_token_alone_will_do_but_not_nothing() {
        let token = FastToken { token: "t0k3n".into(), expiry: "2030-01-01T00:00:00Z".into() };
        let r = Resumable { keys: None, token: Some(token), device: Some("web-device".into()), ..sample() };
        let json = r.to_json();
        assert_eq!(Resumable::from_json(&json), Some(r.clone()));
        assert!(!format!("{:?}", r.token).contains("t0k3n"), "tokens are not printed");
        let neither = Resumable { keys: None, token: None, ..sample() };
        assert_eq!(Resumable::from_json(&neither.to_json()), None);
    }

    #[test]
    fn expires_with_the_server_window() {
        let r = sample();
        assert!(!r.expired(r.saved_at_ms + 1000));
        assert!(!r.expired(r.saved_at_ms + 290_000));
        assert!(r.expired(r.saved_at_ms + 296_000), "too close to the end of the window");
        assert!(r.expired(r.saved_at_ms - 1), "a clock that went back is not trusted");
    }
}
