//! [`Bus`]: in-process event channels between domains running as threads, an [`Events`]
//! implementation with neither `shared_info` nor hypercalls.

use crate::events::Events;
use crate::hypercall::Errno;
use crate::ops::{PortState, PortStatus};
use crate::platform::Platform;
use crate::region::Region;
use staticbus_manifest::Manifest;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::vec::Vec;

/// What [`Bus`] waits return once every live domain sleeps in a wait with nothing pending
/// for it: nobody is left to send, so on a real system they would sleep forever. Xen's
/// `EDEADLK` (35).
pub const DEADLOCK: Errno = Errno(35);

/// One end of a bound pair: `(domid, local port)`.
type End = (u16, u32);

#[derive(Debug, Default)]
struct State {
    /// Each end's peer.
    peers: BTreeMap<End, End>,
    /// Events sent to each end and not consumed yet.
    pending: BTreeMap<End, u32>,
    /// While set, waits do not see pending events (see [`Bus::hold`]).
    hold: bool,
    /// Domains attached ([`Bus::domain`]) and not dropped yet.
    live: usize,
    /// The domains sleeping in a wait, with the ports they wait for, by ticket.
    sleepers: BTreeMap<u64, (u16, Vec<u32>)>,
    /// The next sleeper's ticket.
    ticket: u64,
    /// Every live domain slept at once: sticky.
    deadlock: bool,
    /// Sends delivered so far.
    sent: u64,
}

impl State {
    /// Every live domain sleeps and none has an event it could take: nobody can send.
    fn stuck(&self) -> bool {
        !self.hold
            && self.live > 0
            && self.sleepers.len() == self.live
            && self.sleepers.values().all(|(d, ports)| {
                ports
                    .iter()
                    .all(|&p| self.pending.get(&(*d, p)).copied().unwrap_or(0) == 0)
            })
    }
}

/// Static event channels between in-process domains (threads), bound from their
/// manifests as Xen binds them: every port a manifest lists is connected to the peer
/// port it names, and an end the manifest marks `initially_pending` starts with one event.
///
/// Unlike a 2-level event channel, the bus never coalesces: each send is one event, and
/// each wait consumes one, so protocols see at least as many wake-ups as notifications
/// (wrap the events in [`Faulty`](super::Faulty) to coalesce, drop or invent them).
/// Waits that could only end by another domain's send, while every other live domain is
/// also waiting, return [`DEADLOCK`] instead of hanging the test.
///
#[derive(Debug, Default)]
pub struct Bus {
    state: Mutex<State>,
    cv: Condvar,
}

