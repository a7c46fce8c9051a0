//! Kafka's `AbstractResponse.errorCounts()`: every error code a response carries, top-level
//! and per partition or resource, `NONE` left out. One function covers every API the broker
//! answers (see `Broker::handle_from`); it visits codes without allocating, since it runs once
//! per response.

use std::collections::BTreeMap;

use fjord_protocol::ResponseKind;

/// Each non-zero error code in `response`, once per place it appears.
pub fn for_each_error_code(response: &ResponseKind, visit: &mut impl FnMut(i16)) {
    let mut code = |c: i16| {
        if c != 0 {
            visit(c)
        }
    };
    match response {
        ResponseKind::ApiVersions(r) => code(r.error_code),
        ResponseKind::Metadata(r) => {
            code(r.error_code);
            for topic in &r.topics {
                code(topic.error_code);
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| code(p.error_code)),
        ResponseKind::Fetch(r) => {
            code(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DescribeCluster(r) => code(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            // v0-v3 answer one key at the top level, v4+ one entry per key.
            code(r.error_code);
            r.coordinators.iter().for_each(|c| code(c.error_code));
        }
        ResponseKind::JoinGroup(r) => code(r.error_code),
        ResponseKind::SyncGroup(r) => code(r.error_code),
        ResponseKind::Heartbeat(r) => code(r.error_code),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|x| code(x.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|x| code(x.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|x| code(x.error_code))
        }
        ResponseKind::DescribeLogDirs(r) => {
            code(r.error_code);
            r.results.iter().for_each(|x| code(x.error_code));
        }
        ResponseKind::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|x| code(x.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::ConsumerGroupHeartbeat(r) => code(r.error_code),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| code(g.error_code)),
        ResponseKind::LeaveGroup(r) => {
            code(r.error_code);
            r.members.iter().for_each(|m| code(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            // v0-v7 answer one group at the top level, v8+ per group.
            code(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
            for group in &r.groups {
                code(group.error_code);
                group
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetDelete(r) => {
            code(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| code(g.error_code)),
        ResponseKind::ListGroups(r) => code(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| code(g.error_code)),
        ResponseKind::InitProducerId(r) => code(r.error_code),
        ResponseKind::AddPartitionsToTxn(r) => {
            // v0-v3: per topic and partition; v4+: top level, then per transaction.
            code(r.error_code);
            r.results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| code(p.partition_error_code));
            r.results_by_transaction
                .iter()
                .flat_map(|txn| &txn.topic_results)
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| code(p.partition_error_code));
        }
        ResponseKind::AddOffsetsToTxn(r) => code(r.error_code),
        ResponseKind::EndTxn(r) => code(r.error_code),
        ResponseKind::WriteTxnMarkers(r) => r
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::DescribeTransactions(r) => {
            r.transaction_states.iter().for_each(|s| code(s.error_code))
        }
        ResponseKind::ListTransactions(r) => code(r.error_code),
        ResponseKind::ElectLeaders(r) => {
            code(r.error_code);
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            code(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::ListPartitionReassignments(r) => code(r.error_code),
        ResponseKind::UnregisterBroker(r) => code(r.error_code),
        ResponseKind::DescribeQuorum(r) => {
            code(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::DescribeAcls(r) => code(r.error_code),
        ResponseKind::CreateAcls(r) => r.results.iter().for_each(|c| code(c.error_code)),
        ResponseKind::DeleteAcls(r) => {
            for f in &r.filter_results {
                code(f.error_code);
                f.matching_acls.iter().for_each(|a| code(a.error_code));
            }
        }
        ResponseKind::DescribeUserScramCredentials(r) => {
            code(r.error_code);
            r.results.iter().for_each(|u| code(u.error_code));
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().for_each(|u| code(u.error_code))
        }
        ResponseKind::DescribeClientQuotas(r) => code(r.error_code),
        ResponseKind::AlterClientQuotas(r) => r.entries.iter().for_each(|e| code(e.error_code)),
        // APIs the broker does not answer (the connection refuses them before dispatch).
        _ => {}
    }
}

/// Error code → how often it appears in `response` (Kafka's `errorCounts()` without `NONE`).
pub fn error_counts(response: &ResponseKind) -> BTreeMap<i16, u32> {
    let mut counts = BTreeMap::new();
    for_each_error_code(response, &mut |code| {
        *counts.entry(code).or_insert(0u32) += 1;
    });
    counts
}
