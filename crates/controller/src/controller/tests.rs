//! Unit tests of the controller, after Kafka's `QuorumControllerTest`,
//! `ClusterControlManagerTest`, `ReplicationControlManagerTest` and
//! `ProducerIdControlManagerTest`.

use fjord_metadata::{
    ConfigResource, LeaderRecoveryState, MetadataBatch, MetadataRecord, METADATA_VERSION_FEATURE,
    NO_LEADER,
};
use uuid::Uuid;

use super::harness::{config, registration, Harness, CLUSTER};
use super::{ControllerConfig, QuorumController, DEFAULT_METADATA_VERSION};
use crate::api::*;

fn err_code(reply: &ControllerReply) -> ErrorCode {
    match reply {
        ControllerReply::BrokerRegistration(r) => r.error.code,
        ControllerReply::BrokerHeartbeat(r) => r.error.code,
        ControllerReply::UnregisterBroker(e) => e.code,
        ControllerReply::Error(e) => e.code,
        ControllerReply::AllocateProducerIds(r) => r.error.code,
        other => panic!("no single error in {other:?}"),
    }
}

fn create(h: &mut Harness, topic: CreatableTopic, validate_only: bool) -> CreatableTopicResult {
    match h.reply(ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![topic],
        validate_only,
    })) {
        ControllerReply::CreateTopics(mut r) => r.topics.remove(0),
        other => panic!("{other:?}"),
    }
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: vec![],
        configs: vec![],
    }
}

// ---- lifecycle ----

#[test]
fn bootstrap_forms_cluster_id_and_metadata_version_once() {
    let mut c = QuorumController::new(ControllerConfig {
        cluster_id: None,
        ..config()
    });
    assert_eq!(
        err_code(
            &c.handle(
                0,
                ControllerRequest::UnregisterBroker(UnregisterBrokerRequest { broker_id: 1 })
            )
            .reply
        ),
        ErrorCode::NotController
    );
    let results = c.on_became_active(0);
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r.offset, 0);
    let MetadataRecord::ClusterId(id) = &r.records[0] else {
        panic!("{:?}", r.records)
    };
    assert_eq!(id.cluster_id.len(), 22);
    assert_eq!(
        r.records[1],
        MetadataRecord::FeatureLevel(fjord_metadata::FeatureLevelRecord {
            name: METADATA_VERSION_FEATURE.into(),
            feature_level: DEFAULT_METADATA_VERSION
        })
    );
    // The speculative image has it before the commit; the committed one after.
    assert!(c.speculative_image().cluster_id.is_some());
    assert!(c.committed_image().cluster_id.is_none());
    c.replay(&MetadataBatch {
        offset: 0,
        epoch: 1,
        records: r.records.clone(),
    })
    .unwrap();
    assert_eq!(c.pending_entries(), 0);
    c.on_resigned();
    assert!(c.on_became_active(10).is_empty(), "bootstrap happens once");
    assert_eq!(
        c.committed_image().metadata_version(),
        Some(DEFAULT_METADATA_VERSION)
    );
}

#[test]
fn replay_refuses_out_of_order_and_bad_entries() {
    let mut h = Harness::new(config());
    let err =
        h.c.replay(&MetadataBatch {
            offset: 0,
            epoch: 1,
            records: vec![],
        })
        .unwrap_err();
    assert!(
        matches!(err, crate::ControllerError::OutOfOrder { .. }),
        "{err}"
    );
    let bad = MetadataBatch {
        offset: 5,
        epoch: 1,
        records: vec![MetadataRecord::RemoveTopic(
            fjord_metadata::RemoveTopicRecord {
                topic_id: Uuid::from_u128(9),
            },
        )],
    };
    assert!(matches!(
        h.c.replay(&bad).unwrap_err(),
        crate::ControllerError::Replay { offset: 5, .. }
    ));
}

#[test]
fn speculative_state_is_visible_before_commit_and_dropped_on_resignation() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None)]);
    h.hold = true;
    let first = h.handle(ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![topic("a", 1, 1)],
        validate_only: false,
    }));
    assert_eq!(first.records.len(), 2);
    let second = create(&mut h, topic("a", 1, 1), false);
    assert_eq!(second.error.code, ErrorCode::TopicAlreadyExists);
    // A reply without records waits for the last proposal.
    let r = h.c.handle(
        h.now,
        ControllerRequest::DeleteTopics(DeleteTopicsRequest {
            topics: vec![TopicRef::Name("zz".into())],
        }),
    );
    assert!(r.records.is_empty());
    assert_eq!(r.offset, first.offset);
    assert!(h.c.committed_image().topic_by_name("a").is_none());
    h.c.on_resigned();
    assert!(h.c.speculative_image().topic_by_name("a").is_none());
    assert_eq!(
        err_code(
            &h.c.handle(
                0,
                ControllerRequest::UnregisterBroker(UnregisterBrokerRequest { broker_id: 1 })
            )
            .reply
        ),
        ErrorCode::NotController
    );
}

#[test]
fn inactive_controller_follows_committed_entries() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None)]);
    h.create_topic("t", 3, 2);
    let mut follower = QuorumController::new(config());
    for b in &h.log {
        follower.replay(b).unwrap();
    }
    assert_eq!(**follower.speculative_image(), **h.c.committed_image());
    // Becoming active later continues at the next offset, without a bootstrap.
    assert!(follower.on_became_active(0).is_empty());
    assert_eq!(follower.next_write_offset(), h.offset() + 1);
}

// ---- registration ----

#[test]
fn registration_epoch_is_the_entry_offset_and_starts_fenced() {
    let mut h = Harness::new(config());
    let before = h.offset();
    let epoch = h.register(1, Some("r1"));
    assert_eq!(epoch, before + 1);
    assert_eq!(h.offset(), epoch);
    let b = h.broker(1);
    assert!(b.fenced);
    assert_eq!(b.epoch, epoch);
    assert_eq!(b.rack.as_deref(), Some("r1"));
}

