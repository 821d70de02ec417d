//! The guest side of direct delivery (docs/adr/0009): sends on static ports bump this
//! domain's outbox counter and wake the peer, with no hypercall; the peers' counters are
//! folded into this domain's own `shared_info` whenever the transport looks at it.

use staticbus_abi::shared_info::{Delivery, SharedInfo};
use staticbus_emu_wire::direct::{self as d, Entry, ReadOnlyMem, WaitWord};
use staticbus_emu_wire::{self as wire, SharedMem};
use staticbus_manifest::Manifest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

/// One static port this domain sends on directly.
#[derive(Debug)]
struct SendPort {
    /// Index into `Direct::outboxes`.
    outbox: usize,
    /// Index into `Direct::inboxes` of the same peer (its word 0 says whether it sleeps).
    inbox: usize,
    /// False once the domain closed the port: sends go back to the hypercall.
    live: AtomicBool,
}

/// One static port whose peer's counter this domain folds.
#[derive(Debug)]
struct Watch {
    port: u32,
    inbox: usize,
    /// The peer's port (the counter's index in its outbox).
    remote_port: u32,
}

/// A domain's direct-delivery state: its outboxes (one per peer, writable), the peers'
/// outboxes to it (read-only) and its inbox state (shared with the runner).
#[derive(Debug)]
pub(crate) struct Direct {
    outboxes: Vec<SharedMem>,
    inboxes: Vec<ReadOnlyMem>,
    state: SharedMem,
    sends: HashMap<u32, SendPort>,
    watches: Vec<Watch>,
}

impl Direct {
    /// From the runner's descriptors: `outboxes` and `inboxes` are `(peer domid, memory)`;
    /// the ports come from the manifest's static channels whose peer has both.
    pub(crate) fn new(
        manifest: &Manifest,
        outboxes: Vec<(u16, SharedMem)>,
        inboxes: Vec<(u16, ReadOnlyMem)>,
        state: SharedMem,
    ) -> Result<Direct, String> {
        let ports = manifest
            .evtchns
            .iter()
            .map(|e| (e.local_port, e.remote_domid, e.remote_port));
        Direct::from_ports(ports, outboxes, inboxes, state)
    }

    /// [`Direct::new`] with the static ports as `(local port, peer domid, peer port)`.
    pub(crate) fn from_ports(
        ports: impl Iterator<Item = (u32, u16, u32)>,
        outboxes: Vec<(u16, SharedMem)>,
        inboxes: Vec<(u16, ReadOnlyMem)>,
        state: SharedMem,
    ) -> Result<Direct, String> {
        let mut sends = HashMap::new();
        let mut watches = Vec::new();
        for (local_port, remote_domid, remote_port) in ports {
            let o = outboxes.iter().position(|(p, _)| *p == remote_domid);
            let i = inboxes.iter().position(|(p, _)| *p == remote_domid);
            let (Some(o), Some(i)) = (o, i) else { continue };
            if local_port == 0
                || remote_port == 0
                || local_port as usize >= outboxes[o].1.words32().len()
                || remote_port as usize >= inboxes[i].1.words32().len()
                || Entry::of(state.words32(), local_port).is_none()
            {
                return Err(format!(
                    "port {local_port} (peer d{remote_domid} port {remote_port}) lies beyond \
                     the direct-delivery pages"
                ));
            }
            sends.insert(
                local_port,
                SendPort {
                    outbox: o,
                    inbox: i,
                    live: AtomicBool::new(true),
                },
            );
            watches.push(Watch {
                port: local_port,
                inbox: i,
                remote_port,
            });
        }
        Ok(Direct {
            outboxes: outboxes.into_iter().map(|(_, m)| m).collect(),
            inboxes: inboxes.into_iter().map(|(_, m)| m).collect(),
            state,
            sends,
            watches,
        })
    }

    fn counter(&self, w: &Watch) -> &AtomicU32 {
        &self.inboxes[w.inbox].words32()[w.remote_port as usize]
    }

    fn entry(&self, port: u32) -> Entry<'_> {
        Entry::of(self.state.words32(), port).expect("checked in `new`")
    }

    /// `EVTCHNOP_send` on `port` if it is delivered directly: bumps the counter, wakes the
    /// peer if it sleeps, and returns `true`; `false` sends it through the hypervisor.
    pub(crate) fn send(&self, port: u32) -> bool {
        let Some(s) = self.sends.get(&port) else {
            return false;
        };
        if !s.live.load(SeqCst) {
            return false;
        }
        let w = &self.outboxes[s.outbox].words32()[port as usize];
        w.fetch_add(1, SeqCst);
        if self.inboxes[s.inbox].words32()[d::WAITING_WORD].load(SeqCst) != 0 {
            wire::wake(w);
        }
        true
    }

    /// The domain closes `port`: later sends on it take the hypercall (which answers as
    /// Xen does for a closed port); the runner stops its direct delivery.
    pub(crate) fn closing(&self, port: u32) {
        if let Some(s) = self.sends.get(&port) {
            s.live.store(false, SeqCst);
        }
    }

    /// Folds every peer's new sends into `si` (Xen's 2-level rules: pending bit, and
    /// unless masked the selector and `evtchn_upcall_pending` 0→1). Returns whether any
    /// port was raised.
    pub(crate) fn fold(&self, si: &SharedInfo<'_>) -> bool {
        let mut any = false;
        for w in &self.watches {
            any |= d::fold(self.counter(w), self.entry(w.port), || {
                si.set_pending(w.port) != Delivery::AlreadyPending
            });
        }
        any
    }

    /// This domain's threads that sleep: announced in word 0 of every outbox, so peers
    /// sending to it know to wake it (`+1` before the last check, `-1` after the sleep).
    pub(crate) fn announce_sleep(&self, sleeping: bool) {
        for o in &self.outboxes {
            let w = &o.words32()[d::WAITING_WORD];
            if sleeping {
                w.fetch_add(1, SeqCst);
            } else {
                w.fetch_sub(1, SeqCst);
            }
        }
    }

    /// The words to sleep on besides `events`: every enabled watch's counter, expected to
    /// hold what was folded (a disabled one is left out: a hostile peer may change it at
    /// will, and nothing it writes there counts).
    pub(crate) fn wait_words<'a>(&'a self, out: &mut Vec<WaitWord<'a>>) {
        for w in &self.watches {
            let e = self.entry(w.port);
            if e.enabled.load(SeqCst) != 0 {
                out.push(WaitWord {
                    word: self.counter(w),
                    expected: e.seen.load(SeqCst),
                });
            }
        }
    }

    /// The sum of the enabled watches' counters (for [`crate::EventWaiter::counter`]).
    pub(crate) fn counter_sum(&self) -> u32 {
        self.watches
            .iter()
            .filter(|w| self.entry(w.port).enabled.load(SeqCst) != 0)
            .fold(0u32, |a, w| a.wrapping_add(self.counter(w).load(SeqCst)))
    }

    /// The number of ports delivered directly.
    pub(crate) fn ports(&self) -> usize {
        self.watches.len()
    }
}
