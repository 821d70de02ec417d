//! The measurements: queue throughput, polling latency, memcpy, and the suite.

use crate::ctl::{now_ns, pin, Event, Shm, Word};
use staticbus_proto::queue::{self, Consumer, Producer};
use staticbus_proto::wait::{self, Spin, WaitStats};
use std::hint::black_box;
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

/// memcpy result.
pub struct Memcpy {
    /// Copies per second.
    pub per_sec: f64,
    /// GB/s.
    pub gbps: f64,
}

/// Single-core copies of one warm `size`-byte block to another for at least 0.2 s.
pub fn memcpy(size: usize) -> Memcpy {
    pin(0);
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; size];
    let run = |iters: u64, dst: &mut [u8]| {
        for _ in 0..iters {
            let n = black_box(size);
            dst[..n].copy_from_slice(black_box(&src[..n]));
            black_box(&mut *dst);
        }
    };
    // Warm up ~50 ms and calibrate.
    let mut iters = 1u64;
    loop {
        let t = now_ns();
        run(iters, &mut dst);
        let dt = now_ns() - t;
        if dt > 50_000_000 {
            break;
        }
        iters *= 2;
    }
    let t = now_ns();
    let mut done = 0;
    while now_ns() - t < 200_000_000 {
        run(iters, &mut dst);
        done += iters;
    }
    let secs = (now_ns() - t) as f64 / 1e9;
    let per_sec = done as f64 / secs;
    Memcpy {
        per_sec,
        gbps: per_sec * size as f64 / 1e9,
    }
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
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok((q, latency_of(rtts)))
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
    let (ping, pong) = (shm.word(Word::Ping), shm.word(Word::Pong));
    for i in 1..=WARMUP + count {
        while ping.load(Acquire) != i {
            std::hint::spin_loop();
        }
        pong.store(i, Release);
    }
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
    let m = memcpy(size);
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
        "  idle polls per message: producer (queue full) {:.3}, consumer (queue empty) {:.3}",
        t.full_polls_per_msg, t.empty_polls_per_msg
    );
    println!(
        "reference memcpy {size} B warm, one core: {} copies/s, {:.2} GB/s → queue/memcpy = {:.2}",
        fmt_rate(m.per_sec),
        m.gbps,
        t.gbps / m.gbps
    );
    println!(
        "reference slot ring {size} B (plain, polling, indices every 16): {} msg/s → queue/ring = {:.2}",
        fmt_rate(raw),
        t.per_sec / raw
    );
    Ok(())
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

/// `suite` subcommand: medians over `reps` of every measurement, as Markdown rows.
pub fn suite(reps: usize) -> Res {
    println!("| measurement | staticbus | reference (same run) | ratio |");
    println!("|---|---|---|---|");
    for size in [64usize, 1024, 65536] {
        let count = default_count(size);
        let (mut rate, mut gb, mut notif, mut mgb, mut ring) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let m = memcpy(size);
            ring.push(raw_ring(size, count)?);
            let t = throughput(size, count, Spin::DEFAULT.polls, 16)?;
            rate.push(t.per_sec);
            gb.push(t.gbps);
            notif.push(t.notif_per_msg);
            mgb.push(m.gbps);
        }
        let all = rate
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(" / ");
        let (rate, gb, notif, mgb, ring) = (
            median(rate),
            median(gb),
            median(notif),
            median(mgb),
            median(ring),
        );
        println!(
            "| queue {size} B throughput (batch 16, spin {}) | {} msg/s, {gb:.2} GB/s, {notif:.5} notifications/msg (runs: {all}) | memcpy {size} B warm: {mgb:.2} GB/s; slot ring: {} msg/s | {:.2}× memcpy, {:.2}× slot ring |",
            Spin::DEFAULT.polls,
            fmt_rate(rate),
            fmt_rate(ring),
            gb / mgb,
            rate / ring
        );
    }
    let (mut q50, mut q99, mut c50, mut c99) = (vec![], vec![], vec![], vec![]);
    #[cfg(feature = "iceoryx2")]
    let (mut i50, mut i99) = (vec![], vec![]);
    for _ in 0..reps {
        let (q, c) = latency(200_000)?;
        q50.push(q.p50);
        q99.push(q.p99);
        c50.push(c.p50);
        c99.push(c.p99);
        #[cfg(feature = "iceoryx2")]
        {
            let i = crate::ice::latency(200_000)?;
            i50.push(i.p50);
            i99.push(i.p99);
        }
    }
    let (q50, q99, c50, c99) = (median(q50), median(q99), median(c50), median(c99));
    println!(
        "| queue 64 B one-way latency, polling | p50 {q50:.0} ns, p99 {q99:.0} ns | cache-line ping-pong: p50 {c50:.0} ns, p99 {c99:.0} ns | {:.2}× |",
        q50 / c50
    );
    #[cfg(feature = "iceoryx2")]
    {
        let (i50, i99) = (median(i50), median(i99));
        println!(
            "| queue 64 B one-way latency, polling | p50 {q50:.0} ns | iceoryx2 0.10 publish-subscribe 8 B: p50 {i50:.0} ns, p99 {i99:.0} ns | {:.2}× |",
            q50 / i50
        );
    }
    Ok(())
}
