//! The owned form of the manifest (feature `alloc`): the same fields as the borrowed,
//! `const`-constructible types of the crate root, with `String`s and `Vec`s, for the
//! compiler that builds manifests and for processes that read one at run time.
//!
//! With feature `serde` the owned types are (de)serialisable; their JSON is the
//! `manifest.json` that `staticbus build` writes:
//!
//! ```json
//! { "format": "staticbus-manifest", "version": 1, "system": "…", "xen": "4.20", … }
//! ```
//!
//! The borrowed and the owned form are one schema: [`Manifest::leak`] and
//! [`Manifest::from_static`] convert field by field with exhaustive destructuring, so a field
//! added to one form and not the other does not compile.

use crate::{Protocol, Role, ShmRole, VirtioRole};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// The value of the `format` field of a JSON manifest.
pub const FORMAT: &str = "staticbus-manifest";

/// Everything one domain knows about its static communication (owned form of
/// [`crate::Manifest`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
// (serde cannot deny unknown fields next to an internal tag; the inner types do.)
#[cfg_attr(
    feature = "serde",
    serde(tag = "format", rename = "staticbus-manifest")
)]
pub struct Manifest {
    /// Manifest layout version ([`crate::FORMAT_VERSION`]); `version` in JSON.
    #[cfg_attr(feature = "serde", serde(rename = "version"))]
    pub format_version: u32,
    /// System name.
    pub system: String,
    /// Target Xen version (`"4.17"` … `"4.20"`).
    pub xen: String,
    /// This domain's name.
    pub domain: String,
    /// This domain's id.
    pub domid: u16,
    /// The channels the domain is a member of.
    pub channels: Vec<Channel>,
    /// Every shared region mapped into the domain, channel regions included.
    pub regions: Vec<Region>,
    /// Every static event-channel port the domain owns, channel ports included.
    pub evtchns: Vec<Evtchn>,
    /// The virtio devices the domain drives or serves (absent in JSON: none).
    #[cfg_attr(feature = "serde", serde(default))]
    pub virtio: Vec<Virtio>,
}

/// A channel as this domain sees it (owned form of [`crate::Channel`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Channel {
    /// Channel name (unique in the system).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// This domain's role.
    pub role: Role,
    /// `xen,shm-id` of the channel's region.
    pub shm_id: String,
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
    /// A log's slot size in bytes (`None` for the other protocols).
    pub slot_size: Option<u32>,
    /// A latest channel's value size in bytes (`None` for the other protocols).
    pub value_size: Option<u32>,
    /// The peers this domain signals, one per event channel.
    pub peers: Vec<Peer>,
}

/// One event channel of a channel, seen from this end (owned form of [`crate::Peer`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Peer {
    /// Peer domain name.
    pub domain: String,
    /// Peer domain id.
    pub domid: u16,
    /// The peer's role in the channel.
    pub role: Role,
    /// This domain's port (the one to pass to `EVTCHNOP_send`).
    pub local_port: u32,
    /// The peer's port.
    pub remote_port: u32,
}

/// A shared region mapped into this domain (owned form of [`crate::Region`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Region {
    /// `xen,shm-id`.
    pub shm_id: String,
    /// Guest-physical address in this domain.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host-physical address (`None`: allocated by Xen from its heap).
    pub host_addr: Option<u64>,
    /// This domain's role (`None`, `"none"` in JSON: the region belongs to `DOMID_IO`).
    #[cfg_attr(feature = "serde", serde(with = "role_or_none"))]
    pub role: Option<ShmRole>,
    /// Owner: a domain name, or `"DOMID_IO"`.
    pub owner: String,
    /// Owner domain id ([`crate::DOMID_IO`] if no domain owns the region).
    pub owner_domid: u16,
    /// The channel carried by the region, if any.
    pub channel: Option<String>,
}

/// A static event-channel port owned by this domain (owned form of [`crate::Evtchn`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Evtchn {
    /// Local port.
    pub local_port: u32,
    /// Peer domain name.
    pub remote_domain: String,
    /// Peer domain id.
    pub remote_domid: u16,
    /// Peer port.
    pub remote_port: u32,
    /// True if Xen binds this end second: the port is already pending when the domain
    /// starts, so a protocol must clear it and handshake first.
    pub initially_pending: bool,
    /// The channel the port belongs to, if any.
    pub channel: Option<String>,
}

