//! Running a `staticbus-programs` program as a bare-metal VM on the ivshmem platform
//! (`aarch64` + `target_os = "none"` only).
//!
//! [`run`] picks the domain's manifest by `staticbus.domain=` on the command line, reads
//! the board from QEMU's device tree, brings the ivshmem device up, checks that the server
//! gave this VM its domid as peer id, prints where each region of the manifest is in BAR2
//! (or why it is unusable), runs the program with the virtual counter as its clock and the
//! console as its output, and powers the VM off after a pass (resets it, which ends QEMU
//! with `-no-reboot`, after a failure). Just before the program's `RESULT` line it prints
//! the doorbell counts (`ivshmem: rung N taken N sleeps N`). A setup failure prints
//! `RESULT FAIL <reason>` itself.

use core::fmt;
use staticbus_guest_ivshmem_aarch64::board::Board;
use staticbus_guest_ivshmem_aarch64::device::{self, VirtDoorbells};
use staticbus_guest_ivshmem_aarch64::{
    console, manifests, println, rt, set_console, time, IvshmemPlatform,
};
use staticbus_programs::{Args, Clock};

/// The generic timer's virtual counter as a [`Clock`] (emulation time under QEMU TCG).
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterClock;

impl Clock for CounterClock {
    fn now_ns(&self) -> u64 {
        time::ticks_to_ns(time::ticks())
    }
}

/// The platform of a VM.
pub type Platform = IvshmemPlatform<VirtDoorbells>;

/// A `staticbus-programs` program: `run(platform, clock, args, out) -> passed`.
pub type App = fn(&Platform, &CounterClock, &Args<'_>, &mut Output) -> bool;

const OUTPUT_LINE: usize = 256;

/// A program's output: the console, a line at a time, so the doorbell counts go right
/// before the program's `RESULT` line.
pub struct Output {
    line: [u8; OUTPUT_LINE],
    len: usize,
    split: bool,
    summary: bool,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("buffered", &self.len)
            .finish_non_exhaustive()
    }
}

impl Output {
    fn end_line(&mut self) {
        if self.summary && !self.split && self.line[..self.len].starts_with(b"RESULT ") {
            self.summary = false;
            println!("ivshmem: {}", device::COUNTS);
        }
        let c = console();
        c.write_bytes(&self.line[..self.len]);
        c.write_byte(b'\n');
        self.len = 0;
        self.split = false;
    }

    fn flush(&mut self) {
        console().write_bytes(&self.line[..self.len]);
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

/// Sets the VM up, runs `app` and ends the VM (see the module documentation).
pub fn run(boot: rt::Boot, app: App) -> ! {
    match setup(&boot) {
        Ok(platform) => {
            let mut out = Output {
                line: [0; OUTPUT_LINE],
                len: 0,
                split: false,
                summary: true,
            };
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

fn setup(boot: &rt::Boot) -> Result<Platform, &'static str> {
    let fdt = *boot
        .fdt
        .as_ref()
        .map_err(|_| "no device tree from QEMU in x0")?;
    let board = Board::from_fdt(&fdt).map_err(|e| {
        println!("board: {e}");
        "the device tree does not describe a usable virt machine"
    })?;
    // SAFETY: `Board::from_fdt` checked the UART is in the runtime's Device blocks; QEMU's
    // tree names it as a PL011.
    unsafe { set_console(board.uart) };
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
    let dev = device::bring_up(&board).map_err(|e| {
        println!("ivshmem: {e}");
        "the ivshmem device could not be brought up"
    })?;
    println!(
        "{} (domid {}): ivshmem {:02x}:{:02x}.{} peer id {}, BAR2 {:#x} bytes at {:#x}, \
         {} vectors (SPI {}+); counter {} Hz; bootargs {:?}",
        manifest.domain,
        manifest.domid,
        dev.bdf.0,
        dev.bdf.1,
        dev.bdf.2,
        dev.id,
        dev.shm.1,
        dev.shm.0,
        dev.vectors,
        dev.spi_base,
        time::frequency(),
        boot.bootargs
    );
    if dev.id != manifest.domid {
        println!(
            "ivshmem: the server gave peer id {}, the manifest says domid {}",
            dev.id, manifest.domid
        );
        return Err("the peer id is not the domain's domid (one server socket per domain)");
    }
    // SAFETY: `bring_up` placed BAR2 at SHM_BASE, which the boot code maps Normal
    // write-back, with a size it checked against SHM_MAX; nothing else in the program
    // touches it but Regions and the control-page reads of the doorbells.
    let platform =
        unsafe { IvshmemPlatform::new(dev.doorbells, manifest, dev.shm.0, dev.shm.1, dev.vectors) };
    for r in manifest.regions {
        match platform.find_region(r.shm_id) {
            Ok((base, len)) => println!("region {:?}: {len:#x} bytes at {base:#x}", r.shm_id),
            Err(e) => println!("region {:?}: unusable: {e}", r.shm_id),
        }
    }
    Ok(platform)
}
