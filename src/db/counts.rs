//! The counts of the searches, kept for a few seconds: counting a thousand books reads twenty
//! times what a page does, and a search that is popular is asked again and again.

use super::Count;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count is used before it is made again. A book added by hand shows in the count
/// within this time; a book Penny adds itself, at once (see `Counts::forget`).
pub const COUNT_TTL: Duration = Duration::from_secs(10);

/// Shards, each with its own lock, so that concurrent searches rarely wait on one another.
const SHARDS: usize = 16;

/// Counts per shard before the shard is emptied: enough for every search a class makes at once.
const SHARD_CAPACITY: usize = 256;

/// Recent counts by search and page. Cheap to share behind an `Arc`.
pub struct Counts {
    shards: [Mutex<HashMap<u64, (Instant, Count)>>; SHARDS],
    hasher: RandomState,
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

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, Count)>> {
        self.shards[key as usize % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The count made for `key` less than `COUNT_TTL` ago.
    pub fn get(&self, key: u64) -> Option<Count> {
        let shard = self.shard(key);
        let (at, count) = shard.get(&key)?;
        (at.elapsed() < COUNT_TTL).then_some(*count)
    }

    pub fn put(&self, key: u64, count: Count) {
        let mut shard = self.shard(key);
        if shard.len() >= SHARD_CAPACITY {
            shard.retain(|_, (at, _)| at.elapsed() < COUNT_TTL);
            if shard.len() >= SHARD_CAPACITY {
                shard.clear();
            }
        }
        shard.insert(key, (Instant::now(), count));
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
    fn a_full_shard_makes_room() {
        let counts = Counts::default();
        for n in 0..(SHARDS * SHARD_CAPACITY * 3) as u64 {
            counts.put(counts.key(n), Count::Exact(n));
        }
        let kept: usize = counts.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(kept <= SHARDS * SHARD_CAPACITY, "{kept}");
    }
}
