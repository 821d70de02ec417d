//! Counters: per event-channel port and per hypercall.

use crate::DomId;
use staticbus_abi::hypercall as hc;
use std::collections::BTreeMap;

/// Counters of one port of one domain, cumulative over the domain's restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Successful `EVTCHNOP_send` on this port (returned 0), dropped ones included.
    pub sent: u64,
    /// Sends on this port that were dropped because the port was only UNBOUND (its peer
    /// closed it or was destroyed): Xen returns 0 and delivers nothing.
    pub dropped: u64,
    /// Sends on this port whose target port was already pending (the event coalesced).
    pub coalesced: u64,
    /// Times this port's pending bit went 0→1 (`set_pending` that changed the bit): from
    /// a peer's send, or from binding (the bind-time pending bit, restarts).
    pub delivered: u64,
}

impl PortStats {
    fn is_zero(&self) -> bool {
        *self == PortStats::default()
    }
}

/// Counters of one kind of hypercall made by one domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls.
    pub calls: u64,
    /// Calls that returned a negative errno.
    pub errors: u64,
}

/// Key of [`Stats::hypercalls`] for a hypercall number the emulator does not know.
pub const OTHER_OP: u64 = u64::MAX;
/// Key of [`Stats::hypercalls`] for a sub-command above 15.
pub const OTHER_CMD: u32 = u32::MAX;

/// A snapshot of the hypervisor's counters ([`crate::Hypervisor::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per `(domain, port)` counters; ports whose counters are all zero are left out.
    pub ports: BTreeMap<(DomId, u32), PortStats>,
    /// Per `(domain, hypercall number, sub-command)` counters. Hypercall numbers other than
    /// `event_channel_op`, `sched_op`, `memory_op`, `console_io` and `xen_version` are
    /// counted under [`OTHER_OP`], sub-commands above 15 under [`OTHER_CMD`].
    pub hypercalls: BTreeMap<(DomId, u64, u32), CallStats>,
    /// Pending bits that went 0→1 because of a bind (boot, restart, runtime
    /// `EVTCHNOP_bind_interdomain`) rather than a send.
    pub bind_deliveries: u64,
    /// Hypercalls from a domain id that names no domain at all.
    pub rejected: u64,
}

impl Stats {
    /// Hypercalls made in total.
    pub fn total_hypercalls(&self) -> u64 {
        self.hypercalls.values().map(|c| c.calls).sum()
    }

    /// Sum of one counter over every port.
    pub fn sum(&self, f: impl Fn(&PortStats) -> u64) -> u64 {
        self.ports.values().map(f).sum()
    }

    /// Checks that the counters agree with each other: every delivery has a cause, and
    /// no port dropped or coalesced more events than it sent.
    pub fn check(&self) -> Result<(), String> {
        for ((d, p), s) in &self.ports {
            if s.dropped + s.coalesced > s.sent {
                return Err(format!("d{d} port {p}: dropped+coalesced > sent: {s:?}"));
            }
        }
        let from_sends = self.sum(|s| s.sent - s.dropped - s.coalesced);
        let delivered = self.sum(|s| s.delivered);
        if delivered != from_sends + self.bind_deliveries {
            return Err(format!(
                "delivered {delivered} != sent-dropped-coalesced {from_sends} + bind deliveries {}",
                self.bind_deliveries
            ));
        }
        Ok(())
    }
}

const OPS: [u64; 5] = [
    hc::EVENT_CHANNEL_OP,
    hc::SCHED_OP,
    hc::MEMORY_OP,
    hc::CONSOLE_IO,
    hc::XEN_VERSION,
];
const CMDS: usize = 17;
const SLOTS: usize = (OPS.len() + 1) * CMDS;

/// Per-domain hypercall counters in a fixed table (no allocation on the hot path).
#[derive(Clone, Debug)]
pub(crate) struct CallTable {
    slots: Box<[CallStats; SLOTS]>,
}

impl Default for CallTable {
    fn default() -> Self {
        CallTable {
            slots: Box::new([CallStats::default(); SLOTS]),
        }
    }
}

impl CallTable {
    pub(crate) fn count(&mut self, op: u64, cmd: u32, rc: i64) {
        let o = OPS.iter().position(|&x| x == op).unwrap_or(OPS.len());
        let c = (cmd as usize).min(CMDS - 1);
        let s = &mut self.slots[o * CMDS + c];
        s.calls += 1;
        if rc < 0 {
            s.errors += 1;
        }
    }

    pub(crate) fn export(&self, dom: DomId, out: &mut BTreeMap<(DomId, u64, u32), CallStats>) {
        for (i, s) in self.slots.iter().enumerate() {
            if s.calls == 0 {
                continue;
            }
            let (o, c) = (i / CMDS, i % CMDS);
            let op = OPS.get(o).copied().unwrap_or(OTHER_OP);
            let cmd = if c == CMDS - 1 { OTHER_CMD } else { c as u32 };
            out.insert((dom, op, cmd), *s);
        }
    }
}

/// Exports a domain's port counters.
pub(crate) fn export_ports(
    dom: DomId,
    ports: &[PortStats],
    out: &mut BTreeMap<(DomId, u32), PortStats>,
) {
    for (p, s) in ports.iter().enumerate() {
        if !s.is_zero() {
            out.insert((dom, p as u32), *s);
        }
    }
}
