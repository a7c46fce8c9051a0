//! Physical-limit baselines: what the machine can do without a broker in the way.
//!
//! * TCP loopback: one thread writes `bytes` over a real 127.0.0.1 socket in 1 MiB writes,
//!   another reads it (MB/s of the copy through the kernel).
//! * Sequential file write on the broker's filesystem, 1 MiB writes: page cache only (time of
//!   the `write` calls), and with `fdatasync` at the end (time until the data is durable).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use serde::Serialize;

/// Size of every write (and read buffer).
const CHUNK: usize = 1 << 20;

/// Baseline measurements, as printed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// Bytes copied over TCP loopback.
    pub tcp_bytes: u64,
    /// TCP loopback throughput, MB/s (10^6 bytes).
    pub tcp_loopback_mb_s: f64,
    /// Directory the file baselines wrote to.
    pub file_dir: String,
    /// Bytes written per file test.
    pub file_bytes: u64,
    /// Sequential write into the page cache, MB/s.
    pub file_write_page_cache_mb_s: f64,
    /// Sequential write followed by `fdatasync`, MB/s (end to end, including the sync).
    pub file_write_fdatasync_mb_s: f64,
}

/// Copies `bytes` from one thread to another over a loopback TCP connection; returns MB/s.
pub fn tcp_loopback(bytes: u64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr().context("listener address")?;
    let writer = thread::spawn(move || -> Result<()> {
        let mut s = TcpStream::connect(addr).context("connecting over loopback")?;
        let buf = vec![0x5Au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            s.write_all(&buf[..n]).context("loopback write")?;
            left -= n as u64;
        }
        Ok(())
    });
    let (mut conn, _) = listener
        .accept()
        .context("accepting the loopback connection")?;
    let start = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = conn.read(&mut buf).context("loopback read")?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow!("loopback writer panicked"))??;
    if got != bytes {
        return Err(anyhow!("loopback copied {got} bytes, expected {bytes}"));
    }
    Ok(bytes as f64 / secs / 1e6)
}

/// Writes `bytes` sequentially to a new file in `dir`; with `sync`, ends with `fdatasync`.
/// Returns MB/s. The file is removed afterwards.
pub fn file_write(dir: &Path, bytes: u64, sync: bool) -> Result<f64> {
    let path: PathBuf = dir.join(format!(".fjord-bench-{}-{}.tmp", std::process::id(), sync));
    let result = (|| -> Result<f64> {
        let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let buf = vec![0xA5u8; CHUNK];
        let start = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            f.write_all(&buf[..n])
                .with_context(|| format!("writing {}", path.display()))?;
            left -= n as u64;
        }
        if sync {
            f.sync_data()
                .with_context(|| format!("fdatasync {}", path.display()))?;
        }
        Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
    })();
    let _ = fs::remove_file(&path);
    result
}

/// Runs all baselines. Before the fdatasync test, the page-cache test's file is gone and
/// everything dirty is flushed (`sync`), so the two do not interfere.
pub fn run_all(tcp_bytes: u64, file_dir: &Path, file_bytes: u64) -> Result<Baseline> {
    fs::create_dir_all(file_dir).with_context(|| format!("creating {}", file_dir.display()))?;
    eprintln!(
        "fjord-bench baseline: TCP loopback, {} MiB in 1 MiB writes",
        tcp_bytes >> 20
    );
    let tcp = tcp_loopback(tcp_bytes)?;
    eprintln!("  {tcp:.0} MB/s");
    eprintln!(
        "fjord-bench baseline: sequential write of {} MiB in {}",
        file_bytes >> 20,
        file_dir.display()
    );
    let cache = file_write(file_dir, file_bytes, false)?;
    eprintln!("  page cache only: {cache:.0} MB/s");
    flush_dirty();
    let synced = file_write(file_dir, file_bytes, true)?;
    eprintln!("  with fdatasync:  {synced:.0} MB/s");
    Ok(Baseline {
        tcp_bytes,
        tcp_loopback_mb_s: tcp,
        file_dir: file_dir.display().to_string(),
        file_bytes,
        file_write_page_cache_mb_s: cache,
        file_write_fdatasync_mb_s: synced,
    })
}

/// Asks the kernel to write back dirty pages (`sync`), best effort.
fn flush_dirty() {
    let _ = std::process::Command::new("sync").status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_baselines_run() {
        assert!(tcp_loopback(4 << 20).expect("loopback") > 0.0);
        let dir = std::env::temp_dir();
        assert!(file_write(&dir, 2 << 20, true).expect("file") > 0.0);
        assert!(file_write(&dir, 2 << 20, false).expect("file") > 0.0);
    }
}
