//! Single-producer single-consumer queue of variable-length messages on a shared region
//! (docs/protocols.md §3).
//!
//! ```text
//! 0x00 common header (protocol id PROTO_QUEUE, version VERSION)
//! 0x40 producer line: 0x40 u32 state  0x44 u32 flags (bit 0: producer waits for space)
//!                     0x48 u64 epoch  0x50 u64 wake_tail
//! 0x80 consumer line: 0x80 u32 state  0x84 u32 flags (bit 0: consumer waits for data)
//!                     0x88 u64 epoch
//! 0xc0 head line:     0xc0 u64 head (producer)
//! 0x100 tail line:    0x100 u64 tail (consumer)
//! 0x140 data area: `capacity` bytes, the largest power of two that fits (>= 64)
//! ```
//!
//! Each index has a cache line of its own, apart from the flags the peer reads after
//! every publication: publishing an index then touches a line the peer seldom reads, so
//! the full fence that follows (docs/protocols.md §3.5) seldom waits for the peer's
//! cache, and both sides keep the flag lines cached.
//!
//! `head` and `tail` are free-running byte counters (wrapping at 2^64); a record starts at
//! data offset `index & (capacity - 1)`. A record is an 8-byte header (u32 length, u32
//! [`stamp`] of the record's index) followed by the payload padded to a multiple of 8;
//! records are contiguous, and when one does not fit before the end of the data area the
//! producer writes a wrap marker (length `0xffff_ffff`, stamped likewise) and puts the
//! record at offset 0.
//!
//! # Commit stamps
//!
//! The header's second word commits the record: the producer writes the payload (and,
//! when wrapping, the record's header at offset 0), then **clears** the 8 bytes after the
//! record (the next record's header position), and last stores the stamped header at its
//! head (the record's, or the wrap marker's) with release ordering. So at a record
//! boundary the consumer reaches it finds either bytes without the stamp of that index
//! (nothing committed there yet) or the header of the record committed there: stale bytes
//! of an earlier lap or of an older payload that happen to look like a header for that
//! index were cleared by the commit of the record ending there (docs/protocols.md §3.2
//! proves it). The consumer therefore finds the next message from its own tail alone —
//! one cache-line transfer on the fast path — and does not need the published `head` to
//! consume; it still validates every header it reads.
//!
//! The producer keeps those 8 bytes free (it writes at most `capacity - 8` bytes ahead of
//! the tail), and never writes `capacity` bytes or more past the head it last published.
//!
//! # Restarts
//!
//! The indices live in shared memory; each side keeps a private copy of its own index and
//! only ever moves it forward. After a restart, a side re-attaches with
//! [`Producer::attach`] / [`Consumer::attach`] and carries on from the shared state.
//!
//! * Consumer restarts between messages: nothing is lost or delivered twice (the tail
//!   moves only in [`Msg::release`]).
//! * Consumer dies after [`Consumer::peek`] but before [`Msg::release`]: that message is
//!   delivered again after the restart (at-least-once for the message in hand).
//! * Producer dies after [`Producer::reserve`] but before the stamp store in
//!   [`Grant::commit`]: the record is discarded; the consumer never sees it.
//! * Producer restarts between messages (also with committed records it had not published
//!   yet, which the consumer may already have consumed): every committed message stays
//!   queued exactly once, because the producer continues at the end of the chain of
//!   stamped records that starts at the published head.
//!
//! # Notifications
//!
//! A side that wants to block calls `prepare_wait`, which sets its NEED_WAKEUP flag,
//! issues a full fence and re-checks the shared state (the consumer: the stamp at its
//! tail, and the head); it may block only if that returns `true`. [`Grant::commit`] and
//! [`Msg::release`] return `true` when the peer's flag is set, and only then should the
//! caller notify (e.g. `Channel::notify`). Any wake-up may be spurious or coalesced:
//! re-check the queue after every one.

use crate::header::{
    self, Field, HeaderError, Layout, Side, SideStatus, State, DATA_MIN_OFFSET, PROTO_QUEUE,
};
use core::fmt;
use core::sync::atomic::{fence, Ordering};
use staticbus_guest::Region;

/// Layout version of the queue.
pub const VERSION: u32 = 2;
/// The queue's fields as byte ranges (smoltcp's `mod field`): the `OFF_*` offsets the
/// code uses and the hashed [`FIELDS`] table are both built from these. Record fields
/// are relative to the record.
pub mod field {
    use crate::header::field::{at, span, SIDE0, SIDE1, SIDE_EPOCH, SIDE_FLAGS, SIDE_STATE};
    use core::ops::Range;

    /// Producer's u32 state word.
    pub const PRODUCER_STATE: Range<usize> = at(SIDE0, SIDE_STATE);
    /// Producer's u32 flags word (NEED_WAKEUP).
    pub const PRODUCER_FLAGS: Range<usize> = at(SIDE0, SIDE_FLAGS);
    /// Producer's u64 epoch.
    pub const PRODUCER_EPOCH: Range<usize> = at(SIDE0, SIDE_EPOCH);
    /// Producer's u64 wake-up threshold.
    pub const WAKE_TAIL: Range<usize> = span(SIDE0 + 0x10, 8);
    /// Consumer's u32 state word.
    pub const CONSUMER_STATE: Range<usize> = at(SIDE1, SIDE_STATE);
    /// Consumer's u32 flags word (NEED_WAKEUP).
    pub const CONSUMER_FLAGS: Range<usize> = at(SIDE1, SIDE_FLAGS);
    /// Consumer's u64 epoch.
    pub const CONSUMER_EPOCH: Range<usize> = at(SIDE1, SIDE_EPOCH);
    /// Producer's u64 published head, alone on its line.
    pub const HEAD: Range<usize> = span(0xc0, 8);
    /// Consumer's u64 tail, alone on its line.
    pub const TAIL: Range<usize> = span(0x100, 8);
    /// The data area (its length is the region's: 0 in the table).
    pub const DATA: Range<usize> = span(0x140, 0);
    /// A record's u32 length (or WRAP).
    pub const RECORD_LEN: Range<usize> = span(0, 4);
    /// A record's u32 commit stamp.
    pub const RECORD_STAMP: Range<usize> = span(4, 4);
    /// A record's payload.
    pub const RECORD_PAYLOAD: Range<usize> = span(8, 0);
}

