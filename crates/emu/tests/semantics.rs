//! Behaviour of the emulated hypervisor against the spec (`shared/spec/xen-dom0less.md`)
//! and Xen's source: static binding, 2-level delivery, port limits, close/destroy,
//! XSM policies, restart, isolation and hostile hypercall input.

use proptest::prelude::*;
use staticbus_abi::domid::{DOMID_IO, DOMID_SELF};
use staticbus_abi::layout::{
    AddToPhysmap, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnPort, EvtchnStatus, SchedPoll,
    SchedShutdown,
};
use staticbus_abi::shared_info::SharedInfo;
use staticbus_abi::{console, evtchn as ev, hypercall as hc, memory, sched};
use staticbus_emu::shm::Owner;
use staticbus_emu::{
    BindStep, BootDomain, BootEnd, BootError, BootPair, BootShm, BootSpec, Console, DomId,
    DomainState, Errno, EvtchnStat, HeapPage, Hypervisor, Notify, PageMem, Policy, PortState,
    ShmRole, XenRelease,
};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use zerocopy::IntoBytes;

// ---------------------------------------------------------------- harness

#[derive(Default)]
struct Rec {
    wakes: Mutex<Vec<DomId>>,
    out: Mutex<Vec<(DomId, String, Vec<u8>)>>,
}

impl Notify for Rec {
    fn wake(&self, dom: DomId) {
        self.wakes.lock().unwrap().push(dom);
    }
}

impl Console for Rec {
    fn write(&self, dom: DomId, name: &str, bytes: &[u8]) {
        self.out
            .lock()
            .unwrap()
            .push((dom, name.to_string(), bytes.to_vec()));
    }
}

struct Rig {
    hv: Hypervisor,
    rec: Arc<Rec>,
    pages: BTreeMap<DomId, Arc<HeapPage>>,
}

impl Rig {
    fn si(&self, d: DomId) -> SharedInfo<'_> {
        self.pages[&d].shared_info()
    }

    fn take_wakes(&self) -> Vec<DomId> {
        std::mem::take(&mut *self.rec.wakes.lock().unwrap())
    }

    fn hc(&self, caller: DomId, op: u64, cmd: u32, arg: &mut [u8]) -> i64 {
        self.hv.hypercall(caller, op, cmd, arg)
    }

    fn send(&self, caller: DomId, port: u32) -> i64 {
        let mut a = EvtchnPort { port };
        self.hc(caller, hc::EVENT_CHANNEL_OP, ev::OP_SEND, a.as_mut_bytes())
    }

    fn close(&self, caller: DomId, port: u32) -> i64 {
        let mut a = EvtchnPort { port };
        self.hc(caller, hc::EVENT_CHANNEL_OP, ev::OP_CLOSE, a.as_mut_bytes())
    }

    fn unmask(&self, caller: DomId, port: u32) -> i64 {
        let mut a = EvtchnPort { port };
        self.hc(
            caller,
            hc::EVENT_CHANNEL_OP,
            ev::OP_UNMASK,
            a.as_mut_bytes(),
        )
    }

    fn status(&self, caller: DomId, dom: DomId, port: u32) -> Result<EvtchnStatus, i64> {
        let mut s = EvtchnStatus {
            dom,
            port,
            ..Default::default()
        };
        match self.hc(
            caller,
            hc::EVENT_CHANNEL_OP,
            ev::OP_STATUS,
            s.as_mut_bytes(),
        ) {
            0 => Ok(s),
            e => Err(e),
        }
    }

    fn alloc_unbound(&self, caller: DomId, dom: DomId, remote_dom: DomId) -> Result<u32, i64> {
        let mut a = EvtchnAllocUnbound {
            dom,
            remote_dom,
            port: 0xdead,
        };
        match self.hc(
            caller,
            hc::EVENT_CHANNEL_OP,
            ev::OP_ALLOC_UNBOUND,
            a.as_mut_bytes(),
        ) {
            0 => Ok(a.port),
            e => {
                assert_eq!(a.port, 0xdead, "nothing written back on error");
                Err(e)
            }
        }
    }

    fn bind(&self, caller: DomId, remote_dom: DomId, remote_port: u32) -> Result<u32, i64> {
        let mut b = EvtchnBindInterdomain {
            remote_dom,
            remote_port,
            ..Default::default()
        };
        match self.hc(
            caller,
            hc::EVENT_CHANNEL_OP,
            ev::OP_BIND_INTERDOMAIN,
            b.as_mut_bytes(),
        ) {
            0 => Ok(b.local_port),
            e => Err(e),
        }
    }

    /// The guest's receive loop: clear upcall_pending, take pending_sel, clear every
    /// pending bit.
    fn drain(&self, d: DomId) {
        let si = self.si(d);
        si.clear_upcall_pending();
        si.take_pending_sel();
        for w in 0..64 {
            si.words()[6 + w].store(0, Ordering::SeqCst);
        }
    }

    /// Everything observable: domain states, port tables, pages, port counters.
    fn snapshot(&self) -> String {
        let mut s = String::new();
        for (d, name, state) in self.hv.domains() {
            s += &format!("{d} {name} {state:?} {:?}\n", self.hv.ports(d));
        }
        for (d, p) in &self.pages {
            let words: Vec<u64> = p.words().iter().map(|w| w.load(Ordering::SeqCst)).collect();
            s += &format!("page {d}: {words:?}\n");
        }
        s += &format!("{:?}", self.hv.stats().ports);
        s
    }
}

#[allow(non_snake_case)]
fn E(e: Errno) -> i64 {
    e.ret()
}

