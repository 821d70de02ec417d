//! Latest value: one or more writers each publish a fixed-size value into their own slot
//! (a seqlock); readers get a complete, most recent value (docs/protocols.md, `latest`).
//!
//! ```text
//! 0x00 common header (protocol id PROTO_LATEST, version VERSION)
//! 0x40 parameter line, written once by writer 0 (the initialiser):
//!      0x40..0x50 zero  0x50 u32 value_size  0x54 u32 writers  0x58 u32 readers
//!      0x5c..0x80 zero
//! 0x80 side 1 line: unused (zero)
//! 0xc0 writer slot w at 0xc0 + w * stride, stride = round_up(0x20 + value_size, 64):
//!      +0x00 u32 state  +0x04 u32 flags (0)  +0x08 u64 epoch
//!      +0x10 u64 seq (odd: a publish is in progress)  +0x18 u64 stamp
//!      +0x20 value: value_size bytes, then zero up to a multiple of 8
//! 0xc0 + writers * stride: reader line r at + r * 64:
//!      +0x00 u32 state  +0x04 u32 flags (bit 0 NEED_WAKEUP)  +0x08 u64 epoch
//! ```
//!
//! # Most recent
//!
//! Per writer, the value is its last *complete* publish. Across writers, the newest value
//! is the one with the highest `stamp` (an unsigned u64 the writer supplies, e.g. a
//! timestamp from a clock all domains share such as the Arm generic timer, or a
//! generation number), ties broken by the lowest writer index.
//!
//! # Seqlock
//!
//! A writer never blocks and reads nothing from readers except their NEED_WAKEUP flags.
//! [`Writer::publish`] stores `seq + 1` (odd), a release fence, the stamp and the value,
//! then `seq + 2` (even, release). A reader loads `seq` (acquire), copies stamp and value,
//! issues an acquire fence, loads `seq` again, and accepts the copy only if both loads are
//! equal and even. Value bytes are copied as relaxed 8-byte atomic words, so a torn copy is
//! a defined (and rejected) outcome, never a data race.
//!
//! A reader tries each slot at most [`Reader::attempts`] times per operation
//! ([`DEFAULT_ATTEMPTS`]) and then reports it *contended*: [`Reader::read_writer`] fails
//! with [`Error::Contended`]; [`Reader::read_latest`] leaves the slot out, returns the
//! newest value of the others and lists the left-out slots in [`Sample::contended`] (and
//! fails with `Contended` only when no other writer has a value).
//!
//! # Restarts
//!
//! * A writer restarts with [`Writer::attach`] and continues its slot's sequence from shared
//!   memory. If it died during a publish, its slot stays odd (readers report it contended,
//!   never a torn value) until its next publish completes.
//! * A reader restarts with [`Reader::attach`]; it keeps nothing in shared memory except
//!   its line (state, flags, epoch).
//!
//! # Hostile writers
//!
//! A writer can only write its own slot: it can publish any value with any stamp (and so
//! make its values look newest), or leave its slot odd (contended). A reader detects one
//! impossible thing, a sequence word that goes backwards; it then marks that writer broken
//! ([`Reader::broken`], sticky until the reader re-attaches) and ignores its slot.
//!
//! # Notifications
//!
//! A reader that wants to block calls [`Reader::prepare_wait`] (sets NEED_WAKEUP, full
//! fence, re-check with [`Reader::changed`]) and blocks only if it returns `true`.
//! [`Writer::publish`] returns the readers to notify: those whose NEED_WAKEUP flag was set.

use crate::header::{
    self, Field, HeaderError, Layout, SideStatus, State, Wakeups, LINE, MAX_MEMBERS, NEED_WAKEUP,
    PROTO_LATEST, SIDE_FLAGS,
};
use core::fmt;
use core::sync::atomic::{fence, Ordering};
use staticbus_guest::Region;

/// Layout version of `latest`.
pub const VERSION: u32 = 1;
/// The fields of `latest` as byte ranges (smoltcp's `mod field`): the offsets the code
/// uses and the hashed [`FIELDS`] table are both built from these. Slot fields are
/// relative to a writer slot, reader fields to a reader line.
pub mod field {
    use crate::header::field::{span, SIDE0, SIDE_EPOCH, SIDE_FLAGS, SIDE_STATE};
    use crate::header::DATA_MIN_OFFSET;
    use core::ops::Range;

