//! The process runner: domain memory, one serving thread per domain, processes, restarts.
//!
//! Per domain the runner creates one memfd (its `shared_info` page and its channel page,
//! [`staticbus_emu_wire`]), maps it, boots the hypervisor from the [`BootSpec`] (static
//! event channels bound as Xen binds them, so one end of each pair starts pending), checks
//! the result against every domain's manifest ([`crate::check`]), starts the domain's
//! program with exactly its own memfd and the memfds of the regions the hypervisor grants
//! it (nothing else is inherited; with a [`Sandbox`], through the launcher that cuts every
//! other way to the runner and the other domains), and serves its hypercalls on a thread of
//! its own. The run ends when every domain has exited, on the timeout, or when the
//! interrupt flag is set.

use crate::cgroup::{Cgroups, DomainGroup};
use crate::check::{self, Expected};
use crate::direct::Direct;
use crate::sandbox::{self, Limits, Sandbox};
use staticbus_abi::shared_info::SharedInfo;
use staticbus_emu::{
    BootError, BootSpec, Console, DomId, DomainState, Hypervisor, Notify, PageMem, Policy, Stats,
};
use staticbus_emu_wire::{self as wire, Control, SharedMem, ARG_MAX, DOMAIN_MEM_SIZE};
use staticbus_manifest as m;
use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

/// What runs in one domain.
#[derive(Clone, Debug)]
pub struct DomainProgram {
    /// The domain's name in the host tree.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The domain's `manifest.json` (as `staticbus build` writes it).
    pub manifest: PathBuf,
    /// What its processes may take from the machine (from its `emulate` table).
    pub limits: Limits,
}

/// How a run behaves.
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
    /// Set (e.g. by a Ctrl-C handler) to stop every domain.
    pub interrupt: Arc<AtomicBool>,
    /// The status of domains stopped by the interrupt.
    pub interrupt_status: String,
    /// Start every domain through the sandbox ([`crate::sandbox`]); `None` runs them as
    /// plain child processes, which any of them can use to reach the others.
    pub sandbox: Option<Sandbox>,
    /// Put every domain in a cgroup of its own, with its limits, where the runner may
    /// write a cgroup v2 subtree ([`crate::cgroup`]); what cannot be enforced is said once
    /// through [`Output::note`].
    pub cgroups: bool,
    /// Deliver static event channels between two domains directly, sender to receiver
    /// with no hypervisor thread between (docs/adr/0009); `false` sends every event
    /// through an `EVTCHNOP_send` hypercall. The default is [`direct_from_env`].
    pub direct: bool,
}

/// Direct delivery unless the environment variable `STATICBUS_EMU_DIRECT` is `0`
/// (docs/emulator.md).
pub fn direct_from_env() -> bool {
    wire::direct::enabled_by_env()
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: None,
            policy: Policy::Silo,
            restart: Vec::new(),
            restart_on_crash: false,
            max_restarts: 1000,
            interrupt: Arc::new(AtomicBool::new(false)),
            interrupt_status: "stopped (interrupted)".into(),
            sandbox: None,
            cgroups: true,
            direct: direct_from_env(),
        }
    }
}

/// Where domain output goes: one call per line, without its newline, from any thread.
pub trait Output: Send + Sync {
    /// A line domain `domain` wrote to its console, stdout or stderr.
    fn line(&self, domain: &str, line: &str);

    /// Something the runner itself has to say while the domains run (nothing by default).
    fn note(&self, _text: &str) {}
}

/// How one domain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainReport {
    /// Name.
    pub name: String,
    /// Domain id.
    pub domid: DomId,
    /// Times it was re-created.
    pub restarts: u32,
    /// `exited 0`, `killed by signal 9`, `killed (timeout)`, …
    pub status: String,
    /// Exited with status 0.
    pub ok: bool,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    /// Every domain, in creation order.
    pub domains: Vec<DomainReport>,
    /// The hypervisor's counters at the end.
    pub stats: Stats,
    /// From the first start to the last exit.
    pub elapsed: Duration,
    /// The timeout stopped the run.
    pub timed_out: bool,
    /// The interrupt flag stopped the run.
    pub interrupted: bool,
}

