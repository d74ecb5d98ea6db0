//! A change to a list as one run of items replaced between an unchanged head and tail:
//! what the session's worker sends a tab instead of the whole list when a conversation's
//! messages change (see [`crate::tabs::ToTab::Splice`]), so that a new message costs one
//! message rather than the conversation.

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `before` → `after` as a splice and applies it to a copy of `before`.
    fn round_trip(before: &[u32], after: &[u32]) -> Vec<u32> {
        let mut list = before.to_vec();
        if let Some((head, tail)) = diff(before, after) {
            let run = after[head..after.len() - tail].to_vec();
            assert!(apply(&mut list, before.len(), head, tail, run));
        }
        list
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
}
