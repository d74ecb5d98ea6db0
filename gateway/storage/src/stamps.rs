//! An archive store's time order, and reading it by time: the part both backends share.
//!
//! Within one owner's store, stamps never go down as seqs go up (unless the clock stepped
//! back by more than [`MAX_RAISE_US`]). Every append raises an item's stamp to the newest
//! one already in its store and to those of the items before it in the same batch
//! ([`raised_stamps`]), under the lock that orders the store's seqs
//! (SQLite's one writer, PostgreSQL's advisory lock per store), so no concurrent append can
//! slip in between the read and the insert. The server stamps items as it stores them, so
//! this changes a stamp only after the clock stepped back, or when two sessions stamp items
//! of one store a moment apart and reach the writer in the other order: the item then takes
//! its predecessor's stamp, a little late, rather than a place out of time order. (ejabberd's
//! MAM, whose ids are its timestamps, is monotonic by construction in the same way.) Every
//! write path appends this way: single appends, batches (the MAM writer, room archives,
//! parked sessions' journals), and imports (`migrate-storage`), where a copy of a store
//! that already keeps the rule is unchanged.
//!
//! So the items stamped within [start, end] are exactly those between two seqs, which
//! [`seq_bounds`] finds in O(log n) index reads; the page is then read by seq like any
//! other, instead of walking the store's entries from its first until the time is met.
//!
//! A store written before the rule existed, or across a step back of the clock of more
//! than [`MAX_RAISE_US`], may hold an item stamped earlier than one before it. The page query still checks stamps, on the same index
//! entries the walk reads anyway, so a query never returns an item outside [start, end];
//! but the search may settle on a bound beside such an item rather than at the first (or
//! last) item in time, so items stamped within the range that lie on the far side of the
//! bound are left out of the answer. The harm stays within the stretch of the archive the
//! clock stepped back over; nothing fails.

use std::collections::HashMap;

use crate::{ArchiveAppend, Result};

/// One archive store: (host, user, store).
pub(crate) type StoreKey<'a> = (&'a str, &'a str, &'a str);

