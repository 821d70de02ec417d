//! The integrator's transport ([`sb_transport`]) and the domain ([`sb_domain`]) built on
//! it: the `Platform` every endpoint of the C API runs on.

use crate::handle::{self, handle, Handle};
use crate::manifest::{self, sb_manifest, Tables};
use crate::status::*;
use core::ffi::{c_char, c_void};
use core::sync::atomic::AtomicU64;
use staticbus_abi::errno;
use staticbus_abi::shared_info::{SharedInfo, PAGE_WORDS};
use staticbus_guest::{
    ops, Errno, EventChannels, FiredSet, Hypercall, Platform, Region, TwoLevelTransport,
};
use staticbus_manifest::Manifest;

/// `HYPERVISOR_event_channel_op`, `HYPERVISOR_memory_op` or `HYPERVISOR_sched_op` of a
/// transport: `cmd` and a pointer to its argument structure, laid out as in Xen's public
/// headers (`struct evtchn_send`, `struct xen_add_to_physmap`, `struct sched_poll`, …;
/// null for commands without one). Returns Xen's raw result: `>= 0`, or a negated Xen
/// errno. `SCHEDOP_poll` and `SCHEDOP_block` may return early (spuriously).
pub type sb_hypercall_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64>;

/// `HYPERVISOR_console_io(cmd, count, buf)` of a transport (`CONSOLEIO_write` = 0).
pub type sb_console_io_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, cmd: u32, count: usize, buf: *const u8) -> i64>;

/// Maps the shared region whose `xen,shm-id` is the NUL-terminated `shm_id`: stores its
/// base and length and returns 0, or returns non-zero if the transport cannot provide
/// it. The memory must stay mapped (Normal memory, shared with the peers) for the rest
/// of the program.
pub type sb_region_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        shm_id: *const c_char,
        base: *mut *mut u8,
        len: *mut usize,
    ) -> i32,
>;

/// The hypercall layer below the runtime, provided by the integrator (or by
/// `sb_emu_transport` / `sb_xen_transport`).
///
/// The library runs Xen's 2-level event-channel driver on `shared_info` and issues the
/// hypercalls through these functions, passing `ctx` unchanged. A null function answers
/// `-ENOSYS`. The struct is copied by `sb_domain_init`; `ctx`, `shared_info` and the
/// functions must stay valid for the program's life.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sb_transport {
    /// Passed to every function.
    pub ctx: *mut c_void,
    /// `HYPERVISOR_event_channel_op` (send, status, unmask).
    pub event_channel_op: sb_hypercall_fn,
    /// `HYPERVISOR_memory_op` (unused after `shared_info` is mapped).
    pub memory_op: sb_hypercall_fn,
    /// `HYPERVISOR_sched_op` (yield, poll, block, shutdown).
    pub sched_op: sb_hypercall_fn,
    /// `HYPERVISOR_console_io`.
    pub console_io: sb_console_io_fn,
    /// The domain's `shared_info` page (4096 bytes, 8-byte aligned), already mapped.
    pub shared_info: *mut u64,
    /// The shared regions.
    pub region: sb_region_fn,
}

/// The hypercalls of an [`sb_transport`].
#[derive(Debug)]
pub(crate) struct CHypercall {
    t: sb_transport,
}

const ENOSYS: i64 = -(errno::ENOSYS as i64);

impl Hypercall for CHypercall {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        match self.t.event_channel_op {
            // SAFETY: the caller upholds Hypercall's contract for `arg`; the integrator's
            // function is called as sb_transport documents.
            Some(f) => unsafe { f(self.t.ctx, cmd, arg.cast()) },
            None => ENOSYS,
        }
    }

    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        match self.t.memory_op {
            // SAFETY: as above.
            Some(f) => unsafe { f(self.t.ctx, cmd, arg.cast()) },
            None => ENOSYS,
        }
    }

    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        match self.t.sched_op {
            // SAFETY: as above.
            Some(f) => unsafe { f(self.t.ctx, cmd, arg.cast()) },
            None => ENOSYS,
        }
    }

    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64 {
        match self.t.console_io {
            // SAFETY: as above.
            Some(f) => unsafe { f(self.t.ctx, cmd, count, buf) },
            None => ENOSYS,
        }
    }
}

/// A domain over an [`sb_transport`]: what `Channel::open` and the endpoints run on.
pub(crate) struct CPlatform {
    h: CHypercall,
    si: &'static [AtomicU64; PAGE_WORDS],
    fired: FiredSet,
    manifest: Manifest,
}

