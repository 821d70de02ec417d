//! The TOML system description: schema, reader, expander and allocator.
//!
//! - `schema`: the description's tables as serde types (unknown keys, wrong types and
//!   bad values become diagnostics with spans);
//! - `read`: the reader, which turns the tables into the model and resolves domain
//!   references;
//! - `expand`: the expander, which turns high-level channels into shared regions and
//!   event-channel pairs, and names the regions whose shm id is left open; `virtio` does
//!   the same for virtio devices;
//! - `alloc`: the allocator, which fills in the other values left open: event-channel
//!   ports, host ranges from the shm pool, guest ranges clear of each guest's memory map
//!   and module load addresses.
//!
//! Explicit values are used as given (the validator checks them); they are never changed.
//! See `docs/system-description.md`.

mod alloc;
mod expand;
mod read;
mod schema;
mod virtio;

pub use alloc::{first_fit, FreeList, DEFAULT_GUEST_WINDOW};
pub use read::{read_description, valid_node_name, Overrides};
pub use schema::*;

use crate::model::*;
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Location, Span};
use std::path::Path;
use toml::Spanned;

/// A port request: (pair index, is_first_end, port as given).
type PortReq = (usize, bool, Option<u32>);

/// The values of the model as the description gives them: `None` where it leaves a value
/// open for the allocator. The model holds a placeholder (0) for every open value until
/// the allocator fills it in, and the allocator asks this record, never the model, which
/// values are open. A [`System`] the reader returns has every value filled in, so no
/// rule sees a placeholder.
#[derive(Default)]
struct Given {
    /// Event-channel ends, in the order they were declared.
    ports: Vec<PortReq>,
    /// Guest address of each shared-memory node, by index into [`System::shm`].
    guest: Vec<Option<u64>>,
    /// Load address of each module, by domain index and then module index.
    module_addr: Vec<Vec<Option<u64>>>,
}

impl Given {
    /// True if the description leaves the load address of module `i` of domain `d` open.
    fn module_open(&self, d: DomIdx, i: usize) -> bool {
        self.module_addr[d][i].is_none()
    }
}

struct Builder<'a> {
    file: FileId,
    base_dir: &'a Path,
    sys: System,
    diags: Diagnostics,
    given: Given,
    base_platform: Option<Platform>,
    /// `dom_ref`'s index: the first domain of each name among the first `.1` domains.
    domain_names: (rustc_hash::FxHashMap<String, DomIdx>, usize),
}

