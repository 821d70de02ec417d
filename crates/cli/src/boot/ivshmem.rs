//! `staticbus boot` for `[target] hypervisor = "qemu-ivshmem"`: one `qemu-system-aarch64`
//! VM per domain on the `virt` machine, no Xen, the domains' channels in the shared object
//! of QEMU's `ivshmem-doorbell` device, served by staticbus itself
//! (`staticbus-ivshmem-server`; docs/adr/0005-ivshmem-platform.md).
//!
//! 1. Builds the description (no board tree: nothing is merged into QEMU's) and writes
//!    the outputs (the manifests; the host tree too, unused here).
//! 2. Sizes the object (the next power of two holding the regions and the control page)
//!    and the vectors (the highest port + 1). What the platform requires of the layout
//!    (every region at one address in every member, inside the object minus its control
//!    page; every port a vector `1..MAX_VECTORS`) is the validator's (SB0901–SB0903),
//!    checked in step 1.
//! 3. Builds the images (the same way as for Xen; they link at `0x40200000`).
//! 4. Starts the server, one socket per domain with the domid as peer id, departures
//!    announced in the control page; starts every VM paused (`-S`), waits until each has
//!    joined and its QEMU has read every message the server sent it (the socket's
//!    unread count is 0), then lets them run (QMP `cont`): a ring to a peer QEMU does
//!    not know yet would be dropped.
//! 5. Shows each VM's console prefixed by its domain's name and decides: PASS when every
//!    domain printed `RESULT PASS`; otherwise FAIL once every domain printed its `RESULT`
//!    or its VM ended (so a survivor's own report of a peer that left is seen), or at the
//!    timeout. Only the VMs started here are stopped.

