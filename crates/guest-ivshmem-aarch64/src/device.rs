//! Bringing up the ivshmem-doorbell device on bare metal (`aarch64` + `target_os = "none"`).
//!
//! [`bring_up`]:
//!
//! 1. scans the ECAM window of the host bridge ([`Board`]) for vendor `0x1af4`, device
//!    `0x1110`;
//! 2. turns memory decoding off, sizes BAR0, BAR1 and BAR2 (all-ones probe) and assigns
//!    them at [`ivshmem::BAR0_BASE`], [`ivshmem::BAR1_BASE`] and [`ivshmem::SHM_BASE`]
//!    (with `-kernel` no firmware ran, so nothing assigned them; an address a firmware
//!    chose would not be in the runtime's map anyway), then turns on memory decoding and
//!    bus mastering (MSI writes are bus-master writes);
//! 3. sets the GICv2 up: distributor and CPU interface on, every GICv2m SPI the device's
//!    vectors use edge-triggered, priority `0x80`, routed to CPU 0, enabled;
//! 4. programs the MSI-X table (BAR1): entry `v` writes SPI `base + v` to the v2m frame's
//!    `MSI_SETSPI_NS`, unmasked, then enables MSI-X. QEMU drops a doorbell that arrives
//!    while MSI-X is off, so this happens before the program runs;
//! 5. reads IVPosition (the peer id the server gave this VM).
//!
//! Waiting ([`VirtDoorbells`]): IRQs stay masked in PSTATE for the whole run; `WFI` still
//! wakes on a pending interrupt, and `GICC_IAR` / `GICC_EOIR` take one at a time. An MSI
//! that arrives after `IAR` read "nothing" keeps the IRQ line up, so the `WFI` that
//! follows returns at once: no lost wake-up.

use crate::board::Board;
use crate::platform::Doorbells;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use staticbus_abi::ivshmem;
use staticbus_baremetal_aarch64::mmio;

const CFG_ID: u16 = 0x00;
const CFG_COMMAND: u16 = 0x04;
const CFG_STATUS_CAP_LIST: u32 = 1 << (16 + 4);
const CFG_BAR0: u16 = 0x10;
const CFG_CAP_PTR: u16 = 0x34;
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;
const CAP_MSIX: u32 = 0x11;
const MSIX_ENABLE: u32 = 1 << 15;
const MSIX_FUNCTION_MASK: u32 = 1 << 14;

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_ICFGR: usize = 0xc00;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;
const V2M_MSI_TYPER: usize = 0x008;
const V2M_MSI_SETSPI_NS: usize = 0x040;
const SPI_PRIORITY: u32 = 0x80;
const PRIORITY_MASK: u32 = 0xf0;
/// `GICC_IAR` values from this INTID up mean "nothing pending".
const FIRST_SPECIAL_INTID: u32 = 1020;

/// Why the device could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// No ivshmem device on the scanned buses.
    NotFound,
    /// A BAR is missing or larger than the runtime's place for it.
    Bar(u8, u64),
    /// The device has no MSI-X capability (it is `ivshmem-plain`, or `msi=off`).
    NoMsix,
    /// The MSI-X table is not (wholly) in BAR1.
    MsixNotInBar1,
    /// The GICv2m frame has fewer SPIs than the device has vectors.
    TooFewSpis {
        /// Vectors of the device.
        vectors: u32,
        /// SPIs of the frame.
        spis: u32,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceError::NotFound => f.write_str(
                "no ivshmem device (1af4:1110) on PCI: start QEMU with \
                 -device ivshmem-doorbell,chardev=…,vectors=N",
            ),
            DeviceError::Bar(n, size) => write!(
                f,
                "BAR{n} of the ivshmem device is missing or too large ({size:#x} bytes)"
            ),
            DeviceError::NoMsix => f.write_str(
                "the ivshmem device has no MSI-X (use ivshmem-doorbell with msi=on, the default)",
            ),
            DeviceError::MsixNotInBar1 => {
                f.write_str("the MSI-X table does not lie (wholly) in BAR1")
            }
            DeviceError::TooFewSpis { vectors, spis } => write!(
                f,
                "{vectors} vectors but the GICv2m frame has {spis} SPIs (at most {})",
                ivshmem::MAX_VECTORS
            ),
        }
    }
}

