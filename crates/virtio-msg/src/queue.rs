//! The device side of a split virtqueue (virtio 1.2 §2.7) over memory a hostile frontend
//! writes: every index, descriptor and address is copied once, checked, then used, and
//! nothing outside the region's DMA area is ever touched (docs/virtio.md §5).

use core::ops::Range;
use core::sync::atomic::Ordering::{Acquire, Release};
use staticbus_guest::Region;

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable.
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds an indirect table (not negotiated: refused).
pub const DESC_F_INDIRECT: u16 = 4;
/// Available-ring flag: the driver asks for no used-buffer notifications.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest queue size (virtio's limit for split queues).
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Longest descriptor chain the device side accepts.
pub const MAX_CHAIN: usize = 64;

/// A queue's guest-physical addresses from SET_VQUEUE and the region offsets they were
/// validated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Queue size (a power of two).
    pub size: u16,
    /// Descriptor table, guest-physical.
    pub desc_gpa: u64,
    /// Driver area (available ring), guest-physical.
    pub driver_gpa: u64,
    /// Device area (used ring), guest-physical.
    pub device_gpa: u64,
    /// Descriptor table, region offset.
    pub desc: usize,
    /// Available ring, region offset.
    pub avail: usize,
    /// Used ring, region offset.
    pub used: usize,
}

/// What a hostile or broken frontend did to a virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The available index moved more than a queue size past the device's.
    AvailIndex {
        /// Index read.
        avail: u16,
        /// Next index the device expected to consume.
        last: u16,
    },
    /// A head or `next` index beyond the queue.
    DescIndex(u16),
    /// A chain longer than the queue (a loop) or than [`MAX_CHAIN`].
    ChainTooLong,
    /// A buffer outside the region's DMA area.
    Address {
        /// Guest-physical address.
        gpa: u64,
        /// Length.
        len: u32,
    },
    /// An indirect descriptor (never negotiated).
    Indirect,
    /// A device-readable buffer after a device-writable one.
    Order,
    /// The backend found a request it cannot parse (e.g. a blk header too short).
    Request,
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            QueueError::AvailIndex { avail, last } => {
                write!(
                    f,
                    "available index {avail} is more than a queue ahead of {last}"
                )
            }
            QueueError::DescIndex(i) => write!(f, "descriptor index {i} is beyond the queue"),
            QueueError::ChainTooLong => write!(f, "descriptor chain loops or is too long"),
            QueueError::Address { gpa, len } => {
                write!(f, "buffer {gpa:#x}+{len:#x} is outside the shared region")
            }
            QueueError::Indirect => write!(f, "indirect descriptor without the feature"),
            QueueError::Order => write!(f, "device-readable buffer after a writable one"),
            QueueError::Request => write!(f, "malformed request"),
        }
    }
}

/// The frontend's memory as the device side sees it: the region, the frontend's
/// guest-physical address of its start, and the DMA area every buffer must lie in.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    region: Region,
    guest_base: u64,
    dma: (usize, usize),
}

impl Memory {
    /// `region` seen at guest-physical `guest_base`, buffers allowed in `dma`.
    pub fn new(region: Region, guest_base: u64, dma: Range<usize>) -> Memory {
        let end = dma.end.min(region.len());
        Memory {
            region,
            guest_base,
            dma: (dma.start.min(end), end),
        }
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The frontend's guest-physical address of offset 0.
    pub fn guest_base(&self) -> u64 {
        self.guest_base
    }

    /// The region offset of `len` bytes at `gpa`, if they lie in the DMA area and `gpa` is
    /// a multiple of `align`.
    pub fn translate(&self, gpa: u64, len: usize, align: usize) -> Option<usize> {
        let off = usize::try_from(gpa.checked_sub(self.guest_base)?).ok()?;
        let end = off.checked_add(len)?;
        (off >= self.dma.0 && end <= self.dma.1 && gpa % align as u64 == 0).then_some(off)
    }

    /// Validates a queue's three areas (sizes and alignments of virtio 1.2 §2.7).
    pub fn queue_layout(
        &self,
        size: u16,
        desc_gpa: u64,
        driver_gpa: u64,
        device_gpa: u64,
    ) -> Option<QueueLayout> {
        let n = size as usize;
        Some(QueueLayout {
            size,
            desc_gpa,
            driver_gpa,
            device_gpa,
            desc: self.translate(desc_gpa, 16 * n, 16)?,
            avail: self.translate(driver_gpa, 6 + 2 * n, 2)?,
            used: self.translate(device_gpa, 6 + 8 * n, 4)?,
        })
    }
}

/// One buffer of a chain, checked to lie in the DMA area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Region offset.
    pub offset: usize,
    /// Length.
    pub len: u32,
}

