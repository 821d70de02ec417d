//! The device side restarts mid-stream (sometimes with a request in flight): the frontend
//! sees DEVICE_NEEDS_RESET through the epoch, re-initialises, re-issues what was in
//! flight and carries on; nothing it was told was written is lost, nobody hangs.

mod common;

use common::*;
use staticbus_guest::fake::{Backing, Bus, DEADLOCK};
use staticbus_guest::Events;
use staticbus_virtio_msg::backends::{RamBlk, SECTOR};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::frontend::{CallError, Link};
use staticbus_virtio_msg::hal::{PoolOf, RegionHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::{DeviceStatus, Transport};

const DISK: usize = 256 * 1024;
const BLOCK: usize = 4096;

pool!(RestartPool);

type Blk<'l, E> =
    VirtIOBlk<RegionHal<RestartPool>, staticbus_virtio_msg::frontend::MsgTransport<'l, E>>;

/// Initialises a driver, retrying while the device restarts under it.
fn init<E: Events>(link: &Link<E>) -> Blk<'_, E> {
    loop {
        let Ok(t) = link.transport() else { continue };
        if let Ok(blk) = VirtIOBlk::new(t) {
            if !link.needs_reset() {
                return blk;
            }
        }
    }
}

enum Fail {
    Reset,
    Io(virtio_drivers::Error),
}

impl From<CallError> for Fail {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Reset => Fail::Reset,
            e => panic!("{e}"),
        }
    }
}

/// One write or read with the non-blocking API, waiting on the doorbell.
fn io<E: Events>(
    link: &Link<E>,
    blk: &mut Blk<'_, E>,
    write: bool,
    sector: usize,
    buf: &mut [u8],
) -> Result<(), Fail> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    // SAFETY: `req`, `buf` and `resp` live until the request completes or is abandoned
    // with the driver (which is then dropped, never touching them again).
    let token = unsafe {
        if write {
            blk.write_blocks_nb(sector, &mut req, buf, &mut resp)
        } else {
            blk.read_blocks_nb(sector, &mut req, buf, &mut resp)
        }
    }
    .map_err(Fail::Io)?;
    loop {
        if blk.peek_used() == Some(token) {
            // SAFETY: the same buffers as above, for the token that completed.
            let r = unsafe {
                if write {
                    blk.complete_write_blocks(token, &req, buf, &mut resp)
                } else {
                    blk.complete_read_blocks(token, &req, buf, &mut resp)
                }
            };
            return r.map_err(Fail::Io);
        }
        link.wait_used()?;
    }
}

#[test]
fn the_frontend_recovers_from_device_restarts() {
    let (ops, every) = if cfg!(miri) { (40, 4) } else { (3000, 250) };
    let restarts = 5;
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let (mem, dbe) = (&mem, &dbe);
    let mut disk = vec![0u8; DISK];
    let disk_ref = &mut disk;
    let (model, resets, epochs) = std::thread::scope(|s| {
        let device = s.spawn(move || {
            let region = mem.region(SIZE);
            let mut blk = RamBlk::new(disk_ref, b"restartable");
            let mut epochs = Vec::new();
            for round in 0.. {
                let mut dev = DeviceTransport::attach(region, dbe, BE_PORT, blk).unwrap();
                epochs.push(dev.epoch());
                let served =
                    |d: &DeviceTransport<RamBlk, _>| d.backend().served[..2].iter().sum::<u64>();
                let target = served(&dev) + every;
                loop {
                    while dev.poll() > 0 {}
                    if let Err(e) = dbe.wait(BE_PORT) {
                        assert_eq!(e, DEADLOCK);
                        return epochs;
                    }
                    // Crash on a doorbell, before serving it: often with a request in
                    // flight.
                    if round < restarts && served(&dev) >= target {
                        break;
                    }
                }
                blk = dev.into_backend();
            }
            unreachable!()
        });
        let front = s.spawn(move || {
            let region = mem.region(SIZE);
            let pool = RestartPool::pool();
            pool.attach(region, GUEST_BASE);
            let link = link(region, &dfe);
            let mut blk = init(&link);
            let mut model = vec![0u8; DISK];
            let mut rng = Prng(0x0bad_5eed);
            let mut buf = vec![0u8; BLOCK];
            let mut resets = 0;
            for op in 0..ops {
                let at = (rng.next() as usize % (DISK / BLOCK)) * BLOCK;
                let write = rng.next() % 2 == 0;
                if write {
                    for c in buf.chunks_mut(8) {
                        c.copy_from_slice(&rng.next().to_le_bytes());
                    }
                }
                loop {
                    match io(&link, &mut blk, write, at / SECTOR, &mut buf) {
                        Ok(()) => break,
                        Err(Fail::Reset) => {
                            resets += 1;
                            drop(blk);
                            // The abandoned request's bounce pages are never unshared.
                            pool.attach(region, GUEST_BASE);
                            blk = init(&link);
                        }
                        Err(Fail::Io(e)) => panic!("op {op}: {e}"),
                    }
                }
                if write {
                    model[at..at + BLOCK].copy_from_slice(&buf);
                } else {
                    assert!(
                        buf == model[at..at + BLOCK],
                        "op {op}: block at {at:#x} differs"
                    );
                }
            }
            drop(blk);
            (model, resets, ())
        });
        let (model, resets, ()) = front.join().unwrap();
        (model, resets, device.join().unwrap())
    });
    assert!(
        disk == model,
        "every write the frontend was told was done is on the disk"
    );
    assert_eq!(epochs.len(), restarts + 1);
    assert!(epochs.windows(2).all(|w| w[1] == w[0] + 1), "{epochs:?}");
    assert!(resets >= 1 && resets <= restarts, "resets {resets}");
}

