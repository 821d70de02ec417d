//! Fakes for tests, here and in other crates (cargo feature `fake`, as rust-vmm
//! virtio-queue's `mock`). No real syscalls: Miri-friendly.
//!
//! * [`FakeXen`] — a fake Xen: two domains with static event-channel pairs, each with a
//!   heap `shared_info` page, implementing [`Hypercall`] per domain with Xen's semantics
//!   (spec §1.3, §1.5, §5) and recording every call; [`FakePlatform`] is one of its
//!   domains as a [`Platform`] with the real 2-level driver. Single-threaded: a sleep runs
//!   the next scripted [`Wake`].
//! * [`Bus`] — event channels between domains running as threads, an [`Events`]
//!   implementation without `shared_info` or hypercalls, bound from manifests
//!   ([`two_domains`] makes a pair); [`BusPlatform`] is one of its domains as a
//!   [`Platform`]. Waits that nobody can end return [`DEADLOCK`].
//! * [`Faulty`] — any [`Events`] with spurious, coalesced or dropped events injected,
//!   deterministically from a seed ([`Faults`]); [`FaultyPlatform`] wraps any
//!   [`Platform`].
//! * [`Backing`] — heap memory standing in for a shared region.
//!
//! [`Events`]: crate::Events

use crate::evtchn::{EventChannels, FiredSet, UpcallSleep};
use crate::hypercall::{Errno, Hypercall};
use crate::platform::{Platform, TwoLevelTransport};
use crate::region::Region;
use core::cell::{Cell, RefCell};
use core::sync::atomic::AtomicU64;
use staticbus_abi::layout::{AddToPhysmap, EvtchnPort, EvtchnStatus, SchedPoll, SchedShutdown};
use staticbus_abi::shared_info::{Delivery, SharedInfo, NR_PORTS, PAGE_WORDS};
use staticbus_abi::{console, evtchn, memory, sched};
use staticbus_manifest::Manifest;
use std::boxed::Box;
use std::collections::VecDeque;
use std::vec::Vec;

mod bus;
mod faulty;
mod manifests;

pub use bus::{Bus, BusDomain, BusPlatform, DEADLOCK};
pub use faulty::{Chance, FaultState, FaultStats, Faults, Faulty, FaultyPlatform};
pub use manifests::{
    pair_ports, two_domains, two_domains_from, FAKE_SLOT_SIZE, FAKE_VALUE_SIZE, PAIR_DOMIDS,
};

/// Domain ids of the two fake domains (index 0 and 1).
pub const DOMIDS: [u16; 2] = [1, 2];

/// A recorded hypercall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `EVTCHNOP_send` on the port.
    Send(u32),
    /// `EVTCHNOP_status` of the port.
    Status(u32),
    /// `EVTCHNOP_unmask` of the port.
    Unmask(u32),
    /// `EVTCHNOP_close` of the port.
    Close(u32),
    /// `SCHEDOP_yield`.
    Yield,
    /// `SCHEDOP_block`.
    Block,
    /// `SCHEDOP_poll`.
    Poll {
        /// The ports polled.
        ports: Vec<u32>,
        /// The absolute timeout (0: none).
        timeout: u64,
    },
    /// `SCHEDOP_shutdown` with the reason.
    Shutdown(u32),
    /// `CONSOLEIO_write` of the bytes.
    Console(Vec<u8>),
    /// `XENMEM_add_to_physmap` of `shared_info` at the frame.
    MapSharedInfo(u64),
    /// A command the fake does not implement (`ENOSYS`).
    Unknown,
    /// Not a hypercall: the guest slept in `wfi` ([`FakeXen::wfi`]).
    Wfi,
}

