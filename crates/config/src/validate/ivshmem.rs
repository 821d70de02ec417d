//! The rules of `hypervisor = "qemu-ivshmem"` (docs/adr/0005-ivshmem-platform.md): every
//! region is a window of the one shared object (BAR2 at `staticbus_abi::ivshmem::SHM_BASE`),
//! at the same guest address in every member, clear of the control page at the object's
//! end and of every other region (all VMs map the one object, so two regions of different
//! domains can collide too); every event-channel port is the doorbell vector its peers
//! ring.

use super::{hex, Validator};
use crate::codes::*;
use staticbus_abi::ivshmem;
use staticbus_diag::Diagnostic;
use std::collections::BTreeMap;

impl<'s> Validator<'s> {
    pub(super) fn ivshmem(&mut self) {
        let sys = self.sys;
        let window_end = ivshmem::SHM_BASE + ivshmem::SHM_MAX - ivshmem::CONTROL_PAGE;
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (j, n) in sys.shm.iter().enumerate() {
            let dom = &self.dom(n.domain).name;
            // SB0901: a region outside the shared object.
            if n.guest < ivshmem::SHM_BASE || n.guest.saturating_add(n.size) > window_end {
                self.push(
                    Diagnostic::new(
                        IVSHMEM_REGION_OUTSIDE,
                        n.mem_loc.clone(),
                        format!(
                            "region `{}` of `{dom}` is at {} (+{}), outside the shared object",
                            n.id,
                            hex(n.guest),
                            hex(n.size)
                        ),
                    )
                    .note(format!(
                        "the object is BAR2 at {}; regions may use [{}, {}) (the last page is \
                         the server's)",
                        hex(ivshmem::SHM_BASE),
                        hex(ivshmem::SHM_BASE),
                        hex(window_end)
                    ))
                    .help("drop `guest` (the allocator places it in the object)"),
                );
            }
            // SB0902: one region, two addresses.
            match first.get(n.id.as_str()) {
                Some(&i) if sys.shm[i].guest != n.guest => {
                    let other = &sys.shm[i];
                    self.push(
                        Diagnostic::new(
                            IVSHMEM_REGION_SPLIT,
                            n.mem_loc.clone(),
                            format!(
                                "region `{}` is at {} in `{dom}` but at {} in `{}`",
                                n.id,
                                hex(n.guest),
                                hex(other.guest),
                                self.dom(other.domain).name
                            ),
                        )
                        .with(other.mem_loc.clone(), "the other address")
                        .help("give every member the same `guest` address, or leave it to the allocator"),
                    );
                }
                Some(_) => {}
                None => {
                    first.insert(n.id.as_str(), j);
                }
            }
        }
        // SB0904: two regions in the same bytes of the object. One window per region (its
        // first member's; SB0902 reports the others), inside the object (SB0901 reports
        // the rest), compared in the order of their start.
        let mut windows: Vec<usize> = first
            .values()
            .copied()
            .filter(|&j| {
                let n = &sys.shm[j];
                n.guest >= ivshmem::SHM_BASE && n.guest.saturating_add(n.size) <= window_end
            })
            .collect();
        windows.sort_by_key(|&j| (sys.shm[j].guest, j));
        for (k, &a) in windows.iter().enumerate() {
            let (na, a_end) = (&sys.shm[a], sys.shm[a].guest + sys.shm[a].size);
            for &b in &windows[k + 1..] {
                let nb = &sys.shm[b];
                if nb.guest >= a_end {
                    break;
                }
                let (overlap_start, overlap_end) = (nb.guest, a_end.min(nb.guest + nb.size));
                self.push(
                    Diagnostic::new(
                        IVSHMEM_REGION_OVERLAP,
                        nb.mem_loc.clone(),
                        format!(
                            "region `{}` of `{}` at {} (+{}) overlaps region `{}` of `{}` at {} \
                             (+{}) in the shared object",
                            nb.id,
                            self.dom(nb.domain).name,
                            hex(nb.guest),
                            hex(nb.size),
                            na.id,
                            self.dom(na.domain).name,
                            hex(na.guest),
                            hex(na.size)
                        ),
                    )
                    .with(na.mem_loc.clone(), format!("region `{}` is here", na.id))
                    .note(format!(
                        "every VM maps the whole object: [{}, {}) would be both regions' bytes",
                        hex(overlap_start),
                        hex(overlap_end)
                    ))
                    .help(format!(
                        "move `{}` to {} or beyond (past `{}`), or drop its `guest` and let the \
                         allocator place it",
                        nb.id,
                        hex(a_end),
                        na.id
                    )),
                );
            }
        }
        for pair in &sys.evtchns {
            for end in [&pair.first, &pair.second] {
                // SB0903: a port that is no doorbell vector.
                if end.port == ivshmem::LEFT_VECTOR || end.port >= ivshmem::MAX_VECTORS {
                    self.push(
                        Diagnostic::new(
                            IVSHMEM_PORT_NOT_VECTOR,
                            end.port_loc.clone(),
                            format!(
                                "port {} of `{}` is no doorbell vector",
                                end.port,
                                self.dom(end.domain).name
                            ),
                        )
                        .note(format!(
                            "a port is the vector the peers ring: 1..{} (vector {} is the \
                             server's notice that a peer left)",
                            ivshmem::MAX_VECTORS,
                            ivshmem::LEFT_VECTOR
                        ))
                        .help("leave the port to the allocator (it counts from 1)"),
                    );
                }
            }
        }
    }
}