#[test]
fn registration_refusals_as_kafka() {
    let mut h = Harness::new(config());
    let mut wrong = registration(1, Uuid::from_u128(1), None);
    wrong.cluster_id = "other".into();
    let reply = h.reply(ControllerRequest::BrokerRegistration(wrong));
    assert_eq!(err_code(&reply), ErrorCode::InconsistentClusterId);
    let mut old = registration(1, Uuid::from_u128(1), None);
    old.features[0].max_supported_version = 3;
    assert_eq!(
        err_code(&h.reply(ControllerRequest::BrokerRegistration(old))),
        ErrorCode::UnsupportedVersion
    );
    let mut no_features = registration(1, Uuid::from_u128(1), None);
    no_features.features.clear();
    assert_eq!(
        err_code(&h.reply(ControllerRequest::BrokerRegistration(no_features))),
        ErrorCode::UnsupportedVersion
    );

    let epoch = h.brokers(&[(1, None)])[0];
    // Another incarnation while the session is live.
    let other = registration(1, Uuid::from_u128(99), None);
    assert_eq!(
        err_code(&h.reply(ControllerRequest::BrokerRegistration(other.clone()))),
        ErrorCode::DuplicateBrokerRegistration
    );
    // The same incarnation again: idempotent, no records.
    let same = h.handle(ControllerRequest::BrokerRegistration(registration(
        1,
        Uuid::from_u128(0x1001),
        None,
    )));
    assert!(same.records.is_empty());
    assert_eq!(
        same.reply,
        ControllerReply::BrokerRegistration(BrokerRegistrationReply {
            error: ApiError::NONE,
            broker_epoch: epoch
        })
    );
    // After the session expired the new incarnation registers with a new epoch.
    h.now += config().broker_session_timeout_ms + 1;
    let reply = h.reply(ControllerRequest::BrokerRegistration(other));
    let ControllerReply::BrokerRegistration(r) = reply else {
        panic!()
    };
    assert!(r.error.is_ok());
    assert!(r.broker_epoch > epoch);
    assert!(h.broker(1).fenced);
    assert_eq!(h.broker(1).incarnation_id, Uuid::from_u128(99));
}

#[test]
fn new_incarnation_leaves_isrs_and_leaderships_of_the_old_one() {
    let mut h = Harness::new(config());
    let epochs = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2], vec![2, 1]]);
    h.now += 100_000;
    h.heartbeat(2, epochs[1]);
    h.incarnations.insert(1, Uuid::from_u128(555));
    h.register(1, None);
    let p0 = h.partition(t, 0);
    assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
    assert_eq!(h.partition(t, 1).isr, vec![2]);
    h.assert_log_rebuilds_image();
}

// ---- heartbeats, fencing, controlled shutdown ----

#[test]
fn heartbeat_unfences_once_caught_up_and_checks_epochs() {
    let mut h = Harness::new(config());
    let epoch = h.register(1, None);
    let r = h.heartbeat_full(1, epoch + 1, 0, false, false);
    assert_eq!(r.error.code, ErrorCode::StaleBrokerEpoch);
    let r = h.heartbeat_full(7, 0, 0, false, false);
    assert_eq!(r.error.code, ErrorCode::StaleBrokerEpoch);
    let r = h.heartbeat_full(1, epoch, epoch - 1, false, false);
    assert!(r.is_fenced && !r.is_caught_up);
    assert!(h.broker(1).fenced);
    let r = h.heartbeat_full(1, epoch, epoch, false, false);
    assert!(!r.is_fenced && r.is_caught_up && !r.should_shut_down);
    assert!(!h.broker(1).fenced);
    // WantFence fences it again.
    let r = h.heartbeat_full(1, epoch, epoch, true, false);
    assert!(r.is_fenced);
    assert!(h.broker(1).fenced);
}

#[test]
fn fenced_broker_asking_to_shut_down_may_do_so_at_once() {
    let mut h = Harness::new(config());
    let epoch = h.register(1, None);
    let r = h.heartbeat_full(1, epoch, 0, false, true);
    assert!(r.should_shut_down && r.is_fenced);
}

#[test]
fn session_timeout_fences_one_broker_per_tick_and_moves_leadership() {
    let mut h = Harness::new(config());
    let epochs = h.brokers(&[(1, None), (2, None), (3, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
    let timeout = config().broker_session_timeout_ms;
    h.now += timeout / 2;
    h.heartbeat(3, epochs[2]);
    h.now += timeout / 2 + 1;
    // Brokers 1 and 2 expired: one per tick, the least recently heard first (tie: lower id).
    let results = h.tick();
    assert_eq!(results.len(), 1);
    assert!(h.broker(1).fenced);
    assert!(!h.broker(2).fenced);
    let p0 = h.partition(t, 0);
    assert_eq!(
        p0.leader, 2,
        "clean election of the first ISR replica in order"
    );
    assert_eq!(p0.isr, vec![2, 3]);
    assert_eq!(p0.leader_epoch, 1);
    h.tick();
    assert!(h.broker(2).fenced);
    let p0 = h.partition(t, 0);
    assert_eq!((p0.leader, p0.isr.clone()), (3, vec![3]));
    h.tick();
    assert!(!h.broker(3).fenced, "broker 3 heartbeated in time");
    // Now 3 expires too: the last ISR member stays, the partition becomes leaderless.
    h.now += timeout;
    h.tick();
    let p0 = h.partition(t, 0);
    assert_eq!((p0.leader, p0.isr.clone()), (NO_LEADER, vec![3]));
    // Broker 3 comes back: unfencing elects it where it is in the ISR.
    let r = h.heartbeat(3, epochs[2]);
    assert!(!r.is_fenced);
    assert_eq!(h.partition(t, 0).leader, 3);
    assert_eq!(h.partition(t, 1).leader, 3);
    h.assert_log_rebuilds_image();
}

#[test]
fn failover_resets_sessions_instead_of_fencing_everyone() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None)]);
    h.now += 100_000;
    h.c.on_resigned();
    assert!(h.c.on_became_active(h.now).is_empty());
    assert!(h.tick().is_empty());
    assert!(!h.broker(1).fenced && !h.broker(2).fenced);
    h.now += config().broker_session_timeout_ms + 1;
    h.tick();
    assert!(h.broker(1).fenced);
}

