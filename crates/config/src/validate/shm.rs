//! §2.7 static shared memory: per node (id, form, alignment, size, direct map, guest range),
//! per region (forms, sizes, owners), between regions (host and guest overlaps) and the
//! release's bank limits.

use super::{hex, range_str, size_str, Validator};
use crate::codes::*;
use crate::model::*;
use staticbus_abi::{dt as b, guest, PAGE_SIZE};
use staticbus_diag::{Diagnostic, Location};
use std::collections::{BTreeMap, HashMap};

impl<'s> Validator<'s> {
    // ---- §2.7 static shared memory ----
    pub(super) fn shm(&mut self) {
        let sys = self.sys;
        if sys.shm.is_empty() {
            return;
        }
        // SB0201: shared memory in a Xen built without CONFIG_STATIC_SHM (device-tree input
        // reports it while reading the tree).
        if !sys.target.static_shm && sys.source == SourceKind::Description {
            self.push(
                Diagnostic::new(
                    SHM_DISABLED,
                    sys.shm[0].loc.clone(),
                    "static shared memory needs a Xen built with CONFIG_STATIC_SHM",
                )
                .label("Xen panics at boot on this region")
                .note("Debian's Xen packages are built without it")
                .help("set `static-shm = true` in [target] for a Xen built with CONFIG_UNSUPPORTED, CONFIG_STATIC_MEMORY and CONFIG_STATIC_SHM"),
            );
        }
        // Per node.
        let mut ids_checked = std::collections::HashSet::new();
        for n in &sys.shm {
            let d = self.dom(n.domain);
            if !ids_checked.insert(n.id.as_str()) {
                // id rules are reported once per region
            } else if n.id.is_empty() {
                // SB0204: empty shm id.
                self.push(
                    Diagnostic::new(SHM_ID_EMPTY, n.id_loc.clone(), "`xen,shm-id` is empty")
                        .label("Xen crashes (BUG_ON) while building the domain")
                        .help("give the region a name of 1 to 15 characters"),
                );
            } else if n.id.len() >= b::MAX_SHM_ID_LENGTH {
                // SB0205: shm id longer than 15 characters.
                self.push(
                    Diagnostic::new(
                        SHM_ID_TOO_LONG,
                        n.id_loc.clone(),
                        format!("shm id `{}` is {} characters long", n.id, n.id.len()),
                    )
                    .label("at most 15 characters")
                    .help("shorten the id"),
                );
            }
            if n.host.is_none() {
                if !sys.target.caps().heap_form_shm {
                    // SB0209: the release cannot allocate shared memory from its heap.
                    self.push(
                        Diagnostic::new(
                            SHM_HEAP_FORM_UNSUPPORTED,
                            n.mem_loc.clone(),
                            format!("region `{}` has no host address, which Xen {} does not support", n.id, sys.target.xen),
                        )
                        .help("give the host address (`xen,shared-mem = <HOST GUEST SIZE>`), or target Xen 4.19+"),
                    );
                } else if d.direct_map || d.dom0 {
                    // SB0210: a direct-mapped domain needs the host address.
                    self.push(
                        Diagnostic::new(
                            SHM_HEAP_FORM_DIRECT_MAP,
                            n.mem_loc.clone(),
                            format!(
                                "`{}` is direct-mapped, so region `{}` needs a host address",
                                d.name, n.id
                            ),
                        )
                        .help("give the host address and use it as the guest address too"),
                    );
                }
            }
            // SB0211: host address, guest address or size not 4 KiB aligned.
            let mut unaligned = Vec::new();
            if let Some(h) = n.host {
                if h % PAGE_SIZE != 0 {
                    unaligned.push(format!("host address {}", hex(h)));
                }
            }
            if n.guest % PAGE_SIZE != 0 {
                unaligned.push(format!("guest address {}", hex(n.guest)));
            }
            if n.size % PAGE_SIZE != 0 {
                unaligned.push(format!("size {}", hex(n.size)));
            }
            if !unaligned.is_empty() {
                self.push(
                    Diagnostic::new(
                        SHM_UNALIGNED,
                        n.mem_loc.clone(),
                        format!(
                            "region `{}`: {} not 4 KiB aligned",
                            n.id,
                            unaligned.join(", ")
                        ),
                    )
                    .help("align host, guest and size to 4 KiB (0x1000)"),
                );
            }
            // SB0212: size zero.
            if n.size == 0 {
                self.push(
                    Diagnostic::new(
                        SHM_SIZE_ZERO,
                        n.mem_loc.clone(),
                        format!("region `{}` has size 0", n.id),
                    )
                    .help("give the region a size (a multiple of 4 KiB)"),
                );
                continue;
            }
            // SB0213: a range that wraps around the address space.
            let host_overflow = n.host.is_some_and(|h| h.checked_add(n.size).is_none());
            if host_overflow || n.guest.checked_add(n.size).is_none() {
                self.push(
                    Diagnostic::new(
                        SHM_OVERFLOW,
                        n.mem_loc.clone(),
                        format!(
                            "region `{}` wraps around the end of the address space",
                            n.id
                        ),
                    )
                    .help("check the address and size"),
                );
                continue;
            }
            // SB0225: a direct-mapped domain maps the region at another guest address.
            if (d.direct_map || d.dom0) && n.host.is_some_and(|h| h != n.guest) {
                self.push(
                    Diagnostic::new(
                        SHM_DIRECT_MAP_MISMATCH,
                        n.mem_loc.clone(),
                        format!(
                            "`{}` is direct-mapped but maps region `{}` at guest {} instead of host {}",
                            d.name,
                            n.id,
                            hex(n.guest),
                            hex(n.host.unwrap_or(0))
                        ),
                    )
                    .help("use the host address as the guest address"),
                );
            }
            self.guest_range(n, d);
        }
        self.guest_overlaps();
        // Per region (nodes grouped by id, first-seen order).
        let mut regions: BTreeMap<usize, Vec<&ShmNode>> = BTreeMap::new();
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (i, n) in sys.shm.iter().enumerate() {
            let k = *first_of.entry(n.id.as_str()).or_insert(i);
            regions.entry(k).or_default().push(n);
        }
        let groups: Vec<Vec<&ShmNode>> = regions.into_values().collect();
        for g in &groups {
            self.region(g);
        }
        // Host ranges of different regions: sorted sweep (SB0216 below); each range against
        // RAM and the occupants in `host_range` (SB0220, SB0221).
        let reps: Vec<&ShmNode> = groups.iter().map(|g| g[0]).collect();
        let mut hosted: Vec<(&ShmNode, u64)> = reps
            .iter()
            .filter_map(|n| n.host.map(|h| (*n, h)))
            .filter(|(n, h)| n.size != 0 && h.checked_add(n.size).is_some())
            .collect();
        hosted.sort_by_key(|(n, h)| (*h, n.size));
        let mut reach: Option<(&ShmNode, u64)> = None;
        for &(a, ah) in &hosted {
            if let Some((b2, bh)) = reach {
                if ah < bh + b2.size {
                    // SB0216: two regions overlap in host memory.
                    self.push(
                        Diagnostic::new(
                            SHM_SAME_RANGE_OTHER_ID,
                            a.mem_loc.clone(),
                            format!(
                                "region `{}` {} overlaps region `{}` {} in host memory",
                                a.id,
                                range_str(ah, a.size),
                                b2.id,
                                range_str(bh, b2.size)
                            ),
                        )
                        .with(b2.mem_loc.clone(), "the other region")
                        .help("give every region its own host range, or use the same shm id for the same memory"),
                    );
                }
            }
            if reach.is_none_or(|(b2, bh)| ah + a.size > bh + b2.size) {
                reach = Some((a, ah));
            }
            self.host_range(a, ah);
        }
        // Bank limits.
        // SB0226: more regions than the release's bank table holds.
        let limit = if sys.target.caps().separate_shm_banks {
            b::NR_SHMEM_BANKS
        } else {
            b::NR_MEM_BANKS.saturating_sub(sys.platform.reserved.len())
        };
        if groups.len() > limit {
            self.push(
                Diagnostic::new(
                    SHM_TOO_MANY_REGIONS,
                    groups[limit][0].loc.clone(),
                    format!(
                        "{} shared regions; Xen {} has room for {limit}",
                        groups.len(),
                        sys.target.xen
                    ),
                )
                .label("this is the first region that does not fit")
                .help("merge regions (one region can carry several channels)"),
            );
        }
        // SB0226: more regions in one domain than its bank table holds.
        if sys.target.caps().separate_shm_banks {
            let mut per_dom: HashMap<DomIdx, usize> = HashMap::new();
            for n in &sys.shm {
                let c = per_dom.entry(n.domain).or_default();
                *c += 1;
                if *c == b::NR_SHMEM_BANKS + 1 {
                    self.push(
                        Diagnostic::new(
                            SHM_TOO_MANY_REGIONS,
                            n.loc.clone(),
                            format!(
                                "domain `{}` maps more than {} shared regions",
                                self.dom(n.domain).name,
                                b::NR_SHMEM_BANKS
                            ),
                        )
                        .help("merge regions"),
                    );
                }
            }
        }
        // SB0227: heap-form regions need more than 32 heap chunks.
        if sys.target.caps().heap_form_shm {
            let chunks: u32 = reps
                .iter()
                .filter(|n| n.host.is_none())
                .map(|n| (n.size / PAGE_SIZE).count_ones())
                .sum();
            if chunks > 32 {
                let first = reps
                    .iter()
                    .find(|n| n.host.is_none())
                    .map(|n| n.loc.clone())
                    .unwrap_or(Location::None);
                self.push(
                    Diagnostic::new(
                        SHM_HEAP_CHUNKS,
                        first,
                        format!("heap-form regions need at least {chunks} heap chunks; Xen has 32"),
                    )
                    .help("use power-of-two sizes for heap-form regions, or give host addresses"),
                );
            }
        }
        // SB0228: the 4.18 overlap of a region shared by several domains with itself.
        if sys.target.caps().shm_overlaps_itself_after_reserved && !sys.platform.reserved.is_empty()
        {
            for g in &groups {
                if g.len() > 1 && g[0].host.is_some() {
                    self.push(
                        Diagnostic::new(
                            SHM_418_RESERVED_ORDER,
                            g[1].loc.clone(),
                            format!("on Xen 4.18, the second node of region `{}` may be reported as overlapping itself", g[0].id),
                        )
                        .with(sys.platform.reserved[0].range.loc.clone(), "a reserved range parsed earlier")
                        .help("target Xen 4.19+ or avoid reserved ranges parsed before shared-memory nodes"),
                    );
                }
            }
        }
    }

