//! The metadata image this broker serves from (Kafka `KRaftMetadataCache`): the last image the
//! metadata loader published, shared as `Arc<MetadataImage>` so a request reads one consistent
//! version, and a way to wait until a published image shows something (a topic this broker
//! asked the controller to create, a config it asked to change), as Kafka's forwarding broker
//! waits before it answers.

use std::sync::Arc;
use std::time::Duration;

use fjord_metadata::MetadataImage;
use tokio::sync::watch;

/// The published image and its waiters.
pub struct MetadataCache {
    image: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataCache {
    pub fn new(image: Arc<MetadataImage>) -> Self {
        let (image, _) = watch::channel(image);
        Self { image }
    }

    /// The current image; cheap (a reference count).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Publishes `image` and wakes every waiter. Images only move forward: an older one is
    /// ignored (the loader publishes in log order; this guards against a caller's mistake).
    pub fn publish(&self, image: Arc<MetadataImage>) {
        self.image.send_if_modified(|current| {
            if image.offset < current.offset {
                debug_assert!(false, "metadata images are published in offset order");
                return false;
            }
            *current = image;
            true
        });
    }

    /// Waits until the published image satisfies `predicate`, at most `timeout_ms`. Returns
    /// whether it did.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&MetadataImage) -> bool,
        timeout_ms: u64,
    ) -> bool {
        let mut receiver = self.image.subscribe();
        let outcome = tokio::time::timeout(Duration::from_millis(timeout_ms), async {
            receiver.wait_for(|image| predicate(image)).await.is_ok()
        })
        .await;
        matches!(outcome, Ok(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Arc<MetadataImage> {
        Arc::new(MetadataImage {
            offset,
            ..MetadataImage::empty()
        })
    }

    #[tokio::test]
    async fn waiters_see_later_images_and_time_out_otherwise() {
        let cache = Arc::new(MetadataCache::new(at(1)));
        assert!(cache.wait_for(|image| image.offset == 1, 0).await);
        assert!(!cache.wait_for(|image| image.offset == 2, 10).await);
        let publisher = cache.clone();
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            publisher.publish(at(2));
        });
        assert!(cache.wait_for(|image| image.offset >= 2, 60_000).await);
        task.await.unwrap();
        assert_eq!(cache.image().offset, 2);
    }
}