/// A system by hand: `doms` are `(name, domid)` (domid 0 is dom0); `pairs` are
/// `(d1, port1, d2, port2)` in binding order (`d2`'s end starts pending).
fn system(doms: &[(&str, DomId)], pairs: &[(DomId, u32, DomId, u32)]) -> BootSpec {
    let mut s = BootSpec {
        static_evtchn: true,
        static_shm: true,
        ..BootSpec::default()
    };
    for &(name, id) in doms {
        s.domains.push(BootDomain {
            domid: id,
            name: name.to_string(),
            dom0: id == 0,
            xenstore: false,
            max_port: if id == 0 { 4095 } else { 1023 },
        });
    }
    for &(d1, p1, d2, p2) in pairs {
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
    s
}

fn add_shm(s: &mut BootSpec, id: &str, users: &[(DomId, u64, Option<ShmRole>)]) {
    for &(domid, guest, role) in users {
        s.shm.push(BootShm {
            domid,
            id: id.to_string(),
            host: None,
            guest,
            size: 0x2000,
            role,
        });
    }
}

fn try_boot(policy: Policy, sys: &BootSpec) -> (Rig, Result<(), BootError>) {
    let rec = Arc::new(Rec::default());
    let hv = Hypervisor::new(policy, rec.clone(), rec.clone());
    let mut pages = BTreeMap::new();
    let mut v: Vec<Arc<dyn PageMem>> = Vec::new();
    for d in &sys.domains {
        let p = Arc::new(HeapPage::new());
        // Garbage that boot must clear (Xen zeroes shared_info).
        p.words()[100].store(u64::MAX, Ordering::SeqCst);
        pages.insert(d.domid, p.clone());
        v.push(p);
    }
    let r = hv.boot(sys, v);
    (Rig { hv, rec, pages }, r)
}

fn boot(policy: Policy, sys: &BootSpec) -> Rig {
    let (rig, r) = try_boot(policy, sys);
    r.unwrap();
    rig.hv.check_invariants().unwrap();
    rig
}

fn boot_err(sys: &BootSpec) -> BootError {
    try_boot(Policy::Silo, sys).1.unwrap_err()
}

/// Three domUs in a ring: 1:5↔2:7, 2:8↔3:9, 3:10↔1:11.
fn ring() -> BootSpec {
    system(
        &[("a", 1), ("b", 2), ("c", 3)],
        &[(1, 5, 2, 7), (2, 8, 3, 9), (3, 10, 1, 11)],
    )
}

fn interdomain(remote_dom: DomId, remote_port: u32) -> Option<PortState> {
    Some(PortState::Interdomain {
        remote_dom,
        remote_port,
    })
}

// ---------------------------------------------------------------- §1.3 binding

#[test]
fn bind_time_pending_bit_is_on_the_second_end_only() {
    let rig = boot(Policy::Silo, &ring());
    // 1:5 → 2:7: d2's port 7 pending, d1's port 5 not.
    let (s1, s2, s3) = (rig.si(1), rig.si(2), rig.si(3));
    assert!(s2.is_pending(7));
    assert!(!s1.is_pending(5));
    // 2:8 → 3:9 and 3:10 → 1:11.
    assert!(s3.is_pending(9) && !s2.is_pending(8));
    assert!(s1.is_pending(11) && !s3.is_pending(10));
    for si in [s1, s2, s3] {
        assert!(si.upcall_pending());
        assert_eq!(si.pending_sel(), 1, "selector bit of word 0");
    }
    // The garbage word was cleared: shared_info starts zeroed, every port unmasked.
    assert_eq!(s1.words()[100].load(Ordering::SeqCst), 0);
    assert!(!s1.is_masked(5));
    let mut w = rig.take_wakes();
    w.sort();
    assert_eq!(w, [1, 2, 3]);
    assert_eq!(rig.hv.port_state(1, 5), interdomain(2, 7));
    assert_eq!(rig.hv.port_state(2, 7), interdomain(1, 5));
    let st = rig.hv.stats();
    assert_eq!(st.bind_deliveries, 3);
    assert_eq!(st.ports[&(2, 7)].delivered, 1);
    assert!(!st.ports.contains_key(&(1, 5)));
}

#[test]
fn first_end_alone_is_not_pending() {
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 70, 2, 130)]),
    );
    assert!(!rig.si(1).upcall_pending());
    assert_eq!(rig.si(1).pending_sel(), 0);
    assert!(rig.si(2).is_pending(130));
    assert_eq!(rig.si(2).pending_sel(), 1 << 2, "port 130 is in word 2");
    assert_eq!(rig.take_wakes(), [2]);
}

// ---------------------------------------------------------------- §5.5 delivery

#[test]
fn send_delivers_with_upcall_only_on_the_zero_to_one_transition() {
    let rig = boot(Policy::Silo, &ring());
    rig.drain(2);
    rig.take_wakes();
    assert_eq!(rig.send(1, 5), 0);
    assert!(rig.si(2).is_pending(7) && rig.si(2).upcall_pending());
    assert_eq!(rig.take_wakes(), [2]);
    // Already pending: coalesced, no wake.
    assert_eq!(rig.send(1, 5), 0);
    assert!(rig.take_wakes().is_empty());
    // The guest takes the selector but leaves upcall_pending: a new port in word 0 sets the
    // selector again, but no new upcall is raised (UpcallAlreadyPending).
    rig.si(2).take_pending_sel();
    rig.si(2).clear_pending(7);
    assert_eq!(rig.send(3, 9), 0);
    assert!(rig.si(2).is_pending(8));
    assert_eq!(rig.si(2).pending_sel(), 1);
    assert!(rig.si(2).upcall_pending());
    assert_eq!(rig.take_wakes(), [2], "the bit went 0->1");
    let st = rig.hv.stats();
    assert_eq!(st.ports[&(1, 5)].sent, 2);
    assert_eq!(st.ports[&(1, 5)].coalesced, 1);
    assert_eq!(st.ports[&(2, 7)].delivered, 2, "bind-time + one send");
    st.check().unwrap();
}

#[test]
fn masked_delivery_then_unmask_reraises() {
    let rig = boot(Policy::Silo, &ring());
    rig.drain(2);
    rig.take_wakes();
    rig.si(2).set_mask(7);
    assert_eq!(rig.send(1, 5), 0);
    let si = rig.si(2);
    assert!(si.is_pending(7));
    assert_eq!(si.pending_sel(), 0);
    assert!(!si.upcall_pending());
    assert_eq!(rig.take_wakes(), [2], "SCHEDOP_poll wakes on a masked port");
    assert_eq!(rig.unmask(2, 7), 0);
    assert!(!si.is_masked(7));
    assert_eq!(si.pending_sel(), 1);
    assert!(si.upcall_pending());
    assert_eq!(rig.take_wakes(), [2]);
    // Unmasking a port that was not masked re-raises nothing (evtchn_2l_unmask's
    // test_and_clear_bit found it clear), even if it is pending.
    rig.drain(2);
    si.set_pending(7);
    si.clear_upcall_pending();
    si.take_pending_sel();
    assert_eq!(rig.unmask(2, 7), 0);
    assert!(!si.upcall_pending());
    // Unmask of a masked port that is not pending: the mask clears, nothing raised.
    rig.drain(2);
    si.set_mask(8);
    assert_eq!(rig.unmask(2, 8), 0);
    assert!(!si.is_masked(8) && !si.upcall_pending());
    // A valid but free port: 0, and nothing is touched (evtchn_usable is false).
    si.set_mask(40);
    assert_eq!(rig.unmask(2, 40), 0);
    assert!(si.is_masked(40));
    // Beyond the valid ports: -EINVAL.
    assert_eq!(rig.unmask(2, 64), E(Errno::EINVAL));
    assert_eq!(rig.unmask(2, 5000), E(Errno::EINVAL));
}

// ---------------------------------------------------------------- §1.4 ports

#[test]
fn port_limits_at_boot() {
    let ok = |pairs: &[(DomId, u32, DomId, u32)]| {
        boot(
            Policy::Silo,
            &system(&[("dom0", 0), ("a", 1), ("b", 2)], pairs),
        );
    };
    ok(&[(1, 1023, 2, 1)]);
    ok(&[(0, 4095, 1, 1023)]);
    let err = |pairs: &[(DomId, u32, DomId, u32)]| match boot_err(&system(
        &[("dom0", 0), ("a", 1), ("b", 2)],
        pairs,
    )) {
        BootError::Evtchn { step, err, .. } => (step, err),
        e => panic!("{e}"),
    };
    assert_eq!(
        err(&[(1, 1024, 2, 1)]),
        (BindStep::AllocUnbound, Errno::ENOSPC)
    );
    assert_eq!(
        err(&[(1, 1, 2, 1024)]),
        (BindStep::BindInterdomain, Errno::ENOSPC)
    );
    assert_eq!(
        err(&[(0, 4096, 1, 1)]),
        (BindStep::AllocUnbound, Errno::ENOSPC)
    );
    assert_eq!(
        err(&[(1, 0xFFFF_FFFF, 2, 1)]),
        (BindStep::AllocUnbound, Errno::ENOSPC)
    );
    // Port 0 on the first end: alloc takes a free port, the bind then targets port 0.
    assert_eq!(
        err(&[(1, 0, 2, 1)]),
        (BindStep::BindInterdomain, Errno::EINVAL)
    );
    // Duplicates.
    assert_eq!(
        err(&[(1, 5, 2, 5), (1, 5, 2, 6)]),
        (BindStep::AllocUnbound, Errno::EBUSY)
    );
    assert_eq!(
        err(&[(1, 5, 2, 5), (1, 6, 2, 5)]),
        (BindStep::BindInterdomain, Errno::EBUSY)
    );
    // A node that is its own peer.
    assert_eq!(
        err(&[(1, 5, 1, 5)]),
        (BindStep::BindInterdomain, Errno::EBUSY)
    );
    let e = boot_err(&system(&[("a", 1)], &[(1, 5, 1, 1024)]));
    assert!(
        e.to_string()
            .contains("evtchn_bind_interdomain() failure (Error -28) "),
        "{e}"
    );
}

