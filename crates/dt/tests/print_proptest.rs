//! Random trees: dtc's compilation of `print_dts(tree)` equals `write_dtb(tree)`, and
//! `read_dtb(write_dtb(tree))` is the tree without labels, spans and chunks.

#[path = "fixtures/dtb/trees.rs"]
mod trees;

use proptest::prelude::*;
use staticbus_diag::FileId;
use staticbus_dt::{print_dts, read_dtb, write_dtb, MemReserve, Node, Property, Tree};
use std::collections::HashSet;

#[derive(Clone, Debug)]
enum ChunkGen {
    Cells(u8, Vec<u64>),
    Str(Vec<u8>),
    Bytes(Vec<u8>),
    /// A phandle reference to the k-th node that has a label and a phandle.
    Ref(usize, bool),
    /// A path reference to the k-th labelled node.
    PathRef(usize, bool),
}

#[derive(Clone, Debug)]
enum ValGen {
    /// Raw bytes without chunks, as read from a DTB.
    Raw(Vec<u8>),
    /// Raw bytes that are a string list.
    RawStrings(Vec<String>),
    Chunks(Vec<ChunkGen>),
}

#[derive(Clone, Debug)]
struct PropGen {
    name: String,
    val: ValGen,
    label: Option<String>,
}

#[derive(Clone, Debug)]
struct NodeGen {
    name: String,
    label: Option<String>,
    phandle: bool,
    props: Vec<PropGen>,
    children: Vec<NodeGen>,
}

/// Names dtc checks specially (warnings only). Not `interrupt-parent`: dtc 1.6.1 aborts
/// on an assertion (`propval_cell`) when it is not exactly one cell and `interrupts`
/// exists.
const SPECIAL: &[&str] = &[
    "compatible",
    "reg",
    "#address-cells",
    "#size-cells",
    "status",
    "model",
    "device_type",
    "bootargs",
    "ranges",
    "xen,evtchn",
    "xen,shm-id",
    "memory",
    "cpus",
];

fn prop_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9,._+*#?-]{1,12}",
        1 => proptest::sample::select(SPECIAL).prop_map(str::to_string),
    ]
    .prop_filter("dtc reserves these", |n| {
        !matches!(n.as_str(), "name" | "phandle" | "linux,phandle")
    })
}

fn node_name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9,._+-]{1,10}",
        proptest::option::of("[a-zA-Z0-9,._+-]{0,6}"),
    )
        .prop_map(|(base, unit)| match unit {
            Some(u) => format!("{base}@{u}"),
            None => base,
        })
}

fn label() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(0.4, "[a-zA-Z_][a-zA-Z0-9_]{0,8}")
}

fn chunk() -> impl Strategy<Value = ChunkGen> {
    prop_oneof![
        (
            proptest::sample::select(vec![8u8, 16, 32, 32, 64]),
            proptest::collection::vec(any::<u64>(), 0..5)
        )
            .prop_map(|(b, v)| ChunkGen::Cells(b, v)),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(ChunkGen::Str),
        "[ -~]{0,16}".prop_map(|s| ChunkGen::Str(s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..9).prop_map(ChunkGen::Bytes),
        (any::<usize>(), any::<bool>()).prop_map(|(k, p)| ChunkGen::Ref(k, p)),
        (any::<usize>(), any::<bool>()).prop_map(|(k, p)| ChunkGen::PathRef(k, p)),
    ]
}

fn value() -> impl Strategy<Value = ValGen> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(ValGen::Raw),
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'a'), Just(b'\n'), Just(0xff), 0x20u8..0x7f],
            0..16
        )
        .prop_map(ValGen::Raw),
        proptest::collection::vec("[ -~]{0,8}", 1..4).prop_map(ValGen::RawStrings),
        proptest::collection::vec(chunk(), 1..4).prop_map(ValGen::Chunks),
    ]
}

fn prop_gen() -> impl Strategy<Value = PropGen> {
    (prop_name(), value(), label()).prop_map(|(name, val, label)| PropGen { name, val, label })
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    let leaf = (
        node_name(),
        label(),
        any::<bool>(),
        proptest::collection::vec(prop_gen(), 0..5),
    )
        .prop_map(|(name, label, phandle, props)| NodeGen {
            name,
            label,
            phandle,
            props,
            children: Vec::new(),
        });
    leaf.prop_recursive(4, 40, 4, |inner| {
        (
            node_name(),
            label(),
            any::<bool>(),
            proptest::collection::vec(prop_gen(), 0..5),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, label, phandle, props, children)| NodeGen {
                name,
                label,
                phandle,
                props,
                children,
            })
    })
}

/// Builds the nodes (names, labels, phandles) without the generated properties.
fn skeleton(g: &NodeGen, labels: &mut HashSet<String>, next_phandle: &mut u32) -> Node {
    let mut n = Node::new(g.name.clone());
    if let Some(l) = &g.label {
        if labels.insert(l.clone()) {
            n.labels.push(l.clone());
        }
    }
    let mut names = HashSet::new();
    for c in &g.children {
        let mut child = skeleton(c, labels, next_phandle);
        while !names.insert(child.name.clone()) {
            child.name.push('x');
        }
        n.children.push(child);
    }
    if g.phandle {
        *next_phandle += 1;
        n.props
            .push(Property::u32s("phandle", &[*next_phandle * 3]));
    }
    n
}

