//! A hostile domain program for the sandbox and isolation tests: it tries every way a domain
//! could reach the runner or another domain, by OS means and (with `--hypercalls`) through
//! the hypervisor, and reports each as `blocked <what>: <why>` or `OPEN <what>`. Exits 0
//! only if everything was blocked.
//!
//! `sandbox-probe [--hypercalls] TARGETS [ROOT_ONLY_FILE]`
//!
//! `TARGETS` is the runner's pid, or `@FILE`: the probe waits (up to 60 s) for FILE, whose
//! whitespace-separated numbers are the runner's pid and then the (host) pids of the other
//! domains' processes, which it attacks the same way.
//!
//! With `--hypercalls` it then plays a hostile guest on its own channel page (it is
//! connected to no other domain): event-channel operations on other domains' ids and on
//! ports it does not own, malformed and truncated requests, an oversized `arg_len`, a flood
//! of requests without waiting for answers; after each, a plain `XENVER_version` must still
//! be answered. Last, it posts a request and exits without waiting for the answer.

use staticbus_abi::layout::{
    AddToPhysmap, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnPort, EvtchnStatus,
};
use staticbus_abi::{domid, evtchn, hypercall as hc, memory};
use staticbus_emu_wire::{self as wire, SharedMem, ARG_MAX, CHANNEL_PAGE, DOMAIN_MEM_SIZE};
use std::io::Error;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

const USAGE: &str = "usage: sandbox-probe [--hypercalls] RUNNER_PID|@FILE [ROOT_ONLY_FILE]";

/// The runner's pid and the other pids to attack.
fn targets(arg: &str) -> (i32, Vec<i32>) {
    let text = match arg.strip_prefix('@') {
        None => arg.to_string(),
        Some(path) => {
            let start = Instant::now();
            loop {
                if let Ok(t) = std::fs::read_to_string(path) {
                    if !t.trim().is_empty() {
                        break t;
                    }
                }
                if start.elapsed() > Duration::from_secs(60) {
                    println!("RESULT FAIL no targets in {path} after 60 s");
                    std::process::exit(2);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|w| w.parse().expect(USAGE))
        .collect();
    let (runner, others) = pids.split_first().expect(USAGE);
    (*runner, others.to_vec())
}

struct Probe {
    open: usize,
    tried: usize,
}

impl Probe {
    fn report(&mut self, what: &str, result: Result<String, String>) {
        self.tried += 1;
        match result {
            Ok(how) => {
                self.open += 1;
                println!("OPEN {what}: {how}");
            }
            Err(why) => println!("blocked {what}: {why}"),
        }
    }
}

fn os(r: i64) -> Result<String, String> {
    if r < 0 {
        Err(Error::last_os_error().to_string())
    } else {
        Ok(format!("returned {r}"))
    }
}

/// Every OS path to process `pid`'s descriptors, memory and signals.
fn attack_process(p: &mut Probe, who: &str, pid: i32) {
    p.report(
        &format!("/proc/<{who}>/fd"),
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| format!("{} entries", d.count()))
            .map_err(|e| e.to_string()),
    );
    p.report(
        &format!("/proc/<{who}>/mem"),
        std::fs::File::open(format!("/proc/{pid}/mem"))
            .map(|_| "opened".to_string())
            .map_err(|e| e.to_string()),
    );
    // SAFETY: ptrace with integer arguments; expected to fail.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    p.report(&format!("ptrace(ATTACH, {who})"), os(r));
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: 0x1000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one local iovec over a live buffer; the remote one is only an address in
    // another process. Expected to fail.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    p.report(&format!("process_vm_readv({who})"), os(r as i64));
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    p.report(&format!("kill({who}, 0)"), os(r.into()));
    // SAFETY: pidfd_open takes integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    p.report(&format!("pidfd_open({who})"), os(r));
    if who != "runner" {
        // For real: if it got through, the other domain dies and its test fails.
        // SAFETY: kill takes integers.
        let r = unsafe { libc::kill(pid, libc::SIGKILL) };
        p.report(&format!("kill({who}, SIGKILL)"), os(r.into()));
    }
}

fn os_attacks(p: &mut Probe, runner: i32, others: &[i32], secret: Option<&str>) {
    attack_process(p, "runner", runner);
    for (i, &pid) in others.iter().enumerate() {
        attack_process(p, &format!("process {i} of another domain"), pid);
    }
    let visible: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 2))
                .collect()
        })
        .unwrap_or_default();
    p.report(
        "other processes in /proc",
        if visible.is_empty() {
            Err("only the namespace's init and this domain are visible".into())
        } else {
            Ok(format!("visible: {}", visible.join(" ")))
        },
    );
    // Signals to anyone at all: every pid, and kill(-1) (every process it may signal).
    let reachable: Vec<i32> = (3..65536)
        // SAFETY: signal 0 only checks for existence and permission.
        .filter(|&pid| unsafe { libc::kill(pid, 0) } == 0)
        .collect();
    p.report(
        "kill(pid, 0) for every pid 3…65535",
        if reachable.is_empty() {
            Err("no process besides its init and itself can be signalled".into())
        } else {
            Ok(format!("signalled {reachable:?}"))
        },
    );
    // SAFETY: signal 0 to every process it may signal (none is harmed).
    let r = unsafe { libc::kill(-1, 0) };
    p.report("kill(-1, 0)", os(r.into()));
    // SAFETY: unshare takes flags only; expected to fail.
    let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    p.report("unshare(CLONE_NEWUSER)", os(r.into()));
    // SAFETY: NUL-terminated literals and a null data pointer; expected to fail.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    p.report("mount(tmpfs)", os(r.into()));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or("?")
        .to_string();
    p.report(
        "capabilities",
        if cap_eff.chars().all(|c| c == '0') && !cap_eff.is_empty() {
            Err(format!("CapEff {cap_eff}"))
        } else {
            Ok(format!("CapEff {cap_eff}"))
        },
    );
    if let Some(path) = secret {
        p.report(
            "a root-only file",
            std::fs::read(path)
                .map(|b| format!("read {} bytes", b.len()))
                .map_err(|e| e.to_string()),
        );
    }
}

