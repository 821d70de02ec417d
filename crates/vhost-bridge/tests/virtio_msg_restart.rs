//! The daemon behind a virtio-msg device killed mid-stream: the device side marks the
//! device NEEDS_RESET (EVENT_CONFIG), the frontend's wait ends with `Reset` instead of
//! hanging, the driver is re-created, its reset re-attaches the restarted daemon, and every
//! write the driver was told had completed is in the file.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::Rng;
use staticbus_guest::fake::{pair_ports, two_domains, Bus};
use staticbus_guest::manifest::Protocol;
use staticbus_guest::{Events, Region};
use staticbus_vhost_bridge::msg::{serve, MsgBackend};
use staticbus_vhost_bridge::{Bridge, Daemon, Error, Options, SharedRegion};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::frontend::{CallError, Link, LinkError, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};

const SIZE: usize = 256 * 4096;
const GUEST_BASE: u64 = 0x7000_0000;
const PORTS: [u32; 2] = pair_ports(0);
const BLOCK: usize = 4096;
const BLOCKS: usize = 512; // 2 MiB file
const BLK_CONFIG_SIZE: u32 = 60;

struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

type Blk<'l, E> = VirtIOBlk<RegionHal<Pool>, MsgTransport<'l, E>>;

/// One write with the non-blocking calls, waiting on the link: `Err(Reset)` when the
/// device needs a reset.
fn write<E: Events>(
    link: &Link<E>,
    blk: &mut Blk<'_, E>,
    at: usize,
    buf: &[u8],
) -> Result<(), CallError> {
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: req, buf and resp stay untouched until the request completes; when it is
    // abandoned (Reset) the driver is dropped and the DMA pool forgets its buffers.
    let token = unsafe { blk.write_blocks_nb(at / 512, &mut req, buf, &mut resp) }
        .map_err(|_| CallError::Protocol)?;
    while blk.peek_used() != Some(token) {
        link.wait_used()?;
    }
    // SAFETY: the same req, buf and resp.
    unsafe { blk.complete_write_blocks(token, &req, buf, &mut resp) }
        .map_err(|_| CallError::Protocol)
}

