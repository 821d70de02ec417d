//! `staticbus boot`: a system description on real Xen under `qemu-system-aarch64`.
//!
//! Builds the guests, dumps QEMU's own board tree, merges the generated configuration into
//! it, places every boot module with `-device loader`, boots Xen (TCG) and follows the
//! console: each domain's lines are shown prefixed by its name, and the verdict comes from
//! the guests' own `RESULT PASS` / `RESULT FAIL …` lines (or a Xen panic, or the timeout).
//! Xen does not power the machine off when its domains are done, so the QEMU started here
//! is stopped here, and only that one.

use crate::{report_human, write_atomic, write_outputs};
use staticbus_config::compile::{self, Options};
use staticbus_config::model::{CargoImage, GicVersion, ModuleKind, SourceKind, System, XenVersion};
use staticbus_diag::Sources;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// QEMU virt's RAM base.
const VIRT_RAM_BASE: u64 = 0x4000_0000;
/// Lines of Xen's console shown when a boot fails (all of them with `--verbose`).
const XEN_TAIL: usize = 40;
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

/// The QEMU machine: Xen enters at EL2 (`virtualization=on`).
fn machine_args(gic: GicVersion, smp: u32, mem_mib: u64) -> Vec<String> {
    let gic = match gic {
        GicVersion::V2 => 2,
        GicVersion::V3 => 3,
    };
    vec![
        "-machine".into(),
        format!("virt,gic-version={gic},virtualization=on"),
        "-cpu".into(),
        "cortex-a57".into(),
        "-smp".into(),
        smp.to_string(),
        "-m".into(),
        mem_mib.to_string(),
    ]
}

