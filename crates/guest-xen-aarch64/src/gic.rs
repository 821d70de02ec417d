//! The guest's virtual GIC, as far as the event-channel upcall needs it: find it in the
//! guest device tree, enable the upcall PPI, acknowledge and end interrupts.
//!
//! Xen gives every domU a virtual GIC of the host's kind (spec §5.6, §5.7) and describes
//! it in the guest tree as a root node `interrupt-controller@3001000`:
//!
//! | | `compatible` | `reg` (2/2 cells) |
//! |---|---|---|
//! | GICv2 | `arm,gic-400` (`arm,cortex-a15-gic` accepted too) | distributor `0x03001000`/`0x1000`, CPU interface `0x03002000`/`0x2000` |
//! | GICv3 | `arm,gic-v3` | distributor `0x03001000`/`0x10000`, redistributors from `0x03020000` (vCPU 0: RD frame, SGI/PPI frame at +`0x10000`) |
//!
//! [`Gic::from_fdt`] reads the version and the bases from that node (nothing is
//! hard-coded but the register offsets) and checks that the frames it will touch lie in
//! the device windows the runtime maps as Device memory ([`memmap::DEVICE_WINDOWS`]).
//!
//! Enabling the upcall (`Gic::enable_upcall`, bare metal only):
//!
//! * **GICv2**: distributor on (`GICD_CTLR`), INTID 31's priority
//!   (`GICD_IPRIORITYR`), INTID 31 enabled (`GICD_ISENABLER0` bit 31); CPU interface:
//!   priority mask (`GICC_PMR`), group 0 signalled as IRQ (`GICC_CTLR.EnableGrp0`; Xen's
//!   GICv2 list registers inject group 0). Acknowledge/end with `GICC_IAR`/`GICC_EOIR`.
//! * **GICv3**: system-register CPU interface (`ICC_SRE_EL1.SRE`, checked), redistributor
//!   awake (`GICR_WAKER`; Xen emulates it as zero), vCPU 0's frame checked
//!   (`GICR_TYPER.Processor_Number`), INTID 31 in group 1 (`GICR_IGROUPR0`; Xen ignores the
//!   write, its vGICv3 injects group 1), its priority and enable in the SGI/PPI frame
//!   (`GICR_IPRIORITYR`, `GICR_ISENABLER0`), distributor affinity routing and group 1
//!   (`GICD_CTLR`), priority mask (`ICC_PMR_EL1`), EOI mode 0 (`ICC_CTLR_EL1.EOImode`),
//!   group 1 on (`ICC_IGRPEN1_EL1`). Acknowledge/end with `ICC_IAR1_EL1`/`ICC_EOIR1_EL1`.
//!
//! Pending upcalls are not cleared: one Xen injected before the PPI was enabled (the
//! bind-time event, spec §1.3) stays pending in the vGIC and is delivered once enabled,
//! which costs one early wake-up and nothing else.

use crate::fdt::{Fdt, Node};
use crate::memmap;
use core::fmt;

/// The event-channel upcall interrupt of a domU: PPI 31 (`GUEST_EVTCHN_PPI`).
pub const UPCALL_INTID: u32 = staticbus_abi::guest::EVTCHN_PPI;

/// Priority given to the upcall PPI (lower is more urgent).
pub const UPCALL_PRIORITY: u8 = 0x80;

/// The CPU interface's priority mask: interrupts with a priority value below it are
/// signalled. Above [`UPCALL_PRIORITY`].
pub const PRIORITY_MASK: u8 = 0xf0;

/// INTIDs from this one up are special (1020–1023: spurious, no interrupt pending).
pub const FIRST_SPECIAL_INTID: u32 = 1020;

