//! `resolve_references` on trees built by code (as the staticbus compiler builds them), and
//! on parsed trees.

use staticbus_diag::{Location, Sources};
use staticbus_dt::{
    parse_dts, resolve_references, CellValue, Chunk, ChunkKind, DtsOptions, FsLoader, Node,
    Property, Tree,
};

fn node(name: &str, label: Option<&str>) -> Node {
    let mut n = Node::new(name);
    if let Some(l) = label {
        n.labels.push(l.into());
    }
    n
}

fn path_ref(name: &str, r: &str, before: &str, after: &str) -> Property {
    // "before", &ref, "after" with the reference not yet expanded.
    let mut p = Property::strings(name, &[before]);
    let offset = p.value.len() as u32;
    p.chunks.push(Chunk {
        offset,
        len: 0,
        kind: ChunkKind::PathRef(r.into()),
        span: None,
    });
    let offset = p.value.len() as u32;
    p.value.extend_from_slice(after.as_bytes());
    p.value.push(0);
    p.chunks.push(Chunk {
        offset,
        len: after.len() as u32 + 1,
        kind: ChunkKind::String,
        span: None,
    });
    p
}

/// Two domains with an event-channel pair, like the compiler generates.
fn evtchn_tree() -> Tree {
    let mut t = Tree::default();
    let chosen = t.root.child_or_insert("chosen");
    let mut d1 = node("domU1", Some("d1"));
    let mut e1 = node("evtchn@1", Some("ec1"));
    e1.props
        .push(Property::strings("compatible", &["xen,evtchn-v1"]));
    e1.props.push(Property::cells_with_refs(
        "xen,evtchn",
        &[CellValue::Num(0xa), CellValue::Ref("ec2")],
    ));
    d1.children.push(e1);
    let mut d2 = node("domU2", Some("d2"));
    let mut e2 = node("evtchn@2", Some("ec2"));
    e2.props
        .push(Property::strings("compatible", &["xen,evtchn-v1"]));
    e2.props.push(Property::cells_with_refs(
        "xen,evtchn",
        &[CellValue::Num(0xb), CellValue::Ref("ec1")],
    ));
    d2.children.push(e2);
    chosen.children.push(d1);
    chosen.children.push(d2);
    t
}

#[test]
fn generated_evtchn_pairs() {
    let mut t = evtchn_tree();
    let diags = resolve_references(&mut t);
    assert!(diags.is_empty(), "{diags:?}");
    let e1 = t.find("/chosen/domU1/evtchn@1").unwrap();
    let e2 = t.find("/chosen/domU2/evtchn@2").unwrap();
    // dtc order: evtchn@1's reference to ec2 is seen first, so ec2 gets phandle 1.
    assert_eq!(e2.phandle(), Some(1));
    assert_eq!(e1.phandle(), Some(2));
    assert_eq!(e1.prop("xen,evtchn").unwrap().as_u32s(), Some(vec![0xa, 1]));
    assert_eq!(e2.prop("xen,evtchn").unwrap().as_u32s(), Some(vec![0xb, 2]));
    // The phandle property is appended last.
    assert_eq!(e1.props.last().unwrap().name, "phandle");
    // Idempotent.
    let before = t.clone();
    assert!(resolve_references(&mut t).is_empty());
    assert_eq!(t, before);
}

#[test]
fn explicit_phandles_are_skipped_and_linux_phandle_is_used() {
    let mut t = Tree::default();
    let mut a = node("a", Some("a"));
    a.props.push(Property::u32s("phandle", &[1]));
    let b = node("b", Some("b"));
    let mut c = node("c", Some("c"));
    c.props.push(Property::u32s("linux,phandle", &[9]));
    let mut user = node("user", None);
    user.props.push(Property::cells_with_refs(
        "refs",
        &[
            CellValue::Ref("b"),
            CellValue::Ref("a"),
            CellValue::Ref("c"),
        ],
    ));
    t.root.children = vec![user, a, b, c];
    assert!(resolve_references(&mut t).is_empty());
    assert_eq!(
        t.find("/user").unwrap().prop("refs").unwrap().as_u32s(),
        Some(vec![2, 1, 9])
    );
    assert!(t.find("/c").unwrap().prop("phandle").is_none());
    assert_eq!(t.find("/b").unwrap().phandle(), Some(2));
}

