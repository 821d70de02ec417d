//! `staticbus run`: the whole system on one Linux host. The hypervisor lives in this
//! process (crate `staticbus-emu`); every domain is a child process attached through
//! `staticbus-emu-wire`'s wire protocol.
//!
//! Per domain the runner creates one memfd (its `shared_info` page and its channel page),
//! maps it, boots the hypervisor (static event channels bound as Xen binds them, so one end
//! of each pair starts pending), starts the domain's program with exactly its own memfd and
//! the memfds of the regions its manifest lists (nothing else is inherited), and serves its
//! hypercalls on a thread of its own. Output lines are prefixed with the domain name. The
//! run ends when every domain has exited, on `--timeout`, or on Ctrl-C, and prints a
//! summary.

use staticbus_config::emit;
use staticbus_config::manifest::manifests;
use staticbus_config::model::System;
use staticbus_emu::{Console, DomId, DomainState, Hypervisor, Notify, PageMem, Policy};
use staticbus_emu_wire::{self as wire, Control, SharedMem, ARG_MAX, DOMAIN_MEM_SIZE};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How `staticbus run` behaves.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop everything after this long.
    pub timeout: Option<Duration>,
    /// XSM policy.
    pub policy: Policy,
    /// Domains to re-create whenever they exit (beyond Xen).
    pub restart: Vec<String>,
    /// Re-create any domain that crashes (exits non-zero or dies on a signal).
    pub restart_on_crash: bool,
    /// Upper bound on restarts per domain.
    pub max_restarts: u32,
}

/// A domain's memory (shared_info page + channel page), mapped here and in the domain.
struct DomainMem(SharedMem);

impl DomainMem {
    fn new(name: &str) -> std::io::Result<DomainMem> {
        SharedMem::create(&format!("staticbus-{name}"), DOMAIN_MEM_SIZE).map(DomainMem)
    }

    fn control(&self) -> &Control {
        self.0.control()
    }
}

impl PageMem for DomainMem {
    fn words(&self) -> &[AtomicU64; 512] {
        self.0.shared_info_words()
    }
}

/// Current memory of every domain, by domid (replaced on restart).
#[derive(Default)]
struct Mems(RwLock<HashMap<DomId, Arc<DomainMem>>>);

impl Notify for Mems {
    fn wake(&self, dom: DomId) {
        if let Some(m) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(&dom) {
            m.control().notify_guest();
        }
    }
}

/// Prints console output with the domain's name.
struct Prefixed {
    out: Mutex<()>,
}

impl Prefixed {
    fn line(&self, name: &str, line: &str) {
        let _g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "[{name}] {line}");
        let _ = o.flush();
    }
}

impl Console for Prefixed {
    fn write(&self, _dom: DomId, name: &str, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for l in text.trim_end_matches('\n').split('\n') {
            self.line(name, l);
        }
    }
}

/// Serves one domain's hypercalls until `stop`.
fn serve(hv: Arc<Hypervisor>, dom: DomId, mem: Arc<DomainMem>, stop: Arc<AtomicBool>) {
    let c = mem.control();
    // Start from the last *answered* request: the domain may already have posted one
    // before this thread started.
    let mut last = c.done_seq.load(SeqCst);
    let mut buf = [0u8; ARG_MAX];
    loop {
        let seq = loop {
            let s = c.req_seq.load(SeqCst);
            if s != last {
                break s;
            }
            if stop.load(SeqCst) {
                return;
            }
            c.hv_waiting.store(1, SeqCst);
            if c.req_seq.load(SeqCst) == last {
                wire::wait(&c.req_seq, last, Some(Duration::from_millis(50)));
            }
            c.hv_waiting.store(0, SeqCst);
        };
        // Copied out before use: the domain may change the page under us.
        let (op, cmd, len) = mem.0.read_request(&mut buf);
        let ret = hv.hypercall(dom, op, cmd, &mut buf[..len]);
        mem.0.write_response(ret, &buf[..len]);
        c.done_seq.store(seq, SeqCst);
        if c.guest_waiting.load(SeqCst) != 0 {
            wire::wake(&c.done_seq);
        }
        last = seq;
    }
}

/// Where a domain's program is: relative to the description, next to the `staticbus`
/// executable (where `cargo build` puts the example programs), or on `PATH`.
fn resolve_program(program: &str, base_dir: &Path) -> PathBuf {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    if program.contains('/') {
        return base_dir.join(p);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let cand = dir.join(p);
        if cand.exists() {
            return cand;
        }
    }
    p.to_path_buf()
}

/// One running (or finished) domain.
struct Dom {
    domid: DomId,
    name: String,
    program: PathBuf,
    args: Vec<String>,
    manifest: PathBuf,
    mem: Arc<DomainMem>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    pid: Option<u32>,
    status: Option<String>,
    ok: bool,
    restarts: u32,
    started: Instant,
}

enum Event {
    Exited(usize, u64, ExitStatus),
}

