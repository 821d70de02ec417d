//! A minimal read-only flattened device tree (DTB) reader: what a guest needs from the
//! tree Xen generates for it (`/chosen/bootargs`, `/reserved-memory/xen-shmem@…`, the
//! GIC node).
//!
//! Nothing here panics or reads out of bounds on a malformed blob: bad structure ends a
//! walk early (lookups return `None`), and [`Fdt::new`] checks the header.

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
const HEADER_LEN: usize = 40;

/// Why a blob is not a usable device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Shorter than its header or its `totalsize`.
    Truncated,
    /// The magic is not `0xd00dfeed`.
    BadMagic,
    /// `last_comp_version` is above 17 (a format this reader does not know).
    BadVersion,
    /// The structure or strings block lies outside the blob.
    BadLayout,
}

impl core::fmt::Display for FdtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FdtError::Truncated => "device tree blob is truncated",
            FdtError::BadMagic => "not a device tree blob (bad magic)",
            FdtError::BadVersion => "unsupported device tree blob version",
            FdtError::BadLayout => "device tree blocks lie outside the blob",
        })
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The `totalsize` field of a DTB header (first 8 bytes: magic, totalsize), checking the
/// magic. Used to learn how many bytes to look at before building an [`Fdt`].
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    if be32(header, 0).ok_or(FdtError::Truncated)? != MAGIC {
        return Err(FdtError::BadMagic);
    }
    Ok(be32(header, 4).ok_or(FdtError::Truncated)? as usize)
}

/// A device tree blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
}

/// A node of an [`Fdt`]: a position in its structure block.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    /// Offset of the node's first token after its `FDT_BEGIN_NODE` and name.
    body: usize,
    name: &'a str,
}

/// A property of a [`Node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    /// Property name.
    pub name: &'a str,
    /// Raw value.
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// The value as a NUL-terminated string (the first string of a string list), if it
    /// is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        let end = self.value.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&self.value[..end]).ok()
    }

    /// The value as a string list (`compatible = "a", "b"`): each NUL-terminated UTF-8
    /// string in order; stops at the first one that is not.
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.value;
        core::iter::from_fn(move || {
            let end = rest.iter().position(|&b| b == 0)?;
            let s = core::str::from_utf8(&rest[..end]).ok()?;
            rest = &rest[end + 1..];
            Some(s)
        })
    }

    /// The value as big-endian cells of `cells` 32-bit words each (1 or 2), read in
    /// order: `reg = <addr size>` with 2/2 cells is `as_cells(2)` → `[addr, size]`.
    /// Trailing bytes that do not fill a value are ignored.
    pub fn cells(&self, cells: usize) -> impl Iterator<Item = u64> + 'a {
        let value = self.value;
        let width = cells.clamp(1, 2) * 4;
        value.chunks_exact(width).map(|c| {
            c.chunks_exact(4).fold(0u64, |acc, w| {
                (acc << 32) | u64::from(be32(w, 0).unwrap_or(0))
            })
        })
    }
}

