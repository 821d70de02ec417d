//! One test per diagnostic code of the DTS parser and the reference resolver: the code
//! and the line:column of its primary span. Where dtc rejects the same input, that is
//! checked too (when dtc is installed).

use staticbus_diag::{Diagnostics, Location, Severity, Sources};
use staticbus_dt::{parse_dts, DtsOptions, FileLoader, Tree};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// In-memory files for `/include/`.
struct MemLoader(HashMap<PathBuf, String>);

impl FileLoader for MemLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

/// Parses `main.dts` with extra in-memory files.
fn parse_with(
    main: &str,
    files: &[(&str, &str)],
    opts: &DtsOptions,
) -> (Sources, Option<Tree>, Diagnostics) {
    let loader = MemLoader(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.to_string()))
            .collect(),
    );
    let mut sources = Sources::new();
    let (tree, diags) = parse_dts(&mut sources, "main.dts", main.to_string(), opts, &loader);
    (sources, tree, diags)
}

/// (file name, line, column) of every diagnostic with `code`.
fn positions(sources: &Sources, diags: &Diagnostics, code: &str) -> Vec<(String, usize, usize)> {
    diags
        .iter()
        .filter(|d| d.code.id == code)
        .filter_map(|d| match d.location {
            Location::Span { span } => {
                let f = sources.get(span.file);
                let (l, c) = f.line_col(span.start as usize);
                Some((f.name.clone(), l, c))
            }
            _ => None,
        })
        .collect()
}

fn dtc_rejects(main: &str, files: &[(&str, &str)]) -> bool {
    let oracle = staticbus_dtc_oracle::Oracle::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/dtc-recorded"
    ));
    let mut all: Vec<(&str, &[u8])> = vec![("main.dts", main.as_bytes())];
    all.extend(files.iter().map(|(n, t)| (*n, t.as_bytes())));
    !oracle.run_by_content("errors", &[], &all).accepted
}

/// Asserts that parsing fails with `code` at `file:line:col`, and (if `dtc_too`) that dtc
/// rejects the input as well.
#[track_caller]
fn check_in(
    main: &str,
    files: &[(&str, &str)],
    opts: &DtsOptions,
    code: &str,
    at: (&str, usize, usize),
    dtc_too: bool,
) {
    let (sources, tree, diags) = parse_with(main, files, opts);
    assert!(tree.is_none(), "{code}: expected no tree");
    let pos = positions(&sources, &diags, code);
    let want = (at.0.to_string(), at.1, at.2);
    assert!(
        pos.contains(&want),
        "{code}: expected at {want:?}, got {pos:?}; all: {:#?}",
        diags
            .iter()
            .map(|d| (d.code.id, &d.message))
            .collect::<Vec<_>>()
    );
    for d in diags.iter().filter(|d| d.code.id == code) {
        assert_eq!(d.severity, Severity::Error);
        assert!(d.label.is_some(), "{code}: no label");
        assert!(d.help.is_some(), "{code}: no help");
    }
    if dtc_too {
        assert!(dtc_rejects(main, files), "{code}: dtc accepts this input");
    }
}

#[track_caller]
fn check(main: &str, code: &str, line: usize, col: usize) {
    check_in(
        main,
        &[],
        &DtsOptions::default(),
        code,
        ("main.dts", line, col),
        true,
    );
}

#[test]
fn sb0001_syntax() {
    check("/dts-v1/;\n/ {\n\tp = <1 2;\n};\n", "SB0001", 3, 10);
    check("/dts-v1/;\n/ {\n\tn {\n", "SB0001", 4, 1);
    check("/dts-v1/;\n/ { p = \"a\" \"b\"; };\n", "SB0001", 2, 13);
}

#[test]
fn sb0002_missing_v1() {
    check("/ { };\n", "SB0002", 1, 1);
}

#[test]
fn sb0003_plugin() {
    let src = "/dts-v1/;\n/plugin/;\n/ { };\n";
    check_in(
        src,
        &[],
        &DtsOptions::default(),
        "SB0003",
        ("main.dts", 2, 1),
        false,
    );
}

#[test]
fn sb0004_unterminated_comment() {
    check("/dts-v1/;\n/ { };\n  /* never closed\n", "SB0004", 3, 3);
}

