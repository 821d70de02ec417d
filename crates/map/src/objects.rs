//! What is drawn, taken from the model, and which problems belong to which drawn object.

use staticbus_config::model::{
    Channel, GicVersion, Hypervisor, ModuleKind, ReservedKind, ShmRole, System,
};
use staticbus_diag::{Diagnostic, Location};

/// Which part of the picture an object is in (some diagnostics concern only one part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The host physical map.
    Host,
    /// A domain's guest-physical map.
    Guest,
    /// The channel graph, or a domain as a whole.
    Graph,
}

/// What a box on a memory map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A host RAM bank (drawn behind everything).
    Ram,
    /// The shm pool (drawn behind the regions).
    Pool,
    /// A free part of the shm pool.
    PoolFree,
    /// A reserved range.
    Reserved,
    /// The Xen image.
    Xen,
    /// The host DTB.
    Dtb,
    /// A boot module.
    Module(ModuleKind),
    /// A `xen,static-mem` bank.
    StaticMem,
    /// A shared region (host) or one domain's window on it (guest); the protocol of its
    /// channel, if any.
    Shm(Option<staticbus_config::model::Protocol>),
    /// A domain's guest RAM bank.
    GuestRam,
    /// A device or Xen window of the guest memory map.
    Window,
    /// The guest-physical window shared regions are allocated from (drawn behind).
    ShmWindow,
}

impl Kind {
    /// Drawn in a background lane, not one of the things that must not overlap.
    pub fn is_container(self) -> bool {
        matches!(
            self,
            Kind::Ram | Kind::Pool | Kind::PoolFree | Kind::ShmWindow
        )
    }

    /// CSS class of the box.
    pub fn class(self) -> &'static str {
        use staticbus_config::model::Protocol as P;
        match self {
            Kind::Ram => "ram",
            Kind::Pool => "pool",
            Kind::PoolFree => "free",
            Kind::Reserved => "reserved",
            Kind::Xen => "xen",
            Kind::Dtb => "dtb",
            Kind::Module(ModuleKind::Kernel) => "kernel",
            Kind::Module(ModuleKind::Ramdisk) => "ramdisk",
            Kind::Module(ModuleKind::DeviceTree) => "dtb",
            Kind::StaticMem => "staticmem",
            Kind::Shm(Some(P::Queue)) => "queue",
            Kind::Shm(Some(P::Log)) => "log",
            Kind::Shm(Some(P::Latest)) => "latest",
            Kind::Shm(Some(P::Blob)) => "blob",
            Kind::Shm(None) => "shm",
            Kind::GuestRam => "ram",
            Kind::Window => "window",
            Kind::ShmWindow => "pool",
        }
    }
}

/// Something drawn that problems can be attached to.
#[derive(Clone, Debug)]
pub struct Obj {
    /// Where it was declared (every location the model records for it).
    pub locs: Vec<Location>,
    /// Part of the picture.
    pub view: View,
    /// A short name for the problem list ("drawn on …").
    pub name: String,
    /// Indices of the problems drawn on it.
    pub problems: Vec<usize>,
}

/// A box on a memory map.
#[derive(Clone, Debug)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// The label beside it.
    pub label: String,
    /// The tooltip (every detail).
    pub tip: String,
    /// Highlight keys: the first is its own, the others what it belongs to.
    pub keys: Vec<String>,
    /// Its object, for problems.
    pub obj: usize,
}

/// One link node of the channel graph: a channel, a shared region of no channel, or an
/// event-channel pair of no channel.
#[derive(Clone, Debug)]
pub struct Link {
    /// Lines of text; the first is the title.
    pub lines: Vec<String>,
    /// CSS class (protocol, `shm` or `evtchn`).
    pub class: &'static str,
    /// Edges: (domain, the domain writes into it, the domain reads from it).
    pub edges: Vec<(usize, bool, bool)>,
    /// Highlight keys.
    pub keys: Vec<String>,
    /// Its object.
    pub obj: usize,
}

