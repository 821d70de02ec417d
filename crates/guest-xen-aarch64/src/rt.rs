//! The bare-metal runtime: Image header, entry code, page tables, exception vectors,
//! panic handler and shutdown (`aarch64` + `target_os = "none"` only).
//!
//! # What the entry code does (before any Rust code runs)
//!
//! Xen enters at the image's first byte (loaded at `0x40000000`) on vCPU 0 at EL1h with
//! `x0` = the guest DTB, the MMU and caches off, and A/I/F masked (spec §4.5). `_start`:
//!
//! 1. keeps `x0` in `x19`;
//! 2. enables FP/SIMD (`CPACR_EL1.FPEN = 0b11`): compiled Rust uses SIMD registers;
//! 3. installs the exception vectors (`VBAR_EL1`);
//! 4. turns on the MMU over the static identity map of [`crate::memmap`] (tables built
//!    by the assembler, in `.data.pagetables`), with data and instruction caches: Xen
//!    needs shared memory to be Normal write-back, and atomics need Normal memory;
//! 5. zeroes `.bss` (Xen copies only the image file; with `bootscrub=0` the rest of the
//!    guest RAM is not guaranteed to be zero);
//! 6. sets `sp` to a 64 KiB stack and calls `rust_start(dtb)`, which reads the device
//!    tree and calls the program's main (see [`entry!`](crate::entry)).
//!
//! IRQs stay masked (PSTATE.I) for the whole run, except for the short window in which
//! [`crate::irq::WfiSleep`] lets the upcall interrupt in (`wait=irq`). With `wait=poll`
//! (the default) blocking uses `SCHEDOP_poll`, which does not need the interrupt.
//!
//! # Exception vectors
//!
//! The IRQ vector for the current EL with SP_ELx (the only stack the runtime uses) saves
//! the interrupted context on the current stack (x0–x18, x29, x30, ELR/SPSR, q0–q7,
//! q16–q31, FPSR, FPCR: everything the AAPCS64 lets the Rust handler change), calls
//! [`crate::irq::handle`] and returns with `eret`. Every other vector reports the
//! exception and crashes the domain.

use crate::fdt::{self, Fdt, FdtError};
use crate::memmap;
use crate::XenHypercall;
use core::sync::atomic::{AtomicBool, Ordering};
use staticbus_abi::sched;
use staticbus_guest::ops;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    // arm64 Image header (Linux Documentation/arch/arm64/booting.rst), as Xen's
    // kernel_zimage64_probe reads it: magic "ARM\x64" at 0x38, text_offset at 8.
    b       1f                      // code0: branch over the header
    .long   0                       // code1
    .quad   0                       // text_offset: load at RAM base + 0
    .quad   __image_size            // image_size, .bss and stacks included
    .quad   2                       // flags: little endian, 4 KiB pages
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .long   0x644d5241              // magic "ARM\x64"
    .long   0                       // res5 (no PE header)
1:
    mov     x19, x0

    // FP/SIMD: CPACR_EL1.FPEN = 0b11.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb

    adrp    x1, __sb_vectors
    add     x1, x1, :lo12:__sb_vectors
    msr     vbar_el1, x1

    // MMU: MAIR, TCR, TTBR0 = the level-1 table, then SCTLR.{{M,C,I}}.
    ldr     x1, ={mair}
    msr     mair_el1, x1
    ldr     x1, ={tcr}
    msr     tcr_el1, x1
    adrp    x1, __sb_l1_table
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x1, sctlr_el1
    ldr     x2, ={sctlr_set}
    orr     x1, x1, x2
    msr     sctlr_el1, x1
    isb

    // Zero .bss (16-byte aligned by the linker script).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mov     x0, x19
    bl      {start}
4:  wfe
    b       4b
    .ltorg

    // Exception vectors: 16 entries of 128 bytes; every one but the IRQ from the
    // current EL with SP_ELx (entry 5) reports and crashes.
    .macro  __sb_ventry kind
    .balign 128
    mov     x0, #\kind
    b       __sb_exception
    .endm

    .section .text.vectors, "ax"
    .balign 2048
__sb_vectors:
    __sb_ventry 0
    __sb_ventry 1
    __sb_ventry 2
    __sb_ventry 3
    __sb_ventry 4
    .balign 128
    b       __sb_irq
    __sb_ventry 6
    __sb_ventry 7
    __sb_ventry 8
    __sb_ventry 9
    __sb_ventry 10
    __sb_ventry 11
    __sb_ventry 12
    __sb_ventry 13
    __sb_ventry 14
    __sb_ventry 15

    // IRQ: save what the handler may clobber (the frame is {frame} bytes: 25 words,
    // padded to 208, then 24 q registers), call it, restore, return.
