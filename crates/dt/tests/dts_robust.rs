//! Adversarial input: the parser must return diagnostics, never panic, hang or overflow
//! the stack, and stay fast on large input.

use proptest::prelude::*;
use staticbus_diag::{Diagnostics, Sources};
use staticbus_dt::{parse_dts, DtsOptions, FileLoader, Tree};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// In-memory files; every parse below uses it (as a fuzz target would).
struct MemLoader(HashMap<PathBuf, String>);

impl FileLoader for MemLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

fn run(main: &str, files: &[(&str, &str)]) -> (Option<Tree>, Diagnostics) {
    let loader = MemLoader(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.to_string()))
            .collect(),
    );
    let mut sources = Sources::new();
    let (tree, diags) = parse_dts(
        &mut sources,
        "main.dts",
        main.to_string(),
        &DtsOptions::default(),
        &loader,
    );
    // Every diagnostic span must lie inside its file.
    for d in diags.iter() {
        if let Some(span) = d.location.as_span() {
            let len = sources.get(span.file).text.as_ref().unwrap().len() as u32;
            assert!(span.start <= span.end && span.end <= len, "{d:?}");
        }
    }
    (tree, diags)
}

#[track_caller]
fn rejects(main: &str, files: &[(&str, &str)]) -> Diagnostics {
    let (tree, diags) = run(main, files);
    assert!(tree.is_none() && diags.has_errors(), "{diags:?}");
    diags
}

