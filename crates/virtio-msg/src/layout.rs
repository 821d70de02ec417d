//! The region layout: header, control rings, DMA area — the one place its offsets are
//! defined (docs/virtio.md §2 is generated from [`REGION_FIELDS`] and checked by a test).
//!
//! ```text
//! 0x0000  common line   written once by the device side at first attach
//! 0x0040  device line   written only by the device side (epoch, response producer, …)
//! 0x0080  driver line   written only by the frontend (request producer, guest base, …)
//! 0x0100  request ring  RING_SLOTS slots of SLOT_SIZE bytes, frontend → device
//! 0x0500  response ring RING_SLOTS slots of SLOT_SIZE bytes, device → frontend
//! 0x1000  DMA area      virtqueues and buffers, allocated by the frontend, to the end
//! ```

use core::ops::Range;

/// The magic number at offset 0: the bytes `"SBVIRTIO"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SBVIRTIO");
/// Layout version of this region format.
pub const VERSION: u32 = 1;
/// Size of one control-ring slot in bytes (a message of at most [`MSG_MAX`] bytes, then
/// zero padding).
pub const SLOT_SIZE: usize = 64;
/// Slots per control ring (a power of two).
pub const RING_SLOTS: u32 = 16;
/// The DMA area's granule: the frontend allocates virtqueues and buffers in pages of this
/// size (virtio-drivers' `PAGE_SIZE`).
pub const PAGE: usize = 4096;
/// Largest virtio-msg message (header and payload), as in the draft.
pub const MSG_MAX: usize = 48;
/// Size of the virtio-msg header.
pub const MSG_HEADER: usize = 8;
/// Largest payload.
pub const PAYLOAD_MAX: usize = MSG_MAX - MSG_HEADER;
/// Smallest region: the header page and one DMA page.
pub const REGION_MIN: usize = DMA_OFFSET + PAGE;
/// Largest region the frontend's page allocator manages (16 MiB of DMA area).
pub const REGION_MAX: usize = DMA_OFFSET + MAX_DMA_PAGES * PAGE;
/// Pages of DMA area the frontend's allocator can track.
pub const MAX_DMA_PAGES: usize = 4096;

/// Every field of the region's fixed part as a byte range. The code reaches the region
/// through these (or the `OFF_*` offsets derived from them) and [`REGION_FIELDS`] is built
/// from them, so the documentation cannot name an offset the code does not use.
pub mod field {
    use core::ops::Range;

    /// u64 magic ([`MAGIC`](super::MAGIC)); 0 until the device side initialised the region.
    pub const MAGIC: Range<usize> = 0x00..0x08;
    /// u32 layout version ([`VERSION`](super::VERSION)).
    pub const VERSION: Range<usize> = 0x08..0x0c;
    /// u32 virtio device id (2 = block, 3 = console, 4 = entropy).
    pub const DEVICE_TYPE: Range<usize> = 0x0c..0x10;
    /// u64 region size in bytes.
    pub const REGION_SIZE: Range<usize> = 0x10..0x18;
    /// u32 offset of the request ring.
    pub const REQ_RING: Range<usize> = 0x18..0x1c;
    /// u32 offset of the response ring.
    pub const RESP_RING: Range<usize> = 0x1c..0x20;
    /// u32 slots per ring.
    pub const RING_SLOTS: Range<usize> = 0x20..0x24;
    /// u32 bytes per slot.
    pub const SLOT_SIZE: Range<usize> = 0x24..0x28;
    /// u64 offset of the DMA area.
    pub const DMA_OFFSET: Range<usize> = 0x28..0x30;
    /// u64 size of the DMA area.
    pub const DMA_SIZE: Range<usize> = 0x30..0x38;
    /// Reserved, zero.
    pub const RESERVED: Range<usize> = 0x38..0x40;

    /// u32 device-side state (0 absent, 1 serving).
    pub const DEV_STATE: Range<usize> = 0x40..0x44;
    /// u32 device-side flags (bit 0: NEEDS_RESET raised).
    pub const DEV_FLAGS: Range<usize> = 0x44..0x48;
    /// u64 device epoch: incremented at every attach of the device side (restart).
    pub const DEV_EPOCH: Range<usize> = 0x48..0x50;
    /// u32 response-ring producer index (free-running).
    pub const RESP_PROD: Range<usize> = 0x50..0x54;
    /// u32 request-ring consumer index (free-running).
    pub const REQ_CONS: Range<usize> = 0x54..0x58;