/// RAM for `-m`: the description's one bank at virt's RAM base, or 2 GiB.
fn memory_mib(sys: &System) -> Result<u64, SetupError> {
    match sys.platform.ram.as_slice() {
        [] => Ok(2048),
        [r] if r.base == VIRT_RAM_BASE && r.size % (1 << 20) == 0 => Ok(r.size >> 20),
        _ => Err(setup(
            "`staticbus boot` emulates QEMU's virt board: `[platform] ram` must be one bank at \
             0x4000_0000 whose size is a whole number of MiB",
        )
        .hint("write `ram = [{ base = 0x4000_0000, size = \"2GiB\" }]`")),
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

/// Runs a command to completion within `limit`, killing it after that.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result<(), SetupError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| setup(format!("cannot start {what}: {e}")))?;
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(setup(format!("{what} failed ({st})"))),
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(setup(format!("{what} did not finish in {limit:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(setup(format!("{what}: {e}"))),
        }
    }
}

/// One image to place in host memory.
struct Load {
    domain: String,
    kind: ModuleKind,
    addr: u64,
    size: u64,
    file: PathBuf,
    /// The name the `--uboot` script loads it under.
    script_name: String,
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
    let loads = images(&sys, &base_dir, &out)?;

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
        .stdin(if uboot_cmd.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(qemu_err)
        .spawn()
        .map_err(|e| setup(format!("cannot start {}: {e}", o.qemu)))?;
    let mut qemu = Qemu(child);
    let console = std::fs::File::create(out.join("console.log"))
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
    let lines = spawn_reader(&mut qemu.0, console);
    let mut uboot_input = qemu.0.stdin.take();

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
                if let Some(input) = uboot_input.as_mut() {
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
    drop(qemu); // stops QEMU
    Ok(watch.finish(&verdict, elapsed, &out))
}

/// Lays out the TFTP directory for a boot through U-Boot: Xen, the tree and every module
/// under the names the generated script loads, plus `boot.scr`; returns it and the U-Boot
/// command line that fetches and runs the script.
fn uboot_tree(
    sys: &System,
    xen: &Path,
    loads: &[Load],
    out: &Path,
) -> Result<(PathBuf, String), SetupError> {
    use staticbus_config::uboot;
    let err = |e: uboot::ScriptError| setup(e.msg).hint(e.help);
    let files = compile::uboot_outputs(sys).map_err(err)?;
    let tftp = out.join("tftp");
    let _ = std::fs::remove_dir_all(&tftp);
    let io = |e: std::io::Error| setup(format!("cannot write to `{}`: {e}", tftp.display()));
    std::fs::create_dir_all(&tftp).map_err(io)?;
    write_outputs(out, &files).map_err(io)?;
    std::fs::copy(out.join("boot.scr"), tftp.join("boot.scr")).map_err(io)?;
    std::fs::copy(xen, tftp.join(uboot::XEN_FILE)).map_err(io)?;
    std::fs::copy(out.join("host.dtb"), tftp.join(uboot::DTB_FILE)).map_err(io)?;
    for l in loads {
        std::fs::copy(&l.file, tftp.join(&l.script_name)).map_err(io)?;
    }
    let script_loads = uboot::loads(sys).map_err(err)?;
    // The script itself goes above everything it loads, 2 MiB aligned.
    let end = script_loads
        .iter()
        .map(|l| l.addr.saturating_add(l.size))
        .max()
        .unwrap_or(VIRT_RAM_BASE);
    let at = end.div_ceil(2 << 20) * (2 << 20);
    Ok((
        tftp,
        format!(
            "setenv ipaddr 10.0.2.15; setenv serverip 10.0.2.2; tftpb {at:#x} boot.scr; source {at:#x}"
        ),
    ))
}

/// Builds or finds every module image; checks each fits its reserved size.
fn images(sys: &System, base_dir: &Path, out: &Path) -> Result<Vec<Load>, SetupError> {
    let mut wanted: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    for d in &sys.domains {
        for m in &d.modules {
            if let Some(CargoImage { package, bin }) = &m.cargo {
                wanted.insert((package.clone(), bin.clone()));
            }
        }
    }
    let mut built: BTreeMap<String, PathBuf> = BTreeMap::new();
    if !wanted.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|(_, b)| b.as_str()).collect();
        step(format!(
            "cargo build --release --target aarch64-unknown-none ({}) with the manifests of {}",
            names.join(", "),
            out.display()
        ));
        // Images of one binary built for different systems share cargo's target directory:
        // one boot at a time builds and copies its images out.
        let _lock = build_lock()?;
        let elfs = cargo_build(&wanted, base_dir, out)?;
        let img_dir = out.join("images");
        for (bin, elf) in elfs {
            let raw = elf_to_image(&elf)?;
            let path = img_dir.join(format!("{bin}.bin"));
            write_atomic(&path, &raw)
                .map_err(|e| setup(format!("cannot write `{}`: {e}", path.display())))?;
            eprintln!("    {bin}: {} bytes -> {}", raw.len(), path.display());
            built.insert(bin, path);
        }
    }
    let mut loads = Vec::new();
    // Every domain's modules, dom0's included: Xen needs them all to build the domains.
    for d in &sys.domains {
        for m in &d.modules {
            let file =
                match (&m.cargo, &m.path) {
                    (Some(c), _) => built[&c.bin].clone(),
                    (None, Some(p)) => base_dir.join(p),
                    (None, None) => return Err(setup(format!(
                        "the {} of `{}` has no image to load",
                        m.kind.as_str(),
                        d.name
                    ))
                    .hint(
                        "give `file = \"path\"` or `cargo = { bin = \"…\" }` in the description",
                    )),
                };
            let len = std::fs::metadata(&file)
                .map_err(|e| {
                    setup(format!(
                        "cannot read the {} of `{}` (`{}`): {e}",
                        m.kind.as_str(),
                        d.name,
                        file.display()
                    ))
                })?
                .len();
            if len > m.size {
                return Err(setup(format!(
                    "the {} of `{}` (`{}`, {len} bytes) does not fit the {} bytes reserved for it",
                    m.kind.as_str(),
                    d.name,
                    file.display(),
                    m.size
                ))
                .hint("raise its `size` in the description"));
            }
            let script_name = staticbus_config::uboot::module_file(
                &d.name,
                m.kind,
                m.path.as_deref(),
                m.cargo.as_ref().map(|c| c.bin.as_str()),
            );
            loads.push(Load {
                domain: d.name.clone(),
                kind: m.kind,
                addr: m.addr,
                size: m.size,
                file,
                script_name,
            });
        }
    }
    for l in &loads {
        eprintln!(
            "    {} {}: {} at {:#x} ({:#x} bytes reserved)",
            l.domain,
            l.kind.as_str(),
            l.file.display(),
            l.addr,
            l.size
        );
    }
    Ok(loads)
}

/// An exclusive lock held while guest images are built and copied out of cargo's target
/// directory (`$STATICBUS_CACHE/boot-build.lock`), released when dropped.
fn build_lock() -> Result<std::fs::File, SetupError> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", dir.display())))?;
    let path = dir.join("boot-build.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| setup(format!("cannot open `{}`: {e}", path.display())))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| setup(format!("cannot lock `{}`: {e}", path.display())))?;
    Ok(f)
}

/// `cargo build` of the wanted binaries for `aarch64-unknown-none`; returns each binary's
/// ELF path.
fn cargo_build(
    wanted: &BTreeSet<(Option<String>, String)>,
    dir: &Path,
    manifests: &Path,
) -> Result<BTreeMap<String, PathBuf>, SetupError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "aarch64-unknown-none",
            "--message-format=json-render-diagnostics",
        ])
        .env("STATICBUS_MANIFEST_DIR", manifests);
    let packages: BTreeSet<&String> = wanted.iter().filter_map(|(p, _)| p.as_ref()).collect();
    for p in packages {
        cmd.args(["-p", p]);
    }
    for (_, b) in wanted {
        cmd.args(["--bin", b]);
    }
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| setup(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(setup(format!("cargo build failed ({})", output.status)).hint(
            "see cargo's messages above; `rustup target add aarch64-unknown-none` if the target is missing",
        ));
    }
    let mut found = BTreeMap::new();
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        if wanted.iter().any(|(_, b)| b == name) {
            found.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for (_, b) in wanted {
        if !found.contains_key(b) {
            return Err(setup(format!("cargo built no executable named `{b}`")));
        }
    }
    Ok(found)
}

