//! Direct delivery of static inter-domain event channels (docs/adr/0009): the memory a
//! sender and a receiver share with no hypervisor thread between them, and the one fold
//! both the receiver's transport and the hypervisor run.
//!
//! **Outbox** (one memfd per ordered pair of domains with static channels between them,
//! sender → receiver): word `p` (a `u32`, for every port `p ≥ 1` of the sender) counts the
//! sends on the sender's port `p`; word 0 counts the sender's threads asleep in a wait
//! (so the *receiver*, sending back, knows whether to wake it). Only the sender maps it
//! writable; the receiver maps it read-only through an `O_RDONLY` reopen and looks only at
//! the words of the ports bound to it; the runner keeps its own mapping.
//!
//! **Inbox state** (one memfd per receiving domain, mapped by that domain and the runner):
//! an [`Entry`] of four words per local port, [`ENTRY_WORDS`] apart:
//!
//! | word | field | writers |
//! |---|---|---|
//! | 0 | `enabled` — 1 while the port is statically bound to its peer and delivery is direct | runner |
//! | 1 | `seen` — the peer's counter value folded so far | receiver, runner (compare-and-swap) |
//! | 2 | `folded` — sends folded in (the counter differences, wrapping) | the folding side |
//! | 3 | `delivered` — folds that set the pending bit 0→1 | the folding side |

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// Environment variable: `peer-domid=fd,…`, the outboxes this domain writes (one per peer).
pub const ENV_OUTBOXES: &str = "STATICBUS_EMU_OUTBOXES";
/// Environment variable: `peer-domid=fd,…`, read-only descriptors of the peers' outboxes
/// to this domain.
pub const ENV_INBOXES: &str = "STATICBUS_EMU_INBOXES";
/// Environment variable: the fd of this domain's inbox state.
pub const ENV_STATE: &str = "STATICBUS_EMU_DIRECT_STATE";
/// Environment variable read by the runner: `0` turns direct delivery off (every send is
/// an `EVTCHNOP_send` hypercall, as before ADR 0009).
pub const ENV_KNOB: &str = "STATICBUS_EMU_DIRECT";

/// Words per [`Entry`].
pub const ENTRY_WORDS: usize = 4;
/// Index of the outbox word counting the sender's sleeping threads.
pub const WAITING_WORD: usize = 0;

/// Bytes of an outbox for a sender whose highest port is `max_port` (whole pages).
pub fn outbox_len(max_port: u32) -> usize {
    round_page(4 * (max_port as usize + 1))
}

/// Bytes of the inbox state of a receiver whose highest port is `max_port` (whole pages).
pub fn state_len(max_port: u32) -> usize {
    round_page(4 * ENTRY_WORDS * (max_port as usize + 1))
}

fn round_page(n: usize) -> usize {
    n.div_ceil(crate::PAGE) * crate::PAGE
}

/// Direct delivery is on unless [`ENV_KNOB`] is `0` in this process's environment.
pub fn enabled_by_env() -> bool {
    std::env::var(ENV_KNOB).as_deref() != Ok("0")
}

/// One port's inbox-state words.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// 1 while delivery is direct.
    pub enabled: &'a AtomicU32,
    /// The peer's counter value folded so far.
    pub seen: &'a AtomicU32,
    /// Sends folded in (wrapping).
    pub folded: &'a AtomicU32,
    /// Folds that set the pending bit 0→1 (wrapping).
    pub delivered: &'a AtomicU32,
}

