//! The TOML system description: schema, reader and allocator.
//!
//! The reader checks the description against the schema (unknown keys, wrong types and bad
//! values are diagnostics with spans), resolves domain references, expands high-level
//! channels into shared regions and event-channel pairs, and allocates whatever was left
//! open: shm ids, host ranges from the shm pool, guest ranges clear of each guest's memory
//! map, event-channel ports and module load addresses. Explicit values are used as given
//! (the validator checks them); they are never changed. See `docs/system-description.md`.

use crate::codes::*;
use crate::model::*;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use staticbus_abi::PAGE_SIZE;
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Location, Span};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use toml::Spanned;

/// A size in bytes: an integer, or a string such as `"64KiB"`, `"16 MiB"`, `"0x1000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

/// An address: an integer (TOML allows `0x4000_0000`) or a string such as `"0x40000000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr(pub u64);

fn parse_int(s: &str) -> Option<u64> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// Parses `"64KiB"`, `"64 KiB"`, `"16M"`, `"2GiB"`, `"4096"`, `"0x1000"`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && !t.starts_with("0x") && !t.starts_with("0X"))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    parse_int(num)?.checked_mul(mult)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"64KiB\", \"16MiB\", \"0x1000\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a size (write e.g. \"64KiB\", \"16MiB\", \"2GiB\" or a number of bytes)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Addr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an address: an integer such as 0x4000_0000 or a string such as \"0x40000000\"",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Addr, E> {
                u64::try_from(v)
                    .map(Addr)
                    .map_err(|_| E::custom("an address cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Addr, E> {
                Ok(Addr(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Addr, E> {
                parse_int(v)
                    .map(Addr)
                    .ok_or_else(|| E::custom(format!("`{v}` is not an address")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (`to = "a"` or `to = ["a", "b"]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One.
    One(T),
    /// Several.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[system]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDesc {
    /// System name.
    pub name: Option<String>,
}

/// `[target]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetDesc {
    /// `"4.17"` … `"4.20"`.
    pub xen: Option<Spanned<String>>,
    /// CONFIG_STATIC_SHM.
    pub static_shm: Option<bool>,
    /// CONFIG_STATIC_MEMORY.
    pub static_memory: Option<bool>,
    /// CONFIG_STATIC_EVTCHN.
    pub static_evtchn: Option<bool>,
    /// `"v2"` or `"v3"`.
    pub gic: Option<Spanned<String>>,
}

/// A `{ base, size }` range.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeDesc {
    /// Start.
    pub base: Addr,
    /// Size.
    pub size: Size,
    /// Optional name (reserved ranges).
    pub name: Option<String>,
}

/// `[platform]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlatformDesc {
    /// RAM banks.
    #[serde(default)]
    pub ram: Vec<Spanned<RangeDesc>>,
    /// Reserved ranges.
    #[serde(default)]
    pub reserved: Vec<Spanned<RangeDesc>>,
    /// Host pool for shared regions.
    pub shm_pool: Option<Spanned<RangeDesc>>,
    /// Where the DTB is placed.
    pub dtb: Option<Spanned<RangeDesc>>,
    /// Where the Xen image is placed.
    pub xen: Option<Spanned<RangeDesc>>,
    /// Guest window for shared regions.
    pub guest_shm_window: Option<Spanned<RangeDesc>>,
}

/// `[xen]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XenDesc {
    /// Xen's command line.
    pub bootargs: Option<String>,
}

/// A module: `{ file, cargo, addr, size }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDesc {
    /// Image file (relative to the description).
    pub file: Option<String>,
    /// The image is a binary of this Cargo workspace, built by `staticbus boot`.
    pub cargo: Option<CargoDesc>,
    /// Load address (allocated when absent).
    pub addr: Option<Addr>,
    /// Size (the file's size when absent).
    pub size: Option<Size>,
}

/// `cargo = { package, bin }`: a module image built from a Cargo binary target for
/// `aarch64-unknown-none` with the domain manifests compiled in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoDesc {
    /// Package (default: the one that has the binary).
    pub package: Option<String>,
    /// Binary target.
    pub bin: String,
}

/// `xen,enhanced`: a string, or `false` for absent / `true` for `"enabled"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum EnhancedDesc {
    /// `true` / `false`.
    Bool(bool),
    /// A value.
    Str(String),
}

/// `[domain.emulate]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulateDesc {
    /// Program.
    pub program: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[[domain]]` and `[dom0]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DomainDesc {
    /// Name.
    pub name: Option<Spanned<String>>,
    /// RAM size.
    pub memory: Option<Spanned<Size>>,
    /// vCPUs (default 1).
    pub vcpus: Option<Spanned<u32>>,
    /// Kernel.
    pub kernel: Option<Spanned<ModuleDesc>>,
    /// Ramdisk.
    pub ramdisk: Option<Spanned<ModuleDesc>>,
    /// Passthrough DT.
    pub dtb: Option<Spanned<ModuleDesc>>,
    /// Command line.
    pub bootargs: Option<Spanned<String>>,
    /// vPL011 (default true).
    pub vpl011: Option<bool>,
    /// `xen,enhanced` (default "no-xenstore").
    pub enhanced: Option<Spanned<EnhancedDesc>>,
    /// Static memory banks.
    #[serde(default)]
    pub static_mem: Vec<Spanned<RangeDesc>>,
    /// Direct map.
    pub direct_map: Option<Spanned<bool>>,
    /// Emulator settings.
    pub emulate: Option<EmulateDesc>,
}

/// `[[evtchn]]`: `a = "dom:port"`, `b = "dom:port"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvtchnDesc {
    /// One end.
    pub a: Spanned<String>,
    /// The other end.
    pub b: Spanned<String>,
}

/// One user of a low-level region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShmUserDesc {
    /// Domain name.
    pub domain: Spanned<String>,
    /// Guest address (allocated when absent).
    pub guest: Option<Spanned<Addr>>,
    /// `"owner"` or `"borrower"` (absent: DOMID_IO owns the region).
    pub role: Option<Spanned<String>>,
}

