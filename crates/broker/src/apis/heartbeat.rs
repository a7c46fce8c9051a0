//! Heartbeat (key 12), v0-v4: keeps a member's session alive and tells it when the group
//! rebalances (REBALANCE_IN_PROGRESS).

use fjord_protocol::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use fjord_protocol::VersionRange;

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub async fn handle(broker: &Broker, request: &HeartbeatRequest) -> HeartbeatResponse {
    let result = broker
        .group_coordinator()
        .heartbeat(
            request.group_id.as_str(),
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|s| s.as_str()),
            request.generation_id,
            now_ms(),
        )
        .await;
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}
