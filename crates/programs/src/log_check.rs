//! Log check: a writer that never waits on the log appends checksummed records of varying
//! length to a `log` channel; a reader verifies every record it gets and accounts exactly
//! for every record it lost. The use case: a real-time domain logs, another domain stores
//! the records; the writer must never be held up by the reader, and the reader must know
//! exactly what it did not get.
//!
//! Three channels ([`staticbus_proto::endpoint`]): `log` (a `log`, writer → reader, one
//! reader), `ctl` (a `queue`, writer → reader) and `ack` (a `queue`, reader → writer). The
//! queues are lossless: they carry the plan, the burst boundaries, the end and the
//! reader's reports, so none of these can be lost when records are. Each domain's side
//! follows from its role in `log`.
//!
//! Record `seq` is [`record_len`]`(seq, max)` bytes (12 up to the slot's payload,
//! varying pseudo-randomly): `seq` as 8 little-endian bytes, pseudo-random bytes derived
//! from `seq`, and a 32-bit FNV-1a checksum of everything before it ([`record`]). The
//! reader checks each record it gets against its sequence number ([`check`]) and feeds
//! `(seq, missed)` to an [`Account`], which insists that `seq` is exactly the reader's
//! previous position plus the `missed` the log reports: sequence numbers strictly increase
//! and every gap is a reported loss.
//!
//! `N` records (`count=`) are split by a [`Plan`] both sides compute from `N` and the
//! ring's slot count `S` (at least `4·S` records):
//!
//! 1. **paced** (`N/4`): rounds of at most `S` records; after each round the writer waits
//!    until the reader reports that it has read up to the round's end, so the writer is
//!    never more than `S` records ahead: **0 lost**, exactly;
//! 2. **bursts** (`N/2`): the reader reports that it is paused at the writer's head, the
//!    writer appends a burst of `b` records (sizes cycling through `S+1`, `S/2`, `3S+7`,
//!    `S`, `5S/2`, the last one cut to fit), announces its end on `ctl`, and the reader
//!    reads what is left: the log reports exactly **`max(0, b − S)` lost** per burst,
//!    checked burst by burst by the reader and, cumulatively, by the writer;
//! 3. **free run** (the rest): the writer appends without any handshake while the reader
//!    reads; how many records are lost depends on scheduling and is only accounted for.
//!
//! The queues' messages (a 4-byte tag, then little-endian u64 words):
//!
//! * `ctl`: START `"LCK0"` (base = the head before the first record, `N`, `S`, slot
//!   size); BURST `"BRST"` (the head after a burst); END `"END0"` (the final head, bytes
//!   written). The reader knows the end from START and reads until its position reaches
//!   it: the last record is never overwritten (nothing follows it), and its `missed`
//!   covers every record lapped before it. END confirms the writer's head.
//! * `ack`: AT `"AT00"` (position, received, lost: "I have read or counted everything
//!   below position and wait for your next step"), sent once attached and after every
//!   round and burst; SUMMARY `"SUM0"` (received, lost, first bad sequence number + 1 or
//!   0, lost in the free run, bytes received).
//!
//! The log's append never waits; the writer program waits on `ack` only between rounds
//! and bursts, to make the first two phases deterministic. Both sides print throughput
//! (records/s, bytes/s, their own timing) and the losses, and end with `RESULT PASS …` or
//! `RESULT FAIL <reason>`.
//!
//! Arguments (all optional): `count=N` (writer; default [`DEFAULT_COUNT`]), `slot=BYTES`
//! (writer; only checked: it must equal the `slot-size` the description declares, which
//! the writer attaches with, at most [`MAX_SLOT`]), `log=`,
//! `ctl=`, `ack=` (channel names; defaults `log`, `ctl`, `ack`).

use crate::args::{ArgError, Args};
use crate::queue_check::{fnv1a32, mix};
use crate::stats::{per_second, Nanos, Si};
use crate::{u64_at, Clock};
use core::fmt::{self, Write};
use staticbus_guest::manifest::Role;
use staticbus_guest::{Events, Platform};
use staticbus_proto::endpoint::{self, LogReader, LogWriter, QueueRx, QueueTx};
use staticbus_proto::log::{self, Start, SLOT_PAYLOAD};

/// Records written unless `count=` says otherwise.
pub const DEFAULT_COUNT: u64 = 10_000;
/// Largest slot size this program accepts.
pub const MAX_SLOT: usize = 1024;
/// Largest record this program writes or reads.
pub const MAX_PAYLOAD: usize = MAX_SLOT - SLOT_PAYLOAD;
/// Shortest record: sequence number and checksum.
pub const MIN_LEN: usize = 12;

