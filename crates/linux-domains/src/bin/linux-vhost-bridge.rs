//! `linux-vhost-bridge`: a Linux domain as the backend of a virtio device, the device
//! side of virtio-msg bridged to an unmodified vhost-user daemon started as a child
//! process ([`staticbus_linux_domains::vhost`]; docs/linux.md, "Linux as a virtio
//! backend"). Its words (the kernel command line's, from `linux-init`):
//!
//! ```text
//! device=NAME [config-size=BYTES] [terminal=upper-echo] [create=FILE:BYTES]
//! ```
//!
//! name the `[[virtio]]` device of the domain's manifest it serves; the daemon and its
//! arguments are the device's `serve = { vhost-user = …, args = […] }` (`{socket}` in the
//! arguments becomes the socket path the bridge chose). `terminal=upper-echo` gives the
//! daemon a pseudo-terminal as its standard input and output and writes back every byte
//! it prints there in upper case (vhost-device-console's `nested` backend), printing each
//! line received (`linux-vhost-bridge: terminal: received "…"`). `create=FILE:BYTES`
//! makes `FILE` of `BYTES` zero bytes first (a disk for qemu-storage-daemon) and, after the
//! daemon has exited, prints its size and digest (`disk after the daemon exited: … bytes,
//! digest 0x…`, the digest the blk frontend prints for the disk it expects).
//!
//! It serves until the frontend detaches, stops the daemon and prints
//! `RESULT PASS linux-vhost-bridge device=… work=… kicks=… calls=… …`.

use staticbus_guest::Platform;
use staticbus_linux_domains::vhost::{options_from_args, serve, spec_from_args};
use staticbus_linux_domains::{describe, options};
use staticbus_programs::Args;
use std::path::Path;

fn main() {
    let line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let args = Args::new(&line);
    let platform = match staticbus_guest_linux::LinuxPlatform::open(&options()) {
        Ok(p) => p,
        Err(e) => {
            println!("RESULT FAIL {e}");
            std::process::exit(1);
        }
    };
    let spec = match spec_from_args(platform.manifest(), &args)
        .and_then(|s| Ok((s, options_from_args(&args)?)))
    {
        Ok(s) => s,
        Err(e) => {
            println!("RESULT FAIL linux-vhost-bridge: {e}");
            std::process::exit(1);
        }
    };
    let (spec, opts) = spec;
    for l in describe(&platform) {
        println!("linux-vhost-bridge: {l}");
    }
    let mut say = |s: &str| println!("linux-vhost-bridge: {s}");
    match serve(&platform, &spec, Path::new("/bin"), &opts, &mut say) {
        Ok(s) => {
            println!(
                "linux-vhost-bridge: frontend attached for {} ms; daemon {}",
                s.attached_for.as_millis(),
                s.daemon_exit
            );
            if let Some((bytes, digest)) = s.disk {
                println!(
                    "linux-vhost-bridge: disk after the daemon exited: {bytes} bytes, digest {digest:#018x}"
                );
            }
            let echo = match &s.echo {
                Some((echoed, lines)) => format!(" echoed={echoed} lines={}", lines.len()),
                None => String::new(),
            };
            println!(
                "RESULT PASS linux-vhost-bridge device={} work={} turns={} kicks={} calls={} epoch={}{echo}",
                spec.device, s.work, s.turns, s.kicks, s.calls, s.epoch
            );
        }
        Err(e) => {
            println!("RESULT FAIL linux-vhost-bridge: {e}");
            std::process::exit(1);
        }
    }
}