    /// The parameter line (the header's side 0 line; only the three words below are
    /// non-zero, so only they are in the table).
    pub const PARAMS: Range<usize> = span(SIDE0, 0x40);
    /// u32 value size.
    pub const VALUE_SIZE: Range<usize> = span(SIDE0 + 0x10, 4);
    /// u32 writer count (0: not initialised).
    pub const WRITERS: Range<usize> = span(SIDE0 + 0x14, 4);
    /// u32 reader count.
    pub const READERS: Range<usize> = span(SIDE0 + 0x18, 4);
    /// The writer slots, then the reader lines.
    pub const DATA: Range<usize> = span(DATA_MIN_OFFSET, 0);
    /// A writer slot's u32 state word.
    pub const SLOT_STATE: Range<usize> = SIDE_STATE;
    /// A writer slot's u32 flags word (always 0).
    pub const SLOT_FLAGS: Range<usize> = SIDE_FLAGS;
    /// A writer slot's u64 epoch.
    pub const SLOT_EPOCH: Range<usize> = SIDE_EPOCH;
    /// A writer slot's u64 sequence word.
    pub const SLOT_SEQ: Range<usize> = span(0x10, 8);
    /// A writer slot's u64 stamp.
    pub const SLOT_STAMP: Range<usize> = span(0x18, 8);
    /// A writer slot's value (`value_size` bytes: 0 in the table).
    pub const SLOT_VALUE: Range<usize> = span(0x20, 0);
    /// A reader's u32 state word, within its line.
    pub const READER_STATE: Range<usize> = SIDE_STATE;
    /// A reader's u32 flags word (NEED_WAKEUP), within its line.
    pub const READER_FLAGS: Range<usize> = SIDE_FLAGS;
    /// A reader's u64 epoch, within its line.
    pub const READER_EPOCH: Range<usize> = SIDE_EPOCH;
}

/// Offset of the parameter line (the header's side 0 line).
pub const OFF_PARAMS: usize = field::PARAMS.start;
/// Offset of the u32 value size (bytes).
pub const OFF_VALUE_SIZE: usize = field::VALUE_SIZE.start;
/// Offset of the u32 writer count; written last at initialisation (release): zero means
/// "not initialised yet".
pub const OFF_WRITERS: usize = field::WRITERS.start;
/// Offset of the u32 reader count.
pub const OFF_READERS: usize = field::READERS.start;
/// Offset of the first writer slot.
pub const DATA_OFFSET: usize = field::DATA.start;
/// Offset of a writer slot's u32 state word within the slot.
pub const SLOT_STATE: usize = field::SLOT_STATE.start;
/// Offset of a writer slot's u32 flags word within the slot (always 0).
pub const SLOT_FLAGS: usize = field::SLOT_FLAGS.start;
/// Offset of a writer slot's u64 epoch within the slot.
pub const SLOT_EPOCH: usize = field::SLOT_EPOCH.start;
/// Offset of a writer slot's u64 sequence word within the slot.
pub const SLOT_SEQ: usize = field::SLOT_SEQ.start;
/// Offset of a writer slot's u64 stamp within the slot.
pub const SLOT_STAMP: usize = field::SLOT_STAMP.start;
/// Offset of a writer slot's value within the slot.
pub const SLOT_VALUE: usize = field::SLOT_VALUE.start;
/// Largest value size in bytes.
pub const MAX_VALUE_SIZE: usize = 1 << 20;
/// Default number of attempts a reader makes on one slot before reporting it contended.
pub const DEFAULT_ATTEMPTS: u32 = 64;
/// A writer's sequence word stays below this; a larger own value at attach is corrupt.
pub const SEQ_LIMIT: u64 = 1 << 63;

/// The field table of `latest`, input of the layout hash.
///
/// These follow [`header::COMMON_FIELDS`] in the hashed table.
pub const FIELDS: &[Field] = &[
    Field::new("params.value_size", field::VALUE_SIZE),
    Field::new("params.writers", field::WRITERS),
    Field::new("params.readers", field::READERS),
    Field::new("data", field::DATA),
    Field::new("slot.state", field::SLOT_STATE),
    Field::new("slot.flags", field::SLOT_FLAGS),
    Field::new("slot.epoch", field::SLOT_EPOCH),
    Field::new("slot.seq", field::SLOT_SEQ),
    Field::new("slot.stamp", field::SLOT_STAMP),
    Field::new("slot.value", field::SLOT_VALUE),
    Field::new("reader.state", field::READER_STATE),
    Field::new("reader.flags", field::READER_FLAGS),
    Field::new("reader.epoch", field::READER_EPOCH),
];

/// The layout hash of `latest`.
pub const LAYOUT_HASH: u64 = header::protocol_layout_hash(FIELDS);

/// The channel parameters every party passes (from the manifest) and the initialiser
/// records in the parameter line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    writers: usize,
    readers: usize,
    value_size: usize,
}