#[test]
fn port_zero_on_the_second_end_takes_the_first_free_port() {
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 9, 2, 3), (1, 10, 2, 0)]),
    );
    assert_eq!(rig.hv.port_state(2, 1), interdomain(1, 10));
    assert!(rig.si(2).is_pending(1));
}

#[test]
fn loopback_pair_in_one_domain_works() {
    let rig = boot(Policy::Silo, &system(&[("a", 1)], &[(1, 5, 1, 6)]));
    assert!(rig.si(1).is_pending(6) && !rig.si(1).is_pending(5));
    rig.drain(1);
    assert_eq!(rig.send(1, 6), 0);
    assert!(rig.si(1).is_pending(5));
}

#[test]
fn port_validity_grows_by_buckets() {
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]),
    );
    // One bucket (64 ports) is valid: a free port inside it is "closed", beyond it EINVAL.
    assert_eq!(
        rig.status(1, DOMID_SELF, 63).unwrap().status,
        ev::STAT_CLOSED
    );
    assert_eq!(rig.status(1, DOMID_SELF, 64), Err(E(Errno::EINVAL)));
    assert_eq!(
        rig.status(1, DOMID_SELF, 0).unwrap().status,
        ev::STAT_CLOSED
    );
    assert_eq!(rig.send(1, 0), E(Errno::EINVAL), "port 0 is reserved");
    assert_eq!(rig.send(1, 63), E(Errno::EINVAL), "free port");
    assert_eq!(rig.send(1, 64), E(Errno::EINVAL), "invalid port");
    assert_eq!(rig.send(1, 1024), E(Errno::EINVAL));
    assert_eq!(rig.send(1, u32::MAX), E(Errno::EINVAL));
    // A static port high up makes every bucket below it valid.
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 1000, 2, 7)]),
    );
    assert_eq!(
        rig.status(1, DOMID_SELF, 999).unwrap().status,
        ev::STAT_CLOSED
    );
    assert_eq!(
        rig.status(1, DOMID_SELF, 1023).unwrap().status,
        ev::STAT_CLOSED
    );
    assert_eq!(rig.status(1, DOMID_SELF, 1024), Err(E(Errno::EINVAL)));
    assert_eq!(rig.status(2, DOMID_SELF, 64), Err(E(Errno::EINVAL)));
}

