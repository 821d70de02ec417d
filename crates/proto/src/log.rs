//! A log: a ring of fixed-size slots with one writer that never blocks and up to
//! [`MAX_MEMBERS`] readers that each keep their own position (docs/protocols.md, "log").
//!
//! ```text
//! 0x00   common header (protocol id PROTO_LOG, version VERSION)
//! 0x40   writer line: 0x40 u32 state  0x44 u32 flags (0)  0x48 u64 epoch
//!                     0x50 u64 head (records published = next sequence number)
//!                     0x58 u32 slot_size  0x5c..0x80 reserved (0)
//! 0x80   side 1 line: unused (0)
//! 0xc0   reader lines, n × 64 bytes, reader i at 0xc0 + 64·i:
//!                     +0x00 u32 state  +0x04 u32 flags (bit 0 NEED_WAKEUP)
//!                     +0x08 u64 epoch  +0x10 u64 cursor (next sequence number to read)
//! 0xc0+64n  ring: data_size bytes (the largest power of two that fits), split into
//!           slot_size-byte slots; record `seq` lives in slot `seq & (slots - 1)`:
//!                     +0x00 u64 stamp  (0 empty, 2·seq+1 being written, 2·seq+2 holds seq)
//!                     +0x08 u32 len    +0x0c u32 reserved (0)   +0x10 payload
//! ```
//!
//! The writer overwrites the oldest record when the ring is full: it never waits for a
//! reader and reads nothing a reader writes except the NEED_WAKEUP bits (through
//! [`header::collect_wakeups`]), so a reader can cost the attached writer at most spurious
//! notifications; a reader that keeps to its own line affects nobody else at all, one that
//! writes elsewhere can forge for the other readers and make a restarted writer refuse to
//! attach (docs/protocols.md §4.7 says exactly what holds then). Each slot is a seqlock: the writer marks it busy, writes the record,
//! then stamps it with the record's sequence number; a reader copies the record out and
//! keeps it only if the stamp did not change meanwhile, so a torn record is never
//! returned. A reader that was lapped learns exactly how many records it missed
//! ([`Record::missed`]).
//!
//! Every shared word, payload included, is accessed with aligned atomics (payload as
//! relaxed 8-byte words), so a reader racing with the writer's overwrite is a detected
//! retry, not a data race.
//!
//! # Restarts
//!
//! * Writer restarts: it validates its own fields and continues from the shared `head`,
//!   so sequence numbers continue. A record the writer died in the middle of was never
//!   published (the head did not move): no reader returns it or counts it as missed, and
//!   the restarted writer gives its sequence number to its next record.
//! * Reader restarts: it resumes from the cursor saved in its own line with
//!   [`Start::Resume`] (the record after the last one it returned); records overwritten
//!   meanwhile are reported as missed.
//!
//! # Notifications
//!
//! [`Writer::append`] returns the set of readers whose NEED_WAKEUP flag is set; notify
//! exactly those. A reader that wants to block calls [`Reader::prepare_wait`] and blocks
//! only if it returns `true`; any wake-up may be spurious or coalesced.

use crate::header::{
    self, Field, HeaderError, Layout, Side, SideStatus, State, Wakeups, LINE, MAX_MEMBERS,
    NEED_WAKEUP, PROTO_LOG, SIDE_FLAGS, SIDE_STATE,
};
use core::fmt;
use core::sync::atomic::{fence, Ordering};
use staticbus_guest::Region;

/// Layout version of the log.
pub const VERSION: u32 = 1;
/// The log's fields as byte ranges (smoltcp's `mod field`): the offsets the code uses and
/// the hashed [`FIELDS`] table are both built from these. Reader fields are relative to a
/// reader line, slot fields relative to a slot.
pub mod field {
    use crate::header::field::{at, span, SIDE0, SIDE_EPOCH, SIDE_FLAGS, SIDE_STATE};
    use crate::header::{DATA_MIN_OFFSET, LINE};
    use core::ops::Range;