/// Offset of the producer's u32 flags word.
pub const OFF_PRODUCER_FLAGS: usize = field::PRODUCER_FLAGS.start;
/// Offset of the producer's u64 wake-up threshold: while the producer's NEED_WAKEUP
/// flag is set, the consumer notifies it only once the tail has reached this index.
pub const OFF_WAKE_TAIL: usize = field::WAKE_TAIL.start;
/// Offset of the consumer's u32 flags word.
pub const OFF_CONSUMER_FLAGS: usize = field::CONSUMER_FLAGS.start;
/// Offset of the producer's u64 head index, alone on its cache line (0xc0..0x100).
pub const OFF_HEAD: usize = field::HEAD.start;
/// Offset of the consumer's u64 tail index, alone on its cache line (0x100..0x140).
pub const OFF_TAIL: usize = field::TAIL.start;
/// Offset of the data area, after the two index lines.
pub const DATA_OFFSET: usize = field::DATA.start;
const _: () = assert!(DATA_OFFSET == DATA_MIN_OFFSET + 2 * header::LINE);
/// Flag bit 0: this side is about to block and wants a notification.
pub const NEED_WAKEUP: u32 = 1;
/// Record header size (u32 length, u32 [`stamp`]). The producer also keeps this many
/// bytes free after its last record: the next record's header position, which it clears
/// before each commit.
pub const RECORD_HEADER: usize = field::RECORD_PAYLOAD.start;
const _: () = assert!(field::RECORD_LEN.start == 0 && field::RECORD_STAMP.end == RECORD_HEADER);
/// Record alignment (records and padding are multiples of this).
pub const RECORD_ALIGN: usize = 8;
/// Record length value marking a wrap: the rest of the data area is skipped.
pub const WRAP: u32 = 0xffff_ffff;
/// Smallest data area.
pub const MIN_CAPACITY: usize = 64;
/// Largest message length regardless of capacity.
pub const MAX_MESSAGE_LIMIT: usize = 1 << 30;

/// The queue's field table, input of the layout hash.
///
/// These follow [`header::COMMON_FIELDS`] in the hashed table.
pub const FIELDS: &[Field] = &[
    Field::new("producer.state", field::PRODUCER_STATE),
    Field::new("producer.flags", field::PRODUCER_FLAGS),
    Field::new("producer.epoch", field::PRODUCER_EPOCH),
    Field::new("producer.wake_tail", field::WAKE_TAIL),
    Field::new("consumer.state", field::CONSUMER_STATE),
    Field::new("consumer.flags", field::CONSUMER_FLAGS),
    Field::new("consumer.epoch", field::CONSUMER_EPOCH),
    Field::new("producer.head", field::HEAD),
    Field::new("consumer.tail", field::TAIL),
    Field::new("data", field::DATA),
    Field::new("record.len", field::RECORD_LEN),
    Field::new("record.stamp", field::RECORD_STAMP),
    Field::new("record.payload", field::RECORD_PAYLOAD),
];

/// The queue's layout hash.
pub const LAYOUT_HASH: u64 = header::protocol_layout_hash(FIELDS);

/// The data-area capacity for a region of `len` bytes: the largest power of two that fits
/// after the header, or `None` if that is below [`MIN_CAPACITY`].
pub fn capacity_for(len: usize) -> Option<usize> {
    let room = len.checked_sub(DATA_OFFSET)?;
    if room < MIN_CAPACITY {
        return None;
    }
    Some(1usize << (usize::BITS - 1 - room.leading_zeros()))
}

/// The largest message length a queue of `capacity` bytes accepts: `capacity / 2 - 8`
/// (so a record, a wrap marker before it and the cleared header after it always fit in an
/// empty queue wherever its indices stand), at most [`MAX_MESSAGE_LIMIT`].
pub fn max_message(capacity: usize) -> usize {
    (capacity / 2 - RECORD_HEADER).min(MAX_MESSAGE_LIMIT)
}

/// The commit stamp of a record header (or wrap marker) at byte index `index`: the
/// bitwise NOT of the index's low 32 bits. Indices are multiples of 8, so a stamp always
/// has its low three bits set and is never 0: a zero-filled header never looks committed.
pub const fn stamp(index: u64) -> u32 {
    !(index as u32)
}

/// The queue layout for a region of `len` bytes.
pub fn layout(len: usize) -> Result<Layout, HeaderError> {
    let cap = capacity_for(len).ok_or(HeaderError::BadRegion { len })?;
    Ok(Layout {
        protocol: PROTO_QUEUE,
        version: VERSION,
        data_offset: DATA_OFFSET,
        data_size: cap,
        hash: LAYOUT_HASH,
    })
}

/// How the peer broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The peer's index is not a multiple of 8.
    IndexMisaligned(u64),
    /// The peer's index is more than the capacity away from ours.
    IndexOutOfRange(u64),
    /// The peer's index moved backwards.
    IndexWentBack(u64),
    /// A committed record whose length is above the maximum, or which reaches past the
    /// end of the data area, past a published head, or further past the tail than the
    /// producer may write.
    BadRecord(u32),
    /// The published head (this value) is past the tail, but the header at the tail does
    /// not carry its stamp: the producer stamps every record before it publishes the head.
    Unstamped(u64),
    /// A committed wrap marker at offset 0, or not followed by a committed record at
    /// offset 0.
    BadWrap,
    /// The peer's flags word has undefined bits set.
    BadFlags(u32),
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::IndexMisaligned(i) => write!(f, "peer index {i:#x} misaligned"),
            Broken::IndexOutOfRange(i) => write!(f, "peer index {i:#x} out of range"),
            Broken::IndexWentBack(i) => write!(f, "peer index {i:#x} went backwards"),
            Broken::BadRecord(l) => write!(f, "bad record length {l:#x}"),
            Broken::Unstamped(h) => write!(f, "head {h:#x} published past an unstamped record"),
            Broken::BadWrap => write!(f, "bad wrap marker"),
            Broken::BadFlags(x) => write!(f, "peer flags {x:#x} undefined"),
        }
    }
}