enum Token<'a> {
    Begin(&'a str),
    End,
    Prop(Property<'a>),
}

impl<'a> Fdt<'a> {
    /// Reads the header of `blob` (which may be longer than the tree's `totalsize`).
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        if blob.len() < HEADER_LEN {
            return Err(FdtError::Truncated);
        }
        let total = total_size(blob)?;
        let field = |i: usize| be32(blob, i * 4).map_or(0, |v| v as usize);
        let (off_struct, off_strings) = (field(2), field(3));
        let (last_comp, size_strings, size_struct) = (field(6), field(8), field(9));
        if last_comp > 17 {
            return Err(FdtError::BadVersion);
        }
        let blob = blob.get(..total).ok_or(FdtError::Truncated)?;
        let block = |off: usize, len: usize| {
            blob.get(off..off.checked_add(len)?)
                .ok_or(FdtError::BadLayout)
                .ok()
        };
        let structs = block(off_struct, size_struct).ok_or(FdtError::BadLayout)?;
        let strings = block(off_strings, size_strings).ok_or(FdtError::BadLayout)?;
        Ok(Fdt { structs, strings })
    }

    /// The root node, if the structure block starts with one.
    pub fn root(&self) -> Option<Node<'a>> {
        let mut at = 0;
        match self.token(&mut at)? {
            Token::Begin(name) => Some(Node {
                fdt: *self,
                body: at,
                name,
            }),
            _ => None,
        }
    }

    /// The node at `path` (`"/chosen"`, `"/reserved-memory"`). A path component without a
    /// unit address matches a node name with one (`"memory"` matches `memory@40000000`)
    /// when no exact match comes first.
    pub fn find(&self, path: &str) -> Option<Node<'a>> {
        let mut node = self.root()?;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            node = node
                .children()
                .find(|c| c.name == comp)
                .or_else(|| node.children().find(|c| c.base_name() == comp))?;
        }
        Some(node)
    }

    /// Property `name` of the node at `path`.
    pub fn property(&self, path: &str, name: &str) -> Option<Property<'a>> {
        self.find(path)?.property(name)
    }

    /// `/chosen/bootargs` as a string (empty if absent).
    pub fn bootargs(&self) -> &'a str {
        self.property("/chosen", "bootargs")
            .and_then(|p| p.as_str())
            .unwrap_or("")
    }

    /// Reads the token at `*at` (skipping NOPs) and advances `*at` past it. `None` at
    /// `FDT_END`, on an unknown token or on malformed data.
    fn token(&self, at: &mut usize) -> Option<Token<'a>> {
        loop {
            let tag = be32(self.structs, *at)?;
            *at += 4;
            match tag {
                NOP => continue,
                BEGIN_NODE => {
                    let rest = self.structs.get(*at..)?;
                    let len = rest.iter().position(|&b| b == 0)?;
                    let name = core::str::from_utf8(&rest[..len]).ok()?;
                    *at = align4(at.checked_add(len + 1)?)?;
                    return Some(Token::Begin(name));
                }
                END_NODE => return Some(Token::End),
                PROP => {
                    let len = be32(self.structs, *at)? as usize;
                    let nameoff = be32(self.structs, *at + 4)? as usize;
                    let start = *at + 8;
                    let value = self.structs.get(start..start.checked_add(len)?)?;
                    *at = align4(start + len)?;
                    let rest = self.strings.get(nameoff..)?;
                    let nlen = rest.iter().position(|&b| b == 0)?;
                    let name = core::str::from_utf8(&rest[..nlen]).ok()?;
                    return Some(Token::Prop(Property { name, value }));
                }
                END => return None,
                _ => return None,
            }
        }
    }
}

fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

impl<'a> Node<'a> {
    /// The node name with its unit address (`"xen-shmem@8000000"`; `""` for the root).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The node name without its unit address.
    pub fn base_name(&self) -> &'a str {
        self.name.split_once('@').map_or(self.name, |(b, _)| b)
    }

    /// The unit address (after `@`), if any.
    pub fn unit_address(&self) -> Option<&'a str> {
        self.name.split_once('@').map(|(_, u)| u)
    }

    /// The node's properties, in order.
    pub fn properties(&self) -> impl Iterator<Item = Property<'a>> + 'a {
        let fdt = self.fdt;
        let mut at = self.body;
        core::iter::from_fn(move || match fdt.token(&mut at)? {
            Token::Prop(p) => Some(p),
            _ => None,
        })
    }

    /// Property `name`.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// The node's direct children, in order.
    pub fn children(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let fdt = self.fdt;
        let mut at = self.body;
        let mut done = false;
        core::iter::from_fn(move || {
            // Depth relative to this node's body: 0 = among our properties/children.
            let mut depth = 0usize;
            while !done {
                let Some(tok) = fdt.token(&mut at) else {
                    done = true;
                    break;
                };
                match tok {
                    Token::Prop(_) => {}
                    Token::Begin(name) if depth == 0 => {
                        let child = Node {
                            fdt,
                            body: at,
                            name,
                        };
                        // Skip the child's subtree so the next call resumes after it.
                        let mut d = 1usize;
                        while d > 0 {
                            match fdt.token(&mut at) {
                                Some(Token::Begin(_)) => d += 1,
                                Some(Token::End) => d -= 1,
                                Some(Token::Prop(_)) => {}
                                None => {
                                    done = true;
                                    break;
                                }
                            }
                        }
                        return Some(child);
                    }
                    Token::Begin(_) => depth += 1,
                    Token::End if depth == 0 => done = true,
                    Token::End => depth -= 1,
                }
            }
            None
        })
    }
}

