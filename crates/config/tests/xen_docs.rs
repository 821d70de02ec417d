//! Xen's own device-tree documentation as a test corpus: every example of
//! `docs/misc/arm/device-tree/booting.txt` (dom0 modules, domUs, device assignment, static
//! allocation, static event channels, static heap, static shared memory, and 4.21's vCPU
//! affinity) and of `docs/features/dom0less.pandoc`, written as a complete host tree in
//! `tests/fixtures/xen-docs/`, with the verdict Xen gives it: the exact list of codes
//! `check` reports (empty: Xen boots it as the docs say), as DTS and as the DTB dtc makes
//! of it (the two inputs must agree). Variants that break one documented rule carry the
//! code of that rule.
//!
//! Also here: the wording of the diagnostics these examples showed to be wrong, and the
//! inputs only a DTB can express (duplicate properties, overlays) or only raw bytes can
//! (a DTS that is not UTF-8).

use staticbus_config::compile::{check, Checked, Options};
use staticbus_config::model::XenVersion;
use staticbus_diag::{Diagnostic, Location, Sources};
use staticbus_dt::{parse_dts, write_dtb, DtsOptions, FsLoader, Property};
use staticbus_dtc_oracle::Oracle;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xen-docs");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("xen-docs")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Xen build a fixture is checked for.
#[derive(Clone, Copy)]
struct Build {
    xen: XenVersion,
    static_shm: bool,
    static_memory: bool,
}

const DEBIAN_420: Build = Build {
    xen: XenVersion::V4_20,
    static_shm: false,
    static_memory: false,
};
const SHM_420: Build = Build {
    xen: XenVersion::V4_20,
    static_shm: true,
    static_memory: true,
};

fn opts(b: Build) -> Options {
    Options {
        xen: Some(b.xen),
        static_shm: Some(b.static_shm),
        static_memory: Some(b.static_memory),
        ..Options::default()
    }
}

fn codes(c: &Checked) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = c.diags.iter().map(|d| d.code.id).collect();
    v.sort_unstable();
    v
}

fn dump(c: &Checked) -> String {
    c.diags
        .iter()
        .map(|d| format!("  {} {}", d.code.id, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `file` for `build` as DTS and as the DTB dtc makes of it: both report exactly
/// `want` (sorted code ids). Returns the DTS check.
fn verdict(file: &str, build: Build, want: &[&str]) -> Checked {
    let mut want = want.to_vec();
    want.sort_unstable();
    let mut s = Sources::new();
    let c = check(&mut s, &fixture(file), &opts(build));
    assert!(c.system.is_some(), "{file}: not read:\n{}", dump(&c));
    assert_eq!(codes(&c), want, "{file} (DTS):\n{}", dump(&c));
    // The same tree as a blob.
    let oracle = Oracle::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtc-recorded"));
    let text = std::fs::read(fixture(file)).unwrap();
    let stem = file.trim_end_matches(".dts");
    let out = oracle.run(&format!("xen-docs/{stem}"), &[], &[("in.dts", &text)]);
    assert!(out.accepted, "dtc rejects {file}:\n{}", out.stderr);
    let dtb = scratch(stem).join(format!("{stem}.dtb"));
    std::fs::write(&dtb, &out.dtb).unwrap();
    let mut s = Sources::new();
    let b = check(&mut s, &dtb, &opts(build));
    assert_eq!(codes(&b), want, "{file} (DTB):\n{}", dump(&b));
    c
}

fn find<'c>(c: &'c Checked, code: &str) -> Vec<&'c Diagnostic> {
    c.diags.iter().filter(|d| d.code.id == code).collect()
}

fn words(d: &Diagnostic) -> String {
    let mut t = format!(
        "{} {} {}",
        d.message,
        d.label.clone().unwrap_or_default(),
        d.help.clone().unwrap_or_default()
    );
    for l in &d.secondary {
        t.push(' ');
        t.push_str(&l.message);
    }
    for n in &d.notes {
        t.push(' ');
        t.push_str(n);
    }
    t
}

// ---- dom0's modules ----

#[test]
fn a_dom0_kernel_of_unspecified_type_boots() {
    // The first module without a kind is dom0's kernel: a dom0, not "no domain with a
    // kernel".
    let c = verdict("booting_dom0_unspecified_module.dts", DEBIAN_420, &[]);
    let sys = c.system.unwrap();
    let dom0 = sys.dom0().expect("dom0 is built");
    let kinds: Vec<&str> = dom0.modules.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["kernel", "ramdisk"]);
    assert_eq!(dom0.modules[0].bootargs.as_deref(), Some("console=hvc0"));
}