/// A descriptor chain taken from the available ring: device-readable segments first,
/// then device-writable ones, all inside the region.
#[derive(Clone, Debug)]
pub struct Chain {
    head: u16,
    segs: [Segment; MAX_CHAIN],
    n: usize,
    readable: usize,
}

impl Chain {
    /// The head descriptor index (what [`SplitQueue::add_used`] returns).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The device-readable segments.
    pub fn readable(&self) -> &[Segment] {
        &self.segs[..self.readable]
    }

    /// The device-writable segments.
    pub fn writable(&self) -> &[Segment] {
        &self.segs[self.readable..self.n]
    }

    /// Total device-readable bytes.
    pub fn readable_len(&self) -> usize {
        self.readable().iter().map(|s| s.len as usize).sum()
    }

    /// Total device-writable bytes.
    pub fn writable_len(&self) -> usize {
        self.writable().iter().map(|s| s.len as usize).sum()
    }

    /// Copies readable bytes from position `pos` (across segments) into `buf`; returns
    /// how many were copied (fewer at the end of the readable part).
    pub fn read_at(&self, region: &Region, mut pos: usize, buf: &mut [u8]) -> usize {
        let mut done = 0;
        for s in self.readable() {
            let len = s.len as usize;
            if pos >= len {
                pos -= len;
                continue;
            }
            let n = (len - pos).min(buf.len() - done);
            if region
                .read_bytes(s.offset + pos, &mut buf[done..done + n])
                .is_err()
            {
                break;
            }
            done += n;
            pos = 0;
            if done == buf.len() {
                break;
            }
        }
        done
    }

    /// Copies `data` into the writable part from position `pos`; returns how many bytes
    /// were written.
    pub fn write_at(&self, region: &Region, mut pos: usize, data: &[u8]) -> usize {
        let mut done = 0;
        for s in self.writable() {
            let len = s.len as usize;
            if pos >= len {
                pos -= len;
                continue;
            }
            let n = (len - pos).min(data.len() - done);
            if region
                .write_bytes(s.offset + pos, &data[done..done + n])
                .is_err()
            {
                break;
            }
            done += n;
            pos = 0;
            if done == data.len() {
                break;
            }
        }
        done
    }
}

/// The device's private state of one queue: the next available entry to take and the
/// next used entry to fill. Never read back from shared memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Next available-ring position to consume.
    pub last_avail: u16,
    /// Next used-ring position to fill.
    pub used_idx: u16,
}

/// A split virtqueue being served: validated layout, the frontend's memory and the
/// device's private indices.
#[derive(Debug)]
pub struct SplitQueue<'a> {
    mem: &'a Memory,
    layout: &'a QueueLayout,
    state: &'a mut QueueState,
    used_added: bool,
}

impl<'a> SplitQueue<'a> {
    /// Serves `layout` (validated by [`Memory::queue_layout`] against `mem`).
    pub fn new(mem: &'a Memory, layout: &'a QueueLayout, state: &'a mut QueueState) -> Self {
        SplitQueue {
            mem,
            layout,
            state,
            used_added: false,
        }
    }

    /// The region the buffers live in.
    pub fn region(&self) -> &Region {
        self.mem.region()
    }

    /// The layout.
    pub fn layout(&self) -> &QueueLayout {
        self.layout
    }

    /// True once [`SplitQueue::add_used`] was called on this handle.
    pub fn used_added(&self) -> bool {
        self.used_added
    }

    /// True if the driver suppressed used-buffer notifications (available-ring flags).
    pub fn notifications_suppressed(&self) -> bool {
        self.region()
            .load_le::<u16>(self.layout.avail, Acquire)
            .is_some_and(|f| f & AVAIL_F_NO_INTERRUPT != 0)
    }

