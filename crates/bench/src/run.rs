//! The measurements: queue throughput, polling latency, memcpy, and the suite.

use crate::ctl::{now_ns, pin, Event, Shm, Word};
use crate::refs::{self, CopyRef};
use staticbus_proto::queue::{self, Consumer, Producer};
use staticbus_proto::wait::{self, Spin, WaitStats};
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};

type Res<T = ()> = Result<T, String>;

/// Ring region size for a message size: 256 KiB of data area up to 1 KiB messages,
/// 1 MiB for larger ones (the same rings as the baseline measurements), plus the header
/// page.
fn ring_len(size: usize) -> usize {
    let data = if size <= 1024 { 256 << 10 } else { 1 << 20 };
    data + 4096
}

/// Index publication interval for a ring of `slots` messages: at most 16, and at most a
/// quarter of the ring (so the peer always has work while the rest is being filled).
fn batch_for(batch: u32, slots: usize) -> u32 {
    batch.min((slots / 4).max(1) as u32).max(1)
}

fn default_count(size: usize) -> u64 {
    match size {
        0..=128 => 20_000_000,
        129..=4096 => 5_000_000,
        _ => 200_000,
    }
}

/// Writes the sequence number into the first and last 8 bytes of `msg`.
fn stamp(msg: &mut [u8], seq: u64) {
    let n = msg.len();
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[n - 8..].copy_from_slice(&seq.to_le_bytes());
}

fn stamps(msg: &[u8]) -> (u64, u64) {
    let n = msg.len();
    let a = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(msg[n - 8..].try_into().expect("8 bytes"));
    (a, b)
}

fn qerr(e: queue::Error) -> String {
    format!("queue: {e}")
}

/// The result of one throughput run.
pub struct Throughput {
    /// Messages per second.
    pub per_sec: f64,
    /// Payload GB/s.
    pub gbps: f64,
    /// Notifications (both directions) per message.
    pub notif_per_msg: f64,
    /// Times either side blocked, per message.
    pub blocks_per_msg: f64,
    /// Producer polls that found the queue full, per message.
    pub full_polls_per_msg: f64,
    /// Consumer polls that found the queue empty, per message.
    pub empty_polls_per_msg: f64,
}

/// Queue throughput: this process produces on core 0, the peer consumes on core 1.
pub fn throughput(size: usize, count: u64, spin: u32, batch: u32) -> Res<Throughput> {
    if size < 16 {
        return Err("--size must be at least 16 (sequence stamps at both ends)".into());
    }
    let len = ring_len(size);
    let shm = Shm::create(len).map_err(|e| format!("memfd: {e}"))?;
    let region = shm.region(0, len);
    let mut q = Producer::attach(region).map_err(qerr)?;
    if size > q.max_message() {
        return Err(format!("--size {size} > queue max {}", q.max_message()));
    }
    let batch = batch_for(batch, q.capacity() / (size + 8));
    q.set_batch(batch);
    pin(0);
    let mut child = shm
        .spawn_peer(&[
            "consume".into(),
            size.to_string(),
            count.to_string(),
            spin.to_string(),
            batch.to_string(),
        ])
        .map_err(|e| format!("spawn: {e}"))?;
    while shm.word(Word::Ready).load(Acquire) == 0 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("consumer exited early: {st}"));
        }
        std::hint::spin_loop();
    }
    let to_peer = Event(shm.word32(Word::EventToPeer));
    let from_peer = Event(shm.word32(Word::EventToParent));
    let mut msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut st = WaitStats::default();
    let mut notifies = 0u64;
    let t0 = now_ns();
    for seq in 0..count {
        stamp(&mut msg, seq);
        let notify = wait::until(
            &mut q,
            Spin { polls: spin },
            &mut st,
            |q| match q.send(&msg) {
                Ok(n) => Ok(Some(n)),
                Err(queue::Error::Full) => Ok(None),
                Err(e) => Err(e),
            },
            |q| {
                if q.flush()? {
                    notifies += 1;
                    to_peer.notify();
                }
                q.prepare_wait(size)
            },
            || {
                from_peer.wait();
                Ok(())
            },
        )
        .map_err(qerr)?;
        if notify {
            notifies += 1;
            to_peer.notify();
        }
    }
    if q.flush().map_err(qerr)? {
        notifies += 1;
        to_peer.notify();
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("consumer failed: {status}"));
    }
    let t_end = shm.word(Word::PeerEnd).load(SeqCst);
    let secs = t_end.saturating_sub(t0) as f64 / 1e9;
    let total_notifies = notifies + shm.word(Word::PeerNotifies).load(SeqCst);
    let blocks = st.blocks + shm.word(Word::PeerBlocks).load(SeqCst);
    Ok(Throughput {
        per_sec: count as f64 / secs,
        gbps: count as f64 * size as f64 / secs / 1e9,
        notif_per_msg: total_notifies as f64 / count as f64,
        blocks_per_msg: blocks as f64 / count as f64,
        full_polls_per_msg: st.empty_polls as f64 / count as f64,
        empty_polls_per_msg: shm.word(Word::PeerIdlePolls).load(SeqCst) as f64 / count as f64,
    })
}

