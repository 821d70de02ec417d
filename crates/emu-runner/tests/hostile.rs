//! One domain must not be able to stop the system: domains that truncate their memory, fork
//! children that keep their output open, write invalid UTF-8 or endless lines, and the
//! descriptors a careless runner would hand them. Each case runs with and without the
//! sandbox (the fixes are the runner's, not the sandbox's).

mod common;

use common::{build, of, sandbox, scripts, Lines};
use staticbus_emu_runner::{read_host_dtb, run, DomainProgram, Report, RunOptions, MAX_LINE};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Runs `progs` on a thread; panics if the run has not returned after `limit` (a liveness
/// bound far above what the run needs, so that a hang fails instead of blocking CI).
fn run_within(
    dir: &Path,
    progs: Vec<DomainProgram>,
    opts: RunOptions,
    limit: Duration,
) -> (Report, Vec<String>) {
    let sys = build(dir);
    let host = read_host_dtb(&dir.join("host.dtb"), &sys.target).unwrap();
    let out = Arc::new(Lines::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let o = out.clone();
    std::thread::spawn(move || {
        let r = run(&host.spec, &progs, &opts, o);
        let _ = tx.send(r);
    });
    let report = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| {
            panic!(
                "the run did not end within {limit:?}; output so far: {:?}",
                out.0.lock().unwrap()
            )
        })
        .unwrap();
    let lines = out.0.lock().unwrap().clone();
    (report, lines)
}

fn modes() -> [(&'static str, Option<staticbus_emu_runner::sandbox::Sandbox>); 2] {
    [("sandboxed", Some(sandbox())), ("no sandbox", None)]
}

fn status<'a>(r: &'a Report, dom: &str) -> &'a str {
    &r.domains.iter().find(|d| d.name == dom).unwrap().status
}

#[test]
fn a_domain_that_truncates_its_own_memory_cannot_kill_the_runner() {
    for (mode, sb) in modes() {
        let dir = tempfile::tempdir().unwrap();
        // Before the fix the runner's serving thread touched the truncated page and the
        // whole run (this test process) died of SIGBUS.
        let progs = scripts(
            dir.path(),
            "truncate -s 0 /proc/self/fd/$STATICBUS_EMU_FD; echo truncate=$?; sleep 1",
            "sleep 2; echo still here",
        );
        let opts = RunOptions {
            sandbox: sb,
            ..RunOptions::default()
        };
        let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
        let sensor = of(&lines, "sensor");
        assert!(
            sensor.contains(&"truncate=1".to_string()),
            "{mode}: {lines:?}"
        );
        assert!(
            sensor.iter().any(|l| l.contains("Operation not permitted")),
            "{mode}: {lines:?}"
        );
        assert_eq!(of(&lines, "aggregator"), ["still here"], "{mode}");
        assert_eq!(status(&report, "aggregator"), "exited 0", "{mode}");
    }
}

/// Whether process `pid` is gone (or only a zombie waiting for its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn a_child_a_domain_leaves_on_its_output_dies_with_it() {
    for (mode, sb) in modes() {
        let dir = tempfile::tempdir().unwrap();
        // The domain exits at once; before the fix its `sleep` kept the output pipe open and
        // the run waited for it for good.
        let progs = scripts(dir.path(), "sleep 100000 & echo child=$!; exit 0", "exit 0");
        let opts = RunOptions {
            sandbox: sb,
            ..RunOptions::default()
        };
        let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
        assert_eq!(report.exit_code(), 0, "{mode}: {lines:?}");
        assert_eq!(status(&report, "sensor"), "exited 0", "{mode}");
        if mode == "no sandbox" {
            // Without the sandbox the pid is this machine's: the child is dead.
            let line = of(&lines, "sensor")
                .into_iter()
                .find(|l| l.starts_with("child="));
            let pid = line
                .expect("the child's pid")
                .trim_start_matches("child=")
                .to_string();
            let mut tries = 0;
            while !gone(&pid) && tries < 500 {
                std::thread::sleep(Duration::from_millis(10));
                tries += 1;
            }
            assert!(gone(&pid), "the domain's child {pid} survived the run");
        }
    }
}

