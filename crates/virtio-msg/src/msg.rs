//! virtio-msg control messages: the 8-byte header, the message ids and every payload
//! layout, as zerocopy structs — the one definition docs/virtio.md §3 is generated from.
//!
//! Follows the virtio-msg transport draft (Linaro/AMD; Arm DEN0153's transport messages)
//! in the revision QEMU's `hw/virtio/virtio-msg.h` implements: header `type`, `msg_id`,
//! `dev_num`, `token`, `msg_size`; messages of at most 48 bytes; ids 0x02–0x0b and events
//! 0x40–0x42. staticbus adds one thing: an error response (`type` bit 7, [`ErrorResp`]).

use crate::layout::{MSG_HEADER, MSG_MAX, PAYLOAD_MAX};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `type` bit 0: a response (clear: a request or an event).
pub const TYPE_RESPONSE: u8 = 1 << 0;
/// `type` bit 1: a bus message (never used here; such messages are refused).
pub const TYPE_BUS: u8 = 1 << 1;
/// `type` bit 7 (staticbus): the response reports an error, payload [`ErrorResp`].
pub const TYPE_ERROR: u8 = 1 << 7;

/// Message ids of the virtio-msg transport (the draft's values).
pub mod id {
    /// Device id, vendor, feature bits, config size, queue count.
    pub const DEVICE_INFO: u8 = 0x02;
    /// Read a block of device feature bits.
    pub const GET_DEV_FEATURES: u8 = 0x03;
    /// Write a block of driver feature bits.
    pub const SET_DRV_FEATURES: u8 = 0x04;
    /// Read device configuration bytes.
    pub const GET_CONFIG: u8 = 0x05;
    /// Write device configuration bytes.
    pub const SET_CONFIG: u8 = 0x06;
    /// Read the device status.
    pub const GET_DEVICE_STATUS: u8 = 0x07;
    /// Write the device status (0 resets the device).
    pub const SET_DEVICE_STATUS: u8 = 0x08;
    /// Read a virtqueue's size and addresses.
    pub const GET_VQUEUE: u8 = 0x09;
    /// Set a virtqueue's size and addresses and enable it.
    pub const SET_VQUEUE: u8 = 0x0a;
    /// Disable and reset a virtqueue.
    pub const RESET_VQUEUE: u8 = 0x0b;
    /// Shared-memory regions (not supported: answered with an error).
    pub const GET_SHM: u8 = 0x0c;
    /// Device → driver: the configuration (or the status) changed.
    pub const EVENT_CONFIG: u8 = 0x40;
    /// Driver → device: buffers are available on a queue.
    pub const EVENT_AVAIL: u8 = 0x41;
    /// Device → driver: buffers were used on a queue.
    pub const EVENT_USED: u8 = 0x42;
}

/// Error codes of an [`ErrorResp`] (the draft's `VIRTIO_MSG_ERROR_*` values).
pub mod error {
    /// Try again.
    pub const RETRY: u32 = 1;
    /// Timed out.
    pub const TIMEOUT: u32 = 2;
    /// The message id is not supported.
    pub const UNSUPPORTED_MESSAGE_ID: u32 = 3;
    /// A field is out of range or the message is malformed.
    pub const BAD_MESSAGE: u32 = 4;
    /// An address does not lie in the shared region.
    pub const MEMORY: u32 = 5;
}

/// One field of a wire struct, for the generated documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireField {
    /// Field name.
    pub name: &'static str,
    /// Offset within the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// A wire struct: its fields in order.
pub trait Wire {
    /// The struct's name as documented.
    const NAME: &'static str;
    /// Its fields, from `offset_of!` and `size_of`.
    const FIELDS: &'static [WireField];
}

macro_rules! wire {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(C)]
        pub struct $name { $($(#[$fm])* pub $f: $t,)* }

        impl Wire for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [WireField] = &[$(WireField {
                name: stringify!($f),
                offset: core::mem::offset_of!($name, $f),
                size: core::mem::size_of::<$t>(),
            },)*];
        }
    };
}

wire! {
    /// The header every message starts with.
    pub struct Header {
        /// [`TYPE_RESPONSE`], [`TYPE_BUS`], [`TYPE_ERROR`].
        pub ty: u8,
        /// One of [`id`].
        pub msg_id: u8,
        /// Device number on the bus (one device per region: 0).
        pub dev_num: U16,
        /// Chosen by the requester, echoed in the response.
        pub token: U16,
        /// Header plus payload, in bytes (8..=48).
        pub msg_size: U16,
    }
}

