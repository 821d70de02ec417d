//! The bare-metal guests' heap: a bump allocator over [`HEAP_BYTES`] of `.bss`, for the
//! few allocations a `virtio-drivers` driver makes when it is created (`VirtIOConsole`'s
//! receive page). Freed memory is not reused: the programs create one driver each, so the
//! heap only ever holds what they allocate at start. An allocation that does not fit
//! fails (the allocation error handler then panics, and the guest crashes with the
//! message).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of the heap.
pub const HEAP_BYTES: usize = 64 * 1024;

/// The heap's memory, aligned for any page-sized allocation.
#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_BYTES]>);

// SAFETY: the bytes are only reached through pointers `Bump::alloc` hands out, each to a
// range no other allocation overlaps.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_BYTES]));

/// The bump allocator: `next` is the offset of the first free byte.
struct Bump {
    next: AtomicUsize,
}

// SAFETY: `alloc` returns either null or a pointer to `layout.size()` bytes inside ARENA,
// aligned to `layout.align()`, that no earlier allocation covers (the offset only moves
// forward, by compare-and-swap); `dealloc` never reuses memory.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ARENA.0.get() as usize;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let Some(start) = (base + cur)
                .checked_next_multiple_of(layout.align())
                .map(|a| a - base)
            else {
                return core::ptr::null_mut();
            };
            let Some(end) = start
                .checked_add(layout.size())
                .filter(|&e| e <= HEAP_BYTES)
            else {
                return core::ptr::null_mut();
            };
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(now) => cur = now,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump {
    next: AtomicUsize::new(0),
};
