//! `staticbus boot` for `hypervisor = "qemu-ivshmem"` end to end: two bare-metal
//! `qemu-system-aarch64` VMs (TCG), no Xen, their channels in the shared object of QEMU's
//! ivshmem-doorbell device and staticbus serving the ivshmem protocol
//! (docs/adr/0005-ivshmem-platform.md).
//!
//! Needs `qemu-system-aarch64` (Debian's has the device). `.ci/run` sets
//! `STATICBUS_IVSHMEM_TESTS=1`, which turns a missing QEMU into a failure; without that
//! variable these tests say what is missing and pass.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One boot at a time: each is two emulated machines on a 2-core host.
static BOOTS: Mutex<()> = Mutex::new(());

/// True if the tests can run; false (after saying why) if QEMU is missing and the
/// tests are not required.
fn qemu_present() -> bool {
    let ok = Command::new("qemu-system-aarch64")
        .args(["-device", "help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ivshmem-doorbell"));
    if !ok {
        assert!(
            std::env::var_os("STATICBUS_IVSHMEM_TESTS").is_none(),
            "STATICBUS_IVSHMEM_TESTS is set but qemu-system-aarch64 with ivshmem-doorbell is missing"
        );
        eprintln!("skipped: no qemu-system-aarch64 with ivshmem-doorbell (apt-get install qemu-system-arm)");
    }
    ok
}

fn boot(desc: &str, out: &Path) -> Output {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args([
            "boot",
            desc,
            "-o",
            out.to_str().unwrap(),
            "--timeout",
            "600",
        ])
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

/// The line `dom | RESULT PASS <rest>` of `t`, if any.
fn result<'t>(t: &'t str, dom: &str) -> Option<&'t str> {
    t.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(&format!("{dom} | RESULT PASS ")))
}

#[test]
fn ping_pong_between_two_vms() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot("examples/ivshmem-ping-pong/system.toml", dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for dom in ["ping", "pong"] {
        let r = result(&t, dom).unwrap_or_else(|| panic!("no RESULT PASS from {dom}:\n{t}"));
        assert!(
            r.starts_with(&format!("ping-pong {dom}: 1000 round trips")),
            "{r}"
        );
        // The VM found the device and was given its domid as peer id.
        let id = if dom == "ping" { 1 } else { 2 };
        assert!(
            t.contains(&format!("{dom} | {dom} (domid {id}): ivshmem "))
                && t.contains(&format!("peer id {id}, BAR2 0x100000 bytes at 0x20000000")),
            "{t}"
        );
    }
    assert!(
        t.contains("boot: PASS: all 2 domains printed RESULT PASS"),
        "{t}"
    );
}

#[test]
fn ten_thousand_checksummed_messages_between_two_vms() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot("examples/ivshmem-queue/system.toml", dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let c = result(&t, "consumer").unwrap_or_else(|| panic!("no consumer PASS:\n{t}"));
    assert!(
        c.starts_with("queue-check consumer: 10000 messages in order and intact (digest 0x"),
        "{c}"
    );
    let p = result(&t, "producer").unwrap_or_else(|| panic!("no producer PASS:\n{t}"));
    assert!(
        p.starts_with("queue-check producer: 10000 messages verified (digest 0x"),
        "{p}"
    );
    // Both sides name the same digest.
    let digest = |s: &str| s.split("digest ").nth(1).map(|d| d[..18].to_string());
    assert_eq!(digest(c), digest(p), "{t}");
}

/// Issue 15's second test: the virtio-blk pair of examples/xen-virtio-blk, unchanged, over
/// ivshmem — virtio-drivers' VirtIOBlk against staticbus's RAM-disk device side, every read
/// verified, both sides' disk digests equal (and equal to the Xen run's: same seed).
#[test]
fn virtio_blk_between_two_vms() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot("examples/ivshmem-virtio-blk/system.toml", dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let f = result(&t, "frontend").unwrap_or_else(|| panic!("no frontend PASS:\n{t}"));
    let b = result(&t, "backend").unwrap_or_else(|| panic!("no backend PASS:\n{t}"));
    let numbers = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect()
    };
    assert!(f.starts_with("virtio-blk frontend: 2000 requests ("), "{f}");
    let nf = numbers(f);
    assert_eq!((nf[0], nf[1] + nf[2], nf[3]), (2000, 2000, 256), "{f}");
    let nb = numbers(b);
    assert_eq!((nb[1], nb[2], nb[3]), (nf[2] + 256, nf[1], 1), "{b}");
    let digest = |s: &str| s.split("disk digest ").nth(1).map(str::to_string);
    assert!(digest(f).is_some_and(|d| d.starts_with("0x")), "{f}");
    assert_eq!(digest(f), digest(b), "{t}");
    // The device is at the same window of the shared object in both VMs.
    assert!(
        t.contains("frontend | virtio-blk: region `virtio-disk` 0x40000 bytes at 0x20000000")
            && t.contains("backend | virtio-blk: region `virtio-disk` 0x40000 bytes at 0x20000000"),
        "{t}"
    );
}

