//! What the runtime reads from the device tree QEMU generates for the `virt` machine:
//! the PCIe host bridge (ECAM window, bus range, the 32-bit MMIO window BARs may use),
//! the GICv2 (distributor, CPU interface) with its GICv2m MSI frame, and the console
//! UART. Nothing but register offsets is hard-coded; [`Board::from_fdt`] checks that
//! every frame lies where the boot code's map makes it Device memory
//! ([`crate::memmap`]) and that the addresses the runtime assigns to the ivshmem BARs
//! ([`staticbus_abi::ivshmem`]) are inside the bridge's MMIO window.

use crate::memmap;
use core::fmt;
use staticbus_abi::ivshmem;
use staticbus_baremetal_aarch64::fdt::{Fdt, Node};

/// `ranges` space code of 32-bit memory (bits 25:24 of the first cell).
const SPACE_MEM32: u32 = 0b10;
/// `ranges` space code of 64-bit memory.
const SPACE_MEM64: u32 = 0b11;

/// The PCIe host bridge (`pci-host-ecam-generic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBridge {
    /// ECAM base (bus `bus_start`).
    pub ecam: u64,
    /// ECAM bytes (1 MiB per bus).
    pub ecam_size: u64,
    /// First bus number.
    pub bus_start: u8,
    /// Last bus number.
    pub bus_end: u8,
    /// The memory window BARs are placed in: `(cpu address, PCI address, size)`.
    pub mmio: (u64, u64, u64),
}

/// The GICv2 and its GICv2m frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// Distributor base.
    pub dist: u64,
    /// CPU interface base.
    pub cpu: u64,
    /// GICv2m MSI frame base.
    pub v2m: u64,
}

/// Everything the runtime needs of the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The PCIe host bridge.
    pub pci: HostBridge,
    /// The interrupt controller.
    pub gic: Gic,
    /// The console UART's base.
    pub uart: u64,
}

/// Why the device tree does not describe a board the runtime can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardError {
    /// The root node does not use 2 address and 2 size cells (QEMU's `virt` does).
    RootCells,
    /// No node with this `compatible` (or it lacks a usable `reg`).
    Missing(&'static str),
    /// The host bridge has no 32-bit memory window in `ranges`, or it does not hold the
    /// BAR addresses the runtime assigns.
    NoMmioWindow,
    /// A frame is not where the boot code maps Device memory.
    NotDevice(&'static str, u64),
    /// The GIC is not a GICv2 with a v2m frame (start QEMU with `gic-version=2`).
    NotGicV2,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BoardError::RootCells => {
                f.write_str("the root node does not have #address-cells = #size-cells = 2")
            }
            BoardError::Missing(what) => write!(f, "no usable `{what}` node in the device tree"),
            BoardError::NoMmioWindow => f.write_str(
                "the PCIe host bridge has no 32-bit memory window holding the ivshmem BAR \
                 addresses (start QEMU's virt machine with highmem=off)",
            ),
            BoardError::NotDevice(what, at) => write!(
                f,
                "{what} at {at:#x} is outside the runtime's Device memory (the first GiB, \
                 clear of the shared object window)"
            ),
            BoardError::NotGicV2 => f.write_str(
                "no GICv2 with a GICv2m frame (start QEMU with -machine virt,gic-version=2)",
            ),
        }
    }
}

impl core::error::Error for BoardError {}

fn compatible_with(node: &Node<'_>, want: &str) -> bool {
    node.property("compatible")
        .is_some_and(|p| p.strings().any(|s| s == want))
}

/// The first node (root's children, then their children) compatible with one of `want`.
fn find<'a>(fdt: &Fdt<'a>, want: &[&str]) -> Option<Node<'a>> {
    let root = fdt.root()?;
    root.children()
        .flat_map(|n| core::iter::once(n).chain(n.children()))
        .find(|n| want.iter().any(|w| compatible_with(n, w)))
}

/// `reg` as `(address, size)` pairs of 2 + 2 cells.
fn reg<'a>(node: &Node<'a>) -> impl Iterator<Item = (u64, u64)> + 'a {
    let mut cells = node
        .property("reg")
        .map(|p| p.cells(2))
        .into_iter()
        .flatten();
    core::iter::from_fn(move || Some((cells.next()?, cells.next()?)))
}