#[test]
fn controlled_shutdown_moves_leadership_then_allows_shutdown() {
    let mut h = Harness::new(config());
    let epochs = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2], vec![2, 1]]);
    let r = h.heartbeat_full(1, epochs[0], h.offset(), false, true);
    assert!(r.in_controlled_shutdown && !r.should_shut_down && !r.is_fenced);
    let b1 = h.broker(1);
    assert!(b1.in_controlled_shutdown);
    let p0 = h.partition(t, 0);
    assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
    assert_eq!(h.partition(t, 1).isr, vec![2]);
    // Broker 2 has not yet seen the shutdown entry: lowestActiveOffset holds broker 1 back.
    let shutdown_offset = h.offset();
    h.heartbeat_full(2, epochs[1], shutdown_offset - 1, false, false);
    let r = h.heartbeat_full(1, epochs[0], shutdown_offset, false, true);
    assert!(!r.should_shut_down);
    h.heartbeat_full(2, epochs[1], shutdown_offset, false, false);
    let r = h.heartbeat_full(1, epochs[0], shutdown_offset, false, true);
    assert!(r.should_shut_down && r.is_fenced);
    assert!(h.broker(1).fenced);
    // Fenced and shutting-down brokers cannot be elected.
    match h.reply(ControllerRequest::ElectLeaders(ElectLeadersRequest {
        election_type: ElectionType::Preferred,
        topic_partitions: Some(vec![("t".into(), vec![0])]),
    })) {
        ControllerReply::ElectLeaders(r) => assert_eq!(
            r.results[0].error.code,
            ErrorCode::PreferredLeaderNotAvailable
        ),
        other => panic!("{other:?}"),
    }
    h.assert_log_rebuilds_image();
}

#[test]
fn single_node_controlled_shutdown_leaves_partitions_leaderless_until_restart() {
    let mut h = Harness::new(config());
    let epoch = h.brokers(&[(1, None)])[0];
    let t = h.create_topic("t", 2, 1);
    let r = h.heartbeat_full(1, epoch, h.offset(), false, true);
    assert!(r.in_controlled_shutdown);
    for p in 0..2 {
        let p = h.partition(t, p);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (NO_LEADER, vec![1], 1)
        );
    }
    let r = h.heartbeat_full(1, epoch, h.offset(), false, true);
    assert!(r.should_shut_down);
    // Restart: a new incarnation registers, catches up and leads again.
    h.incarnations.insert(1, Uuid::from_u128(77));
    let epoch = h.register(1, None);
    assert!(!h.broker(1).in_controlled_shutdown);
    h.heartbeat(1, epoch);
    for p in 0..2 {
        let p = h.partition(t, p);
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
    }
}

#[test]
fn bulk_fencing_is_spread_over_ticks_with_the_fence_record_last() {
    let mut h = Harness::new(ControllerConfig {
        max_records_per_entry: 4,
        ..config()
    });
    let epochs = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]; 3]);
    h.create_assigned("u", vec![vec![1, 2]; 3]);
    h.now += config().broker_session_timeout_ms / 2;
    h.heartbeat(2, epochs[1]);
    h.now += config().broker_session_timeout_ms / 2 + 1;
    let first = h.tick();
    assert_eq!(
        first[0].records.len(),
        3,
        "a full chunk of partition changes"
    );
    assert!(!h.broker(1).fenced, "the fence record comes last");
    assert!(h.c.brokers_being_fenced().contains(&1));
    // Meanwhile broker 1 is no acceptable leader and joins no ISR.
    assert!(!h.c.is_active_broker(
        &fjord_metadata::MetadataDelta::new(h.c.speculative_image().clone()),
        1
    ));
    let mut ticks = 0;
    while !h.broker(1).fenced {
        h.tick();
        ticks += 1;
        assert!(ticks < 5);
    }
    for p in 0..3 {
        assert_eq!(h.partition(t, p).isr, vec![2]);
    }
    assert!(h.c.brokers_being_fenced().is_empty());
    assert!(h.log.iter().all(|b| b.records.len() <= 4));
    h.assert_log_rebuilds_image();
}

#[test]
fn unregister_broker_removes_it() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]]);
    assert_eq!(
        err_code(&h.reply(ControllerRequest::UnregisterBroker(
            UnregisterBrokerRequest { broker_id: 9 }
        ))),
        ErrorCode::BrokerIdNotRegistered
    );
    assert_eq!(
        err_code(&h.reply(ControllerRequest::UnregisterBroker(
            UnregisterBrokerRequest { broker_id: 1 }
        ))),
        ErrorCode::None
    );
    assert!(h.c.committed_image().broker(1).is_none());
    assert_eq!(h.partition(t, 0).leader, 2);
    h.assert_log_rebuilds_image();
}

// ---- topics ----

#[test]
fn create_topics_places_across_racks_with_unfenced_leaders() {
    let mut h = Harness::new(config());
    h.brokers(&[
        (1, Some("a")),
        (2, Some("a")),
        (3, Some("b")),
        (4, Some("b")),
        (5, Some("c")),
    ]);
    let r = create(&mut h, topic("t", 10, 3), false);
    assert!(r.error.is_ok());
    assert_eq!((r.num_partitions, r.replication_factor), (10, 3));
    let rack = |id: i32| h.broker(id).rack.unwrap();
    for p in 0..10 {
        let part = h.partition(r.topic_id, p);
        let racks: std::collections::BTreeSet<String> =
            part.replicas.iter().map(|b| rack(*b)).collect();
        assert_eq!(racks.len(), 3, "one replica per rack: {:?}", part.replicas);
        assert_eq!(part.isr, part.replicas);
        assert_eq!(part.leader, part.replicas[0]);
        assert_eq!((part.leader_epoch, part.partition_epoch), (0, 0));
    }
}

