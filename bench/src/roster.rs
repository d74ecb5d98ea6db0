//! Rosters for the presence storm: every session gets the R sessions nearest to it on a
//! ring (R/2 on each side) as contacts subscribed both ways, through real subscription
//! exchanges (RFC 6121 §3), so that it works on any server. Each session asks every
//! contact not yet subscribed both ways for a subscription and approves every request
//! it receives; both directions follow. Subscriptions are stored by the server, so a
//! rerun with the same accounts finds them in the rosters and has nothing to exchange.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jabberwock_proto::{ReadEvent, Stanza, ns};
use tokio::sync::watch;

use crate::client::{Session, bare};

/// The contacts of session `i` of `n`: the `r` nearest on a ring (`r` rounded down to
/// even, and below `n`).
pub fn contacts(i: usize, n: usize, r: usize) -> Vec<usize> {
    let half = (r / 2).min((n - 1) / 2);
    (1..=half).flat_map(|d| [(i + d) % n, (i + n - d) % n]).collect()
}

/// What establishing the rosters took.
pub struct Befriended {
    /// Subscriptions asked for (each pair needs two).
    pub requested: usize,
    /// Sessions whose roster was complete already.
    pub already: usize,
}

/// Gives every session its contacts (see [`contacts`]), subscribed both ways, within
/// `deadline`. Returns the sessions (all of them unless one failed) and the figures.
pub async fn befriend(sessions: Vec<Session>, r: usize, deadline: Duration) -> (Vec<Session>, Result<Befriended, String>) {
    let n = sessions.len();
    let jids: Vec<String> = sessions.iter().map(|s| s.bare().to_owned()).collect();
    let complete = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in sessions.into_iter().enumerate() {
        let wanted: HashSet<String> = contacts(i, n, r).into_iter().map(|k| jids[k].clone()).collect();
        let (complete, stop_tx, stop) = (complete.clone(), stop_tx.clone(), stop.clone());
        tasks.spawn(async move {
            let mut s = s;
            let r = subscribe_all(&mut s, wanted, n, &complete, &stop_tx, stop).await;
            (s, r)
        });
    }
    drop(stop_tx);
    let outcome = tokio::time::timeout(deadline, async {
        let mut back = Vec::with_capacity(n);
        let (mut requested, mut already, mut failure) = (0, 0, None);
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((s, Ok(asked))) => {
                    requested += asked;
                    already += usize::from(asked == 0);
                    back.push(s);
                }
                Ok((_, Err(e))) => failure = failure.or(Some(e)),
                Err(e) => failure = failure.or(Some(format!("roster task: {e}"))),
            }
        }
        back.sort_by_key(|s| s.index);
        (back, failure.map_or(Ok(Befriended { requested, already }), Err))
    })
    .await;
    match outcome {
        Ok(done) => done,
        Err(_) => (
            Vec::new(),
            Err(format!(
                "rosters not complete within {deadline:?}: {} of {n} sessions done",
                complete.load(Ordering::Relaxed)
            )),
        ),
    }
}

/// One session's side: reads its roster, asks the contacts it lacks, approves requests
/// and answers roster pushes until every session of the `n` has its contacts. Returns
/// how many subscriptions it asked for.
async fn subscribe_all(
    s: &mut Session,
    wanted: HashSet<String>,
    n: usize,
    complete: &AtomicUsize,
    stop_tx: &watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<usize, String> {
    let mut both: HashSet<String> = HashSet::new();
    let mut asked = 0;
    let mut done = false;
    s.tx.send(&format!("<iq type='get' id='roster' xmlns='jabber:client'><query xmlns='{}'/></iq>", ns::ROSTER)).await?;
    loop {
        let st = tokio::select! {
            ev = s.rx.next_event() => match ev? {
                ReadEvent::Stanza(st) => st,
                other => return Err(format!("{}: unexpected {other:?} while subscribing", s.jid)),
            },
            _ = stop.changed() => return Ok(asked),
        };
        if st.is("error", ns::STREAM) {
            return Err(format!("{}: stream error: {}", s.jid, st.inner()));
        }
        match (st.name(), st.stanza_type()) {
            ("presence", Some("subscribe")) => {
                let from = st.from().map(bare).unwrap_or_default();
                s.tx.send(&format!("<presence xmlns='jabber:client' to='{from}' type='subscribed'/>")).await?;
            }
            ("iq", Some("result")) if st.id() == Some("roster") => {
                update(&mut both, &st);
                for jid in wanted.difference(&both) {
                    s.tx.send(&format!("<presence xmlns='jabber:client' to='{jid}' type='subscribe'/>")).await?;
                    asked += 1;
                }
            }
            ("iq", Some("set")) if st.inner().contains(ns::ROSTER) => {
                update(&mut both, &st);
                let id = st.id().unwrap_or_default();
                s.tx.send(&format!("<iq xmlns='jabber:client' type='result' id='{id}'/>")).await?;
            }
            ("iq", Some("error")) if st.id() == Some("roster") => {
                return Err(format!("{}: roster request failed: {}", s.jid, st.inner()));
            }
            _ => {}
        }
        if !done && wanted.is_subset(&both) {
            done = true;
            if complete.fetch_add(1, Ordering::Relaxed) + 1 == n {
                let _ = stop_tx.send(true);
            }
        }
    }
}

/// Applies a roster result or push: which contacts are subscribed both ways.
fn update(both: &mut HashSet<String>, st: &Stanza) {
    let Ok(el) = st.to_element() else { return };
    let Some(query) = el.child("query", ns::ROSTER) else { return };
    for item in query.children().filter(|c| c.name() == "item") {
        let Some(jid) = item.attr("jid") else { continue };
        if item.attr("subscription") == Some("both") {
            both.insert(jid.to_owned());
        } else {
            both.remove(jid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::contacts;

    #[test]
    fn contacts_are_symmetric_and_exclude_self() {
        let n = 10;
        for r in [0, 2, 4, 50] {
            for i in 0..n {
                let c = contacts(i, n, r);
                assert!(!c.contains(&i));
                assert_eq!(c.len(), (r / 2).min((n - 1) / 2) * 2);
                for k in c {
                    assert!(contacts(k, n, r).contains(&i), "{i} ↔ {k} with r = {r}");
                }
            }
        }
    }
}