#[test]
fn path_references_expand_and_move_chunks() {
    let mut t = evtchn_tree();
    t.root
        .props
        .push(path_ref("p", "{/chosen/domU2}", "x", "yz"));
    t.root.props.push(path_ref("q", "d1", "", ""));
    assert!(resolve_references(&mut t).is_empty());
    let p = t.root.prop("p").unwrap();
    assert_eq!(p.as_strings(), Some(vec!["x", "/chosen/domU2", "yz"]));
    let layout: Vec<(u32, u32)> = p.chunks.iter().map(|c| (c.offset, c.len)).collect();
    assert_eq!(layout, vec![(0, 2), (2, 14), (16, 3)]);
    let q = t.root.prop("q").unwrap();
    assert_eq!(q.as_strings(), Some(vec!["", "/chosen/domU1", ""]));
    // Idempotent: the expanded path is replaced by itself.
    let before = t.clone();
    assert!(resolve_references(&mut t).is_empty());
    assert_eq!(t, before);
}

#[test]
fn label_relative_and_root_references() {
    let mut t = evtchn_tree();
    t.root.props.push(Property::cells_with_refs(
        "r",
        &[CellValue::Ref("{d2/evtchn@2}"), CellValue::Ref("{/}")],
    ));
    assert!(resolve_references(&mut t).is_empty());
    let r = t.root.prop("r").unwrap().as_u32s().unwrap();
    assert_eq!(
        Some(r[0]),
        t.find("/chosen/domU2/evtchn@2").unwrap().phandle()
    );
    assert_eq!(Some(r[1]), t.root.phandle());
}

#[test]
fn unresolved_and_duplicate_labels_on_generated_trees() {
    let mut t = evtchn_tree();
    t.root
        .props
        .push(Property::cells_with_refs("bad", &[CellValue::Ref("nope")]));
    t.root.children[0].children[1].labels.push("d1".into());
    let diags = resolve_references(&mut t);
    assert_eq!(diags.codes(), vec!["SB0091", "SB0090"]);
    for d in diags.iter() {
        assert_eq!(d.location, Location::None);
        assert!(d.help.is_some());
    }
    assert!(diags.iter().any(|d| d.message.contains("\"nope\"")));
}

#[test]
fn explicit_phandle_errors_on_generated_trees() {
    let mut t = Tree::default();
    let mut a = node("a", Some("a"));
    a.props.push(Property::u32s("phandle", &[5]));
    let mut b = node("b", None);
    b.props.push(Property::u32s("phandle", &[5]));
    let mut c = node("c", None);
    c.props.push(Property::u32s("phandle", &[0]));
    let mut d = node("d", None);
    d.props.push(Property::u32s("phandle", &[3, 4]));
    let mut e = node("e", None);
    e.props.push(Property::u32s("phandle", &[6]));
    e.props.push(Property::u32s("linux,phandle", &[7]));
    let mut f = node("f", None);
    f.props
        .push(Property::cells_with_refs("phandle", &[CellValue::Ref("a")]));
    t.root.children = vec![a, b, c, d, e, f];
    let diags = resolve_references(&mut t);
    assert_eq!(
        diags.codes(),
        vec!["SB0096", "SB0094", "SB0092", "SB0095", "SB0093"]
    );
}

#[test]
fn self_reference_forces_a_phandle() {
    let mut sources = Sources::new();
    let src = "/dts-v1/;\n/ {\n\tn: n { phandle = <&n>; x; };\n\tm { p = <&m2>; };\n\tm2: m2 { linux,phandle = <&m2>; };\n};\n";
    let (tree, diags) = parse_dts(
        &mut sources,
        "t.dts",
        src.into(),
        &DtsOptions::default(),
        &FsLoader,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let t = tree.unwrap();
    let n = t.find("/n").unwrap();
    let names: Vec<&str> = n.props.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["phandle", "x"]);
    assert_eq!(n.phandle(), Some(1));
    let m2 = t.find("/m2").unwrap();
    let names: Vec<&str> = m2.props.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["linux,phandle", "phandle"]);
    assert_eq!(m2.prop("linux,phandle").unwrap().as_u32(), Some(2));
    assert_eq!(m2.prop("phandle").unwrap().as_u32(), Some(2));
}

#[test]
fn label_relative_references_in_source() {
    // dtc 1.7 syntax: `&{label/child}`, in values and as a merge target.
    let mut sources = Sources::new();
    let src = "/dts-v1/;\n/ {\n\tp = <&{d/e@1}>, &{d/e@1};\n\td: dom { e@1 { }; };\n};\n&{d/e@1} { merged; };\n";
    let (tree, diags) = parse_dts(
        &mut sources,
        "t.dts",
        src.into(),
        &DtsOptions::default(),
        &FsLoader,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let t = tree.unwrap();
    let e = t.find("/dom/e@1").unwrap();
    assert!(e.prop("merged").is_some());
    let p = t.root.prop("p").unwrap();
    assert_eq!(p.u32_at(0), e.phandle());
    assert_eq!(&p.value[4..], b"/dom/e@1\0");
}