#[test]
fn create_topics_errors_as_kafka() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None)]);
    let r = create(&mut h, topic("t", 1, 3), false);
    assert_eq!(r.error.code, ErrorCode::InvalidReplicationFactor);
    assert_eq!(
        r.error.message.as_deref(),
        Some("Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 2 broker(s) are registered.")
    );
    assert_eq!(
        create(&mut h, topic("t", 0, 1), false).error.code,
        ErrorCode::InvalidPartitions
    );
    assert_eq!(
        create(&mut h, topic("t", 1, 0), false).error.code,
        ErrorCode::InvalidReplicationFactor
    );
    assert_eq!(
        create(&mut h, topic("bad name", 1, 1), false).error.code,
        ErrorCode::InvalidTopicException
    );
    h.create_topic("a.b", 1, 1);
    let r = create(&mut h, topic("a_b", 1, 1), false);
    assert_eq!(
        r.error.message.as_deref(),
        Some("Topic 'a_b' collides with existing topic: a.b")
    );
    let r = create(&mut h, topic("a.b", 1, 1), false);
    assert_eq!(
        r.error,
        ApiError::new(ErrorCode::TopicAlreadyExists, "Topic 'a.b' already exists.")
    );
    let mut with_null = topic("n", 1, 1);
    with_null.configs = vec![("retention.ms".into(), None)];
    assert_eq!(
        create(&mut h, with_null, false).error.code,
        ErrorCode::InvalidConfig
    );
    // Manual assignments.
    let assigned = |a: Vec<(i32, Vec<i32>)>| CreatableTopic {
        name: "m".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: a,
        configs: vec![],
    };
    let e = create(&mut h, assigned(vec![(0, vec![1, 9])]), false).error;
    assert_eq!(
        e.message.as_deref(),
        Some(
            "The manual partition assignment includes broker 9, but no such broker is registered."
        )
    );
    assert_eq!(
        create(&mut h, assigned(vec![(0, vec![1, 1])]), false)
            .error
            .code,
        ErrorCode::InvalidReplicaAssignment
    );
    assert_eq!(
        create(&mut h, assigned(vec![(0, vec![1]), (1, vec![1, 2])]), false)
            .error
            .code,
        ErrorCode::InvalidReplicaAssignment
    );
    let e = create(&mut h, assigned(vec![(0, vec![1]), (2, vec![2])]), false).error;
    assert_eq!(
        e.message.as_deref(),
        Some("partitions should be a consecutive 0-based integer sequence")
    );
    let mut both = assigned(vec![(0, vec![1])]);
    both.num_partitions = 1;
    assert_eq!(
        create(&mut h, both, false).error.code,
        ErrorCode::InvalidRequest
    );
    // Duplicates in one request.
    match h.reply(ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![topic("d", 1, 1), topic("d", 1, 1)],
        validate_only: false,
    })) {
        ControllerReply::CreateTopics(r) => assert!(r
            .topics
            .iter()
            .all(|t| t.error.code == ErrorCode::InvalidRequest)),
        other => panic!("{other:?}"),
    }
    assert!(h.c.committed_image().topic_by_name("d").is_none());
}

#[test]
fn create_topic_isr_skips_fenced_replicas_and_validate_only_writes_nothing() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None)]);
    h.register(2, None); // fenced
    let t = h.create_assigned("t", vec![vec![2, 1]]);
    let p = h.partition(t, 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2, 1], vec![1], 1)
    );
    let all_fenced = CreatableTopic {
        name: "f".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![2])],
        configs: vec![],
    };
    assert_eq!(
        create(&mut h, all_fenced, false).error.code,
        ErrorCode::InvalidReplicaAssignment
    );
    let before = h.log.len();
    let mut v = topic("v", 3, 2);
    v.configs = vec![("cleanup.policy".into(), Some("compact".into()))];
    let r = create(&mut h, v.clone(), true);
    assert!(r.error.is_ok());
    assert_eq!(h.log.len(), before);
    let r = create(&mut h, v, false);
    assert!(r.error.is_ok());
    let cfg =
        h.c.committed_image()
            .config(&ConfigResource::topic("v"))
            .cloned()
            .unwrap();
    assert_eq!(cfg["cleanup.policy"], "compact");
    for p in 0..3 {
        assert_ne!(
            h.partition(r.topic_id, p).replicas[0],
            2,
            "a fenced broker is never the preferred leader"
        );
    }
}

#[test]
fn delete_topics_and_create_partitions() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None)]);
    let t = h.create_topic("t", 2, 2);
    let cp = |h: &mut Harness, count, assignments| match h.reply(
        ControllerRequest::CreatePartitions(CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "t".into(),
                count,
                assignments,
            }],
            validate_only: false,
        }),
    ) {
        ControllerReply::CreatePartitions(mut r) => r.topics.remove(0).1,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        cp(&mut h, 2, None).message.as_deref(),
        Some("Topic already has 2 partition(s).")
    );
    assert_eq!(
        cp(&mut h, 1, None).message.as_deref(),
        Some("The topic t currently has 2 partition(s); 1 would not be an increase.")
    );
    assert_eq!(
        cp(&mut h, 4, Some(vec![vec![1, 2]])).code,
        ErrorCode::InvalidReplicaAssignment
    );
    assert_eq!(
        cp(&mut h, 3, Some(vec![vec![1]])).code,
        ErrorCode::InvalidReplicaAssignment
    );
    assert!(cp(&mut h, 3, Some(vec![vec![2, 1]])).is_ok());
    assert!(cp(&mut h, 5, None).is_ok());
    assert_eq!(h.c.committed_image().topic(&t).unwrap().partitions.len(), 5);
    assert_eq!(h.partition(t, 2).replicas, vec![2, 1]);
    h.reply(ControllerRequest::IncrementalAlterConfigs(
        IncrementalAlterConfigsRequest {
            resources: vec![IncrementalAlterConfigsResource {
                resource: ConfigResource::topic("t"),
                configs: vec![AlterableConfig {
                    name: "retention.ms".into(),
                    op: AlterConfigOp::Set,
                    value: Some("1".into()),
                }],
            }],
            validate_only: false,
        },
    ));
    match h.reply(ControllerRequest::DeleteTopics(DeleteTopicsRequest {
        topics: vec![
            TopicRef::Id(t),
            TopicRef::Name("zz".into()),
            TopicRef::Id(Uuid::from_u128(5)),
        ],
    })) {
        ControllerReply::DeleteTopics(r) => {
            assert_eq!(r.topics[0].error, ApiError::NONE);
            assert_eq!(r.topics[0].name.as_deref(), Some("t"));
            assert_eq!(r.topics[1].error.code, ErrorCode::UnknownTopicOrPartition);
            assert_eq!(r.topics[2].error.code, ErrorCode::UnknownTopicId);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.c.committed_image().topics.is_empty());
    assert!(h
        .c
        .committed_image()
        .config(&ConfigResource::topic("t"))
        .is_none());
    h.assert_log_rebuilds_image();
}

// ---- configs ----

struct NoNegativeRetention;

impl super::ConfigValidator for NoNegativeRetention {
    fn validate(
        &self,
        _: &ConfigResource,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), ApiError> {
        if name == "retention.ms" && value.is_some_and(|v| v.starts_with('-')) {
            return Err(ApiError::new(ErrorCode::InvalidConfig, "negative"));
        }
        Ok(())
    }
}

