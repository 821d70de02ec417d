//! `staticbus import imagebuilder` on real files: the round trip import → build --uboot →
//! check of the built host tree, the errors (with file:line:col, nothing written), and the
//! exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder with the configuration `good/NAME` of the import crate's tests, the board tree
/// it names and a file for every image it loads (1 MiB each).
fn stage(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("crates/import/tests/good").join(name)).unwrap();
    std::fs::write(dir.path().join("config"), &text).unwrap();
    std::fs::copy(
        root().join("examples/boards/qemu-virt-gicv3-2g.dtb"),
        dir.path().join("virt.dtb"),
    )
    .unwrap();
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let var = name.split('[').next().unwrap();
        if [
            "XEN",
            "DOM0_KERNEL",
            "DOM0_RAMDISK",
            "DOMU_KERNEL",
            "DOMU_RAMDISK",
            "DOMU_PASSTHROUGH_DTB",
        ]
        .contains(&var)
        {
            let p = dir.path().join(value.trim_matches('"'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![0u8; 1 << 20]).unwrap();
        }
    }
    dir
}

#[test]
fn import_build_check_round_trip() {
    let dir = stage("shared-mem.cfg");
    let d = dir.path();
    let o = run_in(
        d,
        &["import", "imagebuilder", "config", "-o", "system.toml"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "next: staticbus build system.toml --uboot -o out\nthen, in U-Boot: <load command> 0x40200000 boot.scr; source 0x40200000"
        ),
        "{}",
        stderr(&o)
    );
    // The description names the board tree (DEVICE_TREE): no --base needed.
    let o = run_in(d, &["check", "system.toml", "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run_in(d, &["build", "system.toml", "--uboot", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The built host tree is what Xen boots: it checks clean on its own.
    let o = run_in(
        d,
        &[
            "check",
            "out/host.dtb",
            "--xen",
            "4.20",
            "--static-shm",
            "--deny-warnings",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The script loads every file where uboot-script-gen would (its own script at
    // MEMORY_START + 2 MiB, then one 2 MiB slot per 1 MiB file, domUs in order, then Xen and
    // the tree) with LOAD_CMD.
    let script = std::fs::read_to_string(d.join("out/boot.source")).unwrap();
    for (addr, file) in [
        (0x4040_0000u64, "ping/Image"),
        (0x4060_0000, "pong/Image"),
        (0x4080_0000, "log/Image"),
        (0x40a0_0000, "xen"),
        (0x40c0_0000, "host.dtb"),
    ] {
        let line = format!("if ${{sb_load}} {addr:#x} {file}; then");
        assert!(script.contains(&line), "{line}\n{script}");
    }
    assert!(script.contains("setenv sb_load tftpb; fi"), "{script}");
    assert!(
        script.trim_end().ends_with("booti 0x40a00000 - 0x40c00000"),
        "{script}"
    );
}

#[test]
fn the_readme_configuration_with_dom0_round_trips() {
    let dir = stage("readme.cfg");
    let d = dir.path();
    let o = run_in(
        d,
        &["import", "imagebuilder", "config", "-o", "sys/system.toml"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Written in another folder: its paths lead back to the files.
    let toml = std::fs::read_to_string(d.join("sys/system.toml")).unwrap();
    assert!(
        toml.contains("file = \"../zynqmp-dom1/Image-domU\""),
        "{toml}"
    );
    let o = run_in(
        d,
        &[
            "build",
            "sys/system.toml",
            "--base",
            "virt.dtb",
            "--uboot",
            "-o",
            "out",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run_in(d, &["check", "out/host.dtb", "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = std::fs::read_to_string(d.join("out/boot.source")).unwrap();
    // `../xen` from the description's folder is loaded as `xen`, as uboot-script-gen names it.
    assert!(script.contains(" 0x41200000 xen; then"), "{script}");
    assert!(
        script.contains(" 0x40800000 zynqmp-dom1/Image-domU; then"),
        "{script}"
    );
    assert!(
        script.contains(" 0x40e00000 zynqmp-dom2/Image-domU; then"),
        "{script}"
    );
}

#[test]
fn errors_point_at_the_line_and_write_nothing() {
    let dir = stage("dom0less-defaults.cfg");
    let d = dir.path();
    let mut text = std::fs::read_to_string(d.join("config")).unwrap();
    text.push_str("DOMU_MEM[0]=\"256M\"\n");
    std::fs::write(d.join("config"), &text).unwrap();
    let line = text.lines().count();
    std::fs::write(d.join("system.toml"), "# an earlier import\n").unwrap();
    let o = run_in(
        d,
        &[
            "import",
            "imagebuilder",
            "config",
            "-o",
            "system.toml",
            "-t",
            "tftp",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("error[SB0803]"), "{e}");
    assert!(e.contains(&format!("config:{line}:13")), "{e}");
    assert!(e.contains("= help:"), "{e}");
    assert!(e.contains("not writing system.toml"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.join("system.toml")).unwrap(),
        "# an earlier import\n",
        "a failed import leaves the old file alone"
    );
    // JSON for tools.
    let o = run_in(
        d,
        &[
            "import",
            "imagebuilder",
            "config",
            "-o",
            "system.toml",
            "-t",
            "tftp",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["diagnostics"][0]["code"], "SB0803", "{v}");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = stage("dom0less-defaults.cfg");
    let d = dir.path();
    let mut text = std::fs::read_to_string(d.join("config")).unwrap();
    text.push_str("DOMU_COLORS[0]=\"0-3\"\nLOAD_CMD=tftpb\n");
    std::fs::write(d.join("config"), &text).unwrap();
    let o = run_in(d, &["import", "imagebuilder", "config", "-o", "a.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning[SB0804]"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 not imported"), "{}", stderr(&o));
    let o = run_in(
        d,
        &[
            "import",
            "imagebuilder",
            "config",
            "-o",
            "b.toml",
            "--deny-warnings",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(!d.join("b.toml").exists());
}

#[test]
fn unreadable_inputs_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &["import", "imagebuilder", "nope", "-o", "x.toml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read `nope`"), "{}", stderr(&o));
}
