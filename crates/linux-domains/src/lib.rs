//! staticbus programs in a Linux domU on Xen: the `staticbus-programs` programs (the same
//! source the emulator's `staticbus-emu-domains` and the bare-metal `staticbus-xen-domains`
//! run) as static `aarch64-unknown-linux-musl` executables over
//! [`staticbus_guest_linux::LinuxPlatform`], and the initramfs `/init` that starts them
//! ([`init`]).
//!
//! Binaries: `linux-ping-pong`, `linux-queue-check`, `linux-log-check` (one per program),
//! `linux-vhost-bridge` (a virtio device served by a vhost-user daemon, [`vhost`]) and
//! `linux-init`. `staticbus boot` builds the ones a Linux domain's description names
//! and writes the initramfs:
//!
//! ```text
//! /init                       linux-init
//! /bin/<program>              the programs
//! /staticbus/manifest.json    the domain's manifest (staticbus build)
//! /lib/modules/NN-*.ko[.xz]   xen-evtchn, xen-privcmd, xen-shmem (+ .params files)
//! ```
//!
//! [`run`] is what every program binary does: opens the platform (which checks Xen, the
//! kernel, the modules, the regions and the ports against the manifest and fails with a
//! precise `RESULT FAIL …` line), prints what it found, runs the program with the
//! monotonic clock, its command-line words as [`Args`] and stdout as its output, and
//! returns the exit status.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod init;
pub mod vhost;

use staticbus_guest_linux::{LinuxPlatform, Options};
use staticbus_programs::{Args, Clock};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Environment variable naming another manifest.json than
/// [`staticbus_guest_linux::MANIFEST_PATH`] (for running a program outside the initramfs).
pub const ENV_MANIFEST: &str = "STATICBUS_MANIFEST";

/// `CLOCK_MONOTONIC` as a [`Clock`] (emulation time under QEMU TCG).
#[derive(Clone, Copy, Debug)]
pub struct MonoClock(Instant);

impl Default for MonoClock {
    fn default() -> Self {
        MonoClock(Instant::now())
    }
}

impl Clock for MonoClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A program's output: stdout, flushed at every line (the console is shared with the
/// kernel and the init, and the verdict is read from it).
#[derive(Debug, Default)]
pub struct Output;

impl core::fmt::Write for Output {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut o = std::io::stdout().lock();
        o.write_all(s.as_bytes()).map_err(|_| core::fmt::Error)?;
        if s.contains('\n') {
            o.flush().map_err(|_| core::fmt::Error)?;
        }
        Ok(())
    }
}

/// A `staticbus-programs` program on Linux: `run(platform, clock, args, out) -> passed`.
pub type App = fn(&LinuxPlatform, &MonoClock, &Args<'_>, &mut Output) -> bool;

/// The platform's options: the defaults, with the manifest of [`ENV_MANIFEST`] if set.
pub fn options() -> Options {
    let mut o = Options::default();
    if let Some(m) = std::env::var_os(ENV_MANIFEST) {
        o.manifest = PathBuf::from(m);
    }
    o
}

/// Opens the platform, prints what it found, runs `app` with the process's arguments
/// joined by spaces; returns the exit status (0 passed, 1 failed).
pub fn run(app: App) -> i32 {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let line = words.join(" ");
    let prog = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(String::from))
        .unwrap_or_else(|| "program".into());
    let platform = match LinuxPlatform::open(&options()) {
        Ok(p) => p,
        Err(e) => {
            // One line: Xen splits console lines after 126 characters.
            println!("RESULT FAIL {e}");
            return 1;
        }
    };
    for l in describe(&platform) {
        println!("{prog}: {l}");
    }
    let clock = MonoClock::default();
    let passed = app(&platform, &clock, &Args::new(&line), &mut Output);
    let _ = std::io::stdout().flush();
    if passed {
        0
    } else {
        1
    }
}

/// What the platform found, as short lines (Xen splits console lines after 126
/// characters).
pub fn describe(p: &LinuxPlatform) -> Vec<String> {
    use staticbus_guest::Platform;
    let f = p.found();
    let m = p.manifest();
    let ports: Vec<String> = p.linux_events().ports().map(|x| x.to_string()).collect();
    let mut v = vec![
        format!(
            "{} (domid {}): Linux {}, Xen {}",
            m.domain, m.domid, f.kernel, f.xen
        ),
        format!(
            "ports [{}] {}, bound when first used",
            ports.join(", "),
            if f.ports_checked {
                "connected as built (EVTCHNOP_status)"
            } else {
                "unchecked (no /dev/xen/privcmd)"
            }
        ),
    ];
    for r in p.regions() {
        v.push(format!(
            "region `{}`: {:#x} bytes at guest {:#x}, mapped write-back at {:p}",
            r.shm_id, r.len, r.guest_addr, r.base
        ));
    }
    v
}
