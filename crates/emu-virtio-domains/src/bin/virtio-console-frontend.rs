//! The frontend domain of a virtio console served over virtio-msg:
//!
//! ```text
//! virtio-console-frontend DEVICE TEXT [lines=N]
//! ```
//!
//! Opens virtio device `DEVICE` of its manifest as the frontend
//! (`staticbus_virtio_msg::open`), waits for the device side, and drives the console with
//! `virtio_drivers`' own parts as its `VirtIOConsole` does — feature negotiation
//! (`Transport::begin_init`, the ring features `VirtIOConsole` asks for), a `VirtQueue` of
//! 2 for receive (queue 0) and one for transmit (queue 1) — over `staticbus_virtio_msg`'s
//! transport with every ring and buffer in the region. It sends `TEXT` one byte at a time
//! and after each byte waits for one byte of input, which must be the byte in upper case
//! (what the backend of examples/virtio-console, the bridge with vhost-device-console's
//! terminal echoing in upper case, sends back), then prints
//! `PASS virtio-console-frontend sent=N received=N text="…"`. With `lines=N` it sends `N`
//! lines `K: TEXT\n` (K from 1) the same way and prints
//! `PASS virtio-console-frontend lines=N sent=… received=… resent=… resets=…`.
//!
//! **Not `VirtIOConsole` itself**: its `send` spins on the used ring until the device
//! returns the buffer, so a device that restarts with a byte in flight would hang it for
//! ever. Here every wait — for a transmit buffer back, for input — sleeps in
//! `Link::wait_used` and ends with `Reset` when the device restarted (a new epoch) or
//! raised NEEDS_RESET.
//!
//! **Restart, and what "told sent" means.** A byte is *told sent* when the device gave its
//! transmit buffer back (the daemon took it and wrote it to its terminal); a line is told
//! sent when every byte of it was, in one life of the device, and each byte's echo came
//! back. A device restart mid-line (`Reset`) drops the driver, re-attaches the DMA pool,
//! initialises a new driver over the same link and sends the whole line again, so the
//! terminal sees every line exactly once, in order, each possibly preceded by a prefix of
//! itself that a dying device had already written (crates/cli/tests/virtio_daemons.rs
//! checks exactly that against the terminal's log). The frontend prints
//! `line K: the device restarted …` for each such retry.
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
use staticbus_virtio_msg::frontend::{CallError, Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::layout::OFF_DEV_EPOCH;
use staticbus_virtio_msg::open::open;
use virtio_drivers::device::common::Feature;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

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

/// The ring features `VirtIOConsole` negotiates (its console-specific ones, SIZE and
/// EMERG_WRITE, are not used here).
const FEATURES: Feature = Feature::RING_EVENT_IDX
    .union(Feature::RING_INDIRECT_DESC)
    .union(Feature::VERSION_1);
/// `VirtIOConsole`'s queue size.
const QUEUE_SIZE: usize = 2;
/// Bytes of the receive buffer.
const RX_BYTES: usize = 64;
/// Driver re-initialisations tolerated before the frontend gives up.
const MAX_RESETS: u32 = 100;

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-console-frontend: {why}");
    exit(1);
}

/// The device restarted or needs a reset: re-initialise and start the line again.
struct Reset;

/// virtio-drivers' console queues with waits that sleep on the link's doorbell and give up
/// on a device restart.
struct Console<'l, E: Events> {
    link: &'l Link<E>,
    transport: MsgTransport<'l, E>,
    rx: VirtQueue<RegionHal<Pool>, QUEUE_SIZE>,
    tx: VirtQueue<RegionHal<Pool>, QUEUE_SIZE>,
    /// The receive buffer, posted while `rx_token` is set (boxed: it must not move).
    rx_buf: Box<[u8; RX_BYTES]>,
    rx_token: Option<u16>,
}

