//! The C manifest (`struct sb_manifest` of the header `staticbus build` writes,
//! crates/config/src/emit/c.rs) read into a `staticbus_manifest::Manifest`.
//!
//! The C types are defined by the generated manifest header, not by `staticbus.h`
//! (cbindgen is told not to emit them): these `repr(C)` structs only read them, and
//! crates/cli/tests/capi.rs checks them against the emitted header with a C compiler.
//! The conversion copies into fixed tables ([`Tables`]) inside the domain's storage;
//! strings are borrowed from the C manifest, which must stay valid and unchanged for the
//! program's life (the header's tables are `static const`).

use crate::status::*;
use core::ffi::{c_char, CStr};
use staticbus_manifest::{
    self as m, Channel, Evtchn, Manifest, Peer, Protocol, Region, Role, ShmRole,
};

/// Most channels a C manifest may have.
pub const SB_MAX_CHANNELS: usize = 32;
/// Most channel peers a C manifest may have, over all its channels.
pub const SB_MAX_PEERS: usize = 128;
/// Most shared regions a C manifest may have.
pub const SB_MAX_REGIONS: usize = 32;
/// Most static event channels a C manifest may have.
pub const SB_MAX_EVTCHNS: usize = 128;

/// `struct sb_peer` of the manifest header.
#[repr(C)]
#[derive(Debug)]
pub struct sb_peer {
    /// Peer domain name.
    pub domain: *const c_char,
    /// Peer domain id.
    pub domid: u16,
    /// `SB_ROLE_*`.
    pub role: u32,
    /// This domain's port.
    pub local_port: u32,
    /// The peer's port.
    pub remote_port: u32,
}

/// `struct sb_channel` of the manifest header.
#[repr(C)]
#[derive(Debug)]
pub struct sb_channel {
    /// Channel name.
    pub name: *const c_char,
    /// `SB_PROTOCOL_*`.
    pub protocol: u32,
    /// `SB_ROLE_*`.
    pub role: u32,
    /// The region's `xen,shm-id`.
    pub shm_id: *const c_char,
    /// Guest address of the region.
    pub guest_addr: u64,
    /// Region size.
    pub size: u64,
    /// Index among the writers (or readers).
    pub index: u32,
    /// Writers.
    pub writers: u32,
    /// Readers.
    pub readers: u32,
    /// A log's slot size (0 for other protocols).
    pub slot_size: u32,
    /// A latest channel's value size (0 for other protocols).
    pub value_size: u32,
    /// Entries of `peers`.
    pub peer_count: u32,
    /// The peers.
    pub peers: *const sb_peer,
}

/// `struct sb_region` of the manifest header.
#[repr(C)]
#[derive(Debug)]
pub struct sb_region {
    /// `xen,shm-id`.
    pub shm_id: *const c_char,
    /// Guest address.
    pub guest_addr: u64,
    /// Size.
    pub size: u64,
    /// 0: allocated by Xen.
    pub has_host_addr: u8,
    /// Host address (if `has_host_addr`).
    pub host_addr: u64,
    /// `SB_SHM_ROLE_*`.
    pub role: u32,
    /// Owner domain name or `"DOMID_IO"`.
    pub owner: *const c_char,
    /// Owner domid.
    pub owner_domid: u16,
    /// The channel it carries, or null.
    pub channel: *const c_char,
}

/// `struct sb_evtchn` of the manifest header.
#[repr(C)]
#[derive(Debug)]
pub struct sb_evtchn {
    /// Local port.
    pub local_port: u32,
    /// Remote domain name.
    pub remote_domain: *const c_char,
    /// Remote domid.
    pub remote_domid: u16,
    /// Remote port.
    pub remote_port: u32,
    /// 1 if Xen binds this end second (it starts pending).
    pub initially_pending: u8,
    /// The channel it belongs to, or null.
    pub channel: *const c_char,
}

/// `struct sb_manifest` of the manifest header.
#[repr(C)]
#[derive(Debug)]
pub struct sb_manifest {
    /// Manifest format version.
    pub format_version: u32,
    /// System name.
    pub system: *const c_char,
    /// Xen version.
    pub xen: *const c_char,
    /// This domain.
    pub domain: *const c_char,
    /// This domain's id.
    pub domid: u16,
    /// Entries of `channels`.
    pub channel_count: u32,
    /// Channels.
    pub channels: *const sb_channel,
    /// Entries of `regions`.
    pub region_count: u32,
    /// Regions.
    pub regions: *const sb_region,
    /// Entries of `evtchns`.
    pub evtchn_count: u32,
    /// Event channels.
    pub evtchns: *const sb_evtchn,
}

