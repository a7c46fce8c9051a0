//! Metadata invariants (design section 8, item 2), checked by the controller in debug builds
//! after every committed entry and before returning every result, and by the tests.
//!
//! State, for every partition of `next`: replicas distinct; ISR a non-empty subset of the
//! replicas; the leader, if any, in the ISR; adding/removing replicas among the replicas. A
//! fenced or unregistered broker leads nothing and is in an ISR only as the last member of a
//! leaderless partition (an empty ISR is never written).
//!
//! Transition `prev -> next`: leader and partition epochs never decrease; a partition whose
//! registration changed has a higher partition epoch; a new leader (or a new leader epoch) names
//! a registered, unfenced broker not in controlled shutdown; brokers joining an ISR (or the ISR
//! of a new partition) are such brokers too, except the survivor of an unclean election or
//! the sole remaining member.

use std::collections::BTreeSet;

use fjord_metadata::{MetadataImage, NO_LEADER};

fn active(image: &MetadataImage, id: i32) -> bool {
    image
        .broker(id)
        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// Checks the state invariants of `next` and the transition from `prev`.
pub fn check_transition(prev: &MetadataImage, next: &MetadataImage) -> Result<(), String> {
    for t in next.topics.values() {
        let before = prev.topic(&t.id);
        for (pid, p) in &t.partitions {
            let at = || format!("{}-{pid}", t.name);
            let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
            if p.replicas.is_empty() || replicas.len() != p.replicas.len() {
                return Err(format!("{}: bad replicas {:?}", at(), p.replicas));
            }
            let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
            if isr.is_empty() || isr.len() != p.isr.len() || !isr.is_subset(&replicas) {
                return Err(format!(
                    "{}: ISR {:?} not a non-empty subset of {:?}",
                    at(),
                    p.isr,
                    p.replicas
                ));
            }
            if p.leader != NO_LEADER && !isr.contains(&p.leader) {
                return Err(format!(
                    "{}: leader {} not in ISR {:?}",
                    at(),
                    p.leader,
                    p.isr
                ));
            }
            if p.adding_replicas
                .iter()
                .chain(&p.removing_replicas)
                .any(|r| !replicas.contains(r))
            {
                return Err(format!("{}: adding/removing outside replicas", at()));
            }
            if p.leader != NO_LEADER && next.broker(p.leader).is_none_or(|b| b.fenced) {
                return Err(format!(
                    "{}: leader {} is fenced or unregistered",
                    at(),
                    p.leader
                ));
            }
            for m in &p.isr {
                if next.broker(*m).is_none_or(|b| b.fenced)
                    && !(p.isr.len() == 1 && p.leader == NO_LEADER)
                {
                    return Err(format!(
                        "{}: fenced or unregistered broker {m} in ISR {:?} led by {}",
                        at(),
                        p.isr,
                        p.leader
                    ));
                }
            }
            let old = before.and_then(|b| b.partitions.get(pid));
            match old {
                Some(old) => {
                    if p.leader_epoch < old.leader_epoch || p.partition_epoch < old.partition_epoch
                    {
                        return Err(format!("{}: epochs went backwards", at()));
                    }
                    if p != old && p.partition_epoch == old.partition_epoch {
                        return Err(format!("{}: changed without a partition epoch bump", at()));
                    }
                    if p.leader_epoch != old.leader_epoch
                        && p.leader != NO_LEADER
                        && !active(next, p.leader)
                    {
                        return Err(format!("{}: new leader {} is not active", at(), p.leader));
                    }
                    let unclean_survivor = p.isr.len() == 1 && p.isr[0] == p.leader;
                    for m in &p.isr {
                        if !old.isr.contains(m) && !active(next, *m) && !unclean_survivor {
                            return Err(format!("{}: inactive broker {m} joined the ISR", at()));
                        }
                    }
                }
                None => {
                    if p.leader != NO_LEADER && !active(next, p.leader) {
                        return Err(format!(
                            "{}: new partition led by inactive {}",
                            at(),
                            p.leader
                        ));
                    }
                    if let Some(m) = p.isr.iter().find(|m| !active(next, **m)) {
                        return Err(format!(
                            "{}: new partition with inactive ISR member {m}",
                            at()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
