//! The bare-metal runtime on QEMU's `virt` machine without a hypervisor: Image header,
//! entry code, page tables, exception vectors, panic handler and PSCI shutdown
//! (`aarch64` + `target_os = "none"` only).
//!
//! QEMU's `-kernel` loader treats the image as an arm64 `Image` (magic `ARM\x64`): it
//! loads it at RAM base + `text_offset` (`0x200000` here, so at `0x40200000`, where
//! `link.ld` links it), writes the DTB it generated into RAM and enters at EL1h with
//! `x0` = the DTB, MMU and caches off. `_start`:
//!
//! 1. keeps `x0` in `x19`;
//! 2. enables FP/SIMD (`CPACR_EL1.FPEN = 0b11`);
//! 3. installs the exception vectors (`VBAR_EL1`);
//! 4. turns the MMU on over the identity map of [`crate::memmap`] (tables built by the
//!    assembler), with data and instruction caches: the shared object must be Normal
//!    write-back for atomics;
//! 5. zeroes `.bss`, sets `sp` to a 64 KiB stack and calls `rust_start(dtb)`.
//!
//! IRQs stay masked (PSTATE.I) for the whole run: waits sleep in `WFI`, which a pending
//! interrupt ends without taking it ([`crate::device`]). Every exception reports itself
//! on the console and shuts the VM down.

use crate::memmap;
use core::sync::atomic::{AtomicBool, Ordering};
use staticbus_baremetal_aarch64::fdt::{self, Fdt, FdtError};

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    // arm64 Image header (Linux Documentation/arch/arm64/booting.rst), as QEMU's
    // load_aarch64_image reads it: magic "ARM\x64" at 0x38, text_offset at 8, image_size
    // at 16 (non-zero, so text_offset counts).
    b       1f
    .long   0
    .quad   {text_offset}
    .quad   __image_size
    .quad   2                       // flags: little endian, 4 KiB pages
    .quad   0
    .quad   0
    .quad   0
    .long   0x644d5241              // magic "ARM\x64"
    .long   0
1:
    mov     x19, x0
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    adrp    x1, __sbi_vectors
    add     x1, x1, :lo12:__sbi_vectors
    msr     vbar_el1, x1
    ldr     x1, ={mair}
    msr     mair_el1, x1
    ldr     x1, ={tcr}
    msr     tcr_el1, x1
    adrp    x1, __sbi_l1_table
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

    // Exception vectors: 16 entries of 128 bytes, every one reports and shuts down.
    .macro  __sbi_ventry kind
    .balign 128
    mov     x0, #\kind
    b       __sbi_exception
    .endm

    .section .text.vectors, "ax"
    .balign 2048
__sbi_vectors:
    .irp    k, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    __sbi_ventry \k
    .endr

__sbi_exception:
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
__sbi_l1_table:
    .quad   __sbi_l2_table + 3                      // 0 .. 1 GiB: level-2 table
    .quad   ({ram} + 0 * {l1}) | {normal}           // RAM, 3 GiB
    .quad   ({ram} + 1 * {l1}) | {normal}
    .quad   ({ram} + 2 * {l1}) | {normal}
    .fill   508, 8, 0
    .balign 4096
__sbi_l2_table:                                     // 0 .. 1 GiB in 2 MiB blocks
    .set    __sbi_addr, 0
    .rept   512
    .if     (__sbi_addr >= {shm_s}) && (__sbi_addr < {shm_e})
    .quad   __sbi_addr | {normal_xn}
    .else
    .quad   __sbi_addr | {device}
    .endif
    .set    __sbi_addr, __sbi_addr + {l2}
    .endr
    "#,
    text_offset = const TEXT_OFFSET,
    mair = const memmap::MAIR,
    tcr = const memmap::TCR,
    sctlr_set = const memmap::SCTLR_SET,
    ram = const memmap::RAM_BASE,
    l1 = const memmap::L1_BLOCK,
    l2 = const memmap::L2_BLOCK,
    normal = const memmap::NORMAL_BLOCK,
    normal_xn = const memmap::NORMAL_XN_BLOCK,
    device = const memmap::DEVICE_BLOCK,
    shm_s = const memmap::SHM_START,
    shm_e = const memmap::SHM_END,
    start = sym rust_start,
    exception = sym exception,
);

