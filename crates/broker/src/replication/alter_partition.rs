//! `AlterPartitionBatcher`: ISR changes of every partition this broker leads, sent to the
//! controller as AlterPartition requests (Kafka `DefaultAlterPartitionManager`).
//!
//! At most one request is in flight; items submitted meanwhile wait and go together in the
//! next one (up to `max_items_per_request`). A partition has at most one item queued or in
//! flight: a second submission is refused with OPERATION_NOT_ATTEMPTED, which
//! `LeaderState::on_alter_partition_result` treats as "not applied, back to the committed
//! ISR", as Kafka does. A request that failed as a whole in a retriable way (timeout,
//! disconnection, NOT_CONTROLLER, STALE_BROKER_EPOCH) puts its items back; the per-partition
//! answers of a completed request are handed back for each partition's `LeaderState`.

use std::collections::BTreeMap;

use fjord_protocol::ResponseError;

use super::fetcher::PartitionKey;
use super::leader_state::{AlterPartitionItem, LeaderAndIsr};

/// One AlterPartition request (v3: topic ids, ISR with broker epochs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionBatch {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub items: Vec<AlterPartitionItem>,
}

/// The controller's answer for one partition.
pub type AlterPartitionResult = Result<LeaderAndIsr, ResponseError>;

/// Why an item was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Another change of the partition is queued or in flight (OPERATION_NOT_ATTEMPTED).
    #[error("an ISR change of this partition is already pending")]
    AlreadyPending,
    /// `max_queued` items wait already.
    #[error("{0} ISR changes are queued already")]
    Full(usize),
}

impl SubmitError {
    pub fn response_error(&self) -> ResponseError {
        ResponseError::OperationNotAttempted
    }
}

/// A request that failed as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFailure {
    /// Timeout or disconnection: nothing is known, send again.
    Retriable,
    /// A top-level error code in the response.
    Error(ResponseError),
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AlterPartitionBatcher {
    broker_id: i32,
    broker_epoch: i64,
    max_items_per_request: usize,
    max_queued: usize,
    unsent: BTreeMap<PartitionKey, AlterPartitionItem>,
    in_flight: Option<AlterPartitionBatch>,
}

impl AlterPartitionBatcher {
    pub fn new(
        broker_id: i32,
        broker_epoch: i64,
        max_items_per_request: usize,
        max_queued: usize,
    ) -> Self {
        assert!(
            max_items_per_request > 0,
            "a request carries at least one item"
        );
        Self {
            broker_id,
            broker_epoch,
            max_items_per_request,
            max_queued,
            unsent: BTreeMap::new(),
            in_flight: None,
        }
    }

    fn key(item: &AlterPartitionItem) -> PartitionKey {
        (item.topic_id, item.partition)
    }

