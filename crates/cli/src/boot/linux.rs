//! Linux domains (`linux = { … }` in the description): their kernel, their programs built
//! for `aarch64-unknown-linux-musl` and the initramfs made here (newc cpio, the `cpio`
//! crate), with the domain's `manifest.json` of this build inside.
//!
//! ```text
//! /init                             linux-init (staticbus-linux-domains)
//! /bin/<program>                    each program of `linux.programs`
//! /staticbus/manifest.json          <out>/domains/<domain>/manifest.json
//! /lib/modules/10-xen-evtchn.ko.xz  the kernel's own /dev/xen/evtchn driver
//! /lib/modules/20-xen-privcmd.ko.xz the kernel's privcmd (port status), with
//! /lib/modules/20-xen-privcmd.ko.xz.params   "unrestricted=1" (no xenstore to wait for)
//! /lib/modules/30-xen-shmem.ko      linux/xen-shmem, built against the kernel's headers
//! /bin/<daemon>                     the vhost-user daemon of each `[[virtio]]` device the
//!                                   domain serves (`serve = { vhost-user = … }`), see
//!                                   [`daemon_binary`]
//! /lib/…, /usr/lib/…                a dynamically linked daemon's loader and libraries
//!                                   (qemu-storage-daemon: Debian's arm64 build)
//! /dev/console, /proc, /sys         for the kernel and /init
//! ```
//!
//! The Debian kernel comes from `scripts/linux/fetch-kernel.sh` (cached; it prints its
//! folder) and the module from `scripts/linux/build-module.sh` (vermagic checked). A
//! kernel given as a file gets the module built against the same cache's headers, so it
//! must be that kernel's build (the module would not load otherwise, and `/init` says so).

use super::{setup, step, SetupError};
use cpio::newc::{Builder, ModeFileType};
use staticbus_config::model::{CargoImage, LinuxKernel, System, VirtioServe};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Rust target of Linux programs.
pub(super) const TARGET: &str = "aarch64-unknown-linux-musl";
/// The package and binary of the initramfs's `/init`.
const INIT: (&str, &str) = ("staticbus-linux-domains", "linux-init");

/// The images of one Linux domain.
pub(super) struct LinuxImages {
    /// The kernel Image.
    pub(super) kernel: PathBuf,
    /// The initramfs made for it.
    pub(super) initramfs: PathBuf,
}

/// This repository's root (the scripts and linux/xen-shmem are there).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a script of scripts/linux that prints one path on stdout.
fn script(name: &str, args: &[&Path]) -> Result<PathBuf, SetupError> {
    let path = repo().join("scripts/linux").join(name);
    let o = Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| setup(format!("cannot run `{}`: {e}", path.display())))?;
    if !o.status.success() {
        return Err(setup(format!("`{}` failed ({})", path.display(), o.status))
            .hint("see its messages above"));
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or("").trim();
    if line.is_empty() {
        return Err(setup(format!("`{}` printed no path", path.display())));
    }
    Ok(PathBuf::from(line))
}