/// GICv2 distributor bytes the driver uses (one 4 KiB frame).
const V2_DIST_LEN: u64 = 0x1000;
/// GICv2 CPU interface bytes the driver uses (Xen maps 8 KiB).
const V2_CPU_LEN: u64 = 0x2000;
/// GICv3 distributor bytes (64 KiB).
const V3_DIST_LEN: u64 = 0x1_0000;
/// One GICv3 redistributor: RD frame + SGI/PPI frame (128 KiB).
const V3_REDIST_LEN: u64 = 0x2_0000;

/// The register offsets and bits the driver uses (GIC architecture specification).
pub mod reg {
    /// `GICD_CTLR`.
    pub const GICD_CTLR: usize = 0x000;
    /// `GICD_ISENABLER0` (v2: SGIs/PPIs of the calling CPU).
    pub const GICD_ISENABLER0: usize = 0x100;
    /// `GICD_IPRIORITYR`: one byte per INTID.
    pub const GICD_IPRIORITYR: usize = 0x400;
    /// `GICC_CTLR`.
    pub const GICC_CTLR: usize = 0x000;
    /// `GICC_PMR`.
    pub const GICC_PMR: usize = 0x004;
    /// `GICC_IAR`.
    pub const GICC_IAR: usize = 0x00c;
    /// `GICC_EOIR`.
    pub const GICC_EOIR: usize = 0x010;
    /// `GICR_TYPER` (64-bit, RD frame).
    pub const GICR_TYPER: usize = 0x008;
    /// `GICR_WAKER` (RD frame).
    pub const GICR_WAKER: usize = 0x014;
    /// Offset of the SGI/PPI frame from the RD frame.
    pub const SGI_FRAME: usize = 0x1_0000;
    /// `GICR_IGROUPR0` (SGI/PPI frame).
    pub const GICR_IGROUPR0: usize = SGI_FRAME + 0x080;
    /// `GICR_ISENABLER0` (SGI/PPI frame).
    pub const GICR_ISENABLER0: usize = SGI_FRAME + 0x100;
    /// `GICR_IPRIORITYR` (SGI/PPI frame): one byte per INTID.
    pub const GICR_IPRIORITYR: usize = SGI_FRAME + 0x400;

    /// `GICD_CTLR.EnableGrp0` (GICv2: distributor enable).
    pub const GICD_CTLR_ENABLE_V2: u32 = 1 << 0;
    /// `GICD_CTLR.EnableGrp1A` (GICv3, non-secure view).
    pub const GICD_CTLR_ENABLE_G1A: u32 = 1 << 1;
    /// `GICD_CTLR.ARE_NS` (GICv3: affinity routing).
    pub const GICD_CTLR_ARE_NS: u32 = 1 << 4;
    /// `GICC_CTLR.EnableGrp0`.
    pub const GICC_CTLR_ENABLE_GRP0: u32 = 1 << 0;
    /// `GICR_WAKER.ProcessorSleep`.
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// `GICR_WAKER.ChildrenAsleep`.
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    /// `GICR_TYPER.Processor_Number` (bits 23:8).
    pub const TYPER_PROCESSOR_SHIFT: u32 = 8;
    /// `ICC_SRE_EL1.SRE`, `.DFB`, `.DIB`.
    pub const SRE_ENABLE: u64 = 0b111;
    /// `ICC_CTLR_EL1.EOImode`.
    pub const ICC_CTLR_EOIMODE: u64 = 1 << 1;
    /// INTID bits of `GICC_IAR`.
    pub const V2_INTID_MASK: u32 = 0x3ff;
    /// INTID bits of `ICC_IAR1_EL1`.
    pub const V3_INTID_MASK: u64 = 0xff_ffff;
}

/// The architecture version of the guest's GIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped CPU interface.
    V2,
    /// GICv3: redistributors and the system-register CPU interface.
    V3,
}

impl GicVersion {
    /// The version a `compatible` string names, if it is one of Xen's GIC nodes.
    pub fn from_compatible(compatible: &str) -> Option<Self> {
        match compatible {
            "arm,gic-400" | "arm,cortex-a15-gic" => Some(GicVersion::V2),
            "arm,gic-v3" => Some(GicVersion::V3),
            _ => None,
        }
    }
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GicVersion::V2 => "GICv2",
            GicVersion::V3 => "GICv3",
        })
    }
}

