//! The device-tree emitter: a manifest as a DT fragment (a tree, or its source).

use super::*;
use crate::manifest::{ChannelEntry, DomainManifest};
use staticbus_dt::print::DtsWriter;
use staticbus_dt::{Node, Property, Tree};
use staticbus_manifest::ShmRole;

/// Compatible of the manifest node.
pub const DT_COMPATIBLE: &str = "staticbus,manifest-v1";

/// The manifest as a device-tree fragment, for a guest that reads its configuration from
/// its device tree. The binding (`staticbus,manifest-v1`):
///
/// ```dts
/// / {
///     staticbus {
///         compatible = "staticbus,manifest-v1";
///         format-version = <1>;
///         system = "demo";
///         xen = "4.20";
///         domain = "sensor";
///         domid = <1>;
///
///         channels {
///             #address-cells = <2>;
///             #size-cells = <2>;
///
///             channel@7fe00000 {
///                 reg = <0x0 0x7fe00000 0x0 0x1000>;  // guest address and size of the region
///                 channel-name = "cmd-queue";
///                 protocol = "queue";                  // queue | log | latest | blob
///                 role = "producer";                   // producer | consumer | writer | reader
///                 xen,shm-id = "cmd-queue";
///                 index = <0>;                         // among the writers (readers)
///                 writers = <1>;
///                 readers = <1>;
///                 // One entry per event channel, in the same order (absent if none):
///                 peers = "ctrl-plane";                // peer domain names
///                 peer-domids = <2>;
///                 peer-roles = "consumer";
///                 local-ports = <10>;                  // port to signal the peer on
///                 remote-ports = <11>;
///             };
///         };
///
///         regions {                                    // every region, channels' included
///             #address-cells = <2>;
///             #size-cells = <2>;
///
///             region@7fe00000 {
///                 reg = <0x0 0x7fe00000 0x0 0x1000>;  // guest address and size
///                 xen,shm-id = "cmd-queue";
///                 role = "owner";                      // owner | borrower | none
///                 owner = "sensor";                    // a domain name or "DOMID_IO"
///                 owner-domid = <1>;
///                 host-addr = <0x0 0x80000000>;        // absent: allocated from Xen's heap
///                 channel = "cmd-queue";               // absent: no channel
///             };
///         };
///
///         evtchns {                                    // every port, channels' included
///             #address-cells = <1>;
///             #size-cells = <0>;
///
///             evtchn@a {
///                 reg = <10>;                          // local port
///                 remote-domain = "ctrl-plane";
///                 remote-domid = <2>;
///                 remote-port = <11>;
///                 initially-pending;                   // present: bound second by Xen
///                 channel = "cmd-queue";               // absent: no channel
///             };
///         };
///     };
/// };
/// ```
///
/// Each kind of entry lives in its own container so that unit addresses are meaningful
/// and unique (a channel and its region share a guest address): the unit address is the
/// first `reg` address in lower-case hex, as the device-tree specification asks, and
/// `dtc` compiles the fragment without warnings. Nodes are in manifest order. The three
/// containers are always present, possibly empty; a fourth, `virtio`, is present when the
/// domain has virtio devices: one `virtio@<guest address>` node per device with `reg`,
/// `device-name`, `device`, `device-id`, `role`, `queues`, `queue-size`, `xen,shm-id`,
/// `peer`, `peer-domid`, `local-port`, `remote-port` and either `builtin` (empty) or
/// `vhost-user` and `vhost-user-args`. Only an invalid system (two regions at
/// one guest address, a port listed twice) can repeat a unit address; the later node is
/// then named `channel-2@…` (`-3`, …) so node names stay unique. Channel names are in
/// `channel-name`, not `name`, which `dtc` reserves.
pub fn to_dt_fragment(m: &DomainManifest) -> Tree {
    let mut b = TreeBuilder {
        open: vec![Node::default()],
    };
    write_fragment(m, &mut b);
    Tree {
        root: b.open.swap_remove(0),
        ..Tree::default()
    }
}

/// The fragment of [`to_dt_fragment`] as DTS: exactly `print_dts(&to_dt_fragment(m))`,
/// written directly.
pub fn to_dt_source(m: &DomainManifest) -> String {
    // About the size of the text (a little more for typical names).
    let peers = |c: &ChannelEntry| -> usize { c.peers.iter().map(|p| 120 + p.domain.len()).sum() };
    let channels: usize = m
        .channels
        .iter()
        .map(|c| 240 + 2 * c.name.len() + peers(c))
        .sum();
    let regions: usize = m.regions.iter().map(|r| 230 + 2 * r.shm_id.len()).sum();
    let evtchns: usize = m.evtchns.iter().map(|e| 150 + e.remote_domain.len()).sum();
    let virtio: usize = m
        .virtio
        .iter()
        .map(|v| 400 + 2 * v.name.len() + v.shm_id.len() + v.peer.len())
        .sum();
    let size = 1024 + channels + regions + evtchns + virtio;
    let mut w = DtsWriter::with_capacity(size);
    write_fragment(m, &mut w);
    w.finish()
}