impl Params {
    /// Checked parameters: `1..=MAX_MEMBERS` writers and readers, a value size of at most
    /// [`MAX_VALUE_SIZE`] bytes (0 is allowed: stamp-only values).
    pub fn new(writers: usize, readers: usize, value_size: usize) -> Result<Params, Error> {
        let p = Params {
            writers,
            readers,
            value_size,
        };
        if !(1..=MAX_MEMBERS).contains(&writers)
            || !(1..=MAX_MEMBERS).contains(&readers)
            || value_size > MAX_VALUE_SIZE
        {
            return Err(Error::InvalidParams(p));
        }
        Ok(p)
    }

    /// Number of writers (slots).
    pub fn writers(&self) -> usize {
        self.writers
    }

    /// Number of readers (reader lines).
    pub fn readers(&self) -> usize {
        self.readers
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Bytes from one writer slot to the next: `round_up(0x20 + value_size, 64)`.
    pub fn slot_stride(&self) -> usize {
        SLOT_VALUE
            .saturating_add(self.value_size)
            .div_ceil(LINE)
            .saturating_mul(LINE)
    }

    /// Offset of writer `w`'s slot in the region.
    pub fn writer_slot(&self, w: usize) -> usize {
        DATA_OFFSET.saturating_add(w.saturating_mul(self.slot_stride()))
    }

    /// Offset of reader `r`'s line in the region.
    pub fn reader_line(&self, r: usize) -> usize {
        self.writer_slot(self.writers)
            .saturating_add(r.saturating_mul(LINE))
    }

    /// Size of the data area: the writer slots and the reader lines.
    pub fn data_size(&self) -> usize {
        self.reader_line(self.readers) - DATA_OFFSET
    }

    /// The smallest region that holds the channel.
    pub fn region_size(&self) -> usize {
        self.reader_line(self.readers)
    }

    /// The header layout for these parameters.
    pub fn layout(&self) -> Layout {
        Layout {
            protocol: PROTO_LATEST,
            version: VERSION,
            data_offset: DATA_OFFSET,
            data_size: self.data_size(),
            hash: LAYOUT_HASH,
        }
    }
}

/// A set of writer indices (bit `w` stands for writer `w`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterSet(pub u64);

impl WriterSet {
    fn single(w: usize) -> WriterSet {
        WriterSet(bit(w))
    }

    /// No writer.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether writer `w` is in the set.
    pub fn contains(self, w: usize) -> bool {
        self.0 & bit(w) != 0
    }

    /// Number of writers in the set.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The writer indices, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        Wakeups(self.0).iter()
    }
}

fn bit(w: usize) -> u64 {
    if w < MAX_MEMBERS {
        1 << w
    } else {
        0
    }
}

/// How a writer broke the protocol (seen by a reader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The slot's sequence word went backwards: `found` after `seen`.
    SeqWentBack {
        /// The highest sequence value seen before.
        seen: u64,
        /// The smaller value found now.
        found: u64,
    },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::SeqWentBack { seen, found } => {
                write!(f, "sequence went back from {seen:#x} to {found:#x}")
            }
        }
    }
}

/// A `latest` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is missing or does not match (attach only). `NotInitialized`: writer 0
    /// has not initialised the region yet; retry later.
    Header(HeaderError),
    /// The parameters passed to attach are out of range.
    InvalidParams(Params),
    /// An index (own writer or reader index at attach, or the writer given to
    /// [`Reader::read_writer`]) is not below the count.
    BadIndex {
        /// The index given.
        index: usize,
        /// The number of writers or readers.
        count: usize,
    },
    /// The region was initialised with other parameters (attach only).
    ParamMismatch {
        /// In the region (unchecked values).
        found: Params,
        /// Passed by this party.
        expected: Params,
    },
    /// [`Writer::publish`] got a value that is not exactly the channel's value size.
    WrongValueSize {
        /// The length given.
        len: usize,
        /// The channel's value size.
        expected: usize,
    },
    /// The buffer given to a read is smaller than the value size `len`.
    BufferTooSmall {
        /// The value size.
        len: usize,
    },
    /// These writers' slots did not hold still for [`Reader::attempts`] attempts (a
    /// publish in progress, or a writer that died during one), and no other writer had a
    /// value to return.
    Contended(WriterSet),
    /// The writer broke the protocol; this reader ignores its slot until it re-attaches.
    WriterBroken {
        /// The writer index.
        writer: usize,
        /// What it did.
        why: Broken,
    },
    /// The writer's sequence word reached [`SEQ_LIMIT`] (after 2^62 publishes).
    SeqExhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Header(e) => write!(f, "latest header: {e}"),
            Error::InvalidParams(p) => write!(
                f,
                "invalid parameters: {} writers, {} readers, value size {}",
                p.writers, p.readers, p.value_size
            ),
            Error::BadIndex { index, count } => write!(f, "index {index} not below {count}"),
            Error::ParamMismatch { found, expected } => write!(
                f,
                "region has {} writers, {} readers, value size {}; expected {}, {}, {}",
                found.writers,
                found.readers,
                found.value_size,
                expected.writers,
                expected.readers,
                expected.value_size
            ),
            Error::WrongValueSize { len, expected } => {
                write!(f, "value of {len} bytes, channel value size is {expected}")
            }
            Error::BufferTooSmall { len } => write!(f, "buffer too small for {len} bytes"),
            Error::Contended(w) => write!(f, "writer slots {:#x} contended", w.0),
            Error::WriterBroken { writer, why } => write!(f, "writer {writer} broken: {why}"),
            Error::SeqExhausted => write!(f, "sequence exhausted"),
        }
    }
}

