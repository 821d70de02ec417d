//! Single-producer single-consumer queue of variable-length messages on a shared region
//! (docs/protocols.md §3).
//!
//! ```text
//! 0x00 common header (protocol id PROTO_QUEUE, version VERSION)
//! 0x40 producer line: 0x40 u32 state  0x44 u32 flags (bit 0: producer waits for space)
//!                     0x48 u64 epoch  0x50 u64 head
//! 0x80 consumer line: 0x80 u32 state  0x84 u32 flags (bit 0: consumer waits for data)
//!                     0x88 u64 epoch  0x90 u64 tail
//! 0xc0 data area: `capacity` bytes, the largest power of two that fits (>= 64)
//! ```
//!
//! `head` and `tail` are free-running byte counters (wrapping at 2^64); a record starts at
//! data offset `index & (capacity - 1)`. A record is an 8-byte header (u32 length, u32
//! zero) followed by the payload padded to a multiple of 8; records are contiguous, and
//! when one does not fit before the end of the data area the producer writes a wrap
//! marker (length `0xffff_ffff`) and puts the record at offset 0.
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
//! * Producer dies after [`Producer::reserve`] but before [`Grant::commit`]: the record is
//!   discarded (the head moves only in `commit`); the consumer never sees it.
//! * Producer restarts between messages: every committed message stays queued.
//!
//! # Notifications
//!
//! A side that wants to block calls `prepare_wait`, which sets its NEED_WAKEUP flag,
//! issues a full fence and re-checks the shared state; it may block only if that returns
//! `true`. [`Grant::commit`] and [`Msg::release`] return `true` when the peer's flag is set,
//! and only then should the caller notify (e.g. `Channel::notify`). Any wake-up may be
//! spurious or coalesced: re-check the queue after every one.

use crate::header::{
    self, field, load_u32, load_u64, store_u32, store_u64, Field, HeaderError, Layout, Side,
    SideStatus, State, DATA_MIN_OFFSET, PROTO_QUEUE,
};
use core::fmt;
use core::sync::atomic::{fence, Ordering};
use staticbus_guest::Region;

/// Layout version of the queue.
pub const VERSION: u32 = 1;
/// Offset of the producer's u32 flags word.
pub const OFF_PRODUCER_FLAGS: usize = 0x44;
/// Offset of the producer's u64 head index.
pub const OFF_HEAD: usize = 0x50;
/// Offset of the producer's u64 wake-up threshold: while the producer's NEED_WAKEUP
/// flag is set, the consumer notifies it only once the tail has reached this index.
pub const OFF_WAKE_TAIL: usize = 0x58;
/// Offset of the consumer's u32 flags word.
pub const OFF_CONSUMER_FLAGS: usize = 0x84;
/// Offset of the consumer's u64 tail index.
pub const OFF_TAIL: usize = 0x90;
/// Offset of the data area.
pub const DATA_OFFSET: usize = DATA_MIN_OFFSET;
/// Flag bit 0: this side is about to block and wants a notification.
pub const NEED_WAKEUP: u32 = 1;
/// Record header size (u32 length, u32 reserved zero).
pub const RECORD_HEADER: usize = 8;
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
    field("producer.state", 0x40, 4),
    field("producer.flags", 0x44, 4),
    field("producer.epoch", 0x48, 8),
    field("producer.head", 0x50, 8),
    field("producer.wake_tail", 0x58, 8),
    field("consumer.state", 0x80, 4),
    field("consumer.flags", 0x84, 4),
    field("consumer.epoch", 0x88, 8),
    field("consumer.tail", 0x90, 8),
    field("data", 0xc0, 0),
    field("record.len", 0, 4),
    field("record.reserved", 4, 4),
    field("record.payload", 8, 0),
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
/// (so a record always fits in an empty queue wherever its indices stand), at most
/// [`MAX_MESSAGE_LIMIT`].
pub fn max_message(capacity: usize) -> usize {
    (capacity / 2 - RECORD_HEADER).min(MAX_MESSAGE_LIMIT)
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
    /// A record length above the maximum, or a record reaching past the head or the end
    /// of the data area.
    BadRecord(u32),
    /// A record header's reserved word is not zero.
    RecordReserved(u32),
    /// A wrap marker at offset 0, twice in a row, or not followed by a record.
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
            Broken::RecordReserved(r) => write!(f, "record reserved word {r:#x}"),
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

fn record_header(len: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&len.to_le_bytes());
    b
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
}

