//! Ping-pong: two domains bounce a counter, `ping` measures the round trips.
//!
//! Arguments (all optional):
//!
//! * `rounds=N` — round trips (default [`DEFAULT_ROUNDS`]);
//! * `channel=NAME` — the channel to use (default [`DEFAULT_CHANNEL`]);
//! * `role=ping|pong` — this domain's side. Default: from the channel, `ping` for the
//!   producer (or a writer) and `pong` for the consumer (or a reader). Required in the
//!   events-only form.
//!
//! # Over a channel (the manifest has the channel)
//!
//! The channel's event pair is the doorbell and four 64-bit words of its region carry
//! the state, each side writing its own cache line:
//!
//! | offset | written by | meaning |
//! |---|---|---|
//! | 0 | ping | `hello`: [`HELLO`] once ping is there |
//! | 8 | ping | `seq`: the round ping started |
//! | 64 | pong | `ready`: [`READY`] once pong saw `hello` |
//! | 72 | pong | `ack`: the round pong answered |
//!
//! Both sides first check their ports with `EVTCHNOP_status` ([`Channel::verify`]) and
//! consume the bind-time pending bit ([`Channel::clear_initial`]). `ping` zeroes `seq`,
//! writes `hello`, notifies and waits for `ready`; `pong` zeroes `ack`, waits for `hello`,
//! writes `ready` and notifies. Then round `i`: `ping` writes `seq = i`, notifies and waits
//! until `ack == i`; `pong` waits until `seq == i`, writes `ack = i`, notifies. Every wait
//! re-checks the words after each wake-up, so coalesced, early or spurious events are
//! harmless. The region must be fresh (all zero or garbage, but not a previous run's
//! `hello`/`ready`).
//!
//! # Events only (no such channel: a bare `[[evtchn]]` pair, e.g. Xen without static
//! shared memory)
//!
//! The domain's one event channel that belongs to no channel (or `port=N`). The two sides
//! strictly alternate, so no two events can coalesce in the one pending bit; the handshake
//! is robust to which end Xen marked pending at bind time: the pending end clears its
//! bind-time bit first; if that is `ping`, it then sends HELLO and `pong` waits for it;
//! `pong` sends READY, `ping` waits for it. `ping` never sends before READY, so `pong`
//! clearing its bind-time bit cannot swallow a real event, and `pong` sends READY only
//! after `ping` cleared its own.

use crate::args::{ArgError, Args};
use crate::stats::{Nanos, Samples};
use crate::Clock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use staticbus_guest::manifest::{Evtchn, Role as ChannelRole};
use staticbus_guest::ops::PortState;
use staticbus_guest::{Channel, Errno, Events, OpenError, Platform};

/// Round trips unless `rounds=` says otherwise.
pub const DEFAULT_ROUNDS: u64 = 1000;
/// The channel used unless `channel=` says otherwise.
pub const DEFAULT_CHANNEL: &str = "pingpong";
/// `hello` once ping is there.
pub const HELLO: u64 = 0x6f6c_6c65_6867_6e70; // "pnghello"
/// `ready` once pong saw `hello`.
pub const READY: u64 = 0x7964_6165_7267_6e70; // "pngready"

const OFF_HELLO: usize = 0;
const OFF_SEQ: usize = 8;
const OFF_READY: usize = 64;
const OFF_ACK: usize = 72;

/// Round-trip samples kept for percentiles.
const KEPT: usize = 2048;

/// This domain's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Starts every round and measures it.
    Ping,
    /// Answers.
    Pong,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Ping => "ping",
            Role::Pong => "pong",
        }
    }
}

/// Why a run failed.
#[derive(Clone, Copy, Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Setup(&'static str),
    Open(&'a str, OpenError),
    Event(&'static str, Errno),
    Port(u32, PortState),
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Setup(m) => f.write_str(m),
            Fail::Open(name, e) => write!(f, "channel `{name}`: {e}"),
            Fail::Event(what, e) => write!(f, "{what}: {e}"),
            Fail::Port(port, st) => write!(
                f,
                "port {port} is not connected as the manifest says: {st:?}"
            ),
        }
    }
}

impl<'a> From<ArgError<'a>> for Fail<'a> {
    fn from(e: ArgError<'a>) -> Self {
        Fail::Arg(e)
    }
}