#[test]
fn alloc_unbound_takes_the_lowest_free_port_until_enospc() {
    let rig = boot(
        Policy::Dummy,
        &system(&[("a", 1), ("b", 2)], &[(1, 1, 2, 1), (1, 3, 2, 2)]),
    );
    assert_eq!(rig.alloc_unbound(1, DOMID_SELF, 2), Ok(2));
    assert_eq!(rig.alloc_unbound(1, DOMID_SELF, 2), Ok(4));
    let mut last = 4;
    loop {
        match rig.alloc_unbound(1, DOMID_SELF, 2) {
            Ok(p) => {
                assert_eq!(p, last + 1);
                last = p;
            }
            Err(e) => {
                assert_eq!(e, E(Errno::ENOSPC));
                break;
            }
        }
    }
    assert_eq!(last, 1023, "a domU owns ports up to 1023");
    rig.hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- §1.5 close

#[test]
fn close_makes_the_peer_unbound_and_later_sends_behave_like_xen() {
    let rig = boot(Policy::Silo, &ring());
    // d2's port 7 is pending from the bind; close clears it (evtchn_free).
    assert!(rig.si(2).is_pending(7));
    assert_eq!(rig.close(2, 7), 0, "static ports are not protected");
    assert!(!rig.si(2).is_pending(7));
    assert_eq!(rig.hv.port_state(2, 7), Some(PortState::Free));
    assert_eq!(
        rig.hv.port_state(1, 5),
        Some(PortState::Unbound { remote: 2 })
    );
    let s = rig.status(2, DOMID_SELF, 7).unwrap();
    assert_eq!(s.status, ev::STAT_CLOSED);
    let s = rig.status(1, DOMID_SELF, 5).unwrap();
    assert_eq!((s.status, s.remote_dom), (ev::STAT_UNBOUND, 2));
    // Send on the closed port: -EINVAL. Close again: -EINVAL.
    assert_eq!(rig.send(2, 7), E(Errno::EINVAL));
    assert_eq!(rig.close(2, 7), E(Errno::EINVAL));
    // The peer's send is dropped: 0, nothing delivered, nobody woken.
    rig.drain(2);
    rig.take_wakes();
    assert_eq!(rig.send(1, 5), 0);
    assert!(!rig.si(2).is_pending(7) && !rig.si(2).upcall_pending());
    assert!(rig.take_wakes().is_empty());
    let st = rig.hv.stats();
    assert_eq!((st.ports[&(1, 5)].sent, st.ports[&(1, 5)].dropped), (1, 1));
    // Closing the Unbound end frees it.
    assert_eq!(rig.close(1, 5), 0);
    assert_eq!(rig.hv.port_state(1, 5), Some(PortState::Free));
    // Port 0 and invalid ports.
    assert_eq!(rig.close(1, 0), E(Errno::EINVAL));
    assert_eq!(rig.close(1, 4096), E(Errno::EINVAL));
    // The others still work.
    assert_eq!(rig.send(2, 8), 0);
    assert!(rig.si(3).is_pending(9));
    rig.hv.check_invariants().unwrap();
}

#[test]
fn the_peer_can_rebind_a_closed_static_port_at_runtime_under_dummy() {
    let rig = boot(Policy::Dummy, &ring());
    assert_eq!(rig.close(2, 7), 0);
    // 1:5 is now Unbound for d2: d2 may bind to it again (any free port of its own).
    rig.drain(2);
    let p = rig.bind(2, 1, 5).unwrap();
    assert_eq!(p, 1, "the lowest free port");
    assert!(rig.si(2).is_pending(1), "bind marks the local port pending");
    assert_eq!(rig.hv.port_state(1, 5), interdomain(2, 1));
    // Under SILO the same bind is refused.
    let rig = boot(Policy::Silo, &ring());
    assert_eq!(rig.close(2, 7), 0);
    assert_eq!(rig.bind(2, 1, 5), Err(E(Errno::EPERM)));
    assert_eq!(
        rig.hv.port_state(1, 5),
        Some(PortState::Unbound { remote: 2 })
    );
    rig.hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- status

#[test]
fn status_codes() {
    let rig = boot(
        Policy::Silo,
        &system(
            &[("dom0", 0), ("a", 1), ("b", 2)],
            &[(0, 3, 1, 5), (1, 6, 2, 7)],
        ),
    );
    let s = rig.status(1, DOMID_SELF, 6).unwrap();
    assert_eq!(
        (s.status, s.remote_dom, s.remote_port, s.vcpu),
        (ev::STAT_INTERDOMAIN, 2, 7, 0)
    );
    assert_eq!(
        (s.dom, s.port),
        (DOMID_SELF, 6),
        "input fields are written back unchanged"
    );
    let s = rig.status(1, 1, 5).unwrap();
    assert_eq!(
        (s.status, s.remote_dom, s.remote_port),
        (ev::STAT_INTERDOMAIN, 0, 3)
    );
    // Another domU's table: -EPERM (XSM_TARGET); dom0 may look.
    assert_eq!(rig.status(1, 2, 7), Err(E(Errno::EPERM)));
    assert_eq!(rig.status(0, 2, 7).unwrap().remote_port, 6);
    // No such domain: -ESRCH, before anything else.
    assert_eq!(rig.status(1, 9, 5000), Err(E(Errno::ESRCH)));
    assert_eq!(rig.status(1, DOMID_IO, 1), Err(E(Errno::ESRCH)));
    // An invalid port of another domain: -EINVAL comes before -EPERM.
    assert_eq!(rig.status(1, 2, 64), Err(E(Errno::EINVAL)));
    // Unbound: remote dom, port field untouched.
    let p = rig.alloc_unbound(0, DOMID_SELF, 2).unwrap();
    let mut s = EvtchnStatus {
        dom: DOMID_SELF,
        port: p,
        remote_port: 0x1234,
        ..Default::default()
    };
    assert_eq!(
        rig.hc(0, hc::EVENT_CHANNEL_OP, ev::OP_STATUS, s.as_mut_bytes()),
        0
    );
    assert_eq!(
        (s.status, s.remote_dom, s.remote_port),
        (ev::STAT_UNBOUND, 2, 0x1234)
    );
    // Typed version.
    assert_eq!(
        rig.hv.evtchn_status(1, DOMID_SELF, 6),
        Ok(EvtchnStat::Interdomain {
            remote_dom: 2,
            remote_port: 7
        })
    );
}

// ---------------------------------------------------------------- §11 XSM

#[test]
fn silo_refuses_runtime_channels_between_domus() {
    let sys = system(&[("dom0", 0), ("a", 1), ("b", 2)], &[(1, 5, 2, 7)]);
    let rig = boot(Policy::Silo, &sys);
    // Static channels work under SILO.
    assert_eq!(rig.send(1, 5), 0);
    assert_eq!(rig.alloc_unbound(1, DOMID_SELF, 2), Err(E(Errno::EPERM)));
    assert_eq!(
        rig.hv.evtchn_alloc_unbound(1, DOMID_SELF, 2),
        Err(Errno::EPERM)
    );
    // With dom0, or with itself, a domU may.
    let p = rig.alloc_unbound(1, DOMID_SELF, 0).unwrap();
    assert_eq!(rig.bind(0, 1, p), Ok(1));
    let q = rig.alloc_unbound(1, DOMID_SELF, DOMID_SELF).unwrap();
    assert_eq!(
        rig.hv.port_state(1, q),
        Some(PortState::Unbound { remote: 1 })
    );
    assert!(rig.bind(1, DOMID_SELF, q).is_ok());
    // A remote domain that does not exist: SILO looks it up (-ESRCH).
    assert_eq!(rig.alloc_unbound(1, DOMID_SELF, 9), Err(E(Errno::ESRCH)));
    // dom0 allocates in d1 for d2 (privileged), but d2's bind is a domU↔domU bind: -EPERM.
    let r = rig.alloc_unbound(0, 1, 2).unwrap();
    assert_eq!(rig.bind(2, 1, r), Err(E(Errno::EPERM)));
    // A port that is not Unbound-for-me: -EINVAL comes before the policy.
    assert_eq!(rig.bind(2, 1, 5), Err(E(Errno::EINVAL)));
    assert_eq!(rig.bind(2, 9, 5), Err(E(Errno::ESRCH)));
    rig.hv.check_invariants().unwrap();
}

#[test]
fn dummy_allows_runtime_channels_between_domus() {
    let sys = system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]);
    let rig = boot(Policy::Dummy, &sys);
    let p = rig.alloc_unbound(1, DOMID_SELF, 2).unwrap();
    assert_eq!(
        rig.hv.port_state(1, p),
        Some(PortState::Unbound { remote: 2 })
    );
    rig.drain(1);
    rig.drain(2);
    let q = rig.bind(2, 1, p).unwrap();
    assert!(rig.si(2).is_pending(q), "the binder's port starts pending");
    assert!(!rig.si(1).is_pending(p));
    assert_eq!(rig.send(1, p), 0);
    assert_eq!(rig.send(2, q), 0);
    assert!(rig.si(1).is_pending(p));
    // The remote domain need not exist under the dummy policy.
    assert!(rig.alloc_unbound(1, DOMID_SELF, 9).is_ok());
    // Binding a port that is unbound for someone else: -EINVAL.
    let r = rig.alloc_unbound(1, DOMID_SELF, 9).unwrap();
    assert_eq!(rig.bind(2, 1, r), Err(E(Errno::EINVAL)));
    // Allocating in another domain's table: -EPERM, under either policy.
    assert_eq!(rig.alloc_unbound(1, 2, 1), Err(E(Errno::EPERM)));
    rig.hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- destroy / crash / restart

#[test]
fn destroy_makes_peers_unbound_and_leaves_the_others_working() {
    let rig = boot(Policy::Silo, &ring());
    rig.hv.destroy(2);
    assert_eq!(rig.hv.state(2), Some(DomainState::Destroyed));
    assert_eq!(
        rig.hv.port_state(1, 5),
        Some(PortState::Unbound { remote: 2 })
    );
    assert_eq!(
        rig.hv.port_state(3, 9),
        Some(PortState::Unbound { remote: 2 })
    );
    assert!(rig.hv.ports(2).is_empty());
    // The dead domain makes no more hypercalls and is no longer found.
    assert_eq!(rig.send(2, 7), E(Errno::ESRCH));
    assert_eq!(rig.status(1, 2, 7), Err(E(Errno::ESRCH)));
    assert_eq!(rig.bind(1, 2, 7), Err(E(Errno::ESRCH)));
    // Sends to it are dropped; the 1↔3 channel is untouched.
    assert_eq!(rig.send(1, 5), 0);
    rig.drain(1);
    assert_eq!(rig.send(3, 10), 0);
    assert!(rig.si(1).is_pending(11));
    assert_eq!(rig.hv.stats().ports[&(1, 5)].dropped, 1);
    // Destroying again, or an unknown domain, does nothing.
    rig.hv.destroy(2);
    rig.hv.destroy(42);
    rig.hv.check_invariants().unwrap();
}

#[test]
fn crash_and_shutdown_keep_the_ports_until_destroy() {
    let rig = boot(Policy::Silo, &ring());
    rig.hv.crash(2);
    assert_eq!(rig.hv.state(2), Some(DomainState::Crashed));
    assert_eq!(rig.send(2, 7), E(Errno::ESRCH));
    // A crashed domain still exists: its peers' sends still land.
    rig.drain(2);
    assert_eq!(rig.send(1, 5), 0);
    assert!(rig.si(2).is_pending(7));
    // Shutdown with a reason (8 bits, as Xen keeps it).
    let mut s = SchedShutdown {
        reason: 0x100 | sched::SHUTDOWN_REBOOT,
    };
    assert_eq!(
        rig.hc(3, hc::SCHED_OP, sched::OP_SHUTDOWN, s.as_mut_bytes()),
        0
    );
    assert_eq!(
        rig.hv.state(3),
        Some(DomainState::Shutdown(sched::SHUTDOWN_REBOOT))
    );
    assert_eq!(rig.send(3, 10), E(Errno::ESRCH));
    assert_eq!(rig.hv.port_state(1, 11), interdomain(3, 10));
    // A recorded shutdown code wins over a later reason.
    let rig = boot(Policy::Silo, &ring());
    let mut c = SchedShutdown {
        reason: sched::SHUTDOWN_CRASH,
    };
    assert_eq!(rig.hc(1, hc::SCHED_OP, 5, c.as_mut_bytes()), 0);
    assert_eq!(rig.hv.state(1), Some(DomainState::Running));
    let mut s = SchedShutdown {
        reason: sched::SHUTDOWN_POWEROFF,
    };
    assert_eq!(
        rig.hc(1, hc::SCHED_OP, sched::OP_SHUTDOWN, s.as_mut_bytes()),
        0
    );
    assert_eq!(
        rig.hv.state(1),
        Some(DomainState::Shutdown(sched::SHUTDOWN_CRASH))
    );
    // Short argument: -EFAULT, still running.
    assert_eq!(
        rig.hc(2, hc::SCHED_OP, sched::OP_SHUTDOWN, &mut [0, 0]),
        E(Errno::EFAULT)
    );
    assert_eq!(rig.hv.state(2), Some(DomainState::Running));
}

#[test]
fn remote_shutdown_is_dom0s_only() {
    let rig = boot(
        Policy::Dummy,
        &system(&[("dom0", 0), ("a", 1), ("b", 2)], &[]),
    );
    let mut arg = [0u8; 8];
    arg[..2].copy_from_slice(&2u16.to_ne_bytes());
    arg[4..].copy_from_slice(&sched::SHUTDOWN_POWEROFF.to_ne_bytes());
    assert_eq!(rig.hc(1, hc::SCHED_OP, 4, &mut arg), E(Errno::EPERM));
    assert_eq!(rig.hc(0, hc::SCHED_OP, 4, &mut arg[..7]), E(Errno::EFAULT));
    assert_eq!(rig.hc(0, hc::SCHED_OP, 4, &mut arg), 0);
    assert_eq!(rig.hv.state(2), Some(DomainState::Shutdown(0)));
    arg[..2].copy_from_slice(&DOMID_SELF.to_ne_bytes());
    assert_eq!(
        rig.hc(0, hc::SCHED_OP, 4, &mut arg),
        E(Errno::ESRCH),
        "by_id, not by_any_id"
    );
}

#[test]
fn restart_rebinds_and_marks_both_ends_pending() {
    let mut rig = boot(Policy::Silo, &ring());
    rig.hv.destroy(2);
    rig.drain(1);
    rig.drain(3);
    rig.take_wakes();
    let page = Arc::new(HeapPage::new());
    page.words()[7].store(u64::MAX, Ordering::SeqCst);
    rig.pages.insert(2, page.clone());
    rig.hv.restart(2, page).unwrap();
    assert_eq!(rig.hv.state(2), Some(DomainState::Running));
    assert_eq!(rig.hv.port_state(1, 5), interdomain(2, 7));
    assert_eq!(rig.hv.port_state(2, 7), interdomain(1, 5));
    assert_eq!(rig.hv.port_state(2, 8), interdomain(3, 9));
    // The restarted end is bound second: pending. The peers' ports are pending too.
    let s2 = rig.si(2);
    assert!(s2.is_pending(7) && s2.is_pending(8) && s2.upcall_pending());
    assert_eq!(s2.words()[6].load(Ordering::SeqCst), 1 << 7 | 1 << 8);
    assert_eq!(s2.words()[7].load(Ordering::SeqCst), 0, "clean shared_info");
    assert!(rig.si(1).is_pending(5) && rig.si(1).upcall_pending());
    assert!(rig.si(3).is_pending(9) && rig.si(3).upcall_pending());
    let mut w = rig.take_wakes();
    w.sort();
    assert_eq!(w, [1, 2, 3]);
    // It works both ways.
    rig.drain(1);
    rig.drain(2);
    assert_eq!(rig.send(2, 7), 0);
    assert!(rig.si(1).is_pending(5));
    assert_eq!(rig.send(1, 5), 0);
    assert!(rig.si(2).is_pending(7));
    rig.hv.check_invariants().unwrap();
}

#[test]
fn restart_with_the_peer_gone_waits_for_the_peer() {
    let mut rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]),
    );
    rig.hv.destroy(1);
    rig.hv.destroy(2);
    let p = Arc::new(HeapPage::new());
    rig.pages.insert(1, p.clone());
    rig.hv.restart(1, p).unwrap();
    assert_eq!(
        rig.hv.port_state(1, 5),
        Some(PortState::Unbound { remote: 2 })
    );
    assert!(!rig.si(1).is_pending(5));
    assert_eq!(rig.send(1, 5), 0, "dropped");
    let p = Arc::new(HeapPage::new());
    rig.pages.insert(2, p.clone());
    rig.hv.restart(2, p).unwrap();
    assert_eq!(rig.hv.port_state(1, 5), interdomain(2, 7));
    assert!(rig.si(1).is_pending(5) && rig.si(2).is_pending(7));
    rig.hv.check_invariants().unwrap();
}