    fn in_flight_for(&self, key: &PartitionKey) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|batch| batch.items.iter().any(|item| Self::key(item) == *key))
    }

    /// Queues `item` (Kafka `submit`).
    pub fn submit(&mut self, item: AlterPartitionItem) -> Result<(), SubmitError> {
        let key = Self::key(&item);
        if self.unsent.contains_key(&key) || self.in_flight_for(&key) {
            return Err(SubmitError::AlreadyPending);
        }
        if self.unsent.len() >= self.max_queued {
            return Err(SubmitError::Full(self.unsent.len()));
        }
        self.unsent.insert(key, item);
        Ok(())
    }

    pub fn queued(&self) -> usize {
        self.unsent.len()
    }

    pub fn in_flight(&self) -> Option<&AlterPartitionBatch> {
        self.in_flight.as_ref()
    }

    /// The next request to send, if none is in flight and items wait.
    pub fn next_request(&mut self) -> Option<AlterPartitionBatch> {
        if self.in_flight.is_some() || self.unsent.is_empty() {
            return None;
        }
        let mut items = Vec::new();
        while items.len() < self.max_items_per_request {
            let Some((_, item)) = self.unsent.pop_first() else {
                break;
            };
            items.push(item);
        }
        let batch = AlterPartitionBatch {
            broker_id: self.broker_id,
            broker_epoch: self.broker_epoch,
            items,
        };
        self.in_flight = Some(batch.clone());
        Some(batch)
    }

    /// The broker re-registered (new broker epoch): later requests carry it.
    pub fn set_broker_epoch(&mut self, broker_epoch: i64) {
        self.broker_epoch = broker_epoch;
    }

    /// Puts the in-flight items back in front of the queue.
    fn requeue_in_flight(&mut self) {
        if let Some(batch) = self.in_flight.take() {
            for item in batch.items {
                self.unsent.entry(Self::key(&item)).or_insert(item);
            }
        }
    }

    /// Handles the answer to the in-flight request: the per-partition results to hand to each
    /// partition's `LeaderState`. Items the answer does not mention are sent again.
    pub fn on_response(
        &mut self,
        response: Result<Vec<(PartitionKey, AlterPartitionResult)>, BatchFailure>,
    ) -> Vec<(AlterPartitionItem, AlterPartitionResult)> {
        let answers = match response {
            Ok(answers) => answers,
            Err(BatchFailure::Retriable)
            | Err(BatchFailure::Error(
                ResponseError::NotController | ResponseError::StaleBrokerEpoch,
            )) => {
                self.requeue_in_flight();
                return Vec::new();
            }
            Err(BatchFailure::Error(error)) => {
                return self
                    .in_flight
                    .take()
                    .map(|batch| batch.items)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|item| (item, Err(error)))
                    .collect();
            }
        };
        let Some(batch) = self.in_flight.take() else {
            return Vec::new();
        };
        let mut answers: BTreeMap<PartitionKey, AlterPartitionResult> =
            answers.into_iter().collect();
        let mut results = Vec::new();
        for item in batch.items {
            match answers.remove(&Self::key(&item)) {
                Some(result) => results.push((item, result)),
                None => {
                    self.unsent.entry(Self::key(&item)).or_insert(item);
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn item(partition: i32, partition_epoch: i32) -> AlterPartitionItem {
        AlterPartitionItem {
            topic_id: Uuid::from_u128(3),
            partition,
            leader_epoch: 1,
            partition_epoch,
            new_isr_with_epochs: vec![(1, 10), (2, 20)],
        }
    }

    fn answer(partition_epoch: i32) -> Result<LeaderAndIsr, ResponseError> {
        Ok(LeaderAndIsr {
            leader_epoch: 1,
            partition_epoch,
            isr: vec![1, 2],
        })
    }

    #[test]
    fn batches_one_request_at_a_time_one_item_per_partition() {
        let mut batcher = AlterPartitionBatcher::new(1, 10, 2, 100);
        batcher.submit(item(0, 5)).unwrap();
        batcher.submit(item(1, 5)).unwrap();
        batcher.submit(item(2, 5)).unwrap();
        assert_eq!(batcher.submit(item(0, 6)), Err(SubmitError::AlreadyPending));
        let first = batcher.next_request().unwrap();
        assert_eq!((first.broker_id, first.broker_epoch), (1, 10));
        assert_eq!(first.items, vec![item(0, 5), item(1, 5)]);
        assert_eq!(batcher.next_request(), None, "one in flight");
        assert_eq!(
            batcher.submit(item(1, 9)),
            Err(SubmitError::AlreadyPending),
            "in flight counts too"
        );
        // Partition 1 is not in the answer: it goes again, with partition 2.
        let key = (Uuid::from_u128(3), 0);
        let results = batcher.on_response(Ok(vec![(key, answer(6))]));
        assert_eq!(results, vec![(item(0, 5), answer(6))]);
        let second = batcher.next_request().unwrap();
        assert_eq!(second.items, vec![item(1, 5), item(2, 5)]);
    }

    #[test]
    fn retriable_failures_requeue_and_fatal_ones_answer_every_item() {
        let mut batcher = AlterPartitionBatcher::new(1, 10, 10, 2);
        batcher.submit(item(0, 5)).unwrap();
        batcher.submit(item(1, 5)).unwrap();
        assert_eq!(batcher.submit(item(2, 5)), Err(SubmitError::Full(2)));
        let sent = batcher.next_request().unwrap();
        assert!(batcher
            .on_response(Err(BatchFailure::Error(ResponseError::NotController)))
            .is_empty());
        batcher.set_broker_epoch(11);
        let again = batcher.next_request().unwrap();
        assert_eq!(again.items, sent.items);
        assert_eq!(again.broker_epoch, 11);
        assert!(batcher.on_response(Err(BatchFailure::Retriable)).is_empty());
        batcher.next_request().unwrap();
        let results = batcher.on_response(Err(BatchFailure::Error(
            ResponseError::ClusterAuthorizationFailed,
        )));
        assert_eq!(results.len(), 2);
        assert!(results
            .iter()
            .all(|(_, r)| *r == Err(ResponseError::ClusterAuthorizationFailed)));
        assert_eq!(batcher.queued(), 0);
        assert_eq!(batcher.next_request(), None);
    }
}
