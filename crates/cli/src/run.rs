//! `staticbus run`: the whole system on one Linux host, in the emulator.
//!
//! The description is built (into a temporary folder, or `--built DIR` takes the outputs of
//! an earlier `staticbus build`), and the host DTB of that build is read back the way Xen
//! reads it: the emulated hypervisor binds event channels and grants regions from those
//! bytes, and each domain process reads the `manifest.json` the same build wrote. The body
//! of the run (memory, processes, hypercalls, restarts, the check of the tree against the
//! manifests) is `staticbus-emu-runner`; this module keeps the face: where programs are
//! found, the `[domain]` prefixes, the summary.

use crate::{report_human, write_outputs};
use staticbus_config::compile;
use staticbus_config::model::System;
use staticbus_dt::Tree;
use staticbus_emu::Policy;
use staticbus_emu_runner::{self as runner, DomainProgram, Output, Report, RunError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Boot from the outputs of an earlier `staticbus build` in this folder.
    pub built: Option<PathBuf>,
    /// Start the domains in the sandbox (`staticbus_emu_runner::sandbox`).
    pub sandbox: bool,
    /// Put every domain in a cgroup of its own where the runner may.
    pub cgroups: bool,
    /// Run systems larger than Xen's fixed tables allow (SB0226, SB0411 as warnings).
    pub beyond_xen_tables: bool,
}

/// Console output, each line prefixed with the domain's name.
struct Prefixed {
    out: Mutex<()>,
}

impl Output for Prefixed {
    fn line(&self, name: &str, line: &str) {
        let _g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "[{name}] {line}");
        let _ = o.flush();
    }

    fn note(&self, text: &str) {
        eprintln!("{text}");
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

/// Runs the description `sys` (read from a file in `base_dir`; `base` is its `--base`
/// tree, if any). Returns the exit code.
pub fn run(sys: &System, base: Option<Tree>, base_dir: &Path, opts: &RunOptions) -> u8 {
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
    match &opts.built {
        Some(dir) => {
            if !dir.join("host.dtb").is_file() {
                eprintln!(
                    "error: {} has no host.dtb\n  help: write it with `staticbus build <system.toml> -o {}`",
                    dir.display(),
                    dir.display()
                );
                return 2;
            }
            run_built(sys, base_dir, opts, dir)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("staticbus-run-{}", std::process::id()));
            let files = compile::build_outputs(sys, base);
            let result = match write_outputs(&dir, &files) {
                Ok(()) => run_built(sys, base_dir, opts, &dir),
                Err(e) => {
                    eprintln!("error: cannot write the build to {}: {e}", dir.display());
                    2
                }
            };
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
    }
}

/// Boots the build in `dir` (its `host.dtb` and `domains/<name>/manifest.json`).
fn run_built(sys: &System, base_dir: &Path, opts: &RunOptions, dir: &Path) -> u8 {
    let dtb = dir.join("host.dtb");
    let host = match runner::read_host_dtb_with(&dtb, &sys.target, opts.beyond_xen_tables) {
        Ok(h) => h,
        Err(e) => {
            report_human(&e.sources, &e.diags);
            eprintln!(
                "error: the host tree {} does not pass the checks Xen's boot depends on",
                dtb.display()
            );
            return if e.io_error { 2 } else { 1 };
        }
    };
    let mut programs = Vec::new();
    for d in &host.system.domains {
        let Some(em) = sys
            .domains
            .iter()
            .find(|x| x.name == d.name)
            .and_then(|x| x.emulate.as_ref())
        else {
            eprintln!(
                "error: the host tree {} creates domain `{}`, which the description does not \
                 declare (was {} built from another description?)",
                dtb.display(),
                d.name,
                dir.display()
            );
            return 2;
        };
        programs.push(DomainProgram {
            name: d.name.clone(),
            program: resolve_program(&em.program, base_dir),
            args: em.args.clone(),
            manifest: dir.join("domains").join(&d.name).join("manifest.json"),
            limits: em.limits,
        });
    }
    let sandbox = if opts.sandbox {
        match runner::sandbox::Sandbox::next_to_current_exe() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: domain sandbox: {e}");
                return 2;
            }
        }
    } else {
        eprintln!(
            "warning: --no-sandbox: the domains run as plain processes; any of them can read every other domain's memory (/proc/<pid>/fd, ptrace)"
        );
        None
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, SeqCst));
    }
    let ropts = runner::RunOptions {
        timeout: opts.timeout,
        policy: opts.policy,
        restart: opts.restart.clone(),
        restart_on_crash: opts.restart_on_crash,
        max_restarts: opts.max_restarts,
        interrupt,
        interrupt_status: "stopped (Ctrl-C)".into(),
        sandbox,
        cgroups: opts.cgroups,
        direct: runner::direct_from_env(),
    };
    let out = Arc::new(Prefixed {
        out: Mutex::new(()),
    });
    match runner::run(&host.spec, &programs, &ropts, out) {
        Ok(report) => {
            summary(sys, &host.system, &report);
            report.exit_code()
        }
        Err(e) => {
            match &e {
                RunError::Spawn(_) => eprintln!(
                    "error: {e} (a bare name is looked up next to the description, next to the \
                     `staticbus` executable, where `cargo build --workspace` puts the example \
                     programs, then on PATH)"
                ),
                RunError::Sandbox(_) => eprintln!(
                    "error: {e}\n  help: `staticbus run --no-sandbox` runs the domains without \
                     it (for debugging only)"
                ),
                RunError::Mismatch(_) => eprintln!(
                    "error: {e}\n  help: the host tree ({}) is not the one its manifests were \
                     written for; rebuild both with `staticbus build`",
                    dtb.display()
                ),
                _ => eprintln!("error: {e}"),
            }
            match e {
                RunError::Boot(_) | RunError::Mismatch(_) => 1,
                _ => 2,
            }
        }
    }
}

/// The channel a host-tree pair belongs to, found in the description by its two ends.
fn channel_name(
    desc: &System,
    host: &System,
    pair: &staticbus_config::model::EvtchnPair,
) -> String {
    let end = |s: &System, e: &staticbus_config::model::EvtchnEnd| {
        (s.domains[e.domain].name.clone(), e.port)
    };
    let (a, b) = (end(host, &pair.first), end(host, &pair.second));
    desc.evtchns
        .iter()
        .find(|p| {
            let (x, y) = (end(desc, &p.first), end(desc, &p.second));
            (x == a && y == b) || (x == b && y == a)
        })
        .and_then(|p| p.channel)
        .map(|c| desc.channels[c].name.clone())
        .unwrap_or_else(|| "(static evtchn)".into())
}

fn summary(desc: &System, host: &System, r: &Report) {
    let stats = &r.stats;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(
        e,
        "\n== staticbus run: {} ({:.2}s)",
        desc.name,
        r.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        e,
        "{:<16} {:>5} {:>8}  status",
        "domain", "domid", "restarts"
    );
    for d in &r.domains {
        let _ = writeln!(
            e,
            "{:<16} {:>5} {:>8}  {}",
            d.name, d.domid, d.restarts, d.status
        );
    }
    let _ = writeln!(
        e,
        "{:<24} {:<26} {:>10} {:>10}",
        "channel", "event channel", "sent", "delivered"
    );
    for p in &host.evtchns {
        let (a, b) = (
            &host.domains[p.first.domain],
            &host.domains[p.second.domain],
        );
        let name = channel_name(desc, host, p);
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
        stats.total_hypercalls() as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
}
