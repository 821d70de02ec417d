//! The staticbus guest runtime in Linux userspace on Xen (dom0less: no dom0, no xenstore).
//!
//! [`LinuxPlatform`] is a [`staticbus_guest::Platform`], the same one the programs use on
//! the emulator and on bare metal, so `staticbus-programs` and the protocol endpoints run
//! on Linux unchanged:
//!
//! * **events** ([`LinuxEvents`]): `/dev/xen/evtchn`, every static port of the manifest
//!   bound with `IOCTL_EVTCHN_BIND_STATIC` (Linux 6.5+) when first used (so that several
//!   processes of a domain can each own their channels), sent with `IOCTL_EVTCHN_NOTIFY`,
//!   fired ports read from the fd and unmasked by writing them back at once; waits block
//!   in `poll()`, and the fd is exposed for a program's own `poll`/`epoll` loop. Port
//!   status (`EVTCHNOP_status`, which [`Channel::verify`](staticbus_guest::Channel::verify)
//!   asks) goes through `/dev/xen/privcmd` when it can be opened (`xen-privcmd` loaded with
//!   `unrestricted=1`: there is no xenstore to restrict it with), else it is `ENOSYS`;
//! * **regions**: each region of the manifest mapped shared from the xen-shmem module's
//!   `/dev/xen-shmem/<id>` (linux/xen-shmem: Normal write-back memory, as the peer maps
//!   it; `/dev/mem` would give Device memory on arm64);
//! * **manifest**: the domain's `manifest.json` of `staticbus build`
//!   (`/staticbus/manifest.json` in the initramfs `staticbus boot` makes).
//!
//! [`LinuxPlatform::open`] checks what it finds against the manifest before anything
//! runs, and each failure is its own [`Error`]: no Xen, a kernel older than 6.5, a module
//! that is not loaded, no `/dev/xen/evtchn`, a region that is missing or differs from the
//! build (size, guest address), a port that Xen says is not connected as built
//! (`EVTCHNOP_status`), or one that does not bind ([`Options::bind_all`]). It never panics.
//!
//! ```no_run
//! use staticbus_guest::Channel;
//! use staticbus_guest_linux::{LinuxPlatform, Options};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let platform = LinuxPlatform::open(&Options::default())?;
//! let ch = Channel::open(&platform, "pingpong")?;
//! ch.notify_all()?;
//! # Ok(()) }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod device;
mod events;
mod system;

pub use device::{Privcmd, IOCTL_EVTCHN_BIND_STATIC, IOCTL_EVTCHN_NOTIFY, IOCTL_PRIVCMD_HYPERCALL};
pub use events::{LinuxEvents, EIO, ETIMEDOUT};
pub use system::{kernel_version, Paths, MIN_KERNEL};

use staticbus_guest::ops::PortState;
use staticbus_guest::{Errno, Events, Platform, Region};
use staticbus_manifest::Manifest;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the initramfs of `staticbus boot` puts the domain's manifest.
pub const MANIFEST_PATH: &str = "/staticbus/manifest.json";

/// Why [`LinuxPlatform::open`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The manifest could not be read or parsed.
    Manifest {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Linux does not run on Xen, or does not see it (`/sys/hypervisor/type`).
    NoXen {
        /// The file read.
        path: PathBuf,
        /// What it said (`None`: it does not exist).
        found: Option<String>,
    },
    /// The kernel is older than [`MIN_KERNEL`]: it cannot bind static event channels.
    KernelTooOld {
        /// `uname -r`.
        release: String,
    },
    /// A kernel module the runtime needs is not loaded.
    ModuleMissing {
        /// `xen-evtchn` or `xen-shmem`.
        module: &'static str,
        /// What it would provide.
        needed_for: PathBuf,
    },
    /// `xen-evtchn` is loaded but its device node is not there.
    NoEvtchnDevice {
        /// `/dev/xen/evtchn`.
        path: PathBuf,
    },
    /// The manifest names a region that Xen did not give this domain.
    RegionMissing {
        /// Its `xen,shm-id`.
        shm_id: String,
        /// The `xen-shmem@…` nodes the guest tree has.
        nodes: Vec<String>,
    },
    /// A region is there but not as built.
    RegionDiffers {
        /// Its `xen,shm-id`.
        shm_id: String,
        /// `size` or `guest address`.
        what: &'static str,
        /// The manifest's value.
        built: u64,
        /// What the xen-shmem module reports (from the guest device tree).
        found: u64,
    },
    /// A static port of the manifest is not what the build says, or does not bind.
    Port {
        /// The local port.
        port: u32,
        /// What was found.
        reason: String,
    },
    /// Any other system error.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        err: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Manifest { path, reason } => {
                write!(f, "manifest {}: {reason}", path.display())
            }
            Error::NoXen { path, found } => write!(
                f,
                "Linux does not see Xen ({}: {}): the domain needs xen,enhanced",
                path.display(),
                found
                    .as_deref()
                    .map_or("missing".into(), |s| format!("{s:?}"))
            ),
            Error::KernelTooOld { release } => write!(
                f,
                "kernel {release} is older than {}.{}: it has no IOCTL_EVTCHN_BIND_STATIC",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            Error::ModuleMissing { module, needed_for } => write!(
                f,
                "module {module} is not loaded (no {}): load {module}.ko first",
                needed_for.display()
            ),
            Error::NoEvtchnDevice { path } => write!(
                f,
                "no {}, though xen-evtchn is loaded: is devtmpfs mounted on /dev?",
                path.display()
            ),
            Error::RegionMissing { shm_id, nodes } => write!(
                f,
                "no region `{shm_id}` from Xen; the guest tree has {} under /reserved-memory \
                 (none: Xen without CONFIG_STATIC_SHM, or another build's manifest)",
                if nodes.is_empty() {
                    "no xen-shmem@ node".to_string()
                } else {
                    nodes.join(", ")
                }
            ),
            Error::RegionDiffers {
                shm_id,
                what,
                built,
                found,
            } => write!(
                f,
                "region `{shm_id}`: {what} is {found:#x}, the manifest says {built:#x} \
                 (booted with another build's host tree?)"
            ),
            Error::Port { port, reason } => write!(f, "event-channel port {port}: {reason}"),
            Error::Io { what, err } => write!(f, "{what}: {err}"),
        }
    }
}