fn consume(shm: &Shm, size: usize, count: u64, spin: u32, batch: u32) -> Res {
    pin(1);
    let len = ring_len(size);
    let mut q = Consumer::attach(shm.region(0, len)).map_err(qerr)?;
    q.set_batch(batch);
    let to_parent = Event(shm.word32(Word::EventToParent));
    let from_parent = Event(shm.word32(Word::EventToPeer));
    shm.word(Word::Ready).store(1, Release);
    let mut buf = vec![0u8; size];
    let mut st = WaitStats::default();
    let mut notifies = 0u64;
    for seq in 0..count {
        let r = wait::until(
            &mut q,
            Spin { polls: spin },
            &mut st,
            |q| q.recv(&mut buf),
            |q| {
                if q.flush()? {
                    notifies += 1;
                    to_parent.notify();
                }
                q.prepare_wait()
            },
            || {
                from_parent.wait();
                Ok(())
            },
        )
        .map_err(qerr)?;
        if r.len != size || stamps(&buf) != (seq, seq) {
            return Err(format!(
                "message {seq}: length {} stamps {:?}",
                r.len,
                stamps(&buf[..r.len.max(16)])
            ));
        }
        if r.notify {
            notifies += 1;
            to_parent.notify();
        }
    }
    shm.word(Word::PeerEnd).store(now_ns(), SeqCst);
    if q.flush().map_err(qerr)? {
        notifies += 1;
        to_parent.notify();
    }
    shm.word(Word::PeerNotifies).store(notifies, SeqCst);
    shm.word(Word::PeerBlocks).store(st.blocks, SeqCst);
    shm.word(Word::PeerIdlePolls).store(st.empty_polls, SeqCst);
    Ok(())
}

/// Slot-ring reference: the textbook SPSC ring of fixed `size`-byte slots with the
/// indices published every 16 messages, plain `memcpy` in and out, pure polling, no
/// validation — what the hardware allows for this traffic pattern, measured in the same
/// run as the queue. Returns messages per second.
pub fn raw_ring(size: usize, count: u64) -> Res<f64> {
    let len = ring_len(size);
    let shm = Shm::create(len).map_err(|e| format!("memfd: {e}"))?;
    pin(0);
    let mut child = shm
        .spawn_peer(&["raw-consume".into(), size.to_string(), count.to_string()])
        .map_err(|e| format!("spawn: {e}"))?;
    while shm.word(Word::Ready).load(Acquire) == 0 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("consumer exited early: {st}"));
        }
        std::hint::spin_loop();
    }
    let ring = RawRing::new(&shm, size);
    let mut msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let t0 = now_ns();
    let (mut head, mut seen_tail) = (0u64, 0u64);
    for seq in 0..count {
        stamp(&mut msg, seq);
        while head - seen_tail == ring.slots {
            ring.tail().store(head, Release); // never leave the consumer waiting
            seen_tail = ring.head().load(Acquire);
            std::hint::spin_loop();
        }
        ring.slot(head)
            .write_bytes(0, &msg)
            .map_err(|e| e.to_string())?;
        head += 1;
        if head % ring.batch == 0 {
            ring.tail().store(head, Release);
        }
    }
    ring.tail().store(head, Release);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("consumer failed: {status}"));
    }
    let secs = shm.word(Word::PeerEnd).load(SeqCst).saturating_sub(t0) as f64 / 1e9;
    Ok(count as f64 / secs)
}

