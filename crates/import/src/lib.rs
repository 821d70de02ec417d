//! `staticbus import imagebuilder`: an ImageBuilder configuration (the bash variables
//! `uboot-script-gen` sources: `NUM_DOMUS`, `DOMU_KERNEL[n]`, `DOMU_MEM[n]`, `XEN_CMD`,
//! `MEMORY_START`, …) turned into a staticbus system description (TOML).
//!
//! Every assignment of the file is either imported (the description says, in a comment,
//! which line each value came from) or reported: unsupported variables (SB0804), unknown
//! ones (SB0805), values the importer cannot read (SB0803) — never dropped silently.
//! Modules are placed where `uboot-script-gen` would load them: its script takes the 2 MiB
//! at `MEMORY_START` + 2 MiB (at least 12 MiB), then each file goes on the next 2 MiB
//! boundary after the previous one, in its order (dom0 kernel and ramdisk, then each domU's
//! kernel, ramdisk and passthrough tree, then Xen, then the device tree), so `staticbus
//! build --uboot` writes the script `uboot-script-gen` would have, to be loaded at the same
//! address ([`Imported::script_addr`]).

#![deny(unsafe_code)]

pub mod codes;
pub mod examples;
pub mod lex;
pub mod vars;

use codes::*;
use lex::Assign;
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Sources, Span};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Component, Path, PathBuf};
use vars::Handling;

/// uboot-script-gen's alignment and first offset: 2 MiB.
pub const ALIGN: u64 = 2 << 20;
/// uboot-script-gen never puts its script below 12 MiB.
pub const SCRIPT_FLOOR: u64 = 12 << 20;
/// Room left for the host device tree: Xen refuses larger ones.
pub const DTB_ROOM: u64 = 2 << 20;
/// The most domUs a configuration may declare (Xen's event-channel and domid spaces allow
/// more, but no dom0less system boots this many from one script).
pub const MAX_DOMUS: u64 = 1024;
/// `DOMU_MEM`'s default, MiB.
pub const DEFAULT_DOMU_MEM_MIB: u64 = 512;
/// `DOM0_MEM`'s default, MiB.
pub const DEFAULT_DOM0_MEM_MIB: u64 = 1024;
/// `DOMU_CMD`'s default.
pub const DEFAULT_DOMU_CMD: &str = "console=ttyAMA0";
/// `DOM0_CMD`'s default.
pub const DEFAULT_DOM0_CMD: &str = "console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused";

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The directory the configuration's paths are relative to (uboot-script-gen's `-d`;
    /// default: the configuration's own directory).
    pub root: PathBuf,
    /// The directory the description will be written to (its `file` paths are made
    /// relative to it).
    pub out_dir: PathBuf,
    /// uboot-script-gen's `-t`: overrides `LOAD_CMD`.
    pub load_cmd: Option<String>,
    /// The system's name.
    pub name: String,
    /// `[target] xen` (default "4.20").
    pub xen: Option<String>,
    /// Files the configuration names that are not there are assumed to be this large (and
    /// the description reserves that much for each): an import without the images at
    /// hand. `None`: every file must exist (SB0809), as for uboot-script-gen.
    pub assume_size: Option<u64>,
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The description, unless an error prevented it.
    pub toml: Option<String>,
    /// Everything found.
    pub diags: Diagnostics,
    /// Variables imported / reported as unsupported (for the summary line).
    pub imported: usize,
    /// Variables reported as not imported.
    pub not_imported: usize,
    /// The `DEVICE_TREE` file (the description's `[platform] base`), relative to the
    /// output directory.
    pub base: Option<String>,
    /// Where the U-Boot script goes (`LOAD_CMD ADDR boot.scr; source ADDR`): the 2 MiB
    /// uboot-script-gen keeps for it, below every file.
    pub script_addr: Option<u64>,
}

/// An assignment looked up by key.
struct Config<'a> {
    /// (name, index) → the assignment that counts (the last); scalars have index "0".
    last: HashMap<(String, String), &'a Assign>,
}

impl<'a> Config<'a> {
    fn get(&self, name: &str) -> Option<&'a Assign> {
        self.at(name, 0)
    }

    fn at(&self, name: &str, i: u32) -> Option<&'a Assign> {
        self.last.get(&(name.to_string(), i.to_string())).copied()
    }
}

/// Where a value came from, for the description's comments: `NAME (line N)`.
fn origin(sources: &Sources, a: &Assign) -> String {
    let line = sources
        .try_get(a.name_span.file)
        .map(|f| f.line_col(a.name_span.start as usize).0)
        .unwrap_or(0);
    format!("{} (line {line})", a.key())
}

/// A bash-arithmetic integer as uboot-script-gen uses them: decimal or `0x` hex.
fn parse_num(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty".into());
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16)
            .map_err(|_| format!("`{t}` is not a hexadecimal number"));
    }
    if t.len() > 1 && t.starts_with('0') {
        return Err(format!(
            "`{t}` starts with 0: bash arithmetic reads it as octal"
        ));
    }
    t.parse::<u64>()
        .map_err(|_| format!("`{t}` is not a number (write decimal or 0x… hexadecimal)"))
}

