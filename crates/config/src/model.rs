//! The system model: everything Xen learns from a dom0less host device tree, in one place,
//! with the source location of every fact.
//!
//! Three readers produce a [`System`]: the TOML system description ([`crate::desc`]), and
//! the DTS and DTB readers ([`crate::from_dt`]). The validator ([`crate::validate`]) checks a
//! `System` against Xen's rules for the target version; the generator ([`crate::gen`])
//! writes it back as a host device tree, and [`crate::manifest`] derives the per-domain
//! manifests.

use staticbus_diag::Location;
use std::fmt;

/// A Xen release the configuration targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenVersion {
    /// Xen 4.17.
    V4_17,
    /// Xen 4.18.
    V4_18,
    /// Xen 4.19.
    V4_19,
    /// Xen 4.20.
    V4_20,
}

impl XenVersion {
    /// All supported versions, oldest first.
    pub const ALL: [XenVersion; 4] = [
        XenVersion::V4_17,
        XenVersion::V4_18,
        XenVersion::V4_19,
        XenVersion::V4_20,
    ];

    /// Parses `"4.17"` … `"4.20"`.
    pub fn parse(s: &str) -> Option<XenVersion> {
        XenVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// `"4.17"` … `"4.20"`.
    pub fn as_str(self) -> &'static str {
        match self {
            XenVersion::V4_17 => "4.17",
            XenVersion::V4_18 => "4.18",
            XenVersion::V4_19 => "4.19",
            XenVersion::V4_20 => "4.20",
        }
    }

    /// `(major, minor)`: `(4, 17)` … `(4, 20)`.
    pub fn numbers(self) -> (u16, u16) {
        match self {
            XenVersion::V4_17 => (4, 17),
            XenVersion::V4_18 => (4, 18),
            XenVersion::V4_19 => (4, 19),
            XenVersion::V4_20 => (4, 20),
        }
    }

    /// What this release does where releases differ. Adding a release is one entry here,
    /// one line per capability.
    pub const fn capabilities(self) -> Capabilities {
        match self {
            XenVersion::V4_17 => Capabilities {
                heap_form_shm: false,
                separate_shm_banks: false,
                static_evtchn_kconfig: false,
                shm_overlaps_itself_after_reserved: false,
            },
            XenVersion::V4_18 => Capabilities {
                heap_form_shm: false,
                separate_shm_banks: false,
                static_evtchn_kconfig: false,
                shm_overlaps_itself_after_reserved: true,
            },
            XenVersion::V4_19 => Capabilities {
                heap_form_shm: true,
                separate_shm_banks: true,
                static_evtchn_kconfig: true,
                shm_overlaps_itself_after_reserved: false,
            },
            XenVersion::V4_20 => Capabilities {
                heap_form_shm: true,
                separate_shm_banks: true,
                static_evtchn_kconfig: true,
                shm_overlaps_itself_after_reserved: false,
            },
        }
    }
}

/// The facts that differ between Xen releases, by name (`shared/spec/xen-dom0less.md`).
/// Rules ask for a capability, never for a version number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// `xen,shared-mem` may leave out the host address (the two-field "heap form"): Xen
    /// allocates the region from its heap (4.19+, spec §2.1). Before, a region without a
    /// host address panics the early FDT parse.
    pub heap_form_shm: bool,
    /// Shared-memory banks have a table of their own (`bootinfo.shmem`, `NR_SHMEM_BANKS`
    /// regions in total and per domain; 4.19+, spec §2.3). Before, they share
    /// `bootinfo.reserved_mem` (`NR_MEM_BANKS`) with every reserved range.
    pub separate_shm_banks: bool,
    /// Static event channels are behind the `CONFIG_STATIC_EVTCHN` Kconfig option (4.19+,
    /// spec §1.2); a build without it silently ignores them. Before, they are always
    /// built in.
    pub static_evtchn_kconfig: bool,
    /// A reserved range parsed before a region shared by several domains makes the
    /// region's later nodes overlap its first one and Xen panics (4.18 only, spec §2.3).
    pub shm_overlaps_itself_after_reserved: bool,
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GIC version of the platform (decides the guest's GIC windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GicVersion {
    /// GICv2.
    V2,
    /// GICv3.
    V3,
}

