//! FetchMetadata: how broker-only nodes (observers, design 3.3) read the metadata log.
//!
//! KRaft observers fetch `__cluster_metadata` from the leader with the Kafka Fetch API
//! (`KafkaRaftClient`'s observer path) and, when the log they need is gone, FetchSnapshot.
//! Fjord's voters run tikv `raft`, which has no observer role, so observers pull with two
//! Fjord-private requests served on the controller listener by **any** voter, never with
//! anything but committed entries:
//!
//! - `FetchMetadata` (API key 10001): committed entries from `from_index` on, up to a byte
//!   limit, plus the voter's committed index and its leader hint; or `SnapshotRequired` with
//!   the newest snapshot's id and size when `from_index` is compacted away. An empty answer
//!   may be held up to `max_wait_ms` by the server (long poll).
//! - `FetchMetadataSnapshot` (API key 10002): one chunk of that snapshot, from `position`, up
//!   to a byte limit; SNAPSHOT_NOT_FOUND once the voter replaced it (start over).
//!
//! Every request names the observer's cluster id ("" until it knows one); a voter of another
//! formed cluster answers INCONSISTENT_CLUSTER_ID and the observer stops, as Kafka's
//! `KafkaRaftClient` refuses a foreign cluster id.
//!
//! Frames (after Kafka's 4-byte size prefix; big-endian; strings are `i16` length + UTF-8):
//!
//! ```text
//! request   api_key i16, version i16 (0), correlation_id i32, node_id i32, cluster_id string,
//!   10001   from_index u64, max_bytes u32, max_wait_ms u32
//!   10002   snapshot_index u64, snapshot_term u64, position u64, max_bytes u32
//! response  correlation_id i32, api_key i16, error_code i16, leader_hint i32 (-1 unknown),
//!           cluster_id string,
//!   10001   committed_index u64, kind i8:
//!             0 entries: count u32, then per entry index u64, term u64, len u32, payload
//!             1 snapshot required: snapshot_index u64, snapshot_term u64, size_bytes u64
//!   10002   snapshot_index u64, snapshot_term u64, size_bytes u64, position u64,
//!           len u32, chunk
//! ```
//!
//! Pure: the codec and [`answer_fetch_metadata`] / [`answer_fetch_snapshot`] over a
//! [`MetadataQuorum`]; the server crate owns the sockets.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_raft::{CommittedRead, MetadataQuorum, RaftLogStore};
use fjord_storage::{MetadataLogEntry, METADATA_ENTRY_PAYLOAD_BYTES_MAX};

/// The Fjord-private API key of FetchMetadata (controller listener only).
pub const FETCH_METADATA_API_KEY: i16 = 10_001;
/// The Fjord-private API key of FetchMetadataSnapshot (controller listener only).
pub const FETCH_METADATA_SNAPSHOT_API_KEY: i16 = 10_002;
const VERSION: i16 = 0;
/// The server caps `max_bytes` of FetchMetadata at this (entries; one entry may exceed it).
pub const FETCH_METADATA_BYTES_MAX: u32 = 4 * 1024 * 1024;
/// The server caps `max_bytes` of a snapshot chunk at this.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u32 = 1024 * 1024;
/// The server holds an empty FetchMetadata answer at most this long.
pub const FETCH_METADATA_WAIT_MS_MAX: u32 = 1_000;
/// Largest response frame an observer accepts: the entry limit plus one largest entry.
pub const FETCH_METADATA_RESPONSE_BYTES_MAX: usize =
    FETCH_METADATA_BYTES_MAX as usize + METADATA_ENTRY_PAYLOAD_BYTES_MAX + 64 * 1024;
/// Largest request frame a voter accepts.
pub const FETCH_METADATA_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Kafka error codes FetchMetadata answers with.
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const INVALID_REQUEST: i16 = 42;
    pub const SNAPSHOT_NOT_FOUND: i16 = 98;
    pub const POSITION_OUT_OF_RANGE: i16 = 99;
    pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
}

/// A FetchMetadata or FetchMetadataSnapshot frame that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchCodecError {
    #[error("frame shorter than its fields")]
    Truncated,
    #[error("api key {0} is not FetchMetadata or FetchMetadataSnapshot")]
    UnknownApiKey(i16),
    #[error("unsupported version {0}")]
    UnsupportedVersion(i16),
    #[error("string is not UTF-8")]
    BadString,
    #[error("unknown answer kind {0}")]
    UnknownKind(i8),
    #[error("entry of {0} bytes exceeds the metadata entry limit")]
    EntryTooLarge(usize),
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// FetchMetadata: committed entries from `from_index` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchMetadataRequest {
    pub correlation_id: i32,
    /// The observer's node id (for the voter's logs).
    pub node_id: i32,
    /// The observer's cluster id, "" while it knows none.
    pub cluster_id: String,
    pub from_index: u64,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
}

