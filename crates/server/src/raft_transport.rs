//! The network under the metadata quorum: Raft messages between controller nodes.
//!
//! Raft messages are one-way (a vote request and its answer are two messages), so the link is a
//! stream of frames with no responses: each node keeps one outgoing connection per peer voter
//! and accepts the peers' connections on its controller listener. A message that cannot be
//! delivered is dropped, which Raft tolerates (it retransmits); the sender learns it through
//! [`SendOutcome::Dropped`] and reports the peer unreachable to the Raft library.
//!
//! Frame (after Kafka's 4-byte size prefix, so the controller listener can share Kafka's frame
//! reader and tell the two apart by the first field):
//!
//! ```text
//! api_key   i16   FJORD_RAFT_API_KEY (10000: outside Kafka's range, only on the controller listener)
//! version   i16   0
//! from      i32   sender's node id
//! cluster   i16 length + UTF-8   sender's cluster id ("" while the cluster is not formed yet)
//! message   rest  the encoded Raft message
//! ```
//!
//! Every frame names its cluster: a node whose cluster id is formed drops frames of another
//! cluster and the caller logs INCONSISTENT_CLUSTER_ID, as Kafka's `KafkaRaftClient` refuses
//! requests with a foreign cluster id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rustls::ClientConfig;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::controller_security::dial;
use crate::node_client::PeerEndpoint;

/// The Fjord-private API key of a Raft message frame.
pub const FJORD_RAFT_API_KEY: i16 = 10_000;
const FRAME_VERSION: i16 = 0;
/// Largest Raft message frame: a metadata entry is at most a few MiB; snapshots travel in
/// chunks below this.
pub const RAFT_FRAME_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4_096;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1_000);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One decoded Raft frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftFrame {
    pub from: i32,
    pub cluster_id: String,
    pub message: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RaftFrameError {
    #[error("frame shorter than its header")]
    Truncated,
    #[error("not a Raft frame (api key {0})")]
    NotRaft(i16),
    #[error("unsupported Raft frame version {0}")]
    UnsupportedVersion(i16),
    #[error("cluster id is not UTF-8")]
    BadClusterId,
}

/// Encodes one frame, size prefix included.
pub fn encode_raft_frame(from: i32, cluster_id: &str, message: &[u8]) -> Bytes {
    let cluster = cluster_id.as_bytes();
    let cluster_len = cluster.len().min(i16::MAX as usize);
    let body_len = 2 + 2 + 4 + 2 + cluster_len + message.len();
    let mut frame = BytesMut::with_capacity(4 + body_len);
    frame.put_u32(body_len as u32);
    frame.put_i16(FJORD_RAFT_API_KEY);
    frame.put_i16(FRAME_VERSION);
    frame.put_i32(from);
    frame.put_i16(cluster_len as i16);
    frame.put_slice(&cluster[..cluster_len]);
    frame.put_slice(message);
    frame.freeze()
}

/// Decodes one frame body (without the size prefix). Never panics on any input.
pub fn decode_raft_frame(mut body: Bytes) -> Result<RaftFrame, RaftFrameError> {
    if body.len() < 10 {
        return Err(RaftFrameError::Truncated);
    }
    let api_key = body.get_i16();
    if api_key != FJORD_RAFT_API_KEY {
        return Err(RaftFrameError::NotRaft(api_key));
    }
    let version = body.get_i16();
    if version != FRAME_VERSION {
        return Err(RaftFrameError::UnsupportedVersion(version));
    }
    let from = body.get_i32();
    let cluster_len = body.get_i16();
    let cluster_len = usize::try_from(cluster_len).map_err(|_| RaftFrameError::Truncated)?;
    if body.len() < cluster_len {
        return Err(RaftFrameError::Truncated);
    }
    let cluster = body.split_to(cluster_len);
    let cluster_id = std::str::from_utf8(&cluster)
        .map_err(|_| RaftFrameError::BadClusterId)?
        .to_string();
    Ok(RaftFrame {
        from,
        cluster_id,
        message: body,
    })
}

/// What happened to a message handed to [`RaftPeers::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Queued,
    /// The peer's queue is full or the peer is unknown: report it unreachable to Raft.
    Dropped,
}

