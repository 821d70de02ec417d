//! The virtio-blk benchmark through the emulator (examples/virtio-blk-bench,
//! scripts/bench/virtio-blk-emu.sh) with tiny counts on a 1 MiB file, so that it cannot
//! rot: `staticbus run` of the example with its frontend's counts and the file size cut
//! down; both domains pass, the frontend checked every byte of the file through the device
//! against `pread`, and it printed every figure. Nothing about time is asserted. Skipped
//! with a message when qemu-storage-daemon is missing, unless
//! `STATICBUS_REQUIRE_VHOST_DAEMONS=1` (CI) makes that a failure.

mod emu_virtio;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use emu_virtio::{build_programs, daemon, field, root, run_dir};
use staticbus_emu_virtio_domains::Rng;

const DISK: &str = "virtio-blk-bench.raw";
const BYTES: usize = 1 << 20;

#[test]
fn the_emulated_blk_benchmark_checks_the_file_and_prints_its_figures() {
    if daemon(
        "qemu-storage-daemon",
        "STATICBUS_QEMU_STORAGE_DAEMON",
        "install Debian's qemu-system-common",
    )
    .is_none()
    {
        return;
    }
    build_programs();
    let dir = run_dir();
    let example = root().join("examples/virtio-blk-bench/system.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let (big_args, small_args) = (
        r#""virtio-blk-bench.raw", "5", "20000", "8""#,
        r#""virtio-blk-bench.raw", "2", "40", "1""#,
    );
    let (big_file, small_file) = (
        "create=virtio-blk-bench.raw:67108864",
        format!("create=virtio-blk-bench.raw:{BYTES}"),
    );
    assert!(text.contains(big_args) && text.contains(big_file), "{text}");
    let tiny = text
        .replace(big_args, small_args)
        .replace(big_file, &small_file);
    let desc = dir.path().join("system.toml");
    std::fs::write(&desc, tiny).unwrap();
    let mut initial = vec![0u8; BYTES];
    Rng(0xb1e7).fill(&mut initial);
    let disk = dir.path().join(DISK);
    std::fs::write(&disk, &initial).unwrap();
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o666)).unwrap();

    let o = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("run")
        .arg(&desc)
        .args(["--timeout", "900"])
        .current_dir(dir.path())
        .output()
        .expect("run staticbus");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    for dom in ["frontend", "backend"] {
        let l = err
            .lines()
            .find(|l| l.starts_with(&format!("{dom} ")))
            .unwrap_or_else(|| panic!("no summary line for {dom}:\n{err}"));
        assert!(l.ends_with("exited 0"), "{l}\n{out}\n{err}");
    }
    let pass = |key| field(&out, "frontend", "PASS virtio-blk-bench", key);
    assert_eq!(pass("bytes"), BYTES.to_string(), "{out}");
    assert_eq!(pass("checked"), BYTES.to_string(), "{out}");
    // 2 rounds of 40 random reads and one pass of 16 64 KiB reads, at two depths.
    assert_eq!(pass("requests"), (2 * 2 * (40 + 16)).to_string(), "{out}");
    assert_eq!(
        pass("device-requests"),
        (2 * 2 * (40 + 16) + 16).to_string(),
        "{out}"
    );
    for load in ["rand4k", "seq64k"] {
        for path in ["pread", "blk-qd1", "blk-qd16"] {
            let rounds = out
                .lines()
                .filter(|l| l.starts_with("[frontend] round "))
                .filter(|l| l.contains(&format!(" {path} {load} ")))
                .count();
            assert_eq!(rounds, 2, "{path} {load}\n{out}");
            let f = emu_virtio::line(&out, "frontend", &format!("figure {load} {path}: "));
            for key in [
                "requests/s",
                "MiB/s",
                "ratio-to-pread=",
                "round-ratios=",
                "doorbells/request=",
            ] {
                assert!(f.contains(key), "{f}");
            }
        }
    }
    // Notification counts are printed as numbers (how many depends on suppression).
    let f = emu_virtio::line(&out, "frontend", "figure rand4k blk-qd1: ");
    for key in ["doorbells/request=", "wakeups/request="] {
        let v = f.split_whitespace().find_map(|w| w.strip_prefix(key));
        assert!(v.is_some_and(|v| v.parse::<f64>().is_ok()), "{key} in {f}");
    }
    let kicks = field(&out, "backend", "PASS virtio-vhost-backend", "kicks");
    assert!(kicks.parse::<u64>().is_ok_and(|k| k > 0), "{out}");
    // The bench only reads: the file is unchanged.
    assert_eq!(std::fs::read(&disk).unwrap(), initial);
}
