//! The `produce-quota` workload's quota: a producer `producer_byte_rate` for the bench
//! producers' client id, set and removed with a raw AlterClientQuotas request (API key 49,
//! version 0; librdkafka's admin API has no client quota calls), and the produce rate
//! achieved against it.
//!
//! Kafka's quota bounds the rate over a window of `quota.window.num` (11) one-second samples,
//! floored at 10 s: a greedy client first sends about 10 s of its quota at once, is then held
//! back until those samples expire, and repeats with smaller bursts (a sawtooth with an ~11 s
//! period; the long-run average converges to the quota). So the run is long (several
//! periods) and the result shows the achieved average next to Kafka's ceiling for that length,
//! `quota * (T + 10 s) / T`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The client id every bench producer uses (`load::producer_config`).
pub const PRODUCER_CLIENT_ID: &str = "fjord-bench-producer";

const ALTER_CLIENT_QUOTAS: i16 = 49;
/// Largest AlterClientQuotas response accepted.
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Window floor of Kafka's default quota rate: (`quota.window.num` - 1) one-second samples.
pub const KAFKA_QUOTA_WINDOW_FLOOR_S: f64 = 10.0;

/// What the quota workload reports next to the usual throughput.
#[derive(Clone, Debug, Serialize)]
pub struct QuotaResult {
    /// The `producer_byte_rate` set, MB/s (10^6 bytes).
    pub quota_mb_s: f64,
    /// Acknowledged payload MB/s over the whole produce phase.
    pub achieved_mb_s: f64,
    /// `achieved_mb_s / quota_mb_s`.
    pub achieved_vs_quota: f64,
    /// The most a greedy client can get over a run this long, as a multiple of the quota:
    /// `(T + 10 s) / T` (the initial burst allowance spread over the run).
    pub kafka_ceiling_vs_quota: f64,
}

impl QuotaResult {
    pub fn new(quota_mb_s: f64, achieved_mb_s: f64, produce_secs: f64) -> Self {
        Self {
            quota_mb_s,
            achieved_mb_s,
            achieved_vs_quota: achieved_mb_s / quota_mb_s,
            kafka_ceiling_vs_quota: (produce_secs + KAFKA_QUOTA_WINDOW_FLOOR_S)
                / produce_secs.max(f64::MIN_POSITIVE),
        }
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = i16::try_from(s.len()).context("string too long")?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Sets (`Some`) or removes (`None`) `producer_byte_rate` for client id `client_id`, through
/// the first address of `bootstrap`.
pub fn set_producer_quota(
    bootstrap: &str,
    client_id: &str,
    bytes_per_s: Option<f64>,
) -> Result<()> {
    let address = bootstrap
        .split(',')
        .next()
        .context("empty bootstrap address")?;
    let mut body = Vec::new();
    // Header v1: api key, version, correlation id, client id.
    body.extend_from_slice(&ALTER_CLIENT_QUOTAS.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, "fjord-bench-admin")?;
    // One entry: entity [{client-id, name}], ops [{producer_byte_rate, value, remove}].
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, "client-id")?;
    put_string(&mut body, client_id)?;
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, "producer_byte_rate")?;
    body.extend_from_slice(&bytes_per_s.unwrap_or(0.0).to_be_bytes());
    body.push(u8::from(bytes_per_s.is_none()));
    body.push(0); // validate_only
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let len = i32::try_from(body.len()).context("request too long")?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(&body)?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .context("no AlterClientQuotas response (does the broker support API 49?)")?;
    let len = usize::try_from(i32::from_be_bytes(len)).context("negative response length")?;
    if len > RESPONSE_BYTES_MAX {
        bail!("AlterClientQuotas response of {len} bytes");
    }
    let mut response = vec![0u8; len];
    stream.read_exact(&mut response)?;
    // correlation id (4), throttle (4), entries count (4), first entry's error code (2).
    let error = response
        .get(12..14)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .context("short AlterClientQuotas response")?;
    if error != 0 {
        bail!("AlterClientQuotas failed with error code {error}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_spreads_the_burst_allowance_over_the_run() {
        let r = QuotaResult::new(10.0, 12.0, 40.0);
        assert!((r.achieved_vs_quota - 1.2).abs() < 1e-9);
        assert!((r.kafka_ceiling_vs_quota - 1.25).abs() < 1e-9);
    }
}
