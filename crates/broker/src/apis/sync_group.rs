//! SyncGroup (key 14), v0-v5: the second phase of a rebalance. The leader sends the
//! assignment; it is stored in `__consumer_offsets` and handed to every member. A follower's
//! request waits for the leader's.

use fjord_protocol::kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use fjord_protocol::{ResponseError, VersionRange};

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// First version whose request must name the protocol type and name.
const PROTOCOL_FIELDS_VERSION: i16 = 5;

pub async fn handle(
    broker: &Broker,
    api_version: i16,
    request: &SyncGroupRequest,
) -> SyncGroupResponse {
    if api_version >= PROTOCOL_FIELDS_VERSION
        && (request.protocol_type.is_none() || request.protocol_name.is_none())
    {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::InconsistentGroupProtocol.code());
    }
    let mut response = broker
        .group_coordinator()
        .sync_group(request, now_ms())
        .await;
    if api_version < PROTOCOL_FIELDS_VERSION {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    response
}
