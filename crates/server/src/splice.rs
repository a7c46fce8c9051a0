//! Writing a response frame whose record sets come from file ranges: inline parts with
//! `write_all`, file ranges with `sendfile(2)` straight from the page cache to the socket, so
//! fetched records are never copied through user space (Kafka's `FileRecords.writeTo`).
//!
//! The socket is corked (`TCP_CORK`) for the whole frame so the small inline pieces between
//! record sets do not go out as tiny segments, and uncorked at the end to flush.

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
    let corked = parts.len() > 1 && set_cork(socket.as_ref(), true).is_ok();
    let result = write_parts(socket, parts, file_records).await;
    if corked {
        // Uncorking flushes what is still held back.
        let uncorked = set_cork(socket.as_ref(), false);
        result?;
        return uncorked;
    }
    result
}

async fn write_parts(
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

fn set_cork(stream: &TcpStream, on: bool) -> io::Result<()> {
    let value: libc::c_int = i32::from(on);
    // SAFETY: the descriptor is a live TCP socket and `value` outlives the call; the length
    // passed is the size of the int it points to.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
