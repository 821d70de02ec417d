//! A versioned configuration blob: one writer, up to [`MAX_MEMBERS`] readers; a reader sees
//! the previous blob or the new one, never a mix (docs/protocols.md, section "blob").
//!
//! ```text
//! 0x00             common header (protocol id PROTO_BLOB, version VERSION)
//! 0x40             writer line: 0x40 u32 state  0x44 u32 flags (0)  0x48 u64 epoch
//!                               0x50 u64 current (version of the newest complete blob, 0 = none)
//! 0x80             side-1 line: unused (zero)
//! 0xc0             reader table: one 64-byte line per reader i at 0xc0 + 64·i:
//!                  +0x00 u32 state  +0x04 u32 flags (bit 0 NEED_WAKEUP)  +0x08 u64 epoch
//!                  +0x10 u64 last_read (informational)
//! D = 0xc0 + 64·n  data area: bank 0 at D, bank 1 at D + B, each B bytes:
//!                  +0x00 u64 stamp (version held, BUSY while being written, 0 = never written)
//!                  +0x08 u32 len  +0x0c u32 crc (CRC-32C of version ‖ len ‖ payload)
//!                  +0x40 payload: B − 64 bytes of capacity
//! ```
//!
//! `n` is the number of readers and `B` the bank size, both computed by every side from the
//! manifest (reader count) and its mapping length, and checked against the header's data
//! offset and size. Version `v` always lives in bank `v mod 2`.
//!
//! # Updates
//!
//! [`Writer::publish`] writes the bank that does not hold the current blob: it stores
//! `stamp = BUSY`, writes length, checksum and payload, stores `stamp = v`, and only then
//! `current = v` (release). A reader loads `current`, checks the bank's stamp, copies the
//! bank and re-checks the stamp after an acquire fence: if it changed, the writer reused the
//! bank during the copy and the reader retries (at most [`READ_TRIES`] attempts, then
//! [`Error::Contended`]). The writer never waits for readers.
//!
//! Header words and the payload are accessed as aligned atomics (the payload as relaxed
//! 8-byte words), so a copy that overlaps a rewrite is a detected retry, not a data race.
//!
//! # Restarts
//!
//! * The writer restarts with [`Writer::attach`]: it validates its own fields (the current
//!   blob's bank, length and checksum), keeps that blob visible, and continues with the
//!   next version. A writer that dies in the middle of a publish leaves `current` on the
//!   previous blob, which readers keep reading.
//! * Readers are stateless: [`Reader::attach`] again at any time.
//!
//! # Notifications
//!
//! A reader that wants to block until a newer blob exists calls [`Reader::prepare_wait`],
//! which sets NEED_WAKEUP in its own line, issues a full fence and re-checks `current`; it
//! may block only if that returns `true`. [`Writer::publish`] returns the readers whose flag
//! is set ([`Wakeups`]); notify exactly those. Wake-ups may be spurious or coalesced.
//!
//! # Hostile peers
//!
//! The writer reads nothing readers write except their NEED_WAKEUP bits, so a hostile
//! reader can only cause spurious notifications. A reader validates every writer-written
//! value after reading it once; a violation makes the handle [`Error::PeerBroken`] (sticky).

use crate::header::{
    self, Field, HeaderError, Layout, Side, SideStatus, State, Wakeups, LINE, MAX_MEMBERS,
    NEED_WAKEUP, PROTO_BLOB, SIDE_FLAGS,
};
use core::fmt;
use core::sync::atomic::{fence, Ordering};
use staticbus_guest::Region;

/// Layout version of the blob protocol.
pub const VERSION: u32 = 1;
/// The blob protocol's fields as byte ranges (smoltcp's `mod field`): the offsets the
/// code uses and the hashed [`FIELDS`] table are both built from these. Reader fields are
/// relative to a reader line, bank fields relative to a bank.
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
    /// Writer's u64 `current`.
    pub const CURRENT: Range<usize> = span(SIDE0 + 0x10, 8);
    /// The reader table (one line per reader: 0 in the table).
    pub const READERS: Range<usize> = span(DATA_MIN_OFFSET, 0);
    /// A reader's u32 state word, within its line.
    pub const READER_STATE: Range<usize> = SIDE_STATE;
    /// A reader's u32 flags word (NEED_WAKEUP), within its line.
    pub const READER_FLAGS: Range<usize> = SIDE_FLAGS;
    /// A reader's u64 epoch, within its line.
    pub const READER_EPOCH: Range<usize> = SIDE_EPOCH;
    /// A reader's u64 `last_read`, within its line.
    pub const READER_LAST_READ: Range<usize> = span(0x10, 8);
    /// A bank's u64 stamp.
    pub const BANK_STAMP: Range<usize> = span(0x00, 8);
    /// A bank's u32 payload length.
    pub const BANK_LEN: Range<usize> = span(0x08, 4);
    /// A bank's u32 CRC-32C.
    pub const BANK_CRC: Range<usize> = span(0x0c, 4);
    /// A bank's payload, after the bank's header line (0 in the table).
    pub const BANK_PAYLOAD: Range<usize> = span(LINE, 0);
}

