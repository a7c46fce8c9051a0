//! The Kafka listener: accepts connections up to `max.connections`, runs each one as a task,
//! and on shutdown stops accepting, lets every connection finish the requests it has read,
//! then closes the broker's logs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fjord_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::connection::{self, ConnectionLimits};
use crate::http::{self, HealthState};

/// Starts the broker in an order that makes readiness observable: the metrics and health
/// listener first (live, not ready), then recovery (`Broker::open`), then the Kafka listener,
/// then ready. Runs until `shutdown_requested` resolves and shutdown completes.
pub async fn serve(
    config: BrokerConfig,
    shutdown_requested: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // The multi-node settings are parsed and checked; their runtime lands with the rest of
    // issue 8. Until then say so instead of starting a single node that ignores them.
    if config.controller_quorum_voters.len() > 1
        || !config.process_roles.broker
        || !config.process_roles.controller
    {
        anyhow::bail!("multi-node clusters (controller.quorum.voters with several voters, process.roles other than broker,controller) are not available yet");
    }
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (metrics.listen)",
                config.metrics_listen
            )
        })?;
    let health = Arc::new(HealthState::default());
    let http = tokio::spawn(http::run(metrics_listener, health.clone()));
    info!(metrics_listen = %config.metrics_listen, "metrics and health listener started");
    let result = open_and_run(config, health, shutdown_requested).await;
    http.abort();
    result
}

async fn open_and_run(
    config: BrokerConfig,
    health: Arc<HealthState>,
    shutdown_requested: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Recovery reads every unflushed log: blocking work, off the runtime's workers so the
    // health listener keeps answering meanwhile.
    let data_dir = config.data_dir.clone();
    let opened = {
        let config = config.clone();
        // Bridge until the server runs the metadata quorum itself: the in-process one-voter
        // harness (metadata log, controller, registration) with the broker on top.
        tokio::task::spawn_blocking(move || fjord_broker::testing::SingleNode::start(config)).await
    };
    let node = opened
        .context("recovery task failed")?
        .map_err(|err| anyhow::anyhow!(err))
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
    let broker = node.broker.clone();
    health.set_broker(broker.clone());
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(
        listen = %config.listen,
        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
        data_dir = %config.data_dir.display(),
        node_id = config.node_id,
        cluster_id = %broker.cluster_id(),
        "fjord broker ready"
    );
    health.set_ready(true);
    let outcome = run(listener, broker, shutdown_requested, &health).await;
    drop(node);
    outcome
}

pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown_requested: impl std::future::Future<Output = ()>,
    health: &HealthState,
) -> anyhow::Result<()> {
    let config = broker.config().clone();
    // Semaphore permits are u32-sized per acquire; frames are capped far below that.
    let request_memory_bytes_max = config
        .queued_max_request_bytes
        .max(config.socket_request_max_bytes)
        .min(u32::MAX as usize);
    let limits = ConnectionLimits {
        frame_size_bytes_max: config.socket_request_max_bytes,
        queued_requests_max: config.queued_max_requests,
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
        request_memory: Arc::new(Semaphore::new(request_memory_bytes_max)),
        request_memory_bytes_max,
    };
    let open_connections = Arc::new(AtomicUsize::new(0));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let flusher = tokio::spawn(run_log_flusher(broker.clone(), shutdown_rx.clone()));
    let cleaner_stop = Arc::new(AtomicBool::new(false));
    let cleaner = start_log_cleaner(broker.clone(), cleaner_stop.clone())?;
    // Group sessions, rebalance deadlines and offset expiration.
    let group_timers = {
        let broker = broker.clone();
        let shutdown = broker.shutdown_signal();
        tokio::spawn(async move { broker.group_coordinator().run_timers(shutdown).await })
    };
    let transaction_timers = {
        let broker = broker.clone();
        let shutdown = broker.shutdown_signal();
        tokio::spawn(async move { broker.transaction_coordinator().run_timers(shutdown).await })
    };
    tokio::pin!(shutdown_requested);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // max.connections is a dynamic broker config: read at every accept. Lowering
                // it closes no open connection (as in Kafka); new ones wait until below it.
                let max_connections = broker.config().max_connections;
                let Some(slot) = ConnectionSlot::take(&open_connections, max_connections) else {
                    warn!(%peer, max_connections, "connection limit reached, closing new connection");
                    broker.metrics().connections_rejected.inc();
                    drop(stream);
                    continue;
                };
                broker.metrics().connections_accepted.inc();
                broker.metrics().connections.inc();
                let broker = broker.clone();
                let limits = limits.clone();
                let shutdown = shutdown_rx.clone();
                connections.spawn(async move {
                    connection::serve(stream, peer, broker.clone(), limits, shutdown).await;
                    broker.metrics().connections.dec();
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown_requested => break,
        }
    }
    // Load balancers and orchestrators stop sending traffic before connections are drained.
    health.set_ready(false);
    info!(
        connections = connections.len(),
        "shutting down: no longer accepting connections"
    );
    drop(listener);
    shutdown_tx.send_replace(true);
    broker.begin_shutdown();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(config.shutdown_timeout_ms), drain)
        .await
        .is_err()
    {
        warn!("connections did not finish within shutdown.timeout.ms; closing them");
        connections.shutdown().await;
    }
    flusher.abort();
    group_timers.abort();
    transaction_timers.abort();
    cleaner_stop.store(true, Ordering::Relaxed);
    if let Some(cleaner) = cleaner {
        // A pass in progress stops at its next read; its output is left as strays.
        let _ = tokio::task::spawn_blocking(move || cleaner.join()).await;
    }
    broker.close()?;
    info!("logs flushed and closed; clean shutdown");
    Ok(())
}