/// The reference ring's view of the shared memfd: producer index ("tail") at 0, consumer
/// index ("head") at 128, slots from 4096.
struct RawRing {
    r: staticbus_guest::Region,
    size: usize,
    slots: u64,
    batch: u64,
}

impl RawRing {
    fn new(shm: &Shm, size: usize) -> RawRing {
        let len = ring_len(size);
        let slots = (len - 4096) / size;
        RawRing {
            r: shm.region(0, len),
            size,
            slots: slots as u64,
            batch: batch_for(16, slots) as u64,
        }
    }
    fn tail(&self) -> &std::sync::atomic::AtomicU64 {
        self.r.atomic::<u64>(0).expect("index word")
    }
    fn head(&self) -> &std::sync::atomic::AtomicU64 {
        self.r.atomic::<u64>(128).expect("index word")
    }
    fn slot(&self, i: u64) -> staticbus_guest::Region {
        let at = 4096 + (i % self.slots) as usize * self.size;
        self.r.sub(at, self.size).expect("slot in ring")
    }
}

fn raw_consume(shm: &Shm, size: usize, count: u64) -> Res {
    pin(1);
    let ring = RawRing::new(shm, size);
    shm.word(Word::Ready).store(1, Release);
    let mut buf = vec![0u8; size];
    let (mut head, mut seen_tail) = (0u64, 0u64);
    for seq in 0..count {
        while seen_tail == head {
            ring.head().store(head, Release);
            seen_tail = ring.tail().load(Acquire);
            std::hint::spin_loop();
        }
        ring.slot(head)
            .read_bytes(0, &mut buf)
            .map_err(|e| e.to_string())?;
        if stamps(&buf) != (seq, seq) {
            return Err(format!("raw ring message {seq}: bad stamps"));
        }
        head += 1;
        if head % ring.batch == 0 {
            ring.head().store(head, Release);
        }
    }
    shm.word(Word::PeerEnd).store(now_ns(), SeqCst);
    Ok(())
}

/// Latency percentiles of one-way times (round trip / 2), in ns.
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

pub(crate) fn latency_of(mut rtts: Vec<u64>) -> Latency {
    rtts.sort_unstable();
    let at = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize] as f64 / 2.0;
    Latency {
        p50: at(0.5),
        p99: at(0.99),
        mean: rtts.iter().sum::<u64>() as f64 / rtts.len() as f64 / 2.0,
    }
}

pub(crate) const WARMUP: u64 = 10_000;
const LAT_SIZE: usize = 64;
/// Region size of each direction's queue in the latency test.
const LAT_RING: usize = 64 << 10;

/// The raw shared-cache-line ping-pong alone (the latency reference, and what shows the
/// vCPU placement): `count` round trips after [`WARMUP`], this process on core 0, the
/// peer on core 1. One-way times.
pub fn cacheline(count: u64) -> Res<Latency> {
    let shm = Shm::create(0).map_err(|e| format!("memfd: {e}"))?;
    pin(0);
    let mut child = shm
        .spawn_peer(&["pong".into(), count.to_string()])
        .map_err(|e| format!("spawn: {e}"))?;
    let l = ping(&shm, count);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok(l)
}

