//! What the browser keeps of an account's contacts and recent conversations, so that a page
//! started without a network (from the service worker's copy, with a saved session) shows
//! them before the server answers.
//!
//! This module decides what is kept and within which bounds, and turns it into JSON and
//! back; the view layer stores the JSON per account and forgets it on sign-out. What is
//! kept is the messages as shown, annotations included (corrections, reactions, receipts,
//! replies, file links). Messages still waiting in the outbox are not: the outbox lives in
//! the page. The archive (XEP-0313) later returns the same messages under the same ids,
//! and [`Chats::archived`](crate::chat::Chats::archived) shows each once.

use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, Delivery};
use crate::client::Client;
use crate::roster::RosterItem;

/// The newest messages kept per conversation.
pub const MAX_MESSAGES_PER_CONVERSATION: usize = 100;
/// The most JSON kept per account: a fifth of the 5 MB that browsers give an origin's
/// `localStorage`, which drafts, unread counts and the settings share.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Changes whenever the shape of what is kept does; anything else is not read back.
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    format: u32,
    /// Whose this is (bare JID): never shown to another account.
    pub account: String,
    pub contacts: Vec<RosterItem>,
    /// Conversations with their newest messages in time order, the most recent first.
    pub conversations: Vec<(String, Vec<ChatMessage>)>,
}

