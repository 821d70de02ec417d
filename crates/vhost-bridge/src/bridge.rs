//! The bridge proper: a virtio device's transport operations turned into vhost-user requests.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VringConfigData};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{status, Error, SharedRegion};

/// What vhost-user does not tell and the system description does.
#[derive(Clone, Debug)]
pub struct Options {
    /// The virtio device type (virtio 1.2 §5: 2 block, 3 console, 4 entropy, …).
    pub device_type: u32,
    /// How many queues the device has. A daemon with the MQ protocol feature must offer at
    /// least this many; one without it is taken to have exactly this many.
    pub num_queues: u16,
    /// The largest queue size a driver may set (a power of two, at most 32768).
    pub max_queue_size: u16,
    /// How long [`Bridge::connect`] keeps trying the socket.
    pub connect_timeout: Duration,
    /// How long a reset's re-attach to a failed daemon keeps trying the socket. Whoever
    /// resets waits that long (a device loop answers nothing meanwhile), and a daemon that
    /// is not back yet leaves the device needing a reset, to be tried again: keep it short.
    pub reattach_timeout: Duration,
    /// The longest wait for the daemon's answer to one request; past it the bridge shuts
    /// the connection down, the request fails with [`Error::Timeout`] and the device needs
    /// a reset.
    pub request_timeout: Duration,
}

impl Options {
    /// Options for a device of `device_type` with `num_queues` queues of up to 256 entries,
    /// 10 s to connect, 1 s to re-attach and 10 s per request.
    pub fn new(device_type: u32, num_queues: u16) -> Self {
        Self {
            device_type,
            num_queues,
            max_queue_size: 256,
            connect_timeout: Duration::from_secs(10),
            reattach_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A split virtqueue as the driver sets it: size and the guest-physical addresses of its
/// three parts, all inside the shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Number of descriptors (a power of two, at most [`Options::max_queue_size`]).
    pub size: u16,
    /// Descriptor table (16 bytes per entry, 16-byte aligned).
    pub desc: u64,
    /// Driver area, the available ring (6 + 2 × size bytes, 2-byte aligned).
    pub driver: u64,
    /// Device area, the used ring (6 + 8 × size bytes, 4-byte aligned).
    pub device: u64,
}

/// Feature bits never offered to the driver: vhost-user's own
/// `VHOST_USER_F_PROTOCOL_FEATURES` (30) and `VHOST_F_LOG_ALL` (26, live migration), and
/// what the bridge does not carry: `VIRTIO_F_ACCESS_PLATFORM` (33, would need the daemon's
/// IOTLB) and `VIRTIO_F_RING_PACKED` (34, the bridge checks split-ring layouts).
const HIDDEN_FEATURES: u64 =
    VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() | (1 << 26) | (1 << 33) | (1 << 34);

/// Protocol features the bridge uses when the daemon offers them.
fn wanted_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
}

/// What ended a [`Bridge::wait_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// Queues with used buffers (bit q = queue q).
    pub used: u64,
    /// Extra fds that became readable (bit i = `extra[i]`).
    pub extra: u64,
}

/// Notification counts since the bridge was created (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Kicks written to the daemon ([`Bridge::notify`] calls).
    pub kicks: u64,
    /// Times [`Bridge::wait`] found a call eventfd signalled.
    pub call_wakeups: u64,
    /// Call signals the daemon wrote (an eventfd adds up the writes between two reads).
    pub calls: u64,
}

/// The eventfds of one queue, owned by the bridge for its whole life.
struct QueueFds {
    kick: EventFd,
    call: EventFd,
    err: EventFd,
}

/// One connection to the daemon.
struct Conn {
    frontend: Frontend,
    /// The same socket, for polling (the frontend owns the other handle).
    socket: Arc<UnixStream>,
    /// GET_FEATURES, as the daemon offered them.
    features: u64,
    protocol: VhostUserProtocolFeatures,
    protocol_negotiated: bool,
}

struct Inner {
    conn: Option<Conn>,
    /// Set by the first failure; the device shows NEEDS_RESET until a reset.
    failure: Option<String>,
    status: u8,
    driver_features: u64,
    queues: Vec<Option<QueueConfig>>,
    started: Vec<bool>,
}

