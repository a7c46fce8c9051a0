//! `Purgatory<T>`: acks=all produces waiting for the high watermark (Kafka's
//! `DelayedOperationPurgatory` holding `DelayedProduce`s, keyed by partition).
//!
//! An operation is parked with the offset the high watermark must reach (its last offset + 1)
//! and a deadline (the request's `timeout_ms`). It leaves the purgatory exactly once, by one of:
//! the high watermark reaching its offset ([`Purgatory::on_high_watermark`], in offset order),
//! its deadline passing ([`Purgatory::expire`], REQUEST_TIMED_OUT), or its partition's
//! leadership ending ([`Purgatory::fail_partition`], NOT_LEADER_OR_FOLLOWER). The fast path
//! ([`Purgatory::try_complete_or_park`]) completes at once when the high watermark is already
//! there, so a single node never parks. The number of parked operations is bounded
//! (`max_parked`); a full purgatory refuses with [`PurgatoryFull`], handing the operation
//! back for the caller to answer (Kafka has no bound; memory is the bound here).
//!
//! What the caller answers on completion (NONE or NOT_ENOUGH_REPLICAS_AFTER_APPEND) is
//! decided by `LeaderState::check_enough_replicas` at that moment, as in `DelayedProduce`.
//! Pure data structure: no clock, no locks.

use std::collections::{BTreeMap, BTreeSet};

use super::fetcher::PartitionKey;

/// The purgatory holds `max_parked` operations already.
#[derive(Debug, thiserror::Error)]
#[error("purgatory full ({max_parked} operations parked)")]
pub struct PurgatoryFull<T> {
    pub max_parked: usize,
    /// The operation that was not parked.
    pub operation: T,
}

/// The fast path's result.
#[derive(Debug, PartialEq, Eq)]
pub enum ParkOutcome<T> {
    /// The high watermark already reached the offset: the operation, to answer now.
    Completed(T),
    Parked,
}

#[derive(Debug)]
struct Parked<T> {
    deadline_ms: i64,
    operation: T,
}

/// See the module docs.
#[derive(Debug)]
pub struct Purgatory<T> {
    max_parked: usize,
    next_sequence: u64,
    /// Per partition, by `(required_offset, sequence)`: completion order is offset order, then
    /// parking order.
    by_partition: BTreeMap<PartitionKey, BTreeMap<(i64, u64), Parked<T>>>,
    /// `(deadline_ms, sequence)` → where the operation is, for expiry.
    by_deadline: BTreeSet<(i64, u64, PartitionKey, i64)>,
    len: usize,
}

