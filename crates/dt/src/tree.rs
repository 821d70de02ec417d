//! The in-memory device tree shared by the DTS parser, the DTB reader and writer, the DTS
//! printer and the staticbus compiler.
//!
//! A [`Property`] stores its value as the raw big-endian bytes that go into a DTB, plus
//! optional [`Chunk`]s recording how the value was written in source (cell arrays, strings,
//! byte strings, references) with source spans. Chunks let diagnostics point at one cell
//! and let the DTS printer write values back readably (`<0x1 &peer>`, `"a", "b"`). Trees
//! read from a DTB have no spans and no chunks.

use staticbus_diag::Span;

/// A whole device tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// `/memreserve/` entries, in order.
    pub memreserve: Vec<MemReserve>,
    /// `boot_cpuid_phys` of the DTB header.
    pub boot_cpuid: u32,
    /// The root node (its name is empty).
    pub root: Node,
}

/// One `/memreserve/ <address> <size>;` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemReserve {
    /// Start address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// Labels attached in source.
    pub labels: Vec<String>,
    /// Where it was written.
    pub span: Option<Span>,
}

/// A node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Full name including any unit address (`evtchn@1`); empty for the root.
    pub name: String,
    /// Labels (`ec1: evtchn@1 { … }`), in the order first seen.
    pub labels: Vec<String>,
    /// Properties in order.
    pub props: Vec<Property>,
    /// Child nodes in order.
    pub children: Vec<Node>,
    /// Span of the node's name (or of `/` for the root) where it was first defined.
    pub span: Option<Span>,
}

/// A property.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Property {
    /// Name.
    pub name: String,
    /// Raw value bytes (big-endian cells, NUL-terminated strings) as stored in a DTB.
    pub value: Vec<u8>,
    /// Labels attached in source.
    pub labels: Vec<String>,
    /// Span of the whole `name = value;` (or `name;`).
    pub span: Option<Span>,
    /// Span of the name.
    pub name_span: Option<Span>,
    /// How the value was written, in order. Empty when unknown (DTB input).
    pub chunks: Vec<Chunk>,
}

/// One comma-separated component of a property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the component in [`Property::value`].
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
    /// What it is.
    pub kind: ChunkKind,
    /// Where it was written.
    pub span: Option<Span>,
}

/// The kind of a value component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// A `<…>` cell array (`/bits/ N` gives the width; default 32).
    Cells {
        /// Element width in bits: 8, 16, 32 or 64.
        bits: u8,
        /// One entry per element, in order.
        elems: Vec<Elem>,
    },
    /// A `"…"` string; `len` includes the NUL.
    String,
    /// A `[…]` byte string.
    Bytes,
    /// A `&label` or `&{/path}` outside `<…>`: the value holds the target's full path and a
    /// NUL. The string is the reference as written without `&` (`label` or `{/path}`).
    PathRef(String),
}

/// One element of a cell array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    /// Where it was written.
    pub span: Option<Span>,
    /// For a phandle reference (`&label` or `&{/path}` inside `<…>`), the reference as
    /// written without `&`. The element's bytes hold the resolved phandle.
    pub reference: Option<String>,
}

