//! virtio-drivers' VirtIOBlk ↔ the bridge ↔ qemu-storage-daemon's vhost-user-blk export of
//! a file: random 4 KiB writes and reads, checked as they go and against the file itself
//! after the daemon exited.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use staticbus_vhost_bridge::driver::{arena, Blk};
use staticbus_vhost_bridge::{Bridge, Daemon, Options};

const BLOCK: usize = 4096;
const BLOCKS: u64 = 4096; // a 16 MiB file
const WRITES: usize = 10_000;
const READS: usize = 10_000;

#[test]
fn random_4k_writes_and_reads_match_the_file() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    let mut rng = Rng(0x5eed_0001);

    // The file starts with known random contents, so reads of untouched blocks check too.
    let mut model = vec![0u8; BLOCKS as usize * BLOCK];
    rng.fill(&mut model);
    std::fs::write(&image, &model).unwrap();

    let mut daemon = Daemon::spawn(
        common::qsd_command(&qsd, &image, &socket),
        &socket,
        Duration::from_secs(30),
    )
    .unwrap();
    let bridge = Arc::new(
        Bridge::connect(&socket, Arc::clone(arena().region()), Options::new(2, 1)).unwrap(),
    );
    let mut blk = Blk::new(Arc::clone(&bridge), Duration::from_secs(30)).unwrap();
    assert_eq!(
        blk.capacity(),
        BLOCKS * BLOCK as u64 / 512,
        "capacity from GET_CONFIG"
    );

    let (mut writes, mut reads) = (0, 0);
    let mut buf = vec![0u8; BLOCK];
    while writes < WRITES || reads < READS {
        let block = rng.below(BLOCKS) as usize;
        let at = block * BLOCK;
        let write = reads >= READS || (writes < WRITES && rng.below(2) == 0);
        if write {
            rng.fill(&mut buf);
            blk.write(at as u64, &buf)
                .unwrap_or_else(|e| panic!("write #{writes} of block {block}: {e}"));
            model[at..at + BLOCK].copy_from_slice(&buf);
            writes += 1;
        } else {
            blk.read(at as u64, &mut buf)
                .unwrap_or_else(|e| panic!("read #{reads} of block {block}: {e}"));
            assert!(
                buf == model[at..at + BLOCK],
                "read #{reads}: block {block} differs from what was written"
            );
            reads += 1;
        }
    }
    // The whole disk again with many reads in flight, in batches of 64.
    let mut bufs = vec![vec![0u8; BLOCK]; 64];
    for first in (0..BLOCKS as usize).step_by(64) {
        let mut batch: Vec<(u64, &mut [u8])> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (((first + i) * BLOCK) as u64, b.as_mut_slice()))
            .collect();
        blk.read_many(&mut batch).unwrap();
        for (i, b) in bufs.iter().enumerate() {
            let at = (first + i) * BLOCK;
            assert!(
                b[..] == model[at..at + BLOCK],
                "batched read: block {} differs",
                first + i
            );
        }
    }
    blk.flush().unwrap();
    let stats = bridge.stats();
    let requests = (WRITES + READS + 1) as u64 + BLOCKS;
    assert!(
        stats.kicks > 0
            && stats.kicks <= requests
            && stats.calls > 0
            && stats.call_wakeups <= stats.calls,
        "notifications {stats:?} for {requests} requests"
    );
    drop(blk);
    assert_eq!(
        bridge.queue(0),
        None,
        "dropping the driver stops and forgets its queue"
    );
    bridge.set_status(0).unwrap();
    assert_eq!(bridge.failure(), None);
    drop(bridge);

    let status = daemon.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "qemu-storage-daemon exited with {status}");
    let file = std::fs::read(&image).unwrap();
    assert_eq!(file.len(), model.len());
    let bad: Vec<usize> = (0..BLOCKS as usize)
        .filter(|b| file[b * BLOCK..(b + 1) * BLOCK] != model[b * BLOCK..(b + 1) * BLOCK])
        .collect();
    assert!(
        bad.is_empty(),
        "{} blocks of the file differ from what was written, first {:?}",
        bad.len(),
        &bad[..bad.len().min(8)]
    );
}
