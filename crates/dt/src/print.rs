//! DTS printer.
//!
//! [`print_dts`] writes a tree as DTS in tree order with tab indentation, like
//! `dtc -O dts`. Values are printed from their [`Chunk`]s when the chunks describe the
//! value bytes exactly (cell arrays with `/bits/`, strings, byte strings, `&label` and
//! `&{/path}` references); otherwise (trees read from a DTB) the form is guessed as dtc
//! guesses it: a list of printable NUL-terminated strings, else cells when the length is a
//! multiple of 4, else bytes.
//!
//! The output is meant to compile back with `dtc -I dts -O dtb` to exactly
//! [`crate::write_dtb`] of the tree. To keep that true the printer:
//! - prints a reference only when dtc would resolve it to the same bytes (the label is
//!   printed on a node whose phandle equals the cell, or whose path equals the string),
//!   and the plain number or string otherwise;
//! - drops labels dtc would reject (not `[a-zA-Z_][a-zA-Z0-9_]*`, or already used);
//! - escapes every string byte that is not printable ASCII as `\xNN`;
//! - writes root-node labels as `label: &{/} {};` after the root node (dtc has no syntax
//!   for labels before `/ {`);
//! - notes `boot_cpuid_phys` in a comment when it differs from what dtc guesses (the `reg`
//!   of the first node under `/cpus`), since DTS cannot express it (`dtc -b N` can).
//!
//! Trees dtc cannot reproduce at all are printed as faithfully as possible: node or
//! property names with characters dtc rejects, duplicate names, a `name` property (dtc
//! deletes or rejects it), bad `phandle` values, a named root node.
//!
//! [`DtsWriter`] writes DTS in the same layout without building a tree, for generated
//! output that is only ever printed.

use crate::{Chunk, ChunkKind, Node, Property, Tree};
use std::cell::OnceCell;

use std::fmt::Write;

/// Hash map with the Fx hash: keys come from the tree being written, so hash flooding is no
/// concern, and SipHash was a large part of the printer's cost.
pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// Hash set with the Fx hash (see [`FastMap`]).
pub(crate) type FastSet<K> = rustc_hash::FxHashSet<K>;

/// Prints a tree as DTS.
pub fn print_dts(tree: &Tree) -> String {
    let mut p = Printer::new(tree);
    p.tree();
    p.out
}

/// Writes DTS directly, node by node, in exactly the layout [`print_dts`] gives a tree, for
/// callers that would otherwise build a [`Tree`] only to print it.
///
/// The text equals `print_dts` of the tree with the same nodes and properties (values made
/// with [`Property::u32s`], [`Property::strings`], [`Property::empty`]), provided the tree
/// has no labels, no `/memreserve/` entries and no `/cpus` node with a `reg` (whose
/// `boot_cpuid_phys` comment the writer never writes), and that each node's properties
/// are written before its children.
///
/// ```
/// use staticbus_dt::print::DtsWriter;
/// let mut w = DtsWriter::new();
/// w.begin_node("chosen");
/// w.prop_u32s("#size-cells", &[2]);
/// w.prop_strings("compatible", &["a", "b"]);
/// w.end_node();
/// assert_eq!(
///     w.finish(),
///     "/dts-v1/;\n\n/ {\n\n\tchosen {\n\t\t#size-cells = <0x02>;\n\t\tcompatible = \"a\", \"b\";\n\t};\n};\n"
/// );
/// ```
#[derive(Debug)]
pub struct DtsWriter {
    out: String,
    /// Tab depth of the current node's contents (1 in the root node).
    depth: usize,
}

impl Default for DtsWriter {
    fn default() -> Self {
        DtsWriter::new()
    }
}

impl DtsWriter {
    /// Starts the DTS, inside the root node.
    pub fn new() -> DtsWriter {
        DtsWriter::with_capacity(0)
    }

    /// [`DtsWriter::new`] with room for `bytes` bytes of text.
    pub fn with_capacity(bytes: usize) -> DtsWriter {
        let mut out = String::with_capacity(bytes);
        out.push_str("/dts-v1/;\n\n/ {\n");
        DtsWriter { out, depth: 1 }
    }