/// What runs the domains (`[target] hypervisor`; docs/adr/0005-ivshmem-platform.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    /// Xen, dom0less (the default): static event channels and static shared memory from
    /// the host device tree.
    #[default]
    Xen,
    /// No hypervisor: one `qemu-system-aarch64` VM per domain, channels laid out in the
    /// shared object of QEMU's `ivshmem-doorbell` device (BAR2 at
    /// `staticbus_abi::ivshmem::SHM_BASE`), event-channel ports as doorbell vectors and
    /// domids as ivshmem peer ids.
    QemuIvshmem,
}

impl Hypervisor {
    /// Every value.
    pub const ALL: [Hypervisor; 2] = [Hypervisor::Xen, Hypervisor::QemuIvshmem];

    /// The description's name (`"xen"`, `"qemu-ivshmem"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Xen => "xen",
            Hypervisor::QemuIvshmem => "qemu-ivshmem",
        }
    }

    /// Parses a description name.
    pub fn parse(s: &str) -> Option<Hypervisor> {
        Hypervisor::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

impl std::fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Xen build the configuration is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What runs the domains ([`Hypervisor::Xen`] unless the description says otherwise).
    pub hypervisor: Hypervisor,
    /// Xen release.
    pub xen: XenVersion,
    /// Built with `CONFIG_STATIC_SHM` (which needs `CONFIG_UNSUPPORTED` and
    /// `CONFIG_STATIC_MEMORY`). Debian's binaries are not.
    pub static_shm: bool,
    /// Built with `CONFIG_STATIC_MEMORY` (implied by `static_shm`).
    pub static_memory: bool,
    /// `CONFIG_STATIC_EVTCHN` (default on). Only releases with
    /// [`Capabilities::static_evtchn_kconfig`] have the option; see
    /// [`Target::binds_static_evtchns`].
    pub static_evtchn: bool,
    /// Where the target was declared.
    pub loc: Location,
}

impl Target {
    /// The capabilities of the target's Xen release.
    pub const fn caps(&self) -> Capabilities {
        self.xen.capabilities()
    }

    /// True if Xen binds the static event channels of the host tree at boot: always where
    /// `CONFIG_STATIC_EVTCHN` does not exist, otherwise when the build has it on.
    pub const fn binds_static_evtchns(&self) -> bool {
        !self.caps().static_evtchn_kconfig || self.static_evtchn
    }
}

impl Default for Target {
    fn default() -> Self {
        Target {
            hypervisor: Hypervisor::Xen,
            xen: XenVersion::V4_20,
            static_shm: false,
            static_memory: false,
            static_evtchn: true,
            loc: Location::None,
        }
    }
}

/// A host-physical range with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where it was declared.
    pub loc: Location,
}

impl Range {
    /// A range with no location.
    pub fn new(base: u64, size: u64) -> Range {
        Range {
            base,
            size,
            loc: Location::None,
        }
    }

    /// One past the last byte, saturating.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// True if `base + size` overflows 64 bits.
    pub fn overflows(&self) -> bool {
        self.base.checked_add(self.size).is_none()
    }

    /// True if the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        overlaps(self.base, self.size, other.base, other.size)
    }

    /// True if `other` lies entirely inside `self`.
    pub fn contains(&self, base: u64, size: u64) -> bool {
        base >= self.base && base.saturating_add(size) <= self.end()
    }
}

/// True if `[a, a+asz)` and `[b, b+bsz)` share a byte (empty ranges overlap nothing).
pub fn overlaps(a: u64, asz: u64, b: u64, bsz: u64) -> bool {
    asz != 0 && bsz != 0 && a < b.saturating_add(bsz) && b < a.saturating_add(asz)
}

/// What the reserved range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedKind {
    /// A `/memreserve/` entry.
    MemReserve,
    /// A `/reserved-memory` child.
    ReservedMemory,
    /// `/chosen/xen,static-heap`.
    StaticHeap,
    /// Declared in the system description.
    Declared,
}

/// A reserved host range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The range.
    pub range: Range,
    /// What kind of reservation.
    pub kind: ReservedKind,
    /// Name (node name or description label).
    pub name: String,
}

