//! From the host DTB to the emulator's [`BootSpec`], through the compiler's device-tree
//! reader (`staticbus_config::from_dt`), which walks the tree the way Xen does: domains
//! are the `xen,domain` children of `/chosen` (domids 1, 2, … in tree order), static pairs
//! are bound in the order of Xen's walk, shared-memory nodes are taken per domain node.
//!
//! A DTB does not say which Xen build it is for, so the caller passes the [`Target`] (from
//! the system description); the tree is checked against that target's rules before it is
//! turned into a boot spec, as `staticbus check host.dtb` would check it.

use staticbus_config::compile::{self, Options};
use staticbus_config::model::{ShmRole, System, Target};
use staticbus_diag::{Diagnostics, Sources};
use staticbus_emu::{BootDomain, BootEnd, BootPair, BootShm, BootSpec, XenRelease};
use std::path::Path;

/// A host tree read back and checked.
#[derive(Debug)]
pub struct HostTree {
    /// The model of the tree (read the way Xen reads it).
    pub system: System,
    /// What the emulator boots from.
    pub spec: BootSpec,
    /// Warnings of the check (errors make [`read_host_dtb`] fail).
    pub diags: Diagnostics,
}

/// Why a host tree cannot be booted: the tree did not read, or broke Xen's rules. Render
/// [`HostTreeError::diags`] with [`HostTreeError::sources`].
#[derive(Debug)]
pub struct HostTreeError {
    /// The files the diagnostics point into.
    pub sources: Sources,
    /// What is wrong.
    pub diags: Diagnostics,
    /// The file could not be read at all.
    pub io_error: bool,
}

/// Reads the host DTB at `path` for `target` and checks it (see the module documentation).
pub fn read_host_dtb(path: &Path, target: &Target) -> Result<HostTree, HostTreeError> {
    read_host_dtb_with(path, target, false)
}

/// [`read_host_dtb`], where with `beyond_xen_tables` the sizes of Xen's fixed tables are
/// warnings ([`Options::beyond_xen_tables`], `staticbus run --beyond-xen-tables`).
pub fn read_host_dtb_with(
    path: &Path,
    target: &Target,
    beyond_xen_tables: bool,
) -> Result<HostTree, HostTreeError> {
    let mut sources = Sources::new();
    let opts = Options {
        xen: Some(target.xen),
        static_shm: Some(target.static_shm),
        beyond_xen_tables,
        ..Options::default()
    };
    let c = compile::check(&mut sources, path, &opts);
    match c.system {
        Some(mut system) if !c.io_error && !c.diags.has_errors() => {
            // The one build option a DTB reader cannot be told through `Options`.
            system.target.static_evtchn = target.static_evtchn;
            let spec = boot_spec(&system);
            Ok(HostTree {
                system,
                spec,
                diags: c.diags,
            })
        }
        _ => Err(HostTreeError {
            sources,
            diags: c.diags,
            io_error: c.io_error,
        }),
    }
}

/// The boot spec of a model: what Xen takes from it at boot.
pub fn boot_spec(sys: &System) -> BootSpec {
    let (major, minor) = sys.target.xen.numbers();
    let domid = |i: usize| sys.domains[i].domid;
    BootSpec {
        xen: XenRelease { major, minor },
        // Before 4.19 pairs are always bound; from 4.19 on, with CONFIG_STATIC_EVTCHN.
        static_evtchn: sys.target.binds_static_evtchns(),
        static_shm: sys.target.static_shm,
        domains: sys
            .domains
            .iter()
            .map(|d| BootDomain {
                domid: d.domid,
                name: d.name.clone(),
                dom0: d.dom0,
                xenstore: !d.dom0 && d.enhanced.xenstore(),
                max_port: d.max_port(),
            })
            .collect(),
        evtchns: sys
            .evtchns
            .iter()
            .map(|p| BootPair {
                first: BootEnd {
                    domid: domid(p.first.domain),
                    port: p.first.port,
                },
                second: BootEnd {
                    domid: domid(p.second.domain),
                    port: p.second.port,
                },
            })
            .collect(),
        shm: sys
            .shm
            .iter()
            .map(|n| BootShm {
                domid: domid(n.domain),
                id: n.id.clone(),
                host: n.host,
                guest: n.guest,
                size: n.size,
                role: n.role.map(|r| match r {
                    ShmRole::Owner => staticbus_emu::ShmRole::Owner,
                    ShmRole::Borrower => staticbus_emu::ShmRole::Borrower,
                }),
            })
            .collect(),
    }
}