struct Runner {
    hv: Arc<Hypervisor>,
    mems: Arc<Mems>,
    console: Arc<Prefixed>,
    doms: Vec<Dom>,
    tx: mpsc::Sender<Event>,
    generation: Vec<u64>,
    /// Threads copying domain output; joined before the summary so it comes last.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Runner {
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let d = &mut self.doms[i];
        let grants = self.hv.shm_grants(d.domid);
        let mem_fd = wire::raw(d.mem.0.fd());
        let mut keep = vec![mem_fd];
        let mut regions = Vec::new();
        for g in &grants {
            if let Some(fd) = g.fd() {
                keep.push(wire::raw(fd));
                regions.push(format!("{}={}", g.id, wire::raw(fd)));
            }
        }
        let mut cmd = Command::new(&d.program);
        cmd.args(&d.args)
            .env(wire::ENV_FD, mem_fd.to_string())
            .env(wire::ENV_REGIONS, regions.join(","))
            .env(wire::ENV_MANIFEST, &d.manifest)
            .env(wire::ENV_DOMAIN, &d.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wire::inherit_fds(&mut cmd, keep);
        let mut child: Child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start `{}` for domain `{}`: {e} (a bare name is looked up next to the \
                 description, next to the `staticbus` executable, where `cargo build --workspace` \
                 puts the example programs, then on PATH)",
                d.program.display(),
                d.name
            )
        })?;
        drop(grants);
        d.pid = Some(child.id());
        d.started = Instant::now();
        d.status = None;
        let streams = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ];
        for s in streams.into_iter().flatten() {
            let console = self.console.clone();
            let name = d.name.clone();
            self.readers.push(std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    console.line(&name, &line);
                }
            }));
        }
        let hv = self.hv.clone();
        let (domid, mem, stop) = (d.domid, d.mem.clone(), d.stop.clone());
        d.server = Some(std::thread::spawn(move || serve(hv, domid, mem, stop)));
        let tx = self.tx.clone();
        let gen = self.generation[i];
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                let _ = tx.send(Event::Exited(i, gen, st));
            }
        });
        Ok(())
    }

    fn stop_server(&mut self, i: usize) {
        let d = &mut self.doms[i];
        d.stop.store(true, SeqCst);
        wire::wake(&d.mem.control().req_seq);
        if let Some(h) = d.server.take() {
            let _ = h.join();
        }
    }

    fn kill_all(&mut self, why: &str) {
        for d in &mut self.doms {
            if d.status.is_none() {
                if let Some(pid) = d.pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                d.status = Some(why.to_string());
                d.ok = false;
            }
        }
    }
}

fn describe(st: &ExitStatus) -> (String, bool) {
    if let Some(c) = st.code() {
        (format!("exited {c}"), c == 0)
    } else if let Some(s) = st.signal() {
        (format!("killed by signal {s}"), false)
    } else {
        ("exited".into(), false)
    }
}

