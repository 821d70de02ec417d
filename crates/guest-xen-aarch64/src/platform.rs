//! [`XenPlatform`]: the `staticbus_guest::Platform` of a bare-metal domU on real Xen.

use crate::fdt::Fdt;
use crate::memmap;
use core::fmt;
use core::sync::atomic::AtomicU64;
use staticbus_abi::shared_info::{SharedInfo, PAGE_WORDS};
use staticbus_guest::{
    ops, Errno, EventChannels, FiredSet, Hypercall, Platform, Region, TwoLevelTransport,
    UpcallSleep,
};
use staticbus_manifest::Manifest;

/// Why [`XenPlatform::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)` failed (`EBUSY`: already mapped).
    MapSharedInfo(Errno),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::MapSharedInfo(e) => {
                write!(f, "XENMEM_add_to_physmap(shared_info) failed: {e}")
            }
        }
    }
}

impl core::error::Error for PlatformError {}

/// Why [`XenPlatform::find_region`] found no usable region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The manifest lists no region with that `xen,shm-id`.
    NotInManifest,
    /// The platform has no device tree to find regions in.
    NoDeviceTree,
    /// The guest tree has no `/reserved-memory/xen-shmem@…` node with that `xen,id`: Xen
    /// did not map the region into this domain (a Xen without `CONFIG_STATIC_SHM`, or
    /// another system's host tree).
    NotInTree,
    /// Xen mapped the region elsewhere or with another size than the manifest says.
    Mismatch {
        /// Guest address in the tree.
        tree_base: u64,
        /// Size in the tree.
        tree_size: u64,
        /// Guest address in the manifest.
        manifest_base: u64,
        /// Size in the manifest.
        manifest_size: u64,
    },
    /// The region is not Normal memory in the runtime's stage-1 map: it shares a 2 MiB
    /// block with a device window, or lies beyond 64 GiB (see [`memmap`]).
    NotNormal {
        /// Guest address.
        base: u64,
        /// Size.
        size: u64,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::NotInManifest => f.write_str("the manifest has no such region"),
            RegionError::NoDeviceTree => f.write_str("no guest device tree"),
            RegionError::NotInTree => f.write_str(
                "Xen did not map it: no /reserved-memory/xen-shmem node with this xen,id \
                 (is Xen built with CONFIG_STATIC_SHM?)",
            ),
            RegionError::Mismatch {
                tree_base,
                tree_size,
                manifest_base,
                manifest_size,
            } => write!(
                f,
                "Xen mapped {tree_size:#x} bytes at {tree_base:#x}, the manifest says \
                 {manifest_size:#x} bytes at {manifest_base:#x}"
            ),
            RegionError::NotNormal { base, size } => write!(
                f,
                "{size:#x} bytes at {base:#x} are not Normal memory in the runtime's map \
                 (a 2 MiB block shared with a device window, or beyond 64 GiB)"
            ),
        }
    }
}

impl core::error::Error for RegionError {}

/// A bare-metal domU on Xen: the hypercall transport, `shared_info` mapped at
/// [`memmap::SHARED_INFO_GFN`], the domain's manifest, its device tree (for the
/// shared regions Xen mapped, `/reserved-memory/xen-shmem@…`), and how its waits block
/// (`SCHEDOP_poll` unless [`XenPlatform::set_upcall_sleep`] installed an upcall sleep).
pub struct XenPlatform<H: Hypercall> {
    h: H,
    si: &'static [AtomicU64; PAGE_WORDS],
    fired: FiredSet,
    manifest: &'static Manifest,
    fdt: Option<Fdt<'static>>,
    upcall: Option<&'static dyn UpcallSleep>,
}

impl<H: Hypercall> fmt::Debug for XenPlatform<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenPlatform")
            .field("domain", &self.manifest.domain)
            .field("shared_info", &self.si.as_ptr())
            .field("fired", &self.fired)
            .field("sleeps_on_upcall", &self.upcall.is_some())
            .finish_non_exhaustive()
    }
}

