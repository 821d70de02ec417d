//! Return codes: [`sb_status`], what each protocol error becomes, and [`sb_strerror`].

use core::ffi::c_char;
use staticbus_guest::OpenError;
use staticbus_proto::endpoint::Error;
use staticbus_proto::header::HeaderError;
use staticbus_proto::{blob, latest, log, queue};

/// What every function of the C API returns: `SB_OK` (0) or a negative error code.
/// The values are part of the ABI and never change.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sb_status {
    /// Success.
    SB_OK = 0,
    /// A null pointer, a name that is not UTF-8, an enum value out of range, or a bad
    /// transport (no `shared_info`, misaligned).
    SB_ERR_INVALID = -1,
    /// The handle was never opened (or its storage was overwritten).
    SB_ERR_NOT_OPEN = -2,
    /// The manifest is malformed or of a format version this library does not read.
    SB_ERR_BAD_MANIFEST = -3,
    /// The manifest has more entries than the library's fixed tables hold
    /// (`SB_MAX_CHANNELS`, `SB_MAX_PEERS`, `SB_MAX_REGIONS`, `SB_MAX_EVTCHNS`).
    SB_ERR_MANIFEST_TOO_LARGE = -4,
    /// The manifest has no channel of that name.
    SB_ERR_NO_CHANNEL = -5,
    /// The transport could not map the channel's shared region, or mapped another size
    /// than the manifest says.
    SB_ERR_NO_REGION = -6,
    /// A channel peer's port is not among the manifest's event channels, or is not
    /// connected to the peer the manifest names.
    SB_ERR_NO_EVTCHN = -7,
    /// The manifest declares another protocol for the channel.
    SB_ERR_WRONG_PROTOCOL = -8,
    /// This domain has another role in the channel (e.g. it is the consumer, not the
    /// producer).
    SB_ERR_WRONG_ROLE = -9,
    /// Non-blocking send: the queue is full now.
    SB_ERR_FULL = -10,
    /// Non-blocking receive or read: nothing there now (an empty queue, no new log
    /// record, no value or blob published yet).
    SB_ERR_EMPTY = -11,
    /// The message, record, value or blob is larger than the channel carries (or, for
    /// `latest`, not exactly the value size).
    SB_ERR_TOO_LARGE = -12,
    /// The buffer is too small: the length needed is returned in the length
    /// out-parameter, and nothing is consumed.
    SB_ERR_BUFFER_TOO_SMALL = -13,
    /// A `latest` or `blob` writer rewrote the value during every attempt of a bounded
    /// read: retry.
    SB_ERR_CONTENDED = -14,
    /// The region's header does not match this end (another protocol, layout version,
    /// size, reader count or parameters): the two ends were built from different
    /// descriptions.
    SB_ERR_HEADER = -15,
    /// The peer violated the protocol (a hostile or corrupted peer): the handle stays
    /// broken until it is opened again.
    SB_ERR_BROKEN = -16,
    /// Sequence numbers or versions are exhausted (after 2^63 or more operations).
    SB_ERR_EXHAUSTED = -17,
    /// An event-channel hypercall failed (send, poll).
    SB_ERR_EVENT = -18,
    /// A hypercall of the transport failed (console, yield, mapping `shared_info`).
    SB_ERR_HYPERCALL = -19,
    /// The domain is already initialised (also by a second `sb_emu_init` or
    /// `sb_xen_init`).
    SB_ERR_ALREADY = -20,
    /// The provided transport could not start: not run by `staticbus run`
    /// (`sb_emu_*`; the reason is printed on stderr), or `shared_info` could not be
    /// mapped (`sb_xen_*`).
    SB_ERR_TRANSPORT = -21,
}

pub use sb_status::*;