    /// Writer's u32 state word.
    pub const WRITER_STATE: Range<usize> = at(SIDE0, SIDE_STATE);
    /// Writer's u32 flags word (always 0).
    pub const WRITER_FLAGS: Range<usize> = at(SIDE0, SIDE_FLAGS);
    /// Writer's u64 epoch.
    pub const WRITER_EPOCH: Range<usize> = at(SIDE0, SIDE_EPOCH);
    /// Writer's u64 head.
    pub const HEAD: Range<usize> = span(SIDE0 + 0x10, 8);
    /// Writer's u32 slot size.
    pub const SLOT_SIZE: Range<usize> = span(SIDE0 + 0x18, 4);
    /// The reader table: one line per reader from here (one line in the table).
    pub const READERS: Range<usize> = span(DATA_MIN_OFFSET, LINE);
    /// A reader's u32 state word, within its line.
    pub const READER_STATE: Range<usize> = SIDE_STATE;
    /// A reader's u32 flags word (NEED_WAKEUP), within its line.
    pub const READER_FLAGS: Range<usize> = SIDE_FLAGS;
    /// A reader's u64 epoch, within its line.
    pub const READER_EPOCH: Range<usize> = SIDE_EPOCH;
    /// A reader's u64 cursor, within its line.
    pub const READER_CURSOR: Range<usize> = span(0x10, 8);
    /// A slot's u64 stamp.
    pub const SLOT_STAMP: Range<usize> = span(0x00, 8);
    /// A slot's u32 record length.
    pub const SLOT_LEN: Range<usize> = span(0x08, 4);
    /// A slot's u32 reserved word (zero).
    pub const SLOT_RESERVED: Range<usize> = span(0x0c, 4);
    /// A slot's payload (the rest of the slot: 0 in the table).
    pub const SLOT_PAYLOAD: Range<usize> = span(0x10, 0);
}

/// Offset of the writer's u32 flags word (always 0: the writer never waits).
pub const OFF_WRITER_FLAGS: usize = field::WRITER_FLAGS.start;
/// Offset of the writer's u64 head: the number of records published, which is also the
/// sequence number the next record gets.
pub const OFF_HEAD: usize = field::HEAD.start;
/// Offset of the writer's u32 slot size (0 until the writer has finished initialising).
pub const OFF_SLOT_SIZE: usize = field::SLOT_SIZE.start;
/// Offset of the first reader line (reader `i` at `READERS_OFFSET + 64 * i`).
pub const READERS_OFFSET: usize = field::READERS.start;
/// Offset of the reader's u64 cursor within its line: the sequence number of the next
/// record it will read (saved each time it returns a record).
pub const READER_CURSOR: usize = field::READER_CURSOR.start;
/// Offset of the u64 stamp within a slot.
pub const SLOT_STAMP: usize = field::SLOT_STAMP.start;
/// Offset of the u32 record length within a slot.
pub const SLOT_LEN: usize = field::SLOT_LEN.start;
/// Offset of the u32 reserved word within a slot (zero).
pub const SLOT_RESERVED: usize = field::SLOT_RESERVED.start;
/// Offset of the payload within a slot (also the slot header size).
pub const SLOT_PAYLOAD: usize = field::SLOT_PAYLOAD.start;
/// Smallest slot size.
pub const MIN_SLOT_SIZE: usize = 32;
/// Largest slot size.
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Smallest ring (two slots of [`MIN_SLOT_SIZE`]).
pub const MIN_DATA_SIZE: usize = 2 * MIN_SLOT_SIZE;
/// Largest head: the writer stops (with [`Error::Exhausted`]) after 2^62 records, and a
/// reader treats a larger head as broken. Stamps (`2 * seq + 2`) then never overflow.
pub const MAX_HEAD: u64 = 1 << 62;
/// How many times [`Reader::read`] re-reads a slot the writer overwrote under it before
/// giving up with [`Error::Contended`].
pub const MAX_ATTEMPTS: usize = 16;

