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

/// examples/virtio-rng-restart: the backend domain SIGKILLs itself (bridge and daemon at
/// the same instant) after 60 units of work and the runner re-creates it
/// (`--restart-on-crash`); the frontend sees the new epoch mid-stream, re-initialises and
/// asks again, and the stream is whole: 65,536 bytes in 64 full requests, every check of
/// the program passed, the new daemon's completions counted by the second backend life.
#[test]
fn virtio_rng_keeps_delivering_across_a_backend_domain_restart() {
    let Some(rng) = daemon(
        "vhost-device-rng",
        "STATICBUS_VHOST_DEVICE_RNG",
        "scripts/virtio/install-vhost-device.sh rng",
    ) else {
        return;
    };
    build_programs();
    let dir = run_dir();
    let copy = daemon_copy(&rng, dir.path());
    let out = run_example(
        "virtio-rng-restart",
        &["--restart-on-crash"],
        dir.path(),
        &[("STATICBUS_VHOST_DEVICE_RNG", &copy)],
        &["app", "backend"],
        |_| {},
    );
    assert_eq!(
        out.matches("[backend] (killed by signal 9; restarted, #1)")
            .count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("[backend] serving virtio device `rng` (rng, region `virtio-rng`, epoch 2)"),
        "{out}"
    );
    let pass = "RESULT PASS virtio-rng ";
    assert_eq!(field(&out, "app", pass, "bytes"), "65536", "{out}");
    assert_eq!(field(&out, "app", pass, "requests"), "64", "{out}");
    assert_eq!(field(&out, "app", pass, "distinct"), "256", "{out}");
    assert_eq!(field(&out, "app", pass, "blocks"), "1024", "{out}");
    let resets: u64 = field(&out, "app", pass, "resets").parse().unwrap();
    assert!(resets >= 1, "{out}");
    // Mid-stream: after some requests were filled and before the last.
    let at: u64 = line(&out, "app", "virtio-rng: request ")
        .strip_prefix("virtio-rng: request ")
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no restart line\n{out}"));
    assert!(at > 1 && at <= 64, "{out}");
    // The restarted backend's daemon filled the rest.
    let calls: u64 = field(&out, "backend", "PASS ", "calls").parse().unwrap();
    assert!(calls >= 64 - at, "{out}");
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

/// Checks that the terminal's log `log` holds exactly the lines `lines`, in order, each
/// once, each preceded by at most one prefix of itself (what a dying daemon had written of
/// a line that was then sent again); returns how many such prefixes it found.
fn delivered_exactly(log: &str, lines: &[String]) -> usize {
    let mut rest = log;
    let mut fragments = 0;
    for l in lines {
        let at = rest
            .find(l.as_str())
            .unwrap_or_else(|| panic!("line {l:?} was never delivered; the log:\n{log}"));
        let before = &rest[..at];
        assert!(
            before.is_empty() || l.starts_with(before),
            "before {l:?} the terminal got {before:?}, not a prefix of it; the log:\n{log}"
        );
        fragments += usize::from(!before.is_empty());
        rest = &rest[at + l.len()..];
    }
    assert!(
        rest.is_empty(),
        "after the last line: {rest:?}; the log:\n{log}"
    );
    fragments
}

/// examples/virtio-console-restart: the backend domain SIGKILLs itself (bridge, daemon and
/// the terminal's echo) after 200 units of work, mid-line, and the runner re-creates it.
/// The frontend sees the new epoch, re-initialises and sends the line it was in again.
/// "Told sent" is a line whose every byte's transmit buffer the device gave back, echo
/// received, in one life of the device; the frontend passes only once all 4 lines were, so
/// the terminal (its log, written by both lives of the backend) must hold exactly the 4
/// lines, in order, each once — a line sent again may be preceded only by the prefix of
/// itself the dying daemon had written.
#[test]
fn virtio_console_delivers_every_line_across_a_backend_domain_restart() {
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
        "virtio-console-restart",
        &["--restart-on-crash"],
        dir.path(),
        &[("STATICBUS_VHOST_DEVICE_CONSOLE", &copy)],
        &["app", "backend"],
        |_| {},
    );
    assert_eq!(
        out.matches("[backend] (killed by signal 9; restarted, #1)")
            .count(),
        1,
        "{out}"
    );
    assert!(
        out.contains(
            "[backend] serving virtio device `console` (console, region `virtio-console`, epoch 2)"
        ),
        "{out}"
    );
    let pass = "PASS virtio-console-frontend ";
    assert_eq!(field(&out, "app", pass, "lines"), "4", "{out}");
    let lines: Vec<String> = (1..=4)
        .map(|k| format!("{k}: hello from the frontend domain\n"))
        .collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    assert_eq!(field(&out, "app", pass, "sent"), bytes.to_string(), "{out}");
    assert_eq!(
        field(&out, "app", pass, "received"),
        bytes.to_string(),
        "{out}"
    );
    let resets: u32 = field(&out, "app", pass, "resets").parse().unwrap();
    assert!(resets >= 1, "{out}");
    // The restart came mid-stream, in a line the frontend then sent again.
    let retried: usize = line(&out, "app", "line ")
        .strip_prefix("line ")
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no restart line\n{out}"));
    assert!((1..=4).contains(&retried), "{out}");
    let log = std::fs::read_to_string(dir.path().join("terminal.log")).unwrap();
    let fragments = delivered_exactly(&log, &lines);
    assert!(
        fragments <= 1,
        "one restart, at most one interrupted line:\n{log}"
    );
}

#[test]
fn the_delivery_check_refuses_a_lost_a_doubled_or_a_foreign_line() {
    let lines: Vec<String> = ["a1\n", "b2\n"].iter().map(|s| s.to_string()).collect();
    assert_eq!(delivered_exactly("a1\nb2\n", &lines), 0);
    assert_eq!(delivered_exactly("a1\nbb2\n", &lines), 1);
    for bad in ["a1\n", "a1\nb2\nb2\n", "a1\nxb2\n", "b2\na1\n"] {
        let r = std::panic::catch_unwind(|| delivered_exactly(bad, &lines));
        assert!(r.is_err(), "{bad:?} passed");
    }
}
