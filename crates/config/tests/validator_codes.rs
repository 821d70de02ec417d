//! The validator names its rules: every code a module of `src/validate/` emits is named by
//! a `// SBxxxx: …` comment in that module, and every such comment names a code the module
//! emits (so the comments cannot go stale when a rule moves or goes).

use staticbus_config::codes;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Constant name → code id, read from the `codes!` table of `src/codes.rs`.
fn code_names() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(SRC).join("codes.rs")).unwrap();
    let mut names = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.trim().split_once(" = \"") else {
            continue;
        };
        let Some((id, _)) = rest.split_once('"') else {
            continue;
        };
        if name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && id.starts_with("SB")
        {
            names.insert(name.to_string(), id.to_string());
        }
    }
    let ids: BTreeSet<&str> = names.values().map(String::as_str).collect();
    let all: BTreeSet<&str> = codes::ALL.iter().map(|c| c.id).collect();
    assert_eq!(ids, all, "the table read from codes.rs is codes::ALL");
    names
}

/// (codes used in the code, codes named by `// SBxxxx:` comments) of one source file.
fn codes_of(text: &str, names: &BTreeMap<String, String>) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut used = BTreeSet::new();
    let mut named = BTreeSet::new();
    for line in text.lines() {
        let (code, comment) = match line.find("//") {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(id) = names.get(word) {
                used.insert(id.clone());
            }
        }
        let comment = comment.trim_start_matches('/').trim_start();
        if let Some((id, _)) = comment.split_once(':') {
            if id.len() == 6 && id.starts_with("SB") && id[2..].chars().all(|c| c.is_ascii_digit())
            {
                named.insert(id.to_string());
            }
        }
    }
    (used, named)
}

#[test]
fn every_rule_of_the_validator_is_named_by_its_code() {
    let names = code_names();
    let dir = Path::new(SRC).join("validate");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() > 1, "the validator is split by area");
    let mut all_used = BTreeSet::new();
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let (used, named) = codes_of(&text, &names);
        let file = f.file_name().unwrap().to_string_lossy();
        for id in used.difference(&named) {
            problems.push(format!(
                "{file} emits {id} but no `// {id}: …` comment names it"
            ));
        }
        for id in named.difference(&used) {
            problems.push(format!(
                "{file} has a `// {id}: …` comment but does not emit {id}"
            ));
        }
        all_used.extend(used);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan found the validator's rules at all: a sample from every area.
    for id in ["SB0109", "SB0219", "SB0301", "SB0408", "SB0417"] {
        assert!(all_used.contains(id), "{id} not found in src/validate/");
    }
}
