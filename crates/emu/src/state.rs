//! The hypervisor state behind the lock: domains, their port tables, and the event-channel
//! core (`xen/common/event_channel.c`, 4.17–4.20).

use crate::errno::Errno;
use crate::shm::Regions;
use crate::spec::XenRelease;
use crate::stats::{CallTable, PortStats};
use crate::{DirectLinks, DomId, DomainState, EvtchnStat, PageMem, Policy, PortState};
use staticbus_abi::domid::DOMID_SELF;
use staticbus_abi::shared_info::{Delivery, SharedInfo};
use std::sync::Arc;

/// `EVTCHNS_PER_BUCKET`: `PAGE_SIZE / next_power_of_2(sizeof(struct evtchn))`, and
/// `struct evtchn` is 64 bytes (`__aligned(64)`) on arm64. Ports are *valid*
/// (`port_is_valid`) below `d->valid_evtchns`, which starts at one bucket and grows a
/// bucket at a time up to the highest port ever allocated.
pub(crate) const EVTCHNS_PER_BUCKET: u32 = 64;

/// `DOMID_IDLE`: `current` while Xen builds the domains at boot.
pub(crate) const DOMID_IDLE: DomId = 0x7FFF;

/// Who is calling: a domain (index into [`State::doms`]) or Xen itself at boot (the
/// privileged idle domain: XSM lets it do anything).
pub(crate) type Cur = Option<usize>;

/// One domain.
pub(crate) struct Dom {
    pub(crate) id: DomId,
    pub(crate) name: Arc<str>,
    /// Hardware and control domain (dom0): privileged for XSM.
    pub(crate) control: bool,
    /// `xen,enhanced = "enabled"`: Xen allocates a xenstore port at creation.
    pub(crate) xenstore: bool,
    /// Highest port the domain can own (1023 domU, 4095 dom0).
    pub(crate) max_port: u32,
    pub(crate) state: DomainState,
    pub(crate) page: Option<Arc<dyn PageMem>>,
    /// `max_port + 1` entries.
    pub(crate) ports: Box<[PortState]>,
    /// `d->valid_evtchns`.
    pub(crate) valid: u32,
    /// `shared_info` was mapped with `XENMEM_add_to_physmap`.
    pub(crate) shinfo_mapped: bool,
    /// `d->shutdown_code` (`SCHEDOP_shutdown_code`, or the first shutdown reason).
    pub(crate) shutdown_code: Option<u8>,
    /// `d->pbuf`, the console line buffer.
    pub(crate) pbuf: Vec<u8>,
    /// Cumulative over restarts; `max_port + 1` entries.
    pub(crate) port_stats: Box<[PortStats]>,
    /// One past the highest port whose counters moved (bounds the exports).
    pub(crate) stats_hi: u32,
    pub(crate) calls: CallTable,
}

impl Dom {
    pub(crate) fn new(
        id: DomId,
        name: &str,
        control: bool,
        xenstore: bool,
        max_port: u32,
        page: Arc<dyn PageMem>,
    ) -> Dom {
        let n = max_port as usize + 1;
        let mut d = Dom {
            id,
            name: Arc::from(name),
            control,
            xenstore,
            max_port,
            state: DomainState::Destroyed,
            page: None,
            ports: vec![PortState::Free; n].into_boxed_slice(),
            valid: 0,
            shinfo_mapped: false,
            shutdown_code: None,
            pbuf: Vec::new(),
            port_stats: vec![PortStats::default(); n].into_boxed_slice(),
            stats_hi: 0,
            calls: CallTable::default(),
        };
        d.create(page);
        d
    }

    /// Domain creation (`domain_create` + `evtchn_init`): a zeroed `shared_info`, port 0
    /// reserved, one bucket of valid ports.
    pub(crate) fn create(&mut self, page: Arc<dyn PageMem>) {
        SharedInfo::new(page.words()).clear();
        self.page = Some(page);
        self.ports.fill(PortState::Free);
        self.ports[0] = PortState::Reserved;
        self.valid = EVTCHNS_PER_BUCKET.min(self.ports.len() as u32);
        self.state = DomainState::Running;
        self.shinfo_mapped = false;
        self.shutdown_code = None;
        self.pbuf.clear();
    }

