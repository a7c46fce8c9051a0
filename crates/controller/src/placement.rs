//! Replica placement (Kafka `metadata/placement/StripedReplicaPlacer.java`).
//!
//! Brokers are grouped by rack (rack-less brokers form the rack ""); racks are visited
//! round-robin from a random start and, inside a rack, brokers round-robin, advancing one
//! position per partition, so consecutive partitions stripe over racks and brokers. Replica 0
//! (the preferred leader) is always an unfenced broker; other replicas prefer unfenced brokers
//! of each rack and fall back to fenced ones; no broker appears twice in one partition. After
//! as many partitions as there are unfenced brokers the rack and broker orders are reshuffled
//! so the same combinations do not repeat. All randomness comes from the controller's seeded
//! [`ControllerRng`].

use std::collections::BTreeMap;

use crate::rng::ControllerRng;

/// A broker placement may use: registered and not in controlled shutdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableBroker {
    pub id: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// Why a placement is impossible (Kafka `InvalidReplicationFactorException` messages).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("Invalid replication factor {0}: the replication factor must be positive.")]
    NonPositive(i32),
    #[error("All brokers are currently fenced.")]
    AllFenced,
    #[error("The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered.")]
    TooFewBrokers {
        replication_factor: i32,
        brokers: usize,
    },
}

/// One rack's brokers in visiting order with Kafka `BrokerList`'s cursor.
#[derive(Clone, Debug)]
struct BrokerList {
    brokers: Vec<i32>,
    index: usize,
    offset: usize,
    /// `u64::MAX` = never used yet (placement epochs start at 0).
    epoch: u64,
}

impl Default for BrokerList {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            index: 0,
            offset: 0,
            epoch: u64::MAX,
        }
    }
}

impl BrokerList {
    fn initialize(&mut self, rng: &mut ControllerRng) {
        if !self.brokers.is_empty() {
            self.brokers.sort_unstable();
            self.offset = rng.below(self.brokers.len());
        }
    }

    /// The next broker of this rack in placement epoch `epoch`, or `None` when every broker
    /// of the list was handed out in this epoch.
    fn next(&mut self, epoch: u64) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

#[derive(Clone, Debug, Default)]
struct Rack {
    unfenced: BrokerList,
    fenced: BrokerList,
}

impl Rack {
    fn next(&mut self, epoch: u64) -> Option<i32> {
        self.unfenced
            .next(epoch)
            .or_else(|| self.fenced.next(epoch))
    }
}

/// Kafka `RackList`: the state of one placement call (one topic or one CreatePartitions).
struct RackList<'r> {
    rng: &'r mut ControllerRng,
    racks: BTreeMap<String, Rack>,
    rack_names: Vec<String>,
    total_brokers: usize,
    unfenced_brokers: usize,
    /// Placement epoch: one per partition placed. Unlike Kafka it never restarts at 0 after a
    /// reshuffle (`since_shuffle` counts instead), so every partition starts every broker list
    /// afresh and the replica-0 search always terminates.
    epoch: u64,
    since_shuffle: u64,
    offset: usize,
}

impl<'r> RackList<'r> {
    fn new(rng: &'r mut ControllerRng, brokers: &[UsableBroker]) -> Self {
        let mut racks: BTreeMap<String, Rack> = BTreeMap::new();
        let mut unfenced_brokers = 0;
        for b in brokers {
            let rack = racks.entry(b.rack.clone().unwrap_or_default()).or_default();
            if b.fenced {
                rack.fenced.brokers.push(b.id);
            } else {
                unfenced_brokers += 1;
                rack.unfenced.brokers.push(b.id);
            }
        }
        for rack in racks.values_mut() {
            rack.unfenced.initialize(rng);
            rack.fenced.initialize(rng);
        }
        // BTreeMap keys are sorted: the rack-less "" comes first as Kafka's empty Optional.
        let rack_names: Vec<String> = racks.keys().cloned().collect();
        let offset = if rack_names.is_empty() {
            0
        } else {
            rng.below(rack_names.len())
        };
        Self {
            rng,
            racks,
            rack_names,
            total_brokers: brokers.len(),
            unfenced_brokers,
            epoch: 0,
            since_shuffle: 0,
            offset,
        }
    }

    fn shuffle(&mut self) {
        self.rng.shuffle(&mut self.rack_names);
        for rack in self.racks.values_mut() {
            self.rng.shuffle(&mut rack.fenced.brokers);
            self.rng.shuffle(&mut rack.unfenced.brokers);
        }
    }

    fn rack(&mut self, index: usize) -> &mut Rack {
        let name = &self.rack_names[index];
        self.racks
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("rack_names and racks agree"))
    }

    fn place(&mut self, replication_factor: usize) -> Vec<i32> {
        assert!(replication_factor >= 1 && replication_factor <= self.total_brokers);
        assert!(self.unfenced_brokers > 0);
        if self.since_shuffle == self.unfenced_brokers as u64 && self.unfenced_brokers > 1 {
            self.shuffle();
            self.since_shuffle = 0;
        }
        if self.offset == self.rack_names.len() {
            self.offset = 0;
        }
        let epoch = self.epoch;
        let n = self.rack_names.len();
        let mut out = Vec::with_capacity(replication_factor);
        let mut first_rack = self.offset;
        // Replica 0: the first unfenced broker from the starting rack on. Terminates: the epoch
        // is new, so every list starts afresh, and some rack has an unfenced broker.
        loop {
            if let Some(b) = self.rack(first_rack).unfenced.next(epoch) {
                out.push(b);
                break;
            }
            first_rack = (first_rack + 1) % n;
        }
        let mut skip_rack = Some(first_rack);
        let mut rack_index = self.offset;
        while out.len() < replication_factor {
            // Terminates: replication_factor <= total brokers and each list hands out each of
            // its brokers once per epoch.
            let result = if skip_rack == Some(rack_index) {
                skip_rack = None;
                None
            } else {
                self.rack(rack_index).next(epoch)
            };
            rack_index = (rack_index + 1) % n;
            if let Some(b) = result {
                debug_assert!(!out.contains(&b), "broker {b} placed twice");
                out.push(b);
            }
        }
        self.epoch += 1;
        self.since_shuffle += 1;
        self.offset += 1;
        out
    }
}

