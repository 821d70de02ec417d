//! Per-domain manifests: every channel, shared region and static event-channel port a
//! domain has, derived from the [`System`]. Both ends of every channel come from the same
//! model, so they cannot disagree. [`crate::emit`] writes a manifest as JSON, Rust, C and a
//! device-tree fragment.

use crate::model::*;
use serde::Serialize;
use staticbus_abi::domid::DOMID_IO;

/// Format name written into every manifest.
pub const FORMAT: &str = "staticbus-manifest";
/// Manifest layout version.
pub const VERSION: u32 = 1;

/// Everything one domain needs to know about its static communication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainManifest {
    /// Always [`FORMAT`].
    pub format: &'static str,
    /// Always [`VERSION`].
    pub version: u32,
    /// System name.
    pub system: String,
    /// Target Xen version.
    pub xen: String,
    /// Domain name.
    pub domain: String,
    /// Domain id Xen gives the domain.
    pub domid: u16,
    /// High-level channels the domain is a member of.
    pub channels: Vec<ChannelEntry>,
    /// Every shared region mapped into the domain.
    pub regions: Vec<RegionEntry>,
    /// Every static event-channel port the domain owns.
    pub evtchns: Vec<EvtchnEntry>,
}

/// A channel as one member sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelEntry {
    /// Channel name.
    pub name: String,
    /// Protocol (`queue`, `log`, `latest`, `blob`).
    pub protocol: &'static str,
    /// This domain's role (`producer`/`consumer` for queues, `writer`/`reader` otherwise).
    pub role: &'static str,
    /// shm id of the channel's region.
    pub shm_id: String,
    /// Guest-physical address of the region in this domain.
    pub guest_addr: u64,
    /// Region size in bytes.
    pub size: u64,
    /// Index of this domain among the channel's writers (or readers), e.g. the slot of a
    /// `latest` writer.
    pub index: u32,
    /// Number of writers.
    pub writers: u32,
    /// Number of readers.
    pub readers: u32,
    /// The peers this domain signals, one per event channel.
    pub peers: Vec<PeerEntry>,
}

/// One event channel of a channel, seen from one end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerEntry {
    /// Peer domain name.
    pub domain: String,
    /// Peer domid.
    pub domid: u16,
    /// Peer's role in the channel.
    pub role: &'static str,
    /// Local port (use it with `EVTCHNOP_send`).
    pub local_port: u32,
    /// Peer's port.
    pub remote_port: u32,
}

/// A shared region mapped into the domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionEntry {
    /// `xen,shm-id`.
    pub shm_id: String,
    /// Guest-physical address in this domain.
    pub guest_addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host-physical address (`None`: allocated by Xen from its heap).
    pub host_addr: Option<u64>,
    /// This domain's role: `owner`, `borrower`, or `none` (the region is owned by DOMID_IO).
    pub role: &'static str,
    /// Owner: a domain name, or `DOMID_IO`.
    pub owner: String,
    /// Owner domid (0x7FF1 for DOMID_IO).
    pub owner_domid: u16,
    /// The channel carried by the region, if any.
    pub channel: Option<String>,
}

/// A static event-channel port owned by the domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvtchnEntry {
    /// Local port.
    pub local_port: u32,
    /// Peer domain.
    pub remote_domain: String,
    /// Peer domid.
    pub remote_domid: u16,
    /// Peer port.
    pub remote_port: u32,
    /// True if Xen binds this end second: the port is already pending when the domain
    /// starts (a protocol must clear it and handshake first).
    pub initially_pending: bool,
    /// The channel the port belongs to, if any.
    pub channel: Option<String>,
}

/// Builds the manifest of every domain, in domain order.
pub fn manifests(sys: &System) -> Vec<DomainManifest> {
    let owners = owners(sys);
    (0..sys.domains.len())
        .map(|d| manifest_with(sys, d, &owners))
        .collect()
}

