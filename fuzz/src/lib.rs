//! Shared helpers for Fjord's fuzz targets (see `fuzz/README.md`).
//!
//! - [`expect_caught`]: runs a call that is *documented* to contain its own panics (the
//!   `catch_unwind` inside `request::decode_header` / `decode_body`). libfuzzer-sys installs a
//!   panic hook that aborts on *every* panic, even one the code under test catches; that would
//!   report the production behaviour (malformed request -> error) as a crash. Inside
//!   `expect_caught` the hook only records the message; a panic that escapes the call is still
//!   reported (message included) and aborts. Everywhere else panics abort as usual.
//! - [`batch`]: a minimal, independent v2 record batch encoder used by the seed generator.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    static EXPECTING_CAUGHT: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs the panic hook described in the module docs. Call once, from `fuzz_target!`'s
/// `init:` block (which runs after libfuzzer-sys installed its aborting hook).
///
/// Set `FJORD_FUZZ_SHOW_CAUGHT=1` to print every caught panic (to see what the decoders
/// choke on; in the fuzz build overflow checks are on, unlike the production release build).
pub fn install_panic_hook() {
    let show_caught = std::env::var_os("FJORD_FUZZ_SHOW_CAUGHT").is_some();
    let aborting_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if EXPECTING_CAUGHT.with(Cell::get) {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "<non-string panic payload>".to_string());
            let message = format!("panicked at {location}: {payload}");
            if show_caught {
                eprintln!("fjord-fuzz: caught (tolerated) panic: {message}");
            }
            LAST_PANIC.with(|p| *p.borrow_mut() = message);
        } else {
            aborting_hook(info);
        }
    }));
}

/// Runs `f`, which must catch its own panics. If a panic escapes anyway, prints it and aborts
/// (libFuzzer then saves the input as a crash artifact).
pub fn expect_caught<R>(what: &str, f: impl FnOnce() -> R) -> R {
    EXPECTING_CAUGHT.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    EXPECTING_CAUGHT.with(|c| c.set(false));
    match result {
        Ok(value) => value,
        Err(_) => {
            let message = LAST_PANIC.with(|p| p.borrow().clone());
            eprintln!("fjord-fuzz: panic escaped {what}: {message}");
            std::process::abort();
        }
    }
}

/// A minimal uncompressed v2 record batch encoder, independent of the code under test.
pub mod batch {
    pub struct Record<'a> {
        pub timestamp_delta: i64,
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (raw & 0x7f) as u8;
            raw >>= 7;
            if raw == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes one batch; `attributes` bit 3 = LogAppendTime, bits 0-2 must be 0 (no codec).
    pub fn encode(base_offset: i64, base_timestamp: i64, attributes: i16, records: &[Record<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut rec = vec![0u8];
            put_varint(&mut rec, r.timestamp_delta);
            put_varint(&mut rec, i as i64);
            put_bytes(&mut rec, r.key);
            put_bytes(&mut rec, r.value);
            put_varint(&mut rec, r.headers.len() as i64);
            for (k, v) in r.headers {
                put_bytes(&mut rec, Some(k));
                put_bytes(&mut rec, *v);
            }
            put_varint(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let max_timestamp = records
            .iter()
            .map(|r| base_timestamp + r.timestamp_delta)
            .max()
            .unwrap_or(base_timestamp);
        let mut out = Vec::new();
        out.extend_from_slice(&base_offset.to_be_bytes());
        out.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&[0; 4]); // crc, patched below
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&((records.len() as i32) - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Bitwise CRC-32C (Castagnoli); slow but dependency-free, only used for seeds.
    pub fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }
}
