//! The `/init` of a Linux domU's initramfs (`linux-init`):
//!
//! 1. mounts /proc, /sys and /dev (devtmpfs) and makes sure stdout is the console;
//! 2. loads every module in `/lib/modules`, in name order (`.ko.xz` through the kernel's
//!    own decompression); a file `<module>.params` next to one holds its parameters
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

/// Mounts /proc, /sys and devtmpfs on /dev (already mounted is fine).
pub fn mount_all() -> Result<(), String> {
    for (src, dir, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
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
    /// It printed a `RESULT` line and exited with this status (`None`: by a signal).
    Result(Option<i32>),
    /// It exited without printing a `RESULT` line.
    NoResult(String),
    /// It ran past the timeout and was killed.
    Timeout(u64),
}

/// Runs `program` with `args`, relaying its output line by line to stdout with `prefix`
/// removed; kills it after `timeout`.
pub fn supervise(program: &Path, args: &[&str], timeout: Duration) -> Result<Ended, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut saw_result = false;
    let out = io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended::Timeout(timeout.as_secs()));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                saw_result |= line.starts_with("RESULT ");
                let mut o = out.lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = reader.join();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    Ok(if saw_result {
        Ended::Result(status.code())
    } else {
        Ended::NoResult(status.to_string())
    })
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
        load_module(&m, &params)?;
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        if params.is_empty() {
            println!("linux-init: loaded {name}");
        } else {
            println!("linux-init: loaded {name} ({params})");
        }
    }
    let line = fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let prog = program(&line, &root.join("bin"))?;
    let timeout = match cmdline_value(&line, "timeout") {
        None => DEFAULT_TIMEOUT_S,
        Some(v) => v
            .parse()
            .map_err(|_| format!("staticbus.timeout={v}: not a number of seconds"))?,
    };
    let args: Vec<&str> = line.split_ascii_whitespace().collect();
    let name = prog
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    println!("linux-init: starting {name} at {:.3} s", uptime());
    let t0 = Instant::now();
    let ended = supervise(&prog, &args, Duration::from_secs(timeout))?;
    println!(
        "linux-init: {name} ended after {:.3} s ({:?}), at {:.3} s",
        t0.elapsed().as_secs_f64(),
        ended,
        uptime()
    );
    match ended {
        Ended::Result(_) => Ok(()),
        Ended::NoResult(s) => Err(format!("{name} ended ({s}) without a RESULT line")),
        Ended::Timeout(s) => Err(format!(
            "{name} still running after {s} s (staticbus.timeout)"
        )),
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

    #[test]
    fn supervision_sees_the_result_line_and_the_timeout() {
        let sh = Path::new("/bin/sh");
        assert_eq!(
            supervise(
                sh,
                &["-c", "echo hi; echo 'RESULT PASS x'"],
                Duration::from_secs(10)
            ),
            Ok(Ended::Result(Some(0)))
        );
        assert!(matches!(
            supervise(sh, &["-c", "exit 3"], Duration::from_secs(10)),
            Ok(Ended::NoResult(_))
        ));
        assert_eq!(
            supervise(sh, &["-c", "sleep 5"], Duration::from_millis(100)),
            Ok(Ended::Timeout(0))
        );
    }
}