/// The log's field table, input of the layout hash. Reader fields are relative to a
/// reader line, slot fields relative to a slot.
///
/// These follow [`header::COMMON_FIELDS`] in the hashed table.
pub const FIELDS: &[Field] = &[
    Field::new("writer.state", field::WRITER_STATE),
    Field::new("writer.flags", field::WRITER_FLAGS),
    Field::new("writer.epoch", field::WRITER_EPOCH),
    Field::new("writer.head", field::HEAD),
    Field::new("writer.slot_size", field::SLOT_SIZE),
    Field::new("readers", field::READERS),
    Field::new("reader.state", field::READER_STATE),
    Field::new("reader.flags", field::READER_FLAGS),
    Field::new("reader.epoch", field::READER_EPOCH),
    Field::new("reader.cursor", field::READER_CURSOR),
    Field::new("slot.stamp", field::SLOT_STAMP),
    Field::new("slot.len", field::SLOT_LEN),
    Field::new("slot.reserved", field::SLOT_RESERVED),
    Field::new("slot.payload", field::SLOT_PAYLOAD),
];

/// The log's layout hash.
pub const LAYOUT_HASH: u64 = header::protocol_layout_hash(FIELDS);

/// Offset of the ring (the header's data offset) for `readers` readers.
pub fn data_offset(readers: usize) -> usize {
    READERS_OFFSET + LINE * readers
}

/// Offset of reader `index`'s line.
pub fn reader_line(index: usize) -> usize {
    READERS_OFFSET + LINE * index
}

/// The stamp of a slot that holds record `seq` (complete).
pub fn stamp_done(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(2)
}

/// The stamp of a slot the writer is writing record `seq` into.
pub fn stamp_busy(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(1)
}

/// The ring size for a region of `len` bytes shared by `readers` readers: the largest
/// power of two that fits after the reader lines, or `None` if that is below
/// [`MIN_DATA_SIZE`].
pub fn data_size_for(len: usize, readers: usize) -> Option<usize> {
    let room = len.checked_sub(data_offset(readers))?;
    if room < MIN_DATA_SIZE {
        return None;
    }
    Some(1usize << (usize::BITS - 1 - room.leading_zeros()))
}

/// Whether `slot_size` is valid for a ring of `data_size` bytes: a power of two in
/// [`MIN_SLOT_SIZE`]..=[`MAX_SLOT_SIZE`] leaving at least two slots.
pub fn slot_size_ok(slot_size: usize, data_size: usize) -> bool {
    slot_size.is_power_of_two()
        && (MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size)
        && data_size / slot_size >= 2
}

/// The largest record payload a slot of `slot_size` bytes holds.
pub fn max_record(slot_size: usize) -> usize {
    slot_size - SLOT_PAYLOAD
}

/// The log layout for a region of `len` bytes and `readers` readers.
pub fn layout(len: usize, readers: usize) -> Result<Layout, Error> {
    if readers == 0 || readers > MAX_MEMBERS {
        return Err(Error::BadReaders { readers });
    }
    let size = data_size_for(len, readers).ok_or(HeaderError::BadRegion { len })?;
    Ok(Layout {
        protocol: PROTO_LOG,
        version: VERSION,
        data_offset: data_offset(readers),
        data_size: size,
        hash: LAYOUT_HASH,
    })
}

/// How the writer broke the protocol (seen by a reader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The writer's slot size is not a power of two in range leaving two slots.
    BadSlotSize(u32),
    /// The head is above [`MAX_HEAD`].
    HeadOutOfRange(u64),
    /// The head moved backwards (below a head seen before, or below this reader's
    /// cursor).
    HeadWentBack(u64),
    /// A slot's stamp is impossible for the record expected in it.
    BadStamp {
        /// The sequence number the reader expected in the slot.
        seq: u64,
        /// The stamp found.
        stamp: u64,
    },
    /// A stamped record's length exceeds the slot's payload capacity.
    BadLength(u32),
    /// A stamped record's reserved word is not zero.
    RecordReserved(u32),
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::BadSlotSize(s) => write!(f, "writer slot size {s:#x} invalid"),
            Broken::HeadOutOfRange(h) => write!(f, "head {h:#x} out of range"),
            Broken::HeadWentBack(h) => write!(f, "head {h:#x} went backwards"),
            Broken::BadStamp { seq, stamp } => {
                write!(f, "stamp {stamp:#x} impossible for record {seq}")
            }
            Broken::BadLength(l) => write!(f, "record length {l:#x} exceeds the slot"),
            Broken::RecordReserved(r) => write!(f, "record reserved word {r:#x}"),
        }
    }
}