/// What happens when a domain sleeps (poll, block or wfi) and nothing it waits for is
/// pending.
#[derive(Clone, Copy, Debug)]
pub enum Wake {
    /// Return without anything happening.
    Spurious,
    /// The peer domain sends on its port `p` (an event for us), then we wake.
    PeerSends(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortSt {
    Interdomain,
    Unbound,
    Closed,
}

struct Pair {
    ports: [u32; 2],
    state: [Cell<PortSt>; 2],
}

/// Two domains and their static pairs.
pub struct FakeXen {
    pages: [Box<[AtomicU64; PAGE_WORDS]>; 2],
    pairs: Vec<Pair>,
    calls: [RefCell<Vec<Call>>; 2],
    script: [RefCell<VecDeque<Wake>>; 2],
    console_ret: Cell<i64>,
    /// Per domain: the upcall PPI is pending in its virtual GIC (injected on each 0→1
    /// transition of `evtchn_upcall_pending`, acknowledged by [`FakeXen::wfi`]).
    ppi: [Cell<bool>; 2],
    /// Per domain: upcall PPIs injected so far.
    injected: [Cell<u32>; 2],
}

fn page() -> Box<[AtomicU64; PAGE_WORDS]> {
    Box::new(core::array::from_fn(|_| AtomicU64::new(0)))
}

impl FakeXen {
    /// Binds each `(port in domain 0, port in domain 1)` pair as Xen does at boot:
    /// domain 0's end first (UNBOUND), domain 1's end second, which marks domain 1's port
    /// pending (spec §1.3 step 9).
    pub fn new(pairs: &[(u32, u32)]) -> Self {
        let xen = FakeXen {
            pages: [page(), page()],
            pairs: pairs
                .iter()
                .map(|&(a, b)| Pair {
                    ports: [a, b],
                    state: [
                        Cell::new(PortSt::Interdomain),
                        Cell::new(PortSt::Interdomain),
                    ],
                })
                .collect(),
            calls: Default::default(),
            script: Default::default(),
            console_ret: Cell::new(0),
            ppi: Default::default(),
            injected: Default::default(),
        };
        for p in &xen.pairs {
            // The upcall PPI is injected while the guest has not enabled it yet: it stays
            // pending in the virtual GIC (spec §5.6).
            xen.deliver(1, xen.shared_info(1).set_pending(p.ports[1]));
        }
        xen
    }

    /// Models the upcall: an interrupt for domain `idx` on a 0→1 transition of its
    /// `evtchn_upcall_pending`.
    fn deliver(&self, idx: usize, d: Delivery) {
        if d == Delivery::Upcall {
            self.ppi[idx].set(true);
            self.injected[idx].set(self.injected[idx].get() + 1);
        }
    }

    /// True if the upcall PPI is pending (injected, not yet acknowledged) for domain `idx`.
    pub fn ppi_pending(&self, idx: usize) -> bool {
        self.ppi[idx].get()
    }

    /// Upcall PPIs injected into domain `idx` so far.
    pub fn injected(&self, idx: usize) -> u32 {
        self.injected[idx].get()
    }

    /// Domain `idx` executes `wfi` with IRQs masked, then unmasks them briefly: returns at
    /// once if the upcall PPI is pending, else runs scripted wake-ups until one injects it
    /// (a [`Wake::Spurious`] returns too, as `wfi` may); acknowledges the PPI. Panics if
    /// the script runs out first: the guest would sleep forever (a lost wake-up).
    pub fn wfi(&self, idx: usize) {
        self.record(idx, Call::Wfi);
        while !self.ppi[idx].get() {
            let wake = self.script[idx].borrow_mut().pop_front();
            match wake.expect("the domain would sleep in wfi forever: no upcall is coming") {
                Wake::Spurious => return,
                Wake::PeerSends(p) => {
                    let _ = self.send(1 - idx, p);
                }
            }
        }
        self.ppi[idx].set(false);
    }

    /// Domain `idx` (0 or 1) as its hypercall transport.
    pub fn dom(&self, idx: usize) -> FakeDom<'_> {
        FakeDom { xen: self, idx }
    }

    /// Domain `idx`'s `shared_info` page.
    pub fn shared_info(&self, idx: usize) -> SharedInfo<'_> {
        SharedInfo::new(&self.pages[idx])
    }