wire! {
    /// DEVICE_INFO response.
    pub struct DeviceInfoResp {
        /// Virtio device id.
        pub device_id: U32,
        /// Vendor id.
        pub vendor_id: U32,
        /// Number of feature bits the device has (64 here).
        pub num_feature_bits: U32,
        /// Size of the configuration space in bytes.
        pub config_size: U32,
        /// Number of virtqueues.
        pub max_vqs: U32,
        /// First admin virtqueue (none: 0).
        pub admin_vq_idx: U16,
        /// Admin virtqueues (none: 0).
        pub admin_vq_count: U16,
    }
}

wire! {
    /// GET_DEV_FEATURES request; GET_DEV_FEATURES response and SET_DRV_FEATURES request
    /// when followed by `num` little-endian u32 blocks.
    pub struct Features {
        /// First 32-bit block (block `i` holds feature bits `32 i .. 32 i + 31`).
        pub index: U32,
        /// Number of blocks (at most [`MAX_FEATURE_BLOCKS`]).
        pub num: U32,
    }
}

wire! {
    /// GET_CONFIG request.
    pub struct ConfigRange {
        /// Offset in the configuration space.
        pub offset: U32,
        /// Bytes (at most [`MAX_CONFIG_BYTES`]).
        pub size: U32,
    }
}

wire! {
    /// GET_CONFIG response, SET_CONFIG request and response: followed by `size` bytes.
    pub struct ConfigData {
        /// Configuration generation.
        pub generation: U32,
        /// Offset in the configuration space.
        pub offset: U32,
        /// Bytes that follow (at most [`MAX_CONFIG_BYTES`]).
        pub size: U32,
    }
}

wire! {
    /// GET_DEVICE_STATUS response; SET_DEVICE_STATUS request and response.
    pub struct Status {
        /// Device status bits (virtio §2.1).
        pub status: U32,
    }
}

wire! {
    /// GET_VQUEUE and RESET_VQUEUE requests; EVENT_USED.
    pub struct QueueIndex {
        /// Virtqueue index.
        pub index: U32,
    }
}

wire! {
    /// GET_VQUEUE response and SET_VQUEUE request.
    pub struct Vqueue {
        /// Virtqueue index.
        pub index: U32,
        /// Largest size the device accepts (GET_VQUEUE response; zero in SET_VQUEUE).
        pub max_size: U32,
        /// Size in use; 0 = disabled.
        pub size: U32,
        /// Zero.
        pub reserved: U32,
        /// Guest-physical address of the descriptor table.
        pub descriptor_addr: U64,
        /// Guest-physical address of the driver area (available ring).
        pub driver_addr: U64,
        /// Guest-physical address of the device area (used ring).
        pub device_addr: U64,
    }
}

wire! {
    /// EVENT_AVAIL.
    pub struct EventAvail {
        /// Virtqueue index.
        pub index: U32,
        /// Bits 0..30: next available offset; bit 31: wrap counter (packed queues; 0 here).
        pub next_offset_wrap: U32,
    }
}

wire! {
    /// EVENT_CONFIG: followed by `size` configuration bytes (0 here).
    pub struct EventConfig {
        /// The device status.
        pub status: U32,
        /// Configuration generation.
        pub generation: U32,
        /// Offset of the bytes that follow.
        pub offset: U32,
        /// Bytes that follow.
        pub size: U32,
    }
}

wire! {
    /// staticbus extension: the payload of a response with [`TYPE_ERROR`].
    pub struct ErrorResp {
        /// One of [`error`].
        pub code: U32,
    }
}

/// Feature blocks a GET_DEV_FEATURES response or SET_DRV_FEATURES request can carry.
pub const MAX_FEATURE_BLOCKS: usize = (PAYLOAD_MAX - core::mem::size_of::<Features>()) / 4;
/// Configuration bytes one GET_CONFIG or SET_CONFIG can carry.
pub const MAX_CONFIG_BYTES: usize = PAYLOAD_MAX - core::mem::size_of::<ConfigData>();

const _: () = {
    assert!(core::mem::size_of::<Header>() == MSG_HEADER);
    assert!(core::mem::size_of::<Vqueue>() == PAYLOAD_MAX);
    assert!(MAX_FEATURE_BLOCKS == 8);
    assert!(MAX_CONFIG_BYTES == 28);
};

/// Why bytes from a ring slot are not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// `msg_size` below the header or above [`MSG_MAX`].
    BadSize(u16),
    /// A payload shorter than its message id needs.
    ShortPayload {
        /// The message id.
        msg_id: u8,
        /// Payload bytes present.
        len: usize,
    },
}

/// A message: up to [`MSG_MAX`] bytes, header first. Built with the constructors, or read
/// from a peer with [`Msg::parse`] (which checks only the header; payload accessors check
/// their own lengths).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    bytes: [u8; MSG_MAX],
}

impl core::fmt::Debug for Msg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Msg")
            .field("ty", &self.ty())
            .field("msg_id", &self.msg_id())
            .field("token", &self.token())
            .field("payload", &self.payload())
            .finish()
    }
}