/// Runs one side of the ping-pong (see the module documentation); prints progress, the
/// figures (`ping`) and the `RESULT` line to `out`; returns whether it passed.
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
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let rounds = args.u64_or("rounds", DEFAULT_ROUNDS)?;
    let role = match args.get("role") {
        None => None,
        Some("ping") => Some(Role::Ping),
        Some("pong") => Some(Role::Pong),
        Some(v) => {
            return Err(Fail::Arg(ArgError {
                key: "role",
                value: v,
                expected: "ping or pong",
            }))
        }
    };
    let name = args.str_or("channel", DEFAULT_CHANNEL);
    let m = platform.manifest();
    let _ = writeln!(
        out,
        "ping-pong: {} (domid {}) of {:?}, Xen {}, {rounds} round trips",
        m.domain, m.domid, m.system, m.xen
    );
    let t0 = clock.now_ns();
    let role = if m.channel(name).is_some() {
        let ch = Channel::open(platform, name).map_err(|e| Fail::Open(name, e))?;
        ch.verify().map_err(|e| Fail::Open(name, e))?;
        let role = role.unwrap_or(match ch.role() {
            ChannelRole::Producer | ChannelRole::Writer => Role::Ping,
            _ => Role::Pong,
        });
        let r = ch.region();
        let _ = writeln!(
            out,
            "{}: channel `{name}`: {:#x} bytes at {:p}, {} peer(s)",
            role.as_str(),
            r.len(),
            r.as_ptr(),
            ch.peers().len()
        );
        let words = Words::new(&ch)?;
        ch.clear_initial();
        match role {
            Role::Ping => channel_ping(&ch, &words, clock, rounds, out)?,
            Role::Pong => channel_pong(&ch, &words, rounds)?,
        }
        role
    } else {
        let role = role.ok_or(Fail::Setup(
            "no such channel; the events-only form needs role=ping or role=pong",
        ))?;
        let e = sole_evtchn(platform, args)?;
        let ev = platform.events();
        let st = ev
            .status(e.local_port)
            .map_err(|e| Fail::Event("EVTCHNOP_status", e))?;
        let expected = PortState::Interdomain {
            remote_dom: e.remote_domid,
            remote_port: e.remote_port,
        };
        if st.state != expected {
            return Err(Fail::Port(e.local_port, st.state));
        }
        let _ = writeln!(
            out,
            "{}: events only, port {} to {} (domid {}) port {}; pending at start {}",
            role.as_str(),
            e.local_port,
            e.remote_domain,
            e.remote_domid,
            e.remote_port,
            ev.is_pending(e.local_port)
        );
        match role {
            Role::Ping => events_ping(&ev, e, clock, rounds, out)?,
            Role::Pong => events_pong(&ev, e, rounds)?,
        }
        role
    };
    Ok(Passed {
        role,
        rounds,
        ns: clock.now_ns().saturating_sub(t0),
    })
}

/// The summary of a passed run.
struct Passed {
    role: Role,
    rounds: u64,
    ns: u64,
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping-pong {}: {} round trips in {}",
            self.role.as_str(),
            self.rounds,
            Nanos(self.ns)
        )
    }
}

struct Words<'r> {
    hello: &'r AtomicU64,
    seq: &'r AtomicU64,
    ready: &'r AtomicU64,
    ack: &'r AtomicU64,
}

impl<'r> Words<'r> {
    fn new<E: Events>(ch: &'r Channel<'_, E>) -> Result<Self, Fail<'static>> {
        let r = ch.region();
        let word = |off| {
            r.atomic::<u64>(off)
                .ok_or(Fail::Setup("the channel's region is smaller than 80 bytes"))
        };
        Ok(Words {
            hello: word(OFF_HELLO)?,
            seq: word(OFF_SEQ)?,
            ready: word(OFF_READY)?,
            ack: word(OFF_ACK)?,
        })
    }
}

/// Waits on the channel's events until `cond` holds (checked before every sleep).
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

