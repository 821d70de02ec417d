//! Two domains bounce events over one static event channel on real Xen.
//!
//! One image serves both domains. Its command line (the kernel module's `bootargs` in the
//! host tree that `staticbus build` generated) says which domain it is and what to do:
//!
//! ```text
//! staticbus.domain=ping role=ping rounds=1000
//! ```
//!
//! The domain's manifest (compiled in from `staticbus build`'s output, see
//! `staticbus_guest_xen_aarch64::manifests`) gives the static event channel to the peer:
//! its local port, the peer's domid and port, and whether Xen bound this end second (so
//! that it starts pending). The guest checks the port with `EVTCHNOP_status`, then:
//!
//! * handshake, robust to which end Xen marked pending at bind time: the pending end
//!   clears the bind-time bit first; if that is `ping`, it then sends HELLO and `pong`
//!   waits for it; `pong` sends READY, `ping` waits for it. `ping` never sends before
//!   READY, so `pong` clearing its bind-time bit cannot swallow a real event, and `pong`
//!   sends READY only after `ping` cleared its own;
//! * `rounds` round trips: `ping` sends and waits, `pong` waits and sends. The two strictly
//!   alternate, so no two events can coalesce in the one pending bit.
//!
//! There is no shared memory: Debian's Xen 4.17 has no `CONFIG_STATIC_SHM`, and under its
//! XSM SILO policy static channels are the only domU↔domU path. `ping` prints the
//! round-trip times measured with the virtual counter (emulation numbers under QEMU TCG),
//! both print `RESULT PASS …` or `RESULT FAIL <reason>` and shut down (poweroff after a
//! pass, crash after a failure).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use core::fmt;
    use staticbus_guest::ops::PortState;
    use staticbus_guest::{Errno, EventChannels, Platform};
    use staticbus_guest_xen_aarch64::{
        bootargs, entry, manifests, println, rt, time, XenHypercall, XenPlatform,
    };
    use staticbus_manifest::Evtchn;

    entry!(main);

    /// Round-trip samples kept for percentiles (the rest only count in min/max/total).
    const MAX_SAMPLES: usize = 2048;

    fn main(boot: rt::Boot) -> ! {
        match run(&boot) {
            Ok(()) => rt::poweroff(),
            Err(fail) => {
                println!("RESULT FAIL {fail}");
                rt::crash()
            }
        }
    }

    /// Why the run failed.
    enum Fail {
        Setup(&'static str),
        Hypercall(&'static str, Errno),
        Port(u32, PortState),
    }

    impl fmt::Display for Fail {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Fail::Setup(m) => f.write_str(m),
                Fail::Hypercall(what, e) => write!(f, "{what}: {e}"),
                Fail::Port(port, st) => {
                    write!(
                        f,
                        "port {port} is not connected as the manifest says: {st:?}"
                    )
                }
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Role {
        Ping,
        Pong,
    }

    fn run(boot: &rt::Boot) -> Result<(), Fail> {
        let fdt = boot
            .fdt
            .as_ref()
            .map_err(|_| Fail::Setup("no device tree from Xen"))?;
        let args = boot.bootargs;
        let role = match bootargs::value(args, "role") {
            Some("ping") => Role::Ping,
            Some("pong") => Role::Pong,
            _ => return Err(Fail::Setup("bootargs need role=ping or role=pong")),
        };
        let rounds = bootargs::value_u32(args, "rounds").unwrap_or(1000);
        let Some(manifest) = manifests::for_bootargs(args) else {
            println!(
                "bootargs {args:?}; compiled-in manifests: {}",
                manifests::all().len()
            );
            return Err(Fail::Setup(
                "no compiled-in manifest for staticbus.domain= (build with STATICBUS_MANIFEST_DIR)",
            ));
        };
        println!(
            "{} (domid {}) of system {:?} for Xen {}: {} round trips, counter {} Hz",
            manifest.domain,
            manifest.domid,
            manifest.system,
            manifest.xen,
            rounds,
            time::frequency()
        );

        // SAFETY: the runtime's identity map maps SHARED_INFO_GFN as Normal memory that
        // nothing else uses; this is the only platform of the domain and lives until
        // shutdown; `fdt` is the tree Xen generated for this domain.
        let platform = unsafe { XenPlatform::new(XenHypercall, manifest, Some(*fdt)) }.map_err(
            |e| match e {
                staticbus_guest_xen_aarch64::PlatformError::MapSharedInfo(e) => {
                    Fail::Hypercall("XENMEM_add_to_physmap(shared_info)", e)
                }
            },
        )?;
        let ev = platform.events();
        let si = platform.shared_info();

        let evtchn = sole_evtchn(manifest.evtchns)?;
        let port = evtchn.local_port;
        let st = ev
            .status(port)
            .map_err(|e| Fail::Hypercall("EVTCHNOP_status", e))?;
        let expected = PortState::Interdomain {
            remote_dom: evtchn.remote_domid,
            remote_port: evtchn.remote_port,
        };
        if st.state != expected {
            return Err(Fail::Port(port, st.state));
        }
        // Xen's vPL011 backend splits lines longer than about 125 characters: keep
        // every line shorter.
        println!(
            "port {port}: interdomain to {} (domid {}) port {}, vcpu {}",
            evtchn.remote_domain, evtchn.remote_domid, evtchn.remote_port, st.vcpu
        );
        println!(
            "port {port} at start: pending={} upcall_pending={}; manifest initially_pending={}",
            ev.is_pending(port),
            si.upcall_pending(),
            evtchn.initially_pending
        );

        let t0 = time::ticks();
        match role {
            Role::Ping => ping(&ev, evtchn, rounds)?,
            Role::Pong => pong(&ev, evtchn, rounds)?,
        }
        let total = time::ticks_to_ns(time::ticks() - t0);
        println!(
            "RESULT PASS {rounds} round trips ({} {})",
            if role == Role::Ping { "ping" } else { "pong" },
            Micros(total)
        );
        Ok(())
    }

    /// The domain's one static event channel that belongs to no channel.
    fn sole_evtchn(evtchns: &'static [Evtchn]) -> Result<&'static Evtchn, Fail> {
        let mut plain = evtchns.iter().filter(|e| e.channel.is_none());
        match (plain.next(), plain.next()) {
            (Some(e), None) => Ok(e),
            (None, _) => Err(Fail::Setup(
                "the manifest has no plain static event channel",
            )),
            (Some(_), Some(_)) => Err(Fail::Setup(
                "the manifest has several plain static event channels",
            )),
        }
    }

    type Ev<'a> = EventChannels<'a, XenHypercall>;

    fn send(ev: &Ev<'_>, port: u32) -> Result<(), Fail> {
        ev.send(port)
            .map_err(|e| Fail::Hypercall("EVTCHNOP_send", e))
    }

    fn wait(ev: &Ev<'_>, port: u32) -> Result<(), Fail> {
        ev.wait(port)
            .map_err(|e| Fail::Hypercall("SCHEDOP_poll", e))
    }

    fn ping(ev: &Ev<'_>, e: &Evtchn, rounds: u32) -> Result<(), Fail> {
        let port = e.local_port;
        if e.initially_pending {
            ev.clear_initial(port);
            send(ev, port)?; // HELLO: my bind-time bit is gone
        }
        wait(ev, port)?; // READY
        let mut samples = [0u64; MAX_SAMPLES];
        let (mut min, mut max) = (u64::MAX, 0u64);
        let start = time::ticks();
        for i in 0..rounds as usize {
            let t = time::ticks();
            send(ev, port)?;
            wait(ev, port)?;
            let rtt = time::ticks() - t;
            min = min.min(rtt);
            max = max.max(rtt);
            if let Some(s) = samples.get_mut(i) {
                *s = rtt;
            }
        }
        let total = time::ticks() - start;
        let kept = &mut samples[..(rounds as usize).min(MAX_SAMPLES)];
        kept.sort_unstable();
        let pct = |p: usize| -> u64 {
            if kept.is_empty() {
                return 0;
            }
            time::ticks_to_ns(kept[(kept.len() - 1) * p / 100])
        };
        if rounds > 0 {
            println!(
                "ping: {rounds} round trips in {}; RTT min={} p50={} p90={} p99={} max={}",
                Micros(time::ticks_to_ns(total)),
                Micros(time::ticks_to_ns(min)),
                Micros(pct(50)),
                Micros(pct(90)),
                Micros(pct(99)),
                Micros(time::ticks_to_ns(max)),
            );
        }
        Ok(())
    }

    fn pong(ev: &Ev<'_>, e: &Evtchn, rounds: u32) -> Result<(), Fail> {
        let port = e.local_port;
        if e.initially_pending {
            ev.clear_initial(port);
        } else {
            wait(ev, port)?; // HELLO: ping's bind-time bit is gone
        }
        send(ev, port)?; // READY
        for _ in 0..rounds {
            wait(ev, port)?;
            send(ev, port)?;
        }
        Ok(())
    }

    /// A duration in nanoseconds, shown as `12.3us`, `45.6ms` or `1.234s`.
    struct Micros(u64);

    impl fmt::Display for Micros {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let ns = self.0;
            if ns >= 1_000_000_000 {
                write!(f, "{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000)
            } else if ns >= 1_000_000 {
                write!(f, "{}.{}ms", ns / 1_000_000, ns / 100_000 % 10)
            } else {
                write!(f, "{}.{}us", ns / 1000, ns / 100 % 10)
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-ping-pong is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (see scripts/xen/boot-ping-pong.sh)"
    );
    std::process::exit(2);
}