/// `[[shm]]`: a low-level static shared region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShmDesc {
    /// `xen,shm-id`.
    pub id: Spanned<String>,
    /// Size.
    pub size: Spanned<Size>,
    /// Host address (allocated from the pool, or the heap form on 4.19+, when absent).
    pub host: Option<Spanned<Addr>>,
    /// Users.
    pub users: Vec<Spanned<ShmUserDesc>>,
}

/// Per-domain values: one for all domains, or a table by domain name.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PerDomain<T> {
    /// The same for every member.
    All(T),
    /// By domain name.
    By(BTreeMap<String, T>),
}

/// `[[channel]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelDesc {
    /// Name.
    pub name: Spanned<String>,
    /// `queue | log | latest | blob`.
    pub protocol: Spanned<String>,
    /// Writer(s).
    pub from: Spanned<OneOrMany<String>>,
    /// Reader(s).
    pub to: Spanned<OneOrMany<String>>,
    /// Region size.
    pub size: Spanned<Size>,
    /// shm id (allocated when absent).
    pub shm_id: Option<Spanned<String>>,
    /// Host address.
    pub host: Option<Spanned<Addr>>,
    /// Guest address(es).
    pub guest: Option<Spanned<PerDomain<Addr>>>,
    /// Event-channel ports by domain (a list when the domain has several pairs).
    pub ports: Option<Spanned<BTreeMap<String, OneOrMany<u32>>>>,
    /// Owner domain (absent: DOMID_IO).
    pub owner: Option<Spanned<String>>,
}

/// The whole description.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// `[system]`.
    #[serde(default)]
    pub system: SystemDesc,
    /// `[target]`.
    pub target: Option<Spanned<TargetDesc>>,
    /// `[platform]`.
    #[serde(default)]
    pub platform: PlatformDesc,
    /// `[xen]`.
    #[serde(default)]
    pub xen: XenDesc,
    /// `[dom0]`.
    pub dom0: Option<Spanned<DomainDesc>>,
    /// `[[domain]]`.
    #[serde(default)]
    pub domain: Vec<Spanned<DomainDesc>>,
    /// `[[evtchn]]`.
    #[serde(default)]
    pub evtchn: Vec<Spanned<EvtchnDesc>>,
    /// `[[shm]]`.
    #[serde(default)]
    pub shm: Vec<Spanned<ShmDesc>>,
    /// `[[channel]]`.
    #[serde(default)]
    pub channel: Vec<Spanned<ChannelDesc>>,
}

