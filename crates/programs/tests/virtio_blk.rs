//! `virtio_blk` run in-process: the frontend and the backend as two threads over the fake
//! event bus (`staticbus_guest::fake`) and one shared region, from manifests that carry a
//! `[[virtio]]` device as the compiler writes it. Both pass, the counts add up and the
//! backend's disk digest is the one the frontend expects; a name that is no virtio device
//! fails with a message listing the domain's devices.

use staticbus_guest::fake::{two_domains, Backing, Bus, BusPlatform};
use staticbus_guest::manifest::{Manifest, Protocol, Virtio, VirtioRole, VirtioServe};
use staticbus_programs::{virtio_blk, Args, Clock};
use std::sync::OnceLock;
use std::thread;
use std::time::Instant;

const SIZE: usize = 0x2_0000;
const DISK: usize = 64 * 4096;
const COUNT: u64 = if cfg!(miri) { 20 } else { 1000 };

struct Wall(Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// `a` drives device `disk`, `b` serves it, over the region and ports of the fake pair's
/// channel `vblk`.
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| {
        let [a, b] = two_domains(&[("vblk", Protocol::Queue, SIZE as u64)]);
        let with = |m: &'static Manifest, other: &'static Manifest, role| -> &'static Manifest {
            let ch = m.channel("vblk").unwrap();
            let peer = ch.sole_peer().unwrap();
            let dev = Virtio {
                name: "disk",
                device: "blk",
                device_id: 2,
                role,
                queues: 1,
                queue_size: 16,
                shm_id: ch.shm_id,
                guest_addr: ch.guest_addr,
                size: ch.size,
                peer: other.domain,
                peer_domid: other.domid,
                local_port: peer.local_port,
                remote_port: peer.remote_port,
                serve: VirtioServe::Builtin,
            };
            Box::leak(Box::new(Manifest {
                channels: &[],
                virtio: Box::leak(Box::new([dev])),
                ..*m
            }))
        };
        [
            with(a, b, VirtioRole::Frontend),
            with(b, a, VirtioRole::Backend),
        ]
    })
}

/// One pair at a time: the frontend's DMA pool is a static of the program (one device per
/// domain), so two frontends in one process would share it.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn side(p: &BusPlatform<'_>, args: &str, disk: &mut [u8]) -> (bool, String) {
    let mut out = String::new();
    let passed = virtio_blk::run(p, &Wall(Instant::now()), &Args::new(args), &mut out, disk);
    (passed, out)
}

fn number_after(text: &str, key: &str) -> u64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no `{key}` in {text}"))
        + key.len();
    let s = text[at..].trim_start();
    let end = s
        .find(|c: char| !c.is_ascii_hexdigit() && c != 'x')
        .unwrap_or(s.len());
    let s = &s[..end];
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

#[test]
fn frontend_and_backend_agree_on_every_block() {
    let _one = one();
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let mem_r = &mem;
    let (front, back) = thread::scope(|s| {
        let back = s.spawn(move || {
            let p = BusPlatform::new(db, mb).with_region("vblk", mem_r.region(SIZE));
            let mut disk = vec![0u8; DISK + 4096];
            side(&p, &format!("disk-size={DISK}"), &mut disk)
        });
        let front = s.spawn(move || {
            let p = BusPlatform::new(da, ma).with_region("vblk", mem_r.region(SIZE));
            side(&p, &format!("count={COUNT} seed=7"), &mut [])
        });
        (front.join().unwrap(), back.join().unwrap())
    });
    assert!(front.0, "{}", front.1);
    assert!(back.0, "{}", back.1);
    let f = front.1.lines().last().unwrap();
    let b = back.1.lines().last().unwrap();
    assert!(f.starts_with("RESULT PASS virtio-blk frontend: "), "{f}");
    assert!(b.starts_with("RESULT PASS virtio-blk backend: "), "{b}");
    assert_eq!(number_after(f, "frontend:"), COUNT);
    let (writes, reads) = (number_after(f, "("), number_after(f, "writes,"));
    assert_eq!(writes + reads, COUNT);
    assert!(writes > 0 && reads > 0, "{f}");
    let blocks = number_after(f, "+");
    assert_eq!(blocks, (DISK / 4096) as u64);
    // The backend served every request: the workload, the final pass, the flush (and the
    // driver's own, if any).
    assert_eq!(number_after(b, "("), reads + blocks, "{b}");
    assert_eq!(number_after(b, "reads,"), writes, "{b}");
    assert_eq!(number_after(b, "writes,"), 1, "one flush: {b}");
    assert_eq!(
        number_after(f, "disk digest"),
        number_after(b, "disk digest"),
        "{f}\n{b}"
    );
}

