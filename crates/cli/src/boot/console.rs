//! The serial console: read line by line, guest lines shown by domain name, and the verdict
//! taken from the guests' `RESULT` lines or a Xen panic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// Lines of Xen's console shown when a boot fails (all of them with `--verbose`).
const XEN_TAIL: usize = 40;

/// Reads QEMU's serial output line by line (raw copy to `log`).
pub(super) fn spawn_reader(child: &mut Child, mut log: std::fs::File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
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
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every domU printed `RESULT PASS`.
    Pass,
    /// A domain printed `RESULT FAIL`, Xen panicked, or QEMU exited.
    Fail(String),
    /// The timeout passed first.
    Timeout,
    /// Ctrl-C.
    Interrupted,
}

/// What one console line means for the boot.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Xen printed a panic; its message follows.
    Panic,
    /// The boot is decided.
    Done(Verdict),
}

/// Splits a console line into its origin: `Some(domid)` for a guest line
/// (`(XEN) DOM<id>: text`), `None` for Xen's own, and the text.
pub fn classify(line: &str) -> (Option<u16>, &str) {
    let Some(rest) = line.strip_prefix("(XEN) ") else {
        return (None, line);
    };
    if let Some(tagged) = rest.strip_prefix("DOM") {
        if let Some((id, text)) = tagged.split_once(": ") {
            if let Ok(id) = id.parse::<u16>() {
                return (Some(id), text);
            }
        }
        if let Some(id) = tagged.strip_suffix(':').and_then(|i| i.parse::<u16>().ok()) {
            return (Some(id), "");
        }
    }
    (None, rest)
}

/// Follows the console: prints guest lines by domain name and decides the boot.
pub struct Watch {
    names: BTreeMap<u16, String>,
    passed: BTreeSet<u16>,
    verbose: bool,
    xen_tail: std::collections::VecDeque<String>,
    first_guest: Option<Duration>,
    width: usize,
}

impl Watch {
    /// Watches the domUs `names` (domid → name).
    pub fn new(names: BTreeMap<u16, String>, verbose: bool) -> Watch {
        let width = names.values().map(String::len).max().unwrap_or(3).max(3);
        Watch {
            names,
            passed: BTreeSet::new(),
            verbose,
            xen_tail: Default::default(),
            first_guest: None,
            width,
        }
    }

    /// Takes one console line seen `at` after QEMU started.
    pub fn line(&mut self, line: &str, at: Duration) -> Option<Event> {
        let (dom, text) = classify(line);
        let Some(id) = dom else {
            if self.verbose {
                let from = if line.starts_with("(XEN)") {
                    "xen"
                } else {
                    "console"
                };
                println!("{from:>w$} | {text}", w = self.width);
            }
            self.xen_tail.push_back(text.to_string());
            if self.xen_tail.len() > XEN_TAIL {
                self.xen_tail.pop_front();
            }
            return (text.contains("Panic on CPU") || text.contains("PANIC"))
                .then_some(Event::Panic);
        };
        self.first_guest.get_or_insert(at);
        let name = self
            .names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("dom{id}"));
        println!("{name:>w$} | {text}", w = self.width);
        if text.starts_with("RESULT FAIL") {
            return Some(Event::Done(Verdict::Fail(format!("{name}: {text}"))));
        }
        if text.starts_with("RESULT PASS") {
            self.passed.insert(id);
            if self.names.keys().all(|k| self.passed.contains(k)) {
                return Some(Event::Done(Verdict::Pass));
            }
        }
        None
    }

    /// Prints the summary; returns the exit status.
    pub(super) fn finish(&self, v: &Verdict, elapsed: Duration, out: &Path) -> u8 {
        let waiting: Vec<&str> = self
            .names
            .iter()
            .filter(|(id, _)| !self.passed.contains(id))
            .map(|(_, n)| n.as_str())
            .collect();
        if !self.verbose && *v != Verdict::Pass {
            eprintln!("--- Xen console (last {} lines) ---", self.xen_tail.len());
            for l in &self.xen_tail {
                eprintln!("{l}");
            }
            eprintln!("---");
        }
        let first = self
            .first_guest
            .map_or("-".to_string(), |t| format!("{:.1}s", t.as_secs_f64()));
        let timing = format!(
            "QEMU start to first guest line {first}, to the end {:.1}s (TCG emulation)",
            elapsed.as_secs_f64()
        );
        let code = match v {
            Verdict::Pass => {
                eprintln!(
                    "boot: PASS: all {} domains printed RESULT PASS; {timing}",
                    self.names.len()
                );
                0
            }
            Verdict::Fail(why) => {
                eprintln!("boot: FAIL: {why}; {timing}");
                1
            }
            Verdict::Timeout => {
                eprintln!(
                    "boot: FAIL: timeout; no RESULT PASS from {}; {timing}",
                    waiting.join(", ")
                );
                eprintln!(
                    "boot: Xen's state at the timeout (debug keys `{}`: domains and vCPUs, \
                     event channels, run queues, registers) is at the end of console.log",
                    super::TIMEOUT_DEBUG_KEYS
                );
                1
            }
            Verdict::Interrupted => {
                eprintln!("boot: interrupted; {timing}");
                130
            }
        };
        eprintln!(
            "work directory: {} (console.log, host.dtb, images/)",
            out.display()
        );
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_console_lines() {
        assert_eq!(
            classify("(XEN) DOM2: RESULT PASS x"),
            (Some(2), "RESULT PASS x")
        );
        assert_eq!(classify("(XEN) DOM12:"), (Some(12), ""));
        assert_eq!(
            classify("(XEN) Xen version 4.17"),
            (None, "Xen version 4.17")
        );
        assert_eq!(classify("(XEN) DOMAIN x"), (None, "DOMAIN x"));
        assert_eq!(classify("raw line"), (None, "raw line"));
    }

    fn watch() -> Watch {
        let names = [(1, "ping".to_string()), (2, "pong".to_string())].into();
        Watch::new(names, false)
    }

    #[test]
    fn passes_only_when_every_domain_passed() {
        let mut w = watch();
        let t = Duration::ZERO;
        assert_eq!(w.line("(XEN) DOM1: RESULT PASS rt", t), None);
        assert_eq!(w.line("(XEN) DOM1: RESULT PASS again", t), None);
        assert_eq!(
            w.line("(XEN) DOM2: RESULT PASS", t),
            Some(Event::Done(Verdict::Pass))
        );
    }

    #[test]
    fn a_failing_domain_or_a_panic_decides() {
        let mut w = watch();
        let t = Duration::ZERO;
        assert_eq!(
            w.line("(XEN) DOM2: RESULT FAIL checksum", t),
            Some(Event::Done(Verdict::Fail(
                "pong: RESULT FAIL checksum".into()
            )))
        );
        assert_eq!(w.line("(XEN) Panic on CPU 0:", t), Some(Event::Panic));
        // A guest line that merely mentions a result is not one.
        assert_eq!(w.line("(XEN) DOM1: waiting for RESULT PASS", t), None);
    }
}