/// Default guest-physical window for shared regions: clear of every device and Xen window
/// of the Xen/Arm guest memory map and below guest RAM.
pub const DEFAULT_GUEST_WINDOW: (u64, u64) = (0x0800_0000, 0x0800_0000);

/// Settings that override the description (from the command line).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replace the target Xen version.
    pub xen: Option<XenVersion>,
    /// Replace `static-shm`.
    pub static_shm: Option<bool>,
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

    fn build(&mut self, desc: &Description, ov: &Overrides) {
        self.target(desc, ov);
        self.platform(desc);
        self.sys.xen_bootargs = desc.xen.bootargs.clone();
        self.domains(desc);
        if self.diags.has_errors() {
            return;
        }
        self.evtchns(desc);
        self.shm(desc);
        self.channels(desc);
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

    fn target(&mut self, desc: &Description, ov: &Overrides) {
        let mut t = Target::default();
        if let Some(td) = &desc.target {
            t.loc = self.loc(td);
            let td = td.get_ref();
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
        self.sys.target = t;
    }

    fn platform(&mut self, desc: &Description) {
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
        dom.emulate = d.emulate.as_ref().map(|e| Emulate {
            program: e.program.clone(),
            args: e.args.clone(),
        });
        Some((dom, addrs))
    }

    fn domains(&mut self, desc: &Description) {
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

    fn dom_ref(&mut self, name: &str, loc: Location) -> Option<DomIdx> {
        let found = self.sys.domain_index(name);
        if found.is_none() {
            let known: Vec<&str> = self.sys.domains.iter().map(|d| d.name.as_str()).collect();
            let msg = format!("no domain is named `{name}`");
            let help = format!("declared domains: {}", known.join(", "));
            self.diags
                .push(Diagnostic::new(DESC_UNKNOWN_DOMAIN, loc, msg).help(help));
        }
        found
    }

    fn evtchns(&mut self, desc: &Description) {
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

    fn shm(&mut self, desc: &Description) {
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

    fn channels(&mut self, desc: &Description) {
        let mut names: HashMap<String, Location> = HashMap::new();
        let explicit_ids: HashSet<String> = desc
            .shm
            .iter()
            .map(|s| s.get_ref().id.get_ref().clone())
            .chain(
                desc.channel
                    .iter()
                    .filter_map(|c| c.get_ref().shm_id.as_ref().map(|i| i.get_ref().clone())),
            )
            .collect();
        let mut used_ids = explicit_ids.clone();
        for (ci, c) in desc.channel.iter().enumerate() {
            let cd = c.get_ref();
            let name = cd.name.get_ref().clone();
            let loc = self.loc(&cd.name);
            if let Some(prev) = names.insert(name.clone(), loc.clone()) {
                self.diags.push(
                    Diagnostic::new(
                        CHANNEL_DUPLICATE,
                        loc.clone(),
                        format!("channel `{name}` is declared twice"),
                    )
                    .with(prev, "first declared here")
                    .help("give every channel a unique name"),
                );
                continue;
            }
            let Some(protocol) = Protocol::parse(cd.protocol.get_ref()) else {
                self.err(
                    DESC_BAD_VALUE,
                    self.loc(&cd.protocol),
                    format!("unknown protocol `{}`", cd.protocol.get_ref()),
                    "use \"queue\", \"log\", \"latest\" or \"blob\"",
                );
                continue;
            };
            let side =
                |list: &Spanned<OneOrMany<String>>, this: &mut Self| -> Option<Vec<DomIdx>> {
                    let l = this.loc(list);
                    let mut out = Vec::new();
                    for n in list.get_ref().to_vec() {
                        out.push(this.dom_ref(&n, l.clone())?);
                    }
                    Some(out)
                };
            let (Some(writers), Some(readers)) = (side(&cd.from, self), side(&cd.to, self)) else {
                continue;
            };
            let (wmax, rmax) = protocol.arity();
            let (wrole, rrole) = protocol.roles();
            for (list, max, what, span) in [
                (&writers, wmax, wrole, &cd.from),
                (&readers, rmax, rrole, &cd.to),
            ] {
                if list.is_empty() || max.is_some_and(|m| list.len() > m) {
                    self.err(
                        CHANNEL_ARITY,
                        self.loc(span),
                        format!(
                            "a {} channel has {} {what}{}; it needs {}",
                            protocol.as_str(),
                            list.len(),
                            if list.len() == 1 { "" } else { "s" },
                            match max {
                                Some(1) => format!("exactly one {what}"),
                                Some(m) => format!("1 to {m} {what}s"),
                                None => format!("at least one {what}"),
                            }
                        ),
                        "split the channel, or choose a protocol that allows several",
                    );
                }
            }
            if let Some(w) = writers.iter().find(|w| readers.contains(w)) {
                self.err(
                    CHANNEL_SELF,
                    self.loc(&cd.to),
                    format!(
                        "`{}` is both a {wrole} and a {rrole} of channel `{name}`",
                        self.sys.domains[*w].name
                    ),
                    "a channel connects different domains",
                );
                continue;
            }
            let size = cd.size.get_ref().0;
            if size == 0 || size % PAGE_SIZE != 0 {
                let up = size.div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
                self.err(
                    CHANNEL_SIZE,
                    self.loc(&cd.size),
                    format!("channel size {size:#x} is not a non-zero multiple of 4 KiB"),
                    &format!("use {up:#x} ({} KiB)", up / 1024),
                );
                continue;
            }
            let shm_id = match &cd.shm_id {
                Some(i) => i.get_ref().clone(),
                None => {
                    let mut cand =
                        if !name.is_empty() && name.len() < staticbus_abi::dt::MAX_SHM_ID_LENGTH {
                            name.clone()
                        } else {
                            format!("sb-ch{ci}")
                        };
                    let mut n = 0;
                    while used_ids.contains(&cand) {
                        n += 1;
                        cand = format!("sb-ch{ci}-{n}");
                    }
                    cand
                }
            };
            used_ids.insert(shm_id.clone());
            let owner = match &cd.owner {
                None => None,
                Some(o) => {
                    let Some(d) = self.dom_ref(o.get_ref(), self.loc(o)) else {
                        continue;
                    };
                    if !writers.contains(&d) && !readers.contains(&d) {
                        self.err(
                            DESC_BAD_VALUE,
                            self.loc(o),
                            format!(
                                "owner `{}` is not a member of channel `{name}`",
                                o.get_ref()
                            ),
                            "the owner must be one of the channel's domains",
                        );
                        continue;
                    }
                    Some(d)
                }
            };
            let chan_idx = self.sys.channels.len();
            let mut chan = Channel {
                name: name.clone(),
                loc: loc.clone(),
                protocol,
                writers: writers.clone(),
                readers: readers.clone(),
                size,
                shm_id: shm_id.clone(),
                shm: Vec::new(),
                evtchns: Vec::new(),
            };
            let members = chan.members();
            let guest_for = |d: DomIdx, this: &mut Self| -> Option<u64> {
                match cd.guest.as_ref().map(|g| g.get_ref()) {
                    None => None,
                    Some(PerDomain::All(a)) => Some(a.0),
                    Some(PerDomain::By(m)) => m.get(&this.sys.domains[d].name).map(|a| a.0),
                }
            };
            if let Some(g) = &cd.guest {
                if let PerDomain::By(m) = g.get_ref() {
                    for k in m.keys() {
                        if !members.iter().any(|&d| &self.sys.domains[d].name == k) {
                            self.err(
                                DESC_UNKNOWN_DOMAIN,
                                self.loc(g),
                                format!("`{k}` is not a member of channel `{name}`"),
                                "list guest addresses only for the channel's domains",
                            );
                        }
                    }
                }
            }
            for &d in &members {
                let guest = guest_for(d, self);
                chan.shm.push(self.sys.shm.len());
                self.given.guest.push(guest);
                self.sys.shm.push(ShmNode {
                    domain: d,
                    id: shm_id.clone(),
                    id_loc: cd
                        .shm_id
                        .as_ref()
                        .map(|i| self.loc(i))
                        .unwrap_or(loc.clone()),
                    host: cd.host.as_ref().map(|h| h.get_ref().0),
                    guest: guest.unwrap_or_default(),
                    size,
                    role: owner.map(|o| {
                        if o == d {
                            ShmRole::Owner
                        } else {
                            ShmRole::Borrower
                        }
                    }),
                    loc: loc.clone(),
                    mem_loc: cd
                        .guest
                        .as_ref()
                        .filter(|_| guest.is_some())
                        .map(|g| self.loc(g))
                        .or_else(|| cd.host.as_ref().map(|h| self.loc(h)))
                        .unwrap_or(loc.clone()),
                    role_loc: cd
                        .owner
                        .as_ref()
                        .map(|o| self.loc(o))
                        .unwrap_or(loc.clone()),
                    channel: Some(chan_idx),
                });
            }
            // Event channels: one pair per (writer, reader).
            let mut port_lists: HashMap<DomIdx, (Vec<u32>, Location)> = HashMap::new();
            if let Some(p) = &cd.ports {
                for (k, v) in p.get_ref() {
                    match members.iter().find(|&&d| &self.sys.domains[d].name == k) {
                        Some(&d) => {
                            port_lists.insert(d, (v.to_vec(), self.loc(p)));
                        }
                        None => self.err(
                            DESC_UNKNOWN_DOMAIN,
                            self.loc(p),
                            format!("`{k}` is not a member of channel `{name}`"),
                            "list ports only for the channel's domains",
                        ),
                    }
                }
            }
            let mut taken: HashMap<DomIdx, usize> = HashMap::new();
            let mut next_port = |d: DomIdx| -> (Option<u32>, Location) {
                let i = taken.entry(d).or_default();
                let r = port_lists
                    .get(&d)
                    .map(|(v, l)| (v.get(*i).copied(), l.clone()));
                *i += 1;
                r.unwrap_or((None, Location::None))
            };
            for &w in &writers {
                for &r in &readers {
                    let (pw, lw) = next_port(w);
                    let (pr, lr) = next_port(r);
                    let idx = self.sys.evtchns.len();
                    let lw = if lw == Location::None {
                        loc.clone()
                    } else {
                        lw
                    };
                    let lr = if lr == Location::None {
                        loc.clone()
                    } else {
                        lr
                    };
                    self.sys.evtchns.push(EvtchnPair {
                        first: EvtchnEnd {
                            domain: w,
                            port: pw.unwrap_or_default(),
                            loc: loc.clone(),
                            port_loc: lw,
                        },
                        second: EvtchnEnd {
                            domain: r,
                            port: pr.unwrap_or_default(),
                            loc: loc.clone(),
                            port_loc: lr,
                        },
                        channel: Some(chan_idx),
                    });
                    self.given.ports.push((idx, true, pw));
                    self.given.ports.push((idx, false, pr));
                    chan.evtchns.push(idx);
                }
            }
            for (d, (v, l)) in &port_lists {
                let n = taken.get(d).copied().unwrap_or(0);
                if v.len() > n {
                    self.err(
                        DESC_BAD_VALUE,
                        l.clone(),
                        format!(
                            "{} ports given for `{}` but the channel has {n} event channels there",
                            v.len(),
                            self.sys.domains[*d].name
                        ),
                        "give one port per event channel of that domain",
                    );
                }
            }
            self.sys.channels.push(chan);
        }
    }

    fn alloc_ports(&mut self) {
        let mut used: HashMap<DomIdx, HashSet<u32>> = HashMap::new();
        for d in 0..self.sys.domains.len() {
            if self.sys.domains[d].enhanced.xenstore() {
                used.entry(d).or_default().insert(1);
            }
        }
        for &(pi, first, p) in &self.given.ports {
            if let Some(p) = p {
                let e = if first {
                    &self.sys.evtchns[pi].first
                } else {
                    &self.sys.evtchns[pi].second
                };
                used.entry(e.domain).or_default().insert(p);
            }
        }
        let reqs = std::mem::take(&mut self.given.ports);
        for (pi, first, p) in reqs {
            if p.is_some() {
                continue;
            }
            let pair = &mut self.sys.evtchns[pi];
            let e = if first {
                &mut pair.first
            } else {
                &mut pair.second
            };
            let dom = &self.sys.domains[e.domain];
            let set = used.entry(e.domain).or_default();
            match (1..=dom.max_port()).find(|p| !set.contains(p)) {
                Some(p) => {
                    set.insert(p);
                    e.port = p;
                }
                None => {
                    let msg = format!("domain `{}` has no free event-channel port left", dom.name);
                    self.diags.push(
                        Diagnostic::new(ALLOC_PORTS_FULL, e.loc.clone(), msg)
                            .help("reduce the number of channels of this domain"),
                    );
                    return;
                }
            }
        }
    }

    /// Orders pairs as Xen binds them. The generator writes each domain's endpoints in list
    /// order, domains in order, so Xen meets a pair first in the lower-indexed domain (for a
    /// loopback pair, at the end declared first); pairs bind in the order of that domain.
    fn order_evtchns(&mut self) {
        for p in &mut self.sys.evtchns {
            if p.second.domain < p.first.domain {
                std::mem::swap(&mut p.first, &mut p.second);
            }
        }
        let n = self.sys.evtchns.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.sys.evtchns[i].first.domain);
        let mut remap = vec![0; n];
        for (new, &old) in order.iter().enumerate() {
            remap[old] = new;
        }
        let mut slots: Vec<Option<EvtchnPair>> = std::mem::take(&mut self.sys.evtchns)
            .into_iter()
            .map(Some)
            .collect();
        self.sys.evtchns = order.iter().filter_map(|&o| slots[o].take()).collect();
        for c in &mut self.sys.channels {
            for e in &mut c.evtchns {
                *e = remap[*e];
            }
        }
    }

    fn taken_host(&self) -> Vec<(u64, u64)> {
        let p = &self.sys.platform;
        let mut v: Vec<(u64, u64)> = p
            .reserved
            .iter()
            .map(|r| (r.range.base, r.range.size))
            .collect();
        v.extend(
            p.dtb
                .iter()
                .chain(p.xen_image.iter())
                .map(|r| (r.base, r.size)),
        );
        v.extend(self.sys.domains.iter().enumerate().flat_map(|(d, dom)| {
            dom.modules
                .iter()
                .enumerate()
                .filter(move |&(i, _)| !self.given.module_open(d, i))
                .map(|(_, m)| (m.addr, m.size))
        }));
        v.extend(
            self.sys
                .domains
                .iter()
                .flat_map(|d| d.static_mem.iter().map(|r| (r.base, r.size))),
        );
        v.extend(
            self.sys
                .shm
                .iter()
                .filter_map(|n| n.host.map(|h| (h, n.size))),
        );
        v
    }

    fn alloc_host(&mut self) {
        // Regions (by id, first-seen order) without a host address. A region with a host
        // address in some node is not open: mixing the forms is for the validator (SB0215).
        let explicit: HashSet<&str> = self
            .sys
            .shm
            .iter()
            .filter(|n| n.host.is_some())
            .map(|n| n.id.as_str())
            .collect();
        let mut seen = HashSet::new();
        let need: Vec<(String, u64, Location)> = self
            .sys
            .shm
            .iter()
            .filter(|n| {
                n.host.is_none() && !explicit.contains(n.id.as_str()) && seen.insert(n.id.clone())
            })
            .map(|n| (n.id.clone(), n.size, n.loc.clone()))
            .collect();
        if need.is_empty() {
            return;
        }
        let Some(pool) = self.sys.platform.shm_pool.clone() else {
            if self.sys.target.caps().heap_form_shm {
                return; // heap form: Xen allocates
            }
            let (id, _, loc) = &need[0];
            self.diags.push(
                Diagnostic::new(ALLOC_NO_POOL, loc.clone(), format!("region `{id}` needs a host address and there is no shm pool"))
                    .note(format!("Xen {} cannot allocate shared memory from its heap (4.19+ can)", self.sys.target.xen))
                    .help("add `[platform] shm-pool = { base = …, size = … }`, give `host` explicitly, or target Xen 4.19+"),
            );
            return;
        };
        let mut free = FreeList::new(pool.base, pool.end(), &self.taken_host());
        let mut placed: HashMap<String, u64> = HashMap::new();
        for (id, size, loc) in need {
            match free.next_fit(pool.base, size, PAGE_SIZE) {
                Some(h) => {
                    free.take(h, size);
                    placed.insert(id, h);
                }
                None => {
                    self.diags.push(
                        Diagnostic::new(
                            ALLOC_POOL_FULL,
                            loc,
                            format!("no room for region `{id}` ({size:#x} bytes) in the shm pool"),
                        )
                        .with(pool.loc.clone(), "the pool")
                        .help("enlarge the pool or shrink the channels"),
                    );
                    return;
                }
            }
        }
        for n in self.sys.shm.iter_mut().filter(|n| n.host.is_none()) {
            n.host = placed.get(&n.id).copied();
        }
    }

    fn alloc_guest(&mut self) {
        let (wb, ws) = self
            .sys
            .platform
            .guest_shm_window
            .as_ref()
            .map(|r| (r.base, r.size))
            .unwrap_or(DEFAULT_GUEST_WINDOW);
        let wend = wb.saturating_add(ws);
        // Per domain: the window minus guest RAM and explicit guest ranges.
        let mut taken: HashMap<DomIdx, Vec<(u64, u64)>> = HashMap::new();
        for (n, given) in self.sys.shm.iter().zip(&self.given.guest) {
            if let Some(g) = *given {
                taken.entry(n.domain).or_default().push((g, n.size));
            }
        }
        let mut free: HashMap<DomIdx, FreeList> = HashMap::new();
        for (d, dom) in self.sys.domains.iter().enumerate() {
            let mut t = taken.remove(&d).unwrap_or_default();
            t.extend(dom.guest_ram());
            free.insert(d, FreeList::new(wb, wend, &t));
        }
        // Open nodes grouped by region, in first-seen order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.sys.shm.iter().enumerate() {
            if self.given.guest[i].is_some() {
                continue;
            }
            let g = *group_of.entry(n.id.as_str()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        for group in groups {
            let size = self.sys.shm[group[0]].size;
            let mapped: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&j| {
                    let d = &self.sys.domains[self.sys.shm[j].domain];
                    !(d.direct_map || d.dom0)
                })
                .collect();
            // The lowest address free in every member, if there is one.
            let mut common = Some(wb);
            'search: while let Some(a) = common {
                for &j in &mapped {
                    match free[&self.sys.shm[j].domain].next_fit(a, size, PAGE_SIZE) {
                        Some(c) if c == a => {}
                        other => {
                            common = other;
                            continue 'search;
                        }
                    }
                }
                break;
            }
            for &j in &group {
                let dom = self.sys.shm[j].domain;
                let d = &self.sys.domains[dom];
                let addr = if d.direct_map || d.dom0 {
                    self.sys.shm[j].host
                } else {
                    let fl = free.get_mut(&dom).expect("every domain has a free list");
                    let a = common.or_else(|| fl.next_fit(wb, size, PAGE_SIZE));
                    if let Some(a) = a {
                        fl.take(a, size);
                    }
                    a
                };
                match addr {
                    Some(a) => self.sys.shm[j].guest = a,
                    // Direct-mapped: the guest address is the host address, and there is none.
                    None if d.direct_map || d.dom0 => {
                        let n = &self.sys.shm[j];
                        let msg = format!(
                            "`{}` is direct-mapped, so region `{}` needs a host address",
                            d.name, n.id
                        );
                        self.diags.push(
                            Diagnostic::new(SHM_HEAP_FORM_DIRECT_MAP, n.mem_loc.clone(), msg).help(
                                "give the host address (`host = …`); it is also the guest address",
                            ),
                        );
                        return;
                    }
                    None => {
                        let n = &self.sys.shm[j];
                        let msg =
                            format!("no free guest range for region `{}` in `{}`", n.id, d.name);
                        let loc = n.loc.clone();
                        self.diags.push(
                            Diagnostic::new(ALLOC_GUEST_FULL, loc, msg)
                                .note(format!("guest window [{wb:#x}, {wend:#x})"))
                                .help(
                                    "give `guest` explicitly or set `[platform] guest-shm-window`",
                                ),
                        );
                        return;
                    }
                }
            }
        }
    }

    fn alloc_modules(&mut self) {
        const ALIGN: u64 = 2 << 20;
        let open: Vec<(DomIdx, usize)> = self
            .given
            .module_addr
            .iter()
            .enumerate()
            .flat_map(|(d, addrs)| {
                addrs
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_none())
                    .map(move |(i, _)| (d, i))
            })
            .collect();
        if open.is_empty() {
            return;
        }
        let mut taken = self.taken_host();
        taken.extend(self.sys.platform.shm_pool.iter().map(|r| (r.base, r.size)));
        // Leave the first 2 MiB of each bank for the Xen image.
        let mut banks: Vec<FreeList> = self
            .sys
            .platform
            .ram
            .iter()
            .map(|r| FreeList::new(r.base.saturating_add(ALIGN), r.end(), &taken))
            .collect();
        for (d, i) in open {
            let size = self.sys.domains[d].modules[i].size;
            let found = banks.iter_mut().find_map(|fl| {
                let a = fl.next_fit(0, size, ALIGN)?;
                fl.take(a, size);
                Some(a)
            });
            let dname = self.sys.domains[d].name.clone();
            let m = &mut self.sys.domains[d].modules[i];
            match found {
                Some(a) => m.addr = a,
                None => {
                    let msg = format!("no free RAM to place the {} of `{dname}`", m.kind.as_str());
                    let loc = m.loc.clone();
                    self.diags
                        .push(Diagnostic::new(ALLOC_NO_MODULE_SPACE, loc, msg).help(
                        "describe the platform RAM in [platform] ram, or give `addr` explicitly",
                    ));
                    return;
                }
            }
        }
    }
}

/// Free address ranges of a window: sorted, disjoint `[start, end)` intervals.
#[derive(Clone, Debug)]
pub struct FreeList {
    free: Vec<(u64, u64)>,
}

impl FreeList {
    /// The window `[lo, hi)` minus every `taken` `(base, size)` range.
    pub fn new(lo: u64, hi: u64, taken: &[(u64, u64)]) -> FreeList {
        let mut t: Vec<(u64, u64)> = taken
            .iter()
            .filter(|&&(_, s)| s > 0)
            .map(|&(b, s)| (b, b.saturating_add(s)))
            .collect();
        t.sort();
        let mut free = Vec::new();
        let mut cur = lo;
        for (b, e) in t {
            if e <= cur {
                continue;
            }
            if b >= hi {
                break;
            }
            if b > cur {
                free.push((cur, b));
            }
            cur = cur.max(e);
        }
        if cur < hi {
            free.push((cur, hi));
        }
        FreeList { free }
    }

    /// The lowest `align`-aligned address `>= from` where `size` bytes are free.
    pub fn next_fit(&self, from: u64, size: u64, align: u64) -> Option<u64> {
        let up = |v: u64| v.checked_add(align - 1).map(|x| x / align * align);
        let start = self.free.partition_point(|&(_, e)| e <= from);
        for &(b, e) in &self.free[start..] {
            let a = up(b.max(from))?;
            if a.checked_add(size).is_some_and(|end| end <= e) {
                return Some(a);
            }
        }
        None
    }

    /// Marks `[a, a+size)` as used; it must lie inside one free interval.
    pub fn take(&mut self, a: u64, size: u64) {
        let end = a.saturating_add(size);
        if let Some(i) = self.free.iter().position(|&(b, e)| b <= a && end <= e) {
            let (b, e) = self.free[i];
            let mut repl = Vec::with_capacity(2);
            if b < a {
                repl.push((b, a));
            }
            if end < e {
                repl.push((end, e));
            }
            self.free.splice(i..=i, repl);
        }
    }
}

/// Lowest `align`-aligned address `a` in `[lo, hi)` with `[a, a+size)` inside the window
/// and clear of every `taken` range.
pub fn first_fit(lo: u64, hi: u64, size: u64, align: u64, taken: &[(u64, u64)]) -> Option<u64> {
    FreeList::new(lo, hi, taken).next_fit(lo, size, align)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("64 KiB"), Some(65536));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }

    fn read(text: &str) -> (Option<System>, Diagnostics) {
        read_description(FileId(0), text, "t", Path::new("."), &Overrides::default())
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

    #[test]
    fn first_fit_skips_taken_and_aligns() {
        assert_eq!(
            first_fit(0x1000, 0x10000, 0x2000, 0x1000, &[(0x1000, 0x1800)]),
            Some(0x3000)
        );
        assert_eq!(first_fit(0, 0x3000, 0x4000, 0x1000, &[]), None);
        assert_eq!(
            first_fit(u64::MAX - 10, u64::MAX, 0x1000, 0x1000, &[]),
            None
        );
    }
}