/// A plausible value of a numeric variable, for help lines.
fn example_for(name: &str) -> &'static str {
    match name {
        "DOMU_MEM" | "DOM0_MEM" => "256",
        "DOMU_VCPUS" | "DOM0_VCPUS" | "NUM_DOMUS" => "1",
        _ => "0x40000000",
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// `to` relative to the directory `from` (both made absolute first).
fn relative(from: &Path, to: &Path) -> String {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let (f, t) = (abs(from), abs(to));
    let fc: Vec<Component> = f.components().collect();
    let tc: Vec<Component> = t.components().collect();
    let common = fc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in common..fc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c.as_os_str());
    }
    out.display().to_string()
}

struct Module {
    file: String,
    addr: u64,
    /// The room written in the description when the file is not there (`assume_size`).
    size: Option<u64>,
    /// The file's length (or the assumed one).
    len: u64,
    from: String,
}

#[derive(Default)]
struct DomU {
    index: u32,
    name: String,
    lines: Vec<String>,
    kernel: Option<Module>,
    ramdisk: Option<Module>,
    dtb: Option<Module>,
}

struct Importer<'s> {
    sources: &'s Sources,
    opts: &'s Options,
    diags: Diagnostics,
    imported: usize,
    not_imported: Vec<String>,
    memaddr: u64,
}

impl Importer<'_> {
    fn bad(&mut self, a: &Assign, msg: impl Into<String>, help: impl Into<String>) {
        self.diags.push(
            Diagnostic::new(BAD_VALUE, a.value_span, msg)
                .label(format!("value of {}", a.key()))
                .help(help),
        );
    }

    fn num(&mut self, a: &Assign, what: &str) -> Option<u64> {
        match parse_num(&a.value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.bad(
                    a,
                    format!("{}: {what} expected, {e}", a.key()),
                    format!(
                        "write {what} in decimal or as 0x… hexadecimal, e.g. {}={}",
                        a.key(),
                        example_for(&a.name)
                    ),
                );
                None
            }
        }
    }

    fn flag(&mut self, a: &Assign, allowed: &[u64]) -> Option<u64> {
        match parse_num(&a.value) {
            Ok(v) if allowed.contains(&v) => Some(v),
            _ => {
                let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
                self.bad(
                    a,
                    format!(
                        "{} must be {}, not `{}`",
                        a.key(),
                        list.join(" or "),
                        a.value
                    ),
                    format!("write {}={}", a.key(), list[0]),
                );
                None
            }
        }
    }

    /// A file the configuration names: checked to exist, placed at the next 2 MiB boundary,
    /// and returned as a path relative to the output directory.
    fn place(&mut self, a: &Assign) -> Option<Module> {
        let path = self.opts.root.join(&a.value);
        let (len, assumed) = match (std::fs::metadata(&path), self.opts.assume_size) {
            (Ok(m), _) if m.is_file() => (m.len(), None),
            (_, Some(sz)) => (sz, Some(sz)),
            (Ok(_), None) => {
                self.file_error(a, &path, "not a regular file".into());
                return None;
            }
            (Err(e), None) => {
                self.file_error(a, &path, e.to_string());
                return None;
            }
        };
        let addr = self.memaddr;
        self.memaddr = (addr.saturating_add(len).saturating_add(ALIGN - 1)) & !(ALIGN - 1);
        Some(Module {
            file: relative(&self.opts.out_dir, &path),
            addr,
            size: assumed,
            len,
            from: origin(self.sources, a),
        })
    }

    fn file_error(&mut self, a: &Assign, path: &Path, e: String) {
        self.diags.push(
            Diagnostic::new(FILE_UNREADABLE, a.value_span, format!("cannot read `{}`: {e}", path.display()))
                .label(format!("named by {}", a.key()))
                .help(format!(
                    "paths are relative to `{}` (uboot-script-gen's -d; `--dir` here); the importer needs the file to place the next one after it",
                    self.opts.root.display()
                )),
        );
    }

    fn require<'a>(
        &mut self,
        cfg: &Config<'a>,
        name: &str,
        file: FileId,
        why: &str,
    ) -> Option<&'a Assign> {
        let a = cfg.get(name);
        if a.is_none() {
            self.diags.push(
                Diagnostic::new(
                    MISSING,
                    staticbus_diag::Location::File { file },
                    format!("{name} is not set"),
                )
                .help(format!("add {name}=… : {why}")),
            );
        }
        a
    }
}