impl std::error::Error for Error {}

/// How [`LinuxPlatform::open`] finds its pieces.
#[derive(Clone, Debug)]
pub struct Options {
    /// The domain's manifest.json (default [`MANIFEST_PATH`]).
    pub manifest: PathBuf,
    /// `/sys`, `/proc`, `/dev`.
    pub paths: Paths,
    /// How long to wait after binding for the bind-time events of the ends Xen left
    /// pending (`initially_pending`), so that `clear_initial` finds them (default 1 s;
    /// they normally arrive within the bind call).
    pub settle: Duration,
    /// Every blocking wait gives up after this long with `ETIMEDOUT` (default: never).
    pub wait_timeout: Option<Duration>,
    /// Bind every port at open (default `false`: each port is bound when first used, so
    /// that several processes of one domain can each use their own channels; a port bound
    /// by one process delivers its events to that process only).
    pub bind_all: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            manifest: MANIFEST_PATH.into(),
            paths: Paths::default(),
            settle: Duration::from_secs(1),
            wait_timeout: None,
            bind_all: false,
        }
    }
}

/// One region, mapped.
#[derive(Clone, Debug)]
pub struct MappedRegion {
    /// `xen,shm-id`.
    pub shm_id: &'static str,
    /// Guest-physical address.
    pub guest_addr: u64,
    /// Length in bytes.
    pub len: usize,
    /// Where this process sees it.
    pub base: *mut u8,
    /// The xen-shmem device node it was mapped from (`/dev/xen-shmem/<id>`).
    pub device: PathBuf,
    /// The open device file, kept for [`LinuxPlatform::region_fd`].
    file: Arc<std::fs::File>,
}

/// What [`LinuxPlatform::open`] found, for the program's first lines.
#[derive(Clone, Debug)]
pub struct Found {
    /// Xen's version (`/sys/hypervisor/version`).
    pub xen: String,
    /// The kernel release.
    pub kernel: String,
    /// True if port status goes through `/dev/xen/privcmd`.
    pub status: bool,
    /// True if every port was checked with `EVTCHNOP_status` at open.
    pub ports_checked: bool,
}

/// A Linux domain's [`Platform`]: see the crate documentation.
#[derive(Debug)]
pub struct LinuxPlatform {
    manifest: &'static Manifest,
    events: LinuxEvents,
    regions: Vec<MappedRegion>,
    found: Found,
}

fn io_err(what: impl Into<String>, e: impl fmt::Display) -> Error {
    Error::Io {
        what: what.into(),
        err: e.to_string(),
    }
}

