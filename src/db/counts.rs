//! The counts of the searches, kept for a few seconds: counting a thousand books reads twenty
//! times what a page does, and a search that is popular is asked again and again.

use super::Count;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count is used before it is made again. A book Penny adds itself shows in the
/// count at once (see `Counts::forget`); one added by hand, once the count is this old and the
/// next one is made (see `Counts::get`).
pub const COUNT_TTL: Duration = Duration::from_secs(10);

/// Shards, each with its own lock, so that concurrent searches rarely wait on one another.
const SHARDS: usize = 16;

/// Counts per shard before the shard is emptied: enough for every search a class makes at once.
const SHARD_CAPACITY: usize = 256;

/// Recent counts by search and page. Cheap to share behind an `Arc`.
pub struct Counts {
    shards: [Mutex<HashMap<u64, Entry>>; SHARDS],
    hasher: RandomState,
}

struct Entry {
    at: Instant,
    count: Count,
    /// When a caller set out to count again, the count being out of date.
    recounting: Option<Instant>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
        }
    }
}

impl Counts {
    /// Which entry `search` has: a hash of what identifies it (the range and the page's first
    /// book). A clash of two searches' 64-bit hashes would show one the other's count, nothing
    /// worse.
    pub fn key(&self, search: impl Hash) -> u64 {
        self.hasher.hash_one(search)
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.shards[key as usize % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The count for `key`, if there is one and it is up to date; or, while the first caller
    /// to find it out of date counts again, the count it replaces. Without that, a popular
    /// search's count running out would have every request in flight count at once.
    pub fn get(&self, key: u64) -> Option<Count> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: u64, now: Instant) -> Option<Count> {
        let mut shard = self.shard(key);
        let entry = shard.get_mut(&key)?;
        if now.saturating_duration_since(entry.at) < COUNT_TTL {
            return Some(entry.count);
        }
        match entry.recounting {
            // A count that has not come back by now failed: the next caller tries.
            Some(since) if now.saturating_duration_since(since) < COUNT_TTL => Some(entry.count),
            _ => {
                entry.recounting = Some(now);
                None
            }
        }
    }

    pub fn put(&self, key: u64, count: Count) {
        self.put_at(key, count, Instant::now());
    }

    fn put_at(&self, key: u64, count: Count, now: Instant) {
        let mut shard = self.shard(key);
        if shard.len() >= SHARD_CAPACITY {
            shard.retain(|_, entry| now.saturating_duration_since(entry.at) < COUNT_TTL);
            if shard.len() >= SHARD_CAPACITY {
                shard.clear();
            }
        }
        let entry = Entry {
            at: now,
            count,
            recounting: None,
        };
        shard.insert(key, entry);
    }

    /// Drops every count: the books changed.
    pub fn forget(&self) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_kept_for_its_search_until_forgotten() {
        let counts = Counts::default();
        let tur = counts.key(("tur", "tus", "first book"));
        let other = counts.key(("tur", "tus", "another first book"));
        assert_eq!(counts.get(tur), None);
        counts.put(tur, Count::MoreThan(1000));
        assert_eq!(counts.get(tur), Some(Count::MoreThan(1000)));
        assert_eq!(counts.get(other), None);
        counts.forget();
        assert_eq!(counts.get(tur), None);
    }

    #[test]
    fn an_out_of_date_count_is_made_again_by_one_caller_while_the_others_use_it() {
        let counts = Counts::default();
        let tur = counts.key(("tur", "tus", "first book"));
        let start = Instant::now();
        counts.put_at(tur, Count::Exact(7), start);
        let later = start + COUNT_TTL;
        assert_eq!(counts.get_at(tur, later), None, "the first caller counts");
        assert_eq!(counts.get_at(tur, later), Some(Count::Exact(7)));
        counts.put_at(tur, Count::Exact(8), later);
        assert_eq!(counts.get_at(tur, later), Some(Count::Exact(8)));

        // A count that never comes back: after a while, another caller counts.
        let much_later = later + COUNT_TTL;
        assert_eq!(counts.get_at(tur, much_later), None);
        assert_eq!(counts.get_at(tur, much_later), Some(Count::Exact(8)));
        let after_failure = much_later + COUNT_TTL;
        assert_eq!(counts.get_at(tur, after_failure), None);
    }

    #[test]
    fn a_full_shard_makes_room() {
        let counts = Counts::default();
        for n in 0..(SHARDS * SHARD_CAPACITY * 3) as u64 {
            counts.put(counts.key(n), Count::Exact(n));
        }
        let kept: usize = counts.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(kept <= SHARDS * SHARD_CAPACITY, "{kept}");
    }
}
