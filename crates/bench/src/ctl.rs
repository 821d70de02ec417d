//! The shared memfd (control page + regions), the peer process, pinning, clocks and the
//! futex-backed event bit.

use staticbus_emu_wire::{inherit_fds, raw, SharedMem};
use staticbus_guest::Region;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// Size of the control page at the start of the memfd.
pub const CTL: usize = 4096;
/// Each control word sits in its own 128-byte block (no false sharing, no adjacent-line
/// prefetch effects).
const BLOCK: usize = 128;

/// Control words (indices of 128-byte blocks in the control page).
#[derive(Clone, Copy)]
pub enum Word {
    /// The peer has attached and is ready.
    Ready = 0,
    /// Event bit towards the peer (futex word).
    EventToPeer = 1,
    /// Event bit towards the parent (futex word).
    EventToParent = 2,
    /// Peer's CLOCK_MONOTONIC timestamp (ns) when it finished.
    PeerEnd = 3,
    /// Notifications the peer sent.
    PeerNotifies = 4,
    /// Times the peer blocked.
    PeerBlocks = 5,
    /// Cache-line ping-pong: written by the parent.
    Ping = 6,
    /// Cache-line ping-pong: written by the peer.
    Pong = 7,
    /// Polls the peer made that found nothing to do (queue empty for a consumer).
    PeerIdlePolls = 8,
}

/// The shared mapping: control page, then protocol regions.
pub struct Shm {
    mem: SharedMem,
    all: Region,
}

impl Shm {
    /// A fresh zeroed memfd of `CTL + regions` bytes.
    pub fn create(regions: usize) -> std::io::Result<Shm> {
        Shm::new(SharedMem::create("staticbus-bench", CTL + regions)?)
    }

    /// Maps the memfd a parent passed (`fd`, `len`).
    pub fn open(fd: i32, len: usize) -> std::io::Result<Shm> {
        // SAFETY: the parent passed this descriptor number on our command line and made
        // us inherit it; nothing else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Shm::new(SharedMem::map(fd, len)?)
    }

    fn new(mem: SharedMem) -> std::io::Result<Shm> {
        // SAFETY: the mapping is `len` bytes and stays mapped while `self` lives (the
        // region is stored next to it); it is only accessed through `Region`s (volatile
        // copies and atomics), and callers keep the `Shm` alive while they use regions
        // made from it (both live in the same stack frame of `run`).
        let all = unsafe { Region::new(mem.as_ptr(), mem.len()) }
            .ok_or_else(|| std::io::Error::other("null mapping"))?;
        Ok(Shm { mem, all })
    }

    /// The control word `w` as a u64 atomic.
    pub fn word(&self, w: Word) -> &AtomicU64 {
        self.all
            .atomic::<u64>(w as usize * BLOCK)
            .expect("control word in the control page")
    }

    /// The control word `w` as a u32 atomic (futex words).
    pub fn word32(&self, w: Word) -> &AtomicU32 {
        self.all
            .atomic::<u32>(w as usize * BLOCK)
            .expect("control word in the control page")
    }

    /// The protocol region `[CTL + off, CTL + off + len)`.
    pub fn region(&self, off: usize, len: usize) -> Region {
        self.all
            .sub(CTL + off, len)
            .expect("region inside the mapping")
    }

    /// Starts this program as the peer on core 1: `peer <args…> --fd N --len L`.
    pub fn spawn_peer(&self, args: &[String]) -> std::io::Result<Child> {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("peer").arg("--");
        cmd.args(args);
        cmd.arg(raw(self.mem.fd()).to_string());
        cmd.arg(self.mem.len().to_string());
        inherit_fds(&mut cmd, vec![raw(self.mem.fd())]);
        cmd.spawn()
    }
}

/// Pins the calling thread to `cpu` (ignored with a warning if the machine has fewer).
pub fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("staticbus-bench: warning: cannot pin to CPU {cpu}: {e}");
    }
}

/// CLOCK_MONOTONIC in nanoseconds (comparable between processes).
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// An event channel modelled on a futex word: a pending bit, set by `notify` (a wake-up
/// syscall only if it was clear), taken by `wait`.
pub struct Event<'a>(pub &'a AtomicU32);

impl Event<'_> {
    /// Sets the pending bit; wakes a sleeper if the bit was clear.
    pub fn notify(&self) {
        if self.0.swap(1, SeqCst) == 0 {
            let _ = rustix::thread::futex::wake(self.0, rustix::thread::futex::Flags::empty(), 1);
        }
    }

    /// Blocks until the pending bit is set, and clears it.
    pub fn wait(&self) {
        while self.0.swap(0, SeqCst) == 0 {
            let _ =
                rustix::thread::futex::wait(self.0, rustix::thread::futex::Flags::empty(), 0, None);
        }
    }
}
