//! What a backend needs to serve one `[[virtio]]` device with a vhost-user daemon, taken
//! from the device's entry in the backend domain's manifest: the region, the doorbell
//! port, the bridge's [`Options`] (device type, queues, largest queue size), the
//! configuration size vhost-user does not tell, and the daemon with its arguments
//! (`serve = { vhost-user = …, args = […] }`, [`SOCKET_PLACEHOLDER`] replaced by the socket
//! path the bridge chose).
//!
//! ```
//! use staticbus_guest::manifest::{Virtio, VirtioRole, VirtioServe};
//! use staticbus_vhost_bridge::spec::Spec;
//! # let v = Virtio { name: "rng", device: "rng", device_id: 4, role: VirtioRole::Backend,
//! #   queues: 1, queue_size: 16, shm_id: "virtio-rng", guest_addr: 0x7fe0_0000,
//! #   size: 0x2_0000, peer: "app", peer_domid: 1, local_port: 3, remote_port: 4,
//! #   serve: VirtioServe::VhostUser { program: "vhost-device-rng",
//! #                                   args: &["--socket-path", "{socket}"] } };
//! let spec = Spec::from_virtio(&v, None)?;
//! assert_eq!(spec.daemon_args("/run/x/vhost.sock".as_ref()), ["--socket-path", "/run/x/vhost.sock"]);
//! assert_eq!((spec.options().device_type, spec.options().num_queues), (4, 1));
//! # Ok::<(), String>(())
//! ```

use std::path::{Path, PathBuf};

use staticbus_guest::manifest::{Virtio, VirtioRole, VirtioServe};

use crate::Options;

/// The word of a daemon argument that is replaced by the socket path the bridge chose
/// (anywhere in the argument: `addr.path={socket}` works).
pub const SOCKET_PLACEHOLDER: &str = "{socket}";

/// The largest configuration space the bridge serves (`MsgBackend::new`).
pub const MAX_CONFIG_SIZE: u32 = 256;

/// The configuration-space size of the device types the bridge knows (vhost-user does
/// not say it; virtio 1.2 §5): entropy has none, block 60 bytes (up to
/// `write_zeroes_may_unmap`), console 12. Others need it given.
pub fn config_size(device: &str) -> Option<u32> {
    match device {
        "rng" => Some(0),
        "blk" => Some(60),
        "console" => Some(12),
        _ => None,
    }
}

/// One virtio device served by a daemon (from the manifest's `[[virtio]]` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The device's name.
    pub name: String,
    /// The device's region (`xen,shm-id`).
    pub shm_id: String,
    /// The frontend's domain.
    pub peer: String,
    /// This domain's port of the device's event channel.
    pub port: u32,
    /// Device type name (`devices::DEVICE_KINDS`).
    pub device: String,
    /// Virtio device id.
    pub device_id: u32,
    /// Queues.
    pub queues: u16,
    /// Largest queue size offered.
    pub queue_size: u16,
    /// Configuration-space bytes.
    pub config_size: u32,
    /// The daemon, as the description names it.
    pub daemon: PathBuf,
    /// Its arguments; [`SOCKET_PLACEHOLDER`] is replaced by the socket path.
    pub daemon_args: Vec<String>,
}