    /// Regions overlapping in one domain's guest address space: per domain, sorted by guest
    /// address, each node against the furthest-reaching earlier one.
    fn guest_overlaps(&mut self) {
        let sys = self.sys;
        let mut by_dom: HashMap<DomIdx, Vec<&ShmNode>> = HashMap::new();
        for n in &sys.shm {
            if n.size != 0 && n.guest.checked_add(n.size).is_some() {
                by_dom.entry(n.domain).or_default().push(n);
            }
        }
        let mut doms: Vec<_> = by_dom.into_iter().collect();
        doms.sort_by_key(|(d, _)| *d);
        for (d, mut nodes) in doms {
            nodes.sort_by_key(|n| (n.guest, n.size));
            let mut reach: Option<&ShmNode> = None;
            for n in nodes {
                if let Some(r) = reach {
                    if r.id != n.id && n.guest < r.guest + r.size {
                        // SB0224: two regions overlap in one domain's guest memory.
                        self.push(
                            Diagnostic::new(
                                SHM_GUEST_OVERLAP_SHM,
                                n.mem_loc.clone(),
                                format!(
                                    "regions `{}` and `{}` overlap in the guest memory of `{}`",
                                    n.id,
                                    r.id,
                                    self.dom(d).name
                                ),
                            )
                            .with(r.mem_loc.clone(), "the other region")
                            .help("give each region its own guest range"),
                        );
                    }
                }
                if reach.is_none_or(|r| n.guest + n.size > r.guest + r.size) {
                    reach = Some(n);
                }
            }
        }
    }

