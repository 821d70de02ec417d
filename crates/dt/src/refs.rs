//! Phandle and path reference resolution, exactly like dtc.
//!
//! dtc runs these steps after parsing, each over the whole tree in tree order (a node,
//! then its children; properties in order; references in order):
//!
//! 1. `duplicate_label`: every label names one node or property.
//! 2. `explicit_phandles`: `phandle` / `linux,phandle` properties written in the source
//!    must be one cell, not 0 or 0xffffffff, agree with each other and be unique. A
//!    reference to the node itself (`phandle = <&me>;`) asks for an allocated phandle.
//! 3. `phandle_references`: every `<&ref>` cell gets the target's phandle. A target without
//!    one is allocated the next free number, counting from 1 and skipping numbers already
//!    taken, and gets a `phandle = <N>;` property appended at the end of its property list
//!    (unless it already has a `phandle` property, e.g. a self-reference, which is then
//!    patched). A node with only `linux,phandle` keeps it and gets no `phandle`.
//! 4. `path_references`: every `&ref` outside `<…>` is replaced by the target's full path
//!    and a NUL; later chunks of the value move accordingly.
//!
//! References are written `label`, `{/path}` or `{label/sub/path}` (the text after `&`).

use crate::tree::{ChunkKind, Node, Property, Tree};
use staticbus_diag::{Code, Diagnostic, Diagnostics, Location, Severity, Span};
use std::collections::{HashMap, HashSet};

const fn err(id: &'static str, title: &'static str, xen: &'static str) -> Code {
    Code {
        id,
        severity: Severity::Error,
        title,
        xen,
    }
}

/// A reference to a label or path that names no node.
pub const UNRESOLVED: Code = err(
    "SB0090",
    "reference to a non-existent node or label",
    "dtc rejects the file (\"Reference to non-existent node or label\"); Xen never sees it",
);
/// The same label on two nodes or properties.
pub const DUPLICATE_LABEL: Code = err(
    "SB0091",
    "duplicate label",
    "dtc rejects the file (ERROR duplicate_label); Xen never sees it",
);
/// A `phandle` / `linux,phandle` property that is not exactly one cell.
pub const PHANDLE_LENGTH: Code = err(
    "SB0092",
    "phandle property is not one cell",
    "dtc rejects the file (ERROR explicit_phandles: bad length); Xen never sees it",
);
/// `phandle = <&other>;`: a node's phandle set to another node's.
pub const PHANDLE_OTHER_NODE: Code = err(
    "SB0093",
    "phandle property references another node",
    "dtc rejects the file (ERROR explicit_phandles); Xen never sees it",
);
/// A phandle of 0 or 0xffffffff.
pub const PHANDLE_VALUE: Code = err(
    "SB0094",
    "invalid phandle value",
    "dtc rejects the file (ERROR explicit_phandles: bad value); Xen treats 0 and 0xffffffff \
     as \"no phandle\"",
);
/// `phandle` and `linux,phandle` with different values.
pub const PHANDLE_MISMATCH: Code = err(
    "SB0095",
    "mismatching phandle and linux,phandle",
    "dtc rejects the file (ERROR explicit_phandles); Xen never sees it",
);
/// Two nodes with the same phandle.
pub const PHANDLE_DUPLICATE: Code = err(
    "SB0096",
    "duplicated phandle",
    "dtc rejects the file (ERROR explicit_phandles: duplicated phandle); in a DTB, Xen's \
     phandle lookup would silently use one of the nodes",
);
/// A reference element that does not correspond to a 32-bit cell of the value (only
/// possible in trees built by code, not parsed).
pub const BAD_REFERENCE_CELL: Code = err(
    "SB0097",
    "malformed reference cell",
    "the phandle would be written at a wrong place and Xen would read a wrong value",
);
/// Every code this module emits.
pub const CODES: &[Code] = &[
    UNRESOLVED,
    DUPLICATE_LABEL,
    PHANDLE_LENGTH,
    PHANDLE_OTHER_NODE,
    PHANDLE_VALUE,
    PHANDLE_MISMATCH,
    PHANDLE_DUPLICATE,
    BAD_REFERENCE_CELL,
];

/// Resolves every `&label` / `&{/path}` reference in the tree the way dtc does.
pub fn resolve_references(tree: &mut Tree) -> Diagnostics {
    resolve_impl(tree, true).0
}

