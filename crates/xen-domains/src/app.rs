//! Running a `staticbus-programs` program as a bare-metal Xen guest (`aarch64` +
//! `target_os = "none"` only).
//!
//! [`run`] does what every such guest does before and after the program: picks the
//! domain's manifest by `staticbus.domain=` on the command line, maps `shared_info`
//! ([`XenPlatform::new`]), prints where Xen mapped each of the manifest's shared regions
//! (or why one is unusable), sets up how the domain blocks (`wait=poll|irq`, see
//! [`staticbus_guest_xen_aarch64::irq`]; with `irq` it enables the upcall PPI at the guest's GIC) and prints it
//! (`wait: irq (GICv3, PPI 31)`), runs the program with the virtual counter as its clock
//! ([`CounterClock`]), the command line as its arguments and the vPL011 as its output
//! ([`Output`]: with `wait=irq`, the interrupt counts are printed just before the
//! program's `RESULT` line), then powers the domain off after a pass and crashes it after
//! a failure. A setup failure prints `RESULT FAIL <reason>` itself.

use core::fmt;
use staticbus_guest_xen_aarch64::gic::{self, Gic};
use staticbus_guest_xen_aarch64::irq::{self, WaitMode};
use staticbus_guest_xen_aarch64::pl011::{self, Pl011};
use staticbus_guest_xen_aarch64::{manifests, println, rt, time, XenHypercall, XenPlatform};
use staticbus_programs::{Args, Clock};

/// The generic timer's virtual counter as a [`Clock`] (emulation time under QEMU TCG).
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterClock;

impl Clock for CounterClock {
    fn now_ns(&self) -> u64 {
        time::ticks_to_ns(time::ticks())
    }
}

/// The platform of a bare-metal domU.
pub type Platform = XenPlatform<XenHypercall>;

/// A `staticbus-programs` program: `run(platform, clock, args, out) -> passed`.
pub type App = fn(&Platform, &CounterClock, &Args<'_>, &mut Output) -> bool;

/// Bytes of a program's output line [`Output`] holds back (longer lines are written in
/// pieces, unexamined).
const OUTPUT_LINE: usize = 256;

/// A program's output: the vPL011, written a line at a time so that the runtime can put
/// its own summary line right before the program's `RESULT` line (the `staticbus boot`
/// watcher stops at the last domain's `RESULT` line, so anything printed after it may
/// never be seen).
pub struct Output {
    uart: Pl011,
    line: [u8; OUTPUT_LINE],
    len: usize,
    /// The current line was partly written already (it was longer than the buffer).
    split: bool,
    /// With `wait=irq`: the summary is still to be printed.
    irq_summary: bool,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("buffered", &self.len)
            .field("irq_summary", &self.irq_summary)
            .finish_non_exhaustive()
    }
}

impl Output {
    fn new(uart: Pl011, mode: WaitMode) -> Self {
        Output {
            uart,
            line: [0; OUTPUT_LINE],
            len: 0,
            split: false,
            irq_summary: mode == WaitMode::Irq,
        }
    }

    fn end_line(&mut self) {
        if self.irq_summary && !self.split && self.line[..self.len].starts_with(b"RESULT ") {
            self.irq_summary = false;
            println!("wait: irq: {}", irq::counts());
        }
        self.uart.write_bytes(&self.line[..self.len]);
        self.uart.write_byte(b'\n');
        self.len = 0;
        self.split = false;
    }

    /// Writes an unfinished line.
    fn flush(&mut self) {
        self.uart.write_bytes(&self.line[..self.len]);
        self.split |= self.len > 0;
        self.len = 0;
    }
}

impl fmt::Write for Output {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.end_line();
            } else {
                if self.len == OUTPUT_LINE {
                    self.flush();
                }
                self.line[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Sets the guest up, runs `app` and shuts the domain down (see the module
/// documentation).
pub fn run(boot: rt::Boot, app: App) -> ! {
    match setup(&boot) {
        Ok((platform, mode)) => {
            let mut out = Output::new(pl011::console(), mode);
            let passed = app(
                &platform,
                &CounterClock,
                &Args::new(boot.bootargs),
                &mut out,
            );
            out.flush();
            if passed {
                rt::poweroff()
            } else {
                rt::crash()
            }
        }
        Err(why) => {
            println!("RESULT FAIL {why}");
            rt::crash()
        }
    }
}

fn setup(boot: &rt::Boot) -> Result<(Platform, WaitMode), &'static str> {
    let fdt = *boot
        .fdt
        .as_ref()
        .map_err(|_| "no device tree from Xen in x0")?;
    let Some(manifest) = manifests::for_bootargs(boot.bootargs) else {
        println!(
            "bootargs {:?}; compiled-in manifests: {}",
            boot.bootargs,
            manifests::all().len()
        );
        return Err(
            "no compiled-in manifest for staticbus.domain= (build with STATICBUS_MANIFEST_DIR)",
        );
    };
    // SAFETY: the runtime's identity map maps SHARED_INFO_GFN as Normal memory that
    // nothing else uses; this is the only platform of the domain and lives until shutdown;
    // `fdt` is the tree Xen generated for this domain, whose shared regions (if Normal in
    // the runtime's map) are accessed only through Regions.
    let mut platform = unsafe { XenPlatform::new(XenHypercall, manifest, Some(fdt)) }
        .map_err(|_| "XENMEM_add_to_physmap(shared_info) failed")?;
    println!(
        "{} (domid {}): counter {} Hz; bootargs {:?}",
        manifest.domain,
        manifest.domid,
        time::frequency(),
        boot.bootargs
    );
    for r in manifest.regions {
        match platform.find_region(r.shm_id) {
            Ok((base, len)) => println!("region {:?}: {len:#x} bytes at {base:#x}", r.shm_id),
            Err(e) => println!("region {:?}: unusable: {e}", r.shm_id),
        }
    }
    let mode = WaitMode::from_bootargs(boot.bootargs).map_err(|v| {
        println!("{}={v:?}: expected poll or irq", irq::WAIT_KEY);
        "bad wait= on the command line"
    })?;
    let gic = Gic::from_fdt(&fdt);
    match mode {
        WaitMode::Poll => match gic {
            Ok(g) => println!(
                "wait: poll (SCHEDOP_poll, IRQs masked; {} unused)",
                g.version()
            ),
            Err(e) => println!("wait: poll (SCHEDOP_poll, IRQs masked; {e})"),
        },
        WaitMode::Irq => {
            let g = gic.map_err(|e| {
                println!("wait=irq: {e}");
                "wait=irq: no usable GIC in the guest device tree"
            })?;
            g.enable_upcall().map_err(|e| {
                println!("wait=irq: {e}");
                "wait=irq: the GIC could not be set up"
            })?;
            platform.set_upcall_sleep(Some(&irq::WfiSleep));
            println!("wait: irq ({}, PPI {})", g.version(), gic::UPCALL_INTID);
        }
    }
    Ok((platform, mode))
}
