//! Quota enforcement around the request handlers (Kafka `KafkaApis`' `quotas.*` calls and
//! `RequestHandlerHelper.sendResponseMaybeThrottle`).
//!
//! * Produce: the request's record bytes go to `producer_byte_rate` after the append; the
//!   request quota is not checked for acks=0 (Kafka exempts it), and a throttled acks=0
//!   produce gets the mute without a response.
//! * Fetch from a consumer: `max_bytes` is capped to what the quota window allows (Kafka's
//!   `getMaxValueInQuotaWindow`); the response's record bytes go to `consumer_byte_rate`; if
//!   either quota throttles, the bytes are taken back and the response carries no partitions
//!   (Kafka's `getThrottledResponse`; deviation: the fetch session was already updated by the
//!   handler, so a partition whose only news was a high watermark change is not re-sent until
//!   it changes again). Follower fetches are never client-throttled.
//! * Every other request (and those two): its handler time goes to `request_percentage`,
//!   except inter-broker requests (follower Fetch, WriteTxnMarkers), the SASL handshake and
//!   acks=0 produces.
//!
//! The response gets the largest throttle in `throttle_time_ms` and the session a mute of
//! that length; the quota that asked for it counts it.

use std::future::Future;
use std::time::{Duration, Instant};

use fjord_protocol::kafka_protocol::messages::RequestHeader;
use fjord_protocol::{RequestKind, ResponseKind};

use super::{set_throttle_time_ms, ClientQuotaManager};
use crate::security::Session;
use crate::{Broker, Outcome};

/// Kafka `ClientRequestQuotaManager.NanosToPercentagePerSecond`.
const NANOS_TO_PERCENTAGE_PER_SECOND: f64 = 100.0 / 1e9;

/// Requests Kafka answers with `sendResponseExemptThrottle` or before authentication.
fn exempt_from_request_quota(request: &RequestKind, api_version: i16) -> bool {
    match request {
        RequestKind::Fetch(r) => crate::apis::fetch::follower_of(api_version, r).is_some(),
        RequestKind::Produce(r) => r.acks == 0,
        RequestKind::WriteTxnMarkers(_)
        | RequestKind::SaslHandshake(_)
        | RequestKind::SaslAuthenticate(_) => true,
        _ => false,
    }
}

/// Sum of the record set sizes of a produce request.
fn produce_record_bytes(request: &RequestKind) -> usize {
    let RequestKind::Produce(produce) = request else {
        return 0;
    };
    produce
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum()
}

/// Record bytes of a fetch answer: file ranges spliced in, or records inline.
fn fetch_record_bytes(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::RespondWithFileRecords(_, file_records) => {
            file_records.iter().map(|f| f.size_bytes()).sum()
        }
        Outcome::Respond(ResponseKind::Fetch(fetch)) => fetch
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
            .sum(),
        _ => 0,
    }
}

/// Runs `future`, adding the time spent inside its `poll` to `spent`: a handler's working
/// time without the time it waits parked.
async fn poll_timed<F: Future>(future: F, spent: &mut Duration) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let started = Instant::now();
        let poll = future.as_mut().poll(cx);
        *spent += started.elapsed();
        poll
    })
    .await
}

impl Broker {
    /// The client quota managers (produce, fetch, request).
    pub fn client_quotas(&self) -> &super::ClientQuotaManagers {
        &self.quotas
    }

