//! The C API reads the C manifest headers `staticbus build` writes: for every domain of
//! examples/c-api and examples/demo, crates/capi/tests/c/manifest_check.c (built with the
//! domain's generated `manifest.h` and the host library of crates/capi) initialises a
//! domain from the header's `sb_manifest` table and checks that every channel opens and
//! reports what the table and the macros say.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host static library of crates/capi, built if needed (cargo knows when it is up to
/// date).
fn library() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_staticbus")).parent().unwrap();
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "staticbus-capi"]);
    if bin_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let st = cmd.current_dir(root()).status().expect("cargo build");
    assert!(st.success(), "building staticbus-capi failed");
    bin_dir.join("libstaticbus_capi.a")
}

fn check_description(desc: &str, domains: &[&str]) {
    let lib = library();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let b = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("build")
        .arg(root().join(desc))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    for d in domains {
        let exe = dir.path().join(format!("check-{d}"));
        let cc = Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("crates/capi/include"))
            .arg("-I")
            .arg(out.join("domains").join(d))
            .arg(root().join("crates/capi/tests/c/manifest_check.c"))
            .arg(&lib)
            .args([
                "-lpthread",
                "-ldl",
                "-lm",
                "-lrt",
                "-lutil",
                "-lgcc_s",
                "-lc",
                "-o",
            ])
            .arg(&exe)
            .output()
            .expect("run cc");
        assert!(
            cc.status.success(),
            "{desc}, domain {d}: cc failed:\n{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let run = Command::new(&exe).output().unwrap();
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{desc}, domain {d}:\n{text}");
        assert!(
            text.contains(&format!("{d}: ")) && text.contains("channels checked, 0 failures"),
            "{text}"
        );
        eprint!("{text}");
    }
}

#[test]
fn the_library_reads_the_generated_c_manifests() {
    check_description("examples/c-api/system.toml", &["c", "rust"]);
}

#[test]
fn the_library_reads_a_larger_generated_c_manifest() {
    check_description(
        "examples/demo/system.toml",
        &["sensor", "aggregator", "control"],
    );
}