/// Runs `sys` (read from a description in `base_dir`). Returns the exit code.
pub fn run(sys: &System, base_dir: &Path, opts: &RunOptions) -> u8 {
    for d in &sys.domains {
        if d.emulate.is_none() {
            eprintln!(
                "error: domain `{}` has no `emulate` program, so this description cannot be run \
                 in the emulator (it is for `staticbus check` and `build` only)\n  \
                 help: add `emulate = {{ program = \"…\", args = [...] }}` to every [[domain]]; \
                 examples/ping-pong/system.toml shows how",
                d.name
            );
            return 2;
        }
    }
    for r in &opts.restart {
        if sys.domain_index(r).is_none() {
            eprintln!("error: --restart names no domain `{r}`");
            return 2;
        }
    }
    let dir = std::env::temp_dir().join(format!("staticbus-run-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return 2;
    }
    let result = run_in(sys, base_dir, opts, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(sys: &System, base_dir: &Path, opts: &RunOptions, dir: &Path) -> u8 {
    let mems = Arc::new(Mems::default());
    let console = Arc::new(Prefixed {
        out: Mutex::new(()),
    });
    let hv = Arc::new(Hypervisor::new(opts.policy, mems.clone(), console.clone()));
    let mut doms = Vec::new();
    let mut pages: Vec<Arc<dyn PageMem>> = Vec::new();
    for (d, m) in sys.domains.iter().zip(manifests(sys)) {
        let mem = match DomainMem::new(&d.name) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("error: cannot create memory for `{}`: {e}", d.name);
                return 2;
            }
        };
        let manifest = dir.join(format!("{}.json", d.name));
        if let Err(e) = std::fs::write(&manifest, emit::to_json(&m)) {
            eprintln!("error: cannot write {}: {e}", manifest.display());
            return 2;
        }
        let em = d.emulate.as_ref().expect("checked above");
        mems.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.domid, mem.clone());
        pages.push(mem.clone());
        doms.push(Dom {
            domid: d.domid,
            name: d.name.clone(),
            program: resolve_program(&em.program, base_dir),
            args: em.args.clone(),
            manifest,
            mem,
            stop: Arc::new(AtomicBool::new(false)),
            server: None,
            pid: None,
            status: None,
            ok: false,
            restarts: 0,
            started: Instant::now(),
        });
    }
    if let Err(e) = hv.boot(sys, pages) {
        eprintln!("error: Xen would not boot this system: {e}");
        return 1;
    }
    let (tx, rx) = mpsc::channel();
    let n = doms.len();
    let mut r = Runner {
        hv: hv.clone(),
        mems,
        console,
        doms,
        tx,
        generation: vec![0; n],
        readers: Vec::new(),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, SeqCst));
    }
    let start = Instant::now();
    for i in 0..n {
        if let Err(e) = r.spawn(i) {
            eprintln!("error: {e}");
            r.kill_all("not started");
            return 2;
        }
    }
    let mut timed_out = false;
    loop {
        if r.doms.iter().all(|d| d.status.is_some()) {
            break;
        }
        if interrupted.load(SeqCst) {
            eprintln!("interrupted: stopping every domain");
            r.kill_all("stopped (Ctrl-C)");
            break;
        }
        if opts.timeout.is_some_and(|t| start.elapsed() >= t) {
            timed_out = true;
            r.kill_all("killed (timeout)");
            break;
        }
        let Ok(Event::Exited(i, gen, st)) = rx.recv_timeout(Duration::from_millis(20)) else {
            continue;
        };
        if gen != r.generation[i] {
            continue;
        }
        let (what, ok) = describe(&st);
        let domid = r.doms[i].domid;
        let shut_down = matches!(r.hv.state(domid), Some(DomainState::Shutdown(_)));
        if !ok && !shut_down {
            r.hv.crash(domid);
        }
        r.stop_server(i);
        r.hv.destroy(domid);
        let name = r.doms[i].name.clone();
        let want_restart = (opts.restart.contains(&name) || (opts.restart_on_crash && !ok))
            && r.doms[i].restarts < opts.max_restarts;
        if want_restart {
            let mem = match DomainMem::new(&name) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    eprintln!("error: cannot re-create `{name}`: {e}");
                    r.doms[i].status = Some(what);
                    r.doms[i].ok = false;
                    continue;
                }
            };
            r.mems
                .0
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(domid, mem.clone());
            if let Err(e) = r.hv.restart(domid, mem.clone()) {
                eprintln!("error: cannot restart `{name}`: {e}");
                r.doms[i].status = Some(what);
                r.doms[i].ok = false;
                continue;
            }
            r.doms[i].mem = mem;
            r.doms[i].stop = Arc::new(AtomicBool::new(false));
            r.doms[i].restarts += 1;
            r.generation[i] += 1;
            r.console.line(
                &name,
                &format!("({what}; restarted, #{})", r.doms[i].restarts),
            );
            if let Err(e) = r.spawn(i) {
                eprintln!("error: {e}");
                r.doms[i].status = Some("restart failed".into());
                r.doms[i].ok = false;
            }
            continue;
        }
        r.doms[i].status = Some(what);
        r.doms[i].ok = ok;
    }
    for i in 0..n {
        r.stop_server(i);
    }
    // Every domain process has exited or been killed: their pipes close, so the output
    // threads finish; join them so the summary is not interleaved with late output.
    for h in std::mem::take(&mut r.readers) {
        let _ = h.join();
    }
    summary(sys, &r, start.elapsed());
    if interrupted.load(SeqCst) {
        130
    } else if timed_out || r.doms.iter().any(|d| !d.ok) {
        1
    } else {
        0
    }
}

fn summary(sys: &System, r: &Runner, elapsed: Duration) {
    let stats = r.hv.stats();
    let mut e = std::io::stderr().lock();
    let _ = writeln!(
        e,
        "\n== staticbus run: {} ({:.2}s)",
        sys.name,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        e,
        "{:<16} {:>5} {:>8}  status",
        "domain", "domid", "restarts"
    );
    for d in &r.doms {
        let _ = writeln!(
            e,
            "{:<16} {:>5} {:>8}  {}",
            d.name,
            d.domid,
            d.restarts,
            d.status.as_deref().unwrap_or("running")
        );
    }
    let _ = writeln!(
        e,
        "{:<24} {:<26} {:>10} {:>10}",
        "channel", "event channel", "sent", "delivered"
    );
    for p in &sys.evtchns {
        let (a, b) = (&sys.domains[p.first.domain], &sys.domains[p.second.domain]);
        let name = p
            .channel
            .map(|c| sys.channels[c].name.clone())
            .unwrap_or_else(|| "(static evtchn)".into());
        for (from, fp, to, tp) in [
            (a, p.first.port, b, p.second.port),
            (b, p.second.port, a, p.first.port),
        ] {
            let sent = stats.ports.get(&(from.domid, fp)).map_or(0, |s| s.sent);
            let delivered = stats.ports.get(&(to.domid, tp)).map_or(0, |s| s.delivered);
            let _ = writeln!(
                e,
                "{:<24} {:<26} {:>10} {:>10}",
                name,
                format!("{}:{} -> {}:{}", from.name, fp, to.name, tp),
                sent,
                delivered
            );
        }
    }
    let _ = writeln!(
        e,
        "hypercalls: {} ({:.0}/s)",
        stats.total_hypercalls(),
        stats.total_hypercalls() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
}
