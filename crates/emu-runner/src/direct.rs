//! Direct delivery of static inter-domain event channels (docs/adr/0009), the runner's
//! part: it creates the pages ([`staticbus_emu_wire::direct`]), hands each domain its
//! descriptors, and is the hypervisor's [`DirectLinks`]: on every bind of a static pair
//! it enables the receiver's entry, on every close (a destroy closes too) it folds what
//! was sent before and disables it. The per-channel counters of the summary are read
//! from the pages.

use staticbus_abi::shared_info::{Delivery, SharedInfo};
use staticbus_emu::{BootSpec, DirectLinks, DomId, Stats};
use staticbus_emu_wire::direct::{self as d, Entry};
use staticbus_emu_wire::{self as wire, SharedMem};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, RwLock};

use crate::runner::Mems;

/// One outbox: the runner's mapping (its memfd is the sender's read-write descriptor)
/// and the read-only reopening the receiver gets.
struct Outbox {
    mem: SharedMem,
    read_only: OwnedFd,
}

/// Counters of one direction of one static pair, accumulated over the receiver's
/// restarts (each restart gives it fresh inbox state).
#[derive(Default, Clone, Copy)]
struct Totals {
    folded: u64,
    delivered: u64,
    /// The entry's words when last read.
    last_folded: u32,
    last_delivered: u32,
}

/// One direction of a static pair: `(from, to)`, each `(domain, port)`.
type Link = ((DomId, u32), (DomId, u32));

/// Every page of direct delivery in a run.
pub(crate) struct Direct {
    /// `(sender, receiver)` → outbox.
    outboxes: HashMap<(DomId, DomId), Outbox>,
    /// Receiver → its inbox state (replaced on restart).
    states: RwLock<HashMap<DomId, SharedMem>>,
    /// Highest port of each domain (sizes the inbox state).
    max_port: HashMap<DomId, u32>,
    /// Every direction of every static pair between two domains: `(from, to)`.
    links: Vec<Link>,
    totals: Mutex<BTreeMap<Link, Totals>>,
    mems: Arc<Mems>,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("direct delivery: {what}: {e}")
}

impl Direct {
    /// The pages for `spec`'s static pairs between two different domains.
    pub(crate) fn new(spec: &BootSpec, mems: Arc<Mems>) -> Result<Direct, String> {
        let max_port: HashMap<DomId, u32> =
            spec.domains.iter().map(|d| (d.domid, d.max_port)).collect();
        let mut outboxes = HashMap::new();
        let mut links = Vec::new();
        if spec.static_evtchn {
            for p in &spec.evtchns {
                let (a, b) = (
                    (p.first.domid, p.first.port),
                    (p.second.domid, p.second.port),
                );
                if a.0 == b.0 {
                    continue;
                }
                links.push((a, b));
                links.push((b, a));
                for (s, r) in [(a.0, b.0), (b.0, a.0)] {
                    if outboxes.contains_key(&(s, r)) {
                        continue;
                    }
                    let len = d::outbox_len(max_port.get(&s).copied().unwrap_or(1023));
                    let mem = SharedMem::create(&format!("staticbus-outbox-d{s}-d{r}"), len)
                        .map_err(io("outbox"))?;
                    // The receiver's descriptor: opened read-only, so it cannot map the
                    // page writable; then no one but the runner's uid may open the
                    // memfd again (a sandboxed domain runs as another uid, so it cannot
                    // turn its read-only descriptor into a writable one through
                    // /proc/self/fd).
                    let path = format!("/proc/self/fd/{}", wire::raw(mem.fd()));
                    let read_only: OwnedFd = std::fs::File::open(&path)
                        .map_err(io("read-only reopen of an outbox"))?
                        .into();
                    rustix::fs::fchmod(mem.fd(), rustix::fs::Mode::empty())
                        .map_err(|e| format!("direct delivery: fchmod of an outbox: {e}"))?;
                    outboxes.insert((s, r), Outbox { mem, read_only });
                }
            }
        }
        let mut states = HashMap::new();
        for &(_, to) in &links {
            if let std::collections::hash_map::Entry::Vacant(v) = states.entry(to.0) {
                v.insert(new_state(to.0, &max_port)?);
            }
        }
        Ok(Direct {
            outboxes,
            states: RwLock::new(states),
            max_port,
            totals: Mutex::new(links.iter().map(|&l| (l, Totals::default())).collect()),
            links,
            mems,
        })
    }

