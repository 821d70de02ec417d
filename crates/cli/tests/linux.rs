//! A Linux domU beside a bare-metal domU under `staticbus boot` on real Xen (QEMU, TCG):
//! examples/xen-linux-ping-pong (Xen 4.20, the channel form over static shared memory) and
//! examples/xen-linux-ping-pong-417 (Xen 4.17, events only). See docs/linux.md.
//!
//! Needs what tests/boot.rs needs plus the kernel and initramfs that
//! `scripts/linux/make-initramfs.sh` leaves in examples/xen-linux-ping-pong/build.
//! `STATICBUS_LINUX_TESTS=1` runs that script first (it downloads Debian's kernel once into
//! the cache and builds the module and the init) and turns anything missing into a
//! failure; without it, a test that lacks a piece says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

static BOOTS: Mutex<()> = Mutex::new(());

fn required() -> bool {
    std::env::var_os("STATICBUS_LINUX_TESTS").is_some_and(|v| v == "1")
}

/// The Linux pieces are there (made now when required); otherwise reports a skip.
fn linux_ready() -> bool {
    let build = root().join("examples/xen-linux-ping-pong/build");
    if required() {
        let o = Command::new("bash")
            .arg("scripts/linux/make-initramfs.sh")
            .current_dir(root())
            .output()
            .expect("run scripts/linux/make-initramfs.sh");
        assert!(
            o.status.success(),
            "scripts/linux/make-initramfs.sh failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let missing: Vec<_> = ["Image", "initramfs.cpio"]
        .iter()
        .filter(|f| !build.join(f).is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required(),
        "STATICBUS_LINUX_TESTS=1 but {missing:?} are missing in {build:?}"
    );
    eprintln!(
        "skipped: {missing:?} missing in {} (scripts/linux/make-initramfs.sh; \
         STATICBUS_LINUX_TESTS=1 makes them and requires the boot)",
        build.display()
    );
    false
}

fn boot(xen: &Path, desc: &str) -> (Output, String) {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(["boot", desc, "--xen", xen.to_str().unwrap(), "-o"])
        .arg(dir.path())
        .args(["--timeout", "180"])
        .current_dir(root())
        .output()
        .expect("run staticbus boot");
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, t)
}

fn has(t: &str, prefix: &str) -> bool {
    t.lines().any(|l| l.trim_start().starts_with(prefix))
}

#[test]
fn linux_pings_bare_metal_over_a_static_channel_on_xen_4_20() {
    let Some(xen) = common::xen("4.20") else {
        return;
    };
    if !linux_ready() {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-ping-pong/system.toml");
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | linux-probe: bound static port 1 (IOCTL_EVTCHN_BIND_STATIC)",
        "linux | linux-probe: kernel: xen-shmem: pingpong: mapped at user",
        "linux | RESULT PASS linux-probe linux: ping-pong ping (channel over \"pingpong\"), 1000 round trips, Xen 4.20",
        "pong | RESULT PASS ping-pong pong: 1000 round trips",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
}

#[test]
fn linux_pings_bare_metal_over_a_static_event_channel_on_xen_4_17() {
    let Some(xen) = common::xen("4.17") else {
        return;
    };
    if !linux_ready() {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-ping-pong-417/system.toml");
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | RESULT PASS linux-probe linux: ping-pong ping (events only), 1000 round trips, Xen 4.17",
        "pong | RESULT PASS ping-pong pong: 1000 round trips",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
}
