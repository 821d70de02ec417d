//! `staticbus boot`: a system description on real Xen under `qemu-system-aarch64`.
//!
//! Builds the guests, dumps QEMU's own board tree, merges the generated configuration into
//! it, places every boot module with `-device loader`, boots Xen (TCG) and follows the
//! console: each domain's lines are shown prefixed by its name, and the verdict comes from
//! the guests' own `RESULT PASS` / `RESULT FAIL …` lines (or a Xen panic, or the timeout).
//! Xen does not power the machine off when its domains are done, so the QEMU started here
//! is stopped here, and only that one.
//!
//! - `qemu`: the machine, its RAM, running QEMU and stopping it;
//! - `images`: the guest images, built with cargo and turned into arm64 Images;
//! - `ivshmem`: `hypervisor = "qemu-ivshmem"`: one VM per domain, no Xen, the ivshmem
//!   server (docs/adr/0005);
//! - `linux`: Linux domains: their kernel, programs (musl) and the initramfs made here;
//! - `uboot`: the TFTP directory and command line of a boot through U-Boot;
//! - `console`: reading the serial console and deciding the boot from it.

mod console;
mod images;
mod ivshmem;
mod linux;
mod qemu;
mod uboot;

use crate::{report_human, write_atomic, write_outputs};
use console::{spawn_reader, Event, Verdict, Watch};
use images::images;
use qemu::{machine_args, memory_mib, run_bounded, Qemu};
use staticbus_config::compile::{self, Options};
use staticbus_config::model::{GicVersion, Hypervisor, SourceKind, XenVersion};
use staticbus_diag::Sources;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use uboot::uboot_tree;

/// How long the console is still read after a Xen panic, for the rest of its message.
const PANIC_GRACE: Duration = Duration::from_millis(500);

/// What `staticbus boot` was asked to do.
pub struct BootOptions {
    /// Xen binary (default: the cache that `scripts/xen/fetch-xen.sh` fills).
    pub xen: Option<PathBuf>,
    /// Give up after this long (from QEMU's start).
    pub timeout: Duration,
    /// Work directory (default: a directory under the system's temporary directory).
    pub out: Option<PathBuf>,
    /// Boot even when the check finds errors (to see how Xen fails).
    pub no_check: bool,
    /// QEMU binary.
    pub qemu: String,
    /// Emulated CPUs.
    pub smp: u32,
    /// QEMU `-accel` value.
    pub accel: String,
    /// Show Xen's own console lines as they come.
    pub verbose: bool,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Boot through this U-Boot (`-bios`), which loads everything over TFTP with the
    /// script `staticbus build --uboot` writes, instead of QEMU's own loaders.
    pub uboot: Option<PathBuf>,
    /// The cargo workspace that builds the description's `cargo = {…}` images (default:
    /// see [`CargoDir`]).
    pub workspace: Option<PathBuf>,
}

/// Where `boot` runs `cargo build` for the `cargo = { package, bin }` images: `--workspace
/// DIR` if given; else the description's folder when it lies in a cargo workspace; else
/// the staticbus sources this binary was built from (their `staticbus-*` packages build
/// the example programs), when they are still there.
struct CargoDir {
    explicit: Option<PathBuf>,
    desc_dir: PathBuf,
}

/// The staticbus workspace this binary was built from.
fn own_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `dir` lies in a cargo workspace (a `Cargo.toml` in it or above it).
fn in_workspace(dir: &Path) -> bool {
    let Ok(abs) = std::fs::canonicalize(dir) else {
        return false;
    };
    abs.ancestors().any(|d| d.join("Cargo.toml").is_file())
}

impl CargoDir {
    /// The folder to build in, or why there is none.
    fn get(&self) -> Result<PathBuf, SetupError> {
        if let Some(d) = &self.explicit {
            return if in_workspace(d) {
                Ok(d.clone())
            } else {
                Err(setup(format!(
                    "--workspace {}: no Cargo.toml there or above",
                    d.display()
                )))
            };
        }
        if in_workspace(&self.desc_dir) {
            return Ok(self.desc_dir.clone());
        }
        let own = own_sources();
        if own.join("Cargo.toml").is_file() {
            return Ok(own);
        }
        Err(setup(format!(
            "the description names `cargo = {{…}}` images, but `{}` is not in a cargo \
             workspace and the staticbus sources this binary was built from are gone",
            self.desc_dir.display()
        ))
        .hint("pass --workspace DIR (the workspace whose packages build the images)"))
    }
}

/// A setup error: printed as `error: …` with a hint, exit status 2.
struct SetupError {
    msg: String,
    hint: Option<String>,
}

fn setup(msg: impl Into<String>) -> SetupError {
    SetupError {
        msg: msg.into(),
        hint: None,
    }
}

impl SetupError {
    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

fn step(what: impl AsRef<str>) {
    eprintln!("==> {}", what.as_ref());
}

/// Runs `staticbus boot`; returns the exit status (0 pass, 1 fail, 2 setup error,
/// 130 interrupted).
pub fn boot(file: &Path, o: &BootOptions) -> u8 {
    match boot_inner(file, o) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.msg);
            if let Some(h) = e.hint {
                eprintln!("  = help: {h}");
            }
            2
        }
    }
}

fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("STATICBUS_CACHE") {
        return PathBuf::from(c);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/staticbus")
}

fn find_xen(o: &BootOptions, ver: XenVersion) -> Result<PathBuf, SetupError> {
    if let Some(x) = &o.xen {
        return if x.is_file() {
            Ok(x.clone())
        } else {
            Err(setup(format!("Xen binary `{}` not found", x.display())))
        };
    }
    let cached = cache_dir().join("xen").join(ver.to_string()).join("xen");
    if cached.is_file() {
        Ok(cached)
    } else {
        Err(setup(format!(
            "no Xen {ver} binary: `{}` does not exist",
            cached.display()
        ))
        .hint(format!(
            "run `scripts/xen/fetch-xen.sh {ver}` (fills that cache), or pass --xen PATH"
        )))
    }
}

fn boot_inner(file: &Path, o: &BootOptions) -> Result<u8, SetupError> {
    let base_dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    // 1. The description as written: target and RAM decide QEMU's machine.
    let mut sources = Sources::new();
    let first = compile::check(&mut sources, file, &Options::default());
    let Some(sys) = first.system else {
        report_human(&sources, &first.diags);
        return Ok(if first.io_error { 2 } else { 1 });
    };
    if sys.source != SourceKind::Description {
        return Err(setup("`staticbus boot` needs a system description (.toml)"));
    }
    if sys.target.hypervisor == Hypervisor::QemuIvshmem {
        if o.uboot.is_some() {
            return Err(setup(
                "--uboot boots Xen; this system has `hypervisor = \"qemu-ivshmem\"`",
            ));
        }
        return ivshmem::boot(file, &base_dir, o);
    }
    let mem = memory_mib(&sys)?;
    let machine = machine_args(sys.platform.gic.unwrap_or(GicVersion::V3), o.smp, mem);
    let xen = find_xen(o, sys.target.xen)?;
    let out = match &o.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("staticbus-boot-{}", sys.name)),
    };
    std::fs::create_dir_all(&out)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", out.display())))?;
    let out = out
        .canonicalize()
        .map_err(|e| setup(format!("`{}`: {e}", out.display())))?;

    // 2. QEMU's own tree for that machine.
    step(format!(
        "QEMU board tree ({} {})",
        o.qemu,
        machine.join(" ")
    ));
    let virt = out.join("virt.dtb");
    let _ = std::fs::remove_file(&virt);
    run_bounded(
        Command::new(&o.qemu)
            .args(&machine)
            .arg("-machine")
            .arg(format!("dumpdtb={}", virt.display()))
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        Duration::from_secs(60),
        &format!("`{} -machine dumpdtb=…`", o.qemu),
    )
    .map_err(|e| e.hint("install QEMU (apt-get install qemu-system-arm) or pass --qemu PATH"))?;

    // 3. The configuration, merged into QEMU's tree.
    step(format!("staticbus build {}", file.display()));
    let mut sources = Sources::new();
    let opts = Options {
        base: Some(virt),
        ..Options::default()
    };
    let c = compile::check(&mut sources, file, &opts);
    if !c.diags.is_empty() {
        report_human(&sources, &c.diags);
    }
    if c.io_error {
        return Ok(2);
    }
    let Some(sys) = c.system else {
        return Ok(1);
    };
    if c.diags.has_errors() {
        if !o.no_check {
            eprintln!(
                "not booting: fix the errors above (or pass --no-check to see how Xen fails)"
            );
            return Ok(1);
        }
        eprintln!("booting anyway (--no-check)");
    }
    let files = compile::build_outputs(&sys, c.base);
    write_outputs(&out, &files)
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;

    // 4. The images.
    let cargo_dir = CargoDir {
        explicit: o.workspace.clone(),
        desc_dir: base_dir.clone(),
    };
    let linux = linux::prepare(&sys, &base_dir, &cargo_dir, &out)?;
    let loads = images(&sys, &base_dir, &cargo_dir, &out, &linux)?;

    // 5. Boot.
    let mut args = machine.clone();
    args.extend(["-accel".into(), o.accel.clone()]);
    args.extend(
        [
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .map(String::from),
    );
    let mut uboot_cmd = None;
    match &o.uboot {
        None => {
            args.extend(["-kernel".into(), xen.display().to_string()]);
            args.extend(["-dtb".into(), out.join("host.dtb").display().to_string()]);
            for l in &loads {
                args.push("-device".into());
                args.push(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    l.file.display(),
                    l.addr
                ));
            }
        }
        Some(uboot) => {
            let (tftp, cmd) = uboot_tree(&sys, &xen, &loads, &out)?;
            step(format!(
                "through U-Boot ({}): TFTP from {}, then `{cmd}`",
                uboot.display(),
                tftp.display()
            ));
            args.extend(["-bios".into(), uboot.display().to_string()]);
            args.extend([
                "-netdev".into(),
                format!("user,id=net0,tftp={}", tftp.display()),
                "-device".into(),
                "virtio-net-device,netdev=net0".into(),
            ]);
            uboot_cmd = Some(cmd);
        }
    }
    args.extend(o.qemu_args.iter().cloned());
    let domus: BTreeMap<u16, String> = sys
        .domains
        .iter()
        .filter(|d| !d.dom0)
        .map(|d| (d.domid, d.name.clone()))
        .collect();
    step(format!(
        "Xen {} ({}) with {} domains under {} (-accel {}), timeout {:.0}s",
        sys.target.xen,
        xen.display(),
        domus.len(),
        o.qemu,
        o.accel,
        o.timeout.as_secs_f64()
    ));
    let cmdline = format!("{} {}", o.qemu, args.join(" "));
    write_atomic(&out.join("qemu.cmdline"), cmdline.as_bytes())
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
    let qemu_err = std::fs::File::create(out.join("qemu.stderr"))
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
    // Ctrl-C from here on stops the QEMU this command starts (and only that one).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, SeqCst));
    }
    let start = Instant::now();
    let child = Command::new(&o.qemu)
        .args(&args)
        // Piped: U-Boot's commands, and Xen's debug keys on a timeout.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(qemu_err)
        .spawn()
        .map_err(|e| setup(format!("cannot start {}: {e}", o.qemu)))?;
    let mut qemu = Qemu(child);
    let console = std::fs::File::create(out.join("console.log"))
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
    let lines = spawn_reader(&mut qemu.0, console);
    let mut serial_input = qemu.0.stdin.take();

    let mut watch = Watch::new(domus, o.verbose);
    let deadline = start + o.timeout;
    let mut panic_at: Option<Instant> = None;
    let verdict = loop {
        if stop.load(SeqCst) {
            break Verdict::Interrupted;
        }
        let now = Instant::now();
        if let Some(p) = panic_at {
            if now >= p + PANIC_GRACE {
                break Verdict::Fail("Xen panicked".into());
            }
        } else if now >= deadline {
            break Verdict::Timeout;
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if let (Some(input), true) = (serial_input.as_mut(), uboot_cmd.is_some()) {
                    // A key pressed before U-Boot's countdown stops its own boot sequence
                    // (the countdown line only ends once the countdown does); then the
                    // prompt runs the staticbus script.
                    let keys = if line.starts_with("U-Boot 20") {
                        Some("\n".to_string())
                    } else if line.contains("Hit any key to stop autoboot") {
                        uboot_cmd.take().map(|c| format!("{c}\n"))
                    } else {
                        None
                    };
                    if let Some(k) = keys {
                        let _ = input.write_all(k.as_bytes());
                        let _ = input.flush();
                    }
                }
                if let Some(v) = watch.line(&line, start.elapsed()) {
                    if matches!(v, Event::Panic) {
                        panic_at.get_or_insert_with(Instant::now);
                        continue;
                    }
                    if let Event::Done(v) = v {
                        break v;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if panic_at.is_some() {
                    break Verdict::Fail("Xen panicked".into());
                }
                let status = qemu.0.wait().map(|s| s.to_string()).unwrap_or_default();
                break Verdict::Fail(format!(
                    "QEMU exited ({status}); see {}",
                    out.join("qemu.stderr").display()
                ));
            }
        }
    };
    let elapsed = start.elapsed();
    if matches!(verdict, Verdict::Timeout) {
        if let Some(input) = serial_input.as_mut() {
            xen_state_at_timeout(input, &lines, &mut watch);
        }
    }
    drop(qemu); // stops QEMU
    Ok(watch.finish(&verdict, elapsed, &out))
}

