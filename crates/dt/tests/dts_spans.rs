//! Source positions and value chunks recorded by the DTS parser.

use staticbus_diag::{Sources, Span};
use staticbus_dt::{parse_dts, ChunkKind, DtsOptions, FileLoader, Property, Tree};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

struct MemLoader(HashMap<PathBuf, String>);

impl FileLoader for MemLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

fn parse(main: &str, files: &[(&str, &str)]) -> (Sources, Tree) {
    let loader = MemLoader(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.to_string()))
            .collect(),
    );
    let mut sources = Sources::new();
    let (tree, diags) = parse_dts(
        &mut sources,
        "dir/main.dts",
        main.to_string(),
        &DtsOptions::default(),
        &loader,
    );
    assert!(!diags.has_errors(), "{diags:#?}");
    (sources, tree.unwrap())
}

fn text(sources: &Sources, span: Option<Span>) -> &str {
    sources.snippet(span.expect("span")).expect("text")
}

fn prop<'t>(tree: &'t Tree, path: &str, name: &str) -> &'t Property {
    tree.find(path).unwrap().prop(name).unwrap()
}

#[test]
fn node_and_property_spans() {
    let src = "/dts-v1/;\n/ {\n\tl: p = <1 2>;\n\tempty;\n\tn@1 {\n\t\tq = \"x\";\n\t};\n};\n/ {\n\tn@1 { r; };\n};\n";
    let (s, t) = parse(src, &[]);
    assert_eq!(text(&s, t.root.span), "/");
    let (line, col) = s
        .get(t.root.span.unwrap().file)
        .line_col(t.root.span.unwrap().start as usize);
    assert_eq!((line, col), (2, 1));
    let p = prop(&t, "/", "p");
    assert_eq!(text(&s, p.span), "p = <1 2>;");
    assert_eq!(text(&s, p.name_span), "p");
    assert_eq!(p.labels, vec!["l"]);
    assert_eq!(text(&s, prop(&t, "/", "empty").span), "empty;");
    let n = t.find("/n@1").unwrap();
    // The node keeps the span of its first definition.
    assert_eq!(text(&s, n.span), "n@1");
    assert_eq!(
        s.get(n.span.unwrap().file)
            .line_col(n.span.unwrap().start as usize)
            .0,
        5
    );
    assert_eq!(text(&s, prop(&t, "/n@1", "r").span), "r;");
}

#[test]
fn cell_chunks_and_elements() {
    let src = "/dts-v1/;\n/ {\n\tp = <1 (2 + 3) &n 'c'>, /bits/ 64 <7>, \"s\", [0a 0b], &n;\n\tn: n { };\n};\n";
    let (s, t) = parse(src, &[]);
    let p = prop(&t, "/", "p");
    assert_eq!(p.chunks.len(), 5);
    // <1 (2 + 3) &n 'c'>
    let c = &p.chunks[0];
    assert_eq!((c.offset, c.len), (0, 16));
    assert_eq!(text(&s, c.span), "<1 (2 + 3) &n 'c'>");
    let ChunkKind::Cells { bits, elems } = &c.kind else {
        panic!("{c:?}")
    };
    assert_eq!(*bits, 32);
    let texts: Vec<&str> = elems.iter().map(|e| text(&s, e.span)).collect();
    assert_eq!(texts, vec!["1", "(2 + 3)", "&n", "'c'"]);
    let refs: Vec<Option<&str>> = elems.iter().map(|e| e.reference.as_deref()).collect();
    assert_eq!(refs, vec![None, None, Some("n"), None]);
    assert_eq!(p.u32_at(1), Some(5));
    assert_eq!(p.u32_at(2), Some(1), "phandle of /n");
    assert_eq!(p.u32_at(3), Some(u32::from(b'c')));
    assert_eq!(text(&s, p.span_of_cell(2)), "&n");
    // /bits/ 64 <7>
    let c = &p.chunks[1];
    assert_eq!((c.offset, c.len), (16, 8));
    assert_eq!(text(&s, c.span), "/bits/ 64 <7>");
    assert!(matches!(&c.kind, ChunkKind::Cells { bits: 64, elems } if elems.len() == 1));
    // "s"
    let c = &p.chunks[2];
    assert_eq!((c.offset, c.len, &c.kind), (24, 2, &ChunkKind::String));
    // [0a 0b]
    let c = &p.chunks[3];
    assert_eq!((c.offset, c.len, &c.kind), (26, 2, &ChunkKind::Bytes));
    assert_eq!(text(&s, c.span), "[0a 0b]");
    // &n: expanded to "/n\0"
    let c = &p.chunks[4];
    assert_eq!((c.offset, c.len), (28, 3));
    assert_eq!(c.kind, ChunkKind::PathRef("n".into()));
    assert_eq!(&p.value[28..], b"/n\0");
    assert_eq!(p.value.len(), 31);
}

