//! The `/init` of a Linux domU's initramfs (`linux-init`):
//!
//! 1. mounts /proc, /sys, /dev (devtmpfs) and /dev/pts (devpts) and makes sure stdout is the console;
//! 2. loads every module in `/lib/modules`, in name order (`.ko.xz` through the kernel's
//!    own decompression; one that fails is reported, and the program's own checks say
//!    what is missing); a file `<module>.params` next to one holds its parameters
//!    (`staticbus boot` loads `xen-privcmd` with `unrestricted=1`: with no xenstore, the
//!    restricted driver would wait for ever);
//! 3. starts the domain's program, `/bin/<staticbus.program>` (the only program in /bin
//!    when the command line names none), with the kernel command line's words as its
//!    arguments, relays its output and watches for its `RESULT` line;
//! 4. prints `RESULT FAIL …` itself if the program dies without one or runs past
//!    `staticbus.timeout=SECONDS` (default [`DEFAULT_TIMEOUT_S`]), then powers the domain
//!    off (Xen destroys it).

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds a program may run unless `staticbus.timeout=` says otherwise.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// `finit_module` flag: the file is compressed, the kernel decompresses it.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Mounts /proc, /sys, devtmpfs on /dev and devpts on /dev/pts (already mounted is fine).
pub fn mount_all() -> Result<(), String> {
    for (src, dir, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        // Pseudo-terminals (`/dev/ptmx` opens the devpts instance at /dev/pts).
        ("devpts", "/dev/pts", "devpts"),
    ] {
        let _ = fs::create_dir_all(dir);
        let (s, d, t) = (
            cstr(src).map_err(|e| e.to_string())?,
            cstr(dir).map_err(|e| e.to_string())?,
            cstr(fstype).map_err(|e| e.to_string())?,
        );
        // SAFETY: valid NUL-terminated strings that outlive the call, no data argument.
        let rc = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(format!("mount {fstype} on {dir}: {e}"));
            }
        }
    }
    Ok(())
}

/// Makes fds 0-2 the console if the kernel could not open one for init.
pub fn console() {
    // SAFETY: F_GETFD on a possibly closed fd only reports EBADF.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } >= 0 {
        return;
    }
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for n in 0..3 {
        // SAFETY: duplicates a valid fd onto 0-2, which are free (checked above for 1).
        unsafe { libc::dup2(f.as_raw_fd(), n) };
    }
}

/// The modules of `dir` to load, in order: `(path, parameters)`.
pub fn modules(dir: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ko") || n.ends_with(".ko.xz"))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|n| {
            let params = fs::read_to_string(dir.join(format!("{n}.params")))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            (dir.join(n), params)
        })
        .collect())
}

/// Loads one module with `finit_module` (already loaded is fine).
pub fn load_module(path: &Path, params: &str) -> Result<(), String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let flags = if path.extension().is_some_and(|e| e == "xz") {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    let p = cstr(params).map_err(|e| format!("{}: parameters: {e}", path.display()))?;
    // SAFETY: finit_module(fd, params, flags) with an open fd and a NUL-terminated
    // string, both live for the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), p.as_ptr(), flags) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("loading {}: finit_module: {e}", path.display()));
        }
    }
    Ok(())
}

/// The value of `staticbus.KEY=` on a command line.
pub fn cmdline_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_ascii_whitespace()
        .rev()
        .filter_map(|w| w.strip_prefix("staticbus."))
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The program to start: `staticbus.program=` of the command line, or the only
/// executable of `bin`.
pub fn program(line: &str, bin: &Path) -> Result<PathBuf, String> {
    if let Some(p) = cmdline_value(line, "program") {
        let path = bin.join(p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "staticbus.program={p}: no {} in the initramfs",
                path.display()
            ))
        };
    }
    let mut all: Vec<PathBuf> = fs::read_dir(bin)
        .map_err(|e| format!("{}: {e}", bin.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    all.sort();
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(format!("no program in {}", bin.display())),
        _ => Err(format!(
            "{} programs in {} and no staticbus.program= on the kernel command line",
            all.len(),
            bin.display()
        )),
    }
}

/// How a supervised program ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It printed a `RESULT` line (`passed`: `RESULT PASS`) and exited with this status
    /// (`None`: by a signal).
    Result {
        /// The line said `RESULT PASS`.
        passed: bool,
        /// The line, without `RESULT `.
        line: String,
        /// Exit status.
        code: Option<i32>,
    },
    /// It exited without printing a `RESULT` line.
    NoResult(String),
    /// It ran past the timeout and was killed.
    Timeout(u64),
}