/// Outgoing links to every peer voter: a queue and a connection task per peer.
pub struct RaftPeers {
    queues: HashMap<i32, mpsc::Sender<Bytes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RaftPeers {
    /// Starts a link task per peer's controller listener (this node excluded by the caller),
    /// over TLS with `tls` (the peer's server name checked as the config says). Frames are
    /// stamped with `from` and the cluster id current at send time.
    pub fn start(peers: Vec<PeerEndpoint>, tls: Option<Arc<ClientConfig>>) -> Self {
        let mut queues = HashMap::new();
        let mut tasks = Vec::new();
        for peer in peers {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
            queues.insert(peer.node_id, tx);
            tasks.push(tokio::spawn(run_peer_link(peer, tls.clone(), rx)));
        }
        Self { queues, tasks }
    }

    /// Queues an encoded frame (see [`encode_raft_frame`]) for `to`. Never waits.
    pub fn send(&self, to: i32, frame: Bytes) -> SendOutcome {
        match self.queues.get(&to).map(|queue| queue.try_send(frame)) {
            Some(Ok(())) => SendOutcome::Queued,
            _ => SendOutcome::Dropped,
        }
    }
}

impl Drop for RaftPeers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps a connection to one peer and writes its queued frames, reconnecting with backoff.
/// Frames queued while the peer is unreachable are dropped rather than delivered late: a stale
/// vote or append is useless and Raft resends what matters.
async fn run_peer_link(
    peer: PeerEndpoint,
    tls: Option<Arc<ClientConfig>>,
    mut queue: mpsc::Receiver<Bytes>,
) {
    let PeerEndpoint {
        node_id,
        address,
        server_name,
    } = peer;
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        let connected = dial(&address, &server_name, tls.as_ref(), CONNECT_TIMEOUT).await;
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(reason) => {
                if !logged_down {
                    info!(peer = node_id, %address, %reason, "controller peer unreachable; retrying");
                    logged_down = true;
                }
                // Drain what queued meanwhile: it is stale by the time the peer is back.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        if logged_down {
            info!(peer = node_id, %address, "controller peer reachable again");
        }
        logged_down = false;
        backoff = RECONNECT_BACKOFF_MIN;
        loop {
            let Some(frame) = queue.recv().await else {
                return; // RaftPeers dropped
            };
            // TLS holds the last record until flushed; a no-op for plain TCP.
            let written = match stream.write_all(&frame).await {
                Ok(()) => stream.flush().await,
                Err(err) => Err(err),
            };
            if let Err(err) = written {
                debug!(peer = node_id, error = %err, "controller peer link broke");
                break;
            }
        }
    }
}

