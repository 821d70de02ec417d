//! Typed staticbus domain manifests.
//!
//! `staticbus` writes, for every domain, a manifest of every channel, shared region and
//! static event-channel port the domain has. Its Rust form is a source file holding one
//! constant,
//!
//! ```text
//! pub const MANIFEST: staticbus_manifest::Manifest = staticbus_manifest::Manifest { … };
//! ```
//!
//! typed against this crate. Everything here is borrowed (`&'static`) and const-constructible,
//! so a manifest costs no allocation and no start-up work, and the lookups are `const fn`:
//! a guest can resolve a channel at compile time,
//!
//! ```
//! # use staticbus_manifest::*;
//! # const MANIFEST: Manifest = Manifest {
//! #     format_version: FORMAT_VERSION, system: "demo", xen: "4.20", domain: "a", domid: 1,
//! #     channels: &[Channel {
//! #         name: "q", protocol: Protocol::Queue, role: Role::Producer, shm_id: "q",
//! #         guest_addr: 0x7fe0_0000, size: 0x1000, index: 0, writers: 1, readers: 1,
//! #         slot_size: None, value_size: None,
//! #         peers: &[Peer { domain: "b", domid: 2, role: Role::Consumer, local_port: 10,
//! #                         remote_port: 11 }],
//! #     }],
//! #     regions: &[], evtchns: &[], virtio: &[],
//! # };
//! const Q: &Channel = MANIFEST.channel("q").expect("no channel q");
//! const PORT: u32 = Q.peer("b").expect("b is not a member of q").local_port;
//! assert_eq!(PORT, 10);
//! ```
//!
//! This crate is the one schema of the manifest: the borrowed form here, the owned form
//! in [`owned`] (feature `alloc`; the compiler builds manifests in it), `serde` for both
//! behind feature `serde`, and [`json::load`] (feature `json`) for a process reading its
//! `manifest.json`.

#![no_std]
#![deny(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "json")]
extern crate std;

#[cfg(feature = "json")]
pub mod json;
#[cfg(feature = "alloc")]
pub mod owned;

/// The manifest layout version this crate reads ([`Manifest::format_version`]).
pub const FORMAT_VERSION: u32 = 2;

/// `DOMID_IO`, the owner of a shared region no domain owns ([`Region::owner_domid`]).
pub const DOMID_IO: u16 = 0x7FF1;