use super::images::images;
use super::qemu::Qemu;
use super::{setup, step, BootOptions, CargoDir, SetupError};
use crate::{report_human, write_atomic, write_outputs};
use staticbus_abi::ivshmem;
use staticbus_config::compile::{self, Options};
use staticbus_config::ivshmem::layout;
use staticbus_diag::Sources;
use staticbus_ivshmem_server::{Event as ServerEvent, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The VM every domain gets (plus `-m`).
const MACHINE: [&str; 4] = [
    "-machine",
    "virt,gic-version=2,highmem=off",
    "-cpu",
    "cortex-a57",
];
/// How long the VMs may take to connect to the server.
const JOIN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `staticbus boot` for a `qemu-ivshmem` system; returns the exit status.
pub(super) fn boot(file: &Path, base_dir: &Path, o: &BootOptions) -> Result<u8, SetupError> {
    // 1. The build.
    step(format!("staticbus build {} (qemu-ivshmem)", file.display()));
    let mut sources = Sources::new();
    let c = compile::check(&mut sources, file, &Options::default());
    if !c.diags.is_empty() {
        report_human(&sources, &c.diags);
    }
    if c.io_error {
        return Ok(2);
    }
    let Some(sys) = c.system else {
        return Ok(1);
    };
    if c.diags.has_errors() && !o.no_check {
        eprintln!("not booting: fix the errors above (or pass --no-check)");
        return Ok(1);
    }
    let out = match &o.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("staticbus-boot-{}", sys.name)),
    };
    std::fs::create_dir_all(&out)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", out.display())))?;
    let out = out
        .canonicalize()
        .map_err(|e| setup(format!("`{}`: {e}", out.display())))?;
    let files = compile::build_outputs(&sys, c.base);
    write_outputs(&out, &files)
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;

    // 2. The layout.
    let lay = layout(&sys);
    // 3. The images.
    let cargo_dir = CargoDir {
        explicit: o.workspace.clone(),
        desc_dir: base_dir.to_path_buf(),
    };
    let loads = images(&sys, base_dir, &cargo_dir, &out, &BTreeMap::new())?;
    let domains: Vec<_> = sys.domains.iter().filter(|d| !d.dom0).collect();
    let mut kernels = BTreeMap::new();
    for d in &domains {
        let k = d
            .modules
            .iter()
            .find(|m| m.kind == staticbus_config::model::ModuleKind::Kernel)
            .ok_or_else(|| setup(format!("domain `{}` has no kernel", d.name)))?;
        let file = loads
            .iter()
            .find(|l| l.domain == d.name && l.kind == k.kind)
            .map(|l| l.file.clone())
            .ok_or_else(|| setup(format!("no image for the kernel of `{}`", d.name)))?;
        kernels.insert(d.domid, (file, k.bootargs.clone().unwrap_or_default()));
    }

    // 4. The server and the VMs.
    let sock_dir = socket_dir()?;
    let mut server =
        Server::new(lay.object, lay.vectors).map_err(|e| setup(format!("ivshmem server: {e}")))?;
    server
        .announce_departures(
            lay.control_page(),
            ivshmem::LEFT_WORDS,
            ivshmem::LEFT_VECTOR as u16,
        )
        .map_err(|e| setup(format!("ivshmem server: {e}")))?;
    for d in &domains {
        server
            .listen(
                &sock_dir.path.join(format!("{}.sock", d.domid)),
                Some(d.domid),
            )
            .map_err(|e| setup(format!("ivshmem server: {e}")))?;
    }
    let server = server
        .spawn()
        .map_err(|e| setup(format!("ivshmem server: {e}")))?;
    step(format!(
        "{} VMs (qemu-ivshmem): shared object {:#x} bytes, {} vectors, sockets in {}, timeout {:.0}s",
        domains.len(),
        lay.object,
        lay.vectors,
        sock_dir.path.display(),
        o.timeout.as_secs_f64()
    ));

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, SeqCst));
    }
    let (tx, lines) = mpsc::channel::<(u16, Option<String>)>();
    let mut vms: BTreeMap<u16, Qemu> = BTreeMap::new();
    let mut cmdlines = String::new();
    let start = Instant::now();
    for d in &domains {
        let (image, bootargs) = &kernels[&d.domid];
        let mem = staticbus_config::ivshmem::vm_memory_mib(d);
        let qmp = sock_dir.path.join(format!("{}.qmp", d.domid));
        let mut args: Vec<String> = MACHINE.iter().map(|s| s.to_string()).collect();
        args.extend([
            "-m".into(),
            format!("{mem}M"),
            "-accel".into(),
            o.accel.clone(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-no-reboot".into(),
            "-S".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
            "-pidfile".into(),
            out.join(format!("qemu-{}.pid", d.name))
                .display()
                .to_string(),
            "-kernel".into(),
            image.display().to_string(),
            "-append".into(),
            bootargs.clone(),
            "-chardev".into(),
            format!(
                "socket,id=ivshmem,path={}",
                sock_dir.path.join(format!("{}.sock", d.domid)).display()
            ),
            "-device".into(),
            format!("ivshmem-doorbell,chardev=ivshmem,vectors={}", lay.vectors),
        ]);
        args.extend(o.qemu_args.iter().cloned());
        cmdlines.push_str(&format!("{}: {} {}\n", d.name, o.qemu, args.join(" ")));
        let err = std::fs::File::create(out.join(format!("qemu-{}.stderr", d.name)))
            .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
        let mut child = Command::new(&o.qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| setup(format!("cannot start {}: {e}", o.qemu)))?;
        let log = std::fs::File::create(out.join(format!("console-{}.log", d.name)))
            .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;
        spawn_reader(
            d.domid,
            child.stdout.take().expect("piped"),
            log,
            tx.clone(),
        );
        vms.insert(d.domid, Qemu(child));
    }
    drop(tx);
    write_atomic(&out.join("qemu.cmdline"), cmdlines.as_bytes())
        .map_err(|e| setup(format!("cannot write to `{}`: {e}", out.display())))?;

    let names: BTreeMap<u16, String> = domains.iter().map(|d| (d.domid, d.name.clone())).collect();
    let mut joined = BTreeSet::new();
    let join_end = Instant::now() + JOIN_LIMIT;
    while joined.len() < names.len() {
        let left = join_end.saturating_duration_since(Instant::now());
        match server
            .events()
            .recv_timeout(left.min(Duration::from_millis(200)))
        {
            Ok(ServerEvent::Joined { id, .. }) => {
                joined.insert(id);
            }
            Ok(other) => eprintln!("    ivshmem server: {other:?}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(setup("the ivshmem server stopped"));
            }
        }
        if stop.load(SeqCst) {
            return Ok(130);
        }
        if Instant::now() >= join_end
            || vms
                .values_mut()
                .any(|q| matches!(q.0.try_wait(), Ok(Some(_))))
        {
            let missing: Vec<&str> = names
                .iter()
                .filter(|(id, _)| !joined.contains(id))
                .map(|(_, n)| n.as_str())
                .collect();
            return Err(setup(format!(
                "not every VM connected to the ivshmem server (missing: {}); see {}/qemu-*.stderr",
                missing.join(", "),
                out.display()
            )));
        }
    }
    // QEMU reads its setup only up to its own first eventfd while it realizes the device;
    // its other eventfds and those of the peers that joined after it it reads from its
    // main loop (which runs while the VM is paused). A ring to a peer whose eventfds it
    // has not read is dropped, so no guest runs before every QEMU has read everything
    // (ADR 0005, start-up).
    let setup_read = Instant::now();
    if let Err(why) = wait_until_read(&server, &mut vms, &names, &stop) {
        if stop.load(SeqCst) {
            return Ok(130);
        }
        return Err(setup(format!("{why}; see {}/qemu-*.stderr", out.display())));
    }
    let setup_read = setup_read.elapsed();
    for d in &domains {
        cont(&sock_dir.path.join(format!("{}.qmp", d.domid)))
            .map_err(|e| setup(format!("QMP `cont` for `{}`: {e}", d.name)))?;
    }
    let run_start = Instant::now();

    // 5. The consoles.
    let width = names.values().map(String::len).max().unwrap_or(3).max(3);
    let mut results: BTreeMap<u16, String> = BTreeMap::new();
    let mut ended: BTreeSet<u16> = BTreeSet::new();
    let mut first_line: Option<Duration> = None;
    let deadline = start + o.timeout;
    let verdict = loop {
        if stop.load(SeqCst) {
            break Err("interrupted".to_string());
        }
        if Instant::now() >= deadline {
            let waiting: Vec<&str> = names
                .iter()
                .filter(|(id, _)| !results.contains_key(id))
                .map(|(_, n)| n.as_str())
                .collect();
            break Err(format!("timeout; no RESULT from {}", waiting.join(", ")));
        }
        if names
            .keys()
            .all(|id| results.contains_key(id) || ended.contains(id))
        {
            let failed: Vec<String> = names
                .iter()
                .filter_map(|(id, n)| match results.get(id) {
                    Some(r) if r.starts_with("RESULT PASS") => None,
                    Some(r) => Some(format!("{n}: {r}")),
                    None => Some(format!("{n}: its VM ended without a RESULT line")),
                })
                .collect();
            break if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            };
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok((id, Some(text))) => {
                first_line.get_or_insert_with(|| run_start.elapsed());
                println!("{:>width$} | {text}", names[&id]);
                if text.starts_with("RESULT PASS") || text.starts_with("RESULT FAIL") {
                    results.entry(id).or_insert(text);
                }
            }
            Ok((id, None)) => {
                ended.insert(id);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                ended.extend(names.keys().copied());
            }
        }
    };
    let elapsed = run_start.elapsed();
    let released = run_start.duration_since(start);
    drop(vms); // stops the VMs started here that are still running
    let _ = server.stop();
    let first = first_line.map_or("-".to_string(), |t| format!("{:.2}s", t.as_secs_f64()));
    let timing = format!(
        "QEMU start to VMs released {:.2}s (of which {:.1} ms waiting for every QEMU to \
         read its ivshmem setup); then to first guest line {first}, to the end {:.2}s; QEMU \
         start to the end {:.2}s (TCG emulation)",
        released.as_secs_f64(),
        setup_read.as_secs_f64() * 1e3,
        elapsed.as_secs_f64(),
        (released + elapsed).as_secs_f64()
    );
    let code = match verdict {
        Ok(()) => {
            eprintln!(
                "boot: PASS: all {} domains printed RESULT PASS; {timing}",
                names.len()
            );
            0
        }
        Err(why) if why == "interrupted" => {
            eprintln!("boot: interrupted; {timing}");
            130
        }
        Err(why) => {
            eprintln!("boot: FAIL: {why}; {timing}");
            1
        }
    };
    eprintln!(
        "work directory: {} (console-<domain>.log, qemu-<domain>.stderr, images/)",
        out.display()
    );
    Ok(code)
}