/// Imports the configuration `text` (already in `sources` as `file`).
pub fn import(sources: &Sources, file: FileId, text: &str, opts: &Options) -> Imported {
    let (assigns, lex_diags) = lex::lex(file, text);
    let mut im = Importer {
        sources,
        opts,
        diags: lex_diags,
        imported: 0,
        not_imported: Vec::new(),
        memaddr: 0,
    };

    // ---- every assignment: known? indexed right? the last of its key? ----
    let mut last: HashMap<(String, String), &Assign> = HashMap::new();
    let mut order: Vec<&Assign> = Vec::new();
    let mut unknown = 0usize;
    for a in &assigns {
        let Some(var) = vars::lookup(&a.name) else {
            let mut d = Diagnostic::new(
                UNKNOWN_VARIABLE,
                a.name_span,
                format!("`{}` is not an ImageBuilder variable", a.name),
            )
            .label("uboot-script-gen never reads it");
            d = match vars::closest(&a.name) {
                Some(c) => d.help(format!("did you mean `{c}`?")),
                None => d.help(
                    "remove it, or see docs/imagebuilder.md for the variables ImageBuilder reads",
                ),
            };
            im.diags.push(d);
            im.not_imported.push(format!(
                "{}: not an ImageBuilder variable",
                origin(sources, a)
            ));
            unknown += 1;
            continue;
        };
        // bash: `A=x` sets `A[0]`, and `A[0]=x` is `$A`.
        let idx: String = match a.index.as_deref() {
            None => "0".into(),
            Some(i) => match parse_num(i) {
                Ok(n) if n <= u64::from(u32::MAX) && (var.indexed || n == 0) => n.to_string(),
                _ if var.indexed => {
                    if matches!(var.handling, Handling::Unsupported(_)) {
                        i.to_string()
                    } else {
                        im.diags.push(
                            Diagnostic::new(
                                BAD_VALUE,
                                a.name_span,
                                format!("`{}`: the index must be a domain number", a.key()),
                            )
                            .label("index")
                            .help(format!("write {}[0], {}[1], …", a.name, a.name)),
                        );
                        continue;
                    }
                }
                _ => {
                    im.diags.push(
                        Diagnostic::new(
                            BAD_VALUE,
                            a.name_span,
                            format!("{} is one value, not per domain", a.name),
                        )
                        .label("index")
                        .help(format!("write {}=…", a.name)),
                    );
                    continue;
                }
            },
        };
        if let Some(prev) = last.insert((a.name.clone(), idx), a) {
            im.diags.push(
                Diagnostic::new(
                    ASSIGNED_TWICE,
                    prev.name_span,
                    format!("{} is assigned again later; this value is lost", prev.key()),
                )
                .label("overridden")
                .with(a.name_span, "the value that counts")
                .help("remove one of the two assignments"),
            );
            order.retain(|p| !std::ptr::eq(*p, prev));
        }
        order.push(a);
    }
    let cfg = Config { last };

    // ---- unsupported variables: reported, listed in the description ----
    for a in &order {
        if let Some(vars::Var {
            handling: Handling::Unsupported(why),
            ..
        }) = vars::lookup(&a.name)
        {
            im.diags.push(
                Diagnostic::new(UNSUPPORTED, a.name_span, format!("{} is not imported: {why}", a.key()))
                    .label("not imported")
                    .help("the imported system boots without it; remove it from the configuration to silence this"),
            );
            im.not_imported
                .push(format!("{}: {why}", origin(sources, a)));
        }
    }

    // ---- NUM_DOMUS and per-domain indices ----
    let num_domus = match cfg.get("NUM_DOMUS") {
        Some(a) => match im.num(a, "a number of domains") {
            Some(n) if n > MAX_DOMUS => {
                im.bad(
                    a,
                    format!("NUM_DOMUS is {n}: more domains than a dom0less system boots"),
                    format!("NUM_DOMUS counts the DOMU_KERNEL[n] entries (at most {MAX_DOMUS})"),
                );
                0
            }
            Some(n) => n,
            None => 0,
        },
        None => 0,
    };
    for a in &order {
        let Some(v) = vars::lookup(&a.name) else {
            continue;
        };
        if !v.indexed || !a.name.starts_with("DOMU_") {
            continue;
        }
        let idx = a
            .index
            .as_deref()
            .and_then(|i| parse_num(i).ok())
            .unwrap_or(0);
        if idx >= num_domus {
            let d = Diagnostic::new(
                INDEX_RANGE,
                a.name_span,
                format!(
                    "{} is for domain {idx}, but NUM_DOMUS is {num_domus}",
                    a.key()
                ),
            )
            .label("ignored by uboot-script-gen");
            let d = match cfg.get("NUM_DOMUS") {
                Some(n) => d.with(n.span(), "NUM_DOMUS"),
                None => d,
            };
            im.diags
                .push(d.help(format!("raise NUM_DOMUS to {} or remove the line", idx + 1)));
            im.not_imported
                .push(format!("{}: index outside NUM_DOMUS", origin(sources, a)));
        }
    }

    // ---- RAM ----
    let ms = im.require(
        &cfg,
        "MEMORY_START",
        file,
        "the start of RAM, where uboot-script-gen starts loading",
    );
    let me = im.require(&cfg, "MEMORY_END", file, "the end of RAM");
    let mstart = ms.and_then(|a| im.num(a, "an address"));
    let mend = me.and_then(|a| im.num(a, "an address"));
    let mut ram = None;
    if let (Some(s), Some(e), Some(ea)) = (mstart, mend, me) {
        if e <= s {
            im.bad(
                ea,
                format!("MEMORY_END ({e:#x}) is not above MEMORY_START ({s:#x})"),
                "MEMORY_END is the end of RAM: one past its last byte",
            );
        } else {
            ram = Some((s, e - s));
        }
    }
    // uboot-script-gen: the script at MEMORY_START + 2 MiB (not below 12 MiB), 2 MiB for it,
    // then the files.
    let script_addr = mstart.unwrap_or(0).saturating_add(ALIGN).max(SCRIPT_FLOOR);
    im.memaddr = script_addr.saturating_add(ALIGN);

    // ---- load command ----
    let load = match (&opts.load_cmd, cfg.get("LOAD_CMD")) {
        (Some(t), _) => Some((expand_load(t), "the -t option".to_string())),
        (None, Some(a)) => Some((expand_load(&a.value), origin(sources, a))),
        (None, None) => {
            im.diags.push(
                Diagnostic::new(MISSING, staticbus_diag::Location::File { file }, "LOAD_CMD is not set")
                    .help("add LOAD_CMD=\"tftpb\" (or \"load mmc 0:1\", …), or give it as uboot-script-gen's -t: `-t tftp`"),
            );
            None
        }
    };
    for other in ["XEN_LOAD", "DOM0_LOAD"] {
        if let Some(a) = cfg.get(other) {
            check_load(&mut im, a, load.as_ref().map(|l| l.0.as_str()));
        }
    }
    for i in 0..num_domus as u32 {
        if let Some(a) = cfg.at("DOMU_LOAD", i) {
            check_load(&mut im, a, load.as_ref().map(|l| l.0.as_str()));
        }
    }
    if let Some(a) = cfg.get("BOOT_CMD") {
        if a.value != "booti" {
            im.diags.push(
                Diagnostic::new(UNSUPPORTED, a.value_span, format!("BOOT_CMD={} is not imported: the script staticbus writes starts Xen with booti", a.value))
                    .label("not imported")
                    .help("remove BOOT_CMD (booti is ImageBuilder's default too)"),
            );
            im.not_imported
                .push(format!("{}: only booti", origin(sources, a)));
        }
    }
    for (var, name) in [
        ("UBOOT_SOURCE", "boot.source"),
        ("UBOOT_SCRIPT", "boot.scr"),
    ] {
        if let Some(a) = cfg.get(var) {
            let base = Path::new(&a.value)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            if base != name {
                im.diags.push(
                    Diagnostic::new(
                        UNSUPPORTED,
                        a.value_span,
                        format!(
                            "`staticbus build --uboot` writes the script as {name}, not {}",
                            a.value
                        ),
                    )
                    .label("another name")
                    .help(format!("rename the output, or set {var}=\"{name}\"")),
                );
                im.not_imported
                    .push(format!("{}: written as {name}", origin(sources, a)));
            }
        }
    }

    // ---- dom0 ----
    let dom0_kernel = cfg.get("DOM0_KERNEL");
    let mut dom0_lines = Vec::new();
    if let Some(k) = dom0_kernel {
        if let Some(m) = im.place(k) {
            dom0_lines.push(module_line("kernel", &m));
        }
        if let Some(r) = cfg.get("DOM0_RAMDISK") {
            if let Some(m) = im.place(r) {
                dom0_lines.push(module_line("ramdisk", &m));
            }
        }
        let (mut cmd, from) = match cfg.get("DOM0_CMD") {
            Some(a) => (a.value.clone(), origin(sources, a)),
            None => (
                DEFAULT_DOM0_CMD.to_string(),
                "DOM0_CMD unset: ImageBuilder's default".into(),
            ),
        };
        if !cmd.contains("root=") {
            cmd.push_str(" root=/dev/ram0");
        }
        dom0_lines.push(format!("bootargs = {}   # {from}", toml_str(&cmd)));
    } else {
        for v in ["DOM0_RAMDISK", "DOM0_CMD"] {
            if let Some(a) = cfg.get(v) {
                im.diags.push(
                    Diagnostic::new(
                        MISSING,
                        a.name_span,
                        format!("{v} without DOM0_KERNEL: there is no dom0 to give it to"),
                    )
                    .label("no dom0")
                    .help("set DOM0_KERNEL, or remove the line for a dom0less system"),
                );
            }
        }
    }

    // ---- domUs ----
    let mut domus: Vec<DomU> = Vec::new();
    let mut static_memory = false;
    for i in 0..num_domus.min(u64::from(u32::MAX)) as u32 {
        let name = format!("domU{i}");
        let skip = cfg
            .at("DOMU_NOBOOT", i)
            .or_else(|| cfg.at("DOMU_ROOTFS", i));
        if let Some(s) = skip.filter(|a| !a.value.is_empty()) {
            im.diags.push(
                Diagnostic::new(
                    NOT_BOOTED,
                    s.name_span,
                    format!("{name} is not started at boot: it is left out of the description"),
                )
                .label("not booted")
                .help("uboot-script-gen leaves it out of /chosen too; start it later from dom0"),
            );
            continue;
        }
        let mut d = DomU {
            index: i,
            name: name.clone(),
            ..DomU::default()
        };
        match cfg.at("DOMU_KERNEL", i) {
            Some(k) => d.kernel = im.place(k),
            None => {
                let d2 = Diagnostic::new(
                    MISSING,
                    staticbus_diag::Location::File { file },
                    format!(
                        "DOMU_KERNEL[{i}] is not set, but NUM_DOMUS says there is a domain {i}"
                    ),
                );
                let d2 = match cfg.get("NUM_DOMUS") {
                    Some(n) => d2.with(n.span(), "NUM_DOMUS"),
                    None => d2,
                };
                im.diags.push(d2.help(format!(
                    "add DOMU_KERNEL[{i}]=\"path/to/Image\", or lower NUM_DOMUS"
                )));
            }
        }
        if let Some(r) = cfg.at("DOMU_RAMDISK", i) {
            d.ramdisk = im.place(r);
        }
        if let Some(t) = cfg.at("DOMU_PASSTHROUGH_DTB", i) {
            d.dtb = im.place(t);
        }
        // Static memory: banks, and the memory they add up to.
        let mut banks: Vec<(u64, u64)> = Vec::new();
        let sm = cfg.at("DOMU_STATIC_MEM", i);
        if let Some(a) = sm {
            let words: Vec<&str> = a.value.split_whitespace().collect();
            if words.is_empty() || words.len() % 2 != 0 {
                im.bad(
                    a,
                    format!(
                        "{} needs \"base size\" pairs, found {} value(s)",
                        a.key(),
                        words.len()
                    ),
                    format!(
                        "write {}=\"0x60000000 0x10000000\" (base and size of each bank)",
                        a.key()
                    ),
                );
            } else {
                let mut ok = true;
                for w in words.chunks(2) {
                    match (parse_num(w[0]), parse_num(w[1])) {
                        (Ok(b), Ok(s)) if s > 0 => banks.push((b, s)),
                        (Err(e), _) | (_, Err(e)) => {
                            im.bad(
                                a,
                                format!("{}: {e}", a.key()),
                                "write each base and size in decimal or 0x… hexadecimal",
                            );
                            ok = false;
                            break;
                        }
                        _ => {
                            im.bad(
                                a,
                                format!("{}: a bank of size 0", a.key()),
                                "give each bank a non-zero size",
                            );
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    banks.clear();
                }
            }
        }
        let mem = cfg.at("DOMU_MEM", i);
        if !banks.is_empty() {
            static_memory = true;
            let total: u64 = banks.iter().map(|b| b.1).sum();
            let list: Vec<String> = banks
                .iter()
                .map(|(b, s)| format!("{{ base = {}, size = {} }}", hex(*b), hex(*s)))
                .collect();
            d.lines.push(format!(
                "memory = {}   # the sum of {}'s banks (ImageBuilder's rule)",
                hex(total),
                sm.map(|a| a.key()).unwrap_or_default()
            ));
            if let Some(m) = mem {
                if let Some(mib) = im.num(m, "a size in MiB") {
                    if mib.saturating_mul(1 << 20) != total {
                        im.diags.push(
                            Diagnostic::new(BAD_VALUE, m.value_span, format!("DOMU_MEM[{i}] ({mib} MiB) differs from the {} MiB of DOMU_STATIC_MEM[{i}]; ImageBuilder uses the banks' sum", total >> 20))
                                .severity(staticbus_diag::Severity::Warning)
                                .label("not used")
                                .with(sm.map(|a| a.value_span).unwrap_or(m.value_span), "the banks")
                                .help(format!("remove DOMU_MEM[{i}] or make it {}", total >> 20)),
                        );
                    }
                }
            }
            d.lines.push(format!(
                "static-mem = [{}]   # {}",
                list.join(", "),
                sm.map(|a| origin(sources, a)).unwrap_or_default()
            ));
            match cfg.at("DOMU_DIRECT_MAP", i) {
                Some(a) => {
                    if let Some(v) = im.flag(a, &[0, 1]) {
                        d.lines.push(format!("direct-map = {}   # {}", v == 1, origin(sources, a)));
                    }
                }
                None => d.lines.push("direct-map = true   # DOMU_DIRECT_MAP unset: ImageBuilder's default with static memory".into()),
            }
        } else {
            match mem {
                Some(m) => {
                    if let Some(mib) = im.num(m, "a size in MiB") {
                        if mib == 0 || mib > (1 << 34) {
                            im.bad(m, format!("DOMU_MEM[{i}] = {mib} MiB is not a usable memory size"), format!("DOMU_MEM is in MiB: e.g. DOMU_MEM[{i}]=512"));
                        } else {
                            d.lines.push(format!("memory = \"{mib}MiB\"   # {}", origin(sources, m)));
                        }
                    }
                }
                None => d.lines.push(format!("memory = \"{DEFAULT_DOMU_MEM_MIB}MiB\"   # DOMU_MEM[{i}] unset: ImageBuilder's default")),
            }
            if let Some(a) = cfg.at("DOMU_DIRECT_MAP", i) {
                if im.flag(a, &[0, 1]) == Some(1) {
                    im.diags.push(
                        Diagnostic::new(
                            BAD_VALUE,
                            a.value_span,
                            format!("DOMU_DIRECT_MAP[{i}] applies only with DOMU_STATIC_MEM[{i}]"),
                        )
                        .severity(staticbus_diag::Severity::Warning)
                        .label("ignored by ImageBuilder")
                        .help(format!("add DOMU_STATIC_MEM[{i}] or remove the line")),
                    );
                }
            }
        }
        match cfg.at("DOMU_VCPUS", i) {
            Some(a) => {
                if let Some(v) = im.num(a, "a number of vCPUs") {
                    if v == 0 || v > 128 {
                        im.bad(
                            a,
                            format!("DOMU_VCPUS[{i}] = {v}: a domain has 1 to 128 vCPUs"),
                            format!("write e.g. DOMU_VCPUS[{i}]=1"),
                        );
                    } else {
                        d.lines
                            .push(format!("vcpus = {v}   # {}", origin(sources, a)));
                    }
                }
            }
            None => d.lines.push(format!(
                "vcpus = 1   # DOMU_VCPUS[{i}] unset: ImageBuilder's default"
            )),
        }
        let vpl011 = match cfg.at("DOMU_VPL011", i) {
            Some(a) => match im.flag(a, &[0, 1]) {
                Some(0) => {
                    d.lines
                        .push(format!("vpl011 = false   # {}", origin(sources, a)));
                    false
                }
                _ => true,
            },
            None => true,
        };
        match cfg.at("DOMU_CMD", i) {
            Some(a) => d.lines.push(format!(
                "bootargs = {}   # {}",
                toml_str(&a.value),
                origin(sources, a)
            )),
            None if vpl011 => d.lines.push(format!(
                "bootargs = {}   # DOMU_CMD[{i}] unset: ImageBuilder's default",
                toml_str(DEFAULT_DOMU_CMD)
            )),
            None => {}
        }
        let enhanced = match cfg.at("DOMU_ENHANCED", i) {
            Some(a) => im.flag(a, &[0, 1, 2]).map(|v| (v, origin(sources, a))),
            None => Some((
                u64::from(dom0_kernel.is_some()),
                format!(
                    "DOMU_ENHANCED[{i}] unset: ImageBuilder's default {}",
                    if dom0_kernel.is_some() {
                        "with dom0"
                    } else {
                        "without dom0"
                    }
                ),
            )),
        };
        if let Some((v, from)) = enhanced {
            let val = match v {
                1 => toml_str("enabled"),
                2 => toml_str("no-xenstore"),
                _ => "false".to_string(),
            };
            d.lines.push(format!("enhanced = {val}   # {from}"));
        }
        domus.push(d);
    }

    // ---- Xen and the device tree, after the modules ----
    let xen = im.require(&cfg, "XEN", file, "the Xen binary uboot-script-gen loads");
    let xen_m = xen.and_then(|a| im.place(a));
    let xen_size = xen_m.as_ref().map(|m| m.len);
    let dt = im.require(
        &cfg,
        "DEVICE_TREE",
        file,
        "the board's device tree, which Xen boots with",
    );
    let mut base = None;
    let mut dtb_at = None;
    if let Some(a) = dt {
        let path = opts.root.join(&a.value);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                base = Some(relative(&opts.out_dir, &path));
                dtb_at = Some((im.memaddr, origin(sources, a)));
            }
            _ if opts.assume_size.is_some() => {
                base = Some(relative(&opts.out_dir, &path));
                dtb_at = Some((im.memaddr, origin(sources, a)));
            }
            Ok(_) => im.file_error(a, &path, "not a regular file".into()),
            Err(e) => im.file_error(a, &path, e.to_string()),
        }
    }

    // ---- Xen's command line ----
    let xen_cmd = match cfg.get("XEN_CMD") {
        Some(a) => {
            for v in ["DOM0_MEM", "DOM0_VCPUS"] {
                if let Some(d0) = cfg.get(v) {
                    im.diags.push(
                        Diagnostic::new(
                            UNSUPPORTED,
                            d0.name_span,
                            format!(
                                "{v} only shapes ImageBuilder's default XEN_CMD; XEN_CMD is set"
                            ),
                        )
                        .label("ignored by ImageBuilder")
                        .with(a.name_span, "XEN_CMD")
                        .help(format!(
                            "put dom0_mem= / dom0_max_vcpus= in XEN_CMD and remove {v}"
                        )),
                    );
                    im.not_imported
                        .push(format!("{}: XEN_CMD is set", origin(sources, d0)));
                }
            }
            Some((a.value.clone(), origin(sources, a)))
        }
        None => {
            let mem = match cfg.get("DOM0_MEM") {
                Some(a) => im.num(a, "a size in MiB"),
                None => Some(DEFAULT_DOM0_MEM_MIB),
            };
            let cpus = match cfg.get("DOM0_VCPUS") {
                Some(a) => im.num(a, "a number of vCPUs"),
                None => Some(1),
            };
            match (mem, cpus) {
                (Some(m), Some(c)) => Some((
                    format!("console=dtuart dtuart=serial0 dom0_mem={m}M dom0_max_vcpus={c} bootscrub=0 vwfi=native sched=null"),
                    "XEN_CMD unset: ImageBuilder's default".to_string(),
                )),
                _ => None,
            }
        }
    };

    // ---- shared memory ----
    let mut shm: BTreeMap<String, ShmRegion> = BTreeMap::new();
    let mut shm_order: Vec<String> = Vec::new();
    for d in &domus {
        let Some(a) = cfg.at("DOMU_SHARED_MEM", d.index) else {
            continue;
        };
        let w: Vec<&str> = a.value.split_whitespace().collect();
        if !(w.len() == 3 || w.len() == 4) {
            im.bad(
                a,
                format!("{} needs \"ID [HPA] GPA size\", found {} word(s)", a.key(), w.len()),
                format!("write {}=\"my-shm 0x50000000 0x6000000 0x10000000\" (id, host address, guest address, size; the host address may be left out)", a.key()),
            );
            continue;
        }
        let nums: Result<Vec<u64>, String> = w[1..].iter().map(|s| parse_num(s)).collect();
        let nums = match nums {
            Ok(n) => n,
            Err(e) => {
                im.bad(
                    a,
                    format!("{}: {e}", a.key()),
                    "addresses and the size are numbers: decimal or 0x… hexadecimal",
                );
                continue;
            }
        };
        let (host, guest, size) = if nums.len() == 3 {
            (Some(nums[0]), nums[1], nums[2])
        } else {
            (None, nums[0], nums[1])
        };
        let id = w[0].to_string();
        match shm.get_mut(&id) {
            Some(r) => {
                if r.host != host || r.size != size {
                    im.diags.push(
                        Diagnostic::new(SHM_MISMATCH, a.value_span, format!("shared memory `{id}`: {} declares another host range or size than {}", a.key(), r.first_key))
                            .label("differs")
                            .with(r.first_span, "first declared here")
                            .help("every domain of one shared-memory id must give the same host address and size"),
                    );
                    continue;
                }
                r.users.push((d.name.clone(), guest, origin(sources, a)));
            }
            None => {
                shm_order.push(id.clone());
                shm.insert(
                    id,
                    ShmRegion {
                        host,
                        size,
                        first_key: a.key(),
                        first_span: a.value_span,
                        users: vec![(d.name.clone(), guest, origin(sources, a))],
                    },
                );
            }
        }
    }

    // ---- static event channels ----
    let evtchns = event_channels(&mut im, &cfg, &domus, num_domus);

    // ---- the description ----
    if im.diags.has_errors() {
        return Imported {
            toml: None,
            script_addr: None,
            imported: 0,
            not_imported: im.not_imported.len(),
            base,
            diags: sorted(im.diags),
        };
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Imported by `staticbus import imagebuilder` from an ImageBuilder configuration."
    );
    let _ = writeln!(
        t,
        "# Each value says which line of the configuration it comes from; what was not"
    );
    let _ = writeln!(
        t,
        "# imported is listed at the end. Modules are placed where uboot-script-gen loads them."
    );
    let _ = writeln!(
        t,
        "# `staticbus build THIS.toml --uboot -o out` writes the host tree and the U-Boot script;"
    );
    let _ = writeln!(
        t,
        "# U-Boot loads the script where uboot-script-gen would: `{} {} boot.scr; source {}`.",
        load.as_ref().map(|l| l.0.as_str()).unwrap_or("tftpb"),
        hex(script_addr),
        hex(script_addr)
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "[system]\nname = {}\n", toml_str(&opts.name));
    let _ = writeln!(
        t,
        "[target]\nxen = {}",
        toml_str(opts.xen.as_deref().unwrap_or("4.20"))
    );
    if !shm.is_empty() {
        let _ = writeln!(
            t,
            "static-shm = true   # DOMU_SHARED_MEM: Xen built with CONFIG_STATIC_SHM"
        );
    }
    if static_memory {
        let _ = writeln!(
            t,
            "static-memory = true   # DOMU_STATIC_MEM: Xen built with CONFIG_STATIC_MEMORY"
        );
    }
    let _ = writeln!(t, "\n[platform]");
    if let (Some((b, s)), Some(sa), Some(ea)) = (ram, ms, me) {
        let _ = writeln!(
            t,
            "ram = [{{ base = {}, size = {} }}]   # {}, {}",
            hex(b),
            hex(s),
            origin(sources, sa),
            origin(sources, ea)
        );
    }
    if let (Some(m), Some(size)) = (&xen_m, xen_size) {
        let _ = writeln!(
            t,
            "xen = {{ base = {}, size = {} }}   # {}",
            hex(m.addr),
            hex(size.max(1)),
            m.from
        );
    }
    if let (Some(b), Some(a)) = (&base, dt) {
        let _ = writeln!(
            t,
            "base = {}   # {}: the board tree, merged into the host tree (like --base)",
            toml_str(b),
            origin(sources, a)
        );
    }
    if let Some((at, from)) = &dtb_at {
        let _ = writeln!(
            t,
            "dtb = {{ base = {}, size = {} }}   # {from}: after Xen, room for Xen's 2 MiB limit",
            hex(*at),
            hex(DTB_ROOM)
        );
    }
    if let Some((cmd, from)) = &xen_cmd {
        let _ = writeln!(t, "\n[xen]\nbootargs = {}   # {from}", toml_str(cmd));
    }
    let _ = writeln!(t, "\n[uboot]");
    if let Some((l, from)) = &load {
        let _ = writeln!(t, "load = {}   # {from}", toml_str(l));
    }
    if let Some(m) = &xen_m {
        let _ = writeln!(t, "xen = {}   # {}", toml_str(&m.file), m.from);
    }
    if !dom0_lines.is_empty() {
        let _ = writeln!(t, "\n[dom0]");
        for l in &dom0_lines {
            let _ = writeln!(t, "{l}");
        }
    }
    for d in &domus {
        let _ = writeln!(
            t,
            "\n[[domain]]\nname = {}   # /chosen/{} of uboot-script-gen",
            toml_str(&d.name),
            d.name
        );
        for l in &d.lines {
            let _ = writeln!(t, "{l}");
        }
        for (what, m) in [
            ("kernel", &d.kernel),
            ("ramdisk", &d.ramdisk),
            ("dtb", &d.dtb),
        ] {
            if let Some(m) = m {
                let _ = writeln!(t, "{}", module_line(what, m));
            }
        }
    }
    for id in &shm_order {
        let r = &shm[id];
        let _ = writeln!(t, "\n[[shm]]   # DOMU_SHARED_MEM: owned by DOMID_IO, every domain a borrower\nid = {}\nsize = {}", toml_str(id), hex(r.size));
        match r.host {
            Some(h) => {
                let _ = writeln!(t, "host = {}", hex(h));
            }
            None => {
                let _ = writeln!(t, "# no host address: Xen takes the region from its heap");
            }
        }
        let _ = writeln!(t, "users = [");
        for (dom, guest, from) in &r.users {
            let _ = writeln!(
                t,
                "  {{ domain = {}, guest = {} }},   # {from}",
                toml_str(dom),
                hex(*guest)
            );
        }
        let _ = writeln!(t, "]");
    }
    for (a, b, from) in &evtchns {
        let _ = writeln!(
            t,
            "\n[[evtchn]]   # {from}\na = {}\nb = {}",
            toml_str(a),
            toml_str(b)
        );
    }
    if !im.not_imported.is_empty() {
        let _ = writeln!(
            t,
            "\n# Not imported (each one was reported when importing):"
        );
        for n in &im.not_imported {
            let _ = writeln!(t, "#   {n}");
        }
    }
    im.imported = (order.len() + unknown).saturating_sub(im.not_imported.len());
    Imported {
        toml: Some(t),
        script_addr: Some(script_addr),
        imported: im.imported,
        not_imported: im.not_imported.len(),
        base,
        diags: sorted(im.diags),
    }
}

