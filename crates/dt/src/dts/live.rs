//! The parser's working tree. It follows dtc's "live tree" exactly: deleted properties and
//! nodes stay in their lists with a `deleted` flag (so that re-adding them later puts them
//! back at their old position, like dtc does), `/delete-…/` inside a block that is not
//! merged anywhere stays a deleted marker, and merging follows dtc's `merge_nodes`.
//! After parsing it runs dtc's structural checks (the ones that are errors in dtc) and is
//! converted into a [`crate::Tree`].

use super::codes;
use crate::refs;
use crate::tree::{Chunk, Node, Property};
use staticbus_diag::{Diagnostic, Diagnostics, Span};
use std::collections::HashMap;

pub(crate) type NodeId = usize;

/// A label and whether it was deleted (with its node or property).
#[derive(Clone, Debug)]
pub(crate) struct ILabel {
    pub name: String,
    pub span: Option<Span>,
    pub deleted: bool,
}

/// A property value under construction.
#[derive(Clone, Debug, Default)]
pub(crate) struct IValue {
    pub bytes: Vec<u8>,
    pub chunks: Vec<Chunk>,
    /// Labels written inside the value (`<1 lbl: 2>`); dtc keeps them as markers and checks
    /// them for duplicates.
    pub labels: Vec<(String, Span)>,
}

#[derive(Clone, Debug)]
pub(crate) struct IProp {
    pub name: String,
    pub name_span: Option<Span>,
    pub span: Option<Span>,
    pub labels: Vec<ILabel>,
    pub value: IValue,
    pub deleted: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct INode {
    pub name: String,
    pub span: Option<Span>,
    pub labels: Vec<ILabel>,
    pub props: Vec<IProp>,
    /// First index of each property name (deleted ones included), once the node has
    /// more than [`INDEX_PROPS`] properties (below that a scan is cheaper, and a map per
    /// node was most of the parser's memory on big trees).
    prop_index: Option<HashMap<String, usize>>,
    pub children: Vec<NodeId>,
    /// First index of each child name (deleted ones included).
    child_index: HashMap<String, usize>,
    pub parent: Option<NodeId>,
    pub deleted: bool,
    pub omit: bool,
}

/// Properties a node has before its property names get a map.
const INDEX_PROPS: usize = 8;

impl INode {
    /// The first property (deleted ones included) with this name.
    fn prop_position(&self, name: &str) -> Option<usize> {
        match &self.prop_index {
            Some(ix) => ix.get(name).copied(),
            None => self.props.iter().position(|p| p.name == name),
        }
    }

    /// Appends a property whose name the node does not have yet.
    fn push_new_prop(&mut self, p: IProp) {
        if let Some(ix) = &mut self.prop_index {
            ix.insert(p.name.clone(), self.props.len());
        }
        self.props.push(p);
        self.index_props_if_many();
    }

    fn index_props_if_many(&mut self) {
        if self.prop_index.is_none() && self.props.len() > INDEX_PROPS {
            let mut ix = HashMap::with_capacity(self.props.len());
            for (i, p) in self.props.iter().enumerate() {
                ix.entry(p.name.clone()).or_insert(i);
            }
            self.prop_index = Some(ix);
        }
    }
}

fn add_label(labels: &mut Vec<ILabel>, name: &str, span: Option<Span>) {
    if let Some(l) = labels.iter_mut().find(|l| l.name == name) {
        l.deleted = false;
        return;
    }
    labels.push(ILabel {
        name: name.to_string(),
        span,
        deleted: false,
    });
}

fn delete_labels(labels: &mut [ILabel]) {
    for l in labels {
        l.deleted = true;
    }
}

/// The arena of nodes. Node ids that were merged away stay allocated but unreachable.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub nodes: Vec<INode>,
    pub root: Option<NodeId>,
    /// Every node a label was ever attached to (entries may be stale).
    label_index: HashMap<String, Vec<NodeId>>,
}

