//! The whole pipeline, shared by the CLI and the benchmarks: read an input (TOML, DTS or
//! DTB), validate it, and produce every output file in memory.

use crate::codes::{BASE_TREE, INPUT_KIND, IO_ERROR, SHM_TOO_MANY_REGIONS, TOO_MANY_MODULES};
use crate::desc::{read_description, Overrides};
use crate::from_dt::system_from_tree;
use crate::model::{Platform, SourceKind, System, Target, XenVersion};
use crate::{emit, gen, manifest, validate};
use staticbus_diag::{Diagnostic, Diagnostics, FileId, Location, Severity, Sources, Span};
use staticbus_dt::{
    check_blob_tree, parse_dts, print_dts, read_dtb, write_dtb, DtsOptions, FsLoader, Tree,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What kind of file an input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// TOML system description.
    Toml,
    /// Device-tree source.
    Dts,
    /// Device-tree blob.
    Dtb,
}

impl InputKind {
    /// Guesses the kind from the extension, then from the content (DTB magic).
    pub fn detect(path: &Path, bytes: &[u8]) -> Option<InputKind> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Some(InputKind::Toml),
            Some("dts") | Some("dtsi") => Some(InputKind::Dts),
            Some("dtb") => Some(InputKind::Dtb),
            _ if bytes.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]) => Some(InputKind::Dtb),
            _ if std::str::from_utf8(bytes)
                .is_ok_and(|s| s.trim_start().starts_with("/dts-v1/")) =>
            {
                Some(InputKind::Dts)
            }
            _ => None,
        }
    }
}

/// Options of a check or build.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Target Xen version (DT input: default 4.20; TOML: overrides `[target] xen`).
    pub xen: Option<XenVersion>,
    /// CONFIG_STATIC_SHM (DT input: default off; TOML: overrides `[target] static-shm`).
    pub static_shm: Option<bool>,
    /// CONFIG_STATIC_MEMORY (DT input: default off, implied by `static_shm`; TOML:
    /// overrides `[target] static-memory`).
    pub static_memory: Option<bool>,
    /// CONFIG_STATIC_EVTCHN (DT input: default on; TOML: overrides `[target]
    /// static-evtchn`). Only 4.19+ have the option; older releases always bind.
    pub static_evtchn: Option<bool>,
    /// Base device tree to merge into and to take RAM/reserved ranges from.
    pub base: Option<PathBuf>,
    /// Extra `/include/` directories for DTS input.
    pub include_dirs: Vec<PathBuf>,
    /// For the emulator only (`staticbus run --beyond-xen-tables`): the limits that are
    /// sizes of Xen's fixed tables — SB0226 (shared regions per domain) and SB0411 (boot
    /// modules) — become warnings, so systems larger than any Xen build boots can be run.
    pub beyond_xen_tables: bool,
}

/// The codes [`Options::beyond_xen_tables`] turns into warnings: sizes of Xen's fixed
/// tables, which the emulator does not have.
pub const XEN_TABLE_CODES: [&str; 2] = [SHM_TOO_MANY_REGIONS.id, TOO_MANY_MODULES.id];

/// The result of loading and checking an input.
#[derive(Debug)]
pub struct Checked {
    /// The model, when the input could be read.
    pub system: Option<System>,
    /// The tree a build starts from: the `--base` tree for a description, the input tree
    /// itself for device-tree input.
    pub base: Option<Tree>,
    /// Every diagnostic, sorted by position.
    pub diags: Diagnostics,
    /// True if a file could not be read at all (exit code 2 territory).
    pub io_error: bool,
}

fn io_diag(file: Option<FileId>, path: &Path, e: &std::io::Error) -> Diagnostic {
    let loc = file
        .map(|file| Location::File { file })
        .unwrap_or(Location::None);
    Diagnostic::new(
        IO_ERROR,
        loc,
        format!("cannot read `{}`: {e}", path.display()),
    )
    .help("check the path and permissions")
}

/// Largest input file accepted (Xen itself refuses host DTBs over 2 MiB).
pub const MAX_INPUT: u64 = 64 << 20;

/// Reads a whole file, refusing files larger than [`MAX_INPUT`].
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_INPUT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_INPUT >> 20),
        ));
    }
    Ok(bytes)
}

/// Reads a device tree (DTS or DTB) into `sources`.
pub fn read_tree(
    sources: &mut Sources,
    path: &Path,
    bytes: Vec<u8>,
    kind: InputKind,
    include_dirs: &[PathBuf],
) -> (Option<(Tree, FileId)>, Diagnostics) {
    let name = path.display().to_string();
    match kind {
        InputKind::Dtb => {
            let file = sources.add_binary(name);
            match read_dtb(&bytes, file) {
                Ok(t) => {
                    let d = check_blob_tree(&t, file);
                    (Some((t, file)), d)
                }
                Err(d) => (None, d),
            }
        }
        _ => {
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let help = "DTS files are UTF-8 text (re-encode the file, e.g. with iconv); pass a .dtb for a binary device tree";
                    return (None, not_utf8(sources, name, e, help));
                }
            };
            let opts = DtsOptions {
                include_dirs: include_dirs.to_vec(),
                ..DtsOptions::default()
            };
            let before = sources.iter().count();
            let (tree, diags) = parse_dts(sources, &name, text, &opts, &FsLoader);
            // The main file is the first one the parser registered.
            let file = FileId(before as u32);
            (tree.map(|t| (t, file)), diags)
        }
    }
}