/// The platform: host RAM and what is already taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// RAM banks (`/memory` nodes).
    pub ram: Vec<Range>,
    /// Reserved ranges.
    pub reserved: Vec<Reserved>,
    /// Host range the compiler allocates shared regions from.
    pub shm_pool: Option<Range>,
    /// Where the host DTB itself is placed at boot, if known.
    pub dtb: Option<Range>,
    /// Where the Xen image is placed at boot, if known.
    pub xen_image: Option<Range>,
    /// GIC version of the host (decides the guests' GIC windows).
    pub gic: Option<GicVersion>,
    /// Guest-physical window the compiler allocates guest addresses of shared regions from.
    pub guest_shm_window: Option<Range>,
}

/// The value of a domain's `xen,enhanced` property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enhanced {
    /// Property absent: no Xen features in the guest DT.
    Absent,
    /// Empty or `"enabled"`: `/hypervisor` node and xenstore.
    Enabled,
    /// `"no-xenstore"`: `/hypervisor` node only.
    NoXenstore,
    /// `"disabled"` (documented in booting.txt): no Xen features, as if absent.
    Disabled,
    /// Any other string (Xen ignores it silently: no features).
    Unknown(String),
}

impl Enhanced {
    /// True if Xen sets up xenstore for the domain.
    pub fn xenstore(&self) -> bool {
        matches!(self, Enhanced::Enabled)
    }

    /// True if Xen gives the guest its PV interfaces (a `/hypervisor` node, grant table,
    /// event channels): `"enabled"` and `"no-xenstore"`.
    pub fn features(&self) -> bool {
        matches!(self, Enhanced::Enabled | Enhanced::NoXenstore)
    }

    /// The DT property value, if any (`None` for absent).
    pub fn as_dt(&self) -> Option<&str> {
        match self {
            Enhanced::Absent => None,
            Enhanced::Enabled => Some("enabled"),
            Enhanced::NoXenstore => Some("no-xenstore"),
            Enhanced::Disabled => Some("disabled"),
            Enhanced::Unknown(s) => Some(s),
        }
    }
}

/// Kind of a boot module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// `multiboot,kernel`.
    Kernel,
    /// `multiboot,ramdisk`.
    Ramdisk,
    /// `multiboot,device-tree` (passthrough DT).
    DeviceTree,
}

impl ModuleKind {
    /// The DT compatible string of this kind.
    pub fn compatible(self) -> &'static str {
        match self {
            ModuleKind::Kernel => staticbus_abi::dt::KERNEL_COMPAT,
            ModuleKind::Ramdisk => staticbus_abi::dt::RAMDISK_COMPAT,
            ModuleKind::DeviceTree => staticbus_abi::dt::DTB_COMPAT,
        }
    }

    /// `"kernel"`, `"ramdisk"`, `"dtb"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleKind::Kernel => "kernel",
            ModuleKind::Ramdisk => "ramdisk",
            ModuleKind::DeviceTree => "dtb",
        }
    }
}

/// A boot module (kernel, ramdisk, passthrough DT) placed in host memory by the boot loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Kind.
    pub kind: ModuleKind,
    /// Load address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Image file, if known (relative paths are relative to the description's directory).
    pub path: Option<String>,
    /// The image is built from this Cargo binary (by `staticbus boot`).
    pub cargo: Option<CargoImage>,
    /// Command line (`bootargs` of the module node).
    pub bootargs: Option<String>,
    /// Where `bootargs` was declared.
    pub bootargs_loc: Location,
    /// Where the module was declared.
    pub loc: Location,
}

/// A module image built from a Cargo binary target for `aarch64-unknown-none`, with the
/// domain manifests compiled in (`STATICBUS_MANIFEST_DIR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoImage {
    /// Package, if named.
    pub package: Option<String>,
    /// Binary target.
    pub bin: String,
}

/// How the emulator runs a domain (used by `staticbus run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emulate {
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// What the domain's processes may take from the machine (`limits = { … }`).
    pub limits: Limits,
}

