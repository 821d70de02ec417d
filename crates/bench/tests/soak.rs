//! The soak's account catches what it must: a short soak passes, and one in which the
//! producer loses or duplicates one message (a fault injected on purpose) fails and names
//! it. (The long soaks are a command: BENCHMARKS.md; CI runs a two-minute one.)

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Once;

/// `staticbus` and the sandbox launcher, next to this benchmark's binary.
fn build_runner() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_staticbus-bench"))
            .parent()
            .unwrap()
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "staticbus",
            "-p",
            "staticbus-emu-runner",
            "--bins",
        ]);
        if bin_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(cmd.current_dir(root).status().unwrap().success());
    });
}

fn soak(extra: &[&str]) -> (Output, String) {
    build_runner();
    let o = Command::new(env!("CARGO_BIN_EXE_staticbus-bench"))
        .args(["soak", "--duration", "6s", "--kill-interval-ms", "300"])
        .args(["--self-kill-every", "5000", "--rate", "10000"])
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

/// The value in column `col` of the account row `row`.
fn cell(text: &str, row: &str, col: usize) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no `{row}` row\n{text}"));
    line.split_whitespace().nth(col).unwrap().parse().unwrap()
}

#[test]
fn a_soak_with_kills_of_every_end_accounts_for_every_message() {
    let (o, text) = soak(&[]);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("PASS nothing lost or duplicated"), "{text}");
    for row in ["queue ", "log "] {
        let (sent, delivered) = (cell(&text, row, 1), cell(&text, row, 2));
        assert!(
            sent > 10_000 && delivered > 0 && delivered <= sent,
            "{text}"
        );
        assert_eq!((cell(&text, row, 3), cell(&text, row, 4)), (0, 0), "{text}");
    }
    // Both ends of both channels were restarted (column: `producer+consumer`).
    for row in ["queue ", "log "] {
        let line = text.lines().find(|l| l.starts_with(row)).unwrap();
        let restarts = line
            .split_whitespace()
            .rev()
            .find(|w| w.contains('+'))
            .unwrap();
        let (a, b) = restarts.split_once('+').unwrap();
        assert!(
            a.parse::<u64>().unwrap() > 0 && b.parse::<u64>().unwrap() > 0,
            "{text}"
        );
    }
}

#[test]
fn a_lost_or_duplicated_message_fails_the_soak() {
    let (o, text) = soak(&["--inject", "lose"]);
    assert!(!o.status.success(), "{text}");
    assert_eq!(
        (cell(&text, "queue ", 3), cell(&text, "queue ", 4)),
        (1, 0),
        "{text}"
    );
    let (o, text) = soak(&["--inject", "duplicate"]);
    assert!(!o.status.success(), "{text}");
    assert_eq!(
        (cell(&text, "queue ", 3), cell(&text, "queue ", 4)),
        (0, 1),
        "{text}"
    );
}
