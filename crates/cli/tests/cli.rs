//! Runs the real `staticbus` binary on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo() -> PathBuf {
    root().join("examples/demo/system.toml")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run staticbus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const BROKEN: &str = r#"
[target]
xen = "4.20"
[platform]
ram = [{ base = 0x4000_0000, size = "1GiB" }]
[[domain]]
name = "a"
memory = "16MiB"
kernel = { addr = 0x4a00_0000, size = "2MiB" }
[[domain]]
name = "b"
memory = "16MiB"
kernel = { addr = 0x4a20_0000, size = "2MiB" }
[[evtchn]]
a = "a:5"
b = "b:2000"
"#;

#[test]
fn check_demo_is_clean() {
    let o = run(&["check", demo().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ok (3 domains, 3 channels"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_reports_errors_with_position_code_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.toml", BROKEN);
    let o = run(&["check", f.to_str().unwrap(), "--color", "never"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("error[SB0110]: port 2000 is out of range"),
        "{e}"
    );
    assert!(e.contains("bad.toml:16:5"), "{e}");
    assert!(e.contains("help: use a port between 1 and 1023"), "{e}");
    assert!(e.contains("1 error, 0 warnings"), "{e}");
}

#[test]
fn json_format_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.toml", BROKEN);
    let o = run(&["check", f.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON on stdout");
    assert_eq!(v["errors"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "SB0110");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["location"]["line"], 16);
    assert_eq!(d["location"]["column"], 5);
    assert!(d["help"].as_str().unwrap().contains("1023"));
}

#[test]
fn warnings_fail_only_when_denied() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback event channel is legal (warning SB0113).
    let text = BROKEN.replace("b = \"b:2000\"", "b = \"a:6\"");
    let f = write(dir.path(), "warn.toml", &text);
    let o = run(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning[SB0113]"), "{}", stderr(&o));
    let o = run(&["check", f.to_str().unwrap(), "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn io_and_usage_errors_exit_2() {
    let o = run(&["check", "/nonexistent/system.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SB0701"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "notes.txt", "hello");
    let o = run(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SB0702"), "{}", stderr(&o));
    let o = run(&["check"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["check", "x.toml", "--xen", "4.99"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn build_writes_every_output_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let out1 = dir.path().join("o1");
    let out2 = dir.path().join("o2");
    for out in [&out1, &out2] {
        let o = run(&[
            "build",
            demo().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let mut names = Vec::new();
    for d in ["sensor", "aggregator", "control"] {
        for ext in ["json", "rs", "h", "dts"] {
            names.push(format!("domains/{d}/manifest.{ext}"));
        }
    }
    names.push("host.dts".into());
    names.push("host.dtb".into());
    for n in &names {
        let a = std::fs::read(out1.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
        let b = std::fs::read(out2.join(n)).unwrap();
        assert_eq!(a, b, "{n} differs between two builds");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("domains/sensor/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["domain"], "sensor");
    assert_eq!(m["domid"], 1);
    let samples = m["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "samples")
        .expect("samples channel");
    assert_eq!(samples["role"], "producer");
    // The peer's manifest agrees on the ports.
    let p: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out1.join("domains/aggregator/manifest.json")).unwrap(),
    )
    .unwrap();
    let ps = p["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "samples")
        .unwrap();
    assert_eq!(
        samples["peers"][0]["local_port"],
        ps["peers"][0]["remote_port"]
    );
    assert_eq!(
        samples["peers"][0]["remote_port"],
        ps["peers"][0]["local_port"]
    );
    assert_eq!(samples["shm_id"], ps["shm_id"]);
}

#[test]
fn build_refuses_broken_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.toml", BROKEN);
    let out = dir.path().join("out");
    let o = run(&["build", f.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists(), "no output may be written for a broken input");
    // --no-check writes it anyway (to see how Xen fails).
    let o = run(&[
        "build",
        f.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("host.dtb").exists());
}

#[test]
fn a_build_that_cannot_write_every_output_replaces_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // An old output that must survive, and a file where the `domains` folder would go
    // (host.dts and host.dtb are written before anything under it).
    write(&out, "host.dts", "old\n");
    write(&out, "domains", "in the way\n");
    let o = run(&[
        "build",
        demo().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("SB0701"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("host.dts")).unwrap(),
        "old\n"
    );
    assert!(!out.join("host.dtb").exists(), "no output may be replaced");
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["domains", "host.dts"], "temporaries must be removed");
}

#[test]
fn built_dts_checks_clean_and_matches_the_description() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = run(&[
        "build",
        demo().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["host.dts", "host.dtb"] {
        let o = run(&[
            "check",
            out.join(f).to_str().unwrap(),
            "--static-shm",
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["errors"], 0, "{f}: {v:#}");
        assert_eq!(o.status.code(), Some(0), "{f}");
    }
    // Without --static-shm (Debian's Xen) the same tree is refused.
    let o = run(&["check", out.join("host.dtb").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SB0201"), "{}", stderr(&o));
}

#[test]
fn explain_knows_every_code() {
    let o = run(&["explain", "SB0219"]);
    assert_eq!(o.status.code(), Some(0));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("only borrowers"), "{s}");
    let o = run(&["explain", "sb9999"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn diagnostics_doc_lists_every_code() {
    let o = run(&["explain", "--list", "--markdown"]);
    let table = String::from_utf8(o.stdout).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap();
    assert!(
        doc.contains(table.trim()),
        "docs/diagnostics.md is stale: regenerate its table with `staticbus explain --list --markdown`"
    );
}

#[test]
fn building_a_device_tree_with_a_base_emits_the_input_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = run(&[
        "build",
        demo().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let host = out.join("host.dtb");
    let base = root().join("crates/dt/tests/fixtures/dtb/memreserve.dtb");
    let out2 = dir.path().join("o2");
    let o = run(&[
        "build",
        host.to_str().unwrap(),
        "--static-shm",
        "--base",
        base.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&host).unwrap(),
        std::fs::read(out2.join("host.dtb")).unwrap(),
        "the input tree, not the base, is re-emitted"
    );
}

#[test]
fn oversized_input_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.dtb");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(65 << 20).unwrap(); // sparse
    let o = run(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("larger than 64 MiB"), "{}", stderr(&o));
}

#[test]
fn base_board_tree_supplies_ram_and_is_merged() {
    let dir = tempfile::tempdir().unwrap();
    // The demo without its RAM: it must come from QEMU's board tree.
    let text = std::fs::read_to_string(demo()).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ram = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let desc = write(dir.path(), "demo.toml", &text);
    let board = root().join("examples/boards/qemu-virt-gicv3-2g.dtb");
    let out = dir.path().join("o");
    let o = run(&[
        "build",
        desc.to_str().unwrap(),
        "--base",
        board.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dts = std::fs::read_to_string(out.join("host.dts")).unwrap();
    assert!(dts.contains("pl011@9000000"), "board nodes are kept");
    assert!(dts.contains("stdout-path"), "the board's /chosen is kept");
    assert!(dts.contains("xen,xen-bootargs"), "our /chosen is merged in");
    // The merged tree checks clean as a Xen host tree.
    let o = run(&[
        "check",
        out.join("host.dtb").to_str().unwrap(),
        "--static-shm",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Without RAM from anywhere, modules could not be checked: the shm pool must be in RAM.
    let bad = write(
        dir.path(),
        "bad.toml",
        &text.replace("0x7000_0000", "0x1_7000_0000"),
    );
    let o = run(&[
        "check",
        bad.to_str().unwrap(),
        "--base",
        board.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SB0605"), "{}", stderr(&o));
}

#[test]
fn no_static_evtchn_says_the_channels_are_ignored() {
    // Xen's own static event channel example, on a 4.20 build with CONFIG_STATIC_EVTCHN
    // off (the differential corpus boots one: SB0114) and on one with it on.
    let dts = root().join("crates/config/tests/fixtures/xen-docs/booting_static_evtchn.dts");
    let dts = dts.to_str().unwrap();
    let off = run(&["check", dts, "--xen", "4.20", "--no-static-evtchn"]);
    assert!(stderr(&off).contains("warning[SB0114]"), "{}", stderr(&off));
    let on = run(&["check", dts, "--xen", "4.20"]);
    assert!(!stderr(&on).contains("SB0114"), "{}", stderr(&on));
    // 4.17 has no such option: it always binds them.
    let old = run(&["check", dts, "--xen", "4.17", "--no-static-evtchn"]);
    assert!(!stderr(&old).contains("SB0114"), "{}", stderr(&old));
}