/// The parent's half of the cache-line ping-pong.
fn ping(shm: &Shm, count: u64) -> Latency {
    let (ping, pong) = (shm.word(Word::Ping), shm.word(Word::Pong));
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 1..=WARMUP + count {
        let t = now_ns();
        ping.store(i, Release);
        while pong.load(Acquire) != i {
            std::hint::spin_loop();
        }
        let dt = now_ns() - t;
        if i > WARMUP {
            rtts.push(dt);
        }
    }
    latency_of(rtts)
}

/// The peer's half of the cache-line ping-pong.
fn pong(shm: &Shm, count: u64) {
    let (ping, pong) = (shm.word(Word::Ping), shm.word(Word::Pong));
    for i in 1..=WARMUP + count {
        while ping.load(Acquire) != i {
            std::hint::spin_loop();
        }
        pong.store(i, Release);
    }
}

/// Polling ping-pong over two queues (64 B messages) and, in the same run, over two raw
/// cache lines. Returns (queue, cache line).
pub fn latency(count: u64) -> Res<(Latency, Latency)> {
    let shm = Shm::create(2 * LAT_RING).map_err(|e| format!("memfd: {e}"))?;
    let mut tx = Producer::attach(shm.region(0, LAT_RING)).map_err(qerr)?;
    pin(0);
    let mut child = shm
        .spawn_peer(&["echo".into(), count.to_string()])
        .map_err(|e| format!("spawn: {e}"))?;
    while shm.word(Word::Ready).load(Acquire) == 0 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("peer exited early: {st}"));
        }
        std::hint::spin_loop();
    }
    // The peer initialised the return queue before it said ready.
    let mut rx = Consumer::attach(shm.region(LAT_RING, LAT_RING)).map_err(qerr)?;
    let mut msg = vec![0u8; LAT_SIZE];
    let mut buf = vec![0u8; LAT_SIZE];
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..WARMUP + count {
        stamp(&mut msg, i);
        let t = now_ns();
        tx.send(&msg).map_err(qerr)?;
        loop {
            if let Some(r) = rx.recv(&mut buf).map_err(qerr)? {
                if r.len != LAT_SIZE || stamps(&buf) != (i, i) {
                    return Err(format!("echo {i}: bad reply"));
                }
                break;
            }
            std::hint::spin_loop();
        }
        let dt = now_ns() - t;
        if i >= WARMUP {
            rtts.push(dt);
        }
    }
    let q = latency_of(rtts);
    // The reference, same processes and cores: one cache line each way.
    let line = ping(&shm, count);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok((q, line))
}

fn echo(shm: &Shm, count: u64) -> Res {
    pin(1);
    let mut tx = Producer::attach(shm.region(LAT_RING, LAT_RING)).map_err(qerr)?;
    let mut rx = Consumer::attach(shm.region(0, LAT_RING)).map_err(qerr)?;
    shm.word(Word::Ready).store(1, Release);
    let mut buf = vec![0u8; LAT_SIZE];
    for _ in 0..WARMUP + count {
        loop {
            if let Some(r) = rx.recv(&mut buf).map_err(qerr)? {
                tx.send(&buf[..r.len]).map_err(qerr)?;
                break;
            }
            std::hint::spin_loop();
        }
    }
    pong(shm, count);
    Ok(())
}