impl core::error::Error for DeviceError {}

fn read32(addr: u64) -> u32 {
    // SAFETY: every address passed here is a register of a frame `Board::from_fdt` checked
    // lies in the runtime's Device blocks (ECAM, GIC, v2m) or of a BAR this module placed
    // in them (BAR0, BAR1); those are mapped Device-nGnRnE for the whole run and hold no
    // Rust object; 4-byte aligned 32-bit accesses are what every one of them takes.
    unsafe { mmio::read32(addr as usize) }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: as in `read32`.
    unsafe { mmio::write32(addr as usize, v) }
}

/// A PCI function's configuration space in the ECAM window.
#[derive(Clone, Copy, Debug)]
struct Function {
    base: u64,
}

impl Function {
    fn read(&self, reg: u16) -> u32 {
        read32(self.base + u64::from(reg))
    }
    fn write(&self, reg: u16, v: u32) {
        write32(self.base + u64::from(reg), v)
    }

    /// Sizes BAR `n` and assigns it `addr`; returns its size. A 64-bit BAR takes the
    /// next register too.
    fn assign_bar(&self, n: u8, addr: u64, max: u64) -> Result<u64, DeviceError> {
        let reg = CFG_BAR0 + 4 * u16::from(n);
        let low = self.read(reg);
        let is64 = (low >> 1) & 0b11 == 0b10;
        self.write(reg, u32::MAX);
        let mut mask = u64::from(self.read(reg) & !0xf);
        if is64 {
            self.write(reg + 4, u32::MAX);
            mask |= u64::from(self.read(reg + 4)) << 32;
        } else {
            mask |= 0xffff_ffff_0000_0000;
        }
        let size = (!mask).wrapping_add(1);
        if low & 1 != 0 || mask == 0 || size > max || addr % size != 0 {
            return Err(DeviceError::Bar(n, size));
        }
        self.write(reg, (addr as u32) | (low & 0xf));
        if is64 {
            self.write(reg + 4, (addr >> 32) as u32);
        }
        Ok(size)
    }

    fn capability(&self, id: u32) -> Option<u16> {
        if self.read(CFG_COMMAND) & CFG_STATUS_CAP_LIST == 0 {
            return None;
        }
        let mut at = (self.read(CFG_CAP_PTR) & 0xfc) as u16;
        for _ in 0..48 {
            if at < 0x40 {
                return None;
            }
            let head = self.read(at);
            if head & 0xff == id {
                return Some(at);
            }
            at = ((head >> 8) & 0xfc) as u16;
        }
        None
    }
}

/// What [`bring_up`] found and set up.
#[derive(Debug)]
pub struct Ivshmem {
    /// `bus:device.function` of the device.
    pub bdf: (u8, u8, u8),
    /// This VM's peer id (IVPosition).
    pub id: u16,
    /// BAR2 (the shared object): base and size.
    pub shm: (u64, u64),
    /// MSI-X vectors (capped at [`ivshmem::MAX_VECTORS`]).
    pub vectors: u32,
    /// The GICv2m SPI INTID of vector 0.
    pub spi_base: u32,
    /// The doorbells, for the platform.
    pub doorbells: VirtDoorbells,
}

