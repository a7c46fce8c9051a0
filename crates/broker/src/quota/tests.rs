//! Simulated-clock properties of the quota managers: a greedy client that honours its
//! throttle times converges to the quota; a client below it is never throttled.

use std::collections::BTreeMap;

use fjord_metadata::security::{ClientQuotaEntity, ClientQuotaValues, QUOTA_ENTITY_CLIENT_ID};
use fjord_protocol::kafka_protocol::messages::{
    FetchResponse, ProduceResponse, WriteTxnMarkersResponse,
};
use fjord_protocol::ResponseKind;
use proptest::prelude::*;

use super::*;

fn default_client_quota(key: &str, value: f64) -> BTreeMap<ClientQuotaEntity, ClientQuotaValues> {
    let entity = ClientQuotaEntity::from([(QUOTA_ENTITY_CLIENT_ID.to_string(), None)]);
    BTreeMap::from([(entity, ClientQuotaValues::from([(key.to_string(), value)]))])
}

/// A client sending back to back (a gap of `gaps_ms[i % n]` after each answer, plus the
/// mute) with sizes `sizes[i % n]` for `duration_ms`; its achieved rate per second.
fn achieved_rate(
    manager: &ClientQuotaManager,
    sizes: &[f64],
    gaps_ms: &[i64],
    duration_ms: i64,
) -> f64 {
    let start_ms = 1_000_000;
    let mut now_ms = start_ms;
    let mut total = 0.0;
    let mut i = 0;
    while now_ms < start_ms + duration_ms {
        let size = sizes[i % sizes.len()];
        total += size;
        let throttle_ms = manager.maybe_record_and_get_throttle_time_ms("u", "c", size, now_ms);
        now_ms += throttle_ms as i64 + gaps_ms[i % gaps_ms.len()];
        i += 1;
    }
    total / ((now_ms - start_ms) as f64 / 1000.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the request sizes and pauses, a client that always wants more than its quota
    /// and waits out its throttle gets the quota, within 10% over a 10-minute run (the first
    /// window's burst allowance is the bulk of the error).
    #[test]
    fn a_greedy_client_converges_to_its_quota(
        quota in 1_000.0f64..10_000_000.0,
        size_fractions in proptest::collection::vec(0.001f64..0.5, 1..20),
        gaps_ms in proptest::collection::vec(0i64..100, 1..20),
        quota_type in prop_oneof![Just(QuotaType::Produce), Just(QuotaType::Fetch)],
    ) {
        let manager = ClientQuotaManager::new(quota_type, RateConfig::KAFKA_DEFAULT, 100);
        manager.update_quotas(&default_client_quota(quota_type.config_key(), quota));
        // Sizes relative to the quota; the claim is for clients that want at least twice it.
        let sizes: Vec<f64> = size_fractions.iter().map(|f| (f * quota).max(1.0)).collect();
        let mean_size = sizes.iter().sum::<f64>() / sizes.len() as f64;
        let mean_gap_ms = gaps_ms.iter().sum::<i64>() as f64 / gaps_ms.len() as f64;
        let wanted = mean_size / (mean_gap_ms.max(1.0) / 1000.0);
        prop_assume!(wanted > 2.0 * quota);
        let rate = achieved_rate(&manager, &sizes, &gaps_ms, 600_000);
        prop_assert!(rate <= quota * 1.10, "rate {rate} quota {quota}");
        prop_assert!(rate >= quota * 0.90, "rate {rate} quota {quota}");
    }

    /// The request quota: percentages of a thread, throttles bounded by one window.
    #[test]
    fn a_busy_client_converges_to_its_request_percentage(
        percentage in 5.0f64..50.0,
        busy_ms in proptest::collection::vec(1i64..50, 1..10),
    ) {
        let manager = ClientQuotaManager::new(QuotaType::Request, RateConfig::KAFKA_DEFAULT, 100);
        manager.update_quotas(&default_client_quota(REQUEST_PERCENTAGE, percentage));
        // Handler time in ms as a percentage of one second.
        let sizes: Vec<f64> = busy_ms.iter().map(|ms| *ms as f64 / 10.0).collect();
        // Requests back to back: the client spends 100% of one thread (the gap is the time
        // the handler ran), at least twice what it may.
        let rate = achieved_rate(&manager, &sizes, &busy_ms, 600_000);
        prop_assert!(rate <= percentage * 1.10, "rate {rate} quota {percentage}");
        prop_assert!(rate >= percentage * 0.90, "rate {rate} quota {percentage}");
    }

    /// A client that never sends more than half its quota in a second is never throttled.
    #[test]
    fn a_client_below_its_quota_is_never_throttled(
        quota in 1_000.0f64..10_000_000.0,
        fractions in proptest::collection::vec(0.0f64..0.5, 1..50),
        phase_ms in 0i64..1000,
    ) {
        let manager = ClientQuotaManager::new(QuotaType::Produce, RateConfig::KAFKA_DEFAULT, 100);
        manager.update_quotas(&default_client_quota(PRODUCER_BYTE_RATE, quota));
        for second in 0..200i64 {
            let size = fractions[second as usize % fractions.len()] * quota;
            let now_ms = second * 1000 + phase_ms;
            prop_assert_eq!(manager.maybe_record_and_get_throttle_time_ms("u", "c", size, now_ms), 0);
        }
    }
}

#[test]
fn without_quotas_nothing_is_tracked() {
    let managers = ClientQuotaManagers::new(RateConfig::KAFKA_DEFAULT, 100);
    assert!(!managers.any_enabled());
    assert_eq!(
        managers
            .produce
            .maybe_record_and_get_throttle_time_ms("u", "c", 1e12, 0),
        0
    );
    assert_eq!(managers.produce.sensor_count(), 0);
    let quotas = std::sync::Arc::new(default_client_quota(CONSUMER_BYTE_RATE, 10.0));
    managers.update(&quotas);
    assert!(managers.any_enabled());
    assert!(managers.fetch.quotas_enabled());
    assert!(!managers.produce.quotas_enabled());
    assert!(!managers.request.quotas_enabled());
    managers.update(&std::sync::Arc::default());
    assert!(!managers.any_enabled());
}

#[test]
fn the_throttle_field_is_set_where_responses_have_it() {
    let mut produce = ResponseKind::Produce(ProduceResponse::default());
    assert!(set_throttle_time_ms(&mut produce, 250));
    let ResponseKind::Produce(produce) = produce else {
        unreachable!()
    };
    assert_eq!(produce.throttle_time_ms, 250);
    let mut fetch = ResponseKind::Fetch(FetchResponse::default().with_throttle_time_ms(900));
    assert!(set_throttle_time_ms(&mut fetch, 250));
    let ResponseKind::Fetch(fetch) = fetch else {
        unreachable!()
    };
    assert_eq!(fetch.throttle_time_ms, 900, "the larger throttle stays");
    let mut markers = ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default());
    assert!(!set_throttle_time_ms(&mut markers, 250));
}