/// A log error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is missing or does not match this side's layout (attach only).
    /// `NotInitialized` also while the writer is still initialising: retry later.
    Header(HeaderError),
    /// The reader count is 0 or above [`MAX_MEMBERS`].
    BadReaders {
        /// The count given.
        readers: usize,
    },
    /// The reader index is not below the reader count.
    BadIndex {
        /// The index given.
        index: usize,
        /// The reader count.
        readers: usize,
    },
    /// The region was laid out for another number of readers.
    ReadersMismatch {
        /// Reader count the header's data offset implies.
        found: usize,
        /// Reader count this side was given.
        expected: usize,
    },
    /// The slot size requested from [`Writer::attach`] is not valid for this region
    /// ([`slot_size_ok`]).
    BadSlotSize(usize),
    /// A restarting writer asked for another slot size than the region has.
    SlotSizeMismatch {
        /// Slot size in the region.
        found: usize,
        /// Slot size requested.
        requested: usize,
    },
    /// The writer broke the protocol; the reader is unusable from now on (sticky).
    PeerBroken(Broken),
    /// The payload can never fit in a slot.
    TooLarge {
        /// Payload length.
        len: usize,
        /// [`max_record`] for this log.
        max: usize,
    },
    /// The buffer given to [`Reader::read`] is smaller than the record (`len`); the
    /// record is not consumed.
    BufferTooSmall {
        /// The record's length.
        len: usize,
    },
    /// The writer overwrote the slot being read [`MAX_ATTEMPTS`] times in a row; nothing
    /// was returned, call again (losses so far are reported with the next record).
    Contended,
    /// The head reached [`MAX_HEAD`]: the log is full forever.
    Exhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Header(e) => write!(f, "log header: {e}"),
            Error::BadReaders { readers } => write!(f, "bad reader count {readers}"),
            Error::BadIndex { index, readers } => {
                write!(f, "reader index {index} not below {readers}")
            }
            Error::ReadersMismatch { found, expected } => {
                write!(
                    f,
                    "region laid out for {found} readers, expected {expected}"
                )
            }
            Error::BadSlotSize(s) => write!(f, "bad slot size {s}"),
            Error::SlotSizeMismatch { found, requested } => {
                write!(f, "slot size {found} in the region, requested {requested}")
            }
            Error::PeerBroken(b) => write!(f, "peer broken: {b}"),
            Error::TooLarge { len, max } => write!(f, "record of {len} bytes > max {max}"),
            Error::BufferTooSmall { len } => write!(f, "buffer too small for {len} bytes"),
            Error::Contended => write!(f, "record overwritten while reading, retry"),
            Error::Exhausted => write!(f, "sequence numbers exhausted"),
        }
    }
}

impl core::error::Error for Error {}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Error {
        Error::Header(e)
    }
}

/// Validates the header for `readers`, turning a data-offset mismatch that means "another
/// reader count" into [`Error::ReadersMismatch`].
fn validate(region: &Region, layout: &Layout, readers: usize) -> Result<(), Error> {
    match header::validate(region, layout) {
        Err(HeaderError::WrongDataArea { offset, .. })
            if offset > READERS_OFFSET as u64
                && (offset - READERS_OFFSET as u64) % LINE as u64 == 0
                && offset != layout.data_offset as u64 =>
        {
            let found = ((offset - READERS_OFFSET as u64) / LINE as u64)
                .try_into()
                .unwrap_or(usize::MAX);
            Err(Error::ReadersMismatch {
                found,
                expected: readers,
            })
        }
        r => Ok(r?),
    }
}

