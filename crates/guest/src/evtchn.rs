//! The event-channel driver: Xen's 2-level ABI on the `shared_info` page, over any
//! [`Hypercall`] transport.
//!
//! # How events reach the guest (spec §5.5)
//!
//! When the peer sends on a static pair, Xen sets the port's bit in
//! `shared_info.evtchn_pending`. If the port is not masked and its selector bit in
//! `evtchn_pending_sel` was clear, Xen sets that selector bit and `evtchn_upcall_pending`,
//! and on the 0→1 transition of `evtchn_upcall_pending` injects the upcall interrupt
//! (PPI 31 on a domU). An event channel is one coalescing bit: several sends before the
//! guest looks are one event. Protocols therefore keep their state in shared memory and
//! use the event only as a doorbell, re-checking the state after every wake-up.
//!
//! # Consuming events
//!
//! Pending bits are consumed in two ways, and the driver keeps them consistent:
//!
//! * [`EventChannels::drain`] is the interrupt-handler path, in Linux's order.
//! * [`EventChannels::wait`], [`EventChannels::wait_any`], [`EventChannels::take_fired`]
//!   and [`EventChannels::clear`] are the per-port path. To find out whether *its* port
//!   fired, `wait` drains everything pending; ports it was not waiting for are remembered
//!   in a [`FiredSet`] (a fixed bitmap of all 4096 2-level ports: no allocation, no
//!   overflow, nothing lost) and reported later by `take_fired`, `wait_any`, `clear` or
//!   `drain`.
//!
//! The [`FiredSet`] belongs to the domain (the transport owns it:
//! [`TwoLevelTransport::fired`](crate::TwoLevelTransport::fired)), so
//! every `EventChannels` handle of a domain shares it. If an interrupt handler runs while
//! other code waits, the handler should call [`EventChannels::collect`] (which records into
//! the shared set) rather than `drain` with its own callback, or the waiter may not see
//! ports the handler consumed.
//!
//! # Blocking
//!
//! [`EventChannels::wait_any`] alternates a check (collect what is pending, consume one of
//! its ports) with a sleep, in one of two ways:
//!
//! * **`SCHEDOP_poll`** on the ports (the default): Xen returns at once if one of them is
//!   pending and otherwise wakes the vCPU when one becomes pending, masked or not. No
//!   interrupt is involved; a guest may keep IRQs masked for good.
//! * **the upcall interrupt**, when the transport installed an [`UpcallSleep`] (see
//!   [`TwoLevelTransport::upcall_sleep`](crate::TwoLevelTransport::upcall_sleep)): the sleep lasts until Xen
//!   injects the upcall interrupt (PPI 31 on an Arm domU). Used only when none of the
//!   ports is masked (a masked port raises no upcall); otherwise that wait polls.
//!
//! ## Why the upcall path loses no wake-up
//!
//! Xen injects the upcall interrupt only when `evtchn_upcall_pending` goes 0→1, and sets
//! `evtchn_upcall_pending` only after it set the port's pending bit and its selector bit
//! (spec §5.5). The check before every sleep is [`collect`](EventChannels::collect),
//! which **first** clears `evtchn_upcall_pending` and **then** swaps the selector with 0
//! and consumes the pending bits. So for an event on an unmasked port, either
//!
//! * Xen set (or found) the selector bit before the swap: the check sees the port; or
//! * it set the selector bit after the swap, and then sets `evtchn_upcall_pending`. The
//!   check cleared that flag before the swap and only Xen sets it, so it is 1 then only
//!   if Xen set it after the clear: either way it went 0→1 after the clear, and Xen
//!   injected the upcall interrupt at that moment.
//!
//! (The same holds for the last round when [`collect`](EventChannels::collect) makes
//! several, and when it stops at [`MAX_DRAIN_ROUNDS`] with the flag set again.) A driver
//! that slept without clearing `evtchn_upcall_pending` first could sleep forever: with
//! the flag still 1, Xen injects nothing for the next event.
//!
//! An interrupt injected after the check began must end the sleep that follows it: the
//! [`UpcallSleep`] contract. A bare-metal guest meets it by keeping IRQs masked from the
//! check to the sleep: the injected interrupt stays pending in the virtual GIC, and `wfi`
//! returns when an interrupt is pending even with PSTATE.I set; it then unmasks IRQs
//! briefly so the handler acknowledges the interrupt (else the next `wfi` would return
//! at once), masks them again and lets the driver check again.

