//! Compatibility of the DTS parser with dtc: for every fixture under
//! `tests/fixtures/dts/*.dts`, the parsed tree must equal what `dtc -I dts -O dtb` makes of
//! the same file (same memreserve entries, boot CPU, node order, property order and value
//! bytes). Once `write_dtb` produces output, the blobs must also be byte-identical.

use staticbus_diag::Sources;
use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader, Node, Tree};
use staticbus_dtc_oracle::Oracle;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One flattened item of a tree, in DTB order.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Node(String),
    Prop(String, String, Vec<u8>),
    End,
}

#[derive(Debug, PartialEq, Eq)]
struct Flat {
    memreserve: Vec<(u64, u64)>,
    boot_cpuid: u32,
    items: Vec<Item>,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn cstr(b: &[u8], off: usize) -> String {
    let end = b[off..].iter().position(|&c| c == 0).unwrap() + off;
    String::from_utf8(b[off..end].to_vec()).unwrap()
}

/// A minimal FDT decoder (test-only).
fn decode_fdt(b: &[u8]) -> Flat {
    assert_eq!(be32(b, 0), 0xd00d_feed, "bad magic");
    let off_struct = be32(b, 8) as usize;
    let off_strings = be32(b, 12) as usize;
    let off_rsv = be32(b, 16) as usize;
    let boot_cpuid = be32(b, 28);
    let mut memreserve = Vec::new();
    let mut o = off_rsv;
    loop {
        let (a, s) = (be64(b, o), be64(b, o + 8));
        o += 16;
        if a == 0 && s == 0 {
            break;
        }
        memreserve.push((a, s));
    }
    let mut items = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut o = off_struct;
    let full = |path: &[String]| {
        if path.len() <= 1 {
            "/".to_string()
        } else {
            path[1..]
                .iter()
                .map(|n| format!("/{n}"))
                .collect::<String>()
        }
    };
    loop {
        let tag = be32(b, o);
        o += 4;
        match tag {
            1 => {
                let name = cstr(b, o);
                o += (name.len() + 1 + 3) & !3;
                path.push(name);
                items.push(Item::Node(full(&path)));
            }
            2 => {
                path.pop();
                items.push(Item::End);
            }
            3 => {
                let len = be32(b, o) as usize;
                let nameoff = be32(b, o + 4) as usize;
                o += 8;
                let value = b[o..o + len].to_vec();
                o += (len + 3) & !3;
                items.push(Item::Prop(
                    full(&path),
                    cstr(b, off_strings + nameoff),
                    value,
                ));
            }
            4 => {}
            9 => break,
            t => panic!("bad FDT tag {t}"),
        }
    }
    Flat {
        memreserve,
        boot_cpuid,
        items,
    }
}

fn flatten(tree: &Tree) -> Flat {
    fn go(n: &Node, path: &str, items: &mut Vec<Item>) {
        items.push(Item::Node(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        }));
        for p in &n.props {
            items.push(Item::Prop(
                if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
                p.name.clone(),
                p.value.clone(),
            ));
        }
        for c in &n.children {
            go(c, &format!("{path}/{}", c.name), items);
        }
        items.push(Item::End);
    }
    let mut items = Vec::new();
    go(&tree.root, "", &mut items);
    Flat {
        memreserve: tree
            .memreserve
            .iter()
            .map(|m| (m.address, m.size))
            .collect(),
        boot_cpuid: tree.boot_cpuid,
        items,
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dts")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dts"))
        .collect();
    v.sort();
    v
}

fn oracle() -> Oracle {
    Oracle::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtc-recorded"))
}

/// Every file under the fixture folder, relative to it: what dtc may read for a fixture.
fn fixture_files() -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&fixtures_dir(), &fixtures_dir(), &mut out);
    out.sort();
    out
}

/// dtc's blob of the fixture `path` (include path `inc`), live or recorded.
fn dtc_blob(path: &Path) -> Vec<u8> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let all = fixture_files();
    let mut files: Vec<(&str, &[u8])> = vec![];
    let main = all.iter().find(|(n, _)| n == name).expect("fixture");
    files.push((&main.0, &main.1));
    files.extend(
        all.iter()
            .filter(|(n, _)| n != name)
            .map(|(n, b)| (n.as_str(), b.as_slice())),
    );
    let key = format!("fixtures/{}", name.trim_end_matches(".dts"));
    let out = oracle().run(&key, &["-i", "inc"], &files);
    assert!(
        out.accepted,
        "dtc failed on {}: {}",
        path.display(),
        out.stderr
    );
    out.dtb
}

