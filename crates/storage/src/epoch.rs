//! Kafka's `LeaderEpochFileCache`: which leader epoch started at which offset.

use std::path::{Path, PathBuf};

use crate::{io_error, write_replacing, StorageError};

pub(crate) const CHECKPOINT_FILE_NAME: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: &str = "0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub(crate) struct LeaderEpochFileCache {
    path: PathBuf,
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<EpochEntry>,
    /// The checkpoint on disk was written without fsync since the last durable write.
    dirty: bool,
}

impl LeaderEpochFileCache {
    pub fn load(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(CHECKPOINT_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(io_error("read", &path)(error)),
        };
        let entries = if text.is_empty() {
            Vec::new()
        } else {
            parse_checkpoint(&text).map_err(|reason| StorageError::CorruptFile {
                path: path.clone(),
                reason,
            })?
        };
        Ok(LeaderEpochFileCache {
            path,
            entries,
            dirty: false,
        })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Kafka's `assign`: records that `epoch` starts at `start_offset`. Returns whether the
    /// cache changed (and so needs persisting). Entries that would break monotonicity (same or
    /// higher epoch, same or higher start offset) are removed first, as Kafka does.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let update_needed = self
            .entries
            .last()
            .is_none_or(|last| epoch != last.epoch || start_offset < last.start_offset);
        if !update_needed {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|last| last.epoch >= epoch || last.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `clear`: forgets every epoch (the log restarts elsewhere). Returns whether it
    /// held any.
    pub fn clear(&mut self) -> bool {
        let had_entries = !self.entries.is_empty();
        self.entries.clear();
        had_entries
    }

    /// Kafka's `truncateFromEnd`: drops epochs starting at or after `end_offset`.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        while self
            .entries
            .last()
            .is_some_and(|last| last.start_offset >= end_offset)
        {
            self.entries.pop();
        }
        before != self.entries.len()
    }

    /// Kafka's `truncateFromStart`: the log now starts at `start_offset`, so the epoch that
    /// covers it starts there and older epochs go.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let mut changed = false;
        if covering > 1 {
            self.entries.drain(..covering - 1);
            changed = true;
        }
        if self.entries[0].start_offset < start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// Kafka's `endOffsetFor` (KIP-101/279): the largest epoch `<= requested` and the start
    /// offset of the next higher epoch, or the log end offset for the latest epoch.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested_epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return Some((requested_epoch, log_end_offset));
        }
        let higher_index = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        // No higher epoch: the requested epoch is newer than anything we know.
        let higher = self.entries.get(higher_index)?;
        match higher_index.checked_sub(1) {
            Some(floor_index) => Some((self.entries[floor_index].epoch, higher.start_offset)),
            // Older than every known epoch: Kafka answers with the requested epoch and the
            // first known start offset, so a follower truncates to where our log begins.
            None => Some((requested_epoch, higher.start_offset)),
        }
    }

    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let count = self.entries.partition_point(|e| e.start_offset <= offset);
        count.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Writes the checkpoint and fsyncs it.
    pub fn persist(&mut self) -> Result<(), StorageError> {
        write_replacing(&self.path, self.checkpoint_text().as_bytes(), true)?;
        self.dirty = false;
        Ok(())
    }

    /// Writes the checkpoint without fsync: used on the append path, where the batch that
    /// started the epoch is not fsynced either. The next log flush, roll or close makes it
    /// durable ([`Self::persist_if_dirty`]); after a power loss, recovery re-derives epochs from
    /// the batches.
    pub fn persist_lazily(&mut self) -> Result<(), StorageError> {
        write_replacing(&self.path, self.checkpoint_text().as_bytes(), false)?;
        self.dirty = true;
        Ok(())
    }

    pub fn persist_if_dirty(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.persist()?;
        }
        Ok(())
    }

    /// An empty cache for `dir` (its checkpoint was unreadable and is being rebuilt).
    pub fn empty(dir: &Path) -> Self {
        LeaderEpochFileCache {
            path: dir.join(CHECKPOINT_FILE_NAME),
            entries: Vec::new(),
            dirty: false,
        }
    }

    fn checkpoint_text(&self) -> String {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }
}

fn parse_checkpoint(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("missing version line")?;
    if version.trim() != CHECKPOINT_VERSION {
        return Err(format!("unsupported version {version:?}"));
    }
    let count: usize = lines
        .next()
        .ok_or("missing count line")?
        .trim()
        .parse()
        .map_err(|e| format!("bad count: {e}"))?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("bad entry line {line:?}"));
        };
        let entry = EpochEntry {
            epoch: epoch.parse().map_err(|e| format!("bad epoch: {e}"))?,
            start_offset: offset.parse().map_err(|e| format!("bad offset: {e}"))?,
        };
        if entries
            .last()
            .is_some_and(|last| last.epoch >= entry.epoch || last.start_offset > entry.start_offset)
        {
            return Err(format!("entries not increasing at {line:?}"));
        }
        entries.push(entry);
    }
    if entries.len() != count {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochFileCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochFileCache::load(dir.path()).unwrap();
        for &(epoch, offset) in entries {
            assert!(cache.assign(epoch, offset));
        }
        (dir, cache)
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let (_dir, cache) = cache(&[(2, 10), (4, 20), (7, 35)]);
        let leo = 50;
        assert_eq!(cache.end_offset_for(7, leo), Some((7, 50)));
        assert_eq!(cache.end_offset_for(4, leo), Some((4, 35)));
        // Epoch 5 and 6 never led: the answer is the largest epoch below, ending where 7 starts.
        assert_eq!(cache.end_offset_for(5, leo), Some((4, 35)));
        assert_eq!(cache.end_offset_for(3, leo), Some((2, 20)));
        assert_eq!(cache.end_offset_for(1, leo), Some((1, 10)));
        assert_eq!(cache.end_offset_for(8, leo), None);
        assert_eq!(cache.end_offset_for(-1, leo), None);
        let (_dir, empty) = super::tests::cache(&[]);
        assert_eq!(empty.end_offset_for(0, leo), None);
    }

    #[test]
    fn epoch_for_offset_and_truncation() {
        let (_dir, mut cache) = cache(&[(2, 10), (4, 20)]);
        assert_eq!(cache.epoch_for_offset(9), None);
        assert_eq!(cache.epoch_for_offset(10), Some(2));
        assert_eq!(cache.epoch_for_offset(19), Some(2));
        assert_eq!(cache.epoch_for_offset(100), Some(4));
        assert!(
            !cache.assign(4, 25),
            "same epoch at a later offset is not a new entry"
        );
        assert!(cache.truncate_from_end(20));
        assert_eq!(cache.latest_epoch(), Some(2));
        assert!(!cache.truncate_from_end(20));
    }

    #[test]
    fn assign_removes_conflicting_entries() {
        let (_dir, mut cache) = cache(&[(2, 10), (4, 20)]);
        assert!(cache.assign(3, 15));
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: 2,
                    start_offset: 10
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 15
                }
            ]
        );
    }

    #[test]
    fn checkpoint_round_trip_in_kafka_format() {
        let (dir, mut cache) = cache(&[(0, 0), (3, 42)]);
        cache.persist().unwrap();
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE_NAME)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n3 42\n");
        let loaded = LeaderEpochFileCache::load(dir.path()).unwrap();
        assert_eq!(loaded.entries(), cache.entries());
        std::fs::write(dir.path().join(CHECKPOINT_FILE_NAME), "0\n3\n0 0\n").unwrap();
        assert!(matches!(
            LeaderEpochFileCache::load(dir.path()),
            Err(StorageError::CorruptFile { .. })
        ));
    }
}
