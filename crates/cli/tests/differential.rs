//! The differential corpus: for every diagnostic code whose documentation names what Xen
//! does at boot, one tree `staticbus check` rejects is booted on the real Xen that code
//! concerns, and Xen must behave as `staticbus explain CODE` says.
//!
//! To keep CI in budget the cases are grouped by base: each base description
//! (`tests/xen/differential/base-<version>.toml`) is built and booted once as it is (the
//! accepted counterpart: every guest passes), and every case is one text mutation of the
//! host tree that boot generated, compiled with dtc and booted with the same images and
//! QEMU command line (one QEMU run, ~3 s, per case). For each case:
//!
//! 1. `staticbus check` reports the case's code on the mutated tree;
//! 2. on the console, Xen does what the code's documentation says: one of the messages
//!    quoted there appears; or, when it says Xen "prints nothing", the console stays empty;
//!    or, when it quotes nothing, Xen accepts the tree (no panic, its init memory freed).
//!
//! Needs qemu-system-aarch64, dtc and the cached Xen binaries (see `common`);
//! `STATICBUS_XEN_TESTS=1` turns a missing piece into a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::xen;

/// One emulated machine at a time on a 2-core host.
static BOOTS: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn staticbus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run staticbus")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One mutation of a base's host tree: each `(from, to)` replaces the one occurrence of
/// `from` (which must occur exactly once).
struct Case {
    code: &'static str,
    edits: &'static [(&'static str, &'static str)],
}

/// A mutation too repetitive to write out: a function of the base's host tree.
struct GenCase {
    code: &'static str,
    mutate: fn(&str) -> String,
}

/// 29 ramdisk modules more in ping: with ping's kernel that is 30, all Xen has room for
/// besides its own image and the host DTB, so pong's kernel is dropped.
fn thirty_one_modules(base: &str) -> String {
    let extra: String = (0..29)
        .map(|i| {
            let addr = 0x5000_0000u32 + i * 0x1_0000;
            format!(
                "\n\t\t\tmodule@{addr:x} {{\n\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n\t\t\t\treg = <0x00 {addr:#x} 0x00 0x1000>;\n\t\t\t}};\n"
            )
        })
        .collect();
    assert_eq!(base.matches(PING_EC1_END).count(), 1);
    base.replacen(PING_EC1_END, &format!("{PING_EC1_END}{extra}"), 1)
}

const GEN_CASES_4_17: &[GenCase] = &[GenCase {
    code: "SB0411",
    mutate: thirty_one_modules,
}];