#[test]
fn restart_of_a_running_domain_and_of_a_loopback_pair() {
    let mut rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 5, 1, 6), (2, 3, 1, 4)]),
    );
    rig.drain(1);
    let p = Arc::new(HeapPage::new());
    rig.pages.insert(1, p.clone());
    rig.hv.restart(1, p).unwrap();
    assert_eq!(rig.hv.port_state(1, 5), interdomain(1, 6));
    assert_eq!(rig.hv.port_state(1, 4), interdomain(2, 3));
    assert!(rig.si(1).is_pending(5) && rig.si(1).is_pending(6) && rig.si(1).is_pending(4));
    assert!(rig.si(2).is_pending(3));
    assert!(matches!(
        rig.hv.restart(9, Arc::new(HeapPage::new())),
        Err(BootError::UnknownDomain(9))
    ));
    rig.hv.check_invariants().unwrap();
}

#[test]
fn restart_after_the_peer_closed_its_port_leaves_the_end_unbound() {
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]),
    );
    rig.hv.destroy(2);
    assert_eq!(rig.close(1, 5), 0);
    rig.hv.restart(2, Arc::new(HeapPage::new())).unwrap();
    assert_eq!(
        rig.hv.port_state(2, 7),
        Some(PortState::Unbound { remote: 1 })
    );
    assert_eq!(rig.hv.port_state(1, 5), Some(PortState::Free));
    rig.hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- isolation

#[test]
fn ports_are_per_domain() {
    // Both domains own a port 5 and a port 6, on different channels.
    let rig = boot(
        Policy::Silo,
        &system(
            &[("a", 1), ("b", 2), ("c", 3)],
            &[(1, 5, 3, 1), (2, 5, 3, 2), (1, 6, 2, 6)],
        ),
    );
    for d in 1..=3 {
        rig.drain(d);
    }
    // d1 sends on its 5: only d3's port 1 fires.
    assert_eq!(rig.send(1, 5), 0);
    assert!(rig.si(3).is_pending(1) && !rig.si(3).is_pending(2));
    // d1 closes its 5: d2's 5 is untouched.
    assert_eq!(rig.close(1, 5), 0);
    assert_eq!(rig.hv.port_state(2, 5), interdomain(3, 2));
    // d1 unmasks its 6: d2's mask bit for 6 stays.
    rig.si(2).set_mask(6);
    rig.si(1).set_mask(6);
    assert_eq!(rig.unmask(1, 6), 0);
    assert!(rig.si(2).is_masked(6) && !rig.si(1).is_masked(6));
    // d1 cannot query d2's table.
    assert_eq!(rig.status(1, 2, 5), Err(E(Errno::EPERM)));
    // A port number that exists only in another domain is invalid for me.
    assert_eq!(rig.send(1, 2), E(Errno::EINVAL));
}

