//! `virtio-drivers` over the bridge, in one process: a real driver on one side, a real
//! daemon on the other (feature `driver`; for tests and benchmarks).
//!
//! - [`ShmHal`] is `virtio-drivers`' `Hal`: every DMA allocation (the rings) and every
//!   shared buffer (bounced: copied in on share, out on unshare) comes from one process-wide
//!   [`arena`], a memfd-backed [`SharedRegion`] at guest-physical [`ARENA_BASE`]. Physical
//!   addresses the driver puts in descriptors are guest-physical addresses in it — exactly
//!   what a frontend partition does with a staticbus region.
//! - [`BridgeTransport`] is `virtio-drivers`' `Transport` over a [`Bridge`] whose memory is
//!   that arena.
//! - [`Blk`] drives `VirtIOBlk` with its non-blocking calls and waits on the bridge with a
//!   bound, so a daemon that dies ends a request with an error instead of a spinning
//!   driver.
//!
//! `Hal`'s functions are free functions (no `self`), hence one arena per process; every
//! bridge of the process uses it as its region. A request abandoned because the daemon
//! failed is never completed, so its bounce pages stay allocated (a few pages per failure).

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::{Bridge, Error, QueueConfig, SharedRegion, PAGE_SIZE};

/// Guest-physical address of the arena's first byte.
pub const ARENA_BASE: u64 = 0x4000_0000;
/// The arena's size: 64 MiB.
pub const ARENA_SIZE: u64 = 64 << 20;

/// The process-wide DMA arena: a shared region and a first-fit page allocator over it.
pub struct Arena {
    region: Arc<SharedRegion>,
    /// Free runs: first page index → page count.
    free: Mutex<BTreeMap<u64, u64>>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The arena (created on first use; panics if the memfd cannot be made, as `Hal` cannot
/// return an error).
pub fn arena() -> &'static Arena {
    static ARENA: OnceLock<Arena> = OnceLock::new();
    ARENA.get_or_init(|| {
        let region = SharedRegion::memfd("staticbus-vhost-bridge-arena", ARENA_SIZE, ARENA_BASE)
            .unwrap_or_else(|e| panic!("cannot create the DMA arena: {e}"));
        Arena::new(Arc::new(region))
    })
}

impl Arena {
    fn new(region: Arc<SharedRegion>) -> Self {
        let pages = region.size() / PAGE_SIZE;
        Self {
            region,
            free: Mutex::new(BTreeMap::from([(0, pages)])),
        }
    }

    /// The region the arena allocates from (what a [`Bridge`] is connected with).
    pub fn region(&self) -> &Arc<SharedRegion> {
        &self.region
    }