    /// Opens a child node of the current node.
    pub fn begin_node(&mut self, name: &str) {
        self.out.push('\n');
        push_tabs(&mut self.out, self.depth);
        self.out.push_str(name);
        self.out.push_str(" {\n");
        self.depth += 1;
    }

    /// Closes the current node (not the root: [`DtsWriter::finish`] does).
    pub fn end_node(&mut self) {
        if self.depth > 1 {
            self.depth -= 1;
            push_tabs(&mut self.out, self.depth);
            self.out.push_str("};\n");
        }
    }

    /// A property without value (`name;`).
    pub fn prop_empty(&mut self, name: &str) {
        self.prop_start(name);
        self.out.push_str(";\n");
    }

    /// A 32-bit cell array (`name = <0x01 0x02>;`), as [`Property::u32s`] prints.
    pub fn prop_u32s(&mut self, name: &str, cells: &[u32]) {
        if cells.is_empty() {
            return self.prop_empty(name);
        }
        self.prop_start(name);
        self.out.push_str(" = <");
        for (i, &c) in cells.iter().enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            push_cell(&mut self.out, c.into());
        }
        self.out.push_str(">;\n");
    }

    /// A string list (`name = "a", "b";`), as [`Property::strings`] prints.
    pub fn prop_strings(&mut self, name: &str, strings: &[&str]) {
        if strings.is_empty() {
            return self.prop_empty(name);
        }
        self.prop_start(name);
        self.out.push_str(" = ");
        for (i, s) in strings.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            push_quoted(&mut self.out, s.as_bytes());
        }
        self.out.push_str(";\n");
    }

    /// A single string (`name = "a";`).
    pub fn prop_string(&mut self, name: &str, s: &str) {
        self.prop_strings(name, &[s]);
    }

    /// Closes every open node and the root, and returns the text.
    pub fn finish(mut self) -> String {
        while self.depth > 1 {
            self.end_node();
        }
        self.out.push_str("};\n");
        self.out
    }

    fn prop_start(&mut self, name: &str) {
        push_tabs(&mut self.out, self.depth);
        self.out.push_str(name);
    }
}

/// Where a kept node label points.
struct LabelTarget<'a> {
    /// The labelled node.
    node: &'a Node,
    /// Its path, in [`Printer::label_paths`].
    path: std::ops::Range<usize>,
    /// True if [`Tree::find`] of the path is the node itself (every node on the way is the
    /// first child of its parent with its name, and no name is empty or holds a `/`).
    found_by_path: bool,
    /// The node's phandle (looked up while the walk is at the node, not at each
    /// reference).
    phandle: Option<u32>,
}

struct Printer<'a> {
    tree: &'a Tree,
    out: String,
    /// Labels kept on nodes, as ranges of `kept_node_labels`, by tree-order node index.
    node_labels: Vec<std::ops::Range<usize>>,
    kept_node_labels: Vec<&'a str>,
    /// Printed node label -> node.
    labels: FastMap<&'a str, LabelTarget<'a>>,
    /// The paths of labelled nodes, one after another.
    label_paths: String,
    /// Labels kept on properties (keyed by address) and memreserves.
    prop_labels: FastMap<*const Property, Vec<&'a str>>,
    memreserve_labels: Vec<Vec<&'a str>>,
    /// Every node's path by address, built on the first `&{/path}` reference.
    paths: OnceCell<FastMap<*const Node, String>>,
    /// Index of the next node [`Printer::node`] prints, in tree order.
    next_node: usize,
}

fn is_label(s: &str) -> bool {
    let mut it = s.bytes();
    matches!(it.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && it.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b",._+*#?@-/".contains(&b)
}

/// What [`Printer::survey`] gathers besides labels.
struct Survey<'a> {
    /// The path of the node being surveyed.
    path: String,
    /// About the length of the text.
    size: usize,
    /// Properties with labels, in tree order.
    labelled_props: Vec<&'a Property>,
}

/// Labels already kept: on nodes (the keys of [`Printer::labels`]), then on memreserves
/// and properties.
struct Used<'a> {
    others: FastSet<&'a str>,
}

