//! ACLs, SCRAM credentials and client quotas (issue 9): Kafka's `AclControlManager`,
//! `ScramControlManager` and `ClientQuotaControlManager`. The state is the speculative image's
//! `acls`, `scram_credentials` and `client_quotas`; these handlers only validate and write
//! records.
//!
//! * CreateAcls: each creation validated as `AclControlManager.validateNewAcl` plus the
//!   broker-side checks of Kafka's `AclApis` (a CLUSTER resource is named `kafka-cluster`, a
//!   principal is `Type:name`); an ACL identical to an existing one (or to an earlier creation
//!   of the same request) succeeds without a record; new ids come from the seeded RNG.
//! * DeleteAcls: every ACL matching a filter ([`AclBindingFilter`]) is removed once, and each
//!   filter lists what it matched.
//! * AlterUserScramCredentials: a user named twice (in deletions or upsertions) gets
//!   DUPLICATE_RESOURCE; UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL (empty user,
//!   iterations outside 4096..=16384), RESOURCE_NOT_FOUND for deleting an absent credential.
//!   Stored and server keys are derived from the client's salted password
//!   ([`ScramCredential::from_salted_password`]).
//! * AlterClientQuotas: entities of `user`, `client-id`, both, or `ip` alone; keys per entity
//!   kind (`QuotaConfig`), values > 0 and integral for the byte rates; a removal of an absent
//!   key writes nothing; `validate_only` writes nothing. An `ip` entity must be an IP address
//!   (Kafka also accepts a resolvable host name; the controller does no DNS).
//!
//! Every item that would not fit the entry (`max_records_per_entry`) is answered
//! THROTTLING_QUOTA_EXCEEDED, as the other admin requests are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fjord_metadata::acl_filter::CLUSTER_NAME;
use fjord_metadata::security::{
    AclOperation, AclPatternType, AclPermissionType, AclResourceType, ClientQuotaEntity,
    ScramCredential, ScramMechanism, StandardAcl, CONNECTION_CREATION_RATE, CONSUMER_BYTE_RATE,
    CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE, QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_IP,
    QUOTA_ENTITY_USER, REQUEST_PERCENTAGE,
};
use fjord_metadata::{
    AccessControlEntryRecord, ClientQuotaRecord, MetadataRecord, RemoveAccessControlEntryRecord,
    RemoveUserScramCredentialRecord, UserScramCredentialRecord,
};

use super::{HandlerResult, QuorumController, Txn};
use crate::api::{
    AclCreation, AlterClientQuotasReply, AlterClientQuotasRequest, AlterUserScramCredentialsReply,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResult, ApiError,
    ClientQuotaAlterResult, ClientQuotaAlteration, ControllerReply, CreateAclsReply,
    CreateAclsRequest, DeleteAclsFilterResult, DeleteAclsReply, DeleteAclsRequest, ErrorCode,
    ACL_REQUEST_ITEMS_MAX,
};

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

fn no_room() -> ApiError {
    ApiError::new(
        ErrorCode::ThrottlingQuotaExceeded,
        "Too many changes in one request; retry the rest.",
    )
}

/// Kafka `AclControlManager.validateNewAcl` and `AclApis`' checks: the ACL to store.
pub fn validate_new_acl(c: &AclCreation) -> Result<StandardAcl, ApiError> {
    let resource_type = AclResourceType::from_code(c.resource_type)
        .ok_or_else(|| invalid_request(format!("Invalid resourceType {}", c.resource_type)))?;
    let pattern_type = AclPatternType::from_code(c.pattern_type)
        .ok_or_else(|| invalid_request(format!("Invalid patternType {}", c.pattern_type)))?;
    let operation = AclOperation::from_code(c.operation)
        .ok_or_else(|| invalid_request(format!("Invalid operation {}", c.operation)))?;
    let permission_type = AclPermissionType::from_code(c.permission_type)
        .ok_or_else(|| invalid_request(format!("Invalid permissionType {}", c.permission_type)))?;
    if c.resource_name.is_empty() {
        return Err(invalid_request("Resource name should not be empty"));
    }
    if resource_type == AclResourceType::Cluster && c.resource_name != CLUSTER_NAME {
        return Err(invalid_request(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        )));
    }
    match c.principal.split_once(':') {
        Some((kind, _)) if !kind.is_empty() => {}
        _ => {
            return Err(invalid_request(format!(
                "Expected a string in format principalType:principalName but got {}",
                c.principal
            )))
        }
    }
    Ok(StandardAcl {
        resource_type,
        resource_name: c.resource_name.clone(),
        pattern_type,
        principal: c.principal.clone(),
        host: c.host.clone(),
        operation,
        permission_type,
    })
}