/// What one emulator domain may take from the machine (`emulate = { limits = { … } }`),
/// so that it cannot stop the others or the runner. `staticbus run` sets each as a
/// resource limit of the domain's processes before `execve` and, where it may write a
/// cgroup v2 subtree, as a limit of the domain's cgroup (docs/emulator.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of private memory per process (`RLIMIT_DATA`: heap, anonymous mappings,
    /// thread stacks) and, with cgroups, of the whole domain (`memory.max`).
    pub memory: u64,
    /// Processes and threads of the domain, its namespace's init included
    /// (`RLIMIT_NPROC`, counted per domain in its own user namespace; `pids.max`).
    pub processes: u64,
    /// Open descriptors per process (`RLIMIT_NOFILE`).
    pub files: u64,
    /// Bytes one file may grow to (`RLIMIT_FSIZE`; a write past it gets `SIGXFSZ`).
    pub file_size: u64,
    /// CPU time per 100 ms period in microseconds, i.e. CPUs × 100 000 (`cpu.max`, with
    /// cgroups only); `None`: no bound.
    pub cpu_quota_us: Option<u64>,
}

impl Limits {
    /// The limits of a domain whose description sets none.
    pub const DEFAULT: Limits = Limits {
        memory: 1 << 30,
        processes: 256,
        files: 1024,
        file_size: 1 << 30,
        cpu_quota_us: None,
    };
    /// The smallest `memory` accepted: a program with glibc and Rust's `std` needs a few
    /// MiB of private memory to start at all.
    pub const MIN_MEMORY: u64 = 16 << 20;
    /// The fewest `processes` accepted: the sandbox's namespace init and the program.
    pub const MIN_PROCESSES: u64 = 2;
    /// The most `processes` accepted (the kernel's `pid_max` limit).
    pub const MAX_PROCESSES: u64 = 4 << 20;
    /// The fewest `files` accepted: stdin, stdout, stderr, the domain's memory and
    /// regions, and what libc opens while starting.
    pub const MIN_FILES: u64 = 16;
    /// The most `files` accepted (the kernel's default `fs.nr_open`).
    pub const MAX_FILES: u64 = 1 << 20;
    /// The period of `cpu.max`, in microseconds.
    pub const CPU_PERIOD_US: u64 = 100_000;
    /// The smallest `cpu` accepted, in microseconds per period (0.01 CPU; the kernel
    /// refuses quotas under 1 ms).
    pub const MIN_CPU_QUOTA_US: u64 = 1_000;
    /// The largest `cpu` accepted, in microseconds per period (1024 CPUs).
    pub const MAX_CPU_QUOTA_US: u64 = 1024 * Self::CPU_PERIOD_US;
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The kernel of a Linux domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxKernel {
    /// Debian's arm64 kernel from the cache of `scripts/linux/fetch-kernel.sh`.
    Debian,
    /// An arm64 Image file (relative paths are relative to the description's directory).
    File(String),
}

/// A Linux domU (`linux = { … }` of a `[[domain]]`): `staticbus boot` finds its kernel,
/// builds its programs for `aarch64-unknown-linux-musl` and makes its initramfs (the
/// domain's ramdisk module) with the domain's manifest inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxDomain {
    /// The kernel.
    pub kernel: LinuxKernel,
    /// The programs put in the initramfs's `/bin`.
    pub programs: Vec<CargoImage>,
    /// Where `linux` was declared.
    pub loc: Location,
}

/// A domain: dom0 (domid 0) or a dom0less domU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Name (the DT node name of a domU; `dom0` for dom0).
    pub name: String,
    /// Where the domain was declared (its name).
    pub loc: Location,
    /// Domain id Xen gives it: 0 for dom0, 1, 2, … for domUs in DT order.
    pub domid: u16,
    /// True for the hardware domain.
    pub dom0: bool,
    /// `memory` in KiB (`None`: missing or unreadable).
    pub memory_kib: Option<u64>,
    /// Where `memory` was declared.
    pub memory_loc: Location,
    /// `cpus` (`None`: missing).
    pub vcpus: Option<u32>,
    /// Where `cpus` was declared.
    pub vcpus_loc: Location,
    /// Boot modules.
    pub modules: Vec<Module>,
    /// `vpl011` present.
    pub vpl011: bool,
    /// `xen,enhanced`.
    pub enhanced: Enhanced,
    /// Where `xen,enhanced` was declared.
    pub enhanced_loc: Location,
    /// `xen,static-mem` banks.
    pub static_mem: Vec<Range>,
    /// Where `xen,static-mem` was declared.
    pub static_mem_loc: Location,
    /// `direct-map` present.
    pub direct_map: bool,
    /// Where `direct-map` was declared.
    pub direct_map_loc: Location,
    /// How the emulator runs it.
    pub emulate: Option<Emulate>,
    /// A Linux domU whose kernel and initramfs `staticbus boot` provides.
    pub linux: Option<LinuxDomain>,
}

