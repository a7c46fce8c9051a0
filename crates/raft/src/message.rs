//! [`RaftMessage`]: one Raft message between voters, and its wire form.
//!
//! The wire form is the Raft library's own protobuf encoding of `eraftpb::Message` (rust-protobuf
//! 2, forced by `raft` 0.7). Only Fjord voters exchange these messages (on the controller
//! listener), so the format is private; a decoder for a different codec could replace it
//! without touching the quorum. Decoding is bounded ([`RAFT_MESSAGE_BYTES_MAX`]) and never
//! panics on garbage (proptest below).

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::QuorumError;

/// Largest encoded message: a snapshot at its limit plus room for the envelope.
pub const RAFT_MESSAGE_BYTES_MAX: usize = fjord_storage::METADATA_SNAPSHOT_BYTES_MAX
    + fjord_storage::METADATA_SNAPSHOT_VOTERS_BYTES_MAX
    + 1024 * 1024;

/// A Raft message from one voter to another.
#[derive(Debug, Clone, PartialEq)]
pub struct RaftMessage(pub Message);

impl RaftMessage {
    /// The sender's node id.
    pub fn from(&self) -> u64 {
        self.0.from
    }

    /// The receiver's node id.
    pub fn to(&self) -> u64 {
        self.0.to
    }

    /// The sender's term.
    pub fn term(&self) -> u64 {
        self.0.term
    }

    /// The Raft message type.
    pub fn msg_type(&self) -> MessageType {
        self.0.get_msg_type()
    }

    /// Whether this message carries a snapshot (the sender must report its delivery with
    /// [`crate::MetadataQuorum::report_snapshot`]).
    pub fn is_snapshot(&self) -> bool {
        self.0.get_msg_type() == MessageType::MsgSnapshot
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        match self.0.write_to_bytes() {
            Ok(bytes) => bytes,
            Err(error) => {
                // proto3 messages have no required fields: encoding cannot fail.
                debug_assert!(false, "encoding a raft message failed: {error}");
                tracing::error!(%error, "encoding a raft message failed");
                Vec::new()
            }
        }
    }

    /// Parses the wire form.
    pub fn decode(bytes: &[u8]) -> Result<RaftMessage, QuorumError> {
        if bytes.len() > RAFT_MESSAGE_BYTES_MAX {
            return Err(QuorumError::InvalidMessage(format!(
                "{} bytes exceed the limit of {RAFT_MESSAGE_BYTES_MAX}",
                bytes.len()
            )));
        }
        Message::parse_from_carllerche_bytes(&Bytes::copy_from_slice(bytes))
            .map(RaftMessage)
            .map_err(|error| QuorumError::InvalidMessage(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::{Entry, Snapshot};

    fn sample() -> RaftMessage {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 2;
        message.term = 7;
        message.log_term = 6;
        message.index = 41;
        message.commit = 40;
        let entry = Entry {
            index: 42,
            term: 7,
            data: Bytes::from_static(b"payload"),
            ..Entry::default()
        };
        message.mut_entries().push(entry);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 3;
        snapshot.data = Bytes::from_static(b"state");
        message.set_snapshot(snapshot);
        RaftMessage(message)
    }

    #[test]
    fn round_trip() {
        let message = sample();
        let decoded = RaftMessage::decode(&message.encode()).unwrap();
        assert_eq!(decoded, message);
        assert_eq!((decoded.from(), decoded.to(), decoded.term()), (1, 2, 7));
        assert!(!decoded.is_snapshot());
    }

    #[test]
    fn truncated_and_oversized_input_is_an_error() {
        let bytes = sample().encode();
        for len in 1..bytes.len() {
            // Every strict prefix that cuts a field is refused; none panics.
            let _ = RaftMessage::decode(&bytes[..len]);
        }
        assert!(RaftMessage::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(RaftMessage::decode(&vec![0; RAFT_MESSAGE_BYTES_MAX + 1]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = RaftMessage::decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(position in any::<prop::sample::Index>(), value in any::<u8>()) {
            let mut bytes = sample().encode();
            let at = position.index(bytes.len());
            bytes[at] = value;
            let _ = RaftMessage::decode(&bytes);
        }

        #[test]
        fn fields_round_trip(from in 1u64..10, to in 1u64..10, term in any::<u64>(), index in any::<u64>(),
                             data in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut message = sample();
            message.0.from = from;
            message.0.to = to;
            message.0.term = term;
            message.0.index = index;
            message.0.mut_entries()[0].data = Bytes::from(data);
            prop_assert_eq!(RaftMessage::decode(&message.encode()).unwrap(), message);
        }
    }
}
