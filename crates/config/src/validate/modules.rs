//! §4.3 boot modules: how many, command lines, inside RAM and clear of everything else.

use super::{range_str, size_str, Occ, Validator};
use crate::codes::*;
use crate::model::*;
use staticbus_abi::dt as b;
use staticbus_diag::{Diagnostic, Location};

impl<'s> Validator<'s> {
    // ---- §4.3 modules ----
    pub(super) fn modules(&mut self) {
        let sys = self.sys;
        let mods: Vec<(DomIdx, &Module)> = sys.modules().collect();
        // SB0411: more boot modules than Xen keeps. Xen's own image and the host DTB take
        // two of its MAX_MODULES slots before the tree's modules are read (setup.c,
        // boot_fdt_info).
        let room = b::MAX_MODULES - 2;
        if mods.len() > room {
            let (_, m) = mods[room];
            self.push(
                Diagnostic::new(
                    TOO_MANY_MODULES,
                    m.loc.clone(),
                    format!(
                        "{} boot modules; Xen keeps {} and takes two for itself and the host DTB, so only the first {room} of the tree",
                        mods.len(),
                        b::MAX_MODULES
                    ),
                )
                .label("this and later modules are dropped")
                .help("reduce the number of modules (e.g. combine ramdisks)"),
            );
        }
        for d in &sys.domains {
            self.first_bank(d);
        }
        for (i, &(di, m)) in mods.iter().enumerate() {
            let dn = &self.dom(di).name;
            // SB0410: a command line longer than Xen allows.
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
            // SB0409: a module outside RAM.
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
            // SB0408: a module overlapping another module, reserved memory, static memory, the DTB
            // or Xen.
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

    /// SB0421: Xen's `place_modules` (kernel.c, 4.17–4.20) puts the kernel at the start of
    /// a domU's first RAM bank (an arm64 Image with text_offset 0), rounded up to 2 MiB,
    /// and the guest DTB and the initrd, each rounded up to 2 MiB, after it in the same
    /// bank; it panics unless they fit with room to spare. The kernel's size here is the
    /// module's (its header's image_size, which Xen uses, may be larger).
    fn first_bank(&mut self, d: &'s Domain) {
        const MB2: u64 = 2 << 20;
        // DOMU_DTB_SIZE: the tree Xen writes for a domU, plus a passthrough tree.
        const DOMU_DTB: u64 = 4096;
        let round = |v: u64| v.div_ceil(MB2).saturating_mul(MB2);
        if d.dom0 || d.memory_kib.is_none() {
            return;
        }
        let Some(kernel) = d.modules.iter().find(|m| m.kind == ModuleKind::Kernel) else {
            return;
        };
        let Some(&(_, bank)) = d.guest_ram().first() else {
            return;
        };
        let initrd = d
            .modules
            .iter()
            .find(|m| m.kind == ModuleKind::Ramdisk)
            .map_or(0, |m| round(m.size));
        let passthrough = d
            .modules
            .iter()
            .find(|m| m.kind == ModuleKind::DeviceTree)
            .map_or(0, |m| m.size);
        let dtb = round(DOMU_DTB + passthrough);
        let kern = round(kernel.size);
        let need = kern.saturating_add(initrd).saturating_add(dtb);
        // SB0421: the kernel, the DTB and the initrd do not fit in the first bank.
        if need >= bank {
            let panic = if need > bank {
                "Not enough memory in the first bank for the kernel+dtb+initrd"
            } else {
                "Unable to find suitable location for dtb+initrd"
            };
            self.push(
                Diagnostic::new(
                    FIRST_BANK_TOO_SMALL,
                    if d.memory_loc == Location::None { d.loc.clone() } else { d.memory_loc.clone() },
                    format!(
                        "the first RAM bank of `{}` ({}) cannot hold its kernel, DTB and initrd ({} after Xen's 2 MiB rounding)",
                        d.name,
                        size_str(bank),
                        size_str(need)
                    ),
                )
                .label(format!("Xen panics: `{panic}`"))
                .with(kernel.loc.clone(), format!("kernel: {} rounded up to {}", size_str(kernel.size), size_str(kern)))
                .note(format!(
                    "kernel {} + DTB {} + initrd {} must be less than the bank",
                    size_str(kern),
                    size_str(dtb),
                    size_str(initrd)
                ))
                .help(format!(
                    "give the domain more than {} of memory in its first bank",
                    size_str(need)
                )),
            );
        }
    }
}