use crate::events::Events;
use crate::hypercall::{Errno, Hypercall};
use crate::ops::{self, PortStatus};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use staticbus_abi::shared_info::{SharedInfo, NR_PORTS};

/// Rounds [`EventChannels::drain`] makes at most. A round handles everything the selector
/// showed at its start (at most 4096 ports); another round follows only if
/// `evtchn_upcall_pending` was set again meanwhile. The cap keeps a hostile or buggy
/// hypervisor that keeps raising events from trapping the guest in the loop; whatever is
/// left stays pending (with `evtchn_upcall_pending` set) for the next drain.
pub const MAX_DRAIN_ROUNDS: usize = 4;

/// Most ports Xen accepts in one `SCHEDOP_poll` (more gives `EINVAL`).
pub const MAX_POLL_PORTS: usize = 128;

const FIRED_WORDS: usize = (NR_PORTS / 64) as usize;

/// A fixed-size set of ports that fired and have not been consumed yet: one bit per port
/// of the 2-level ABI (512 bytes), updated atomically so an interrupt handler and the
/// main code may share it.
pub struct FiredSet {
    words: [AtomicU64; FIRED_WORDS],
}

impl FiredSet {
    /// An empty set.
    pub const fn new() -> Self {
        FiredSet {
            words: [const { AtomicU64::new(0) }; FIRED_WORDS],
        }
    }

    fn split(port: u32) -> Option<(usize, u64)> {
        (port < NR_PORTS).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
    }

    /// Adds `port`; returns false (and adds nothing) if it is not a 2-level port
    /// (`>= 4096`).
    pub fn insert(&self, port: u32) -> bool {
        match Self::split(port) {
            Some((w, b)) => {
                self.words[w].fetch_or(b, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Removes `port`; returns whether it was in the set.
    pub fn remove(&self, port: u32) -> bool {
        Self::split(port).is_some_and(|(w, b)| self.words[w].fetch_and(!b, SeqCst) & b != 0)
    }

    /// True if `port` is in the set.
    pub fn contains(&self, port: u32) -> bool {
        Self::split(port).is_some_and(|(w, b)| self.words[w].load(SeqCst) & b != 0)
    }

    /// Removes and returns the lowest port in the set.
    pub fn pop(&self) -> Option<u32> {
        for (w, word) in self.words.iter().enumerate() {
            // Each retry means another consumer took a bit of this word: at most 64.
            for _ in 0..64 {
                let v = word.load(SeqCst);
                if v == 0 {
                    break;
                }
                let b = 1u64 << v.trailing_zeros();
                if word.fetch_and(!b, SeqCst) & b != 0 {
                    return Some(w as u32 * 64 + v.trailing_zeros());
                }
            }
        }
        None
    }

    /// True if no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| w.load(SeqCst) == 0)
    }

    /// Empties the set.
    pub fn clear(&self) {
        for w in &self.words {
            w.store(0, SeqCst);
        }
    }
}

impl Default for FiredSet {
    fn default() -> Self {
        FiredSet::new()
    }
}

impl fmt::Debug for FiredSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (w, word) in self.words.iter().enumerate() {
            let mut v = word.load(SeqCst);
            while v != 0 {
                set.entry(&(w as u32 * 64 + v.trailing_zeros()));
                v &= v - 1;
            }
        }
        set.finish()
    }
}

/// The event-channel driver of one domain (vCPU 0): a cheap, copyable handle over the
/// hypercall transport, the domain's `shared_info` page and its [`FiredSet`].
///
/// All methods take `&self`; all state lives in `shared_info` and the fired set, both
/// atomic.
pub struct EventChannels<'a, H: Hypercall + ?Sized> {
    h: &'a H,
    si: SharedInfo<'a>,
    fired: &'a FiredSet,
    upcall: Option<&'a dyn UpcallSleep>,
}

/// A transport's way to sleep until the upcall interrupt, which
/// [`EventChannels::wait_any`] uses instead of `SCHEDOP_poll` when the transport installs
/// one (see [`TwoLevelTransport::upcall_sleep`](crate::TwoLevelTransport::upcall_sleep) and the module
/// documentation's *Blocking*).
///
/// The driver calls [`sleep_until_upcall`](UpcallSleep::sleep_until_upcall) right after
/// a check that cleared `evtchn_upcall_pending` and found none of the awaited (unmasked)
/// ports fired, and checks again when it returns.
pub trait UpcallSleep {
    /// Sleeps until an upcall interrupt injected since the caller's check began has been
    /// seen, then returns. Must return if one was injected before the call (the
    /// transport keeps such an interrupt pending across the check: on bare metal, by
    /// keeping IRQs masked and sleeping in `wfi`). May return early or spuriously; must
    /// leave the interrupt acknowledged so the next sleep does not return at once for it.
    fn sleep_until_upcall(&self);
}

