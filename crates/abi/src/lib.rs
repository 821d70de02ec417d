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
    /// Xen 4.4's name for [`KERNEL_COMPAT`] (dom0 only: Xen's early scan knows it, the
    /// domU module lookup does not).
    pub const KERNEL_COMPAT_LEGACY: &str = "xen,linux-zimage";
    /// Xen 4.4's name for [`RAMDISK_COMPAT`] (dom0 only, like [`KERNEL_COMPAT_LEGACY`]).
    pub const RAMDISK_COMPAT_LEGACY: &str = "xen,linux-initrd";
    /// XSM policy module kind (a module for Xen itself, not for a domain).
    pub const XSM_COMPAT: &str = "xen,xsm-policy";
    /// vCPU affinity node in a domain node (Xen 4.21+).
    pub const VCPU_COMPAT: &str = "xen,vcpu";
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

/// QEMU's `ivshmem-doorbell` PCI device (`docs/specs/ivshmem-spec.txt`) and where
/// staticbus's ivshmem runtime places it on the `virt` machine (docs/adr/0005): the
/// second platform, without Xen. The compiler lays channels out in the shared object at
/// [`ivshmem::SHM_BASE`] and the runtime maps BAR2 there, so a manifest's `guest_addr` is a
/// guest-physical address on both platforms.
pub mod ivshmem {
    /// PCI vendor id (Red Hat / virtio).
    pub const VENDOR_ID: u16 = 0x1af4;
    /// PCI device id of ivshmem.
    pub const DEVICE_ID: u16 = 0x1110;
    /// BAR0 register: interrupt mask (revision 0 INTx only).
    pub const REG_INTR_MASK: usize = 0x0;
    /// BAR0 register: interrupt status (revision 0 INTx only; reading clears it).
    pub const REG_INTR_STATUS: usize = 0x4;
    /// BAR0 register: this device's peer id (IVPosition).
    pub const REG_IV_POSITION: usize = 0x8;
    /// BAR0 register: doorbell, `peer id << 16 | vector`.
    pub const REG_DOORBELL: usize = 0xc;
    /// Shift of the peer id in a doorbell value.
    pub const DOORBELL_PEER_SHIFT: u32 = 16;
    /// Guest-physical address the runtime assigns BAR0 (registers, 256 bytes).
    pub const BAR0_BASE: u64 = 0x1000_0000;
    /// Guest-physical address the runtime assigns BAR1 (MSI-X table and PBA).
    pub const BAR1_BASE: u64 = 0x1010_0000;
    /// Most bytes BAR0 or BAR1 may take at those addresses.
    pub const SMALL_BAR_MAX: u64 = 0x10_0000;
    /// Guest-physical address of BAR2, the shared object: the compiler's default
    /// shared-region window for this platform starts here.
    pub const SHM_BASE: u64 = 0x2000_0000;
    /// Largest shared object the runtime maps (its page tables map
    /// `[SHM_BASE, SHM_BASE + SHM_MAX)` Normal write-back).
    pub const SHM_MAX: u64 = 0x1000_0000;
    /// Most doorbell vectors per peer: the GICv2m frame of QEMU's `virt` machine has 64
    /// SPIs for MSIs. A domain's event "port" is the vector its peer rings, so ports
    /// are `1..MAX_VECTORS` (vector 0 is left unused).
    pub const MAX_VECTORS: u32 = 64;
    /// The vector the server rings at every remaining peer when a peer leaves, after
    /// marking it gone in the control page ([`LEFT_WORDS`]); channel ports never use it.
    pub const LEFT_VECTOR: u32 = 0;
    /// Bytes at the end of the shared object that no region may use: the control page
    /// the server writes.
    pub const CONTROL_PAGE: u64 = 0x1000;
    /// The control page holds one little-endian `u32` per peer id below this: non-zero
    /// while that peer has left (the server sets it when the peer's connection ends and
    /// clears it when a peer joins with that id).
    pub const LEFT_WORDS: u32 = 1024;
    /// Start of the `virt` machine's low PCIe MMIO window (`highmem=off`): BARs go here.
    pub const PCI_MMIO_BASE: u64 = 0x1000_0000;
    /// RAM base of QEMU's `virt` machine: every VM's RAM (as much as `-m` gives) starts
    /// here.
    pub const RAM_BASE: u64 = 0x4000_0000;

