//! The workspace's dependency graph is the one docs/adr/0003 allows: every crate's normal
//! dependencies on workspace crates are in its row of the ADR's table, and every workspace
//! crate has a row. The ADR is the source of truth; this test reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const ADR: &str = "docs/adr/0003-emulator-layers-and-dependency-graph.md";

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The ADR's table: crate → allowed workspace dependencies.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join(ADR)).expect("read the ADR");
    let section = text
        .split("## The allowed dependency graph")
        .nth(1)
        .expect("the ADR has its dependency-graph section");
    let mut rows = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| crate | deps |` rows: ["", crate, deps, ""].
        if cells.len() != 4 || !cells[1].starts_with("`staticbus") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let deps = cells[2]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_string())
            .filter(|d| !d.is_empty())
            .collect();
        assert!(
            rows.insert(name.clone(), deps).is_none(),
            "{ADR}: two rows for `{name}`"
        );
    }
    rows
}

/// `cargo metadata`: workspace crate → its normal dependencies on workspace crates.
fn actual() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = m["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn every_arrow_is_one_the_adr_allows() {
    let allowed = allowed();
    let actual = actual();
    assert!(
        actual.len() >= 15,
        "cargo metadata saw {} crates",
        actual.len()
    );
    let mut wrong = Vec::new();
    for (krate, deps) in &actual {
        let Some(ok) = allowed.get(krate) else {
            wrong.push(format!("`{krate}` has no row in {ADR}"));
            continue;
        };
        for d in deps.difference(ok) {
            wrong.push(format!(
                "`{krate}` depends on `{d}`, which {ADR} does not allow"
            ));
        }
    }
    for krate in allowed.keys() {
        if !actual.contains_key(krate) {
            wrong.push(format!(
                "{ADR} has a row for `{krate}`, which is not in the workspace"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn runtime_crates_never_reach_the_tool_side() {
    // Whatever the table says: nothing a guest links may reach the compiler, the
    // diagnostics or the device-tree toolkit, even through another crate.
    let actual = actual();
    let tool = [
        "staticbus-config",
        "staticbus-diag",
        "staticbus-dt",
        "staticbus",
    ];
    let runtime = [
        "staticbus-abi",
        "staticbus-manifest",
        "staticbus-guest",
        "staticbus-proto",
        "staticbus-programs",
        "staticbus-guest-xen-aarch64",
        "staticbus-xen-domains",
        "staticbus-baremetal-aarch64",
        "staticbus-guest-ivshmem-aarch64",
        "staticbus-ivshmem-domains",
        "staticbus-ivshmem-server",
        "staticbus-guest-emu",
        "staticbus-emu-domains",
        "staticbus-emu",
        "staticbus-emu-wire",
    ];
    for r in runtime {
        let mut seen = BTreeSet::new();
        let mut todo = vec![r.to_string()];
        while let Some(c) = todo.pop() {
            for d in actual.get(&c).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        for t in tool {
            assert!(!seen.contains(t), "`{r}` reaches `{t}`");
        }
    }
}

/// The README's layout table has one row per workspace crate (`| `crates/NAME` | … |`),
/// and names no crate that is not there.
#[test]
fn the_readme_layout_table_lists_every_crate() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read the README");
    let rows: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `crates/"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let crates: BTreeSet<String> = std::fs::read_dir(root().join("crates"))
        .expect("read crates/")
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let missing: Vec<_> = crates.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&crates).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README.md's layout table: no row for {missing:?}; rows for crates that do not exist: {stale:?}"
    );
}