impl Tree {
    /// The node at an absolute path such as `/chosen/domU1`. `/` is the root. Path
    /// components must match node names exactly (including the unit address).
    pub fn find(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            node = node.child(comp)?;
        }
        Some(node)
    }

    /// Mutable variant of [`Tree::find`].
    pub fn find_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut node = &mut self.root;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            node = node.child_mut(comp)?;
        }
        Some(node)
    }

    /// Visits every node depth-first in tree order with its absolute path.
    pub fn walk<'a>(&'a self, mut f: impl FnMut(&str, &'a Node)) {
        fn go<'a>(path: &mut String, node: &'a Node, f: &mut impl FnMut(&str, &'a Node)) {
            f(if path.is_empty() { "/" } else { path }, node);
            for c in &node.children {
                let len = path.len();
                path.push('/');
                path.push_str(&c.name);
                go(path, c, f);
                path.truncate(len);
            }
        }
        let mut path = String::new();
        go(&mut path, &self.root, &mut f);
    }

    /// The path of the node carrying `label`, if any.
    pub fn path_of_label(&self, label: &str) -> Option<String> {
        let mut found = None;
        self.walk(|p, n| {
            if found.is_none() && n.labels.iter().any(|l| l == label) {
                found = Some(p.to_string());
            }
        });
        found
    }

    /// The path of the first node (in tree order) whose phandle is `phandle`.
    pub fn path_of_phandle(&self, phandle: u32) -> Option<String> {
        let mut found = None;
        self.walk(|p, n| {
            if found.is_none() && n.phandle() == Some(phandle) {
                found = Some(p.to_string());
            }
        });
        found
    }
}

impl Node {
    /// A node with a name and nothing else.
    pub fn new(name: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            ..Node::default()
        }
    }

    /// The name before `@`.
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or("")
    }

    /// The unit address after `@`, if any.
    pub fn unit_address(&self) -> Option<&str> {
        self.name.split_once('@').map(|(_, u)| u)
    }

    /// The property with this name.
    pub fn prop(&self, name: &str) -> Option<&Property> {
        self.props.iter().find(|p| p.name == name)
    }

    /// Mutable variant of [`Node::prop`].
    pub fn prop_mut(&mut self, name: &str) -> Option<&mut Property> {
        self.props.iter_mut().find(|p| p.name == name)
    }

    /// The direct child with exactly this name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Mutable variant of [`Node::child`].
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    /// The node's phandle from `phandle` (or `linux,phandle`), if it has a 4-byte one.
    pub fn phandle(&self) -> Option<u32> {
        self.prop("phandle")
            .or_else(|| self.prop("linux,phandle"))
            .and_then(|p| p.as_u32())
    }

    /// The strings of `compatible` (empty if absent or not a string list).
    pub fn compatible(&self) -> Vec<&str> {
        self.prop("compatible")
            .and_then(|p| p.as_strings())
            .unwrap_or_default()
    }

    /// True if `compatible` lists `compat`, compared ASCII-case-insensitively as Xen does.
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.compatible()
            .iter()
            .any(|c| c.eq_ignore_ascii_case(compat))
    }

    /// Sets a property: replaces the value of an existing one in place (keeping its
    /// position and labels), or appends it.
    pub fn set_prop(&mut self, prop: Property) {
        match self.props.iter_mut().find(|p| p.name == prop.name) {
            Some(p) => {
                p.value = prop.value;
                p.chunks = prop.chunks;
                p.span = prop.span.or(p.span);
            }
            None => self.props.push(prop),
        }
    }

    /// Returns the child with this name, creating it at the end if missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Node {
        let i = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.children.push(Node::new(name));
                self.children.len() - 1
            }
        };
        &mut self.children[i]
    }
}

impl Property {
    /// A property with no value (`name;`).
    pub fn empty(name: impl Into<String>) -> Property {
        Property {
            name: name.into(),
            ..Property::default()
        }
    }

    /// A property with raw bytes and no chunk information.
    pub fn raw(name: impl Into<String>, value: Vec<u8>) -> Property {
        Property {
            name: name.into(),
            value,
            ..Property::default()
        }
    }

    /// A single-string property.
    pub fn string(name: impl Into<String>, s: &str) -> Property {
        Property::strings(name, &[s])
    }

    /// A string-list property (`"a", "b"`).
    pub fn strings(name: impl Into<String>, list: &[&str]) -> Property {
        let mut p = Property::empty(name);
        p.value
            .reserve_exact(list.iter().map(|s| s.len() + 1).sum());
        p.chunks.reserve_exact(list.len());
        for s in list {
            let offset = p.value.len() as u32;
            p.value.extend_from_slice(s.as_bytes());
            p.value.push(0);
            p.chunks.push(Chunk {
                offset,
                len: s.len() as u32 + 1,
                kind: ChunkKind::String,
                span: None,
            });
        }
        p
    }

