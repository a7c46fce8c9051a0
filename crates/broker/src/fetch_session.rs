//! Incremental fetch sessions (KIP-227; Kafka: FetchSessionCache / FetchSession).
//!
//! A client opens a session with a full fetch (session id 0, epoch 0); the broker remembers
//! the partitions and their fetch offsets. Later fetches (the session id, epoch + 1) list only
//! partitions whose parameters changed and the ones to forget, and responses carry only the
//! partitions with something new (data, offsets, errors). The cache holds at most
//! `max.incremental.fetch.session.cache.slots` sessions; when full, the least recently used
//! session is evicted, and a new full fetch gets session id 0 (sessionless) if nothing can go.

use std::collections::HashMap;

use uuid::Uuid;

/// Epoch meaning "full fetch, open a new session".
pub const INITIAL_EPOCH: i32 = 0;
/// Epoch meaning "no session" (or "close this session").
pub const FINAL_EPOCH: i32 = -1;
/// Session id meaning "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// Partitions one session may track.
pub const SESSION_PARTITIONS_MAX: usize = 10_000;

/// A partition as a fetch names it: by name (v4-v12) or by topic id (v13+).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchKey {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// What the session remembers of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// What the last response said, so unchanged partitions can be left out of the next one.
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
}

impl CachedPartition {
    pub fn new(fetch_offset: i64, partition_max_bytes: i32) -> Self {
        Self {
            fetch_offset,
            partition_max_bytes,
            last_high_watermark: -1,
            last_log_start_offset: -1,
        }
    }
}

#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    /// Kept in insertion order: Kafka serves partitions in the order the session learned them.
    pub partitions: Vec<(FetchKey, CachedPartition)>,
    last_used_tick: u64,
}

impl FetchSession {
    pub fn get_mut(&mut self, key: &FetchKey) -> Option<&mut CachedPartition> {
        self.partitions
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, p)| p)
    }

    /// Adds or updates a partition from a request. Returns false if the session is full.
    pub fn upsert(&mut self, key: FetchKey, fetch_offset: i64, partition_max_bytes: i32) -> bool {
        if let Some(cached) = self.get_mut(&key) {
            cached.fetch_offset = fetch_offset;
            cached.partition_max_bytes = partition_max_bytes;
            return true;
        }
        if self.partitions.len() >= SESSION_PARTITIONS_MAX {
            return false;
        }
        self.partitions
            .push((key, CachedPartition::new(fetch_offset, partition_max_bytes)));
        true
    }

    pub fn forget(&mut self, key: &FetchKey) {
        self.partitions.retain(|(k, _)| k != key);
    }
}

/// Why an incremental fetch could not use its session (Kafka's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND (70)
    NotFound,
    /// INVALID_FETCH_SESSION_EPOCH (71)
    InvalidEpoch,
}

pub struct FetchSessionCache {
    sessions: HashMap<i32, FetchSession>,
    slots_max: usize,
    next_id: i32,
    tick: u64,
}

impl FetchSessionCache {
    pub fn new(slots_max: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            slots_max,
            next_id: 1,
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Creates a session for a full fetch, evicting the least recently used one if the cache
    /// is full. Returns `INVALID_SESSION_ID` when sessions are disabled (zero slots).
    pub fn create(&mut self, partitions: Vec<(FetchKey, CachedPartition)>) -> i32 {
        if self.slots_max == 0 {
            return INVALID_SESSION_ID;
        }
        if self.sessions.len() >= self.slots_max {
            if let Some(oldest) = self
                .sessions
                .values()
                .min_by_key(|s| s.last_used_tick)
                .map(|s| s.id)
            {
                self.sessions.remove(&oldest);
            }
        }
        let id = self.allocate_id();
        self.tick += 1;
        self.sessions.insert(
            id,
            FetchSession {
                id,
                next_epoch: 1,
                partitions,
                last_used_tick: self.tick,
            },
        );
        id
    }

    fn allocate_id(&mut self) -> i32 {
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id == i32::MAX {
                1
            } else {
                self.next_id + 1
            };
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Looks up a session for an incremental fetch and checks its epoch; on success the epoch
    /// advances, so a replayed request is refused.
    pub fn begin_incremental(
        &mut self,
        id: i32,
        epoch: i32,
    ) -> Result<&mut FetchSession, SessionError> {
        self.tick += 1;
        let tick = self.tick;
        let session = self.sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if session.next_epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used_tick = tick;
        Ok(session)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut FetchSession> {
        self.sessions.get_mut(&id)
    }

    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> FetchKey {
        FetchKey {
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition,
        }
    }

    #[test]
    fn epochs_must_advance_one_by_one() {
        let mut cache = FetchSessionCache::new(10);
        let id = cache.create(vec![(key(0), CachedPartition::new(0, 100))]);
        assert_ne!(id, INVALID_SESSION_ID);
        assert!(cache.begin_incremental(id, 1).is_ok());
        assert_eq!(
            cache.begin_incremental(id, 1).err(),
            Some(SessionError::InvalidEpoch)
        );
        assert!(cache.begin_incremental(id, 2).is_ok());
        assert_eq!(
            cache.begin_incremental(id + 1, 1).err(),
            Some(SessionError::NotFound)
        );
    }

    #[test]
    fn full_cache_evicts_least_recently_used() {
        let mut cache = FetchSessionCache::new(2);
        let a = cache.create(Vec::new());
        let b = cache.create(Vec::new());
        assert!(cache.begin_incremental(a, 1).is_ok());
        let c = cache.create(Vec::new());
        assert_eq!(cache.len(), 2);
        assert!(cache.get_mut(a).is_some());
        assert!(cache.get_mut(b).is_none());
        assert!(cache.get_mut(c).is_some());
    }

    #[test]
    fn zero_slots_means_no_sessions() {
        let mut cache = FetchSessionCache::new(0);
        assert_eq!(cache.create(Vec::new()), INVALID_SESSION_ID);
        assert!(cache.is_empty());
    }

    #[test]
    fn upsert_and_forget_keep_order() {
        let mut cache = FetchSessionCache::new(1);
        let id = cache.create(vec![(key(0), CachedPartition::new(0, 1))]);
        let session = cache.get_mut(id).unwrap();
        assert!(session.upsert(key(1), 5, 1));
        assert!(session.upsert(key(0), 7, 1));
        assert_eq!(
            session
                .partitions
                .iter()
                .map(|(k, p)| (k.partition, p.fetch_offset))
                .collect::<Vec<_>>(),
            vec![(0, 7), (1, 5)]
        );
        session.forget(&key(0));
        assert_eq!(session.partitions.len(), 1);
    }
}
