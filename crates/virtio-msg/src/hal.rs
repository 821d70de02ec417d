//! The frontend's DMA: a page allocator over the region's DMA area, and virtio-drivers'
//! [`Hal`] on top of it — every virtqueue and every buffer the device sees lies in the
//! shared region. Buffers a driver passes from its own memory are bounced through pages
//! of the pool ([`Hal::share`] copies in, [`Hal::unshare`] copies out).
//!
//! `Hal`'s functions take no `self`, so the pool a [`RegionHal`] uses is found through a
//! type: implement [`PoolOf`] for a marker type returning a `static` [`DmaPool`] (one
//! pool per region; see the crate example).

use crate::layout::{DMA_OFFSET, MAX_DMA_PAGES, PAGE};
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
use staticbus_guest::Region;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

const WORDS: usize = MAX_DMA_PAGES / 64;

/// A page allocator over a region's DMA area. `const`-constructible, so it can be a
/// `static`; usable once [`DmaPool::attach`]ed.
pub struct DmaPool {
    lock: AtomicBool,
    base: AtomicPtr<u8>,
    len: AtomicUsize,
    pages: AtomicUsize,
    guest_base: AtomicU64,
    map: [AtomicU64; WORDS],
    used: AtomicUsize,
}

impl core::fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaPool")
            .field("pages", &self.pages.load(Relaxed))
            .field("used", &self.used.load(Relaxed))
            .finish()
    }
}

impl Default for DmaPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds the [`DmaPool`] of a [`RegionHal`].
pub trait PoolOf {
    /// The pool.
    fn pool() -> &'static DmaPool;
}

impl DmaPool {
    /// An empty pool (no region yet).
    pub const fn new() -> Self {
        DmaPool {
            lock: AtomicBool::new(false),
            base: AtomicPtr::new(core::ptr::null_mut()),
            len: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
            guest_base: AtomicU64::new(0),
            map: [const { AtomicU64::new(0) }; WORDS],
            used: AtomicUsize::new(0),
        }
    }

    /// Manages the DMA area of `region`, which the frontend sees at guest-physical
    /// `guest_base`. Forgets every earlier allocation. The region's memory must stay
    /// mapped until [`DmaPool::detach`] (the promise of [`Region::new`] covers this
    /// copy of the handle).
    pub fn attach(&self, region: Region, guest_base: u64) {
        self.with_lock(|| {
            let pages = region.len().saturating_sub(DMA_OFFSET) / PAGE;
            for w in &self.map {
                w.store(0, Relaxed);
            }
            self.base.store(region.as_ptr(), Relaxed);
            self.len.store(region.len(), Relaxed);
            self.pages.store(pages.min(MAX_DMA_PAGES), Relaxed);
            self.guest_base.store(guest_base, Relaxed);
            self.used.store(0, Relaxed);
        });
    }

    /// Stops using the region: every later allocation fails.
    pub fn detach(&self) {
        self.with_lock(|| {
            self.pages.store(0, Relaxed);
            self.base.store(core::ptr::null_mut(), Relaxed);
            self.len.store(0, Relaxed);
        });
    }

    /// Pages in use.
    pub fn used_pages(&self) -> usize {
        self.used.load(Relaxed)
    }

    fn with_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        while self
            .lock
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        let r = f();
        self.lock.store(false, Release);
        r
    }

    fn region(&self) -> Option<Region> {
        let base = self.base.load(Relaxed);
        // SAFETY: `base` and `len` are those of the region `attach` was given (stored
        // together under the lock), whose creator promised the memory stays mapped and is
        // accessed only through `Region`s; this handle is one more copy of it.
        unsafe { Region::new(base, self.len.load(Relaxed)) }
    }

    fn bit(&self, page: usize) -> bool {
        self.map[page / 64].load(Relaxed) & (1 << (page % 64)) != 0
    }

    fn set(&self, page: usize, on: bool) {
        let w = &self.map[page / 64];
        let m = 1u64 << (page % 64);
        let v = w.load(Relaxed);
        w.store(if on { v | m } else { v & !m }, Relaxed);
    }

    /// Allocates `pages` contiguous zeroed pages: their guest-physical address and
    /// region offset.
    pub fn alloc(&self, pages: usize) -> Option<(u64, usize)> {
        let got = self.with_lock(|| {
            let total = self.pages.load(Relaxed);
            if pages == 0 || pages > total {
                return None;
            }
            let mut start = 0;
            while start + pages <= total {
                match (start..start + pages).find(|&p| self.bit(p)) {
                    Some(busy) => start = busy + 1,
                    None => {
                        for p in start..start + pages {
                            self.set(p, true);
                        }
                        self.used.fetch_add(pages, Relaxed);
                        return Some(start);
                    }
                }
            }
            None
        })?;
        let offset = DMA_OFFSET + got * PAGE;
        let region = self.region()?;
        let zero = [0u8; 256];
        for at in (offset..offset + pages * PAGE).step_by(zero.len()) {
            region.write_bytes(at, &zero).ok()?;
        }
        Some((self.guest_base.load(Relaxed) + offset as u64, offset))
    }

    /// Frees `pages` pages at guest-physical `gpa` (from [`DmaPool::alloc`]). Returns
    /// false (and frees nothing) for a range it did not hand out.
    pub fn free(&self, gpa: u64, pages: usize) -> bool {
        self.with_lock(|| {
            let Some(first) = self.page_of(gpa) else {
                return false;
            };
            let total = self.pages.load(Relaxed);
            if first + pages > total || !(first..first + pages).all(|p| self.bit(p)) {
                return false;
            }
            for p in first..first + pages {
                self.set(p, false);
            }
            self.used.fetch_sub(pages, Relaxed);
            true
        })
    }

    fn page_of(&self, gpa: u64) -> Option<usize> {
        let off = usize::try_from(gpa.checked_sub(self.guest_base.load(Relaxed))?).ok()?;
        let rel = off.checked_sub(DMA_OFFSET)?;
        (rel % PAGE == 0).then_some(rel / PAGE)
    }

    /// The region offset of guest-physical `gpa`, if it is in the region.
    pub fn offset_of(&self, gpa: u64) -> Option<usize> {
        let off = usize::try_from(gpa.checked_sub(self.guest_base.load(Relaxed))?).ok()?;
        (off < self.len.load(Relaxed)).then_some(off)
    }
}

