//! How the guest blocks while it waits for an event, chosen per domain on its command
//! line (`wait=poll|irq`, default `poll`), and, on bare metal, the upcall interrupt
//! handling behind `wait=irq`.
//!
//! * **`wait=poll`**: [`EventChannels::wait_any`] sleeps in `SCHEDOP_poll` on the ports it
//!   waits for. IRQs stay masked for the whole run and the GIC is left alone.
//! * **`wait=irq`**: the runtime enables the upcall PPI (INTID 31) at the guest's GIC
//!   ([`crate::gic`]), and `wait_any` sleeps through `WfiSleep` instead: `wfi` with IRQs
//!   still masked, then a short unmasked window in which the IRQ vector acknowledges the
//!   interrupt (`handle`), then masked again. Ports that are masked in `shared_info`
//!   raise no upcall, so a wait on one still polls.
//!
//! # Why no wake-up is lost with `wait=irq`
//!
//! The whole argument is in `staticbus_guest`'s event-channel module (*Blocking*). In
//! short: the driver's check clears `evtchn_upcall_pending` before it looks at the
//! selector and the pending bits, so any event it misses makes `evtchn_upcall_pending`
//! go 0→1 afterwards, and Xen injects PPI 31 on exactly that transition. IRQs are masked
//! from the check to the `wfi`, so that interrupt cannot be consumed in between: it stays
//! pending in the vGIC, and `wfi` returns when an interrupt is pending even with PSTATE.I
//! set (Xen's WFI trap does not block a vCPU with a pending, enabled, unmasked-by-priority
//! virtual interrupt). The handler only acknowledges and ends the interrupt; the driver's
//! next check consumes the event. An interrupt that arrives during the unmasked window
//! is handled there; one that arrives after it stays pending and ends the next `wfi` at
//! once (one extra round of the loop).
//!
//! [`EventChannels::wait_any`]: staticbus_guest::EventChannels::wait_any

use crate::bootargs;
use core::fmt;

/// The command-line key that selects the blocking strategy.
pub const WAIT_KEY: &str = "wait";

/// How a domain blocks while it waits for an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitMode {
    /// `SCHEDOP_poll` with IRQs masked (the default).
    #[default]
    Poll,
    /// `wfi` until the upcall interrupt (PPI 31).
    Irq,
}

impl WaitMode {
    /// The mode `wait=` on the command line asks for: `poll` (or no `wait=`) or `irq`;
    /// `Err(value)` for anything else.
    pub fn from_bootargs(args: &str) -> Result<Self, &str> {
        match bootargs::value(args, WAIT_KEY) {
            None | Some("poll") => Ok(WaitMode::Poll),
            Some("irq") => Ok(WaitMode::Irq),
            Some(other) => Err(other),
        }
    }
}

impl fmt::Display for WaitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitMode::Poll => "poll",
            WaitMode::Irq => "irq",
        })
    }
}

/// What the IRQ vector and `WfiSleep` saw so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// Upcall interrupts (INTID 31) acknowledged.
    pub upcalls: u64,
    /// Other INTIDs acknowledged (and ended; nothing else is done with them).
    pub other: u64,
    /// IRQ exceptions that found no interrupt to acknowledge (special INTIDs 1020–1023,
    /// or no GIC enabled).
    pub spurious: u64,
    /// Sleeps in `wfi` (`WfiSleep`).
    pub sleeps: u64,
}

impl fmt::Display for IrqCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} upcall IRQs, {} other, {} spurious; {} wfi sleeps",
            self.upcalls, self.other, self.spurious, self.sleeps
        )
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use hw::{counts, handle, WfiSleep};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hw {
    use super::IrqCounts;
    use crate::gic;
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use staticbus_guest::UpcallSleep;

    static UPCALLS: AtomicU64 = AtomicU64::new(0);
    static OTHER: AtomicU64 = AtomicU64::new(0);
    static SPURIOUS: AtomicU64 = AtomicU64::new(0);
    static SLEEPS: AtomicU64 = AtomicU64::new(0);

    /// Interrupts one IRQ exception acknowledges at most before it returns (more stay
    /// pending and are taken right after the return).
    const MAX_PER_EXCEPTION: usize = 8;

    /// The counts so far.
    pub fn counts() -> IrqCounts {
        IrqCounts {
            upcalls: UPCALLS.load(Relaxed),
            other: OTHER.load(Relaxed),
            spurious: SPURIOUS.load(Relaxed),
            sleeps: SLEEPS.load(Relaxed),
        }
    }

    /// The IRQ handler, called by the runtime's IRQ vector (current EL, SP_ELx) with IRQs
    /// masked and the interrupted context saved: acknowledges pending interrupts, counts
    /// them (INTID 31, the upcall, or other) and ends them. It touches no event-channel
    /// state: the interrupted wait's next check consumes the events.
    pub extern "C" fn handle() {
        for i in 0..MAX_PER_EXCEPTION {
            let Some(acked) = gic::acknowledge() else {
                SPURIOUS.fetch_add(1, Relaxed);
                return;
            };
            if acked.intid >= gic::FIRST_SPECIAL_INTID {
                if i == 0 {
                    SPURIOUS.fetch_add(1, Relaxed);
                }
                return;
            }
            if acked.intid == gic::UPCALL_INTID {
                UPCALLS.fetch_add(1, Relaxed);
            } else {
                OTHER.fetch_add(1, Relaxed);
            }
            gic::end(acked);
        }
    }

    /// The bare-metal [`UpcallSleep`]: `wfi` with IRQs masked, then IRQs unmasked for one
    /// context synchronization (the IRQ vector acknowledges the pending upcall there),
    /// then masked again. Install it (`XenPlatform::set_upcall_sleep`) only after
    /// [`gic::Gic::enable_upcall`] succeeded, and only in a program that otherwise runs
    /// with IRQs masked (the runtime does).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct WfiSleep;

    impl UpcallSleep for WfiSleep {
        fn sleep_until_upcall(&self) {
            SLEEPS.fetch_add(1, Relaxed);
            // SAFETY: WFI only waits (it returns at once if an interrupt is pending, even
            // masked). Unmasking IRQs lets the runtime's IRQ vector run between the two
            // DAIF writes: it saves and restores every register it or its Rust handler
            // may change (general-purpose, SIMD, FPSR/FPCR, ELR/SPSR, flags via SPSR) and
            // only touches the stack below `sp` and the handler's statics, so the asm is
            // not `nomem` (the statics change) and not `nostack` (the exception frame is
            // pushed below `sp`). The ISB is the context synchronization after which a
            // pending unmasked interrupt is taken.
            unsafe {
                core::arch::asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_mode_from_the_command_line() {
        assert_eq!(
            WaitMode::from_bootargs("staticbus.domain=a"),
            Ok(WaitMode::Poll)
        );
        assert_eq!(WaitMode::from_bootargs("wait=poll x=1"), Ok(WaitMode::Poll));
        assert_eq!(
            WaitMode::from_bootargs("wait=poll wait=irq"),
            Ok(WaitMode::Irq)
        );
        assert_eq!(WaitMode::from_bootargs("wait=fast"), Err("fast"));
        assert_eq!(WaitMode::from_bootargs("wait="), Err(""));
        assert_eq!(std::format!("{}", WaitMode::Irq), "irq");
        let c = IrqCounts {
            upcalls: 2001,
            other: 0,
            spurious: 1,
            sleeps: 2003,
        };
        assert_eq!(
            std::format!("{c}"),
            "2001 upcall IRQs, 0 other, 1 spurious; 2003 wfi sleeps"
        );
    }
}