const TAG_START: &[u8; 4] = b"LCK0";
const TAG_BURST: &[u8; 4] = b"BRST";
const TAG_END: &[u8; 4] = b"END0";
const TAG_AT: &[u8; 4] = b"AT00";
const TAG_SUMMARY: &[u8; 4] = b"SUM0";
/// Largest control message: a tag and 7 words.
const MSG: usize = 4 + 7 * 8;

/// The length of record `seq` when records may be up to `max` bytes: [`MIN_LEN`] to
/// `max` (`max` is taken as at least [`MIN_LEN`] and at most [`MAX_PAYLOAD`]).
pub const fn record_len(seq: u64, max: usize) -> usize {
    let max = if max < MIN_LEN {
        MIN_LEN
    } else if max > MAX_PAYLOAD {
        MAX_PAYLOAD
    } else {
        max
    };
    MIN_LEN + (mix(seq ^ 0x6c6f_6763_6865_636b) % (max - MIN_LEN + 1) as u64) as usize
}

/// Writes record `seq` (records up to `max` bytes) into `buf` and returns its length.
pub fn record(seq: u64, max: usize, buf: &mut [u8; MAX_PAYLOAD]) -> usize {
    let len = record_len(seq, max);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let mut state = mix(seq ^ 0x0123_4567_89ab_cdef);
    for chunk in buf[8..len - 4].chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let sum = fnv1a32(&buf[..len - 4]);
    buf[len - 4..len].copy_from_slice(&sum.to_le_bytes());
    len
}

/// What is wrong with `got`, returned by the log as record `seq` (records up to `max`
/// bytes), if anything. `want` is scratch space.
pub fn check(
    seq: u64,
    got: &[u8],
    max: usize,
    want: &mut [u8; MAX_PAYLOAD],
) -> Option<&'static str> {
    if got.len() < MIN_LEN {
        return Some("too short");
    }
    if u64_at(got, 0) != seq {
        return Some("carries another sequence number");
    }
    if got.len() != record_len(seq, max) {
        return Some("wrong length");
    }
    let (body, sum) = got.split_at(got.len() - 4);
    if fnv1a32(body).to_le_bytes() != sum {
        return Some("bad checksum");
    }
    let n = record(seq, max, want);
    if want[..n] != *got {
        return Some("wrong contents");
    }
    None
}

/// Burst `i`'s size before the last one is cut to fit, for a ring of `slots` slots:
/// `S+1`, `S/2`, `3S+7`, `S`, `5S/2`, again and again (losses `1`, `0`, `2S+7`, `0`,
/// `3S/2`).
pub const fn burst_size(i: u64, slots: u64) -> u64 {
    match i % 5 {
        0 => slots + 1,
        1 => slots / 2,
        2 => 3 * slots + 7,
        3 => slots,
        _ => 2 * slots + slots / 2,
    }
}

/// Cuts `total` into pieces of `size(i)` (at least 1), the last one cut to fit.
fn pieces(total: u64, size: impl Fn(u64) -> u64) -> impl Iterator<Item = u64> {
    let (mut left, mut i) = (total, 0);
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = size(i).clamp(1, left);
        left -= n;
        i += 1;
        Some(n)
    })
}

/// How a run of `count` records over a ring of `slots` slots is split into phases (see
/// the module documentation). Both sides compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Records in all.
    pub count: u64,
    /// Slots of the ring.
    pub slots: u64,
    /// Records of the paced phase.
    pub paced: u64,
    /// Records of the burst phase.
    pub bursts: u64,
    /// Records of the free run.
    pub free: u64,
}

impl Plan {
    /// The plan for `count` records over `slots` slots; `None` if `count` is below
    /// [`Plan::min_count`] (too few records to lap the reader) or `slots` below 2.
    pub fn new(count: u64, slots: u64) -> Option<Plan> {
        if slots < 2 || count < Self::min_count(slots) {
            return None;
        }
        let (paced, bursts) = (count / 4, count / 2);
        Some(Plan {
            count,
            slots,
            paced,
            bursts,
            free: count - paced - bursts,
        })
    }

    /// The fewest records a plan takes: `4·slots`.
    pub const fn min_count(slots: u64) -> u64 {
        slots.saturating_mul(4)
    }