#[test]
fn daemon_killed_behind_virtio_msg_is_reset_and_reattached() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    let mut rng = Rng(0x5eed_0006);
    let mut initial = vec![0u8; BLOCKS * BLOCK];
    rng.fill(&mut initial);
    std::fs::write(&image, &initial).unwrap();
    let spawn = || {
        Daemon::spawn(
            common::qsd_command(&qsd, &image, &socket),
            &socket,
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let mut daemon = spawn();

    let shared = Arc::new(SharedRegion::memfd("virtio-msg-restart", SIZE as u64, 0).unwrap());
    let region = |shared: &SharedRegion| {
        // SAFETY: the mapping lives as long as `shared`, which outlives both threads; all
        // access goes through Region's volatile/atomic methods.
        unsafe { Region::new(shared.host_ptr(), SIZE) }.unwrap()
    };
    // The default 1 s re-attach: the reset the old driver's transport sends when it is
    // dropped finds no daemon and fails (the device still needs a reset); the new driver's
    // reset, after the restart, re-attaches.
    let bridge =
        Arc::new(Bridge::connect(&socket, Arc::clone(&shared), Options::new(2, 1)).unwrap());

    let [fe, be] = two_domains(&[("vio", Protocol::Queue, SIZE as u64)]);
    let bus = Bus::new(&[fe, be]);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let (failed_tx, failed_rx) = mpsc::channel::<()>();
    let (restarted_tx, restarted_rx) = mpsc::channel::<()>();
    let (dbe, stop, written, shared_ref) = (&dbe, &stop, &written, &*shared);
    let b = Arc::clone(&bridge);
    let (model, gone) = std::thread::scope(|s| {
        let device = s.spawn(move || {
            let region = region(shared_ref);
            dbe.clear_initial(PORTS[1]);
            let backend = MsgBackend::new(b, BLK_CONFIG_SIZE).unwrap();
            let mut dev = DeviceTransport::attach(region, dbe, PORTS[1], backend).unwrap();
            let mut gone = 0;
            while !stop.load(Ordering::Acquire) {
                match serve(&mut dev, Duration::from_micros(200)) {
                    Ok(_) => {}
                    Err(Error::DaemonGone { .. }) => gone += 1,
                    Err(Error::NeedsReset { .. }) => {}
                    Err(e) => panic!("the device side failed otherwise: {e}"),
                }
                let _ = dev.events().try_take_any(&[PORTS[1]]);
            }
            dev.detach();
            gone
        });
        let front = s.spawn(move || {
            let region = region(shared_ref);
            let link = loop {
                match Link::attach(region, &dfe, PORTS[0], GUEST_BASE) {
                    Ok(_) => break Link::attach(region, &dfe, PORTS[0], GUEST_BASE).unwrap(),
                    Err(LinkError::NotReady) => dfe.wait(PORTS[0]).expect("device never came"),
                    Err(e) => panic!("{e}"),
                }
            };
            let mut model = initial;
            let mut buf = vec![0u8; BLOCK];
            // Before the kill: writes until one ends with Reset.
            Pool::pool().attach(region, GUEST_BASE);
            let mut blk = Blk::new(link.transport().unwrap()).expect("driver init");
            let in_flight = loop {
                let at = rng.below(BLOCKS as u64) as usize * BLOCK;
                rng.fill(&mut buf);
                match write(&link, &mut blk, at, &buf) {
                    Ok(()) => {
                        model[at..at + BLOCK].copy_from_slice(&buf);
                        written.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(CallError::Reset) => break (at, buf.clone()),
                    Err(e) => panic!("a write failed otherwise: {e}"),
                }
                assert!(
                    written.load(Ordering::Acquire) < 1_000_000,
                    "the kill never showed"
                );
            };
            assert!(link.needs_reset());
            drop(blk);
            failed_tx.send(()).unwrap();
            restarted_rx
                .recv_timeout(Duration::from_secs(120))
                .expect("daemon restarted");
            // A new driver over the same link; its reset re-attaches the daemon.
            Pool::pool().attach(region, GUEST_BASE);
            let mut blk = Blk::new(link.transport().unwrap()).expect("driver re-init");
            assert!(!link.needs_reset());
            let (at, new) = in_flight;
            blk.read_blocks(at / 512, &mut buf).unwrap();
            assert!(
                buf == model[at..at + BLOCK] || buf == new,
                "the block in flight is neither old nor new"
            );
            model[at..at + BLOCK].copy_from_slice(&buf);
            for b in 0..BLOCKS {
                blk.read_blocks(b * BLOCK / 512, &mut buf).unwrap();
                assert!(
                    buf == model[b * BLOCK..(b + 1) * BLOCK],
                    "block {b} lost an acknowledged write"
                );
            }
            for _ in 0..300 {
                let at = rng.below(BLOCKS as u64) as usize * BLOCK;
                rng.fill(&mut buf);
                write(&link, &mut blk, at, &buf).unwrap();
                model[at..at + BLOCK].copy_from_slice(&buf);
            }
            blk.flush().unwrap();
            drop(blk);
            Pool::pool().detach();
            stop.store(true, Ordering::Release);
            model
        });
        // The kill, after 200 acknowledged writes.
        while written.load(Ordering::Acquire) < 200 {
            assert!(!front.is_finished(), "the frontend ended early");
            std::thread::sleep(Duration::from_millis(1));
        }
        daemon.kill().unwrap();
        failed_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the frontend saw the failure");
        daemon = spawn();
        restarted_tx.send(()).unwrap();
        let model = front.join().unwrap();
        let gone = device.join().unwrap();
        (model, gone)
    });
    assert!(gone >= 1, "the device side never saw the daemon go");
    assert_eq!(bridge.failure(), None, "re-attached");
    drop(bridge);
    let exit = daemon.terminate(Duration::from_secs(30)).unwrap();
    assert!(exit.success(), "qemu-storage-daemon exited with {exit}");
    assert!(
        std::fs::read(&image).unwrap() == model,
        "the file differs from the acknowledged writes"
    );
}
