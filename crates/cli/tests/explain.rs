//! `staticbus explain CODE`: the rule, what Xen does, and the failing and fixed example of
//! the rule's own test — for every code that has one; the codes without are listed here, so
//! a new code without an example (or a new example) shows up in this test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Codes whose tests build their input in code (the DTS/DTB parser's tests, the allocator's
/// generated input, I/O errors, input kinds, base trees): no example file to show.
const WITHOUT_EXAMPLE: &[&str] = &[
    "SB0001", "SB0002", "SB0003", "SB0004", "SB0005", "SB0006", "SB0007", "SB0008", "SB0009",
    "SB0010", "SB0011", "SB0012", "SB0013", "SB0014", "SB0015", "SB0016", "SB0017", "SB0018",
    "SB0019", "SB0020", "SB0021", "SB0022", "SB0023", "SB0024", "SB0025", "SB0026", "SB0027",
    "SB0028", "SB0029", "SB0030", "SB0031", "SB0032", "SB0033", "SB0040", "SB0041", "SB0042",
    "SB0043", "SB0044", "SB0045", "SB0046", "SB0047", "SB0048", "SB0049", "SB0050", "SB0051",
    "SB0052", "SB0053", "SB0054", "SB0090", "SB0091", "SB0092", "SB0093", "SB0094", "SB0095",
    "SB0096", "SB0097", "SB0604", "SB0701", "SB0702", "SB0703",
];

#[test]
fn a_rule_with_its_failing_and_fixed_example() {
    let o = run(&["explain", "SB0110"]);
    assert_eq!(o.status.code(), Some(0));
    let s = stdout(&o);
    assert!(
        s.starts_with("SB0110 (error): event-channel port out of range"),
        "{s}"
    );
    assert!(
        s.contains("What Xen does: `evtchn_alloc_unbound() failure (Error -28)`"),
        "{s}"
    );
    assert!(
        s.contains(
            "Erroneous example (crates/config/tests/fixtures/rules/sb0110_evtchn_port_range.toml):"
        ),
        "{s}"
    );
    assert!(s.contains("     23 | a = \"sensor:1024\""), "{s}");
    assert!(s.contains("     23 - a = \"sensor:1024\""), "{s}");
    assert!(s.contains("     23 + a = \"sensor:1023\""), "{s}");
    // A code with a TOML and a DTS fixture shows the description and names the other.
    let s = stdout(&run(&["explain", "sb0109"]));
    assert!(s.contains("sb0109_evtchn_port_zero.toml):"), "{s}");
    assert!(
        s.contains(
            "More examples:\n    crates/config/tests/fixtures/rules/sb0109_evtchn_port_zero.dts"
        ),
        "{s}"
    );
    // The importer's codes too.
    let s = stdout(&run(&["explain", "SB0803"]));
    assert!(
        s.contains("crates/import/tests/examples/sb0803_bad_value.cfg"),
        "{s}"
    );
    assert!(s.contains("+ DOMU_MEM[0]=\"256\""), "{s}");
}

#[test]
fn every_code_has_an_example_or_is_listed_without() {
    let list = stdout(&run(&["explain", "--list"]));
    let codes: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(codes.len() > 150, "{list}");
    let mut lacking = Vec::new();
    for code in &codes {
        let s = stdout(&run(&["explain", code]));
        match s
            .lines()
            .find_map(|l| l.strip_prefix("Erroneous example ("))
        {
            Some(rest) => {
                // The example is a file of the repository: the test's own input.
                let path = rest.trim_end_matches("):");
                assert!(root().join(path).is_file(), "{code}: {path} is not a file");
                assert!(s.contains("Fixed"), "{code}: no fix shown\n{s}");
            }
            None => lacking.push(*code),
        }
    }
    assert_eq!(
        lacking, WITHOUT_EXAMPLE,
        "the codes without an example changed: update WITHOUT_EXAMPLE (better: give the new code a failing and fixed fixture)"
    );
}

#[test]
fn unknown_codes_get_close_matches() {
    let o = run(&["explain", "SB0119"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("error: unknown code `SB0119`"), "{e}");
    assert!(e.contains("did you mean:"), "{e}");
    assert!(e.contains("SB0110  event-channel port out of range"), "{e}");
    // Words find codes by their title.
    let o = run(&["explain", "static-mem"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("SB0417"), "{e}");
    // Nothing close: still a clear error.
    let o = run(&["explain", "zzzz"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("staticbus explain --list"));
}