/// A virtio device served by a vhost-user daemon over a [`SharedRegion`].
///
/// All methods take `&self` (the state is behind a mutex) so that a driver and a
/// notification loop can share one bridge; [`Bridge::notify`] takes no lock.
pub struct Bridge {
    socket_path: PathBuf,
    region: Arc<SharedRegion>,
    options: Options,
    fds: Vec<QueueFds>,
    inner: Mutex<Inner>,
    watchdog: Arc<Watchdog>,
    watchdog_thread: Option<JoinHandle<()>>,
    kicks: AtomicU64,
    call_wakeups: AtomicU64,
    calls: AtomicU64,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.watchdog.stop();
        if let Some(t) = self.watchdog_thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("socket", &self.socket_path)
            .field("region", &self.region)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Bounds every request: the `vhost` crate retries a socket read that times out, so a
/// daemon that stops answering would block the bridge for good. While a request is under
/// way the watchdog holds its deadline; past it, the watchdog shuts the socket down, which
/// ends the blocked read with an error.
struct Watchdog {
    state: Mutex<WatchState>,
    wake: Condvar,
}

#[derive(Default)]
struct WatchState {
    armed: Option<(Instant, Arc<UnixStream>)>,
    fired: bool,
    quit: bool,
}

impl Watchdog {
    fn start() -> Result<(Arc<Self>, JoinHandle<()>), Error> {
        let dog = Arc::new(Self {
            state: Mutex::new(WatchState::default()),
            wake: Condvar::new(),
        });
        let d = Arc::clone(&dog);
        let thread = std::thread::Builder::new()
            .name("vhost-bridge-watchdog".into())
            .spawn(move || d.run())
            .map_err(|source| Error::Io {
                what: "starting the request watchdog thread",
                source,
            })?;
        Ok((dog, thread))
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            if st.quit {
                return;
            }
            st = match &st.armed {
                None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some((deadline, socket)) => {
                    let now = Instant::now();
                    if now >= *deadline {
                        let _ = socket.shutdown(std::net::Shutdown::Both);
                        st.fired = true;
                        st.armed = None;
                        st
                    } else {
                        let wait = *deadline - now;
                        self.wake
                            .wait_timeout(st, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                }
            };
        }
    }

    fn arm(&self, socket: &Arc<UnixStream>, timeout: Duration) {
        let mut st = self.lock();
        st.armed = Some((Instant::now() + timeout, Arc::clone(socket)));
        st.fired = false;
        self.wake.notify_one();
    }

    /// Disarms; whether it fired.
    fn disarm(&self) -> bool {
        let mut st = self.lock();
        st.armed = None;
        std::mem::take(&mut st.fired)
    }

    fn stop(&self) {
        self.lock().quit = true;
        self.wake.notify_one();
    }
}

/// Whether the peer of `socket` has closed it (a zero-timeout poll, then a peek).
fn peer_gone(socket: &UnixStream) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::IN | PollFlags::RDHUP)];
    match poll(
        &mut fds,
        Some(&Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    ) {
        Ok(0) => false,
        Ok(_) => {
            let revents = fds[0].revents();
            if revents.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP) {
                return true;
            }
            let mut byte = [0u8; 1];
            matches!(
                rustix::net::recv(
                    socket,
                    &mut byte,
                    rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT
                ),
                Ok((0, _))
            )
        }
        Err(_) => true,
    }
}

/// An eventfd as a borrowed fd (vmm-sys-util's `EventFd` has no `AsFd`).
fn borrow(fd: &EventFd) -> BorrowedFd<'_> {
    // SAFETY: the fd is owned by `fd` and stays open for the borrow's lifetime, which is
    // tied to the `&EventFd`.
    unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

/// Reads an eventfd's counter if it is non-zero (the fds are non-blocking).
fn drain(fd: &EventFd) -> bool {
    fd.read().is_ok()
}

