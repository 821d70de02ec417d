//! `staticbus boot` end to end: generated configurations and staticbus guests on real Xen
//! under qemu-system-aarch64 (TCG).
//!
//! Needs `qemu-system-aarch64` and the Xen binaries that `scripts/xen/fetch-xen.sh` caches
//! (4.17: Debian's; 4.20: built from Debian's source with `CONFIG_STATIC_SHM`).
//! `.ci/run` installs both and sets `STATICBUS_XEN_TESTS=1`, which turns a missing piece into
//! a failure; without that variable these tests say what is missing and pass, so that
//! `cargo test` works on a machine without QEMU.
//!
//! The differential tests boot descriptions that `staticbus check` rejects
//! (`crates/cli/tests/xen/SBxxxx.toml`, one per code) with `--no-check`: Xen must fail the
//! way that code's documentation (`staticbus explain`) says: one of the messages quoted
//! there appears on the console, or, when the documentation says Xen prints nothing, the
//! console stays empty.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;
use common::xen;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One boot at a time: each one is a whole emulated machine on a 2-core host.
static BOOTS: Mutex<()> = Mutex::new(());

fn staticbus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run staticbus")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn boot(xen: &Path, desc: &str, out: &Path, extra: &[&str]) -> Output {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec![
        "boot",
        desc,
        "--xen",
        xen.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    staticbus(&args)
}

