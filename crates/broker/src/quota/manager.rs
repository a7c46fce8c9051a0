//! Kafka's `ClientQuotaManager` (and `ClientRequestQuotaManager`'s throttle bound) as a pure
//! core with injected time: which quota applies to a `(user, client-id)` pair, a `Rate` sensor
//! per resolved quota entity, and the throttle time Kafka computes when a recording takes the
//! rate over the bound (`QuotaUtils.throttleTime` / `boundedThrottleTime`).
//!
//! Resolution follows Kafka's `DefaultQuotaCallback` precedence:
//! `/users/u/clients/c` > `/users/u/clients/<default>` > `/users/u` >
//! `/users/<default>/clients/c` > `/users/<default>/clients/<default>` > `/users/<default>` >
//! `/clients/c` > `/clients/<default>`. The sensor a recording goes to is named by Kafka's
//! metric tags for the matched level: `(user, client-id)` for the four user-and-client levels,
//! `(user, "")` for the two user levels and `("", client-id)` for the client levels. So a
//! default quota is a quota *per* user or client id, never one shared by all of them, and two
//! client ids of one user with a `/users/u` quota share that user's sensor.
//!
//! A client no quota applies to gets no sensor at all (Kafka records it against an unbounded
//! one). Sensors idle for [`INACTIVE_SENSOR_EXPIRATION_MS`] are dropped (Kafka's one hour),
//! and at most `sensors_max` are tracked: past that the least recently used 1% go, so a
//! client inventing client ids costs bounded memory.

use std::collections::{BTreeMap, HashMap};

use fjord_metadata::security::{
    ClientQuotaEntity, ClientQuotaValues, QUOTA_ENTITY_CLIENT_ID, QUOTA_ENTITY_USER,
};

use super::rate::{Rate, RateConfig};
use super::QuotaType;

/// Kafka `ClientQuotaManager.InactiveSensorExpirationTimeSeconds`: one hour.
pub const INACTIVE_SENSOR_EXPIRATION_MS: i64 = 3_600_000;

/// How often (at most) idle sensors are looked for, on a recording.
pub const EXPIRY_CHECK_INTERVAL_MS: i64 = 30_000;

/// Default cap on tracked quota entities per quota type.
pub const SENSORS_MAX_DEFAULT: usize = 100_000;

/// The quotas of one user (or of the default user): per client id, for its default client
/// id, and for the user alone.
#[derive(Clone, Debug, Default, PartialEq)]
struct UserLevels {
    clients: HashMap<String, f64>,
    default_client: Option<f64>,
    alone: Option<f64>,
}

impl UserLevels {
    fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.default_client.is_none() && self.alone.is_none()
    }
}

/// Kafka's metric tags of a quota sensor: which parts of `(user, client-id)` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensorTags {
    UserAndClientId,
    User,
    ClientId,
}

/// The quota that applies to a client, and the sensor that measures it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolvedQuota {
    pub bound: f64,
    pub tags: SensorTags,
}

/// One quota key's values (`producer_byte_rate`, ...) from the image's `client_quotas`,
/// indexed for the precedence walk without allocating.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaTable {
    users: HashMap<String, UserLevels>,
    default_user: UserLevels,
    clients: HashMap<String, f64>,
    default_client: Option<f64>,
}

impl QuotaTable {
    /// The entities of `quotas` that set `key`. Entities of other types (`ip`) and values that
    /// are not positive finite numbers are ignored (the controller validates them).
    pub fn from_image(quotas: &BTreeMap<ClientQuotaEntity, ClientQuotaValues>, key: &str) -> Self {
        let mut table = Self::default();
        for (entity, values) in quotas {
            let Some(&value) = values.get(key) else {
                continue;
            };
            if !(value.is_finite() && value > 0.0) {
                continue;
            }
            if entity
                .keys()
                .any(|t| t != QUOTA_ENTITY_USER && t != QUOTA_ENTITY_CLIENT_ID)
            {
                continue;
            }
            let user = entity.get(QUOTA_ENTITY_USER);
            let client = entity.get(QUOTA_ENTITY_CLIENT_ID);
            match (user, client) {
                (Some(user), client) => {
                    let levels = match user {
                        Some(name) => table.users.entry(name.clone()).or_default(),
                        None => &mut table.default_user,
                    };
                    match client {
                        Some(Some(name)) => {
                            levels.clients.insert(name.clone(), value);
                        }
                        Some(None) => levels.default_client = Some(value),
                        None => levels.alone = Some(value),
                    }
                }
                (None, Some(Some(name))) => {
                    table.clients.insert(name.clone(), value);
                }
                (None, Some(None)) => table.default_client = Some(value),
                (None, None) => {}
            }
        }
        table
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.default_user.is_empty()
            && self.clients.is_empty()
            && self.default_client.is_none()
    }