impl Core {
    fn attach(region: Region, side: Side) -> Result<Core, Error> {
        let layout = layout(region.len())?;
        match header::validate(&region, &layout) {
            Err(HeaderError::NotInitialized) if side == Side::Writer => {
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
        })
    }

    fn own_flags(&self) -> usize {
        match self.side {
            Side::Writer => OFF_PRODUCER_FLAGS,
            Side::Reader => OFF_CONSUMER_FLAGS,
        }
    }

    fn peer_flags(&self) -> usize {
        match self.side {
            Side::Writer => OFF_CONSUMER_FLAGS,
            Side::Reader => OFF_PRODUCER_FLAGS,
        }
    }

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
        let _ = store_u32(&self.region, self.own_flags(), v, Ordering::SeqCst);
    }

    fn clear_wait(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.set_own_flags(0);
        }
    }

    /// Reads the peer's index once and checks it is aligned, within `cap` ahead of
    /// `lo` and not behind `seen` (`lo <= seen <= idx <= lo + cap`, wrapping).
    fn peer_index(&mut self, off: usize, lo: u64, seen: u64, hi: u64) -> Result<u64, Error> {
        let Some(idx) = load_u64(&self.region, off, Ordering::Acquire) else {
            return self.fail(Broken::IndexOutOfRange(0));
        };
        if idx % RECORD_ALIGN as u64 != 0 {
            return self.fail(Broken::IndexMisaligned(idx));
        }
        if idx.wrapping_sub(lo) > hi.wrapping_sub(lo) {
            return self.fail(Broken::IndexOutOfRange(idx));
        }
        if idx.wrapping_sub(lo) < seen.wrapping_sub(lo) {
            return self.fail(Broken::IndexWentBack(idx));
        }
        Ok(idx)
    }

    /// Full fence, then the peer's NEED_WAKEUP flag (validated).
    fn peer_wants_wakeup(&mut self) -> Result<bool, Error> {
        fence(Ordering::SeqCst);
        let flags = load_u32(&self.region, self.peer_flags(), Ordering::Relaxed).unwrap_or(0);
        if flags & !NEED_WAKEUP != 0 {
            return self.fail(Broken::BadFlags(flags));
        }
        Ok(flags & NEED_WAKEUP != 0)
    }

    /// Offset of this side's index (producer head, consumer tail).
    fn own_index(&self) -> usize {
        match self.side {
            Side::Writer => OFF_HEAD,
            Side::Reader => OFF_TAIL,
        }
    }

    /// One commit or release moved the own index to `idx`: publishes it every
    /// `batch`-th time. Returns whether to notify the peer.
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
            store_u64(&self.region, self.own_index(), idx, Ordering::Release);
            self.published = idx;
            self.pending = 0;
            self.unchecked = true;
        }
        self.check_wakeup(idx)
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
            let wake = load_u64(&self.region, OFF_WAKE_TAIL, Ordering::Relaxed).unwrap_or(0);
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
    /// the region's magic is zero it initialises the header (indices 0); otherwise it
    /// validates the header and continues from the head in shared memory (producer
    /// restart). Fails if the header does not match or the indices are inconsistent.
    pub fn attach(region: Region) -> Result<Producer, Error> {
        let mut core = Core::attach(region, Side::Writer)?;
        let head = load_u64(&region, OFF_HEAD, Ordering::Acquire).unwrap_or(u64::MAX);
        if head % RECORD_ALIGN as u64 != 0 {
            return Err(Error::Header(HeaderError::BadOwnField));
        }
        let lo = head.wrapping_sub(core.cap);
        let tail = core.peer_index(OFF_TAIL, lo, lo, head)?;
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

    /// Re-reads the consumer's tail: at least `head - cap` (it never frees more than we
    /// wrote), at most the published head, and not behind the tail seen before.
    fn tail(&mut self) -> Result<u64, Error> {
        let lo = self.head.wrapping_sub(self.core.cap);
        let t = self
            .core
            .peer_index(OFF_TAIL, lo, self.seen_tail, self.core.published)?;
        self.seen_tail = t;
        Ok(t)
    }

    /// `(skip, record position, record size)` for `len`, or `Full`.
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
        if skip + size > free {
            return Err(Error::Full);
        }
        Ok((skip, at, size))
    }

    /// Reserves a record of `len` bytes for zero-copy writing. Nothing is visible to the
    /// consumer until [`Grant::commit`]; dropping the grant discards it.
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
    pub fn send(&mut self, msg: &[u8]) -> Result<bool, Error> {
        let g = self.reserve(msg.len())?;
        g.write(0, msg)?;
        g.commit()
    }

    /// Publishes the head only every `n` commits (1, the default: every commit). Batching
    /// saves a cache-line transfer and a full fence per message under streaming load;
    /// in exchange the consumer sees up to `n - 1` committed records late, and the
    /// producer must call [`Producer::flush`] before it idles or waits. Records committed
    /// but not published are lost if the producer dies, like uncommitted ones.
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
        store_u64(&self.core.region, OFF_WAKE_TAIL, wake, Ordering::Relaxed);
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

    /// Commits the record (and a wrap marker before it if needed): writes the record
    /// header, then publishes the head with release ordering — on every commit, or every
    /// `n`-th with [`Producer::set_batch`]. Returns whether the consumer should be
    /// notified (its NEED_WAKEUP flag was set when the head was published).
    pub fn commit(self) -> Result<bool, Error> {
        let p = self.p;
        let r = p.core.region;
        let pos = (p.head & (p.core.cap - 1)) as usize;
        if self.skip > 0 {
            r.write_bytes(DATA_OFFSET + pos, &record_header(WRAP))
                .map_err(|_| Error::OutOfBounds)?;
        }
        r.write_bytes(
            DATA_OFFSET + self.at as usize,
            &record_header(self.len as u32),
        )
        .map_err(|_| Error::OutOfBounds)?;
        p.head = p.head.wrapping_add(self.skip + self.size);
        p.core.advance(p.head)
    }
}

