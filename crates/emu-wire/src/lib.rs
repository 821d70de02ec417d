//! The wire protocol between a domain process and its hypervisor thread in `staticbus run`.
//! Both ends use this crate: the guest transport (`staticbus-guest-emu`) and the emulator's
//! runner (`staticbus-emu-runner`); neither imports the other.
//!
//! Each domain has one memfd of [`DOMAIN_MEM_SIZE`] bytes, mapped by the domain and by the
//! hypervisor and by nobody else: page 0 is the domain's `shared_info` (Xen's layout), page
//! 1 is the *channel page* below. A hypercall is one request/response in the channel page:
//!
//! | offset | field | writer |
//! |---|---|---|
//! | 0 | `req_seq: u32` — bumped after a request is written (futex) | guest |
//! | 4 | `done_seq: u32` — set to `req_seq` once the response is written (futex) | hypervisor |
//! | 8 | `events: u32` — bumped whenever something becomes pending (futex) | hypervisor |
//! | 12 | `guest_waiting: u32` — non-zero while a guest thread sleeps on `done_seq` or `events` (a count) | guest |
//! | 16 | `hv_waiting: u32` — 1 while the hypervisor thread sleeps on `req_seq` | hypervisor |
//! | 24 | `op: u64` — hypercall number | guest |
//! | 32 | `cmd: u32` | guest |
//! | 36 | `arg_len: u32` — bytes of `arg` used (≤ [`ARG_MAX`]) | guest |
//! | 40 | `ret: i64` | hypervisor |
//! | 64 | `arg: [u8; ARG_MAX]` — the marshalled argument, results written back in place | both |
//!
//! Wake-ups are skipped when the other side is not sleeping (it announces it in its
//! `*_waiting` word before re-checking and sleeping; all four words use sequentially
//! consistent atomics, so a wake-up is never lost). The hypervisor copies the request out of
//! the page before looking at it: the guest may be hostile.

#![deny(unsafe_op_in_unsafe_fn)]

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// Page size.
pub const PAGE: usize = 4096;
/// Size of a domain's memfd: shared_info page + channel page.
pub const DOMAIN_MEM_SIZE: usize = 2 * PAGE;
/// Offset of the channel page in the domain memfd.
pub const CHANNEL_PAGE: usize = PAGE;
/// Offset of `arg` in the channel page.
pub const ARG_OFFSET: usize = 64;
/// Room for a marshalled argument.
pub const ARG_MAX: usize = PAGE - ARG_OFFSET;

/// Environment variable: the fd number of the domain memfd.
pub const ENV_FD: &str = "STATICBUS_EMU_FD";
/// Environment variable: `shm-id=fd,…` for every region the domain maps.
pub const ENV_REGIONS: &str = "STATICBUS_EMU_REGIONS";
/// Environment variable: path of the domain's JSON manifest.
pub const ENV_MANIFEST: &str = "STATICBUS_MANIFEST";
/// Environment variable: the domain's name.
pub const ENV_DOMAIN: &str = "STATICBUS_DOMAIN";

/// The control words at the start of the channel page.
#[repr(C)]
#[derive(Debug)]
pub struct Control {
    /// Bumped by the guest after writing a request.
    pub req_seq: AtomicU32,
    /// Set by the hypervisor to the request's `req_seq` when the response is written.
    pub done_seq: AtomicU32,
    /// Bumped by the hypervisor whenever something becomes pending for the domain.
    pub events: AtomicU32,
    /// Non-zero while a guest thread sleeps (`staticbus-guest-emu` counts its sleepers).
    pub guest_waiting: AtomicU32,
    /// 1 while the hypervisor thread sleeps.
    pub hv_waiting: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Control>() == 20);

/// Wakes every waiter on a futex word (errors, e.g. a dead peer, are ignored: the word's
/// value is the truth and waiters re-check it).
pub fn wake(word: &AtomicU32) {
    let _ =
        rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

/// Sleeps while `word == expected`, at most `timeout` (spurious returns are fine: callers
/// re-check).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| rustix::thread::futex::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let _ = rustix::thread::futex::wait(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        ts.as_ref(),
    );
}

impl Control {
    /// Hypervisor side: announce that something is pending for the domain and wake it if
    /// it sleeps.
    pub fn notify_guest(&self) {
        self.events.fetch_add(1, SeqCst);
        if self.guest_waiting.load(SeqCst) != 0 {
            wake(&self.events);
        }
    }
}

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;