/// A channel protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Protocol {
    /// Single-producer single-consumer message queue.
    Queue,
    /// Log ring the writer never blocks on.
    Log,
    /// Latest-value register (one slot per writer).
    Latest,
    /// Configuration blob (one writer, many readers).
    Blob,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 4] = [
        Protocol::Queue,
        Protocol::Log,
        Protocol::Latest,
        Protocol::Blob,
    ];

    /// The description name (`"queue"`, `"log"`, `"latest"`, `"blob"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Queue => "queue",
            Protocol::Log => "log",
            Protocol::Latest => "latest",
            Protocol::Blob => "blob",
        }
    }

    /// Parses a description name.
    pub const fn parse(s: &str) -> Option<Protocol> {
        let mut i = 0;
        while i < Protocol::ALL.len() {
            if str_eq(Protocol::ALL[i].as_str(), s) {
                return Some(Protocol::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The protocol id: the `protocol` word of the region header (docs/protocols.md §2),
    /// 1 = queue, 2 = log, 3 = latest, 4 = blob.
    ///
    /// This numbering is on the wire: every shared region records it, so it never changes.
    /// It is the one source of the ids `staticbus-proto` writes into region headers and of
    /// the `SB_PROTOCOL_*` values of generated C manifests; 0 is never a protocol id.
    ///
    /// ```
    /// # use staticbus_manifest::Protocol;
    /// assert_eq!(Protocol::Queue.id(), 1);
    /// assert_eq!(Protocol::from_id(Protocol::Blob.id()), Some(Protocol::Blob));
    /// ```
    pub const fn id(self) -> u32 {
        match self {
            Protocol::Queue => 1,
            Protocol::Log => 2,
            Protocol::Latest => 3,
            Protocol::Blob => 4,
        }
    }

    /// The protocol with this id ([`Protocol::id`]); `None` for any other value, 0
    /// included.
    pub const fn from_id(id: u32) -> Option<Protocol> {
        let mut i = 0;
        while i < Protocol::ALL.len() {
            if Protocol::ALL[i].id() == id {
                return Some(Protocol::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The roles of the writing and the reading side.
    pub const fn roles(self) -> (Role, Role) {
        match self {
            Protocol::Queue => (Role::Producer, Role::Consumer),
            Protocol::Log | Protocol::Latest | Protocol::Blob => (Role::Writer, Role::Reader),
        }
    }

    /// (most writers, most readers); `None` = no limit.
    pub const fn arity(self) -> (Option<usize>, Option<usize>) {
        match self {
            Protocol::Queue => (Some(1), Some(1)),
            Protocol::Log | Protocol::Blob => (Some(1), None),
            Protocol::Latest => (None, None),
        }
    }
}

impl core::fmt::Display for Protocol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain's role in a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Role {
    /// The writing side of a queue.
    Producer,
    /// The reading side of a queue.
    Consumer,
    /// A writer of a log, latest or blob channel.
    Writer,
    /// A reader of a log, latest or blob channel.
    Reader,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Producer, Role::Consumer, Role::Writer, Role::Reader];

    /// The manifest name (`"producer"`, `"consumer"`, `"writer"`, `"reader"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }

    /// Parses a manifest name.
    pub const fn parse(s: &str) -> Option<Role> {
        let mut i = 0;
        while i < Role::ALL.len() {
            if str_eq(Role::ALL[i].as_str(), s) {
                return Some(Role::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// True for the writing side (producer or writer).
    pub const fn is_writer(self) -> bool {
        matches!(self, Role::Producer | Role::Writer)
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain's role in a static shared-memory region (Xen's `role` property).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ShmRole {
    /// The region is assigned to this domain.
    Owner,
    /// The region is borrowed from its owner.
    Borrower,
}

impl ShmRole {
    /// The device-tree string (`"owner"`, `"borrower"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ShmRole::Owner => "owner",
            ShmRole::Borrower => "borrower",
        }
    }

    /// The manifest name of a region role: `"owner"`, `"borrower"`, or `"none"` for a
    /// region owned by `DOMID_IO`.
    pub const fn name_of(role: Option<ShmRole>) -> &'static str {
        match role {
            Some(r) => r.as_str(),
            None => "none",
        }
    }
}

/// Everything one domain knows about its static communication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// Manifest layout version ([`FORMAT_VERSION`] for manifests this crate understands).
    pub format_version: u32,
    /// System name.
    pub system: &'static str,
    /// Target Xen version (`"4.17"` … `"4.20"`).
    pub xen: &'static str,
    /// This domain's name.
    pub domain: &'static str,
    /// This domain's id.
    pub domid: u16,
    /// The channels the domain is a member of.
    pub channels: &'static [Channel],
    /// Every shared region mapped into the domain, channel regions included.
    pub regions: &'static [Region],
    /// Every static event-channel port the domain owns, channel ports included.
    pub evtchns: &'static [Evtchn],
    /// The virtio devices the domain drives or serves (`[[virtio]]`; their regions and
    /// ports are also in [`Manifest::regions`] and [`Manifest::evtchns`]).
    pub virtio: &'static [Virtio],
}

impl Manifest {
    /// The channel with this name.
    pub const fn channel(&self, name: &str) -> Option<&'static Channel> {
        let chans = self.channels;
        let mut i = 0;
        while i < chans.len() {
            if str_eq(chans[i].name, name) {
                return Some(&chans[i]);
            }
            i += 1;
        }
        None
    }

    /// The region with this `xen,shm-id`.
    pub const fn region(&self, shm_id: &str) -> Option<&'static Region> {
        let regions = self.regions;
        let mut i = 0;
        while i < regions.len() {
            if str_eq(regions[i].shm_id, shm_id) {
                return Some(&regions[i]);
            }
            i += 1;
        }
        None
    }

    /// The event channel whose local port is `local_port`.
    pub const fn evtchn(&self, local_port: u32) -> Option<&'static Evtchn> {
        let evtchns = self.evtchns;
        let mut i = 0;
        while i < evtchns.len() {
            if evtchns[i].local_port == local_port {
                return Some(&evtchns[i]);
            }
            i += 1;
        }
        None
    }

    /// The virtio device with this name.
    pub const fn virtio_device(&self, name: &str) -> Option<&'static Virtio> {
        let devs = self.virtio;
        let mut i = 0;
        while i < devs.len() {
            if str_eq(devs[i].name, name) {
                return Some(&devs[i]);
            }
            i += 1;
        }
        None
    }

    /// True if the manifest's layout is the one this crate was written for.
    pub const fn is_supported(&self) -> bool {
        self.format_version == FORMAT_VERSION
    }
}

/// A channel as this domain sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Channel {
    /// Channel name (unique in the system).
    pub name: &'static str,
    /// Protocol.
    pub protocol: Protocol,
    /// This domain's role.
    pub role: Role,
    /// `xen,shm-id` of the channel's region.
    pub shm_id: &'static str,
    /// Guest-physical address of the region in this domain.
    pub guest_addr: u64,
    /// Region size in bytes.
    pub size: u64,
    /// Index of this domain among the channel's writers (or readers, for a reader).
    pub index: u32,
    /// Number of writers.
    pub writers: u32,
    /// Number of readers.
    pub readers: u32,
    /// A log's slot size in bytes (`slot-size` in the description; `None` for the other
    /// protocols). Writer and readers attach with this size.
    pub slot_size: Option<u32>,
    /// A latest channel's value size in bytes (`value-size`; `None` for the other
    /// protocols). Writers and readers attach with this size.
    pub value_size: Option<u32>,
    /// The peers this domain signals, one per event channel.
    pub peers: &'static [Peer],
}

impl Channel {
    /// The peer with this domain name.
    pub const fn peer(&self, domain: &str) -> Option<&'static Peer> {
        let peers = self.peers;
        let mut i = 0;
        while i < peers.len() {
            if str_eq(peers[i].domain, domain) {
                return Some(&peers[i]);
            }
            i += 1;
        }
        None
    }

    /// The peer with this domain id.
    pub const fn peer_by_domid(&self, domid: u16) -> Option<&'static Peer> {
        let peers = self.peers;
        let mut i = 0;
        while i < peers.len() {
            if peers[i].domid == domid {
                return Some(&peers[i]);
            }
            i += 1;
        }
        None
    }

    /// The only peer, if the domain has exactly one in this channel (a queue, or a blob
    /// reader).
    pub const fn sole_peer(&self) -> Option<&'static Peer> {
        match self.peers {
            [p] => Some(p),
            _ => None,
        }
    }
}

