//! The region header every protocol starts with (docs/protocols.md §2).
//!
//! ```text
//! 0x00  common line, written once by the initialiser, read-only afterwards
//!       0x00 u64 magic            MAGIC ("SBUSPRT1" as little-endian bytes)
//!       0x08 u32 protocol id      e.g. PROTO_QUEUE
//!       0x0c u32 layout version
//!       0x10 u64 region size      bytes, must equal both sides' mapping
//!       0x18 u64 data offset      64-aligned, >= DATA_MIN_OFFSET
//!       0x20 u64 data size
//!       0x28 u64 layout hash      FNV-1a 64 over the protocol's field table
//!       0x30 16 bytes reserved (zero)
//! 0x40  side 0 line (writer / producer), written only by side 0
//!       0x40 u32 state   0x44 u32 flags   0x48 u64 epoch   0x50.. protocol fields
//! 0x80  side 1 line (reader / consumer), written only by side 1
//!       0x80 u32 state   0x84 u32 flags   0x88 u64 epoch   0x90.. protocol fields
//! 0xc0  data area (at `data offset`)
//! ```
//!
//! All fields are little-endian. Words are accessed as aligned atomics; the common
//! line is copied once with [`Region::read_bytes`] and validated as a whole.

use core::fmt;
use core::sync::atomic::Ordering;
use staticbus_guest::Region;
use staticbus_manifest::Protocol;

/// The magic number at offset 0: the bytes `"SBUSPRT1"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SBUSPRT1");
/// Cache-line size the layout is built around (bytes).
pub const LINE: usize = 64;
/// Offset of the common line.
pub const COMMON_OFFSET: usize = 0;
/// Offsets of the two side lines, indexed by [`Side`] (`SIDE_OFFSET[side as usize]`).
pub const SIDE_OFFSET: [usize; 2] = [field::SIDE0, field::SIDE1];
/// Smallest data offset: right after the two side lines.
pub const DATA_MIN_OFFSET: usize = 0xc0;

/// Every field of the region header as a byte range (smoltcp's `mod field`): the code
/// reads and writes through these (or the `OFF_*` offsets derived from them), and
/// [`COMMON_FIELDS`] and the protocols' field tables are built from them, so moving a
/// field moves its entry in the layout hash.
pub mod field {
    use core::ops::Range;

    /// u64 magic ([`MAGIC`](super::MAGIC), 0 until initialised).
    pub const MAGIC: Range<usize> = 0x00..0x08;
    /// u32 protocol id.
    pub const PROTOCOL: Range<usize> = 0x08..0x0c;
    /// u32 layout version.
    pub const VERSION: Range<usize> = 0x0c..0x10;
    /// u64 region size.
    pub const REGION_SIZE: Range<usize> = 0x10..0x18;
    /// u64 data offset.
    pub const DATA_OFFSET: Range<usize> = 0x18..0x20;
    /// u64 data size.
    pub const DATA_SIZE: Range<usize> = 0x20..0x28;
    /// u64 layout hash.
    pub const LAYOUT_HASH: Range<usize> = 0x28..0x30;
    /// Reserved bytes of the common line (zero). Not in the hashed table (it never was:
    /// adding it would change every protocol's hash).
    pub const RESERVED: Range<usize> = 0x30..0x40;

    /// A side's (or member's) u32 state word, within its line.
    pub const SIDE_STATE: Range<usize> = 0x00..0x04;
    /// A side's u32 flags word, within its line.
    pub const SIDE_FLAGS: Range<usize> = 0x04..0x08;
    /// A side's u64 epoch, within its line.
    pub const SIDE_EPOCH: Range<usize> = 0x08..0x10;
    /// The protocol-defined rest of a side line.
    pub const SIDE_PROTO: Range<usize> = 0x10..0x40;

    /// Side 0's line (writer / producer).
    pub const SIDE0: usize = 0x40;
    /// Side 1's line (reader / consumer).
    pub const SIDE1: usize = 0x80;