/// Offset of the writer's u32 flags word (always 0: no flag is defined for the writer).
pub const OFF_WRITER_FLAGS: usize = field::WRITER_FLAGS.start;
/// Offset of the writer's u64 `current`: the version of the newest complete blob (0: none).
pub const OFF_CURRENT: usize = field::CURRENT.start;
/// Offset of the reader table: reader `i`'s line is at `READERS_OFFSET + 64 * i`.
pub const READERS_OFFSET: usize = field::READERS.start;
/// Offset of a reader's u64 `last_read` within its line (the version it last read;
/// informational, nobody relies on it).
pub const READER_LAST_READ: usize = field::READER_LAST_READ.start;
/// Offset of a bank's u64 stamp within the bank.
pub const BANK_STAMP: usize = field::BANK_STAMP.start;
/// Offset of a bank's u32 payload length within the bank.
pub const BANK_LEN: usize = field::BANK_LEN.start;
/// Offset of a bank's u32 CRC-32C within the bank.
pub const BANK_CRC: usize = field::BANK_CRC.start;
/// Offset of a bank's payload within the bank (the bank header is one line).
pub const BANK_PAYLOAD: usize = field::BANK_PAYLOAD.start;
/// Stamp value of a bank that is being written.
pub const BUSY: u64 = u64::MAX;
/// Smallest payload capacity.
pub const MIN_CAPACITY: usize = 64;
/// Largest bank (header line plus payload); a larger region leaves the rest unused.
pub const MAX_BANK: usize = 1 << 30;
/// How many times [`Reader::read`] tries before it returns [`Error::Contended`].
pub const READ_TRIES: u32 = 4;

/// The blob protocol's field table, input of the layout hash.
///
/// These follow [`header::COMMON_FIELDS`] in the hashed table.
pub const FIELDS: &[Field] = &[
    Field::new("writer.state", field::WRITER_STATE),
    Field::new("writer.flags", field::WRITER_FLAGS),
    Field::new("writer.epoch", field::WRITER_EPOCH),
    Field::new("writer.current", field::CURRENT),
    Field::new("readers", field::READERS),
    Field::new("reader.state", field::READER_STATE),
    Field::new("reader.flags", field::READER_FLAGS),
    Field::new("reader.epoch", field::READER_EPOCH),
    Field::new("reader.last_read", field::READER_LAST_READ),
    Field::new("bank.stamp", field::BANK_STAMP),
    Field::new("bank.len", field::BANK_LEN),
    Field::new("bank.crc", field::BANK_CRC),
    Field::new("bank.payload", field::BANK_PAYLOAD),
];

/// The blob protocol's layout hash.
pub const LAYOUT_HASH: u64 = header::protocol_layout_hash(FIELDS);

// ---- CRC-32C ----

