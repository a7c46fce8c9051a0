use super::*;

use fjord_controller::{
    AclCreation, AlterClientQuotasReply, AlterClientQuotasRequest, AlterUserScramCredentialsReply,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResult, ClientQuotaAlterResult,
    ClientQuotaAlteration, ClientQuotaEntityList, ClientQuotaOp, CreateAclsReply,
    CreateAclsRequest, DeleteAclsFilterResult, DeleteAclsReply, DeleteAclsRequest,
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use fjord_metadata::AclBindingFilter;
use fjord_protocol::frame::LENGTH_PREFIX_BYTES;
use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::request::{decode_body, decode_header, encode_request};
use fjord_protocol::response::{decode_response, encode_response};
use fjord_protocol::ResponseError;
use proptest::prelude::*;

// ---- bytes ----

fn request_through_bytes(api_key: ApiKey, api_version: i16, body: &RequestKind) -> RequestKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("node-1")));
    let bytes = encode_request(&header, body).expect("encode request");
    let frame = decode_header(bytes.freeze()).expect("decode header");
    assert_eq!(frame.api_key, api_key);
    decode_body(&frame).expect("decode body")
}

fn response_through_bytes(api_key: ApiKey, api_version: i16, body: &ResponseKind) -> ResponseKind {
    let frame = encode_response(api_key, api_version, 9, body).expect("encode response");
    let (header, decoded) =
        decode_response(api_key, api_version, frame.slice(LENGTH_PREFIX_BYTES..))
            .expect("decode response");
    assert_eq!(header.correlation_id, 9);
    decoded
}

fn request_round_trip(request: &ControllerRequest) -> ControllerRequest {
    let (api_key, version, body) = request_to_wire(request);
    assert_eq!(version, wire_version(api_key));
    let decoded = request_through_bytes(api_key, version, &body);
    assert_eq!(decoded, body, "the wire message survives its bytes");
    request_from_wire(api_key, version, decoded).expect("request from wire")
}

fn reply_round_trip(reply: &ControllerReply, api_key: ApiKey) -> ControllerReply {
    let version = wire_version(api_key);
    let body = reply_to_wire(reply, api_key, version).expect("reply to wire");
    let decoded = response_through_bytes(api_key, version, &body);
    reply_from_wire(api_key, version, decoded).expect("reply from wire")
}

// ---- strategies ----

const ALL_CODES: [ErrorCode; 31] = [
    ErrorCode::UnknownServerError,
    ErrorCode::None,
    ErrorCode::UnknownTopicOrPartition,
    ErrorCode::RequestTimedOut,
    ErrorCode::InvalidTopicException,
    ErrorCode::UnsupportedVersion,
    ErrorCode::TopicAlreadyExists,
    ErrorCode::InvalidPartitions,
    ErrorCode::InvalidReplicationFactor,
    ErrorCode::InvalidReplicaAssignment,
    ErrorCode::InvalidConfig,
    ErrorCode::NotController,
    ErrorCode::InvalidRequest,
    ErrorCode::FencedLeaderEpoch,
    ErrorCode::StaleBrokerEpoch,
    ErrorCode::PreferredLeaderNotAvailable,
    ErrorCode::EligibleLeadersNotAvailable,
    ErrorCode::ElectionNotNeeded,
    ErrorCode::NoReassignmentInProgress,
    ErrorCode::ThrottlingQuotaExceeded,
    ErrorCode::InvalidUpdateVersion,
    ErrorCode::UnknownTopicId,
    ErrorCode::DuplicateBrokerRegistration,
    ErrorCode::BrokerIdNotRegistered,
    ErrorCode::InconsistentClusterId,
    ErrorCode::IneligibleReplica,
    ErrorCode::NewLeaderElected,
    ErrorCode::UnsupportedSaslMechanism,
    ErrorCode::ResourceNotFound,
    ErrorCode::DuplicateResource,
    ErrorCode::UnacceptableCredential,
];

/// Fails to compile when `ErrorCode` gains a variant, so `ALL_CODES` cannot fall behind.
fn index_in_all_codes(code: ErrorCode) -> usize {
    use ErrorCode::*;
    match code {
        UnknownServerError => 0,
        None => 1,
        UnknownTopicOrPartition => 2,
        RequestTimedOut => 3,
        InvalidTopicException => 4,
        UnsupportedVersion => 5,
        TopicAlreadyExists => 6,
        InvalidPartitions => 7,
        InvalidReplicationFactor => 8,
        InvalidReplicaAssignment => 9,
        InvalidConfig => 10,
        NotController => 11,
        InvalidRequest => 12,
        FencedLeaderEpoch => 13,
        StaleBrokerEpoch => 14,
        PreferredLeaderNotAvailable => 15,
        EligibleLeadersNotAvailable => 16,
        ElectionNotNeeded => 17,
        NoReassignmentInProgress => 18,
        ThrottlingQuotaExceeded => 19,
        InvalidUpdateVersion => 20,
        UnknownTopicId => 21,
        DuplicateBrokerRegistration => 22,
        BrokerIdNotRegistered => 23,
        InconsistentClusterId => 24,
        IneligibleReplica => 25,
        NewLeaderElected => 26,
        UnsupportedSaslMechanism => 27,
        ResourceNotFound => 28,
        DuplicateResource => 29,
        UnacceptableCredential => 30,
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._-]{0,12}",
        "\\PC{0,6}", // any printable Unicode
    ]
}

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![Just(Uuid::nil()), any::<u128>().prop_map(Uuid::from_u128)]
}

fn code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ALL_CODES.to_vec())
}

fn api_error() -> impl Strategy<Value = ApiError> {
    (code(), proptest::option::of(text())).prop_map(|(code, message)| ApiError { code, message })
}

/// An error on a response without an `ErrorMessage` field.
fn code_only_error() -> impl Strategy<Value = ApiError> {
    code().prop_map(ApiError::code_only)
}

fn ids() -> impl Strategy<Value = Vec<i32>> {
    prop::collection::vec(-1..20i32, 0..4)
}

fn resource() -> impl Strategy<Value = ConfigResource> {
    (any::<bool>(), text()).prop_map(|(topic, name)| {
        if topic {
            ConfigResource::topic(name)
        } else {
            ConfigResource::broker(name)
        }
    })
}

fn configs() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec((text(), proptest::option::of(text())), 0..3)
}

fn topic_partitions() -> impl Strategy<Value = Vec<(String, Vec<i32>)>> {
    prop::collection::vec((text(), ids()), 0..3)
}

fn registration() -> impl Strategy<Value = ControllerRequest> {
    let endpoint =
        (text(), text(), any::<u16>(), 0..4i16).prop_map(|(name, host, port, sp)| BrokerEndpoint {
            name,
            host,
            port,
            security_protocol: sp,
        });
    let feature = (text(), any::<i16>(), any::<i16>()).prop_map(|(name, min, max)| BrokerFeature {
        name,
        min_supported_version: min,
        max_supported_version: max,
    });
    (
        any::<i32>(),
        text(),
        uuid(),
        prop::collection::vec(endpoint, 0..3),
        prop::collection::vec(feature, 0..3),
        proptest::option::of(text()),
        any::<i64>(),
    )
        .prop_map(
            |(broker_id, cluster_id, incarnation_id, listeners, features, rack, previous)| {
                ControllerRequest::BrokerRegistration(BrokerRegistrationRequest {
                    broker_id,
                    cluster_id,
                    incarnation_id,
                    listeners,
                    features,
                    rack,
                    previous_broker_epoch: previous,
                })
            },
        )
}

