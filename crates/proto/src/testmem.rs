//! Heap-backed, 64-byte-aligned memory for unit tests (the only place a `Region` is
//! built from a raw pointer, so the only `unsafe` in the crate, confined to tests).
#![allow(unsafe_code)]

use staticbus_guest::Region;
use std::boxed::Box;
use std::vec::Vec;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

/// An owned, zeroed, 64-byte aligned buffer that hands out `Region`s over itself.
pub struct Mem {
    ptr: *mut [Line],
    len: usize,
}

impl Mem {
    /// `len` bytes (rounded up to 64 internally), zeroed.
    pub fn new(len: usize) -> Mem {
        let lines: Vec<Line> = std::vec![Line([0; 8]); len.div_ceil(64)];
        Mem {
            ptr: Box::into_raw(lines.into_boxed_slice()),
            len,
        }
    }

    /// A region over the `len` bytes.
    pub fn region(&self) -> Region {
        // SAFETY: the allocation lives until `self` is dropped, and tests drop `Mem` only
        // after their last use of every region made from it; nothing takes Rust
        // references into the buffer while regions exist (`Line` is only touched via
        // the raw pointer here and in `drop`).
        unsafe { Region::new(self.ptr.cast::<u8>(), self.len) }.expect("non-null")
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::into_raw` and is freed once, here.
        drop(unsafe { Box::from_raw(self.ptr) });
    }
}

/// A `Send` handle on a [`Mem`] for a thread playing the other domain.
#[derive(Clone, Copy)]
pub struct Shared {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `Shared` is only a pointer and a length; the memory behind it is accessed only
// through `Region`s (volatile copies and atomics), the way two domains share memory, and
// the tests keep the owning `Mem` alive (`thread::scope`) while any thread uses it.
unsafe impl Send for Shared {}

impl Mem {
    /// A handle another thread can turn into a region (within a scope that outlives it).
    pub fn shared(&self) -> Shared {
        Shared {
            ptr: self.ptr.cast::<u8>(),
            len: self.len,
        }
    }
}

impl Shared {
    /// A region over the memory. The caller keeps the `Mem` alive (e.g. with
    /// `std::thread::scope`) while the region is used.
    pub fn region(&self) -> Region {
        // SAFETY: as in `Mem::region`: the tests create `Shared` only inside a
        // `thread::scope` that the owning `Mem` outlives; all accesses go through
        // `Region` (volatile or atomic), which is how two domains share memory.
        unsafe { Region::new(self.ptr, self.len) }.expect("non-null")
    }
}