/// Why the GIC could not be found or set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// The guest tree has no root node with `interrupt-controller` and a GICv2/v3
    /// `compatible`.
    NotInTree,
    /// The node's `reg` does not have the frames its version needs.
    BadReg,
    /// A frame lies outside the device windows the runtime maps as Device memory.
    NotDevice {
        /// Frame base.
        base: u64,
        /// Bytes the driver uses.
        len: u64,
    },
    /// GICv3: `ICC_SRE_EL1.SRE` stays 0 (no system-register CPU interface).
    NoSystemRegisters,
    /// GICv3: the first redistributor is not vCPU 0's (`GICR_TYPER.Processor_Number`).
    NotVcpu0Redistributor {
        /// The processor number it reports.
        processor: u32,
    },
    /// GICv3: the redistributor did not wake up (`GICR_WAKER.ChildrenAsleep` stays set).
    RedistributorAsleep,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GicError::NotInTree => {
                f.write_str("no GICv2/GICv3 interrupt-controller node in the guest tree")
            }
            GicError::BadReg => f.write_str("the GIC node's reg lacks a frame"),
            GicError::NotDevice { base, len } => write!(
                f,
                "GIC frame {base:#x}+{len:#x} is outside the runtime's device windows"
            ),
            GicError::NoSystemRegisters => {
                f.write_str("GICv3 without the system-register CPU interface (ICC_SRE_EL1.SRE = 0)")
            }
            GicError::NotVcpu0Redistributor { processor } => write!(
                f,
                "the first GICv3 redistributor belongs to processor {processor}, not vCPU 0"
            ),
            GicError::RedistributorAsleep => f.write_str("the GICv3 redistributor stays asleep"),
        }
    }
}

impl core::error::Error for GicError {}

/// The guest's GIC: its version and the frames the driver uses, read from the guest
/// device tree and checked to lie in Device memory of the runtime's map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    version: GicVersion,
    dist: u64,
    cpu: u64,
}

impl Gic {
    /// Finds the GIC in the guest tree: the first root child with an
    /// `interrupt-controller` property and a GICv2/v3 `compatible` (any string of the
    /// list), its `reg` read with the root's `#address-cells`/`#size-cells` (Xen: 2/2).
    pub fn from_fdt(fdt: &Fdt<'_>) -> Result<Self, GicError> {
        let root = fdt.root().ok_or(GicError::NotInTree)?;
        let cells = |name: &str, default: u64| {
            root.property(name)
                .and_then(|p| p.cells(1).next())
                .unwrap_or(default) as usize
        };
        let (ac, sc) = (cells("#address-cells", 2), cells("#size-cells", 1));
        let (node, version) = root
            .children()
            .filter(|n| n.property("interrupt-controller").is_some())
            .find_map(|n| Some((n, node_version(&n)?)))
            .ok_or(GicError::NotInTree)?;
        let mut reg = reg_pairs(&node, ac, sc).ok_or(GicError::BadReg)?;
        let (dist, dist_size) = reg.next().ok_or(GicError::BadReg)?;
        let (cpu, cpu_size) = reg.next().ok_or(GicError::BadReg)?;
        let (dist_len, cpu_len) = match version {
            GicVersion::V2 => (V2_DIST_LEN, V2_CPU_LEN),
            GicVersion::V3 => (V3_DIST_LEN, V3_REDIST_LEN),
        };
        if dist_size < dist_len || cpu_size < cpu_len {
            return Err(GicError::BadReg);
        }
        for (base, len) in [(dist, dist_len), (cpu, cpu_len)] {
            if !in_device_window(base, len) {
                return Err(GicError::NotDevice { base, len });
            }
        }
        Ok(Gic { version, dist, cpu })
    }