impl<H: Hypercall> XenPlatform<H> {
    /// Maps this domain's `shared_info` page at [`memmap::SHARED_INFO_GFN`] with
    /// `XENMEM_add_to_physmap` and builds the platform.
    ///
    /// # Safety
    ///
    /// * The program runs under the runtime's stage-1 map ([`memmap`]): the page at
    ///   `SHARED_INFO_GFN` is mapped as Normal write-back memory, and nothing else in the
    ///   program uses it.
    /// * It is called once per domain (a second `shared_info` mapping fails with `EBUSY`
    ///   anyway) and the platform lives for the rest of the program.
    /// * See [`XenPlatform::from_parts`] for `fdt`.
    pub unsafe fn new(
        h: H,
        manifest: &'static Manifest,
        fdt: Option<Fdt<'static>>,
    ) -> Result<Self, PlatformError> {
        ops::map_shared_info(&h, memmap::SHARED_INFO_GFN).map_err(PlatformError::MapSharedInfo)?;
        let page = core::ptr::with_exposed_provenance::<[AtomicU64; PAGE_WORDS]>(
            (memmap::SHARED_INFO_GFN << 12) as usize,
        );
        // SAFETY: Xen now backs the frame with shared_info (4 KiB, page aligned), and the
        // caller guarantees it is mapped Normal write-back and used by nothing else.
        // Xen writes it concurrently, which is sound because every access goes through
        // the atomics.
        let si = unsafe { &*page };
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { Self::from_parts(h, si, manifest, fdt) })
    }

    /// A platform over an already mapped `shared_info` page.
    ///
    /// # Safety
    ///
    /// Every static shared-memory region that `fdt` lists under `/reserved-memory`
    /// (`xen-shmem@…`) and that is Normal memory in [`memmap`]'s map
    /// ([`memmap::is_normal`]) is guest memory that stays mapped Normal write-back for the
    /// rest of the program and is accessed only through [`Region`]s (the tree is the one
    /// Xen generated for this domain, and the program runs under the runtime's stage-1
    /// map). [`Platform::region`] hands such ranges out.
    pub unsafe fn from_parts(
        h: H,
        si: &'static [AtomicU64; PAGE_WORDS],
        manifest: &'static Manifest,
        fdt: Option<Fdt<'static>>,
    ) -> Self {
        XenPlatform {
            h,
            si,
            fired: FiredSet::new(),
            manifest,
            fdt,
            upcall: None,
        }
    }

    /// Makes the domain's waits sleep with `sleep` (until the upcall interrupt) instead
    /// of `SCHEDOP_poll`, or poll again with `None`: what
    /// [`TwoLevelTransport::upcall_sleep`] returns, so every driver handle made afterwards
    /// ([`Platform::events`], `Channel::open`) uses it. On bare metal: `irq::WfiSleep`, after the GIC
    /// enabled the upcall (`gic::Gic::enable_upcall`).
    pub fn set_upcall_sleep(&mut self, sleep: Option<&'static dyn UpcallSleep>) {
        self.upcall = sleep;
    }

    /// The domain's manifest, with its `'static` lifetime.
    pub fn manifest_static(&self) -> &'static Manifest {
        self.manifest
    }

    /// The guest device tree the platform was built with.
    pub fn fdt(&self) -> Option<Fdt<'static>> {
        self.fdt
    }

    /// Where region `shm_id` of the manifest is, `(guest address, length)`, or why it is
    /// not usable: the guest tree must list a `xen-shmem` node with that `xen,id` at the
    /// manifest's guest address and size, in Normal memory of the runtime's map.
    /// [`Platform::region`] hands out exactly these.
    pub fn find_region(&self, shm_id: &str) -> Result<(usize, usize), RegionError> {
        let fdt = self.fdt.as_ref().ok_or(RegionError::NoDeviceTree)?;
        shm_range(self.manifest, fdt, shm_id)
    }
}

impl<H: Hypercall> TwoLevelTransport for XenPlatform<H> {
    type H = H;

    fn hypercall(&self) -> &H {
        &self.h
    }

    fn shared_info(&self) -> SharedInfo<'_> {
        SharedInfo::new(self.si)
    }

    fn fired(&self) -> &FiredSet {
        &self.fired
    }

    fn upcall_sleep(&self) -> Option<&dyn UpcallSleep> {
        self.upcall
    }
}

impl<H: Hypercall> Platform for XenPlatform<H> {
    type Events<'a>
        = EventChannels<'a, H>
    where
        Self: 'a;

    /// The 2-level driver on this domain's `shared_info`
    /// ([`TwoLevelTransport::two_level_events`]), sleeping as
    /// [`XenPlatform::set_upcall_sleep`] said.
    fn events(&self) -> EventChannels<'_, H> {
        self.two_level_events()
    }

    /// The region `shm_id` of the manifest, if Xen mapped it (see
    /// [`XenPlatform::find_region`], which says why not).
    fn region(&self, shm_id: &str) -> Option<Region> {
        let (base, len) = self.find_region(shm_id).ok()?;
        // SAFETY: `from_parts`' contract: a region the guest tree lists and that is Normal
        // memory in the runtime's map (checked by `shm_range`) is mapped Normal
        // write-back guest memory for the rest of the program, accessed only through
        // Regions.
        unsafe { Region::new(core::ptr::with_exposed_provenance_mut(base), len) }
    }

    fn manifest(&self) -> &Manifest {
        self.manifest
    }

    /// `SCHEDOP_yield`.
    fn yield_now(&self) -> Result<(), Errno> {
        ops::sched_yield(&self.h)
    }
}

