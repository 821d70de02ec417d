//! Compiles in the failing and fixed example of every rule: each `tests/fixtures/rules/NAME.fixed.EXT`
//! (written and checked by `tests/rules.rs`) and its failing counterpart `NAME.EXT`, for
//! `staticbus explain` (`src/examples.rs`). The test and `explain` read the same files.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("tests/fixtures/rules");
    println!("cargo:rerun-if-changed=tests/fixtures/rules");
    let mut entries: Vec<(String, u8, String, String)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((stem, ext)) = name.split_once(".fixed.") else {
                continue;
            };
            let failing = format!("{stem}.{ext}");
            if !dir.join(&failing).is_file() || stem.len() < 6 || !stem.starts_with("sb") {
                continue;
            }
            let code = stem[..6].to_ascii_uppercase();
            // Descriptions first: what people write.
            let rank = u8::from(ext != "toml");
            entries.push((code, rank, failing, name));
        }
    }
    entries.sort();
    let mut out = String::from("/// Every rule example, by code (descriptions before device trees).\npub const ALL: &[Example] = &[\n");
    for (code, _, failing, fixed) in &entries {
        let abs = |n: &str| dir.join(n).display().to_string();
        let _ = writeln!(
            out,
            "    Example {{ code: {code:?}, path: {:?}, failing: include_str!({:?}), fixed: Some(include_str!({:?})), fixed_by: None }},",
            format!("crates/config/tests/fixtures/rules/{failing}"),
            abs(failing),
            abs(fixed),
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("examples.rs");
    std::fs::write(dest, out).expect("write examples.rs");
}
