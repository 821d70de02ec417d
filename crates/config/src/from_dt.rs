//! Reading a Xen dom0less host device tree into the [`System`] model.
//!
//! The walk follows Xen: domains are the `xen,domain` children of `/chosen` (domids 1, 2, …
//! in order; dom0, if it has a kernel module under `/chosen`, is 0); static event channels
//! are paired the way `alloc_static_evtchn` walks them, so [`EvtchnPair::first`] is the end
//! Xen binds first. Structural problems (missing properties, bad cell counts, broken
//! phandle links, misplaced nodes) are reported here; semantic rules are in
//! [`crate::validate`].

use crate::codes::*;
use crate::model::*;
use staticbus_abi::dt as b;
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Location};
use staticbus_dt::{Node, Property, Tree};
use std::collections::{HashMap, HashSet};

/// What Xen's early scan (`process_multiboot_node`, bootfdt.c) makes of a module node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EarlyKind {
    /// The kind its compatible names (`multiboot,kernel` or the legacy `xen,linux-zimage`, …).
    Named(ModuleKind),
    /// No kind of its own: the first such module of the tree is taken as a kernel, the
    /// second as a ramdisk (unless it holds an XSM policy).
    Guessed(ModuleKind),
    /// An XSM policy (`xen,xsm-policy`): a module for Xen itself.
    Xsm,
    /// No kind of its own and not among the first two: registered, never used.
    Unknown,
}

/// Where things are in the tree being read.
struct Locs {
    file: FileId,
}

impl Locs {
    fn node(&self, path: &str, n: &Node) -> Location {
        match n.span {
            Some(s) => Location::span(s),
            None => Location::Node {
                file: self.file,
                path: path.to_string(),
                property: None,
            },
        }
    }

    fn prop(&self, path: &str, p: &Property) -> Location {
        match p.span {
            Some(s) => Location::span(s),
            None => Location::Node {
                file: self.file,
                path: path.to_string(),
                property: Some(p.name.clone()),
            },
        }
    }

