//! The scene of a `hypervisor = "qemu-ivshmem"` system (docs/adr/0005-ivshmem-platform.md):
//! no hypervisor and no host map shared between domains. Each domain is its own QEMU
//! `virt` VM; its channels are windows of one shared object (the memfd of
//! `staticbus-ivshmem-server`, every VM's BAR2), and its doorbells are ivshmem vectors
//! rung at peer ids.
//!
//! What is drawn, all of it from the model and `staticbus_config::ivshmem` (the numbers
//! `staticbus boot` starts the server and the VMs with):
//!
//! - the shared object at its offsets: every region's window (a region's offset is its
//!   guest address minus `staticbus_abi::ivshmem::SHM_BASE`, where the runtime maps BAR2),
//!   with its size, protocol and members; what is free; the server's control page at the
//!   end. Regions that are not in the object (SB0901) are listed under it;
//! - each VM's guest-physical map as the runtime sees it: RAM at the `virt` machine's RAM
//!   base (as much as `-m` gives), the BAR0 and BAR1 slots the runtime assigns, BAR2 (the
//!   whole object) and each of the VM's channels at its address;
//! - the channel graph: domains with their peer ids (the domids), channels with their
//!   offset and, per doorbell pair, which peer id and vector each side rings.

use crate::objects::{
    addr, dname, range, regions, role, size, Builder, GuestMap, Item, Kind, Link, Scene, View,
    IVSHMEM_LEGEND,
};
use staticbus_abi::ivshmem as iv;
use staticbus_config::ivshmem::{layout, vm_memory_mib};
use staticbus_config::model::{EvtchnEnd, EvtchnPair, Hypervisor, System};
use staticbus_diag::Location;

/// Most doorbell pairs listed in a channel's box (two lines each).
const MAX_PAIRS: usize = 4;

/// `producer rings consumer: peer 2 vector 1`: what `from` writes to its doorbell register
/// to reach `to` (`to`'s domid is its peer id, `to`'s port the vector).
fn rings(sys: &System, from: &EvtchnEnd, to: &EvtchnEnd) -> String {
    format!(
        "{} rings {}: peer {} vector {}",
        dname(sys, from.domain),
        dname(sys, to.domain),
        sys.domains.get(to.domain).map_or(0, |d| d.domid),
        to.port
    )
}

/// Both directions of a doorbell pair.
fn pair_lines(sys: &System, p: &EvtchnPair) -> [String; 2] {
    [
        rings(sys, &p.first, &p.second),
        rings(sys, &p.second, &p.first),
    ]
}

/// The offset of a guest address in the object, if the window `[guest, guest + size)` is
/// inside it.
fn offset(object: u64, guest: u64, size_: u64) -> Option<u64> {
    let off = guest.checked_sub(iv::SHM_BASE)?;
    (off.checked_add(size_)? <= object).then_some(off)
}

/// A region's window on the object map, before it is drawn.
struct Window {
    region: usize,
    kind: Kind,
    offset: u64,
    size: u64,
    label: String,
    tip: String,
    keys: Vec<String>,
    locs: Vec<Location>,
}

