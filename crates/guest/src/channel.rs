//! A channel as one domain uses it: its region and the event channels to its peers,
//! resolved from the manifest.

use crate::events::Events;
use crate::evtchn::MAX_POLL_PORTS;
use crate::hypercall::Errno;
use crate::ops::PortState;
use crate::platform::Platform;
use crate::region::Region;
use core::fmt;
use staticbus_manifest::{self as manifest, Peer, Protocol, Role};

/// Why [`Channel::open`] (or [`Channel::verify`]) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The manifest has a layout version this crate does not read.
    UnsupportedManifest {
        /// The manifest's `format_version`.
        format_version: u32,
    },
    /// The manifest has no channel with that name.
    NoSuchChannel,
    /// The transport could not provide the channel's shared region.
    NoRegion {
        /// The region's `xen,shm-id`.
        shm_id: &'static str,
    },
    /// The region the transport mapped does not have the manifest's size.
    RegionSizeMismatch {
        /// The region's `xen,shm-id`.
        shm_id: &'static str,
        /// Size in the manifest.
        expected: u64,
        /// Size of the mapped region.
        actual: usize,
    },
    /// A peer's local port is not among the manifest's event channels.
    NoEvtchn {
        /// The local port.
        port: u32,
    },
    /// [`Channel::verify`]: a port is not connected to the peer the manifest names.
    PortMismatch {
        /// The local port.
        port: u32,
        /// What `EVTCHNOP_status` reported.
        state: PortState,
    },
    /// [`Channel::verify`]: `EVTCHNOP_status` failed.
    Status {
        /// The local port.
        port: u32,
        /// The error.
        errno: Errno,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::UnsupportedManifest { format_version } => write!(
                f,
                "manifest format version {format_version} is not supported (expected {})",
                manifest::FORMAT_VERSION
            ),
            OpenError::NoSuchChannel => f.write_str("no such channel in the manifest"),
            OpenError::NoRegion { shm_id } => {
                write!(f, "shared region `{shm_id}` is not mapped")
            }
            OpenError::RegionSizeMismatch {
                shm_id,
                expected,
                actual,
            } => write!(
                f,
                "shared region `{shm_id}` is {actual:#x} bytes, the manifest says {expected:#x}"
            ),
            OpenError::NoEvtchn { port } => {
                write!(f, "port {port} is not among the manifest's event channels")
            }
            OpenError::PortMismatch { port, state } => {
                write!(f, "port {port} is not connected to its peer: {state:?}")
            }
            OpenError::Status { port, errno } => {
                write!(f, "EVTCHNOP_status on port {port} failed: {errno}")
            }
        }
    }
}

impl core::error::Error for OpenError {}

/// An open channel: the manifest entry, the mapped region and the event channels to the
/// peers, over any [`Events`] implementation (the one a [`Platform`] hands out).
///
/// Peers are addressed by their index in [`Channel::peers`] (the manifest's order).
/// Every channel of a domain shares the domain's events (for the 2-level driver: its
/// [`FiredSet`](crate::FiredSet)), so a `wait` on one channel does not swallow another
/// channel's events.
pub struct Channel<'p, E: Events> {
    events: E,
    manifest: &'p manifest::Manifest,
    info: &'static manifest::Channel,
    region: Region,
}

/// The channel type [`Channel::open`] returns for platform `P`.
pub type PlatformChannel<'p, P> = Channel<'p, <P as Platform>::Events<'p>>;