/// A queue error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is missing or does not match this side's layout (attach only).
    Header(HeaderError),
    /// The peer broke the protocol; the handle is unusable from now on (sticky).
    PeerBroken(Broken),
    /// Not enough free space for the record now; retry after the consumer releases.
    Full,
    /// The message can never fit: `len` exceeds `max`.
    TooLarge {
        /// Requested length.
        len: usize,
        /// [`max_message`] for this queue.
        max: usize,
    },
    /// The buffer given to [`Consumer::recv`] is smaller than the message (`len`); the
    /// message stays queued.
    BufferTooSmall {
        /// The message length.
        len: usize,
    },
    /// A write or read inside a [`Grant`] or [`Msg`] reaches past the message.
    OutOfBounds,
    /// `prepare_wait` was called with batched index updates not yet published: call
    /// `flush` (and notify the peer if it says so) first, or both sides could wait for
    /// each other.
    Unflushed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Header(e) => write!(f, "queue header: {e}"),
            Error::PeerBroken(b) => write!(f, "peer broken: {b}"),
            Error::Full => write!(f, "queue full"),
            Error::TooLarge { len, max } => write!(f, "message of {len} bytes > max {max}"),
            Error::BufferTooSmall { len } => write!(f, "buffer too small for {len} bytes"),
            Error::OutOfBounds => write!(f, "access outside the message"),
            Error::Unflushed => write!(f, "batched index updates not flushed before waiting"),
        }
    }
}

impl core::error::Error for Error {}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Error {
        Error::Header(e)
    }
}