/// Receives the fragment node by node, a node's properties before its children: a
/// [`DtsWriter`] writes it as DTS, a [`TreeBuilder`] builds the [`Tree`]. Both come from
/// [`write_fragment`], so the DTS is the tree's by construction.
pub(super) trait FragmentSink {
    fn begin_node(&mut self, name: &str);
    fn end_node(&mut self);
    fn prop_empty(&mut self, name: &str);
    fn prop_u32s(&mut self, name: &str, cells: &[u32]);
    fn prop_strings(&mut self, name: &str, strings: &[&str]);
}

impl FragmentSink for DtsWriter {
    fn begin_node(&mut self, name: &str) {
        DtsWriter::begin_node(self, name);
    }

    fn end_node(&mut self) {
        DtsWriter::end_node(self);
    }

    fn prop_empty(&mut self, name: &str) {
        DtsWriter::prop_empty(self, name);
    }

    fn prop_u32s(&mut self, name: &str, cells: &[u32]) {
        DtsWriter::prop_u32s(self, name, cells);
    }

    fn prop_strings(&mut self, name: &str, strings: &[&str]) {
        DtsWriter::prop_strings(self, name, strings);
    }
}

/// Builds a tree from [`FragmentSink`] calls.
pub(super) struct TreeBuilder {
    /// The root, then each open node.
    open: Vec<Node>,
}

impl TreeBuilder {
    fn current(&mut self) -> &mut Node {
        self.open.last_mut().expect("the root is always open")
    }
}

impl FragmentSink for TreeBuilder {
    fn begin_node(&mut self, name: &str) {
        self.open.push(Node::new(name));
    }

    fn end_node(&mut self) {
        if self.open.len() > 1 {
            let n = self.open.pop().expect("checked");
            self.current().children.push(n);
        }
    }

    fn prop_empty(&mut self, name: &str) {
        self.current().props.push(Property::empty(name));
    }

    fn prop_u32s(&mut self, name: &str, cells: &[u32]) {
        self.current().props.push(Property::u32s(name, cells));
    }

    fn prop_strings(&mut self, name: &str, strings: &[&str]) {
        self.current().props.push(Property::strings(name, strings));
    }
}