#[test]
fn dom0_modules_under_their_legacy_names_boot() {
    let c = verdict("booting_dom0_legacy_names.dts", DEBIAN_420, &[]);
    let sys = c.system.unwrap();
    let dom0 = sys.dom0().expect("dom0 is built");
    let kinds: Vec<&str> = dom0.modules.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["kernel", "ramdisk"]);
}

#[test]
fn a_legacy_initrd_outside_ram_is_reported_like_a_ramdisk() {
    let c = verdict(
        "booting_dom0_legacy_initrd_not_ram.dts",
        DEBIAN_420,
        &["SB0409"],
    );
    assert!(find(&c, "SB0409")[0]
        .message
        .contains("ramdisk module of `dom0`"));
}

#[test]
fn a_third_module_without_a_kind_is_reported_not_skipped() {
    let c = verdict(
        "booting_dom0_third_unknown_module.dts",
        DEBIAN_420,
        &["SB0406"],
    );
    let d = find(&c, "SB0406")[0];
    assert!(d.message.contains("module@e0000000"), "{}", words(d));
    assert!(words(d).contains("never uses it"), "{}", words(d));
}

// ---- domUs ----

#[test]
fn the_two_domu_example_boots() {
    verdict("booting_domus.dts", DEBIAN_420, &[]);
}

#[test]
fn a_domu_kernel_under_the_legacy_name_is_not_found() {
    let c = verdict(
        "booting_domu_legacy_kernel.dts",
        DEBIAN_420,
        &["SB0405", "SB0406"],
    );
    assert!(
        words(find(&c, "SB0406")[0]).contains("work only for dom0"),
        "{}",
        dump(&c)
    );
}

#[test]
fn the_device_assignment_example_boots() {
    verdict("booting_passthrough_dtb.dts", DEBIAN_420, &[]);
}

#[test]
fn the_dom0less_pandoc_example_boots() {
    verdict("dom0less_pandoc_domu.dts", DEBIAN_420, &[]);
}

#[test]
fn xen_enhanced_disabled_is_a_documented_value() {
    verdict("booting_enhanced_disabled.dts", DEBIAN_420, &[]);
}

#[test]
fn vcpu_affinity_nodes_are_ignored_before_4_21() {
    let c = verdict(
        "booting_vcpu_affinity.dts",
        DEBIAN_420,
        &["SB0419", "SB0419"],
    );
    assert!(find(&c, "SB0419")[0].message.contains("Xen 4.20 ignores"));
}

// ---- static allocation, heap ----

#[test]
fn static_memory_needs_config_static_memory_not_static_shm() {
    verdict("booting_static_mem.dts", DEBIAN_420, &["SB0414"]);
    let static_memory_only = Build {
        static_memory: true,
        ..DEBIAN_420
    };
    verdict("booting_static_mem.dts", static_memory_only, &[]);
    verdict("booting_static_mem.dts", SHM_420, &[]);
}

#[test]
fn the_static_heap_example_boots() {
    verdict("booting_static_heap.dts", DEBIAN_420, &[]);
}

#[test]
fn a_static_heap_outside_ram_is_an_error() {
    let c = verdict("booting_static_heap_not_ram.dts", DEBIAN_420, &["SB0420"]);
    assert!(find(&c, "SB0420")[0].message.contains("not inside RAM"));
}

#[test]
fn a_static_heap_not_64_kib_aligned_is_an_error() {
    let c = verdict("booting_static_heap_unaligned.dts", DEBIAN_420, &["SB0420"]);
    assert!(find(&c, "SB0420")[0].message.contains("64 KiB"));
}