fn controller_request() -> impl Strategy<Value = ControllerRequest> {
    let heartbeat = (
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(broker_id, broker_epoch, offset, want_fence, want_shut_down)| {
                ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                    broker_id,
                    broker_epoch,
                    current_metadata_offset: offset,
                    want_fence,
                    want_shut_down,
                })
            },
        );
    let unregister = any::<i32>().prop_map(|broker_id| {
        ControllerRequest::UnregisterBroker(UnregisterBrokerRequest { broker_id })
    });
    let creatable = (
        text(),
        -1..10i32,
        -1..4i16,
        prop::collection::vec((0..5i32, ids()), 0..3),
        configs(),
    )
        .prop_map(
            |(name, num_partitions, replication_factor, assignments, configs)| CreatableTopic {
                name,
                num_partitions,
                replication_factor,
                assignments,
                configs,
            },
        );
    let create_topics = (prop::collection::vec(creatable, 0..3), any::<bool>()).prop_map(
        |(topics, validate_only)| {
            ControllerRequest::CreateTopics(CreateTopicsRequest {
                topics,
                validate_only,
            })
        },
    );
    let topic_ref = prop_oneof![
        text().prop_map(TopicRef::Name),
        uuid().prop_map(TopicRef::Id),
    ];
    let delete_topics = prop::collection::vec(topic_ref, 0..4)
        .prop_map(|topics| ControllerRequest::DeleteTopics(DeleteTopicsRequest { topics }));
    let cp_topic = (
        text(),
        any::<i32>(),
        proptest::option::of(prop::collection::vec(ids(), 0..3)),
    )
        .prop_map(|(name, count, assignments)| CreatePartitionsTopic {
            name,
            count,
            assignments,
        });
    let create_partitions = (prop::collection::vec(cp_topic, 0..3), any::<bool>()).prop_map(
        |(topics, validate_only)| {
            ControllerRequest::CreatePartitions(CreatePartitionsRequest {
                topics,
                validate_only,
            })
        },
    );
    let op = proptest::sample::select(vec![
        AlterConfigOp::Set,
        AlterConfigOp::Delete,
        AlterConfigOp::Append,
        AlterConfigOp::Subtract,
    ]);
    let alterable = (text(), op, proptest::option::of(text()))
        .prop_map(|(name, op, value)| AlterableConfig { name, op, value });
    let iac_resource = (resource(), prop::collection::vec(alterable, 0..3))
        .prop_map(|(resource, configs)| IncrementalAlterConfigsResource { resource, configs });
    let iac = (prop::collection::vec(iac_resource, 0..3), any::<bool>()).prop_map(
        |(resources, validate_only)| {
            ControllerRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
                resources,
                validate_only,
            })
        },
    );
    let ac_resource = (resource(), configs())
        .prop_map(|(resource, configs)| AlterConfigsResource { resource, configs });
    let alter_configs = (prop::collection::vec(ac_resource, 0..3), any::<bool>()).prop_map(
        |(resources, validate_only)| {
            ControllerRequest::AlterConfigs(AlterConfigsRequest {
                resources,
                validate_only,
            })
        },
    );
    let broker_state =
        (any::<i32>(), any::<i64>()).prop_map(|(broker_id, broker_epoch)| BrokerState {
            broker_id,
            broker_epoch,
        });
    let ap_data = (
        any::<i32>(),
        any::<i32>(),
        prop::collection::vec(broker_state, 0..4),
        0..2i8,
        any::<i32>(),
    )
        .prop_map(
            |(partition_index, leader_epoch, isr, leader_recovery_state, partition_epoch)| {
                AlterPartitionData {
                    partition_index,
                    leader_epoch,
                    new_isr_with_epochs: isr,
                    leader_recovery_state,
                    partition_epoch,
                }
            },
        );
    let ap_topic =
        (uuid(), prop::collection::vec(ap_data, 0..3)).prop_map(|(topic_id, partitions)| {
            AlterPartitionTopic {
                topic_id,
                partitions,
            }
        });
    let alter_partition = (
        any::<i32>(),
        any::<i64>(),
        prop::collection::vec(ap_topic, 0..3),
    )
        .prop_map(|(broker_id, broker_epoch, topics)| {
            ControllerRequest::AlterPartition(AlterPartitionRequest {
                broker_id,
                broker_epoch,
                topics,
            })
        });
    let elect = (any::<bool>(), proptest::option::of(topic_partitions())).prop_map(
        |(unclean, topic_partitions)| {
            ControllerRequest::ElectLeaders(ElectLeadersRequest {
                election_type: if unclean {
                    ElectionType::Unclean
                } else {
                    ElectionType::Preferred
                },
                topic_partitions,
            })
        },
    );
    let reassign = prop::collection::vec(
        (
            text(),
            prop::collection::vec((any::<i32>(), proptest::option::of(ids())), 0..3),
        ),
        0..3,
    )
    .prop_map(|topics| {
        ControllerRequest::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
            topics,
        })
    });
    let list = proptest::option::of(topic_partitions()).prop_map(|topics| {
        ControllerRequest::ListPartitionReassignments(ListPartitionReassignmentsRequest { topics })
    });
    let allocate = (any::<i32>(), any::<i64>()).prop_map(|(broker_id, broker_epoch)| {
        ControllerRequest::AllocateProducerIds(AllocateProducerIdsRequest {
            broker_id,
            broker_epoch,
        })
    });
    prop_oneof![
        registration(),
        heartbeat,
        unregister,
        create_topics,
        delete_topics,
        create_partitions,
        iac,
        alter_configs,
        alter_partition,
        elect,
        reassign,
        list,
        allocate,
        security_request(),
    ]
}

fn partition_results(
    error: BoxedStrategy<ApiError>,
) -> impl Strategy<Value = Vec<PartitionResult>> {
    // Few topic names, so that consecutive runs and repeats after other topics both occur.
    let topic = proptest::sample::select(vec!["a".to_string(), "b".to_string(), "ü".to_string()]);
    prop::collection::vec(
        (topic, any::<i32>(), error).prop_map(|(topic, partition, error)| PartitionResult {
            topic,
            partition,
            error,
        }),
        0..6,
    )
}