/// A frontend's events whose wait serves the device side in the same thread.
struct Inline<'a, 'd>(&'a std::cell::RefCell<Option<DeviceTransport<RamBlk<'d>, Quiet>>>);

impl Events for Inline<'_, '_> {
    fn send(&self, _port: u32) -> Result<(), staticbus_guest::Errno> {
        Ok(())
    }
    fn wait_any(&self, ports: &[u32]) -> Result<u32, staticbus_guest::Errno> {
        match self.0.borrow_mut().as_mut().map(|d| d.poll()) {
            Some(n) if n > 0 => Ok(ports[0]),
            _ => Err(staticbus_guest::Errno::ENOSYS),
        }
    }
    fn try_take_any(&self, _ports: &[u32]) -> Option<u32> {
        None
    }
    fn take_fired(&self) -> Option<u32> {
        None
    }
    fn is_pending(&self, _port: u32) -> bool {
        false
    }
    fn clear_initial(&self, _port: u32) -> bool {
        false
    }
    fn status(
        &self,
        _port: u32,
    ) -> Result<staticbus_guest::ops::PortStatus, staticbus_guest::Errno> {
        Err(staticbus_guest::Errno::ENOSYS)
    }
}

#[test]
fn status_reads_needs_reset_once_the_epoch_moved() {
    let mem = Backing::new(SIZE);
    let region = mem.region(SIZE);
    let mut disk = vec![0u8; 8 * SECTOR];
    let dev =
        DeviceTransport::attach(region, Quiet, BE_PORT, RamBlk::new(&mut disk, b"x")).unwrap();
    let first = dev.epoch();
    let cell = std::cell::RefCell::new(Some(dev));
    let link = Link::attach(region, Inline(&cell), FE_PORT, GUEST_BASE).unwrap();
    assert_eq!(link.epoch(), first);
    let mut t = link.transport().unwrap();
    t.set_status(DeviceStatus::empty());
    t.set_status(DeviceStatus::ACKNOWLEDGE);
    assert_eq!(t.get_status(), DeviceStatus::ACKNOWLEDGE);
    assert!(!link.needs_reset());
    // The device side restarts.
    let blk = cell.borrow_mut().take().unwrap().into_backend();
    let dev = DeviceTransport::attach(region, Quiet, BE_PORT, blk).unwrap();
    assert_eq!(dev.epoch(), first + 1);
    *cell.borrow_mut() = Some(dev);
    assert!(link.needs_reset());
    assert_eq!(
        t.get_status(),
        DeviceStatus::DEVICE_NEEDS_RESET,
        "without asking"
    );
    assert!(matches!(link.wait_used(), Err(CallError::Reset)));
    assert_eq!(link.device_info().unwrap_err(), CallError::Reset);
    assert_eq!(t.read_device_features(), 0);
    // The driver's reset adopts the new epoch; the device answers again.
    t.set_status(DeviceStatus::empty());
    assert!(!link.needs_reset());
    assert_eq!(link.epoch(), first + 1);
    assert_eq!(t.get_status(), DeviceStatus::empty());
    assert_ne!(t.read_device_features(), 0);
    drop(t);
    let dev = cell.borrow_mut().take().unwrap();
    assert_eq!(dev.status(), 0, "dropping the transport reset the device");
    assert_eq!(dev.faults(), Default::default());
}
