//! A Linux domain as the backend of a virtio device: `linux-vhost-bridge` serves the
//! virtio-msg device side of one `[[virtio]]` device on its shared region and event
//! channel, and hands the virtqueues to an unmodified vhost-user daemon (rust-vmm's
//! vhost-device-rng, qemu-storage-daemon, …) started as a child process
//! (docs/linux.md, "Linux as a virtio backend"; docs/virtio.md).
//!
//! Who does what:
//!
//! - **this process** maps the region (through [`LinuxPlatform`], from the xen-shmem
//!   device), binds the device's static event channel on `/dev/xen/evtchn`, serves the
//!   control ring (`staticbus_virtio_msg::device::DeviceTransport`, every frontend value
//!   checked there) and drives the daemon as a vhost-user frontend
//!   (`staticbus_vhost_bridge::Bridge` behind `msg::MsgBackend`);
//! - **the daemon** gets a duplicate of the xen-shmem device's fd as its memory table
//!   (offset 0, the whole region, at the frontend's guest-physical base) and maps it
//!   itself with `MAP_SHARED`, so it reads and writes the frontend's rings and buffers in
//!   place;
//! - **doorbells**: the frontend's event makes the evtchn fd readable, which wakes
//!   `msg::serve_with`; a moved available index becomes a write to the daemon's kick
//!   eventfd; the daemon's call eventfd becomes EVENT_USED in the response ring and an
//!   `IOCTL_EVTCHN_NOTIFY` back.
//!
//! The device is the `[[virtio]]` entry of the domain's manifest named by the program's
//! `device=` word ([`spec_from_args`]): its region, port, type, queues and the daemon with
//! its arguments (`serve = { vhost-user = …, args = […] }`).

use staticbus_guest::manifest::{Manifest, VirtioRole};
use staticbus_guest::ops::PortState;
use staticbus_guest::{Events, Platform};
use staticbus_guest_linux::LinuxPlatform;
use staticbus_programs::Args;
use staticbus_vhost_bridge::msg::{serve_with, MsgBackend};
pub use staticbus_vhost_bridge::spec::{config_size, Spec, SOCKET_PLACEHOLDER};
use staticbus_vhost_bridge::terminal::{raw_pty, UpperEcho};
use staticbus_vhost_bridge::{Bridge, Daemon, SharedRegion};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::layout::{field, DRV_ATTACHED};
use staticbus_virtio_msg::open::lookup;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the daemons' private socket folders are made.
pub const SOCKET_ROOT: &str = "/run/staticbus-vhost";

/// The longest sleep of the serving loop with nothing to do (then it checks that the
/// frontend is still attached and its domain still there).
const IDLE: Duration = Duration::from_millis(100);

/// After this long without work the loop prints the device's state (once per period).
const STALL: Duration = Duration::from_secs(10);

/// How the daemon's standard input and output are set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Terminal {
    /// Inherited from the bridge (the domain's console).
    #[default]
    Inherit,
    /// A pseudo-terminal whose other end the bridge holds, writing back every byte the
    /// daemon prints there in upper case (`staticbus_vhost_bridge::terminal::UpperEcho`;
    /// for vhost-device-console's `nested` backend). Each complete line received is
    /// printed as `linux-vhost-bridge: terminal: received "…"`.
    UpperEcho,
}

/// How [`serve`] sets up the daemon's surroundings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// The daemon's standard input and output.
    pub terminal: Terminal,
    /// A file of this many zero bytes made before the daemon starts (its disk), unless it
    /// exists; after the daemon has exited its size and digest are reported
    /// ([`Served::disk`]).
    pub create: Option<(PathBuf, u64)>,
}

/// The words `[terminal=upper-echo] [create=FILE:BYTES]`.
pub fn options_from_args(a: &Args<'_>) -> Result<ServeOptions, String> {
    let terminal = match a.get("terminal") {
        None => Terminal::Inherit,
        Some("upper-echo") => Terminal::UpperEcho,
        Some(t) => {
            return Err(format!(
                "terminal={t}: unknown (the one terminal there is: terminal=upper-echo)"
            ))
        }
    };
    let create = match a.get("create") {
        None => None,
        Some(c) => {
            let (file, bytes) = c
                .rsplit_once(':')
                .ok_or_else(|| format!("create={c}: give FILE:BYTES"))?;
            let bytes = bytes
                .parse()
                .map_err(|_| format!("create={c}: `{bytes}` is not a number"))?;
            Some((PathBuf::from(file), bytes))
        }
    };
    Ok(ServeOptions { terminal, create })
}

