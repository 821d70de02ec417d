//! Virtio between emulator domains, end to end with real parts (issue 14's emulator tests
//! 1 and 2): `staticbus run` of examples/virtio-blk and examples/virtio-blk-restart —
//! virtio-drivers' `VirtIOBlk` in the frontend domain over virtio-msg on a static region
//! and event channel, the vhost-user bridge and qemu-storage-daemon in the backend domain
//! on a file — and afterwards the file itself against what the frontend's seeded workload
//! wrote. Skipped with a message when qemu-storage-daemon is missing, unless
//! `STATICBUS_REQUIRE_VHOST_DAEMONS=1` (CI) makes that a failure.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

use staticbus_emu_virtio_domains::{digest, expected_disk, Rng, BLOCK};

/// What examples/virtio-blk*/system.toml give the frontend and the backend.
const SEED: u64 = 0x5eed;
const OPS: u64 = 20_000;
const DISK: &str = "virtio-blk.raw";
const BLOCKS: usize = 512;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// qemu-storage-daemon, or `None` after saying why the test is skipped.
fn qemu_storage_daemon() -> Option<PathBuf> {
    let found = std::env::var_os("STATICBUS_QEMU_STORAGE_DAEMON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("qemu-storage-daemon"))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        let msg = "qemu-storage-daemon not found (STATICBUS_QEMU_STORAGE_DAEMON unset, not on \
                   PATH); install Debian's qemu-system-common";
        assert!(
            std::env::var_os("STATICBUS_REQUIRE_VHOST_DAEMONS").is_none_or(|v| v != "1"),
            "STATICBUS_REQUIRE_VHOST_DAEMONS=1: {msg}"
        );
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// The domain programs and the sandbox launcher, next to `staticbus`.
fn build_programs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_staticbus")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "staticbus-emu-virtio-domains",
            "-p",
            "staticbus-emu-runner",
            "--bins",
        ]);
        if bin_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.current_dir(root()).status().expect("cargo build");
        assert!(st.success(), "building the domain programs failed");
    });
}

/// The value of `key=` in the line of domain `dom` that starts with `PASS`.
fn pass_field<'a>(out: &'a str, dom: &str, key: &str) -> &'a str {
    let prefix = format!("[{dom}] PASS ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no PASS line from {dom}:\n{out}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in `{line}`"))
}

/// Runs `example` in a fresh folder holding a disk of seeded random contents, showing
/// `on_line` every line of its output (with the folder) as it comes; checks both domains
/// passed, the frontend's report, and the file against the workload. Returns the output.
fn run_example(
    example: &str,
    extra: &[&str],
    mut on_line: impl FnMut(&str, &Path),
) -> Option<String> {
    qemu_storage_daemon()?;
    build_programs();
    let dir = tempfile::tempdir().unwrap();
    // The domains run as uids of their own when the runner is root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut initial = vec![0u8; BLOCKS * BLOCK];
    Rng(0x1417).fill(&mut initial);
    let disk = dir.path().join(DISK);
    std::fs::write(&disk, &initial).unwrap();
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("run")
        .arg(root().join("examples").join(example).join("system.toml"))
        .args(["--timeout", "900"])
        .args(extra)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run staticbus");
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("staticbus run's output");
        on_line(&line, dir.path());
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    for dom in ["frontend", "backend"] {
        let l = err
            .lines()
            .find(|l| l.starts_with(&format!("{dom} ")))
            .unwrap_or_else(|| panic!("no summary line for {dom}:\n{err}"));
        assert!(l.ends_with("exited 0"), "{l}\n{out}\n{err}");
    }
    assert_eq!(
        pass_field(&out, "frontend", "ops"),
        OPS.to_string(),
        "{out}"
    );
    assert_eq!(pass_field(&out, "frontend", "blocks"), BLOCKS.to_string());
    let writes: u64 = pass_field(&out, "frontend", "writes").parse().unwrap();
    let reads: u64 = pass_field(&out, "frontend", "reads").parse().unwrap();
    assert_eq!(writes + reads, OPS);
    assert!(writes >= 5_000 && reads >= 5_000, "{out}");
    // The file itself, after the daemon has exited: exactly the workload's writes on the
    // initial contents, and what the frontend says it wrote.
    let expected = expected_disk(&initial, SEED, OPS);
    let file = std::fs::read(&disk).unwrap();
    assert_eq!(file.len(), expected.len());
    let differing = (0..BLOCKS)
        .filter(|b| file[b * BLOCK..(b + 1) * BLOCK] != expected[b * BLOCK..(b + 1) * BLOCK])
        .count();
    assert_eq!(
        differing, 0,
        "{differing} blocks of the file differ from the writes\n{out}"
    );
    assert_eq!(
        pass_field(&out, "frontend", "digest"),
        format!("{:#018x}", digest(&expected)),
        "the frontend's digest is not the disk's"
    );
    assert_ne!(expected, initial, "the workload wrote something");
    Some(out)
}