    /// The sizes of the paced rounds: `slots` each, the last one cut to fit.
    pub fn rounds(&self) -> impl Iterator<Item = u64> {
        let s = self.slots;
        pieces(self.paced, move |_| s)
    }

    /// The sizes of the bursts ([`burst_size`], the last one cut to fit).
    pub fn burst_sizes(&self) -> impl Iterator<Item = u64> {
        let s = self.slots;
        pieces(self.bursts, move |i| burst_size(i, s))
    }

    /// Records the reader loses in a burst of `b`: those the ring cannot hold.
    pub const fn burst_loss(&self, b: u64) -> u64 {
        b.saturating_sub(self.slots)
    }

    /// Records the reader loses in the burst phase.
    pub fn burst_losses(&self) -> u64 {
        self.burst_sizes().map(|b| self.burst_loss(b)).sum()
    }
}

/// A reader's exact accounting of the records it received and lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    next: u64,
    received: u64,
    lost: u64,
}

/// A record that does not fit the accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The record's sequence number is not the position plus the reported losses (a
    /// loss reported wrongly, or a record repeated or out of order).
    Gap {
        /// The record's sequence number.
        seq: u64,
        /// The reader's position before it.
        next: u64,
        /// The losses the log reported with it.
        missed: u64,
    },
    /// The record lies at or beyond the end the writer announced.
    Beyond {
        /// The record's sequence number.
        seq: u64,
        /// The announced end.
        end: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mismatch::Gap { seq, next, missed } => write!(
                f,
                "record {seq} at position {next} comes with {missed} reported lost"
            ),
            Mismatch::Beyond { seq, end } => {
                write!(f, "record {seq} lies beyond the announced end {end}")
            }
        }
    }
}

impl Account {
    /// Nothing read yet; the first record expected is `start`.
    pub const fn new(start: u64) -> Account {
        Account {
            next: start,
            received: 0,
            lost: 0,
        }
    }

    /// Accounts for record `seq`, returned with `missed` records reported lost before it,
    /// while records up to `end` (exclusive) are expected.
    pub fn record(&mut self, seq: u64, missed: u64, end: u64) -> Result<(), Mismatch> {
        if seq.checked_sub(self.next) != Some(missed) {
            return Err(Mismatch::Gap {
                seq,
                next: self.next,
                missed,
            });
        }
        if seq >= end {
            return Err(Mismatch::Beyond { seq, end });
        }
        self.next = seq + 1;
        self.received += 1;
        self.lost += missed;
        Ok(())
    }

    /// The next sequence number: everything below it was received or reported lost.
    pub const fn position(&self) -> u64 {
        self.next
    }

    /// Records received.
    pub const fn received(&self) -> u64 {
        self.received
    }

    /// Records reported lost.
    pub const fn lost(&self) -> u64 {
        self.lost
    }
}

/// Why a run failed.
#[derive(Clone, Copy, Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Setup(&'static str),
    TooFew {
        count: u64,
        min: u64,
    },
    Endpoint(&'static str, endpoint::Error),
    Protocol(&'static str),
    Account(Mismatch),
    Bad {
        seq: u64,
        why: &'static str,
    },
    Lost {
        phase: &'static str,
        lost: u64,
        want: u64,
    },
    Report {
        what: &'static str,
        got: u64,
        want: u64,
    },
    ReaderBad(u64),
    SlotArg {
        got: u64,
        declared: usize,
    },
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Setup(m) | Fail::Protocol(m) => f.write_str(m),
            Fail::TooFew { count, min } => {
                write!(
                    f,
                    "count={count} is too few to lap the reader: at least {min}"
                )
            }
            Fail::Endpoint(what, e) => write!(f, "{what}: {e}"),
            Fail::Account(m) => write!(f, "{m}"),
            Fail::Bad { seq, why } => write!(f, "record {seq}: {why}"),
            Fail::Lost { phase, lost, want } => {
                write!(
                    f,
                    "{phase}: {lost} records reported lost, {want} overwritten"
                )
            }
            Fail::Report { what, got, want } => {
                write!(f, "the reader reports {what} {got}, expected {want}")
            }
            Fail::ReaderBad(seq) => write!(f, "the reader found record {seq} bad"),
            Fail::SlotArg { got, declared } => write!(
                f,
                "slot={got}, but the description declares slot-size {declared} for this log \
                 (the writer attaches with the declared one: drop slot=)"
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

/// Sends `tag` and `words` (at most 7) on `tx`.
fn send<E: Events>(
    tx: &mut QueueTx<'_, E>,
    tag: &[u8; 4],
    words: &[u64],
    what: &'static str,
) -> Result<(), Fail<'static>> {
    let mut buf = [0u8; MSG];
    buf[..4].copy_from_slice(tag);
    let mut n = 4;
    for (dst, w) in buf[4..].chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&w.to_le_bytes());
        n += 8;
    }
    ep(what, tx.send(&buf[..n]))
}

