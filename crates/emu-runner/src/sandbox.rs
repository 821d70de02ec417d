//! The domain sandbox: what keeps a domain process from reaching another domain's memory by
//! any OS means, not only by the runner's good behaviour.
//!
//! Every domain's memory (its `shared_info` and channel page, and each shared region) is a
//! memfd. The runner hands a domain exactly its own; but a process can also reach another
//! process's descriptors through `/proc/<pid>/fd`, its memory through `/proc/<pid>/mem`,
//! `ptrace` or `process_vm_readv`, and stop it with a signal. So each domain program is
//! started through the launcher (`staticbus-sandbox`, this module's [`launcher_main`]),
//! which, before `execve`:
//!
//! 1. when the runner is root, drops to a uid and gid of the domain's own (`uid_base +
//!    domid`), with no supplementary groups;
//! 2. enters new user, pid, mount, network, IPC and UTS namespaces, mapping only that uid;
//! 3. forks the namespace's init, which mounts a fresh `/proc` that shows only the
//!    namespace's processes, covers every cgroup2 mount with an empty tmpfs (so that a
//!    domain cannot change its own cgroup's limits where the runner's cgroup is delegated
//!    to the runner's user, whose uid the domain shares) (the runner, the launchers and the other domains do not exist
//!    there), dies with the launcher (`PR_SET_PDEATHSIG`), and forks the domain program as
//!    pid 2, whose wait status it reports back so that the launcher ends the same way;
//! 4. drops every capability (bounding set, ambient set, securebits locked so that even
//!    uid 0 of its namespace gains none at `execve`), sets the domain's resource limits
//!    ([`rlimits`]; `RLIMIT_NPROC` here, inside the user namespace, counts only this
//!    domain's processes) and sets `PR_SET_NO_NEW_PRIVS`;
//! 5. installs a seccomp filter ([`DENIED`]) that refuses with `EPERM` what a domain never
//!    needs: tracing and reading other processes (`ptrace`, `process_vm_readv/writev`,
//!    `kcmp`, `pidfd_getfd`, `pidfd_open`), new namespaces and mounts, kernel modules,
//!    keyrings, `bpf`, `perf_event_open`, reboot and friends.
//!
//! The runner itself is made non-dumpable ([`protect_runner`]), so processes of its uid
//! outside the sandbox cannot open its `/proc` entries either. What the sandbox needs from
//! the machine is checked before a run ([`check`]); `staticbus run --no-sandbox` runs domains
//! without it, for debugging, and says so.

pub use staticbus_config::model::Limits;
use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The file name of the launcher (built next to `staticbus` by `cargo build --workspace`).
pub const LAUNCHER: &str = "staticbus-sandbox";

/// The first uid (and gid) of domain processes when the runner is root: a domain runs as
/// `UID_BASE + domid`.
pub const UID_BASE: u32 = 2_000_000;

/// How domains are sandboxed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The launcher executable.
    pub launcher: PathBuf,
    /// First uid/gid for domains when the runner is root (`None`: keep the runner's uid).
    pub uid_base: Option<u32>,
}

impl Sandbox {
    /// The launcher next to the running executable, with [`UID_BASE`] when root.
    pub fn next_to_current_exe() -> Result<Sandbox, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        Ok(Sandbox {
            launcher: dir.join(LAUNCHER),
            uid_base: is_root().then_some(UID_BASE),
        })
    }

    /// The uid/gid domain `domid` runs as, if the launcher changes it.
    pub fn uid_for(&self, domid: u16) -> Option<u32> {
        self.uid_base.map(|b| b + u32::from(domid))
    }

    /// The launcher's arguments for running `program args…` as domain `domid`, under
    /// `limits`.
    pub fn args(
        &self,
        domid: u16,
        limits: &Limits,
        program: &Path,
        args: &[String],
    ) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if let Some(u) = self.uid_for(domid) {
            v.push("--uid".into());
            v.push(u.to_string().into());
        }
        for r in rlimits(limits, true) {
            v.push("--rlimit".into());
            v.push(format!("{}={}", r.name, r.value).into());
        }
        v.push("--".into());
        v.push(program.as_os_str().to_owned());
        v.extend(args.iter().map(OsString::from));
        v
    }
}

