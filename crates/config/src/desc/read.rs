//! The reader: a description's tables into the model (target, platform, domains and their
//! modules, low-level event channels and shared regions), with domain references resolved.

use super::schema::*;
use super::{Builder, Given};
use crate::codes::*;
use crate::model::*;
use serde::Deserialize;
use staticbus_abi::PAGE_SIZE;
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Location, Span};
use std::path::Path;
use toml::Spanned;

/// Settings that override the description (from the command line).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replace the target Xen version.
    pub xen: Option<XenVersion>,
    /// Replace `static-shm`.
    pub static_shm: Option<bool>,
    /// Replace `static-memory` (CONFIG_STATIC_MEMORY; `static-shm` implies it).
    pub static_memory: Option<bool>,
    /// Replace `static-evtchn` (CONFIG_STATIC_EVTCHN).
    pub static_evtchn: Option<bool>,
    /// Platform facts from a base device tree (`--base`): its RAM, reserved ranges and GIC
    /// replace the description's RAM and add to its reserved ranges.
    pub base_platform: Option<Platform>,
}

/// Reads a system description. `base_dir` is where relative module paths are resolved.
/// Returns the model (when it could be built) and every diagnostic.
pub fn read_description(
    file: FileId,
    text: &str,
    name: &str,
    base_dir: &Path,
    overrides: &Overrides,
) -> (Option<System>, Diagnostics) {
    let mut diags = Diagnostics::new();
    let desc: Description = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            if let Some(d) = duplicate_dom0(file, text) {
                diags.push(d);
                return (None, diags);
            }
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            let help = if msg.contains("unknown field") {
                "see docs/system-description.md for the keys each table accepts"
            } else if msg.contains("missing field") {
                "add the missing key"
            } else {
                "fix the TOML syntax or value at this position"
            };
            diags.push(
                Diagnostic::new(DESC_SYNTAX, Span::new(file, span.start, span.end), msg).help(help),
            );
            return (None, diags);
        }
    };
    let mut b = Builder {
        file,
        base_dir,
        sys: System::new(
            desc.system.name.clone().unwrap_or_else(|| name.to_string()),
            SourceKind::Description,
        ),
        diags: Diagnostics::new(),
        given: Given::default(),
        base_platform: overrides.base_platform.clone(),
        domain_names: Default::default(),
    };
    b.build(&desc, overrides);
    diags.extend(b.diags);
    if diags.has_errors() {
        (None, diags)
    } else {
        (Some(b.sys), diags)
    }
}

/// `[[dom0]]` given more than once: several hardware domains, which the schema (one
/// `[dom0]` table) cannot hold.
fn duplicate_dom0(file: FileId, text: &str) -> Option<Diagnostic> {
    #[derive(Deserialize)]
    struct Probe {
        dom0: Option<Vec<Spanned<toml::Table>>>,
    }
    let list = toml::from_str::<Probe>(text).ok()?.dom0?;
    let second = list.get(1)?.span();
    Some(
        Diagnostic::new(
            DESC_DUPLICATE_DOM0,
            Span::new(file, second.start, second.end),
            format!("{} hardware domains are declared", list.len()),
        )
        .label("a second `[[dom0]]`")
        .help("declare dom0 once, as `[dom0]`; the other domains are `[[domain]]` tables"),
    )
}