/// Kernel, programs and initramfs of every Linux domain, by domain name.
pub(super) fn prepare(
    sys: &System,
    base_dir: &Path,
    cargo_dir: &super::CargoDir,
    out: &Path,
) -> Result<BTreeMap<String, LinuxImages>, SetupError> {
    let linux: Vec<_> = sys
        .domains
        .iter()
        .filter_map(|d| Some((d, d.linux.as_ref()?)))
        .collect();
    let mut done = BTreeMap::new();
    if linux.is_empty() {
        return Ok(done);
    }
    step("Linux kernel and modules (scripts/linux/fetch-kernel.sh, build-module.sh)");
    let kdir = script("fetch-kernel.sh", &[])?;
    let shmem = script("build-module.sh", &[&kdir])?;
    let drivers = kdir.join("modules/kernel/drivers/xen");
    let modules = [
        ("10-xen-evtchn.ko.xz", drivers.join("xen-evtchn.ko.xz"), ""),
        (
            "20-xen-privcmd.ko.xz",
            drivers.join("xen-privcmd.ko.xz"),
            "unrestricted=1",
        ),
        ("30-xen-shmem.ko", shmem, ""),
    ];
    for (_, m, _) in &modules {
        if !m.is_file() {
            return Err(setup(format!("no kernel module `{}`", m.display())));
        }
    }

    let mut wanted: BTreeSet<(Option<String>, String)> = BTreeSet::new();
    wanted.insert((Some(INIT.0.into()), INIT.1.into()));
    for (_, l) in &linux {
        for CargoImage { package, bin } in &l.programs {
            wanted.insert((package.clone(), bin.clone()));
        }
    }
    let names: Vec<&str> = wanted.iter().map(|(_, b)| b.as_str()).collect();
    step(format!(
        "cargo build --release --target {TARGET} ({}), static",
        names.join(", ")
    ));
    let bins = cargo_build(&wanted, &cargo_dir.get()?)?;

    for (d, l) in linux {
        let kernel = match &l.kernel {
            LinuxKernel::Debian => kdir.join("Image"),
            LinuxKernel::File(f) => base_dir.join(f),
        };
        let manifest = out.join("domains").join(&d.name).join("manifest.json");
        let mut members: Vec<(String, Member)> = vec![
            ("dev/console".into(), Member::CharDev(5, 1)),
            ("proc".into(), Member::Dir),
            ("sys".into(), Member::Dir),
            ("init".into(), Member::file(&bins[INIT.1], true)?),
            (
                "staticbus/manifest.json".into(),
                Member::file(&manifest, false)?,
            ),
        ];
        for CargoImage { bin, .. } in &l.programs {
            members.push((format!("bin/{bin}"), Member::file(&bins[bin], true)?));
        }
        let mut daemons = Vec::new();
        for v in sys
            .virtio
            .iter()
            .filter(|v| sys.domains[v.backend].name == d.name)
        {
            let VirtioServe::VhostUser { program, .. } = &v.serve else {
                continue;
            };
            let name = daemon_name(program);
            if daemons.contains(&name) {
                continue;
            }
            if l.programs.iter().any(|c| c.bin == name) {
                return Err(setup(format!(
                    "virtio device `{}` of `{}`: its daemon `{name}` has the name of one of the domain's programs",
                    v.name, d.name
                )));
            }
            let DaemonFiles { bin, root } = daemon_binary(program, base_dir)?;
            eprintln!(
                "    {}: virtio device `{}`: daemon {}",
                d.name,
                v.name,
                bin.display()
            );
            members.push((format!("bin/{name}"), Member::file(&bin, true)?));
            if let Some(root) = root {
                let libs = library_members(&root)?;
                eprintln!(
                    "    {}: its dynamic loader and {} libraries from {}",
                    d.name,
                    libs.len().saturating_sub(1),
                    root.display()
                );
                for (path, m) in libs {
                    if !members.iter().any(|(p, _)| *p == path) {
                        members.push((path, m));
                    }
                }
            }
            daemons.push(name);
        }
        for (name, path, params) in &modules {
            members.push((format!("lib/modules/{name}"), Member::file(path, false)?));
            if !params.is_empty() {
                members.push((
                    format!("lib/modules/{name}.params"),
                    Member::File(format!("{params}\n").into_bytes(), false),
                ));
            }
        }
        let dir = out.join("linux").join(&d.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| setup(format!("cannot create `{}`: {e}", dir.display())))?;
        let initramfs = dir.join("initramfs.cpio");
        let bytes =
            archive(&members).map_err(|e| setup(format!("initramfs of `{}`: {e}", d.name)))?;
        crate::write_atomic(&initramfs, &bytes)
            .map_err(|e| setup(format!("cannot write `{}`: {e}", initramfs.display())))?;
        eprintln!(
            "    {}: kernel {}, initramfs {} ({} bytes: init, {}, manifest.json, 3 modules)",
            d.name,
            kernel.display(),
            initramfs.display(),
            bytes.len(),
            l.programs
                .iter()
                .map(|c| c.bin.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        done.insert(d.name.clone(), LinuxImages { kernel, initramfs });
    }
    Ok(done)
}

/// The name a daemon program has in the initramfs's `/bin`: its file name.
pub(super) fn daemon_name(program: &str) -> String {
    Path::new(program)
        .file_name()
        .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned())
}

/// A daemon for a Linux domain's initramfs.
pub(super) struct DaemonFiles {
    /// The executable (it becomes `/bin/<file name>`).
    pub bin: PathBuf,
    /// For a dynamically linked one: a root folder holding its loader and libraries at
    /// the paths the loader searches (`lib/`, `usr/lib/`; copied as they are).
    pub root: Option<PathBuf>,
}

/// The aarch64 Linux executable of a `[[virtio]]` device's vhost-user daemon, served by a
/// Linux domain (`linux-vhost-bridge` starts `/bin/<file name>`):
///
/// 1. `$STATICBUS_LINUX_DAEMON_<NAME>` (the file name upper-cased, `-` and `.` as `_`:
///    `STATICBUS_LINUX_DAEMON_VHOST_DEVICE_RNG`), a path to a static executable;
/// 2. a program given as a path (it has a `/`): that file, relative to the description;
/// 3. `vhost-device-<kind>` (rust-vmm's daemons): `scripts/virtio/install-vhost-device.sh
///    --target aarch64-unknown-linux-musl <kind>` (pinned, cached; minutes the first time);
/// 4. `qemu-storage-daemon`: Debian's arm64 build with its libraries,
///    `scripts/virtio/fetch-qsd-arm64.sh` (pinned .debs, SHA256-checked, cached).
pub(super) fn daemon_binary(program: &str, base_dir: &Path) -> Result<DaemonFiles, SetupError> {
    let found = |bin: PathBuf| DaemonFiles { bin, root: None };
    daemon_path(program, base_dir).map(found).or_else(|e| {
        if daemon_name(program) != "qemu-storage-daemon" || program.contains('/') {
            return Err(e);
        }
        if std::env::var_os("STATICBUS_LINUX_DAEMON_QEMU_STORAGE_DAEMON").is_some() {
            return Err(e);
        }
        let root = script_output("scripts/virtio/fetch-qsd-arm64.sh", &[])?;
        Ok(DaemonFiles {
            bin: root.join("usr/bin/qemu-storage-daemon"),
            root: Some(root),
        })
    })
}

/// Runs `script` (relative to the repository) with `args`; its last line of output, a
/// path.
fn script_output(script: &str, args: &[&str]) -> Result<PathBuf, SetupError> {
    let path = repo().join(script);
    let o = Command::new("bash")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| setup(format!("cannot run `{}`: {e}", path.display())))?;
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or("").trim();
    if !o.status.success() || line.is_empty() {
        return Err(setup(format!(
            "`{} {}` failed ({})",
            path.display(),
            args.join(" "),
            o.status
        ))
        .hint("see its messages above"));
    }
    Ok(PathBuf::from(line))
}