    /// Free pages left.
    pub fn free_pages(&self) -> u64 {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Allocates `pages` contiguous pages; returns their guest-physical address.
    fn alloc(&self, pages: u64) -> Option<u64> {
        let pages = pages.max(1);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (&start, &len) = free.iter().find(|(_, &len)| len >= pages)?;
        free.remove(&start);
        if len > pages {
            free.insert(start + pages, len - pages);
        }
        Some(self.region.guest_base() + start * PAGE_SIZE)
    }

    /// Returns pages to the free runs, merging neighbours.
    fn dealloc(&self, gpa: u64, pages: u64) {
        let pages = pages.max(1);
        let mut start = (gpa - self.region.guest_base()) / PAGE_SIZE;
        let mut len = pages;
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((&prev, &plen)) = free.range(..start).next_back() {
            assert!(prev + plen <= start, "double free of DMA pages at {gpa:#x}");
            if prev + plen == start {
                free.remove(&prev);
                start = prev;
                len += plen;
            }
        }
        if let Some((&next, &nlen)) = free.range(start..).next() {
            assert!(start + len <= next, "double free of DMA pages at {gpa:#x}");
            if start + len == next {
                free.remove(&next);
                len += nlen;
            }
        }
        free.insert(start, len);
    }

    /// The arena's memory offset of guest-physical `gpa`.
    fn at(&self, gpa: u64) -> GuestAddress {
        GuestAddress(gpa - self.region.guest_base())
    }

    fn host_ptr(&self, gpa: u64) -> NonNull<u8> {
        let ptr = self
            .region
            .memory()
            .get_host_address(self.at(gpa))
            .unwrap_or_else(|e| panic!("{gpa:#x} is not in the DMA arena: {e}"));
        NonNull::new(ptr).expect("the arena's mapping is not at address 0")
    }
}

fn pages_for(len: usize) -> u64 {
    (len as u64).div_ceil(PAGE_SIZE)
}

/// `virtio-drivers`' `Hal` over the [`arena`]: DMA pages and bounce buffers in the shared
/// region, physical addresses = the frontend's guest-physical addresses.
#[derive(Debug)]
pub struct ShmHal;

// SAFETY: dma_alloc returns page-aligned (the arena and its mapping are page-aligned and
// allocations are whole pages), zeroed pages of a live shared mapping that no other
// allocation overlaps until dma_dealloc (the allocator hands out disjoint runs); share
// returns addresses of freshly allocated bounce pages of the same arena.
unsafe impl Hal for ShmHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let a = arena();
        let gpa = a
            .alloc(pages as u64)
            .unwrap_or_else(|| panic!("the DMA arena has no {pages} free contiguous pages"));
        let len = pages.max(1) * PAGE_SIZE as usize;
        a.region
            .memory()
            .write_slice(&vec![0u8; len], a.at(gpa))
            .expect("zeroing pages inside the arena");
        (gpa, a.host_ptr(gpa))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        arena().dealloc(paddr, pages as u64);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // This transport has no MMIO (it is only used by PCI transports for BARs); an
        // address in the arena is still translated so that the answer is never wrong.
        assert!(
            arena().region.contains(paddr, size as u64),
            "mmio_phys_to_virt({paddr:#x}, {size}): the bridge transport has no MMIO"
        );
        arena().host_ptr(paddr)
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let a = arena();
        let len = buffer.len();
        let gpa = a
            .alloc(pages_for(len))
            .unwrap_or_else(|| panic!("the DMA arena has no room for a {len}-byte bounce buffer"));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid and not accessed by others
            // during this call.
            let src = unsafe { buffer.as_ref() };
            a.region
                .memory()
                .write_slice(src, a.at(gpa))
                .expect("bounce buffer inside the arena");
        }
        gpa
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        let a = arena();
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the caller guarantees `buffer` is valid and not accessed by others
            // during this call.
            let dst = unsafe { buffer.as_mut() };
            a.region
                .memory()
                .read_slice(dst, a.at(paddr))
                .expect("bounce buffer inside the arena");
        }
        a.dealloc(paddr, pages_for(buffer.len()));
    }
}

/// `VIRTIO_F_EVENT_IDX` (29): hidden from the driver by default, because `virtio-drivers`
/// 0.13 decides whether to kick by comparing `avail_idx >= avail_event + 1` without
/// wrap-around, which stops kicking once the 16-bit index wraps (after 65,536 requests).
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;

/// `virtio-drivers`' `Transport` over a [`Bridge`].
///
/// `Transport`'s methods cannot fail; a bridge error is kept and can be taken with
/// [`BridgeTransport::take_error`] (the device also shows `DEVICE_NEEDS_RESET` after a
/// daemon failure).
#[derive(Debug)]
pub struct BridgeTransport {
    bridge: Arc<Bridge>,
    device_type: DeviceType,
    hidden_features: u64,
    error: Mutex<Option<Error>>,
}

impl BridgeTransport {
    /// A transport for `bridge`, whose region must be the [`arena`]'s.
    pub fn new(bridge: Arc<Bridge>) -> Result<Self, Error> {
        if !Arc::ptr_eq(bridge.region(), arena().region()) {
            return Err(Error::Driver {
                why: "the bridge's region is not the DMA arena ShmHal allocates from".into(),
            });
        }
        let device_type =
            DeviceType::try_from(bridge.device_type()).map_err(|e| Error::Driver {
                why: format!(
                    "virtio-drivers has no driver for device type {}: {e}",
                    bridge.device_type()
                ),
            })?;
        Ok(Self {
            bridge,
            device_type,
            hidden_features: VIRTIO_F_EVENT_IDX,
            error: Mutex::new(None),
        })
    }

    /// Hides `features` from the driver (replaces the default, [`VIRTIO_F_EVENT_IDX`]).
    pub fn hide_features(mut self, features: u64) -> Self {
        self.hidden_features = features;
        self
    }

    /// The bridge.
    pub fn bridge(&self) -> &Arc<Bridge> {
        &self.bridge
    }