/// Zeroes the reader lines with plain copies (no reader is attached while the slot size
/// is 0; plain copies keep each word's atomic accesses of a single size).
fn zero_lines(region: &Region, off: usize, lines: usize) {
    for i in 0..lines {
        let _ = region.write_bytes(off + i * LINE, &[0u8; LINE]);
    }
}

/// The writer of a log.
pub struct Writer {
    region: Region,
    readers: usize,
    data_offset: usize,
    slot_size: usize,
    mask: u64,
    head: u64,
    epoch: u64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("head", &self.head)
            .field("slots", &(self.mask + 1))
            .field("slot_size", &self.slot_size)
            .finish()
    }
}

impl Writer {
    /// Attaches as the writer of a log shared with `readers` readers, with slots of
    /// `slot_size` bytes. The writer is the log's initialiser: if the region's magic is
    /// zero it initialises the header, zeroes the reader lines and slot stamps, and
    /// publishes the slot size last; otherwise it validates the header and its own fields
    /// (`Header(BadOwnField)` if impossible) and continues from the shared head (writer
    /// restart), so sequence numbers continue.
    pub fn attach(region: Region, readers: usize, slot_size: usize) -> Result<Writer, Error> {
        let layout = layout(region.len(), readers)?;
        if !slot_size_ok(slot_size, layout.data_size) {
            return Err(Error::BadSlotSize(slot_size));
        }
        let bad = HeaderError::BadRegion { len: region.len() };
        let fresh = match validate(&region, &layout, readers) {
            Err(Error::Header(HeaderError::NotInitialized)) => {
                header::init(&region, &layout)?;
                true
            }
            Err(e) => return Err(e),
            Ok(()) => false,
        };
        let own = region
            .load_le::<u32>(OFF_SLOT_SIZE, Ordering::Acquire)
            .ok_or(bad)? as usize;
        let head = if fresh || own == 0 {
            // Fresh region, or a writer died while initialising (no reader attaches
            // before the slot size is published): (re)do the protocol's part of init.
            region
                .store_le::<u64>(OFF_HEAD, 0, Ordering::Relaxed)
                .ok_or(bad)?;
            zero_lines(&region, READERS_OFFSET, readers);
            let slots = layout.data_size / slot_size;
            for i in 0..slots {
                let _ = region.store_le::<u64>(
                    layout.data_offset + i * slot_size + SLOT_STAMP,
                    0,
                    Ordering::Relaxed,
                );
            }
            region
                .store_le::<u32>(OFF_SLOT_SIZE, slot_size as u32, Ordering::Release)
                .ok_or(bad)?;
            0
        } else {
            if !slot_size_ok(own, layout.data_size) {
                return Err(HeaderError::BadOwnField.into());
            }
            if own != slot_size {
                return Err(Error::SlotSizeMismatch {
                    found: own,
                    requested: slot_size,
                });
            }
            let head = region
                .load_le::<u64>(OFF_HEAD, Ordering::Acquire)
                .ok_or(bad)?;
            if head > MAX_HEAD {
                return Err(HeaderError::BadOwnField.into());
            }
            head
        };
        region
            .store_le::<u32>(OFF_WRITER_FLAGS, 0, Ordering::Relaxed)
            .ok_or(bad)?;
        let epoch = header::announce(&region, Side::Writer)?;
        Ok(Writer {
            region,
            readers,
            data_offset: layout.data_offset,
            slot_size,
            mask: (layout.data_size / slot_size) as u64 - 1,
            head,
            epoch,
        })
    }

    /// Largest payload [`Writer::append`] accepts.
    pub fn max_record(&self) -> usize {
        max_record(self.slot_size)
    }