    /// The GIC's version.
    pub fn version(&self) -> GicVersion {
        self.version
    }

    /// The distributor's base.
    pub fn distributor(&self) -> u64 {
        self.dist
    }

    /// GICv2: the CPU interface's base; GICv3: vCPU 0's redistributor (RD frame; the
    /// SGI/PPI frame follows at +`0x10000`).
    pub fn cpu_frame(&self) -> u64 {
        self.cpu
    }
}

/// The GIC version of `node`'s `compatible` list, if any entry names one.
fn node_version(node: &Node<'_>) -> Option<GicVersion> {
    node.property("compatible")?
        .strings()
        .find_map(GicVersion::from_compatible)
}

/// `reg` of `node` as `(address, size)` pairs with `ac`/`sc` cells (1 or 2 each).
fn reg_pairs<'a>(
    node: &Node<'a>,
    ac: usize,
    sc: usize,
) -> Option<impl Iterator<Item = (u64, u64)> + 'a> {
    if !(1..=2).contains(&ac) || !(1..=2).contains(&sc) {
        return None;
    }
    let value = node.property("reg")?.value;
    let cell = |c: &[u8]| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    let num = move |c: &[u8]| c.chunks_exact(4).fold(0u64, |acc, w| (acc << 32) | cell(w));
    Some(
        value
            .chunks_exact((ac + sc) * 4)
            .map(move |e| (num(&e[..ac * 4]), num(&e[ac * 4..]))),
    )
}

