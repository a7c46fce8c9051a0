//! ConsumerGroupDescribe (key 69), v0-v1: KIP-848 groups with their epochs, assignor, and per
//! member the current and target assignment. Groups that are not consumer groups answer
//! GROUP_ID_NOT_FOUND, as Kafka does.

use fjord_protocol::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
};
use fjord_protocol::VersionRange;

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(
    broker: &Broker,
    request: &ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let manager = broker.replica_manager();
    let topic_name = |id: &uuid::Uuid| manager.topic_by_id(id).map(|t| t.name.to_string());
    let group_ids: Vec<String> = request.group_ids.iter().map(|g| g.to_string()).collect();
    ConsumerGroupDescribeResponse::default().with_groups(
        broker
            .group_coordinator()
            .consumer_group_describe(&group_ids, &topic_name),
    )
}