impl Bridge {
    /// Connects to the daemon listening on `socket` (retrying until
    /// [`Options::connect_timeout`] while the socket does not exist or refuses), takes
    /// ownership of the session and negotiates the protocol features.
    pub fn connect(
        socket: impl AsRef<Path>,
        region: Arc<SharedRegion>,
        options: Options,
    ) -> Result<Self, Error> {
        if options.num_queues == 0 || options.num_queues > 64 {
            return Err(Error::Driver {
                why: format!("a device has 1 to 64 queues, not {}", options.num_queues),
            });
        }
        if !options.max_queue_size.is_power_of_two() || options.max_queue_size > 32768 {
            return Err(Error::Driver {
                why: format!(
                    "max queue size {} is not a power of two up to 32768",
                    options.max_queue_size
                ),
            });
        }
        let n = usize::from(options.num_queues);
        let mut fds = Vec::with_capacity(n);
        for _ in 0..n {
            let new = || {
                EventFd::new(EFD_NONBLOCK).map_err(|source| Error::Io {
                    what: "eventfd",
                    source,
                })
            };
            fds.push(QueueFds {
                kick: new()?,
                call: new()?,
                err: new()?,
            });
        }
        let (watchdog, watchdog_thread) = Watchdog::start()?;
        let bridge = Self {
            watchdog,
            watchdog_thread: Some(watchdog_thread),
            kicks: AtomicU64::new(0),
            call_wakeups: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            socket_path: socket.as_ref().to_path_buf(),
            region,
            options,
            fds,
            inner: Mutex::new(Inner {
                conn: None,
                failure: None,
                status: 0,
                driver_features: 0,
                queues: vec![None; n],
                started: vec![false; n],
            }),
        };
        {
            let mut inner = bridge.lock();
            inner.conn = Some(bridge.attach(bridge.options.connect_timeout)?);
        }
        Ok(bridge)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; carry on with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a new connection and negotiates (SET_OWNER, features, protocol features,
    /// queue count).
    fn attach(&self, timeout: Duration) -> Result<Conn, Error> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(&self.socket_path) {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(source) => {
                    return Err(Error::Connect {
                        socket: self.socket_path.clone(),
                        source,
                    })
                }
            }
        };
        let socket = Arc::new(stream.try_clone().map_err(|source| Error::Io {
            what: "duplicating the socket",
            source,
        })?);
        let mut frontend = Frontend::from_stream(stream, u64::from(self.options.num_queues));
        self.guarded(&socket, "SET_OWNER", || frontend.set_owner())?;
        let features = self.guarded(&socket, "GET_FEATURES", || frontend.get_features())?;
        let protocol_negotiated = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        let mut protocol = VhostUserProtocolFeatures::empty();
        if protocol_negotiated {
            let offered = self.guarded(&socket, "GET_PROTOCOL_FEATURES", || {
                frontend.get_protocol_features()
            })?;
            protocol = offered & wanted_protocol_features();
            self.guarded(&socket, "SET_PROTOCOL_FEATURES", || {
                frontend.set_protocol_features(protocol)
            })?;
            if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                // Every request without a reply of its own is acknowledged, so a refusal is
                // seen at the request that caused it.
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
            if protocol.contains(VhostUserProtocolFeatures::MQ) {
                let n = self.guarded(&socket, "GET_QUEUE_NUM", || frontend.get_queue_num())?;
                if n < u64::from(self.options.num_queues) {
                    return Err(Error::Driver {
                        why: format!(
                            "the daemon on {} offers {n} queues, the device is declared with {}",
                            self.socket_path.display(),
                            self.options.num_queues
                        ),
                    });
                }
            }
        }
        Ok(Conn {
            frontend,
            socket,
            features,
            protocol,
            protocol_negotiated,
        })
    }

    /// Runs `f` under the watchdog: at most [`Options::request_timeout`], then the socket
    /// is shut down and the request fails with [`Error::Timeout`]; a failure on a closed
    /// socket is [`Error::DaemonGone`].
    fn guarded<T>(
        &self,
        socket: &Arc<UnixStream>,
        request: &'static str,
        f: impl FnOnce() -> vhost::Result<T>,
    ) -> Result<T, Error> {
        self.watchdog.arm(socket, self.options.request_timeout);
        let r = f();
        let fired = self.watchdog.disarm();
        r.map_err(|source| {
            if fired {
                Error::Timeout {
                    what: request,
                    after: self.options.request_timeout,
                }
            } else if peer_gone(socket) {
                Error::DaemonGone { during: request }
            } else {
                Error::Request { request, source }
            }
        })
    }

