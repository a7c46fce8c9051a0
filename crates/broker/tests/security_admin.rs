//! The security admin APIs on a single node (`SingleNode`: one-voter quorum, real controller,
//! real files): CreateAcls / DescribeAcls / DeleteAcls, AlterUserScramCredentials /
//! DescribeUserScramCredentials, AlterClientQuotas / DescribeClientQuotas, answered as Kafka
//! answers them, and surviving a restart (metadata log replay).

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_broker::testing::SingleNode;
use fjord_broker::{BrokerConfig, Outcome};
use fjord_protocol::kafka_protocol::messages::*;
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::response::encode_response;
use fjord_protocol::{ApiKey, RequestKind, ResponseError, ResponseKind};

fn single_node(dir: &std::path::Path) -> SingleNode {
    let values = BTreeMap::from([("data.dir".to_string(), dir.display().to_string())]);
    SingleNode::start(BrokerConfig::from_settings(&values).unwrap()).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Sends `request` at `version`, checks the response encodes at that version, returns it.
fn call(node: &SingleNode, api_key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(3);
    let Outcome::Respond(response) = block_on(node.handle(&header, request)) else {
        panic!("{api_key:?}: no response");
    };
    encode_response(api_key, version, 3, &response)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    response
}

fn entity(parts: &[(&str, Option<&str>)]) -> Vec<alter_client_quotas_request::EntityData> {
    parts
        .iter()
        .map(|(t, n)| {
            alter_client_quotas_request::EntityData::default()
                .with_entity_type(s(t))
                .with_entity_name(n.map(s))
        })
        .collect()
}

/// One AlterClientQuotas entry: entity, then (key, value, remove) per op.
type QuotaAlteration<'a> = (
    Vec<alter_client_quotas_request::EntityData>,
    Vec<(&'a str, f64, bool)>,
);

fn alter_quotas(
    node: &SingleNode,
    entries: Vec<QuotaAlteration<'_>>,
    validate_only: bool,
) -> Vec<i16> {
    use alter_client_quotas_request::{EntryData, OpData};
    let request = AlterClientQuotasRequest::default()
        .with_validate_only(validate_only)
        .with_entries(
            entries
                .into_iter()
                .map(|(entity, ops)| {
                    EntryData::default().with_entity(entity).with_ops(
                        ops.into_iter()
                            .map(|(k, v, remove)| {
                                OpData::default()
                                    .with_key(s(k))
                                    .with_value(v)
                                    .with_remove(remove)
                            })
                            .collect(),
                    )
                })
                .collect(),
        );
    let ResponseKind::AlterClientQuotas(response) = call(
        node,
        ApiKey::AlterClientQuotas,
        1,
        RequestKind::AlterClientQuotas(request),
    ) else {
        panic!("wrong response")
    };
    response.entries.iter().map(|e| e.error_code).collect()
}

/// (entity as "type=name" strings, sorted values) of every entry, or the top-level error.
type QuotaEntry = (Vec<String>, Vec<(String, f64)>);

fn describe_quotas(
    node: &SingleNode,
    components: Vec<(&str, i8, Option<&str>)>,
    strict: bool,
) -> Result<Vec<QuotaEntry>, i16> {
    use describe_client_quotas_request::ComponentData;
    let request = DescribeClientQuotasRequest::default()
        .with_strict(strict)
        .with_components(
            components
                .into_iter()
                .map(|(t, m, n)| {
                    ComponentData::default()
                        .with_entity_type(s(t))
                        .with_match_type(m)
                        .with_match(n.map(s))
                })
                .collect(),
        );
    let ResponseKind::DescribeClientQuotas(response) = call(
        node,
        ApiKey::DescribeClientQuotas,
        1,
        RequestKind::DescribeClientQuotas(request),
    ) else {
        panic!("wrong response")
    };
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let mut out: Vec<QuotaEntry> = response
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let entity = e
                .entity
                .iter()
                .map(|d| {
                    format!(
                        "{}={}",
                        d.entity_type,
                        d.entity_name.as_ref().map_or("<default>", |n| n.as_str())
                    )
                })
                .collect();
            let values = e
                .values
                .iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            (entity, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[test]
fn client_quotas_are_altered_described_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let invalid = ResponseError::InvalidRequest.code();
    let codes = alter_quotas(
        &node,
        vec![
            (
                entity(&[("user", Some("alice"))]),
                vec![("producer_byte_rate", 1024.0, false)],
            ),
            (
                entity(&[("user", Some("alice")), ("client-id", None)]),
                vec![("consumer_byte_rate", 2048.0, false)],
            ),
            (
                entity(&[("client-id", None)]),
                vec![("request_percentage", 50.0, false)],
            ),
            (
                entity(&[("user", None)]),
                vec![("producer_byte_rate", -1.0, false)],
            ),
            (
                entity(&[("group", Some("g"))]),
                vec![("producer_byte_rate", 1.0, false)],
            ),
        ],
        false,
    );
    assert_eq!(codes, vec![0, 0, 0, invalid, invalid]);
    // validate_only changes nothing.
    assert_eq!(
        alter_quotas(
            &node,
            vec![(
                entity(&[("user", Some("bob"))]),
                vec![("producer_byte_rate", 1.0, false)]
            )],
            true
        ),
        vec![0]
    );
    // Everything (no components, not strict).
    let all = describe_quotas(&node, vec![], false).unwrap();
    assert_eq!(
        all,
        vec![
            (
                vec!["client-id=<default>".to_string()],
                vec![("request_percentage".to_string(), 50.0)]
            ),
            (
                vec!["client-id=<default>".to_string(), "user=alice".to_string()],
                vec![("consumer_byte_rate".to_string(), 2048.0)]
            ),
            (
                vec!["user=alice".to_string()],
                vec![("producer_byte_rate".to_string(), 1024.0)]
            ),
        ]
    );
    // EXACT user alice: both of alice's entities; strict: only the user-only one.
    assert_eq!(
        describe_quotas(&node, vec![("user", 0, Some("alice"))], false)
            .unwrap()
            .len(),
        2
    );
    let strict = describe_quotas(&node, vec![("user", 0, Some("alice"))], true).unwrap();
    assert_eq!(strict.len(), 1);
    assert_eq!(strict[0].0, vec!["user=alice".to_string()]);
    // DEFAULT client-id, SPECIFIED user.
    assert_eq!(
        describe_quotas(&node, vec![("client-id", 1, None)], true)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        describe_quotas(&node, vec![("user", 2, None)], false)
            .unwrap()
            .len(),
        2
    );
    // Invalid filters.
    assert_eq!(
        describe_quotas(&node, vec![("user", 0, None)], false),
        Err(invalid)
    );
    assert_eq!(
        describe_quotas(&node, vec![("ip", 2, None), ("user", 2, None)], false),
        Err(invalid)
    );
    assert_eq!(
        describe_quotas(&node, vec![("group", 2, None)], false),
        Err(ResponseError::UnsupportedVersion.code())
    );
    // Removing a key removes an entity left without keys.
    assert_eq!(
        alter_quotas(
            &node,
            vec![(
                entity(&[("client-id", None)]),
                vec![("request_percentage", 0.0, true)]
            )],
            false
        ),
        vec![0]
    );
    assert_eq!(describe_quotas(&node, vec![], false).unwrap().len(), 2);
    drop(node);
    // The quotas come back from the metadata log after a restart.
    let node = single_node(dir.path());
    let after = describe_quotas(&node, vec![], false).unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[1].1, vec![("producer_byte_rate".to_string(), 1024.0)]);
}

fn describe_acls(node: &SingleNode, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let ResponseKind::DescribeAcls(response) = call(
        node,
        ApiKey::DescribeAcls,
        3,
        RequestKind::DescribeAcls(request),
    ) else {
        panic!("wrong response")
    };
    response
}

/// Every field "any" (the generated defaults of the nullable strings are "", not null).
fn any_acl_filter() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

#[test]
fn acls_and_scram_credentials_round_trip_and_survive_a_restart() {
    use create_acls_request::AclCreation;
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let creation = |name: &str, pattern: i8, principal: &str| {
        AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_resource_pattern_type(pattern)
            .with_principal(s(principal))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3)
    };
    let request = CreateAclsRequest::default().with_creations(vec![
        creation("orders", 3, "User:alice"),
        creation("ord", 4, "User:bob"),
        creation("", 3, "User:bob"),
    ]);
    let ResponseKind::CreateAcls(created) = call(
        &node,
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(request),
    ) else {
        panic!("wrong response")
    };
    let codes: Vec<i16> = created.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 0, ResponseError::InvalidRequest.code()]);
    // Visible at once on this broker (the handler waited for its image).
    let all = describe_acls(&node, any_acl_filter());
    assert_eq!(all.error_code, 0);
    assert_eq!(all.resources.len(), 2);
    // MATCH "orders": the literal and the prefixed ACL both apply.
    let matching = describe_acls(
        &node,
        any_acl_filter()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s("orders")))
            .with_pattern_type_filter(2),
    );
    assert_eq!(matching.resources.len(), 2);
    // An unknown operation code is INVALID_REQUEST.
    assert_eq!(
        describe_acls(&node, any_acl_filter().with_operation(0)).error_code,
        ResponseError::InvalidRequest.code()
    );

    // SCRAM: upsert two users, one with a bad iteration count.
    use alter_user_scram_credentials_request::ScramCredentialUpsertion as U;
    let upsert = |name: &str, mechanism: i8, iterations: i32| {
        U::default()
            .with_name(s(name))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from(vec![9u8; 32]))
    };
    let request = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![upsert("alice", 1, 4096), upsert("bob", 2, 100)]);
    let ResponseKind::AlterUserScramCredentials(altered) = call(
        &node,
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(request),
    ) else {
        panic!("wrong response")
    };
    let results: Vec<(String, i16)> = altered
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        results,
        vec![
            ("alice".to_string(), 0),
            (
                "bob".to_string(),
                ResponseError::UnacceptableCredential.code()
            )
        ]
    );
    let describe_users = |node: &SingleNode, users: Option<Vec<&str>>| {
        use describe_user_scram_credentials_request::UserName;
        let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.into_iter()
                .map(|n| UserName::default().with_name(s(n)))
                .collect()
        }));
        let ResponseKind::DescribeUserScramCredentials(response) = call(
            node,
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(request),
        ) else {
            panic!("wrong response")
        };
        response
            .results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.error_code,
                    r.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        describe_users(&node, None),
        vec![("alice".to_string(), 0, vec![(1, 4096)])]
    );
    assert_eq!(
        describe_users(&node, Some(vec!["nobody", "alice", "alice"])),
        vec![
            (
                "nobody".to_string(),
                ResponseError::ResourceNotFound.code(),
                vec![]
            ),
            (
                "alice".to_string(),
                ResponseError::DuplicateResource.code(),
                vec![]
            ),
        ]
    );
    drop(node);

    // After a restart the ACLs and credentials come back from the metadata log.
    let node = single_node(dir.path());
    assert_eq!(describe_acls(&node, any_acl_filter()).resources.len(), 2);
    assert_eq!(
        describe_users(&node, None),
        vec![("alice".to_string(), 0, vec![(1, 4096)])]
    );
    let stored = node
        .image()
        .scram_credentials
        .get(&(
            "alice".to_string(),
            fjord_metadata::security::ScramMechanism::ScramSha256,
        ))
        .cloned()
        .unwrap();
    assert_eq!(
        stored,
        fjord_metadata::security::ScramCredential::from_salted_password(
            fjord_metadata::security::ScramMechanism::ScramSha256,
            b"salt",
            &[9; 32],
            4096
        )
    );

    // DeleteAcls by principal: lists what it removed.
    use delete_acls_request::DeleteAclsFilter;
    let request = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(s("User:bob")))
        .with_operation(1)
        .with_permission_type(1)]);
    let ResponseKind::DeleteAcls(deleted) = call(
        &node,
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(request),
    ) else {
        panic!("wrong response")
    };
    assert_eq!(deleted.filter_results.len(), 1);
    let matched = &deleted.filter_results[0].matching_acls;
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0].resource_name.as_str(), "ord");
    assert_eq!(matched[0].pattern_type, 4);
    let left = describe_acls(&node, any_acl_filter());
    assert_eq!(left.resources.len(), 1);
    assert_eq!(left.resources[0].resource_name.as_str(), "orders");
}