impl<T> Purgatory<T> {
    pub fn new(max_parked: usize) -> Self {
        Self {
            max_parked,
            next_sequence: 0,
            by_partition: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parked operations of one partition.
    pub fn parked_for(&self, key: &PartitionKey) -> usize {
        self.by_partition.get(key).map_or(0, BTreeMap::len)
    }

    /// The earliest deadline, for the shell's timer.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.by_deadline.first().map(|&(deadline, ..)| deadline)
    }

    /// Completes `operation` at once if `high_watermark >= required_offset`, else parks it
    /// until then or `deadline_ms`.
    pub fn try_complete_or_park(
        &mut self,
        key: PartitionKey,
        required_offset: i64,
        high_watermark: i64,
        deadline_ms: i64,
        operation: T,
    ) -> Result<ParkOutcome<T>, PurgatoryFull<T>> {
        if high_watermark >= required_offset {
            return Ok(ParkOutcome::Completed(operation));
        }
        self.park(key, required_offset, deadline_ms, operation)?;
        Ok(ParkOutcome::Parked)
    }

    /// Parks `operation` until the high watermark of `key` reaches `required_offset`.
    pub fn park(
        &mut self,
        key: PartitionKey,
        required_offset: i64,
        deadline_ms: i64,
        operation: T,
    ) -> Result<(), PurgatoryFull<T>> {
        if self.len >= self.max_parked {
            return Err(PurgatoryFull {
                max_parked: self.max_parked,
                operation,
            });
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.by_partition.entry(key).or_default().insert(
            (required_offset, sequence),
            Parked {
                deadline_ms,
                operation,
            },
        );
        self.by_deadline
            .insert((deadline_ms, sequence, key, required_offset));
        self.len += 1;
        Ok(())
    }

    /// The operations of `key` whose offset the high watermark reached, in offset order.
    pub fn on_high_watermark(&mut self, key: &PartitionKey, high_watermark: i64) -> Vec<T> {
        let Some(parked) = self.by_partition.get_mut(key) else {
            return Vec::new();
        };
        // Everything with required_offset <= high_watermark.
        let rest = parked.split_off(&(high_watermark.saturating_add(1), 0));
        let done = std::mem::replace(parked, rest);
        if parked.is_empty() {
            self.by_partition.remove(key);
        }
        self.take(*key, done)
    }

    /// The operations whose deadline is at or before `now_ms`, earliest deadline first.
    pub fn expire(&mut self, now_ms: i64) -> Vec<T> {
        let mut expired = Vec::new();
        while let Some(&(deadline, sequence, key, required_offset)) = self.by_deadline.first() {
            if deadline > now_ms {
                break;
            }
            self.by_deadline.pop_first();
            if let Some(parked) = self.by_partition.get_mut(&key) {
                if let Some(entry) = parked.remove(&(required_offset, sequence)) {
                    expired.push(entry.operation);
                    self.len -= 1;
                }
                if parked.is_empty() {
                    self.by_partition.remove(&key);
                }
            }
        }
        expired
    }

    /// Every operation of `key` (leadership lost, partition deleted), in offset order.
    pub fn fail_partition(&mut self, key: &PartitionKey) -> Vec<T> {
        match self.by_partition.remove(key) {
            Some(parked) => self.take(*key, parked),
            None => Vec::new(),
        }
    }

    fn take(&mut self, key: PartitionKey, done: BTreeMap<(i64, u64), Parked<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(done.len());
        for ((required_offset, sequence), entry) in done {
            let removed =
                self.by_deadline
                    .remove(&(entry.deadline_ms, sequence, key, required_offset));
            debug_assert!(removed, "every parked operation has a deadline entry");
            out.push(entry.operation);
        }
        self.len -= out.len();
        debug_assert_eq!(self.len, self.by_deadline.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn key(partition: i32) -> PartitionKey {
        (Uuid::from_u128(7), partition)
    }

    #[test]
    fn fast_path_completes_without_parking() {
        let mut purgatory = Purgatory::new(1);
        let outcome = purgatory
            .try_complete_or_park(key(0), 10, 10, 100, "a")
            .unwrap();
        assert_eq!(outcome, ParkOutcome::Completed("a"));
        assert!(purgatory.is_empty());
        let outcome = purgatory
            .try_complete_or_park(key(0), 11, 10, 100, "b")
            .unwrap();
        assert_eq!(outcome, ParkOutcome::Parked);
        assert_eq!(purgatory.len(), 1);
    }

    #[test]
    fn high_watermark_completes_in_offset_order_per_partition() {
        let mut purgatory = Purgatory::new(10);
        purgatory.park(key(0), 30, 1_000, "c").unwrap();
        purgatory.park(key(0), 10, 1_000, "a").unwrap();
        purgatory.park(key(1), 10, 1_000, "other").unwrap();
        purgatory.park(key(0), 20, 1_000, "b").unwrap();
        purgatory.park(key(0), 20, 1_000, "b2").unwrap();
        assert_eq!(purgatory.on_high_watermark(&key(0), 9), Vec::<&str>::new());
        assert_eq!(
            purgatory.on_high_watermark(&key(0), 20),
            vec!["a", "b", "b2"]
        );
        assert_eq!(purgatory.len(), 2);
        assert_eq!(purgatory.parked_for(&key(1)), 1);
        assert_eq!(purgatory.on_high_watermark(&key(0), i64::MAX), vec!["c"]);
        assert_eq!(purgatory.next_deadline_ms(), Some(1_000));
        assert_eq!(purgatory.fail_partition(&key(1)), vec!["other"]);
        assert!(purgatory.is_empty());
        assert_eq!(purgatory.next_deadline_ms(), None);
    }

    #[test]
    fn expiry_and_bound() {
        let mut purgatory = Purgatory::new(2);
        purgatory.park(key(0), 10, 500, "late").unwrap();
        purgatory.park(key(1), 10, 100, "early").unwrap();
        let full = purgatory.park(key(0), 11, 50, "refused").unwrap_err();
        assert_eq!((full.max_parked, full.operation), (2, "refused"));
        assert!(purgatory.expire(99).is_empty());
        assert_eq!(purgatory.expire(100), vec!["early"]);
        // Room again.
        purgatory.park(key(0), 11, 50, "again").unwrap();
        assert_eq!(purgatory.expire(1_000), vec!["again", "late"]);
        assert!(purgatory.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Park {
            partition: i32,
            offset: i64,
            deadline: i64,
        },
        HighWatermark {
            partition: i32,
            hw: i64,
        },
        Expire {
            now: i64,
        },
        Fail {
            partition: i32,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0i32..3, 0i64..50, 0i64..100)
                .prop_map(|(partition, offset, deadline)| Op::Park { partition, offset, deadline }),
            2 => (0i32..3, 0i64..50).prop_map(|(partition, hw)| Op::HighWatermark { partition, hw }),
            1 => (0i64..100).prop_map(|now| Op::Expire { now }),
            1 => (0i32..3).prop_map(|partition| Op::Fail { partition }),
        ]
    }

    proptest! {
        /// Against a plain list model: every parked operation leaves exactly once, by the
        /// right cause, and the bound holds.
        #[test]
        fn prop_matches_a_list_model(ops in prop::collection::vec(op(), 1..80)) {
            let mut purgatory = Purgatory::new(16);
            // (id, partition, offset, deadline)
            let mut model: Vec<(u64, i32, i64, i64)> = Vec::new();
            let mut next_id = 0u64;
            let mut left = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Park { partition, offset, deadline } => {
                        let id = next_id;
                        next_id += 1;
                        match purgatory.park(key(partition), offset, deadline, id) {
                            Ok(()) => model.push((id, partition, offset, deadline)),
                            Err(full) => {
                                prop_assert_eq!(model.len(), 16);
                                prop_assert_eq!(full.operation, id);
                            }
                        }
                    }
                    Op::HighWatermark { partition, hw } => {
                        let got = purgatory.on_high_watermark(&key(partition), hw);
                        let mut want: Vec<(i64, u64)> = model
                            .iter()
                            .filter(|m| m.1 == partition && m.2 <= hw)
                            .map(|m| (m.2, m.0))
                            .collect();
                        want.sort();
                        let want: Vec<u64> = want.into_iter().map(|(_, id)| id).collect();
                        prop_assert_eq!(&got, &want);
                        model.retain(|m| !(m.1 == partition && m.2 <= hw));
                        for id in got { prop_assert!(left.insert(id)); }
                    }
                    Op::Expire { now } => {
                        let got = purgatory.expire(now);
                        let mut want: Vec<(i64, u64)> = model
                            .iter()
                            .filter(|m| m.3 <= now)
                            .map(|m| (m.3, m.0))
                            .collect();
                        want.sort();
                        let want: Vec<u64> = want.into_iter().map(|(_, id)| id).collect();
                        prop_assert_eq!(&got, &want);
                        model.retain(|m| m.3 > now);
                        for id in got { prop_assert!(left.insert(id)); }
                    }
                    Op::Fail { partition } => {
                        let mut got = purgatory.fail_partition(&key(partition));
                        got.sort();
                        let mut want: Vec<u64> =
                            model.iter().filter(|m| m.1 == partition).map(|m| m.0).collect();
                        want.sort();
                        prop_assert_eq!(&got, &want);
                        model.retain(|m| m.1 != partition);
                        for id in got { prop_assert!(left.insert(id)); }
                    }
                }
                prop_assert_eq!(purgatory.len(), model.len());
            }
        }
    }
}
