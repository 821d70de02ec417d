//! The whole path of issue 14 in one process: virtio-drivers' VirtIOBlk over staticbus's
//! virtio-msg frontend transport (domain a) ↔ the region and a static event channel on the
//! fake bus ↔ virtio-msg's DeviceTransport with the bridge as its backend (domain b) ↔
//! qemu-storage-daemon's vhost-user-blk export of a file. The region is a memfd: the daemon
//! maps the same pages the frontend's rings and buffers are in.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use staticbus_guest::fake::{pair_ports, two_domains, Bus};
use staticbus_guest::manifest::Protocol;
use staticbus_guest::{Events, Region};
use staticbus_vhost_bridge::msg::{serve, MsgBackend};
use staticbus_vhost_bridge::{Bridge, Daemon, Options, SharedRegion};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::frontend::{Link, LinkError};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use virtio_drivers::device::blk::VirtIOBlk;

const SIZE: usize = 256 * 4096;
const GUEST_BASE: u64 = 0x7000_0000;
const PORTS: [u32; 2] = pair_ports(0);
const BLOCK: usize = 4096;
const BLOCKS: usize = 1024; // 4 MiB file
const OPS: usize = 10_000;
/// virtio_blk_config as QEMU 7.2 knows it (capacity … write_zeroes_may_unmap, unused1).
const BLK_CONFIG_SIZE: u32 = 60;

struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

#[test]
fn virtio_drivers_blk_over_virtio_msg_served_by_qemu_storage_daemon() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    let mut rng = Rng(0x5eed_0005);
    let mut initial = vec![0u8; BLOCKS * BLOCK];
    rng.fill(&mut initial);
    std::fs::write(&image, &initial).unwrap();
    let mut daemon = Daemon::spawn(
        common::qsd_command(&qsd, &image, &socket),
        &socket,
        Duration::from_secs(30),
    )
    .unwrap();

    // The region: a memfd the bridge maps and the daemon's memory table names. Its guest
    // base is learned from the frontend (through the first queue layout).
    let shared = Arc::new(SharedRegion::memfd("virtio-msg-region", SIZE as u64, 0).unwrap());
    // A Region per thread (it is not Send), over the same mapping.
    let region = |shared: &SharedRegion| {
        // SAFETY: the mapping lives as long as `shared`, which outlives both threads; all
        // access to it goes through Region's volatile/atomic methods.
        unsafe { Region::new(shared.host_ptr(), SIZE) }.unwrap()
    };
    let bridge =
        Arc::new(Bridge::connect(&socket, Arc::clone(&shared), Options::new(2, 1)).unwrap());

    let [fe, be] = two_domains(&[("vio", Protocol::Queue, SIZE as u64)]);
    let bus = Bus::new(&[fe, be]);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let stop = AtomicBool::new(false);
    let (dbe, stop_ref, shared_ref) = (&dbe, &stop, &*shared);
    let b = Arc::clone(&bridge);
    let model = std::thread::scope(|s| {
        let device = s.spawn(move || {
            let region = region(shared_ref);
            dbe.clear_initial(PORTS[1]);
            let backend = MsgBackend::new(b, BLK_CONFIG_SIZE).unwrap();
            let mut dev = DeviceTransport::attach(region, dbe, PORTS[1], backend).unwrap();
            while !stop_ref.load(Ordering::Acquire) {
                serve(&mut dev, Duration::from_micros(200)).unwrap();
                let _ = dev.events().try_take_any(&[PORTS[1]]);
            }
            assert_eq!(dev.faults(), Default::default(), "a correct frontend");
            dev.detach();
        });
        let front = s.spawn(move || {
            let region = region(shared_ref);
            Pool::pool().attach(region, GUEST_BASE);
            let link = loop {
                match Link::attach(region, &dfe, PORTS[0], GUEST_BASE) {
                    Ok(_) => break Link::attach(region, &dfe, PORTS[0], GUEST_BASE).unwrap(),
                    Err(LinkError::NotReady) => dfe.wait(PORTS[0]).expect("device never came"),
                    Err(e) => panic!("{e}"),
                }
            };
            let mut blk = VirtIOBlk::<RegionHal<Pool>, _>::new(link.transport().unwrap())
                .expect("driver init");
            assert_eq!(
                blk.capacity(),
                (BLOCKS * BLOCK / 512) as u64,
                "capacity via GET_CONFIG"
            );
            let mut model = initial;
            let mut buf = vec![0u8; BLOCK];
            for op in 0..OPS {
                let at = rng.below(BLOCKS as u64) as usize * BLOCK;
                if rng.below(2) == 0 {
                    rng.fill(&mut buf);
                    blk.write_blocks(at / 512, &buf).unwrap();
                    model[at..at + BLOCK].copy_from_slice(&buf);
                } else {
                    blk.read_blocks(at / 512, &mut buf).unwrap();
                    assert!(
                        buf == model[at..at + BLOCK],
                        "op {op}: block at {at} differs"
                    );
                }
            }
            blk.flush().unwrap();
            drop(blk);
            Pool::pool().detach();
            stop_ref.store(true, Ordering::Release);
            model
        });
        let model = front.join().unwrap();
        device.join().unwrap();
        model
    });
    assert_eq!(
        shared.guest_base(),
        GUEST_BASE,
        "the memory table followed the frontend's base"
    );
    assert_eq!(bridge.failure(), None);
    drop(bridge);
    let exit = daemon.terminate(Duration::from_secs(30)).unwrap();
    assert!(exit.success(), "qemu-storage-daemon exited with {exit}");
    assert!(
        std::fs::read(&image).unwrap() == model,
        "the file differs from what was written"
    );
}
