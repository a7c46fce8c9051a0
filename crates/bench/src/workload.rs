//! Workload definitions and the built-in presets (modelled on the OpenMessaging Benchmark
//! Kafka workloads).

use serde::Serialize;

/// Default measured duration of a preset, in seconds.
pub const FULL_DURATION_S: f64 = 30.0;
/// Measured duration of a preset with `--quick`, in seconds.
pub const QUICK_DURATION_S: f64 = 8.0;
/// Produce phase of the `produce-quota` preset, quick or not: four 11 s quota windows.
pub const QUOTA_DURATION_S: f64 = 44.0;
/// Default backlog of the `catchup` preset: 2 GiB.
pub const FULL_BACKLOG_BYTES: u64 = 2 << 30;
/// Backlog of the `catchup` preset with `--quick`: 256 MiB.
pub const QUICK_BACKLOG_BYTES: u64 = 256 << 20;

/// Everything that describes one load run.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// Preset name, or `custom`.
    pub name: String,
    /// Partitions of the topic the run creates.
    pub partitions: i32,
    /// Payload size in bytes (at least 8: the send timestamp).
    pub message_size: usize,
    /// Producer `acks`: `0`, `1` or `all`.
    pub acks: String,
    /// Producer threads (one librdkafka producer each).
    pub producers: usize,
    /// Consumer threads (one librdkafka consumer each, partitions assigned round-robin).
    pub consumers: usize,
    /// Total target produce rate in MB/s (10^6 bytes); `None` = as fast as possible.
    pub rate_mb_s: Option<f64>,
    /// Producer `compression.type`.
    pub compression: String,
    /// Producer `linger.ms`: 5 for throughput runs (fuller batches), 1 for the latency run,
    /// as in the OpenMessaging Benchmark's Kafka driver configs.
    pub linger_ms: u32,
    /// Produce phase length in seconds (ignored for catch-up runs).
    pub duration_s: f64,
    /// Stop after this many messages in total (whichever of duration/messages comes first).
    pub messages: Option<u64>,
    /// Catch-up mode: pre-fill this many payload bytes with no consumer running, then
    /// consume everything from the beginning as fast as possible.
    pub backlog_bytes: Option<u64>,
    /// Replicas per partition of the topic the run creates (3 needs a 3-node cluster).
    pub replication_factor: i32,
    /// The topic's `min.insync.replicas`; `None` leaves the broker's default.
    pub min_insync_replicas: Option<i32>,
    /// A `producer_byte_rate` client quota (MB/s) set for the producers' client id with
    /// AlterClientQuotas before the run and removed after it; `None`: no quota.
    pub producer_quota_mb_s: Option<f64>,
    /// The clients' `security.protocol`: `PLAINTEXT`, or `SSL` / `SASL_SSL` for the presets
    /// that measure encryption (and SCRAM authentication with the authorizer on). The CA and
    /// credentials come from `--client-config` (scripts/bench sets them).
    pub security_protocol: String,
}

/// Names of the presets, in suite order.
pub const PRESETS: &[&str] = &[
    "1p-100b",
    "16p-1kb",
    "16p-1kb-latency",
    "16p-1kb-lz4",
    "16p-1kb-zstd",
    "1000p",
    "catchup",
    "replicated-rf3-acks-all",
    "produce-quota",
    "16p-1kb-ssl",
    "16p-1kb-sasl-ssl",
];

/// Presets that need a cluster of at least this many brokers (the replication factor).
pub fn brokers_needed(name: &str) -> i32 {
    preset(name, true).map_or(1, |w| w.replication_factor)
}

/// One-line description of each preset (for `fjord-bench list` and `--help`).
pub fn describe(name: &str) -> &'static str {
    match name {
        "1p-100b" => "1 partition, 100 B, acks=1, 1 producer, 1 consumer, max rate",
        "16p-1kb" => "16 partitions, 1 KiB, acks=all, 2 producers, 2 consumers, max rate",
        "16p-1kb-latency" => "16p-1kb at a fixed 50 MB/s (latency at moderate load)",
        "16p-1kb-lz4" => "16p-1kb with compression.type=lz4",
        "16p-1kb-zstd" => "16p-1kb with compression.type=zstd",
        "1000p" => "1,000 partitions, 100 B, acks=1, 1 producer, 1 consumer, max rate",
        "catchup" => {
            "16 partitions, 1 KiB: pre-fill a backlog (2 GiB, --quick 256 MiB), then consume it from the start"
        }
        "replicated-rf3-acks-all" => {
            "16p-1kb on 3 brokers: replication factor 3, acks=all, min.insync.replicas=2"
        }
        "produce-quota" => {
            "1 partition, 1 KiB, acks=1, 1 producer at max rate against a 10 MB/s producer_byte_rate quota (AlterClientQuotas), 44 s: achieved MB/s vs the quota"
        }
        "16p-1kb-ssl" => "16p-1kb over TLS (an SSL listener; the CA via --client-config)",
        "16p-1kb-sasl-ssl" => {
            "16p-1kb over SASL_SSL: TLS, SCRAM-SHA-512 logins, authorizer on (`fjord serve --secure`; CA and credentials via --client-config)"
        }
        _ => "",
    }
}