/// A per-API reply with its API key; only what the wire carries (no messages where the
/// schema has no `ErrorMessage`, no `in_controlled_shutdown`).
fn controller_reply() -> impl Strategy<Value = (ApiKey, ControllerReply)> {
    let registration = (code_only_error(), any::<i64>()).prop_map(|(error, broker_epoch)| {
        (
            ApiKey::BrokerRegistration,
            ControllerReply::BrokerRegistration(BrokerRegistrationReply {
                error,
                broker_epoch,
            }),
        )
    });
    let heartbeat = (
        code_only_error(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(error, is_caught_up, is_fenced, should_shut_down)| {
            (
                ApiKey::BrokerHeartbeat,
                ControllerReply::BrokerHeartbeat(BrokerHeartbeatReply {
                    error,
                    is_caught_up,
                    is_fenced,
                    in_controlled_shutdown: false,
                    should_shut_down,
                }),
            )
        });
    let unregister = api_error().prop_map(|e| {
        (
            ApiKey::UnregisterBroker,
            ControllerReply::UnregisterBroker(e),
        )
    });
    let created = (text(), uuid(), api_error(), any::<i32>(), any::<i16>()).prop_map(
        |(name, topic_id, error, num_partitions, replication_factor)| CreatableTopicResult {
            name,
            topic_id,
            error,
            num_partitions,
            replication_factor,
        },
    );
    let create_topics = prop::collection::vec(created, 0..3).prop_map(|topics| {
        (
            ApiKey::CreateTopics,
            ControllerReply::CreateTopics(CreateTopicsReply { topics }),
        )
    });
    let deleted =
        (proptest::option::of(text()), uuid(), api_error()).prop_map(|(name, topic_id, error)| {
            DeletableTopicResult {
                name,
                topic_id,
                error,
            }
        });
    let delete_topics = prop::collection::vec(deleted, 0..3).prop_map(|topics| {
        (
            ApiKey::DeleteTopics,
            ControllerReply::DeleteTopics(DeleteTopicsReply { topics }),
        )
    });
    let create_partitions = prop::collection::vec((text(), api_error()), 0..3).prop_map(|topics| {
        (
            ApiKey::CreatePartitions,
            ControllerReply::CreatePartitions(CreatePartitionsReply { topics }),
        )
    });
    let iac = prop::collection::vec((resource(), api_error()), 0..3).prop_map(|resources| {
        (
            ApiKey::IncrementalAlterConfigs,
            ControllerReply::IncrementalAlterConfigs(AlterConfigsReply { resources }),
        )
    });
    let alter_configs =
        prop::collection::vec((resource(), api_error()), 0..3).prop_map(|resources| {
            (
                ApiKey::AlterConfigs,
                ControllerReply::AlterConfigs(AlterConfigsReply { resources }),
            )
        });
    let ap_partition = (
        any::<i32>(),
        code(),
        any::<i32>(),
        any::<i32>(),
        ids(),
        0..2i8,
        any::<i32>(),
    )
        .prop_map(
            |(partition_index, error, leader_id, leader_epoch, isr, lrs, partition_epoch)| {
                AlterPartitionPartitionReply {
                    partition_index,
                    error,
                    leader_id,
                    leader_epoch,
                    isr,
                    leader_recovery_state: lrs,
                    partition_epoch,
                }
            },
        );
    let ap_topic =
        (uuid(), prop::collection::vec(ap_partition, 0..3)).prop_map(|(topic_id, partitions)| {
            AlterPartitionTopicReply {
                topic_id,
                partitions,
            }
        });
    let alter_partition =
        (code(), prop::collection::vec(ap_topic, 0..3)).prop_map(|(error, topics)| {
            (
                ApiKey::AlterPartition,
                ControllerReply::AlterPartition(AlterPartitionReply { error, topics }),
            )
        });
    let elect = partition_results(api_error().boxed()).prop_map(|results| {
        (
            ApiKey::ElectLeaders,
            ControllerReply::ElectLeaders(ElectLeadersReply { results }),
        )
    });
    let reassign = partition_results(api_error().boxed()).prop_map(|results| {
        (
            ApiKey::AlterPartitionReassignments,
            ControllerReply::AlterPartitionReassignments(AlterPartitionReassignmentsReply {
                results,
            }),
        )
    });
    let ongoing = (
        proptest::sample::select(vec!["a".to_string(), "b".to_string()]),
        any::<i32>(),
        ids(),
        ids(),
        ids(),
    )
        .prop_map(
            |(topic, partition, replicas, adding_replicas, removing_replicas)| {
                OngoingReassignment {
                    topic,
                    partition,
                    replicas,
                    adding_replicas,
                    removing_replicas,
                }
            },
        );
    let list =
        (api_error(), prop::collection::vec(ongoing, 0..5)).prop_map(|(error, reassignments)| {
            (
                ApiKey::ListPartitionReassignments,
                ControllerReply::ListPartitionReassignments(ListPartitionReassignmentsReply {
                    error,
                    reassignments,
                }),
            )
        });
    let allocate = (code_only_error(), any::<i64>(), any::<i32>()).prop_map(
        |(error, producer_id_start, producer_id_len)| {
            (
                ApiKey::AllocateProducerIds,
                ControllerReply::AllocateProducerIds(AllocateProducerIdsReply {
                    error,
                    producer_id_start,
                    producer_id_len,
                }),
            )
        },
    );
    prop_oneof![
        registration,
        heartbeat,
        unregister,
        create_topics,
        delete_topics,
        create_partitions,
        iac,
        alter_configs,
        alter_partition,
        elect,
        reassign,
        list,
        allocate,
        security_reply(),
    ]
}

/// What a whole-request error written by `error_to_wire` for `request` reads back as: built
/// from Fjord's request type, independently of the wire code.
fn expected_error_reply(request: &ControllerRequest, error: &ApiError) -> ControllerReply {
    let code_only = ApiError::code_only(error.code);
    match request {
        ControllerRequest::BrokerRegistration(_) => {
            ControllerReply::BrokerRegistration(BrokerRegistrationReply {
                error: code_only,
                broker_epoch: -1,
            })
        }
        ControllerRequest::BrokerHeartbeat(_) => {
            ControllerReply::BrokerHeartbeat(BrokerHeartbeatReply {
                error: code_only,
                is_caught_up: false,
                is_fenced: true,
                in_controlled_shutdown: false,
                should_shut_down: false,
            })
        }
        ControllerRequest::UnregisterBroker(_) => ControllerReply::UnregisterBroker(error.clone()),
        ControllerRequest::CreateTopics(r) => ControllerReply::CreateTopics(CreateTopicsReply {
            topics: r
                .topics
                .iter()
                .map(|t| CreatableTopicResult {
                    name: t.name.clone(),
                    topic_id: Uuid::nil(),
                    error: error.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                })
                .collect(),
        }),
        ControllerRequest::DeleteTopics(r) => ControllerReply::DeleteTopics(DeleteTopicsReply {
            topics: r
                .topics
                .iter()
                .map(|t| match t {
                    TopicRef::Name(name) => DeletableTopicResult {
                        name: Some(name.clone()),
                        topic_id: Uuid::nil(),
                        error: error.clone(),
                    },
                    TopicRef::Id(id) => DeletableTopicResult {
                        name: None,
                        topic_id: *id,
                        error: error.clone(),
                    },
                })
                .collect(),
        }),
        ControllerRequest::CreatePartitions(r) => {
            ControllerReply::CreatePartitions(CreatePartitionsReply {
                topics: r
                    .topics
                    .iter()
                    .map(|t| (t.name.clone(), error.clone()))
                    .collect(),
            })
        }
        ControllerRequest::IncrementalAlterConfigs(r) => {
            ControllerReply::IncrementalAlterConfigs(AlterConfigsReply {
                resources: r
                    .resources
                    .iter()
                    .map(|res| (res.resource.clone(), error.clone()))
                    .collect(),
            })
        }
        ControllerRequest::AlterConfigs(r) => ControllerReply::AlterConfigs(AlterConfigsReply {
            resources: r
                .resources
                .iter()
                .map(|res| (res.resource.clone(), error.clone()))
                .collect(),
        }),
        ControllerRequest::AlterPartition(_) => {
            ControllerReply::AlterPartition(AlterPartitionReply {
                error: error.code,
                topics: Vec::new(),
            })
        }
        ControllerRequest::ElectLeaders(r) => {
            if error.code.is_none() {
                ControllerReply::ElectLeaders(ElectLeadersReply {
                    results: r
                        .topic_partitions
                        .iter()
                        .flatten()
                        .flat_map(|(topic, partitions)| {
                            partitions.iter().map(|&partition| PartitionResult {
                                topic: topic.clone(),
                                partition,
                                error: error.clone(),
                            })
                        })
                        .collect(),
                })
            } else {
                // The message comes from the first partition result, if any.
                let has_partition = r
                    .topic_partitions
                    .iter()
                    .flatten()
                    .any(|(_, p)| !p.is_empty());
                ControllerReply::Error(ApiError {
                    code: error.code,
                    message: if has_partition {
                        error.message.clone()
                    } else {
                        None
                    },
                })
            }
        }
        ControllerRequest::AlterPartitionReassignments(r) => {
            if error.code.is_none() {
                ControllerReply::AlterPartitionReassignments(AlterPartitionReassignmentsReply {
                    results: r
                        .topics
                        .iter()
                        .flat_map(|(topic, partitions)| {
                            partitions.iter().map(|&(partition, _)| PartitionResult {
                                topic: topic.clone(),
                                partition,
                                error: error.clone(),
                            })
                        })
                        .collect(),
                })
            } else {
                ControllerReply::Error(error.clone())
            }
        }
        ControllerRequest::ListPartitionReassignments(r) => {
            ControllerReply::ListPartitionReassignments(ListPartitionReassignmentsReply {
                error: error.clone(),
                reassignments: r
                    .topics
                    .iter()
                    .flatten()
                    .flat_map(|(topic, partitions)| {
                        partitions.iter().map(|&partition| OngoingReassignment {
                            topic: topic.clone(),
                            partition,
                            replicas: Vec::new(),
                            adding_replicas: Vec::new(),
                            removing_replicas: Vec::new(),
                        })
                    })
                    .collect(),
            })
        }
        ControllerRequest::AllocateProducerIds(_) => {
            ControllerReply::AllocateProducerIds(AllocateProducerIdsReply {
                error: code_only,
                producer_id_start: 0,
                producer_id_len: 0,
            })
        }
        ControllerRequest::CreateAcls(r) => ControllerReply::CreateAcls(CreateAclsReply {
            results: r.creations.iter().map(|_| error.clone()).collect(),
        }),
        ControllerRequest::DeleteAcls(r) => ControllerReply::DeleteAcls(DeleteAclsReply {
            results: r
                .filters
                .iter()
                .map(|_| DeleteAclsFilterResult {
                    error: error.clone(),
                    matching_acls: Vec::new(),
                })
                .collect(),
        }),
        ControllerRequest::AlterUserScramCredentials(r) => {
            let mut users: Vec<String> = Vec::new();
            for name in r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
            {
                if !users.contains(name) {
                    users.push(name.clone());
                }
            }
            ControllerReply::AlterUserScramCredentials(AlterUserScramCredentialsReply {
                results: users
                    .into_iter()
                    .map(|user| AlterUserScramCredentialsResult {
                        user,
                        error: error.clone(),
                    })
                    .collect(),
            })
        }
        ControllerRequest::AlterClientQuotas(r) => {
            ControllerReply::AlterClientQuotas(AlterClientQuotasReply {
                results: r
                    .entries
                    .iter()
                    .map(|e| ClientQuotaAlterResult {
                        entity: e.entity.clone(),
                        error: error.clone(),
                    })
                    .collect(),
            })
        }
    }
}

fn acl_code() -> impl Strategy<Value = i8> {
    prop_oneof![0i8..16, any::<i8>()]
}

fn quota_entity() -> impl Strategy<Value = ClientQuotaEntityList> {
    prop::collection::vec(
        (
            proptest::sample::select(vec!["user", "client-id", "ip", "x"]).prop_map(String::from),
            proptest::option::of(text()),
        ),
        0..3,
    )
}

fn security_request() -> impl Strategy<Value = ControllerRequest> {
    let creation = (
        (acl_code(), acl_code(), acl_code(), acl_code()),
        (text(), text(), text()),
    )
        .prop_map(
            |((rt, pt, op, perm), (name, principal, host))| AclCreation {
                resource_type: rt,
                resource_name: name,
                pattern_type: pt,
                principal,
                host,
                operation: op,
                permission_type: perm,
            },
        );
    let create = prop::collection::vec(creation, 0..4)
        .prop_map(|creations| ControllerRequest::CreateAcls(CreateAclsRequest { creations }));
    let filter = (
        (acl_code(), acl_code(), acl_code(), acl_code()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
    )
        .prop_map(
            |((rt, pt, op, perm), (resource_name, principal, host))| AclBindingFilter {
                resource_type: rt,
                resource_name,
                pattern_type: pt,
                principal,
                host,
                operation: op,
                permission_type: perm,
            },
        );
    let delete = prop::collection::vec(filter, 0..4)
        .prop_map(|filters| ControllerRequest::DeleteAcls(DeleteAclsRequest { filters }));
    let bytes = || prop::collection::vec(any::<u8>(), 0..20);
    let scram = (
        prop::collection::vec(
            (text(), any::<i8>())
                .prop_map(|(name, mechanism)| ScramCredentialDeletion { name, mechanism }),
            0..3,
        ),
        prop::collection::vec(
            (text(), any::<i8>(), any::<i32>(), bytes(), bytes()).prop_map(
                |(name, mechanism, iterations, salt, salted_password)| ScramCredentialUpsertion {
                    name,
                    mechanism,
                    iterations,
                    salt,
                    salted_password,
                },
            ),
            0..3,
        ),
    )
        .prop_map(|(deletions, upsertions)| {
            ControllerRequest::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
                deletions,
                upsertions,
            })
        });
    let op = (text(), any::<u64>().prop_map(f64::from_bits), any::<bool>())
        .prop_map(|(key, value, remove)| ClientQuotaOp { key, value, remove });
    let quotas = (
        prop::collection::vec(
            (quota_entity(), prop::collection::vec(op, 0..3))
                .prop_map(|(entity, ops)| ClientQuotaAlteration { entity, ops }),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(entries, validate_only)| {
            ControllerRequest::AlterClientQuotas(AlterClientQuotasRequest {
                entries,
                validate_only,
            })
        });
    prop_oneof![create, delete, scram, quotas]
}

fn security_reply() -> impl Strategy<Value = (ApiKey, ControllerReply)> {
    use fjord_metadata::security::{
        AclOperation, AclPatternType, AclPermissionType, AclResourceType, StandardAcl,
    };
    let acl = ((2i8..8, 3i8..5, 2i8..16, 2i8..4), (text(), text(), text())).prop_map(
        |((rt, pt, op, perm), (resource_name, principal, host))| StandardAcl {
            resource_type: AclResourceType::from_code(rt).unwrap(),
            resource_name,
            pattern_type: AclPatternType::from_code(pt).unwrap(),
            principal,
            host,
            operation: AclOperation::from_code(op).unwrap(),
            permission_type: AclPermissionType::from_code(perm).unwrap(),
        },
    );
    let create = prop::collection::vec(api_error(), 0..4).prop_map(|results| {
        (
            ApiKey::CreateAcls,
            ControllerReply::CreateAcls(CreateAclsReply { results }),
        )
    });
    let delete = prop::collection::vec(
        (api_error(), prop::collection::vec(acl, 0..3)).prop_map(|(error, matching_acls)| {
            DeleteAclsFilterResult {
                error,
                matching_acls,
            }
        }),
        0..3,
    )
    .prop_map(|results| {
        (
            ApiKey::DeleteAcls,
            ControllerReply::DeleteAcls(DeleteAclsReply { results }),
        )
    });
    let scram = prop::collection::vec(
        (text(), api_error())
            .prop_map(|(user, error)| AlterUserScramCredentialsResult { user, error }),
        0..3,
    )
    .prop_map(|results| {
        (
            ApiKey::AlterUserScramCredentials,
            ControllerReply::AlterUserScramCredentials(AlterUserScramCredentialsReply { results }),
        )
    });
    let quotas = prop::collection::vec(
        (quota_entity(), api_error())
            .prop_map(|(entity, error)| ClientQuotaAlterResult { entity, error }),
        0..3,
    )
    .prop_map(|results| {
        (
            ApiKey::AlterClientQuotas,
            ControllerReply::AlterClientQuotas(AlterClientQuotasReply { results }),
        )
    });
    prop_oneof![create, delete, scram, quotas]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip_through_bytes(request in controller_request()) {
        prop_assert_eq!(request_round_trip(&request), request);
    }

    #[test]
    fn replies_round_trip_through_bytes((api_key, reply) in controller_reply()) {
        prop_assert_eq!(reply_round_trip(&reply, api_key), reply);
    }

    /// A whole-request error encodes at every version a sender may use, not only the one
    /// Fjord nodes speak: fields the older schemas lack (ElectLeaders' top-level error before
    /// v1, error messages) stay at their defaults, as Kafka's `getErrorResponse` leaves them.
    #[test]
    fn whole_request_errors_encode_at_every_version(request in controller_request()) {
        let (api_key, wire_version, body) = request_to_wire(&request);
        for version in api_key.valid_versions().min..=wire_version {
            let header = RequestHeader::default()
                .with_request_api_key(api_key as i16)
                .with_request_api_version(version);
            // Skip requests this version cannot carry (fields it lacks).
            if encode_request(&header, &body).is_err() {
                continue;
            }
            let older = request_through_bytes(api_key, version, &body);
            let response = error_to_wire(api_key, version, &older, 41, Some("not me"))
                .expect("error response");
            let encoded = encode_response(api_key, version, 9, &response);
            prop_assert!(encoded.is_ok(), "{:?} v{}: {:?}", api_key, version, encoded.err());
        }
    }

    /// A whole-request error, written per item by `error_to_wire`, reads back as documented,
    /// and NOT_CONTROLLER is seen wherever the response has a place for it.
    #[test]
    fn whole_request_errors_read_back_as_documented(
        request in controller_request(),
        error in api_error(),
    ) {
        let (api_key, version, body) = request_to_wire(&request);
        let body = request_through_bytes(api_key, version, &body);
        let response = error_to_wire(
            api_key,
            version,
            &body,
            error.code.code(),
            error.message.as_deref(),
        )
        .expect("error response");
        let response = response_through_bytes(api_key, version, &response);
        let reply = reply_from_wire(api_key, version, response).expect("reply from wire");
        prop_assert_eq!(&reply, &expected_error_reply(&request, &error));
        let has_place = !matches!(
            (&request, &reply),
            (ControllerRequest::CreateTopics(r), _) if r.topics.is_empty()
        ) && !matches!(
            (&request, &reply),
            (ControllerRequest::DeleteTopics(r), _) if r.topics.is_empty()
        ) && !matches!(
            (&request, &reply),
            (ControllerRequest::CreatePartitions(r), _) if r.topics.is_empty()
        ) && !matches!(
            (&request, &reply),
            (ControllerRequest::IncrementalAlterConfigs(r), _) if r.resources.is_empty()
        ) && !matches!(
            (&request, &reply),
            (ControllerRequest::AlterConfigs(r), _) if r.resources.is_empty()
        ) && !matches!(
            &request,
            ControllerRequest::CreateAcls(r) if r.creations.is_empty()
        ) && !matches!(
            &request,
            ControllerRequest::DeleteAcls(r) if r.filters.is_empty()
        ) && !matches!(
            &request,
            ControllerRequest::AlterUserScramCredentials(r)
                if r.deletions.is_empty() && r.upsertions.is_empty()
        ) && !matches!(
            &request,
            ControllerRequest::AlterClientQuotas(r) if r.entries.is_empty()
        );
        prop_assert_eq!(
            is_not_controller(&reply),
            error.code == ErrorCode::NotController && has_place
        );
    }

    /// Wire messages with arbitrary values in every field the conversion checks (random
    /// bytes are the protocol crate's fuzz targets' business: a hostile array length there
    /// needs the server's allocator guard): never a panic; what converts is exact.
    #[test]
    fn arbitrary_wire_requests_convert_or_give_wire_errors(request in wire_request()) {
        let (api_key, body) = request;
        let version = wire_version(api_key);
        let body = request_through_bytes(api_key, version, &body);
        match request_from_wire(api_key, version, body.clone()) {
            Ok(converted) => {
                let (key, v, back) = request_to_wire(&converted);
                prop_assert_eq!((key, v), (api_key, version));
                prop_assert_eq!(request_through_bytes(key, v, &back), body);
            }
            Err(err) => prop_assert_eq!(err.code(), ErrorCode::InvalidRequest),
        }
    }
}

/// Controller API messages with arbitrary values where the conversion validates.
fn wire_request() -> impl Strategy<Value = (ApiKey, RequestKind)> {
    use m::alter_configs_request as ac;
    use m::incremental_alter_configs_request as iac;
    let name = || "[a-z]{0,3}".prop_map(|n| TopicName(StrBytes::from_string(n)));
    let delete = prop::collection::vec(
        (
            proptest::option::of(name()),
            prop_oneof![Just(Uuid::nil()), Just(Uuid::from_u128(9))],
        ),
        0..3,
    )
    .prop_map(|states| {
        (
            ApiKey::DeleteTopics,
            RequestKind::DeleteTopics(
                m::DeleteTopicsRequest::default()
                    .with_timeout_ms(WIRE_TIMEOUT_MS)
                    .with_topics(
                        states
                            .into_iter()
                            .map(|(name, id)| {
                                m::delete_topics_request::DeleteTopicState::default()
                                    .with_name(name)
                                    .with_topic_id(id)
                            })
                            .collect(),
                    ),
            ),
        )
    });
    let elect = any::<i8>().prop_map(|election_type| {
        (
            ApiKey::ElectLeaders,
            RequestKind::ElectLeaders(
                m::ElectLeadersRequest::default()
                    .with_election_type(election_type)
                    .with_topic_partitions(None)
                    .with_timeout_ms(WIRE_TIMEOUT_MS),
            ),
        )
    });
    let incremental = prop::collection::vec(
        (any::<i8>(), prop::collection::vec(any::<i8>(), 0..3)),
        0..3,
    )
    .prop_map(|resources| {
        (
            ApiKey::IncrementalAlterConfigs,
            RequestKind::IncrementalAlterConfigs(
                m::IncrementalAlterConfigsRequest::default().with_resources(
                    resources
                        .into_iter()
                        .map(|(resource_type, ops)| {
                            iac::AlterConfigsResource::default()
                                .with_resource_type(resource_type)
                                .with_configs(
                                    ops.into_iter()
                                        .map(|op| {
                                            iac::AlterableConfig::default()
                                                .with_config_operation(op)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            ),
        )
    });
    let alter = prop::collection::vec(any::<i8>(), 0..3).prop_map(|types| {
        (
            ApiKey::AlterConfigs,
            RequestKind::AlterConfigs(
                m::AlterConfigsRequest::default().with_resources(
                    types
                        .into_iter()
                        .map(|t| ac::AlterConfigsResource::default().with_resource_type(t))
                        .collect(),
                ),
            ),
        )
    });
    let registration = any::<bool>().prop_map(|zk| {
        (
            ApiKey::BrokerRegistration,
            RequestKind::BrokerRegistration(
                m::BrokerRegistrationRequest::default().with_is_migrating_zk_broker(zk),
            ),
        )
    });
    let heartbeat =
        prop::collection::vec(any::<u128>().prop_map(Uuid::from_u128), 0..2).prop_map(|dirs| {
            (
                ApiKey::BrokerHeartbeat,
                RequestKind::BrokerHeartbeat(
                    m::BrokerHeartbeatRequest::default().with_offline_log_dirs(dirs),
                ),
            )
        });
    prop_oneof![delete, elect, incremental, alter, registration, heartbeat]
}

// ---- error codes ----

#[test]
fn every_error_code_maps_both_ways_and_matches_kafkas_name() {
    for (index, &code) in ALL_CODES.iter().enumerate() {
        assert_eq!(
            index_in_all_codes(code),
            index,
            "ALL_CODES lists {code:?} once"
        );
        assert_eq!(error_code_from_wire(code.code()), Some(code));
        if code == ErrorCode::None {
            assert_eq!(ResponseError::try_from_code(0), None);
            continue;
        }
        let kafka = ResponseError::try_from_code(code.code()).expect("a Kafka error code");
        assert_eq!(
            format!("{kafka:?}"),
            format!("{code:?}"),
            "Fjord's name for Kafka error code {} is Kafka's",
            code.code()
        );
    }
    let mut known = 0;
    for wire in i16::MIN..=i16::MAX {
        if let Some(code) = error_code_from_wire(wire) {
            assert_eq!(code.code(), wire, "code {wire} maps to itself");
            known += 1;
        }
    }
    assert_eq!(known, ALL_CODES.len(), "no code maps but the listed ones");
}

#[test]
fn unknown_error_codes_become_unknown_server_error_keeping_the_message() {
    // 56 KAFKA_STORAGE_ERROR: a Kafka code the controller types do not have.
    let body = ResponseKind::UnregisterBroker(
        m::UnregisterBrokerResponse::default()
            .with_error_code(56)
            .with_error_message(Some(StrBytes::from_static_str("disk gone"))),
    );
    let reply = reply_from_wire(ApiKey::UnregisterBroker, 0, body).unwrap();
    assert_eq!(
        reply,
        ControllerReply::UnregisterBroker(ApiError::new(
            ErrorCode::UnknownServerError,
            "disk gone"
        ))
    );
    let body = ResponseKind::AllocateProducerIds(
        m::AllocateProducerIdsResponse::default().with_error_code(1234),
    );
    let ControllerReply::AllocateProducerIds(reply) =
        reply_from_wire(ApiKey::AllocateProducerIds, 0, body).unwrap()
    else {
        panic!("an AllocateProducerIds reply");
    };
    assert_eq!(reply.error.code, ErrorCode::UnknownServerError);
    assert_eq!(
        reply.error.message.as_deref(),
        Some("Unknown error code 1234.")
    );
    let body =
        ResponseKind::AlterPartition(m::AlterPartitionResponse::default().with_error_code(9999));
    let ControllerReply::AlterPartition(reply) =
        reply_from_wire(ApiKey::AlterPartition, 3, body).unwrap()
    else {
        panic!("an AlterPartition reply");
    };
    assert_eq!(reply.error, ErrorCode::UnknownServerError);
}

// ---- versions ----

#[test]
fn wire_versions_are_within_the_crates_range() {
    for api_key in CONTROLLER_APIS.into_iter().chain([ApiKey::DescribeQuorum]) {
        let version = wire_version(api_key);
        let range = api_key.valid_versions();
        assert!(
            range.min <= version && version <= range.max,
            "{api_key:?} v{version} in {}-{}",
            range.min,
            range.max
        );
    }
    assert_eq!(wire_version(ApiKey::Produce), -1);
    // v1 of AlterPartitionReassignments carries a field Fjord's request type has not.
    assert_eq!(wire_version(ApiKey::AlterPartitionReassignments), 0);
}

#[test]
fn older_versions_map_as_their_schema_says() {
    // DeleteTopics v5: names only.
    let body = RequestKind::DeleteTopics(m::DeleteTopicsRequest::default().with_topic_names(vec![
        TopicName(StrBytes::from_static_str("a")),
        TopicName(StrBytes::from_static_str("b")),
    ]));
    let body = request_through_bytes(ApiKey::DeleteTopics, 5, &body);
    assert_eq!(
        request_from_wire(ApiKey::DeleteTopics, 5, body).unwrap(),
        ControllerRequest::DeleteTopics(DeleteTopicsRequest {
            topics: vec![TopicRef::Name("a".into()), TopicRef::Name("b".into())],
        })
    );
    // AlterPartition v2: NewIsr without broker epochs.
    use m::alter_partition_request::{PartitionData, TopicData};
    let topic_id = Uuid::from_u128(77);
    let body = RequestKind::AlterPartition(
        m::AlterPartitionRequest::default()
            .with_broker_id(BrokerId(1))
            .with_broker_epoch(10)
            .with_topics(vec![TopicData::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(2)
                    .with_leader_epoch(3)
                    .with_new_isr(vec![BrokerId(1), BrokerId(2)])
                    .with_partition_epoch(4)])]),
    );
    let body = request_through_bytes(ApiKey::AlterPartition, 2, &body);
    assert_eq!(
        request_from_wire(ApiKey::AlterPartition, 2, body).unwrap(),
        ControllerRequest::AlterPartition(AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: 10,
            topics: vec![AlterPartitionTopic {
                topic_id,
                partitions: vec![AlterPartitionData {
                    partition_index: 2,
                    leader_epoch: 3,
                    new_isr_with_epochs: vec![
                        BrokerState {
                            broker_id: 1,
                            broker_epoch: -1
                        },
                        BrokerState {
                            broker_id: 2,
                            broker_epoch: -1
                        },
                    ],
                    leader_recovery_state: 0,
                    partition_epoch: 4,
                }],
            }],
        })
    );
    // BrokerRegistration v2: no previous broker epoch on the wire, -1 as the schema default.
    let body = RequestKind::BrokerRegistration(
        m::BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(3))
            .with_cluster_id(StrBytes::from_static_str("c")),
    );
    let body = request_through_bytes(ApiKey::BrokerRegistration, 2, &body);
    let ControllerRequest::BrokerRegistration(r) =
        request_from_wire(ApiKey::BrokerRegistration, 2, body).unwrap()
    else {
        panic!("a registration");
    };
    assert_eq!((r.broker_id, r.previous_broker_epoch), (3, -1));
}

// ---- garbage ----

#[test]
fn invalid_requests_give_wire_errors() {
    use m::delete_topics_request::DeleteTopicState;
    let neither = RequestKind::DeleteTopics(
        m::DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()]),
    );
    assert_eq!(
        request_from_wire(ApiKey::DeleteTopics, 6, neither),
        Ok(ControllerRequest::DeleteTopics(DeleteTopicsRequest {
            topics: vec![TopicRef::Id(Uuid::nil())]
        }))
    );
    let both = RequestKind::DeleteTopics(m::DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_topic_id(Uuid::from_u128(1)),
    ]));
    assert!(matches!(
        request_from_wire(ApiKey::DeleteTopics, 6, both),
        Err(WireError::Unsupported { .. })
    ));
    let election =
        RequestKind::ElectLeaders(m::ElectLeadersRequest::default().with_election_type(7));
    assert_eq!(
        request_from_wire(ApiKey::ElectLeaders, 2, election),
        Err(WireError::OutOfRange {
            field: "ElectLeaders.ElectionType",
            value: 7
        })
    );
    use m::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig as C};
    let bad_op = RequestKind::IncrementalAlterConfigs(
        m::IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_configs(vec![C::default().with_config_operation(4)]),
        ]),
    );
    assert!(matches!(
        request_from_wire(ApiKey::IncrementalAlterConfigs, 1, bad_op),
        Err(WireError::OutOfRange {
            field: "ConfigOperation",
            ..
        })
    ));
    // 8 = BROKER_LOGGER: not a resource the controller stores.
    let bad_resource =
        RequestKind::AlterConfigs(m::AlterConfigsRequest::default().with_resources(vec![
            m::alter_configs_request::AlterConfigsResource::default().with_resource_type(8),
        ]));
    assert!(matches!(
        request_from_wire(ApiKey::AlterConfigs, 2, bad_resource),
        Err(WireError::OutOfRange {
            field: "ResourceType",
            value: 8
        })
    ));
    let zk = RequestKind::BrokerRegistration(
        m::BrokerRegistrationRequest::default().with_is_migrating_zk_broker(true),
    );
    assert!(matches!(
        request_from_wire(ApiKey::BrokerRegistration, 4, zk),
        Err(WireError::Unsupported { .. })
    ));
    let offline = RequestKind::BrokerHeartbeat(
        m::BrokerHeartbeatRequest::default().with_offline_log_dirs(vec![Uuid::from_u128(5)]),
    );
    assert!(matches!(
        request_from_wire(ApiKey::BrokerHeartbeat, 1, offline),
        Err(WireError::Unsupported { .. })
    ));
    let no_rf_change = RequestKind::AlterPartitionReassignments(
        m::AlterPartitionReassignmentsRequest::default()
            .with_allow_replication_factor_change(false),
    );
    assert!(matches!(
        request_from_wire(ApiKey::AlterPartitionReassignments, 1, no_rf_change),
        Err(WireError::Unsupported { .. })
    ));
    // Kind, API and version mismatches.
    let heartbeat = RequestKind::BrokerHeartbeat(m::BrokerHeartbeatRequest::default());
    assert!(matches!(
        request_from_wire(ApiKey::UnregisterBroker, 0, heartbeat.clone()),
        Err(WireError::KindMismatch { .. })
    ));
    assert_eq!(
        request_from_wire(ApiKey::BrokerHeartbeat, 9, heartbeat.clone()),
        Err(WireError::UnsupportedVersion {
            api_key: ApiKey::BrokerHeartbeat,
            api_version: 9,
            min: 0,
            max: 1
        })
    );
    assert_eq!(
        request_from_wire(ApiKey::BrokerHeartbeat, 9, heartbeat.clone())
            .unwrap_err()
            .code(),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        request_from_wire(ApiKey::Produce, 9, heartbeat.clone()),
        Err(WireError::NotAControllerApi {
            api_key: ApiKey::Produce
        })
    );
    assert!(matches!(
        error_to_wire(ApiKey::UnregisterBroker, 0, &heartbeat, 41, None),
        Err(WireError::KindMismatch { .. })
    ));
}