/// Xen's debug keys sent on a timeout, in order: `q` (each domain and vCPU: pause and
/// poll state, pending upcall, the vGIC), `e` (every event channel: state, peer, pending
/// and masked bits), `r` (the scheduler's run queues: which vCPU is runnable where), `d`
/// (each physical CPU's registers, a guest's where it runs). The
/// console takes input for Xen at boot (`conswitch=ax` of the examples; Xen says so on
/// the console).
pub const TIMEOUT_DEBUG_KEYS: &str = "qerd";

/// How long the debug keys' output is collected before QEMU is stopped.
const DEBUG_KEYS_GRACE: Duration = Duration::from_secs(3);

/// On a timeout, asks Xen what every domain and event channel is doing (the answer goes
/// to console.log and the Xen tail of the report), so that a hang says where it is.
fn xen_state_at_timeout(
    input: &mut std::process::ChildStdin,
    lines: &mpsc::Receiver<String>,
    watch: &mut Watch,
) {
    for key in TIMEOUT_DEBUG_KEYS.bytes() {
        if input
            .write_all(&[key])
            .and_then(|()| input.flush())
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let until = Instant::now() + DEBUG_KEYS_GRACE;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let _ = watch.line(&line, Duration::ZERO);
            }
            Err(_) => break,
        }
    }
}
