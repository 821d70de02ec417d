//! A hostile domain program for the resource-limit tests: it takes one resource without
//! bound until the kernel refuses, says what stopped it, and exits 3.
//!
//! `limits-probe fork|memory|files|file PATH`
//!
//! - `fork`: a fork bomb (every process forks again, without end);
//! - `memory`: allocates and touches 1 MiB after 1 MiB;
//! - `files`: opens `/dev/null` again and again;
//! - `file PATH`: writes 1 MiB after 1 MiB to the file PATH.
//!
//! It never runs unprotected: before it starts it checks that the resource limit that must
//! stop it is set and small (`RLIMIT_NPROC` at most 4096 and enforced, i.e. not uid 0 of
//! the machine and no capability; `RLIMIT_DATA` at most 4 GiB; `RLIMIT_NOFILE` at most
//! 65536; `RLIMIT_FSIZE` at most 1 GiB) and otherwise refuses (`RESULT FAIL refusing …`,
//! exit 2). It also stops by itself, limit or not, at 4096 processes, 8 GiB, 2^20
//! descriptors or 2 GiB written.

use std::io::{Error, Write};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

const USAGE: &str = "usage: limits-probe fork|memory|files|file PATH";

/// The most processes the fork bomb makes, limit or not.
const MAX_FORKS: u32 = 4096;
/// The most memory it takes, limit or not.
const MAX_MEMORY_MIB: usize = 8 << 10;
/// The most descriptors it opens, limit or not.
const MAX_FILES: usize = 1 << 20;
/// The most it writes, limit or not.
const MAX_WRITE_MIB: usize = 2 << 10;

fn refuse(why: &str) -> ! {
    println!("RESULT FAIL refusing to run unprotected: {why}");
    std::process::exit(2)
}

/// The soft limit of `resource`.
fn limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into a live local.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        refuse(&format!("getrlimit: {}", Error::last_os_error()));
    }
    r.rlim_cur
}

/// Refuses unless `resource`'s limit is at most `max`; returns it.
fn guard(resource: libc::__rlimit_resource_t, name: &str, max: u64) -> u64 {
    let v = limit(resource);
    if v == libc::RLIM_INFINITY || v > max {
        let shown = if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        };
        refuse(&format!(
            "{name} is {shown} (this probe needs at most {max})"
        ));
    }
    v
}

