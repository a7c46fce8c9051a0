//! JoinGroup (key 11), v4-v9: the first phase of a classic group rebalance. A long poll: the
//! request is parked until every member rejoined or the rebalance timeout passed (other
//! connections are not held up; this connection's later requests wait, as in Kafka, which
//! mutes the channel).
//!
//! Versions below 4 are not offered: from v4 on, a member joining without a member id gets
//! MEMBER_ID_REQUIRED and a generated id to join with (KIP-394), which keeps retried joins
//! from leaving defunct members behind. Every client Fjord is tested with uses v5 or later.

use fjord_protocol::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::group_coordinator::RequestContext;
use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 9 };

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: &JoinGroupRequest,
) -> JoinGroupResponse {
    let response = broker
        .group_coordinator()
        .join_group(ctx, request, now_ms())
        .await;
    for_version(response, ctx.api_version)
}

/// Drops what the version cannot carry (as Kafka's `JoinGroupResponse` does).
fn for_version(mut response: JoinGroupResponse, api_version: i16) -> JoinGroupResponse {
    if api_version < 7 {
        response.protocol_type = None;
        // Nullable only from v7.
        if response.protocol_name.is_none() {
            response.protocol_name = Some(StrBytes::default());
        }
    }
    if api_version < 9 {
        response.skip_assignment = false;
    }
    if api_version < 5 {
        for member in &mut response.members {
            member.group_instance_id = None;
        }
    }
    response
}
