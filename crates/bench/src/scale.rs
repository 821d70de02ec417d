//! `staticbus-bench scale`: the compiler, the DTS parser and the emulator on generated
//! systems far larger than the examples (issue 18, "Scale").
//!
//! * `scale compile` — `check` + `build` of a generated description (default 256 domains,
//!   8,192 queue channels, [`staticbus_config::synth::description`]): in this process
//!   (read + allocate + validate, then every output in memory) and as `staticbus check` /
//!   `staticbus build` processes (what a user waits for, files written), each the median
//!   of `--runs` with the CPU time (user + system, all threads) beside the wall time. With
//!   `--reference OLD` the runs of the two executables alternate and their outputs are
//!   compared byte for byte.
//! * `scale dts` — a generated device-tree source (default 40,000 labelled nodes, each
//!   referenced by phandle from another, ~6.3 MB): peak RSS, CPU and wall time of
//!   `staticbus check` and of `dtc -I dts -O dtb` on it, measured by `wait4(2)`.
//! * `scale run` — `staticbus run` of a generated system where every domain streams
//!   64-byte queue messages on all its channels (default 64 domains, 512 channels), after
//!   2 domains / 1 channel in the same run: aggregate messages/s over a measuring window
//!   after a warm-up, the CPU of the runner process itself (its threads serve the
//!   hypercalls; from `/proc/<pid>/stat`, its children excluded) and the domains' CPU,
//!   both per message.

use staticbus_guest::manifest::Role;
use staticbus_guest::{Events, Platform};
use staticbus_guest_emu::EmuPlatform;
use staticbus_proto::endpoint::{QueueRx, QueueTx};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T = ()> = Result<T, String>;

/// What `wait4(2)` says about one finished child process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// User + system CPU time of the child (all its threads and its waited-for children).
    pub cpu: Duration,
    /// Peak resident set size, KiB.
    pub maxrss_kib: u64,
    /// Exit code (128 + signal if killed).
    pub code: i32,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// Runs `cmd` (its stdout and stderr discarded unless already set) and measures it.
pub fn measure(cmd: &mut Command) -> Res<Usage> {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: `status` and `ru` are live, writable and of the types wait4 expects;
        // `pid` is our own child, which nothing else waits for (`child` is only dropped,
        // which neither waits nor kills).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    drop(child);
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Usage {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
        code,
    })
}

