//! `staticbus-linux-probe`: the `/init` of a Linux domU's initramfs on Xen (dom0less, no
//! dom0, no xenstore). It proves that Linux sees Xen's static event channels and static
//! shared memory by playing one side of `staticbus_programs::ping_pong`'s protocol against
//! the bare-metal `xen-ping-pong` image, with raw `/dev/xen/evtchn` ioctls and the region
//! mapped through `linux/xen-shmem`:
//!
//! 1. mounts /proc, /sys and /dev (devtmpfs); makes sure stdout is the console;
//! 2. checks that Linux sees Xen (`/sys/hypervisor/type`) and that the kernel is 6.5+;
//! 3. loads every module in `/lib/modules` (name order; `.ko.xz` through the kernel's own
//!    decompression, `finit_module(MODULE_INIT_COMPRESSED_FILE)`);
//! 4. opens `/dev/xen/evtchn` and binds the static port of its command line with
//!    `IOCTL_EVTCHN_BIND_STATIC`;
//! 5. with `staticbus.shm=ID`: checks `/dev/xen-shmem/ID` against the device tree, checks
//!    that mappings outside the region are refused, maps it (write-back, shared) and runs
//!    the channel form of ping-pong over its words; without: the events-only form;
//! 6. prints `RESULT PASS …` or `RESULT FAIL <reason>` and powers off.
//!
//! Command line (`/proc/cmdline`; dotted, so the kernel leaves them alone):
//! `staticbus.domain=NAME staticbus.role=ping|pong staticbus.port=N
//! [staticbus.pending=0|1] [staticbus.shm=ID] [staticbus.rounds=N]
//! [staticbus.timeout=SECONDS]`. `pending` says whether Xen left this end pending at bind
//! time (the domain's manifest: `initially_pending`); the events-only form needs it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// `_IOC(_IOC_NONE, 'E', 4, sizeof(struct ioctl_evtchn_notify))`.
const IOCTL_EVTCHN_NOTIFY: u32 = 0x0004_4504;
/// `_IOC(_IOC_NONE, 'E', 7, sizeof(struct ioctl_evtchn_bind))` (Linux 6.5+).
const IOCTL_EVTCHN_BIND_STATIC: u32 = 0x0004_4507;
/// `finit_module` flag: the file is compressed, the kernel decompresses it.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// `staticbus_programs::ping_pong::HELLO` / `READY` and the word offsets of its channel
/// form (crates/programs/src/ping_pong.rs).
const HELLO: u64 = 0x6f6c_6c65_6867_6e70;
const READY: u64 = 0x7964_6165_7267_6e70;
const OFF_HELLO: usize = 0;
const OFF_SEQ: usize = 8;
const OFF_READY: usize = 64;
const OFF_ACK: usize = 72;

type Fail = String;

fn main() {
    let t0 = Instant::now();
    let setup = mount_all();
    console();
    println!(
        "linux-probe: /init of {} at {:.3} s after the kernel started",
        uname_release(),
        uptime()
    );
    let r = setup.and_then(|()| run(t0));
    match r {
        Ok(m) => println!("RESULT PASS {m}"),
        Err(e) => println!("RESULT FAIL {e}"),
    }
    let _ = io::stdout().flush();
    // SAFETY: plain system calls; init never returns (the kernel would panic).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in a constant path")
}

fn mount_all() -> Result<(), Fail> {
    for (src, dir, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = fs::create_dir_all(dir);
        let (s, d, t) = (cstr(src), cstr(dir), cstr(fs));
        // SAFETY: valid NUL-terminated strings, no data argument.
        let rc = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(format!("mount {fs} on {dir}: {e}"));
            }
        }
    }
    Ok(())
}

