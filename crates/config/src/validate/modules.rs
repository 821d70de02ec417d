//! §4.3 boot modules: how many, command lines, inside RAM and clear of everything else.

use super::{range_str, Occ, Validator};
use crate::codes::*;
use crate::model::*;
use staticbus_abi::dt as b;
use staticbus_diag::Diagnostic;

impl<'s> Validator<'s> {
    // ---- §4.3 modules ----
    pub(super) fn modules(&mut self) {
        let sys = self.sys;
        let mods: Vec<(DomIdx, &Module)> = sys.modules().collect();
        // SB0411: more boot modules than Xen keeps.
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
}
