//! virtio-blk's flush (`VIRTIO_BLK_T_FLUSH`) for a frontend whose device may restart
//! while the flush is in flight.
//!
//! `virtio_drivers::device::blk::VirtIOBlk` 0.13 has non-blocking reads and writes but
//! only a blocking `flush`, which spins on the used ring: a device side that restarts with
//! the flush in flight (a new epoch, every request in flight dropped) never completes it,
//! and the spin never ends. [`BlkFlush`] is the same request on a driver of its own —
//! virtio-drivers' `VirtQueue` on queue 0, the features and queue size `VirtIOBlk`
//! negotiates — that sleeps on the link's doorbell and ends with [`FlushError::Reset`]
//! when the device restarted or needs a reset, so the caller can initialise it again and
//! re-issue the flush, as it does its other requests.
//!
//! It owns queue 0, so it replaces the block driver: drop the `VirtIOBlk` first (its drop
//! disables the queue), attach the DMA pool afresh (as before any new driver), make a
//! [`BlkFlush`] over the same link and [`flush`](BlkFlush::flush). The device is reset and
//! initialised again for it; that drops nothing a driver with no request in flight cares
//! about (a flush concerns every write completed before it, whichever queue setup carried
//! it).

use crate::frontend::{CallError, Link, MsgTransport};
use bitflags::bitflags;
use staticbus_guest::Events;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{Immutable, IntoBytes};

bitflags! {
    /// The virtio-blk feature bits `VirtIOBlk` 0.13 negotiates (virtio 1.2, 5.2.3 and 6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct BlkFeatures: u64 {
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const RING_INDIRECT_DESC = 1 << 28;
        const RING_EVENT_IDX = 1 << 29;
        const VERSION_1 = 1 << 32;
    }
}

/// `VirtIOBlk`'s queue size (its `QUEUE_SIZE`).
pub const QUEUE_SIZE: usize = 16;
/// `VIRTIO_BLK_T_FLUSH`.
const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_S_OK`.
const S_OK: u8 = 0;

/// `struct virtio_blk_req`'s header (virtio 1.2, 5.2.6): type, reserved, sector.
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct OutHdr {
    type_: U32,
    reserved: U32,
    sector: U64,
}

/// Why a flush did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushError {
    /// The device restarted or needs a reset: initialise a new [`BlkFlush`] and flush again.
    Reset,
    /// A control request failed otherwise.
    Call(CallError),
    /// virtio-drivers refused (setting up the queue, adding or popping the request).
    Driver(virtio_drivers::Error),
    /// The device completed the flush with this status (`VIRTIO_BLK_S_IOERR` 1,
    /// `VIRTIO_BLK_S_UNSUPP` 2).
    Status(u8),
}

impl core::fmt::Display for FlushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FlushError::Reset => write!(f, "the device needs a reset (it restarted or failed)"),
            FlushError::Call(e) => write!(f, "{e}"),
            FlushError::Driver(e) => write!(f, "{e}"),
            FlushError::Status(s) => write!(f, "the device completed the flush with status {s}"),
        }
    }
}

impl core::error::Error for FlushError {}

/// A virtio-blk driver that only flushes (see the module documentation).
pub struct BlkFlush<'l, H: Hal, E: Events> {
    link: &'l Link<E>,
    transport: MsgTransport<'l, E>,
    queue: VirtQueue<H, QUEUE_SIZE>,
    offered: bool,
}

impl<'l, H: Hal, E: Events> BlkFlush<'l, H, E> {
    /// Initialises the device as `VirtIOBlk::new` does (same features, queue 0 of
    /// [`QUEUE_SIZE`]), with `H`'s DMA pool attached.
    pub fn new(link: &'l Link<E>) -> Result<Self, FlushError> {
        let mut transport = link.transport().map_err(|e| match e {
            CallError::Reset => FlushError::Reset,
            e => FlushError::Call(e),
        })?;
        let want = BlkFeatures::RO
            | BlkFeatures::FLUSH
            | BlkFeatures::RING_INDIRECT_DESC
            | BlkFeatures::RING_EVENT_IDX
            | BlkFeatures::VERSION_1;
        let feat = transport.begin_init(want);
        let queue = VirtQueue::new(
            &mut transport,
            0,
            feat.contains(BlkFeatures::RING_INDIRECT_DESC),
            feat.contains(BlkFeatures::RING_EVENT_IDX),
        );
        let queue = match queue {
            Ok(q) => q,
            Err(_) if link.needs_reset() => return Err(FlushError::Reset),
            Err(e) => return Err(FlushError::Driver(e)),
        };
        transport.finish_init();
        if link.needs_reset() {
            return Err(FlushError::Reset);
        }
        Ok(BlkFlush {
            link,
            transport,
            queue,
            offered: feat.contains(BlkFeatures::FLUSH),
        })
    }

    /// Whether the device offered `VIRTIO_BLK_F_FLUSH` (without it [`flush`](Self::flush)
    /// sends nothing, as `VirtIOBlk::flush` does).
    pub fn offered(&self) -> bool {
        self.offered
    }

    /// Flushes: sends `VIRTIO_BLK_T_FLUSH` and sleeps on the doorbell until the device
    /// completes it. Consumes the driver, which is done with either way; after
    /// [`FlushError::Reset`] attach the DMA pool afresh before the next driver (the device
    /// side may still write the abandoned request's bounce buffer).
    pub fn flush(mut self) -> Result<(), FlushError> {
        if !self.offered {
            return Ok(());
        }
        let hdr = OutHdr {
            type_: U32::new(T_FLUSH),
            reserved: U32::new(0),
            sector: U64::new(0),
        };
        let mut status = [0xffu8];
        let link = self.link;
        // SAFETY: hdr and status are neither moved nor touched until the request is popped
        // below. When it is abandoned (a device restart) this function returns without
        // popping and the queue is dropped with `self`: the device only ever sees the DMA
        // pool's bounce buffers (RegionHal), never hdr or status, and the caller forgets
        // the pool before the next driver.
        let token = match unsafe { self.queue.add(&[hdr.as_bytes()], &mut [&mut status]) } {
            Ok(t) => t,
            Err(_) if link.needs_reset() => return Err(FlushError::Reset),
            Err(e) => return Err(FlushError::Driver(e)),
        };
        if self.queue.should_notify() {
            self.transport.notify(0);
        }
        while self.queue.peek_used() != Some(token) {
            match link.wait_used() {
                Ok(_) => {}
                Err(CallError::Reset) => return Err(FlushError::Reset),
                Err(e) => return Err(FlushError::Call(e)),
            }
        }
        // SAFETY: the same buffers as added above.
        unsafe {
            self.queue
                .pop_used(token, &[hdr.as_bytes()], &mut [&mut status])
        }
        .map_err(FlushError::Driver)?;
        match status[0] {
            S_OK => Ok(()),
            s => Err(FlushError::Status(s)),
        }
    }
}

impl<H: Hal, E: Events> Drop for BlkFlush<'_, H, E> {
    fn drop(&mut self) {
        self.transport.queue_unset(0);
    }
}