impl<'a> Entry<'a> {
    /// The entry of `port` in the inbox-state words `words` (`None` beyond them).
    pub fn of(words: &'a [AtomicU32], port: u32) -> Option<Entry<'a>> {
        let i = port as usize * ENTRY_WORDS;
        let w = words.get(i..i + ENTRY_WORDS)?;
        Some(Entry {
            enabled: &w[0],
            seen: &w[1],
            folded: &w[2],
            delivered: &w[3],
        })
    }

    /// Runner: turns direct delivery on, dropping what the sender wrote while it was off
    /// (Xen drops sends on a port that is not bound).
    pub fn enable(&self, counter: &AtomicU32) {
        self.seen.store(counter.load(SeqCst), SeqCst);
        self.enabled.store(1, SeqCst);
    }

    /// Runner: turns it off; the caller folds once more afterwards, so what was sent
    /// before is delivered and nothing written after can be.
    pub fn disable(&self) {
        self.enabled.store(0, SeqCst);
    }
}

/// Folds the sends counted in `counter` (the peer's outbox word) into the receiver:
/// if the entry is enabled and the counter moved since `seen`, claims the difference
/// (compare-and-swap, so the receiver's threads and the runner never fold the same send
/// twice) and calls `raise` once, which sets the pending bit and returns whether it went
/// 0→1. Returns whether it raised.
///
/// The enable flag is read again *after* the counter: a counter value that includes a
/// write made after [`Entry::disable`] is only ever read after the flag is 0 (sequential
/// consistency), so nothing written after a close is raised.
pub fn fold(counter: &AtomicU32, e: Entry<'_>, raise: impl FnOnce() -> bool) -> bool {
    if e.enabled.load(SeqCst) == 0 {
        return false;
    }
    let c = counter.load(SeqCst);
    let s = e.seen.load(SeqCst);
    if c == s || e.enabled.load(SeqCst) == 0 {
        return false;
    }
    if e.seen.compare_exchange(s, c, SeqCst, SeqCst).is_err() {
        // Another thread (or the runner) folded it meanwhile.
        return false;
    }
    e.folded.fetch_add(c.wrapping_sub(s), SeqCst);
    if raise() {
        e.delivered.fetch_add(1, SeqCst);
    }
    true
}

/// A read-only shared mapping of a memfd (a peer's outbox), unmapped on drop.
#[derive(Debug)]
pub struct ReadOnlyMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: shared memory only ever read through atomics; nothing in it is a Rust object
// owned by one thread.
unsafe impl Send for ReadOnlyMem {}
// SAFETY: as above.
unsafe impl Sync for ReadOnlyMem {}

impl ReadOnlyMem {
    /// Maps `len` bytes of `fd` read-only (an `O_RDONLY` descriptor can be mapped no
    /// other way: the kernel refuses a writable shared mapping of it).
    pub fn map(fd: &std::os::fd::OwnedFd, len: usize) -> std::io::Result<ReadOnlyMem> {
        use std::os::fd::AsFd;
        let ptr = crate::map_shared(fd.as_fd(), len, rustix::mm::ProtFlags::empty())?;
        Ok(ReadOnlyMem { ptr, len })
    }