#[test]
fn a_domain_reaches_only_its_own_regions() {
    let mut sys = ring();
    add_shm(
        &mut sys,
        "ab",
        &[
            (1, 0x800_0000, Some(ShmRole::Owner)),
            (2, 0x900_0000, Some(ShmRole::Borrower)),
        ],
    );
    add_shm(
        &mut sys,
        "bc",
        &[(2, 0x800_0000, None), (3, 0x800_0000, None)],
    );
    let rig = boot(Policy::Silo, &sys);
    let ids = |d| {
        rig.hv
            .shm_grants(d)
            .into_iter()
            .map(|g| (g.id, g.guest))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(1), [("ab".to_string(), 0x800_0000)]);
    assert_eq!(
        ids(2),
        [
            ("ab".to_string(), 0x900_0000),
            ("bc".to_string(), 0x800_0000)
        ]
    );
    assert_eq!(ids(3), [("bc".to_string(), 0x800_0000)]);
    rig.hv.with_regions(|r| {
        assert_eq!(r.handles_for(3).len(), 1);
        assert!(r.handles_for(4).is_empty());
    });
}

// ---------------------------------------------------------------- §2.6 shm lifecycle

#[test]
fn shm_references_follow_destroy_and_restart() {
    let mut sys = ring();
    add_shm(
        &mut sys,
        "ab",
        &[
            (1, 0x800_0000, Some(ShmRole::Owner)),
            (2, 0x800_0000, Some(ShmRole::Borrower)),
        ],
    );
    add_shm(
        &mut sys,
        "io",
        &[(2, 0x900_0000, None), (3, 0x900_0000, None)],
    );
    let rig = boot(Policy::Silo, &sys);
    let grant = rig.hv.shm_grants(2).remove(0);
    rustix::io::pwrite(grant.fd().unwrap(), b"state", 0).unwrap();
    drop(grant);
    let refs = |id: &str| rig.hv.with_regions(|r| r.refs(id).unwrap());
    // Owner destroyed: the borrower keeps the memory.
    rig.hv.destroy(1);
    assert!(refs("ab").live && !refs("ab").owner_ref);
    assert!(rig.hv.shm_grants(1).is_empty());
    assert_eq!(rig.hv.shm_grants(2)[0].id, "ab");
    // Owner restarted: same memory, contents kept.
    rig.hv.restart(1, Arc::new(HeapPage::new())).unwrap();
    let g = rig.hv.shm_grants(1).remove(0);
    let mut buf = [0u8; 5];
    rustix::io::pread(g.fd().unwrap(), &mut buf, 0).unwrap();
    assert_eq!(&buf, b"state");
    assert_eq!(refs("ab").generation, 1);
    drop(g);
    // Everybody gone: freed. DOMID_IO's region stays.
    rig.hv.destroy(1);
    rig.hv.destroy(2);
    rig.hv.destroy(3);
    assert!(!refs("ab").live);
    assert!(refs("io").live);
    assert_eq!(refs("io").owner, Owner::DomIo);
    rig.hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- hostile input

/// Every (op, cmd) the emulator decodes, with the size of its argument struct.
fn decoded() -> Vec<(u64, u32, usize)> {
    vec![
        (
            hc::EVENT_CHANNEL_OP,
            ev::OP_ALLOC_UNBOUND,
            size_of::<EvtchnAllocUnbound>(),
        ),
        (
            hc::EVENT_CHANNEL_OP,
            ev::OP_BIND_INTERDOMAIN,
            size_of::<EvtchnBindInterdomain>(),
        ),
        (hc::EVENT_CHANNEL_OP, ev::OP_CLOSE, size_of::<EvtchnPort>()),
        (hc::EVENT_CHANNEL_OP, ev::OP_SEND, size_of::<EvtchnPort>()),
        (
            hc::EVENT_CHANNEL_OP,
            ev::OP_STATUS,
            size_of::<EvtchnStatus>(),
        ),
        (hc::EVENT_CHANNEL_OP, ev::OP_UNMASK, size_of::<EvtchnPort>()),
        (hc::SCHED_OP, sched::OP_SHUTDOWN, size_of::<SchedShutdown>()),
        (hc::SCHED_OP, 5, size_of::<SchedShutdown>()),
        (hc::SCHED_OP, sched::OP_POLL, size_of::<SchedPoll>()),
        (hc::SCHED_OP, 4, 8),
        (
            hc::MEMORY_OP,
            memory::ADD_TO_PHYSMAP,
            size_of::<AddToPhysmap>(),
        ),
    ]
}

#[test]
fn short_arguments_are_efault_and_change_nothing() {
    let rig = boot(
        Policy::Dummy,
        &system(&[("dom0", 0), ("a", 1), ("b", 2)], &[(1, 5, 2, 7)]),
    );
    let before = rig.snapshot();
    for (op, cmd, size) in decoded() {
        for len in 0..size {
            for caller in [0, 1] {
                let mut arg = vec![0xA5u8; len];
                let rc = rig.hc(caller, op, cmd, &mut arg);
                assert_eq!(rc, E(Errno::EFAULT), "op {op} cmd {cmd} len {len}");
                assert!(arg.iter().all(|&b| b == 0xA5), "nothing written back");
            }
        }
    }
    assert_eq!(rig.snapshot(), before);
    assert_eq!(rig.hv.state(1), Some(DomainState::Running));
    let st = rig.hv.stats();
    let calls = st.total_hypercalls();
    let errors: u64 = st.hypercalls.values().map(|c| c.errors).sum();
    assert_eq!(calls, errors);
    assert!(calls > 100);
}

#[test]
fn unknown_and_not_emulated_calls_are_enosys() {
    let rig = boot(Policy::Dummy, &system(&[("a", 1)], &[]));
    let before = rig.snapshot();
    let mut arg = [0u8; 64];
    for (op, cmd) in [
        (0, 0),
        (hc::VCPU_OP, 10),
        (hc::HVM_OP, 1),
        (20, 0),
        (u64::MAX, 0),
        (hc::EVENT_CHANNEL_OP, 1),
        (hc::EVENT_CHANNEL_OP, 7),
        (hc::EVENT_CHANNEL_OP, 99),
        (hc::EVENT_CHANNEL_OP, u32::MAX),
        (hc::SCHED_OP, 6),
        (hc::SCHED_OP, 1000),
        (hc::MEMORY_OP, 0),
        (hc::MEMORY_OP, 6),
        (hc::CONSOLE_IO, 2),
        (hc::XEN_VERSION, 1),
    ] {
        assert_eq!(
            rig.hc(1, op, cmd, &mut arg),
            E(Errno::ENOSYS),
            "op {op} cmd {cmd}"
        );
    }
    assert_eq!(rig.snapshot(), before);
    // Unknown callers.
    assert_eq!(
        rig.hc(7, hc::EVENT_CHANNEL_OP, ev::OP_SEND, &mut arg),
        E(Errno::ESRCH)
    );
    assert_eq!(
        rig.hc(DOMID_SELF, hc::EVENT_CHANNEL_OP, ev::OP_SEND, &mut arg),
        E(Errno::ESRCH)
    );
    assert_eq!(rig.hv.stats().rejected, 2);
    // Before boot nobody exists.
    let hv = Hypervisor::new(
        Policy::Silo,
        Arc::new(staticbus_emu::Quiet),
        Arc::new(staticbus_emu::Quiet),
    );
    assert_eq!(
        hv.hypercall(0, hc::EVENT_CHANNEL_OP, ev::OP_SEND, &mut arg),
        E(Errno::ESRCH)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage hypercalls never panic, return 0, a version, or an errno, and keep the
    /// invariants; a garbage call that fails changes nothing but the counters.
    #[test]
    fn garbage_hypercalls(calls in proptest::collection::vec(
        (0u16..4, prop_oneof![Just(32u64), Just(29), Just(12), Just(18), Just(17), any::<u64>()],
         prop_oneof![0u32..16, any::<u32>()],
         proptest::collection::vec(any::<u8>(), 0..40)),
        1..40)) {
        let rig = boot(Policy::Silo, &system(&[("dom0", 0), ("a", 1), ("b", 2)], &[(1, 5, 2, 7), (0, 9, 1, 3)]));
        for (caller, op, cmd, mut arg) in calls {
            let before = rig.snapshot();
            let rc = rig.hc(caller, op, cmd, &mut arg);
            prop_assert!(rc <= 0 || (op == hc::XEN_VERSION && cmd == 0), "rc {rc}");
            if rc < 0 && op != hc::CONSOLE_IO {
                prop_assert_eq!(rig.snapshot(), before, "failed op {} cmd {} changed state", op, cmd);
            }
            rig.hv.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}

// ---------------------------------------------------------------- other hypercalls

#[test]
fn shared_info_maps_once() {
    let rig = boot(
        Policy::Silo,
        &system(&[("dom0", 0), ("a", 1), ("b", 2)], &[]),
    );
    let mut x = AddToPhysmap {
        domid: DOMID_SELF,
        space: memory::SPACE_SHARED_INFO,
        gpfn: 0x39000,
        ..Default::default()
    };
    let add = |caller, x: &AddToPhysmap, cmd: u32| {
        let mut x = *x;
        rig.hc(caller, hc::MEMORY_OP, cmd, x.as_mut_bytes())
    };
    assert_eq!(add(1, &x, memory::ADD_TO_PHYSMAP), 0);
    assert_eq!(add(1, &x, memory::ADD_TO_PHYSMAP), E(Errno::EBUSY));
    x.idx = 1;
    assert_eq!(add(2, &x, memory::ADD_TO_PHYSMAP), E(Errno::EINVAL));
    x.idx = 0;
    x.gpfn = u64::MAX;
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP),
        E(Errno::EINVAL),
        "INVALID_GFN"
    );
    x.gpfn = 0x39000;
    // Another domain's: -EPERM for a domU, allowed for dom0 (then the owner gets -EBUSY).
    x.domid = 2;
    assert_eq!(add(1, &x, memory::ADD_TO_PHYSMAP), E(Errno::EPERM));
    assert_eq!(add(0, &x, memory::ADD_TO_PHYSMAP), 0);
    x.domid = DOMID_SELF;
    assert_eq!(add(2, &x, memory::ADD_TO_PHYSMAP), E(Errno::EBUSY));
    x.domid = 9;
    assert_eq!(add(2, &x, memory::ADD_TO_PHYSMAP), E(Errno::ESRCH));
    x.domid = DOMID_SELF;
    // Other spaces.
    x.space = 1;
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP),
        E(Errno::ENOSYS),
        "grant table: not emulated"
    );
    x.space = 4;
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP),
        E(Errno::ENOSYS),
        "gmfn_foreign"
    );
    x.space = 5;
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP),
        E(Errno::EACCES),
        "dev_mmio"
    );
    x.space = 3;
    assert_eq!(add(2, &x, memory::ADD_TO_PHYSMAP), 0, "an empty gmfn_range");
    x.size = 1;
    assert_eq!(add(2, &x, memory::ADD_TO_PHYSMAP), E(Errno::ENOSYS));
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP | 2 << 6),
        E(Errno::EILSEQ)
    );
    x.space = 0;
    assert_eq!(
        add(2, &x, memory::ADD_TO_PHYSMAP | 0x1_0000 << 6),
        E(Errno::EDOM)
    );
    // A restarted domain maps it again.
    rig.hv.restart(1, Arc::new(HeapPage::new())).unwrap();
    assert_eq!(add(1, &x, memory::ADD_TO_PHYSMAP), 0);
}

