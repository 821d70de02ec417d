//! Virtio between emulator domains, end to end with real parts (issue 14's emulator tests
//! 1 and 2): `staticbus run` of examples/virtio-blk and examples/virtio-blk-restart —
//! virtio-drivers' `VirtIOBlk` in the frontend domain over virtio-msg on a static region
//! and event channel, the vhost-user bridge and qemu-storage-daemon in the backend domain
//! on a file — and afterwards the file itself against what the frontend's seeded workload
//! wrote. Skipped with a message when qemu-storage-daemon is missing, unless
//! `STATICBUS_REQUIRE_VHOST_DAEMONS=1` (CI) makes that a failure.

mod emu_virtio;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use emu_virtio::{build_programs, daemon, run_dir};
use staticbus_emu_virtio_domains::{digest, expected_disk, Rng, BLOCK};

/// What examples/virtio-blk*/system.toml give the frontend and the backend.
const SEED: u64 = 0x5eed;
const OPS: u64 = 20_000;
const DISK: &str = "virtio-blk.raw";
const BLOCKS: usize = 512;

/// The value of `key=` in the line of domain `dom` that starts with `PASS`.
fn pass_field<'a>(out: &'a str, dom: &str, key: &str) -> &'a str {
    emu_virtio::field(out, dom, "PASS ", key)
}

/// Runs `example` in a fresh folder holding a disk of seeded random contents, showing
/// `on_line` every line of its output (with the folder) as it comes; checks both domains
/// passed, the frontend's report, and the file against the workload. Returns the output.
fn run_example(
    example: &str,
    extra: &[&str],
    mut on_line: impl FnMut(&str, &Path),
) -> Option<String> {
    daemon(
        "qemu-storage-daemon",
        "STATICBUS_QEMU_STORAGE_DAEMON",
        "install Debian's qemu-system-common",
    )?;
    build_programs();
    let dir = run_dir();
    let mut initial = vec![0u8; BLOCKS * BLOCK];
    Rng(0x1417).fill(&mut initial);
    let disk = dir.path().join(DISK);
    std::fs::write(&disk, &initial).unwrap();
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = emu_virtio::run_example(
        example,
        extra,
        dir.path(),
        &[],
        &["frontend", "backend"],
        |l| on_line(l, dir.path()),
    );
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
        out.contains("[backend] serving virtio device `vblk` (blk, region `virtio-vblk`, epoch 2)"),
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
        // comm is cut at 15 bytes: "virtio-vhost-ba".
        if comm.trim_end() == "virtio-vhost-ba"
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
        out.contains("[backend] serving virtio device `vblk` (blk, region `virtio-vblk`, epoch 2)"),
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
