//! The kernel interfaces: `/dev/xen/evtchn` (the event channels) and `/dev/xen/privcmd`
//! (only for `EVTCHNOP_status`), behind [`Device`] so that the events logic is tested on
//! the host with a fake.

use staticbus_guest::ops::{self, PortStatus};
use staticbus_guest::{Errno, Hypercall};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// `_IOC(_IOC_NONE, 'E', 4, sizeof(struct ioctl_evtchn_notify))` (include/uapi/xen/evtchn.h).
pub const IOCTL_EVTCHN_NOTIFY: u32 = 0x0004_4504;
/// `_IOC(_IOC_NONE, 'E', 7, sizeof(struct ioctl_evtchn_bind))`, Linux 6.5+: bind a static
/// event channel (one Xen bound at boot) to this file.
pub const IOCTL_EVTCHN_BIND_STATIC: u32 = 0x0004_4507;
/// `_IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))` (include/uapi/xen/privcmd.h).
pub const IOCTL_PRIVCMD_HYPERCALL: u32 = 0x0030_5000;
/// `__HYPERVISOR_event_channel_op`.
const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;

/// What the events logic needs of the kernel.
pub(crate) trait Device: Send + Sync {
    /// `IOCTL_EVTCHN_BIND_STATIC`.
    fn bind_static(&self, port: u32) -> io::Result<()>;
    /// `IOCTL_EVTCHN_NOTIFY`.
    fn notify(&self, port: u32) -> io::Result<()>;
    /// Non-blocking `read()` of fired ports into `buf`; `Ok(0)` when there are none.
    fn read(&self, buf: &mut [u32]) -> io::Result<usize>;
    /// `write()` of ports just read: re-enables them.
    fn unmask(&self, ports: &[u32]) -> io::Result<()>;
    /// Sleeps until the device is readable or `timeout` passed (`Ok(false)`).
    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool>;
    /// The file, if there is one.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// `EVTCHNOP_status` of a local port.
    fn status(&self, port: u32) -> Result<PortStatus, Errno>;
}

impl<D: Device + ?Sized> Device for std::sync::Arc<D> {
    fn bind_static(&self, port: u32) -> io::Result<()> {
        (**self).bind_static(port)
    }
    fn notify(&self, port: u32) -> io::Result<()> {
        (**self).notify(port)
    }
    fn read(&self, buf: &mut [u32]) -> io::Result<usize> {
        (**self).read(buf)
    }
    fn unmask(&self, ports: &[u32]) -> io::Result<()> {
        (**self).unmask(ports)
    }
    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        (**self).wait_readable(timeout)
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).fd()
    }
    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        (**self).status(port)
    }
}

/// `/dev/xen/evtchn`, opened non-blocking, and `/dev/xen/privcmd` if it could be opened.
pub(crate) struct EvtchnDevice {
    file: File,
    privcmd: Option<Privcmd>,
}

