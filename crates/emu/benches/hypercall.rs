//! `EVTCHNOP_send` through `Hypervisor::hypercall`, in process, one thread: the cost of the
//! hypervisor side of one event (decode, lock, port lookup, 2-level `set_pending`,
//! counters, wake callback). The cross-process number (IPC transport) is measured by the
//! runner.
//!
//! `cargo bench -p staticbus-emu --bench hypercall`

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use staticbus_abi::layout::EvtchnPort;
use staticbus_abi::{evtchn as ev, hypercall as hc};
use staticbus_emu::{
    BootDomain, BootEnd, BootPair, BootSpec, DomId, HeapPage, Hypervisor, Notify, PageMem, Policy,
    Quiet,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// A wake that bumps a counter, like the runner's futex word (without the syscall).
#[derive(Default)]
struct Bump(AtomicU64);

impl Notify for Bump {
    fn wake(&self, _dom: DomId) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

fn rig() -> (Hypervisor, Arc<HeapPage>) {
    let domain = |name: &str, domid| BootDomain {
        domid,
        name: name.into(),
        dom0: false,
        xenstore: false,
        max_port: 1023,
    };
    let sys = BootSpec {
        static_evtchn: true,
        domains: vec![domain("a", 1), domain("b", 2)],
        evtchns: vec![BootPair {
            first: BootEnd { domid: 1, port: 5 },
            second: BootEnd { domid: 2, port: 7 },
        }],
        ..BootSpec::default()
    };
    let hv = Hypervisor::new(Policy::Silo, Arc::new(Bump::default()), Arc::new(Quiet));
    let receiver = Arc::new(HeapPage::new());
    let pages: Vec<Arc<dyn PageMem>> = vec![Arc::new(HeapPage::new()), receiver.clone()];
    hv.boot(&sys, pages).expect("boots");
    (hv, receiver)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("EVTCHNOP_send via Hypervisor::hypercall");
    g.throughput(Throughput::Elements(1));

    let (hv, _) = rig();
    g.bench_function("coalesced (peer port already pending)", |b| {
        let mut arg = EvtchnPort { port: 5 };
        b.iter(|| {
            black_box(hv.hypercall(
                1,
                hc::EVENT_CHANNEL_OP,
                ev::OP_SEND,
                black_box(arg.as_mut_bytes()),
            ))
        })
    });

    let (hv, rx) = rig();
    g.bench_function("delivered (receiver clears the bit each time)", |b| {
        let mut arg = EvtchnPort { port: 5 };
        let si = rx.shared_info();
        b.iter(|| {
            si.clear_pending(7);
            si.take_pending_sel();
            si.clear_upcall_pending();
            black_box(hv.hypercall(
                1,
                hc::EVENT_CHANNEL_OP,
                ev::OP_SEND,
                black_box(arg.as_mut_bytes()),
            ))
        })
    });

    let (hv, _) = rig();
    g.bench_function("typed evtchn_send (coalesced)", |b| {
        b.iter(|| black_box(hv.evtchn_send(1, black_box(5))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
