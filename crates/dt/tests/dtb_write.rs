//! `write_dtb` against dtc 1.6.1: every fixture tree, built by hand, must serialise to
//! exactly the bytes dtc produced for the matching `.dts` (stored next to it), and, when
//! dtc is installed, the stored blobs must still be what dtc produces.

#[path = "fixtures/dtb/trees.rs"]
mod trees;

use staticbus_dt::{write_dtb, MemReserve, Node, Property, Tree};

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

#[test]
fn hand_built_trees_match_dtc_output() {
    for (name, tree) in trees::all() {
        let want = trees::fixture(&format!("{name}.dtb"));
        let got = write_dtb(&tree);
        assert_eq!(got, want, "{name}: write_dtb differs from dtc's {name}.dtb");
    }
}

#[test]
fn fixtures_are_what_dtc_produces() {
    if !trees::live_dtc("fixtures_are_what_dtc_produces (re-making the stored .dtb fixtures)") {
        return;
    }
    for (name, _) in trees::all() {
        let dts =
            std::fs::read_to_string(trees::fixture_dir().join(format!("{name}.dts"))).unwrap();
        let blob = trees::dtc_compile_live(&dts, None).unwrap();
        assert_eq!(blob, trees::fixture(&format!("{name}.dtb")), "{name}");
    }
}

#[test]
fn header_layout() {
    let blob = write_dtb(&trees::memreserve());
    assert_eq!(be32(&blob, 0), 0xd00d_feed);
    assert_eq!(be32(&blob, 1) as usize, blob.len(), "totalsize, no padding");
    assert_eq!(be32(&blob, 4), 40, "memreserve right after the header");
    assert_eq!(
        be32(&blob, 2),
        40 + 4 * 16,
        "struct after 3 entries + terminator"
    );
    assert_eq!(be32(&blob, 5), 17);
    assert_eq!(be32(&blob, 6), 16);
    assert_eq!(be32(&blob, 7), 3, "boot_cpuid_phys from the tree");
    let (off_struct, off_strings) = (be32(&blob, 2), be32(&blob, 3));
    assert_eq!(be32(&blob, 9), off_strings - off_struct);
    assert_eq!(be32(&blob, 8) as usize, blob.len() - off_strings as usize);
}

#[test]
fn empty_tree_is_72_bytes() {
    // header 40 + terminator 16 + BEGIN_NODE, "" padded, END_NODE, END = 16.
    let blob = write_dtb(&Tree::default());
    assert_eq!(blob.len(), 72);
    assert_eq!(
        &blob[56..],
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 9]
    );
}

/// The strings block of a blob.
fn strings_block(blob: &[u8]) -> &[u8] {
    let off = be32(blob, 3) as usize;
    &blob[off..off + be32(blob, 8) as usize]
}

fn root_with(names: &[&str]) -> Tree {
    let mut t = Tree::default();
    t.root.props = names.iter().map(|n| Property::empty(*n)).collect();
    t
}

#[test]
fn strings_share_suffixes_like_dtc() {
    // "bar" reuses the tail of "foo-bar"; "foo" is not a suffix so it is appended.
    assert_eq!(
        strings_block(&write_dtb(&root_with(&["foo-bar", "bar", "foo"]))),
        b"foo-bar\0foo\0"
    );
    // Order matters: "bar" first, then "foo-bar" cannot be shared.
    assert_eq!(
        strings_block(&write_dtb(&root_with(&["bar", "foo-bar"]))),
        b"bar\0foo-bar\0"
    );
    // The first occurrence wins: "r" maps into "bar", the earliest place.
    assert_eq!(
        strings_block(&write_dtb(&root_with(&["bar", "xr", "r"]))),
        b"bar\0xr\0"
    );
    // Duplicated names across nodes share one entry.
    let mut t = root_with(&["reg"]);
    t.root.children.push(Node {
        name: "a".into(),
        props: vec![Property::empty("reg")],
        ..Node::default()
    });
    assert_eq!(strings_block(&write_dtb(&t)), b"reg\0");
}

#[test]
fn strings_table_experiments_against_dtc() {
    let cases: &[&[&str]] = &[
        &["foo-bar", "bar"],
        &["bar", "foo-bar"],
        &["foo-bar", "foo", "o-bar", "ar", "r", "-bar"],
        &["compatible", "patible", "ible", "e", "le", "reg", "g"],
        &["a", "ba", "cba", "a", "ba"],
        &[
            "#address-cells",
            "address-cells",
            "#size-cells",
            "cells",
            "s",
        ],
    ];
    for names in cases {
        // Duplicate property names are an error in dtc: spread repeats over child nodes.
        let mut tree = Tree::default();
        let mut seen = Vec::new();
        let mut dts = String::from("/dts-v1/;\n/ {\n");
        let mut child = 0;
        let mut cur: Option<Node> = None;
        for n in *names {
            if seen.contains(n) {
                if let Some(c) = cur.take() {
                    tree.root.children.push(c);
                }
                child += 1;
                seen.clear();
            }
            seen.push(*n);
            if child == 0 {
                tree.root.props.push(Property::empty(*n));
            } else {
                cur.get_or_insert_with(|| Node::new(format!("c{child}")))
                    .props
                    .push(Property::empty(*n));
            }
        }
        if let Some(c) = cur.take() {
            tree.root.children.push(c);
        }
        for p in &tree.root.props {
            dts.push_str(&format!("\t{};\n", p.name));
        }
        for c in &tree.root.children {
            dts.push_str(&format!("\t{} {{\n", c.name));
            for p in &c.props {
                dts.push_str(&format!("\t\t{};\n", p.name));
            }
            dts.push_str("\t};\n");
        }
        dts.push_str("};\n");
        let want = trees::dtc_compile(&dts, None).unwrap();
        assert_eq!(write_dtb(&tree), want, "{names:?}");
    }
}

#[test]
fn values_are_padded_to_four_bytes() {
    let mut t = Tree::default();
    t.root.props.push(Property::raw("p", vec![1, 2, 3, 4, 5]));
    let blob = write_dtb(&t);
    // BEGIN_NODE, "" pad, PROP, len 5, nameoff 0, value 5 + 3 pad, END_NODE, END
    let s = be32(&blob, 2) as usize;
    assert_eq!(&blob[s + 8..s + 20], &[0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 0]);
    assert_eq!(&blob[s + 20..s + 28], &[1, 2, 3, 4, 5, 0, 0, 0]);
    assert_eq!(be32(&blob, 9), 36);
}

#[test]
fn labels_spans_and_chunks_are_not_written() {
    let plain = trees::strip(&trees::xen_dom0less());
    assert_eq!(write_dtb(&plain), write_dtb(&trees::xen_dom0less()));
    let mut t = Tree::default();
    t.memreserve.push(MemReserve {
        address: 1,
        size: 2,
        labels: vec!["m".into()],
        span: None,
    });
    let mut u = t.clone();
    u.memreserve[0].labels.clear();
    assert_eq!(write_dtb(&t), write_dtb(&u));
}
