//! The C API called as a C program would, on a fake Xen (`staticbus_guest::fake`) with
//! two domains, through the C transport struct and C manifests.

use crate::*;
use core::ffi::{c_char, c_void, CStr};
use staticbus_guest::fake::{two_domains, Backing, FakeDom, FakeXen};
use staticbus_guest::Hypercall;
use staticbus_manifest::{Channel, Manifest, Protocol};
use std::boxed::Box;
use std::ffi::CString;
use std::vec::Vec;

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

fn cstr(s: &str) -> *const c_char {
    CString::new(s).unwrap().into_raw()
}

fn opt_cstr(s: Option<&str>) -> *const c_char {
    s.map_or(core::ptr::null(), cstr)
}

fn role_n(r: staticbus_manifest::Role) -> u32 {
    manifest::role_number(r)
}

/// `m` as the C tables a generated header holds (leaked).
fn c_manifest(m: &Manifest) -> &'static sb_manifest {
    let channels: Vec<sb_channel> = m
        .channels
        .iter()
        .map(|c| {
            let peers: Vec<sb_peer> = c
                .peers
                .iter()
                .map(|p| sb_peer {
                    domain: cstr(p.domain),
                    domid: p.domid,
                    role: role_n(p.role),
                    local_port: p.local_port,
                    remote_port: p.remote_port,
                })
                .collect();
            sb_channel {
                name: cstr(c.name),
                protocol: c.protocol.id(),
                role: role_n(c.role),
                shm_id: cstr(c.shm_id),
                guest_addr: c.guest_addr,
                size: c.size,
                index: c.index,
                writers: c.writers,
                readers: c.readers,
                slot_size: c.slot_size.unwrap_or(0),
                value_size: c.value_size.unwrap_or(0),
                peer_count: peers.len() as u32,
                peers: leak(peers).as_ptr(),
            }
        })
        .collect();
    let regions: Vec<sb_region> = m
        .regions
        .iter()
        .map(|r| sb_region {
            shm_id: cstr(r.shm_id),
            guest_addr: r.guest_addr,
            size: r.size,
            has_host_addr: u8::from(r.host_addr.is_some()),
            host_addr: r.host_addr.unwrap_or(0),
            role: match r.role {
                None => 0,
                Some(staticbus_manifest::ShmRole::Owner) => 1,
                Some(staticbus_manifest::ShmRole::Borrower) => 2,
            },
            owner: cstr(r.owner),
            owner_domid: r.owner_domid,
            channel: opt_cstr(r.channel),
        })
        .collect();
    let evtchns: Vec<sb_evtchn> = m
        .evtchns
        .iter()
        .map(|e| sb_evtchn {
            local_port: e.local_port,
            remote_domain: cstr(e.remote_domain),
            remote_domid: e.remote_domid,
            remote_port: e.remote_port,
            initially_pending: u8::from(e.initially_pending),
            channel: opt_cstr(e.channel),
        })
        .collect();
    Box::leak(Box::new(sb_manifest {
        format_version: m.format_version,
        system: cstr(m.system),
        xen: cstr(m.xen),
        domain: cstr(m.domain),
        domid: m.domid,
        channel_count: channels.len() as u32,
        channels: leak(channels).as_ptr(),
        region_count: regions.len() as u32,
        regions: leak(regions).as_ptr(),
        evtchn_count: evtchns.len() as u32,
        evtchns: leak(evtchns).as_ptr(),
    }))
}