impl Live {
    /// Allocates a node.
    pub fn new_node(
        &mut self,
        name: String,
        span: Option<Span>,
        labels: Vec<ILabel>,
        props: Vec<IProp>,
        children: Vec<NodeId>,
        deleted: bool,
    ) -> NodeId {
        let id = self.nodes.len();
        let mut child_index = HashMap::new();
        for (i, &c) in children.iter().enumerate() {
            child_index.entry(self.nodes[c].name.clone()).or_insert(i);
            self.nodes[c].parent = Some(id);
        }
        for l in &labels {
            self.index_label(&l.name, id);
        }
        self.nodes.push(INode {
            name,
            span,
            labels,
            props,
            prop_index: None,
            children,
            child_index,
            parent: None,
            deleted,
            omit: false,
        });
        self.nodes[id].index_props_if_many();
        id
    }

    fn index_label(&mut self, label: &str, id: NodeId) {
        let v = self.label_index.entry(label.to_string()).or_default();
        if v.last() != Some(&id) {
            v.push(id);
        }
    }

    /// Adds a label to a node (dtc `add_label`: an existing one is revived).
    pub fn add_node_label(&mut self, id: NodeId, label: &str, span: Option<Span>) {
        add_label(&mut self.nodes[id].labels, label, span);
        self.index_label(label, id);
    }

    fn push_child(&mut self, parent: NodeId, child: NodeId) {
        self.nodes[child].parent = Some(parent);
        let name = self.nodes[child].name.clone();
        let p = &mut self.nodes[parent];
        let i = p.children.len();
        p.children.push(child);
        p.child_index.entry(name).or_insert(i);
    }

    /// dtc's `merge_nodes(old, new)`.
    pub fn merge(&mut self, old: NodeId, new: NodeId) {
        self.nodes[old].deleted = false;
        let labels = std::mem::take(&mut self.nodes[new].labels);
        for l in &labels {
            self.add_node_label(old, &l.name, l.span);
        }
        let props = std::mem::take(&mut self.nodes[new].props);
        for p in props {
            if p.deleted {
                self.delete_property_by_name(old, &p.name);
                continue;
            }
            let o = &mut self.nodes[old];
            match o.prop_position(&p.name) {
                Some(i) => {
                    let op = &mut o.props[i];
                    for l in &p.labels {
                        add_label(&mut op.labels, &l.name, l.span);
                    }
                    op.value = p.value;
                    op.deleted = false;
                    op.span = p.span;
                    op.name_span = p.name_span;
                }
                None => o.push_new_prop(p),
            }
        }
        let children = std::mem::take(&mut self.nodes[new].children);
        for c in children {
            let name = self.nodes[c].name.clone();
            if self.nodes[c].deleted {
                self.delete_node_by_name(old, &name);
                continue;
            }
            match self.nodes[old].child_index.get(&name) {
                Some(&i) => {
                    let oc = self.nodes[old].children[i];
                    self.merge(oc, c);
                }
                None => self.push_child(old, c),
            }
        }
    }

    pub fn delete_property_by_name(&mut self, node: NodeId, name: &str) {
        let n = &mut self.nodes[node];
        if let Some(i) = n.prop_position(name) {
            let p = &mut n.props[i];
            p.deleted = true;
            delete_labels(&mut p.labels);
        }
    }

    pub fn delete_node_by_name(&mut self, parent: NodeId, name: &str) {
        if let Some(&i) = self.nodes[parent].child_index.get(name) {
            let c = self.nodes[parent].children[i];
            self.delete_node(c);
        }
    }

    /// dtc's `delete_node`: marks the node, its live children and properties, and its
    /// labels deleted.
    pub fn delete_node(&mut self, id: NodeId) {
        self.nodes[id].deleted = true;
        let children = self.nodes[id].children.clone();
        for c in children {
            if !self.nodes[c].deleted {
                self.delete_node(c);
            }
        }
        let n = &mut self.nodes[id];
        for p in n.props.iter_mut().filter(|p| !p.deleted) {
            p.deleted = true;
            delete_labels(&mut p.labels);
        }
        for l in n.labels.iter_mut() {
            l.deleted = true;
        }
    }

