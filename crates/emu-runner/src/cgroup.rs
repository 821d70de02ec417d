//! One cgroup v2 per domain, where the runner may write a cgroup v2 subtree: the bounds
//! resource limits cannot give (the memory, processes and CPU of the whole domain, every
//! process it forks included) and a kill that reaches every one of its processes, even one
//! that left its process group.
//!
//! At the start of a run ([`Cgroups::setup`]) the runner finds its own cgroup (`0::PATH` of
//! `/proc/self/cgroup`) on the cgroup2 mount (`/proc/self/mountinfo`). It uses it only if
//! it may write there (its own cgroup's folder and `cgroup.procs`, as root or after
//! systemd's `Delegate=yes`). It makes `staticbus-PID-N` in it (the run) and one group per
//! domain below (`d1-NAME`, …), enables what it can of the `memory`, `pids` and `cpu`
//! controllers (`cgroup.subtree_control`; when its own cgroup holds only the runner, which
//! cgroup v2's "no internal processes" rule forbids for a group with controllers below,
//! it first moves itself into a leaf `staticbus-PID-runner`), and writes each domain's
//! `memory.max` (and `memory.swap.max` 0), `pids.max` and `cpu.max`. A domain's process
//! joins its group between `fork` and `execve`, so everything it starts is in it. Stopping a
//! domain writes `cgroup.kill` (or, before Linux 5.14, kills every pid of `cgroup.procs`).
//! The groups are removed at the end of the run.
//!
//! What cannot be enforced is said once, in [`Cgroups::note`]: no cgroup2 mount, a cgroup
//! the runner may not write, a controller the hierarchy does not offer (on a machine with
//! cgroup v1 controllers, the v2 hierarchy has none of them).

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The controllers a domain's limits use.
pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The cgroups of one run.
#[derive(Debug)]
pub struct Cgroups {
    /// The run's group (`…/staticbus-PID-N`, the process's Nth run).
    pub run: PathBuf,
    /// The controllers enabled for the domains' groups (a subset of [`CONTROLLERS`]).
    pub controllers: Vec<&'static str>,
    /// What is not enforced, and why (`None`: everything is).
    pub note: Option<String>,
    /// The runner moved itself into this leaf (removed when the run ends, if it can be).
    moved_to: Option<PathBuf>,
}

/// One domain's group.
#[derive(Debug, Clone)]
pub struct DomainGroup {
    /// Its folder.
    pub dir: PathBuf,
    /// `DIR/cgroup.procs`, for joining it between `fork` and `execve`.
    procs: CString,
    /// Counts of `memory.events` `oom_kill` and `pids.events` `max` already reported.
    seen: (u64, u64),
}

/// Where cgroup v2 is mounted, from the text of `/proc/self/mountinfo`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(point)))
    })
}

/// The mount points of every cgroup2 mount (the sandbox hides each of them).
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(unescape(point)))
        })
        .collect()
}

