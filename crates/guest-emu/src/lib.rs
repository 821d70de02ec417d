//! The guest side of staticbus's emulated hypervisor: a domain running as a Linux process
//! under `staticbus run` uses this transport to reach its hypervisor thread.
//!
//! [`EmuPlatform::connect`] maps what the runner handed the process — its own
//! `shared_info` page and channel page (one memfd) and the memfds of exactly the shared
//! regions its manifest lists — and loads its manifest. [`EmuHypercall`] implements
//! [`staticbus_guest::Hypercall`] over the channel page (see [`staticbus_emu_wire`]), so the event-channel
//! driver and the protocols above it are the same code as on real Xen.
//!
//! Blocking (`SCHEDOP_block`, `SCHEDOP_poll`) is done here, in the guest process, by sleeping
//! on the `events` futex the hypervisor bumps whenever something becomes pending: the
//! semantics are Xen's (return once an event may be pending; spurious returns allowed), and
//! it saves a round trip through the hypervisor on every wake-up.

#![deny(unsafe_op_in_unsafe_fn)]

use staticbus_abi::layout::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnPort, EvtchnStatus, SchedPoll,
};
use staticbus_abi::shared_info::SharedInfo;
use staticbus_abi::{errno, evtchn, hypercall as hc, sched};
use staticbus_emu_wire::{self as wire, Control, SharedMem, ARG_MAX, DOMAIN_MEM_SIZE};
use staticbus_guest::{
    Errno, EventChannels, FiredSet, Hypercall, Platform, Region, TwoLevelTransport,
};
use staticbus_manifest::Manifest;
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// A failure to attach to the emulator.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot attach to the staticbus emulator: {}", self.0)
    }
}

impl std::error::Error for ConnectError {}

/// The hypercall transport: requests through the channel page, blocking on its futexes.
#[derive(Debug)]
pub struct EmuHypercall {
    mem: SharedMem,
}

/// Default spin iterations waiting for a hypercall response before sleeping.
pub const DEFAULT_SPIN: u32 = 0;

/// Environment variable overriding [`DEFAULT_SPIN`] (0 = always sleep).
pub const ENV_SPIN: &str = "STATICBUS_EMU_SPIN";

fn spin_budget() -> u32 {
    static SPIN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        std::env::var(ENV_SPIN)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SPIN)
    })
}

impl EmuHypercall {
    fn control(&self) -> &Control {
        self.mem.control()
    }

    fn shared_info(&self) -> SharedInfo<'_> {
        SharedInfo::new(self.mem.shared_info_words())
    }

    /// One request/response with the hypervisor thread. `arg` is copied in, and back out
    /// after the call.
    pub fn call(&self, op: u64, cmd: u32, arg: &mut [u8]) -> i64 {
        if arg.len() > ARG_MAX {
            return -i64::from(errno::EINVAL);
        }
        let c = self.control();
        self.mem.write_request(op, cmd, arg);
        let seq = c.req_seq.load(SeqCst).wrapping_add(1);
        c.req_seq.store(seq, SeqCst);
        if c.hv_waiting.load(SeqCst) != 0 {
            wire::wake(&c.req_seq);
        }
        let mut spins = 0;
        let budget = spin_budget();
        while c.done_seq.load(SeqCst) != seq {
            if spins < budget {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            c.guest_waiting.fetch_add(1, SeqCst);
            let d = c.done_seq.load(SeqCst);
            if d != seq {
                wire::wait(&c.done_seq, d, Some(Duration::from_millis(100)));
            }
            c.guest_waiting.fetch_sub(1, SeqCst);
        }
        self.mem.read_response(arg)
    }

    /// Sleeps until `ready()` holds, re-checking after every wake-up of the `events` futex,
    /// or until `deadline`.
    fn wait_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) {
        let c = self.control();
        loop {
            let seen = c.events.load(SeqCst);
            if ready() {
                return;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return,
                },
                None => Some(Duration::from_millis(200)),
            };
            c.guest_waiting.fetch_add(1, SeqCst);
            if c.events.load(SeqCst) == seen && !ready() {
                wire::wait(&c.events, seen, left);
            }
            c.guest_waiting.fetch_sub(1, SeqCst);
        }
    }

    /// Marshals a fixed-size argument struct, calls, and copies the result back.
    ///
    /// # Safety
    /// `arg` must point to a valid, writable `T`.
    unsafe fn call_struct<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
        &self,
        op: u64,
        cmd: u32,
        arg: *mut u8,
    ) -> i64 {
        if arg.is_null() {
            return -i64::from(errno::EFAULT);
        }
        // SAFETY: the caller guarantees `arg` points to a valid, writable T; read_unaligned
        // copes with any alignment.
        let mut value: T = unsafe { std::ptr::read_unaligned(arg as *const T) };
        let ret = self.call(op, cmd, value.as_mut_bytes());
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(arg as *mut T, value) };
        ret
    }
}