/// The stores that `items` append to, each once, with the earliest stamp among its items
/// there. A backend reads which of these stores hold a newer stamp already (usually none:
/// items arrive in time order), and [`raised_stamps`] raises the items to it. That read is
/// an index look-up per store; SQLite, whose archive writer's CPU sets the server's peak,
/// skips it for items stamped at or after a bound on every stamp in the archive.
pub(crate) fn stores_of<'a>(items: &[&'a ArchiveAppend]) -> Vec<(StoreKey<'a>, i64)> {
    let mut stores: Vec<(StoreKey<'a>, i64)> = Vec::new();
    let mut index: HashMap<StoreKey<'a>, usize> = HashMap::new();
    for i in items {
        let key = (i.host.as_str(), i.user.as_str(), i.store.as_str());
        match index.entry(key) {
            std::collections::hash_map::Entry::Occupied(n) => {
                let earliest = &mut stores[*n.get()].1;
                *earliest = (*earliest).min(i.stamp_us);
            }
            std::collections::hash_map::Entry::Vacant(n) => {
                n.insert(stores.len());
                stores.push((key, i.stamp_us));
            }
        }
    }
    stores
}

/// How far back an item's stamp may lie behind its store's newest and still be raised to
/// it. A clock that ran ahead (set a year forward by mistake, then put right) would
/// otherwise stamp every later item of the store with that future time until the real time
/// caught up; past this, the item keeps its own time and the store one step back in time
/// order, with the bounded harm described above.
pub(crate) const MAX_RAISE_US: i64 = 60 * 1_000_000;

/// A new item's stamp, raised to `newest` (the newest stamp already in its store, if any)
/// unless that lies more than [`MAX_RAISE_US`] ahead.
pub(crate) fn raised_stamp(stamp_us: i64, newest: Option<i64>) -> i64 {
    match newest {
        Some(newest) if newest > stamp_us && newest.checked_sub(stamp_us).is_some_and(|d| d <= MAX_RAISE_US) => newest,
        _ => stamp_us,
    }
}

/// The stamps to store for `items`, in their order: each raised to the newest stamp before
/// it in its store, whether already stored or earlier in `items`. `newer` holds (index in
/// `stores`, from [`stores_of`]; newest stamp) for the stores whose newest stamp is later
/// than the earliest of their new items; the others' stored stamps raise nothing.
pub(crate) fn raised_stamps<'a>(items: &[&'a ArchiveAppend], stores: &[(StoreKey<'a>, i64)], newer: Vec<(i64, i64)>) -> Vec<i64> {
    let mut newest: HashMap<StoreKey<'a>, Option<i64>> = HashMap::new();
    for (n, stamp) in newer {
        newest.insert(stores[n as usize].0, Some(stamp));
    }
    items
        .iter()
        .map(|i| {
            let newest = newest.entry((i.host.as_str(), i.user.as_str(), i.store.as_str())).or_default();
            let stamp = raised_stamp(i.stamp_us, *newest);
            *newest = Some(stamp);
            stamp
        })
        .collect()
}

/// What [`seq_bounds`] reads of one store: each call is one statement of lookups in the
/// store's seq-ordered index.
pub(crate) trait StampProbe {
    /// The store's first and last seqs, if it holds any item.
    async fn seq_range(&mut self) -> Result<Option<(i64, i64)>>;

    /// For each of `seqs`, the stamp of the store's first item at or after that seq (`None`
    /// past the last).
    async fn stamps_from(&mut self, seqs: &[i64]) -> Result<Vec<Option<i64>>>;
}

/// Seqs probed per statement. Each statement narrows the range to a 33rd, so a store whose
/// items span a million seqs takes four, a billion six: a round trip costs more than a
/// few dozen index lookups, on PostgreSQL most of all.
const PROBES: i128 = 32;

/// The seqs bounding the items stamped within [start, end]: those at or after the first
/// and before the second. `None` for a bound the query does not have (or an empty store).
pub(crate) async fn seq_bounds(probe: &mut impl StampProbe, start: Option<i64>, end: Option<i64>) -> Result<(Option<i64>, Option<i64>)> {
    // end = i64::MAX bounds nothing.
    let past_end = end.and_then(|end| end.checked_add(1));
    if start.is_none() && past_end.is_none() {
        return Ok((None, None));
    }
    let Some((first, last)) = probe.seq_range().await? else { return Ok((None, None)) };
    let from = match start {
        Some(start) => Some(first_stamped_from(probe, first, last, start).await?),
        None => None,
    };
    let to = match past_end {
        // Nothing before `from` is stamped after start, so the end lies at or after it.
        Some(past_end) => Some(first_stamped_from(probe, from.unwrap_or(first), last, past_end).await?),
        None => None,
    };
    Ok((from, to))
}

/// The first seq in [lo, last + 1] from which on every item is stamped at or after `t`
/// (last + 1 when none is). Each round probes up to [`PROBES`] seqs spread evenly over
/// the range still open and keeps the part between the last probe stamped before `t` and
/// the first at or after it; a range no wider than that is probed seq by seq.
async fn first_stamped_from(probe: &mut impl StampProbe, mut lo: i64, last: i64, t: i64) -> Result<i64> {
    // The answer lies in [lo, hi]; hi = last + 1 stands for "after every item".
    let mut hi = last.saturating_add(1);
    while lo < hi {
        let width = i128::from(hi - lo);
        let seqs: Vec<i64> = if width <= PROBES {
            (lo..hi).collect()
        } else {
            // Strictly increasing, within [lo, hi): width / (PROBES + 1) >= 1 apart.
            (1..=PROBES).map(|i| lo + (width * i / (PROBES + 1)) as i64).collect()
        };
        let stamps = probe.stamps_from(&seqs).await?;
        // Past the last item counts as stamped after any time.
        match stamps.iter().position(|s| s.is_none_or(|s| s >= t)) {
            Some(0) => hi = seqs[0],
            Some(j) => (lo, hi) = (seqs[j - 1] + 1, seqs[j]),
            None => lo = seqs[seqs.len() - 1] + 1,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in memory: (seq, stamp) in seq order; counts the statements it answers.
    struct Items {
        items: Vec<(i64, i64)>,
        statements: usize,
    }

    impl StampProbe for Items {
        async fn seq_range(&mut self) -> Result<Option<(i64, i64)>> {
            self.statements += 1;
            Ok(self.items.first().zip(self.items.last()).map(|(f, l)| (f.0, l.0)))
        }

        async fn stamps_from(&mut self, seqs: &[i64]) -> Result<Vec<Option<i64>>> {
            self.statements += 1;
            Ok(seqs.iter().map(|&s| self.items.get(self.items.partition_point(|i| i.0 < s)).map(|i| i.1)).collect())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    /// The seqs of the items a query with these bounds reads.
    fn read(items: &[(i64, i64)], (from, to): (Option<i64>, Option<i64>)) -> Vec<i64> {
        items.iter().map(|i| i.0).filter(|&s| from.is_none_or(|f| s >= f) && to.is_none_or(|t| s < t)).collect()
    }

    #[test]
    fn bounds_hold_exactly_the_items_in_the_time_range() {
        // Seqs with gaps (other stores' items), runs of equal stamps of every length.
        let items: Vec<(i64, i64)> = (0..500i64).map(|i| (3 + i * 7 + i % 5, 1000 + (i * i / 300) * 10)).collect();
        let mut store = Items { items: items.clone(), statements: 0 };
        let mut times: Vec<i64> = items.iter().flat_map(|i| [i.1 - 1, i.1, i.1 + 1]).collect();
        times.extend([i64::MIN, 0, i64::MAX]);
        for &start in &times {
            for end in [None, Some(start), Some(start.saturating_add(25)), Some(i64::MAX)] {
                let bounds = block_on(seq_bounds(&mut store, Some(start), end)).unwrap();
                let want: Vec<i64> = items.iter().filter(|i| i.1 >= start && end.is_none_or(|e| i.1 <= e)).map(|i| i.0).collect();
                assert_eq!(read(&items, bounds), want, "start {start}, end {end:?}");
            }
            let bounds = block_on(seq_bounds(&mut store, None, Some(start))).unwrap();
            let want: Vec<i64> = items.iter().filter(|i| i.1 <= start).map(|i| i.0).collect();
            assert_eq!(read(&items, bounds), want, "end {start}");
        }
    }

    #[test]
    fn a_search_takes_a_few_statements() {
        let items: Vec<(i64, i64)> = (1..=1_000_000).map(|s| (s, s)).collect();
        let mut store = Items { items, statements: 0 };
        block_on(seq_bounds(&mut store, Some(500_000), None)).unwrap();
        assert!(store.statements <= 5, "{} statements", store.statements);
    }

    #[test]
    fn stamps_out_of_order_give_some_bound() {
        // A clock stepped back before the rule: the search ends, somewhere in range.
        let items: Vec<(i64, i64)> = (1..=200).map(|s| (s, if s % 50 < 10 { 5 } else { s })).collect();
        let mut store = Items { items, statements: 0 };
        for t in [0, 5, 40, 60, 199, 300] {
            let (from, to) = block_on(seq_bounds(&mut store, Some(t), Some(t + 20))).unwrap();
            assert!((1..=201).contains(&from.unwrap()) && (1..=201).contains(&to.unwrap()), "{t}: {from:?} {to:?}");
        }
    }

    #[test]
    fn stamps_rise_within_each_store() {
        let item = |user: &str, stamp_us| ArchiveAppend {
            host: "h".into(),
            user: user.into(),
            store: "mam".into(),
            id: String::new(),
            stamp_us,
            with: String::new(),
            payload: Vec::new(),
        };
        let items = [item("a", 50), item("b", 10), item("a", 40), item("a", 70), item("b", 5)];
        let items: Vec<&ArchiveAppend> = items.iter().collect();
        let stores = stores_of(&items);
        assert_eq!(stores, [(("h", "a", "mam"), 40), (("h", "b", "mam"), 5)]);
        assert_eq!(raised_stamps(&items, &stores, vec![(0, 60)]), [60, 10, 60, 70, 10]);
    }

    #[test]
    fn a_stamp_far_in_the_future_raises_nothing() {
        assert_eq!(raised_stamp(1_000, Some(1_000 + MAX_RAISE_US)), 1_000 + MAX_RAISE_US);
        assert_eq!(raised_stamp(1_000, Some(1_001 + MAX_RAISE_US)), 1_000, "a clock that ran ahead");
        assert_eq!(raised_stamp(1_000, Some(999)), 1_000);
        assert_eq!(raised_stamp(i64::MIN, Some(i64::MAX)), i64::MIN, "no overflow");
    }
}
