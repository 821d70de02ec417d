//! Channels opened by name: raw links (region and event channels) and the typed
//! endpoints of the four protocols.
//!
//! Every function takes a handle the caller provides storage for. `*_open` fills it:
//! it looks the channel up in the domain's manifest, checks the protocol and this
//! domain's role, attaches to the region (the initialiser initialises it on first start;
//! the other ends wait until it has) and drops the bind-time pending event. Blocking
//! calls spin briefly, then block on the channel's event channel; the peer is notified
//! only when it waits. A domain and its handles are used by one thread (or task) at a
//! time: the transports are not reentrant, and the library takes no locks.

use crate::domain::{self, sb_domain, Ev};
use crate::handle::{self, handle};
use crate::status::*;
use core::ffi::{c_char, c_void, CStr};
use staticbus_guest::Channel;
use staticbus_proto::endpoint::{
    BlobReader, BlobWriter, Error, LatestReader, LatestWriter, LogReader, LogWriter, QueueRx,
    QueueTx,
};
use staticbus_proto::log::Start;

/// Opaque storage for a raw channel (`sb_link_open`).
#[repr(C)]
pub struct sb_link {
    _tag: u64,
    _opaque: [u64; 16],
}

/// Opaque storage for the producer end of a `queue` channel.
#[repr(C)]
pub struct sb_queue_tx {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for the consumer end of a `queue` channel.
#[repr(C)]
pub struct sb_queue_rx {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for the writer end of a `log` channel.
#[repr(C)]
pub struct sb_log_writer {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for a reader end of a `log` channel.
#[repr(C)]
pub struct sb_log_reader {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for a writer end of a `latest` channel.
#[repr(C)]
pub struct sb_latest_writer {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for a reader end of a `latest` channel.
#[repr(C)]
pub struct sb_latest_reader {
    _tag: u64,
    _opaque: [u64; 544],
}

/// Opaque storage for the writer end of a `blob` channel.
#[repr(C)]
pub struct sb_blob_writer {
    _tag: u64,
    _opaque: [u64; 48],
}

/// Opaque storage for a reader end of a `blob` channel.
#[repr(C)]
pub struct sb_blob_reader {
    _tag: u64,
    _opaque: [u64; 48],
}

handle!(sb_link, Channel<'static, Ev>, b"sbLink\0\0");
handle!(sb_queue_tx, QueueTx<'static, Ev>, b"sbQueTx\0");
handle!(sb_queue_rx, QueueRx<'static, Ev>, b"sbQueRx\0");
handle!(sb_log_writer, LogWriter<'static, Ev>, b"sbLogWr\0");
handle!(sb_log_reader, LogReader<'static, Ev>, b"sbLogRd\0");
handle!(sb_latest_writer, LatestWriter<'static, Ev>, b"sbLatWr\0");
handle!(
    sb_latest_reader,
    (LatestReader<'static, Ev>, usize),
    b"sbLatRd\0"
);
handle!(sb_blob_writer, BlobWriter<'static, Ev>, b"sbBlbWr\0");
handle!(sb_blob_reader, BlobReader<'static, Ev>, b"sbBlbRd\0");

/// What `sb_link_info` reports about a channel (from the manifest).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sb_link_info {
    /// `SB_PROTOCOL_*` of the manifest header (1 queue, 2 log, 3 latest, 4 blob).
    pub protocol: u32,
    /// This domain's role, `SB_ROLE_*` of the manifest header (0 producer, 1 consumer,
    /// 2 writer, 3 reader).
    pub role: u32,
    /// This domain's index among the writers (or readers).
    pub index: u32,
    /// Writers of the channel.
    pub writers: u32,
    /// Readers of the channel.
    pub readers: u32,
    /// Peers this domain has event channels to (peer indices `0 .. peer_count - 1`).
    pub peer_count: u32,
    /// The shared region, mapped.
    pub region: *mut u8,
    /// Its length in bytes.
    pub region_size: usize,
}

/// A record returned by `sb_log_read`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sb_log_record {
    /// Its sequence number (0 for the first record ever appended).
    pub seq: u64,
    /// Records overwritten before this reader could read them, since its previous one.
    pub missed: u64,
    /// Payload bytes copied (or, with `SB_ERR_BUFFER_TOO_SMALL`, needed).
    pub len: usize,
}

/// A value returned by `sb_latest_read`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sb_latest_sample {
    /// The writer (slot index) that published it.
    pub writer: u32,
    /// The stamp it was published with.
    pub stamp: u64,
    /// The slot's sequence value for this publish (grows with each publish).
    pub seq: u64,
    /// Writers (bit i: writer i) left out because their slot was busy at every try, so
    /// a newer value may exist there.
    pub contended: u64,
    /// Value bytes copied (or, with `SB_ERR_BUFFER_TOO_SMALL`, needed).
    pub len: usize,
}

/// A blob returned by `sb_blob_read`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sb_blob_info {
    /// Its version (1 for the first blob published).
    pub version: u64,
    /// Bytes copied (or, with `SB_ERR_BUFFER_TOO_SMALL`, needed).
    pub len: usize,
}

/// Where `sb_log_reader_open` starts reading.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sb_log_start {
    /// At the oldest record still in the ring.
    SB_LOG_START_OLDEST = 0,
    /// After the newest record: only records appended from now on.
    SB_LOG_START_LATEST = 1,
    /// Right after the last record this reader index returned before (a restart).
    SB_LOG_START_RESUME = 2,
}

/// Writes a queue message in place: `payload` is the record in shared memory,
/// exactly `len` bytes, to fill before the function returns.
pub type sb_fill_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, payload: *mut u8, len: usize)>;

/// Reads a queue message in place: `payload` is the record in shared memory, `len`
/// bytes, valid until the function returns. A hostile producer could change it while
/// it is read: copy what you need, then validate the copy.
pub type sb_read_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, payload: *const u8, len: usize)>;

fn status(r: Result<(), sb_status>) -> sb_status {
    match r {
        Ok(()) => SB_OK,
        Err(e) => e,
    }
}

fn err(e: Error) -> sb_status {
    classify(&e).0
}

/// A channel name from C.
///
/// # Safety
///
/// `p` is null or a NUL-terminated string.
unsafe fn name<'a>(p: *const c_char) -> Result<&'a str, sb_status> {
    if p.is_null() {
        return Err(SB_ERR_INVALID);
    }
    // SAFETY: NUL-terminated (contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| SB_ERR_INVALID)
}

/// `len` bytes at `p` (null allowed for 0 bytes).
///
/// # Safety
///
/// `p` is valid for reads of `len` bytes, or `len` is 0.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], sb_status> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(SB_ERR_INVALID),
        // SAFETY: valid for reads (contract).
        (false, _) => Ok(unsafe { core::slice::from_raw_parts(p, len) }),
    }
}

/// `len` writable bytes at `p` (null allowed for 0 bytes).
///
/// # Safety
///
/// `p` is valid for writes of `len` bytes and not otherwise accessed meanwhile, or `len`
/// is 0.
unsafe fn bytes_mut<'a>(p: *mut u8, len: usize) -> Result<&'a mut [u8], sb_status> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err(SB_ERR_INVALID),
        // SAFETY: valid for writes (contract).
        (false, _) => Ok(unsafe { core::slice::from_raw_parts_mut(p, len) }),
    }
}

/// Stores `v` through `out` if it is not null.
///
/// # Safety
///
/// `out` is null or valid for writes.
unsafe fn set<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: valid for writes (contract).
        unsafe { out.write(v) }
    }
}

// ---- raw links ----

/// Opens channel `name` for its region and event channels only (no protocol): for a
/// protocol of your own on the region, or to signal peers.
///
/// # Safety
///
/// Pointers are null or valid (storage for `l`, an initialised domain `d` that outlives
/// `l`, a NUL-terminated `name`). This holds for every function below.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_open(
    l: *mut sb_link,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded from the contract.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: as above.
        let ch = Channel::open(p, unsafe { self::name(name) }?)?;
        // SAFETY: as above.
        match unsafe { handle::put(l, ch) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// What the manifest says about the link's channel, and where its region is.
///
/// # Safety
///
/// See `sb_link_open`; `out` is valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_info(l: *mut sb_link, out: *mut sb_link_info) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        if out.is_null() {
            return Err(SB_ERR_INVALID);
        }
        let i = ch.info();
        let info = sb_link_info {
            protocol: i.protocol.id(),
            role: crate::manifest::role_number(i.role),
            index: i.index,
            writers: i.writers,
            readers: i.readers,
            peer_count: i.peers.len() as u32,
            region: ch.region().as_ptr(),
            region_size: ch.region().len(),
        };
        // SAFETY: valid for writes (contract).
        unsafe { out.write(info) };
        Ok(())
    })())
}

