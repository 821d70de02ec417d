//! Xen's rules, checked on the [`System`] model before anything boots.
//!
//! Each check names the rule of `shared/spec/xen-dom0less.md` it implements (§1.6 static
//! event channels, §2.7 static shared memory, §3 `xen,enhanced`, §4 domains and modules,
//! §11 what real Xen accepts silently). The structural rules of the device-tree binding are
//! checked while reading the tree ([`crate::from_dt`]).

use crate::codes::*;
use crate::model::*;
use staticbus_abi::{dt as b, guest, PAGE_SIZE};
use staticbus_diag::{Diagnostic, Diagnostics, Location};
use std::collections::{BTreeMap, HashMap};

/// Checks `sys` and returns every problem found.
pub fn validate(sys: &System) -> Diagnostics {
    let mut v = Validator {
        sys,
        diags: Diagnostics::new(),
        occupants: occupants(sys),
    };
    v.domains();
    v.modules();
    v.evtchns();
    v.shm();
    // One problem can be found through several nodes (the users of one description region
    // share its host address and size): report it once.
    let mut seen = std::collections::HashSet::new();
    let mut out = Diagnostics::new();
    for d in v.diags {
        if seen.insert((d.code.id, d.location.clone(), d.message.clone())) {
            out.push(d);
        }
    }
    out
}

struct Validator<'s> {
    sys: &'s System,
    diags: Diagnostics,
    occupants: Vec<Occupant<'s>>,
}

/// What an [`Occupant`] is, so a check can skip itself and report each pair once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Occ {
    /// A reserved range.
    Reserved,
    /// The host DTB or the Xen image.
    Placed,
    /// Boot module number `n` (in [`System::modules`] order).
    Module(usize),
    /// Static-memory bank number `n` (all domains, in order).
    StaticMem(usize),
}

/// Something that occupies host memory before any shared region is placed.
struct Occupant<'s> {
    what: String,
    base: u64,
    size: u64,
    loc: &'s Location,
    kind: Occ,
}

fn occupants(sys: &System) -> Vec<Occupant<'_>> {
    let mut v = Vec::new();
    for r in &sys.platform.reserved {
        v.push(Occupant {
            what: format!(
                "reserved range `{}` {}",
                r.name,
                range_str(r.range.base, r.range.size)
            ),
            base: r.range.base,
            size: r.range.size,
            loc: &r.range.loc,
            kind: Occ::Reserved,
        });
    }
    for (what, r) in [
        ("the host DTB", &sys.platform.dtb),
        ("the Xen image", &sys.platform.xen_image),
    ] {
        if let Some(r) = r {
            v.push(Occupant {
                what: format!("{what} {}", range_str(r.base, r.size)),
                base: r.base,
                size: r.size,
                loc: &r.loc,
                kind: Occ::Placed,
            });
        }
    }
    for (k, (d, m)) in sys.modules().enumerate() {
        v.push(Occupant {
            what: format!(
                "the {} module of `{}` {}",
                m.kind.as_str(),
                sys.domains[d].name,
                range_str(m.addr, m.size)
            ),
            base: m.addr,
            size: m.size,
            loc: &m.loc,
            kind: Occ::Module(k),
        });
    }
    let banks = sys
        .domains
        .iter()
        .flat_map(|d| d.static_mem.iter().map(move |r| (d, r)));
    for (k, (d, r)) in banks.enumerate() {
        v.push(Occupant {
            what: format!(
                "static memory of `{}` {}",
                d.name,
                range_str(r.base, r.size)
            ),
            base: r.base,
            size: r.size,
            loc: &r.loc,
            kind: Occ::StaticMem(k),
        });
    }
    v
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn range_str(base: u64, size: u64) -> String {
    format!("[{:#x}, {:#x})", base, base.saturating_add(size))
}

fn size_str(v: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, n) in UNITS {
        if v >= u && v % u == 0 {
            return format!("{} {n}", v / u);
        }
    }
    format!("{v:#x} bytes")
}