impl Spec {
    /// The backend side of `[[virtio]]` device `v` (this domain's manifest entry), which
    /// must be served by a vhost-user program; `config` overrides the size
    /// [`config_size`] knows for its device type (and is required for the others).
    pub fn from_virtio(v: &Virtio, config: Option<u32>) -> Result<Spec, String> {
        if v.role != VirtioRole::Backend {
            return Err(format!(
                "this domain is the {} of virtio device `{}`, not its backend",
                v.role, v.name
            ));
        }
        let VirtioServe::VhostUser { program, args } = v.serve else {
            return Err(format!(
                "virtio device `{}` is served by staticbus's built-in device \
                 (serve = {{ builtin = true }}), not by a vhost-user daemon",
                v.name
            ));
        };
        let config_size = match (config, config_size(v.device)) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => {
                return Err(format!(
                    "virtio device `{}`: give the configuration size of a {} device \
                     (config-size=BYTES)",
                    v.name, v.device
                ))
            }
        };
        if config_size > MAX_CONFIG_SIZE {
            return Err(format!(
                "configuration size {config_size}: at most {MAX_CONFIG_SIZE}"
            ));
        }
        let queue_size = u16::try_from(v.queue_size)
            .map_err(|_| format!("queue size {} over 65535", v.queue_size))?;
        Ok(Spec {
            name: v.name.to_string(),
            shm_id: v.shm_id.to_string(),
            peer: v.peer.to_string(),
            port: v.local_port,
            device: v.device.to_string(),
            device_id: v.device_id,
            queues: v.queues,
            queue_size,
            config_size,
            daemon: PathBuf::from(program),
            daemon_args: args.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// The daemon's arguments with [`SOCKET_PLACEHOLDER`] replaced by `socket`.
    pub fn daemon_args(&self, socket: &Path) -> Vec<String> {
        let s = socket.to_string_lossy();
        self.daemon_args
            .iter()
            .map(|a| a.replace(SOCKET_PLACEHOLDER, &s))
            .collect()
    }

    /// The bridge's options for the device: its type, queues and largest queue size
    /// (timeouts [`Options::new`]'s).
    pub fn options(&self) -> Options {
        let mut o = Options::new(self.device_id, self.queues);
        o.max_queue_size = self.queue_size;
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: Virtio = Virtio {
        name: "disk",
        device: "blk",
        device_id: 2,
        role: VirtioRole::Backend,
        queues: 1,
        queue_size: 16,
        shm_id: "virtio-disk",
        guest_addr: 0x7fe0_0000,
        size: 0x2_0000,
        peer: "app",
        peer_domid: 2,
        local_port: 3,
        remote_port: 4,
        serve: VirtioServe::VhostUser {
            program: "qemu-storage-daemon",
            args: &[
                "--export",
                "type=vhost-user-blk,addr.path={socket},writable=on",
            ],
        },
    };

    #[test]
    fn a_spec_from_the_manifest_entry() {
        let s = Spec::from_virtio(&DISK, None).unwrap();
        assert_eq!(
            (s.device_id, s.queues, s.queue_size, s.config_size, s.port),
            (2, 1, 16, 60, 3)
        );
        assert_eq!(s.daemon, Path::new("qemu-storage-daemon"));
        // The placeholder is replaced inside an argument too.
        assert_eq!(
            s.daemon_args(Path::new("/run/x/blk.sock")),
            [
                "--export",
                "type=vhost-user-blk,addr.path=/run/x/blk.sock,writable=on"
            ]
        );
        let o = s.options();
        assert_eq!((o.device_type, o.num_queues, o.max_queue_size), (2, 1, 16));
    }

    #[test]
    fn what_a_spec_refuses() {
        let front = Virtio {
            role: VirtioRole::Frontend,
            ..DISK
        };
        assert_eq!(
            Spec::from_virtio(&front, None).unwrap_err(),
            "this domain is the frontend of virtio device `disk`, not its backend"
        );
        let builtin = Virtio {
            serve: VirtioServe::Builtin,
            ..DISK
        };
        assert!(Spec::from_virtio(&builtin, None)
            .unwrap_err()
            .contains("built-in device"));
        let net = Virtio {
            device: "net",
            ..DISK
        };
        assert!(Spec::from_virtio(&net, None)
            .unwrap_err()
            .contains("configuration size of a net device"));
        assert_eq!(Spec::from_virtio(&net, Some(12)).unwrap().config_size, 12);
        assert_eq!(
            Spec::from_virtio(&DISK, Some(257)).unwrap_err(),
            "configuration size 257: at most 256"
        );
        let big = Virtio {
            queue_size: 65536,
            ..DISK
        };
        assert_eq!(
            Spec::from_virtio(&big, None).unwrap_err(),
            "queue size 65536 over 65535"
        );
    }
}