/// Offset of the arm64 Image header's magic, and the magic (`ARM\x64`).
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";
/// Largest raw image made from an ELF (guards against a far-away stray segment).
const MAX_IMAGE: u64 = 256 << 20;

/// The raw memory image of an ELF's loadable segments from the lowest physical address,
/// like `objcopy -O binary`; it must be an arm64 Image (Xen's kernel probe checks the magic).
fn elf_to_image(path: &Path) -> Result<Vec<u8>, SetupError> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let bytes =
        std::fs::read(path).map_err(|e| setup(format!("cannot read `{}`: {e}", path.display())))?;
    let bad = |why: String| setup(format!("`{}`: {why}", path.display()));
    let elf = ElfFile64::<object::Endianness>::parse(&*bytes)
        .map_err(|e| bad(format!("not a 64-bit ELF: {e}")))?;
    let endian = elf.endian();
    let mut segs = Vec::new();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let data = ph
            .data(endian, &*bytes)
            .map_err(|()| bad("a segment lies outside the file".into()))?;
        segs.push((ph.p_paddr(endian), data));
    }
    let Some(lo) = segs.iter().map(|(a, _)| *a).min() else {
        return Err(bad("no loadable segment".into()));
    };
    let hi = segs
        .iter()
        .map(|(a, d)| a.saturating_add(d.len() as u64))
        .max()
        .unwrap_or(lo);
    if hi - lo > MAX_IMAGE {
        return Err(bad(format!(
            "loadable segments span {:#x} bytes (more than {MAX_IMAGE:#x})",
            hi - lo
        )));
    }
    let mut img = vec![0u8; (hi - lo) as usize];
    for (a, d) in segs {
        let at = (a - lo) as usize;
        img[at..at + d.len()].copy_from_slice(d);
    }
    if img.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) != Some(IMAGE_MAGIC.as_slice()) {
        return Err(bad(
            "no arm64 Image header (magic `ARM\\x64` at 0x38): Xen would not recognise it as a kernel"
                .into(),
        ));
    }
    Ok(img)
}

