//! Xen public ABI and dom0less device-tree binding constants, as used by the staticbus
//! validator, emulator and guests. Values are from Xen's public headers and
//! `docs/misc/arm/device-tree/booting.txt` (4.17–4.20); see `shared/spec/xen-dom0less.md`.
//!
//! `no_std`, no dependencies: this crate is linked into bare-metal guests.

#![no_std]
#![deny(unsafe_code)]

/// Device-tree binding strings (compatibles and property names) Xen matches on.
pub mod dt {
    /// Compatible of a dom0less domain node under `/chosen`.
    pub const DOMAIN_COMPAT: &str = "xen,domain";
    /// Compatible of a static event-channel endpoint node.
    pub const EVTCHN_COMPAT: &str = "xen,evtchn-v1";
    /// Property holding `<local-port peer-phandle>`.
    pub const EVTCHN_PROP: &str = "xen,evtchn";
    /// Compatible of a static shared-memory node.
    pub const SHM_COMPAT: &str = "xen,domain-shared-memory-v1";
    /// Property holding the region id string.
    pub const SHM_ID_PROP: &str = "xen,shm-id";
    /// Property holding `<host guest size>` or `<guest size>`.
    pub const SHM_MEM_PROP: &str = "xen,shared-mem";
    /// Compatible every boot-module node must list.
    pub const MODULE_COMPAT: &str = "multiboot,module";
    /// Legacy alternative to [`MODULE_COMPAT`].
    pub const MODULE_COMPAT_LEGACY: &str = "xen,multiboot-module";
    /// Kernel module kind.
    pub const KERNEL_COMPAT: &str = "multiboot,kernel";
    /// Ramdisk module kind.
    pub const RAMDISK_COMPAT: &str = "multiboot,ramdisk";
    /// Passthrough device-tree module kind.
    pub const DTB_COMPAT: &str = "multiboot,device-tree";
    /// Compatible of the node Xen writes into a guest DT for each shared region.
    pub const GUEST_SHM_COMPAT: &str = "xen,shared-memory-v1";
    /// Maximum `xen,shm-id` length in bytes, including the terminating NUL.
    pub const MAX_SHM_ID_LENGTH: usize = 16;
    /// Maximum node-name length Xen handles (`DT_MAX_NAME`).
    pub const MAX_NODE_NAME: usize = 41;
    /// Maximum boot modules (`MAX_MODULES`).
    pub const MAX_MODULES: usize = 32;
    /// Maximum `bootargs` length of a module.
    pub const MAX_BOOTARGS: usize = 1024;
    /// Shared-memory banks in total and per domain, 4.19+ (`NR_SHMEM_BANKS`).
    pub const NR_SHMEM_BANKS: usize = 32;
    /// Reserved-memory banks, shared with shm in 4.17/4.18 (`NR_MEM_BANKS`).
    pub const NR_MEM_BANKS: usize = 256;
}

/// Domain ids.
pub mod domid {
    /// The caller itself.
    pub const DOMID_SELF: u16 = 0x7FF0;
    /// The I/O system domain, default owner of roleless shared regions.
    pub const DOMID_IO: u16 = 0x7FF1;
    /// Xen itself.
    pub const DOMID_XEN: u16 = 0x7FF2;
    /// First id that is not a normal domain.
    pub const DOMID_FIRST_RESERVED: u16 = 0x7FF0;
}

/// Event-channel limits for statically bound ports.
pub mod evtchn {
    /// Highest port a dom0less domU can own (`max_evtchn_port` = 1023).
    pub const DOMU_MAX_PORT: u32 = 1023;
    /// Highest port dom0 can own (2-level ABI: 4096 ports).
    pub const DOM0_MAX_PORT: u32 = 4095;
    /// Ports in the 2-level ABI on arm64.
    pub const NR_CHANNELS_2L: u32 = 4096;