/// Places `num_partitions` partitions of `replication_factor` replicas each over `brokers`
/// (Kafka `StripedReplicaPlacer.place`).
pub fn place(
    rng: &mut ControllerRng,
    brokers: &[UsableBroker],
    num_partitions: usize,
    replication_factor: i32,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor <= 0 {
        return Err(PlacementError::NonPositive(replication_factor));
    }
    if brokers.iter().all(|b| b.fenced) {
        return Err(PlacementError::AllFenced);
    }
    if replication_factor as usize > brokers.len() {
        return Err(PlacementError::TooFewBrokers {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let mut racks = RackList::new(rng, brokers);
    Ok((0..num_partitions)
        .map(|_| racks.place(replication_factor as usize))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn b(id: i32, rack: Option<&str>, fenced: bool) -> UsableBroker {
        UsableBroker {
            id,
            rack: rack.map(str::to_string),
            fenced,
        }
    }

    #[test]
    fn errors_match_kafka() {
        let mut rng = ControllerRng::new(1);
        let brokers = [b(1, None, false), b(2, None, true)];
        assert_eq!(
            place(&mut rng, &brokers, 1, 3).unwrap_err().to_string(),
            "The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        assert_eq!(
            place(&mut rng, &brokers, 1, 0).unwrap_err(),
            PlacementError::NonPositive(0)
        );
        assert_eq!(
            place(&mut rng, &[b(1, None, true)], 1, 1).unwrap_err(),
            PlacementError::AllFenced
        );
    }

    #[test]
    fn fenced_brokers_are_never_preferred_leaders_and_only_fill_in() {
        let mut rng = ControllerRng::new(9);
        let brokers = [
            b(1, None, false),
            b(2, None, true),
            b(3, None, false),
            b(4, None, true),
        ];
        let parts = place(&mut rng, &brokers, 50, 2).unwrap();
        for p in &parts {
            assert!(p[0] == 1 || p[0] == 3, "{p:?}");
            assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), 2);
        }
        // With RF 3 one fenced broker must be used per partition, never first.
        for p in place(&mut rng, &brokers, 20, 3).unwrap() {
            assert!(p[0] == 1 || p[0] == 3);
            assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), 3);
        }
    }

    #[test]
    fn replicas_spread_over_racks_and_leaders_stripe() {
        let mut rng = ControllerRng::new(5);
        let brokers: Vec<UsableBroker> = (0..6)
            .map(|i| b(i, Some(["a", "b", "c"][i as usize % 3]), false))
            .collect();
        let rack_of = |id: i32| id % 3;
        let parts = place(&mut rng, &brokers, 60, 3).unwrap();
        let mut leaders = BTreeMap::new();
        for p in &parts {
            let racks: BTreeSet<i32> = p.iter().map(|&id| rack_of(id)).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {p:?}");
            *leaders.entry(p[0]).or_insert(0) += 1;
        }
        // Striping: every broker leads, and evenly (60 partitions / 6 brokers).
        assert_eq!(leaders.len(), 6);
        assert!(leaders.values().all(|&n| n == 10), "{leaders:?}");
    }

    #[test]
    fn uneven_racks_still_distinct_and_deterministic() {
        let brokers = [
            b(1, Some("a"), false),
            b(2, Some("a"), false),
            b(3, Some("a"), false),
            b(4, Some("b"), false),
            b(5, None, false),
        ];
        let run = |seed| place(&mut ControllerRng::new(seed), &brokers, 30, 3).unwrap();
        let parts = run(11);
        assert_eq!(parts, run(11));
        for p in &parts {
            assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), 3);
            // Three racks ("", a, b) and RF 3: one replica in each.
            assert!(p.contains(&4) && p.contains(&5), "{p:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn placement_is_valid_for_any_cluster(
            seed in 0u64..1000,
            layout in proptest::collection::vec((0u8..4, proptest::bool::ANY), 1..12),
            parts in 1usize..20,
            rf in 1i32..5,
        ) {
            let brokers: Vec<UsableBroker> = layout.iter().enumerate().map(|(i, (rack, fenced))| {
                b(i as i32, (*rack > 0).then(|| format!("r{rack}")).as_deref(), *fenced)
            }).collect();
            let mut rng = ControllerRng::new(seed);
            match place(&mut rng, &brokers, parts, rf) {
                Ok(placed) => {
                    proptest::prop_assert_eq!(placed.len(), parts);
                    for p in placed {
                        proptest::prop_assert_eq!(p.len(), rf as usize);
                        let set: BTreeSet<i32> = p.iter().copied().collect();
                        proptest::prop_assert_eq!(set.len(), p.len());
                        proptest::prop_assert!(!brokers[p[0] as usize].fenced);
                    }
                }
                Err(PlacementError::AllFenced) => proptest::prop_assert!(brokers.iter().all(|b| b.fenced)),
                Err(PlacementError::TooFewBrokers { .. }) => proptest::prop_assert!(rf as usize > brokers.len()),
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }
}