/// Brings the device up as the module documentation says.
pub fn bring_up(board: &Board) -> Result<Ivshmem, DeviceError> {
    let pci = &board.pci;
    let mut found = None;
    'scan: for bus in pci.bus_start..=pci.bus_end {
        for dev in 0..32 {
            let Some(off) = pci.config_offset(bus, dev, 0, 0) else {
                continue;
            };
            let f = Function {
                base: pci.ecam + off,
            };
            let id = f.read(CFG_ID);
            if id == u32::from(ivshmem::VENDOR_ID) | (u32::from(ivshmem::DEVICE_ID) << 16) {
                found = Some(((bus, dev, 0), f));
                break 'scan;
            }
        }
    }
    let (bdf, f) = found.ok_or(DeviceError::NotFound)?;

    let cmd = f.read(CFG_COMMAND) & 0xffff;
    f.write(CFG_COMMAND, cmd & !(CMD_MEMORY | CMD_BUS_MASTER));
    f.assign_bar(
        0,
        pci.pci_address(ivshmem::BAR0_BASE),
        ivshmem::SMALL_BAR_MAX,
    )?;
    let bar1_size = f.assign_bar(
        1,
        pci.pci_address(ivshmem::BAR1_BASE),
        ivshmem::SMALL_BAR_MAX,
    )?;
    let shm_size = f.assign_bar(2, pci.pci_address(ivshmem::SHM_BASE), ivshmem::SHM_MAX)?;
    f.write(CFG_COMMAND, cmd | CMD_MEMORY | CMD_BUS_MASTER);

    let cap = f.capability(CAP_MSIX).ok_or(DeviceError::NoMsix)?;
    let ctrl = f.read(cap) >> 16;
    let table_len = (ctrl & 0x7ff) + 1;
    let table = f.read(cap + 4);
    // The whole table inside BAR1: the runtime writes every entry, and an offset or a
    // length the device made up must not aim those writes past the BAR.
    let table_end = u64::from(table & !0x7) + u64::from(table_len) * 16;
    if table & 0x7 != 1 || table_end > bar1_size {
        return Err(DeviceError::MsixNotInBar1);
    }
    let table_base = ivshmem::BAR1_BASE + u64::from(table & !0x7);
    let vectors = table_len.min(ivshmem::MAX_VECTORS);

    // The GIC and the v2m frame.
    let g = board.gic;
    let typer = read32(g.v2m + V2M_MSI_TYPER as u64);
    let spi_base = (typer >> 16) & 0x3ff;
    let spis = typer & 0x3ff;
    if spis < vectors {
        return Err(DeviceError::TooFewSpis { vectors, spis });
    }
    write32(g.dist + GICD_CTLR as u64, 1);
    for v in 0..vectors {
        let intid = spi_base + v;
        let word =
            |base: usize, per_word: u32| g.dist + base as u64 + u64::from(intid / per_word * 4);
        let shift8 = (intid % 4) * 8;
        let prio = read32(word(GICD_IPRIORITYR, 4)) & !(0xff << shift8);
        write32(word(GICD_IPRIORITYR, 4), prio | (SPI_PRIORITY << shift8));
        let target = read32(word(GICD_ITARGETSR, 4)) & !(0xff << shift8);
        write32(word(GICD_ITARGETSR, 4), target | (1 << shift8));
        let shift2 = (intid % 16) * 2;
        let cfg = read32(word(GICD_ICFGR, 16));
        write32(word(GICD_ICFGR, 16), cfg | (0b10 << shift2));
        write32(word(GICD_ISENABLER, 32), 1 << (intid % 32));
    }
    write32(g.cpu + GICC_PMR as u64, PRIORITY_MASK);
    write32(g.cpu + GICC_CTLR as u64, 1);

    // MSI-X: masked while the table is written, then on.
    f.write(cap, (ctrl | MSIX_FUNCTION_MASK) << 16);
    let doorbell = g.v2m + V2M_MSI_SETSPI_NS as u64;
    for v in 0..table_len {
        let e = table_base + u64::from(v) * 16;
        write32(e, doorbell as u32);
        write32(e + 4, (doorbell >> 32) as u32);
        write32(e + 8, spi_base + v.min(vectors - 1));
        // Vectors beyond what the GIC can take stay masked.
        write32(e + 12, u32::from(v >= vectors));
    }
    f.write(cap, ((ctrl | MSIX_ENABLE) & !MSIX_FUNCTION_MASK) << 16);

    let id = read32(ivshmem::BAR0_BASE + ivshmem::REG_IV_POSITION as u64) as u16;
    Ok(Ivshmem {
        bdf,
        id,
        shm: (ivshmem::SHM_BASE, shm_size),
        vectors,
        spi_base,
        doorbells: VirtDoorbells {
            bar0: ivshmem::BAR0_BASE,
            gicc: g.cpu,
            spi_base,
            vectors,
            control: ivshmem::SHM_BASE + shm_size - ivshmem::CONTROL_PAGE,
        },
    })
}

