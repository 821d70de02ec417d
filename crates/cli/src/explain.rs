//! `staticbus explain CODE`: the rule, what Xen does without it, and the failing and fixed
//! example the rule's own test checks (rustc's `--explain` is the model). The examples are
//! the test's files, compiled in (`staticbus_config::examples`, `staticbus_import::examples`).

use similar::TextDiff;
use staticbus_diag::{Code, Example};
use std::fmt::Write;

/// Every example of every crate, by code.
pub fn examples_of(code: &str) -> Vec<&'static Example> {
    staticbus_config::examples::of(code)
        .chain(
            staticbus_import::examples::ALL
                .iter()
                .filter(|e| e.code == code),
        )
        .collect()
}

fn indent(text: &str) -> String {
    let mut s = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(s, "    {:>3} | {line}", i + 1);
    }
    s
}

/// The long explanation of `c`.
pub fn explain(c: &Code) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({}): {}",
        c.id,
        format!("{:?}", c.severity).to_lowercase(),
        c.title
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "What Xen does: {}", c.xen);
    let ex = examples_of(c.id);
    let Some(first) = ex.first() else {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "No example file for this rule: its test builds the input in code."
        );
        return s;
    };
    let _ = writeln!(s);
    let _ = writeln!(s, "Erroneous example ({}):", first.path);
    let _ = writeln!(s);
    s.push_str(&indent(first.failing));
    let _ = writeln!(s);
    match (first.fixed, first.fixed_by) {
        (Some(fixed), _) => {
            let _ = writeln!(
                s,
                "Fixed (the same file with this change, which the rule's test checks is clean):"
            );
            let _ = writeln!(s);
            let diff = TextDiff::from_lines(first.failing, fixed);
            for group in diff.grouped_ops(2) {
                for op in group {
                    for change in diff.iter_changes(&op) {
                        let (sign, line) = match change.tag() {
                            similar::ChangeTag::Equal => (' ', change.old_index()),
                            similar::ChangeTag::Delete => ('-', change.old_index()),
                            similar::ChangeTag::Insert => ('+', change.new_index()),
                        };
                        let n = line.map(|l| l + 1).unwrap_or(0);
                        let _ = write!(s, "    {n:>3} {sign} {}", change.value());
                        if change.missing_newline() {
                            s.push('\n');
                        }
                    }
                }
                let _ = writeln!(s, "        ...");
            }
        }
        (None, Some(by)) => {
            let _ = writeln!(s, "Fixed by: {by}");
        }
        (None, None) => {}
    }
    if ex.len() > 1 {
        let _ = writeln!(s);
        let _ = writeln!(s, "More examples:");
        for e in &ex[1..] {
            let _ = writeln!(s, "    {}", e.path);
        }
    }
    s
}

/// Codes close to `want` (a mistyped id, or words of a title), best first.
pub fn close_matches<'a>(want: &str, codes: &'a [Code]) -> Vec<&'a Code> {
    let w = want.to_ascii_uppercase();
    let mut by_id: Vec<(usize, &Code)> = codes
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&w, c.id), c))
        .filter(|(d, _)| *d <= 2)
        .collect();
    by_id.sort_by_key(|(d, c)| (*d, c.id));
    let mut out: Vec<&Code> = by_id.into_iter().map(|(_, c)| c).take(5).collect();
    if out.is_empty() {
        let words: Vec<String> = want
            .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
            .filter(|w| w.len() > 2)
            .map(str::to_lowercase)
            .collect();
        if !words.is_empty() {
            out = codes
                .iter()
                .filter(|c| {
                    let t = c.title.to_lowercase();
                    words.iter().all(|w| t.contains(w.as_str()))
                })
                .take(8)
                .collect();
        }
    }
    out
}
