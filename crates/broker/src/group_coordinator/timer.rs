//! Keyed deadlines for one coordinator shard (Kafka's `CoordinatorTimer`).
//!
//! Scheduling a key that is already scheduled replaces it, as in Kafka: a member's heartbeat
//! deadline is simply rescheduled on every heartbeat. Time is whatever the caller says it is
//! (milliseconds since the epoch), so tests drive it without sleeping.

use std::collections::{BTreeSet, HashMap};

/// What a deadline is about. One entry per key at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// A member's session (or, for a pending or new member, its join deadline).
    Heartbeat { group_id: String, member_id: String },
    /// The end of a group's join phase.
    Join { group_id: String },
    /// The deadline for the members of a new generation to send SyncGroup.
    Sync { group_id: String },
    /// The periodic offsets/empty-groups cleanup of the shard.
    GroupMetadataExpiration,
}

/// What to do when the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerTask {
    ExpireHeartbeat,
    CompleteJoin,
    /// Kafka's initial rebalance delay: wait `delay_ms` again if members joined meanwhile,
    /// while `remaining_ms` of the rebalance timeout is left.
    InitialRebalance {
        delay_ms: i32,
        remaining_ms: i32,
    },
    ExpirePendingSync {
        generation_id: i32,
    },
    CleanupGroupMetadata,
}

#[derive(Debug, Default)]
pub struct Timer {
    entries: HashMap<TimerKey, (i64, u64, TimerTask)>,
    /// (deadline, sequence, key): the sequence keeps equal deadlines apart and in order.
    queue: BTreeSet<(i64, u64, TimerKey)>,
    sequence: u64,
}

impl Timer {
    pub fn schedule(&mut self, key: TimerKey, deadline_ms: i64, task: TimerTask) {
        self.cancel(&key);
        self.sequence += 1;
        self.queue.insert((deadline_ms, self.sequence, key.clone()));
        self.entries.insert(key, (deadline_ms, self.sequence, task));
    }

    pub fn cancel(&mut self, key: &TimerKey) {
        if let Some((deadline_ms, sequence, _)) = self.entries.remove(key) {
            self.queue.remove(&(deadline_ms, sequence, key.clone()));
        }
    }

    pub fn is_scheduled(&self, key: &TimerKey) -> bool {
        self.entries.contains_key(key)
    }

    /// The deadline of `key`, if scheduled.
    pub fn deadline_ms(&self, key: &TimerKey) -> Option<i64> {
        self.entries.get(key).map(|(deadline, _, _)| *deadline)
    }

    /// The earliest deadline.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.queue.first().map(|(deadline, _, _)| *deadline)
    }

    /// Removes and returns the earliest entry due at `now_ms`, if any.
    pub fn pop_due(&mut self, now_ms: i64) -> Option<(TimerKey, TimerTask)> {
        let (deadline, _, _) = self.queue.first()?;
        if *deadline > now_ms {
            return None;
        }
        let (_, _, key) = self.queue.pop_first()?;
        let (_, _, task) = self.entries.remove(&key)?;
        Some((key, task))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str) -> TimerKey {
        TimerKey::Join {
            group_id: group.into(),
        }
    }

    #[test]
    fn rescheduling_replaces_and_cancel_removes() {
        let mut timer = Timer::default();
        timer.schedule(join("a"), 100, TimerTask::CompleteJoin);
        timer.schedule(join("b"), 50, TimerTask::CompleteJoin);
        timer.schedule(join("a"), 200, TimerTask::CompleteJoin);
        assert_eq!(timer.len(), 2);
        assert_eq!(timer.next_deadline_ms(), Some(50));
        assert_eq!(timer.pop_due(49), None);
        assert_eq!(
            timer.pop_due(150),
            Some((join("b"), TimerTask::CompleteJoin))
        );
        assert_eq!(timer.pop_due(150), None, "a moved to 200");
        timer.cancel(&join("a"));
        assert!(timer.is_empty());
        assert_eq!(timer.next_deadline_ms(), None);
    }
}