impl<'l, E: Events> Console<'l, E> {
    /// Initialises the device as `VirtIOConsole::new` does and posts the receive buffer.
    fn new(link: &'l Link<E>, mut transport: MsgTransport<'l, E>) -> virtio_drivers::Result<Self> {
        let feat = transport.begin_init(FEATURES);
        let indirect = feat.contains(Feature::RING_INDIRECT_DESC);
        let event_idx = feat.contains(Feature::RING_EVENT_IDX);
        let rx = VirtQueue::new(&mut transport, 0, indirect, event_idx)?;
        let tx = VirtQueue::new(&mut transport, 1, indirect, event_idx)?;
        transport.finish_init();
        let mut c = Console {
            link,
            transport,
            rx,
            tx,
            rx_buf: Box::new([0; RX_BYTES]),
            rx_token: None,
        };
        c.post_rx()?;
        Ok(c)
    }

    fn post_rx(&mut self) -> virtio_drivers::Result<()> {
        // SAFETY: rx_buf is boxed (it does not move) and untouched until its token is
        // popped; when it is abandoned (a device restart) the driver is dropped and the DMA
        // pool forgets its bounce page before a new driver is made.
        let token = unsafe { self.rx.add(&[], &mut [&mut self.rx_buf[..]]) }?;
        self.rx_token = Some(token);
        if self.rx.should_notify() {
            self.transport.notify(0);
        }
        Ok(())
    }

    /// Sleeps until the device signals or restarts.
    fn wait(&self, what: &str) -> Result<(), Reset> {
        match self.link.wait_used() {
            Ok(_) => Ok(()),
            Err(CallError::Reset) => Err(Reset),
            Err(e) => fail(format_args!("waiting for {what}: {e}")),
        }
    }

    /// Sends one byte and waits until the device gave the buffer back (the byte is told
    /// sent).
    fn send(&mut self, b: u8) -> Result<(), Reset> {
        let buf = [b];
        // SAFETY: buf lives until the token is popped below or the driver is abandoned
        // (then the device only ever had its bounce page, which the pool forgets).
        let token = match unsafe { self.tx.add(&[&buf], &mut []) } {
            Ok(t) => t,
            Err(_) if self.link.needs_reset() => return Err(Reset),
            Err(e) => fail(format_args!("adding a transmit buffer: {e}")),
        };
        if self.tx.should_notify() {
            self.transport.notify(1);
        }
        while self.tx.peek_used() != Some(token) {
            self.wait("a transmit buffer")?;
        }
        // SAFETY: the same buffer as added above.
        unsafe { self.tx.pop_used(token, &[&buf], &mut []) }
            .unwrap_or_else(|e| fail(format_args!("completing a transmit buffer: {e}")));
        Ok(())
    }

    /// The next input (one byte, from vhost-device-console 0.1.0), waiting for it; the
    /// receive buffer goes back to the device [`SETTLE`] after it came.
    fn recv(&mut self) -> Result<u8, Reset> {
        let token = self
            .rx_token
            .unwrap_or_else(|| fail("no receive buffer posted"));
        while self.rx.peek_used() != Some(token) {
            self.wait("input")?;
        }
        // SAFETY: the same buffer as posted in post_rx.
        let len = unsafe { self.rx.pop_used(token, &[], &mut [&mut self.rx_buf[..]]) }
            .unwrap_or_else(|e| fail(format_args!("completing the receive buffer: {e}")));
        self.rx_token = None;
        if len != 1 {
            fail(format_args!(
                "{len} bytes of input in one buffer, one expected: {:?}",
                String::from_utf8_lossy(&self.rx_buf[..(len as usize).min(RX_BYTES)])
            ));
        }
        let b = self.rx_buf[0];
        std::thread::sleep(SETTLE);
        match self.post_rx() {
            Ok(()) => Ok(b),
            Err(_) if self.link.needs_reset() => Err(Reset),
            Err(e) => fail(format_args!("posting the receive buffer: {e}")),
        }
    }
}