/// One resource limit a domain's processes get before `execve` (soft and hard limit alike,
/// so that the domain cannot raise it again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_…`.
    pub resource: libc::__rlimit_resource_t,
    /// Its name on the launcher's command line (`data`, `nproc`, …).
    pub name: &'static str,
    /// The limit.
    pub value: u64,
}

/// The resource limits that carry `limits` out: private memory per process
/// (`RLIMIT_DATA`), descriptors (`RLIMIT_NOFILE`), file size (`RLIMIT_FSIZE`), no core
/// dumps (`RLIMIT_CORE` 0) and, when `per_domain_uid` (in the sandbox, where each domain
/// is alone in its own user namespace, so the kernel counts its processes apart from every
/// other's), processes and threads (`RLIMIT_NPROC`). Without the sandbox the domains share
/// the runner's uid, whose count covers them all, so `RLIMIT_NPROC` would bound the wrong
/// thing and is left out.
pub fn rlimits(limits: &Limits, per_domain_uid: bool) -> Vec<Rlimit> {
    let mut v = vec![
        Rlimit {
            resource: libc::RLIMIT_DATA,
            name: "data",
            value: limits.memory,
        },
        Rlimit {
            resource: libc::RLIMIT_NOFILE,
            name: "nofile",
            value: limits.files,
        },
        Rlimit {
            resource: libc::RLIMIT_FSIZE,
            name: "fsize",
            value: limits.file_size,
        },
        Rlimit {
            resource: libc::RLIMIT_CORE,
            name: "core",
            value: 0,
        },
    ];
    if per_domain_uid {
        v.push(Rlimit {
            resource: libc::RLIMIT_NPROC,
            name: "nproc",
            value: limits.processes,
        });
    }
    v
}

/// Sets every limit of `list` (lowered to the hard limit this process already has, which
/// it cannot raise); the `errno` of a failure. Async-signal-safe (two system calls per
/// limit, no allocation), for use between `fork` and `execve`.
pub fn apply_rlimits(list: &[Rlimit]) -> Result<(), i32> {
    for r in list {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into a live local.
        if unsafe { libc::getrlimit(r.resource, &mut cur) } != 0 {
            return Err(errno());
        }
        let v = r.value.min(cur.rlim_max);
        let new = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: setrlimit reads one `rlimit` from a live local.
        if unsafe { libc::setrlimit(r.resource, &new) } != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The launcher's `--rlimit NAME=VALUE`.
fn parse_rlimit(arg: &str) -> Option<Rlimit> {
    let (name, value) = arg.split_once('=')?;
    let value: u64 = value.parse().ok()?;
    let all = rlimits(&Limits::DEFAULT, true);
    let r = all.iter().find(|r| r.name == name)?;
    Some(Rlimit { value, ..*r })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Checks that this machine can sandbox domains and that `sandbox`'s launcher exists; the
/// error says what is missing and how to get it.
pub fn check(sandbox: &Sandbox) -> Result<(), String> {
    if !sandbox.launcher.is_file() {
        return Err(format!(
            "the domain sandbox launcher {} is missing (`cargo build --workspace` builds it next \
             to `staticbus`); or run without the sandbox: --no-sandbox",
            sandbox.launcher.display()
        ));
    }
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(
            "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0); the domain \
             sandbox needs them: `sysctl user.max_user_namespaces=10000`, or --no-sandbox"
                .into(),
        );
    }
    if !is_root() && read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); \
             enable them, run as root, or pass --no-sandbox"
                .into(),
        );
    }
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments; it only reads the caller's mode.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP) } < 0 {
        return Err("this kernel has no seccomp (CONFIG_SECCOMP); pass --no-sandbox".into());
    }
    Ok(())
}

