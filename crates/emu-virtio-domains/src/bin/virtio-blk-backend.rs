//! The backend domain of a virtio-blk device served over virtio-msg by an unmodified
//! vhost-user daemon:
//!
//! ```text
//! virtio-blk-backend SHM-ID PEER DISK [size=BYTES] [kill-after=N]
//! ```
//!
//! Starts qemu-storage-daemon (`$STATICBUS_QEMU_STORAGE_DAEMON`, else
//! `qemu-storage-daemon` on PATH) exporting the raw file `DISK` (created with `size`
//! zero bytes, 2 MiB by default, when absent) as vhost-user-blk on a socket in a fresh
//! private folder, connects `staticbus_vhost_bridge::Bridge` to it with shared region
//! `SHM-ID`'s own memfd as the daemon's memory table (the daemon maps the region itself:
//! no copy), and serves the virtio-msg device side on the region and the static event
//! channel to domain `PEER` with `msg::serve_with` until the frontend detaches; then
//! stops the daemon and prints `PASS virtio-blk-backend …` with the bridge's counts.
//!
//! The emulator announces events on a futex, which no poll(2) can wait on: a thread of
//! this process sleeps on it ([`staticbus_guest_emu::EventWaiter`]) and signals an eventfd
//! that `serve_with` waits on beside the daemon's call eventfds. The thread makes no
//! hypercall (the emulator's transport serves one thread at a time); the serving loop takes
//! the pending bit and polls the rings after every wake-up, so a doorbell is never lost.
//!
//! If the frontend's domain is destroyed without detaching (its port falls back to
//! UNBOUND), the backend fails instead of serving nobody for ever.
//!
//! `kill-after=N` (for the restart test): unless the file `DISK.killed` exists, create it
//! and kill this domain's whole process group — the bridge and its daemon at the same
//! instant — with SIGKILL after `N` requests served; the restarted domain serves on.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{exit, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags};
use staticbus_guest::ops::PortState;
use staticbus_guest::Platform;
use staticbus_guest_emu::EmuPlatform;
use staticbus_vhost_bridge::msg::{serve_with, MsgBackend};
use staticbus_vhost_bridge::{Bridge, Daemon, Options, SharedRegion};
use staticbus_virtio_msg::device::DeviceTransport;
use staticbus_virtio_msg::layout::{field, DRV_ATTACHED};

/// virtio-blk's configuration space (virtio 1.2 §5.2.4, up to `write_zeroes_may_unmap`).
const BLK_CONFIG_SIZE: u32 = 60;
/// virtio device type 2: block.
const VIRTIO_BLK: u32 = 2;
/// The longest sleep of the serving loop with nothing to do (then it checks the frontend
/// is still there).
const IDLE: Duration = Duration::from_millis(100);

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-blk-backend: {why}");
    exit(1);
}

/// A private folder for the daemon's socket (the domain may not own the disk's folder).
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("staticbus-vblk-{}-{t:x}", std::process::id()));
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

fn qsd_command(disk: &Path, socket: &Path) -> Command {
    let program = std::env::var_os("STATICBUS_QEMU_STORAGE_DAEMON")
        .unwrap_or_else(|| "qemu-storage-daemon".into());
    let mut cmd = Command::new(program);
    cmd.arg("--blockdev")
        .arg(format!(
            "driver=file,node-name=disk,filename={}",
            disk.display()
        ))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=export0,node-name=disk,addr.type=unix,addr.path={},\
             writable=on,num-queues=1",
            socket.display()
        ));
    cmd
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: virtio-blk-backend SHM-ID PEER DISK [size=BYTES] [kill-after=N]");
        exit(2);
    }
    let (shm, peer, disk) = (&args[0], &args[1], PathBuf::from(&args[2]));
    let (mut size, mut kill_after) = (2u64 << 20, None::<u64>);
    for a in &args[3..] {
        let parsed = |v: &str| {
            v.parse::<u64>().unwrap_or_else(|_| {
                eprintln!("`{a}`: not a number");
                exit(2)
            })
        };
        if let Some(v) = a.strip_prefix("size=") {
            size = parsed(v);
        } else if let Some(v) = a.strip_prefix("kill-after=") {
            kill_after = Some(parsed(v));
        } else {
            eprintln!("unknown argument `{a}` (size=BYTES, kill-after=N)");
            exit(2);
        }
    }
    let p = EmuPlatform::connect().unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    });
    let m = p.manifest();
    let region = p
        .region(shm)
        .unwrap_or_else(|| fail(format_args!("no region `{shm}` in this domain")));
    let fd: OwnedFd = p
        .region_fd(shm)
        .and_then(|fd| fd.try_clone_to_owned().ok())
        .unwrap_or_else(|| fail(format_args!("no fd for region `{shm}`")));
    let port = m
        .evtchns
        .iter()
        .find(|e| e.remote_domain == peer.as_str())
        .map(|e| e.local_port)
        .unwrap_or_else(|| fail(format_args!("no event channel to `{peer}` in the manifest")));
    if !disk.exists() {
        let f = std::fs::File::create(&disk)
            .unwrap_or_else(|e| fail(format_args!("cannot create {}: {e}", disk.display())));
        f.set_len(size)
            .unwrap_or_else(|e| fail(format_args!("{}: {e}", disk.display())));
    }
    let marker = PathBuf::from(format!("{}.killed", disk.display()));
    let kill_after = kill_after.filter(|_| !marker.exists());

    let dir = SocketDir::new();
    let socket = dir.0.join("blk.sock");
    let mut daemon = Daemon::spawn(
        qsd_command(&disk, &socket),
        &socket,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| fail(e));
    let shared = SharedRegion::from_fd(fd, 0, region.len() as u64, 0)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e}")));
    let mut opts = Options::new(VIRTIO_BLK, 1);
    // A loaded machine: generous bounds, none of them timed in a test.
    opts.connect_timeout = Duration::from_secs(60);
    opts.request_timeout = Duration::from_secs(60);
    let bridge =
        Arc::new(Bridge::connect(&socket, Arc::new(shared), opts).unwrap_or_else(|e| fail(e)));
    let backend = MsgBackend::new(Arc::clone(&bridge), BLK_CONFIG_SIZE).unwrap_or_else(|e| fail(e));
    let events = p.events();
    events.clear_initial(port);
    let mut dev = DeviceTransport::attach(region, events, port, backend)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e:?}")));
    println!(
        "serving region `{shm}` (epoch {}) with {} on {}",
        dev.epoch(),
        daemon_name(),
        disk.display()
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
                std::fs::write(&marker, b"killed by virtio-blk-backend kill-after\n")
                    .unwrap_or_else(|e| fail(format_args!("{}: {e}", marker.display())));
                println!(
                    "kill-after: SIGKILL to the domain and its daemon after {served} requests"
                );
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
    if !exit_status.success() {
        fail(format_args!("{} exited with {exit_status}", daemon_name()));
    }
    println!(
        "PASS virtio-blk-backend served={served} turns={turns} kicks={} calls={} faults={faults:?}",
        stats.kicks, stats.calls
    );
}

fn daemon_name() -> String {
    std::env::var("STATICBUS_QEMU_STORAGE_DAEMON").unwrap_or_else(|_| "qemu-storage-daemon".into())
}

/// Empties the eventfd (non-blocking; nothing to read is fine).
fn drain(fd: BorrowedFd<'_>) {
    let mut b = [0u8; 8];
    let _ = rustix::io::read(fd, &mut b);
}