/// The probe's own channel page, spoken to without the guest library.
struct Guest {
    mem: SharedMem,
}

impl Guest {
    fn connect() -> Guest {
        let fd: i32 = std::env::var(wire::ENV_FD)
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("STATICBUS_EMU_FD");
        // SAFETY: the runner handed this process the descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Guest {
            mem: SharedMem::map(fd, DOMAIN_MEM_SIZE).expect("map the domain memory"),
        }
    }

    /// Posts whatever is in the page as request `req_seq + 1` and returns its number.
    fn post(&self) -> u32 {
        let c = self.mem.control();
        let seq = c.req_seq.load(SeqCst).wrapping_add(1);
        c.req_seq.store(seq, SeqCst);
        wire::wake(&c.req_seq);
        seq
    }

    /// Waits for the answer to request `seq`; `None` if none came within 10 s.
    fn answer(&self, seq: u32, arg: &mut [u8]) -> Option<i64> {
        let c = self.mem.control();
        let start = Instant::now();
        while c.done_seq.load(SeqCst) != seq {
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            let d = c.done_seq.load(SeqCst);
            c.guest_waiting.store(1, SeqCst);
            if d != seq {
                wire::wait(&c.done_seq, d, Some(Duration::from_millis(50)));
            }
            c.guest_waiting.store(0, SeqCst);
        }
        Some(self.mem.read_response(arg))
    }

    fn call(&self, op: u64, cmd: u32, arg: &mut [u8]) -> Option<i64> {
        self.mem.write_request(op, cmd, arg);
        let seq = self.post();
        self.answer(seq, arg)
    }

    /// Overwrites `arg_len` in the page as posted (the guest library would clamp it).
    fn set_raw_len(&self, len: u32) {
        // SAFETY: offset 36 of the channel page lies inside the mapping; u32-aligned.
        unsafe {
            std::ptr::write_volatile(self.mem.as_ptr().add(CHANNEL_PAGE + 36).cast::<u32>(), len);
        }
    }

    /// The hypervisor still answers a plain request correctly.
    fn alive(&self) -> Result<(), String> {
        match self.call(hc::XEN_VERSION, 0, &mut []) {
            Some(v) if v > 0 => Ok(()),
            Some(v) => Err(format!("XENVER_version returned {v}")),
            None => Err("the hypervisor stopped answering".into()),
        }
    }
}

