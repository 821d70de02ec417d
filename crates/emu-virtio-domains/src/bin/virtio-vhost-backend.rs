//! The backend domain of a `[[virtio]]` device served over virtio-msg by an unmodified
//! vhost-user daemon (`serve = { vhost-user = …, args = […] }`):
//!
//! ```text
//! virtio-vhost-backend DEVICE [create=FILE:BYTES] [kill-after=N] [config-size=BYTES] [terminal=upper-echo] [terminal-log=FILE]
//! ```
//!
//! Opens virtio device `DEVICE` of its manifest as the backend
//! (`staticbus_virtio_msg::open`); its region, doorbell port, device type, queues and the
//! daemon with its arguments all come from there ([`staticbus_vhost_bridge::spec::Spec`]).
//! Starts the daemon ([`daemon_program`]: `$STATICBUS_<NAME>` when set, e.g.
//! `STATICBUS_VHOST_DEVICE_RNG` for `vhost-device-rng`, else the name as the description
//! gives it) with `{socket}` in its arguments replaced by a socket path in a fresh private
//! folder, connects `staticbus_vhost_bridge::Bridge` to the first socket the daemon
//! creates there with the region's own memfd as the daemon's memory table (the daemon maps
//! the region itself: no copy), and serves the virtio-msg device side on the region and
//! the event channel with `msg::serve_with` until the frontend detaches; then stops the
//! daemon and prints `PASS virtio-vhost-backend device=… served=… …` with the bridge's
//! counts.
//!
//! - `create=FILE:BYTES`: create `FILE` (relative to the domain's folder) with `BYTES`
//!   zero bytes first if it does not exist (a disk for qemu-storage-daemon).
//! - `kill-after=N` (for the restart test): unless the file `DEVICE.killed` exists, create
//!   it and kill this domain's whole process group — the bridge and its daemon at the same
//!   instant — with SIGKILL after `N` units of work served; the restarted domain serves on.
//! - `config-size=BYTES`: the device's configuration size, for device types the bridge
//!   does not know (`spec::config_size`).
//! - `terminal=upper-echo`: the daemon's standard input and output are a pseudo-terminal
//!   whose other end this program holds (`staticbus_vhost_bridge::terminal`): every byte the daemon writes there (for
//!   vhost-device-console's `nested` backend: what the frontend's driver sent) is written
//!   back in upper case (what the frontend's driver receives). One byte comes back per byte
//!   received, so a frontend that sends a byte and waits for its echo has at most one byte
//!   in flight (vhost-device-console 0.1.0 corrupts input of several bytes in one read;
//!   docs/virtio.md).
//! - `terminal-log=FILE` (with `terminal=upper-echo`): every byte the daemon writes to the
//!   terminal is also appended to `FILE` (relative to the domain's folder) as it arrives,
//!   in every life of the domain: what the console delivered, for a test to check.
//!
//! The emulator announces events on a futex, which no poll(2) can wait on: a thread of
//! this process sleeps on it ([`staticbus_guest_emu::EventWaiter`]) and signals an eventfd
//! that `serve_with` waits on beside the daemon's call eventfds. The thread makes no
//! hypercall (the emulator's transport serves one thread at a time); the serving loop takes
//! the pending bit and polls the rings after every wake-up, so a doorbell is never lost.
//!
//! If the frontend's domain is destroyed without detaching (its port falls back to
//! UNBOUND), the backend fails instead of serving nobody for ever.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{exit, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags};
use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::ops::PortState;
use staticbus_guest::Platform;
use staticbus_guest_emu::EmuPlatform;
use staticbus_vhost_bridge::msg::{serve_with, MsgBackend};
use staticbus_vhost_bridge::spec::Spec;
use staticbus_vhost_bridge::terminal::{raw_pty, UpperEcho};
use staticbus_vhost_bridge::{Bridge, Daemon, SharedRegion};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::layout::{field, DRV_ATTACHED};

/// The longest sleep of the serving loop with nothing to do (then it checks the frontend
/// is still there).
const IDLE: Duration = Duration::from_millis(100);

const USAGE: &str = "usage: virtio-vhost-backend DEVICE [create=FILE:BYTES] [kill-after=N] \
                     [config-size=BYTES] [terminal=upper-echo] [terminal-log=FILE]";

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-vhost-backend: {why}");
    exit(1);
}

fn usage(why: impl std::fmt::Display) -> ! {
    eprintln!("virtio-vhost-backend: {why}\n{USAGE}");
    exit(2);
}