    fn cell(&self, path: &str, p: &Property, i: usize) -> Location {
        match p.span_of_cell(i) {
            Some(s) => Location::span(s),
            None => self.prop(path, p),
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// `#address-cells`/`#size-cells` that apply to the children of the last node of
/// `chain` (root first): the nearest ancestor that sets them, else 2 and 1.
fn child_cells(chain: &[&Node]) -> (u32, u32) {
    let find = |name: &str, default: u32| {
        chain
            .iter()
            .rev()
            .find_map(|n| n.prop(name).and_then(|p| p.as_u32()))
            .unwrap_or(default)
    };
    (find("#address-cells", 2), find("#size-cells", 1))
}

/// Reads `reg`-style `<addr size>` pairs.
fn read_pairs(p: &Property, a: u32, s: u32) -> Option<Vec<(u64, u64)>> {
    let per = (a + s) as usize;
    if a == 0 || a > 2 || s == 0 || s > 2 || p.value.len() % (per * 4) != 0 || p.is_empty() {
        return None;
    }
    let n = p.value.len() / (per * 4);
    (0..n)
        .map(|i| {
            let base = i * per;
            Some((p.read_cells(base, a)?, p.read_cells(base + a as usize, s)?))
        })
        .collect()
}

/// Reads the Xen configuration in `tree` (registered as `file`) for `target`.
pub fn system_from_tree(
    tree: &Tree,
    file: FileId,
    name: &str,
    source: SourceKind,
    target: Target,
) -> (System, Diagnostics) {
    let mut r = Reader {
        tree,
        locs: Locs { file },
        sys: System::new(name, source),
        diags: Diagnostics::new(),
        domain_paths: HashMap::new(),
    };
    r.sys.target = target;
    r.platform();
    r.domains();
    r.evtchns();
    r.shm();
    (r.sys, r.diags)
}

struct Reader<'t> {
    tree: &'t Tree,
    locs: Locs,
    sys: System,
    diags: Diagnostics,
    /// Domain node path (`/chosen` for dom0) → domain index.
    domain_paths: HashMap<String, DomIdx>,
}

impl<'t> Reader<'t> {
    fn platform(&mut self) {
        let root = &self.tree.root;
        let (ra, rs) = child_cells(&[root]);
        for n in &root.children {
            let is_mem = n.prop("device_type").and_then(|p| p.as_str()) == Some("memory");
            if !is_mem {
                continue;
            }
            let path = join("/", &n.name);
            if let Some(reg) = n.prop("reg") {
                for (base, size) in read_pairs(reg, ra, rs).unwrap_or_default() {
                    self.sys.platform.ram.push(Range {
                        base,
                        size,
                        loc: self.locs.prop(&path, reg),
                    });
                }
            }
        }
        for (i, m) in self.tree.memreserve.iter().enumerate() {
            self.sys.platform.reserved.push(Reserved {
                range: Range {
                    base: m.address,
                    size: m.size,
                    loc: m.span.map(Location::span).unwrap_or(Location::File {
                        file: self.locs.file,
                    }),
                },
                kind: ReservedKind::MemReserve,
                name: format!("/memreserve/ #{i}"),
            });
        }
        if let Some(rm) = root.child("reserved-memory") {
            let (a, s) = child_cells(&[root, rm]);
            for c in &rm.children {
                let path = format!("/reserved-memory/{}", c.name);
                if let Some(reg) = c.prop("reg") {
                    for (base, size) in read_pairs(reg, a, s).unwrap_or_default() {
                        self.sys.platform.reserved.push(Reserved {
                            range: Range {
                                base,
                                size,
                                loc: self.locs.prop(&path, reg),
                            },
                            kind: ReservedKind::ReservedMemory,
                            name: path.clone(),
                        });
                    }
                }
            }
        }
        if let Some(chosen) = root.child("chosen") {
            if let Some(p) = chosen.prop("xen,static-heap") {
                for (base, size) in read_pairs(p, ra, rs).unwrap_or_default() {
                    self.sys.platform.reserved.push(Reserved {
                        range: Range {
                            base,
                            size,
                            loc: self.locs.prop("/chosen", p),
                        },
                        kind: ReservedKind::StaticHeap,
                        name: "xen,static-heap".into(),
                    });
                }
            }
            self.sys.xen_bootargs = chosen
                .prop("xen,xen-bootargs")
                .and_then(|p| p.as_str())
                .map(str::to_string);
        }
        let mut gic = None;
        self.tree.walk(|_, n| {
            if n.prop("interrupt-controller").is_some() {
                if n.is_compatible("arm,gic-v3") {
                    gic = Some(GicVersion::V3);
                } else if n.is_compatible("arm,gic-400") || n.is_compatible("arm,cortex-a15-gic") {
                    gic = gic.or(Some(GicVersion::V2));
                }
            }
        });
        self.sys.platform.gic = gic;
    }

    /// What Xen's early scan (`process_multiboot_node`) makes of every module node under
    /// `/chosen` (depth 2 and 3, in tree order), by path.
    fn early_kinds(&self) -> HashMap<String, EarlyKind> {
        let mut out = HashMap::new();
        let Some(chosen) = self.tree.root.child("chosen") else {
            return out;
        };
        // Xen's `kind_guess` counts the module nodes without a kind of their own in the
        // whole tree, dom0's and domUs' alike.
        let mut guessed = 0;
        let mut visit = |path: String, n: &Node| {
            let has = |x: &str| n.compatible().iter().any(|c| c.eq_ignore_ascii_case(x));
            if !(has(b::MODULE_COMPAT) || has(b::MODULE_COMPAT_LEGACY)) {
                return;
            }
            let kind = if has(b::KERNEL_COMPAT_LEGACY) || has(b::KERNEL_COMPAT) {
                EarlyKind::Named(ModuleKind::Kernel)
            } else if has(b::RAMDISK_COMPAT_LEGACY) || has(b::RAMDISK_COMPAT) {
                EarlyKind::Named(ModuleKind::Ramdisk)
            } else if has(b::XSM_COMPAT) {
                EarlyKind::Xsm
            } else if has(b::DTB_COMPAT) {
                EarlyKind::Named(ModuleKind::DeviceTree)
            } else {
                guessed += 1;
                match guessed {
                    1 => EarlyKind::Guessed(ModuleKind::Kernel),
                    2 => EarlyKind::Guessed(ModuleKind::Ramdisk),
                    _ => EarlyKind::Unknown,
                }
            };
            out.insert(path, kind);
        };
        for c in &chosen.children {
            let cpath = join("/chosen", &c.name);
            visit(cpath.clone(), c);
            for g in &c.children {
                visit(join(&cpath, &g.name), g);
            }
        }
        out
    }

    /// The boot modules among the children of the last node of `chain` (at `path`): dom0's
    /// (`dom0`: children of `/chosen`, found by the kind Xen's early scan gives them) or a
    /// domU's (found by their `multiboot,*` compatible, as Xen's `kernel_probe` does).
    fn modules_of(
        &mut self,
        chain: &[&Node],
        path: &str,
        dom0: bool,
        early: &HashMap<String, EarlyKind>,
    ) -> Vec<Module> {
        let parent = chain[chain.len() - 1];
        let (a, s) = child_cells(chain);
        let mut out = Vec::new();
        for c in &parent.children {
            let cpath = join(path, &c.name);
            let compat = c.compatible();
            let has = |x: &str| compat.iter().any(|c| c.eq_ignore_ascii_case(x));
            let kind = if has(b::KERNEL_COMPAT) {
                Some(ModuleKind::Kernel)
            } else if has(b::RAMDISK_COMPAT) {
                Some(ModuleKind::Ramdisk)
            } else if has(b::DTB_COMPAT) {
                Some(ModuleKind::DeviceTree)
            } else {
                None
            };
            let legacy = has(b::KERNEL_COMPAT_LEGACY) || has(b::RAMDISK_COMPAT_LEGACY);
            let is_module = has(b::MODULE_COMPAT) || has(b::MODULE_COMPAT_LEGACY);
            if !is_module && kind.is_none() && !legacy {
                continue;
            }
            let compat_loc = c
                .prop("compatible")
                .map(|p| self.locs.prop(&cpath, p))
                .unwrap_or_else(|| self.locs.node(&cpath, c));
            let unusable = |label: String, help: &str| {
                Diagnostic::new(
                    MODULE_NOT_MULTIBOOT,
                    compat_loc.clone(),
                    format!("module node `{}` is not a usable boot module", c.name),
                )
                .label(label)
                .help(help.to_string())
            };
            if !is_module {
                self.diags.push(unusable(
                    "`multiboot,module` is missing: Xen's early scan never registers this blob".into(),
                    "write `compatible = \"multiboot,kernel\", \"multiboot,module\";` (or ramdisk / device-tree)",
                ));
                continue;
            }
            let kind = if dom0 {
                match early.get(&cpath) {
                    Some(EarlyKind::Named(k) | EarlyKind::Guessed(k)) => *k,
                    Some(EarlyKind::Xsm) => continue,
                    _ => {
                        self.diags.push(unusable(
                            "no kind of its own, and not among the first two such modules (Xen guesses a kernel, then a ramdisk): Xen registers it with an unknown kind and never uses it".into(),
                            "add the kind: `compatible = \"multiboot,kernel\", \"multiboot,module\";` (or multiboot,ramdisk)",
                        ));
                        continue;
                    }
                }
            } else {
                match kind {
                    Some(k) => k,
                    None => {
                        let label = if legacy {
                            "Xen looks a domU's modules up by `multiboot,kernel`, `multiboot,ramdisk` or `multiboot,device-tree`; the legacy `xen,linux-zimage` / `xen,linux-initrd` names work only for dom0"
                        } else if has(b::XSM_COMPAT) {
                            "an XSM policy is a module for Xen itself: it belongs directly under /chosen"
                        } else {
                            "no `multiboot,kernel`, `multiboot,ramdisk` or `multiboot,device-tree`: Xen guesses the kind of such modules only for dom0"
                        };
                        self.diags.push(unusable(
                            label.into(),
                            "write `compatible = \"multiboot,kernel\", \"multiboot,module\";` (or ramdisk / device-tree)",
                        ));
                        continue;
                    }
                }
            };
            let Some((addr, size)) = c
                .prop("reg")
                .and_then(|p| read_pairs(p, a, s))
                .and_then(|v| (v.len() == 1).then(|| v[0]))
            else {
                let loc = c
                    .prop("reg")
                    .map(|p| self.locs.prop(&cpath, p))
                    .unwrap_or_else(|| self.locs.node(&cpath, c));
                self.diags.push(
                    Diagnostic::new(
                        MODULE_REG,
                        loc,
                        format!("module `{}` has no usable `reg`", c.name),
                    )
                    .label(format!(
                        "expected one <address size> pair of {a}+{s} cells"
                    ))
                    .help("set `reg = <address size>` using the parent's #address-cells and #size-cells"),
                );
                continue;
            };
            let bootargs = c.prop("bootargs");
            out.push(Module {
                kind,
                addr,
                size,
                path: None,
                cargo: None,
                bootargs: bootargs.and_then(|p| p.as_str()).map(str::to_string),
                bootargs_loc: bootargs
                    .map(|p| self.locs.prop(&cpath, p))
                    .unwrap_or(Location::None),
                loc: self.locs.node(&cpath, c),
            });
        }
        out
    }

    fn domains(&mut self) {
        let root = &self.tree.root;
        let Some(chosen) = root.child("chosen") else {
            return;
        };
        // dom0: modules directly under /chosen, of the kinds Xen's early scan gives them
        // (the first one without a kind is the kernel).
        let early = self.early_kinds();
        let mut dom0_modules = self.modules_of(&[root, chosen], "/chosen", true, &early);
        // Xen's early scan registers modules one level deeper too, and takes those whose
        // parent is not a domain node as dom0's.
        for c in chosen
            .children
            .iter()
            .filter(|c| !c.is_compatible(b::DOMAIN_COMPAT))
        {
            let cpath = join("/chosen", &c.name);
            for m in self.modules_of(&[root, chosen, c], &cpath, true, &early) {
                self.diags.push(
                    Diagnostic::new(
                        MODULE_OUTSIDE_DOMAIN,
                        m.loc.clone(),
                        format!(
                            "{} module inside `{cpath}`, which is not a domain node",
                            m.kind.as_str()
                        ),
                    )
                    .label("Xen registers it as one of dom0's modules")
                    .help(format!(
                        "if `{cpath}` is a domU, give it `compatible = \"xen,domain\";`; dom0's modules go directly under /chosen"
                    )),
                );
                dom0_modules.push(m);
            }
        }
        if !dom0_modules.iter().any(|m| m.kind == ModuleKind::Kernel) {
            for m in &dom0_modules {
                self.diags.push(
                    Diagnostic::new(
                        MODULE_NOT_MULTIBOOT,
                        m.loc.clone(),
                        format!("dom0 {} module without a dom0 kernel", m.kind.as_str()),
                    )
                    .label("Xen builds no dom0 and never uses this module")
                    .help("add dom0's kernel module under /chosen, or move the module into the `xen,domain` node that should use it"),
                );
            }
        } else {
            let mut d = Domain::new("dom0", 0, self.locs.node("/chosen", chosen));
            d.dom0 = true;
            d.modules = dom0_modules;
            self.domain_paths
                .insert("/chosen".into(), self.sys.domains.len());
            self.sys.domains.push(d);
        }
        let (ca, cs) = child_cells(&[root, chosen]);
        let mut domid: u16 = 0;
        for c in &chosen.children {
            if !c.is_compatible(b::DOMAIN_COMPAT) {
                continue;
            }
            domid = domid.saturating_add(1);
            let path = join("/chosen", &c.name);
            let mut d = Domain::new(c.name.clone(), domid, self.locs.node(&path, c));
            if c.name.len() > b::MAX_NODE_NAME {
                self.diags.push(
                    Diagnostic::new(
                        DOMAIN_NAME_TOO_LONG,
                        self.locs.node(&path, c),
                        format!(
                            "domain node name is {} characters long; Xen handles at most {}",
                            c.name.len(),
                            b::MAX_NODE_NAME
                        ),
                    )
                    .help("shorten the node name"),
                );
            }
            match c.prop("memory") {
                None => self.diags.push(
                    Diagnostic::new(
                        DOMAIN_MEMORY,
                        self.locs.node(&path, c),
                        format!("domain `{}` has no `memory` property", c.name),
                    )
                    .help("add `memory = <0x0 KIB>;` (a 64-bit value in KiB, two cells)"),
                ),
                Some(p) if p.value.len() < 8 => {
                    d.memory_loc = self.locs.prop(&path, p);
                    self.diags.push(
                        Diagnostic::new(
                            DOMAIN_MEMORY,
                            self.locs.prop(&path, p),
                            format!(
                                "`memory` of domain `{}` is {} bytes; Xen reads a 64-bit value",
                                c.name,
                                p.value.len()
                            ),
                        )
                        .label("needs two cells")
                        .help("write the size in KiB as two cells, e.g. `memory = <0x0 0x10000>;` for 64 MiB"),
                    );
                }
                Some(p) => {
                    d.memory_loc = self.locs.prop(&path, p);
                    d.memory_kib = p.read_cells(0, 2);
                }
            }
            match c.prop("cpus") {
                None => self.diags.push(
                    Diagnostic::new(
                        DOMAIN_CPUS,
                        self.locs.node(&path, c),
                        format!("domain `{}` has no `cpus` property", c.name),
                    )
                    .help("add `cpus = <1>;`"),
                ),
                Some(p) => {
                    d.vcpus_loc = self.locs.prop(&path, p);
                    match p.as_u32() {
                        Some(n) => d.vcpus = Some(n),
                        None => self.diags.push(
                            Diagnostic::new(
                                DOMAIN_CPUS,
                                self.locs.prop(&path, p),
                                format!("`cpus` of domain `{}` is not one cell", c.name),
                            )
                            .help("write `cpus = <N>;`"),
                        ),
                    }
                }
            }
            d.vpl011 = c.prop("vpl011").is_some();
            if let Some(p) = c.prop("xen,enhanced") {
                d.enhanced_loc = self.locs.prop(&path, p);
                d.enhanced = if p.is_empty() || p.value.last() != Some(&0) {
                    Enhanced::Enabled
                } else {
                    match p.as_str() {
                        Some("enabled") => Enhanced::Enabled,
                        Some("no-xenstore") => Enhanced::NoXenstore,
                        Some("disabled") => Enhanced::Disabled,
                        Some(other) => Enhanced::Unknown(other.to_string()),
                        None => Enhanced::Unknown(String::from_utf8_lossy(&p.value).into_owned()),
                    }
                };
            }
            if let Some(p) = c.prop("xen,static-mem") {
                d.static_mem_loc = self.locs.prop(&path, p);
                match read_pairs(p, ca, cs) {
                    Some(v) => {
                        d.static_mem = v
                            .into_iter()
                            .map(|(base, size)| Range {
                                base,
                                size,
                                loc: self.locs.prop(&path, p),
                            })
                            .collect()
                    }
                    None => self.diags.push(
                        Diagnostic::new(
                            DESC_BAD_VALUE,
                            self.locs.prop(&path, p),
                            "`xen,static-mem` is not a list of <address size> pairs",
                        )
                        .help(format!(
                            "use /chosen's #address-cells ({ca}) and #size-cells ({cs}) per bank"
                        )),
                    ),
                }
            }
            // Grant-table limits: Xen 4.18+ reads them as signed 32-bit numbers.
            if self.sys.target.xen >= XenVersion::V4_18 {
                for name in ["max_grant_frames", "max_maptrack_frames"] {
                    let Some(p) = c.prop(name) else { continue };
                    if let Some(v) = p.as_u32().filter(|&v| v > i32::MAX as u32) {
                        self.diags.push(
                            Diagnostic::new(
                                GRANT_FRAMES_OVERFLOW,
                                self.locs.prop(&path, p),
                                format!(
                                    "`{name}` of `{}` is {v:#x}; Xen allows at most 0x7fffffff",
                                    c.name
                                ),
                            )
                            .label(format!("Xen panics: `{name} ({v}) overflow`"))
                            .help(format!(
                                "use a smaller `{name}`, or leave it out for Xen's default"
                            )),
                        );
                    }
                }
                // `sve` panics a Xen built without CONFIG_ARM64_SVE (Debian's, any without
                // CONFIG_UNSUPPORTED), whatever its value.
                if let Some(p) = c.prop("sve") {
                    self.diags.push(
                        Diagnostic::new(
                            SVE_DISABLED,
                            self.locs.prop(&path, p),
                            format!("domain `{}` asks for SVE", c.name),
                        )
                        .label("Xen panics: `'sve' property found, but CONFIG_ARM64_SVE not selected`")
                        .note("the property is refused whatever its value, even 0, by a build without CONFIG_ARM64_SVE")
                        .help("remove `sve`, or build Xen with CONFIG_UNSUPPORTED=y CONFIG_ARM64_SVE=y"),
                    );
                }
            }
            // vCPU affinity nodes (`xen,vcpu`) are read from Xen 4.21 on.
            for v in c
                .children
                .iter()
                .filter(|v| v.is_compatible(b::VCPU_COMPAT))
            {
                let vpath = join(&path, &v.name);
                self.diags.push(
                    Diagnostic::new(
                        VCPU_AFFINITY_IGNORED,
                        v.prop("compatible")
                            .map(|p| self.locs.prop(&vpath, p))
                            .unwrap_or_else(|| self.locs.node(&vpath, v)),
                        format!(
                            "Xen {} ignores the vCPU affinity node `{}`",
                            self.sys.target.xen, v.name
                        ),
                    )
                    .label("`xen,vcpu` nodes are read from Xen 4.21 on")
                    .help("pin vCPUs some other way on this Xen (e.g. a cpupool with `domain-cpupool`), or remove the node"),
                );
            }
            if let Some(p) = c.prop("direct-map") {
                d.direct_map = true;
                d.direct_map_loc = self.locs.prop(&path, p);
            }
            d.modules = self.modules_of(&[root, chosen, c], &path, false, &early);
            self.domain_paths.insert(path, self.sys.domains.len());
            self.sys.domains.push(d);
        }
    }

    /// The domain an endpoint or shm node belongs to, from its parent's path, as Xen's
    /// `used_by` decides: a domain node's domid, `/chosen` → dom0, anything else → dom0.
    fn owner_of(&self, parent: &str) -> Option<DomIdx> {
        if let Some(&i) = self.domain_paths.get(parent) {
            return Some(i);
        }
        self.domain_paths.get("/chosen").copied()
    }

    fn evtchns(&mut self) {
        let tree = self.tree;
        let Some(chosen) = tree.root.child("chosen") else {
            return;
        };
        let has_dom0 = self.domain_paths.contains_key("/chosen");
        // phandle → path of the first node with it, in tree order (like Xen's lookup).
        let mut by_phandle: HashMap<u32, String> = HashMap::new();
        let mut nodes: HashMap<String, &Node> = HashMap::new();
        tree.walk(|p, n| {
            let ph = n.phandle().unwrap_or(0);
            by_phandle.entry(ph).or_insert_with(|| p.to_string());
            nodes.insert(p.to_string(), n);
        });
        // Candidates in Xen's order: (node path, parent path).
        let mut cands: Vec<(String, String)> = Vec::new();
        for c in &chosen.children {
            let cpath = join("/chosen", &c.name);
            if c.is_compatible(b::EVTCHN_COMPAT) {
                cands.push((cpath.clone(), "/chosen".into()));
            }
            for g in &c.children {
                if g.is_compatible(b::EVTCHN_COMPAT) {
                    cands.push((join(&cpath, &g.name), cpath.clone()));
                }
            }
        }
        let cand_set: HashSet<&str> = cands.iter().map(|(p, _)| p.as_str()).collect();
        // Endpoints Xen never looks at, or looks at in the wrong way.
        let mut misplaced = Vec::new();
        tree.walk(|p, n| {
            let compat = n.compatible();
            if n.is_compatible(b::EVTCHN_COMPAT) && !cand_set.contains(p) {
                misplaced.push((p.to_string(), n, false));
            } else if !n.is_compatible(b::EVTCHN_COMPAT)
                && compat.iter().any(|c| c.eq_ignore_ascii_case("xen,evtchn"))
            {
                misplaced.push((p.to_string(), n, true));
            }
        });
        for (p, n, prose) in misplaced {
            let loc = self.locs.node(&p, n);
            if prose {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_COMPAT_PROSE,
                        n.prop("compatible")
                            .map(|c| self.locs.prop(&p, c))
                            .unwrap_or(loc),
                        format!(
                            "`{p}` is compatible with \"xen,evtchn\", which Xen does not match"
                        ),
                    )
                    .help("use `compatible = \"xen,evtchn-v1\";`"),
                );
            } else {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_BAD_PLACEMENT,
                        loc,
                        format!("event-channel endpoint `{p}` is not where Xen looks for endpoints"),
                    )
                    .label("Xen ignores this node")
                    .help("put endpoints directly inside a `xen,domain` node under /chosen (dom0's directly under /chosen)"),
                );
            }
        }

        let mut created: HashSet<String> = HashSet::new();
        // Endpoints already reported as unusable in themselves (no readable `xen,evtchn`,
        // not in a domain node): their peers do not report them a second time.
        let mut broken: HashSet<String> = HashSet::new();
        for (npath, parent) in &cands {
            if created.contains(npath) {
                continue;
            }
            let node = nodes[npath.as_str()];
            let parent_is_domain = self.domain_paths.contains_key(parent.as_str())
                && (parent != "/chosen" || has_dom0);
            if parent == "/chosen" && !has_dom0 {
                // Xen skips /chosen-level nodes when there is no hardware domain; as a peer
                // they fail below.
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_NO_DOMAIN,
                        self.locs.node(npath, node),
                        format!("`{npath}` is a dom0 endpoint but the system has no dom0"),
                    )
                    .label("no domain owns this endpoint")
                    .help("move the endpoint into the `xen,domain` node of the domU that should own it"),
                );
                created.insert(npath.clone());
                broken.insert(npath.clone());
                continue;
            }
            if !parent_is_domain {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_BAD_PLACEMENT,
                        self.locs.node(npath, node),
                        format!("event-channel endpoint `{npath}` is inside `{parent}`, which is not a domain"),
                    )
                    .label(if has_dom0 { "Xen treats this as a dom0 endpoint" } else { "no domain owns this endpoint" })
                    .help("put endpoints directly inside a `xen,domain` node under /chosen"),
                );
                created.insert(npath.clone());
                broken.insert(npath.clone());
                continue;
            }
            let Some((port1, ph, prop1)) = self.read_evtchn(npath, node) else {
                created.insert(npath.clone());
                broken.insert(npath.clone());
                continue;
            };
            let ref_loc = self.locs.cell(npath, prop1, 1);
            let Some(rpath) = by_phandle.get(&ph).cloned() else {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_PEER_NOT_FOUND,
                        ref_loc,
                        format!("no node has phandle {ph:#x}"),
                    )
                    .label("peer phandle")
                    .help("the second cell must be the phandle of the peer endpoint node (write `&label`)"),
                );
                created.insert(npath.clone());
                continue;
            };
            if ph == 0 {
                self.diags.push(
                    Diagnostic::new(EVTCHN_PEER_NOT_FOUND, ref_loc, "peer phandle is 0")
                        .label("Xen matches the first node without a phandle (usually `/`)")
                        .help("the second cell must be the phandle of the peer endpoint node (write `&label`)"),
                );
                created.insert(npath.clone());
                continue;
            }
            if &rpath == npath {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_SELF_PEER,
                        ref_loc,
                        format!("`{npath}` names itself as its peer"),
                    )
                    .help("point at the endpoint node in the other domain"),
                );
                created.insert(npath.clone());
                continue;
            }
            let rnode = nodes[rpath.as_str()];
            if !rnode.is_compatible(b::EVTCHN_COMPAT) {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_PEER_NOT_ENDPOINT,
                        ref_loc,
                        format!("the peer `{rpath}` is not a `xen,evtchn-v1` node"),
                    )
                    .with(self.locs.node(&rpath, rnode), "this node is the target")
                    .help("point at the peer's endpoint node, not at its domain or another node"),
                );
                created.insert(npath.clone());
                continue;
            }
            created.insert(npath.clone());
            created.insert(rpath.clone());
            if broken.contains(&rpath) {
                continue;
            }
            let Some((port2, back, prop2)) = self.read_evtchn(&rpath, rnode) else {
                broken.insert(rpath.clone());
                continue;
            };
            let own = node.phandle();
            if own != Some(back) {
                // Without a phandle of its own the endpoint cannot be pointed at; but a
                // back reference naming another existing node is a one-sided link.
                let d = match own {
                    None if back == 0 || !by_phandle.contains_key(&back) => Diagnostic::new(
                        EVTCHN_NO_PHANDLE,
                        self.locs.node(npath, node),
                        format!("`{npath}` has no phandle, so `{rpath}` cannot point back at it"),
                    )
                    .with(self.locs.cell(&rpath, prop2, 1), "the peer's back reference")
                    .help("give the node a label and write `&label` in the peer's `xen,evtchn`"),
                    _ => Diagnostic::new(
                        EVTCHN_NOT_MUTUAL,
                        self.locs.cell(&rpath, prop2, 1),
                        format!("`{rpath}` does not point back at `{npath}`"),
                    )
                    .label("points elsewhere")
                    .with(ref_loc, "this endpoint points at it")
                    .help("each endpoint's second cell must be the phandle of its peer; links are strictly pairwise"),
                };
                self.diags.push(d);
                continue;
            }
            let rparent = rpath.rsplit_once('/').map(|(p, _)| p).unwrap_or("/");
            let rparent = if rparent.is_empty() { "/" } else { rparent };
            let d2 = if rparent == "/chosen" && !has_dom0 {
                None
            } else {
                self.owner_of(rparent)
            };
            let Some(d2) = d2 else {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_NO_DOMAIN,
                        self.locs.node(&rpath, rnode),
                        format!("the peer `{rpath}` belongs to no domain"),
                    )
                    .label("no domain owns this endpoint")
                    .help("endpoints live directly inside a `xen,domain` node (dom0's directly under /chosen, only with a dom0)"),
                );
                continue;
            };
            if !self.domain_paths.contains_key(rparent) {
                self.diags.push(
                    Diagnostic::new(
                        EVTCHN_BAD_PLACEMENT,
                        self.locs.node(&rpath, rnode),
                        format!("the peer `{rpath}` is inside `{rparent}`, which is not a domain"),
                    )
                    .label("Xen treats this as a dom0 endpoint")
                    .help("put endpoints directly inside a `xen,domain` node under /chosen"),
                );
                continue;
            }
            let d1 = self.domain_paths[parent.as_str()];
            self.sys.evtchns.push(EvtchnPair {
                first: EvtchnEnd {
                    domain: d1,
                    port: port1,
                    loc: self.locs.node(npath, node),
                    port_loc: self.locs.cell(npath, prop1, 0),
                },
                second: EvtchnEnd {
                    domain: d2,
                    port: port2,
                    loc: self.locs.node(&rpath, rnode),
                    port_loc: self.locs.cell(&rpath, prop2, 0),
                },
                channel: None,
            });
        }
    }

    /// Reads `xen,evtchn` of an endpoint: (port, peer phandle, property).
    fn read_evtchn<'n>(&mut self, path: &str, n: &'n Node) -> Option<(u32, u32, &'n Property)> {
        let Some(p) = n.prop(b::EVTCHN_PROP) else {
            self.diags.push(
                Diagnostic::new(
                    EVTCHN_NO_PROPERTY,
                    self.locs.node(path, n),
                    format!("event-channel endpoint `{path}` has no `xen,evtchn` property"),
                )
                .help("add `xen,evtchn = <LOCAL-PORT &peer-endpoint>;`"),
            );
            return None;
        };
        if p.value.len() < 8 {
            self.diags.push(
                Diagnostic::new(
                    EVTCHN_SHORT_PROPERTY,
                    self.locs.prop(path, p),
                    format!(
                        "`xen,evtchn` of `{path}` is {} bytes; Xen needs two cells",
                        p.value.len()
                    ),
                )
                .help("write `xen,evtchn = <LOCAL-PORT &peer-endpoint>;`"),
            );
            return None;
        }
        if p.value.len() > 8 {
            self.diags.push(
                Diagnostic::new(
                    EVTCHN_EXTRA_CELLS,
                    self.locs.prop(path, p),
                    format!("`xen,evtchn` of `{path}` has more than two cells"),
                )
                .label("Xen ignores everything after the second cell")
                .help("keep exactly `<LOCAL-PORT &peer-endpoint>`"),
            );
        }
        Some((p.u32_at(0)?, p.u32_at(1)?, p))
    }

    fn shm(&mut self) {
        let tree = self.tree;
        let root = &tree.root;
        let Some(chosen) = root.child("chosen") else {
            return;
        };
        let mut parents: Vec<(String, Vec<&Node>)> = Vec::new();
        if self.domain_paths.contains_key("/chosen") {
            parents.push(("/chosen".into(), vec![root, chosen]));
        }
        for c in &chosen.children {
            if c.is_compatible(b::DOMAIN_COMPAT) {
                parents.push((join("/chosen", &c.name), vec![root, chosen, c]));
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut disabled_reported = false;
        for (ppath, chain) in &parents {
            let parent = chain[chain.len() - 1];
            let dom = self.domain_paths[ppath.as_str()];
            let (a, s) = child_cells(chain);
            for n in &parent.children {
                if !n.is_compatible(b::SHM_COMPAT) {
                    continue;
                }
                let path = join(ppath, &n.name);
                seen.insert(path.clone());
                if !self.sys.target.static_shm && !disabled_reported {
                    disabled_reported = true;
                    self.diags.push(
                        Diagnostic::new(
                            SHM_DISABLED,
                            self.locs.node(&path, n),
                            "static shared memory needs a Xen built with CONFIG_STATIC_SHM",
                        )
                        .label("Xen panics at boot on this node")
                        .note("Debian's Xen packages are built without it")
                        .help("build Xen with CONFIG_UNSUPPORTED=y CONFIG_STATIC_MEMORY=y CONFIG_STATIC_SHM=y and pass --static-shm, or remove the shared-memory nodes"),
                    );
                }
                if let Some(node) = self.read_shm(&path, n, dom, a, s) {
                    self.sys.shm.push(node);
                }
            }
        }
        let mut stray = Vec::new();
        tree.walk(|p, n| {
            if n.is_compatible(b::SHM_COMPAT) && !seen.contains(p) {
                stray.push((p.to_string(), n));
            }
        });
        for (p, n) in stray {
            let dom0_node = p.rsplit_once('/').map(|(parent, _)| parent) == Some("/chosen");
            let d = if dom0_node {
                // A /chosen-level node is dom0's, as Xen's docs say; what is missing is dom0.
                Diagnostic::new(
                    SHM_BAD_PLACEMENT,
                    self.locs.node(&p, n),
                    format!("shared-memory node `{p}` is dom0's, but the system has no dom0"),
                )
                .label("no domain maps this region")
                .note("a node directly under /chosen belongs to dom0, which exists only with a dom0 kernel module under /chosen")
                .help("add dom0's kernel module (`compatible = \"multiboot,kernel\", \"multiboot,module\";`) under /chosen, or move the node into the `xen,domain` node of a domU that uses the region")
            } else {
                Diagnostic::new(
                    SHM_BAD_PLACEMENT,
                    self.locs.node(&p, n),
                    format!("shared-memory node `{p}` is not inside a domain node"),
                )
                .label("no domain maps this region")
                .help("put shared-memory nodes directly inside the `xen,domain` node of each domain that uses the region (dom0's directly under /chosen)")
            };
            self.diags.push(d);
        }
    }

    fn read_shm(&mut self, path: &str, n: &Node, dom: DomIdx, a: u32, s: u32) -> Option<ShmNode> {
        let node_loc = self.locs.node(path, n);
        let Some(idp) = n.prop(b::SHM_ID_PROP) else {
            self.diags.push(
                Diagnostic::new(SHM_ID_MISSING, node_loc, format!("`{path}` has no `xen,shm-id`"))
                    .help("add `xen,shm-id = \"name\";` (1 to 15 characters, the same in every domain sharing the region)"),
            );
            return None;
        };
        let id_loc = self.locs.prop(path, idp);
        let id = match idp.as_str() {
            Some(s) => s.to_string(),
            None if idp.is_empty() || idp.value == [0] => String::new(),
            None => {
                self.diags.push(
                    Diagnostic::new(SHM_ID_MISSING, id_loc, "`xen,shm-id` is not a string")
                        .help("write `xen,shm-id = \"name\";`"),
                );
                return None;
            }
        };
        let mut role = None;
        let mut role_loc = Location::None;
        if let Some(rp) = n.prop("role") {
            role_loc = self.locs.prop(path, rp);
            role = match rp.as_str() {
                Some("owner") => Some(ShmRole::Owner),
                Some("borrower") => Some(ShmRole::Borrower),
                other => {
                    self.diags.push(
                        Diagnostic::new(
                            SHM_ROLE_INVALID,
                            role_loc.clone(),
                            format!(
                                "`role` is {}",
                                other.map(|o| format!("\"{o}\"")).unwrap_or_else(|| "not a string".into())
                            ),
                        )
                        .label("Xen accepts only \"owner\" or \"borrower\" (case-sensitive)")
                        .help("write `role = \"owner\";` or `role = \"borrower\";`, or leave it out for a region owned by DOMID_IO"),
                    );
                    return None;
                }
            };
        }
        let Some(mp) = n.prop(b::SHM_MEM_PROP) else {
            self.diags.push(
                Diagnostic::new(
                    SHM_MEM_MISSING,
                    node_loc,
                    format!("`{path}` has no `xen,shared-mem`"),
                )
                .help("add `xen,shared-mem = <HOST GUEST SIZE>;`"),
            );
            return None;
        };
        let mem_loc = self.locs.prop(path, mp);
        let cells = mp.value.len() / 4;
        let full = (2 * a + s) as usize;
        let heap = (a + s) as usize;
        if a == 0
            || s == 0
            || a > 2
            || s > 2
            || mp.value.len() % 4 != 0
            || (cells != full && cells != heap)
        {
            self.diags.push(
                Diagnostic::new(
                    SHM_MEM_CELLS,
                    mem_loc,
                    format!(
                        "`xen,shared-mem` has {} bytes; with #address-cells = {a} and #size-cells = {s} Xen expects {} cells (host, guest, size){}",
                        mp.value.len(),
                        full,
                        if self.sys.target.caps().heap_form_shm { format!(" or {heap} cells (guest, size)") } else { String::new() }
                    ),
                )
                .help("write `xen,shared-mem = <HOST GUEST SIZE>;` using the domain node's #address-cells and #size-cells"),
            );
            return None;
        }
        let (host, guest, size) = if cells == full {
            (
                Some(mp.read_cells(0, a)?),
                mp.read_cells(a as usize, a)?,
                mp.read_cells(2 * a as usize, s)?,
            )
        } else {
            (None, mp.read_cells(0, a)?, mp.read_cells(a as usize, s)?)
        };
        Some(ShmNode {
            domain: dom,
            id,
            id_loc,
            host,
            guest,
            size,
            role,
            loc: node_loc,
            mem_loc,
            role_loc,
            channel: None,
        })
    }
}