    /// Rules on all nodes of one region.
    fn region(&mut self, g: &[&ShmNode]) {
        let first = g[0];
        for n in &g[1..] {
            if n.host.is_some() != first.host.is_some() {
                // SB0215: one region in both forms.
                self.push(
                    Diagnostic::new(
                        SHM_MIXED_FORMS,
                        n.mem_loc.clone(),
                        format!("region `{}` is declared {} here but {} first", n.id, form(n), form(first)),
                    )
                    .with(first.mem_loc.clone(), "first declared here")
                    .help("use the same form (with or without host address) in every node of a region"),
                );
            } else if n.size != first.size || n.host != first.host {
                // SB0214: nodes of one region disagree on size or host address.
                self.push(
                    Diagnostic::new(
                        SHM_ID_MISMATCH,
                        n.mem_loc.clone(),
                        format!(
                            "region `{}` is {} here but {} first",
                            n.id,
                            describe(n),
                            describe(first)
                        ),
                    )
                    .with(first.mem_loc.clone(), "first declared here")
                    .help("every node of a region must give the same host address and size"),
                );
            }
        }
        for (i, n) in g.iter().enumerate() {
            if let Some(prev) = g[..i].iter().find(|p| p.domain == n.domain) {
                // SB0229: one domain maps the region twice.
                self.push(
                    Diagnostic::new(
                        SHM_DUPLICATE_IN_DOMAIN,
                        n.loc.clone(),
                        format!(
                            "domain `{}` maps region `{}` twice",
                            self.dom(n.domain).name,
                            n.id
                        ),
                    )
                    .with(prev.loc.clone(), "first mapping")
                    .help("keep one node per domain and region"),
                );
            }
        }
        let owners: Vec<&&ShmNode> = g
            .iter()
            .filter(|n| n.role == Some(ShmRole::Owner))
            .collect();
        let roleless: Vec<&&ShmNode> = g.iter().filter(|n| n.role.is_none()).collect();
        if owners.len() > 1 {
            // SB0217: a second owner.
            self.push(
                Diagnostic::new(
                    SHM_TWO_OWNERS,
                    owners[1].role_loc.clone(),
                    format!("region `{}` has a second owner", first.id),
                )
                .with(owners[0].role_loc.clone(), "first owner")
                .help("keep one `role = \"owner\"`; make the others borrowers"),
            );
        } else if owners.len() == 1 && !roleless.is_empty() {
            // SB0218: an owner and a roleless (DOMID_IO) node.
            self.push(
                Diagnostic::new(
                    SHM_OWNER_AND_ROLELESS,
                    roleless[0].loc.clone(),
                    format!(
                        "region `{}` has an owner (`{}`) and a node without a role (owned by DOMID_IO)",
                        first.id,
                        self.dom(owners[0].domain).name
                    ),
                )
                .with(owners[0].role_loc.clone(), "the owner")
                .help("add `role = \"borrower\"` here, or remove the owner's role so DOMID_IO owns the region"),
            );
        } else if owners.is_empty() && roleless.is_empty() {
            // SB0219: only borrowers.
            self.push(
                Diagnostic::new(
                    SHM_ONLY_BORROWERS,
                    first.role_loc.clone(),
                    format!("region `{}` has only borrowers", first.id),
                )
                .label("nobody owns the pages")
                .note("alone, Xen accepts this without a word")
                .help("make one node `role = \"owner\"`, or drop the roles so DOMID_IO owns the region"),
            );
        }
    }