/// The fragment described in [`to_dt_fragment`].
pub(super) fn write_fragment(m: &DomainManifest, out: &mut impl FragmentSink) {
    out.begin_node("staticbus");
    out.prop_strings("compatible", &[DT_COMPATIBLE]);
    out.prop_u32s("format-version", &[m.format_version]);
    out.prop_strings("system", &[&m.system]);
    out.prop_strings("xen", &[&m.xen]);
    out.prop_strings("domain", &[&m.domain]);
    out.prop_u32s("domid", &[m.domid.into()]);

    let mut name = String::new();
    container(out, "channels", 2, 2);
    let mut units = UnitNames::default();
    let (mut strs, mut roles, mut cells) = (Vec::new(), Vec::new(), Vec::new());
    for c in &m.channels {
        units.name(&mut name, "channel", c.guest_addr);
        out.begin_node(&name);
        out.prop_u32s("reg", &reg64(c.guest_addr, c.size));
        out.prop_strings("channel-name", &[&c.name]);
        out.prop_strings("protocol", &[c.protocol.as_str()]);
        out.prop_strings("role", &[c.role.as_str()]);
        out.prop_strings("xen,shm-id", &[&c.shm_id]);
        out.prop_u32s("index", &[c.index]);
        out.prop_u32s("writers", &[c.writers]);
        out.prop_u32s("readers", &[c.readers]);
        if let Some(v) = c.slot_size {
            out.prop_u32s("slot-size", &[v]);
        }
        if let Some(v) = c.value_size {
            out.prop_u32s("value-size", &[v]);
        }
        if !c.peers.is_empty() {
            strs.clear();
            strs.extend(c.peers.iter().map(|p| p.domain.as_str()));
            out.prop_strings("peers", &strs);
            cells.clear();
            cells.extend(c.peers.iter().map(|p| u32::from(p.domid)));
            out.prop_u32s("peer-domids", &cells);
            roles.clear();
            roles.extend(c.peers.iter().map(|p| p.role.as_str()));
            out.prop_strings("peer-roles", &roles);
            cells.clear();
            cells.extend(c.peers.iter().map(|p| p.local_port));
            out.prop_u32s("local-ports", &cells);
            cells.clear();
            cells.extend(c.peers.iter().map(|p| p.remote_port));
            out.prop_u32s("remote-ports", &cells);
        }
        out.end_node();
    }
    out.end_node();

    container(out, "regions", 2, 2);
    let mut units = UnitNames::default();
    for r in &m.regions {
        units.name(&mut name, "region", r.guest_addr);
        out.begin_node(&name);
        out.prop_u32s("reg", &reg64(r.guest_addr, r.size));
        out.prop_strings("xen,shm-id", &[&r.shm_id]);
        out.prop_strings("role", &[ShmRole::name_of(r.role)]);
        out.prop_strings("owner", &[&r.owner]);
        out.prop_u32s("owner-domid", &[r.owner_domid.into()]);
        if let Some(h) = r.host_addr {
            out.prop_u32s("host-addr", &split64(h));
        }
        if let Some(c) = &r.channel {
            out.prop_strings("channel", &[c]);
        }
        out.end_node();
    }
    out.end_node();

    container(out, "evtchns", 1, 0);
    let mut units = UnitNames::default();
    for e in &m.evtchns {
        units.name(&mut name, "evtchn", e.local_port.into());
        out.begin_node(&name);
        out.prop_u32s("reg", &[e.local_port]);
        out.prop_strings("remote-domain", &[&e.remote_domain]);
        out.prop_u32s("remote-domid", &[e.remote_domid.into()]);
        out.prop_u32s("remote-port", &[e.remote_port]);
        if e.initially_pending {
            out.prop_empty("initially-pending");
        }
        if let Some(c) = &e.channel {
            out.prop_strings("channel", &[c]);
        }
        out.end_node();
    }
    out.end_node();

    if !m.virtio.is_empty() {
        container(out, "virtio", 2, 2);
        let mut units = UnitNames::default();
        for v in &m.virtio {
            units.name(&mut name, "virtio", v.guest_addr);
            out.begin_node(&name);
            out.prop_u32s("reg", &reg64(v.guest_addr, v.size));
            out.prop_strings("device-name", &[&v.name]);
            out.prop_strings("device", &[&v.device]);
            out.prop_u32s("device-id", &[v.device_id]);
            out.prop_strings("role", &[v.role.as_str()]);
            out.prop_u32s("queues", &[v.queues.into()]);
            out.prop_u32s("queue-size", &[v.queue_size]);
            out.prop_strings("xen,shm-id", &[&v.shm_id]);
            out.prop_strings("peer", &[&v.peer]);
            out.prop_u32s("peer-domid", &[v.peer_domid.into()]);
            out.prop_u32s("local-port", &[v.local_port]);
            out.prop_u32s("remote-port", &[v.remote_port]);
            match &v.serve {
                crate::manifest::VirtioServeEntry::Builtin => out.prop_empty("builtin"),
                crate::manifest::VirtioServeEntry::VhostUser { program, args } => {
                    out.prop_strings("vhost-user", &[program]);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    out.prop_strings("vhost-user-args", &args);
                }
            }
            out.end_node();
        }
        out.end_node();
    }
    out.end_node();
}

/// Opens a container node with `#address-cells` and `#size-cells`.
pub(super) fn container(
    out: &mut impl FragmentSink,
    name: &str,
    address_cells: u32,
    size_cells: u32,
) {
    out.begin_node(name);
    out.prop_u32s("#address-cells", &[address_cells]);
    out.prop_u32s("#size-cells", &[size_cells]);
}

/// Node names of one container: `kind@addr` for the first node at an address, then
/// `kind-2@addr`, `kind-3@addr`, … for the later ones.
#[derive(Default)]
pub(super) struct UnitNames {
    /// Address → nodes named at it so far.
    seen: rustc_hash::FxHashMap<u64, u32>,
}

impl UnitNames {
    /// Writes the name of the next node at `addr` into `name`.
    fn name(&mut self, name: &mut String, kind: &str, addr: u64) {
        let n = self.seen.entry(addr).or_insert(0);
        *n += 1;
        name.clear();
        name.push_str(kind);
        if *n > 1 {
            name.push('-');
            push_dec(name, (*n).into());
        }
        name.push('@');
        push_hex(name, addr);
    }
}

/// `<hi lo>` of a 64-bit value.
pub(super) fn split64(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

/// The cells of `reg = <addr-hi addr-lo size-hi size-lo>`.
pub(super) fn reg64(addr: u64, size: u64) -> [u32; 4] {
    let [ah, al] = split64(addr);
    let [sh, sl] = split64(size);
    [ah, al, sh, sl]
}