/// Receives a `tag` message of `N` words on `rx`; anything else is `Protocol(what)`.
fn recv<E: Events, const N: usize>(
    rx: &mut QueueRx<'_, E>,
    tag: &[u8; 4],
    what: &'static str,
) -> Result<[u64; N], Fail<'static>> {
    let mut buf = [0u8; MSG];
    let n = ep(what, rx.recv(&mut buf))?;
    if n != 4 + 8 * N || buf[..4] != tag[..] {
        return Err(Fail::Protocol(what));
    }
    let mut words = [0u64; N];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64_at(&buf, 4 + 8 * i);
    }
    Ok(words)
}

/// The channel names.
#[derive(Clone, Copy)]
struct Names<'a> {
    log: &'a str,
    ctl: &'a str,
    ack: &'a str,
}

/// Runs this domain's side of the log check (see the module documentation); prints
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
    Writer {
        count: u64,
        burst_lost: u64,
        free_lost: u64,
    },
    Reader {
        count: u64,
        received: u64,
        lost: u64,
    },
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Passed::Writer {
                count,
                burst_lost,
                free_lost,
            } => write!(
                f,
                "log-check writer: {count} records; lost 0 paced, {burst_lost} in bursts \
                 (exact), {free_lost} free-running"
            ),
            Passed::Reader {
                count,
                received,
                lost,
            } => write!(
                f,
                "log-check reader: {count} records = {received} intact + {lost} lost, \
                 all losses reported"
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
    let names = Names {
        log: args.str_or("log", "log"),
        ctl: args.str_or("ctl", "ctl"),
        ack: args.str_or("ack", "ack"),
    };
    let m = platform.manifest();
    let role = m
        .channel(names.log)
        .ok_or(Fail::Setup(
            "the manifest has no `log` channel (log=NAME to use another)",
        ))?
        .role;
    let _ = writeln!(
        out,
        "log-check: {} (domid {}) of {:?}, Xen {}, {} of `{}`",
        m.domain,
        m.domid,
        m.system,
        m.xen,
        role.as_str(),
        names.log
    );
    match role {
        Role::Writer => {
            let count = args.u64_or("count", DEFAULT_COUNT)?;
            // The description declares the slot size; `slot=` may only repeat it.
            let slot = match args.get("slot") {
                Some(_) => Some(args.u64_or("slot", 0)?),
                None => None,
            };
            writer(platform, clock, names, count, slot, out)
        }
        Role::Reader => reader(platform, clock, names, out),
        _ => Err(Fail::Setup(
            "`log` is not a log channel (this domain is neither writer nor reader)",
        )),
    }
}

/// The writer's side of the AT handshake: the reader must be at `head`, having received
/// or lost every record since `base`, and have lost exactly `lost` of them.
fn at<E: Events>(
    ack: &mut QueueRx<'_, E>,
    base: u64,
    head: u64,
    lost: u64,
) -> Result<(), Fail<'static>> {
    let [pos, received, got_lost] = recv(ack, TAG_AT, "expected the reader's AT on `ack`")?;
    if pos != head {
        return Err(Fail::Report {
            what: "position",
            got: pos,
            want: head,
        });
    }
    if received.wrapping_add(got_lost) != head - base {
        return Err(Fail::Report {
            what: "received + lost",
            got: received.wrapping_add(got_lost),
            want: head - base,
        });
    }
    if got_lost != lost {
        return Err(Fail::Report {
            what: "lost",
            got: got_lost,
            want: lost,
        });
    }
    Ok(())
}

/// Appends records `head..head + n`; returns the bytes appended.
fn append<E: Events>(
    log: &mut LogWriter<'_, E>,
    n: u64,
    max: usize,
    buf: &mut [u8; MAX_PAYLOAD],
) -> Result<u64, Fail<'static>> {
    let mut bytes = 0;
    for _ in 0..n {
        let len = record(log.head(), max, buf);
        ep("append", log.append(&buf[..len]))?;
        bytes += len as u64;
    }
    Ok(bytes)
}

