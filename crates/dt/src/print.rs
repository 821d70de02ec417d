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

use crate::{Chunk, ChunkKind, Node, Property, Tree};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Prints a tree as DTS.
pub fn print_dts(tree: &Tree) -> String {
    let mut p = Printer::new(tree);
    p.tree();
    p.out
}

struct Printer<'a> {
    tree: &'a Tree,
    out: String,
    /// Labels kept, per node (keyed by address; never dereferenced).
    node_labels: HashMap<*const Node, Vec<&'a str>>,
    /// Printed node label -> path.
    label_paths: HashMap<&'a str, String>,
    /// Labels kept on properties (keyed by address) and memreserves.
    prop_labels: HashMap<*const Property, Vec<&'a str>>,
    memreserve_labels: Vec<Vec<&'a str>>,
}

fn is_label(s: &str) -> bool {
    let mut it = s.bytes();
    matches!(it.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && it.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b",._+*#?@-/".contains(&b)
}

impl<'a> Printer<'a> {
    fn new(tree: &'a Tree) -> Self {
        let mut used: HashSet<&'a str> = HashSet::new();
        let mut keep = |labels: &'a [String]| -> Vec<&'a str> {
            let mut v = Vec::new();
            for l in labels {
                if is_label(l) && used.insert(l.as_str()) {
                    v.push(l.as_str());
                }
            }
            v
        };
        // Node labels first: references need them.
        let mut node_labels = HashMap::new();
        let mut label_paths = HashMap::new();
        tree.walk(|path, node| {
            let kept = keep(&node.labels);
            for l in &kept {
                label_paths.insert(*l, path.to_string());
            }
            node_labels.insert(node as *const Node, kept);
        });
        let memreserve_labels = tree.memreserve.iter().map(|m| keep(&m.labels)).collect();
        let mut prop_labels = HashMap::new();
        tree.walk(|_, node| {
            for p in &node.props {
                let kept = keep(&p.labels);
                if !kept.is_empty() {
                    prop_labels.insert(p as *const Property, kept);
                }
            }
        });
        Printer {
            tree,
            out: String::new(),
            node_labels,
            label_paths,
            prop_labels,
            memreserve_labels,
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
        if let Some(labels) = self.node_labels.get(&(&tree.root as *const Node)) {
            for l in labels {
                let _ = writeln!(self.out, "\n{l}: &{{/}} {{\n}};");
            }
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push('\t');
        }
    }

    fn node(&mut self, node: &'a Node, depth: usize) {
        self.indent(depth);
        if depth == 0 {
            self.out.push_str("/ {\n");
        } else {
            if let Some(labels) = self.node_labels.get(&(node as *const Node)) {
                for l in labels {
                    let _ = write!(self.out, "{l}: ");
                }
            }
            let _ = writeln!(self.out, "{} {{", node.name);
        }
        for prop in &node.props {
            self.indent(depth + 1);
            if let Some(labels) = self.prop_labels.get(&(prop as *const Property)) {
                for l in labels {
                    let _ = write!(self.out, "{l}: ");
                }
            }
            self.out.push_str(&prop.name);
            if !prop.value.is_empty() {
                self.out.push_str(" = ");
                let v = self.value(prop);
                self.out.push_str(&v);
            }
            self.out.push_str(";\n");
        }
        for child in &node.children {
            self.out.push('\n');
            self.node(child, depth + 1);
        }
        self.indent(depth);
        self.out.push_str("};\n");
    }

    fn value(&self, prop: &Property) -> String {
        if chunks_cover(prop) {
            let mut parts = Vec::new();
            for c in &prop.chunks {
                match self.chunk(prop, c) {
                    Some(s) => parts.push(s),
                    None => return guess(&prop.value),
                }
            }
            if !parts.is_empty() {
                return parts.join(", ");
            }
        }
        guess(&prop.value)
    }

    /// One chunk, or `None` if it does not describe its bytes.
    fn chunk(&self, prop: &Property, c: &Chunk) -> Option<String> {
        let start = c.offset as usize;
        let bytes = prop.value.get(start..start + c.len as usize)?;
        match &c.kind {
            ChunkKind::Cells { bits, elems } => {
                let w = match bits {
                    8 | 16 | 32 | 64 => usize::from(*bits / 8),
                    _ => return None,
                };
                if bytes.len() != elems.len() * w {
                    return None;
                }
                let no_refs = prop.name == "phandle" || prop.name == "linux,phandle";
                let mut s = String::new();
                if *bits != 32 {
                    let _ = write!(s, "/bits/ {bits} ");
                }
                s.push('<');
                for (i, (e, b)) in elems.iter().zip(bytes.chunks_exact(w)).enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    let v = b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
                    match &e.reference {
                        Some(r) if *bits == 32 && !no_refs && self.phandle_ref_ok(r, v) => {
                            let _ = write!(s, "&{r}");
                        }
                        _ => {
                            let _ = write!(s, "0x{v:02x}");
                        }
                    }
                }
                s.push('>');
                Some(s)
            }
            ChunkKind::String => {
                let (&last, body) = bytes.split_last()?;
                (last == 0).then(|| quote(body))
            }
            ChunkKind::Bytes => Some(hex_bytes(bytes)),
            ChunkKind::PathRef(r) => {
                let (&last, body) = bytes.split_last()?;
                if last != 0 {
                    return Some(hex_bytes(bytes));
                }
                match self.target(r) {
                    Some((path, _)) if path.as_bytes() == body => Some(format!("&{r}")),
                    _ => Some(quote(body)),
                }
            }
        }
    }

    /// The node a reference (`label` or `{/path}`) designates in the printed DTS.
    fn target(&self, r: &str) -> Option<(String, &'a Node)> {
        let path = if let Some(inner) = r.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            if !inner.bytes().all(is_path_char) {
                return None;
            }
            let node = self.tree.find(inner)?;
            // dtc writes the node's canonical path, not the path as written.
            let mut found = None;
            self.tree.walk(|p, n| {
                if found.is_none() && std::ptr::eq(n, node) {
                    found = Some(p.to_string());
                }
            });
            found?
        } else {
            self.label_paths.get(r)?.clone()
        };
        let node = self.tree.find(&path)?;
        Some((path, node))
    }

    fn phandle_ref_ok(&self, r: &str, v: u64) -> bool {
        if v == 0 || v == 0xffff_ffff {
            return false;
        }
        matches!(self.target(r), Some((_, n)) if n.phandle().map(u64::from) == Some(v))
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

/// The form dtc's `-O dts` chooses for a value without type information.
fn guess(v: &[u8]) -> String {
    let nul = v.iter().filter(|&&b| b == 0).count();
    if v.last() == Some(&0) && v.iter().all(|&b| is_string_byte(b)) && nul <= v.len() - nul {
        let body = &v[..v.len() - 1];
        return body
            .split(|&b| b == 0)
            .map(quote)
            .collect::<Vec<_>>()
            .join(", ");
    }
    if v.len() % 4 == 0 {
        let cells: Vec<String> = v
            .chunks_exact(4)
            .map(|c| format!("0x{:02x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        return format!("<{}>", cells.join(" "));
    }
    hex_bytes(v)
}

fn hex_bytes(v: &[u8]) -> String {
    let b: Vec<String> = v.iter().map(|b| format!("{b:02x}")).collect();
    format!("[{}]", b.join(" "))
}

/// A DTS string literal dtc reads back as exactly `body` (plus the NUL it appends).
fn quote(body: &[u8]) -> String {
    let mut s = String::with_capacity(body.len() + 2);
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
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
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

    #[test]
    fn guesses_like_dtc() {
        assert_eq!(guess(b"a\0b\0"), "\"a\", \"b\"");
        assert_eq!(guess(b"\0\0"), "[00 00]");
        assert_eq!(guess(&[0, 0, 0, 1]), "<0x01>");
        assert_eq!(guess(&[1, 2, 3]), "[01 02 03]");
        assert_eq!(quote(b"\"\\\x01\xff"), "\"\\\"\\\\\\x01\\xff\"");
    }
}
