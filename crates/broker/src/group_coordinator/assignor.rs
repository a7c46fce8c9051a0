//! Server-side partition assignors for KIP-848 consumer groups (`group.consumer.assignors`):
//! `uniform` (Kafka's default: balanced and sticky) and `range` (per topic, contiguous
//! ranges in member order, like the client-side RangeAssignor).
//!
//! Both are pure functions of the members' subscriptions, the topics' partition counts and
//! (for stickiness) the current target assignment, so they are deterministic and unit-tested
//! without a broker.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What an assignor needs to know about a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub id: Uuid,
    pub name: String,
    pub partitions: i32,
}

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// Assignors this broker offers, default first (as Kafka's `group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// Runs assignor `name`; `None` if there is no such assignor.
pub fn assign(
    name: &str,
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicMetadata>,
    current: &BTreeMap<String, Assignment>,
) -> Option<BTreeMap<String, Assignment>> {
    match name {
        UNIFORM => Some(uniform(subscriptions, topics, current)),
        RANGE => Some(range(subscriptions, topics)),
        _ => None,
    }
}

/// Balanced and sticky: every partition goes to a subscribed member; a partition stays with
/// its current owner while that owner is subscribed and not above its fair share; the rest go
/// to the least-loaded subscribed member (ties by member id, so the result is deterministic).
pub fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicMetadata>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut load: BTreeMap<&str, usize> = subscriptions.keys().map(|m| (m.as_str(), 0)).collect();
    // Partitions with the members that may own them, in a fixed order.
    let mut partitions: Vec<(&TopicMetadata, i32, Vec<&str>)> = Vec::new();
    for topic in topics.values() {
        let eligible: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, subscribed)| subscribed.contains(&topic.name))
            .map(|(m, _)| m.as_str())
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..topic.partitions.max(0) {
            partitions.push((topic, p, eligible.clone()));
        }
    }
    // Fair shares: everyone gets `floor`, `extra` members one more.
    let members_with_work = subscriptions
        .values()
        .filter(|s| !s.is_empty())
        .count()
        .max(1);
    let floor = partitions.len() / members_with_work;
    let mut extra = partitions.len() % members_with_work;
    let mut unassigned = Vec::new();
    // Keep current owners first (stickiness), within the fair shares.
    for (topic, p, eligible) in &partitions {
        let owner = current.iter().find_map(|(member, assignment)| {
            assignment
                .get(&topic.id)
                .is_some_and(|ps| ps.contains(p))
                .then_some(member.as_str())
        });
        let keeps = owner.filter(|owner| {
            eligible.contains(owner) && (load[owner] < floor || (load[owner] == floor && extra > 0))
        });
        match keeps {
            Some(owner) => {
                if load[owner] == floor {
                    extra -= 1;
                }
                give(&mut result, &mut load, owner, topic.id, *p);
            }
            None => unassigned.push((*topic, *p, eligible)),
        }
    }
    for (topic, p, eligible) in unassigned {
        let Some(target) = eligible.iter().min_by_key(|m| (load[**m], **m)).copied() else {
            continue;
        };
        give(&mut result, &mut load, target, topic.id, p);
    }
    result
}

fn give(
    result: &mut BTreeMap<String, Assignment>,
    load: &mut BTreeMap<&str, usize>,
    member: &str,
    topic: Uuid,
    partition: i32,
) {
    if let Some(assignment) = result.get_mut(member) {
        assignment.entry(topic).or_default().insert(partition);
    }
    if let Some(n) = load.get_mut(member) {
        *n += 1;
    }
}

