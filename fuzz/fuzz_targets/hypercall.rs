//! The emulated hypervisor on arbitrary sequences of hypercalls (raw and structured),
//! guest-side writes to `shared_info`, destroys, crashes and restarts of a fixed 3-domain
//! system (dom0 + 2 domUs, static channels including a loopback pair and the highest domU
//! port, two shared regions). After every step: no panic, the port tables are consistent
//! (every INTERDOMAIN port's peer points back, destroyed domains own nothing), region
//! references match the existing domains, and the counters agree with each other and
//! with the number of calls made.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_abi::domid::{DOMID_IO, DOMID_SELF};
use staticbus_abi::{evtchn as ev, hypercall as hc};
use staticbus_emu::shm::{Backing, Regions};
use staticbus_emu::{
    BootDomain, BootEnd, BootError, BootPair, BootShm, BootSpec, DomId, DomainState, HeapPage,
    Hypervisor, PageMem, Policy, Quiet, ShmRole,
};
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug)]
struct NoFd;
impl Backing for NoFd {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

fn system() -> BootSpec {
    let mut s = BootSpec {
        static_evtchn: true,
        static_shm: true,
        ..BootSpec::default()
    };
    for (name, id) in [("dom0", 0), ("a", 1), ("b", 2)] {
        s.domains.push(BootDomain {
            domid: id,
            name: name.into(),
            dom0: id == 0,
            xenstore: false,
            max_port: if id == 0 { 4095 } else { 1023 },
        });
    }
    for (d1, p1, d2, p2) in [
        (0, 3, 1, 5),
        (1, 6, 2, 7),
        (2, 8, 2, 9),
        (1, 1023, 2, 64),
        (0, 4095, 2, 1),
    ] {
        s.evtchns.push(BootPair {
            first: BootEnd {
                domid: d1,
                port: p1,
            },
            second: BootEnd {
                domid: d2,
                port: p2,
            },
        });
    }
    let node = |domid, id: &str, role| BootShm {
        domid,
        id: id.to_string(),
        host: None,
        guest: 0x800_0000,
        size: 0x1000,
        role,
    };
    s.shm.push(node(1, "own", Some(ShmRole::Owner)));
    s.shm.push(node(2, "own", Some(ShmRole::Borrower)));
    s.shm.push(node(0, "io", None));
    s.shm.push(node(2, "io", None));
    s
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn b(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn u32(&mut self) -> u32 {
        let mut v = [0u8; 4];
        let t = self.take(4);
        v[..t.len()].copy_from_slice(t);
        u32::from_le_bytes(v)
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}

const DOMS: [DomId; 6] = [0, 1, 2, 7, DOMID_SELF, DOMID_IO];
const PORTS: [u32; 16] = [
    0, 1, 2, 3, 5, 6, 7, 8, 9, 63, 64, 65, 1023, 1024, 4095, 4096,
];

fn dom(b: u8) -> DomId {
    DOMS[b as usize % DOMS.len()]
}

fn port(b: u8) -> u32 {
    PORTS[b as usize % PORTS.len()]
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let policy = if inp.b() & 1 == 0 {
        Policy::Silo
    } else {
        Policy::Dummy
    };
    let sys = system();
    let mut pages: Vec<Arc<HeapPage>> = (0..3).map(|_| Arc::new(HeapPage::new())).collect();
    let hv = Hypervisor::new(policy, Arc::new(Quiet), Arc::new(Quiet));
    let regions = Regions::from_spec_with(
        &sys,
        Box::new(|_, _| Ok(Arc::new(NoFd) as Arc<dyn Backing>)),
    )
    .expect("regions");
    let dyn_pages = pages
        .iter()
        .map(|p| p.clone() as Arc<dyn PageMem>)
        .collect();
    hv.boot_with_regions(&sys, dyn_pages, regions)
        .expect("boots");
    hv.check_invariants().expect("after boot");
    let mut calls = 0u64;

    while let Some(step) = inp.byte() {
        match step % 16 {
            0 => hv.destroy(dom(inp.b())),
            1 => {
                let d = dom(inp.b());
                let page = Arc::new(HeapPage::new());
                match hv.restart(d, page.clone()) {
                    Ok(()) => {
                        assert!(d <= 2);
                        pages[d as usize] = page;
                        assert_eq!(hv.state(d), Some(DomainState::Running));
                    }
                    Err(BootError::UnknownDomain(x)) => assert!(x == d && d > 2),
                    Err(e) => panic!("restart d{d}: {e}"),
                }
            }
            2 => hv.crash(dom(inp.b())),
            3 => {
                // The guest writes its own shared_info, as a hostile guest may.
                let si = pages[inp.b() as usize % 3].shared_info();
                let p = port(inp.b());
                match inp.b() % 6 {
                    0 => si.set_mask(p),
                    1 => si.clear_mask(p),
                    2 => {
                        si.clear_pending(p);
                    }
                    3 => si.clear_upcall_pending(),
                    4 => {
                        si.take_pending_sel();
                    }
                    _ => {
                        let w = inp.b() as usize % 512;
                        si.words()[w].store(inp.u64(), Ordering::SeqCst)
                    }
                }
            }
            s => {
                let caller = dom(inp.b());
                let (op, cmd, mut arg) = if s < 10 {
                    // Structured event-channel calls with plausible arguments.
                    let cmd = [
                        ev::OP_SEND,
                        ev::OP_CLOSE,
                        ev::OP_UNMASK,
                        ev::OP_STATUS,
                        ev::OP_ALLOC_UNBOUND,
                        ev::OP_BIND_INTERDOMAIN,
                    ][inp.b() as usize % 6];
                    let (a, b, c) = (dom(inp.b()), dom(inp.b()), port(inp.b()));
                    let mut arg = vec![0u8; 24];
                    match cmd {
                        ev::OP_STATUS => {
                            arg[..2].copy_from_slice(&a.to_ne_bytes());
                            arg[4..8].copy_from_slice(&c.to_ne_bytes());
                        }
                        ev::OP_ALLOC_UNBOUND => {
                            arg[..2].copy_from_slice(&a.to_ne_bytes());
                            arg[2..4].copy_from_slice(&b.to_ne_bytes());
                        }
                        ev::OP_BIND_INTERDOMAIN => {
                            arg[..2].copy_from_slice(&a.to_ne_bytes());
                            arg[4..8].copy_from_slice(&c.to_ne_bytes());
                        }
                        _ => arg[..4].copy_from_slice(&c.to_ne_bytes()),
                    }
                    (hc::EVENT_CHANNEL_OP, cmd, arg)
                } else {
                    let op = match inp.b() % 8 {
                        0..=2 => hc::EVENT_CHANNEL_OP,
                        3 => hc::SCHED_OP,
                        4 => hc::MEMORY_OP,
                        5 => hc::CONSOLE_IO,
                        6 => hc::XEN_VERSION,
                        _ => inp.u64(),
                    };
                    let c = inp.b();
                    let cmd = if c & 0x80 != 0 {
                        inp.u32()
                    } else {
                        u32::from(c & 0x1f)
                    };
                    let len = inp.b() as usize % 48;
                    (op, cmd, inp.take(len).to_vec())
                };
                let running = hv.state(caller) == Some(DomainState::Running);
                let rc = hv.hypercall(caller, op, cmd, &mut arg);
                calls += 1;
                if !running {
                    assert_eq!(rc, -3, "a caller that is not running gets -ESRCH");
                }
                assert!(
                    rc <= 0 || (op == hc::XEN_VERSION && cmd == 0),
                    "op {op} cmd {cmd} returned {rc}"
                );
            }
        }
        if let Err(e) = hv.check_invariants() {
            panic!("invariant broken after step {step}: {e}");
        }
        let st = hv.stats();
        assert_eq!(
            st.total_hypercalls() + st.rejected,
            calls,
            "every call counted once"
        );
    }
});