// ---- static event channels, shared memory ----

#[test]
fn the_static_event_channel_example_binds() {
    let c = verdict("booting_static_evtchn.dts", DEBIAN_420, &[]);
    let sys = c.system.unwrap();
    assert_eq!(sys.evtchns.len(), 3);
    assert!(sys.dom0().is_some());
    verdict("booting_static_evtchn.dts", DEBIAN_420, &[]);
    // 4.17 binds them too (no Kconfig option there).
    let v417 = Build {
        xen: XenVersion::V4_17,
        ..DEBIAN_420
    };
    verdict("booting_static_evtchn.dts", v417, &[]);
}

#[test]
fn the_static_shm_example_builds_with_config_static_shm() {
    let c = verdict("booting_static_shm.dts", SHM_420, &[]);
    assert_eq!(c.system.unwrap().shm.len(), 6);
    // Region 2 is allocated from Xen's heap: 4.19 and later.
    let v417 = Build {
        xen: XenVersion::V4_17,
        ..SHM_420
    };
    verdict("booting_static_shm.dts", v417, &["SB0209", "SB0209"]);
    // Debian's build has no CONFIG_STATIC_SHM.
    verdict("booting_static_shm.dts", DEBIAN_420, &["SB0201"]);
}

#[test]
fn a_dom0_shm_node_without_dom0_points_at_the_missing_dom0() {
    let c = verdict(
        "booting_static_shm_no_dom0.dts",
        SHM_420,
        &["SB0202", "SB0219"],
    );
    let d = find(&c, "SB0202")[0];
    let help = d.help.clone().unwrap_or_default();
    assert!(help.contains("dom0's kernel module"), "{}", words(d));
    assert!(d.message.contains("no dom0"), "{}", words(d));
    // SB0219 does not claim that Xen accepts the tree.
    let b = find(&c, "SB0219")[0];
    assert!(
        !b.label.as_deref().unwrap_or("").contains("accepts"),
        "{}",
        words(b)
    );
}

// ---- what only a blob, or raw bytes, can hold ----

/// A clean tree as a blob, with `edit` applied to the tree first.
fn blob(name: &str, edit: impl FnOnce(&mut staticbus_dt::Tree)) -> PathBuf {
    let text = std::fs::read_to_string(fixture("booting_domus.dts")).unwrap();
    let mut s = Sources::new();
    let (tree, d) = parse_dts(
        &mut s,
        "booting_domus.dts",
        text,
        &DtsOptions::default(),
        &FsLoader,
    );
    assert!(d.is_empty());
    let mut tree = tree.unwrap();
    edit(&mut tree);
    let p = scratch(name).join(format!("{name}.dtb"));
    std::fs::write(&p, write_dtb(&tree)).unwrap();
    p
}

#[test]
fn a_dtb_gets_the_duplicate_checks_a_dts_gets() {
    // `cpus` twice: dtc refuses the source (SB0023); a blob made otherwise keeps both and
    // Xen reads only the first.
    let p = blob("dup-cpus", |t| {
        let chosen = t
            .root
            .children
            .iter_mut()
            .find(|c| c.name == "chosen")
            .unwrap();
        let d = chosen
            .children
            .iter_mut()
            .find(|c| c.name == "domU1")
            .unwrap();
        d.props
            .push(Property::raw("cpus", 4u32.to_be_bytes().to_vec()));
        let dup = d.children[0].clone();
        d.children.push(dup);
    });
    let mut s = Sources::new();
    let c = check(&mut s, &p, &opts(DEBIAN_420));
    let got = codes(&c);
    assert!(
        got.contains(&"SB0023") && got.contains(&"SB0022"),
        "{}",
        dump(&c)
    );
    let d = find(&c, "SB0023")[0];
    assert!(
        matches!(&d.location, Location::Node { path, property: Some(p), .. }
            if path == "/chosen/domU1" && p == "cpus"),
        "{:?}",
        d.location
    );
    let n = find(&c, "SB0022")[0];
    assert!(
        matches!(&n.location, Location::Node { path, property: None, .. }
            if path == "/chosen/domU1/module@4a000000"),
        "{:?}",
        n.location
    );
    // The same tree without the duplicates is clean.
    let ok = blob("dup-cpus-fixed", |_| {});
    let mut s = Sources::new();
    assert!(check(&mut s, &ok, &opts(DEBIAN_420)).diags.is_empty());
}

