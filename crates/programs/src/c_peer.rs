//! The Rust end of the C API check (examples/c-api, examples/xen-c-api): a Rust domain
//! and a C program (over `staticbus.h`, crates/capi) pass checked data to each other over
//! all four protocols.
//!
//! For each round `i` of `count=N` (default 200), this program
//!
//! 1. publishes setpoint `i + 1` on the `latest` channel `setpoint` (16 bytes: the stamp
//!    and `3·stamp + 1`);
//! 2. sends request `i` on the queue `requests`: [`request_len`]`(i)` bytes of
//!    [`request_byte`];
//! 3. receives the C side's reply on the queue `replies`: `i` (u32), the FNV-1a 32 of the
//!    request (u32), then the request with every byte XORed with `0xa5`; checks it;
//! 4. reads the C side's record on the `log` channel `events`: `i` and the same FNV, with
//!    nothing missed.
//!
//! Then it waits for the C side's `blob` on `config`: [`summary`] of what the C side
//! saw (the count, the XOR of every request's FNV, the last setpoint it read, and a
//! 1000-byte pattern), and checks it byte for byte. The C side checks every request and
//! every setpoint it reads (intact, stamps never going back, the last one read = `N`).
//! Every number is little-endian.

use crate::{Args, Clock};
use core::fmt::{self, Write};
use staticbus_guest::Platform;
use staticbus_proto::endpoint::{self, BlobReader, LatestWriter, LogReader, QueueRx, QueueTx};
use staticbus_proto::log::Start;

/// Rounds when `count=` is not given.
pub const DEFAULT_COUNT: u64 = 200;

/// Bytes of the pattern at the end of the summary blob.
pub const SUMMARY_PATTERN: usize = 1000;

/// Length of request `i` (1 to 300 bytes).
pub fn request_len(i: u64) -> usize {
    1 + (i.wrapping_mul(37) % 300) as usize
}

/// Byte `k` of request `i`.
pub fn request_byte(i: u64, k: usize) -> u8 {
    (i.wrapping_mul(31)
        .wrapping_add(k as u64 * 7)
        .wrapping_add(1)) as u8
}

/// FNV-1a 32 of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The summary blob the C side publishes after `count` rounds whose request FNVs XOR to
/// `fnv_xor`, having last read setpoint `last_stamp`: `count` (u32), `fnv_xor` (u32),
/// `last_stamp` (u64), then [`SUMMARY_PATTERN`] bytes `(13·k + count) mod 256`.
pub fn summary(count: u32, fnv_xor: u32, last_stamp: u64) -> [u8; 16 + SUMMARY_PATTERN] {
    let mut b = [0u8; 16 + SUMMARY_PATTERN];
    b[..4].copy_from_slice(&count.to_le_bytes());
    b[4..8].copy_from_slice(&fnv_xor.to_le_bytes());
    b[8..16].copy_from_slice(&last_stamp.to_le_bytes());
    for (k, x) in b[16..].iter_mut().enumerate() {
        *x = (13 * k as u64 + u64::from(count)) as u8;
    }
    b
}

/// Why the check failed.
#[derive(Debug)]
pub enum Fail<'a> {
    /// A bad argument.
    Arg(crate::args::ArgError<'a>),
    /// An endpoint call failed.
    Endpoint(&'static str, endpoint::Error),
    /// The C side sent something else than expected.
    Data(&'static str, u64),
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Endpoint(what, e) => write!(f, "{what}: {e}"),
            Fail::Data(what, i) => write!(f, "{what} (round {i})"),
        }
    }
}

fn ep<T>(what: &'static str, r: Result<T, endpoint::Error>) -> Result<T, Fail<'static>> {
    r.map_err(|e| Fail::Endpoint(what, e))
}

/// Runs the Rust end; prints `RESULT PASS …` or `RESULT FAIL …` and returns whether it
/// passed.
pub fn run<P, C, W>(platform: &P, _clock: &C, args: &Args<'_>, out: &mut W) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, args, out);
    crate::result(out, r)
}

/// The summary of a passed run.
struct Passed(u64);

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c-peer: {} rounds with the C domain over queue, log, latest and blob checked",
            self.0
        )
    }
}

