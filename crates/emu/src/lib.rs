//! The emulated Xen hypervisor of staticbus: static event channels and static shared
//! memory with Xen's semantics (4.17–4.20, Arm, 2-level event channels), for a dom0less
//! system whose domains run as Linux processes.
//!
//! This crate is the hypervisor side only: a [`Hypervisor`] holds every domain's port
//! table and its `shared_info` page ([`PageMem`], 4 KiB of atomic words shared with the
//! domain process), and answers marshalled hypercalls ([`Hypervisor::hypercall`]). The
//! process runner and the IPC transport live elsewhere; they call in here, pass shared
//! memory to the processes ([`Hypervisor::shm_grants`]) and get woken through [`Notify`].
//!
//! The reference is `shared/spec/xen-dom0less.md`; section numbers below refer to it.
//! Every rule was checked against Xen's source (`xen/common/event_channel.c`,
//! `event_2l.c`, `xsm/silo.c`, `xsm/dummy.h`, `common/memory.c`, `arch/arm/mm.c`,
//! `common/sched/core.c`, `drivers/char/console.c` at `RELEASE-4.20.0`, same logic in
//! 4.17).
//!
//! # Event channels
//!
//! * **Port tables** (§1.4): one per domain, ports `0..=1023` for a domU and `0..=4095`
//!   for dom0. Port 0 is reserved. A port is Free, Reserved, Unbound (waiting for one
//!   remote domain) or Interdomain (bound to a remote domain and port). As in Xen, a port
//!   is *valid* only below `valid_evtchns`, which starts at one bucket of 64 ports and
//!   grows a bucket at a time up to the highest port ever allocated: `EVTCHNOP_status`
//!   of a free port inside the valid range answers "closed", beyond it `-EINVAL`.
//! * **Boot** (§1.3, [`Hypervisor::boot`]): every static pair is bound exactly as
//!   `alloc_static_evtchn` does: `evtchn_alloc_unbound(first → second, port1)`, then
//!   `evtchn_bind_interdomain(second, port2 → first:port1)`, which **marks the second
//!   end's port pending** (`evtchn_pending`, `pending_sel`, `upcall_pending = 1`); the
//!   first end is not. Errors are Xen's (`-EBUSY` port taken, `-ENOSPC` out of range,
//!   `-EINVAL` port 1 = 0, …) in [`BootError::Evtchn`]; Xen panics there. Static binding
//!   runs as Xen itself (privileged), so no XSM policy applies. A domain with
//!   `xen,enhanced = "enabled"` first gets its xenstore port (the lowest free one,
//!   normally 1, UNBOUND for dom0). With `CONFIG_STATIC_EVTCHN` off (4.19+), static
//!   pairs are ignored as Xen ignores them.
//! * **Operations** (§5.3, [`Hypervisor::evtchn_send`] and friends), with Xen's codes:
//!   send on an Interdomain port sets the peer's pending bit (2-level rules of
//!   [`staticbus_abi::shared_info::SharedInfo`]: upcall only on the 0→1 transition of
//!   `upcall_pending`, nothing while masked); send on an Unbound port returns 0 and drops
//!   the event; send on a free, reserved or invalid port is `-EINVAL`. Close frees the
//!   port (clearing its pending bit) and turns the peer's port into Unbound-for-the-closer;
//!   static ports are not protected. Unmask clears the mask bit and, if it was set and the
//!   port is pending, re-raises the event; on a valid but free port it returns 0 and does
//!   nothing. Status reports closed / unbound (remote dom) / interdomain (remote dom and
//!   port). Alloc-unbound and bind-interdomain allocate the lowest free port.
//! * **XSM** (§11, [`Policy`]): with the dummy policy a domain may act on its own table
//!   only (alloc-unbound and status of another domain: `-EPERM`, unless the caller is
//!   dom0); runtime bind-interdomain to any port that is Unbound for the caller works.
//!   Debian's **SILO** additionally refuses alloc-unbound and bind-interdomain between two
//!   domUs with `-EPERM` (allowed when either side, or the caller, is dom0, or both sides
//!   are the same domain), after Xen's other checks (`-ESRCH`, port allocation, `-EINVAL`
//!   for a remote port that is not Unbound-for-me come first).
//! * **Destroy** (§1.5, [`Hypervisor::destroy`]): every port of the domain is closed; each
//!   peer's port falls back to Unbound with the destroyed domain as remote. Nothing is
//!   re-established. The other domains keep working; a send to the dead domain is dropped.
//!
//! # Static shared memory
//!
//! See [`shm`]: owner / borrower / `DOMID_IO` ownership and reference counting (§2.4–2.6),
//! one sealed memfd per region, each domain reaching only the regions its own nodes list.
//!
//! # Other hypercalls
//!
//! * `console_io` `CONSOLEIO_write`: Xen's `guest_console_write` (returns **0**, not the
//!   count): dom0's bytes go straight to the [`Console`]; a domU's are filtered to
//!   printable characters and tabs and line-buffered (200 bytes) per domain, each complete
//!   line passed with its `\n` and without Xen's `(d<id>) ` prefix. `CONSOLEIO_read`
//!   returns 0 (no serial input is emulated).
//! * `sched_op`: `SCHEDOP_shutdown` records the reason (as Xen, truncated to 8 bits; the
//!   first code recorded, also by `SCHEDOP_shutdown_code`, wins) and the domain becomes
//!   [`DomainState::Shutdown`]; its ports stay as they are (a shut-down domain still exists
//!   for its peers until it is destroyed). `SCHEDOP_remote_shutdown` is dom0's only.
//!   `SCHEDOP_yield`, `SCHEDOP_block` and `SCHEDOP_poll` return 0 after Xen's argument
//!   checks (`-EFAULT`, more than 128 ports `-EINVAL`; if the transport appends the guest's
//!   `u32` port array to the `sched_poll` struct, an invalid or unbound port is `-EINVAL`
//!   as in `do_poll`). Blocking is the transport's job, on the futex it bumps in
//!   [`Notify::wake`]; a return without an event is legal.
//! * `memory_op` `XENMEM_add_to_physmap`: `XENMAPSPACE_shared_info` with `idx` 0 maps it
//!   (0), a second time `-EBUSY`, `idx != 0` `-EINVAL`; the permission and argument checks
//!   of Arm Xen in order (`-EDOM`, `-EFAULT`, `-ENOSYS` for gmfn_foreign, `-ESRCH`,
//!   `-EACCES` for dev_mmio, `-EPERM` for another domain, `-EINVAL` for `INVALID_GFN`);
//!   other spaces `-ENOSYS` as on Arm.
//! * `xen_version` `XENVER_version`: the target's `major << 16 | minor`.
//! * Anything else: `-ENOSYS`.
//!
//! A domain that is shut down, crashed or destroyed, or a domain id that names nothing,
//! gets `-ESRCH` for every hypercall. `hypercall` never panics and never blocks (beyond a
//! short internal lock); [`Notify`] and [`Console`] are called after the lock is released.
//!
//! # Waking
//!
//! [`Notify::wake`] is called for a domain whenever one of its pending bits goes 0→1
//! (masked or not: `SCHEDOP_poll` wakes on masked ports) and when an unmask re-raises an
//! upcall. Nothing is called when the bit was already set. A transport that blocks a guest
//! must therefore read its wake counter *before* checking the pending bits, then wait only
//! if the counter has not moved.
//!
//! # Beyond Xen
//!
//! * [`Hypervisor::restart`] re-creates a destroyed (or shut-down, or crashed) domain: a
//!   clean `shared_info`, its xenstore port if it has one, its static channels re-bound
//!   and its regions re-mapped. Each static pair whose peer's port is Unbound-for-it is
//!   bound with the restarted end second (its port starts pending, as at boot) **and the
//!   peer's port is marked pending too**, so the peer learns of the restart. If the peer's
//!   port is not Unbound-for-it (the peer is destroyed too, or closed its port), the
//!   restarted end is left Unbound for the peer, so a later restart of the peer binds it.
//!   Regions: same memory, contents kept, if still alive; fresh zeroed memory if it had
//!   been freed. Xen cannot restart dom0less domains (`docs/features/dom0less.pandoc`).
//! * [`Hypervisor::crash`] marks a domain [`DomainState::Crashed`] (the runner calls it
//!   when a domain process dies without `SCHEDOP_shutdown`); like Xen's `domain_crash` it
//!   leaves the ports as they are until [`Hypervisor::destroy`].
//! * A shut-down domain's process would be paused by Xen and make no more hypercalls; the
//!   emulator answers `-ESRCH`.
//! * Not emulated (`-ENOSYS`): `EVTCHNOP_bind_virq`, `bind_pirq`, `bind_ipi`,
//!   `bind_vcpu`, `reset`, `init_control`, `expand_array`, `set_priority`;
//!   `SCHEDOP_watchdog`, `SCHEDOP_pin_override`; grant tables (including
//!   `XENMAPSPACE_grant_table`); `vcpu_op`, `hvm_op`; every `XENVER_*` but
//!   `XENVER_version`; every memory op but `XENMEM_add_to_physmap`.
//! * The Xen target version only matters for `XENVER_version`, the xenstore rule (4.17–4.20:
//!   `"enabled"` needs dom0) and `CONFIG_STATIC_EVTCHN` (4.19+).
//! * The hardware domain's shutdown halts or reboots the whole machine in Xen
//!   (`hwdom_shutdown`); here it only changes dom0's state: the runner decides.
//! * Counters ([`Hypervisor::stats`]) have no Xen equivalent.