impl<H: Hypercall + ?Sized> Clone for EventChannels<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: Hypercall + ?Sized> Copy for EventChannels<'_, H> {}

impl<H: Hypercall + ?Sized> fmt::Debug for EventChannels<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventChannels")
            .field("upcall_pending", &self.si.upcall_pending())
            .field("pending_sel", &format_args!("{:#x}", self.si.pending_sel()))
            .field("fired", self.fired)
            .field("sleeps_on_upcall", &self.upcall.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, H: Hypercall + ?Sized> EventChannels<'a, H> {
    /// A driver over `h`, the domain's `shared_info` page and its fired set. Every handle
    /// of one domain must use the same `fired` set. It blocks with `SCHEDOP_poll`; see
    /// [`with_upcall_sleep`](Self::with_upcall_sleep).
    pub fn new(h: &'a H, si: SharedInfo<'a>, fired: &'a FiredSet) -> Self {
        EventChannels {
            h,
            si,
            fired,
            upcall: None,
        }
    }

    /// This driver, blocking in [`wait_any`](Self::wait_any) with `sleep` (the upcall
    /// interrupt) instead of `SCHEDOP_poll` whenever none of the awaited ports is masked;
    /// `None` restores `SCHEDOP_poll`.
    pub fn with_upcall_sleep(self, sleep: Option<&'a dyn UpcallSleep>) -> Self {
        EventChannels {
            upcall: sleep,
            ..self
        }
    }

    /// The upcall sleep [`wait_any`](Self::wait_any) uses, if any.
    pub fn upcall_sleep(&self) -> Option<&'a dyn UpcallSleep> {
        self.upcall
    }

    /// The hypercall transport.
    pub fn hypercall(&self) -> &'a H {
        self.h
    }

    /// The `shared_info` view.
    pub fn shared_info(&self) -> SharedInfo<'a> {
        self.si
    }

    /// The set of remembered ports.
    pub fn fired_set(&self) -> &'a FiredSet {
        self.fired
    }

    /// `EVTCHNOP_send` on local `port`: raises the event at the peer's end.
    pub fn send(&self, port: u32) -> Result<(), Errno> {
        ops::evtchn_send(self.h, port)
    }

    /// `EVTCHNOP_status` of local `port` (a static port reports
    /// [`PortState::Interdomain`](crate::ops::PortState::Interdomain)).
    pub fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        ops::evtchn_status(self.h, port)
    }

    /// Masks `port` by setting its mask bit in `shared_info` (no hypercall, as Linux
    /// does). A masked port still becomes pending, and still wakes
    /// [`poll`](Self::poll), but raises no upcall and is skipped by
    /// [`drain`](Self::drain). `EINVAL` for a port `>= 4096`.
    pub fn mask(&self, port: u32) -> Result<(), Errno> {
        if port >= NR_PORTS {
            return Err(Errno::EINVAL);
        }
        self.si.set_mask(port);
        Ok(())
    }

    /// Unmasks `port` with `EVTCHNOP_unmask`, so the hypervisor re-raises it (selector,
    /// upcall) if it became pending while masked. Clearing the mask bit locally would
    /// leave such an event stranded.
    pub fn unmask(&self, port: u32) -> Result<(), Errno> {
        ops::evtchn_unmask(self.h, port)
    }

    /// True if `port` is masked (always true for ports `>= 4096`).
    pub fn is_masked(&self, port: u32) -> bool {
        self.si.is_masked(port)
    }

    /// True if an event for `port` waits to be consumed: its pending bit is set in
    /// `shared_info`, or the driver remembered it in the fired set.
    pub fn is_pending(&self, port: u32) -> bool {
        if self.fired.contains(port) {
            return true;
        }
        self.h.sync_pending();
        self.si.is_pending(port)
    }

    /// Consumes an event for `port`: atomically clears its pending bit and removes it from
    /// the fired set. Returns whether there was one. Does not touch the selector or
    /// `evtchn_upcall_pending`.
    pub fn clear(&self, port: u32) -> bool {
        self.h.sync_pending();
        let remembered = self.fired.remove(port);
        let pending = self.si.clear_pending(port);
        remembered || pending
    }

    /// Clears the bind-time pending bit of a static port; returns whether it was set.
    ///
    /// Xen binds each static pair by allocating the first endpoint UNBOUND and binding the
    /// second to it, and the bind **marks the second endpoint pending** (spec §1.3 step 9,
    /// observed on real Xen in §11): that domain starts with the port's pending bit, its
    /// selector bit and `evtchn_upcall_pending` set, though nobody sent anything. The
    /// manifest flags that end ([`Evtchn::initially_pending`]). Call this once at start,
    /// before the protocol's handshake, so an event counter does not start one ahead.
    ///
    /// An event the peer really sent before this call is consumed too, which is why
    /// protocols handshake through shared memory (a READY flag) rather than rely on the
    /// first event. The selector bit and `evtchn_upcall_pending` are left for the next
    /// [`drain`](Self::drain)/[`collect`](Self::collect) to reset (one empty pass).
    ///
    /// [`Evtchn::initially_pending`]: staticbus_manifest::Evtchn::initially_pending
    pub fn clear_initial(&self, port: u32) -> bool {
        self.clear(port)
    }

    /// Handles every pending, unmasked port, calling `f(port)` once per event; returns how
    /// many were delivered.
    ///
    /// Ports the driver remembered (see [`FiredSet`]) come first, lowest first. Then, in
    /// Linux's order (spec §5.5): clear `evtchn_upcall_pending`; swap
    /// `evtchn_pending_sel` with 0; for each selected word (lowest first) take
    /// `pending & !mask` and, for each port in it (lowest first), atomically clear its
    /// pending bit **before** calling `f`, so an event that arrives while `f` runs sets
    /// the bit again and is delivered in a later round instead of being lost. Another
    /// round follows if `evtchn_upcall_pending` was set again, up to
    /// [`MAX_DRAIN_ROUNDS`]; anything left over stays pending, with
    /// `evtchn_upcall_pending` set, for the next call.
    ///
    /// Masked ports are skipped and keep their pending bit; [`unmask`](Self::unmask)
    /// re-raises them.
    pub fn drain(&self, mut f: impl FnMut(u32)) -> usize {
        let mut n = 0;
        for _ in 0..NR_PORTS {
            let Some(port) = self.fired.pop() else { break };
            f(port);
            n += 1;
        }
        n + self.drain_shared(&mut f)
    }

    /// Drains `shared_info` (as [`drain`](Self::drain) does) into the fired set instead of
    /// a callback; returns how many ports were recorded. This is what an upcall interrupt
    /// handler should call when other code uses [`wait`](Self::wait) or
    /// [`take_fired`](Self::take_fired).
    pub fn collect(&self) -> usize {
        self.drain_shared(&mut |port| {
            self.fired.insert(port);
        })
    }

    fn drain_shared(&self, f: &mut impl FnMut(u32)) -> usize {
        let mut n = 0;
        self.h.sync_pending();
        for _ in 0..MAX_DRAIN_ROUNDS {
            self.si.clear_upcall_pending();
            let mut sel = self.si.take_pending_sel();
            while sel != 0 {
                let w = sel.trailing_zeros() as usize;
                sel &= sel - 1;
                let mut bits = self.si.pending(w) & !self.si.mask(w);
                while bits != 0 {
                    let port = w as u32 * 64 + bits.trailing_zeros();
                    bits &= bits - 1;
                    if self.si.clear_pending(port) {
                        f(port);
                        n += 1;
                    }
                }
            }
            if !self.si.upcall_pending() {
                break;
            }
        }
        n
    }

    /// The next port that fired, without blocking: collects what is pending, then removes
    /// and returns the lowest remembered port.
    pub fn take_fired(&self) -> Option<u32> {
        self.collect();
        self.fired.pop()
    }

    /// Consumes an event on the first of `ports` that has one, without blocking.
    /// Masked ports count too.
    pub fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        self.collect();
        ports.iter().copied().find(|&p| self.clear(p))
    }

    /// `SCHEDOP_block`: sleeps until an event may have been delivered. See
    /// [`ops::sched_block`] for what it does on Arm (it unmasks guest IRQs). Returns
    /// spuriously at times; the caller re-checks.
    pub fn block(&self) -> Result<(), Errno> {
        ops::sched_block(self.h)
    }

    /// `SCHEDOP_poll`: sleeps until one of `ports` is pending or the absolute system time
    /// `timeout` (ns, 0 = none) passes. See [`ops::sched_poll`].
    pub fn poll(&self, ports: &[u32], timeout: u64) -> Result<(), Errno> {
        ops::sched_poll(self.h, ports, timeout)
    }

    /// Returns once `port` has fired, consuming the event.
    ///
    /// Each iteration collects everything pending (other ports go to the fired set for
    /// [`take_fired`](Self::take_fired)), consumes `port` if it fired (masked or not),
    /// and otherwise sleeps: in `SCHEDOP_poll` on `port`, or, with an
    /// [`UpcallSleep`] installed and `port` unmasked, until the upcall interrupt. Spurious
    /// wake-ups and other ports firing just loop. There is no lost-wakeup window: Xen's
    /// poll returns at once if the port became pending after the check, and the upcall
    /// path relies on the 0→1 rule (module documentation, *Blocking*). Errors from poll
    /// (`EINVAL` for an invalid port) are returned.
    pub fn wait(&self, port: u32) -> Result<(), Errno> {
        self.wait_any(&[port]).map(drop)
    }

    /// Returns the first of `ports` that fired, consuming its event; see
    /// [`wait`](Self::wait). `EINVAL` for an empty list; Xen rejects more than
    /// [`MAX_POLL_PORTS`]. A port `>= 4096` counts as masked, so it is always polled (and
    /// rejected by the hypervisor).
    pub fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        if ports.is_empty() {
            return Err(Errno::EINVAL);
        }
        loop {
            if let Some(port) = self.try_take_any(ports) {
                return Ok(port);
            }
            match self.upcall {
                Some(sleep) if !ports.iter().any(|&p| self.si.is_masked(p)) => {
                    sleep.sleep_until_upcall();
                }
                _ => self.poll(ports, 0)?,
            }
        }
    }
}

