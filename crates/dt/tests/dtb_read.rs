//! `read_dtb` on good blobs: dtc's fixtures read back to the hand-built trees and
//! re-serialise to the same bytes; version 16, FDT_NOP and trailing data are accepted.

#[path = "fixtures/dtb/trees.rs"]
mod trees;

use staticbus_diag::FileId;
use staticbus_dt::{read_dtb, write_dtb, Tree};

const F: FileId = FileId(7);

fn put32(b: &mut [u8], i: usize, v: u32) {
    b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
}

fn get32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

#[test]
fn dtc_blobs_round_trip_byte_exact() {
    for (name, tree) in trees::all() {
        let blob = trees::fixture(&format!("{name}.dtb"));
        let read = read_dtb(&blob, F).unwrap_or_else(|d| panic!("{name}: {d:?}"));
        assert_eq!(read, trees::strip(&tree), "{name}: tree read back");
        assert_eq!(write_dtb(&read), blob, "{name}: re-serialised");
    }
}

#[test]
fn read_tree_has_no_chunks_labels_or_spans() {
    let t = read_dtb(&trees::fixture("xen_dom0less.dtb"), F).unwrap();
    t.walk(|_, n| {
        assert!(n.labels.is_empty() && n.span.is_none());
        for p in &n.props {
            assert!(p.chunks.is_empty() && p.span.is_none() && p.labels.is_empty());
        }
    });
    assert_eq!(
        t.find("/chosen/domU1/evtchn@1")
            .and_then(|n| n.prop("xen,evtchn"))
            .and_then(|p| p.as_u32s()),
        Some(vec![0xa, 2])
    );
    assert_eq!(
        t.path_of_phandle(2).as_deref(),
        Some("/chosen/domU2/evtchn@2")
    );
    assert_eq!(t.memreserve.len(), 1);
    assert_eq!(t.memreserve[0].address, 0x8000_0000);
}

#[test]
fn memreserve_and_boot_cpuid() {
    let t = read_dtb(&trees::fixture("memreserve.dtb"), F).unwrap();
    assert_eq!(t.boot_cpuid, 3);
    let m: Vec<(u64, u64)> = t.memreserve.iter().map(|m| (m.address, m.size)).collect();
    assert_eq!(
        m,
        [
            (0x1000, 0x2000),
            (0xffff_ffff_0000_0000, 0x1_0000_0000),
            (0, 1)
        ]
    );
}

#[test]
fn version_16_is_accepted() {
    // dtc -V 16: version 16, size_dt_struct not used.
    let blob = trees::fixture("v16_values.dtb");
    assert_eq!(get32(&blob, 5), 16);
    let t = read_dtb(&blob, F).unwrap();
    assert_eq!(t, trees::strip(&trees::values()));
    // Written back as version 17, identical to dtc's version 17 output.
    assert_eq!(write_dtb(&t), trees::fixture("values.dtb"));
}

#[test]
fn version_16_ignores_size_dt_struct() {
    // Version 16 headers end before size_dt_struct: the word there is not read.
    let mut blob = write_dtb(&trees::deep());
    put32(&mut blob, 5, 16);
    put32(&mut blob, 9, 0xdead_beef); // not a header field in v16: ignored
    assert_eq!(read_dtb(&blob, F).unwrap(), trees::strip(&trees::deep()));
}

#[test]
fn nops_are_skipped() {
    // Insert FDT_NOP before the root and after the first property of the root.
    let tree = trees::strings_suffix();
    let blob = write_dtb(&tree);
    let s = get32(&blob, 2) as usize;
    let nop = 4u32.to_be_bytes();
    let mut out = blob[..s].to_vec();
    out.extend_from_slice(&nop);
    // root BEGIN_NODE (4) + name (4) + first prop (12 + 4)
    out.extend_from_slice(&blob[s..s + 24]);
    out.extend_from_slice(&nop);
    out.extend_from_slice(&blob[s + 24..]);
    let grow = |b: &mut Vec<u8>, i: usize| {
        let v = get32(b, i) + 8;
        put32(b, i, v);
    };
    grow(&mut out, 1); // totalsize
    grow(&mut out, 3); // off_dt_strings
    grow(&mut out, 9); // size_dt_struct
    assert_eq!(read_dtb(&out, F).unwrap(), trees::strip(&tree));
}

#[test]
fn bytes_after_totalsize_and_after_end_are_ignored() {
    let tree = trees::phandles();
    let mut blob = write_dtb(&tree);
    blob.extend_from_slice(b"trailing garbage beyond totalsize");
    assert_eq!(read_dtb(&blob, F).unwrap(), trees::strip(&tree));

    // Garbage between FDT_END and the end of a (larger) structure block.
    let mut blob = write_dtb(&tree);
    let end_struct = (get32(&blob, 2) + get32(&blob, 9)) as usize;
    let strings = blob.split_off(end_struct);
    blob.extend_from_slice(&[0xff; 8]);
    blob.extend_from_slice(&strings);
    let grow = |b: &mut Vec<u8>, i: usize| {
        let v = get32(b, i) + 8;
        put32(b, i, v);
    };
    grow(&mut blob, 1);
    grow(&mut blob, 3);
    grow(&mut blob, 9);
    assert_eq!(read_dtb(&blob, F).unwrap(), trees::strip(&tree));
}

#[test]
fn blocks_in_another_order_are_read() {
    // strings block before the structure block, memreserve last.
    let tree = trees::memreserve();
    let blob = write_dtb(&tree);
    let (mr, st, sg) = (
        get32(&blob, 4) as usize,
        get32(&blob, 2) as usize,
        get32(&blob, 3) as usize,
    );
    let mut out = blob[..40].to_vec();
    let strings = &blob[sg..];
    out.extend_from_slice(strings);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let new_st = out.len();
    out.extend_from_slice(&blob[st..sg]);
    let new_mr = out.len();
    out.extend_from_slice(&blob[mr..st]);
    let total = out.len() as u32;
    put32(&mut out, 1, total);
    put32(&mut out, 2, new_st as u32);
    put32(&mut out, 3, 40);
    put32(&mut out, 4, new_mr as u32);
    assert_eq!(read_dtb(&out, F).unwrap(), trees::strip(&tree));
}

#[test]
fn a_named_root_is_kept() {
    let mut tree = Tree::default();
    tree.root.name = "oldstyle".into();
    let blob = write_dtb(&tree);
    assert_eq!(read_dtb(&blob, F).unwrap().root.name, "oldstyle");
}

#[test]
fn nesting_up_to_the_cap_is_read() {
    let mut tree = Tree::default();
    let mut n = &mut tree.root;
    for _ in 1..staticbus_dt::dtb::MAX_DEPTH {
        n = n.child_or_insert("n");
    }
    let blob = write_dtb(&tree);
    assert_eq!(read_dtb(&blob, F).unwrap(), tree);
}