fn pad(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// A record header as the u64 word stored at the record's position (little-endian:
/// length in bytes 0..4, stamp in bytes 4..8).
const fn header_word(len: u32, stamp: u32) -> u64 {
    ((stamp as u64) << 32) | len as u64
}

/// The data-area region offset of byte index `index`.
#[inline]
fn data_at(cap: u64, index: u64) -> usize {
    DATA_OFFSET + (index & (cap - 1)) as usize
}

/// Loads the header at byte index `index` (acquire): `(length, stamp)`. A header that
/// cannot be read (impossible once attached) reads as zero, i.e. not committed.
#[inline]
fn load_header(region: &Region, cap: u64, index: u64) -> (u32, u32) {
    let w = region
        .load_le::<u64>(data_at(cap, index), Ordering::Acquire)
        .unwrap_or(0);
    (w as u32, (w >> 32) as u32)
}

/// A committed record, as found from its header.
#[derive(Clone, Copy, Debug)]
struct Rec {
    /// Data-area position of the record header (0 after a wrap marker).
    pos: u64,
    /// Payload length.
    len: u32,
    /// Bytes from the record's index (or its wrap marker's) to the next record's index.
    advance: u64,
}

/// The record committed at index `at`: `Ok(None)` if the header there does not carry
/// `stamp(at)` (nothing committed yet), `Err` if it does but the record is malformed (a
/// wrap marker at offset 0 or not followed by a committed record at offset 0, a length
/// above `max`, a record crossing the end of the data area). At most two header reads.
#[inline(always)]
fn committed(region: &Region, cap: u64, max: usize, at: u64) -> Result<Option<Rec>, Broken> {
    let (mut len, st) = load_header(region, cap, at);
    if st != stamp(at) {
        return Ok(None);
    }
    let mut pos = at & (cap - 1);
    let mut skip = 0;
    if len == WRAP {
        if pos == 0 {
            return Err(Broken::BadWrap);
        }
        skip = cap - pos;
        let (l, st) = load_header(region, cap, at.wrapping_add(skip));
        if st != stamp(at.wrapping_add(skip)) || l == WRAP {
            return Err(Broken::BadWrap);
        }
        (len, pos) = (l, 0);
    }
    if len as usize > max {
        return Err(Broken::BadRecord(len));
    }
    let size = (RECORD_HEADER + pad(len as usize)) as u64;
    if pos + size > cap {
        return Err(Broken::BadRecord(len));
    }
    Ok(Some(Rec {
        pos,
        len,
        advance: skip + size,
    }))
}

/// The end of the chain of committed records that starts at `from` (the published head),
/// for a producer that re-attaches with the consumer's tail at `tail`: each record must
/// end at least 8 bytes before `tail + cap` and before `from + cap` (no producer writes
/// further). Stops at the first header that is not a well-formed committed record, and
/// says whether that header carries the stamp of its index all the same (a record it
/// refused, which only a hostile or corrupted peer leaves). Each step advances at least 8
/// bytes within less than `cap`: at most `cap / 8` steps.
fn chain_end(region: &Region, cap: u64, max: usize, from: u64, tail: u64) -> (u64, bool) {
    // `tail` is within `cap - 8` of `from` either way (checked by the caller).
    let room = cap.min(tail.wrapping_sub(from).wrapping_add(cap));
    let mut h = from;
    loop {
        match committed(region, cap, max, h) {
            Ok(None) => return (h, false),
            Ok(Some(r)) if h.wrapping_sub(from) + r.advance + (RECORD_HEADER as u64) <= room => {
                h = h.wrapping_add(r.advance);
            }
            _ => return (h, true),
        }
    }
}

/// What both handles share.
struct Core {
    region: Region,
    side: Side,
    cap: u64,
    max: usize,
    epoch: u64,
    broken: Option<Broken>,
    waiting: bool,
    /// Publish the own index every `batch` commits/releases (>= 1).
    batch: u32,
    /// The own index as last published in shared memory.
    published: u64,
    /// Commits/releases since the own index was last published.
    pending: u32,
    /// The own index was published but the peer's flag not checked since.
    unchecked: bool,
    /// `(own flags, peer flags, own index)` offsets of this side, fixed at attach (plain
    /// loads on the per-message path instead of a choice by side at every use).
    offsets: (usize, usize, usize),
}

impl Core {
    fn attach(region: Region, side: Side) -> Result<Core, Error> {
        let layout = layout(region.len())?;
        match header::validate(&region, &layout) {
            Err(HeaderError::NotInitialized) if side == Side::Writer => {
                // `init` zeroes the common and side lines (0x08..0xc0); zero the two
                // index lines and the first record header before it publishes the
                // magic. Stale bytes there must not look committed; every later header
                // position is cleared by the commit of the record that ends there.
                let zero = [0u8; DATA_OFFSET - DATA_MIN_OFFSET + RECORD_HEADER];
                if region.write_bytes(DATA_MIN_OFFSET, &zero).is_err() {
                    return Err(HeaderError::BadRegion { len: region.len() }.into());
                }
                header::init(&region, &layout)?;
            }
            r => r?,
        }
        Ok(Core {
            region,
            side,
            cap: layout.data_size as u64,
            max: max_message(layout.data_size),
            epoch: 0,
            broken: None,
            waiting: false,
            batch: 1,
            published: 0,
            pending: 0,
            unchecked: false,
            offsets: match side {
                Side::Writer => (OFF_PRODUCER_FLAGS, OFF_CONSUMER_FLAGS, OFF_HEAD),
                Side::Reader => (OFF_CONSUMER_FLAGS, OFF_PRODUCER_FLAGS, OFF_TAIL),
            },
        })
    }

    fn own_flags(&self) -> usize {
        self.offsets.0
    }

    fn peer_flags(&self) -> usize {
        self.offsets.1
    }

    #[inline]
    fn check(&self) -> Result<(), Error> {
        match self.broken {
            Some(b) => Err(Error::PeerBroken(b)),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, b: Broken) -> Result<T, Error> {
        if self.broken.is_none() {
            self.broken = Some(b);
            header::set_state(&self.region, self.side, State::Broken);
        }
        Err(Error::PeerBroken(b))
    }

    fn set_own_flags(&mut self, v: u32) {
        let _ = self
            .region
            .store_le::<u32>(self.own_flags(), v, Ordering::SeqCst);
    }

    #[inline]
    fn clear_wait(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.set_own_flags(0);
        }
    }

    /// Reads the peer's index once and checks it is aligned, within `lo..=hi` and, if
    /// `seen` is in that window too, not behind `seen` (all wrapping, relative to `lo`).
    fn peer_index(&mut self, off: usize, lo: u64, seen: u64, hi: u64) -> Result<u64, Error> {
        let Some(idx) = self.region.load_le::<u64>(off, Ordering::Acquire) else {
            return self.fail(Broken::IndexOutOfRange(0));
        };
        if idx % RECORD_ALIGN as u64 != 0 {
            return self.fail(Broken::IndexMisaligned(idx));
        }
        if idx.wrapping_sub(lo) > hi.wrapping_sub(lo) {
            return self.fail(Broken::IndexOutOfRange(idx));
        }
        let seen_at = seen.wrapping_sub(lo);
        if seen_at <= hi.wrapping_sub(lo) && idx.wrapping_sub(lo) < seen_at {
            return self.fail(Broken::IndexWentBack(idx));
        }
        Ok(idx)
    }

    /// Full fence, then the peer's NEED_WAKEUP flag (validated).
    fn peer_wants_wakeup(&mut self) -> Result<bool, Error> {
        fence(Ordering::SeqCst);
        let flags = self
            .region
            .load_le::<u32>(self.peer_flags(), Ordering::Relaxed)
            .unwrap_or(0);
        if flags & !NEED_WAKEUP != 0 {
            return self.fail(Broken::BadFlags(flags));
        }
        Ok(flags & NEED_WAKEUP != 0)
    }

    /// Offset of this side's index (producer head, consumer tail).
    fn own_index(&self) -> usize {
        self.offsets.2
    }

    /// One commit or release moved the own index to `idx`: publishes it every
    /// `batch`-th time. Returns whether to notify the peer.
    #[inline]
    fn advance(&mut self, idx: u64) -> Result<bool, Error> {
        self.pending += 1;
        if self.pending < self.batch {
            return Ok(false);
        }
        self.flush(idx)
    }

    /// Publishes the own index `idx` (release) if it moved, then, once per publication,
    /// checks whether the peer waits. Returns whether to notify it.
    fn flush(&mut self, idx: u64) -> Result<bool, Error> {
        self.check()?;
        if self.published != idx {
            self.publish(idx);
            self.pending = 0;
        }
        self.check_wakeup(idx)
    }

    /// Stores the own index `idx` (release), without the wake-up check (that follows at
    /// the next flush).
    fn publish(&mut self, idx: u64) {
        self.region
            .store_le::<u64>(self.own_index(), idx, Ordering::Release);
        self.published = idx;
        self.unchecked = true;
    }

    /// `Err(Unflushed)` if the own index moved since it was last published.
    fn check_flushed(&self, idx: u64) -> Result<(), Error> {
        if self.published != idx {
            return Err(Error::Unflushed);
        }
        Ok(())
    }

    /// After publishing the own index `idx`: the full fence and the peer's flag, once
    /// per publication. The consumer also honours the producer's wake-up threshold: it
    /// notifies only once `idx` has reached `wake_tail` (wrapping comparison; any value
    /// is safe — a wrong one only delays the producer's own wake-up).
    fn check_wakeup(&mut self, idx: u64) -> Result<bool, Error> {
        if !self.unchecked {
            return Ok(false);
        }
        self.unchecked = false;
        if !self.peer_wants_wakeup()? {
            return Ok(false);
        }
        if self.side == Side::Reader {
            let wake = self
                .region
                .load_le::<u64>(OFF_WAKE_TAIL, Ordering::Relaxed)
                .unwrap_or(0);
            return Ok((idx.wrapping_sub(wake) as i64) >= 0);
        }
        Ok(true)
    }

    fn set_batch(&mut self, n: u32) {
        self.batch = n.max(1);
    }

    fn peer_status(&self) -> SideStatus {
        header::side_status(&self.region, self.side.peer()).unwrap_or(SideStatus {
            state: None,
            raw_state: 0,
            epoch: 0,
        })
    }
}

/// The producer end of a queue.
pub struct Producer {
    core: Core,
    /// Private head: end of the last committed record.
    head: u64,
    seen_tail: u64,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("head", &self.head)
            .field("capacity", &self.core.cap)
            .field("broken", &self.core.broken)
            .finish()
    }
}