    /// u32 frontend state (0 absent, 1 attached).
    pub const DRV_STATE: Range<usize> = 0x80..0x84;
    /// u32 frontend flags (reserved, zero).
    pub const DRV_FLAGS: Range<usize> = 0x84..0x88;
    /// u64 frontend epoch: incremented at every attach of the frontend.
    pub const DRV_EPOCH: Range<usize> = 0x88..0x90;
    /// u32 request-ring producer index (free-running).
    pub const REQ_PROD: Range<usize> = 0x90..0x94;
    /// u32 response-ring consumer index (free-running).
    pub const RESP_CONS: Range<usize> = 0x94..0x98;
    /// u64 the frontend's guest-physical address of region offset 0.
    pub const GUEST_BASE: Range<usize> = 0x98..0xa0;

    /// The request ring's slots.
    pub const REQ_SLOTS: Range<usize> = 0x100..0x500;
    /// The response ring's slots.
    pub const RESP_SLOTS: Range<usize> = 0x500..0x900;
    /// Start of the DMA area (one page after the region start).
    pub const DMA: usize = 0x1000;
}

/// Offset of the u64 magic.
pub const OFF_MAGIC: usize = field::MAGIC.start;
/// Offset of the u32 device epoch's line: the device-side state word.
pub const OFF_DEV_STATE: usize = field::DEV_STATE.start;
/// Offset of the u32 device flags.
pub const OFF_DEV_FLAGS: usize = field::DEV_FLAGS.start;
/// Offset of the u64 device epoch.
pub const OFF_DEV_EPOCH: usize = field::DEV_EPOCH.start;
/// Offset of the u32 response producer index.
pub const OFF_RESP_PROD: usize = field::RESP_PROD.start;
/// Offset of the u32 request consumer index.
pub const OFF_REQ_CONS: usize = field::REQ_CONS.start;
/// Offset of the u32 frontend state word.
pub const OFF_DRV_STATE: usize = field::DRV_STATE.start;
/// Offset of the u64 frontend epoch.
pub const OFF_DRV_EPOCH: usize = field::DRV_EPOCH.start;
/// Offset of the u32 request producer index.
pub const OFF_REQ_PROD: usize = field::REQ_PROD.start;
/// Offset of the u32 response consumer index.
pub const OFF_RESP_CONS: usize = field::RESP_CONS.start;
/// Offset of the u64 guest base.
pub const OFF_GUEST_BASE: usize = field::GUEST_BASE.start;
/// Offset of the request ring.
pub const REQ_RING_OFFSET: usize = field::REQ_SLOTS.start;
/// Offset of the response ring.
pub const RESP_RING_OFFSET: usize = field::RESP_SLOTS.start;
/// Offset of the DMA area.
pub const DMA_OFFSET: usize = field::DMA;

/// Device-side state word: serving requests.
pub const DEV_SERVING: u32 = 1;
/// Device flags bit: the device side raised NEEDS_RESET (a hostile or broken frontend).
pub const DEV_FLAG_NEEDS_RESET: u32 = 1;
/// Frontend state word: attached.
pub const DRV_ATTACHED: u32 = 1;

const _: () = {
    assert!(field::REQ_SLOTS.end - field::REQ_SLOTS.start == RING_SLOTS as usize * SLOT_SIZE);
    assert!(field::RESP_SLOTS.end - field::RESP_SLOTS.start == RING_SLOTS as usize * SLOT_SIZE);
    assert!(field::RESP_SLOTS.end <= field::DMA);
    assert!(RING_SLOTS.is_power_of_two());
    assert!(MSG_MAX <= SLOT_SIZE);
    assert!(DMA_OFFSET % PAGE == 0);
};

/// Who writes a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The device side (backend).
    Device,
    /// The frontend (driver).
    Driver,
}

impl Owner {
    /// The name the documentation uses.
    pub const fn name(self) -> &'static str {
        match self {
            Owner::Device => "device",
            Owner::Driver => "driver",
        }
    }
}