#[test]
fn sb0005_unterminated_string() {
    check("/dts-v1/;\n/ { s = \"abc;\n};\n", "SB0005", 2, 9);
    check("/dts-v1/;\n/ { s = \"abc\\\ndef\"; };\n", "SB0005", 2, 13);
}

#[test]
fn sb0006_bad_escape() {
    check("/dts-v1/;\n/ { s = \"a\\xg\"; };\n", "SB0006", 2, 11);
}

#[test]
fn sb0007_bad_literal() {
    check("/dts-v1/;\n/ { p = <08>; };\n", "SB0007", 2, 10);
}

#[test]
fn sb0008_literal_range() {
    check(
        "/dts-v1/;\n/ { p = /bits/ 64 <0x10000000000000000>; };\n",
        "SB0008",
        2,
        20,
    );
}

#[test]
fn sb0009_bad_char_literal() {
    check("/dts-v1/;\n/ { p = <''>; };\n", "SB0009", 2, 10);
    check("/dts-v1/;\n/ { p = <'ab'>; };\n", "SB0009", 2, 10);
}

#[test]
fn sb0010_division_by_zero() {
    check("/dts-v1/;\n/ { p = <(1 / 0)>; };\n", "SB0010", 2, 11);
    check("/dts-v1/;\n/ { p = <(7 % (2 - 2))>; };\n", "SB0010", 2, 11);
}

#[test]
fn sb0011_value_range() {
    check("/dts-v1/;\n/ { p = <0x100000000>; };\n", "SB0011", 2, 10);
    check("/dts-v1/;\n/ { p = /bits/ 8 <1 256>; };\n", "SB0011", 2, 21);
}

#[test]
fn sb0012_bad_bits() {
    check("/dts-v1/;\n/ { p = /bits/ 7 <1>; };\n", "SB0012", 2, 16);
}

#[test]
fn sb0013_reference_width() {
    check(
        "/dts-v1/;\n/ { p = /bits/ 16 <&l>; l: n { }; };\n",
        "SB0013",
        2,
        20,
    );
}

#[test]
fn sb0014_property_after_node() {
    check("/dts-v1/;\n/ {\n\tn { };\n\tp = <1>;\n};\n", "SB0014", 4, 2);
}

#[test]
fn sb0015_label_not_found() {
    check("/dts-v1/;\n/ { };\n&nolabel { };\n", "SB0015", 3, 1);
    check("/dts-v1/;\n/ { };\n/delete-node/ &{/x};\n", "SB0015", 3, 15);
    // Defined too late: dtc resolves these blocks in order.
    let src = "/dts-v1/;\n/ { };\n&late { p; };\n/ { late: n { }; };\n";
    check(src, "SB0015", 3, 1);
    let (_, _, diags) = parse_with(src, &[], &DtsOptions::default());
    let d = diags.iter().find(|d| d.code.id == "SB0015").unwrap();
    assert!(d.notes.iter().any(|n| n.contains("further down")), "{d:?}");
}

#[test]
fn sb0016_cpp_directive() {
    check(
        "/dts-v1/;\n#include <dt-bindings/gpio/gpio.h>\n/ { };\n",
        "SB0016",
        2,
        1,
    );
    check("/dts-v1/;\n  #define FOO 1\n/ { };\n", "SB0016", 2, 3);
    let (_, _, diags) = parse_with(
        "/dts-v1/;\n#include \"x.h\"\n/ { };\n",
        &[],
        &DtsOptions::default(),
    );
    let d = diags.iter().find(|d| d.code.id == "SB0016").unwrap();
    assert!(d.help.as_deref().unwrap().contains("/include/"));
}

#[test]
fn sb0017_include_not_found() {
    check(
        "/dts-v1/;\n/include/ \"missing.dtsi\"\n/ { };\n",
        "SB0017",
        2,
        1,
    );
}

#[test]
fn sb0018_include_depth() {
    let files = [("a.dtsi", "/include/ \"b.dtsi\"\n"), ("b.dtsi", "p;\n")];
    let opts = DtsOptions {
        max_include_depth: 1,
        ..DtsOptions::default()
    };
    check_in(
        "/dts-v1/;\n/ {\n/include/ \"a.dtsi\"\n};\n",
        &files,
        &opts,
        "SB0018",
        ("a.dtsi", 1, 1),
        false,
    );
}