/// CPU time of this process so far (all threads).
fn self_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is live and writable; RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn tmpdir(what: &str) -> Res<PathBuf> {
    let dir = std::env::temp_dir().join(format!("staticbus-scale-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The `staticbus` executable: `given`, else the one next to this program.
pub fn staticbus_exe(given: Option<&Path>) -> Res<PathBuf> {
    let p = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}"))?
            .with_file_name("staticbus"),
    };
    if !p.is_file() {
        return Err(format!(
            "{} is missing: build it first (`cargo build --release -p staticbus -p \
             staticbus-emu-runner --bins`), or pass --staticbus",
            p.display()
        ));
    }
    Ok(p)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Options of `scale compile`.
pub struct CompileOptions {
    /// Domains of the generated description.
    pub domains: usize,
    /// Channels of the generated description.
    pub channels: usize,
    /// Runs of each measurement (the median is printed).
    pub runs: usize,
    /// The `staticbus` executable measured.
    pub staticbus: Option<PathBuf>,
    /// An older `staticbus` measured in alternation (before / after in the same run).
    pub reference: Option<PathBuf>,
}

/// In-process check (read + allocate + validate) and build (every output in memory).
fn in_process(text: &str) -> (Duration, Duration, Duration, Duration, usize) {
    use staticbus_config::compile::build_outputs;
    use staticbus_config::desc::{read_description, Overrides};
    let (w0, c0) = (Instant::now(), self_cpu());
    let mut sources = staticbus_diag::Sources::new();
    let file = sources.add_text("synth.toml", text.to_string());
    let (sys, diags) = read_description(file, text, "synth", Path::new("."), &Overrides::default());
    let sys = sys.expect("the generated description reads");
    let n = diags.len() + staticbus_config::validate(&sys).len();
    let (w1, c1) = (Instant::now(), self_cpu());
    let files = build_outputs(&sys, None);
    let (w2, c2) = (Instant::now(), self_cpu());
    std::hint::black_box(&files);
    drop(files);
    drop(sys);
    let _ = n;
    (w1 - w0, c1 - c0, w2 - w1, c2 - c1, n)
}

/// Every file under `dir` with its contents, by relative path.
fn tree_files(dir: &Path) -> Res<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                out.push((p.strip_prefix(dir).expect("below dir").to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Compares two output folders; a description of the first difference, if any.
fn compare_outputs(a: &Path, b: &Path) -> Res<Option<String>> {
    let (fa, fb) = (tree_files(a)?, tree_files(b)?);
    if fa.len() != fb.len() {
        return Ok(Some(format!("{} files against {}", fa.len(), fb.len())));
    }
    for ((pa, ba), (pb, bb)) in fa.iter().zip(&fb) {
        if pa != pb {
            return Ok(Some(format!("{} against {}", pa.display(), pb.display())));
        }
        if ba != bb {
            return Ok(Some(format!("{} differs", pa.display())));
        }
    }
    Ok(None)
}

/// `scale compile`.
pub fn compile_cmd(o: &CompileOptions) -> Res {
    let exe = staticbus_exe(o.staticbus.as_deref())?;
    let dir = tmpdir("compile")?;
    let text = staticbus_config::synth::description(o.domains, o.channels);
    let input = dir.join("synth.toml");
    std::fs::write(&input, &text).map_err(|e| format!("{}: {e}", input.display()))?;
    println!(
        "scale compile: {} domains, {} channels ({} bytes of TOML), {} runs each, load {}",
        o.domains,
        o.channels,
        text.len(),
        o.runs,
        load()
    );
    let (mut cw, mut cc, mut bw, mut bc, mut tw, mut tc) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut diags = 0;
    for _ in 0..o.runs {
        let (a, b, c, d, n) = in_process(&text);
        diags = n;
        cw.push(a);
        cc.push(b);
        bw.push(c);
        bc.push(d);
        tw.push(a + c);
        tc.push(b + d);
    }
    println!(
        "in process: check (read, allocate, validate; {diags} diagnostics) {} wall / {} CPU; \
         build (every output in memory) {} wall / {} CPU; check + build {} wall / {} CPU",
        ms(median(&mut cw)),
        ms(median(&mut cc)),
        ms(median(&mut bw)),
        ms(median(&mut bc)),
        ms(median(&mut tw)),
        ms(median(&mut tc)),
    );
    let mut exes = vec![("staticbus", exe)];
    if let Some(r) = &o.reference {
        exes.push(("reference", staticbus_exe(Some(r))?));
    }
    // [exe][check wall, check cpu, build wall, build cpu]
    let mut m: Vec<[Vec<Duration>; 4]> = exes.iter().map(|_| Default::default()).collect();
    let mut rss = vec![0u64; exes.len()];
    for _ in 0..o.runs {
        for (k, (_, exe)) in exes.iter().enumerate() {
            let c = measure(
                Command::new(exe)
                    .arg("check")
                    .arg(&input)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            let out = dir.join(format!("out-{k}"));
            let b = measure(
                Command::new(exe)
                    .args(["build", "--no-check"])
                    .arg(&input)
                    .arg("-o")
                    .arg(&out)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            if b.code != 0 {
                return Err(format!("{} build exited with {}", exe.display(), b.code));
            }
            m[k][0].push(c.wall);
            m[k][1].push(c.cpu);
            m[k][2].push(b.wall);
            m[k][3].push(b.cpu);
            rss[k] = rss[k].max(b.maxrss_kib);
        }
    }
    for (k, (name, exe)) in exes.iter().enumerate() {
        let [a, b, c, d] = &mut m[k];
        println!(
            "{name} ({}): `check` {} wall / {} CPU; `build --no-check` (check + build + \
             write {} files) {} wall / {} CPU, peak RSS {} MiB",
            exe.display(),
            ms(median(a)),
            ms(median(b)),
            tree_files(&dir.join(format!("out-{k}")))?.len(),
            ms(median(c)),
            ms(median(d)),
            rss[k] / 1024
        );
    }
    if exes.len() == 2 {
        match compare_outputs(&dir.join("out-0"), &dir.join("out-1"))? {
            None => println!("outputs of the two executables: byte-identical"),
            Some(d) => return Err(format!("the outputs differ: {d}")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A device-tree source with `labels` labelled nodes, 500 to a bus under `/soc` (dtc's
/// parser keeps a node's children on its stack: 10,000 siblings exhaust it), each with a
/// few properties and a phandle reference to the next node (so every node gets a
/// phandle), about 158 bytes a node: ~6.3 MB for 40,000.
pub fn dts_text(labels: usize) -> String {
    use std::fmt::Write;
    const PER_BUS: usize = 500;
    let mut s = String::with_capacity(labels * 170 + 256);
    s.push_str(
        "/dts-v1/;\n\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n\tmodel = \"scale\";\n\n",
    );
    for i in 0..labels {
        let addr = 0x1000_0000u64 + (i as u64) * 0x1000;
        if i % PER_BUS == 0 {
            let _ = write!(
                s,
                "\tbus{} {{\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n\t\tranges;\n\n",
                i / PER_BUS
            );
        }
        let _ = write!(
            s,
            "\t\tn{i}: dev@{addr:x} {{\n\t\t\tcompatible = \"acme,dev{}\", \"acme,dev\";\n\
             \t\t\treg = <0x0 0x{addr:x} 0x0 0x1000>;\n\t\t\tinterrupts = <0 {} 4>;\n\
             \t\t\tpeer = <&n{}>;\n\t\t}};\n",
            i % 16,
            i % 988,
            (i + 1) % labels
        );
        if i % PER_BUS == PER_BUS - 1 || i + 1 == labels {
            s.push_str("\t};\n");
        }
    }
    s.push_str("};\n");
    s
}

/// Options of `scale dts`.
pub struct DtsOptions {
    /// Labelled nodes.
    pub labels: usize,
    /// Runs of each measurement.
    pub runs: usize,
    /// The `staticbus` executable measured.
    pub staticbus: Option<PathBuf>,
    /// An older `staticbus` measured in alternation.
    pub reference: Option<PathBuf>,
}

/// `scale dts`.
pub fn dts_cmd(o: &DtsOptions) -> Res {
    let exe = staticbus_exe(o.staticbus.as_deref())?;
    let dir = tmpdir("dts")?;
    let text = dts_text(o.labels);
    let input = dir.join("scale.dts");
    std::fs::write(&input, &text).map_err(|e| format!("{}: {e}", input.display()))?;
    println!(
        "scale dts: {} labelled nodes, {:.2} MB of DTS, {} runs each, load {}",
        o.labels,
        text.len() as f64 / 1e6,
        o.runs,
        load()
    );
    let dtc_ok = Command::new("dtc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut runs: Vec<(String, Command)> = Vec::new();
    let check = |exe: &Path| {
        let mut c = Command::new(exe);
        c.arg("check").arg(&input).args(["--format", "json"]);
        c
    };
    runs.push((format!("staticbus check ({})", exe.display()), check(&exe)));
    if let Some(r) = &o.reference {
        let r = staticbus_exe(Some(r))?;
        runs.push((format!("reference check ({})", r.display()), check(&r)));
    }
    if dtc_ok {
        let mut c = Command::new("dtc");
        c.args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(dir.join("scale.dtb"))
            .arg(&input);
        runs.push(("dtc -I dts -O dtb".into(), c));
    } else {
        println!("dtc not found (apt-get install device-tree-compiler): no reference");
    }
    let mut res: Vec<Vec<Usage>> = runs.iter().map(|_| Vec::new()).collect();
    for _ in 0..o.runs {
        for (k, (_, c)) in runs.iter_mut().enumerate() {
            res[k].push(measure(c.stdout(Stdio::null()).stderr(Stdio::null()))?);
        }
    }
    for (k, (name, _)) in runs.iter().enumerate() {
        let u = &res[k];
        let mut w: Vec<Duration> = u.iter().map(|u| u.wall).collect();
        let mut c: Vec<Duration> = u.iter().map(|u| u.cpu).collect();
        let peak = u.iter().map(|u| u.maxrss_kib).max().unwrap_or(0);
        let least = u.iter().map(|u| u.maxrss_kib).min().unwrap_or(0);
        println!(
            "{name}: peak RSS {:.1} MiB (runs {:.1}–{:.1}), {} CPU, {} wall (medians), exit {}",
            peak as f64 / 1024.0,
            least as f64 / 1024.0,
            peak as f64 / 1024.0,
            ms(median(&mut c)),
            ms(median(&mut w)),
            u.last().map_or(-1, |u| u.code)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Options of `scale run`.
pub struct RunOptions {
    /// Domains of the big system.
    pub domains: usize,
    /// Channels of the big system.
    pub channels: usize,
    /// Warm-up before the measuring window.
    pub warmup: Duration,
    /// The measuring window.
    pub window: Duration,
    /// The `staticbus` executable.
    pub staticbus: Option<PathBuf>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bytes per message of `scale run`.
const MSG: usize = 64;

/// A description where every domain is this program in its `scale-domain` role.
fn run_toml(exe: &Path, domains: usize, channels: usize, begin: u64, end: u64) -> String {
    use std::fmt::Write;
    let chan_kib = 64u64;
    let ram_gib = (domains * 18).div_ceil(1024) + 1;
    let pool_mib = (channels as u64 * chan_kib).div_ceil(1024) + 1;
    let top = 0x4000_0000u64 + (ram_gib as u64) * (1 << 30) - pool_mib * (1 << 20);
    let mut s = format!(
        "[system]\nname = \"scale-{domains}-{channels}\"\n\n[target]\nxen = \"4.20\"\n\
         static-shm = true\n\n[platform]\nram = [{{ base = 0x4000_0000, size = \"{ram_gib}GiB\" }}]\n\
         shm-pool = {{ base = {top:#x}, size = \"{pool_mib}MiB\" }}\n\n"
    );
    for d in 0..domains {
        let _ = write!(
            s,
            "[[domain]]\nname = \"d{d}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\
             emulate = {{ program = {exe:?}, args = [\"scale-domain\", \"{begin}\", \"{end}\"] }}\n\n"
        );
    }
    for k in 0..channels {
        let from = k % domains;
        let to = (from + 1 + (k / domains) % (domains - 1).max(1)) % domains;
        let _ = write!(
            s,
            "[[channel]]\nname = \"c{k}\"\nprotocol = \"queue\"\nfrom = \"d{from}\"\nto = \"d{to}\"\n\
             size = \"{chan_kib}KiB\"\n\n"
        );
    }
    s
}

/// utime + stime of process `pid` itself (all its threads, not its children), from
/// `/proc/<pid>/stat`.
fn proc_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// One measured `staticbus run`.
struct RunResult {
    domains: usize,
    channels: usize,
    /// Messages received in the window, all domains.
    msgs: u64,
    /// Window length.
    window: Duration,
    /// CPU of the runner process in the window.
    runner_cpu: Duration,
    /// CPU of the domain programs in the window (their own report).
    domain_cpu: Duration,
    /// Domains that reported.
    reported: usize,
    /// Notifications the domains sent in the window.
    notifications: u64,
    /// Times a domain blocked in the window.
    blocks: u64,
    /// Open fds of the runner at the start of the window.
    runner_fds: usize,
}

fn run_once(
    exe: &Path,
    staticbus: &Path,
    domains: usize,
    channels: usize,
    o: &RunOptions,
) -> Res<RunResult> {
    let dir = tmpdir("run")?;
    // Startup of 64 sandboxed domains takes a while on a loaded machine: the window opens
    // after it and the warm-up.
    let begin = unix_ms() + 3000 + o.warmup.as_millis() as u64;
    let end = begin + o.window.as_millis() as u64;
    let sys = dir.join("scale.toml");
    std::fs::write(&sys, run_toml(exe, domains, channels, begin, end))
        .map_err(|e| format!("{}: {e}", sys.display()))?;
    let timeout = (end - unix_ms()) / 1000 + 120;
    let mut child = Command::new(staticbus)
        .arg("run")
        .arg(&sys)
        // 64 domains and 512 regions are beyond Xen's module and shared-memory tables.
        .arg("--beyond-xen-tables")
        .args(["--timeout", &timeout.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", staticbus.display()))?;
    let pid = child.id();
    let output = crate::child::Captured::start(&mut child);
    let sleep_until = |t: u64| {
        let now = unix_ms();
        if t > now {
            std::thread::sleep(Duration::from_millis(t - now));
        }
    };
    sleep_until(begin);
    let c0 = proc_cpu(pid);
    let runner_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    sleep_until(end);
    let c1 = proc_cpu(pid);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the run: {e}"))?;
    let (out, err) = output.finish();
    let _ = std::fs::remove_dir_all(&dir);
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let mut r = RunResult {
        domains,
        channels,
        msgs: 0,
        window: Duration::from_millis(end - begin),
        runner_cpu: Duration::ZERO,
        domain_cpu: Duration::ZERO,
        reported: 0,
        notifications: 0,
        blocks: 0,
        runner_fds,
    };
    for l in out.lines().filter(|l| l.contains("SCALE ")) {
        r.reported += 1;
        r.msgs += field(l, "recv").unwrap_or(0);
        r.domain_cpu += Duration::from_micros(field(l, "cpu_us").unwrap_or(0));
        r.notifications += field(l, "notifications").unwrap_or(0);
        r.blocks += field(l, "blocks").unwrap_or(0);
    }
    match (c0, c1) {
        (Some(a), Some(b)) => r.runner_cpu = b.saturating_sub(a),
        _ => return Err("the runner ended before the measuring window closed".into()),
    }
    if !status.success() || r.reported != domains {
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        return Err(format!(
            "the run failed ({status}; {} of {domains} domains reported):\n{}",
            r.reported,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(r)
}

/// `scale run`.
pub fn run_cmd(o: &RunOptions) -> Res {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let staticbus = staticbus_exe(o.staticbus.as_deref())?;
    println!(
        "scale run: every domain streams {MSG}-byte queue messages on all its channels; \
         {} s warm-up, {} s window; load {}",
        o.warmup.as_secs_f64(),
        o.window.as_secs_f64(),
        load()
    );
    let small = run_once(&exe, &staticbus, 2, 1, o)?;
    let big = run_once(&exe, &staticbus, o.domains, o.channels, o)?;
    println!(
        "| system | messages/s (all channels) | runner CPU per message | domains' CPU per \
         message | notifications / message | blocks / message | runner CPU / window | runner fds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in [&small, &big] {
        let n = r.msgs.max(1) as f64;
        println!(
            "| {} domains / {} channels | {:.2} M | {:.0} ns | {:.0} ns | {:.4} | {:.4} | {:.1}% | {} |",
            r.domains,
            r.channels,
            r.msgs as f64 / r.window.as_secs_f64() / 1e6,
            r.runner_cpu.as_nanos() as f64 / n,
            r.domain_cpu.as_nanos() as f64 / n,
            r.notifications as f64 / n,
            r.blocks as f64 / n,
            100.0 * r.runner_cpu.as_secs_f64() / r.window.as_secs_f64(),
            r.runner_fds,
        );
    }
    println!("load after: {}", load());
    Ok(())
}

/// Notifications sent so far by these endpoints.
fn notifications<E: Events>(txs: &[QueueTx<'_, E>], rxs: &[QueueRx<'_, E>]) -> u64 {
    let t: u64 = txs.iter().map(|t| t.counters().notifications).sum();
    t + rxs.iter().map(|r| r.counters().notifications).sum::<u64>()
}

/// `scale-domain BEGIN_MS END_MS`: one domain of `scale run`. Sends on every channel it
/// produces and receives on every channel it consumes, round robin, a burst at a time;
/// when a whole round moves nothing it asks every queue for a wake-up and sleeps on all
/// its ports at once. Counts what it receives between BEGIN and END (unix ms), then tells
/// its peers and exits, printing `SCALE recv=… cpu_us=… notifications=… blocks=…`.
pub fn domain_main(args: &[String]) -> Res {
    let num = |i: usize| -> Res<u64> {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| "usage: scale-domain BEGIN_MS END_MS".to_string())
    };
    let (begin, end) = (num(0)?, num(1)?);
    let p = EmuPlatform::connect().map_err(|e| e.to_string())?;
    let m = p.manifest();
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let mut ports = Vec::new();
    for c in m.channels {
        ports.extend(c.peers.iter().map(|p| p.local_port));
        match c.role {
            Role::Producer => {
                txs.push(QueueTx::open(&p, c.name).map_err(|e| format!("{}: {e}", c.name))?)
            }
            Role::Consumer => {
                rxs.push(QueueRx::open(&p, c.name).map_err(|e| format!("{}: {e}", c.name))?)
            }
            _ => {}
        }
    }
    let events = p.events();
    let msg = [0x5au8; MSG];
    let mut buf = [0u8; MSG];
    const BURST: usize = 64;
    const IDLE_ROUNDS: u32 = 20;
    let (mut recv, mut idle) = (0u64, 0u32);
    let mut at_begin: Option<(u64, Duration, u64, u64)> = None;
    let mut blocks = 0u64;
    let mut rounds = 0u64;
    let at_end = loop {
        let mut moved = false;
        for tx in &mut txs {
            for _ in 0..BURST {
                if !tx.try_send(&msg).map_err(|e| format!("send: {e}"))? {
                    break;
                }
                moved = true;
            }
            tx.flush().map_err(|e| format!("flush: {e}"))?;
        }
        for rx in &mut rxs {
            for _ in 0..BURST {
                match rx.try_recv(&mut buf).map_err(|e| format!("recv: {e}"))? {
                    Some(n) if n == MSG => recv += 1,
                    Some(n) => return Err(format!("a message of {n} bytes, not {MSG}")),
                    None => break,
                }
                moved = true;
            }
            rx.flush().map_err(|e| format!("flush: {e}"))?;
        }
        rounds += 1;
        if rounds % 64 == 0 || !moved {
            let now = unix_ms();
            if at_begin.is_none() && now >= begin {
                let n = notifications(&txs, &rxs);
                at_begin = Some((recv, self_cpu(), n, blocks));
            }
            if now >= end {
                let n = notifications(&txs, &rxs);
                break (recv, self_cpu(), n, blocks);
            }
        }
        if moved {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < IDLE_ROUNDS {
            std::hint::spin_loop();
            continue;
        }
        // Ask every queue for a wake-up; sleep only if none has work meanwhile.
        let mut sleep = true;
        for tx in &mut txs {
            sleep &= tx
                .producer()
                .prepare_wait(MSG)
                .map_err(|e| format!("{e}"))?;
        }
        for rx in &mut rxs {
            sleep &= rx.consumer().prepare_wait().map_err(|e| format!("{e}"))?;
        }
        if sleep && !ports.is_empty() {
            blocks += 1;
            events
                .wait_any(&ports)
                .map_err(|e| format!("wait: {e:?}"))?;
            while events.take_fired().is_some() {}
        }
        idle = 0;
    };
    // Wake every peer so that none sleeps past the end.
    for tx in &txs {
        let _ = tx.channel().notify_all();
    }
    for rx in &rxs {
        let _ = rx.channel().notify_all();
    }
    let (b, e) = (at_begin.unwrap_or(at_end), at_end);
    println!(
        "SCALE recv={} cpu_us={} notifications={} blocks={}",
        e.0 - b.0,
        (e.1.saturating_sub(b.1)).as_micros(),
        e.2 - b.2,
        e.3 - b.3
    );
    Ok(())
}
