//! A change to a list as one run of items replaced between an unchanged head and tail:
//! what the session's worker sends a tab instead of the whole list when a conversation's
//! messages change (see [`crate::tabs::ToTab::Splice`]), so that a new message costs one
//! message rather than the conversation.

use serde::de::DeserializeOwned;

use crate::tabs::ToWorker;

/// Where `after` differs from `before`: the lengths of their common head and of their
/// common tail (which do not overlap); `None` when the lists are equal.
pub fn diff<T: PartialEq>(before: &[T], after: &[T]) -> Option<(usize, usize)> {
    let head = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    if head == before.len() && head == after.len() {
        return None;
    }
    let room = before.len().min(after.len()) - head;
    let tail = before.iter().rev().zip(after.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
    Some((head, tail))
}

/// The worker's side: the change from `sent` (what a tab has) to `now`, as the `len` of
/// `sent`, the `head` and `tail` kept and the run between; `sent` becomes `now`. `None`
/// when nothing changed.
pub fn advance<'a, T: PartialEq + Clone>(sent: &mut Vec<T>, now: &'a [T]) -> Option<(usize, usize, usize, &'a [T])> {
    let (head, tail) = diff(sent, now)?;
    let (len, run) = (sent.len(), &now[head..now.len() - tail]);
    sent.splice(head..len - tail, run.iter().cloned());
    Some((len, head, tail, run))
}

/// Applies a change found by [`diff`] to `list`, which had `len` items: keeps its first
/// `head` and last `tail` and puts `items` between. False, with `list` unchanged, when the
/// list does not have `len` items (a change was missed) or the run does not fit in it.
pub fn apply<T>(list: &mut Vec<T>, len: usize, head: usize, tail: usize, items: Vec<T>) -> bool {
    if list.len() != len || head.saturating_add(tail) > len {
        return false;
    }
    list.splice(head..len - tail, items);
    true
}

/// A tab's side of a [`crate::tabs::ToTab::Splice`] of `field`: applies it to `list`, or,
/// when it does not fit what the tab has or `items` is not a JSON list of its items,
/// leaves `list` as it is and returns the message that asks the worker for all of it.
pub fn receive<T: DeserializeOwned>(field: &str, list: &mut Vec<T>, len: usize, head: usize, tail: usize, items: &str) -> Option<ToWorker> {
    let applied = serde_json::from_str(items).is_ok_and(|items| apply(list, len, head, tail, items));
    (!applied).then(|| ToWorker::Resend { field: field.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `before` → `after` as a splice and applies it to the tab's copy of `before`.
    fn round_trip(before: &[u32], after: &[u32]) -> Vec<u32> {
        let (mut sent, mut tab) = (before.to_vec(), before.to_vec());
        if let Some((len, head, tail, run)) = advance(&mut sent, after) {
            assert!(apply(&mut tab, len, head, tail, run.to_vec()));
        }
        assert_eq!(sent, after, "the worker's copy follows");
        tab
    }

    #[test]
    fn the_usual_changes_send_only_what_changed() {
        let conv: Vec<u32> = (0..10_000).collect();
        let mut appended = conv.clone();
        appended.push(10_000);
        assert_eq!(diff(&conv, &appended), Some((10_000, 0)), "a new message: one item");
        let mut older = vec![7, 8, 9];
        older.extend(&conv);
        assert_eq!(diff(&conv, &older), Some((0, 10_000)), "a page of history: the page");
        let mut edited = conv.clone();
        edited[5_000] = 0;
        assert_eq!(diff(&conv, &edited), Some((5_000, 4_999)), "a correction: that message");
        assert_eq!(diff(&conv, &conv), None);
        assert_eq!(diff(&conv, &[]), Some((0, 0)), "all gone");
        assert_eq!(diff::<u32>(&[], &[1]), Some((0, 0)));
    }

    #[test]
    fn head_and_tail_never_overlap() {
        // [1, 1] → [1, 1, 1]: a head of 2 leaves no room for a tail.
        assert_eq!(diff(&[1, 1], &[1, 1, 1]), Some((2, 0)));
        assert_eq!(diff(&[1, 1, 1], &[1, 1]), Some((2, 0)));
        assert_eq!(diff(&[1, 2, 1], &[1, 1]), Some((1, 1)));
    }

    #[test]
    fn every_change_round_trips() {
        // A small deterministic generator: lists of up to 6 items from a 3-letter alphabet.
        let mut seed = 0x2545_f491_u32;
        let mut next = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % n
        };
        for _ in 0..20_000 {
            let before: Vec<u32> = (0..next(7)).map(|_| next(3)).collect();
            let after: Vec<u32> = (0..next(7)).map(|_| next(3)).collect();
            assert_eq!(round_trip(&before, &after), after, "{before:?} → {after:?}");
        }
    }

    #[test]
    fn a_change_to_a_list_the_tab_does_not_have_is_refused() {
        let mut list = vec![1, 2, 3];
        assert!(!apply(&mut list, 4, 3, 0, vec![9]), "one change was missed");
        assert!(!apply(&mut list, 3, 2, 2, vec![9]), "head and tail overlap");
        assert!(!apply(&mut list, 3, usize::MAX, 1, vec![9]), "nonsense");
        assert_eq!(list, [1, 2, 3], "left as it was");
        assert!(apply(&mut list, 3, 3, 0, vec![4]));
        assert_eq!(list, [1, 2, 3, 4]);
    }

    #[test]
    fn a_tab_that_missed_a_change_asks_for_the_whole_list() {
        let mut messages = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(receive("messages", &mut messages, 2, 2, 0, "[\"c\"]"), None);
        assert_eq!(messages, ["a", "b", "c"]);
        let again = Some(ToWorker::Resend { field: "messages".into() });
        // Made against a list of 4 (a change this tab never got): refused, and asked again.
        assert_eq!(receive("messages", &mut messages, 4, 4, 0, "[\"e\"]"), again);
        for garbage in ["", "[1]", "{\"c\":1}", "[\"c\""] {
            assert_eq!(receive("messages", &mut messages, 3, 3, 0, garbage), again, "{garbage}");
        }
        assert_eq!(messages, ["a", "b", "c"], "left as it was");
    }
}
