//! DTB (flattened device tree) reader and writer.
//!
//! [`write_dtb`] produces exactly the bytes `dtc -I dts -O dtb` (dtc 1.6.1) writes for the
//! same tree: a version 17 header (last compatible version 16), the memory reservation
//! block right after the 40-byte header, the structure block, then the strings block, no
//! padding. The strings block is built the way dtc builds it: a property name reuses the
//! first place in the table where it already occurs followed by a NUL (so `bar` shares the
//! tail of `foo-bar`), otherwise it is appended.
//!
//! [`read_dtb`] is a defensive hand-written reader: every offset and size is checked
//! before use, nesting is capped at [`MAX_DEPTH`], allocations are bounded by the size of
//! the blob, and every problem is a [`Diagnostic`] with one of the codes in [`CODES`].

use crate::print::FastMap;
use crate::{MemReserve, Node, Property, Tree};
use staticbus_diag::{Code, Diagnostic, Diagnostics, FileId, Location, Severity};

/// `d00dfeed`, the first four bytes of every DTB.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Header size of a version 17 blob (version 16 lacks the final `size_dt_struct` word).
const HEADER_V17: usize = 40;
const HEADER_V16: usize = 36;
/// Deepest node nesting [`read_dtb`] accepts (the root is depth 1).
pub const MAX_DEPTH: usize = 256;

const XEN_CHECK_HEADER: &str = "libfdt's fdt_check_header() rejects the blob and Xen panics \
                                (\"No valid device tree\") before the console is up: a build without early printk (Debian's) prints nothing and never resets";

const SHORT_HEADER: Code = Code {
    id: "SB0040",
    severity: Severity::Error,
    title: "DTB shorter than its header",
    xen: "Xen reads the header past the end of the loaded blob and refuses it (panic \
          \"Invalid device tree blob at physical address …\" or \"No valid device tree\") \
          before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const BAD_MAGIC: Code = Code {
    id: "SB0041",
    severity: Severity::Error,
    title: "DTB does not start with the magic number 0xd00dfeed",
    xen: "early_fdt_map() rejects the blob and Xen panics (\"Invalid device tree blob at \
          physical address …\") before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const BAD_TOTALSIZE: Code = Code {
    id: "SB0042",
    severity: Severity::Error,
    title: "DTB totalsize does not fit the file",
    xen: "Xen trusts totalsize: a larger value makes it parse whatever follows the loaded \
          blob in memory, a value smaller than the header makes fdt_check_header() fail \
          (panic \"No valid device tree\") before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const BAD_VERSION: Code = Code {
    id: "SB0043",
    severity: Severity::Error,
    title: "unsupported DTB version",
    xen: XEN_CHECK_HEADER,
};
const BAD_BLOCK: Code = Code {
    id: "SB0044",
    severity: Severity::Error,
    title: "DTB block outside the blob or overlapping the header",
    xen: XEN_CHECK_HEADER,
};
const MISALIGNED: Code = Code {
    id: "SB0045",
    severity: Severity::Error,
    title: "misaligned DTB block",
    xen: "libfdt finds no node in a structure block that is not 4-byte aligned, and Xen's \
          early FDT parsing fails before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const MEMRESERVE_UNTERMINATED: Code = Code {
    id: "SB0046",
    severity: Severity::Error,
    title: "memory reservation block not terminated",
    xen: "fdt_num_mem_rsv() fails and Xen panics (\"Parsing FDT memory reserve map \
          failed\") before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const STRUCT_TRUNCATED: Code = Code {
    id: "SB0047",
    severity: Severity::Error,
    title: "structure block ends in the middle of a token",
    xen: "Xen does not check the structure block's declared size (size_dt_struct): it reads \
          the tokens after it as they are, so a blob whose bytes past that point are intact is \
          accepted (Xen 4.17 booted one declared to end inside a property); a blob really cut \
          there fails like a truncated one (SB0042)",
};
const UNKNOWN_TOKEN: Code = Code {
    id: "SB0048",
    severity: Severity::Error,
    title: "unknown token in the structure block",
    xen: "libfdt's node walk stops at the token; 4.17/4.18 ignore the early scan's error, so \
          the nodes after it are missing (a domain whose kernel module comes later: `Missing \
          kernel boot module?`, panic `Could not set up domain …`); 4.19+ panic (\"Early FDT \
          parsing failed\") before the console is up; a bad token in place of the final \
          FDT_END is never read",
};
const BAD_NAME: Code = Code {
    id: "SB0049",
    severity: Severity::Error,
    title: "node or property name is not valid UTF-8",
    xen: "Xen accepts any bytes but such a name never matches the ASCII names Xen looks up \
          (chosen, xen,domain, …), so the node or property is silently ignored",
};
const NAME_OFFSET: Code = Code {
    id: "SB0050",
    severity: Severity::Error,
    title: "property name offset outside the strings block",
    xen: "fdt_get_string() fails (FDT_ERR_BADOFFSET): Xen cannot see the property, and \
          4.17/4.18's early scan stops at it (the error is ignored), so the nodes after it are \
          missing: a domain whose kernel module comes later gets `Missing kernel boot \
          module?`, panic `Could not set up domain …`; 4.19+ panic before the console is up \
          (4.20 shows nothing at all)",
};
const NAME_UNTERMINATED: Code = Code {
    id: "SB0051",
    severity: Severity::Error,
    title: "property name not NUL-terminated inside the strings block",
    xen: "fdt_get_string() fails (FDT_ERR_TRUNCATED): Xen cannot see the property, and \
          4.17/4.18's early scan stops at it (the error is ignored), so the nodes after it are \
          missing: a domain whose kernel module comes later gets `Missing kernel boot \
          module?`, panic `Could not set up domain …`; 4.19+ panic before the console is up \
          (4.20 shows nothing at all)",
};
const BAD_NESTING: Code = Code {
    id: "SB0052",
    severity: Severity::Error,
    title: "malformed node nesting in the structure block",
    xen: "Xen takes the nesting as it is, so the nodes after the fault land under other \
          parents; what it then does depends on what moved (a domain's endpoint moved out of \
          the domain: `evtchn: could not find domains`, panic `Could not set up domains \
          evtchn`, on 4.17; 4.20 showed nothing at all for the same blob)",
};
const TOO_DEEP: Code = Code {
    id: "SB0053",
    severity: Severity::Error,
    title: "nodes nested too deeply",
    xen: "Xen's early scan skips nodes nested 16 or more levels deep with a warning, but a tree \
          257 levels deep makes Xen 4.17 (4.20 boots it) die before the console is up: a build without early printk (Debian's) prints nothing and never resets",
};
const PROP_AFTER_NODE: Code = Code {
    id: "SB0054",
    severity: Severity::Error,
    title: "property after a subnode",
    xen: "libfdt and Xen's unflattening only look for properties before the first subnode: \
          the property is silently ignored (on 4.17 a domain whose vpl011 comes after its \
          subnodes is built without a console; 4.20 showed nothing at all for the same blob)",
};

