//! The allocator: event-channel ports, Xen's binding order of the pairs, host ranges from
//! the shm pool, guest ranges clear of each guest's memory map and module load addresses,
//! for exactly the values the description leaves open.

use super::Builder;
use crate::codes::*;
use crate::model::*;
use staticbus_abi::PAGE_SIZE;
use staticbus_diag::{Diagnostic, Location};
use std::collections::{HashMap, HashSet};

/// Default guest-physical window for shared regions: clear of every device and Xen window
/// of the Xen/Arm guest memory map and below guest RAM.
pub const DEFAULT_GUEST_WINDOW: (u64, u64) = (0x0800_0000, 0x0800_0000);

/// Default window for `hypervisor = "qemu-ivshmem"`: the shared object (BAR2) minus its
/// control page, so every region is a window of the object at the same address in every
/// member (the allocator prefers a common address; docs/adr/0005).
pub const IVSHMEM_GUEST_WINDOW: (u64, u64) = (
    staticbus_abi::ivshmem::SHM_BASE,
    staticbus_abi::ivshmem::SHM_MAX - staticbus_abi::ivshmem::CONTROL_PAGE,
);

impl Builder<'_> {
    pub(super) fn alloc_ports(&mut self) {
        let mut used: HashMap<DomIdx, HashSet<u32>> = HashMap::new();
        for d in 0..self.sys.domains.len() {
            if self.sys.domains[d].enhanced.xenstore() {
                used.entry(d).or_default().insert(1);
            }
        }
        for &(pi, first, p) in &self.given.ports {
            if let Some(p) = p {
                let e = if first {
                    &self.sys.evtchns[pi].first
                } else {
                    &self.sys.evtchns[pi].second
                };
                used.entry(e.domain).or_default().insert(p);
            }
        }
        // Per domain, a port below which every port is taken: ports are only ever added,
        // so the first free one is never below the last one found.
        let mut from = vec![1u32; self.sys.domains.len()];
        let reqs = std::mem::take(&mut self.given.ports);
        for (pi, first, p) in reqs {
            if p.is_some() {
                continue;
            }
            let pair = &mut self.sys.evtchns[pi];
            let e = if first {
                &mut pair.first
            } else {
                &mut pair.second
            };
            let dom = &self.sys.domains[e.domain];
            let set = used.entry(e.domain).or_default();
            let start = from.get(e.domain).copied().unwrap_or(1);
            match (start..=dom.max_port()).find(|p| !set.contains(p)) {
                Some(p) => {
                    set.insert(p);
                    if let Some(f) = from.get_mut(e.domain) {
                        *f = p + 1;
                    }
                    e.port = p;
                }
                None => {
                    let msg = format!("domain `{}` has no free event-channel port left", dom.name);
                    self.diags.push(
                        Diagnostic::new(ALLOC_PORTS_FULL, e.loc.clone(), msg)
                            .help("reduce the number of channels of this domain"),
                    );
                    return;
                }
            }
        }
    }

    /// Orders pairs as Xen binds them. The generator writes each domain's endpoints in list
    /// order, domains in order, so Xen meets a pair first in the lower-indexed domain (for a
    /// loopback pair, at the end declared first); pairs bind in the order of that domain.
    pub(super) fn order_evtchns(&mut self) {
        for p in &mut self.sys.evtchns {
            if p.second.domain < p.first.domain {
                std::mem::swap(&mut p.first, &mut p.second);
            }
        }
        let n = self.sys.evtchns.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.sys.evtchns[i].first.domain);
        let mut remap = vec![0; n];
        for (new, &old) in order.iter().enumerate() {
            remap[old] = new;
        }
        let mut slots: Vec<Option<EvtchnPair>> = std::mem::take(&mut self.sys.evtchns)
            .into_iter()
            .map(Some)
            .collect();
        self.sys.evtchns = order.iter().filter_map(|&o| slots[o].take()).collect();
        for c in &mut self.sys.channels {
            for e in &mut c.evtchns {
                *e = remap[*e];
            }
        }
    }

    fn taken_host(&self) -> Vec<(u64, u64)> {
        let p = &self.sys.platform;
        let mut v: Vec<(u64, u64)> = p
            .reserved
            .iter()
            .map(|r| (r.range.base, r.range.size))
            .collect();
        v.extend(
            p.dtb
                .iter()
                .chain(p.xen_image.iter())
                .map(|r| (r.base, r.size)),
        );
        v.extend(self.sys.domains.iter().enumerate().flat_map(|(d, dom)| {
            dom.modules
                .iter()
                .enumerate()
                .filter(move |&(i, _)| !self.given.module_open(d, i))
                .map(|(_, m)| (m.addr, m.size))
        }));
        v.extend(
            self.sys
                .domains
                .iter()
                .flat_map(|d| d.static_mem.iter().map(|r| (r.base, r.size))),
        );
        v.extend(
            self.sys
                .shm
                .iter()
                .filter_map(|n| n.host.map(|h| (h, n.size))),
        );
        v
    }

    pub(super) fn alloc_host(&mut self) {
        // Regions (by id, first-seen order) without a host address. A region with a host
        // address in some node is not open: mixing the forms is for the validator (SB0215).
        let explicit: HashSet<&str> = self
            .sys
            .shm
            .iter()
            .filter(|n| n.host.is_some())
            .map(|n| n.id.as_str())
            .collect();
        let mut seen = HashSet::new();
        let need: Vec<(String, u64, Location)> = self
            .sys
            .shm
            .iter()
            .filter(|n| {
                n.host.is_none() && !explicit.contains(n.id.as_str()) && seen.insert(n.id.clone())
            })
            .map(|n| (n.id.clone(), n.size, n.loc.clone()))
            .collect();
        if need.is_empty() {
            return;
        }
        let Some(pool) = self.sys.platform.shm_pool.clone() else {
            if self.sys.target.caps().heap_form_shm {
                return; // heap form: Xen allocates
            }
            let (id, _, loc) = &need[0];
            self.diags.push(
                Diagnostic::new(ALLOC_NO_POOL, loc.clone(), format!("region `{id}` needs a host address and there is no shm pool"))
                    .note(format!("Xen {} cannot allocate shared memory from its heap (4.19+ can)", self.sys.target.xen))
                    .help("add `[platform] shm-pool = { base = …, size = … }`, give `host` explicitly, or target Xen 4.19+"),
            );
            return;
        };
        let mut free = FreeList::new(pool.base, pool.end(), &self.taken_host());
        let mut placed: HashMap<String, u64> = HashMap::new();
        for (id, size, loc) in need {
            match free.next_fit(pool.base, size, PAGE_SIZE) {
                Some(h) => {
                    free.take(h, size);
                    placed.insert(id, h);
                }
                None => {
                    self.diags.push(
                        Diagnostic::new(
                            ALLOC_POOL_FULL,
                            loc,
                            format!("no room for region `{id}` ({size:#x} bytes) in the shm pool"),
                        )
                        .with(pool.loc.clone(), "the pool")
                        .help("enlarge the pool or shrink the channels"),
                    );
                    return;
                }
            }
        }
        for n in self.sys.shm.iter_mut().filter(|n| n.host.is_none()) {
            n.host = placed.get(&n.id).copied();
        }
    }

    pub(super) fn alloc_guest(&mut self) {
        let (wb, ws) = self
            .sys
            .platform
            .guest_shm_window
            .as_ref()
            .map(|r| (r.base, r.size))
            .unwrap_or(match self.sys.target.hypervisor {
                Hypervisor::Xen => DEFAULT_GUEST_WINDOW,
                Hypervisor::QemuIvshmem => IVSHMEM_GUEST_WINDOW,
            });
        let wend = wb.saturating_add(ws);
        // On qemu-ivshmem every VM maps the one shared object: a range one region uses is
        // used in every domain, not only in the region's members (SB0904).
        let one_object = self.sys.target.hypervisor == Hypervisor::QemuIvshmem;
        // Per domain: the window minus guest RAM and explicit guest ranges.
        let mut taken: HashMap<DomIdx, Vec<(u64, u64)>> = HashMap::new();
        let mut everyone: Vec<(u64, u64)> = Vec::new();
        for (n, given) in self.sys.shm.iter().zip(&self.given.guest) {
            if let Some(g) = *given {
                if one_object {
                    everyone.push((g, n.size));
                } else {
                    taken.entry(n.domain).or_default().push((g, n.size));
                }
            }
        }
        let mut free: HashMap<DomIdx, FreeList> = HashMap::new();
        for (d, dom) in self.sys.domains.iter().enumerate() {
            let mut t = taken.remove(&d).unwrap_or_default();
            t.extend(dom.guest_ram());
            t.extend(everyone.iter().copied());
            free.insert(d, FreeList::new(wb, wend, &t));
        }
        // Open nodes grouped by region, in first-seen order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.sys.shm.iter().enumerate() {
            if self.given.guest[i].is_some() {
                continue;
            }
            let g = *group_of.entry(n.id.as_str()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        for group in groups {
            let size = self.sys.shm[group[0]].size;
            let mapped: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&j| {
                    let d = &self.sys.domains[self.sys.shm[j].domain];
                    !(d.direct_map || d.dom0)
                })
                .collect();
            // The lowest address free in every member, if there is one.
            let mut common = Some(wb);
            'search: while let Some(a) = common {
                for &j in &mapped {
                    match free[&self.sys.shm[j].domain].next_fit(a, size, PAGE_SIZE) {
                        Some(c) if c == a => {}
                        other => {
                            common = other;
                            continue 'search;
                        }
                    }
                }
                break;
            }
            for &j in &group {
                let dom = self.sys.shm[j].domain;
                let d = &self.sys.domains[dom];
                let addr = if d.direct_map || d.dom0 {
                    self.sys.shm[j].host
                } else {
                    let fl = free.get_mut(&dom).expect("every domain has a free list");
                    let a = common.or_else(|| fl.next_fit(wb, size, PAGE_SIZE));
                    if let Some(a) = a {
                        fl.take(a, size);
                        if one_object {
                            for fl in free.values_mut() {
                                fl.take(a, size);
                            }
                        }
                    }
                    a
                };
                match addr {
                    Some(a) => self.sys.shm[j].guest = a,
                    // Direct-mapped: the guest address is the host address, and there is none.
                    None if d.direct_map || d.dom0 => {
                        let n = &self.sys.shm[j];
                        let msg = format!(
                            "`{}` is direct-mapped, so region `{}` needs a host address",
                            d.name, n.id
                        );
                        self.diags.push(
                            Diagnostic::new(SHM_HEAP_FORM_DIRECT_MAP, n.mem_loc.clone(), msg).help(
                                "give the host address (`host = …`); it is also the guest address",
                            ),
                        );
                        return;
                    }
                    None => {
                        let n = &self.sys.shm[j];
                        let msg =
                            format!("no free guest range for region `{}` in `{}`", n.id, d.name);
                        let loc = n.loc.clone();
                        self.diags.push(
                            Diagnostic::new(ALLOC_GUEST_FULL, loc, msg)
                                .note(format!("guest window [{wb:#x}, {wend:#x})"))
                                .help(
                                    "give `guest` explicitly or set `[platform] guest-shm-window`",
                                ),
                        );
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn alloc_modules(&mut self) {
        const ALIGN: u64 = 2 << 20;
        let open: Vec<(DomIdx, usize)> = self
            .given
            .module_addr
            .iter()
            .enumerate()
            .flat_map(|(d, addrs)| {
                addrs
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_none())
                    .map(move |(i, _)| (d, i))
            })
            .collect();
        // Without Xen each domain is its own VM, which loads its kernel itself (QEMU's
        // `-kernel`): no host address to place.
        if open.is_empty() || self.sys.target.hypervisor == Hypervisor::QemuIvshmem {
            return;
        }
        let mut taken = self.taken_host();
        taken.extend(self.sys.platform.shm_pool.iter().map(|r| (r.base, r.size)));
        // Leave the first 2 MiB of each bank for the Xen image.
        let mut banks: Vec<FreeList> = self
            .sys
            .platform
            .ram
            .iter()
            .map(|r| FreeList::new(r.base.saturating_add(ALIGN), r.end(), &taken))
            .collect();
        for (d, i) in open {
            let size = self.sys.domains[d].modules[i].size;
            let found = banks.iter_mut().find_map(|fl| {
                let a = fl.next_fit(0, size, ALIGN)?;
                fl.take(a, size);
                Some(a)
            });
            let dname = self.sys.domains[d].name.clone();
            let m = &mut self.sys.domains[d].modules[i];
            match found {
                Some(a) => m.addr = a,
                None => {
                    let msg = format!("no free RAM to place the {} of `{dname}`", m.kind.as_str());
                    let loc = m.loc.clone();
                    self.diags
                        .push(Diagnostic::new(ALLOC_NO_MODULE_SPACE, loc, msg).help(
                        "describe the platform RAM in [platform] ram, or give `addr` explicitly",
                    ));
                    return;
                }
            }
        }
    }
}

/// Free address ranges of a window: sorted, disjoint `[start, end)` intervals.
#[derive(Clone, Debug)]
pub struct FreeList {
    free: Vec<(u64, u64)>,
}

impl FreeList {
    /// The window `[lo, hi)` minus every `taken` `(base, size)` range.
    pub fn new(lo: u64, hi: u64, taken: &[(u64, u64)]) -> FreeList {
        let mut t: Vec<(u64, u64)> = taken
            .iter()
            .filter(|&&(_, s)| s > 0)
            .map(|&(b, s)| (b, b.saturating_add(s)))
            .collect();
        t.sort();
        let mut free = Vec::new();
        let mut cur = lo;
        for (b, e) in t {
            if e <= cur {
                continue;
            }
            if b >= hi {
                break;
            }
            if b > cur {
                free.push((cur, b));
            }
            cur = cur.max(e);
        }
        if cur < hi {
            free.push((cur, hi));
        }
        FreeList { free }
    }

    /// The lowest `align`-aligned address `>= from` where `size` bytes are free.
    pub fn next_fit(&self, from: u64, size: u64, align: u64) -> Option<u64> {
        let up = |v: u64| v.checked_add(align - 1).map(|x| x / align * align);
        let start = self.free.partition_point(|&(_, e)| e <= from);
        for &(b, e) in &self.free[start..] {
            let a = up(b.max(from))?;
            if a.checked_add(size).is_some_and(|end| end <= e) {
                return Some(a);
            }
        }
        None
    }

    /// Marks `[a, a+size)` as used; it must lie inside one free interval.
    pub fn take(&mut self, a: u64, size: u64) {
        let end = a.saturating_add(size);
        if let Some(i) = self.free.iter().position(|&(b, e)| b <= a && end <= e) {
            let (b, e) = self.free[i];
            let mut repl = Vec::with_capacity(2);
            if b < a {
                repl.push((b, a));
            }
            if end < e {
                repl.push((end, e));
            }
            self.free.splice(i..=i, repl);
        }
    }
}

/// Lowest `align`-aligned address `a` in `[lo, hi)` with `[a, a+size)` inside the window
/// and clear of every `taken` range.
pub fn first_fit(lo: u64, hi: u64, size: u64, align: u64, taken: &[(u64, u64)]) -> Option<u64> {
    FreeList::new(lo, hi, taken).next_fit(lo, size, align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_skips_taken_and_aligns() {
        assert_eq!(
            first_fit(0x1000, 0x10000, 0x2000, 0x1000, &[(0x1000, 0x1800)]),
            Some(0x3000)
        );
        assert_eq!(first_fit(0, 0x3000, 0x4000, 0x1000, &[]), None);
        assert_eq!(
            first_fit(u64::MAX - 10, u64::MAX, 0x1000, 0x1000, &[]),
            None
        );
    }
}
