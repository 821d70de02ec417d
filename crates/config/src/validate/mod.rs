//! Xen's rules (and, for `hypervisor = "qemu-ivshmem"`, that platform's), checked on the
//! [`System`] model before anything boots.
//!
//! One module per area of `shared/spec/xen-dom0less.md`: `evtchn` (§1.6 static event
//! channels), `shm` (§2.7 static shared memory), `enhanced` (§3 `xen,enhanced`), `domains`
//! and `modules` (§4 domains, memory and boot modules); §11 (what real Xen accepts
//! silently) is checked in the area it belongs to. Each rule sits under a comment naming
//! its code (`// SB0111: …`). The structural rules of the device-tree binding are checked
//! while reading the tree ([`crate::from_dt`]).

mod domains;
mod enhanced;
mod evtchn;
mod ivshmem;
mod modules;
mod shm;

use crate::model::*;
use staticbus_diag::{Diagnostic, Diagnostics, Location};

/// Checks `sys` and returns every problem found.
///
/// A system for `hypervisor = "qemu-ivshmem"` has no Xen, no host tree to boot and no
/// module placement, so Xen's rules do not apply to it; it gets that platform's own
/// (`ivshmem`: one address per region inside the shared object, ports that are doorbell
/// vectors; docs/adr/0005).
pub fn validate(sys: &System) -> Diagnostics {
    let mut v = Validator {
        sys,
        diags: Diagnostics::new(),
        occupants: occupants(sys),
    };
    match sys.target.hypervisor {
        Hypervisor::Xen => {
            v.domains();
            v.modules();
            v.evtchns();
            v.shm();
        }
        Hypervisor::QemuIvshmem => v.ivshmem(),
    }
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
}
