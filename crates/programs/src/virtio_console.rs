//! Virtio console frontend: `virtio-drivers`' `VirtIOConsole`, unchanged, over the
//! virtio-msg transport of `staticbus-virtio-msg` on a shared region and a static event
//! channel, every ring and buffer inside the region (docs/virtio.md). Whoever serves the
//! device is invisible here; the check assumes a backend whose terminal writes back every
//! byte it receives in upper case (a Linux domain's `linux-vhost-bridge terminal=upper-echo`
//! with rust-vmm's vhost-device-console, examples/xen-linux-virtio-console).
//!
//! It waits for the device side and writes `lines` lines, [`line`]`(i, lines)` followed by
//! `\n` for `i` in `1..=lines`, one byte at a time; after each byte it waits (on the
//! doorbell) for one byte of input, which must be the byte sent in upper case. Each line
//! received is printed as `virtio-console: received "…"`, then
//! `RESULT PASS virtio-console lines=… sent=… received=… digest=… in … (… B/s)` (the digest
//! is the 64-bit FNV-1a of the bytes received; the lines sent are the same for every run).
//!
//! One byte in flight each way: vhost-device-console 0.1.0 adds one used element per byte
//! to a single receive buffer, so input of several bytes in one read would reach the driver
//! corrupted. And the driver gives the daemon its next receive buffer only `settle-ms`
//! after a byte arrived: after filling a buffer the daemon re-checks the available ring,
//! and a buffer that is back already then is taken off the ring and never returned
//! (docs/virtio.md, crates/vhost-bridge/tests/console.rs). The pause is a workaround of
//! that defect, not a measurement; it spins on the clock (the bare-metal platform has no
//! sleep), as `VirtIOConsole::send` spins for its transmit buffer.
//!
//! Arguments: `device=NAME` (the `[[virtio]]` device of this domain's manifest, opened as
//! its frontend; default `console`), `lines=N` (default [`DEFAULT_LINES`], at most
//! [`MAX_LINES`]), `settle-ms=N` (default [`DEFAULT_SETTLE_MS`]).

use crate::args::{ArgError, Args};
use crate::stats::{per_second, Nanos};
use crate::virtio_front::{open_frontend, Front, FrontError, Kind};
use crate::Clock;
use core::fmt::{self, Write};
use staticbus_guest::{Events, Platform};
use staticbus_virtio_msg::frontend::{CallError, Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use virtio_drivers::device::console::VirtIOConsole;

/// Lines written unless `lines=` says otherwise.
pub const DEFAULT_LINES: u64 = 2;
/// Most lines (the check keeps each received line in a fixed buffer).
pub const MAX_LINES: u64 = 100;
/// Pause before a receive buffer goes back to the daemon unless `settle-ms=` says otherwise.
pub const DEFAULT_SETTLE_MS: u64 = 20;
/// Longest line [`line`] makes.
const LINE_MAX: usize = 64;

/// Line `i` of `n` as the frontend writes it (without its `\n`).
pub fn line(i: u64, n: u64, buf: &mut LineBuf) -> &str {
    buf.len = 0;
    let _ = write!(buf, "console line {i} of {n} from bare metal");
    buf.as_str()
}

/// A fixed buffer for one line.
pub struct LineBuf {
    bytes: [u8; LINE_MAX],
    len: usize,
}

impl LineBuf {
    /// An empty line.
    pub const fn new() -> Self {
        LineBuf {
            bytes: [0; LINE_MAX],
            len: 0,
        }
    }

    /// The line so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    fn push(&mut self, b: u8) -> bool {
        match self.bytes.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if !self.push(b) {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// The device type this frontend drives.
const KIND: Kind = Kind {
    tag: "virtio-console",
    device_id: 3,
    what: "a console",
};

/// The frontend's DMA pool (one device per program).
struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

/// Why the check failed.
#[derive(Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Usage(&'static str),
    Front(FrontError<'a>),
    Call(&'static str, CallError),
    Driver(&'static str, virtio_drivers::Error),
    Gone { byte: u8, again: Option<u8> },
    Wrong { at: u64, sent: u8, got: u8 },
    Long { line: u64 },
}

impl<'a> From<FrontError<'a>> for Fail<'a> {
    fn from(e: FrontError<'a>) -> Self {
        Fail::Front(e)
    }
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "virtio-console: {e}"),
            Fail::Usage(s) => write!(f, "virtio-console: {s}"),
            Fail::Front(e) => write!(f, "virtio-console: {e}"),
            Fail::Call(what, e) => write!(f, "virtio-console: {what}: {e}"),
            Fail::Driver(what, e) => write!(f, "virtio-console: {what}: {e}"),
            Fail::Gone { byte, again } => write!(
                f,
                "virtio-console: the byte seen ({byte:#04x}) is gone after the pause ({again:?})"
            ),
            Fail::Wrong { at, sent, got } => write!(
                f,
                "virtio-console: byte {at}: sent {sent:#04x}, received {got:#04x}, not its upper case"
            ),
            Fail::Long { line } => write!(
                f,
                "virtio-console: received line {line} is longer than {LINE_MAX} bytes"
            ),
        }
    }
}

/// What a passed run did.
struct Passed {
    lines: u64,
    sent: u64,
    received: u64,
    digest: u64,
    ns: u64,
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-console lines={} sent={} received={} digest={:#018x} in {} ({} B/s)",
            self.lines,
            self.sent,
            self.received,
            self.digest,
            Nanos(self.ns),
            per_second(self.received, self.ns)
        )
    }
}

