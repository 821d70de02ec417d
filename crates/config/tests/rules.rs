//! Rule tests: for every code of `staticbus_config::codes::ALL`, a fixture that triggers
//! it (the code is reported, with its severity, at the right line:col) and the same
//! fixture with the problem fixed (the code is gone; the fixed input is clean).
//!
//! Fixtures live in `tests/fixtures/rules/`, one problem each, named after the code they
//! trigger (`sb0109_…`). The fixed counterpart is derived from the fixture by textual
//! replacements (`fix`) or by changed options (`fixed_opts`), so it differs from the
//! negative input only in the problem. Expected positions are given as a marker substring
//! of the fixture (`|` marks the exact column; without `|` the marker's first character),
//! never as hard-coded numbers.
//!
//! DTS fixtures that name a node (`dtb`) are also compiled with `dtc` and checked as DTB
//! input, where the location must be `Location::Node { path, property }`. Without dtc the
//! blobs dtc made of the same text (recorded in `tests/dtc-recorded/rules/`) stand in for
//! it; see `staticbus-dtc-oracle`.

use staticbus_config::codes::{self, *};
use staticbus_config::compile::{check, Checked, Options};
use staticbus_config::model::XenVersion;
use staticbus_diag::{Code, Diagnostic, Location, Sources};
use staticbus_dtc_oracle::Oracle;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rules");

/// Where the diagnostic must point.
#[derive(Clone, Debug)]
enum At {
    /// A span starting at this marker in the fixture text (`|` marks the column).
    Marker(&'static str),
    /// The whole input file.
    File,
    /// The whole file given as `--base`.
    BaseFile,
    /// No location.
    Nowhere,
}

/// One rule test: a negative input and its fixed counterpart.
struct Case {
    /// Fixture file name (also the name of the input file given to `check`).
    file: &'static str,
    /// The fixture text (read from the fixture, possibly with generated text appended).
    text: String,
    /// True if the input must be written to a temporary directory (generated text).
    generated: bool,
    /// True if the input does not exist (I/O error test).
    missing: bool,
    opts: Options,
    fixed_opts: Option<Options>,
    code: Code,
    at: At,
    fixes: Vec<(String, String)>,
    /// Expected DTB location: node path and property.
    dtb: Option<(&'static str, Option<&'static str>)>,
    /// A base tree fixture (`Options::base`) for both runs.
    base: Option<&'static str>,
    /// Another base tree fixture for the fixed run.
    fixed_base: Option<&'static str>,
    /// Another file name for the fixed input.
    fixed_name: Option<&'static str>,
    /// The code must be reported exactly once (not again through the peer of a node).
    once: bool,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// `sb0110_x.toml` → `sb0110_x.fixed.toml`.
fn fixed_example_name(file: &str) -> String {
    match file.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.fixed.{ext}"),
        None => format!("{file}.fixed"),
    }
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name))
        .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rules")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[start..].chars().count() + 1)
}

/// Byte offset a marker designates; the marker (without `|`) must occur exactly once.
fn marker_offset(text: &str, marker: &str) -> usize {
    let (pre, post) = marker.split_once('|').unwrap_or(("", marker));
    let needle = format!("{pre}{post}");
    let hits: Vec<usize> = text.match_indices(&needle).map(|(i, _)| i).collect();
    assert_eq!(
        hits.len(),
        1,
        "marker {marker:?} must occur exactly once in the fixture (found {})",
        hits.len()
    );
    hits[0] + pre.len()
}

fn describe(sources: &Sources, d: &Diagnostic) -> String {
    let at = match &d.location {
        Location::Span { span } => {
            let f = sources.get(span.file);
            let (l, c) = f.line_col(span.start as usize);
            format!("{}:{l}:{c}", f.name)
        }
        Location::Node {
            file,
            path,
            property,
        } => format!(
            "{} {path}{}",
            sources.get(*file).name,
            property
                .as_ref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default()
        ),
        Location::File { file } => sources.get(*file).name.clone(),
        Location::None => "-".into(),
    };
    format!("  {} {:?} at {at}: {}", d.code.id, d.severity, d.message)
}