/// One program to start: its path and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The executable.
    pub path: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// The programs of a command line: `staticbus.program=a[,b…]` (each in `bin`), or the
/// only executable of `bin`. Program `i` (from 1) gets every word of the line except
/// those prefixed with another program's `N:`; its own `i:key=value` words lose the
/// prefix (so `staticbus.program=q,q 1:stream=up 2:stream=down` runs two instances).
pub fn programs(line: &str, bin: &Path) -> Result<Vec<Start>, String> {
    let paths: Vec<PathBuf> = match cmdline_value(line, "program") {
        Some(list) => list
            .split(',')
            .map(|p| {
                let path = bin.join(p);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!(
                        "staticbus.program={list}: no {} in the initramfs",
                        path.display()
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
        None => vec![program(line, bin)?],
    };
    let many = paths.len() > 1;
    Ok(paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let args = line
                .split_ascii_whitespace()
                .filter_map(|w| match w.split_once(':') {
                    Some((n, rest))
                        if many && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        (n.parse::<usize>().ok() == Some(i + 1)).then(|| rest.to_string())
                    }
                    _ => Some(w.to_string()),
                })
                .collect();
            Start { path, args }
        })
        .collect())
}

/// Runs `programs` side by side, relaying their output line by line; kills them all
/// after `timeout`. With more than one program, each program's `RESULT` line is shown as
/// `program N: RESULT …` (the caller prints the domain's one `RESULT` line).
pub fn supervise(programs: &[Start], timeout: Duration) -> Result<Vec<Ended>, String> {
    let many = programs.len() > 1;
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    for (i, p) in programs.iter().enumerate() {
        let mut child = Command::new(&p.path)
            .args(&p.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", p.path.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut results: Vec<Option<(bool, String)>> = vec![None; programs.len()];
    let out = io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Ok(programs
                .iter()
                .map(|_| Ended::Timeout(timeout.as_secs()))
                .collect());
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok((i, line)) => {
                let mut o = out.lock();
                if let Some(r) = line.strip_prefix("RESULT ") {
                    if results[i].is_none() {
                        results[i] = Some((r.starts_with("PASS"), r.to_string()));
                    }
                    if many {
                        let _ = write!(o, "program {}: ", i + 1);
                    }
                }
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut ended = Vec::new();
    for (c, r) in children.iter_mut().zip(results) {
        let status = c
            .wait()
            .map_err(|e| format!("waiting for a program: {e}"))?;
        ended.push(match r {
            Some((passed, line)) => Ended::Result {
                passed,
                line,
                code: status.code(),
            },
            None => Ended::NoResult(status.to_string()),
        });
    }
    Ok(ended)
}

/// Seconds since the kernel started (`/proc/uptime`).
pub fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Flushes and powers the domain off; never returns.
pub fn power_off() -> ! {
    let _ = io::stdout().flush();
    // SAFETY: plain system calls without pointer arguments.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // Only reached if reboot failed (not init, or no CAP_SYS_BOOT); init must not exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The whole `/init`: see the module documentation. `root` is `/` in the initramfs.
pub fn main(root: &Path) -> ! {
    let mounted = mount_all();
    console();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "(unknown release)".into());
    println!(
        "linux-init: Linux {release}, /init at {:.3} s after the kernel started",
        uptime()
    );
    if let Err(e) = mounted.and_then(|()| start(root)) {
        println!("linux-init: {e}");
        println!("RESULT FAIL linux-init: {e}");
    }
    power_off()
}

fn start(root: &Path) -> Result<(), String> {
    for (m, params) in modules(&root.join("lib/modules"))? {
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        // A module that does not load (xen-evtchn without Xen: ENODEV) is reported and
        // the program still starts: its platform check says precisely what is missing.
        if let Err(e) = load_module(&m, &params) {
            println!("linux-init: {e}");
            continue;
        }
        if params.is_empty() {
            println!("linux-init: loaded {name}");
        } else {
            println!("linux-init: loaded {name} ({params})");
        }
    }
    let line = fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let progs = programs(&line, &root.join("bin"))?;
    let timeout = match cmdline_value(&line, "timeout") {
        None => DEFAULT_TIMEOUT_S,
        Some(v) => v
            .parse()
            .map_err(|_| format!("staticbus.timeout={v}: not a number of seconds"))?,
    };
    let name = |p: &Start| {
        p.path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let names: Vec<String> = progs.iter().map(name).collect();
    println!(
        "linux-init: starting {} at {:.3} s",
        names.join(", "),
        uptime()
    );
    let t0 = Instant::now();
    let ended = supervise(&progs, Duration::from_secs(timeout))?;
    let took = t0.elapsed().as_secs_f64();
    println!("linux-init: done after {took:.3} s, at {:.3} s", uptime());
    let mut failed = Vec::new();
    for (i, (n, e)) in names.iter().zip(&ended).enumerate() {
        match e {
            Ended::Result { passed: true, .. } => {}
            Ended::Result { line, .. } => failed.push(format!("{} ({n}): {line}", i + 1)),
            Ended::NoResult(s) => {
                failed.push(format!("{} ({n}) ended ({s}) without a RESULT line", i + 1))
            }
            Ended::Timeout(s) => failed.push(format!(
                "{} ({n}) still running after {s} s (staticbus.timeout)",
                i + 1
            )),
        }
    }
    if progs.len() == 1 {
        // The program printed its own RESULT line, unless it failed to.
        return match &ended[0] {
            Ended::Result { .. } => Ok(()),
            _ => Err(failed.join("; ")),
        };
    }
    if failed.is_empty() {
        println!(
            "RESULT PASS linux-init: {} programs passed in {took:.1}s",
            progs.len()
        );
        Ok(())
    } else {
        Err(format!("program {}", failed.join("; program ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_values() {
        let l = "console=ttyAMA0 quiet staticbus.program=linux-ping-pong rounds=10 staticbus.timeout=5\n";
        assert_eq!(cmdline_value(l, "program"), Some("linux-ping-pong"));
        assert_eq!(cmdline_value(l, "timeout"), Some("5"));
        assert_eq!(cmdline_value(l, "rounds"), None);
    }

    #[test]
    fn the_program_is_named_or_the_only_one() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path();
        assert!(program("", bin).unwrap_err().contains("no program"));
        fs::write(bin.join("a"), "").unwrap();
        assert_eq!(program("", bin).unwrap(), bin.join("a"));
        fs::write(bin.join("b"), "").unwrap();
        assert!(program("", bin).unwrap_err().contains("staticbus.program="));
        assert_eq!(program("staticbus.program=b", bin).unwrap(), bin.join("b"));
        assert!(program("staticbus.program=c", bin)
            .unwrap_err()
            .contains("no "));
    }

    #[test]
    fn modules_load_in_name_order_with_their_parameters() {
        let t = tempfile::tempdir().unwrap();
        for n in ["20-b.ko", "10-a.ko.xz", "30-c.ko.xz", "notes.txt"] {
            fs::write(t.path().join(n), "").unwrap();
        }
        fs::write(t.path().join("30-c.ko.xz.params"), "unrestricted=1\n").unwrap();
        let m = modules(t.path()).unwrap();
        let names: Vec<_> = m
            .iter()
            .map(|(p, a)| (p.file_name().unwrap().to_str().unwrap(), a.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("10-a.ko.xz", ""),
                ("20-b.ko", ""),
                ("30-c.ko.xz", "unrestricted=1")
            ]
        );
    }

    fn sh(script: &str) -> Start {
        Start {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        }
    }

    #[test]
    fn supervision_sees_the_result_lines_and_the_timeout() {
        assert_eq!(
            supervise(
                &[sh("echo hi; echo 'RESULT PASS x'"), sh("exit 3")],
                Duration::from_secs(10)
            ),
            Ok(vec![
                Ended::Result {
                    passed: true,
                    line: "PASS x".into(),
                    code: Some(0)
                },
                Ended::NoResult("exit status: 3".into())
            ])
        );
        assert_eq!(
            supervise(&[sh("sleep 5")], Duration::from_millis(100)),
            Ok(vec![Ended::Timeout(0)])
        );
    }

    #[test]
    fn each_program_gets_its_own_words() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("q"), "").unwrap();
        let line = "quiet staticbus.program=q,q count=5 1:stream=up 2:stream=down 12:x=y";
        let p = programs(line, t.path()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].args,
            ["quiet", "staticbus.program=q,q", "count=5", "stream=up"]
        );
        assert_eq!(
            p[1].args,
            ["quiet", "staticbus.program=q,q", "count=5", "stream=down"]
        );
        // One program: the words as they are.
        let p = programs("staticbus.program=q 1:a=b", t.path()).unwrap();
        assert_eq!(p[0].args, ["staticbus.program=q", "1:a=b"]);
        assert!(programs("staticbus.program=q,r", t.path()).is_err());
    }
}