/// The event channels of a [`CPlatform`].
pub(crate) type Ev = EventChannels<'static, CHypercall>;

/// Longest `xen,shm-id` passed to [`sb_transport::region`] (Xen's limit is 15 bytes).
const MAX_SHM_ID: usize = 63;

impl TwoLevelTransport for CPlatform {
    type H = CHypercall;

    fn hypercall(&self) -> &CHypercall {
        &self.h
    }

    fn shared_info(&self) -> SharedInfo<'_> {
        SharedInfo::new(self.si)
    }

    fn fired(&self) -> &FiredSet {
        &self.fired
    }
}

impl Platform for CPlatform {
    type Events<'a> = EventChannels<'a, CHypercall>;

    fn events(&self) -> EventChannels<'_, CHypercall> {
        self.two_level_events()
    }

    fn region(&self, shm_id: &str) -> Option<Region> {
        let f = self.h.t.region?;
        let id = shm_id.as_bytes();
        if id.len() > MAX_SHM_ID || id.contains(&0) {
            return None;
        }
        let mut name = [0u8; MAX_SHM_ID + 1];
        name[..id.len()].copy_from_slice(id);
        let mut base = core::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: `name` is NUL-terminated, `base` and `len` are valid for writes; the
        // function is called as sb_transport documents.
        let r = unsafe { f(self.h.t.ctx, name.as_ptr().cast(), &mut base, &mut len) };
        if r != 0 {
            return None;
        }
        // SAFETY: sb_region_fn's contract: `len` bytes at `base` are shared memory that
        // stays mapped for the rest of the program. Region::new rejects null bases.
        unsafe { Region::new(base, len) }
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn yield_now(&self) -> Result<(), Errno> {
        ops::sched_yield(&self.h)
    }
}

/// A domain: its transport, its manifest and its event-channel state. Storage for the
/// library, opaque to C: zero it (static storage is) and pass it to `sb_domain_init`,
/// `sb_emu_init` or `sb_xen_init`. It must not move afterwards and must outlive every
/// handle opened on it.
#[repr(C)]
pub struct sb_domain {
    _tag: u64,
    _opaque: [u64; 2304],
}

/// What an [`sb_domain`] holds.
pub(crate) struct DomainInner {
    platform: CPlatform,
    tables: Tables,
}

handle!(sb_domain, DomainInner, b"sbDomain");

const NO_MANIFEST: Manifest = Manifest {
    format_version: 0,
    system: "",
    xen: "",
    domain: "",
    domid: 0,
    channels: &[],
    regions: &[],
    evtchns: &[],
    virtio: &[],
};

/// How a domain gets its manifest.
pub(crate) enum ManifestSource {
    /// A C manifest of a generated header.
    C(*const sb_manifest),
    /// A Rust manifest (the emulator's JSON).
    #[cfg_attr(not(feature = "emu"), allow(dead_code))]
    Rust(&'static Manifest),
}

/// Initialises the domain at `d` on transport `t` with manifest `m`.
///
/// # Safety
///
/// `d` is null or valid storage for an `sb_domain` that never moves or is freed
/// afterwards; `t` is null or a valid transport whose pointers stay valid for the
/// program's life; a C manifest is as [`manifest::read`] requires.
pub(crate) unsafe fn init(
    d: *mut sb_domain,
    t: *const sb_transport,
    m: ManifestSource,
) -> sb_status {
    if d.is_null() || t.is_null() || !d.is_aligned() || !t.is_aligned() {
        return SB_ERR_INVALID;
    }
    // SAFETY: valid for reads (contract).
    if unsafe { sb_domain::tag(d).read() } == sb_domain::TAG {
        return SB_ERR_ALREADY;
    }
    // SAFETY: valid for reads (contract).
    let t = unsafe { t.read() };
    let si = t.shared_info;
    if si.is_null() || !si.is_aligned() {
        return SB_ERR_INVALID;
    }
    // SAFETY: the transport's contract: a mapped 4096-byte shared_info page, valid for
    // the program's life, accessed by Xen (or the emulator) concurrently, hence atomics.
    let si = unsafe { &*si.cast::<[AtomicU64; PAGE_WORDS]>() };
    let inner = DomainInner {
        platform: CPlatform {
            h: CHypercall { t },
            si,
            fired: FiredSet::new(),
            manifest: NO_MANIFEST,
        },
        tables: Tables::EMPTY,
    };
    // SAFETY: `d` is valid storage (contract).
    let r = unsafe { handle::put(d, inner) };
    if r != SB_OK {
        return r;
    }
    // SAFETY: just stored; `d` never moves, so its contents live for the program; no
    // other reference to them exists yet.
    let inner: &'static mut DomainInner = match unsafe { handle::get(d) } {
        Ok(i) => i,
        Err(e) => return e,
    };
    let DomainInner { platform, tables } = inner;
    let manifest = match m {
        // SAFETY: the C manifest is as `manifest::read` requires (contract).
        ManifestSource::C(c) => unsafe { manifest::read(c, tables) },
        ManifestSource::Rust(m) if m.is_supported() => Ok(*m),
        ManifestSource::Rust(_) => Err(SB_ERR_BAD_MANIFEST),
    };
    match manifest {
        Ok(m) => {
            platform.manifest = m;
            SB_OK
        }
        Err(e) => {
            // SAFETY: valid for writes (contract): the domain is left not initialised.
            unsafe { sb_domain::tag(d).write(0) };
            e
        }
    }
}

