//! Events check: the doorbell semantics the protocols rely on (docs/protocols.md §3.5, the
//! [`Events`] contract), tested against whatever delivers the events.
//!
//! Two domains share one channel (default [`DEFAULT_CHANNEL`]); its producer is the
//! `ringer`, its consumer the `sleeper`. Words of the region, each side on its own cache
//! line:
//!
//! | offset | written by | meaning |
//! |---|---|---|
//! | 0 | ringer | `hello` ([`HELLO`]) |
//! | 8 | ringer | `rung`: the burst's size, written after the burst |
//! | 16 | ringer | `seq`: the wake-up round |
//! | 64 | sleeper | `ready` ([`READY`]) |
//! | 72 | sleeper | `busy`: 1 while it does not look at its events |
//! | 80 | sleeper | `got`: events it took for the burst (written last) |
//! | 88 | sleeper | `ack`: the wake-up round it saw |
//!
//! 1. **Coalescing, nothing lost.** The sleeper takes whatever is pending, sets `busy` and
//!    stops looking; the ringer sends `burst=N` events (default 1000), then writes `rung`.
//!    (The sleeper polls `rung` without sleeping, so a ringer that never writes it is not
//!    a deadlock a fake bus can see; the boot's timeout covers it.) Once the sleeper sees
//!    `rung`, it waits: the sends came after its last look, so at
//!    least one event must be there (a lost event hangs here, which the boot's timeout
//!    turns into a failure), then it takes every other one pending and reports how many
//!    it got: fewer than `N` means the sends coalesced, more would be spurious events;
//!    the contract allows both and the protocols tolerate both.
//! 2. **No lost wake-up when the peer is about to sleep.** `rounds=R` (default 2000)
//!    rounds: the ringer waits a pseudo-random while (0..`spin=S` loop iterations, default
//!    4096), writes `seq = i` and notifies; the sleeper checks `seq` and, if it is not `i`
//!    yet, waits for an event — so the ring lands anywhere in the sleeper's
//!    check-then-sleep window, round after round. A lost wake-up hangs a round. The
//!    sleeper answers with `ack = i` and a notify; the ringer waits for it the same way.
//!
//! Both print `RESULT PASS …` or `RESULT FAIL <reason>`.

use crate::args::{ArgError, Args};
use crate::stats::Nanos;
use crate::Clock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use staticbus_guest::manifest::Role as ChannelRole;
use staticbus_guest::{Channel, Errno, Events, OpenError, Platform};

/// The channel used unless `channel=` says otherwise.
pub const DEFAULT_CHANNEL: &str = "bell";
/// Events in the coalescing burst unless `burst=` says otherwise.
pub const DEFAULT_BURST: u64 = 1000;
/// Wake-up rounds unless `rounds=` says otherwise.
pub const DEFAULT_ROUNDS: u64 = 2000;
/// Largest pause before a ring unless `spin=` says otherwise (loop iterations).
pub const DEFAULT_SPIN: u64 = 4096;
/// `hello` once the ringer is there.
pub const HELLO: u64 = 0x6f6c_6c65_6867_6e72; // "rnghello"
/// `ready` once the sleeper saw `hello`.
pub const READY: u64 = 0x7964_6165_7270_6c73; // "slpready"

const OFF_HELLO: usize = 0;
const OFF_RUNG: usize = 8;
const OFF_SEQ: usize = 16;
const OFF_READY: usize = 64;
const OFF_BUSY: usize = 72;
const OFF_GOT: usize = 80;
const OFF_ACK: usize = 88;

#[derive(Clone, Copy, Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Setup(&'static str),
    Open(&'a str, OpenError),
    Event(&'static str, Errno),
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Setup(m) => f.write_str(m),
            Fail::Open(name, e) => write!(f, "channel `{name}`: {e}"),
            Fail::Event(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl<'a> From<ArgError<'a>> for Fail<'a> {
    fn from(e: ArgError<'a>) -> Self {
        Fail::Arg(e)
    }
}

struct Words<'r> {
    hello: &'r AtomicU64,
    rung: &'r AtomicU64,
    seq: &'r AtomicU64,
    ready: &'r AtomicU64,
    busy: &'r AtomicU64,
    got: &'r AtomicU64,
    ack: &'r AtomicU64,
}

impl<'r> Words<'r> {
    fn new<E: Events>(ch: &'r Channel<'_, E>) -> Result<Self, Fail<'static>> {
        let r = ch.region();
        let word = |off| {
            r.atomic::<u64>(off)
                .ok_or(Fail::Setup("the channel's region is smaller than 96 bytes"))
        };
        Ok(Words {
            hello: word(OFF_HELLO)?,
            rung: word(OFF_RUNG)?,
            seq: word(OFF_SEQ)?,
            ready: word(OFF_READY)?,
            busy: word(OFF_BUSY)?,
            got: word(OFF_GOT)?,
            ack: word(OFF_ACK)?,
        })
    }
}

