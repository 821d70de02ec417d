//! Bare-metal Xen (feature `xen`, `aarch64-unknown-none`): the boot code of
//! `staticbus-guest-xen-aarch64` runs the C program's `sb_main`, and [`sb_xen_transport`]
//! is Xen's guest ABI as an [`sb_transport`]: `hvc #0xEA1` hypercalls, `shared_info`
//! mapped at the runtime's fixed frame, the shared regions Xen lists in the guest device
//! tree, and the vPL011 as the console (a release Xen drops `CONSOLEIO_write` from
//! domUs; the vPL011's lines reach Xen's console as `(XEN) DOM<id>: …`).

use crate::domain::{self, sb_domain, sb_transport, ManifestSource};
use crate::manifest::sb_manifest;
use crate::status::*;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicBool, Ordering};
use staticbus_guest::{ops, Hypercall};
use staticbus_guest_xen_aarch64::fdt::Fdt;
use staticbus_guest_xen_aarch64::{entry, memmap, pl011, rt, XenHypercall};

extern "C" {
    /// Bare-metal Xen: the C program's entry point, which the program defines. The
    /// runtime's boot code calls it with the MMU on, a 64 KiB stack and the guest device
    /// tree read. Return 0 to power the domain off, anything else to shut it down as
    /// crashed.
    fn sb_main() -> i32;
}

/// What the transport's functions share: the guest device tree and, once
/// [`sb_xen_init`] set it, the C manifest the regions must match.
struct Boot {
    fdt: Option<Fdt<'static>>,
    manifest: *const sb_manifest,
}

/// [`Boot`] in a static: written by the entry code before `sb_main` runs and by
/// `sb_xen_init` before the domain uses the transport; the guest runs on one vCPU with
/// interrupts masked, so nothing reads it while it is written.
struct BootCell(UnsafeCell<Boot>);

// SAFETY: see `BootCell`: a single vCPU, writes only before the reads they precede.
unsafe impl Sync for BootCell {}

static BOOT: BootCell = BootCell(UnsafeCell::new(Boot {
    fdt: None,
    manifest: core::ptr::null(),
}));

/// `shared_info` is mapped (once per domain: a second mapping fails with `EBUSY`).
static SHARED_INFO: AtomicBool = AtomicBool::new(false);

entry!(c_entry);

/// Runs the C program; powers the domain off when it returns 0, crashes it otherwise.
fn c_entry(boot: rt::Boot) -> ! {
    // SAFETY: nothing else runs yet (see `BootCell`).
    unsafe { (*BOOT.0.get()).fdt = boot.fdt.ok() };
    // SAFETY: the C program defines `sb_main` as staticbus.h declares it.
    match unsafe { sb_main() } {
        0 => rt::poweroff(),
        _ => rt::crash(),
    }
}

unsafe extern "C" fn event_channel_op(_: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: the runtime upholds the hypercall contract for `arg`.
    unsafe { XenHypercall.event_channel_op(cmd, arg.cast()) }
}

unsafe extern "C" fn memory_op(_: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: as above.
    unsafe { XenHypercall.memory_op(cmd, arg.cast()) }
}

unsafe extern "C" fn sched_op(_: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: as above.
    unsafe { XenHypercall.sched_op(cmd, arg.cast()) }
}

/// `CONSOLEIO_write` to the vPL011.
unsafe extern "C" fn console_io(_: *mut c_void, cmd: u32, count: usize, buf: *const u8) -> i64 {
    if cmd != staticbus_abi::console::WRITE {
        return -i64::from(staticbus_abi::errno::ENOSYS);
    }
    if count == 0 {
        return 0;
    }
    if buf.is_null() {
        return -i64::from(staticbus_abi::errno::EFAULT);
    }
    // SAFETY: the caller guarantees `count` readable bytes at `buf`.
    let bytes = unsafe { core::slice::from_raw_parts(buf, count) };
    pl011::console().write_bytes(bytes);
    count as i64
}