/// Signals peer `peer` (an index below `peer_count`) on its event channel.
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_notify(l: *mut sb_link, peer: usize) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        if peer >= ch.peers().len() {
            return Err(SB_ERR_INVALID);
        }
        ch.notify(peer).map_err(|_| SB_ERR_EVENT)
    })())
}

/// Signals every peer of the link.
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_notify_all(l: *mut sb_link) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        ch.notify_all().map_err(|_| SB_ERR_EVENT)
    })())
}

/// Blocks until a peer's event channel fired; consumes that event and stores the
/// peer's index in `peer` (if not null). An event is a doorbell: re-check the shared
/// state after every return (it may be spurious or stand for several signals).
///
/// # Safety
///
/// See `sb_link_open`; `peer` is null or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_wait(l: *mut sb_link, peer: *mut usize) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        let i = ch.wait().map_err(|_| SB_ERR_EVENT)?;
        // SAFETY: null or valid for writes (contract).
        unsafe { set(peer, i) };
        Ok(())
    })())
}

/// `sb_link_wait` without blocking: `SB_ERR_EMPTY` if no peer's event is pending.
///
/// # Safety
///
/// See `sb_link_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_try_wait(l: *mut sb_link, peer: *mut usize) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        let i = ch.try_take().ok_or(SB_ERR_EMPTY)?;
        // SAFETY: null or valid for writes (contract).
        unsafe { set(peer, i) };
        Ok(())
    })())
}