    /// The first bridge error since the last call, if any.
    pub fn take_error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn keep(&self, r: Result<(), Error>) {
        if let Err(e) = r {
            let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }
}

impl Transport for BridgeTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.bridge.device_features() & !self.hidden_features
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.keep(self.bridge.set_driver_features(driver_features));
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        u32::from(self.bridge.max_queue_size(queue))
    }

    fn notify(&mut self, queue: u16) {
        self.keep(self.bridge.notify(queue));
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(u32::from(self.bridge.status()))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        // Only the low byte is a status; virtio-drivers never sets more.
        self.keep(self.bridge.set_status(status.bits() as u8));
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // A modern (non-legacy) transport: queue parts are given by address, not by PFN.
    }

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let r = match u16::try_from(size) {
            Ok(size) => self.bridge.set_queue(
                queue,
                QueueConfig {
                    size,
                    desc: descriptors,
                    driver: driver_area,
                    device: device_area,
                },
            ),
            Err(_) => Err(Error::Driver {
                why: format!("queue {queue}: size {size} > 65535"),
            }),
        };
        self.keep(r);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.keep(self.bridge.reset_queue(queue));
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.bridge.queue(queue).is_some()
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        match self.bridge.wait(Duration::ZERO) {
            Ok(0) => InterruptStatus::empty(),
            Ok(_) => InterruptStatus::QUEUE_INTERRUPT,
            Err(e) => {
                self.keep(Err(e));
                InterruptStatus::empty()
            }
        }
    }

    fn read_config_generation(&self) -> u32 {
        // vhost-user has no generation counter; GET_CONFIG answers are read whole.
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let mut buf = vec![0u8; std::mem::size_of::<T>()];
        let offset =
            u32::try_from(offset).map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)?;
        if let Err(e) = self.bridge.read_config(offset, &mut buf) {
            self.keep(Err(e));
            return Err(virtio_drivers::Error::ConfigSpaceMissing);
        }
        T::read_from_bytes(&buf).map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let offset =
            u32::try_from(offset).map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)?;
        match self.bridge.write_config(offset, value.as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.keep(Err(e));
                Err(virtio_drivers::Error::ConfigSpaceMissing)
            }
        }
    }
}

/// Polls `done` until it yields, waiting on the bridge's call eventfds in between, for at
/// most `timeout` in all. A daemon failure ends the wait with its error; running out of
/// time gives [`Error::Timeout`].
pub fn wait_until<T>(
    bridge: &Bridge,
    timeout: Duration,
    what: &'static str,
    mut done: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what,
                after: timeout,
            });
        }
        bridge.wait(deadline - now)?;
    }
}

/// A block device: `virtio-drivers`' `VirtIOBlk` over the bridge, one request at a time,
/// each waited for at most the given timeout.
pub struct Blk {
    dev: VirtIOBlk<ShmHal, BridgeTransport>,
    bridge: Arc<Bridge>,
    timeout: Duration,
    spin: Duration,
}

impl std::fmt::Debug for Blk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blk")
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

/// A `virtio-drivers` error, or the bridge error behind it.
fn driver_error(e: virtio_drivers::Error, transport_error: Option<Error>) -> Error {
    transport_error.unwrap_or_else(|| Error::Driver {
        why: format!("virtio-drivers: {e}"),
    })
}

impl Blk {
    /// Initialises `VirtIOBlk` on `bridge` (resetting the device, which re-attaches a
    /// failed bridge to its daemon).
    pub fn new(bridge: Arc<Bridge>, timeout: Duration) -> Result<Self, Error> {
        let transport = BridgeTransport::new(Arc::clone(&bridge))?;
        let dev = VirtIOBlk::<ShmHal, _>::new(transport).map_err(|e| driver_error(e, None))?;
        if let Some(cause) = bridge.failure() {
            return Err(Error::NeedsReset { cause });
        }
        if bridge.status() & crate::status::DRIVER_OK == 0 {
            return Err(Error::Driver {
                why: format!("the device did not start (status {:#x})", bridge.status()),
            });
        }
        Ok(Self {
            dev,
            bridge,
            timeout,
            spin: Duration::ZERO,
        })
    }

