//! Opening a virtio device by name: the `[[virtio]]` entry of the domain's manifest gives
//! the region, the doorbell port and the device's parameters; [`open`] checks that the
//! name is a virtio device, that this domain is on the side the caller asks for, and that
//! the platform maps the region, and hands back what [`Link::attach`](crate::frontend::Link::attach)
//! (frontend) or [`DeviceTransport::attach`](crate::device::DeviceTransport::attach)
//! (backend) needs.
//!
//! ```no_run
//! # fn demo<P: staticbus_guest::Platform>(platform: &P) -> Result<(), staticbus_virtio_msg::open::OpenError<'_>> {
//! use staticbus_guest::manifest::VirtioRole;
//! let dev = staticbus_virtio_msg::open::open(platform, "disk", VirtioRole::Frontend)?;
//! // Link::attach(dev.region, platform.events(), dev.port, dev.guest_base) …
//! # let _ = dev; Ok(()) }
//! ```

use core::fmt;
use staticbus_guest::manifest::{Manifest, Virtio, VirtioRole};
use staticbus_guest::{Platform, Region};

/// A virtio device of this domain, opened.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    /// The device's manifest entry (name, type, queues, queue size, peer, how it is
    /// served).
    pub device: &'static Virtio,
    /// The device's region, mapped.
    pub region: Region,
    /// This domain's doorbell port.
    pub port: u32,
    /// This domain's guest-physical address of the region (what a frontend hands
    /// `Link::attach` and `DmaPool::attach`).
    pub guest_base: u64,
}

/// Why a device could not be opened.
#[derive(Clone, Copy, Debug)]
pub enum OpenError<'m> {
    /// The manifest has no virtio device of this name.
    NotFound {
        /// The name asked for.
        name: &'m str,
        /// The domain's manifest (to list what it has).
        manifest: &'m Manifest,
    },
    /// The device exists, but this domain is on the other side.
    WrongRole {
        /// The device.
        device: &'static Virtio,
        /// The side the caller wanted.
        want: VirtioRole,
    },
    /// The platform cannot map the device's region.
    NoRegion {
        /// The device.
        device: &'static Virtio,
    },
    /// The mapping's length is not the device's region size.
    SizeMismatch {
        /// The device.
        device: &'static Virtio,
        /// The length of the mapping.
        mapped: usize,
    },
}

impl fmt::Display for OpenError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OpenError::NotFound { name, manifest } => {
                write!(
                    f,
                    "no virtio device `{name}` in the manifest of domain `{}`",
                    manifest.domain
                )?;
                if manifest.channel(name).is_some() {
                    write!(
                        f,
                        " (`{name}` is a channel: open it with a channel endpoint)"
                    )?;
                }
                if manifest.virtio.is_empty() {
                    f.write_str("; it has no virtio devices (declare one with [[virtio]])")
                } else {
                    f.write_str("; its virtio devices:")?;
                    for v in manifest.virtio {
                        write!(f, " `{}` ({} {})", v.name, v.device, v.role)?;
                    }
                    Ok(())
                }
            }
            OpenError::WrongRole { device, want } => write!(
                f,
                "this domain is the {} of virtio device `{}`, not its {want} \
                 (the description names `{}` as the other side)",
                device.role, device.name, device.peer
            ),
            OpenError::NoRegion { device } => write!(
                f,
                "virtio device `{}`: the platform cannot map its region `{}` \
                 ({:#x} bytes at {:#x})",
                device.name, device.shm_id, device.size, device.guest_addr
            ),
            OpenError::SizeMismatch { device, mapped } => write!(
                f,
                "virtio device `{}`: region `{}` is mapped with {mapped:#x} bytes, \
                 the manifest says {:#x}",
                device.name, device.shm_id, device.size
            ),
        }
    }
}

impl core::error::Error for OpenError<'_> {}

/// Opens virtio device `name` of this domain's manifest, on side `role`.
pub fn open<'p, P: Platform + ?Sized>(
    platform: &'p P,
    name: &'p str,
    role: VirtioRole,
) -> Result<Opened, OpenError<'p>> {
    let manifest = platform.manifest();
    let device = lookup(manifest, name, role)?;
    let region = platform
        .region(device.shm_id)
        .ok_or(OpenError::NoRegion { device })?;
    if region.len() as u64 != device.size {
        return Err(OpenError::SizeMismatch {
            device,
            mapped: region.len(),
        });
    }
    Ok(Opened {
        device,
        region,
        port: device.local_port,
        guest_base: device.guest_addr,
    })
}

/// The manifest entry of virtio device `name`, checked to have this domain on side
/// `role` (no region is mapped).
pub fn lookup<'m>(
    manifest: &'m Manifest,
    name: &'m str,
    role: VirtioRole,
) -> Result<&'static Virtio, OpenError<'m>> {
    let device = manifest
        .virtio_device(name)
        .ok_or(OpenError::NotFound { name, manifest })?;
    if device.role != role {
        return Err(OpenError::WrongRole { device, want: role });
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_guest::manifest::{Channel, Protocol, Role, VirtioServe, FORMAT_VERSION};
    use std::string::ToString;

    const DISK: Virtio = Virtio {
        name: "disk",
        device: "blk",
        device_id: 2,
        role: VirtioRole::Frontend,
        queues: 1,
        queue_size: 16,
        shm_id: "virtio-disk",
        guest_addr: 0x7fc0_0000,
        size: 0x2_0000,
        peer: "storage",
        peer_domid: 2,
        local_port: 5,
        remote_port: 6,
        serve: VirtioServe::Builtin,
    };

    static M: Manifest = Manifest {
        format_version: FORMAT_VERSION,
        system: "s",
        xen: "4.20",
        domain: "app",
        domid: 1,
        channels: &[Channel {
            name: "logs",
            protocol: Protocol::Queue,
            role: Role::Producer,
            shm_id: "logs",
            guest_addr: 0x7fd0_0000,
            size: 0x1000,
            index: 0,
            writers: 1,
            readers: 1,
            slot_size: None,
            value_size: None,
            peers: &[],
        }],
        regions: &[],
        evtchns: &[],
        virtio: &[DISK],
    };

    #[test]
    fn a_device_is_found_on_its_side_only() {
        let d = lookup(&M, "disk", VirtioRole::Frontend).unwrap();
        assert_eq!((d.local_port, d.guest_addr), (5, 0x7fc0_0000));
        let e = lookup(&M, "disk", VirtioRole::Backend).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this domain is the frontend of virtio device `disk`, not its backend \
             (the description names `storage` as the other side)"
        );
    }

    #[test]
    fn a_missing_name_lists_the_devices_and_spots_a_channel() {
        let e = lookup(&M, "logs", VirtioRole::Frontend)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "no virtio device `logs` in the manifest of domain `app` (`logs` is a channel: \
             open it with a channel endpoint); its virtio devices: `disk` (blk frontend)"
        );
        let empty = Manifest { virtio: &[], ..M };
        let e = lookup(&empty, "disk", VirtioRole::Frontend)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("it has no virtio devices (declare one with [[virtio]])"),
            "{e}"
        );
    }
}