/// The diagnostic for a DTS that is not UTF-8: at the first bad byte (the text before it
/// is kept as it is, so its line and column are right).
fn not_utf8(
    sources: &mut Sources,
    name: String,
    e: std::string::FromUtf8Error,
    help: &str,
) -> Diagnostics {
    let at = e.utf8_error().valid_up_to();
    let bytes = e.into_bytes();
    let bad = bytes[at];
    // The lossy text has U+FFFD where the bad sequence was.
    let len = char::REPLACEMENT_CHARACTER.len_utf8();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let file = sources.add_text(name, text);
    let mut d = Diagnostics::new();
    d.push(
        Diagnostic::new(
            INPUT_KIND,
            Location::span(Span::new(file, at, at + len)),
            format!("byte {bad:#04x} at offset {at} is not UTF-8 text"),
        )
        .label("not UTF-8")
        .help(help),
    );
    d
}

/// The board tree a description names (`[platform] base = "board.dtb"`), resolved against
/// the description's folder. A description that does not parse has none here (the reader
/// then reports why).
fn description_base(path: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(bytes).ok()?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let base = table.get("platform")?.get("base")?.as_str()?;
    Some(path.parent().unwrap_or(Path::new(".")).join(base))
}

/// Loads `path`, reads it into the model and validates it.
pub fn check(sources: &mut Sources, path: &Path, opts: &Options) -> Checked {
    let mut out = Checked {
        system: None,
        base: None,
        diags: Diagnostics::new(),
        io_error: false,
    };
    let bytes = match read_limited(path) {
        Ok(b) => b,
        Err(e) => {
            out.diags.push(io_diag(None, path, &e));
            out.io_error = true;
            return out;
        }
    };
    let Some(kind) = InputKind::detect(path, &bytes) else {
        let file = sources.add_binary(path.display().to_string());
        out.diags.push(
            Diagnostic::new(
                INPUT_KIND,
                Location::File { file },
                "cannot tell what kind of file this is",
            )
            .help("name it .toml (system description), .dts or .dtb (Xen host device tree)"),
        );
        out.io_error = true;
        return out;
    };
    let mut base_platform: Option<Platform> = None;
    // `--base`, else the description's own `[platform] base` (relative to it).
    let base = opts.base.clone().or_else(|| {
        (kind == InputKind::Toml)
            .then(|| description_base(path, &bytes))
            .flatten()
    });
    if let Some(bp) = &base {
        match read_limited(bp) {
            Err(e) => {
                out.diags.push(io_diag(None, bp, &e));
                out.io_error = true;
                return out;
            }
            Ok(bb) => {
                let bkind = InputKind::detect(bp, &bb).unwrap_or(InputKind::Dtb);
                if bkind == InputKind::Toml {
                    let file = sources.add_binary(bp.display().to_string());
                    out.diags.push(
                        Diagnostic::new(BASE_TREE, Location::File { file }, "the base must be a device tree (.dtb or .dts)")
                            .help("dump QEMU's tree with `qemu-system-aarch64 -machine virt,dumpdtb=virt.dtb`"),
                    );
                    out.io_error = true;
                    return out;
                }
                let (t, d) = read_tree(sources, bp, bb, bkind, &opts.include_dirs);
                out.diags.extend(d);
                let Some((t, file)) = t else {
                    return out;
                };
                let (bsys, _) =
                    system_from_tree(&t, file, "base", SourceKind::Dtb, Target::default());
                base_platform = Some(bsys.platform);
                out.base = Some(t);
            }
        }
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("system")
        .to_string();
    match kind {
        InputKind::Toml => {
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    out.diags.extend(not_utf8(
                        sources,
                        path.display().to_string(),
                        e,
                        "system descriptions are UTF-8 TOML text (re-encode the file, e.g. with iconv)",
                    ));
                    return out;
                }
            };
            let file = sources.add_text(path.display().to_string(), text.clone());
            let base_dir = path.parent().unwrap_or(Path::new("."));
            let ov = Overrides {
                xen: opts.xen,
                static_shm: opts.static_shm,
                static_memory: opts.static_memory,
                static_evtchn: opts.static_evtchn,
                base_platform,
            };
            let (sys, d) = read_description(file, &text, &stem, base_dir, &ov);
            out.diags.extend(d);
            if let Some(sys) = sys {
                out.diags.extend(validate(&sys));
                out.system = Some(sys);
            }
        }
        InputKind::Dts | InputKind::Dtb => {
            let (t, d) = read_tree(sources, path, bytes, kind, &opts.include_dirs);
            out.diags.extend(d);
            if let Some((tree, file)) = t {
                let target = Target {
                    xen: opts.xen.unwrap_or(XenVersion::V4_20),
                    static_shm: opts.static_shm.unwrap_or(false),
                    static_memory: opts.static_memory.unwrap_or(false)
                        || opts.static_shm.unwrap_or(false),
                    static_evtchn: opts.static_evtchn.unwrap_or(true),
                    ..Target::default()
                };
                let source = if kind == InputKind::Dtb {
                    SourceKind::Dtb
                } else {
                    SourceKind::Dts
                };
                let (mut sys, d) = system_from_tree(&tree, file, &stem, source, target);
                out.diags.extend(d);
                if let Some(bp) = base_platform {
                    if sys.platform.ram.is_empty() {
                        sys.platform.ram = bp.ram;
                    }
                    sys.platform.reserved.extend(bp.reserved);
                    sys.platform.gic = sys.platform.gic.or(bp.gic);
                }
                out.diags.extend(validate(&sys));
                out.system = Some(sys);
                // For device-tree input the tree to emit is the input itself; a `--base`
                // only contributed its platform facts above.
                out.base = Some(tree);
            }
        }
    }
    if opts.beyond_xen_tables {
        out.diags = beyond_xen_tables(std::mem::take(&mut out.diags));
    }
    out.diags.sort();
    out
}

