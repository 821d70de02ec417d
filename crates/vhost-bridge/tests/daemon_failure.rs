//! A daemon that dies or stops: the bridge reports it (no hang, every wait bounded), and a
//! restarted daemon is re-attached by a device reset, with every acknowledged write kept.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use staticbus_vhost_bridge::driver::{arena, Blk};
use staticbus_vhost_bridge::{status, Bridge, Daemon, Error, Options};

const BLOCK: usize = 4096;
const BLOCKS: u64 = 1024; // 4 MiB

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

#[test]
fn killed_mid_stream_then_restarted_and_reattached() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    let mut rng = Rng(0x5eed_0004);
    let mut model = vec![0u8; BLOCKS as usize * BLOCK];
    rng.fill(&mut model);
    std::fs::write(&image, &model).unwrap();
    let spawn = || {
        Daemon::spawn(
            common::qsd_command(&qsd, &image, &socket),
            &socket,
            Duration::from_secs(30),
        )
        .unwrap()
    };

    let mut daemon = spawn();
    let bridge = Arc::new(
        Bridge::connect(&socket, Arc::clone(arena().region()), Options::new(2, 1)).unwrap(),
    );
    let mut blk = Blk::new(Arc::clone(&bridge), Duration::from_secs(30)).unwrap();

    // Writes stream; after the 50th, another thread kills the daemon at a moment of its
    // own choosing, so the kill lands mid-stream (between requests or during one).
    let pid = daemon.id();
    let mut killer = None;
    let mut buf = vec![0u8; BLOCK];
    let mut acknowledged = 0usize;
    let (failure, in_flight) = loop {
        assert!(
            acknowledged < 2_000_000,
            "the daemon was killed but every write still succeeded"
        );
        if acknowledged == 50 && killer.is_none() {
            killer = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                signal(pid, rustix::process::Signal::KILL);
            }));
        }
        let block = rng.below(BLOCKS) as usize;
        rng.fill(&mut buf);
        match blk.write((block * BLOCK) as u64, &buf) {
            Ok(()) => {
                model[block * BLOCK..(block + 1) * BLOCK].copy_from_slice(&buf);
                acknowledged += 1;
            }
            Err(e) => break (e, (block, buf.clone())),
        }
    };
    killer
        .expect("the kill came after 50 writes")
        .join()
        .unwrap();
    assert!(
        acknowledged >= 50,
        "only {acknowledged} writes completed before the kill"
    );
    assert!(
        matches!(failure, Error::DaemonGone { .. }),
        "the failure is {failure:?}"
    );
    assert_ne!(
        bridge.status() & status::DEVICE_NEEDS_RESET,
        0,
        "status {:#x}",
        bridge.status()
    );
    // Until a reset, every request fails at once with the cause.
    match blk.read(0, &mut buf) {
        Err(Error::NeedsReset { cause }) => {
            assert!(cause.contains("closed its connection"), "{cause}")
        }
        other => panic!("a request after the failure gave {other:?}"),
    }
    drop(blk);
    daemon.kill().unwrap();

    // A restarted daemon on the same socket; the reset in VirtIOBlk's init re-attaches.
    let mut daemon = spawn();
    let mut blk = Blk::new(Arc::clone(&bridge), Duration::from_secs(30)).unwrap();
    assert_eq!(bridge.failure(), None);
    // The write in flight at the kill may or may not have reached the file.
    let (block, new) = in_flight;
    let mut got = vec![0u8; BLOCK];
    blk.read((block * BLOCK) as u64, &mut got).unwrap();
    let old = &model[block * BLOCK..(block + 1) * BLOCK];
    assert!(
        got == old || got == new,
        "block {block} in flight at the kill is neither old nor new"
    );
    model[block * BLOCK..(block + 1) * BLOCK].copy_from_slice(&got);
    // Every acknowledged write is there, read through the new daemon.
    for b in 0..BLOCKS as usize {
        blk.read((b * BLOCK) as u64, &mut got).unwrap();
        assert!(
            got == model[b * BLOCK..(b + 1) * BLOCK],
            "block {b} lost an acknowledged write"
        );
    }
    // And it carries on.
    for _ in 0..500 {
        let block = rng.below(BLOCKS) as usize;
        rng.fill(&mut buf);
        blk.write((block * BLOCK) as u64, &buf).unwrap();
        model[block * BLOCK..(block + 1) * BLOCK].copy_from_slice(&buf);
    }
    drop(blk);
    bridge.set_status(0).unwrap();
    let exit = daemon.terminate(Duration::from_secs(30)).unwrap();
    assert!(exit.success(), "qemu-storage-daemon exited with {exit}");
    assert!(
        std::fs::read(&image).unwrap() == model,
        "the file differs from the acknowledged writes"
    );
}

#[test]
fn a_stopped_daemon_times_out_instead_of_hanging() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let mut daemon = Daemon::spawn(
        common::qsd_command(&qsd, &image, &socket),
        &socket,
        Duration::from_secs(30),
    )
    .unwrap();
    let mut options = Options::new(2, 1);
    options.request_timeout = Duration::from_secs(2);
    let bridge = Arc::new(Bridge::connect(&socket, Arc::clone(arena().region()), options).unwrap());
    let mut blk = Blk::new(Arc::clone(&bridge), Duration::from_secs(2)).unwrap();
    let mut buf = vec![0u8; BLOCK];
    blk.read(0, &mut buf).unwrap();

    signal(daemon.id(), rustix::process::Signal::STOP);
    // A block request waits at most its timeout.
    match blk.read(BLOCK as u64, &mut buf) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a request to a stopped daemon gave {other:?}"),
    }
    // A control request waits at most the request timeout, then the device needs a reset;
    // the reset's re-attach times out the same way.
    drop(blk);
    assert!(
        matches!(bridge.failure(), Some(ref f) if f.contains("did not complete")),
        "stopping the queue of a stopped daemon: {:?}",
        bridge.failure()
    );
    assert_ne!(bridge.status() & status::DEVICE_NEEDS_RESET, 0);
    match bridge.set_status(0) {
        Err(Error::Timeout { what, .. }) => assert_eq!(what, "GET_FEATURES"),
        other => panic!("a reset with a stopped daemon gave {other:?}"),
    }
    signal(daemon.id(), rustix::process::Signal::CONT);
    daemon.kill().unwrap();
}
