//! Running a `staticbus-apps` program as a bare-metal Xen guest (`aarch64` +
//! `target_os = "none"` only).
//!
//! [`run`] does what every such guest does before and after the program: picks the
//! domain's manifest by `staticbus.domain=` on the command line, maps `shared_info`
//! ([`XenPlatform::new`]), prints where Xen mapped each of the manifest's shared regions
//! (or why one is unusable), runs the program with the virtual counter as its clock
//! ([`CounterClock`]), the command line as its arguments and the vPL011 as its output,
//! then powers the domain off after a pass and crashes it after a failure. A setup
//! failure prints `RESULT FAIL <reason>` itself.

use crate::pl011::{self, Pl011};
use crate::{manifests, println, rt, time, XenHypercall, XenPlatform};
use staticbus_apps::{Args, Clock};

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

/// A `staticbus-apps` program: `run(platform, clock, args, out) -> passed`.
pub type App = fn(&Platform, &CounterClock, &Args<'_>, &mut Pl011) -> bool;

/// Sets the guest up, runs `app` and shuts the domain down (see the module
/// documentation).
pub fn run(boot: rt::Boot, app: App) -> ! {
    match setup(&boot) {
        Ok(platform) => {
            let passed = app(
                &platform,
                &CounterClock,
                &Args::new(boot.bootargs),
                &mut pl011::console(),
            );
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
    let platform = unsafe { XenPlatform::new(XenHypercall, manifest, Some(fdt)) }
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
    Ok(platform)
}