/// How often a sleeping log cleaner checks for shutdown.
const LOG_CLEANER_STOP_CHECK: Duration = Duration::from_millis(50);

/// Starts the log cleaner thread (Kafka's `LogCleaner`, one thread) unless
/// `log.cleaner.enable=false`. It compacts the dirtiest due log, and sleeps
/// `log.cleaner.backoff.ms` when none is due. A thread, not a task: a pass is long blocking I/O.
fn start_log_cleaner(
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !broker.config().log_cleaner_enable {
        info!("log cleaner disabled (log.cleaner.enable=false)");
        return Ok(None);
    }
    let handle = std::thread::Builder::new()
        .name("log-cleaner".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Read per pass: the cleaner settings are dynamic broker configs.
                let config = broker.config();
                let cleaner = fjord_broker::log_cleaner::cleaner_config(&config);
                let backoff = Duration::from_millis(config.log_cleaner_backoff_ms);
                let now_ms = fjord_broker::time::now_ms();
                if broker
                    .replica_manager()
                    .clean_dirtiest_log(&cleaner, now_ms, &stop)
                    .is_some()
                {
                    continue;
                }
                let idle_until = std::time::Instant::now() + backoff;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < idle_until {
                    std::thread::sleep(LOG_CLEANER_STOP_CHECK.min(backoff));
                }
            }
        })?;
    Ok(Some(handle))
}

/// How often the log flusher looks for logs whose `flush.ms` has passed.
const LOG_FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Kafka's log flusher: flushes idle partitions whose unflushed data is older than `flush.ms`
/// (appends check the policy themselves; this covers partitions that stopped receiving data)
/// and fsyncs sealed segments. Every `log.retention.check.interval.ms` it also applies
/// retention (Kafka's `LogManager.cleanupLogs`), and every
/// `producer.id.expiration.check.interval.ms` it forgets expired idempotent producers.
async fn run_log_flusher(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(LOG_FLUSH_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_interval_ms = broker.config().log_retention_check_interval_ms;
    let mut next_retention_ms = fjord_broker::time::now_ms().saturating_add(retention_interval_ms);
    let producer_check_interval_ms = broker.config().producer_id_expiration_check_interval_ms;
    let mut next_producer_check_ms =
        fjord_broker::time::now_ms().saturating_add(producer_check_interval_ms);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_ms = fjord_broker::time::now_ms();
        let retention_due = now_ms >= next_retention_ms;
        if retention_due {
            next_retention_ms = now_ms.saturating_add(retention_interval_ms);
        }
        let producer_check_due = now_ms >= next_producer_check_ms;
        if producer_check_due {
            next_producer_check_ms = now_ms.saturating_add(producer_check_interval_ms);
        }
        let broker = broker.clone();
        // fsync and file deletion block: keep them off the runtime's worker threads.
        let done = tokio::task::spawn_blocking(move || {
            let manager = broker.replica_manager();
            let flushed = manager.flush_due_logs(now_ms);
            let deleted = if retention_due {
                manager.enforce_retention(now_ms)
            } else {
                0
            };
            if producer_check_due {
                let expired = manager.remove_expired_producers(now_ms);
                if expired > 0 {
                    tracing::info!(producers = expired, "expired idle producer ids");
                }
            }
            (flushed, deleted)
        })
        .await;
        if let Ok((flushed, deleted)) = done {
            if flushed > 0 {
                tracing::debug!(logs = flushed, "scheduled flush");
            }
            if deleted > 0 {
                tracing::info!(segments = deleted, "retention deleted log segments");
            }
        }
    }
}

/// One of the `max.connections` connections, given back when dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A slot if fewer than `max` connections are open. Only the accept loop takes slots, so
    /// the check and the increment cannot race with another taker.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if open.load(Ordering::Acquire) >= max {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Self(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
