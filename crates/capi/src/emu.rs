//! The emulator's transport (feature `emu`): a C program started by `staticbus run`
//! reaches its hypervisor thread through `staticbus-guest-emu`, and reads its manifest
//! from the `manifest.json` the runner hands it.

use crate::domain::{self, sb_domain, sb_transport, ManifestSource};
use crate::status::*;
use core::ffi::{c_char, c_void, CStr};
use staticbus_guest::{Hypercall, Platform, TwoLevelTransport};
use staticbus_guest_emu::EmuPlatform;
use std::boxed::Box;
use std::sync::Mutex;

/// The process's connection to the emulator, made once (its file descriptors are
/// taken on the first connect): the address of a leaked `EmuPlatform`.
static CONNECTION: Mutex<Option<usize>> = Mutex::new(None);

fn connect() -> Result<&'static EmuPlatform, sb_status> {
    let mut c = CONNECTION.lock().map_err(|_| SB_ERR_TRANSPORT)?;
    if let Some(addr) = *c {
        // SAFETY: `addr` is the address of the EmuPlatform leaked below, never freed.
        return Ok(unsafe { &*core::ptr::with_exposed_provenance::<EmuPlatform>(addr) });
    }
    match EmuPlatform::connect() {
        Ok(p) => {
            let p: &'static EmuPlatform = Box::leak(Box::new(p));
            *c = Some((p as *const EmuPlatform).expose_provenance());
            Ok(p)
        }
        Err(e) => {
            std::eprintln!("staticbus: {e}");
            Err(SB_ERR_TRANSPORT)
        }
    }
}

/// The `EmuPlatform` a transport's `ctx` points to.
///
/// # Safety
///
/// `ctx` is the `ctx` of a transport `sb_emu_transport` filled in.
unsafe fn emu<'a>(ctx: *mut c_void) -> &'a EmuPlatform {
    // SAFETY: `ctx` points to the leaked, never freed EmuPlatform (contract).
    unsafe { &*ctx.cast_const().cast::<EmuPlatform>() }
}

unsafe extern "C" fn event_channel_op(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: `ctx` is ours; the caller upholds the hypercall contract for `arg`.
    unsafe { emu(ctx).transport().event_channel_op(cmd, arg.cast()) }
}

unsafe extern "C" fn memory_op(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: as above.
    unsafe { emu(ctx).transport().memory_op(cmd, arg.cast()) }
}

unsafe extern "C" fn sched_op(ctx: *mut c_void, cmd: u32, arg: *mut c_void) -> i64 {
    // SAFETY: as above.
    unsafe { emu(ctx).transport().sched_op(cmd, arg.cast()) }
}

unsafe extern "C" fn console_io(ctx: *mut c_void, cmd: u32, count: usize, buf: *const u8) -> i64 {
    // SAFETY: as above, for `buf`.
    unsafe { emu(ctx).transport().console_io(cmd, count, buf) }
}

unsafe extern "C" fn region(
    ctx: *mut c_void,
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
    // SAFETY: `ctx` is ours.
    match unsafe { emu(ctx) }.region(id) {
        Some(r) => {
            // SAFETY: valid for writes (sb_region_fn's contract).
            unsafe {
                base.write(r.as_ptr());
                len.write(r.len());
            }
            0
        }
        None => -1,
    }
}

/// Fills `t` with the emulator's transport, connecting to `staticbus run` on the first
/// call (later calls return the same connection). `SB_ERR_TRANSPORT` if the process was
/// not started by `staticbus run` (the reason is printed on stderr).
///
/// # Safety
///
/// `t` is null or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_emu_transport(t: *mut sb_transport) -> sb_status {
    if t.is_null() || !t.is_aligned() {
        return SB_ERR_INVALID;
    }
    let p = match connect() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let si = TwoLevelTransport::shared_info(p).words().as_ptr();
    let transport = sb_transport {
        ctx: (p as *const EmuPlatform).cast_mut().cast(),
        event_channel_op: Some(event_channel_op),
        memory_op: Some(memory_op),
        sched_op: Some(sched_op),
        console_io: Some(console_io),
        shared_info: si.cast_mut().cast(),
        region: Some(region),
    };
    // SAFETY: valid for writes (contract).
    unsafe { t.write(transport) };
    SB_OK
}

/// Initialises domain `d` on transport `t` (the emulator's, from `sb_emu_transport`, or
/// one wrapping it) with the domain's manifest from `staticbus run` (its
/// `manifest.json`).
///
/// # Safety
///
/// As `sb_domain_init`, for `d` and `t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_emu_init_with(d: *mut sb_domain, t: *const sb_transport) -> sb_status {
    let p = match connect() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // The manifest of a leaked platform lives for the program.
    let m: &'static staticbus_manifest::Manifest = p.manifest();
    // SAFETY: forwarded from this function's contract.
    unsafe { domain::init(d, t, ManifestSource::Rust(m)) }
}

/// Initialises domain `d` for a program run by `staticbus run`: the emulator's
/// transport and the domain's manifest. `SB_ERR_TRANSPORT` if the process was not
/// started by `staticbus run`.
///
/// # Safety
///
/// `d` is zeroed storage for a domain that never moves or is freed afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_emu_init(d: *mut sb_domain) -> sb_status {
    let mut t = core::mem::MaybeUninit::<sb_transport>::uninit();
    // SAFETY: `t` is valid for writes.
    match unsafe { sb_emu_transport(t.as_mut_ptr()) } {
        SB_OK => {}
        e => return e,
    }
    // SAFETY: initialised by sb_emu_transport; `d` as this function's contract says.
    unsafe { sb_emu_init_with(d, t.as_ptr()) }
}