    /// Runs one request on the live connection; a failure puts the device into
    /// NEEDS_RESET.
    fn request<T>(
        &self,
        inner: &mut Inner,
        request: &'static str,
        f: impl FnOnce(&mut Frontend) -> vhost::Result<T>,
    ) -> Result<T, Error> {
        if let Some(cause) = &inner.failure {
            return Err(Error::NeedsReset {
                cause: cause.clone(),
            });
        }
        let Some(conn) = inner.conn.as_mut() else {
            return Err(Error::NeedsReset {
                cause: "no connection to the daemon".into(),
            });
        };
        let socket = Arc::clone(&conn.socket);
        let frontend = &mut conn.frontend;
        match self.guarded(&socket, request, || f(frontend)) {
            Ok(v) => Ok(v),
            Err(e) => {
                Self::fail(inner, &e);
                Err(e)
            }
        }
    }

    fn fail(inner: &mut Inner, e: &Error) {
        if inner.failure.is_none() {
            inner.failure = Some(e.to_string());
        }
        inner.status |= status::DEVICE_NEEDS_RESET;
    }

    /// The shared region the daemon's memory table maps.
    pub fn region(&self) -> &Arc<SharedRegion> {
        &self.region
    }

    /// Moves the shared region to guest-physical `guest_base` (the frontend's view, e.g.
    /// learned from a virtio-msg region header). Refused while the device runs with
    /// another base.
    pub fn set_guest_base(&self, guest_base: u64) -> Result<(), Error> {
        let inner = self.lock();
        if guest_base == self.region.guest_base() {
            return Ok(());
        }
        if inner.status & status::DRIVER_OK != 0 || inner.queues.iter().any(Option::is_some) {
            return Err(Error::Driver {
                why: format!(
                    "the region cannot move to {guest_base:#x} while queues are set (it is at {:#x})",
                    self.region.guest_base()
                ),
            });
        }
        self.region.set_guest_base(guest_base)
    }

    /// The socket the bridge connects to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The virtio device type (from [`Options`]).
    pub fn device_type(&self) -> u32 {
        self.options.device_type
    }

    /// The number of queues.
    pub fn num_queues(&self) -> u16 {
        self.options.num_queues
    }

    /// The largest size the driver may give `queue` (0 for a queue that does not exist).
    pub fn max_queue_size(&self, queue: u16) -> u16 {
        if queue < self.options.num_queues {
            self.options.max_queue_size
        } else {
            0
        }
    }

    /// The device features the driver may accept: the daemon's, less vhost-user's own bits
    /// and the ones the bridge does not carry (26, 30, 33, 34); 0 while the device needs a
    /// reset.
    pub fn device_features(&self) -> u64 {
        let inner = self.lock();
        match (&inner.conn, &inner.failure) {
            (Some(conn), None) => conn.features & !HIDDEN_FEATURES,
            _ => 0,
        }
    }

    /// The features the driver accepted (given while `DRIVER` is set and `FEATURES_OK` is
    /// not); bits the device does not offer are refused.
    pub fn set_driver_features(&self, features: u64) -> Result<(), Error> {
        let offered = self.device_features();
        let mut inner = self.lock();
        if let Some(cause) = &inner.failure {
            return Err(Error::NeedsReset {
                cause: cause.clone(),
            });
        }
        if inner.status & status::DRIVER == 0 || inner.status & status::FEATURES_OK != 0 {
            return Err(Error::Driver {
                why: format!(
                    "driver features are written while DRIVER is set and FEATURES_OK is not (status {:#x})",
                    inner.status
                ),
            });
        }
        let extra = features & !offered;
        if extra != 0 {
            return Err(Error::Driver {
                why: format!("features {extra:#x} are not offered (device offers {offered:#x})"),
            });
        }
        inner.driver_features = features;
        Ok(())
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.lock().driver_features
    }

    /// The device status; `DEVICE_NEEDS_RESET` once the daemon failed.
    pub fn status(&self) -> u8 {
        self.lock().status
    }

