//! The block path through the bridge against `pread` of the same file, in the same run:
//! 4 KiB random-read IOPS and 64 KiB sequential-read throughput, one request at a time and
//! with up to 16 in flight (`VirtIOBlk` → bridge → qemu-storage-daemon's vhost-user-blk
//! export → the file).
//!
//! `cargo bench -p staticbus-vhost-bridge --bench blk` prints a Markdown table for
//! BENCHMARKS.md. `STATICBUS_QEMU_STORAGE_DAEMON` names the daemon if it is not on PATH.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use staticbus_vhost_bridge::driver::{arena, Blk};
use staticbus_vhost_bridge::{Bridge, Daemon, Options};

const FILE_SIZE: u64 = 64 << 20;
const RANDOM_READS: usize = 20_000;
const SEQ_PASSES: usize = 4;
const ROUNDS: usize = 3;

/// splitmix64, seeded: the same offsets for both paths.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn qsd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATICBUS_QEMU_STORAGE_DAEMON") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("qemu-storage-daemon"))
            .find(|p| p.is_file())
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let Some(qsd) = qsd() else {
        eprintln!("SKIPPED: qemu-storage-daemon not found (Debian's qemu-system-common)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    let mut rng = Rng(0xbe4c);
    let mut data = vec![0u8; FILE_SIZE as usize];
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    std::fs::write(&image, &data).unwrap();
    drop(data);
    let file = std::fs::File::open(&image).unwrap();

    let mut cmd = std::process::Command::new(&qsd);
    cmd.arg("--blockdev")
        .arg(format!("driver=file,node-name=disk,filename={}", image.display()))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=export0,node-name=disk,addr.type=unix,addr.path={},writable=on,num-queues=1",
            socket.display()
        ));
    let _daemon = Daemon::spawn(cmd, &socket, Duration::from_secs(30)).unwrap();
    let bridge = Arc::new(
        Bridge::connect(&socket, Arc::clone(arena().region()), Options::new(2, 1)).unwrap(),
    );
    let mut blk = Blk::new(Arc::clone(&bridge), Duration::from_secs(30)).unwrap();

    let blocks = FILE_SIZE / 4096;
    let offsets: Vec<u64> = (0..RANDOM_READS)
        .map(|_| (rng.next() % blocks) * 4096)
        .collect();
    let mut small = vec![0u8; 4096];
    let mut big = vec![0u8; 64 << 10];
    let mut check = vec![0u8; 64 << 10];
    let mut smalls = vec![vec![0u8; 4096]; 64];
    let mut bigs = vec![vec![0u8; 64 << 10]; 16];

    // Warm the page cache (both paths read the same cached file) and check both paths agree.
    for off in (0..FILE_SIZE).step_by(64 << 10) {
        file.read_exact_at(&mut check, off).unwrap();
        blk.read(off, &mut big).unwrap();
        assert!(big == check, "the bridge read differs from pread at {off}");
    }

    // Interrupt mode (sleep on the call eventfd) and polling mode (watch the used ring for
    // up to 200 µs first), each against pread in the same round.
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (mode, spin, depth) in [
        ("sleeps on the call eventfd", 0, 1),
        ("polls the used ring", 200, 1),
        (
            "sleeps on the call eventfd, up to 16 requests in flight",
            0,
            16,
        ),
    ] {
        blk.set_spin(Duration::from_micros(spin));
        let (mut iops_bridge, mut iops_pread, mut seq_bridge, mut seq_pread) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let before = bridge.stats();
        let mut requests = 0u64;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            if depth == 1 {
                for &off in &offsets {
                    blk.read(off, &mut small).unwrap();
                }
            } else {
                for chunk in offsets.chunks(64) {
                    let mut batch: Vec<(u64, &mut [u8])> = chunk
                        .iter()
                        .zip(smalls.iter_mut())
                        .map(|(&o, b)| (o, b.as_mut_slice()))
                        .collect();
                    blk.read_many(&mut batch).unwrap();
                }
            }
            iops_bridge.push(RANDOM_READS as f64 / t.elapsed().as_secs_f64());

            let t = Instant::now();
            for &off in &offsets {
                file.read_exact_at(&mut small, off).unwrap();
            }
            iops_pread.push(RANDOM_READS as f64 / t.elapsed().as_secs_f64());

            let mib = (SEQ_PASSES as u64 * FILE_SIZE) as f64 / (1 << 20) as f64;
            let t = Instant::now();
            for _ in 0..SEQ_PASSES {
                if depth == 1 {
                    for off in (0..FILE_SIZE).step_by(64 << 10) {
                        blk.read(off, &mut big).unwrap();
                    }
                } else {
                    let offs: Vec<u64> = (0..FILE_SIZE).step_by(64 << 10).collect();
                    for chunk in offs.chunks(16) {
                        let mut batch: Vec<(u64, &mut [u8])> = chunk
                            .iter()
                            .zip(bigs.iter_mut())
                            .map(|(&o, b)| (o, b.as_mut_slice()))
                            .collect();
                        blk.read_many(&mut batch).unwrap();
                    }
                }
            }
            seq_bridge.push(mib / t.elapsed().as_secs_f64());

            let t = Instant::now();
            for _ in 0..SEQ_PASSES {
                for off in (0..FILE_SIZE).step_by(64 << 10) {
                    file.read_exact_at(&mut big, off).unwrap();
                }
            }
            seq_pread.push(mib / t.elapsed().as_secs_f64());
            requests += RANDOM_READS as u64 + SEQ_PASSES as u64 * FILE_SIZE / (64 << 10);
        }
        let after = bridge.stats();
        let per = |a: u64, b: u64| (a - b) as f64 / requests as f64;
        notes.push(format!(
            "driver {mode}: per request {:.3} kicks, {:.3} call signals read by Bridge::wait, {:.3} wake-ups on a call ({requests} requests)",
            per(after.kicks, before.kicks),
            per(after.calls, before.calls),
            per(after.call_wakeups, before.call_wakeups),
        ));
        rows.push((
            mode,
            median(iops_bridge),
            median(iops_pread),
            median(seq_bridge),
            median(seq_pread),
        ));
    }
    assert_eq!(bridge.failure(), None);

    println!("median of {ROUNDS} rounds; 64 MiB file in the page cache; pread one at a time");
    println!();
    println!("| path | 4 KiB random read | 64 KiB sequential read |");
    println!("|---|---|---|");
    for (mode, ib, ip, sb, sp) in rows {
        println!("| VirtIOBlk → bridge → qemu-storage-daemon, driver {mode} | {ib:.0} IOPS | {sb:.0} MiB/s |");
        println!("| pread of the same file (same rounds) | {ip:.0} IOPS | {sp:.0} MiB/s |");
        println!("| bridge / pread | {:.3} | {:.3} |", ib / ip, sb / sp);
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}
