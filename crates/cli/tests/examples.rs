//! Every example description names, in its header comment, the commands that work on it;
//! this test runs them the way the header says (from the repository root).
//!
//! - `staticbus check …` and `staticbus build …` run as written (`-o` goes to a temporary
//!   folder) and must exit 0;
//! - `staticbus run …`: the description must check clean and every domain must have an
//!   `emulate` program; the emulator runs themselves are in `tests/run.rs` (which builds
//!   the programs), and it must name the example;
//! - `staticbus boot …`: the description must check clean; the boots are in
//!   `tests/boot.rs` (or `tests/linux.rs`, `tests/ivshmem.rs`), which must name the example.
//!
//! A configuration-only example (no `emulate` programs) must be refused by `run` with a
//! message that says so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `staticbus` commands of the header comment (leading `#` lines) of `text`, each as
/// its words after `staticbus` (continuation lines joined).
fn header_commands(text: &str) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let Some(c) = l.strip_prefix('#') else { break };
        let c = c.trim();
        if let Some(head) = c.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(c);
        lines.push(std::mem::take(&mut cur));
    }
    let mut out = Vec::new();
    for l in lines {
        for part in l.split("&&") {
            let words: Vec<&str> = part.split_whitespace().collect();
            let start = if let Some(i) = words.windows(2).position(|w| w == ["staticbus", "--"]) {
                i + 2
            } else if words.first() == Some(&"staticbus") {
                1
            } else {
                continue;
            };
            if words.len() > start {
                out.push(words[start..].iter().map(|w| w.to_string()).collect());
            }
        }
    }
    out
}

fn staticbus(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_staticbus"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run staticbus")
}

fn emulate_programs(desc: &Path) -> Vec<Option<String>> {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(desc).unwrap()).unwrap();
    v.get("domain")
        .and_then(|d| d.as_array())
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    d.get("emulate")
                        .and_then(|e| e.get("program"))
                        .and_then(|p| p.as_str())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_example_header_command_works() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("system.toml"))
        .filter(|p| p.is_file())
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "examples missing: {examples:?}");
    let mut failures = Vec::new();
    for desc in &examples {
        let rel = desc.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(desc).unwrap();
        let cmds = header_commands(&text);
        if cmds.is_empty() {
            failures.push(format!("{rel}: its header names no staticbus command"));
            continue;
        }
        for cmd in cmds {
            let shown = cmd.join(" ");
            let tmp = tempfile::tempdir().unwrap();
            let mut args = cmd.clone();
            if let Some(i) = args.iter().position(|a| a == "-o") {
                if i + 1 < args.len() {
                    args[i + 1] = tmp.path().join("out").display().to_string();
                }
            }
            match args[0].as_str() {
                "check" | "build" => {
                    let o = staticbus(&args);
                    if !o.status.success() {
                        failures.push(format!(
                            "{rel}: `staticbus {shown}` exits {:?}:\n{}",
                            o.status.code(),
                            String::from_utf8_lossy(&o.stderr)
                        ));
                    }
                }
                "run" | "boot" => {
                    let Some(file) = args.iter().skip(1).find(|a| a.ends_with(".toml")) else {
                        failures.push(format!("{rel}: `staticbus {shown}` names no description"));
                        continue;
                    };
                    let o = staticbus(&["check".to_string(), file.clone()]);
                    if !o.status.success() {
                        failures.push(format!(
                            "{rel}: `staticbus check {file}` (for `{shown}`) exits {:?}:\n{}",
                            o.status.code(),
                            String::from_utf8_lossy(&o.stderr)
                        ));
                    }
                    // Boots of descriptions with a Linux domain are in tests/linux.rs, those
                    // of the qemu-ivshmem platform in tests/ivshmem.rs.
                    let (runner, also): (&str, &[&str]) = if args[0] == "run" {
                        ("run.rs", &[])
                    } else {
                        ("boot.rs", &["linux.rs", "ivshmem.rs"])
                    };
                    let read = |f: &str| {
                        std::fs::read_to_string(
                            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(f),
                        )
                        .unwrap()
                    };
                    let tests: String = std::iter::once(runner)
                        .chain(also.iter().copied())
                        .map(read)
                        .collect();
                    let dir = rel.trim_end_matches("/system.toml");
                    if !tests.contains(&format!("\"{dir}/")) {
                        failures.push(format!(
                            "{rel}: `staticbus {shown}` is run by no test in tests/{runner}"
                        ));
                    }
                    if args[0] == "run" && emulate_programs(&root().join(file)).contains(&None) {
                        failures.push(format!(
                            "{rel}: `staticbus {shown}` but a domain has no `emulate` program"
                        ));
                    }
                }
                other => failures.push(format!("{rel}: unknown command `staticbus {other}`")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_configuration_only_example_is_refused_by_run_with_a_reason() {
    let o = staticbus(&["run".into(), "examples/demo/system.toml".into()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has no `emulate` program") && err.contains("check` and `build` only"),
        "{err}"
    );
}

#[test]
fn header_commands_are_read_like_a_shell_reader_would() {
    let text = "# x\n#\n#   cargo build --workspace && \\\n#     cargo run -p staticbus -- run a.toml --restart-on-crash\n#   staticbus check a.toml\n\n#   staticbus build b.toml\n";
    assert_eq!(
        header_commands(text),
        vec![
            vec!["run", "a.toml", "--restart-on-crash"],
            vec!["check", "a.toml"],
        ]
    );
}
