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