/// Every code this module emits.
pub const CODES: &[Code] = &[
    SHORT_HEADER,
    BAD_MAGIC,
    BAD_TOTALSIZE,
    BAD_VERSION,
    BAD_BLOCK,
    MISALIGNED,
    MEMRESERVE_UNTERMINATED,
    STRUCT_TRUNCATED,
    UNKNOWN_TOKEN,
    BAD_NAME,
    NAME_OFFSET,
    NAME_UNTERMINATED,
    BAD_NESTING,
    TOO_DEEP,
    PROP_AFTER_NODE,
];

// ---------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------

/// The strings block, filled the way dtc fills it.
#[derive(Default)]
struct StringTable<'a> {
    bytes: Vec<u8>,
    /// Offsets already handed out (appending never changes the first occurrence of a
    /// string, so an answer stays valid).
    seen: FastMap<&'a str, u32>,
}

impl<'a> StringTable<'a> {
    /// dtc's rule: the first offset `i` where `name` followed by NUL starts, else append.
    fn offset(&mut self, name: &'a str) -> u32 {
        if let Some(&off) = self.seen.get(name) {
            return off;
        }
        let needle = name.as_bytes();
        let n = needle.len();
        let found = (0..self.bytes.len())
            .find(|&i| self.bytes.get(i + n) == Some(&0) && &self.bytes[i..i + n] == needle);
        let off = match found {
            Some(i) => i,
            None => {
                let i = self.bytes.len();
                self.bytes.extend_from_slice(needle);
                self.bytes.push(0);
                i
            }
        };
        let off = u32::try_from(off).unwrap_or(u32::MAX);
        self.seen.insert(name, off);
        off
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn write_node<'a>(node: &'a Node, out: &mut Vec<u8>, strings: &mut StringTable<'a>) {
    put_u32(out, FDT_BEGIN_NODE);
    out.extend_from_slice(node.name.as_bytes());
    out.push(0);
    pad4(out);
    for p in &node.props {
        put_u32(out, FDT_PROP);
        put_u32(out, len_u32(p.value.len()));
        let off = strings.offset(&p.name);
        put_u32(out, off);
        out.extend_from_slice(&p.value);
        pad4(out);
    }
    for c in &node.children {
        write_node(c, out, strings);
    }
    put_u32(out, FDT_END_NODE);
}

/// Writes a tree as a DTB (version 17), byte-identical to `dtc -I dts -O dtb` for the same
/// tree.
///
/// Names are written as given; a name containing a NUL byte cannot be represented in a
/// DTB and does not read back the same. Labels, spans and chunks are not part of a DTB.
/// Sizes beyond 4 GiB saturate (such a tree cannot be a DTB at all).
pub fn write_dtb(tree: &Tree) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_V17];
    let off_mem_rsvmap = out.len();
    for r in &tree.memreserve {
        out.extend_from_slice(&r.address.to_be_bytes());
        out.extend_from_slice(&r.size.to_be_bytes());
    }
    out.extend_from_slice(&[0u8; 16]);
    let off_dt_struct = out.len();
    let mut strings = StringTable::default();
    write_node(&tree.root, &mut out, &mut strings);
    put_u32(&mut out, FDT_END);
    let off_dt_strings = out.len();
    out.extend_from_slice(&strings.bytes);
    let header = [
        FDT_MAGIC,
        len_u32(out.len()),
        len_u32(off_dt_struct),
        len_u32(off_dt_strings),
        len_u32(off_mem_rsvmap),
        17,
        16,
        tree.boot_cpuid,
        len_u32(strings.bytes.len()),
        len_u32(off_dt_strings - off_dt_struct),
    ];
    for (i, v) in header.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

