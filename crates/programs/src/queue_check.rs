//! Queue check: a producer streams checksummed variable-length messages over a `queue`
//! channel; the consumer verifies every one, in order, and reports back.
//!
//! Two `queue` channels ([`staticbus_proto::endpoint`]): `stream` (producer → consumer)
//! and `ack` (consumer → producer). Each domain's side follows from its role in `stream`.
//!
//! 1. The producer sends START (`"QCK0"`, the message count `N`, the round-trip count
//!    `R`), then `N` DATA messages: message `seq` (1-based) is [`message_len`]`(seq)`
//!    bytes (12 to 256, varying pseudo-randomly): `seq` as 8 little-endian bytes,
//!    pseudo-random payload bytes derived from `seq`, and a 32-bit FNV-1a checksum of
//!    everything before it.
//! 2. The consumer checks each DATA message: its sequence number is the next one, its
//!    length is `message_len(seq)`, its checksum matches, and its payload is the one
//!    `seq` generates. It folds every message into a 64-bit FNV-1a digest and, after
//!    `N` messages, sends SUMMARY (`"SUM0"`, count, digest, first bad sequence number or
//!    0, its elapsed time) on `ack`.
//! 3. The producer compares the count and the digest with its own.
//! 4. `R` round trips over the two queues: PING (`"PING"`, `i`) on `stream`, PONG
//!    (`"PONG"`, `i`) back on `ack`; the producer reports RTT percentiles.
//!
//! Both sides print throughput (messages/s and bytes/s, their own timing) and the
//! endpoints' notification counters, and end with `RESULT PASS …` or
//! `RESULT FAIL <reason>`.
//!
//! Arguments (all optional): `count=N` (producer; default [`DEFAULT_COUNT`]),
//! `rtt=R` (producer; default [`DEFAULT_RTT`]), `stream=NAME` and `ack=NAME` (channel
//! names; defaults `stream` and `ack`).

use crate::args::{ArgError, Args};
use crate::stats::{per_second, Nanos, Samples, Si};
use crate::{u64_at, Clock};
use core::fmt::{self, Write};
use staticbus_guest::manifest::Role;
use staticbus_guest::Platform;
use staticbus_proto::endpoint::{self, QueueRx, QueueTx};

/// Messages streamed unless `count=` says otherwise.
pub const DEFAULT_COUNT: u64 = 10_000;
/// Round trips after the stream unless `rtt=` says otherwise.
pub const DEFAULT_RTT: u64 = 1000;
/// Shortest DATA message: sequence number and checksum.
pub const MIN_LEN: usize = 12;
/// Longest DATA message.
pub const MAX_LEN: usize = 256;

const TAG_START: &[u8; 4] = b"QCK0";
const TAG_SUMMARY: &[u8; 4] = b"SUM0";
const TAG_PING: &[u8; 4] = b"PING";
const TAG_PONG: &[u8; 4] = b"PONG";
const SUMMARY_LEN: usize = 4 + 4 * 8;
const KEPT: usize = 2048;

/// SplitMix64: a well-mixed 64-bit function of `x`.
pub(crate) const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The length of DATA message `seq`: [`MIN_LEN`] to [`MAX_LEN`] bytes.
pub const fn message_len(seq: u64) -> usize {
    MIN_LEN + (mix(seq) % (MAX_LEN - MIN_LEN + 1) as u64) as usize
}