/// One output file, relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative path (`/`-separated).
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// Produces every output of a build: `host.dts`, `host.dtb`, and for each domain
/// `domains/<name>/manifest.{json,rs,h,dts}`. For DT input the host tree is the input tree
/// itself (re-emitted canonically). The outputs are independent, so they are produced on
/// all available cores: the calling thread builds the host tree and prints `host.dts`
/// (while another thread writes `host.dtb`), and worker threads on the other cores take
/// the domains one at a time (so that the work spreads evenly whatever the domains cost)
/// and write each one's manifest files. The result is the same whatever the core count.
pub fn build_outputs(sys: &System, base: Option<Tree>) -> Vec<OutputFile> {
    let index = manifest::Index::new(sys);
    // The calling thread does the host tree; the other cores (at least one) the domains.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(2, 16)
        - 1;
    let next = AtomicUsize::new(0);
    let (host, domains) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let d = next.fetch_add(1, Ordering::Relaxed);
                        if d >= sys.domains.len() {
                            return done;
                        }
                        done.push((d, domain_outputs(&index.manifest(sys, d))));
                    }
                })
            })
            .collect();
        let host = host_outputs(sys, base);
        let mut domains: Vec<(usize, [OutputFile; 4])> =
            workers.into_iter().flat_map(join).collect();
        domains.sort_unstable_by_key(|&(d, _)| d);
        (host, domains)
    });
    let mut files = Vec::with_capacity(2 + 4 * domains.len());
    files.extend(host);
    files.extend(domains.into_iter().flat_map(|(_, f)| f));
    files
}

/// The result of a scoped thread, re-raising its panic.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `host.dts` and `host.dtb`.
fn host_outputs(sys: &System, base: Option<Tree>) -> [OutputFile; 2] {
    let tree = match sys.source {
        SourceKind::Description => gen::host_tree(sys, base),
        _ => base.unwrap_or_default(),
    };
    let (dts, dtb) = std::thread::scope(|s| {
        let dtb = s.spawn(|| write_dtb(&tree));
        (print_dts(&tree), join(dtb))
    });
    [
        OutputFile {
            path: "host.dts".into(),
            bytes: dts.into_bytes(),
        },
        OutputFile {
            path: "host.dtb".into(),
            bytes: dtb,
        },
    ]
}

fn domain_outputs(m: &manifest::DomainManifest) -> [OutputFile; 4] {
    let file = |name: &str, bytes: Vec<u8>| OutputFile {
        path: format!("domains/{}/{name}", m.domain),
        bytes,
    };
    [
        file("manifest.json", emit::to_json(m).into_bytes()),
        file("manifest.rs", emit::to_rust(m).into_bytes()),
        file("manifest.h", emit::to_c_header(m).into_bytes()),
        file("manifest.dts", emit::to_dt_source(m).into_bytes()),
    ]
}

/// `boot.source` and `boot.scr`: the U-Boot script that loads and starts the system
/// ([`crate::uboot`]).
pub fn uboot_outputs(sys: &System) -> Result<Vec<OutputFile>, crate::uboot::ScriptError> {
    let script = crate::uboot::script(sys)?;
    let name = format!("staticbus {}", sys.name);
    Ok(vec![
        OutputFile {
            path: "boot.scr".into(),
            bytes: crate::uboot::scr(&name, &script),
        },
        OutputFile {
            path: "boot.source".into(),
            bytes: script.into_bytes(),
        },
    ])
}

/// [`Options::beyond_xen_tables`]: the table-size errors become warnings that say so.
fn beyond_xen_tables(diags: Diagnostics) -> Diagnostics {
    let mut out = Diagnostics::new();
    for d in diags {
        if XEN_TABLE_CODES.contains(&d.code.id) && d.severity == Severity::Error {
            out.push(d.severity(Severity::Warning).note(
                "--beyond-xen-tables: the emulator has no such table and runs the system; \
                 no Xen build boots it",
            ));
        } else {
            out.push(d);
        }
    }
    out
}