impl<'a> Used<'a> {
    /// The labels of a memreserve or property that are kept: valid, and not used before.
    fn keep(
        &mut self,
        nodes: &FastMap<&'a str, LabelTarget<'a>>,
        labels: &'a [String],
        out: &mut Vec<&'a str>,
    ) {
        for l in labels {
            if is_label(l) && !nodes.contains_key(l.as_str()) && self.others.insert(l) {
                out.push(l.as_str());
            }
        }
    }
}

impl<'a> Printer<'a> {
    fn new(tree: &'a Tree) -> Self {
        let mut p = Printer {
            tree,
            out: String::new(),
            node_labels: Vec::new(),
            kept_node_labels: Vec::new(),
            labels: FastMap::default(),
            label_paths: String::new(),
            prop_labels: FastMap::default(),
            memreserve_labels: Vec::new(),
            paths: OnceCell::new(),
            next_node: 0,
        };
        // Node labels first: references need them.
        let mut survey = Survey {
            path: String::new(),
            size: 4096,
            labelled_props: Vec::new(),
        };
        p.survey(&tree.root, true, 0, &mut survey);
        let mut used = Used {
            others: FastSet::default(),
        };
        p.memreserve_labels = tree
            .memreserve
            .iter()
            .map(|m| {
                let mut v = Vec::new();
                used.keep(&p.labels, &m.labels, &mut v);
                v
            })
            .collect();
        for prop in survey.labelled_props {
            let mut kept = Vec::new();
            used.keep(&p.labels, &prop.labels, &mut kept);
            if !kept.is_empty() {
                p.prop_labels.insert(prop as *const Property, kept);
            }
        }
        p.out.reserve(survey.size);
        p
    }

    /// Walks the subtree of `node` in tree order: keeps node labels and notes where each
    /// leads, and notes the properties with labels and the room the text will take.
    /// `found_by_path` says whether [`Tree::find`] of `node`'s path (`survey.path`, "" for
    /// the root) is `node`.
    fn survey(
        &mut self,
        node: &'a Node,
        found_by_path: bool,
        depth: usize,
        survey: &mut Survey<'a>,
    ) {
        let start = self.kept_node_labels.len();
        for l in &node.labels {
            if !is_label(l) || self.labels.contains_key(l.as_str()) {
                continue;
            }
            self.kept_node_labels.push(l);
            let at = self.label_paths.len();
            let path = if survey.path.is_empty() {
                "/"
            } else {
                &survey.path
            };
            self.label_paths.push_str(path);
            self.labels.insert(
                l,
                LabelTarget {
                    node,
                    path: at..self.label_paths.len(),
                    found_by_path,
                    phandle: node.phandle(),
                },
            );
        }
        self.node_labels.push(start..self.kept_node_labels.len());
        // Room for the text: a cell of 4 bytes takes at most 11 characters.
        survey.size += 2 * depth + node.name.len() + 8;
        for prop in &node.props {
            survey.size += depth + prop.name.len() + 8 + 3 * prop.value.len();
            if !prop.labels.is_empty() {
                survey.labelled_props.push(prop);
            }
        }
        let mut names: FastSet<&str> = FastSet::default();
        for c in &node.children {
            // Tree::find takes the first child of a name, and splits the path at `/`.
            let first = found_by_path
                && !c.name.is_empty()
                && !c.name.contains('/')
                && (node.children.len() == 1 || names.insert(&c.name));
            let len = survey.path.len();
            survey.path.push('/');
            survey.path.push_str(&c.name);
            self.survey(c, first, depth + 1, survey);
            survey.path.truncate(len);
        }
    }

    fn tree(&mut self) {
        self.out.push_str("/dts-v1/;\n\n");
        let tree = self.tree;
        for (m, labels) in tree.memreserve.iter().zip(&self.memreserve_labels) {
            for l in labels {
                let _ = write!(self.out, "{l}: ");
            }
            let _ = writeln!(
                self.out,
                "/memreserve/\t0x{:016x} 0x{:016x};",
                m.address, m.size
            );
        }
        if !tree.memreserve.is_empty() {
            self.out.push('\n');
        }
        let guess = guess_boot_cpuid(tree);
        if tree.boot_cpuid != guess {
            let _ = writeln!(
                self.out,
                "// boot_cpuid_phys is 0x{:x} (dtc would guess 0x{guess:x}): compile with `dtc -b {}`\n",
                tree.boot_cpuid, tree.boot_cpuid
            );
        }
        self.node(&tree.root, 0);
        for l in &self.kept_node_labels[self.node_labels[0].clone()] {
            let _ = writeln!(self.out, "\n{l}: &{{/}} {{\n}};");
        }
    }

