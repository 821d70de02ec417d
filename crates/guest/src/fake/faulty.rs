//! [`Faulty`]: fault injection over any [`Events`] implementation.

use crate::events::Events;
use crate::hypercall::Errno;
use crate::ops::PortStatus;
use crate::platform::Platform;
use crate::region::Region;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use staticbus_manifest::Manifest;

/// How often a fault happens: never, always, or on average once in `n` decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chance(u32);

impl Chance {
    /// Never.
    pub const NEVER: Chance = Chance(0);
    /// Every time.
    pub const ALWAYS: Chance = Chance(1);

    /// On average once in `n` decisions (`one_in(0)` is [`Chance::NEVER`]).
    pub const fn one_in(n: u32) -> Chance {
        Chance(n)
    }

    fn hits(self, draw: u64) -> bool {
        self.0 != 0 && draw % u64::from(self.0) == 0
    }
}

/// Which faults [`Faulty`] injects, and the seed of its decisions.
///
/// The decisions are a deterministic function of the seed and of the sequence of calls
/// made through the domain's [`Faulty`] handles (one pseudo-random draw per decision), so
/// a single-threaded test is reproducible; with threads, the interleaving adds its own
/// variation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Seed of the pseudo-random decisions.
    pub seed: u64,
    /// A wait (or a non-blocking take) reports one of the ports it was asked about
    /// although nothing fired: what a peer that sends for nothing, a restarted peer or a
    /// stale bind-time bit look like. Nothing is consumed.
    pub spurious: Chance,
    /// When a wait or take consumes an event on a port, every further event already
    /// pending on that port is consumed with it: several notifications, one wake-up (what
    /// a 2-level pending bit does to sends that arrive before the receiver looks).
    pub coalesce: Chance,
    /// A send reports success but delivers nothing (what Xen does on an UNBOUND port, or
    /// a lost interrupt).
    pub drop: Chance,
}

impl Faults {
    /// No faults.
    pub const fn none(seed: u64) -> Faults {
        Faults {
            seed,
            spurious: Chance::NEVER,
            coalesce: Chance::NEVER,
            drop: Chance::NEVER,
        }
    }

    /// Only spurious events, with `chance`.
    pub const fn spurious(seed: u64, chance: Chance) -> Faults {
        Faults {
            spurious: chance,
            ..Faults::none(seed)
        }
    }

    /// Only coalesced events, with `chance`.
    pub const fn coalesce(seed: u64, chance: Chance) -> Faults {
        Faults {
            coalesce: chance,
            ..Faults::none(seed)
        }
    }

    /// Only dropped sends, with `chance`.
    pub const fn drop(seed: u64, chance: Chance) -> Faults {
        Faults {
            drop: chance,
            ..Faults::none(seed)
        }
    }
}

/// What a [`FaultState`] injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Ports reported by a wait or take although nothing fired.
    pub spurious: u64,
    /// Events consumed together with an earlier one on the same port.
    pub coalesced: u64,
    /// Sends that delivered nothing.
    pub dropped: u64,
}

/// The fault configuration, decision stream and counters of one domain, shared by all
/// its [`Faulty`] handles. Thread-safe; the configuration can change while they run.
#[derive(Debug)]
pub struct FaultState {
    rng: AtomicU64,
    spurious: AtomicU32,
    coalesce: AtomicU32,
    drop: AtomicU32,
    n_spurious: AtomicU64,
    n_coalesced: AtomicU64,
    n_dropped: AtomicU64,
}

impl FaultState {
    /// A state injecting `faults`.
    pub fn new(faults: Faults) -> FaultState {
        let st = FaultState {
            rng: AtomicU64::new(0),
            spurious: AtomicU32::new(0),
            coalesce: AtomicU32::new(0),
            drop: AtomicU32::new(0),
            n_spurious: AtomicU64::new(0),
            n_coalesced: AtomicU64::new(0),
            n_dropped: AtomicU64::new(0),
        };
        st.set(faults);
        st
    }

    /// Injects `faults` from now on (and restarts the decision stream from its seed).
    pub fn set(&self, faults: Faults) {
        self.rng.store(faults.seed, Relaxed);
        self.spurious.store(faults.spurious.0, Relaxed);
        self.coalesce.store(faults.coalesce.0, Relaxed);
        self.drop.store(faults.drop.0, Relaxed);
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            spurious: self.n_spurious.load(Relaxed),
            coalesced: self.n_coalesced.load(Relaxed),
            dropped: self.n_dropped.load(Relaxed),
        }
    }

    /// The next pseudo-random draw (SplitMix64 over a shared counter).
    fn draw(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn decide(&self, chance: &AtomicU32) -> Option<u64> {
        let c = Chance(chance.load(Relaxed));
        if c == Chance::NEVER {
            return None;
        }
        let d = self.draw();
        c.hits(d).then_some(d >> 32)
    }
}

