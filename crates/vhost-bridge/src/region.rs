//! The shared memory the daemon sees: one region of a file (a memfd, later the staticbus
//! shared region's fd), mapped at the frontend's guest-physical base address.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap};

use crate::Error;

/// A shared memory region: `size` bytes of a file from `file_offset` on, which the frontend
/// (the driver's partition) sees at guest-physical `guest_base`.
///
/// The bridge maps it once (shared, through `vm-memory`); the daemon receives the same fd in
/// its memory table and maps it itself, so neither side copies. Every vring address the
/// bridge passes on is checked to lie inside it.
///
/// The guest base can be learned late (a virtio-msg frontend publishes it in the region's
/// header when it starts): [`SharedRegion::set_guest_base`] moves it; the mapping does not
/// change, since [`SharedRegion::memory`] is addressed by region offset.
pub struct SharedRegion {
    memory: GuestMemoryMmap<()>,
    file: Arc<File>,
    file_offset: u64,
    guest_base: AtomicU64,
    size: u64,
}

impl std::fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("fd", &self.file.as_raw_fd())
            .field("file_offset", &self.file_offset)
            .field("guest_base", &format_args!("{:#x}", self.guest_base()))
            .field("size", &format_args!("{:#x}", self.size))
            .finish()
    }
}

/// The page size both sides map with; region offsets, bases and sizes are multiples of it.
pub const PAGE_SIZE: u64 = 4096;

impl SharedRegion {
    /// Maps `size` bytes of `fd` from `file_offset`, seen by the frontend at `guest_base`.
    ///
    /// A regular file must already be at least `file_offset + size` bytes long (a device
    /// fd, such as a region device, is checked by its own mmap); offset, base and size must
    /// be page-aligned and the size non-zero.
    pub fn from_fd(
        fd: OwnedFd,
        file_offset: u64,
        size: u64,
        guest_base: u64,
    ) -> Result<Self, Error> {
        let bad = |why: String| Error::Region { why };
        if size == 0 || size % PAGE_SIZE != 0 {
            return Err(bad(format!(
                "size {size:#x} is not a non-zero multiple of {PAGE_SIZE:#x}"
            )));
        }
        if file_offset % PAGE_SIZE != 0 || guest_base % PAGE_SIZE != 0 {
            return Err(bad(format!(
                "file offset {file_offset:#x} and guest base {guest_base:#x} must be multiples of {PAGE_SIZE:#x}"
            )));
        }
        guest_base.checked_add(size).ok_or_else(|| {
            bad(format!(
                "guest base {guest_base:#x} + size {size:#x} overflows"
            ))
        })?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| bad(format!("cannot stat the region's fd: {e}")))?;
        let len = meta.len();
        let end = file_offset.checked_add(size).ok_or_else(|| {
            bad(format!(
                "file offset {file_offset:#x} + size {size:#x} overflows"
            ))
        })?;
        // A regular file (a memfd) must be long enough; a device (the xen-shmem region
        // device) has no length to compare, and its mmap refuses a range it does not have.
        if meta.is_file() && len < end {
            return Err(bad(format!(
                "the file is {len:#x} bytes, the region needs {end:#x} (offset {file_offset:#x} + size {size:#x})"
            )));
        }
        let file = Arc::new(file);
        let len =
            usize::try_from(size).map_err(|_| bad(format!("size {size:#x} does not fit usize")))?;
        let region = GuestRegionMmap::from_range(
            GuestAddress(0),
            len,
            Some(FileOffset::from_arc(Arc::clone(&file), file_offset)),
        )
        .map_err(|e| bad(format!("cannot map the region: {e}")))?;
        let memory = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|e| bad(format!("cannot build the guest memory: {e}")))?;
        Ok(Self {
            memory,
            file,
            file_offset,
            guest_base: AtomicU64::new(guest_base),
            size,
        })
    }

    /// A new anonymous memfd of `size` bytes (zeroed), seen at `guest_base`: what tests and
    /// benchmarks use in place of a staticbus region.
    pub fn memfd(name: &str, size: u64, guest_base: u64) -> Result<Self, Error> {
        use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
        let bad = |why: String| Error::Region { why };
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)
            .map_err(|e| bad(format!("memfd_create: {e}")))?;
        ftruncate(&fd, size).map_err(|e| bad(format!("ftruncate to {size:#x}: {e}")))?;
        Self::from_fd(fd, 0, size, guest_base)
    }

    /// The frontend's guest-physical address of the region's first byte.
    pub fn guest_base(&self) -> u64 {
        self.guest_base.load(Ordering::Acquire)
    }

    /// Moves the region to guest-physical `guest_base` (page-aligned, the region must fit
    /// below 2^64). A bridge only allows this while its device is not started
    /// ([`crate::Bridge::set_guest_base`]).
    pub fn set_guest_base(&self, guest_base: u64) -> Result<(), Error> {
        check_base(guest_base, self.size)?;
        self.guest_base.store(guest_base, Ordering::Release);
        Ok(())
    }

    /// The bridge's address of the region's first byte (the mapping lives as long as the
    /// region).
    pub fn host_ptr(&self) -> *mut u8 {
        self.memory
            .get_host_address(GuestAddress(0))
            .expect("offset 0 is inside a non-empty mapping")
    }

    /// The region's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The region's fd (what the daemon's memory table receives).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The bridge's own mapping of the region, as `vm-memory` memory addressed by region
    /// offset (guest-physical address − [`guest_base`](SharedRegion::guest_base)).
    pub fn memory(&self) -> &GuestMemoryMmap<()> {
        &self.memory
    }

    /// Whether `[gpa, gpa + len)` lies inside the region.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        let base = self.guest_base();
        gpa >= base
            && gpa
                .checked_add(len)
                .is_some_and(|end| end <= base + self.size)
    }

    /// The bridge's virtual address of guest-physical `gpa` (inside the region), which is
    /// what vhost-user's SET_VRING_ADDR carries.
    pub(crate) fn frontend_va(&self, gpa: u64) -> Option<u64> {
        let offset = gpa.checked_sub(self.guest_base())?;
        let ptr = self.memory.get_host_address(GuestAddress(offset)).ok()?;
        Some(ptr as u64)
    }

    /// The memory-table entry: the region's fd and offset, guest base, size, and the
    /// bridge's mapping address (the "user address" vring addresses are given in).
    pub(crate) fn table_entry(&self) -> Result<VhostUserMemoryRegionInfo, Error> {
        let region = self.memory.iter().next().ok_or_else(|| Error::Region {
            why: "the guest memory has no region".into(),
        })?;
        let mut entry =
            VhostUserMemoryRegionInfo::from_guest_region(region).map_err(|e| Error::Region {
                why: format!("memory table entry: {e}"),
            })?;
        entry.guest_phys_addr = self.guest_base();
        Ok(entry)
    }
}

