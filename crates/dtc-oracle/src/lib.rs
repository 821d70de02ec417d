//! dtc as a differential oracle for the tests, on any machine.
//!
//! Several test suites compare staticbus's DTS parser, DTB writer and validator with `dtc`
//! (Debian's `device-tree-compiler`). A newcomer with only Rust installed has no `dtc`, and
//! the README's `cargo test --workspace` must still pass there, while CI must never pass
//! because `dtc` quietly went missing. So every comparison goes through [`Oracle::run`]:
//!
//! - **dtc installed**: `dtc` runs for real, and its answer is checked against the answer
//!   recorded in the suite's recording folder (`tests/dtc-recorded/` of the crate). A
//!   different answer fails: either our fixture changed (re-record) or dtc did (look first).
//! - **dtc absent**: the recorded answer stands in for it, and the test process says so on
//!   stderr (not captured by the test harness), with the command that installs dtc.
//! - `STATICBUS_REQUIRE_DTC=1` (set by `.ci/run`): an absent dtc fails every test that
//!   needs it.
//! - `STATICBUS_DTC_RECORD=1`: missing or stale recordings are written from the live dtc
//!   (atomically) instead of failing; commit them.
//!
//! A recording is keyed by name and holds the SHA-256 of exactly what dtc was given (the
//! arguments and every file's name and bytes), so a fixture edited without re-recording is
//! reported as stale instead of being compared with an old answer.
//!
//! Comparisons with inputs made up at run time (the random-program tests) cannot be
//! recorded; they call [`live`], which reports the skip loudly (or fails under
//! `STATICBUS_REQUIRE_DTC=1`).

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The environment variable that turns a missing dtc into a test failure.
pub const REQUIRE_VAR: &str = "STATICBUS_REQUIRE_DTC";
/// The environment variable that makes [`Oracle::run`] write missing or stale recordings.
pub const RECORD_VAR: &str = "STATICBUS_DTC_RECORD";
/// How to get dtc, for the messages.
pub const INSTALL_HINT: &str = "apt-get install device-tree-compiler";

/// The first line of every recording, before the digest and the verdict.
const MAGIC: &str = "staticbus-dtc-recording v1";

fn flag(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// The installed dtc's `--version` line, or `None` when there is none.
pub fn installed() -> Option<&'static str> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new("dtc").arg("--version").output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .as_deref()
}

/// Writes `msg` to the process's stderr directly, so the test harness does not capture it
/// and the person running the tests sees it even when every test passes.
fn loud(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{msg}");
}

/// Like [`loud`], once per process for each distinct message.
fn loud_once(msg: String) {
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&msg) {
        loud(&msg);
        said.insert(msg);
    }
}

/// True when dtc is installed. Otherwise fails under `STATICBUS_REQUIRE_DTC=1`, or says
/// loudly that `what` is skipped and how to get dtc, and returns false.
pub fn live(what: &str) -> bool {
    if installed().is_some() {
        return true;
    }
    assert!(
        !flag(REQUIRE_VAR),
        "{REQUIRE_VAR}=1 but dtc is not installed ({INSTALL_HINT}); {what} needs it"
    );
    loud_once(format!(
        "note: dtc is not installed: {what} skipped (it compares inputs made at run time \
         with dtc; {INSTALL_HINT} to run it)"
    ));
    false
}

/// What dtc made of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// dtc exited successfully.
    pub accepted: bool,
    /// The blob it wrote (empty when it rejected the input).
    pub dtb: Vec<u8>,
    /// dtc printed warnings or errors (its stderr was not empty).
    pub warned: bool,
    /// dtc's stderr (live runs only; empty when the answer came from a recording).
    pub stderr: String,
    /// The answer came from dtc itself rather than from a recording.
    pub live: bool,
}

/// One suite's recordings of dtc's answers.
#[derive(Debug, Clone)]
pub struct Oracle {
    dir: PathBuf,
}

impl Oracle {
    /// Recordings live in `dir` (e.g. `concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtc-recorded")`).
    pub fn new(dir: impl Into<PathBuf>) -> Oracle {
        Oracle { dir: dir.into() }
    }