fn channel_ping<E: Events, C: Clock, W: Write>(
    ch: &Channel<'_, E>,
    w: &Words<'_>,
    clock: &C,
    rounds: u64,
    out: &mut W,
) -> Result<(), Fail<'static>> {
    w.seq.store(0, SeqCst);
    w.hello.store(HELLO, SeqCst);
    notify(ch)?;
    wait_until(ch, || w.ready.load(SeqCst) == READY)?;
    let mut rtt = Samples::<KEPT>::new();
    let start = clock.now_ns();
    for i in 1..=rounds {
        let t = clock.now_ns();
        w.seq.store(i, SeqCst);
        notify(ch)?;
        wait_until(ch, || w.ack.load(SeqCst) == i)?;
        rtt.add(clock.now_ns().saturating_sub(t));
    }
    report(out, &mut rtt, clock.now_ns().saturating_sub(start));
    Ok(())
}

fn channel_pong<E: Events>(
    ch: &Channel<'_, E>,
    w: &Words<'_>,
    rounds: u64,
) -> Result<(), Fail<'static>> {
    w.ack.store(0, SeqCst);
    wait_until(ch, || w.hello.load(SeqCst) == HELLO)?;
    w.ready.store(READY, SeqCst);
    notify(ch)?;
    for i in 1..=rounds {
        wait_until(ch, || w.seq.load(SeqCst) == i)?;
        w.ack.store(i, SeqCst);
        notify(ch)?;
    }
    Ok(())
}

fn report<W: Write>(out: &mut W, rtt: &mut Samples<KEPT>, total: u64) {
    if rtt.count() == 0 {
        return;
    }
    let s = rtt.summary();
    let _ = writeln!(
        out,
        "ping: {} round trips in {}; RTT {s}",
        s.count,
        Nanos(total)
    );
}

/// The event channel of the events-only form: `port=N`, or the domain's one event
/// channel that belongs to no channel.
fn sole_evtchn<'a, P: Platform + ?Sized>(
    platform: &P,
    args: &Args<'a>,
) -> Result<&'static Evtchn, Fail<'a>> {
    let m = platform.manifest();
    if args.get("port").is_some() {
        let port = args.u64_or("port", 0)?;
        return u32::try_from(port)
            .ok()
            .and_then(|p| m.evtchn(p))
            .ok_or(Fail::Setup("port= names no event channel of the manifest"));
    }
    let mut plain = m.evtchns.iter().filter(|e| e.channel.is_none());
    match (plain.next(), plain.next()) {
        (Some(e), None) => Ok(e),
        (None, _) => Err(Fail::Setup(
            "no such channel and no plain static event channel in the manifest",
        )),
        (Some(_), Some(_)) => Err(Fail::Setup(
            "no such channel and several plain static event channels: say port=N",
        )),
    }
}

fn ev_send<E: Events>(ev: &E, port: u32) -> Result<(), Fail<'static>> {
    ev.send(port).map_err(|e| Fail::Event("EVTCHNOP_send", e))
}

fn ev_wait<E: Events>(ev: &E, port: u32) -> Result<(), Fail<'static>> {
    ev.wait(port).map_err(|e| Fail::Event("wait", e))
}

fn events_ping<E: Events, C: Clock, W: Write>(
    ev: &E,
    e: &Evtchn,
    clock: &C,
    rounds: u64,
    out: &mut W,
) -> Result<(), Fail<'static>> {
    let port = e.local_port;
    if e.initially_pending {
        ev.clear_initial(port);
        ev_send(ev, port)?; // HELLO: my bind-time bit is gone
    }
    ev_wait(ev, port)?; // READY
    let mut rtt = Samples::<KEPT>::new();
    let start = clock.now_ns();
    for _ in 0..rounds {
        let t = clock.now_ns();
        ev_send(ev, port)?;
        ev_wait(ev, port)?;
        rtt.add(clock.now_ns().saturating_sub(t));
    }
    report(out, &mut rtt, clock.now_ns().saturating_sub(start));
    Ok(())
}

fn events_pong<E: Events>(ev: &E, e: &Evtchn, rounds: u64) -> Result<(), Fail<'static>> {
    let port = e.local_port;
    if e.initially_pending {
        ev.clear_initial(port);
    } else {
        ev_wait(ev, port)?; // HELLO: ping's bind-time bit is gone
    }
    ev_send(ev, port)?; // READY
    for _ in 0..rounds {
        ev_wait(ev, port)?;
        ev_send(ev, port)?;
    }
    Ok(())
}