/// The program's arguments.
#[derive(Default)]
struct Args {
    device: String,
    create: Option<(PathBuf, u64)>,
    kill_after: Option<u64>,
    config_size: Option<u32>,
    upper_echo: bool,
    terminal_log: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        device: it.next().unwrap_or_else(|| usage("no DEVICE")),
        ..Args::default()
    };
    let num = |w: &str, v: &str| -> u64 {
        v.parse()
            .unwrap_or_else(|_| usage(format_args!("`{w}`: `{v}` is not a number")))
    };
    for w in it {
        if let Some(v) = w.strip_prefix("create=") {
            let (file, bytes) = v
                .rsplit_once(':')
                .unwrap_or_else(|| usage(format_args!("`{w}`: give FILE:BYTES")));
            a.create = Some((PathBuf::from(file), num(&w, bytes)));
        } else if let Some(v) = w.strip_prefix("kill-after=") {
            a.kill_after = Some(num(&w, v));
        } else if let Some(v) = w.strip_prefix("config-size=") {
            let n = num(&w, v);
            a.config_size =
                Some(u32::try_from(n).unwrap_or_else(|_| usage(format_args!("`{w}`: too big"))));
        } else if w == "terminal=upper-echo" {
            a.upper_echo = true;
        } else if let Some(v) = w.strip_prefix("terminal-log=") {
            a.terminal_log = Some(PathBuf::from(v));
        } else {
            usage(format_args!("unknown argument `{w}`"));
        }
    }
    if a.terminal_log.is_some() && !a.upper_echo {
        usage("terminal-log= needs terminal=upper-echo");
    }
    a
}

/// The environment variable that overrides where daemon `name` is found:
/// `STATICBUS_` and its file name in upper case with every other character than a letter
/// or digit as `_` (`qemu-storage-daemon` → `STATICBUS_QEMU_STORAGE_DAEMON`).
fn daemon_env(name: &std::path::Path) -> String {
    let file = name
        .file_name()
        .unwrap_or(name.as_os_str())
        .to_string_lossy();
    let tail: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("STATICBUS_{tail}")
}

/// The daemon to run for `spec`: `$STATICBUS_<NAME>` when set, else the description's name
/// (a path, or a program on PATH).
fn daemon_program(spec: &Spec) -> PathBuf {
    std::env::var_os(daemon_env(&spec.daemon)).map_or_else(|| spec.daemon.clone(), PathBuf::from)
}

