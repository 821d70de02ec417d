//! Spin, then block: the waiting discipline of every protocol (docs/protocols.md §1.1).
//!
//! An event channel is one coalescing bit and a wake-up costs microseconds (a hypercall
//! and a reschedule on Xen, a futex on the emulator), while a peer that is still running
//! answers within a cache-line transfer. So a side that finds nothing to do first polls
//! the shared state a bounded number of times, and only then arms its NEED_WAKEUP flag
//! (`prepare_wait`, which fences and re-checks) and blocks. The peer notifies only when
//! that flag is set, so under streaming load almost no notification is sent.
//!
//! [`until`] is the loop, generic over the handle, the protocol step and the platform's
//! blocking call; it re-checks the shared state after every wake-up, since any wake-up
//! may be spurious or coalesced (and Xen makes the second endpoint of a static channel
//! start pending).

/// How long to poll before blocking, in polls of the shared state (each followed by a
/// CPU spin hint). Counted in polls rather than time so it needs no clock; a poll costs
/// tens of nanoseconds plus the hint (`PAUSE` is about 40–140 cycles on x86-64, `YIELD`
/// is cheaper on arm64), so [`Spin::DEFAULT`] is a few microseconds on current hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spin {
    /// Polls before arming the wake-up flag; 0 blocks as soon as there is nothing to do.
    pub polls: u32,
}

impl Spin {
    /// About 5–10 µs of polling: longer than a peer's typical gap between messages under
    /// streaming load, shorter than a wake-up.
    pub const DEFAULT: Spin = Spin { polls: 100 };
    /// Never poll: arm the flag and block at once.
    pub const NONE: Spin = Spin { polls: 0 };
}

impl Default for Spin {
    fn default() -> Spin {
        Spin::DEFAULT
    }
}

/// Counts what a wait loop did (for notification statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Polls that found nothing to do.
    pub empty_polls: u64,
    /// Calls of the blocking function.
    pub blocks: u64,
}

/// Runs `step` on `handle` until it yields a value: polls up to `spin.polls` times, then
/// calls `prepare` (the protocol's `prepare_wait`: arm NEED_WAKEUP, fence, re-check;
/// `Ok(true)` means nothing changed and blocking is safe), then `block` (the platform's
/// wait on the channel's event), and starts over. Errors of any of the three end the
/// loop. `stats` counts empty polls and blocks.
///
/// `step` returns `Ok(None)` for "nothing to do yet" (queue empty or full, nothing new).
///
/// The first look is inline; only when it finds nothing does the loop run, out of line
/// (it holds the blocking call's frame, which a message that is ready at once — the
/// streaming case — should not pay for).
#[inline]
pub fn until<H, T, E>(
    handle: &mut H,
    spin: Spin,
    stats: &mut WaitStats,
    mut step: impl FnMut(&mut H) -> Result<Option<T>, E>,
    prepare: impl FnMut(&mut H) -> Result<bool, E>,
    block: impl FnMut() -> Result<(), E>,
) -> Result<T, E> {
    if let Some(v) = step(handle)? {
        return Ok(v);
    }
    stats.empty_polls += 1;
    core::hint::spin_loop();
    until_after_a_miss(handle, spin, stats, step, prepare, block)
}

/// [`until`] after its first look found nothing: the rest of the first round of polls,
/// then prepare, block and start over.
#[inline(never)]
fn until_after_a_miss<H, T, E>(
    handle: &mut H,
    spin: Spin,
    stats: &mut WaitStats,
    mut step: impl FnMut(&mut H) -> Result<Option<T>, E>,
    mut prepare: impl FnMut(&mut H) -> Result<bool, E>,
    mut block: impl FnMut() -> Result<(), E>,
) -> Result<T, E> {
    let mut first = 1;
    loop {
        for _ in first..=spin.polls {
            if let Some(v) = step(handle)? {
                return Ok(v);
            }
            stats.empty_polls += 1;
            core::hint::spin_loop();
        }
        first = 0;
        if prepare(handle)? {
            stats.blocks += 1;
            block()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_at_once_when_ready() {
        let mut n = 0u32;
        let mut st = WaitStats::default();
        let v: Result<u32, ()> = until(
            &mut n,
            Spin::DEFAULT,
            &mut st,
            |n| Ok(Some(*n + 7)),
            |_| panic!("no prepare"),
            || panic!("no block"),
        );
        assert_eq!(v, Ok(7));
        assert_eq!(st, WaitStats::default());
    }

    #[test]
    fn spins_then_blocks_then_rechecks() {
        // Ready after 250 empty polls; Spin of 100 polls → two blocks, and `prepare`
        // says "block" each time.
        let mut polls = 0u32;
        let mut prepared = 0;
        let mut st = WaitStats::default();
        let v: Result<&str, ()> = until(
            &mut polls,
            Spin { polls: 100 },
            &mut st,
            |p| {
                *p += 1;
                Ok((*p > 250).then_some("ready"))
            },
            |_| {
                prepared += 1;
                Ok(true)
            },
            || Ok(()),
        );
        assert_eq!(v, Ok("ready"));
        assert_eq!(st.empty_polls, 250);
        assert_eq!(st.blocks, 2);
        assert_eq!(prepared, 2);
    }

    #[test]
    fn prepare_false_means_recheck_without_blocking() {
        let mut polls = 0u32;
        let mut st = WaitStats::default();
        let v: Result<u32, ()> = until(
            &mut polls,
            Spin::NONE,
            &mut st,
            |p| {
                *p += 1;
                Ok((*p == 2).then_some(*p))
            },
            |_| Ok(false),
            || panic!("must not block when prepare found work"),
        );
        assert_eq!(v, Ok(2));
        assert_eq!(st.blocks, 0);
    }

    #[test]
    fn errors_end_the_loop() {
        let mut st = WaitStats::default();
        let v: Result<(), &str> = until(
            &mut (),
            Spin::NONE,
            &mut st,
            |_| Ok(None),
            |_| Ok(true),
            || Err("blocked call failed"),
        );
        assert_eq!(v, Err("blocked call failed"));
        let v: Result<(), &str> = until(
            &mut (),
            Spin::NONE,
            &mut st,
            |_| Err("broken"),
            |_| Ok(true),
            || Ok(()),
        );
        assert_eq!(v, Err("broken"));
    }
}