/// Consumes the event Xen leaves pending at boot on the end it binds second (the
/// manifest's `initially_pending` ports of this channel); stores 1 in `had` (if not
/// null) if there was one. Call once at start, before your handshake. (The typed
/// endpoints do this when they open.)
///
/// # Safety
///
/// See `sb_link_open`; `had` is null or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_link_clear_initial(l: *mut sb_link, had: *mut i32) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let ch = unsafe { handle::get(l) }?;
        let any = ch.clear_initial();
        // SAFETY: null or valid for writes (contract).
        unsafe { set(had, i32::from(any)) };
        Ok(())
    })())
}

// ---- queue ----

/// Opens `name`, a `queue` channel whose producer is this domain, and attaches
/// (initialising the region on first start, continuing after a restart).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_tx_open(
    tx: *mut sb_queue_tx,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let q = QueueTx::open(p, unsafe { self::name(name) }?).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(tx, q) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Sends the `len` bytes at `msg` (copied), blocking while the queue is full.
///
/// # Safety
///
/// See `sb_link_open`; `msg` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_send(
    tx: *mut sb_queue_tx,
    msg: *const u8,
    len: usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(tx) }?;
        // SAFETY: forwarded.
        q.send(unsafe { bytes(msg, len) }?).map_err(err)
    })())
}

/// Sends the `len` bytes at `msg` if there is room now; `SB_ERR_FULL` if not.
///
/// # Safety
///
/// See `sb_queue_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_try_send(
    tx: *mut sb_queue_tx,
    msg: *const u8,
    len: usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(tx) }?;
        // SAFETY: forwarded.
        match q.try_send(unsafe { bytes(msg, len) }?).map_err(err)? {
            true => Ok(()),
            false => Err(SB_ERR_FULL),
        }
    })())
}