/// 32-bit FNV-1a of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Folds `bytes` into a running 64-bit FNV-1a digest.
fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Writes DATA message `seq` into `buf` and returns its length.
pub fn message(seq: u64, buf: &mut [u8; MAX_LEN]) -> usize {
    let len = message_len(seq);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let mut state = mix(seq ^ 0x5eed_5eed_5eed_5eed);
    for chunk in buf[8..len - 4].chunks_mut(8) {
        state = mix(state);
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let sum = fnv1a32(&buf[..len - 4]);
    buf[len - 4..len].copy_from_slice(&sum.to_le_bytes());
    len
}

/// What is wrong with a received DATA message, if anything.
fn check(expect: u64, got: &[u8], want: &mut [u8; MAX_LEN]) -> Option<&'static str> {
    if got.len() < MIN_LEN {
        return Some("too short");
    }
    let seq = u64_at(got, 0);
    if seq != expect {
        return Some("out of order, lost or duplicated");
    }
    if got.len() != message_len(seq) {
        return Some("wrong length");
    }
    let (body, sum) = got.split_at(got.len() - 4);
    if fnv1a32(body).to_le_bytes() != sum {
        return Some("bad checksum");
    }
    let n = message(seq, want);
    if want[..n] != *got {
        return Some("wrong contents");
    }
    None
}

fn tagged(tag: &[u8; 4], words: &[u64], buf: &mut [u8; MAX_LEN]) -> usize {
    buf[..4].copy_from_slice(tag);
    for (i, w) in words.iter().enumerate() {
        buf[4 + 8 * i..12 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    4 + 8 * words.len()
}

/// Why a run failed.
#[derive(Clone, Copy, Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Setup(&'static str),
    Endpoint(&'static str, endpoint::Error),
    Protocol(&'static str),
    Bad { seq: u64, why: &'static str },
    Summary { count: u64, digest: u64, bad: u64 },
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Setup(m) | Fail::Protocol(m) => f.write_str(m),
            Fail::Endpoint(what, e) => write!(f, "{what}: {e}"),
            Fail::Bad { seq, why } => write!(f, "message {seq}: {why}"),
            Fail::Summary { count, digest, bad } => write!(
                f,
                "consumer reports {count} messages, digest {digest:#018x}, first bad {bad}"
            ),
        }
    }
}

impl<'a> From<ArgError<'a>> for Fail<'a> {
    fn from(e: ArgError<'a>) -> Self {
        Fail::Arg(e)
    }
}

fn ep<T>(what: &'static str, r: Result<T, endpoint::Error>) -> Result<T, Fail<'static>> {
    r.map_err(|e| Fail::Endpoint(what, e))
}

/// Runs this domain's side of the queue check (see the module documentation); prints
/// progress, figures and the `RESULT` line to `out`; returns whether it passed.
pub fn run<P, C, W>(platform: &P, clock: &C, args: &Args<'_>, out: &mut W) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, clock, args, out);
    crate::result(out, r)
}

/// The summary of a passed run.
enum Passed {
    Producer { count: u64, digest: u64, rtt: u64 },
    Consumer { count: u64, digest: u64 },
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Passed::Producer { count, digest, rtt } => write!(
                f,
                "queue-check producer: {count} messages verified (digest {digest:#018x}), \
                 {rtt} round trips"
            ),
            Passed::Consumer { count, digest } => write!(
                f,
                "queue-check consumer: {count} messages in order and intact (digest {digest:#018x})"
            ),
        }
    }
}

fn run_inner<'a, P, C, W>(
    platform: &P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let stream = args.str_or("stream", "stream");
    let ack = args.str_or("ack", "ack");
    let m = platform.manifest();
    let role = m
        .channel(stream)
        .ok_or(Fail::Setup(
            "the manifest has no `stream` channel (stream=NAME to use another)",
        ))?
        .role;
    let _ = writeln!(
        out,
        "queue-check: {} (domid {}) of {:?}, Xen {}, {} of `{stream}`",
        m.domain,
        m.domid,
        m.system,
        m.xen,
        role.as_str()
    );
    match role {
        Role::Producer => {
            let count = args.u64_or("count", DEFAULT_COUNT)?;
            let rtt = args.u64_or("rtt", DEFAULT_RTT)?;
            producer(platform, clock, stream, ack, count, rtt, out)
        }
        Role::Consumer => consumer(platform, clock, stream, ack, out),
        _ => Err(Fail::Setup(
            "`stream` is not a queue channel (this domain is neither producer nor consumer)",
        )),
    }
}