/// A domain's guest-physical map.
#[derive(Clone, Debug)]
pub struct GuestMap {
    /// Title line.
    pub title: String,
    /// Its boxes.
    pub items: Vec<Item>,
    /// A note under the title (e.g. which GIC layout is shown).
    pub note: Option<String>,
}

/// Everything to draw.
#[derive(Clone, Debug, Default)]
pub struct Scene {
    /// The platform the picture is of (its headings, legend and wording follow it).
    pub hypervisor: Hypervisor,
    /// Heading of the first map: the host physical map (Xen) or the shared object's
    /// offsets (qemu-ivshmem).
    pub host_title: String,
    /// Heading of the per-domain maps.
    pub guests_title: String,
    /// Heading of the channel graph.
    pub graph_title: String,
    /// The legend: (CSS class, name).
    pub legend: Vec<(&'static str, &'static str)>,
    /// Every object.
    pub objs: Vec<Obj>,
    /// First map's boxes: host physical ranges (Xen) or windows of the shared object at
    /// their offsets (qemu-ivshmem).
    pub host: Vec<Item>,
    /// Lines under the first map, each with its object: shared regions without a host
    /// address (Xen allocates them from its heap), or regions that are not in the shared
    /// object (qemu-ivshmem).
    pub heap_regions: Vec<(String, usize)>,
    /// One guest map per domain, in domain order.
    pub guests: Vec<GuestMap>,
    /// Domain objects, in domain order.
    pub domain_objs: Vec<usize>,
    /// Domain node labels of the graph.
    pub domain_labels: Vec<String>,
    /// Link nodes of the graph.
    pub links: Vec<Link>,
}

/// Sizes for people: `4 KiB`, `2 GiB`, `1.5 MiB`, `100 B`.
pub fn size(n: u64) -> String {
    const U: [(u64, &str); 5] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
        (1, "B"),
    ];
    for (unit, name) in U {
        if n >= unit {
            if n % unit == 0 {
                return format!("{} {name}", n / unit);
            }
            let v = n as f64 / unit as f64;
            let s = format!("{v:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            return format!("{s} {name}");
        }
    }
    "0 B".into()
}

/// Addresses for people: hex with `_` every four digits, at least eight digits.
pub fn addr(a: u128) -> String {
    let hex = format!("{a:08x}");
    let mut out = String::new();
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && (hex.len() - i) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    format!("0x{out}")
}

/// `0x4000_0000..0x4020_0000 (2 MiB)`.
pub fn range(base: u64, size_: u64) -> String {
    format!(
        "{}..{} ({})",
        addr(base as u128),
        addr(base as u128 + size_ as u128),
        size(size_)
    )
}

pub(crate) struct Builder {
    pub(crate) scene: Scene,
}

impl Builder {
    /// The graph's link of region `ri` (`id`, its `nodes` in `sys.shm`) when it carries
    /// no channel: an edge to each node's domain, keyed by the region and the domains, on
    /// the region's object `obj` (or a graph object of its own).
    pub(crate) fn region_link(
        &mut self,
        sys: &System,
        ri: usize,
        id: &str,
        nodes: &[usize],
        lines: Vec<String>,
        obj: Option<usize>,
    ) {
        let obj = obj.unwrap_or_else(|| self.obj(View::Graph, format!("shm {id}"), vec![]));
        let mut keys = vec![format!("r{ri}")];
        keys.extend(nodes.iter().map(|&n| format!("d{}", sys.shm[n].domain)));
        self.scene.links.push(Link {
            lines,
            class: "shm",
            edges: nodes
                .iter()
                .map(|&n| (sys.shm[n].domain, false, false))
                .collect(),
            keys,
            obj,
        });
    }