impl sb_status {
    /// Every status, in value order (0, −1, …).
    pub const ALL: [sb_status; 22] = [
        SB_OK,
        SB_ERR_INVALID,
        SB_ERR_NOT_OPEN,
        SB_ERR_BAD_MANIFEST,
        SB_ERR_MANIFEST_TOO_LARGE,
        SB_ERR_NO_CHANNEL,
        SB_ERR_NO_REGION,
        SB_ERR_NO_EVTCHN,
        SB_ERR_WRONG_PROTOCOL,
        SB_ERR_WRONG_ROLE,
        SB_ERR_FULL,
        SB_ERR_EMPTY,
        SB_ERR_TOO_LARGE,
        SB_ERR_BUFFER_TOO_SMALL,
        SB_ERR_CONTENDED,
        SB_ERR_HEADER,
        SB_ERR_BROKEN,
        SB_ERR_EXHAUSTED,
        SB_ERR_EVENT,
        SB_ERR_HYPERCALL,
        SB_ERR_ALREADY,
        SB_ERR_TRANSPORT,
    ];

    /// A one-line description (NUL-terminated).
    pub const fn message(self) -> &'static str {
        match self {
            SB_OK => "success\0",
            SB_ERR_INVALID => "invalid argument\0",
            SB_ERR_NOT_OPEN => "handle not opened\0",
            SB_ERR_BAD_MANIFEST => "malformed or unsupported manifest\0",
            SB_ERR_MANIFEST_TOO_LARGE => "manifest larger than the library's tables\0",
            SB_ERR_NO_CHANNEL => "no such channel in the manifest\0",
            SB_ERR_NO_REGION => "the channel's shared region is not mapped as the manifest says\0",
            SB_ERR_NO_EVTCHN => "a peer's event channel is not as the manifest says\0",
            SB_ERR_WRONG_PROTOCOL => "the channel has another protocol\0",
            SB_ERR_WRONG_ROLE => "this domain has another role in the channel\0",
            SB_ERR_FULL => "queue full\0",
            SB_ERR_EMPTY => "nothing to read\0",
            SB_ERR_TOO_LARGE => "larger than the channel carries\0",
            SB_ERR_BUFFER_TOO_SMALL => "buffer too small\0",
            SB_ERR_CONTENDED => "writer busy during every attempt, retry\0",
            SB_ERR_HEADER => "shared region header does not match this end\0",
            SB_ERR_BROKEN => "the peer violated the protocol\0",
            SB_ERR_EXHAUSTED => "sequence numbers or versions exhausted\0",
            SB_ERR_EVENT => "event-channel hypercall failed\0",
            SB_ERR_HYPERCALL => "hypercall failed\0",
            SB_ERR_ALREADY => "already initialised\0",
            SB_ERR_TRANSPORT => "the transport could not start\0",
        }
    }
}

/// A static, NUL-terminated description of `status` (any `int`; unknown values get
/// "unknown status").
#[unsafe(no_mangle)]
pub extern "C" fn sb_strerror(status: i32) -> *const c_char {
    let msg = sb_status::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map_or("unknown status\0", |s| s.message());
    msg.as_ptr().cast()
}

impl From<OpenError> for sb_status {
    fn from(e: OpenError) -> sb_status {
        match e {
            OpenError::UnsupportedManifest { .. } => SB_ERR_BAD_MANIFEST,
            OpenError::NoSuchChannel => SB_ERR_NO_CHANNEL,
            OpenError::NoRegion { .. } | OpenError::RegionSizeMismatch { .. } => SB_ERR_NO_REGION,
            OpenError::NoEvtchn { .. } | OpenError::PortMismatch { .. } => SB_ERR_NO_EVTCHN,
            OpenError::Status { .. } => SB_ERR_EVENT,
            _ => SB_ERR_NO_EVTCHN,
        }
    }
}

fn header(e: HeaderError) -> sb_status {
    match e {
        HeaderError::BadOwnField => SB_ERR_BROKEN,
        _ => SB_ERR_HEADER,
    }
}