/// Most further events one coalescing swallows (bounds the loop against a peer that
/// keeps sending).
const MAX_COALESCE: u32 = 1024;

/// Any [`Events`] implementation with faults injected as its [`FaultState`] says:
/// spurious events, coalesced events, dropped sends ([`Faults`]). Everything else is
/// forwarded unchanged.
#[derive(Clone, Copy, Debug)]
pub struct Faulty<'f, E> {
    inner: E,
    state: &'f FaultState,
}

impl<'f, E: Events> Faulty<'f, E> {
    /// `inner` with the faults of `state`.
    pub fn new(inner: E, state: &'f FaultState) -> Self {
        Faulty { inner, state }
    }

    /// The wrapped events.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// A spurious port among `ports`, if the decision says so.
    fn spurious(&self, ports: &[u32]) -> Option<u32> {
        if ports.is_empty() {
            return None;
        }
        let d = self.state.decide(&self.state.spurious)?;
        self.state.n_spurious.fetch_add(1, Relaxed);
        Some(ports[(d % ports.len() as u64) as usize])
    }

    /// After consuming an event on `port`: maybe consume the ones pending behind it.
    fn coalesce(&self, port: u32) -> u32 {
        if self.state.decide(&self.state.coalesce).is_some() {
            for _ in 0..MAX_COALESCE {
                if self.inner.try_take_any(&[port]).is_none() {
                    break;
                }
                self.state.n_coalesced.fetch_add(1, Relaxed);
            }
        }
        port
    }
}

impl<E: Events> Events for Faulty<'_, E> {
    fn send(&self, port: u32) -> Result<(), Errno> {
        if self.state.decide(&self.state.drop).is_some() {
            self.state.n_dropped.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.inner.send(port)
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if let Some(p) = self.spurious(ports) {
            return Ok(p);
        }
        self.inner.wait_any(ports).map(|p| self.coalesce(p))
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        if let Some(p) = self.spurious(ports) {
            return Some(p);
        }
        self.inner.try_take_any(ports).map(|p| self.coalesce(p))
    }

    fn take_fired(&self) -> Option<u32> {
        self.inner.take_fired().map(|p| self.coalesce(p))
    }

    fn is_pending(&self, port: u32) -> bool {
        self.inner.is_pending(port)
    }

    fn clear_initial(&self, port: u32) -> bool {
        self.inner.clear_initial(port)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        self.inner.status(port)
    }
}

/// Any [`Platform`] whose events are wrapped in [`Faulty`]: regions, manifest and yield
/// are the inner platform's. The [`FaultState`] is borrowed, so a test can change the
/// faults and read what was injected while the domain runs in another thread.
#[derive(Debug)]
pub struct FaultyPlatform<'f, P> {
    inner: P,
    state: &'f FaultState,
}

impl<'f, P: Platform> FaultyPlatform<'f, P> {
    /// `inner` with the faults of `state` injected into its events.
    pub fn new(inner: P, state: &'f FaultState) -> Self {
        FaultyPlatform { inner, state }
    }

    /// The wrapped platform.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The fault state.
    pub fn faults(&self) -> &'f FaultState {
        self.state
    }
}

impl<'f, P: Platform> Platform for FaultyPlatform<'f, P> {
    type Events<'a>
        = Faulty<'f, P::Events<'a>>
    where
        Self: 'a;