fn at(offset: usize) -> String {
    format!("at byte offset {offset} (0x{offset:x}) of the blob")
}

/// One failure: a diagnostic list with exactly one entry.
fn fail(d: Diagnostic) -> Diagnostics {
    let mut ds = Diagnostics::new();
    ds.push(d);
    ds
}

struct Header {
    totalsize: usize,
    off_dt_struct: usize,
    off_dt_strings: usize,
    off_mem_rsvmap: usize,
    boot_cpuid: u32,
    size_dt_strings: usize,
    /// End of the structure block (exclusive).
    struct_end: usize,
}

fn read_header(bytes: &[u8], file: FileId) -> Result<Header, Diagnostics> {
    let here = Location::File { file };
    let short = |need: usize| {
        fail(
            Diagnostic::new(
                SHORT_HEADER,
                here.clone(),
                format!(
                    "the file is {} bytes long, too short for a DTB header ({need} bytes)",
                    bytes.len()
                ),
            )
            .help("the file is truncated or is not a DTB; rebuild it with `dtc -O dtb`")
            .note(at(bytes.len())),
        )
    };
    let Some(magic) = be32(bytes, 0) else {
        return Err(short(HEADER_V17));
    };
    if magic != FDT_MAGIC {
        let mut d = Diagnostic::new(
            BAD_MAGIC,
            here.clone(),
            format!("bad DTB magic 0x{magic:08x} (expected 0xd00dfeed)"),
        )
        .note(at(0));
        d = if magic == FDT_MAGIC.swap_bytes() {
            d.help("the blob is byte-swapped (little-endian); DTBs are big-endian")
        } else if bytes.iter().take(64).all(|b| b.is_ascii()) {
            d.help("this looks like text; compile DTS sources to a DTB with `dtc -O dtb`")
        } else {
            d.help("the file is not a flattened device tree blob")
        };
        return Err(fail(d));
    }
    let (Some(version), Some(last_comp)) = (be32(bytes, 20), be32(bytes, 24)) else {
        return Err(short(HEADER_V17));
    };
    if version < 16 || last_comp > 17 {
        return Err(fail(
            Diagnostic::new(
                BAD_VERSION,
                here.clone(),
                format!(
                    "DTB version {version} (last compatible version {last_comp}) is not \
                     supported; versions 16 and 17 are"
                ),
            )
            .help("rebuild the blob with a current dtc (`dtc -O dtb` writes version 17)")
            .note(at(20)),
        ));
    }
    let hdr = if version >= 17 {
        HEADER_V17
    } else {
        HEADER_V16
    };
    if bytes.len() < hdr {
        return Err(short(hdr));
    }
    let word = |i: usize| be32(bytes, i * 4).unwrap_or(0) as usize;
    let totalsize = word(1);
    if totalsize > bytes.len() || totalsize < hdr {
        let msg = if totalsize > bytes.len() {
            format!(
                "the header's totalsize is {totalsize} bytes but the file has only {}",
                bytes.len()
            )
        } else {
            format!("the header's totalsize ({totalsize}) is smaller than the header ({hdr})")
        };
        return Err(fail(
            Diagnostic::new(BAD_TOTALSIZE, here.clone(), msg)
                .help("the blob is truncated or its header is corrupt; rebuild it with dtc")
                .note(at(4)),
        ));
    }
    let off_dt_struct = word(2);
    let off_dt_strings = word(3);
    let off_mem_rsvmap = word(4);
    let boot_cpuid = be32(bytes, 28).unwrap_or(0);
    let size_dt_strings = word(8);
    let size_dt_struct = if version >= 17 { Some(word(9)) } else { None };

    let block = |what: &str, off: usize, size: Option<usize>, field: usize| {
        let end = match size {
            Some(s) => off.checked_add(s),
            None => Some(off),
        };
        let bad = off < hdr || end.is_none_or(|e| e > totalsize);
        if !bad {
            return Ok(());
        }
        let range = match size {
            Some(s) => format!("{off}..{}", off as u128 + s as u128),
            None => format!("{off}"),
        };
        let why = if off < hdr {
            format!("overlaps the {hdr}-byte header")
        } else {
            format!("runs past totalsize ({totalsize})")
        };
        Err(fail(
            Diagnostic::new(
                BAD_BLOCK,
                here.clone(),
                format!("the {what} (bytes {range}) {why}"),
            )
            .help("the header is corrupt; rebuild the blob with dtc")
            .note(format!("the offset is in the header field {}", at(field))),
        ))
    };
    block("memory reservation block", off_mem_rsvmap, None, 16)?;
    block("structure block", off_dt_struct, size_dt_struct, 8)?;
    block("strings block", off_dt_strings, Some(size_dt_strings), 12)?;
    for (what, off, align, field) in [
        ("memory reservation block", off_mem_rsvmap, 8, 16),
        ("structure block", off_dt_struct, 4, 8),
    ] {
        if off % align != 0 {
            return Err(fail(
                Diagnostic::new(
                    MISALIGNED,
                    here.clone(),
                    format!(
                        "the {what} starts at offset {off}, which is not a multiple of {align}"
                    ),
                )
                .help("the header is corrupt; rebuild the blob with dtc")
                .note(format!("the offset is in the header field {}", at(field))),
            ));
        }
    }
    let struct_end = match size_dt_struct {
        Some(s) => off_dt_struct + s,
        None => totalsize,
    };
    Ok(Header {
        totalsize,
        off_dt_struct,
        off_dt_strings,
        off_mem_rsvmap,
        boot_cpuid,
        size_dt_strings,
        struct_end,
    })
}

