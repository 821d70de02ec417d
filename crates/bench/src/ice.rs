//! The iceoryx2 peer measurement (feature `iceoryx2`): a two-process publish-subscribe
//! ping-pong with 8-byte `[u8]` payloads and busy-polling `receive`, the configuration of
//! the baseline measurements (history 0, subscriber buffer 1, safe overflow), on the same
//! cores as the staticbus measurements.

use crate::ctl::{now_ns, pin, Shm, Word};
use crate::run::{latency_of, Latency, WARMUP};
use iceoryx2::prelude::*;
use std::sync::atomic::Ordering::{Acquire, Release};

type Res<T = ()> = Result<T, String>;

fn e<E: core::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("iceoryx2 {what}: {err:?}")
}

/// Service names unique to this run (the parent's pid).
fn names(pid: u32) -> (String, String) {
    (
        format!("staticbus-bench/{pid}/ping"),
        format!("staticbus-bench/{pid}/pong"),
    )
}

struct Ends {
    _node: Node<ipc::Service>,
    publisher: iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
}

fn ends(send_on: &str, recv_on: &str) -> Res<Ends> {
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(e("node"))?;
    let service = |name: &str| {
        let name: ServiceName = name.try_into().map_err(e("service name"))?;
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .enable_safe_overflow(true)
            .open_or_create()
            .map_err(e("service"))
    };
    let tx = service(send_on)?;
    let rx = service(recv_on)?;
    let publisher = tx
        .publisher_builder()
        .initial_max_slice_len(8)
        .create()
        .map_err(e("publisher"))?;
    let subscriber = rx.subscriber_builder().create().map_err(e("subscriber"))?;
    Ok(Ends {
        _node: node,
        publisher,
        subscriber,
    })
}

fn send(p: &Ends, v: u64) -> Res {
    let s = p
        .publisher
        .loan_slice_uninit(8)
        .map_err(e("loan"))?
        .write_from_slice(&v.to_le_bytes());
    s.send().map_err(e("send"))?;
    Ok(())
}

fn try_recv(p: &Ends) -> Res<Option<u64>> {
    Ok(p.subscriber.receive().map_err(e("receive"))?.map(|s| {
        let mut b = [0u8; 8];
        let n = s.payload().len().min(8);
        b[..n].copy_from_slice(&s.payload()[..n]);
        u64::from_le_bytes(b)
    }))
}

/// Publish-subscribe ping-pong: this process pings on core 0, the peer echoes on core 1.
pub fn latency(count: u64) -> Res<Latency> {
    let pid = std::process::id();
    let (ping, pong) = names(pid);
    let me = ends(&ping, &pong)?;
    let shm = Shm::create(4096).map_err(|e| format!("memfd: {e}"))?;
    pin(0);
    let mut child = shm
        .spawn_peer(&["ice-echo".into(), count.to_string(), pid.to_string()])
        .map_err(|e| format!("spawn: {e}"))?;
    while shm.word(Word::Ready).load(Acquire) == 0 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("iceoryx2 peer exited early: {st}"));
        }
        std::hint::spin_loop();
    }
    // Connections are set up lazily: ping until the first echo comes back.
    loop {
        send(&me, u64::MAX)?;
        let t = now_ns();
        let mut got = false;
        while now_ns() - t < 1_000_000 {
            if try_recv(&me)? == Some(u64::MAX) {
                got = true;
                break;
            }
        }
        if got {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("iceoryx2 peer exited before answering: {st}"));
        }
    }
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..WARMUP + count {
        let t = now_ns();
        send(&me, i)?;
        loop {
            match try_recv(&me)? {
                Some(v) if v == i => break,
                Some(u64::MAX) | None => std::hint::spin_loop(),
                Some(v) => return Err(format!("iceoryx2 echo {i}: got {v}")),
            }
        }
        let dt = now_ns() - t;
        if i >= WARMUP {
            rtts.push(dt);
        }
    }
    send(&me, u64::MAX - 1)?; // tells the peer to stop
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("iceoryx2 peer failed: {status}"));
    }
    Ok(latency_of(rtts))
}

/// The echoing peer (`peer ice-echo COUNT PARENT_PID …`).
pub fn echo(shm: &Shm, parent: u32) -> Res {
    pin(1);
    let (ping, pong) = names(parent);
    let me = ends(&pong, &ping)?;
    shm.word(Word::Ready).store(1, Release);
    loop {
        match try_recv(&me)? {
            Some(v) if v == u64::MAX - 1 => return Ok(()),
            Some(v) => send(&me, v)?,
            None => std::hint::spin_loop(),
        }
    }
}