/// `peer` subcommand: `<role> <params…> <fd> <len>`.
pub fn peer(args: &[String]) -> Res {
    let n = args.len();
    if n < 3 {
        return Err("peer: missing arguments".into());
    }
    let num = |i: usize| -> Res<u64> {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("peer: bad argument {i}"))
    };
    let fd = num(n - 2)? as i32;
    let len = num(n - 1)? as usize;
    let shm = Shm::open(fd, len).map_err(|e| format!("map: {e}"))?;
    match args[0].as_str() {
        "consume" => consume(
            &shm,
            num(1)? as usize,
            num(2)?,
            num(3)? as u32,
            num(4)? as u32,
        ),
        "echo" => echo(&shm, num(1)?),
        "pong" => {
            pin(1);
            pong(&shm, num(1)?);
            Ok(())
        }
        "raw-consume" => raw_consume(&shm, num(1)? as usize, num(2)?),
        #[cfg(feature = "iceoryx2")]
        "ice-echo" => crate::ice::echo(&shm, num(2)? as u32),
        other => Err(format!("peer: unknown role {other}")),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// `throughput` subcommand.
pub fn throughput_cmd(size: usize, count: Option<u64>, spin: u32, batch: u32) -> Res {
    let count = count.unwrap_or_else(|| default_count(size));
    let m = CopyRef::measure(size, 100);
    let raw = raw_ring(size, count)?;
    let t = throughput(size, count, spin, batch)?;
    println!(
        "queue {size} B ×{count} (spin {}, batch {batch}): {} msg/s, {:.2} GB/s, {:.5} notifications/msg, {:.5} blocks/msg",
        if spin == u32::MAX { "∞".to_string() } else { spin.to_string() },
        fmt_rate(t.per_sec),
        t.gbps,
        t.notif_per_msg,
        t.blocks_per_msg
    );
    println!(
        "  idle polls per message: producer (queue full) {:.3}, consumer (queue empty) {:.3} → regime: {}",
        t.full_polls_per_msg,
        t.empty_polls_per_msg,
        regime(&t)
    );
    let best = m.best();
    println!(
        "reference single-core copy of {size} B warm blocks: {} → best {:.2} GB/s → queue/best copy = {:.2}",
        m.list(),
        best.gbps,
        t.gbps / best.gbps
    );
    if let Some((slow, f)) = m.disagreement() {
        println!("  warning: the copy references disagree by {f:.1}× ({} is slow on this machine at {size} B)", slow.name());
    }
    println!(
        "reference slot ring {size} B (plain, polling, indices every 16): {} msg/s → queue/ring = {:.2}",
        fmt_rate(raw),
        t.per_sec / raw
    );
    Ok(())
}

/// The regime a 64 B run was in: the consumer lagging a little (few empty polls) or
/// following the producer closely (BENCHMARKS.md, issue 4).
fn regime(t: &Throughput) -> &'static str {
    if t.empty_polls_per_msg < 0.1 {
        "consumer lagging"
    } else {
        "consumer following closely"
    }
}