#[test]
fn a_compiled_overlay_is_not_checked_as_a_host_tree() {
    let overlay = b"/dts-v1/;\n/plugin/;\n\n&{/chosen} {\n\tdomU1 {\n\t\tcompatible = \"xen,domain\";\n\t\tmemory = <0x0 0x10000>;\n\t\tcpus = <1>;\n\t};\n};\n";
    let oracle = Oracle::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtc-recorded"));
    let out = oracle.run("xen-docs/overlay", &[], &[("in.dts", overlay)]);
    assert!(out.accepted, "{}", out.stderr);
    let p = scratch("overlay").join("domu.dtbo");
    std::fs::write(&p, &out.dtb).unwrap();
    let mut s = Sources::new();
    let c = check(&mut s, &p, &opts(DEBIAN_420));
    assert_eq!(codes(&c).first(), Some(&"SB0003"), "{}", dump(&c));
    assert!(
        !codes(&c).contains(&"SB0404") && !codes(&c).contains(&"SB0405"),
        "the overlay's fragment is not read as domains:\n{}",
        dump(&c)
    );
}

#[test]
fn a_dts_that_is_not_utf8_is_rejected_at_the_byte() {
    let dir = scratch("not-utf8");
    let mut bytes = std::fs::read(fixture("booting_domus.dts")).unwrap();
    let at = bytes.windows(5).position(|w| w == b"cpus ").unwrap();
    bytes[at + 1] = 0xff; // "c\xffus"
    let p = dir.join("latin1.dts");
    std::fs::write(&p, &bytes).unwrap();
    let mut s = Sources::new();
    let c = check(&mut s, &p, &opts(DEBIAN_420));
    let d = find(&c, "SB0702");
    assert_eq!(d.len(), 1, "{}", dump(&c));
    let span = d[0].location.as_span().expect("a position in the file");
    assert_eq!(span.start as usize, at + 1);
    let text = String::from_utf8_lossy(&bytes);
    let line = text[..at].matches('\n').count() + 1;
    let (l, _) = s.get(span.file).line_col(span.start as usize);
    assert_eq!(l, line);
    assert!(d[0].message.contains("0xff"), "{}", d[0].message);
}

// ---- SB0302's help ----

fn enhanced_tree(value: &str, dom0: bool) -> PathBuf {
    let mut text = std::fs::read_to_string(fixture("booting_enhanced_disabled.dts")).unwrap();
    text = text.replace("\"disabled\"", &format!("\"{value}\""));
    if dom0 {
        text = text.replace(
            "\t\tdomU1 {",
            "\t\tmodule@60000000 {\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = <0x0 0x60000000 0x0 0x1000000>;\n\t\t};\n\n\t\tdomU1 {",
        );
    }
    let p = scratch(&format!("enhanced-{value}-{dom0}")).join("t.dts");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn sb0302_offers_only_values_that_work() {
    let mut s = Sources::new();
    let c = check(&mut s, &enhanced_tree("on", false), &opts(DEBIAN_420));
    let d = find(&c, "SB0302");
    assert_eq!(d.len(), 1, "{}", dump(&c));
    let help = d[0].help.clone().unwrap();
    assert!(help.contains("\"disabled\""), "{help}");
    assert!(help.contains("\"no-xenstore\""), "{help}");
    // Without dom0, "enabled" panics (SB0301): not offered as a fix.
    assert!(!help.contains("\"enabled\" ("), "{help}");
    assert!(help.contains("\"enabled\" needs dom0"), "{help}");
    // With dom0 it is.
    let mut s = Sources::new();
    let c = check(&mut s, &enhanced_tree("on", true), &opts(DEBIAN_420));
    let help = find(&c, "SB0302")[0].help.clone().unwrap();
    assert!(help.contains("\"enabled\" ("), "{help}");
}