/// virtio-drivers' [`Hal`] over the [`DmaPool`] that `P` names.
#[derive(Debug)]
pub struct RegionHal<P>(PhantomData<P>);

fn pages_for(len: usize) -> usize {
    len.div_ceil(PAGE).max(1)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned (relative to the region base, which
// transports map page-aligned) runs of pool pages that no other allocation overlaps until
// freed, with `vaddr` pointing at the same bytes the device sees at `paddr`; `share`
// returns a bounce buffer of the same kind holding a copy of the driver's buffer, and
// `unshare` copies it back and frees it.
unsafe impl<P: PoolOf> Hal for RegionHal<P> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let pool = P::pool();
        match (pool.alloc(pages), pool.region()) {
            (Some((gpa, off)), Some(region)) => {
                // SAFETY: `off` is inside the region (`alloc` only hands out its pages).
                let vaddr = unsafe { region.as_ptr().add(off) };
                (gpa, NonNull::new(vaddr).unwrap_or(NonNull::dangling()))
            }
            // virtio-drivers treats physical address 0 as failure (`Error::DmaError`).
            _ => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if P::pool().free(paddr, pages) {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // The virtio-msg transport has no MMIO; answer with the region address if asked.
        let pool = P::pool();
        match (pool.offset_of(paddr), pool.region()) {
            (Some(off), Some(r)) => {
                // SAFETY: `off < r.len()` (`offset_of`): the pointer stays inside the region.
                let p = unsafe { r.as_ptr().add(off) };
                NonNull::new(p).unwrap_or(NonNull::dangling())
            }
            _ => NonNull::dangling(),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let pool = P::pool();
        let len = buffer.len();
        let (Some((gpa, off)), Some(region)) = (pool.alloc(pages_for(len)), pool.region()) else {
            // Out of pool pages: an address outside the region, which the device refuses.
            return 0;
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller (virtio-drivers) passes a buffer valid for reads of its
            // length for the duration of the call; it is private memory, not the region.
            let src = unsafe { buffer.as_ref() };
            if region.write_bytes(off, src).is_err() {
                pool.free(gpa, pages_for(len));
                return 0;
            }
        }
        gpa
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        let pool = P::pool();
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            if let (Some(off), Some(region)) = (pool.offset_of(paddr), pool.region()) {
                // SAFETY: the caller passes the buffer it shared, valid for writes and not
                // otherwise accessed during this call.
                let dst = unsafe { buffer.as_mut() };
                let _ = region.read_bytes(off, dst);
            }
        }
        pool.free(paddr, pages_for(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_guest::fake::Backing;

    static POOL: DmaPool = DmaPool::new();
    struct P;
    impl PoolOf for P {
        fn pool() -> &'static DmaPool {
            &POOL
        }
    }

    #[test]
    fn allocates_frees_and_bounces() {
        let mem = Backing::new(0x6000);
        let r = mem.region(0x6000);
        POOL.attach(r, 0x8000_0000);
        let a = POOL.alloc(2).unwrap();
        assert_eq!(a, (0x8000_1000, 0x1000));
        let b = POOL.alloc(2).unwrap();
        assert_eq!(b.1, 0x3000);
        assert_eq!(POOL.alloc(2), None, "only one page left");
        assert!(!POOL.free(0x8000_1800, 1), "not a page start");
        assert!(POOL.free(a.0, 2));
        assert!(!POOL.free(a.0, 2), "twice");
        assert_eq!(POOL.used_pages(), 2);
        let mut data = *b"bounce me";
        let buf = NonNull::from(&mut data[..]);
        // SAFETY: `buf` is a live private buffer.
        let gpa = unsafe { RegionHal::<P>::share(buf, BufferDirection::Both) };
        let off = POOL.offset_of(gpa).unwrap();
        let mut seen = [0u8; 9];
        r.read_bytes(off, &mut seen).unwrap();
        assert_eq!(&seen, b"bounce me");
        r.write_bytes(off, b"bounced!!").unwrap();
        // SAFETY: as above; shared by the call before.
        unsafe { RegionHal::<P>::unshare(gpa, buf, BufferDirection::Both) };
        assert_eq!(&data, b"bounced!!");
        let (p, v) = RegionHal::<P>::dma_alloc(1, BufferDirection::Both);
        assert_ne!(p, 0);
        // SAFETY: freed once, as allocated.
        assert_eq!(unsafe { RegionHal::<P>::dma_dealloc(p, v, 1) }, 0);
        POOL.detach();
        assert_eq!(RegionHal::<P>::dma_alloc(1, BufferDirection::Both).0, 0);
    }
}