    /// The hypercalls domain `idx` made so far.
    pub fn calls(&self, idx: usize) -> Vec<Call> {
        self.calls[idx].borrow().clone()
    }

    /// Queues what happens on domain `idx`'s next sleeps.
    pub fn script(&self, idx: usize, wakes: impl IntoIterator<Item = Wake>) {
        self.script[idx].borrow_mut().extend(wakes);
    }

    /// What `CONSOLEIO_write` returns from now on.
    pub fn set_console_ret(&self, ret: i64) {
        self.console_ret.set(ret);
    }

    fn record(&self, idx: usize, call: Call) {
        self.calls[idx].borrow_mut().push(call);
    }

    /// The pair holding `port` in domain `idx`.
    fn pair(&self, idx: usize, port: u32) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.ports[idx] == port)
    }

    fn send(&self, idx: usize, port: u32) -> i64 {
        let Some(pair) = self.pair(idx, port) else {
            return Errno::EINVAL.to_ret();
        };
        match pair.state[idx].get() {
            PortSt::Closed => Errno::EINVAL.to_ret(),
            // An UNBOUND port drops the event silently (spec §5.3).
            PortSt::Unbound => 0,
            PortSt::Interdomain => {
                let d = self.shared_info(1 - idx).set_pending(pair.ports[1 - idx]);
                self.deliver(1 - idx, d);
                0
            }
        }
    }

    fn valid(&self, idx: usize, port: u32) -> bool {
        self.pair(idx, port)
            .is_some_and(|p| p.state[idx].get() != PortSt::Closed)
    }

    /// Sleeps domain `idx`: returns at once if `ready()`, else runs the next scripted
    /// wake-up; panics if there is none (the real call would block forever).
    fn sleep(&self, idx: usize, ready: impl Fn() -> bool) -> i64 {
        if ready() {
            return 0;
        }
        let wake = self.script[idx].borrow_mut().pop_front();
        match wake.expect("the domain would sleep forever: no scripted wake-up left") {
            Wake::Spurious => {}
            Wake::PeerSends(p) => {
                let _ = self.send(1 - idx, p);
            }
        }
        0
    }

    fn evtchn_op(&self, idx: usize, cmd: u32, arg: *mut u8) -> i64 {
        match cmd {
            evtchn::OP_SEND | evtchn::OP_UNMASK | evtchn::OP_CLOSE => {
                // SAFETY: the `Hypercall` contract: `arg` points to an `EvtchnPort`.
                let port = unsafe { arg.cast::<EvtchnPort>().read() }.port;
                match cmd {
                    evtchn::OP_SEND => {
                        self.record(idx, Call::Send(port));
                        self.send(idx, port)
                    }
                    evtchn::OP_UNMASK => {
                        self.record(idx, Call::Unmask(port));
                        if port >= NR_PORTS {
                            return Errno::EINVAL.to_ret();
                        }
                        self.deliver(idx, self.shared_info(idx).unmask(port));
                        0
                    }
                    _ => {
                        self.record(idx, Call::Close(port));
                        let Some(pair) = self.pair(idx, port) else {
                            return Errno::EINVAL.to_ret();
                        };
                        pair.state[idx].set(PortSt::Closed);
                        if pair.state[1 - idx].get() == PortSt::Interdomain {
                            pair.state[1 - idx].set(PortSt::Unbound);
                        }
                        0
                    }
                }
            }
            evtchn::OP_STATUS => {
                let arg = arg.cast::<EvtchnStatus>();
                // SAFETY: the `Hypercall` contract: `arg` points to an `EvtchnStatus`
                // valid for reads and writes.
                let mut st = unsafe { arg.read() };
                self.record(idx, Call::Status(st.port));
                let Some(pair) = self.pair(idx, st.port) else {
                    return Errno::EINVAL.to_ret();
                };
                let other = 1 - idx;
                (st.status, st.remote_dom, st.remote_port) = match pair.state[idx].get() {
                    PortSt::Closed => (evtchn::STAT_CLOSED, 0, 0),
                    PortSt::Unbound => (evtchn::STAT_UNBOUND, DOMIDS[other], 0),
                    PortSt::Interdomain => {
                        (evtchn::STAT_INTERDOMAIN, DOMIDS[other], pair.ports[other])
                    }
                };
                st.vcpu = 0;
                // SAFETY: as above.
                unsafe { arg.write(st) };
                0
            }
            _ => {
                self.record(idx, Call::Unknown);
                Errno::ENOSYS.to_ret()
            }
        }
    }

    fn sched_op(&self, idx: usize, cmd: u32, arg: *mut u8) -> i64 {
        let si = self.shared_info(idx);
        match cmd {
            sched::OP_YIELD => {
                self.record(idx, Call::Yield);
                0
            }
            sched::OP_BLOCK => {
                self.record(idx, Call::Block);
                self.sleep(idx, || si.upcall_pending())
            }
            sched::OP_SHUTDOWN => {
                // SAFETY: the `Hypercall` contract: `arg` points to a `SchedShutdown`.
                let reason = unsafe { arg.cast::<SchedShutdown>().read() }.reason;
                self.record(idx, Call::Shutdown(reason));
                0
            }
            sched::OP_POLL => {
                // SAFETY: the `Hypercall` contract: `arg` points to a `SchedPoll`.
                let poll = unsafe { arg.cast::<SchedPoll>().read() };
                let n = poll.nr_ports as usize;
                let ptr = core::ptr::with_exposed_provenance::<u32>(poll.ports as usize);
                let ports: Vec<u32> = if n == 0 {
                    Vec::new()
                } else {
                    // SAFETY: the `Hypercall` contract: `ports` is the exposed address of
                    // `nr_ports` readable `u32`s.
                    unsafe { core::slice::from_raw_parts(ptr, n) }.to_vec()
                };
                self.record(
                    idx,
                    Call::Poll {
                        ports: ports.clone(),
                        timeout: poll.timeout,
                    },
                );
                if n > 128 || ports.iter().any(|&p| !self.valid(idx, p)) {
                    return Errno::EINVAL.to_ret();
                }
                self.sleep(idx, || ports.iter().any(|&p| si.is_pending(p)))
            }
            _ => {
                self.record(idx, Call::Unknown);
                Errno::ENOSYS.to_ret()
            }
        }
    }
}