impl Domain {
    /// A domain with defaults (no memory, no cpus, no modules).
    pub fn new(name: impl Into<String>, domid: u16, loc: Location) -> Domain {
        Domain {
            name: name.into(),
            loc,
            domid,
            dom0: false,
            memory_kib: None,
            memory_loc: Location::None,
            vcpus: None,
            vcpus_loc: Location::None,
            modules: Vec::new(),
            vpl011: false,
            enhanced: Enhanced::Absent,
            enhanced_loc: Location::None,
            static_mem: Vec::new(),
            static_mem_loc: Location::None,
            direct_map: false,
            direct_map_loc: Location::None,
            emulate: None,
            linux: None,
        }
    }

    /// The highest event-channel port the domain can own.
    pub fn max_port(&self) -> u32 {
        if self.dom0 {
            staticbus_abi::evtchn::DOM0_MAX_PORT
        } else {
            staticbus_abi::evtchn::DOMU_MAX_PORT
        }
    }

    /// The domain's guest RAM banks (guest-physical), as Xen lays them out.
    pub fn guest_ram(&self) -> Vec<(u64, u64)> {
        use staticbus_abi::guest::*;
        if self.direct_map || self.dom0 {
            return self.static_mem.iter().map(|r| (r.base, r.size)).collect();
        }
        let bytes = self
            .memory_kib
            .unwrap_or(0)
            .saturating_mul(1024)
            .max(self.static_mem.iter().map(|r| r.size).sum());
        let first = bytes.min(RAM0_SIZE);
        let mut banks = vec![(RAM0_BASE, first)];
        if bytes > first {
            banks.push((RAM1_BASE, (bytes - first).min(RAM1_SIZE)));
        }
        banks
    }
}

/// Index of a domain in [`System::domains`].
pub type DomIdx = usize;

/// One end of a static event channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvtchnEnd {
    /// The domain that owns the port.
    pub domain: DomIdx,
    /// The local port.
    pub port: u32,
    /// Where the endpoint was declared.
    pub loc: Location,
    /// Where the port number was written.
    pub port_loc: Location,
}

/// A static event channel: two endpoints bound at boot. `first` is the end Xen processes
/// first (`evtchn_alloc_unbound`); `second` is bound to it (`evtchn_bind_interdomain`) and
/// starts with its port **pending**.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvtchnPair {
    /// Processed first.
    pub first: EvtchnEnd,
    /// Processed second; starts pending.
    pub second: EvtchnEnd,
    /// The high-level channel this pair belongs to, if any.
    pub channel: Option<usize>,
}

/// Role of a domain in a static shared-memory region (`role` property).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShmRole {
    /// `role = "owner"`: the region is assigned to this domain.
    Owner,
    /// `role = "borrower"`.
    Borrower,
}

impl ShmRole {
    /// The DT string.
    pub fn as_str(self) -> &'static str {
        match self {
            ShmRole::Owner => "owner",
            ShmRole::Borrower => "borrower",
        }
    }
}

/// One static shared-memory node: a region as one domain sees it. A region shared by `n`
/// domains is `n` nodes with the same `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmNode {
    /// The domain whose node this is.
    pub domain: DomIdx,
    /// `xen,shm-id`.
    pub id: String,
    /// Where the id was written.
    pub id_loc: Location,
    /// Host-physical base (`None`: heap form, 4.19+).
    pub host: Option<u64>,
    /// Guest-physical base in this domain.
    pub guest: u64,
    /// Size in bytes.
    pub size: u64,
    /// `role` (`None`: roleless, owner is DOMID_IO).
    pub role: Option<ShmRole>,
    /// Where the node was declared.
    pub loc: Location,
    /// Where `xen,shared-mem` (or the address) was written.
    pub mem_loc: Location,
    /// Where `role` was written.
    pub role_loc: Location,
    /// The high-level channel this node belongs to, if any.
    pub channel: Option<usize>,
}

/// A channel protocol (see docs/protocols.md): the guests' own type, so the compiler and
/// the manifests it writes cannot disagree on names, roles or arity.
pub use staticbus_manifest::Protocol;

