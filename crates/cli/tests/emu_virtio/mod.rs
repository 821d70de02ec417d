//! What the tests of emulator domains share (`run.rs`, and the virtio ones `virtio_blk.rs`,
//! `virtio_daemons.rs`): finding a vhost-user daemon (or skipping, unless
//! `STATICBUS_REQUIRE_VHOST_DAEMONS=1`), building the domain programs, running an example
//! with `staticbus run` in a folder of its own, and reading the domains' `PASS` lines.

#![allow(dead_code)] // each test file uses its part

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The daemon `name`: `$env` if set, else `name` on PATH; `None` after saying why the
/// test is skipped (`install` says how to get it), or a failure when
/// `STATICBUS_REQUIRE_VHOST_DAEMONS=1`.
pub fn daemon(name: &str, env: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env).map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{name} not found ({env} unset, not on PATH); {install}");
        assert!(
            std::env::var_os("STATICBUS_REQUIRE_VHOST_DAEMONS").is_none_or(|v| v != "1"),
            "STATICBUS_REQUIRE_VHOST_DAEMONS=1: {msg}"
        );
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// The domain programs and the sandbox launcher, next to `staticbus`.
pub fn build_programs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_staticbus")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "staticbus-emu-virtio-domains",
            "-p",
            "staticbus-emu-domains",
            "-p",
            "staticbus-emu-runner",
            "--bins",
        ]);
        if bin_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.current_dir(root()).status().expect("cargo build");
        assert!(st.success(), "building the domain programs failed");
    });
}

/// A fresh folder for a run, writable by the domains (they run as uids of their own when
/// the runner is root).
pub fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A copy of `daemon` in `dir` that the domains can execute (as root they run as uids of
/// their own, and a daemon under /root is out of their reach).
pub fn daemon_copy(daemon: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join(daemon.file_name().unwrap());
    std::fs::copy(daemon, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Runs `staticbus run examples/EXAMPLE/system.toml EXTRA…` in `dir` with `env`, showing
/// `on_line` every line of its output as it comes; checks that it and every domain of
/// `domains` exited 0. Returns the output (stdout).
pub fn run_example(
    example: &str,
    extra: &[&str],
    dir: &Path,
    env: &[(&str, &Path)],
    domains: &[&str],
    mut on_line: impl FnMut(&str),
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_staticbus"));
    cmd.arg("run")
        .arg(root().join("examples").join(example).join("system.toml"))
        .args(["--timeout", "900"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run staticbus");
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("staticbus run's output");
        on_line(&line);
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    for dom in domains {
        let l = err
            .lines()
            .find(|l| l.starts_with(&format!("{dom} ")))
            .unwrap_or_else(|| panic!("no summary line for {dom}:\n{err}"));
        assert!(l.ends_with("exited 0"), "{l}\n{out}\n{err}");
    }
    out
}

/// The line of domain `dom` that starts with `start` (without the domain's prefix).
pub fn line<'a>(out: &'a str, dom: &str, start: &str) -> &'a str {
    let prefix = format!("[{dom}] ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no `{start}` line from {dom}:\n{out}"))
}

/// The value of `key=` in the line of domain `dom` that starts with `start`.
pub fn field<'a>(out: &'a str, dom: &str, start: &str, key: &str) -> &'a str {
    let l = line(out, dom, start);
    l.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in `{l}`"))
}