#[test]
fn console_io() {
    let rig = boot(Policy::Silo, &system(&[("dom0", 0), ("guest", 1)], &[]));
    let w = |d, s: &[u8]| rig.hc(d, hc::CONSOLE_IO, console::WRITE, &mut s.to_vec());
    assert_eq!(
        w(1, b"hello \x1b[31mred"),
        0,
        "Xen returns 0, not the count"
    );
    assert!(
        rig.rec.out.lock().unwrap().is_empty(),
        "buffered until newline"
    );
    assert_eq!(w(1, b"!\nrest"), 0);
    assert_eq!(w(0, b"raw\x01"), 0);
    let out = rig.rec.out.lock().unwrap().clone();
    assert_eq!(
        out,
        [
            (1, "guest".to_string(), b"hello [31mred!\n".to_vec()),
            (0, "dom0".to_string(), b"raw\x01".to_vec()),
        ]
    );
    assert_eq!(rig.hc(1, hc::CONSOLE_IO, console::READ, &mut [0u8; 16]), 0);
    assert_eq!(rig.hc(1, hc::CONSOLE_IO, console::WRITE, &mut []), 0);
}

#[test]
fn poll_checks_its_arguments() {
    let rig = boot(
        Policy::Silo,
        &system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]),
    );
    let poll = |nr: u32, ports: &[u32]| {
        let mut arg = SchedPoll {
            nr_ports: nr,
            ..Default::default()
        }
        .as_bytes()
        .to_vec();
        for p in ports {
            arg.extend_from_slice(&p.to_ne_bytes());
        }
        rig.hc(1, hc::SCHED_OP, sched::OP_POLL, &mut arg)
    };
    assert_eq!(poll(1, &[]), 0, "without the port array: no port checks");
    assert_eq!(poll(129, &[]), E(Errno::EINVAL));
    assert_eq!(poll(1, &[5]), 0);
    assert_eq!(poll(1, &[6]), E(Errno::EINVAL), "a free port");
    assert_eq!(poll(2, &[5, 4000]), E(Errno::EINVAL));
    assert_eq!(rig.hc(1, hc::SCHED_OP, sched::OP_YIELD, &mut []), 0);
    assert_eq!(rig.hc(1, hc::SCHED_OP, sched::OP_BLOCK, &mut []), 0);
}

#[test]
fn xen_version_and_typed_calls() {
    let mut sys = system(&[("a", 1), ("b", 2)], &[(1, 5, 2, 7)]);
    sys.xen = XenRelease {
        major: 4,
        minor: 17,
    };
    let rig = boot(Policy::Silo, &sys);
    assert_eq!(rig.hc(1, hc::XEN_VERSION, 0, &mut []), 4 << 16 | 17);
    assert_eq!(rig.hv.evtchn_send(1, 5), Ok(()));
    assert_eq!(rig.hv.evtchn_send(1, 6), Err(Errno::EINVAL));
    assert_eq!(rig.hv.evtchn_unmask(2, 7), Ok(()));
    assert_eq!(rig.hv.evtchn_close(2, 7), Ok(()));
    assert_eq!(rig.hv.evtchn_bind_interdomain(2, 1, 5), Err(Errno::EPERM));
    let st = rig.hv.stats();
    assert_eq!(
        st.hypercalls[&(1, hc::EVENT_CHANNEL_OP, ev::OP_SEND)].calls,
        2
    );
    assert_eq!(
        st.hypercalls[&(1, hc::EVENT_CHANNEL_OP, ev::OP_SEND)].errors,
        1
    );
    assert_eq!(st.hypercalls[&(1, hc::XEN_VERSION, 0)].calls, 1);
}

// ---------------------------------------------------------------- boot configuration

