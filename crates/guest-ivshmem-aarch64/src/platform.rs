//! [`IvshmemPlatform`]: the `staticbus_guest::Platform` of a VM whose peers are reached
//! through QEMU's ivshmem-doorbell device (docs/adr/0005-ivshmem-platform.md).
//!
//! The manifest is the one `staticbus build` writes for Xen, read this way:
//!
//! * **a region** is the window `[guest_addr, guest_addr + size)` of the shared object,
//!   which the runtime maps as BAR2 at [`ivshmem::SHM_BASE`]: it must lie inside BAR2 and
//!   clear of the control page at its end ([`ivshmem::CONTROL_PAGE`]);
//! * **a peer's id** is its domid (staticbus's server gives each domain's socket that id);
//! * **a local port is the vector the peers ring to reach this domain**:
//!   [`send`](Events::send) on local port `p` looks up the event channel of `p` in the
//!   manifest and rings `remote_domid << 16 | remote_port`; an event on local port `p` is
//!   an MSI on vector `p`. Ports are `1..vectors`; vector [`ivshmem::LEFT_VECTOR`] is the
//!   server's "a peer left" notice.
//!
//! An MSI is latched by the interrupt controller until the VM acknowledges it, several
//! rings before that arrive as one (coalescing), and one that arrives after the VM looked
//! makes its next sleep return at once: the contract of [`Events`]. A wait whose ports all
//! belong to peers that are still connected sleeps until an event; one on a port whose
//! peer left (the control page says so) fails with `ESRCH` instead of waiting forever.

use core::sync::atomic::{AtomicU64, Ordering};
use staticbus_abi::ivshmem;
use staticbus_guest::ops::{PortState, PortStatus};
use staticbus_guest::{Errno, Events, Platform, Region};
use staticbus_manifest::Manifest;

/// What the platform needs of the hardware: the doorbell register, the interrupt
/// controller's acknowledge, a sleep until an interrupt, and the control page. The
/// bare-metal implementation is [`crate::device::VirtDoorbells`]; host tests use a fake.
pub trait Doorbells {
    /// Rings vector `vector` of peer `peer` (the Doorbell register).
    fn ring(&self, peer: u16, vector: u32);
    /// Acknowledges and ends one pending doorbell interrupt and returns its vector, or
    /// `None` if none is pending.
    fn next_fired(&self) -> Option<u32>;
    /// Sleeps until an interrupt may be pending (returns at once if one is).
    fn sleep(&self);
    /// True while the control page says peer `peer` has left.
    fn peer_left(&self, peer: u16) -> bool;
}

/// Why a region of the manifest is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The manifest lists no region with that id.
    NotInManifest,
    /// The region is not inside BAR2 minus the control page.
    OutsideSharedObject {
        /// Guest address.
        base: u64,
        /// Size.
        size: u64,
    },
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RegionError::NotInManifest => f.write_str("the manifest has no such region"),
            RegionError::OutsideSharedObject { base, size } => write!(
                f,
                "{size:#x} bytes at {base:#x} are not inside the shared object (BAR2) minus \
                 its control page"
            ),
        }
    }
}

impl core::error::Error for RegionError {}

/// A VM on the ivshmem platform: its doorbells, its manifest, the shared object's place
/// and size, the number of vectors, and the vectors that fired and are not consumed yet.
#[derive(Debug)]
pub struct IvshmemPlatform<D> {
    d: D,
    manifest: &'static Manifest,
    shm_base: u64,
    shm_size: u64,
    vectors: u32,
    fired: AtomicU64,
}