/// The same pair with the backend VM's device side crashing and attaching again in place
/// twice mid-stream (examples/ivshmem-virtio-blk-restart: after 500 requests served each
/// time, its RAM disk re-created zeroed; `staticbus boot` cannot restart a VM here): the
/// frontend, told the disk is zeroed on restart, sees each new epoch, re-initialises,
/// issues the lost request again and expects zeros until it writes a block again; every
/// read verifies and both sides' digests agree.
#[test]
fn virtio_blk_recovers_from_backend_restarts_between_two_vms() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot(
        "examples/ivshmem-virtio-blk-restart/system.toml",
        dir.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let f = result(&t, "frontend").unwrap_or_else(|| panic!("no frontend PASS:\n{t}"));
    let b = result(&t, "backend").unwrap_or_else(|| panic!("no backend PASS:\n{t}"));
    assert!(f.starts_with("virtio-blk frontend: 2000 requests ("), "{f}");
    // Each life crashes on the first doorbell after its 500th request (a request the
    // frontend submitted while it was still polling may be served first).
    for k in [1u64, 2] {
        let key = format!("backend | virtio-blk backend: restart {k}: epoch {k} crashed after ");
        let line = t
            .lines()
            .find_map(|l| l.split_once(&key).map(|x| x.1))
            .unwrap_or_else(|| panic!("no restart {k}:\n{t}"));
        let served: u64 = line.split(' ').next().unwrap().parse().unwrap();
        assert!((500 * k..500 * k + 10).contains(&served), "{line}");
        assert!(
            line.ends_with(" requests served, attaching again (disk zeroed)"),
            "{line}"
        );
    }
    assert!(
        t.contains("backend | virtio-blk backend: 2 restarts, device epoch 3"),
        "{t}"
    );
    let recoveries = t
        .lines()
        .filter(|l| {
            l.contains("frontend | virtio-blk frontend: request ")
                && l.contains(": device restarted (epoch ")
                && l.contains(", disk zeroed)")
        })
        .count();
    assert_eq!(recoveries, 2, "{t}");
    assert!(
        t.contains(", device epoch 3 (disk zeroed on restart)"),
        "{t}"
    );
    let digest = |s: &str| s.split("disk digest ").nth(1).map(str::to_string);
    assert!(digest(f).is_some_and(|d| d.starts_with("0x")), "{f}");
    assert_eq!(digest(f), digest(b), "{t}");
}

#[test]
fn the_log_check_accounts_for_every_record_between_two_vms() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot("examples/ivshmem-log/system.toml", dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let r = result(&t, "reader").unwrap_or_else(|| panic!("no reader PASS:\n{t}"));
    assert!(r.starts_with("log-check reader: 10000 records = "), "{r}");
    assert!(r.ends_with("lost, all losses reported"), "{r}");
    let w = result(&t, "writer").unwrap_or_else(|| panic!("no writer PASS:\n{t}"));
    assert!(
        w.starts_with("log-check writer: 10000 records; lost 0 paced"),
        "{w}"
    );
}

#[test]
fn doorbells_coalesce_and_never_lose_a_wake_up() {
    if !qemu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = boot("examples/ivshmem-events/system.toml", dir.path());
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let s = result(&t, "sleeper").unwrap_or_else(|| panic!("no sleeper PASS:\n{t}"));
    // "events-check sleeper: burst 1000 -> N events, 2000 wake-ups, none lost"
    let got: u64 = s
        .split("-> ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {s:?}"));
    assert!(got >= 1, "the burst was lost: {s}");
    assert!(
        got < 1000,
        "1000 rings while the sleeper did not look were not coalesced: {s}"
    );
    assert!(s.ends_with("2000 wake-ups, none lost"), "{s}");
    // The sleeper did sleep (WFI) in the wake-up rounds, so the window was exercised.
    let sleeps: u64 = t
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("sleeper | ivshmem: rung "))
        .and_then(|l| l.split("sleeps ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no doorbell counts from the sleeper:\n{t}"));
    assert!(sleeps >= 100, "the sleeper slept only {sleeps} times:\n{t}");
    assert!(result(&t, "ringer").is_some(), "{t}");
}

#[test]
fn a_vm_that_exits_mid_stream_does_not_hang_its_peer() {
    if !qemu_present() {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args([
            "boot",
            "crates/cli/tests/ivshmem/queue-endless.toml",
            "-o",
            dir.path().to_str().unwrap(),
            "--timeout",
            "600",
        ])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run staticbus");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    // Wait until the stream runs (the consumer has started waiting for messages).
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let l = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the stream never started:\n{seen}"));
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("consumer: expecting 100000000 messages") {
            break;
        }
    }
    // Let it stream, then end the producer's VM: its QEMU process, by the pid it wrote.
    std::thread::sleep(Duration::from_secs(2));
    let pid: i32 = std::fs::read_to_string(dir.path().join("qemu-producer.pid"))
        .expect("QEMU's pid file")
        .trim()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)
        .expect("kill the producer's QEMU");
    for l in rx.iter() {
        seen.push_str(&l);
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let t = format!("{seen}{err}");
    assert_eq!(status.code(), Some(1), "{t}");
    let fail = t
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix("consumer | RESULT FAIL "))
        .unwrap_or_else(|| panic!("the consumer did not report the producer leaving:\n{t}"));
    assert!(fail.contains("ESRCH"), "{fail}");
    assert!(
        t.contains("producer: its VM ended without a RESULT line"),
        "{t}"
    );
    assert!(!t.contains("boot: FAIL: timeout"), "{t}");
}