#[test]
fn ping_pong_passes_on_xen_4_17() {
    let Some(xen) = xen("4.17") else { return };
    let dir = tempfile::tempdir().unwrap();
    // A copy of the description outside the checkout: its `cargo = {…}` images are built
    // in the staticbus sources this binary was built from.
    let outside = tempfile::tempdir().unwrap();
    let desc = outside.path().join("system.toml");
    std::fs::copy(root().join("examples/xen-ping-pong/system.toml"), &desc).unwrap();
    let o = boot(
        &xen,
        desc.to_str().unwrap(),
        dir.path(),
        &["--timeout", "120"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for dom in ["ping", "pong"] {
        assert!(
            t.lines().any(|l| l.trim_start().starts_with(&format!(
                "{dom} | RESULT PASS ping-pong {dom}: 1000 round trips"
            ))),
            "no RESULT PASS from {dom}:\n{t}"
        );
    }
    assert!(
        t.contains("boot: PASS: all 2 domains printed RESULT PASS"),
        "{t}"
    );
    // The tree QEMU booted carries the static channel; the images are raw arm64 Images.
    let img = std::fs::read(dir.path().join("images/xen-ping-pong.bin")).unwrap();
    assert_eq!(&img[0x38..0x3c], b"ARM\x64");
    let dts = std::fs::read_to_string(dir.path().join("host.dts")).unwrap();
    assert!(dts.contains("xen,evtchn-v1"), "{dts}");

    // --workspace names where the images are built; a folder outside any workspace is
    // refused before anything boots.
    let o = boot(
        &xen,
        desc.to_str().unwrap(),
        dir.path(),
        &["--workspace", outside.path().to_str().unwrap()],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&format!(
            "--workspace {}: no Cargo.toml there or above",
            outside.path().display()
        )),
        "{t}"
    );
}

/// Boots `desc` on `version`, expects PASS and returns the output and the work directory.
fn boots(version: &str, desc: &str) -> Option<(String, tempfile::TempDir)> {
    let xen = xen(version)?;
    let dir = tempfile::tempdir().unwrap();
    let o = boot(&xen, desc, dir.path(), &["--timeout", "120"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    Some((t, dir))
}

/// The boot-path smoke test: one domU prints hello and powers off.
#[test]
fn hello_passes_on_xen_4_17() {
    let Some((t, _dir)) = boots("4.17", "examples/xen-hello/system.toml") else {
        return;
    };
    assert!(t.contains("RESULT PASS hello"), "{t}");
}

#[test]
fn ping_pong_over_a_channel_passes_on_xen_4_20() {
    let Some((t, _dir)) = boots("4.20", "examples/xen-ping-pong-420/system.toml") else {
        return;
    };
    assert!(
        t.contains("ping | RESULT PASS ping-pong ping: 1000 round trips"),
        "{t}"
    );
    assert!(
        t.contains("pong | RESULT PASS ping-pong pong: 1000 round trips"),
        "{t}"
    );
}

/// 10,000 checksummed messages over static shared memory and static event channels, the
/// consumer checking every one and the producer comparing the digests.
fn queue_check_on_xen_4_20(desc: &str, owned: bool) {
    let Some((t, dir)) = boots("4.20", desc) else {
        return;
    };
    assert!(
        t.contains(
            "consumer | RESULT PASS queue-check consumer: 10000 messages in order and intact"
        ),
        "{t}"
    );
    assert!(
        t.contains("producer | RESULT PASS queue-check producer: 10000 messages verified"),
        "{t}"
    );
    // The ownership form is the one asked for.
    let dts = std::fs::read_to_string(dir.path().join("host.dts")).unwrap();
    assert_eq!(dts.contains("role = \"owner\""), owned, "{dts}");
    assert_eq!(dts.contains("role = \"borrower\""), owned, "{dts}");
    assert!(dts.contains("xen,shm-id = \"stream\""), "{dts}");
}

#[test]
fn queue_over_owner_and_borrower_regions_passes_on_xen_4_20() {
    queue_check_on_xen_4_20("examples/xen-queue/system.toml", true);
}

#[test]
fn queue_over_domid_io_regions_passes_on_xen_4_20() {
    queue_check_on_xen_4_20("examples/xen-queue-io/system.toml", false);
}

/// virtio-blk between two bare-metal domUs over a `[[virtio]]` device: virtio-drivers'
/// VirtIOBlk against staticbus's RAM-disk device side, 2,000 checksummed random 4 KiB
/// requests and a final pass over all 256 blocks, every read verified, both sides' disk
/// digests equal; the device is in both domains' manifests with its role.
#[test]
fn virtio_blk_between_bare_metal_domus_passes_on_xen_4_20() {
    let Some((t, dir)) = boots("4.20", "examples/xen-virtio-blk/system.toml") else {
        return;
    };
    let f = after(&t, "frontend | RESULT PASS virtio-blk frontend: ");
    let b = after(&t, "backend | RESULT PASS virtio-blk backend: ");
    // "2000 requests (W writes, R reads) + 256 verified, disk digest 0x…"
    let nf = numbers(f);
    assert_eq!((nf[0], nf[1] + nf[2], nf[3]), (2000, 2000, 256), "{f}");
    assert!(nf[1] > 0 && nf[2] > 0, "{f}");
    // "N requests (reads, writes, flushes), …": the backend served exactly those.
    let nb = numbers(b);
    assert_eq!((nb[1], nb[2], nb[3]), (nf[2] + 256, nf[1], 1), "{b}");
    assert_eq!(nb[0], nb[1] + nb[2] + nb[3], "{b}");
    let digest = |s: &str| {
        s.split("disk digest ")
            .nth(1)
            .map(str::trim)
            .map(String::from)
    };
    assert!(digest(f).is_some_and(|d| d.starts_with("0x")), "{f}");
    assert_eq!(digest(f), digest(b), "{t}");
    assert!(t.contains("this domain its frontend"), "{t}");
    assert!(t.contains("this domain its backend"), "{t}");
    // The compiler wrote the device into both manifests, each with its own side.
    for (dom, role) in [("frontend", "frontend"), ("backend", "backend")] {
        let path = dir.path().join(format!("domains/{dom}/manifest.json"));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let v = &m["virtio"][0];
        assert_eq!(
            (v["name"].as_str(), v["role"].as_str()),
            (Some("disk"), Some(role)),
            "{m}"
        );
        assert_eq!(v["device"], "blk", "{m}");
        assert_eq!(v["serve"], "builtin", "{m}");
    }
}

/// The same pair with the backend's device side crashing and attaching again in place
/// twice mid-stream (examples/xen-virtio-blk-restart: after 500 requests served each time,
/// the disk kept): each restart is a new epoch in the region, the frontend re-initialises
/// its driver during the workload and issues the lost request again, every read verifies
/// and both sides' disk digests agree — nothing the frontend was told was written is lost.
#[test]
fn virtio_blk_recovers_from_backend_restarts_on_xen_4_20() {
    let Some((t, _dir)) = boots("4.20", "examples/xen-virtio-blk-restart/system.toml") else {
        return;
    };
    let f = after(&t, "frontend | RESULT PASS virtio-blk frontend: ");
    let b = after(&t, "backend | RESULT PASS virtio-blk backend: ");
    let nf = numbers(f);
    assert_eq!((nf[0], nf[1] + nf[2], nf[3]), (2000, 2000, 256), "{f}");
    // Each life crashes on the first doorbell after its 500th request (a request the
    // frontend submitted while it was still polling may be served first).
    for k in [1u64, 2] {
        let key = format!("backend | virtio-blk backend: restart {k}: epoch {k} crashed after ");
        let served = numbers(after(&t, &key))[0];
        assert!((500 * k..500 * k + 10).contains(&served), "{t}");
    }
    assert!(
        t.contains("backend | virtio-blk backend: 2 restarts, device epoch 3"),
        "{t}"
    );
    // One recovery per restart, both in the workload, and the final epoch is the third.
    let recoveries: Vec<&str> = t
        .lines()
        .filter_map(|l| {
            l.split_once("frontend | virtio-blk frontend: request ")
                .map(|x| x.1)
        })
        .filter(|l| l.contains(": device restarted (epoch "))
        .collect();
    assert_eq!(recoveries.len(), 2, "{t}");
    assert!(recoveries[0].contains("(epoch 2, disk kept)"), "{t}");
    assert!(recoveries[1].contains("(epoch 3, disk kept)"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.contains("frontend | virtio-blk frontend: ")
                && l.contains(" resets, device epoch 3 (disk kept on restart)")),
        "{t}"
    );
    // The backend served every request; one served just before a crash and issued again
    // counts twice.
    let nb = numbers(b);
    let asked = nf[0] + nf[3] + 1;
    assert!(nb[0] >= asked && nb[0] <= asked + 2, "{f}\n{b}");
    let digest = |s: &str| {
        s.split("disk digest ")
            .nth(1)
            .map(str::trim)
            .map(String::from)
    };
    assert!(digest(f).is_some_and(|d| d.starts_with("0x")), "{f}");
    assert_eq!(digest(f), digest(b), "{t}");
}

/// The decimal numbers in `s`, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// The rest of the first line of `t` that contains `key`.
fn after<'a>(t: &'a str, key: &str) -> &'a str {
    t.lines()
        .find_map(|l| l.split_once(key).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no line with `{key}`:\n{t}"))
}

/// The log check over static shared memory and static event channels: 10,000 records over
/// a ring of 256 slots, the paced phase losing nothing, the bursts exactly what they
/// overwrite, the free run's losses agreed on by both sides.
#[test]
fn log_check_passes_on_xen_4_20() {
    let Some((t, dir)) = boots("4.20", "examples/xen-log/system.toml") else {
        return;
    };
    for l in [
        "writer | writer: 10000 records: 2500 paced, 5000 in 13 bursts (2056 to be lapped), \
         2500 free-running",
        "reader | reader: paced: 2500 received, 0 lost, in ",
        "reader | reader: bursts: 2944 received, 2056 lost, exactly as overwritten in each of \
         13 bursts",
        "boot: PASS: all 2 domains printed RESULT PASS",
    ] {
        assert!(t.contains(l), "missing `{l}`:\n{t}");
    }
    let free = numbers(after(&t, "reader | reader: free run: "));
    let (free_received, free_lost) = (free[0], free[1]);
    assert_eq!(free_received + free_lost, 2500, "{t}");
    let total = numbers(after(
        &t,
        "reader | RESULT PASS log-check reader: 10000 records = ",
    ));
    assert_eq!(total[..2], [2500 + 2944 + free_received, 2056 + free_lost]);
    let w = numbers(after(
        &t,
        "writer | RESULT PASS log-check writer: 10000 records; lost 0 paced, 2056 in bursts \
         (exact), ",
    ));
    assert_eq!(w[0], free_lost, "{t}");
    let dts = std::fs::read_to_string(dir.path().join("host.dts")).unwrap();
    assert!(dts.contains("xen,shm-id = \"log\""), "{dts}");
}

/// Debian's U-Boot for QEMU's arm64 virt board (package u-boot-qemu).
const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

#[test]
fn ping_pong_boots_through_u_boot_and_the_generated_script() {
    let Some(xen) = xen("4.17") else { return };
    if !Path::new(UBOOT).is_file() {
        common::skip::<()>(&format!("{UBOOT} (u-boot-qemu)"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot(
        &xen,
        "examples/xen-ping-pong/system.toml",
        dir.path(),
        &["--timeout", "120", "--uboot", UBOOT, "--verbose"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    // U-Boot ran our script, which fetched every file over TFTP before starting Xen.
    for l in [
        "## Executing script at",
        "staticbus: Xen <- xen",
        "staticbus: host device tree <- host.dtb",
        "staticbus: ping kernel <- xen-ping-pong.bin",
        "staticbus: pong kernel <- xen-ping-pong.bin",
        "staticbus: starting Xen",
    ] {
        assert!(t.contains(l), "missing `{l}`:\n{t}");
    }
    assert!(
        t.contains("boot: PASS: all 2 domains printed RESULT PASS"),
        "{t}"
    );
}

/// The quoted messages of a code's documentation (`…` stands for anything).
fn documented(code: &str) -> (Vec<String>, bool) {
    let o = staticbus(&["explain", code]);
    assert!(o.status.success());
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let does = t
        .lines()
        .find_map(|l| l.strip_prefix("What Xen does: "))
        .unwrap_or_else(|| panic!("`staticbus explain {code}` names no Xen behaviour:\n{t}"))
        .to_string();
    let quoted = does
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    (quoted, does.contains("prints nothing"))
}

/// True if `line` contains the pieces of `pattern` between its `…`s, in order.
fn matches(line: &str, pattern: &str) -> bool {
    let mut rest = line;
    for piece in pattern.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn matches_documented_patterns() {
    assert!(matches(
        "(XEN) module foo command line too long",
        "module … command line too long"
    ));
    assert!(!matches(
        "(XEN) command line too long module",
        "module … command line too long"
    ));
    assert!(matches(
        "(XEN) evtchn_alloc_unbound() failure (Error -16) ",
        "evtchn_alloc_unbound() failure (Error -16)"
    ));
}

fn differential(version: &str, timeout: &str) {
    let Some(xen) = xen(version) else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("crates/cli/tests/xen"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    let mut booted = 0;
    for case in cases {
        let body = std::fs::read_to_string(&case).unwrap();
        if !body.contains(&format!("xen = \"{version}\"")) {
            continue;
        }
        let code = case.file_stem().unwrap().to_str().unwrap().to_string();
        let desc = case.to_str().unwrap();
        // 1. The validator rejects it, with this code.
        let c = staticbus(&["check", desc]);
        assert_eq!(
            c.status.code(),
            Some(1),
            "{code}: check accepted it:\n{}",
            text(&c)
        );
        assert!(
            text(&c).contains(&format!("error[{code}]")),
            "{code}: check did not report {code}:\n{}",
            text(&c)
        );
        // 2. Built anyway and booted, Xen fails as documented.
        let dir = tempfile::tempdir().unwrap();
        let o = boot(
            &xen,
            desc,
            dir.path(),
            &["--no-check", "--timeout", timeout],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{code}: boot did not fail:\n{t}");
        assert!(!t.contains("| RESULT PASS"), "{code}: a guest passed:\n{t}");
        let console = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
        let (quoted, silent) = documented(&code);
        if silent {
            assert!(
                console.is_empty() && t.contains("boot: FAIL: timeout"),
                "{code}: documented as silent, but Xen printed:\n{console}"
            );
        } else {
            assert!(
                quoted
                    .iter()
                    .any(|q| console.lines().any(|l| matches(l, q))),
                "{code}: none of the documented messages {quoted:?} on the console:\n{console}"
            );
        }
        eprintln!("{code}: rejected by check; on Xen {version}: as documented");
        booted += 1;
    }
    assert!(booted > 0, "no differential case for Xen {version}");
}

#[test]
fn rejected_descriptions_fail_on_xen_4_17_as_documented() {
    differential("4.17", "20");
}

#[test]
fn rejected_descriptions_fail_on_xen_4_20_as_documented() {
    differential("4.20", "20");
}

/// Checks that every domain of a `wait=irq` boot said it blocks on the upcall interrupt
/// of a `gic` (`GICv2`/`GICv3`) and took some: the `wait: irq (…)` line at start and the
/// counts line the runtime prints before the RESULT line.
fn assert_waited_on_the_upcall_irq(t: &str, doms: &[&str], gic: &str) {
    for dom in doms {
        assert!(
            t.lines()
                .any(|l| l.trim_start() == format!("{dom} | wait: irq ({gic}, PPI 31)")),
            "{dom} did not report wait=irq on {gic}:\n{t}"
        );
        let counts = t
            .lines()
            .find_map(|l| {
                l.trim_start()
                    .strip_prefix(&format!("{dom} | wait: irq: "))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("{dom} printed no IRQ counts:\n{t}"));
        let upcalls: u64 = counts
            .split_once(" upcall IRQs, ")
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{dom}: unexpected counts line `{counts}`"));
        assert!(upcalls > 0, "{dom} took no upcall interrupt: {counts}");
        assert!(counts.contains(", 0 other,"), "{dom}: {counts}");
    }
}

fn ping_pong_on_the_upcall_irq(desc: &str, gic: &str) -> Option<tempfile::TempDir> {
    let (t, dir) = boots("4.17", desc)?;
    for dom in ["ping", "pong"] {
        assert!(
            t.contains(&format!(
                "{dom} | RESULT PASS ping-pong {dom}: 1000 round trips"
            )),
            "no RESULT PASS from {dom}:\n{t}"
        );
    }
    assert_waited_on_the_upcall_irq(&t, &["ping", "pong"], gic);
    Some(dir)
}

#[test]
fn ping_pong_blocks_on_the_upcall_irq_with_gicv3_on_xen_4_17() {
    ping_pong_on_the_upcall_irq("examples/xen-ping-pong-irq/system.toml", "GICv3");
}

#[test]
fn ping_pong_blocks_on_the_upcall_irq_with_gicv2_on_xen_4_17() {
    let Some(dir) =
        ping_pong_on_the_upcall_irq("examples/xen-ping-pong-gicv2/system.toml", "GICv2")
    else {
        return;
    };
    // QEMU really was a GICv2 machine.
    let dts = std::fs::read_to_string(dir.path().join("host.dts")).unwrap();
    assert!(dts.contains("\"arm,cortex-a15-gic\""), "{dts}");
    assert!(!dts.contains("\"arm,gic-v3\""), "{dts}");
}

#[test]
fn queue_blocks_on_the_upcall_irq_on_xen_4_20() {
    let Some((t, _dir)) = boots("4.20", "examples/xen-queue-irq/system.toml") else {
        return;
    };
    assert!(
        t.contains(
            "consumer | RESULT PASS queue-check consumer: 10000 messages in order and intact"
        ),
        "{t}"
    );
    assert!(
        t.contains("producer | RESULT PASS queue-check producer: 10000 messages verified"),
        "{t}"
    );
    assert_waited_on_the_upcall_irq(&t, &["producer", "consumer"], "GICv3");
}

/// examples/xen-c-api: a C domU (examples/c-api/peer.c, built freestanding with Debian's
/// aarch64-linux-gnu-gcc against crates/capi's static library for aarch64-unknown-none, by
/// the example's Makefile) and a Rust domU (`xen-c-peer`) pass checked data over a queue
/// each way, a log, a latest value and a blob on Xen 4.20.
#[test]
fn a_c_domu_talks_to_a_rust_domu_over_every_protocol_on_xen_4_20() {
    let Some(xen) = xen("4.20") else { return };
    let cc = Command::new("aarch64-linux-gnu-gcc")
        .arg("--version")
        .output();
    if !cc.is_ok_and(|o| o.status.success()) {
        return common::skip("aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)")
            .unwrap_or(());
    }
    let example = "examples/xen-c-api/";
    let make = Command::new("make")
        .arg("-C")
        .arg(root().join(example))
        .arg(format!("STATICBUS={}", env!("CARGO_BIN_EXE_staticbus")))
        .output()
        .expect("run make");
    assert!(
        make.status.success(),
        "make -C {example} failed:\n{}",
        text(&make)
    );
    let img = std::fs::read(root().join(example).join("build/c-domu.bin")).unwrap();
    assert_eq!(&img[0x38..0x3c], b"ARM\x64", "the C domU is an arm64 Image");
    let dir = tempfile::tempdir().unwrap();
    let o = boot(
        &xen,
        &format!("{example}system.toml"),
        dir.path(),
        &["--timeout", "300"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("c | c: all five channels open"), "{t}");
    assert!(
        t.contains(
            "c | RESULT PASS c: 200 requests checked and answered, 200 setpoints intact up to 200"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "rust | RESULT PASS c-peer: 200 rounds with the C domain over queue, log, latest and blob checked"
        ),
        "{t}"
    );
    assert!(
        t.contains("boot: PASS: all 2 domains printed RESULT PASS"),
        "{t}"
    );
}