impl<E: Events> fmt::Debug for Channel<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("info", self.info)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl<'p, E: Events> Channel<'p, E> {
    /// Opens channel `name`: looks it up in the platform's manifest, gets its region
    /// (whose size must match the manifest) and checks that every peer's port is one of
    /// the manifest's event channels. Makes no hypercall (see [`Channel::verify`]).
    pub fn open<P>(platform: &'p P, name: &str) -> Result<Self, OpenError>
    where
        P: Platform<Events<'p> = E> + ?Sized,
    {
        Self::with_events(platform.events(), platform.manifest(), name, |id| {
            platform.region(id)
        })
    }

    /// [`Channel::open`] from the parts a platform provides: `events`, the domain's
    /// `manifest` and a way to map a region by `xen,shm-id`.
    pub fn with_events(
        events: E,
        manifest: &'p manifest::Manifest,
        name: &str,
        region: impl FnOnce(&str) -> Option<Region>,
    ) -> Result<Self, OpenError> {
        if !manifest.is_supported() {
            return Err(OpenError::UnsupportedManifest {
                format_version: manifest.format_version,
            });
        }
        let info = manifest.channel(name).ok_or(OpenError::NoSuchChannel)?;
        let region = region(info.shm_id).ok_or(OpenError::NoRegion {
            shm_id: info.shm_id,
        })?;
        if u64::try_from(region.len()) != Ok(info.size) {
            return Err(OpenError::RegionSizeMismatch {
                shm_id: info.shm_id,
                expected: info.size,
                actual: region.len(),
            });
        }
        if let Some(p) = info
            .peers
            .iter()
            .find(|p| manifest.evtchn(p.local_port).is_none())
        {
            return Err(OpenError::NoEvtchn { port: p.local_port });
        }
        Ok(Channel {
            events,
            manifest,
            info,
            region,
        })
    }

    /// Checks with `EVTCHNOP_status` that every peer's port is INTERDOMAIN and connected
    /// to the peer's domain and port, as the manifest says. Fails after a peer closed its
    /// end or was destroyed (its ports then fall back to UNBOUND; spec §1.5).
    pub fn verify(&self) -> Result<(), OpenError> {
        for p in self.info.peers {
            let port = p.local_port;
            let st = self
                .events
                .status(port)
                .map_err(|errno| OpenError::Status { port, errno })?;
            let expected = PortState::Interdomain {
                remote_dom: p.domid,
                remote_port: p.remote_port,
            };
            if st.state != expected {
                return Err(OpenError::PortMismatch {
                    port,
                    state: st.state,
                });
            }
        }
        Ok(())
    }

    /// The channel's name.
    pub fn name(&self) -> &'static str {
        self.info.name
    }

    /// The channel's protocol.
    pub fn protocol(&self) -> Protocol {
        self.info.protocol
    }