#[test]
fn configs_incremental_and_legacy() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None)]);
    h.create_topic("t", 1, 1);
    h.c.set_config_validator(Box::new(NoNegativeRetention));
    let inc = |h: &mut Harness,
               resource: ConfigResource,
               ops: Vec<(&str, AlterConfigOp, Option<&str>)>| match h.reply(
        ControllerRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
            resources: vec![IncrementalAlterConfigsResource {
                resource,
                configs: ops
                    .into_iter()
                    .map(|(n, op, v)| AlterableConfig {
                        name: n.into(),
                        op,
                        value: v.map(str::to_string),
                    })
                    .collect(),
            }],
            validate_only: false,
        }),
    ) {
        ControllerReply::IncrementalAlterConfigs(mut r) => r.resources.remove(0).1,
        other => panic!("{other:?}"),
    };
    let topic = ConfigResource::topic("t");
    assert!(inc(
        &mut h,
        topic.clone(),
        vec![
            ("retention.ms", AlterConfigOp::Set, Some("10")),
            ("segment.ms", AlterConfigOp::Set, Some("5"))
        ]
    )
    .is_ok());
    assert_eq!(
        inc(
            &mut h,
            topic.clone(),
            vec![("retention.ms", AlterConfigOp::Set, Some("-5"))]
        )
        .code,
        ErrorCode::InvalidConfig
    );
    assert!(inc(
        &mut h,
        topic.clone(),
        vec![("segment.ms", AlterConfigOp::Delete, None)]
    )
    .is_ok());
    let cfg = h.c.committed_image().config(&topic).cloned().unwrap();
    assert_eq!(cfg.len(), 1);
    assert_eq!(cfg["retention.ms"], "10");
    assert_eq!(
        inc(
            &mut h,
            ConfigResource::topic("nope"),
            vec![("a", AlterConfigOp::Set, Some("1"))]
        )
        .message
        .as_deref(),
        Some("The topic 'nope' does not exist.")
    );
    assert_eq!(
        inc(
            &mut h,
            ConfigResource::broker("x"),
            vec![("a", AlterConfigOp::Set, Some("1"))]
        )
        .code,
        ErrorCode::InvalidRequest
    );
    assert!(inc(
        &mut h,
        ConfigResource::broker(""),
        vec![("log.retention.ms", AlterConfigOp::Set, Some("1"))]
    )
    .is_ok());
    // An unchanged value writes nothing.
    let before = h.log.len();
    assert!(inc(
        &mut h,
        topic.clone(),
        vec![("retention.ms", AlterConfigOp::Set, Some("10"))]
    )
    .is_ok());
    assert_eq!(h.log.len(), before);
    // Legacy AlterConfigs replaces the whole set.
    match h.reply(ControllerRequest::AlterConfigs(AlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource: topic.clone(),
            configs: vec![("cleanup.policy".into(), Some("compact".into()))],
        }],
        validate_only: false,
    })) {
        ControllerReply::AlterConfigs(r) => assert!(r.resources[0].1.is_ok()),
        other => panic!("{other:?}"),
    }
    let cfg = h.c.committed_image().config(&topic).cloned().unwrap();
    assert_eq!(
        cfg.into_iter().collect::<Vec<_>>(),
        vec![("cleanup.policy".to_string(), "compact".to_string())]
    );
}

// ---- AlterPartition ----

#[allow(clippy::too_many_arguments)] // mirrors the request's fields one to one
fn alter(
    h: &mut Harness,
    broker: i32,
    epoch: i64,
    t: Uuid,
    p: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
    lrs: i8,
) -> (ErrorCode, Option<AlterPartitionPartitionReply>) {
    let states = isr
        .iter()
        .map(|b| BrokerState {
            broker_id: *b,
            broker_epoch: -1,
        })
        .collect();
    alter_with(
        h,
        broker,
        epoch,
        t,
        p,
        leader_epoch,
        partition_epoch,
        states,
        lrs,
    )
}

#[allow(clippy::too_many_arguments)]
fn alter_with(
    h: &mut Harness,
    broker: i32,
    epoch: i64,
    t: Uuid,
    p: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<BrokerState>,
    lrs: i8,
) -> (ErrorCode, Option<AlterPartitionPartitionReply>) {
    match h.reply(ControllerRequest::AlterPartition(AlterPartitionRequest {
        broker_id: broker,
        broker_epoch: epoch,
        topics: vec![AlterPartitionTopic {
            topic_id: t,
            partitions: vec![AlterPartitionData {
                partition_index: p,
                leader_epoch,
                new_isr_with_epochs: isr,
                leader_recovery_state: lrs,
                partition_epoch,
            }],
        }],
    })) {
        ControllerReply::AlterPartition(r) if r.error.is_none() => {
            let part = r.topics[0].partitions[0].clone();
            (part.error, Some(part))
        }
        ControllerReply::AlterPartition(r) => (r.error, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn alter_partition_errors_in_kafka_order() {
    let mut h = Harness::new(config());
    let e = h.brokers(&[(1, None), (2, None), (3, None)]);
    h.register(4, None); // registered, fenced
    let t = h.create_assigned("t", vec![vec![1, 2, 3, 4]]);
    // Leader 1, leader epoch 0, partition epoch 0, ISR [1, 2, 3].
    assert_eq!(
        alter(&mut h, 1, e[0] + 1, t, 0, 0, 0, &[1, 2], 0).0,
        ErrorCode::StaleBrokerEpoch
    );
    assert_eq!(
        alter(&mut h, 1, e[0], Uuid::from_u128(1), 0, 0, 0, &[1], 0).0,
        ErrorCode::UnknownTopicId
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 5, 0, 0, &[1], 0).0,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 1, 0, &[1], 0).0,
        ErrorCode::NotController
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 1, &[1], 0).0,
        ErrorCode::NotController
    );
    assert_eq!(
        alter(&mut h, 2, e[1], t, 0, 0, 0, &[1], 0).0,
        ErrorCode::InvalidRequest,
        "not the leader"
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 0, &[1, 5], 0).0,
        ErrorCode::InvalidRequest,
        "not a replica"
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 0, &[2, 3], 0).0,
        ErrorCode::InvalidRequest,
        "without the leader"
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 0, &[1, 2], 1).0,
        ErrorCode::InvalidRequest,
        "recovered -> recovering"
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 0, &[1, 2, 3, 4], 0).0,
        ErrorCode::IneligibleReplica,
        "fenced member"
    );
    let stale_member = vec![
        BrokerState {
            broker_id: 1,
            broker_epoch: e[0],
        },
        BrokerState {
            broker_id: 2,
            broker_epoch: e[1] + 1,
        },
    ];
    assert_eq!(
        alter_with(&mut h, 1, e[0], t, 0, 0, 0, stale_member, 0).0,
        ErrorCode::IneligibleReplica,
        "KIP-903 epoch"
    );
    // A valid shrink: partition epoch +1, leader epoch unchanged.
    let (code, reply) = alter(&mut h, 1, e[0], t, 0, 0, 0, &[1, 2], 0);
    assert_eq!(code, ErrorCode::None);
    let reply = reply.unwrap();
    assert_eq!(
        (
            reply.leader_id,
            reply.leader_epoch,
            reply.partition_epoch,
            reply.isr.clone()
        ),
        (1, 0, 1, vec![1, 2])
    );
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 0, &[1, 2, 3], 0).0,
        ErrorCode::InvalidUpdateVersion
    );
    // Leader epoch below ours.
    h.reply(ControllerRequest::ElectLeaders(ElectLeadersRequest {
        election_type: ElectionType::Preferred,
        topic_partitions: None,
    }));
    assert_eq!(
        alter(&mut h, 1, e[0], t, 0, 0, 1, &[1], 0).0,
        ErrorCode::None,
        "preferred leader already leads: no election"
    );
    let p = h.partition(t, 0);
    // Expand back: broker 3 shut down (it led nothing, so it was fenced at once): ineligible.
    h.heartbeat_full(3, e[2], h.offset(), false, true);
    let p2 = h.partition(t, 0);
    assert_eq!(
        alter(
            &mut h,
            1,
            e[0],
            t,
            0,
            p2.leader_epoch,
            p2.partition_epoch,
            &[1, 3],
            0
        )
        .0,
        ErrorCode::IneligibleReplica
    );
    assert_eq!(
        alter(
            &mut h,
            1,
            e[0],
            t,
            0,
            p.leader_epoch - 1,
            p2.partition_epoch,
            &[1],
            0
        )
        .0,
        ErrorCode::FencedLeaderEpoch
    );
}