/// From the program's words `device=NAME [config-size=BYTES]`: device `NAME` of
/// `manifest` ([`Spec::from_virtio`]).
pub fn spec_from_args(manifest: &Manifest, a: &Args<'_>) -> Result<Spec, String> {
    let name = a.get("device").ok_or("no `device=NAME` argument")?;
    let v = lookup(manifest, name, VirtioRole::Backend).map_err(|e| e.to_string())?;
    let config = match a.get("config-size") {
        None => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| format!("config-size={c}: not a number"))?,
        ),
    };
    Spec::from_virtio(v, config)
}

/// The daemon's path: its file name in `bin` (`staticbus boot` puts every daemon of the
/// domain's devices in the initramfs's `/bin`, found as its description says).
pub fn daemon_path(spec: &Spec, bin: &Path) -> PathBuf {
    bin.join(spec.daemon.file_name().unwrap_or(spec.daemon.as_os_str()))
}

/// What a served device did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Units of work done by the serving loop (control requests, queue polls,
    /// completions forwarded).
    pub work: u64,
    /// Turns of the loop.
    pub turns: u64,
    /// Kicks written to the daemon.
    pub kicks: u64,
    /// Call signals from the daemon (used buffers).
    pub calls: u64,
    /// Device epoch served.
    pub epoch: u64,
    /// Wall time from the frontend's attach to its detach.
    pub attached_for: Duration,
    /// The daemon's exit after SIGTERM.
    pub daemon_exit: String,
    /// With [`Terminal::UpperEcho`]: the bytes echoed and the lines received.
    pub echo: Option<(u64, Vec<String>)>,
    /// With [`ServeOptions::create`]: the file's size and its digest
    /// (`staticbus_programs::virtio_blk::disk_digest`, what the blk frontend prints for
    /// the disk it expects) once the daemon has exited.
    pub disk: Option<(u64, u64)>,
}