impl Hypercall for EmuHypercall {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: (every arm) the caller guarantees `arg` points to the struct for `cmd`.
        unsafe {
            match cmd {
                evtchn::OP_ALLOC_UNBOUND => {
                    self.call_struct::<EvtchnAllocUnbound>(hc::EVENT_CHANNEL_OP, cmd, arg)
                }
                evtchn::OP_BIND_INTERDOMAIN => {
                    self.call_struct::<EvtchnBindInterdomain>(hc::EVENT_CHANNEL_OP, cmd, arg)
                }
                evtchn::OP_SEND | evtchn::OP_CLOSE | evtchn::OP_UNMASK => {
                    self.call_struct::<EvtchnPort>(hc::EVENT_CHANNEL_OP, cmd, arg)
                }
                evtchn::OP_STATUS => {
                    self.call_struct::<EvtchnStatus>(hc::EVENT_CHANNEL_OP, cmd, arg)
                }
                _ => self.call(hc::EVENT_CHANNEL_OP, cmd, &mut []),
            }
        }
    }

    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        if cmd == staticbus_abi::memory::ADD_TO_PHYSMAP {
            // SAFETY: the caller guarantees `arg` points to a `struct xen_add_to_physmap`.
            return unsafe {
                self.call_struct::<staticbus_abi::layout::AddToPhysmap>(hc::MEMORY_OP, cmd, arg)
            };
        }
        self.call(hc::MEMORY_OP, cmd, &mut [])
    }

    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        match cmd {
            sched::OP_BLOCK => {
                let si = self.shared_info();
                self.wait_until(None, || si.upcall_pending());
                0
            }
            sched::OP_POLL => {
                if arg.is_null() {
                    return -i64::from(errno::EFAULT);
                }
                // SAFETY: the caller guarantees `arg` points to a `struct sched_poll`.
                let poll: SchedPoll = unsafe { std::ptr::read_unaligned(arg as *const SchedPoll) };
                if poll.nr_ports > 128 || (poll.nr_ports > 0 && poll.ports == 0) {
                    return -i64::from(errno::EINVAL);
                }
                let base = std::ptr::with_exposed_provenance::<u32>(poll.ports as usize);
                let ports: Vec<u32> = (0..poll.nr_ports as usize)
                    // SAFETY: on this transport guest addresses are process addresses (the
                    // driver exposes the array's provenance), and the caller guarantees
                    // `ports` points to `nr_ports` ports.
                    .map(|i| unsafe { std::ptr::read_unaligned(base.add(i)) })
                    .collect();
                if ports
                    .iter()
                    .any(|&p| p >= staticbus_abi::shared_info::NR_PORTS)
                {
                    return -i64::from(errno::EINVAL);
                }
                let deadline = (poll.timeout != 0).then(|| {
                    Instant::now() + Duration::from_nanos(poll.timeout.saturating_sub(now_ns()))
                });
                let si = self.shared_info();
                self.wait_until(deadline, || ports.iter().any(|&p| si.is_pending(p)));
                0
            }
            sched::OP_SHUTDOWN => {
                // SAFETY: the caller guarantees `arg` points to a `struct sched_shutdown`.
                let ret = unsafe {
                    self.call_struct::<staticbus_abi::layout::SchedShutdown>(hc::SCHED_OP, cmd, arg)
                };
                if ret == 0 {
                    // SAFETY: as above.
                    let reason = unsafe { std::ptr::read_unaligned(arg as *const u32) };
                    // A domain does not run on after shutdown.
                    std::process::exit(if reason == sched::SHUTDOWN_CRASH {
                        70
                    } else {
                        0
                    });
                }
                ret
            }
            _ => self.call(hc::SCHED_OP, cmd, &mut []),
        }
    }

    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64 {
        if cmd != staticbus_abi::console::WRITE {
            return -i64::from(errno::ENOSYS);
        }
        if buf.is_null() && count > 0 {
            return -i64::from(errno::EFAULT);
        }
        // SAFETY: the caller guarantees `buf` points to `count` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf, count) };
        let mut written = 0i64;
        for chunk in bytes.chunks(ARG_MAX) {
            let mut c = chunk.to_vec();
            let r = self.call(hc::CONSOLE_IO, cmd, &mut c);
            if r < 0 {
                return r;
            }
            written += r;
        }
        written
    }
}

/// Nanoseconds of the emulated Xen system time (CLOCK_MONOTONIC), for `SCHEDOP_poll`
/// timeouts, which are absolute.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// Everything a domain process gets from `staticbus run`.
#[derive(Debug)]
pub struct EmuPlatform {
    hc: EmuHypercall,
    regions: HashMap<String, SharedMem>,
    manifest: &'static Manifest,
    name: String,
    fired: FiredSet,
}