#[test]
fn alter_partition_recovery_state_rules() {
    let mut h = Harness::new(ControllerConfig {
        unclean_leader_election_enable: true,
        ..config()
    });
    let e = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]]);
    alter(&mut h, 1, e[0], t, 0, 0, 0, &[1], 0);
    // 1 (the only ISR member) expires; unclean election picks 2 and marks it RECOVERING.
    h.now += config().broker_session_timeout_ms / 2;
    h.heartbeat(2, e[1]);
    h.now += config().broker_session_timeout_ms / 2 + 1;
    h.tick();
    let p = h.partition(t, 0);
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_recovery_state),
        (2, vec![2], LeaderRecoveryState::Recovering)
    );
    assert_eq!(
        alter(
            &mut h,
            2,
            e[1],
            t,
            0,
            p.leader_epoch,
            p.partition_epoch,
            &[2, 1],
            1
        )
        .0,
        ErrorCode::InvalidRequest,
        "recovering with ISR > 1"
    );
    let (code, reply) = alter(
        &mut h,
        2,
        e[1],
        t,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[2],
        0,
    );
    assert_eq!(code, ErrorCode::None);
    assert_eq!(reply.unwrap().leader_recovery_state, 0);
    assert_eq!(
        h.partition(t, 0).leader_recovery_state,
        LeaderRecoveryState::Recovered
    );
}

// ---- elections ----

#[test]
fn elect_leaders_preferred_and_unclean() {
    let mut h = Harness::new(config());
    let e = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2], vec![1, 2]]);
    let elect = |h: &mut Harness, ty, parts: Option<Vec<(String, Vec<i32>)>>| match h.reply(
        ControllerRequest::ElectLeaders(ElectLeadersRequest {
            election_type: ty,
            topic_partitions: parts,
        }),
    ) {
        ControllerReply::ElectLeaders(r) => r.results,
        other => panic!("{other:?}"),
    };
    let r = elect(
        &mut h,
        ElectionType::Preferred,
        Some(vec![("t".into(), vec![0, 7]), ("x".into(), vec![0])]),
    );
    assert_eq!(
        r.iter().map(|r| r.error.code).collect::<Vec<_>>(),
        vec![
            ErrorCode::ElectionNotNeeded,
            ErrorCode::UnknownTopicOrPartition,
            ErrorCode::UnknownTopicOrPartition
        ]
    );
    // Move leadership to 2 via controlled-shutdown-free path: broker 1 asks to be fenced.
    h.heartbeat_full(1, e[0], h.offset(), true, false);
    assert_eq!(h.partition(t, 0).leader, 2);
    // 1 is back (unfenced) but not in the ISR: preferred election not possible yet.
    h.heartbeat(1, e[0]);
    let r = elect(
        &mut h,
        ElectionType::Preferred,
        Some(vec![("t".into(), vec![0])]),
    );
    assert_eq!(r[0].error.code, ErrorCode::PreferredLeaderNotAvailable);
    let p = h.partition(t, 0);
    alter(
        &mut h,
        2,
        e[1],
        t,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[2, 1],
        0,
    );
    let p = h.partition(t, 1);
    alter(
        &mut h,
        2,
        e[1],
        t,
        1,
        p.leader_epoch,
        p.partition_epoch,
        &[2, 1],
        0,
    );
    // Null partitions: every partition, ELECTION_NOT_NEEDED left out.
    let r = elect(&mut h, ElectionType::Preferred, None);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.error.is_ok()));
    assert_eq!(h.partition(t, 0).leader, 1);
    // Unclean: not needed while led; no eligible leader when every replica is fenced.
    let r = elect(
        &mut h,
        ElectionType::Unclean,
        Some(vec![("t".into(), vec![0])]),
    );
    assert_eq!(r[0].error.code, ErrorCode::ElectionNotNeeded);
    let p = h.partition(t, 0);
    alter(
        &mut h,
        1,
        e[0],
        t,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[1],
        0,
    );
    h.heartbeat_full(1, e[0], h.offset(), true, false);
    let p = h.partition(t, 0);
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![1]));
    let r = elect(
        &mut h,
        ElectionType::Unclean,
        Some(vec![("t".into(), vec![0])]),
    );
    assert!(r[0].error.is_ok(), "{r:?}");
    let p = h.partition(t, 0);
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_recovery_state),
        (2, vec![2], LeaderRecoveryState::Recovering)
    );
    h.heartbeat_full(2, e[1], h.offset(), true, false);
    let p = h.partition(t, 0);
    assert_eq!(p.leader, NO_LEADER);
    let r = elect(
        &mut h,
        ElectionType::Unclean,
        Some(vec![("t".into(), vec![0])]),
    );
    assert_eq!(r[0].error.code, ErrorCode::EligibleLeadersNotAvailable);
    h.assert_log_rebuilds_image();
}