struct ShmRegion {
    host: Option<u64>,
    size: u64,
    first_key: String,
    first_span: Span,
    users: Vec<(String, u64, String)>,
}

fn sorted(mut d: Diagnostics) -> Diagnostics {
    d.sort();
    d
}

fn module_line(what: &str, m: &Module) -> String {
    match m.size {
        Some(sz) => format!(
            "{what} = {{ file = {}, addr = {}, size = {} }}   # {} (not there: room assumed)",
            toml_str(&m.file),
            hex(m.addr),
            hex(sz),
            m.from
        ),
        None => format!(
            "{what} = {{ file = {}, addr = {} }}   # {}",
            toml_str(&m.file),
            hex(m.addr),
            m.from
        ),
    }
}

/// uboot-script-gen's `-t` shorthands.
pub fn expand_load(s: &str) -> String {
    match s.trim() {
        "tftp" => "tftpb".into(),
        "sd" => "load mmc 0:1".into(),
        "scsi" => "load scsi 0:1".into(),
        "usb" => "fatload usb 0:1".into(),
        other => other.into(),
    }
}

fn check_load(im: &mut Importer<'_>, a: &Assign, load: Option<&str>) {
    if load == Some(expand_load(&a.value).as_str()) {
        return;
    }
    im.diags.push(
        Diagnostic::new(
            UNSUPPORTED,
            a.value_span,
            format!(
                "{} is not imported: the script loads every file with one command (LOAD_CMD)",
                a.key()
            ),
        )
        .label("another load command")
        .help("put all the files where LOAD_CMD reads them and remove this line"),
    );
    im.not_imported.push(format!(
        "{}: one load command (LOAD_CMD) for every file",
        origin(im.sources, a)
    ));
}