fn writer<P: Platform + ?Sized, C: Clock, W: Write>(
    platform: &P,
    clock: &C,
    names: Names<'_>,
    count: u64,
    slot: Option<u64>,
    out: &mut W,
) -> Result<Passed, Fail<'static>> {
    let mut log = ep("open log", LogWriter::open(platform, names.log))?;
    let slot_size = log.writer().slot_size();
    if let Some(want) = slot.filter(|&s| s != slot_size as u64) {
        return Err(Fail::SlotArg {
            got: want,
            declared: slot_size,
        });
    }
    if slot_size > MAX_SLOT {
        return Err(Fail::Setup(
            "the log's slot-size is above 1024 bytes, this program's largest",
        ));
    }
    if log.channel().info().readers != 1 {
        return Err(Fail::Setup("the log channel must have exactly one reader"));
    }
    let mut ctl = ep("open ctl", QueueTx::open(platform, names.ctl))?;
    let max = log.writer().max_record();
    let slots = log.writer().slots() as u64;
    let _ = writeln!(
        out,
        "writer: `{}`: {slots} slots of {slot_size} bytes, records of {MIN_LEN}..{max} bytes",
        names.log
    );
    let mut ack = ep("open ack", QueueRx::open(platform, names.ack))?;
    let plan = Plan::new(count, slots).ok_or(Fail::TooFew {
        count,
        min: Plan::min_count(slots),
    })?;
    let base = log.head();
    send(
        &mut ctl,
        TAG_START,
        &[base, count, slots, slot_size as u64],
        "send START",
    )?;
    let _ = writeln!(
        out,
        "writer: {count} records: {} paced, {} in {} bursts ({} to be lapped), {} free-running",
        plan.paced,
        plan.bursts,
        plan.burst_sizes().count(),
        plan.burst_losses(),
        plan.free
    );
    at(&mut ack, base, base, 0)?;
    let mut buf = [0u8; MAX_PAYLOAD];

    // 1. Paced: never more than `slots` records ahead of the reader.
    let (t0, mut bytes) = (clock.now_ns(), 0);
    for n in plan.rounds() {
        bytes += append(&mut log, n, max, &mut buf)?;
        at(&mut ack, base, log.head(), 0)?;
    }
    let ns = clock.now_ns().saturating_sub(t0);
    let _ = writeln!(
        out,
        "writer: paced: {} records in {} rounds in {} with handshakes: {} rec/s, {}B/s",
        plan.paced,
        plan.rounds().count(),
        Nanos(ns),
        Si(per_second(plan.paced, ns)),
        Si(per_second(bytes, ns))
    );
    let mut total = bytes;

    // 2. Bursts while the reader is paused.
    let (mut ns, mut bytes, mut lost) = (0, 0, 0);
    for b in plan.burst_sizes() {
        let t = clock.now_ns();
        bytes += append(&mut log, b, max, &mut buf)?;
        ns += clock.now_ns().saturating_sub(t);
        lost += plan.burst_loss(b);
        send(&mut ctl, TAG_BURST, &[log.head()], "send BURST")?;
        at(&mut ack, base, log.head(), lost)?;
    }
    let _ = writeln!(
        out,
        "writer: bursts: {} records ({}B) appended in {}: {} rec/s, {}B/s",
        plan.bursts,
        Si(bytes),
        Nanos(ns),
        Si(per_second(plan.bursts, ns)),
        Si(per_second(bytes, ns))
    );
    total += bytes;

    // 3. Free run: no handshake at all.
    let t = clock.now_ns();
    let bytes = append(&mut log, plan.free, max, &mut buf)?;
    let ns = clock.now_ns().saturating_sub(t);
    total += bytes;
    let _ = writeln!(
        out,
        "writer: free run: {} records ({}B) in {} without waiting: {} rec/s, {}B/s",
        plan.free,
        Si(bytes),
        Nanos(ns),
        Si(per_second(plan.free, ns)),
        Si(per_second(bytes, ns))
    );
    send(&mut ctl, TAG_END, &[log.head(), total], "send END")?;

    let [received, got_lost, bad, free_lost, got_bytes] =
        recv(&mut ack, TAG_SUMMARY, "expected SUMMARY on `ack`")?;
    let _ = writeln!(
        out,
        "writer: {} notifications; reader: {received} received ({}B of {}B), {got_lost} lost",
        log.counters().notifications,
        Si(got_bytes),
        Si(total)
    );
    if let Some(seq) = bad.checked_sub(1) {
        return Err(Fail::ReaderBad(seq));
    }
    if received.wrapping_add(got_lost) != count {
        return Err(Fail::Report {
            what: "received + lost",
            got: received.wrapping_add(got_lost),
            want: count,
        });
    }
    if free_lost > plan.free || got_lost != lost + free_lost {
        return Err(Fail::Report {
            what: "lost",
            got: got_lost,
            want: lost + free_lost.min(plan.free),
        });
    }
    Ok(Passed::Writer {
        count,
        burst_lost: lost,
        free_lost,
    })
}

