//! Ctrl-C: `staticbus run` and `staticbus boot` stop what they started (the domain
//! processes, the QEMU) and exit 130.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sigint(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

/// Waits for the child to exit (at most `limit`), returning its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {limit:?} after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose command line contains `needle` (other than this test).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

/// Reads lines from `r` until one contains `marker`; returns everything read.
fn read_until(r: &mut impl BufRead, marker: &str) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("`{marker}` never came:\n{all}");
        }
        all.push_str(&line);
        if line.contains(marker) {
            return all;
        }
    }
}

#[test]
fn run_stops_every_domain_on_ctrl_c() {
    // The example programs and the sandbox launcher sit next to the staticbus binary.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            "staticbus-emu-domains",
            "--bin",
            "ping-pong",
            "-p",
            "staticbus-emu-runner",
            "--bin",
            "staticbus-sandbox",
        ])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(st.success());
    // Ping-pong that would run for minutes; its round count marks its processes.
    let rounds = "987654321";
    let dir = tempfile::tempdir().unwrap();
    let desc = std::fs::read_to_string(root().join("examples/ping-pong/system.toml"))
        .unwrap()
        .replace("\"20000\"", &format!("\"{rounds}\""));
    assert!(desc.contains(rounds));
    let path = dir.path().join("system.toml");
    std::fs::write(&path, desc).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .arg("run")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "[ping]");
    // Both domains run (the second may still be starting through its sandbox launcher).
    let domains = || {
        processes_with(rounds)
            .iter()
            .filter(|p| p.contains("ping-pong") && !p.contains("staticbus-sandbox"))
            .count()
    };
    let t0 = std::time::Instant::now();
    while domains() < 2 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        domains(),
        2,
        "both domains run: {:?}",
        processes_with(rounds)
    );
    sigint(&child);
    let code = wait_exit(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted: stopping every domain"), "{err}");
    assert!(err.contains("stopped (Ctrl-C)"), "{err}");
    let left: Vec<String> = processes_with(rounds)
        .into_iter()
        .filter(|p| p.contains("ping-pong"))
        .collect();
    // Neither a domain nor its sandbox launcher is left.
    assert!(left.is_empty(), "domains left running: {left:?}");
}

#[test]
fn boot_stops_its_qemu_on_ctrl_c() {
    let Some(xen) = common::xen("4.17") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("work");
    let mut child = Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args([
            "boot",
            "examples/xen-ping-pong/system.toml",
            "--timeout",
            "300",
        ])
        .arg("--xen")
        .arg(&xen)
        .arg("-o")
        .arg(&out)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // QEMU starts right after this line; its command line names the work directory.
    let mut seen = read_until(&mut err, "==> Xen 4.17");
    let needle = out.canonicalize().unwrap().display().to_string();
    let end = Instant::now() + Duration::from_secs(10);
    while !processes_with(&needle)
        .iter()
        .any(|p| p.contains("qemu-system-aarch64"))
    {
        assert!(Instant::now() < end, "QEMU never started:\n{seen}");
        std::thread::sleep(Duration::from_millis(10));
    }
    sigint(&child);
    let code = wait_exit(&mut child, Duration::from_secs(20));
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    assert_eq!(code, Some(130), "{seen}");
    assert!(seen.contains("boot: interrupted"), "{seen}");
    let left: Vec<String> = processes_with(&needle)
        .into_iter()
        .filter(|p| p.contains("qemu-system-aarch64"))
        .collect();
    assert!(left.is_empty(), "QEMU left running: {left:?}");
}