    /// Records appended so far: the sequence number of the next record.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Number of slots: how many of the newest records the ring holds.
    pub fn slots(&self) -> usize {
        self.mask as usize + 1
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// This side's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Reader `index`'s state and epoch, read now (unvalidated; they never affect the
    /// writer). `None` if `index` is not below the reader count.
    pub fn reader_status(&self, index: usize) -> Option<SideStatus> {
        if index >= self.readers {
            return None;
        }
        header::line_status(&self.region, reader_line(index))
    }

    /// Appends `payload` as record number [`Writer::head`], overwriting the oldest record
    /// if the ring is full. Never waits. Returns the readers to notify (those that set
    /// NEED_WAKEUP); notify only those.
    pub fn append(&mut self, payload: &[u8]) -> Result<Wakeups, Error> {
        let max = self.max_record();
        if payload.len() > max {
            return Err(Error::TooLarge {
                len: payload.len(),
                max,
            });
        }
        if self.head >= MAX_HEAD {
            return Err(Error::Exhausted);
        }
        let seq = self.head;
        let slot = self.data_offset + (seq & self.mask) as usize * self.slot_size;
        let r = &self.region;
        // Mark busy; the fence orders this store before every payload store below, so a
        // reader that reads any of the new bytes sees a changed stamp afterwards.
        let _ = r.store_le::<u64>(slot + SLOT_STAMP, stamp_busy(seq), Ordering::Release);
        fence(Ordering::Release);
        let _ = r.store_le::<u64>(slot + SLOT_LEN, payload.len() as u64, Ordering::Relaxed);
        for (k, chunk) in payload.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let _ = r.store_le(
                slot + SLOT_PAYLOAD + 8 * k,
                u64::from_le_bytes(w),
                Ordering::Relaxed,
            );
        }
        let _ = r.store_le::<u64>(slot + SLOT_STAMP, stamp_done(seq), Ordering::Release);
        self.head = seq + 1;
        let _ = r.store_le::<u64>(OFF_HEAD, self.head, Ordering::Release);
        Ok(header::collect_wakeups(r, READERS_OFFSET, self.readers))
    }

    /// Marks the writer detached (state `Reset`). The records stay.
    pub fn detach(self) {
        header::set_state(&self.region, Side::Writer, State::Reset);
    }
}

/// Where a newly attached reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the oldest record still in the ring; earlier records are not counted as
    /// missed.
    Oldest,
    /// After the newest record: only records appended from now on.
    Latest,
    /// At the cursor saved in this reader's line: right after the last record this
    /// reader index returned (0, the first record ever, if it never read one since the
    /// region was initialised). Records overwritten meanwhile are reported as missed.
    Resume,
}

/// A record returned by [`Reader::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number (0 for the first record ever appended).
    pub seq: u64,
    /// Payload length (bytes copied into the buffer).
    pub len: usize,
    /// Records this reader missed (overwritten before it read them) between the previous
    /// record it returned (or its start) and this one: `seq - missed` is the position it
    /// was at.
    pub missed: u64,
}

/// One reader of a log.
pub struct Reader {
    region: Region,
    line: usize,
    data_offset: usize,
    slot_size: usize,
    mask: u64,
    max: usize,
    cursor: u64,
    seen_head: u64,
    pending: u64,
    epoch: u64,
    broken: Option<Broken>,
    waiting: bool,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("cursor", &self.cursor)
            .field("slots", &(self.mask + 1))
            .field("broken", &self.broken)
            .finish()
    }
}

