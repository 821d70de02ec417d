//! The device types a system description may declare, and how much of a region a device
//! needs: the rules the compiler checks a `[[virtio]]` device against (one place, used by
//! the compiler and the runtime alike).

use crate::layout::{Geometry, GeometryError, DMA_OFFSET, PAGE};
use crate::queue::MAX_QUEUE_SIZE;

/// A device type a description may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceKind {
    /// The description's name (`"blk"`, …).
    pub name: &'static str,
    /// The virtio device id.
    pub id: u32,
    /// Whether staticbus has a built-in `no_std` backend for it.
    pub builtin: bool,
    /// Fewest queues.
    pub min_queues: u16,
    /// Most queues.
    pub max_queues: u16,
}

const fn kind(name: &'static str, id: u32, builtin: bool, min: u16, max: u16) -> DeviceKind {
    DeviceKind {
        name,
        id,
        builtin,
        min_queues: min,
        max_queues: max,
    }
}

/// Every device type a description may declare (virtio 1.2 §5 ids; queue counts of one
/// device without multiqueue beyond [`crate::device::MAX_QUEUES`]).
pub const DEVICE_KINDS: &[DeviceKind] = &[
    kind("net", 1, false, 2, 8),
    kind("blk", 2, true, 1, 8),
    kind("console", 3, true, 2, 2),
    kind("rng", 4, true, 1, 1),
    kind("input", 18, false, 2, 2),
    kind("vsock", 19, false, 3, 3),
    kind("i2c", 34, false, 1, 1),
    kind("gpio", 41, false, 1, 2),
];

/// The device type named `name`.
pub fn kind_named(name: &str) -> Option<&'static DeviceKind> {
    DEVICE_KINDS.iter().find(|k| k.name == name)
}

/// Why a device does not fit its region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitError {
    /// The region itself cannot hold the layout.
    Geometry(GeometryError),
    /// A queue size that is zero, not a power of two, or above the split-queue limit.
    QueueSize(u32),
    /// The DMA area is smaller than the queues and their bounce pages need.
    TooSmall {
        /// Pages needed.
        need: usize,
        /// Pages the DMA area has.
        have: usize,
    },
}

impl core::fmt::Display for FitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FitError::Geometry(e) => write!(f, "{e}"),
            FitError::QueueSize(n) => write!(
                f,
                "queue size {n} is not a power of two from 1 to {MAX_QUEUE_SIZE}"
            ),
            FitError::TooSmall { need, have } => write!(
                f,
                "the DMA area has {have} pages of 4 KiB; the queues' rings and one bounce page per descriptor need {need}"
            ),
        }
    }
}

fn pages(bytes: usize) -> usize {
    bytes.div_ceil(PAGE)
}

/// DMA pages `queues` queues of `queue_size` entries need: for each queue, the
/// descriptor table and available ring in one run of pages, the used ring in another
/// (virtio-drivers' layout), and one 4 KiB bounce page per descriptor.
pub fn dma_pages(queues: u16, queue_size: u32) -> usize {
    let n = queue_size as usize;
    let per_queue = pages(16 * n + 6 + 2 * n) + pages(6 + 8 * n) + n;
    per_queue * queues as usize
}

/// Smallest region (header page included) for `queues` queues of `queue_size` entries.
pub fn min_region(queues: u16, queue_size: u32) -> usize {
    (DMA_OFFSET + dma_pages(queues, queue_size) * PAGE).max(crate::layout::REGION_MIN)
}

/// Checks that a region of `region_size` bytes holds `queues` queues of `queue_size`
/// entries and their bounce pages.
pub fn fits(region_size: u64, queues: u16, queue_size: u32) -> Result<(), FitError> {
    if queue_size == 0 || queue_size > MAX_QUEUE_SIZE as u32 || !queue_size.is_power_of_two() {
        return Err(FitError::QueueSize(queue_size));
    }
    let size = usize::try_from(region_size).unwrap_or(usize::MAX);
    let g = Geometry::new(size).map_err(FitError::Geometry)?;
    let need = dma_pages(queues, queue_size);
    let have = g.dma_size / PAGE;
    if need > have {
        return Err(FitError::TooSmall { need, have });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_fits() {
        assert_eq!(kind_named("blk").map(|k| k.id), Some(2));
        assert!(kind_named("floppy").is_none());
        assert!(DEVICE_KINDS.iter().all(|k| k.min_queues >= 1
            && k.min_queues <= k.max_queues
            && k.max_queues as usize <= crate::device::MAX_QUEUES));
        // One queue of 16: 1 + 1 + 16 pages after the header page.
        assert_eq!(dma_pages(1, 16), 18);
        assert_eq!(min_region(1, 16), 19 * 4096);
        assert_eq!(fits(19 * 4096, 1, 16), Ok(()));
        assert_eq!(
            fits(18 * 4096, 1, 16),
            Err(FitError::TooSmall { need: 18, have: 17 })
        );
        assert_eq!(fits(1 << 20, 1, 12), Err(FitError::QueueSize(12)));
        assert_eq!(fits(1 << 20, 1, 0), Err(FitError::QueueSize(0)));
        assert_eq!(fits(1 << 20, 1, 65536), Err(FitError::QueueSize(65536)));
        assert!(matches!(fits(0x1001, 1, 1), Err(FitError::Geometry(_))));
        // The sizes the tests use fit the drivers they run.
        assert_eq!(fits(64 * 4096, 1, 16), Ok(()));
        assert_eq!(fits(64 * 4096, 2, 2), Ok(()));
    }
}