/// Sends a `len`-byte message written in place (zero-copy): blocks while the queue is
/// full, then calls `fill(ctx, payload, len)` with the record in shared memory, then
/// publishes it. `SB_ERR_TOO_LARGE` (without calling `fill`) if it can never fit.
///
/// # Safety
///
/// See `sb_link_open`; `fill` writes at most `len` bytes at `payload` and keeps no
/// pointer to it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_send_in_place(
    tx: *mut sb_queue_tx,
    len: usize,
    fill: sb_fill_fn,
    ctx: *mut c_void,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(tx) }?;
        let fill = fill.ok_or(SB_ERR_INVALID)?;
        q.send_in_place(len, |r| {
            // SAFETY: `r` is the record's payload, exactly `len` writable bytes nothing
            // else accesses until the commit; `fill`'s contract.
            unsafe { fill(ctx, r.as_ptr(), r.len()) }
        })
        .map_err(err)
    })())
}

/// Opens `name`, a `queue` channel whose consumer is this domain, and attaches
/// (blocking until the producer has initialised the region).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_rx_open(
    rx: *mut sb_queue_rx,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let q = QueueRx::open(p, unsafe { self::name(name) }?).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(rx, q) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Receives the next message into `buf` (`cap` bytes), blocking while the queue is
/// empty; stores its length in `len`. `SB_ERR_BUFFER_TOO_SMALL` leaves the message
/// queued and stores the length it needs.
///
/// # Safety
///
/// See `sb_link_open`; `buf` is valid for writes of `cap` bytes, `len` for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_recv(
    rx: *mut sb_queue_rx,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(rx) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        let r = q.recv(buf);
        let (s, n) = match r {
            Ok(n) => (SB_OK, n),
            Err(e) => match classify(&e) {
                (s, Some(n)) => (s, n),
                (s, None) => return Err(s),
            },
        };
        // SAFETY: null or valid for writes (contract).
        unsafe { set(len, n) };
        match s {
            SB_OK => Ok(()),
            s => Err(s),
        }
    })())
}

/// Receives a message if one is queued; `SB_ERR_EMPTY` if not. Otherwise as
/// `sb_queue_recv`.
///
/// # Safety
///
/// See `sb_queue_recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_try_recv(
    rx: *mut sb_queue_rx,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(rx) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        let (s, n) = match q.try_recv(buf) {
            Ok(Some(n)) => (SB_OK, n),
            Ok(None) => return Err(SB_ERR_EMPTY),
            Err(e) => match classify(&e) {
                (s, Some(n)) => (s, n),
                (s, None) => return Err(s),
            },
        };
        // SAFETY: null or valid for writes (contract).
        unsafe { set(len, n) };
        match s {
            SB_OK => Ok(()),
            s => Err(s),
        }
    })())
}

/// Receives the next message in place (zero-copy): blocks while the queue is empty,
/// calls `read(ctx, payload, len)` with the record in shared memory, then releases it.
///
/// # Safety
///
/// See `sb_link_open`; `read` reads at most `len` bytes at `payload` and keeps no
/// pointer to it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_queue_recv_in_place(
    rx: *mut sb_queue_rx,
    read: sb_read_fn,
    ctx: *mut c_void,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let q = unsafe { handle::get(rx) }?;
        let read = read.ok_or(SB_ERR_INVALID)?;
        q.recv_in_place(|m| {
            let r = m.region();
            // SAFETY: `r` is the record's payload, `len` bytes of mapped shared memory
            // valid until the release after this call; `read`'s contract.
            unsafe { read(ctx, r.as_ptr().cast_const(), r.len()) }
        })
        .map_err(err)
    })())
}

// ---- log ----

/// Opens `name`, a `log` channel whose writer is this domain, with the slot size of
/// the manifest.
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_log_writer_open(
    w: *mut sb_log_writer,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let name = unsafe { self::name(name) }?;
        let e = LogWriter::open(p, name).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(w, e) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Appends a record of `len` bytes (never blocks; a slow reader loses the oldest
/// records and is told how many).
///
/// # Safety
///
/// See `sb_link_open`; `data` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_log_append(
    w: *mut sb_log_writer,
    data: *const u8,
    len: usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(w) }?;
        // SAFETY: forwarded.
        e.append(unsafe { bytes(data, len) }?).map_err(err)
    })())
}

