//! Xen errno values as a type.

use staticbus_abi::errno as e;
use std::fmt;

/// A Xen errno (positive, as in Xen's `errno.h`); hypercalls return it negated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted (XSM refusal).
    pub const EPERM: Errno = Errno(e::EPERM);
    /// No such entry.
    pub const ENOENT: Errno = Errno(e::ENOENT);
    /// No such domain.
    pub const ESRCH: Errno = Errno(e::ESRCH);
    /// Argument list too long (`CONSOLEIO_read` count above `INT_MAX`).
    pub const E2BIG: Errno = Errno(7);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(e::ENOMEM);
    /// Permission denied (`xatp_permission_check`). Not in `staticbus_abi::errno`.
    pub const EACCES: Errno = Errno(13);
    /// Bad address: the argument could not be read (too short).
    pub const EFAULT: Errno = Errno(e::EFAULT);
    /// Busy: port in use, `shared_info` already mapped.
    pub const EBUSY: Errno = Errno(e::EBUSY);
    /// Exists.
    pub const EEXIST: Errno = Errno(e::EEXIST);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(e::EINVAL);
    /// No space: port beyond the domain's limit, or no free port left.
    pub const ENOSPC: Errno = Errno(e::ENOSPC);
    /// Argument out of domain (`memory_op` extent that does not fit). Not in
    /// `staticbus_abi::errno`.
    pub const EDOM: Errno = Errno(33);
    /// Not implemented (unknown or not emulated operation).
    pub const ENOSYS: Errno = Errno(e::ENOSYS);
    /// Value too large (`XENMAPSPACE_gmfn_range` overflow). Not in `staticbus_abi::errno`.
    pub const EOVERFLOW: Errno = Errno(75);
    /// Illegal byte sequence (`XENMAPSPACE_gmfn_range` with `size` below the start extent).
    /// Not in `staticbus_abi::errno`.
    pub const EILSEQ: Errno = Errno(84);

    /// The hypercall return value: `-errno`.
    pub fn ret(self) -> i64 {
        -i64::from(self.0)
    }

    /// The symbolic name, if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            7 => "E2BIG",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            33 => "EDOM",
            38 => "ENOSYS",
            75 => "EOVERFLOW",
            84 => "EILSEQ",
            _ => return None,
        })
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "-{n} (-{})", self.0),
            None => write!(f, "-{}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

/// Converts a result into a hypercall return value (`0` or `-errno`).
pub(crate) fn ret0(r: Result<(), Errno>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.ret(),
    }
}