    pub(crate) fn exists(&self) -> bool {
        self.state != DomainState::Destroyed
    }

    pub(crate) fn running(&self) -> bool {
        self.state == DomainState::Running
    }

    fn port(&self, p: u32) -> Option<PortState> {
        // `port_is_valid`: below `valid_evtchns`.
        (p < self.valid).then(|| self.ports[p as usize])
    }

    /// The counters of `port`, which must be below `max_port + 1`.
    fn stats_mut(&mut self, port: u32) -> &mut PortStats {
        self.stats_hi = self.stats_hi.max(port + 1);
        &mut self.port_stats[port as usize]
    }

    /// The counters of the ports that ever moved.
    pub(crate) fn port_stats(&self) -> &[PortStats] {
        &self.port_stats[..self.stats_hi as usize]
    }

    pub(crate) fn si(&self) -> Option<SharedInfo<'_>> {
        self.page.as_ref().map(|p| SharedInfo::new(p.words()))
    }
}

/// Domains to wake and console output, acted on after the lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    wakes: [DomId; 2],
    nwakes: usize,
    more: Vec<DomId>,
    pub(crate) console: Vec<(DomId, Arc<str>, Vec<u8>)>,
}

impl Effects {
    pub(crate) fn wake(&mut self, d: DomId) {
        if self.wakes[..self.nwakes].contains(&d) || self.more.contains(&d) {
            return;
        }
        if self.nwakes < self.wakes.len() {
            self.wakes[self.nwakes] = d;
            self.nwakes += 1;
        } else {
            self.more.push(d);
        }
    }

    pub(crate) fn woken(&self) -> impl Iterator<Item = DomId> + '_ {
        self.wakes[..self.nwakes].iter().chain(&self.more).copied()
    }
}

/// A static pair as bound at boot (actual ports), for restarts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BoundPair {
    pub(crate) d1: DomId,
    pub(crate) p1: u32,
    pub(crate) d2: DomId,
    pub(crate) p2: u32,
}

/// Everything behind the hypervisor's lock.
pub(crate) struct State {
    pub(crate) policy: Policy,
    pub(crate) booted: bool,
    pub(crate) xen: XenRelease,
    pub(crate) doms: Vec<Dom>,
    /// `domid` → index + 1 into `doms` (0: none).
    pub(crate) index: Vec<u32>,
    pub(crate) pairs: Vec<BoundPair>,
    pub(crate) regions: Regions,
    pub(crate) bind_deliveries: u64,
    pub(crate) rejected: u64,
    /// Direct delivery of static pairs ([`DirectLinks`]), if the runner set it up.
    pub(crate) links: Option<Arc<dyn DirectLinks>>,
}

impl State {
    pub(crate) fn new(policy: Policy) -> State {
        State {
            policy,
            booted: false,
            xen: XenRelease::V4_20,
            doms: Vec::new(),
            index: Vec::new(),
            pairs: Vec::new(),
            regions: Regions::default(),
            bind_deliveries: 0,
            rejected: 0,
            links: None,
        }
    }

    /// The slot of `id`, whatever its state.
    pub(crate) fn slot(&self, id: DomId) -> Option<usize> {
        match self.index.get(id as usize) {
            Some(&i) if i != 0 => Some(i as usize - 1),
            _ => None,
        }
    }

    /// `rcu_lock_domain_by_id`: an existing (not destroyed) domain.
    pub(crate) fn by_id(&self, id: DomId) -> Option<usize> {
        self.slot(id).filter(|&i| self.doms[i].exists())
    }

    /// `rcu_lock_domain_by_any_id`: `DOMID_SELF` is the caller.
    pub(crate) fn by_any_id(&self, id: DomId, cur: Cur) -> Option<usize> {
        if id == DOMID_SELF {
            cur
        } else {
            self.by_id(id)
        }
    }

    fn cur_id(&self, cur: Cur) -> DomId {
        cur.map_or(DOMID_IDLE, |c| self.doms[c].id)
    }

    fn privileged(&self, cur: Cur) -> bool {
        cur.is_none_or(|c| self.doms[c].control)
    }