/// The preset called `name`, at full or quick length; `None` if there is no such preset.
pub fn preset(name: &str, quick: bool) -> Option<Workload> {
    let duration_s = if quick {
        QUICK_DURATION_S
    } else {
        FULL_DURATION_S
    };
    let base = |partitions: i32, message_size: usize, acks: &str, p: usize, c: usize| Workload {
        name: name.to_string(),
        partitions,
        message_size,
        acks: acks.to_string(),
        producers: p,
        consumers: c,
        rate_mb_s: None,
        compression: "none".to_string(),
        linger_ms: 5,
        duration_s,
        messages: None,
        backlog_bytes: None,
        replication_factor: 1,
        min_insync_replicas: None,
        producer_quota_mb_s: None,
        security_protocol: "PLAINTEXT".to_string(),
    };
    let w = match name {
        "1p-100b" => base(1, 100, "1", 1, 1),
        "16p-1kb" => base(16, 1024, "all", 2, 2),
        "16p-1kb-latency" => Workload {
            rate_mb_s: Some(50.0),
            linger_ms: 1,
            ..base(16, 1024, "all", 2, 2)
        },
        "16p-1kb-lz4" => Workload {
            compression: "lz4".to_string(),
            ..base(16, 1024, "all", 2, 2)
        },
        "16p-1kb-zstd" => Workload {
            compression: "zstd".to_string(),
            ..base(16, 1024, "all", 2, 2)
        },
        "1000p" => base(1000, 100, "1", 1, 1),
        "catchup" => Workload {
            backlog_bytes: Some(if quick {
                QUICK_BACKLOG_BYTES
            } else {
                FULL_BACKLOG_BYTES
            }),
            ..base(16, 1024, "1", 2, 2)
        },
        // Kafka's usual durable setting: every write on 3 brokers, acknowledged once the
        // in-sync replicas (at least 2) have it.
        "replicated-rf3-acks-all" => Workload {
            replication_factor: 3,
            min_insync_replicas: Some(2),
            ..base(16, 1024, "all", 2, 2)
        },
        // Kafka's client quota: the broker holds a greedy producer to producer_byte_rate.
        // Four periods of the quota's 11 s window whatever the mode: shorter runs measure
        // the initial burst allowance more than the quota.
        "produce-quota" => Workload {
            producer_quota_mb_s: Some(10.0),
            duration_s: QUOTA_DURATION_S,
            ..base(1, 1024, "1", 1, 1)
        },
        // What encryption (and SASL) costs against the same load as 16p-1kb.
        "16p-1kb-ssl" => Workload {
            security_protocol: "SSL".to_string(),
            ..base(16, 1024, "all", 2, 2)
        },
        "16p-1kb-sasl-ssl" => Workload {
            security_protocol: "SASL_SSL".to_string(),
            ..base(16, 1024, "all", 2, 2)
        },
        _ => return None,
    };
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_resolves() {
        for name in PRESETS {
            let w = preset(name, true).expect("preset");
            assert_eq!(w.name, *name);
            assert!(w.message_size >= 8);
            assert!(!describe(name).is_empty());
        }
        assert!(preset("nope", false).is_none());
    }

    #[test]
    fn the_replicated_preset_is_16p_1kb_on_three_replicas() {
        let r = preset("replicated-rf3-acks-all", false).expect("preset");
        let plain = preset("16p-1kb", false).expect("preset");
        assert_eq!(
            (r.partitions, r.message_size, r.acks.as_str()),
            (16, 1024, "all")
        );
        assert_eq!(
            (r.producers, r.consumers),
            (plain.producers, plain.consumers)
        );
        assert_eq!((r.replication_factor, r.min_insync_replicas), (3, Some(2)));
        assert_eq!(plain.replication_factor, 1);
        assert_eq!(brokers_needed("replicated-rf3-acks-all"), 3);
        assert_eq!(brokers_needed("16p-1kb"), 1);
    }

    #[test]
    fn quick_is_shorter() {
        let q = preset("catchup", true).expect("preset");
        let f = preset("catchup", false).expect("preset");
        assert!(q.backlog_bytes < f.backlog_bytes);
        assert!(q.duration_s < f.duration_s);
    }
}