    /// [`Oracle::run`] for inputs that have no natural name (a table of cases, trees printed
    /// by the code under test): the recording is `prefix/` plus the first 16 hex digits of
    /// the input's digest. A recording that no input names any more is simply unused.
    pub fn run_by_content(&self, prefix: &str, args: &[&str], files: &[(&str, &[u8])]) -> Output {
        let d = digest(args, files);
        self.run(&format!("{prefix}/{}", &d[..16]), args, files)
    }

    /// Runs `dtc -I dts -O dtb <args> -o OUT <first file>` in a folder holding exactly
    /// `files` (name relative to that folder, bytes), or gives the recorded answer when dtc
    /// is absent. `key` names the recording (letters, digits, `-`, `_`, `.`, `/`).
    ///
    /// Panics with a precise message when the live answer differs from the recording, when
    /// a recording is missing or stale, or when dtc is absent and required.
    pub fn run(&self, key: &str, args: &[&str], files: &[(&str, &[u8])]) -> Output {
        assert!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                && !key.contains(".."),
            "dtc recording key {key:?}: use letters, digits, '-', '_', '.', '/'"
        );
        assert!(!files.is_empty(), "dtc needs at least one input file");
        let digest = digest(args, files);
        let path = self.dir.join(format!("{key}.dtc"));
        let recorded = read_recording(&path);
        let fresh = recorded.as_ref().filter(|r| r.digest == digest);

        if installed().is_none() {
            assert!(
                !flag(REQUIRE_VAR),
                "{REQUIRE_VAR}=1 but dtc is not installed ({INSTALL_HINT})"
            );
            let Some(r) = fresh else {
                panic!(
                    "dtc is not installed and {} has no recording of this input ({}); \
                     {INSTALL_HINT}, then run the tests with {RECORD_VAR}=1 and commit the recording",
                    path.display(),
                    if recorded.is_some() { "it is stale" } else { "it is missing" }
                );
            };
            note_recorded_once(&self.dir);
            return Output {
                accepted: r.accepted,
                dtb: r.dtb.clone(),
                warned: r.warned,
                stderr: String::new(),
                live: false,
            };
        }

        let out = run_dtc(args, files);
        match fresh {
            Some(r) => {
                assert!(
                    r.accepted == out.accepted && r.dtb == out.dtb && r.warned == out.warned,
                    "dtc ({}) now answers differently from its recording {} \
                     (recorded: {}, {} bytes, {}; live: {}, {} bytes, {}; stderr: {}). If dtc \
                     changed, find out how before re-recording with {RECORD_VAR}=1",
                    installed().unwrap_or("?"),
                    path.display(),
                    verdict(r.accepted),
                    r.dtb.len(),
                    noise(r.warned),
                    verdict(out.accepted),
                    out.dtb.len(),
                    noise(out.warned),
                    out.stderr.trim()
                );
            }
            None if flag(RECORD_VAR) => write_recording(&path, &digest, &out),
            None => panic!(
                "{} is {} for key `{key}`: run the tests with {RECORD_VAR}=1 to record \
                 dtc's answer, and commit it (the tests must pass without dtc too)",
                path.display(),
                if recorded.is_some() {
                    "stale (the input changed)"
                } else {
                    "missing"
                }
            ),
        }
        out
    }
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "accepted"
    } else {
        "rejected"
    }
}

fn noise(warned: bool) -> &'static str {
    if warned {
        "warned"
    } else {
        "clean"
    }
}

fn note_recorded_once(dir: &Path) {
    loud_once(format!(
        "note: dtc is not installed: comparing with dtc's recorded answers in {} \
         ({INSTALL_HINT} for the live comparison)",
        dir.display()
    ));
}