#[test]
fn virtio_blk_between_domains_writes_the_file() {
    let Some(out) = run_example("virtio-blk", &[], |_, _| {}) else {
        return;
    };
    assert_eq!(pass_field(&out, "frontend", "resets"), "0", "{out}");
    assert!(!out.contains("restarted"), "{out}");
}

#[test]
fn virtio_blk_backend_killed_mid_stream_loses_no_acknowledged_write() {
    let Some(out) = run_example("virtio-blk-restart", &["--restart-on-crash"], |_, _| {}) else {
        return;
    };
    assert_eq!(
        out.matches("[backend] (killed by signal 9; restarted, #1)")
            .count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("[backend] serving region `vblk` (epoch 2)"),
        "{out}"
    );
    let resets: u32 = pass_field(&out, "frontend", "resets").parse().unwrap();
    assert!(resets >= 1, "the frontend never saw NEEDS_RESET\n{out}");
    // The kill came mid-stream: the frontend had done some requests and not all.
    let at: u64 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("[frontend] reset 1 after ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no reset line\n{out}"));
    assert!(at > 0 && at < OPS + BLOCKS as u64, "{out}");
}

/// The host pids of the backend domain's program running in `dir` (its working folder,
/// which no other run shares).
fn backend_pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        // comm is cut at 15 bytes: "virtio-blk-back".
        if comm.trim_end() == "virtio-blk-back"
            && std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c == dir)
        {
            pids.push(pid);
        }
    }
    pids
}

/// The backend domain destroyed from outside at a moment it does not choose: when the
/// frontend reports 2,000 requests of the workload done, the test SIGKILLs the backend's whole process
/// group (the sandbox launcher, the program, the bridge's daemon), as `xl destroy` would;
/// the runner re-creates the domain (`--restart-on-crash`), and the run must end as the
/// undisturbed one does, file included.
#[test]
fn virtio_blk_backend_domain_destroyed_from_outside_mid_stream() {
    let mut killed = 0;
    let Some(out) = run_example("virtio-blk", &["--restart-on-crash"], |line, dir| {
        if line == "[frontend] progress 2000" {
            let dir = dir.canonicalize().unwrap();
            let pids = backend_pids(&dir);
            assert_eq!(
                pids.len(),
                1,
                "the backend's program in {}: {pids:?}",
                dir.display()
            );
            let pid = rustix::process::Pid::from_raw(pids[0] as i32).unwrap();
            let group = rustix::process::getpgid(Some(pid)).unwrap();
            rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
            killed += 1;
        }
    }) else {
        return;
    };
    assert_eq!(killed, 1, "{out}");
    assert_eq!(
        out.matches("[backend] (killed by signal 9; restarted, #1)")
            .count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("[backend] serving region `vblk` (epoch 2)"),
        "{out}"
    );
    let resets: u32 = pass_field(&out, "frontend", "resets").parse().unwrap();
    assert!(resets >= 1, "the frontend never saw NEEDS_RESET\n{out}");
    let at: u64 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("[frontend] reset 1 after ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no reset line\n{out}"));
    assert!(at >= 2000, "the reset came before the kill\n{out}");
}