impl Builder<'_> {
    pub(super) fn target(&mut self, desc: &Description, ov: &Overrides) {
        let mut t = Target::default();
        if let Some(td) = &desc.target {
            t.loc = self.loc(td);
            let td = td.get_ref();
            if let Some(h) = &td.hypervisor {
                match Hypervisor::parse(h.get_ref()) {
                    Some(v) => t.hypervisor = v,
                    None => self.err(
                        DESC_BAD_VALUE,
                        self.loc(h),
                        format!("unknown hypervisor `{}`", h.get_ref()),
                        "use \"xen\" (the default) or \"qemu-ivshmem\"",
                    ),
                }
            }
            if let Some(x) = &td.xen {
                match XenVersion::parse(x.get_ref()) {
                    Some(v) => t.xen = v,
                    None => self.err(
                        DESC_BAD_VALUE,
                        self.loc(x),
                        format!("unsupported Xen version `{}`", x.get_ref()),
                        "use \"4.17\", \"4.18\", \"4.19\" or \"4.20\"",
                    ),
                }
            }
            t.static_shm = td.static_shm.unwrap_or(false);
            t.static_memory = td.static_memory.unwrap_or(t.static_shm);
            t.static_evtchn = td.static_evtchn.unwrap_or(true);
            if let Some(g) = &td.gic {
                match g.get_ref().as_str() {
                    "v2" => self.sys.platform.gic = Some(GicVersion::V2),
                    "v3" => self.sys.platform.gic = Some(GicVersion::V3),
                    other => self.err(
                        DESC_BAD_VALUE,
                        self.loc(g),
                        format!("unknown GIC version `{other}`"),
                        "use \"v2\" or \"v3\"",
                    ),
                }
            }
        }
        if let Some(x) = ov.xen {
            t.xen = x;
        }
        if let Some(s) = ov.static_shm {
            t.static_shm = s;
            t.static_memory = t.static_memory || s;
        }
        if let Some(m) = ov.static_memory {
            t.static_memory = m || t.static_shm;
        }
        if let Some(e) = ov.static_evtchn {
            t.static_evtchn = e;
        }
        self.sys.target = t;
    }

    pub(super) fn platform(&mut self, desc: &Description) {
        let p = &desc.platform;
        let mut plat = std::mem::take(&mut self.sys.platform);
        plat.ram = p.ram.iter().map(|r| self.range(r)).collect();
        plat.reserved = p
            .reserved
            .iter()
            .enumerate()
            .map(|(i, r)| Reserved {
                range: self.range(r),
                kind: ReservedKind::Declared,
                name: r
                    .get_ref()
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("reserved #{i}")),
            })
            .collect();
        plat.shm_pool = p.shm_pool.as_ref().map(|r| self.range(r));
        plat.dtb = p.dtb.as_ref().map(|r| self.range(r));
        plat.xen_image = p.xen.as_ref().map(|r| self.range(r));
        plat.guest_shm_window = p.guest_shm_window.as_ref().map(|r| self.range(r));
        if let Some(bp) = &self.base_platform {
            if !bp.ram.is_empty() {
                plat.ram = bp.ram.clone();
            }
            plat.reserved.extend(bp.reserved.iter().cloned());
            plat.gic = plat.gic.or(bp.gic);
        }
        if let Some(pool) = &plat.shm_pool {
            let bad = if pool.base % PAGE_SIZE != 0 || pool.size % PAGE_SIZE != 0 {
                Some("is not 4 KiB aligned".to_string())
            } else if !plat.ram.is_empty()
                && !plat.ram.iter().any(|r| r.contains(pool.base, pool.size))
            {
                Some("is not inside RAM".to_string())
            } else {
                plat.reserved
                    .iter()
                    .find(|r| r.range.overlaps(pool))
                    .map(|r| format!("overlaps reserved range `{}`", r.name))
            };
            if let Some(why) = bad {
                self.err(
                    ALLOC_POOL_INVALID,
                    pool.loc.clone(),
                    format!("the shm pool {why}"),
                    "place the pool in free, 4 KiB aligned RAM",
                );
            }
        }
        self.sys.platform = plat;
    }

    /// The module, and its load address as given (`None`: to be allocated).
    fn module(
        &mut self,
        kind: ModuleKind,
        m: &Spanned<ModuleDesc>,
        dom: &str,
    ) -> Option<(Module, Option<u64>)> {
        let md = m.get_ref();
        let size = match (md.size, &md.file) {
            (Some(s), _) => s.0,
            (None, Some(f)) if md.cargo.is_none() => match std::fs::metadata(self.base_dir.join(f))
            {
                Ok(meta) => meta.len(),
                Err(e) => {
                    self.err(
                        DESC_MODULE_SIZE,
                        self.loc(m),
                        format!("cannot read {} `{f}` of `{dom}`: {e}", kind.as_str()),
                        "build the image first, or give `size` explicitly",
                    );
                    return None;
                }
            },
            (None, _) => {
                self.err(
                    DESC_MODULE_SIZE,
                    self.loc(m),
                    format!(
                        "the {} of `{dom}` has neither `file` nor `size`",
                        kind.as_str()
                    ),
                    if md.cargo.is_some() {
                        "an image built by `cargo` needs `size`: the room reserved for it in host memory"
                    } else {
                        "give `file = \"path\"` or `size = \"…\"`"
                    },
                );
                return None;
            }
        };
        let addr = md.addr.map(|a| a.0);
        let module = Module {
            kind,
            addr: addr.unwrap_or_default(),
            size,
            path: md.file.clone(),
            cargo: md.cargo.as_ref().map(|c| CargoImage {
                package: c.package.clone(),
                bin: c.bin.clone(),
            }),
            bootargs: None,
            bootargs_loc: Location::None,
            loc: self.loc(m),
        };
        Some((module, addr))
    }

    /// The domain, and the load addresses of its modules as given.
    fn domain(
        &mut self,
        dd: &Spanned<DomainDesc>,
        domid: u16,
        dom0: bool,
    ) -> Option<(Domain, Vec<Option<u64>>)> {
        let d = dd.get_ref();
        let (name, loc) = match (&d.name, dom0) {
            (Some(n), _) => (n.get_ref().clone(), self.loc(n)),
            (None, true) => ("dom0".to_string(), self.loc(dd)),
            (None, false) => {
                self.err(
                    DESC_SYNTAX,
                    self.loc(dd),
                    "domain has no `name`",
                    "add `name = \"…\"`",
                );
                return None;
            }
        };
        if !valid_node_name(&name) {
            self.err(
                NODE_NAME_INVALID,
                loc.clone(),
                format!("`{name}` cannot be a device-tree node name"),
                "use letters, digits and `,._+-`, starting with a letter, at most 31 characters",
            );
        }
        let mut dom = Domain::new(name.clone(), domid, loc);
        dom.dom0 = dom0;
        match &d.memory {
            Some(m) => {
                dom.memory_loc = self.loc(m);
                let bytes = m.get_ref().0;
                if bytes % 1024 != 0 {
                    self.err(
                        DESC_BAD_VALUE,
                        self.loc(m),
                        format!("memory of `{name}` is not a whole number of KiB"),
                        "Xen takes memory in KiB",
                    );
                }
                dom.memory_kib = Some(bytes / 1024);
            }
            None if !dom0 => self.err(
                DOMAIN_MEMORY,
                dom.loc.clone(),
                format!("domain `{name}` has no `memory`"),
                "add e.g. `memory = \"64MiB\"`",
            ),
            None => {}
        }
        dom.vcpus = Some(d.vcpus.as_ref().map(|v| *v.get_ref()).unwrap_or(1));
        dom.vcpus_loc = d
            .vcpus
            .as_ref()
            .map(|v| self.loc(v))
            .unwrap_or(dom.loc.clone());
        let mut addrs = Vec::new();
        if let Some(l) = &d.linux {
            self.linux_modules(&mut dom, &mut addrs, l, d);
        }
        for (kind, m) in [
            (ModuleKind::Kernel, &d.kernel),
            (ModuleKind::Ramdisk, &d.ramdisk),
            (ModuleKind::DeviceTree, &d.dtb),
        ] {
            if let Some(m) = m {
                if let Some((mut module, addr)) = self.module(kind, m, &name) {
                    if kind == ModuleKind::Kernel {
                        if let Some(b) = &d.bootargs {
                            module.bootargs = Some(b.get_ref().clone());
                            module.bootargs_loc = self.loc(b);
                        }
                    }
                    dom.modules.push(module);
                    addrs.push(addr);
                }
            }
        }
        dom.vpl011 = d.vpl011.unwrap_or(true);
        dom.enhanced = match d.enhanced.as_ref().map(|e| e.get_ref()) {
            None => {
                if dom0 {
                    Enhanced::Absent
                } else {
                    Enhanced::NoXenstore
                }
            }
            Some(EnhancedDesc::Bool(false)) => Enhanced::Absent,
            Some(EnhancedDesc::Bool(true)) => Enhanced::Enabled,
            Some(EnhancedDesc::Str(s)) => match s.as_str() {
                "enabled" | "" => Enhanced::Enabled,
                "no-xenstore" => Enhanced::NoXenstore,
                "disabled" => Enhanced::Disabled,
                other => Enhanced::Unknown(other.to_string()),
            },
        };
        dom.enhanced_loc = d
            .enhanced
            .as_ref()
            .map(|e| self.loc(e))
            .unwrap_or(dom.loc.clone());
        dom.static_mem = d.static_mem.iter().map(|r| self.range(r)).collect();
        if let Some(first) = d.static_mem.first() {
            dom.static_mem_loc = self.loc(first);
        }
        if let Some(dm) = &d.direct_map {
            dom.direct_map = *dm.get_ref();
            dom.direct_map_loc = self.loc(dm);
        }
        if let Some(e) = &d.emulate {
            let limits = self.limits(&dom.name, e.limits.as_ref());
            dom.emulate = Some(Emulate {
                program: e.program.clone(),
                args: e.args.clone(),
                limits,
            });
        }
        Some((dom, addrs))
    }

    /// The resource limits of domain `name`'s `emulate = { limits = { … } }`: the defaults
    /// ([`Limits::DEFAULT`]) for what is left out, an error (SB0514) for what is out of
    /// range (the default then stands in for it).
    fn limits(&mut self, name: &str, l: Option<&LimitsDesc>) -> Limits {
        let mut out = Limits::DEFAULT;
        let Some(l) = l else { return out };
        let def = Limits::DEFAULT;
        if let Some(m) = &l.memory {
            let v = m.get_ref().0;
            if v < Limits::MIN_MEMORY {
                self.err(
                    EMULATE_LIMIT,
                    self.loc(m),
                    format!(
                        "domain `{name}`: a `memory` limit of {} is too little for a program to \
                         start (the dynamic loader, libc and Rust's std need a few MiB of private \
                         memory)",
                        size_text(v)
                    ),
                    &format!(
                        "give at least \"16MiB\" (the default is \"{}\")",
                        size_text(def.memory).replace(' ', "")
                    ),
                );
            } else {
                out.memory = v;
            }
        }
        let count = |this: &mut Self,
                     what: &str,
                     v: &Option<Spanned<i64>>,
                     min: u64,
                     max: u64,
                     why: &str,
                     default: u64,
                     slot: &mut u64| {
            let Some(v) = v else { return };
            let n = *v.get_ref();
            match u64::try_from(n) {
                Ok(n) if (min..=max).contains(&n) => *slot = n,
                _ => this.err(
                    EMULATE_LIMIT,
                    this.loc(v),
                    format!("domain `{name}`: `{what} = {n}` is out of range: {why}"),
                    &format!("give {min} to {max} (the default is {default})"),
                ),
            }
        };
        count(
            self,
            "processes",
            &l.processes,
            Limits::MIN_PROCESSES,
            Limits::MAX_PROCESSES,
            "the sandbox's namespace init counts as one of the domain's processes, and the \
             program is another",
            def.processes,
            &mut out.processes,
        );
        count(
            self,
            "files",
            &l.files,
            Limits::MIN_FILES,
            Limits::MAX_FILES,
            "stdin, stdout, stderr, the domain's memory and regions and what libc opens at \
             start need a dozen descriptors, and the kernel allows at most 1048576",
            def.files,
            &mut out.files,
        );
        if let Some(f) = &l.file_size {
            out.file_size = f.get_ref().0;
        }
        if let Some(c) = &l.cpu {
            let cpus = *c.get_ref();
            let quota = cpus * Limits::CPU_PERIOD_US as f64;
            if quota.is_finite()
                && quota >= Limits::MIN_CPU_QUOTA_US as f64
                && quota <= Limits::MAX_CPU_QUOTA_US as f64
            {
                out.cpu_quota_us = Some(quota.round() as u64);
            } else {
                self.err(
                    EMULATE_LIMIT,
                    self.loc(c),
                    format!(
                        "domain `{name}`: `cpu = {cpus}` is out of range: it is a number of CPUs \
                         (0.5 is half of one), and the kernel's cpu.max takes no quota under \
                         1 ms per 100 ms period"
                    ),
                    "give 0.01 to 1024, or leave `cpu` out for no bound",
                );
            }
        }
        out
    }

    /// The kernel and ramdisk modules of a Linux domain (`linux = { … }`), which take the
    /// place of `kernel` and `ramdisk`.
    fn linux_modules(
        &mut self,
        dom: &mut Domain,
        addrs: &mut Vec<Option<u64>>,
        l: &Spanned<LinuxDesc>,
        d: &DomainDesc,
    ) {
        let loc = self.loc(l);
        let ld = l.get_ref();
        if let Some(other) = d.kernel.as_ref().or(d.ramdisk.as_ref()) {
            let at = self.loc(other);
            self.err(
                DESC_BAD_VALUE,
                at,
                format!(
                    "domain `{}` is a Linux domain: `staticbus boot` provides its kernel and initramfs",
                    dom.name
                ),
                "leave out `kernel` and `ramdisk`, or use `linux = { kernel = \"path\" }` for another kernel",
            );
            return;
        }
        let kernel = match ld.kernel.as_deref() {
            None | Some("debian") => LinuxKernel::Debian,
            Some(f) => LinuxKernel::File(f.to_string()),
        };
        const MIB: u64 = 1 << 20;
        let module = |kind, size: Option<Size>, default: u64, path: Option<String>| Module {
            kind,
            addr: 0,
            size: size.map_or(default, |s| s.0),
            path,
            cargo: None,
            bootargs: None,
            bootargs_loc: Location::None,
            loc: loc.clone(),
        };
        let mut k = module(
            ModuleKind::Kernel,
            ld.kernel_size,
            64 * MIB,
            match &kernel {
                LinuxKernel::File(f) => Some(f.clone()),
                LinuxKernel::Debian => None,
            },
        );
        if let Some(b) = &d.bootargs {
            k.bootargs = Some(b.get_ref().clone());
            k.bootargs_loc = self.loc(b);
        }
        dom.modules.push(k);
        dom.modules.push(module(
            ModuleKind::Ramdisk,
            ld.initramfs_size,
            16 * MIB,
            None,
        ));
        addrs.extend([None, None]);
        dom.linux = Some(LinuxDomain {
            kernel,
            programs: ld
                .programs
                .iter()
                .map(|c| CargoImage {
                    package: c.package.clone(),
                    bin: c.bin.clone(),
                })
                .collect(),
            loc,
        });
    }

    pub(super) fn domains(&mut self, desc: &Description) {
        if let Some(d0) = &desc.dom0 {
            if let Some((d, addrs)) = self.domain(d0, 0, true) {
                self.sys.domains.push(d);
                self.given.module_addr.push(addrs);
            }
        }
        let mut domid = 0u16;
        for dd in &desc.domain {
            domid = domid.saturating_add(1);
            if let Some((d, addrs)) = self.domain(dd, domid, false) {
                self.sys.domains.push(d);
                self.given.module_addr.push(addrs);
            }
        }
        if self.sys.domains.is_empty() {
            self.err(
                NO_DOMAINS,
                Location::File { file: self.file },
                "the description declares no domains",
                "add a `[[domain]]` table",
            );
        }
    }

    pub(super) fn dom_ref(&mut self, name: &str, loc: Location) -> Option<DomIdx> {
        // The first domain of each name, as `System::domain_index` finds it, indexed up
        // to the domains known so far.
        let known = &mut self.domain_names;
        for (i, d) in self.sys.domains.iter().enumerate().skip(known.1) {
            known.0.entry(d.name.clone()).or_insert(i);
        }
        known.1 = self.sys.domains.len();
        let found = known.0.get(name).copied();
        if found.is_none() {
            let known: Vec<&str> = self.sys.domains.iter().map(|d| d.name.as_str()).collect();
            let msg = format!("no domain is named `{name}`");
            let help = format!("declared domains: {}", known.join(", "));
            self.diags
                .push(Diagnostic::new(DESC_UNKNOWN_DOMAIN, loc, msg).help(help));
        }
        found
    }

    pub(super) fn evtchns(&mut self, desc: &Description) {
        for e in &desc.evtchn {
            let ed = e.get_ref();
            let mut ends = Vec::new();
            for s in [&ed.a, &ed.b] {
                let loc = self.loc(s);
                let Some((dn, port)) = s.get_ref().rsplit_once(':') else {
                    self.err(
                        DESC_BAD_VALUE,
                        loc,
                        format!("`{}` is not `domain:port`", s.get_ref()),
                        "write e.g. \"ping:10\"",
                    );
                    continue;
                };
                let Some(port) = parse_int(port).and_then(|p| u32::try_from(p).ok()) else {
                    self.err(
                        DESC_BAD_VALUE,
                        loc,
                        format!("`{port}` is not a port number"),
                        "write e.g. \"ping:10\"",
                    );
                    continue;
                };
                if let Some(d) = self.dom_ref(dn, loc.clone()) {
                    ends.push(EvtchnEnd {
                        domain: d,
                        port,
                        loc: loc.clone(),
                        port_loc: loc,
                    });
                }
            }
            if let [a, b2] = &ends[..] {
                let idx = self.sys.evtchns.len();
                self.sys.evtchns.push(EvtchnPair {
                    first: a.clone(),
                    second: b2.clone(),
                    channel: None,
                });
                self.given.ports.push((idx, true, Some(a.port)));
                self.given.ports.push((idx, false, Some(b2.port)));
            }
        }
    }

    fn role(&mut self, r: &Option<Spanned<String>>) -> Option<ShmRole> {
        let r = r.as_ref()?;
        match r.get_ref().as_str() {
            "owner" => Some(ShmRole::Owner),
            "borrower" => Some(ShmRole::Borrower),
            other => {
                self.err(
                    SHM_ROLE_INVALID,
                    self.loc(r),
                    format!("`role` is \"{other}\""),
                    "use \"owner\" or \"borrower\", or leave it out for a region owned by DOMID_IO",
                );
                None
            }
        }
    }

    pub(super) fn shm(&mut self, desc: &Description) {
        for s in &desc.shm {
            let sd = s.get_ref();
            let id = sd.id.get_ref().clone();
            for u in &sd.users {
                let ud = u.get_ref();
                let Some(d) = self.dom_ref(ud.domain.get_ref(), self.loc(&ud.domain)) else {
                    continue;
                };
                let role = self.role(&ud.role);
                let guest = ud.guest.as_ref().map(|g| g.get_ref().0);
                self.given.guest.push(guest);
                self.sys.shm.push(ShmNode {
                    domain: d,
                    id: id.clone(),
                    id_loc: self.loc(&sd.id),
                    host: sd.host.as_ref().map(|h| h.get_ref().0),
                    guest: guest.unwrap_or_default(),
                    size: sd.size.get_ref().0,
                    role,
                    loc: self.loc(u),
                    mem_loc: ud
                        .guest
                        .as_ref()
                        .map(|g| self.loc(g))
                        .or_else(|| sd.host.as_ref().map(|h| self.loc(h)))
                        .unwrap_or_else(|| self.loc(u)),
                    role_loc: ud
                        .role
                        .as_ref()
                        .map(|r| self.loc(r))
                        .unwrap_or_else(|| self.loc(u)),
                    channel: None,
                });
            }
        }
    }
}

/// True if `name` is a valid device-tree node name (without unit address) that Xen can
/// handle as a domain name.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ",._+-".contains(c))
}

/// `1 GiB`, `16 MiB`, `4 KiB` or `1000 bytes`: a size as a person would write it.
fn size_text(v: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if v != 0 && v % (1 << shift) == 0 {
            return format!("{} {unit}", v >> shift);
        }
    }
    format!("{v} bytes")
}