/// The config keys an entity of these types may set, and whether each must be integral
/// (Kafka `QuotaConfig.userAndClientQuotaConfigs` / `ipConfigs`: LONG/INT vs DOUBLE), with
/// the largest value its type holds.
fn quota_keys(
    entity: &BTreeMap<String, Option<String>>,
) -> Result<&'static [(&'static str, Option<f64>)], ApiError> {
    const USER_CLIENT: &[(&str, Option<f64>)] = &[
        (PRODUCER_BYTE_RATE, Some(i64::MAX as f64)),
        (CONSUMER_BYTE_RATE, Some(i64::MAX as f64)),
        (REQUEST_PERCENTAGE, None),
        (CONTROLLER_MUTATION_RATE, None),
    ];
    const IP: &[(&str, Option<f64>)] = &[(CONNECTION_CREATION_RATE, Some(i32::MAX as f64))];
    let has_user = entity.contains_key(QUOTA_ENTITY_USER);
    let has_client = entity.contains_key(QUOTA_ENTITY_CLIENT_ID);
    match entity.get(QUOTA_ENTITY_IP) {
        Some(_) if has_user || has_client => Err(invalid_request(
            "Invalid quota entity combination, IP entity should not be combined with User or ClientId",
        )),
        Some(Some(ip)) if ip.parse::<IpAddr>().is_err() => Err(invalid_request(format!(
            "{ip} is not a valid IP or resolvable host."
        ))),
        Some(_) => Ok(IP),
        None if has_user || has_client => Ok(USER_CLIENT),
        None => Err(invalid_request("Invalid empty client quota entity")),
    }
}

/// Kafka `ClientQuotaControlManager.validateEntity`: the entity as the image keys it.
fn validate_quota_entity(
    entity: &[(String, Option<String>)],
) -> Result<ClientQuotaEntity, ApiError> {
    if entity.is_empty() {
        return Err(invalid_request("Invalid empty client quota entity"));
    }
    let mut out = ClientQuotaEntity::new();
    for (entity_type, name) in entity {
        if out.contains_key(entity_type) {
            return Err(invalid_request(format!(
                "Invalid client quota entity, duplicate entity entry {entity_type}"
            )));
        }
        if ![QUOTA_ENTITY_USER, QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_IP]
            .contains(&entity_type.as_str())
        {
            return Err(invalid_request(format!(
                "Unhandled client quota entity type: {entity_type}"
            )));
        }
        if name.as_deref() == Some("") {
            return Err(invalid_request(format!(
                "Empty {entity_type} not supported"
            )));
        }
        out.insert(entity_type.clone(), name.clone());
    }
    Ok(out)
}