#[test]
fn sb0019_include_cycle() {
    let files = [
        ("a.dtsi", "p;\n/include/ \"b.dtsi\"\n"),
        ("b.dtsi", "  /include/ \"a.dtsi\"\n"),
    ];
    check_in(
        "/dts-v1/;\n/ {\n/include/ \"a.dtsi\"\n};\n",
        &files,
        &DtsOptions::default(),
        "SB0019",
        ("b.dtsi", 1, 3),
        true,
    );
}

#[test]
fn sb0020_incbin() {
    check_in(
        "/dts-v1/;\n/ { p = /incbin/(\"blob.bin\"); };\n",
        &[],
        &DtsOptions::default(),
        "SB0020",
        ("main.dts", 2, 9),
        false,
    );
}

#[test]
fn sb0021_too_deep() {
    let mut src = String::from("/dts-v1/;\n/ {\n");
    for _ in 0..300 {
        src.push_str("n {\n");
    }
    check_in(
        &src,
        &[],
        &DtsOptions::default(),
        "SB0021",
        ("main.dts", 258, 3),
        false,
    );
    // Expressions too.
    let src = format!(
        "/dts-v1/;\n/ {{ p = <{}1{}>; }};\n",
        "(".repeat(100),
        ")".repeat(100)
    );
    let (_, tree, diags) = parse_with(&src, &[], &DtsOptions::default());
    assert!(tree.is_none());
    assert!(diags.has_code("SB0021"));
}

#[test]
fn sb0022_duplicate_node() {
    check("/dts-v1/;\n/ {\n\tn { };\n\tn { };\n};\n", "SB0022", 4, 2);
    // A /delete-node/ of a node defined in the same block counts as a duplicate in dtc.
    check(
        "/dts-v1/;\n/ {\n\tn { };\n\t/delete-node/ n;\n};\n",
        "SB0022",
        4,
        16,
    );
}

#[test]
fn sb0023_duplicate_property() {
    check("/dts-v1/;\n/ {\n\tp;\n\tp = <1>;\n};\n", "SB0023", 4, 2);
}

#[test]
fn sb0024_node_name_chars() {
    check("/dts-v1/;\n/ { a#b { }; };\n", "SB0024", 2, 6);
}

#[test]
fn sb0025_node_name_format() {
    check("/dts-v1/;\n/ { n@1@2 { }; };\n", "SB0025", 2, 8);
}

#[test]
fn sb0026_property_name_chars() {
    check("/dts-v1/;\n/ { p@1 = <1>; };\n", "SB0026", 2, 6);
}

#[test]
fn sb0027_name_not_string() {
    check("/dts-v1/;\n/ { n { name = <1>; }; };\n", "SB0027", 2, 9);
}

#[test]
fn sb0028_name_mismatch() {
    check("/dts-v1/;\n/ { n { name = \"m\"; }; };\n", "SB0028", 2, 9);
}

#[test]
fn sb0029_unexpected_character() {
    check("/dts-v1/;\n/ { p = <1 $ 2>; };\n", "SB0029", 2, 12);
    check("/dts-v1/;\n/ { p = [0g]; };\n", "SB0029", 2, 10);
}

#[test]
fn sb0030_line_comment_at_eof() {
    check("/dts-v1/;\n/ { };\n// end", "SB0030", 3, 1);
}

#[test]
fn sb0031_too_many_includes() {
    let mut src = String::from("/dts-v1/;\n");
    for _ in 0..4097 {
        src.push_str("/include/ \"x.dtsi\"\n");
    }
    src.push_str("/ { };\n");
    check_in(
        &src,
        &[("x.dtsi", "")],
        &DtsOptions::default(),
        "SB0031",
        ("main.dts", 4098, 1),
        false,
    );
}

#[test]
fn sb0032_empty_reference() {
    check("/dts-v1/;\n/ { p = &{}; };\n", "SB0032", 2, 9);
}

#[test]
fn sb0033_root_deleted() {
    check_in(
        "/dts-v1/;\n/ { };\n/delete-node/ &{/};\n",
        &[],
        &DtsOptions::default(),
        "SB0033",
        ("main.dts", 3, 1),
        false,
    );
}

#[test]
fn sb0090_unresolved_reference() {
    check("/dts-v1/;\n/ { p = <&nolabel>; };\n", "SB0090", 2, 10);
    check("/dts-v1/;\n/ { p = &{/no/such}; };\n", "SB0090", 2, 9);
    // A property label cannot be referenced.
    let src = "/dts-v1/;\n/ { l: q; p = <&l>; };\n";
    check(src, "SB0090", 2, 16);
    let (_, _, diags) = parse_with(src, &[], &DtsOptions::default());
    let d = diags.iter().find(|d| d.code.id == "SB0090").unwrap();
    assert!(
        d.notes.iter().any(|n| n.contains("labels a property")),
        "{d:?}"
    );
}