/// Runs both sides with these arguments; returns (frontend output, backend output), both
/// passed.
fn pair(front_args: &str, back_args: &str) -> (String, String) {
    let _one = one();
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let mem_r = &mem;
    let (front, back) = thread::scope(|s| {
        let back = s.spawn(move || {
            let p = BusPlatform::new(db, mb).with_region("vblk", mem_r.region(SIZE));
            let mut disk = vec![0u8; DISK + 4096];
            side(&p, back_args, &mut disk)
        });
        let front = s.spawn(move || {
            let p = BusPlatform::new(da, ma).with_region("vblk", mem_r.region(SIZE));
            side(&p, front_args, &mut [])
        });
        (front.join().unwrap(), back.join().unwrap())
    });
    assert!(front.0, "{}\n{}", front.1, back.1);
    assert!(back.0, "{}\n{}", back.1, front.1);
    (front.1, back.1)
}

/// The backend crashes and attaches again in place three times mid-stream (a new epoch
/// each time, the frontend's next request in flight), keeping its disk: the frontend
/// re-initialises its driver each time, issues the lost request again, and every write it
/// was told was done reads back — in the workload and in the final pass over every block.
#[test]
fn the_frontend_recovers_from_backend_restarts_and_loses_no_acknowledged_write() {
    let per_life = COUNT / 5;
    let (f, b) = pair(
        &format!("count={COUNT} seed=7"),
        &format!("disk-size={DISK} restart-after={per_life} restarts=3"),
    );
    let fl = f.lines().last().unwrap();
    let bl = b.lines().last().unwrap();
    assert!(fl.starts_with("RESULT PASS virtio-blk frontend: "), "{f}");
    assert!(bl.starts_with("RESULT PASS virtio-blk backend: "), "{b}");
    assert!(
        b.contains("virtio-blk backend: 3 restarts, device epoch 4"),
        "{b}"
    );
    for k in 1..=3 {
        assert!(
            b.contains(&format!(
                "virtio-blk backend: restart {k}: epoch {k} crashed after "
            )),
            "{b}"
        );
    }
    // Each restart cost the frontend at least one re-initialisation, mid-stream.
    let resets = number_after(
        f.lines()
            .find(|l| l.contains(" resets, device epoch "))
            .unwrap(),
        "frontend:",
    );
    assert!(resets >= 3, "{f}");
    assert!(f.contains(", device epoch 4 (disk kept on restart)"), "{f}");
    assert_eq!(
        f.matches("device restarted (epoch ").count() as u64,
        3,
        "one recovery per restart, each during the workload:\n{f}"
    );
    // Nothing lost: both sides' disks are the same, and the backend served every request
    // (a request served just before a crash and issued again counts twice).
    assert_eq!(
        number_after(fl, "disk digest"),
        number_after(bl, "disk digest"),
        "{f}\n{b}"
    );
    let (writes, reads) = (number_after(fl, "("), number_after(fl, "writes,"));
    let blocks = number_after(fl, "+");
    let served = number_after(bl, "(") + number_after(bl, "reads,");
    assert!(
        served >= writes + reads + blocks && served <= writes + reads + blocks + 3,
        "{f}\n{b}"
    );
}

