//! Writing the [`System`] as a Xen dom0less host device tree.
//!
//! Without a base tree the output is a tree with the platform's `/memory` and
//! `/reserved-memory` nodes and `/chosen`; with a base (e.g. QEMU's `-machine dumpdtb`
//! output) `/chosen` is merged into it. Domains are written in model order, each domain's
//! event-channel endpoints in [`System::evtchns`] order, so Xen binds the pairs in exactly
//! the order the model records (and the end it marks pending is
//! [`crate::model::EvtchnPair::second`]).

use crate::model::*;
use staticbus_abi::dt as b;
use staticbus_dt::{resolve_references, CellValue, Node, Property, Tree};
use std::collections::{HashMap, HashSet};

fn hi_lo(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

fn reg2(addr: u64, size: u64) -> Vec<u32> {
    let mut v = hi_lo(addr).to_vec();
    v.extend(hi_lo(size));
    v
}

/// A DT label made from a name: `[A-Za-z0-9_]`, not starting with a digit.
fn label_of(s: &str) -> String {
    let mut l: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if l.starts_with(|c: char| c.is_ascii_digit()) || l.is_empty() {
        l.insert(0, '_');
    }
    l
}

/// A node-name-safe version of a free string.
fn node_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ",._+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Builds the host device tree of `sys`, merged into `base` when given.
pub fn host_tree(sys: &System, base: Option<Tree>) -> Tree {
    let has_base = base.is_some();
    let mut tree = base.unwrap_or_else(|| {
        let mut t = Tree::default();
        t.root.set_prop(Property::u32s("#address-cells", &[2]));
        t.root.set_prop(Property::u32s("#size-cells", &[2]));
        t
    });
    if !has_base {
        for r in &sys.platform.ram {
            let n = tree.root.child_or_insert(&format!("memory@{:x}", r.base));
            n.set_prop(Property::string("device_type", "memory"));
            n.set_prop(Property::u32s("reg", &reg2(r.base, r.size)));
        }
        let declared: Vec<&Reserved> = sys
            .platform
            .reserved
            .iter()
            .filter(|r| r.kind == ReservedKind::Declared)
            .collect();
        if !declared.is_empty() {
            let rm = tree.root.child_or_insert("reserved-memory");
            rm.set_prop(Property::u32s("#address-cells", &[2]));
            rm.set_prop(Property::u32s("#size-cells", &[2]));
            rm.set_prop(Property::empty("ranges"));
            for r in declared {
                let n = rm.child_or_insert(&format!("{}@{:x}", node_part(&r.name), r.range.base));
                n.set_prop(Property::u32s("reg", &reg2(r.range.base, r.range.size)));
                n.set_prop(Property::empty("no-map"));
            }
        }
    }

    // Labels for every endpoint: (pair index, is_first) → label.
    let mut labels: HashMap<(usize, bool), String> = HashMap::new();
    let mut used_labels: HashSet<String> = HashSet::new();
    tree.walk(|_, n| used_labels.extend(n.labels.iter().cloned()));
    for (i, p) in sys.evtchns.iter().enumerate() {
        for (first, e) in [(true, &p.first), (false, &p.second)] {
            let d = &sys.domains[e.domain];
            let mut l = label_of(&format!("{}_ec{}", d.name, e.port));
            let mut n = 1;
            while used_labels.contains(&l) {
                n += 1;
                l = label_of(&format!("{}_ec{}_{n}", d.name, e.port));
            }
            used_labels.insert(l.clone());
            labels.insert((i, first), l);
        }
    }

    let chosen = tree.root.child_or_insert("chosen");
    chosen.set_prop(Property::u32s("#address-cells", &[2]));
    chosen.set_prop(Property::u32s("#size-cells", &[2]));
    if let Some(args) = &sys.xen_bootargs {
        chosen.set_prop(Property::string("xen,xen-bootargs", args));
    }
    for (di, d) in sys.domains.iter().enumerate() {
        let node: &mut Node = if d.dom0 {
            &mut *chosen
        } else {
            let n = chosen.child_or_insert(&d.name);
            n.set_prop(Property::string("compatible", b::DOMAIN_COMPAT));
            n.set_prop(Property::u32s("#address-cells", &[2]));
            n.set_prop(Property::u32s("#size-cells", &[2]));
            n.set_prop(Property::u32s("memory", &hi_lo(d.memory_kib.unwrap_or(0))));
            n.set_prop(Property::u32s("cpus", &[d.vcpus.unwrap_or(1)]));
            if d.vpl011 {
                n.set_prop(Property::empty("vpl011"));
            }
            if let Some(e) = d.enhanced.as_dt() {
                n.set_prop(Property::string("xen,enhanced", e));
            }
            if !d.static_mem.is_empty() {
                let cells: Vec<u32> = d
                    .static_mem
                    .iter()
                    .flat_map(|r| reg2(r.base, r.size))
                    .collect();
                n.set_prop(Property::u32s("xen,static-mem", &cells));
            }
            if d.direct_map {
                n.set_prop(Property::empty("direct-map"));
            }
            n
        };
        for m in &d.modules {
            let mn = node.child_or_insert(&format!("module@{:x}", m.addr));
            mn.set_prop(Property::strings(
                "compatible",
                &[m.kind.compatible(), b::MODULE_COMPAT],
            ));
            mn.set_prop(Property::u32s("reg", &reg2(m.addr, m.size)));
            if let Some(args) = &m.bootargs {
                mn.set_prop(Property::string("bootargs", args));
            }
        }
        let mut names: HashSet<String> = node.children.iter().map(|c| c.name.clone()).collect();
        for (i, p) in sys.evtchns.iter().enumerate() {
            for (first, e, other) in [(true, &p.first, false), (false, &p.second, true)] {
                if e.domain != di {
                    continue;
                }
                let mut name = format!("evtchn@{:x}", e.port);
                let mut k = 1;
                while names.contains(&name) {
                    k += 1;
                    name = format!("evtchn-{k}@{:x}", e.port);
                }
                names.insert(name.clone());
                let mut en = Node::new(name);
                en.labels.push(labels[&(i, first)].clone());
                en.set_prop(Property::string("compatible", b::EVTCHN_COMPAT));
                en.set_prop(Property::cells_with_refs(
                    b::EVTCHN_PROP,
                    &[CellValue::Num(e.port), CellValue::Ref(&labels[&(i, other)])],
                ));
                node.children.push(en);
            }
        }
        for s in sys.shm.iter().filter(|s| s.domain == di) {
            let mut name = match s.host {
                Some(h) => format!("shared-mem@{h:x}"),
                None => format!("shared-mem-{}", node_part(&s.id)),
            };
            let mut k = 1;
            while names.contains(&name) {
                k += 1;
                name = format!("shared-mem-{}-{k}", node_part(&s.id));
            }
            names.insert(name.clone());
            let mut sn = Node::new(name);
            sn.set_prop(Property::string("compatible", b::SHM_COMPAT));
            if let Some(r) = s.role {
                sn.set_prop(Property::string("role", r.as_str()));
            }
            sn.set_prop(Property::string(b::SHM_ID_PROP, &s.id));
            let mut cells = Vec::new();
            if let Some(h) = s.host {
                cells.extend(hi_lo(h));
            }
            cells.extend(hi_lo(s.guest));
            cells.extend(hi_lo(s.size));
            sn.set_prop(Property::u32s(b::SHM_MEM_PROP, &cells));
            node.children.push(sn);
        }
    }
    // The model only references labels it created, so resolution cannot fail.
    let _ = resolve_references(&mut tree);
    tree
}
