//! `fjord_isr_shrinks_total` / `fjord_isr_expands_total` (Kafka's `IsrShrinksPerSec` /
//! `IsrExpandsPerSec`): a leader's ISR proposals are counted once the controller committed
//! them, whichever of the AlterPartition answer and the metadata image brings the commit
//! first, and the counters render on `/metrics`.
//!
//! The counters are process-wide, so this file holds a single test: its counts are exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_broker::metrics::{ISR_EXPANDS, ISR_SHRINKS};
use fjord_broker::partition::{
    BrokerDirectory, Partition, PartitionState, DEFAULT_REPLICATION_CONFIG,
};
use fjord_broker::replication::{
    AlterPartitionOutcome, BrokerStatus, FetchPartitionRequest, LeaderAndIsr,
};
use fjord_broker::testing::SingleNode;
use fjord_broker::BrokerConfig;
use fjord_storage::{AppendOrigin, Log, LogConfig};
use uuid::Uuid;

fn state(partition_epoch: i32, isr: Vec<i32>) -> PartitionState {
    PartitionState {
        leader: 1,
        leader_epoch: 1,
        partition_epoch,
        replicas: vec![1, 2],
        isr,
    }
}

fn answer(partition_epoch: i32, isr: Vec<i32>) -> LeaderAndIsr {
    LeaderAndIsr {
        leader_epoch: 1,
        partition_epoch,
        isr,
    }
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn committed_isr_changes_are_counted_once_and_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("t-0"), LogConfig::default(), true, 0).unwrap();
    log.append_batch(
        &fjord_protocol::batch_builder::encode_values(1_000, 2, b"v"),
        0,
        0,
        AppendOrigin::Client,
    )
    .unwrap();
    let up = BrokerStatus {
        broker_epoch: 10,
        fenced: false,
        in_controlled_shutdown: false,
    };
    let now_ms = fjord_broker::time::now_ms();
    let partition = Partition::hosted(
        Arc::from("t"),
        Uuid::nil(),
        0,
        log,
        1,
        state(1, vec![1, 2]),
        Arc::new(BrokerDirectory::from_statuses(BTreeMap::from([
            (1, up),
            (2, up),
        ]))),
        DEFAULT_REPLICATION_CONFIG,
    );
    assert_eq!((ISR_SHRINKS.get(), ISR_EXPANDS.get()), (0, 0));

    // Follower 2 has not fetched for longer than replica.lag.time.max.ms: a shrink, counted
    // only once the controller's answer commits it.
    let shrink = partition
        .maybe_shrink_isr(now_ms + 2 * DEFAULT_REPLICATION_CONFIG.replica_lag_time_max_ms)
        .expect("a shrink");
    assert_eq!(shrink.new_isr(), [1].into());
    assert_eq!(ISR_SHRINKS.get(), 0, "proposed, not committed");
    let outcome = partition
        .on_alter_partition_result(&shrink, Ok(answer(2, vec![1])), now_ms)
        .unwrap();
    assert!(matches!(outcome, AlterPartitionOutcome::Committed { .. }));
    assert_eq!(partition.isr_and_replicas(), Some((1, 2)));
    assert_eq!((ISR_SHRINKS.get(), ISR_EXPANDS.get()), (1, 0));

    // It catches up to the log end: an expansion, whose commit the metadata image brings
    // before the answer (as on the controller's own node). Counted once.
    let request = FetchPartitionRequest {
        key: (Uuid::nil(), 0),
        fetch_offset: 2,
        current_leader_epoch: 1,
        last_fetched_epoch: Some(0),
        log_start_offset: 0,
    };
    let (_, effects) = partition
        .serve_follower_fetch((2, 10), &request, 1 << 20, now_ms)
        .unwrap();
    let expand = effects.alter_partition.expect("an expansion");
    assert_eq!(expand.new_isr(), [1, 2].into());
    partition
        .apply_state(state(3, vec![1, 2]), DEFAULT_REPLICATION_CONFIG, now_ms)
        .unwrap();
    assert_eq!(partition.isr_and_replicas(), Some((2, 2)));
    assert_eq!((ISR_SHRINKS.get(), ISR_EXPANDS.get()), (1, 1));
    let outcome = partition
        .on_alter_partition_result(&expand, Ok(answer(3, vec![1, 2])), now_ms)
        .unwrap();
    assert!(matches!(outcome, AlterPartitionOutcome::Ignored));
    assert_eq!((ISR_SHRINKS.get(), ISR_EXPANDS.get()), (1, 1));

    // A shrink the controller refuses is not counted (the follower is behind again).
    partition
        .append_batch_as_leader(
            &fjord_protocol::batch_builder::encode_values(2_000, 1, b"w"),
            now_ms,
        )
        .unwrap();
    let shrink = partition
        .maybe_shrink_isr(now_ms + 4 * DEFAULT_REPLICATION_CONFIG.replica_lag_time_max_ms)
        .expect("a shrink");
    let refused = fjord_protocol::ResponseError::InvalidUpdateVersion;
    partition.on_alter_partition_result(&shrink, Err(refused), now_ms);
    assert_eq!((ISR_SHRINKS.get(), ISR_EXPANDS.get()), (1, 1));

    // Rendered as Prometheus counters.
    let values = BTreeMap::from([(
        "data.dir".to_string(),
        dir.path().join("node").display().to_string(),
    )]);
    let node = SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap();
    let text = node.render_metrics();
    for (name, value) in [
        ("fjord_isr_shrinks_total", 1.0),
        ("fjord_isr_expands_total", 1.0),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} counter\n")),
            "{name} is not a counter:\n{text}"
        );
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
}