/// The reader's state.
struct Read<'p, E: Events> {
    log: LogReader<'p, E>,
    acct: Account,
    max: usize,
    bytes: u64,
    retries: u64,
    first_bad: Option<(u64, &'static str)>,
    buf: [u8; MAX_PAYLOAD],
    want: [u8; MAX_PAYLOAD],
}

impl<E: Events> Read<'_, E> {
    /// Reads (waiting when there is nothing to read) until everything below `end` was
    /// received or reported lost, checking every record.
    fn until(&mut self, end: u64) -> Result<(), Fail<'static>> {
        while self.acct.position() < end {
            let r = match self.log.read(&mut self.buf) {
                Ok(r) => r,
                Err(endpoint::Error::Log(log::Error::Contended)) => {
                    self.retries += 1;
                    continue;
                }
                Err(e) => return Err(Fail::Endpoint("read", e)),
            };
            self.acct
                .record(r.seq, r.missed, end)
                .map_err(Fail::Account)?;
            self.bytes += r.len as u64;
            if self.first_bad.is_none() {
                let got = self.buf.get(..r.len).unwrap_or(&[]);
                if let Some(why) = check(r.seq, got, self.max, &mut self.want) {
                    self.first_bad = Some((r.seq, why));
                }
            }
        }
        Ok(())
    }
}