fn run_inner<'a, P, W>(platform: &P, args: &Args<'a>, out: &mut W) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    W: Write,
{
    let count = args.u64_or("count", DEFAULT_COUNT).map_err(Fail::Arg)?;
    let m = platform.manifest();
    let _ = writeln!(
        out,
        "c-peer: {} (domid {}), {count} rounds with the C domain",
        m.domain, m.domid
    );
    // The ends this domain initialises first, so the C side's opens never wait on ours.
    let mut requests = ep("open requests", QueueTx::open(platform, "requests"))?;
    let mut setpoint = ep("open setpoint", LatestWriter::open(platform, "setpoint"))?;
    let mut replies = ep("open replies", QueueRx::open(platform, "replies"))?;
    let mut events = ep(
        "open events",
        LogReader::open(platform, "events", Start::Oldest),
    )?;
    let mut config = ep("open config", BlobReader::open(platform, "config"))?;
    let _ = writeln!(out, "c-peer: all five channels open");

    let mut req = [0u8; 300];
    let mut reply = [0u8; 308];
    let mut rec = [0u8; 64];
    let mut fnv_xor = 0u32;
    for i in 0..count {
        let stamp = i + 1;
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&stamp.to_le_bytes());
        v[8..].copy_from_slice(&(3 * stamp + 1).to_le_bytes());
        ep("publish setpoint", setpoint.publish(stamp, &v))?;

        let len = request_len(i);
        for (k, b) in req[..len].iter_mut().enumerate() {
            *b = request_byte(i, k);
        }
        ep("send request", requests.send(&req[..len]))?;
        let fnv = fnv1a32(&req[..len]);
        fnv_xor ^= fnv;

        let n = ep("receive reply", replies.recv(&mut reply))?;
        let r = &reply[..n];
        if n != len + 8 {
            return Err(Fail::Data("reply of the wrong length", i));
        }
        if r[..4] != (i as u32).to_le_bytes() || r[4..8] != fnv.to_le_bytes() {
            return Err(Fail::Data("reply with the wrong round or checksum", i));
        }
        if r[8..].iter().zip(&req[..len]).any(|(a, b)| *a != b ^ 0xa5) {
            return Err(Fail::Data("reply with wrong bytes", i));
        }

        let got = ep("read events", events.read(&mut rec))?;
        if got.seq != i || got.missed != 0 || got.len != 8 {
            return Err(Fail::Data("log record out of sequence", i));
        }
        if rec[..4] != (i as u32).to_le_bytes() || rec[4..8] != fnv.to_le_bytes() {
            return Err(Fail::Data("log record with wrong contents", i));
        }
    }
    let _ = writeln!(
        out,
        "c-peer: {count} replies and log records checked; waiting for the C side's summary"
    );

    let want = summary(count as u32, fnv_xor, count);
    let mut got = [0u8; 16 + SUMMARY_PATTERN];
    let b = loop {
        match ep("read config", config.read_changed(&mut got))? {
            Some(b) => break b,
            None => continue,
        }
    };
    if b.version != 1 || b.len != want.len() || got != want {
        return Err(Fail::Data("summary blob differs", b.version));
    }
    let _ = writeln!(out, "c-peer: summary blob version 1 matches");
    Ok(Passed(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(request_len(0), 1);
        assert_eq!(request_len(8), 297);
        assert!((0..1000).all(|i| (1..=300).contains(&request_len(i))));
        assert_eq!(request_byte(0, 0), 1);
        assert_eq!(request_byte(1, 2), 46);
        let s = summary(200, 0x1234_5678, 200);
        assert_eq!(&s[..4], &200u32.to_le_bytes());
        assert_eq!(s[16], 200);
        assert_eq!(s[17], 213);
    }
}
