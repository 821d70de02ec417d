//! The hypercall seam: the four Xen hypercalls a guest uses, in Xen's raw form, and the
//! errno type their results decode to.

use core::fmt;
use staticbus_abi::errno;

/// The Xen hypercalls a staticbus guest issues, in Xen's raw calling form.
///
/// A transport implements this once: bare-metal aarch64 with `hvc #0xEA1` (number in x16,
/// arguments in x0..x2, result in x0; spec §5.1), Linux userspace, or the staticbus
/// emulator (which marshals the call to the emulated hypervisor). Everything above this
/// trait — the event-channel driver, regions, channels, the console — is shared by all
/// transports.
///
/// Every method returns Xen's raw `long`: `>= 0` on success, a negated Xen errno on
/// failure (decode it with [`Errno::check`]). The safe wrappers in [`crate::ops`] build the
/// argument structures and decode the result; the driver only uses those.
///
/// # Safety contract (for callers)
///
/// For `event_channel_op`, `memory_op` and `sched_op`:
///
/// * `arg` points to the argument structure of `cmd`, laid out as in
///   [`staticbus_abi::layout`] (`EvtchnPort` for send/close/unmask, `EvtchnStatus` for
///   status, `AddToPhysmap` for `XENMEM_add_to_physmap`, `SchedPoll` for `SCHEDOP_poll`,
///   `SchedShutdown` for `SCHEDOP_shutdown`), properly aligned, initialised, and valid
///   for reads and writes of that structure's size for the duration of the call. The
///   hypervisor may write output fields.
/// * For commands that take no argument (`SCHEDOP_yield`, `SCHEDOP_block`) `arg` may be
///   null and must not be dereferenced.
/// * For `SCHEDOP_poll`, the structure's `ports` field is the guest address (on the
///   emulator: the process address, obtained with `pointer::expose_provenance`) of an
///   array of `nr_ports` `u32` port numbers valid for reads for the duration of the call.
///
/// For `console_io` with `CONSOLEIO_write`, `buf` is valid for reads of `count` bytes for
/// the duration of the call.
///
/// # Contract for implementers
///
/// An implementation must not access memory beyond what the contract above makes valid,
/// must not keep any pointer past the call, and must return `-ENOSYS` for a command it
/// does not implement without touching `arg`. Implementations must not panic on any
/// `cmd` value.
pub trait Hypercall {
    /// `HYPERVISOR_event_channel_op(cmd, arg)` (hypercall 32).
    ///
    /// # Safety
    ///
    /// See the trait documentation: `arg` points to the argument structure of `cmd`,
    /// valid for reads and writes of its size.
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64;

    /// `HYPERVISOR_memory_op(cmd, arg)` (hypercall 12).
    ///
    /// # Safety
    ///
    /// See the trait documentation: `arg` points to the argument structure of `cmd`,
    /// valid for reads and writes of its size.
    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64;

    /// `HYPERVISOR_sched_op(cmd, arg)` (hypercall 29).
    ///
    /// # Safety
    ///
    /// See the trait documentation: `arg` points to the argument structure of `cmd` (or is
    /// null for `SCHEDOP_yield`/`SCHEDOP_block`), valid for reads and writes of its size;
    /// for `SCHEDOP_poll` its `ports` field is the address of a readable `u32` array of
    /// `nr_ports` elements.
    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64;

    /// `HYPERVISOR_console_io(cmd, count, buf)` (hypercall 18).
    ///
    /// # Safety
    ///
    /// For `CONSOLEIO_write`, `buf` is valid for reads of `count` bytes.
    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64;

    /// Brings `shared_info` up to date before the caller reads pending bits: a transport
    /// that delivers some events into the domain's own `shared_info` lazily (the
    /// emulator's direct delivery of static event channels, docs/adr/0009) sets their
    /// pending bits here, by Xen's 2-level rules. The 2-level driver calls it before every
    /// read of pending bits. The default does nothing (Xen sets them itself).
    fn sync_pending(&self) {}
}

impl<H: Hypercall + ?Sized> Hypercall for &H {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: forwarded unchanged; the caller upholds the same contract.
        unsafe { (**self).event_channel_op(cmd, arg) }
    }

    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: forwarded unchanged; the caller upholds the same contract.
        unsafe { (**self).memory_op(cmd, arg) }
    }

    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: forwarded unchanged; the caller upholds the same contract.
        unsafe { (**self).sched_op(cmd, arg) }
    }

    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64 {
        // SAFETY: forwarded unchanged; the caller upholds the same contract.
        unsafe { (**self).console_io(cmd, count, buf) }
    }

    fn sync_pending(&self) {
        (**self).sync_pending()
    }
}

/// A Xen errno value (positive), as returned negated by a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(errno::EPERM);
    /// No such entry.
    pub const ENOENT: Errno = Errno(errno::ENOENT);
    /// No such domain.
    pub const ESRCH: Errno = Errno(errno::ESRCH);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(errno::ENOMEM);
    /// Bad address.
    pub const EFAULT: Errno = Errno(errno::EFAULT);
    /// Busy.
    pub const EBUSY: Errno = Errno(errno::EBUSY);
    /// Exists.
    pub const EEXIST: Errno = Errno(errno::EEXIST);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(errno::EINVAL);
    /// No space.
    pub const ENOSPC: Errno = Errno(errno::ENOSPC);
    /// Not implemented.
    pub const ENOSYS: Errno = Errno(errno::ENOSYS);

    /// Decodes a raw hypercall result: `>= 0` is success, `-e` is `Errno(e)`. A result
    /// below `-i32::MAX` (no valid errno) decodes to `Errno(i32::MAX)`.
    pub const fn check(ret: i64) -> Result<i64, Errno> {
        if ret >= 0 {
            return Ok(ret);
        }
        if ret < -(i32::MAX as i64) {
            return Err(Errno(i32::MAX));
        }
        Err(Errno(-ret as i32))
    }

    /// The raw hypercall return value for this errno (`-self.0`).
    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// The symbolic name (`"EINVAL"`), if this is one of Xen's errno values above.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            errno::EPERM => "EPERM",
            errno::ENOENT => "ENOENT",
            errno::ESRCH => "ESRCH",
            errno::ENOMEM => "ENOMEM",
            errno::EFAULT => "EFAULT",
            errno::EBUSY => "EBUSY",
            errno::EEXIST => "EEXIST",
            errno::EINVAL => "EINVAL",
            errno::ENOSPC => "ENOSPC",
            errno::ENOSYS => "ENOSYS",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn check_decodes_results() {
        assert_eq!(Errno::check(0), Ok(0));
        assert_eq!(Errno::check(7), Ok(7));
        assert_eq!(Errno::check(-22), Err(Errno::EINVAL));
        assert_eq!(Errno::check(i64::MIN), Err(Errno(i32::MAX)));
        assert_eq!(Errno::check(-(i32::MAX as i64)), Err(Errno(i32::MAX)));
        assert_eq!(Errno::EBUSY.to_ret(), -16);
    }

    #[test]
    fn display_uses_the_name() {
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL");
        assert_eq!(Errno::ENOSYS.to_string(), "ENOSYS");
        assert_eq!(Errno(99).to_string(), "errno 99");
        assert_eq!(Errno(99).name(), None);
    }
}