fn parse_fixture(path: &Path) -> Tree {
    let mut sources = Sources::new();
    let text = std::fs::read_to_string(path).unwrap();
    let opts = DtsOptions {
        include_dirs: vec![fixtures_dir().join("inc")],
        ..DtsOptions::default()
    };
    let (tree, diags) = parse_dts(&mut sources, path.to_str().unwrap(), text, &opts, &FsLoader);
    assert!(
        !diags.has_errors(),
        "{}: unexpected diagnostics: {:#?}",
        path.display(),
        diags
    );
    tree.expect("tree")
}

fn first_difference(ours: &Flat, theirs: &Flat) -> String {
    if ours.memreserve != theirs.memreserve {
        return format!(
            "memreserve: ours {:x?} dtc {:x?}",
            ours.memreserve, theirs.memreserve
        );
    }
    if ours.boot_cpuid != theirs.boot_cpuid {
        return format!(
            "boot_cpuid: ours {:#x} dtc {:#x}",
            ours.boot_cpuid, theirs.boot_cpuid
        );
    }
    for (i, (a, b)) in ours.items.iter().zip(&theirs.items).enumerate() {
        if a != b {
            return format!("item {i}: ours {a:x?}\n          dtc  {b:x?}");
        }
    }
    format!(
        "lengths differ: ours {} dtc {}",
        ours.items.len(),
        theirs.items.len()
    )
}