/// One documented field of the region.
#[derive(Clone, Debug)]
pub struct RegionField {
    /// Field name.
    pub name: &'static str,
    /// Byte range.
    pub range: Range<usize>,
    /// Writer.
    pub owner: Owner,
    /// What it holds.
    pub meaning: &'static str,
}

const fn f(
    name: &'static str,
    range: Range<usize>,
    owner: Owner,
    meaning: &'static str,
) -> RegionField {
    RegionField {
        name,
        range,
        owner,
        meaning,
    }
}

/// The region's fixed part, in offset order: the table docs/virtio.md §2 shows.
pub const REGION_FIELDS: &[RegionField] = &[
    f(
        "magic",
        field::MAGIC,
        Owner::Device,
        "`\"SBVIRTIO\"` as a little-endian u64; 0 = not initialised",
    ),
    f(
        "version",
        field::VERSION,
        Owner::Device,
        "layout version, 1",
    ),
    f(
        "device_type",
        field::DEVICE_TYPE,
        Owner::Device,
        "virtio device id (2 block, 3 console, 4 entropy)",
    ),
    f(
        "region_size",
        field::REGION_SIZE,
        Owner::Device,
        "region length; must equal both mappings",
    ),
    f(
        "req_ring",
        field::REQ_RING,
        Owner::Device,
        "offset of the request ring (0x100)",
    ),
    f(
        "resp_ring",
        field::RESP_RING,
        Owner::Device,
        "offset of the response ring (0x500)",
    ),
    f(
        "ring_slots",
        field::RING_SLOTS,
        Owner::Device,
        "slots per ring (16)",
    ),
    f(
        "slot_size",
        field::SLOT_SIZE,
        Owner::Device,
        "bytes per slot (64)",
    ),
    f(
        "dma_offset",
        field::DMA_OFFSET,
        Owner::Device,
        "start of the DMA area (0x1000)",
    ),
    f(
        "dma_size",
        field::DMA_SIZE,
        Owner::Device,
        "`region_size - dma_offset`",
    ),
    f("reserved", field::RESERVED, Owner::Device, "zero"),
    f(
        "dev_state",
        field::DEV_STATE,
        Owner::Device,
        "0 absent, 1 serving",
    ),
    f(
        "dev_flags",
        field::DEV_FLAGS,
        Owner::Device,
        "bit 0: NEEDS_RESET raised by the device side",
    ),
    f(
        "dev_epoch",
        field::DEV_EPOCH,
        Owner::Device,
        "incremented (wrapping) at every attach of the device side",
    ),
    f(
        "resp_prod",
        field::RESP_PROD,
        Owner::Device,
        "response ring: messages written (free-running)",
    ),
    f(
        "req_cons",
        field::REQ_CONS,
        Owner::Device,
        "request ring: messages consumed (free-running)",
    ),
    f(
        "drv_state",
        field::DRV_STATE,
        Owner::Driver,
        "0 absent, 1 attached",
    ),
    f("drv_flags", field::DRV_FLAGS, Owner::Driver, "zero"),
    f(
        "drv_epoch",
        field::DRV_EPOCH,
        Owner::Driver,
        "incremented (wrapping) at every attach of the frontend",
    ),
    f(
        "req_prod",
        field::REQ_PROD,
        Owner::Driver,
        "request ring: messages written (free-running)",
    ),
    f(
        "resp_cons",
        field::RESP_CONS,
        Owner::Driver,
        "response ring: messages consumed (free-running)",
    ),
    f(
        "guest_base",
        field::GUEST_BASE,
        Owner::Driver,
        "frontend guest-physical address of region offset 0",
    ),
    f(
        "req_slots",
        field::REQ_SLOTS,
        Owner::Driver,
        "request ring: 16 slots of 64 bytes, slot `i mod 16` at `0x100 + 64 * (i mod 16)`",
    ),
    f(
        "resp_slots",
        field::RESP_SLOTS,
        Owner::Device,
        "response ring: 16 slots of 64 bytes",
    ),
];

/// A region's validated geometry: what both sides compute from the region length and
/// check against the common line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Region length.
    pub region_size: usize,
    /// Start of the DMA area.
    pub dma_offset: usize,
    /// Length of the DMA area (a whole number of pages).
    pub dma_size: usize,
}