impl<'s> Validator<'s> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn dom(&self, i: DomIdx) -> &'s Domain {
        &self.sys.domains[i]
    }

    /// True if `[base, base+size)` lies in one RAM bank (or RAM is not known).
    fn in_ram(&self, base: u64, size: u64) -> bool {
        let ram = &self.sys.platform.ram;
        ram.is_empty() || ram.iter().any(|r| r.contains(base, size))
    }

    /// Reports every occupant that `[base, base+size)` overlaps and `keep` accepts.
    fn occupant_overlaps(
        &mut self,
        base: u64,
        size: u64,
        keep: impl Fn(Occ) -> bool,
        report: impl Fn(&Occupant<'s>) -> Diagnostic,
    ) {
        let hits: Vec<Diagnostic> = self
            .occupants
            .iter()
            .filter(|o| keep(o.kind) && overlaps(base, size, o.base, o.size))
            .map(|o| report(o).with(o.loc.clone(), "here"))
            .collect();
        for d in hits {
            self.push(d);
        }
    }

    // ---- §4 domains ----
    fn domains(&mut self) {
        let sys = self.sys;
        let mut by_name: HashMap<&str, &Domain> = HashMap::new();
        for d in &sys.domains {
            if let Some(prev) = by_name.insert(&d.name, d) {
                self.push(
                    Diagnostic::new(
                        DOMAIN_NAME_DUPLICATE,
                        d.loc.clone(),
                        format!("domain name `{}` is used twice", d.name),
                    )
                    .with(prev.loc.clone(), "first used here")
                    .help("give every domain a unique name"),
                );
            }
            if d.dom0 {
                continue;
            }
            if d.name.len() > b::MAX_NODE_NAME && sys.source == SourceKind::Description {
                self.push(
                    Diagnostic::new(
                        DOMAIN_NAME_TOO_LONG,
                        d.loc.clone(),
                        format!(
                            "domain name is {} characters long; Xen handles at most {}",
                            d.name.len(),
                            b::MAX_NODE_NAME
                        ),
                    )
                    .help("shorten the name"),
                );
            }
            if d.memory_kib == Some(0) {
                self.push(
                    Diagnostic::new(
                        DOMAIN_MEMORY,
                        d.memory_loc.clone(),
                        format!("domain `{}` has zero memory", d.name),
                    )
                    .help("give the domain its RAM size in KiB"),
                );
            }
            if let Some(n) = d.vcpus {
                let max = match sys.platform.gic {
                    Some(GicVersion::V2) => 8,
                    _ => 128,
                };
                if n == 0 || n > max {
                    self.push(
                        Diagnostic::new(
                            DOMAIN_CPUS,
                            d.vcpus_loc.clone(),
                            format!(
                                "domain `{}` asks for {n} vCPUs; Xen allows 1..={max}",
                                d.name
                            ),
                        )
                        .help(format!("use between 1 and {max} vCPUs")),
                    );
                }
            }
            if !d.modules.iter().any(|m| m.kind == ModuleKind::Kernel) {
                self.push(
                    Diagnostic::new(
                        DOMAIN_NO_KERNEL,
                        d.loc.clone(),
                        format!("domain `{}` has no kernel module", d.name),
                    )
                    .label("Xen panics with `Missing kernel boot module?`")
                    .help(
                        "add a kernel module (`multiboot,kernel`) with its load address and size",
                    ),
                );
            }
            if !d.static_mem.is_empty() {
                if !sys.target.static_memory && !sys.target.static_shm {
                    self.push(
                        Diagnostic::new(
                            STATIC_MEM_DISABLED,
                            d.static_mem_loc.clone(),
                            format!("domain `{}` uses static memory", d.name),
                        )
                        .help("build Xen with CONFIG_STATIC_MEMORY (needs CONFIG_UNSUPPORTED) and pass --static-shm or set static-memory in the target"),
                    );
                }
                let sum: u64 = d
                    .static_mem
                    .iter()
                    .map(|r| r.size)
                    .fold(0, u64::saturating_add);
                if let Some(kib) = d.memory_kib {
                    if kib.saturating_mul(1024) != sum {
                        self.push(
                            Diagnostic::new(
                                STATIC_MEM_SIZE,
                                d.memory_loc.clone(),
                                format!(
                                    "`memory` of `{}` is {} but its static-memory banks add up to {}",
                                    d.name,
                                    size_str(kib.saturating_mul(1024)),
                                    size_str(sum)
                                ),
                            )
                            .with(d.static_mem_loc.clone(), "the banks")
                            .help(format!("set memory to {} KiB", sum / 1024)),
                        );
                    }
                }
                self.static_mem_banks(d);
            } else if d.direct_map {
                self.push(
                    Diagnostic::new(
                        DIRECT_MAP_WITHOUT_STATIC_MEM,
                        d.direct_map_loc.clone(),
                        format!(
                            "domain `{}` is direct-mapped but has no static memory",
                            d.name
                        ),
                    )
                    .help("add `xen,static-mem` banks, or remove `direct-map`"),
                );
            }
            self.enhanced(d);
        }
        let has_kernel = sys
            .domains
            .iter()
            .any(|d| d.modules.iter().any(|m| m.kind == ModuleKind::Kernel));
        if !has_kernel && sys.domains.iter().all(|d| !d.dom0) && sys.domains.is_empty() {
            self.push(
                Diagnostic::new(
                    NO_DOMAINS,
                    Location::None,
                    "the system has no domain with a kernel",
                )
                .help("declare at least one domain with a kernel module"),
            );
        }
        if !sys.platform.ram.is_empty() {
            let ram: u64 = sys
                .platform
                .ram
                .iter()
                .map(|r| r.size)
                .fold(0, u64::saturating_add);
            let want: u64 = sys
                .domains
                .iter()
                .filter(|d| d.static_mem.is_empty())
                .map(|d| d.memory_kib.unwrap_or(0).saturating_mul(1024))
                .fold(0, u64::saturating_add);
            if want > ram {
                self.push(
                    Diagnostic::new(
                        MEMORY_EXCEEDS_RAM,
                        sys.platform.ram[0].loc.clone(),
                        format!(
                            "domains ask for {} of memory but the platform has {} of RAM",
                            size_str(want),
                            size_str(ram)
                        ),
                    )
                    .help("reduce domain memory or describe more RAM"),
                );
            }
        }
    }

    /// Static-memory banks: inside RAM, clear of reserved ranges, the DTB, Xen and other
    /// banks (modules are checked against banks from the module side).
    fn static_mem_banks(&mut self, d: &'s Domain) {
        let first = self
            .occupants
            .iter()
            .position(|o| matches!(o.kind, Occ::StaticMem(_)))
            .unwrap_or(0);
        for r in &d.static_mem {
            let k = self
                .occupants
                .iter()
                .skip(first)
                .position(|o| std::ptr::eq(o.loc, &r.loc))
                .unwrap_or(usize::MAX);
            if !self.in_ram(r.base, r.size) {
                self.push(
                    Diagnostic::new(
                        STATIC_MEM_OVERLAP,
                        r.loc.clone(),
                        format!(
                            "static-memory bank {} of `{}` is not inside RAM",
                            range_str(r.base, r.size),
                            d.name
                        ),
                    )
                    .help("place static memory inside a /memory bank"),
                );
            }
            let subject = format!(
                "static-memory bank {} of `{}`",
                range_str(r.base, r.size),
                d.name
            );
            self.occupant_overlaps(
                r.base,
                r.size,
                |o| match o {
                    Occ::Reserved | Occ::Placed => true,
                    Occ::Module(_) => false,
                    Occ::StaticMem(j) => j < k,
                },
                |o| {
                    Diagnostic::new(
                        STATIC_MEM_OVERLAP,
                        r.loc.clone(),
                        format!("{subject} overlaps {}", o.what),
                    )
                    .help("give each domain its own free static-memory range")
                },
            );
        }
    }

    // ---- §3 xen,enhanced ----
    fn enhanced(&mut self, d: &Domain) {
        let sys = self.sys;
        match &d.enhanced {
            Enhanced::Enabled if sys.dom0().is_none() => self.push(
                Diagnostic::new(
                    ENHANCED_NEEDS_DOM0,
                    d.enhanced_loc.clone(),
                    format!(
                        "domain `{}` asks for xenstore but the system has no dom0",
                        d.name
                    ),
                )
                .label("\"enabled\" (or an empty value) means xenstore")
                .help("use `xen,enhanced = \"no-xenstore\"` in a dom0less system"),
            ),
            Enhanced::Unknown(s) => {
                let extra = if s == "legacy" {
                    " (\"legacy\" is new in Xen 4.21)"
                } else if s == "disabled" {
                    " (\"disabled\" has the same effect as leaving the property out)"
                } else {
                    ""
                };
                self.push(
                    Diagnostic::new(
                        ENHANCED_UNKNOWN,
                        d.enhanced_loc.clone(),
                        format!(
                            "Xen {} does not know `xen,enhanced = \"{s}\"`{extra}",
                            sys.target.xen
                        ),
                    )
                    .label("treated as absent: no /hypervisor node, no xenstore")
                    .help("use \"no-xenstore\", \"enabled\", or leave the property out"),
                )
            }
            _ => {}
        }
        if d.enhanced == Enhanced::Absent {
            let idx = sys.domains.iter().position(|x| std::ptr::eq(x, d));
            let has_evtchn = sys
                .evtchns
                .iter()
                .any(|p| Some(p.first.domain) == idx || Some(p.second.domain) == idx);
            if has_evtchn {
                self.push(
                    Diagnostic::new(
                        ENHANCED_RECOMMENDED,
                        d.loc.clone(),
                        format!("domain `{}` has static event channels but no `xen,enhanced`", d.name),
                    )
                    .help("add `xen,enhanced = \"no-xenstore\"` if the guest is Linux (it finds Xen through /hypervisor)"),
                );
            }
        }
    }

    // ---- §4.3 modules ----
    fn modules(&mut self) {
        let sys = self.sys;
        let mods: Vec<(DomIdx, &Module)> = sys.modules().collect();
        if mods.len() > b::MAX_MODULES {
            let (_, m) = mods[b::MAX_MODULES];
            self.push(
                Diagnostic::new(
                    TOO_MANY_MODULES,
                    m.loc.clone(),
                    format!(
                        "{} boot modules; Xen keeps only the first {}",
                        mods.len(),
                        b::MAX_MODULES
                    ),
                )
                .label("this and later modules are dropped")
                .help("reduce the number of modules (e.g. combine ramdisks)"),
            );
        }
        for (i, &(di, m)) in mods.iter().enumerate() {
            let dn = &self.dom(di).name;
            if let Some(args) = &m.bootargs {
                if args.len() >= b::MAX_BOOTARGS {
                    self.push(
                        Diagnostic::new(
                            BOOTARGS_TOO_LONG,
                            m.bootargs_loc.clone(),
                            format!(
                                "command line of `{dn}` is {} bytes; Xen allows {}",
                                args.len(),
                                b::MAX_BOOTARGS - 1
                            ),
                        )
                        .help("shorten the command line"),
                    );
                }
            }
            if !self.in_ram(m.addr, m.size) {
                self.push(
                    Diagnostic::new(
                        MODULE_NOT_RAM,
                        m.loc.clone(),
                        format!(
                            "{} module of `{dn}` at {} is not inside RAM",
                            m.kind.as_str(),
                            range_str(m.addr, m.size)
                        ),
                    )
                    .help("load modules into a /memory bank"),
                );
            }
            let subject = format!(
                "{} module of `{dn}` {}",
                m.kind.as_str(),
                range_str(m.addr, m.size)
            );
            self.occupant_overlaps(
                m.addr,
                m.size,
                |o| !matches!(o, Occ::Module(j) if j >= i),
                |o| {
                    Diagnostic::new(
                        MODULE_OVERLAP,
                        m.loc.clone(),
                        format!("{subject} overlaps {}", o.what),
                    )
                    .help("move the module to free RAM")
                },
            );
        }
    }

    // ---- §1.6 static event channels ----
    fn evtchns(&mut self) {
        let sys = self.sys;
        if !sys.evtchns.is_empty() && !sys.target.binds_static_evtchns() {
            self.push(
                Diagnostic::new(
                    EVTCHN_DISABLED,
                    sys.evtchns[0].first.loc.clone(),
                    "the target Xen is built without CONFIG_STATIC_EVTCHN",
                )
                .label("Xen silently ignores this and every other static event channel")
                .help("build Xen with CONFIG_STATIC_EVTCHN=y (the default)"),
            );
        }
        // (domain, port) → first use.
        let mut used: HashMap<(DomIdx, u32), &EvtchnEnd> = HashMap::new();
        for pair in &sys.evtchns {
            if pair.first.domain == pair.second.domain {
                self.push(
                    Diagnostic::new(
                        EVTCHN_LOOPBACK,
                        pair.first.loc.clone(),
                        format!(
                            "both ends of this event channel are in domain `{}`",
                            self.dom(pair.first.domain).name
                        ),
                    )
                    .with(pair.second.loc.clone(), "the other end")
                    .help("a loopback channel is legal but unusual; check the peer reference"),
                );
            }
            for (end, is_first) in [(&pair.first, true), (&pair.second, false)] {
                let d = self.dom(end.domain);
                if end.port == 0 {
                    let what = if is_first {
                        "Xen allocates some free port, then fails to bind the peer to port 0 and panics"
                    } else {
                        "Xen silently picks the first free port, which the guest cannot know"
                    };
                    self.push(
                        Diagnostic::new(
                            EVTCHN_PORT_ZERO,
                            end.port_loc.clone(),
                            format!("port 0 in domain `{}` is reserved", d.name),
                        )
                        .label(what)
                        .help(format!("use a port between 1 and {}", d.max_port())),
                    );
                    continue;
                }
                if end.port > d.max_port() {
                    self.push(
                        Diagnostic::new(
                            EVTCHN_PORT_RANGE,
                            end.port_loc.clone(),
                            format!(
                                "port {} is out of range for {} `{}`",
                                end.port,
                                if d.dom0 { "dom0" } else { "domU" },
                                d.name
                            ),
                        )
                        .label(format!("the highest port is {}", d.max_port()))
                        .help(format!("use a port between 1 and {}", d.max_port())),
                    );
                    continue;
                }
                if end.port == 1 && d.enhanced.xenstore() {
                    self.push(
                        Diagnostic::new(
                            EVTCHN_PORT_XENSTORE,
                            end.port_loc.clone(),
                            format!(
                                "port 1 of `{}` is taken by the xenstore event channel",
                                d.name
                            ),
                        )
                        .with(d.enhanced_loc.clone(), "xenstore is enabled here")
                        .help("use port 2 or higher"),
                    );
                }
                if let Some(prev) = used.get(&(end.domain, end.port)) {
                    self.push(
                        Diagnostic::new(
                            EVTCHN_PORT_DUPLICATE,
                            end.port_loc.clone(),
                            format!("port {} of `{}` is already used", end.port, d.name),
                        )
                        .with(prev.port_loc.clone(), "first used here")
                        .help("give every static event channel of a domain its own port"),
                    );
                } else {
                    used.insert((end.domain, end.port), end);
                }
            }
        }
    }

    // ---- §2.7 static shared memory ----
    fn shm(&mut self) {
        let sys = self.sys;
        if sys.shm.is_empty() {
            return;
        }
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
                self.push(
                    Diagnostic::new(SHM_ID_EMPTY, n.id_loc.clone(), "`xen,shm-id` is empty")
                        .label("Xen crashes (BUG_ON) while building the domain")
                        .help("give the region a name of 1 to 15 characters"),
                );
            } else if n.id.len() >= b::MAX_SHM_ID_LENGTH {
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
                    self.push(
                        Diagnostic::new(
                            SHM_HEAP_FORM_UNSUPPORTED,
                            n.mem_loc.clone(),
                            format!("region `{}` has no host address, which Xen {} does not support", n.id, sys.target.xen),
                        )
                        .help("give the host address (`xen,shared-mem = <HOST GUEST SIZE>`), or target Xen 4.19+"),
                    );
                } else if d.direct_map || d.dom0 {
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
        // Host ranges of different regions: sorted sweep.
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
            self.push(
                Diagnostic::new(
                    SHM_ONLY_BORROWERS,
                    first.role_loc.clone(),
                    format!("region `{}` has only borrowers", first.id),
                )
                .label("nobody owns the pages; Xen accepts this silently")
                .help("make one node `role = \"owner\"`, or drop the roles so DOMID_IO owns the region"),
            );
        }
    }

    fn host_range(&mut self, n: &ShmNode, host: u64) {
        let sys = self.sys;
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