/// This VM's doorbell and interrupt counts (one device per VM), for the summary line
/// before `RESULT`.
pub static COUNTS: Counts = Counts::new();

/// Doorbell and interrupt counts.
#[derive(Debug)]
pub struct Counts {
    /// Doorbells rung.
    pub rung: AtomicU32,
    /// Doorbell interrupts taken.
    pub taken: AtomicU32,
    /// Sleeps (`WFI`).
    pub sleeps: AtomicU32,
}

impl Counts {
    const fn new() -> Self {
        Counts {
            rung: AtomicU32::new(0),
            taken: AtomicU32::new(0),
            sleeps: AtomicU32::new(0),
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rung {} taken {} sleeps {}",
            self.rung.load(Ordering::Relaxed),
            self.taken.load(Ordering::Relaxed),
            self.sleeps.load(Ordering::Relaxed)
        )
    }
}

/// The device's doorbell register, the GICv2 CPU interface and the control page.
#[derive(Debug)]
pub struct VirtDoorbells {
    bar0: u64,
    gicc: u64,
    spi_base: u32,
    vectors: u32,
    control: u64,
}

impl Doorbells for VirtDoorbells {
    fn ring(&self, peer: u16, vector: u32) {
        // Shared-memory writes before the doorbell are visible to the peer first.
        // SAFETY: DSB only orders memory accesses.
        unsafe { core::arch::asm!("dsb sy", options(nostack)) };
        write32(
            self.bar0 + ivshmem::REG_DOORBELL as u64,
            (u32::from(peer) << ivshmem::DOORBELL_PEER_SHIFT) | vector,
        );
        COUNTS.rung.fetch_add(1, Ordering::Relaxed);
    }

    fn next_fired(&self) -> Option<u32> {
        loop {
            let iar = read32(self.gicc + GICC_IAR as u64);
            let intid = iar & 0x3ff;
            if intid >= FIRST_SPECIAL_INTID {
                return None;
            }
            write32(self.gicc + GICC_EOIR as u64, iar);
            if intid >= self.spi_base && intid < self.spi_base + self.vectors {
                COUNTS.taken.fetch_add(1, Ordering::Relaxed);
                return Some(intid - self.spi_base);
            }
        }
    }

    fn sleep(&self) {
        COUNTS.sleeps.fetch_add(1, Ordering::Relaxed);
        // SAFETY: WFI only waits; IRQs are masked in PSTATE, so a pending interrupt ends
        // the wait without being taken.
        unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack)) };
    }

    fn peer_left(&self, peer: u16) -> bool {
        if u32::from(peer) >= ivshmem::LEFT_WORDS {
            return false;
        }
        let word = core::ptr::with_exposed_provenance::<AtomicU32>(
            (self.control + u64::from(peer) * 4) as usize,
        );
        // SAFETY: the control page is the last page of BAR2, which `bring_up` mapped at
        // SHM_BASE (Normal write-back in the runtime's map, size checked against SHM_MAX);
        // it is aligned, no region covers it (`IvshmemPlatform::find_region`), and the
        // server writes it from outside, which atomics make sound.
        unsafe { &*word }.load(Ordering::Acquire) != 0
    }
}
