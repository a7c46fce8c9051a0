//! ListPartitionReassignments (key 46), v0: the ongoing reassignments (replicas, adding,
//! removing) of the named partitions or (null) of all. Forwarded to the active controller as
//! a KRaft broker does; the controller lists them from its committed image, so the answer
//! never shows a reassignment that could still be lost. Partitions without a reassignment
//! (and unknown ones) are left out, as Kafka does.

use fjord_controller::{
    ControllerReply, ControllerRequest,
    ListPartitionReassignmentsRequest as ControllerListReassignments,
};
use fjord_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::forwarding::{timeout_from_request, unexpected};
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(
    broker: &Broker,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let reply = broker
        .send_to_controller(
            ControllerRequest::ListPartitionReassignments(ControllerListReassignments { topics }),
            timeout_from_request(request.timeout_ms),
        )
        .await
        .and_then(|reply| match reply {
            ControllerReply::ListPartitionReassignments(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        });
    let reply = match reply {
        Ok(reply) => reply,
        Err(error) => {
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(error.code.code())
                .with_error_message(error.message.map(StrBytes::from_string))
        }
    };
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for r in &reply.reassignments {
        let partition = OngoingPartitionReassignment::default()
            .with_partition_index(r.partition)
            .with_replicas(ids(&r.replicas))
            .with_adding_replicas(ids(&r.adding_replicas))
            .with_removing_replicas(ids(&r.removing_replicas));
        match topics.last_mut() {
            Some(last) if last.name.as_str() == r.topic => last.partitions.push(partition),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(r.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default()
        .with_error_code(reply.error.code.code())
        .with_error_message(reply.error.message.map(StrBytes::from_string))
        .with_topics(topics)
}