/// How the backend serves a virtio device (owned form of [`crate::VirtioServe`]); in JSON
/// `"builtin"` or `{ "vhost-user": { "program": …, "args": [ … ] } }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum VirtioServe {
    /// staticbus's own `no_std` device side.
    Builtin,
    /// A vhost-user daemon driven by the bridge.
    VhostUser {
        /// The daemon's program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// A virtio device as this domain sees it (owned form of [`crate::Virtio`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Virtio {
    /// Device name.
    pub name: String,
    /// Device type name (`"blk"`, …).
    pub device: String,
    /// Virtio device id.
    pub device_id: u32,
    /// This domain's side.
    pub role: VirtioRole,
    /// Number of virtqueues.
    pub queues: u16,
    /// Entries per virtqueue.
    pub queue_size: u32,
    /// `xen,shm-id` of the device's region.
    pub shm_id: String,
    /// Guest-physical address of the region in this domain.
    pub guest_addr: u64,
    /// Region size in bytes.
    pub size: u64,
    /// The other side's domain name.
    pub peer: String,
    /// The other side's domain id.
    pub peer_domid: u16,
    /// This domain's port of the device's event channel.
    pub local_port: u32,
    /// The other side's port.
    pub remote_port: u32,
    /// How the backend serves the device.
    pub serve: VirtioServe,
}

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

impl Manifest {
    /// The borrowed form, leaked: for a process that reads its manifest once and keeps it
    /// for its whole life (the guests of `staticbus run`).
    pub fn leak(self) -> &'static crate::Manifest {
        let Manifest {
            format_version,
            system,
            xen,
            domain,
            domid,
            channels,
            regions,
            evtchns,
            virtio,
        } = self;
        Box::leak(Box::new(crate::Manifest {
            format_version,
            system: leak_str(system),
            xen: leak_str(xen),
            domain: leak_str(domain),
            domid,
            channels: leak_slice(channels.into_iter().map(Channel::leak).collect()),
            regions: leak_slice(regions.into_iter().map(Region::leak).collect()),
            evtchns: leak_slice(evtchns.into_iter().map(Evtchn::leak).collect()),
            virtio: leak_slice(virtio.into_iter().map(Virtio::leak).collect()),
        }))
    }

    /// The owned form of a borrowed manifest.
    pub fn from_static(m: &crate::Manifest) -> Manifest {
        let crate::Manifest {
            format_version,
            system,
            xen,
            domain,
            domid,
            channels,
            regions,
            evtchns,
            virtio,
        } = *m;
        Manifest {
            format_version,
            system: system.to_string(),
            xen: xen.to_string(),
            domain: domain.to_string(),
            domid,
            channels: channels.iter().map(Channel::from_static).collect(),
            regions: regions.iter().map(Region::from_static).collect(),
            evtchns: evtchns.iter().map(Evtchn::from_static).collect(),
            virtio: virtio.iter().map(Virtio::from_static).collect(),
        }
    }
}

impl Channel {
    fn leak(self) -> crate::Channel {
        let Channel {
            name,
            protocol,
            role,
            shm_id,
            guest_addr,
            size,
            index,
            writers,
            readers,
            slot_size,
            value_size,
            peers,
        } = self;
        crate::Channel {
            name: leak_str(name),
            protocol,
            role,
            shm_id: leak_str(shm_id),
            guest_addr,
            size,
            index,
            writers,
            readers,
            slot_size,
            value_size,
            peers: leak_slice(peers.into_iter().map(Peer::leak).collect()),
        }
    }

    fn from_static(c: &crate::Channel) -> Channel {
        let crate::Channel {
            name,
            protocol,
            role,
            shm_id,
            guest_addr,
            size,
            index,
            writers,
            readers,
            slot_size,
            value_size,
            peers,
        } = *c;
        Channel {
            name: name.to_string(),
            protocol,
            role,
            shm_id: shm_id.to_string(),
            guest_addr,
            size,
            index,
            writers,
            readers,
            slot_size,
            value_size,
            peers: peers.iter().map(Peer::from_static).collect(),
        }
    }
}

impl Peer {
    fn leak(self) -> crate::Peer {
        let Peer {
            domain,
            domid,
            role,
            local_port,
            remote_port,
        } = self;
        crate::Peer {
            domain: leak_str(domain),
            domid,
            role,
            local_port,
            remote_port,
        }
    }

    fn from_static(p: &crate::Peer) -> Peer {
        let crate::Peer {
            domain,
            domid,
            role,
            local_port,
            remote_port,
        } = *p;
        Peer {
            domain: domain.to_string(),
            domid,
            role,
            local_port,
            remote_port,
        }
    }
}