/// The same with the disk re-created (zeroed) at each restart: the frontend, told so,
/// expects zeros after each new epoch, and the final disk is what it wrote since the last
/// one.
#[test]
fn with_the_disk_zeroed_on_restart_the_frontend_expects_zeros() {
    let per_life = COUNT / 3;
    let (f, b) = pair(
        &format!("count={COUNT} seed=9 restart-disk=zero"),
        &format!("disk-size={DISK} restart-after={per_life} restarts=2 restart-disk=zero"),
    );
    let fl = f.lines().last().unwrap();
    let bl = b.lines().last().unwrap();
    assert!(
        b.contains("virtio-blk backend: 2 restarts, device epoch 3"),
        "{b}"
    );
    assert!(
        f.contains(", device epoch 3 (disk zeroed on restart)"),
        "{f}"
    );
    assert_eq!(
        number_after(fl, "disk digest"),
        number_after(bl, "disk digest"),
        "{f}\n{b}"
    );
}

/// A frontend told the disk is kept fails when it is zeroed: the check is real.
#[test]
fn a_disk_lost_in_a_restart_is_found() {
    let _one = one();
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let mem_r = &mem;
    let front = thread::scope(|s| {
        s.spawn(move || {
            let p = BusPlatform::new(db, mb).with_region("vblk", mem_r.region(SIZE));
            let mut disk = vec![0u8; DISK + 4096];
            side(
                &p,
                &format!(
                    "disk-size={DISK} restart-after={} restart-disk=zero",
                    COUNT / 2
                ),
                &mut disk,
            )
        });
        let front = s.spawn(move || {
            let p = BusPlatform::new(da, ma).with_region("vblk", mem_r.region(SIZE));
            // The backend's wait fails once this domain is gone (the fake bus's deadlock
            // detection), so it does not wait for a detach that never comes.
            side(&p, &format!("count={COUNT} seed=7"), &mut [])
        });
        front.join().unwrap()
    });
    assert!(!front.0, "{}", front.1);
    assert!(
        front.1.contains("RESULT FAIL request ") && front.1.contains("reads back"),
        "{}",
        front.1
    );
}

#[test]
fn a_wrong_name_or_side_is_reported() {
    let [ma, _] = manifests();
    let bus = Bus::new(&manifests());
    let p = BusPlatform::new(bus.domain(ma.domid), ma);
    let (passed, out) = side(&p, "device=vblk", &mut []);
    assert!(!passed);
    assert!(
        out.contains("RESULT FAIL no virtio device `vblk` in the manifest of domain `a`"),
        "{out}"
    );
    assert!(
        out.contains("its virtio devices: `disk` (blk frontend)"),
        "{out}"
    );
}

/// Longer than any run of [`COUNT`] requests takes on any machine, even a loaded one (they
/// take about a second): past it the pair is taken to hang. A guard against a test that
/// would otherwise never end, not a measurement.
const HANG: std::time::Duration =
    std::time::Duration::from_secs(if cfg!(miri) { 3600 } else { 300 });

/// [`pair`] on threads of their own, failing the test instead of waiting for ever if a
/// side hangs (a frontend spinning in `VirtIOBlk::flush` over a device that restarted
/// would); the hung thread is left behind and ends with the test process.
fn pair_or_hang(front_args: String, back_args: String) -> (String, String) {
    let _one = one();
    let [ma, mb] = manifests();
    let bus: &'static Bus = Box::leak(Box::new(Bus::new(&[ma, mb])));
    let mem: &'static Backing = Box::leak(Box::new(Backing::new(SIZE)));
    // Both domains live before either runs (the bus's deadlock detection counts them).
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let (tx, rx) = std::sync::mpsc::channel();
    let back_tx = tx.clone();
    thread::spawn(move || {
        let p = BusPlatform::new(db, mb).with_region("vblk", mem.region(SIZE));
        let mut disk = vec![0u8; DISK + 4096];
        let _ = back_tx.send(("backend", side(&p, &back_args, &mut disk)));
    });
    thread::spawn(move || {
        let p = BusPlatform::new(da, ma).with_region("vblk", mem.region(SIZE));
        let _ = tx.send(("frontend", side(&p, &front_args, &mut [])));
    });
    let (mut front, mut back) = (None, None);
    for _ in 0..2 {
        match rx.recv_timeout(HANG) {
            Ok(("frontend", r)) => front = Some(r),
            Ok((_, r)) => back = Some(r),
            Err(_) => panic!(
                "hung: after {HANG:?} the frontend {} and the backend {}",
                if front.is_some() {
                    "had ended"
                } else {
                    "had not ended"
                },
                match &back {
                    Some((_, out)) => format!("had ended:\n{out}"),
                    None => "had not ended".to_string(),
                }
            ),
        }
    }
    let (front, back) = (front.unwrap(), back.unwrap());
    assert!(front.0, "{}\n{}", front.1, back.1);
    assert!(back.0, "{}\n{}", back.1, front.1);
    (front.1, back.1)
}