fn producer<P: Platform + ?Sized, C: Clock, W: Write>(
    platform: &P,
    clock: &C,
    stream: &str,
    ack: &str,
    count: u64,
    rtt_rounds: u64,
    out: &mut W,
) -> Result<Passed, Fail<'static>> {
    let mut tx = ep("open stream", QueueTx::open(platform, stream))?;
    let _ = writeln!(
        out,
        "producer: `{stream}` queue of {} bytes (max message {}); waiting for `{ack}`",
        tx.producer().capacity(),
        tx.producer().max_message()
    );
    let mut rx = ep("open ack", QueueRx::open(platform, ack))?;
    if tx.producer().max_message() < MAX_LEN {
        return Err(Fail::Setup(
            "the stream queue is too small for 256-byte messages",
        ));
    }
    let mut buf = [0u8; MAX_LEN];
    let n = tagged(TAG_START, &[count, rtt_rounds], &mut buf);
    ep("send START", tx.send(&buf[..n]))?;

    let mut digest = DIGEST_SEED;
    let mut bytes = 0u64;
    let t0 = clock.now_ns();
    for seq in 1..=count {
        let n = message(seq, &mut buf);
        digest = fnv1a64(digest, &buf[..n]);
        bytes += n as u64;
        ep("send", tx.send(&buf[..n]))?;
    }
    let ns = clock.now_ns().saturating_sub(t0);
    let c = tx.counters();
    let _ = writeln!(
        out,
        "producer: sent {count} messages ({}B) in {}: {} msg/s, {}B/s",
        Si(bytes),
        Nanos(ns),
        Si(per_second(count, ns)),
        Si(per_second(bytes, ns))
    );
    let _ = writeln!(
        out,
        "producer: {} notifications, {} blocks, {} empty polls",
        c.notifications, c.wait.blocks, c.wait.empty_polls
    );

    let n = ep("receive SUMMARY", rx.recv(&mut buf))?;
    let msg = &buf[..n];
    if n != SUMMARY_LEN || &msg[..4] != TAG_SUMMARY {
        return Err(Fail::Protocol("expected SUMMARY on the ack queue"));
    }
    let (got_count, got_digest, bad, their_ns) = (
        u64_at(msg, 4),
        u64_at(msg, 12),
        u64_at(msg, 20),
        u64_at(msg, 28),
    );
    if got_count != count || got_digest != digest || bad != 0 {
        return Err(Fail::Summary {
            count: got_count,
            digest: got_digest,
            bad,
        });
    }
    let _ = writeln!(
        out,
        "producer: consumer verified {count} messages in {}, digest {digest:#018x} matches",
        Nanos(their_ns)
    );

    let mut rtt = Samples::<KEPT>::new();
    let t0 = clock.now_ns();
    for i in 1..=rtt_rounds {
        let t = clock.now_ns();
        let n = tagged(TAG_PING, &[i], &mut buf);
        ep("send PING", tx.send(&buf[..n]))?;
        let n = ep("receive PONG", rx.recv(&mut buf))?;
        if n != 12 || &buf[..4] != TAG_PONG || u64_at(&buf, 4) != i {
            return Err(Fail::Protocol("expected the PONG of the last PING"));
        }
        rtt.add(clock.now_ns().saturating_sub(t));
    }
    if rtt_rounds > 0 {
        let ns = clock.now_ns().saturating_sub(t0);
        let s = rtt.summary();
        let _ = writeln!(
            out,
            "producer: {rtt_rounds} queue round trips in {}",
            Nanos(ns)
        );
        let _ = writeln!(out, "producer: RTT {s}");
    }
    Ok(Passed::Producer {
        count,
        digest,
        rtt: rtt_rounds,
    })
}

