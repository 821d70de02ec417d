//! Manifests for tests: two domains and the channels between them.

use staticbus_manifest::{
    Channel, Evtchn, Manifest, Peer, Protocol, Region, Role, DOMID_IO, FORMAT_VERSION,
};
use std::boxed::Box;
use std::sync::Mutex;
use std::vec::Vec;

/// Every pair [`two_domains`] made: leaked on purpose, and kept reachable from here so a
/// leak checker (Miri's) does not report them.
static MADE: Mutex<Vec<[&'static Manifest; 2]>> = Mutex::new(Vec::new());

/// Domain ids of the two domains [`two_domains`] makes: `a` and `b`.
pub const PAIR_DOMIDS: [u16; 2] = [1, 2];

/// Guest address of channel `i`'s region in [`two_domains`]' manifests.
const GUEST_BASE: u64 = 0x7000_0000;

/// The local port of channel `i` in domain `a` (`10 + i`) and in domain `b` (`50 + i`) of
/// [`two_domains`].
pub const fn pair_ports(i: usize) -> [u32; 2] {
    [10 + i as u32, 50 + i as u32]
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// The slot size [`two_domains`] declares for a `log` channel (a description's
/// `slot-size`).
pub const FAKE_SLOT_SIZE: u32 = 64;
/// The value size [`two_domains`] declares for a `latest` channel (`value-size`).
pub const FAKE_VALUE_SIZE: u32 = 16;

/// The manifests of two domains, `a` (domid 1) and `b` (domid 2), sharing one channel
/// per `(name, protocol, size)` entry: `a` is the producer (queue) or the writer (other
/// protocols), `b` the consumer or reader; the channel's region has the channel's name
/// as `xen,shm-id`; channel `i` uses ports [`pair_ports`]`(i)`, and `b`'s end starts
/// pending (Xen binds `a`'s end first); a `log` channel declares [`FAKE_SLOT_SIZE`], a
/// `latest` one [`FAKE_VALUE_SIZE`]. The manifests are leaked (`'static`), and stay
/// reachable from a static.
pub fn two_domains(channels: &[(&'static str, Protocol, u64)]) -> [&'static Manifest; 2] {
    let from_a: Vec<_> = channels
        .iter()
        .map(|&(name, protocol, size)| (name, protocol, size, 0))
        .collect();
    two_domains_from(&from_a)
}

/// [`two_domains`] with each channel's direction given: `(name, protocol, size, from)`,
/// where domain `from` (0 for `a`, 1 for `b`) is the producer or the writer, the other
/// the consumer or reader. (`b`'s ends still start pending: Xen binds `a`'s first.)
pub fn two_domains_from(
    channels: &[(&'static str, Protocol, u64, usize)],
) -> [&'static Manifest; 2] {
    let names = ["a", "b"];
    let mut out = [None, None];
    for side in 0..2 {
        let other = 1 - side;
        let role = |s: usize, p: Protocol, from: usize| match (s == from, p) {
            (true, Protocol::Queue) => Role::Producer,
            (false, Protocol::Queue) => Role::Consumer,
            (true, _) => Role::Writer,
            (false, _) => Role::Reader,
        };
        let mut chans = Vec::new();
        let mut regions = Vec::new();
        let mut evtchns = Vec::new();
        for (i, &(name, protocol, size, from)) in channels.iter().enumerate() {
            let ports = pair_ports(i);
            let peers = leak(std::vec![Peer {
                domain: names[other],
                domid: PAIR_DOMIDS[other],
                role: role(other, protocol, from),
                local_port: ports[side],
                remote_port: ports[other],
            }]);
            let guest_addr = GUEST_BASE + 0x10_0000 * i as u64;
            chans.push(Channel {
                name,
                protocol,
                role: role(side, protocol, from),
                shm_id: name,
                guest_addr,
                size,
                index: 0,
                writers: 1,
                readers: 1,
                slot_size: (protocol == Protocol::Log).then_some(FAKE_SLOT_SIZE),
                value_size: (protocol == Protocol::Latest).then_some(FAKE_VALUE_SIZE),
                peers,
            });
            regions.push(Region {
                shm_id: name,
                guest_addr,
                size,
                host_addr: None,
                role: None,
                owner: "DOMID_IO",
                owner_domid: DOMID_IO,
                channel: Some(name),
            });
            evtchns.push(Evtchn {
                local_port: ports[side],
                remote_domain: names[other],
                remote_domid: PAIR_DOMIDS[other],
                remote_port: ports[other],
                initially_pending: side == 1,
                channel: Some(name),
            });
        }
        out[side] = Some(&*Box::leak(Box::new(Manifest {
            format_version: FORMAT_VERSION,
            system: "fake",
            xen: "4.20",
            domain: names[side],
            domid: PAIR_DOMIDS[side],
            channels: leak(chans),
            regions: leak(regions),
            evtchns: leak(evtchns),
            virtio: &[],
        })));
    }
    let pair = out.map(|m| m.expect("both sides built"));
    MADE.lock().unwrap_or_else(|e| e.into_inner()).push(pair);
    pair
}