/// Opens `name`, a `log` channel this domain reads, starting at `start` (an
/// `sb_log_start`), and attaches (blocking until the writer has initialised it).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_log_reader_open(
    r: *mut sb_log_reader,
    d: *const sb_domain,
    name: *const c_char,
    start: u32,
) -> sb_status {
    status((|| {
        let start = match start {
            0 => Start::Oldest,
            1 => Start::Latest,
            2 => Start::Resume,
            _ => return Err(SB_ERR_INVALID),
        };
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let e = LogReader::open(p, unsafe { self::name(name) }?, start).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(r, e) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Shared body of the log reads.
fn log_read(
    r: Result<Option<staticbus_proto::log::Record>, Error>,
    out: *mut sb_log_record,
) -> Result<(), sb_status> {
    let (s, rec) = match r {
        Ok(Some(rec)) => (
            SB_OK,
            sb_log_record {
                seq: rec.seq,
                missed: rec.missed,
                len: rec.len,
            },
        ),
        Ok(None) => return Err(SB_ERR_EMPTY),
        Err(e) => match classify(&e) {
            (s, Some(len)) => (
                s,
                sb_log_record {
                    len,
                    ..Default::default()
                },
            ),
            (s, None) => return Err(s),
        },
    };
    // SAFETY: the callers checked `out`: null or valid for writes.
    unsafe { set(out, rec) };
    match s {
        SB_OK => Ok(()),
        s => Err(s),
    }
}

/// Reads the next record into `buf` (`cap` bytes), blocking until there is one; its
/// sequence number, length and the count of records missed before it go to `out`.
///
/// # Safety
///
/// See `sb_link_open`; `buf` is valid for writes of `cap` bytes, `out` null or valid
/// for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_log_read(
    r: *mut sb_log_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_log_record,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        log_read(e.read(buf).map(Some), out)
    })())
}

/// `sb_log_read` without blocking: `SB_ERR_EMPTY` if there is no new record.
///
/// # Safety
///
/// See `sb_log_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_log_try_read(
    r: *mut sb_log_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_log_record,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        log_read(e.try_read(buf), out)
    })())
}

// ---- latest ----

/// Opens `name`, a `latest` channel this domain writes (its own slot), with the value
/// size of the manifest.
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_latest_writer_open(
    w: *mut sb_latest_writer,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let name = unsafe { self::name(name) }?;
        let e = LatestWriter::open(p, name).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(w, e) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Publishes a value (exactly the channel's value size, `len` bytes) with `stamp`;
/// readers take the highest stamp across writers. Never blocks.
///
/// # Safety
///
/// See `sb_link_open`; `value` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_latest_publish(
    w: *mut sb_latest_writer,
    stamp: u64,
    value: *const u8,
    len: usize,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(w) }?;
        // SAFETY: forwarded.
        e.publish(stamp, unsafe { bytes(value, len) }?).map_err(err)
    })())
}

/// Opens `name`, a `latest` channel this domain reads (blocking until writer 0 has
/// initialised it).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_latest_reader_open(
    r: *mut sb_latest_reader,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let name = unsafe { self::name(name) }?;
        let e = LatestReader::open(p, name).map_err(err)?;
        let size = e.value_size();
        // SAFETY: forwarded.
        match unsafe { handle::put(r, (e, size)) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Shared body of the latest reads.
fn latest_read(
    r: Result<Option<staticbus_proto::latest::Sample>, Error>,
    len: usize,
    out: *mut sb_latest_sample,
) -> Result<(), sb_status> {
    let (s, v) = match r {
        Ok(Some(x)) => (
            SB_OK,
            sb_latest_sample {
                writer: x.writer as u32,
                stamp: x.stamp,
                seq: x.seq,
                contended: x.contended.0,
                len,
            },
        ),
        Ok(None) => return Err(SB_ERR_EMPTY),
        Err(e) => match classify(&e) {
            (s, Some(len)) => (
                s,
                sb_latest_sample {
                    len,
                    ..Default::default()
                },
            ),
            (s, None) => return Err(s),
        },
    };
    // SAFETY: the callers' contract: null or valid for writes.
    unsafe { set(out, v) };
    match s {
        SB_OK => Ok(()),
        s => Err(s),
    }
}

/// The newest complete value across writers into `buf` (`cap` bytes, at least the
/// value size); `SB_ERR_EMPTY` before any publish. Never blocks (a bounded number of
/// tries; `SB_ERR_CONTENDED` if every writer was busy at every try).
///
/// # Safety
///
/// See `sb_link_open`; `buf` is valid for writes of `cap` bytes, `out` null or valid
/// for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_latest_read(
    r: *mut sb_latest_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_latest_sample,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let (e, size) = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        latest_read(e.read(buf), *size, out)
    })())
}