/// SHA-256 over the arguments and every file, each length-prefixed, as lowercase hex.
fn digest(args: &[&str], files: &[(&str, &[u8])]) -> String {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(b"args");
    for a in args {
        part(a.as_bytes());
    }
    part(b"files");
    for (name, bytes) in files {
        part(name.as_bytes());
        part(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

struct Recording {
    digest: String,
    accepted: bool,
    warned: bool,
    dtb: Vec<u8>,
}

fn read_recording(path: &Path) -> Option<Recording> {
    let bytes = std::fs::read(path).ok()?;
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..nl]).ok()?;
    let rest = header.strip_prefix(MAGIC)?.trim();
    let mut words = rest.split(' ');
    let (digest, verdict, noise) = (words.next()?, words.next()?, words.next()?);
    let accepted = match verdict {
        "accepted" => true,
        "rejected" => false,
        _ => return None,
    };
    let warned = match noise {
        "warned" => true,
        "clean" => false,
        _ => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Recording {
        digest: digest.to_string(),
        accepted,
        warned,
        dtb: bytes[nl + 1..].to_vec(),
    })
}

fn write_recording(path: &Path, digest: &str, out: &Output) {
    let dir = path.parent().expect("a recording has a folder");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut bytes = format!(
        "{MAGIC} {digest} {} {}\n",
        verdict(out.accepted),
        noise(out.warned)
    )
    .into_bytes();
    bytes.extend_from_slice(&out.dtb);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .unwrap_or_else(|e| panic!("temporary file in {}: {e}", dir.display()));
    tmp.write_all(&bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    tmp.persist(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    loud(&format!("recorded dtc's answer in {}", path.display()));
}

fn run_dtc(args: &[&str], files: &[(&str, &[u8])]) -> Output {
    let dir = tempfile::tempdir().expect("temporary folder for dtc");
    for (name, bytes) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    let out_path = dir.path().join("staticbus-dtc-out.dtb");
    let out = Command::new("dtc")
        .current_dir(dir.path())
        .args(["-I", "dts", "-O", "dtb"])
        .args(args)
        .arg("-o")
        .arg(&out_path)
        .arg(files[0].0)
        .output()
        .unwrap_or_else(|e| panic!("run dtc: {e}"));
    let accepted = out.status.success();
    Output {
        accepted,
        dtb: if accepted {
            std::fs::read(&out_path).unwrap_or_default()
        } else {
            Vec::new()
        },
        warned: !out.stderr.is_empty(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        live: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_names_from_contents() {
        let a = digest(&[], &[("ab", b"c")]);
        let b = digest(&[], &[("a", b"bc")]);
        assert_ne!(a, b);
        assert_ne!(
            digest(&["-b", "0"], &[("a", b"")]),
            digest(&[], &[("a", b"")])
        );
        assert_eq!(a, digest(&[], &[("ab", b"c")]));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn recordings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/y.dtc");
        let out = Output {
            accepted: true,
            dtb: vec![0xd0, 0x0d, 0xfe, 0xed, b'\n', 0],
            warned: true,
            stderr: String::new(),
            live: true,
        };
        write_recording(&path, "abc", &out);
        let r = read_recording(&path).unwrap();
        assert_eq!(
            (r.digest.as_str(), r.accepted, r.warned, r.dtb),
            ("abc", true, true, out.dtb)
        );
        std::fs::write(&path, b"not a recording\n").unwrap();
        assert!(read_recording(&path).is_none());
    }

    #[test]
    fn a_missing_recording_without_dtc_names_the_fix() {
        if installed().is_some() || flag(REQUIRE_VAR) {
            return; // the other branch is what this machine exercises
        }
        let dir = tempfile::tempdir().unwrap();
        let o = Oracle::new(dir.path());
        let err = std::panic::catch_unwind(|| o.run("none", &[], &[("a.dts", b"/dts-v1/; / {};")]))
            .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains(INSTALL_HINT) && msg.contains("missing"),
            "{msg}"
        );
    }

    #[test]
    fn live_dtc_is_checked_against_its_recording() {
        if installed().is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let o = Oracle::new(dir.path());
        let files: &[(&str, &[u8])] = &[("a.dts", b"/dts-v1/; / { x = <1>; };")];
        // Missing recording, record mode off: a precise failure.
        if !flag(RECORD_VAR) {
            let err = std::panic::catch_unwind(|| o.run("k", &[], files)).unwrap_err();
            let msg = err.downcast_ref::<String>().unwrap();
            assert!(msg.contains("missing") && msg.contains(RECORD_VAR), "{msg}");
        }
        // Record, then a live run agrees with it.
        let out = run_dtc(&[], files);
        assert!(out.accepted && out.dtb.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]));
        write_recording(&dir.path().join("k.dtc"), &digest(&[], files), &out);
        assert_eq!(o.run("k", &[], files).dtb, out.dtb);
        // A recording that lies is caught.
        let mut wrong = out.clone();
        wrong.dtb[8] ^= 1;
        write_recording(&dir.path().join("k.dtc"), &digest(&[], files), &wrong);
        let err = std::panic::catch_unwind(|| o.run("k", &[], files)).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("differently"), "{msg}");
    }
}