    /// This domain's role.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// The whole manifest entry.
    pub fn info(&self) -> &'static manifest::Channel {
        self.info
    }

    /// The shared region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The peers, one event channel each.
    pub fn peers(&self) -> &'static [Peer] {
        self.info.peers
    }

    /// The domain's event channels.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// Signals peer `peer_index` (`EVTCHNOP_send` on its local port). `ENOENT`, without a
    /// hypercall, if there is no such peer.
    pub fn notify(&self, peer_index: usize) -> Result<(), Errno> {
        let peer = self.info.peers.get(peer_index).ok_or(Errno::ENOENT)?;
        self.events.send(peer.local_port)
    }

    /// Signals every peer; tries them all and returns the first error.
    pub fn notify_all(&self) -> Result<(), Errno> {
        let mut result = Ok(());
        for p in self.info.peers {
            if let Err(e) = self.events.send(p.local_port) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Consumes the bind-time pending bit (see [`Events::clear_initial`]) on every
    /// port of this channel the manifest marks `initially_pending`; returns whether any
    /// was set. Call once at start, before the protocol's handshake.
    pub fn clear_initial(&self) -> bool {
        let mut any = false;
        for p in self.info.peers {
            if self
                .manifest
                .evtchn(p.local_port)
                .is_some_and(|e| e.initially_pending)
            {
                any |= self.events.clear_initial(p.local_port);
            }
        }
        any
    }

    /// Blocks until some peer's port fired; consumes that event and returns the peer's
    /// index. Re-check the shared state after it returns: the event is only a doorbell.
    /// `EINVAL` if the channel has no peers or more than [`MAX_POLL_PORTS`].
    pub fn wait(&self) -> Result<usize, Errno> {
        let mut ports = [0u32; MAX_POLL_PORTS];
        let peers = self.info.peers;
        if peers.len() > MAX_POLL_PORTS {
            return Err(Errno::EINVAL);
        }
        for (slot, p) in ports.iter_mut().zip(peers) {
            *slot = p.local_port;
        }
        let port = self.events.wait_any(&ports[..peers.len()])?;
        Ok(self.index_of(port))
    }

    /// Consumes one fired peer event without blocking; returns the lowest index of a peer
    /// whose port fired.
    pub fn try_take(&self) -> Option<usize> {
        let mut ports = [0u32; MAX_POLL_PORTS];
        for peers in self.info.peers.chunks(MAX_POLL_PORTS) {
            for (slot, p) in ports.iter_mut().zip(peers) {
                *slot = p.local_port;
            }
            if let Some(port) = self.events.try_take_any(&ports[..peers.len()]) {
                return Some(self.index_of(port));
            }
        }
        None
    }

    fn index_of(&self, port: u32) -> usize {
        self.info
            .peers
            .iter()
            .position(|p| p.local_port == port)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Backing, Call, FakePlatform, FakeWfi, FakeXen, Wake};
    use crate::ops;
    use crate::platform::TwoLevelTransport;
    use staticbus_manifest::{Evtchn, Manifest, FORMAT_VERSION};
    use std::string::ToString;
    use std::vec;

    const fn chan(
        name: &'static str,
        protocol: Protocol,
        role: Role,
        shm_id: &'static str,
        size: u64,
        peers: &'static [Peer],
    ) -> manifest::Channel {
        manifest::Channel {
            name,
            protocol,
            role,
            shm_id,
            guest_addr: 0x7fe0_0000,
            size,
            index: 0,
            writers: 1,
            readers: 1,
            slot_size: None,
            value_size: None,
            peers,
        }
    }

    const fn peer(domain: &'static str, domid: u16, role: Role, local: u32, remote: u32) -> Peer {
        Peer {
            domain,
            domid,
            role,
            local_port: local,
            remote_port: remote,
        }
    }

    const fn evt(local: u32, dom: &'static str, domid: u16, remote: u32, first: bool) -> Evtchn {
        Evtchn {
            local_port: local,
            remote_domain: dom,
            remote_domid: domid,
            remote_port: remote,
            initially_pending: !first,
            channel: None,
        }
    }

    /// Domain "a" (domid 1): bound first, so its ports do not start pending.
    static A: Manifest = Manifest {
        format_version: FORMAT_VERSION,
        system: "test",
        xen: "4.20",
        domain: "a",
        domid: 1,
        channels: &[
            chan(
                "q",
                Protocol::Queue,
                Role::Producer,
                "q-shm",
                0x1000,
                &[peer("b", 2, Role::Consumer, 10, 11)],
            ),
            chan(
                "cfg",
                Protocol::Blob,
                Role::Writer,
                "cfg",
                0x1000,
                &[peer("b", 2, Role::Reader, 20, 21)],
            ),
            chan(
                "noregion",
                Protocol::Log,
                Role::Writer,
                "missing",
                0x1000,
                &[],
            ),
            chan("badsize", Protocol::Log, Role::Writer, "q-shm", 0x2000, &[]),
            chan(
                "noevt",
                Protocol::Log,
                Role::Writer,
                "cfg",
                0x1000,
                &[peer("b", 2, Role::Reader, 99, 98)],
            ),
            chan("lonely", Protocol::Log, Role::Writer, "cfg", 0x1000, &[]),
        ],
        regions: &[],
        evtchns: &[evt(10, "b", 2, 11, true), evt(20, "b", 2, 21, true)],
        virtio: &[],
    };

    /// Domain "b" (domid 2): bound second, so its ports start pending.
    static B: Manifest = Manifest {
        format_version: FORMAT_VERSION,
        system: "test",
        xen: "4.20",
        domain: "b",
        domid: 2,
        channels: &[
            chan(
                "q",
                Protocol::Queue,
                Role::Consumer,
                "q-shm",
                0x1000,
                &[peer("a", 1, Role::Producer, 11, 10)],
            ),
            chan(
                "cfg",
                Protocol::Blob,
                Role::Reader,
                "cfg",
                0x1000,
                &[peer("a", 1, Role::Writer, 21, 20)],
            ),
        ],
        regions: &[],
        evtchns: &[evt(11, "a", 1, 10, false), evt(21, "a", 1, 20, false)],
        virtio: &[],
    };

    static NEWER: Manifest = Manifest {
        format_version: FORMAT_VERSION + 1,
        ..A
    };

    struct World {
        xen: FakeXen,
        q: Backing,
        cfg: Backing,
    }

    impl World {
        fn new() -> Self {
            World {
                xen: FakeXen::new(&[(10, 11), (20, 21)]),
                q: Backing::new(0x1000),
                cfg: Backing::new(0x1000),
            }
        }

        fn platform(&self, idx: usize, m: &'static Manifest) -> FakePlatform<'_> {
            let mut p = FakePlatform::new(self.xen.dom(idx), m);
            p.regions.push(("q-shm", self.q.region(0x1000)));
            p.regions.push(("cfg", self.cfg.region(0x1000)));
            p
        }
    }

    #[test]
    fn open_resolves_the_manifest_entry() {
        let w = World::new();
        let pa = w.platform(0, &A);
        let q = Channel::open(&pa, "q").unwrap();
        assert_eq!(q.name(), "q");
        assert_eq!(q.protocol(), Protocol::Queue);
        assert_eq!(q.role(), Role::Producer);
        assert_eq!(q.region().len(), 0x1000);
        assert_eq!(q.region().as_ptr(), w.q.region(1).as_ptr());
        assert_eq!(q.peers().len(), 1);
        assert_eq!(q.peers()[0].local_port, 10);
        assert_eq!(q.info().shm_id, "q-shm");
        assert!(w.xen.calls(0).is_empty(), "open makes no hypercall");
    }

    #[test]
    fn open_errors() {
        let w = World::new();
        let pa = w.platform(0, &A);
        let err = |name| Channel::open(&pa, name).unwrap_err();
        assert_eq!(err("nope"), OpenError::NoSuchChannel);
        assert_eq!(err("noregion"), OpenError::NoRegion { shm_id: "missing" });
        assert_eq!(
            err("badsize"),
            OpenError::RegionSizeMismatch {
                shm_id: "q-shm",
                expected: 0x2000,
                actual: 0x1000
            }
        );
        assert_eq!(err("noevt"), OpenError::NoEvtchn { port: 99 });
        let pn = w.platform(0, &NEWER);
        assert_eq!(
            Channel::open(&pn, "q").unwrap_err(),
            OpenError::UnsupportedManifest {
                format_version: FORMAT_VERSION + 1
            }
        );
        // A platform whose region has the wrong size.
        let mut small = FakePlatform::new(w.xen.dom(0), &A);
        small.regions.push(("q-shm", w.q.region(0x800)));
        assert!(matches!(
            Channel::open(&small, "q"),
            Err(OpenError::RegionSizeMismatch { actual: 0x800, .. })
        ));
        assert_eq!(err("nope").to_string(), "no such channel in the manifest");
        assert_eq!(
            err("badsize").to_string(),
            "shared region `q-shm` is 0x1000 bytes, the manifest says 0x2000"
        );
        assert_eq!(
            err("noregion").to_string(),
            "shared region `missing` is not mapped"
        );
        assert_eq!(
            err("noevt").to_string(),
            "port 99 is not among the manifest's event channels"
        );
    }

    #[test]
    fn notify_and_take_between_two_domains() {
        let w = World::new();
        let (pa, pb) = (w.platform(0, &A), w.platform(1, &B));
        let (qa, qb) = (
            Channel::open(&pa, "q").unwrap(),
            Channel::open(&pb, "q").unwrap(),
        );
        let cfg_b = Channel::open(&pb, "cfg").unwrap();
        // b is the second-bound end of q: clear its bind-time event.
        assert!(qb.clear_initial());
        assert!(!qa.clear_initial());
        assert_eq!(qb.try_take(), None);
        qa.region().write_bytes(0, b"msg").unwrap();
        qa.notify(0).unwrap();
        assert_eq!(qa.notify(1), Err(Errno::ENOENT));
        assert_eq!(w.xen.calls(0), vec![Call::Send(10)]);
        assert_eq!(qb.try_take(), Some(0));
        assert_eq!(qb.try_take(), None);
        let mut b = [0u8; 3];
        qb.region().read_bytes(0, &mut b).unwrap();
        assert_eq!(&b, b"msg");
        // q's takes collected cfg's bind-time event into the shared fired set; cfg still
        // sees it.
        assert_eq!(cfg_b.try_take(), Some(0));
        assert_eq!(cfg_b.try_take(), None);
    }

    #[test]
    fn clear_initial_only_touches_flagged_ports() {
        let w = World::new();
        let (pa, pb) = (w.platform(0, &A), w.platform(1, &B));
        let (qa, qb) = (
            Channel::open(&pa, "q").unwrap(),
            Channel::open(&pb, "q").unwrap(),
        );
        qb.notify_all().unwrap();
        // a's port is pending with a real event, but a is not the second-bound end.
        assert!(!qa.clear_initial());
        assert_eq!(qa.try_take(), Some(0));
    }

    #[test]
    fn wait_blocks_until_a_peer_fires() {
        let w = World::new();
        let pb = w.platform(1, &B);
        let qb = Channel::open(&pb, "q").unwrap();
        qb.clear_initial();
        w.xen.script(
            1,
            [Wake::Spurious, Wake::PeerSends(20), Wake::PeerSends(10)],
        );
        assert_eq!(qb.wait(), Ok(0));
        let cfg_b = Channel::open(&pb, "cfg").unwrap();
        // cfg's bind-time event plus the one sent during the wait: coalesced into one.
        assert_eq!(cfg_b.wait(), Ok(0));
        assert_eq!(cfg_b.try_take(), None);
        let pa = w.platform(0, &A);
        let lonely = Channel::open(&pa, "lonely").unwrap();
        assert_eq!(lonely.wait(), Err(Errno::EINVAL));
        assert_eq!(lonely.try_take(), None);
        assert_eq!(lonely.notify_all(), Ok(()));
    }

    #[test]
    fn a_platform_upcall_sleep_reaches_channel_waits() {
        let w = World::new();
        let mut pb = w.platform(1, &B);
        assert!(
            pb.events().upcall_sleep().is_none(),
            "SCHEDOP_poll by default"
        );
        let wfi = FakeWfi { dom: w.xen.dom(1) };
        pb.upcall = Some(&wfi);
        assert!(pb.events().upcall_sleep().is_some());
        let qb = Channel::open(&pb, "q").unwrap();
        assert!(qb.events().upcall_sleep().is_some());
        qb.clear_initial();
        w.xen.script(1, [Wake::PeerSends(20), Wake::PeerSends(10)]);
        assert_eq!(qb.wait(), Ok(0));
        // The bind-time PPI, then cfg's event, then q's: wfi every time, never a poll.
        assert_eq!(w.xen.calls(1), vec![Call::Wfi; 3]);
        let cfg_b = Channel::open(&pb, "cfg").unwrap();
        assert_eq!(cfg_b.wait(), Ok(0));
        assert_eq!(w.xen.calls(1).len(), 3);
    }

    #[test]
    fn verify_checks_the_ports_with_the_hypervisor() {
        let w = World::new();
        let (pa, pb) = (w.platform(0, &A), w.platform(1, &B));
        let (qa, qb) = (
            Channel::open(&pa, "q").unwrap(),
            Channel::open(&pb, "q").unwrap(),
        );
        qa.verify().unwrap();
        qb.verify().unwrap();
        assert_eq!(w.xen.calls(1), vec![Call::Status(11)]);
        // a breaks the rule and closes its static port: b's end falls back to UNBOUND.
        ops::evtchn_close(pa.hypercall(), 10).unwrap();
        assert_eq!(
            qb.verify(),
            Err(OpenError::PortMismatch {
                port: 11,
                state: PortState::Unbound { remote_dom: 1 }
            })
        );
        assert_eq!(
            qa.verify(),
            Err(OpenError::PortMismatch {
                port: 10,
                state: PortState::Closed
            })
        );
        assert_eq!(qa.notify(0), Err(Errno::EINVAL));
    }

    /// Events with neither `shared_info` nor hypercalls (what a `/dev/xen/evtchn`
    /// transport looks like from above): a list of fired ports and a log of sends.
    #[derive(Default)]
    struct Doorbells {
        fired: core::cell::RefCell<std::vec::Vec<u32>>,
        sent: core::cell::RefCell<std::vec::Vec<u32>>,
    }

    impl Events for Doorbells {
        fn send(&self, port: u32) -> Result<(), Errno> {
            self.sent.borrow_mut().push(port);
            Ok(())
        }

        fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
            self.try_take_any(ports).ok_or(Errno::EBUSY)
        }

        fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
            let mut fired = self.fired.borrow_mut();
            let i = fired.iter().position(|p| ports.contains(p))?;
            Some(fired.remove(i))
        }

        fn take_fired(&self) -> Option<u32> {
            let mut fired = self.fired.borrow_mut();
            (!fired.is_empty()).then(|| fired.remove(0))
        }

        fn is_pending(&self, port: u32) -> bool {
            self.fired.borrow().contains(&port)
        }

        fn clear_initial(&self, port: u32) -> bool {
            self.try_take_any(&[port]).is_some()
        }

        fn status(&self, port: u32) -> Result<ops::PortStatus, Errno> {
            let e = B.evtchn(port).ok_or(Errno::EINVAL)?;
            Ok(ops::PortStatus {
                state: PortState::Interdomain {
                    remote_dom: e.remote_domid,
                    remote_port: e.remote_port,
                },
                vcpu: 0,
            })
        }
    }

    #[test]
    fn a_channel_over_events_without_shared_info() {
        let w = World::new();
        let bells = Doorbells::default();
        bells.fired.borrow_mut().extend([11, 21, 11]);
        let q = Channel::with_events(&bells, &B, "q", |id| {
            (id == "q-shm").then(|| w.q.region(0x1000))
        })
        .unwrap();
        q.verify().unwrap();
        // Only q's port: cfg's event stays for cfg.
        assert!(q.clear_initial());
        assert_eq!(q.try_take(), Some(0));
        assert_eq!(q.try_take(), None);
        assert_eq!(bells.fired.borrow().as_slice(), &[21]);
        assert_eq!(q.wait(), Err(Errno::EBUSY));
        q.notify_all().unwrap();
        assert_eq!(bells.sent.borrow().as_slice(), &[11]);
        assert_eq!(
            Channel::with_events(&bells, &B, "cfg", |_| None).unwrap_err(),
            OpenError::NoRegion { shm_id: "cfg" }
        );
    }
}
