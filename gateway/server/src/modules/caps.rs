//! XEP-0115 entity capabilities: which features each connected resource has, learned
//! from the `<c/>` in its presence. An unknown `ver` is asked for with disco#info and
//! cached once its hash checks out, so every client version is asked once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use jabberwock_proto::{ns, Element, Stanza};
use jid::FullJid;
use sha1::Digest;

use super::{Host, Module, SessionHooks, StreamFeatures, StreamStage};
use crate::cache::Lru;
use crate::registry::ConnId;
use crate::server::Server;
use crate::stanzas::random_id;

type Features = Arc<Vec<String>>;

pub struct Caps {
    /// Verified `ver` strings and their features. A client can present any number of
    /// verifiable feature sets, so this is bounded; an evicted one is asked for again.
    by_ver: Mutex<Lru<Features>>,
    /// The `ver` and features of each connected full JID, for as long as it is connected.
    by_jid: Mutex<HashMap<String, (String, Features)>>,
}

impl Caps {
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        Caps { by_ver: Mutex::new(Lru::new(limits.caps_cache())), by_jid: Mutex::default() }
    }

    /// How many verified capabilities are cached.
    pub fn cached_versions(&self) -> usize {
        self.by_ver.lock().expect("caps").len()
    }
}

/// The node our own capabilities name (XEP-0115 §4: a URI for the software).
const NODE: &str = "urn:jabberwock:server";

impl Module for Caps {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::CAPS]);
        host.session_hooks(self.clone());
        host.stream_features(self);
    }
}

/// XEP-0115 §6.3: the server's own capabilities in the stream features after
/// authentication, so a client knows them without a disco#info round trip.
impl StreamFeatures for Caps {
    fn feature(&self, server: &Server, stage: StreamStage) -> Option<Element> {
        stage.authenticated.then(|| {
            Element::new("c", ns::CAPS)
                .with_attr("hash", "sha-1")
                .with_attr("node", NODE)
                .with_attr("ver", verification_hash(&super::disco::server_info(server)))
        })
    }
}

#[async_trait]
impl SessionHooks for Caps {
    async fn ended(&self, _server: &Arc<Server>, jid: &FullJid, _conn: ConnId) {
        self.by_jid.lock().expect("caps").remove(jid.as_str());
    }
}

impl Caps {
    pub fn features_of(&self, full_jid: &str) -> Option<Arc<Vec<String>>> {
        self.by_jid.lock().expect("caps").get(full_jid).map(|(_, f)| f.clone())
    }

    /// Learns the features of `full_jid` from its presence. Returns them when they are new
    /// for this JID (first presence with capabilities, or a changed `ver`).
    pub async fn learn(&self, server: &Server, full_jid: &str, presence: &Stanza) -> Option<Arc<Vec<String>>> {
        if !presence.inner().contains(ns::CAPS) {
            return None;
        }
        let el = presence.to_element().ok()?;
        let c = el.child("c", ns::CAPS)?;
        let (node, ver, hash) = (c.attr("node")?, c.attr("ver")?, c.attr("hash").unwrap_or("sha-1"));
        if self.by_jid.lock().expect("caps").get(full_jid).is_some_and(|(known, _)| known == ver) {
            return None;
        }
        let cached = self.by_ver.lock().expect("caps").get(ver).cloned();
        let features = match cached {
            Some(f) => f,
            None => {
                let info = self.disco(server, full_jid, &format!("{node}#{ver}")).await?;
                let features: Arc<Vec<String>> =
                    Arc::new(info.children().filter(|f| f.is("feature", ns::DISCO_INFO)).filter_map(|f| f.attr("var")).map(str::to_owned).collect());
                if hash == "sha-1" && verification_hash(&info) == ver {
                    self.by_ver.lock().expect("caps").insert(ver, features.clone());
                }
                features
            }
        };
        self.by_jid.lock().expect("caps").insert(full_jid.to_owned(), (ver.to_owned(), features.clone()));
        Some(features)
    }

    /// Asks `full_jid` for its disco#info at `node`.
    async fn disco(&self, server: &Server, full_jid: &str, node: &str) -> Option<Element> {
        let jid = jid::Jid::new(full_jid).ok()?;
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", random_id())
            .with_attr("from", jid.domain().as_str())
            .with_attr("to", full_jid)
            .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", node));
        let reply = server.iq_requests.send(server, Stanza::from_element(&iq)).await?.to_element().ok()?;
        (reply.attr("type") == Some("result")).then(|| reply.child("query", ns::DISCO_INFO).cloned()).flatten()
    }
}

/// XEP-0115 §5.1: the verification string of a disco#info answer, SHA-1, base64.
fn verification_hash(info: &Element) -> String {
    let mut identities: Vec<String> = info
        .children()
        .filter(|i| i.is("identity", ns::DISCO_INFO))
        .map(|i| {
            let a = |k: &str| i.attr(k).unwrap_or_default().to_owned();
            format!("{}/{}/{}/{}<", a("category"), a("type"), a("xml:lang"), a("name"))
        })
        .collect();
    identities.sort();
    let mut features: Vec<String> =
        info.children().filter(|f| f.is("feature", ns::DISCO_INFO)).filter_map(|f| f.attr("var")).map(|v| format!("{v}<")).collect();
    features.sort();
    let mut forms: Vec<String> = info
        .children()
        .filter(|x| x.is("x", ns::DATA_FORMS))
        .map(|form| {
            let field_values = |f: &Element| {
                let mut values: Vec<String> = f.children().filter(|v| v.is("value", ns::DATA_FORMS)).map(|v| format!("{}<", v.text())).collect();
                values.sort();
                values.concat()
            };
            let form_type = form.children().find(|f| f.attr("var") == Some("FORM_TYPE")).map(field_values).unwrap_or_default();
            let mut fields: Vec<String> = form
                .children()
                .filter(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") != Some("FORM_TYPE"))
                .map(|f| format!("{}<{}", f.attr("var").unwrap_or_default(), field_values(f)))
                .collect();
            fields.sort();
            format!("{form_type}{}", fields.concat())
        })
        .collect();
    forms.sort();
    let s = format!("{}{}{}", identities.concat(), features.concat(), forms.concat());
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_simple_example() {
        // XEP-0115 §5.2.
        let info = Element::new("query", ns::DISCO_INFO)
            .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "client").with_attr("name", "Exodus 0.9.1").with_attr("type", "pc"))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/caps"))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/disco#info"))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/disco#items"))
            .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", "http://jabber.org/protocol/muc"));
        assert_eq!(verification_hash(&info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