__sb_irq:
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x0, elr_el1
    stp     x30, x0, [sp, #160]
    mrs     x0, spsr_el1
    mrs     x1, fpsr
    stp     x0, x1, [sp, #176]
    mrs     x0, fpcr
    str     x0, [sp, #192]
    stp     q0, q1, [sp, #208]
    stp     q2, q3, [sp, #240]
    stp     q4, q5, [sp, #272]
    stp     q6, q7, [sp, #304]
    stp     q16, q17, [sp, #336]
    stp     q18, q19, [sp, #368]
    stp     q20, q21, [sp, #400]
    stp     q22, q23, [sp, #432]
    stp     q24, q25, [sp, #464]
    stp     q26, q27, [sp, #496]
    stp     q28, q29, [sp, #528]
    stp     q30, q31, [sp, #560]
    bl      {irq}
    ldp     q0, q1, [sp, #208]
    ldp     q2, q3, [sp, #240]
    ldp     q4, q5, [sp, #272]
    ldp     q6, q7, [sp, #304]
    ldp     q16, q17, [sp, #336]
    ldp     q18, q19, [sp, #368]
    ldp     q20, q21, [sp, #400]
    ldp     q22, q23, [sp, #432]
    ldp     q24, q25, [sp, #464]
    ldp     q26, q27, [sp, #496]
    ldp     q28, q29, [sp, #528]
    ldp     q30, q31, [sp, #560]
    ldr     x0, [sp, #192]
    msr     fpcr, x0
    ldp     x0, x1, [sp, #176]
    msr     spsr_el1, x0
    msr     fpsr, x1
    ldp     x30, x0, [sp, #160]
    msr     elr_el1, x0
    ldp     x18, x29, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret

__sb_exception:
    // A fresh stack: the exception may come from a broken one.
    adrp    x9, __exception_stack_top
    add     x9, x9, :lo12:__exception_stack_top
    mov     sp, x9
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    mrs     x4, spsr_el1
    bl      {exception}
5:  wfe
    b       5b

    // The identity map of src/memmap.rs.
    .section .data.pagetables, "aw"
    .balign 4096
__sb_l1_table:
    .quad   __sb_l2_table + 3                       // 0 .. 1 GiB: level-2 table
    .quad   ({ram} + 0 * {l1}) | {normal}           // GUEST_RAM0, 3 GiB
    .quad   ({ram} + 1 * {l1}) | {normal}
    .quad   ({ram} + 2 * {l1}) | {normal}
    .set    __sb_addr, {ram} + 3 * {l1}             // 4 GiB .. 64 GiB: Normal, XN
    .rept   {high}
    .quad   __sb_addr | {normal_xn}
    .set    __sb_addr, __sb_addr + {l1}
    .endr
    .fill   (508 - {high}), 8, 0
    .balign 4096
__sb_l2_table:                                      // 0 .. 1 GiB in 2 MiB blocks
    .set    __sb_addr, 0
    .rept   512
    .if     ((__sb_addr >= {d0s}) && (__sb_addr < {d0e})) || ((__sb_addr >= {d1s}) && (__sb_addr < {d1e})) || ((__sb_addr >= {d2s}) && (__sb_addr < {d2e}))
    .quad   __sb_addr | {device}
    .else
    .quad   __sb_addr | {normal_xn}
    .endif
    .set    __sb_addr, __sb_addr + {l2}
    .endr
    "#,
    mair = const memmap::MAIR,
    tcr = const memmap::TCR,
    sctlr_set = const memmap::SCTLR_SET,
    ram = const memmap::RAM_BASE,
    l1 = const memmap::L1_BLOCK,
    l2 = const memmap::L2_BLOCK,
    normal = const memmap::NORMAL_BLOCK,
    normal_xn = const memmap::NORMAL_XN_BLOCK,
    device = const memmap::DEVICE_BLOCK,
    high = const memmap::HIGH_L1_ENTRIES,
    d0s = const memmap::DEVICE_BLOCKS[0].0,
    d0e = const memmap::DEVICE_BLOCKS[0].1,
    d1s = const memmap::DEVICE_BLOCKS[1].0,
    d1e = const memmap::DEVICE_BLOCKS[1].1,
    d2s = const memmap::DEVICE_BLOCKS[2].0,
    d2e = const memmap::DEVICE_BLOCKS[2].1,
    start = sym rust_start,
    exception = sym exception,
    irq = sym crate::irq::handle,
    frame = const IRQ_FRAME,
);

/// Bytes of the IRQ vector's exception frame: 25 words (x0–x18, x29, x30, ELR, SPSR,
/// FPSR, FPCR) padded to 208, then 24 q registers.
const IRQ_FRAME: usize = 208 + 24 * 16;
const _: () = assert!(IRQ_FRAME % 16 == 0 && 25 * 8 <= 208);

/// What the runtime hands the program's main.
#[derive(Debug)]
pub struct Boot {
    /// The guest-physical address of the DTB Xen passed in `x0`.
    pub dtb_addr: usize,
    /// The guest device tree, or why it could not be read.
    pub fdt: Result<Fdt<'static>, FdtError>,
    /// `/chosen/bootargs` (empty if the tree has none).
    pub bootargs: &'static str,
}

/// Most bytes of device tree the runtime accepts (Xen's guest DTB is a few KiB; Xen
/// places it in a 2 MiB slot).
const MAX_DTB: usize = 2 << 20;

/// Reads the device tree at `addr`.
///
/// # Safety
///
/// If `addr` and the blob's `totalsize` lie in guest RAM ([`memmap::is_normal`]), that
/// memory is mapped and is not written for the rest of the program (true of the DTB Xen
/// places in guest RAM before the guest starts).
unsafe fn read_fdt(addr: usize) -> Result<Fdt<'static>, FdtError> {
    let in_ram = |len: usize| addr != 0 && memmap::is_normal(addr as u64, len as u64);
    if !in_ram(8) {
        return Err(FdtError::BadLayout);
    }
    let base = core::ptr::with_exposed_provenance::<u8>(addr);
    // SAFETY: 8 bytes at `addr` are in mapped guest RAM (checked above) and not written
    // (the function's contract).
    let header = unsafe { core::slice::from_raw_parts(base, 8) };
    let total = fdt::total_size(header)?;
    if total > MAX_DTB || !in_ram(total) {
        return Err(FdtError::BadLayout);
    }
    // SAFETY: as above, for `total` bytes (checked).
    Fdt::new(unsafe { core::slice::from_raw_parts(base, total) })
}

extern "Rust" {
    /// The program's main, defined by [`entry!`](crate::entry).
    fn __staticbus_guest_main(boot: Boot) -> !;
}

/// Called by `_start` with the MMU on, `.bss` zeroed and a stack.
extern "C" fn rust_start(dtb: usize) -> ! {
    // SAFETY: `dtb` is what Xen passed in x0: the guest DTB, in guest RAM, which nothing
    // writes after Xen built the domain.
    let fdt = unsafe { read_fdt(dtb) };
    let bootargs = fdt.as_ref().map_or("", |f| f.bootargs());
    let boot = Boot {
        dtb_addr: dtb,
        fdt,
        bootargs,
    };
    // SAFETY: `entry!` defines `__staticbus_guest_main` with exactly this signature; a
    // program built without `entry!` fails to link.
    unsafe { __staticbus_guest_main(boot) }
}

/// Defines the program's entry point: `entry!(main)` with `fn main(boot: Boot) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "__staticbus_guest_main")]
        fn __staticbus_guest_main(boot: $crate::rt::Boot) -> ! {
            let main: fn($crate::rt::Boot) -> ! = $main;
            main(boot)
        }
    };
}

/// `SCHEDOP_shutdown(reason)`; Xen does not return from a successful shutdown. If it
/// does (it failed), the vCPU parks in WFI.
pub fn shutdown(reason: u32) -> ! {
    let _ = ops::shutdown(&XenHypercall, reason);
    loop {
        // SAFETY: WFI only waits; interrupts are masked, so this parks the vCPU.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// Shuts the domain down as powered off (`SHUTDOWN_poweroff`).
pub fn poweroff() -> ! {
    shutdown(sched::SHUTDOWN_POWEROFF)
}

/// Shuts the domain down as crashed (`SHUTDOWN_crash`).
pub fn crash() -> ! {
    shutdown(sched::SHUTDOWN_CRASH)
}

/// Set by the first exception or panic, so a fault while reporting goes straight to the
/// shutdown instead of recursing.
static FAILING: AtomicBool = AtomicBool::new(false);

const VECTOR_NAMES: [&str; 16] = [
    "synchronous (EL1t)",
    "IRQ (EL1t)",
    "FIQ (EL1t)",
    "SError (EL1t)",
    "synchronous",
    "IRQ",
    "FIQ",
    "SError",
    "synchronous (EL0 A64)",
    "IRQ (EL0 A64)",
    "FIQ (EL0 A64)",
    "SError (EL0 A64)",
    "synchronous (EL0 A32)",
    "IRQ (EL0 A32)",
    "FIQ (EL0 A32)",
    "SError (EL0 A32)",
];

fn exception_class(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE",
        0x07 => "FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x18 => "MSR/MRS",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment",
        0x2f => "SError",
        0x3c => "BRK",
        _ => "other",
    }
}

/// Reports an exception taken to EL1 and crashes the domain.
extern "C" fn exception(kind: u64, esr: u64, elr: u64, far: u64, spsr: u64) -> ! {
    if FAILING.swap(true, Ordering::SeqCst) {
        crash();
    }
    let ec = (esr >> 26) & 0x3f;
    let name = VECTOR_NAMES.get(kind as usize).copied().unwrap_or("?");
    crate::println!(
        "EXCEPTION {name}: ESR {esr:#x} (EC {ec:#x} {}) ELR {elr:#x} FAR {far:#x} SPSR {spsr:#x}",
        exception_class(ec)
    );
    crate::println!("RESULT FAIL exception");
    crash()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if !FAILING.swap(true, Ordering::SeqCst) {
        crate::println!("PANIC {info}");
        crate::println!("RESULT FAIL panic");
    }
    crash()
}
