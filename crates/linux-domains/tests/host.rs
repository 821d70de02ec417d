//! The Linux programs on the build host, which is not a Xen domU: each fails at start with
//! the platform's precise reason on its `RESULT FAIL` line and exit status 1, never a panic.

use std::path::Path;
use std::process::Command;

fn run(bin: &str, manifest: &Path) -> (i32, String) {
    let o = Command::new(bin)
        .arg("role=ping")
        .env("STATICBUS_MANIFEST", manifest)
        .output()
        .expect("run the program");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn manifest() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events-only.manifest.json")
}

#[test]
fn without_xen_every_program_says_so() {
    if Path::new("/sys/hypervisor/type").exists() {
        eprintln!("skipped: this host has /sys/hypervisor/type");
        return;
    }
    for bin in [
        env!("CARGO_BIN_EXE_linux-ping-pong"),
        env!("CARGO_BIN_EXE_linux-queue-check"),
        env!("CARGO_BIN_EXE_linux-log-check"),
    ] {
        let (code, t) = run(bin, &manifest());
        assert_eq!(code, 1, "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("RESULT FAIL Linux does not see Xen")),
            "{t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
}

#[test]
fn a_missing_manifest_is_named() {
    let (code, t) = run(
        env!("CARGO_BIN_EXE_linux-ping-pong"),
        Path::new("/nonexistent/manifest.json"),
    );
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("RESULT FAIL manifest /nonexistent/manifest.json:"),
        "{t}"
    );
}