impl<D: Doorbells> IvshmemPlatform<D> {
    /// A platform over `d`, with BAR2 at `shm_base` (`shm_size` bytes) and `vectors`
    /// vectors (at most [`ivshmem::MAX_VECTORS`]).
    ///
    /// # Safety
    ///
    /// `[shm_base, shm_base + shm_size)` is the shared object, mapped Normal write-back
    /// for the rest of the program, accessed only through [`Region`]s (and the control
    /// page through `d`). [`Platform::region`] hands out windows of it.
    pub unsafe fn new(
        d: D,
        manifest: &'static Manifest,
        shm_base: u64,
        shm_size: u64,
        vectors: u32,
    ) -> Self {
        IvshmemPlatform {
            d,
            manifest,
            shm_base,
            shm_size,
            vectors: vectors.min(ivshmem::MAX_VECTORS),
            fired: AtomicU64::new(0),
        }
    }

    /// The hardware.
    pub fn doorbells(&self) -> &D {
        &self.d
    }

    /// The manifest, with its `'static` lifetime.
    pub fn manifest_static(&self) -> &'static Manifest {
        self.manifest
    }

    /// Where region `shm_id` is, `(address, length)`, or why it is unusable.
    pub fn find_region(&self, shm_id: &str) -> Result<(usize, usize), RegionError> {
        let r = self
            .manifest
            .region(shm_id)
            .ok_or(RegionError::NotInManifest)?;
        let outside = RegionError::OutsideSharedObject {
            base: r.guest_addr,
            size: r.size,
        };
        let usable_end = self.shm_base + self.shm_size.saturating_sub(ivshmem::CONTROL_PAGE);
        let end = r.guest_addr.checked_add(r.size).ok_or(outside)?;
        if r.guest_addr < self.shm_base || end > usable_end || r.size == 0 {
            return Err(outside);
        }
        match (usize::try_from(r.guest_addr), usize::try_from(r.size)) {
            (Ok(a), Ok(l)) => Ok((a, l)),
            _ => Err(outside),
        }
    }

    /// Moves every pending doorbell interrupt into the fired set.
    fn collect(&self) {
        while let Some(v) = self.d.next_fired() {
            if v < self.vectors {
                self.fired.fetch_or(1 << v, Ordering::Relaxed);
            }
        }
    }

    fn take(&self, port: u32) -> bool {
        if port == ivshmem::LEFT_VECTOR || port >= self.vectors {
            return false;
        }
        let bit = 1u64 << port;
        self.fired.fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }

    /// The peer that rings local `port`, if the manifest binds it.
    fn peer_of(&self, port: u32) -> Option<u16> {
        self.manifest.evtchn(port).map(|e| e.remote_domid)
    }
}

impl<D: Doorbells> Events for IvshmemPlatform<D> {
    fn send(&self, port: u32) -> Result<(), Errno> {
        let e = self.manifest.evtchn(port).ok_or(Errno::EINVAL)?;
        if e.remote_port == ivshmem::LEFT_VECTOR || e.remote_port >= self.vectors {
            return Err(Errno::EINVAL);
        }
        if self.d.peer_left(e.remote_domid) {
            return Err(Errno::ESRCH);
        }
        self.d.ring(e.remote_domid, e.remote_port);
        Ok(())
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if ports.is_empty() {
            return Err(Errno::EINVAL);
        }
        loop {
            self.collect();
            if let Some(&p) = ports.iter().find(|&&p| self.take(p)) {
                return Ok(p);
            }
            // The left notice only wakes us; the control page says who.
            self.fired
                .fetch_and(!(1 << ivshmem::LEFT_VECTOR), Ordering::Relaxed);
            if ports
                .iter()
                .any(|&p| self.peer_of(p).is_some_and(|peer| self.d.peer_left(peer)))
            {
                return Err(Errno::ESRCH);
            }
            self.d.sleep();
        }
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        self.collect();
        ports.iter().copied().find(|&p| self.take(p))
    }

    fn take_fired(&self) -> Option<u32> {
        self.collect();
        let mask = !(1u64 << ivshmem::LEFT_VECTOR);
        let set = self.fired.load(Ordering::Relaxed) & mask;
        if set == 0 {
            return None;
        }
        let port = set.trailing_zeros();
        self.take(port).then_some(port)
    }