#[test]
fn replies_without_a_wire_form_are_refused() {
    let error = ControllerReply::Error(ApiError::new(ErrorCode::NotController, "no"));
    assert_eq!(
        reply_to_wire(&error, ApiKey::CreateTopics, 7),
        Err(WireError::WholeRequestError)
    );
    assert_eq!(
        reply_to_wire(&ControllerReply::Internal, ApiKey::CreateTopics, 7),
        Err(WireError::InternalReply)
    );
    let unregister = ControllerReply::UnregisterBroker(ApiError::NONE);
    assert!(matches!(
        reply_to_wire(&unregister, ApiKey::CreateTopics, 7),
        Err(WireError::KindMismatch { .. })
    ));
    let response = ResponseKind::UnregisterBroker(m::UnregisterBrokerResponse::default());
    assert!(matches!(
        reply_from_wire(ApiKey::CreateTopics, 7, response),
        Err(WireError::KindMismatch { .. })
    ));
}

#[test]
fn not_controller_is_found_anywhere_in_a_reply() {
    assert!(is_not_controller(&ControllerReply::Error(
        ApiError::code_only(ErrorCode::NotController)
    )));
    assert!(!is_not_controller(&ControllerReply::Error(
        ApiError::code_only(ErrorCode::UnknownServerError)
    )));
    assert!(!is_not_controller(&ControllerReply::Internal));
    // AlterPartition: a lagging controller answers NOT_CONTROLLER per partition.
    let partition = AlterPartitionPartitionReply {
        partition_index: 0,
        error: ErrorCode::NotController,
        leader_id: -1,
        leader_epoch: -1,
        isr: Vec::new(),
        leader_recovery_state: 0,
        partition_epoch: -1,
    };
    let reply = ControllerReply::AlterPartition(AlterPartitionReply {
        error: ErrorCode::None,
        topics: vec![AlterPartitionTopicReply {
            topic_id: Uuid::from_u128(1),
            partitions: vec![partition.clone()],
        }],
    });
    assert!(is_not_controller(&reply));
    let ok = ControllerReply::AlterPartition(AlterPartitionReply {
        error: ErrorCode::None,
        topics: vec![AlterPartitionTopicReply {
            topic_id: Uuid::from_u128(1),
            partitions: vec![AlterPartitionPartitionReply {
                error: ErrorCode::FencedLeaderEpoch,
                ..partition
            }],
        }],
    });
    assert!(!is_not_controller(&ok));
}

