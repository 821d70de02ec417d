//! `virtio_rng` in-process: the frontend program (virtio-drivers' `VirtIORng` over the
//! virtio-msg transport) against staticbus's built-in entropy device, the two as threads
//! over one region and the fake event bus. A good source passes with the counts it
//! reports; a constant source and one repeating a 256-byte cycle (a perfectly flat
//! histogram) fail with the check that catches them.

use staticbus_guest::fake::{two_domains, Backing, Bus, BusPlatform};
use staticbus_guest::manifest::{Evtchn, Manifest, Protocol, Virtio, VirtioRole, VirtioServe};
use staticbus_guest::Events;
use staticbus_programs::{virtio_rng, Args, Clock};
use staticbus_virtio_msg::backends::{Entropy, Rng, XorShift};
use staticbus_virtio_msg::device::DeviceTransport;
use std::time::Instant;

const SIZE: usize = 32 * 4096;

struct Wall(Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The two manifests with the region and its event channel as a `[[virtio]]` device
/// `rng` has them: no channel around them, a virtio entry on each side.
fn manifests() -> [&'static Manifest; 2] {
    let [a, b] = two_domains(&[("vio", Protocol::Queue, SIZE as u64)]);
    let side = |m: &'static Manifest, peer: &'static Manifest, role| {
        let (e, pe) = (m.evtchns[0], peer.evtchns[0]);
        let virtio = Virtio {
            name: "rng",
            device: "rng",
            device_id: 4,
            role,
            queues: 1,
            queue_size: 16,
            shm_id: "vio",
            guest_addr: m.channels[0].guest_addr,
            size: SIZE as u64,
            peer: peer.domain,
            peer_domid: peer.domid,
            local_port: e.local_port,
            remote_port: pe.local_port,
            serve: VirtioServe::Builtin,
        };
        let evtchns = vec![Evtchn { channel: None, ..e }];
        &*Box::leak(Box::new(Manifest {
            channels: &[],
            evtchns: Box::leak(evtchns.into_boxed_slice()),
            virtio: Box::leak(Box::new([virtio])),
            ..*m
        }))
    };
    [
        side(a, b, VirtioRole::Frontend),
        side(b, a, VirtioRole::Backend),
    ]
}

/// The program's DMA pool is one `static` (one device per program): one run at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the frontend in domain a against an entropy device on `source` in domain b.
fn run<S: Entropy + Send>(source: S, args: &str) -> (bool, String, u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let be_port = be.evtchns[0].local_port;
    let args = format!("device=rng {args}");
    std::thread::scope(|s| {
        let (mem, dbe) = (&mem, &dbe);
        let device = s.spawn(move || {
            let mut dev =
                DeviceTransport::attach(mem.region(SIZE), dbe, be_port, Rng::new(source)).unwrap();
            let _ = dev.run();
            dev.backend().bytes
        });
        let p = BusPlatform::new(dfe, fe).with_region("vio", mem.region(SIZE));
        let mut out = String::new();
        let passed = virtio_rng::run(&p, &Wall(Instant::now()), &Args::new(&args), &mut out);
        drop(p);
        let served = device.join().unwrap();
        (passed, out, served)
    })
}

#[test]
fn good_entropy_passes_with_its_counts() {
    let (passed, out, served) = run(XorShift(0x5eed_1234), "bytes=65536 chunk=1000");
    assert!(passed, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("RESULT PASS virtio-rng requests=66 bytes=65536 distinct=256 chi2="),
        "{last}"
    );
    assert!(last.contains(" blocks=1024 "), "{last}");
    assert_eq!(served, 65536, "the device served what the driver read");
}

/// The digest line is the FNV-1a of exactly the source's bytes, in order (so two runs
/// that print the same digest got the same bytes).
#[test]
fn the_digest_is_that_of_the_bytes_the_source_gave() {
    let mut expected = [0u8; 65536];
    XorShift(0x5eed_1234).fill(&mut expected);
    let fnv = expected.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let (passed, out, _) = run(XorShift(0x5eed_1234), "bytes=65536 chunk=4096");
    assert!(passed, "{out}");
    let line = format!("virtio-rng: digest {fnv:#018x} (FNV-1a of the 65536 bytes)");
    assert!(out.lines().any(|l| l == line), "no `{line}` in\n{out}");
    let (_, other, _) = run(XorShift(0x1234_5678), "bytes=65536 chunk=4096");
    assert!(
        !other.contains(&line),
        "another source, the same digest:\n{other}"
    );
}

struct Constant;
impl Entropy for Constant {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0xa5);
    }
}

/// 0, 1, …, 255, 0, 1, …: every value equally often, blocks repeating every 256 bytes.
struct Cycle(u8);
impl Entropy for Cycle {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
    }
}

#[test]
fn a_constant_source_fails_the_histogram() {
    let (passed, out, _) = run(Constant, "bytes=8192");
    assert!(!passed);
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        "RESULT FAIL virtio-rng: byte value 0x00 never occurs in 8192 bytes"
    );
}

#[test]
fn a_repeating_cycle_fails_the_block_check() {
    let (passed, out, _) = run(Cycle(0), "bytes=8192 chunk=512");
    assert!(!passed);
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        "RESULT FAIL virtio-rng: 64-byte blocks 0 and 4 are equal"
    );
}

#[test]
fn a_name_that_is_no_virtio_device_is_refused() {
    let (passed, out, _) = run(Constant, "device=disk");
    assert!(!passed);
    assert!(
        out.contains("RESULT FAIL virtio-rng: no virtio device `disk`"),
        "{out}"
    );
}

/// The device side crashes and attaches again three times mid-stream (a new epoch each
/// time, usually with a request in flight): the frontend re-initialises its driver, asks
/// again for what it did not get, and the stream passes every check with all its bytes.
#[test]
fn the_stream_goes_on_across_device_restarts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let be_port = be.evtchns[0].local_port;
    let (passed, out, epoch) = std::thread::scope(|s| {
        let (mem, dbe) = (&mem, &dbe);
        let device = s.spawn(move || {
            let mut source = Rng::new(XorShift(0x5eed_4321));
            let mut served = 0;
            for _ in 0..3 {
                let mut dev =
                    DeviceTransport::attach(mem.region(SIZE), dbe, be_port, source).unwrap();
                // Serve 10 requests of 1000 bytes, then crash on the next doorbell.
                let until = dev.backend().bytes + 10_000;
                while dev.backend().bytes < until {
                    while dev.poll() > 0 {}
                    dbe.wait(be_port).unwrap();
                }
                served += 1;
                source = dev.into_backend();
            }
            let mut dev = DeviceTransport::attach(mem.region(SIZE), dbe, be_port, source).unwrap();
            let _ = dev.run();
            assert_eq!(served, 3);
            dev.epoch()
        });
        let p = BusPlatform::new(dfe, fe).with_region("vio", mem.region(SIZE));
        let mut out = String::new();
        let args = Args::new("device=rng bytes=65536 chunk=1000");
        let passed = virtio_rng::run(&p, &Wall(Instant::now()), &args, &mut out);
        drop(p);
        (passed, out, device.join().unwrap())
    });
    assert!(passed, "{out}");
    assert_eq!(epoch, 4);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("RESULT PASS virtio-rng requests=66 bytes=65536 distinct=256 chi2="),
        "{last}"
    );
    let resets: u64 = last.rsplit("resets=").next().unwrap().parse().unwrap();
    assert!(resets >= 3, "{last}");
}
