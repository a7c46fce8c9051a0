//! A global allocator that survives hostile length fields.
//!
//! The generated decoders pre-size vectors from the element count a request declares
//! (`Vec::with_capacity(n)` with `n` up to 2^31 - 1). A 20-byte request can thus ask for
//! hundreds of gigabytes before the decoder notices the body is too short. With the system
//! allocator such a request fails under the kernel's overcommit check, and a failed allocation
//! aborts the whole process, taking every client's connection with it.
//!
//! [`HostileSizeGuard`] routes allocations of [`HUGE_ALLOCATION_BYTES`] or more to an
//! anonymous `mmap` with `MAP_NORESERVE`: the kernel hands out address space without committing
//! memory, the decoder fails on the short body without touching the pages, and the mapping is
//! returned. Legitimate allocations are far smaller (frames are capped by
//! `socket.request.max.bytes`), so the hot path never takes the mmap branch.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of this size or more bypass the system allocator.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 31;

/// See the module docs. Install it with `#[global_allocator]` in a binary or fuzz target.
pub struct HostileSizeGuard;

fn page_size_bytes() -> usize {
    4096
}

// SAFETY: small allocations are delegated to `System` unchanged. Huge ones come from a fresh
// anonymous mapping, which is page aligned (enough for any layout whose alignment is at most a
// page; larger alignments go to `System`) and zero filled, and are released with `munmap` of
// the same size in `dealloc`, which receives the same layout.
unsafe impl GlobalAlloc for HostileSizeGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HUGE_ALLOCATION_BYTES || layout.align() > page_size_bytes() {
            return System.alloc(layout);
        }
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < HUGE_ALLOCATION_BYTES || layout.align() > page_size_bytes() {
            return System.dealloc(ptr, layout);
        }
        libc::munmap(ptr.cast(), layout.size());
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HUGE_ALLOCATION_BYTES || layout.align() > page_size_bytes() {
            return System.alloc_zeroed(layout);
        }
        // Fresh anonymous mappings are already zeroed.
        self.alloc(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small_before = layout.size() < HUGE_ALLOCATION_BYTES;
        let small_after = new_size < HUGE_ALLOCATION_BYTES;
        if (small_before && small_after) || layout.align() > page_size_bytes() {
            return System.realloc(ptr, layout, new_size);
        }
        // Crossing the threshold (or resizing a mapping): allocate, copy, free.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new_ptr = self.alloc(new_layout);
        if !new_ptr.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new_ptr
    }
}

/// Keeps large freed buffers in the heap for reuse instead of returning them to the kernel.
///
/// glibc serves allocations above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
/// fresh `mmap` and unmaps them on free. Request and fetch buffers of a few MiB are allocated
/// and freed on every request, so each one cost page faults and kernel page zeroing (about 7%
/// of broker CPU in a produce/consume profile). Raising the mmap threshold and the trim
/// threshold to 64 MiB keeps those pages mapped and reused; allocations of 64 MiB and more
/// (rare: frames are capped by `socket.request.max.bytes`) still use mmap.
pub fn keep_freed_memory_for_reuse() {
    const THRESHOLD_BYTES: libc::c_int = 64 << 20;
    // SAFETY: mallopt only changes glibc's tuning parameters; it is called once at start-up
    // before other threads exist. A failure (return 0) just leaves the defaults in place.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD_BYTES);
    }
}