/// Builds the scene of a qemu-ivshmem system.
pub(crate) fn scene(sys: &System) -> Scene {
    let lay = layout(sys);
    let mut b = Builder {
        scene: Scene {
            hypervisor: Hypervisor::QemuIvshmem,
            host_title: format!(
                "ivshmem shared object ({}, BAR2 of every VM): offsets",
                size(lay.object)
            ),
            guests_title: "Guest-physical memory, per VM (QEMU virt, as the runtime maps it)"
                .into(),
            graph_title: "Channels and doorbells".into(),
            legend: IVSHMEM_LEGEND.to_vec(),
            ..Scene::default()
        },
    };
    // Domains: the graph's nodes and the VM maps' titles. Problems on a kernel are drawn on
    // its VM (each VM loads its own; nothing places it on a shared map).
    for d in &sys.domains {
        let mut locs = vec![
            d.loc.clone(),
            d.memory_loc.clone(),
            d.vcpus_loc.clone(),
            d.enhanced_loc.clone(),
            d.direct_map_loc.clone(),
        ];
        for m in &d.modules {
            locs.extend([m.loc.clone(), m.bootargs_loc.clone()]);
        }
        let o = b.obj(View::Graph, format!("VM {}", d.name), locs);
        b.scene.domain_objs.push(o);
        b.scene.domain_labels.push(if d.dom0 {
            format!("{} (dom0: no VM)", d.name)
        } else {
            format!("{} (peer id {})", d.name, d.domid)
        });
    }
    let regions = regions(sys);
    let virtio_of = |id: &str| sys.virtio.iter().find(|v| v.shm_id == id);
    let region_name = |id: &str, ch: Option<&staticbus_config::model::Channel>| match ch {
        Some(c) if c.name == *id => format!("{id} ({})", c.protocol.as_str()),
        Some(c) => format!("shm {id} ({} {})", c.protocol.as_str(), c.name),
        None => match virtio_of(id) {
            Some(v) => format!("virtio-{} {}", v.device, v.name),
            None => format!("shm {id}"),
        },
    };
    // The object: the container, then each region's window at its offset (one box per
    // distinct address: a region split over two addresses, SB0902, is two boxes), what is
    // free, and the control page.
    let mut used: Vec<(u64, u64)> = Vec::new();
    let mut region_objs: Vec<Option<usize>> = Vec::new();
    let mut windows: Vec<Window> = Vec::new();
    for (ri, (id, nodes)) in regions.iter().enumerate() {
        let first = &sys.shm[nodes[0]];
        let ch = first.channel.and_then(|c| sys.channels.get(c));
        let name = region_name(id, ch);
        let mut places: Vec<(u64, Vec<usize>)> = Vec::new();
        for &n in nodes {
            let g = sys.shm[n].guest;
            match places.iter_mut().find(|p| p.0 == g) {
                Some(p) => p.1.push(n),
                None => places.push((g, vec![n])),
            }
        }
        let split = places.len() > 1;
        let mut obj = None;
        for (guest, pn) in &places {
            let doms: Vec<&str> = pn.iter().map(|&n| dname(sys, sys.shm[n].domain)).collect();
            let who = match ch {
                _ if split => format!("as {} place it", doms.join(", ")),
                Some(c) => {
                    let names = |v: &[usize]| {
                        v.iter()
                            .map(|&d| dname(sys, d))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!("{} → {}", names(&c.writers), names(&c.readers))
                }
                None => doms.join(", "),
            };
            let mut keys = vec![format!("r{ri}")];
            if let Some(c) = first.channel {
                keys.push(format!("c{c}"));
            }
            let locs: Vec<Location> = pn
                .iter()
                .flat_map(|&n| {
                    let n = &sys.shm[n];
                    [n.loc.clone(), n.mem_loc.clone(), n.id_loc.clone()]
                })
                .collect();
            let tip = format!(
                "shared region `{id}`{}\nmembers: {}\nguest address {} in every VM listed",
                ch.map(|c| format!(" carrying channel `{}` ({})", c.name, c.protocol.as_str()))
                    .unwrap_or_default(),
                doms.join(", "),
                addr(*guest as u128)
            );
            match offset(lay.object, *guest, first.size) {
                Some(off) => {
                    used.push((off, first.size));
                    let label = format!(
                        "{name} · {who} · {} at offset {}",
                        size(first.size),
                        addr(off as u128)
                    );
                    windows.push(Window {
                        region: ri,
                        kind: Kind::Shm(ch.map(|c| c.protocol)),
                        offset: off,
                        size: first.size,
                        label,
                        tip,
                        keys,
                        locs,
                    });
                }
                None => {
                    let o = b.obj(View::Host, format!("shm {id}"), locs);
                    b.scene.heap_regions.push((
                        format!(
                            "{name} · {who} · {} at guest {}: not in the shared object",
                            size(first.size),
                            addr(*guest as u128)
                        ),
                        o,
                    ));
                    obj.get_or_insert(o);
                }
            }
        }
        region_objs.push(obj);
    }
    used.sort_unstable();
    let mut free = Vec::new();
    let mut at = 0;
    for &(o, s) in &used {
        if o > at {
            free.push((at, o - at));
        }
        at = at.max(o.saturating_add(s));
    }
    if lay.control_page() > at {
        free.push((at, lay.control_page() - at));
    }
    let left: u64 = free.iter().map(|f| f.1).sum();
    b.host(
        Kind::Pool,
        0,
        lay.object,
        format!("shared object {}, {} free", size(lay.object), size(left)),
        format!(
            "the shared object: one memfd the server hands every VM, BAR2 at {} in each\n\
             {} vectors per peer",
            addr(iv::SHM_BASE as u128),
            lay.vectors
        ),
        vec!["obj".into()],
        vec![],
    );
    for (fb, fs) in free {
        b.host(
            Kind::PoolFree,
            fb,
            fs,
            format!("object: free {}", size(fs)),
            "free in the shared object".into(),
            vec!["obj-free".into(), "obj".into()],
            vec![],
        );
    }
    b.host(
        Kind::Reserved,
        lay.control_page(),
        iv::CONTROL_PAGE,
        "server control page".into(),
        format!(
            "written by the server: one word per peer id (below {}) set while that peer has \
             left; vector {} announces it",
            iv::LEFT_WORDS,
            iv::LEFT_VECTOR
        ),
        vec!["ctl".into(), "obj".into()],
        vec![],
    );
    for w in windows {
        b.host(w.kind, w.offset, w.size, w.label, w.tip, w.keys, w.locs);
        let obj = b.scene.host.last().map(|i| i.obj);
        region_objs[w.region] = region_objs[w.region].or(obj);
    }
    // The VMs' guest-physical maps.
    for (di, d) in sys.domains.iter().enumerate() {
        let mut items = Vec::new();
        let mut push =
            |b: &mut Builder, kind, base, size_, label: String, tip: String, keys, locs| {
                let obj = b.obj(View::Guest, format!("{}: {label}", d.name), locs);
                items.push(Item {
                    kind,
                    base,
                    size: size_,
                    tip: format!("{tip}\n{}", range(base, size_)),
                    label,
                    keys,
                    obj,
                });
            };
        let mib = vm_memory_mib(d);
        push(
            &mut b,
            Kind::ShmWindow,
            iv::SHM_BASE,
            lay.object,
            format!("BAR2: the shared object {}", size(lay.object)),
            "ivshmem BAR2, where the runtime maps the shared object (Normal memory)".into(),
            vec![format!("g{di}-bar2"), "obj".into()],
            vec![],
        );
        push(
            &mut b,
            Kind::GuestRam,
            iv::RAM_BASE,
            mib << 20,
            format!("RAM {}", size(mib << 20)),
            format!(
                "RAM of the QEMU virt VM of {} (-m {mib}M; the kernel is loaded by -kernel)",
                d.name
            ),
            vec![format!("g{di}-ram"), format!("d{di}")],
            vec![d.memory_loc.clone()],
        );
        push(
            &mut b,
            Kind::Window,
            iv::BAR0_BASE,
            iv::SMALL_BAR_MAX,
            "ivshmem BAR0: registers".into(),
            "the slot the runtime assigns BAR0 (IVPosition, Doorbell)".into(),
            vec!["bar0".into()],
            vec![],
        );
        push(
            &mut b,
            Kind::Window,
            iv::BAR1_BASE,
            iv::SMALL_BAR_MAX,
            "ivshmem BAR1: MSI-X".into(),
            format!(
                "the slot the runtime assigns BAR1 (MSI-X table: {} vectors)",
                lay.vectors
            ),
            vec!["bar1".into()],
            vec![],
        );
        for n in sys.shm.iter().filter(|n| n.domain == di) {
            let ri = regions.iter().position(|(id, _)| *id == n.id).unwrap_or(0);
            let ch = n.channel.and_then(|c| sys.channels.get(c));
            let label = match ch {
                Some(c) => format!("{} ({} {})", c.name, c.protocol.as_str(), role(c, di)),
                None => region_name(&n.id, None),
            };
            let mut keys = vec![format!("g{di}-r{ri}"), format!("r{ri}"), format!("d{di}")];
            if let Some(c) = n.channel {
                keys.push(format!("c{c}"));
            }
            let place = match offset(lay.object, n.guest, n.size) {
                Some(off) => format!("offset {} of the shared object", addr(off as u128)),
                None => "not in the shared object".into(),
            };
            push(
                &mut b,
                Kind::Shm(ch.map(|c| c.protocol)),
                n.guest,
                n.size,
                label,
                format!("shared region `{}` in {}: {place}", n.id, d.name),
                keys,
                vec![n.loc.clone(), n.mem_loc.clone(), n.role_loc.clone()],
            );
        }
        let title = format!(
            "{} · peer id {} · {} · {} vCPU",
            d.name,
            d.domid,
            size(mib << 20),
            d.vcpus.map_or("?".into(), |v| v.to_string())
        );
        let note = if d.dom0 {
            "dom0: `staticbus boot` starts no VM for it".to_string()
        } else {
            "QEMU virt VM; GIC, UART and PCIe from its device tree".to_string()
        };
        b.scene.guests.push(GuestMap {
            title,
            items,
            note: Some(note),
        });
    }
    // Graph links: channels, then regions of no channel, then pairs of no channel.
    for (ci, c) in sys.channels.iter().enumerate() {
        let at = c
            .shm
            .first()
            .and_then(|&n| sys.shm.get(n))
            .map(|n| match offset(lay.object, n.guest, n.size) {
                Some(off) => format!("offset {}", addr(off as u128)),
                None => "not in the object".into(),
            })
            .unwrap_or_default();
        let mut lines = vec![format!(
            "{} · {} · {} · {at}",
            c.name,
            c.protocol.as_str(),
            size(c.size)
        )];
        let pairs: Vec<&EvtchnPair> = c
            .evtchns
            .iter()
            .filter_map(|&e| sys.evtchns.get(e))
            .collect();
        for p in pairs.iter().take(MAX_PAIRS) {
            lines.extend(pair_lines(sys, p));
        }
        if pairs.len() > MAX_PAIRS {
            lines.push(format!(
                "… and {} more doorbell pairs",
                pairs.len() - MAX_PAIRS
            ));
        }
        let mut locs = vec![c.loc.clone()];
        for p in &pairs {
            locs.extend([p.first.port_loc.clone(), p.second.port_loc.clone()]);
        }
        let obj = b.obj(View::Graph, format!("channel {}", c.name), locs);
        let edges = c
            .members()
            .into_iter()
            .map(|m| (m, c.writers.contains(&m), c.readers.contains(&m)))
            .collect();
        let mut keys = vec![format!("c{ci}")];
        keys.extend(c.members().iter().map(|m| format!("d{m}")));
        b.scene.links.push(Link {
            lines,
            class: Kind::Shm(Some(c.protocol)).class(),
            edges,
            keys,
            obj,
        });
    }
    for (ri, (id, nodes)) in regions.iter().enumerate() {
        let n0 = &sys.shm[nodes[0]];
        if n0.channel.is_some() {
            continue;
        }
        let at = match offset(lay.object, n0.guest, n0.size) {
            Some(off) => format!("offset {}", addr(off as u128)),
            None => "not in the object".into(),
        };
        let lines = vec![
            format!("{} · {} · {at}", region_name(id, None), size(n0.size)),
            nodes
                .iter()
                .map(|&n| dname(sys, sys.shm[n].domain))
                .collect::<Vec<_>>()
                .join(", "),
        ];
        b.region_link(sys, ri, id, nodes, lines, region_objs[ri]);
    }
    for (pi, p) in sys.evtchns.iter().enumerate() {
        if p.channel.is_some() {
            continue;
        }
        let what = sys
            .virtio
            .iter()
            .find(|v| v.evtchn == pi)
            .map_or("doorbell pair".to_string(), |v| {
                format!("doorbell pair of virtio-{} {}", v.device, v.name)
            });
        let [a, bl] = pair_lines(sys, p);
        let name = format!(
            "doorbells {} ↔ {}",
            dname(sys, p.first.domain),
            dname(sys, p.second.domain)
        );
        let obj = b.obj(
            View::Graph,
            name,
            vec![
                p.first.loc.clone(),
                p.first.port_loc.clone(),
                p.second.loc.clone(),
                p.second.port_loc.clone(),
            ],
        );
        b.scene.links.push(Link {
            lines: vec![what, a, bl],
            class: "doorbell",
            edges: vec![
                (p.first.domain, false, false),
                (p.second.domain, false, false),
            ],
            keys: vec![
                format!("e{pi}"),
                format!("d{}", p.first.domain),
                format!("d{}", p.second.domain),
            ],
            obj,
        });
    }
    b.scene
}