    /// `range` moved by `base` (a field of a side line, a member line, a slot or a record
    /// placed at `base`).
    pub const fn at(base: usize, range: Range<usize>) -> Range<usize> {
        base + range.start..base + range.end
    }

    /// `len` bytes at `offset`.
    pub const fn span(offset: usize, len: usize) -> Range<usize> {
        offset..offset + len
    }
}

/// Offset of the u64 magic within the common line.
pub const OFF_MAGIC: usize = field::MAGIC.start;
/// Offset of the u32 protocol id.
pub const OFF_PROTOCOL: usize = field::PROTOCOL.start;
/// Offset of the u32 layout version.
pub const OFF_VERSION: usize = field::VERSION.start;
/// Offset of the u64 region size.
pub const OFF_REGION_SIZE: usize = field::REGION_SIZE.start;
/// Offset of the u64 data offset.
pub const OFF_DATA_OFFSET: usize = field::DATA_OFFSET.start;
/// Offset of the u64 data size.
pub const OFF_DATA_SIZE: usize = field::DATA_SIZE.start;
/// Offset of the u64 layout hash.
pub const OFF_LAYOUT_HASH: usize = field::LAYOUT_HASH.start;

/// Offset of a side's u32 state word within its side line.
pub const SIDE_STATE: usize = field::SIDE_STATE.start;
/// Offset of a side's u32 flags word within its side line (protocol-defined).
pub const SIDE_FLAGS: usize = field::SIDE_FLAGS.start;
/// Offset of a side's u64 epoch within its side line.
pub const SIDE_EPOCH: usize = field::SIDE_EPOCH.start;
/// Offset of the first protocol-defined field within a side line.
pub const SIDE_PROTO: usize = field::SIDE_PROTO.start;

// The protocol ids come from one place, `staticbus_manifest::Protocol::id`, which the C
// manifests' `SB_PROTOCOL_*` values are generated from too.

/// Protocol id of [`crate::queue`] ([`Protocol::Queue`]`.id()`, 1).
pub const PROTO_QUEUE: u32 = Protocol::Queue.id();
/// Protocol id of [`crate::log`] ([`Protocol::Log`]`.id()`, 2).
pub const PROTO_LOG: u32 = Protocol::Log.id();
/// Protocol id of [`crate::latest`] ([`Protocol::Latest`]`.id()`, 3).
pub const PROTO_LATEST: u32 = Protocol::Latest.id();
/// Protocol id of [`crate::blob`] ([`Protocol::Blob`]`.id()`, 4).
pub const PROTO_BLOB: u32 = Protocol::Blob.id();

/// One of the two sides of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Side 0: the writer / producer (and, by default, the initialiser).
    Writer = 0,
    /// Side 1: the reader / consumer.
    Reader = 1,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Writer => Side::Reader,
            Side::Reader => Side::Writer,
        }
    }

    /// Offset of this side's line in the region.
    pub fn offset(self) -> usize {
        SIDE_OFFSET[self as usize]
    }
}

/// A side's lifecycle state (the u32 state word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// 0: never attached, or detached cleanly.
    Reset = 0,
    /// 1: attaching (fields being set up).
    Init = 1,
    /// 2: attached and running.
    Ready = 2,
    /// 3: this side found its peer broken and stopped using the region.
    Broken = 3,
}

impl State {
    /// The state for a raw state word, `None` if the value is undefined.
    pub fn from_raw(raw: u32) -> Option<State> {
        Some(match raw {
            0 => State::Reset,
            1 => State::Init,
            2 => State::Ready,
            3 => State::Broken,
            _ => return None,
        })
    }
}

/// One entry of a protocol's field table: the input of the layout hash.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Field name (ASCII).
    pub name: &'static str,
    /// Byte offset (from the region start for header fields, from the record start for
    /// record fields).
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// FNV-1a 64 offset basis.
const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

impl Field {
    /// The table entry for the field `name` occupying `range` (from one of the `field`
    /// modules: the same constant the code uses).
    pub const fn new(name: &'static str, range: core::ops::Range<usize>) -> Field {
        assert!(range.start <= range.end && range.end <= u32::MAX as usize);
        Field {
            name,
            offset: range.start as u32,
            size: (range.end - range.start) as u32,
        }
    }
}

