//! Broker sessions (Kafka `controller/BrokerHeartbeatManager.java`): soft state of the active
//! controller only, never written to the log.
//!
//! Per broker: the time of its last heartbeat (a monotonic `now_ms` passed in), the metadata
//! offset it reported, and the offset of its controlled-shutdown record. The broker's fenced /
//! in-controlled-shutdown state itself is read from the speculative image (plus the
//! controller's "being fenced" set), so this manager cannot disagree with the log.
//!
//! [`calculate_next_broker_state`] is Kafka's `calculateNextBrokerState`: a fenced broker is
//! unfenced once its metadata offset reaches the offset of its registration record; an unfenced
//! broker asking to shut down enters controlled shutdown if it leads partitions, else shuts down
//! now; a broker in controlled shutdown may shut down once it leads nothing and every active
//! broker's metadata offset has passed its controlled-shutdown record (`lowestActiveOffset`).

use std::collections::BTreeMap;

/// Kafka `BrokerControlState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerControlState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

impl BrokerControlState {
    pub fn fenced(self) -> bool {
        matches!(self, Self::Fenced | Self::ShutdownNow)
    }

    pub fn in_controlled_shutdown(self) -> bool {
        self == Self::ControlledShutdown
    }

    pub fn should_shut_down(self) -> bool {
        self == Self::ShutdownNow
    }
}

/// One broker's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerHeartbeatState {
    pub last_contact_ms: i64,
    /// The metadata offset of its last heartbeat, -1 before the first.
    pub metadata_offset: i64,
    /// Offset of the entry that put it in controlled shutdown, -1 if not shutting down.
    pub controlled_shutdown_offset: i64,
}

/// The heartbeat fields `calculate_next_broker_state` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatIntent {
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// Sessions of all registered brokers.
#[derive(Clone, Debug, Default)]
pub struct BrokerHeartbeatManager {
    brokers: BTreeMap<i32, BrokerHeartbeatState>,
}