impl Kept {
    /// What to keep of `client`, in at most `max_bytes` of JSON: the contacts first (as
    /// many as fit), then the conversations, the most recent first, each with its newest
    /// messages up to [`MAX_MESSAGES_PER_CONVERSATION`]. A conversation's older messages
    /// are left out from the first one that does not fit, so what is kept has no gaps.
    pub fn of(client: &Client, max_bytes: usize) -> Kept {
        let mut kept = Kept { format: FORMAT, account: client.account().bare(), ..Default::default() };
        // What the empty shell takes, plus a comma per element added.
        let mut used = kept.to_json().len();
        let mut fits = |len: usize| {
            let ok = used + len < max_bytes;
            if ok {
                used += len + 1;
            }
            ok
        };
        for item in client.roster.items() {
            if !fits(json_len(item)) {
                break;
            }
            kept.contacts.push(item.clone());
        }
        let mut recent: Vec<(&str, &[ChatMessage])> =
            client.chats.jids().map(|jid| (jid, client.chats.messages(jid))).filter(|(_, m)| !m.is_empty()).collect();
        recent.sort_by_key(|(_, m)| std::cmp::Reverse(m.last().map(|m| m.timestamp_ms)));
        for (jid, messages) in recent {
            // The pair's brackets, the JID and the list's brackets.
            if !fits(json_len(&jid) + 4) {
                continue;
            }
            let mut newest: Vec<ChatMessage> = Vec::new();
            for m in messages.iter().rev().filter(|m| m.delivery != Delivery::Queued).take(MAX_MESSAGES_PER_CONVERSATION) {
                if !fits(json_len(m)) {
                    break;
                }
                newest.push(m.clone());
            }
            newest.reverse();
            kept.conversations.push((jid.to_owned(), newest));
        }
        kept
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// `None` for anything unreadable or of another format: then nothing was kept.
    pub fn from_json(text: &str) -> Option<Kept> {
        serde_json::from_str(text).ok().filter(|k: &Kept| k.format == FORMAT)
    }

    /// Shows what was kept in `client`, if it is the same account's: the contacts until
    /// the server's roster arrives, and the messages of conversations that have none yet.
    pub fn restore(self, client: &mut Client) {
        if self.account != client.account().bare() {
            return;
        }
        client.roster.restore_kept(self.contacts);
        for (jid, mut messages) in self.conversations {
            messages.truncate(MAX_MESSAGES_PER_CONVERSATION);
            client.chats.restore_kept(&jid, messages);
        }
    }
}

fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_string(value).map_or(usize::MAX / 2, |s| s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Direction;
    use crate::client::tests::{ask_history, online, sent, stanza};
    use crate::address::Account;

    const BOB: &str = "bob@localhost";
    const CAROL: &str = "carol@localhost";

    fn from(c: &mut Client, who: &str, id: &str, at_ms: i64, inner: &str) {
        let stamp = stamp(at_ms);
        stanza(
            c,
            &format!(
                "<message xmlns='jabber:client' from='{who}/a' to='user@localhost/web' type='chat' id='{id}'>{inner}\
                 <delay xmlns='urn:xmpp:delay' stamp='{stamp}'/></message>"
            ),
        );
    }

    /// An XEP-0082 stamp for `ms` (under a minute) after the epoch.
    fn stamp(ms: i64) -> String {
        format!("1970-01-01T00:00:{:02}.{:03}Z", ms / 1000, ms % 1000)
    }

    /// A page started again (offline): the same account, not signed in, nothing loaded.
    fn new_page() -> Client {
        Client::new(Account { local: "user".into(), domain: "localhost".into() }, "pencil", Some("web".into()), "fyko+d2lbbFgONRv9qkxdawL".into())
    }

    fn contacts() -> Client {
        online("<item jid='bob@localhost' name='Bob' subscription='both'><group>Friends</group></item><item jid='carol@localhost' subscription='to'/>")
    }

    #[test]
    fn contacts_and_messages_with_their_annotations_come_back_on_a_new_page() {
        let mut c = contacts();
        from(&mut c, BOB, "b1", 1_000, "<body>helo</body>");
        from(&mut c, BOB, "b2", 2_000, "<body>hello</body><replace xmlns='urn:xmpp:message-correct:0' id='b1'/>");
        let ours = sent(&c.send_message(BOB, "hi Bob", 3_000))[0].attr("id").unwrap().to_owned();
        from(&mut c, BOB, "b3", 4_000, &format!("<reactions xmlns='urn:xmpp:reactions:0' id='{ours}'><reaction>👍</reaction></reactions>"));
        from(&mut c, BOB, "b4", 5_000, &format!("<received xmlns='urn:xmpp:receipts' id='{ours}'/>"));
        let shown = c.chats.messages(BOB).to_vec();
        assert_eq!(shown.len(), 2);
        assert!(shown[0].edited && !shown[1].annotations.reactions.is_empty() && shown[1].delivery == Delivery::Delivered);

        let json = Kept::of(&c, MAX_BYTES).to_json();
        let mut page = new_page();
        Kept::from_json(&json).unwrap().restore(&mut page);
        assert_eq!(page.chats.messages(BOB), shown.as_slice());
        assert_eq!(page.chats.unread(BOB), 0, "kept messages were already seen");
        let bob = page.roster.get(BOB).unwrap();
        assert_eq!((bob.display_name(), bob.groups.as_slice()), ("Bob", ["Friends".to_owned()].as_slice()));
        assert!(page.roster.get(CAROL).is_some());
        assert!(!page.roster.is_loaded(), "the server's roster is still asked for");
        assert_eq!(page.contacts().iter().map(|v| v.jid.as_str()).collect::<Vec<_>>(), [BOB, CAROL]);
    }

    #[test]
    fn another_accounts_or_another_formats_data_is_not_shown() {
        let mut c = contacts();
        from(&mut c, BOB, "b1", 1_000, "<body>private</body>");
        let kept = Kept::of(&c, MAX_BYTES);
        let mut other = Client::new(Account { local: "eve".into(), domain: "localhost".into() }, "pw", None, "nonce".into());
        kept.clone().restore(&mut other);
        assert!(other.chats.messages(BOB).is_empty() && other.roster.is_empty());
        let json = kept.to_json().replacen("\"format\":1", "\"format\":99", 1);
        assert!(Kept::from_json(&json).is_none());
        assert!(Kept::from_json("{\"format\":1").is_none());
        assert!(Kept::from_json("").is_none());
    }

    #[test]
    fn the_newest_messages_of_the_most_recent_conversations_are_kept_within_the_bounds() {
        let mut c = contacts();
        for i in 0..150 {
            from(&mut c, CAROL, &format!("c{i}"), 1_000 + i, &format!("<body>carol {i}</body>"));
        }
        for i in 0..20 {
            from(&mut c, BOB, &format!("b{i}"), 10_000 + i, &format!("<body>bob {i} {}</body>", "x".repeat(200)));
        }
        let all = Kept::of(&c, MAX_BYTES);
        let carol = &all.conversations.iter().find(|(j, _)| j == CAROL).unwrap().1;
        assert_eq!(carol.len(), MAX_MESSAGES_PER_CONVERSATION);
        assert_eq!((carol[0].body.as_str(), carol[99].body.as_str()), ("carol 50", "carol 149"), "the newest, in time order");

        // A budget that holds the contacts, Bob's conversation (the most recent) and Carol's
        // five newest messages.
        let list_json = |m: &[ChatMessage]| m.iter().map(|m| json_len(m) + 1).sum::<usize>();
        let carol = c.chats.messages(CAROL);
        // What `of` counts: the empty shell, then each element and a comma.
        let shell = Kept::of(&new_page(), MAX_BYTES).to_json().len();
        let budget = shell
            + c.roster.items().map(|i| json_len(i) + 1).sum::<usize>()
            + json_len(&BOB) + 5 + list_json(c.chats.messages(BOB))
            + json_len(&CAROL) + 5 + list_json(&carol[carol.len() - 5..]);
        let some = Kept::of(&c, budget);
        let json = some.to_json();
        assert!(json.len() <= budget, "{} > {budget}", json.len());
        assert_eq!(some.contacts.len(), 2);
        assert_eq!(some.conversations[0].0, BOB);
        assert_eq!(some.conversations[0].1.len(), 20);
        let carol: Vec<&str> = some.conversations[1].1.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(carol, ["carol 145", "carol 146", "carol 147", "carol 148", "carol 149"]);
        assert!(Kept::of(&c, budget - 1).conversations[1].1.len() < 5);

        // Too little room even for the contacts: what fits, always within the bound.
        for budget in [0, 10, 100, 300] {
            assert!(Kept::of(&c, budget).to_json().len() <= budget.max(Kept::of(&new_page(), 0).to_json().len()));
        }
    }

    #[test]
    fn messages_waiting_in_the_outbox_are_not_kept() {
        let mut c = contacts();
        let _ = c.send_message(BOB, "sent", 1_000);
        let _ = c.transport_closed();
        let _ = c.send_message(BOB, "waiting", 2_000);
        assert_eq!(c.chats.messages(BOB).last().unwrap().delivery, Delivery::Queued);
        let kept = Kept::of(&c, MAX_BYTES);
        assert_eq!(kept.conversations[0].1.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["sent"]);
    }

    #[test]
    fn the_archive_does_not_show_kept_messages_twice() {
        let mut c = contacts();
        from(&mut c, BOB, "b1", 1_000, "<body>first</body>");
        from(&mut c, BOB, "b2", 2_000, "<body>frist</body>");
        from(&mut c, BOB, "b3", 3_000, "<body>first!</body><replace xmlns='urn:xmpp:message-correct:0' id='b2'/>");
        let ours = sent(&c.send_message(BOB, "mine", 4_000))[0].attr("id").unwrap().to_owned();
        let json = Kept::of(&c, MAX_BYTES).to_json();

        // A new sign-in on the page that kept them, then the archive's newest page.
        let mut page = contacts();
        Kept::from_json(&json).unwrap().restore(&mut page);
        let (id, qid) = ask_history(&mut page, BOB);
        let result = |aid: &str, from: &str, to: &str, mid: &str, inner: &str, at: i64| {
            let stamp = stamp(at);
            format!(
                "<message xmlns='jabber:client' to='user@localhost/web'><result xmlns='urn:xmpp:mam:2' queryid='{qid}' id='{aid}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>\
                 <message xmlns='jabber:client' from='{from}' to='{to}' type='chat' id='{mid}'>{inner}</message>\
                 </forwarded></result></message>"
            )
        };
        let bob = |aid: &str, mid: &str, inner: &str, at: i64| result(aid, "bob@localhost/a", "user@localhost", mid, inner, at);
        stanza(&mut page, &bob("A0", "b0", "<body>older, not kept</body>", 500));
        stanza(&mut page, &bob("A1", "b1", "<body>first</body>", 1_000));
        stanza(&mut page, &bob("A2", "b2", "<body>frist</body>", 2_000));
        stanza(&mut page, &bob("A3", "b3", "<body>first!</body><replace xmlns='urn:xmpp:message-correct:0' id='b2'/>", 3_000));
        stanza(&mut page, &result("A4", "user@localhost/web", BOB, &ours, "<body>mine</body>", 4_000));
        stanza(&mut page, &format!("<iq xmlns='jabber:client' type='result' id='{id}'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>"));
        let shown: Vec<(Direction, &str, bool)> =
            page.chats.messages(BOB).iter().map(|m| (m.direction, m.body.as_str(), m.edited)).collect();
        assert_eq!(
            shown,
            [
                (Direction::In, "older, not kept", false),
                (Direction::In, "first", false),
                (Direction::In, "first!", true),
                (Direction::Out, "mine", false),
            ]
        );
    }

    #[test]
    fn a_conversation_that_has_messages_already_keeps_them() {
        let mut c = contacts();
        from(&mut c, BOB, "b1", 1_000, "<body>kept</body>");
        let kept = Kept::of(&c, MAX_BYTES);
        let mut page = contacts();
        from(&mut page, BOB, "b9", 9_000, "<body>live</body>");
        kept.restore(&mut page);
        assert_eq!(page.chats.messages(BOB).iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["live"]);
    }
}
