//! The guest images: Cargo binaries built for `aarch64-unknown-none` with the manifests
//! compiled in (one build at a time), turned into raw arm64 Images, and every module's image
//! checked against the room the description reserves for it.

use super::linux::LinuxImages;
use super::{cache_dir, setup, step, SetupError};
use crate::write_atomic;
use staticbus_config::model::{CargoImage, ModuleKind, System};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One image to place in host memory.
pub(super) struct Load {
    pub(super) domain: String,
    pub(super) kind: ModuleKind,
    pub(super) addr: u64,
    pub(super) size: u64,
    pub(super) file: PathBuf,
    /// The name the `--uboot` script loads it under.
    pub(super) script_name: String,
}

/// Builds or finds every module image; checks each fits its reserved size.
/// The kernel and ramdisk of a Linux domain are `linux`'s (see `super::linux`).
pub(super) fn images(
    sys: &System,
    base_dir: &Path,
    cargo_dir: &super::CargoDir,
    out: &Path,
    linux: &BTreeMap<String, LinuxImages>,
) -> Result<Vec<Load>, SetupError> {
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
        let elfs = cargo_build(&wanted, &cargo_dir.get()?, out)?;
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
            let from_linux = linux.get(&d.name).and_then(|l| match m.kind {
                ModuleKind::Kernel => Some(l.kernel.clone()),
                ModuleKind::Ramdisk => Some(l.initramfs.clone()),
                _ => None,
            });
            let file =
                match (&m.cargo, &m.path) {
                    _ if from_linux.is_some() => from_linux.unwrap_or_default(),
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
    let found = built_executables(&output.stdout, wanted);
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

/// The executables among `wanted` that cargo reported building, by binary name, from the
/// `--message-format=json` lines of `stdout` (shared with the Linux domains' build).
pub(super) fn built_executables(
    stdout: &[u8],
    wanted: &BTreeSet<(Option<String>, String)>,
) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for line in stdout.split(|&b| b == b'\n') {
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
    found
}
