//! The guest side of staticbus: what a domain links to use Xen static event channels and
//! static shared memory.
//!
//! One driver for every environment. Everything transport-specific sits behind a few
//! traits:
//!
//! * [`Platform`] — a domain as the layers above see it: its [`Events`], its shared
//!   regions and its manifest. [`Channel`], the protocols and the programs use only this.
//! * [`Events`] — the event-channel seam: send, wait for any of a set of ports, take
//!   what fired, clear the bind-time pending bit, port status (docs/adr/0004). A Linux
//!   userspace transport over `/dev/xen/evtchn` implements it directly.
//! * [`TwoLevelTransport`] — what the 2-level driver needs: raw [`Hypercall`]s (the four
//!   Xen hypercalls a guest issues — `event_channel_op`, `memory_op`, `sched_op`,
//!   `console_io` — so a bare-metal `hvc #0xEA1` transport and the staticbus emulator
//!   both fit), the `shared_info` page, the domain's [`FiredSet`] and how it sleeps.
//!   Those transports hand out [`EventChannels`] as their [`Events`].
//!
//! On top of them, shared by all transports:
//!
//! * [`ops`] — safe typed wrappers of the hypercalls, returning [`Errno`];
//! * [`EventChannels`] — the 2-level event-channel driver on `shared_info` (send, mask,
//!   unmask, drain in Linux's order, block, poll, wait — sleeping in `SCHEDOP_poll` or,
//!   with an [`UpcallSleep`] from the transport, until the upcall interrupt), using
//!   [`staticbus_abi::shared_info::SharedInfo`] for the bit layout;
//! * [`Region`] — bounds-checked volatile and atomic access to a shared region;
//! * [`Channel`] — a channel from the manifest: its region and its peers' ports;
//! * [`Console`] — a line-buffered `core::fmt::Write` over Xen's console.
//!
//! ```no_run
//! # use staticbus_guest::{Channel, Platform};
//! # fn demo<P: Platform>(platform: &P) -> Result<(), Box<dyn std::error::Error>> {
//! let logs = Channel::open(platform, "logs")?;
//! logs.clear_initial(); // Xen marks the second-bound end pending at boot
//! logs.region().write_bytes(0, b"hello")?;
//! logs.notify_all()?;
//! let peer = logs.wait()?; // then re-check the shared state
//! # let _ = peer; Ok(()) }
//! ```
//!
//! What a guest sees of static event channels (spec §1.5): its ports are already
//! INTERDOMAIN at boot, it never binds them and **never closes them** (Xen would free the
//! port for good), and the end Xen binds second starts with its port pending.

#![no_std]

#[cfg(any(test, feature = "fake"))]
extern crate std;

mod channel;
mod console;
mod events;
mod evtchn;
mod hypercall;
pub mod ops;
mod platform;
mod region;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use channel::{Channel, OpenError, PlatformChannel};
pub use console::{Console, CONSOLE_LINE};
pub use events::Events;
pub use evtchn::{EventChannels, FiredSet, UpcallSleep, MAX_DRAIN_ROUNDS, MAX_POLL_PORTS};
pub use hypercall::{Errno, Hypercall};
pub use platform::{Platform, TwoLevelTransport};
pub use region::{
    block_copy, calibrate_block_copy, set_block_copy, set_platform_copy, BlockCopy, Calibration,
    OutOfBounds, PlatformCopy, Region, Word, BLOCK_COPY_MIN, CALIBRATION_BLOCKS,
};
pub use staticbus_abi::shared_info::SharedInfo;
pub use staticbus_manifest as manifest;