fn wait_until<E: Events>(
    ch: &Channel<'_, E>,
    cond: impl Fn() -> bool,
) -> Result<(), Fail<'static>> {
    while !cond() {
        ch.wait().map_err(|e| Fail::Event("wait", e))?;
    }
    Ok(())
}

fn notify<E: Events>(ch: &Channel<'_, E>) -> Result<(), Fail<'static>> {
    ch.notify_all().map_err(|e| Fail::Event("notify", e))
}

/// xorshift64: the pauses before the rings (any spread of values will do).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs one side of the check (see the module documentation).
pub fn run<P, C, W>(platform: &P, clock: &C, args: &Args<'_>, out: &mut W) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, clock, args, out);
    crate::result(out, r)
}

fn run_inner<'a, P, C, W>(
    platform: &P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
) -> Result<impl fmt::Display, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let burst = args.u64_or("burst", DEFAULT_BURST)?.max(1);
    let rounds = args.u64_or("rounds", DEFAULT_ROUNDS)?;
    let spin = args.u64_or("spin", DEFAULT_SPIN)?.max(1);
    let name = args.str_or("channel", DEFAULT_CHANNEL);
    let ch = Channel::open(platform, name).map_err(|e| Fail::Open(name, e))?;
    let w = Words::new(&ch)?;
    ch.clear_initial();
    let ringer = matches!(ch.role(), ChannelRole::Producer | ChannelRole::Writer);
    let me = if ringer { "ringer" } else { "sleeper" };
    let _ = writeln!(
        out,
        "events-check: {me} on `{name}`: burst {burst}, {rounds} wake-up rounds, pauses < {spin}"
    );
    let t0 = clock.now_ns();
    let got = if ringer {
        w.rung.store(0, SeqCst);
        w.seq.store(0, SeqCst);
        w.hello.store(HELLO, SeqCst);
        notify(&ch)?;
        wait_until(&ch, || w.ready.load(SeqCst) == READY)?;
        // 1. The burst, while the sleeper does not look.
        wait_until(&ch, || w.busy.load(SeqCst) == 1)?;
        for _ in 0..burst {
            notify(&ch)?;
        }
        w.rung.store(burst, SeqCst);
        wait_until(&ch, || w.got.load(SeqCst) != 0)?;
        let got = w.got.load(SeqCst);
        // 2. The wake-ups.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 1..=rounds {
            for _ in 0..next(&mut x) % spin {
                core::hint::spin_loop();
            }
            w.seq.store(i, SeqCst);
            notify(&ch)?;
            wait_until(&ch, || w.ack.load(SeqCst) == i)?;
        }
        got
    } else {
        w.busy.store(0, SeqCst);
        w.got.store(0, SeqCst);
        w.ack.store(0, SeqCst);
        wait_until(&ch, || w.hello.load(SeqCst) == HELLO)?;
        w.ready.store(READY, SeqCst);
        notify(&ch)?;
        // 1. Take what is pending, then stop looking until the burst is over.
        while ch.try_take().is_some() {}
        w.busy.store(1, SeqCst);
        notify(&ch)?;
        while w.rung.load(SeqCst) == 0 {
            core::hint::spin_loop();
        }
        ch.wait()
            .map_err(|e| Fail::Event("wait after the burst", e))?;
        let mut got = 1;
        while ch.try_take().is_some() {
            got += 1;
        }
        w.got.store(got, SeqCst);
        notify(&ch)?;
        // 2. The wake-ups.
        for i in 1..=rounds {
            wait_until(&ch, || w.seq.load(SeqCst) == i)?;
            w.ack.store(i, SeqCst);
            notify(&ch)?;
        }
        got
    };
    let ns = clock.now_ns().saturating_sub(t0);
    let _ = writeln!(
        out,
        "{me}: burst of {burst} events arrived as {got}; {rounds} wake-ups in {}",
        Nanos(ns)
    );
    Ok(Summary {
        me,
        burst,
        got,
        rounds,
    })
}

struct Summary {
    me: &'static str,
    burst: u64,
    got: u64,
    rounds: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events-check {}: burst {} -> {} events, {} wake-ups, none lost",
            self.me, self.burst, self.got, self.rounds
        )
    }
}