impl Bus {
    /// Binds the event channels of every manifest (each pair once; both ends must be
    /// listed, in either manifest order).
    pub fn new(manifests: &[&Manifest]) -> Bus {
        let mut st = State::default();
        for m in manifests {
            for e in m.evtchns {
                let me = (m.domid, e.local_port);
                st.peers.insert(me, (e.remote_domid, e.remote_port));
                if e.initially_pending {
                    st.pending.insert(me, 1);
                }
            }
        }
        Bus {
            state: Mutex::new(st),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches domain `domid`: the handle a [`BusPlatform`] (or a test) uses as its
    /// [`Events`]. The domain counts as live, for deadlock detection, until the handle
    /// is dropped, so attach every domain **before** starting the threads.
    pub fn domain(&self, domid: u16) -> BusDomain<'_> {
        self.lock().live += 1;
        BusDomain { bus: self, domid }
    }

    /// While `on`, waits do not see pending events and sleep (sends still count), so a
    /// test can let several notifications pile up before a sleeping domain wakes; turning
    /// it off wakes the sleepers.
    pub fn hold(&self, on: bool) {
        self.lock().hold = on;
        self.cv.notify_all();
    }

    /// How many domains sleep in a wait right now.
    pub fn sleeping(&self) -> usize {
        self.lock().sleepers.len()
    }

    /// Blocks until at least `n` domains sleep in a wait (for a test that must act only
    /// once a peer is known to be asleep).
    pub fn await_sleepers(&self, n: usize) {
        let mut st = self.lock();
        while st.sleepers.len() < n {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Events sent to `(domid, port)` and not consumed yet.
    pub fn pending(&self, domid: u16, port: u32) -> u32 {
        self.lock()
            .pending
            .get(&(domid, port))
            .copied()
            .unwrap_or(0)
    }

    /// Sends delivered so far, by every domain.
    pub fn sent(&self) -> u64 {
        self.lock().sent
    }

    /// True once a deadlock was detected.
    pub fn deadlocked(&self) -> bool {
        self.lock().deadlock
    }
}

/// One domain attached to a [`Bus`]: its [`Events`]. Dropping it detaches the domain.
#[derive(Debug)]
pub struct BusDomain<'b> {
    bus: &'b Bus,
    domid: u16,
}

impl BusDomain<'_> {
    /// The domain id.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Consumes one event on the first of `ports` that has one.
    fn take(&self, st: &mut State, ports: &[u32]) -> Option<u32> {
        if st.hold {
            return None;
        }
        ports
            .iter()
            .copied()
            .find(|&p| match st.pending.get_mut(&(self.domid, p)) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
    }
}

impl Drop for BusDomain<'_> {
    fn drop(&mut self) {
        let mut st = self.bus.lock();
        st.live -= 1;
        if st.stuck() {
            st.deadlock = true;
        }
        drop(st);
        self.bus.cv.notify_all();
    }
}

impl Events for BusDomain<'_> {
    fn send(&self, port: u32) -> Result<(), Errno> {
        let mut st = self.bus.lock();
        let peer = *st.peers.get(&(self.domid, port)).ok_or(Errno::EINVAL)?;
        *st.pending.entry(peer).or_insert(0) += 1;
        st.sent += 1;
        drop(st);
        self.bus.cv.notify_all();
        Ok(())
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if ports.is_empty() {
            return Err(Errno::EINVAL);
        }
        let mut st = self.bus.lock();
        if ports
            .iter()
            .any(|&p| !st.peers.contains_key(&(self.domid, p)))
        {
            return Err(Errno::EINVAL);
        }
        loop {
            if let Some(p) = self.take(&mut st, ports) {
                return Ok(p);
            }
            if st.deadlock {
                return Err(DEADLOCK);
            }
            let ticket = st.ticket;
            st.ticket += 1;
            st.sleepers.insert(ticket, (self.domid, ports.to_vec()));
            if st.stuck() {
                st.deadlock = true;
            }
            // Wakes `await_sleepers`, and the others once a deadlock is found.
            self.bus.cv.notify_all();
            if !st.deadlock {
                st = self.bus.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.sleepers.remove(&ticket);
        }
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        let mut st = self.bus.lock();
        self.take(&mut st, ports)
    }

    fn take_fired(&self) -> Option<u32> {
        let mut st = self.bus.lock();
        let ports: Vec<u32> = st
            .pending
            .iter()
            .filter(|(&(d, _), &n)| d == self.domid && n > 0)
            .map(|(&(_, p), _)| p)
            .collect();
        self.take(&mut st, &ports)
    }

    fn is_pending(&self, port: u32) -> bool {
        self.bus.pending(self.domid, port) > 0
    }

    fn clear_initial(&self, port: u32) -> bool {
        let mut st = self.bus.lock();
        st.pending
            .get_mut(&(self.domid, port))
            .is_some_and(|n| core::mem::take(n) > 0)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        let st = self.bus.lock();
        let &(remote_dom, remote_port) = st.peers.get(&(self.domid, port)).ok_or(Errno::EINVAL)?;
        Ok(PortStatus {
            state: PortState::Interdomain {
                remote_dom,
                remote_port,
            },
            vcpu: 0,
        })
    }
}

/// A domain of a [`Bus`] as a [`Platform`]: its events, its manifest and its regions.
/// Build it in the thread that runs the domain (regions are not `Send`).
#[derive(Debug)]
pub struct BusPlatform<'b> {
    events: BusDomain<'b>,
    manifest: &'static Manifest,
    regions: Vec<(&'static str, Region)>,
}

impl<'b> BusPlatform<'b> {
    /// Domain `events` with `manifest` and no regions yet.
    pub fn new(events: BusDomain<'b>, manifest: &'static Manifest) -> Self {
        BusPlatform {
            events,
            manifest,
            regions: Vec::new(),
        }
    }