    fn node(&mut self, node: &'a Node, depth: usize) {
        let labels = self.node_labels[self.next_node].clone();
        self.next_node += 1;
        push_tabs(&mut self.out, depth);
        if depth == 0 {
            self.out.push_str("/ {\n");
        } else {
            for l in &self.kept_node_labels[labels] {
                self.out.push_str(l);
                self.out.push_str(": ");
            }
            self.out.push_str(&node.name);
            self.out.push_str(" {\n");
        }
        for prop in &node.props {
            push_tabs(&mut self.out, depth + 1);
            if !prop.labels.is_empty() {
                if let Some(labels) = self.prop_labels.get(&(prop as *const Property)) {
                    for l in labels {
                        self.out.push_str(l);
                        self.out.push_str(": ");
                    }
                }
            }
            self.out.push_str(&prop.name);
            if !prop.value.is_empty() {
                self.out.push_str(" = ");
                self.value(prop);
            }
            self.out.push_str(";\n");
        }
        for child in &node.children {
            self.out.push('\n');
            self.node(child, depth + 1);
        }
        push_tabs(&mut self.out, depth);
        self.out.push_str("};\n");
    }

    /// Writes the value from its chunks if they describe it, else as dtc guesses.
    fn value(&mut self, prop: &Property) {
        let start = self.out.len();
        if chunks_cover(prop) {
            let mut ok = true;
            for (i, c) in prop.chunks.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                if !self.chunk(prop, c) {
                    ok = false;
                    break;
                }
            }
            if ok {
                return;
            }
            self.out.truncate(start);
        }
        guess(&mut self.out, &prop.value);
    }

    /// Writes one chunk; false (with some text written) if it does not describe its
    /// bytes.
    fn chunk(&mut self, prop: &Property, c: &Chunk) -> bool {
        let start = c.offset as usize;
        let Some(bytes) = prop.value.get(start..start + c.len as usize) else {
            return false;
        };
        match &c.kind {
            ChunkKind::Cells { bits, elems } => {
                let w = match bits {
                    8 | 16 | 32 | 64 => usize::from(*bits / 8),
                    _ => return false,
                };
                if bytes.len() != elems.len() * w {
                    return false;
                }
                let no_refs = prop.name == "phandle" || prop.name == "linux,phandle";
                if *bits != 32 {
                    let _ = write!(self.out, "/bits/ {bits} ");
                }
                self.out.push('<');
                for (i, (e, b)) in elems.iter().zip(bytes.chunks_exact(w)).enumerate() {
                    if i > 0 {
                        self.out.push(' ');
                    }
                    let v = b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
                    match &e.reference {
                        Some(r) if *bits == 32 && !no_refs && self.phandle_ref_ok(r, v) => {
                            self.out.push('&');
                            self.out.push_str(r);
                        }
                        _ => push_cell(&mut self.out, v),
                    }
                }
                self.out.push('>');
                true
            }
            ChunkKind::String => match bytes.split_last() {
                Some((0, body)) => {
                    push_quoted(&mut self.out, body);
                    true
                }
                _ => false,
            },
            ChunkKind::Bytes => {
                hex_bytes(&mut self.out, bytes);
                true
            }
            ChunkKind::PathRef(r) => {
                let Some((&last, body)) = bytes.split_last() else {
                    return false;
                };
                if last != 0 {
                    hex_bytes(&mut self.out, bytes);
                    return true;
                }
                match self.target(r) {
                    Some((path, _)) if path.as_bytes() == body => {
                        self.out.push('&');
                        self.out.push_str(r);
                    }
                    _ => push_quoted(&mut self.out, body),
                }
                true
            }
        }
    }

    /// The node a reference (`label` or `{/path}`) designates in the printed DTS, with its
    /// path.
    fn target(&self, r: &str) -> Option<(&str, &'a Node)> {
        let path: &str = if let Some(inner) = r.strip_prefix('{').and_then(|x| x.strip_suffix('}'))
        {
            if !inner.bytes().all(is_path_char) {
                return None;
            }
            let node = self.tree.find(inner)?;
            // dtc writes the node's canonical path, not the path as written.
            self.paths().get(&(node as *const Node))?
        } else {
            let t = self.labels.get(r)?;
            let path = &self.label_paths[t.path.clone()];
            if t.found_by_path {
                return Some((path, t.node));
            }
            path
        };
        let node = self.tree.find(path)?;
        Some((path, node))
    }

    /// Every node's path, by address.
    fn paths(&self) -> &FastMap<*const Node, String> {
        self.paths.get_or_init(|| {
            let mut paths = FastMap::default();
            self.tree.walk(|p, n| {
                paths
                    .entry(n as *const Node)
                    .or_insert_with(|| p.to_string());
            });
            paths
        })
    }

    fn phandle_ref_ok(&self, r: &str, v: u64) -> bool {
        if v == 0 || v == 0xffff_ffff {
            return false;
        }
        let phandle = match self.labels.get(r) {
            Some(t) if t.found_by_path => t.phandle,
            _ => self.target(r).and_then(|(_, n)| n.phandle()),
        };
        phandle.map(u64::from) == Some(v)
    }
}

