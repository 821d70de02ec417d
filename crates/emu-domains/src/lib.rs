//! Helpers shared by the example domain programs: attaching to the emulator, running a
//! `staticbus-programs` program (the same source as the bare-metal Xen guests), a tiny
//! word-based mailbox on a channel's shared region (the real protocols come with the
//! `proto` crate), and latency statistics.
//!
//! The mailbox uses three 64-bit words at the start of the region: `ready` (offset 0), `seq`
//! (offset 8, written by the writer side) and `ack` (offset 16, written by the reader
//! side). Every wait re-checks the word after each wake-up, so the bind-time pending bit
//! and spurious events are harmless.

use staticbus_guest::{Channel, Events, PlatformChannel};
use staticbus_guest_emu::EmuPlatform;
use std::sync::atomic::AtomicU64;

/// Offset of the `ready` word.
pub const READY: usize = 0;
/// Offset of the `seq` word.
pub const SEQ: usize = 8;
/// Offset of the `ack` word.
pub const ACK: usize = 16;

/// Attaches to the emulator or exits with a message.
pub fn connect() -> EmuPlatform {
    match EmuPlatform::connect() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}

/// Opens a channel by name or exits with a message.
pub fn open<'p>(p: &'p EmuPlatform, name: &str) -> PlatformChannel<'p, EmuPlatform> {
    match Channel::open(p, name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open channel `{name}`: {e}");
            std::process::exit(2);
        }
    }
}

/// The 64-bit word at `offset` of the channel's region.
pub fn word<'a, E: Events>(ch: &'a Channel<'_, E>, offset: usize) -> &'a AtomicU64 {
    ch.region()
        .atomic::<u64>(offset)
        .expect("the region holds the mailbox words")
}

/// Waits on the channel's event ports until `cond` holds (checked before every sleep).
pub fn wait_until<E: Events>(ch: &Channel<'_, E>, cond: impl Fn() -> bool) {
    while !cond() {
        if let Err(e) = ch.wait() {
            eprintln!("wait failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Percentiles of a set of durations in nanoseconds.
pub struct Stats {
    /// Sorted samples.
    pub sorted: Vec<u64>,
}

impl Stats {
    /// Sorts the samples.
    pub fn new(mut samples: Vec<u64>) -> Stats {
        samples.sort_unstable();
        Stats { sorted: samples }
    }

    /// The `p`-th percentile (0–100).
    pub fn pct(&self, p: f64) -> u64 {
        if self.sorted.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * (self.sorted.len() - 1) as f64).round() as usize;
        self.sorted[i.min(self.sorted.len() - 1)]
    }

    /// One line: count, min, p50, p90, p99, max in microseconds.
    pub fn line(&self) -> String {
        let us = |v: u64| v as f64 / 1000.0;
        format!(
            "n={} min={:.1}us p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
            self.sorted.len(),
            us(self.pct(0.0)),
            us(self.pct(50.0)),
            us(self.pct(90.0)),
            us(self.pct(99.0)),
            us(self.pct(100.0))
        )
    }
}

/// Wall-clock time for `staticbus-programs` programs.
#[derive(Debug)]
pub struct StdClock(std::time::Instant);

impl StdClock {
    /// A clock whose origin is now.
    pub fn new() -> StdClock {
        StdClock(std::time::Instant::now())
    }
}

impl Default for StdClock {
    fn default() -> StdClock {
        StdClock::new()
    }
}

impl staticbus_programs::Clock for StdClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Standard output as a `core::fmt::Write`, for `staticbus-programs` programs.
#[derive(Debug, Default)]
pub struct Stdout;

impl std::fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(s.as_bytes())
            .map_err(|_| std::fmt::Error)
    }
}

/// A `staticbus-programs` program: `run(platform, clock, args, out) -> passed`.
pub type App = fn(&EmuPlatform, &StdClock, &staticbus_programs::Args<'_>, &mut Stdout) -> bool;

/// Attaches to the emulator and runs `app` with `args` (`key=value` words, as on a Xen
/// guest's command line); returns whether it passed.
pub fn run_app(app: App, args: &[String]) -> bool {
    let p = connect();
    let line = args.join(" ");
    app(
        &p,
        &StdClock::new(),
        &staticbus_programs::Args::new(&line),
        &mut Stdout,
    )
}

/// Exits 0 if `passed`, 1 if not.
pub fn exit(passed: bool) -> ! {
    std::process::exit(if passed { 0 } else { 1 })
}

/// Parses an optional count argument.
pub fn count_arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Keeps `SeqCst` in scope for the binaries.
pub use std::sync::atomic::Ordering;
