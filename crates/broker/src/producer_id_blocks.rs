//! Producer id blocks from the controller (Kafka `RPCProducerIdManager`'s
//! AllocateProducerIds): each block is a `ProducerIdsRecord` committed in the metadata log
//! before the broker hands out any of its ids.

use std::sync::Arc;

use fjord_controller::{AllocateProducerIdsRequest, ControllerReply, ControllerRequest};

use crate::controller_channel::ControllerChannel;
use crate::metadata_cache::MetadataCache;
use crate::node_channel::BoxFuture;
use crate::transaction_coordinator::producer_id_manager::ProducerIdBlockStore;

/// How long one AllocateProducerIds may wait for the controller (Kafka's
/// `controller.quorum.request.timeout.ms` order of magnitude).
pub const ALLOCATE_PRODUCER_IDS_TIMEOUT_MS: u64 = 10_000;

/// Allocates blocks through the controller channel; the block size is the controller's (1000).
pub struct ControllerProducerIdBlockStore {
    controller: Arc<dyn ControllerChannel>,
    metadata: Arc<MetadataCache>,
    broker_id: i32,
}

impl ControllerProducerIdBlockStore {
    pub fn new(
        controller: Arc<dyn ControllerChannel>,
        metadata: Arc<MetadataCache>,
        broker_id: i32,
    ) -> Self {
        Self {
            controller,
            metadata,
            broker_id,
        }
    }
}

impl ProducerIdBlockStore for ControllerProducerIdBlockStore {
    fn allocate(&self, _block_size: i64) -> BoxFuture<'_, Result<(i64, i64), String>> {
        Box::pin(async move {
            // The controller checks the broker epoch of our registration.
            let broker_epoch = self
                .metadata
                .image()
                .broker(self.broker_id)
                .map_or(-1, |broker| broker.epoch);
            let request = ControllerRequest::AllocateProducerIds(AllocateProducerIdsRequest {
                broker_id: self.broker_id,
                broker_epoch,
            });
            let reply = self
                .controller
                .send(request, ALLOCATE_PRODUCER_IDS_TIMEOUT_MS)
                .await
                .map_err(|err| err.to_string())?;
            match reply {
                ControllerReply::AllocateProducerIds(reply) if reply.error.is_ok() => {
                    Ok((reply.producer_id_start, i64::from(reply.producer_id_len)))
                }
                ControllerReply::AllocateProducerIds(reply) => Err(format!(
                    "the controller refused AllocateProducerIds: {:?} {}",
                    reply.error.code,
                    reply.error.message.unwrap_or_default()
                )),
                ControllerReply::Error(error) => Err(format!(
                    "the controller refused AllocateProducerIds: {:?} {}",
                    error.code,
                    error.message.unwrap_or_default()
                )),
                other => Err(format!("unexpected controller reply {other:?}")),
            }
        })
    }
}