impl LinuxPlatform {
    /// Loads the manifest, checks the system and binds and maps everything it lists.
    pub fn open(o: &Options) -> Result<Self, Error> {
        let manifest = load_manifest(&o.manifest)?;
        let p = &o.paths;
        let xen = p.xen()?;
        let kernel = p.kernel()?;
        let evtchn = p.evtchn_device()?;
        // Regions first: nothing is bound if one is wrong.
        let mut regions = Vec::new();
        for r in manifest.regions {
            let dev = p.region(r.shm_id, r.guest_addr, r.size)?;
            regions.push(map_region(r.shm_id, r.guest_addr, r.size, &dev)?);
        }
        let privcmd = p.privcmd_device();
        let dev = device::EvtchnDevice::open(&evtchn, Some(&privcmd))
            .map_err(|e| io_err(format!("cannot open {}", evtchn.display()), e))?;
        let status = dev.has_status();
        let mut events = LinuxEvents::new(Box::new(dev));
        events.set_settle(o.settle);
        for e in manifest.evtchns {
            events.allow(e.local_port, e.initially_pending);
        }
        // Each port is a static one connected as the build says (asked of Xen; the
        // evtchn device has no status ioctl, so this needs /dev/xen/privcmd).
        for e in manifest.evtchns.iter().filter(|_| status) {
            let want = PortState::Interdomain {
                remote_dom: e.remote_domid,
                remote_port: e.remote_port,
            };
            match events.status(e.local_port) {
                Ok(st) if st.state == want => {}
                Ok(st) => {
                    return Err(Error::Port {
                        port: e.local_port,
                        reason: format!(
                            "Xen says {:?}, the manifest says connected to {} (domid {}) port {}",
                            st.state, e.remote_domain, e.remote_domid, e.remote_port
                        ),
                    })
                }
                Err(errno) => {
                    return Err(Error::Port {
                        port: e.local_port,
                        reason: format!("EVTCHNOP_status: {errno}"),
                    })
                }
            }
        }
        if o.bind_all {
            events.bind_all().map_err(|(port, errno)| Error::Port {
                port,
                reason: format!(
                    "IOCTL_EVTCHN_BIND_STATIC: {errno} (not a static event channel of this \
                     domain, or bound by another process?)"
                ),
            })?;
        }
        events.set_timeout(o.wait_timeout);
        Ok(LinuxPlatform {
            manifest,
            events,
            regions,
            found: Found {
                xen,
                kernel,
                status,
                ports_checked: status,
            },
        })
    }

    /// The domain's events (also what [`Platform::events`] hands out).
    pub fn linux_events(&self) -> &LinuxEvents {
        &self.events
    }

    /// The regions mapped, in the manifest's order.
    pub fn regions(&self) -> &[MappedRegion] {
        &self.regions
    }

    /// What was found at open.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// A new fd of region `shm_id`'s xen-shmem device (a duplicate of the one it was
    /// mapped from), which another process can `mmap` with `MAP_SHARED` at offsets from
    /// 0 to the region's size: what a vhost-user daemon gets as its memory table
    /// (docs/linux.md, "Linux as a virtio backend"). `None` for a region the manifest does
    /// not list; the `dup` error otherwise.
    pub fn region_fd(&self, shm_id: &str) -> Option<std::io::Result<OwnedFd>> {
        let r = self.regions.iter().find(|r| r.shm_id == shm_id)?;
        Some(r.file.try_clone().map(OwnedFd::from))
    }
}

fn load_manifest(path: &Path) -> Result<&'static Manifest, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Manifest {
        path: path.into(),
        reason: e.to_string(),
    })?;
    staticbus_manifest::json::load(&text).map_err(|reason| Error::Manifest {
        path: path.into(),
        reason,
    })
}

fn map_region(
    shm_id: &'static str,
    guest_addr: u64,
    size: u64,
    dev: &Path,
) -> Result<MappedRegion, Error> {
    let len = usize::try_from(size).map_err(|e| io_err(format!("region `{shm_id}`"), e))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| io_err(format!("cannot open {}", dev.display()), e))?;
    // SAFETY: a new shared mapping at an address the kernel chooses; it replaces nothing.
    // The xen-shmem module maps the region Normal write-back or refuses.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io_err(
            format!("mmap {}", dev.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // The mapping is never unmapped (Regions may be copied freely); the file stays open
    // for region_fd.
    Ok(MappedRegion {
        shm_id,
        guest_addr,
        len,
        base: p.cast(),
        device: dev.to_path_buf(),
        file: Arc::new(f),
    })
}

impl Platform for LinuxPlatform {
    type Events<'a> = &'a LinuxEvents;

    fn events(&self) -> &LinuxEvents {
        &self.events
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        let r = self.regions.iter().find(|r| r.shm_id == shm_id)?;
        // SAFETY: a MAP_SHARED mapping of the whole region made by `open` from the
        // xen-shmem module (Normal write-back memory, valid for volatile and atomic
        // accesses), never unmapped while the process lives; this crate never makes
        // references into it, and other domains writing it is what Region expects.
        unsafe { Region::new(r.base, r.len) }
    }

    fn manifest(&self) -> &Manifest {
        self.manifest
    }

    fn yield_now(&self) -> Result<(), Errno> {
        // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
        unsafe { libc::sched_yield() };
        Ok(())
    }
}