    /// Kafka's precedence walk for `user` (the principal's name) and `client_id`.
    pub fn resolve(&self, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        let found = |bound: Option<f64>, tags| bound.map(|bound| ResolvedQuota { bound, tags });
        let named = self.users.get(user);
        named
            .and_then(|u| {
                found(
                    u.clients.get(client_id).copied(),
                    SensorTags::UserAndClientId,
                )
            })
            .or_else(|| named.and_then(|u| found(u.default_client, SensorTags::UserAndClientId)))
            .or_else(|| named.and_then(|u| found(u.alone, SensorTags::User)))
            .or_else(|| {
                let d = &self.default_user;
                found(
                    d.clients.get(client_id).copied(),
                    SensorTags::UserAndClientId,
                )
                .or_else(|| found(d.default_client, SensorTags::UserAndClientId))
                .or_else(|| found(d.alone, SensorTags::User))
            })
            .or_else(|| found(self.clients.get(client_id).copied(), SensorTags::ClientId))
            .or_else(|| found(self.default_client, SensorTags::ClientId))
    }
}

/// A sensor's name: Kafka's `(user, client-id)` metric tags, `""` for a part not used.
fn sensor_tags<'a>(tags: SensorTags, user: &'a str, client_id: &'a str) -> (&'a str, &'a str) {
    match tags {
        SensorTags::UserAndClientId => (user, client_id),
        SensorTags::User => (user, ""),
        SensorTags::ClientId => ("", client_id),
    }
}

#[derive(Debug)]
struct Sensor {
    rate: Rate,
    last_record_ms: i64,
}

/// One quota type's sensors and quotas (Kafka `ClientQuotaManager` without its threads).
#[derive(Debug)]
pub struct QuotaSensors {
    quota_type: QuotaType,
    rate_config: RateConfig,
    table: QuotaTable,
    /// By user tag, then client-id tag (two levels so a lookup borrows the names instead of
    /// allocating a key).
    sensors: HashMap<String, HashMap<String, Sensor>>,
    sensor_count: usize,
    sensors_max: usize,
    next_expiry_check_ms: i64,
}

impl QuotaSensors {
    pub fn new(quota_type: QuotaType, rate_config: RateConfig, sensors_max: usize) -> Self {
        assert!(sensors_max >= 1, "at least one sensor must fit");
        Self {
            quota_type,
            rate_config,
            table: QuotaTable::default(),
            sensors: HashMap::new(),
            sensor_count: 0,
            sensors_max,
            next_expiry_check_ms: i64::MIN,
        }
    }

    /// New bounds (a published image); recorded rates stay with their sensors. Without any
    /// quota the sensors go.
    pub fn set_quotas(&mut self, table: QuotaTable) {
        self.table = table;
        if self.table.is_empty() {
            self.sensors = HashMap::new();
            self.sensor_count = 0;
        }
    }

    pub fn quotas_enabled(&self) -> bool {
        !self.table.is_empty()
    }

    pub fn resolve(&self, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        self.table.resolve(user, client_id)
    }

    pub fn sensor_count(&self) -> usize {
        self.sensor_count
    }