impl Producer {
    /// Attaches as the producer. The producer is the queue's designated initialiser: if
    /// the region's magic is zero it initialises the header (indices 0, first record
    /// header cleared); otherwise it validates the header and continues after the last
    /// committed record (producer restart): from the published head it follows the chain
    /// of stamped records (which a previous incarnation may have committed without
    /// publishing, and the consumer may already have consumed), clears the header where
    /// the chain ends and publishes that index as the head (at most `capacity / 8` header
    /// reads). Fails if the header does not match or the indices are inconsistent.
    ///
    /// Notify the consumer once after attaching: it may be waiting for records the
    /// previous incarnation committed but did not publish (`QueueTx::open` does).
    pub fn attach(region: Region) -> Result<Producer, Error> {
        let mut core = Core::attach(region, Side::Writer)?;
        let published = region
            .load_le::<u64>(OFF_HEAD, Ordering::Acquire)
            .unwrap_or(u64::MAX);
        if published % RECORD_ALIGN as u64 != 0 {
            return Err(Error::Header(HeaderError::BadOwnField));
        }
        let cap = core.cap;
        // The tail is at most `cap - 8` behind the published head (the producer keeps 8
        // bytes free) and at most `cap - 8` ahead of it (the producer never writes that
        // far past its published head, and the consumer consumes only committed records).
        let reach = cap - RECORD_HEADER as u64;
        let lo = published.wrapping_sub(reach);
        let tail = core.peer_index(OFF_TAIL, lo, lo, published.wrapping_add(reach))?;
        let (head, refused) = chain_end(&region, cap, core.max, published, tail);
        if tail.wrapping_sub(lo) > head.wrapping_sub(lo) {
            // The consumer released records that were never committed.
            return core.fail(Broken::IndexOutOfRange(tail));
        }
        if refused {
            // A header the walk refused must not look committed where the next record
            // goes (honest peers never leave one there).
            let _ = region.write_bytes(data_at(cap, head), &[0; RECORD_HEADER]);
        }
        if head != published {
            region.store_le::<u64>(OFF_HEAD, head, Ordering::Release);
        }
        core.published = head;
        core.set_own_flags(0);
        core.epoch = header::announce(&region, Side::Writer)?;
        Ok(Producer {
            core,
            head,
            seen_tail: tail,
        })
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.core.cap as usize
    }

    /// Largest message length this queue accepts.
    pub fn max_message(&self) -> usize {
        self.core.max
    }

    /// This side's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.core.epoch
    }

    /// The consumer's state and epoch, read now (unvalidated values are reported as
    /// such; they never affect the queue).
    pub fn peer_status(&self) -> SideStatus {
        self.core.peer_status()
    }

    /// Why the handle is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.core.broken
    }

    /// Re-reads the consumer's tail: at least `head - cap`, at most our (private) head
    /// — the consumer may consume committed records before their head is published, but
    /// never more — and not behind the tail seen before.
    fn tail(&mut self) -> Result<u64, Error> {
        let lo = self.head.wrapping_sub(self.core.cap);
        let t = self
            .core
            .peer_index(OFF_TAIL, lo, self.seen_tail, self.head)?;
        self.seen_tail = t;
        Ok(t)
    }

    /// `(skip, record position, record size)` for `len`, or `Full`: the wrap gap, the
    /// record and the 8-byte header position after it must all be free.
    #[inline]
    fn place(&self, len: usize, tail: u64) -> Result<(u64, u64, u64), Error> {
        let size = (RECORD_HEADER + pad(len)) as u64;
        let free = self.core.cap - self.head.wrapping_sub(tail);
        let pos = self.head & (self.core.cap - 1);
        let till_end = self.core.cap - pos;
        let (skip, at) = if size <= till_end {
            (0, pos)
        } else {
            (till_end, 0)
        };
        if skip + size + RECORD_HEADER as u64 > free {
            return Err(Error::Full);
        }
        Ok((skip, at, size))
    }

    /// Reserves a record of `len` bytes for zero-copy writing. Nothing is visible to the
    /// consumer until [`Grant::commit`]; dropping the grant discards it.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>, Error> {
        self.core.check()?;
        self.core.clear_wait();
        if len > self.core.max {
            return Err(Error::TooLarge {
                len,
                max: self.core.max,
            });
        }
        // The tail seen last is a lower bound on the real one; re-read the shared tail
        // (a cache-line transfer) only when that bound says "full".
        let (skip, at, size) = match self.place(len, self.seen_tail) {
            Err(Error::Full) => {
                let tail = self.tail()?;
                self.place(len, tail)?
            }
            r => r?,
        };
        // Never write `cap` bytes or more past the published head, so that a producer
        // re-attaching after a crash finds every committed record by walking from there.
        // Only a large batch gets here; the wake-up check follows with the next flush.
        let span = self.head.wrapping_sub(self.core.published);
        if span + skip + size + RECORD_HEADER as u64 > self.core.cap {
            self.core.publish(self.head);
        }
        Ok(Grant {
            p: self,
            skip,
            at,
            size,
            len,
        })
    }

    /// Copies `msg` into a new record and commits it. Returns whether the consumer should
    /// be notified.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<bool, Error> {
        let g = self.reserve(msg.len())?;
        // `Grant::write(0, msg)` without its range check: `msg` is the grant's length.
        g.p.core
            .region
            .write_bytes(g.payload_offset(), msg)
            .map_err(|_| Error::OutOfBounds)?;
        g.commit()
    }

    /// Publishes the head (and checks whether the consumer waits) only every `n` commits
    /// (1, the default: every commit), and before a reservation would reach `capacity`
    /// bytes past the published head. Batching saves a cache-line transfer and a full
    /// fence per message under streaming load. A polling consumer that does not batch
    /// still sees every record as soon as it is committed (by its stamp), but a consumer
    /// that waits is woken up to `n - 1` commits late, and one that batches waits for a
    /// publication once it has caught up ([`Consumer::peek`]), so the producer must call
    /// [`Producer::flush`] before it idles or waits. Records committed but not published
    /// survive a producer restart like the others.
    pub fn set_batch(&mut self, n: u32) {
        self.core.set_batch(n);
    }

    /// Publishes the head if commits are pending, then (once per publication) checks
    /// whether the consumer waits: returns whether to notify it.
    pub fn flush(&mut self) -> Result<bool, Error> {
        self.core.flush(self.head)
    }

    /// Call before blocking for space for a `len`-byte message: sets the producer's
    /// NEED_WAKEUP flag, fences, and re-checks. `Ok(true)`: still no space, block until
    /// notified (then retry); `Ok(false)`: space is available now (flag cleared).
    /// `Err(Unflushed)` if batched commits are not published yet ([`Producer::flush`]).
    pub fn prepare_wait(&mut self, len: usize) -> Result<bool, Error> {
        self.core.check()?;
        self.core.check_flushed(self.head)?;
        if len > self.core.max {
            return Err(Error::TooLarge {
                len,
                max: self.core.max,
            });
        }
        // Hysteresis: ask to be woken only once half the queue is free, so a slow
        // consumer sends one notification per half queue rather than one per message.
        let wake = self.head.wrapping_sub(self.core.cap / 2);
        self.core
            .region
            .store_le::<u64>(OFF_WAKE_TAIL, wake, Ordering::Relaxed);
        self.core.set_own_flags(NEED_WAKEUP);
        self.core.waiting = true;
        fence(Ordering::SeqCst);
        let tail = self.tail()?;
        match self.place(len, tail) {
            Err(Error::Full) => Ok(true),
            _ => {
                self.core.clear_wait();
                Ok(false)
            }
        }
    }

    /// Marks the producer detached (state `Reset`). The queue contents stay.
    pub fn detach(self) {
        header::set_state(&self.core.region, Side::Writer, State::Reset);
    }
}

