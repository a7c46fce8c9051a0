//! ListTransactions (key 66), v0-v2: the transactional ids this coordinator hosts, filtered by
//! state names (unknown names are echoed in `unknown_state_filters`), producer ids, v1's
//! minimum running time and v2's transactional id pattern (KIP-1152: a regular expression the
//! whole id must match; INVALID_REGULAR_EXPRESSION if it does not compile).

use fjord_protocol::kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use fjord_protocol::VersionRange;

use crate::time::now_ms;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub fn handle(
    broker: &Broker,
    api_version: i16,
    request: &ListTransactionsRequest,
) -> ListTransactionsResponse {
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let duration_ms = if api_version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let pattern = if api_version >= 2 {
        request
            .transactional_id_pattern
            .as_ref()
            .map(|p| p.as_str())
    } else {
        None
    };
    broker.transaction_coordinator().list_transactions(
        &states,
        &producer_ids,
        duration_ms,
        pattern,
        now_ms(),
    )
}
