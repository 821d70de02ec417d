//! What Xen takes from the host device tree at boot, and nothing more: the emulator's input.
//!
//! [`BootSpec`] is the part of a dom0less host tree that decides how Xen sets up event
//! channels and shared memory: the domains in creation order, the static event-channel
//! pairs in the order Xen's walk meets them (`alloc_static_evtchn`, spec §1.3: the first
//! end is allocated unbound, the second is bound and starts pending), the shared-memory
//! nodes in the order Xen processes them, and the three build options that matter here.
//!
//! The emulator does not read device trees or system descriptions itself. Whoever boots it
//! (the runner, `staticbus-emu-runner`) reads the host DTB through the compiler's device-tree
//! reader, which walks the tree the way Xen does, and fills this in. Keeping the input this
//! small keeps the hypervisor independent of the compiler (see `docs/adr/0003`).

use crate::DomId;

/// The Xen release being emulated, as `XENVER_version` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XenRelease {
    /// Major version (4).
    pub major: u16,
    /// Minor version (17 … 20).
    pub minor: u16,
}

impl XenRelease {
    /// Xen 4.20, the default.
    pub const V4_20: XenRelease = XenRelease {
        major: 4,
        minor: 20,
    };

    /// `XENVER_version`: `major << 16 | minor`.
    pub fn xenver(self) -> i64 {
        (i64::from(self.major) << 16) | i64::from(self.minor)
    }
}

impl Default for XenRelease {
    fn default() -> Self {
        XenRelease::V4_20
    }
}

/// A shared-memory node's `role` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShmRole {
    /// `role = "owner"`.
    Owner,
    /// `role = "borrower"`.
    Borrower,
}

/// One domain as Xen creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootDomain {
    /// Domain id (dom0 is 0; domUs 1, 2, … in `/chosen` order).
    pub domid: DomId,
    /// Name (the domain node's name; `dom0` for the hardware domain).
    pub name: String,
    /// The hardware domain.
    pub dom0: bool,
    /// `xen,enhanced = "enabled"` on a domU: Xen allocates a xenstore port at creation.
    pub xenstore: bool,
    /// Highest valid port (`max_evtchn_port`, or the default: 1023 for a domU, 4095 for dom0).
    pub max_port: u32,
}

/// One end of a static event-channel pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootEnd {
    /// The domain whose node holds this end.
    pub domid: DomId,
    /// The port written in its `xen,evtchn` property.
    pub port: u32,
}

/// A static event-channel pair, in Xen's binding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootPair {
    /// The end Xen meets first: allocated unbound (`evtchn_alloc_unbound`).
    pub first: BootEnd,
    /// The other end: bound to the first (`evtchn_bind_interdomain`), starts pending.
    pub second: BootEnd,
}

/// One `xen,domain-shared-memory-v1` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootShm {
    /// The domain whose node it is.
    pub domid: DomId,
    /// `xen,shm-id`.
    pub id: String,
    /// Host-physical address (`xen,shared-mem`), or `None` in the 4.19+ heap form.
    pub host: Option<u64>,
    /// Guest-physical address.
    pub guest: u64,
    /// Size in bytes.
    pub size: u64,
    /// `role`, if present.
    pub role: Option<ShmRole>,
}

/// Everything the emulator boots from. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootSpec {
    /// The release `XENVER_version` reports.
    pub xen: XenRelease,
    /// Static pairs are bound at boot: always before 4.19, `CONFIG_STATIC_EVTCHN` from
    /// 4.19 on (when off, Xen ignores the pairs).
    pub static_evtchn: bool,
    /// Built with `CONFIG_STATIC_SHM` (else a tree with shm nodes does not boot).
    pub static_shm: bool,
    /// Domains in creation order.
    pub domains: Vec<BootDomain>,
    /// Static pairs in binding order.
    pub evtchns: Vec<BootPair>,
    /// Shared-memory nodes in the order Xen processes them.
    pub shm: Vec<BootShm>,
}

impl BootSpec {
    /// The domain with id `domid`.
    pub fn domain(&self, domid: DomId) -> Option<&BootDomain> {
        self.domains.iter().find(|d| d.domid == domid)
    }
}
