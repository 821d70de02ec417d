//! Caller-provided storage for Rust objects behind C handles.
//!
//! Every handle type of the header is `struct { uint64_t _tag; uint64_t _opaque[N]; }`:
//! the tag says which Rust object the storage holds (0, or anything else, for "not
//! opened"), and the object lives in `_opaque`, whose size and alignment are checked
//! against the object's at compile time.

use crate::status::*;

/// A C handle type holding an `Inner`.
pub(crate) trait Handle {
    /// What the storage holds once opened.
    type Inner;
    /// The tag of an opened handle of this type (distinct per type, never 0).
    const TAG: u64;
    /// The tag word.
    fn tag(this: *mut Self) -> *mut u64;
    /// Where the object goes.
    fn slot(this: *mut Self) -> *mut Self::Inner;
}

/// Declares the storage of `$ty` for `$inner` (sizes checked at compile time).
macro_rules! handle {
    ($ty:ident, $inner:ty, $tag:literal) => {
        const _: () = {
            assert!(
                core::mem::size_of::<$inner>() + 8 <= core::mem::size_of::<$ty>(),
                concat!("the storage of ", stringify!($ty), " is too small")
            );
            assert!(core::mem::align_of::<$inner>() <= 8);
        };
        impl $crate::handle::Handle for $ty {
            type Inner = $inner;
            const TAG: u64 = u64::from_le_bytes(*$tag);
            fn tag(this: *mut Self) -> *mut u64 {
                // SAFETY: only a field address is computed, nothing is read.
                unsafe { core::ptr::addr_of_mut!((*this)._tag) }
            }
            fn slot(this: *mut Self) -> *mut $inner {
                // SAFETY: only a field address is computed, nothing is read.
                unsafe { core::ptr::addr_of_mut!((*this)._opaque) }.cast()
            }
        }
    };
}
pub(crate) use handle;

/// Stores `v` in the handle at `h` and marks it opened. Whatever it held is forgotten
/// (the objects own no resources).
///
/// # Safety
///
/// `h` is null or valid for writes of `H` and aligned.
pub(crate) unsafe fn put<H: Handle>(h: *mut H, v: H::Inner) -> sb_status {
    if h.is_null() || !h.is_aligned() {
        return SB_ERR_INVALID;
    }
    // SAFETY: valid for writes (contract); the slot fits `Inner` and is aligned for it
    // (checked at compile time by `handle!`).
    unsafe {
        H::tag(h).write(0);
        H::slot(h).write(v);
        H::tag(h).write(H::TAG);
    }
    SB_OK
}

/// The object in the opened handle at `h`.
///
/// # Safety
///
/// `h` is null or valid for reads and writes of `H`, aligned, and, if its tag says
/// opened, was opened by [`put`] and not moved since; no other reference to its object
/// exists while the returned one is used.
pub(crate) unsafe fn get<'a, H: Handle>(h: *mut H) -> Result<&'a mut H::Inner, sb_status> {
    if h.is_null() || !h.is_aligned() {
        return Err(SB_ERR_INVALID);
    }
    // SAFETY: valid for reads (contract).
    if unsafe { H::tag(h).read() } != H::TAG {
        return Err(SB_ERR_NOT_OPEN);
    }
    // SAFETY: the tag says `put` stored an `Inner` there, and it was not moved.
    Ok(unsafe { &mut *H::slot(h) })
}