/// The role numbers of the C manifest (`SB_ROLE_*`): the order of [`Role::ALL`].
pub(crate) fn role_number(r: Role) -> u32 {
    Role::ALL.iter().position(|x| *x == r).unwrap_or(0) as u32
}

fn role(n: u32) -> Result<Role, sb_status> {
    Role::ALL
        .get(n as usize)
        .copied()
        .ok_or(SB_ERR_BAD_MANIFEST)
}

const EMPTY_PEER: Peer = Peer {
    domain: "",
    domid: 0,
    role: Role::Producer,
    local_port: 0,
    remote_port: 0,
};

const EMPTY_CHANNEL: Channel = Channel {
    name: "",
    protocol: Protocol::Queue,
    role: Role::Producer,
    shm_id: "",
    guest_addr: 0,
    size: 0,
    index: 0,
    writers: 0,
    readers: 0,
    slot_size: None,
    value_size: None,
    peers: &[],
};

const EMPTY_REGION: Region = Region {
    shm_id: "",
    guest_addr: 0,
    size: 0,
    host_addr: None,
    role: None,
    owner: "",
    owner_domid: 0,
    channel: None,
};

const EMPTY_EVTCHN: Evtchn = Evtchn {
    local_port: 0,
    remote_domain: "",
    remote_domid: 0,
    remote_port: 0,
    initially_pending: false,
    channel: None,
};

/// The fixed tables a C manifest is copied into.
pub(crate) struct Tables {
    channels: [Channel; SB_MAX_CHANNELS],
    peers: [Peer; SB_MAX_PEERS],
    regions: [Region; SB_MAX_REGIONS],
    evtchns: [Evtchn; SB_MAX_EVTCHNS],
}

impl Tables {
    pub(crate) const EMPTY: Tables = Tables {
        channels: [EMPTY_CHANNEL; SB_MAX_CHANNELS],
        peers: [EMPTY_PEER; SB_MAX_PEERS],
        regions: [EMPTY_REGION; SB_MAX_REGIONS],
        evtchns: [EMPTY_EVTCHN; SB_MAX_EVTCHNS],
    };
}

/// A `'static` string from a C string.
///
/// # Safety
///
/// `p` is null or points to a NUL-terminated string valid and unchanged for the rest of
/// the program.
unsafe fn text(p: *const c_char) -> Result<&'static str, sb_status> {
    if p.is_null() {
        return Err(SB_ERR_BAD_MANIFEST);
    }
    // SAFETY: the caller guarantees a NUL-terminated string that lives forever.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| SB_ERR_BAD_MANIFEST)
}

/// [`text`], null allowed (`None`).
///
/// # Safety
///
/// As for [`text`].
unsafe fn opt_text(p: *const c_char) -> Result<Option<&'static str>, sb_status> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded.
        unsafe { text(p) }.map(Some)
    }
}

