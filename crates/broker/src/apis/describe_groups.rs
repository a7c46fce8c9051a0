//! DescribeGroups (key 15), v0-v6: state, protocol, and members of classic groups (member
//! metadata and assignments only once the group is Stable, as Kafka). An unknown group is
//! "Dead" before v6 and GROUP_ID_NOT_FOUND from v6 (KIP-1043).

use fjord_protocol::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use fjord_protocol::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::AUTHORIZED_OPERATIONS_OMITTED;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

/// First version answering GROUP_ID_NOT_FOUND (with a message) for unknown groups.
const GROUP_ID_NOT_FOUND_VERSION: i16 = 6;
/// First version with `group_instance_id` on members.
const INSTANCE_ID_VERSION: i16 = 4;
/// Group operations an unsecured broker allows: READ(3), DELETE(6), DESCRIBE(8),
/// DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11), as Kafka's bit set.
const GROUP_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = if request.include_authorized_operations {
        GROUP_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let groups = request
        .groups
        .iter()
        .map(|group_id| {
            let described = match broker.group_coordinator().describe_group(group_id) {
                Ok(Some(group)) => group,
                Ok(None) if api_version >= GROUP_ID_NOT_FOUND_VERSION => DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Group {} not found.",
                        group_id.as_str()
                    )))),
                Ok(None) => DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_group_state(StrBytes::from_static_str("Dead")),
                Err(error) => DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(error.code()),
            };
            let mut described = described.with_authorized_operations(operations);
            if api_version < GROUP_ID_NOT_FOUND_VERSION {
                described.error_message = None;
            }
            if api_version < INSTANCE_ID_VERSION {
                for member in &mut described.members {
                    member.group_instance_id = None;
                }
            }
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