impl BrokerHeartbeatManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, broker_id: i32) -> Option<&BrokerHeartbeatState> {
        self.brokers.get(&broker_id)
    }

    /// Starts (or restarts) a session, as Kafka's `register` on a new registration.
    pub fn register(&mut self, broker_id: i32, now_ms: i64) {
        self.brokers.insert(
            broker_id,
            BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: -1,
            },
        );
    }

    pub fn remove(&mut self, broker_id: i32) {
        self.brokers.remove(&broker_id);
    }

    /// Keeps only sessions of `registered` brokers, creating missing ones with contact `now_ms`.
    /// A newly active controller calls it with every contact reset so that a failover never
    /// fences brokers en masse.
    pub fn reset(&mut self, registered: impl Iterator<Item = i32>, now_ms: i64) {
        self.brokers.clear();
        for id in registered {
            self.register(id, now_ms);
        }
    }

    /// Kafka `touch`: a heartbeat arrived. Leaving the unfenced states forgets the
    /// controlled-shutdown offset.
    pub fn touch(&mut self, broker_id: i32, now_ms: i64, fenced: bool, metadata_offset: i64) {
        let state = self
            .brokers
            .entry(broker_id)
            .or_insert(BrokerHeartbeatState {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                controlled_shutdown_offset: -1,
            });
        state.last_contact_ms = now_ms;
        state.metadata_offset = metadata_offset;
        if fenced {
            state.controlled_shutdown_offset = -1;
        }
    }

    /// Records the offset of the controlled-shutdown record, unless one is already recorded.
    pub fn maybe_update_controlled_shutdown_offset(&mut self, broker_id: i32, offset: i64) {
        if let Some(state) = self.brokers.get_mut(&broker_id) {
            if state.controlled_shutdown_offset < 0 {
                state.controlled_shutdown_offset = offset;
            }
        }
    }

    /// Kafka `hasValidSession` for an unfenced broker: heard from within the session timeout.
    pub fn has_valid_session(&self, broker_id: i32, now_ms: i64, session_timeout_ms: i64) -> bool {
        self.brokers
            .get(&broker_id)
            .is_some_and(|s| s.last_contact_ms.saturating_add(session_timeout_ms) >= now_ms)
    }

    /// Kafka `findOneStaleBroker`: among `unfenced` brokers, the one heard from least recently
    /// if its session expired (ties by id).
    pub fn find_one_stale_broker(
        &self,
        unfenced: impl Iterator<Item = i32>,
        now_ms: i64,
        session_timeout_ms: i64,
    ) -> Option<i32> {
        unfenced
            .filter_map(|id| self.brokers.get(&id).map(|s| (s.last_contact_ms, id)))
            .min()
            .filter(|(last, _)| last.saturating_add(session_timeout_ms) < now_ms)
            .map(|(_, id)| id)
    }

    /// Kafka `lowestActiveOffset`: the lowest metadata offset among `active` brokers (unfenced
    /// and not shutting down), `i64::MAX` if none.
    pub fn lowest_active_offset(&self, active: impl Iterator<Item = i32>) -> i64 {
        active
            .filter_map(|id| self.brokers.get(&id))
            .filter(|s| s.controlled_shutdown_offset < 0)
            .map(|s| s.metadata_offset)
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// Kafka `BrokerHeartbeatManager.calculateNextBrokerState`.
pub fn calculate_next_broker_state(
    current: BrokerControlState,
    request: HeartbeatIntent,
    register_broker_record_offset: i64,
    controlled_shutdown_offset: i64,
    has_leaderships: impl FnOnce() -> bool,
    lowest_active_offset: impl FnOnce() -> i64,
) -> BrokerControlState {
    use BrokerControlState::*;
    match current {
        Fenced => {
            if request.want_shut_down {
                ShutdownNow
            } else if !request.want_fence
                && request.current_metadata_offset >= register_broker_record_offset
            {
                Unfenced
            } else {
                Fenced
            }
        }
        Unfenced => {
            if request.want_fence {
                if request.want_shut_down {
                    ShutdownNow
                } else {
                    Fenced
                }
            } else if request.want_shut_down {
                if has_leaderships() {
                    ControlledShutdown
                } else {
                    ShutdownNow
                }
            } else {
                Unfenced
            }
        }
        ControlledShutdown => {
            if has_leaderships() {
                ControlledShutdown
            } else if controlled_shutdown_offset <= lowest_active_offset() {
                ShutdownNow
            } else {
                ControlledShutdown
            }
        }
        ShutdownNow => ShutdownNow,
    }
}

#[cfg(test)]
mod tests {
    use super::BrokerControlState::*;
    use super::*;

    fn hb(offset: i64, want_fence: bool, want_shut_down: bool) -> HeartbeatIntent {
        HeartbeatIntent {
            current_metadata_offset: offset,
            want_fence,
            want_shut_down,
        }
    }

    #[test]
    fn fenced_broker_unfences_once_caught_up_with_its_registration() {
        let next = |offset| {
            calculate_next_broker_state(Fenced, hb(offset, false, false), 10, -1, || false, || 0)
        };
        assert_eq!(next(9), Fenced);
        assert_eq!(next(10), Unfenced);
        assert_eq!(
            calculate_next_broker_state(Fenced, hb(10, true, false), 10, -1, || false, || 0),
            Fenced
        );
        assert_eq!(
            calculate_next_broker_state(Fenced, hb(0, false, true), 10, -1, || true, || 0),
            ShutdownNow
        );
    }

    #[test]
    fn unfenced_broker_transitions() {
        let next =
            |f, s, leads| calculate_next_broker_state(Unfenced, hb(5, f, s), 1, -1, || leads, || 0);
        assert_eq!(next(false, false, true), Unfenced);
        assert_eq!(next(true, false, true), Fenced);
        assert_eq!(next(true, true, true), ShutdownNow);
        assert_eq!(next(false, true, true), ControlledShutdown);
        assert_eq!(next(false, true, false), ShutdownNow);
    }

    #[test]
    fn controlled_shutdown_waits_for_leaderships_and_lowest_active_offset() {
        let next = |leads, lowest| {
            calculate_next_broker_state(
                ControlledShutdown,
                hb(5, false, true),
                1,
                20,
                || leads,
                || lowest,
            )
        };
        assert_eq!(next(true, 100), ControlledShutdown);
        assert_eq!(next(false, 19), ControlledShutdown);
        assert_eq!(next(false, 20), ShutdownNow);
    }

    #[test]
    fn sessions_expire_one_broker_at_a_time_oldest_first() {
        let mut m = BrokerHeartbeatManager::new();
        m.register(1, 0);
        m.register(2, 0);
        m.register(3, 0);
        m.touch(1, 500, false, 7);
        m.touch(2, 300, false, 7);
        let unfenced = || [1, 2, 3].into_iter();
        assert_eq!(m.find_one_stale_broker(unfenced(), 1000, 1000), None);
        assert_eq!(m.find_one_stale_broker(unfenced(), 1001, 1000), Some(3));
        assert_eq!(
            m.find_one_stale_broker([1, 2].into_iter(), 1301, 1000),
            Some(2)
        );
        assert!(m.has_valid_session(1, 1500, 1000));
        assert!(!m.has_valid_session(1, 1501, 1000));
        assert!(!m.has_valid_session(9, 0, 1000));
        m.reset([1, 2, 3].into_iter(), 5000);
        assert_eq!(m.find_one_stale_broker(unfenced(), 6000, 1000), None);
    }

    #[test]
    fn lowest_active_offset_skips_shutting_down_brokers() {
        let mut m = BrokerHeartbeatManager::new();
        m.touch(1, 0, false, 50);
        m.touch(2, 0, false, 10);
        m.touch(3, 0, false, 30);
        assert_eq!(m.lowest_active_offset([1, 2, 3].into_iter()), 10);
        m.maybe_update_controlled_shutdown_offset(2, 40);
        m.maybe_update_controlled_shutdown_offset(2, 99);
        assert_eq!(m.get(2).unwrap().controlled_shutdown_offset, 40);
        assert_eq!(m.lowest_active_offset([1, 2, 3].into_iter()), 30);
        assert_eq!(m.lowest_active_offset(std::iter::empty()), i64::MAX);
        m.touch(2, 1, true, 10);
        assert_eq!(m.get(2).unwrap().controlled_shutdown_offset, -1);
    }
}
