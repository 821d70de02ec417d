//! The preamble the virtio frontend programs share ([`virtio_blk`](crate::virtio_blk),
//! [`virtio_rng`](crate::virtio_rng), `virtio_console`): choose the device by name, open
//! it (`staticbus_virtio_msg::open`), print where it is, attach to its region waiting on
//! the doorbell until the device side serves it (`Link::attach_waiting`), ask DEVICE_INFO,
//! print what the device side said and check it is the device type the program drives.
//!
//! What it prints, `TAG` being the program's tag (`virtio-rng`, …):
//!
//! ```text
//! TAG: device `NAME`: region `SHM` (0x… bytes at 0x…), port P to PEER   (open_frontend only)
//! TAG: device side up after 1.2ms (epoch E): device id I, vendor 0x…, N queue(s)
//! ```

use crate::args::Args;
use crate::stats::Nanos;
use crate::Clock;
use core::fmt::{self, Write};
use staticbus_guest::manifest::{Manifest, VirtioRole};
use staticbus_guest::{Errno, Platform};
use staticbus_virtio_msg::frontend::{CallError, DeviceInfo, Link, LinkError, LinkWaitError};
use staticbus_virtio_msg::open::{self, OpenError, Opened};

/// The device type a frontend program drives.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The prefix of the program's lines (`virtio-blk`, …).
    pub tag: &'static str,
    /// The virtio device id it drives.
    pub device_id: u32,
    /// The device type in words, with its article (`a block device`, …).
    pub what: &'static str,
}

/// Why the preamble failed. Its messages carry no tag: the program adds its own.
#[derive(Debug)]
pub enum FrontError<'a> {
    /// The device is not in the manifest, or its region or port is unusable.
    Open(OpenError<'a>),
    /// No `device=` and the domain has not exactly one virtio device.
    NoDevice(&'a Manifest),
    /// The region cannot be used.
    Link(LinkError),
    /// Waiting for the device side on the doorbell failed.
    Wait(Errno),
    /// DEVICE_INFO failed.
    Info(CallError),
    /// The device is another type than the program drives.
    WrongDevice {
        /// What the program drives.
        kind: Kind,
        /// The device id the device side (or the manifest) gave.
        got: u32,
    },
}

impl fmt::Display for FrontError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontError::Open(e) => write!(f, "{e}"),
            FrontError::NoDevice(m) => write!(
                f,
                "domain `{}` has {} virtio devices: name one with device=NAME",
                m.domain,
                m.virtio.len()
            ),
            FrontError::Link(e) => write!(f, "attaching to the device: {e}"),
            FrontError::Wait(e) => write!(f, "waiting for the device: {e}"),
            FrontError::Info(e) => write!(f, "DEVICE_INFO: {e}"),
            FrontError::WrongDevice { kind, got } => write!(
                f,
                "the device is not {} (virtio id {}) but virtio id {got}",
                kind.what, kind.device_id
            ),
        }
    }
}

impl<'a> From<OpenError<'a>> for FrontError<'a> {
    fn from(e: OpenError<'a>) -> Self {
        FrontError::Open(e)
    }
}

/// The device named by `device=`; without it `default`, or with no default the domain's
/// only virtio device.
pub fn device_name<'a>(
    args: &Args<'a>,
    m: &'a Manifest,
    default: Option<&'static str>,
) -> Result<&'a str, FrontError<'a>> {
    match (args.get("device"), default) {
        (Some(n), _) => Ok(n),
        (None, Some(d)) => Ok(d),
        (None, None) => match m.virtio {
            [only] => Ok(only.name),
            _ => Err(FrontError::NoDevice(m)),
        },
    }
}

/// A frontend's open and attached device.
pub struct Front<E: staticbus_guest::Events> {
    /// The opened device (manifest entry, region, port, guest address).
    pub dev: Opened,
    /// The link to its device side.
    pub link: Link<E>,
    /// What the device side said in DEVICE_INFO.
    pub info: DeviceInfo,
}

/// The whole preamble: the device named by `device=` (else `default`), opened as this
/// domain's frontend, its line printed, then [`attach`].
pub fn open_frontend<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    default: &'static str,
    kind: Kind,
    out: &mut W,
) -> Result<Front<P::Events<'a>>, FrontError<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let name = device_name(args, platform.manifest(), Some(default))?;
    let dev = open::open(platform, name, VirtioRole::Frontend)?;
    let (shm, peer) = (dev.device.shm_id, dev.device.peer);
    let _ = writeln!(
        out,
        "{}: device `{name}`: region `{shm}` ({:#x} bytes at {:#x}), port {} to {peer}",
        kind.tag,
        dev.region.len(),
        dev.guest_base,
        dev.port
    );
    let (link, info) = attach(platform, clock, &dev, kind, out)?;
    Ok(Front { dev, link, info })
}

/// Attaches to the opened device's region as its frontend, waiting on the doorbell until
/// the device side serves it; asks DEVICE_INFO, prints how long the device side took and
/// what it said, and checks its device id.
pub fn attach<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    dev: &Opened,
    kind: Kind,
    out: &mut W,
) -> Result<(Link<P::Events<'a>>, DeviceInfo), FrontError<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let t_wait = clock.now_ns();
    let link = Link::attach_waiting(dev.region, || platform.events(), dev.port, dev.guest_base)
        .map_err(|e| match e {
            LinkWaitError::Link(e) => FrontError::Link(e),
            LinkWaitError::Wait(e) => FrontError::Wait(e),
        })?;
    let info = link.device_info().map_err(FrontError::Info)?;
    let _ = writeln!(
        out,
        "{}: device side up after {} (epoch {}): device id {}, vendor {:#x}, {} queue(s)",
        kind.tag,
        Nanos(clock.now_ns().saturating_sub(t_wait)),
        link.epoch(),
        info.device_id,
        info.vendor_id,
        info.max_vqs
    );
    if info.device_id != kind.device_id {
        return Err(FrontError::WrongDevice {
            kind,
            got: info.device_id,
        });
    }
    Ok((link, info))
}