/// Checks that a domain running as `uid` can execute `program` (every folder on the way
/// searchable and the file executable by "others" when the uid is not the owner's).
pub fn check_reachable(program: &Path, uid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some(uid) = uid else { return Ok(()) };
    let full = std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let mut p = Some(full.as_path());
    let mut is_file = true;
    while let Some(cur) = p {
        let md = std::fs::metadata(cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        let need = 0o001; // x for others: search a folder, execute the file
        let ok = md.uid() == uid || md.mode() & need != 0;
        if !ok {
            return Err(format!(
                "the sandbox runs this domain as uid {uid}, which cannot {} {}; make it \
                 accessible (chmod o+x) or pass --no-sandbox",
                if is_file { "execute" } else { "enter" },
                cur.display()
            ));
        }
        is_file = false;
        p = cur.parent();
    }
    Ok(())
}

/// Makes the runner non-dumpable: processes of its uid cannot ptrace it or open its
/// `/proc/<pid>/{fd,mem,…}` (root outside the sandbox still can).
pub fn protect_runner() {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
}

/// A syscall the filter refuses, with why.
#[derive(Clone, Copy, Debug)]
pub struct Denied {
    /// The syscall number on this architecture.
    pub nr: i64,
    /// Its name.
    pub name: &'static str,
}

macro_rules! denied {
    ($($name:ident),* $(,)?) => {
        &[$(Denied { nr: libc::$name as i64, name: stringify!($name) }),*]
    };
}

/// What a domain never needs: reading or controlling other processes, new namespaces and
/// mounts, the kernel's own state. Every one returns `EPERM` in the sandbox.
pub const DENIED: &[Denied] = denied![
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_kcmp,
    SYS_pidfd_open,
    SYS_pidfd_getfd,
    SYS_pidfd_send_signal,
    SYS_perf_event_open,
    SYS_bpf,
    SYS_userfaultfd,
    SYS_unshare,
    SYS_setns,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_fsopen,
    SYS_fsmount,
    SYS_fspick,
    SYS_move_mount,
    SYS_open_tree,
    SYS_mount_setattr,
    SYS_open_by_handle_at,
    SYS_name_to_handle_at,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_kexec_load,
    SYS_kexec_file_load,
    SYS_reboot,
    SYS_swapon,
    SYS_swapoff,
    SYS_acct,
    SYS_quotactl,
    SYS_personality,
];

/// Namespace flags a `clone` may not ask for inside the sandbox.
const CLONE_NS_FLAGS: [i32; 7] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// The seccomp programs: [`DENIED`] and `clone` with a namespace flag refused with `EPERM`,
/// and `clone3` answered `ENOSYS` (its flags are in memory a filter cannot read), so that
/// libc falls back to `clone`, whose flags the first program sees. The kernel runs both.
pub fn filters() -> Result<[seccompiler::BpfProgram; 2], String> {
    use seccompiler::{
        BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
        SeccompFilter, SeccompRule,
    };
    use std::collections::BTreeMap;
    let err = |e: &dyn std::fmt::Display| format!("seccomp filter: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|d| (d.nr, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for f in CLONE_NS_FLAGS {
        let flag = f as u64;
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| err(&e))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let program = |rules, errno: i32| -> Result<BpfProgram, String> {
        let f = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            ARCH,
        )
        .map_err(|e| err(&e))?;
        f.try_into().map_err(|e: BackendError| err(&e))
    };
    Ok([
        program(rules, libc::EPERM)?,
        program(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            libc::ENOSYS,
        )?,
    ])
}

/// Exits the launcher with a message (before the domain program runs).
fn die(what: &str) -> ! {
    eprintln!("staticbus-sandbox: {what}");
    std::process::exit(126)
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}