    fn host_range(&mut self, n: &ShmNode, host: u64) {
        let sys = self.sys;
        // SB0220: a host range outside RAM.
        if !self.in_ram(host, n.size) {
            self.push(
                Diagnostic::new(
                    SHM_HOST_NOT_RAM,
                    n.mem_loc.clone(),
                    format!(
                        "host range {} of region `{}` is not inside RAM",
                        range_str(host, n.size),
                        n.id
                    ),
                )
                .label("Xen 4.19+ accepts this and crashes later")
                .note(format!(
                    "RAM: {}",
                    sys.platform
                        .ram
                        .iter()
                        .map(|r| range_str(r.base, r.size))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .help("place the region inside a /memory bank"),
            );
        }
        // SB0221: a host range overlapping reserved memory, static memory, a module, the DTB or
        // Xen.
        let subject = format!(
            "host range {} of region `{}`",
            range_str(host, n.size),
            n.id
        );
        self.occupant_overlaps(
            host,
            n.size,
            |_| true,
            |o| {
                Diagnostic::new(
                    SHM_HOST_RESERVED,
                    n.mem_loc.clone(),
                    format!("{subject} overlaps {}", o.what),
                )
                .help("shared memory must be plain RAM that nothing else uses")
            },
        );
    }

    fn guest_range(&mut self, n: &ShmNode, d: &Domain) {
        let sys = self.sys;
        if d.dom0 || d.direct_map {
            return; // guest == host, checked above
        }
        // SB0222: a guest range over the domain's RAM.
        for (base, size) in d.guest_ram() {
            if overlaps(n.guest, n.size, base, size) {
                self.push(
                    Diagnostic::new(
                        SHM_GUEST_OVERLAP_RAM,
                        n.mem_loc.clone(),
                        format!(
                            "guest range {} of region `{}` overlaps the RAM of `{}` {}",
                            range_str(n.guest, n.size),
                            n.id,
                            d.name,
                            range_str(base, size)
                        ),
                    )
                    .with(d.memory_loc.clone(), "the domain's memory")
                    .label("Xen silently replaces that guest RAM")
                    .help("pick a guest address outside RAM, e.g. in 0x08000000..0x10000000"),
                );
            }
        }
        // SB0223: a guest range over a device or Xen window of the guest memory map.
        let windows: Vec<&staticbus_abi::Window> = match sys.platform.gic {
            Some(GicVersion::V2) => guest::WINDOWS_GICV2.iter().collect(),
            Some(GicVersion::V3) => guest::WINDOWS_GICV3.iter().collect(),
            None => guest::WINDOWS_GICV2
                .iter()
                .chain(guest::WINDOWS_GICV3)
                .collect(),
        };
        let mut hits: Vec<String> = Vec::new();
        for w in windows {
            if overlaps(n.guest, n.size, w.base, w.size) {
                hits.push(format!("the {} {}", w.name, range_str(w.base, w.size)));
            }
        }
        if !hits.is_empty() {
            self.push(
                Diagnostic::new(
                    SHM_GUEST_OVERLAP_DEVICE,
                    n.mem_loc.clone(),
                    format!(
                        "guest range {} of region `{}` in `{}` overlaps {}",
                        range_str(n.guest, n.size),
                        n.id,
                        d.name,
                        hits.join(", ")
                    ),
                )
                .label("Xen silently replaces that mapping")
                .help("pick a guest address clear of the guest memory map, e.g. in 0x08000000..0x10000000"),
            );
        }
    }
}

fn form(n: &ShmNode) -> &'static str {
    if n.host.is_some() {
        "with a host address"
    } else {
        "without a host address (heap form)"
    }
}

fn describe(n: &ShmNode) -> String {
    match n.host {
        Some(h) => format!("{} at host {}", size_str(n.size), hex(h)),
        None => size_str(n.size),
    }
}
