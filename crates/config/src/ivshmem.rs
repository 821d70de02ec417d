//! What a `hypervisor = "qemu-ivshmem"` system's layout makes of the platform
//! (docs/adr/0005-ivshmem-platform.md): the shared object's size, the doorbell vectors per
//! peer, and the RAM each VM gets. `staticbus boot` starts the server and the VMs with
//! these numbers and `staticbus map` draws them, so both take them from here.

use crate::model::{Domain, System};
use staticbus_abi::ivshmem;

/// Smallest shared object.
pub const MIN_OBJECT: u64 = 1 << 20;
/// RAM a VM gets at least, in MiB (its image and stack take a few hundred KiB; QEMU puts
/// the DTB at half the RAM).
pub const MIN_MEMORY_MIB: u64 = 32;

/// The layout facts this platform needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the shared object (a power of two): the regions, then the server's control
    /// page at its end.
    pub object: u64,
    /// Vectors per peer.
    pub vectors: u16,
}

impl Layout {
    /// Offset of the server's control page in the object (its last
    /// [`ivshmem::CONTROL_PAGE`] bytes).
    pub fn control_page(&self) -> u64 {
        self.object - ivshmem::CONTROL_PAGE
    }
}

/// Sizes the object (the next power of two holding the regions and the control page, at
/// least [`MIN_OBJECT`]) and the vectors (the highest port + 1, at least 2). The layout's
/// rules are the validator's (SB0901–SB0903); this only sizes, saturating on a layout
/// those rules reject.
pub fn layout(sys: &System) -> Layout {
    let end = sys
        .shm
        .iter()
        .map(|n| n.guest.saturating_add(n.size))
        .max()
        .unwrap_or(ivshmem::SHM_BASE)
        .clamp(
            ivshmem::SHM_BASE,
            ivshmem::SHM_BASE + ivshmem::SHM_MAX - ivshmem::CONTROL_PAGE,
        );
    let need = end - ivshmem::SHM_BASE + ivshmem::CONTROL_PAGE;
    let object = need.next_power_of_two().max(MIN_OBJECT);
    let top = sys
        .evtchns
        .iter()
        .flat_map(|p| [p.first.port, p.second.port])
        .map(|p| p.min(ivshmem::MAX_VECTORS - 1) + 1)
        .max()
        .unwrap_or(1);
    Layout {
        object,
        vectors: u16::try_from(top.max(2)).unwrap_or(u16::MAX),
    }
}

/// The RAM of a domain's VM in MiB (`-m`): its `memory`, at least [`MIN_MEMORY_MIB`].
pub fn vm_memory_mib(d: &Domain) -> u64 {
    (d.memory_kib.unwrap_or(0) / 1024).max(MIN_MEMORY_MIB)
}
