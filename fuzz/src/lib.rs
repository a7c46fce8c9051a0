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

/// The uncompressed batch encoder shared with the unit tests.
pub mod batch {
    pub use fjord_protocol::batch_builder::{encode_uncompressed as encode, Record};
}
