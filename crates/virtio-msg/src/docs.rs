//! Tests only: docs/virtio.md's generated tables are the ones the code defines.
//!
//! The block between `<!-- generated:NAME -->` and `<!-- end:NAME -->` must equal what
//! [`tables`] renders; `STATICBUS_BLESS=1 cargo test -p staticbus-virtio-msg docs`
//! rewrites it.

use crate::layout::REGION_FIELDS;
use crate::msg::{IDS, WIRE_STRUCTS};
use std::format;
use std::string::String;
use std::vec::Vec;

/// The generated blocks, by name.
fn tables() -> Vec<(&'static str, String)> {
    let mut region = String::from("| offset | size | field | writer | meaning |\n|-------:|-----:|-------|--------|---------|\n");
    for f in REGION_FIELDS {
        region += &format!(
            "| {:#06x} | {} | `{}` | {} | {} |\n",
            f.range.start,
            f.range.end - f.range.start,
            f.name,
            f.owner.name(),
            f.meaning
        );
    }
    let mut ids = String::from("| id | message |\n|---:|---------|\n");
    for (id, name) in IDS {
        ids += &format!("| {id:#04x} | `{name}` |\n");
    }
    let mut wire = String::new();
    for (name, fields, used) in WIRE_STRUCTS {
        let size: usize = fields.iter().map(|f| f.size).sum();
        let base = if *name == "Header" {
            "message"
        } else {
            "payload"
        };
        wire += &format!("**`{name}`** ({size} bytes at the start of the {base}) — {used}\n\n");
        wire += "| offset | size | field |\n|-------:|-----:|-------|\n";
        for f in *fields {
            wire += &format!("| {:#04x} | {} | `{}` |\n", f.offset, f.size, f.name);
        }
        wire += "\n";
    }
    std::vec![("region", region), ("ids", ids), ("messages", wire)]
}

fn doc_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/virtio.md")
}

#[test]
#[cfg_attr(miri, ignore = "reads docs/virtio.md from the file system")]
fn docs_virtio_md_tables_are_generated_from_the_code() {
    let path = doc_path();
    let mut doc = std::fs::read_to_string(&path).expect("docs/virtio.md");
    let bless = std::env::var_os("STATICBUS_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, body) in tables() {
        let open = format!("<!-- generated:{name} -->\n");
        let close = format!("<!-- end:{name} -->");
        let start = doc
            .find(&open)
            .unwrap_or_else(|| panic!("no `{open}` in docs/virtio.md"))
            + open.len();
        let end = start
            + doc[start..]
                .find(&close)
                .unwrap_or_else(|| panic!("no `{close}`"));
        if doc[start..end] != body {
            stale.push(name);
            doc.replace_range(start..end, &body);
        }
    }
    if bless && !stale.is_empty() {
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, &doc).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    } else {
        assert!(
            stale.is_empty(),
            "docs/virtio.md tables {stale:?} are stale; regenerate with STATICBUS_BLESS=1 cargo test -p staticbus-virtio-msg docs"
        );
    }
}