impl Builder<'_> {
    fn loc<T>(&self, s: &Spanned<T>) -> Location {
        let r = s.span();
        Location::span(Span::new(self.file, r.start, r.end))
    }

    fn err(
        &mut self,
        code: staticbus_diag::Code,
        loc: Location,
        msg: impl Into<String>,
        help: &str,
    ) {
        self.diags.push(Diagnostic::new(code, loc, msg).help(help));
    }

    fn range(&self, r: &Spanned<RangeDesc>) -> Range {
        Range {
            base: r.get_ref().base.0,
            size: r.get_ref().size.0,
            loc: self.loc(r),
        }
    }

    /// `[uboot]`: words the script can carry as they are (no quotes, `;`, `$`, `#`, `\\`,
    /// braces or line breaks, which U-Boot's shell would interpret).
    fn uboot(&mut self, desc: &Description) {
        let bad = |s: &str, spaces: bool| {
            s.trim().is_empty()
                || s.chars().any(|c| {
                    matches!(
                        c,
                        '"' | '\'' | ';' | '$' | '#' | '\\' | '{' | '}' | '\n' | '\r'
                    ) || (!spaces && c.is_whitespace())
                })
        };
        if let Some(l) = &desc.uboot.load {
            if bad(l.get_ref(), true) {
                let loc = self.loc(l);
                self.err(
                    crate::codes::DESC_BAD_VALUE,
                    loc,
                    format!("`{}` cannot be a U-Boot load command", l.get_ref()),
                    "a command and its fixed arguments, e.g. \"tftpb\" or \"load mmc 0:1\" (no quotes, ;, $, # or braces)",
                );
            } else {
                self.sys.uboot.load = Some(l.get_ref().trim().to_string());
            }
        }
        if let Some(x) = &desc.uboot.xen {
            if bad(x.get_ref(), false) {
                let loc = self.loc(x);
                self.err(
                    crate::codes::DESC_BAD_VALUE,
                    loc,
                    format!("`{}` cannot be a file name in a U-Boot script", x.get_ref()),
                    "a path without spaces, quotes, ;, $, # or braces, e.g. \"xen\" or \"images/xen-4.20\"",
                );
            } else {
                self.sys.uboot.xen_file = Some(x.get_ref().to_string());
            }
        }
    }

    fn build(&mut self, desc: &Description, ov: &Overrides) {
        self.target(desc, ov);
        self.platform(desc);
        self.sys.xen_bootargs = desc.xen.bootargs.clone();
        self.uboot(desc);
        self.domains(desc);
        if self.diags.has_errors() {
            return;
        }
        self.evtchns(desc);
        self.shm(desc);
        self.channels(desc);
        self.virtio(desc);
        if self.diags.has_errors() {
            return;
        }
        debug_assert_eq!(self.given.guest.len(), self.sys.shm.len());
        debug_assert_eq!(self.given.module_addr.len(), self.sys.domains.len());
        self.alloc_ports();
        self.order_evtchns();
        self.alloc_host();
        self.alloc_guest();
        self.alloc_modules();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<System>, Diagnostics) {
        read_description(FileId(0), text, "t", Path::new("."), &Overrides::default())
    }

    /// `[uboot]` reaches the model; words U-Boot's shell would interpret are refused.
    #[test]
    fn uboot_settings() {
        let base = "[platform]\nram = [{ base = 0x4000_0000, size = \"1GiB\" }]\n[[domain]]\nname = \"a\"\nmemory = \"16MiB\"\nkernel = { size = \"1MiB\" }\n";
        let (sys, d) = read(&format!(
            "{base}[uboot]\nload = \"load mmc 0:1\"\nxen = \"boot/xen\"\n"
        ));
        assert!(!d.has_errors(), "{d:?}");
        let sys = sys.unwrap();
        assert_eq!(sys.uboot.load.as_deref(), Some("load mmc 0:1"));
        assert_eq!(sys.uboot.xen_file.as_deref(), Some("boot/xen"));
        for bad in [
            "load = \"tftpb; reset\"",
            "load = \"\"",
            "xen = \"my xen\"",
            "xen = \"${x}\"",
        ] {
            let (_, d) = read(&format!("{base}[uboot]\n{bad}\n"));
            assert_eq!(d.codes(), ["SB0503"], "{bad}");
        }
    }

    /// On qemu-ivshmem the object is one for every VM: an open region is placed clear of
    /// the regions of every domain (hand-placed or allocated), not only of its members'.
    /// On Xen the same description reuses the address: each domain's map is its own.
    #[test]
    fn ivshmem_regions_are_placed_clear_of_every_domains_regions() {
        let text = |hypervisor: &str| {
            format!(
                r#"
            [target]
            hypervisor = "{hypervisor}"
            [platform]
            ram = [{{ base = 0x4000_0000, size = "1GiB" }}]
            [[domain]]
            name = "a"
            memory = "16MiB"
            kernel = {{ size = 0x1000 }}
            [[domain]]
            name = "b"
            memory = "16MiB"
            kernel = {{ size = 0x1000 }}
            [[domain]]
            name = "c"
            memory = "16MiB"
            kernel = {{ size = 0x1000 }}
            [[domain]]
            name = "d"
            memory = "16MiB"
            kernel = {{ size = 0x1000 }}
            [[channel]]
            name = "placed"
            protocol = "queue"
            from = "a"
            to = "b"
            size = "64KiB"
            guest = 0x2000_0000
            [[channel]]
            name = "open1"
            protocol = "queue"
            from = "c"
            to = "d"
            size = "16KiB"
            [[channel]]
            name = "open2"
            protocol = "queue"
            from = "a"
            to = "c"
            size = "4KiB"
        "#
            )
        };
        let guest = |sys: &System, id: &str| -> Vec<u64> {
            sys.shm
                .iter()
                .filter(|n| n.id.contains(id))
                .map(|n| n.guest)
                .collect()
        };
        let (sys, diags) = read(&text("qemu-ivshmem"));
        let sys = sys.unwrap_or_else(|| panic!("{diags:?}"));
        let base = staticbus_abi::ivshmem::SHM_BASE;
        assert_eq!(guest(&sys, "placed"), [base, base]);
        // After `placed` (in no member of open1), then after open1 (not in open2's `a`).
        assert_eq!(guest(&sys, "open1"), [base + 0x1_0000; 2]);
        assert_eq!(guest(&sys, "open2"), [base + 0x1_4000; 2]);

        let (sys, diags) = read(&text("xen"));
        let sys = sys.unwrap_or_else(|| panic!("{diags:?}"));
        assert_eq!(guest(&sys, "open1"), [DEFAULT_GUEST_WINDOW.0; 2]);
    }

    /// Every value the description gives is kept as given, even one that used to mark an
    /// open value (u64::MAX addresses, port 0): only the values left out are allocated.
    #[test]
    fn given_values_are_kept_and_only_open_ones_allocated() {
        let text = r#"
            [target]
            static-shm = true
            [platform]
            ram = [{ base = 0x4000_0000, size = "1GiB" }]
            shm-pool = { base = 0x7000_0000, size = "16MiB" }
            [[domain]]
            name = "a"
            memory = "16MiB"
            kernel = { addr = "0xffffffffffffffff", size = 0x1000 }
            [[domain]]
            name = "b"
            memory = "16MiB"
            kernel = { size = 0x1000 }
            [[shm]]
            id = "r"
            size = "4KiB"
            users = [{ domain = "a", guest = "0xffffffffffffffff" }, { domain = "b" }]
            [[evtchn]]
            a = "a:0"
            b = "b:7"
            [[channel]]
            name = "c"
            protocol = "queue"
            from = "a"
            to = "b"
            size = "4KiB"
        "#;
        let (sys, diags) = read(text);
        let sys = sys.unwrap_or_else(|| panic!("{diags:?}"));
        assert_eq!(sys.domains[0].modules[0].addr, u64::MAX);
        assert_eq!(sys.domains[1].modules[0].addr, 0x4020_0000);
        assert_eq!(sys.shm[0].guest, u64::MAX);
        assert_eq!(sys.shm[1].guest, DEFAULT_GUEST_WINDOW.0);
        let ports: Vec<(u32, u32)> = sys
            .evtchns
            .iter()
            .map(|p| (p.first.port, p.second.port))
            .collect();
        assert_eq!(ports, [(0, 7), (1, 1)]);
    }
}