/// The entries of a C table.
///
/// # Safety
///
/// `p` points to `n` valid entries that live forever (or `n` is 0).
unsafe fn table<T>(p: *const T, n: u32, max: usize) -> Result<&'static [T], sb_status> {
    let n = n as usize;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(SB_ERR_BAD_MANIFEST);
    }
    if n > max {
        return Err(SB_ERR_MANIFEST_TOO_LARGE);
    }
    if !p.is_aligned() {
        return Err(SB_ERR_BAD_MANIFEST);
    }
    // SAFETY: the caller guarantees `n` entries at `p` (non-null, aligned: checked).
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// Reads the C manifest `c` into `t` and returns the manifest borrowing `t`.
///
/// # Safety
///
/// `c` points to a manifest whose tables and strings are valid and unchanged for the
/// rest of the program (the `static const` tables of a generated header are).
pub(crate) unsafe fn read(
    c: *const sb_manifest,
    t: &'static mut Tables,
) -> Result<Manifest, sb_status> {
    if c.is_null() || !c.is_aligned() {
        return Err(SB_ERR_INVALID);
    }
    // SAFETY: non-null, aligned, valid by the contract.
    let c = unsafe { &*c };
    if c.format_version != m::FORMAT_VERSION {
        return Err(SB_ERR_BAD_MANIFEST);
    }
    let Tables {
        channels,
        peers,
        regions,
        evtchns,
    } = t;
    // SAFETY: (every `table`, `text` and `opt_text` call below) the manifest's tables
    // and strings live forever and are as long as their counts say, by the contract.
    let c_chans = unsafe { table(c.channels, c.channel_count, SB_MAX_CHANNELS) }?;
    // SAFETY: see above.
    let c_regions = unsafe { table(c.regions, c.region_count, SB_MAX_REGIONS) }?;
    // SAFETY: see above.
    let c_evtchns = unsafe { table(c.evtchns, c.evtchn_count, SB_MAX_EVTCHNS) }?;

    // Every channel's peers, one after the other, in one table.
    let mut used = 0;
    for ch in c_chans {
        // SAFETY: see above.
        let c_peers = unsafe { table(ch.peers, ch.peer_count, SB_MAX_PEERS) }?;
        let end = used + c_peers.len();
        if end > SB_MAX_PEERS {
            return Err(SB_ERR_MANIFEST_TOO_LARGE);
        }
        for (d, p) in peers[used..end].iter_mut().zip(c_peers) {
            *d = Peer {
                // SAFETY: see above.
                domain: unsafe { text(p.domain) }?,
                domid: p.domid,
                role: role(p.role)?,
                local_port: p.local_port,
                remote_port: p.remote_port,
            };
        }
        used = end;
    }
    let peers: &'static [Peer] = peers;

    let mut at = 0;
    for (d, ch) in channels.iter_mut().zip(c_chans) {
        let n = ch.peer_count as usize;
        let protocol = Protocol::from_id(ch.protocol).ok_or(SB_ERR_BAD_MANIFEST)?;
        let param = |p: Protocol, v: u32| (protocol == p && v != 0).then_some(v);
        *d = Channel {
            // SAFETY: see above.
            name: unsafe { text(ch.name) }?,
            protocol,
            role: role(ch.role)?,
            // SAFETY: see above.
            shm_id: unsafe { text(ch.shm_id) }?,
            guest_addr: ch.guest_addr,
            size: ch.size,
            index: ch.index,
            writers: ch.writers,
            readers: ch.readers,
            slot_size: param(Protocol::Log, ch.slot_size),
            value_size: param(Protocol::Latest, ch.value_size),
            peers: &peers[at..at + n],
        };
        at += n;
    }
    for (d, r) in regions.iter_mut().zip(c_regions) {
        *d = Region {
            // SAFETY: see above.
            shm_id: unsafe { text(r.shm_id) }?,
            guest_addr: r.guest_addr,
            size: r.size,
            host_addr: (r.has_host_addr != 0).then_some(r.host_addr),
            role: match r.role {
                0 => None,
                1 => Some(ShmRole::Owner),
                2 => Some(ShmRole::Borrower),
                _ => return Err(SB_ERR_BAD_MANIFEST),
            },
            // SAFETY: see above.
            owner: unsafe { text(r.owner) }?,
            owner_domid: r.owner_domid,
            // SAFETY: see above.
            channel: unsafe { opt_text(r.channel) }?,
        };
    }
    for (d, e) in evtchns.iter_mut().zip(c_evtchns) {
        *d = Evtchn {
            local_port: e.local_port,
            // SAFETY: see above.
            remote_domain: unsafe { text(e.remote_domain) }?,
            remote_domid: e.remote_domid,
            remote_port: e.remote_port,
            initially_pending: e.initially_pending != 0,
            // SAFETY: see above.
            channel: unsafe { opt_text(e.channel) }?,
        };
    }
    let channels: &'static [Channel] = channels;
    let regions: &'static [Region] = regions;
    let evtchns: &'static [Evtchn] = evtchns;
    Ok(Manifest {
        format_version: c.format_version,
        // SAFETY: see above.
        system: unsafe { text(c.system) }?,
        // SAFETY: see above.
        xen: unsafe { text(c.xen) }?,
        // SAFETY: see above.
        domain: unsafe { text(c.domain) }?,
        domid: c.domid,
        channels: &channels[..c_chans.len()],
        regions: &regions[..c_regions.len()],
        evtchns: &evtchns[..c_evtchns.len()],
        // `struct sb_manifest` has no virtio table: C guests get their devices as the
        // `SB_VIRTIO_*` macros of the generated header.
        virtio: &[],
    })
}