    /// Adds the region with this `xen,shm-id`.
    pub fn with_region(mut self, shm_id: &'static str, region: Region) -> Self {
        self.regions.push((shm_id, region));
        self
    }
}

impl<'b> Platform for BusPlatform<'b> {
    type Events<'a>
        = &'a BusDomain<'b>
    where
        Self: 'a;

    fn events(&self) -> &BusDomain<'b> {
        &self.events
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

    /// `std::thread::yield_now`.
    fn yield_now(&self) -> Result<(), Errno> {
        std::thread::yield_now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{pair_ports, two_domains};
    use staticbus_manifest::Protocol;

    #[test]
    fn binds_from_the_manifests() {
        let [a, b] = two_domains(&[("q", Protocol::Queue, 0x1000), ("l", Protocol::Log, 0x1000)]);
        let bus = Bus::new(&[a, b]);
        let (da, db) = (bus.domain(a.domid), bus.domain(b.domid));
        let ([qa, qb], [la, lb]) = (pair_ports(0), pair_ports(1));
        // b's ends were bound second: pending at start.
        assert!(db.is_pending(qb) && db.is_pending(lb));
        assert!(!da.is_pending(qa));
        assert!(db.clear_initial(qb) && !db.clear_initial(qb));
        assert_eq!(
            da.status(la).unwrap().state,
            PortState::Interdomain {
                remote_dom: b.domid,
                remote_port: lb
            }
        );
        assert_eq!(da.status(lb), Err(Errno::EINVAL));
        assert_eq!(da.send(lb), Err(Errno::EINVAL));
        da.send(qa).unwrap();
        da.send(qa).unwrap();
        assert_eq!(bus.sent(), 2);
        // Every send is one event; take_fired goes lowest port first.
        assert_eq!(db.take_fired(), Some(qb));
        assert_eq!(
            db.wait_any(&[lb, qb]),
            Ok(lb),
            "the first of the list that fired"
        );
        assert_eq!(db.try_take_any(&[qb]), Some(qb));
        assert_eq!(db.take_fired(), None);
        assert_eq!(db.wait_any(&[]), Err(Errno::EINVAL));
        assert_eq!(db.wait_any(&[qa]), Err(Errno::EINVAL), "not b's port");
    }

    #[test]
    fn a_wait_nobody_can_end_is_a_deadlock() {
        let [a, b] = two_domains(&[("q", Protocol::Queue, 0x1000)]);
        let bus = Bus::new(&[a, b]);
        let [pa, pb] = pair_ports(0);
        let db = bus.domain(b.domid);
        db.clear_initial(pb);
        {
            let da = bus.domain(a.domid);
            std::thread::scope(|s| {
                let waiter = s.spawn(|| db.wait(pb));
                bus.await_sleepers(1);
                da.send(pa).unwrap();
                assert_eq!(waiter.join().unwrap(), Ok(()));
            });
        }
        // a is gone: b is the only live domain and nothing is pending for it.
        assert!(!bus.deadlocked());
        assert_eq!(db.wait(pb), Err(DEADLOCK));
        assert!(bus.deadlocked());
        assert_eq!(bus.sleeping(), 0);
    }

    #[test]
    fn held_events_are_seen_once_released() {
        let [a, b] = two_domains(&[("q", Protocol::Queue, 0x1000)]);
        let bus = Bus::new(&[a, b]);
        let [pa, pb] = pair_ports(0);
        let (da, db) = (bus.domain(a.domid), bus.domain(b.domid));
        db.clear_initial(pb);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| db.wait(pb));
            bus.await_sleepers(1);
            bus.hold(true);
            da.send(pa).unwrap();
            da.send(pa).unwrap();
            assert_eq!(bus.pending(b.domid, pb), 2);
            assert_eq!(bus.sleeping(), 1, "still asleep while held");
            bus.hold(false);
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
        assert_eq!(bus.pending(b.domid, pb), 1);
    }
}