    fn events(&self) -> Self::Events<'_> {
        Faulty::new(self.inner.events(), self.state)
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        self.inner.region(shm_id)
    }

    fn manifest(&self) -> &Manifest {
        self.inner.manifest()
    }

    fn yield_now(&self) -> Result<(), Errno> {
        self.inner.yield_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{pair_ports, two_domains, Bus, FakeXen, FiredSet, Wake};
    use crate::EventChannels;
    use staticbus_manifest::Protocol;
    use std::vec::Vec;

    fn manifests() -> [&'static Manifest; 2] {
        two_domains(&[("q", Protocol::Queue, 0x1000)])
    }

    #[test]
    fn dropped_sends_report_success_and_deliver_nothing() {
        let [a, b] = manifests();
        let bus = Bus::new(&[a, b]);
        let (da, db) = (bus.domain(a.domid), bus.domain(b.domid));
        let [pa, pb] = pair_ports(0);
        assert!(db.clear_initial(pb));
        let st = FaultState::new(Faults::drop(1, Chance::ALWAYS));
        let fa = Faulty::new(&da, &st);
        assert_eq!(fa.send(pa), Ok(()));
        assert_eq!(bus.pending(b.domid, pb), 0);
        assert_eq!(st.stats().dropped, 1);
        st.set(Faults::none(1));
        fa.send(pa).unwrap();
        assert_eq!(bus.pending(b.domid, pb), 1);
        // Only sends are affected: the status still comes from the bus.
        assert_eq!(fa.status(pa), da.status(pa));
        assert_eq!(fa.send(99), Err(Errno::EINVAL));
    }

    #[test]
    fn spurious_events_name_an_awaited_port_and_consume_nothing() {
        let [a, b] = manifests();
        let bus = Bus::new(&[a, b]);
        let db = bus.domain(b.domid);
        let pb = pair_ports(0)[1];
        let st = FaultState::new(Faults::spurious(2, Chance::ALWAYS));
        let fb = Faulty::new(&db, &st);
        // The bind-time event stays pending through any number of spurious wake-ups.
        for _ in 0..5 {
            assert_eq!(fb.wait_any(&[pb]), Ok(pb));
            assert_eq!(fb.try_take_any(&[pb]), Some(pb));
        }
        assert_eq!(bus.pending(b.domid, pb), 1);
        assert_eq!(st.stats().spurious, 10);
        // Nothing to invent without ports; take_fired reports only real events.
        assert_eq!(fb.try_take_any(&[]), None);
        assert_eq!(fb.wait_any(&[]), Err(Errno::EINVAL));
        assert_eq!(fb.take_fired(), Some(pb));
        assert_eq!(fb.take_fired(), None);
    }

    #[test]
    fn coalescing_consumes_the_events_pending_behind_one() {
        let [a, b] = manifests();
        let bus = Bus::new(&[a, b]);
        let (da, db) = (bus.domain(a.domid), bus.domain(b.domid));
        let [pa, pb] = pair_ports(0);
        db.clear_initial(pb);
        let st = FaultState::new(Faults::coalesce(3, Chance::ALWAYS));
        let fb = Faulty::new(&db, &st);
        for _ in 0..3 {
            da.send(pa).unwrap();
        }
        // Without the fault the bus delivers every send: three wake-ups.
        assert_eq!(bus.pending(b.domid, pb), 3);
        assert_eq!(fb.wait_any(&[pb]), Ok(pb));
        assert_eq!(fb.try_take_any(&[pb]), None);
        assert_eq!(st.stats().coalesced, 2);
    }

    #[test]
    fn decisions_follow_the_seed() {
        let pattern = |seed| {
            let st = FaultState::new(Faults::drop(seed, Chance::one_in(3)));
            let v: Vec<bool> = (0..200).map(|_| st.decide(&st.drop).is_some()).collect();
            v
        };
        let p = pattern(42);
        assert_eq!(p, pattern(42));
        assert_ne!(p, pattern(43));
        let hits = p.iter().filter(|&&h| h).count();
        assert!((40..95).contains(&hits), "{hits} of 200 at one in 3");
        let st = FaultState::new(Faults::none(0));
        assert!((0..100).all(|_| st.decide(&st.drop).is_none()));
        st.set(Faults::drop(0, Chance::ALWAYS));
        assert!((0..100).all(|_| st.decide(&st.drop).is_some()));
    }

    #[test]
    fn wraps_the_two_level_driver_too() {
        let xen = FakeXen::new(&[(10, 11)]);
        let (fa, fb) = (FiredSet::new(), FiredSet::new());
        let (da, db) = (xen.dom(0), xen.dom(1));
        let a = EventChannels::new(&da, xen.shared_info(0), &fa);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        b.clear_initial(11);
        let drops = FaultState::new(Faults::drop(4, Chance::ALWAYS));
        Faulty::new(a, &drops).send(10).unwrap();
        assert!(!b.is_pending(11));
        assert!(xen.calls(0).is_empty(), "no hypercall for a dropped send");
        let spurious = FaultState::new(Faults::spurious(5, Chance::ALWAYS));
        // The driver would poll (and the fake would need a scripted wake-up); the fault
        // returns first.
        assert_eq!(Faulty::new(b, &spurious).wait_any(&[11]), Ok(11));
        assert!(xen.calls(1).is_empty());
        xen.script(1, [Wake::PeerSends(10)]);
        assert_eq!(Faulty::new(b, &drops).wait_any(&[11]), Ok(11));
    }
}