fn read_memreserve(blob: &[u8], h: &Header, file: FileId) -> Result<Vec<MemReserve>, Diagnostics> {
    let mut list = Vec::new();
    let mut off = h.off_mem_rsvmap;
    loop {
        let (Some(address), Some(size)) = (be64(blob, off), be64(blob, off + 8)) else {
            return Err(fail(
                Diagnostic::new(
                    MEMRESERVE_UNTERMINATED,
                    Location::File { file },
                    format!(
                        "the memory reservation block has no terminating all-zero entry \
                         before the end of the blob ({} entries read)",
                        list.len()
                    ),
                )
                .help("the blob is truncated or its header is corrupt; rebuild it with dtc")
                .note(format!("the block starts {}", at(h.off_mem_rsvmap)))
                .note(format!("the entry that would follow starts {}", at(off))),
            ));
        };
        if address == 0 && size == 0 {
            return Ok(list);
        }
        list.push(MemReserve {
            address,
            size,
            labels: Vec::new(),
            span: None,
        });
        off += 16;
    }
}

/// A node being read, with the structure-block bookkeeping it needs.
struct Open {
    node: Node,
    has_children: bool,
}

struct StructReader<'a> {
    blob: &'a [u8],
    file: FileId,
    strings: &'a [u8],
    strings_off: usize,
    start: usize,
    end: usize,
    stack: Vec<Open>,
}