    /// Kafka `recordAndGetThrottleTimeMs`: records `value` for the client and returns how long
    /// it must wait for its rate to come back to the quota (0 within it, and always 0 for a
    /// client no quota applies to).
    pub fn record_and_get_throttle_time_ms(
        &mut self,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> u64 {
        let Some(resolved) = self.table.resolve(user, client_id) else {
            return 0;
        };
        let config = self.rate_config;
        let quota_type = self.quota_type;
        let (user_tag, client_tag) = sensor_tags(resolved.tags, user, client_id);
        let Some(sensor) = self.sensor(user_tag, client_tag, now_ms) else {
            debug_assert!(false, "a sensor was just created");
            return 0;
        };
        sensor.rate.record(&config, value, now_ms);
        sensor.last_record_ms = now_ms;
        let observed = sensor.rate.measure(&config, now_ms);
        if observed <= resolved.bound {
            return 0;
        }
        // Kafka QuotaUtils.throttleTime: X = (O - T) / T * W over the rate's precise window.
        let window_ms = sensor.rate.window_size_ms(&config, now_ms) as f64;
        let throttle_ms = ((observed - resolved.bound) / resolved.bound * window_ms).round();
        let throttle_ms = if throttle_ms.is_finite() {
            throttle_ms.clamp(0.0, i32::MAX as f64) as u64
        } else {
            i32::MAX as u64
        };
        match quota_type {
            // ClientRequestQuotaManager: boundedThrottleTime, at most one sample window.
            QuotaType::Request => throttle_ms.min(config.window_ms.max(0) as u64),
            QuotaType::Produce | QuotaType::Fetch => throttle_ms,
        }
    }

    /// Kafka `unrecordQuotaSensor`: takes back a recorded value (a throttled fetch returns no
    /// data), without a quota check.
    pub fn unrecord(&mut self, user: &str, client_id: &str, value: f64, now_ms: i64) {
        let Some(resolved) = self.table.resolve(user, client_id) else {
            return;
        };
        let config = self.rate_config;
        let (user_tag, client_tag) = sensor_tags(resolved.tags, user, client_id);
        if let Some(sensor) = self
            .sensors
            .get_mut(user_tag)
            .and_then(|clients| clients.get_mut(client_tag))
        {
            sensor.rate.record(&config, -value, now_ms);
        }
    }

    /// Kafka `getMaxValueInQuotaWindow`: the most one request may record without being
    /// throttled for sure (a consumer's fetch is capped to it); `None` without a quota.
    pub fn max_value_in_quota_window(&self, user: &str, client_id: &str) -> Option<f64> {
        let resolved = self.table.resolve(user, client_id)?;
        let samples = f64::from(self.rate_config.samples.saturating_sub(1));
        Some(resolved.bound * samples * self.rate_config.window_ms as f64 / 1000.0)
    }

    /// The sensor named by the tags, created if missing (expiring idle ones and evicting
    /// the least recently used when the table is full).
    fn sensor(&mut self, user_tag: &str, client_tag: &str, now_ms: i64) -> Option<&mut Sensor> {
        if now_ms >= self.next_expiry_check_ms {
            self.next_expiry_check_ms = now_ms.saturating_add(EXPIRY_CHECK_INTERVAL_MS);
            self.expire_idle(now_ms);
        }
        let exists = self
            .sensors
            .get(user_tag)
            .is_some_and(|clients| clients.contains_key(client_tag));
        if !exists {
            if self.sensor_count >= self.sensors_max {
                self.expire_idle(now_ms);
                if self.sensor_count >= self.sensors_max {
                    self.evict_least_recently_used();
                }
            }
            self.sensors
                .entry(user_tag.to_string())
                .or_default()
                .insert(
                    client_tag.to_string(),
                    Sensor {
                        rate: Rate::new(),
                        last_record_ms: now_ms,
                    },
                );
            self.sensor_count += 1;
            debug_assert!(self.sensor_count <= self.sensors_max);
        }
        self.sensors
            .get_mut(user_tag)
            .and_then(|clients| clients.get_mut(client_tag))
    }

    /// Removes the sensors `remove` picks, keeping the count.
    fn remove_sensors(&mut self, mut remove: impl FnMut(&Sensor) -> bool) {
        let mut removed = 0;
        self.sensors.retain(|_, clients| {
            clients.retain(|_, sensor| {
                let gone = remove(sensor);
                removed += usize::from(gone);
                !gone
            });
            !clients.is_empty()
        });
        self.sensor_count -= removed;
    }

    fn expire_idle(&mut self, now_ms: i64) {
        self.remove_sensors(|sensor| {
            now_ms.saturating_sub(sensor.last_record_ms) >= INACTIVE_SENSOR_EXPIRATION_MS
        });
    }

    /// Drops the least recently used 1% (at least one) of the sensors, so a full table does
    /// not scan on every new client.
    fn evict_least_recently_used(&mut self) {
        let evict_count = (self.sensor_count / 100).max(1);
        let mut last_records: Vec<i64> = self
            .sensors
            .values()
            .flat_map(|clients| clients.values().map(|s| s.last_record_ms))
            .collect();
        if last_records.is_empty() {
            return;
        }
        let evict_count = evict_count.min(last_records.len());
        let (_, cutoff, _) = last_records.select_nth_unstable(evict_count - 1);
        let cutoff = *cutoff;
        let mut evicted = 0;
        self.remove_sensors(|sensor| {
            let evict = evicted < evict_count && sensor.last_record_ms <= cutoff;
            evicted += usize::from(evict);
            evict
        });
        debug_assert!(evicted >= 1);
    }

    #[cfg(test)]
    fn has_sensor(&self, user_tag: &str, client_tag: &str) -> bool {
        self.sensors
            .get(user_tag)
            .is_some_and(|clients| clients.contains_key(client_tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> ClientQuotaEntity {
        let mut entity = ClientQuotaEntity::new();
        if let Some(user) = user {
            entity.insert(QUOTA_ENTITY_USER.to_string(), user.map(str::to_string));
        }
        if let Some(client) = client {
            entity.insert(
                QUOTA_ENTITY_CLIENT_ID.to_string(),
                client.map(str::to_string),
            );
        }
        entity
    }

    fn quotas(
        entries: &[(ClientQuotaEntity, f64)],
    ) -> BTreeMap<ClientQuotaEntity, ClientQuotaValues> {
        entries
            .iter()
            .map(|(e, v)| {
                (
                    e.clone(),
                    ClientQuotaValues::from([("producer_byte_rate".to_string(), *v)]),
                )
            })
            .collect()
    }

    #[test]
    fn precedence_is_kafkas() {
        // Level n has bound n; removing levels from the top shows the next one.
        let levels = vec![
            (entity(Some(Some("u")), Some(Some("c"))), 1.0),
            (entity(Some(Some("u")), Some(None)), 2.0),
            (entity(Some(Some("u")), None), 3.0),
            (entity(Some(None), Some(Some("c"))), 4.0),
            (entity(Some(None), Some(None)), 5.0),
            (entity(Some(None), None), 6.0),
            (entity(None, Some(Some("c"))), 7.0),
            (entity(None, Some(None)), 8.0),
        ];
        let tags = [
            SensorTags::UserAndClientId,
            SensorTags::UserAndClientId,
            SensorTags::User,
            SensorTags::UserAndClientId,
            SensorTags::UserAndClientId,
            SensorTags::User,
            SensorTags::ClientId,
            SensorTags::ClientId,
        ];
        for skip in 0..levels.len() {
            let table = QuotaTable::from_image(&quotas(&levels[skip..]), "producer_byte_rate");
            let resolved = table.resolve("u", "c").expect("a level applies");
            assert_eq!(resolved.bound, (skip + 1) as f64);
            assert_eq!(resolved.tags, tags[skip]);
        }
        let table = QuotaTable::from_image(&quotas(&levels), "producer_byte_rate");
        // Other users and clients fall to the defaults.
        assert_eq!(table.resolve("v", "c").map(|r| r.bound), Some(4.0));
        assert_eq!(table.resolve("v", "d").map(|r| r.bound), Some(5.0));
        assert_eq!(table.resolve("u", "d").map(|r| r.bound), Some(2.0));
        // Another key: nothing.
        let table = QuotaTable::from_image(&quotas(&levels), "consumer_byte_rate");
        assert!(table.is_empty());
        assert_eq!(table.resolve("u", "c"), None);
    }

    #[test]
    fn ip_entities_and_bad_values_are_ignored() {
        let mut ip = ClientQuotaEntity::new();
        ip.insert("ip".to_string(), Some("1.2.3.4".to_string()));
        let table = QuotaTable::from_image(
            &quotas(&[
                (ip, 10.0),
                (entity(None, Some(Some("c"))), 0.0),
                (entity(None, Some(None)), f64::NAN),
            ]),
            "producer_byte_rate",
        );
        assert!(table.is_empty());
    }

    fn sensors_with(entries: &[(ClientQuotaEntity, f64)], quota_type: QuotaType) -> QuotaSensors {
        let mut sensors = QuotaSensors::new(quota_type, RateConfig::KAFKA_DEFAULT, 10);
        sensors.set_quotas(QuotaTable::from_image(
            &quotas(entries),
            "producer_byte_rate",
        ));
        sensors
    }

    #[test]
    fn throttle_time_is_kafkas_formula() {
        let mut sensors = sensors_with(&[(entity(None, Some(None)), 1000.0)], QuotaType::Produce);
        // 10_000 bytes over the 10 s minimum window: exactly the quota.
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 10_000.0, 0),
            0
        );
        // 20_000 bytes / 10 s = 2000/s: (2000 - 1000) / 1000 * 10_000 ms.
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 10_000.0, 0),
            10_000
        );
        // The request quota's throttle is bounded by one window.
        let mut sensors = sensors_with(&[(entity(None, Some(None)), 1000.0)], QuotaType::Request);
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 20_000.0, 0),
            1_000
        );
    }

    #[test]
    fn default_quotas_are_per_client_and_user_quotas_shared_by_its_clients() {
        let mut sensors = sensors_with(
            &[
                (entity(None, Some(None)), 1000.0),
                (entity(Some(Some("u")), None), 1000.0),
            ],
            QuotaType::Produce,
        );
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("x", "a", 10_000.0, 0),
            0
        );
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("x", "b", 10_000.0, 0),
            0
        );
        assert_eq!(sensors.sensor_count(), 2);
        // User u's two clients share one sensor: the second is throttled.
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "a", 10_000.0, 0),
            0
        );
        assert!(sensors.record_and_get_throttle_time_ms("u", "b", 10_000.0, 0) > 0);
        assert_eq!(sensors.sensor_count(), 3);
    }

    #[test]
    fn a_new_bound_keeps_the_recorded_rate() {
        let mut sensors = sensors_with(&[(entity(None, Some(None)), 1000.0)], QuotaType::Produce);
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 10_000.0, 0),
            0
        );
        sensors.set_quotas(QuotaTable::from_image(
            &quotas(&[(entity(None, Some(None)), 500.0)]),
            "producer_byte_rate",
        ));
        // 10_001 bytes over 10 s against 500/s: throttled because the first 10_000 stayed.
        assert!(sensors.record_and_get_throttle_time_ms("u", "c", 1.0, 0) > 0);
        // No quota at all: no sensors, never throttled.
        sensors.set_quotas(QuotaTable::default());
        assert_eq!(sensors.sensor_count(), 0);
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 1e12, 0),
            0
        );
        assert_eq!(sensors.sensor_count(), 0);
    }

    #[test]
    fn unrecord_takes_a_fetch_back() {
        let mut sensors = sensors_with(&[(entity(None, Some(None)), 1000.0)], QuotaType::Fetch);
        assert!(sensors.record_and_get_throttle_time_ms("u", "c", 20_000.0, 0) > 0);
        sensors.unrecord("u", "c", 20_000.0, 0);
        assert_eq!(
            sensors.record_and_get_throttle_time_ms("u", "c", 5_000.0, 0),
            0
        );
        assert_eq!(sensors.max_value_in_quota_window("u", "c"), Some(10_000.0));
        assert_eq!(
            sensors_with(&[], QuotaType::Fetch).max_value_in_quota_window("u", "c"),
            None
        );
    }

    #[test]
    fn idle_sensors_expire_and_the_table_is_bounded() {
        let mut sensors = sensors_with(&[(entity(None, Some(None)), 1000.0)], QuotaType::Produce);
        for i in 0..25 {
            sensors.record_and_get_throttle_time_ms("u", &format!("c{i}"), 1.0, i);
            assert!(sensors.sensor_count() <= 10);
        }
        // The most recent client is still tracked, the oldest ones are gone.
        assert!(sensors.has_sensor("", "c24"));
        assert!(!sensors.has_sensor("", "c0"));
        // An hour later a recording sweeps the idle ones.
        sensors.record_and_get_throttle_time_ms(
            "u",
            "late",
            1.0,
            24 + INACTIVE_SENSOR_EXPIRATION_MS,
        );
        assert_eq!(sensors.sensor_count(), 1);
    }
}