#[test]
fn controlled_shutdown_is_derived_from_the_heartbeat() {
    let request = BrokerHeartbeatRequest {
        broker_id: 1,
        broker_epoch: 5,
        current_metadata_offset: 10,
        want_fence: false,
        want_shut_down: true,
    };
    let reply = BrokerHeartbeatReply {
        error: ApiError::NONE,
        is_caught_up: true,
        is_fenced: false,
        in_controlled_shutdown: false,
        should_shut_down: false,
    };
    assert!(heartbeat_in_controlled_shutdown(&request, &reply));
    let done = BrokerHeartbeatReply {
        should_shut_down: true,
        is_fenced: true,
        ..reply.clone()
    };
    assert!(!heartbeat_in_controlled_shutdown(&request, &done));
    let running = BrokerHeartbeatRequest {
        want_shut_down: false,
        ..request
    };
    assert!(!heartbeat_in_controlled_shutdown(&running, &reply));
}

// ---- DescribeQuorum ----

fn quorum() -> fjord_raft::QuorumDescription {
    use fjord_raft::VoterState;
    fjord_raft::QuorumDescription {
        leader_id: Some(1),
        term: 4,
        commit_index: 90,
        applied_index: 88,
        voters: vec![
            VoterState {
                id: 1,
                match_index: Some(100),
                last_contact_tick: Some(50),
            },
            VoterState {
                id: 2,
                match_index: Some(100),
                last_contact_tick: Some(48),
            },
            VoterState {
                id: 3,
                match_index: Some(70),
                last_contact_tick: None,
            },
        ],
    }
}

