//! virtio-drivers' VirtIORng ↔ the bridge ↔ rust-vmm's vhost-device-rng.

mod common;

use std::sync::Arc;
use std::time::Duration;

use staticbus_vhost_bridge::driver::{arena, BridgeTransport, ShmHal};
use staticbus_vhost_bridge::{Bridge, Daemon, Options};
use virtio_drivers::device::rng::VirtIORng;

#[test]
fn entropy_of_the_requested_length_and_not_constant() {
    let Some(rng_daemon) = common::vhost_device("rng") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // vhost-device-rng appends the socket's index (0) to the path it is given.
    let given = dir.path().join("rng.sock");
    let socket = dir.path().join("rng.sock0");
    let mut cmd = std::process::Command::new(&rng_daemon);
    cmd.arg("--socket-path").arg(&given);
    let _daemon = Daemon::spawn(cmd, &socket, Duration::from_secs(30)).unwrap();
    let bridge = Arc::new(
        Bridge::connect(&socket, Arc::clone(arena().region()), Options::new(4, 1)).unwrap(),
    );

    let b = Arc::clone(&bridge);
    let samples = common::within(Duration::from_secs(120), "entropy requests", move || {
        let transport = BridgeTransport::new(b).unwrap();
        let mut rng = VirtIORng::<ShmHal, _>::new(transport).unwrap();
        let mut samples = Vec::new();
        for len in [1usize, 17, 512, 4096, 4096, 16384] {
            let mut buf = vec![0u8; len];
            let n = rng.request_entropy(&mut buf).unwrap();
            assert_eq!(n, len, "the device filled {n} of the {len} bytes asked for");
            samples.push(buf);
        }
        samples
    });
    assert_eq!(bridge.failure(), None);

    // Not constant: the large samples use most byte values and differ from each other.
    for s in samples.iter().filter(|s| s.len() >= 4096) {
        let mut seen = [false; 256];
        s.iter().for_each(|&b| seen[usize::from(b)] = true);
        let distinct = seen.iter().filter(|&&x| x).count();
        assert!(
            distinct > 200,
            "only {distinct} distinct byte values in {} random bytes",
            s.len()
        );
    }
    assert_ne!(
        samples[3], samples[4],
        "two 4 KiB requests returned the same bytes"
    );
    assert!(
        samples[2].iter().any(|&b| b != samples[2][0]),
        "512 equal bytes"
    );
}