impl core::error::Error for Error {}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Error {
        Error::Header(e)
    }
}

/// What the parameter line holds.
enum Found {
    /// The writer count is zero: initialisation not finished.
    Unset,
    /// Parameters as recorded (unchecked).
    Set(Params),
}

/// Reads the parameter line: the writer count once with acquire (pairs with the
/// initialiser's release store), then the whole line once.
fn read_params(region: &Region) -> Result<Found, Error> {
    let bad = HeaderError::BadRegion { len: region.len() };
    if region
        .load_le::<u32>(OFF_WRITERS, Ordering::Acquire)
        .ok_or(bad)?
        == 0
    {
        return Ok(Found::Unset);
    }
    let mut l = [0u8; LINE];
    region.read_bytes(OFF_PARAMS, &mut l).map_err(|_| bad)?;
    let at = |o: usize| {
        let o = o - OFF_PARAMS;
        u32::from_le_bytes([l[o], l[o + 1], l[o + 2], l[o + 3]]) as usize
    };
    let writers = at(OFF_WRITERS);
    if writers == 0 {
        return Ok(Found::Unset);
    }
    if l[..OFF_VALUE_SIZE - OFF_PARAMS].iter().any(|&b| b != 0)
        || l[OFF_READERS + 4 - OFF_PARAMS..].iter().any(|&b| b != 0)
    {
        return Err(Error::Header(HeaderError::Reserved));
    }
    Ok(Found::Set(Params {
        writers,
        readers: at(OFF_READERS),
        value_size: at(OFF_VALUE_SIZE),
    }))
}

/// Initialises the region (writer 0 only, when no one is attached): header, zeroed data
/// area, then the parameters with the writer count last (release).
fn init(region: &Region, p: &Params) -> Result<(), Error> {
    header::init(region, &p.layout())?;
    let bad = HeaderError::BadRegion { len: region.len() };
    let zero = [0u8; LINE];
    let mut off = DATA_OFFSET;
    while off < p.region_size() {
        region.write_bytes(off, &zero).map_err(|_| bad)?;
        off += LINE;
    }
    region
        .store_le::<u32>(OFF_VALUE_SIZE, p.value_size as u32, Ordering::Relaxed)
        .ok_or(bad)?;
    region
        .store_le::<u32>(OFF_READERS, p.readers as u32, Ordering::Relaxed)
        .ok_or(bad)?;
    region
        .store_le::<u32>(OFF_WRITERS, p.writers as u32, Ordering::Release)
        .ok_or(bad)?;
    Ok(())
}

/// Validates (or, for the initialiser, initialises) the header and the parameters.
fn attach_region(region: &Region, p: &Params, initialiser: bool) -> Result<(), Error> {
    let mismatch = |found| Error::ParamMismatch {
        found,
        expected: *p,
    };
    match header::validate(region, &p.layout()) {
        Ok(()) => {}
        Err(HeaderError::NotInitialized) if initialiser => return init(region, p),
        Err(e @ HeaderError::WrongDataArea { .. }) => {
            // Most likely other parameters: say so when the parameter line shows it.
            return match read_params(region) {
                Ok(Found::Set(found)) if found != *p => Err(mismatch(found)),
                Ok(Found::Unset) if initialiser => init(region, p),
                Ok(Found::Unset) => Err(Error::Header(HeaderError::NotInitialized)),
                _ => Err(Error::Header(e)),
            };
        }
        Err(e) => return Err(Error::Header(e)),
    }
    match read_params(region)? {
        // The initialiser died between the header and the parameters: no one attached.
        Found::Unset if initialiser => init(region, p),
        Found::Unset => Err(Error::Header(HeaderError::NotInitialized)),
        Found::Set(found) if found == *p => Ok(()),
        Found::Set(found) => Err(mismatch(found)),
    }
}

fn check_index(index: usize, count: usize) -> Result<(), Error> {
    if index < count {
        Ok(())
    } else {
        Err(Error::BadIndex { index, count })
    }
}

