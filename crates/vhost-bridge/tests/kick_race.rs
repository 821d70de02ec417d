//! A kick written right after `DRIVER_OK` reaches a daemon that has no `REPLY_ACK`
//! (rust-vmm's vhost-device-rng 0.1.0 offers only `MQ`).
//!
//! Without `REPLY_ACK` no request that starts a ring has an answer, so `DRIVER_OK` could
//! return while SET_VRING_KICK … SET_VRING_ENABLE still sat unread in the daemon's
//! socket. vhost-user-backend registers the kick eventfd when it handles SET_VRING_KICK;
//! its queue thread then reads a kick that is already there, finds the ring not yet
//! enabled (SET_VRING_ENABLE comes three requests later) and drops it. Nothing kicks again
//! until the driver adds another buffer, so a driver waiting for its first request hangs:
//! the xen-linux-virtio-rng boot that hung in one boot in three. The daemon is stopped
//! (SIGSTOP) over `DRIVER_OK` and the first kick, so the race goes the bad way every time
//! unless the bridge waits for the daemon to have taken the ring requests before
//! `set_status` returns.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use staticbus_vhost_bridge::{status, Bridge, Daemon, Options, QueueConfig, SharedRegion};
use vm_memory::{Bytes, GuestAddress};

const BASE: u64 = 0x4000_0000;
const SIZE: u16 = 16;
const DESC: u64 = BASE + 0x1000;
const AVAIL: u64 = BASE + 0x2000;
const USED: u64 = BASE + 0x3000;
const BUF: u64 = BASE + 0x4000;
/// `VIRTQ_DESC_F_WRITE`.
const WRITE: u16 = 2;

/// The bridge's mapping is addressed by region offset.
fn at(gpa: u64) -> GuestAddress {
    GuestAddress(gpa - BASE)
}

fn signal(daemon: &Daemon, sig: Signal) {
    let pid = Pid::from_raw(daemon.id() as i32).unwrap();
    kill_process(pid, sig).unwrap();
}

#[test]
fn a_kick_right_after_driver_ok_is_served_by_a_daemon_without_reply_ack() {
    let Some(rng_daemon) = common::vhost_device("rng") else {
        return;
    };
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(&rng_daemon);
        cmd.arg("--socket-path").arg(dir.path().join("rng.sock"));
        let daemon =
            Daemon::spawn(cmd, &dir.path().join("rng.sock0"), Duration::from_secs(30)).unwrap();
        let region = Arc::new(SharedRegion::memfd("kick-race", 0x8000, BASE).unwrap());
        let mem = region.memory();
        let bridge = Arc::new(
            Bridge::connect(daemon.socket(), Arc::clone(&region), Options::new(4, 1)).unwrap(),
        );

        bridge
            .set_status(status::ACKNOWLEDGE | status::DRIVER)
            .unwrap();
        bridge.set_driver_features(1 << 32).unwrap();
        let negotiating = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        bridge.set_status(negotiating).unwrap();
        assert_eq!(bridge.status(), negotiating);
        bridge
            .set_queue(
                0,
                QueueConfig {
                    size: SIZE,
                    desc: DESC,
                    driver: AVAIL,
                    device: USED,
                },
            )
            .unwrap();

        // The daemon reads nothing until it is continued, 50 ms into DRIVER_OK.
        signal(&daemon, Signal::STOP);
        let resumer = {
            let pid = daemon.id();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::CONT).unwrap();
            })
        };
        bridge.set_status(negotiating | status::DRIVER_OK).unwrap();
        // One 64-byte device-writable buffer, made available, and its kick.
        mem.write_obj(BUF, at(DESC)).unwrap();
        mem.write_obj(64u32, at(DESC + 8)).unwrap();
        mem.write_obj(WRITE, at(DESC + 12)).unwrap();
        mem.write_obj(0u16, at(AVAIL + 4)).unwrap();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.write_obj(1u16, at(AVAIL + 2)).unwrap();
        bridge.notify(0).unwrap();
        resumer.join().unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let used: u16 = mem.read_obj(at(USED + 2)).unwrap();
            if used == 1 {
                let len: u32 = mem.read_obj(at(USED + 8)).unwrap();
                assert_eq!(
                    len, 64,
                    "round {round}: the daemon filled {len} of 64 bytes"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the request was never served (used idx {used}, {:?}): the kick \
                 reached the daemon before SET_VRING_ENABLE and was dropped",
                bridge.stats()
            );
            let _ = bridge.wait(Duration::from_millis(50));
        }
        assert_eq!(bridge.failure(), None);
    }
}