struct Targets {
    /// (label, path, phandle) of labelled nodes.
    labelled: Vec<(String, String, Option<u32>)>,
}

fn fill(g: &NodeGen, n: &mut Node, t: &Targets, labels: &mut HashSet<String>) {
    let mut names: HashSet<String> = n.props.iter().map(|p| p.name.clone()).collect();
    let mut props = Vec::new();
    for pg in &g.props {
        let mut name = pg.name.clone();
        while !names.insert(name.clone()) {
            name.push('_');
        }
        let mut p = Property::empty(name);
        match &pg.val {
            ValGen::Raw(v) => p.value = v.clone(),
            ValGen::RawStrings(list) => {
                for s in list {
                    p.value.extend_from_slice(s.as_bytes());
                    p.value.push(0);
                }
            }
            ValGen::Chunks(chunks) => {
                for c in chunks {
                    match c {
                        ChunkGen::Cells(bits, v) => p.push_cells(*bits, v),
                        ChunkGen::Str(s) => trees::push_string(&mut p, s),
                        ChunkGen::Bytes(b) => trees::push_bytes(&mut p, b),
                        ChunkGen::Ref(k, by_path) => {
                            let with_ph: Vec<_> =
                                t.labelled.iter().filter(|x| x.2.is_some()).collect();
                            let mut cell = trees::cells_refs("x", &[(0x1234, None)]);
                            if !with_ph.is_empty() {
                                let (l, path, ph) = with_ph[k % with_ph.len()];
                                let r = if *by_path {
                                    format!("{{{path}}}")
                                } else {
                                    l.clone()
                                };
                                cell = trees::cells_refs("x", &[(ph.unwrap_or(0), Some(&r))]);
                            }
                            let off = p.value.len() as u32;
                            p.value.extend_from_slice(&cell.value);
                            let mut ch = cell.chunks.remove(0);
                            ch.offset = off;
                            p.chunks.push(ch);
                        }
                        ChunkGen::PathRef(k, by_path) => {
                            if t.labelled.is_empty() {
                                trees::push_string(&mut p, b"/");
                            } else {
                                let (l, path, _) = &t.labelled[k % t.labelled.len()];
                                let r = if *by_path {
                                    format!("{{{path}}}")
                                } else {
                                    l.clone()
                                };
                                trees::push_path_ref(&mut p, &r, path);
                            }
                        }
                    }
                }
            }
        }
        if let Some(l) = &pg.label {
            if labels.insert(l.clone()) {
                p.labels.push(l.clone());
            }
        }
        props.push(p);
    }
    // Generated properties first, then the phandle the skeleton gave the node.
    props.append(&mut n.props);
    n.props = props;
    for (cg, c) in g.children.iter().zip(n.children.iter_mut()) {
        fill(cg, c, t, labels);
    }
}

fn build(root: NodeGen, memreserve: Vec<(u64, u64)>, boot: Option<u32>) -> Tree {
    let mut labels = HashSet::new();
    let mut next = 0;
    let mut root_node = skeleton(&root, &mut labels, &mut next);
    root_node.name.clear();
    let mut tree = Tree {
        root: root_node,
        memreserve: memreserve
            .into_iter()
            .map(|(address, size)| MemReserve {
                address,
                size,
                ..MemReserve::default()
            })
            .collect(),
        boot_cpuid: 0,
    };
    let mut labelled = Vec::new();
    tree.walk(|path, n| {
        for l in &n.labels {
            labelled.push((l.clone(), path.to_string(), n.phandle()));
        }
    });
    let t = Targets { labelled };
    let mut prop_labels = labels.clone();
    fill(&root, &mut tree.root, &t, &mut prop_labels);
    tree.boot_cpuid = match boot {
        Some(b) => b,
        None => dtc_guess(&tree),
    };
    tree
}

fn dtc_guess(tree: &Tree) -> u32 {
    tree.root
        .child("cpus")
        .and_then(|c| c.children.first())
        .and_then(|c| c.prop("reg"))
        .and_then(|p| p.as_u32())
        .unwrap_or(0)
}

fn tree_strategy() -> impl Strategy<Value = Tree> {
    (
        node_gen(),
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3),
        proptest::option::weighted(0.2, any::<u32>()),
    )
        .prop_map(|(root, mr, boot)| build(root, mr, boot))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn dtc_compiles_print_dts_to_write_dtb(tree in tree_strategy()) {
        let blob = write_dtb(&tree);
        let back = read_dtb(&blob, FileId(0)).expect("own blob reads back");
        prop_assert_eq!(&back, &trees::strip(&tree));
        prop_assert_eq!(write_dtb(&back), blob.clone());
        if trees::live_dtc("dtc_compiles_print_dts_to_write_dtb (random trees)") {
            let dts = print_dts(&tree);
            let b = (tree.boot_cpuid != dtc_guess(&tree)).then_some(tree.boot_cpuid);
            let compiled = trees::dtc_compile_live(&dts, b);
            prop_assert!(compiled.is_ok(), "dtc failed: {:?}\n{}", compiled.err(), dts);
            prop_assert!(compiled.unwrap() == blob, "dtc output differs for\n{}", dts);
            // The tree read from the blob (no chunks, no labels) prints back too.
            let dts2 = print_dts(&back);
            let compiled2 = trees::dtc_compile_live(&dts2, b);
            prop_assert!(compiled2.as_ref().ok() == Some(&blob), "{:?}\n{}", compiled2.err(), dts2);
        }
    }
}
