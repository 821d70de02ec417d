//! The expander's `[[virtio]]` half: each virtio device becomes one shared region (a node
//! in the frontend and in the backend) and one event-channel pair (frontend end first),
//! checked against the transport's own rules (`staticbus_virtio_msg::devices`).

use super::schema::*;
use super::Builder;
use crate::codes::*;
use crate::model::*;
use staticbus_diag::{Diagnostic, Location};
use staticbus_virtio_msg::devices::{self, FitError};
use std::collections::{HashMap, HashSet};

/// Entries per queue when the description gives none.
pub const DEFAULT_QUEUE_SIZE: u32 = 16;

impl Builder<'_> {
    pub(super) fn virtio(&mut self, desc: &Description) {
        let mut names: HashMap<String, Location> = self
            .sys
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.loc.clone()))
            .collect();
        let mut used_ids: HashSet<String> = self.sys.shm.iter().map(|n| n.id.clone()).collect();
        for v in &desc.virtio {
            let vd = v.get_ref();
            if let Some(i) = &vd.shm_id {
                used_ids.insert(i.get_ref().clone());
            }
        }
        for (vi, v) in desc.virtio.iter().enumerate() {
            let vd = v.get_ref();
            let name = vd.name.get_ref().clone();
            let loc = self.loc(&vd.name);
            if let Some(prev) = names.insert(name.clone(), loc.clone()) {
                self.diags.push(
                    Diagnostic::new(
                        VIRTIO_DUPLICATE,
                        loc.clone(),
                        format!(
                            "`{name}` names two virtio devices, or a channel and a virtio device"
                        ),
                    )
                    .with(prev, "first declared here")
                    .help("give every channel and virtio device a unique name"),
                );
                continue;
            }
            let Some(kind) = devices::kind_named(vd.device.get_ref()) else {
                let known: Vec<&str> = devices::DEVICE_KINDS.iter().map(|k| k.name).collect();
                self.err(
                    VIRTIO_DEVICE,
                    self.loc(&vd.device),
                    format!("unknown virtio device type `{}`", vd.device.get_ref()),
                    &format!("use one of: {}", known.join(", ")),
                );
                continue;
            };
            let queues = vd
                .queues
                .as_ref()
                .map_or(kind.min_queues as u32, |q| *q.get_ref());
            if queues < kind.min_queues as u32 || queues > kind.max_queues as u32 {
                let span = vd.queues.as_ref().map_or(loc.clone(), |q| self.loc(q));
                self.err(
                    VIRTIO_DEVICE,
                    span,
                    format!("a {} device has {queues} queues here", kind.name),
                    &if kind.min_queues == kind.max_queues {
                        format!(
                            "a {} device has exactly {} queues",
                            kind.name, kind.min_queues
                        )
                    } else {
                        format!(
                            "a {} device has {} to {} queues",
                            kind.name, kind.min_queues, kind.max_queues
                        )
                    },
                );
                continue;
            }
            let queue_size = vd
                .queue_size
                .as_ref()
                .map_or(DEFAULT_QUEUE_SIZE, |q| *q.get_ref());
            let size = vd.size.get_ref().0;
            if let Err(e) = devices::fits(size, queues as u16, queue_size) {
                let (span, help) = match e {
                    FitError::QueueSize(_) => (
                        vd.queue_size.as_ref().map_or(loc.clone(), |q| self.loc(q)),
                        "use a power of two: 16, 64, 256, …".to_string(),
                    ),
                    _ => {
                        let min = devices::min_region(queues as u16, queue_size);
                        (
                            self.loc(&vd.size),
                            format!(
                                "use a multiple of 4 KiB of at least {min:#x} ({} KiB) for {queues} queue(s) of {queue_size}",
                                min / 1024
                            ),
                        )
                    }
                };
                self.err(
                    VIRTIO_SIZE,
                    span,
                    format!("virtio device `{name}`: {e}"),
                    &help,
                );
                continue;
            }
            let sd = vd.serve.get_ref();
            let serve = match (sd.builtin, &sd.vhost_user) {
                (Some(true), None) if sd.args.is_none() => {
                    if !kind.builtin {
                        let with: Vec<&str> = devices::DEVICE_KINDS
                            .iter()
                            .filter(|k| k.builtin)
                            .map(|k| k.name)
                            .collect();
                        self.err(
                            VIRTIO_BACKEND,
                            self.loc(&vd.serve),
                            format!("staticbus has no built-in {} device", kind.name),
                            &format!(
                                "serve it with a vhost-user program, or use a device with a built-in backend: {}",
                                with.join(", ")
                            ),
                        );
                        continue;
                    }
                    VirtioServe::Builtin
                }
                (None | Some(false), Some(program)) if !program.is_empty() => {
                    VirtioServe::VhostUser {
                        program: program.clone(),
                        args: sd.args.clone().unwrap_or_default(),
                    }
                }
                _ => {
                    self.err(
                        VIRTIO_BACKEND,
                        self.loc(&vd.serve),
                        "`serve` must be either `{ builtin = true }` or `{ vhost-user = \"program\", args = [...] }`",
                        "write e.g. serve = { builtin = true } or serve = { vhost-user = \"qemu-storage-daemon\", args = [\"--blockdev\", \"…\"] }",
                    );
                    continue;
                }
            };
            let (Some(frontend), Some(backend)) = (
                self.dom_ref(vd.frontend.get_ref(), self.loc(&vd.frontend)),
                self.dom_ref(vd.backend.get_ref(), self.loc(&vd.backend)),
            ) else {
                continue;
            };
            if frontend == backend {
                self.err(
                    VIRTIO_BACKEND,
                    self.loc(&vd.backend),
                    format!(
                        "`{}` is both the frontend and the backend of virtio device `{name}`",
                        vd.backend.get_ref()
                    ),
                    "a virtio device connects two different domains",
                );
                continue;
            }
            let shm_id = match &vd.shm_id {
                Some(i) => i.get_ref().clone(),
                None => {
                    let mut cand = format!("virtio-{name}");
                    if cand.len() >= staticbus_abi::dt::MAX_SHM_ID_LENGTH {
                        cand = format!("sb-vio{vi}");
                    }
                    let mut n = 0;
                    while used_ids.contains(&cand) {
                        n += 1;
                        cand = format!("sb-vio{vi}-{n}");
                    }
                    cand
                }
            };
            used_ids.insert(shm_id.clone());
            let mut shm = Vec::new();
            for d in [frontend, backend] {
                shm.push(self.sys.shm.len());
                self.given.guest.push(None);
                self.sys.shm.push(ShmNode {
                    domain: d,
                    id: shm_id.clone(),
                    id_loc: vd
                        .shm_id
                        .as_ref()
                        .map(|i| self.loc(i))
                        .unwrap_or(loc.clone()),
                    host: None,
                    guest: 0,
                    size,
                    role: None,
                    loc: loc.clone(),
                    mem_loc: loc.clone(),
                    role_loc: loc.clone(),
                    channel: None,
                });
            }
            let evtchn = self.sys.evtchns.len();
            let end = |domain| EvtchnEnd {
                domain,
                port: 0,
                loc: loc.clone(),
                port_loc: loc.clone(),
            };
            self.sys.evtchns.push(EvtchnPair {
                first: end(frontend),
                second: end(backend),
                channel: None,
            });
            self.given.ports.push((evtchn, true, None));
            self.given.ports.push((evtchn, false, None));
            self.sys.virtio.push(VirtioDevice {
                name,
                loc,
                device: kind.name.to_string(),
                device_id: kind.id,
                frontend,
                backend,
                queues: queues as u16,
                queue_size,
                size,
                serve,
                shm_id,
                shm,
                evtchn,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read_description, Overrides};
    use crate::model::{System, VirtioServe};
    use staticbus_diag::{Diagnostics, FileId};
    use std::path::Path;

    const BASE: &str = r#"
        [target]
        static-shm = true
        [platform]
        ram = [{ base = 0x4000_0000, size = "1GiB" }]
        shm-pool = { base = 0x7000_0000, size = "16MiB" }
        [[domain]]
        name = "app"
        memory = "16MiB"
        kernel = { size = 0x1000 }
        [[domain]]
        name = "storage"
        memory = "16MiB"
        kernel = { size = 0x1000 }
        [[channel]]
        name = "logs"
        protocol = "queue"
        from = "app"
        to = "storage"
        size = "4KiB"
    "#;

    fn read(virtio: &str) -> (Option<System>, Diagnostics) {
        let text = format!("{BASE}\n{virtio}");
        read_description(FileId(0), &text, "t", Path::new("."), &Overrides::default())
    }

    fn only_code(virtio: &str) -> (&'static str, String) {
        let (sys, d) = read(virtio);
        assert!(sys.is_none(), "accepted: {virtio}");
        let codes = d.codes();
        assert_eq!(codes.len(), 1, "{codes:?}");
        let msg = d
            .iter()
            .next()
            .map(|x| format!("{x:?}"))
            .unwrap_or_default();
        (codes[0], msg)
    }

    #[test]
    fn a_device_becomes_a_region_and_an_event_pair() {
        let (sys, d) = read(
            r#"
            [[virtio]]
            name = "disk"
            device = "blk"
            frontend = "app"
            backend = "storage"
            queue-size = 16
            size = "128KiB"
            serve = { builtin = true }
            [[virtio]]
            name = "rng0"
            device = "rng"
            frontend = "app"
            backend = "storage"
            size = "128KiB"
            serve = { vhost-user = "vhost-device-rng", args = ["--socket-path", "/tmp/rng.sock"] }
            "#,
        );
        let sys = sys.unwrap_or_else(|| panic!("{d:?}"));
        assert_eq!(sys.virtio.len(), 2);
        let disk = &sys.virtio[0];
        assert_eq!((disk.device_id, disk.queues, disk.queue_size), (2, 1, 16));
        assert_eq!(disk.shm_id, "virtio-disk");
        assert_eq!(disk.serve, VirtioServe::Builtin);
        let (f, b) = (&sys.shm[disk.shm[0]], &sys.shm[disk.shm[1]]);
        assert_eq!((f.domain, b.domain), (disk.frontend, disk.backend));
        assert_eq!((f.size, f.id.as_str()), (0x20000, "virtio-disk"));
        assert_eq!(f.host, b.host, "one region: the same host range");
        assert!(f.guest != 0 && b.guest != 0, "guest addresses allocated");
        let pair = &sys.evtchns[disk.evtchn];
        assert_eq!(pair.first.domain, disk.frontend, "the frontend's end first");
        assert_eq!(pair.second.domain, disk.backend);
        assert!(
            pair.first.port != 0 && pair.second.port != 0,
            "ports allocated"
        );
        let rng = &sys.virtio[1];
        assert_eq!(rng.shm_id, "virtio-rng0");
        assert_eq!(
            rng.serve,
            VirtioServe::VhostUser {
                program: "vhost-device-rng".into(),
                args: vec!["--socket-path".into(), "/tmp/rng.sock".into()]
            }
        );
        assert_ne!(sys.evtchns[rng.evtchn].first.port, pair.first.port);

        // Both domains' manifests carry both devices, each with this side's role, region
        // address and port.
        use staticbus_manifest::{owned::VirtioServe as Serve, VirtioRole};
        let ms = crate::manifest::manifests(&sys);
        let (app, storage) = (&ms[disk.frontend], &ms[disk.backend]);
        assert_eq!((app.virtio.len(), storage.virtio.len()), (2, 2));
        for (m, role, node, me, other, peer) in [
            (
                app,
                VirtioRole::Frontend,
                f,
                &pair.first,
                &pair.second,
                "storage",
            ),
            (
                storage,
                VirtioRole::Backend,
                b,
                &pair.second,
                &pair.first,
                "app",
            ),
        ] {
            let v = &m.virtio[0];
            assert_eq!(
                (v.name.as_str(), v.device.as_str(), v.role),
                ("disk", "blk", role)
            );
            assert_eq!((v.device_id, v.queues, v.queue_size), (2, 1, 16));
            assert_eq!(
                (v.shm_id.as_str(), v.guest_addr, v.size),
                ("virtio-disk", node.guest, 0x20000)
            );
            assert_eq!((v.local_port, v.remote_port), (me.port, other.port));
            assert_eq!(v.peer, peer);
            assert_eq!(v.serve, Serve::Builtin);
            assert!(m.regions.iter().any(|r| r.shm_id == "virtio-disk"));
            assert!(m.evtchns.iter().any(|e| e.local_port == me.port));
            assert_eq!(m.virtio[1].name, "rng0");
        }
        assert_eq!(
            storage.virtio[1].serve,
            Serve::VhostUser {
                program: "vhost-device-rng".into(),
                args: vec!["--socket-path".into(), "/tmp/rng.sock".into()]
            }
        );
    }

    #[test]
    fn bad_devices_are_refused_with_their_codes() {
        let dev = |extra: &str| {
            format!(
                "[[virtio]]\nname = \"d\"\nfrontend = \"app\"\nbackend = \"storage\"\n{extra}\n"
            )
        };
        let cases = [
            (
                dev("device = \"blk\"\nsize = \"128KiB\"\nserve = { builtin = true }\nname2 = 1"),
                "SB0501",
                "unknown field `name2`",
            ),
            (
                "[[virtio]]\nname = \"logs\"\ndevice = \"blk\"\nfrontend = \"app\"\nbackend = \"storage\"\nsize = \"128KiB\"\nserve = { builtin = true }".to_string(),
                "SB0510",
                "a channel and a virtio device",
            ),
            (
                dev("device = \"floppy\"\nsize = \"128KiB\"\nserve = { builtin = true }"),
                "SB0511",
                "unknown virtio device type `floppy`",
            ),
            (
                dev("device = \"console\"\nqueues = 1\nsize = \"128KiB\"\nserve = { builtin = true }"),
                "SB0511",
                "exactly 2 queues",
            ),
            (
                dev("device = \"blk\"\nqueue-size = 24\nsize = \"128KiB\"\nserve = { builtin = true }"),
                "SB0512",
                "queue size 24",
            ),
            (
                dev("device = \"blk\"\nqueue-size = 256\nsize = \"64KiB\"\nserve = { builtin = true }"),
                "SB0512",
                "at least 0x104000 (1040 KiB)",
            ),
            (
                dev("device = \"blk\"\nsize = \"130000\"\nserve = { builtin = true }"),
                "SB0512",
                "not a multiple",
            ),
            (
                dev("device = \"net\"\nsize = \"256KiB\"\nserve = { builtin = true }"),
                "SB0513",
                "no built-in net device",
            ),
            (
                dev("device = \"blk\"\nsize = \"128KiB\"\nserve = { builtin = true, vhost-user = \"x\" }"),
                "SB0513",
                "either",
            ),
            (
                dev("device = \"blk\"\nsize = \"128KiB\"\nserve = {}"),
                "SB0513",
                "either",
            ),
            (
                "[[virtio]]\nname = \"d\"\ndevice = \"blk\"\nfrontend = \"app\"\nbackend = \"app\"\nsize = \"128KiB\"\nserve = { builtin = true }".to_string(),
                "SB0513",
                "both the frontend and the backend",
            ),
            (
                "[[virtio]]\nname = \"d\"\ndevice = \"blk\"\nfrontend = \"app\"\nbackend = \"nas\"\nsize = \"128KiB\"\nserve = { builtin = true }".to_string(),
                "SB0502",
                "no domain is named `nas`",
            ),
        ];
        for (text, code, words) in cases {
            let (got, msg) = only_code(&text);
            assert_eq!(got, code, "{text}\n{msg}");
            assert!(msg.contains(words), "{code}: `{words}` not in {msg}");
        }
    }
}