/// CRC-32C (Castagnoli) polynomial, bit-reversed.
const CRC32C_POLY: u32 = 0x82f6_3b78;

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CRC32C_POLY
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// Feeds `bytes` into a running (pre-inverted) CRC-32C state.
fn crc_update(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// CRC-32C (Castagnoli; reflected, polynomial `0x1edc6f41`, initial value and final xor
/// `0xffff_ffff`) of `bytes`. `crc32c(b"123456789") == 0xe306_9283`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}

/// The running checksum state after the version and length, before the payload.
fn checksum_start(version: u64, len: u32) -> u32 {
    let c = crc_update(!0, &version.to_le_bytes());
    crc_update(c, &len.to_le_bytes())
}

/// The checksum a bank carries for blob `version` with `payload`: CRC-32C over the version
/// (u64 little-endian), the length (u32 little-endian) and the payload bytes. `None` if the
/// payload is longer than `u32::MAX`.
pub fn checksum(version: u64, payload: &[u8]) -> Option<u32> {
    let len = u32::try_from(payload.len()).ok()?;
    Some(!crc_update(checksum_start(version, len), payload))
}

// ---- geometry ----

/// Offset of the data area (bank 0) for `readers` readers: after the reader table.
pub fn data_offset(readers: usize) -> usize {
    READERS_OFFSET + readers * LINE
}

/// Offset of reader `index`'s line.
pub fn reader_line(index: usize) -> usize {
    READERS_OFFSET + index * LINE
}

/// The bank size `B` for a region of `len` bytes with `readers` readers: half the room
/// after the reader table, rounded down to 64, at most [`MAX_BANK`]; `None` if the payload
/// capacity `B − 64` would be below [`MIN_CAPACITY`] or `readers` is not in
/// `1..=MAX_MEMBERS`.
pub fn bank_size(len: usize, readers: usize) -> Option<usize> {
    if readers == 0 || readers > MAX_MEMBERS {
        return None;
    }
    let room = len.checked_sub(data_offset(readers))?;
    let bank = (room / 2 / LINE * LINE).min(MAX_BANK);
    (bank >= BANK_PAYLOAD + MIN_CAPACITY).then_some(bank)
}

/// The payload capacity (largest blob) for a region of `len` bytes with `readers`
/// readers: [`bank_size`] − 64.
pub fn capacity_for(len: usize, readers: usize) -> Option<usize> {
    Some(bank_size(len, readers)? - BANK_PAYLOAD)
}

/// The blob layout for a region of `len` bytes shared by one writer and `readers`
/// readers: data offset `0xc0 + 64·readers`, data size `2·B`.
pub fn layout(len: usize, readers: usize) -> Result<Layout, Error> {
    if readers == 0 || readers > MAX_MEMBERS {
        return Err(Error::ReaderCount(readers));
    }
    let bank = bank_size(len, readers).ok_or(Error::Header(HeaderError::BadRegion { len }))?;
    Ok(Layout {
        protocol: PROTO_BLOB,
        version: VERSION,
        data_offset: data_offset(readers),
        data_size: 2 * bank,
        hash: LAYOUT_HASH,
    })
}

/// Where things are, computed from the reader count and the mapping length.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    readers: usize,
    data: usize,
    bank: usize,
    cap: usize,
}

impl Geometry {
    fn new(region: &Region, readers: usize) -> Result<Geometry, Error> {
        let l = layout(region.len(), readers)?;
        Ok(Geometry {
            readers,
            data: l.data_offset,
            bank: l.data_size / 2,
            cap: l.data_size / 2 - BANK_PAYLOAD,
        })
    }

    fn layout(&self) -> Layout {
        Layout {
            protocol: PROTO_BLOB,
            version: VERSION,
            data_offset: self.data,
            data_size: 2 * self.bank,
            hash: LAYOUT_HASH,
        }
    }

    /// Offset of the bank holding `version` (bank `version mod 2`).
    fn bank_of(&self, version: u64) -> usize {
        self.data + (version & 1) as usize * self.bank
    }
}

// ---- errors ----

/// How the writer broke the protocol (seen by a reader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// `current` holds [`BUSY`], which is never a version.
    BadCurrent(u64),
    /// `current` is lower than a version this reader already saw.
    VersionWentBack(u64),
    /// The stamp of `current`'s bank is not `current`, while `current` did not change.
    BankStamp(u64),
    /// A complete bank's length exceeds the capacity.
    BadLength(u32),
    /// A complete bank's checksum does not match its contents (its stamp stayed stable
    /// during the copy, so this is not a concurrent update).
    Checksum {
        /// The checksum in the bank header.
        stored: u32,
        /// The checksum of what the reader copied.
        computed: u32,
    },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::BadCurrent(v) => write!(f, "current {v:#x} is not a version"),
            Broken::VersionWentBack(v) => write!(f, "current version {v} went backwards"),
            Broken::BankStamp(s) => write!(f, "bank stamp {s:#x} does not match current"),
            Broken::BadLength(l) => write!(f, "blob length {l:#x} exceeds the capacity"),
            Broken::Checksum { stored, computed } => {
                write!(f, "checksum {stored:#010x}, contents give {computed:#010x}")
            }
        }
    }
}