/// `\040` and friends of mountinfo's paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4);
        if b[i] == b'\\' && digits.is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c))) {
            let d = digits.unwrap_or_default();
            out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's cgroup v2 path (`0::PATH`), from the text of `/proc/self/cgroup`.
pub fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

fn writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access reads a NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn write(p: &Path, text: &str) -> Result<(), String> {
    std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Why the domains' memory, processes and CPU are bounded only by resource limits.
fn unenforced(why: &str) -> String {
    format!(
        "note: {why}; so a domain's memory and processes are bounded only per process, by \
         resource limits, and `cpu` limits not at all (docs/emulator.md#resource-limits)"
    )
}

impl Cgroups {
    /// Sets up the run's cgroup in this process's own cgroup, if it may; `Err` says why
    /// not (a note for the user, not an error of the run).
    pub fn setup() -> Result<Cgroups, String> {
        let dir = Cgroups::locate()?;
        Cgroups::setup_in(&dir, std::process::id())
    }

    /// The cgroup folder the runs of this process go in (its own cgroup, or the one it
    /// moved itself out of) if this process may write it; changes nothing.
    pub fn locate() -> Result<PathBuf, String> {
        let mount = cgroup2_mount(&read(Path::new("/proc/self/mountinfo")))
            .ok_or_else(|| unenforced("there is no cgroup v2 hierarchy (cgroup2 mount)"))?;
        let own = own_cgroup(&read(Path::new("/proc/self/cgroup")))
            .ok_or_else(|| unenforced("this process is in no cgroup v2 (/proc/self/cgroup)"))?;
        let own = own.trim_start_matches('/');
        let mut dir = if own.is_empty() {
            mount
        } else {
            mount.join(own)
        };
        // An earlier run of this process moved it into a leaf of its own.
        let leaf = format!("staticbus-{}-runner", std::process::id());
        if dir.file_name().is_some_and(|n| n == leaf.as_str()) {
            if let Some(p) = dir.parent() {
                dir = p.to_path_buf();
            }
        }
        if !writable(&dir) || !writable(&dir.join("cgroup.procs")) {
            return Err(unenforced(&format!(
                "the runner may not write its cgroup {} (run it as root, or in a cgroup \
                 delegated to its user: `systemd-run --user --scope -p Delegate=yes staticbus \
                 run …`)",
                dir.display()
            )));
        }
        Ok(dir)
    }

    /// [`Cgroups::setup`] in the cgroup folder `dir`, for the runner of pid `pid`.
    pub fn setup_in(dir: &Path, pid: u32) -> Result<Cgroups, String> {
        if !writable(dir) || !writable(&dir.join("cgroup.procs")) {
            return Err(unenforced(&format!(
                "the runner may not write its cgroup {} (run it as root, or in a cgroup \
                 delegated to its user: `systemd-run --user --scope -p Delegate=yes staticbus \
                 run …`)",
                dir.display()
            )));
        }
        let offered = read(&dir.join("cgroup.controllers"));
        let offered: Vec<&'static str> = CONTROLLERS
            .into_iter()
            .filter(|c| offered.split_whitespace().any(|o| o == *c))
            .collect();
        let mut moved_to = None;
        let mut enabled: Vec<&'static str> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        if !offered.is_empty() {
            let enable = |d: &Path| {
                let text: Vec<String> = offered.iter().map(|c| format!("+{c}")).collect();
                write(&d.join("cgroup.subtree_control"), &text.join(" "))
            };
            if enable(dir).is_err() {
                // cgroup v2 lets no group with controllers below hold processes (but the
                // root): when the runner is alone in its group, it moves itself out of it.
                let procs = read(&dir.join("cgroup.procs"));
                let alone = procs.split_whitespace().all(|p| p == pid.to_string());
                if alone && !procs.trim().is_empty() {
                    let leaf = dir.join(format!("staticbus-{pid}-runner"));
                    let _ = std::fs::create_dir(&leaf);
                    if write(&leaf.join("cgroup.procs"), &pid.to_string()).is_ok() {
                        moved_to = Some(leaf);
                    }
                }
                if let Err(e) = enable(dir) {
                    problems.push(format!(
                        "the runner cannot enable the {} controller(s) below its cgroup ({e}); \
                         its cgroup holds other processes: start `staticbus run` in a cgroup of \
                         its own",
                        offered.join(", ")
                    ));
                }
            }
        }
        // Several runs may go on at once in one process (the library's tests do).
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run = dir.join(format!("staticbus-{pid}-{n}"));
        std::fs::create_dir(&run)
            .map_err(|e| unenforced(&format!("cannot create the cgroup {}: {e}", run.display())))?;
        if problems.is_empty() && !offered.is_empty() {
            let text: Vec<String> = offered.iter().map(|c| format!("+{c}")).collect();
            match write(&run.join("cgroup.subtree_control"), &text.join(" ")) {
                Ok(()) => enabled = offered.clone(),
                Err(e) => problems.push(format!("cannot enable the controllers: {e}")),
            }
        }
        let missing: Vec<&str> = CONTROLLERS
            .into_iter()
            .filter(|c| !enabled.contains(c))
            .collect();
        let note = (!missing.is_empty()).then(|| {
            let why = if problems.is_empty() {
                format!(
                    "the cgroup v2 hierarchy at {} offers no {} controller (a cgroup v1 \
                     hierarchy may hold them)",
                    dir.display(),
                    missing.join(" or ")
                )
            } else {
                problems.join("; ")
            };
            let what: Vec<&str> = missing
                .iter()
                .map(|c| match *c {
                    "memory" => "a domain's total memory (per process only, RLIMIT_DATA)",
                    "pids" => "its processes beyond RLIMIT_NPROC",
                    _ => "its CPU (`cpu` is ignored)",
                })
                .collect();
            format!(
                "note: {why}: not enforced: {}; the domains' cgroups still let every domain's \
                 processes be killed together (docs/emulator.md#resource-limits)",
                what.join(", ")
            )
        });
        Ok(Cgroups {
            run,
            controllers: enabled,
            note,
            moved_to,
        })
    }

    /// Creates domain `domid`'s group and writes its limits.
    pub fn domain(
        &self,
        domid: u16,
        name: &str,
        limits: &crate::Limits,
    ) -> Result<DomainGroup, String> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = self.run.join(format!("d{domid}-{safe}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        for (file, value) in limit_files(limits, &self.controllers) {
            let p = dir.join(file);
            // memory.swap.max exists only with swap accounting.
            if file == "memory.swap.max" && !p.exists() {
                continue;
            }
            write(&p, &value)?;
        }
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: a NUL byte in the path", dir.display()))?;
        Ok(DomainGroup {
            dir,
            procs,
            seen: (0, 0),
        })
    }

    /// Kills what is left, removes every group the run made (waiting up to 2 s for them to
    /// empty).
    pub fn remove(&self, groups: &[DomainGroup]) {
        let start = std::time::Instant::now();
        for g in groups {
            g.kill();
            while std::fs::remove_dir(&g.dir).is_err()
                && g.dir.exists()
                && start.elapsed() < std::time::Duration::from_secs(2)
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir(&self.run);
        // A leaf the runner moved itself into stays until the runner has exited (a
        // process cannot remove the cgroup it is in).
    }

    /// The leaf the runner moved itself into, if it did.
    pub fn runner_leaf(&self) -> Option<&Path> {
        self.moved_to.as_deref()
    }
}

/// The interface files and values that carry out `limits` with `controllers` enabled.
pub fn limit_files(limits: &crate::Limits, controllers: &[&str]) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    if controllers.contains(&"memory") {
        v.push(("memory.max", limits.memory.to_string()));
        // Bounded memory must not spill into swap, which would be unbounded.
        v.push(("memory.swap.max", "0".to_string()));
    }
    if controllers.contains(&"pids") {
        v.push(("pids.max", limits.processes.to_string()));
    }
    if controllers.contains(&"cpu") {
        let max = match limits.cpu_quota_us {
            Some(q) => format!("{q} {}", crate::Limits::CPU_PERIOD_US),
            None => format!("max {}", crate::Limits::CPU_PERIOD_US),
        };
        v.push(("cpu.max", max));
    }
    v
}

/// A `key value` line of an `*.events` file.
fn event(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

impl DomainGroup {
    /// Moves the calling process into this group. Async-signal-safe (open, write, close),
    /// for use between `fork` and `execve`; the `errno` of a failure.
    pub fn join_self(&self) -> Result<(), i32> {
        // SAFETY: a NUL-terminated path that lives across the call.
        let fd = unsafe { libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // "0" moves the writing process itself.
        // SAFETY: writes one byte from a static buffer to the descriptor just opened.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: closes the descriptor this function opened.
        unsafe { libc::close(fd) };
        if n == 1 {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// Kills every process in the group: `cgroup.kill` where the kernel has it (5.14+),
    /// otherwise `SIGKILL` to every pid of `cgroup.procs` (again, until it is empty or 100
    /// rounds have passed, since a fork bomb keeps adding).
    pub fn kill(&self) {
        if std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..100 {
            let procs = read(&self.dir.join("cgroup.procs"));
            let pids: Vec<i32> = procs
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                // SAFETY: kill takes integers; a pid that is gone gives ESRCH.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }

    /// What the kernel did to the domain at its cgroup limits since the last call: OOM
    /// kills at `memory.max`, forks refused at `pids.max`; `None` if nothing.
    pub fn events(&mut self, limits: &crate::Limits) -> Option<String> {
        let oom = event(&read(&self.dir.join("memory.events")), "oom_kill");
        let pids = event(&read(&self.dir.join("pids.events")), "max");
        let (new_oom, new_pids) = (oom - self.seen.0.min(oom), pids - self.seen.1.min(pids));
        self.seen = (oom, pids);
        let mut v = Vec::new();
        if new_oom > 0 {
            v.push(format!(
                "the OOM killer killed {new_oom} of its processes at its memory limit ({} bytes, memory.max)",
                limits.memory
            ));
        }
        if new_pids > 0 {
            v.push(format!(
                "{new_pids} fork(s) refused at its process limit ({}, pids.max)",
                limits.processes
            ));
        }
        (!v.is_empty()).then(|| v.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn the_mount_and_the_own_cgroup_are_found() {
        let mi = "25 1 0:23 / /sys rw - sysfs sysfs rw\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  43 31 0:40 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mounts(mi),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/mnt/with space")
            ]
        );
        assert_eq!(cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/sda rw"), None);
        let pc = "4:memory:/process_api/x\n0::/user.slice/user-1000.slice/app.scope\n";
        assert_eq!(
            own_cgroup(pc).as_deref(),
            Some("/user.slice/user-1000.slice/app.scope")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn limits_become_the_controllers_files() {
        let l = Limits {
            memory: 64 << 20,
            processes: 16,
            cpu_quota_us: Some(50_000),
            ..Limits::DEFAULT
        };
        assert_eq!(
            limit_files(&l, &CONTROLLERS),
            [
                ("memory.max", "67108864".to_string()),
                ("memory.swap.max", "0".to_string()),
                ("pids.max", "16".to_string()),
                ("cpu.max", "50000 100000".to_string()),
            ]
        );
        assert_eq!(
            limit_files(&Limits::DEFAULT, &["cpu"]),
            [("cpu.max", "max 100000".to_string())]
        );
        assert!(limit_files(&l, &[]).is_empty());
    }

    /// A folder laid out like a delegated cgroup (plain files stand in for the kernel's:
    /// this checks what is written where, not what the kernel does with it).
    fn fake_cgroup(controllers: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(d.path().join("cgroup.procs"), "").unwrap();
        d
    }

    #[test]
    fn a_delegated_cgroup_gets_one_group_per_domain_with_its_limits() {
        let d = fake_cgroup("cpuset cpu io memory pids");
        let cg = Cgroups::setup_in(d.path(), 4242).unwrap();
        assert_eq!(cg.controllers, CONTROLLERS);
        assert_eq!(cg.note, None);
        let run = cg.run.file_name().unwrap().to_string_lossy().into_owned();
        assert!(run.starts_with("staticbus-4242-"), "{run}");
        // A second run of the same process at the same time gets a group of its own.
        let other = Cgroups::setup_in(d.path(), 4242).unwrap();
        assert_ne!(other.run, cg.run);
        assert_eq!(
            read(&d.path().join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(
            read(&cg.run.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        let l = Limits {
            memory: 32 << 20,
            processes: 8,
            cpu_quota_us: Some(25_000),
            ..Limits::DEFAULT
        };
        let mut g = cg.domain(3, "hog.1", &l).unwrap();
        assert_eq!(g.dir, cg.run.join("d3-hog_1"));
        assert_eq!(read(&g.dir.join("memory.max")), "33554432");
        assert_eq!(read(&g.dir.join("pids.max")), "8");
        assert_eq!(read(&g.dir.join("cpu.max")), "25000 100000");
        // No swap accounting here: memory.swap.max is not made up.
        assert!(!g.dir.join("memory.swap.max").exists());
        // The kernel's counters become the domain's reason, once.
        std::fs::write(
            g.dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(g.dir.join("pids.events"), "max 5\n").unwrap();
        let why = g.events(&l).unwrap();
        assert!(
            why.contains("the OOM killer killed 1 of its processes"),
            "{why}"
        );
        assert!(
            why.contains("5 fork(s) refused at its process limit (8, pids.max)"),
            "{why}"
        );
        assert_eq!(g.events(&l), None);
        // The kill goes through cgroup.kill.
        g.kill();
        assert_eq!(read(&g.dir.join("cgroup.kill")), "1");
    }

    #[test]
    fn without_controllers_the_groups_still_exist_and_the_note_says_what_is_missing() {
        let d = fake_cgroup("hugetlb");
        let cg = Cgroups::setup_in(d.path(), 7).unwrap();
        assert!(cg.controllers.is_empty());
        let note = cg.note.clone().unwrap();
        assert!(
            note.contains("offers no memory or pids or cpu controller"),
            "{note}"
        );
        assert!(note.contains("`cpu` is ignored"), "{note}");
        let g = cg.domain(1, "a", &Limits::DEFAULT).unwrap();
        assert!(g.dir.is_dir());
        assert!(!g.dir.join("memory.max").exists());
    }

    #[test]
    fn a_cgroup_the_runner_may_not_write_is_not_used() {
        if rustix::process::geteuid().is_root() {
            // Root may write anything; the case is the users' one.
            eprintln!("skipped: root may write every folder");
            return;
        }
        let d = fake_cgroup("memory pids cpu");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let e = Cgroups::setup_in(d.path(), 1).unwrap_err();
        assert!(e.contains("may not write its cgroup"), "{e}");
    }
}
