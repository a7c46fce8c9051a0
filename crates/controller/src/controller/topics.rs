//! Topics, partitions and configs (Kafka `ReplicationControlManager.createTopics`,
//! `deleteTopics`, `createPartitions`, `ConfigurationControlManager`).
//!
//! Config values are not interpreted here (design 4): the installed [`super::ConfigValidator`]
//! (by default none) judges each change; the controller checks that the resource exists and
//! that operations are well-formed, then writes `ConfigRecord`s for keys whose value changes.

use std::collections::{BTreeMap, BTreeSet};

use fjord_metadata::{
    ConfigRecord, ConfigResource, ConfigResourceType, MetadataRecord, PartitionRecord,
    RemoveTopicRecord, TopicRecord, LEADER_RECOVERY_STATE_RECOVERED,
};
use uuid::Uuid;

use super::{HandlerResult, QuorumController, Txn};
use crate::api::{
    AlterConfigOp, AlterConfigsReply, AlterConfigsRequest, ApiError, ControllerReply,
    CreatableTopic, CreatableTopicResult, CreatePartitionsReply, CreatePartitionsRequest,
    CreateTopicsReply, CreateTopicsRequest, DeletableTopicResult, DeleteTopicsReply,
    DeleteTopicsRequest, ErrorCode, IncrementalAlterConfigsRequest, TopicRef,
};
use crate::placement::{self, UsableBroker};
use crate::ControllerError;

