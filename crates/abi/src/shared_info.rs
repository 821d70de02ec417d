//! A safe view of Xen's `struct shared_info` (arm64, vCPU 0) as 64-bit atomic words, used
//! by both sides: the emulated hypervisor sets pending bits, the guest driver clears them.
//!
//! Every field of `shared_info` that event channels use lies in a naturally aligned 64-bit
//! word: `evtchn_upcall_pending` is bit 0 of word 0 (Xen sets it with an atomic bit
//! operation on the 8-byte word), `evtchn_pending_sel` is word 1, `evtchn_pending[64]`
//! starts at word 6 and `evtchn_mask[64]` at word 70 (spec §5.5).

use crate::layout::shared_info as off;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Number of 64-bit words in a 4 KiB page.
pub const PAGE_WORDS: usize = 512;

/// Ports in the 2-level ABI.
pub const NR_PORTS: u32 = 4096;

/// What [`SharedInfo::set_pending`] did, per Xen's `evtchn_2l_set_pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The port was already pending: nothing changed.
    AlreadyPending,
    /// The port became pending but is masked (or its selector bit was already set): no
    /// upcall.
    Pending,
    /// The port became pending and `evtchn_upcall_pending` went 0→1: Xen injects the
    /// upcall interrupt now.
    Upcall,
    /// Pending, selector set, but `evtchn_upcall_pending` was already 1: no new interrupt.
    UpcallAlreadyPending,
}

/// A `shared_info` page seen as atomic words.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo<'a> {
    words: &'a [AtomicU64; PAGE_WORDS],
}

impl<'a> SharedInfo<'a> {
    /// Wraps a page of atomic words.
    pub fn new(words: &'a [AtomicU64; PAGE_WORDS]) -> Self {
        SharedInfo { words }
    }