/// Makes fds 0-2 the console if the kernel could not open one for init.
fn console() {
    // SAFETY: F_GETFD on a possibly closed fd only reports EBADF.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } >= 0 {
        return;
    }
    let c = cstr("/dev/console");
    // SAFETY: valid path; the fds are dup'ed to 0-2, which are free.
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            for n in 0..3 {
                libc::dup2(fd, n);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn uname_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "Linux (release unknown)".into())
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\0']).to_string())
}

/// The messages of the kernel log (/dev/kmsg, read without waiting) that contain `pat`.
fn kernel_log(pat: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return out;
    };
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: reads one record into the buffer.
        let n = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EPIPE) {
                continue; // overwritten records: go on with the next
            }
            break; // EAGAIN: the end
        }
        let rec = String::from_utf8_lossy(&buf[..n as usize]);
        // "prio,seq,usec,flags;message\n continuation…"
        if let Some((_, msg)) = rec.split_once(';') {
            let msg = msg.lines().next().unwrap_or("").to_string();
            if msg.contains(pat) {
                out.push(msg);
            }
        }
    }
    out
}

/// `staticbus.KEY=VALUE` words of the kernel command line.
fn args() -> BTreeMap<String, String> {
    let line = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix("staticbus."))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn arg_u64(a: &BTreeMap<String, String>, key: &str, default: Option<u64>) -> Result<u64, Fail> {
    match a.get(key) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("staticbus.{key}={v}: not a number")),
        None => default.ok_or_else(|| format!("no staticbus.{key}= on the kernel command line")),
    }
}

/// (major, minor) of a release like `6.12.118+deb12-arm64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn run(t0: Instant) -> Result<String, Fail> {
    let a = args();
    let domain = a.get("domain").cloned().unwrap_or_else(|| "?".into());
    let role = match a.get("role").map(String::as_str) {
        Some("ping") => Role::Ping,
        Some("pong") => Role::Pong,
        other => {
            return Err(format!(
                "staticbus.role must be ping or pong, not {other:?}"
            ))
        }
    };
    let port = u32::try_from(arg_u64(&a, "port", None)?).map_err(|_| "port out of range")?;
    let pending = arg_u64(&a, "pending", Some(0))? != 0;
    let rounds = arg_u64(&a, "rounds", Some(1000))?;
    let timeout = Duration::from_secs(arg_u64(&a, "timeout", Some(60))?);

    // Xen, as Linux sees it.
    let xen = read_trim("/sys/hypervisor/type");
    if xen.as_deref() != Some("xen") {
        return Err(format!(
            "Linux does not see Xen (/sys/hypervisor/type: {xen:?}): no xen,enhanced in its domain? \
             (the /hypervisor node)"
        ));
    }
    let ver = format!(
        "{}.{}{}",
        read_trim("/sys/hypervisor/version/major").unwrap_or_default(),
        read_trim("/sys/hypervisor/version/minor").unwrap_or_default(),
        read_trim("/sys/hypervisor/version/extra").unwrap_or_default()
    );
    let compat = fs::read("/proc/device-tree/hypervisor/compatible")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|_| "none".into());
    println!("linux-probe: {domain}: Xen {ver} (/hypervisor compatible: {compat}); role {role:?}, port {port}{}", if pending { " (pending at bind time)" } else { "" });
    let release = uname_release();
    match kernel_version(&release) {
        Some(v) if v >= (6, 5) => {}
        _ => {
            return Err(format!(
                "kernel {release} is older than 6.5: it has no IOCTL_EVTCHN_BIND_STATIC"
            ))
        }
    }

    load_modules()?;

    let path = "/dev/xen/evtchn";
    let evtchn = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e} (is xen-evtchn.ko in /lib/modules?)"))?;
    let ev = Evtchn {
        fd: OwnedFd::from(evtchn),
        port,
        timeout,
    };
    ev.bind_static()?;
    println!("linux-probe: bound static port {port} (IOCTL_EVTCHN_BIND_STATIC)");

    let (form, stats) = match a.get("shm") {
        Some(id) => {
            let region = Region::open(id)?;
            println!(
                "linux-probe: region \"{id}\": {:#x} bytes at guest {:#x}, mapped write-back at {:p}",
                region.len, region.phys, region.ptr
            );
            for l in kernel_log("xen-shmem:") {
                println!("linux-probe: kernel: {l}");
            }
            let words = region.words()?;
            let stats = match role {
                Role::Ping => channel_ping(&ev, &words, rounds)?,
                Role::Pong => channel_pong(&ev, &words, rounds)?,
            };
            (format!("channel over \"{id}\""), stats)
        }
        None => {
            let stats = match role {
                Role::Ping => events_ping(&ev, pending, rounds)?,
                Role::Pong => events_pong(&ev, pending, rounds)?,
            };
            ("events only".to_string(), stats)
        }
    };
    if let Some(s) = &stats {
        println!("linux-probe: ping: {s}");
    }
    println!(
        "linux-probe: /init started {:.3} s after the kernel, done at {:.3} s ({:.1} ms in /init)",
        uptime() - t0.elapsed().as_secs_f64(),
        uptime(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    // Xen splits console lines after 126 characters: the RESULT line stays short.
    Ok(format!(
        "linux-probe {domain}: ping-pong {} ({form}), {rounds} round trips, Xen {ver}",
        match role {
            Role::Ping => "ping",
            Role::Pong => "pong",
        },
    ))
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Ping,
    Pong,
}

fn load_modules() -> Result<(), Fail> {
    let dir = "/lib/modules";
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".ko") || n.ends_with(".ko.xz"))
            .collect(),
        Err(e) => return Err(format!("{dir}: {e}")),
    };
    names.sort();
    for n in names {
        let path = format!("{dir}/{n}");
        let f = fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        let flags = if n.ends_with(".xz") {
            MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        let params = cstr("");
        // SAFETY: finit_module(fd, params, flags) with a valid fd and an empty string.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                f.as_raw_fd(),
                params.as_ptr(),
                flags,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("loading {path}: finit_module: {e}"));
            }
        }
        println!("linux-probe: loaded {path}");
    }
    Ok(())
}

