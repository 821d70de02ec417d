//! Virtio entropy and console devices between emulator domains, served by rust-vmm's
//! unmodified vhost-user daemons (issue 14's emulator test 1, rng and console):
//! `staticbus run` of examples/virtio-rng and examples/virtio-console — virtio-drivers'
//! `VirtIORng` / `VirtIOConsole` in the frontend domain over virtio-msg on a `[[virtio]]`
//! device's region and event channel, the vhost-user bridge and vhost-device-rng /
//! vhost-device-console in the backend domain. Skipped with a message when a daemon is
//! missing (`scripts/virtio/install-vhost-device.sh rng|console`, found through
//! `STATICBUS_VHOST_DEVICE_RNG` / `_CONSOLE` or PATH), unless
//! `STATICBUS_REQUIRE_VHOST_DAEMONS=1` (CI) makes that a failure.

mod emu_virtio;

use emu_virtio::{build_programs, daemon, daemon_copy, field, line, run_dir, run_example};

/// One run of examples/virtio-rng with `rng` as the daemon; the frontend's digest line.
fn rng_run(rng: &std::path::Path) -> String {
    let dir = run_dir();
    let copy = daemon_copy(rng, dir.path());
    let out = run_example(
        "virtio-rng",
        &[],
        dir.path(),
        &[("STATICBUS_VHOST_DEVICE_RNG", &copy)],
        &["app", "backend"],
        |_| {},
    );
    let pass = "RESULT PASS virtio-rng ";
    // What examples/virtio-rng/system.toml asks for: 64 KiB in 16 requests of 4 KiB, all
    // filled; every byte value seen, no 64-byte block twice (the program checks both).
    assert_eq!(field(&out, "app", pass, "bytes"), "65536", "{out}");
    assert_eq!(field(&out, "app", pass, "requests"), "16", "{out}");
    assert_eq!(field(&out, "app", pass, "distinct"), "256", "{out}");
    assert_eq!(field(&out, "app", pass, "blocks"), "1024", "{out}");
    // The daemon filled the buffers: the bridge saw its completions.
    let calls: u64 = field(&out, "backend", "PASS ", "calls").parse().unwrap();
    assert!(calls >= 16, "{calls} completions for 16 requests\n{out}");
    assert!(
        line(
            &out,
            "backend",
            "serving virtio device `rng` (rng, region `virtio-rng`, epoch 1)"
        )
        .ends_with(&copy.display().to_string()),
        "{out}"
    );
    line(&out, "app", "virtio-rng: digest ").to_string()
}

#[test]
fn virtio_rng_between_domains_through_vhost_device_rng() {
    let Some(rng) = daemon(
        "vhost-device-rng",
        "STATICBUS_VHOST_DEVICE_RNG",
        "scripts/virtio/install-vhost-device.sh rng",
    ) else {
        return;
    };
    build_programs();
    // Two runs, two different streams: the bytes are the daemon's entropy, not a fixed
    // pattern (nor a buffer nobody wrote: the program's histogram check).
    let (a, b) = (rng_run(&rng), rng_run(&rng));
    assert!(
        a.ends_with("(FNV-1a of the 65536 bytes)"),
        "the digest line: {a}"
    );
    assert_ne!(a, b, "two runs read the same 64 KiB");
}

#[test]
fn virtio_console_between_domains_through_vhost_device_console() {
    let Some(console) = daemon(
        "vhost-device-console",
        "STATICBUS_VHOST_DEVICE_CONSOLE",
        "scripts/virtio/install-vhost-device.sh console",
    ) else {
        return;
    };
    build_programs();
    let dir = run_dir();
    let copy = daemon_copy(&console, dir.path());
    let out = run_example(
        "virtio-console",
        &[],
        dir.path(),
        &[("STATICBUS_VHOST_DEVICE_CONSOLE", &copy)],
        &["app", "backend"],
        |_| {},
    );
    // Sent by the frontend byte by byte, printed by the daemon on its terminal, echoed in
    // upper case by the backend's end of the terminal, typed into the daemon, received by
    // the frontend: every byte checked on arrival, the text whole at the end.
    assert_eq!(
        line(&out, "app", "PASS "),
        "PASS virtio-console-frontend sent=30 received=30 text=\"HELLO FROM THE FRONTEND DOMAIN\"",
        "{out}"
    );
    assert_eq!(field(&out, "backend", "PASS ", "echoed"), "30", "{out}");
    assert_eq!(
        field(&out, "backend", "PASS ", "device"),
        "console",
        "{out}"
    );
}
