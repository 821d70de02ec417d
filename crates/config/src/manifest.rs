//! Per-domain manifests: every channel, shared region and static event-channel port a
//! domain has, derived from the [`System`]. Both ends of every channel come from the same
//! model, so they cannot disagree. [`crate::emit`] writes a manifest as JSON, Rust, C and a
//! device-tree fragment.

use crate::model::*;
use serde::Serialize;
use staticbus_abi::domid::DOMID_IO;
use std::collections::HashMap;

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
    let index = Index::new(sys);
    (0..sys.domains.len())
        .map(|d| index.manifest(sys, d))
        .collect()
}

/// Builds the manifest of one domain.
pub fn manifest(sys: &System, d: DomIdx) -> DomainManifest {
    Index::new(sys).manifest(sys, d)
}

/// What each domain takes part in, gathered in one pass over the system so that building
/// every manifest costs time linear in the size of the system (not domains × channels).
/// Build it once with [`Index::new`], then [`Index::manifest`] for each domain (possibly
/// from several threads).
pub(crate) struct Index<'a> {
    /// shm id → owning domain.
    owners: HashMap<&'a str, DomIdx>,
    /// Per domain: the channels it is a writer or reader of, in channel order.
    channels: Vec<Vec<usize>>,
    /// Per domain: its shm nodes, in [`System::shm`] order.
    shm: Vec<Vec<usize>>,
    /// Per domain: its event-channel ends as (pair index, is the second end), in pair
    /// order, the first end before the second.
    evtchns: Vec<Vec<(usize, bool)>>,
}

impl<'a> Index<'a> {
    /// Indexes `sys`. Out-of-range domain indices (only in a broken model) are ignored
    /// here, as the per-domain scans this replaces ignored them.
    pub(crate) fn new(sys: &'a System) -> Index<'a> {
        let n = sys.domains.len();
        let mut owners = HashMap::new();
        for s in sys.shm.iter().filter(|s| s.role == Some(ShmRole::Owner)) {
            // The first owner in DT order is the one Xen assigns the pages to.
            owners.entry(s.id.as_str()).or_insert(s.domain);
        }
        let mut channels: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (c, ch) in sys.channels.iter().enumerate() {
            for &m in ch.writers.iter().chain(&ch.readers) {
                if let Some(list) = channels.get_mut(m) {
                    // A domain both writer and reader (or listed twice) appears once.
                    if list.last() != Some(&c) {
                        list.push(c);
                    }
                }
            }
        }
        let mut shm: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, s) in sys.shm.iter().enumerate() {
            if let Some(list) = shm.get_mut(s.domain) {
                list.push(i);
            }
        }
        let mut evtchns: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
        for (i, p) in sys.evtchns.iter().enumerate() {
            for (e, second) in [(&p.first, false), (&p.second, true)] {
                if let Some(list) = evtchns.get_mut(e.domain) {
                    list.push((i, second));
                }
            }
        }
        Index {
            owners,
            channels,
            shm,
            evtchns,
        }
    }

    /// The manifest of domain `d` of the system this index was built from.
    pub(crate) fn manifest(&self, sys: &System, d: DomIdx) -> DomainManifest {
        manifest_with(sys, d, self)
    }
}

fn manifest_with(sys: &System, d: DomIdx, ix: &Index<'_>) -> DomainManifest {
    let dom = &sys.domains[d];
    let chan_name = |c: Option<usize>| c.map(|i| sys.channels[i].name.clone());
    let mut channels = Vec::with_capacity(ix.channels[d].len());
    for &c in &ix.channels[d] {
        let ch = &sys.channels[c];
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
                    role: peer_role.as_str(),
                    local_port: me.port,
                    remote_port: other.port,
                })
            })
            .collect();
        channels.push(ChannelEntry {
            name: ch.name.clone(),
            protocol: ch.protocol.as_str(),
            role: role.as_str(),
            shm_id: ch.shm_id.clone(),
            guest_addr: node.guest,
            size: ch.size,
            index: index as u32,
            writers: ch.writers.len() as u32,
            readers: ch.readers.len() as u32,
            peers,
        });
    }
    let regions = ix.shm[d]
        .iter()
        .map(|&i| {
            let n = &sys.shm[i];
            let owner = ix.owners.get(n.id.as_str()).map(|&o| &sys.domains[o]);
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
    let evtchns = ix.evtchns[d]
        .iter()
        .map(|&(i, second)| {
            let p = &sys.evtchns[i];
            let (me, other) = if second {
                (&p.second, &p.first)
            } else {
                (&p.first, &p.second)
            };
            let od = &sys.domains[other.domain];
            EvtchnEntry {
                local_port: me.port,
                remote_domain: od.name.clone(),
                remote_domid: od.domid,
                remote_port: other.port,
                // Xen binds the second end second: it starts pending.
                initially_pending: second,
                channel: chan_name(p.channel),
            }
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Location;

    #[test]
    fn a_domain_in_a_channel_twice_gets_one_entry() {
        let mut sys = System::new("s", SourceKind::Description);
        sys.domains = vec![
            Domain::new("a", 1, Location::None),
            Domain::new("b", 2, Location::None),
        ];
        sys.shm = (0..2)
            .map(|domain| ShmNode {
                domain,
                id: "c".into(),
                id_loc: Location::None,
                host: None,
                guest: 0x1000 * (domain as u64 + 1),
                size: 0x1000,
                role: Some(ShmRole::Owner).filter(|_| domain == 0),
                loc: Location::None,
                mem_loc: Location::None,
                role_loc: Location::None,
                channel: Some(0),
            })
            .collect();
        sys.channels = vec![Channel {
            name: "c".into(),
            loc: Location::None,
            protocol: Protocol::Latest,
            writers: vec![0, 1],
            readers: vec![0, 1, 0],
            size: 0x1000,
            shm_id: "c".into(),
            shm: vec![0, 1],
            evtchns: vec![],
        }];
        let ms = manifests(&sys);
        for (d, m) in ms.iter().enumerate() {
            assert_eq!(m.channels.len(), 1, "{m:?}");
            assert_eq!(
                (m.channels[0].role, m.channels[0].index),
                ("writer", d as u32)
            );
            assert_eq!(m.regions.len(), 1);
            assert_eq!(m.regions[0].owner, "a");
            assert_eq!(manifest(&sys, d), *m);
        }
    }
}