/// One static port bound on `/dev/xen/evtchn`.
struct Evtchn {
    fd: OwnedFd,
    port: u32,
    timeout: Duration,
}

impl Evtchn {
    fn ioctl(&self, req: u32, what: &str) -> Result<(), Fail> {
        let mut arg: libc::c_uint = self.port;
        // SAFETY: both ioctls take a pointer to one `unsigned int` (the port).
        let rc =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, &mut arg as *mut libc::c_uint) };
        if rc < 0 {
            return Err(format!(
                "{what}(port {}): {}",
                self.port,
                io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    fn bind_static(&self) -> Result<(), Fail> {
        self.ioctl(IOCTL_EVTCHN_BIND_STATIC, "IOCTL_EVTCHN_BIND_STATIC")
    }

    fn notify(&self) -> Result<(), Fail> {
        self.ioctl(IOCTL_EVTCHN_NOTIFY, "IOCTL_EVTCHN_NOTIFY")
    }

    /// Waits for one event of the port (read() the fd), then unmasks it (write it back).
    fn wait(&self) -> Result<(), Fail> {
        let fd = self.fd.as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(self.timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll /dev/xen/evtchn: {e}"));
            }
            if n == 0 {
                return Err(format!(
                    "no event on port {} for {} s",
                    self.port,
                    self.timeout.as_secs()
                ));
            }
            let mut ports = [0u32; 16];
            // SAFETY: reads at most the buffer's size into it.
            let got = unsafe { libc::read(fd, ports.as_mut_ptr().cast(), size_of_val(&ports)) };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("read /dev/xen/evtchn: {e}"));
            }
            let n = got as usize / 4;
            if n == 0 {
                continue;
            }
            // SAFETY: writes back the n ports just read (unmasks them).
            let w = unsafe { libc::write(fd, ports.as_ptr().cast(), n * 4) };
            if w != (n * 4) as isize {
                return Err(format!(
                    "unmask (write /dev/xen/evtchn): {}",
                    io::Error::last_os_error()
                ));
            }
            if let Some(p) = ports[..n].iter().find(|&&p| p != self.port) {
                return Err(format!("event on port {p}, which this probe did not bind"));
            }
            return Ok(());
        }
    }
}

