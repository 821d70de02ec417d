//! The vhost-user bridge: a virtio device served by **any unmodified vhost-user backend
//! daemon** (qemu-storage-daemon, rust-vmm's vhost-device-*, …), for a staticbus backend
//! partition running Linux.
//!
//! The bridge is a vhost-user *frontend* (rust-vmm's `vhost` crate, its frontend side). It
//! presents the device to whoever drives it — staticbus's virtio-msg device side through
//! [`msg`], in tests also `virtio-drivers` directly through [`driver`] — as the operations
//! of a virtio transport:
//! device info, features, config space, device status, queue set/reset, "available" and
//! "used" events. It turns them into vhost-user requests:
//!
//! - the daemon's memory table is one [`SharedRegion`]: its fd and offset, mapped at the
//!   frontend's guest-physical base, so the daemon reads and writes the frontend's rings and
//!   buffers in place (no copy);
//! - vring addresses are the frontend's guest-physical addresses, checked to lie inside the
//!   region, passed as addresses in the bridge's own mapping of it (vhost-user's "user
//!   addresses");
//! - kick, call and error notifications are eventfds the bridge owns for the bridge's whole
//!   life, across daemon restarts, so whoever turns them into event-channel notifications
//!   keeps its fds;
//! - every control request has a bounded wait (socket timeouts), a daemon that dies is seen
//!   as [`Error::DaemonGone`] and the device then shows `NEEDS_RESET`; a device reset
//!   (status 0) re-attaches to the daemon's socket, so a restarted daemon carries on.
//!
//! What vhost-user does not say — the device type, the queue count of a daemon without the
//! MQ protocol feature, the largest queue size — comes from [`Options`] (in a system, from
//! the `[[virtio]]` description).

#![cfg(target_os = "linux")]

mod bridge;
mod daemon;
#[cfg(feature = "driver")]
pub mod driver;
pub mod msg;
mod region;
pub mod spec;
pub mod terminal;

pub use bridge::{Bridge, Options, QueueConfig, Stats, Wake};
pub use daemon::Daemon;
pub use region::{SharedRegion, PAGE_SIZE};

use std::path::PathBuf;

/// Virtio device status bits (virtio 1.2 §2.1).
pub mod status {
    /// The guest OS has noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest OS knows how to drive the device.
    pub const DRIVER: u8 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u8 = 4;
    /// The driver has acknowledged the features it understands; negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device has experienced an error from which it cannot recover.
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// Something went wrong in the guest; it has given up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Why a bridge operation failed.
#[derive(Debug)]
pub enum Error {
    /// The shared region cannot be used as given.
    Region {
        /// What is wrong with it.
        why: String,
    },
    /// No connection to the daemon's socket within the connect timeout.
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The last connection error.
        source: std::io::Error,
    },
    /// A vhost-user request failed while the daemon's connection stays up (it refused the
    /// request, answered something invalid or did not answer in time).
    Request {
        /// The vhost-user request, as the specification names it.
        request: &'static str,
        /// What the `vhost` crate reported.
        source: vhost::Error,
    },
    /// The daemon closed its connection (it exited or was killed); the device shows
    /// `DEVICE_NEEDS_RESET` until it is reset, which re-attaches to the socket.
    DaemonGone {
        /// The request or wait that noticed it.
        during: &'static str,
    },
    /// The daemon signalled the vring's error eventfd.
    Vring {
        /// The queue.
        queue: u16,
    },
    /// The driver asked for something the device does not allow (a precise reason).
    Driver {
        /// What and why.
        why: String,
    },
    /// The device needs a reset before it can be used again (an earlier error).
    NeedsReset {
        /// The error that put it there.
        cause: String,
    },
    /// A system call on the bridge's own fds failed.
    Io {
        /// What the bridge was doing.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A wait ran out of time.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: std::time::Duration,
    },
    /// A daemon process could not be started or did not create its socket.
    Daemon {
        /// The program.
        program: String,
        /// What went wrong.
        why: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Region { why } => write!(f, "shared region: {why}"),
            Error::Connect { socket, source } => write!(
                f,
                "cannot connect to the vhost-user socket {}: {source} (is the daemon running and listening there?)",
                socket.display()
            ),
            Error::Request { request, source } => {
                write!(f, "vhost-user request {request} failed: {source}")
            }
            Error::DaemonGone { during } => write!(
                f,
                "the vhost-user daemon closed its connection (during {during}); reset the device to re-attach"
            ),
            Error::Vring { queue } => write!(f, "the daemon reported an error on queue {queue}"),
            Error::Driver { why } => write!(f, "invalid driver request: {why}"),
            Error::NeedsReset { cause } => {
                write!(f, "the device needs a reset (status 0) after: {cause}")
            }
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Timeout { what, after } => write!(f, "{what} did not complete within {after:?}"),
            Error::Daemon { program, why } => write!(f, "daemon {program}: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Request { source, .. } => Some(source),
            _ => None,
        }
    }
}
