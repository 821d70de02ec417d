//! virtio-drivers' entropy and console drivers, unchanged, against the built-in devices.

mod common;

use common::*;
use staticbus_guest::fake::{Backing, Bus, DEADLOCK};
use staticbus_guest::Events;
use staticbus_virtio_msg::backends::{Console, ConsoleIo, Entropy, Rng, XorShift};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::hal::{PoolOf, RegionHal};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::rng::VirtIORng;

pool!(RngPool);
pool!(ConsolePool);

#[test]
fn rng_delivers_the_sources_bytes() {
    const SEED: u64 = 0x1234_5678_9abc_def1;
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let (mem, dbe) = (&mem, &dbe);
    let got = std::thread::scope(|s| {
        let device = s.spawn(move || {
            let mut dev =
                DeviceTransport::attach(mem.region(SIZE), dbe, BE_PORT, Rng::new(XorShift(SEED)))
                    .unwrap();
            assert_eq!(dev.run(), DEADLOCK);
            dev.backend().bytes
        });
        let front = s.spawn(move || {
            let region = mem.region(SIZE);
            RngPool::pool().attach(region, GUEST_BASE);
            let link = link(region, &dfe);
            let mut rng = VirtIORng::<RegionHal<RngPool>, _>::new(link.transport().unwrap())
                .expect("driver init");
            let mut out = vec![0u8; 0];
            for len in [1usize, 16, 100, 4096, 7] {
                let mut buf = vec![0u8; len];
                assert_eq!(rng.request_entropy(&mut buf).unwrap(), len);
                out.extend_from_slice(&buf);
            }
            drop(rng);
            assert_eq!(RngPool::pool().used_pages(), 0);
            out
        });
        let got = front.join().unwrap();
        assert_eq!(device.join().unwrap(), got.len() as u64);
        got
    });
    // The device filled each request from the source in order, 256 bytes at a time.
    let mut src = XorShift(SEED);
    let mut want = Vec::new();
    for len in [1usize, 16, 100, 4096, 7] {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(256);
            let mut b = vec![0u8; n];
            src.fill(&mut b);
            want.extend_from_slice(&b);
            done += n;
        }
    }
    assert_eq!(got, want);
}

#[derive(Clone, Default)]
struct Tty {
    out: Arc<Mutex<Vec<u8>>>,
    input: Arc<Mutex<VecDeque<u8>>>,
}

impl ConsoleIo for Tty {
    fn write(&mut self, bytes: &[u8]) {
        self.out.lock().unwrap().extend_from_slice(bytes);
    }
    fn has_input(&self) -> bool {
        !self.input.lock().unwrap().is_empty()
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut i = self.input.lock().unwrap();
        let n = buf.len().min(i.len());
        for b in &mut buf[..n] {
            *b = i.pop_front().unwrap();
        }
        n
    }
}

#[test]
fn console_carries_output_and_input() {
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let tty = Tty::default();
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let (mem, dbe, tty) = (&mem, &dbe, &tty);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut dev =
                DeviceTransport::attach(mem.region(SIZE), dbe, BE_PORT, Console::new(tty.clone()))
                    .unwrap();
            assert_eq!(dev.run(), DEADLOCK);
        });
        s.spawn(move || {
            let region = mem.region(SIZE);
            ConsolePool::pool().attach(region, GUEST_BASE);
            let link = link(region, &dfe);
            let mut con =
                VirtIOConsole::<RegionHal<ConsolePool>, _>::new(link.transport().unwrap())
                    .expect("driver init");
            con.send_bytes(b"hello, ").unwrap();
            for &b in b"backend\n" {
                con.send(b).unwrap();
            }
            assert_eq!(con.recv(true).unwrap(), None, "no input yet");
            // Someone types at the device side; its input interrupt is the doorbell.
            tty.input.lock().unwrap().extend(b"ok\n");
            link.events().send(FE_PORT).unwrap();
            let mut line = Vec::new();
            while line.len() < 3 {
                match con.recv(true).unwrap() {
                    Some(b) => line.push(b),
                    None => std::thread::yield_now(),
                }
            }
            assert_eq!(line, b"ok\n");
        });
    });
    assert_eq!(&*tty.out.lock().unwrap(), b"hello, backend\n");
}