/// The 2-level driver as the [`Events`] seam: every method is the inherent method of the
/// same name, with its exact semantics (and [`try_take_any`](EventChannels::try_take_any)
/// and [`take_fired`](EventChannels::take_fired) collect from `shared_info` first).
impl<H: Hypercall + ?Sized> Events for EventChannels<'_, H> {
    fn send(&self, port: u32) -> Result<(), Errno> {
        EventChannels::send(self, port)
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        EventChannels::wait_any(self, ports)
    }

    fn wait(&self, port: u32) -> Result<(), Errno> {
        EventChannels::wait(self, port)
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        EventChannels::try_take_any(self, ports)
    }

    fn take_fired(&self) -> Option<u32> {
        EventChannels::take_fired(self)
    }

    fn is_pending(&self, port: u32) -> bool {
        EventChannels::is_pending(self, port)
    }

    fn clear_initial(&self, port: u32) -> bool {
        EventChannels::clear_initial(self, port)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        EventChannels::status(self, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Call, FakeDom, FakeWfi, FakeXen, Wake, DOMIDS};
    use crate::ops::PortState;
    use core::cell::Cell;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn bind_time_pending_bit_is_seen_and_cleared_by_clear_initial() {
        let xen = FakeXen::new(&[(10, 11)]);
        let (fa, fb) = (FiredSet::new(), FiredSet::new());
        let (da, db, sb) = (xen.dom(0), xen.dom(1), xen.shared_info(1));
        let a = EventChannels::new(&da, xen.shared_info(0), &fa);
        let b = EventChannels::new(&db, sb, &fb);
        // The second-bound end (b) starts pending with the upcall raised; a does not.
        assert!(b.is_pending(11));
        assert!(sb.upcall_pending());
        assert_eq!(sb.pending_sel(), 1);
        assert!(!a.is_pending(10));
        assert!(b.clear_initial(11));
        assert!(!b.is_pending(11));
        assert!(!b.clear_initial(11));
        assert!(!a.clear_initial(10));
        // The leftover selector and upcall flag cost one empty drain pass.
        assert_eq!(b.drain(|p| panic!("port {p} delivered")), 0);
        assert!(!sb.upcall_pending());
        assert_eq!(sb.pending_sel(), 0);
        assert!(xen.calls(1).is_empty());
    }

    #[test]
    fn send_raises_the_peer_port_and_status_is_interdomain() {
        let xen = FakeXen::new(&[(10, 11)]);
        let (fa, fb) = (FiredSet::new(), FiredSet::new());
        let (da, db) = (xen.dom(0), xen.dom(1));
        let a = EventChannels::new(&da, xen.shared_info(0), &fa);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        b.clear_initial(11);
        b.send(11).unwrap();
        assert!(a.is_pending(10));
        assert!(xen.shared_info(0).upcall_pending());
        assert_eq!(xen.calls(1), vec![Call::Send(11)]);
        assert_eq!(b.send(12), Err(Errno::EINVAL));
        let st = a.status(10).unwrap();
        assert_eq!(
            st.state,
            PortState::Interdomain {
                remote_dom: DOMIDS[1],
                remote_port: 11
            }
        );
        assert_eq!(a.status(99), Err(Errno::EINVAL));
    }

    #[test]
    fn drain_order_and_clear_before_handle() {
        let xen = FakeXen::new(&[]);
        let fired = FiredSet::new();
        let (d, si) = (xen.dom(0), xen.shared_info(0));
        let ev = EventChannels::new(&d, si, &fired);
        for port in [130, 3, 65, 1] {
            si.set_pending(port);
        }
        let mut seen = Vec::new();
        let n = ev.drain(|port| {
            // Cleared before the handler runs ...
            assert!(!si.is_pending(port));
            seen.push(port);
            // ... so an event arriving during the handler is delivered again, later.
            if port == 3 && seen.len() == 2 {
                si.set_pending(3);
            }
        });
        assert_eq!(seen, [1, 3, 65, 130, 3]);
        assert_eq!(n, 5);
        assert!(!si.upcall_pending());
        assert_eq!(si.pending_sel(), 0);
        assert!(!(0..NR_PORTS).any(|p| si.is_pending(p)));
    }

    #[test]
    fn drain_is_bounded_when_events_keep_coming() {
        let xen = FakeXen::new(&[]);
        let fired = FiredSet::new();
        let (d, si) = (xen.dom(0), xen.shared_info(0));
        let ev = EventChannels::new(&d, si, &fired);
        si.set_pending(7);
        // A hypervisor that re-raises the port every time it is handled.
        let n = ev.drain(|p| {
            si.set_pending(p);
        });
        assert_eq!(n, MAX_DRAIN_ROUNDS);
        // What is left over is not lost: still pending, upcall still flagged.
        assert!(si.is_pending(7));
        assert!(si.upcall_pending());
        let mut seen = Vec::new();
        assert_eq!(ev.drain(|p| seen.push(p)), 1);
        assert_eq!(seen, [7]);
    }

    #[test]
    fn masked_port_is_not_drained_until_unmasked() {
        let xen = FakeXen::new(&[(10, 11)]);
        let (fa, fb) = (FiredSet::new(), FiredSet::new());
        let da = xen.dom(0);
        let (db, sb) = (xen.dom(1), xen.shared_info(1));
        let a = EventChannels::new(&da, xen.shared_info(0), &fa);
        let b = EventChannels::new(&db, sb, &fb);
        b.clear_initial(11);
        b.drain(|_| {});
        b.mask(11).unwrap();
        assert!(b.is_masked(11));
        a.send(10).unwrap();
        // Pending, but no selector bit and no upcall.
        assert!(b.is_pending(11));
        assert!(!sb.upcall_pending());
        assert_eq!(b.drain(|p| panic!("masked port {p} delivered")), 0);
        assert!(b.is_pending(11));
        // Unmask goes through the hypervisor, which re-raises the event.
        b.unmask(11).unwrap();
        assert_eq!(xen.calls(1), vec![Call::Unmask(11)]);
        assert!(sb.upcall_pending());
        let mut seen = Vec::new();
        b.drain(|p| seen.push(p));
        assert_eq!(seen, [11]);
        assert_eq!(b.mask(NR_PORTS), Err(Errno::EINVAL));
    }

    #[test]
    fn wait_tolerates_spurious_wakeups_and_remembers_other_ports() {
        let xen = FakeXen::new(&[(10, 11), (20, 21)]);
        let fb = FiredSet::new();
        let (db, sb) = (xen.dom(1), xen.shared_info(1));
        let b = EventChannels::new(&db, sb, &fb);
        assert!(b.clear_initial(11) && b.clear_initial(21));
        xen.script(
            1,
            [
                Wake::Spurious,
                Wake::PeerSends(20),
                Wake::Spurious,
                Wake::PeerSends(10),
            ],
        );
        b.wait(11).unwrap();
        assert!(!b.is_pending(11));
        let polls = xen
            .calls(1)
            .iter()
            .filter(|c| matches!(c, Call::Poll { ports, timeout: 0 } if ports == &[11]))
            .count();
        assert_eq!(polls, 4);
        // Port 21 fired meanwhile: consumed from shared_info, remembered, reported once.
        assert!(!sb.is_pending(21));
        assert!(b.is_pending(21));
        assert_eq!(b.take_fired(), Some(21));
        assert_eq!(b.take_fired(), None);
    }

    #[test]
    fn wait_returns_at_once_when_the_port_already_fired() {
        let xen = FakeXen::new(&[(10, 11)]);
        let fb = FiredSet::new();
        let db = xen.dom(1);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        // The bind-time event, not cleared: wait consumes it without sleeping.
        b.wait(11).unwrap();
        assert!(xen.calls(1).is_empty());
        // A remembered port is consumed too.
        fb.insert(11);
        b.wait(11).unwrap();
        assert!(xen.calls(1).is_empty());
        assert!(fb.is_empty());
    }

    #[test]
    fn wait_sees_a_masked_port() {
        let xen = FakeXen::new(&[(10, 11)]);
        let fb = FiredSet::new();
        let db = xen.dom(1);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        b.clear_initial(11);
        b.mask(11).unwrap();
        xen.script(1, [Wake::PeerSends(10)]);
        b.wait(11).unwrap();
        assert!(!b.is_pending(11));
    }

    #[test]
    fn wait_any_reports_the_port_and_rejects_bad_input() {
        let xen = FakeXen::new(&[(10, 11), (20, 21)]);
        let fb = FiredSet::new();
        let db = xen.dom(1);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        b.clear_initial(11);
        b.clear_initial(21);
        xen.script(1, [Wake::Spurious, Wake::PeerSends(20)]);
        assert_eq!(b.wait_any(&[11, 21]), Ok(21));
        assert_eq!(b.wait_any(&[]), Err(Errno::EINVAL));
        // An invalid port: the hypervisor's EINVAL ends the wait instead of a hang.
        assert_eq!(b.wait(999), Err(Errno::EINVAL));
        assert_eq!(b.wait(NR_PORTS + 5), Err(Errno::EINVAL));
    }

    #[test]
    fn drain_delivers_remembered_ports_first() {
        let xen = FakeXen::new(&[]);
        let fired = FiredSet::new();
        let (d, si) = (xen.dom(0), xen.shared_info(0));
        let ev = EventChannels::new(&d, si, &fired);
        si.set_pending(5);
        assert_eq!(ev.collect(), 1);
        si.set_pending(2);
        let mut seen = Vec::new();
        assert_eq!(ev.drain(|p| seen.push(p)), 2);
        assert_eq!(seen, [5, 2]);
        assert!(fired.is_empty());
    }

    #[test]
    fn block_returns_when_an_upcall_is_pending() {
        let xen = FakeXen::new(&[(10, 11)]);
        let fb = FiredSet::new();
        let db = xen.dom(1);
        let b = EventChannels::new(&db, xen.shared_info(1), &fb);
        // upcall_pending is set by the bind-time event: no sleep needed.
        b.block().unwrap();
        b.drain(|_| {});
        xen.script(1, [Wake::PeerSends(10)]);
        b.block().unwrap();
        assert_eq!(b.take_fired(), Some(11));
        assert_eq!(xen.calls(1), vec![Call::Block, Call::Block]);
    }

    #[test]
    fn wait_with_an_upcall_sleep_sleeps_until_the_interrupt() {
        let xen = FakeXen::new(&[(10, 11), (20, 21)]);
        let fb = FiredSet::new();
        let (db, sb) = (xen.dom(1), xen.shared_info(1));
        let wfi = FakeWfi { dom: db };
        let b = EventChannels::new(&db, sb, &fb).with_upcall_sleep(Some(&wfi));
        assert!(b.upcall_sleep().is_some());
        assert!(b.clear_initial(11) && b.clear_initial(21));
        // The bind-time upcall is still pending in the vGIC: the first wfi returns at
        // once and acknowledges it; then a spurious return, another port, our port.
        assert!(xen.ppi_pending(1));
        xen.script(
            1,
            [Wake::Spurious, Wake::PeerSends(20), Wake::PeerSends(10)],
        );
        b.wait(11).unwrap();
        assert_eq!(xen.calls(1), vec![Call::Wfi; 4]);
        assert!(!xen.ppi_pending(1));
        // Each event after a check raised its own interrupt (0→1 every time).
        assert_eq!(xen.injected(1), 3);
        assert_eq!(b.take_fired(), Some(21));
        assert_eq!(b.take_fired(), None);
    }

    #[test]
    fn an_event_between_the_check_and_the_sleep_is_not_lost() {
        let xen = FakeXen::new(&[(10, 11)]);
        let fb = FiredSet::new();
        let (da, db, sb) = (xen.dom(0), xen.dom(1), xen.shared_info(1));
        b_setup(&xen, &fb);
        // The peer sends right after the check, just before the guest executes wfi.
        struct Racy<'x> {
            peer: FakeDom<'x>,
            sent: Cell<bool>,
        }
        impl UpcallSleep for Racy<'_> {
            fn sleep_until_upcall(&self) {
                if !self.sent.replace(true) {
                    ops::evtchn_send(&self.peer, 10).unwrap();
                }
                self.peer.xen.wfi(1);
            }
        }
        let racy = Racy {
            peer: da,
            sent: Cell::new(false),
        };
        let b = EventChannels::new(&db, sb, &fb).with_upcall_sleep(Some(&racy));
        // No scripted wake-up: wfi returns only because the send injected the PPI, which
        // it did because the check had cleared evtchn_upcall_pending.
        b.wait(11).unwrap();
        // One wfi in b_setup, one in the wait.
        assert_eq!(xen.calls(1), vec![Call::Wfi, Call::Wfi]);
        assert_eq!(xen.injected(1), 2);
    }

    /// Domain 1 (port 11) after its bind-time event and upcall are consumed.
    fn b_setup(xen: &FakeXen, fb: &FiredSet) {
        let db = xen.dom(1);
        let b = EventChannels::new(&db, xen.shared_info(1), fb);
        assert!(b.clear_initial(11));
        assert_eq!(b.collect(), 0);
        xen.wfi(1); // acknowledges the bind-time PPI
        assert!(!xen.ppi_pending(1));
    }

    #[test]
    #[should_panic(expected = "no upcall is coming")]
    fn sleeping_without_clearing_upcall_pending_would_hang() {
        // The 0→1 rule that the driver's order exists for: while evtchn_upcall_pending
        // stays 1, a new event injects no interrupt and wfi never returns.
        let xen = FakeXen::new(&[(10, 11)]);
        let (da, si) = (xen.dom(0), xen.shared_info(1));
        xen.wfi(1); // the bind-time PPI; the flag stays set
        assert!(si.upcall_pending());
        si.clear_pending(11);
        ops::evtchn_send(&da, 10).unwrap();
        assert!(si.is_pending(11) && !xen.ppi_pending(1));
        xen.wfi(1);
    }

    #[test]
    fn a_masked_port_is_polled_even_with_an_upcall_sleep() {
        let xen = FakeXen::new(&[(10, 11), (20, 21)]);
        let fb = FiredSet::new();
        let db = xen.dom(1);
        let wfi = FakeWfi { dom: db };
        let b = EventChannels::new(&db, xen.shared_info(1), &fb).with_upcall_sleep(Some(&wfi));
        b.clear_initial(11);
        b.clear_initial(21);
        b.mask(11).unwrap();
        xen.script(1, [Wake::PeerSends(10)]);
        b.wait(11).unwrap();
        assert_eq!(
            xen.calls(1),
            vec![Call::Poll {
                ports: vec![11],
                timeout: 0
            }]
        );
        // One masked port among several: poll as well; ports >= 4096 are polled (EINVAL).
        xen.script(1, [Wake::PeerSends(20)]);
        assert_eq!(b.wait_any(&[11, 21]), Ok(21));
        assert_eq!(b.wait(NR_PORTS), Err(Errno::EINVAL));
        assert!(!xen.calls(1).contains(&Call::Wfi));
        // Unmasked again: the upcall path.
        b.unmask(11).unwrap();
        xen.script(1, [Wake::PeerSends(10)]);
        b.wait(11).unwrap();
        assert_eq!(xen.calls(1).last(), Some(&Call::Wfi));
    }

    #[test]
    fn fired_set() {
        let s = FiredSet::new();
        assert!(s.is_empty());
        assert!(s.insert(4095) && s.insert(0) && s.insert(64));
        assert!(!s.insert(NR_PORTS));
        assert!(s.contains(64) && !s.contains(63) && !s.contains(NR_PORTS));
        assert_eq!(std::format!("{s:?}"), "{0, 64, 4095}");
        assert!(s.remove(64) && !s.remove(64) && !s.remove(NR_PORTS));
        assert_eq!(s.pop(), Some(0));
        assert_eq!(s.pop(), Some(4095));
        assert_eq!(s.pop(), None);
        s.insert(9);
        s.clear();
        assert!(s.is_empty());
    }
}