/// How long the VMs may take to read the rest of their ivshmem setup once all joined.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Waits until every VM's QEMU has read every message the server sent it
/// ([`staticbus_ivshmem_server::ServerHandle::unread`] is 0 for each), at most
/// [`READ_LIMIT`]; fails at once when a VM ends or leaves, or on Ctrl-C.
fn wait_until_read(
    server: &staticbus_ivshmem_server::ServerHandle,
    vms: &mut BTreeMap<u16, Qemu>,
    names: &BTreeMap<u16, String>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let end = Instant::now() + READ_LIMIT;
    let mut pause = Duration::from_micros(100);
    loop {
        let unread = server
            .unread()
            .map_err(|e| format!("ivshmem server: cannot ask what the VMs read: {e}"))?;
        let behind: Vec<String> = names
            .iter()
            .filter_map(|(id, n)| match unread.get(id) {
                None => Some(format!("{n} (disconnected)")),
                Some(0) => None,
                Some(b) => Some(format!("{n} ({b} bytes unread)")),
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if stop.load(SeqCst) {
            return Err("interrupted".into());
        }
        if let Some(id) = vms
            .iter_mut()
            .find_map(|(id, q)| matches!(q.0.try_wait(), Ok(Some(_))).then_some(id))
        {
            return Err(format!(
                "the VM of `{}` ended before it read its ivshmem setup",
                names[id]
            ));
        }
        if behind.iter().any(|b| b.ends_with("(disconnected)")) || Instant::now() >= end {
            return Err(format!(
                "not every VM read its ivshmem setup within {}s of connecting: {}",
                READ_LIMIT.as_secs(),
                behind.join(", ")
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// A private directory for the sockets (a UNIX socket path has at most 107 bytes, so not
/// under a long work directory), removed afterwards.
struct SocketDir {
    path: PathBuf,
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn socket_dir() -> Result<SocketDir, SetupError> {
    let path = std::env::temp_dir().join(format!("sbivs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir(&path)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", path.display())))?;
    Ok(SocketDir { path })
}

/// Reads one VM's console line by line (raw copy to `log`); `None` when it ends.
fn spawn_reader(
    id: u16,
    stdout: impl Read + Send + 'static,
    mut log: std::fs::File,
    tx: mpsc::Sender<(u16, Option<String>)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = log.write_all(&buf);
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send((id, Some(line))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send((id, None));
    });
}

/// QMP: capabilities, then `cont`.
fn cont(path: &Path) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..100 {
        match UnixStream::connect(path) {
            Ok(s) => {
                let s2 = s.try_clone()?;
                s.set_read_timeout(Some(Duration::from_secs(30)))?;
                let mut r = BufReader::new(s);
                let mut w = s2;
                let mut line = String::new();
                r.read_line(&mut line)?; // greeting
                for cmd in ["qmp_capabilities", "cont"] {
                    writeln!(w, "{{\"execute\":\"{cmd}\"}}")?;
                    loop {
                        line.clear();
                        if r.read_line(&mut line)? == 0 {
                            return Err(std::io::Error::other("QMP closed"));
                        }
                        if line.contains("\"return\"") {
                            break;
                        }
                        if line.contains("\"error\"") {
                            return Err(std::io::Error::other(line.trim().to_string()));
                        }
                    }
                }
                return Ok(());
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no QMP socket")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_config::ivshmem::{Layout, MIN_OBJECT};
    use staticbus_config::model::{Domain, EvtchnEnd, EvtchnPair, ShmNode, SourceKind, System};
    use staticbus_diag::Location;

    fn end(domain: usize, port: u32) -> EvtchnEnd {
        EvtchnEnd {
            domain,
            port,
            loc: Location::None,
            port_loc: Location::None,
        }
    }

    fn sys(regions: &[(&str, usize, u64, u64)], ports: &[(u32, u32)]) -> System {
        let mut s = System::new("t", SourceKind::Description);
        for (i, n) in ["a", "b"].iter().enumerate() {
            s.domains
                .push(Domain::new(*n, i as u16 + 1, Location::None));
        }
        for &(id, domain, guest, size) in regions {
            s.shm.push(ShmNode {
                domain,
                id: id.into(),
                id_loc: Location::None,
                host: None,
                guest,
                size,
                role: None,
                loc: Location::None,
                mem_loc: Location::None,
                role_loc: Location::None,
                channel: None,
            });
        }
        for &(p, q) in ports {
            s.evtchns.push(EvtchnPair {
                first: end(0, p),
                second: end(1, q),
                channel: None,
            });
        }
        s
    }

    #[test]
    fn sizes_the_object_and_the_vectors() {
        let base = ivshmem::SHM_BASE;
        let s = sys(
            &[
                ("q", 0, base, 0x1_0000),
                ("q", 1, base, 0x1_0000),
                ("r", 0, base + 0x1_0000, 0x1000),
            ],
            &[(1, 1), (2, 3)],
        );
        assert_eq!(
            layout(&s),
            Layout {
                object: MIN_OBJECT,
                vectors: 4
            }
        );
        // 1 MiB of regions: 2 MiB with the control page.
        assert_eq!(
            layout(&sys(&[("q", 0, base, 0x10_0000)], &[])).object,
            0x20_0000
        );
        // No channels: the smallest object, two vectors (the leave notice and one more).
        assert_eq!(
            layout(&sys(&[], &[])),
            Layout {
                object: MIN_OBJECT,
                vectors: 2
            }
        );
        // A layout the validator refuses still sizes without overflow.
        let l = layout(&sys(&[("q", 0, u64::MAX - 1, 0x1000)], &[(u32::MAX, 1)]));
        assert_eq!(l.object, ivshmem::SHM_MAX);
        assert_eq!(u32::from(l.vectors), ivshmem::MAX_VECTORS);
    }
}