/// The Image header's `text_offset`: QEMU loads the image at RAM base + 2 MiB (where
/// `link.ld` links it), clear of the boot stub it writes at the start of RAM.
const TEXT_OFFSET: u64 = 0x20_0000;
const _: () = assert!(memmap::RAM_BASE + memmap::RAM_SPAN == 4 << 30);

/// What the runtime hands the program's main.
#[derive(Debug)]
pub struct Boot {
    /// The address of the DTB QEMU passed in `x0`.
    pub dtb_addr: usize,
    /// The device tree, or why it could not be read.
    pub fdt: Result<Fdt<'static>, FdtError>,
    /// `/chosen/bootargs` (QEMU's `-append`; empty if none).
    pub bootargs: &'static str,
}

/// Most bytes of device tree the runtime accepts (QEMU's is about 1 MiB at most).
const MAX_DTB: usize = 2 << 20;

/// Reads the device tree at `addr`.
///
/// # Safety
///
/// If `addr` and the blob's `totalsize` lie in RAM ([`memmap::in_ram`]), that memory is
/// mapped and not written for the rest of the program (true of the DTB QEMU writes).
unsafe fn read_fdt(addr: usize) -> Result<Fdt<'static>, FdtError> {
    let in_ram = |len: usize| memmap::in_ram(addr as u64, len as u64);
    if !in_ram(8) {
        return Err(FdtError::BadLayout);
    }
    let base = core::ptr::with_exposed_provenance::<u8>(addr);
    // SAFETY: 8 bytes at `addr` are in mapped RAM (checked) and not written (contract).
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
    fn __staticbus_ivshmem_main(boot: Boot) -> !;
}

extern "C" fn rust_start(dtb: usize) -> ! {
    // SAFETY: `dtb` is what QEMU passed in x0: its generated DTB in RAM, which nothing
    // writes afterwards.
    let fdt = unsafe { read_fdt(dtb) };
    let bootargs = fdt.as_ref().map_or("", |f| f.bootargs());
    // SAFETY: `entry!` defines the symbol with exactly this signature.
    unsafe {
        __staticbus_ivshmem_main(Boot {
            dtb_addr: dtb,
            fdt,
            bootargs,
        })
    }
}

/// Defines the program's entry point: `entry!(main)` with `fn main(boot: Boot) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "__staticbus_ivshmem_main")]
        fn __staticbus_ivshmem_main(boot: $crate::rt::Boot) -> ! {
            let main: fn($crate::rt::Boot) -> ! = $main;
            main(boot)
        }
    };
}

/// PSCI `SYSTEM_OFF` (SMC32 function id).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI `SYSTEM_RESET`.
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

fn psci(function: u64) -> ! {
    // SAFETY: a PSCI call through HVC (the conduit QEMU's virt machine advertises without
    // EL2/EL3): SYSTEM_OFF and SYSTEM_RESET do not return when they succeed.
    unsafe { core::arch::asm!("hvc #0", in("x0") function, options(nostack)) };
    loop {
        // SAFETY: WFI only waits; interrupts are masked, so this parks the vCPU.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// Powers the VM off (QEMU exits).
pub fn poweroff() -> ! {
    psci(PSCI_SYSTEM_OFF)
}

/// Ends the VM after a failure: PSCI `SYSTEM_RESET` (QEMU exits with `-no-reboot`).
pub fn crash() -> ! {
    psci(PSCI_SYSTEM_RESET)
}

static FAILING: AtomicBool = AtomicBool::new(false);

extern "C" fn exception(kind: u64, esr: u64, elr: u64, far: u64, spsr: u64) -> ! {
    if FAILING.swap(true, Ordering::SeqCst) {
        crash();
    }
    crate::println!(
        "EXCEPTION vector {kind}: ESR {esr:#x} (EC {:#x}) ELR {elr:#x} FAR {far:#x} SPSR {spsr:#x}",
        (esr >> 26) & 0x3f
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