/// The platform of the initialised domain at `d`, for the rest of the program.
///
/// # Safety
///
/// `d` is null or points to an `sb_domain` that, once initialised, never moves and is
/// never freed.
pub(crate) unsafe fn platform(d: *const sb_domain) -> Result<&'static CPlatform, sb_status> {
    let d = d.cast_mut();
    if d.is_null() || !d.is_aligned() {
        return Err(SB_ERR_INVALID);
    }
    // SAFETY: valid for reads (contract).
    if unsafe { sb_domain::tag(d).read() } != sb_domain::TAG {
        return Err(SB_ERR_NOT_OPEN);
    }
    // SAFETY: initialised (tag), never moved or freed (contract); after `init` returns
    // the domain is only ever read through shared references.
    Ok(unsafe { &(*sb_domain::slot(d)).platform })
}

/// Initialises domain `d` on the integrator's transport `t`, with the manifest `m` of
/// the domain's generated header (`domains/<name>/manifest.h`: pass `&sb_manifest`).
///
/// `SB_ERR_ALREADY` if `d` is already initialised; `SB_ERR_BAD_MANIFEST` or
/// `SB_ERR_MANIFEST_TOO_LARGE` if the manifest cannot be read (the domain stays
/// uninitialised).
///
/// # Safety
///
/// `d` is zeroed or initialised storage that never moves or is freed afterwards; `t`
/// points to a transport as [`sb_transport`] documents; `m` and everything it points to
/// stay valid and unchanged for the program's life.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_domain_init(
    d: *mut sb_domain,
    t: *const sb_transport,
    m: *const sb_manifest,
) -> sb_status {
    // SAFETY: forwarded from this function's contract.
    unsafe { init(d, t, ManifestSource::C(m)) }
}

/// Writes `len` bytes of `buf` to the domain's console (`CONSOLEIO_write`).
///
/// # Safety
///
/// `d` as for every function taking a domain; `buf` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_console_write(
    d: *const sb_domain,
    buf: *const u8,
    len: usize,
) -> sb_status {
    // SAFETY: forwarded.
    let p = match unsafe { platform(d) } {
        Ok(p) => p,
        Err(e) => return e,
    };
    if buf.is_null() && len > 0 {
        return SB_ERR_INVALID;
    }
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes.
        unsafe { core::slice::from_raw_parts(buf, len) }
    };
    match ops::console_write(&p.h, bytes) {
        Ok(()) => SB_OK,
        Err(_) => SB_ERR_HYPERCALL,
    }
}

/// Gives up the CPU for a moment (`SCHEDOP_yield`).
///
/// # Safety
///
/// `d` as for every function taking a domain.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_yield(d: *const sb_domain) -> sb_status {
    // SAFETY: forwarded.
    match unsafe { platform(d) } {
        Ok(p) => match p.yield_now() {
            Ok(()) => SB_OK,
            Err(_) => SB_ERR_HYPERCALL,
        },
        Err(e) => e,
    }
}

/// This domain's id (from its manifest).
///
/// # Safety
///
/// `d` as for every function taking a domain; `domid` is valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_domain_id(d: *const sb_domain, domid: *mut u16) -> sb_status {
    // SAFETY: forwarded.
    let p = match unsafe { platform(d) } {
        Ok(p) => p,
        Err(e) => return e,
    };
    if domid.is_null() {
        return SB_ERR_INVALID;
    }
    // SAFETY: valid for writes (contract).
    unsafe { domid.write(p.manifest.domid) };
    SB_OK
}