/// A reserved, not yet committed record (zero-copy write access to its payload).
pub struct Grant<'a> {
    p: &'a mut Producer,
    skip: u64,
    at: u64,
    size: u64,
    len: usize,
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("len", &self.len).finish()
    }
}

impl Grant<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length message.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn payload_offset(&self) -> usize {
        DATA_OFFSET + self.at as usize + RECORD_HEADER
    }

    /// The payload as a region of exactly [`Grant::len`] bytes, for zero-copy writes.
    pub fn region(&self) -> Region {
        self.p
            .core
            .region
            .sub(self.payload_offset(), self.len)
            .unwrap_or_else(|| self.p.core.region.sub(0, 0).unwrap_or(self.p.core.region))
    }

    /// Writes `bytes` at `offset` within the payload.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        match offset.checked_add(bytes.len()) {
            Some(end) if end <= self.len => self
                .p
                .core
                .region
                .write_bytes(self.payload_offset() + offset, bytes)
                .map_err(|_| Error::OutOfBounds),
            _ => Err(Error::OutOfBounds),
        }
    }

    /// Commits the record (and a wrap marker before it if needed): when wrapping, writes
    /// the record's header at offset 0; clears the header position after the record; then
    /// stores the stamped header at the head — the record's, or the wrap marker's — with
    /// release ordering: from then on the consumer can take the record. Then publishes the
    /// head with release ordering — on every commit, or every `n`-th with
    /// [`Producer::set_batch`]. Returns whether the consumer should be notified (its
    /// NEED_WAKEUP flag was set when the head was published).
    #[inline]
    pub fn commit(self) -> Result<bool, Error> {
        let p = self.p;
        let (r, cap, head) = (p.core.region, p.core.cap, p.head);
        let at = head.wrapping_add(self.skip);
        let end = at.wrapping_add(self.size);
        let len = self.len as u32;
        // All three writes are in bounds (positions below `cap`, 8-aligned).
        if self.skip > 0 {
            let _ = r.store_le::<u64>(
                data_at(cap, at),
                header_word(len, stamp(at)),
                Ordering::Relaxed,
            );
        }
        // A plain 8-byte write (one aligned volatile word): nothing reads these bytes
        // before the release store below publishes them (they lie between the head and
        // `tail + cap`, outside every record the consumer may be reading or polling). Plain like the payload, it also keeps
        // Miri's mixed atomic/plain bookkeeping out of a consistency check of older
        // nightlies (atomic store after a partial payload write over an earlier header).
        let _ = r.write_plain_le::<u64>(data_at(cap, end), 0);
        let first = if self.skip > 0 { WRAP } else { len };
        let _ = r.store_le::<u64>(
            data_at(cap, head),
            header_word(first, stamp(head)),
            Ordering::Release,
        );
        r.prefetch_write(data_at(cap, end.wrapping_add(PREFETCH_AHEAD)));
        p.head = end;
        p.core.advance(end)
    }
}

/// How far past the record it just committed the producer asks for a cache line for
/// writing (a hint, [`Region::prefetch_write`]). When the consumer keeps up closely, the
/// producer's stores stall, most likely because the consumer's hardware prefetcher takes
/// lines the producer is about to write; fetching them back ahead of the stores helps (64 B messages: ~15 → ~23
/// M msg/s in that regime, unchanged otherwise; BENCHMARKS.md).
const PREFETCH_AHEAD: u64 = 512;

/// The consumer end of a queue.
pub struct Consumer {
    core: Core,
    /// Private tail: end of the last released record.
    tail: u64,
    /// The head last loaded from shared memory.
    seen_head: u64,
    /// `prepare_wait` found a committed record at the tail: take it even if the head
    /// seen does not cover it yet (for a batching consumer, see [`Consumer::peek`]).
    stamped: bool,
    /// The cache lines of data indices below this one were asked for already
    /// ([`Consumer::prefetch_published`]).
    prefetched: u64,
}