/// Takes one Raft frame body from a controller-listener connection: decodes it, drops it if it
/// comes from another formed cluster (`cluster_id` is this node's, "" while unformed), and
/// queues it for the quorum (a full queue drops it: Raft resends). `false` means the
/// connection must close.
pub fn accept_raft_frame(
    body: Bytes,
    cluster_id: &parking_lot::RwLock<String>,
    inbound: &mpsc::Sender<RaftFrame>,
    peer: Option<std::net::SocketAddr>,
) -> bool {
    let frame = match decode_raft_frame(body) {
        Ok(frame) => frame,
        Err(err) => {
            warn!(?peer, error = %err, "undecodable Raft frame; closing");
            return false;
        }
    };
    let ours = cluster_id.read().clone();
    if !ours.is_empty() && !frame.cluster_id.is_empty() && frame.cluster_id != ours {
        warn!(?peer, from = frame.from, theirs = %frame.cluster_id, %ours,
            "INCONSISTENT_CLUSTER_ID: a node of another cluster sent a Raft message; closing");
        return false;
    }
    !(inbound.try_send(frame).is_err() && inbound.is_closed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::frame::decode_frame;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// A connection carrying only Raft frames (the controller listener's Raft half).
    async fn serve_raft_connection(
        mut stream: TcpStream,
        cluster_id: Arc<parking_lot::RwLock<String>>,
        inbound: mpsc::Sender<RaftFrame>,
    ) {
        let peer = stream.peer_addr().ok();
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        loop {
            let body = match decode_frame(&mut buffer, RAFT_FRAME_SIZE_BYTES_MAX) {
                Ok(Some(body)) => body,
                Ok(None) => match stream.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                Err(_) => return,
            };
            if !accept_raft_frame(body, &cluster_id, &inbound, peer) {
                return;
            }
        }
    }
    use proptest::prelude::*;
    use tokio::net::TcpListener;

    #[test]
    fn frames_round_trip() {
        let frame = encode_raft_frame(3, "AAAAAAAAAAAAAAAAAAAAAA", b"payload");
        let size = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(size, frame.len() - 4);
        let decoded = decode_raft_frame(frame.slice(4..)).unwrap();
        assert_eq!(
            decoded,
            RaftFrame {
                from: 3,
                cluster_id: "AAAAAAAAAAAAAAAAAAAAAA".to_string(),
                message: Bytes::from_static(b"payload"),
            }
        );
    }

    #[test]
    fn kafka_requests_are_not_raft_frames() {
        // A Kafka ApiVersions request header: api key 18.
        let body = Bytes::from_static(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(decode_raft_frame(body), Err(RaftFrameError::NotRaft(18)));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_raft_frame(Bytes::from(bytes));
        }

        #[test]
        fn any_frame_round_trips(from in any::<i32>(), cluster in "[A-Za-z0-9_-]{0,30}",
                                 message in proptest::collection::vec(any::<u8>(), 0..256)) {
            let frame = encode_raft_frame(from, &cluster, &message);
            let decoded = decode_raft_frame(frame.slice(4..)).unwrap();
            prop_assert_eq!(decoded.from, from);
            prop_assert_eq!(decoded.cluster_id, cluster);
            prop_assert_eq!(&decoded.message[..], &message[..]);
        }
    }

    fn peer(node_id: i32, address: &str) -> PeerEndpoint {
        PeerEndpoint {
            node_id,
            address: address.to_string(),
            server_name: "127.0.0.1".to_string(),
        }
    }

    async fn listener_forwarding(
        cluster_id: &str,
    ) -> (
        String,
        mpsc::Receiver<RaftFrame>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel(16);
        let ours = Arc::new(parking_lot::RwLock::new(cluster_id.to_string()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_raft_connection(stream, ours.clone(), tx.clone()));
            }
        });
        (address, rx, task)
    }

    #[tokio::test]
    async fn peers_deliver_in_order_and_drop_foreign_clusters() {
        let (address, mut inbound, task) = listener_forwarding("cluster-a").await;
        let peers = RaftPeers::start(vec![peer(2, &address)], None);
        for i in 0..5u8 {
            assert_eq!(
                peers.send(2, encode_raft_frame(1, "cluster-a", &[i])),
                SendOutcome::Queued
            );
        }
        for i in 0..5u8 {
            let frame = inbound.recv().await.unwrap();
            assert_eq!((frame.from, &frame.message[..]), (1, &[i][..]));
        }
        assert_eq!(
            peers.send(9, encode_raft_frame(1, "cluster-a", b"x")),
            SendOutcome::Dropped
        );
        // A frame of another cluster closes the link; later frames of ours arrive after the
        // reconnect, the foreign one never does.
        peers.send(2, encode_raft_frame(1, "cluster-b", b"foreign"));
        let mut delivered = None;
        for _ in 0..100 {
            peers.send(2, encode_raft_frame(1, "cluster-a", b"ours"));
            if let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(100), inbound.recv()).await
            {
                delivered = Some(frame);
                break;
            }
        }
        assert_eq!(delivered.unwrap().message, Bytes::from_static(b"ours"));
        task.abort();
    }

    #[tokio::test]
    async fn an_unreachable_peer_drops_messages_until_it_is_back() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let peers = RaftPeers::start(vec![peer(2, &address)], None);
        peers.send(2, encode_raft_frame(1, "", b"lost"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The peer comes up on its address; new messages flow.
        let listener = TcpListener::bind(&address).await.unwrap();
        let (tx, mut inbound) = mpsc::channel(16);
        let ours = Arc::new(parking_lot::RwLock::new(String::new()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_raft_connection(stream, ours.clone(), tx.clone()));
            }
        });
        let mut got = None;
        for _ in 0..100 {
            peers.send(2, encode_raft_frame(1, "", b"fresh"));
            if let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(100), inbound.recv()).await
            {
                got = Some(frame);
                break;
            }
        }
        assert_eq!(got.unwrap().message, Bytes::from_static(b"fresh"));
        task.abort();
    }
}