/// The common line's fields: the first entries of every protocol's field table.
pub const COMMON_FIELDS: &[Field] = &[
    Field::new("magic", field::MAGIC),
    Field::new("protocol", field::PROTOCOL),
    Field::new("version", field::VERSION),
    Field::new("region_size", field::REGION_SIZE),
    Field::new("data_offset", field::DATA_OFFSET),
    Field::new("data_size", field::DATA_SIZE),
    Field::new("layout_hash", field::LAYOUT_HASH),
];

const fn hash_fields(mut h: u64, fields: &[Field]) -> u64 {
    let mut i = 0;
    while i < fields.len() {
        let f = &fields[i];
        h = fnv_bytes(h, f.name.as_bytes());
        h = fnv_bytes(h, &[0]);
        h = fnv_bytes(h, &f.offset.to_le_bytes());
        h = fnv_bytes(h, &f.size.to_le_bytes());
        i += 1;
    }
    h
}

/// The layout hash of a field table: FNV-1a 64 over, for each field in order, the name
/// bytes, one zero byte, the offset as u32 little-endian and the size as u32
/// little-endian.
pub const fn layout_hash(fields: &[Field]) -> u64 {
    hash_fields(FNV_BASIS, fields)
}

/// A protocol's layout hash: [`layout_hash`] of [`COMMON_FIELDS`] followed by the
/// protocol's own `fields` (the full table docs/protocols.md lists).
pub const fn protocol_layout_hash(fields: &[Field]) -> u64 {
    hash_fields(hash_fields(FNV_BASIS, COMMON_FIELDS), fields)
}

/// What a protocol expects of the common line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Protocol id (e.g. [`PROTO_QUEUE`]).
    pub protocol: u32,
    /// Layout version.
    pub version: u32,
    /// Data area offset (64-aligned, at least [`DATA_MIN_OFFSET`]).
    pub data_offset: usize,
    /// Data area size.
    pub data_size: usize,
    /// Layout hash ([`layout_hash`] of the protocol's field table).
    pub hash: u64,
}

/// Why a region header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The region is not 8-aligned or too small for the header and the data area.
    BadRegion {
        /// The region's length.
        len: usize,
    },
    /// The magic is zero: no one has initialised the region yet (retry later).
    NotInitialized,
    /// The magic is neither zero nor [`MAGIC`].
    BadMagic(u64),
    /// Another protocol's region.
    WrongProtocol {
        /// Found in the header.
        found: u32,
        /// Expected by this side.
        expected: u32,
    },
    /// Another layout version.
    WrongVersion {
        /// Found in the header.
        found: u32,
        /// Expected by this side.
        expected: u32,
    },
    /// The header's region size is not this side's mapping size.
    WrongRegionSize {
        /// Found in the header.
        found: u64,
        /// This side's region length.
        expected: u64,
    },
    /// The data offset or size differ from what this side computes.
    WrongDataArea {
        /// Data offset found in the header.
        offset: u64,
        /// Data size found in the header.
        size: u64,
    },
    /// The layout hash differs: the two builds disagree on the layout.
    LayoutHash {
        /// Found in the header.
        found: u64,
        /// Expected by this side.
        expected: u64,
    },
    /// Reserved bytes of the common line are not zero.
    Reserved,
    /// A side field this side owns holds a value it could never have written.
    BadOwnField,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadRegion { len } => {
                write!(f, "region of {len:#x} bytes is misaligned or too small")
            }
            HeaderError::NotInitialized => write!(f, "region not initialised yet"),
            HeaderError::BadMagic(m) => write!(f, "bad magic {m:#018x}"),
            HeaderError::WrongProtocol { found, expected } => {
                write!(f, "protocol id {found}, expected {expected}")
            }
            HeaderError::WrongVersion { found, expected } => {
                write!(f, "layout version {found}, expected {expected}")
            }
            HeaderError::WrongRegionSize { found, expected } => {
                write!(f, "region size {found:#x} in header, mapped {expected:#x}")
            }
            HeaderError::WrongDataArea { offset, size } => {
                write!(f, "unexpected data area {size:#x} bytes at {offset:#x}")
            }
            HeaderError::LayoutHash { found, expected } => {
                write!(f, "layout hash {found:#018x}, expected {expected:#018x}")
            }
            HeaderError::Reserved => write!(f, "reserved header bytes are not zero"),
            HeaderError::BadOwnField => write!(f, "this side's own field is corrupt"),
        }
    }
}