impl StructReader<'_> {
    /// Path of the innermost open node (or of the node about to be opened, with `extra`).
    fn path(&self, extra: Option<&str>) -> String {
        let mut p = String::new();
        for o in self.stack.iter().skip(1) {
            p.push('/');
            p.push_str(&o.node.name);
        }
        if let Some(e) = extra {
            if !self.stack.is_empty() {
                p.push('/');
                p.push_str(e);
            }
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    fn loc(&self, extra: Option<&str>, property: Option<&str>) -> Location {
        Location::Node {
            file: self.file,
            path: self.path(extra),
            property: property.map(str::to_string),
        }
    }

    fn truncated(&self, what: &str, off: usize, property: Option<&str>) -> Diagnostics {
        fail(
            Diagnostic::new(
                STRUCT_TRUNCATED,
                self.loc(None, property),
                format!("the structure block ends inside {what}"),
            )
            .help("the blob is truncated or its header's structure block size is wrong")
            .note(at(off))
            .note(format!("the structure block ends {}", at(self.end))),
        )
    }

    fn nesting(&self, msg: String, off: usize) -> Diagnostics {
        fail(
            Diagnostic::new(BAD_NESTING, self.loc(None, None), msg)
                .help("the structure block is corrupt; rebuild the blob with dtc")
                .note(at(off)),
        )
    }

    fn word(&self, pos: usize) -> Option<u32> {
        if pos.checked_add(4)? > self.end {
            return None;
        }
        be32(self.blob, pos)
    }

    fn read(mut self) -> Result<Node, Diagnostics> {
        let mut pos = self.start;
        let mut root: Option<Node> = None;
        loop {
            let tag_off = pos;
            let Some(tag) = self.word(pos) else {
                let what = if root.is_some() {
                    "the tree: FDT_END is missing"
                } else {
                    "a node: FDT_END_NODE and FDT_END are missing"
                };
                return Err(self.truncated(what, tag_off, None));
            };
            pos += 4;
            match tag {
                FDT_BEGIN_NODE => {
                    if root.is_some() {
                        return Err(self.nesting(
                            "a second top-level node follows the root node".into(),
                            tag_off,
                        ));
                    }
                    let rest = self.blob.get(pos..self.end).unwrap_or(&[]);
                    let Some(len) = rest.iter().position(|&b| b == 0) else {
                        return Err(self.truncated("a node name (no NUL)", pos, None));
                    };
                    let raw = &rest[..len];
                    let name = match std::str::from_utf8(raw) {
                        Ok(s) => s.to_string(),
                        Err(_) => {
                            let lossy = String::from_utf8_lossy(raw).into_owned();
                            return Err(fail(
                                Diagnostic::new(
                                    BAD_NAME,
                                    self.loc(Some(&lossy), None),
                                    format!("node name {lossy:?} is not valid UTF-8"),
                                )
                                .help("node names are ASCII: letters, digits and ,._+-@")
                                .note(at(pos)),
                            ));
                        }
                    };
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(fail(
                            Diagnostic::new(
                                TOO_DEEP,
                                self.loc(None, None),
                                format!("nodes are nested more than {MAX_DEPTH} levels deep"),
                            )
                            .help("the blob is corrupt or hostile")
                            .note(at(tag_off)),
                        ));
                    }
                    pos = align4(pos + len + 1).unwrap_or(usize::MAX);
                    if pos > self.end {
                        return Err(self.truncated("the padding of a node name", tag_off, None));
                    }
                    if let Some(parent) = self.stack.last_mut() {
                        parent.has_children = true;
                    }
                    self.stack.push(Open {
                        node: Node::new(name),
                        has_children: false,
                    });
                }
                FDT_END_NODE => {
                    let Some(done) = self.stack.pop() else {
                        return Err(
                            self.nesting("FDT_END_NODE without an open node".into(), tag_off)
                        );
                    };
                    match self.stack.last_mut() {
                        Some(parent) => parent.node.children.push(done.node),
                        None => root = Some(done.node),
                    }
                }
                FDT_PROP => pos = self.prop(tag_off, pos)?,
                FDT_NOP => {}
                FDT_END => {
                    if !self.stack.is_empty() {
                        return Err(self.nesting(
                            format!("FDT_END while {} node(s) are still open", self.stack.len()),
                            tag_off,
                        ));
                    }
                    return match root {
                        Some(r) => Ok(r),
                        None => {
                            Err(self
                                .nesting("the structure block has no root node".into(), tag_off))
                        }
                    };
                }
                other => {
                    return Err(fail(
                        Diagnostic::new(
                            UNKNOWN_TOKEN,
                            self.loc(None, None),
                            format!("unknown structure block token 0x{other:08x}"),
                        )
                        .help(
                            "valid tokens are FDT_BEGIN_NODE (1), FDT_END_NODE (2), FDT_PROP (3), \
                             FDT_NOP (4) and FDT_END (9); the blob is corrupt",
                        )
                        .note(at(tag_off)),
                    ));
                }
            }
        }
    }

    /// Reads one property whose FDT_PROP tag is at `tag_off`; `pos` is just after the tag.
    /// Returns the position after the (padded) value.
    fn prop(&mut self, tag_off: usize, pos: usize) -> Result<usize, Diagnostics> {
        if self.stack.is_empty() {
            return Err(self.nesting("a property outside any node".into(), tag_off));
        }
        let (Some(len), Some(nameoff)) = (self.word(pos), self.word(pos + 4)) else {
            return Err(self.truncated("a property header", tag_off, None));
        };
        let (len, nameoff) = (len as usize, nameoff as usize);
        let Some(tail) = self.strings.get(nameoff..).filter(|t| !t.is_empty()) else {
            return Err(fail(
                Diagnostic::new(
                    NAME_OFFSET,
                    self.loc(None, None),
                    format!(
                        "a property's name offset {nameoff} is outside the {}-byte strings block",
                        self.strings.len()
                    ),
                )
                .help("the blob is corrupt; rebuild it with dtc")
                .note(format!("the property starts {}", at(tag_off)))
                .note(format!("the strings block starts {}", at(self.strings_off))),
            ));
        };
        let Some(nlen) = tail.iter().position(|&b| b == 0) else {
            return Err(fail(
                Diagnostic::new(
                    NAME_UNTERMINATED,
                    self.loc(None, None),
                    format!(
                        "a property's name at strings offset {nameoff} runs to the end of the \
                         strings block without a NUL"
                    ),
                )
                .help("the blob is corrupt or its strings block size is wrong; rebuild it with dtc")
                .note(format!("the property starts {}", at(tag_off)))
                .note(format!(
                    "the name starts {}",
                    at(self.strings_off + nameoff)
                )),
            ));
        };
        let raw = &tail[..nlen];
        let name = match std::str::from_utf8(raw) {
            Ok(s) => s.to_string(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(raw).into_owned();
                return Err(fail(
                    Diagnostic::new(
                        BAD_NAME,
                        self.loc(None, Some(&lossy)),
                        format!("property name {lossy:?} is not valid UTF-8"),
                    )
                    .help("property names are ASCII: letters, digits and ,._+?#-")
                    .note(format!("the property starts {}", at(tag_off)))
                    .note(format!(
                        "the name starts {}",
                        at(self.strings_off + nameoff)
                    )),
                ));
            }
        };
        let vstart = pos + 8;
        let vend = vstart.checked_add(len).filter(|&e| e <= self.end);
        let Some(vend) = vend else {
            return Err(fail(
                Diagnostic::new(
                    STRUCT_TRUNCATED,
                    self.loc(None, Some(&name)),
                    format!(
                        "property `{name}` claims {len} value bytes, past the end of the \
                         structure block"
                    ),
                )
                .help("the blob is truncated or corrupt; rebuild it with dtc")
                .note(format!("the property starts {}", at(tag_off)))
                .note(format!("the structure block ends {}", at(self.end))),
            ));
        };
        let next = align4(vend).unwrap_or(usize::MAX);
        if next > self.end {
            return Err(self.truncated("the padding of a property value", tag_off, Some(&name)));
        }
        let Some(open) = self.stack.last_mut() else {
            return Err(self.nesting("a property outside any node".into(), tag_off));
        };
        if open.has_children {
            return Err(fail(
                Diagnostic::new(
                    PROP_AFTER_NODE,
                    self.loc(None, Some(&name)),
                    format!("property `{name}` follows a subnode of its node"),
                )
                .help("in a DTB all properties of a node come before its subnodes; rebuild it with dtc")
                .note(at(tag_off)),
            ));
        }
        open.node
            .props
            .push(Property::raw(name, self.blob[vstart..vend].to_vec()));
        Ok(next)
    }
}