/// `latency` subcommand.
pub fn latency_cmd(count: u64) -> Res {
    let (q, c) = latency(count)?;
    println!(
        "polling one-way latency, 64 B, {count} round trips: queue p50 {:.0} ns p99 {:.0} ns mean {:.0} ns",
        q.p50, q.p99, q.mean
    );
    println!(
        "reference cache-line ping-pong: p50 {:.0} ns p99 {:.0} ns mean {:.0} ns → queue/cache line p50 = {:.2}",
        c.p50,
        c.p99,
        c.mean,
        q.p50 / c.p50
    );
    #[cfg(feature = "iceoryx2")]
    {
        let i = crate::ice::latency(count)?;
        println!(
            "iceoryx2 publish-subscribe (8 B, busy poll): p50 {:.0} ns p99 {:.0} ns mean {:.0} ns → queue/iceoryx2 p50 = {:.2}",
            i.p50, i.p99, i.mean, q.p50 / i.p50
        );
    }
    #[cfg(not(feature = "iceoryx2"))]
    println!("(iceoryx2 not built in: add `--features iceoryx2` for the peer comparison)");
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Round trips of the cache-line reference in the suite (each side of a measurement).
const LINE_COUNT: u64 = 100_000;

/// The references of one block size, measured once: every single-core copy, the slot
/// ring, the cache line.
struct Refs {
    copy: CopyRef,
    ring: f64,
    line: Latency,
}

impl Refs {
    fn measure(size: usize, count: u64) -> Res<Refs> {
        Ok(Refs {
            copy: CopyRef::measure(size, 100),
            ring: raw_ring(size, count)?,
            line: cacheline(LINE_COUNT)?,
        })
    }

    /// The largest relative move of any reference from `self` to `after`, and which.
    fn moved(&self, after: &Refs) -> (f64, &'static str) {
        [
            (
                refs::moved(self.copy.best().gbps, after.copy.best().gbps),
                "best copy",
            ),
            (refs::moved(self.ring, after.ring), "slot ring"),
            (refs::moved(self.line.p50, after.line.p50), "cache line"),
        ]
        .into_iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .expect("three")
    }
}

/// One summary figure of a suite, with the bar where it has one.
pub struct Figure {
    /// What it is.
    pub name: String,
    /// Its value (a ratio, or ns for the placement).
    pub value: f64,
    /// `(at least?, bar)`: `(true, 0.7)` is "≥ 0.7", `(false, 1.5)` is "≤ 1.5".
    pub bar: Option<(bool, f64)>,
}

impl Figure {
    fn met(&self) -> Option<bool> {
        self.bar.map(|(at_least, bar)| {
            if at_least {
                self.value >= bar
            } else {
                self.value <= bar
            }
        })
    }
}

/// The placement figure of a suite: the cache-line one-way p50 measured at the suite's
/// start (the placement its line printed), not the latency test's ping-pong, which runs
/// last and is only that test's reference.
fn placement_figure(start_line_p50: f64) -> Figure {
    Figure {
        name: "vCPU placement at the start: cache-line one-way p50, ns".into(),
        value: start_line_p50,
        bar: None,
    }
}

/// One cell of the `ci` spread table: the value, and for the placement figure the
/// placement it means.
fn spread_cell(f: &Figure) -> String {
    if f.name.starts_with("vCPU placement") {
        format!("{:.0} ({})", f.value, refs::placement(f.value))
    } else {
        format!("{:.2}", f.value)
    }
}

/// What a suite measured, for the spread of several suites (`ci`).
pub struct SuiteSummary {
    /// The figures, in order.
    pub figures: Vec<Figure>,
    /// Repetitions whose references moved more than 20% (of all repetitions).
    pub noisy: (usize, usize),
}

/// `suite` subcommand: medians over `reps` of every measurement, as Markdown rows, each
/// with its references measured right before and right after it; a repetition whose
/// references moved by more than 20% is marked noisy.
pub fn suite(reps: usize) -> Res<SuiteSummary> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let first_line = cacheline(LINE_COUNT)?;
    println!(
        "vCPU placement seen: cache-line one-way p50 {:.0} ns → {} (below {:.0} ns: close); load average {}",
        first_line.p50,
        refs::placement(first_line.p50),
        refs::CLOSE_BELOW_NS,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!();
    println!("| measurement | staticbus | references (same run: before → after) | ratio |");
    println!("|---|---|---|---|");
    let mut figures = Vec::new();
    let mut noisy = (0, 0);
    for size in [64usize, 1024, 65536] {
        let count = default_count(size);
        let (mut rate, mut gb, mut notif, mut to_ring, mut to_copy) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut regimes, mut marks, mut refs_text, mut warnings) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let before = Refs::measure(size, count)?;
            let t = throughput(size, count, Spin::DEFAULT.polls, 16)?;
            let after = Refs::measure(size, count)?;
            let ring = (before.ring + after.ring) / 2.0;
            let best = (before.copy.best().gbps + after.copy.best().gbps) / 2.0;
            rate.push(t.per_sec);
            gb.push(t.gbps);
            notif.push(t.notif_per_msg);
            to_ring.push(t.per_sec / ring);
            to_copy.push(t.gbps / best);
            regimes.push(if regime(&t) == "consumer lagging" {
                "L"
            } else {
                "F"
            });
            let (m, which) = before.moved(&after);
            noisy.1 += 1;
            if m > refs::NOISY {
                noisy.0 += 1;
                marks.push(format!("noisy ({which} moved {:.0}%)", m * 100.0));
            } else {
                marks.push("ok".to_string());
            }
            refs_text.push(format!(
                "ring {} → {} msg/s; copy {} → {}; line {:.0} → {:.0} ns",
                fmt_rate(before.ring),
                fmt_rate(after.ring),
                before.copy.list(),
                after.copy.list(),
                before.line.p50,
                after.line.p50
            ));
            for r in [&before.copy, &after.copy] {
                if let Some((slow, f)) = r.disagreement() {
                    warnings.push(format!(
                        "warning: {size} B copy references disagree by {f:.1}× ({} is slow here)",
                        slow.name()
                    ));
                }
            }
        }
        let all = rate
            .iter()
            .zip(&regimes)
            .zip(&marks)
            .map(|((r, g), m)| format!("{} {g} {m}", fmt_rate(*r)))
            .collect::<Vec<_>>()
            .join(" / ");
        let (rate, gb, notif, to_ring, to_copy) = (
            median(rate),
            median(gb),
            median(notif),
            median(to_ring),
            median(to_copy),
        );
        println!(
            "| queue {size} B throughput (batch 16, spin {}) | {} msg/s, {gb:.2} GB/s, {notif:.5} notifications/msg (runs, L = consumer lagging, F = following: {all}) | {} | {to_ring:.2}× slot ring, {to_copy:.2}× best copy |",
            Spin::DEFAULT.polls,
            fmt_rate(rate),
            refs_text.join("; "),
        );
        warnings.dedup();
        for w in warnings {
            eprintln!("staticbus-bench: {w}");
        }
        figures.push(Figure {
            name: format!("{size} B queue / slot ring"),
            value: to_ring,
            bar: Some((true, 0.7)),
        });
        figures.push(Figure {
            name: format!("{size} B queue / best single-core copy"),
            value: to_copy,
            bar: (size == 65536).then_some((true, 0.5)),
        });
    }
    let (mut q50, mut q99, mut c50, mut c99, mut ratio) = (vec![], vec![], vec![], vec![], vec![]);
    let mut marks = vec![];
    #[cfg(feature = "iceoryx2")]
    let (mut i50, mut i99) = (vec![], vec![]);
    for _ in 0..reps {
        let before = cacheline(LINE_COUNT)?;
        let (q, c) = latency(200_000)?;
        let after = cacheline(LINE_COUNT)?;
        let m = refs::moved(before.p50, after.p50).max(refs::moved(before.p50, c.p50));
        noisy.1 += 1;
        if m > refs::NOISY {
            noisy.0 += 1;
            marks.push(format!(
                "noisy (line {:.0} / {:.0} / {:.0} ns)",
                before.p50, c.p50, after.p50
            ));
        } else {
            marks.push("ok".to_string());
        }
        q50.push(q.p50);
        q99.push(q.p99);
        c50.push(c.p50);
        c99.push(c.p99);
        ratio.push(q.p50 / c.p50);
        #[cfg(feature = "iceoryx2")]
        {
            let i = crate::ice::latency(200_000)?;
            i50.push(i.p50);
            i99.push(i.p99);
        }
    }
    let all = q50
        .iter()
        .zip(&marks)
        .map(|(q, m)| format!("{q:.0} ns {m}"))
        .collect::<Vec<_>>()
        .join(" / ");
    let (q50, q99, c50, c99, ratio) = (
        median(q50),
        median(q99),
        median(c50),
        median(c99),
        median(ratio),
    );
    println!(
        "| queue 64 B one-way latency, polling | p50 {q50:.0} ns, p99 {q99:.0} ns (runs: {all}) | cache-line ping-pong: p50 {c50:.0} ns, p99 {c99:.0} ns ({}) | {ratio:.2}× |",
        refs::placement(c50)
    );
    figures.push(Figure {
        name: "64 B one-way latency / cache line".into(),
        value: ratio,
        bar: Some((false, 1.5)),
    });
    figures.push(placement_figure(first_line.p50));
    #[cfg(feature = "iceoryx2")]
    {
        let (i50, i99) = (median(i50), median(i99));
        println!(
            "| queue 64 B one-way latency, polling | p50 {q50:.0} ns | iceoryx2 0.10 publish-subscribe 8 B: p50 {i50:.0} ns, p99 {i99:.0} ns | {:.2}× |",
            q50 / i50
        );
    }
    println!();
    println!(
        "{} of {} repetitions noisy (a reference moved more than {:.0}% between before and after)",
        noisy.0,
        noisy.1,
        refs::NOISY * 100.0
    );
    Ok(SuiteSummary { figures, noisy })
}