fn check_base(guest_base: u64, size: u64) -> Result<(), Error> {
    if guest_base % PAGE_SIZE != 0 {
        return Err(Error::Region {
            why: format!("guest base {guest_base:#x} is not a multiple of {PAGE_SIZE:#x}"),
        });
    }
    guest_base
        .checked_add(size)
        .map(drop)
        .ok_or_else(|| Error::Region {
            why: format!("guest base {guest_base:#x} + size {size:#x} overflows"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(len: u64) -> OwnedFd {
        let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        fd
    }

    #[test]
    fn refuses_bad_geometry_with_the_reason() {
        let why = |r: Result<SharedRegion, Error>| match r {
            Err(Error::Region { why }) => why,
            other => panic!("{other:?}"),
        };
        assert!(why(SharedRegion::from_fd(memfd(8192), 0, 0, 0)).contains("non-zero multiple"));
        assert!(why(SharedRegion::from_fd(memfd(8192), 0, 100, 0)).contains("non-zero multiple"));
        assert!(why(SharedRegion::from_fd(memfd(8192), 4096, 4096, 0x800)).contains("multiples"));
        assert!(why(SharedRegion::from_fd(memfd(8192), 4096, 8192, 0)).contains("needs 0x3000"));
        assert!(
            why(SharedRegion::from_fd(memfd(8192), 0, 4096, u64::MAX - 4095)).contains("overflows")
        );
    }

    #[test]
    fn a_device_fd_maps_without_a_file_length() {
        // /dev/zero: a character device whose shared mapping is shared memory.
        let fd: OwnedFd = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/zero")
            .unwrap()
            .into();
        let r = SharedRegion::from_fd(fd, 0, 8192, 0x4000).unwrap();
        assert_eq!((r.size(), r.guest_base()), (8192, 0x4000));
        assert!(r.contains(0x4000, 8192));
    }

    #[test]
    fn contains_and_table_entry_describe_the_mapping() {
        let r = SharedRegion::from_fd(memfd(3 * 4096), 4096, 8192, 0x8000_0000).unwrap();
        assert!(r.contains(0x8000_0000, 8192));
        assert!(r.contains(0x8000_1000, 1));
        assert!(!r.contains(0x7fff_ffff, 2));
        assert!(!r.contains(0x8000_1fff, 2));
        assert!(!r.contains(0x8000_0000, u64::MAX));
        let e = r.table_entry().unwrap();
        assert_eq!(
            (e.guest_phys_addr, e.memory_size, e.mmap_offset),
            (0x8000_0000, 8192, 4096)
        );
        assert_eq!(r.frontend_va(0x8000_0010), Some(e.userspace_addr + 0x10));
        assert_eq!(r.frontend_va(0x8000_2000), None);
        r.set_guest_base(0x1000).unwrap();
        assert!(r.contains(0x1000, 8192) && !r.contains(0x8000_0000, 1));
        assert_eq!(r.table_entry().unwrap().guest_phys_addr, 0x1000);
        assert_eq!(r.frontend_va(0x1010), Some(e.userspace_addr + 0x10));
        assert!(r.set_guest_base(0x1001).is_err());
        assert!(r.set_guest_base(u64::MAX - 4095).is_err());
    }
}