#![deny(unsafe_op_in_unsafe_fn)]

mod console;
mod errno;
mod hv;
mod hypercall;
pub mod shm;
mod spec;
mod state;
mod stats;

pub use errno::Errno;
pub use hv::{BindStep, BootError, Hypervisor};
pub use spec::{BootDomain, BootEnd, BootPair, BootShm, BootSpec, ShmRole, XenRelease};
pub use stats::{CallStats, PortStats, Stats, OTHER_CMD, OTHER_OP};

use staticbus_abi::shared_info::{SharedInfo, PAGE_WORDS};
use std::sync::atomic::AtomicU64;

/// A domain id (`domid_t`).
pub type DomId = u16;

/// The XSM policy Xen runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// XSM SILO, the default of Debian's Xen builds: runtime event channels between two
    /// domUs are refused with `-EPERM`; only static channels connect domUs.
    Silo,
    /// The permissive dummy policy (`xsm=dummy`).
    Dummy,
}

/// A domain's `shared_info` page, 512 atomic 64-bit words. The runner backs it with a
/// page of an mmap'ed memfd shared with the domain process; tests use [`HeapPage`].
pub trait PageMem: Send + Sync {
    /// The page.
    fn words(&self) -> &[AtomicU64; PAGE_WORDS];
}

/// A `shared_info` page on the heap.
#[derive(Debug)]
pub struct HeapPage(Box<[AtomicU64; PAGE_WORDS]>);