impl EvtchnDevice {
    /// Opens the evtchn device at `path` and, if it opens, the privcmd device.
    pub(crate) fn open(path: &Path, privcmd: Option<&Path>) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        let privcmd = privcmd.and_then(|p| Privcmd::open(p).ok());
        Ok(EvtchnDevice { file, privcmd })
    }

    /// True if `EVTCHNOP_status` goes through `/dev/xen/privcmd`.
    pub(crate) fn has_status(&self) -> bool {
        self.privcmd.is_some()
    }

    fn port_ioctl(&self, req: u32, port: u32) -> io::Result<()> {
        let mut arg: libc::c_uint = port;
        // SAFETY: both evtchn ioctls used here take a pointer to one `unsigned int` (the
        // port), which lives for the call; the fd is ours.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                req as _,
                &mut arg as *mut libc::c_uint,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Device for EvtchnDevice {
    fn bind_static(&self, port: u32) -> io::Result<()> {
        self.port_ioctl(IOCTL_EVTCHN_BIND_STATIC, port)
    }

    fn notify(&self, port: u32) -> io::Result<()> {
        self.port_ioctl(IOCTL_EVTCHN_NOTIFY, port)
    }

    fn read(&self, buf: &mut [u32]) -> io::Result<usize> {
        loop {
            // SAFETY: reads at most `size_of_val(buf)` bytes into `buf`, which is valid for
            // writes of that size; the fd is ours.
            let n = unsafe {
                libc::read(
                    self.file.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    size_of_val(buf),
                )
            };
            if n >= 0 {
                return Ok(n as usize / 4);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    fn unmask(&self, ports: &[u32]) -> io::Result<()> {
        let bytes = size_of_val(ports);
        // SAFETY: writes `bytes` bytes from `ports`, which is valid for reads of that size.
        let n = unsafe { libc::write(self.file.as_raw_fd(), ports.as_ptr().cast(), bytes) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != bytes {
            return Err(io::Error::other(format!(
                "unmasking wrote {n} of {bytes} bytes"
            )));
        }
        Ok(())
    }

    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => -1,
            // Round up, so that a short timeout does not become a busy loop.
            Some(t) => libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n >= 0 {
                return Ok(n > 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        match &self.privcmd {
            Some(p) => ops::evtchn_status(p, port),
            None => Err(Errno::ENOSYS),
        }
    }
}

/// `/dev/xen/privcmd`: raw hypercalls from userspace (`IOCTL_PRIVCMD_HYPERCALL`). Used for
/// `EVTCHNOP_status` only, which the evtchn device has no ioctl for; every other command
/// is refused with `-ENOSYS` without reaching Xen.
///
/// On a domU the kernel restricts privcmd to a target domain that it learns from
/// xenstore; with no xenstore (dom0less) the module must be loaded with
/// `unrestricted=1` or opening it waits for ever.
pub struct Privcmd {
    file: File,
}

/// `struct privcmd_hypercall`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

impl Privcmd {
    /// Opens the privcmd device.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)?;
        Ok(Privcmd { file })
    }
}

impl Hypercall for Privcmd {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        if cmd != staticbus_abi::evtchn::OP_STATUS {
            return Errno::ENOSYS.to_ret();
        }
        let mut call = PrivcmdHypercall {
            op: HYPERVISOR_EVENT_CHANNEL_OP,
            arg: [u64::from(cmd), arg as u64, 0, 0, 0],
        };
        // SAFETY: the ioctl takes a pointer to a `privcmd_hypercall`, live for the call.
        // The kernel passes `arg` (the caller's `EvtchnStatus`, valid for reads and writes
        // for the call by the trait's contract) to Xen, which reads and writes only that
        // structure.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IOCTL_PRIVCMD_HYPERCALL as _,
                &mut call as *mut PrivcmdHypercall,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(5);
            return -i64::from(e);
        }
        i64::from(rc)
    }

    unsafe fn memory_op(&self, _cmd: u32, _arg: *mut u8) -> i64 {
        Errno::ENOSYS.to_ret()
    }

    unsafe fn sched_op(&self, _cmd: u32, _arg: *mut u8) -> i64 {
        Errno::ENOSYS.to_ret()
    }

    unsafe fn console_io(&self, _cmd: u32, _count: usize, _buf: *const u8) -> i64 {
        Errno::ENOSYS.to_ret()
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A kernel evtchn device in memory: a ring, masks, notifications.

    use super::*;
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::{Condvar, Mutex};

    #[derive(Default)]
    struct Inner {
        bound: BTreeSet<u32>,
        refused: BTreeSet<u32>,
        ring: VecDeque<u32>,
        masked: BTreeSet<u32>,
        pending: BTreeSet<u32>,
        notified: Vec<u32>,
        unmasked: Vec<u32>,
        read_error: Option<i32>,
    }

    /// The fake device.
    #[derive(Default)]
    pub(crate) struct FakeDevice {
        inner: Mutex<Inner>,
        cv: Condvar,
    }

    impl FakeDevice {
        fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
            self.inner.lock().unwrap()
        }

        /// The peer raises `port`: the kernel's handler rings it in and masks it, or keeps
        /// it pending while masked.
        pub(crate) fn fire(&self, port: u32) {
            let mut i = self.lock();
            if i.masked.contains(&port) {
                i.pending.insert(port);
            } else {
                i.masked.insert(port);
                i.ring.push_back(port);
            }
            self.cv.notify_all();
        }

        pub(crate) fn refuse_bind(&self, port: u32) {
            self.lock().refused.insert(port);
        }

        pub(crate) fn fail_reads(&self, errno: i32) {
            self.lock().read_error = Some(errno);
            self.cv.notify_all();
        }

        pub(crate) fn notified(&self) -> Vec<u32> {
            self.lock().notified.clone()
        }

        pub(crate) fn unmasked(&self) -> Vec<u32> {
            self.lock().unmasked.clone()
        }
    }

    impl Device for FakeDevice {
        fn bind_static(&self, port: u32) -> io::Result<()> {
            let mut i = self.lock();
            if i.refused.contains(&port) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            i.bound.insert(port);
            Ok(())
        }

        fn notify(&self, port: u32) -> io::Result<()> {
            self.lock().notified.push(port);
            Ok(())
        }

        fn read(&self, buf: &mut [u32]) -> io::Result<usize> {
            let mut i = self.lock();
            if let Some(e) = i.read_error {
                return Err(io::Error::from_raw_os_error(e));
            }
            let mut n = 0;
            while n < buf.len() {
                let Some(p) = i.ring.pop_front() else { break };
                buf[n] = p;
                n += 1;
            }
            Ok(n)
        }

        fn unmask(&self, ports: &[u32]) -> io::Result<()> {
            let mut i = self.lock();
            for &p in ports {
                i.unmasked.push(p);
                i.masked.remove(&p);
                if i.pending.remove(&p) {
                    i.masked.insert(p);
                    i.ring.push_back(p);
                }
            }
            self.cv.notify_all();
            Ok(())
        }

        fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
            let i = self.lock();
            let ready = |i: &mut Inner| !i.ring.is_empty() || i.read_error.is_some();
            let (mut i, t) = match timeout {
                None => (self.cv.wait_while(i, |i| !ready(i)).unwrap(), false),
                Some(t) => {
                    let (g, r) = self.cv.wait_timeout_while(i, t, |i| !ready(i)).unwrap();
                    (g, r.timed_out())
                }
            };
            Ok(!t || ready(&mut i))
        }

        fn fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }

        fn status(&self, _port: u32) -> Result<PortStatus, Errno> {
            Err(Errno::ENOSYS)
        }
    }
}
