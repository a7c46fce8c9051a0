//! [`TcpNodeChannel`] against a real broker (in-process, real sockets, real log files) and against
//! raw sockets that misbehave in the ways a remote node can: refuse, stay silent, send a frame
//! that is too large, go away.

use std::sync::Arc;

use fjord_broker::BrokerConfig;
use fjord_protocol::batch_builder::encode_values;
use fjord_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use fjord_protocol::kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::http::HealthState;

struct RunningBroker {
    address: String,
    _node: Arc<fjord_broker::testing::SingleNode>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl RunningBroker {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let node =
            tokio::task::spawn_blocking(move || fjord_broker::testing::SingleNode::start(config))
                .await
                .unwrap()
                .unwrap();
        let node = Arc::new(node);
        let broker = node.broker.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let health = HealthState::default();
            crate::server::run(
                vec![crate::server::BoundListener::plaintext(listener)],
                broker,
                async {
                    let _ = stopped.await;
                },
                &health,
            )
            .await
        });
        Self {
            address,
            _node: node,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

fn channel_to(address: &str, limits: NodeChannelLimits) -> TcpNodeChannel {
    let channel = TcpNodeChannel::new("broker-2-test", limits);
    channel.set_endpoints(vec![(1, address.to_string())]);
    channel
}

fn request(api_key: ApiKey, api_version: i16, body: RequestKind) -> NodeRequest {
    NodeRequest {
        api_key,
        api_version,
        body,
        timeout_ms: 10_000,
    }
}

fn metadata_request() -> NodeRequest {
    request(
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default()),
    )
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[tokio::test]
async fn produce_then_fetch_through_the_channel() {
    let broker = RunningBroker::start().await;
    let channel = channel_to(&broker.address, NodeChannelLimits::default());

    let versions = channel
        .send(
            1,
            request(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(
                    ApiVersionsRequest::default()
                        .with_client_software_name(StrBytes::from_static_str("fjord"))
                        .with_client_software_version(StrBytes::from_static_str("0.1.0")),
                ),
            ),
        )
        .await
        .unwrap();
    let ResponseKind::ApiVersions(versions) = versions else {
        panic!("wrong response kind")
    };
    assert_eq!(versions.error_code, 0);
    assert!(versions
        .api_keys
        .iter()
        .any(|key| key.api_key == ApiKey::Fetch as i16));

    let created = channel
        .send(
            1,
            request(
                ApiKey::CreateTopics,
                7,
                RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                    CreatableTopic::default()
                        .with_name(topic_name("replicated"))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ])),
            ),
        )
        .await
        .unwrap();
    let ResponseKind::CreateTopics(created) = created else {
        panic!("wrong response kind")
    };
    assert_eq!(created.topics[0].error_code, 0);

    let batch = encode_values(1_700_000_000_000, 3, b"value");
    let produced = channel
        .send(
            1,
            request(
                ApiKey::Produce,
                9,
                RequestKind::Produce(
                    ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(5_000)
                        .with_topic_data(vec![TopicProduceData::default()
                            .with_name(topic_name("replicated"))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.into()))])]),
                ),
            ),
        )
        .await
        .unwrap();
    let ResponseKind::Produce(produced) = produced else {
        panic!("wrong response kind")
    };
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.base_offset, 0);

    let fetched = channel
        .send(
            1,
            request(
                ApiKey::Fetch,
                12,
                RequestKind::Fetch(
                    FetchRequest::default()
                        .with_max_bytes(1 << 20)
                        .with_max_wait_ms(0)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(topic_name("replicated"))
                            .with_partitions(vec![
                                FetchPartition::default().with_partition_max_bytes(1 << 20)
                            ])]),
                ),
            ),
        )
        .await
        .unwrap();
    let ResponseKind::Fetch(fetched) = fetched else {
        panic!("wrong response kind")
    };
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 3);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));

    channel.shutdown();
    broker.stop().await;
}