/// Node indices in tree order, with the links needed to find nodes again.
#[derive(Default)]
struct Flat {
    parent: Vec<Option<usize>>,
    /// Index within the parent's children.
    slot: Vec<usize>,
    children: Vec<Vec<usize>>,
    /// First node (in tree order) with each label.
    labels: HashMap<String, usize>,
    /// Labels of properties (only used for messages).
    prop_labels: HashSet<String>,
    /// Nodes with labels on them or their properties, in tree order.
    labelled: Vec<usize>,
    /// Nodes with a `phandle` or `linux,phandle` property, in tree order.
    with_phandle: Vec<usize>,
    /// (node, property) with a phandle reference, in tree order.
    cell_refs: Vec<(usize, usize)>,
    /// (node, property) with a path reference, in tree order.
    path_refs: Vec<(usize, usize)>,
}

impl Flat {
    fn build(tree: &Tree) -> Flat {
        let mut f = Flat::default();
        let mut stack: Vec<(&Node, Option<usize>, usize)> = vec![(&tree.root, None, 0)];
        while let Some((n, parent, slot)) = stack.pop() {
            let id = f.parent.len();
            f.parent.push(parent);
            f.slot.push(slot);
            f.children.push(Vec::new());
            if let Some(p) = parent {
                f.children[p].push(id);
            }
            for l in &n.labels {
                f.labels.entry(l.clone()).or_insert(id);
            }
            let mut labelled = !n.labels.is_empty();
            let mut ph = false;
            for (j, p) in n.props.iter().enumerate() {
                f.prop_labels.extend(p.labels.iter().cloned());
                labelled |= !p.labels.is_empty();
                ph |= p.name == "phandle" || p.name == "linux,phandle";
                let mut cells = false;
                let mut paths = false;
                for c in &p.chunks {
                    match &c.kind {
                        ChunkKind::Cells { elems, .. } => {
                            cells |= elems.iter().any(|e| e.reference.is_some())
                        }
                        ChunkKind::PathRef(_) => paths = true,
                        _ => {}
                    }
                }
                if cells {
                    f.cell_refs.push((id, j));
                }
                if paths {
                    f.path_refs.push((id, j));
                }
            }
            if labelled {
                f.labelled.push(id);
            }
            if ph {
                f.with_phandle.push(id);
            }
            for (k, c) in n.children.iter().enumerate().rev() {
                stack.push((c, Some(id), k));
            }
        }
        f
    }

    fn len(&self) -> usize {
        self.parent.len()
    }

    fn index_path(&self, mut id: usize) -> Vec<usize> {
        let mut v = Vec::new();
        while let Some(p) = self.parent[id] {
            v.push(self.slot[id]);
            id = p;
        }
        v.reverse();
        v
    }

    fn node<'t>(&self, tree: &'t Tree, id: usize) -> &'t Node {
        let mut n = &tree.root;
        for k in self.index_path(id) {
            n = &n.children[k];
        }
        n
    }

    fn node_mut<'t>(&self, tree: &'t mut Tree, id: usize) -> &'t mut Node {
        let mut n = &mut tree.root;
        for k in self.index_path(id) {
            n = &mut n.children[k];
        }
        n
    }

    fn full_path(&self, tree: &Tree, id: usize) -> String {
        let ip = self.index_path(id);
        if ip.is_empty() {
            return "/".into();
        }
        let mut s = String::new();
        let mut n = &tree.root;
        for k in ip {
            n = &n.children[k];
            s.push('/');
            s.push_str(&n.name);
        }
        s
    }

    /// dtc's `get_node_by_path` from node `from`.
    fn by_path(&self, tree: &Tree, from: usize, path: &str) -> Option<usize> {
        let mut cur = from;
        let mut path = path;
        loop {
            if path.is_empty() {
                return Some(cur);
            }
            path = path.trim_start_matches('/');
            let (comp, rest) = match path.find('/') {
                Some(k) => (&path[..k], Some(&path[k + 1..])),
                None => (path, None),
            };
            let k = self
                .node(tree, cur)
                .children
                .iter()
                .position(|c| c.name == comp)?;
            cur = self.children[cur][k];
            match rest {
                Some(r) => path = r,
                None => return Some(cur),
            }
        }
    }

    /// dtc's `get_node_by_ref` for a reference as written after `&`.
    fn by_ref(&self, tree: &Tree, r: &str) -> Option<usize> {
        let inner = strip_braces(r);
        if inner.is_empty() {
            return None;
        }
        if inner == "/" {
            return Some(0);
        }
        if inner.starts_with('/') {
            return self.by_path(tree, 0, inner);
        }
        match inner.split_once('/') {
            Some((label, path)) => self.by_path(tree, *self.labels.get(label)?, path),
            None => self.labels.get(inner).copied(),
        }
    }
}

