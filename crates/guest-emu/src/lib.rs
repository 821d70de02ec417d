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
//!
//! Static event channels between two domains are delivered directly (docs/adr/0009,
//! [`staticbus_emu_wire::direct`]): `EVTCHNOP_send` on such a port bumps a counter in the
//! sender's outbox and wakes the peer, with no hypercall, and the receiver folds the
//! counters into its own pending bits before any read of them
//! ([`staticbus_guest::Hypercall::sync_pending`]) and sleeps on them too
//! (`futex_waitv`). The runner turns it off with `STATICBUS_EMU_DIRECT=0`; then every
//! send is a hypercall.

#![deny(unsafe_op_in_unsafe_fn)]

mod direct;

use staticbus_abi::layout::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnPort, EvtchnStatus, SchedPoll,
};
use staticbus_abi::shared_info::SharedInfo;
use staticbus_abi::{errno, evtchn, hypercall as hc, sched};
use staticbus_emu_wire::direct::{self as dw, ReadOnlyMem, WaitWord};
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
    direct: Option<direct::Direct>,
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

    /// Sleeps until `ready()` holds, re-checking after every wake-up of the `events` futex
    /// (and of the peers' direct-delivery counters, folded in before every check), or
    /// until `deadline`.
    fn wait_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) {
        let c = self.control();
        let mut words = Vec::new();
        loop {
            let seen = c.events.load(SeqCst);
            self.sync_pending();
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
            if let Some(d) = &self.direct {
                d.announce_sleep(true);
            }
            if c.events.load(SeqCst) == seen && {
                self.sync_pending();
                !ready()
            } {
                match &self.direct {
                    Some(d) => {
                        words.clear();
                        words.push(WaitWord {
                            word: &c.events,
                            expected: seen,
                        });
                        d.wait_words(&mut words);
                        dw::wait_any(&words, left);
                    }
                    None => wire::wait(&c.events, seen, left),
                }
            }
            if let Some(d) = &self.direct {
                d.announce_sleep(false);
            }
            c.guest_waiting.fetch_sub(1, SeqCst);
        }
    }

    /// How many static ports this domain sends and receives on directly (0 with
    /// direct delivery off).
    pub fn direct_ports(&self) -> usize {
        self.direct.as_ref().map_or(0, direct::Direct::ports)
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
                    if let (Some(d), false) = (&self.direct, arg.is_null()) {
                        let port = std::ptr::read_unaligned(arg as *const EvtchnPort).port;
                        if cmd == evtchn::OP_SEND && d.send(port) {
                            return 0;
                        }
                        if cmd == evtchn::OP_CLOSE {
                            d.closing(port);
                        }
                    }
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

    fn sync_pending(&self) {
        if let Some(d) = &self.direct {
            d.fold(&self.shared_info());
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

/// `peer=fd,…` of environment variable `k` (empty or unset: none).
fn fd_list(k: &str) -> Result<Vec<(u16, OwnedFd)>, ConnectError> {
    let mut v = Vec::new();
    for item in std::env::var(k)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (peer, fd) = item
            .split_once('=')
            .ok_or_else(|| ConnectError(format!("bad {k} entry `{item}`")))?;
        let peer = peer
            .parse()
            .map_err(|_| ConnectError(format!("bad domain id in {k} entry `{item}`")))?;
        v.push((peer, take_fd(fd)?));
    }
    Ok(v)
}

/// The direct-delivery pages the runner handed over, if it did.
fn connect_direct(manifest: &Manifest) -> Result<Option<direct::Direct>, ConnectError> {
    let Ok(state) = std::env::var(dw::ENV_STATE) else {
        return Ok(None);
    };
    let size = |fd: &OwnedFd| -> Result<usize, ConnectError> {
        rustix::fs::fstat(fd)
            .map(|st| st.st_size as usize)
            .map_err(|e| ConnectError(format!("direct delivery: fstat: {e}")))
    };
    let state = take_fd(&state)?;
    let len = size(&state)?;
    let state = SharedMem::map(state, len)
        .map_err(|e| ConnectError(format!("direct delivery: inbox state: {e}")))?;
    let mut outboxes = Vec::new();
    for (peer, fd) in fd_list(dw::ENV_OUTBOXES)? {
        let len = size(&fd)?;
        let m = SharedMem::map(fd, len)
            .map_err(|e| ConnectError(format!("direct delivery: outbox to d{peer}: {e}")))?;
        outboxes.push((peer, m));
    }
    let mut inboxes = Vec::new();
    for (peer, fd) in fd_list(dw::ENV_INBOXES)? {
        let len = size(&fd)?;
        let m = ReadOnlyMem::map(&fd, len)
            .map_err(|e| ConnectError(format!("direct delivery: outbox of d{peer}: {e}")))?;
        inboxes.push((peer, m));
    }
    direct::Direct::new(manifest, outboxes, inboxes, state)
        .map(Some)
        .map_err(|e| ConnectError(format!("direct delivery: {e}")))
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
        let direct = connect_direct(manifest)?;
        Ok(EmuPlatform {
            hc: EmuHypercall { mem, direct },
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
            direct: self.hc.direct.as_ref(),
        }
    }
}

/// Sleeps on the domain's `events` futex, which the hypervisor bumps whenever something
/// becomes pending for the domain, and on the peers' direct-delivery counters (see
/// [`EmuPlatform::event_waiter`]).
///
/// It only reads these words and sleeps on them, so a thread of its own can turn the
/// domain's events into something else to wait on (an eventfd in an epoll loop) while the
/// domain's thread keeps making hypercalls: the guest's sleepers are counted
/// (`guest_waiting`), so one of them finishing does not stop the hypervisor waking another.
/// A direct send shows up here as a change of the counter; the pending bit is set when
/// the domain's driver next looks ([`staticbus_guest::Hypercall::sync_pending`]).
#[derive(Clone, Copy, Debug)]
pub struct EventWaiter<'a> {
    control: &'a Control,
    direct: Option<&'a direct::Direct>,
}

impl EventWaiter<'_> {
    /// The current value of the event counter (the hypervisor's, plus the peers'
    /// direct-delivery counters).
    pub fn counter(&self) -> u32 {
        let ev = self.control.events.load(SeqCst);
        ev.wrapping_add(self.direct.map_or(0, direct::Direct::counter_sum))
    }

    /// Sleeps until the counter differs from `seen`, at most `timeout`; returns the
    /// counter (equal to `seen` on a timeout or a spurious wake-up).
    pub fn wait_change(&self, seen: u32, timeout: Duration) -> u32 {
        let c = self.control;
        c.guest_waiting.fetch_add(1, SeqCst);
        if let Some(d) = self.direct {
            d.announce_sleep(true);
        }
        let ev = c.events.load(SeqCst);
        let mut words = vec![WaitWord {
            word: &c.events,
            expected: ev,
        }];
        if let Some(d) = self.direct {
            d.wait_words(&mut words);
        }
        // Here the counters as they are, not as folded: the sum is what `counter` gave.
        for w in words.iter_mut().skip(1) {
            w.expected = w.word.load(SeqCst);
        }
        let now = words.iter().fold(0u32, |a, w| a.wrapping_add(w.expected));
        if now == seen {
            dw::wait_any(&words, Some(timeout));
        }
        if let Some(d) = self.direct {
            d.announce_sleep(false);
        }
        c.guest_waiting.fetch_sub(1, SeqCst);
        self.counter()
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

#[cfg(test)]
mod tests {
    //! Direct delivery between in-process "domains" (memfds mapped as the runner maps them
    //! for two processes, without the runner): lost wake-ups, coalescing, hostile senders.
    use super::*;
    use staticbus_emu_wire::direct::{self as dw, Entry};
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::Arc;

    /// An outbox: the sender's writable mapping and the receiver's read-only one (through
    /// an `O_RDONLY` reopen, as the runner hands it).
    fn outbox() -> (SharedMem, ReadOnlyMem) {
        let rw = SharedMem::create("test-outbox", dw::outbox_len(1023)).unwrap();
        let path = format!("/proc/self/fd/{}", wire::raw(rw.fd()));
        let ro: OwnedFd = std::fs::File::open(path).unwrap().into();
        let map = ReadOnlyMem::map(&ro, dw::outbox_len(1023)).unwrap();
        (rw, map)
    }

    struct Dom {
        hc: EmuHypercall,
        /// The runner's view of its inbox state (the same memfd).
        state: SharedMem,
    }

    fn dup(m: &SharedMem) -> SharedMem {
        SharedMem::map(m.fd().try_clone_to_owned().unwrap(), m.len()).unwrap()
    }

    /// A domain whose static ports are `(local, peer domid, peer port)`, with `outs` its
    /// outboxes and `ins` the peers' outboxes to it.
    fn dom(
        ports: &[(u32, u16, u32)],
        outs: Vec<(u16, SharedMem)>,
        ins: Vec<(u16, ReadOnlyMem)>,
    ) -> Dom {
        let mem = SharedMem::create("test-dom", DOMAIN_MEM_SIZE).unwrap();
        let state = SharedMem::create("test-state", dw::state_len(1023)).unwrap();
        let runner_view = dup(&state);
        let direct = direct::Direct::from_ports(ports.iter().copied(), outs, ins, state).unwrap();
        Dom {
            hc: EmuHypercall {
                mem,
                direct: Some(direct),
            },
            state: runner_view,
        }
    }

    impl Dom {
        fn entry(&self, port: u32) -> Entry<'_> {
            Entry::of(self.state.words32(), port).unwrap()
        }
        fn si(&self) -> SharedInfo<'_> {
            self.hc.shared_info()
        }
        fn send(&self, port: u32) -> i64 {
            let mut a = EvtchnPort { port };
            // SAFETY: `a` is a live EvtchnPort.
            unsafe {
                self.hc
                    .event_channel_op(evtchn::OP_SEND, (&raw mut a).cast())
            }
        }
        /// `SCHEDOP_poll` on `ports` without timeout, then consumes the first pending.
        fn poll_take(&self, ports: &[u32]) -> u32 {
            loop {
                let mut poll = SchedPoll {
                    ports: ports.as_ptr().expose_provenance() as u64,
                    nr_ports: ports.len() as u32,
                    timeout: 0,
                    ..Default::default()
                };
                // SAFETY: `poll` and the port array it points to are live.
                let r = unsafe { self.hc.sched_op(sched::OP_POLL, (&raw mut poll).cast()) };
                assert_eq!(r, 0);
                self.hc.sync_pending();
                if let Some(&p) = ports.iter().find(|&&p| self.si().clear_pending(p)) {
                    return p;
                }
            }
        }
    }

    /// Two domains, 1 and 2, with one static pair 1:5 ↔ 2:7, enabled as the runner's
    /// boot does.
    fn pair() -> (Dom, Dom) {
        let (o12, i12) = outbox();
        let (o21, i21) = outbox();
        let a = dom(&[(5, 2, 7)], vec![(2, o12)], vec![(2, i21)]);
        let b = dom(&[(7, 1, 5)], vec![(1, o21)], vec![(1, i12)]);
        // The runner enables each receiving entry against the sender's counter.
        a.entry(5).enable(&AtomicU32::new(0));
        b.entry(7).enable(&AtomicU32::new(0));
        (a, b)
    }

    /// Runs `f` on a thread; panics if it has not finished after `limit` (a liveness
    /// bound far above what it needs, so a lost wake-up fails instead of hanging).
    fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(limit)
            .expect("a direct-delivery wait never returned: lost wake-up");
    }

    #[test]
    fn a_hundred_thousand_round_trips_lose_no_wake_up() {
        within(Duration::from_secs(300), || {
            let (a, b) = pair();
            let (a, b) = (Arc::new(a), Arc::new(b));
            const N: u32 = 100_000;
            let pong = {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..N {
                        assert_eq!(b.poll_take(&[7]), 7);
                        assert_eq!(b.send(7), 0);
                    }
                })
            };
            for _ in 0..N {
                assert_eq!(a.send(5), 0);
                assert_eq!(a.poll_take(&[5]), 5);
            }
            pong.join().unwrap();
            // Every send was folded; the counters say so.
            assert_eq!(b.entry(7).folded.load(SeqCst), N);
            assert_eq!(a.entry(5).folded.load(SeqCst), N);
            // No hypercall was made (the hypervisor thread does not exist here).
            assert_eq!(a.hc.control().req_seq.load(SeqCst), 0);
        });
    }

    #[test]
    fn many_sends_are_pending_once_with_every_send_counted() {
        let (a, b) = pair();
        for _ in 0..1000 {
            assert_eq!(a.send(5), 0);
        }
        // Nothing in shared_info until the receiver's transport looks.
        assert!(!b.si().is_pending(7));
        b.hc.sync_pending();
        assert!(b.si().is_pending(7) && b.si().upcall_pending());
        assert_eq!(b.si().pending_sel(), 1);
        let e = b.entry(7);
        assert_eq!((e.folded.load(SeqCst), e.delivered.load(SeqCst)), (1000, 1));
        // More while still pending: counted, coalesced.
        a.send(5);
        b.hc.sync_pending();
        assert_eq!((e.folded.load(SeqCst), e.delivered.load(SeqCst)), (1001, 1));
        // A masked port becomes pending without an upcall.
        b.si().clear_pending(7);
        b.si().clear_upcall_pending();
        b.si().take_pending_sel();
        b.si().set_mask(7);
        a.send(5);
        b.hc.sync_pending();
        assert!(b.si().is_pending(7) && !b.si().upcall_pending());
    }

    #[test]
    fn a_hostile_sender_raises_only_its_own_port_and_blocks_no_other_wake_up() {
        // Receiver 1 has port 5 from hostile domain 2 and port 6 from honest domain 3.
        let (o21, i21) = outbox();
        let (o31, i31) = outbox();
        let (o12, _) = outbox();
        let (o13, _) = outbox();
        let r = Arc::new(dom(
            &[(5, 2, 7), (6, 3, 9)],
            vec![(2, o12), (3, o13)],
            vec![(2, i21), (3, i31)],
        ));
        r.entry(5).enable(&AtomicU32::new(0));
        r.entry(6).enable(&AtomicU32::new(0));
        let honest = Arc::new(o31);
        // The read-only mapping cannot be written: the kernel refuses a writable mapping
        // of the read-only descriptor.
        let path = format!("/proc/self/fd/{}", wire::raw(honest.fd()));
        let ro: OwnedFd = std::fs::File::open(path).unwrap().into();
        assert!(SharedMem::map(ro, dw::outbox_len(1023)).is_err());

        // The hostile sender writes every word of its outbox without pause: the ports not
        // bound to it (the receiver's 6 and 3 among them), its counter backwards, the
        // sleeping word.
        let stop = Arc::new(AtomicBool::new(false));
        let hostile = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let w = o21.words32();
                let mut x = 0u32;
                while !stop.load(SeqCst) {
                    for (i, word) in w.iter().enumerate() {
                        if i != 7 {
                            word.store(x.wrapping_mul(2654435761), SeqCst);
                        }
                    }
                    x = x.wrapping_add(1);
                }
                o21
            })
        };
        // Its own port: it can raise it (as EVTCHNOP_send could) and nothing else.
        let o21 = {
            // Give it time to write, then look: port 6 and every other port stay clear.
            for _ in 0..1000 {
                r.hc.sync_pending();
            }
            assert!(!r.si().is_pending(6) && !r.si().is_pending(7) && !r.si().is_pending(3));
            // A hypervisor event (a VIRQ-like port the runner raises) still arrives.
            let r2 = r.clone();
            within(Duration::from_secs(60), move || {
                let waiter = std::thread::spawn({
                    let r2 = r2.clone();
                    move || r2.poll_take(&[40])
                });
                std::thread::sleep(Duration::from_millis(50));
                r2.si().set_pending(40);
                r2.hc.control().notify_guest();
                assert_eq!(waiter.join().unwrap(), 40);
                // And the honest peer's send.
                let waiter = std::thread::spawn({
                    let r2 = r2.clone();
                    move || r2.poll_take(&[6])
                });
                std::thread::sleep(Duration::from_millis(50));
                let w = &honest.words32()[9];
                w.fetch_add(1, SeqCst);
                wire::wake(w);
                assert_eq!(waiter.join().unwrap(), 6);
            });
            stop.store(true, SeqCst);
            hostile.join().unwrap()
        };
        // Its own counter, backwards: one raise of its own port.
        o21.words32()[7].store(u32::MAX - 3, SeqCst);
        r.hc.sync_pending();
        assert!(r.si().clear_pending(5));
        // After the close (the runner folds, then disables): nothing it writes raises.
        r.entry(5).disable();
        for v in [0, 1, 12345, u32::MAX] {
            o21.words32()[7].store(v, SeqCst);
            let w = &o21.words32()[7];
            wire::wake(w);
            r.hc.sync_pending();
            assert!(!r.si().is_pending(5));
        }
        // Nor does the disabled port keep the receiver from sleeping or waking: a
        // timed-out poll returns, and the honest peer still gets through.
        let ports = [5u32];
        let mut poll = SchedPoll {
            ports: ports.as_ptr().expose_provenance() as u64,
            nr_ports: 1,
            timeout: now_ns() + 20_000_000,
            ..Default::default()
        };
        // SAFETY: `poll` and its port array are live.
        let ret = unsafe { r.hc.sched_op(sched::OP_POLL, (&raw mut poll).cast()) };
        assert_eq!(ret, 0);
        assert!(!r.si().is_pending(5));
    }

    #[test]
    fn a_closed_port_sends_through_the_hypervisor_again() {
        let (a, b) = pair();
        a.send(5);
        b.hc.sync_pending();
        assert!(b.si().clear_pending(7));
        a.hc.direct.as_ref().unwrap().closing(5);
        assert!(!a.hc.direct.as_ref().unwrap().send(5));
        assert_eq!(b.entry(7).folded.load(SeqCst), 1);
    }
}