fn consumer<P: Platform + ?Sized, C: Clock, W: Write>(
    platform: &P,
    clock: &C,
    stream: &str,
    ack: &str,
    out: &mut W,
) -> Result<Passed, Fail<'static>> {
    let mut rx = ep("open stream", QueueRx::open(platform, stream))?;
    let mut tx = ep("open ack", QueueTx::open(platform, ack))?;
    let mut buf = [0u8; MAX_LEN];
    let n = ep("receive START", rx.recv(&mut buf))?;
    if n != 20 || &buf[..4] != TAG_START {
        return Err(Fail::Protocol("expected START on the stream queue"));
    }
    let (count, rtt_rounds) = (u64_at(&buf, 4), u64_at(&buf, 12));
    let _ = writeln!(
        out,
        "consumer: expecting {count} messages, then {rtt_rounds} round trips"
    );

    let mut want = [0u8; MAX_LEN];
    let mut digest = DIGEST_SEED;
    let mut bytes = 0u64;
    let mut first_bad: Option<(u64, &'static str)> = None;
    let t0 = clock.now_ns();
    for seq in 1..=count {
        let n = match rx.recv(&mut buf) {
            Ok(n) => n,
            // A message longer than any DATA message: count it as bad and drop it.
            Err(endpoint::Error::Queue(staticbus_proto::queue::Error::BufferTooSmall {
                ..
            })) => {
                first_bad.get_or_insert((seq, "too long"));
                ep("drop", rx.recv_in_place(|_| ()))?;
                continue;
            }
            Err(e) => return Err(Fail::Endpoint("receive", e)),
        };
        let got = &buf[..n];
        digest = fnv1a64(digest, got);
        bytes += n as u64;
        if first_bad.is_none() {
            if let Some(why) = check(seq, got, &mut want) {
                first_bad = Some((seq, why));
            }
        }
    }
    let ns = clock.now_ns().saturating_sub(t0);
    let n = tagged(
        TAG_SUMMARY,
        &[count, digest, first_bad.map_or(0, |(s, _)| s), ns],
        &mut buf,
    );
    ep("send SUMMARY", tx.send(&buf[..n]))?;
    if let Some((seq, why)) = first_bad {
        return Err(Fail::Bad { seq, why });
    }
    let c = rx.counters();
    let _ = writeln!(
        out,
        "consumer: verified {count} messages ({}B) in {}: {} msg/s, {}B/s",
        Si(bytes),
        Nanos(ns),
        Si(per_second(count, ns)),
        Si(per_second(bytes, ns))
    );
    let _ = writeln!(
        out,
        "consumer: {} notifications, {} blocks, {} empty polls",
        c.notifications, c.wait.blocks, c.wait.empty_polls
    );

    for i in 1..=rtt_rounds {
        let n = ep("receive PING", rx.recv(&mut buf))?;
        if n != 12 || &buf[..4] != TAG_PING || u64_at(&buf, 4) != i {
            return Err(Fail::Protocol("expected the next PING"));
        }
        let n = tagged(TAG_PONG, &[i], &mut buf);
        ep("send PONG", tx.send(&buf[..n]))?;
    }
    Ok(Passed::Consumer { count, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_vary_and_check() {
        let mut buf = [0u8; MAX_LEN];
        let mut want = [0u8; MAX_LEN];
        let (mut min, mut max) = (usize::MAX, 0);
        for seq in 1..=5000 {
            let n = message(seq, &mut buf);
            assert_eq!(n, message_len(seq));
            min = min.min(n);
            max = max.max(n);
            assert_eq!(check(seq, &buf[..n], &mut want), None);
        }
        assert!(min <= MIN_LEN + 2 && max >= MAX_LEN - 2, "{min}..{max}");
        let n = message(7, &mut buf);
        assert_eq!(
            check(8, &buf[..n], &mut want),
            Some("out of order, lost or duplicated")
        );
        buf[9] ^= 1;
        assert_eq!(check(7, &buf[..n], &mut want), Some("bad checksum"));
        let n = message(7, &mut buf);
        assert_eq!(check(7, &buf[..n - 1], &mut want), Some("wrong length"));
        assert_eq!(check(7, &buf[..4], &mut want), Some("too short"));
        // A message with a valid checksum but other contents.
        buf[10] ^= 1;
        let sum = fnv1a32(&buf[..n - 4]);
        buf[n - 4..n].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(check(7, &buf[..n], &mut want), Some("wrong contents"));
    }
}