impl Report {
    /// 0 when every domain exited 0, 130 when interrupted, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            130
        } else if self.timed_out || self.domains.iter().any(|d| !d.ok) {
            1
        } else {
            0
        }
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub enum RunError {
    /// The programs do not match the host tree's domains, or a restart names no domain.
    Config(String),
    /// A manifest could not be read.
    Manifest(String),
    /// Memory could not be created.
    Io(String),
    /// Xen would not boot this tree (it panics in every one of these cases).
    Boot(BootError),
    /// The host tree and the manifests disagree ([`crate::check`]).
    Mismatch(Vec<String>),
    /// A domain program could not be started.
    Spawn(String),
    /// The sandbox cannot work on this machine, or cannot reach a program.
    Sandbox(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(s) | RunError::Manifest(s) | RunError::Io(s) | RunError::Spawn(s) => {
                f.write_str(s)
            }
            RunError::Sandbox(s) => write!(f, "domain sandbox: {s}"),
            RunError::Boot(e) => write!(f, "Xen would not boot this system: {e}"),
            RunError::Mismatch(v) => {
                write!(
                    f,
                    "the host tree and the manifests disagree ({} {}):",
                    v.len(),
                    if v.len() == 1 { "fact" } else { "facts" }
                )?;
                for l in v {
                    write!(f, "\n  {l}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RunError {}

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

/// Maps domain ids to their memory, for waking.
#[derive(Default)]
pub(crate) struct Mems(RwLock<HashMap<DomId, Arc<DomainMem>>>);

impl Mems {
    /// The `shared_info` page of `dom`, if it has memory.
    pub(crate) fn page(&self, dom: DomId) -> Option<Arc<dyn PageMem>> {
        let m = self.0.read().unwrap_or_else(|e| e.into_inner());
        m.get(&dom).map(|m| m.clone() as Arc<dyn PageMem>)
    }
}

impl Notify for Mems {
    fn wake(&self, dom: DomId) {
        if let Some(m) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(&dom) {
            m.control().notify_guest();
        }
    }
}

/// The hypervisor's console, as lines to an [`Output`].
struct Lines(Arc<dyn Output>);

impl Console for Lines {
    fn write(&self, _dom: DomId, name: &str, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for l in text.trim_end_matches('\n').split('\n') {
            self.0.line(name, l);
        }
    }
}

/// The longest line a domain's stdout or stderr gets through as one line; the rest of a
/// longer line comes as further lines of at most this length.
pub const MAX_LINE: usize = 4096;

/// How long the output threads may take to drain after every domain process has ended,
/// before the run reports without waiting for them (a process that left its process group
/// can keep a pipe open for good).
const DRAIN: Duration = Duration::from_secs(2);

/// Copies `input` to `line` one line at a time, without the newline: invalid UTF-8 is
/// replaced (U+FFFD), and a line longer than [`MAX_LINE`] bytes is cut into pieces of at
/// most that many, so that nothing a domain writes closes its output or grows without
/// bound. Ends at end of file or on a read error.
pub fn copy_lines(input: impl Read, mut line: impl FnMut(&str)) {
    let mut r = BufReader::with_capacity(MAX_LINE, input);
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut emit = |bytes: &mut Vec<u8>| {
        line(&String::from_utf8_lossy(bytes));
        bytes.clear();
    };
    loop {
        let buf = match r.fill_buf() {
            Ok([]) => break,
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let room = MAX_LINE - pending.len();
        let take = buf.len().min(room);
        match buf[..take].iter().position(|&b| b == b'\n') {
            Some(nl) => {
                pending.extend_from_slice(&buf[..nl]);
                r.consume(nl + 1);
                emit(&mut pending);
            }
            None => {
                pending.extend_from_slice(&buf[..take]);
                r.consume(take);
                if pending.len() == MAX_LINE {
                    emit(&mut pending);
                }
            }
        }
    }
    if !pending.is_empty() {
        emit(&mut pending);
    }
}

/// Kills every process of process group `pgid` (a domain and whatever it forked).
fn kill_group(pgid: u32) {
    if let Ok(g) = i32::try_from(pgid) {
        if g > 1 {
            // SAFETY: killpg takes integers; a group that no longer exists gives ESRCH.
            unsafe {
                libc::killpg(g, libc::SIGKILL);
            }
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
        // Checked before every request too: a domain (or a process it forked, which shares
        // its mapping) that posts requests without pause must not keep this thread alive.
        if stop.load(SeqCst) {
            return;
        }
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

/// One running (or finished) domain.
struct Dom {
    domid: DomId,
    prog: DomainProgram,
    mem: Arc<DomainMem>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    pid: Option<u32>,
    status: Option<String>,
    ok: bool,
    restarts: u32,
    /// Its cgroup, if the run has cgroups.
    cgroup: Option<DomainGroup>,
}

enum Event {
    Exited(usize, u64, ExitStatus),
}

struct Runner {
    sandbox: Option<Sandbox>,
    hv: Arc<Hypervisor>,
    mems: Arc<Mems>,
    out: Arc<dyn Output>,
    doms: Vec<Dom>,
    tx: mpsc::Sender<Event>,
    generation: Vec<u64>,
    /// Threads copying domain output; joined before returning so the report comes last.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Direct delivery's pages, if on.
    direct: Option<Arc<Direct>>,
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
        let direct_env = match &self.direct {
            Some(dr) => {
                let (env, fds) = dr.handout(d.domid);
                keep.extend(fds);
                env
            }
            None => Vec::new(),
        };
        let mut cmd = match &self.sandbox {
            Some(s) => {
                let mut c = Command::new(&s.launcher);
                c.args(s.args(d.domid, &d.prog.limits, &d.prog.program, &d.prog.args));
                c
            }
            None => {
                let mut c = Command::new(&d.prog.program);
                c.args(&d.prog.args);
                c
            }
        };
        cmd.env(wire::ENV_FD, mem_fd.to_string())
            .env(wire::ENV_REGIONS, regions.join(","))
            .env(wire::ENV_MANIFEST, &d.prog.manifest)
            .env(wire::ENV_DOMAIN, &d.prog.name)
            .envs(direct_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wire::inherit_fds(&mut cmd, keep);
        let group = d.cgroup.clone();
        // Its own process group, so that the domain and everything it forks is killed
        // together; and killed if the runner dies.
        cmd.process_group(0);
        // Without the sandbox the limits are set here (the launcher sets them otherwise,
        // inside the domain's user namespace, where they also bound its processes).
        let rlimits = match self.sandbox {
            Some(_) => Vec::new(),
            None => sandbox::rlimits(&d.prog.limits, false),
        };
        // SAFETY: prctl with integer arguments only and `apply_rlimits` (getrlimit and
        // setrlimit on a list built before the fork): async-signal-safe.
        unsafe {
            let group = group.clone();
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Before anything else runs, so that all the domain starts is in its group.
                if let Some(g) = &group {
                    g.join_self().map_err(std::io::Error::from_raw_os_error)?;
                }
                sandbox::apply_rlimits(&rlimits).map_err(std::io::Error::from_raw_os_error)
            });
        }
        let mut child: Child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start `{}` for domain `{}`: {e}",
                d.prog.program.display(),
                d.prog.name
            )
        })?;
        drop(grants);
        d.pid = Some(child.id());
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
            let out = self.out.clone();
            let name = d.prog.name.clone();
            self.readers.push(std::thread::spawn(move || {
                copy_lines(s, |line| out.line(&name, line));
            }));
        }
        let hv = self.hv.clone();
        let (domid, mem, stop) = (d.domid, d.mem.clone(), d.stop.clone());
        d.server = Some(std::thread::spawn(move || serve(hv, domid, mem, stop)));
        let tx = self.tx.clone();
        let gen = self.generation[i];
        std::thread::spawn(move || {
            // Once the domain's process has ended, whatever it forked dies with it (as a
            // domain's whole state does in Xen). Killed while the process is a zombie, not
            // yet reaped, so that its pid (the group's id) cannot have been reused.
            let pid = child.id();
            let mut info: libc::siginfo_t = zeroed_siginfo();
            loop {
                // SAFETY: waitid writes into a live siginfo_t; WNOWAIT leaves the child
                // for `wait` below.
                let r = unsafe {
                    libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
                };
                if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            kill_group(pid);
            // Also what left the process group (the group's kill reaches it).
            if let Some(g) = &group {
                g.kill();
            }
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
                if let Some(pid) = d.pid {
                    kill_group(pid);
                }
                if let Some(g) = &d.cgroup {
                    g.kill();
                }
                d.status = Some(why.to_string());
                d.ok = false;
            }
        }
    }

    /// Re-creates domain `i` after it exited with `what`; false if that failed.
    fn restart(&mut self, i: usize, what: &str) -> bool {
        let (domid, name) = (self.doms[i].domid, self.doms[i].prog.name.clone());
        let mem = match DomainMem::new(&name) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                self.out
                    .line(&name, &format!("(cannot re-create the domain: {e})"));
                return false;
            }
        };
        self.mems
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domid, mem.clone());
        if let Some(dr) = &self.direct {
            if let Err(e) = dr.renew(domid) {
                self.out
                    .line(&name, &format!("(cannot re-create the domain: {e})"));
                return false;
            }
        }
        if let Err(e) = self.hv.restart(domid, mem.clone()) {
            self.out.line(&name, &format!("(cannot restart: {e})"));
            return false;
        }
        let d = &mut self.doms[i];
        d.mem = mem;
        d.stop = Arc::new(AtomicBool::new(false));
        d.restarts += 1;
        self.generation[i] += 1;
        let n = d.restarts;
        self.out.line(&name, &format!("({what}; restarted, #{n})"));
        if let Err(e) = self.spawn(i) {
            self.out.note(&format!("error: {e}"));
            self.doms[i].status = Some("restart failed".into());
            return false;
        }
        true
    }
}

/// A zeroed `siginfo_t` (plain data; all-zero is a valid value).
fn zeroed_siginfo() -> libc::siginfo_t {
    // SAFETY: siginfo_t is a C struct of integers and unions of integers and pointers, for
    // which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn describe(st: &ExitStatus, limits: &Limits) -> (String, bool) {
    if let Some(c) = st.code() {
        (format!("exited {c}"), c == 0)
    } else if let Some(s) = st.signal() {
        let why = match s {
            libc::SIGXFSZ => format!(
                " (SIGXFSZ: it wrote past its file-size limit, {} bytes)",
                limits.file_size
            ),
            _ => String::new(),
        };
        (format!("killed by signal {s}{why}"), false)
    } else {
        ("exited".into(), false)
    }
}

/// Boots `spec`, checks it against the manifests, runs one program per domain until they
/// have all exited (or the timeout, or the interrupt), and reports how each ended.
///
/// `programs` must name every domain of `spec` once. Output lines go to `out`.
pub fn run(
    spec: &BootSpec,
    programs: &[DomainProgram],
    opts: &RunOptions,
    out: Arc<dyn Output>,
) -> Result<Report, RunError> {
    let mut ordered = Vec::with_capacity(spec.domains.len());
    for d in &spec.domains {
        let p = programs.iter().find(|p| p.name == d.name).ok_or_else(|| {
            RunError::Config(format!(
                "the host tree creates domain `{}` (d{}), but no program is given for it",
                d.name, d.domid
            ))
        })?;
        ordered.push((d.domid, p.clone()));
    }
    if let Some(p) = programs
        .iter()
        .find(|p| spec.domains.iter().all(|d| d.name != p.name))
    {
        return Err(RunError::Config(format!(
            "a program is given for domain `{}`, which the host tree does not create",
            p.name
        )));
    }
    if let Some(r) = opts
        .restart
        .iter()
        .find(|r| spec.domains.iter().all(|d| &d.name != *r))
    {
        return Err(RunError::Config(format!("--restart names no domain `{r}`")));
    }
    if let Some(s) = &opts.sandbox {
        sandbox::check(s).map_err(RunError::Sandbox)?;
        for (domid, p) in &ordered {
            // A bare name is found on PATH by the launcher; only paths can be checked here.
            if p.program.components().count() > 1 {
                sandbox::check_reachable(&p.program, s.uid_for(*domid))
                    .map_err(|e| RunError::Sandbox(format!("domain `{}`: {e}", p.name)))?;
            }
        }
        sandbox::protect_runner();
    }
    let mut manifests: Vec<(String, &'static m::Manifest)> = Vec::new();
    for (_, p) in &ordered {
        let text = std::fs::read_to_string(&p.manifest).map_err(|e| {
            RunError::Manifest(format!("cannot read {}: {e}", p.manifest.display()))
        })?;
        let man = m::json::load(&text)
            .map_err(|e| RunError::Manifest(format!("{}: {e}", p.manifest.display())))?;
        manifests.push((p.name.clone(), man));
    }

    let mems = Arc::new(Mems::default());
    let hv = Arc::new(Hypervisor::new(
        opts.policy,
        mems.clone(),
        Arc::new(Lines(out.clone())),
    ));
    let mut doms = Vec::new();
    let mut pages: Vec<Arc<dyn PageMem>> = Vec::new();
    for (domid, prog) in ordered {
        let mem = DomainMem::new(&prog.name)
            .map(Arc::new)
            .map_err(|e| RunError::Io(format!("cannot create memory for `{}`: {e}", prog.name)))?;
        mems.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domid, mem.clone());
        pages.push(mem.clone());
        doms.push(Dom {
            domid,
            prog,
            mem,
            stop: Arc::new(AtomicBool::new(false)),
            server: None,
            pid: None,
            status: None,
            ok: false,
            restarts: 0,
            cgroup: None,
        });
    }
    let direct = if opts.direct {
        let dr = Arc::new(Direct::new(spec, mems.clone()).map_err(RunError::Io)?);
        hv.set_direct_links(dr.clone());
        (dr.links() > 0).then_some(dr)
    } else {
        None
    };
    hv.boot(spec, pages).map_err(RunError::Boot)?;
    let expected: Vec<Expected<'_>> = manifests
        .iter()
        .map(|(domain, manifest)| Expected { domain, manifest })
        .collect();
    let pending = |domid: DomId, port: u32| {
        doms.iter()
            .find(|d| d.domid == domid)
            .is_some_and(|d| SharedInfo::new(d.mem.words()).is_pending(port))
    };
    let mismatches = check::against_manifests(&hv, spec, pending, &expected);
    if !mismatches.is_empty() {
        return Err(RunError::Mismatch(mismatches));
    }

    let cgroups = if opts.cgroups {
        match Cgroups::setup() {
            Ok(cg) => {
                if let Some(n) = &cg.note {
                    out.note(n);
                }
                Some(cg)
            }
            Err(note) => {
                out.note(&note);
                None
            }
        }
    } else {
        None
    };
    if let Some(cg) = &cgroups {
        for k in 0..doms.len() {
            let d = &doms[k];
            match cg.domain(d.domid, &d.prog.name, &d.prog.limits) {
                Ok(g) => doms[k].cgroup = Some(g),
                Err(e) => {
                    let groups: Vec<DomainGroup> =
                        doms.iter().filter_map(|d| d.cgroup.clone()).collect();
                    cg.remove(&groups);
                    return Err(RunError::Io(format!(
                        "cannot set up the cgroup of domain `{}`: {e}",
                        doms[k].prog.name
                    )));
                }
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let n = doms.len();
    let mut r = Runner {
        sandbox: opts.sandbox.clone(),
        hv: hv.clone(),
        mems,
        out,
        doms,
        tx,
        generation: vec![0; n],
        readers: Vec::new(),
        direct,
    };
    let start = Instant::now();
    for i in 0..n {
        if let Err(e) = r.spawn(i) {
            r.kill_all("not started");
            for i in 0..n {
                r.stop_server(i);
            }
            if let Some(cg) = &cgroups {
                let groups: Vec<DomainGroup> =
                    r.doms.iter().filter_map(|d| d.cgroup.clone()).collect();
                cg.remove(&groups);
            }
            return Err(RunError::Spawn(e));
        }
    }
    let (mut timed_out, mut interrupted) = (false, false);
    loop {
        if r.doms.iter().all(|d| d.status.is_some()) {
            break;
        }
        if opts.interrupt.load(SeqCst) {
            interrupted = true;
            r.out.note("interrupted: stopping every domain");
            r.kill_all(&opts.interrupt_status);
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
        let (mut what, ok) = describe(&st, &r.doms[i].prog.limits);
        let limits = r.doms[i].prog.limits;
        if let Some(why) = r.doms[i].cgroup.as_mut().and_then(|g| g.events(&limits)) {
            what = format!("{what}; {why}");
        }
        let domid = r.doms[i].domid;
        let shut_down = matches!(r.hv.state(domid), Some(DomainState::Shutdown(_)));
        if !ok && !shut_down {
            r.hv.crash(domid);
        }
        r.stop_server(i);
        r.hv.destroy(domid);
        let want_restart = (opts.restart.contains(&r.doms[i].prog.name)
            || (opts.restart_on_crash && !ok))
            && r.doms[i].restarts < opts.max_restarts;
        if want_restart {
            if !r.restart(i, &what) {
                r.doms[i].status.get_or_insert(what);
                r.doms[i].ok = false;
            }
            continue;
        }
        r.doms[i].status = Some(what);
        r.doms[i].ok = ok;
    }
    let elapsed = start.elapsed();
    for i in 0..n {
        r.stop_server(i);
    }
    if let Some(cg) = &cgroups {
        let groups: Vec<DomainGroup> = r.doms.iter().filter_map(|d| d.cgroup.clone()).collect();
        cg.remove(&groups);
    }
    // Every domain's process group has exited or been killed: their pipes close, so the
    // output threads finish; join them so the report is not interleaved with late output.
    // A process that left its group (only possible without the sandbox) may hold a pipe
    // open for good: after `DRAIN` the report comes without waiting for its thread.
    let drained = Instant::now();
    let readers = std::mem::take(&mut r.readers);
    while readers.iter().any(|h| !h.is_finished()) && drained.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stuck = 0;
    for h in readers {
        if h.is_finished() {
            let _ = h.join();
        } else {
            stuck += 1;
        }
    }
    if stuck > 0 {
        r.out.note(&format!(
            "note: {stuck} domain output stream(s) still open after every domain ended (a \
             process outside its domain's process group holds them); not waiting for them"
        ));
    }
    Ok(Report {
        domains: r
            .doms
            .iter()
            .map(|d| DomainReport {
                name: d.prog.name.clone(),
                domid: d.domid,
                restarts: d.restarts,
                status: d.status.clone().unwrap_or_else(|| "running".into()),
                ok: d.ok,
            })
            .collect(),
        stats: {
            let mut st = r.hv.stats();
            if let Some(dr) = &r.direct {
                dr.add_to(&mut st);
            }
            st
        },
        elapsed,
        timed_out,
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        copy_lines(input, |l| v.push(l.to_string()));
        v
    }

    #[test]
    fn output_lines_survive_invalid_utf8_and_are_bounded() {
        assert_eq!(
            lines_of(b"a\n\xff\xfe b\nc"),
            ["a", "\u{FFFD}\u{FFFD} b", "c"]
        );
        let long = vec![b'x'; 2 * MAX_LINE + 5];
        let got = lines_of(&long);
        assert_eq!(
            got.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 5]
        );
        // A line of exactly MAX_LINE bytes and its newline: one line, no empty one after.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.extend_from_slice(b"\nz\n");
        assert_eq!(lines_of(&exact).len(), 3);
        assert_eq!(lines_of(b""), Vec::<String>::new());
    }

    /// A console that posts the domain's next request while the current one is served: a
    /// flood in which a new request is always waiting (deterministic, unlike racing
    /// threads).
    struct Reposting(Arc<DomainMem>);
    impl Console for Reposting {
        fn write(&self, _: DomId, _: &str, _: &[u8]) {
            self.0.control().req_seq.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn the_serving_thread_stops_under_a_hypercall_flood() {
        use staticbus_abi::{console as con, hypercall as hc};
        let mem = Arc::new(DomainMem::new("flood").unwrap());
        let mems = Arc::new(Mems::default());
        let hv = Arc::new(Hypervisor::new(
            Policy::Silo,
            mems,
            Arc::new(Reposting(mem.clone())),
        ));
        let spec = BootSpec {
            domains: vec![staticbus_emu::BootDomain {
                domid: 1,
                name: "flood".into(),
                dom0: false,
                xenstore: false,
                max_port: 1023,
            }],
            ..BootSpec::default()
        };
        hv.boot(&spec, vec![mem.clone() as Arc<dyn PageMem>])
            .unwrap();
        // Each request is a console line, so serving it posts the next one.
        mem.0.write_request(hc::CONSOLE_IO, con::WRITE, b"again\n");
        mem.control().req_seq.store(1, SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let server = {
            let (hv, mem, stop) = (hv.clone(), mem.clone(), stop.clone());
            std::thread::spawn(move || {
                serve(hv, 1, mem, stop);
                let _ = tx.send(());
            })
        };
        while mem.control().done_seq.load(SeqCst) < 1000 {
            std::thread::yield_now();
        }
        // Before the fix the flag was only looked at when no request was waiting, which
        // in this flood is never.
        stop.store(true, SeqCst);
        let stopped = rx.recv_timeout(Duration::from_secs(60));
        if stopped.is_err() {
            // Let the thread go so the test process can end.
            mem.0.write_request(u64::MAX, 0, &[]);
        }
        assert!(stopped.is_ok(), "the serving thread ignored its stop flag");
        server.join().unwrap();
    }
}
