//! `FileRecords`: a byte range of a segment file, handed out by a read instead of the bytes.
//!
//! Like Kafka's `FileRecords` slice, it lets the network layer move record data from the page
//! cache to the socket with `sendfile` (no copy through user space). The range always covers
//! whole batches. The file handle is shared with the segment, so the range stays readable even
//! if the segment is deleted meanwhile (an unlinked file lives until its last handle closes).
//! A truncation (only replication truncates a log) can shorten the file under a reader: the
//! reader then gets fewer bytes than `size_bytes` and must treat that as an error.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::{io_error, StorageError};

#[derive(Clone, Debug, Default)]
pub struct FileRecords {
    /// `None` for an empty range.
    source: Option<Source>,
    position: u64,
    size_bytes: u64,
}

#[derive(Clone, Debug)]
struct Source {
    file: Arc<File>,
    path: Arc<PathBuf>,
}

impl FileRecords {
    pub(crate) fn new(file: Arc<File>, path: Arc<PathBuf>, position: u64, size_bytes: u64) -> Self {
        if size_bytes == 0 {
            return Self::default();
        }
        Self {
            source: Some(Source { file, path }),
            position,
            size_bytes,
        }
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Start of the range in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The file, for `sendfile`; `None` when the range is empty.
    pub fn file_fd(&self) -> Option<BorrowedFd<'_>> {
        self.source.as_ref().map(|s| s.file.as_fd())
    }

    /// Reads the range into memory: for callers that cannot splice (tests, and any transport
    /// that must see the bytes, such as TLS).
    pub fn read_to_bytes(&self) -> Result<Bytes, StorageError> {
        let Some(source) = &self.source else {
            return Ok(Bytes::new());
        };
        let len = usize::try_from(self.size_bytes).map_err(|_| StorageError::Io {
            operation: "read",
            path: source.path.as_ref().clone(),
            source: std::io::Error::other("range larger than the address space"),
        })?;
        let mut buf = vec![0u8; len];
        source
            .file
            .read_exact_at(&mut buf, self.position)
            .map_err(io_error("read", source.path.as_ref()))?;
        Ok(Bytes::from(buf))
    }
}
