//! Writing a response frame whose record sets come from file ranges: inline parts with
//! `write_all`, file ranges with `sendfile(2)` straight from the page cache to the socket, so
//! fetched records are never copied through user space (Kafka's `FileRecords.writeTo`).
//!
//! No `TCP_CORK` around the frame: measured on loopback it cost both the broker and the client
//! more CPU than the small segments it saves (draining 1.1 GB with kcat: broker 0.51 vs
//! 0.44 CPU-s, kcat 2.07 vs 1.85 CPU-s, corked vs not).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use fjord_protocol::splice::FramePart;
use fjord_storage::FileRecords;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// Largest single `sendfile` call: bounds how long one call keeps a runtime thread.
const SENDFILE_CHUNK_BYTES_MAX: u64 = 4 << 20;

pub async fn write_frame_parts(
    socket: &mut OwnedWriteHalf,
    parts: &[FramePart],
    file_records: &[FileRecords],
) -> io::Result<()> {
    for part in parts {
        match part {
            FramePart::Inline(bytes) => socket.write_all(bytes).await?,
            FramePart::External(index) => {
                let records = file_records.get(*index).ok_or_else(|| {
                    io::Error::other(format!("response refers to missing file range {index}"))
                })?;
                send_file_range(socket.as_ref(), records).await?;
            }
        }
    }
    Ok(())
}

async fn send_file_range(stream: &TcpStream, records: &FileRecords) -> io::Result<()> {
    let Some(file) = records.file_fd() else {
        return Ok(());
    };
    let mut position = records.position();
    let mut remaining = records.size_bytes();
    while remaining > 0 {
        let chunk = remaining.min(SENDFILE_CHUNK_BYTES_MAX) as usize;
        let sent = stream
            .async_io(Interest::WRITABLE, || {
                sendfile(stream.as_raw_fd(), file, position, chunk)
            })
            .await?;
        if sent == 0 {
            // The file ended early: the log was truncated under this read. The frame cannot
            // be completed with the size already announced, so the connection must close.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "log file shorter than the range being sent (truncated meanwhile)",
            ));
        }
        position += sent as u64;
        remaining -= sent as u64;
    }
    Ok(())
}

/// One `sendfile(2)` call; `WouldBlock` when the socket buffer is full.
fn sendfile(socket: RawFd, file: BorrowedFd<'_>, position: u64, len: usize) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(position)
        .map_err(|_| io::Error::other("file position beyond off_t"))?;
    // SAFETY: both descriptors are open for the duration of the call (the socket is borrowed
    // from a live TcpStream, the file from a FileRecords that holds its handle), and `offset`
    // is a valid, exclusively borrowed off_t that the kernel updates.
    let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut offset, len) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