impl Reader {
    /// Attaches as reader `index` of `readers` (both from the manifest).
    /// `Header(NotInitialized)` until the writer has initialised the region (retry
    /// later); typed errors if `readers`, `index` or the header do not match; `PeerBroken`
    /// if the writer's fields are impossible. Then starts at `start`, saves that position
    /// as its cursor and announces itself on its line.
    pub fn attach(
        region: Region,
        readers: usize,
        index: usize,
        start: Start,
    ) -> Result<Reader, Error> {
        let layout = layout(region.len(), readers)?;
        if index >= readers {
            return Err(Error::BadIndex { index, readers });
        }
        validate(&region, &layout, readers)?;
        let bad = HeaderError::BadRegion { len: region.len() };
        let raw = region
            .load_le::<u32>(OFF_SLOT_SIZE, Ordering::Acquire)
            .ok_or(bad)?;
        if raw == 0 {
            return Err(HeaderError::NotInitialized.into());
        }
        let line = reader_line(index);
        let slot_size = raw as usize;
        let mut rd = Reader {
            region,
            line,
            data_offset: layout.data_offset,
            slot_size,
            mask: 0,
            max: 0,
            cursor: 0,
            seen_head: 0,
            pending: 0,
            epoch: 0,
            broken: None,
            waiting: false,
        };
        if !slot_size_ok(slot_size, layout.data_size) {
            return rd.fail(Broken::BadSlotSize(raw));
        }
        rd.mask = (layout.data_size / slot_size) as u64 - 1;
        rd.max = max_record(slot_size);
        let saved = region
            .load_le::<u64>(line + READER_CURSOR, Ordering::Relaxed)
            .ok_or(bad)?;
        if saved > MAX_HEAD {
            return Err(HeaderError::BadOwnField.into());
        }
        let head = rd.head()?;
        rd.cursor = match start {
            Start::Oldest => head.saturating_sub(rd.mask + 1),
            Start::Latest => head,
            Start::Resume if saved > head => return rd.fail(Broken::HeadWentBack(head)),
            Start::Resume => saved,
        };
        let _ = region.store_le::<u64>(line + READER_CURSOR, rd.cursor, Ordering::Relaxed);
        rd.set_flags(0);
        rd.epoch = header::announce_line(&region, line)?;
        Ok(rd)
    }

    /// The sequence number of the next record this reader reads (records below it that
    /// it did not return were missed, or skipped by its [`Start`]).
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// Largest payload a record can have.
    pub fn max_record(&self) -> usize {
        self.max
    }

    /// Number of slots: how many of the newest records the ring holds.
    pub fn slots(&self) -> usize {
        self.mask as usize + 1
    }

    /// Slot size in bytes (read once from the writer's line at attach).
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// This reader's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The writer's state and epoch, read now.
    pub fn writer_status(&self) -> SideStatus {
        header::side_status(&self.region, Side::Writer).unwrap_or(SideStatus {
            state: None,
            raw_state: 0,
            epoch: 0,
        })
    }