/// True if `[base, base + len)` lies inside one of [`memmap::DEVICE_WINDOWS`].
fn in_device_window(base: u64, len: u64) -> bool {
    let Some(end) = base.checked_add(len) else {
        return false;
    };
    memmap::DEVICE_WINDOWS
        .iter()
        .any(|&(s, e)| base >= s && end <= e)
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hw {
    use super::{reg, Gic, GicError, GicVersion, PRIORITY_MASK, UPCALL_INTID, UPCALL_PRIORITY};
    use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};

    /// The GIC the interrupt handler talks to: 0 = none yet, 2 or 3.
    static ACTIVE: AtomicU8 = AtomicU8::new(0);
    /// GICv2: the CPU interface's base.
    static CPU_BASE: AtomicUsize = AtomicUsize::new(0);

    /// A 32-bit register of a frame [`Gic::from_fdt`] checked to be Device memory.
    fn read32(base: u64, off: usize) -> u32 {
        // SAFETY: `base` is a GIC frame that `Gic::from_fdt` checked lies in a device
        // window, which the boot code maps Device-nGnRnE for the whole run; `off` is a
        // 4-byte aligned register offset inside the frame's checked length. Xen's vGIC
        // accepts 32-bit accesses to these registers. No Rust object lives there.
        unsafe { crate::mmio::read32(base as usize + off) }
    }

    fn write32(base: u64, off: usize, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { crate::mmio::write32(base as usize + off, v) }
    }

    fn read64(base: u64, off: usize) -> u64 {
        // SAFETY: as in `read32`, for an 8-byte aligned 64-bit register (GICR_TYPER,
        // which Xen's vGICv3 lets the guest read as one 64-bit access).
        unsafe { crate::mmio::read64(base as usize + off) }
    }

    /// Sets the priority byte of INTID `intid` in the IPRIORITYR block at `off`, with a
    /// 32-bit read-modify-write.
    fn set_priority(base: u64, off: usize, intid: u32, prio: u8) {
        let word = off + (intid as usize & !3);
        let shift = (intid % 4) * 8;
        let v = read32(base, word) & !(0xff << shift);
        write32(base, word, v | (u32::from(prio) << shift));
    }

    macro_rules! sysreg_read {
        ($name:literal) => {{
            let v: u64;
            // SAFETY: reading a GICv3 CPU-interface system register at EL1 accesses no
            // memory (acknowledging an interrupt is its only side effect). ICC_SRE_EL1 is
            // always accessible at EL1; the others are used only once ICC_SRE_EL1.SRE
            // reads as 1 (`enable_v3` checks it before `ACTIVE` says GICv3).
            unsafe {
                core::arch::asm!(
                    concat!("mrs {v}, ", $name),
                    v = out(reg) v,
                    options(nomem, nostack)
                )
            };
            v
        }};
    }

    macro_rules! sysreg_write {
        ($name:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: writing a GICv3 CPU-interface register at EL1 only changes interrupt
            // signalling (no memory effect); the ISB makes it take effect.
            unsafe {
                core::arch::asm!(
                    concat!("msr ", $name, ", {v}"),
                    "isb",
                    v = in(reg) v,
                    options(nostack)
                )
            };
        }};
    }

    impl Gic {
        /// Enables the upcall PPI (INTID 31) at this GIC and its CPU interface as the
        /// module documentation lists, and makes the interrupt handler use this GIC.
        /// Does not unmask IRQs (PSTATE.I). Call once, on vCPU 0, before any IRQ can be
        /// taken.
        pub fn enable_upcall(&self) -> Result<(), GicError> {
            match self.version {
                GicVersion::V2 => self.enable_v2(),
                GicVersion::V3 => self.enable_v3()?,
            }
            CPU_BASE.store(self.cpu as usize, SeqCst);
            ACTIVE.store(
                match self.version {
                    GicVersion::V2 => 2,
                    GicVersion::V3 => 3,
                },
                SeqCst,
            );
            Ok(())
        }

        fn enable_v2(&self) {
            let (d, c) = (self.dist, self.cpu);
            write32(
                d,
                reg::GICD_CTLR,
                read32(d, reg::GICD_CTLR) | reg::GICD_CTLR_ENABLE_V2,
            );
            set_priority(d, reg::GICD_IPRIORITYR, UPCALL_INTID, UPCALL_PRIORITY);
            write32(d, reg::GICD_ISENABLER0, 1 << UPCALL_INTID);
            write32(c, reg::GICC_PMR, u32::from(PRIORITY_MASK));
            write32(c, reg::GICC_CTLR, reg::GICC_CTLR_ENABLE_GRP0);
        }

        fn enable_v3(&self) -> Result<(), GicError> {
            let (d, r) = (self.dist, self.cpu);
            sysreg_write!("icc_sre_el1", sysreg_read!("icc_sre_el1") | reg::SRE_ENABLE);
            if sysreg_read!("icc_sre_el1") & 1 == 0 {
                return Err(GicError::NoSystemRegisters);
            }
            let processor =
                ((read64(r, reg::GICR_TYPER) >> reg::TYPER_PROCESSOR_SHIFT) & 0xffff) as u32;
            if processor != 0 {
                return Err(GicError::NotVcpu0Redistributor { processor });
            }
            let waker = read32(r, reg::GICR_WAKER);
            if waker & reg::WAKER_PROCESSOR_SLEEP != 0 {
                write32(r, reg::GICR_WAKER, waker & !reg::WAKER_PROCESSOR_SLEEP);
            }
            let mut awake = false;
            for _ in 0..1_000_000 {
                if read32(r, reg::GICR_WAKER) & reg::WAKER_CHILDREN_ASLEEP == 0 {
                    awake = true;
                    break;
                }
                core::hint::spin_loop();
            }
            if !awake {
                return Err(GicError::RedistributorAsleep);
            }
            write32(
                r,
                reg::GICR_IGROUPR0,
                read32(r, reg::GICR_IGROUPR0) | 1 << UPCALL_INTID,
            );
            set_priority(r, reg::GICR_IPRIORITYR, UPCALL_INTID, UPCALL_PRIORITY);
            write32(r, reg::GICR_ISENABLER0, 1 << UPCALL_INTID);
            let ctlr = read32(d, reg::GICD_CTLR);
            write32(
                d,
                reg::GICD_CTLR,
                ctlr | reg::GICD_CTLR_ARE_NS | reg::GICD_CTLR_ENABLE_G1A,
            );
            sysreg_write!("icc_pmr_el1", u64::from(PRIORITY_MASK));
            sysreg_write!(
                "icc_ctlr_el1",
                sysreg_read!("icc_ctlr_el1") & !reg::ICC_CTLR_EOIMODE
            );
            sysreg_write!("icc_igrpen1_el1", 1);
            Ok(())
        }
    }

    /// An acknowledged interrupt, to hand back to [`end`].
    #[derive(Clone, Copy, Debug)]
    pub struct Acked {
        /// The INTID ([`super::FIRST_SPECIAL_INTID`] and up: nothing was pending).
        pub intid: u32,
        raw: u64,
        version: u8,
    }

    /// Acknowledges the highest-priority pending interrupt (`GICC_IAR` /
    /// `ICC_IAR1_EL1`); `None` if no GIC was enabled.
    pub fn acknowledge() -> Option<Acked> {
        match ACTIVE.load(SeqCst) {
            2 => {
                let raw = read32(CPU_BASE.load(SeqCst) as u64, reg::GICC_IAR);
                Some(Acked {
                    intid: raw & reg::V2_INTID_MASK,
                    raw: raw.into(),
                    version: 2,
                })
            }
            3 => {
                let raw = sysreg_read!("icc_iar1_el1");
                Some(Acked {
                    intid: (raw & reg::V3_INTID_MASK) as u32,
                    raw,
                    version: 3,
                })
            }
            _ => None,
        }
    }

    /// Ends an acknowledged interrupt (`GICC_EOIR` / `ICC_EOIR1_EL1`, EOI mode 0: priority
    /// drop and deactivation). Not for special INTIDs.
    pub fn end(a: Acked) {
        match a.version {
            2 => write32(CPU_BASE.load(SeqCst) as u64, reg::GICC_EOIR, a.raw as u32),
            _ => sysreg_write!("icc_eoir1_el1", a.raw),
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use hw::{acknowledge, end, Acked};

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Sources;
    use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader};
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    fn dtb(body: &str) -> Vec<u8> {
        let dts = format!(
            "/dts-v1/;\n/ {{ #address-cells = <2>; #size-cells = <2>; \
             interrupt-parent = <65000>;\n{body}\n}};\n"
        );
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            "t.dts",
            dts.to_string(),
            &DtsOptions::default(),
            &FsLoader,
        );
        assert!(!diags.has_errors(), "{diags:?}");
        write_dtb(&tree.unwrap())
    }

    fn gic(body: &str) -> Result<Gic, GicError> {
        let blob = dtb(body);
        Gic::from_fdt(&Fdt::new(&blob).unwrap())
    }

    /// The nodes Xen writes (make_gicv2_domU_node / make_gicv3_domU_node).
    const XEN_V2: &str = r#"interrupt-controller@3001000 {
        #address-cells = <0>; #interrupt-cells = <3>; interrupt-controller;
        compatible = "arm,gic-400";
        reg = <0 0x03001000 0 0x1000>, <0 0x03002000 0 0x2000>;
        phandle = <65000>; };"#;
    const XEN_V3: &str = r#"interrupt-controller@3001000 {
        compatible = "arm,gic-v3"; #interrupt-cells = <3>; #address-cells = <0>;
        interrupt-controller; redistributor-stride = <0x20000>;
        #redistributor-regions = <1>;
        reg = <0 0x03001000 0 0x10000>, <0 0x03020000 0 0x20000>;
        phandle = <65000>; };"#;

    #[test]
    fn finds_xen_gicv2_and_gicv3_nodes() {
        assert_eq!(
            gic(XEN_V2),
            Ok(Gic {
                version: GicVersion::V2,
                dist: 0x0300_1000,
                cpu: 0x0300_2000
            })
        );
        let v3 = gic(XEN_V3).unwrap();
        assert_eq!(v3.version(), GicVersion::V3);
        assert_eq!(v3.distributor(), 0x0300_1000);
        assert_eq!(v3.cpu_frame(), 0x0302_0000);
        assert_eq!(std::format!("{}", v3.version()), "GICv3");
        // Another node first (the vPL011), and a compatible list.
        let listed = r#"sbsa-uart@22000000 { compatible = "arm,sbsa-uart"; };
            gic@3001000 { interrupt-controller;
            compatible = "vendor,thing", "arm,cortex-a15-gic";
            reg = <0 0x03001000 0 0x1000>, <0 0x03002000 0 0x2000>; };"#;
        assert_eq!(gic(listed).unwrap().version(), GicVersion::V2);
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        assert_eq!(gic(""), Err(GicError::NotInTree));
        // No interrupt-controller property, or an unknown compatible.
        assert_eq!(
            gic(r#"ic@3001000 { compatible = "arm,gic-v3";
                reg = <0 0x03001000 0 0x10000>, <0 0x03020000 0 0x20000>; };"#),
            Err(GicError::NotInTree)
        );
        assert_eq!(
            gic(
                r#"ic@3001000 { interrupt-controller; compatible = "arm,gic-v4";
                reg = <0 0x03001000 0 0x10000>, <0 0x03020000 0 0x20000>; };"#
            ),
            Err(GicError::NotInTree)
        );
        // One frame only; frames too small.
        assert_eq!(
            gic(
                r#"ic@3001000 { interrupt-controller; compatible = "arm,gic-400";
                reg = <0 0x03001000 0 0x1000>; };"#
            ),
            Err(GicError::BadReg)
        );
        assert_eq!(
            gic(
                r#"ic@3001000 { interrupt-controller; compatible = "arm,gic-v3";
                reg = <0 0x03001000 0 0x10000>, <0 0x03020000 0 0x10000>; };"#
            ),
            Err(GicError::BadReg)
        );
        // A frame in Normal memory of the runtime's map.
        assert_eq!(
            gic(
                r#"ic@8000000 { interrupt-controller; compatible = "arm,gic-400";
                reg = <0 0x08000000 0 0x1000>, <0 0x08010000 0 0x2000>; };"#
            ),
            Err(GicError::NotDevice {
                base: 0x0800_0000,
                len: 0x1000
            })
        );
        // The last redistributor of the window is fine, one past it is not.
        assert!(gic(
            r#"ic@3001000 { interrupt-controller; compatible = "arm,gic-v3";
                reg = <0 0x03001000 0 0x10000>, <0 0x04000000 0 0x20000>; };"#
        )
        .is_ok());
        assert_eq!(
            gic(
                r#"ic@3001000 { interrupt-controller; compatible = "arm,gic-v3";
                reg = <0 0x03001000 0 0x10000>, <0 0x04010000 0 0x20000>; };"#
            ),
            Err(GicError::NotDevice {
                base: 0x0401_0000,
                len: 0x2_0000
            })
        );
    }

    #[test]
    fn reg_with_one_cell_roots() {
        let blob = {
            let dts = r#"/dts-v1/;
/ { #address-cells = <1>; #size-cells = <1>;
    intc@3001000 { interrupt-controller; compatible = "arm,gic-400";
        reg = <0x03001000 0x1000>, <0x03002000 0x2000>; };
};
"#;
            let mut sources = Sources::new();
            let (tree, _) = parse_dts(
                &mut sources,
                "t.dts",
                dts.to_string(),
                &DtsOptions::default(),
                &FsLoader,
            );
            write_dtb(&tree.unwrap())
        };
        let g = Gic::from_fdt(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!((g.distributor(), g.cpu_frame()), (0x0300_1000, 0x0300_2000));
    }
}
