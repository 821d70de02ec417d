//! The [`Hypervisor`]: the state behind one lock, the public operations, boot and
//! lifecycle.

use crate::errno::Errno;
use crate::hypercall::dispatch;
use crate::shm::{Regions, ShmError, ShmGrant};
use crate::spec::BootSpec;
use crate::state::{BoundPair, Dom, Effects, State};
use crate::stats::{export_ports, Stats};
use crate::{
    Console, DirectLinks, DomId, DomainState, EvtchnStat, Notify, PageMem, Policy, PortState,
};
use staticbus_abi::domid::DOMID_FIRST_RESERVED;
use staticbus_abi::{evtchn as ev, hypercall as hc};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Which step of binding failed ([`BootError::Evtchn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindStep {
    /// `evtchn_alloc_unbound` of the first end (Xen: `evtchn_alloc_unbound() failure`).
    AllocUnbound,
    /// `evtchn_bind_interdomain` of the second end (Xen: `evtchn_bind_interdomain()
    /// failure`).
    BindInterdomain,
    /// Re-binding a restarted domain's end.
    Restart,
}

/// Why [`Hypervisor::boot`] or [`Hypervisor::restart`] failed. At boot, Xen panics in every
/// one of these cases; the hypervisor is then left un-booted.
#[derive(Debug)]
pub enum BootError {
    /// `boot` was already called successfully.
    AlreadyBooted,
    /// `restart` before `boot`.
    NotBooted,
    /// `pages` does not have one page per domain.
    PageCount {
        /// Domains in the system.
        domains: usize,
        /// Pages given.
        pages: usize,
    },
    /// Two domains with one id, or an id reserved for Xen (`>= DOMID_FIRST_RESERVED`).
    DomainId {
        /// The id.
        domid: DomId,
    },
    /// A static pair names a domain index that does not exist (Xen: `evtchn: could not
    /// find domains`, `-EINVAL`).
    NoDomain {
        /// Index in `BootSpec::evtchns`.
        pair: usize,
    },
    /// `xen,enhanced = "enabled"` without dom0 (Xen 4.17–4.20: `At the moment, Xenstore
    /// support requires dom0 to be present`).
    XenstoreNeedsDom0 {
        /// The domain.
        domid: DomId,
    },
    /// Allocating the xenstore port failed.
    Xenstore {
        /// The domain.
        domid: DomId,
        /// Xen's error.
        err: Errno,
    },
    /// Binding a static pair failed (Xen: `... failure (Error -N)`, then `Could not set up
    /// domains evtchn`).
    Evtchn {
        /// Index in `BootSpec::evtchns`.
        pair: usize,
        /// Which step.
        step: BindStep,
        /// Xen's error (`rc = -err`).
        err: Errno,
    },
    /// Static shared memory could not be set up.
    Shm(ShmError),
    /// `restart` of a domain id the system does not have.
    UnknownDomain(DomId),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::AlreadyBooted => f.write_str("the hypervisor is already booted"),
            BootError::NotBooted => f.write_str("the hypervisor is not booted"),
            BootError::PageCount { domains, pages } => {
                write!(f, "{domains} domains but {pages} shared_info pages")
            }
            BootError::DomainId { domid } => {
                write!(f, "domain id {domid} is duplicate or reserved")
            }
            BootError::NoDomain { pair } => {
                write!(
                    f,
                    "static event channel {pair}: evtchn: could not find domains"
                )
            }
            BootError::XenstoreNeedsDom0 { domid } => write!(
                f,
                "d{domid}: At the moment, Xenstore support requires dom0 to be present"
            ),
            BootError::Xenstore { domid, err } => {
                write!(f, "d{domid}: xenstore event channel: error -{}", err.0)
            }
            BootError::Evtchn { pair, step, err } => {
                let what = match step {
                    BindStep::AllocUnbound => "evtchn_alloc_unbound()",
                    BindStep::BindInterdomain => "evtchn_bind_interdomain()",
                    BindStep::Restart => "re-binding after restart:",
                };
                write!(
                    f,
                    "static event channel {pair}: {what} failure (Error -{}) ",
                    err.0
                )
            }
            BootError::Shm(e) => e.fmt(f),
            BootError::UnknownDomain(d) => write!(f, "no domain d{d}"),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BootError::Shm(e) => Some(e),
            BootError::Evtchn { err, .. } | BootError::Xenstore { err, .. } => Some(err),
            _ => None,
        }
    }
}