/// One corruption of the base's host blob (as dtc compiled it), for the codes of the DTB
/// reader.
struct BlobCase {
    code: &'static str,
    edit: fn(&mut Vec<u8>),
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Corruptions of the header and the structure block.
const BLOB_CASES: &[BlobCase] = &[
    BlobCase {
        code: "SB0041",
        edit: |b| b[0] = 0xde,
    },
    BlobCase {
        // totalsize smaller than the header.
        code: "SB0042",
        edit: |b| put_be32(b, 4, 0x20),
    },
    BlobCase {
        // version and last_comp_version 18.
        code: "SB0043",
        edit: |b| {
            put_be32(b, 20, 18);
            put_be32(b, 24, 18);
        },
    },
    BlobCase {
        // FDT_END replaced by a token that does not exist.
        code: "SB0048",
        edit: |b| {
            let end = be32(b, 8) + be32(b, 36) - 4;
            put_be32(b, end, 0x0a);
        },
    },
];

/// What the documentation of a code says Xen does.
#[derive(Debug)]
enum Documented {
    /// One of these messages (`…` stands for anything) appears on the console.
    Message(Vec<String>),
    /// The console stays empty.
    Silent,
    /// Xen accepts the tree: no panic, the boot completes.
    Accepted,
    /// The documentation names no message, no silence and no acceptance (a defect of the
    /// documentation: the case fails).
    Vague(String),
}

fn documented(code: &str) -> Documented {
    let o = staticbus(&["explain", code]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let does = t
        .lines()
        .find_map(|l| l.strip_prefix("What Xen does: "))
        .unwrap_or_else(|| panic!("`staticbus explain {code}` names no Xen behaviour:\n{t}"))
        .to_string();
    if does.contains("prints nothing") {
        return Documented::Silent;
    }
    let quoted: Vec<String> = does
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    if quoted.is_empty() {
        if does.contains("accepted") || does.contains("ignore") {
            Documented::Accepted
        } else {
            Documented::Vague(does)
        }
    } else {
        Documented::Message(quoted)
    }
}

/// True if `line` contains the pieces of `pattern` between its `…`s, in order.
fn matches(line: &str, pattern: &str) -> bool {
    let mut rest = line;
    for piece in pattern.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Xen's line once every domain is built.
const BOOTED: &str = "init memory.";
/// How long an empty console means a silent Xen.
const SILENT_AFTER: Duration = Duration::from_secs(20);
/// Xen's panic banner.
const PANIC: &str = "Panic on CPU";

/// Runs QEMU with `args` and returns the console: until Xen panicked (and a moment
/// after, for the message), until it finished booting and `settle` passed, or until
/// `timeout`.
fn console(args: &[String], timeout: Duration, settle: Duration) -> String {
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut stop_at = start + timeout;
    let mut lines = Vec::new();
    while let Some(left) = stop_at.checked_duration_since(Instant::now()) {
        // Xen's banner comes within seconds; a console still empty after this long stays
        // empty (a panic before the console is up).
        if lines.is_empty() && start.elapsed() > SILENT_AFTER {
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(l) => {
                if l.contains(PANIC) || l.contains(BOOTED) {
                    let wait = if l.contains(PANIC) {
                        Duration::from_secs(1)
                    } else {
                        settle
                    };
                    stop_at = stop_at.min(Instant::now() + wait);
                }
                lines.push(l);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    lines.join("\n")
}

/// The QEMU command line of a base boot, with its host tree replaced by `dtb`.
fn qemu_args(work: &Path, dtb: &Path) -> Vec<String> {
    let cmdline = std::fs::read_to_string(work.join("qemu.cmdline")).unwrap();
    let mut args: Vec<String> = cmdline.split_whitespace().map(str::to_string).collect();
    let i = args
        .iter()
        .position(|a| a == "-dtb")
        .expect("-dtb in qemu.cmdline");
    args[i + 1] = dtb.display().to_string();
    args
}

fn dtc_available() -> bool {
    Command::new("dtc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn mutate(base: &str, case: &Case) -> String {
    let mut t = base.to_string();
    for (from, to) in case.edits {
        assert_eq!(
            t.matches(from).count(),
            1,
            "{}: `{from}` must occur exactly once in the base host tree",
            case.code
        );
        t = t.replacen(from, to, 1);
    }
    t
}

/// True if `code` is to be booted: every code, or those listed (comma-separated) in
/// `STATICBUS_DIFFERENTIAL_CASES` (to re-run a few by hand).
fn selected(code: &str) -> bool {
    std::env::var("STATICBUS_DIFFERENTIAL_CASES")
        .map_or(true, |v| v.split(',').any(|c| c.trim() == code))
}

/// Boots `base` once as it is (it must pass), then every case of `blobs` and `cases` as
/// described in the module documentation.
fn corpus(
    version: &str,
    check_args: &[&str],
    cases: &[Case],
    generated: &[GenCase],
    blobs: &[BlobCase],
) {
    let Some(xen) = xen(version) else { return };
    if !dtc_available() {
        common::skip::<()>("dtc (device-tree-compiler)");
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let desc = format!("crates/cli/tests/xen/differential/base-{version}.toml");
    let work = tempfile::tempdir().unwrap();
    // The accepted counterpart.
    let o = staticbus(&[
        "boot",
        &desc,
        "--xen",
        xen.to_str().unwrap(),
        "-o",
        work.path().to_str().unwrap(),
        "--timeout",
        "120",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "the base {desc} must boot:\n{t}");
    assert!(
        t.contains("boot: PASS: all 2 domains printed RESULT PASS"),
        "{t}"
    );
    let base = std::fs::read_to_string(work.path().join("host.dts")).unwrap();
    let mut failures = Vec::new();
    let blob = std::fs::read(work.path().join("host.dtb")).unwrap();
    for case in blobs.iter().filter(|c| selected(c.code)) {
        let dir = work.path().join(case.code);
        std::fs::create_dir_all(&dir).unwrap();
        let dtb = dir.join("host.dtb");
        let mut b = blob.clone();
        (case.edit)(&mut b);
        std::fs::write(&dtb, &b).unwrap();
        let mut args = vec!["check", dtb.to_str().unwrap(), "--xen", version];
        args.extend_from_slice(check_args);
        let ct = text(&staticbus(&args));
        if !ct.contains(&format!("error[{}]", case.code)) {
            failures.push(format!("{}: check does not report it:\n{ct}", case.code));
            continue;
        }
        if let Some(f) = boot_case(case.code, version, work.path(), &dtb, &dir) {
            failures.push(f);
        }
    }
    let texts = cases
        .iter()
        .map(|c| (c.code, mutate(&base, c)))
        .chain(generated.iter().map(|g| (g.code, (g.mutate)(&base))));
    for (code, mutated) in texts.filter(|(c, _)| selected(c)) {
        let case = Case { code, edits: &[] };
        let dir = work.path().join(case.code);
        std::fs::create_dir_all(&dir).unwrap();
        let dts = dir.join("host.dts");
        let dtb = dir.join("host.dtb");
        std::fs::write(&dts, mutated).unwrap();
        // 1. The validator reports the code.
        let mut args = vec!["check", dts.to_str().unwrap(), "--xen", version];
        args.extend_from_slice(check_args);
        let c = staticbus(&args);
        let ct = text(&c);
        if !(ct.contains(&format!("error[{}]", case.code))
            || ct.contains(&format!("warning[{}]", case.code)))
        {
            failures.push(format!("{}: check does not report it:\n{ct}", case.code));
            continue;
        }
        // 2. dtc compiles the mutated tree as it is.
        let d = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts)
            .output()
            .unwrap();
        assert!(d.status.success(), "{}: dtc: {}", case.code, text(&d));
        // 3. Xen does what the documentation says.
        if let Some(f) = boot_case(case.code, version, work.path(), &dtb, &dir) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Boots the base's images with the host tree `dtb` and checks that Xen does what the
/// documentation of `code` says; returns the failure, if any.
fn boot_case(code: &str, version: &str, work: &Path, dtb: &Path, dir: &Path) -> Option<String> {
    {
        let doc = documented(code);
        let settle = Duration::from_secs(2);
        let timeout = Duration::from_secs(60);
        let con = console(&qemu_args(work, dtb), timeout, settle);
        std::fs::write(dir.join("console.log"), &con).unwrap();
        let ok = match &doc {
            Documented::Silent => con.trim().is_empty(),
            Documented::Message(quoted) => {
                quoted.iter().any(|q| con.lines().any(|l| matches(l, q)))
            }
            Documented::Accepted => con.contains(BOOTED) && !con.contains(PANIC),
            Documented::Vague(what) => {
                eprintln!(
                    "{code}: the documentation names no message, silence or acceptance: {what}"
                );
                false
            }
        };
        if ok {
            eprintln!("{code}: rejected by check; on Xen {version}: as documented");
            None
        } else {
            let tail: Vec<&str> = con.lines().rev().take(25).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Some(format!(
                "{code}: documented {doc:?}, but the console ends:\n{}",
                tail.join("\n")
            ))
        }
    }
}

#[test]
fn matches_documented_patterns() {
    assert!(matches(
        "(XEN) evtchn: could not find remote evtchn phandle",
        "evtchn: could not find remote evtchn phandle"
    ));
    assert!(!matches("(XEN) b then a", "a … b"));
}

/// The head of pong's domain node in the generated trees (both bases).
const PONG: &str = "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n";
/// pong's head down to its `memory`.
const PONG_MEMORY: &str = "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x02>;\n\t\t\t#size-cells = <0x02>;\n\t\t\tmemory = <0x00 0x4000>;\n";
/// pong's kernel module, down to its `reg`.
const PONG_KERNEL: &str = "module@40600000 {\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\t\treg = <0x00 0x40600000 0x00 0x200000>;\n";
/// The end of ping's first endpoint (where a node can be added to ping).
const PING_EC1_END: &str = "\t\t\t\tphandle = <0x02>;\n\t\t\t};\n";
/// pong's endpoint in the 4.17 base.
const PONG_EC2: &str = "\t\t\tpong_ec2: evtchn@2 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\t\txen,evtchn = <0x02 &ping_ec1>;\n\t\t\t\tphandle = <0x01>;\n\t\t\t};\n";

/// Cases on Debian's Xen 4.17 (no CONFIG_STATIC_SHM, no CONFIG_STATIC_MEMORY), from
/// `base-4.17.toml`: ping (port 1) and pong (port 2) joined by one static event channel.
const CASES_4_17: &[Case] = &[
    Case {
        code: "SB0101",
        edits: &[("\t\t\t\txen,evtchn = <0x02 &ping_ec1>;\n", "")],
    },
    Case {
        code: "SB0102",
        edits: &[("xen,evtchn = <0x01 &pong_ec2>;", "xen,evtchn = <0x01>;")],
    },
    Case {
        code: "SB0103",
        edits: &[("<0x01 &pong_ec2>", "<0x01 &pong_ec2 0x07>")],
    },
    Case {
        code: "SB0104",
        edits: &[("<0x01 &pong_ec2>", "<0x01 0x63>")],
    },
    Case {
        // pong points back at a third endpoint, not at ping's.
        code: "SB0105",
        edits: &[
            ("<0x02 &ping_ec1>", "<0x02 &ping_ec3>"),
            (
                PING_EC1_END,
                "\t\t\t\tphandle = <0x02>;\n\t\t\t};\n\n\t\t\tping_ec3: evtchn@3 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\t\txen,evtchn = <0x03 &pong_ec2>;\n\t\t\t};\n",
            ),
        ],
    },
    Case {
        code: "SB0106",
        edits: &[("<0x01 &pong_ec2>", "<0x01 &{/chosen/pong}>")],
    },
    Case {
        // pong's endpoint moved up to /chosen, where it is dom0's: there is no dom0.
        code: "SB0107",
        edits: &[
            (PONG_EC2, ""),
            ("\t\tping {\n", "\t\tpong_ec2: evtchn@2 {\n\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\txen,evtchn = <0x02 &ping_ec1>;\n\t\t\tphandle = <0x01>;\n\t\t};\n\n\t\tping {\n"),
        ],
    },
    Case {
        // pong's endpoint one level deeper, inside a node that is not a domain.
        code: "SB0108",
        edits: &[(
            PONG_EC2,
            "\t\t\tchannels {\n\t\t\tpong_ec2: evtchn@2 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\t\txen,evtchn = <0x02 &ping_ec1>;\n\t\t\t\tphandle = <0x01>;\n\t\t\t};\n\t\t\t};\n",
        )],
    },
    Case {
        code: "SB0109",
        edits: &[("<0x01 &pong_ec2>", "<0x00 &pong_ec2>")],
    },
    Case {
        // A second channel whose two ends are both ping's.
        code: "SB0113",
        edits: &[(
            PING_EC1_END,
            "\t\t\t\tphandle = <0x02>;\n\t\t\t};\n\n\t\t\tping_ec3: evtchn@3 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\t\txen,evtchn = <0x03 &ping_ec4>;\n\t\t\t};\n\n\t\t\tping_ec4: evtchn@4 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";\n\t\t\t\txen,evtchn = <0x04 &ping_ec3>;\n\t\t\t};\n",
        )],
    },
    Case {
        code: "SB0115",
        edits: &[("<0x01 &pong_ec2>", "<0x01 &ping_ec1>")],
    },
    Case {
        // Both endpoints under the documentation's spelling.
        code: "SB0116",
        edits: &[
            (
                "ping_ec1: evtchn@1 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";",
                "ping_ec1: evtchn@1 {\n\t\t\t\tcompatible = \"xen,evtchn\";",
            ),
            (
                "pong_ec2: evtchn@2 {\n\t\t\t\tcompatible = \"xen,evtchn-v1\";",
                "pong_ec2: evtchn@2 {\n\t\t\t\tcompatible = \"xen,evtchn\";",
            ),
        ],
    },
    Case {
        // ping's endpoint has no phandle; pong names a phandle nothing has.
        code: "SB0117",
        edits: &[
            ("\t\t\t\tphandle = <0x02>;\n", ""),
            ("<0x02 &ping_ec1>", "<0x02 0x02>"),
        ],
    },
    Case {
        code: "SB0201",
        edits: &[(
            PING_EC1_END,
            "\t\t\t\tphandle = <0x02>;\n\t\t\t};\n\n\t\t\tshared-mem@70000000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n",
        )],
    },
    Case {
        code: "SB0302",
        edits: &[(
            "\t\t\txen,enhanced = \"no-xenstore\";\n\n\t\t\tmodule@40400000",
            "\t\t\txen,enhanced = \"yes\";\n\n\t\t\tmodule@40400000",
        )],
    },
    Case {
        // A 42-character domain name.
        code: "SB0402",
        edits: &[(PONG, "\t\tpong-with-a-domain-name-of-forty-two-chars {\n\t\t\tcompatible = \"xen,domain\";\n")],
    },
    Case {
        code: "SB0403",
        edits: &[(
            PONG_MEMORY,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x02>;\n\t\t\t#size-cells = <0x02>;\n",
        )],
    },
    Case {
        code: "SB0404",
        edits: &[(
            "\t\t\tmemory = <0x00 0x4000>;\n\t\t\tcpus = <0x01>;\n\t\t\tvpl011;\n\t\t\txen,enhanced = \"no-xenstore\";\n\n\t\t\tmodule@40600000",
            "\t\t\tmemory = <0x00 0x4000>;\n\t\t\tvpl011;\n\t\t\txen,enhanced = \"no-xenstore\";\n\n\t\t\tmodule@40600000",
        )],
    },
    Case {
        // pong's kernel is a node of another kind.
        code: "SB0405",
        edits: &[(
            PONG_KERNEL,
            "module@40600000 {\n\t\t\t\tcompatible = \"staticbus,unused\";\n\t\t\t\treg = <0x00 0x40600000 0x00 0x200000>;\n",
        )],
    },
    Case {
        code: "SB0406",
        edits: &[(
            PONG_KERNEL,
            "module@40600000 {\n\t\t\t\tcompatible = \"multiboot,kernel\";\n\t\t\t\treg = <0x00 0x40600000 0x00 0x200000>;\n",
        )],
    },
    Case {
        code: "SB0407",
        edits: &[(
            "reg = <0x00 0x40600000 0x00 0x200000>;",
            "reg = <0x40600000 0x00 0x200000>;",
        )],
    },
    Case {
        // pong's kernel module overlaps ping's.
        code: "SB0408",
        edits: &[(
            "reg = <0x00 0x40600000 0x00 0x200000>;",
            "reg = <0x00 0x40500000 0x00 0x200000>;",
        )],
    },
    Case {
        // pong's kernel module below RAM (QEMU's PCIe window).
        code: "SB0409",
        edits: &[(
            "reg = <0x00 0x40600000 0x00 0x200000>;",
            "reg = <0x00 0x20000000 0x00 0x200000>;",
        )],
    },
    Case {
        code: "SB0413",
        edits: &[(PONG, "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\tdirect-map;\n")],
    },
    Case {
        code: "SB0414",
        edits: &[(
            PONG,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\txen,static-mem = <0x00 0x60000000 0x00 0x1000000>;\n",
        )],
    },
    Case {
        // No node is a domain any more, and no node is a module.
        code: "SB0415",
        edits: &[
            (PONG, "\t\tpong {\n\t\t\tcompatible = \"staticbus,unused\";\n"),
            (
                "\t\tping {\n\t\t\tcompatible = \"xen,domain\";\n",
                "\t\tping {\n\t\t\tcompatible = \"staticbus,unused\";\n",
            ),
            (
                "module@40400000 {\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";",
                "module@40400000 {\n\t\t\t\tcompatible = \"staticbus,unused\";",
            ),
            (
                "module@40600000 {\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";",
                "module@40600000 {\n\t\t\t\tcompatible = \"staticbus,unused\";",
            ),
        ],
    },
    Case {
        // 4 GiB for pong on a 2 GiB machine.
        code: "SB0416",
        edits: &[(
            PONG_MEMORY,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x02>;\n\t\t\t#size-cells = <0x02>;\n\t\t\tmemory = <0x00 0x400000>;\n",
        )],
    },
    Case {
        // 4 MiB: the 2 MiB kernel and the DTB rounded up to 2 MiB leave nothing spare.
        code: "SB0421",
        edits: &[(
            PONG_MEMORY,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x02>;\n\t\t\t#size-cells = <0x02>;\n\t\t\tmemory = <0x00 0x1000>;\n",
        )],
    },
];

#[test]
fn rejected_trees_fail_on_xen_4_17_as_documented() {
    corpus("4.17", &[], CASES_4_17, GEN_CASES_4_17, BLOB_CASES);
}

/// ping's node of region r0 in the 4.20 base, from its role down to its `xen,shared-mem`.
const PING_SHM: &str = "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;";
/// pong's node of region r0 in the 4.20 base, likewise.
const PONG_SHM: &str = "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;";
/// pong's whole node of region r0.
const PONG_SHM_NODE: &str = "\t\t\tshared-mem@70000000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n";

/// Cases on Xen 4.20 built with CONFIG_STATIC_SHM (and CONFIG_STATIC_MEMORY), from
/// `base-4.20.toml`: the 4.17 base plus region r0 (64 KiB at 0x70000000, guest
/// 0x8000000) owned by ping and borrowed by pong.
const CASES_4_20: &[Case] = &[
    Case {
        // pong's node moved up to /chosen, where it is dom0's: there is no dom0.
        code: "SB0202",
        edits: &[
            (PONG_SHM_NODE, ""),
            (
                "\t\tping {\n",
                "\t\tshared-mem@70000000 {\n\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\trole = \"borrower\";\n\t\t\txen,shm-id = \"r0\";\n\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t};\n\n\t\tping {\n",
            ),
        ],
    },
    Case {
        code: "SB0203",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;",
        )],
    },
    Case {
        // Both nodes (so that the ids still agree).
        code: "SB0204",
        edits: &[
            ("role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";", "role = \"owner\";\n\t\t\t\txen,shm-id = \"\";"),
            ("role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";", "role = \"borrower\";\n\t\t\t\txen,shm-id = \"\";"),
        ],
    },
    Case {
        code: "SB0206",
        edits: &[("role = \"owner\";", "role = \"Owner\";")],
    },
    Case {
        code: "SB0207",
        edits: &[(PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";")],
    },
    Case {
        code: "SB0208",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x8000000 0x00 0x10000>;",
        )],
    },
    Case {
        code: "SB0211",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000800 0x00 0x10000>;",
        )],
    },
    Case {
        code: "SB0212",
        edits: &[
            (PING_SHM, "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x00>;"),
            (PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x00>;"),
        ],
    },
    Case {
        code: "SB0213",
        edits: &[
            (PING_SHM, "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0xffffffff 0xfffff000 0x00 0x8000000 0x00 0x10000>;"),
            (PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0xffffffff 0xfffff000 0x00 0x8000000 0x00 0x10000>;"),
        ],
    },
    Case {
        code: "SB0214",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x20000>;",
        )],
    },
    Case {
        // The heap form first (ping), the host form second (pong).
        code: "SB0215",
        edits: &[(
            PING_SHM,
            "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x8000000 0x00 0x10000>;",
        )],
    },
    Case {
        code: "SB0216",
        edits: &[("role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";", "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r1\";")],
    },
    Case {
        code: "SB0219",
        edits: &[("role = \"owner\";", "role = \"borrower\";")],
    },
    Case {
        // Above the 2 GiB of RAM at 0x40000000.
        code: "SB0220",
        edits: &[
            (PING_SHM, "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x01 0x00 0x00 0x8000000 0x00 0x10000>;"),
            (PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x01 0x00 0x00 0x8000000 0x00 0x10000>;"),
        ],
    },
    Case {
        // Over ping's kernel module.
        code: "SB0221",
        edits: &[
            (PING_SHM, "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x40400000 0x00 0x8000000 0x00 0x10000>;"),
            (PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x40400000 0x00 0x8000000 0x00 0x10000>;"),
        ],
    },
    Case {
        // Over pong's RAM (GUEST_RAM0_BASE).
        code: "SB0222",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x40000000 0x00 0x10000>;",
        )],
    },
    Case {
        // Over pong's virtual PL011 (GUEST_PL011_BASE).
        code: "SB0223",
        edits: &[(
            PONG_SHM,
            "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x22000000 0x00 0x10000>;",
        )],
    },
    Case {
        // A second region in pong, half over r0 in pong's address space.
        code: "SB0224",
        edits: &[(
            PONG_SHM_NODE,
            "\t\t\tshared-mem@70000000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n\n\t\t\tshared-mem@70010000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"owner\";\n\t\t\t\txen,shm-id = \"r1\";\n\t\t\t\txen,shared-mem = <0x00 0x70010000 0x00 0x8008000 0x00 0x10000>;\n\t\t\t};\n",
        )],
    },
    Case {
        // pong maps r0 twice.
        code: "SB0229",
        edits: &[(
            PONG_SHM_NODE,
            "\t\t\tshared-mem@70000000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n\n\t\t\tshared-mem-again {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x9000000 0x00 0x10000>;\n\t\t\t};\n",
        )],
    },
    Case {
        // 8 MiB of static memory for a 16 MiB domain.
        code: "SB0412",
        edits: &[(
            PONG,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\txen,static-mem = <0x00 0x60000000 0x00 0x800000>;\n",
        )],
    },
    Case {
        // pong's static memory above the 2 GiB of RAM.
        code: "SB0417",
        edits: &[(
            PONG,
            "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\txen,static-mem = <0x01 0x00 0x00 0x1000000>;\n",
        )],
    },
    Case {
        code: "SB0423",
        edits: &[(PONG, "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\tmax_grant_frames = <0x80000000>;\n")],
    },
    Case {
        code: "SB0424",
        edits: &[(PONG, "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\tsve = <0x00>;\n")],
    },
    Case {
        code: "SB0419",
        edits: &[(
            PING_EC1_END,
            "\t\t\t\tphandle = <0x02>;\n\t\t\t};\n\n\t\t\tvcpu0 {\n\t\t\t\tcompatible = \"xen,vcpu\";\n\t\t\t\tid = <0x00>;\n\t\t\t\thard-affinity = \"1\";\n\t\t\t};\n",
        )],
    },
    Case {
        // 256 MiB of heap below RAM.
        code: "SB0420",
        edits: &[(
            "\t\txen,xen-bootargs",
            "\t\txen,static-heap = <0x00 0x30000000 0x00 0x10000000>;\n\t\txen,xen-bootargs",
        )],
    },
];

#[test]
fn rejected_trees_fail_on_xen_4_20_as_documented() {
    corpus("4.20", &["--static-shm"], CASES_4_20, &[], &[]);
}