#[test]
fn tick_rebalances_preferred_leaders_after_the_interval() {
    let mut h = Harness::new(ControllerConfig {
        auto_leader_rebalance_enable: true,
        leader_imbalance_check_interval_ms: 1000,
        max_elections_per_imbalance: 1,
        ..config()
    });
    let e = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2], vec![1, 2]]);
    h.heartbeat_full(1, e[0], h.offset(), true, false);
    h.heartbeat(1, e[0]);
    for p in 0..2 {
        let part = h.partition(t, p);
        assert_eq!(part.leader, 2);
        alter(
            &mut h,
            2,
            e[1],
            t,
            p,
            part.leader_epoch,
            part.partition_epoch,
            &[2, 1],
            0,
        );
    }
    h.now += 999;
    assert!(h.tick().is_empty());
    h.now += 1;
    // One election per entry; the next one follows on the next tick.
    assert_eq!(h.tick().len(), 1);
    assert_eq!(h.partition(t, 0).leader, 1);
    assert_eq!(h.partition(t, 1).leader, 2);
    h.tick();
    assert_eq!(h.partition(t, 1).leader, 1);
    assert_eq!(h.partition(t, 1).leader_epoch, 2);
}

// ---- reassignment ----

fn reassign(h: &mut Harness, p: i32, target: Option<Vec<i32>>) -> ApiError {
    match h.reply(ControllerRequest::AlterPartitionReassignments(
        AlterPartitionReassignmentsRequest {
            topics: vec![("t".into(), vec![(p, target)])],
        },
    )) {
        ControllerReply::AlterPartitionReassignments(mut r) => r.results.remove(0).error,
        other => panic!("{other:?}"),
    }
}

fn list(h: &mut Harness) -> Vec<OngoingReassignment> {
    match h.reply(ControllerRequest::ListPartitionReassignments(
        ListPartitionReassignmentsRequest { topics: None },
    )) {
        ControllerReply::ListPartitionReassignments(r) => r.reassignments,
        other => panic!("{other:?}"),
    }
}

#[test]
fn reassignment_lifecycle_completes_when_the_isr_covers_the_target() {
    let mut h = Harness::new(config());
    let e = h.brokers(&[(1, None), (2, None), (3, None), (4, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]]);
    assert_eq!(
        reassign(&mut h, 0, None).code,
        ErrorCode::NoReassignmentInProgress
    );
    assert_eq!(
        reassign(&mut h, 0, Some(vec![3, 9])).code,
        ErrorCode::InvalidReplicaAssignment
    );
    assert_eq!(
        reassign(&mut h, 3, Some(vec![3])).code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert!(reassign(&mut h, 0, Some(vec![3, 4])).is_ok());
    let p = h.partition(t, 0);
    assert_eq!(p.replicas, vec![3, 4, 1, 2]);
    assert_eq!(p.adding_replicas, vec![3, 4]);
    assert_eq!(p.removing_replicas, vec![1, 2]);
    assert_eq!(
        (p.leader, p.leader_epoch),
        (1, 0),
        "no replica dropped yet: no bump"
    );
    assert_eq!(
        list(&mut h),
        vec![OngoingReassignment {
            topic: "t".into(),
            partition: 0,
            replicas: vec![3, 4, 1, 2],
            adding_replicas: vec![3, 4],
            removing_replicas: vec![1, 2]
        }]
    );
    // 3 catches up: ISR grows, not complete yet.
    let (code, _) = alter(&mut h, 1, e[0], t, 0, 0, p.partition_epoch, &[1, 2, 3], 0);
    assert_eq!(code, ErrorCode::None);
    assert_eq!(h.partition(t, 0).replicas.len(), 4);
    // 4 catches up: the ISR covers the target; the leader was removed -> NEW_LEADER_ELECTED.
    let p = h.partition(t, 0);
    let (code, _) = alter(
        &mut h,
        1,
        e[0],
        t,
        0,
        0,
        p.partition_epoch,
        &[1, 2, 3, 4],
        0,
    );
    assert_eq!(code, ErrorCode::NewLeaderElected);
    let p = h.partition(t, 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch),
        (vec![3, 4], vec![3, 4], 3, 1)
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
    assert!(list(&mut h).is_empty());
    h.assert_log_rebuilds_image();
}

#[test]
fn reassignment_cancel_reverts_and_shrink_completes_at_once() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None), (2, None), (3, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]]);
    assert!(reassign(&mut h, 0, Some(vec![1, 3])).is_ok());
    assert_eq!(h.partition(t, 0).adding_replicas, vec![3]);
    assert!(reassign(&mut h, 0, None).is_ok());
    let p = h.partition(t, 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2], vec![1, 2])
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
    // Shrinking to replicas already in the ISR completes immediately with an epoch bump.
    let before = h.partition(t, 0).leader_epoch;
    assert!(reassign(&mut h, 0, Some(vec![2])).is_ok());
    let p = h.partition(t, 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2], vec![2], 2)
    );
    assert_eq!(p.leader_epoch, before + 1);
}

// ---- producer ids ----

#[test]
fn producer_id_blocks_of_1000() {
    let mut h = Harness::new(config());
    let e = h.brokers(&[(1, None), (2, None)]);
    let alloc = |h: &mut Harness, id, epoch| match h.reply(ControllerRequest::AllocateProducerIds(
        AllocateProducerIdsRequest {
            broker_id: id,
            broker_epoch: epoch,
        },
    )) {
        ControllerReply::AllocateProducerIds(r) => r,
        other => panic!("{other:?}"),
    };
    let a = alloc(&mut h, 1, e[0]);
    assert_eq!((a.producer_id_start, a.producer_id_len), (0, 1000));
    let b = alloc(&mut h, 2, e[1]);
    assert_eq!(b.producer_id_start, 1000);
    assert_eq!(h.c.committed_image().next_producer_id, 2000);
    assert_eq!(
        alloc(&mut h, 1, e[0] + 5).error.code,
        ErrorCode::StaleBrokerEpoch
    );
    // Blocks survive failover: they live in the log.
    h.c.on_resigned();
    h.c.on_became_active(h.now);
    assert_eq!(alloc(&mut h, 1, e[0]).producer_id_start, 2000);
    h.assert_log_rebuilds_image();
}