impl core::error::Error for HeaderError {}

/// Checks that the region can hold the header and `layout`'s data area, and that its
/// header words are reachable as atomics (8-aligned base).
fn check_region(region: &Region, layout: &Layout) -> Result<(), HeaderError> {
    let bad = HeaderError::BadRegion { len: region.len() };
    let end = layout
        .data_offset
        .checked_add(layout.data_size)
        .ok_or(bad)?;
    if layout.data_offset < DATA_MIN_OFFSET || layout.data_offset % LINE != 0 || end > region.len()
    {
        return Err(bad);
    }
    if region.atomic::<u64>(0).is_none() {
        return Err(bad);
    }
    Ok(())
}

/// Initialises the header for `layout`: zeroes both side lines and the common line,
/// writes the common fields, then publishes the magic last (release), so a peer that
/// sees the magic sees the whole header. The data area is not touched.
///
/// Only the side the manifest designates as initialiser may call this, and only when no
/// peer is attached (it resets the peer's state and the protocol's indices).
pub fn init(region: &Region, layout: &Layout) -> Result<(), HeaderError> {
    check_region(region, layout)?;
    let bad = HeaderError::BadRegion { len: region.len() };
    region
        .store_le::<u64>(OFF_MAGIC, 0, Ordering::SeqCst)
        .ok_or(bad)?;
    region
        .write_bytes(field::MAGIC.end, &[0u8; DATA_MIN_OFFSET - field::MAGIC.end])
        .map_err(|_| bad)?;
    let mut common = [0u8; LINE];
    common[field::PROTOCOL].copy_from_slice(&layout.protocol.to_le_bytes());
    common[field::VERSION].copy_from_slice(&layout.version.to_le_bytes());
    common[field::REGION_SIZE].copy_from_slice(&(region.len() as u64).to_le_bytes());
    common[field::DATA_OFFSET].copy_from_slice(&(layout.data_offset as u64).to_le_bytes());
    common[field::DATA_SIZE].copy_from_slice(&(layout.data_size as u64).to_le_bytes());
    common[field::LAYOUT_HASH].copy_from_slice(&layout.hash.to_le_bytes());
    region
        .write_bytes(field::MAGIC.end, &common[field::MAGIC.end..])
        .map_err(|_| bad)?;
    region
        .store_le::<u64>(OFF_MAGIC, MAGIC, Ordering::Release)
        .ok_or(bad)?;
    Ok(())
}