    /// What domain `dom` is handed: the environment (name, value) and the descriptors it
    /// must inherit.
    pub(crate) fn handout(&self, dom: DomId) -> (Vec<(&'static str, String)>, Vec<RawFd>) {
        let (mut outs, mut ins, mut keep) = (Vec::new(), Vec::new(), Vec::new());
        let mut pairs: Vec<_> = self.outboxes.iter().collect();
        pairs.sort_by_key(|(k, _)| **k);
        for (&(s, r), o) in pairs {
            if s == dom {
                let fd = wire::raw(o.mem.fd());
                outs.push(format!("{r}={fd}"));
                keep.push(fd);
            }
            if r == dom {
                let fd = wire::raw(o.read_only.as_fd());
                ins.push(format!("{s}={fd}"));
                keep.push(fd);
            }
        }
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        let Some(state) = states.get(&dom) else {
            return (Vec::new(), Vec::new());
        };
        let fd = wire::raw(state.fd());
        keep.push(fd);
        (
            vec![
                (d::ENV_STATE, fd.to_string()),
                (d::ENV_OUTBOXES, outs.join(",")),
                (d::ENV_INBOXES, ins.join(",")),
            ],
            keep,
        )
    }

    /// Gives restarted domain `dom` fresh inbox state (before the hypervisor re-binds its
    /// pairs), keeping the counters of the old one in the totals.
    pub(crate) fn renew(&self, dom: DomId) -> Result<(), String> {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        if !states.contains_key(&dom) {
            return Ok(());
        }
        self.observe(&states);
        let fresh = new_state(dom, &self.max_port)?;
        states.insert(dom, fresh);
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (&(_, to), t) in totals.iter_mut() {
            if to.0 == dom {
                t.last_folded = 0;
                t.last_delivered = 0;
            }
        }
        Ok(())
    }

    /// Adds the pages' counters to the totals.
    fn observe(&self, states: &HashMap<DomId, SharedMem>) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (&(_, to), t) in totals.iter_mut() {
            let Some(e) = states.get(&to.0).and_then(|s| Entry::of(s.words32(), to.1)) else {
                continue;
            };
            let (f, dl) = (
                e.folded.load(std::sync::atomic::Ordering::SeqCst),
                e.delivered.load(std::sync::atomic::Ordering::SeqCst),
            );
            t.folded += u64::from(f.wrapping_sub(t.last_folded));
            t.delivered += u64::from(dl.wrapping_sub(t.last_delivered));
            t.last_folded = f;
            t.last_delivered = dl;
        }
    }

    /// Adds what was delivered directly to the hypervisor's counters: the sender's port
    /// `sent` (and `coalesced`: folded sends that found the bit set), the receiver's
    /// `delivered`. A receiver's inbox state is its own memory; counts it made up are
    /// clamped so the counters stay consistent ([`Stats::check`]).
    pub(crate) fn add_to(&self, stats: &mut Stats) {
        self.observe(&self.states.read().unwrap_or_else(|e| e.into_inner()));
        let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (&(from, to), t) in totals.iter() {
            let delivered = t.delivered.min(t.folded);
            if t.folded == 0 {
                continue;
            }
            let s = stats.ports.entry(from).or_default();
            s.sent += t.folded;
            s.coalesced += t.folded - delivered;
            stats.ports.entry(to).or_default().delivered += delivered;
        }
    }

    fn with_entry<R>(
        &self,
        from: (DomId, u32),
        to: (DomId, u32),
        f: impl FnOnce(&std::sync::atomic::AtomicU32, Entry<'_>) -> R,
    ) -> Option<R> {
        let o = self.outboxes.get(&(from.0, to.0))?;
        let counter = o.mem.words32().get(from.1 as usize)?;
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        let e = Entry::of(states.get(&to.0)?.words32(), to.1)?;
        Some(f(counter, e))
    }

    /// The number of links (directions of static pairs delivered directly).
    pub(crate) fn links(&self) -> usize {
        self.links.len()
    }
}

fn new_state(dom: DomId, max_port: &HashMap<DomId, u32>) -> Result<SharedMem, String> {
    let len = d::state_len(max_port.get(&dom).copied().unwrap_or(1023));
    SharedMem::create(&format!("staticbus-inbox-d{dom}"), len).map_err(io("inbox state"))
}

impl DirectLinks for Direct {
    fn bound(&self, from: (DomId, u32), to: (DomId, u32)) {
        self.with_entry(from, to, |counter, e| e.enable(counter));
    }

    fn unbound(&self, from: (DomId, u32), to: (DomId, u32)) -> bool {
        let mems = self.mems.clone();
        self.with_entry(from, to, |counter, e| {
            let mut up = false;
            d::fold(counter, e, || {
                up = mems.page(to.0).is_some_and(|m| {
                    SharedInfo::new(m.words()).set_pending(to.1) != Delivery::AlreadyPending
                });
                up
            });
            e.disable();
            up
        })
        .unwrap_or(false)
    }
}