/// Kafka `validateQuotaKeyValue`.
fn validate_quota_value(
    keys: &[(&'static str, Option<f64>)],
    key: &str,
    value: f64,
) -> Result<(), ApiError> {
    let Some((_, integral_max)) = keys.iter().find(|(k, _)| *k == key) else {
        return Err(invalid_request(format!("Invalid configuration key {key}")));
    };
    // NaN is refused too.
    if value.is_nan() || value <= 0.0 {
        return Err(invalid_request(format!(
            "Quota {key} must be greater than 0"
        )));
    }
    if let Some(max) = integral_max {
        if value > *max {
            return Err(invalid_request(format!(
                "Proposed value for {key} is too large."
            )));
        }
        if (value % 1.0).abs() > 1e-6 {
            return Err(invalid_request(format!(
                "{key} cannot be a fractional value."
            )));
        }
    }
    Ok(())
}

impl QuorumController {
    pub(super) fn create_acls(&mut self, txn: &mut Txn, req: CreateAclsRequest) -> HandlerResult {
        let mut existing: BTreeSet<StandardAcl> = self.speculative.acls.values().cloned().collect();
        let mut results = Vec::with_capacity(req.creations.len());
        for (i, creation) in req.creations.iter().enumerate() {
            if i >= ACL_REQUEST_ITEMS_MAX {
                results.push(invalid_request(format!(
                    "At most {ACL_REQUEST_ITEMS_MAX} ACL creations per request"
                )));
                continue;
            }
            let acl = match validate_new_acl(creation) {
                Ok(acl) => acl,
                Err(e) => {
                    results.push(e);
                    continue;
                }
            };
            if existing.contains(&acl) {
                results.push(ApiError::NONE);
                continue;
            }
            if txn.room() == 0 {
                results.push(no_room());
                continue;
            }
            let mut id = self.rng.uuid();
            while id.is_nil() || txn.delta.acl(&id).is_some() {
                id = self.rng.uuid();
            }
            txn.push(MetadataRecord::AccessControlEntry(
                AccessControlEntryRecord::new(id, &acl),
            ))?;
            existing.insert(acl);
            results.push(ApiError::NONE);
        }
        Ok(ControllerReply::CreateAcls(CreateAclsReply { results }))
    }

    pub(super) fn delete_acls(&mut self, txn: &mut Txn, req: DeleteAclsRequest) -> HandlerResult {
        let acls = self.speculative.acls.clone();
        let mut results = Vec::with_capacity(req.filters.len());
        for (i, filter) in req.filters.iter().enumerate() {
            if i >= ACL_REQUEST_ITEMS_MAX {
                results.push(DeleteAclsFilterResult {
                    error: invalid_request(format!(
                        "At most {ACL_REQUEST_ITEMS_MAX} ACL filters per request"
                    )),
                    matching_acls: Vec::new(),
                });
                continue;
            }
            if let Some(field) = filter.unknown_field() {
                results.push(DeleteAclsFilterResult {
                    error: invalid_request(format!("Unknown {field} in the ACL filter.")),
                    matching_acls: Vec::new(),
                });
                continue;
            }
            let matched: Vec<_> = acls.iter().filter(|(_, acl)| filter.matches(acl)).collect();
            let new_removals = matched
                .iter()
                .filter(|(id, _)| txn.delta.acl(id).is_some())
                .count();
            if new_removals > txn.room() {
                results.push(DeleteAclsFilterResult {
                    error: no_room(),
                    matching_acls: Vec::new(),
                });
                continue;
            }
            for (id, _) in &matched {
                if txn.delta.acl(id).is_some() {
                    txn.push(MetadataRecord::RemoveAccessControlEntry(
                        RemoveAccessControlEntryRecord { id: **id },
                    ))?;
                }
            }
            results.push(DeleteAclsFilterResult {
                error: ApiError::NONE,
                matching_acls: matched.into_iter().map(|(_, acl)| acl.clone()).collect(),
            });
        }
        Ok(ControllerReply::DeleteAcls(DeleteAclsReply { results }))
    }

    pub(super) fn alter_user_scram_credentials(
        &mut self,
        txn: &mut Txn,
        req: AlterUserScramCredentialsRequest,
    ) -> HandlerResult {
        // Users in order of first mention; each named exactly once or DUPLICATE_RESOURCE.
        let mut order: Vec<String> = Vec::new();
        let mut mentions: BTreeMap<String, usize> = BTreeMap::new();
        for name in req
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(req.upsertions.iter().map(|u| &u.name))
        {
            let count = mentions.entry(name.clone()).or_insert(0);
            if *count == 0 {
                order.push(name.clone());
            }
            *count += 1;
        }
        let mut outcome: BTreeMap<String, ApiError> = BTreeMap::new();
        for (name, count) in &mentions {
            if *count > 1 {
                outcome.insert(
                    name.clone(),
                    ApiError::new(
                        ErrorCode::DuplicateResource,
                        "A user credential cannot be altered twice in the same request",
                    ),
                );
            }
        }
        let check_user_and_mechanism = |name: &str, code: i8| {
            let mechanism = ScramMechanism::from_code(code).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnsupportedSaslMechanism,
                    "Unknown SCRAM mechanism",
                )
            })?;
            if name.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::UnacceptableCredential,
                    "Username must not be empty",
                ));
            }
            Ok(mechanism)
        };
        for d in &req.deletions {
            if outcome.contains_key(&d.name) {
                continue;
            }
            let result = check_user_and_mechanism(&d.name, d.mechanism).and_then(|mechanism| {
                if txn.delta.scram_credential(&d.name, mechanism).is_none() {
                    return Err(ApiError::new(
                        ErrorCode::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist",
                    ));
                }
                if txn.room() == 0 {
                    return Err(no_room());
                }
                Ok(MetadataRecord::RemoveUserScramCredential(
                    RemoveUserScramCredentialRecord {
                        name: d.name.clone(),
                        mechanism: mechanism.code(),
                    },
                ))
            });
            let error = match result {
                Ok(record) => {
                    txn.push(record)?;
                    ApiError::NONE
                }
                Err(e) => e,
            };
            outcome.insert(d.name.clone(), error);
        }
        for u in &req.upsertions {
            if outcome.contains_key(&u.name) {
                continue;
            }
            let result = check_user_and_mechanism(&u.name, u.mechanism).and_then(|mechanism| {
                if u.iterations < ScramMechanism::ITERATIONS_MIN {
                    return Err(ApiError::new(
                        ErrorCode::UnacceptableCredential,
                        "Too few iterations",
                    ));
                }
                if u.iterations > ScramMechanism::ITERATIONS_MAX {
                    return Err(ApiError::new(
                        ErrorCode::UnacceptableCredential,
                        "Too many iterations",
                    ));
                }
                if txn.room() == 0 {
                    return Err(no_room());
                }
                let credential = ScramCredential::from_salted_password(
                    mechanism,
                    &u.salt,
                    &u.salted_password,
                    u.iterations,
                );
                Ok(MetadataRecord::UserScramCredential(
                    UserScramCredentialRecord::new(&u.name, mechanism, &credential),
                ))
            });
            let error = match result {
                Ok(record) => {
                    txn.push(record)?;
                    ApiError::NONE
                }
                Err(e) => e,
            };
            outcome.insert(u.name.clone(), error);
        }
        let results = order
            .into_iter()
            .map(|user| {
                let error = outcome.remove(&user).unwrap_or(ApiError::NONE);
                AlterUserScramCredentialsResult { user, error }
            })
            .collect();
        Ok(ControllerReply::AlterUserScramCredentials(
            AlterUserScramCredentialsReply { results },
        ))
    }

    pub(super) fn alter_client_quotas(
        &mut self,
        txn: &mut Txn,
        req: AlterClientQuotasRequest,
    ) -> HandlerResult {
        let mut seen: BTreeSet<ClientQuotaEntity> = BTreeSet::new();
        let mut results = Vec::with_capacity(req.entries.len());
        for entry in &req.entries {
            let error = match self.quota_records(txn, entry, &mut seen) {
                Ok(records) if records.len() > txn.room() => no_room(),
                Ok(records) => {
                    if !req.validate_only {
                        for r in records {
                            txn.push(r)?;
                        }
                    }
                    ApiError::NONE
                }
                Err(e) => e,
            };
            results.push(ClientQuotaAlterResult {
                entity: entry.entity.clone(),
                error,
            });
        }
        Ok(ControllerReply::AlterClientQuotas(AlterClientQuotasReply {
            results,
        }))
    }

    /// The records of one entity's alteration (Kafka `alterClientQuotaEntity`), all or none.
    fn quota_records(
        &self,
        txn: &Txn,
        entry: &ClientQuotaAlteration,
        seen: &mut BTreeSet<ClientQuotaEntity>,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let entity = validate_quota_entity(&entry.entity)?;
        if !seen.insert(entity.clone()) {
            return Err(invalid_request(format!(
                "Ignoring duplicate entity {:?}",
                entry.entity
            )));
        }
        let keys = quota_keys(&entity)?;
        let mut ops_seen = BTreeSet::new();
        for op in &entry.ops {
            if !ops_seen.insert(op.key.as_str()) {
                return Err(invalid_request(format!(
                    "Duplicate quota key {} not updating quota for this entity",
                    op.key
                )));
            }
        }
        let current = txn.delta.client_quota(&entity);
        let mut records = Vec::new();
        for op in &entry.ops {
            let present = current.and_then(|c| c.get(&op.key)).copied();
            if op.remove {
                if present.is_some() {
                    records.push(MetadataRecord::ClientQuota(ClientQuotaRecord {
                        entity: ClientQuotaRecord::entity_data(&entity),
                        key: op.key.clone(),
                        value: 0.0,
                        remove: true,
                    }));
                }
                continue;
            }
            validate_quota_value(keys, &op.key, op.value)?;
            if present != Some(op.value) {
                records.push(MetadataRecord::ClientQuota(ClientQuotaRecord {
                    entity: ClientQuotaRecord::entity_data(&entity),
                    key: op.key.clone(),
                    value: op.value,
                    remove: false,
                }));
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use fjord_metadata::security::{ScramMechanism, StandardAcl};
    use fjord_metadata::AclBindingFilter;

    use super::super::harness::{config, Harness};
    use crate::api::*;

    fn creation(name: &str, pattern_type: i8, principal: &str, operation: i8) -> AclCreation {
        AclCreation {
            resource_type: 2,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission_type: 3,
        }
    }

    fn create(h: &mut Harness, creations: Vec<AclCreation>) -> Vec<ErrorCode> {
        match h.reply(ControllerRequest::CreateAcls(CreateAclsRequest {
            creations,
        })) {
            ControllerReply::CreateAcls(r) => r.results.iter().map(|e| e.code).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn delete(h: &mut Harness, filters: Vec<AclBindingFilter>) -> Vec<DeleteAclsFilterResult> {
        match h.reply(ControllerRequest::DeleteAcls(DeleteAclsRequest { filters })) {
            ControllerReply::DeleteAcls(r) => r.results,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_acls_validates_and_deduplicates() {
        let mut h = Harness::new(config());
        let ok = creation("t", 3, "User:alice", 3);
        let results = create(
            &mut h,
            vec![
                ok.clone(),
                ok.clone(),
                AclCreation {
                    resource_type: 1,
                    ..ok.clone()
                },
                creation("t", 2, "User:alice", 3),
                creation("t", 3, "User:alice", 1),
                AclCreation {
                    permission_type: 1,
                    ..ok.clone()
                },
                creation("", 3, "User:alice", 3),
                creation("t", 3, "alice", 3),
                AclCreation {
                    resource_type: 4,
                    resource_name: "other".into(),
                    ..ok.clone()
                },
                AclCreation {
                    resource_type: 4,
                    resource_name: "kafka-cluster".into(),
                    operation: 9,
                    ..ok.clone()
                },
            ],
        );
        use ErrorCode::{InvalidRequest as Bad, None as Ok};
        assert_eq!(results, vec![Ok, Ok, Bad, Bad, Bad, Bad, Bad, Bad, Bad, Ok]);
        let image = h.c.committed_image().clone();
        assert_eq!(image.acls.len(), 2, "the duplicate adds no record");
        // Creating an identical ACL again writes nothing and succeeds.
        let offset = h.offset();
        assert_eq!(create(&mut h, vec![ok]), vec![Ok]);
        assert_eq!(h.offset(), offset);
        h.assert_log_rebuilds_image();
    }

    #[test]
    fn create_acls_refuses_items_beyond_the_limit() {
        let mut h = Harness::new(config());
        let creations: Vec<_> = (0..ACL_REQUEST_ITEMS_MAX + 2)
            .map(|i| creation(&format!("t{i}"), 3, "User:a", 3))
            .collect();
        let results = create(&mut h, creations);
        assert!(results[..ACL_REQUEST_ITEMS_MAX]
            .iter()
            .all(|c| *c == ErrorCode::None));
        assert_eq!(results[ACL_REQUEST_ITEMS_MAX], ErrorCode::InvalidRequest);
        assert_eq!(h.c.committed_image().acls.len(), ACL_REQUEST_ITEMS_MAX);
    }

    #[test]
    fn delete_acls_by_filters_lists_matches_per_filter() {
        let mut h = Harness::new(config());
        create(
            &mut h,
            vec![
                creation("foobar", 3, "User:alice", 3),
                creation("foo", 4, "User:alice", 4),
                creation("*", 3, "User:bob", 3),
                creation("other", 3, "User:bob", 3),
            ],
        );
        let match_foobar = AclBindingFilter {
            resource_type: 2,
            resource_name: Some("foobar".into()),
            pattern_type: 2,
            ..AclBindingFilter::any()
        };
        let alice = AclBindingFilter {
            principal: Some("User:alice".into()),
            ..AclBindingFilter::any()
        };
        let unknown = AclBindingFilter {
            operation: 0,
            ..AclBindingFilter::any()
        };
        let results = delete(&mut h, vec![match_foobar, alice, unknown]);
        let names = |r: &DeleteAclsFilterResult| {
            let mut v: Vec<String> = r
                .matching_acls
                .iter()
                .map(|a: &StandardAcl| a.resource_name.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&results[0]), vec!["*", "foo", "foobar"]);
        // Matched by both filters: listed by both, removed once.
        assert_eq!(names(&results[1]), vec!["foo", "foobar"]);
        assert_eq!(results[2].error.code, ErrorCode::InvalidRequest);
        let left: Vec<_> =
            h.c.committed_image()
                .acls
                .values()
                .map(|a| a.resource_name.clone())
                .collect();
        assert_eq!(left, vec!["other"]);
        h.assert_log_rebuilds_image();
    }

    fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion {
            name: name.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 32],
        }
    }

    fn alter_scram(
        h: &mut Harness,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> Vec<(String, ErrorCode)> {
        match h.reply(ControllerRequest::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest {
                deletions,
                upsertions,
            },
        )) {
            ControllerReply::AlterUserScramCredentials(r) => r
                .results
                .into_iter()
                .map(|r| (r.user, r.error.code))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alter_user_scram_credentials_follows_kafka_validation() {
        let mut h = Harness::new(config());
        let del = |name: &str, mechanism: i8| ScramCredentialDeletion {
            name: name.into(),
            mechanism,
        };
        let results = alter_scram(
            &mut h,
            vec![del("gone", 1), del("twice", 1)],
            vec![
                upsert("alice", 1, 4096),
                upsert("bob", 2, 8192),
                upsert("twice", 2, 4096),
                upsert("", 1, 4096),
                upsert("weird", 0, 4096),
                upsert("few", 1, 4095),
                upsert("many", 1, 16385),
            ],
        );
        let expected = vec![
            ("gone".to_string(), ErrorCode::ResourceNotFound),
            ("twice".to_string(), ErrorCode::DuplicateResource),
            ("alice".to_string(), ErrorCode::None),
            ("bob".to_string(), ErrorCode::None),
            ("".to_string(), ErrorCode::UnacceptableCredential),
            ("weird".to_string(), ErrorCode::UnsupportedSaslMechanism),
            ("few".to_string(), ErrorCode::UnacceptableCredential),
            ("many".to_string(), ErrorCode::UnacceptableCredential),
        ];
        assert_eq!(results, expected);
        let image = h.c.committed_image().clone();
        assert_eq!(image.scram_credentials.len(), 2);
        let alice = &image.scram_credentials[&("alice".to_string(), ScramMechanism::ScramSha256)];
        let expected = fjord_metadata::security::ScramCredential::from_salted_password(
            ScramMechanism::ScramSha256,
            b"salt",
            &[7; 32],
            4096,
        );
        assert_eq!(alice, &expected);
        // Deleting an existing credential works; the wrong mechanism is not found.
        let results = alter_scram(&mut h, vec![del("alice", 1), del("bob", 1)], vec![]);
        assert_eq!(
            results,
            vec![
                ("alice".to_string(), ErrorCode::None),
                ("bob".to_string(), ErrorCode::ResourceNotFound)
            ]
        );
        assert_eq!(h.c.committed_image().scram_credentials.len(), 1);
        h.assert_log_rebuilds_image();
    }

    fn op(key: &str, value: f64) -> ClientQuotaOp {
        ClientQuotaOp {
            key: key.into(),
            value,
            remove: false,
        }
    }

    fn remove(key: &str) -> ClientQuotaOp {
        ClientQuotaOp {
            key: key.into(),
            value: 0.0,
            remove: true,
        }
    }

    fn entity(parts: &[(&str, Option<&str>)]) -> ClientQuotaEntityList {
        parts
            .iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
            .collect()
    }

    fn alter_quotas(
        h: &mut Harness,
        entries: Vec<(ClientQuotaEntityList, Vec<ClientQuotaOp>)>,
        validate_only: bool,
    ) -> Vec<ErrorCode> {
        let entries = entries
            .into_iter()
            .map(|(entity, ops)| ClientQuotaAlteration { entity, ops })
            .collect();
        match h.reply(ControllerRequest::AlterClientQuotas(
            AlterClientQuotasRequest {
                entries,
                validate_only,
            },
        )) {
            ControllerReply::AlterClientQuotas(r) => {
                r.results.iter().map(|r| r.error.code).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alter_client_quotas_validates_entities_keys_and_values() {
        let mut h = Harness::new(config());
        let alice = entity(&[("user", Some("alice"))]);
        let results = alter_quotas(
            &mut h,
            vec![
                (alice.clone(), vec![op("producer_byte_rate", 1024.0)]),
                (
                    entity(&[("user", Some("bob")), ("client-id", None)]),
                    vec![op("request_percentage", 12.5)],
                ),
                (
                    entity(&[("ip", Some("10.0.0.1"))]),
                    vec![op("connection_creation_rate", 5.0)],
                ),
                (entity(&[]), vec![op("producer_byte_rate", 1.0)]),
                (
                    entity(&[("group", Some("g"))]),
                    vec![op("producer_byte_rate", 1.0)],
                ),
                (entity(&[("user", Some("a")), ("user", None)]), vec![]),
                (entity(&[("user", Some(""))]), vec![]),
                (entity(&[("ip", None), ("user", None)]), vec![]),
                (entity(&[("ip", Some("not an ip"))]), vec![]),
                (
                    entity(&[("user", None)]),
                    vec![op("connection_creation_rate", 1.0)],
                ),
                (
                    entity(&[("user", None)]),
                    vec![op("producer_byte_rate", 0.0)],
                ),
                (
                    entity(&[("user", None)]),
                    vec![op("producer_byte_rate", 1.5)],
                ),
                (
                    entity(&[("client-id", Some("c"))]),
                    vec![op("consumer_byte_rate", 1.0), op("consumer_byte_rate", 2.0)],
                ),
                (alice.clone(), vec![op("consumer_byte_rate", 1.0)]),
            ],
            false,
        );
        use ErrorCode::{InvalidRequest as Bad, None as Ok};
        assert_eq!(
            results,
            vec![Ok, Ok, Ok, Bad, Bad, Bad, Bad, Bad, Bad, Bad, Bad, Bad, Bad, Bad]
        );
        let image = h.c.committed_image().clone();
        assert_eq!(image.client_quotas.len(), 3);
        let alice_key: fjord_metadata::security::ClientQuotaEntity =
            [("user".to_string(), Some("alice".to_string()))]
                .into_iter()
                .collect();
        assert_eq!(
            image.client_quotas[&alice_key]["producer_byte_rate"],
            1024.0
        );
        // validate_only writes nothing; setting the same value writes nothing.
        let offset = h.offset();
        assert_eq!(
            alter_quotas(
                &mut h,
                vec![(alice.clone(), vec![op("consumer_byte_rate", 9.0)])],
                true
            ),
            vec![Ok]
        );
        assert_eq!(
            alter_quotas(
                &mut h,
                vec![(alice.clone(), vec![op("producer_byte_rate", 1024.0)])],
                false
            ),
            vec![Ok]
        );
        assert_eq!(h.offset(), offset);
        // Removal, including of an absent key (no record).
        assert_eq!(
            alter_quotas(
                &mut h,
                vec![(
                    alice,
                    vec![remove("producer_byte_rate"), remove("consumer_byte_rate")]
                )],
                false
            ),
            vec![Ok]
        );
        let image = h.c.committed_image().clone();
        assert!(!image.client_quotas.contains_key(&alice_key));
        assert_eq!(image.client_quotas.len(), 2);
        h.assert_log_rebuilds_image();
    }
}