/// Validates the header against `layout`: copies the common line once, then checks
/// magic, protocol, version, region size, data area, layout hash and reserved bytes.
pub fn validate(region: &Region, layout: &Layout) -> Result<(), HeaderError> {
    check_region(region, layout)?;
    let bad = HeaderError::BadRegion { len: region.len() };
    // The magic first, with acquire: pairs with `init`'s release store.
    let magic = region
        .load_le::<u64>(OFF_MAGIC, Ordering::Acquire)
        .ok_or(bad)?;
    if magic == 0 {
        return Err(HeaderError::NotInitialized);
    }
    if magic != MAGIC {
        return Err(HeaderError::BadMagic(magic));
    }
    let mut c = [0u8; LINE];
    region.read_bytes(COMMON_OFFSET, &mut c).map_err(|_| bad)?;
    let u32_at = |o: usize| u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&c[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let protocol = u32_at(OFF_PROTOCOL);
    if protocol != layout.protocol {
        return Err(HeaderError::WrongProtocol {
            found: protocol,
            expected: layout.protocol,
        });
    }
    let version = u32_at(OFF_VERSION);
    if version != layout.version {
        return Err(HeaderError::WrongVersion {
            found: version,
            expected: layout.version,
        });
    }
    let size = u64_at(OFF_REGION_SIZE);
    if size != region.len() as u64 {
        return Err(HeaderError::WrongRegionSize {
            found: size,
            expected: region.len() as u64,
        });
    }
    let (offset, dsize) = (u64_at(OFF_DATA_OFFSET), u64_at(OFF_DATA_SIZE));
    if offset != layout.data_offset as u64 || dsize != layout.data_size as u64 {
        return Err(HeaderError::WrongDataArea {
            offset,
            size: dsize,
        });
    }
    let hash = u64_at(OFF_LAYOUT_HASH);
    if hash != layout.hash {
        return Err(HeaderError::LayoutHash {
            found: hash,
            expected: layout.hash,
        });
    }
    if c[field::RESERVED].iter().any(|&b| b != 0) {
        return Err(HeaderError::Reserved);
    }
    Ok(())
}

/// Marks `side` as attached: state `Init`, epoch + 1 (wrapping), then state `Ready`
/// (release). Returns the new epoch. The caller has validated the header.
pub fn announce(region: &Region, side: Side) -> Result<u64, HeaderError> {
    announce_line(region, side.offset())
}

/// [`announce`] for any member line with the side-line layout (state, flags, epoch) at
/// byte offset `line`: multi-party protocols keep one such line per writer or reader in
/// their own area (docs/protocols.md §2.2).
pub fn announce_line(region: &Region, line: usize) -> Result<u64, HeaderError> {
    let bad = HeaderError::BadRegion { len: region.len() };
    region
        .store_le::<u32>(line + SIDE_STATE, State::Init as u32, Ordering::SeqCst)
        .ok_or(bad)?;
    let epoch = region
        .load_le::<u64>(line + SIDE_EPOCH, Ordering::Relaxed)
        .ok_or(bad)?
        .wrapping_add(1);
    region
        .store_le::<u64>(line + SIDE_EPOCH, epoch, Ordering::SeqCst)
        .ok_or(bad)?;
    region
        .store_le::<u32>(line + SIDE_STATE, State::Ready as u32, Ordering::Release)
        .ok_or(bad)?;
    Ok(epoch)
}

/// Sets `side`'s state word (best effort: a region that passed validation always has
/// the word).
pub fn set_state(region: &Region, side: Side, state: State) {
    set_line_state(region, side.offset(), state);
}

/// [`set_state`] for the member line at byte offset `line`.
pub fn set_line_state(region: &Region, line: usize, state: State) {
    let _ = region.store_le::<u32>(line + SIDE_STATE, state as u32, Ordering::Release);
}

/// A snapshot of one side's state word and epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideStatus {
    /// The state, or `None` if the raw word is not a defined state.
    pub state: Option<State>,
    /// The raw state word.
    pub raw_state: u32,
    /// The epoch: incremented by the side each time it attaches.
    pub epoch: u64,
}

/// Reads `side`'s state word and epoch (each once, acquire). `None` only if the region is
/// too small or misaligned for the header.
pub fn side_status(region: &Region, side: Side) -> Option<SideStatus> {
    line_status(region, side.offset())
}

/// [`side_status`] for the member line at byte offset `line`.
pub fn line_status(region: &Region, line: usize) -> Option<SideStatus> {
    let raw_state = region.load_le::<u32>(line + SIDE_STATE, Ordering::Acquire)?;
    let epoch = region.load_le::<u64>(line + SIDE_EPOCH, Ordering::Acquire)?;
    Some(SideStatus {
        state: State::from_raw(raw_state),
        raw_state,
        epoch,
    })
}

/// Largest number of readers (or writers) a multi-party protocol supports: one bit each
/// in [`Wakeups`].
pub const MAX_MEMBERS: usize = 64;