#[test]
fn the_timeout_holds_when_a_domain_forks_a_child_that_keeps_its_output() {
    for (mode, sb) in modes() {
        let dir = tempfile::tempdir().unwrap();
        let progs = scripts(
            dir.path(),
            "sleep 100000 & sleep 100000",
            "sh -c 'sleep 100000' & exec sleep 100000",
        );
        let opts = RunOptions {
            sandbox: sb,
            timeout: Some(Duration::from_secs(2)),
            ..RunOptions::default()
        };
        let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
        assert!(report.timed_out, "{mode}: {lines:?}");
        for d in &report.domains {
            assert_eq!(d.status, "killed (timeout)", "{mode}");
        }
    }
}

#[test]
fn invalid_utf8_and_endless_lines_do_not_close_a_console() {
    for (mode, sb) in modes() {
        let dir = tempfile::tempdir().unwrap();
        // Before the fix the first invalid byte ended the copy of the domain's output (and
        // closed the pipe: later writes got EPIPE), and a line without newline was kept in
        // memory without bound.
        let progs = scripts(
            dir.path(),
            "/usr/bin/printf 'bad \\377 byte\\n'; sleep 0.3; echo after || echo EPIPE >&2; \
             head -c 10000 /dev/zero | tr '\\0' a; echo; echo end",
            "exit 0",
        );
        let opts = RunOptions {
            sandbox: sb,
            ..RunOptions::default()
        };
        let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
        assert_eq!(report.exit_code(), 0, "{mode}: {lines:?}");
        let sensor = of(&lines, "sensor");
        assert_eq!(sensor[..2], ["bad \u{FFFD} byte", "after"], "{mode}");
        let long: Vec<usize> = sensor[2..sensor.len() - 1]
            .iter()
            .map(|l| l.len())
            .collect();
        assert_eq!(long, [MAX_LINE, MAX_LINE, 10000 - 2 * MAX_LINE], "{mode}");
        assert!(sensor[2..sensor.len() - 1]
            .iter()
            .all(|l| l.bytes().all(|b| b == b'a')));
        assert_eq!(sensor.last().map(String::as_str), Some("end"), "{mode}");
    }
}

#[test]
fn no_descriptor_the_runner_inherited_reaches_a_domain() {
    let dir = tempfile::tempdir().unwrap();
    // A descriptor of this process without close-on-exec, as a careless parent or library
    // leaves one.
    let leaked = std::fs::File::create(dir.path().join("leaked-descriptor")).unwrap();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    for (mode, sb) in modes() {
        let progs = scripts(dir.path(), "ls -l /proc/self/fd", "exit 0");
        let opts = RunOptions {
            sandbox: sb,
            ..RunOptions::default()
        };
        let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
        assert_eq!(report.exit_code(), 0, "{mode}: {lines:?}");
        let sensor = of(&lines, "sensor");
        // Its own memory and its one region are there …
        assert!(
            sensor.iter().any(|l| l.contains("memfd:staticbus-sensor")),
            "{mode}: {sensor:?}"
        );
        assert!(
            sensor.iter().any(|l| l.contains("memfd:staticbus-shm:raw")),
            "{mode}: {sensor:?}"
        );
        // … and nothing of the runner's.
        assert!(
            !sensor.iter().any(|l| l.contains("leaked-descriptor")),
            "{mode}: {sensor:?}"
        );
        // stdin, stdout, stderr, its memory, its region, direct delivery's memfds (its
        // outbox, the peer's outbox read-only, its inbox state; docs/adr/0009) and `ls`'s
        // own listing: nothing else. Each as `ls` shows it: the access mode of the
        // descriptor (`lr-x` read-only, `l-wx` write-only, `lrwx` both) and its target.
        let mut fds: Vec<String> = sensor
            .iter()
            .filter_map(|l| {
                let (left, target) = l.split_once(" -> ")?;
                let perms = left.split_whitespace().next()?.get(..4)?;
                let target = if target.starts_with("pipe:") {
                    "pipe"
                } else if target.starts_with("/proc/") && target.ends_with("/fd") {
                    "/proc/PID/fd"
                } else {
                    target
                };
                Some(format!("{perms} {target}"))
            })
            .collect();
        fds.sort();
        assert_eq!(
            fds,
            [
                "l-wx pipe",
                "l-wx pipe",
                "lr-x /dev/null",
                "lr-x /memfd:staticbus-outbox-d2-d1 (deleted)",
                "lr-x /proc/PID/fd",
                "lrwx /memfd:staticbus-inbox-d1 (deleted)",
                "lrwx /memfd:staticbus-outbox-d1-d2 (deleted)",
                "lrwx /memfd:staticbus-sensor (deleted)",
                "lrwx /memfd:staticbus-shm:raw (deleted)",
            ],
            "{mode}: {sensor:?}"
        );
    }
    drop(leaked);
}