/// One event channel of a channel, seen from this end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Peer domain name.
    pub domain: &'static str,
    /// Peer domain id.
    pub domid: u16,
    /// The peer's role in the channel.
    pub role: Role,
    /// This domain's port (the one to pass to `EVTCHNOP_send`).
    pub local_port: u32,
    /// The peer's port.
    pub remote_port: u32,
}

/// A shared region mapped into this domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// `xen,shm-id`.
    pub shm_id: &'static str,
    /// Guest-physical address in this domain.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host-physical address (`None`: allocated by Xen from its heap).
    pub host_addr: Option<u64>,
    /// This domain's role (`None`: the region has no owner domain; it belongs to
    /// `DOMID_IO`).
    pub role: Option<ShmRole>,
    /// Owner: a domain name, or `"DOMID_IO"`.
    pub owner: &'static str,
    /// Owner domain id ([`DOMID_IO`] if no domain owns the region).
    pub owner_domid: u16,
    /// The channel carried by the region, if any.
    pub channel: Option<&'static str>,
}

/// A static event-channel port owned by this domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Evtchn {
    /// Local port.
    pub local_port: u32,
    /// Peer domain name.
    pub remote_domain: &'static str,
    /// Peer domain id.
    pub remote_domid: u16,
    /// Peer port.
    pub remote_port: u32,
    /// True if Xen binds this end second: the port is already pending when the domain
    /// starts, so a protocol must clear it and handshake first.
    pub initially_pending: bool,
    /// The channel the port belongs to, if any.
    pub channel: Option<&'static str>,
}

/// A domain's side of a virtio device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum VirtioRole {
    /// The driving side (a virtio driver over the virtio-msg transport).
    Frontend,
    /// The serving side (the device side of the transport).
    Backend,
}

impl VirtioRole {
    /// The manifest name (`"frontend"`, `"backend"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            VirtioRole::Frontend => "frontend",
            VirtioRole::Backend => "backend",
        }
    }
}

impl core::fmt::Display for VirtioRole {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the backend domain serves a virtio device (`serve` in the description).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VirtioServe {
    /// staticbus's own `no_std` device side (`serve = { builtin = true }`).
    Builtin,
    /// A vhost-user daemon driven by the bridge: its program and arguments.
    VhostUser {
        /// The daemon's program.
        program: &'static str,
        /// Its arguments.
        args: &'static [&'static str],
    },
}