    /// The error that put the device into `DEVICE_NEEDS_RESET`, if any.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Writes the device status (virtio 1.2 §3.1.1).
    ///
    /// 0 resets: running queues are stopped (SET_VRING_ENABLE 0, GET_VRING_BASE), and a
    /// device that failed re-attaches to the daemon's socket (a restarted daemon), trying
    /// for at most [`Options::reattach_timeout`]; if the daemon is not back, the reset fails
    /// and the device still needs one. Setting
    /// `FEATURES_OK` is refused (the bit stays clear) unless the accepted features are
    /// offered; setting `DRIVER_OK` starts the device: SET_FEATURES, SET_MEM_TABLE with the
    /// shared region, and every queue the driver set.
    pub fn set_status(&self, new: u8) -> Result<(), Error> {
        let mut inner = self.lock();
        if new == 0 {
            return self.reset(&mut inner);
        }
        if let Some(cause) = &inner.failure {
            return Err(Error::NeedsReset {
                cause: cause.clone(),
            });
        }
        let old = inner.status;
        if old & !new != 0 {
            return Err(Error::Driver {
                why: format!(
                    "status {new:#x} clears bits of {old:#x}; only a reset (0) clears them"
                ),
            });
        }
        let added = new & !old;
        let mut new = new;
        if added & status::FEATURES_OK != 0 {
            let offered = inner
                .conn
                .as_ref()
                .map_or(0, |c| c.features & !HIDDEN_FEATURES);
            if inner.driver_features & !offered != 0 {
                new &= !status::FEATURES_OK;
            }
        }
        if added & status::DRIVER_OK != 0 {
            if new & status::FEATURES_OK == 0 {
                return Err(Error::Driver {
                    why: format!("DRIVER_OK without FEATURES_OK (status {new:#x})"),
                });
            }
            self.start(&mut inner)?;
        }
        inner.status = new;
        Ok(())
    }

