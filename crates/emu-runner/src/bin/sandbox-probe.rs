//! A hostile domain program for the sandbox tests: it tries every way a domain could reach
//! the runner or another domain by OS means and reports each as `blocked <what>: <why>` or
//! `OPEN <what>`. Exits 0 only if everything was blocked.
//!
//! `sandbox-probe RUNNER_PID [ROOT_ONLY_FILE]`

use std::io::Error;

fn main() {
    let mut args = std::env::args().skip(1);
    let runner: i32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: sandbox-probe RUNNER_PID [ROOT_ONLY_FILE]");
    let secret = args.next();
    // Outside the sandbox these attempts would succeed (ptrace would stop the runner): do
    // nothing unless this process is sandboxed.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'))
    {
        println!("RESULT FAIL not in the sandbox (NoNewPrivs is not set): refusing to attack");
        std::process::exit(2);
    }
    let mut open = 0;
    let mut report = |what: &str, result: Result<String, String>| match result {
        Ok(how) => {
            open += 1;
            println!("OPEN {what}: {how}");
        }
        Err(why) => println!("blocked {what}: {why}"),
    };
    let os = |r: i64| -> Result<String, String> {
        if r < 0 {
            Err(Error::last_os_error().to_string())
        } else {
            Ok(format!("returned {r}"))
        }
    };

    // Another process's descriptors and memory through /proc.
    report(
        "/proc/<runner>/fd",
        std::fs::read_dir(format!("/proc/{runner}/fd"))
            .map(|d| format!("{} entries", d.count()))
            .map_err(|e| e.to_string()),
    );
    report(
        "/proc/<runner>/mem",
        std::fs::File::open(format!("/proc/{runner}/mem"))
            .map(|_| "opened".to_string())
            .map_err(|e| e.to_string()),
    );
    let others: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<u32>().is_ok())
                .filter(|n| n.parse::<u32>().unwrap() > 2)
                .collect()
        })
        .unwrap_or_default();
    report(
        "other processes in /proc",
        if others.is_empty() {
            Err("only the namespace's init and this domain are visible".into())
        } else {
            Ok(format!("visible: {}", others.join(" ")))
        },
    );
    // SAFETY: ptrace with integer arguments; expected to fail.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, runner, 0, 0) };
    report("ptrace(ATTACH, runner)", os(r));
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: 0x1000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one local iovec over a live buffer; the remote one is only an address in
    // another process. Expected to fail.
    let r = unsafe { libc::process_vm_readv(runner, &local, 1, &remote, 1, 0) };
    report("process_vm_readv(runner)", os(r as i64));
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(runner, 0) };
    report("kill(runner, 0)", os(r.into()));
    // SAFETY: pidfd_open takes integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, runner, 0) };
    report("pidfd_open(runner)", os(r));
    // SAFETY: unshare takes flags only; expected to fail.
    let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    report("unshare(CLONE_NEWUSER)", os(r.into()));
    // SAFETY: NUL-terminated literals and a null data pointer; expected to fail.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    report("mount(tmpfs)", os(r.into()));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or("?")
        .to_string();
    report(
        "capabilities",
        if cap_eff.chars().all(|c| c == '0') && !cap_eff.is_empty() {
            Err(format!("CapEff {cap_eff}"))
        } else {
            Ok(format!("CapEff {cap_eff}"))
        },
    );
    if let Some(path) = secret {
        report(
            "a root-only file",
            std::fs::read(&path)
                .map(|b| format!("read {} bytes", b.len()))
                .map_err(|e| e.to_string()),
        );
    }
    if open == 0 {
        println!("RESULT PASS every way out was blocked");
    } else {
        println!("RESULT FAIL {open} ways out were open");
        std::process::exit(1);
    }
}