/// `DOMU_STATIC_EVTCHNS[i]="local_port remote_index remote_port; …"` of every booted
/// domain, as `[[evtchn]]` pairs (each declared by both ends, emitted once).
fn event_channels(
    im: &mut Importer<'_>,
    cfg: &Config<'_>,
    domus: &[DomU],
    num_domus: u64,
) -> Vec<(String, String, String)> {
    // (domain index, local port) -> (remote index, remote port, assignment)
    let mut ends: BTreeMap<(u32, u64), (u32, u64, &Assign)> = BTreeMap::new();
    let booted = |i: u32| domus.iter().any(|d| d.index == i);
    for d in domus {
        let Some(a) = cfg.at("DOMU_STATIC_EVTCHNS", d.index) else {
            continue;
        };
        for def in a.value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let w: Vec<&str> = def.split_whitespace().collect();
            let nums: Option<Vec<u64>> = if w.len() == 3 {
                w.iter().map(|s| parse_num(s).ok()).collect()
            } else {
                None
            };
            let Some(n) = nums else {
                im.bad(
                    a,
                    format!(
                        "{}: `{def}` is not \"local_port remote_index remote_port\"",
                        a.key()
                    ),
                    format!("write e.g. {}=\"10 1 11; 12 1 13\"", a.key()),
                );
                continue;
            };
            let (lp, ri, rp) = (n[0], n[1], n[2]);
            if ri >= num_domus || !booted(ri as u32) {
                im.bad(
                    a,
                    format!(
                        "{}: `{def}` names domain {ri}, which is not booted",
                        a.key()
                    ),
                    "the remote index is the [n] of another domain below NUM_DOMUS",
                );
                continue;
            }
            if ends.insert((d.index, lp), (ri as u32, rp, a)).is_some() {
                im.bad(
                    a,
                    format!("{}: local port {lp} twice", a.key()),
                    "each local port is unique within a domain",
                );
            }
        }
    }
    let mut out = Vec::new();
    for (&(i, lp), &(j, rp, a)) in &ends {
        match ends.get(&(j, rp)) {
            Some(&(bi, bp, _)) if bi == i && bp == lp => {
                if (i, lp) <= (j, rp) {
                    out.push((
                        format!("domU{i}:{lp}"),
                        format!("domU{j}:{rp}"),
                        format!("DOMU_STATIC_EVTCHNS[{i}] and [{j}]"),
                    ));
                }
            }
            other => {
                let what = match other {
                    None => format!("domU{j} declares no port {rp}"),
                    Some(&(bi, bp, _)) => format!("domU{j}'s port {rp} goes to domU{bi}:{bp}"),
                };
                let d = Diagnostic::new(EVTCHN_MISMATCH, a.value_span, format!("event channel domU{i}:{lp} → domU{j}:{rp}, but {what}"))
                    .label(format!("in {}", a.key()))
                    .help(format!("add \"{rp} {i} {lp}\" to DOMU_STATIC_EVTCHNS[{j}] (both ends declare a channel)"));
                let d = match other {
                    Some(&(_, _, b)) => d.with(b.value_span, format!("DOMU_STATIC_EVTCHNS[{j}]")),
                    None => d,
                };
                im.diags.push(d);
            }
        }
    }
    out
}