    fn is_pending(&self, port: u32) -> bool {
        self.collect();
        port != ivshmem::LEFT_VECTOR
            && port < self.vectors
            && self.fired.load(Ordering::Relaxed) & (1 << port) != 0
    }

    fn clear_initial(&self, port: u32) -> bool {
        self.collect();
        self.take(port)
    }

    /// The binding is the manifest's (ivshmem has no ports to ask about); the live part is
    /// the peer: `Interdomain` with the manifest's peer and port while it is connected,
    /// `Unbound` once the control page says it left (as a Xen port falls back to
    /// `UNBOUND` when its peer is destroyed). `EINVAL` for a port the manifest does not
    /// bind.
    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        let e = self.manifest.evtchn(port).ok_or(Errno::EINVAL)?;
        let state = if self.d.peer_left(e.remote_domid) {
            PortState::Unbound {
                remote_dom: e.remote_domid,
            }
        } else {
            PortState::Interdomain {
                remote_dom: e.remote_domid,
                remote_port: e.remote_port,
            }
        };
        Ok(PortStatus { state, vcpu: 0 })
    }
}

impl<D: Doorbells> Platform for IvshmemPlatform<D> {
    type Events<'a>
        = &'a IvshmemPlatform<D>
    where
        Self: 'a;

    fn events(&self) -> &IvshmemPlatform<D> {
        self
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        let (base, len) = self.find_region(shm_id).ok()?;
        // SAFETY: `new`'s contract: the shared object is mapped Normal write-back for the
        // rest of the program and used only through Regions; `find_region` checked the
        // window lies inside it.
        unsafe { Region::new(core::ptr::with_exposed_provenance_mut(base), len) }
    }

    fn manifest(&self) -> &Manifest {
        self.manifest
    }