    pub(crate) fn obj(&mut self, view: View, name: String, locs: Vec<Location>) -> usize {
        self.scene.objs.push(Obj {
            locs: locs
                .into_iter()
                .filter(|l| !matches!(l, Location::None))
                .collect(),
            view,
            name,
            problems: Vec::new(),
        });
        self.scene.objs.len() - 1
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn host(
        &mut self,
        kind: Kind,
        base: u64,
        size_: u64,
        label: String,
        tip: String,
        keys: Vec<String>,
        locs: Vec<Location>,
    ) {
        let obj = self.obj(View::Host, label.clone(), locs);
        self.scene.host.push(Item {
            kind,
            base,
            size: size_,
            tip: format!("{tip}\n{}", range(base, size_)),
            label,
            keys,
            obj,
        });
    }
}

/// The domain name of a model index, for labels.
pub(crate) fn dname(sys: &System, d: usize) -> &str {
    sys.domains.get(d).map_or("?", |d| d.name.as_str())
}

/// The legend of a Xen system's picture (and of a picture without a model).
pub const XEN_LEGEND: &[(&str, &str)] = &[
    ("ram", "RAM"),
    ("pool", "shm pool"),
    ("free", "pool free"),
    ("reserved", "reserved"),
    ("xen", "Xen"),
    ("dtb", "DTB"),
    ("kernel", "kernel"),
    ("ramdisk", "ramdisk"),
    ("staticmem", "static mem"),
    ("queue", "queue"),
    ("log", "log"),
    ("latest", "latest"),
    ("blob", "blob"),
    ("shm", "shm"),
    ("window", "guest window"),
    ("overlap", "overlap"),
];

/// The legend of a qemu-ivshmem system's picture.
pub const IVSHMEM_LEGEND: &[(&str, &str)] = &[
    ("ram", "VM RAM"),
    ("pool", "shared object (BAR2)"),
    ("free", "object free"),
    ("reserved", "control page"),
    ("window", "BAR0, BAR1"),
    ("queue", "queue"),
    ("log", "log"),
    ("latest", "latest"),
    ("blob", "blob"),
    ("shm", "shm"),
    ("overlap", "overlap"),
];

/// The shared regions: one per shm id with its nodes, in first-node order.
pub(crate) fn regions(sys: &System) -> Vec<(String, Vec<usize>)> {
    let mut regions: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, n) in sys.shm.iter().enumerate() {
        match regions.iter_mut().find(|(id, _)| *id == n.id) {
            Some((_, v)) => v.push(i),
            None => regions.push((n.id.clone(), vec![i])),
        }
    }
    regions
}

/// What domain `di` is in channel `c`, by the protocol's role names (`producer`,
/// `consumer`, `writer+reader`, …).
pub(crate) fn role(c: &Channel, di: usize) -> String {
    let (w, r) = c.protocol.roles();
    match (c.writers.contains(&di), c.readers.contains(&di)) {
        (true, true) => format!("{w:?}+{r:?}").to_lowercase(),
        (true, false) => format!("{w:?}").to_lowercase(),
        _ => format!("{r:?}").to_lowercase(),
    }
}

/// Builds the scene of a system, for the platform it targets.
pub fn scene(sys: &System) -> Scene {
    match sys.target.hypervisor {
        Hypervisor::Xen => xen_scene(sys),
        Hypervisor::QemuIvshmem => crate::ivshmem::scene(sys),
    }
}

