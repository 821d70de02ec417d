//! The differential corpus: for every diagnostic code whose documentation names what Xen
//! does at boot, one tree `staticbus check` rejects is booted on the real Xen that code
//! concerns, and Xen must behave as `staticbus explain CODE` says.
//!
//! To keep CI in budget the cases are grouped by base: each base description
//! (`tests/xen/differential/base-<version>.toml`) is built and booted once as it is (the
//! accepted counterpart: every guest passes), and every case is one text mutation of the
//! host tree that boot generated, compiled with dtc and booted with the same images and
//! QEMU command line (one QEMU run, ~3 s, per case; the cases documented as silent wait
//! 20 s for a console that stays empty, so they boot together). The DTB reader's cases
//! corrupt the base's blob instead, and are loaded raw, since QEMU's `-dtb` refuses a
//! corrupt blob before Xen runs ([`raw_qemu_args`]). For each case:
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
/// reader. QEMU's `-dtb` runs the blob through libfdt (`fdt_open_into`, then its own
/// fix-ups) and refuses a corrupt one ("Couldn't open dtb file"), so Xen would never see
/// it: these blobs are loaded raw instead (see [`raw_qemu_args`]).
struct BlobCase {
    code: &'static str,
    edit: fn(&mut Vec<u8>),
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn put_be32(b: &mut [u8], at: usize, v: usize) {
    let v = u32::try_from(v).unwrap();
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Header fields (byte offsets in the header).
const TOTALSIZE: usize = 4;
const OFF_DT_STRUCT: usize = 8;
const OFF_DT_STRINGS: usize = 12;
const OFF_MEM_RSVMAP: usize = 16;
const SIZE_DT_STRINGS: usize = 32;
const SIZE_DT_STRUCT: usize = 36;

/// One token of the structure block: what it is, the path of its node (`/chosen/pong`;
/// for a property, `/chosen/pong:vpl011`) and its byte range in the blob.
struct Token {
    kind: u32,
    path: String,
    start: usize,
    end: usize,
}

/// The structure block's tokens, up to FDT_END (the base blob is well formed).
fn tokens(b: &[u8]) -> Vec<Token> {
    let strings = be32(b, OFF_DT_STRINGS);
    let mut pos = be32(b, OFF_DT_STRUCT);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        let (kind, start) = (be32(b, pos) as u32, pos);
        pos += 4;
        let name = match kind {
            1 => {
                let n = b[pos..].iter().position(|&c| c == 0).unwrap();
                path.push(String::from_utf8_lossy(&b[pos..pos + n]).into_owned());
                pos = (pos + n + 4) & !3;
                path.join("/")
            }
            2 => {
                let p = path.join("/");
                path.pop();
                p
            }
            3 => {
                let (len, nameoff) = (be32(b, pos), be32(b, pos + 4));
                let s = &b[strings + nameoff..];
                let n = s.iter().position(|&c| c == 0).unwrap();
                pos = (pos + 8 + len + 3) & !3;
                format!("{}:{}", path.join("/"), String::from_utf8_lossy(&s[..n]))
            }
            4 => String::new(),
            9 => break,
            t => panic!("the base blob has token {t:#x}"),
        };
        out.push(Token {
            kind,
            path: name,
            start,
            end: pos,
        });
    }
    out
}

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;

/// The one token of `kind` at `path`.
fn token(b: &[u8], kind: u32, path: &str) -> Token {
    let mut t: Vec<Token> = tokens(b)
        .into_iter()
        .filter(|t| t.kind == kind && t.path == path)
        .collect();
    assert_eq!(t.len(), 1, "token {kind} at {path} in the base blob");
    t.remove(0)
}

/// Inserts `data` into the structure block at byte `at`, moving the strings block.
fn insert_struct(b: &mut Vec<u8>, at: usize, data: &[u8]) {
    let (total, strings, size) = (
        be32(b, TOTALSIZE),
        be32(b, OFF_DT_STRINGS),
        be32(b, SIZE_DT_STRUCT),
    );
    assert!(
        strings >= at,
        "dtc puts the strings block after the structure block"
    );
    b.splice(at..at, data.iter().copied());
    put_be32(b, TOTALSIZE, total + data.len());
    put_be32(b, SIZE_DT_STRUCT, size + data.len());
    put_be32(b, OFF_DT_STRINGS, strings + data.len());
}

/// Appends `s` (its NUL included or not) to the strings block, the last block of a dtc
/// blob; returns its offset in the block.
fn append_string(b: &mut Vec<u8>, s: &[u8]) -> usize {
    let (total, size) = (be32(b, TOTALSIZE), be32(b, SIZE_DT_STRINGS));
    assert_eq!(be32(b, OFF_DT_STRINGS) + size, total);
    assert_eq!(b.len(), total);
    b.extend_from_slice(s);
    put_be32(b, TOTALSIZE, total + s.len());
    put_be32(b, SIZE_DT_STRINGS, size + s.len());
    size
}

/// pong's `vpl011` property, the one the name corruptions hit: Xen looks it up by name,
/// and without it pong has no console (and so never answers ping), so a property Xen
/// cannot see shows.
const PONG_VPL011: &str = "/chosen/pong:vpl011";

/// Points the name of pong's `vpl011` at strings offset `off`.
fn rename_pong_vpl011(b: &mut [u8], off: usize) {
    let t = token(b, PROP, PONG_VPL011);
    put_be32(b, t.start + 8, off);
}

/// Corruptions of the header, the memory reservation block, the structure block and the
/// strings block.
const BLOB_CASES: &[BlobCase] = &[
    BlobCase {
        // The first 20 bytes of the blob (what follows in memory is zeros).
        code: "SB0040",
        edit: |b| b.truncate(20),
    },
    BlobCase {
        code: "SB0041",
        edit: |b| b[0] = 0xde,
    },
    BlobCase {
        // totalsize smaller than the header.
        code: "SB0042",
        edit: |b| put_be32(b, TOTALSIZE, 0x20),
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
        // The strings block past the end of the blob.
        code: "SB0044",
        edit: |b| {
            let total = be32(b, TOTALSIZE);
            put_be32(b, OFF_DT_STRINGS, total + 0x100);
        },
    },
    BlobCase {
        // Two bytes between the memory reservation block and the structure block.
        code: "SB0045",
        edit: |b| {
            let at = be32(b, OFF_DT_STRUCT);
            let (total, strings) = (be32(b, TOTALSIZE), be32(b, OFF_DT_STRINGS));
            b.splice(at..at, [0, 0]);
            put_be32(b, OFF_DT_STRUCT, at + 2);
            put_be32(b, OFF_DT_STRINGS, strings + 2);
            put_be32(b, TOTALSIZE, total + 2);
        },
    },
    BlobCase {
        // The memory reservation block moved to the last 8-byte boundary before the end of
        // the blob: its first entry runs past the end, no terminator.
        code: "SB0046",
        edit: |b| {
            let total = be32(b, TOTALSIZE);
            put_be32(b, OFF_MEM_RSVMAP, (total - 8) & !7);
        },
    },
    BlobCase {
        // size_dt_struct ends the structure block inside pong's `xen,evtchn` property
        // (the bytes after it are intact).
        code: "SB0047",
        edit: |b| {
            let t = token(b, PROP, "/chosen/pong/evtchn@2:xen,evtchn");
            let start = be32(b, OFF_DT_STRUCT);
            put_be32(b, SIZE_DT_STRUCT, t.start + 10 - start);
        },
    },
    BlobCase {
        // The FDT_PROP tag of pong's `vpl011` replaced by a token that does not exist.
        code: "SB0048",
        edit: |b| {
            let t = token(b, PROP, PONG_VPL011);
            put_be32(b, t.start, 0x0a);
        },
    },
    BlobCase {
        // pong's `vpl011` renamed `vpl01\xff`.
        code: "SB0049",
        edit: |b| {
            let off = append_string(b, b"vpl01\xff\0");
            rename_pong_vpl011(b, off);
        },
    },
    BlobCase {
        // The name of pong's `vpl011` 100 bytes past the strings block.
        code: "SB0050",
        edit: |b| {
            let size = be32(b, SIZE_DT_STRINGS);
            rename_pong_vpl011(b, size + 100);
        },
    },
    BlobCase {
        // The name of pong's `vpl011` is a `vpl011` without NUL at the end of the block.
        code: "SB0051",
        edit: |b| {
            let off = append_string(b, b"vpl011");
            rename_pong_vpl011(b, off);
        },
    },
    BlobCase {
        // One FDT_END_NODE too many, after pong's kernel module: pong's endpoint and
        // everything after it move up one level.
        code: "SB0052",
        edit: |b| {
            let t = token(b, END_NODE, "/chosen/pong/module@40600000");
            insert_struct(b, t.end, &END_NODE.to_be_bytes());
        },
    },
    BlobCase {
        // 257 nested nodes `d` at the end of the root node.
        code: "SB0053",
        edit: |b| {
            let t = token(b, END_NODE, "/chosen");
            let mut deep = Vec::new();
            for _ in 0..257 {
                deep.extend_from_slice(&BEGIN_NODE.to_be_bytes());
                deep.extend_from_slice(b"d\0\0\0");
            }
            for _ in 0..257 {
                deep.extend_from_slice(&END_NODE.to_be_bytes());
            }
            insert_struct(b, t.end, &deep);
        },
    },
    BlobCase {
        // pong's `vpl011` moved after pong's subnodes.
        code: "SB0054",
        edit: |b| {
            let p = token(b, PROP, PONG_VPL011);
            let e = token(b, END_NODE, "/chosen/pong");
            let prop: Vec<u8> = b[p.start..p.end].to_vec();
            b.splice(e.start..e.start, prop);
            b.drain(p.start..p.end);
        },
    },
];

/// Where the blob cases put Xen and the tree (`[platform] xen` and `dtb` of both bases).
const XEN_ADDR: u64 = 0x4020_0000;
const DTB_ADDR: u64 = 0x4800_0000;
/// Where the boot shim goes: after the tree QEMU itself writes at the start of RAM when it
/// boots no kernel (1 MiB at 0x40000000), before Xen.
const SHIM_ADDR: u64 = 0x4018_0000;

/// `movz`/`movk` of the low 32 bits of `v` into `x<reg>` (A64 encodings).
fn mov32(reg: u32, v: u64) -> [u32; 2] {
    let (lo, hi) = ((v & 0xffff) as u32, ((v >> 16) & 0xffff) as u32);
    assert_eq!(v >> 32, 0);
    [0xd280_0000 | lo << 5 | reg, 0xf2a0_0000 | hi << 5 | reg]
}

/// What QEMU's `-kernel` does for an arm64 Image, without touching the tree: x0 = the
/// tree's address, x1–x3 = 0, jump to Xen (the CPU starts at EL2, MMU and caches off,
/// interrupts masked, as Linux's boot protocol wants).
fn shim() -> Vec<u8> {
    let mut code = Vec::new();
    code.extend(mov32(0, DTB_ADDR));
    code.extend([0xd280_0001, 0xd280_0002, 0xd280_0003]); // movz x1..x3, #0
    code.extend(mov32(4, XEN_ADDR));
    code.push(0xd61f_0080); // br x4
    code.iter().flat_map(|i| i.to_le_bytes()).collect()
}

/// The QEMU command line of a base boot with Xen, the tree `dtb` and a boot shim loaded as
/// raw bytes (`-device loader`) instead of `-kernel` and `-dtb`, and the first CPU started
/// at the shim: Xen gets the blob exactly as written.
fn raw_qemu_args(work: &Path, dtb: &Path, dir: &Path) -> Vec<String> {
    let cmdline = std::fs::read_to_string(work.join("qemu.cmdline")).unwrap();
    let mut args: Vec<String> = cmdline.split_whitespace().map(str::to_string).collect();
    let take = |args: &mut Vec<String>, opt: &str| {
        let i = args.iter().position(|a| a == opt).unwrap();
        let v = args.remove(i + 1);
        args.remove(i);
        v
    };
    let xen = take(&mut args, "-kernel");
    take(&mut args, "-dtb");
    let shim_path = dir.join("shim.bin");
    std::fs::write(&shim_path, shim()).unwrap();
    for (file, addr) in [
        (xen, XEN_ADDR),
        (dtb.display().to_string(), DTB_ADDR),
        (shim_path.display().to_string(), SHIM_ADDR),
    ] {
        args.push("-device".into());
        args.push(format!("loader,file={file},addr={addr:#x},force-raw=on"));
    }
    args.push("-device".into());
    args.push(format!("loader,addr={SHIM_ADDR:#x},cpu-num=0"));
    args
}

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

/// Accepted cases whose documentation also says the guests work: both must print
/// `RESULT PASS`.
const GUESTS_PASS: &[&str] = &["SB0303"];

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

/// One case ready to boot: its tree, compiled, whether QEMU must load it raw, and the Xen
/// build it boots on when that is not the base's.
struct Prepared {
    code: &'static str,
    dtb: PathBuf,
    dir: PathBuf,
    raw: bool,
    xen: Option<PathBuf>,
}

/// The base tree as it is, on another build of the base's Xen version (a cache name of
/// `scripts/xen/fetch-xen.sh`), checked with `check_args` describing that build.
struct BuildCase {
    code: &'static str,
    xen: &'static str,
    check_args: &'static [&'static str],
}