/// How far past its tail the consumer asks for the cache lines of published records
/// ([`Region::prefetch_read`]). Finding a record needs the header of the one before, so
/// without the hint the consumer's cache misses on records the producer just wrote come
/// one after another (a chain of cross-core transfers); with it they can be in flight
/// together, as the slot ring's are (its slot addresses need no data). Measured on a
/// loaded machine, this read-ahead showed no 64 B throughput gain; the poll-time hint in
/// [`Consumer::peek`] lowered the one-way latency (p50 135 -> 120 ns). BENCHMARKS.md.
const READ_AHEAD: u64 = 1024;
/// The cache-line size the consumer's read hints assume.
const LINE: u64 = header::LINE as u64;

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("tail", &self.tail)
            .field("capacity", &self.core.cap)
            .field("broken", &self.core.broken)
            .finish()
    }
}

/// The result of a successful [`Consumer::recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Message length (bytes copied).
    pub len: usize,
    /// Whether the producer should be notified (it waits for space).
    pub notify: bool,
}

impl Consumer {
    /// Attaches as the consumer: validates the header (`Error::Header(NotInitialized)`
    /// until the producer has initialised the region: retry later) and continues from
    /// the tail in shared memory (consumer restart).
    pub fn attach(region: Region) -> Result<Consumer, Error> {
        let mut core = Core::attach(region, Side::Reader)?;
        let tail = region
            .load_le::<u64>(OFF_TAIL, Ordering::Acquire)
            .unwrap_or(u64::MAX);
        if tail % RECORD_ALIGN as u64 != 0 {
            return Err(Error::Header(HeaderError::BadOwnField));
        }
        // The head is within a capacity of the tail either way (see `Consumer::head`).
        let (lo, hi) = (tail.wrapping_sub(core.cap), tail.wrapping_add(core.cap));
        let head = core.peer_index(OFF_HEAD, lo, lo, hi)?;
        core.published = tail;
        core.set_own_flags(0);
        core.epoch = header::announce(&region, Side::Reader)?;
        Ok(Consumer {
            core,
            tail,
            seen_head: head,
            stamped: false,
            prefetched: tail,
        })
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.core.cap as usize
    }

    /// Largest message length this queue accepts.
    pub fn max_message(&self) -> usize {
        self.core.max
    }