/// The QEMU this command started; dropping it stops it.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Reads QEMU's serial output line by line (raw copy to `log`).
fn spawn_reader(child: &mut Child, mut log: std::fs::File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = log.write_all(&buf);
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every domU printed `RESULT PASS`.
    Pass,
    /// A domain printed `RESULT FAIL`, Xen panicked, or QEMU exited.
    Fail(String),
    /// The timeout passed first.
    Timeout,
    /// Ctrl-C.
    Interrupted,
}

/// What one console line means for the boot.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Xen printed a panic; its message follows.
    Panic,
    /// The boot is decided.
    Done(Verdict),
}

/// Splits a console line into its origin: `Some(domid)` for a guest line
/// (`(XEN) DOM<id>: text`), `None` for Xen's own, and the text.
pub fn classify(line: &str) -> (Option<u16>, &str) {
    let Some(rest) = line.strip_prefix("(XEN) ") else {
        return (None, line);
    };
    if let Some(tagged) = rest.strip_prefix("DOM") {
        if let Some((id, text)) = tagged.split_once(": ") {
            if let Ok(id) = id.parse::<u16>() {
                return (Some(id), text);
            }
        }
        if let Some(id) = tagged.strip_suffix(':').and_then(|i| i.parse::<u16>().ok()) {
            return (Some(id), "");
        }
    }
    (None, rest)
}

/// Follows the console: prints guest lines by domain name and decides the boot.
pub struct Watch {
    names: BTreeMap<u16, String>,
    passed: BTreeSet<u16>,
    verbose: bool,
    xen_tail: std::collections::VecDeque<String>,
    first_guest: Option<Duration>,
    width: usize,
}

impl Watch {
    /// Watches the domUs `names` (domid → name).
    pub fn new(names: BTreeMap<u16, String>, verbose: bool) -> Watch {
        let width = names.values().map(String::len).max().unwrap_or(3).max(3);
        Watch {
            names,
            passed: BTreeSet::new(),
            verbose,
            xen_tail: Default::default(),
            first_guest: None,
            width,
        }
    }