/// Every regular file under `root`'s `lib/` and `usr/lib/` as an initramfs member at the
/// same path (executable: the kernel opens the loader as a program).
fn library_members(root: &Path) -> Result<Vec<(String, Member)>, SetupError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Member)>) -> Result<(), SetupError> {
        let rd = std::fs::read_dir(dir)
            .map_err(|e| setup(format!("cannot read `{}`: {e}", dir.display())))?;
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, Member::file(&p, true)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for sub in ["lib", "usr/lib"] {
        let d = root.join(sub);
        if d.is_dir() {
            walk(root, &d, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(setup(format!(
            "`{}` has no libraries (lib/, usr/lib/)",
            root.display()
        )));
    }
    Ok(out)
}

/// [`daemon_binary`]'s first three ways: a static executable.
fn daemon_path(program: &str, base_dir: &Path) -> Result<PathBuf, SetupError> {
    let name = daemon_name(program);
    let var = format!(
        "STATICBUS_LINUX_DAEMON_{}",
        name.to_uppercase().replace(['-', '.'], "_")
    );
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(setup(format!("{var}={}: not a file", p.display())))
        };
    }
    if program.contains('/') {
        let p = base_dir.join(program);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(
                setup(format!("vhost-user daemon `{}`: no such file", p.display())).hint(
                    "give a static aarch64 Linux executable (musl), relative to the description",
                ),
            )
        };
    }
    if let Some(kind) = name.strip_prefix("vhost-device-") {
        return script_output(
            "scripts/virtio/install-vhost-device.sh",
            &["--target", TARGET, kind],
        );
    }
    Err(setup(format!(
        "vhost-user daemon `{program}`: staticbus does not know where to get it for a Linux domain"
    ))
    .hint(format!(
        "give a path to a static aarch64 Linux executable, or set {var}"
    )))
}

