//! `staticbus run` end to end: the emulated hypervisor with real domain processes (the
//! programs of crate `staticbus-emu-domains`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

mod emu_virtio;

/// The example programs sit next to the `staticbus` binary, where `staticbus run` looks for
/// them: cargo builds them once per test run (a no-op when they are up to date; it never
/// runs stale ones).
fn build_examples() {
    emu_virtio::build_programs();
}

fn run(args: &[&str]) -> Output {
    build_examples();
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("run")
        .args(args)
        .output()
        .expect("run staticbus")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A system of three probe domains: `a` → `b` over channel `ab` (region + one event
/// channel), `c` connected to nothing.
fn probe_system(dir: &Path, modes: [&str; 3]) -> PathBuf {
    let dom = |name: &str, mode: &str| {
        let mut args: Vec<String> = mode.split(' ').map(|s| format!("\"{s}\"")).collect();
        args.retain(|a| a != "\"\"");
        format!(
            "[[domain]]\nname = \"{name}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"probe\", args = [{}] }}\n\n",
            args.join(", ")
        )
    };
    let text = format!(
        "[target]\nxen = \"4.20\"\nstatic-shm = true\n\n[platform]\nram = [{{ base = 0x4000_0000, size = \"1GiB\" }}]\nshm-pool = {{ base = 0x7000_0000, size = \"16MiB\" }}\n\n{}{}{}\
         [[channel]]\nname = \"ab\"\nprotocol = \"queue\"\nfrom = \"a\"\nto = \"b\"\nsize = \"8KiB\"\nports = {{ a = 3, b = 4 }}\n",
        dom("a", modes[0]),
        dom("b", modes[1]),
        dom("c", modes[2])
    );
    let p = dir.join("probe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The memfds `a` of [`probe_system`] holds (`probe`'s `memfd-set`).
const A_MEMFDS: &str =
    "staticbus-a:rw,staticbus-inbox-d1:rw,staticbus-outbox-d1-d2:rw,staticbus-shm:ab:rw";

/// The memfds mapped into `a` of [`probe_system`] (`probe`'s `memfd-maps`).
const A_MAPS: &str = "staticbus-a:rw-s,staticbus-inbox-d1:rw-s,staticbus-outbox-d1-d2:rw-s,\
                      staticbus-outbox-d2-d1:r--s,staticbus-shm:ab:rw-s";

fn line<'a>(out: &'a str, dom: &str, key: &str) -> Option<&'a str> {
    let prefix = format!("[{dom}] {key}=");
    out.lines().find_map(|l| l.strip_prefix(&prefix))
}

#[test]
fn ping_pong_example_passes() {
    let o = run(&[
        root()
            .join("examples/ping-pong/system.toml")
            .to_str()
            .unwrap(),
        "--timeout",
        "60",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("[ping] RESULT PASS ping-pong ping: 20000 round trips"),
        "{out}"
    );
    assert!(
        out.contains("[pong] RESULT PASS ping-pong pong: 20000 round trips"),
        "{out}"
    );
    assert!(out.contains("[ping] ping: 20000 round trips"), "{out}");
    // The summary counts every ping and pong.
    assert!(err.contains("ping:1 -> pong:1"), "{err}");
    assert!(err.contains("exited 0"), "{err}");
}

/// The same program the bare-metal Xen guests run (`staticbus_programs::queue_check`).
#[test]
fn queue_check_example_passes() {
    let o = run(&[
        root()
            .join("examples/queue-check/system.toml")
            .to_str()
            .unwrap(),
        "--timeout",
        "120",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains(
            "[consumer] RESULT PASS queue-check consumer: 100000 messages in order and intact"
        ),
        "{out}"
    );
    assert!(
        out.contains("[producer] RESULT PASS queue-check producer: 100000 messages verified"),
        "{out}"
    );
}

/// The decimal numbers in `s`, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// The rest of the first line of `out` that starts with `prefix`.
fn after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…`:\n{out}"))
}

/// The log check (`staticbus_programs::log_check`, the same program the bare-metal Xen guests
/// run): 100,000 records over a ring of 256 slots. The paced phase loses nothing and the
/// bursts lose exactly what they overwrite; the free run's losses depend on scheduling,
/// but both sides agree on them and received + lost is the count.
#[test]
fn log_check_example_passes() {
    let o = run(&[
        root()
            .join("examples/log-check/system.toml")
            .to_str()
            .unwrap(),
        "--timeout",
        "120",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    for l in [
        "[writer] writer: `log`: 256 slots of 128 bytes, records of 12..112 bytes",
        "[writer] writer: 100000 records: 25000 paced, 50000 in 123 bursts (21712 to be lapped), \
         25000 free-running",
        "[reader] reader: expecting 100000 records from 0: 25000 paced, 50000 in 123 bursts, \
         25000 free-running",
        "[reader] reader: paced: 25000 received, 0 lost, in ",
        "[reader] reader: bursts: 28288 received, 21712 lost, exactly as overwritten in each of \
         123 bursts",
    ] {
        assert!(out.contains(l), "missing `{l}`:\n{out}");
    }
    let free = numbers(after(&out, "[reader] reader: free run: "));
    let (free_received, free_lost) = (free[0], free[1]);
    assert_eq!(free_received + free_lost, 25_000, "{out}");
    let total = numbers(after(
        &out,
        "[reader] RESULT PASS log-check reader: 100000 records = ",
    ));
    assert_eq!(
        total[..2],
        [28_288 + 25_000 + free_received, 21_712 + free_lost]
    );
    let w = numbers(after(
        &out,
        "[writer] RESULT PASS log-check writer: 100000 records; lost 0 paced, 21712 in bursts \
         (exact), ",
    ));
    assert_eq!(w[0], free_lost, "{out}");
}

#[test]
fn three_domain_relay_passes() {
    let o = run(&[
        root().join("examples/relay/system.toml").to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("[sink] PASS relay 2000"), "{out}");
}

#[test]
fn domains_see_exactly_their_own_memory_and_xen_state() {
    let dir = tempfile::tempdir().unwrap();
    // Each reports, then stays alive a while: a peer that has already exited would have
    // its port closed (the other end falls back to Unbound) before `a` asks for status.
    let sys = probe_system(dir.path(), ["sleep 1500", "sleep 1500", "sleep 1500"]);
    let o = run(&[sys.to_str().unwrap(), "--timeout", "30"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    // Descriptors: own memory and the one region for a and b, and for direct delivery
    // of `ab`'s event channel (docs/adr/0009) each one's outbox to the other (writable)
    // and its own inbox state; only own memory for c, which has no channel.
    assert_eq!(line(&out, "a", "memfds"), Some("4"), "{out}");
    assert_eq!(line(&out, "b", "memfds"), Some("4"), "{out}");
    assert_eq!(line(&out, "c", "memfds"), Some("1"), "{out}");
    assert_eq!(line(&out, "a", "memfd-set"), Some(A_MEMFDS), "{out}");
    assert_eq!(
        line(&out, "b", "memfd-set"),
        Some(
            "staticbus-b:rw,staticbus-inbox-d2:rw,staticbus-outbox-d2-d1:rw,\
             staticbus-shm:ab:rw"
        ),
        "{out}"
    );
    assert_eq!(
        line(&out, "c", "memfd-set"),
        Some("staticbus-c:rw"),
        "{out}"
    );
    // Mappings: the same, plus the peer's outbox to it, read-only (its descriptor, opened
    // read-only, is closed once mapped).
    assert_eq!(line(&out, "a", "memfd-maps"), Some(A_MAPS), "{out}");
    assert_eq!(
        line(&out, "b", "memfd-maps"),
        Some(
            "staticbus-b:rw-s,staticbus-inbox-d2:rw-s,staticbus-outbox-d1-d2:r--s,\
             staticbus-outbox-d2-d1:rw-s,staticbus-shm:ab:rw-s"
        ),
        "{out}"
    );
    assert_eq!(
        line(&out, "c", "memfd-maps"),
        Some("staticbus-c:rw-s"),
        "{out}"
    );
    // Xen binds a's end first and b's second: only b starts pending.
    assert_eq!(line(&out, "a", "pending.3"), Some("0"), "{out}");
    assert_eq!(line(&out, "b", "pending.4"), Some("1"), "{out}");
    assert!(
        line(&out, "a", "status.3").unwrap().contains("Interdomain"),
        "{out}"
    );
    assert!(
        line(&out, "a", "status.3")
            .unwrap()
            .contains("remote_port: 4"),
        "{out}"
    );
    // A port the domain does not own.
    assert_eq!(line(&out, "c", "foreign-send"), Some("EINVAL"), "{out}");
}

#[test]
fn a_crashing_domain_leaves_the_others_running() {
    let dir = tempfile::tempdir().unwrap();
    let sys = probe_system(dir.path(), ["crash", "sleep 300", "sleep 300"]);
    let o = run(&[sys.to_str().unwrap(), "--timeout", "30"]);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a crash fails the run\n{out}\n{err}"
    );
    assert!(err.contains("killed by signal 6"), "{err}");
    let exited_ok = err.lines().filter(|l| l.ends_with("exited 0")).count();
    assert_eq!(exited_ok, 2, "b and c finish normally\n{err}");
}

#[test]
fn restart_recreates_a_domain() {
    let dir = tempfile::tempdir().unwrap();
    let sys = probe_system(dir.path(), ["report", "sleep 200", "report"]);
    let o = run(&[
        sys.to_str().unwrap(),
        "--timeout",
        "30",
        "--restart",
        "a",
        "--max-restarts",
        "3",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    // Every incarnation of `a` holds exactly what the first did (its fresh memory, the
    // region, its outbox, a fresh inbox state) and maps its peer's outbox read-only.
    for want in [
        format!("[a] memfd-set={A_MEMFDS}\n"),
        format!("[a] memfd-maps={A_MAPS}\n"),
    ] {
        assert_eq!(out.matches(&want).count(), 4, "started 1 + 3 times\n{out}");
    }
    assert!(out.contains("restarted, #3"), "{out}");
    let a = err.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(a.contains(" 3 "), "summary shows 3 restarts: {a}");
}

#[test]
fn timeout_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let sys = probe_system(dir.path(), ["sleep 20000", "sleep 20000", "report"]);
    let t = std::time::Instant::now();
    let o = run(&[sys.to_str().unwrap(), "--timeout", "1"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("killed (timeout)"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn run_refuses_a_domain_without_a_program() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.toml");
    std::fs::write(
        &p,
        "[platform]\nram = [{ base = 0x4000_0000, size = \"1GiB\" }]\n[[domain]]\nname = \"a\"\nmemory = \"16MiB\"\nkernel = { size = \"2MiB\" }\n",
    )
    .unwrap();
    let o = run(&[p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("has no `emulate` program"), "{err}");
}

#[test]
fn ctrl_c_stops_every_domain() {
    use std::io::BufRead;
    build_examples();
    let dir = tempfile::tempdir().unwrap();
    let sys = probe_system(dir.path(), ["sleep 20000", "sleep 20000", "sleep 20000"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(["run", sys.to_str().unwrap(), "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every domain has started (each prints `memfds=` first), then interrupt
    // the runner as a terminal would.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("memfds=") {
                let _ = tx.send(());
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    for _ in 0..3 {
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("every domain starts");
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let t = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    let out = reader.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "stops promptly"
    );
    assert_eq!(o.status.code(), Some(130), "{out}\n{err}");
    assert_eq!(err.matches("stopped (Ctrl-C)").count(), 3, "{err}");
}

#[test]
fn queue_survives_100_consumer_restarts() {
    let o = run(&[
        root()
            .join("examples/queue-restart/system.toml")
            .to_str()
            .unwrap(),
        "--restart-on-crash",
        "--timeout",
        "300",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("[consumer] PASS queue-stream 1000000"),
        "{out}"
    );
    assert_eq!(out.matches("restarted, #").count(), 100, "{out}");
    let consumer = err.lines().find(|l| l.starts_with("consumer ")).unwrap();
    assert!(
        consumer.contains(" 100 ") && consumer.ends_with("exited 0"),
        "{consumer}"
    );
}

#[test]
fn a_lapped_log_reader_learns_exactly_how_many_records_it_missed() {
    let o = run(&[
        root()
            .join("examples/log-lapped/system.toml")
            .to_str()
            .unwrap(),
        "--timeout",
        "120",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    // 40 bursts cycling [64, 128, 129, 391] records over 128 slots: 10 × (1 + 263)
    // records are overwritten before the collector reads them.
    assert!(
        out.contains("[collector] PASS log-lapped 7120 4480 2640"),
        "{out}"
    );
    assert!(
        out.contains(
            "refused as expected: this domain is the channel's reader, the program expects writer"
        ),
        "{out}"
    );
    assert!(
        out.contains("refused as expected: the manifest declares protocol `log`, the program expects `queue`"),
        "{out}"
    );
}

#[test]
fn redundant_latest_writers_and_a_blob_store_are_read_consistently() {
    let o = run(&[
        root()
            .join("examples/sensors/system.toml")
            .to_str()
            .unwrap(),
        "--timeout",
        "120",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("[monitor] PASS sensors"), "{out}");
    assert!(out.contains("up to version 50, none mixed"), "{out}");
    assert!(
        out.contains("[sensor-b] sensor 1: published 5000 readings"),
        "{out}"
    );
}

#[test]
fn the_summary_comes_after_all_domain_output() {
    build_examples();
    // Domain output (stdout) and the summary (stderr) merged into one stream, as on a
    // terminal: no domain line may come after the summary starts.
    let cmd = format!(
        "'{}' run '{}' --timeout 60 2>&1",
        env!("CARGO_BIN_EXE_staticbus"),
        root().join("examples/relay/system.toml").display()
    );
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let all = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{all}");
    let at = all.find("== staticbus run").expect("a summary");
    assert!(all[..at].contains("[sink] PASS relay"), "{all}");
    assert!(
        !all[at..].contains("] "),
        "domain output after the summary:\n{all}"
    );
}

// ---------------------------------------------------------------- booting from the host DTB

/// Builds `examples/ping-pong` into `dir`, lets `corrupt` change its host tree, and runs
/// the result with `--built`.
fn run_corrupted(dir: &Path, corrupt: impl FnOnce(&mut staticbus_dt::Node)) -> Output {
    let desc = root().join("examples/ping-pong/system.toml");
    let st = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("build")
        .arg(&desc)
        .arg("-o")
        .arg(dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", text(&st).1);
    let dtb = dir.join("host.dtb");
    let mut tree =
        staticbus_dt::read_dtb(&std::fs::read(&dtb).unwrap(), staticbus_diag::FileId(0)).unwrap();
    corrupt(tree.root.child_mut("chosen").expect("/chosen"));
    std::fs::write(&dtb, staticbus_dt::write_dtb(&tree)).unwrap();
    run(&[
        desc.to_str().unwrap(),
        "--built",
        dir.to_str().unwrap(),
        "--timeout",
        "60",
    ])
}

#[test]
fn built_outputs_run_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_corrupted(dir.path(), |_| {});
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("[ping] RESULT PASS"), "{out}");
}

#[test]
fn a_host_tree_with_the_pair_order_swapped_does_not_start() {
    // Swapping the two domain nodes swaps which end Xen binds first (and the domids):
    // the manifests were written for the other order.
    let dir = tempfile::tempdir().unwrap();
    let o = run_corrupted(dir.path(), |chosen| {
        let i = chosen
            .children
            .iter()
            .position(|c| c.name == "ping")
            .unwrap();
        let j = chosen
            .children
            .iter()
            .position(|c| c.name == "pong")
            .unwrap();
        chosen.children.swap(i, j);
    });
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("the host tree and the manifests disagree"),
        "{err}"
    );
    assert!(
        err.contains("`ping`: the host tree creates it as d2, its manifest says d1"),
        "{err}"
    );
    assert!(
        err.contains("`pong`: the host tree creates it as d1, its manifest says d2"),
        "{err}"
    );
    assert!(
        !out.contains("[ping]") && !out.contains("[pong]"),
        "a domain ran: {out}"
    );
}

#[test]
fn a_host_tree_with_other_ports_or_roles_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    // pong's end on port 2 instead of 1.
    let o = run_corrupted(dir.path(), |chosen| {
        let ec = chosen
            .child_mut("pong")
            .and_then(|d| d.child_mut("evtchn@1"))
            .unwrap();
        let p = ec.prop_mut("xen,evtchn").unwrap();
        p.value[..4].copy_from_slice(&2u32.to_be_bytes());
    });
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains(
            "`ping` port 1: in the host tree it is bound to d2:2, its manifest says bound to d2:1"
        ),
        "{err}"
    );
    assert!(
        err.contains("`pong` port 1: in the host tree it is free"),
        "{err}"
    );
    assert!(!out.contains("[ping]"), "{out}");

    // Roles the manifests do not know.
    let dir = tempfile::tempdir().unwrap();
    let o = run_corrupted(dir.path(), |chosen| {
        for (dom, role) in [("ping", "owner"), ("pong", "borrower")] {
            let shm = chosen
                .child_mut(dom)
                .and_then(|d| d.child_mut("shared-mem@70000000"))
                .unwrap();
            shm.set_prop(staticbus_dt::Property::string("role", role));
        }
    });
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains(
            "`ping` region `pingpong`: the host tree makes it owner, its manifest says no role"
        ),
        "{err}"
    );
    assert!(!out.contains("[ping]"), "{out}");
}

#[test]
fn built_needs_a_build() {
    let dir = tempfile::tempdir().unwrap();
    let desc = root().join("examples/ping-pong/system.toml");
    let o = run(&[
        desc.to_str().unwrap(),
        "--built",
        dir.path().to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("has no host.dtb"), "{err}");
    assert!(err.contains("staticbus build"), "{err}");
}

/// A system of two domains that are shell commands.
fn shell_system(dir: &Path, scripts: [&str; 2]) -> PathBuf {
    let dom = |name: &str, script: &str| {
        format!(
            "[[domain]]\nname = \"{name}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"/bin/sh\", args = [\"-c\", {script:?}] }}\n\n"
        )
    };
    let text = format!(
        "[target]\nxen = \"4.20\"\n\n[platform]\nram = [{{ base = 0x4000_0000, size = \"1GiB\" }}]\n\n{}{}",
        dom("a", scripts[0]),
        dom("b", scripts[1])
    );
    let p = dir.join("shell.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn sigterm_stops_a_run_whose_domains_forked_children_that_keep_their_output() {
    use std::io::BufRead;
    build_examples();
    for sandbox in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // Before the fix the runner killed only each domain's own process and then waited
        // for the output pipes the `sleep`s still held: SIGTERM (and the timeout) did
        // nothing for as long as they lived.
        let script = "sleep 100000 & echo started; exec sleep 100000";
        let sys = shell_system(dir.path(), [script, script]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_staticbus"));
        cmd.args(["run", sys.to_str().unwrap(), "--timeout", "600"]);
        if !sandbox {
            cmd.arg("--no-sandbox");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.ends_with("] started") {
                    let _ = tx.send(());
                }
            }
        });
        for _ in 0..2 {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("every domain starts");
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        // A liveness bound, far above the second it takes.
        let mut waited = 0;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if waited == 1200 {
                let _ = child.kill();
                panic!("sandbox={sandbox}: `staticbus run` ignored SIGTERM for 120 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            waited += 1;
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        reader.join().unwrap();
        assert_eq!(status.code(), Some(130), "sandbox={sandbox}: {err}");
        assert_eq!(err.matches("stopped (").count(), 2, "{err}");
    }
}

/// Every process below `pid` (its children, theirs, …), from `/proc/*/task/*/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in text.split_whitespace().filter_map(|w| w.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

#[test]
fn a_hostile_domain_fails_every_attack_while_the_honest_ones_finish() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    build_examples();
    let dir = tempfile::tempdir().unwrap();
    // The hostile domain runs under a uid of its own when this is root: let it in.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let targets = dir.path().join("targets");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "runner's").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut probe_args = vec![
        "--hypercalls".to_string(),
        format!("@{}", targets.display()),
    ];
    if rustix::process::geteuid().is_root() {
        // As root the domains run as uids of their own, which cannot read it.
        probe_args.push(secret.display().to_string());
    }
    let n = 100_000;
    let text = format!(
        "[target]\nxen = \"4.20\"\nstatic-shm = true\n\n[platform]\nram = [{{ base = 0x4000_0000, size = \"1GiB\" }}]\nshm-pool = {{ base = 0x7000_0000, size = \"16MiB\" }}\n\n\
         [[domain]]\nname = \"ping\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"ping-pong\", args = [\"ping\", \"{n}\"] }}\n\n\
         [[domain]]\nname = \"pong\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"ping-pong\", args = [\"pong\", \"{n}\"] }}\n\n\
         [[domain]]\nname = \"mallory\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"sandbox-probe\", args = {probe_args:?} }}\n\n\
         [[channel]]\nname = \"pingpong\"\nprotocol = \"queue\"\nfrom = \"ping\"\nto = \"pong\"\nsize = \"4KiB\"\n"
    );
    let sys = dir.path().join("attack.toml");
    std::fs::write(&sys, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(["run", sys.to_str().unwrap(), "--timeout", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The hostile domain gets the real pids of the runner and of every process of the
    // other domains (launchers, namespace inits, programs: 3 each) to attack.
    let runner = child.id();
    let mut tries = 0;
    let pids = loop {
        let d = descendants(runner);
        if d.len() >= 9 || tries == 3000 {
            break d;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        tries += 1;
    };
    let list: Vec<String> = std::iter::once(runner)
        .chain(pids)
        .map(|p| p.to_string())
        .collect();
    let tmp = dir.path().join("targets.tmp");
    std::fs::write(&tmp, list.join(" ")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, &targets).unwrap();
    let status = child.wait().unwrap();
    let (out, err) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert!(!out.contains("] OPEN "), "{out}");
    assert!(
        out.contains("[mallory] RESULT PASS every way out was blocked"),
        "{out}"
    );
    // Every path was tried: the runner's (6 ways) and 9 other processes' (7 ways each), the
    // rest.
    let tries: usize = out
        .lines()
        .filter(|l| l.starts_with("[mallory] blocked "))
        .count();
    assert!(tries >= 6 + 9 * 7 + 15, "{tries} tries\n{out}");
    for what in [
        "/proc/<process 8 of another domain>/mem",
        "ptrace(ATTACH, runner)",
        "kill(process 8 of another domain, SIGKILL)",
        "kill(-1, 0)",
        "EVTCHNOP_bind_interdomain to other domains' ports",
        "EVTCHNOP_send on 1024 ports it does not own",
        "malformed and truncated requests",
        "a request whose arg_len is 4 GiB",
        "requests in 2 s: absorbed",
    ] {
        assert!(out.contains(what), "{what}\n{out}");
    }
    // The honest domains finished correctly, every event accounted for.
    for dom in ["ping", "pong"] {
        assert!(
            out.contains(&format!(
                "[{dom}] RESULT PASS ping-pong {dom}: {n} round trips"
            )),
            "{out}"
        );
    }
    for l in err
        .lines()
        .filter(|l| l.starts_with("ping ") || l.starts_with("pong ") || l.starts_with("mallory "))
    {
        assert!(l.ends_with("exited 0"), "{l}\n{err}");
    }
}

/// examples/c-api: the C program (built by the example's Makefile against the host
/// static library of crates/capi) and the Rust `c-peer` pass checked data over a queue
/// each way, a log, a latest value and a blob. The description is copied next to the
/// C program in a folder the sandboxed domains may read.
#[test]
fn a_c_program_talks_to_a_rust_domain_over_every_protocol() {
    use std::os::unix::fs::PermissionsExt;
    build_examples();
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    std::fs::create_dir(&build).unwrap();
    for d in [dir.path(), &build] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let example = root().join("examples/c-api/");
    let built = match Command::new("make")
        .arg("-C")
        .arg(&example)
        .arg(format!("OUT={}", build.display()))
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            // No make (a machine with only Rust and its C linker): what the Makefile does.
            eprintln!("note: make is not installed; building examples/c-api/peer.c with cc");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "staticbus-capi"])
                .current_dir(root())
                .status()
                .unwrap();
            assert!(st.success(), "building the C API library failed");
            let target = Path::new(env!("CARGO_BIN_EXE_staticbus")).parent().unwrap();
            Command::new("cc")
                .args([
                    "-O2",
                    "-std=c11",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-DSTATICBUS_EMU",
                    "-I",
                ])
                .arg(root().join("crates/capi/include"))
                .arg(example.join("peer.c"))
                .arg(target.join("libstaticbus_capi.a"))
                .args([
                    "-lpthread",
                    "-ldl",
                    "-lm",
                    "-lrt",
                    "-lutil",
                    "-lgcc_s",
                    "-lc",
                    "-o",
                ])
                .arg(build.join("c-peer"))
                .output()
                .expect("run cc")
        }
    };
    assert!(
        built.status.success(),
        "building examples/c-api failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let desc = dir.path().join("system.toml");
    std::fs::copy(example.join("system.toml"), &desc).unwrap();
    let o = run(&[desc.to_str().unwrap(), "--timeout", "120"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("[c] c: all five channels open"), "{out}");
    assert!(
        out.contains(
            "[c] RESULT PASS c: 200 requests checked and answered, 200 setpoints intact up to 200"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "[rust] RESULT PASS c-peer: 200 rounds with the C domain over queue, log, latest and blob checked"
        ),
        "{out}"
    );

    // The library's hypercalls went through the C program's own transport functions.
    let calls = out
        .lines()
        .filter_map(|l| l.strip_prefix("[c] c: "))
        .find(|l| l.ends_with("scheduler hypercalls through this program's transport"))
        .map(numbers)
        .unwrap_or_default();
    assert!(calls.len() == 2 && calls[0] > 0 && calls[1] > 0, "{out}");

    // Outside `staticbus run` the C program is told why it cannot start.
    let alone = Command::new(build.join("c-peer")).output().unwrap();
    assert_eq!(alone.status.code(), Some(2));
    let why = String::from_utf8_lossy(&alone.stderr);
    assert!(
        why.contains("run this program through `staticbus run`"),
        "{why}"
    );
}

/// `pairs` queue-check producer/consumer pairs, each with its `stream` and `ack` queues.
fn queue_pairs(dir: &Path, pairs: usize) -> PathBuf {
    use std::fmt::Write;
    let mut s = String::from(
        "[system]\nname = \"pairs\"\n\n[target]\nxen = \"4.20\"\nstatic-shm = true\n\n\
         [platform]\nram = [{ base = 0x4000_0000, size = \"2GiB\" }]\n\
         shm-pool = { base = 0x7000_0000, size = \"16MiB\" }\n\n",
    );
    for p in 0..pairs {
        let _ = write!(
            s,
            "[[domain]]\nname = \"p{p}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\
             emulate = {{ program = \"queue-check\", args = [\"count=2000\", \"rtt=100\", \"stream=stream{p}\", \"ack=ack{p}\"] }}\n\n\
             [[domain]]\nname = \"c{p}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\
             emulate = {{ program = \"queue-check\", args = [\"stream=stream{p}\", \"ack=ack{p}\"] }}\n\n\
             [[channel]]\nname = \"stream{p}\"\nprotocol = \"queue\"\nfrom = \"p{p}\"\nto = \"c{p}\"\nsize = \"16KiB\"\n\n\
             [[channel]]\nname = \"ack{p}\"\nprotocol = \"queue\"\nfrom = \"c{p}\"\nto = \"p{p}\"\nsize = \"4KiB\"\n\n"
        );
    }
    let path = dir.join("system.toml");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn beyond_xen_tables_runs_a_system_no_xen_boots() {
    // 34 domains (Xen keeps 30 boot modules) and 34 regions (Xen 4.20 has room for 32).
    let dir = tempfile::tempdir().unwrap();
    let sys = queue_pairs(dir.path(), 17);
    let sys = sys.to_str().unwrap();
    let o = run(&[sys, "--timeout", "120"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("error[SB0411]"), "{err}");
    assert!(err.contains("error[SB0226]"), "{err}");
    assert!(!out.contains("RESULT"), "nothing may run: {out}");

    let o = run(&[sys, "--beyond-xen-tables", "--timeout", "120"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(err.contains("warning[SB0411]"), "{err}");
    assert!(err.contains("warning[SB0226]"), "{err}");
    assert!(err.contains("no Xen build boots it"), "{err}");
    for p in 0..17 {
        assert!(
            out.contains(&format!(
                "[c{p}] RESULT PASS queue-check consumer: 2000 messages in order and intact"
            )),
            "c{p}: {out}"
        );
        assert!(
            out.contains(&format!(
                "[p{p}] RESULT PASS queue-check producer: 2000 messages verified"
            )),
            "p{p}: {out}"
        );
    }
}

/// Four hostile domains, each taking one resource without bound under the `limits` of its
/// description (a fork bomb, endless allocation, endless descriptors, a file without end),
/// next to an honest ping-pong: each is stopped at its limit, the honest domains finish
/// every round trip, and the run ends with the summary and each hostile domain's reason.
#[test]
fn domains_that_exhaust_a_resource_are_stopped_at_their_limits() {
    use std::os::unix::fs::PermissionsExt;
    build_examples();
    let dir = tempfile::tempdir().unwrap();
    // The domains run under uids of their own when this is root: let them in and write.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let huge = dir.path().join("huge");
    let n = 10_000;
    let hostile = |name: &str, args: &str, limits: &str| {
        format!(
            "[[domain]]\nname = \"{name}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\
             emulate = {{ program = \"limits-probe\", args = [{args}], limits = {{ {limits} }} }}\n\n"
        )
    };
    let desc = format!(
        "[target]\nxen = \"4.20\"\nstatic-shm = true\n\n[platform]\nram = [{{ base = 0x4000_0000, size = \"1GiB\" }}]\nshm-pool = {{ base = 0x7000_0000, size = \"16MiB\" }}\n\n\
         [[domain]]\nname = \"ping\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"ping-pong\", args = [\"ping\", \"{n}\"] }}\n\n\
         [[domain]]\nname = \"pong\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\nemulate = {{ program = \"ping-pong\", args = [\"pong\", \"{n}\"] }}\n\n\
         {}{}{}{}\
         [[channel]]\nname = \"pingpong\"\nprotocol = \"queue\"\nfrom = \"ping\"\nto = \"pong\"\nsize = \"4KiB\"\n",
        hostile("bomb", "\"fork\"", "processes = 16"),
        hostile("hog", "\"memory\"", "memory = \"64MiB\""),
        hostile("leak", "\"files\"", "files = 64"),
        hostile("filler", &format!("\"file\", {:?}", huge.display().to_string()), "file-size = \"4MiB\""),
    );
    let sys = dir.path().join("exhaust.toml");
    std::fs::write(&sys, desc).unwrap();
    let o = run(&[sys.to_str().unwrap(), "--timeout", "300"]);
    let (out, err) = text(&o);
    // The hostile domains failed, so the run does; it was not stopped by its timeout.
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(!err.contains("killed (timeout)"), "{err}");
    for dom in ["ping", "pong"] {
        assert!(
            out.contains(&format!(
                "[{dom}] RESULT PASS ping-pong {dom}: {n} round trips"
            )),
            "{out}"
        );
    }
    for (dom, why) in [
        ("bomb", "fork refused (Resource temporarily unavailable"),
        ("hog", "allocation refused"),
        ("leak", "open refused (Too many open files"),
    ] {
        assert!(
            out.contains(&format!("[{dom}] RESULT CONTAINED {why}")),
            "{dom}\n{out}"
        );
    }
    let status = |dom: &str| {
        err.lines()
            .find(|l| l.split_whitespace().next() == Some(dom))
            .unwrap_or_else(|| panic!("no summary line for {dom}\n{err}"))
            .to_string()
    };
    assert!(status("ping").ends_with("exited 0"), "{err}");
    assert!(status("pong").ends_with("exited 0"), "{err}");
    for dom in ["bomb", "hog", "leak"] {
        assert!(status(dom).ends_with("exited 3"), "{err}");
    }
    assert!(
        status("filler").ends_with(
            "killed by signal 25 (SIGXFSZ: it wrote past its file-size limit, 4194304 bytes)"
        ),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&huge).unwrap().len(), 4 << 20);
}

#[test]
fn no_sandbox_says_what_it_gives_up_in_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let sys = shell_system(dir.path(), ["exit 0", "exit 0"]);
    let o = run(&[sys.to_str().unwrap(), "--no-sandbox", "--timeout", "60"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    // The warning once had a run of spaces from a broken string continuation in it.
    assert!(
        err.lines().any(|l| l
            == "warning: --no-sandbox: the domains run as plain processes; any of them can \
                read every other domain's memory (/proc/<pid>/fd, ptrace)"),
        "{err}"
    );
}