/// FetchMetadataSnapshot: a chunk of snapshot (`snapshot_index`, `snapshot_term`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSnapshotRequest {
    pub correlation_id: i32,
    pub node_id: i32,
    pub cluster_id: String,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub position: u64,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObserverRequest {
    Fetch(FetchMetadataRequest),
    Snapshot(FetchSnapshotRequest),
}

/// What a FetchMetadata answer carries besides its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchMetadataBody {
    /// Committed entries (possibly none), consecutive from the asked index.
    Entries(Vec<MetadataLogEntry>),
    /// The asked index is compacted: fetch this snapshot first.
    SnapshotRequired {
        index: u64,
        term: u64,
        size_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchMetadataResponse {
    pub correlation_id: i32,
    pub error_code: i16,
    /// The voter this voter believes leads (-1 unknown): observers prefer it.
    pub leader_hint: i32,
    /// The answering voter's cluster id ("" before it formed).
    pub cluster_id: String,
    /// The voter's committed (applied) index.
    pub committed_index: u64,
    pub body: FetchMetadataBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSnapshotResponse {
    pub correlation_id: i32,
    pub error_code: i16,
    pub leader_hint: i32,
    pub cluster_id: String,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    /// Size of the whole snapshot's data.
    pub size_bytes: u64,
    /// Where `chunk` starts in it.
    pub position: u64,
    pub chunk: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObserverResponse {
    Fetch(FetchMetadataResponse),
    Snapshot(FetchSnapshotResponse),
}

impl ObserverResponse {
    pub fn correlation_id(&self) -> i32 {
        match self {
            Self::Fetch(r) => r.correlation_id,
            Self::Snapshot(r) => r.correlation_id,
        }
    }
}

fn put_string(out: &mut BytesMut, value: &str) {
    let bytes = value.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(&bytes[..len]);
}

fn need(buf: &Bytes, bytes: usize) -> Result<(), FetchCodecError> {
    if buf.remaining() < bytes {
        Err(FetchCodecError::Truncated)
    } else {
        Ok(())
    }
}

fn get_string(buf: &mut Bytes) -> Result<String, FetchCodecError> {
    need(buf, 2)?;
    let len = usize::try_from(buf.get_i16()).map_err(|_| FetchCodecError::Truncated)?;
    need(buf, len)?;
    let raw = buf.split_to(len);
    std::str::from_utf8(&raw)
        .map(str::to_string)
        .map_err(|_| FetchCodecError::BadString)
}

fn finish(buf: &Bytes) -> Result<(), FetchCodecError> {
    if buf.has_remaining() {
        Err(FetchCodecError::TrailingBytes(buf.remaining()))
    } else {
        Ok(())
    }
}

/// Prepends the 4-byte size.
fn framed(body: BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&body);
    out.freeze()
}

/// The API key of a frame body, if it has one.
pub fn frame_api_key(body: &[u8]) -> Option<i16> {
    body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

/// Whether frames with this API key are observer requests.
pub fn is_observer_api_key(api_key: i16) -> bool {
    api_key == FETCH_METADATA_API_KEY || api_key == FETCH_METADATA_SNAPSHOT_API_KEY
}

impl ObserverRequest {
    /// The frame, size prefix included.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        let (api_key, correlation_id, node_id, cluster_id) = match self {
            Self::Fetch(r) => (
                FETCH_METADATA_API_KEY,
                r.correlation_id,
                r.node_id,
                &r.cluster_id,
            ),
            Self::Snapshot(r) => (
                FETCH_METADATA_SNAPSHOT_API_KEY,
                r.correlation_id,
                r.node_id,
                &r.cluster_id,
            ),
        };
        out.put_i16(api_key);
        out.put_i16(VERSION);
        out.put_i32(correlation_id);
        out.put_i32(node_id);
        put_string(&mut out, cluster_id);
        match self {
            Self::Fetch(r) => {
                out.put_u64(r.from_index);
                out.put_u32(r.max_bytes);
                out.put_u32(r.max_wait_ms);
            }
            Self::Snapshot(r) => {
                out.put_u64(r.snapshot_index);
                out.put_u64(r.snapshot_term);
                out.put_u64(r.position);
                out.put_u32(r.max_bytes);
            }
        }
        framed(out)
    }

    /// Decodes a frame body (without the size prefix). Never panics.
    pub fn decode(mut buf: Bytes) -> Result<Self, FetchCodecError> {
        need(&buf, 8)?;
        let api_key = buf.get_i16();
        if !is_observer_api_key(api_key) {
            return Err(FetchCodecError::UnknownApiKey(api_key));
        }
        let version = buf.get_i16();
        if version != VERSION {
            return Err(FetchCodecError::UnsupportedVersion(version));
        }
        let correlation_id = buf.get_i32();
        need(&buf, 4)?;
        let node_id = buf.get_i32();
        let cluster_id = get_string(&mut buf)?;
        let request = if api_key == FETCH_METADATA_API_KEY {
            need(&buf, 16)?;
            Self::Fetch(FetchMetadataRequest {
                correlation_id,
                node_id,
                cluster_id,
                from_index: buf.get_u64(),
                max_bytes: buf.get_u32(),
                max_wait_ms: buf.get_u32(),
            })
        } else {
            need(&buf, 28)?;
            Self::Snapshot(FetchSnapshotRequest {
                correlation_id,
                node_id,
                cluster_id,
                snapshot_index: buf.get_u64(),
                snapshot_term: buf.get_u64(),
                position: buf.get_u64(),
                max_bytes: buf.get_u32(),
            })
        };
        finish(&buf)?;
        Ok(request)
    }
}

impl ObserverResponse {
    /// The frame, size prefix included.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        let (api_key, correlation_id, error_code, leader_hint, cluster_id) = match self {
            Self::Fetch(r) => (
                FETCH_METADATA_API_KEY,
                r.correlation_id,
                r.error_code,
                r.leader_hint,
                &r.cluster_id,
            ),
            Self::Snapshot(r) => (
                FETCH_METADATA_SNAPSHOT_API_KEY,
                r.correlation_id,
                r.error_code,
                r.leader_hint,
                &r.cluster_id,
            ),
        };
        out.put_i32(correlation_id);
        out.put_i16(api_key);
        out.put_i16(error_code);
        out.put_i32(leader_hint);
        put_string(&mut out, cluster_id);
        match self {
            Self::Fetch(r) => {
                out.put_u64(r.committed_index);
                match &r.body {
                    FetchMetadataBody::Entries(entries) => {
                        out.put_i8(0);
                        out.put_u32(entries.len() as u32);
                        for entry in entries {
                            out.put_u64(entry.index);
                            out.put_u64(entry.term);
                            out.put_u32(entry.payload.len() as u32);
                            out.extend_from_slice(&entry.payload);
                        }
                    }
                    FetchMetadataBody::SnapshotRequired {
                        index,
                        term,
                        size_bytes,
                    } => {
                        out.put_i8(1);
                        out.put_u64(*index);
                        out.put_u64(*term);
                        out.put_u64(*size_bytes);
                    }
                }
            }
            Self::Snapshot(r) => {
                out.put_u64(r.snapshot_index);
                out.put_u64(r.snapshot_term);
                out.put_u64(r.size_bytes);
                out.put_u64(r.position);
                out.put_u32(r.chunk.len() as u32);
                out.extend_from_slice(&r.chunk);
            }
        }
        framed(out)
    }

    /// Decodes a frame body (without the size prefix). Never panics; entry counts and
    /// lengths are checked against the bytes present before anything is allocated.
    pub fn decode(mut buf: Bytes) -> Result<Self, FetchCodecError> {
        need(&buf, 12)?;
        let correlation_id = buf.get_i32();
        let api_key = buf.get_i16();
        let error_code = buf.get_i16();
        let leader_hint = buf.get_i32();
        let cluster_id = get_string(&mut buf)?;
        let response = match api_key {
            FETCH_METADATA_API_KEY => {
                need(&buf, 9)?;
                let committed_index = buf.get_u64();
                let body = match buf.get_i8() {
                    0 => {
                        need(&buf, 4)?;
                        let count = buf.get_u32() as usize;
                        // Each entry takes at least 20 bytes.
                        need(&buf, count.saturating_mul(20))?;
                        let mut entries = Vec::with_capacity(count);
                        for _ in 0..count {
                            need(&buf, 20)?;
                            let index = buf.get_u64();
                            let term = buf.get_u64();
                            let len = buf.get_u32() as usize;
                            if len > METADATA_ENTRY_PAYLOAD_BYTES_MAX {
                                return Err(FetchCodecError::EntryTooLarge(len));
                            }
                            need(&buf, len)?;
                            entries.push(MetadataLogEntry {
                                index,
                                term,
                                payload: buf.split_to(len),
                            });
                        }
                        FetchMetadataBody::Entries(entries)
                    }
                    1 => {
                        need(&buf, 24)?;
                        FetchMetadataBody::SnapshotRequired {
                            index: buf.get_u64(),
                            term: buf.get_u64(),
                            size_bytes: buf.get_u64(),
                        }
                    }
                    kind => return Err(FetchCodecError::UnknownKind(kind)),
                };
                Self::Fetch(FetchMetadataResponse {
                    correlation_id,
                    error_code,
                    leader_hint,
                    cluster_id,
                    committed_index,
                    body,
                })
            }
            FETCH_METADATA_SNAPSHOT_API_KEY => {
                need(&buf, 36)?;
                let snapshot_index = buf.get_u64();
                let snapshot_term = buf.get_u64();
                let size_bytes = buf.get_u64();
                let position = buf.get_u64();
                let len = buf.get_u32() as usize;
                need(&buf, len)?;
                Self::Snapshot(FetchSnapshotResponse {
                    correlation_id,
                    error_code,
                    leader_hint,
                    cluster_id,
                    snapshot_index,
                    snapshot_term,
                    size_bytes,
                    position,
                    chunk: buf.split_to(len),
                })
            }
            other => return Err(FetchCodecError::UnknownApiKey(other)),
        };
        finish(&buf)?;
        Ok(response)
    }
}