fn dump(sources: &Sources, c: &Checked) -> String {
    c.diags
        .iter()
        .map(|d| describe(sources, d))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compiles the DTS file `dts` with dtc (or takes dtc's recorded answer) into `dtb`.
fn dtc(key: &str, dts: &Path, dtb: &Path) {
    let oracle = Oracle::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtc-recorded"));
    let text = std::fs::read(dts).unwrap();
    let out = oracle.run(&format!("rules/{key}"), &[], &[("in.dts", &text)]);
    assert!(
        out.accepted,
        "dtc rejects {}:\n{}",
        dts.display(),
        out.stderr
    );
    std::fs::write(dtb, &out.dtb).unwrap();
}

impl Case {
    fn new(file: &'static str, code: Code) -> Case {
        let missing = !fixture(file).exists();
        Case {
            file,
            text: if missing {
                String::new()
            } else {
                read_fixture(file)
            },
            generated: false,
            missing,
            opts: Options::default(),
            fixed_opts: None,
            code,
            at: At::File,
            fixes: Vec::new(),
            dtb: None,
            base: None,
            fixed_base: None,
            fixed_name: None,
            once: false,
        }
    }

    /// A TOML fixture.
    fn toml(file: &'static str, code: Code) -> Case {
        assert!(file.ends_with(".toml"), "{file}");
        Case::new(file, code)
    }

    /// A DTS fixture, checked for Xen 4.20 without CONFIG_STATIC_SHM unless told otherwise.
    fn dts(file: &'static str, code: Code) -> Case {
        assert!(file.ends_with(".dts"), "{file}");
        let mut c = Case::new(file, code);
        c.opts = Options {
            xen: Some(XenVersion::V4_20),
            static_shm: Some(false),
            ..Options::default()
        };
        c
    }

    fn at(mut self, marker: &'static str) -> Case {
        self.at = At::Marker(marker);
        self
    }

    fn at_file(mut self) -> Case {
        self.at = At::File;
        self
    }

    fn at_base_file(mut self) -> Case {
        self.at = At::BaseFile;
        self
    }

    fn nowhere(mut self) -> Case {
        self.at = At::Nowhere;
        self
    }

    /// Replaces every occurrence of `from` (which must occur) by `to` in the fixed input.
    fn fix(mut self, from: impl Into<String>, to: impl Into<String>) -> Case {
        self.fixes.push((from.into(), to.into()));
        self
    }

    fn xen(mut self, v: XenVersion) -> Case {
        self.opts.xen = Some(v);
        self
    }

    fn static_shm(mut self, on: bool) -> Case {
        self.opts.static_shm = Some(on);
        self
    }

    fn fixed_opts(mut self, o: Options) -> Case {
        self.fixed_opts = Some(o);
        self
    }

    fn base(mut self, file: &'static str) -> Case {
        self.base = Some(file);
        self
    }

    fn fixed_base(mut self, file: &'static str) -> Case {
        self.fixed_base = Some(file);
        self
    }

    /// The code must be reported exactly once.
    fn once(mut self) -> Case {
        self.once = true;
        self
    }

    /// The fixed input is the same text under another file name.
    fn fixed_name(mut self, name: &'static str) -> Case {
        self.fixed_name = Some(name);
        self
    }

    /// Also check the DTB compiled from this DTS: the code at this node (and property).
    fn dtb(mut self, path: &'static str, property: Option<&'static str>) -> Case {
        self.dtb = Some((path, property));
        self
    }

    /// Appends generated text to the fixture (for inputs too repetitive to store).
    fn append(mut self, extra: String) -> Case {
        self.text.push_str(&extra);
        self.generated = true;
        self
    }

    fn fixed_text(&self) -> String {
        let mut t = self.text.clone();
        for (from, to) in &self.fixes {
            assert!(
                t.contains(from),
                "{}: fix {from:?} does not occur in the fixture",
                self.file
            );
            t = t.replace(from.as_str(), to);
        }
        t
    }

    fn options(&self, fixed: bool) -> Options {
        let mut o = if fixed {
            self.fixed_opts.clone().unwrap_or_else(|| self.opts.clone())
        } else {
            self.opts.clone()
        };
        let base = if fixed {
            self.fixed_base.or(self.base)
        } else {
            self.base
        };
        if let Some(b) = base {
            o.base = Some(fixture(b));
        }
        o
    }

    fn run(self) {
        let id = self.code.id.to_ascii_lowercase();
        assert!(
            self.file.starts_with(&format!("{id}_")),
            "fixture `{}` must be named after the code it triggers ({id}_…)",
            self.file
        );
        assert!(
            codes::ALL.iter().any(|c| c.id == self.code.id),
            "{} is not in codes::ALL",
            self.code.id
        );
        let dir = scratch(self.file);
        // The phases are independent (e.g. the DTB phase works without the DTS parser):
        // run them all and report every failure.
        let mut failures = Vec::new();
        let mut phase = |name: &str, f: &dyn Fn()| {
            if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("[{name}] {msg}"));
            }
        };
        phase("negative", &|| self.negative(&dir));
        if !self.missing {
            phase("fixed", &|| self.positive(&dir));
            phase("example", &|| self.example());
        }
        if self.dtb.is_some() {
            phase("dtb", &|| self.dtb_phase(&dir));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    fn negative(&self, dir: &Path) {
        let neg_path = if self.generated {
            let p = dir.join("neg").join(self.file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &self.text).unwrap();
            p
        } else {
            fixture(self.file)
        };
        let mut sources = Sources::new();
        let neg = check(&mut sources, &neg_path, &self.options(false));
        let all = dump(&sources, &neg);
        let hits: Vec<&Diagnostic> = neg
            .diags
            .iter()
            .filter(|d| d.code.id == self.code.id)
            .collect();
        assert!(
            !hits.is_empty(),
            "{}: expected {} ({}), got:\n{all}",
            self.file,
            self.code.id,
            self.code.title
        );
        for d in &hits {
            assert_eq!(
                d.severity, self.code.severity,
                "{}: {} has the wrong severity",
                self.file, self.code.id
            );
        }
        assert!(
            !self.once || hits.len() == 1,
            "{}: {} must be reported once:\n{all}",
            self.file,
            self.code.id
        );
        self.check_location(&sources, &neg_path, &hits, &all);
        check_quality(&sources, &neg, self.file);
    }

    fn write_fixed(&self, dir: &Path) -> PathBuf {
        let fixed = self.fixed_text();
        if self.fixes.is_empty() {
            assert!(
                self.fixed_opts.is_some() || self.fixed_base.is_some() || self.fixed_name.is_some(),
                "{}: a case needs a fix or fixed options",
                self.file
            );
        } else {
            assert_ne!(fixed, self.text, "{}: the fix changes nothing", self.file);
        }
        let pos_path = dir.join("ok").join(self.fixed_name.unwrap_or(self.file));
        std::fs::create_dir_all(pos_path.parent().unwrap()).unwrap();
        std::fs::write(&pos_path, &fixed).unwrap();
        pos_path
    }

    /// The fixed input, kept beside the fixture as `NAME.fixed.EXT`: the example
    /// `staticbus explain` shows (compiled in from these files, see `src/examples.rs`). It
    /// must be exactly the fixture with this case's fixes; `STATICBUS_BLESS=1` rewrites it.
    /// Cases whose fix is not in the text (options, base tree, file name) or whose input is
    /// generated have none.
    fn example(&self) {
        let path = fixture(&fixed_example_name(self.file));
        let fixed = self.fixed_text();
        let wanted = (!self.generated && fixed != self.text).then_some(fixed);
        let bless = std::env::var_os("STATICBUS_BLESS").is_some_and(|v| v == "1");
        match (&wanted, std::fs::read_to_string(&path).ok()) {
            (Some(w), Some(have)) if *w == have => {}
            (None, None) => {}
            (Some(w), _) if bless => std::fs::write(&path, w).unwrap(),
            (None, Some(_)) if bless => std::fs::remove_file(&path).unwrap(),
            (Some(_), _) => panic!(
                "{} is not the fixture with this case's fixes: rerun with STATICBUS_BLESS=1 to write it",
                path.display()
            ),
            (None, Some(_)) => panic!(
                "{} is stale (this case's fix is not in the text): rerun with STATICBUS_BLESS=1",
                path.display()
            ),
        }
    }

    fn positive(&self, dir: &Path) {
        let pos_path = self.write_fixed(dir);
        let mut sources = Sources::new();
        let pos = check(&mut sources, &pos_path, &self.options(true));
        self.check_fixed(&sources, &pos, "fixed");
    }

    fn dtb_phase(&self, dir: &Path) {
        let (path, property) = self.dtb.expect("a DTB expectation");
        let neg_dts = dir.join("dtb").join(self.file);
        std::fs::create_dir_all(neg_dts.parent().unwrap()).unwrap();
        std::fs::write(&neg_dts, &self.text).unwrap();
        let neg_dtb = dir.join("neg.dtb");
        let pos_dtb = dir.join("ok.dtb");
        let stem = self.file.trim_end_matches(".dts");
        dtc(stem, &neg_dts, &neg_dtb);
        dtc(&format!("{stem}.fixed"), &self.write_fixed(dir), &pos_dtb);
        let mut s = Sources::new();
        let c = check(&mut s, &neg_dtb, &self.options(false));
        let all = dump(&s, &c);
        let found = c.diags.iter().any(|d| {
            d.code.id == self.code.id
                && d.severity == self.code.severity
                && matches!(&d.location, Location::Node { path: p, property: q, .. }
                    if p == path && q.as_deref() == property)
        });
        assert!(
            !self.once || c.diags.iter().filter(|d| d.code.id == self.code.id).count() == 1,
            "{} (DTB): {} must be reported once:\n{all}",
            self.file,
            self.code.id
        );
        assert!(
            found,
            "{} (DTB): expected {} at {path} {property:?}, got:\n{all}",
            self.file, self.code.id
        );
        check_quality(&s, &c, self.file);
        let mut s = Sources::new();
        let c = check(&mut s, &pos_dtb, &self.options(true));
        self.check_fixed(&s, &c, "fixed DTB");
    }

    fn check_location(&self, sources: &Sources, path: &Path, hits: &[&Diagnostic], all: &str) {
        let name = path.display().to_string();
        match &self.at {
            At::Marker(m) => {
                let want = line_col(&self.text, marker_offset(&self.text, m));
                let got: Vec<(usize, usize)> = hits
                    .iter()
                    .filter_map(|d| d.location.as_span())
                    .filter(|s| sources.get(s.file).name == name)
                    .map(|s| line_col(&self.text, s.start as usize))
                    .collect();
                assert!(
                    got.contains(&want),
                    "{}: expected {} at {}:{} (marker {m:?}), found it at {got:?}; all:\n{all}",
                    self.file,
                    self.code.id,
                    want.0,
                    want.1
                );
            }
            At::File | At::BaseFile => {
                let want = match self.at {
                    At::BaseFile => fixture(self.base.expect("a base fixture"))
                        .display()
                        .to_string(),
                    _ => name,
                };
                assert!(
                    hits.iter()
                        .any(|d| matches!(d.location, Location::File { file }
                            if sources.get(file).name == want)),
                    "{}: expected {} on the whole file {want}; all:\n{all}",
                    self.file,
                    self.code.id
                );
            }
            At::Nowhere => assert!(
                hits.iter().any(|d| d.location == Location::None),
                "{}: expected {} without a location; all:\n{all}",
                self.file,
                self.code.id
            ),
        }
    }

    fn check_fixed(&self, sources: &Sources, c: &Checked, what: &str) {
        let all = dump(sources, c);
        assert!(
            !c.diags.has_code(self.code.id),
            "{} ({what}): {} is still reported:\n{all}",
            self.file,
            self.code.id
        );
        assert!(
            c.system.is_some(),
            "{} ({what}): the fixed input was not read:\n{all}",
            self.file
        );
        assert!(
            c.diags.is_empty(),
            "{} ({what}): the fixed input is not clean:\n{all}",
            self.file
        );
    }
}

/// Every diagnostic of this crate has a help line, and none is reported twice.
fn check_quality(sources: &Sources, c: &Checked, file: &str) {
    let list: Vec<&Diagnostic> = c.diags.iter().collect();
    for (i, d) in list.iter().enumerate() {
        if codes::ALL.iter().any(|k| k.id == d.code.id) {
            assert!(
                d.help.is_some(),
                "{file}: {} has no help line:\n{}",
                d.code.id,
                describe(sources, d)
            );
        }
        assert!(
            !list[..i].iter().any(|e| e.code.id == d.code.id
                && e.location == d.location
                && e.message == d.message),
            "{file}: diagnostic reported twice:\n{}",
            describe(sources, d)
        );
    }
}

fn opts(xen: XenVersion, static_shm: bool) -> Options {
    Options {
        xen: Some(xen),
        static_shm: Some(static_shm),
        ..Options::default()
    }
}

// ======================================================================================
// SB01xx static event channels
// ======================================================================================

#[test]
fn sb0101_evtchn_no_property() {
    // The peer reads the same broken endpoint: still one diagnostic.
    Case::dts("sb0101_evtchn_no_property.dts", EVTCHN_NO_PROPERTY)
        .once()
        .at("ec_ping: |evtchn@1")
        .fix("/* no xen,evtchn */", "xen,evtchn = <10 &ec_pong>;")
        .dtb("/chosen/domU1/evtchn@1", None)
        .run();
}

#[test]
fn sb0102_evtchn_short_property() {
    Case::dts("sb0102_evtchn_short_property.dts", EVTCHN_SHORT_PROPERTY)
        .at("|xen,evtchn = <20>;")
        .fix("<20>", "<20 &ec_ping>")
        .dtb("/chosen/domU2/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0103_evtchn_extra_cells() {
    Case::dts("sb0103_evtchn_extra_cells.dts", EVTCHN_EXTRA_CELLS)
        .at("|xen,evtchn = <10 &ec_pong 7>;")
        .fix("<10 &ec_pong 7>", "<10 &ec_pong>")
        .dtb("/chosen/domU1/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0104_evtchn_peer_not_found() {
    Case::dts("sb0104_evtchn_peer_not_found.dts", EVTCHN_PEER_NOT_FOUND)
        .at("<10 |0x99>")
        .fix("0x99", "&ec_pong")
        .dtb("/chosen/domU1/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0105_evtchn_not_mutual() {
    Case::dts("sb0105_evtchn_not_mutual.dts", EVTCHN_NOT_MUTUAL)
        .at("<20 |&ec_c>")
        .fix("<20 &ec_c>", "<20 &ec_a>")
        .dtb("/chosen/domU2/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0106_evtchn_peer_not_endpoint() {
    Case::dts(
        "sb0106_evtchn_peer_not_endpoint.dts",
        EVTCHN_PEER_NOT_ENDPOINT,
    )
    .at("<10 |&dom2>")
    .fix("<10 &dom2>", "<10 &ec_pong>")
    .dtb("/chosen/domU1/evtchn@1", Some("xen,evtchn"))
    .run();
}

#[test]
fn sb0107_evtchn_no_domain() {
    Case::dts("sb0107_evtchn_no_domain.dts", EVTCHN_NO_DOMAIN)
        .once()
        .at("ec_d0: |evtchn@1")
        .fix(
            "/* no dom0 kernel */",
            "module@4a800000 {\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = <0x0 0x4a800000 0x0 0x200000>;\n\t\t};",
        )
        .dtb("/chosen/evtchn@1", None)
        .run();
}

#[test]
fn sb0108_evtchn_bad_placement() {
    Case::dts("sb0108_evtchn_bad_placement.dts", EVTCHN_BAD_PLACEMENT)
        .at("ec_ping: |evtchn@1")
        .fix("channels {", "")
        .fix("}; /* end channels */", "")
        .dtb("/chosen/domU1/channels/evtchn@1", None)
        .run();
}

#[test]
fn sb0108_evtchn_bad_placement_dom0() {
    // Under a non-domain child of /chosen Xen takes the endpoint as dom0's; reported once,
    // not again when the peer in domU1 is processed.
    Case::dts("sb0108_evtchn_bad_placement_dom0.dts", EVTCHN_BAD_PLACEMENT)
        .once()
        .at("ec_d0: |evtchn@1")
        .fix("channels {", "")
        .fix("}; /* end channels */", "")
        .dtb("/chosen/channels/evtchn@1", None)
        .run();
}

#[test]
fn sb0109_evtchn_port_zero_dts() {
    Case::dts("sb0109_evtchn_port_zero.dts", EVTCHN_PORT_ZERO)
        .at("<|0 &ec_ping>")
        .fix("<0 &ec_ping>", "<20 &ec_ping>")
        .dtb("/chosen/domU2/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0109_evtchn_port_zero_toml() {
    Case::toml("sb0109_evtchn_port_zero.toml", EVTCHN_PORT_ZERO)
        .at("|\"sensor:0\"")
        .fix("sensor:0", "sensor:4")
        .run();
}

#[test]
fn sb0110_evtchn_port_range() {
    Case::toml("sb0110_evtchn_port_range.toml", EVTCHN_PORT_RANGE)
        .at("|\"sensor:1024\"")
        .fix("sensor:1024", "sensor:1023")
        .run();
}

#[test]
fn sb0111_evtchn_port_duplicate() {
    Case::toml("sb0111_evtchn_port_duplicate.toml", EVTCHN_PORT_DUPLICATE)
        .at("|\"sensor:5 \"")
        .fix("sensor:5 ", "sensor:6")
        .run();
}

#[test]
fn sb0112_evtchn_port_xenstore() {
    Case::toml("sb0112_evtchn_port_xenstore.toml", EVTCHN_PORT_XENSTORE)
        .at("|\"sensor:1\"")
        .fix("sensor:1", "sensor:2")
        .run();
}

#[test]
fn sb0113_evtchn_loopback() {
    Case::toml("sb0113_evtchn_loopback.toml", EVTCHN_LOOPBACK)
        .at("|\"sensor:5\"")
        .fix("sensor:6", "logger:6")
        .run();
}

#[test]
fn sb0114_evtchn_disabled() {
    Case::toml("sb0114_evtchn_disabled.toml", EVTCHN_DISABLED)
        .at("|\"sensor:5\"")
        .fix("static-evtchn = false", "static-evtchn = true")
        .run();
}

#[test]
fn sb0115_evtchn_self_peer() {
    Case::dts("sb0115_evtchn_self_peer.dts", EVTCHN_SELF_PEER)
        .at("<10 |&ec_ping>")
        .fix("<10 &ec_ping>", "<10 &ec_pong>")
        .dtb("/chosen/domU1/evtchn@1", Some("xen,evtchn"))
        .run();
}

#[test]
fn sb0116_evtchn_compat_prose() {
    Case::dts("sb0116_evtchn_compat_prose.dts", EVTCHN_COMPAT_PROSE)
        .at("|compatible = \"xen,evtchn\";")
        .fix("\"xen,evtchn\";", "\"xen,evtchn-v1\";")
        .dtb("/chosen/domU2/evtchn@1", Some("compatible"))
        .run();
}

#[test]
fn sb0117_evtchn_no_phandle() {
    Case::dts("sb0117_evtchn_no_phandle.dts", EVTCHN_NO_PHANDLE)
        .at("|evtchn@10 {")
        .fix("/* no phandle */", "phandle = <0xfffffffe>;")
        .dtb("/chosen/domU1/evtchn@10", None)
        .run();
}

// ======================================================================================
// SB02xx static shared memory
// ======================================================================================

#[test]
fn sb0201_shm_disabled_dts() {
    Case::dts("sb0201_shm_disabled.dts", SHM_DISABLED)
        .at("|shm@70000000 {")
        .fixed_opts(opts(XenVersion::V4_20, true))
        .dtb("/chosen/domU1/shm@70000000", None)
        .run();
}

#[test]
fn sb0202_shm_bad_placement() {
    Case::dts("sb0202_shm_bad_placement.dts", SHM_BAD_PLACEMENT)
        .static_shm(true)
        .at("|shm@70000000 {")
        .fix("regions {", "")
        .fix("}; /* end regions */", "")
        .dtb("/chosen/domU1/regions/shm@70000000", None)
        .run();
}

#[test]
fn sb0203_shm_id_missing() {
    Case::dts("sb0203_shm_id_missing.dts", SHM_ID_MISSING)
        .static_shm(true)
        .at("|shared-mem@70000000 {")
        .fix("/* no xen,shm-id */", "xen,shm-id = \"samples\";")
        .dtb("/chosen/domU2/shared-mem@70000000", None)
        .run();
}

#[test]
fn sb0204_shm_id_empty_dts() {
    Case::dts("sb0204_shm_id_empty.dts", SHM_ID_EMPTY)
        .static_shm(true)
        .at("role = \"owner\";\n\t\t\t\t|xen,shm-id = \"\";")
        .fix("xen,shm-id = \"\";", "xen,shm-id = \"samples\";")
        .dtb("/chosen/domU1/shm@70000000", Some("xen,shm-id"))
        .run();
}

#[test]
fn sb0206_shm_role_invalid_dts() {
    Case::dts("sb0206_shm_role_invalid.dts", SHM_ROLE_INVALID)
        .static_shm(true)
        .at("|role = \"Owner\";")
        .fix("\"Owner\"", "\"owner\"")
        .dtb("/chosen/domU1/shm@70000000", Some("role"))
        .run();
}

#[test]
fn sb0207_shm_mem_missing() {
    Case::dts("sb0207_shm_mem_missing.dts", SHM_MEM_MISSING)
        .static_shm(true)
        .at("|shared-mem@70000000 {")
        .fix(
            "/* no xen,shared-mem */",
            "xen,shared-mem = <0x0 0x70000000 0x0 0x09000000 0x0 0x10000>;",
        )
        .dtb("/chosen/domU2/shared-mem@70000000", None)
        .run();
}

#[test]
fn sb0208_shm_mem_cells() {
    Case::dts("sb0208_shm_mem_cells.dts", SHM_MEM_CELLS)
        .static_shm(true)
        .at("|xen,shared-mem = <0x0 0x70000000 0x0 0x09000000 0x10000>;")
        .fix("0x09000000 0x10000", "0x09000000 0x0 0x10000")
        .dtb("/chosen/domU2/shared-mem@70000000", Some("xen,shared-mem"))
        .run();
}

#[test]
fn sb0209_shm_heap_form_unsupported() {
    Case::dts(
        "sb0209_shm_heap_form_unsupported.dts",
        SHM_HEAP_FORM_UNSUPPORTED,
    )
    .xen(XenVersion::V4_18)
    .static_shm(true)
    .at("|xen,shared-mem = <0x0 0x08000000 0x0 0x10000>;")
    .fix("<0x0 0x08000000", "<0x0 0x70000000 0x0 0x08000000")
    .fix("<0x0 0x09000000", "<0x0 0x70000000 0x0 0x09000000")
    .dtb("/chosen/domU1/shm-samples", Some("xen,shared-mem"))
    .run();
}

#[test]
fn sb0210_shm_heap_form_direct_map_dts() {
    Case::dts(
        "sb0210_shm_heap_form_direct_map.dts",
        SHM_HEAP_FORM_DIRECT_MAP,
    )
    .static_shm(true)
    .at("|xen,shared-mem = <0x0 0x70000000 0x0 0x10000>;")
    .fix(
        "<0x0 0x70000000 0x0 0x10000>",
        "<0x0 0x70000000 0x0 0x70000000 0x0 0x10000>",
    )
    .fix(
        "<0x0 0x08000000 0x0 0x10000>",
        "<0x0 0x70000000 0x0 0x08000000 0x0 0x10000>",
    )
    .dtb("/chosen/shm-samples", Some("xen,shared-mem"))
    .run();
}

#[test]
fn sb0221_shm_host_reserved_dts() {
    Case::dts("sb0221_shm_host_reserved.dts", SHM_HOST_RESERVED)
        .static_shm(true)
        .at("|xen,shared-mem = <0x0 0x70000000 0x0 0x08000000 0x0 0x10000>;")
        .fix("<0x0 0x70000000 0x0 0x08", "<0x0 0x71000000 0x0 0x08")
        .fix("<0x0 0x70000000 0x0 0x09", "<0x0 0x71000000 0x0 0x09")
        .dtb("/chosen/domU1/shm@70000000", Some("xen,shared-mem"))
        .run();
}

// ======================================================================================
// SB04xx domains, modules, memory
// ======================================================================================

#[test]
fn sb0402_domain_name_too_long_dts() {
    Case::dts("sb0402_domain_name_too_long.dts", DOMAIN_NAME_TOO_LONG)
        .at("|sensor-domain-with-a-very-long-name-abcdef {")
        // 41 characters: the longest Xen handles.
        .fix(
            "sensor-domain-with-a-very-long-name-abcdef",
            "sensor-domain-with-a-very-long-name-abcde",
        )
        .dtb("/chosen/sensor-domain-with-a-very-long-name-abcdef", None)
        .run();
}

#[test]
fn sb0403_domain_memory_dts() {
    Case::dts("sb0403_domain_memory.dts", DOMAIN_MEMORY)
        .at("|memory = <0x4000>;")
        .fix("<0x4000>", "<0x0 0x4000>")
        .dtb("/chosen/domU1", Some("memory"))
        .run();
}

#[test]
fn sb0404_domain_cpus_dts() {
    Case::dts("sb0404_domain_cpus.dts", DOMAIN_CPUS)
        .at("|domU1 {")
        .fix("/* no cpus */", "cpus = <1>;")
        .dtb("/chosen/domU1", None)
        .run();
}

#[test]
fn sb0406_module_not_multiboot() {
    Case::dts("sb0406_module_not_multiboot.dts", MODULE_NOT_MULTIBOOT)
        .at("|compatible = \"multiboot,kernel\";")
        .fix(
            "\"multiboot,kernel\";",
            "\"multiboot,kernel\", \"multiboot,module\";",
        )
        .dtb("/chosen/domU1/module@4a000000", Some("compatible"))
        .run();
}

#[test]
fn sb0407_module_reg() {
    Case::dts("sb0407_module_reg.dts", MODULE_REG)
        .at("|reg = <0x4a400000 0x0 0x200000>;")
        .fix("<0x4a400000 0x0", "<0x0 0x4a400000 0x0")
        .dtb("/chosen/domU2/module@4a400000", Some("reg"))
        .run();
}

#[test]
fn sb0415_no_domains_dts() {
    Case::dts("sb0415_no_domains.dts", NO_DOMAINS)
        .nowhere()
        .fix(
            "/* no domains */",
            "domU1 {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <2>;\n\t\t\t#size-cells = <2>;\n\t\t\tmemory = <0x0 0x4000>;\n\t\t\tcpus = <1>;\n\n\t\t\tmodule@4a000000 {\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\t\treg = <0x0 0x4a000000 0x0 0x200000>;\n\t\t\t};\n\t\t};",
        )
        .run();
}

#[test]
fn sb0201_shm_disabled_toml() {
    Case::toml("sb0201_shm_disabled.toml", SHM_DISABLED)
        .at("name = |\"samples\"")
        .fix("static-shm = false", "static-shm = true")
        .run();
}

#[test]
fn sb0204_shm_id_empty_toml() {
    Case::toml("sb0204_shm_id_empty.toml", SHM_ID_EMPTY)
        .at("id = |\"\"")
        .fix("id = \"\"", "id = \"samples\"")
        .run();
}

#[test]
fn sb0205_shm_id_too_long() {
    Case::toml("sb0205_shm_id_too_long.toml", SHM_ID_TOO_LONG)
        .at("id = |\"sensor-samples-0\"")
        .fix("sensor-samples-0", "sensor-samples0") // 15 characters: the longest allowed
        .run();
}

#[test]
fn sb0206_shm_role_invalid_toml() {
    Case::toml("sb0206_shm_role_invalid.toml", SHM_ROLE_INVALID)
        .at("role = |\"Owner\"")
        .fix("\"Owner\"", "\"owner\"")
        .run();
}

#[test]
fn sb0210_shm_heap_form_direct_map_toml() {
    Case::toml(
        "sb0210_shm_heap_form_direct_map.toml",
        SHM_HEAP_FORM_DIRECT_MAP,
    )
    .at("guest = |0x7000_0000")
    .fix("# no host", "host = 0x7000_0000")
    .run();
}

#[test]
fn sb0210_shm_heap_form_direct_map_alloc() {
    // Left to the allocator, the guest address of a direct-mapped domain is its host
    // address, which is missing: SB0210, not "no free guest range".
    Case::toml(
        "sb0210_shm_heap_form_direct_map_alloc.toml",
        SHM_HEAP_FORM_DIRECT_MAP,
    )
    .at("|{ domain = \"sensor\", role = \"owner\" }")
    .fix("# no host", "host = 0x7000_0000")
    .run();
}

#[test]
fn sb0211_shm_unaligned() {
    Case::toml("sb0211_shm_unaligned.toml", SHM_UNALIGNED)
        .at("guest = |0x0800_0800")
        .fix("0x0800_0800", "0x0800_0000")
        .run();
}

#[test]
fn sb0212_shm_size_zero() {
    Case::toml("sb0212_shm_size_zero.toml", SHM_SIZE_ZERO)
        .at("guest = |0x0800_0000")
        .fix("size = 0", "size = \"64KiB\"")
        .run();
}

#[test]
fn sb0213_shm_overflow() {
    Case::toml("sb0213_shm_overflow.toml", SHM_OVERFLOW)
        .at("host = |\"0xFFFF_FFFF_FFFF_F000\"")
        .fix("\"0xFFFF_FFFF_FFFF_F000\"", "0x7000_0000")
        .run();
}

#[test]
fn sb0214_shm_id_mismatch() {
    Case::toml("sb0214_shm_id_mismatch.toml", SHM_ID_MISMATCH)
        .at("\"128KiB\"\nhost = |0x7000_0000")
        .fix("\"128KiB\"", "\"64KiB\"")
        .run();
}

#[test]
fn sb0215_shm_mixed_forms() {
    Case::toml("sb0215_shm_mixed_forms.toml", SHM_MIXED_FORMS)
        .at("guest = |0x0900_0000")
        .fix("# no host", "host = 0x7000_0000")
        .run();
}

#[test]
fn sb0215_shm_mixed_forms_pool() {
    // With an shm pool the heap-form table must not get a host address of its own (which
    // would turn the problem into an SB0214 about an address the user never wrote).
    Case::toml("sb0215_shm_mixed_forms_pool.toml", SHM_MIXED_FORMS)
        .at("guest = |0x0900_0000")
        .fix("# no host", "host = 0x7000_0000")
        .run();
}

#[test]
fn sb0216_shm_same_range_other_id() {
    Case::toml(
        "sb0216_shm_same_range_other_id.toml",
        SHM_SAME_RANGE_OTHER_ID,
    )
    .at("host = |0x7000_8000")
    .fix("0x7000_8000", "0x7001_0000")
    .run();
}

#[test]
fn sb0217_shm_two_owners() {
    Case::toml("sb0217_shm_two_owners.toml", SHM_TWO_OWNERS)
        .at("\"logger\", role = |\"owner\"")
        .fix(
            "\"logger\", role = \"owner\"",
            "\"logger\", role = \"borrower\"",
        )
        .run();
}

#[test]
fn sb0218_shm_owner_and_roleless() {
    Case::toml("sb0218_shm_owner_and_roleless.toml", SHM_OWNER_AND_ROLELESS)
        .at("|{ domain = \"logger\" }")
        .fix(
            "{ domain = \"logger\" }",
            "{ domain = \"logger\", role = \"borrower\" }",
        )
        .run();
}

#[test]
fn sb0219_shm_only_borrowers() {
    Case::toml("sb0219_shm_only_borrowers.toml", SHM_ONLY_BORROWERS)
        .at("\"sensor\", role = |\"borrower\"")
        .fix(
            "\"sensor\", role = \"borrower\"",
            "\"sensor\", role = \"owner\"",
        )
        .run();
}

#[test]
fn sb0220_shm_host_not_ram() {
    Case::toml("sb0220_shm_host_not_ram.toml", SHM_HOST_NOT_RAM)
        .at("host = |0x1_0000_0000")
        .fix("0x1_0000_0000", "0x7000_0000")
        .run();
}

#[test]
fn sb0221_shm_host_reserved_toml() {
    Case::toml("sb0221_shm_host_reserved.toml", SHM_HOST_RESERVED)
        .at("host = |0x7800_0000")
        .fix("host = 0x7800_0000", "host = 0x7900_0000")
        .run();
}

#[test]
fn sb0222_shm_guest_overlap_ram() {
    Case::toml("sb0222_shm_guest_overlap_ram.toml", SHM_GUEST_OVERLAP_RAM)
        .at("guest = |0x4000_0000")
        .fix("0x4000_0000", "0x0800_0000")
        .run();
}

#[test]
fn sb0223_shm_guest_overlap_device() {
    Case::toml(
        "sb0223_shm_guest_overlap_device.toml",
        SHM_GUEST_OVERLAP_DEVICE,
    )
    .at("guest = |0x2200_0000")
    .fix("0x2200_0000", "0x0800_0000")
    .run();
}

#[test]
fn sb0224_shm_guest_overlap_shm() {
    Case::toml("sb0224_shm_guest_overlap_shm.toml", SHM_GUEST_OVERLAP_SHM)
        .at("guest = |0x0800_8000")
        .fix("0x0800_8000", "0x0801_0000")
        .run();
}

#[test]
fn sb0225_shm_direct_map_mismatch() {
    Case::toml(
        "sb0225_shm_direct_map_mismatch.toml",
        SHM_DIRECT_MAP_MISMATCH,
    )
    .at("guest = |0x0800_0000")
    .fix("guest = 0x0800_0000", "guest = 0x7000_0000")
    .run();
}

#[test]
fn sb0226_shm_too_many_regions() {
    Case::toml("sb0226_shm_too_many_regions.toml", SHM_TOO_MANY_REGIONS)
        .at("\"r32\", users = [|{")
        .fix("  { id = \"r32\"", "# { id = \"r32\"")
        .run();
}

#[test]
fn sb0227_shm_heap_chunks() {
    Case::toml("sb0227_shm_heap_chunks.toml", SHM_HEAP_CHUNKS)
        .at("|{ domain = \"sensor\", guest = 0x1_0000_0000")
        .fix("0x1FFF_F000", "0x0FFF_F000") // 16 + 16 chunks: exactly the 32 Xen has
        .run();
}

#[test]
fn sb0228_shm_418_reserved_order() {
    Case::toml("sb0228_shm_418_reserved_order.toml", SHM_418_RESERVED_ORDER)
        .at("|{ domain = \"logger\"")
        .fix("xen = \"4.18\"", "xen = \"4.19\"")
        .run();
}

#[test]
fn sb0229_shm_duplicate_in_domain() {
    Case::toml(
        "sb0229_shm_duplicate_in_domain.toml",
        SHM_DUPLICATE_IN_DOMAIN,
    )
    .at("|{ domain = \"sensor\", role = \"borrower\" },  # twice")
    .fix(
        "  { domain = \"sensor\", role = \"borrower\" },  # twice\n",
        "",
    )
    .run();
}

// ======================================================================================
// SB03xx xen,enhanced
// ======================================================================================

#[test]
fn sb0301_enhanced_needs_dom0() {
    Case::toml("sb0301_enhanced_needs_dom0.toml", ENHANCED_NEEDS_DOM0)
        .at("enhanced = |\"enabled\"")
        .fix("\"enabled\"", "\"no-xenstore\"")
        .run();
}

#[test]
fn sb0302_enhanced_unknown() {
    Case::toml("sb0302_enhanced_unknown.toml", ENHANCED_UNKNOWN)
        .at("enhanced = |\"legacy\"")
        .fix("\"legacy\"", "\"no-xenstore\"")
        .run();
}

#[test]
fn sb0303_enhanced_recommended() {
    Case::toml("sb0303_enhanced_recommended.toml", ENHANCED_RECOMMENDED)
        .at("name = |\"sensor\"")
        .fix("enhanced = false\n", "")
        .run();
}

#[test]
fn sb0304_enhanced_linux_missing() {
    Case::toml("sb0304_enhanced_linux_missing.toml", ENHANCED_LINUX_MISSING)
        .at("enhanced = |false")
        .fix("enhanced = false\n", "")
        .run();
}

// ======================================================================================
// SB04xx domains, modules, memory (TOML)
// ======================================================================================

#[test]
fn sb0401_domain_name_duplicate() {
    Case::toml("sb0401_domain_name_duplicate.toml", DOMAIN_NAME_DUPLICATE)
        .at("|\"sensor\" # copied")
        .fix("\"sensor\" # copied from the first domain", "\"logger\"")
        .run();
}

#[test]
fn sb0403_domain_memory_toml() {
    Case::toml("sb0403_domain_memory.toml", DOMAIN_MEMORY)
        .at("name = |\"logger\"")
        .fix("# no memory", "memory = \"16MiB\"")
        .run();
}

#[test]
fn sb0404_domain_cpus_toml() {
    Case::toml("sb0404_domain_cpus.toml", DOMAIN_CPUS)
        .at("vcpus = |0")
        .fix("vcpus = 0", "vcpus = 1")
        .run();
}

#[test]
fn sb0405_domain_no_kernel() {
    Case::toml("sb0405_domain_no_kernel.toml", DOMAIN_NO_KERNEL)
        .at("name = |\"logger\"")
        .fix(
            "# no kernel",
            "kernel = { addr = 0x4a40_0000, size = \"2MiB\" }",
        )
        .run();
}

#[test]
fn sb0408_module_overlap() {
    Case::toml("sb0408_module_overlap.toml", MODULE_OVERLAP)
        .at("kernel = |{ addr = 0x4a10_0000")
        .fix("0x4a10_0000", "0x4a40_0000")
        .run();
}

#[test]
fn sb0409_module_not_ram() {
    Case::toml("sb0409_module_not_ram.toml", MODULE_NOT_RAM)
        .at("kernel = |{ addr = 0x2000_0000")
        .fix("0x2000_0000", "0x4a40_0000")
        .run();
}

#[test]
fn sb0410_bootargs_too_long() {
    Case::toml("sb0410_bootargs_too_long.toml", BOOTARGS_TOO_LONG)
        .at("bootargs = |\"loglevel=8")
        // 1023 bytes (1024 with the NUL): the longest Xen accepts.
        .fix(
            format!("\"{}\"", "loglevel=8 ".repeat(100)),
            format!("\"{}\"", "x".repeat(1023)),
        )
        .run();
}

#[test]
fn sb0411_too_many_modules() {
    Case::toml("sb0411_too_many_modules.toml", TOO_MANY_MODULES)
        .at("dtb = |{ size = \"8KiB\" }")
        .fix("dtb = { size = \"8KiB\" }\n", "")
        .run();
}

#[test]
fn sb0412_static_mem_size() {
    Case::toml("sb0412_static_mem_size.toml", STATIC_MEM_SIZE)
        .at("memory = |\"16MiB\"\nkernel = { addr = 0x4a00_0000")
        .fix("size = \"8MiB\"", "size = \"16MiB\"")
        .run();
}

#[test]
fn sb0413_direct_map_without_static_mem() {
    Case::toml(
        "sb0413_direct_map_without_static_mem.toml",
        DIRECT_MAP_WITHOUT_STATIC_MEM,
    )
    .at("direct-map = |true")
    .fix(
        "direct-map = true",
        "static-mem = [{ base = 0x6000_0000, size = \"16MiB\" }]\ndirect-map = true",
    )
    .run();
}

#[test]
fn sb0414_static_mem_disabled() {
    Case::toml("sb0414_static_mem_disabled.toml", STATIC_MEM_DISABLED)
        .at("static-mem = [|{")
        .fix("# static-memory off", "static-memory = true")
        .run();
}

#[test]
fn sb0415_no_domains_toml() {
    Case::toml("sb0415_no_domains.toml", NO_DOMAINS)
        .at_file()
        .fix(
            "# no domains",
            "[[domain]]\nname = \"sensor\"\nmemory = \"16MiB\"\nkernel = { addr = 0x4a00_0000, size = \"2MiB\" }",
        )
        .run();
}

#[test]
fn sb0416_memory_exceeds_ram() {
    Case::toml("sb0416_memory_exceeds_ram.toml", MEMORY_EXCEEDS_RAM)
        .at("ram = [|{")
        .fix("\"3GiB\"", "\"16MiB\"")
        .run();
}

#[test]
fn sb0417_static_mem_overlap() {
    Case::toml("sb0417_static_mem_overlap.toml", STATIC_MEM_OVERLAP)
        .at("static-mem = [|{")
        .fix("base = 0x6080_0000", "base = 0x6100_0000")
        .run();
}

#[test]
fn sb0418_node_name_invalid() {
    Case::toml("sb0418_node_name_invalid.toml", NODE_NAME_INVALID)
        .at("|\"logger 1\"")
        .fix("\"logger 1\"", "\"logger1\"")
        .run();
}

#[test]
fn sb0419_vcpu_affinity_ignored() {
    Case::dts("sb0419_vcpu_affinity_ignored.dts", VCPU_AFFINITY_IGNORED)
        .at("|compatible = \"xen,vcpu\";")
        .fix(
            "\t\t\tvcpu0 {\n\t\t\t\tcompatible = \"xen,vcpu\";\n\t\t\t\tid = <0>;\n\t\t\t\thard-affinity = \"0-3\";\n\t\t\t};\n\n",
            "",
        )
        .dtb("/chosen/domU1/vcpu0", Some("compatible"))
        .run();
}

#[test]
fn sb0420_static_heap_invalid() {
    Case::dts("sb0420_static_heap_invalid.dts", STATIC_HEAP_INVALID)
        .at("|xen,static-heap")
        .fix("0x30008000", "0x30000000")
        .dtb("/chosen", Some("xen,static-heap"))
        .run();
}

#[test]
fn sb0421_first_bank_too_small() {
    Case::toml("sb0421_first_bank_too_small.toml", FIRST_BANK_TOO_SMALL)
        .at("memory = |\"4MiB\"")
        .fix("\"4MiB\"", "\"8MiB\"") // 2 + 2 + 2 MiB fit, with room to spare
        .run();
}

#[test]
fn sb0422_module_outside_domain() {
    Case::dts("sb0422_module_outside_domain.dts", MODULE_OUTSIDE_DOMAIN)
        .at("|module@4a000000")
        .fix("\"xen,domian\"", "\"xen,domain\"")
        .dtb("/chosen/domU1/module@4a000000", None)
        .run();
}

#[test]
fn sb0423_grant_frames_overflow() {
    Case::dts("sb0423_grant_frames_overflow.dts", GRANT_FRAMES_OVERFLOW)
        .at("|max_grant_frames")
        .fix("<0x80000000>", "<0x7fffffff>")
        .dtb("/chosen/domU1", Some("max_grant_frames"))
        .run();
}

#[test]
fn sb0423_grant_frames_ignored_by_4_17() {
    // 4.17 does not read the property: no panic, nothing to report.
    let mut s = Sources::new();
    let c = check(
        &mut s,
        &fixture("sb0423_grant_frames_overflow.dts"),
        &opts(XenVersion::V4_17, false),
    );
    assert!(c.diags.is_empty(), "{}", dump(&s, &c));
}

#[test]
fn sb0424_sve_disabled() {
    Case::dts("sb0424_sve_disabled.dts", SVE_DISABLED)
        .at("|sve = <0>;")
        .fix("\t\t\tsve = <0>;\n", "")
        .dtb("/chosen/domU1", Some("sve"))
        .run();
}

// ======================================================================================
// SB05xx the system description
// ======================================================================================

#[test]
fn sb0501_desc_syntax() {
    Case::toml("sb0501_desc_syntax.toml", DESC_SYNTAX)
        .at("|memroy")
        .fix("memroy", "memory")
        .run();
}

#[test]
fn sb0502_desc_unknown_domain() {
    Case::toml("sb0502_desc_unknown_domain.toml", DESC_UNKNOWN_DOMAIN)
        .at("to = |\"loger\"")
        .fix("\"loger\"", "\"logger\"")
        .run();
}

#[test]
fn sb0503_desc_bad_value() {
    Case::toml("sb0503_desc_bad_value.toml", DESC_BAD_VALUE)
        .at("xen = |\"4.16\"")
        .fix("\"4.16\"", "\"4.20\"")
        .run();
}

#[test]
fn sb0504_channel_duplicate() {
    Case::toml("sb0504_channel_duplicate.toml", CHANNEL_DUPLICATE)
        .at("|\"samples\" # should be")
        .fix("\"samples\" # should be \"events\"", "\"events\"")
        .run();
}

#[test]
fn sb0505_channel_arity() {
    Case::toml("sb0505_channel_arity.toml", CHANNEL_ARITY)
        .at("to = |[\"logger\", \"control\"]")
        .fix("\"queue\"", "\"blob\"")
        .run();
}

#[test]
fn sb0506_channel_self() {
    Case::toml("sb0506_channel_self.toml", CHANNEL_SELF)
        .at("to = |\"sensor\"")
        .fix("to = \"sensor\"", "to = \"logger\"")
        .run();
}

#[test]
fn sb0507_channel_size() {
    Case::toml("sb0507_channel_size.toml", CHANNEL_SIZE)
        .at("size = |1000")
        .fix("size = 1000", "size = \"4KiB\"")
        .run();
}

#[test]
fn sb0507_channel_size_protocol() {
    // The region is checked with the protocol crate's own layout and the declared slot size.
    Case::toml("sb0507_channel_size_protocol.toml", CHANNEL_SIZE)
        .at("size = |\"4KiB\"\nslot-size")
        .fix("size = \"4KiB\"\nslot-size", "size = \"16KiB\"\nslot-size")
        .run();
}

#[test]
fn sb0510_virtio_duplicate() {
    Case::toml("sb0510_virtio_duplicate.toml", VIRTIO_DUPLICATE)
        .at("[[virtio]]\nname = |\"disk\"")
        .fix(
            "[[virtio]]\nname = \"disk\"",
            "[[virtio]]\nname = \"disk0\"",
        )
        .run();
}

#[test]
fn sb0511_virtio_device() {
    Case::toml("sb0511_virtio_device.toml", VIRTIO_DEVICE)
        .at("queues = |1")
        .fix("queues = 1", "queues = 2")
        .run();
}

#[test]
fn sb0512_virtio_size() {
    // The transport's own rule: the header page, the queue's rings, one bounce page per
    // descriptor.
    Case::toml("sb0512_virtio_size.toml", VIRTIO_SIZE)
        .at("size = |\"64KiB\"")
        .fix("size = \"64KiB\"", "size = \"1040KiB\"")
        .run();
}

#[test]
fn sb0513_virtio_backend() {
    Case::toml("sb0513_virtio_backend.toml", VIRTIO_BACKEND)
        .at("serve = |{ builtin = true }")
        .fix(
            "{ builtin = true }",
            "{ vhost-user = \"vhost-device-net\" }",
        )
        .run();
}

#[test]
fn sb0514_emulate_limit() {
    Case::toml("sb0514_emulate_limit.toml", EMULATE_LIMIT)
        .at("processes = |1")
        .fix("processes = 1,", "processes = 64,")
        .run();
}

#[test]
fn sb0503_desc_missing_param() {
    Case::toml("sb0503_desc_missing_param.toml", DESC_BAD_VALUE)
        .at("protocol = |\"latest\"")
        .fix("size = \"4KiB\"\n", "size = \"4KiB\"\nvalue-size = 16\n")
        .run();
}

#[test]
fn sb0503_desc_misplaced_param() {
    Case::toml("sb0503_desc_misplaced_param.toml", DESC_BAD_VALUE)
        .at("slot-size = |64")
        .fix("slot-size = 64\n", "")
        .run();
}

#[test]
fn sb0508_desc_module_size() {
    Case::toml("sb0508_desc_module_size.toml", DESC_MODULE_SIZE)
        .at("kernel = |{ addr = 0x4a40_0000")
        .fix("file = \"missing-logger.bin\"", "size = \"2MiB\"")
        .run();
}

#[test]
fn sb0509_desc_duplicate_dom0() {
    Case::toml("sb0509_desc_duplicate_dom0.toml", DESC_DUPLICATE_DOM0)
        .at("|[[dom0]]  # a second one")
        .fix(
            "[[dom0]]  # a second one\nkernel = { addr = 0x4ac0_0000, size = \"2MiB\" }\n",
            "",
        )
        .fix("[[dom0]]", "[dom0]")
        .run();
}

// ======================================================================================
// SB06xx allocation
// ======================================================================================

#[test]
fn sb0601_alloc_no_pool() {
    Case::toml("sb0601_alloc_no_pool.toml", ALLOC_NO_POOL)
        .at("name = |\"samples\"")
        .fix(
            "# no pool",
            "shm-pool = { base = 0x7000_0000, size = \"64MiB\" }",
        )
        .run();
}

#[test]
fn sb0602_alloc_pool_full() {
    Case::toml("sb0602_alloc_pool_full.toml", ALLOC_POOL_FULL)
        .at("name = |\"samples\"")
        .fix("size = \"4KiB\" }", "size = \"64MiB\" }")
        .run();
}

#[test]
fn sb0603_alloc_guest_full() {
    Case::toml("sb0603_alloc_guest_full.toml", ALLOC_GUEST_FULL)
        .at("name = |\"samples\"")
        .fix("size = \"4KiB\" }", "size = \"64MiB\" }")
        .run();
}

#[test]
fn sb0604_alloc_ports_full() {
    // Ports 1..=1023 of sensor (and logger) are taken by explicit event channels: too many
    // to store; the fixture holds the channel that needs one more.
    let taken: String = (1..=1023)
        .map(|p| format!("\n[[evtchn]]\na = \"sensor:{p}\"\nb = \"logger:{p}\"\n"))
        .collect();
    Case::toml("sb0604_alloc_ports_full.toml", ALLOC_PORTS_FULL)
        .append(taken)
        .at("name = |\"samples\"")
        .fix(
            "\n[[evtchn]]\na = \"sensor:1023\"\nb = \"logger:1023\"\n",
            "",
        )
        .run();
}

#[test]
fn sb0605_alloc_pool_invalid() {
    Case::toml("sb0605_alloc_pool_invalid.toml", ALLOC_POOL_INVALID)
        .at("shm-pool = |{")
        .fix("0x7000_0800", "0x7000_0000")
        .run();
}

#[test]
fn sb0606_alloc_no_module_space() {
    Case::toml("sb0606_alloc_no_module_space.toml", ALLOC_NO_MODULE_SPACE)
        .at("kernel = |{ size = \"2MiB\" }")
        .fix(
            "# no ram",
            "ram = [{ base = 0x4000_0000, size = \"2GiB\" }]",
        )
        .run();
}

// ======================================================================================
// SB09xx hypervisor = "qemu-ivshmem"
// ======================================================================================

#[test]
fn sb0901_ivshmem_region_outside() {
    Case::toml("sb0901_ivshmem_region_outside.toml", IVSHMEM_REGION_OUTSIDE)
        .at("guest = |0x0800_0000")
        .fix("guest = 0x0800_0000", "guest = 0x2000_0000")
        .run();
}

#[test]
fn sb0902_ivshmem_region_split() {
    Case::toml("sb0902_ivshmem_region_split.toml", IVSHMEM_REGION_SPLIT)
        .at("guest = |{ ping")
        .fix("pong = 0x2001_0000", "pong = 0x2000_0000")
        .run();
}

#[test]
fn sb0903_ivshmem_port_not_vector() {
    Case::toml(
        "sb0903_ivshmem_port_not_vector.toml",
        IVSHMEM_PORT_NOT_VECTOR,
    )
    .at("ports = |{ ping")
    .fix("ping = 64", "ping = 63")
    .run();
}

#[test]
fn sb0904_ivshmem_region_overlap() {
    Case::toml("sb0904_ivshmem_region_overlap.toml", IVSHMEM_REGION_OVERLAP)
        .at("guest = |0x2000_8000")
        .fix("guest = 0x2000_8000", "guest = 0x2001_0000")
        .once()
        .run();
}

// ======================================================================================
// SB07xx input / output
// ======================================================================================

#[test]
fn sb0701_io_error() {
    let c = Case::toml("sb0701_io_error_missing.toml", IO_ERROR).nowhere();
    assert!(c.missing, "the fixture must not exist");
    c.run();
}

#[test]
fn sb0702_input_kind() {
    // A valid description, but named `.txt`: the kind cannot be told.
    Case::new("sb0702_input_kind.txt", INPUT_KIND)
        .at_file()
        .fixed_name("sb0702_input_kind.toml")
        .run();
}

#[test]
fn sb0703_base_tree() {
    // The base must be a device tree; a TOML description is refused.
    Case::toml("sb0703_base_tree.toml", BASE_TREE)
        .base("sb0703_base_tree_base.toml")
        .at_base_file()
        .fixed_base("sb0703_base_tree_base.dts")
        .run();
}

#[test]
fn every_code_has_a_negative_test() {
    let src = include_str!("rules.rs");
    let missing: Vec<&str> = codes::ALL
        .iter()
        .map(|c| c.id)
        .filter(|id| {
            let lower = id.to_ascii_lowercase();
            !(src.contains(&format!("fn {lower}_")) && src.contains(&format!("\"{lower}_")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a rule test (a `fn sbNNNN_…` test on a `sbNNNN_…` fixture): {missing:?}"
    );
}