/// Why a region cannot hold a virtio-msg device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// Smaller than [`REGION_MIN`].
    TooSmall(usize),
    /// Larger than [`REGION_MAX`].
    TooLarge(usize),
    /// Not a whole number of pages.
    NotPageMultiple(usize),
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GeometryError::TooSmall(n) => write!(
                f,
                "a virtio region of {n:#x} bytes is smaller than the minimum {REGION_MIN:#x}"
            ),
            GeometryError::TooLarge(n) => write!(
                f,
                "a virtio region of {n:#x} bytes is larger than the maximum {REGION_MAX:#x}"
            ),
            GeometryError::NotPageMultiple(n) => write!(
                f,
                "a virtio region of {n:#x} bytes is not a multiple of {PAGE:#x}"
            ),
        }
    }
}

impl core::error::Error for GeometryError {}

impl Geometry {
    /// The geometry of a region of `region_size` bytes.
    pub const fn new(region_size: usize) -> Result<Geometry, GeometryError> {
        if region_size < REGION_MIN {
            return Err(GeometryError::TooSmall(region_size));
        }
        if region_size > REGION_MAX {
            return Err(GeometryError::TooLarge(region_size));
        }
        if region_size % PAGE != 0 {
            return Err(GeometryError::NotPageMultiple(region_size));
        }
        Ok(Geometry {
            region_size,
            dma_offset: DMA_OFFSET,
            dma_size: region_size - DMA_OFFSET,
        })
    }

    /// The common line (0x00..0x40) this geometry has for `device_type`, as bytes.
    pub fn common_line(&self, device_type: u32) -> [u8; 64] {
        let mut line = [0u8; 64];
        let mut put = |r: Range<usize>, v: &[u8]| line[r].copy_from_slice(v);
        put(field::MAGIC, &MAGIC.to_le_bytes());
        put(field::VERSION, &VERSION.to_le_bytes());
        put(field::DEVICE_TYPE, &device_type.to_le_bytes());
        put(field::REGION_SIZE, &(self.region_size as u64).to_le_bytes());
        put(field::REQ_RING, &(REQ_RING_OFFSET as u32).to_le_bytes());
        put(field::RESP_RING, &(RESP_RING_OFFSET as u32).to_le_bytes());
        put(field::RING_SLOTS, &RING_SLOTS.to_le_bytes());
        put(field::SLOT_SIZE, &(SLOT_SIZE as u32).to_le_bytes());
        put(field::DMA_OFFSET, &(self.dma_offset as u64).to_le_bytes());
        put(field::DMA_SIZE, &(self.dma_size as u64).to_le_bytes());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tile_the_lines_without_overlap() {
        let mut last = 0;
        for f in REGION_FIELDS {
            assert!(f.range.start >= last, "{} overlaps", f.name);
            assert!(f.range.start < f.range.end);
            let size = f.range.end - f.range.start;
            if size <= 8 {
                assert_eq!(f.range.start % size, 0, "{} is not aligned", f.name);
            }
            last = f.range.end;
        }
        // Each side writes only its own line (and its own ring).
        for f in REGION_FIELDS.iter().filter(|f| f.range.end <= 0x100) {
            let line = f.range.start / 64;
            match f.owner {
                Owner::Device => assert!(line <= 1, "{}", f.name),
                Owner::Driver => assert_eq!(line, 2, "{}", f.name),
            }
        }
    }

    #[test]
    fn geometry_bounds() {
        assert_eq!(Geometry::new(0x1000), Err(GeometryError::TooSmall(0x1000)));
        assert_eq!(
            Geometry::new(0x2001),
            Err(GeometryError::NotPageMultiple(0x2001))
        );
        assert!(matches!(
            Geometry::new(REGION_MAX + PAGE),
            Err(GeometryError::TooLarge(_))
        ));
        let g = Geometry::new(0x10_0000).unwrap();
        assert_eq!(g.dma_size, 0x10_0000 - 0x1000);
        let line = g.common_line(2);
        assert_eq!(&line[..8], b"SBVIRTIO");
        assert_eq!(line[0x0c], 2);
        assert_eq!(
            std::format!("{}", Geometry::new(0x1000).unwrap_err()),
            "a virtio region of 0x1000 bytes is smaller than the minimum 0x2000"
        );
    }
}