impl Msg {
    /// A message with this header fields and `payload` (truncated to [`PAYLOAD_MAX`]).
    pub fn new(ty: u8, msg_id: u8, token: u16, payload: &[u8]) -> Msg {
        let n = payload.len().min(PAYLOAD_MAX);
        let header = Header {
            ty,
            msg_id,
            dev_num: U16::new(0),
            token: U16::new(token),
            msg_size: U16::new((MSG_HEADER + n) as u16),
        };
        let mut bytes = [0u8; MSG_MAX];
        bytes[..MSG_HEADER].copy_from_slice(header.as_bytes());
        bytes[MSG_HEADER..MSG_HEADER + n].copy_from_slice(&payload[..n]);
        Msg { bytes }
    }

    /// A message whose payload is `head` followed by `tail`.
    pub fn with<T: IntoBytes + Immutable>(
        ty: u8,
        msg_id: u8,
        token: u16,
        head: &T,
        tail: &[u8],
    ) -> Msg {
        let mut payload = [0u8; PAYLOAD_MAX];
        let h = head.as_bytes();
        let n = h.len().min(PAYLOAD_MAX);
        payload[..n].copy_from_slice(&h[..n]);
        let m = tail.len().min(PAYLOAD_MAX - n);
        payload[n..n + m].copy_from_slice(&tail[..m]);
        Msg::new(ty, msg_id, token, &payload[..n + m])
    }

    /// An error response to `req`.
    pub fn error(req: &Msg, code: u32) -> Msg {
        Msg::with(
            TYPE_RESPONSE | TYPE_ERROR,
            req.msg_id(),
            req.token(),
            &ErrorResp {
                code: U32::new(code),
            },
            &[],
        )
    }

    /// Parses the first [`MSG_MAX`] bytes of a slot copied from a peer: the header must
    /// give a size in `8..=48`; bytes past it are ignored (zeroed in the copy).
    pub fn parse(slot: &[u8; MSG_MAX]) -> Result<Msg, MsgError> {
        let size = u16::from_le_bytes([slot[6], slot[7]]);
        if !(MSG_HEADER..=MSG_MAX).contains(&(size as usize)) {
            return Err(MsgError::BadSize(size));
        }
        let mut bytes = [0u8; MSG_MAX];
        bytes[..size as usize].copy_from_slice(&slot[..size as usize]);
        Ok(Msg { bytes })
    }

    /// The whole message, [`MSG_MAX`] bytes (zero past `msg_size`).
    pub fn as_bytes(&self) -> &[u8; MSG_MAX] {
        &self.bytes
    }

    /// The `type` byte.
    pub fn ty(&self) -> u8 {
        self.bytes[0]
    }

    /// The message id.
    pub fn msg_id(&self) -> u8 {
        self.bytes[1]
    }

    /// The token.
    pub fn token(&self) -> u16 {
        u16::from_le_bytes([self.bytes[4], self.bytes[5]])
    }

