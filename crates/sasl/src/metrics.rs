//! Counters of SASL authentications, kept here so the authenticator can count without
//! depending on the broker; the broker renders them in its Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Mechanism;

/// SASL authentications (and re-authentications) per mechanism, successful and failed.
#[derive(Debug, Default)]
pub struct SaslMetrics {
    /// Indexed by `Mechanism::index`, then 0 = success, 1 = failure.
    counts: [[AtomicU64; 2]; 4],
}

impl SaslMetrics {
    pub fn record(&self, mechanism: Mechanism, success: bool) {
        self.counts[mechanism.index()][usize::from(!success)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, mechanism: Mechanism, success: bool) -> u64 {
        self.counts[mechanism.index()][usize::from(!success)].load(Ordering::Relaxed)
    }
}