/// A static shared-memory region as Xen describes it to the guest:
/// `/reserved-memory/xen-shmem@<gpa>` with `xen,id` and `reg` (spec §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmNode<'a> {
    /// `xen,id` (the host tree's `xen,shm-id`).
    pub id: &'a str,
    /// Guest-physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl<'a> Fdt<'a> {
    /// The static shared-memory regions Xen mapped for this guest, from
    /// `/reserved-memory` children compatible with `xen,shared-memory-v1` (or named
    /// `xen-shmem@…`), with 2/2 address cells as Xen writes them.
    pub fn shm_regions(&self) -> impl Iterator<Item = ShmNode<'a>> + 'a {
        self.find("/reserved-memory")
            .into_iter()
            .flat_map(|rm| rm.children())
            .filter(|n| {
                n.base_name() == "xen-shmem"
                    || n.property("compatible").and_then(|p| p.as_str())
                        == Some(staticbus_abi::dt::GUEST_SHM_COMPAT)
            })
            .filter_map(|n| {
                let id = n.property("xen,id")?.as_str()?;
                let mut reg = n.property("reg")?.cells(2);
                Some(ShmNode {
                    id,
                    base: reg.next()?,
                    size: reg.next()?,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_diag::Sources;
    use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader};
    use std::string::ToString;
    use std::vec::Vec;

    fn dtb(dts: &str) -> Vec<u8> {
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            "t.dts",
            dts.to_string(),
            &DtsOptions::default(),
            &FsLoader,
        );
        assert!(!diags.has_errors(), "{diags:?}");
        write_dtb(&tree.unwrap())
    }

    const GUEST: &str = r#"/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    chosen {
        bootargs = "staticbus.domain=ping role=ping";
    };
    memory@40000000 {
        device_type = "memory";
        reg = <0 0x40000000 0 0x1000000>;
    };
    reserved-memory {
        #address-cells = <2>;
        #size-cells = <2>;
        ranges;
        xen-shmem@8000000 {
            compatible = "xen,shared-memory-v1";
            reg = <0 0x08000000 0 0x1000>;
            xen,id = "pingpong";
            xen,offset = <0 0>;
        };
        other@9000000 { reg = <0 0x09000000 0 0x1000>; };
    };
    sbsa-uart@22000000 {
        compatible = "arm,sbsa-uart", "x,y";
        reg = <0 0x22000000 0 0x1000>;
    };
};
"#;

    #[test]
    fn finds_paths_properties_and_children() {
        let blob = dtb(GUEST);
        assert_eq!(total_size(&blob), Ok(blob.len()));
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.bootargs(), "staticbus.domain=ping role=ping");
        let root = fdt.root().unwrap();
        assert_eq!(root.name(), "");
        let names: Vec<_> = root.children().map(|n| n.name()).collect();
        assert_eq!(
            names,
            [
                "chosen",
                "memory@40000000",
                "reserved-memory",
                "sbsa-uart@22000000"
            ]
        );
        let mem = fdt.find("/memory").unwrap();
        assert_eq!(mem.unit_address(), Some("40000000"));
        let reg: Vec<_> = mem.property("reg").unwrap().cells(2).collect();
        assert_eq!(reg, [0x4000_0000, 0x100_0000]);
        assert_eq!(
            fdt.property("/", "#address-cells")
                .unwrap()
                .cells(1)
                .collect::<Vec<_>>(),
            [2]
        );
        let compat = fdt.property("/sbsa-uart", "compatible").unwrap();
        assert_eq!(
            compat.strings().collect::<Vec<_>>(),
            ["arm,sbsa-uart", "x,y"]
        );
        assert!(fdt.find("/nope").is_none());
        assert!(fdt.property("/chosen", "nope").is_none());
        let shm: Vec<_> = fdt.shm_regions().collect();
        assert_eq!(
            shm,
            [ShmNode {
                id: "pingpong",
                base: 0x0800_0000,
                size: 0x1000
            }]
        );
    }

    #[test]
    fn a_blob_longer_than_totalsize_is_fine() {
        let mut blob = dtb(GUEST);
        blob.extend_from_slice(&[0xff; 64]);
        assert_eq!(
            Fdt::new(&blob).unwrap().bootargs(),
            "staticbus.domain=ping role=ping"
        );
    }

    #[test]
    fn malformed_blobs_are_rejected_or_walk_short() {
        let blob = dtb(GUEST);
        assert_eq!(Fdt::new(&blob[..20]).unwrap_err(), FdtError::Truncated);
        assert_eq!(
            Fdt::new(&blob[..blob.len() - 1]).unwrap_err(),
            FdtError::Truncated
        );
        let mut bad = blob.clone();
        bad[0] = 0;
        assert_eq!(Fdt::new(&bad).unwrap_err(), FdtError::BadMagic);
        let mut bad = blob.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes()); // off_dt_struct
        assert_eq!(Fdt::new(&bad).unwrap_err(), FdtError::BadLayout);
        // Corrupt every byte of the structure block in turn: lookups never panic.
        let off = be32(&blob, 8).unwrap() as usize;
        let len = be32(&blob, 36).unwrap() as usize;
        for i in off..off + len {
            for v in [0u8, 3, 0xff] {
                let mut b = blob.clone();
                b[i] = v;
                if let Ok(f) = Fdt::new(&b) {
                    let _ = f.bootargs();
                    let _ = f.shm_regions().count();
                    let _ = f.root().map(|r| r.children().count());
                }
            }
        }
    }
}