fn strip_braces(r: &str) -> &str {
    if r.len() >= 2 && r.starts_with('{') && r.ends_with('}') {
        &r[1..r.len() - 1]
    } else {
        r
    }
}

/// Diagnostics kept per call; more are counted in a final note.
const MAX_DIAGS: usize = 200;

fn push(diags: &mut Diagnostics, d: Diagnostic) {
    if diags.len() < MAX_DIAGS {
        diags.push(d);
    }
}

fn loc(spans: &[Option<Span>]) -> Location {
    spans
        .iter()
        .flatten()
        .next()
        .map_or(Location::None, |&s| Location::span(s))
}

/// The resolution itself. `check_labels` is false when the caller (the DTS parser) has
/// already checked labels with better spans. Also returns, in tree order, whether each node
/// is the target of some reference (dtc's `is_referenced`).
pub(crate) fn resolve_impl(tree: &mut Tree, check_labels: bool) -> (Diagnostics, Vec<bool>) {
    let mut diags = Diagnostics::new();
    let f = Flat::build(tree);
    let mut referenced = vec![false; f.len()];

    if check_labels {
        duplicate_labels(tree, &f, &mut diags);
    }

    // explicit_phandles
    let mut phandle_of: Vec<Option<u32>> = vec![None; f.len()];
    let mut by_phandle: HashMap<u32, usize> = HashMap::new();
    for &id in &f.with_phandle {
        let ph = explicit_phandle(tree, &f, id, "phandle", &mut diags);
        let lph = explicit_phandle(tree, &f, id, "linux,phandle", &mut diags);
        if ph == 0 && lph == 0 {
            continue;
        }
        let node = f.node(tree, id);
        let path = f.full_path(tree, id);
        if ph != 0 && lph != 0 && ph != lph {
            let p = node.prop("phandle");
            let l = node.prop("linux,phandle");
            let mut d = Diagnostic::new(
                PHANDLE_MISMATCH,
                loc(&[l.and_then(|p| p.span), node.span]),
                format!("mismatching 'phandle' ({ph:#x}) and 'linux,phandle' ({lph:#x}) in {path}"),
            )
            .label("differs from `phandle`");
            if let Some(s) = p.and_then(|p| p.span) {
                d = d.with(s, "`phandle` is set here");
            }
            push(
                &mut diags,
                d.help("remove `linux,phandle`, or give both the same value"),
            );
        }
        let ph = if ph == 0 { lph } else { ph };
        if let Some(&other) = by_phandle.get(&ph) {
            let other_node = f.node(tree, other);
            let prop = node.prop("phandle").or_else(|| node.prop("linux,phandle"));
            let mut d = Diagnostic::new(
                PHANDLE_DUPLICATE,
                loc(&[prop.and_then(|p| p.span), node.span]),
                format!(
                    "duplicated phandle {ph:#x} in {path} (seen before at {})",
                    f.full_path(tree, other)
                ),
            )
            .label("this phandle is already used");
            let other_prop = other_node
                .prop("phandle")
                .or_else(|| other_node.prop("linux,phandle"));
            if let Some(s) = other_prop.and_then(|p| p.span).or(other_node.span) {
                d = d.with(s, "first used here");
            }
            push(
                &mut diags,
                d.help(
                    "give each node its own phandle, or drop the explicit value and reference the \
                 node by label (&label) so dtc allocates one",
                ),
            );
            continue;
        }
        phandle_of[id] = Some(ph);
        by_phandle.insert(ph, id);
    }

    // phandle_references
    let mut next: u32 = 1;
    for &(id, j) in &f.cell_refs {
        {
            let node = f.node(tree, id);
            let Some(prop) = node.props.get(j) else {
                break;
            };
            let mut refs: Vec<(usize, String, Location)> = Vec::new();
            for c in &prop.chunks {
                let ChunkKind::Cells { bits, elems } = &c.kind else {
                    continue;
                };
                for (k, e) in elems.iter().enumerate() {
                    let Some(r) = &e.reference else { continue };
                    let at = loc(&[e.span, c.span, prop.span]);
                    let off = c.offset as usize + k * 4;
                    if *bits != 32 || off + 4 > prop.value.len() || (k + 1) * 4 > c.len as usize {
                        push(&mut diags,
                            Diagnostic::new(
                                BAD_REFERENCE_CELL,
                                at,
                                format!(
                                    "reference `&{r}` in property `{}` of {} is not a 32-bit cell of the value",
                                    prop.name,
                                    f.full_path(tree, id)
                                ),
                            )
                            .label("malformed reference")
                            .help("references must be 32-bit cells inside the value (a bug in the code that built this tree)"),
                        );
                        continue;
                    }
                    refs.push((off, r.clone(), at));
                }
            }
            let prop_name = prop.name.clone();
            for (off, r, at) in refs {
                let Some(t) = f.by_ref(tree, &r) else {
                    let d = unresolved(tree, &f, id, &prop_name, &r, at);
                    push(&mut diags, d);
                    continue;
                };
                let ph = match phandle_of[t] {
                    Some(ph) => ph,
                    None => {
                        // Cannot run out: there are fewer nodes than phandle values.
                        while by_phandle.contains_key(&next) {
                            next += 1;
                        }
                        let ph = next;
                        phandle_of[t] = Some(ph);
                        by_phandle.insert(ph, t);
                        let target = f.node_mut(tree, t);
                        if target.prop("phandle").is_none() {
                            // Exactly one more: doubling the property list of every
                            // referenced node was a fifth of a big tree's memory.
                            target.props.reserve_exact(1);
                            target.props.push(Property::u32s("phandle", &[ph]));
                        }
                        ph
                    }
                };
                let prop = &mut f.node_mut(tree, id).props[j];
                prop.value[off..off + 4].copy_from_slice(&ph.to_be_bytes());
                referenced[t] = true;
            }
        }
    }

    // path_references
    for &(id, j) in &f.path_refs {
        {
            let mut ci = 0;
            loop {
                let prop = &f.node(tree, id).props[j];
                let Some(c) = prop.chunks.get(ci) else { break };
                let ChunkKind::PathRef(r) = &c.kind else {
                    ci += 1;
                    continue;
                };
                let r = r.clone();
                let at = loc(&[c.span, prop.span]);
                let (off, len) = (c.offset as usize, c.len as usize);
                if off + len > prop.value.len() {
                    push(
                        &mut diags,
                        Diagnostic::new(
                            BAD_REFERENCE_CELL,
                            at,
                            format!(
                                "path reference `&{r}` lies outside the value of `{}`",
                                prop.name
                            ),
                        )
                        .label("malformed reference")
                        .help("a bug in the code that built this tree"),
                    );
                    ci += 1;
                    continue;
                }
                let Some(t) = f.by_ref(tree, &r) else {
                    let name = prop.name.clone();
                    push(&mut diags, unresolved(tree, &f, id, &name, &r, at));
                    ci += 1;
                    continue;
                };
                let mut path = f.full_path(tree, t).into_bytes();
                path.push(0);
                let prop = &mut f.node_mut(tree, id).props[j];
                let delta = path.len() as i64 - len as i64;
                prop.value.splice(off..off + len, path.iter().copied());
                prop.chunks[ci].len = path.len() as u32;
                for later in &mut prop.chunks[ci + 1..] {
                    later.offset = (i64::from(later.offset) + delta) as u32;
                }
                referenced[t] = true;
                ci += 1;
            }
        }
    }

    (diags, referenced)
}