/// True if the chunks tile the value exactly, in order.
fn chunks_cover(prop: &Property) -> bool {
    if prop.chunks.is_empty() {
        return false;
    }
    let mut at = 0usize;
    for c in &prop.chunks {
        if c.offset as usize != at {
            return false;
        }
        at += c.len as usize;
    }
    at == prop.value.len()
}

/// dtc's `isstring`: printable ASCII, NUL, or one of the C escape characters.
fn is_string_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == 0 || b"\x07\x08\t\n\x0b\x0c\r".contains(&b)
}

/// Writes the form dtc's `-O dts` chooses for a value without type information.
fn guess(out: &mut String, v: &[u8]) {
    let nul = v.iter().filter(|&&b| b == 0).count();
    if v.last() == Some(&0) && v.iter().all(|&b| is_string_byte(b)) && nul <= v.len() - nul {
        let body = &v[..v.len() - 1];
        for (i, s) in body.split(|&b| b == 0).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_quoted(out, s);
        }
        return;
    }
    if v.len() % 4 == 0 {
        out.push('<');
        for (i, c) in v.chunks_exact(4).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_cell(out, u32::from_be_bytes([c[0], c[1], c[2], c[3]]).into());
        }
        out.push('>');
        return;
    }
    hex_bytes(out, v);
}

/// Writes `[01 ab …]`.
fn hex_bytes(out: &mut String, v: &[u8]) {
    out.push('[');
    for (i, &b) in v.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_hex_digits(out, b.into(), 2);
    }
    out.push(']');
}

/// Writes a cell as dtc does: `0x` and at least two hex digits.
fn push_cell(out: &mut String, v: u64) {
    out.push_str("0x");
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(2);
    push_hex_digits(out, v, digits);
}

/// Writes the low `digits` hex digits of `v`, lower case.
fn push_hex_digits(out: &mut String, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(char::from(HEX[((v >> (4 * k)) & 0xf) as usize]));
    }
}

fn push_tabs(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push('\t');
    }
}

/// A DTS string literal dtc reads back as exactly `body` (plus the NUL it appends).
#[cfg(test)]
fn quote(body: &[u8]) -> String {
    let mut s = String::with_capacity(body.len() + 2);
    push_quoted(&mut s, body);
    s
}

/// Writes a DTS string literal dtc reads back as exactly `body` (plus the NUL it appends).
fn push_quoted(s: &mut String, body: &[u8]) {
    s.push('"');
    for &b in body {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x07 => s.push_str("\\a"),
            0x08 => s.push_str("\\b"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            0x0b => s.push_str("\\v"),
            0x0c => s.push_str("\\f"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                s.push_str("\\x");
                push_hex_digits(s, b.into(), 2);
            }
        }
    }
    s.push('"');
}