/// One domain of a [`FakeXen`], as its hypercall transport.
#[derive(Clone, Copy)]
pub struct FakeDom<'x> {
    /// The fake hypervisor.
    pub xen: &'x FakeXen,
    /// The domain's index (0 or 1).
    pub idx: usize,
}

impl Hypercall for FakeDom<'_> {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        self.xen.evtchn_op(self.idx, cmd, arg)
    }

    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        if cmd != memory::ADD_TO_PHYSMAP {
            self.xen.record(self.idx, Call::Unknown);
            return Errno::ENOSYS.to_ret();
        }
        // SAFETY: the `Hypercall` contract: `arg` points to an `AddToPhysmap`.
        let a = unsafe { arg.cast::<AddToPhysmap>().read() };
        self.xen.record(self.idx, Call::MapSharedInfo(a.gpfn));
        if a.space != memory::SPACE_SHARED_INFO || a.idx != 0 {
            return Errno::EINVAL.to_ret();
        }
        0
    }

    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        self.xen.sched_op(self.idx, cmd, arg)
    }

    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64 {
        if cmd != console::WRITE {
            self.xen.record(self.idx, Call::Unknown);
            return Errno::ENOSYS.to_ret();
        }
        // SAFETY: the `Hypercall` contract: `buf` is readable for `count` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(buf, count) }.to_vec();
        self.xen.record(self.idx, Call::Console(bytes));
        self.xen.console_ret.get()
    }
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

