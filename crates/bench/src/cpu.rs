//! The queue's own CPU cost per message, without a second core: one thread sends a batch
//! of messages and receives them back from the same region, over and over. No cache line
//! moves between cores, so this is the protocol's instruction cost (reserve, copy,
//! commit, header checks, release) against the plain slot ring's copies in the same run;
//! and one thread on one core is far less disturbed by a loaded machine than two
//! polling processes: the best of many short bursts is kept.

use crate::ctl::{now_ns, pin, Shm};
use staticbus_guest::fake::{two_domains, Bus, BusPlatform};
use staticbus_guest::manifest::Protocol;
use staticbus_proto::endpoint::{QueueRx, QueueTx};
use staticbus_proto::queue::{Consumer, Producer};
use std::hint::black_box;

/// Messages per batch (the suite's index publication interval).
const BATCH: usize = 16;

/// Nanoseconds per message of the best burst of `bursts` bursts of `per_burst` batches.
fn best_of(
    bursts: u32,
    per_burst: u32,
    mut batch: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..bursts {
        let t = now_ns();
        for _ in 0..per_burst {
            batch()?;
        }
        let ns = (now_ns() - t) as f64 / (per_burst as usize * BATCH) as f64;
        best = best.min(ns);
    }
    Ok(best)
}

/// `cpu` subcommand: per-message cost of send + recv on one thread, against the slot
/// ring's write + read of the same messages.
pub fn cpu_cmd(size: usize, bursts: u32) -> Result<(), String> {
    if size < 16 {
        return Err("--size must be at least 16".into());
    }
    pin(0);
    let len = (256 << 10) + 4096;
    let shm = Shm::create(len).map_err(|e| format!("memfd: {e}"))?;
    let region = shm.region(0, len);
    let mut p = Producer::attach(region).map_err(|e| format!("queue: {e}"))?;
    let mut c = Consumer::attach(region).map_err(|e| format!("queue: {e}"))?;
    p.set_batch(BATCH as u32);
    c.set_batch(BATCH as u32);
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut buf = vec![0u8; size];
    // About 1 ms per burst at ~100 ns per message.
    let per_burst = 600;
    let queue = best_of(bursts, per_burst, || {
        for _ in 0..BATCH {
            p.send(black_box(&msg)).map_err(|e| format!("send: {e}"))?;
        }
        for _ in 0..BATCH {
            let r = c
                .recv(black_box(&mut buf))
                .map_err(|e| format!("recv: {e}"))?
                .ok_or("queue empty after a published batch")?;
            black_box(r);
        }
        Ok(())
    })?;
    // The same through the endpoints (`QueueTx` / `QueueRx`): two domains of the
    // in-process fake bus in one thread, sharing a second region of the same size. The
    // consumer never waits (every batch is published before it reads), so no event is
    // sent or awaited per message: this is the endpoints' own work on top of the queue's.
    let ep_shm = Shm::create(len).map_err(|e| format!("memfd: {e}"))?;
    let [ma, mb] = two_domains(&[("q", Protocol::Queue, len as u64)]);
    let bus = Bus::new(&[ma, mb]);
    let pa = BusPlatform::new(bus.domain(ma.domid), ma).with_region("q", ep_shm.region(0, len));
    let pb = BusPlatform::new(bus.domain(mb.domid), mb).with_region("q", ep_shm.region(0, len));
    let mut tx = QueueTx::open(&pa, "q").map_err(|e| format!("open q: {e}"))?;
    let mut rx = QueueRx::open(&pb, "q").map_err(|e| format!("open q: {e}"))?;
    tx.set_batch(BATCH as u32);
    rx.set_batch(BATCH as u32);
    let endpoint = best_of(bursts, per_burst, || {
        for _ in 0..BATCH {
            tx.send(black_box(&msg)).map_err(|e| format!("send: {e}"))?;
        }
        for _ in 0..BATCH {
            let n = rx
                .recv(black_box(&mut buf))
                .map_err(|e| format!("recv: {e}"))?;
            black_box(n);
        }
        Ok(())
    })?;
    let slots = (len - 4096) / size;
    let mut at = 0usize;
    let ring = best_of(bursts, per_burst, || {
        for k in 0..BATCH {
            let slot = shm.region(4096 + ((at + k) % slots) * size, size);
            slot.write_bytes(0, black_box(&msg))
                .map_err(|e| e.to_string())?;
        }
        for k in 0..BATCH {
            let slot = shm.region(4096 + ((at + k) % slots) * size, size);
            slot.read_bytes(0, black_box(&mut buf))
                .map_err(|e| e.to_string())?;
        }
        at += BATCH;
        Ok(())
    })?;
    println!(
        "one thread, {size} B, batches of {BATCH}, best of {bursts} bursts: queue send + recv {queue:.1} ns/msg; through the endpoints (QueueTx::send + QueueRx::recv) {endpoint:.1} ns/msg; slot ring write + read {ring:.1} ns/msg; queue - ring = {:.1} ns/msg of protocol work, endpoint - queue = {:.1} ns/msg",
        queue - ring,
        endpoint - queue
    );
    Ok(())
}