impl<E: Events> Drop for Console<'_, E> {
    fn drop(&mut self) {
        // As VirtIOConsole does: the device forgets the queues before their memory goes.
        self.transport.queue_unset(0);
        self.transport.queue_unset(1);
    }
}

/// A new driver over `link` on a fresh DMA pool, for as long as the device restarts while
/// it initialises (each retry counts in `resets`).
fn driver<'l, E: Events>(link: &'l Link<E>, resets: &mut u32) -> Console<'l, E> {
    loop {
        if *resets > MAX_RESETS {
            fail(format_args!("more than {MAX_RESETS} resets"));
        }
        Pool::pool().attach(*link.region(), link.guest_base());
        match link.transport() {
            Ok(t) => match Console::new(link, t) {
                Ok(c) if !link.needs_reset() => return c,
                Ok(_) => {}
                Err(_) if link.needs_reset() => {}
                Err(e) => fail(format_args!("driver initialisation: {e}")),
            },
            Err(CallError::Reset) => {}
            Err(e) => fail(format_args!("device info: {e}")),
        }
        *resets += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, text, lines) = match &args[..] {
        [name, text] => (name, text, None),
        [name, text, l] => match l.strip_prefix("lines=").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => (name, text, Some(n)),
            _ => {
                eprintln!("virtio-console-frontend: `{l}`: give lines=N (N > 0)");
                exit(2);
            }
        },
        _ => {
            eprintln!("usage: virtio-console-frontend DEVICE TEXT [lines=N]");
            exit(2);
        }
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
    let to_send: Vec<String> = match lines {
        None => vec![text.clone()],
        Some(n) => (1..=n).map(|k| format!("{k}: {text}\n")).collect(),
    };
    let total: usize = to_send.iter().map(String::len).sum();
    let mut resets = 0u32;
    let mut console = Some(driver(&link, &mut resets));
    println!(
        "console `{name}` up (epoch {}): sending {total} bytes in {} line(s), one byte at a time",
        link.epoch(),
        to_send.len(),
    );
    let (mut sent, mut resent) = (0usize, 0usize);
    let mut received = Vec::with_capacity(total);
    for (k, line) in to_send.iter().enumerate() {
        'attempt: loop {
            let c = match console.as_mut() {
                Some(c) => c,
                None => console.insert(driver(&link, &mut resets)),
            };
            let mut echo = Vec::with_capacity(line.len());
            for (i, b) in line.bytes().enumerate() {
                let r = c.send(b).and_then(|()| c.recv());
                let got = match r {
                    Ok(got) => got,
                    Err(Reset) => {
                        console = None;
                        resets += 1;
                        resent += i;
                        println!(
                            "line {}: the device restarted or needs a reset (epoch {}) after {i} \
                             of its {} bytes; re-initialising, sending the line again",
                            k + 1,
                            region
                                .load_le::<u64>(OFF_DEV_EPOCH, std::sync::atomic::Ordering::Acquire)
                                .unwrap_or(0),
                            line.len()
                        );
                        continue 'attempt;
                    }
                };
                if got != b.to_ascii_uppercase() {
                    fail(format_args!(
                        "line {} byte {i}: sent {b:#04x}, received {got:#04x}, not its upper \
                         case (received so far: {:?})",
                        k + 1,
                        String::from_utf8_lossy(&echo)
                    ));
                }
                echo.push(got);
            }
            sent += line.len();
            received.extend_from_slice(&echo);
            break;
        }
    }
    drop(console);
    Pool::pool().detach();
    link.detach();
    match lines {
        None => println!(
            "PASS virtio-console-frontend sent={sent} received={} text={:?}",
            received.len(),
            String::from_utf8_lossy(&received)
        ),
        Some(n) => println!(
            "PASS virtio-console-frontend lines={n} sent={sent} received={} resent={resent} \
             resets={resets}",
            received.len()
        ),
    }
}