    /// Why the reader is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    fn fail<T>(&mut self, b: Broken) -> Result<T, Error> {
        if self.broken.is_none() {
            self.broken = Some(b);
            let _ = self.region.store_le::<u32>(
                self.line + SIDE_STATE,
                State::Broken as u32,
                Ordering::Release,
            );
        }
        Err(Error::PeerBroken(b))
    }

    fn check(&self) -> Result<(), Error> {
        match self.broken {
            Some(b) => Err(Error::PeerBroken(b)),
            None => Ok(()),
        }
    }

    fn set_flags(&mut self, v: u32) {
        let _ = self
            .region
            .store_le::<u32>(self.line + SIDE_FLAGS, v, Ordering::SeqCst);
    }

    fn clear_wait(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.set_flags(0);
        }
    }

    /// Loads the head once (acquire) and checks `seen_head <= head <= MAX_HEAD`
    /// (`seen_head` is never below the cursor).
    fn head(&mut self) -> Result<u64, Error> {
        let Some(h) = self.region.load_le::<u64>(OFF_HEAD, Ordering::Acquire) else {
            return self.fail(Broken::HeadOutOfRange(0));
        };
        if h > MAX_HEAD {
            return self.fail(Broken::HeadOutOfRange(h));
        }
        if h < self.seen_head {
            return self.fail(Broken::HeadWentBack(h));
        }
        self.seen_head = h;
        Ok(h)
    }

    fn slot(&self, seq: u64) -> usize {
        self.data_offset + (seq & self.mask) as usize * self.slot_size
    }

    fn word(&self, off: usize) -> u64 {
        self.region
            .load_le::<u64>(off, Ordering::Relaxed)
            .unwrap_or(0)
    }

    /// Copies the next record into `buf` and returns it, or `Ok(None)` if there is none
    /// yet. Records the writer overwrote before this reader got to them are skipped and
    /// counted in [`Record::missed`]; a record overwritten while being copied is never
    /// returned. `Err(BufferTooSmall)`: nothing consumed. `Err(Contended)`: the writer
    /// kept overwriting the records being read; call again.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<Record>, Error> {
        self.check()?;
        self.clear_wait();
        let slots = self.mask + 1;
        for _ in 0..MAX_ATTEMPTS {
            let head = self.head()?;
            if self.cursor == head {
                return Ok(None);
            }
            // Records below head - slots have certainly been overwritten.
            let oldest = head.saturating_sub(slots);
            if self.cursor < oldest {
                self.pending += oldest - self.cursor;
                self.cursor = oldest;
            }
            let seq = self.cursor;
            let slot = self.slot(seq);
            let Some(stamp) = self
                .region
                .load_le::<u64>(slot + SLOT_STAMP, Ordering::Acquire)
            else {
                return self.fail(Broken::BadStamp { seq, stamp: 0 });
            };
            if stamp == stamp_done(seq) {
                let meta = self.word(slot + SLOT_LEN);
                let (len, rsv) = (meta as u32, (meta >> 32) as u32);
                let len_ok = (len as usize) <= self.max;
                let copied = len_ok && rsv == 0 && (len as usize) <= buf.len();
                if copied {
                    let dst = &mut buf[..len as usize];
                    for (k, chunk) in dst.chunks_mut(8).enumerate() {
                        let w = self
                            .region
                            .load_le::<u64>(slot + SLOT_PAYLOAD + 8 * k, Ordering::Relaxed)
                            .map_or([0; 8], u64::to_le_bytes);
                        chunk.copy_from_slice(&w[..chunk.len()]);
                    }
                }
                // Orders the copies above before the re-check: if any of them saw bytes
                // of a newer record, the stamp below is no longer ours.
                fence(Ordering::Acquire);
                let again = self.word(slot + SLOT_STAMP);
                if again != stamp {
                    continue; // overwritten while copying: the next pass counts it
                }
                if rsv != 0 {
                    return self.fail(Broken::RecordReserved(rsv));
                }
                if !len_ok {
                    return self.fail(Broken::BadLength(len));
                }
                if !copied {
                    return Err(Error::BufferTooSmall { len: len as usize });
                }
                self.cursor = seq + 1;
                let missed = core::mem::take(&mut self.pending);
                let _ = self.region.store_le::<u64>(
                    self.line + READER_CURSOR,
                    self.cursor,
                    Ordering::Relaxed,
                );
                return Ok(Some(Record {
                    seq,
                    len: len as usize,
                    missed,
                }));
            }
            // The slot holds (or is getting) another record. The only legal one is a
            // newer record for the same slot, not beyond the head: then every record up
            // to that one minus `slots` is gone.
            let broken = Broken::BadStamp { seq, stamp };
            let Some(other) = stamp.checked_sub(1).map(|s| s >> 1) else {
                return self.fail(broken);
            };
            if other <= seq || (other - seq) & self.mask != 0 {
                return self.fail(broken);
            }
            if other > self.head()? {
                return self.fail(broken);
            }
            let next = other - slots + 1;
            self.pending += next - seq;
            self.cursor = next;
        }
        Err(Error::Contended)
    }

    /// Call before blocking for records: sets this reader's NEED_WAKEUP flag, issues a
    /// full fence and re-checks the head. `Ok(true)`: nothing new, block until notified
    /// (then read again); `Ok(false)`: records are available now (flag cleared). The
    /// next [`Reader::read`] clears the flag.
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.check()?;
        self.set_flags(NEED_WAKEUP);
        self.waiting = true;
        fence(Ordering::SeqCst);
        let head = self.head()?;
        if head == self.cursor {
            Ok(true)
        } else {
            self.clear_wait();
            Ok(false)
        }
    }

    /// Marks this reader detached (state `Reset`); its saved cursor stays.
    pub fn detach(self) {
        header::set_line_state(&self.region, self.line, State::Reset);
    }
}

#[cfg(test)]
mod tests;