/// dtc's guess for `boot_cpuid_phys`: the 4-byte `reg` of the first node under `/cpus`.
fn guess_boot_cpuid(tree: &Tree) -> u32 {
    tree.root
        .child("cpus")
        .and_then(|c| c.children.first())
        .and_then(|cpu| cpu.prop("reg"))
        .and_then(Property::as_u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guessed(v: &[u8]) -> String {
        let mut s = String::new();
        guess(&mut s, v);
        s
    }

    #[test]
    fn guesses_like_dtc() {
        assert_eq!(guessed(b"a\0b\0"), "\"a\", \"b\"");
        assert_eq!(guessed(b"\0\0"), "[00 00]");
        assert_eq!(guessed(&[0, 0, 0, 1]), "<0x01>");
        assert_eq!(guessed(&[1, 2, 3]), "[01 02 03]");
        assert_eq!(quote(b"\"\\\x01\xff"), "\"\\\"\\\\\\x01\\xff\"");
    }

    #[test]
    fn cells_like_format() {
        for v in [0u64, 1, 0xf, 0x10, 0xff, 0x100, 0x1234_5678, u64::MAX] {
            let mut s = String::new();
            push_cell(&mut s, v);
            assert_eq!(s, format!("0x{v:02x}"));
        }
    }

    /// `<&label>` with `value`, in a property named `name`.
    fn reference(name: &str, label: &str, value: u32) -> Property {
        let mut p = Property::cells_with_refs(name, &[crate::CellValue::Ref(label)]);
        p.value = value.to_be_bytes().to_vec();
        p
    }

    #[test]
    fn references_go_where_the_label_path_leads() {
        // dtc finds a label's node again by its path, which names the first sibling of a
        // name: a label on a later namesake (or under one) cannot be referenced.
        let mut t = Tree::default();
        let first = Node::new("a");
        let mut second = Node::new("a");
        second.labels.push("later".into());
        second.props.push(Property::u32s("phandle", &[1]));
        let mut inner = Node::new("b");
        inner.labels.push("under".into());
        inner.props.push(Property::u32s("phandle", &[2]));
        second.children.push(inner);
        let mut ok = Node::new("c");
        ok.labels.push("plain".into());
        ok.props.push(Property::u32s("phandle", &[3]));
        let mut slash = Node::new("d/e");
        slash.labels.push("slash".into());
        slash.props.push(Property::u32s("phandle", &[4]));
        t.root.children = vec![first, second, ok, slash];
        t.root.props = vec![
            reference("p1", "later", 1),
            reference("p2", "under", 2),
            reference("p3", "plain", 3),
            reference("p4", "slash", 4),
        ];
        let dts = print_dts(&t);
        for line in [
            "\tp1 = <0x01>;\n",
            "\tp2 = <0x02>;\n",
            "\tp3 = <&plain>;\n",
            "\tp4 = <0x04>;\n",
        ] {
            assert!(dts.contains(line), "missing {line:?} in\n{dts}");
        }
    }

    #[test]
    fn dts_writer_writes_what_print_dts_prints() {
        let mut t = Tree::default();
        let mut n = Node::new("n@1");
        n.props = vec![
            Property::u32s("cells", &[0, 0xf, 0x10, 0xffff_ffff]),
            Property::u32s("no-cells", &[]),
            Property::strings("strings", &["a", "", "q\"\\\n\u{0}\u{7f}é"]),
            Property::strings("no-strings", &[]),
            Property::empty("flag"),
        ];
        n.children.push(Node::new("leaf"));
        t.root.props.push(Property::string("top", "x"));
        t.root.children = vec![n, Node::new("empty")];

        let mut w = DtsWriter::new();
        w.prop_string("top", "x");
        w.begin_node("n@1");
        w.prop_u32s("cells", &[0, 0xf, 0x10, 0xffff_ffff]);
        w.prop_u32s("no-cells", &[]);
        w.prop_strings("strings", &["a", "", "q\"\\\n\u{0}\u{7f}é"]);
        w.prop_strings("no-strings", &[]);
        w.prop_empty("flag");
        w.begin_node("leaf");
        w.end_node();
        w.end_node();
        w.begin_node("empty");
        assert_eq!(w.finish(), print_dts(&t));
    }
}