/// A field of `/proc/self/status`.
fn status_field(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// The kernel enforces `RLIMIT_NPROC` on this process: its real uid is not the machine's
/// uid 0 (which it exempts) and it has no capability (`CAP_SYS_RESOURCE` and
/// `CAP_SYS_ADMIN` exempt too).
fn nproc_enforced() -> Result<(), String> {
    // SAFETY: getuid takes no arguments.
    let uid = unsafe { libc::getuid() };
    let map = std::fs::read_to_string("/proc/self/uid_map").map_err(|e| e.to_string())?;
    let outer = map.lines().find_map(|l| {
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let &[inner, outer, count] = n.as_slice() else {
            return None;
        };
        (u64::from(uid) >= inner && u64::from(uid) < inner + count)
            .then(|| outer + (u64::from(uid) - inner))
    });
    match outer {
        Some(0) | None => {
            return Err("its real uid is the machine's root, which RLIMIT_NPROC exempts".into())
        }
        Some(_) => {}
    }
    let caps = status_field("CapEff:").unwrap_or_default();
    if u64::from_str_radix(&caps, 16) != Ok(0) {
        return Err(format!(
            "it has capabilities ({caps}), which exempt it from RLIMIT_NPROC"
        ));
    }
    Ok(())
}

fn contained(what: String) -> ! {
    println!("RESULT CONTAINED {what}");
    let _ = std::io::stdout().flush();
    std::process::exit(3)
}

fn fork_bomb() -> ! {
    let max = guard(libc::RLIMIT_NPROC, "RLIMIT_NPROC", u64::from(MAX_FORKS));
    if let Err(e) = nproc_enforced() {
        refuse(&e);
    }
    // One counter every process of the bomb shares, so the bomb stops at MAX_FORKS even if
    // no limit did.
    // SAFETY: an anonymous shared mapping of one page, checked below; nothing else aliases it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        refuse(&format!("mmap: {}", Error::last_os_error()));
    }
    // SAFETY: the page is mapped, zeroed, page-aligned and lives until every process of
    // the bomb exits; AtomicU32 has the layout of u32.
    let forks: &AtomicU32 = unsafe { &*page.cast::<AtomicU32>() };
    println!("fork bomb under RLIMIT_NPROC {max}");
    let _ = std::io::stdout().flush();
    let mut mine = 0u32;
    loop {
        if forks.fetch_add(1, SeqCst) >= MAX_FORKS {
            contained(format!(
                "stopped by itself at {MAX_FORKS} processes: nothing refused a fork"
            ));
        }
        // SAFETY: this program is single-threaded; the child runs only the loop below.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // A child forks too, for as long as it can, slowly once refused.
            loop {
                if forks.fetch_add(1, SeqCst) >= MAX_FORKS {
                    // The child waits to be killed.
                    loop {
                        // SAFETY: pause takes no arguments.
                        unsafe { libc::pause() };
                    }
                }
                // SAFETY: as above.
                if unsafe { libc::fork() } < 0 {
                    forks.fetch_sub(1, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        if pid < 0 {
            let e = Error::last_os_error();
            contained(format!(
                "fork refused ({e}) after {mine} forks of its own, {} in the whole domain",
                forks.load(SeqCst) - 1
            ));
        }
        mine += 1;
    }
}

fn memory() -> ! {
    let max = guard(libc::RLIMIT_DATA, "RLIMIT_DATA", 4 << 30);
    println!("allocating under RLIMIT_DATA {max}");
    let _ = std::io::stdout().flush();
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(MAX_MEMORY_MIB);
    while blocks.len() < MAX_MEMORY_MIB {
        let mut b: Vec<u8> = Vec::new();
        if let Err(e) = b.try_reserve_exact(1 << 20) {
            contained(format!(
                "allocation refused ({e}) after {} MiB",
                blocks.len()
            ));
        }
        // Touch every page, so that the memory is really taken.
        b.resize(1 << 20, 1);
        blocks.push(b);
    }
    contained(format!(
        "stopped by itself at {MAX_MEMORY_MIB} MiB: nothing refused an allocation"
    ))
}

fn files() -> ! {
    let max = guard(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", 65536);
    println!("opening under RLIMIT_NOFILE {max}");
    let mut open = Vec::new();
    while open.len() < MAX_FILES {
        match std::fs::File::open("/dev/null") {
            Ok(f) => open.push(f),
            Err(e) => contained(format!(
                "open refused ({e}) after {} descriptors",
                open.len()
            )),
        }
    }
    contained(format!(
        "stopped by itself at {MAX_FILES} descriptors: nothing refused an open"
    ))
}

fn file(path: &str) -> ! {
    let max = guard(libc::RLIMIT_FSIZE, "RLIMIT_FSIZE", 1 << 30);
    println!("writing {path} under RLIMIT_FSIZE {max}");
    let _ = std::io::stdout().flush();
    let mut f = std::fs::File::create(path).unwrap_or_else(|e| refuse(&format!("{path}: {e}")));
    let chunk = vec![7u8; 1 << 20];
    for mib in 0..MAX_WRITE_MIB {
        // Past the limit the kernel sends SIGXFSZ, which ends this process; were the
        // signal ignored, the write would fail with EFBIG instead.
        if let Err(e) = f.write_all(&chunk) {
            contained(format!("write refused ({e}) after {mib} MiB"));
        }
    }
    contained(format!(
        "stopped by itself at {MAX_WRITE_MIB} MiB: nothing refused a write"
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["fork"] => fork_bomb(),
        ["memory"] => memory(),
        ["files"] => files(),
        ["file", path] => file(path),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(64)
        }
    }
}