/// A blob error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The header is missing or does not match this side's layout (attach only). A reader
    /// count that differs from the writer's shows up as
    /// [`HeaderError::WrongDataArea`].
    Header(HeaderError),
    /// The reader count is not in `1..=MAX_MEMBERS`.
    ReaderCount(usize),
    /// The reader index is not below the reader count.
    ReaderIndex {
        /// The index given.
        index: usize,
        /// The reader count.
        readers: usize,
    },
    /// The writer broke the protocol; the reader handle is unusable from now on (sticky).
    PeerBroken(Broken),
    /// The writer replaced the blob during each of [`READ_TRIES`] attempts; retry.
    Contended,
    /// The blob can never fit: `len` exceeds the capacity `max`.
    TooLarge {
        /// Requested length.
        len: usize,
        /// The payload capacity.
        max: usize,
    },
    /// The buffer given to [`Reader::read`] is smaller than the blob (`len` bytes).
    BufferTooSmall {
        /// The blob's length.
        len: usize,
    },
    /// The writer has used every version up to `u64::MAX − 1`.
    VersionsExhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Header(e) => write!(f, "blob header: {e}"),
            Error::ReaderCount(n) => write!(f, "reader count {n} not in 1..={MAX_MEMBERS}"),
            Error::ReaderIndex { index, readers } => {
                write!(f, "reader index {index} not below reader count {readers}")
            }
            Error::PeerBroken(b) => write!(f, "peer broken: {b}"),
            Error::Contended => write!(f, "blob replaced during every read attempt"),
            Error::TooLarge { len, max } => write!(f, "blob of {len} bytes > capacity {max}"),
            Error::BufferTooSmall { len } => write!(f, "buffer too small for {len} bytes"),
            Error::VersionsExhausted => write!(f, "blob versions exhausted"),
        }
    }
}

impl core::error::Error for Error {}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Error {
        Error::Header(e)
    }
}

/// Walks the payload of the bank at `bank` as relaxed 8-byte atomic loads, feeding the
/// first `len` bytes into the checksum state `c` and, if given, copying them into `out`.
/// Returns the final (inverted) checksum. The caller has checked `len <= capacity` (and
/// `len <= out.len()`).
fn scan_payload(
    region: &Region,
    bank: usize,
    len: usize,
    mut c: u32,
    out: Option<&mut [u8]>,
) -> u32 {
    let mut out = out;
    let mut done = 0;
    while done < len {
        let word = region
            .atomic::<u64>(bank + BANK_PAYLOAD + done)
            .map_or(0, |a| a.load(Ordering::Relaxed));
        let bytes = word.to_ne_bytes();
        let n = (len - done).min(8);
        c = crc_update(c, &bytes[..n]);
        if let Some(dst) = out.as_deref_mut().and_then(|o| o.get_mut(done..done + n)) {
            dst.copy_from_slice(&bytes[..n]);
        }
        done += n;
    }
    !c
}

// ---- writer ----

/// The writer (and initialiser) of a blob region.
pub struct Writer {
    region: Region,
    geo: Geometry,
    version: u64,
    epoch: u64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("version", &self.version)
            .field("capacity", &self.geo.cap)
            .field("readers", &self.geo.readers)
            .finish()
    }
}

/// A reader's line as the writer sees it (informational: the writer never acts on it
/// except for the NEED_WAKEUP bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderStatus {
    /// State word and epoch.
    pub status: SideStatus,
    /// The flags word (bit 0: NEED_WAKEUP).
    pub flags: u32,
    /// The version the reader says it last read.
    pub last_read: u64,
}

