//! ListGroups (key 16), v0-v5: every group with its protocol type, state (v4+, filterable by
//! state) and type (v5+, filterable by type: "classic" today, "consumer" with KIP-848).

use fjord_protocol::kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::VersionRange;

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

const STATES_VERSION: i16 = 4;
const TYPES_VERSION: i16 = 5;

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &ListGroupsRequest,
) -> ListGroupsResponse {
    let strings = |v: &[StrBytes]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let states = if api_version >= STATES_VERSION {
        strings(&request.states_filter)
    } else {
        Vec::new()
    };
    let types = if api_version >= TYPES_VERSION {
        strings(&request.types_filter)
    } else {
        Vec::new()
    };
    match broker.group_coordinator().list_groups(&states, &types) {
        Ok(mut groups) => {
            for group in &mut groups {
                if api_version < STATES_VERSION {
                    group.group_state = StrBytes::default();
                }
                if api_version < TYPES_VERSION {
                    group.group_type = StrBytes::default();
                }
            }
            ListGroupsResponse::default().with_groups(groups)
        }
        Err(error) => ListGroupsResponse::default().with_error_code(error.code()),
    }
}