/// One 32-bit cell at `i` of `v`.
fn cell(v: &[u8], i: usize) -> Option<u32> {
    let b = v.get(i * 4..i * 4 + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn two(v: &[u8], i: usize) -> Option<u64> {
    Some((u64::from(cell(v, i)?) << 32) | u64::from(cell(v, i + 1)?))
}

impl HostBridge {
    fn from_node(node: &Node<'_>) -> Result<Self, BoardError> {
        const WHAT: &str = "pci-host-ecam-generic";
        let (ecam, ecam_size) = reg(node).next().ok_or(BoardError::Missing(WHAT))?;
        let (bus_start, bus_end) = match node.property("bus-range") {
            Some(p) => match (cell(p.value, 0), cell(p.value, 1)) {
                (Some(a), Some(b)) if a <= b && b <= 255 => (a as u8, b as u8),
                _ => return Err(BoardError::Missing(WHAT)),
            },
            None => (0, ((ecam_size >> 20).saturating_sub(1)).min(255) as u8),
        };
        // ranges: <flags pci-hi pci-lo cpu-hi cpu-lo size-hi size-lo> (3 + 2 + 2 cells).
        let ranges = node
            .property("ranges")
            .ok_or(BoardError::NoMmioWindow)?
            .value;
        let mut mmio = None;
        for i in (0..ranges.len() / 28).map(|e| e * 7) {
            let (Some(flags), Some(pci), Some(cpu), Some(size)) = (
                cell(ranges, i),
                two(ranges, i + 1),
                two(ranges, i + 3),
                two(ranges, i + 5),
            ) else {
                break;
            };
            let space = (flags >> 24) & 0b11;
            let holds = |a: u64, len: u64| {
                a >= cpu
                    && a.checked_add(len)
                        .is_some_and(|e| e <= cpu.saturating_add(size))
            };
            if (space == SPACE_MEM32 || space == SPACE_MEM64)
                && holds(ivshmem::BAR0_BASE, ivshmem::SMALL_BAR_MAX)
                && holds(ivshmem::BAR1_BASE, ivshmem::SMALL_BAR_MAX)
                && holds(ivshmem::SHM_BASE, ivshmem::SHM_MAX)
            {
                mmio = Some((cpu, pci, size));
                break;
            }
        }
        let mmio = mmio.ok_or(BoardError::NoMmioWindow)?;
        if !memmap::in_device_blocks(ecam, ecam_size) {
            return Err(BoardError::NotDevice("the ECAM window", ecam));
        }
        Ok(HostBridge {
            ecam,
            ecam_size,
            bus_start,
            bus_end,
            mmio,
        })
    }

    /// The PCI address a CPU address in the MMIO window has (what a BAR holds).
    pub fn pci_address(&self, cpu: u64) -> u64 {
        cpu - self.mmio.0 + self.mmio.1
    }

    /// Offset of a config-space register in the ECAM window, if the bus is in range.
    pub fn config_offset(&self, bus: u8, dev: u8, func: u8, reg: u16) -> Option<u64> {
        if bus < self.bus_start || bus > self.bus_end || dev >= 32 || func >= 8 || reg >= 4096 {
            return None;
        }
        let off = (u64::from(bus - self.bus_start) << 20)
            | (u64::from(dev) << 15)
            | (u64::from(func) << 12)
            | u64::from(reg);
        (off < self.ecam_size).then_some(off)
    }
}

impl Board {
    /// Reads the board from QEMU's generated tree (see the module documentation).
    pub fn from_fdt(fdt: &Fdt<'_>) -> Result<Self, BoardError> {
        let root = fdt.root().ok_or(BoardError::RootCells)?;
        let cells = |name| root.property(name).and_then(|p| cell(p.value, 0));
        if cells("#address-cells") != Some(2) || cells("#size-cells") != Some(2) {
            return Err(BoardError::RootCells);
        }
        let pci = find(fdt, &["pci-host-ecam-generic"])
            .ok_or(BoardError::Missing("pci-host-ecam-generic"))?;
        let pci = HostBridge::from_node(&pci)?;

        let gic = find(fdt, &["arm,cortex-a15-gic", "arm,gic-400"]).ok_or(BoardError::NotGicV2)?;
        let mut frames = reg(&gic);
        let (dist, _) = frames.next().ok_or(BoardError::NotGicV2)?;
        let (cpu, _) = frames.next().ok_or(BoardError::NotGicV2)?;
        let v2m = gic
            .children()
            .find(|n| compatible_with(n, "arm,gic-v2m-frame"))
            .and_then(|n| reg(&n).next())
            .map(|(base, _)| base)
            .ok_or(BoardError::NotGicV2)?;
        for (what, at, len) in [
            ("the GIC distributor", dist, 0x1000),
            ("the GIC CPU interface", cpu, 0x2000),
            ("the GICv2m frame", v2m, 0x1000),
        ] {
            if !memmap::in_device_blocks(at, len) {
                return Err(BoardError::NotDevice(what, at));
            }
        }

        let uart = find(fdt, &["arm,pl011"])
            .and_then(|n| reg(&n).next())
            .map_or(memmap::VIRT_PL011, |(base, _)| base);
        if !memmap::in_device_blocks(uart, 0x1000) {
            return Err(BoardError::NotDevice("the PL011", uart));
        }
        Ok(Board {
            pci,
            gic: Gic { dist, cpu, v2m },
            uart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Sources;
    use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader};
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn dtb(body: &str) -> Vec<u8> {
        let dts = std::format!("/dts-v1/;\n/ {{ {body} }};\n");
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

    /// The nodes of QEMU 7.2's `virt,gic-version=2,highmem=off` tree the runtime reads.
    fn virt(pcie_ranges: &str, gic_compat: &str) -> String {
        std::format!(
            "#address-cells = <2>; #size-cells = <2>;
             pl011@9000000 {{ compatible = \"arm,pl011\", \"arm,primecell\";
                 reg = <0 0x9000000 0 0x1000>; }};
             intc@8000000 {{ compatible = \"{gic_compat}\";
                 #address-cells = <2>; #size-cells = <2>; ranges;
                 reg = <0 0x8000000 0 0x10000 0 0x8010000 0 0x10000>;
                 v2m@8020000 {{ compatible = \"arm,gic-v2m-frame\"; msi-controller;
                     reg = <0 0x8020000 0 0x1000>; }}; }};
             pcie@10000000 {{ compatible = \"pci-host-ecam-generic\"; device_type = \"pci\";
                 #address-cells = <3>; #size-cells = <2>;
                 reg = <0 0x3f000000 0 0x1000000>; bus-range = <0 0xf>;
                 ranges = <{pcie_ranges}>; }};"
        )
    }

    const QEMU_RANGES: &str = "0x1000000 0 0 0 0x3eff0000 0 0x10000 \
                               0x2000000 0 0x10000000 0 0x10000000 0 0x2eff0000";

    #[test]
    fn reads_qemus_virt_tree() {
        let blob = dtb(&virt(QEMU_RANGES, "arm,cortex-a15-gic"));
        let b = Board::from_fdt(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!(
            b,
            Board {
                pci: HostBridge {
                    ecam: 0x3f00_0000,
                    ecam_size: 0x100_0000,
                    bus_start: 0,
                    bus_end: 15,
                    mmio: (0x1000_0000, 0x1000_0000, 0x2eff_0000),
                },
                gic: Gic {
                    dist: 0x0800_0000,
                    cpu: 0x0801_0000,
                    v2m: 0x0802_0000
                },
                uart: 0x0900_0000,
            }
        );
        assert_eq!(b.pci.config_offset(0, 2, 0, 0x10), Some(0x1_0010));
        assert_eq!(b.pci.config_offset(1, 0, 0, 0), Some(0x10_0000));
        assert_eq!(b.pci.config_offset(16, 0, 0, 0), None);
        assert_eq!(b.pci.config_offset(0, 32, 0, 0), None);
        assert_eq!(b.pci.pci_address(0x2000_0000), 0x2000_0000);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        // Only an I/O window: nowhere to put the BARs.
        let io_only = "0x1000000 0 0 0 0x3eff0000 0 0x10000";
        let blob = dtb(&virt(io_only, "arm,cortex-a15-gic"));
        assert_eq!(
            Board::from_fdt(&Fdt::new(&blob).unwrap()),
            Err(BoardError::NoMmioWindow)
        );
        // A window too small for the shared object.
        let small = "0x2000000 0 0x10000000 0 0x10000000 0 0x1000000";
        let blob = dtb(&virt(small, "arm,cortex-a15-gic"));
        assert_eq!(
            Board::from_fdt(&Fdt::new(&blob).unwrap()),
            Err(BoardError::NoMmioWindow)
        );
        // A GICv3 (no cortex-a15-gic node).
        let blob = dtb(&virt(QEMU_RANGES, "arm,gic-v3"));
        let e = Board::from_fdt(&Fdt::new(&blob).unwrap()).unwrap_err();
        assert_eq!(e, BoardError::NotGicV2);
        assert!(e.to_string().contains("gic-version=2"));
        // No host bridge.
        let blob = dtb("#address-cells = <2>; #size-cells = <2>;");
        assert_eq!(
            Board::from_fdt(&Fdt::new(&blob).unwrap()),
            Err(BoardError::Missing("pci-host-ecam-generic"))
        );
        let blob = dtb("#address-cells = <1>; #size-cells = <1>;");
        assert_eq!(
            Board::from_fdt(&Fdt::new(&blob).unwrap()),
            Err(BoardError::RootCells)
        );
    }
}