#[test]
fn deep_nesting() {
    for n in [257, 10_000, 200_000] {
        let src = format!("/dts-v1/;\n/ {{{}{}}};", "a {".repeat(n), "};".repeat(n));
        assert!(rejects(&src, &[]).has_code("SB0021"));
    }
    let src = format!(
        "/dts-v1/;\n/ {{ p = <{}1{}>; }};",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(rejects(&src, &[]).has_code("SB0021"));
    let src = format!("/dts-v1/;\n/ {{ p = <({}1)>; }};", "-~!".repeat(100_000));
    let (tree, _) = run(&src, &[]);
    // Each `-~!` maps 1 to 1: !1 = 0, ~0 = all ones, -(all ones) = 1.
    assert_eq!(tree.unwrap().root.prop("p").unwrap().u32_at(0), Some(1));
    // Unbalanced braces only.
    rejects(&"{".repeat(100_000), &[]);
    rejects(&format!("/dts-v1/;\n/ {}", "{".repeat(100_000)), &[]);
    rejects(&format!("/dts-v1/;\n/ {{ }}; {}", "}".repeat(100_000)), &[]);
}

#[test]
fn unterminated_things() {
    for src in [
        "/dts-v1/;\n/ { p = \"abc",
        "/dts-v1/;\n/ { p = 'a",
        "/dts-v1/;\n/ { /* abc",
        "/dts-v1/;\n/ { p = [01 02",
        "/dts-v1/;\n/ { p = <1 2",
        "/dts-v1/;\n/ { p = (1 + ",
        "/dts-v1/;\n/ { n {",
        "/dts-v1/;\n/ {",
        "/dts-v1/;\n/",
        "/dts-v1/;\n",
        "/dts-v1/",
        "",
        "/dts-v1/;\n/ { p = &{/a",
        "/dts-v1/;\n/ { p = \"\\",
        "/dts-v1/;\n/include/ \"x",
        "/dts-v1/;\n/ { }; //",
    ] {
        rejects(src, &[]);
    }
}

#[test]
fn garbage_and_huge_numbers() {
    rejects("\u{0}\u{1}\u{7f}\u{ff}€𝄞", &[]);
    rejects("/dts-v1/;\n/ { p = <\u{0}>; };", &[]);
    rejects(&"$".repeat(100_000), &[]);
    let d = rejects(
        "/dts-v1/;\n/ { p = <99999999999999999999999999 0x123456789abcdef0123>; };",
        &[],
    );
    assert!(d.has_code("SB0008"));
    let d = rejects("/dts-v1/;\n/ { p = <(1/0) (1%0) ((1/0)/0)>; };", &[]);
    assert_eq!(d.codes().iter().filter(|c| **c == "SB0010").count(), 4);
    let d = rejects("/dts-v1/;\n/memreserve/ (1/0) 1;\n/ { };", &[]);
    assert!(d.has_code("SB0010"));
    // Shifts by 64 or more are 0, like dtc; no overflow panics anywhere.
    let (t, _) = run(
        "/dts-v1/;\n/ { p = /bits/ 64 <(1 << 64) (1 << 0xffffffffffffffff) (0 - 1) (0xffffffffffffffff * 0xffffffffffffffff) (0xffffffffffffffff + 2) ((-1) / (-1))>; };",
        &[],
    );
    let p = t.unwrap();
    let v = &p.root.prop("p").unwrap().value;
    assert_eq!(&v[..16], &[0; 16]);
}

#[test]
fn too_many_errors_are_capped() {
    let src = format!("/dts-v1/;\n/ {{ {} }};", "p = <(1/0)>; ".repeat(50_000));
    let d = rejects(&src, &[]);
    assert!(d.len() < 1000, "{}", d.len());
    let d = rejects(&"@ ".repeat(100_000), &[]);
    assert!(d.len() < 1000, "{}", d.len());
    let src = format!("/dts-v1/;\n/ {{ {} }};", "l: n { }; ".repeat(20_000));
    let d = rejects(&src, &[]);
    assert!(d.len() < 1000, "{}", d.len());
}

#[test]
fn include_cycles_and_bombs() {
    // Self include.
    let d = rejects("/dts-v1/;\n/include/ \"main.dts\"\n/ { };", &[]);
    assert!(d.has_code("SB0019"));
    // Mutual include.
    let d = rejects(
        "/dts-v1/;\n/ { /include/ \"a.dtsi\" };",
        &[
            ("a.dtsi", "/include/ \"b.dtsi\""),
            ("b.dtsi", "/include/ \"./a.dtsi\""),
        ],
    );
    assert!(d.has_code("SB0019"));
    // An exponential include DAG: each level includes the next twice.
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..30 {
        files.push((
            format!("l{i}.dtsi"),
            format!(
                "/include/ \"l{n}.dtsi\"\n/include/ \"l{n}.dtsi\"\n",
                n = i + 1
            ),
        ));
    }
    files.push(("l30.dtsi".into(), "x;\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let start = Instant::now();
    let d = rejects("/dts-v1/;\n/ { /include/ \"l0.dtsi\" };", &refs);
    assert!(d.has_code("SB0031"));
    assert!(start.elapsed() < Duration::from_secs(20));
    // Deep but finite chains stop at the configured depth.
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..100 {
        files.push((
            format!("c{i}.dtsi"),
            format!("/include/ \"c{}.dtsi\"\n", i + 1),
        ));
    }
    files.push(("c100.dtsi".into(), String::new()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let d = rejects("/dts-v1/;\n/include/ \"c0.dtsi\"\n/ { };", &refs);
    assert!(d.has_code("SB0018"));
}

#[test]
fn large_input_is_fast() {
    // ~6 MB: 20k nodes with 10 properties each, references between them.
    let mut src = String::from("/dts-v1/;\n/ {\n");
    for i in 0..20_000 {
        src.push_str(&format!(
            "\tn{i}: node@{i:x} {{\n\t\treg = <0x{i:x} 0x1000>;\n"
        ));
        for k in 0..8 {
            src.push_str(&format!(
                "\t\tprop-{k} = \"value {k}\", <{k} (0x{i:x} + {k})>, [0a 0b];\n"
            ));
        }
        if i > 0 {
            src.push_str(&format!("\t\tpeer = <&n{}>;\n", i - 1));
        }
        src.push_str("\t};\n");
    }
    src.push_str("};\n");
    for i in (0..20_000).step_by(7) {
        src.push_str(&format!("&n{i} {{ extra = &n{}; }};\n", (i + 1) % 20_000));
    }
    let start = Instant::now();
    let (tree, diags) = run(&src, &[]);
    let elapsed = start.elapsed();
    assert!(!diags.has_errors(), "{diags:?}");
    let tree = tree.unwrap();
    assert_eq!(tree.root.children.len(), 20_000);
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // Many # characters on one line (the cpp-directive check must stay linear).
    let line = format!("/dts-v1/;\n/ {{ {} }};", "# ".repeat(200_000));
    let start = Instant::now();
    rejects(&line, &[]);
    assert!(start.elapsed() < Duration::from_secs(20));
    // A huge unterminated character literal / string.
    let s = format!("/dts-v1/;\n/ {{ p = <'{}>; }};", "\\'".repeat(500_000));
    rejects(&s, &[]);
}

const PIECES: &[&str] = &[
    "/dts-v1/;",
    "/",
    "{",
    "}",
    ";",
    "=",
    "<",
    ">",
    "[",
    "]",
    "(",
    ")",
    ",",
    "&",
    "&l",
    "l:",
    "&{/a}",
    "&{",
    "\"s\"",
    "\"",
    "'a'",
    "'",
    "1",
    "0x10",
    "08",
    "/bits/",
    "8",
    "64",
    "/delete-node/",
    "/delete-property/",
    "/omit-if-no-ref/",
    "/memreserve/",
    "/include/",
    "/include/ \"inc.dtsi\"",
    "/include/ \"main.dts\"",
    "/incbin/",
    "/plugin/",
    "a",
    "a@1",
    "#address-cells",
    "#include",
    "# 1 \"x\"",
    "//",
    "/*",
    "*/",
    "\n",
    " ",
    "\\",
    "?",
    ":",
    "-",
    "+",
    "*",
    "%",
    "<<",
    "||",
    "!",
    "~",
    "0a",
    "phandle",
    "name",
    "\u{0}",
    "é",
];

fn piece_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(0..PIECES.len(), 0..60).prop_map(|v| {
        let mut s = String::new();
        for i in v {
            s.push_str(PIECES[i]);
            s.push(' ');
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = run(&text, &[("inc.dtsi", "p;")]);
        let _ = run(&format!("/dts-v1/;\n/ {{ {text} }};"), &[]);
    }

    #[test]
    fn token_soup_never_panics(s in piece_soup()) {
        let (tree, diags) = run(&s, &[("inc.dtsi", "x = <1>;")]);
        prop_assert_eq!(tree.is_some(), !diags.has_errors());
        let (tree, diags) = run(&format!("/dts-v1/;\n/ {{ l: a {{ }}; {s} }};"), &[("inc.dtsi", "x;")]);
        prop_assert_eq!(tree.is_some(), !diags.has_errors());
    }
}