/// A high-level channel: a protocol on one shared region, with one event-channel pair per
/// (writer, reader) couple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Name (unique in the system).
    pub name: String,
    /// Where the channel was declared.
    pub loc: Location,
    /// Protocol.
    pub protocol: Protocol,
    /// Writing domains.
    pub writers: Vec<DomIdx>,
    /// Reading domains.
    pub readers: Vec<DomIdx>,
    /// Region size in bytes.
    pub size: u64,
    /// A log's slot size in bytes (`None` for the other protocols).
    pub slot_size: Option<u32>,
    /// A latest channel's value size in bytes (`None` for the other protocols).
    pub value_size: Option<u32>,
    /// The region's shm id.
    pub shm_id: String,
    /// The region's nodes (one per member domain), indices into [`System::shm`].
    pub shm: Vec<usize>,
    /// Event-channel pairs, indices into [`System::evtchns`].
    pub evtchns: Vec<usize>,
}

impl Channel {
    /// Every member domain: writers then readers, without duplicates.
    pub fn members(&self) -> Vec<DomIdx> {
        let mut v = self.writers.clone();
        for r in &self.readers {
            if !v.contains(r) {
                v.push(*r);
            }
        }
        v
    }
}

/// What the system was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A TOML system description.
    Description,
    /// A device-tree source.
    Dts,
    /// A device-tree blob.
    Dtb,
}

/// A whole dom0less system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// Name (from the description, or the file stem).
    pub name: String,
    /// What it was read from.
    pub source: SourceKind,
    /// The Xen build.
    pub target: Target,
    /// Host memory.
    pub platform: Platform,
    /// Xen's command line (`/chosen/xen,xen-bootargs`).
    pub xen_bootargs: Option<String>,
    /// Domains: dom0 first if present, then domUs in DT order.
    pub domains: Vec<Domain>,
    /// Static event channels, in the order Xen binds them.
    pub evtchns: Vec<EvtchnPair>,
    /// Static shared-memory nodes, in DT order.
    pub shm: Vec<ShmNode>,
    /// High-level channels.
    pub channels: Vec<Channel>,
    /// How the U-Boot script loads the files.
    pub uboot: UbootSettings,
    /// Virtio devices.
    pub virtio: Vec<VirtioDevice>,
}

/// `[uboot]` of a description: how the script of `staticbus build --uboot` loads files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UbootSettings {
    /// The load command (`tftpb`, `load mmc 0:1`, …); `None`: `tftpb`.
    pub load: Option<String>,
    /// The Xen image's file name; `None`: `xen`.
    pub xen_file: Option<String>,
}

/// How a virtio device's backend serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtioServe {
    /// staticbus's built-in `no_std` device.
    Builtin,
    /// A vhost-user backend program and its arguments, driven by the bridge.
    VhostUser {
        /// Program.
        program: String,
        /// Arguments.
        args: Vec<String>,
    },
}

/// A virtio device between two domains (`[[virtio]]`), over its own region and one
/// event-channel pair (docs/virtio.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioDevice {
    /// Name (unique among channels and devices).
    pub name: String,
    /// Where it was declared.
    pub loc: Location,
    /// Device type name (`blk`, …).
    pub device: String,
    /// Virtio device id.
    pub device_id: u32,
    /// The driving domain.
    pub frontend: DomIdx,
    /// The serving domain.
    pub backend: DomIdx,
    /// Virtqueues.
    pub queues: u16,
    /// Entries per queue.
    pub queue_size: u32,
    /// Region size.
    pub size: u64,
    /// How the backend serves it.
    pub serve: VirtioServe,
    /// The region's shm id.
    pub shm_id: String,
    /// The region's nodes (frontend's, backend's), indices into [`System::shm`].
    pub shm: Vec<usize>,
    /// The event-channel pair (frontend first), an index into [`System::evtchns`].
    pub evtchn: usize,
}

impl System {
    /// An empty system.
    pub fn new(name: impl Into<String>, source: SourceKind) -> System {
        System {
            name: name.into(),
            source,
            target: Target::default(),
            platform: Platform::default(),
            xen_bootargs: None,
            domains: Vec::new(),
            evtchns: Vec::new(),
            shm: Vec::new(),
            channels: Vec::new(),
            uboot: UbootSettings::default(),
            virtio: Vec::new(),
        }
    }