/// The limits the hostile domain runs under in the resource tests: small, so that each
/// test takes a fraction of a second and nothing of the machine.
const SMALL: staticbus_emu_runner::Limits = staticbus_emu_runner::Limits {
    memory: 64 << 20,
    processes: 16,
    files: 64,
    file_size: 4 << 20,
    cpu_quota_us: None,
};

/// Runs `limits-probe ARGS` as `sensor` under [`SMALL`], next to an honest `aggregator`;
/// checks that the honest one finished and returns the report and the probe's lines.
fn exhaust(
    mode: &str,
    sb: Option<staticbus_emu_runner::sandbox::Sandbox>,
    args: &[&str],
) -> (Report, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut progs = scripts(dir.path(), "", "sleep 0.5; echo still here");
    progs[0].program = env!("CARGO_BIN_EXE_limits-probe").into();
    progs[0].args = args.iter().map(|a| a.to_string()).collect();
    progs[0].limits = SMALL;
    let opts = RunOptions {
        sandbox: sb,
        ..RunOptions::default()
    };
    let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
    assert_eq!(
        of(&lines, "aggregator"),
        ["still here"],
        "{mode}: {lines:?}"
    );
    assert_eq!(status(&report, "aggregator"), "exited 0", "{mode}");
    assert_eq!(report.exit_code(), 1, "{mode}: {lines:?}");
    (report, of(&lines, "sensor"))
}