/// The scene of a Xen system: the host physical map, each domain's guest-physical map as
/// Xen lays it out, the channel graph with event-channel ports.
fn xen_scene(sys: &System) -> Scene {
    let mut b = Builder {
        scene: Scene {
            hypervisor: Hypervisor::Xen,
            host_title: "Host physical memory".into(),
            guests_title: "Guest-physical memory, per domain".into(),
            graph_title: "Channels and event channels".into(),
            legend: XEN_LEGEND.to_vec(),
            ..Scene::default()
        },
    };
    let p = &sys.platform;
    // Domains first: their objects are the graph's domain nodes and the guest maps' titles.
    for d in &sys.domains {
        let o = b.obj(
            View::Graph,
            format!("domain {}", d.name),
            vec![
                d.loc.clone(),
                d.memory_loc.clone(),
                d.vcpus_loc.clone(),
                d.enhanced_loc.clone(),
                d.direct_map_loc.clone(),
            ],
        );
        b.scene.domain_objs.push(o);
        let what = if d.dom0 { "dom0, " } else { "" };
        b.scene
            .domain_labels
            .push(format!("{} ({what}domid {})", d.name, d.domid));
    }
    // Host map.
    for (i, r) in p.ram.iter().enumerate() {
        b.host(
            Kind::Ram,
            r.base,
            r.size,
            format!("RAM {}", size(r.size)),
            format!("RAM bank {i}"),
            vec![format!("ram{i}")],
            vec![r.loc.clone()],
        );
    }
    let regions = regions(sys);
    if let Some(pool) = &p.shm_pool {
        let mut used: Vec<(u64, u64)> = regions
            .iter()
            .filter_map(|(_, v)| {
                let n = &sys.shm[v[0]];
                n.host.map(|h| (h, n.size))
            })
            .filter(|&(h, s)| h < pool.end() && h.saturating_add(s) > pool.base)
            .collect();
        used.sort_unstable();
        let mut free = Vec::new();
        let mut at = pool.base;
        for (h, s) in used {
            if h > at {
                free.push((at, h - at));
            }
            at = at.max(h.saturating_add(s));
        }
        if pool.end() > at {
            free.push((at, pool.end() - at));
        }
        let left: u64 = free.iter().map(|f| f.1).sum();
        b.host(
            Kind::Pool,
            pool.base,
            pool.size,
            format!("shm pool {}, {} free", size(pool.size), size(left)),
            "the host range shared regions are allocated from".into(),
            vec!["pool".into()],
            vec![pool.loc.clone()],
        );
        for (fb, fs) in free {
            b.host(
                Kind::PoolFree,
                fb,
                fs,
                format!("pool: free {}", size(fs)),
                "free in the shm pool".into(),
                vec!["pool-free".into(), "pool".into()],
                vec![],
            );
        }
    }
    for (i, r) in p.reserved.iter().enumerate() {
        let kind = match r.kind {
            ReservedKind::MemReserve => "/memreserve/",
            ReservedKind::ReservedMemory => "/reserved-memory",
            ReservedKind::StaticHeap => "xen,static-heap",
            ReservedKind::Declared => "reserved",
        };
        b.host(
            Kind::Reserved,
            r.range.base,
            r.range.size,
            format!("reserved {}", r.name),
            format!("reserved range `{}` ({kind})", r.name),
            vec![format!("res{i}")],
            vec![r.range.loc.clone()],
        );
    }
    if let Some(x) = &p.xen_image {
        b.host(
            Kind::Xen,
            x.base,
            x.size,
            format!("Xen {}", size(x.size)),
            "the Xen image".into(),
            vec!["xen".into()],
            vec![x.loc.clone()],
        );
    }
    if let Some(x) = &p.dtb {
        b.host(
            Kind::Dtb,
            x.base,
            x.size,
            format!("host DTB {}", size(x.size)),
            "the host device tree blob".into(),
            vec!["dtb".into()],
            vec![x.loc.clone()],
        );
    }
    for (di, m) in sys.modules() {
        let d = dname(sys, di);
        let what = match m.kind {
            ModuleKind::Kernel => "kernel",
            ModuleKind::Ramdisk => "ramdisk",
            ModuleKind::DeviceTree => "passthrough DT",
        };
        let file = m
            .path
            .as_ref()
            .map(|f| format!("\nfile {f}"))
            .unwrap_or_default();
        b.host(
            Kind::Module(m.kind),
            m.addr,
            m.size,
            format!("{d} {what} {}", size(m.size)),
            format!("{what} module of domain {d}{file}"),
            vec![format!("m{di}-{}", m.kind.as_str()), format!("d{di}")],
            vec![m.loc.clone(), m.bootargs_loc.clone()],
        );
    }
    for (di, d) in sys.domains.iter().enumerate() {
        for r in &d.static_mem {
            b.host(
                Kind::StaticMem,
                r.base,
                r.size,
                format!("{} static memory {}", d.name, size(r.size)),
                format!("xen,static-mem bank of domain {}", d.name),
                vec![format!("sm{di}"), format!("d{di}")],
                vec![r.loc.clone(), d.static_mem_loc.clone()],
            );
        }
    }
    // Regions on the host map and their per-domain objects.
    let mut region_objs = Vec::new();
    for (ri, (id, nodes)) in regions.iter().enumerate() {
        let first = &sys.shm[nodes[0]];
        let ch = first.channel.and_then(|c| sys.channels.get(c));
        let owners: Vec<&str> = nodes
            .iter()
            .filter(|&&n| sys.shm[n].role == Some(ShmRole::Owner))
            .map(|&n| dname(sys, sys.shm[n].domain))
            .collect();
        let borrowers: Vec<&str> = nodes
            .iter()
            .filter(|&&n| sys.shm[n].role != Some(ShmRole::Owner))
            .map(|&n| dname(sys, sys.shm[n].domain))
            .collect();
        let owner = if owners.is_empty() {
            "DOMID_IO".to_string()
        } else {
            owners.join(", ")
        };
        let name = match ch {
            Some(c) if c.name == *id => format!("{id} ({})", c.protocol.as_str()),
            Some(c) => format!("shm {id} ({} {})", c.protocol.as_str(), c.name),
            None => format!("shm {id}"),
        };
        let label = format!(
            "{name} · owner {owner} · borrowers {}",
            if borrowers.is_empty() {
                "none".to_string()
            } else {
                borrowers.join(", ")
            }
        );
        let mut keys = vec![format!("r{ri}")];
        if let Some(c) = first.channel {
            keys.push(format!("c{c}"));
        }
        let locs: Vec<Location> = nodes
            .iter()
            .flat_map(|&n| {
                let n = &sys.shm[n];
                [n.loc.clone(), n.mem_loc.clone(), n.id_loc.clone()]
            })
            .collect();
        let tip = format!(
            "shared region `{id}`{}\nowner: {owner}\nborrowers: {}",
            ch.map(|c| format!(" carrying channel `{}` ({})", c.name, c.protocol.as_str()))
                .unwrap_or_default(),
            borrowers.join(", ")
        );
        match first.host {
            Some(h) => {
                b.host(
                    Kind::Shm(ch.map(|c| c.protocol)),
                    h,
                    first.size,
                    label,
                    tip,
                    keys.clone(),
                    locs,
                );
                region_objs.push(b.scene.host.last().map(|i| i.obj));
            }
            None => {
                let o = b.obj(View::Host, format!("shm {id}"), locs);
                b.scene
                    .heap_regions
                    .push((format!("{label} · {} from Xen's heap", size(first.size)), o));
                region_objs.push(Some(o));
            }
        }
    }
    // Guest maps.
    let windows: &[staticbus_abi::Window] = match p.gic {
        Some(GicVersion::V2) => staticbus_abi::guest::WINDOWS_GICV2,
        _ => staticbus_abi::guest::WINDOWS_GICV3,
    };
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
        if let Some(w) = p
            .guest_shm_window
            .as_ref()
            .filter(|_| !d.dom0 && !d.direct_map)
        {
            push(
                &mut b,
                Kind::ShmWindow,
                w.base,
                w.size,
                "guest shm window".into(),
                "where guest addresses of shared regions are allocated".into(),
                vec!["gwin".into()],
                vec![w.loc.clone()],
            );
        }
        for (bi, (base, sz)) in d.guest_ram().into_iter().enumerate() {
            push(
                &mut b,
                Kind::GuestRam,
                base,
                sz,
                format!("RAM {}", size(sz)),
                format!("guest RAM bank {bi} of {}", d.name),
                vec![format!("g{di}-ram"), format!("d{di}")],
                vec![d.memory_loc.clone()],
            );
        }
        if !d.dom0 {
            for w in windows {
                if w.base == staticbus_abi::guest::PL011_BASE && !d.vpl011 {
                    continue;
                }
                push(
                    &mut b,
                    Kind::Window,
                    w.base,
                    w.size,
                    w.name.to_string(),
                    format!("{} (Xen's guest memory map)", w.name),
                    vec!["win".into()],
                    vec![],
                );
            }
        }
        for n in sys.shm.iter().filter(|n| n.domain == di) {
            let ri = regions.iter().position(|(id, _)| *id == n.id).unwrap_or(0);
            let ch = n.channel.and_then(|c| sys.channels.get(c));
            let role = ch.map(|c| role(c, di));
            let xrole = n.role.map_or("no role (DOMID_IO owns)", |r| r.as_str());
            let label = match ch {
                Some(c) => format!(
                    "{} ({} {})",
                    c.name,
                    c.protocol.as_str(),
                    role.unwrap_or_default()
                ),
                None => format!("shm {}", n.id),
            };
            let mut keys = vec![format!("g{di}-r{ri}"), format!("r{ri}"), format!("d{di}")];
            if let Some(c) = n.channel {
                keys.push(format!("c{c}"));
            }
            push(
                &mut b,
                Kind::Shm(ch.map(|c| c.protocol)),
                n.guest,
                n.size,
                label,
                format!(
                    "shared region `{}` in {}: {xrole}{}",
                    n.id,
                    d.name,
                    n.host
                        .map(|h| format!("\nhost {}", addr(h as u128)))
                        .unwrap_or_default()
                ),
                keys,
                vec![n.loc.clone(), n.mem_loc.clone(), n.role_loc.clone()],
            );
        }
        let mem = d
            .memory_kib
            .map(|k| size(k.saturating_mul(1024)))
            .unwrap_or_else(|| "no memory".into());
        let title = format!(
            "{} · domid {} · {mem} · {} vCPU",
            d.name,
            d.domid,
            d.vcpus.map_or("?".into(), |v| v.to_string())
        );
        let note = if d.dom0 {
            Some("dom0: the host's own devices".to_string())
        } else if d.direct_map {
            Some("direct-mapped: guest = host".to_string())
        } else if p.gic.is_none() {
            Some("GIC version not given: GICv3 layout shown".to_string())
        } else {
            None
        };
        b.scene.guests.push(GuestMap { title, items, note });
    }
    // Graph links: channels, then regions of no channel, then pairs of no channel.
    let port_of =
        |e: &staticbus_config::model::EvtchnEnd| format!("{}:{}", dname(sys, e.domain), e.port);
    for (ci, c) in sys.channels.iter().enumerate() {
        let mut lines = vec![format!(
            "{} · {} · {}",
            c.name,
            c.protocol.as_str(),
            size(c.size)
        )];
        let pairs: Vec<String> = c
            .evtchns
            .iter()
            .filter_map(|&e| sys.evtchns.get(e))
            .map(|p| format!("evtchn {} ↔ {}", port_of(&p.first), port_of(&p.second)))
            .collect();
        const MAX_PAIRS: usize = 4;
        let more = pairs.len().saturating_sub(MAX_PAIRS);
        lines.extend(pairs.into_iter().take(MAX_PAIRS));
        if more > 0 {
            lines.push(format!("… and {more} more pairs"));
        }
        let mut locs = vec![c.loc.clone()];
        for &e in &c.evtchns {
            if let Some(p) = sys.evtchns.get(e) {
                locs.extend([p.first.port_loc.clone(), p.second.port_loc.clone()]);
            }
        }
        let obj = b.obj(View::Graph, format!("channel {}", c.name), locs);
        let mut edges = Vec::new();
        for m in c.members() {
            edges.push((m, c.writers.contains(&m), c.readers.contains(&m)));
        }
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
        if sys.shm[nodes[0]].channel.is_some() {
            continue;
        }
        let n0 = &sys.shm[nodes[0]];
        let mut lines = vec![format!("shm {id} · {}", size(n0.size))];
        let roles: Vec<String> = nodes
            .iter()
            .map(|&n| {
                let n = &sys.shm[n];
                format!(
                    "{} {}",
                    dname(sys, n.domain),
                    n.role.map_or("(no role)", |r| r.as_str())
                )
            })
            .collect();
        lines.push(roles.join(", "));
        b.region_link(sys, ri, id, nodes, lines, region_objs[ri]);
    }
    for (pi, p) in sys.evtchns.iter().enumerate() {
        if p.channel.is_some() {
            continue;
        }
        let lines = vec![
            "static event channel".to_string(),
            format!("{} ↔ {}", port_of(&p.first), port_of(&p.second)),
            format!("pending at start: {}", port_of(&p.second)),
        ];
        let obj = b.obj(
            View::Graph,
            format!(
                "event channel {} ↔ {}",
                port_of(&p.first),
                port_of(&p.second)
            ),
            vec![
                p.first.loc.clone(),
                p.first.port_loc.clone(),
                p.second.loc.clone(),
                p.second.port_loc.clone(),
            ],
        );
        b.scene.links.push(Link {
            lines,
            class: "evtchn",
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

/// Codes about guest ranges only, and about host ranges only: they are not drawn on the
/// other map (the same description line often gives both).
const GUEST_ONLY: &[&str] = &["SB0222", "SB0223", "SB0224", "SB0225", "SB0229"];
const HOST_ONLY: &[&str] = &["SB0216", "SB0220", "SB0221", "SB0228"];

/// How closely an object's location matches a diagnostic's (lower is closer).
fn score(obj: &Location, diag: &Location) -> Option<u64> {
    if obj == diag {
        return Some(0);
    }
    match (obj, diag) {
        (Location::Span { span: o }, Location::Span { span: d }) if o.file == d.file => {
            let (ol, dl) = ((o.end - o.start) as u64, (d.end - d.start) as u64);
            if o.start <= d.start && d.end <= o.end {
                Some(1 + ol - dl)
            } else if d.start <= o.start && o.end <= d.end {
                Some(1 + dl - ol)
            } else {
                None
            }
        }
        (
            Location::Node {
                file: of, path: op, ..
            },
            Location::Node {
                file: df, path: dp, ..
            },
        ) if of == df => {
            if op == dp {
                Some(1)
            } else if dp.starts_with(&format!("{op}/")) {
                Some(100 + (dp.matches('/').count() - op.matches('/').count()) as u64)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Attaches every diagnostic to the objects its locations point at most closely (its
/// primary location and each secondary label). Returns, per diagnostic, the objects.
pub fn attach(objs: &mut [Obj], diags: &[&Diagnostic]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(diags.len());
    for (pi, d) in diags.iter().enumerate() {
        let skip = |v: View| {
            (v == View::Host && GUEST_ONLY.contains(&d.code.id))
                || (v == View::Guest && HOST_ONLY.contains(&d.code.id))
        };
        let mut hit: Vec<usize> = Vec::new();
        let locs = std::iter::once(&d.location).chain(d.secondary.iter().map(|l| &l.location));
        for dl in locs {
            let scores: Vec<Option<u64>> = objs
                .iter()
                .map(|o| {
                    if skip(o.view) {
                        return None;
                    }
                    o.locs.iter().filter_map(|l| score(l, dl)).min()
                })
                .collect();
            if let Some(best) = scores.iter().flatten().min().copied() {
                for (oi, s) in scores.iter().enumerate() {
                    if *s == Some(best) && !hit.contains(&oi) {
                        hit.push(oi);
                    }
                }
            }
        }
        for &oi in &hit {
            objs[oi].problems.push(pi);
        }
        out.push(hit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_addresses() {
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(100), "100 B");
        assert_eq!(size(0), "0 B");
        assert_eq!(addr(0x4000_0000), "0x4000_0000");
        assert_eq!(addr(0x2_0000_0000), "0x2_0000_0000");
        assert_eq!(addr(0x1000), "0x0000_1000");
        assert_eq!(addr(1 << 64), "0x1_0000_0000_0000_0000");
    }
}