#[test]
fn describe_quorum_reports_voters_and_observers_at_every_version() {
    let response = describe_quorum_response(&quorum(), &[(4, 95), (5, -1)], "__cluster_metadata");
    let body = ResponseKind::DescribeQuorum(response.clone());
    for version in 0..=2 {
        let decoded = response_through_bytes(ApiKey::DescribeQuorum, version, &body);
        let ResponseKind::DescribeQuorum(decoded) = decoded else {
            panic!("a DescribeQuorum response");
        };
        assert_eq!(decoded.error_code, 0);
        assert_eq!(decoded.topics.len(), 1);
        let topic = &decoded.topics[0];
        assert_eq!(topic.topic_name.as_str(), "__cluster_metadata");
        let p = &topic.partitions[0];
        assert_eq!(p.partition_index, 0);
        assert_eq!(
            (p.leader_id.0, p.leader_epoch, p.high_watermark),
            (1, 4, 90)
        );
        let voters: Vec<(i32, i64, i64, i64)> = p
            .current_voters
            .iter()
            .map(|v| {
                (
                    v.replica_id.0,
                    v.log_end_offset,
                    v.last_fetch_timestamp,
                    v.last_caught_up_timestamp,
                )
            })
            .collect();
        // Timestamps are v1+; without a clock they are unknown.
        assert_eq!(
            voters,
            vec![(1, 100, -1, -1), (2, 100, -1, -1), (3, 70, -1, -1)]
        );
        let observers: Vec<(i32, i64)> = p
            .observers
            .iter()
            .map(|o| (o.replica_id.0, o.log_end_offset))
            .collect();
        assert_eq!(observers, vec![(4, 95), (5, -1)]);
    }
}

