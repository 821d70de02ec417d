//! The Rust emitter: a manifest as a source file defining `pub const MANIFEST:
//! staticbus_manifest::Manifest`.

use super::*;
use crate::manifest::{
    ChannelEntry, DomainManifest, EvtchnEntry, PeerEntry, RegionEntry, VirtioEntry,
    VirtioServeEntry,
};
use staticbus_abi::domid::DOMID_IO;
use std::fmt::Write;

/// The manifest as a Rust source file defining
/// `pub const MANIFEST: staticbus_manifest::Manifest`, for a guest crate that depends on
/// `staticbus-manifest` to `include!`. Strings are written with Rust's own escaping,
/// addresses and sizes as hex literals, in rustfmt's layout.
pub fn to_rust(m: &DomainManifest) -> String {
    const K: &str = "staticbus_manifest";
    let mut w = RustWriter {
        out: String::with_capacity(rust_capacity(m)),
    };
    let o = &mut w.out;
    let _ = writeln!(o, "// {HEADER}");
    let _ = writeln!(
        o,
        "// system {:?}, domain {:?} (domid {}), Xen {:?}",
        m.system, m.domain, m.domid, m.xen
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "/// The staticbus manifest of domain {:?} in system {:?}.",
        m.domain, m.system
    );
    let _ = writeln!(o, "pub const MANIFEST: {K}::Manifest = {K}::Manifest {{");
    w.num(1, "format_version", m.format_version.into());
    w.string(1, "system", &m.system);
    w.string(1, "xen", &m.xen);
    w.string(1, "domain", &m.domain);
    w.num(1, "domid", m.domid.into());
    let channel = "staticbus_manifest::Channel";
    w.list(1, "channels", channel, &m.channels, rust_channel);
    let region = "staticbus_manifest::Region";
    w.list(1, "regions", region, &m.regions, rust_region);
    let evtchn = "staticbus_manifest::Evtchn";
    w.list(1, "evtchns", evtchn, &m.evtchns, rust_evtchn);
    let virtio = "staticbus_manifest::Virtio";
    w.list(1, "virtio", virtio, &m.virtio, rust_virtio);
    w.out.push_str("};\n");
    w.out
}

/// The fields of a `staticbus_manifest::Channel`.
pub(super) fn rust_channel(w: &mut RustWriter, i: usize, c: &ChannelEntry) {
    w.string(i, "name", &c.name);
    w.field(i, "protocol", |o| {
        o.push_str("staticbus_manifest::Protocol::");
        push_variant(o, c.protocol.as_str());
    });
    w.field(i, "role", |o| {
        o.push_str("staticbus_manifest::Role::");
        push_variant(o, c.role.as_str());
    });
    w.string(i, "shm_id", &c.shm_id);
    w.field(i, "guest_addr", |o| push_rust_hex(o, c.guest_addr));
    w.field(i, "size", |o| push_rust_hex(o, c.size));
    w.num(i, "index", c.index.into());
    w.num(i, "writers", c.writers.into());
    w.num(i, "readers", c.readers.into());
    for (name, v) in [("slot_size", c.slot_size), ("value_size", c.value_size)] {
        w.field(i, name, |o| match v {
            Some(v) => {
                o.push_str("Some(");
                push_rust_hex(o, v.into());
                o.push(')');
            }
            None => o.push_str("None"),
        });
    }
    let peer = "staticbus_manifest::Peer";
    w.list(i, "peers", peer, &c.peers, rust_peer);
}

/// The fields of a `staticbus_manifest::Peer`.
pub(super) fn rust_peer(w: &mut RustWriter, i: usize, p: &PeerEntry) {
    w.string(i, "domain", &p.domain);
    w.num(i, "domid", p.domid.into());
    w.field(i, "role", |o| {
        o.push_str("staticbus_manifest::Role::");
        push_variant(o, p.role.as_str());
    });
    w.num(i, "local_port", p.local_port.into());
    w.num(i, "remote_port", p.remote_port.into());
}

