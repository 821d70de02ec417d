//! virtio-drivers' block driver, unchanged, against the RAM-disk device side: two domains
//! as threads over one region and a static event channel on the fake bus.

mod common;

use common::*;
use staticbus_guest::fake::{Backing, Bus, DEADLOCK};
use staticbus_guest::Events;
use staticbus_virtio_msg::backends::{RamBlk, SECTOR};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::hal::{PoolOf, RegionHal};
use virtio_drivers::device::blk::VirtIOBlk;

const DISK: usize = 1 << 20;
const BLOCK: usize = 4096;

pool!(BlkPool);

#[test]
fn random_4k_writes_and_reads_match_the_ram_disk() {
    let ops = if cfg!(miri) { 12 } else { 10_000 };
    let [fe, be] = manifests();
    let bus = Bus::new(&[fe, be]);
    let mem = Backing::new(SIZE);
    let (dfe, dbe) = (bus.domain(fe.domid), bus.domain(be.domid));
    let (mem, dbe) = (&mem, &dbe);
    let (disk, served, model) = std::thread::scope(|s| {
        let device = s.spawn(move || {
            let mut disk = vec![0u8; DISK];
            dbe.clear_initial(BE_PORT);
            let blk = RamBlk::new(&mut disk, b"staticbus-ram0");
            let mut dev = DeviceTransport::attach(mem.region(SIZE), dbe, BE_PORT, blk).unwrap();
            assert_eq!(dev.run(), DEADLOCK, "serves until the frontend is gone");
            assert_eq!(dev.faults(), Default::default(), "a correct frontend");
            let served = dev.backend().served;
            dev.detach();
            (disk, served)
        });
        let front = s.spawn(move || {
            let region = mem.region(SIZE);
            BlkPool::pool().attach(region, GUEST_BASE);
            let link = link(region, &dfe);
            let mut blk = VirtIOBlk::<RegionHal<BlkPool>, _>::new(link.transport().unwrap())
                .expect("driver init");
            assert_eq!(blk.capacity(), (DISK / SECTOR) as u64);
            assert!(!blk.readonly());
            let mut id = [0u8; 20];
            let n = blk.device_id(&mut id).unwrap();
            assert_eq!(&id[..n], b"staticbus-ram0");
            let mut model = vec![0u8; DISK];
            let mut rng = Prng(0x005e_ed0f_b10c);
            let mut buf = vec![0u8; BLOCK];
            let blocks = DISK / BLOCK;
            for op in 0..ops {
                let b = (rng.next() % blocks as u64) as usize;
                let at = b * BLOCK;
                if rng.next() % 2 == 0 {
                    for chunk in buf.chunks_mut(8) {
                        chunk.copy_from_slice(&rng.next().to_le_bytes());
                    }
                    blk.write_blocks(at / SECTOR, &buf).unwrap();
                    model[at..at + BLOCK].copy_from_slice(&buf);
                } else {
                    blk.read_blocks(at / SECTOR, &mut buf).unwrap();
                    assert!(buf == model[at..at + BLOCK], "op {op}: block {b} differs");
                }
            }
            blk.flush().unwrap();
            // A read past the end fails with an I/O error, and the device carries on.
            assert!(blk.read_blocks(DISK / SECTOR, &mut buf).is_err());
            blk.read_blocks(0, &mut buf).unwrap();
            assert!(buf == model[..BLOCK]);
            drop(blk);
            assert_eq!(BlkPool::pool().used_pages(), 0, "every DMA page came back");
            BlkPool::pool().detach();
            model
        });
        let model = front.join().unwrap();
        let (disk, served) = device.join().unwrap();
        (disk, served, model)
    });
    assert!(disk == model, "the RAM disk holds exactly what was written");
    assert_eq!(
        served[0] + served[1],
        ops as u64 + 1,
        "every read and write reached the disk"
    );
    assert_eq!((served[2], served[3], served[4]), (1, 1, 1));
    assert!(bus.sent() > 2 * ops as u64, "sent {}", bus.sent());
}