impl Writer {
    /// Attaches as the writer, for `readers` readers. The writer is the region's designated
    /// initialiser: if the magic is zero it zeroes the reader table and both bank headers
    /// and initialises the header (no blob yet, version 0). Otherwise it validates the
    /// header and its own fields (`current` and that blob's bank: stamp, length, checksum;
    /// else `Header(BadOwnField)`), keeps the current blob visible and continues with the
    /// next version (writer restart).
    pub fn attach(region: Region, readers: usize) -> Result<Writer, Error> {
        let geo = Geometry::new(&region, readers)?;
        let layout = geo.layout();
        match header::validate(&region, &layout) {
            Err(HeaderError::NotInitialized) => {
                // No reader can be attached: they all wait for the magic.
                let zero = [0u8; LINE];
                let bad = Error::Header(HeaderError::BadRegion { len: region.len() });
                for i in 0..readers {
                    region.write_bytes(reader_line(i), &zero).map_err(|_| bad)?;
                }
                for b in 0..2 {
                    region
                        .write_bytes(geo.data + b * geo.bank, &zero)
                        .map_err(|_| bad)?;
                }
                header::init(&region, &layout)?;
            }
            r => r?,
        }
        let version = Self::check_own(&region, &geo).ok_or(HeaderError::BadOwnField)?;
        region.store_le::<u32>(OFF_WRITER_FLAGS, 0, Ordering::Relaxed);
        let epoch = header::announce(&region, Side::Writer)?;
        Ok(Writer {
            region,
            geo,
            version,
            epoch,
        })
    }

    /// Validates `current` and its bank; returns `current`.
    fn check_own(region: &Region, geo: &Geometry) -> Option<u64> {
        let cur = region.load_le::<u64>(OFF_CURRENT, Ordering::Acquire)?;
        if cur == 0 {
            return Some(0);
        }
        if cur == BUSY {
            return None;
        }
        let bank = geo.bank_of(cur);
        let stamp = region.load_le::<u64>(bank + BANK_STAMP, Ordering::Acquire)?;
        let len = region.load_le::<u32>(bank + BANK_LEN, Ordering::Relaxed)?;
        let crc = region.load_le::<u32>(bank + BANK_CRC, Ordering::Relaxed)?;
        if stamp != cur || len as usize > geo.cap {
            return None;
        }
        let c = scan_payload(region, bank, len as usize, checksum_start(cur, len), None);
        (c == crc).then_some(cur)
    }

    /// Payload capacity: the largest blob in bytes.
    pub fn capacity(&self) -> usize {
        self.geo.cap
    }

    /// Number of readers.
    pub fn readers(&self) -> usize {
        self.geo.readers
    }

    /// The version of the current blob (0: nothing published yet).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// This side's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Reader `index`'s line, read now (`None` if `index` is out of range). Unvalidated:
    /// it never affects the protocol.
    pub fn reader_status(&self, index: usize) -> Option<ReaderStatus> {
        if index >= self.geo.readers {
            return None;
        }
        let line = reader_line(index);
        Some(ReaderStatus {
            status: header::line_status(&self.region, line)?,
            flags: self
                .region
                .load_le::<u32>(line + SIDE_FLAGS, Ordering::Relaxed)?,
            last_read: self
                .region
                .load_le::<u64>(line + READER_LAST_READ, Ordering::Relaxed)?,
        })
    }

    /// Publishes `blob` as the next version: writes it into the bank that does not hold
    /// the current blob (stamp `BUSY` first, the new stamp last), then makes it current
    /// (release). Never waits for readers. Returns the new version and the readers to
    /// notify (those that set NEED_WAKEUP).
    pub fn publish(&mut self, blob: &[u8]) -> Result<(u64, Wakeups), Error> {
        let len = blob.len();
        if len > self.geo.cap {
            return Err(Error::TooLarge {
                len,
                max: self.geo.cap,
            });
        }
        let v = match self.version.checked_add(1) {
            Some(v) if v != BUSY => v,
            _ => return Err(Error::VersionsExhausted),
        };
        let crc = checksum(v, blob).ok_or(Error::TooLarge {
            len,
            max: self.geo.cap,
        })?;
        let r = &self.region;
        let bank = self.geo.bank_of(v);
        // Release: a reader that sees BUSY here also sees the `current` that moved off
        // this bank (docs: BankStamp); the fence orders the stores below after BUSY.
        r.store_le::<u64>(bank + BANK_STAMP, BUSY, Ordering::Release);
        fence(Ordering::Release);
        r.store_le::<u32>(bank + BANK_LEN, len as u32, Ordering::Relaxed);
        r.store_le::<u32>(bank + BANK_CRC, crc, Ordering::Relaxed);
        for (i, chunk) in blob.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            if let Some(a) = r.atomic::<u64>(bank + BANK_PAYLOAD + 8 * i) {
                a.store(u64::from_ne_bytes(word), Ordering::Relaxed);
            }
        }
        r.store_le::<u64>(bank + BANK_STAMP, v, Ordering::Release);
        r.store_le::<u64>(OFF_CURRENT, v, Ordering::Release);
        self.version = v;
        let wake = header::collect_wakeups(r, READERS_OFFSET, self.geo.readers);
        Ok((v, wake))
    }

    /// Marks the writer detached (state `Reset`). The current blob stays readable.
    pub fn detach(self) {
        header::set_state(&self.region, Side::Writer, State::Reset);
    }
}

