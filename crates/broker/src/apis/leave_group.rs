//! LeaveGroup (key 13), v0-v5: a member leaves (v0-v2, one member), or several members leave
//! at once, including static members removed by group instance id (v3+, KIP-345).

use fjord_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use fjord_protocol::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use fjord_protocol::VersionRange;

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First version with a list of members.
const BATCH_VERSION: i16 = 3;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    mut request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if api_version < BATCH_VERSION {
        request.members = vec![MemberIdentity::default().with_member_id(request.member_id.clone())];
    }
    let response = broker
        .group_coordinator()
        .leave_group(&request, now_ms())
        .await;
    if api_version >= BATCH_VERSION {
        return response;
    }
    // Kafka's LeaveGroupResponse for v0-v2: the one member's error becomes the top-level one.
    let error_code = if response.error_code != 0 {
        response.error_code
    } else {
        response.members.first().map_or(0, |m| m.error_code)
    };
    LeaveGroupResponse::default().with_error_code(error_code)
}