/// The number after `after ` in the probe's `RESULT CONTAINED` line.
fn contained_after(lines: &[String], what: &str) -> u64 {
    let l = lines
        .iter()
        .find(|l| l.starts_with(&format!("RESULT CONTAINED {what}")))
        .unwrap_or_else(|| panic!("no `{what}` in {lines:?}"));
    let n = l.split("after ").nth(1).unwrap_or("");
    n.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_fork_bomb_stops_at_the_domains_process_limit() {
    // Only in the sandbox: without it the domains share the runner's uid, whose process
    // count RLIMIT_NPROC would bound, so the runner does not set it, and the probe
    // refuses to run without a limit that holds it.
    let (report, sensor) = exhaust("sandboxed", Some(sandbox()), &["fork"]);
    // Before the limits the probe found RLIMIT_NPROC unlimited and refused to run.
    let forks = contained_after(&sensor, "fork refused");
    assert!(forks < SMALL.processes, "{sensor:?}");
    assert_eq!(status(&report, "sensor"), "exited 3");
}

#[test]
fn a_domain_that_allocates_without_bound_is_refused_at_its_memory_limit() {
    for (mode, sb) in modes() {
        let (report, sensor) = exhaust(mode, sb, &["memory"]);
        let mib = contained_after(&sensor, "allocation refused");
        assert!(mib < SMALL.memory >> 20, "{mode}: {sensor:?}");
        assert_eq!(status(&report, "sensor"), "exited 3", "{mode}");
    }
}

#[test]
fn a_domain_that_opens_descriptors_without_bound_is_refused_at_its_limit() {
    for (mode, sb) in modes() {
        let (report, sensor) = exhaust(mode, sb, &["files"]);
        let n = contained_after(&sensor, "open refused");
        assert!(n < SMALL.files, "{mode}: {sensor:?}");
        assert!(
            sensor.iter().any(|l| l.contains("Too many open files")),
            "{mode}: {sensor:?}"
        );
        assert_eq!(status(&report, "sensor"), "exited 3", "{mode}");
    }
}

#[test]
fn a_domain_that_writes_a_huge_file_is_stopped_at_its_file_size_limit() {
    use std::os::unix::fs::PermissionsExt;
    for (mode, sb) in modes() {
        let out = tempfile::tempdir().unwrap();
        // The sandboxed domain runs under a uid of its own when this is root: let it write.
        std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let file = out.path().join("huge");
        let (report, _) = exhaust(mode, sb, &["file", file.to_str().unwrap()]);
        assert_eq!(
            status(&report, "sensor"),
            format!(
                "killed by signal 25 (SIGXFSZ: it wrote past its file-size limit, {} bytes)",
                SMALL.file_size
            ),
            "{mode}"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            SMALL.file_size,
            "{mode}"
        );
    }
}

/// Whether this machine lets the runner have cgroups (the runner says otherwise in a note).
fn cgroups_usable() -> Option<std::path::PathBuf> {
    staticbus_emu_runner::cgroup::Cgroups::locate().ok()
}

#[test]
fn a_process_that_leaves_its_group_still_dies_with_its_domains_cgroup() {
    let Some(parent) = cgroups_usable() else {
        eprintln!(
            "skipped: the runner may not write a cgroup v2 subtree here (the run's note says \
             why)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Without the sandbox a process that leaves its process group (setsid) escaped the
    // group kill and lived on after the run; the domain's cgroup holds it anyway.
    let progs = scripts(
        dir.path(),
        "setsid sleep 100000 & echo child=$!; sleep 0.3; exit 0",
        "cat /proc/self/cgroup | grep '^0::'",
    );
    let opts = RunOptions::default();
    let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
    assert_eq!(report.exit_code(), 0, "{lines:?}");
    let pid = of(&lines, "sensor")
        .into_iter()
        .find_map(|l| l.strip_prefix("child=").map(str::to_string))
        .expect("the child's pid");
    let mut tries = 0;
    while !gone(&pid) && tries < 500 {
        std::thread::sleep(Duration::from_millis(10));
        tries += 1;
    }
    assert!(
        gone(&pid),
        "the domain's escaped child {pid} survived the run"
    );
    // The domain ran in a group of its own below the run's, which is gone now.
    let agg = of(&lines, "aggregator");
    assert!(
        agg.iter()
            .any(|l| l.contains("/staticbus-") && l.ends_with("/d2-aggregator")),
        "{agg:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("staticbus-") && !n.ends_with("-runner"))
        .collect();
    // Other runs (of other tests) may be under way beside this one: only this run's group
    // must be gone.
    let this = agg
        .iter()
        .find_map(|l| l.split('/').find(|c| c.starts_with("staticbus-")))
        .unwrap()
        .to_string();
    assert!(!left.contains(&this), "{this} left behind: {left:?}");
}

#[test]
fn a_sandboxed_domain_sees_no_cgroup_files() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = staticbus_emu_runner::cgroup::cgroup2_mounts(&mountinfo);
    if mounts.is_empty() {
        eprintln!("skipped: this machine has no cgroup2 mount to hide");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Where the runner's cgroup is delegated to its user, a domain of that uid could write
    // its own group's limits or leave it; in the sandbox every cgroup2 mount is an empty
    // read-only folder.
    let script: String = mounts
        .iter()
        .map(|m| {
            let m = m.display();
            format!(
                "echo \"{m}: $(ls -A {m} | wc -l) entries\"; \
                 mkdir {m}/escape 2>/dev/null && echo \"{m}: mkdir worked\"; "
            )
        })
        .collect();
    let progs = scripts(dir.path(), &format!("{script}true"), "exit 0");
    let opts = RunOptions {
        sandbox: Some(sandbox()),
        ..RunOptions::default()
    };
    let (report, lines) = run_within(dir.path(), progs, opts, Duration::from_secs(120));
    assert_eq!(report.exit_code(), 0, "{lines:?}");
    let sensor = of(&lines, "sensor");
    let want: Vec<String> = mounts
        .iter()
        .map(|m| format!("{}: 0 entries", m.display()))
        .collect();
    assert_eq!(sensor, want);
}
