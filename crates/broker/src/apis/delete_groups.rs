//! DeleteGroups (key 42), v0-v2: deletes Empty groups and their committed offsets (tombstones
//! in `__consumer_offsets`); NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for
//! unknown groups.

use fjord_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use fjord_protocol::kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, GroupId,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::group_coordinator::group_ids;
use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub async fn handle(broker: &Broker, request: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = broker
        .group_coordinator()
        .delete_groups(&group_ids(&request.groups_names), now_ms())
        .await
        .into_iter()
        .map(|(group_id, error)| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id)))
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