    /// `EVTCHNOP_bind_interdomain`.
    pub const OP_BIND_INTERDOMAIN: u32 = 0;
    /// `EVTCHNOP_close`.
    pub const OP_CLOSE: u32 = 3;
    /// `EVTCHNOP_send`.
    pub const OP_SEND: u32 = 4;
    /// `EVTCHNOP_status`.
    pub const OP_STATUS: u32 = 5;
    /// `EVTCHNOP_alloc_unbound`.
    pub const OP_ALLOC_UNBOUND: u32 = 6;
    /// `EVTCHNOP_unmask`.
    pub const OP_UNMASK: u32 = 9;

    /// Status: closed.
    pub const STAT_CLOSED: u32 = 0;
    /// Status: unbound.
    pub const STAT_UNBOUND: u32 = 1;
    /// Status: interdomain.
    pub const STAT_INTERDOMAIN: u32 = 2;
}

/// Hypercall numbers (`xen.h`).
pub mod hypercall {
    /// `memory_op`.
    pub const MEMORY_OP: u64 = 12;
    /// `xen_version`.
    pub const XEN_VERSION: u64 = 17;
    /// `console_io`.
    pub const CONSOLE_IO: u64 = 18;
    /// `vcpu_op`.
    pub const VCPU_OP: u64 = 24;
    /// `sched_op`.
    pub const SCHED_OP: u64 = 29;
    /// `event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `hvm_op`.
    pub const HVM_OP: u64 = 34;
    /// The `HVC` immediate of a Xen hypercall on Arm.
    pub const HVC_TAG: u16 = 0xEA1;
}

/// A guest-physical window of the Xen/Arm domU memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// What lives there.
    pub name: &'static str,
    /// Base address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The Xen/Arm guest memory map (`public/arch-arm.h`), unchanged 4.17–4.20.
pub mod guest {
    use super::Window;

    /// First RAM bank base.
    pub const RAM0_BASE: u64 = 0x4000_0000;
    /// First RAM bank maximum size (3 GiB).
    pub const RAM0_SIZE: u64 = 0xC000_0000;
    /// Second RAM bank base.
    pub const RAM1_BASE: u64 = 0x02_0000_0000;
    /// Second RAM bank maximum size.
    pub const RAM1_SIZE: u64 = 0xFE_0000_0000;
    /// vPL011 base.
    pub const PL011_BASE: u64 = 0x2200_0000;
    /// Upcall PPI for event channels (INTID).
    pub const EVTCHN_PPI: u32 = 31;
    /// vPL011 SPI (INTID).
    pub const VPL011_SPI: u32 = 32;

    /// Device and Xen windows every domU has (GICv2 layout).
    pub const WINDOWS_GICV2: &[Window] = &[
        Window {
            name: "virtio-mmio window",
            base: 0x0200_0000,
            size: 0x0010_0000,
        },
        Window {
            name: "GICv2 distributor",
            base: 0x0300_1000,
            size: 0x1000,
        },
        Window {
            name: "GICv2 CPU interface",
            base: 0x0300_2000,
            size: 0x2000,
        },
        Window {
            name: "vPL011 UART",
            base: PL011_BASE,
            size: 0x1000,
        },
        Window {
            name: "grant-table window",
            base: 0x3800_0000,
            size: 0x0100_0000,
        },
        Window {
            name: "Xen magic pages",
            base: 0x3900_0000,
            size: 0x0100_0000,
        },
    ];

    /// Device and Xen windows every domU has (GICv3 layout).
    pub const WINDOWS_GICV3: &[Window] = &[
        Window {
            name: "virtio-mmio window",
            base: 0x0200_0000,
            size: 0x0010_0000,
        },
        Window {
            name: "GICv3 distributor",
            base: 0x0300_1000,
            size: 0x10000,
        },
        Window {
            name: "GICv3 redistributors",
            base: 0x0302_0000,
            size: 0x0100_0000,
        },
        Window {
            name: "vPL011 UART",
            base: PL011_BASE,
            size: 0x1000,
        },
        Window {
            name: "grant-table window",
            base: 0x3800_0000,
            size: 0x0100_0000,
        },
        Window {
            name: "Xen magic pages",
            base: 0x3900_0000,
            size: 0x0100_0000,
        },
    ];
}

/// Page size Xen requires shared regions to be aligned to.
pub const PAGE_SIZE: u64 = 4096;