/// Maps `len` bytes of `fd` shared at a kernel-chosen address, readable and with `extra`
/// protections (`WRITE`, or none for a read-only peer's page); the caller unmaps it with
/// [`unmap_shared`]. An empty mapping is refused.
pub(crate) fn map_shared(
    fd: BorrowedFd<'_>,
    len: usize,
    extra: rustix::mm::ProtFlags,
) -> std::io::Result<*mut u8> {
    if len == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty mapping",
        ));
    }
    // SAFETY: a fresh shared mapping of `len` bytes at a kernel-chosen address: it
    // overlaps nothing Rust owns; the callers keep it until their `Drop` and tie every
    // borrow into it to themselves.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | extra,
            rustix::mm::MapFlags::SHARED,
            fd,
            0,
        )?
    };
    Ok(ptr.cast())
}

/// Unmaps what [`map_shared`] mapped.
///
/// # Safety
/// `ptr` and `len` are exactly one mapping made by [`map_shared`], and nothing borrows it
/// any more.
pub(crate) unsafe fn unmap_shared(ptr: *mut u8, len: usize) {
    // SAFETY: the caller's contract: exactly one live mapping, no borrows into it.
    let _ = unsafe { rustix::mm::munmap(ptr.cast(), len) };
}

/// A shared mapping of a memfd (a domain's memory, or a shared region), unmapped on drop.
/// All access goes through atomics or volatile copies, so it may be used from any thread.
#[derive(Debug)]
pub struct SharedMem {
    fd: OwnedFd,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is shared memory, only ever accessed through atomics and volatile
// copies; nothing in it is a Rust object owned by one thread.
unsafe impl Send for SharedMem {}
// SAFETY: as above.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Creates a zero-filled memfd of `len` bytes (close-on-exec), seals its size and maps
    /// it.
    ///
    /// The seals (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) are what let the creator map
    /// memory another process holds: without them, a process given the memfd could
    /// `ftruncate` it to 0 and every later access of the creator's mapping would die of
    /// `SIGBUS`.
    pub fn create(name: &str, len: usize) -> std::io::Result<SharedMem> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        SharedMem::map(fd, len)
    }

    /// Maps `len` bytes of an existing memfd.
    pub fn map(fd: OwnedFd, len: usize) -> std::io::Result<SharedMem> {
        let ptr = map_shared(fd.as_fd(), len, rustix::mm::ProtFlags::WRITE)?;
        Ok(SharedMem { fd, ptr, len })
    }

    /// The memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (empty mappings are refused).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole mapping as 32-bit atomic words (the outboxes and inbox state of
    /// [`direct`]).
    pub fn words32(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is page aligned and `len` bytes long; AtomicU32 is valid for
        // any bit pattern; the borrow is tied to `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const AtomicU32, self.len / 4) }
    }

    /// Page 0 as the domain's `shared_info` words.
    ///
    /// # Panics
    /// If the mapping is smaller than a page (only domain memory is used this way).
    pub fn shared_info_words(&self) -> &[AtomicU64; 512] {
        assert!(self.len >= PAGE);
        // SAFETY: page 0 is 4096 bytes of the mapping, page aligned; AtomicU64 is valid for
        // any bit pattern; the borrow is tied to `self`.
        unsafe { &*(self.ptr as *const [AtomicU64; 512]) }
    }

    /// The channel page's control words.
    ///
    /// # Panics
    /// If the mapping is not a domain's memory ([`DOMAIN_MEM_SIZE`]).
    pub fn control(&self) -> &Control {
        assert!(self.len >= DOMAIN_MEM_SIZE);
        // SAFETY: the channel page lies inside the mapping, page aligned; Control is five
        // AtomicU32s, valid for any bit pattern; the borrow is tied to `self`.
        unsafe { &*(self.ptr.add(CHANNEL_PAGE) as *const Control) }
    }

    fn channel(&self, offset: usize) -> *mut u8 {
        assert!(self.len >= DOMAIN_MEM_SIZE && offset < PAGE);
        self.ptr.wrapping_add(CHANNEL_PAGE + offset)
    }

    /// Guest side: writes a request (`arg.len() <= ARG_MAX`, checked by the caller).
    pub fn write_request(&self, op: u64, cmd: u32, arg: &[u8]) {
        let len = arg.len().min(ARG_MAX);
        // SAFETY: all offsets are inside the channel page; the other side reads these bytes
        // only after the `req_seq` store that follows.
        unsafe {
            std::ptr::write_volatile(self.channel(24) as *mut u64, op);
            std::ptr::write_volatile(self.channel(32) as *mut u32, cmd);
            std::ptr::write_volatile(self.channel(36) as *mut u32, len as u32);
            for (i, b) in arg[..len].iter().enumerate() {
                std::ptr::write_volatile(self.channel(ARG_OFFSET + i), *b);
            }
        }
    }

    /// Hypervisor side: copies the request out (the guest may change it meanwhile; the
    /// length is clamped). Returns `(op, cmd, len)`; the argument is in `buf[..len]`.
    pub fn read_request(&self, buf: &mut [u8; ARG_MAX]) -> (u64, u32, usize) {
        // SAFETY: all offsets are inside the channel page.
        unsafe {
            let op = std::ptr::read_volatile(self.channel(24) as *const u64);
            let cmd = std::ptr::read_volatile(self.channel(32) as *const u32);
            let len =
                (std::ptr::read_volatile(self.channel(36) as *const u32) as usize).min(ARG_MAX);
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = std::ptr::read_volatile(self.channel(ARG_OFFSET + i));
            }
            (op, cmd, len)
        }
    }

    /// Hypervisor side: writes the result and the argument back.
    pub fn write_response(&self, ret: i64, arg: &[u8]) {
        let len = arg.len().min(ARG_MAX);
        // SAFETY: all offsets are inside the channel page; the guest reads them only after
        // the `done_seq` store that follows.
        unsafe {
            for (i, b) in arg[..len].iter().enumerate() {
                std::ptr::write_volatile(self.channel(ARG_OFFSET + i), *b);
            }
            std::ptr::write_volatile(self.channel(40) as *mut i64, ret);
        }
    }

    /// Guest side: reads the result and copies the argument back into `arg`.
    pub fn read_response(&self, arg: &mut [u8]) -> i64 {
        let len = arg.len().min(ARG_MAX);
        // SAFETY: all offsets are inside the channel page; the response is complete once
        // `done_seq` matched.
        unsafe {
            for (i, b) in arg[..len].iter_mut().enumerate() {
                *b = std::ptr::read_volatile(self.channel(ARG_OFFSET + i));
            }
            std::ptr::read_volatile(self.channel(40) as *const i64)
        }
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; no borrow of it outlives `self`.
        unsafe { unmap_shared(self.ptr, self.len) };
    }
}

