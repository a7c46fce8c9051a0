//! Kafka API handlers, one file per API (as in Redpanda's `src/v/kafka/server/handlers`).
//! Each file declares the version range it implements as `VERSIONS`; [`SUPPORTED_APIS`] is the
//! table ApiVersions advertises and the connection layer checks before decoding a body.

use fjord_protocol::{ApiKey, VersionRange};

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod error_response;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod unregister_broker;
pub mod write_txn_markers;

/// Every API this broker implements, with the versions it implements.
pub const SUPPORTED_APIS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS),
    (ApiKey::DescribeProducers, describe_producers::VERSIONS),
    (ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    (ApiKey::AlterConfigs, alter_configs::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupHeartbeat,
        consumer_group_heartbeat::VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        consumer_group_describe::VERSIONS,
    ),
    (ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    (ApiKey::JoinGroup, join_group::VERSIONS),
    (ApiKey::SyncGroup, sync_group::VERSIONS),
    (ApiKey::Heartbeat, heartbeat::VERSIONS),
    (ApiKey::LeaveGroup, leave_group::VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    (ApiKey::OffsetDelete, offset_delete::VERSIONS),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS),
    (ApiKey::DescribeGroups, describe_groups::VERSIONS),
    (ApiKey::ListGroups, list_groups::VERSIONS),
    (ApiKey::DeleteGroups, delete_groups::VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS),
    (ApiKey::EndTxn, end_txn::VERSIONS),
    (ApiKey::WriteTxnMarkers, write_txn_markers::VERSIONS),
    (
        ApiKey::DescribeTransactions,
        describe_transactions::VERSIONS,
    ),
    (ApiKey::ListTransactions, list_transactions::VERSIONS),
    (ApiKey::ElectLeaders, elect_leaders::VERSIONS),
    (
        ApiKey::AlterPartitionReassignments,
        alter_partition_reassignments::VERSIONS,
    ),
    (
        ApiKey::ListPartitionReassignments,
        list_partition_reassignments::VERSIONS,
    ),
    (ApiKey::DescribeQuorum, describe_quorum::VERSIONS),
    (ApiKey::UnregisterBroker, unregister_broker::VERSIONS),
    (ApiKey::DescribeAcls, describe_acls::VERSIONS),
    (ApiKey::CreateAcls, create_acls::VERSIONS),
    (ApiKey::DeleteAcls, delete_acls::VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        describe_user_scram_credentials::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        alter_user_scram_credentials::VERSIONS,
    ),
    (
        ApiKey::DescribeClientQuotas,
        describe_client_quotas::VERSIONS,
    ),
    (ApiKey::AlterClientQuotas, alter_client_quotas::VERSIONS),
];

/// The version range implemented for `api_key`, if the API is implemented at all.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, versions)| *versions)
}

pub fn is_supported(api_key: ApiKey, api_version: i16) -> bool {
    supported_versions(api_key).is_some_and(|v| v.min <= api_version && api_version <= v.max)
}

/// Kafka's `authorized_operations` value for "not requested".
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

#[cfg(test)]
mod tests {
    use super::*;

    /// The advertised ranges must be decodable by the generated codec.
    #[test]
    fn advertised_versions_are_within_the_codec_range() {
        for (key, versions) in SUPPORTED_APIS {
            let known = key.valid_versions();
            assert!(
                known.min <= versions.min && versions.max <= known.max,
                "{key:?}"
            );
            assert!(versions.min <= versions.max, "{key:?}");
        }
    }
}