/// Kafka `Topic.MAX_NAME_LENGTH`.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// Kafka `Topic.validate`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let err = |m: String| Err(ApiError::new(ErrorCode::InvalidTopicException, m));
    if name.is_empty() {
        return err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return err(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka `Topic.unifyCollisionChars`: '.' and '_' collide in metric names.
fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

/// New partitions as (replicas, ISR).
type NewPartitions = Vec<(Vec<i32>, Vec<i32>)>;

impl QuorumController {
    /// Brokers placement may use (Kafka `usableBrokers`): registered, not shutting down;
    /// brokers being fenced count as fenced.
    fn usable_brokers(&self, txn: &Txn) -> Vec<UsableBroker> {
        self.broker_ids(txn)
            .into_iter()
            .filter_map(|id| {
                let b = txn.delta.broker(id)?;
                (!b.in_controlled_shutdown).then(|| UsableBroker {
                    id,
                    rack: b.rack.clone(),
                    fenced: b.fenced || self.fencing.contains(&id),
                })
            })
            .collect()
    }

    /// Kafka `validateManualPartitionAssignment`.
    fn validate_manual_assignment(
        &self,
        txn: &Txn,
        replicas: &[i32],
        replication_factor: Option<usize>,
    ) -> Result<(), ApiError> {
        let err = |m: String| Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, m));
        if replicas.is_empty() {
            return err("The manual partition assignment includes an empty replica list.".into());
        }
        let mut sorted = replicas.to_vec();
        sorted.sort_unstable();
        let mut prev = None;
        for id in sorted {
            if txn.delta.broker(id).is_none() {
                return err(format!(
                    "The manual partition assignment includes broker {id}, but no such broker is registered."
                ));
            }
            if prev == Some(id) {
                return err(format!(
                    "The manual partition assignment includes the broker {id} more than once."
                ));
            }
            prev = Some(id);
        }
        if let Some(rf) = replication_factor {
            if replicas.len() != rf {
                return err(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                    replicas.len()
                ));
            }
        }
        Ok(())
    }

    fn active_isr(&self, txn: &Txn, replicas: &[i32]) -> Vec<i32> {
        replicas
            .iter()
            .copied()
            .filter(|r| self.is_active_broker(&txn.delta, *r))
            .collect()
    }

    /// The partitions of a new topic, or why not (Kafka `createTopic`).
    fn plan_topic_partitions(
        &mut self,
        txn: &Txn,
        topic: &CreatableTopic,
    ) -> Result<NewPartitions, ApiError> {
        if !topic.assignments.is_empty() {
            if topic.replication_factor != -1 {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "A manual partition assignment was specified, but replication factor was not set to -1.",
                ));
            }
            if topic.num_partitions != -1 {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "A manual partition assignment was specified, but numPartitions was not set to -1.",
                ));
            }
            let mut parts: BTreeMap<i32, (Vec<i32>, Vec<i32>)> = BTreeMap::new();
            let mut rf = None;
            for (index, replicas) in &topic.assignments {
                if parts.contains_key(index) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Found multiple manual partition assignments for partition {index}"
                        ),
                    ));
                }
                self.validate_manual_assignment(txn, replicas, rf)?;
                rf = Some(replicas.len());
                let isr = self.active_isr(txn, replicas);
                if isr.is_empty() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."),
                    ));
                }
                parts.insert(*index, (replicas.clone(), isr));
            }
            if parts.keys().copied().ne(0..parts.len() as i32) {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "partitions should be a consecutive 0-based integer sequence",
                ));
            }
            return Ok(parts.into_values().collect());
        }
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ));
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        let num_partitions = if topic.num_partitions == -1 {
            self.config.num_partitions
        } else {
            topic.num_partitions
        };
        let rf = if topic.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            topic.replication_factor
        };
        self.place_partitions(txn, num_partitions, rf)
    }

    /// Placement of `count` partitions with `rf` replicas; ISR = active replicas.
    fn place_partitions(
        &mut self,
        txn: &Txn,
        count: i32,
        rf: i16,
    ) -> Result<NewPartitions, ApiError> {
        let max = self.config.max_records_per_entry;
        if count < 0 || count as usize >= max {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!("Creating {count} partitions needs more than the {max} metadata records one request may write."),
            ));
        }
        let brokers = self.usable_brokers(txn);
        let placed = placement::place(&mut self.rng, &brokers, count as usize, i32::from(rf))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): {e}"),
                )
            })?;
        let mut out = Vec::with_capacity(placed.len());
        for replicas in placed {
            let isr = self.active_isr(txn, &replicas);
            if isr.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): All brokers are currently fenced or in controlled shutdown."),
                ));
            }
            out.push((replicas, isr));
        }
        Ok(out)
    }

    /// Names of topics as staged (for collision checks).
    fn topic_names(&self, txn: &Txn) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .speculative
            .topic_ids_by_name
            .keys()
            .filter(|n| txn.delta.topic_id(n).is_some())
            .cloned()
            .collect();
        for id in txn.delta.created_topics() {
            if let Some(n) = txn.delta.topic_name(id) {
                names.insert(n.to_string());
            }
        }
        names
    }

    fn validate_new_topic(
        &mut self,
        txn: &Txn,
        topic: &CreatableTopic,
    ) -> Result<NewPartitions, ApiError> {
        validate_topic_name(&topic.name)?;
        if topic.name.contains(['.', '_']) {
            let unified = unify_collision_chars(&topic.name);
            if let Some(other) = self
                .topic_names(txn)
                .into_iter()
                .find(|n| *n != topic.name && unify_collision_chars(n) == unified)
            {
                return Err(ApiError::new(
                    ErrorCode::InvalidTopicException,
                    format!(
                        "Topic '{}' collides with existing topic: {other}",
                        topic.name
                    ),
                ));
            }
        }
        if txn.delta.topic_id(&topic.name).is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            ));
        }
        let nulls: Vec<&str> = topic
            .configs
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        if !nulls.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "Null value not supported for topic configs: {}",
                    nulls.join(",")
                ),
            ));
        }
        let resource = ConfigResource::topic(topic.name.clone());
        for (name, value) in &topic.configs {
            self.validator.validate(&resource, name, value.as_deref())?;
        }
        self.plan_topic_partitions(txn, topic)
    }

    /// Kafka `ReplicationControlManager.createTopics`.
    pub(super) fn create_topics(
        &mut self,
        txn: &mut Txn,
        req: CreateTopicsRequest,
    ) -> HandlerResult {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &req.topics {
            *counts.entry(t.name.as_str()).or_default() += 1;
        }
        let duplicates: BTreeSet<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(name, _)| name.to_string())
            .collect();
        let mut results = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let failed = |error: ApiError| CreatableTopicResult {
                name: topic.name.clone(),
                topic_id: Uuid::nil(),
                error,
                num_partitions: -1,
                replication_factor: -1,
            };
            if duplicates.contains(&topic.name) {
                results.push(failed(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Duplicate topic name.",
                )));
                continue;
            }
            let parts = match self.validate_new_topic(txn, topic) {
                Ok(p) => p,
                Err(e) => {
                    results.push(failed(e));
                    continue;
                }
            };
            let configs: BTreeMap<&str, &str> = topic
                .configs
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
                .collect();
            let needed = 1 + configs.len() + parts.len();
            if needed > self.config.max_records_per_entry {
                results.push(failed(ApiError::new(
                    ErrorCode::InvalidPartitions,
                    format!(
                        "Topic '{}' needs {needed} metadata records, more than the {} one request may write.",
                        topic.name, self.config.max_records_per_entry
                    ),
                )));
                continue;
            }
            if needed > txn.room() {
                results.push(failed(ApiError::new(
                    ErrorCode::ThrottlingQuotaExceeded,
                    format!("Topic '{}' needs {needed} metadata records; only {} are left in this request.", topic.name, txn.room()),
                )));
                continue;
            }
            let num_partitions = parts.len() as i32;
            let replication_factor = parts.first().map_or(0, |(r, _)| r.len() as i16);
            let topic_id = if req.validate_only {
                Uuid::nil()
            } else {
                // Random ids do not collide in practice; a reseeded RNG (a restarted node with a
                // fixed seed) would, and the record would then not replay: draw again.
                let mut id = self.rng.uuid();
                while txn.delta.topic_name(&id).is_some()
                    || txn.delta.base().topics.contains_key(&id)
                {
                    id = self.rng.uuid();
                }
                write_topic(txn, &topic.name, id, &configs, 0, &parts)?;
                id
            };
            results.push(CreatableTopicResult {
                name: topic.name.clone(),
                topic_id,
                error: ApiError::NONE,
                num_partitions,
                replication_factor,
            });
        }
        Ok(ControllerReply::CreateTopics(CreateTopicsReply {
            topics: results,
        }))
    }

    /// Kafka `ReplicationControlManager.deleteTopics` (plus `ControllerApis`' duplicate check).
    pub(super) fn delete_topics(
        &mut self,
        txn: &mut Txn,
        req: DeleteTopicsRequest,
    ) -> HandlerResult {
        let mut seen = BTreeSet::new();
        let mut results = Vec::with_capacity(req.topics.len());
        for topic in req.topics {
            let (name, id) = match &topic {
                TopicRef::Name(n) => (Some(n.clone()), txn.delta.topic_id(n)),
                TopicRef::Id(id) => (
                    txn.delta.topic_name(id).map(str::to_string),
                    txn.delta.topic_name(id).map(|_| *id),
                ),
            };
            let mut result = DeletableTopicResult {
                name: name.clone(),
                topic_id: id.unwrap_or_else(|| match &topic {
                    TopicRef::Id(id) => *id,
                    TopicRef::Name(_) => Uuid::nil(),
                }),
                error: ApiError::NONE,
            };
            if !seen.insert(topic.clone()) {
                result.error =
                    ApiError::new(ErrorCode::InvalidRequest, "Duplicate topic in request.");
            } else if let Some(id) = id {
                if txn.room() == 0 {
                    result.error = ApiError::new(
                        ErrorCode::ThrottlingQuotaExceeded,
                        "Too many topics in one request; retry the rest.",
                    );
                } else {
                    txn.push(MetadataRecord::RemoveTopic(RemoveTopicRecord {
                        topic_id: id,
                    }))?;
                }
            } else {
                result.error = match topic {
                    TopicRef::Name(_) => ApiError::code_only(ErrorCode::UnknownTopicOrPartition),
                    TopicRef::Id(_) => ApiError::code_only(ErrorCode::UnknownTopicId),
                };
            }
            results.push(result);
        }
        Ok(ControllerReply::DeleteTopics(DeleteTopicsReply {
            topics: results,
        }))
    }

    /// Kafka `ReplicationControlManager.createPartitions`.
    pub(super) fn create_partitions(
        &mut self,
        txn: &mut Txn,
        req: CreatePartitionsRequest,
    ) -> HandlerResult {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &req.topics {
            *counts.entry(t.name.as_str()).or_default() += 1;
        }
        let mut results = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let error = if counts.get(topic.name.as_str()).copied().unwrap_or(0) > 1 {
                ApiError::new(ErrorCode::InvalidRequest, "Duplicate topic name.")
            } else {
                match self.create_partitions_of(txn, topic, req.validate_only) {
                    Ok(Ok(())) => ApiError::NONE,
                    Ok(Err(e)) => e,
                    Err(bug) => return Err(bug),
                }
            };
            results.push((topic.name.clone(), error));
        }
        Ok(ControllerReply::CreatePartitions(CreatePartitionsReply {
            topics: results,
        }))
    }

    fn create_partitions_of(
        &mut self,
        txn: &mut Txn,
        topic: &crate::api::CreatePartitionsTopic,
        validate_only: bool,
    ) -> Result<Result<(), ApiError>, ControllerError> {
        let Some(topic_id) = txn.delta.topic_id(&topic.name) else {
            return Ok(Err(ApiError::code_only(ErrorCode::UnknownTopicOrPartition)));
        };
        let Some(image) = self.speculative.topic(&topic_id).cloned() else {
            return Ok(Err(ApiError::code_only(ErrorCode::UnknownTopicOrPartition)));
        };
        let existing = image.partitions.len() as i32;
        if topic.count == existing {
            return Ok(Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!("Topic already has {existing} partition(s)."),
            )));
        }
        if topic.count < existing {
            return Ok(Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "The topic {} currently has {existing} partition(s); {} would not be an increase.",
                    topic.name, topic.count
                ),
            )));
        }
        let additional = topic.count - existing;
        let rf = image
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len());
        let parts = match &topic.assignments {
            Some(assignments) => {
                if assignments.len() != additional as usize {
                    return Ok(Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                            assignments.len()
                        ),
                    )));
                }
                let mut parts = Vec::with_capacity(assignments.len());
                for (i, replicas) in assignments.iter().enumerate() {
                    if let Err(e) = self.validate_manual_assignment(txn, replicas, Some(rf)) {
                        return Ok(Err(e));
                    }
                    let isr = self.active_isr(txn, replicas);
                    if isr.is_empty() {
                        return Ok(Err(ApiError::new(
                            ErrorCode::InvalidReplicaAssignment,
                            format!(
                                "All brokers specified in the manual partition assignment for partition {} are fenced or in controlled shutdown.",
                                existing as usize + i
                            ),
                        )));
                    }
                    parts.push((replicas.clone(), isr));
                }
                parts
            }
            None => match self.place_partitions(txn, additional, rf as i16) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            },
        };
        if parts.len() > txn.room() {
            return Ok(Err(ApiError::new(
                ErrorCode::ThrottlingQuotaExceeded,
                format!(
                    "{} new partitions do not fit in this request; retry.",
                    parts.len()
                ),
            )));
        }
        if !validate_only {
            for (i, (replicas, isr)) in parts.into_iter().enumerate() {
                txn.push(partition_record(
                    topic_id,
                    existing + i as i32,
                    replicas,
                    isr,
                ))?;
            }
        }
        Ok(Ok(()))
    }

    // ---- configs ----

    /// Checks a config resource exists (topics) or is well-named (brokers: an id or "").
    fn check_config_resource(&self, txn: &Txn, resource: &ConfigResource) -> Result<(), ApiError> {
        match resource.resource_type {
            ConfigResourceType::Topic => {
                if txn.delta.topic_id(&resource.name).is_none() {
                    return Err(ApiError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("The topic '{}' does not exist.", resource.name),
                    ));
                }
            }
            ConfigResourceType::Broker => {
                if !resource.name.is_empty()
                    && resource.name.parse::<i32>().map_or(true, |id| id < 0)
                {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("Illegal broker resource name {:?}.", resource.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes the changes from the resource's current configs to `target` (validated first).
    fn write_config_changes(
        &self,
        txn: &mut Txn,
        resource: &ConfigResource,
        target: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Result<(), ApiError>, ControllerError> {
        let current = txn.delta.config(resource).cloned().unwrap_or_default();
        let mut changes: Vec<(String, Option<String>)> = Vec::new();
        for (k, v) in target {
            if current.get(k) != Some(v) {
                changes.push((k.clone(), Some(v.clone())));
            }
        }
        for k in current.keys() {
            if !target.contains_key(k) {
                changes.push((k.clone(), None));
            }
        }
        for (k, v) in &changes {
            if let Err(e) = self.validator.validate(resource, k, v.as_deref()) {
                return Ok(Err(e));
            }
        }
        if changes.len() > txn.room() {
            return Ok(Err(ApiError::new(
                ErrorCode::ThrottlingQuotaExceeded,
                "Too many config changes in one request; retry the rest.",
            )));
        }
        if !validate_only {
            for (name, value) in changes {
                txn.push(MetadataRecord::Config(ConfigRecord {
                    resource_type: resource.resource_type.as_i8(),
                    resource_name: resource.name.clone(),
                    name,
                    value,
                }))?;
            }
        }
        Ok(Ok(()))
    }

    /// Kafka `ConfigurationControlManager.incrementalAlterConfigs`.
    pub(super) fn incremental_alter_configs(
        &mut self,
        txn: &mut Txn,
        req: IncrementalAlterConfigsRequest,
    ) -> HandlerResult {
        let mut results = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let outcome = (|| {
                self.check_config_resource(txn, &r.resource)?;
                let mut names = BTreeSet::new();
                if !r.configs.iter().all(|c| names.insert(c.name.as_str())) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        "Error due to duplicate config keys",
                    ));
                }
                let mut target = txn.delta.config(&r.resource).cloned().unwrap_or_default();
                for c in &r.configs {
                    apply_op(&mut target, &c.name, c.op, c.value.as_deref())?;
                }
                Ok(target)
            })();
            let error = match outcome {
                Err(e) => e,
                Ok(target) => {
                    match self.write_config_changes(txn, &r.resource, &target, req.validate_only)? {
                        Ok(()) => ApiError::NONE,
                        Err(e) => e,
                    }
                }
            };
            results.push((r.resource, error));
        }
        Ok(ControllerReply::IncrementalAlterConfigs(
            AlterConfigsReply { resources: results },
        ))
    }

    /// Kafka `ConfigurationControlManager.legacyAlterConfigs`: the given set replaces all.
    pub(super) fn alter_configs(
        &mut self,
        txn: &mut Txn,
        req: AlterConfigsRequest,
    ) -> HandlerResult {
        let mut results = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let outcome = (|| {
                self.check_config_resource(txn, &r.resource)?;
                let mut target = BTreeMap::new();
                for (k, v) in &r.configs {
                    let Some(v) = v else {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("Null value not supported for : {k}"),
                        ));
                    };
                    if target.insert(k.clone(), v.clone()).is_some() {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            "Error due to duplicate config keys",
                        ));
                    }
                }
                Ok(target)
            })();
            let error = match outcome {
                Err(e) => e,
                Ok(target) => {
                    match self.write_config_changes(txn, &r.resource, &target, req.validate_only)? {
                        Ok(()) => ApiError::NONE,
                        Err(e) => e,
                    }
                }
            };
            results.push((r.resource, error));
        }
        Ok(ControllerReply::AlterConfigs(AlterConfigsReply {
            resources: results,
        }))
    }
}

