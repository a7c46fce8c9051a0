//! Client quotas (issue 9, `docs/security-design.md` section 3, "Quotas"), the way Kafka's
//! `ClientQuotaManager` and `ClientRequestQuotaManager` enforce them.
//!
//! Quotas come from the metadata image (`MetadataImage.client_quotas`, replayed from
//! `ClientQuotaRecord`s that AlterClientQuotas writes): `producer_byte_rate` (bytes/s of
//! produced records), `consumer_byte_rate` (bytes/s of fetched records, consumers only: a
//! follower's fetch is never client-throttled) and `request_percentage` (percent of one
//! handler thread per quota window). Each applies per resolved quota entity (see
//! [`manager`]) over `quota.window.num` samples of `quota.window.size.seconds`.
//!
//! A request over a quota is not refused: its response carries `throttle_time_ms` (the
//! largest of the quotas it violated) and the connection is muted for that long after the
//! response ([`crate::security::Session::request_mute_ms`], KIP-219), so a client that ignores
//! the field is held back anyway. A throttled fetch returns no data (Kafka's
//! `getThrottledResponse`), its bytes taken back from the sensor; a throttled acks=0 produce
//! gets no response but the mute.
//!
//! Deviation: Kafka's request quota measures the time a request spends on request handler
//! (and network) threads. Fjord's handlers are futures, so the time measured is the time spent
//! *inside* the handler's `poll` (wall time while it runs; time parked in a purgatory, waiting
//! for a long-poll fetch, a replication ack or a group rebalance, is not counted). 100% is
//! one thread busy for the whole window, as in Kafka.
//!
//! The unthrottled path costs one relaxed atomic load: while the image holds no quota of a
//! type, its manager holds no sensor and takes no lock.

mod enforce;
pub mod manager;
pub mod rate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fjord_metadata::security::{
    ClientQuotaEntity, ClientQuotaValues, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
};
use fjord_protocol::ResponseKind;
use parking_lot::Mutex;

use crate::metrics::{Counter, MetricType, TextEncoder};
pub use manager::{QuotaSensors, QuotaTable, ResolvedQuota, SensorTags};
pub use rate::{Rate, RateConfig};

/// Kafka's `QuotaType` of the client quota managers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaType {
    Produce,
    Fetch,
    Request,
}

impl QuotaType {
    pub const ALL: [QuotaType; 3] = [QuotaType::Produce, QuotaType::Fetch, QuotaType::Request];

    /// The quota config key it enforces.
    pub fn config_key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
        }
    }

    /// Kafka's name (`Produce`, `Fetch`, `Request`), lower-cased for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }
}

/// One quota type's manager: [`QuotaSensors`] behind a lock, skipped entirely (one atomic
/// load) while no quota of its type exists, and its throttle counters.
#[derive(Debug)]
pub struct ClientQuotaManager {
    quota_type: QuotaType,
    enabled: AtomicBool,
    sensors: Mutex<QuotaSensors>,
    /// Requests this quota throttled (it asked for the longest throttle of the request).
    pub throttled_requests: Counter,
    /// Sum of those throttle times.
    pub throttle_time_ms: Counter,
}

impl ClientQuotaManager {
    pub fn new(quota_type: QuotaType, rate_config: RateConfig, sensors_max: usize) -> Self {
        Self {
            quota_type,
            enabled: AtomicBool::new(false),
            sensors: Mutex::new(QuotaSensors::new(quota_type, rate_config, sensors_max)),
            throttled_requests: Counter::new(),
            throttle_time_ms: Counter::new(),
        }
    }

    pub fn quota_type(&self) -> QuotaType {
        self.quota_type
    }

    /// Kafka `quotasEnabled`: whether any quota of this type exists.
    pub fn quotas_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// New quotas from an image; recorded rates are kept.
    pub fn update_quotas(&self, quotas: &BTreeMap<ClientQuotaEntity, ClientQuotaValues>) {
        let table = QuotaTable::from_image(quotas, self.quota_type.config_key());
        let mut sensors = self.sensors.lock();
        sensors.set_quotas(table);
        self.enabled
            .store(sensors.quotas_enabled(), Ordering::Relaxed);
    }