/// The fields of a `staticbus_manifest::Region`.
pub(super) fn rust_region(w: &mut RustWriter, i: usize, r: &RegionEntry) {
    w.string(i, "shm_id", &r.shm_id);
    w.field(i, "guest_addr", |o| push_rust_hex(o, r.guest_addr));
    w.field(i, "size", |o| push_rust_hex(o, r.size));
    w.field(i, "host_addr", |o| match r.host_addr {
        Some(a) => {
            o.push_str("Some(");
            push_rust_hex(o, a);
            o.push(')');
        }
        None => o.push_str("None"),
    });
    w.field(i, "role", |o| match r.role {
        None => o.push_str("None"),
        Some(s) => {
            o.push_str("Some(staticbus_manifest::ShmRole::");
            push_variant(o, s.as_str());
            o.push(')');
        }
    });
    w.string(i, "owner", &r.owner);
    w.field(i, "owner_domid", |o| {
        if r.owner_domid == DOMID_IO {
            o.push_str("staticbus_manifest::DOMID_IO");
        } else {
            push_dec(o, r.owner_domid.into());
        }
    });
    w.field(i, "channel", |o| push_rust_opt_str(o, &r.channel));
}

/// The fields of a `staticbus_manifest::Evtchn`.
pub(super) fn rust_evtchn(w: &mut RustWriter, i: usize, e: &EvtchnEntry) {
    w.num(i, "local_port", e.local_port.into());
    w.string(i, "remote_domain", &e.remote_domain);
    w.num(i, "remote_domid", e.remote_domid.into());
    w.num(i, "remote_port", e.remote_port.into());
    let pending = if e.initially_pending { "true" } else { "false" };
    w.field(i, "initially_pending", |o| o.push_str(pending));
    w.field(i, "channel", |o| push_rust_opt_str(o, &e.channel));
}

/// The fields of a `staticbus_manifest::Virtio`.
pub(super) fn rust_virtio(w: &mut RustWriter, i: usize, v: &VirtioEntry) {
    w.string(i, "name", &v.name);
    w.string(i, "device", &v.device);
    w.num(i, "device_id", v.device_id.into());
    w.field(i, "role", |o| {
        o.push_str("staticbus_manifest::VirtioRole::");
        push_variant(o, v.role.as_str());
    });
    w.num(i, "queues", v.queues.into());
    w.num(i, "queue_size", v.queue_size.into());
    w.string(i, "shm_id", &v.shm_id);
    w.field(i, "guest_addr", |o| push_rust_hex(o, v.guest_addr));
    w.field(i, "size", |o| push_rust_hex(o, v.size));
    w.string(i, "peer", &v.peer);
    w.num(i, "peer_domid", v.peer_domid.into());
    w.num(i, "local_port", v.local_port.into());
    w.num(i, "remote_port", v.remote_port.into());
    match &v.serve {
        VirtioServeEntry::Builtin => w.field(i, "serve", |o| {
            o.push_str("staticbus_manifest::VirtioServe::Builtin");
        }),
        VirtioServeEntry::VhostUser { program, args } => {
            w.indent(i);
            w.out
                .push_str("serve: staticbus_manifest::VirtioServe::VhostUser {\n");
            w.string(i + 1, "program", program);
            w.field(i + 1, "args", |o| {
                o.push_str("&[");
                for (k, a) in args.iter().enumerate() {
                    if k > 0 {
                        o.push_str(", ");
                    }
                    push_rust_str(o, a);
                }
                o.push(']');
            });
            w.indent(i);
            w.out.push_str("},\n");
        }
    }
}

/// About the size of [`to_rust`] (a little more for typical names).
pub(super) fn rust_capacity(m: &DomainManifest) -> usize {
    let peers = |c: &ChannelEntry| -> usize { c.peers.iter().map(|p| 200 + p.domain.len()).sum() };
    let channels: usize = m
        .channels
        .iter()
        .map(|c| 420 + 2 * c.name.len() + peers(c))
        .sum();
    let regions: usize = m.regions.iter().map(|r| 340 + 2 * r.shm_id.len()).sum();
    let evtchns: usize = m.evtchns.iter().map(|e| 260 + e.remote_domain.len()).sum();
    let virtio: usize = m
        .virtio
        .iter()
        .map(|v| {
            let serve = match &v.serve {
                VirtioServeEntry::Builtin => 0,
                VirtioServeEntry::VhostUser { program, args } => {
                    120 + program.len() + args.iter().map(|a| a.len() + 4).sum::<usize>()
                }
            };
            520 + v.name.len() + v.shm_id.len() + v.peer.len() + serve
        })
        .sum();
    1024 + channels + regions + evtchns + virtio
}