/// `ci` subcommand: the suite `runs` times, `gap` apart (as CI machines see it), then the
/// spread of every figure against the bars.
pub fn ci(runs: usize, gap: std::time::Duration, reps: usize) -> Res {
    let mut all: Vec<SuiteSummary> = Vec::new();
    for run in 0..runs {
        if run > 0 {
            println!("\n(waiting {} s before run {})", gap.as_secs(), run + 1);
            std::thread::sleep(gap);
        }
        println!("\n## run {} of {runs}\n", run + 1);
        all.push(suite(reps)?);
    }
    println!("\n## spread over {runs} runs\n");
    let head: Vec<String> = (1..=runs).map(|i| format!("run {i}")).collect();
    println!(
        "| figure | {} | min–max | bar | met in every run |",
        head.join(" | ")
    );
    println!("|---|{}---|---|---|", "---|".repeat(runs));
    for (i, f) in all[0].figures.iter().enumerate() {
        let v: Vec<f64> = all.iter().map(|s| s.figures[i].value).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let cells: Vec<String> = all.iter().map(|s| spread_cell(&s.figures[i])).collect();
        let bar = match f.bar {
            Some((true, b)) => format!("≥ {b}"),
            Some((false, b)) => format!("≤ {b}"),
            None => "—".into(),
        };
        let met = match f.bar {
            None => "—".to_string(),
            Some(_) => {
                let n = all
                    .iter()
                    .filter(|s| s.figures[i].met() == Some(true))
                    .count();
                let verdict = if n == runs {
                    "yes".to_string()
                } else {
                    format!("no ({n} of {runs})")
                };
                if all.iter().any(|s| s.noisy.0 > 0) {
                    format!("{verdict}, but noisy runs: no claim")
                } else {
                    verdict
                }
            }
        };
        println!(
            "| {} | {} | {lo:.2}–{hi:.2} | {bar} | {met} |",
            f.name,
            cells.join(" | ")
        );
    }
    let cells: Vec<String> = all
        .iter()
        .map(|s| format!("{} of {}", s.noisy.0, s.noisy.1))
        .collect();
    println!("| noisy repetitions | {} | | | |", cells.join(" | "));
    let noisy: usize = all.iter().map(|s| s.noisy.0).sum();
    let total: usize = all.iter().map(|s| s.noisy.1).sum();
    println!("\n{noisy} of {total} repetitions noisy over all runs.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placement_figure_is_the_start_measurement() {
        // A suite that started close (40 ns) and whose latency test's ping-pong later
        // read 90 ns reports the start.
        let f = placement_figure(40.0);
        assert_eq!(f.value, 40.0);
        assert!(f.bar.is_none());
        assert_eq!(spread_cell(&f), format!("40 ({})", refs::placement(40.0)));
        let far = placement_figure(refs::CLOSE_BELOW_NS + 50.0);
        assert!(
            spread_cell(&far).ends_with("(apart)"),
            "{}",
            spread_cell(&far)
        );
        let ratio = Figure {
            name: "64 B queue / slot ring".into(),
            value: 0.333,
            bar: Some((true, 0.7)),
        };
        assert_eq!(spread_cell(&ratio), "0.33");
    }
}