    const _: () = {
        assert!(BAR0_BASE >= PCI_MMIO_BASE && BAR0_BASE + SMALL_BAR_MAX <= BAR1_BASE);
        assert!(BAR1_BASE + SMALL_BAR_MAX <= SHM_BASE);
        assert!(SHM_BASE % SHM_MAX == 0);
        assert!(LEFT_WORDS as u64 * 4 <= CONTROL_PAGE);
        assert!(SHM_BASE + SHM_MAX <= RAM_BASE);
    };
}

/// Page size Xen requires shared regions to be aligned to.
pub const PAGE_SIZE: u64 = 4096;

pub mod shared_info;

/// Xen errno values (returned negated by hypercalls).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such entry.
    pub const ENOENT: i32 = 2;
    /// No such domain.
    pub const ESRCH: i32 = 3;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Busy (port in use, shared_info already mapped).
    pub const EBUSY: i32 = 16;
    /// Exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space (port out of range).
    pub const ENOSPC: i32 = 28;
    /// Not implemented.
    pub const ENOSYS: i32 = 38;
}

/// `sched_op` commands and shutdown reasons.
pub mod sched {
    /// `SCHEDOP_yield`.
    pub const OP_YIELD: u32 = 0;
    /// `SCHEDOP_block`.
    pub const OP_BLOCK: u32 = 1;
    /// `SCHEDOP_shutdown`.
    pub const OP_SHUTDOWN: u32 = 2;
    /// `SCHEDOP_poll`.
    pub const OP_POLL: u32 = 3;
    /// Shutdown reason: power off.
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    /// Shutdown reason: reboot.
    pub const SHUTDOWN_REBOOT: u32 = 1;
    /// Shutdown reason: crash.
    pub const SHUTDOWN_CRASH: u32 = 3;
}

/// `console_io` commands.
pub mod console {
    /// `CONSOLEIO_write`.
    pub const WRITE: u32 = 0;
    /// `CONSOLEIO_read`.
    pub const READ: u32 = 1;
}

/// `memory_op` commands and map spaces.
pub mod memory {
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: u32 = 7;
    /// `XENMAPSPACE_shared_info`.
    pub const SPACE_SHARED_INFO: u32 = 0;
}