/// The consumer end of a queue.
pub struct Consumer {
    core: Core,
    /// Private tail: end of the last released record.
    tail: u64,
    seen_head: u64,
}

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
        let tail = load_u64(&region, OFF_TAIL, Ordering::Acquire).unwrap_or(u64::MAX);
        if tail % RECORD_ALIGN as u64 != 0 {
            return Err(Error::Header(HeaderError::BadOwnField));
        }
        let hi = tail.wrapping_add(core.cap);
        let head = core.peer_index(OFF_HEAD, tail, tail, hi)?;
        core.published = tail;
        core.set_own_flags(0);
        core.epoch = header::announce(&region, Side::Reader)?;
        Ok(Consumer {
            core,
            tail,
            seen_head: head,
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

    /// Re-reads the producer's head: not behind our tail or the head seen before, and at
    /// most a capacity ahead of the published tail (the producer never overwrites what
    /// it cannot know is free).
    fn head(&mut self) -> Result<u64, Error> {
        let hi = self.core.published.wrapping_add(self.core.cap);
        let h = self
            .core
            .peer_index(OFF_HEAD, self.tail, self.seen_head, hi)?;
        self.seen_head = h;
        Ok(h)
    }

    fn read_header(&mut self, pos: u64) -> (u32, u32) {
        let mut b = [0u8; 8];
        // In bounds: pos < cap and the data area fits in the region (attach checked).
        let _ = self
            .core
            .region
            .read_bytes(DATA_OFFSET + pos as usize, &mut b);
        (
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }

    /// The oldest message, if any, without consuming it: it stays queued until
    /// [`Msg::release`], and a dropped `Msg` is returned again by the next `peek`.
    pub fn peek(&mut self) -> Result<Option<Msg<'_>>, Error> {
        self.core.check()?;
        self.core.clear_wait();
        // Records up to the head seen last are known; re-read the shared head (a
        // cache-line transfer) only when they are used up.
        let head = if self.seen_head == self.tail {
            self.head()?
        } else {
            self.seen_head
        };
        let avail = head.wrapping_sub(self.tail);
        if avail == 0 {
            return Ok(None);
        }
        let cap = self.core.cap;
        let mut pos = self.tail & (cap - 1);
        let mut skip = 0;
        let (mut len, mut rsv) = self.read_header(pos);
        if len == WRAP {
            if rsv != 0 {
                return self.core.fail(Broken::RecordReserved(rsv));
            }
            skip = cap - pos;
            if pos == 0 || skip + RECORD_HEADER as u64 > avail {
                return self.core.fail(Broken::BadWrap);
            }
            pos = 0;
            (len, rsv) = self.read_header(0);
            if len == WRAP {
                return self.core.fail(Broken::BadWrap);
            }
        }
        if rsv != 0 {
            return self.core.fail(Broken::RecordReserved(rsv));
        }
        if len as usize > self.core.max {
            return self.core.fail(Broken::BadRecord(len));
        }
        let size = (RECORD_HEADER + pad(len as usize)) as u64;
        if skip + size > avail || pos + size > cap {
            return self.core.fail(Broken::BadRecord(len));
        }
        Ok(Some(Msg {
            c: self,
            off: DATA_OFFSET + pos as usize + RECORD_HEADER,
            len: len as usize,
            advance: skip + size,
        }))
    }

    /// Copies the oldest message into `buf` and releases it. `Ok(None)`: the queue is
    /// empty. `Err(BufferTooSmall)`: the message stays queued.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Option<Received>, Error> {
        let Some(m) = self.peek()? else {
            return Ok(None);
        };
        let len = m.len();
        let Some(dst) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall { len });
        };
        m.read(0, dst)?;
        let notify = m.release()?;
        Ok(Some(Received { len, notify }))
    }

    /// Publishes the tail only every `n` releases (1, the default: every release).
    /// Batching saves a cache-line transfer and a full fence per message; in exchange the
    /// producer sees freed space late, the consumer must call [`Consumer::flush`] before
    /// it idles or waits, and a consumer restart delivers again the up to `n - 1`
    /// released but unpublished messages (with `n = 1` a restart between messages loses
    /// and repeats nothing).
    pub fn set_batch(&mut self, n: u32) {
        self.core.set_batch(n);
    }

    /// Publishes the tail if releases are pending, then (once per publication) checks
    /// whether the producer waits for space: returns whether to notify it.
    pub fn flush(&mut self) -> Result<bool, Error> {
        self.core.flush(self.tail)
    }

    /// Call before blocking for data: sets the consumer's NEED_WAKEUP flag, fences, and
    /// re-checks the head. `Ok(true)`: still empty, block until notified (then peek
    /// again); `Ok(false)`: data is available now (flag cleared). `Err(Unflushed)` if
    /// batched releases are not published yet ([`Consumer::flush`]).
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.core.check()?;
        self.core.check_flushed(self.tail)?;
        self.core.set_own_flags(NEED_WAKEUP);
        self.core.waiting = true;
        fence(Ordering::SeqCst);
        let head = self.head()?;
        if head == self.tail {
            Ok(true)
        } else {
            self.core.clear_wait();
            Ok(false)
        }
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
    pub fn release(self) -> Result<bool, Error> {
        let c = self.c;
        c.tail = c.tail.wrapping_add(self.advance);
        c.core.advance(c.tail)
    }
}

#[cfg(test)]
mod tests;