    /// `xsm_default_action(XSM_TARGET, current, d)` of the dummy policy.
    pub(crate) fn xsm_target(&self, cur: Cur, d: usize) -> Result<(), Errno> {
        if cur == Some(d) || self.privileged(cur) {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    }

    /// SILO's `silo_mode_dom_check(ldom, rdom)`.
    fn silo_ok(&self, cur: Cur, l: usize, r: usize) -> bool {
        self.privileged(cur) || self.doms[l].control || self.doms[r].control || l == r
    }

    /// `evtchn_allocate_port`.
    pub(crate) fn allocate_port(&mut self, d: usize, port: u32) -> Result<(), Errno> {
        let dom = &mut self.doms[d];
        if port > dom.max_port {
            return Err(Errno::ENOSPC);
        }
        if port < dom.valid {
            if dom.ports[port as usize] != PortState::Free {
                return Err(Errno::EBUSY);
            }
        } else {
            // Allocate buckets up to the one holding `port`.
            let top = (port / EVTCHNS_PER_BUCKET + 1) * EVTCHNS_PER_BUCKET;
            dom.valid = top.min(dom.ports.len() as u32);
        }
        Ok(())
    }

    /// `get_free_port`: the lowest free port, allocating buckets as needed.
    fn get_free_port(&mut self, d: usize) -> Result<u32, Errno> {
        let max = self.doms[d].max_port;
        // Fast path over the valid ports; the first port past them is allocatable.
        let dom = &self.doms[d];
        let start = match dom.ports[..dom.valid as usize]
            .iter()
            .position(|p| *p == PortState::Free)
        {
            Some(p) => p as u32,
            None => dom.valid,
        };
        for port in start..=max {
            match self.allocate_port(d, port) {
                Ok(()) => return Ok(port),
                Err(Errno::EBUSY) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ENOSPC)
    }

    /// `evtchn_get_port`: `port`, or the lowest free one if it is 0.
    fn get_port(&mut self, d: usize, port: u32) -> Result<u32, Errno> {
        if port != 0 {
            self.allocate_port(d, port).map(|()| port)
        } else {
            self.get_free_port(d)
        }
    }

    /// `evtchn_port_set_pending` through the 2-level ABI, with the counters and the wake.
    pub(crate) fn set_pending(&mut self, d: usize, port: u32, fx: &mut Effects) -> Delivery {
        let dom = &mut self.doms[d];
        let Some(si) = dom.page.as_ref().map(|p| SharedInfo::new(p.words())) else {
            return Delivery::AlreadyPending;
        };
        let r = si.set_pending(port);
        if r != Delivery::AlreadyPending {
            dom.stats_mut(port).delivered += 1;
            // SCHEDOP_poll wakes on a masked port too: wake whenever the bit went 0→1.
            fx.wake(dom.id);
        }
        r
    }

    /// A bind-time `set_pending` (counted apart from sends).
    fn bind_pending(&mut self, d: usize, port: u32, fx: &mut Effects) {
        if self.set_pending(d, port, fx) != Delivery::AlreadyPending {
            self.bind_deliveries += 1;
        }
    }

    /// `evtchn_alloc_unbound(alloc, port)`.
    pub(crate) fn alloc_unbound(
        &mut self,
        cur: Cur,
        dom: DomId,
        remote_dom: DomId,
        port: u32,
    ) -> Result<u32, Errno> {
        let d = self.by_any_id(dom, cur).ok_or(Errno::ESRCH)?;
        let port = self.get_port(d, port)?;
        // xsm_evtchn_unbound(XSM_TARGET, d, chn, remote_dom)
        if self.policy == Policy::Silo {
            let d2 = self.by_any_id(remote_dom, cur).ok_or(Errno::ESRCH)?;
            if !self.silo_ok(cur, d, d2) {
                return Err(Errno::EPERM);
            }
        }
        self.xsm_target(cur, d)?;
        let remote = if remote_dom == DOMID_SELF {
            self.cur_id(cur)
        } else {
            remote_dom
        };
        self.doms[d].ports[port as usize] = PortState::Unbound { remote };
        Ok(port)
    }

    /// `evtchn_bind_interdomain(bind, ld, lport)`: binds `ld`'s `lport` (0: any free
    /// port) to `(remote_dom, rport)`, which must be UNBOUND for `ld`; the local port is
    /// marked pending.
    pub(crate) fn bind_interdomain(
        &mut self,
        cur: Cur,
        ld: usize,
        lport: u32,
        remote_dom: DomId,
        rport: u32,
        fx: &mut Effects,
    ) -> Result<u32, Errno> {
        let rd = self.by_any_id(remote_dom, cur).ok_or(Errno::ESRCH)?;
        let lport = self.get_port(ld, lport)?;
        let lid = self.doms[ld].id;
        match self.doms[rd].port(rport) {
            Some(PortState::Unbound { remote }) if remote == lid => {}
            _ => return Err(Errno::EINVAL),
        }
        // xsm_evtchn_interdomain(XSM_HOOK, ld, lchn, rd, rchn)
        if self.policy == Policy::Silo && !self.silo_ok(cur, ld, rd) {
            return Err(Errno::EPERM);
        }
        let rid = self.doms[rd].id;
        self.doms[ld].ports[lport as usize] = PortState::Interdomain {
            remote_dom: rid,
            remote_port: rport,
        };
        self.doms[rd].ports[rport as usize] = PortState::Interdomain {
            remote_dom: lid,
            remote_port: lport,
        };
        // "We may have lost notifications on the remote unbound port": Xen conservatively
        // marks the local port pending.
        self.bind_pending(ld, lport, fx);
        Ok(lport)
    }

    /// `evtchn_free`: clears the pending bit and frees the port.
    fn free_port(&mut self, d: usize, port: u32) {
        let dom = &mut self.doms[d];
        if let Some(si) = dom.si() {
            si.clear_pending(port);
        }
        dom.ports[port as usize] = PortState::Free;
    }

    /// `evtchn_close(d1, port1, guest)`.
    pub(crate) fn close(&mut self, d1: usize, port1: u32, fx: &mut Effects) -> Result<(), Errno> {
        match self.doms[d1].port(port1) {
            None | Some(PortState::Free) | Some(PortState::Reserved) => Err(Errno::EINVAL),
            Some(PortState::Unbound { .. }) => {
                self.free_port(d1, port1);
                Ok(())
            }
            Some(PortState::Interdomain {
                remote_dom,
                remote_port,
            }) => {
                let id1 = self.doms[d1].id;
                self.static_unbound(id1, port1, remote_dom, remote_port, fx);
                if let Some(d2) = self.by_id(remote_dom) {
                    debug_assert_eq!(
                        self.doms[d2].ports[remote_port as usize],
                        PortState::Interdomain {
                            remote_dom: id1,
                            remote_port: port1
                        }
                    );
                    self.doms[d2].ports[remote_port as usize] = PortState::Unbound { remote: id1 };
                }
                self.free_port(d1, port1);
                Ok(())
            }
        }
    }

    /// `evtchn_send(ld, lport)`.
    pub(crate) fn send(&mut self, ld: usize, lport: u32, fx: &mut Effects) -> Result<(), Errno> {
        match self.doms[ld].port(lport) {
            Some(PortState::Interdomain {
                remote_dom,
                remote_port,
            }) => {
                let coalesced = match self.by_id(remote_dom) {
                    Some(rd) => self.set_pending(rd, remote_port, fx) == Delivery::AlreadyPending,
                    None => true,
                };
                let s = self.doms[ld].stats_mut(lport);
                s.sent += 1;
                if coalesced {
                    s.coalesced += 1;
                }
                Ok(())
            }
            Some(PortState::Unbound { .. }) => {
                // "silently drop the notification"
                let s = self.doms[ld].stats_mut(lport);
                s.sent += 1;
                s.dropped += 1;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `evtchn_status`.
    pub(crate) fn status(&self, cur: usize, dom: DomId, port: u32) -> Result<EvtchnStat, Errno> {
        let d = self.by_any_id(dom, Some(cur)).ok_or(Errno::ESRCH)?;
        let st = self.doms[d].port(port).ok_or(Errno::EINVAL)?;
        self.xsm_target(Some(cur), d)?;
        Ok(match st {
            PortState::Free | PortState::Reserved => EvtchnStat::Closed,
            PortState::Unbound { remote } => EvtchnStat::Unbound { remote_dom: remote },
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => EvtchnStat::Interdomain {
                remote_dom,
                remote_port,
            },
        })
    }

    /// `evtchn_unmask`: 0 for any valid port; the 2-level unmask (clear the mask bit, and
    /// if it was set and the port is pending, re-raise) only for a usable port.
    pub(crate) fn unmask(&mut self, d: usize, port: u32, fx: &mut Effects) -> Result<(), Errno> {
        let st = self.doms[d].port(port).ok_or(Errno::EINVAL)?;
        if matches!(
            st,
            PortState::Unbound { .. } | PortState::Interdomain { .. }
        ) {
            let dom = &self.doms[d];
            if let Some(si) = dom.si() {
                // evtchn_2l_unmask re-raises only if its test_and_clear found the bit set.
                if si.is_masked(port) && si.unmask(port) == Delivery::Upcall {
                    fx.wake(dom.id);
                }
            }
        }
        Ok(())
    }

    /// `evtchn_port_poll` for `SCHEDOP_poll`: `Ok(true)` if pending.
    pub(crate) fn poll_port(&self, d: usize, port: u32) -> Result<bool, Errno> {
        match self.doms[d].port(port) {
            Some(PortState::Unbound { .. } | PortState::Interdomain { .. }) => {
                Ok(self.doms[d].si().is_some_and(|si| si.is_pending(port)))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `domain_shutdown(d, reason)`: the first code recorded wins.
    pub(crate) fn shutdown(&mut self, d: usize, reason: u8) {
        let dom = &mut self.doms[d];
        let code = *dom.shutdown_code.get_or_insert(reason);
        if dom.state == DomainState::Running {
            dom.state = DomainState::Shutdown(u32::from(code));
        }
    }

    /// Domain destroy (`evtchn_destroy` and P2M teardown): every port closed from the top
    /// down, each peer's port falls back to UNBOUND; shared-memory references dropped.
    pub(crate) fn destroy(&mut self, d: usize, fx: &mut Effects) {
        if !self.doms[d].exists() {
            return;
        }
        for port in (1..self.doms[d].valid).rev() {
            let _ = self.close(d, port, fx);
        }
        let dom = &mut self.doms[d];
        dom.state = DomainState::Destroyed;
        dom.page = None;
        dom.pbuf.clear();
        let id = dom.id;
        self.regions.release(id);
    }

    /// Allocates `port` of `d` as UNBOUND for `remote`, as Xen itself (no XSM check, the
    /// remote domain need not exist).
    fn unbound_for(&mut self, d: usize, port: u32, remote: DomId) -> Result<(), Errno> {
        self.allocate_port(d, port)?;
        self.doms[d].ports[port as usize] = PortState::Unbound { remote };
        Ok(())
    }

    /// Beyond Xen: re-binds `d`'s static channels after it was re-created. The restarted
    /// end is bound second (its port starts pending) to the peer's port if that port is
    /// UNBOUND for it, and the peer's port is marked pending as well; otherwise the
    /// restarted end is left UNBOUND for the peer (which binds it if it restarts in turn).
    pub(crate) fn rebind(&mut self, d: usize, fx: &mut Effects) -> Result<(), (usize, Errno)> {
        let id = self.doms[d].id;
        for (k, pair) in self.pairs.clone().into_iter().enumerate() {
            let (mine, peer, pport) = if pair.d1 == id && pair.d2 == id {
                // A loopback pair: bind it as at boot, then mark the first end too.
                self.unbound_for(d, pair.p1, id).map_err(|e| (k, e))?;
                self.bind_interdomain(None, d, pair.p2, id, pair.p1, fx)
                    .map_err(|e| (k, e))?;
                self.bind_pending(d, pair.p1, fx);
                continue;
            } else if pair.d1 == id {
                (pair.p1, pair.d2, pair.p2)
            } else if pair.d2 == id {
                (pair.p2, pair.d1, pair.p1)
            } else {
                continue;
            };
            let bindable = self.by_id(peer).and_then(|p| {
                (self.doms[p].port(pport) == Some(PortState::Unbound { remote: id })).then_some(p)
            });
            match bindable {
                Some(p) => {
                    self.bind_interdomain(None, d, mine, peer, pport, fx)
                        .map_err(|e| (k, e))?;
                    self.bind_pending(p, pport, fx);
                    self.static_bound(id, mine, peer, pport);
                }
                None => self.unbound_for(d, mine, peer).map_err(|e| (k, e))?,
            }
        }
        Ok(())
    }

    /// Is `(a, pa)`–`(b, pb)` one of the static pairs (either way round), between two
    /// different domains?
    fn is_static(&self, a: DomId, pa: u32, b: DomId, pb: u32) -> bool {
        a != b
            && self.pairs.iter().any(|p| {
                (p.d1 == a && p.p1 == pa && p.d2 == b && p.p2 == pb)
                    || (p.d1 == b && p.p1 == pb && p.d2 == a && p.p2 == pa)
            })
    }

    /// A static pair between two domains was bound (at boot or by a restart's rebind):
    /// direct delivery starts in both directions.
    pub(crate) fn static_bound(&mut self, a: DomId, pa: u32, b: DomId, pb: u32) {
        if let Some(l) = &self.links {
            if self.is_static(a, pa, b, pb) {
                l.bound((a, pa), (b, pb));
                l.bound((b, pb), (a, pa));
            }
        }
    }

    /// A static pair is being closed (close, destroy): what was sent directly before is
    /// folded into each receiver and direct delivery stops, in both directions.
    fn static_unbound(&mut self, a: DomId, pa: u32, b: DomId, pb: u32, fx: &mut Effects) {
        let Some(l) = self.links.clone() else {
            return;
        };
        if !self.is_static(a, pa, b, pb) {
            return;
        }
        for (from, to) in [((a, pa), (b, pb)), ((b, pb), (a, pa))] {
            if l.unbound(from, to) {
                fx.wake(to.0);
            }
        }
    }

    /// Checks the port tables: port 0 reserved, nothing beyond the valid ports, every
    /// INTERDOMAIN port's peer exists and points back; destroyed domains own nothing.
    pub(crate) fn check(&self) -> Result<(), String> {
        for d in &self.doms {
            if !d.exists() {
                if d.page.is_some() {
                    return Err(format!("d{}: destroyed but has a page", d.id));
                }
                if let Some((p, s)) = d
                    .ports
                    .iter()
                    .enumerate()
                    .find(|(_, s)| !matches!(s, PortState::Free | PortState::Reserved))
                {
                    return Err(format!("d{}: destroyed but port {p} is {s:?}", d.id));
                }
                continue;
            }
            if d.ports[0] != PortState::Reserved {
                return Err(format!("d{}: port 0 is {:?}", d.id, d.ports[0]));
            }
            if d.valid as usize > d.ports.len()
                || (d.valid % EVTCHNS_PER_BUCKET != 0 && d.valid as usize != d.ports.len())
            {
                return Err(format!("d{}: valid_evtchns {}", d.id, d.valid));
            }
            let valid = d.valid as usize;
            if let Some(p) = d.ports[valid..].iter().position(|s| *s != PortState::Free) {
                return Err(format!(
                    "d{}: port {} beyond valid is not free",
                    d.id,
                    valid + p
                ));
            }
            for (p, s) in d.ports[..valid].iter().enumerate() {
                if p > 0 && *s == PortState::Reserved {
                    return Err(format!("d{}: port {p} reserved", d.id));
                }
                if let PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } = *s
                {
                    let Some(r) = self.by_id(remote_dom) else {
                        return Err(format!("d{}:{p} bound to missing d{remote_dom}", d.id));
                    };
                    let back = self.doms[r].port(remote_port);
                    let want = PortState::Interdomain {
                        remote_dom: d.id,
                        remote_port: p as u32,
                    };
                    if back != Some(want) {
                        return Err(format!(
                            "d{}:{p} -> d{remote_dom}:{remote_port}, which is {back:?}",
                            d.id
                        ));
                    }
                }
            }
        }
        self.regions.check(|id| self.by_id(id).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeapPage;

    fn state(policy: Policy) -> State {
        let mut st = State::new(policy);
        for (i, (id, control)) in [(0u16, true), (1, false), (2, false)]
            .into_iter()
            .enumerate()
        {
            let max = if control { 4095 } else { 1023 };
            st.doms.push(Dom::new(
                id,
                "d",
                control,
                false,
                max,
                Arc::new(HeapPage::new()),
            ));
            st.index.push(i as u32 + 1);
        }
        st.booted = true;
        st
    }

    #[test]
    fn allocate_port_grows_valid_by_buckets() {
        let mut st = state(Policy::Dummy);
        assert_eq!(st.doms[1].valid, 64);
        assert_eq!(st.allocate_port(1, 63), Ok(()));
        assert_eq!(st.doms[1].valid, 64);
        assert_eq!(st.allocate_port(1, 64), Ok(()));
        assert_eq!(st.doms[1].valid, 128);
        assert_eq!(st.allocate_port(1, 1023), Ok(()));
        assert_eq!(st.doms[1].valid, 1024);
        assert_eq!(st.allocate_port(1, 1024), Err(Errno::ENOSPC));
        assert_eq!(st.allocate_port(0, 4095), Ok(()));
        assert_eq!(st.doms[0].valid, 4096);
        assert_eq!(st.allocate_port(0, 4096), Err(Errno::ENOSPC));
        // Allocation does not change the state: a Free port stays allocatable.
        assert_eq!(st.allocate_port(1, 63), Ok(()));
        assert_eq!(
            st.allocate_port(1, 0),
            Err(Errno::EBUSY),
            "port 0 is reserved"
        );
    }

    #[test]
    fn get_free_port_skips_busy_ports_and_grows() {
        let mut st = state(Policy::Dummy);
        for p in 1..64 {
            st.doms[1].ports[p] = PortState::Unbound { remote: 2 };
        }
        assert_eq!(st.get_free_port(1), Ok(64));
        assert_eq!(st.doms[1].valid, 128);
        st.doms[1].ports[64] = PortState::Unbound { remote: 2 };
        st.doms[1].ports[10] = PortState::Free;
        assert_eq!(st.get_free_port(1), Ok(10));
        for p in 1..1024 {
            st.doms[1].ports[p] = PortState::Unbound { remote: 2 };
        }
        st.doms[1].valid = 1024;
        assert_eq!(st.get_free_port(1), Err(Errno::ENOSPC));
    }

    #[test]
    fn xsm_rules() {
        let st = state(Policy::Silo);
        assert!(st.xsm_target(Some(1), 1).is_ok());
        assert_eq!(st.xsm_target(Some(1), 2), Err(Errno::EPERM));
        assert!(
            st.xsm_target(Some(0), 2).is_ok(),
            "dom0 is the control domain"
        );
        assert!(st.xsm_target(None, 2).is_ok(), "Xen at boot");
        assert!(!st.silo_ok(Some(1), 1, 2));
        assert!(st.silo_ok(Some(1), 1, 0));
        assert!(st.silo_ok(Some(1), 1, 1));
        assert!(st.silo_ok(Some(0), 1, 2));
        assert!(st.silo_ok(None, 1, 2));
    }

    #[test]
    fn close_of_a_loopback_pair_and_destroy() {
        let mut st = state(Policy::Silo);
        let mut fx = Effects::default();
        assert_eq!(st.alloc_unbound(None, 1, 1, 5), Ok(5));
        assert_eq!(st.bind_interdomain(None, 1, 6, 1, 5, &mut fx), Ok(6));
        assert_eq!(fx.woken().collect::<Vec<_>>(), [1]);
        st.check().unwrap();
        assert_eq!(st.close(1, 6, &mut fx), Ok(()));
        assert_eq!(st.doms[1].ports[5], PortState::Unbound { remote: 1 });
        st.destroy(1, &mut fx);
        assert!(st.doms[1].ports[1..].iter().all(|p| *p == PortState::Free));
        st.check().unwrap();
    }

    #[test]
    fn effects_deduplicate_wakes() {
        let mut fx = Effects::default();
        for d in [3, 3, 4, 5, 4, 6, 5] {
            fx.wake(d);
        }
        assert_eq!(fx.woken().collect::<Vec<_>>(), [3, 4, 5, 6]);
    }
}