/// Blocks until the newest value differs from the one this reader last read, then
/// reads it as `sb_latest_read` does.
///
/// # Safety
///
/// See `sb_latest_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_latest_read_changed(
    r: *mut sb_latest_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_latest_sample,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let (e, size) = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        latest_read(e.read_changed(buf), *size, out)
    })())
}

// ---- blob ----

/// Opens `name`, a `blob` channel whose writer is this domain (after a restart the
/// current blob stays visible and versions continue).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_blob_writer_open(
    w: *mut sb_blob_writer,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let e = BlobWriter::open(p, unsafe { self::name(name) }?).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(w, e) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Publishes a new blob of `len` bytes (never blocks); stores its version in `version`
/// (if not null). Readers see the old blob or this one, never a mix.
///
/// # Safety
///
/// See `sb_link_open`; `data` is valid for reads of `len` bytes, `version` null or
/// valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_blob_write(
    w: *mut sb_blob_writer,
    data: *const u8,
    len: usize,
    version: *mut u64,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(w) }?;
        // SAFETY: forwarded.
        let v = e.publish(unsafe { bytes(data, len) }?).map_err(err)?;
        // SAFETY: null or valid for writes (contract).
        unsafe { set(version, v) };
        Ok(())
    })())
}

/// Opens `name`, a `blob` channel this domain reads (blocking until the writer has
/// initialised it).
///
/// # Safety
///
/// See `sb_link_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_blob_reader_open(
    r: *mut sb_blob_reader,
    d: *const sb_domain,
    name: *const c_char,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let p = unsafe { domain::platform(d) }?;
        // SAFETY: forwarded.
        let e = BlobReader::open(p, unsafe { self::name(name) }?).map_err(err)?;
        // SAFETY: forwarded.
        match unsafe { handle::put(r, e) } {
            SB_OK => Ok(()),
            e => Err(e),
        }
    })())
}

/// Shared body of the blob reads.
fn blob_read(
    r: Result<Option<staticbus_proto::blob::Blob>, Error>,
    out: *mut sb_blob_info,
) -> Result<(), sb_status> {
    let (s, v) = match r {
        Ok(Some(b)) => (
            SB_OK,
            sb_blob_info {
                version: b.version,
                len: b.len,
            },
        ),
        Ok(None) => return Err(SB_ERR_EMPTY),
        Err(e) => match classify(&e) {
            (s, Some(len)) => (s, sb_blob_info { version: 0, len }),
            (s, None) => return Err(s),
        },
    };
    // SAFETY: the callers' contract: null or valid for writes.
    unsafe { set(out, v) };
    match s {
        SB_OK => Ok(()),
        s => Err(s),
    }
}

/// The current blob into `buf` (`cap` bytes), checksum verified; its version and
/// length go to `out`. `SB_ERR_EMPTY` before the first publish. Never blocks.
///
/// # Safety
///
/// See `sb_link_open`; `buf` is valid for writes of `cap` bytes, `out` null or valid
/// for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_blob_read(
    r: *mut sb_blob_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_blob_info,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        blob_read(e.read(buf), out)
    })())
}

/// Blocks until a version newer than the one this reader last read exists, then reads
/// it as `sb_blob_read` does.
///
/// # Safety
///
/// See `sb_blob_read`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_blob_read_changed(
    r: *mut sb_blob_reader,
    buf: *mut u8,
    cap: usize,
    out: *mut sb_blob_info,
) -> sb_status {
    status((|| {
        // SAFETY: forwarded.
        let e = unsafe { handle::get(r) }?;
        // SAFETY: forwarded.
        let buf = unsafe { bytes_mut(buf, cap) }?;
        blob_read(e.read_changed(buf), out)
    })())
}