/// The status of an endpoint error, and the length a `SB_ERR_BUFFER_TOO_SMALL` needs.
pub(crate) fn classify(e: &Error) -> (sb_status, Option<usize>) {
    let s = match *e {
        Error::Open(o) => o.into(),
        Error::WrongProtocol { .. } => SB_ERR_WRONG_PROTOCOL,
        Error::WrongRole { .. } => SB_ERR_WRONG_ROLE,
        Error::Event(_) => SB_ERR_EVENT,
        Error::Undeclared { .. } => SB_ERR_BAD_MANIFEST,
        Error::Queue(q) => match q {
            queue::Error::Header(h) => header(h),
            queue::Error::PeerBroken(_) | queue::Error::OutOfBounds => SB_ERR_BROKEN,
            queue::Error::Full => SB_ERR_FULL,
            queue::Error::TooLarge { .. } => SB_ERR_TOO_LARGE,
            queue::Error::BufferTooSmall { len } => return (SB_ERR_BUFFER_TOO_SMALL, Some(len)),
            queue::Error::Unflushed => SB_ERR_INVALID,
        },
        Error::Log(l) => match l {
            log::Error::Header(h) => header(h),
            log::Error::BadReaders { .. }
            | log::Error::BadIndex { .. }
            | log::Error::ReadersMismatch { .. }
            | log::Error::BadSlotSize(_)
            | log::Error::SlotSizeMismatch { .. } => SB_ERR_HEADER,
            log::Error::PeerBroken(_) => SB_ERR_BROKEN,
            log::Error::TooLarge { .. } => SB_ERR_TOO_LARGE,
            log::Error::BufferTooSmall { len } => return (SB_ERR_BUFFER_TOO_SMALL, Some(len)),
            log::Error::Contended => SB_ERR_CONTENDED,
            log::Error::Exhausted => SB_ERR_EXHAUSTED,
        },
        Error::Latest(l) => match l {
            latest::Error::Header(h) => header(h),
            latest::Error::InvalidParams(_)
            | latest::Error::BadIndex { .. }
            | latest::Error::ParamMismatch { .. } => SB_ERR_HEADER,
            latest::Error::WrongValueSize { .. } => SB_ERR_TOO_LARGE,
            latest::Error::BufferTooSmall { len } => return (SB_ERR_BUFFER_TOO_SMALL, Some(len)),
            latest::Error::Contended(_) => SB_ERR_CONTENDED,
            latest::Error::WriterBroken { .. } => SB_ERR_BROKEN,
            latest::Error::SeqExhausted => SB_ERR_EXHAUSTED,
        },
        Error::Blob(b) => match b {
            blob::Error::Header(h) => header(h),
            blob::Error::ReaderCount(_) | blob::Error::ReaderIndex { .. } => SB_ERR_HEADER,
            blob::Error::PeerBroken(_) => SB_ERR_BROKEN,
            blob::Error::Contended => SB_ERR_CONTENDED,
            blob::Error::TooLarge { .. } => SB_ERR_TOO_LARGE,
            blob::Error::BufferTooSmall { len } => return (SB_ERR_BUFFER_TOO_SMALL, Some(len)),
            blob::Error::VersionsExhausted => SB_ERR_EXHAUSTED,
        },
        _ => SB_ERR_BROKEN,
    };
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn values_are_dense_and_described() {
        for (i, s) in sb_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, -(i as i32));
            assert!(s.message().ends_with('\0'));
            // SAFETY: sb_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(sb_strerror(*s as i32)) };
            assert_eq!(
                text.to_bytes(),
                s.message().trim_end_matches('\0').as_bytes()
            );
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(sb_strerror(-1000)) };
        assert_eq!(unknown.to_bytes(), b"unknown status");
        // SAFETY: as above.
        let positive = unsafe { CStr::from_ptr(sb_strerror(5)) };
        assert_eq!(positive.to_bytes(), b"unknown status");
    }

    #[test]
    fn buffer_too_small_carries_the_length() {
        let e = Error::Queue(queue::Error::BufferTooSmall { len: 77 });
        assert_eq!(classify(&e), (SB_ERR_BUFFER_TOO_SMALL, Some(77)));
        let e = Error::Blob(blob::Error::Contended);
        assert_eq!(classify(&e), (SB_ERR_CONTENDED, None));
        let e = Error::Queue(queue::Error::Header(HeaderError::NotInitialized));
        assert_eq!(classify(&e), (SB_ERR_HEADER, None));
    }
}