/// The region `shm_id` as Xen mapped it: a `xen-shmem` node of the guest device tree with
/// that `xen,id`, Normal memory in the runtime's map, and (after `sb_xen_init`) at the
/// guest address the manifest says.
unsafe extern "C" fn region(
    _: *mut c_void,
    shm_id: *const c_char,
    base: *mut *mut u8,
    len: *mut usize,
) -> i32 {
    if shm_id.is_null() || base.is_null() || len.is_null() {
        return -1;
    }
    // SAFETY: NUL-terminated (sb_region_fn's contract).
    let Ok(id) = unsafe { CStr::from_ptr(shm_id) }.to_str() else {
        return -1;
    };
    // SAFETY: only read after the writes (see `BootCell`).
    let boot = unsafe { &*BOOT.0.get() };
    let Some(node) = boot
        .fdt
        .as_ref()
        .and_then(|f| f.shm_regions().find(|n| n.id == id))
    else {
        return -1;
    };
    if !memmap::is_normal(node.base, node.size) {
        return -1;
    }
    if !boot.manifest.is_null() {
        // SAFETY: set by sb_xen_init from a manifest valid for the program's life.
        let m = unsafe { &*boot.manifest };
        let regions: &[crate::manifest::sb_region] = if m.region_count == 0 || m.regions.is_null() {
            &[]
        } else {
            // SAFETY: the manifest's table of `region_count` entries (sb_domain_init read
            // it successfully before any region is asked for).
            unsafe { core::slice::from_raw_parts(m.regions, m.region_count as usize) }
        };
        let listed = regions.iter().any(|r| {
            // SAFETY: the table's strings are NUL-terminated and valid (as above).
            !r.shm_id.is_null()
                && unsafe { CStr::from_ptr(r.shm_id) }.to_bytes() == id.as_bytes()
                && r.guest_addr == node.base
                && r.size == node.size
        });
        if !listed {
            return -1;
        }
    }
    let (Ok(b), Ok(l)) = (usize::try_from(node.base), usize::try_from(node.size)) else {
        return -1;
    };
    // SAFETY: valid for writes (sb_region_fn's contract).
    unsafe {
        base.write(core::ptr::with_exposed_provenance_mut(b));
        len.write(l);
    }
    0
}

/// Fills `t` with bare-metal Xen's transport: `hvc #0xEA1` hypercalls, this domain's
/// `shared_info` (mapped with `XENMEM_add_to_physmap` on the first call), the shared
/// regions of the guest device tree, and the vPL011 for `console_io`.
/// `SB_ERR_TRANSPORT` if Xen refuses to map `shared_info`.
///
/// # Safety
///
/// `t` is null or valid for writes. Only in a program started by this library's boot
/// code (the C program's `sb_main`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_xen_transport(t: *mut sb_transport) -> sb_status {
    if t.is_null() || !t.is_aligned() {
        return SB_ERR_INVALID;
    }
    if !SHARED_INFO.load(Ordering::SeqCst) {
        if ops::map_shared_info(&XenHypercall, memmap::SHARED_INFO_GFN).is_err() {
            return SB_ERR_TRANSPORT;
        }
        SHARED_INFO.store(true, Ordering::SeqCst);
    }
    let si =
        core::ptr::with_exposed_provenance_mut::<u64>((memmap::SHARED_INFO_GFN << 12) as usize);
    let transport = sb_transport {
        ctx: core::ptr::null_mut(),
        event_channel_op: Some(event_channel_op),
        memory_op: Some(memory_op),
        sched_op: Some(sched_op),
        console_io: Some(console_io),
        shared_info: si,
        region: Some(region),
    };
    // SAFETY: valid for writes (contract).
    unsafe { t.write(transport) };
    SB_OK
}

/// Initialises domain `d` for a bare-metal domU on Xen: [`sb_xen_transport`] and the
/// manifest `m` of the domain's generated header (`&sb_manifest`). The shared regions
/// must be where the manifest says.
///
/// # Safety
///
/// As `sb_domain_init` and `sb_xen_transport`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_xen_init(d: *mut sb_domain, m: *const sb_manifest) -> sb_status {
    let mut t = core::mem::MaybeUninit::<sb_transport>::uninit();
    // SAFETY: `t` is valid for writes.
    match unsafe { sb_xen_transport(t.as_mut_ptr()) } {
        SB_OK => {}
        e => return e,
    }
    // SAFETY: forwarded from the contract; `t` was initialised above.
    let r = unsafe { domain::init(d, t.as_ptr(), ManifestSource::C(m)) };
    if r == SB_OK {
        // SAFETY: see `BootCell`; the manifest was read successfully.
        unsafe { (*BOOT.0.get()).manifest = m };
    }
    r
}