fn status_at(region: &Region, line: usize) -> SideStatus {
    header::line_status(region, line).unwrap_or(SideStatus {
        state: None,
        raw_state: 0,
        epoch: 0,
    })
}

/// A writer: publishes values into its own slot.
pub struct Writer {
    region: Region,
    params: Params,
    index: usize,
    slot: usize,
    seq: u64,
    epoch: u64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("index", &self.index)
            .field("seq", &self.seq)
            .field("params", &self.params)
            .finish()
    }
}

impl Writer {
    /// Attaches as writer `index` of `writers` (with `readers` readers and values of
    /// `value_size` bytes, all as the manifest says). Writer 0 is the initialiser: if the
    /// region's magic is zero (or it died before recording the parameters) it initialises
    /// the region. Every other writer gets `Header(NotInitialized)` until then (retry).
    ///
    /// A restarted writer continues its slot's sequence. If it died during a publish,
    /// the slot stays odd (readers see it contended, never torn) until the next publish.
    pub fn attach(
        region: Region,
        writers: usize,
        readers: usize,
        index: usize,
        value_size: usize,
    ) -> Result<Writer, Error> {
        let params = Params::new(writers, readers, value_size)?;
        check_index(index, writers)?;
        attach_region(&region, &params, index == 0)?;
        let slot = params.writer_slot(index);
        let bad = HeaderError::BadRegion { len: region.len() };
        let own = region
            .load_le::<u64>(slot + SLOT_SEQ, Ordering::Acquire)
            .ok_or(bad)?;
        if own >= SEQ_LIMIT {
            return Err(Error::Header(HeaderError::BadOwnField));
        }
        // An odd value: the previous incarnation died mid-publish. Count that publish as
        // used (its value is lost) and leave the slot odd until the next publish.
        let seq = own + (own & 1);
        region
            .store_le::<u32>(slot + SLOT_FLAGS, 0, Ordering::Relaxed)
            .ok_or(bad)?;
        let epoch = header::announce_line(&region, slot)?;
        Ok(Writer {
            region,
            params,
            index,
            slot,
            seq,
            epoch,
        })
    }

    /// The channel parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// This writer's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This writer's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence value of the last complete publish (even; 0 = none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Reader `r`'s state and epoch, read now (`None` if there is no reader `r`).
    pub fn reader_status(&self, r: usize) -> Option<SideStatus> {
        (r < self.params.readers).then(|| status_at(&self.region, self.params.reader_line(r)))
    }

    /// Publishes `value` (exactly the value size) with `stamp`. Never blocks and never
    /// fails for a correct call: stores `seq + 1` (odd), a release fence, the stamp and
    /// the value, then `seq + 2` (release). Returns the readers to notify (their
    /// NEED_WAKEUP flag was set after a full fence).
    pub fn publish(&mut self, stamp: u64, value: &[u8]) -> Result<Wakeups, Error> {
        if value.len() != self.params.value_size {
            return Err(Error::WrongValueSize {
                len: value.len(),
                expected: self.params.value_size,
            });
        }
        let next = self.seq + 2;
        if next >= SEQ_LIMIT {
            return Err(Error::SeqExhausted);
        }
        let r = &self.region;
        let seq = self.slot + SLOT_SEQ;
        // All offsets are inside the data area, which attach checked fits the region.
        let _ = r.store_le::<u64>(seq, self.seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let _ = r.store_le::<u64>(self.slot + SLOT_STAMP, stamp, Ordering::Relaxed);
        for (i, chunk) in value.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let off = self.slot + SLOT_VALUE + i * 8;
            let _ = r.store_le::<u64>(off, u64::from_le_bytes(w), Ordering::Relaxed);
        }
        let _ = r.store_le::<u64>(seq, next, Ordering::Release);
        self.seq = next;
        Ok(header::collect_wakeups(
            r,
            self.params.reader_line(0),
            self.params.readers,
        ))
    }

    /// Marks the writer detached (state `Reset`). Its last value stays readable.
    pub fn detach(self) {
        header::set_line_state(&self.region, self.slot, State::Reset);
    }
}

/// A value returned by a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The writer that published it.
    pub writer: usize,
    /// The stamp it was published with.
    pub stamp: u64,
    /// The slot's (even) sequence value for this publish: grows by at least 2 with each
    /// publish of that writer.
    pub seq: u64,
    /// [`Reader::read_latest`]: writers left out because their slot was contended, so a
    /// newer value may exist there. Always empty for [`Reader::read_writer`].
    pub contended: WriterSet,
}

/// One slot snapshot.
#[derive(Clone, Copy)]
enum Slot {
    /// No complete publish yet (seq 0, or 1: the first publish is in progress).
    Empty(u64),
    /// A consistent snapshot.
    Value { seq: u64, stamp: u64 },
    /// No consistent snapshot within the attempts; the last sequence value seen.
    Contended(u64),
    /// The writer is (now) broken.
    Broken,
}