    /// A VM has one vCPU and its peers run in other processes: nothing to yield to.
    fn yield_now(&self) -> Result<(), Errno> {
        core::hint::spin_loop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    use staticbus_manifest::{Evtchn, Region as MRegion, DOMID_IO, FORMAT_VERSION};
    use std::vec::Vec;

    #[derive(Default)]
    struct Fake {
        rung: RefCell<Vec<(u16, u32)>>,
        pending: RefCell<Vec<u32>>,
        sleeps: Cell<u32>,
        left: Cell<bool>,
        /// Delivered on the first sleep (a peer that rings while we sleep).
        on_sleep: RefCell<Vec<u32>>,
    }

    impl Doorbells for Fake {
        fn ring(&self, peer: u16, vector: u32) {
            self.rung.borrow_mut().push((peer, vector));
        }
        fn next_fired(&self) -> Option<u32> {
            self.pending.borrow_mut().pop()
        }
        fn sleep(&self) {
            self.sleeps.set(self.sleeps.get() + 1);
            let wake = core::mem::take(&mut *self.on_sleep.borrow_mut());
            assert!(
                !wake.is_empty() || self.left.get(),
                "slept with nothing to come"
            );
            self.pending.borrow_mut().extend(wake);
        }
        fn peer_left(&self, peer: u16) -> bool {
            peer == 2 && self.left.get()
        }
    }

    const fn evtchn(local_port: u32, remote_port: u32) -> Evtchn {
        Evtchn {
            local_port,
            remote_domain: "b",
            remote_domid: 2,
            remote_port,
            initially_pending: false,
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
            MRegion {
                shm_id: "q",
                guest_addr: 0x2000_0000,
                size: 0x1_0000,
                host_addr: None,
                role: None,
                owner: "DOMID_IO",
                owner_domid: DOMID_IO,
                channel: None,
            },
            MRegion {
                shm_id: "ctl",
                guest_addr: 0x200f_f000,
                size: 0x1000,
                host_addr: None,
                role: None,
                owner: "DOMID_IO",
                owner_domid: DOMID_IO,
                channel: None,
            },
            MRegion {
                shm_id: "low",
                guest_addr: 0x0800_0000,
                size: 0x1000,
                host_addr: None,
                role: None,
                owner: "DOMID_IO",
                owner_domid: DOMID_IO,
                channel: None,
            },
        ],
        evtchns: &[evtchn(1, 3), evtchn(2, 1), evtchn(5, 70)],
        virtio: &[],
    };

    fn platform() -> IvshmemPlatform<Fake> {
        // SAFETY: host tests never dereference a region.
        unsafe { IvshmemPlatform::new(Fake::default(), &MANIFEST, 0x2000_0000, 0x10_0000, 8) }
    }

    #[test]
    fn send_rings_the_peers_vector_of_the_remote_port() {
        let p = platform();
        p.send(1).unwrap();
        p.send(2).unwrap();
        assert_eq!(*p.d.rung.borrow(), [(2, 3), (2, 1)]);
        assert_eq!(p.send(4), Err(Errno::EINVAL), "unbound port");
        assert_eq!(
            p.send(5),
            Err(Errno::EINVAL),
            "remote port beyond the vectors"
        );
        p.d.left.set(true);
        assert_eq!(p.send(1), Err(Errno::ESRCH), "the peer left");
    }

    #[test]
    fn events_are_latched_coalesced_and_consumed_once() {
        let p = platform();
        // Two interrupts on vector 2 (as if acknowledged twice) and one on 1.
        p.d.pending.borrow_mut().extend([2, 1, 2]);
        assert!(p.is_pending(2));
        assert_eq!(p.try_take_any(&[2]), Some(2));
        assert_eq!(p.try_take_any(&[2]), None, "coalesced into one");
        assert!(p.is_pending(1), "not consumed by a wait on another port");
        assert_eq!(p.take_fired(), Some(1));
        assert_eq!(p.take_fired(), None);
        p.d.pending.borrow_mut().push(1);
        assert!(p.clear_initial(1));
        assert!(!p.clear_initial(1));
        assert_eq!(
            p.status(1).unwrap().state,
            PortState::Interdomain {
                remote_dom: 2,
                remote_port: 3
            }
        );
        assert_eq!(p.status(4).unwrap_err(), Errno::EINVAL);
        p.d.left.set(true);
        assert_eq!(
            p.status(1).unwrap().state,
            PortState::Unbound { remote_dom: 2 }
        );
    }

    #[test]
    fn waits_sleep_until_their_port_fires() {
        let p = platform();
        p.d.on_sleep.borrow_mut().extend([2]);
        assert_eq!(p.wait_any(&[1, 2]), Ok(2));
        assert_eq!(p.d.sleeps.get(), 1);
        // A pending event: no sleep.
        p.d.pending.borrow_mut().push(1);
        assert_eq!(p.wait_any(&[1]), Ok(1));
        assert_eq!(p.d.sleeps.get(), 1);
        assert_eq!(p.wait_any(&[]), Err(Errno::EINVAL));
    }

    #[test]
    fn a_departed_peer_ends_the_wait() {
        let p = platform();
        // The server's notice wakes the sleeper; the control page names the peer.
        p.d.on_sleep.borrow_mut().push(ivshmem::LEFT_VECTOR);
        p.d.left.set(true);
        assert_eq!(p.wait_any(&[1]), Err(Errno::ESRCH));
        // The notice is never a port.
        assert_eq!(p.take_fired(), None);
        // An event that fired before the peer left is still delivered.
        p.d.pending.borrow_mut().push(2);
        assert_eq!(p.wait_any(&[2]), Ok(2));
    }

    #[test]
    fn regions_are_windows_of_bar2_clear_of_the_control_page() {
        let p = platform();
        assert_eq!(p.find_region("q"), Ok((0x2000_0000, 0x1_0000)));
        assert_eq!(
            p.find_region("ctl"),
            Err(RegionError::OutsideSharedObject {
                base: 0x200f_f000,
                size: 0x1000
            })
        );
        assert!(p.find_region("low").is_err());
        assert_eq!(p.find_region("none"), Err(RegionError::NotInManifest));
    }
}
