//! Linux domUs beside bare-metal domUs under `staticbus boot` on real Xen (QEMU, TCG):
//! the `linux = { … }` domains of examples/xen-linux-ping-pong (Xen 4.20, the channel
//! form over static shared memory) and examples/xen-linux-ping-pong-417 (Xen 4.17, events
//! only), and the negative case (SB0304: no `xen,enhanced`). See docs/linux.md.
//!
//! Needs what tests/boot.rs needs, plus what `staticbus boot` needs for a Linux domain:
//! Debian's kernel (scripts/linux/fetch-kernel.sh, which `boot` runs; cached),
//! gcc-aarch64-linux-gnu and pahole (the xen-shmem module) and rustup's
//! aarch64-unknown-linux-musl target. `STATICBUS_LINUX_TESTS=1` requires all of it; without
//! it, a test on a machine whose kernel cache is empty says so and passes.

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

/// The kernel cache has an Image (or the tests are required); otherwise reports a skip.
fn linux_ready() -> bool {
    if required() {
        return true;
    }
    let cache = std::env::var_os("STATICBUS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/staticbus")
        })
        .join("linux");
    let found = std::fs::read_dir(&cache)
        .map(|d| d.flatten().any(|e| e.path().join("Image").is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!(
            "skipped: no kernel in {} (scripts/linux/fetch-kernel.sh; STATICBUS_LINUX_TESTS=1 \
             requires the Linux boots)",
            cache.display()
        );
    }
    found
}

fn staticbus(args: &[&str]) -> (Output, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run staticbus");
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, t)
}

