//! Bounded in-memory caches. Their keys come from outside (any JID a stanza names, any
//! capabilities hash a client presents), so each holds at most so many entries and so many
//! bytes, and makes room by dropping the least recently used entry.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Counted for every entry on top of its key and value: the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// Roughly how many bytes a cached value holds on the heap.
pub trait Weigh {
    fn weigh(&self) -> usize;
}

impl Weigh for String {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for Arc<Vec<String>> {
    fn weigh(&self) -> usize {
        self.iter().map(|s| s.len() + std::mem::size_of::<String>()).sum()
    }
}

/// How big a cache may grow.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub entries: usize,
    pub bytes: usize,
}

/// A map from strings to values, bounded by [`Bounds`], that evicts the least recently
/// used entry first.
pub struct Lru<V> {
    bounds: Bounds,
    entries: HashMap<String, Entry<V>>,
    /// Each entry's key under its `queued` time, oldest first.
    by_use: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
}

struct Entry<V> {
    value: V,
    weight: usize,
    /// When it was last read or written.
    used: u64,
    /// Where it stands in `by_use`: its last use as of the last eviction that looked at it.
    /// A read moves only `used` (routing reads these caches for every stanza); eviction
    /// puts an entry read since it was queued back at its last use instead of dropping it.
    queued: u64,
}

impl<V: Weigh> Lru<V> {
    pub fn new(bounds: Bounds) -> Self {
        Lru { bounds, entries: HashMap::new(), by_use: BTreeMap::new(), clock: 0, bytes: 0 }
    }

    /// The value for `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        let entry = self.entries.get_mut(key)?;
        self.clock += 1;
        entry.used = self.clock;
        Some(&entry.value)
    }

    /// Inserts or replaces, then evicts the least recently used entries until the cache is
    /// within its bounds. A value too big for the cache on its own is not kept.
    pub fn insert(&mut self, key: &str, value: V) {
        self.remove(key);
        let weight = key.len() + value.weigh() + ENTRY_OVERHEAD;
        if weight > self.bounds.bytes || self.bounds.entries == 0 {
            return;
        }
        while self.entries.len() >= self.bounds.entries || self.bytes + weight > self.bounds.bytes {
            let Some((queued, oldest)) = self.by_use.pop_first() else { break };
            let Some(entry) = self.entries.get_mut(&oldest) else { continue };
            if entry.used > queued {
                entry.queued = entry.used;
                self.by_use.insert(entry.used, oldest);
            } else if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.weight;
            }
        }
        self.clock += 1;
        self.by_use.insert(self.clock, key.to_owned());
        self.entries.insert(key.to_owned(), Entry { value, weight, used: self.clock, queued: self.clock });
        self.bytes += weight;
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.queued);
            self.bytes -= entry.weight;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The weight of what is held, entry overheads included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Small per-account values that routing reads for every stanza (blocklists, archive
/// preferences), loaded from storage on first use and kept until they change or are
/// evicted. Stanzas to any local name, existing or not, look values up, so the cache is
/// bounded.
pub struct AccountCache<T> {
    values: Mutex<Lru<T>>,
}

impl<T: Clone + Weigh> AccountCache<T> {
    pub fn new(bounds: Bounds) -> Self {
        AccountCache { values: Mutex::new(Lru::new(bounds)) }
    }

    /// The cached value for `account`, loading it on first use.
    pub async fn get_or_load<F: Future<Output = T>>(&self, account: &str, load: impl FnOnce() -> F) -> T {
        if let Some(v) = self.values.lock().expect("account cache").get(account) {
            return v.clone();
        }
        let v = load().await;
        self.values.lock().expect("account cache").insert(account, v.clone());
        v
    }

    /// Drops the value after it changed in storage.
    pub fn forget(&self, account: &str) {
        self.values.lock().expect("account cache").remove(account);
    }

    /// How many accounts are cached.
    pub fn len(&self) -> usize {
        self.values.lock().expect("account cache").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Arc<Vec<String>> {
        Arc::new(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn evicts_the_least_recently_used_entry_at_the_entry_bound() {
        let mut lru = Lru::new(Bounds { entries: 3, bytes: usize::MAX });
        for k in ["a", "b", "c"] {
            lru.insert(k, k.to_owned());
        }
        // "a" is used, so "b" is now the oldest.
        assert_eq!(lru.get("a").map(String::as_str), Some("a"));
        lru.insert("d", "d".to_owned());
        assert_eq!(lru.len(), 3);
        assert!(lru.get("b").is_none(), "the least recently used entry goes");
        for k in ["a", "c", "d"] {
            assert!(lru.get(k).is_some(), "{k} stays");
        }
    }

    #[test]
    fn reads_between_evictions_keep_the_order_of_use() {
        let mut lru = Lru::new(Bounds { entries: 3, bytes: usize::MAX });
        for k in ["a", "b", "c"] {
            lru.insert(k, k.to_owned());
        }
        lru.get("a");
        lru.get("b");
        lru.insert("d", "d".to_owned());
        assert!(lru.get("c").is_none(), "c was used least recently");
        // Uses now, oldest first: b, d, a (read again below), so b goes next, then d.
        lru.get("a");
        lru.insert("e", "e".to_owned());
        assert!(lru.get("b").is_none());
        lru.get("a");
        lru.insert("f", "f".to_owned());
        assert!(lru.get("d").is_none());
        for k in ["a", "e", "f"] {
            assert!(lru.get(k).is_some(), "{k} stays");
        }
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn stays_within_its_byte_bound() {
        let bytes = 10 * (ENTRY_OVERHEAD + 100);
        let mut lru = Lru::new(Bounds { entries: usize::MAX, bytes });
        for i in 0..1000 {
            let value = list(&[&"x".repeat(i % 200)]);
            lru.insert(&format!("user{i}@example.org"), value);
            assert!(lru.bytes() <= bytes, "{} bytes after {i} inserts", lru.bytes());
        }
        assert!(lru.len() >= 3, "entries are kept while they fit: {}", lru.len());
        assert!(lru.get("user999@example.org").is_some(), "the newest entry is kept");
        // A value bigger than the whole cache is not kept, and evicts nothing.
        let before = lru.len();
        lru.insert("huge", list(&[&"x".repeat(bytes)]));
        assert!(lru.get("huge").is_none());
        assert_eq!(lru.len(), before);
    }

    #[test]
    fn replacing_and_removing_keep_the_accounts() {
        let mut lru = Lru::new(Bounds { entries: 10, bytes: 10_000 });
        lru.insert("a", "12345".to_owned());
        lru.insert("a", "1".to_owned());
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.bytes(), 1 + 1 + ENTRY_OVERHEAD);
        lru.remove("a");
        lru.remove("a");
        assert_eq!((lru.len(), lru.bytes()), (0, 0));
    }

    #[tokio::test]
    async fn account_cache_loads_once_and_stays_bounded() {
        let cache = AccountCache::new(Bounds { entries: 100, bytes: 1 << 20 });
        let mut loads = 0;
        for round in 0..2 {
            for i in 0..1000 {
                cache
                    .get_or_load(&format!("nobody{i}@localhost"), || {
                        loads += 1;
                        async { String::new() }
                    })
                    .await;
                assert!(cache.len() <= 100);
            }
            assert_eq!(loads, 1000 * (round + 1), "evicted entries are loaded again");
        }
        let hot = cache.get_or_load("nobody999@localhost", || async { "reloaded".to_owned() }).await;
        assert_eq!(hot, "", "a recent entry is served from the cache");
    }
}
