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
use staticbus_dt::{resolve_references, CellValue, ChunkKind, Node, Property, Tree};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

fn hi_lo(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

fn reg2(addr: u64, size: u64) -> Vec<u32> {
    let mut v = hi_lo(addr).to_vec();
    v.extend(hi_lo(size));
    v
}

/// The labels of every event-channel end, unique in the tree: `<domain>_ec<port>`, or if
/// a label of the base tree or of an earlier end (in [`System::evtchns`] order, first end
/// first) has it, `<domain>_ec<port>_<n>` with the first free `n` from 2; made DT labels
/// (`[A-Za-z0-9_]`, not starting with a digit). All in one buffer.
struct EndLabels {
    text: String,
    /// Per pair: the labels of its first and second end in `text`.
    at: Vec<[std::ops::Range<usize>; 2]>,
}

impl EndLabels {
    fn new(sys: &System, tree: &Tree) -> EndLabels {
        let mut labels = EndLabels {
            text: String::new(),
            at: Vec::with_capacity(sys.evtchns.len()),
        };
        // Usually the plain labels are all free and distinct, and then they are the
        // labels: check that without copying them.
        labels.push_all(sys, push_end_label);
        let mut taken: HashSet<&str> = HashSet::with_capacity(2 * sys.evtchns.len());
        tree.walk(|_, node| taken.extend(node.labels.iter().map(String::as_str)));
        let text = &labels.text;
        if labels
            .at
            .iter()
            .flatten()
            .all(|r| taken.insert(&text[r.clone()]))
        {
            return labels;
        }
        // Otherwise, take the next free number end by end.
        drop(taken);
        let mut used: HashSet<String> = HashSet::new();
        tree.walk(|_, node| used.extend(node.labels.iter().cloned()));
        labels.text.clear();
        labels.at.clear();
        labels.push_all(sys, |text, domain, port| {
            let start = text.len();
            push_end_label(text, domain, port);
            let len = text.len();
            let mut n = 1;
            while used.contains(&text[start..]) {
                n += 1;
                text.truncate(len);
                let _ = write!(text, "_{n}");
            }
            used.insert(text[start..].to_string());
        });
        labels
    }

    /// Appends the label of every end with `push(text, domain name, port)`.
    fn push_all(&mut self, sys: &System, mut push: impl FnMut(&mut String, &str, u32)) {
        for p in &sys.evtchns {
            let ends = [&p.first, &p.second].map(|e| {
                let start = self.text.len();
                push(&mut self.text, &sys.domains[e.domain].name, e.port);
                start..self.text.len()
            });
            self.at.push(ends);
        }
    }

    /// The label of end `second` (false: the first end) of pair `pair`.
    fn get(&self, pair: usize, second: bool) -> &str {
        &self.text[self.at[pair][usize::from(second)].clone()]
    }
}

/// Appends `<domain>_ec<port>` made a DT label.
fn push_end_label(text: &mut String, domain: &str, port: u32) {
    if domain.starts_with(|c: char| c.is_ascii_digit()) {
        text.push('_');
    }
    text.extend(
        domain
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    let _ = write!(text, "_ec{port}");
}

/// The first (`second` false) or second end of a pair.
fn end(p: &EvtchnPair, second: bool) -> &EvtchnEnd {
    if second {
        &p.second
    } else {
        &p.first
    }
}

/// The names of the event-channel nodes (one per port) then the shm nodes a domain's node
/// gets: `evtchn@<port>`, and `shared-mem@<host>` (or `shared-mem-<id>` for the heap
/// form); or, if a child of `node` or an earlier new node has that name,
/// `evtchn-<k>@<port>` or `shared-mem-<id>-<k>` with the first free `k` from 2.
fn child_names(node: &Node, ports: &[u32], shm: &[&ShmNode]) -> Vec<String> {
    let shm_name = |s: &ShmNode| match s.host {
        Some(h) => format!("shared-mem@{h:x}"),
        None => format!("shared-mem-{}", node_part(&s.id)),
    };
    let mut names: Vec<String> = ports
        .iter()
        .map(|p| format!("evtchn@{p:x}"))
        .chain(shm.iter().map(|s| shm_name(s)))
        .collect();
    // Usually the plain names are all free and distinct, and then they are the names:
    // check that without copying them.
    let mut taken: HashSet<&str> = node.children.iter().map(|c| c.name.as_str()).collect();
    if names.iter().all(|n| taken.insert(n)) {
        return names;
    }
    drop(taken);
    // Otherwise, take the next free number node by node.
    let mut used: HashSet<String> = node.children.iter().map(|c| c.name.clone()).collect();
    for (i, name) in names.iter_mut().enumerate() {
        let mut k = 1;
        while used.contains(name.as_str()) {
            k += 1;
            *name = match ports.get(i) {
                Some(port) => format!("evtchn-{k}@{port:x}"),
                None => format!("shared-mem-{}-{k}", node_part(&shm[i - ports.len()].id)),
            };
        }
        used.insert(name.clone());
    }
    names
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
    let (mut tree, labels) = unresolved_host_tree(sys, base);
    if has_base {
        // The model only references labels it created, so resolution cannot fail.
        let _ = resolve_references(&mut tree);
    } else {
        assign_end_phandles(&mut tree, &labels);
    }
    tree
}

/// [`host_tree`] before its references are resolved, with the labels of the ends.
fn unresolved_host_tree(sys: &System, base: Option<Tree>) -> (Tree, EndLabels) {
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

    // Each domain's event-channel ends, as (pair index, is the second end), in pair
    // order; and its shm nodes. (Domain indices out of range, only in a broken model,
    // match no domain, as before.)
    let mut ends: Vec<Vec<(usize, bool)>> = vec![Vec::new(); sys.domains.len()];
    for (i, p) in sys.evtchns.iter().enumerate() {
        for (e, second) in [(&p.first, false), (&p.second, true)] {
            if let Some(v) = ends.get_mut(e.domain) {
                v.push((i, second));
            }
        }
    }
    let mut shm: Vec<Vec<&ShmNode>> = vec![Vec::new(); sys.domains.len()];
    for s in &sys.shm {
        if let Some(v) = shm.get_mut(s.domain) {
            v.push(s);
        }
    }

    let labels = EndLabels::new(sys, &tree);

    let chosen = tree.root.child_or_insert("chosen");
    chosen.set_prop(Property::u32s("#address-cells", &[2]));
    chosen.set_prop(Property::u32s("#size-cells", &[2]));
    if let Some(args) = &sys.xen_bootargs {
        chosen.set_prop(Property::string("xen,xen-bootargs", args));
    }
    // The children of /chosen by name (the first of a name, as `child_or_insert` would
    // find it), up to `known`.
    let mut chosen_children: HashMap<String, usize> = HashMap::new();
    let mut known = 0;
    for (di, d) in sys.domains.iter().enumerate() {
        for (i, c) in chosen.children.iter().enumerate().skip(known) {
            if !chosen_children.contains_key(&c.name) {
                chosen_children.insert(c.name.clone(), i);
            }
        }
        known = chosen.children.len();
        let node: &mut Node = if d.dom0 {
            &mut *chosen
        } else {
            let i = match chosen_children.get(&d.name) {
                Some(&i) => i,
                None => {
                    chosen.children.push(Node::new(d.name.as_str()));
                    chosen.children.len() - 1
                }
            };
            let n = &mut chosen.children[i];
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
        let ports: Vec<u32> = ends[di]
            .iter()
            .map(|&(i, second)| end(&sys.evtchns[i], second).port)
            .collect();
        let mut names = child_names(node, &ports, &shm[di]).into_iter();
        node.children.reserve(ends[di].len() + shm[di].len());
        for (&(i, second), name) in ends[di].iter().zip(&mut names) {
            let e = end(&sys.evtchns[i], second);
            let mut en = Node::new(name);
            en.labels.push(labels.get(i, second).to_string());
            // Room for the `phandle` that resolution appends.
            en.props.reserve_exact(3);
            en.props
                .push(Property::string("compatible", b::EVTCHN_COMPAT));
            en.props.push(Property::cells_with_refs(
                b::EVTCHN_PROP,
                &[
                    CellValue::Num(e.port),
                    CellValue::Ref(labels.get(i, !second)),
                ],
            ));
            node.children.push(en);
        }
        for (s, name) in shm[di].iter().zip(names) {
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
    (tree, labels)
}

/// What [`resolve_references`] does to a tree that holds nothing but what
/// [`host_tree`] made without a base: no explicit phandles, no path references, and
/// every reference one end's `<port &peer>` to the label of another end. dtc's
/// `phandle_references` visits the references in tree order and gives each target
/// without a phandle the next number from 1, appending `phandle = <N>` to it; here one
/// pass over the tree finds that numbering (by end) and a second writes it, with no
/// node paths, label maps of the whole tree or per-reference copies. The result is the
/// same tree (`phandles_as_dtc_resolves` checks it against `resolve_references`).
fn assign_end_phandles(tree: &mut Tree, labels: &EndLabels) {
    let index: rustc_hash::FxHashMap<&str, usize> = labels
        .at
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, r)| (&labels.text[r.clone()], k))
        .collect();
    // Phandle of each end (pair 2i and 2i+1), 0 while it has none.
    let mut phandle = vec![0u32; 2 * labels.at.len()];
    let mut next = 1;
    fn number(
        n: &Node,
        index: &rustc_hash::FxHashMap<&str, usize>,
        ph: &mut [u32],
        next: &mut u32,
    ) {
        for p in &n.props {
            for c in &p.chunks {
                if let ChunkKind::Cells { elems, .. } = &c.kind {
                    for r in elems.iter().filter_map(|e| e.reference.as_deref()) {
                        let t = index[r];
                        if ph[t] == 0 {
                            ph[t] = *next;
                            *next += 1;
                        }
                    }
                }
            }
        }
        for c in &n.children {
            number(c, index, ph, next);
        }
    }
    number(&tree.root, &index, &mut phandle, &mut next);
    fn write(n: &mut Node, index: &rustc_hash::FxHashMap<&str, usize>, ph: &[u32]) {
        for p in &mut n.props {
            for c in &p.chunks {
                if let ChunkKind::Cells { elems, .. } = &c.kind {
                    for (k, e) in elems.iter().enumerate() {
                        if let Some(r) = &e.reference {
                            let off = c.offset as usize + 4 * k;
                            p.value[off..off + 4]
                                .copy_from_slice(&ph[index[r.as_str()]].to_be_bytes());
                        }
                    }
                }
            }
        }
        if let Some(&t) = n.labels.first().and_then(|l| index.get(l.as_str())) {
            if ph[t] != 0 {
                n.props.push(Property::u32s("phandle", &[ph[t]]));
            }
        }
        for c in &mut n.children {
            write(c, index, ph);
        }
    }
    write(&mut tree.root, &index, &phandle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Location;

    fn end(domain: DomIdx, port: u32) -> EvtchnEnd {
        EvtchnEnd {
            domain,
            port,
            loc: Location::None,
            port_loc: Location::None,
        }
    }

    /// (domain, port) of one end.
    type End = (DomIdx, u32);

    fn system(pairs: &[(End, End)]) -> System {
        let mut sys = System::new("s", SourceKind::Description);
        sys.domains = vec![
            Domain::new("a", 1, Location::None),
            Domain::new("0b", 2, Location::None),
        ];
        sys.evtchns = pairs
            .iter()
            .map(|&(f, s)| EvtchnPair {
                first: end(f.0, f.1),
                second: end(s.0, s.1),
                channel: None,
            })
            .collect();
        sys
    }

    fn labels_and_refs(tree: &Tree, path: &str) -> (Vec<String>, Option<String>) {
        let n = tree.find(path).unwrap_or_else(|| panic!("{path}"));
        let ChunkKind::Cells { elems, .. } = &n.prop(b::EVTCHN_PROP).unwrap().chunks[0].kind else {
            panic!("cells");
        };
        (n.labels.clone(), elems[1].reference.clone())
    }

    /// The phandles [`assign_end_phandles`] gives are the ones `resolve_references`
    /// (dtc's rules) gives the same tree: generated systems, loopback pairs, a dom0, and
    /// every example.
    #[test]
    fn phandles_as_dtc_resolves() {
        let mut systems = vec![
            system(&[((0, 5), (1, 5)), ((0, 5), (1, 6)), ((1, 5), (0, 7))]),
            system(&[((1, 3), (0, 9)), ((0, 2), (0, 4)), ((1, 1), (1, 2))]),
        ];
        let mut with_dom0 = system(&[((0, 5), (1, 5)), ((1, 6), (0, 6))]);
        with_dom0.domains[0].dom0 = true;
        systems.push(with_dom0);
        let read = |text: &str, dir: &std::path::Path| {
            let mut sources = staticbus_diag::Sources::new();
            let file = sources.add_text("t.toml", text.to_string());
            let ov = crate::desc::Overrides::default();
            crate::desc::read_description(file, text, "t", dir, &ov).0
        };
        systems.extend(read(&crate::synth::description(7, 40), ".".as_ref()));
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut n = 0;
        for e in std::fs::read_dir(examples).expect("examples/") {
            let dir = e.expect("an entry").path();
            if let Ok(text) = std::fs::read_to_string(dir.join("system.toml")) {
                systems.extend(read(&text, &dir));
                n += 1;
            }
        }
        assert!(n > 10, "the examples were found");
        for sys in &systems {
            let (mut fast, labels) = unresolved_host_tree(sys, None);
            let mut dtc = fast.clone();
            assert!(resolve_references(&mut dtc).is_empty());
            assign_end_phandles(&mut fast, &labels);
            assert_eq!(fast, dtc, "{}", sys.name);
        }
    }

    #[test]
    fn endpoint_labels_are_unique() {
        // Plain labels, made DT labels.
        let t = host_tree(&system(&[((0, 5), (1, 5))]), None);
        let (l, r) = labels_and_refs(&t, "/chosen/a/evtchn@5");
        assert_eq!((l, r.as_deref()), (vec!["a_ec5".into()], Some("_0b_ec5")));

        // A port used twice in a domain, and a label the base tree already has: the next
        // free number, end by end in pair order.
        let mut base = Tree::default();
        base.root.child_or_insert("x").labels.push("a_ec7".into());
        let sys = system(&[((0, 5), (1, 5)), ((0, 5), (1, 6)), ((1, 5), (0, 7))]);
        let t = host_tree(&sys, Some(base));
        for (path, label, peer) in [
            ("/chosen/a/evtchn@5", "a_ec5", "_0b_ec5"),
            ("/chosen/a/evtchn-2@5", "a_ec5_2", "_0b_ec6"),
            ("/chosen/a/evtchn@7", "a_ec7_2", "_0b_ec5_2"),
            ("/chosen/0b/evtchn@5", "_0b_ec5", "a_ec5"),
            ("/chosen/0b/evtchn@6", "_0b_ec6", "a_ec5_2"),
            ("/chosen/0b/evtchn-2@5", "_0b_ec5_2", "a_ec7_2"),
        ] {
            let (l, r) = labels_and_refs(&t, path);
            assert_eq!(
                (l, r.as_deref()),
                (vec![label.into()], Some(peer)),
                "{path}"
            );
        }
    }
}
