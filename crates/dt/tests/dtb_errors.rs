//! One test per `read_dtb` error code: a blob broken in one way, the code it gets and
//! where the diagnostic points.

#[path = "fixtures/dtb/trees.rs"]
mod trees;

use staticbus_diag::{Diagnostic, FileId, Location};
use staticbus_dt::dtb::CODES;
use staticbus_dt::{read_dtb, write_dtb, Node, Property, Tree};

const F: FileId = FileId(3);

fn get32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

fn put32(b: &mut [u8], i: usize, v: u32) {
    b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
}

fn add32(b: &mut [u8], i: usize, delta: i64) {
    let v = i64::from(get32(b, i)) + delta;
    put32(b, i, v as u32);
}

/// Reads `blob`, expecting exactly one error with `code`; checks the help and offset note.
fn err(blob: &[u8], code: &str) -> Diagnostic {
    let ds = read_dtb(blob, F).expect_err("blob must be rejected");
    assert_eq!(ds.codes(), vec![code], "{ds:?}");
    let d = ds.into_vec().remove(0);
    assert!(d.help.is_some(), "{code} has a help line");
    assert!(
        d.notes.iter().any(|n| n.contains("byte offset")),
        "{code} has a note with the byte offset: {:?}",
        d.notes
    );
    d
}

fn at_file(d: &Diagnostic) {
    assert_eq!(d.location, Location::File { file: F }, "{}", d.message);
}

fn at_node(d: &Diagnostic, path: &str, property: Option<&str>) {
    assert_eq!(
        d.location,
        Location::Node {
            file: F,
            path: path.into(),
            property: property.map(str::to_string)
        },
        "{}",
        d.message
    );
}

fn good() -> Vec<u8> {
    trees::fixture("phandles.dtb")
}

/// A blob with the given structure block and strings block and no reservations.
fn blob(structure: &[u32], extra_struct_bytes: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut s: Vec<u8> = structure.iter().flat_map(|w| w.to_be_bytes()).collect();
    s.extend_from_slice(extra_struct_bytes);
    let mut b = vec![0u8; 56];
    let off_struct = b.len();
    b.extend_from_slice(&s);
    let off_strings = b.len();
    b.extend_from_slice(strings);
    let header = [
        0xd00d_feed,
        b.len() as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
        strings.len() as u32,
        s.len() as u32,
    ];
    for (i, v) in header.iter().enumerate() {
        put32(&mut b, i, *v);
    }
    b
}

const BEGIN: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;
/// A name word: "a" NUL and padding.
const NAME_A: u32 = 0x6100_0000;