    /// Takes one console line seen `at` after QEMU started.
    pub fn line(&mut self, line: &str, at: Duration) -> Option<Event> {
        let (dom, text) = classify(line);
        let Some(id) = dom else {
            if self.verbose {
                let from = if line.starts_with("(XEN)") {
                    "xen"
                } else {
                    "console"
                };
                println!("{from:>w$} | {text}", w = self.width);
            }
            self.xen_tail.push_back(text.to_string());
            if self.xen_tail.len() > XEN_TAIL {
                self.xen_tail.pop_front();
            }
            return (text.contains("Panic on CPU") || text.contains("PANIC"))
                .then_some(Event::Panic);
        };
        self.first_guest.get_or_insert(at);
        let name = self
            .names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("dom{id}"));
        println!("{name:>w$} | {text}", w = self.width);
        if text.starts_with("RESULT FAIL") {
            return Some(Event::Done(Verdict::Fail(format!("{name}: {text}"))));
        }
        if text.starts_with("RESULT PASS") {
            self.passed.insert(id);
            if self.names.keys().all(|k| self.passed.contains(k)) {
                return Some(Event::Done(Verdict::Pass));
            }
        }
        None
    }

    /// Prints the summary; returns the exit status.
    fn finish(&self, v: &Verdict, elapsed: Duration, out: &Path) -> u8 {
        let waiting: Vec<&str> = self
            .names
            .iter()
            .filter(|(id, _)| !self.passed.contains(id))
            .map(|(_, n)| n.as_str())
            .collect();
        if !self.verbose && *v != Verdict::Pass {
            eprintln!("--- Xen console (last {} lines) ---", self.xen_tail.len());
            for l in &self.xen_tail {
                eprintln!("{l}");
            }
            eprintln!("---");
        }
        let first = self
            .first_guest
            .map_or("-".to_string(), |t| format!("{:.1}s", t.as_secs_f64()));
        let timing = format!(
            "QEMU start to first guest line {first}, to the end {:.1}s (TCG emulation)",
            elapsed.as_secs_f64()
        );
        let code = match v {
            Verdict::Pass => {
                eprintln!(
                    "boot: PASS: all {} domains printed RESULT PASS; {timing}",
                    self.names.len()
                );
                0
            }
            Verdict::Fail(why) => {
                eprintln!("boot: FAIL: {why}; {timing}");
                1
            }
            Verdict::Timeout => {
                eprintln!(
                    "boot: FAIL: timeout; no RESULT PASS from {}; {timing}",
                    waiting.join(", ")
                );
                1
            }
            Verdict::Interrupted => {
                eprintln!("boot: interrupted; {timing}");
                130
            }
        };
        eprintln!(
            "work directory: {} (console.log, host.dtb, images/)",
            out.display()
        );
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_console_lines() {
        assert_eq!(
            classify("(XEN) DOM2: RESULT PASS x"),
            (Some(2), "RESULT PASS x")
        );
        assert_eq!(classify("(XEN) DOM12:"), (Some(12), ""));
        assert_eq!(
            classify("(XEN) Xen version 4.17"),
            (None, "Xen version 4.17")
        );
        assert_eq!(classify("(XEN) DOMAIN x"), (None, "DOMAIN x"));
        assert_eq!(classify("raw line"), (None, "raw line"));
    }

    fn watch() -> Watch {
        let names = [(1, "ping".to_string()), (2, "pong".to_string())].into();
        Watch::new(names, false)
    }

    #[test]
    fn passes_only_when_every_domain_passed() {
        let mut w = watch();
        let t = Duration::ZERO;
        assert_eq!(w.line("(XEN) DOM1: RESULT PASS rt", t), None);
        assert_eq!(w.line("(XEN) DOM1: RESULT PASS again", t), None);
        assert_eq!(
            w.line("(XEN) DOM2: RESULT PASS", t),
            Some(Event::Done(Verdict::Pass))
        );
    }

    #[test]
    fn a_failing_domain_or_a_panic_decides() {
        let mut w = watch();
        let t = Duration::ZERO;
        assert_eq!(
            w.line("(XEN) DOM2: RESULT FAIL checksum", t),
            Some(Event::Done(Verdict::Fail(
                "pong: RESULT FAIL checksum".into()
            )))
        );
        assert_eq!(w.line("(XEN) Panic on CPU 0:", t), Some(Event::Panic));
        // A guest line that merely mentions a result is not one.
        assert_eq!(w.line("(XEN) DOM1: waiting for RESULT PASS", t), None);
    }

    #[test]
    fn memory_comes_from_the_one_virt_bank() {
        use staticbus_config::model::Range;
        let mut sys = System::new("t", SourceKind::Description);
        assert_eq!(memory_mib(&sys).ok(), Some(2048));
        sys.platform.ram = vec![Range::new(VIRT_RAM_BASE, 1 << 30)];
        assert_eq!(memory_mib(&sys).ok(), Some(1024));
        sys.platform.ram = vec![Range::new(0x8000_0000, 1 << 30)];
        assert!(memory_mib(&sys).is_err());
    }
}