/// Writes Rust source lines with four-space indentation.
pub(super) struct RustWriter {
    out: String,
}

impl RustWriter {
    /// `name: <value>,` on its own line, the value written by `value`.
    fn field(&mut self, indent: usize, name: &str, value: impl FnOnce(&mut String)) {
        self.indent(indent);
        self.out.push_str(name);
        self.out.push_str(": ");
        value(&mut self.out);
        self.out.push_str(",\n");
    }

    /// `name: <decimal>,`.
    fn num(&mut self, indent: usize, name: &str, v: u64) {
        self.field(indent, name, |o| push_dec(o, v));
    }

    /// `name: "<string>",` with Rust's escaping.
    fn string(&mut self, indent: usize, name: &str, s: &str) {
        self.field(indent, name, |o| push_rust_str(o, s));
    }

    /// `name: &[],`, or the items as `Type { fields }` in rustfmt's layout: one item as
    /// `name: &[Type {` … `}],`, several as `name: &[` `Type {` … `},` … `],`. `fields`
    /// writes an item's fields at the indentation it is given.
    fn list<T>(
        &mut self,
        indent: usize,
        name: &str,
        ty: &str,
        items: &[T],
        mut fields: impl FnMut(&mut Self, usize, &T),
    ) {
        self.indent(indent);
        self.out.push_str(name);
        match items {
            [] => self.out.push_str(": &[],\n"),
            [only] => {
                self.out.push_str(": &[");
                self.out.push_str(ty);
                self.out.push_str(" {\n");
                fields(self, indent + 1, only);
                self.indent(indent);
                self.out.push_str("}],\n");
            }
            _ => {
                self.out.push_str(": &[\n");
                for item in items {
                    self.indent(indent + 1);
                    self.out.push_str(ty);
                    self.out.push_str(" {\n");
                    fields(self, indent + 2, item);
                    self.indent(indent + 1);
                    self.out.push_str("},\n");
                }
                self.indent(indent);
                self.out.push_str("],\n");
            }
        }
    }

    fn indent(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push_str("    ");
        }
    }
}

/// Appends `s` as a Rust string literal, exactly as `{s:?}` writes it.
pub(super) fn push_rust_str(o: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        // Debug escapes nothing here.
        o.push('"');
        o.push_str(s);
        o.push('"');
    } else {
        let _ = write!(o, "{s:?}");
    }
}

/// Appends `None` or `Some("…")`.
pub(super) fn push_rust_opt_str(o: &mut String, s: &Option<String>) {
    match s {
        Some(s) => {
            o.push_str("Some(");
            push_rust_str(o, s);
            o.push(')');
        }
        None => o.push_str("None"),
    }
}

/// The enum variant for a manifest name (`"producer"` → `Producer`).
#[cfg(test)]
pub(super) fn variant(s: &str) -> String {
    let mut o = String::new();
    push_variant(&mut o, s);
    o
}

/// Appends the enum variant for a manifest name (`"producer"` → `Producer`).
pub(super) fn push_variant(o: &mut String, s: &str) {
    let mut c = s.chars();
    if let Some(f) = c.next() {
        o.extend(f.to_uppercase());
        o.push_str(c.as_str());
    }
}

/// A hex literal with `_` every four digits: `0x8000_0000`.
#[cfg(test)]
pub(super) fn rust_hex(v: u64) -> String {
    let mut o = String::new();
    push_rust_hex(&mut o, v);
    o
}

/// Appends [`rust_hex`] of `v`.
pub(super) fn push_rust_hex(o: &mut String, v: u64) {
    o.push_str("0x");
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for k in (0..digits).rev() {
        o.push(char::from(HEX[((v >> (4 * k)) & 0xf) as usize]));
        if k > 0 && k % 4 == 0 {
            o.push('_');
        }
    }
}