/// `ret` must be an error; `None` (no answer) is an open hole too: the hypervisor hung.
fn refused(what: &str, ret: Option<i64>) -> Result<String, String> {
    match ret {
        Some(r) if r < 0 => Err(format!("{what} → {r}")),
        Some(r) => Ok(format!("{what} → {r}")),
        None => Ok(format!("{what}: no answer")),
    }
}

/// The first of `tries` that succeeded, as an open hole; else every one was refused.
fn all_refused(tries: impl IntoIterator<Item = Result<String, String>>) -> Result<String, String> {
    let mut n = 0;
    let mut last = String::new();
    for t in tries {
        match t {
            Ok(open) => return Ok(open),
            Err(e) => {
                n += 1;
                last = e;
            }
        }
    }
    Err(format!("{n} tries refused (last: {last})"))
}

fn hypercall_attacks(p: &mut Probe) -> Guest {
    let g = Guest::connect();
    let me = std::env::var(wire::ENV_MANIFEST)
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|t| staticbus_manifest::json::load(&t).ok())
        .map(|m| m.domid)
        .expect("this domain's manifest");
    if let Err(e) = g.alive() {
        println!("RESULT FAIL the hypervisor does not answer a plain request: {e}");
        std::process::exit(1);
    }
    let others: Vec<u16> = (0..=8)
        .filter(|&d| d != me)
        .chain([domid::DOMID_IO, domid::DOMID_XEN])
        .collect();
    let ev = |cmd: u32, arg: &mut [u8]| g.call(hc::EVENT_CHANNEL_OP, cmd, arg);

    p.report(
        "EVTCHNOP_status of other domains' ports",
        all_refused(
            others
                .iter()
                .flat_map(|&d| (1..=4).map(move |port| (d, port)))
                .map(|(d, port)| {
                    let mut s = EvtchnStatus {
                        dom: d,
                        port,
                        ..Default::default()
                    };
                    refused(
                        &format!("d{d}:{port}"),
                        ev(evtchn::OP_STATUS, s.as_mut_bytes()),
                    )
                }),
        ),
    );
    p.report(
        "EVTCHNOP_alloc_unbound in other domains",
        all_refused(others.iter().map(|&d| {
            let mut a = EvtchnAllocUnbound {
                dom: d,
                remote_dom: me,
                port: 0,
            };
            refused(
                &format!("in d{d}"),
                ev(evtchn::OP_ALLOC_UNBOUND, a.as_mut_bytes()),
            )
        })),
    );
    p.report(
        "EVTCHNOP_bind_interdomain to other domains' ports",
        all_refused(
            others
                .iter()
                .flat_map(|&d| (1..=8).map(move |port| (d, port)))
                .map(|(d, port)| {
                    let mut b = EvtchnBindInterdomain {
                        remote_dom: d,
                        remote_port: port,
                        ..Default::default()
                    };
                    refused(
                        &format!("to d{d}:{port}"),
                        ev(evtchn::OP_BIND_INTERDOMAIN, b.as_mut_bytes()),
                    )
                }),
        ),
    );
    p.report(
        "XENMEM_add_to_physmap for other domains",
        all_refused(others.iter().map(|&d| {
            let mut a = AddToPhysmap {
                domid: d,
                ..Default::default()
            };
            refused(
                &format!("d{d}"),
                g.call(hc::MEMORY_OP, memory::ADD_TO_PHYSMAP, a.as_mut_bytes()),
            )
        })),
    );
    // Ports this domain does not own (it owns none: it is connected to nobody).
    let free: Vec<u32> = (1..=evtchn::DOMU_MAX_PORT + 1)
        .filter(|&port| {
            let mut s = EvtchnStatus {
                dom: domid::DOMID_SELF,
                port,
                ..Default::default()
            };
            let r = ev(evtchn::OP_STATUS, s.as_mut_bytes());
            r.is_some_and(|r| r < 0) || s.status == evtchn::STAT_CLOSED
        })
        .collect();
    for (name, cmd) in [
        ("EVTCHNOP_send", evtchn::OP_SEND),
        ("EVTCHNOP_close", evtchn::OP_CLOSE),
    ] {
        p.report(
            &format!("{name} on {} ports it does not own", free.len()),
            all_refused(free.iter().map(|&port| {
                let mut a = EvtchnPort { port };
                refused(&format!("port {port}"), ev(cmd, a.as_mut_bytes()))
            })),
        );
    }

    // Malformed and truncated frames: each refused, and the hypervisor still answers.
    let mut frames: Vec<(String, Option<i64>)> = Vec::new();
    frames.push((
        "unknown hypercall 0xdead".into(),
        g.call(0xdead, 0, &mut []),
    ));
    frames.push((
        "unknown EVTCHNOP 0x7fff".into(),
        g.call(hc::EVENT_CHANNEL_OP, 0x7fff, &mut [0; 16]),
    ));
    for (name, cmd, full) in [
        ("send", evtchn::OP_SEND, 4),
        ("status", evtchn::OP_STATUS, 24),
        ("bind_interdomain", evtchn::OP_BIND_INTERDOMAIN, 12),
        ("alloc_unbound", evtchn::OP_ALLOC_UNBOUND, 8),
    ] {
        for len in [0, full - 1] {
            let mut arg = vec![0u8; len];
            frames.push((
                format!("EVTCHNOP_{name} truncated to {len} bytes"),
                g.call(hc::EVENT_CHANNEL_OP, cmd, &mut arg),
            ));
        }
    }
    frames.push((
        "XENMEM_add_to_physmap truncated to 5 bytes".into(),
        g.call(hc::MEMORY_OP, memory::ADD_TO_PHYSMAP, &mut [0; 5]),
    ));
    let accepted = frames.iter().find(|(_, r)| !r.is_some_and(|r| r < 0));
    p.report(
        &format!("{} malformed and truncated requests", frames.len()),
        match (accepted, g.alive()) {
            (Some((what, r)), _) => Ok(format!("{what} was accepted: {r:?}")),
            (None, Err(e)) => Ok(e),
            (None, Ok(())) => Err("every one refused, and the hypervisor still answers".into()),
        },
    );
    // An arg_len past the page: clamped, answered, and the next request is fine.
    g.mem
        .write_request(hc::EVENT_CHANNEL_OP, evtchn::OP_SEND, &[0xff; 4]);
    g.set_raw_len(u32::MAX);
    let seq = g.post();
    let ret = g.answer(seq, &mut [0; 4]);
    p.report(
        "a request whose arg_len is 4 GiB",
        match (ret, g.alive()) {
            (Some(r), Ok(())) if r < 0 => {
                Err(format!("clamped to {ARG_MAX} bytes and refused ({r})"))
            }
            (r, alive) => Ok(format!("answer {r:?}, then {alive:?}")),
        },
    );
    // A flood: requests posted as fast as possible, none waited for, the sequence number
    // jumping about.
    let start = Instant::now();
    let mut posted = 0u64;
    g.mem.write_request(hc::XEN_VERSION, 0, &[]);
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            g.post();
        }
        g.mem.control().req_seq.fetch_add(0x8000_0000, SeqCst);
        posted += 1001;
    }
    p.report(
        &format!("a flood of {posted} requests in 2 s"),
        match g.alive() {
            Ok(()) => Err("absorbed: the hypervisor answers the next request".into()),
            Err(e) => Ok(e),
        },
    );
    g
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let hypercalls = args.first().is_some_and(|a| a == "--hypercalls");
    if hypercalls {
        args.remove(0);
    }
    let (runner, others) = targets(args.first().expect(USAGE));
    let secret = args.get(1).cloned();
    // Outside the sandbox these attempts would succeed (ptrace would stop the runner): do
    // nothing unless this process is sandboxed.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'))
    {
        println!("RESULT FAIL not in the sandbox (NoNewPrivs is not set): refusing to attack");
        std::process::exit(2);
    }
    let mut p = Probe { open: 0, tried: 0 };
    os_attacks(&mut p, runner, &others, secret.as_deref());
    let guest = hypercalls.then(|| hypercall_attacks(&mut p));
    if p.open == 0 {
        println!("tried {} ways out", p.tried);
        println!("RESULT PASS every way out was blocked");
    } else {
        println!("RESULT FAIL {} ways out were open", p.open);
        std::process::exit(1);
    }
    if let Some(g) = guest {
        // Exit in the middle of a hypercall: posted, not waited for.
        g.mem.write_request(hc::XEN_VERSION, 0, &[]);
        g.post();
        // SAFETY: _exit ends the process at once, without running anything else.
        unsafe { libc::_exit(0) }
    }
}