/// Where region `shm_id` of `manifest` is, if the guest tree `fdt` says Xen mapped it: a
/// `xen-shmem` node with that `xen,id` at the manifest's guest address and size, in Normal
/// memory of the runtime's map. `(address, length)`.
fn shm_range(
    manifest: &Manifest,
    fdt: &Fdt<'_>,
    shm_id: &str,
) -> Result<(usize, usize), RegionError> {
    let want = manifest.region(shm_id).ok_or(RegionError::NotInManifest)?;
    let node = fdt
        .shm_regions()
        .find(|n| n.id == shm_id)
        .ok_or(RegionError::NotInTree)?;
    if node.base != want.guest_addr || node.size != want.size {
        return Err(RegionError::Mismatch {
            tree_base: node.base,
            tree_size: node.size,
            manifest_base: want.guest_addr,
            manifest_size: want.size,
        });
    }
    let not_normal = RegionError::NotNormal {
        base: node.base,
        size: node.size,
    };
    if !memmap::is_normal(node.base, node.size) {
        return Err(not_normal);
    }
    match (usize::try_from(node.base), usize::try_from(node.size)) {
        (Ok(base), Ok(len)) => Ok((base, len)),
        _ => Err(not_normal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Sources;
    use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader};
    use staticbus_manifest::{Region as MRegion, DOMID_IO, FORMAT_VERSION};
    use std::format;
    use std::vec::Vec;

    fn dtb(shm: &str) -> Vec<u8> {
        let dts = format!(
            "/dts-v1/;\n/ {{ #address-cells = <2>; #size-cells = <2>;\n\
             reserved-memory {{ #address-cells = <2>; #size-cells = <2>; ranges; {shm} }}; }};\n"
        );
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            "t.dts",
            dts,
            &DtsOptions::default(),
            &FsLoader,
        );
        assert!(!diags.has_errors(), "{diags:?}");
        write_dtb(&tree.unwrap())
    }

    const fn region(shm_id: &'static str, guest_addr: u64, size: u64) -> MRegion {
        MRegion {
            shm_id,
            guest_addr,
            size,
            host_addr: None,
            role: None,
            owner: "DOMID_IO",
            owner_domid: DOMID_IO,
            channel: None,
        }
    }

    static MANIFEST: Manifest = Manifest {
        format_version: FORMAT_VERSION,
        system: "t",
        xen: "4.20",
        domain: "a",
        domid: 1,
        channels: &[],
        regions: &[
            region("q", 0x0800_0000, 0x1000),
            region("big", 0x0900_0000, 0x0800_0000),
            region("ram", 0x4100_0000, 0x2000),
            region("dev", 0x2200_0000, 0x1000),
            region("gicr", 0x0410_0000, 0x1000),
            region("absent", 0x0a00_0000, 0x1000),
        ],
        evtchns: &[],
        virtio: &[],
    };

    fn shm(id: &str, base: u64, size: u64) -> std::string::String {
        format!(
            "xen-shmem@{base:x} {{ compatible = \"xen,shared-memory-v1\"; \
             reg = <0 {base:#x} 0 {size:#x}>; xen,id = \"{id}\"; }};"
        )
    }

    #[test]
    fn regions_must_match_the_tree_and_normal_memory() {
        let nodes = [
            shm("q", 0x0800_0000, 0x1000),
            shm("big", 0x0900_0000, 0x0800_0000),
            shm("ram", 0x4100_0000, 0x1000),
            shm("dev", 0x2200_0000, 0x1000),
            shm("gicr", 0x0410_0000, 0x1000),
        ]
        .concat();
        let blob = dtb(&nodes);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(shm_range(&MANIFEST, &fdt, "q"), Ok((0x0800_0000, 0x1000)));
        // Beyond the default guest window, still Normal memory.
        assert_eq!(
            shm_range(&MANIFEST, &fdt, "big"),
            Ok((0x0900_0000, 0x0800_0000))
        );
        // The tree's size differs from the manifest's.
        assert_eq!(
            shm_range(&MANIFEST, &fdt, "ram"),
            Err(RegionError::Mismatch {
                tree_base: 0x4100_0000,
                tree_size: 0x1000,
                manifest_base: 0x4100_0000,
                manifest_size: 0x2000
            })
        );
        // Device memory in the runtime's map.
        let dev = RegionError::NotNormal {
            base: 0x2200_0000,
            size: 0x1000,
        };
        assert_eq!(shm_range(&MANIFEST, &fdt, "dev"), Err(dev));
        assert!(shm_range(&MANIFEST, &fdt, "gicr").is_err());
        // Not in the manifest; not in the tree.
        assert_eq!(
            shm_range(&MANIFEST, &fdt, "nope"),
            Err(RegionError::NotInManifest)
        );
        assert_eq!(
            shm_range(&MANIFEST, &fdt, "absent"),
            Err(RegionError::NotInTree)
        );
        let empty = dtb("");
        assert_eq!(
            shm_range(&MANIFEST, &Fdt::new(&empty).unwrap(), "q"),
            Err(RegionError::NotInTree)
        );
    }
}
