//! The Rust manifests staticbus generates compile against this crate and answer lookups.
//!
//! The files under `generated/` are emitter output for the hand-built system of
//! `crates/config/tests/emit.rs` (three domains, a queue, a blob with two readers, a
//! low-level event channel, a heap-form region, a roleless region); that test fails if they
//! are stale.

use staticbus_manifest::{
    Channel, Manifest, Protocol, Role, ShmRole, Virtio, VirtioRole, VirtioServe, DOMID_IO,
    FORMAT_VERSION,
};

mod sensor {
    include!("generated/sensor.rs");
}
mod ctrl_plane {
    include!("generated/ctrl_plane.rs");
}
mod logger {
    include!("generated/logger.rs");
}

const SYSTEM: &str = "lab \"demo\" \\ é";

// Lookups resolve at compile time.
const SENSOR_QUEUE: &Channel = sensor::MANIFEST.channel("cmd-queue").unwrap();
const SENSOR_QUEUE_PORT: u32 = SENSOR_QUEUE.peer("ctrl-plane").unwrap().local_port;

#[test]
fn headers() {
    for (m, name, domid) in [
        (&sensor::MANIFEST, "sensor", 1),
        (&ctrl_plane::MANIFEST, "ctrl-plane", 2),
        (&logger::MANIFEST, "logger", 3),
    ] {
        assert_eq!(m.format_version, FORMAT_VERSION);
        assert!(m.is_supported());
        assert_eq!(m.system, SYSTEM);
        assert_eq!(m.xen, "4.20");
        assert_eq!(m.domain, name);
        assert_eq!(m.domid, domid);
    }
}

#[test]
fn queue_both_ends_agree() {
    assert_eq!(SENSOR_QUEUE_PORT, 10);
    let p = sensor::MANIFEST.channel("cmd-queue").unwrap();
    let c = ctrl_plane::MANIFEST.channel("cmd-queue").unwrap();
    assert_eq!(p.protocol, Protocol::Queue);
    assert_eq!((p.role, c.role), (Role::Producer, Role::Consumer));
    assert_eq!(p.shm_id, c.shm_id);
    assert_eq!(p.size, 0x1000);
    let to_c = p.sole_peer().unwrap();
    let to_p = c.sole_peer().unwrap();
    assert_eq!(to_c.domain, "ctrl-plane");
    assert_eq!(to_c.role, Role::Consumer);
    assert_eq!(
        (to_c.local_port, to_c.remote_port),
        (to_p.remote_port, to_p.local_port)
    );
    assert!(logger::MANIFEST.channel("cmd-queue").is_none());
}

#[test]
fn blob_with_two_readers() {
    let w = ctrl_plane::MANIFEST.channel("config").unwrap();
    assert_eq!(w.protocol, Protocol::Blob);
    assert_eq!(w.role, Role::Writer);
    assert_eq!((w.writers, w.readers), (1, 2));
    assert_eq!(w.peers.len(), 2);
    assert!(w.sole_peer().is_none());
    for (reader, m, index) in [
        ("sensor", &sensor::MANIFEST, 0),
        ("logger", &logger::MANIFEST, 1),
    ] {
        let r = m.channel("config").unwrap();
        assert_eq!(r.role, Role::Reader);
        assert_eq!(r.index, index);
        let back = r.peer("ctrl-plane").unwrap();
        let fwd = w.peer(reader).unwrap();
        assert_eq!(back.local_port, fwd.remote_port);
        assert_eq!(back.remote_port, fwd.local_port);
        assert_eq!(w.peer_by_domid(m.domid), Some(fwd));
    }
    // The same region, at different guest addresses.
    assert_ne!(
        sensor::MANIFEST.channel("config").unwrap().guest_addr,
        logger::MANIFEST.channel("config").unwrap().guest_addr
    );
}

#[test]
fn regions() {
    let m: &Manifest = &sensor::MANIFEST;
    let q = m.region("cmd-queue").unwrap();
    assert_eq!(q.role, Some(ShmRole::Owner));
    assert_eq!(q.host_addr, Some(0x8000_0000));
    assert_eq!(q.channel, Some("cmd-queue"));
    let heap = m.region("scratch").unwrap();
    assert_eq!(heap.host_addr, None);
    assert_eq!(heap.guest_addr, 0x1_0000_0000);
    assert_eq!(heap.owner, "logger");
    assert_eq!(heap.owner_domid, 3);
    let io = m.region("dma*/io").unwrap();
    assert_eq!(io.role, None);
    assert_eq!(io.owner_domid, DOMID_IO);
    assert!(m.region("nope").is_none());
    assert_eq!(
        logger::MANIFEST.region("scratch").unwrap().role,
        Some(ShmRole::Owner)
    );
}

#[test]
fn evtchns() {
    let m = &sensor::MANIFEST;
    let ports: Vec<u32> = m.evtchns.iter().map(|e| e.local_port).collect();
    assert_eq!(ports, [10, 21, 30, 40]);
    let low = m.evtchn(30).unwrap();
    assert_eq!(low.channel, None);
    assert_eq!(low.remote_domain, "logger");
    assert!(!low.initially_pending);
    let back = logger::MANIFEST.evtchn(low.remote_port).unwrap();
    assert_eq!(back.remote_port, 30);
    assert!(back.initially_pending);
    assert_eq!(m.evtchn(21).unwrap().channel, Some("config"));
    assert!(m.evtchn(11).is_none());
}

// A device resolves at compile time on both sides.
const DISK: &Virtio = sensor::MANIFEST.virtio_device("disk").unwrap();

#[test]
fn virtio_device_on_both_sides() {
    let b = logger::MANIFEST.virtio_device("disk").unwrap();
    assert_eq!(
        (DISK.role, b.role),
        (VirtioRole::Frontend, VirtioRole::Backend)
    );
    assert_eq!(
        (DISK.local_port, DISK.remote_port),
        (b.remote_port, b.local_port)
    );
    assert_eq!((DISK.peer, b.peer), ("logger", "sensor"));
    assert_eq!(DISK.shm_id, b.shm_id);
    assert_eq!((DISK.device, DISK.device_id, DISK.queues), ("blk", 2, 1));
    assert_eq!(b.serve, VirtioServe::Builtin);
    // Its region and port are in the plain lists too.
    assert_eq!(
        sensor::MANIFEST.region(DISK.shm_id).unwrap().guest_addr,
        DISK.guest_addr
    );
    assert!(sensor::MANIFEST.evtchn(DISK.local_port).is_some());
    assert!(ctrl_plane::MANIFEST.virtio_device("disk").is_none());
    assert!(sensor::MANIFEST.virtio_device("cmd-queue").is_none());
}