    /// Kafka `maybeRecordAndGetThrottleTimeMs`.
    pub fn maybe_record_and_get_throttle_time_ms(
        &self,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> u64 {
        if !self.quotas_enabled() {
            return 0;
        }
        self.sensors
            .lock()
            .record_and_get_throttle_time_ms(user, client_id, value, now_ms)
    }

    /// Kafka `unrecordQuotaSensor`.
    pub fn unrecord(&self, user: &str, client_id: &str, value: f64, now_ms: i64) {
        if self.quotas_enabled() {
            self.sensors.lock().unrecord(user, client_id, value, now_ms);
        }
    }

    /// Kafka `getMaxValueInQuotaWindow`; `None` without a quota for the client.
    pub fn max_value_in_quota_window(&self, user: &str, client_id: &str) -> Option<f64> {
        if !self.quotas_enabled() {
            return None;
        }
        self.sensors
            .lock()
            .max_value_in_quota_window(user, client_id)
    }

    /// Kafka `throttle`: counts a request this quota throttled for `throttle_time_ms`.
    pub fn record_throttle(&self, throttle_time_ms: u64) {
        if throttle_time_ms > 0 {
            self.throttled_requests.inc();
            self.throttle_time_ms.add(throttle_time_ms);
        }
    }

    /// Quota entities tracked now.
    pub fn sensor_count(&self) -> usize {
        if !self.quotas_enabled() {
            return 0;
        }
        self.sensors.lock().sensor_count()
    }
}

/// Kafka's `QuotaFactory.QuotaManagers` for clients: produce, fetch and request.
#[derive(Debug)]
pub struct ClientQuotaManagers {
    pub produce: ClientQuotaManager,
    pub fetch: ClientQuotaManager,
    pub request: ClientQuotaManager,
    /// The image's quota map last applied: an image that shares it changes nothing.
    applied: Mutex<Option<Arc<BTreeMap<ClientQuotaEntity, ClientQuotaValues>>>>,
}

impl ClientQuotaManagers {
    pub fn new(rate_config: RateConfig, sensors_max: usize) -> Self {
        Self {
            produce: ClientQuotaManager::new(QuotaType::Produce, rate_config, sensors_max),
            fetch: ClientQuotaManager::new(QuotaType::Fetch, rate_config, sensors_max),
            request: ClientQuotaManager::new(QuotaType::Request, rate_config, sensors_max),
            applied: Mutex::new(None),
        }
    }

    pub fn get(&self, quota_type: QuotaType) -> &ClientQuotaManager {
        match quota_type {
            QuotaType::Produce => &self.produce,
            QuotaType::Fetch => &self.fetch,
            QuotaType::Request => &self.request,
        }
    }

    /// Applies the quotas of a published image (Kafka's `ClientQuotaMetadataManager`).
    pub fn update(&self, quotas: &Arc<BTreeMap<ClientQuotaEntity, ClientQuotaValues>>) {
        let mut applied = self.applied.lock();
        if applied
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, quotas))
        {
            return;
        }
        for quota_type in QuotaType::ALL {
            self.get(quota_type).update_quotas(quotas);
        }
        *applied = Some(quotas.clone());
    }

    /// Whether any client quota exists: the one check on every request's path.
    pub fn any_enabled(&self) -> bool {
        self.produce.quotas_enabled()
            || self.fetch.quotas_enabled()
            || self.request.quotas_enabled()
    }
}

/// Sets `throttle_time_ms` (the larger of what it holds and `throttle_time_ms`) on any
/// response that has the field; false for those that do not (SaslHandshake, WriteTxnMarkers,
/// the Raft APIs...).
pub fn set_throttle_time_ms(response: &mut ResponseKind, throttle_time_ms: i32) -> bool {
    macro_rules! with_throttle {
        ($($variant:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$variant(r) => {
                    r.throttle_time_ms = r.throttle_time_ms.max(throttle_time_ms);
                    true
                })*
                _ => false,
            }
        };
    }
    with_throttle!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        AlterReplicaLogDirs,
        DescribeLogDirs,
        CreatePartitions,
        CreateDelegationToken,
        RenewDelegationToken,
        ExpireDelegationToken,
        DescribeDelegationToken,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        AlterPartition,
        UpdateFeatures,
        FetchSnapshot,
        DescribeCluster,
        DescribeProducers,
        BrokerRegistration,
        BrokerHeartbeat,
        UnregisterBroker,
        DescribeTransactions,
        ListTransactions,
        AllocateProducerIds,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        ControllerRegistration,
        GetTelemetrySubscriptions,
        PushTelemetry,
        AssignReplicasToDirs,
        ListConfigResources,
        DescribeTopicPartitions,
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        ShareFetch,
        ShareAcknowledge,
        AddRaftVoter,
        RemoveRaftVoter,
        UpdateRaftVoter,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
    )
}

/// `fjord_quota_*` families for `/metrics`.
pub(crate) fn render_metrics(encoder: &mut TextEncoder, quotas: &ClientQuotaManagers) {
    type Read = fn(&ClientQuotaManager) -> f64;
    let families: [(&'static str, &str, MetricType, Read); 3] = [
        (
            "fjord_quota_throttle_time_ms_total",
            "Milliseconds of throttle (response throttle_time_ms and connection mute) client quotas imposed, by the quota that asked for the longest.",
            MetricType::Counter,
            |m| m.throttle_time_ms.get() as f64,
        ),
        (
            "fjord_quota_throttled_requests_total",
            "Requests a client quota throttled.",
            MetricType::Counter,
            |m| m.throttled_requests.get() as f64,
        ),
        (
            "fjord_quota_entities",
            "Quota entities (user/client-id) whose rate is tracked now.",
            MetricType::Gauge,
            |m| m.sensor_count() as f64,
        ),
    ];
    for (name, help, kind, read) in families {
        encoder.family(name, help, kind);
        for quota_type in QuotaType::ALL {
            encoder.sample(
                name,
                &[("quota_type", quota_type.label())],
                read(quotas.get(quota_type)),
            );
        }
    }
}

#[cfg(test)]
mod tests;