/// The backend crashes and attaches again with the frontend's final flush in flight
/// (`restart-after=` the workload's requests plus the final pass's): the frontend's flush
/// sleeps on the doorbell (not `VirtIOBlk::flush`, which spins and hung here), sees the new
/// epoch, initialises a new driver and issues the flush again, which the second life
/// serves; nothing is lost.
#[test]
fn a_restart_during_the_final_flush_is_recovered() {
    let blocks = (DISK / 4096) as u64;
    let (f, b) = pair_or_hang(
        format!("count={COUNT} seed=11"),
        format!("disk-size={DISK} restart-after={}", COUNT + blocks),
    );
    let fl = f.lines().last().unwrap();
    let bl = b.lines().last().unwrap();
    // The crash came exactly with the flush pending: every read and write was served.
    assert!(
        b.contains(&format!(
            "virtio-blk backend: restart 1: epoch 1 crashed after {} requests served",
            COUNT + blocks
        )),
        "{b}"
    );
    assert!(
        b.contains("virtio-blk backend: 1 restarts, device epoch 2"),
        "{b}"
    );
    assert!(
        f.contains(
            "virtio-blk frontend: flush: device restarted (epoch 2, disk kept), \
             re-initialised, re-issued, done in "
        ),
        "{f}"
    );
    assert_eq!(
        f.matches("device restarted").count(),
        1,
        "one recovery, in the flush: {f}"
    );
    assert!(
        f.contains("1 resets, device epoch 2 (disk kept on restart)"),
        "{f}"
    );
    let (writes, reads) = (number_after(fl, "("), number_after(fl, "writes,"));
    assert_eq!(writes + reads, COUNT, "{f}");
    // Served: the workload, the final pass, and the flush once (by the second life).
    assert_eq!(number_after(bl, "("), reads + blocks, "{b}");
    assert_eq!(number_after(bl, "reads,"), writes, "{b}");
    assert_eq!(number_after(bl, "writes,"), 1, "one flush: {b}");
    assert_eq!(
        number_after(fl, "disk digest"),
        number_after(bl, "disk digest"),
        "{f}\n{b}"
    );
}

/// The same with the disk re-created zeroed by the restart: the frontend, told so, reads
/// and verifies every block again (zeros now) before it flushes again, and both sides end
/// with the digest of a zero disk.
#[test]
fn a_restart_during_the_final_flush_that_zeroes_the_disk_is_verified_again() {
    let blocks = (DISK / 4096) as u64;
    let (f, b) = pair_or_hang(
        format!("count={COUNT} seed=11 restart-disk=zero"),
        format!(
            "disk-size={DISK} restart-after={} restart-disk=zero",
            COUNT + blocks
        ),
    );
    let fl = f.lines().last().unwrap();
    let bl = b.lines().last().unwrap();
    assert!(
        f.contains("virtio-blk frontend: flush: device restarted (epoch 2, disk zeroed)"),
        "{f}"
    );
    assert!(
        f.contains("virtio-blk frontend: the disk was zeroed meanwhile: every block again"),
        "{f}"
    );
    let zeros = virtio_blk::disk_digest(&vec![0u8; DISK]);
    assert_eq!(number_after(fl, "disk digest"), zeros, "{f}");
    assert_eq!(number_after(bl, "disk digest"), zeros, "{b}");
    // The final pass twice; the flush re-issued after the restart and again after the
    // second pass, both served by the second life.
    let writes = number_after(fl, "(");
    let reads = number_after(fl, "writes,");
    assert_eq!(number_after(bl, "("), reads + 2 * blocks, "{b}");
    assert_eq!(number_after(bl, "reads,"), writes, "{b}");
    assert_eq!(number_after(bl, "writes,"), 2, "{b}");
}