/// A region of /dev/xen-shmem, mapped shared.
struct Region {
    ptr: *mut u8,
    len: usize,
    phys: u64,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

impl Region {
    fn open(id: &str) -> Result<Self, Fail> {
        let sys = format!("/sys/class/misc/xen-shmem-{id}");
        let dev = format!("/dev/xen-shmem/{id}");
        let size = read_trim(&format!("{sys}/size")).and_then(|s| hex(&s));
        let phys = read_trim(&format!("{sys}/phys_addr")).and_then(|s| hex(&s));
        let (Some(size), Some(phys)) = (size, phys) else {
            let found: Vec<String> = fs::read_dir("/proc/device-tree/reserved-memory")
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| n.starts_with("xen-shmem@"))
                        .collect()
                })
                .unwrap_or_default();
            return Err(format!(
                "no region \"{id}\" ({sys} missing); the guest tree has {found:?} under \
                 /reserved-memory (none: Xen without CONFIG_STATIC_SHM, or no such region)"
            ));
        };
        // The device tree says the same (reg = <addr size>, 2 + 2 cells).
        let node = format!("/proc/device-tree/reserved-memory/xen-shmem@{phys:x}");
        let reg = fs::read(format!("{node}/reg")).map_err(|e| format!("{node}/reg: {e}"))?;
        if reg.len() != 16
            || u64::from_be_bytes(reg[..8].try_into().unwrap()) != phys
            || u64::from_be_bytes(reg[8..].try_into().unwrap()) != size
        {
            return Err(format!("{node}/reg {reg:02x?} differs from {sys}"));
        }
        let len = usize::try_from(size).map_err(|_| "region too large")?;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .map_err(|e| format!("{dev}: {e} (is xen-shmem.ko in /lib/modules?)"))?;
        let fd = f.as_raw_fd();
        let map = |len: usize, off: i64, flags| {
            // SAFETY: a fresh mapping chosen by the kernel; nothing else is affected.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd,
                    off,
                )
            }
        };
        // The module refuses mappings outside the region, and private ones.
        for (what, l, off, flags) in [
            ("one page past the end", len + 4096, 0, libc::MAP_SHARED),
            ("at the end", 4096, len as i64, libc::MAP_SHARED),
            ("private", len, 0, libc::MAP_PRIVATE),
        ] {
            let p = map(l, off, flags);
            if p != libc::MAP_FAILED {
                // SAFETY: unmaps what was just mapped.
                unsafe { libc::munmap(p, l) };
                return Err(format!("{dev}: a mapping {what} was not refused"));
            }
        }
        let p = map(len, 0, libc::MAP_SHARED);
        if p == libc::MAP_FAILED {
            return Err(format!("mmap {dev}: {}", io::Error::last_os_error()));
        }
        Ok(Region {
            ptr: p.cast(),
            len,
            phys,
        })
    }

    fn words(&self) -> Result<Words<'_>, Fail> {
        if self.len < OFF_ACK + 8 {
            return Err("the region is smaller than 80 bytes".into());
        }
        // SAFETY: the mapping is `len` bytes, page aligned (so every offset used is 8-byte
        // aligned), lives as long as `self` (never unmapped), and is only accessed
        // atomically here and by the peer.
        let w = |off: usize| unsafe { &*(self.ptr.add(off) as *const AtomicU64) };
        Ok(Words {
            hello: w(OFF_HELLO),
            seq: w(OFF_SEQ),
            ready: w(OFF_READY),
            ack: w(OFF_ACK),
        })
    }
}