/// Whether a request of cluster `theirs` must be refused by a voter of cluster `ours`: both
/// known and different.
fn foreign_cluster(ours: Option<&str>, theirs: &str) -> bool {
    matches!(ours, Some(ours) if !ours.is_empty() && !theirs.is_empty() && ours != theirs)
}

fn leader_hint<S: RaftLogStore>(quorum: &MetadataQuorum<S>) -> i32 {
    quorum
        .leader_id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(-1)
}

/// A voter's answer to FetchMetadata: committed entries only (what this voter has applied),
/// at most `min(max_bytes, FETCH_METADATA_BYTES_MAX)` of payload but at least one entry if
/// any; SnapshotRequired below the log's start; INCONSISTENT_CLUSTER_ID to another cluster.
pub fn answer_fetch_metadata<S: RaftLogStore>(
    quorum: &MetadataQuorum<S>,
    cluster_id: Option<&str>,
    request: &FetchMetadataRequest,
) -> FetchMetadataResponse {
    let mut response = FetchMetadataResponse {
        correlation_id: request.correlation_id,
        error_code: error_code::NONE,
        leader_hint: leader_hint(quorum),
        cluster_id: cluster_id.unwrap_or_default().to_string(),
        committed_index: quorum.applied_index(),
        body: FetchMetadataBody::Entries(Vec::new()),
    };
    if foreign_cluster(cluster_id, &request.cluster_id) {
        response.error_code = error_code::INCONSISTENT_CLUSTER_ID;
        return response;
    }
    let size_bytes_max = u64::from(request.max_bytes.clamp(1, FETCH_METADATA_BYTES_MAX));
    response.body = match quorum.read_committed(request.from_index, size_bytes_max) {
        CommittedRead::Entries(entries) => FetchMetadataBody::Entries(entries),
        CommittedRead::SnapshotRequired { index, term } => {
            let size_bytes = quorum
                .latest_snapshot()
                .filter(|s| (s.index, s.term) == (index, term))
                .map_or(0, |s| s.data.len() as u64);
            FetchMetadataBody::SnapshotRequired {
                index,
                term,
                size_bytes,
            }
        }
    };
    response
}