/// Runs the frontend (see the module documentation); prints its `RESULT` line.
pub fn run<P, C, W>(platform: &P, clock: &C, args: &Args<'_>, out: &mut W) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, clock, args, out);
    crate::result(out, r)
}

fn run_inner<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let lines = args.u64_or("lines", DEFAULT_LINES).map_err(Fail::Arg)?;
    let settle_ms = args
        .u64_or("settle-ms", DEFAULT_SETTLE_MS)
        .map_err(Fail::Arg)?;
    if lines == 0 || lines > MAX_LINES {
        return Err(Fail::Usage("lines= must be 1 to 100"));
    }
    let Front { dev, link, .. } = open_frontend(platform, clock, args, "console", KIND, out)?;
    let (port, guest_base) = (dev.port, dev.guest_base);
    Pool::pool().attach(*link.region(), guest_base);
    let r = exchange(
        &link,
        clock,
        lines,
        settle_ms.saturating_mul(1_000_000),
        out,
    );
    Pool::pool().detach();
    link.detach();
    // Wake the backend: it ends once the frontend has detached.
    let _ = platform.events().send(port);
    r
}

type Console<'l, E> = VirtIOConsole<RegionHal<Pool>, MsgTransport<'l, E>>;

/// The next byte of input, waiting on the link's doorbell for it; the receive buffer
/// goes back to the daemon `settle_ns` after the byte arrived.
fn next_byte<'a, E: Events, C: Clock>(
    console: &mut Console<'_, E>,
    link: &Link<E>,
    clock: &C,
    settle_ns: u64,
) -> Result<u8, Fail<'a>> {
    loop {
        match console.recv(false) {
            Ok(Some(b)) => {
                let t = clock.now_ns();
                while clock.now_ns().saturating_sub(t) < settle_ns {
                    core::hint::spin_loop();
                }
                return match console.recv(true) {
                    Ok(Some(again)) if again == b => Ok(b),
                    Ok(again) => Err(Fail::Gone { byte: b, again }),
                    Err(e) => Err(Fail::Driver("receiving", e)),
                };
            }
            Ok(None) => {
                link.wait_used()
                    .map_err(|e| Fail::Call("waiting for input", e))?;
            }
            Err(e) => return Err(Fail::Driver("receiving", e)),
        }
    }
}

fn exchange<'a, E: Events, C: Clock, W: Write>(
    link: &Link<E>,
    clock: &C,
    lines: u64,
    settle_ns: u64,
    out: &mut W,
) -> Result<Passed, Fail<'a>> {
    let transport = link
        .transport()
        .map_err(|_| Fail::Usage("the device restarted during initialisation"))?;
    let mut console =
        Console::new(transport).map_err(|e| Fail::Driver("driver initialisation", e))?;
    let _ = writeln!(
        out,
        "virtio-console: driver up; writing {lines} line(s), one byte at a time"
    );
    let (mut sent, mut received) = (0u64, 0u64);
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut text = LineBuf::new();
    let mut got = LineBuf::new();
    let t0 = clock.now_ns();
    for i in 1..=lines {
        line(i, lines, &mut text);
        got.len = 0;
        for &b in text.as_str().as_bytes().iter().chain(b"\n") {
            console.send(b).map_err(|e| Fail::Driver("sending", e))?;
            sent += 1;
            let r = next_byte(&mut console, link, clock, settle_ns)?;
            received += 1;
            digest = (digest ^ u64::from(r)).wrapping_mul(0x0000_0100_0000_01b3);
            if r != b.to_ascii_uppercase() {
                return Err(Fail::Wrong {
                    at: sent - 1,
                    sent: b,
                    got: r,
                });
            }
            if r != b'\n' && !got.push(r) {
                return Err(Fail::Long { line: i });
            }
        }
        let _ = writeln!(out, "virtio-console: received \"{}\"", got.as_str());
    }
    let ns = clock.now_ns().saturating_sub(t0);
    Ok(Passed {
        lines,
        sent,
        received,
        digest,
        ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_fit() {
        let mut b = LineBuf::new();
        assert_eq!(line(1, 2, &mut b), "console line 1 of 2 from bare metal");
        assert!(line(MAX_LINES, MAX_LINES, &mut b).len() < LINE_MAX);
    }
}