    fn reset(&self, inner: &mut Inner) -> Result<(), Error> {
        if inner.failure.is_none() {
            for q in 0..self.options.num_queues {
                if self.stop_queue(inner, q).is_err() {
                    break;
                }
            }
        }
        if inner.failure.is_some() || inner.conn.is_none() {
            inner.conn = None;
            match self.attach(self.options.reattach_timeout) {
                Ok(conn) => inner.conn = Some(conn),
                Err(e) => {
                    Self::fail(inner, &e);
                    inner.failure = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        inner.failure = None;
        inner.status = 0;
        inner.driver_features = 0;
        inner.queues.iter_mut().for_each(|q| *q = None);
        inner.started.iter_mut().for_each(|s| *s = false);
        Ok(())
    }

    fn start(&self, inner: &mut Inner) -> Result<(), Error> {
        let (features, negotiated) = match &inner.conn {
            Some(c) => (inner.driver_features, c.protocol_negotiated),
            None => (inner.driver_features, false),
        };
        let features = features
            | if negotiated {
                VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            } else {
                0
            };
        self.request(inner, "SET_FEATURES", |f| f.set_features(features))?;
        let entry = self.region.table_entry()?;
        self.request(inner, "SET_MEM_TABLE", |f| {
            f.set_mem_table(&[entry]).map(|_| ())
        })?;
        for q in 0..self.options.num_queues {
            if inner.queues[usize::from(q)].is_some() {
                self.start_queue(inner, q)?;
            }
        }
        self.sync(inner)
    }

    /// Returns once the daemon has handled every request sent so far.
    ///
    /// Without `REPLY_ACK` none of the requests that start a ring (SET_FEATURES …
    /// SET_VRING_ENABLE) has an answer, so they may still sit unread in the daemon's socket
    /// when the driver's first kick arrives. vhost-user-backend (rust-vmm's daemons) reads
    /// a kick as soon as SET_VRING_KICK registered the eventfd and drops it while the ring
    /// is not yet enabled, so that kick would be lost and a driver waiting for its first
    /// request would wait for ever (tests/kick_race.rs). A request with an answer of its
    /// own orders them: the daemon handles requests one at a time, in order, so its answer
    /// to GET_FEATURES means the ring requests before it are done. QEMU does the same
    /// (`enforce_reply` in hw/virtio/vhost-user.c). With `REPLY_ACK` every request was
    /// acknowledged already.
    fn sync(&self, inner: &mut Inner) -> Result<(), Error> {
        let acked = inner
            .conn
            .as_ref()
            .is_some_and(|c| c.protocol.contains(VhostUserProtocolFeatures::REPLY_ACK));
        if acked {
            return Ok(());
        }
        self.request(inner, "GET_FEATURES (waiting for the ring requests)", |f| {
            f.get_features().map(|_| ())
        })
    }

    fn start_queue(&self, inner: &mut Inner, q: u16) -> Result<(), Error> {
        let i = usize::from(q);
        let Some(cfg) = inner.queues[i] else {
            return Ok(());
        };
        let va = |gpa: u64| {
            self.region.frontend_va(gpa).ok_or_else(|| Error::Driver {
                why: format!("queue {q}: address {gpa:#x} is outside the shared region"),
            })
        };
        let addr = VringConfigData {
            queue_max_size: self.options.max_queue_size,
            queue_size: cfg.size,
            flags: 0,
            desc_table_addr: va(cfg.desc)?,
            used_ring_addr: va(cfg.device)?,
            avail_ring_addr: va(cfg.driver)?,
            log_addr: None,
        };
        let fds = &self.fds[i];
        // Counts left from an earlier life of the queue are not this one's.
        drain(&fds.kick);
        drain(&fds.call);
        drain(&fds.err);
        let qi = i;
        self.request(inner, "SET_VRING_NUM", |f| f.set_vring_num(qi, cfg.size))?;
        self.request(inner, "SET_VRING_BASE", |f| f.set_vring_base(qi, 0))?;
        self.request(inner, "SET_VRING_ADDR", |f| f.set_vring_addr(qi, &addr))?;
        self.request(inner, "SET_VRING_KICK", |f| f.set_vring_kick(qi, &fds.kick))?;
        self.request(inner, "SET_VRING_CALL", |f| f.set_vring_call(qi, &fds.call))?;
        self.request(inner, "SET_VRING_ERR", |f| f.set_vring_err(qi, &fds.err))?;
        if inner.conn.as_ref().is_some_and(|c| c.protocol_negotiated) {
            self.request(inner, "SET_VRING_ENABLE", |f| f.set_vring_enable(qi, true))?;
        }
        inner.started[i] = true;
        Ok(())
    }

    fn stop_queue(&self, inner: &mut Inner, q: u16) -> Result<(), Error> {
        let i = usize::from(q);
        if !inner.started[i] {
            return Ok(());
        }
        inner.started[i] = false;
        if inner.conn.as_ref().is_some_and(|c| c.protocol_negotiated) {
            self.request(inner, "SET_VRING_ENABLE", |f| f.set_vring_enable(i, false))?;
        }
        self.request(inner, "GET_VRING_BASE", |f| f.get_vring_base(i))?;
        Ok(())
    }

    /// Sets queue `queue` (after `FEATURES_OK`). Every part must lie inside the shared
    /// region, aligned; a queue set after `DRIVER_OK` starts at once.
    pub fn set_queue(&self, queue: u16, cfg: QueueConfig) -> Result<(), Error> {
        let mut inner = self.lock();
        if let Some(cause) = &inner.failure {
            return Err(Error::NeedsReset {
                cause: cause.clone(),
            });
        }
        if queue >= self.options.num_queues {
            return Err(Error::Driver {
                why: format!(
                    "queue {queue} does not exist (the device has {})",
                    self.options.num_queues
                ),
            });
        }
        if inner.status & status::FEATURES_OK == 0 {
            return Err(Error::Driver {
                why: format!(
                    "queue {queue} set before FEATURES_OK (status {:#x})",
                    inner.status
                ),
            });
        }
        if !cfg.size.is_power_of_two() || cfg.size > self.options.max_queue_size {
            return Err(Error::Driver {
                why: format!(
                    "queue {queue}: size {} is not a power of two up to {}",
                    cfg.size, self.options.max_queue_size
                ),
            });
        }
        let n = u64::from(cfg.size);
        for (part, gpa, len, align) in [
            ("descriptor table", cfg.desc, 16 * n, 16),
            ("driver area", cfg.driver, 6 + 2 * n, 2),
            ("device area", cfg.device, 6 + 8 * n, 4),
        ] {
            if !self.region.contains(gpa, len) {
                return Err(Error::Driver {
                    why: format!(
                        "queue {queue}: {part} [{gpa:#x}, +{len:#x}) is outside the shared region [{:#x}, +{:#x})",
                        self.region.guest_base(),
                        self.region.size()
                    ),
                });
            }
            if gpa % align != 0 {
                return Err(Error::Driver {
                    why: format!("queue {queue}: {part} at {gpa:#x} is not {align}-byte aligned"),
                });
            }
        }
        if inner.started[usize::from(queue)] {
            self.stop_queue(&mut inner, queue)?;
        }
        inner.queues[usize::from(queue)] = Some(cfg);
        if inner.status & status::DRIVER_OK != 0 {
            self.start_queue(&mut inner, queue)?;
            self.sync(&mut inner)?;
        }
        Ok(())
    }

    /// Stops and forgets queue `queue` (the daemon no longer touches its memory once this
    /// returns, unless it returned an error).
    pub fn reset_queue(&self, queue: u16) -> Result<(), Error> {
        let mut inner = self.lock();
        if queue >= self.options.num_queues {
            return Err(Error::Driver {
                why: format!(
                    "queue {queue} does not exist (the device has {})",
                    self.options.num_queues
                ),
            });
        }
        inner.queues[usize::from(queue)] = None;
        if inner.failure.is_some() {
            inner.started[usize::from(queue)] = false;
            return Ok(());
        }
        self.stop_queue(&mut inner, queue)
    }

    /// The queue's configuration, if the driver set it.
    pub fn queue(&self, queue: u16) -> Option<QueueConfig> {
        self.lock()
            .queues
            .get(usize::from(queue))
            .copied()
            .flatten()
    }

    fn config_check(&self, inner: &Inner, offset: u32, len: usize) -> Result<u32, Error> {
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l > 0 && offset.checked_add(l).is_some_and(|end| end <= 256))
            .ok_or_else(|| Error::Driver {
                why: format!(
                    "config access of {len} bytes at {offset} is outside the 256-byte config space"
                ),
            })?;
        if !inner
            .conn
            .as_ref()
            .is_some_and(|c| c.protocol.contains(VhostUserProtocolFeatures::CONFIG))
        {
            return Err(Error::Driver {
                why: "the daemon has no config space (no VHOST_USER_PROTOCOL_F_CONFIG)".into(),
            });
        }
        Ok(len)
    }

    /// Reads the device config space at `offset` into `buf` (GET_CONFIG).
    ///
    /// The bridge always asks for the config space from offset 0 up to the end of the
    /// access and takes the requested bytes from the answer: QEMU's frontends read it that
    /// way and libvhost-user daemons (qemu-storage-daemon among them) ignore the offset.
    pub fn read_config(&self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        let mut inner = self.lock();
        let len = self.config_check(&inner, offset, buf.len())?;
        let end = offset + len;
        let zeros = vec![0u8; end as usize];
        let (_, payload) = self.request(&mut inner, "GET_CONFIG", |f| {
            f.get_config(0, end, VhostUserConfigFlags::empty(), &zeros)
        })?;
        if payload.len() != end as usize {
            return Err(Error::Driver {
                why: format!("GET_CONFIG answered {} bytes for {end}", payload.len()),
            });
        }
        buf.copy_from_slice(&payload[offset as usize..]);
        Ok(())
    }

    /// Writes `data` into the device config space at `offset` (SET_CONFIG).
    pub fn write_config(&self, offset: u32, data: &[u8]) -> Result<(), Error> {
        let mut inner = self.lock();
        self.config_check(&inner, offset, data.len())?;
        self.request(&mut inner, "SET_CONFIG", |f| {
            f.set_config(offset, VhostUserConfigFlags::empty(), data)
        })
    }

    /// "Available buffers" on `queue`: kicks the daemon (writes the queue's kick eventfd).
    /// Takes no lock.
    pub fn notify(&self, queue: u16) -> Result<(), Error> {
        let fds = self
            .fds
            .get(usize::from(queue))
            .ok_or_else(|| Error::Driver {
                why: format!(
                    "queue {queue} does not exist (the device has {})",
                    self.options.num_queues
                ),
            })?;
        self.kicks.fetch_add(1, Ordering::Relaxed);
        fds.kick.write(1).map_err(|source| Error::Io {
            what: "writing a kick eventfd",
            source,
        })
    }

    /// Notification counts so far (for benchmarks: notifications per request).
    pub fn stats(&self) -> Stats {
        Stats {
            kicks: self.kicks.load(Ordering::Relaxed),
            call_wakeups: self.call_wakeups.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    /// The eventfd the daemon writes when it used buffers of `queue` (for an epoll loop that
    /// turns it into an event-channel notification).
    pub fn call_fd(&self, queue: u16) -> Option<&EventFd> {
        self.fds.get(usize::from(queue)).map(|f| &f.call)
    }

    /// The eventfd [`Bridge::notify`] writes for `queue`.
    pub fn kick_fd(&self, queue: u16) -> Option<&EventFd> {
        self.fds.get(usize::from(queue)).map(|f| &f.kick)
    }

    /// Waits at most `timeout` for "used buffers" notifications and returns the queues that
    /// had one, as a bit mask (bit q = queue q; 0 when the time ran out). A daemon that
    /// closed its connection or signalled a vring error ends the wait with that error and
    /// the device needs a reset.
    pub fn wait(&self, timeout: Duration) -> Result<u64, Error> {
        self.wait_with(&[], timeout).map(|w| w.used)
    }

    /// [`Bridge::wait`], also woken by any of `extra` becoming readable (e.g. the event
    /// channel's fd, `LinuxEvents::fd`, so one loop sleeps until the frontend rings or the
    /// daemon completes). The extras are only polled, never read.
    pub fn wait_with(&self, extra: &[BorrowedFd<'_>], timeout: Duration) -> Result<Wake, Error> {
        let socket = {
            let inner = self.lock();
            if let Some(cause) = &inner.failure {
                return Err(Error::NeedsReset {
                    cause: cause.clone(),
                });
            }
            match &inner.conn {
                Some(c) => Arc::clone(&c.socket),
                None => {
                    return Err(Error::NeedsReset {
                        cause: "no connection to the daemon".into(),
                    })
                }
            }
        };
        let n = self.fds.len();
        let mut polled: Vec<PollFd<'_>> = Vec::with_capacity(2 * n + 1);
        for q in &self.fds {
            polled.push(PollFd::from_borrowed_fd(borrow(&q.call), PollFlags::IN));
            polled.push(PollFd::from_borrowed_fd(borrow(&q.err), PollFlags::IN));
        }
        polled.push(PollFd::new(&*socket, PollFlags::IN | PollFlags::RDHUP));
        for fd in extra {
            polled.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
        }
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut polled, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(Wake::default()),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Io {
                    what: "polling the call eventfds",
                    source: e.into(),
                })
            }
        }
        let socket_events = polled[2 * n].revents();
        let revents: Vec<PollFlags> = polled.iter().map(|p| p.revents()).collect();
        drop(polled);
        if !socket_events.is_empty() && peer_gone(&socket) {
            let e = Error::DaemonGone {
                during: "waiting for used buffers",
            };
            Self::fail(&mut self.lock(), &e);
            return Err(e);
        }
        let mut used = 0u64;
        for (q, fds) in self.fds.iter().enumerate() {
            if !revents[2 * q + 1].is_empty() && drain(&fds.err) {
                let e = Error::Vring { queue: q as u16 };
                Self::fail(&mut self.lock(), &e);
                return Err(e);
            }
            if !revents[2 * q].is_empty() {
                if let Ok(n) = fds.call.read() {
                    self.call_wakeups.fetch_add(1, Ordering::Relaxed);
                    self.calls.fetch_add(n, Ordering::Relaxed);
                    used |= 1 << q;
                }
            }
        }
        let mut woken = 0u64;
        for (i, r) in revents[2 * n + 1..].iter().enumerate() {
            if !r.is_empty() && i < 64 {
                woken |= 1 << i;
            }
        }
        Ok(Wake { used, extra: woken })
    }
}
