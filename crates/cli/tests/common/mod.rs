//! What the real-Xen tests need from the machine: QEMU, the cached Xen binaries, U-Boot.
//!
//! `.ci/run` installs all of it and sets `STATICBUS_XEN_TESTS=1`, which turns a missing
//! piece into a failure; without that variable a test that lacks one says so and passes.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// True when the environment requires the real-Xen tests to run.
fn required() -> bool {
    std::env::var_os("STATICBUS_XEN_TESTS").is_some_and(|v| v == "1")
}

/// Fails (when required) or reports a skip for `missing`; returns `None` for the caller.
pub fn skip<T>(missing: &str) -> Option<T> {
    assert!(
        !required(),
        "STATICBUS_XEN_TESTS=1 but {missing} is missing"
    );
    eprintln!("skipped: {missing} is missing (set STATICBUS_XEN_TESTS=1 to require it)");
    None
}

/// The cached Xen `version` binary, if it and qemu-system-aarch64 are present.
pub fn xen(version: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("STATICBUS_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/staticbus"),
        PathBuf::from,
    );
    let path = cache.join("xen").join(version).join("xen");
    let qemu = Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (qemu, path.is_file()) {
        (true, true) => {
            // Which Xen the boot tests ran on, on stderr directly (not captured by the
            // harness), from the version the fetch script recorded beside the binary.
            let recorded = std::fs::read_to_string(path.with_file_name("version"))
                .unwrap_or_else(|_| "unknown (no version file beside it)".into());
            let _ = writeln!(
                std::io::stderr(),
                "boot tests: Xen {version} is {} ({})",
                recorded.trim(),
                path.display()
            );
            Some(path)
        }
        (false, _) => skip("qemu-system-aarch64"),
        (true, false) => skip(&format!(
            "{} (scripts/xen/fetch-xen.sh {version})",
            path.display()
        )),
    }
}