    /// The hardware domain, if any.
    pub fn dom0(&self) -> Option<&Domain> {
        self.domains.iter().find(|d| d.dom0)
    }

    /// Index of the domain with this name.
    pub fn domain_index(&self, name: &str) -> Option<DomIdx> {
        self.domains.iter().position(|d| d.name == name)
    }

    /// What the system holds, in words: `2 domains, 1 channel, 1 event channel, 1
    /// shared-memory region (2 nodes)`. Channels are counted only for a description (a
    /// device tree has none of its own).
    pub fn summary(&self) -> String {
        fn n(k: usize, one: &str, many: &str) -> String {
            format!("{k} {}", if k == 1 { one } else { many })
        }
        let mut parts = vec![n(self.domains.len(), "domain", "domains")];
        if self.source == SourceKind::Description {
            parts.push(n(self.channels.len(), "channel", "channels"));
        }
        parts.push(n(self.evtchns.len(), "event channel", "event channels"));
        let mut ids: Vec<&str> = self.shm.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut shm = n(ids.len(), "shared-memory region", "shared-memory regions");
        if !self.shm.is_empty() {
            shm.push_str(&format!(" ({})", n(self.shm.len(), "node", "nodes")));
        }
        parts.push(shm);
        parts.join(", ")
    }

    /// Every module of every domain, with its domain index.
    pub fn modules(&self) -> impl Iterator<Item = (DomIdx, &Module)> {
        self.domains
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.modules.iter().map(move |m| (i, m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capability table, release by release, as shared/spec/xen-dom0less.md states it.
    #[test]
    fn capabilities_per_release() {
        let row = |v: XenVersion| {
            let c = v.capabilities();
            (
                c.heap_form_shm,
                c.separate_shm_banks,
                c.static_evtchn_kconfig,
                c.shm_overlaps_itself_after_reserved,
            )
        };
        assert_eq!(row(XenVersion::V4_17), (false, false, false, false));
        assert_eq!(row(XenVersion::V4_18), (false, false, false, true));
        assert_eq!(row(XenVersion::V4_19), (true, true, true, false));
        assert_eq!(row(XenVersion::V4_20), (true, true, true, false));
    }

    #[test]
    fn summary_counts_in_words() {
        let mut s = System::new("t", SourceKind::Dts);
        assert_eq!(
            s.summary(),
            "0 domains, 0 event channels, 0 shared-memory regions"
        );
        s.domains.push(Domain::new("a", 1, Location::None));
        s.domains.push(Domain::new("b", 2, Location::None));
        let end = |domain| EvtchnEnd {
            domain,
            port: 1,
            loc: Location::None,
            port_loc: Location::None,
        };
        s.evtchns.push(EvtchnPair {
            first: end(0),
            second: end(1),
            channel: None,
        });
        for domain in [0, 1] {
            s.shm.push(ShmNode {
                domain,
                id: "r".into(),
                id_loc: Location::None,
                host: None,
                guest: 0,
                size: 4096,
                role: None,
                loc: Location::None,
                mem_loc: Location::None,
                role_loc: Location::None,
                channel: None,
            });
        }
        // A device tree has no channels of its own: none are counted.
        assert_eq!(
            s.summary(),
            "2 domains, 1 event channel, 1 shared-memory region (2 nodes)"
        );
        s.source = SourceKind::Description;
        assert_eq!(
            s.summary(),
            "2 domains, 0 channels, 1 event channel, 1 shared-memory region (2 nodes)"
        );
    }

    #[test]
    fn static_evtchns_are_bound_unless_the_kconfig_option_is_off() {
        for v in XenVersion::ALL {
            for on in [false, true] {
                let t = Target {
                    xen: v,
                    static_evtchn: on,
                    ..Target::default()
                };
                let expected = on || !v.capabilities().static_evtchn_kconfig;
                assert_eq!(t.binds_static_evtchns(), expected, "{v} static-evtchn={on}");
            }
        }
        assert!(!Target {
            xen: XenVersion::V4_20,
            static_evtchn: false,
            ..Target::default()
        }
        .binds_static_evtchns());
        assert!(Target {
            xen: XenVersion::V4_17,
            static_evtchn: false,
            ..Target::default()
        }
        .binds_static_evtchns());
    }
}