impl HeapPage {
    /// A zeroed page.
    pub fn new() -> HeapPage {
        HeapPage(Box::new(std::array::from_fn(|_| AtomicU64::new(0))))
    }

    /// The page as `shared_info`.
    pub fn shared_info(&self) -> SharedInfo<'_> {
        SharedInfo::new(&self.0)
    }
}

impl Default for HeapPage {
    fn default() -> Self {
        HeapPage::new()
    }
}

impl PageMem for HeapPage {
    fn words(&self) -> &[AtomicU64; PAGE_WORDS] {
        &self.0
    }
}

/// Wakes domains: called (outside the hypervisor's lock) after one of `dom`'s pending
/// bits went 0→1, masked or not, or an unmask re-raised its upcall. The runner bumps the
/// domain's futex there.
pub trait Notify: Send + Sync {
    /// `dom` has something new pending.
    fn wake(&self, dom: DomId);
}

/// Direct delivery of static inter-domain event channels (docs/adr/0009): sends on a
/// static port go from the sender's process to the receiver's without a hypercall, and
/// the hypervisor only hears of the pair's state changes. Called **under the
/// hypervisor's lock**: an implementation must not call back into the [`Hypervisor`].
///
/// `from` is the sending end `(domain, port)`, `to` the receiving end.
pub trait DirectLinks: Send + Sync {
    /// The static pair is bound (boot, or a restart's rebind): sends from `from` to `to`
    /// are delivered directly from now on; whatever `from` wrote while it was not bound
    /// counts for nothing.
    fn bound(&self, from: (DomId, u32), to: (DomId, u32));

    /// The static pair is being closed (`EVTCHNOP_close` of either end, a destroy): fold
    /// what `from` sent before into `to`'s pending bit, then make sure nothing written
    /// after can raise it. Returns whether the pending bit went 0→1 (the hypervisor then
    /// wakes `to`).
    fn unbound(&self, from: (DomId, u32), to: (DomId, u32)) -> bool;
}

/// Receives console output (outside the hypervisor's lock).
pub trait Console: Send + Sync {
    /// Output of domain `dom` named `name`: whole lines ending in `\n` for a domU, raw
    /// bytes for dom0.
    fn write(&self, dom: DomId, name: &str, bytes: &[u8]);
}

/// A [`Notify`] and [`Console`] that does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Notify for Quiet {
    fn wake(&self, _dom: DomId) {}
}

impl Console for Quiet {
    fn write(&self, _dom: DomId, _name: &str, _bytes: &[u8]) {}
}

/// Lifecycle state of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Running.
    Running,
    /// Shut down by `SCHEDOP_shutdown` (or dom0's `SCHEDOP_remote_shutdown`) with this
    /// reason (`SHUTDOWN_*`, 8 bits as Xen keeps it). The domain still exists: its ports
    /// stay bound until it is destroyed.
    Shutdown(u32),
    /// Crashed ([`Hypervisor::crash`]): exists, like a shut-down domain, until destroyed.
    Crashed,
    /// Destroyed: its ports are closed and it no longer exists.
    Destroyed,
}

/// The state of one port in a domain's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// `ECS_FREE`.
    Free,
    /// `ECS_RESERVED` (port 0).
    Reserved,
    /// `ECS_UNBOUND`: `remote` may bind to it.
    Unbound {
        /// The domain allowed to bind.
        remote: DomId,
    },
    /// `ECS_INTERDOMAIN`: bound to `remote_port` of `remote_dom`.
    Interdomain {
        /// The remote domain.
        remote_dom: DomId,
        /// The remote port.
        remote_port: u32,
    },
}

/// What `EVTCHNOP_status` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnStat {
    /// `EVTCHNSTAT_closed` (free or reserved).
    Closed,
    /// `EVTCHNSTAT_unbound`.
    Unbound {
        /// The domain allowed to bind.
        remote_dom: DomId,
    },
    /// `EVTCHNSTAT_interdomain`.
    Interdomain {
        /// The remote domain.
        remote_dom: DomId,
        /// The remote port.
        remote_port: u32,
    },
}