#[test]
fn path_references_move_later_chunks() {
    let src = "/dts-v1/;\n/ {\n\tp = &{/a/b}, <&{/a}>, &{/}, \"z\";\n\ta { b { }; };\n};\n";
    let (_, t) = parse(src, &[]);
    let p = prop(&t, "/", "p");
    let layout: Vec<(u32, u32)> = p.chunks.iter().map(|c| (c.offset, c.len)).collect();
    assert_eq!(layout, vec![(0, 5), (5, 4), (9, 2), (11, 2)]);
    assert_eq!(p.chunks[0].kind, ChunkKind::PathRef("{/a/b}".into()));
    let ChunkKind::Cells { elems, .. } = &p.chunks[1].kind else {
        panic!()
    };
    assert_eq!(elems[0].reference.as_deref(), Some("{/a}"));
    assert_eq!(&p.value[..5], b"/a/b\0");
    assert_eq!(p.u32_at_offset(5), 1);
    assert_eq!(&p.value[9..], b"/\0z\0");
}

trait AtOffset {
    fn u32_at_offset(&self, off: usize) -> u32;
}

impl AtOffset for Property {
    fn u32_at_offset(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.value[off..off + 4].try_into().unwrap())
    }
}

#[test]
fn included_files_get_their_own_file_ids() {
    let files = [
        ("dir/inc/a.dtsi", "a-prop = <1>;\n/include/ \"b.dtsi\"\n"),
        ("dir/inc/b.dtsi", "b-node { };\n"),
        ("dir/v.dtsi", "\"from-include\""),
    ];
    let src = "/dts-v1/;\n/ {\n\tv = \"x\", /include/ \"v.dtsi\";\n/include/ \"inc/a.dtsi\"\n};\n";
    let (s, t) = parse(src, &files);
    let main = t.root.span.unwrap().file;
    let a = prop(&t, "/", "a-prop");
    assert_ne!(a.span.unwrap().file, main);
    assert_eq!(s.get(a.span.unwrap().file).name, "dir/inc/a.dtsi");
    assert_eq!(text(&s, a.span), "a-prop = <1>;");
    let b = t.find("/b-node").unwrap();
    assert_eq!(s.get(b.span.unwrap().file).name, "dir/inc/b.dtsi");
    let v = prop(&t, "/", "v");
    assert_eq!(v.as_strings().unwrap(), vec!["x", "from-include"]);
    assert_eq!(v.span.unwrap().file, main);
    assert_eq!(s.get(v.chunks[1].span.unwrap().file).name, "dir/v.dtsi");
    assert_eq!(text(&s, v.chunks[1].span), "\"from-include\"");
}