#[test]
fn codes_are_unique_and_in_range() {
    let mut ids: Vec<&str> = CODES.iter().map(|c| c.id).collect();
    for id in &ids {
        let n: u32 = id[2..].parse().unwrap();
        assert!(id.starts_with("SB") && (40..=59).contains(&n), "{id}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CODES.len());
    for c in CODES {
        assert!(!c.title.is_empty() && !c.xen.is_empty(), "{}", c.id);
    }
    assert!(staticbus_dt::codes().iter().any(|c| c.id == "SB0040"));
}

#[test]
fn sb0040_shorter_than_header() {
    at_file(&err(&[0xd0, 0x0d], "SB0040"));
    at_file(&err(&[], "SB0040"));
    let mut b = good();
    b.truncate(30);
    at_file(&err(&b, "SB0040"));
}

#[test]
fn sb0041_bad_magic() {
    let mut b = good();
    b[0] = 0;
    at_file(&err(&b, "SB0041"));
    let mut b = good();
    b[..4].copy_from_slice(&0xd00d_feedu32.to_le_bytes());
    assert!(err(&b, "SB0041").help.unwrap().contains("byte-swapped"));
    let d = err(b"/dts-v1/;\n/ { };\n", "SB0041");
    assert!(d.help.unwrap().contains("dtc"));
}

#[test]
fn sb0042_totalsize_does_not_fit() {
    let mut b = good();
    b.truncate(b.len() - 1);
    let d = err(&b, "SB0042");
    at_file(&d);
    assert!(d.message.contains("totalsize"));
    let mut b = good();
    put32(&mut b, 1, 39);
    at_file(&err(&b, "SB0042"));
}

#[test]
fn sb0043_unsupported_version() {
    let mut b = good();
    put32(&mut b, 5, 15);
    at_file(&err(&b, "SB0043"));
    let mut b = good();
    put32(&mut b, 6, 18);
    at_file(&err(&b, "SB0043"));
}

#[test]
fn sb0044_block_outside_blob_or_in_header() {
    let total = get32(&good(), 1);
    for (field, value) in [
        (2, 8),
        (3, total),
        (4, total + 8),
        (4, 0),
        (9, total),
        (8, total),
    ] {
        let mut b = good();
        put32(&mut b, field, value);
        at_file(&err(&b, "SB0044"));
    }
    // Offset + size overflowing 32 bits.
    let mut b = good();
    put32(&mut b, 8, u32::MAX);
    at_file(&err(&b, "SB0044"));
}

#[test]
fn sb0045_misaligned_block() {
    let mut b = good();
    put32(&mut b, 4, 44);
    at_file(&err(&b, "SB0045"));
    let mut b = good();
    let s = get32(&b, 2);
    put32(&mut b, 2, s + 2);
    add32(&mut b, 9, -2);
    at_file(&err(&b, "SB0045"));
}

#[test]
fn sb0046_memreserve_not_terminated() {
    // Header, then non-zero entries up to totalsize; the (empty) struct and strings
    // blocks sit at the end.
    let mut b = vec![0u8; 40];
    for v in [1u64, 2, 3, 4] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    let total = b.len() as u32;
    let header = [0xd00d_feed, total, total, total, 40, 17, 16, 0, 0, 0];
    for (i, v) in header.iter().enumerate() {
        put32(&mut b, i, *v);
    }
    let d = err(&b, "SB0046");
    at_file(&d);
    assert!(d.message.contains("2 entries"));
}

#[test]
fn sb0047_structure_block_truncated() {
    // FDT_END cut off.
    let mut b = good();
    add32(&mut b, 9, -4);
    at_node(&err(&b, "SB0047"), "/", None);
    // Inside a node: the block ends before its FDT_END_NODE.
    let b = blob(&[BEGIN, 0, BEGIN, NAME_A], &[], b"");
    at_node(&err(&b, "SB0047"), "/a", None);
    // A node name without NUL.
    let b = blob(&[BEGIN, 0, BEGIN], b"abcd", b"");
    at_node(&err(&b, "SB0047"), "/", None);
    // A property value longer than the block.
    let b = blob(
        &[
            BEGIN, 0, BEGIN, NAME_A, PROP, 100, 0, 0, END_NODE, END_NODE, END,
        ],
        &[],
        b"reg\0",
    );
    let d = err(&b, "SB0047");
    at_node(&d, "/a", Some("reg"));
    assert!(d.message.contains("100"));
    // A property header cut off.
    let b = blob(&[BEGIN, 0, PROP, 0], &[], b"reg\0");
    at_node(&err(&b, "SB0047"), "/", None);
}

#[test]
fn sb0048_unknown_token() {
    let b = blob(
        &[BEGIN, 0, BEGIN, NAME_A, 7, END_NODE, END_NODE, END],
        &[],
        b"",
    );
    let d = err(&b, "SB0048");
    at_node(&d, "/a", None);
    assert!(d.message.contains("0x00000007"));
}

#[test]
fn sb0049_name_not_utf8() {
    let b = blob(
        &[BEGIN, 0, BEGIN, 0x61ff_0000, END_NODE, END_NODE, END],
        &[],
        b"",
    );
    let d = err(&b, "SB0049");
    assert!(
        matches!(&d.location, Location::Node { path, property: None, .. } if path.starts_with("/a"))
    );
    let b = blob(&[BEGIN, 0, PROP, 0, 0, END_NODE, END], &[], b"r\xffg\0");
    let d = err(&b, "SB0049");
    assert!(matches!(&d.location, Location::Node { path, property: Some(_), .. } if path == "/"));
}

#[test]
fn sb0050_name_offset_outside_strings() {
    let b = blob(
        &[BEGIN, 0, BEGIN, NAME_A, PROP, 0, 4, END_NODE, END_NODE, END],
        &[],
        b"reg\0",
    );
    let d = err(&b, "SB0050");
    at_node(&d, "/a", None);
    assert!(d.message.contains("offset 4"));
    let b = blob(&[BEGIN, 0, PROP, 0, u32::MAX, END_NODE, END], &[], b"reg\0");
    at_node(&err(&b, "SB0050"), "/", None);
}

#[test]
fn sb0051_name_not_terminated() {
    // The strings block loses its last NUL: `back` (the last name, used by
    // /node-c/sub@1) runs off its end.
    let mut b = good();
    add32(&mut b, 8, -1);
    at_node(&err(&b, "SB0051"), "/node-c/sub@1", None);
}

#[test]
fn sb0052_bad_nesting() {
    let cases: &[(&[u32], &str)] = &[
        (&[BEGIN, 0, END_NODE, END_NODE, END], "/"), // END_NODE without open node
        (&[BEGIN, 0, BEGIN, NAME_A, END_NODE, END], "/"), // FDT_END with open node
        (&[PROP, 0, 0, BEGIN, 0, END_NODE, END], "/"), // property before the root
        (&[BEGIN, 0, END_NODE, BEGIN, 0, END_NODE, END], "/"), // second root
        (&[END], "/"),                               // no root at all
        (&[BEGIN, 0, END_NODE, PROP, 0, 0, END], "/"), // property after the root
    ];
    for (s, path) in cases {
        at_node(&err(&blob(s, &[], b"r\0"), "SB0052"), path, None);
    }
    let d = err(
        &blob(&[BEGIN, 0, BEGIN, NAME_A, END, END_NODE], &[], b""),
        "SB0052",
    );
    at_node(&d, "/a", None);
}

#[test]
fn sb0053_nested_too_deeply() {
    let mut tree = Tree::default();
    let mut n = &mut tree.root;
    for _ in 0..staticbus_dt::dtb::MAX_DEPTH {
        n = n.child_or_insert("n");
    }
    let d = err(&write_dtb(&tree), "SB0053");
    let want = "/n".repeat(staticbus_dt::dtb::MAX_DEPTH - 1);
    at_node(&d, &want, None);

    // A hostile blob of nothing but BEGIN_NODE tokens is rejected quickly.
    let s = [BEGIN, 0].repeat(100_000);
    err(&blob(&s, &[], b""), "SB0053");
}

#[test]
fn sb0054_property_after_subnode() {
    let b = blob(
        &[
            BEGIN, 0, PROP, 0, 0, BEGIN, NAME_A, END_NODE, PROP, 0, 0, END_NODE, END,
        ],
        &[],
        b"late\0",
    );
    at_node(&err(&b, "SB0054"), "/", Some("late"));
}

#[test]
fn every_code_is_tested_here() {
    let src = include_str!("dtb_errors.rs");
    for c in CODES {
        let test = format!("fn {}_", c.id.to_lowercase());
        assert!(src.contains(&test), "no test for {}", c.id);
    }
}

#[test]
fn hand_blob_helper_is_valid() {
    // Sanity: the helper's layout reads fine when nothing is broken.
    let b = blob(
        &[
            BEGIN,
            0,
            PROP,
            4,
            0,
            0x0102_0304,
            BEGIN,
            NAME_A,
            END_NODE,
            END_NODE,
            END,
        ],
        &[],
        b"reg\0",
    );
    let t = read_dtb(&b, F).unwrap();
    let mut want = Tree::default();
    want.root.props.push(Property::raw("reg", vec![1, 2, 3, 4]));
    want.root.children.push(Node::new("a"));
    assert_eq!(t, want);
    assert_eq!(write_dtb(&t), b);
}