#[test]
fn fixtures_match_dtc() {
    let list = fixtures();
    assert!(list.len() >= 8, "fixtures missing: {list:?}");
    let mut failures = Vec::new();
    for path in &list {
        let tree = parse_fixture(path);
        let blob = dtc_blob(path);
        let theirs = decode_fdt(&blob);
        let ours = flatten(&tree);
        if ours != theirs {
            failures.push(format!(
                "{}: {}",
                path.display(),
                first_difference(&ours, &theirs)
            ));
            continue;
        }
        let written = write_dtb(&tree);
        if !written.is_empty() && written != blob {
            failures.push(format!(
                "{}: write_dtb output differs from dtc's blob ({} vs {} bytes)",
                path.display(),
                written.len(),
                blob.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decoder_self_check() {
    // The decoder and flattener agree on a tree parsed from a fixture when dtc is absent
    // too: this keeps the helpers honest.
    let path = fixtures_dir().join("xen-dom0less.dts");
    let tree = parse_fixture(&path);
    let flat = flatten(&tree);
    assert_eq!(flat.items.first(), Some(&Item::Node("/".into())));
    assert_eq!(flat.items.last(), Some(&Item::End));
    assert_eq!(
        flat.memreserve,
        vec![(0x4800_0000, 0x20_0000), (0x4a00_0000, 0x20_0000)]
    );
}

/// Deterministic xorshift generator for the differential test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

const PATHS: &[&str] = &["/", "/a", "/a/b", "/b", "/a@1", "/c/a", "/a/a@1"];
const NODE_NAMES: &[&str] = &["a", "b", "a@1", "c"];
const PROP_NAMES: &[&str] = &["p", "q", "r"];

/// Generates programs; `chaos` makes errors (duplicate or unknown labels, bad phandles)
/// likely, otherwise most programs are valid.
struct Gen {
    r: Rng,
    chaos: bool,
    labels: Vec<String>,
    next_label: usize,
    next_phandle: u32,
}

impl Gen {
    fn new_label(&mut self) -> String {
        if self.chaos && !self.labels.is_empty() && self.r.chance(30) {
            let i = self.r.below(self.labels.len());
            return self.labels[i].clone();
        }
        self.next_label += 1;
        let l = format!("l{}", self.next_label);
        self.labels.push(l.clone());
        l
    }

    /// A label for a reference inside a value: references are resolved after parsing,
    /// so labels defined further down (the first few generated) count too.
    fn some_label(&mut self) -> String {
        let unknown = if self.chaos { 25 } else { 3 };
        if self.r.chance(unknown) {
            return format!("missing{}", self.r.below(3));
        }
        format!("l{}", 1 + self.r.below(4))
    }

    /// A label already defined, for a top-level `&label { ... };`.
    fn defined_label(&mut self) -> String {
        if self.labels.is_empty() || (self.chaos && self.r.chance(25)) {
            return format!("missing{}", self.r.below(3));
        }
        let i = self.r.below(self.labels.len());
        self.labels[i].clone()
    }

    fn value(&mut self, s: &mut String) {
        for i in 0..1 + self.r.below(2) {
            if i > 0 {
                s.push_str(", ");
            }
            let pick = self.r.below(8);
            let pick = if !self.chaos && matches!(pick, 2 | 6) && self.r.chance(70) {
                7
            } else {
                pick
            };
            match pick {
                0 => s.push_str(&format!("<1 &{} 2>", self.some_label())),
                1 => s.push_str(&format!("&{}", self.some_label())),
                2 => s.push_str(&format!("&{{{}}}", self.r.pick(PATHS))),
                3 => s.push_str("\"s\""),
                4 => s.push_str("[0102]"),
                5 => s.push_str("/bits/ 8 <1>"),
                6 => s.push_str(&format!("<&{{{}}}>", self.r.pick(PATHS))),
                _ => s.push_str("<7>"),
            }
        }
    }

    fn prop(&mut self, s: &mut String, node: &str, own: Option<&str>, name: &str) {
        if self.r.chance(15) {
            // Property labels cannot be referenced; keep them out of `labels`.
            let l = if self.chaos && self.r.chance(30) {
                self.some_label()
            } else {
                self.next_label += 1;
                format!("l{}", self.next_label)
            };
            s.push_str(&format!("{l}: "));
        }
        let rare = if self.chaos { 10 } else { 3 };
        match self.r.below(100) {
            0..=9 => s.push_str(&format!("/delete-property/ {name};\n")),
            10..=19 => s.push_str(&format!("{name};\n")),
            n if n < 20 + rare => {
                let ph = if self.chaos {
                    1 + self.r.below(3) as u32
                } else {
                    self.next_phandle += 1 + self.r.below(2) as u32;
                    self.next_phandle
                };
                let which = if self.r.chance(50) {
                    "phandle"
                } else {
                    "linux,phandle"
                };
                s.push_str(&format!("{which} = <{ph}>;\n"));
            }
            n if n < 20 + 2 * rare => {
                let which = if self.r.chance(50) {
                    "phandle"
                } else {
                    "linux,phandle"
                };
                let target = match own {
                    Some(l) if !self.chaos || self.r.chance(50) => l.to_string(),
                    _ => self.some_label(),
                };
                s.push_str(&format!("{which} = <&{target}>;\n"));
            }
            n if n < 20 + 3 * rare => {
                let base = if self.chaos && self.r.chance(50) {
                    "zz"
                } else {
                    node.split('@').next().unwrap_or("")
                };
                s.push_str(&format!("name = \"{base}\";\n"));
            }
            _ => {
                s.push_str(&format!("{name} = "));
                self.value(s);
                s.push_str(";\n");
            }
        }
    }

    /// Up to 3 names from `pool`: distinct unless in chaos mode.
    fn names(&mut self, pool: &[&'static str]) -> Vec<&'static str> {
        let n = self.r.below(4);
        let mut v: Vec<&'static str> = Vec::new();
        for _ in 0..n {
            let x = self.r.pick(pool);
            if self.chaos || !v.contains(&x) {
                v.push(x);
            }
        }
        v
    }

    fn body(&mut self, s: &mut String, depth: usize, node: &str, own: Option<&str>) {
        s.push_str("{\n");
        let props = self.names(PROP_NAMES);
        for name in props {
            self.prop(s, node, own, name);
        }
        if depth < 3 {
            for name in self.names(NODE_NAMES) {
                match self.r.below(10) {
                    0 => s.push_str(&format!("/delete-node/ {name};\n")),
                    1 => {
                        s.push_str(&format!("/omit-if-no-ref/ {name} "));
                        self.body(s, depth + 1, name, None);
                    }
                    _ => {
                        let mut own = None;
                        if self.r.chance(50) {
                            let l = self.new_label();
                            s.push_str(&format!("{l}: "));
                            own = Some(l);
                        }
                        s.push_str(&format!("{name} "));
                        self.body(s, depth + 1, name, own.as_deref());
                    }
                }
            }
        }
        s.push_str("};\n");
    }

    fn program(&mut self) -> String {
        let mut s = String::from("/dts-v1/;\n");
        if self.r.chance(20) {
            s.push_str("/memreserve/ 0x1000 0x10;\n");
        }
        s.push_str("/ ");
        self.body(&mut s, 0, "", None);
        for _ in 0..self.r.below(6) {
            let pick = self.r.below(9);
            let pick = if !self.chaos && self.labels.is_empty() && (2..=7).contains(&pick) {
                0
            } else {
                pick
            };
            match pick {
                0 | 1 => {
                    s.push_str("/ ");
                    self.body(&mut s, 0, "", None);
                }
                2 | 3 => {
                    let l = self.defined_label();
                    s.push_str(&format!("&{l} "));
                    self.body(&mut s, 1, "x", Some(&l));
                }
                4 => {
                    let (a, b) = (self.new_label(), self.defined_label());
                    s.push_str(&format!("{a}: &{b} "));
                    self.body(&mut s, 1, "x", Some(&a));
                }
                5 if self.chaos || self.r.chance(30) => {
                    s.push_str(&format!("&{{{}}} ", self.r.pick(PATHS)));
                    self.body(&mut s, 1, "x", None);
                }
                6 => {
                    let l = self.defined_label();
                    s.push_str(&format!("/delete-node/ &{l};\n"));
                }
                7 => {
                    let l = self.defined_label();
                    s.push_str(&format!("/omit-if-no-ref/ &{l};\n"));
                }
                8 => s.push_str(&format!(
                    "/delete-node/ &{{{}}};\n",
                    self.r.pick(&PATHS[1..])
                )),
                _ => {
                    s.push_str("/ ");
                    self.body(&mut s, 0, "", None);
                }
            }
        }
        s
    }
}

/// Random programs built from labels, references, phandles, merges and deletions: we must
/// accept exactly what dtc accepts and build the same tree.
#[test]
fn random_programs_match_dtc() {
    if !staticbus_dtc_oracle::live("random_programs_match_dtc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: usize = std::env::var("DTS_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("DTS_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let mut rng = Rng(seed);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..cases {
        let mut g = Gen {
            r: Rng(rng.next() | 1),
            chaos: case % 3 == 0,
            labels: Vec::new(),
            next_label: 0,
            next_phandle: 0,
        };
        let text = g.program();
        let path = dir.path().join(format!("case{case}.dts"));
        std::fs::write(&path, &text).unwrap();
        let out = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o", "-"])
            .arg(&path)
            .output()
            .unwrap();
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            path.to_str().unwrap(),
            text.clone(),
            &DtsOptions::default(),
            &FsLoader,
        );
        if out.status.success() {
            accepted += 1;
            if diags.codes() == ["SB0033"] {
                // Deliberate difference: dtc writes a blob without a root node.
                assert!(
                    decode_fdt(&out.stdout).items.is_empty(),
                    "case {case}\n{text}"
                );
                continue;
            }
            let Some(tree) = tree else {
                panic!(
                    "case {case}: dtc accepts, we reject: {:?}\n{text}",
                    diags.codes()
                );
            };
            let ours = flatten(&tree);
            let theirs = decode_fdt(&out.stdout);
            assert!(
                ours == theirs,
                "case {case}: trees differ: {}\n{text}",
                first_difference(&ours, &theirs)
            );
            let written = write_dtb(&tree);
            assert!(
                written.is_empty() || written == out.stdout,
                "case {case}: write_dtb differs from dtc\n{text}"
            );
        } else {
            rejected += 1;
            if std::env::var_os("DTS_DIFF_VERBOSE").is_some() {
                let err = String::from_utf8_lossy(&out.stderr);
                eprintln!("REJECT {}", err.lines().next().unwrap_or(""));
                if std::env::var("DTS_DIFF_VERBOSE").as_deref() == Ok("2") {
                    eprintln!("{text}");
                }
            }
            assert!(
                tree.is_none() && diags.has_errors(),
                "case {case}: dtc rejects ({}), we accept\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!("random programs: {accepted} accepted by both, {rejected} rejected by both");
    assert!(accepted >= cases / 20, "too few accepted cases: {accepted}");
    assert!(rejected > cases / 10, "too few rejected cases: {rejected}");
}

/// Fragments for the lexical differential test: glued together at random inside a
/// property value (and sometimes in name position), they exercise dtc's start conditions,
/// longest-match rules, escapes, literals and expressions.
const FRAGMENTS: &[&str] = &[
    "<",
    ">",
    "1",
    "0x1f",
    "017",
    "08",
    "4294967296",
    "18446744073709551616",
    "10U",
    "7ULL",
    "'a'",
    "'\\\\'",
    "'\\''",
    "'ab'",
    "''",
    "'\\x41'",
    "\"s\"",
    "\"a\\\"b\"",
    "\"\\x4g\"",
    "\"\\101\\7\"",
    "\"\\x\"",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<<",
    ">>",
    "<=",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "&",
    "|",
    "^",
    "~",
    "!",
    "?",
    ":",
    "[",
    "]",
    "ab",
    "a",
    "0a1b",
    "lbl:",
    "x1:",
    ",",
    "&l1",
    "&{/n}",
    "&{/n/}",
    "/bits/",
    "8",
    "16",
    "64",
    "7",
    " ",
    "\n",
    "\t",
    "//c\n",
    "/*c*/",
    "\"",
    "'",
    "\\",
    "#",
    "=",
    ";",
    "{",
    "}",
    "@",
    "$",
    "p",
    "q-r",
    "\\p",
    "/delete-property/",
    "/delete-node/",
    "/memreserve/",
    "/dts-v1/",
    "&",
    "&&l1",
    "(1/0)",
    "(2%0)",
    "(1<<70)",
];

fn sep(r: &mut Rng) -> &'static str {
    r.pick(&["", " ", "  ", "\n", "\t", " /* c */ ", "// c\n"])
}

fn number(r: &mut Rng) -> String {
    match r.below(9) {
        0 => format!("{}", r.below(1000)),
        1 => format!("{:#x}", r.next() & 0xffff_ffff),
        2 => format!("0{:o}", r.below(4096)),
        3 => r
            .pick(&[
                "'a'", "'\\n'", "'\\x7f'", "'\\0'", "'\\377'", "'\\''", "'\"'",
            ])
            .to_string(),
        4 => format!(
            "({} {} {})",
            r.below(100),
            r.pick(&[
                "+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "<", ">", "<=", ">=", "==",
                "!=", "&&", "||"
            ]),
            1 + r.below(40)
        ),
        5 => format!("({} ? {} : {})", r.below(2), r.below(9), r.below(9)),
        6 => format!(
            "({}{})",
            r.pick(&["-", "~", "!", "- -", "~-"]),
            r.below(300)
        ),
        7 => format!("(({} + {}) * {})", r.below(9), r.below(9), r.below(9)),
        _ => format!("{}{}", r.below(99), r.pick(&["U", "UL", "ULL", "L", "LL"])),
    }
}

fn structured_value(r: &mut Rng, s: &mut String) {
    for i in 0..1 + r.below(3) {
        if i > 0 {
            s.push(',');
            s.push_str(sep(r));
        }
        match r.below(5) {
            0 => {
                let bits = r.pick(&["", "/bits/ 8 ", "/bits/ 16 ", "/bits/ 32 ", "/bits/ 64 "]);
                s.push_str(bits);
                s.push('<');
                for _ in 0..r.below(4) {
                    s.push_str(sep(r));
                    if bits.is_empty() && r.chance(15) {
                        s.push_str("&l1");
                    } else if r.chance(10) {
                        s.push_str("vl: ");
                        s.push_str(&number(r));
                    } else {
                        s.push_str(&number(r));
                    }
                }
                s.push('>');
            }
            1 => {
                s.push('"');
                for _ in 0..r.below(5) {
                    s.push_str(r.pick(&[
                        "a", " ", "\\n", "\\t", "\\\"", "\\\\", "\\x41", "\\x4", "\\101", "\\7",
                        "\\0", "\\q", "é", "\n",
                    ]));
                }
                s.push('"');
            }
            2 => {
                s.push('[');
                for _ in 0..r.below(5) {
                    s.push_str(&format!("{:02x}", r.below(256)));
                    s.push_str(r.pick(&["", " ", "\n"]));
                }
                s.push(']');
            }
            3 => s.push_str(r.pick(&["&l1", "&{/n}", "&{/}"])),
            _ => s.push_str(r.pick(&["\"\"", "<>", "[]"])),
        }
    }
}

#[test]
fn random_token_soup_matches_dtc() {
    if !staticbus_dtc_oracle::live("random_token_soup_matches_dtc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: usize = std::env::var("DTS_SOUP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("DTS_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0dd5_0123_4567);
    let mut r = Rng(seed | 1);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..cases {
        let mut text = String::from("/dts-v1/;\n/ {\n");
        for i in 0..1 + r.below(3) {
            if r.chance(60) {
                text.push_str(&format!("\tv{i} = "));
                structured_value(&mut r, &mut text);
                text.push_str(";\n");
                continue;
            }
            let mut value = String::new();
            for _ in 0..1 + r.below(6) {
                value.push_str(r.pick(FRAGMENTS));
                if r.chance(50) {
                    value.push(' ');
                }
            }
            match r.below(4) {
                0 => text.push_str(&format!("\tv{i} = {value};\n")),
                1 => text.push_str(&format!("\tv{i} = <{value}>;\n")),
                2 => text.push_str(&format!("\tv{i} = [{value}];\n")),
                _ => text.push_str(&format!("\t{value} = <1>;\n")),
            }
        }
        text.push_str("\tl1: n { };\n};\n");
        let path = dir.path().join(format!("soup{case}.dts"));
        std::fs::write(&path, &text).unwrap();
        let out = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o", "-"])
            .arg(&path)
            .output()
            .unwrap();
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            path.to_str().unwrap(),
            text.clone(),
            &DtsOptions::default(),
            &FsLoader,
        );
        if out.status.success() {
            accepted += 1;
            let Some(tree) = tree else {
                panic!("case {case}: dtc accepts, we reject: {:?}\n{text}", diags);
            };
            let ours = flatten(&tree);
            let theirs = decode_fdt(&out.stdout);
            assert!(
                ours == theirs,
                "case {case}: trees differ: {}\n{text}",
                first_difference(&ours, &theirs)
            );
            let written = write_dtb(&tree);
            assert!(
                written.is_empty() || written == out.stdout,
                "case {case}: write_dtb differs from dtc\n{text}"
            );
        } else {
            rejected += 1;
            assert!(
                tree.is_none() && diags.has_errors(),
                "case {case}: dtc rejects ({}), we accept\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!("token soup: {accepted} accepted by both, {rejected} rejected by both");
    assert!(accepted >= cases / 50, "too few accepted cases: {accepted}");
}

/// Hand-picked inputs where dtc's behaviour is surprising; we must agree on acceptance and
/// on the tree.
const EDGE_CASES: &[&str] = &[
    // strtol in \x escapes skips blanks and takes a sign
    "/ { a = \"\\x 1\\x-1\\x+f\"; };",
    // a lone backslash before the closing quote of a character literal
    "/ { a = <'\\'>; };",
    // longest match of character literals across quotes
    "/ { a = <'\\\\' 'b'>; };",
    "/ { a = <'\\\\' >, \"'\"; };",
    // labels inside byte strings beat hex pairs
    "/ { a = [abcd: 12]; };",
    "/ { a = [ab:12]; };",
    "/ { a = [a1b2:]; };",
    // names that look like numbers or keywords
    "/ { 0x10 = <1>; 1 { }; };",
    "/ { \\memreserve = <1>; };",
    // line markers are accepted, other # lines are not
    "# 1 \"x.dts\"\n/ { a; };",
    "/ {\n#line 3 \"x.dts\" 1 2\n a; };",
    "/ {\n# 3 \"x.dts\" junk\n a; };",
    "#include <foo.h>\n/ { };",
    "/ { #address-cells = <1>; };",
    // // comment at end of file without a newline
    "/ { };\n// end",
    "/ { }; /* unterminated",
    // empty and odd references
    "/ { a = <&{/}>; b = &{/}; };",
    "/ { a = &{}; };",
    "/ { a = <&{/x}>; x { }; };",
    // /delete-node/ of the root, then re-adding content
    "/ { a; }; /delete-node/ &{/}; / { b; };",
    // properties after nodes
    "/ { n { }; p; };",
    // deleted marker followed by a live node of the same name in one block
    "/ { /delete-node/ n; n { }; };",
    "/ { n { }; /delete-node/ n; };",
    // value labels duplicated
    "/ { a = <l: 1>, l: <2>; };",
    "/ { l: a; l: b; };",
    "/ { l: a { }; p = <&l>; l: b { }; };",
    // label on a property and a node
    "/ { l: p; l: n { }; };",
    // phandles
    "/ { p = <&n>; n: n { linux,phandle = <1>; phandle = <1>; }; };",
    "/ { p = <&n>; n: n { linux,phandle = <0xffffffff>; }; };",
    "/ { n: n { phandle = <1 2>; }; };",
    "/ { n: n { phandle = [00 00 00 01]; }; m { phandle = <1>; }; };",
    "/ { n: n { phandle = \"abc\"; }; };",
    // name properties
    "/ { n@1 { name = \"n\"; }; };",
    "/ { n@1 { name = \"n@1\"; }; };",
    "/ { n { name = \"n\", \"x\"; }; };",
    "/ { n { name; }; };",
    // bits
    "/ { a = /bits/ 8 <0x100>; };",
    "/ { a = /bits/ 8 <(-129)>; };",
    "/ { a = /bits/ 16 <0x10000>; };",
    "/ { a = /bits/ 64 <0xffffffffffffffff>; };",
    "/ { a = /bits/ 0x20 <1>; };",
    "/ { a = /bits/ (8) <1>; };",
    "/ { a = /bits/ 'a' <1>; };",
    // expressions
    "/ { a = <(1 ? 2 : 3 ? 4 : 5) (0 ? 1 : 0 ? 2 : 3)>; };",
    "/ { a = <(0 && (1/0))>; };",
    "/ { a = <((((((1))))))>; };",
    "/ { a = <-1>; };",
    "/ { a = <(1 << 63) >; };",
    // node names
    "/ { n@1@2 { }; };",
    "/ { n#1 { }; };",
    "/ { @1 { }; };",
    "/ { p@1 = <1>; };",
    "/ { p,q.r_s+t-u?v*w#x = <1>; };",
    // odd top level
    "/ { }; &{/} { a; };",
    "/ { l: n { }; }; x: y: &l { };",
    "/ { }; / { } / { };",
    "/ { };;",
    "/memreserve/ 1 2; / { }; /memreserve/ 3 4;",
    "l: / { };",
];

#[test]
fn edge_cases_match_dtc() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, body) in EDGE_CASES.iter().enumerate() {
        let text = format!("/dts-v1/;\n{body}");
        let path = dir.path().join(format!("edge{i}.dts"));
        std::fs::write(&path, &text).unwrap();
        let out = oracle().run_by_content("edge", &[], &[("edge.dts", text.as_bytes())]);
        let mut sources = Sources::new();
        let (tree, diags) = parse_dts(
            &mut sources,
            path.to_str().unwrap(),
            text.clone(),
            &DtsOptions::default(),
            &FsLoader,
        );
        match (out.accepted, tree) {
            (true, Some(tree)) => {
                let ours = flatten(&tree);
                let theirs = decode_fdt(&out.dtb);
                if ours != theirs {
                    failures.push(format!(
                        "{body:?}: trees differ: {}",
                        first_difference(&ours, &theirs)
                    ));
                } else {
                    let written = write_dtb(&tree);
                    if !written.is_empty() && written != out.dtb {
                        failures.push(format!("{body:?}: write_dtb differs from dtc"));
                    }
                }
            }
            (false, None) => {}
            (true, None) if diags.codes() == ["SB0033"] => {}
            (true, None) => failures.push(format!(
                "{body:?}: dtc accepts, we reject: {:?}",
                diags.codes()
            )),
            (false, Some(_)) => failures.push(format!(
                "{body:?}: dtc rejects ({}), we accept",
                out.stderr.trim()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Printing a parsed fixture with `print_dts` and parsing it again gives the same blob.
#[test]
fn fixtures_survive_print_and_reparse() {
    for path in fixtures() {
        let tree = parse_fixture(&path);
        let printed = staticbus_dt::print_dts(&tree);
        if printed.is_empty() {
            return; // printer not available
        }
        let mut sources = Sources::new();
        let (again, diags) = parse_dts(
            &mut sources,
            "printed.dts",
            printed.clone(),
            &DtsOptions::default(),
            &FsLoader,
        );
        let again = again.unwrap_or_else(|| {
            panic!(
                "{}: printed DTS does not parse: {:?}\n{printed}",
                path.display(),
                diags
            )
        });
        assert_eq!(
            flatten(&again),
            flatten(&tree),
            "{}: print/parse round trip changed the tree\n{printed}",
            path.display()
        );
    }
}