    /// The mapping as 32-bit atomic words (load them only: the pages are read-only).
    pub fn words32(&self) -> &[AtomicU32] {
        // SAFETY: page aligned, `len` bytes, valid for any bit pattern, tied to `self`.
        unsafe { core::slice::from_raw_parts(self.ptr as *const AtomicU32, self.len / 4) }
    }
}

impl Drop for ReadOnlyMem {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`.
        unsafe { crate::unmap_shared(self.ptr, self.len) };
    }
}

/// One word a [`wait_any`] sleeps on, with the value it must still hold.
#[derive(Clone, Copy, Debug)]
pub struct WaitWord<'a> {
    /// The word.
    pub word: &'a AtomicU32,
    /// Sleep only while the word holds this.
    pub expected: u32,
}

/// Sleeps until one of `words` no longer holds its expected value or is woken
/// (`futex_waitv`, Linux 5.16+), at most `timeout`. Spurious returns are fine: callers
/// re-check. With one word it is a plain `FUTEX_WAIT`.
pub fn wait_any(words: &[WaitWord<'_>], timeout: Option<std::time::Duration>) {
    if words.len() == 1 {
        return crate::wait(words[0].word, words[0].expected, timeout);
    }
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    /// `FUTEX2_SIZE_U32`; shared (no `FUTEX2_PRIVATE`): the words are in memfds.
    const FUTEX2_SIZE_U32: u32 = 2;
    const MAX: usize = 128;
    let n = words.len().min(MAX);
    let mut v: [FutexWaitv; MAX] = core::array::from_fn(|_| FutexWaitv {
        val: 0,
        uaddr: 0,
        flags: 0,
        reserved: 0,
    });
    for (slot, w) in v.iter_mut().zip(words) {
        slot.val = u64::from(w.expected);
        slot.uaddr = w.word.as_ptr() as u64;
        slot.flags = FUTEX2_SIZE_U32;
    }
    let deadline = timeout.map(|t| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let ns = now.tv_nsec as u64 + u64::from(t.subsec_nanos());
        libc::timespec {
            tv_sec: (now.tv_sec + t.as_secs() as i64 + (ns / 1_000_000_000) as i64) as _,
            tv_nsec: (ns % 1_000_000_000) as _,
        }
    });
    let ts = deadline
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `v` holds `n` initialised waiters pointing at live words, `ts` is null or a
    // live timespec; the kernel only reads both.
    unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            v.as_ptr(),
            n as libc::c_uint,
            0 as libc::c_uint,
            ts,
            libc::CLOCK_MONOTONIC,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn many_sends_fold_into_one_raise_with_the_counts_kept() {
        let state = words(8 * ENTRY_WORDS);
        let counter = AtomicU32::new(7);
        let e = Entry::of(&state, 3).unwrap();
        e.enable(&counter);
        assert!(!fold(&counter, e, || panic!("nothing was sent")));
        counter.fetch_add(1000, SeqCst);
        let mut raised = 0;
        assert!(fold(&counter, e, || {
            raised += 1;
            true
        }));
        assert!(!fold(&counter, e, || panic!("already folded")));
        assert_eq!(raised, 1);
        assert_eq!(e.folded.load(SeqCst), 1000);
        assert_eq!(e.delivered.load(SeqCst), 1);
        // Already pending: folded, not delivered.
        counter.fetch_add(5, SeqCst);
        assert!(fold(&counter, e, || false));
        assert_eq!(e.folded.load(SeqCst), 1005);
        assert_eq!(e.delivered.load(SeqCst), 1);
    }

    #[test]
    fn nothing_written_while_disabled_is_raised() {
        let state = words(4 * ENTRY_WORDS);
        let counter = AtomicU32::new(0);
        let e = Entry::of(&state, 1).unwrap();
        // Never enabled: a hostile sender's writes count for nothing.
        counter.store(99, SeqCst);
        assert!(!fold(&counter, e, || panic!("not enabled")));
        e.enable(&counter);
        // The runner's close: fold what was sent before, then disable.
        counter.fetch_add(1, SeqCst);
        assert!(fold(&counter, e, || true));
        e.disable();
        // After it nothing gets through, forwards or backwards.
        counter.fetch_add(1, SeqCst);
        assert!(!fold(&counter, e, || panic!("disabled")));
        counter.store(0, SeqCst);
        assert!(!fold(&counter, e, || panic!("disabled")));
        assert_eq!(e.folded.load(SeqCst), 1);
        assert!(Entry::of(&state, 4).is_none());
    }

    #[test]
    fn a_counter_written_backwards_raises_only_its_own_port_once() {
        let state = words(4 * ENTRY_WORDS);
        let counter = AtomicU32::new(50);
        let e = Entry::of(&state, 2).unwrap();
        e.enable(&counter);
        counter.store(10, SeqCst);
        let mut n = 0;
        assert!(fold(&counter, e, || {
            n += 1;
            true
        }));
        assert_eq!(n, 1);
        assert_eq!(e.seen.load(SeqCst), 10);
        // The other ports' entries are untouched.
        for p in [0, 1, 3] {
            let o = Entry::of(&state, p).unwrap();
            assert_eq!(o.seen.load(SeqCst) | o.folded.load(SeqCst), 0);
        }
    }

    #[test]
    fn sizes_are_whole_pages() {
        assert_eq!(outbox_len(1023), 4096);
        assert_eq!(outbox_len(4095), 16384);
        assert_eq!(state_len(1023), 16384);
    }
}