/// The last [`Reader::read_latest`] result, for [`Reader::changed`].
#[derive(Clone, Copy)]
struct Last {
    writer: usize,
    seq: u64,
    stamp: u64,
}

/// Ranks `(stamp, writer)` above `last`: higher stamp, then lower index.
fn above(stamp: u64, writer: usize, last: Option<Last>) -> bool {
    match last {
        None => true,
        Some(l) => stamp > l.stamp || (stamp == l.stamp && writer < l.writer),
    }
}

/// A reader: reads the newest value, or one writer's.
pub struct Reader {
    region: Region,
    params: Params,
    index: usize,
    line: usize,
    epoch: u64,
    attempts: u32,
    waiting: bool,
    /// Per writer: the highest sequence value ever seen (going back = broken).
    max_seen: [u64; MAX_MEMBERS],
    /// Per writer: an odd sequence value at which the slot was found contended.
    stuck: [u64; MAX_MEMBERS],
    /// Per writer: the sequence value (and stamp, if even) behind the last result.
    view_seq: [u64; MAX_MEMBERS],
    view_stamp: [u64; MAX_MEMBERS],
    broken: [Option<Broken>; MAX_MEMBERS],
    last: Option<Last>,
    last_contended: u64,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("index", &self.index)
            .field("params", &self.params)
            .field("broken", &self.broken_writers())
            .finish()
    }
}

impl Reader {
    /// Attaches as reader `index` (parameters as the manifest says). Fails with
    /// `Header(NotInitialized)` until writer 0 has initialised the region (retry later),
    /// and with [`Error::ParamMismatch`] if it was initialised with other parameters.
    pub fn attach(
        region: Region,
        writers: usize,
        readers: usize,
        index: usize,
        value_size: usize,
    ) -> Result<Reader, Error> {
        let params = Params::new(writers, readers, value_size)?;
        check_index(index, readers)?;
        attach_region(&region, &params, false)?;
        let line = params.reader_line(index);
        let bad = HeaderError::BadRegion { len: region.len() };
        region
            .store_le::<u32>(line + SIDE_FLAGS, 0, Ordering::SeqCst)
            .ok_or(bad)?;
        let epoch = header::announce_line(&region, line)?;
        Ok(Reader {
            region,
            params,
            index,
            line,
            epoch,
            attempts: DEFAULT_ATTEMPTS,
            waiting: false,
            max_seen: [0; MAX_MEMBERS],
            stuck: [0; MAX_MEMBERS],
            view_seq: [0; MAX_MEMBERS],
            view_stamp: [0; MAX_MEMBERS],
            broken: [None; MAX_MEMBERS],
            last: None,
            last_contended: 0,
        })
    }

    /// The channel parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// This reader's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This reader's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Attempts per slot and operation before the slot counts as contended.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Sets the attempts per slot (at least 1; default [`DEFAULT_ATTEMPTS`]).
    pub fn set_attempts(&mut self, attempts: u32) {
        self.attempts = attempts.max(1);
    }

    /// Why writer `w` is broken, if it is (sticky until this reader re-attaches).
    pub fn broken(&self, w: usize) -> Option<Broken> {
        self.broken.get(w).copied().flatten()
    }

    /// The writers this reader found broken.
    pub fn broken_writers(&self) -> WriterSet {
        let mut s = 0;
        for (w, b) in self.broken.iter().enumerate() {
            if b.is_some() {
                s |= bit(w);
            }
        }
        WriterSet(s)
    }

    /// Writer `w`'s state and epoch, read now (`None` if there is no writer `w`). For
    /// reporting only: the values are not validated and reads do not depend on them.
    pub fn writer_status(&self, w: usize) -> Option<SideStatus> {
        (w < self.params.writers).then(|| status_at(&self.region, self.params.writer_slot(w)))
    }

    fn clear_wait(&mut self) {
        if self.waiting {
            self.waiting = false;
            let _ = self
                .region
                .store_le::<u32>(self.line + SIDE_FLAGS, 0, Ordering::SeqCst);
        }
    }

    /// Records a sequence value seen in writer `w`'s slot; `false` (and `w` marked broken)
    /// if it is below one seen before.
    fn observe(&mut self, w: usize, s: u64) -> bool {
        if s < self.max_seen[w] {
            if self.broken[w].is_none() {
                self.broken[w] = Some(Broken::SeqWentBack {
                    seen: self.max_seen[w],
                    found: s,
                });
            }
            return false;
        }
        self.max_seen[w] = s;
        true
    }