    /// A 32-bit cell array (`<a b c>`).
    pub fn u32s(name: impl Into<String>, cells: &[u32]) -> Property {
        // As `cells(name, 32, …)`, without widening the cells first.
        let mut p = Property::empty(name);
        p.value.reserve_exact(4 * cells.len());
        for c in cells {
            p.value.extend_from_slice(&c.to_be_bytes());
        }
        p.chunks = vec![Chunk {
            offset: 0,
            len: 4 * cells.len() as u32,
            kind: ChunkKind::Cells {
                bits: 32,
                elems: vec![
                    Elem {
                        span: None,
                        reference: None,
                    };
                    cells.len()
                ],
            },
            span: None,
        }];
        p
    }

    /// A cell array of the given width (8, 16, 32 or 64 bits); values are truncated to the
    /// width.
    pub fn cells(name: impl Into<String>, bits: u8, values: &[u64]) -> Property {
        let mut p = Property::empty(name);
        p.push_cells(bits, values);
        p
    }

    /// Appends a `<…>` chunk to the value.
    pub fn push_cells(&mut self, bits: u8, values: &[u64]) {
        let offset = self.value.len() as u32;
        let width = match bits {
            8 => 1,
            16 => 2,
            64 => 8,
            _ => 4,
        };
        self.value.reserve(width * values.len());
        for &v in values {
            match bits {
                8 => self.value.push(v as u8),
                16 => self.value.extend_from_slice(&(v as u16).to_be_bytes()),
                64 => self.value.extend_from_slice(&v.to_be_bytes()),
                _ => self.value.extend_from_slice(&(v as u32).to_be_bytes()),
            }
        }
        self.chunks.push(Chunk {
            offset,
            len: self.value.len() as u32 - offset,
            kind: ChunkKind::Cells {
                bits: if matches!(bits, 8 | 16 | 64) {
                    bits
                } else {
                    32
                },
                elems: values
                    .iter()
                    .map(|_| Elem {
                        span: None,
                        reference: None,
                    })
                    .collect(),
            },
            span: None,
        });
    }