struct Words<'r> {
    hello: &'r AtomicU64,
    seq: &'r AtomicU64,
    ready: &'r AtomicU64,
    ack: &'r AtomicU64,
}

fn wait_until(ev: &Evtchn, cond: impl Fn() -> bool) -> Result<(), Fail> {
    while !cond() {
        ev.wait()?;
    }
    Ok(())
}

/// Round-trip times in nanoseconds.
struct Rtt(Vec<u64>, Duration);

impl std::fmt::Display for Rtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f.write_str("no round trips");
        }
        let p = |q: usize| v[(v.len() - 1) * q / 100] as f64 / 1e3;
        write!(
            f,
            "{} round trips in {:.1} ms; RTT min={:.1}us p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
            v.len(),
            self.1.as_secs_f64() * 1e3,
            v[0] as f64 / 1e3,
            p(50),
            p(90),
            p(99),
            v[v.len() - 1] as f64 / 1e3
        )
    }
}

fn channel_ping(ev: &Evtchn, w: &Words<'_>, rounds: u64) -> Result<Option<Rtt>, Fail> {
    w.seq.store(0, SeqCst);
    w.hello.store(HELLO, SeqCst);
    ev.notify()?;
    wait_until(ev, || w.ready.load(SeqCst) == READY)?;
    println!("linux-probe: ping: pong is READY");
    let mut rtt = Vec::with_capacity(rounds as usize);
    let start = Instant::now();
    for i in 1..=rounds {
        let t = Instant::now();
        w.seq.store(i, SeqCst);
        ev.notify()?;
        wait_until(ev, || w.ack.load(SeqCst) == i)?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Some(Rtt(rtt, start.elapsed())))
}

fn channel_pong(ev: &Evtchn, w: &Words<'_>, rounds: u64) -> Result<Option<Rtt>, Fail> {
    w.ack.store(0, SeqCst);
    wait_until(ev, || w.hello.load(SeqCst) == HELLO)?;
    w.ready.store(READY, SeqCst);
    ev.notify()?;
    for i in 1..=rounds {
        wait_until(ev, || w.seq.load(SeqCst) == i)?;
        w.ack.store(i, SeqCst);
        ev.notify()?;
    }
    Ok(None)
}

/// The events-only form (strict alternation; see crates/programs/src/ping_pong.rs). On
/// Linux the bind-time pending bit arrives as an event once the port is bound.
fn events_ping(ev: &Evtchn, pending: bool, rounds: u64) -> Result<Option<Rtt>, Fail> {
    if pending {
        ev.wait()?; // the bind-time event
        ev.notify()?; // HELLO
    }
    ev.wait()?; // READY
    println!("linux-probe: ping: pong is READY");
    let mut rtt = Vec::with_capacity(rounds as usize);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        ev.notify()?;
        ev.wait()?;
        rtt.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Some(Rtt(rtt, start.elapsed())))
}

fn events_pong(ev: &Evtchn, _pending: bool, rounds: u64) -> Result<Option<Rtt>, Fail> {
    ev.wait()?; // the bind-time event, or HELLO
    ev.notify()?; // READY
    for _ in 0..rounds {
        ev.wait()?;
        ev.notify()?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.12.118+deb12-arm64"), Some((6, 12)));
        assert_eq!(kernel_version("5.10.0-28-arm64"), Some((5, 10)));
        assert!(kernel_version("6.1.0") < Some((6, 5)));
    }

    #[test]
    fn ioctl_numbers_are_the_uapi_ones() {
        // _IOC(_IOC_NONE, 'E', nr, 4): size 4 << 16 | 'E' << 8 | nr.
        assert_eq!(IOCTL_EVTCHN_NOTIFY, (4 << 16) | (b'E' as u32) << 8 | 4);
        assert_eq!(IOCTL_EVTCHN_BIND_STATIC, (4 << 16) | (b'E' as u32) << 8 | 7);
    }
}
