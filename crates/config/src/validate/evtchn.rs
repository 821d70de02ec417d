//! §1.6 static event channels: the Kconfig option, loopback pairs and the ports.

use super::Validator;
use crate::codes::*;
use crate::model::*;
use staticbus_diag::Diagnostic;
use std::collections::HashMap;

impl<'s> Validator<'s> {
    // ---- §1.6 static event channels ----
    pub(super) fn evtchns(&mut self) {
        let sys = self.sys;
        // SB0114: static event channels in a Xen that ignores them (CONFIG_STATIC_EVTCHN off).
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
            // SB0113: both ends in one domain.
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
                // SB0109: port 0 is reserved.
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
                // SB0110: port above the domain's highest.
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
                // SB0112: port 1 in a domain with xenstore.
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
                // SB0111: a port used twice in one domain.
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
}