/// A virtio device (`[[virtio]]`) as this domain sees it: one shared region carrying the
/// virtio-msg transport (docs/virtio.md) and one event channel to the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Virtio {
    /// Device name (unique among channels and devices).
    pub name: &'static str,
    /// Device type name (`"blk"`, `"rng"`, `"console"`, …).
    pub device: &'static str,
    /// Virtio device id (2 block, 3 console, 4 entropy, …).
    pub device_id: u32,
    /// This domain's side.
    pub role: VirtioRole,
    /// Number of virtqueues.
    pub queues: u16,
    /// Entries per virtqueue (the largest size the device offers).
    pub queue_size: u32,
    /// `xen,shm-id` of the device's region.
    pub shm_id: &'static str,
    /// Guest-physical address of the region in this domain.
    pub guest_addr: u64,
    /// Region size in bytes.
    pub size: u64,
    /// The other side's domain name.
    pub peer: &'static str,
    /// The other side's domain id.
    pub peer_domid: u16,
    /// This domain's port of the device's event channel (the doorbell, both ways).
    pub local_port: u32,
    /// The other side's port.
    pub remote_port: u32,
    /// How the backend serves the device.
    pub serve: VirtioServe,
}

/// `a == b`, usable in `const fn`.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Manifest = Manifest {
        format_version: FORMAT_VERSION,
        system: "demo",
        xen: "4.20",
        domain: "a",
        domid: 1,
        channels: &[
            Channel {
                name: "q",
                protocol: Protocol::Queue,
                role: Role::Producer,
                shm_id: "q-shm",
                guest_addr: 0x7fe0_0000,
                size: 0x1000,
                index: 0,
                writers: 1,
                readers: 1,
                slot_size: None,
                value_size: None,
                peers: &[Peer {
                    domain: "b",
                    domid: 2,
                    role: Role::Consumer,
                    local_port: 10,
                    remote_port: 11,
                }],
            },
            Channel {
                name: "cfg",
                protocol: Protocol::Blob,
                role: Role::Writer,
                shm_id: "cfg",
                guest_addr: 0x7fe0_1000,
                size: 0x2000,
                index: 0,
                writers: 1,
                readers: 2,
                slot_size: None,
                value_size: None,
                peers: &[
                    Peer {
                        domain: "b",
                        domid: 2,
                        role: Role::Reader,
                        local_port: 12,
                        remote_port: 13,
                    },
                    Peer {
                        domain: "c",
                        domid: 3,
                        role: Role::Reader,
                        local_port: 14,
                        remote_port: 15,
                    },
                ],
            },
        ],
        regions: &[
            Region {
                shm_id: "q-shm",
                guest_addr: 0x7fe0_0000,
                size: 0x1000,
                host_addr: Some(0x8000_0000),
                role: Some(ShmRole::Owner),
                owner: "a",
                owner_domid: 1,
                channel: Some("q"),
            },
            Region {
                shm_id: "heap",
                guest_addr: 0x7ff0_0000,
                size: 0x1000,
                host_addr: None,
                role: Some(ShmRole::Borrower),
                owner: "c",
                owner_domid: 3,
                channel: None,
            },
        ],
        evtchns: &[
            Evtchn {
                local_port: 10,
                remote_domain: "b",
                remote_domid: 2,
                remote_port: 11,
                initially_pending: false,
                channel: Some("q"),
            },
            Evtchn {
                local_port: 30,
                remote_domain: "c",
                remote_domid: 3,
                remote_port: 31,
                initially_pending: true,
                channel: None,
            },
        ],
        virtio: &[Virtio {
            name: "disk",
            device: "blk",
            device_id: 2,
            role: VirtioRole::Frontend,
            queues: 1,
            queue_size: 16,
            shm_id: "virtio-disk",
            guest_addr: 0x7fd0_0000,
            size: 0x2_0000,
            peer: "c",
            peer_domid: 3,
            local_port: 30,
            remote_port: 31,
            serve: VirtioServe::Builtin,
        }],
    };

    // The lookups work at compile time.
    const Q_PORT: u32 = match M.channel("q") {
        Some(c) => match c.peer("b") {
            Some(p) => p.local_port,
            None => panic!("no peer b"),
        },
        None => panic!("no channel q"),
    };

    #[test]
    fn channel_lookup() {
        assert_eq!(Q_PORT, 10);
        let q = M.channel("q").unwrap();
        assert_eq!(q.protocol, Protocol::Queue);
        assert_eq!(q.shm_id, "q-shm");
        assert_eq!(M.channel("cfg").unwrap().readers, 2);
        assert!(M.channel("Q").is_none());
        assert!(M.channel("").is_none());
        assert!(M.channel("cf").is_none());
        assert!(M.channel("cfgx").is_none());
    }

    #[test]
    fn peer_lookup() {
        let cfg = M.channel("cfg").unwrap();
        assert_eq!(cfg.peer("c").unwrap().local_port, 14);
        assert_eq!(cfg.peer("b").unwrap().remote_port, 13);
        assert!(cfg.peer("a").is_none());
        assert_eq!(cfg.peer_by_domid(3).unwrap().domain, "c");
        assert!(cfg.peer_by_domid(1).is_none());
        assert!(cfg.sole_peer().is_none());
        let q = M.channel("q").unwrap();
        assert_eq!(q.sole_peer().unwrap().domain, "b");
        assert_eq!(q.sole_peer().unwrap().role, Role::Consumer);
    }

    #[test]
    fn region_lookup() {
        let r = M.region("q-shm").unwrap();
        assert_eq!(r.host_addr, Some(0x8000_0000));
        assert_eq!(r.channel, Some("q"));
        let h = M.region("heap").unwrap();
        assert_eq!(h.host_addr, None);
        assert_eq!(h.role, Some(ShmRole::Borrower));
        assert!(M.region("q").is_none());
    }

    #[test]
    fn evtchn_lookup() {
        let e = M.evtchn(30).unwrap();
        assert_eq!(e.remote_domain, "c");
        assert!(e.initially_pending);
        assert_eq!(M.evtchn(10).unwrap().channel, Some("q"));
        assert!(M.evtchn(11).is_none());
        assert!(M.evtchn(0).is_none());
    }

    // Device lookups work at compile time too.
    const DISK_PORT: u32 = match M.virtio_device("disk") {
        Some(d) => d.local_port,
        None => panic!("no device disk"),
    };

    #[test]
    fn virtio_lookup() {
        assert_eq!(DISK_PORT, 30);
        let d = M.virtio_device("disk").unwrap();
        assert_eq!(
            (d.device, d.device_id, d.role),
            ("blk", 2, VirtioRole::Frontend)
        );
        assert_eq!(d.serve, VirtioServe::Builtin);
        assert!(M.virtio_device("dis").is_none());
        assert!(
            M.virtio_device("q").is_none(),
            "a channel is no virtio device"
        );
        assert_eq!(VirtioRole::Backend.as_str(), "backend");
    }

    #[test]
    fn empty_manifest() {
        const E: Manifest = Manifest {
            format_version: FORMAT_VERSION,
            system: "s",
            xen: "4.17",
            domain: "d",
            domid: 0,
            channels: &[],
            regions: &[],
            evtchns: &[],
            virtio: &[],
        };
        assert!(E.is_supported());
        assert!(E.channel("q").is_none());
        assert!(E.region("q").is_none());
        assert!(E.evtchn(1).is_none());
        assert!(E.virtio_device("disk").is_none());
    }

    #[test]
    fn names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.as_str()), Some(p));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Protocol::parse("Queue"), None);
        assert_eq!(Role::parse(""), None);
        assert_eq!(Protocol::Blob.roles(), (Role::Writer, Role::Reader));
        assert!(Role::Producer.is_writer() && !Role::Reader.is_writer());
        assert_eq!(ShmRole::Borrower.as_str(), "borrower");
    }

    // The ids are usable in constants.
    const QUEUE_ID: u32 = Protocol::Queue.id();
    const FROM_4: Option<Protocol> = Protocol::from_id(4);

    #[test]
    fn protocol_ids_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_id(p.id()), Some(p), "{p}");
        }
        // The region header's numbering (on the wire).
        let ids: [u32; 4] = Protocol::ALL.map(Protocol::id);
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(QUEUE_ID, 1);
        assert_eq!(FROM_4, Some(Protocol::Blob));
        assert_eq!(Protocol::from_id(0), None);
        assert_eq!(Protocol::from_id(5), None);
        assert_eq!(Protocol::from_id(u32::MAX), None);
    }
}