    /// `handle_session` when some client quota exists.
    pub(crate) async fn handle_with_quotas(
        &self,
        session: &Session,
        header: &RequestHeader,
        mut request: RequestKind,
    ) -> Outcome {
        let quotas = &self.quotas;
        let api_version = header.request_api_version;
        let user = session.principal.name.as_str();
        let client_id: &str = header.client_id.as_deref().unwrap_or("");
        let request_quota =
            quotas.request.quotas_enabled() && !exempt_from_request_quota(&request, api_version);
        let produce_bytes =
            (quotas.produce.quotas_enabled()).then(|| produce_record_bytes(&request));
        let consumer_fetch = match &mut request {
            RequestKind::Fetch(fetch) => {
                let consumer = crate::apis::fetch::follower_of(api_version, fetch).is_none();
                if consumer {
                    if let Some(window_bytes) =
                        quotas.fetch.max_value_in_quota_window(user, client_id)
                    {
                        // Kafka caps the fetch so one response cannot be throttled for sure.
                        let cap = window_bytes.clamp(1.0, f64::from(i32::MAX)) as i32;
                        fetch.max_bytes = fetch.max_bytes.min(cap);
                        fetch.min_bytes = fetch.min_bytes.min(fetch.max_bytes);
                    }
                }
                consumer
            }
            _ => false,
        };

        let mut handler_time = Duration::ZERO;
        let mut outcome = if request_quota {
            poll_timed(
                self.authorize_and_dispatch(session, header, request),
                &mut handler_time,
            )
            .await
        } else {
            self.authorize_and_dispatch(session, header, request).await
        };

        let now_ms = crate::time::monotonic_ms();
        let request_throttle_ms = if request_quota {
            quotas.request.maybe_record_and_get_throttle_time_ms(
                user,
                client_id,
                handler_time.as_nanos() as f64 * NANOS_TO_PERCENTAGE_PER_SECOND,
                now_ms,
            )
        } else {
            0
        };
        let mut bandwidth: Option<(&ClientQuotaManager, u64)> = None;
        if let Some(bytes) = produce_bytes {
            let throttle_ms = quotas.produce.maybe_record_and_get_throttle_time_ms(
                user,
                client_id,
                bytes as f64,
                now_ms,
            );
            bandwidth = Some((&quotas.produce, throttle_ms));
        }
        if consumer_fetch {
            let mut fetch_throttle_ms = 0;
            if quotas.fetch.quotas_enabled() {
                let bytes = fetch_record_bytes(&outcome) as f64;
                fetch_throttle_ms = quotas
                    .fetch
                    .maybe_record_and_get_throttle_time_ms(user, client_id, bytes, now_ms);
                if fetch_throttle_ms.max(request_throttle_ms) > 0 {
                    // Kafka: a throttled fetch returns nothing, so its bytes do not count.
                    quotas.fetch.unrecord(user, client_id, bytes, now_ms);
                }
                bandwidth = Some((&quotas.fetch, fetch_throttle_ms));
            }
            if fetch_throttle_ms.max(request_throttle_ms) > 0 {
                outcome = throttled_fetch(outcome);
            }
        }

        let bandwidth_throttle_ms = bandwidth.map_or(0, |(_, ms)| ms);
        let throttle_ms = bandwidth_throttle_ms.max(request_throttle_ms);
        if throttle_ms == 0 {
            return outcome;
        }
        match bandwidth {
            Some((manager, ms)) if ms > request_throttle_ms => manager.record_throttle(ms),
            _ => quotas.request.record_throttle(request_throttle_ms),
        }
        session.request_mute_ms(throttle_ms);
        let throttle_time_ms = i32::try_from(throttle_ms).unwrap_or(i32::MAX);
        if let Outcome::Respond(response) | Outcome::RespondWithFileRecords(response, _) =
            &mut outcome
        {
            set_throttle_time_ms(response, throttle_time_ms);
        }
        outcome
    }
}

/// Kafka's `getThrottledResponse`: the fetch answer without its partitions (and so without
/// file ranges); errors and the session id stay.
fn throttled_fetch(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Respond(ResponseKind::Fetch(mut fetch))
        | Outcome::RespondWithFileRecords(ResponseKind::Fetch(mut fetch), _) => {
            fetch.responses.clear();
            Outcome::Respond(ResponseKind::Fetch(fetch))
        }
        other => other,
    }
}