/// Per topic: the subscribed members in id order get contiguous ranges, the first ones one
/// partition more when the count does not divide evenly.
pub fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicMetadata>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for topic in topics.values() {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(&topic.name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let partitions = topic.partitions.max(0) as usize;
        let per_member = partitions / members.len();
        let extra = partitions % members.len();
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let count = per_member + usize::from(i < extra);
            if count == 0 {
                continue;
            }
            let set = (next..next + count).map(|p| p as i32).collect();
            if let Some(assignment) = result.get_mut(*member) {
                assignment.insert(topic.id, set);
            }
            next += count;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topics(counts: &[i32]) -> BTreeMap<String, TopicMetadata> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = format!("t{i}");
                let id = Uuid::from_u128(i as u128 + 1);
                (
                    name.clone(),
                    TopicMetadata {
                        id,
                        name,
                        partitions: *n,
                    },
                )
            })
            .collect()
    }

    fn all_subscribed(
        members: usize,
        topics: &BTreeMap<String, TopicMetadata>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        (0..members)
            .map(|i| (format!("m{i}"), topics.keys().cloned().collect()))
            .collect()
    }

    fn owned(result: &BTreeMap<String, Assignment>) -> Vec<(Uuid, i32)> {
        let mut all: Vec<(Uuid, i32)> = result
            .values()
            .flat_map(|a| {
                a.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            })
            .collect();
        all.sort();
        all
    }

    proptest! {
        /// Both assignors give every partition to exactly one member; uniform is balanced
        /// within one partition.
        #[test]
        fn disjoint_complete_and_balanced(
            counts in proptest::collection::vec(0i32..12, 1..4),
            members in 1usize..6,
        ) {
            let topics = topics(&counts);
            let subs = all_subscribed(members, &topics);
            let expected: Vec<(Uuid, i32)> = {
                let mut v: Vec<_> = topics.values().flat_map(|t| (0..t.partitions).map(move |p| (t.id, p))).collect();
                v.sort();
                v
            };
            for result in [uniform(&subs, &topics, &BTreeMap::new()), range(&subs, &topics)] {
                prop_assert_eq!(owned(&result), expected.clone());
            }
            let u = uniform(&subs, &topics, &BTreeMap::new());
            let loads: Vec<usize> = u.values().map(|a| a.values().map(BTreeSet::len).sum()).collect();
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{:?}", loads);
        }
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let topics = topics(&[6]);
        let two = all_subscribed(2, &topics);
        let before = uniform(&two, &topics, &BTreeMap::new());
        let three = all_subscribed(3, &topics);
        let after = uniform(&three, &topics, &before);
        // Each old member keeps 2 of its 3 partitions; the new one gets one from each.
        for member in ["m0", "m1"] {
            let kept = after[member]
                .values()
                .flatten()
                .filter(|p| before[member].values().flatten().any(|q| q == *p));
            assert_eq!(kept.count(), 2, "{member}: {after:?}");
        }
        assert_eq!(after["m2"].values().map(BTreeSet::len).sum::<usize>(), 2);
    }

    #[test]
    fn uniform_stays_balanced_when_sticky() {
        let topics = topics(&[6]);
        let before = uniform(&all_subscribed(3, &topics), &topics, &BTreeMap::new());
        let after = uniform(&all_subscribed(4, &topics), &topics, &before);
        let loads: Vec<usize> = after
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect();
        assert_eq!(loads.iter().sum::<usize>(), 6);
        assert!(loads.iter().all(|n| (1..=2).contains(n)), "{loads:?}");
    }

    #[test]
    fn only_subscribed_members_get_a_topic() {
        let topics = topics(&[2, 2]);
        let subs: BTreeMap<String, BTreeSet<String>> = [
            ("a".to_string(), ["t0".to_string()].into()),
            ("b".to_string(), ["t1".to_string()].into()),
        ]
        .into();
        for result in [
            uniform(&subs, &topics, &BTreeMap::new()),
            range(&subs, &topics),
        ] {
            assert_eq!(
                result["a"].keys().collect::<Vec<_>>(),
                vec![&topics["t0"].id]
            );
            assert_eq!(
                result["b"].keys().collect::<Vec<_>>(),
                vec![&topics["t1"].id]
            );
        }
    }
}