// ---- reader ----

/// What a successful [`Reader::read`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The blob's version.
    pub version: u64,
    /// Its length: the first `len` bytes of the buffer hold it.
    pub len: usize,
}

/// A reader of a blob region.
pub struct Reader {
    region: Region,
    geo: Geometry,
    index: usize,
    epoch: u64,
    /// Highest `current` this handle has seen (never goes back).
    seen: u64,
    /// Version of the last blob [`Reader::read`] returned.
    last: u64,
    broken: Option<Broken>,
    waiting: bool,
    retries: u64,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("index", &self.index)
            .field("last_read", &self.last)
            .field("broken", &self.broken)
            .finish()
    }
}

/// One attempt of a read: done, or retry because the writer moved on.
enum Attempt {
    Done(Option<Blob>),
    Retry,
}

impl Reader {
    /// Attaches as reader `index` of `readers` (both from the manifest): validates the
    /// header (`Error::Header(NotInitialized)` until the writer has initialised the region:
    /// retry later; `WrongDataArea` if the writer was configured with another reader
    /// count), clears its own line's flags and `last_read`, and announces itself. Readers
    /// keep no state across restarts.
    pub fn attach(region: Region, readers: usize, index: usize) -> Result<Reader, Error> {
        let geo = Geometry::new(&region, readers)?;
        if index >= readers {
            return Err(Error::ReaderIndex { index, readers });
        }
        header::validate(&region, &geo.layout())?;
        let line = reader_line(index);
        region.store_le::<u32>(line + SIDE_FLAGS, 0, Ordering::SeqCst);
        region.store_le::<u64>(line + READER_LAST_READ, 0, Ordering::Relaxed);
        let epoch = header::announce_line(&region, line)?;
        Ok(Reader {
            region,
            geo,
            index,
            epoch,
            seen: 0,
            last: 0,
            broken: None,
            waiting: false,
            retries: 0,
        })
    }

    /// Payload capacity: the largest blob in bytes (a buffer this large always suffices).
    pub fn capacity(&self) -> usize {
        self.geo.cap
    }

    /// This reader's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This reader's epoch (incremented at every attach).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The version of the last blob [`Reader::read`] returned (0: none yet).
    pub fn last_read(&self) -> u64 {
        self.last
    }

    /// Why the handle is broken, if it is.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// How many read attempts this handle abandoned because the writer replaced the blob
    /// meanwhile (a contention statistic).
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// The writer's state and epoch, read now (informational).
    pub fn writer_status(&self) -> SideStatus {
        header::side_status(&self.region, Side::Writer).unwrap_or(SideStatus {
            state: None,
            raw_state: 0,
            epoch: 0,
        })
    }

    fn line(&self) -> usize {
        reader_line(self.index)
    }

    fn check(&self) -> Result<(), Error> {
        match self.broken {
            Some(b) => Err(Error::PeerBroken(b)),
            None => Ok(()),
        }
    }

    /// Marks the handle broken (sticky), says so in its line and stops asking for
    /// notifications.
    fn fail<T>(&mut self, b: Broken) -> Result<T, Error> {
        if self.broken.is_none() {
            self.broken = Some(b);
            self.clear_wait();
            header::set_line_state(&self.region, self.line(), State::Broken);
        }
        Err(Error::PeerBroken(b))
    }

