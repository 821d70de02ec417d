//! What the runtime finds on the Linux system, each failure with its own [`Error`]: Xen
//! (`/sys/hypervisor`), the kernel release, the modules, the regions of the xen-shmem
//! module (`/sys/class/misc/xen-shmem-<id>`).

use crate::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the runtime looks: `/sys`, `/proc` and `/dev` on a real system, folders of a
/// test fixture on the host.
#[derive(Clone, Debug)]
pub struct Paths {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// devtmpfs (`/dev`).
    pub dev: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            sys: "/sys".into(),
            proc: "/proc".into(),
            dev: "/dev".into(),
        }
    }
}

/// The oldest kernel with `IOCTL_EVTCHN_BIND_STATIC`.
pub const MIN_KERNEL: (u32, u32) = (6, 5);

pub(crate) fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\0', ' ']).to_string())
}

fn hex(s: &str) -> Option<u64> {
    let t = s.trim();
    u64::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok()
}

/// (major, minor) of a release such as `6.12.118+deb12-arm64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Paths {
    /// Checks that Linux runs on Xen; returns Xen's version (`4.20.4-pre`).
    pub fn xen(&self) -> Result<String, Error> {
        let hv = self.sys.join("hypervisor");
        let found = read_trim(&hv.join("type"));
        if found.as_deref() != Some("xen") {
            return Err(Error::NoXen {
                path: hv.join("type"),
                found,
            });
        }
        let part = |n: &str| read_trim(&hv.join("version").join(n)).unwrap_or_default();
        Ok(format!(
            "{}.{}{}",
            part("major"),
            part("minor"),
            part("extra")
        ))
    }

    /// The kernel release; an error if it is older than [`MIN_KERNEL`].
    pub fn kernel(&self) -> Result<String, Error> {
        let path = self.proc.join("sys/kernel/osrelease");
        let release = read_trim(&path).ok_or_else(|| Error::Io {
            what: format!("cannot read {}", path.display()),
            err: "missing (is /proc mounted?)".into(),
        })?;
        match kernel_version(&release) {
            Some(v) if v >= MIN_KERNEL => Ok(release),
            _ => Err(Error::KernelTooOld { release }),
        }
    }

    /// True if the module `name` (as in /sys/module: `xen_evtchn`) is loaded or built in
    /// with a sysfs entry.
    pub fn module_loaded(&self, name: &str) -> bool {
        self.sys.join("module").join(name).is_dir()
    }

    /// `/dev/xen/evtchn`, or why it is not there.
    pub fn evtchn_device(&self) -> Result<PathBuf, Error> {
        let path = self.dev.join("xen/evtchn");
        if path.exists() {
            return Ok(path);
        }
        if !self.module_loaded("xen_evtchn") {
            return Err(Error::ModuleMissing {
                module: "xen-evtchn",
                needed_for: path,
            });
        }
        Err(Error::NoEvtchnDevice { path })
    }

    /// `/dev/xen/privcmd`.
    pub fn privcmd_device(&self) -> PathBuf {
        self.dev.join("xen/privcmd")
    }

    /// The `xen-shmem@…` nodes of the guest tree's `/reserved-memory`.
    fn shmem_nodes(&self) -> Vec<String> {
        let dir = self.proc.join("device-tree/reserved-memory");
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("xen-shmem@"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The region `shm_id` as the xen-shmem module offers it, checked against the
    /// manifest's guest address and size; returns its device node.
    pub fn region(&self, shm_id: &str, guest_addr: u64, size: u64) -> Result<PathBuf, Error> {
        let sys = self.sys.join(format!("class/misc/xen-shmem-{shm_id}"));
        if !sys.is_dir() {
            if !self.module_loaded("xen_shmem") {
                return Err(Error::ModuleMissing {
                    module: "xen-shmem",
                    needed_for: self.dev.join("xen-shmem").join(shm_id),
                });
            }
            return Err(Error::RegionMissing {
                shm_id: shm_id.into(),
                nodes: self.shmem_nodes(),
            });
        }
        for (what, file, built) in [
            ("guest address", "phys_addr", guest_addr),
            ("size", "size", size),
        ] {
            let path = sys.join(file);
            let found = read_trim(&path)
                .and_then(|s| hex(&s))
                .ok_or_else(|| Error::Io {
                    what: format!("region `{shm_id}`: cannot read {}", path.display()),
                    err: "missing or not a hex number".into(),
                })?;
            if found != built {
                return Err(Error::RegionDiffers {
                    shm_id: shm_id.into(),
                    what,
                    built,
                    found,
                });
            }
        }
        let dev = self.dev.join("xen-shmem").join(shm_id);
        if !dev.exists() {
            return Err(Error::Io {
                what: format!("region `{shm_id}`: no {}", dev.display()),
                err: format!("{} exists: is devtmpfs mounted on /dev?", sys.display()),
            });
        }
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Paths) {
        let t = tempfile::tempdir().unwrap();
        let p = Paths {
            sys: t.path().join("sys"),
            proc: t.path().join("proc"),
            dev: t.path().join("dev"),
        };
        (t, p)
    }

    fn put(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.12.118+deb12-arm64"), Some((6, 12)));
        assert_eq!(kernel_version("5.10.0-28-arm64"), Some((5, 10)));
        assert!(kernel_version("6.1.0").unwrap() < MIN_KERNEL);
        assert_eq!(kernel_version("linux"), None);
    }

    #[test]
    fn no_xen_is_its_own_error() {
        let (_t, p) = fixture();
        let e = p.xen().unwrap_err();
        assert!(matches!(e, Error::NoXen { found: None, .. }), "{e}");
        assert!(e.to_string().contains("xen,enhanced"), "{e}");
        put(&p.sys.join("hypervisor/type"), "kvm\n");
        assert!(matches!(p.xen(), Err(Error::NoXen { found: Some(ref k), .. }) if k == "kvm"));
        put(&p.sys.join("hypervisor/type"), "xen\n");
        put(&p.sys.join("hypervisor/version/major"), "4\n");
        put(&p.sys.join("hypervisor/version/minor"), "20\n");
        put(&p.sys.join("hypervisor/version/extra"), ".4-pre\n");
        assert_eq!(p.xen().unwrap(), "4.20.4-pre");
    }

    #[test]
    fn an_old_kernel_is_its_own_error() {
        let (_t, p) = fixture();
        put(&p.proc.join("sys/kernel/osrelease"), "6.1.0-21-arm64\n");
        let e = p.kernel().unwrap_err();
        assert!(matches!(e, Error::KernelTooOld { .. }), "{e}");
        assert!(e.to_string().contains("6.5"), "{e}");
        put(
            &p.proc.join("sys/kernel/osrelease"),
            "6.12.118+deb12-arm64\n",
        );
        assert_eq!(p.kernel().unwrap(), "6.12.118+deb12-arm64");
    }

    #[test]
    fn a_missing_evtchn_device_says_whether_the_module_is_loaded() {
        let (_t, p) = fixture();
        let e = p.evtchn_device().unwrap_err();
        assert!(
            matches!(
                e,
                Error::ModuleMissing {
                    module: "xen-evtchn",
                    ..
                }
            ),
            "{e}"
        );
        fs::create_dir_all(p.sys.join("module/xen_evtchn")).unwrap();
        let e = p.evtchn_device().unwrap_err();
        assert!(matches!(e, Error::NoEvtchnDevice { .. }), "{e}");
        put(&p.dev.join("xen/evtchn"), "");
        assert_eq!(p.evtchn_device().unwrap(), p.dev.join("xen/evtchn"));
    }

    #[test]
    fn regions_are_checked_against_the_manifest() {
        let (_t, p) = fixture();
        let e = p.region("pingpong", 0x800_0000, 0x1000).unwrap_err();
        assert!(
            matches!(
                e,
                Error::ModuleMissing {
                    module: "xen-shmem",
                    ..
                }
            ),
            "{e}"
        );
        fs::create_dir_all(p.sys.join("module/xen_shmem")).unwrap();
        fs::create_dir_all(p.proc.join("device-tree/reserved-memory/xen-shmem@9000000")).unwrap();
        let e = p.region("pingpong", 0x800_0000, 0x1000).unwrap_err();
        assert!(
            matches!(e, Error::RegionMissing { ref nodes, .. } if nodes == &["xen-shmem@9000000"]),
            "{e}"
        );
        let sys = p.sys.join("class/misc/xen-shmem-pingpong");
        put(&sys.join("phys_addr"), "0x0000000008000000\n");
        put(&sys.join("size"), "0x2000\n");
        let e = p.region("pingpong", 0x800_0000, 0x1000).unwrap_err();
        assert!(
            matches!(
                e,
                Error::RegionDiffers {
                    what: "size",
                    built: 0x1000,
                    found: 0x2000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("0x1000"), "{e}");
        put(&sys.join("size"), "0x1000\n");
        let e = p.region("pingpong", 0x900_0000, 0x1000).unwrap_err();
        assert!(
            matches!(
                e,
                Error::RegionDiffers {
                    what: "guest address",
                    ..
                }
            ),
            "{e}"
        );
        let e = p.region("pingpong", 0x800_0000, 0x1000).unwrap_err();
        assert!(e.to_string().contains("devtmpfs"), "{e}");
        put(&p.dev.join("xen-shmem/pingpong"), "");
        assert_eq!(
            p.region("pingpong", 0x800_0000, 0x1000).unwrap(),
            p.dev.join("xen-shmem/pingpong")
        );
    }
}