/// Reads a DTB. `file` is the id under which the caller registered the blob in its
/// `Sources` (diagnostics point at it).
///
/// Accepts versions 16 and 17. Bytes after `totalsize`, and after FDT_END inside the
/// structure block, are ignored; FDT_NOP tokens are skipped. On failure the diagnostics
/// hold one error: at the node (and property) being read when the problem is in the
/// structure block, at the whole file otherwise, with the byte offset in a note.
pub fn read_dtb(bytes: &[u8], file: FileId) -> Result<Tree, Diagnostics> {
    let h = read_header(bytes, file)?;
    let blob = &bytes[..h.totalsize];
    let memreserve = read_memreserve(blob, &h, file)?;
    let strings = &blob[h.off_dt_strings..h.off_dt_strings + h.size_dt_strings];
    let reader = StructReader {
        blob,
        file,
        strings,
        strings_off: h.off_dt_strings,
        start: h.off_dt_struct,
        end: h.struct_end,
        stack: Vec::new(),
    };
    let root = reader.read()?;
    Ok(Tree {
        memreserve,
        boot_cpuid: h.boot_cpuid,
        root,
    })
}

/// The checks dtc makes on a source tree that a blob can still fail, for a tree read with
/// [`read_dtb`] (locations are nodes and properties of `file`): two properties or two
/// subnodes with the same name in one node (dtc refuses to write such a blob, so it was
/// made some other way; libfdt and Xen see only the first), and an overlay (`.dtbo`, with
/// `__fixups__`, `__local_fixups__` or `fragment@N/__overlay__` nodes), which is not a
/// host device tree.
pub fn check_blob_tree(tree: &Tree, file: FileId) -> Diagnostics {
    use crate::dts::codes::{DUP_NODE, DUP_PROP, PLUGIN};
    let mut out = Diagnostics::new();
    let root = &tree.root;
    let overlay = root
        .children
        .iter()
        .find(|c| {
            c.name == "__fixups__"
                || c.name == "__local_fixups__"
                || c.children.iter().any(|g| g.name == "__overlay__")
        })
        .map(|c| {
            if c.name.starts_with("__") {
                format!("/{}", c.name)
            } else {
                format!("/{}/__overlay__", c.name)
            }
        });
    if let Some(path) = overlay {
        out.push(
            Diagnostic::new(
                PLUGIN,
                Location::Node {
                    file,
                    path: path.clone(),
                    property: None,
                },
                format!(
                    "this blob is a device-tree overlay (it has `{path}`), not a host device tree"
                ),
            )
            .label("compiled from a /plugin/ source")
            .help("give Xen the base host device tree; apply overlays with fdtoverlay first"),
        );
    }
    tree.walk(|path, n| {
        let mut props = std::collections::HashSet::new();
        for p in &n.props {
            if !props.insert(p.name.as_str()) {
                out.push(
                    Diagnostic::new(
                        DUP_PROP,
                        Location::Node {
                            file,
                            path: path.to_string(),
                            property: Some(p.name.clone()),
                        },
                        format!("duplicate property `{}` in {path}", p.name),
                    )
                    .label("libfdt and Xen read only the first one")
                    .help("give each property once per node; rebuild the blob with dtc"),
                );
            }
        }
        let mut kids = std::collections::HashSet::new();
        for c in &n.children {
            if !kids.insert(c.name.as_str()) {
                let child = if path == "/" {
                    format!("/{}", c.name)
                } else {
                    format!("{path}/{}", c.name)
                };
                out.push(
                    Diagnostic::new(
                        DUP_NODE,
                        Location::Node {
                            file,
                            path: child,
                            property: None,
                        },
                        format!("duplicate node `{}` in {path}", c.name),
                    )
                    .label("path lookups find only the first one")
                    .help("give sibling nodes distinct names; rebuild the blob with dtc"),
                );
            }
        }
    });
    out
}