#[test]
fn describe_quorum_converts_ticks_with_a_clock() {
    let clock = TickClock {
        now_ms: 1_000_000,
        tick_ms: 100,
    };
    let response = describe_quorum_response_at(&quorum(), &[], "__cluster_metadata", Some(clock));
    let body = response_through_bytes(
        ApiKey::DescribeQuorum,
        2,
        &ResponseKind::DescribeQuorum(response),
    );
    let ResponseKind::DescribeQuorum(decoded) = body else {
        panic!("a DescribeQuorum response");
    };
    let times: Vec<(i64, i64)> = decoded.topics[0].partitions[0]
        .current_voters
        .iter()
        .map(|v| (v.last_fetch_timestamp, v.last_caught_up_timestamp))
        .collect();
    // Leader now; voter 2 two ticks ago and caught up; voter 3 never heard from this term.
    assert_eq!(
        times,
        vec![(1_000_000, 1_000_000), (999_800, 999_800), (-1, -1)]
    );
    // A follower's view: no leader entry, nothing known.
    let mut follower = quorum();
    follower.leader_id = None;
    let response = describe_quorum_response_at(&follower, &[], "m", Some(clock));
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.leader_id.0, -1);
    assert!(p
        .current_voters
        .iter()
        .all(|v| v.last_fetch_timestamp == -1 && v.last_caught_up_timestamp == -1));
}