/// The manifests of `two_domains` with the protocol parameters the description would
/// carry (log slots of 64 bytes, latest values of 16).
fn pair(channels: &[(&'static str, Protocol, u64)]) -> [&'static Manifest; 2] {
    two_domains(channels).map(|m| {
        let chans: Vec<Channel> = m
            .channels
            .iter()
            .map(|c| Channel {
                slot_size: (c.protocol == Protocol::Log).then_some(64),
                value_size: (c.protocol == Protocol::Latest).then_some(16),
                ..*c
            })
            .collect();
        &*Box::leak(Box::new(Manifest {
            channels: leak(chans),
            ..*m
        }))
    })
}

/// What a fake domain's transport callbacks get as `ctx`.
struct Ctx {
    dom: FakeDom<'static>,
    regions: Vec<(&'static str, *mut u8, usize)>,
}

unsafe extern "C" fn evtchn_op(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: ctx is a leaked Ctx; the runtime upholds the hypercall contract.
    unsafe { (*ctx.cast::<Ctx>()).dom.event_channel_op(cmd, arg.cast()) }
}

unsafe extern "C" fn sched_op(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: as above.
    unsafe { (*ctx.cast::<Ctx>()).dom.sched_op(cmd, arg.cast()) }
}

unsafe extern "C" fn console_io(ctx: *mut c_void, cmd: u32, n: usize, buf: *const u8) -> i64 {
    // SAFETY: as above.
    unsafe { (*ctx.cast::<Ctx>()).dom.console_io(cmd, n, buf) }
}

unsafe extern "C" fn region(
    ctx: *mut c_void,
    id: *const c_char,
    base: *mut *mut u8,
    len: *mut usize,
) -> i32 {
    // SAFETY: ctx is a leaked Ctx, id NUL-terminated, base/len writable (the contract).
    unsafe {
        let ctx = &*ctx.cast::<Ctx>();
        let id = CStr::from_ptr(id).to_str().unwrap();
        match ctx.regions.iter().find(|r| r.0 == id) {
            Some(&(_, b, l)) => {
                base.write(b);
                len.write(l);
                0
            }
            None => -1,
        }
    }
}

/// Two initialised domains on one fake Xen, sharing one region per channel.
struct Two {
    xen: &'static FakeXen,
    doms: [&'static mut sb_domain; 2],
}

fn zeroed<T>() -> &'static mut T {
    // SAFETY: every handle type is plain words, valid when all zero (not opened).
    unsafe { &mut *Box::into_raw(Box::<T>::new_zeroed()).cast::<T>() }
}

fn transport(
    xen: &'static FakeXen,
    idx: usize,
    regions: &[(&'static str, *mut u8, usize)],
) -> sb_transport {
    let ctx = Box::leak(Box::new(Ctx {
        dom: xen.dom(idx),
        regions: regions.to_vec(),
    }));
    sb_transport {
        ctx: (ctx as *mut Ctx).cast(),
        event_channel_op: Some(evtchn_op),
        memory_op: None,
        sched_op: Some(sched_op),
        console_io: Some(console_io),
        shared_info: xen.shared_info(idx).words().as_ptr().cast_mut().cast(),
        region: Some(region),
    }
}

fn two(channels: &[(&'static str, Protocol, u64)]) -> (Two, [&'static Manifest; 2]) {
    let ms = pair(channels);
    let ports: Vec<(u32, u32)> = (0..channels.len())
        .map(|i| {
            let p = staticbus_guest::fake::pair_ports(i);
            (p[0], p[1])
        })
        .collect();
    let xen: &'static FakeXen = Box::leak(Box::new(FakeXen::new(&ports)));
    let regions: Vec<(&'static str, *mut u8, usize)> = channels
        .iter()
        .map(|&(name, _, size)| {
            let b: &'static Backing = Box::leak(Box::new(Backing::new(size as usize)));
            let r = b.region(size as usize);
            (name, r.as_ptr(), r.len())
        })
        .collect();
    let doms = [0, 1].map(|i| {
        let d = zeroed::<sb_domain>();
        let t = transport(xen, i, &regions);
        // SAFETY: zeroed, leaked storage; a valid transport; a leaked C manifest.
        assert_eq!(unsafe { sb_domain_init(d, &t, c_manifest(ms[i])) }, SB_OK);
        d
    });
    (Two { xen, doms }, ms)
}

const ALL: &[(&str, Protocol, u64)] = &[
    ("q", Protocol::Queue, 0x1000),
    ("log", Protocol::Log, 0x2000),
    ("val", Protocol::Latest, 0x1000),
    ("cfg", Protocol::Blob, 0x2000),
];

#[test]
fn the_c_manifest_reads_back_as_the_manifest() {
    let (t, ms) = two(ALL);
    for (d, m) in t.doms.iter().zip(ms) {
        // SAFETY: initialised above, never moved.
        let p = unsafe { domain::platform(&**d) }.unwrap();
        assert_eq!(staticbus_guest::Platform::manifest(p), m);
        let mut id = 0;
        // SAFETY: valid pointers.
        assert_eq!(unsafe { sb_domain_id(&**d, &mut id) }, SB_OK);
        assert_eq!(id, m.domid);
    }
}

#[test]
fn every_protocol_passes_data_between_the_two_domains() {
    let (t, _) = two(ALL);
    let [a, b] = &t.doms;
    let (a, b): (*const sb_domain, *const sb_domain) = (&**a, &**b);
    // SAFETY: (whole test) every pointer is a leaked, zeroed handle, an initialised
    // domain, a NUL-terminated name or a buffer of the length passed.
    unsafe {
        // Queue: copying and in place.
        let tx = zeroed::<sb_queue_tx>();
        let rx = zeroed::<sb_queue_rx>();
        assert_eq!(sb_queue_tx_open(tx, a, c"q".as_ptr()), SB_OK);
        assert_eq!(sb_queue_rx_open(rx, b, c"q".as_ptr()), SB_OK);
        let mut buf = [0u8; 64];
        let mut n = 0usize;
        assert_eq!(
            sb_queue_try_recv(rx, buf.as_mut_ptr(), 64, &mut n),
            SB_ERR_EMPTY
        );
        assert_eq!(sb_queue_send(tx, b"hello".as_ptr(), 5), SB_OK);
        unsafe extern "C" fn fill(ctx: *mut c_void, p: *mut u8, len: usize) {
            // SAFETY: `len` writable bytes; ctx is the fill byte.
            unsafe { core::ptr::write_bytes(p, *ctx.cast::<u8>(), len) }
        }
        let mut byte = 0x5au8;
        assert_eq!(
            sb_queue_send_in_place(tx, 7, Some(fill), (&mut byte as *mut u8).cast()),
            SB_OK
        );
        // Too small a buffer: the length needed, and the message stays queued.
        assert_eq!(
            sb_queue_try_recv(rx, buf.as_mut_ptr(), 2, &mut n),
            SB_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, 5);
        assert_eq!(sb_queue_recv(rx, buf.as_mut_ptr(), 64, &mut n), SB_OK);
        assert_eq!(&buf[..n], b"hello");
        unsafe extern "C" fn take(ctx: *mut c_void, p: *const u8, len: usize) {
            // SAFETY: ctx is a Vec<u8>; `len` readable bytes.
            unsafe {
                (*ctx.cast::<Vec<u8>>()).extend_from_slice(core::slice::from_raw_parts(p, len))
            }
        }
        let mut got: Vec<u8> = Vec::new();
        assert_eq!(
            sb_queue_recv_in_place(rx, Some(take), (&mut got as *mut Vec<u8>).cast()),
            SB_OK
        );
        assert_eq!(got, [0x5a; 7]);
        // Full: the non-blocking send says so.
        let big = [1u8; 500];
        let mut sent = 0;
        loop {
            match sb_queue_try_send(tx, big.as_ptr(), big.len()) {
                SB_OK => sent += 1,
                SB_ERR_FULL => break,
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(sent, 3, "three 512-byte records fill 2 KiB of queue");
        let huge = std::vec![0u8; 0x1000];
        assert_eq!(
            sb_queue_try_send(tx, huge.as_ptr(), huge.len()),
            SB_ERR_TOO_LARGE
        );

        // Log.
        let lw = zeroed::<sb_log_writer>();
        let lr = zeroed::<sb_log_reader>();
        assert_eq!(sb_log_writer_open(lw, a, c"log".as_ptr()), SB_OK);
        assert_eq!(sb_log_reader_open(lr, b, c"log".as_ptr(), 0), SB_OK);
        let mut rec = sb_log_record::default();
        assert_eq!(
            sb_log_try_read(lr, buf.as_mut_ptr(), 64, &mut rec),
            SB_ERR_EMPTY
        );
        for i in 0u8..3 {
            assert_eq!(sb_log_append(lw, [i; 9].as_ptr(), 9), SB_OK);
        }
        for i in 0u8..3 {
            assert_eq!(sb_log_read(lr, buf.as_mut_ptr(), 64, &mut rec), SB_OK);
            assert_eq!(
                rec,
                sb_log_record {
                    seq: u64::from(i),
                    missed: 0,
                    len: 9
                }
            );
            assert_eq!(&buf[..9], &[i; 9]);
        }
        assert_eq!(sb_log_append(lw, big.as_ptr(), 500), SB_ERR_TOO_LARGE);
        assert_eq!(
            sb_log_reader_open(zeroed(), b, c"log".as_ptr(), 3),
            SB_ERR_INVALID
        );

        // Latest.
        let vw = zeroed::<sb_latest_writer>();
        let vr = zeroed::<sb_latest_reader>();
        assert_eq!(sb_latest_writer_open(vw, a, c"val".as_ptr()), SB_OK);
        assert_eq!(sb_latest_reader_open(vr, b, c"val".as_ptr()), SB_OK);
        let mut s = sb_latest_sample::default();
        assert_eq!(
            sb_latest_read(vr, buf.as_mut_ptr(), 64, &mut s),
            SB_ERR_EMPTY
        );
        assert_eq!(sb_latest_publish(vw, 7, [3u8; 16].as_ptr(), 16), SB_OK);
        assert_eq!(
            sb_latest_publish(vw, 8, [4u8; 8].as_ptr(), 8),
            SB_ERR_TOO_LARGE
        );
        assert_eq!(sb_latest_read(vr, buf.as_mut_ptr(), 64, &mut s), SB_OK);
        assert_eq!((s.writer, s.stamp, s.len, s.contended), (0, 7, 16, 0));
        assert_eq!(&buf[..16], &[3u8; 16]);
        assert_eq!(sb_latest_publish(vw, 9, [5u8; 16].as_ptr(), 16), SB_OK);
        assert_eq!(
            sb_latest_read_changed(vr, buf.as_mut_ptr(), 64, &mut s),
            SB_OK
        );
        assert_eq!((s.stamp, buf[0]), (9, 5));

        // Blob.
        let bw = zeroed::<sb_blob_writer>();
        let br = zeroed::<sb_blob_reader>();
        assert_eq!(sb_blob_writer_open(bw, a, c"cfg".as_ptr()), SB_OK);
        assert_eq!(sb_blob_reader_open(br, b, c"cfg".as_ptr()), SB_OK);
        let mut info = sb_blob_info::default();
        assert_eq!(
            sb_blob_read(br, buf.as_mut_ptr(), 64, &mut info),
            SB_ERR_EMPTY
        );
        let mut v = 0;
        assert_eq!(sb_blob_write(bw, b"config one".as_ptr(), 10, &mut v), SB_OK);
        assert_eq!(v, 1);
        assert_eq!(
            sb_blob_read(br, buf.as_mut_ptr(), 4, &mut info),
            SB_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(info.len, 10);
        assert_eq!(
            sb_blob_read_changed(br, buf.as_mut_ptr(), 64, &mut info),
            SB_OK
        );
        assert_eq!(
            info,
            sb_blob_info {
                version: 1,
                len: 10
            }
        );
        assert_eq!(&buf[..10], b"config one");

        // Console.
        assert_eq!(sb_console_write(a, b"hi\n".as_ptr(), 3), SB_OK);
    }
    let _ = t.xen;
}

#[test]
fn links_signal_and_wait_on_the_channels_event_pair() {
    let (t, _) = two(&[("q", Protocol::Queue, 0x1000)]);
    let (a, b): (*const sb_domain, *const sb_domain) = (&*t.doms[0], &*t.doms[1]);
    // SAFETY: leaked handles, initialised domains, NUL-terminated names.
    unsafe {
        let la = zeroed::<sb_link>();
        let lb = zeroed::<sb_link>();
        assert_eq!(sb_link_open(la, a, c"q".as_ptr()), SB_OK);
        assert_eq!(sb_link_open(lb, b, c"q".as_ptr()), SB_OK);
        let mut info: sb_link_info = core::mem::zeroed();
        assert_eq!(sb_link_info(lb, &mut info), SB_OK);
        assert_eq!(
            (info.protocol, info.role, info.peer_count, info.region_size),
            (1, 1, 1, 0x1000)
        );
        let mut ia: sb_link_info = core::mem::zeroed();
        assert_eq!(sb_link_info(la, &mut ia), SB_OK);
        assert_eq!(ia.region, info.region, "both ends map the same region");
        // b's end starts pending (bound second): clear_initial takes it.
        let mut had = 0;
        assert_eq!(sb_link_clear_initial(lb, &mut had), SB_OK);
        assert_eq!(had, 1);
        let mut peer = 99usize;
        assert_eq!(sb_link_try_wait(lb, &mut peer), SB_ERR_EMPTY);
        assert_eq!(sb_link_notify(la, 0), SB_OK);
        assert_eq!(sb_link_notify(la, 1), SB_ERR_INVALID);
        assert_eq!(sb_link_try_wait(lb, &mut peer), SB_OK);
        assert_eq!(peer, 0);
        assert_eq!(sb_link_notify_all(la), SB_OK);
        peer = 99;
        assert_eq!(sb_link_wait(lb, &mut peer), SB_OK);
        assert_eq!(peer, 0);
        assert_eq!(sb_link_try_wait(lb, &mut peer), SB_ERR_EMPTY);
    }
}

#[test]
fn misuse_is_an_error_code() {
    let (t, ms) = two(ALL);
    let (a, b): (*const sb_domain, *const sb_domain) = (&*t.doms[0], &*t.doms[1]);
    // SAFETY: leaked handles, initialised domains, NUL-terminated names; null pointers
    // where the test says so.
    unsafe {
        // The wrong role, protocol or name.
        assert_eq!(
            sb_queue_tx_open(zeroed(), b, c"q".as_ptr()),
            SB_ERR_WRONG_ROLE
        );
        assert_eq!(
            sb_blob_writer_open(zeroed(), a, c"q".as_ptr()),
            SB_ERR_WRONG_PROTOCOL
        );
        assert_eq!(
            sb_queue_rx_open(zeroed(), b, c"nope".as_ptr()),
            SB_ERR_NO_CHANNEL
        );
        assert_eq!(
            sb_log_writer_open(zeroed(), a, c"nope".as_ptr()),
            SB_ERR_NO_CHANNEL
        );
        assert_eq!(
            sb_queue_tx_open(zeroed(), a, core::ptr::null()),
            SB_ERR_INVALID
        );
        assert_eq!(
            sb_queue_tx_open(core::ptr::null_mut(), a, c"q".as_ptr()),
            SB_ERR_INVALID
        );
        // A handle never opened, a domain never initialised.
        assert_eq!(sb_queue_send(zeroed(), b"x".as_ptr(), 1), SB_ERR_NOT_OPEN);
        assert_eq!(sb_link_notify_all(zeroed()), SB_ERR_NOT_OPEN);
        assert_eq!(
            sb_queue_tx_open(zeroed(), zeroed::<sb_domain>(), c"q".as_ptr()),
            SB_ERR_NOT_OPEN
        );
        assert_eq!(
            sb_queue_send(zeroed(), core::ptr::null(), 1),
            SB_ERR_NOT_OPEN
        );
        let tx = zeroed::<sb_queue_tx>();
        assert_eq!(sb_queue_tx_open(tx, a, c"q".as_ptr()), SB_OK);
        assert_eq!(sb_queue_send(tx, core::ptr::null(), 1), SB_ERR_INVALID);
        assert_eq!(
            sb_queue_send_in_place(tx, 1, None, core::ptr::null_mut()),
            SB_ERR_INVALID
        );
        // A second init of the same domain.
        let tr = transport(t.xen, 0, &[]);
        assert_eq!(
            sb_domain_init(t.doms[0] as *const _ as *mut _, &tr, c_manifest(ms[0])),
            SB_ERR_ALREADY
        );
        // Bad manifests leave the domain uninitialised.
        let d = zeroed::<sb_domain>();
        let mut bad = std::ptr::read(c_manifest(ms[0]));
        bad.format_version = 1;
        assert_eq!(sb_domain_init(d, &tr, &bad), SB_ERR_BAD_MANIFEST);
        let mut c0 = std::ptr::read(bad.channels);
        c0.protocol = 9;
        bad.format_version = staticbus_manifest::FORMAT_VERSION;
        bad.channels = Box::leak(Box::new(c0));
        bad.channel_count = 1;
        assert_eq!(sb_domain_init(d, &tr, &bad), SB_ERR_BAD_MANIFEST);
        bad.channel_count = SB_MAX_CHANNELS as u32 + 1;
        assert_eq!(sb_domain_init(d, &tr, &bad), SB_ERR_MANIFEST_TOO_LARGE);
        bad.channel_count = 0;
        bad.system = core::ptr::null();
        assert_eq!(sb_domain_init(d, &tr, &bad), SB_ERR_BAD_MANIFEST);
        assert_eq!(sb_yield(d), SB_ERR_NOT_OPEN);
        assert_eq!(sb_domain_init(d, &tr, core::ptr::null()), SB_ERR_INVALID);
        let mut no_si = tr;
        no_si.shared_info = core::ptr::null_mut();
        assert_eq!(sb_domain_init(d, &no_si, c_manifest(ms[0])), SB_ERR_INVALID);
        // A transport without a region lookup: the channel cannot be opened.
        let mut no_regions = tr;
        no_regions.region = None;
        assert_eq!(sb_domain_init(d, &no_regions, c_manifest(ms[0])), SB_OK);
        assert_eq!(
            sb_queue_tx_open(zeroed(), d, c"q".as_ptr()),
            SB_ERR_NO_REGION
        );
        // Missing hypercalls answer ENOSYS: yield fails cleanly.
        assert_eq!(sb_yield(d), SB_OK);
        let nothing = sb_transport {
            event_channel_op: None,
            sched_op: None,
            console_io: None,
            ..tr
        };
        let e = zeroed::<sb_domain>();
        assert_eq!(sb_domain_init(e, &nothing, c_manifest(ms[0])), SB_OK);
        assert_eq!(sb_yield(e), SB_ERR_HYPERCALL);
        assert_eq!(sb_console_write(e, b"x".as_ptr(), 1), SB_ERR_HYPERCALL);
    }
}

mod roundtrip {
    //! Any manifest, written as the C tables and read back, is the same manifest.
    use super::*;
    use proptest::prelude::*;
    use staticbus_manifest::{Evtchn, Peer, Region, Role, ShmRole};

    fn name() -> impl Strategy<Value = &'static str> {
        "[^\u{0}]{0,12}".prop_map(|s| &*std::string::String::leak(s))
    }

    fn role() -> impl Strategy<Value = Role> {
        (0..4usize).prop_map(|i| Role::ALL[i])
    }

    fn peer() -> impl Strategy<Value = Peer> {
        (name(), any::<u16>(), role(), any::<u32>(), any::<u32>()).prop_map(
            |(domain, domid, role, local_port, remote_port)| Peer {
                domain,
                domid,
                role,
                local_port,
                remote_port,
            },
        )
    }

    fn channel() -> impl Strategy<Value = Channel> {
        (
            (
                name(),
                0..4usize,
                role(),
                name(),
                any::<u64>(),
                any::<u64>(),
            ),
            (any::<u32>(), any::<u32>(), any::<u32>(), 1..u32::MAX),
            proptest::collection::vec(peer(), 0..5),
        )
            .prop_map(
                |(
                    (name, p, role, shm_id, guest_addr, size),
                    (index, writers, readers, param),
                    peers,
                )| {
                    let protocol = Protocol::ALL[p];
                    Channel {
                        name,
                        protocol,
                        role,
                        shm_id,
                        guest_addr,
                        size,
                        index,
                        writers,
                        readers,
                        slot_size: (protocol == Protocol::Log).then_some(param),
                        value_size: (protocol == Protocol::Latest).then_some(param),
                        peers: leak(peers),
                    }
                },
            )
    }

    fn region() -> impl Strategy<Value = Region> {
        (
            (name(), any::<u64>(), any::<u64>(), any::<Option<u64>>()),
            (
                0..3usize,
                name(),
                any::<u16>(),
                proptest::option::of(name()),
            ),
        )
            .prop_map(
                |((shm_id, guest_addr, size, host_addr), (r, owner, owner_domid, channel))| {
                    Region {
                        shm_id,
                        guest_addr,
                        size,
                        host_addr,
                        role: [None, Some(ShmRole::Owner), Some(ShmRole::Borrower)][r],
                        owner,
                        owner_domid,
                        channel,
                    }
                },
            )
    }

    fn evtchn() -> impl Strategy<Value = Evtchn> {
        (
            any::<u32>(),
            name(),
            any::<u16>(),
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(name()),
        )
            .prop_map(
                |(
                    local_port,
                    remote_domain,
                    remote_domid,
                    remote_port,
                    initially_pending,
                    channel,
                )| {
                    Evtchn {
                        local_port,
                        remote_domain,
                        remote_domid,
                        remote_port,
                        initially_pending,
                        channel,
                    }
                },
            )
    }

    fn manifest() -> impl Strategy<Value = Manifest> {
        (
            (name(), name(), name(), any::<u16>()),
            proptest::collection::vec(channel(), 0..SB_MAX_CHANNELS / 4),
            proptest::collection::vec(region(), 0..8),
            proptest::collection::vec(evtchn(), 0..8),
        )
            .prop_map(
                |((system, xen, domain, domid), channels, regions, evtchns)| Manifest {
                    format_version: staticbus_manifest::FORMAT_VERSION,
                    system,
                    xen,
                    domain,
                    domid,
                    channels: leak(channels),
                    regions: leak(regions),
                    evtchns: leak(evtchns),
                    virtio: &[],
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn a_manifest_reads_back_from_its_c_tables(m in manifest()) {
            let xen: &'static FakeXen = Box::leak(Box::new(FakeXen::new(&[])));
            let t = transport(xen, 0, &[]);
            let d = zeroed::<sb_domain>();
            // SAFETY: zeroed storage, a valid transport, leaked C tables.
            prop_assert_eq!(unsafe { sb_domain_init(d, &t, c_manifest(&m)) }, SB_OK);
            // SAFETY: initialised above, never moved.
            let p = unsafe { domain::platform(d) }.unwrap();
            prop_assert_eq!(staticbus_guest::Platform::manifest(p), &m);
        }
    }
}

mod bad_numbers {
    //! Protocol, role and region-role numbers out of range are refused, whichever entry
    //! carries them; in range they are read.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn only_known_numbers_are_read(protocol in 0..8u32, role in 0..6u32, peer_role in 0..6u32, shm_role in 0..5u32) {
            let [m, _] = pair(ALL);
            let c = c_manifest(m);
            // SAFETY: (this read and those below) the leaked tables of `c_manifest`,
            // copied (their pointers stay valid: nothing is freed).
            let mut bad: sb_manifest = unsafe { std::ptr::read(c) };
            let mut ch: Vec<sb_channel> = (0..bad.channel_count as usize)
                // SAFETY: see above.
                .map(|i| unsafe { std::ptr::read(bad.channels.add(i)) })
                .collect();
            // SAFETY: see above.
            let mut peer: sb_peer = unsafe { std::ptr::read(ch[0].peers) };
            let mut reg: Vec<sb_region> = (0..bad.region_count as usize)
                // SAFETY: see above.
                .map(|i| unsafe { std::ptr::read(bad.regions.add(i)) })
                .collect();
            ch[1].protocol = protocol;
            ch[2].role = role;
            peer.role = peer_role;
            reg[3].role = shm_role;
            ch[0].peers = Box::leak(Box::new(peer));
            bad.channels = leak(ch).as_ptr();
            bad.regions = leak(reg).as_ptr();
            let ok = (1..=4).contains(&protocol) && role < 4 && peer_role < 4 && shm_role < 3;
            let xen: &'static FakeXen = Box::leak(Box::new(FakeXen::new(&[])));
            let t = transport(xen, 0, &[]);
            let d = zeroed::<sb_domain>();
            // SAFETY: zeroed storage, a valid transport, leaked tables.
            let st = unsafe { sb_domain_init(d, &t, &bad) };
            prop_assert_eq!(st, if ok { SB_OK } else { SB_ERR_BAD_MANIFEST });
        }
    }
}
