//! §4 domains and memory: names, `memory`, `cpus`, the kernel, static memory and
//! direct map, the platform's RAM.

use super::{range_str, size_str, Occ, Validator};
use crate::codes::*;
use crate::model::*;
use staticbus_abi::dt as b;
use staticbus_diag::{Diagnostic, Location};
use std::collections::HashMap;

impl<'s> Validator<'s> {
    // ---- §4 domains ----
    pub(super) fn domains(&mut self) {
        let sys = self.sys;
        let mut by_name: HashMap<&str, &Domain> = HashMap::new();
        for d in &sys.domains {
            // SB0401: two domains with the same name.
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
            // SB0402: a domain name longer than Xen handles.
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
            // SB0403: zero `memory` (a missing one is reported by the readers).
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
            // SB0404: `cpus` out of range (8 vCPUs on GICv2, 128 otherwise).
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
            // SB0405: a domain without a kernel module.
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
                // SB0414: static memory in a Xen built without CONFIG_STATIC_MEMORY.
                if !sys.target.static_memory {
                    self.push(
                        Diagnostic::new(
                            STATIC_MEM_DISABLED,
                            d.static_mem_loc.clone(),
                            format!("domain `{}` uses static memory", d.name),
                        )
                        .help("build Xen with CONFIG_STATIC_MEMORY (needs CONFIG_UNSUPPORTED) and pass --static-memory (implied by --static-shm), or set `static-memory = true` in [target]"),
                    );
                }
                let sum: u64 = d
                    .static_mem
                    .iter()
                    .map(|r| r.size)
                    .fold(0, u64::saturating_add);
                // SB0412: `memory` must equal the sum of the static-memory banks.
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
                // SB0413: `direct-map` without static memory.
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
        // SB0415: no domain at all has a kernel.
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
        self.static_heap();
        // SB0416: domains ask for more memory than the platform has.
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

    /// `xen,static-heap` banks: inside RAM, 64 KiB aligned (booting.txt).
    fn static_heap(&mut self) {
        let sys = self.sys;
        for r in &sys.platform.reserved {
            if r.kind != ReservedKind::StaticHeap {
                continue;
            }
            let (base, size) = (r.range.base, r.range.size);
            // SB0420: a static-heap bank outside RAM.
            if !self.in_ram(base, size) {
                self.push(
                    Diagnostic::new(
                        STATIC_HEAP_INVALID,
                        r.range.loc.clone(),
                        format!(
                            "static-heap bank {} is not inside RAM",
                            range_str(base, size)
                        ),
                    )
                    .label("Xen gives it to its heap allocator unchecked")
                    .help("place the static heap inside a /memory bank"),
                );
            }
            // SB0420: a static-heap bank not 64 KiB aligned.
            const ALIGN: u64 = 64 << 10;
            if base % ALIGN != 0 || size % ALIGN != 0 {
                self.push(
                    Diagnostic::new(
                        STATIC_HEAP_INVALID,
                        r.range.loc.clone(),
                        format!(
                            "static-heap bank {} is not 64 KiB aligned",
                            range_str(base, size)
                        ),
                    )
                    .help("align the static heap's address and size to 64 KiB (0x10000)"),
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
            // SB0417: a static-memory bank outside RAM.
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
            // SB0417: a static-memory bank overlapping a reserved range, the DTB, Xen or an
            // earlier bank.
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
}