#[test]
fn include_search_order() {
    // The including file's directory first, then the include path.
    let files = [
        ("dir/x.dtsi", "here;\n"),
        ("other/x.dtsi", "there;\n"),
        ("other/y.dtsi", "only-there;\n"),
    ];
    let loader = MemLoader(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.to_string()))
            .collect(),
    );
    let opts = DtsOptions {
        include_dirs: vec![PathBuf::from("other")],
        ..DtsOptions::default()
    };
    let mut sources = Sources::new();
    let (tree, diags) = parse_dts(
        &mut sources,
        "dir/main.dts",
        "/dts-v1/;\n/ {\n/include/ \"x.dtsi\"\n/include/ \"y.dtsi\"\n};\n".into(),
        &opts,
        &loader,
    );
    assert!(!diags.has_errors(), "{diags:?}");
    let t = tree.unwrap();
    let names: Vec<&str> = t.root.props.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["here", "only-there"]);
}

#[test]
fn labels_memreserve_and_boot_cpu() {
    let src = "/dts-v1/;\nr1: r2: /memreserve/ 0x1000 (4 * 1024);\n/ {\n\tcpus { cpu@2 { reg = <2>; }; };\n\ta: b: n { };\n};\nc: &a { };\n&b { };\n";
    let (s, t) = parse(src, &[]);
    assert_eq!(t.memreserve.len(), 1);
    let m = &t.memreserve[0];
    assert_eq!((m.address, m.size), (0x1000, 4096));
    assert_eq!(m.labels, vec!["r1", "r2"]);
    assert_eq!(text(&s, m.span), "/memreserve/ 0x1000 (4 * 1024);");
    assert_eq!(t.find("/n").unwrap().labels, vec!["a", "b", "c"]);
    assert_eq!(t.boot_cpuid, 2);
}

#[test]
fn xen_fixture_has_expected_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dts");
    let path = dir.join("xen-dom0less.dts");
    let mut sources = Sources::new();
    let (tree, diags) = parse_dts(
        &mut sources,
        path.to_str().unwrap(),
        std::fs::read_to_string(&path).unwrap(),
        &DtsOptions::default(),
        &staticbus_dt::FsLoader,
    );
    assert!(!diags.has_errors(), "{diags:#?}");
    let t = tree.unwrap();
    // Event channel pairs point at each other through allocated phandles.
    let ec1 = t.find("/chosen/domU1/evtchn@1").unwrap();
    let ec2 = t.find("/chosen/domU2/evtchn@2").unwrap();
    let e1 = ec1.prop("xen,evtchn").unwrap();
    let e2 = ec2.prop("xen,evtchn").unwrap();
    assert_eq!(e1.u32_at(1), ec2.phandle());
    assert_eq!(e2.u32_at(1), ec1.phandle());
    assert_eq!(ec1.props.last().unwrap().name, "phandle");
    // The span of the reference points at `&ec2` in the main file.
    assert_eq!(text(&sources, e1.span_of_cell(1)), "&ec2");
    // Included board nodes point into the .dtsi.
    let uart = t.find("/pl011@9000000").unwrap();
    assert!(sources
        .get(uart.span.unwrap().file)
        .name
        .ends_with("xen-board.dtsi"));
    // Path references are expanded.
    assert_eq!(
        t.find("/aliases")
            .unwrap()
            .prop("serial0")
            .unwrap()
            .as_str(),
        Some("/pl011@9000000")
    );
    assert_eq!(
        t.find("/chosen")
            .unwrap()
            .prop("stdout-path")
            .unwrap()
            .as_strings(),
        Some(vec!["/pl011@9000000", ":115200n8"])
    );
    // Merges.
    let d1 = t.find("/chosen/domU1").unwrap();
    assert_eq!(d1.labels, vec!["domU1", "dom1"]);
    assert!(d1.prop("direct-map").is_some());
    let d2 = t.find("/chosen/domU2").unwrap();
    assert!(d2.prop("vpl011").is_none());
    assert_eq!(
        d2.prop("xen,enhanced").unwrap().as_str(),
        Some("no-xenstore")
    );
    assert_eq!(t.memreserve.len(), 2);
}