/// With a snapshot after (nearly) every entry, the ACLs, credentials and quotas come back
/// from the snapshot (`image_to_records`) at restart, not only from replayed entries.
#[test]
fn security_metadata_survives_a_restart_from_a_snapshot() {
    use create_acls_request::AclCreation;
    let dir = tempfile::tempdir().unwrap();
    let values = BTreeMap::from([
        ("data.dir".to_string(), dir.path().display().to_string()),
        (
            "metadata.log.max.record.bytes.between.snapshots".to_string(),
            "1".to_string(),
        ),
    ]);
    let config = BrokerConfig::from_settings(&values).unwrap();
    let node = SingleNode::start(config.clone()).unwrap();
    let request = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(3)
        .with_resource_name(s("g"))
        .with_resource_pattern_type(3)
        .with_principal(s("User:x"))
        .with_host(s("10.0.0.1"))
        .with_operation(3)
        .with_permission_type(2)]);
    call(
        &node,
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(request),
    );
    use alter_user_scram_credentials_request::ScramCredentialUpsertion as U;
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![U::default()
        .with_name(s("x"))
        .with_mechanism(2)
        .with_iterations(8192)
        .with_salt(Bytes::from_static(b"pepper"))
        .with_salted_password(Bytes::from(vec![1u8; 64]))]);
    call(
        &node,
        ApiKey::AlterUserScramCredentials,
        0,
        RequestKind::AlterUserScramCredentials(request),
    );
    assert_eq!(
        alter_quotas(
            &node,
            vec![(
                entity(&[("ip", Some("10.0.0.1"))]),
                vec![("connection_creation_rate", 7.0, false)]
            )],
            false
        ),
        vec![0]
    );
    let before = node.image();
    assert_eq!(
        (
            before.acls.len(),
            before.scram_credentials.len(),
            before.client_quotas.len()
        ),
        (1, 1, 1)
    );
    drop(node);
    let snapshots = std::fs::read_dir(dir.path().join("__cluster_metadata-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".checkpoint"))
        })
        .count();
    assert!(snapshots > 0, "no metadata snapshot was written");
    let node = SingleNode::start(config).unwrap();
    let after = node.image();
    assert_eq!(after.acls, before.acls);
    assert_eq!(after.scram_credentials, before.scram_credentials);
    assert_eq!(after.client_quotas, before.client_quotas);
}
