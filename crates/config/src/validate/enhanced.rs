//! §3 `xen,enhanced`: xenstore without dom0, unknown values, event channels without it.

use super::Validator;
use crate::codes::*;
use crate::model::*;
use staticbus_diag::Diagnostic;

impl<'s> Validator<'s> {
    // ---- §3 xen,enhanced ----
    pub(super) fn enhanced(&mut self, d: &Domain) {
        let sys = self.sys;
        match &d.enhanced {
            // SB0301: xenstore (`"enabled"`) without dom0.
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
            // SB0302: a value Xen does not know.
            Enhanced::Unknown(s) => {
                let extra = if s == "legacy" {
                    " (\"legacy\" is new in Xen 4.21)"
                } else {
                    ""
                };
                // "enabled" is only a fix where there is a dom0 to run xenstore (SB0301).
                let values = if sys.dom0().is_some() {
                    "\"no-xenstore\" (PV interfaces without xenstore), \"enabled\" (with xenstore, run by dom0) or \"disabled\" (none, like leaving the property out)"
                } else {
                    "\"no-xenstore\" (PV interfaces without xenstore) or \"disabled\" (none, like leaving the property out); \"enabled\" needs dom0"
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
                    .help(format!("use {values}")),
                )
            }
            _ => {}
        }
        // SB0304: a Linux domain without `xen,enhanced`.
        if let (Some(l), Enhanced::Absent | Enhanced::Disabled) = (&d.linux, &d.enhanced) {
            let at = if d.enhanced_loc == d.loc {
                l.loc.clone()
            } else {
                d.enhanced_loc.clone()
            };
            self.push(
                Diagnostic::new(
                    ENHANCED_LINUX_MISSING,
                    at,
                    if d.enhanced == Enhanced::Disabled {
                        format!("Linux domain `{}` has `xen,enhanced = \"disabled\"`", d.name)
                    } else {
                        format!("Linux domain `{}` has no `xen,enhanced`", d.name)
                    },
                )
                .label("without it Xen writes no /hypervisor node, and Linux does not see Xen")
                .help("set `enhanced = \"no-xenstore\"` (the default when `enhanced` is left out; \"enabled\" needs dom0)"),
            );
            return;
        }
        // SB0303: static event channels in a domain without `xen,enhanced`.
        if matches!(d.enhanced, Enhanced::Absent | Enhanced::Disabled) {
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
}