    /// Available entries not yet taken.
    pub fn pending(&self) -> Result<u16, QueueError> {
        let avail = self
            .region()
            .load_le::<u16>(self.layout.avail + 2, Acquire)
            .ok_or(QueueError::Request)?;
        let n = avail.wrapping_sub(self.state.last_avail);
        if n > self.layout.size {
            return Err(QueueError::AvailIndex {
                avail,
                last: self.state.last_avail,
            });
        }
        Ok(n)
    }

    /// Takes the next available chain, validated; `Ok(None)` if there is none.
    pub fn pop(&mut self) -> Result<Option<Chain>, QueueError> {
        if self.pending()? == 0 {
            return Ok(None);
        }
        let size = self.layout.size;
        let slot = self.layout.avail + 4 + 2 * (self.state.last_avail % size) as usize;
        let head = self
            .region()
            .load_le::<u16>(slot, Acquire)
            .ok_or(QueueError::Request)?;
        self.state.last_avail = self.state.last_avail.wrapping_add(1);
        let mut chain = Chain {
            head,
            segs: [Segment::default(); MAX_CHAIN],
            n: 0,
            readable: 0,
        };
        let mut idx = head;
        let mut writable = false;
        loop {
            if idx >= size {
                return Err(QueueError::DescIndex(idx));
            }
            if chain.n >= MAX_CHAIN || chain.n >= size as usize {
                return Err(QueueError::ChainTooLong);
            }
            let mut d = [0u8; 16];
            self.region()
                .read_bytes(self.layout.desc + 16 * idx as usize, &mut d)
                .map_err(|_| QueueError::Request)?;
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            let offset = self
                .mem
                .translate(addr, len as usize, 1)
                .ok_or(QueueError::Address { gpa: addr, len })?;
            if flags & DESC_F_WRITE != 0 {
                writable = true;
            } else if writable {
                return Err(QueueError::Order);
            } else {
                chain.readable += 1;
            }
            chain.segs[chain.n] = Segment { offset, len };
            chain.n += 1;
            if flags & DESC_F_NEXT == 0 {
                return Ok(Some(chain));
            }
            idx = next;
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written, and publishes it.
    pub fn add_used(&mut self, head: u16, len: u32) -> Result<(), QueueError> {
        let size = self.layout.size;
        let elem = self.layout.used + 4 + 8 * (self.state.used_idx % size) as usize;
        let r = *self.region();
        r.store_le::<u32>(elem, head as u32, core::sync::atomic::Ordering::Relaxed)
            .ok_or(QueueError::Request)?;
        r.store_le::<u32>(elem + 4, len, core::sync::atomic::Ordering::Relaxed)
            .ok_or(QueueError::Request)?;
        self.state.used_idx = self.state.used_idx.wrapping_add(1);
        r.store_le::<u16>(self.layout.used + 2, self.state.used_idx, Release)
            .ok_or(QueueError::Request)?;
        self.used_added = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_guest::fake::Backing;

    const BASE: u64 = 0x4000_0000;

    fn put_desc(r: &Region, desc: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        r.write_bytes(desc + 16 * i as usize, &d).unwrap();
    }

    fn offer(r: &Region, avail: usize, size: u16, idx: u16, head: u16) {
        r.store_le::<u16>(avail + 4 + 2 * (idx % size) as usize, head, Release)
            .unwrap();
        r.store_le::<u16>(avail + 2, idx.wrapping_add(1), Release)
            .unwrap();
    }

    #[test]
    fn takes_chains_and_rejects_hostile_ones() {
        let mem = Backing::new(0x8000);
        let r = mem.region(0x8000);
        let m = Memory::new(r, BASE, 0x1000..0x8000);
        assert!(m
            .queue_layout(4, BASE, BASE + 0x100, BASE + 0x200)
            .is_none());
        assert!(m
            .queue_layout(4, BASE + 0x1008, BASE + 0x1100, BASE + 0x1200)
            .is_none());
        assert!(m
            .queue_layout(4, BASE + 0x1000, BASE + 0x1100, BASE + 0x7ffc)
            .is_none());
        let l = m
            .queue_layout(4, BASE + 0x1000, BASE + 0x1100, BASE + 0x1200)
            .unwrap();
        let mut st = QueueState::default();
        let mut q = SplitQueue::new(&m, &l, &mut st);
        assert_eq!(q.pop().unwrap().map(|c| c.head()), None);
        // A two-segment chain: 4 readable bytes, 8 writable.
        r.write_bytes(0x3000, b"ping").unwrap();
        put_desc(&r, l.desc, 1, BASE + 0x3000, 4, DESC_F_NEXT, 3);
        put_desc(&r, l.desc, 3, BASE + 0x3100, 8, DESC_F_WRITE, 0);
        offer(&r, l.avail, 4, 0, 1);
        let c = q.pop().unwrap().unwrap();
        assert_eq!((c.head(), c.readable_len(), c.writable_len()), (1, 4, 8));
        let mut b = [0u8; 8];
        assert_eq!(c.read_at(q.region(), 0, &mut b), 4);
        assert_eq!(&b[..4], b"ping");
        assert_eq!(c.write_at(q.region(), 2, b"pongpongpong"), 6);
        q.add_used(c.head(), 8).unwrap();
        assert_eq!(r.load_le::<u16>(l.used + 2, Acquire), Some(1));
        assert_eq!(r.load_le::<u32>(l.used + 4, Acquire), Some(1));
        assert_eq!(r.load_le::<u32>(l.used + 8, Acquire), Some(8));
        // A loop.
        put_desc(&r, l.desc, 0, BASE + 0x3000, 4, DESC_F_NEXT, 2);
        put_desc(&r, l.desc, 2, BASE + 0x3000, 4, DESC_F_NEXT, 0);
        offer(&r, l.avail, 4, 1, 0);
        assert_eq!(q.pop().unwrap_err(), QueueError::ChainTooLong);
        // Outside the region, below the DMA area, a bad next, indirect, bad order.
        for (addr, flags, next, err) in [
            (
                BASE + 0x8000,
                0,
                0,
                QueueError::Address {
                    gpa: BASE + 0x8000,
                    len: 4,
                },
            ),
            (
                BASE + 0x100,
                0,
                0,
                QueueError::Address {
                    gpa: BASE + 0x100,
                    len: 4,
                },
            ),
            (BASE + 0x3000, DESC_F_NEXT, 9, QueueError::DescIndex(9)),
            (BASE + 0x3000, DESC_F_INDIRECT, 0, QueueError::Indirect),
        ] {
            put_desc(&r, l.desc, 0, addr, 4, flags, next);
            let idx = q.state.last_avail;
            offer(&r, l.avail, 4, idx, 0);
            assert_eq!(q.pop().unwrap_err(), err);
        }
        put_desc(
            &r,
            l.desc,
            0,
            BASE + 0x3000,
            4,
            DESC_F_WRITE | DESC_F_NEXT,
            1,
        );
        put_desc(&r, l.desc, 1, BASE + 0x3000, 4, 0, 0);
        let idx = q.state.last_avail;
        offer(&r, l.avail, 4, idx, 0);
        assert_eq!(q.pop().unwrap_err(), QueueError::Order);
        // A head beyond the queue, an index far ahead.
        let idx = q.state.last_avail;
        offer(&r, l.avail, 4, idx, 7);
        assert_eq!(q.pop().unwrap_err(), QueueError::DescIndex(7));
        r.store_le::<u16>(l.avail + 2, 100, Release).unwrap();
        assert!(matches!(
            q.pop(),
            Err(QueueError::AvailIndex { avail: 100, .. })
        ));
    }

    #[test]
    fn translate_checks_overflow_and_alignment() {
        let mem = Backing::new(0x2000);
        let r = mem.region(0x2000);
        let m = Memory::new(r, BASE, 0x1000..0x4000);
        assert_eq!(m.translate(BASE + 0x1000, 0x1000, 1), Some(0x1000));
        assert_eq!(
            m.translate(BASE + 0x1001, 0x1000, 1),
            None,
            "clamped to the region"
        );
        assert_eq!(m.translate(BASE - 1, 1, 1), None);
        assert_eq!(m.translate(u64::MAX, 2, 1), None);
        assert_eq!(m.translate(BASE + 0x1002, 4, 4), None);
        assert_eq!(m.translate(BASE + 0x1ff0, usize::MAX, 1), None);
        assert_eq!(m.guest_base(), BASE);
    }
}
