//! The `produce-quota` workload's quota: a producer `producer_byte_rate` for the bench
//! producers' client id, set and removed with a raw AlterClientQuotas request (API key 49,
//! version 0; librdkafka's admin API has no client quota calls), and the steady produce rate
//! measured against it.
//!
//! Kafka measures a client's rate over `quota.window.num` (11) one-second samples with a
//! floor of 10 windows, so a new client may first send about 10 s of its quota at once; the
//! steady rate is taken over the second half of the run, after that allowance is spent.

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

/// What the quota workload reports next to the usual throughput.
#[derive(Clone, Debug, Serialize)]
pub struct QuotaResult {
    /// The `producer_byte_rate` set, MB/s (10^6 bytes).
    pub quota_mb_s: f64,
    /// Acknowledged payload MB/s over the second half of the produce phase.
    pub steady_mb_s: f64,
    /// `steady_mb_s / quota_mb_s` (1.0 = exactly the quota; the record framing is counted
    /// by the broker but not here, so slightly below 1 is expected).
    pub steady_vs_quota: f64,
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

/// The acknowledged-bytes rate over the second half of `timeline` (`(seconds since the
/// produce start, acknowledged bytes)`, in time order), in MB/s.
pub fn steady_rate_mb_s(timeline: &[(f64, u64)]) -> Option<f64> {
    let (end_s, end_bytes) = *timeline.last()?;
    let half_s = end_s / 2.0;
    let (mid_s, mid_bytes) = *timeline.iter().find(|(t, _)| *t >= half_s)?;
    (end_s > mid_s).then(|| end_bytes.saturating_sub(mid_bytes) as f64 / 1e6 / (end_s - mid_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_rate_ignores_the_first_half() {
        // A 10 MB burst first, then 1 MB/s.
        let timeline: Vec<(f64, u64)> = (0..=20)
            .map(|s| (f64::from(s), 10_000_000 + u64::from(s as u32) * 1_000_000))
            .collect();
        let rate = steady_rate_mb_s(&timeline).expect("rate");
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        assert_eq!(steady_rate_mb_s(&[]), None);
        assert_eq!(steady_rate_mb_s(&[(0.0, 5)]), None);
    }
}