#[test]
fn elect_leaders_error_response_has_the_top_level_error_from_v1_only() {
    use m::elect_leaders_request::TopicPartitions;
    let request = RequestKind::ElectLeaders(
        m::ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0, 1]),
        ])),
    );
    for (version, top_level) in [(0, 0), (1, 41), (2, 41)] {
        let response = error_to_wire(ApiKey::ElectLeaders, version, &request, 41, None).unwrap();
        let ResponseKind::ElectLeaders(r) =
            response_through_bytes(ApiKey::ElectLeaders, version, &response)
        else {
            panic!("an ElectLeaders response");
        };
        assert_eq!(r.error_code, top_level, "v{version}");
        let codes: Vec<i16> = r
            .replica_election_results
            .iter()
            .flat_map(|t| &t.partition_result)
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![41, 41], "v{version}");
    }
}

#[test]
fn describe_quorum_error_response_has_the_top_level_error() {
    let request = RequestKind::DescribeQuorum(m::DescribeQuorumRequest::default());
    let response = error_to_wire(ApiKey::DescribeQuorum, 2, &request, 41, Some("not me")).unwrap();
    let ResponseKind::DescribeQuorum(r) =
        response_through_bytes(ApiKey::DescribeQuorum, 2, &response)
    else {
        panic!("a DescribeQuorum response");
    };
    assert_eq!(r.error_code, 41);
    assert_eq!(r.error_message.as_deref(), Some("not me"));
    assert!(r.topics.is_empty());
}

#[test]
fn error_responses_echo_kafkas_shape_for_list_reassignments() {
    // Kafka's getErrorResponse echoes asked partitions with empty replica lists.
    let request =
        ControllerRequest::ListPartitionReassignments(ListPartitionReassignmentsRequest {
            topics: Some(vec![("t".into(), vec![0, 1])]),
        });
    let (api_key, version, body) = request_to_wire(&request);
    let response = error_to_wire(api_key, version, &body, 41, None).unwrap();
    let ResponseKind::ListPartitionReassignments(r) = &response else {
        panic!("a ListPartitionReassignments response");
    };
    assert_eq!(r.error_code, 41);
    assert_eq!(r.topics[0].partitions.len(), 2);
}