impl Region {
    fn leak(self) -> crate::Region {
        let Region {
            shm_id,
            guest_addr,
            size,
            host_addr,
            role,
            owner,
            owner_domid,
            channel,
        } = self;
        crate::Region {
            shm_id: leak_str(shm_id),
            guest_addr,
            size,
            host_addr,
            role,
            owner: leak_str(owner),
            owner_domid,
            channel: channel.map(leak_str),
        }
    }

    fn from_static(r: &crate::Region) -> Region {
        let crate::Region {
            shm_id,
            guest_addr,
            size,
            host_addr,
            role,
            owner,
            owner_domid,
            channel,
        } = *r;
        Region {
            shm_id: shm_id.to_string(),
            guest_addr,
            size,
            host_addr,
            role,
            owner: owner.to_string(),
            owner_domid,
            channel: channel.map(str::to_string),
        }
    }
}

impl Evtchn {
    fn leak(self) -> crate::Evtchn {
        let Evtchn {
            local_port,
            remote_domain,
            remote_domid,
            remote_port,
            initially_pending,
            channel,
        } = self;
        crate::Evtchn {
            local_port,
            remote_domain: leak_str(remote_domain),
            remote_domid,
            remote_port,
            initially_pending,
            channel: channel.map(leak_str),
        }
    }

    fn from_static(e: &crate::Evtchn) -> Evtchn {
        let crate::Evtchn {
            local_port,
            remote_domain,
            remote_domid,
            remote_port,
            initially_pending,
            channel,
        } = *e;
        Evtchn {
            local_port,
            remote_domain: remote_domain.to_string(),
            remote_domid,
            remote_port,
            initially_pending,
            channel: channel.map(str::to_string),
        }
    }
}

impl VirtioServe {
    fn leak(self) -> crate::VirtioServe {
        match self {
            VirtioServe::Builtin => crate::VirtioServe::Builtin,
            VirtioServe::VhostUser { program, args } => crate::VirtioServe::VhostUser {
                program: leak_str(program),
                args: leak_slice(args.into_iter().map(leak_str).collect()),
            },
        }
    }

    fn from_static(s: &crate::VirtioServe) -> VirtioServe {
        match *s {
            crate::VirtioServe::Builtin => VirtioServe::Builtin,
            crate::VirtioServe::VhostUser { program, args } => VirtioServe::VhostUser {
                program: program.to_string(),
                args: args.iter().map(|a| a.to_string()).collect(),
            },
        }
    }
}

impl Virtio {
    fn leak(self) -> crate::Virtio {
        let Virtio {
            name,
            device,
            device_id,
            role,
            queues,
            queue_size,
            shm_id,
            guest_addr,
            size,
            peer,
            peer_domid,
            local_port,
            remote_port,
            serve,
        } = self;
        crate::Virtio {
            name: leak_str(name),
            device: leak_str(device),
            device_id,
            role,
            queues,
            queue_size,
            shm_id: leak_str(shm_id),
            guest_addr,
            size,
            peer: leak_str(peer),
            peer_domid,
            local_port,
            remote_port,
            serve: serve.leak(),
        }
    }

    fn from_static(v: &crate::Virtio) -> Virtio {
        let crate::Virtio {
            name,
            device,
            device_id,
            role,
            queues,
            queue_size,
            shm_id,
            guest_addr,
            size,
            peer,
            peer_domid,
            local_port,
            remote_port,
            serve,
        } = *v;
        Virtio {
            name: name.to_string(),
            device: device.to_string(),
            device_id,
            role,
            queues,
            queue_size,
            shm_id: shm_id.to_string(),
            guest_addr,
            size,
            peer: peer.to_string(),
            peer_domid,
            local_port,
            remote_port,
            serve: VirtioServe::from_static(&serve),
        }
    }
}

/// `Option<ShmRole>` as `"owner"`, `"borrower"` or `"none"`.
#[cfg(feature = "serde")]
mod role_or_none {
    use crate::ShmRole;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Option<ShmRole>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ShmRole::name_of(*r))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ShmRole>, D::Error> {
        let s = alloc::string::String::deserialize(d)?;
        match s.as_str() {
            "owner" => Ok(Some(ShmRole::Owner)),
            "borrower" => Ok(Some(ShmRole::Borrower)),
            "none" => Ok(None),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["owner", "borrower", "none"],
            )),
        }
    }
}
