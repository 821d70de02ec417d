//! What the bridge refuses from a driver before the daemon sees it, against a live daemon
//! (qemu-storage-daemon): queues outside the region or misaligned, bad sizes, features not
//! offered, status bits cleared or out of order, config accesses past 256 bytes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use staticbus_vhost_bridge::{status, Bridge, Daemon, Error, Options, QueueConfig, SharedRegion};

fn refused(r: Result<(), Error>, needle: &str) {
    match r {
        Err(Error::Driver { why }) => assert!(why.contains(needle), "'{why}' lacks '{needle}'"),
        other => panic!("expected a refusal naming '{needle}', got {other:?}"),
    }
}

#[test]
fn driver_mistakes_are_refused_with_the_reason_and_the_device_stays_usable() {
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let _daemon = Daemon::spawn(
        common::qsd_command(&qsd, &image, &socket),
        &socket,
        Duration::from_secs(30),
    )
    .unwrap();
    const BASE: u64 = 0x8000_0000;
    let region = Arc::new(SharedRegion::memfd("checks", 1 << 20, BASE).unwrap());
    let bridge = Bridge::connect(&socket, region, Options::new(2, 1)).unwrap();

    let offered = bridge.device_features();
    assert_ne!(
        offered & (1 << 32),
        0,
        "qemu-storage-daemon offers VERSION_1"
    );
    assert_eq!(
        offered & (1 << 30),
        0,
        "vhost-user's PROTOCOL_FEATURES bit is not offered"
    );

    refused(bridge.set_driver_features(1 << 32), "DRIVER is set");
    bridge
        .set_status(status::ACKNOWLEDGE | status::DRIVER)
        .unwrap();
    let missing = (0..64)
        .map(|b| 1u64 << b)
        .find(|b| offered & b == 0)
        .unwrap();
    refused(bridge.set_driver_features(missing), "not offered");
    bridge.set_driver_features(1 << 32).unwrap();
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                size: 8,
                desc: BASE,
                driver: BASE + 0x1000,
                device: BASE + 0x2000,
            },
        ),
        "before FEATURES_OK",
    );
    refused(
        bridge.set_status(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK),
        "without FEATURES_OK",
    );
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    bridge.set_status(ok).unwrap();
    assert_eq!(bridge.status(), ok);
    refused(
        bridge.set_status(status::ACKNOWLEDGE | status::FEATURES_OK),
        "clears bits",
    );

    let good = QueueConfig {
        size: 8,
        desc: BASE,
        driver: BASE + 0x1000,
        device: BASE + 0x2000,
    };
    refused(bridge.set_queue(1, good), "does not exist");
    refused(
        bridge.set_queue(0, QueueConfig { size: 6, ..good }),
        "power of two",
    );
    refused(
        bridge.set_queue(0, QueueConfig { size: 512, ..good }),
        "power of two up to 256",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                desc: BASE - 0x1000,
                ..good
            },
        ),
        "descriptor table",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                desc: BASE + (1 << 20) - 64,
                ..good
            },
        ),
        "outside the shared region",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                driver: u64::MAX - 4,
                ..good
            },
        ),
        "driver area",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                device: BASE + (1 << 20) - 8,
                ..good
            },
        ),
        "device area",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                desc: BASE + 8,
                ..good
            },
        ),
        "16-byte aligned",
    );
    refused(
        bridge.set_queue(
            0,
            QueueConfig {
                device: BASE + 0x2002,
                ..good
            },
        ),
        "4-byte aligned",
    );
    assert_eq!(bridge.queue(0), None, "nothing refused was kept");

    let mut buf = [0u8; 8];
    refused(bridge.read_config(250, &mut buf), "256-byte config space");
    refused(bridge.read_config(0, &mut []), "0 bytes");
    assert!(
        matches!(bridge.set_guest_base(BASE + 0x1001), Err(Error::Region { ref why }) if why.contains("multiple of")),
        "an unaligned guest base"
    );
    // None of this reached the daemon or broke the session: the device still works.
    assert_eq!(bridge.failure(), None);
    bridge.read_config(0, &mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), (1 << 20) / 512, "capacity");
    bridge.set_queue(0, good).unwrap();
    refused(bridge.set_guest_base(0x1000), "while queues are set");
    bridge.set_status(ok | status::DRIVER_OK).unwrap();
    bridge.set_status(0).unwrap();
    assert_eq!(
        (bridge.status(), bridge.queue(0), bridge.failure()),
        (0, None, None)
    );
}

#[test]
fn wait_with_wakes_on_an_extra_fd_and_names_it() {
    use std::os::fd::AsFd;
    let Some(qsd) = common::qemu_storage_daemon() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.raw");
    let socket = dir.path().join("blk.sock");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let _daemon = Daemon::spawn(
        common::qsd_command(&qsd, &image, &socket),
        &socket,
        Duration::from_secs(30),
    )
    .unwrap();
    let region = Arc::new(SharedRegion::memfd("wait-with", 1 << 20, 0x8000_0000).unwrap());
    let bridge = Bridge::connect(&socket, region, Options::new(2, 1)).unwrap();
    let flags = rustix::event::EventfdFlags::NONBLOCK;
    let (quiet, rung) = (
        rustix::event::eventfd(0, flags).unwrap(),
        rustix::event::eventfd(0, flags).unwrap(),
    );
    // Nothing readable: the wait runs out and says so.
    let w = bridge
        .wait_with(&[quiet.as_fd(), rung.as_fd()], Duration::from_millis(20))
        .unwrap();
    assert_eq!(w, staticbus_vhost_bridge::Wake::default());
    // The second fd rung: the wait names it, without reading it.
    rustix::io::write(&rung, &1u64.to_ne_bytes()).unwrap();
    let w = bridge
        .wait_with(&[quiet.as_fd(), rung.as_fd()], Duration::from_secs(30))
        .unwrap();
    assert_eq!((w.used, w.extra), (0, 0b10));
    let w = bridge
        .wait_with(&[quiet.as_fd(), rung.as_fd()], Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        w.extra, 0b10,
        "still readable: the bridge does not consume extras"
    );
    assert_eq!(bridge.failure(), None);
}
