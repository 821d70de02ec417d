//! Per-domain manifests: every channel, shared region and static event-channel port a
//! domain has, derived from the [`System`]. Both ends of every channel come from the same
//! model, so they cannot disagree. [`crate::emit`] writes a manifest as JSON, Rust, C and a
//! device-tree fragment.
//!
//! The manifest types are those of `staticbus-manifest` (its owned form,
//! `staticbus_manifest::owned`): the compiler, the guests and the runner share one schema.
//! The names below (`DomainManifest`, `ChannelEntry`, …) are the compiler's names for them.

use crate::model::*;
use staticbus_abi::domid::DOMID_IO;
use std::collections::HashMap;

pub use staticbus_manifest::owned::{
    Channel as ChannelEntry, Evtchn as EvtchnEntry, Manifest as DomainManifest, Peer as PeerEntry,
    Region as RegionEntry, Virtio as VirtioEntry, VirtioServe as VirtioServeEntry,
};
pub use staticbus_manifest::{owned::FORMAT, FORMAT_VERSION as VERSION};

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
    /// Per domain: the virtio devices it is the frontend or the backend of, in device
    /// order.
    virtio: Vec<Vec<usize>>,
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
        let mut virtio: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, v) in sys.virtio.iter().enumerate() {
            for d in [v.frontend, v.backend] {
                if let Some(list) = virtio.get_mut(d) {
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        Index {
            owners,
            channels,
            shm,
            evtchns,
            virtio,
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
                    role: peer_role,
                    local_port: me.port,
                    remote_port: other.port,
                })
            })
            .collect();
        channels.push(ChannelEntry {
            name: ch.name.clone(),
            protocol: ch.protocol,
            role,
            shm_id: ch.shm_id.clone(),
            guest_addr: node.guest,
            size: ch.size,
            index: index as u32,
            writers: ch.writers.len() as u32,
            readers: ch.readers.len() as u32,
            slot_size: ch.slot_size,
            value_size: ch.value_size,
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
                role: n.role.map(|r| match r {
                    ShmRole::Owner => staticbus_manifest::ShmRole::Owner,
                    ShmRole::Borrower => staticbus_manifest::ShmRole::Borrower,
                }),
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
    let virtio = ix.virtio[d]
        .iter()
        .filter_map(|&i| virtio_entry(sys, &sys.virtio[i], d))
        .collect();
    DomainManifest {
        format_version: VERSION,
        system: sys.name.clone(),
        xen: sys.target.xen.as_str().to_string(),
        domain: dom.name.clone(),
        domid: dom.domid,
        channels,
        regions,
        evtchns,
        virtio,
    }
}

/// Device `v` as domain `d` (its frontend or its backend) sees it; `None` in a broken
/// model (`d` is neither side, or the device's nodes or pair are missing).
fn virtio_entry(sys: &System, v: &VirtioDevice, d: DomIdx) -> Option<VirtioEntry> {
    let (role, peer) = if v.frontend == d {
        (staticbus_manifest::VirtioRole::Frontend, v.backend)
    } else if v.backend == d {
        (staticbus_manifest::VirtioRole::Backend, v.frontend)
    } else {
        return None;
    };
    let node = v
        .shm
        .iter()
        .filter_map(|&i| sys.shm.get(i))
        .find(|n| n.domain == d)?;
    let pair = sys.evtchns.get(v.evtchn)?;
    let (me, other) = if pair.first.domain == d {
        (&pair.first, &pair.second)
    } else if pair.second.domain == d {
        (&pair.second, &pair.first)
    } else {
        return None;
    };
    let pd = sys.domains.get(peer)?;
    Some(VirtioEntry {
        name: v.name.clone(),
        device: v.device.clone(),
        device_id: v.device_id,
        role,
        queues: v.queues,
        queue_size: v.queue_size,
        shm_id: v.shm_id.clone(),
        guest_addr: node.guest,
        size: v.size,
        peer: pd.name.clone(),
        peer_domid: pd.domid,
        local_port: me.port,
        remote_port: other.port,
        serve: match &v.serve {
            VirtioServe::Builtin => VirtioServeEntry::Builtin,
            VirtioServe::VhostUser { program, args } => VirtioServeEntry::VhostUser {
                program: program.clone(),
                args: args.clone(),
            },
        },
    })
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
            slot_size: None,
            value_size: Some(8),
            shm_id: "c".into(),
            shm: vec![0, 1],
            evtchns: vec![],
        }];
        let ms = manifests(&sys);
        for (d, m) in ms.iter().enumerate() {
            assert_eq!(m.channels.len(), 1, "{m:?}");
            assert_eq!(
                (m.channels[0].role, m.channels[0].index),
                (staticbus_manifest::Role::Writer, d as u32)
            );
            assert_eq!(m.regions.len(), 1);
            assert_eq!(m.regions[0].owner, "a");
            assert_eq!(manifest(&sys, d), *m);
        }
    }
}