    /// The underlying words.
    pub fn words(&self) -> &'a [AtomicU64; PAGE_WORDS] {
        self.words
    }

    fn pending_word(&self, w: usize) -> &AtomicU64 {
        &self.words[off::EVTCHN_PENDING / 8 + w]
    }

    fn mask_word(&self, w: usize) -> &AtomicU64 {
        &self.words[off::EVTCHN_MASK / 8 + w]
    }

    fn split(port: u32) -> Option<(usize, u64)> {
        (port < NR_PORTS).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
    }

    /// Clears the whole page (Xen zeroes `shared_info` at domain creation).
    pub fn clear(&self) {
        for w in self.words.iter() {
            w.store(0, SeqCst);
        }
    }

    /// `evtchn_upcall_pending`.
    pub fn upcall_pending(&self) -> bool {
        self.words[off::UPCALL_PENDING / 8].load(SeqCst) & 1 != 0
    }

    /// Clears `evtchn_upcall_pending` (the guest does this first when it handles events).
    pub fn clear_upcall_pending(&self) {
        self.words[off::UPCALL_PENDING / 8].fetch_and(!1, SeqCst);
    }

    /// `evtchn_pending_sel`.
    pub fn pending_sel(&self) -> u64 {
        self.words[off::PENDING_SEL / 8].load(SeqCst)
    }

    /// Atomically swaps `evtchn_pending_sel` with 0 and returns the old value.
    pub fn take_pending_sel(&self) -> u64 {
        self.words[off::PENDING_SEL / 8].swap(0, SeqCst)
    }

    /// `evtchn_pending[w]` (0 for `w >= 64`).
    pub fn pending(&self, w: usize) -> u64 {
        if w < off::WORDS {
            self.pending_word(w).load(SeqCst)
        } else {
            0
        }
    }

    /// `evtchn_mask[w]` (all ones for `w >= 64`).
    pub fn mask(&self, w: usize) -> u64 {
        if w < off::WORDS {
            self.mask_word(w).load(SeqCst)
        } else {
            u64::MAX
        }
    }

    /// True if `port` is pending.
    pub fn is_pending(&self, port: u32) -> bool {
        Self::split(port).is_some_and(|(w, b)| self.pending(w) & b != 0)
    }

    /// True if `port` is masked.
    pub fn is_masked(&self, port: u32) -> bool {
        Self::split(port).is_none_or(|(w, b)| self.mask(w) & b != 0)
    }

    /// Atomically clears `port`'s pending bit; returns whether it was set.
    pub fn clear_pending(&self, port: u32) -> bool {
        Self::split(port).is_some_and(|(w, b)| self.pending_word(w).fetch_and(!b, SeqCst) & b != 0)
    }

    /// Atomically sets `port`'s mask bit.
    pub fn set_mask(&self, port: u32) {
        if let Some((w, b)) = Self::split(port) {
            self.mask_word(w).fetch_or(b, SeqCst);
        }
    }

    /// Atomically clears `port`'s mask bit (the hypervisor's `EVTCHNOP_unmask` then
    /// re-raises a pending event with [`SharedInfo::reraise`]).
    pub fn clear_mask(&self, port: u32) {
        if let Some((w, b)) = Self::split(port) {
            self.mask_word(w).fetch_and(!b, SeqCst);
        }
    }

    /// Hypervisor side: Xen's 2-level `set_pending` for `port` (spec §5.5): set the pending
    /// bit (stop if it was set); if unmasked and the selector bit was clear, set it and set
    /// `evtchn_upcall_pending`; report whether that was a 0→1 transition (an upcall).
    pub fn set_pending(&self, port: u32) -> Delivery {
        let Some((w, b)) = Self::split(port) else {
            return Delivery::AlreadyPending;
        };
        if self.pending_word(w).fetch_or(b, SeqCst) & b != 0 {
            return Delivery::AlreadyPending;
        }
        self.notify_word(w, b)
    }

    fn notify_word(&self, w: usize, b: u64) -> Delivery {
        if self.mask_word(w).load(SeqCst) & b != 0 {
            return Delivery::Pending;
        }
        let sel = 1u64 << w;
        if self.words[off::PENDING_SEL / 8].fetch_or(sel, SeqCst) & sel != 0 {
            return Delivery::Pending;
        }
        if self.words[off::UPCALL_PENDING / 8].fetch_or(1, SeqCst) & 1 != 0 {
            Delivery::UpcallAlreadyPending
        } else {
            Delivery::Upcall
        }
    }

    /// Hypervisor side of `EVTCHNOP_unmask` (Xen's `evtchn_2l_unmask`): clear the mask bit
    /// and, only if it *was* set and the port is still pending, raise the event again.
    pub fn unmask(&self, port: u32) -> Delivery {
        let Some((w, b)) = Self::split(port) else {
            return Delivery::Pending;
        };
        let was_masked = self.mask_word(w).fetch_and(!b, SeqCst) & b != 0;
        if !was_masked || self.pending_word(w).load(SeqCst) & b == 0 {
            return Delivery::Pending;
        }
        self.notify_word(w, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> [AtomicU64; PAGE_WORDS] {
        core::array::from_fn(|_| AtomicU64::new(0))
    }

    #[test]
    fn upcall_only_on_the_zero_to_one_transition() {
        let p = page();
        let si = SharedInfo::new(&p);
        assert_eq!(si.set_pending(5), Delivery::Upcall);
        assert_eq!(si.set_pending(5), Delivery::AlreadyPending);
        // Another port in the same word: selector already set.
        assert_eq!(si.set_pending(6), Delivery::Pending);
        // Another word: selector bit new, but upcall_pending already 1.
        assert_eq!(si.set_pending(70), Delivery::UpcallAlreadyPending);
        assert!(si.upcall_pending());
        assert_eq!(si.take_pending_sel(), 0b11);
        si.clear_upcall_pending();
        assert!(!si.upcall_pending());
    }

    #[test]
    fn masked_delivery_then_unmask_reraises() {
        let p = page();
        let si = SharedInfo::new(&p);
        si.set_mask(9);
        assert_eq!(si.set_pending(9), Delivery::Pending);
        assert!(!si.upcall_pending());
        assert_eq!(si.pending_sel(), 0);
        assert_eq!(si.unmask(9), Delivery::Upcall);
        assert!(si.upcall_pending());
        // Unmasking a port that is not pending raises nothing.
        si.set_mask(10);
        assert_eq!(si.unmask(10), Delivery::Pending);
        // Unmasking a port that was not masked raises nothing either, even if pending
        // (Xen tests and clears the mask bit first).
        si.clear_upcall_pending();
        si.take_pending_sel();
        assert_eq!(si.set_pending(11), Delivery::Upcall);
        si.clear_upcall_pending();
        si.take_pending_sel();
        assert_eq!(si.unmask(11), Delivery::Pending);
        assert!(!si.upcall_pending());
    }

    #[test]
    fn offsets_match_the_layout() {
        let p = page();
        let si = SharedInfo::new(&p);
        si.set_pending(64 + 3);
        assert_eq!(p[off::EVTCHN_PENDING / 8 + 1].load(SeqCst), 1 << 3);
        si.set_mask(1);
        assert_eq!(p[70].load(SeqCst), 1 << 1);
        assert!(!si.is_pending(NR_PORTS));
        assert!(si.is_masked(NR_PORTS));
    }
}
