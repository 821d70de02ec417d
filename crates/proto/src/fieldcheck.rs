//! Tests only: checks that a protocol's hashed field table is built from the constants
//! its code uses (smoltcp's `mod field` pattern, docs/protocols.md §2.3).

use crate::header::{protocol_layout_hash, Field};
use std::string::String;
use std::vec::Vec;

/// The lines of `src` (trimmed) from the top-level one starting with `start` to the first
/// top-level line that is exactly `end` (the item's closing line; rustfmt indents
/// everything inside), inclusive.
fn block<'a>(src: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = src.lines().skip_while(|l| !l.starts_with(start)).collect();
    if let Some(i) = out.iter().position(|&l| l == end) {
        out.truncate(i + 1);
    }
    assert!(!out.is_empty(), "no `{start}` block");
    out.into_iter().map(str::trim).collect()
}

/// The name of a `pub const NAME: TY = …` line with type `ty`.
fn const_name<'a>(line: &'a str, ty: &str) -> Option<&'a str> {
    let rest = line.strip_prefix("pub const ")?;
    let (name, rest) = rest.split_once(':')?;
    rest.trim_start().starts_with(ty).then_some(name.trim())
}

/// Is `name` an offset constant (the names the protocols give byte offsets)?
fn is_offset(name: &str) -> bool {
    ["OFF_", "SLOT_", "BANK_", "READER_", "SIDE_"]
        .iter()
        .any(|p| name.starts_with(p))
        || ["DATA_OFFSET", "READERS_OFFSET", "RECORD_HEADER"].contains(&name)
}

/// Checks the source of a protocol module (`src`, its `include_str!`):
///
/// * every `Range<usize>` constant of its `pub mod field` appears as `field::NAME` in the
///   table that starts with the line `table` (`pub const FIELDS`), unless `unhashed`
///   names it (fields that were never hashed; adding them would change the wire hash);
/// * no `unhashed` name is in the table;
/// * every offset constant (`OFF_*`, `SLOT_*`, … of type `usize`) outside `mod field` is
///   derived from `field::`, so the code cannot use an offset the table does not have.
///
/// Panics with what is wrong.
pub fn check(src: &str, table: &str, unhashed: &[&str]) {
    let fields = block(src, "pub mod field {", "}");
    let names: Vec<&str> = fields
        .iter()
        .filter_map(|l| const_name(l, "Range<usize>"))
        .collect();
    assert!(!names.is_empty(), "`mod field` declares no ranges");
    let table: String = block(src, table, "];").join("\n");
    for n in &names {
        let hashed = table.contains(&std::format!("field::{n})"));
        if unhashed.contains(n) {
            assert!(!hashed, "field::{n} is hashed but listed as unhashed");
        } else {
            assert!(hashed, "field::{n} is not in the hashed table");
        }
    }
    for u in unhashed {
        assert!(names.contains(u), "unhashed `{u}` is not a field");
    }
    let mut in_field = false;
    for raw in src.lines() {
        let line = raw.trim();
        if raw.starts_with("pub mod field {") {
            in_field = true;
        } else if in_field && raw == "}" {
            in_field = false;
        } else if !in_field {
            if let Some(n) = const_name(line, "usize").filter(|n| is_offset(n)) {
                assert!(
                    line.contains("field::"),
                    "offset `{n}` is not derived from `mod field`: {line}"
                );
            }
        }
    }
}

/// `fields` hashes to `hash`, and moving or resizing any one entry changes the hash.
pub fn hash_covers(fields: &[Field], hash: u64) {
    assert_eq!(protocol_layout_hash(fields), hash);
    for i in 0..fields.len() {
        for (d_off, d_size) in [(1, 0), (0, 1)] {
            let mut t = fields.to_vec();
            t[i].offset += d_off;
            t[i].size += d_size;
            assert_ne!(protocol_layout_hash(&t), hash, "entry {}", fields[i].name);
        }
    }
}

#[test]
fn a_field_missing_from_the_table_fails() {
    let ok = "pub mod field {\npub const A: Range<usize> = 0..4;\npub const B: Range<usize> = 4..8;\n}\n\
              pub const OFF_A: usize = field::A.start;\n\
              pub const FIELDS: &[Field] = &[\nField::new(\"a\", field::A),\nField::new(\"b\", field::B),\n];\n";
    check(ok, "pub const FIELDS", &[]);
    let missing = ok.replace("Field::new(\"b\", field::B),\n", "");
    let r = std::panic::catch_unwind(|| check(&missing, "pub const FIELDS", &[]));
    assert!(r.is_err(), "B is used but not hashed");
    check(&missing, "pub const FIELDS", &["B"]);
    let literal = ok.replace("field::A.start;", "0;");
    let r = std::panic::catch_unwind(|| check(&literal, "pub const FIELDS", &[]));
    assert!(r.is_err(), "OFF_A does not come from mod field");
}