    /// This side's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.core.epoch
    }

    /// The producer's state and epoch, read now.
    pub fn peer_status(&self) -> SideStatus {
        self.core.peer_status()
    }

    /// Why the handle is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.core.broken
    }

    /// Re-reads the producer's head: at most a capacity behind our tail (the producer
    /// publishes before it writes that far; the tail can be ahead of the head, since
    /// records are consumed by their stamps), at most a capacity ahead of the published
    /// tail (the producer never overwrites what it cannot know is free), and not behind
    /// the head seen before.
    fn head(&mut self) -> Result<u64, Error> {
        let lo = self.tail.wrapping_sub(self.core.cap);
        let hi = self.core.published.wrapping_add(self.core.cap);
        let h = self.core.peer_index(OFF_HEAD, lo, self.seen_head, hi)?;
        self.seen_head = h;
        Ok(h)
    }

    /// The record committed at the tail, validated, if any (one header read, two after a
    /// wrap marker; the shared head is not read).
    #[inline(always)]
    fn next_record(&mut self) -> Result<Option<Rec>, Error> {
        let (cap, t) = (self.core.cap, self.tail);
        let rec = match committed(&self.core.region, cap, self.core.max, t) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(None),
            Err(b) => return self.core.fail(b),
        };
        // The producer writes at most `cap - 8` bytes past the tail it has seen, which is
        // at most our published tail (`t - published` is our own, at most `cap - 8`).
        let reach = t.wrapping_sub(self.core.published) + rec.advance + RECORD_HEADER as u64;
        // A published head ahead of the tail is a record boundary.
        let ahead = self.seen_head.wrapping_sub(t);
        if reach > cap || (ahead != 0 && ahead <= cap && rec.advance > ahead) {
            return self.core.fail(Broken::BadRecord(rec.len));
        }
        Ok(Some(rec))
    }

    /// For a batching consumer that has caught up with the head it saw (peek step 0 of
    /// the spec): reloads the head, and says whether it is past the tail now. Out of line:
    /// only that case needs it.
    #[inline(never)]
    fn reload_head(&mut self) -> Result<bool, Error> {
        self.head()?;
        Ok(self.head_ahead())
    }

    /// Asks for the cache lines of the records the producer has published past the tail,
    /// at most [`READ_AHEAD`] bytes ahead, each line once: lines wholly below the head
    /// seen (the producer is done with them; the head's own line it may still write).
    /// Only hints: nothing here reads or trusts the bytes, and every position is masked
    /// into the data area; at most `READ_AHEAD / 64 + 1` hints per call.
    #[inline]
    fn prefetch_published(&mut self) {
        let (cap, t) = (self.core.cap, self.tail);
        let ahead = self.seen_head.wrapping_sub(t);
        if ahead == 0 || ahead > cap {
            return;
        }
        let end = t.wrapping_add(ahead.min(READ_AHEAD)) & !(LINE - 1);
        let mut i = if self.prefetched.wrapping_sub(t) <= cap {
            self.prefetched
        } else {
            t & !(LINE - 1)
        };
        while (end.wrapping_sub(i) as i64) > 0 {
            self.core.region.prefetch_read(data_at(cap, i));
            i = i.wrapping_add(LINE);
        }
        self.prefetched = i;
    }

    /// Whether the head seen last is past the tail.
    #[inline]
    fn head_ahead(&self) -> bool {
        let ahead = self.seen_head.wrapping_sub(self.tail);
        ahead != 0 && ahead <= self.core.cap
    }

    /// The oldest message, if any, without consuming it: it stays queued until
    /// [`Msg::release`], and a dropped `Msg` is returned again by the next `peek`.
    ///
    /// With the default `set_batch(1)`, reads only the record header at the tail
    /// (acquire): a message is there once its header carries the commit [`stamp`] of the
    /// tail index, published or not — the lowest latency. A consumer that batches
    /// ([`Consumer::set_batch`] above 1) is tuned for throughput instead: once it has
    /// caught up with the head it saw published, it reloads the head and looks at the
    /// next record header only when the head has moved past it (or when `prepare_wait`
    /// found a record there). So a consumer faster than a streaming producer does not keep
    /// taking the cache line the producer is writing.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<Msg<'_>>, Error> {
        self.core.check()?;
        self.core.clear_wait();
        if self.core.batch > 1 && !self.stamped && !self.head_ahead() && !self.reload_head()? {
            return Ok(None);
        }
        self.prefetch_published();
        let Some(rec) = self.next_record()? else {
            if self.stamped {
                self.stamped = false;
            }
            if self.core.batch == 1 {
                // Polling for the record at the tail: ask for the line after the tail's
                // as well, where a record longer than the rest of the tail's line goes
                // on; its transfer then overlaps the header line's once it is committed
                // instead of following it.
                let next = (self.tail | (LINE - 1)).wrapping_add(1);
                self.core.region.prefetch_read(data_at(self.core.cap, next));
            }
            return Ok(None);
        };
        Ok(Some(Msg {
            c: self,
            off: DATA_OFFSET + rec.pos as usize + RECORD_HEADER,
            len: rec.len as usize,
            advance: rec.advance,
        }))
    }

    /// Copies the oldest message into `buf` and releases it. `Ok(None)`: the queue is
    /// empty. `Err(BufferTooSmall)`: the message stays queued.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<Received>, Error> {
        let Some(m) = self.peek()? else {
            return Ok(None);
        };
        let len = m.len;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall { len });
        };
        // `Msg::read` without its second range check: the whole payload,
        // `off..off + len`, is the record `next_record` validated.
        m.c.core
            .region
            .read_bytes(m.off, dst)
            .map_err(|_| Error::OutOfBounds)?;
        let notify = m.release()?;
        Ok(Some(Received { len, notify }))
    }

    /// Publishes the tail only every `n` releases (1, the default: every release).
    /// Batching saves a cache-line transfer and a full fence per message; in exchange the
    /// producer sees freed space late, the consumer must call [`Consumer::flush`] before
    /// it idles or waits, and a consumer restart delivers again the up to `n - 1`
    /// released but unpublished messages (with `n = 1` a restart between messages loses
    /// and repeats nothing). With `n > 1` the consumer also waits for the published head
    /// once it has caught up with it, as [`Consumer::peek`] explains: records committed
    /// but not yet published then come with the producer's next publication (or once
    /// `prepare_wait` has seen them).
    pub fn set_batch(&mut self, n: u32) {
        self.core.set_batch(n);
    }

    /// Publishes the tail if releases are pending, then (once per publication) checks
    /// whether the producer waits for space: returns whether to notify it.
    pub fn flush(&mut self) -> Result<bool, Error> {
        self.core.flush(self.tail)
    }

    /// Call before blocking for data: sets the consumer's NEED_WAKEUP flag, fences, and
    /// re-checks the stamp at the tail, then the head. `Ok(true)`: still empty, block
    /// until notified (then peek again); `Ok(false)`: data is available now (flag
    /// cleared). `Err(Unflushed)` if batched releases are not published yet
    /// ([`Consumer::flush`]).
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.core.check()?;
        self.core.check_flushed(self.tail)?;
        self.core.set_own_flags(NEED_WAKEUP);
        self.core.waiting = true;
        fence(Ordering::SeqCst);
        if self.next_record()?.is_some() {
            self.stamped = true;
        } else {
            let head = self.head()?;
            let ahead = head.wrapping_sub(self.tail);
            if ahead == 0 || ahead > self.core.cap {
                // At or behind the tail: nothing committed past it.
                return Ok(true);
            }
            // The producer stamps a record before it publishes a head past it, and the
            // head was loaded with acquire: the stamp must be visible now.
            if self.next_record()?.is_none() {
                return self.core.fail(Broken::Unstamped(head));
            }
            self.stamped = true;
        }
        self.core.clear_wait();
        Ok(false)
    }

    /// Marks the consumer detached (state `Reset`). Unreleased messages stay queued.
    pub fn detach(self) {
        header::set_state(&self.core.region, Side::Reader, State::Reset);
    }
}

/// A message in the queue (zero-copy read access), consumed by [`Msg::release`].
///
/// The producer cannot legitimately change the bytes before release, but a hostile one
/// can: copy what you need, then validate it.
pub struct Msg<'a> {
    c: &'a mut Consumer,
    off: usize,
    len: usize,
    advance: u64,
}

impl fmt::Debug for Msg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msg").field("len", &self.len).finish()
    }
}

impl Msg<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length message.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload as a region of exactly [`Msg::len`] bytes.
    pub fn region(&self) -> Region {
        let r = self.c.core.region;
        r.sub(self.off, self.len)
            .unwrap_or_else(|| r.sub(0, 0).unwrap_or(r))
    }

    /// Copies `buf.len()` payload bytes from `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        match offset.checked_add(buf.len()) {
            Some(end) if end <= self.len => self
                .c
                .core
                .region
                .read_bytes(self.off + offset, buf)
                .map_err(|_| Error::OutOfBounds),
            _ => Err(Error::OutOfBounds),
        }
    }

    /// Consumes the message: advances the tail past it and any wrap marker before it,
    /// and publishes the tail (release ordering) — on every release, or every `n`-th with
    /// [`Consumer::set_batch`]. Returns whether the producer should be notified (its
    /// NEED_WAKEUP flag was set when the tail was published).
    #[inline]
    pub fn release(self) -> Result<bool, Error> {
        let c = self.c;
        c.tail = c.tail.wrapping_add(self.advance);
        c.core.advance(c.tail)
    }
}

#[cfg(test)]
mod tests;