/// Drops every capability for good: bounding set, ambient set, the three sets, and the
/// securebits that would give uid 0 its capabilities back at `execve`.
fn drop_capabilities() -> Result<(), String> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) } != 0 {
            return Err(last_os_error("PR_CAPBSET_DROP"));
        }
    }
    // SAFETY: integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(last_os_error("PR_CAP_AMBIENT_CLEAR_ALL"));
    }
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong) } != 0 {
        return Err(last_os_error("PR_SET_SECUREBITS"));
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version-3 header and two data words, both valid for the call.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) } != 0 {
        return Err(last_os_error("capset"));
    }
    Ok(())
}

fn install_filters() -> Result<(), String> {
    for p in filters()? {
        seccompiler::apply_filter(&p).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// pid 1 of the new pid namespace: mounts its `/proc`, starts the domain program as pid 2
/// ([`domain`]) and, when it ends, writes its wait status to `report` and exits. (The
/// program is not pid 1 itself: the kernel ignores signals to a namespace's init that it has
/// no handler for, so a domain that aborts or is killed would not end the way it should.)
fn ns_init(program: &CStr, argv: &[CString], limits: &[Rlimit], report: libc::c_int) -> ! {
    // SAFETY: integer arguments only. If the launcher dies, so does this namespace.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let root = c"/";
    let proc_ = c"/proc";
    let proc_type = c"proc";
    // SAFETY: NUL-terminated strings that live across the calls; null data pointers are
    // allowed by mount(2).
    unsafe {
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            die(&last_os_error("making the mount namespace private"));
        }
        if libc::mount(
            proc_type.as_ptr(),
            proc_.as_ptr(),
            proc_type.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            die(&last_os_error(
                "mounting /proc of the domain's pid namespace",
            ));
        }
    }
    hide_cgroups();
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die(&last_os_error("fork"));
    }
    if pid == 0 {
        domain(program, argv, limits);
    }
    let status = wait_for(pid);
    let bytes = status.to_ne_bytes();
    // SAFETY: writes 4 bytes from a live buffer to the report pipe.
    unsafe {
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
    }
    std::process::exit(0)
}

/// Covers every cgroup2 mount with an empty read-only tmpfs, so that no domain can reach
/// the cgroup files: where the runner's cgroup is delegated to its user, the domains (of
/// the same uid) could otherwise raise their own limits or leave their group.
fn hide_cgroups() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let tmpfs = c"tmpfs";
    let options = c"size=4k,mode=0555";
    for point in crate::cgroup::cgroup2_mounts(&mountinfo) {
        let Ok(p) = CString::new(point.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: NUL-terminated strings that live across the call.
        let r = unsafe {
            libc::mount(
                tmpfs.as_ptr(),
                p.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                options.as_ptr().cast(),
            )
        };
        if r != 0 {
            die(&last_os_error(&format!(
                "hiding the cgroup hierarchy at {}",
                point.display()
            )));
        }
    }
}

/// The domain program's process: no capabilities, no new privileges, the seccomp filters,
/// then `execve`. Never returns.
fn domain(program: &CStr, argv: &[CString], limits: &[Rlimit]) -> ! {
    if let Err(e) = drop_capabilities() {
        die(&e);
    }
    // Here, inside the user namespace, where RLIMIT_NPROC counts this domain's processes
    // only (set before `unshare`, it would bound the uid's processes outside too).
    if let Err(e) = apply_rlimits(limits) {
        die(&format!(
            "setting the domain's resource limits: {}",
            std::io::Error::from_raw_os_error(e)
        ));
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        die(&last_os_error("PR_SET_NO_NEW_PRIVS"));
    }
    if let Err(e) = install_filters() {
        die(&e);
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: `program` and every argument are NUL-terminated and outlive the call; the
    // array ends with a null pointer; the environment is the inherited one.
    unsafe {
        libc::execvp(program.as_ptr(), ptrs.as_ptr());
    }
    eprintln!(
        "staticbus-sandbox: cannot run {}: {}",
        program.to_string_lossy(),
        std::io::Error::last_os_error()
    );
    std::process::exit(127)
}

/// `waitpid` until `pid` has ended; its wait status.
fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            die(&last_os_error("waitpid"));
        }
    }
}