fn reader<P: Platform + ?Sized, C: Clock, W: Write>(
    platform: &P,
    clock: &C,
    names: Names<'_>,
    out: &mut W,
) -> Result<Passed, Fail<'static>> {
    // The writer appends nothing before this reader's first AT: `Latest` is the base.
    let mut log = ep(
        "open log",
        LogReader::open(platform, names.log, Start::Latest),
    )?;
    let (max, my_slots, my_slot_size) = {
        let r = log.reader();
        (r.max_record(), r.slots() as u64, r.slot_size() as u64)
    };
    let mut ctl = ep("open ctl", QueueRx::open(platform, names.ctl))?;
    let mut ack = ep("open ack", QueueTx::open(platform, names.ack))?;
    let [base, count, slots, slot_size] = recv(&mut ctl, TAG_START, "expected START on `ctl`")?;
    let mut rd = Read {
        acct: Account::new(base),
        log,
        max,
        bytes: 0,
        retries: 0,
        first_bad: None,
        buf: [0; MAX_PAYLOAD],
        want: [0; MAX_PAYLOAD],
    };
    if slots != my_slots || slot_size != my_slot_size {
        return Err(Fail::Protocol(
            "START describes another ring than this reader's",
        ));
    }
    if rd.max > MAX_PAYLOAD {
        return Err(Fail::Setup("the log's slots are above 1024 bytes"));
    }
    if rd.log.reader().position() != base {
        return Err(Fail::Protocol("the log's head is not where START says"));
    }
    let plan = Plan::new(count, slots).ok_or(Fail::TooFew {
        count,
        min: Plan::min_count(slots),
    })?;
    let _ = writeln!(
        out,
        "reader: expecting {count} records from {base}: {} paced, {} in {} bursts, {} free-running",
        plan.paced,
        plan.bursts,
        plan.burst_sizes().count(),
        plan.free
    );
    let report = |ack: &mut QueueTx<'_, P::Events<'_>>, a: &Account| {
        send(
            ack,
            TAG_AT,
            &[a.position(), a.received(), a.lost()],
            "send AT",
        )
    };
    report(&mut ack, &rd.acct)?;

    // 1. Paced.
    let t0 = clock.now_ns();
    for n in plan.rounds() {
        rd.until(rd.acct.position() + n)?;
        if rd.acct.lost() != 0 {
            return Err(Fail::Lost {
                phase: "paced",
                lost: rd.acct.lost(),
                want: 0,
            });
        }
        report(&mut ack, &rd.acct)?;
    }
    let ns = clock.now_ns().saturating_sub(t0);
    let _ = writeln!(
        out,
        "reader: paced: {} received, 0 lost, in {}: {} rec/s, {}B/s",
        rd.acct.received(),
        Nanos(ns),
        Si(per_second(rd.acct.received(), ns)),
        Si(per_second(rd.bytes, ns))
    );

    // 2. Bursts: paused while the writer appends each one.
    let (received0, lost0) = (rd.acct.received(), rd.acct.lost());
    let mut bursts = 0u64;
    for b in plan.burst_sizes() {
        let start = rd.acct.position();
        let [end] = recv(&mut ctl, TAG_BURST, "expected BURST on `ctl`")?;
        if end != start + b {
            return Err(Fail::Protocol("BURST announces another end than planned"));
        }
        let lost = rd.acct.lost();
        rd.until(end)?;
        let (got, want) = (rd.acct.lost() - lost, plan.burst_loss(b));
        if got != want {
            return Err(Fail::Lost {
                phase: "burst",
                lost: got,
                want,
            });
        }
        bursts += 1;
        report(&mut ack, &rd.acct)?;
    }
    let _ = writeln!(
        out,
        "reader: bursts: {} received, {} lost, exactly as overwritten in each of {bursts} bursts",
        rd.acct.received() - received0,
        rd.acct.lost() - lost0
    );

    // 3. Free run, up to the planned end; END confirms it.
    let (received0, lost0, bytes0, retries0) =
        (rd.acct.received(), rd.acct.lost(), rd.bytes, rd.retries);
    let end = base + count;
    let t = clock.now_ns();
    rd.until(end)?;
    let ns = clock.now_ns().saturating_sub(t);
    let free_received = rd.acct.received() - received0;
    let free_lost = rd.acct.lost() - lost0;
    let _ = writeln!(
        out,
        "reader: free run: {free_received} received, {free_lost} lost, {} retries, in {}: \
         {} rec/s, {}B/s",
        rd.retries - retries0,
        Nanos(ns),
        Si(per_second(free_received, ns)),
        Si(per_second(rd.bytes - bytes0, ns))
    );
    let [head, written] = recv(&mut ctl, TAG_END, "expected END on `ctl`")?;
    let (received, lost) = (rd.acct.received(), rd.acct.lost());
    send(
        &mut ack,
        TAG_SUMMARY,
        &[
            received,
            lost,
            rd.first_bad.map_or(0, |(s, _)| s + 1),
            free_lost,
            rd.bytes,
        ],
        "send SUMMARY",
    )?;
    if let Some((seq, why)) = rd.first_bad {
        return Err(Fail::Bad { seq, why });
    }
    if head != end {
        return Err(Fail::Protocol("END reports another head than planned"));
    }
    if received + lost != count {
        return Err(Fail::Lost {
            phase: "in all",
            lost,
            want: count - received,
        });
    }
    let c = rd.log.counters();
    let _ = writeln!(
        out,
        "reader: {}B of {}B received; {} blocks, {} empty polls",
        Si(rd.bytes),
        Si(written),
        c.wait.blocks,
        c.wait.empty_polls
    );
    Ok(Passed::Reader {
        count,
        received,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn records_vary_and_check() {
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut want = [0u8; MAX_PAYLOAD];
        for max in [16, 112, 240, MAX_PAYLOAD] {
            let (mut min, mut top) = (usize::MAX, 0);
            for seq in 0..5000 {
                let n = record(seq, max, &mut buf);
                assert_eq!(n, record_len(seq, max));
                assert_eq!(u64_at(&buf, 0), seq);
                min = min.min(n);
                top = top.max(n);
                assert_eq!(check(seq, &buf[..n], max, &mut want), None);
            }
            assert!(
                min <= MIN_LEN + 1 && top >= max - 1 && top <= max,
                "{min}..{top}"
            );
        }
        // Out-of-range maxima are clamped, never a panic.
        assert_eq!(record_len(3, 0), MIN_LEN);
        assert!(record_len(3, usize::MAX) <= MAX_PAYLOAD);

        let max = 112;
        let n = record(7, max, &mut buf);
        assert_eq!(
            check(8, &buf[..n], max, &mut want),
            Some("carries another sequence number")
        );
        assert_eq!(
            check(7, &buf[..n - 1], max, &mut want),
            Some("wrong length")
        );
        assert_eq!(check(7, &buf[..4], max, &mut want), Some("too short"));
        buf[9] ^= 1;
        assert_eq!(check(7, &buf[..n], max, &mut want), Some("bad checksum"));
        // Valid checksum, other contents.
        let sum = fnv1a32(&buf[..n - 4]);
        buf[n - 4..n].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(check(7, &buf[..n], max, &mut want), Some("wrong contents"));
    }

    #[test]
    fn plans() {
        let p = Plan::new(10_000, 256).unwrap();
        assert_eq!((p.paced, p.bursts, p.free), (2500, 5000, 2500));
        let rounds: Vec<u64> = p.rounds().collect();
        assert_eq!(rounds.len(), 10);
        assert!(rounds.iter().all(|&r| r <= 256));
        assert_eq!(rounds.iter().sum::<u64>(), 2500);
        let bursts: Vec<u64> = p.burst_sizes().collect();
        assert_eq!(
            bursts,
            [257, 128, 775, 256, 640, 257, 128, 775, 256, 640, 257, 128, 503]
        );
        assert_eq!(p.burst_losses(), 2 * (1 + 519 + 384) + 1 + 247);
        assert_eq!(p.burst_losses(), 2056);

        let p = Plan::new(100_000, 256).unwrap();
        assert_eq!((p.paced, p.bursts, p.free), (25_000, 50_000, 25_000));
        assert_eq!(p.burst_sizes().sum::<u64>(), 50_000);
        assert_eq!(p.burst_sizes().count(), 123);
        assert_eq!(p.burst_losses(), 21_712);

        assert_eq!(Plan::new(1023, 256), None);
        assert!(Plan::new(1024, 256).is_some());
        assert_eq!(Plan::new(100, 1), None);
        // Small counts still lap the reader in the burst phase.
        let p = Plan::new(8, 2).unwrap();
        assert_eq!((p.paced, p.bursts, p.free), (2, 4, 2));
        assert!(p.burst_losses() > 0);
    }

    #[test]
    fn accounting_rejects_wrong_losses_and_order() {
        let mut a = Account::new(10);
        a.record(10, 0, 100).unwrap();
        a.record(14, 3, 100).unwrap();
        assert_eq!((a.position(), a.received(), a.lost()), (15, 2, 3));
        // A loss reported too low, too high; a repeat; a record out of order.
        for (seq, missed) in [(17, 1), (16, 2), (14, 0), (13, 0)] {
            assert_eq!(
                a.record(seq, missed, 100),
                Err(Mismatch::Gap {
                    seq,
                    next: 15,
                    missed
                })
            );
        }
        assert_eq!(
            a.record(100, 85, 100),
            Err(Mismatch::Beyond { seq: 100, end: 100 })
        );
        assert_eq!((a.position(), a.received(), a.lost()), (15, 2, 3));
        a.record(99, 84, 100).unwrap();
        assert_eq!(a.received() + a.lost(), 100 - 10);
    }

    /// What the log gives a reader at `cursor` once the writer stopped at `head` (the
    /// records `head - slots..head` are in the ring): `(seq, missed)` per record.
    fn drain(cursor: u64, head: u64, slots: u64) -> Vec<(u64, u64)> {
        let oldest = head.saturating_sub(slots).max(cursor);
        (oldest..head)
            .map(|s| (s, if s == oldest { oldest - cursor } else { 0 }))
            .collect()
    }

    #[test]
    fn a_plan_run_accounts_for_every_record() {
        for (count, slots) in [(10_000, 256), (4096, 64), (8, 2), (1001, 250)] {
            let p = Plan::new(count, slots).unwrap();
            let mut a = Account::new(5);
            let mut head = 5;
            for n in p.rounds() {
                head += n;
                for (s, m) in drain(a.position(), head, slots) {
                    a.record(s, m, head).unwrap();
                }
            }
            assert_eq!((a.lost(), a.position()), (0, 5 + p.paced));
            for b in p.burst_sizes() {
                let lost = a.lost();
                head += b;
                for (s, m) in drain(a.position(), head, slots) {
                    a.record(s, m, head).unwrap();
                }
                assert_eq!(a.lost() - lost, p.burst_loss(b));
            }
            assert_eq!(a.lost(), p.burst_losses());
            head += p.free;
            for (s, m) in drain(a.position(), head, slots) {
                a.record(s, m, head).unwrap();
            }
            assert_eq!(a.position(), 5 + count);
            assert_eq!(a.received() + a.lost(), count);
        }
    }
}