/// `cargo build` of the Linux programs (static musl executables, linked by
/// `aarch64-linux-gnu-gcc` unless the environment names another linker, stripped).
fn cargo_build(
    wanted: &BTreeSet<(Option<String>, String)>,
    dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, SetupError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols");
    let linker = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER";
    if std::env::var_os(linker).is_none() {
        cmd.env(linker, "aarch64-linux-gnu-gcc");
    }
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
        return Err(setup(format!(
            "cargo build for {TARGET} failed ({})",
            output.status
        ))
        .hint(format!(
            "see cargo's messages above; `rustup target add {TARGET}` and \
                 `apt-get install gcc-aarch64-linux-gnu` if the target or the linker is missing"
        )));
    }
    let found = super::images::built_executables(&output.stdout, wanted);
    for (_, b) in wanted {
        if !found.contains_key(b) {
            return Err(setup(format!(
                "cargo built no executable named `{b}` for {TARGET}"
            )));
        }
    }
    Ok(found)
}

/// One member of the archive.
pub(super) enum Member {
    /// A directory.
    Dir,
    /// A regular file: its bytes, executable or not.
    File(Vec<u8>, bool),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

impl Member {
    fn file(path: &Path, exec: bool) -> Result<Member, SetupError> {
        std::fs::read(path)
            .map(|b| Member::File(b, exec))
            .map_err(|e| setup(format!("cannot read `{}`: {e}", path.display())))
    }
}

/// A newc cpio archive of `members` (parent directories added first, once each).
pub(super) fn archive(members: &[(String, Member)]) -> io::Result<Vec<u8>> {
    let mut w: Vec<u8> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut ino = 0u32;
    let mut next = || {
        ino += 1;
        ino
    };
    let dir = |w: Vec<u8>, path: &str, ino: u32| {
        Builder::new(path)
            .ino(ino)
            .mode(0o755)
            .set_mode_file_type(ModeFileType::Directory)
            .nlink(2)
            .write(w, 0)
            .finish()
    };
    for (path, m) in members {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            if seen.insert(parent.clone()) {
                w = dir(w, &parent, next())?;
            }
        }
        if !seen.insert(path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{path}` twice in the archive"),
            ));
        }
        w = match m {
            Member::Dir => dir(w, path, next())?,
            Member::CharDev(major, minor) => Builder::new(path)
                .ino(next())
                .mode(0o600)
                .set_mode_file_type(ModeFileType::Char)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .write(w, 0)
                .finish()?,
            Member::File(data, exec) => {
                let len = u32::try_from(data.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("`{path}`: over 4 GiB"))
                })?;
                let mut fw = Builder::new(path)
                    .ino(next())
                    .mode(if *exec { 0o755 } else { 0o644 })
                    .set_mode_file_type(ModeFileType::Regular)
                    .write(w, len);
                fw.write_all(data)?;
                fw.finish()?
            }
        };
    }
    cpio::newc::trailer(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_reads_back_with_parents_first() {
        let a = archive(&[
            ("dev/console".into(), Member::CharDev(5, 1)),
            ("init".into(), Member::File(b"#!".to_vec(), true)),
            (
                "staticbus/manifest.json".into(),
                Member::File(b"{}".to_vec(), false),
            ),
        ])
        .unwrap();
        let mut r = io::Cursor::new(a);
        let mut names = Vec::new();
        loop {
            let mut e = cpio::NewcReader::new(r).unwrap();
            if e.entry().is_trailer() {
                break;
            }
            let mut body = Vec::new();
            io::Read::read_to_end(&mut e, &mut body).unwrap();
            names.push((e.entry().name().to_string(), e.entry().mode(), body));
            r = e.finish().unwrap();
        }
        let got: Vec<(&str, u32)> = names.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
        assert_eq!(
            got,
            [
                ("dev", 0o40755),
                ("dev/console", 0o20600),
                ("init", 0o100755),
                ("staticbus", 0o40755),
                ("staticbus/manifest.json", 0o100644)
            ]
        );
        assert_eq!(names[4].2, b"{}");
        assert!(archive(&[("a".into(), Member::Dir), ("a".into(), Member::Dir)]).is_err());
    }
}