    fn clear_wait(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.region
                .store_le::<u32>(self.line() + SIDE_FLAGS, 0, Ordering::SeqCst);
        }
    }

    /// Loads `current` once (acquire) and validates it: not [`BUSY`], not below what this
    /// handle saw before.
    fn current(&mut self) -> Result<u64, Error> {
        let cur = self
            .region
            .load_le::<u64>(OFF_CURRENT, Ordering::Acquire)
            .unwrap_or(BUSY);
        if cur == BUSY {
            return self.fail(Broken::BadCurrent(cur));
        }
        if cur < self.seen {
            return self.fail(Broken::VersionWentBack(cur));
        }
        self.seen = cur;
        Ok(cur)
    }

    /// The bank's stamp, loaded after an acquire fence: the end of a seqlock read.
    fn stamp_after(&self, bank: usize) -> u64 {
        fence(Ordering::Acquire);
        self.region
            .load_le::<u64>(bank + BANK_STAMP, Ordering::Relaxed)
            .unwrap_or(BUSY)
    }

    fn attempt(&mut self, buf: &mut [u8]) -> Result<Attempt, Error> {
        let cur = self.current()?;
        if cur == 0 {
            return Ok(Attempt::Done(None));
        }
        let r = self.region;
        let bank = self.geo.bank_of(cur);
        let stamp = r
            .load_le::<u64>(bank + BANK_STAMP, Ordering::Acquire)
            .unwrap_or(BUSY);
        if stamp != cur {
            // Legitimately only if the writer has moved `current` on since (it reuses a
            // bank only after making the other one current).
            return if self.current()? == cur {
                self.fail(Broken::BankStamp(stamp))
            } else {
                Ok(Attempt::Retry)
            };
        }
        let len = r
            .load_le::<u32>(bank + BANK_LEN, Ordering::Relaxed)
            .unwrap_or(u32::MAX);
        let crc = r
            .load_le::<u32>(bank + BANK_CRC, Ordering::Relaxed)
            .unwrap_or(0);
        let n = len as usize;
        if n > self.geo.cap || n > buf.len() {
            if self.stamp_after(bank) != cur {
                return Ok(Attempt::Retry);
            }
            if n > self.geo.cap {
                return self.fail(Broken::BadLength(len));
            }
            return Err(Error::BufferTooSmall { len: n });
        }
        let computed = scan_payload(&r, bank, n, checksum_start(cur, len), Some(buf));
        if self.stamp_after(bank) != cur {
            return Ok(Attempt::Retry);
        }
        if computed != crc {
            return self.fail(Broken::Checksum {
                stored: crc,
                computed,
            });
        }
        self.last = cur;
        r.store_le::<u64>(self.line() + READER_LAST_READ, cur, Ordering::Relaxed);
        Ok(Attempt::Done(Some(Blob {
            version: cur,
            len: n,
        })))
    }

    /// Copies the current blob into `buf`. `Ok(None)`: nothing has been published yet.
    /// `Ok(Some(b))`: `buf[..b.len]` holds exactly the blob of version `b.version`, which
    /// is never lower than a version this handle returned or saw before. On an error the
    /// contents of `buf` are unspecified. Retries at most [`READ_TRIES`] times while the
    /// writer keeps replacing the blob, then returns [`Error::Contended`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<Blob>, Error> {
        self.check()?;
        self.clear_wait();
        for _ in 0..READ_TRIES {
            match self.attempt(buf)? {
                Attempt::Done(b) => return Ok(b),
                Attempt::Retry => self.retries += 1,
            }
        }
        Err(Error::Contended)
    }

    /// The version of the newest complete blob (0: none yet), from one load of `current`
    /// without copying anything.
    pub fn version(&mut self) -> Result<u64, Error> {
        self.check()?;
        self.clear_wait();
        self.current()
    }

    /// Whether a blob newer than version `v` exists.
    pub fn changed_since(&mut self, v: u64) -> Result<bool, Error> {
        Ok(self.version()? > v)
    }

    /// Call before blocking until a blob newer than [`Reader::last_read`] exists: sets this
    /// reader's NEED_WAKEUP flag, issues a full fence and re-checks `current`. `Ok(true)`:
    /// nothing newer, block until notified (then read again); `Ok(false)`: a newer blob
    /// exists now (flag cleared). The flag stays set until the next `read`, `version` or
    /// `changed_since`: every publish meanwhile asks for a notification (coalesce them).
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.check()?;
        self.region
            .store_le::<u32>(self.line() + SIDE_FLAGS, NEED_WAKEUP, Ordering::SeqCst);
        self.waiting = true;
        fence(Ordering::SeqCst);
        if self.current()? > self.last {
            self.clear_wait();
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// Marks this reader detached (state `Reset`, flags cleared).
    pub fn detach(self) {
        self.region
            .store_le::<u32>(self.line() + SIDE_FLAGS, 0, Ordering::SeqCst);
        header::set_line_state(&self.region, self.line(), State::Reset);
    }
}

#[cfg(test)]
mod tests;