fn boot(xen: &Path, desc: &str, extra: &[&str]) -> (Output, String) {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "boot",
        desc,
        "--xen",
        xen.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--timeout",
        "180",
    ];
    args.extend(extra);
    staticbus(&args)
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
    let (o, t) = boot(&xen, "examples/xen-linux-ping-pong/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | linux-init: loaded 30-xen-shmem.ko",
        "linux | linux-ping-pong: ports [1] connected as built (EVTCHNOP_status), bound when first used",
        "linux | linux-ping-pong: region `pingpong`: 0x1000 bytes at guest 0x8000000, mapped write-back",
        "linux | RESULT PASS ping-pong ping: 1000 round trips",
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
    let (o, t) = boot(&xen, "examples/xen-linux-ping-pong-417/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | ping: events only, port 1 to pong (domid 2) port 1",
        "linux | RESULT PASS ping-pong ping: 1000 round trips",
        "pong | RESULT PASS ping-pong pong: 1000 round trips",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
}

/// SB0304: `check` rejects a Linux domain without `xen,enhanced`; booted anyway, Linux
/// does not see Xen, as the diagnostic says.
#[test]
fn a_linux_domain_without_xen_enhanced_is_rejected_and_fails_as_documented() {
    let desc = "crates/cli/tests/xen/SB0304.toml";
    let (o, t) = staticbus(&["check", desc]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("error[SB0304]"), "{t}");
    assert!(
        t.contains("Linux domain `linux` has no `xen,enhanced`"),
        "{t}"
    );
    assert!(t.contains("SB0304.toml:"), "no location:\n{t}");
    assert!(t.contains("help: set `enhanced = \"no-xenstore\"`"), "{t}");
    let Some(xen) = common::xen("4.17") else {
        return;
    };
    if !linux_ready() {
        return;
    }
    let (o, t) = boot(&xen, desc, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("not booting"), "{t}");
    let (o, t) = boot(&xen, desc, &["--no-check"]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        has(
            &t,
            "linux | RESULT FAIL Linux does not see Xen (/sys/hypervisor/type: missing)"
        ),
        "{t}"
    );
}

/// The numbers after `key` in the first line of `t` that contains `key` (e.g. `after(t,
/// "reader: ")`), in order.
fn numbers_after(t: &str, key: &str) -> Vec<u64> {
    let line = t
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no line with `{key}`:\n{t}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// examples/xen-linux-queue: one boot, three programs side by side in the Linux domain
/// against three bare-metal domains — 10,000 checksummed queue messages Linux → bare metal
/// and 10,000 bare metal → Linux (each followed by 1000 round trips), and a log from a
/// bare-metal writer that Linux reads with exact loss accounting.
#[test]
fn linux_queues_both_ways_and_reads_a_log_beside_bare_metal_on_xen_4_20() {
    let Some(xen) = common::xen("4.20") else {
        return;
    };
    if !linux_ready() {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-queue/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let digest = "digest 0x630d7a5b3eef2fd1";
    for want in [
        // Linux → bare metal.
        "linux | producer: `up` queue of 32768 bytes (max message 16376); waiting for `up-ack`",
        &format!("linux | program 1: RESULT PASS queue-check producer: 10000 messages verified ({digest}), 1000 round trips"),
        &format!("sink | RESULT PASS queue-check consumer: 10000 messages in order and intact ({digest})"),
        // Bare metal → Linux.
        &format!("linux | program 2: RESULT PASS queue-check consumer: 10000 messages in order and intact ({digest})"),
        &format!("source | RESULT PASS queue-check producer: 10000 messages verified ({digest}), 1000 round trips"),
        // The log, bare metal → Linux.
        "linux | program 3: RESULT PASS log-check reader: 10000 records = ",
        "writer | RESULT PASS log-check writer: 10000 records; lost 0 paced, 2056 in bursts (exact), ",
        "linux | reader: bursts: 2944 received, 2056 lost, exactly as overwritten in each of 13 bursts",
        "linux | RESULT PASS linux-init: 3 programs passed in ",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
    // The reader's account of the log agrees with the writer's view of it, record for
    // record: `reader: R received (…), L lost` on the writer's side, `R intact + L lost`
    // on the reader's.
    let reader = numbers_after(&t, "RESULT PASS log-check reader: ");
    let writer = numbers_after(&t, "notifications; reader: ");
    assert_eq!(reader.len(), 3, "{reader:?}");
    assert_eq!(reader[0], 10_000);
    assert_eq!(reader[1] + reader[2], 10_000);
    assert_eq!(
        writer.first(),
        Some(&reader[1]),
        "received: {writer:?} vs {reader:?}"
    );
    assert_eq!(
        writer.last(),
        Some(&reader[2]),
        "lost: {writer:?} vs {reader:?}"
    );
}

/// The numeric `key=value` words of the first line of `t` that contains `key`.
fn key_values(t: &str, key: &str) -> std::collections::BTreeMap<String, u64> {
    let line = t
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no line with `{key}`:\n{t}"));
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The musl `vhost-device-KIND` for the Linux domain is there: named by
/// `STATICBUS_LINUX_DAEMON_VHOST_DEVICE_<KIND>` (`.ci/run` sets it) or already in the cache
/// of `scripts/virtio/install-vhost-device.sh --target aarch64-unknown-linux-musl KIND`, or
/// the Linux tests are required (then `boot` builds it, a few minutes). Otherwise reports a
/// skip.
fn musl_daemon_ready(kind: &str) -> bool {
    let var = format!(
        "STATICBUS_LINUX_DAEMON_VHOST_DEVICE_{}",
        kind.to_uppercase()
    );
    if required() || std::env::var_os(var).is_some() {
        return true;
    }
    let cached = std::env::var_os("STATICBUS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/staticbus")
        })
        .join(format!(
            "vhost-device/vhost-device-{kind}-0.1.0-aarch64-unknown-linux-musl/bin/vhost-device-{kind}"
        ));
    if !cached.is_file() {
        eprintln!(
            "skipped: no {} (scripts/virtio/install-vhost-device.sh --target \
             aarch64-unknown-linux-musl {kind}; STATICBUS_LINUX_TESTS=1 requires the boot)",
            cached.display()
        );
    }
    cached.is_file()
}

/// examples/xen-linux-virtio-rng: issue 14's test 3, second half. The bare-metal `app`
/// runs virtio-drivers' VirtIORng over virtio-msg; the Linux domain's linux-vhost-bridge
/// serves the device side and hands the queue to rust-vmm's vhost-device-rng, unmodified,
/// which maps the region itself from the xen-shmem fd it got as its memory table.
///
/// It once hung in one boot in three: the daemon (no `REPLY_ACK`) dropped the first kick
/// when it came before it had read SET_VRING_ENABLE; the bridge now waits for the daemon
/// to have read the ring requests (crates/vhost-bridge/tests/kick_race.rs).
#[test]
fn bare_metal_virtio_rng_is_served_by_vhost_device_rng_in_a_linux_domain_on_xen_4_20() {
    let Some(xen) = common::xen("4.20") else {
        return;
    };
    if !linux_ready() || !musl_daemon_ready("rng") {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-virtio-rng/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | linux-vhost-bridge: region `virtio-rng`: 0x20000 bytes at guest 0x8000000, mapped write-back",
        "linux | linux-vhost-bridge: starting /bin/vhost-device-rng --socket-path /run/staticbus-vhost/rng-",
        "linux | linux-vhost-bridge: serving rng device `virtio-rng` (epoch 1, 0x20000 bytes, port 1 to app)",
        "linux | linux-vhost-bridge: frontend attached",
        "linux | linux-vhost-bridge: frontend detached; faults Faults { refused: 0, dropped: 0, ring: 0, queue: 0, lost: 0 }",
        "app | virtio-rng: device `rng`: region `virtio-rng` (0x20000 bytes at 0x8000000), port 1 to linux",
        "app | RESULT PASS virtio-rng requests=16 bytes=65536 distinct=256 chi2=",
        "linux | RESULT PASS linux-vhost-bridge device=rng ",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
    // The daemon's socket is the one it made from the path it was given (index 0).
    assert!(t.contains("/vhost.sock0 after "), "{t}");
    // The counts the frontend checked, and every request through the daemon.
    let front = key_values(&t, "RESULT PASS virtio-rng ");
    assert_eq!(front["requests"], 16);
    assert_eq!(front["bytes"], 65536);
    assert_eq!(front["distinct"], 256);
    assert!(front["chi2"] < 400, "chi-square {}", front["chi2"]);
    assert_eq!(front["blocks"], 1024);
    let bridge = key_values(&t, "RESULT PASS linux-vhost-bridge ");
    let (kicks, calls) = (bridge["kicks"], bridge["calls"]);
    assert!(
        kicks >= 16 && calls >= 16,
        "kicks {kicks}, calls {calls}: {bridge:?}"
    );
}

/// examples/xen-linux-virtio-console: the bare-metal `app` runs virtio-drivers'
/// VirtIOConsole over virtio-msg; the Linux domain's linux-vhost-bridge hands both queues to
/// rust-vmm's vhost-device-console 0.1.0, unmodified, whose `nested` backend's terminal is
/// a pseudo-terminal the bridge holds. Exactly what crossed: each line the frontend wrote
/// arrived on the daemon's terminal inside Linux (printed there by the bridge), and each
/// byte written back there in upper case arrived at the frontend as input.
#[test]
fn bare_metal_virtio_console_is_served_by_vhost_device_console_in_a_linux_domain_on_xen_4_20() {
    let Some(xen) = common::xen("4.20") else {
        return;
    };
    if !linux_ready() || !musl_daemon_ready("console") {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-virtio-console/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | linux-vhost-bridge: region `virtio-console`: 0x40000 bytes at guest 0x8000000, mapped write-back",
        "linux | linux-vhost-bridge: the daemon's terminal: a pseudo-terminal, echoed in upper case",
        "linux | linux-vhost-bridge: serving console device `virtio-console` (epoch 1, 0x40000 bytes, port 1 to app)",
        "linux | linux-vhost-bridge: frontend detached; faults Faults { refused: 0, dropped: 0, ring: 0, queue: 0, lost: 0 }",
        "app | virtio-console: device `console`: region `virtio-console` (0x40000 bytes at 0x8000000), port 1 to linux",
        "app | virtio-console: driver up; writing 2 line(s), one byte at a time",
        "app | RESULT PASS virtio-console lines=2 sent=72 received=72 ",
        "linux | RESULT PASS linux-vhost-bridge device=console ",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
    // What the daemon's terminal got, line by line, and what came back to the frontend.
    let lines = |prefix: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.trim_start().strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    let sent = [
        "console line 1 of 2 from bare metal",
        "console line 2 of 2 from bare metal",
    ];
    assert_eq!(
        lines("linux | linux-vhost-bridge: terminal: received "),
        sent.map(|l| format!("{l:?}")),
        "{t}"
    );
    assert_eq!(
        lines("app | virtio-console: received "),
        sent.map(|l| format!("{:?}", l.to_uppercase())),
        "{t}"
    );
    let bridge = key_values(&t, "RESULT PASS linux-vhost-bridge ");
    assert_eq!(bridge["echoed"], 72, "{bridge:?}");
    assert_eq!(bridge["lines"], 2, "{bridge:?}");
    // One kick and one completion at least per byte sent and per byte received.
    assert!(bridge["kicks"] >= 72 && bridge["calls"] >= 72, "{bridge:?}");
}

/// Debian's arm64 qemu-storage-daemon and its libraries are in the cache of
/// `scripts/virtio/fetch-qsd-arm64.sh` (`.ci/run` runs it), or the Linux tests are required
/// (then `boot` fetches them). Otherwise reports a skip.
fn qsd_arm64_ready() -> bool {
    if required() {
        return true;
    }
    let cache = std::env::var_os("STATICBUS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/staticbus")
        })
        .join("qsd-arm64");
    let found = std::fs::read_dir(&cache)
        .map(|d| {
            d.flatten()
                .any(|e| e.path().join("root/usr/bin/qemu-storage-daemon").is_file())
        })
        .unwrap_or(false);
    if !found {
        eprintln!(
            "skipped: no qemu-storage-daemon root in {} (scripts/virtio/fetch-qsd-arm64.sh; \
             STATICBUS_LINUX_TESTS=1 requires the boot)",
            cache.display()
        );
    }
    found
}

/// examples/xen-linux-virtio-blk: the bare-metal `app` runs virtio-drivers' VirtIOBlk over
/// virtio-msg — seeded random 4 KiB writes and reads, every read checked, then every block
/// once more; the Linux domain's linux-vhost-bridge hands the queue to QEMU's
/// qemu-storage-daemon, unmodified (Debian's arm64 build and its libraries in the
/// initramfs), exporting a file of the domain's RAM file system. After the daemon has
/// exited the file's digest equals the digest of the disk the frontend says it wrote.
#[test]
fn bare_metal_virtio_blk_is_served_by_qemu_storage_daemon_in_a_linux_domain_on_xen_4_20() {
    let Some(xen) = common::xen("4.20") else {
        return;
    };
    if !linux_ready() || !qsd_arm64_ready() {
        return;
    }
    let (o, t) = boot(&xen, "examples/xen-linux-virtio-blk/system.toml", &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for want in [
        "linux | linux-vhost-bridge: created /run/disk.raw (1048576 zero bytes)",
        "linux | linux-vhost-bridge: serving blk device `virtio-disk` (epoch 1, 0x40000 bytes, port 1 to app)",
        "linux | linux-vhost-bridge: frontend detached; faults Faults { refused: 0, dropped: 0, ring: 0, queue: 0, lost: 0 }",
        "linux | linux-vhost-bridge: frontend attached for ",
        "app | virtio-blk frontend: driver up, capacity 1048576 bytes, using 256 blocks; 1000 requests, seed 0x5eed",
        "app | virtio-blk frontend: 0 resets, device epoch 1",
        "app | RESULT PASS virtio-blk frontend: 1000 requests (",
        "linux | RESULT PASS linux-vhost-bridge device=blk ",
    ] {
        assert!(has(&t, want), "no `{want}`:\n{t}");
    }
    // qemu-storage-daemon exits 0 on SIGTERM (it had flushed).
    assert!(t.contains("; daemon exit status: 0"), "{t}");
    // The frontend's requests: both kinds, every block verified.
    let front = numbers_after(&t, "RESULT PASS virtio-blk frontend: ");
    assert_eq!(front[..4], [1000, front[1], front[2], 256], "{front:?}");
    assert_eq!(front[1] + front[2], 1000, "{front:?}");
    assert!(front[1] >= 300 && front[2] >= 300, "{front:?}");
    // The file inside Linux, read after the daemon exited, is the disk the frontend wrote.
    let digest = |key: &str| {
        let line = t
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no `{key}`:\n{t}"));
        line.rsplit("digest ").next().unwrap().trim().to_string()
    };
    let wrote = digest("RESULT PASS virtio-blk frontend: ");
    let file = digest("linux-vhost-bridge: disk after the daemon exited: 1048576 bytes, digest ");
    assert!(wrote.starts_with("0x") && wrote.len() == 18, "{wrote}");
    assert_eq!(wrote, file, "{t}");
    // Every request went through the daemon.
    let bridge = key_values(&t, "RESULT PASS linux-vhost-bridge ");
    assert!(
        bridge["kicks"] >= 1000 && bridge["calls"] >= 1000,
        "{bridge:?}"
    );
}