#[test]
fn sb0091_duplicate_label() {
    check(
        "/dts-v1/;\n/ {\n\tl: a { };\n\tl: b { };\n};\n",
        "SB0091",
        4,
        2,
    );
    check(
        "/dts-v1/;\n/ { p = <1 l: 2>, l: \"x\"; };\n",
        "SB0091",
        2,
        19,
    );
}

#[test]
fn sb0092_phandle_length() {
    check(
        "/dts-v1/;\n/ { n { phandle = <1 2>; }; };\n",
        "SB0092",
        2,
        9,
    );
}

#[test]
fn sb0093_phandle_other_node() {
    check(
        "/dts-v1/;\n/ { a: a { }; b { phandle = <&a>; }; };\n",
        "SB0093",
        2,
        30,
    );
}

#[test]
fn sb0094_phandle_value() {
    check("/dts-v1/;\n/ { n { phandle = <0>; }; };\n", "SB0094", 2, 9);
    check(
        "/dts-v1/;\n/ { n { linux,phandle = <0xffffffff>; }; };\n",
        "SB0094",
        2,
        9,
    );
}

#[test]
fn sb0095_phandle_mismatch() {
    check(
        "/dts-v1/;\n/ { n {\n\tphandle = <1>;\n\tlinux,phandle = <2>;\n}; };\n",
        "SB0095",
        4,
        2,
    );
}

#[test]
fn sb0096_phandle_duplicate() {
    check(
        "/dts-v1/;\n/ {\n\ta { phandle = <1>; };\n\tb { phandle = <1>; };\n};\n",
        "SB0096",
        4,
        6,
    );
}

#[test]
fn sb0097_bad_reference_cell() {
    use staticbus_dt::{resolve_references, Chunk, ChunkKind, Elem, Property};
    // Only trees built by code can have this: a reference in a 16-bit array.
    let mut tree = Tree::default();
    tree.root.labels.push("me".into());
    let mut p = Property::raw("p", vec![0xff, 0xff]);
    p.chunks.push(Chunk {
        offset: 0,
        len: 2,
        kind: ChunkKind::Cells {
            bits: 16,
            elems: vec![Elem {
                span: None,
                reference: Some("me".into()),
            }],
        },
        span: None,
    });
    tree.root.props.push(p);
    let diags = resolve_references(&mut tree);
    assert_eq!(diags.codes(), vec!["SB0097"]);
}

#[test]
fn every_code_is_tested_and_documented() {
    let src = include_str!("dts_errors.rs");
    for code in staticbus_dt::dts::CODES
        .iter()
        .chain(staticbus_dt::refs::CODES)
    {
        let test_name = format!("fn {}_", code.id.to_lowercase());
        assert!(src.contains(&test_name), "no test for {}", code.id);
        assert!(!code.title.is_empty() && !code.xen.is_empty());
        assert_eq!(code.severity, Severity::Error);
    }
    let mut ids: Vec<&str> = staticbus_dt::dts::CODES
        .iter()
        .chain(staticbus_dt::refs::CODES)
        .map(|c| c.id)
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate code ids");
    for id in ids {
        let num: u32 = id[2..].parse().unwrap();
        assert!((1..=39).contains(&num) || (90..=99).contains(&num), "{id}");
    }
}

#[test]
fn several_errors_are_reported() {
    let src =
        "/dts-v1/;\n/ {\n\ta = <1 x>;\n\tb = <2>;\n\tc = \"s\" \"t\";\n\tn { p = <08>; };\n};\n";
    let (sources, tree, diags) = parse_with(src, &[], &DtsOptions::default());
    assert!(tree.is_none());
    assert_eq!(
        positions(&sources, &diags, "SB0029"),
        vec![("main.dts".to_string(), 3, 9)]
    );
    assert_eq!(
        positions(&sources, &diags, "SB0001"),
        vec![("main.dts".to_string(), 5, 10)]
    );
    assert_eq!(
        positions(&sources, &diags, "SB0007"),
        vec![("main.dts".to_string(), 6, 11)]
    );
}
