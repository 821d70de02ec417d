//! staticbus's example programs, written once against [`staticbus_guest::Platform`] and
//! run unchanged by every transport: as processes under `staticbus run` (the emulator,
//! thin wrappers in `staticbus-emu-domains`) and as bare-metal arm64 domUs on real Xen (thin
//! wrappers in `staticbus-xen-domains`).
//!
//! A program is a function taking
//!
//! * the domain's platform (`P: Platform`): its manifest, event channels and regions;
//! * a [`Clock`] for the figures it reports (wall time on the emulator, the generic
//!   timer's virtual counter on Xen; emulation numbers under QEMU);
//! * its arguments as `key=value` words ([`Args`]): the `emulate.args` of the description
//!   on the emulator, the kernel command line (`bootargs`) on Xen;
//! * a [`core::fmt::Write`] for its output lines (stdout on the emulator, the vPL011 on
//!   Xen; lines stay under 120 characters because Xen splits longer ones).
//!
//! It prints what it does and ends with exactly one line `RESULT PASS <summary>` or
//! `RESULT FAIL <reason>`, and returns whether it passed. The wrappers turn that into an
//! exit status or a domain shutdown.
//!
//! * [`ping_pong`] — round trips over a channel's event pair and two words of its region
//!   (or, without a channel, over a bare static event channel), with RTT percentiles;
//! * [`queue_check`] — a stream of checksummed variable-length messages over a `queue`
//!   channel, each verified in order by the consumer, with throughput figures, the
//!   consumer's digest checked by the producer over a second queue, then queue round
//!   trips;
//! * [`events_check`] — the doorbell semantics the protocols rely on: a burst of sends
//!   while the receiver does not look arrives (coalesced, never lost), and thousands of
//!   rings timed to land in the receiver's check-then-sleep window wake it every time;
//! * [`log_check`] — a writer that never waits appends checksummed records to a `log`
//!   channel, paced, in bursts that lap the paused reader, then free-running; the reader
//!   verifies every record it gets and accounts exactly for every one it lost;
//! * [`virtio_blk`] — `virtio-drivers`' block driver in one domain, staticbus's RAM-disk
//!   device side in the other, over a `[[virtio]]` device: checksummed random 4 KiB writes
//!   and reads, every read verified, and the disk digests of both sides;
//! * [`c_peer`] — the Rust end of the C API check: checked data to and from a C program
//!   (crates/capi) over a queue each way, a log, a latest value and a blob;
//! * [`virtio_rng`] — `virtio-drivers`' entropy driver over the virtio-msg transport: reads
//!   entropy in several requests and checks it is not degenerate (whoever serves it);
//! * [`virtio_front`] — the preamble of the three virtio frontends: open the device by
//!   name, attach waiting for its device side, DEVICE_INFO, print and check its type;
//! * `virtio_console` (feature `console`) — `virtio-drivers`' console driver over the virtio-msg transport:
//!   writes lines one byte at a time and checks each byte comes back in upper case.

#![no_std]

#[cfg(test)]
extern crate std;

pub mod args;
pub mod c_peer;
pub mod events_check;
pub mod log_check;
pub mod ping_pong;
pub mod queue_check;
pub mod stats;
pub mod virtio_blk;
#[cfg(feature = "console")]
pub mod virtio_console;
pub mod virtio_front;
pub mod virtio_rng;

pub use args::Args;

/// A monotonic clock for the figures a program reports.
pub trait Clock {
    /// Nanoseconds since an arbitrary origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// The little-endian u64 at `off` of a message, or 0 where the message is too short
/// (the callers check lengths first; a short message then fails their checks).
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// Writes the final `RESULT PASS …` / `RESULT FAIL …` line and returns whether the
/// program passed. Output errors are ignored: there is nowhere else to report them.
pub(crate) fn result<W: core::fmt::Write, E: core::fmt::Display>(
    out: &mut W,
    r: Result<impl core::fmt::Display, E>,
) -> bool {
    match r {
        Ok(summary) => {
            let _ = writeln!(out, "RESULT PASS {summary}");
            true
        }
        Err(e) => {
            let _ = writeln!(out, "RESULT FAIL {e}");
            false
        }
    }
}