#[tokio::test]
async fn pipelined_requests_all_get_their_own_answer() {
    let broker = RunningBroker::start().await;
    let channel = Arc::new(channel_to(&broker.address, NodeChannelLimits::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let channel = channel.clone();
        tasks.spawn(async move { channel.send(1, metadata_request()).await });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap().unwrap() {
            ResponseKind::Metadata(_) => answered += 1,
            other => panic!("a Metadata request got {other:?}"),
        }
    }
    assert_eq!(answered, 40);
    broker.stop().await;
}

#[tokio::test]
async fn unknown_node_and_refused_connection() {
    let channel = TcpNodeChannel::new("t", NodeChannelLimits::default());
    assert_eq!(
        channel.send(7, metadata_request()).await.unwrap_err(),
        ChannelError::UnknownNode { node_id: 7 }
    );
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    channel.set_endpoints(vec![(7, closed_port)]);
    let error = channel.send(7, metadata_request()).await.unwrap_err();
    assert!(
        matches!(error, ChannelError::Connect { node_id: 7, .. }),
        "{error:?}"
    );
    assert!(error.is_retriable());
}

/// Accepts connections and reads whatever arrives, never answering.
async fn silent_node() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            open.push(tokio::spawn(async move {
                let mut sink = vec![0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (address, task)
}

#[tokio::test]
async fn a_silent_node_times_out_and_the_next_request_reconnects() {
    let (silent, silent_task) = silent_node().await;
    let channel = channel_to(&silent, NodeChannelLimits::default());
    let mut slow = metadata_request();
    slow.timeout_ms = 200;
    let error = channel.send(1, slow).await.unwrap_err();
    assert_eq!(
        error,
        ChannelError::Timeout {
            node_id: 1,
            api_key: ApiKey::Metadata,
            timeout_ms: 200
        }
    );
    // The node now answers at another address (it restarted): the channel follows.
    let broker = RunningBroker::start().await;
    channel.set_endpoints(vec![(1, broker.address.clone())]);
    assert!(matches!(
        channel.send(1, metadata_request()).await.unwrap(),
        ResponseKind::Metadata(_)
    ));
    silent_task.abort();
    broker.stop().await;
}

#[tokio::test]
async fn in_flight_requests_are_bounded() {
    let (silent, silent_task) = silent_node().await;
    let limits = NodeChannelLimits {
        in_flight_max: 1,
        ..NodeChannelLimits::default()
    };
    let channel = Arc::new(channel_to(&silent, limits));
    let first = {
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut waiting = metadata_request();
            waiting.timeout_ms = 2_000;
            channel.send(1, waiting).await
        })
    };
    // Let the first request be written and hold the only slot (the test runtime runs one
    // task at a time, so the spawned request has not started yet).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = channel.send(1, metadata_request()).await.unwrap_err();
    assert_eq!(
        error,
        ChannelError::TooManyInFlight {
            node_id: 1,
            in_flight_max: 1
        }
    );
    first.abort();
    silent_task.abort();
}

#[tokio::test]
async fn an_oversized_response_closes_the_connection() {
    let broker = RunningBroker::start().await;
    let limits = NodeChannelLimits {
        response_size_bytes_max: 16,
        ..NodeChannelLimits::default()
    };
    let channel = channel_to(&broker.address, limits);
    let error = channel.send(1, metadata_request()).await.unwrap_err();
    match error {
        ChannelError::Disconnected { node_id: 1, reason } => {
            assert!(reason.contains("bad response frame"), "{reason}")
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_stopped_node_fails_requests_and_shutdown_is_final() {
    let broker = RunningBroker::start().await;
    let channel = channel_to(&broker.address, NodeChannelLimits::default());
    assert!(channel.send(1, metadata_request()).await.is_ok());
    broker.stop().await;
    let error = channel.send(1, metadata_request()).await.unwrap_err();
    assert!(
        matches!(
            error,
            ChannelError::Disconnected { .. } | ChannelError::Connect { .. }
        ),
        "{error:?}"
    );
    channel.shutdown();
    assert_eq!(
        channel.send(1, metadata_request()).await.unwrap_err(),
        ChannelError::ShuttingDown
    );
}

/// Fetches travel on their own connection: a request stuck on the other lane (a
/// WriteTxnMarkers waiting for the high watermark) never sits in front of the follower fetches
/// that would move that high watermark.
#[tokio::test]
async fn fetches_do_not_queue_behind_other_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let node = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(tokio::spawn(async move {
                let mut sink = vec![0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            }));
        }
    });
    let channel = Arc::new(channel_to(&address, NodeChannelLimits::default()));
    let stuck = {
        let channel = channel.clone();
        tokio::spawn(async move { channel.send(1, metadata_request()).await })
    };
    while accepted.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let mut fetch = request(
        ApiKey::Fetch,
        12,
        RequestKind::Fetch(FetchRequest::default()),
    );
    fetch.timeout_ms = 300;
    // The silent node never answers: the fetch times out on a connection of its own, while
    // the first request is still waiting on the other one.
    let error = channel.send(1, fetch).await.unwrap_err();
    assert!(
        matches!(
            error,
            ChannelError::Timeout {
                api_key: ApiKey::Fetch,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(!stuck.is_finished());
    stuck.abort();
    node.abort();
}