/// Applies one IncrementalAlterConfigs operation; list values are comma-separated.
fn apply_op(
    target: &mut BTreeMap<String, String>,
    name: &str,
    op: AlterConfigOp,
    value: Option<&str>,
) -> Result<(), ApiError> {
    let need_value = || {
        value.ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Null value not supported for : {name}"),
            )
        })
    };
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    match op {
        AlterConfigOp::Set => {
            target.insert(name.to_string(), need_value()?.to_string());
        }
        AlterConfigOp::Delete => {
            target.remove(name);
        }
        AlterConfigOp::Append => {
            let mut list = target.get(name).map(|v| split(v)).unwrap_or_default();
            for item in split(need_value()?) {
                if !list.contains(&item) {
                    list.push(item);
                }
            }
            target.insert(name.to_string(), list.join(","));
        }
        AlterConfigOp::Subtract => {
            let remove = split(need_value()?);
            let list: Vec<String> = target
                .get(name)
                .map(|v| split(v))
                .unwrap_or_default()
                .into_iter()
                .filter(|x| !remove.contains(x))
                .collect();
            if list.is_empty() {
                target.remove(name);
            } else {
                target.insert(name.to_string(), list.join(","));
            }
        }
    }
    Ok(())
}

fn partition_record(
    topic_id: Uuid,
    partition_id: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
) -> MetadataRecord {
    let leader = isr[0];
    MetadataRecord::Partition(PartitionRecord {
        partition_id,
        topic_id,
        replicas,
        isr,
        removing_replicas: Vec::new(),
        adding_replicas: Vec::new(),
        leader,
        leader_recovery_state: LEADER_RECOVERY_STATE_RECOVERED,
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

/// TopicRecord, its ConfigRecords (after the topic, before partitions, as Kafka), partitions.
fn write_topic(
    txn: &mut Txn,
    name: &str,
    topic_id: Uuid,
    configs: &BTreeMap<&str, &str>,
    first_partition: i32,
    parts: &[(Vec<i32>, Vec<i32>)],
) -> Result<(), ControllerError> {
    txn.push(MetadataRecord::Topic(TopicRecord {
        name: name.to_string(),
        topic_id,
    }))?;
    for (k, v) in configs {
        txn.push(MetadataRecord::Config(ConfigRecord {
            resource_type: ConfigResourceType::Topic.as_i8(),
            resource_name: name.to_string(),
            name: (*k).to_string(),
            value: Some((*v).to_string()),
        }))?;
    }
    for (i, (replicas, isr)) in parts.iter().enumerate() {
        txn.push(partition_record(
            topic_id,
            first_partition + i as i32,
            replicas.clone(),
            isr.clone(),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_validated_as_kafka() {
        assert!(validate_topic_name("orders-1.v2_x").is_ok());
        assert_eq!(
            validate_topic_name("").unwrap_err().message.as_deref(),
            Some("Topic name is illegal, it can't be empty")
        );
        assert_eq!(
            validate_topic_name("..").unwrap_err().code,
            ErrorCode::InvalidTopicException
        );
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name("a b")
            .unwrap_err()
            .message
            .unwrap()
            .contains("ASCII alphanumerics"));
    }

    #[test]
    fn list_ops_append_and_subtract() {
        let mut m = BTreeMap::new();
        apply_op(
            &mut m,
            "cleanup.policy",
            AlterConfigOp::Append,
            Some("delete"),
        )
        .unwrap();
        apply_op(
            &mut m,
            "cleanup.policy",
            AlterConfigOp::Append,
            Some("compact,delete"),
        )
        .unwrap();
        assert_eq!(m["cleanup.policy"], "delete,compact");
        apply_op(
            &mut m,
            "cleanup.policy",
            AlterConfigOp::Subtract,
            Some("delete"),
        )
        .unwrap();
        assert_eq!(m["cleanup.policy"], "compact");
        apply_op(
            &mut m,
            "cleanup.policy",
            AlterConfigOp::Subtract,
            Some("compact"),
        )
        .unwrap();
        assert!(m.is_empty());
        assert_eq!(
            apply_op(&mut m, "x", AlterConfigOp::Set, None)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
    }
}
