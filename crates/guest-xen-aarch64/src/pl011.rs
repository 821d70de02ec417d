//! The vPL011 console (SBSA UART subset emulated by Xen at `GUEST_PL011_BASE`, spec §5.7).
//!
//! A domain gets it when its host-tree node has the `vpl011` property (staticbus emits it
//! by default: `vpl011 = true`). Xen prints the output of a domain without serial input
//! focus line by line as `(XEN) DOM<id>: <line>`, at normal log level, so it shows on a
//! release build of Xen (unlike `CONSOLEIO_write`).

pub use staticbus_baremetal_aarch64::pl011::Pl011;

/// The guest's vPL011 at `GUEST_PL011_BASE` (`0x22000000`), for [`print!`](crate::print)
/// and [`println!`](crate::println).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn console() -> Pl011 {
    // SAFETY: the boot code maps the first GiB, including GUEST_PL011_BASE, as Device
    // memory; Xen emulates a PL011 there for a domain with `vpl011` (without it, writes
    // fault and the exception handler reports the abort). The guest is single-threaded
    // with interrupts masked, so writers never interleave within a byte.
    unsafe { Pl011::new(staticbus_abi::guest::PL011_BASE as usize) }
}

/// Prints to the vPL011 console (bare-metal builds only).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let _ = ::core::write!($crate::pl011::console(), $($arg)*);
    }};
}

/// Prints a line to the vPL011 console (bare-metal builds only).
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let mut c = $crate::pl011::console();
        let _ = ::core::write!(c, $($arg)*);
        c.write_byte(b'\n');
    }};
}