impl From<ShmError> for BootError {
    fn from(e: ShmError) -> Self {
        BootError::Shm(e)
    }
}

/// The emulated hypervisor: every domain's port table and `shared_info`, the shared
/// regions, and the counters, behind one lock. See the crate documentation for the
/// semantics.
pub struct Hypervisor {
    state: Mutex<State>,
    notify: Arc<dyn Notify>,
    console: Arc<dyn Console>,
}

impl fmt::Debug for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Hypervisor")
            .field("policy", &st.policy)
            .field("booted", &st.booted)
            .field("domains", &st.doms.len())
            .finish_non_exhaustive()
    }
}

impl Hypervisor {
    /// A hypervisor with no domains yet.
    pub fn new(policy: Policy, notify: Arc<dyn Notify>, console: Arc<dyn Console>) -> Self {
        Hypervisor {
            state: Mutex::new(State::new(policy)),
            notify,
            console,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover anyway rather than panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flush(&self, fx: Effects) {
        for d in fx.woken() {
            self.notify.wake(d);
        }
        for (d, name, bytes) in &fx.console {
            self.console.write(*d, name, bytes);
        }
    }

    /// Boots `sys` as Xen does: creates every domain (`pages[i]` is the `shared_info` of
    /// `sys.domains[i]`; each is zeroed), allocates xenstore ports, sets up the shared
    /// regions (backed by memfds) and binds every static event-channel pair in order
    /// (`alloc_static_evtchn`, spec §1.3): the second end starts pending and is woken.
    pub fn boot(&self, sys: &BootSpec, pages: Vec<Arc<dyn PageMem>>) -> Result<(), BootError> {
        self.boot_inner(sys, pages, None)
    }

    /// [`Hypervisor::boot`] with regions built by the caller (e.g. with test backings,
    /// [`Regions::from_spec_with`]).
    pub fn boot_with_regions(
        &self,
        sys: &BootSpec,
        pages: Vec<Arc<dyn PageMem>>,
        regions: Regions,
    ) -> Result<(), BootError> {
        self.boot_inner(sys, pages, Some(regions))
    }

    fn boot_inner(
        &self,
        sys: &BootSpec,
        pages: Vec<Arc<dyn PageMem>>,
        regions: Option<Regions>,
    ) -> Result<(), BootError> {
        let mut fx = Effects::default();
        {
            let mut st = self.lock();
            if st.booted {
                return Err(BootError::AlreadyBooted);
            }
            if pages.len() != sys.domains.len() {
                return Err(BootError::PageCount {
                    domains: sys.domains.len(),
                    pages: pages.len(),
                });
            }
            let mut new = State::new(st.policy);
            new.xen = sys.xen;
            new.rejected = st.rejected;
            new.links = st.links.clone();
            // create_dom0, create_domUs: domains, zeroed shared_info, port 0 reserved.
            for (d, page) in sys.domains.iter().zip(pages) {
                if d.domid >= DOMID_FIRST_RESERVED || new.slot(d.domid).is_some() {
                    return Err(BootError::DomainId { domid: d.domid });
                }
                let at = d.domid as usize;
                if new.index.len() <= at {
                    new.index.resize(at + 1, 0);
                }
                new.index[at] = new.doms.len() as u32 + 1;
                let xenstore = !d.dom0 && d.xenstore;
                new.doms.push(Dom::new(
                    d.domid, &d.name, d.dom0, xenstore, d.max_port, page,
                ));
            }
            // The xenstore event channel of `xen,enhanced = "enabled"` domUs (4.17–4.20:
            // construct_domU, with dom0 required).
            let hwdom = sys.domains.iter().find(|d| d.dom0).map(|d| d.domid);
            for i in 0..new.doms.len() {
                if !new.doms[i].xenstore {
                    continue;
                }
                let domid = new.doms[i].id;
                let hw = hwdom.ok_or(BootError::XenstoreNeedsDom0 { domid })?;
                new.alloc_unbound(None, domid, hw, 0)
                    .map_err(|err| BootError::Xenstore { domid, err })?;
            }
            // process_shm.
            new.regions = match regions {
                Some(r) => r,
                None => Regions::from_spec(sys)?,
            };
            // alloc_static_evtchn.
            if sys.static_evtchn {
                for (k, p) in sys.evtchns.iter().enumerate() {
                    let (d1, d2) = (p.first.domid, p.second.domid);
                    if new.slot(d1).is_none() || new.slot(d2).is_none() {
                        return Err(BootError::NoDomain { pair: k });
                    }
                    let fail = |step| move |err| BootError::Evtchn { pair: k, step, err };
                    let p1 = new
                        .alloc_unbound(None, d1, d2, p.first.port)
                        .map_err(fail(BindStep::AllocUnbound))?;
                    let i2 = new.slot(d2).ok_or(BootError::NoDomain { pair: k })?;
                    // Xen binds to the port written in the tree, not to the one allocated
                    // (they differ only for port 0, which then fails with -EINVAL).
                    let p2 = new
                        .bind_interdomain(None, i2, p.second.port, d1, p.first.port, &mut fx)
                        .map_err(fail(BindStep::BindInterdomain))?;
                    new.pairs.push(BoundPair { d1, p1, d2, p2 });
                    new.static_bound(d1, p1, d2, p2);
                }
            }
            new.booted = true;
            *st = new;
        }
        self.flush(fx);
        Ok(())
    }

    /// Runs `f` for a running caller, counting the call under `(op, cmd)`.
    fn call<R>(
        &self,
        caller: DomId,
        op: u64,
        cmd: u32,
        f: impl FnOnce(&mut State, usize, &mut Effects) -> R,
        rc: impl Fn(&R) -> i64,
        esrch: impl FnOnce() -> R,
    ) -> R {
        let mut fx = Effects::default();
        let r = {
            let mut st = self.lock();
            match st.slot(caller) {
                None => {
                    st.rejected += 1;
                    esrch()
                }
                Some(i) => {
                    let r = if st.doms[i].running() {
                        f(&mut st, i, &mut fx)
                    } else {
                        esrch()
                    };
                    st.doms[i].calls.count(op, cmd, rc(&r));
                    r
                }
            }
        };
        self.flush(fx);
        r
    }

    fn evtchn_call<R>(
        &self,
        caller: DomId,
        cmd: u32,
        f: impl FnOnce(&mut State, usize, &mut Effects) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        self.call(
            caller,
            hc::EVENT_CHANNEL_OP,
            cmd,
            f,
            |r| r.as_ref().map_or_else(|e| e.ret(), |_| 0),
            || Err(Errno::ESRCH),
        )
    }

    /// The hypercall entry point, for hostile input: hypercall `op`, sub-command `cmd`,
    /// and the marshalled argument struct in `arg` (read from its first
    /// `size_of::<T>()` bytes, too short: `-EFAULT`; results are written back into `arg`
    /// on success). For `CONSOLEIO_write`, `arg` is the bytes to print. Returns 0 or a
    /// value, or `-errno`. A caller that is not running (or does not exist) gets
    /// `-ESRCH`. Never panics, never blocks.
    pub fn hypercall(&self, caller: DomId, op: u64, cmd: u32, arg: &mut [u8]) -> i64 {
        self.call(
            caller,
            op,
            cmd,
            |st, i, fx| dispatch(st, i, op, cmd, arg, fx),
            |&r| r,
            || Errno::ESRCH.ret(),
        )
    }

    /// `EVTCHNOP_send` on the caller's `port`.
    pub fn evtchn_send(&self, caller: DomId, port: u32) -> Result<(), Errno> {
        self.evtchn_call(caller, ev::OP_SEND, |st, i, fx| st.send(i, port, fx))
    }

    /// `EVTCHNOP_status` of `(dom, port)` (`dom` may be `DOMID_SELF`).
    pub fn evtchn_status(&self, caller: DomId, dom: DomId, port: u32) -> Result<EvtchnStat, Errno> {
        self.evtchn_call(caller, ev::OP_STATUS, |st, i, _| st.status(i, dom, port))
    }

    /// `EVTCHNOP_close` of the caller's `port`.
    pub fn evtchn_close(&self, caller: DomId, port: u32) -> Result<(), Errno> {
        self.evtchn_call(caller, ev::OP_CLOSE, |st, i, fx| st.close(i, port, fx))
    }

    /// `EVTCHNOP_unmask` of the caller's `port`.
    pub fn evtchn_unmask(&self, caller: DomId, port: u32) -> Result<(), Errno> {
        self.evtchn_call(caller, ev::OP_UNMASK, |st, i, fx| st.unmask(i, port, fx))
    }

    /// `EVTCHNOP_alloc_unbound`: a new port in `dom` (normally `DOMID_SELF`) that
    /// `remote_dom` may bind to; returns the port.
    pub fn evtchn_alloc_unbound(
        &self,
        caller: DomId,
        dom: DomId,
        remote_dom: DomId,
    ) -> Result<u32, Errno> {
        self.evtchn_call(caller, ev::OP_ALLOC_UNBOUND, |st, i, _| {
            st.alloc_unbound(Some(i), dom, remote_dom, 0)
        })
    }

    /// `EVTCHNOP_bind_interdomain`: binds a new port of the caller to `(remote_dom,
    /// remote_port)`, which must be UNBOUND for the caller; returns the local port (marked
    /// pending).
    pub fn evtchn_bind_interdomain(
        &self,
        caller: DomId,
        remote_dom: DomId,
        remote_port: u32,
    ) -> Result<u32, Errno> {
        self.evtchn_call(caller, ev::OP_BIND_INTERDOMAIN, |st, i, fx| {
            st.bind_interdomain(Some(i), i, 0, remote_dom, remote_port, fx)
        })
    }

    /// Xen's domain destroy: every port closed (each peer's port falls back to UNBOUND,
    /// remote = `dom`), the `shared_info` page released, shared-memory references
    /// dropped. Nothing happens for a destroyed or unknown domain.
    pub fn destroy(&self, dom: DomId) {
        let mut fx = Effects::default();
        {
            let mut st = self.lock();
            if let Some(i) = st.slot(dom) {
                st.destroy(i, &mut fx);
            }
        }
        self.flush(fx);
    }

    /// Sets up direct delivery of the static pairs between two different domains
    /// ([`DirectLinks`]; docs/adr/0009). Call before [`Hypervisor::boot`]: every static
    /// pair the boot binds, and every one a restart re-binds, is announced with
    /// [`DirectLinks::bound`], each close of one (also by a destroy) with
    /// [`DirectLinks::unbound`].
    pub fn set_direct_links(&self, links: Arc<dyn DirectLinks>) {
        self.lock().links = Some(links);
    }

    /// Marks a running domain crashed (Xen's `domain_crash`; the runner calls it when the
    /// domain process dies without `SCHEDOP_shutdown`). Its ports stay until
    /// [`Hypervisor::destroy`].
    pub fn crash(&self, dom: DomId) {
        let mut st = self.lock();
        if let Some(i) = st.slot(dom) {
            if st.doms[i].running() {
                st.doms[i].state = DomainState::Crashed;
            }
        }
    }

    /// Beyond Xen: re-creates `dom` (destroying it first if it still exists) with the
    /// clean `shared_info` `page`, its xenstore port if it has one, its regions (same
    /// memory, contents kept) and its static channels re-bound: each peer port that is
    /// UNBOUND for `dom` is bound, the restarted end second (pending), and the peer's port
    /// is marked pending too; see the crate documentation.
    pub fn restart(&self, dom: DomId, page: Arc<dyn PageMem>) -> Result<(), BootError> {
        let mut fx = Effects::default();
        let r = (|| {
            let mut st = self.lock();
            if !st.booted {
                return Err(BootError::NotBooted);
            }
            let i = st.slot(dom).ok_or(BootError::UnknownDomain(dom))?;
            st.destroy(i, &mut fx);
            st.doms[i].create(page);
            if st.doms[i].xenstore {
                if let Some(hw) = st.doms.iter().find(|d| d.control).map(|d| d.id) {
                    st.alloc_unbound(None, dom, hw, 0)
                        .map_err(|err| BootError::Xenstore { domid: dom, err })?;
                }
            }
            st.regions.regrant(dom)?;
            st.rebind(i, &mut fx)
                .map_err(|(pair, err)| BootError::Evtchn {
                    pair,
                    step: BindStep::Restart,
                    err,
                })
        })();
        self.flush(fx);
        r
    }

    /// The state of a domain, `None` if the system has no such domain.
    pub fn state(&self, dom: DomId) -> Option<DomainState> {
        let st = self.lock();
        st.slot(dom).map(|i| st.doms[i].state)
    }

    /// Every domain: id, name, state.
    pub fn domains(&self) -> Vec<(DomId, String, DomainState)> {
        let st = self.lock();
        st.doms
            .iter()
            .map(|d| (d.id, d.name.to_string(), d.state))
            .collect()
    }

    /// The state of one port of an existing domain (`None`: no such domain, destroyed, or
    /// port beyond its limit).
    pub fn port_state(&self, dom: DomId, port: u32) -> Option<PortState> {
        let st = self.lock();
        let i = st.by_id(dom)?;
        st.doms[i].ports.get(port as usize).copied()
    }

    /// The ports of an existing domain that are not free (port 0 included).
    pub fn ports(&self, dom: DomId) -> Vec<(u32, PortState)> {
        let st = self.lock();
        let Some(i) = st.by_id(dom) else {
            return Vec::new();
        };
        st.doms[i]
            .ports
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != PortState::Free)
            .map(|(p, s)| (p as u32, *s))
            .collect()
    }

    /// What an existing domain is granted of the shared regions (its own nodes only),
    /// to hand to its process. Empty for a destroyed or unknown domain.
    pub fn shm_grants(&self, dom: DomId) -> Vec<ShmGrant> {
        let st = self.lock();
        if st.by_id(dom).is_none() {
            return Vec::new();
        }
        st.regions.grants_for(dom)
    }

    /// Runs `f` on the shared regions (e.g. [`Regions::handles_for`] to pass borrowed fds
    /// to a process, or [`Regions::refs`]). The hypervisor is locked meanwhile: do not
    /// call back into it from `f`.
    pub fn with_regions<R>(&self, f: impl FnOnce(&Regions) -> R) -> R {
        f(&self.lock().regions)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let mut s = Stats {
            bind_deliveries: st.bind_deliveries,
            rejected: st.rejected,
            ..Stats::default()
        };
        for d in &st.doms {
            export_ports(d.id, d.port_stats(), &mut s.ports);
            d.calls.export(d.id, &mut s.hypercalls);
        }
        s
    }

    /// Checks the internal invariants: port tables (port 0 reserved, every INTERDOMAIN
    /// port's peer exists and points back, destroyed domains own nothing), region
    /// references against the existing domains, and the counters ([`Stats::check`]).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.lock().check()?;
        self.stats().check()
    }
}