/// Argument structures of the hypercalls staticbus uses, with Xen's arm64 layout (checked
/// at compile time against the offsets in the spec, §5.3–5.5).
pub mod layout {
    use core::mem::{offset_of, size_of};
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// `struct evtchn_alloc_unbound`.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct EvtchnAllocUnbound {
        /// Domain to allocate in (`DOMID_SELF`).
        pub dom: u16,
        /// Domain allowed to bind.
        pub remote_dom: u16,
        /// Out: the new port.
        pub port: u32,
    }

    /// `struct evtchn_bind_interdomain`.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct EvtchnBindInterdomain {
        /// Remote domain.
        pub remote_dom: u16,
        /// Padding.
        pub _pad: u16,
        /// Remote port.
        pub remote_port: u32,
        /// Out: the local port.
        pub local_port: u32,
    }

    /// `struct evtchn_send`, `evtchn_close`, `evtchn_unmask`: one port.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct EvtchnPort {
        /// The port.
        pub port: u32,
    }

    /// `struct evtchn_status`.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct EvtchnStatus {
        /// Domain (`DOMID_SELF`).
        pub dom: u16,
        /// Padding.
        pub _pad: u16,
        /// Port.
        pub port: u32,
        /// Out: `EVTCHNSTAT_*`.
        pub status: u32,
        /// Out: notified vCPU.
        pub vcpu: u32,
        /// Out (interdomain/unbound): remote domain.
        pub remote_dom: u16,
        /// Padding.
        pub _pad2: u16,
        /// Out (interdomain): remote port.
        pub remote_port: u32,
    }

    /// `struct sched_poll` (arm64: the guest handle is 8 bytes).
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct SchedPoll {
        /// Guest address of an array of `u32` ports.
        pub ports: u64,
        /// Number of ports.
        pub nr_ports: u32,
        /// Padding.
        pub _pad: u32,
        /// Absolute timeout in ns of system time (0: none).
        pub timeout: u64,
    }

    /// `struct sched_shutdown`.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct SchedShutdown {
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }

    /// `struct xen_add_to_physmap`.
    #[repr(C)]
    #[derive(
        Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
    )]
    pub struct AddToPhysmap {
        /// `DOMID_SELF`.
        pub domid: u16,
        /// Ignored.
        pub size: u16,
        /// `XENMAPSPACE_*`.
        pub space: u32,
        /// Index in the space (0 for shared_info).
        pub idx: u64,
        /// Guest frame to map at.
        pub gpfn: u64,
    }

    /// Byte offsets in `struct shared_info` and its `vcpu_info[0]` (arm64).
    pub mod shared_info {
        /// `vcpu_info[0].evtchn_upcall_pending` (u8; set as bit 0 of the 8-byte word).
        pub const UPCALL_PENDING: usize = 0;
        /// `vcpu_info[0].evtchn_pending_sel` (u64).
        pub const PENDING_SEL: usize = 8;
        /// `vcpu_info` size.
        pub const VCPU_INFO_SIZE: usize = 48;
        /// `evtchn_pending[64]` (u64 words).
        pub const EVTCHN_PENDING: usize = 48;
        /// `evtchn_mask[64]` (u64 words).
        pub const EVTCHN_MASK: usize = 560;
        /// `wc_version`.
        pub const WC_VERSION: usize = 1072;
        /// Size of `struct shared_info`.
        pub const SIZE: usize = 1088;
        /// Words in each of the pending and mask bitmaps.
        pub const WORDS: usize = 64;
    }

    const _: () = {
        assert!(size_of::<EvtchnAllocUnbound>() == 8);
        assert!(offset_of!(EvtchnAllocUnbound, remote_dom) == 2);
        assert!(offset_of!(EvtchnAllocUnbound, port) == 4);
        assert!(size_of::<EvtchnBindInterdomain>() == 12);
        assert!(offset_of!(EvtchnBindInterdomain, remote_port) == 4);
        assert!(offset_of!(EvtchnBindInterdomain, local_port) == 8);
        assert!(size_of::<EvtchnPort>() == 4);
        assert!(size_of::<EvtchnStatus>() == 24);
        assert!(offset_of!(EvtchnStatus, status) == 8);
        assert!(offset_of!(EvtchnStatus, vcpu) == 12);
        assert!(offset_of!(EvtchnStatus, remote_dom) == 16);
        assert!(offset_of!(EvtchnStatus, remote_port) == 20);
        assert!(size_of::<SchedPoll>() == 24);
        assert!(offset_of!(SchedPoll, nr_ports) == 8);
        assert!(offset_of!(SchedPoll, timeout) == 16);
        assert!(size_of::<AddToPhysmap>() == 24);
        assert!(offset_of!(AddToPhysmap, idx) == 8);
        assert!(offset_of!(AddToPhysmap, gpfn) == 16);
        assert!(shared_info::EVTCHN_MASK == shared_info::EVTCHN_PENDING + 8 * shared_info::WORDS);
        assert!(shared_info::WC_VERSION == shared_info::EVTCHN_MASK + 8 * shared_info::WORDS);
    };
}
