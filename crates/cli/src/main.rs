//! `staticbus`: verified static inter-domain channels for Xen dom0less.
//!
//! Subcommands: `check` (validate a system description or a Xen host device tree),
//! `build` (write the host device tree and per-domain manifests), `explain` (what a
//! diagnostic code means and what Xen does without it), `run` (the system in the emulated
//! hypervisor), `boot` (the system on real Xen under QEMU), `map` (the system as a picture).

#![deny(unsafe_code)]

mod boot;
mod explain;
mod run;

use clap::{Parser, Subcommand, ValueEnum};
use staticbus_config::compile::{self, Options, OutputFile};
use staticbus_config::model::XenVersion;
use staticbus_diag::{render_human, render_json, Code, ColorChoice, Diagnostics, Sources};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "staticbus",
    version,
    about = "Verified static inter-domain channels for Xen dom0less"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    Silo,
    Dummy,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// System description (.toml) or Xen host device tree (.dts, .dtb).
    file: PathBuf,
    /// Target Xen version (device-tree input defaults to 4.20; overrides the description).
    #[arg(long, value_parser = ["4.17", "4.18", "4.19", "4.20"])]
    xen: Option<String>,
    /// The Xen build has CONFIG_STATIC_SHM (default for device-tree input: off, like
    /// Debian's binaries; overrides the description).
    #[arg(long)]
    static_shm: bool,
    /// The Xen build has CONFIG_STATIC_MEMORY (static memory for domains) without
    /// necessarily CONFIG_STATIC_SHM (which implies it); overrides the description.
    #[arg(long)]
    static_memory: bool,
    /// The Xen build has CONFIG_STATIC_EVTCHN off (4.19+; default: on, as in Debian's
    /// builds): it ignores static event channels; overrides the description.
    #[arg(long)]
    no_static_evtchn: bool,
    /// Base device tree (e.g. QEMU's dumpdtb output): RAM and reserved ranges are taken
    /// from it, and `build` merges the result into it.
    #[arg(long)]
    base: Option<PathBuf>,
    /// Extra directory searched by `/include/` in DTS files.
    #[arg(short = 'I', long = "include")]
    include: Vec<PathBuf>,
    /// Diagnostics format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Fail on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Colour human output.
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a system description or Xen host device tree against Xen's rules.
    Check(CheckArgs),
    /// Write the host device tree (DTS, DTB) and every domain's manifest (JSON, Rust, C,
    /// DT fragment).
    Build {
        #[command(flatten)]
        args: CheckArgs,
        /// Output directory.
        #[arg(short, long)]
        out: PathBuf,
        /// Write outputs even when the check finds errors (to test how Xen fails).
        #[arg(long)]
        no_check: bool,
        /// Also write a U-Boot script (`boot.source`, and `boot.scr` for `source`) that
        /// loads Xen, the tree and every module at their checked addresses and starts Xen.
        #[arg(long)]
        uboot: bool,
    },
    /// Run the whole system on this host: the emulated hypervisor with every domain as a
    /// process (its `emulate` program), console prefixed by domain name, summary at the end.
    Run {
        /// System description (.toml) whose domains have `emulate` programs.
        file: PathBuf,
        /// Stop every domain after this many seconds (exit status 1).
        #[arg(long)]
        timeout: Option<f64>,
        /// XSM policy: `silo` (Debian's default: runtime domU-to-domU event channels are
        /// refused) or `dummy`.
        #[arg(long, value_enum, default_value = "silo")]
        policy: PolicyArg,
        /// Re-create this domain whenever it exits, re-binding its static channels (beyond
        /// Xen; for testing peer restarts). May be repeated.
        #[arg(long)]
        restart: Vec<String>,
        /// Re-create any domain that crashes.
        #[arg(long)]
        restart_on_crash: bool,
        /// Restarts allowed per domain.
        #[arg(long, default_value_t = 1000)]
        max_restarts: u32,
        /// Boot the outputs of an earlier `staticbus build FILE -o DIR` (its host.dtb and
        /// manifests) instead of building afresh into a temporary folder.
        #[arg(long, value_name = "DIR")]
        built: Option<PathBuf>,
        /// Run the domains without the sandbox (for debugging only: any domain can then
        /// read every other domain's memory through /proc or ptrace).
        #[arg(long)]
        no_sandbox: bool,
        /// Do not put the domains in cgroups of their own (their resource limits still
        /// hold per process; see docs/emulator.md#resource-limits).
        #[arg(long)]
        no_cgroups: bool,
        /// Run a system larger than Xen's fixed tables allow: more than 30 boot modules
        /// (SB0411) or more shared regions than Xen has room for (SB0226) become warnings.
        /// For scale tests of the protocols; no Xen build boots such a system.
        #[arg(long)]
        beyond_xen_tables: bool,
    },
    /// Boot the system on real Xen under qemu-system-aarch64: build the guests (modules
    /// with `cargo = { bin = … }`), merge the configuration into QEMU's board tree, load
    /// every module, show each domain's console by name, and pass when every domain
    /// printed `RESULT PASS` (exit 1 on `RESULT FAIL`, a Xen panic or the timeout). With
    /// `[target] hypervisor = "qemu-ivshmem"`: no Xen, one VM per domain over QEMU's
    /// ivshmem-doorbell device, served by staticbus (docs/adr/0005).
    Boot {
        /// System description (.toml).
        file: PathBuf,
        /// Xen binary (default: the cache filled by `scripts/xen/fetch-xen.sh <version>`,
        /// `$STATICBUS_CACHE/xen/<version>/xen`, for the description's target version).
        #[arg(long)]
        xen: Option<PathBuf>,
        /// Seconds from QEMU's start before giving up.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Work directory for the tree, manifests, images and console log (default:
        /// `staticbus-boot-<system>` in the temporary directory).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Boot even if the check finds errors (to see how Xen fails).
        #[arg(long)]
        no_check: bool,
        /// QEMU binary.
        #[arg(long, default_value = "qemu-system-aarch64")]
        qemu: String,
        /// Emulated physical CPUs.
        #[arg(long, default_value_t = 2)]
        smp: u32,
        /// QEMU accelerator. Single-threaded TCG keeps cross-CPU wake-ups fast on a loaded
        /// host.
        #[arg(long, default_value = "tcg,thread=single")]
        accel: String,
        /// Show Xen's own console lines too.
        #[arg(short, long)]
        verbose: bool,
        /// Extra QEMU argument (may be repeated).
        #[arg(long = "qemu-arg", allow_hyphen_values = true)]
        qemu_args: Vec<String>,
        /// Boot the way a board would: QEMU starts this U-Boot (e.g.
        /// /usr/lib/u-boot/qemu_arm64/u-boot.bin from Debian's u-boot-qemu), which fetches
        /// the `--uboot` script of `staticbus build` and every file it names over TFTP.
        #[arg(long)]
        uboot: Option<PathBuf>,
        /// The cargo workspace that builds the description's `cargo = {…}` images
        /// (default: the description's own workspace, else the staticbus sources this
        /// binary was built from).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Draw the system: host and guest memory maps, the channel graph and the check's
    /// problems where they are, as one SVG or a self-contained HTML page (exit 1 on errors,
    /// like `check`; the map is written anyway).
    Map {
        #[command(flatten)]
        args: CheckArgs,
        /// Output file: `.html` (zoomable page with the problem list) or `.svg`.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Turn another tool's configuration into a system description.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Explain a diagnostic code (the rule, what Xen does without it, and the failing and
    /// fixed example its test checks), or list them all.
    Explain {
        /// A code such as SB0201.
        code: Option<String>,
        /// List every code.
        #[arg(long)]
        list: bool,
        /// With --list: a Markdown table.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// An ImageBuilder configuration (the variables `uboot-script-gen -c CONFIG` sources):
    /// every variable is imported or reported with its line; modules are placed where
    /// uboot-script-gen loads them, so `build --uboot` writes the script it would.
    Imagebuilder {
        /// The configuration file.
        config: PathBuf,
        /// The system description to write (written only when the import has no errors).
        #[arg(short, long)]
        out: PathBuf,
        /// The folder the configuration's paths are relative to (uboot-script-gen's -d;
        /// default: the configuration's folder).
        #[arg(short = 'd', long = "dir")]
        dir: Option<PathBuf>,
        /// The U-Boot load command (uboot-script-gen's -t: tftp, sd, scsi, usb or any
        /// command); overrides LOAD_CMD.
        #[arg(short = 't', long = "load")]
        load: Option<String>,
        /// Target Xen version of the description.
        #[arg(long, value_parser = ["4.17", "4.18", "4.19", "4.20"])]
        xen: Option<String>,
        /// The system's name (default: the output file's stem).
        #[arg(long)]
        name: Option<String>,
        /// Import without the images: a file that is not there is assumed to be this large
        /// (e.g. 64MiB) and the description reserves that much for it.
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        assume_size: Option<u64>,
        /// Diagnostics format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Fail (and write nothing) on warnings too, e.g. unsupported variables.
        #[arg(long)]
        deny_warnings: bool,
    },
}

fn all_codes() -> Vec<Code> {
    let mut v = staticbus_dt::codes();
    v.extend_from_slice(staticbus_config::codes::ALL);
    v.extend_from_slice(staticbus_import::codes::ALL);
    v.sort_by_key(|c| c.id);
    v
}

fn options(a: &CheckArgs) -> Options {
    Options {
        xen: a.xen.as_deref().and_then(XenVersion::parse),
        static_shm: a.static_shm.then_some(true),
        static_memory: a.static_memory.then_some(true),
        static_evtchn: a.no_static_evtchn.then_some(false),
        base: a.base.clone(),
        include_dirs: a.include.clone(),
        beyond_xen_tables: false,
    }
}

/// Prints diagnostics for a person (colour when stderr is a terminal and NO_COLOR is unset).
fn report_human(sources: &Sources, diags: &Diagnostics) {
    let color = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        ColorChoice::Always
    } else {
        ColorChoice::Never
    };
    eprint!("{}", render_human(sources, diags, color));
}

fn report(sources: &Sources, diags: &Diagnostics, a: &CheckArgs) {
    match a.format {
        Format::Json => {
            print!("{}", render_json(sources, diags));
        }
        Format::Human => {
            let color = match a.color {
                Color::Always => ColorChoice::Always,
                Color::Never => ColorChoice::Never,
                Color::Auto
                    if std::io::stderr().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none() =>
                {
                    ColorChoice::Always
                }
                Color::Auto => ColorChoice::Never,
            };
            eprint!("{}", render_human(sources, diags, color));
        }
    }
}

/// Exit code for a set of diagnostics: 1 on errors (or warnings when denied), else 0.
fn verdict(diags: &Diagnostics, deny_warnings: bool) -> u8 {
    u8::from(diags.has_errors() || (deny_warnings && diags.warnings() > 0))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the target.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes every file under `out`, each atomically, and the set all or nothing as far as
/// the file system allows: every temporary is written first (beside its target), then
/// one `syncfs(2)` flushes them all (an `fsync` per file made a 1,026-file build wait
/// ~650 ms in the kernel), then the temporaries are renamed over the targets. If a
/// temporary cannot be written or the flush fails, no output is replaced and the
/// temporaries are removed (folders it created stay); a rename that fails leaves the
/// outputs renamed before it replaced and removes the remaining temporaries.
fn write_outputs(out: &Path, files: &[OutputFile]) -> std::io::Result<()> {
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(files.len());
    let written = (|| {
        for f in files {
            let path = out.join(&f.path);
            let tmp = write_temporary(&path, &f.bytes)?;
            staged.push((tmp, path));
        }
        if let Some((tmp, _)) = staged.first() {
            // The outputs share one file system (all under `out`).
            rustix::fs::syncfs(std::fs::File::open(tmp)?)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            for (tmp, _) in &staged[i..] {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Writes `bytes` to a new temporary file beside `path` (not synced) and returns its
/// path; on failure the temporary is removed.
fn write_temporary(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn run(cli: Cli) -> u8 {
    match cli.cmd {
        Cmd::Check(a) => {
            let mut sources = Sources::new();
            let c = compile::check(&mut sources, &a.file, &options(&a));
            report(&sources, &c.diags, &a);
            if c.io_error {
                return 2;
            }
            let code = verdict(&c.diags, a.deny_warnings);
            if code == 0 && matches!(a.format, Format::Human) {
                let sys = c.system.as_ref();
                eprintln!(
                    "{}: ok ({}; Xen {})",
                    a.file.display(),
                    sys.map_or_else(String::new, |s| s.summary()),
                    sys.map_or("?".into(), |s| s.target.xen.to_string()),
                );
            }
            code
        }
        Cmd::Build {
            args: a,
            out,
            no_check,
            uboot,
        } => {
            let mut sources = Sources::new();
            let c = compile::check(&mut sources, &a.file, &options(&a));
            report(&sources, &c.diags, &a);
            if c.io_error {
                return 2;
            }
            let code = verdict(&c.diags, a.deny_warnings);
            let Some(sys) = c.system else {
                return code.max(1);
            };
            if code != 0 && !no_check {
                eprintln!(
                    "not writing {}: fix the errors above (or pass --no-check)",
                    out.display()
                );
                return code;
            }
            let mut files = compile::build_outputs(&sys, c.base);
            if uboot {
                match compile::uboot_outputs(&sys) {
                    Ok(f) => files.extend(f),
                    Err(e) => {
                        eprintln!("error: --uboot: {}\n  = help: {}", e.msg, e.help);
                        return 1;
                    }
                }
            }
            if let Err(e) = write_outputs(&out, &files) {
                eprintln!("error[SB0701]: cannot write to `{}`: {e}", out.display());
                return 2;
            }
            if matches!(a.format, Format::Human) {
                eprintln!("wrote {} files to {}", files.len(), out.display());
                for f in &files {
                    eprintln!("  {}", f.path);
                }
            }
            if no_check {
                0
            } else {
                code
            }
        }
        Cmd::Run {
            file,
            timeout,
            policy,
            restart,
            restart_on_crash,
            max_restarts,
            built,
            no_sandbox,
            no_cgroups,
            beyond_xen_tables,
        } => {
            let mut sources = Sources::new();
            let check_opts = Options {
                beyond_xen_tables,
                ..Options::default()
            };
            let c = compile::check(&mut sources, &file, &check_opts);
            if !c.diags.is_empty() {
                report_human(&sources, &c.diags);
            }
            if c.io_error {
                return 2;
            }
            let Some(sys) = c.system.filter(|_| !c.diags.has_errors()) else {
                return 1;
            };
            if sys.source != staticbus_config::model::SourceKind::Description {
                eprintln!(
                    "error: `staticbus run` needs a system description (.toml) with `emulate` programs"
                );
                return 2;
            }
            let opts = run::RunOptions {
                timeout: timeout.map(std::time::Duration::from_secs_f64),
                policy: match policy {
                    PolicyArg::Silo => staticbus_emu::Policy::Silo,
                    PolicyArg::Dummy => staticbus_emu::Policy::Dummy,
                },
                restart,
                restart_on_crash,
                max_restarts,
                built,
                sandbox: !no_sandbox,
                cgroups: !no_cgroups,
                beyond_xen_tables,
            };
            let base_dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            run::run(&sys, c.base, &base_dir, &opts)
        }
        Cmd::Boot {
            file,
            xen,
            timeout,
            out,
            no_check,
            qemu,
            smp,
            accel,
            verbose,
            qemu_args,
            uboot,
            workspace,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                eprintln!("error: --timeout must be a positive number of seconds");
                return 2;
            }
            let opts = boot::BootOptions {
                xen,
                timeout: std::time::Duration::from_secs_f64(timeout),
                out,
                no_check,
                qemu,
                smp,
                accel,
                verbose,
                qemu_args,
                uboot,
                workspace,
            };
            boot::boot(&file, &opts)
        }
        Cmd::Map { args: a, out } => map(&a, &out),
        Cmd::Import {
            from:
                ImportFrom::Imagebuilder {
                    config,
                    out,
                    dir,
                    load,
                    xen,
                    name,
                    assume_size,
                    format,
                    deny_warnings,
                },
        } => import_imagebuilder(ImportArgs {
            config,
            out,
            dir,
            load,
            xen,
            name,
            assume_size,
            format,
            deny_warnings,
        }),
        Cmd::Explain {
            code,
            list,
            markdown,
        } => {
            let codes = all_codes();
            if list || code.is_none() {
                if markdown {
                    println!("| code | severity | rule | what Xen does without it |");
                    println!("|---|---|---|---|");
                    for c in &codes {
                        println!(
                            "| {} | {:?} | {} | {} |",
                            c.id,
                            c.severity,
                            c.title.replace('|', "\\|"),
                            c.xen.replace('|', "\\|")
                        );
                    }
                } else {
                    for c in &codes {
                        println!(
                            "{}  {:<7}  {}",
                            c.id,
                            format!("{:?}", c.severity).to_lowercase(),
                            c.title
                        );
                    }
                }
                return 0;
            }
            let asked = code.unwrap_or_default();
            let want = asked.trim().to_ascii_uppercase();
            match codes.iter().find(|c| c.id == want) {
                Some(c) => {
                    print!("{}", explain::explain(c));
                    0
                }
                None => {
                    eprintln!("error: unknown code `{}`", asked.trim());
                    let close = explain::close_matches(asked.trim(), &codes);
                    if !close.is_empty() {
                        eprintln!("  = help: did you mean:");
                        for c in close {
                            eprintln!("      {}  {}", c.id, c.title);
                        }
                    }
                    eprintln!("  = note: `staticbus explain --list` lists every code");
                    2
                }
            }
        }
    }
}

struct ImportArgs {
    config: PathBuf,
    out: PathBuf,
    dir: Option<PathBuf>,
    load: Option<String>,
    xen: Option<String>,
    name: Option<String>,
    assume_size: Option<u64>,
    format: Format,
    deny_warnings: bool,
}

/// `--assume-size`: a size as the description writes them (`64MiB`, `0x100000`, `4096`).
fn parse_size_arg(s: &str) -> Result<u64, String> {
    staticbus_config::desc::parse_size(s)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{s}` is not a size (write e.g. 64MiB, 0x100000 or 4096)"))
}

/// `staticbus import imagebuilder`: read, map, report, and write the description
/// atomically when nothing is wrong.
fn import_imagebuilder(a: ImportArgs) -> u8 {
    let text = match std::fs::read(&a.config) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                eprintln!(
                    "error[SB0702]: `{}` is not UTF-8 text (an ImageBuilder configuration is a bash file)",
                    a.config.display()
                );
                return 2;
            }
        },
        Err(e) => {
            eprintln!("error[SB0701]: cannot read `{}`: {e}", a.config.display());
            return 2;
        }
    };
    let mut sources = Sources::new();
    let file = sources.add_text(a.config.display().to_string(), text.clone());
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let opts = staticbus_import::Options {
        root: a.dir.clone().unwrap_or_else(|| parent(&a.config)),
        out_dir: parent(&a.out),
        load_cmd: a.load.clone(),
        name: a.name.clone().unwrap_or_else(|| {
            a.out
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("imported")
                .to_string()
        }),
        xen: a.xen.clone(),
        assume_size: a.assume_size,
    };
    let im = staticbus_import::import(&sources, file, &text, &opts);
    match a.format {
        Format::Json => print!("{}", render_json(&sources, &im.diags)),
        Format::Human => report_human(&sources, &im.diags),
    }
    let code = verdict(&im.diags, a.deny_warnings);
    let Some(toml) = im.toml.filter(|_| code == 0) else {
        eprintln!(
            "not writing {}: fix the errors above{}",
            a.out.display(),
            if a.deny_warnings {
                " (warnings are denied)"
            } else {
                ""
            }
        );
        return code.max(1);
    };
    if let Err(e) = write_atomic(&a.out, toml.as_bytes()) {
        eprintln!("error[SB0701]: cannot write `{}`: {e}", a.out.display());
        return 2;
    }
    if matches!(a.format, Format::Human) {
        eprintln!(
            "wrote {}: {} variables imported, {} not imported (reported above)",
            a.out.display(),
            im.imported,
            im.not_imported
        );
        eprintln!("next: staticbus build {} --uboot -o out", a.out.display());
        if let Some(at) = im.script_addr {
            eprintln!("then, in U-Boot: <load command> {at:#x} boot.scr; source {at:#x}");
        }
    }
    0
}

/// `staticbus map`: check, then draw the model with the check's problems on it.
fn map(a: &CheckArgs, out: &Path) -> u8 {
    let Some(format) = staticbus_map::Format::from_path(out) else {
        eprintln!(
            "error: `{}`: the map is written as .html or .svg",
            out.display()
        );
        return 2;
    };
    let mut sources = Sources::new();
    let c = compile::check(&mut sources, &a.file, &options(a));
    report(&sources, &c.diags, a);
    if c.io_error {
        return 2;
    }
    let input = staticbus_map::Input {
        system: c.system.as_ref(),
        diags: &c.diags,
        sources: &sources,
        file: a.file.display().to_string(),
    };
    let bytes = match format {
        staticbus_map::Format::Html => staticbus_map::html(&input),
        staticbus_map::Format::Svg => staticbus_map::svg(&input),
    };
    if let Err(e) = write_atomic(out, bytes.as_bytes()) {
        eprintln!("error[SB0701]: cannot write `{}`: {e}", out.display());
        return 2;
    }
    if matches!(a.format, Format::Human) {
        eprintln!("wrote {} ({} problems)", out.display(), c.diags.len());
    }
    verdict(&c.diags, a.deny_warnings).max(u8::from(c.system.is_none()))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    ExitCode::from(run(cli))
}
