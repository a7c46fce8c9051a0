//! WriteTxnMarkers (key 27), v1: writes COMMIT/ABORT markers to partitions. In Kafka the
//! transaction coordinator sends it to each partition's leader; on a single node the
//! coordinator writes markers in-process, and this handler serves tools and other callers
//! through the same marker writer. (v0 was removed from Kafka 4.0.)

use fjord_protocol::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use fjord_protocol::VersionRange;

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

pub fn handle(broker: &Broker, request: &WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    // Markers arriving over the network are for partitions this node leads; they are never
    // sent on (that could bounce between nodes with stale metadata).
    let writer = broker.local_marker_writer();
    let markers = request
        .markers
        .iter()
        .map(|marker| {
            let topics = marker
                .topics
                .iter()
                .map(|topic| {
                    let partitions: Vec<(String, i32)> = topic
                        .partition_indexes
                        .iter()
                        .map(|p| (topic.name.to_string(), *p))
                        .collect();
                    let results = writer.write_markers(
                        marker.producer_id.0,
                        marker.producer_epoch,
                        marker.coordinator_epoch,
                        marker.transaction_result,
                        &partitions,
                    );
                    let partitions = partitions
                        .iter()
                        .map(|tp| {
                            let error_code = results.iter().find(|(p, _)| p == tp).map_or(
                                fjord_protocol::ResponseError::UnknownServerError.code(),
                                |(_, r)| r.err().map_or(0, |e| e.code()),
                            );
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(tp.1)
                                .with_error_code(error_code)
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}