/// Builds the manifest of one domain.
pub fn manifest(sys: &System, d: DomIdx) -> DomainManifest {
    manifest_with(sys, d, &owners(sys))
}

/// shm id → owning domain.
fn owners(sys: &System) -> std::collections::HashMap<&str, DomIdx> {
    let mut map = std::collections::HashMap::new();
    for n in sys.shm.iter().filter(|n| n.role == Some(ShmRole::Owner)) {
        // The first owner in DT order is the one Xen assigns the pages to.
        map.entry(n.id.as_str()).or_insert(n.domain);
    }
    map
}

fn manifest_with(
    sys: &System,
    d: DomIdx,
    owners: &std::collections::HashMap<&str, DomIdx>,
) -> DomainManifest {
    let dom = &sys.domains[d];
    let chan_name = |c: Option<usize>| c.map(|i| sys.channels[i].name.clone());
    let mut channels = Vec::new();
    for ch in &sys.channels {
        let (wrole, rrole) = ch.protocol.roles();
        let (role, index, peer_role) = if let Some(i) = ch.writers.iter().position(|&w| w == d) {
            (wrole, i, rrole)
        } else if let Some(i) = ch.readers.iter().position(|&r| r == d) {
            (rrole, i, wrole)
        } else {
            continue;
        };
        let Some(node) = ch.shm.iter().map(|&i| &sys.shm[i]).find(|n| n.domain == d) else {
            continue;
        };
        let peers = ch
            .evtchns
            .iter()
            .map(|&i| &sys.evtchns[i])
            .filter_map(|p| {
                let (me, other) = if p.first.domain == d {
                    (&p.first, &p.second)
                } else if p.second.domain == d {
                    (&p.second, &p.first)
                } else {
                    return None;
                };
                let od = &sys.domains[other.domain];
                Some(PeerEntry {
                    domain: od.name.clone(),
                    domid: od.domid,
                    role: peer_role,
                    local_port: me.port,
                    remote_port: other.port,
                })
            })
            .collect();
        channels.push(ChannelEntry {
            name: ch.name.clone(),
            protocol: ch.protocol.as_str(),
            role,
            shm_id: ch.shm_id.clone(),
            guest_addr: node.guest,
            size: ch.size,
            index: index as u32,
            writers: ch.writers.len() as u32,
            readers: ch.readers.len() as u32,
            peers,
        });
    }
    let regions = sys
        .shm
        .iter()
        .filter(|n| n.domain == d)
        .map(|n| {
            let owner = owners.get(n.id.as_str()).map(|&o| &sys.domains[o]);
            RegionEntry {
                shm_id: n.id.clone(),
                guest_addr: n.guest,
                size: n.size,
                host_addr: n.host,
                role: n.role.map(ShmRole::as_str).unwrap_or("none"),
                owner: owner
                    .map(|o| o.name.clone())
                    .unwrap_or_else(|| "DOMID_IO".into()),
                owner_domid: owner.map(|o| o.domid).unwrap_or(DOMID_IO),
                channel: chan_name(n.channel),
            }
        })
        .collect();
    let mut evtchns = Vec::new();
    for p in &sys.evtchns {
        for (me, other, pending) in [(&p.first, &p.second, false), (&p.second, &p.first, true)] {
            if me.domain == d {
                let od = &sys.domains[other.domain];
                evtchns.push(EvtchnEntry {
                    local_port: me.port,
                    remote_domain: od.name.clone(),
                    remote_domid: od.domid,
                    remote_port: other.port,
                    initially_pending: pending,
                    channel: chan_name(p.channel),
                });
            }
        }
    }
    DomainManifest {
        format: FORMAT,
        version: VERSION,
        system: sys.name.clone(),
        xen: sys.target.xen.as_str().to_string(),
        domain: dom.name.clone(),
        domid: dom.domid,
        channels,
        regions,
        evtchns,
    }
}