/// Flag bit a waiting member sets in its line's flags word (`S+0x04`): "notify me".
pub const NEED_WAKEUP: u32 = 1;

/// Which members to notify after a publish: bit `i` stands for member (reader) index `i`,
/// the index the manifest gives each reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups(pub u64);

impl Wakeups {
    /// No member needs a notification.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether member `i` needs a notification.
    pub fn contains(self, i: usize) -> bool {
        i < MAX_MEMBERS && self.0 & (1 << i) != 0
    }

    /// Number of members to notify.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The member indices to notify, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// After a publish: issues a full fence, then reads the flags word of each of `count`
/// member lines starting at byte offset `first` (64 bytes apart) once, and returns the
/// members whose [`NEED_WAKEUP`] bit is set. Other flag bits are ignored: a member can
/// only ask for notifications, so a hostile member costs at most spurious ones.
pub fn collect_wakeups(region: &Region, first: usize, count: usize) -> Wakeups {
    core::sync::atomic::fence(Ordering::SeqCst);
    let mut w = 0u64;
    for i in 0..count.min(MAX_MEMBERS) {
        let flags = region
            .load_le::<u32>(first + i * LINE + SIDE_FLAGS, Ordering::Relaxed)
            .unwrap_or(0);
        if flags & NEED_WAKEUP != 0 {
            w |= 1 << i;
        }
    }
    Wakeups(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::Mem;

    #[test]
    fn protocol_ids_are_the_manifest_ids() {
        let ids = [PROTO_QUEUE, PROTO_LOG, PROTO_LATEST, PROTO_BLOB];
        assert_eq!(ids, Protocol::ALL.map(Protocol::id));
        // On the wire: never renumbered.
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    const FIELDS: &[Field] = &[Field {
        name: "x",
        offset: 0,
        size: 8,
    }];

    fn layout() -> Layout {
        Layout {
            protocol: 77,
            version: 3,
            data_offset: DATA_MIN_OFFSET,
            data_size: 256,
            hash: layout_hash(FIELDS),
        }
    }

    #[test]
    fn common_table_is_built_from_the_constants_the_code_uses() {
        // The side-line fields are hashed in each protocol's table (at their line); the
        // reserved bytes never were.
        crate::fieldcheck::check(
            include_str!("header.rs"),
            "pub const COMMON_FIELDS",
            &[
                "RESERVED",
                "SIDE_STATE",
                "SIDE_FLAGS",
                "SIDE_EPOCH",
                "SIDE_PROTO",
            ],
        );
        // The hashes on the wire (docs/protocols.md §2.3, §3.6, §4.8, §5, §6).
        assert_eq!(crate::queue::LAYOUT_HASH, 0xe2c7_bbe0_28e1_c8ff);
        assert_eq!(crate::log::LAYOUT_HASH, 0x60d3_3b3e_d243_8e90);
        assert_eq!(crate::latest::LAYOUT_HASH, 0x565f_7641_ca5c_ca00);
        assert_eq!(crate::blob::LAYOUT_HASH, 0x5a72_0051_6604_0e0d);
    }

    #[test]
    fn fnv_known_values() {
        // FNV-1a 64 of the empty string and of "a" (published test vectors).
        assert_eq!(fnv_bytes(FNV_BASIS, b""), 0xcbf29ce484222325);
        assert_eq!(fnv_bytes(FNV_BASIS, b"a"), 0xaf63dc4c8601ec8c);
        let other = [Field {
            name: "x",
            offset: 8,
            size: 8,
        }];
        assert_ne!(layout_hash(FIELDS), layout_hash(&other));
        let mut all = std::vec::Vec::from(COMMON_FIELDS);
        all.extend_from_slice(FIELDS);
        assert_eq!(protocol_layout_hash(FIELDS), layout_hash(&all));
    }

    #[test]
    fn init_then_validate_and_mismatches() {
        let mem = Mem::new(DATA_MIN_OFFSET + 256);
        let r = mem.region();
        let l = layout();
        assert_eq!(validate(&r, &l), Err(HeaderError::NotInitialized));
        init(&r, &l).unwrap();
        validate(&r, &l).unwrap();
        assert_eq!(
            validate(&r, &Layout { version: 4, ..l }),
            Err(HeaderError::WrongVersion {
                found: 3,
                expected: 4
            })
        );
        assert!(matches!(
            validate(&r, &Layout { hash: 1, ..l }),
            Err(HeaderError::LayoutHash { .. })
        ));
        assert!(matches!(
            validate(&r, &Layout { protocol: 1, ..l }),
            Err(HeaderError::WrongProtocol { .. })
        ));
        assert!(matches!(
            validate(
                &r,
                &Layout {
                    data_size: 128,
                    ..l
                }
            ),
            Err(HeaderError::WrongDataArea { .. })
        ));
        let small = r.sub(0, DATA_MIN_OFFSET + 200).unwrap();
        assert!(matches!(
            validate(&small, &l),
            Err(HeaderError::BadRegion { .. })
        ));
        // Corruptions.
        r.write_bytes(0x30, &[1]).unwrap();
        assert_eq!(validate(&r, &l), Err(HeaderError::Reserved));
        r.write_bytes(0x30, &[0]).unwrap();
        r.write_bytes(0x10, &[9]).unwrap();
        assert!(matches!(
            validate(&r, &l),
            Err(HeaderError::WrongRegionSize { .. })
        ));
        r.store_le::<u64>(0, 5, Ordering::SeqCst).unwrap();
        assert_eq!(validate(&r, &l), Err(HeaderError::BadMagic(5)));
        assert!(std::format!("{}", HeaderError::BadMagic(5)).contains("magic"));
    }

    #[test]
    fn announce_bumps_epoch() {
        let mem = Mem::new(DATA_MIN_OFFSET + 256);
        let r = mem.region();
        init(&r, &layout()).unwrap();
        assert_eq!(announce(&r, Side::Reader).unwrap(), 1);
        assert_eq!(announce(&r, Side::Reader).unwrap(), 2);
        let s = side_status(&r, Side::Reader).unwrap();
        assert_eq!((s.state, s.epoch), (Some(State::Ready), 2));
        let w = side_status(&r, Side::Writer).unwrap();
        assert_eq!((w.state, w.epoch), (Some(State::Reset), 0));
        set_state(&r, Side::Writer, State::Broken);
        assert_eq!(
            side_status(&r, Side::Writer).unwrap().state,
            Some(State::Broken)
        );
        assert_eq!(State::from_raw(9), None);
        assert_eq!(Side::Writer.peer(), Side::Reader);
    }

    #[test]
    fn wakeups_from_member_flags() {
        let mem = Mem::new(DATA_MIN_OFFSET + 4 * LINE);
        let r = mem.region();
        assert!(collect_wakeups(&r, DATA_MIN_OFFSET, 4).is_empty());
        r.store_le::<u32>(
            DATA_MIN_OFFSET + LINE + SIDE_FLAGS,
            NEED_WAKEUP,
            Ordering::SeqCst,
        )
        .unwrap();
        // Unknown bits alone do not ask for a wake-up.
        r.store_le::<u32>(DATA_MIN_OFFSET + 2 * LINE + SIDE_FLAGS, 6, Ordering::SeqCst)
            .unwrap();
        r.store_le::<u32>(DATA_MIN_OFFSET + 3 * LINE + SIDE_FLAGS, 7, Ordering::SeqCst)
            .unwrap();
        let w = collect_wakeups(&r, DATA_MIN_OFFSET, 4);
        assert_eq!(w, Wakeups(0b1010));
        assert_eq!(w.iter().collect::<std::vec::Vec<_>>(), [1, 3]);
        assert!(w.contains(3) && !w.contains(2) && !w.contains(99));
        assert_eq!(w.count(), 2);
        // Lines past the region are read as "no flag", never out of bounds.
        assert_eq!(collect_wakeups(&r, DATA_MIN_OFFSET, 9).count(), 2);
    }
}