#[test]
fn idle_controller_writes_noops() {
    let mut h = Harness::new(ControllerConfig {
        metadata_max_idle_interval_ms: 500,
        ..config()
    });
    h.now += 499;
    assert!(h.tick().is_empty());
    h.now += 1;
    let r = h.tick();
    assert_eq!(r[0].records, vec![MetadataRecord::NoOp]);
    assert!(h.tick().is_empty());
    let _ = CLUSTER;
}

// ---- driver contract edge cases ----

#[test]
fn entry_committed_at_another_offset_rebases_predictions() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None)]);
    let r = h.c.handle(
        0,
        ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![topic("t", 1, 1)],
            validate_only: false,
        }),
    );
    let next = h.c.handle(
        0,
        ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![topic("u", 1, 1)],
            validate_only: false,
        }),
    );
    assert_eq!(next.offset, r.offset + 1);
    // Raft put an empty entry first: ours land one later.
    h.c.replay(&MetadataBatch {
        offset: r.offset,
        epoch: 1,
        records: vec![],
    })
    .unwrap();
    assert!(
        h.c.speculative_image().topic_by_name("u").is_some(),
        "speculation survives"
    );
    h.c.replay(&MetadataBatch {
        offset: r.offset + 1,
        epoch: 1,
        records: r.records.clone(),
    })
    .unwrap();
    assert_eq!(h.c.next_write_offset(), r.offset + 3);
    h.c.replay(&MetadataBatch {
        offset: r.offset + 2,
        epoch: 1,
        records: next.records.clone(),
    })
    .unwrap();
    assert_eq!(h.c.pending_entries(), 0);
    assert_eq!(**h.c.speculative_image(), **h.c.committed_image());
    assert!(h.c.committed_image().topic_by_name("u").is_some());
}

#[test]
fn unexpected_committed_entry_drops_speculation() {
    let mut h = Harness::new(config());
    h.brokers(&[(1, None)]);
    let r = h.c.handle(
        0,
        ControllerRequest::CreateTopics(CreateTopicsRequest {
            topics: vec![topic("t", 1, 1)],
            validate_only: false,
        }),
    );
    assert_eq!(h.c.pending_entries(), 1);
    h.c.replay(&MetadataBatch {
        offset: r.offset,
        epoch: 2,
        records: vec![MetadataRecord::NoOp],
    })
    .unwrap();
    assert_eq!(h.c.pending_entries(), 0);
    assert!(h.c.speculative_image().topic_by_name("t").is_none());
    assert_eq!(h.c.next_write_offset(), r.offset + 1);
}

#[test]
fn controlled_shutdown_and_unfence_elections_continue_in_ticks() {
    let mut h = Harness::new(ControllerConfig {
        max_records_per_entry: 3,
        ..config()
    });
    let e = h.brokers(&[(1, None), (2, None)]);
    let t = h.create_assigned("t", vec![vec![1, 2]]);
    let u = h.create_assigned("u", vec![vec![1, 2]]);
    let v = h.create_assigned("v", vec![vec![1, 2]]);
    let r = h.heartbeat_full(1, e[0], h.offset(), false, true);
    assert!(r.in_controlled_shutdown);
    // The shutdown record plus two partition changes fit; the third follows in a tick.
    assert_eq!(h.partition(v, 0).leader, 1);
    let r = h.heartbeat_full(1, e[0], h.offset(), false, true);
    assert!(!r.should_shut_down, "still leads v-0");
    h.tick();
    assert_eq!(h.partition(v, 0).leader, 2);
    h.heartbeat(2, e[1]);
    let r = h.heartbeat_full(1, e[0], h.offset(), false, true);
    assert!(r.should_shut_down);
    // Broker 2 fences itself: every partition goes leaderless with ISR [2].
    h.heartbeat_full(2, e[1], h.offset(), true, false);
    assert!(
        !h.broker(2).fenced,
        "two of three partitions moved; the fence record waits"
    );
    h.tick();
    assert!(h.broker(2).fenced);
    for id in [t, u, v] {
        assert_eq!(h.partition(id, 0).leader, NO_LEADER);
    }
    // Unfencing 2 elects it: 1 record for the unfence, 2 elections, the third in a tick.
    h.heartbeat(2, e[1]);
    let led = [t, u, v]
        .iter()
        .filter(|id| h.partition(**id, 0).leader == 2)
        .count();
    assert_eq!(led, 2);
    h.tick();
    assert!([t, u, v].iter().all(|id| h.partition(*id, 0).leader == 2));
    h.assert_log_rebuilds_image();
}

#[test]
fn requests_beyond_the_entry_cap_are_refused_or_deferred() {
    let mut h = Harness::new(ControllerConfig {
        max_records_per_entry: 5,
        ..config()
    });
    h.brokers(&[(1, None)]);
    let r = create(&mut h, topic("big", 5, 1), false);
    assert_eq!(r.error.code, ErrorCode::InvalidPartitions);
    match h.reply(ControllerRequest::CreateTopics(CreateTopicsRequest {
        topics: vec![topic("a", 2, 1), topic("b", 2, 1)],
        validate_only: false,
    })) {
        ControllerReply::CreateTopics(r) => {
            assert!(r.topics[0].error.is_ok());
            assert_eq!(r.topics[1].error.code, ErrorCode::ThrottlingQuotaExceeded);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.log.iter().all(|b| b.records.len() <= 5));
    assert!(h.c.committed_image().topic_by_name("b").is_none());
}

#[test]
fn the_broker_of_this_process_replaces_its_previous_incarnation_at_once() {
    let fresh = Uuid::from_u128(77);
    let mut c = config();
    c.local_broker_incarnation = Some(fresh);
    let mut h = Harness::new(c);
    // node_id of config() is this controller's node; broker 1 is "this process".
    let epoch = h.brokers(&[(config().node_id, None)])[0];
    // Another node's new incarnation still waits for the old session (Kafka's rule)...
    let foreign = registration(2, Uuid::from_u128(5), None);
    let _ = h.brokers(&[(2, None)]);
    assert_eq!(
        err_code(&h.reply(ControllerRequest::BrokerRegistration(foreign))),
        ErrorCode::DuplicateBrokerRegistration
    );
    // ...but this process's own broker, restarted with the controller, registers at once.
    let reply = h.reply(ControllerRequest::BrokerRegistration(registration(
        config().node_id,
        fresh,
        None,
    )));
    let ControllerReply::BrokerRegistration(r) = reply else {
        panic!("wrong reply")
    };
    assert!(r.error.is_ok(), "{r:?}");
    assert!(r.broker_epoch > epoch);
}