    fn copy_value(&self, slot: usize, buf: &mut [u8]) {
        let n = self.params.value_size;
        let mut i = 0;
        while i < n {
            let word = self
                .region
                .load_le::<u64>(slot + SLOT_VALUE + i, Ordering::Relaxed);
            let b = word.unwrap_or(0).to_le_bytes();
            let k = (n - i).min(8);
            buf[i..i + k].copy_from_slice(&b[..k]);
            i += 8;
        }
    }

    /// Takes a consistent snapshot of writer `w`'s slot (stamp, and the value into `buf`
    /// if given) in at most `attempts` attempts. `w` is a valid, unbroken writer and
    /// `buf` holds at least the value size.
    fn snapshot(&mut self, w: usize, mut buf: Option<&mut [u8]>) -> Slot {
        let slot = self.params.writer_slot(w);
        let mut last = 0;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                core::hint::spin_loop();
            }
            let s1 = self
                .region
                .load_le::<u64>(slot + SLOT_SEQ, Ordering::Acquire)
                .unwrap_or(0);
            if !self.observe(w, s1) {
                return Slot::Broken;
            }
            last = s1;
            if s1 <= 1 {
                return Slot::Empty(s1);
            }
            if s1 & 1 == 1 {
                if s1 == self.stuck[w] {
                    // Contended at this very value before: the writer has not moved.
                    return Slot::Contended(s1);
                }
                continue;
            }
            let stamp = self
                .region
                .load_le::<u64>(slot + SLOT_STAMP, Ordering::Relaxed)
                .unwrap_or(0);
            if let Some(b) = buf.as_deref_mut() {
                self.copy_value(slot, b);
            }
            fence(Ordering::Acquire);
            let s2 = self
                .region
                .load_le::<u64>(slot + SLOT_SEQ, Ordering::Relaxed)
                .unwrap_or(0);
            if !self.observe(w, s2) {
                return Slot::Broken;
            }
            if s2 == s1 {
                return Slot::Value { seq: s1, stamp };
            }
        }
        if last & 1 == 1 {
            self.stuck[w] = last;
        }
        Slot::Contended(last)
    }

    /// The newest complete value across all writers: highest stamp, ties to the lowest
    /// writer index, each writer's last complete publish. Copies it into
    /// `buf[..value_size]`.
    ///
    /// * `Ok(None)`: no writer has completed a publish yet.
    /// * Writers whose slot stays contended for [`Reader::attempts`] attempts are left
    ///   out and listed in [`Sample::contended`]; broken writers are left out (see
    ///   [`Reader::broken_writers`]).
    /// * `Err(Contended)`: no other writer has a value (or, pathologically, the newest
    ///   slot kept changing to a lower stamp for `attempts` rounds).
    ///
    /// Each slot is snapshotted once (stamp only), then the best one's value is copied;
    /// if that writer has published again meanwhile, the newer publish is used if it
    /// still ranks first, otherwise the next best is copied.
    pub fn read_latest(&mut self, buf: &mut [u8]) -> Result<Option<Sample>, Error> {
        self.clear_wait();
        let n = self.params.value_size;
        let Some(buf) = buf.get_mut(..n) else {
            return Err(Error::BufferTooSmall { len: n });
        };
        let mut have = 0u64;
        let mut contended = 0u64;
        for w in 0..self.params.writers {
            if self.broken[w].is_some() {
                continue;
            }
            match self.snapshot(w, None) {
                Slot::Empty(s) => self.view_seq[w] = s,
                Slot::Value { seq, stamp } => {
                    self.view_seq[w] = seq;
                    self.view_stamp[w] = stamp;
                    have |= bit(w);
                }
                Slot::Contended(s) => {
                    self.view_seq[w] = s;
                    contended |= bit(w);
                }
                Slot::Broken => {}
            }
        }
        let mut copied: Option<(usize, u64)> = None;
        let mut rounds = 0;
        loop {
            let mut best: Option<Last> = None;
            for w in WriterSet(have).iter() {
                let (seq, stamp) = (self.view_seq[w], self.view_stamp[w]);
                if best.is_none() || above(stamp, w, best) {
                    best = Some(Last {
                        writer: w,
                        seq,
                        stamp,
                    });
                }
            }
            let Some(b) = best else {
                self.last = None;
                self.last_contended = contended;
                return if contended == 0 {
                    Ok(None)
                } else {
                    Err(Error::Contended(WriterSet(contended)))
                };
            };
            if copied == Some((b.writer, b.seq)) {
                self.last = Some(b);
                self.last_contended = contended;
                return Ok(Some(Sample {
                    writer: b.writer,
                    stamp: b.stamp,
                    seq: b.seq,
                    contended: WriterSet(contended),
                }));
            }
            if rounds == self.attempts {
                // The best slot keeps changing and falling behind: give up on it.
                contended |= bit(b.writer);
                self.last = None;
                self.last_contended = contended;
                return Err(Error::Contended(WriterSet(contended)));
            }
            rounds += 1;
            // `buf` is overwritten now: it holds a value only if this snapshot succeeds.
            copied = None;
            match self.snapshot(b.writer, Some(buf)) {
                Slot::Value { seq, stamp } => {
                    self.view_seq[b.writer] = seq;
                    self.view_stamp[b.writer] = stamp;
                    copied = Some((b.writer, seq));
                }
                Slot::Contended(s) => {
                    self.view_seq[b.writer] = s;
                    have &= !bit(b.writer);
                    contended |= bit(b.writer);
                }
                // Empty after a value means the sequence went back: `Broken` already.
                Slot::Empty(_) | Slot::Broken => have &= !bit(b.writer),
            }
        }
    }

    /// Writer `w`'s last complete value, copied into `buf[..value_size]`. `Ok(None)`: it
    /// has not completed a publish yet. `Err(Contended)`: its slot did not hold still
    /// for [`Reader::attempts`] attempts. `Err(WriterBroken)`: it broke the protocol.
    /// Does not change what [`Reader::changed`] compares against.
    pub fn read_writer(&mut self, w: usize, buf: &mut [u8]) -> Result<Option<Sample>, Error> {
        self.clear_wait();
        check_index(w, self.params.writers)?;
        let n = self.params.value_size;
        let Some(buf) = buf.get_mut(..n) else {
            return Err(Error::BufferTooSmall { len: n });
        };
        if let Some(why) = self.broken[w] {
            return Err(Error::WriterBroken { writer: w, why });
        }
        match self.snapshot(w, Some(buf)) {
            Slot::Value { seq, stamp } => Ok(Some(Sample {
                writer: w,
                stamp,
                seq,
                contended: WriterSet(0),
            })),
            Slot::Empty(_) => Ok(None),
            Slot::Contended(_) => Err(Error::Contended(WriterSet::single(w))),
            Slot::Broken => Err(Error::WriterBroken {
                writer: w,
                why: self.broken[w].unwrap_or(Broken::SeqWentBack { seen: 0, found: 0 }),
            }),
        }
    }

    /// Whether [`Reader::read_latest`] would now return something other than it last
    /// did: the last sample's writer has published since, a writer's value now ranks
    /// above the last sample, or a writer joined or left the contended set (the result of
    /// the last `read_latest`, `Ok(None)` or `Err(Contended)`, counts as "no sample").
    /// Publishes that rank below the last sample do not count. Loads each slot's sequence
    /// word once; only slots that moved are snapshotted (stamp only, bounded).
    pub fn changed(&mut self) -> bool {
        for w in 0..self.params.writers {
            if self.broken[w].is_some() {
                continue;
            }
            let slot = self.params.writer_slot(w);
            let s = self
                .region
                .load_le::<u64>(slot + SLOT_SEQ, Ordering::Acquire)
                .unwrap_or(0);
            let was_contended = self.last_contended & bit(w) != 0;
            let was_last = self.last.is_some_and(|l| l.writer == w);
            if !self.observe(w, s) {
                if was_contended || was_last {
                    return true;
                }
                continue;
            }
            if s == self.view_seq[w] {
                continue;
            }
            if was_last {
                return true;
            }
            match self.snapshot(w, None) {
                Slot::Value { seq, stamp } => {
                    if was_contended || above(stamp, w, self.last) {
                        return true;
                    }
                    self.view_seq[w] = seq;
                    self.view_stamp[w] = stamp;
                }
                Slot::Contended(s) => {
                    if !was_contended {
                        return true;
                    }
                    self.view_seq[w] = s;
                }
                Slot::Empty(s) => {
                    if was_contended {
                        return true;
                    }
                    self.view_seq[w] = s;
                }
                Slot::Broken => {
                    if was_contended {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Call before blocking for a newer value: sets this reader's NEED_WAKEUP flag, issues
    /// a full fence and re-checks with [`Reader::changed`]. `true`: nothing new, block
    /// until notified (then read again); `false`: something changed (flag cleared).
    pub fn prepare_wait(&mut self) -> bool {
        let _ = self
            .region
            .store_le::<u32>(self.line + SIDE_FLAGS, NEED_WAKEUP, Ordering::SeqCst);
        self.waiting = true;
        fence(Ordering::SeqCst);
        if self.changed() {
            self.clear_wait();
            false
        } else {
            true
        }
    }

    /// Marks the reader detached (flags 0, state `Reset`).
    pub fn detach(mut self) {
        self.waiting = true;
        self.clear_wait();
        header::set_line_state(&self.region, self.line, State::Reset);
    }
}

#[cfg(test)]
mod tests;