fn take_fd(n: &str) -> Result<OwnedFd, ConnectError> {
    let fd: i32 = n
        .trim()
        .parse()
        .map_err(|_| ConnectError(format!("`{n}` is not a file descriptor")))?;
    if rustix::io::fcntl_getfd(
        // SAFETY: we only probe the fd number; no ownership is taken here.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .is_err()
    {
        return Err(ConnectError(format!("file descriptor {fd} is not open")));
    }
    // SAFETY: the runner passed this fd to us for our exclusive use; it is open (checked
    // above) and nothing else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl EmuPlatform {
    /// Attaches to the emulator using the environment `staticbus run` sets up.
    pub fn connect() -> Result<EmuPlatform, ConnectError> {
        let var = |k: &str| {
            std::env::var(k).map_err(|_| {
                ConnectError(format!(
                    "{k} is not set: run this program through `staticbus run`"
                ))
            })
        };
        let fd = take_fd(&var(wire::ENV_FD)?)?;
        let mem = SharedMem::map(fd, DOMAIN_MEM_SIZE)
            .map_err(|e| ConnectError(format!("mmap of the domain memory: {e}")))?;
        let manifest_path = var(wire::ENV_MANIFEST)?;
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| ConnectError(format!("{manifest_path}: {e}")))?;
        let manifest = staticbus_manifest::json::load(&text).map_err(ConnectError)?;
        let mut regions = HashMap::new();
        let spec = std::env::var(wire::ENV_REGIONS).unwrap_or_default();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (id, fd) = item
                .rsplit_once('=')
                .ok_or_else(|| ConnectError(format!("bad region entry `{item}`")))?;
            let region = manifest
                .region(id)
                .ok_or_else(|| ConnectError(format!("region `{id}` is not in the manifest")))?;
            let fd = take_fd(fd)?;
            let len = usize::try_from(region.size)
                .map_err(|_| ConnectError(format!("region `{id}` is too large")))?;
            let map = SharedMem::map(fd, len)
                .map_err(|e| ConnectError(format!("mmap of region `{id}`: {e}")))?;
            regions.insert(id.to_string(), map);
        }
        Ok(EmuPlatform {
            hc: EmuHypercall { mem },
            regions,
            manifest,
            name: var(wire::ENV_DOMAIN)?,
            fired: FiredSet::new(),
        })
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The futex-based transport (e.g. to count or time hypercalls).
    pub fn transport(&self) -> &EmuHypercall {
        &self.hc
    }

    /// The memfd behind shared region `shm_id` (as the runner handed it), e.g. to give the
    /// same memory to another process — a vhost-user daemon's memory table — without a
    /// copy. `None` if the domain has no such region.
    pub fn region_fd(&self, shm_id: &str) -> Option<BorrowedFd<'_>> {
        self.regions.get(shm_id).map(SharedMem::fd)
    }

    /// A handle that sleeps until the hypervisor announces an event for this domain,
    /// usable from another thread than the one making hypercalls (it makes none).
    pub fn event_waiter(&self) -> EventWaiter<'_> {
        EventWaiter {
            control: self.hc.control(),
        }
    }
}

/// Sleeps on the domain's `events` futex, which the hypervisor bumps whenever something
/// becomes pending for the domain (see [`EmuPlatform::event_waiter`]).
///
/// It only reads the futex word and sleeps on it, so a thread of its own can turn the
/// domain's events into something else to wait on (an eventfd in an epoll loop) while the
/// domain's thread keeps making hypercalls: the guest's sleepers are counted
/// (`guest_waiting`), so one of them finishing does not stop the hypervisor waking another.
#[derive(Clone, Copy, Debug)]
pub struct EventWaiter<'a> {
    control: &'a Control,
}

impl EventWaiter<'_> {
    /// The current value of the event counter.
    pub fn counter(&self) -> u32 {
        self.control.events.load(SeqCst)
    }

    /// Sleeps until the counter differs from `seen`, at most `timeout`; returns the
    /// counter (equal to `seen` on a timeout or a spurious wake-up).
    pub fn wait_change(&self, seen: u32, timeout: Duration) -> u32 {
        let c = self.control;
        c.guest_waiting.fetch_add(1, SeqCst);
        if c.events.load(SeqCst) == seen {
            wire::wait(&c.events, seen, Some(timeout));
        }
        c.guest_waiting.fetch_sub(1, SeqCst);
        c.events.load(SeqCst)
    }
}

impl TwoLevelTransport for EmuPlatform {
    type H = EmuHypercall;

    fn hypercall(&self) -> &EmuHypercall {
        &self.hc
    }

    fn shared_info(&self) -> SharedInfo<'_> {
        self.hc.shared_info()
    }

    fn fired(&self) -> &FiredSet {
        &self.fired
    }
}

impl Platform for EmuPlatform {
    type Events<'a> = EventChannels<'a, EmuHypercall>;

    /// The 2-level driver over this transport ([`TwoLevelTransport::two_level_events`]).
    fn events(&self) -> EventChannels<'_, EmuHypercall> {
        self.two_level_events()
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        let m = self.regions.get(shm_id)?;
        // SAFETY: the mapping is `len` bytes of shared memory that stays mapped as long as
        // `self` lives, which bounds the returned region's use by the Platform contract.
        unsafe { Region::new(m.as_ptr(), m.len()) }
    }

    fn manifest(&self) -> &Manifest {
        self.manifest
    }

    /// `SCHEDOP_yield` through the emulator.
    fn yield_now(&self) -> Result<(), Errno> {
        staticbus_guest::ops::sched_yield(&self.hc)
    }
}