    /// A 32-bit cell array whose elements are either numbers or phandle references to
    /// labels (resolved later by [`crate::resolve_references`]).
    pub fn cells_with_refs(name: impl Into<String>, cells: &[CellValue<'_>]) -> Property {
        let mut p = Property::empty(name);
        p.value.reserve_exact(4 * cells.len());
        let mut elems = Vec::with_capacity(cells.len());
        for c in cells {
            match c {
                CellValue::Num(n) => {
                    p.value.extend_from_slice(&n.to_be_bytes());
                    elems.push(Elem {
                        span: None,
                        reference: None,
                    });
                }
                CellValue::Ref(label) => {
                    p.value.extend_from_slice(&u32::MAX.to_be_bytes());
                    elems.push(Elem {
                        span: None,
                        reference: Some(label.to_string()),
                    });
                }
            }
        }
        p.chunks.push(Chunk {
            offset: 0,
            len: p.value.len() as u32,
            kind: ChunkKind::Cells { bits: 32, elems },
            span: None,
        });
        p
    }

    /// True if the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The value as one u32 if it is exactly 4 bytes.
    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.as_slice().try_into().ok()?))
    }

    /// The value as u32 cells if its length is a multiple of 4.
    pub fn as_u32s(&self) -> Option<Vec<u32>> {
        if self.value.len() % 4 != 0 {
            return None;
        }
        Some(
            self.value
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// The u32 cell at index `i`, if present.
    pub fn u32_at(&self, i: usize) -> Option<u32> {
        let b = self.value.get(i * 4..i * 4 + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a number of `cells` u32 cells starting at cell index `i` (big-endian, as a
    /// `reg` entry). `None` if out of range or `cells` is 0 or more than 2.
    pub fn read_cells(&self, i: usize, cells: u32) -> Option<u64> {
        match cells {
            1 => self.u32_at(i).map(u64::from),
            2 => Some((u64::from(self.u32_at(i)?) << 32) | u64::from(self.u32_at(i + 1)?)),
            _ => None,
        }
    }

    /// The value as one string if it is a single NUL-terminated UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        let (last, body) = self.value.split_last()?;
        if *last != 0 || body.contains(&0) {
            return None;
        }
        std::str::from_utf8(body).ok()
    }

    /// The value as a list of NUL-terminated UTF-8 strings.
    pub fn as_strings(&self) -> Option<Vec<&str>> {
        let (last, body) = self.value.split_last()?;
        if *last != 0 {
            return None;
        }
        body.split(|&b| b == 0)
            .map(|s| std::str::from_utf8(s).ok())
            .collect()
    }

    /// The best source span for the value bytes at `offset`: the cell array element,
    /// string or byte string that contains it, else the whole property.
    pub fn span_at(&self, offset: usize) -> Option<Span> {
        for c in &self.chunks {
            let (start, end) = (c.offset as usize, c.offset as usize + c.len as usize);
            if offset < start || offset >= end {
                continue;
            }
            if let ChunkKind::Cells { bits, elems } = &c.kind {
                let w = usize::from(*bits / 8).max(1);
                if let Some(e) = elems.get((offset - start) / w) {
                    if let Some(s) = e.span {
                        return Some(s);
                    }
                }
            }
            return c.span.or(self.span);
        }
        self.value_span().or(self.span)
    }

    /// The span covering all written value chunks, if known.
    pub fn value_span(&self) -> Option<Span> {
        let mut it = self.chunks.iter().filter_map(|c| c.span);
        let first = it.next()?;
        Some(it.fold(first, |a, b| a.to(b)))
    }

    /// The span of the u32 cell at index `i` (see [`Property::span_at`]).
    pub fn span_of_cell(&self, i: usize) -> Option<Span> {
        self.span_at(i * 4)
    }
}

/// A cell for [`Property::cells_with_refs`].
#[derive(Clone, Copy, Debug)]
pub enum CellValue<'a> {
    /// A number.
    Num(u32),
    /// A phandle reference to the node with this label.
    Ref(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors() {
        let p = Property::strings("compatible", &["xen,evtchn-v1", "foo"]);
        assert_eq!(p.as_strings().unwrap(), vec!["xen,evtchn-v1", "foo"]);
        assert_eq!(p.as_str(), None);
        let p = Property::u32s("reg", &[0, 0x4000_0000, 0, 0x1000]);
        assert_eq!(p.read_cells(0, 2), Some(0x4000_0000));
        assert_eq!(p.read_cells(2, 2), Some(0x1000));
        assert_eq!(p.read_cells(3, 2), None);
        assert_eq!(Property::empty("x").as_str(), None);
    }

    #[test]
    fn find_and_walk() {
        let mut t = Tree::default();
        t.root
            .child_or_insert("chosen")
            .child_or_insert("domU1")
            .labels = vec!["d1".into()];
        assert!(t.find("/chosen/domU1").is_some());
        assert_eq!(t.path_of_label("d1").as_deref(), Some("/chosen/domU1"));
        let mut paths = Vec::new();
        t.walk(|p, _| paths.push(p.to_string()));
        assert_eq!(paths, ["/", "/chosen", "/chosen/domU1"]);
    }

    #[test]
    fn compat_is_case_insensitive() {
        let mut n = Node::new("e");
        n.set_prop(Property::string("compatible", "XEN,EVTCHN-V1"));
        assert!(n.is_compatible("xen,evtchn-v1"));
    }
}
