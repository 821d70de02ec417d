//! After boot, before any domain runs: does what the host tree set up agree with what each
//! domain's manifest promises its guest?
//!
//! A guest learns its ports, its peers, which of its ports starts pending and which regions
//! it maps from its manifest; the hypervisor learns them from the host tree. Both are
//! written by `staticbus build`, by two different emitters. On real Xen a disagreement
//! shows up as a guest that waits forever, or takes the bind-time event for a message;
//! here it is reported before anything starts, one line per fact.

use staticbus_emu::{BootSpec, DomId, Hypervisor, PortState, ShmRole};
use staticbus_manifest as m;

/// One domain's manifest, by the name `build` wrote it under (`domains/<name>/`).
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The domain name the manifest was written for.
    pub domain: &'a str,
    /// The manifest.
    pub manifest: &'a m::Manifest,
}

fn port_text(st: Option<PortState>) -> String {
    match st {
        None => "does not exist".into(),
        Some(PortState::Free) => "is free".into(),
        Some(PortState::Reserved) => "is reserved".into(),
        Some(PortState::Unbound { remote }) => format!("is unbound (for d{remote})"),
        Some(PortState::Interdomain {
            remote_dom,
            remote_port,
        }) => format!("is bound to d{remote_dom}:{remote_port}"),
    }
}

fn role_text(r: Option<ShmRole>) -> &'static str {
    match r {
        Some(ShmRole::Owner) => "owner",
        Some(ShmRole::Borrower) => "borrower",
        None => "no role",
    }
}

/// Compares the booted hypervisor with the manifests; `pending(domid, port)` reads a
/// port's pending bit in the domain's `shared_info`. Returns one sentence per
/// disagreement, naming the domain; empty when they agree.
pub fn against_manifests(
    hv: &Hypervisor,
    spec: &BootSpec,
    pending: impl Fn(DomId, u32) -> bool,
    manifests: &[Expected<'_>],
) -> Vec<String> {
    let mut out = Vec::new();
    for e in manifests {
        let (name, man) = (e.domain, e.manifest);
        let Some(d) = spec.domains.iter().find(|d| d.name == name) else {
            out.push(format!(
                "`{name}`: the host tree has no domain of that name"
            ));
            continue;
        };
        if man.domain != name {
            out.push(format!(
                "`{name}`: its manifest is written for domain `{}`",
                man.domain
            ));
        }
        if man.domid != d.domid {
            out.push(format!(
                "`{name}`: the host tree creates it as d{}, its manifest says d{} \
                 (domain nodes out of order in /chosen?)",
                d.domid, man.domid
            ));
            continue;
        }
        let id = d.domid;
        for ev in man.evtchns {
            let port = ev.local_port;
            let st = hv.port_state(id, port);
            let want = PortState::Interdomain {
                remote_dom: ev.remote_domid,
                remote_port: ev.remote_port,
            };
            if st != Some(want) {
                out.push(format!(
                    "`{name}` port {port}: in the host tree it {}, its manifest says bound to \
                     d{}:{} (`{}`)",
                    port_text(st),
                    ev.remote_domid,
                    ev.remote_port,
                    ev.remote_domain
                ));
                continue;
            }
            let p = pending(id, port);
            if p != ev.initially_pending {
                out.push(if p {
                    format!(
                        "`{name}` port {port}: starts pending (the host tree binds this end \
                         second), but its manifest says the other end does"
                    )
                } else {
                    format!(
                        "`{name}` port {port}: its manifest says it starts pending, but the \
                         host tree binds this end first (pair order swapped?)"
                    )
                });
            }
        }
        for pair in &spec.evtchns {
            for end in [pair.first, pair.second] {
                if end.domid == id && !man.evtchns.iter().any(|ev| ev.local_port == end.port) {
                    out.push(format!(
                        "`{name}` port {}: the host tree binds it, its manifest does not list it",
                        end.port
                    ));
                }
            }
        }
        let grants = hv.shm_grants(id);
        for r in man.regions {
            let Some(g) = grants.iter().find(|g| g.id == r.shm_id) else {
                out.push(format!(
                    "`{name}`: the host tree gives it no region `{}`, its manifest lists one",
                    r.shm_id
                ));
                continue;
            };
            let want_role = r.role.map(|r| match r {
                m::ShmRole::Owner => ShmRole::Owner,
                m::ShmRole::Borrower => ShmRole::Borrower,
            });
            if g.role != want_role {
                out.push(format!(
                    "`{name}` region `{}`: the host tree makes it {}, its manifest says {}",
                    r.shm_id,
                    role_text(g.role),
                    role_text(want_role)
                ));
            }
            if g.size != r.size || g.guest != r.guest_addr {
                out.push(format!(
                    "`{name}` region `{}`: the host tree maps {:#x} bytes at {:#x}, its manifest \
                     says {:#x} bytes at {:#x}",
                    r.shm_id, g.size, g.guest, r.size, r.guest_addr
                ));
            }
        }
        for g in &grants {
            if man.region(&g.id).is_none() {
                out.push(format!(
                    "`{name}`: the host tree maps region `{}` into it, its manifest does not list it",
                    g.id
                ));
            }
        }
    }
    for d in &spec.domains {
        if !manifests.iter().any(|e| e.domain == d.name) {
            out.push(format!(
                "`{}`: the host tree creates it (d{}), but there is no manifest for it",
                d.name, d.domid
            ));
        }
    }
    out
}