    /// The first live child named `name`.
    fn live_child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        let n = &self.nodes[parent];
        let &i = n.child_index.get(name)?;
        let c = n.children[i];
        if !self.nodes[c].deleted {
            return Some(c);
        }
        n.children[i..]
            .iter()
            .copied()
            .find(|&c| !self.nodes[c].deleted && self.nodes[c].name == name)
    }

    /// dtc's `get_node_by_path` from `from`.
    pub fn get_by_path(&self, from: NodeId, path: &str) -> Option<NodeId> {
        let mut cur = from;
        let mut path = path;
        loop {
            if path.is_empty() {
                return (!self.nodes[cur].deleted).then_some(cur);
            }
            path = path.trim_start_matches('/');
            match path.find('/') {
                Some(k) => {
                    cur = self.live_child(cur, &path[..k])?;
                    path = &path[k + 1..];
                }
                None => return self.live_child(cur, path),
            }
        }
    }

    /// True if `id` is reachable from the root through live nodes.
    fn is_live(&self, id: NodeId) -> bool {
        let mut cur = id;
        loop {
            if Some(cur) == self.root {
                return true;
            }
            if self.nodes[cur].deleted {
                return false;
            }
            match self.nodes[cur].parent {
                Some(p) => cur = p,
                None => return false,
            }
        }
    }

    fn has_live_label(&self, id: NodeId, label: &str) -> bool {
        self.nodes[id]
            .labels
            .iter()
            .any(|l| !l.deleted && l.name == label)
    }

    /// dtc's `get_node_by_label`: the first node in tree order carrying `label`.
    pub fn get_by_label(&self, label: &str) -> Option<NodeId> {
        let mut cands: Vec<NodeId> = self
            .label_index
            .get(label)?
            .iter()
            .copied()
            .filter(|&id| self.has_live_label(id, label) && self.is_live(id))
            .collect();
        cands.sort_unstable();
        cands.dedup();
        match cands.len() {
            0 => None,
            1 => Some(cands[0]),
            _ => {
                // Several live nodes carry it (an error reported later, unless some are
                // deleted first); pick the first in tree order like dtc.
                let root = self.root?;
                let mut stack = vec![root];
                while let Some(id) = stack.pop() {
                    if self.has_live_label(id, label) {
                        return Some(id);
                    }
                    for &c in self.nodes[id].children.iter().rev() {
                        if !self.nodes[c].deleted {
                            stack.push(c);
                        }
                    }
                }
                None
            }
        }
    }

    /// dtc's `get_node_by_ref` (dtc 1.7: `label/sub/path` is accepted too).
    pub fn get_by_ref(&self, r: &str) -> Option<NodeId> {
        let root = self.root?;
        if r == "/" {
            return Some(root);
        }
        if r.starts_with('/') {
            return self.get_by_path(root, r);
        }
        match r.split_once('/') {
            Some((label, path)) => {
                let n = self.get_by_label(label)?;
                self.get_by_path(n, path)
            }
            None => self.get_by_label(r),
        }
    }

    /// Number of ancestors.
    pub fn depth(&self, id: NodeId) -> usize {
        let mut d = 0;
        let mut cur = id;
        while let Some(p) = self.nodes[cur].parent {
            d += 1;
            cur = p;
        }
        d
    }

    /// Full path of a node.
    pub fn path(&self, id: NodeId) -> String {
        let mut names = Vec::new();
        let mut cur = id;
        while let Some(p) = self.nodes[cur].parent {
            names.push(self.nodes[cur].name.as_str());
            cur = p;
        }
        if names.is_empty() {
            return "/".into();
        }
        names.reverse();
        let mut s = String::new();
        for n in names {
            s.push('/');
            s.push_str(n);
        }
        s
    }

    /// Live nodes in tree order.
    fn preorder(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        let Some(root) = self.root else {
            return out;
        };
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            out.push(id);
            for &c in self.nodes[id].children.iter().rev() {
                if !self.nodes[c].deleted {
                    stack.push(c);
                }
            }
        }
        out
    }

    /// dtc's `guess_boot_cpuid`: `reg` of the first child of `/cpus` if it is one cell.
    pub fn boot_cpuid(&self) -> u32 {
        let Some(root) = self.root else { return 0 };
        let Some(cpus) = self.get_by_path(root, "/cpus") else {
            return 0;
        };
        let Some(&cpu) = self.nodes[cpus].children.first() else {
            return 0;
        };
        self.nodes[cpu]
            .props
            .iter()
            .find(|p| !p.deleted && p.name == "reg")
            .and_then(|p| <[u8; 4]>::try_from(p.value.bytes.as_slice()).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0)
    }

    /// dtc's error-level structural checks, in dtc's order. `name` properties equal to the
    /// node name are removed, as dtc does.
    pub fn check(&mut self, diags: &mut Diagnostics) {
        let order = self.preorder();
        // duplicate_node_names
        for &id in &order {
            if diags.len() > super::MAX_ERRORS {
                return;
            }
            let mut seen: HashMap<&str, NodeId> = HashMap::new();
            for &c in &self.nodes[id].children {
                let cn = &self.nodes[c];
                if let Some(&first) = seen.get(cn.name.as_str()) {
                    let mut d = Diagnostic::new(
                        codes::DUP_NODE,
                        span_or(cn.span, self.nodes[id].span),
                        format!("duplicate node name `{}` in {}", cn.name, self.path(id)),
                    );
                    if let Some(s) = self.nodes[first].span {
                        d = d.with(s, "first defined here");
                    }
                    d = if cn.deleted {
                        d.label("`/delete-node/` of a node defined in the same block")
                            .note("dtc only applies /delete-node/ to nodes of earlier blocks; within one block it counts as a second node of that name")
                            .help("remove the node definition or the /delete-node/ line")
                    } else {
                        d.label("defined again in the same block").help(
                            "merge the two definitions into one block; only separate blocks \
                             (`/ { ... };` or `&label { ... };`) are merged",
                        )
                    };
                    push(diags, d);
                } else if !cn.deleted {
                    seen.insert(cn.name.as_str(), c);
                }
            }
        }
        // duplicate_property_names
        for &id in &order {
            if diags.len() > super::MAX_ERRORS {
                return;
            }
            let n = &self.nodes[id];
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (i, p) in n.props.iter().enumerate().filter(|(_, p)| !p.deleted) {
                if let Some(&first) = seen.get(p.name.as_str()) {
                    let mut d = Diagnostic::new(
                        codes::DUP_PROP,
                        span_or(p.name_span.or(p.span), n.span),
                        format!("duplicate property `{}` in {}", p.name, self.path(id)),
                    )
                    .label("defined again in the same block");
                    if let Some(s) = n.props[first].name_span {
                        d = d.with(s, "first defined here");
                    }
                    d = d.help(
                        "define each property once per block; to override a value, \
                         use a later block (`&label { ... };`)",
                    );
                    push(diags, d);
                } else {
                    seen.insert(p.name.as_str(), i);
                }
            }
        }
        // node_name_chars, node_name_format
        for &id in &order {
            if diags.len() > super::MAX_ERRORS {
                return;
            }
            if Some(id) == self.root {
                continue;
            }
            let n = &self.nodes[id];
            let bad = n
                .name
                .bytes()
                .position(|c| !(c.is_ascii_alphanumeric() || b",._+-@".contains(&c)));
            if let Some(k) = bad {
                let ch = n.name[k..].chars().next().unwrap_or('?');
                push(diags,
                    Diagnostic::new(
                        codes::NODE_NAME_CHARS,
                        narrow(n.span, &n.name, k),
                        format!("bad character {ch:?} in node name `{}`", n.name),
                    )
                    .label("not allowed in node names")
                    .help("node names may contain only letters, digits and `,._+-`, plus `@` before the unit address"),
                );
            }
            if let Some((_, unit)) = n.name.split_once('@') {
                if let Some(k) = unit.find('@') {
                    let at = n.name.len() - unit.len() + k;
                    push(
                        diags,
                        Diagnostic::new(
                            codes::NODE_NAME_FORMAT,
                            narrow(n.span, &n.name, at),
                            format!("multiple '@' characters in node name `{}`", n.name),
                        )
                        .label("second '@'")
                        .help("a node name is `name@unit-address` with a single '@'"),
                    );
                }
            }
        }
        // property_name_chars
        for &id in &order {
            if diags.len() > super::MAX_ERRORS {
                return;
            }
            for p in self.nodes[id].props.iter().filter(|p| !p.deleted) {
                let bad = p
                    .name
                    .bytes()
                    .position(|c| !(c.is_ascii_alphanumeric() || b",._+*#?-".contains(&c)));
                if let Some(k) = bad {
                    let ch = p.name[k..].chars().next().unwrap_or('?');
                    push(
                        diags,
                        Diagnostic::new(
                            codes::PROP_NAME_CHARS,
                            narrow(p.name_span, &p.name, k),
                            format!("bad character {ch:?} in property name `{}`", p.name),
                        )
                        .label("not allowed in property names")
                        .help("property names may contain only letters, digits and `,._+*#?-`"),
                    );
                }
            }
        }
        // name_is_string, then name_properties (which dtc only runs if the former passed)
        let mut name_ok = true;
        for &id in &order {
            if diags.len() > super::MAX_ERRORS {
                return;
            }
            let n = &self.nodes[id];
            if let Some(p) = n.props.iter().find(|p| !p.deleted && p.name == "name") {
                if !is_one_string(&p.value.bytes) {
                    name_ok = false;
                    push(
                        diags,
                        Diagnostic::new(
                            codes::NAME_NOT_STRING,
                            span_or(p.span, n.span),
                            format!("\"name\" property of {} is not a string", self.path(id)),
                        )
                        .label("must be a single string")
                        .help("remove the property; the node name already defines it"),
                    );
                }
            }
        }
        if name_ok {
            for &id in &order {
                if diags.len() > super::MAX_ERRORS {
                    return;
                }
                let basename = self.nodes[id]
                    .name
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let Some(i) = self.nodes[id].props.iter().position(|p| p.name == "name") else {
                    continue;
                };
                let p = &self.nodes[id].props[i];
                let v = &p.value.bytes;
                if v.len() != basename.len() + 1 || &v[..basename.len()] != basename.as_bytes() {
                    let shown = if p.deleted {
                        "a deleted property".to_string()
                    } else {
                        format!(
                            "{:?}",
                            String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v))
                        )
                    };
                    let mut d = Diagnostic::new(
                        codes::NAME_MISMATCH,
                        span_or(p.span.or(p.name_span), self.nodes[id].span),
                        format!(
                            "\"name\" property of {} is {shown} instead of the base node name {basename:?}",
                            self.path(id)
                        ),
                    )
                    .label("does not match the node name")
                    .help("remove the property; the node name already defines it");
                    if p.deleted {
                        d = d.note("dtc checks the first \"name\" entry even when it was /delete-property/'d in the block that defines the node");
                    }
                    push(diags, d);
                } else {
                    let n = &mut self.nodes[id];
                    n.props.remove(i);
                    n.prop_index = None;
                }
            }
        }
        self.check_labels(&order, diags);
    }

    /// dtc's duplicate_label check, with value labels included.
    fn check_labels(&self, order: &[NodeId], diags: &mut Diagnostics) {
        // Each label is looked at as it is met in tree order (no list of all of them
        // first: on a big tree that list was the parser's peak).
        let mut first: HashMap<&str, (LabelOwner, Option<Span>)> = HashMap::new();
        for &id in order {
            let n = &self.nodes[id];
            for l in n.labels.iter().filter(|l| !l.deleted) {
                if !self.visit_label(&mut first, diags, &l.name, (id, None, None), l.span) {
                    return;
                }
            }
            for (pi, p) in n.props.iter().enumerate().filter(|(_, p)| !p.deleted) {
                for l in p.labels.iter().filter(|l| !l.deleted) {
                    let owner = (id, Some(pi), None);
                    if !self.visit_label(&mut first, diags, &l.name, owner, l.span) {
                        return;
                    }
                }
                for (vi, (l, s)) in p.value.labels.iter().enumerate() {
                    let owner = (id, Some(pi), Some(vi));
                    if !self.visit_label(&mut first, diags, l, owner, Some(*s)) {
                        return;
                    }
                }
            }
        }
    }

    /// One label of [`Live::check_labels`]; false once the error budget is spent.
    fn visit_label<'t>(
        &self,
        first: &mut HashMap<&'t str, (LabelOwner, Option<Span>)>,
        diags: &mut Diagnostics,
        label: &'t str,
        owner: LabelOwner,
        span: Option<Span>,
    ) -> bool {
        if diags.len() > super::MAX_ERRORS {
            return false;
        }
        match first.get(label) {
            Some((o, fspan)) if *o != owner => {
                let mut d = Diagnostic::new(
                    refs::DUPLICATE_LABEL,
                    span_or(span, self.nodes[owner.0].span),
                    format!("duplicate label `{label}`"),
                )
                .label("label defined again here");
                if let Some(s) = fspan {
                    d = d.with(*s, "first defined here");
                }
                push(
                    diags,
                    d.help("labels must be unique in the whole tree; rename one"),
                );
            }
            Some(_) => {}
            None => {
                first.insert(label, (owner, span));
            }
        }
        true
    }

    /// Converts the live part into a [`Node`] tree, moving names and values out of the
    /// live nodes (each live node's lists are freed as soon as it is converted, so the
    /// two trees never both exist in full). Also returns, in tree order, whether each
    /// node was marked `/omit-if-no-ref/`.
    pub fn take_tree(&mut self) -> (Node, Vec<bool>) {
        let mut omit = Vec::new();
        let root = match self.root {
            Some(r) => self.convert(r, &mut omit),
            None => Node::default(),
        };
        (root, omit)
    }

    fn convert(&mut self, id: NodeId, omit: &mut Vec<bool>) -> Node {
        let n = &mut self.nodes[id];
        omit.push(n.omit);
        let live_labels = |labels: Vec<ILabel>| -> Vec<String> {
            let mut v: Vec<String> =
                Vec::with_capacity(labels.iter().filter(|l| !l.deleted).count());
            v.extend(labels.into_iter().filter(|l| !l.deleted).map(|l| l.name));
            v
        };
        let labels = live_labels(std::mem::take(&mut n.labels));
        let iprops = std::mem::take(&mut n.props);
        n.prop_index = None;
        let mut props = Vec::with_capacity(iprops.iter().filter(|p| !p.deleted).count());
        props.extend(iprops.into_iter().filter(|p| !p.deleted).map(|p| {
            let mut chunks = p.value.chunks;
            chunks.shrink_to_fit();
            let mut value = p.value.bytes;
            value.shrink_to_fit();
            Property {
                name: p.name,
                value,
                labels: live_labels(p.labels),
                span: p.span,
                name_span: p.name_span,
                chunks,
            }
        }));
        let children = std::mem::take(&mut n.children);
        n.child_index = HashMap::new();
        let name = std::mem::take(&mut n.name);
        let span = n.span;
        let live_children = children.iter().filter(|&&c| !self.nodes[c].deleted).count();
        let mut node = Node {
            name,
            labels,
            props,
            children: Vec::with_capacity(live_children),
            span,
        };
        for c in children {
            if !self.nodes[c].deleted {
                let child = self.convert(c, omit);
                node.children.push(child);
            }
        }
        node
    }
}

/// Who carries a label: (node, property index, value-label index).
type LabelOwner = (NodeId, Option<usize>, Option<usize>);

/// Pushes unless the error budget is spent.
fn push(diags: &mut Diagnostics, d: Diagnostic) {
    if diags.len() <= super::MAX_ERRORS {
        diags.push(d);
    }
}

/// dtc's `data_is_one_string`.
fn is_one_string(v: &[u8]) -> bool {
    match v.split_last() {
        Some((0, body)) => !body.contains(&0),
        _ => false,
    }
}

fn span_or(a: Option<Span>, b: Option<Span>) -> staticbus_diag::Location {
    match a.or(b) {
        Some(s) => s.into(),
        None => staticbus_diag::Location::None,
    }
}

/// The span of byte `k` of `name` when `span` covers exactly the name, else `span`.
fn narrow(span: Option<Span>, name: &str, k: usize) -> staticbus_diag::Location {
    match span {
        Some(s) if (s.end - s.start) as usize == name.len() => {
            let w = name[k..].chars().next().map_or(1, char::len_utf8);
            Span::new(s.file, s.start as usize + k, s.start as usize + k + w).into()
        }
        Some(s) => s.into(),
        None => staticbus_diag::Location::None,
    }
}