    /// Polling mode: each request first watches the used ring for up to `spin` before it
    /// sleeps on the call eventfd (0, the default, sleeps at once).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.dev.capacity()
    }

    /// Reads `buf.len()` bytes (a multiple of 512) from byte `offset` (a multiple of 512).
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let sector = Self::sector(offset, buf.len())?;
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: req, buf and resp are not touched until complete_read_blocks below, and
        // on every early return the request is abandoned with them still borrowed here
        // (the bounce buffers hold the device's view, not these).
        let token = unsafe { self.dev.read_blocks_nb(sector, &mut req, buf, &mut resp) }
            .map_err(|e| driver_error(e, None))?;
        self.wait(token)?;
        // SAFETY: the same req, buf and resp as given to read_blocks_nb.
        unsafe { self.dev.complete_read_blocks(token, &req, buf, &mut resp) }
            .map_err(|e| driver_error(e, None))
    }

    /// Writes `buf` (a multiple of 512 bytes) at byte `offset` (a multiple of 512).
    pub fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        let sector = Self::sector(offset, buf.len())?;
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: as in read.
        let token = unsafe { self.dev.write_blocks_nb(sector, &mut req, buf, &mut resp) }
            .map_err(|e| driver_error(e, None))?;
        self.wait(token)?;
        // SAFETY: the same req, buf and resp as given to write_blocks_nb.
        unsafe { self.dev.complete_write_blocks(token, &req, buf, &mut resp) }
            .map_err(|e| driver_error(e, None))
    }

    /// Reads every `(offset, buffer)` of `reads` with as many requests in flight as the
    /// queue holds (16 with indirect descriptors, 5 without), completing them in the order
    /// the device finishes them. Stops at the first error.
    pub fn read_many(&mut self, reads: &mut [(u64, &mut [u8])]) -> Result<(), Error> {
        struct Slot {
            index: usize,
            req: BlkReq,
            resp: BlkResp,
        }
        // Boxed so that their addresses stay put while the device holds them.
        let mut flight: BTreeMap<u16, Box<Slot>> = BTreeMap::new();
        let mut next = 0;
        while next < reads.len() || !flight.is_empty() {
            while next < reads.len() {
                let (offset, buf) = &mut reads[next];
                let sector = Self::sector(*offset, buf.len())?;
                let mut slot = Box::new(Slot {
                    index: next,
                    req: BlkReq::default(),
                    resp: BlkResp::default(),
                });
                let Slot { req, resp, .. } = &mut *slot;
                // SAFETY: req and resp live in the box kept in `flight`, and buf in `reads`,
                // untouched until complete_read_blocks below; an abandoned request is only
                // seen by the bounce buffers (ShmHal), never by these.
                match unsafe { self.dev.read_blocks_nb(sector, req, buf, resp) } {
                    Ok(token) => {
                        flight.insert(token, slot);
                        next += 1;
                    }
                    Err(virtio_drivers::Error::QueueFull) if !flight.is_empty() => break,
                    Err(e) => return Err(driver_error(e, None)),
                }
            }
            let dev = &mut self.dev;
            let token = wait_until(&self.bridge, self.timeout, "a block request", || {
                dev.peek_used().filter(|t| flight.contains_key(t))
            })?;
            let mut slot = flight.remove(&token).expect("a token in flight");
            let Slot { index, req, resp } = &mut *slot;
            let buf = &mut *reads[*index].1;
            // SAFETY: the same req, buf and resp as given to read_blocks_nb for this token.
            unsafe { self.dev.complete_read_blocks(token, req, buf, resp) }
                .map_err(|e| driver_error(e, None))?;
        }
        Ok(())
    }

    /// Flushes the device's write cache.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.dev.flush().map_err(|e| driver_error(e, None))
    }

    fn sector(offset: u64, len: usize) -> Result<usize, Error> {
        if offset % 512 != 0 || len % 512 != 0 || len == 0 {
            return Err(Error::Driver {
                why: format!("block access of {len} bytes at {offset}: both must be non-zero multiples of 512"),
            });
        }
        usize::try_from(offset / 512).map_err(|_| Error::Driver {
            why: format!("offset {offset} too large"),
        })
    }

    fn wait(&mut self, token: u16) -> Result<(), Error> {
        let dev = &mut self.dev;
        if !self.spin.is_zero() {
            let until = Instant::now() + self.spin;
            loop {
                if dev.peek_used() == Some(token) {
                    return Ok(());
                }
                if Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        wait_until(&self.bridge, self.timeout, "a block request", || {
            (dev.peek_used() == Some(token)).then_some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_allocates_disjoint_runs_and_merges_freed_ones() {
        let region = SharedRegion::memfd("t", 16 * PAGE_SIZE, 0x1000_0000).unwrap();
        let a = Arena::new(Arc::new(region));
        let x = a.alloc(4).unwrap();
        let y = a.alloc(4).unwrap();
        let z = a.alloc(8).unwrap();
        assert_eq!((x, y, z), (0x1000_0000, 0x1000_4000, 0x1000_8000));
        assert_eq!(a.alloc(1), None, "full");
        a.dealloc(y, 4);
        assert_eq!(a.alloc(5), None, "a 4-page hole does not hold 5");
        a.dealloc(x, 4);
        assert_eq!(a.alloc(8), Some(x), "the two freed neighbours merged");
        a.dealloc(x, 8);
        a.dealloc(z, 8);
        assert_eq!(a.free_pages(), 16);
        assert_eq!(a.free.lock().unwrap().len(), 1, "one run again");
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn a_double_free_is_caught() {
        let region = SharedRegion::memfd("t", 4 * PAGE_SIZE, 0).unwrap();
        let a = Arena::new(Arc::new(region));
        let x = a.alloc(1).unwrap();
        let _y = a.alloc(1).unwrap();
        a.dealloc(x, 1);
        a.dealloc(x, 1);
    }
}