#[test]
fn xenstore_takes_port_one_and_needs_dom0() {
    let mut sys = system(&[("dom0", 0), ("a", 1), ("b", 2)], &[(1, 2, 2, 3)]);
    sys.domains[1].xenstore = true;
    let rig = boot(Policy::Silo, &sys);
    assert_eq!(
        rig.hv.port_state(1, 1),
        Some(PortState::Unbound { remote: 0 })
    );
    assert_eq!(rig.hv.port_state(2, 1), Some(PortState::Free));
    // A static port 1 in that domain collides.
    sys.evtchns[0].first.port = 1;
    match boot_err(&sys) {
        BootError::Evtchn {
            step: BindStep::AllocUnbound,
            err,
            ..
        } => assert_eq!(err, Errno::EBUSY),
        e => panic!("{e}"),
    }
    // Without dom0: Xen 4.17–4.20 panics.
    let mut sys = system(&[("a", 1)], &[]);
    sys.domains[0].xenstore = true;
    assert!(matches!(
        boot_err(&sys),
        BootError::XenstoreNeedsDom0 { domid: 1 }
    ));
}

#[test]
fn static_evtchn_disabled_binds_nothing() {
    let mut sys = ring();
    sys.static_evtchn = false;
    let rig = boot(Policy::Silo, &sys);
    assert_eq!(rig.hv.port_state(1, 5), Some(PortState::Free));
    assert!(!rig.si(2).upcall_pending());
    // Before 4.19 there is no such option: whoever reads the tree sets the flag
    // (staticbus-emu-runner's boot spec), and the pairs are bound.
    sys.static_evtchn = true;
    let rig = boot(Policy::Silo, &sys);
    assert_eq!(rig.hv.port_state(1, 5), interdomain(2, 7));
}

#[test]
fn boot_errors() {
    let sys = ring();
    let rec = Arc::new(Rec::default());
    let hv = Hypervisor::new(Policy::Silo, rec.clone(), rec);
    assert!(matches!(
        hv.boot(&sys, vec![Arc::new(HeapPage::new()) as Arc<dyn PageMem>]),
        Err(BootError::PageCount {
            domains: 3,
            pages: 1
        })
    ));
    let pages = || {
        (0..3)
            .map(|_| Arc::new(HeapPage::new()) as Arc<dyn PageMem>)
            .collect()
    };
    hv.boot(&sys, pages()).unwrap();
    assert!(matches!(
        hv.boot(&sys, pages()),
        Err(BootError::AlreadyBooted)
    ));
    let mut dup = ring();
    dup.domains[2].domid = 1;
    assert!(matches!(boot_err(&dup), BootError::DomainId { domid: 1 }));
    let mut shm = ring();
    add_shm(
        &mut shm,
        "r",
        &[
            (1, 0x800_0000, Some(ShmRole::Owner)),
            (2, 0x800_0000, Some(ShmRole::Owner)),
        ],
    );
    assert!(matches!(boot_err(&shm), BootError::Shm(_)));
    shm.shm.clear();
    add_shm(&mut shm, "r", &[(1, 0x800_0000, None)]);
    shm.static_shm = false;
    assert!(matches!(boot_err(&shm), BootError::Shm(_)));
}

// ---------------------------------------------------------------- concurrency

#[test]
fn concurrent_senders_keep_the_counters_exact() {
    let rig = boot(Policy::Silo, &ring());
    let hv = &rig.hv;
    std::thread::scope(|s| {
        for (d, port) in [(1, 5), (2, 8), (3, 10), (1, 11), (2, 7)] {
            s.spawn(move || {
                for _ in 0..2000 {
                    assert_eq!(hv.evtchn_send(d, port), Ok(()));
                }
            });
        }
        s.spawn(|| {
            for _ in 0..2000 {
                rig.drain(2);
                rig.drain(1);
            }
        });
    });
    let st = hv.stats();
    assert_eq!(st.sum(|s| s.sent), 10_000);
    st.check().unwrap();
    hv.check_invariants().unwrap();
}

// ---------------------------------------------------------------- direct delivery hooks

/// One recorded call: which, from, to.
type LinkCall = (&'static str, (DomId, u32), (DomId, u32));

/// Records the [`staticbus_emu::DirectLinks`] calls; `unbound` reports a raise for the
/// ends listed in `raise`.
#[derive(Default)]
struct LinkRec {
    calls: Mutex<Vec<LinkCall>>,
    raise: Mutex<Vec<(DomId, u32)>>,
}

impl staticbus_emu::DirectLinks for LinkRec {
    fn bound(&self, from: (DomId, u32), to: (DomId, u32)) {
        self.calls.lock().unwrap().push(("bound", from, to));
    }
    fn unbound(&self, from: (DomId, u32), to: (DomId, u32)) -> bool {
        self.calls.lock().unwrap().push(("unbound", from, to));
        self.raise.lock().unwrap().contains(&to)
    }
}

impl LinkRec {
    fn take(&self) -> Vec<LinkCall> {
        let mut v = std::mem::take(&mut *self.calls.lock().unwrap());
        v.sort();
        v
    }
}

#[test]
fn direct_links_hear_of_every_static_bind_and_close_but_not_of_runtime_ones() {
    let sys = system(
        &[("dom0", 0), ("a", 1), ("b", 2)],
        &[(1, 5, 2, 7), (1, 9, 1, 10)],
    );
    let rec = Arc::new(Rec::default());
    let hv = Hypervisor::new(Policy::Dummy, rec.clone(), rec.clone());
    let links = Arc::new(LinkRec::default());
    hv.set_direct_links(links.clone());
    let pages: Vec<Arc<dyn PageMem>> = (0..3)
        .map(|_| Arc::new(HeapPage::new()) as Arc<dyn PageMem>)
        .collect();
    hv.boot(&sys, pages).unwrap();
    // Both directions of the pair between two domains; the loopback pair is not direct.
    assert_eq!(
        links.take(),
        [("bound", (1, 5), (2, 7)), ("bound", (2, 7), (1, 5))]
    );
    // A runtime channel is never direct.
    let p = hv.evtchn_alloc_unbound(1, DOMID_SELF, 2).unwrap();
    let q = hv.evtchn_bind_interdomain(2, 1, p).unwrap();
    hv.evtchn_close(2, q).unwrap();
    assert_eq!(links.take(), []);
    // Closing either end folds and stops both directions; a raise wakes the receiver.
    links.raise.lock().unwrap().push((1, 5));
    rec.wakes.lock().unwrap().clear();
    hv.evtchn_close(2, 7).unwrap();
    assert_eq!(
        links.take(),
        [("unbound", (1, 5), (2, 7)), ("unbound", (2, 7), (1, 5))]
    );
    assert_eq!(*rec.wakes.lock().unwrap(), [1]);
    // b's end is closed: destroying b has nothing to fold; its restart binds the pair
    // again (a's 5 was left UNBOUND for b), and it is direct again.
    hv.destroy(2);
    assert_eq!(links.take(), []);
    hv.restart(2, Arc::new(HeapPage::new())).unwrap();
    assert_eq!(
        links.take(),
        [("bound", (1, 5), (2, 7)), ("bound", (2, 7), (1, 5))]
    );
    // The restart of the other end too.
    hv.destroy(1);
    assert_eq!(
        links.take(),
        [("unbound", (1, 5), (2, 7)), ("unbound", (2, 7), (1, 5))]
    );
    hv.restart(1, Arc::new(HeapPage::new())).unwrap();
    assert_eq!(
        links.take(),
        [("bound", (1, 5), (2, 7)), ("bound", (2, 7), (1, 5))]
    );
    // Destroy closes: unbound both ways.
    hv.destroy(2);
    assert_eq!(
        links.take(),
        [("unbound", (1, 5), (2, 7)), ("unbound", (2, 7), (1, 5))]
    );
    hv.check_invariants().unwrap();
}