/// A voter's answer to FetchMetadataSnapshot: a chunk of at most
/// `min(max_bytes, SNAPSHOT_CHUNK_BYTES_MAX)` bytes of its newest snapshot, if that is the
/// one asked for (else SNAPSHOT_NOT_FOUND; a position past the end is POSITION_OUT_OF_RANGE).
pub fn answer_fetch_snapshot<S: RaftLogStore>(
    quorum: &MetadataQuorum<S>,
    cluster_id: Option<&str>,
    request: &FetchSnapshotRequest,
) -> FetchSnapshotResponse {
    let mut response = FetchSnapshotResponse {
        correlation_id: request.correlation_id,
        error_code: error_code::NONE,
        leader_hint: leader_hint(quorum),
        cluster_id: cluster_id.unwrap_or_default().to_string(),
        snapshot_index: request.snapshot_index,
        snapshot_term: request.snapshot_term,
        size_bytes: 0,
        position: request.position,
        chunk: Bytes::new(),
    };
    if foreign_cluster(cluster_id, &request.cluster_id) {
        response.error_code = error_code::INCONSISTENT_CLUSTER_ID;
        return response;
    }
    let Some(snapshot) = quorum
        .latest_snapshot()
        .filter(|s| (s.index, s.term) == (request.snapshot_index, request.snapshot_term))
    else {
        response.error_code = error_code::SNAPSHOT_NOT_FOUND;
        return response;
    };
    let size = snapshot.data.len();
    response.size_bytes = size as u64;
    let Some(start) = usize::try_from(request.position)
        .ok()
        .filter(|start| *start <= size)
    else {
        response.error_code = error_code::POSITION_OUT_OF_RANGE;
        return response;
    };
    let chunk_bytes = request.max_bytes.clamp(1, SNAPSHOT_CHUNK_BYTES_MAX) as usize;
    let end = start.saturating_add(chunk_bytes).min(size);
    response.chunk = snapshot.data.slice(start..end);
    response
}

#[cfg(test)]
mod tests;