/// dtc's `check_phandle_prop`: the explicit phandle in property `name`, or 0.
fn explicit_phandle(tree: &Tree, f: &Flat, id: usize, name: &str, diags: &mut Diagnostics) -> u32 {
    let node = f.node(tree, id);
    let Some(prop) = node.prop(name) else {
        return 0;
    };
    let path = f.full_path(tree, id);
    if prop.value.len() != 4 {
        push(
            diags,
            Diagnostic::new(
                PHANDLE_LENGTH,
                loc(&[prop.span, node.span]),
                format!(
                    "bad length ({}) of {name} property in {path}",
                    prop.value.len()
                ),
            )
            .label("must be exactly one cell")
            .help(format!(
                "write `{name} = <N>;` or drop it and let dtc allocate one"
            )),
        );
        return 0;
    }
    let self_ref = prop.chunks.iter().find_map(|c| match &c.kind {
        ChunkKind::Cells { elems, .. } => elems
            .iter()
            .find_map(|e| e.reference.as_ref().map(|r| (r, e.span.or(c.span)))),
        _ => None,
    });
    if let Some((r, span)) = self_ref {
        if f.by_ref(tree, r) != Some(id) {
            push(diags,
                Diagnostic::new(
                    PHANDLE_OTHER_NODE,
                    loc(&[span, prop.span, node.span]),
                    format!("{name} of {path} is a reference to another node (`&{r}`)"),
                )
                .label("a node cannot take another node's phandle")
                .help(format!(
                    "remove the property, or reference the node itself (`{name} = <&own_label>;`) to force a phandle"
                )),
            );
        }
        return 0;
    }
    let v = u32::from_be_bytes([prop.value[0], prop.value[1], prop.value[2], prop.value[3]]);
    if v == 0 || v == u32::MAX {
        push(
            diags,
            Diagnostic::new(
                PHANDLE_VALUE,
                loc(&[prop.span, node.span]),
                format!("bad value ({v:#x}) in {name} property of {path}"),
            )
            .label("0 and 0xffffffff are not valid phandles")
            .help("use a value between 1 and 0xfffffffe, or drop the property"),
        );
        return 0;
    }
    v
}