    /// True for a response.
    pub fn is_response(&self) -> bool {
        self.ty() & TYPE_RESPONSE != 0
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> Option<u32> {
        if self.ty() & TYPE_ERROR == 0 {
            return None;
        }
        Some(self.head::<ErrorResp>().map_or(0, |e| e.code.get()))
    }

    /// The payload (`msg_size - 8` bytes).
    pub fn payload(&self) -> &[u8] {
        let size = u16::from_le_bytes([self.bytes[6], self.bytes[7]]) as usize;
        &self.bytes[MSG_HEADER..size.clamp(MSG_HEADER, MSG_MAX)]
    }

    /// The payload's leading `T`, if the payload is long enough.
    pub fn head<T: FromBytes + KnownLayout + Immutable + Unaligned>(&self) -> Result<&T, MsgError> {
        T::ref_from_prefix(self.payload())
            .map(|(t, _)| t)
            .map_err(|_| MsgError::ShortPayload {
                msg_id: self.msg_id(),
                len: self.payload().len(),
            })
    }

    /// The payload bytes after the leading `T`.
    pub fn tail<T: KnownLayout>(&self) -> &[u8] {
        let n = core::mem::size_of::<T>();
        self.payload().get(n..).unwrap_or(&[])
    }
}

/// Everything [`Wire`] in this module, in documentation order, with the messages that use
/// each: the source of docs/virtio.md §3.
pub const WIRE_STRUCTS: &[(&str, &[WireField], &str)] = &[
    (Header::NAME, Header::FIELDS, "every message"),
    (
        DeviceInfoResp::NAME,
        DeviceInfoResp::FIELDS,
        "DEVICE_INFO response (request: no payload)",
    ),
    (
        Features::NAME,
        Features::FIELDS,
        "GET_DEV_FEATURES request; its response and SET_DRV_FEATURES request add `num` u32 blocks at 0x08; SET_DRV_FEATURES response: no payload",
    ),
    (ConfigRange::NAME, ConfigRange::FIELDS, "GET_CONFIG request"),
    (
        ConfigData::NAME,
        ConfigData::FIELDS,
        "GET_CONFIG response, SET_CONFIG request and response; `size` data bytes at 0x0c",
    ),
    (
        Status::NAME,
        Status::FIELDS,
        "GET_DEVICE_STATUS response, SET_DEVICE_STATUS request and response",
    ),
    (
        QueueIndex::NAME,
        QueueIndex::FIELDS,
        "GET_VQUEUE and RESET_VQUEUE requests, EVENT_USED; RESET_VQUEUE response: no payload",
    ),
    (
        Vqueue::NAME,
        Vqueue::FIELDS,
        "GET_VQUEUE response, SET_VQUEUE request; SET_VQUEUE response: no payload",
    ),
    (EventAvail::NAME, EventAvail::FIELDS, "EVENT_AVAIL"),
    (
        EventConfig::NAME,
        EventConfig::FIELDS,
        "EVENT_CONFIG (no data bytes follow here)",
    ),
    (
        ErrorResp::NAME,
        ErrorResp::FIELDS,
        "any response with `type` bit 7 set (staticbus)",
    ),
];

/// The message ids with their names, for documentation and tests.
pub const IDS: &[(u8, &str)] = &[
    (id::DEVICE_INFO, "DEVICE_INFO"),
    (id::GET_DEV_FEATURES, "GET_DEV_FEATURES"),
    (id::SET_DRV_FEATURES, "SET_DRV_FEATURES"),
    (id::GET_CONFIG, "GET_CONFIG"),
    (id::SET_CONFIG, "SET_CONFIG"),
    (id::GET_DEVICE_STATUS, "GET_DEVICE_STATUS"),
    (id::SET_DEVICE_STATUS, "SET_DEVICE_STATUS"),
    (id::GET_VQUEUE, "GET_VQUEUE"),
    (id::SET_VQUEUE, "SET_VQUEUE"),
    (id::RESET_VQUEUE, "RESET_VQUEUE"),
    (id::GET_SHM, "GET_SHM"),
    (id::EVENT_CONFIG, "EVENT_CONFIG"),
    (id::EVENT_AVAIL, "EVENT_AVAIL"),
    (id::EVENT_USED, "EVENT_USED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payloads_round_trip() {
        let v = Vqueue {
            index: U32::new(1),
            max_size: U32::new(0),
            size: U32::new(16),
            reserved: U32::new(0),
            descriptor_addr: U64::new(0x7000_1000),
            driver_addr: U64::new(0x7000_1100),
            device_addr: U64::new(0x7000_2000),
        };
        let m = Msg::with(0, id::SET_VQUEUE, 0xbeef, &v, &[]);
        assert_eq!(m.payload().len(), 40);
        assert_eq!(&m.as_bytes()[..8], &[0, 0x0a, 0, 0, 0xef, 0xbe, 48, 0]);
        let back = Msg::parse(m.as_bytes()).unwrap();
        assert_eq!(back.head::<Vqueue>().unwrap(), &v);
        assert_eq!(back.token(), 0xbeef);
        assert!(!back.is_response());
        let e = Msg::error(&back, error::MEMORY);
        assert!(e.is_response());
        assert_eq!(e.error_code(), Some(error::MEMORY));
        assert_eq!(e.msg_id(), id::SET_VQUEUE);
        assert_eq!(back.error_code(), None);
    }

    #[test]
    fn parse_rejects_bad_sizes_and_short_payloads() {
        let mut raw = [0u8; MSG_MAX];
        raw[6] = 7;
        assert_eq!(Msg::parse(&raw), Err(MsgError::BadSize(7)));
        raw[6] = 49;
        assert_eq!(Msg::parse(&raw), Err(MsgError::BadSize(49)));
        raw[6] = 10;
        raw[1] = id::GET_CONFIG;
        raw[20] = 0xff; // past msg_size: dropped
        let m = Msg::parse(&raw).unwrap();
        assert_eq!(m.as_bytes()[20], 0);
        assert_eq!(
            m.head::<ConfigRange>(),
            Err(MsgError::ShortPayload {
                msg_id: id::GET_CONFIG,
                len: 2
            })
        );
        assert!(m.tail::<ConfigRange>().is_empty());
    }

    #[test]
    fn wire_tables_match_the_structs() {
        for (name, fields, _) in WIRE_STRUCTS {
            let mut at = 0;
            for f in *fields {
                assert_eq!(f.offset, at, "{name}.{} is packed", f.name);
                at += f.size;
            }
        }
        assert_eq!(Vqueue::FIELDS[4].offset, 0x10);
    }
}
