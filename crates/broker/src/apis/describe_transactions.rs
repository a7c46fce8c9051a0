//! DescribeTransactions (key 65), v0: each transactional id's state, producer id and epoch,
//! timeout, start time and partitions (TRANSACTIONAL_ID_NOT_FOUND for unknown ids).

use fjord_protocol::kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse,
};
use fjord_protocol::VersionRange;

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(
    broker: &Broker,
    request: &DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let coordinator = broker.transaction_coordinator();
    DescribeTransactionsResponse::default().with_transaction_states(
        request
            .transactional_ids
            .iter()
            .map(|id| coordinator.describe_transaction(id.as_str()))
            .collect(),
    )
}