/// A private folder for the daemon's socket, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(name: &str) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let root = Path::new(SOCKET_ROOT);
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let dir = root.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `spec` on `p` until the frontend detaches: starts the daemon, connects the
/// bridge with the region's fd as its memory table, attaches the device side and runs
/// the loop; then stops the daemon. `say` gets progress lines.
pub fn serve(
    p: &LinuxPlatform,
    spec: &Spec,
    bin: &Path,
    opts: &ServeOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Served, String> {
    let terminal = opts.terminal;
    let region = p
        .region(&spec.shm_id)
        .ok_or_else(|| format!("no region `{}` in this domain's manifest", spec.shm_id))?;
    if region.len() as u64 % 4096 != 0 {
        return Err(format!(
            "region `{}` is not a multiple of 4 KiB",
            spec.shm_id
        ));
    }
    let fd = p
        .region_fd(&spec.shm_id)
        .ok_or_else(|| format!("no fd for region `{}`", spec.shm_id))?
        .map_err(|e| format!("region `{}`: dup: {e}", spec.shm_id))?;
    let port = spec.port;
    let events = p.linux_events();
    events
        .bind(port)
        .map_err(|e| format!("binding port {port}: {e}"))?;

    if let Some((file, bytes)) = &opts.create {
        if !file.exists() {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let f = std::fs::File::create(file)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            f.set_len(*bytes)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            say(&format!("created {} ({bytes} zero bytes)", file.display()));
        }
    }
    let dir = SocketDir::new(&spec.name)?;
    let socket = dir.0.join("vhost.sock");
    let program = daemon_path(spec, bin);
    let args = spec.daemon_args(&socket);
    let mut cmd = Command::new(&program);
    cmd.args(&args);
    say(&format!(
        "starting {} {}",
        program.display(),
        args.join(" ")
    ));
    let echo = Arc::new(UpperEcho::new());
    if terminal == Terminal::UpperEcho {
        let (controller, user) = raw_pty().map_err(|e| format!("a pseudo-terminal: {e}"))?;
        let out = user.try_clone().map_err(|e| format!("dup: {e}"))?;
        cmd.stdin(Stdio::from(user)).stdout(Stdio::from(out));
        let echo = Arc::clone(&echo);
        std::thread::spawn(move || {
            echo.run(controller, &mut |l| {
                println!("linux-vhost-bridge: terminal: received {l:?}");
            })
        });
        say("the daemon's terminal: a pseudo-terminal, echoed in upper case");
    }
    let t0 = Instant::now();
    let mut daemon =
        Daemon::spawn_in(cmd, &dir.0, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    say(&format!(
        "daemon pid {} listening on {} after {} ms",
        daemon.id(),
        daemon.socket().display(),
        t0.elapsed().as_millis()
    ));
    let len = region.len() as u64;
    let shared = SharedRegion::from_fd(fd, 0, len, 0)
        .map_err(|e| format!("region `{}`: {e}", spec.shm_id))?;
    let mut bopts = spec.options();
    // QEMU TCG on a loaded machine: generous bounds.
    bopts.connect_timeout = Duration::from_secs(60);
    bopts.request_timeout = Duration::from_secs(60);
    bopts.reattach_timeout = Duration::from_secs(5);
    let bridge = Arc::new(
        Bridge::connect(daemon.socket(), Arc::new(shared), bopts).map_err(|e| e.to_string())?,
    );
    let backend =
        MsgBackend::new(Arc::clone(&bridge), spec.config_size).map_err(|e| e.to_string())?;
    events.clear_initial(port);
    let mut dev = DeviceTransport::attach(region, events, port, backend)
        .map_err(|e| format!("region `{}`: {e:?}", spec.shm_id))?;
    say(&format!(
        "serving {} device `{}` (epoch {}, {:#x} bytes, port {port} to {}), daemon features {:#x}",
        spec.device,
        spec.shm_id,
        dev.epoch(),
        len,
        spec.peer,
        bridge.device_features()
    ));
    let doorbell = events.fd().ok_or("the evtchn device has no fd to poll")?;
    let mut out = Served {
        epoch: dev.epoch(),
        ..Served::default()
    };
    let mut attached: Option<Instant> = None;
    let mut last_work = Instant::now();
    loop {
        let _ = dev.events().try_take_any(&[port]);
        let work = serve_with(&mut dev, Some(doorbell), IDLE)
            .map_err(|e| format!("the bridge failed: {e}"))? as u64;
        out.work += work;
        out.turns += 1;
        let drv = dev
            .region()
            .load_le::<u32>(field::DRV_STATE.start, Ordering::Acquire);
        match (drv == Some(DRV_ATTACHED), attached) {
            (true, None) => {
                attached = Some(Instant::now());
                say("frontend attached");
            }
            (false, Some(t)) => {
                out.attached_for = t.elapsed();
                break;
            }
            _ => {}
        }
        if work > 0 {
            last_work = Instant::now();
        } else if last_work.elapsed() >= STALL {
            // Nothing for a while: say what the device looks like (a hung boot's console
            // then shows where it stopped).
            last_work = Instant::now();
            let st = bridge.stats();
            let queues: Vec<String> = (0..spec.queues)
                .filter_map(|q| {
                    let i = dev.backend().indices(dev.region(), q)?;
                    Some(format!(
                        "queue {q} avail {} used {} kicked {:?}",
                        i.avail, i.used, i.kicked
                    ))
                })
                .collect();
            say(&format!(
                "idle {} s: status {:#x}, kicks {}, calls {}, turns {}, {}, faults {:?}",
                STALL.as_secs(),
                dev.status(),
                st.kicks,
                st.calls,
                out.turns,
                if queues.is_empty() {
                    "no queue enabled".to_string()
                } else {
                    queues.join(", ")
                },
                dev.faults()
            ));
        }
        if work == 0 {
            // A destroyed frontend domain's static port is no longer interdomain.
            match dev.events().status(port).map(|s| s.state) {
                Ok(PortState::Interdomain { .. }) | Err(_) => {}
                Ok(other) => {
                    return Err(format!(
                        "the frontend domain is gone without detaching (port {port}: {other:?})"
                    ))
                }
            }
        }
    }
    let stats = bridge.stats();
    out.kicks = stats.kicks;
    out.calls = stats.calls;
    let faults = dev.faults();
    dev.detach();
    drop(bridge);
    say(&format!("frontend detached; faults {faults:?}"));
    let status = daemon
        .terminate(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    out.daemon_exit = status.to_string();
    if terminal == Terminal::UpperEcho {
        out.echo = Some((echo.echoed(), echo.lines()));
    }
    if let Some((file, _)) = &opts.create {
        let disk = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        out.disk = Some((
            disk.len() as u64,
            staticbus_programs::virtio_blk::disk_digest(&disk),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_guest::manifest::{Virtio, VirtioServe};

    const RNG: Virtio = Virtio {
        name: "rng",
        device: "rng",
        device_id: 4,
        role: VirtioRole::Backend,
        queues: 1,
        queue_size: 16,
        shm_id: "virtio-rng",
        guest_addr: 0x7fe0_0000,
        size: 0x2_0000,
        peer: "app",
        peer_domid: 2,
        local_port: 3,
        remote_port: 4,
        serve: VirtioServe::VhostUser {
            program: "vhost-device-rng",
            args: &["--socket-path", "{socket}"],
        },
    };

    #[test]
    fn a_spec_from_the_manifest_entry() {
        let s = Spec::from_virtio(&RNG, None).unwrap();
        assert_eq!(
            (s.device_id, s.queues, s.queue_size, s.config_size, s.port),
            (4, 1, 16, 0, 3)
        );
        assert_eq!(
            daemon_path(&s, Path::new("/bin")),
            Path::new("/bin/vhost-device-rng")
        );
        assert_eq!(
            s.daemon_args(Path::new("/run/x/vhost.sock")),
            ["--socket-path", "/run/x/vhost.sock"]
        );
        let qsd = Virtio {
            device: "blk",
            device_id: 2,
            serve: VirtioServe::VhostUser {
                program: "/usr/bin/qemu-storage-daemon",
                args: &[],
            },
            ..RNG
        };
        let s = Spec::from_virtio(&qsd, None).unwrap();
        assert_eq!(
            daemon_path(&s, Path::new("/bin")),
            Path::new("/bin/qemu-storage-daemon")
        );
        assert_eq!(s.config_size, 60);
        assert_eq!(Spec::from_virtio(&qsd, Some(8)).unwrap().config_size, 8);
    }

    #[test]
    fn serve_options_from_the_words() {
        let o = options_from_args(&Args::new("device=disk create=/run/d.raw:4096")).unwrap();
        assert_eq!(o.terminal, Terminal::Inherit);
        assert_eq!(o.create, Some((PathBuf::from("/run/d.raw"), 4096)));
        let o = options_from_args(&Args::new("device=console terminal=upper-echo")).unwrap();
        assert_eq!((o.terminal, o.create), (Terminal::UpperEcho, None));
        for (words, says) in [
            ("terminal=tcp", "terminal=tcp: unknown"),
            ("create=/run/d.raw", "give FILE:BYTES"),
            ("create=/run/d.raw:1M", "`1M` is not a number"),
        ] {
            let e = options_from_args(&Args::new(words)).unwrap_err();
            assert!(e.contains(says), "{words}: {e}");
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let front = Virtio {
            role: VirtioRole::Frontend,
            ..RNG
        };
        let builtin = Virtio {
            serve: VirtioServe::Builtin,
            ..RNG
        };
        let i2c = Virtio {
            device: "i2c",
            device_id: 34,
            ..RNG
        };
        for (v, config, words) in [
            (
                front,
                None,
                "the frontend of virtio device `rng`, not its backend",
            ),
            (builtin, None, "built-in device"),
            (i2c, None, "config-size=BYTES"),
            (RNG, Some(300), "at most 256"),
        ] {
            let e = Spec::from_virtio(&v, config).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
    }
}