/// A private folder for the daemon's socket (the domain may not own its working folder's
/// neighbours; the daemon may name its socket after the path it is given).
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(name: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "staticbus-vhost-{name}-{}-{t:x}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| fail(format_args!("cannot create {}: {e}", dir.display())));
        Self(dir)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let args = parse_args();
    let p = EmuPlatform::connect().unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    });
    let opened = staticbus_virtio_msg::open::open(&p, &args.device, VirtioRole::Backend)
        .unwrap_or_else(|e| fail(e));
    let spec = Spec::from_virtio(opened.device, args.config_size).unwrap_or_else(|e| fail(e));
    let (region, port, shm) = (opened.region, opened.port, spec.shm_id.as_str());
    let fd: OwnedFd = p
        .region_fd(shm)
        .and_then(|fd| fd.try_clone_to_owned().ok())
        .unwrap_or_else(|| fail(format_args!("no fd for region `{shm}`")));
    if let Some((file, bytes)) = &args.create {
        if !file.exists() {
            let f = std::fs::File::create(file)
                .unwrap_or_else(|e| fail(format_args!("cannot create {}: {e}", file.display())));
            f.set_len(*bytes)
                .unwrap_or_else(|e| fail(format_args!("{}: {e}", file.display())));
        }
    }
    let marker = PathBuf::from(format!("{}.killed", spec.name));
    let kill_after = args.kill_after.filter(|_| !marker.exists());

    let dir = SocketDir::new(&spec.name);
    let program = daemon_program(&spec);
    let mut cmd = Command::new(&program);
    cmd.args(spec.daemon_args(&dir.0.join("vhost.sock")));
    let echo = Arc::new(UpperEcho::new());
    if args.upper_echo {
        let (controller, user) =
            raw_pty().unwrap_or_else(|e| fail(format_args!("a pseudo-terminal: {e}")));
        let out = user
            .try_clone()
            .unwrap_or_else(|e| fail(format_args!("dup: {e}")));
        cmd.stdin(Stdio::from(user)).stdout(Stdio::from(out));
        let echo = Arc::clone(&echo);
        let mut log = args.terminal_log.as_ref().map(|f| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .unwrap_or_else(|e| fail(format_args!("{}: {e}", f.display())))
        });
        std::thread::spawn(move || {
            use std::io::Write;
            let mut byte = |b: u8| {
                if let Some(f) = log.as_mut() {
                    f.write_all(&[b])
                        .unwrap_or_else(|e| fail(format_args!("the terminal log: {e}")));
                }
            };
            echo.run_with(controller, &mut byte, &mut |_| {})
        });
    }
    let mut daemon =
        Daemon::spawn_in(cmd, &dir.0, Duration::from_secs(60)).unwrap_or_else(|e| fail(e));
    let shared = SharedRegion::from_fd(fd, 0, region.len() as u64, 0)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e}")));
    let mut opts = spec.options();
    // A loaded machine: generous bounds, none of them timed in a test.
    opts.connect_timeout = Duration::from_secs(60);
    opts.request_timeout = Duration::from_secs(60);
    let bridge = Arc::new(
        Bridge::connect(daemon.socket(), Arc::new(shared), opts).unwrap_or_else(|e| fail(e)),
    );
    let backend =
        MsgBackend::new(Arc::clone(&bridge), spec.config_size).unwrap_or_else(|e| fail(e));
    let events = p.events();
    events.clear_initial(port);
    let mut dev = DeviceTransport::attach(region, events, port, backend)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e:?}")));
    println!(
        "serving virtio device `{}` ({}, region `{shm}`, epoch {}) with {}",
        spec.name,
        spec.device,
        dev.epoch(),
        program.display()
    );

    let doorbell = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .unwrap_or_else(|e| fail(format_args!("eventfd: {e}")));
    let waiter = p.event_waiter();
    let stop = AtomicBool::new(false);
    let (mut served, mut turns) = (0u64, 0u64);
    std::thread::scope(|s| {
        let (doorbell, stop) = (&doorbell, &stop);
        s.spawn(move || {
            let mut seen = waiter.counter();
            while !stop.load(Ordering::Acquire) {
                let now = waiter.wait_change(seen, Duration::from_millis(100));
                if now != seen {
                    seen = now;
                    let _ = rustix::io::write(doorbell, &1u64.to_ne_bytes());
                }
            }
        });
        let mut attached = false;
        loop {
            drain(doorbell.as_fd());
            let _ = dev.events().try_take_any(&[port]);
            let work = match serve_with(&mut dev, Some(doorbell.as_fd()), IDLE) {
                Ok(n) => n as u64,
                Err(e) => fail(format_args!("the bridge failed: {e}")),
            };
            served += work;
            turns += 1;
            let drv = dev
                .region()
                .load_le::<u32>(field::DRV_STATE.start, Ordering::Acquire);
            if drv == Some(DRV_ATTACHED) {
                attached = true;
            } else if attached {
                break;
            }
            // Idle: is the frontend still there? A destroyed domain's static port falls
            // back to UNBOUND here (a restarted one is bound again, and rings).
            if work == 0 {
                match dev.events().status(port).map(|s| s.state) {
                    Ok(PortState::Interdomain { .. }) => {}
                    other => fail(format_args!(
                        "the frontend domain is gone without detaching (port {port}: {other:?})"
                    )),
                }
            }
            if kill_after.is_some_and(|n| served >= n) {
                std::fs::write(&marker, b"killed by virtio-vhost-backend kill-after\n")
                    .unwrap_or_else(|e| fail(format_args!("{}: {e}", marker.display())));
                println!("kill-after: SIGKILL to the domain and its daemon after {served} served");
                let _ = rustix::process::kill_current_process_group(rustix::process::Signal::KILL);
                fail("still alive after SIGKILL");
            }
        }
        stop.store(true, Ordering::Release);
    });
    let stats = bridge.stats();
    let faults = dev.faults();
    dev.detach();
    drop(bridge);
    let exit_status = daemon
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|e| fail(e));
    // qemu-storage-daemon exits 0 on SIGTERM; rust-vmm's daemons die of it.
    use std::os::unix::process::ExitStatusExt;
    if !exit_status.success()
        && exit_status.signal() != Some(rustix::process::Signal::TERM.as_raw())
    {
        fail(format_args!(
            "{} exited with {exit_status}",
            program.display()
        ));
    }
    let echo = if args.upper_echo {
        format!(" echoed={}", echo.echoed())
    } else {
        String::new()
    };
    println!(
        "PASS virtio-vhost-backend device={} served={served} turns={turns} kicks={} calls={}{echo} \
         faults={faults:?} daemon-exit=\"{exit_status}\"",
        spec.name, stats.kicks, stats.calls
    );
}

/// Empties the eventfd (non-blocking; nothing to read is fine).
fn drain(fd: BorrowedFd<'_>) {
    let mut b = [0u8; 8];
    let _ = rustix::io::read(fd, &mut b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_override_is_named_after_the_program() {
        assert_eq!(
            daemon_env("qemu-storage-daemon".as_ref()),
            "STATICBUS_QEMU_STORAGE_DAEMON"
        );
        assert_eq!(
            daemon_env("/usr/bin/vhost-device-rng".as_ref()),
            "STATICBUS_VHOST_DEVICE_RNG"
        );
    }
}
