//! Control batches: the transaction markers a transaction coordinator writes to every partition
//! of a transaction when it commits or aborts (Kafka's `EndTransactionMarker`).
//!
//! A control batch has the transactional and control attribute bits set, the producer id and
//! epoch of the transaction, base sequence -1 and exactly one record:
//!
//! - key: `version: i16` (0), `type: i16` (0 = ABORT, 1 = COMMIT; Kafka's `ControlRecordType`,
//!   which also has types for KRaft's own metadata log that never appear in a partition);
//! - value (markers only): `version: i16` (0), `coordinatorEpoch: i32`.

use crate::batch_builder::{
    self, ProducerFields, Record, CONTROL_ATTRIBUTE, TRANSACTIONAL_ATTRIBUTE,
};
use crate::records::{self, RecordError};

/// Kafka's `ControlRecordType` ids that matter to a partition log.
pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// What an end-of-transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    /// The epoch of the transaction coordinator that wrote it; a partition refuses markers
    /// from an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
}

/// The control record of a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecord {
    EndTxn(EndTxnMarker),
    /// A control type this broker does not interpret (kept, never acted on).
    Other {
        control_type: i16,
    },
}

/// Encodes the control batch for an end-of-transaction marker, base offset 0 (the log assigns
/// the real one).
pub fn encode_end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let control_type = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&control_type.to_be_bytes());
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&marker.coordinator_epoch.to_be_bytes());
    batch_builder::encode_uncompressed_with_producer(
        0,
        timestamp_ms,
        TRANSACTIONAL_ATTRIBUTE | CONTROL_ATTRIBUTE,
        ProducerFields {
            producer_id,
            producer_epoch,
            base_sequence: -1,
        },
        &[Record {
            timestamp_delta: 0,
            key: Some(&key),
            value: Some(&value),
            headers: &[],
        }],
    )
}

/// Reads the control record of a whole control batch. `Ok(None)` if the batch is not a control
/// batch; an error if it claims to be one but its record is malformed.
pub fn read_control_record(batch: &[u8]) -> Result<Option<ControlRecord>, RecordError> {
    let header = records::RecordBatchHeader::parse(batch)?;
    if !header.is_control() {
        return Ok(None);
    }
    let found = records::find_record(batch, |record| {
        std::ops::ControlFlow::Break((
            record.key.map(<[u8]>::to_vec),
            record.value.map(<[u8]>::to_vec),
        ))
    })?;
    let malformed = |reason| RecordError::MalformedRecord { reason };
    let Some((Some(key), value)) = found else {
        return Err(malformed("control batch without a keyed control record"));
    };
    let control_type = match key.as_slice() {
        [_, _, high, low] => i16::from_be_bytes([*high, *low]),
        _ => return Err(malformed("control record key is not 4 bytes")),
    };
    if control_type != CONTROL_TYPE_ABORT && control_type != CONTROL_TYPE_COMMIT {
        return Ok(Some(ControlRecord::Other { control_type }));
    }
    let coordinator_epoch = match value.as_deref() {
        Some([_, _, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => return Err(malformed("transaction marker value shorter than 6 bytes")),
    };
    Ok(Some(ControlRecord::EndTxn(EndTxnMarker {
        commit: control_type == CONTROL_TYPE_COMMIT,
        coordinator_epoch,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_validate() {
        for commit in [true, false] {
            let marker = EndTxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let batch = encode_end_txn_marker(42, 3, marker, 1_000);
            let header = records::validate_batch(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (42, 3, -1)
            );
            assert_eq!(
                read_control_record(&batch).unwrap(),
                Some(ControlRecord::EndTxn(marker))
            );
        }
    }

    #[test]
    fn data_batches_are_not_control_records() {
        let batch = batch_builder::encode_values(0, 2, b"v");
        assert_eq!(read_control_record(&batch).unwrap(), None);
    }

    #[test]
    fn malformed_control_records_are_errors_not_panics() {
        let batch = batch_builder::encode_uncompressed_with_producer(
            0,
            0,
            CONTROL_ATTRIBUTE | TRANSACTIONAL_ATTRIBUTE,
            ProducerFields::NONE,
            &[Record {
                key: Some(b"x"),
                ..Record::default()
            }],
        );
        assert!(read_control_record(&batch).is_err());
    }
}