/// The launcher's `main`: `staticbus-sandbox [--uid N] [--rlimit NAME=N]… -- PROGRAM [ARGS…]` (see the module
/// documentation). Exits with the domain's status; a domain killed by a signal kills the
/// launcher with the same signal.
pub fn launcher_main() -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut uid: Option<u32> = None;
    let mut limits: Vec<Rlimit> = Vec::new();
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        match args[i].to_str() {
            Some("--rlimit") => {
                match args.get(i + 1).and_then(|v| v.to_str()).and_then(parse_rlimit) {
                    Some(r) => limits.push(r),
                    None => die("--rlimit needs NAME=NUMBER, NAME one of data, nofile, fsize, core, nproc"),
                }
                i += 2;
            }
            Some("--uid") => {
                uid = args
                    .get(i + 1)
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse().ok());
                if uid.is_none() {
                    die("--uid needs a number");
                }
                i += 2;
            }
            _ => die(&format!(
                "unknown argument {:?}; usage: staticbus-sandbox [--uid N] [--rlimit NAME=N]… -- PROGRAM [ARGS…]",
                args[i]
            )),
        }
    }
    let rest = args.get(i + 1..).unwrap_or(&[]);
    let Some(program) = rest.first() else {
        die("no program; usage: staticbus-sandbox [--uid N] [--rlimit NAME=N]… -- PROGRAM [ARGS…]")
    };
    let cstr = |s: &OsString| {
        CString::new(s.as_bytes()).unwrap_or_else(|_| die("an argument contains a NUL byte"))
    };
    let program_c = cstr(program);
    let argv: Vec<CString> = rest.iter().map(cstr).collect();

    // SAFETY: getppid takes no arguments.
    let runner = unsafe { libc::getppid() };
    if let Some(u) = uid {
        // SAFETY: plain integer syscalls; setgroups with size 0 takes no list.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(u, u, u) != 0
                || libc::setresuid(u, u, u) != 0
            {
                die(&last_os_error(&format!("dropping to uid {u}")));
            }
            // A uid change makes the process non-dumpable, which would make its own
            // /proc/self/uid_map unwritable below.
            libc::prctl(libc::PR_SET_DUMPABLE, 1);
        }
    }
    // Die with the runner (the runner set this before `execve`, but a uid change clears
    // it); if the runner is already gone, do not start the domain at all.
    // SAFETY: integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != runner {
            std::process::exit(137);
        }
    }
    let (outer_uid, outer_gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare takes flags only; this process is single-threaded here.
    if unsafe { libc::unshare(flags) } != 0 {
        die(&last_os_error("entering new namespaces (unshare)"));
    }
    for (path, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {outer_uid} 1")),
        ("/proc/self/gid_map", format!("0 {outer_gid} 1")),
    ] {
        if let Err(e) = write_file(path, &text) {
            die(&e);
        }
    }
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        die(&last_os_error("pipe"));
    }
    // SAFETY: the launcher is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die(&last_os_error("fork"));
    }
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(pipe[0]) };
        ns_init(&program_c, &argv, &limits, pipe[1]);
    }
    // SAFETY: closing our copy of the write end, so the read below ends when the
    // namespace's init does.
    unsafe { libc::close(pipe[1]) };
    let mut bytes = [0u8; 4];
    // SAFETY: reads at most 4 bytes into a live buffer.
    let n = unsafe { libc::read(pipe[0], bytes.as_mut_ptr().cast(), bytes.len()) };
    let init_status = wait_for(pid);
    if n != 4 {
        die(&format!(
            "the domain's namespace ended without a status (init wait status {init_status:#x})"
        ));
    }
    let status = libc::c_int::from_ne_bytes(bytes);
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restoring the default action and signalling ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        std::process::exit(128 + sig)
    }
    std::process::exit(libc::WEXITSTATUS(status))
}