fn unresolved(tree: &Tree, f: &Flat, id: usize, prop: &str, r: &str, at: Location) -> Diagnostic {
    let inner = strip_braces(r);
    let path = f.full_path(tree, id);
    let is_path = inner.contains('/');
    let mut d = Diagnostic::new(
        UNRESOLVED,
        at,
        format!(
            "reference to non-existent node or label \"{inner}\" (in property `{prop}` of {path})"
        ),
    )
    .label(if is_path {
        "no node at this path"
    } else {
        "no node has this label"
    });
    if !is_path && f.prop_labels.contains(inner) {
        d = d.note(format!(
            "`{inner}` labels a property; only node labels can be referenced"
        ));
    }
    if is_path {
        // Report the deepest existing prefix.
        let (base, rest, start) = if inner.starts_with('/') {
            (Some(0), inner, "/".to_string())
        } else {
            let (l, p) = inner.split_once('/').unwrap_or((inner, ""));
            (f.labels.get(l).copied(), p, format!("&{l}"))
        };
        if let Some(mut cur) = base {
            let mut shown = start;
            for comp in rest.split('/').filter(|c| !c.is_empty()) {
                match f
                    .node(tree, cur)
                    .children
                    .iter()
                    .position(|c| c.name == comp)
                {
                    Some(k) => {
                        cur = f.children[cur][k];
                        if !shown.ends_with('/') {
                            shown.push('/');
                        }
                        shown.push_str(comp);
                    }
                    None => {
                        let names: Vec<&str> = f
                            .node(tree, cur)
                            .children
                            .iter()
                            .map(|c| c.name.as_str())
                            .take(8)
                            .collect();
                        d = d.note(format!(
                            "`{shown}` has no child `{comp}`{}",
                            if names.is_empty() {
                                String::new()
                            } else {
                                format!(" (its children: {})", names.join(", "))
                            }
                        ));
                        break;
                    }
                }
            }
        }
    }
    d.help(
        "define the label (`label: node { ... };`) or fix the reference; paths must match node \
         names exactly, including unit addresses",
    )
}

/// The owner of a label: a node, or one of its properties (by index).
type Owner = (usize, Option<usize>);

fn duplicate_labels(tree: &Tree, f: &Flat, diags: &mut Diagnostics) {
    let mut first: HashMap<String, (Owner, Option<Span>)> = HashMap::new();
    for &id in &f.labelled {
        let node = f.node(tree, id);
        let mut items: Vec<(&str, Owner, Option<Span>)> = node
            .labels
            .iter()
            .map(|l| (l.as_str(), (id, None), node.span))
            .collect();
        for (j, p) in node.props.iter().enumerate() {
            items.extend(
                p.labels
                    .iter()
                    .map(|l| (l.as_str(), (id, Some(j)), p.name_span.or(p.span))),
            );
        }
        for (label, owner, span) in items {
            match first.get(label) {
                Some((o, fspan)) if *o != owner => {
                    let mut d = Diagnostic::new(
                        DUPLICATE_LABEL,
                        loc(&[span]),
                        format!(
                            "duplicate label `{label}` (on {} and {})",
                            describe(tree, f, owner),
                            describe(tree, f, *o)
                        ),
                    )
                    .label("label used again here");
                    if let Some(s) = fspan {
                        d = d.with(*s, "first used here");
                    }
                    push(
                        diags,
                        d.help("labels must be unique in the whole tree; rename one"),
                    );
                }
                Some(_) => {}
                None => {
                    first.insert(label.to_string(), (owner, span));
                }
            }
        }
    }
}

fn describe(tree: &Tree, f: &Flat, owner: Owner) -> String {
    let path = f.full_path(tree, owner.0);
    match owner.1 {
        Some(j) => format!(
            "property `{}` of {path}",
            f.node(tree, owner.0).props[j].name
        ),
        None => format!("node {path}"),
    }
}
