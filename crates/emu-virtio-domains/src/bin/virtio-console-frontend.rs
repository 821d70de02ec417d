//! The frontend domain of a virtio console served over virtio-msg:
//!
//! ```text
//! virtio-console-frontend DEVICE TEXT
//! ```
//!
//! Opens virtio device `DEVICE` of its manifest as the frontend
//! (`staticbus_virtio_msg::open`), waits for the device side, and runs
//! `virtio_drivers::device::console::VirtIOConsole`, unchanged, over
//! `staticbus_virtio_msg`'s transport with every ring and buffer in the region. It sends
//! `TEXT` one byte at a time and after each byte waits for one byte of input, which must
//! be the byte in upper case (what the backend of examples/virtio-console, the bridge with
//! vhost-device-console's terminal echoing in upper case, sends back), then prints
//! `PASS virtio-console-frontend sent=N received=N text="…"`.
//!
//! One byte in flight each way: vhost-device-console 0.1.0 adds one used element per byte
//! to a single receive buffer, so input of several bytes in one read would reach the driver
//! corrupted. And the driver gives the daemon its next receive buffer only after a pause
//! ([`SETTLE`]): after filling a buffer the daemon re-checks the available ring, and a
//! buffer that is back already then is taken off the ring and never returned (its
//! `handle_event`; docs/virtio.md, crates/vhost-bridge/tests/console.rs). The pause is a
//! workaround of that defect, not a measurement.

use std::process::exit;
use std::time::Duration;

use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::{Events, Platform};
use staticbus_virtio_msg::frontend::{Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::open::open;
use virtio_drivers::device::console::VirtIOConsole;

struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

/// How long the driver leaves the daemon alone after a byte arrived before it gives the
/// receive buffer back (see the module documentation).
const SETTLE: Duration = Duration::from_millis(20);

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-console-frontend: {why}");
    exit(1);
}

/// The next byte of input, waiting on the link's doorbell for it.
fn next_byte<E: Events>(
    console: &mut VirtIOConsole<RegionHal<Pool>, MsgTransport<'_, E>>,
    link: &Link<E>,
) -> u8 {
    loop {
        match console.recv(false) {
            Ok(Some(b)) => {
                std::thread::sleep(SETTLE);
                return match console.recv(true) {
                    Ok(Some(again)) if again == b => b,
                    other => fail(format_args!("the byte seen ({b:#04x}) is gone: {other:?}")),
                };
            }
            Ok(None) => {
                if let Err(e) = link.wait_used() {
                    fail(format_args!("waiting for input: {e}"));
                }
            }
            Err(e) => fail(format_args!("receiving: {e}")),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, text] = &args[..] else {
        eprintln!("usage: virtio-console-frontend DEVICE TEXT");
        exit(2);
    };
    if text.is_empty() {
        eprintln!("virtio-console-frontend: TEXT is empty");
        exit(2);
    }
    let p = staticbus_guest_emu::EmuPlatform::connect().unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    });
    let opened = open(&p, name, VirtioRole::Frontend).unwrap_or_else(|e| fail(e));
    let (region, port, guest_base) = (opened.region, opened.port, opened.guest_base);
    let link = Link::attach_waiting(region, || p.events(), port, guest_base)
        .unwrap_or_else(|e| fail(format_args!("device `{name}`: {e}")));
    Pool::pool().attach(*link.region(), guest_base);
    let transport = link
        .transport()
        .unwrap_or_else(|e| fail(format_args!("device info: {e}")));
    let mut console = VirtIOConsole::<RegionHal<Pool>, _>::new(transport)
        .unwrap_or_else(|e| fail(format_args!("driver initialisation: {e}")));
    println!(
        "console `{name}` up (epoch {}): sending {} bytes, one at a time",
        link.epoch(),
        text.len()
    );
    let mut received = Vec::with_capacity(text.len());
    for (i, &b) in text.as_bytes().iter().enumerate() {
        console
            .send(b)
            .unwrap_or_else(|e| fail(format_args!("sending byte {i}: {e}")));
        let got = next_byte(&mut console, &link);
        if got != b.to_ascii_uppercase() {
            fail(format_args!(
                "byte {i}: sent {b:#04x}, received {got:#04x}, not its upper case \
                 (received so far: {:?})",
                String::from_utf8_lossy(&received)
            ));
        }
        received.push(got);
    }
    drop(console);
    Pool::pool().detach();
    link.detach();
    println!(
        "PASS virtio-console-frontend sent={} received={} text={:?}",
        text.len(),
        received.len(),
        String::from_utf8_lossy(&received)
    );
}