/// Heap memory standing in for a shared region, zeroed and 64-byte aligned; every fake
/// domain maps the same one. `Sync`, so domains running as threads can each make their
/// own [`Region`] over it.
pub struct Backing {
    ptr: *mut [Line],
}

// SAFETY: `Backing` is an owned heap allocation reached only through `Region`s (volatile
// copies and atomics, the way two domains share memory), never through references; the
// regions must not outlive it, which its users guarantee (e.g. `std::thread::scope`).
unsafe impl Send for Backing {}
// SAFETY: as above: `&Backing` only hands out `Region`s.
unsafe impl Sync for Backing {}

impl Backing {
    /// `len` bytes (rounded up to 64).
    pub fn new(len: usize) -> Self {
        let lines = std::vec![Line([0; 8]); len.div_ceil(64)].into_boxed_slice();
        Backing {
            ptr: Box::into_raw(lines),
        }
    }

    /// A region over the first `len` bytes. Panics if `len` is larger than the memory.
    pub fn region(&self, len: usize) -> Region {
        assert!(len <= self.ptr.len() * 64);
        // SAFETY: the allocation lives until `self` is dropped, which the tests do only
        // after their last use of the region; nothing takes references into it.
        unsafe { Region::new(self.ptr.cast::<u8>(), len) }.expect("non-null")
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::into_raw` and is freed once, here.
        drop(unsafe { Box::from_raw(self.ptr) });
    }
}

/// The upcall sleep of a fake domain: [`FakeXen::wfi`].
pub struct FakeWfi<'x> {
    /// The domain that sleeps.
    pub dom: FakeDom<'x>,
}

impl UpcallSleep for FakeWfi<'_> {
    fn sleep_until_upcall(&self) {
        self.dom.xen.wfi(self.dom.idx);
    }
}

/// One fake domain as a [`Platform`] (and [`TwoLevelTransport`]: its events are the
/// real 2-level driver on the fake `shared_info`).
pub struct FakePlatform<'x> {
    /// The domain's hypercall transport.
    pub dom: FakeDom<'x>,
    /// The domain's fired set.
    pub fired: FiredSet,
    /// The domain's manifest.
    pub manifest: &'static Manifest,
    /// The regions by `xen,shm-id`.
    pub regions: Vec<(&'static str, Region)>,
    /// The upcall sleep, if any (`None`: `SCHEDOP_poll`).
    pub upcall: Option<&'x dyn UpcallSleep>,
}

impl<'x> FakePlatform<'x> {
    /// Domain `dom` with `manifest`, no regions and no upcall sleep.
    pub fn new(dom: FakeDom<'x>, manifest: &'static Manifest) -> Self {
        FakePlatform {
            dom,
            fired: FiredSet::new(),
            manifest,
            regions: Vec::new(),
            upcall: None,
        }
    }
}

impl<'x> TwoLevelTransport for FakePlatform<'x> {
    type H = FakeDom<'x>;

    fn hypercall(&self) -> &FakeDom<'x> {
        &self.dom
    }

    fn shared_info(&self) -> SharedInfo<'_> {
        self.dom.xen.shared_info(self.dom.idx)
    }

    fn fired(&self) -> &FiredSet {
        &self.fired
    }

    fn upcall_sleep(&self) -> Option<&dyn UpcallSleep> {
        self.upcall
    }
}

impl<'x> Platform for FakePlatform<'x> {
    type Events<'a>
        = EventChannels<'a, FakeDom<'x>>
    where
        Self: 'a;

    fn events(&self) -> Self::Events<'_> {
        self.two_level_events()
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        self.regions
            .iter()
            .find(|(id, _)| *id == shm_id)
            .map(|&(_, r)| r)
    }

    fn manifest(&self) -> &Manifest {
        self.manifest
    }

    fn yield_now(&self) -> Result<(), Errno> {
        crate::ops::sched_yield(&self.dom)
    }
}