/// Makes `cmd`'s child inherit exactly `fds` besides its stdin, stdout and stderr (they must
/// be open). Every other descriptor is closed at `execve`, also the ones the parent
/// inherited or opened *without* close-on-exec (its own parent's leftovers, a library's
/// careless `open`): the child marks everything from 3 up close-on-exec
/// (`close_range(…, CLOSE_RANGE_CLOEXEC)`, or one `fcntl` per descriptor below
/// `RLIMIT_NOFILE` on kernels older than 5.11), then clears the flag on `fds`.
pub fn inherit_fds(cmd: &mut std::process::Command, mut fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    fds.sort_unstable();
    fds.dedup();
    // SAFETY: between fork and exec only async-signal-safe calls run (close_range, fcntl,
    // getrlimit), on a vector allocated before the fork; no allocation or locking happens
    // there.
    unsafe {
        cmd.pre_exec(move || {
            cloexec_from(3)?;
            for &fd in &fds {
                let b = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(b, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
}

/// Marks every descriptor `>= first` close-on-exec (async-signal-safe: for a `pre_exec`).
fn cloexec_from(first: RawFd) -> std::io::Result<()> {
    // SAFETY: close_range takes integers only; with CLOSE_RANGE_CLOEXEC it closes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a live struct.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as RawFd
    } else {
        1 << 16
    };
    for fd in first..max {
        // SAFETY: F_GETFD/F_SETFD on a number that may not be open (EBADF is ignored).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// The raw number of a descriptor (for the environment variables above).
pub fn raw(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_raw_fd()
}

pub mod direct;