/// How many cases documented as silent boot at once: each waits [`SILENT_AFTER`] for a
/// console that stays empty, so waiting for them together saves most of that time. A Xen
/// that does print shows its banner within seconds even with a few QEMUs beside it.
const SILENT_TOGETHER: usize = 8;

/// Boots `base` once as it is (it must pass), then every case of `blobs` and `cases` as
/// described in the module documentation.
fn corpus(
    version: &str,
    check_args: &[&str],
    cases: &[Case],
    generated: &[GenCase],
    blobs: &[BlobCase],
    builds: &[BuildCase],
) {
    let Some(xen) = xen(version) else { return };
    if !dtc_available() {
        common::skip::<()>("dtc (device-tree-compiler)");
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let desc = format!("crates/cli/tests/xen/differential/base-{version}.toml");
    let desc_text = std::fs::read_to_string(root().join(&desc)).unwrap();
    for (what, addr) in [("xen", XEN_ADDR), ("dtb", DTB_ADDR)] {
        let placed = format!(
            "{what} = {{ base = 0x{:04x}_{:04x}",
            addr >> 16,
            addr & 0xffff
        );
        assert!(
            desc_text.contains(&placed),
            "{desc} must have `{placed}` (the blob cases load it there)"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
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
    eprintln!(
        "base {desc}: built and booted in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let base = std::fs::read_to_string(work.path().join("host.dts")).unwrap();
    let mut failures = Vec::new();
    let mut prepared = Vec::new();
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
        prepared.push(Prepared {
            code: case.code,
            dtb,
            dir,
            raw: true,
            xen: None,
        });
    }
    let texts = cases
        .iter()
        .map(|c| (c.code, mutate(&base, c)))
        .chain(generated.iter().map(|g| (g.code, (g.mutate)(&base))));
    for (code, mutated) in texts.filter(|(c, _)| selected(c)) {
        let dir = work.path().join(code);
        std::fs::create_dir_all(&dir).unwrap();
        let dts = dir.join("host.dts");
        let dtb = dir.join("host.dtb");
        std::fs::write(&dts, mutated).unwrap();
        // 1. The validator reports the code.
        let mut args = vec!["check", dts.to_str().unwrap(), "--xen", version];
        args.extend_from_slice(check_args);
        let c = staticbus(&args);
        let ct = text(&c);
        if !["error", "warning", "note"]
            .iter()
            .any(|s| ct.contains(&format!("{s}[{code}]")))
        {
            failures.push(format!("{code}: check does not report it:\n{ct}"));
            continue;
        }
        // 2. dtc compiles the mutated tree as it is.
        let d = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts)
            .output()
            .unwrap();
        assert!(d.status.success(), "{code}: dtc: {}", text(&d));
        prepared.push(Prepared {
            code,
            dtb,
            dir,
            raw: false,
            xen: None,
        });
    }
    for b in builds.iter().filter(|b| selected(b.code)) {
        let Some(other) = common::xen(b.xen) else {
            continue;
        };
        let dir = work.path().join(b.code);
        std::fs::create_dir_all(&dir).unwrap();
        let dts = work.path().join("host.dts");
        let mut args = vec!["check", dts.to_str().unwrap(), "--xen", version];
        args.extend_from_slice(check_args);
        args.extend_from_slice(b.check_args);
        let ct = text(&staticbus(&args));
        if !["error", "warning", "note"]
            .iter()
            .any(|s| ct.contains(&format!("{s}[{}]", b.code)))
        {
            failures.push(format!("{}: check does not report it:\n{ct}", b.code));
            continue;
        }
        prepared.push(Prepared {
            code: b.code,
            dtb: work.path().join("host.dtb"),
            dir,
            raw: false,
            xen: Some(other),
        });
    }
    // 3. Xen does what the documentation says: the silent ones together, then the others.
    let (silent, loud): (Vec<Prepared>, Vec<Prepared>) = prepared
        .into_iter()
        .partition(|p| matches!(documented(p.code), Documented::Silent));
    for group in silent.chunks(SILENT_TOGETHER) {
        std::thread::scope(|s| {
            let running: Vec<_> = group
                .iter()
                .map(|p| s.spawn(|| boot_case(p, version, work.path())))
                .collect();
            failures.extend(running.into_iter().filter_map(|h| h.join().unwrap()));
        });
    }
    failures.extend(
        loud.iter()
            .filter_map(|p| boot_case(p, version, work.path())),
    );
    eprintln!(
        "corpus on Xen {version}: base and every case in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Boots the base's images with the case's host tree and checks that Xen does what the
/// documentation of its code says; returns the failure, if any.
fn boot_case(p: &Prepared, version: &str, work: &Path) -> Option<String> {
    let code = p.code;
    let doc = documented(code);
    let settle = Duration::from_secs(2);
    let timeout = Duration::from_secs(60);
    let mut args = if p.raw {
        raw_qemu_args(work, &p.dtb, &p.dir)
    } else {
        qemu_args(work, &p.dtb)
    };
    if let Some(other) = &p.xen {
        let i = args.iter().position(|a| a == "-kernel").unwrap();
        args[i + 1] = other.display().to_string();
    }
    let t0 = Instant::now();
    let con = console(&args, timeout, settle);
    let took = t0.elapsed().as_secs_f64();
    std::fs::write(p.dir.join("console.log"), &con).unwrap();
    let mut shown = None;
    let ok = match &doc {
        Documented::Silent => con.trim().is_empty(),
        Documented::Message(quoted) => {
            shown = con
                .lines()
                .find(|l| quoted.iter().any(|q| matches(l, q)))
                .map(str::to_string);
            shown.is_some()
        }
        Documented::Accepted => {
            con.contains(BOOTED)
                && !con.contains(PANIC)
                && (!GUESTS_PASS.contains(&code) || con.matches("RESULT PASS").count() == 2)
        }
        Documented::Vague(what) => {
            eprintln!("{code}: the documentation names no message, silence or acceptance: {what}");
            false
        }
    };
    if ok {
        let what = match (&doc, shown) {
            (_, Some(line)) => format!("`{}`", line.trim()),
            (Documented::Silent, _) => "an empty console".to_string(),
            _ => "boots".to_string(),
        };
        eprintln!(
            "{code}: rejected by check; on Xen {version}: as documented, {what} ({took:.1} s)"
        );
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
        // A dom0 (pong's image again, at pong's address: Xen merges the two modules) and
        // xenstore for ping, whose static port is 1: Xen gives port 1 to xenstore first.
        code: "SB0112",
        edits: &[
            (
                "bootscrub=0 conswitch=ax\";\n",
                "bootscrub=0 conswitch=ax dom0_mem=128M\";\n\n\t\tmodule@40600000 {\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = <0x00 0x40600000 0x00 0x200000>;\n\t\t\tbootargs = \"staticbus.domain=dom0\";\n\t\t};\n",
            ),
            (
                "\t\t\txen,enhanced = \"no-xenstore\";\n\n\t\t\tmodule@40400000",
                "\t\t\txen,enhanced = \"enabled\";\n\n\t\t\tmodule@40400000",
            ),
        ],
    },
    Case {
        // pong without `xen,enhanced`: a bare-metal guest needs no /hypervisor node.
        code: "SB0303",
        edits: &[(
            "\t\t\txen,enhanced = \"no-xenstore\";\n\n\t\t\tmodule@40600000",
            "\n\t\t\tmodule@40600000",
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
    corpus("4.17", &[], CASES_4_17, GEN_CASES_4_17, BLOB_CASES, &[]);
}

/// ping's node of region r0 in the 4.20 base, from its role down to its `xen,shared-mem`.
const PING_SHM: &str = "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;";
/// pong's node of region r0 in the 4.20 base, likewise.
const PONG_SHM: &str = "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;";
/// pong's whole node of region r0.
const PONG_SHM_NODE: &str = "\t\t\tshared-mem@70000000 {\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n";

/// pong's head, direct-mapped onto 16 MiB (all its memory) of static memory at 0x60000000.
const PONG_DIRECT_MAP: &str = "\t\tpong {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\tdirect-map;\n\t\t\txen,static-mem = <0x00 0x60000000 0x00 0x1000000>;\n";
/// The end of ping's node of region r0 (where ping can get more regions).
const PING_SHM_END: &str = "xen,shared-mem = <0x00 0x70000000 0x00 0x8000000 0x00 0x10000>;\n\t\t\t};\n\t\t};\n\n\t\tpong {";

/// `n` more regions owned by ping, each the node `region(i)`, after r0.
fn more_regions(base: &str, n: u64, region: fn(u64) -> String) -> String {
    let nodes: String = (1..=n).map(region).collect();
    assert_eq!(base.matches(PING_SHM_END).count(), 1);
    base.replacen(
        PING_SHM_END,
        &PING_SHM_END.replacen("\t\t\t};\n", &format!("\t\t\t}};\n{nodes}"), 1),
        1,
    )
}

/// 32 regions of 4 KiB more in ping (33 in all): Xen's table of shared-memory banks has
/// 32 entries.
fn thirty_three_regions(base: &str) -> String {
    more_regions(base, 32, |i| {
        let (host, guest) = (0x7001_0000 + i * 0x1000, 0x801_0000 + i * 0x1000);
        format!("\n\t\t\tshared-mem@{host:x} {{\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"owner\";\n\t\t\t\txen,shm-id = \"r{i}\";\n\t\t\t\txen,shared-mem = <0x00 {host:#x} 0x00 {guest:#x} 0x00 0x1000>;\n\t\t\t}};\n")
    })
}

/// 5 heap-form regions of 127 pages more in ping: 7 power-of-two chunks each, 35 in all,
/// for Xen's 32 heap banks.
fn heap_chunks(base: &str) -> String {
    more_regions(base, 5, |i| {
        let guest = 0x810_0000 + i * 0x8_0000;
        format!("\n\t\t\tshared-mem-h{i} {{\n\t\t\t\tcompatible = \"xen,domain-shared-memory-v1\";\n\t\t\t\trole = \"owner\";\n\t\t\t\txen,shm-id = \"h{i}\";\n\t\t\t\txen,shared-mem = <0x00 {guest:#x} 0x00 0x7f000>;\n\t\t\t}};\n")
    })
}

/// The 4.20 base on the same source built with CONFIG_STATIC_EVTCHN off.
const BUILD_CASES_4_20: &[BuildCase] = &[BuildCase {
    code: "SB0114",
    xen: "4.20-no-static-evtchn",
    check_args: &["--no-static-evtchn"],
}];

const GEN_CASES_4_20: &[GenCase] = &[
    GenCase {
        code: "SB0226",
        mutate: thirty_three_regions,
    },
    GenCase {
        code: "SB0227",
        mutate: heap_chunks,
    },
];

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
        // pong direct-mapped (its 16 MiB of static memory at 0x60000000), r0 in the heap
        // form in both domains.
        code: "SB0210",
        edits: &[
            (PONG, PONG_DIRECT_MAP),
            (PING_SHM, "role = \"owner\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x8000000 0x00 0x10000>;"),
            (PONG_SHM, "role = \"borrower\";\n\t\t\t\txen,shm-id = \"r0\";\n\t\t\t\txen,shared-mem = <0x00 0x8000000 0x00 0x10000>;"),
        ],
    },
    Case {
        // pong direct-mapped: r0 is at host 0x70000000 but guest 0x8000000.
        code: "SB0225",
        edits: &[(PONG, PONG_DIRECT_MAP)],
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
    corpus(
        "4.20",
        &["--static-shm"],
        CASES_4_20,
        GEN_CASES_4_20,
        &[],
        BUILD_CASES_4_20,
    );
}
