//! One protocol numbering everywhere: `staticbus_manifest::Protocol::id` is the source, and
//! the generated C header's `SB_PROTOCOL_*` values, `staticbus-proto`'s region-header
//! `PROTO_*` constants and docs/protocols.md must all name the same ids.

use staticbus_config::desc::{read_description, Overrides};
use staticbus_config::model::Protocol;
use staticbus_config::{emit, manifest, validate};
use staticbus_diag::Sources;
use std::path::Path;

/// Two domains and one channel of every protocol from `a` to `b`.
fn description() -> String {
    let mut t = String::from(
        r#"
[system]
name = "ids"

[target]
xen = "4.20"
static-shm = true
gic = "v3"

[platform]
ram = [{ base = 0x4000_0000, size = "2GiB" }]
shm-pool = { base = 0x7000_0000, size = "16MiB" }

[[domain]]
name = "a"
memory = "16MiB"
kernel = { size = "2MiB" }

[[domain]]
name = "b"
memory = "16MiB"
kernel = { size = "2MiB" }
"#,
    );
    for p in Protocol::ALL {
        t.push_str(&format!(
            "\n[[channel]]\nname = \"ch-{p}\"\nprotocol = \"{p}\"\nfrom = \"a\"\nto = \"b\"\nsize = \"16KiB\"\n"
        ));
        // The parameters the two ends must agree on.
        match p {
            Protocol::Log => t.push_str("slot-size = 64\n"),
            Protocol::Latest => t.push_str("value-size = 8\n"),
            _ => {}
        }
    }
    t
}

/// The C header of domain `a` of [`description`].
fn c_header() -> String {
    let text = description();
    let mut sources = Sources::new();
    let file = sources.add_text("ids.toml", text.clone());
    let (sys, diags) = read_description(
        file,
        &text,
        "ids",
        Path::new("/nonexistent"),
        &Overrides::default(),
    );
    let sys = sys.unwrap_or_else(|| panic!("{diags:?}"));
    let problems = validate(&sys);
    assert!(problems.is_empty(), "{problems:?}");
    let m = manifest::manifests(&sys)
        .into_iter()
        .find(|m| m.domain == "a")
        .expect("a manifest for domain a");
    assert_eq!(m.channels.len(), Protocol::ALL.len());
    emit::to_c_header(&m)
}

/// The C macro name of a protocol (`SB_PROTOCOL_QUEUE`).
fn c_name(p: Protocol) -> String {
    format!("SB_PROTOCOL_{}", p.as_str().to_ascii_uppercase())
}

#[test]
fn c_header_uses_the_manifest_ids() {
    let h = c_header();
    for p in Protocol::ALL {
        let line = format!("#define {} {}\n", c_name(p), p.id());
        assert!(h.contains(&line), "the C header lacks {line:?}");
        // Each channel's protocol macro names the protocol's constant.
        let chan = format!(
            "#define SB_CH_{}_PROTOCOL {}\n",
            p.as_str().to_ascii_uppercase(),
            c_name(p)
        );
        assert!(h.contains(&chan), "the C header lacks {chan:?}");
    }
    // No other value is defined for any protocol macro.
    let defs = h
        .lines()
        .filter(|l| l.starts_with("#define SB_PROTOCOL_"))
        .count();
    assert_eq!(defs, Protocol::ALL.len());
}

#[test]
fn region_header_constants_are_the_manifest_ids() {
    use staticbus_proto::header::{PROTO_BLOB, PROTO_LATEST, PROTO_LOG, PROTO_QUEUE};
    for p in Protocol::ALL {
        let constant = match p {
            Protocol::Queue => PROTO_QUEUE,
            Protocol::Log => PROTO_LOG,
            Protocol::Latest => PROTO_LATEST,
            Protocol::Blob => PROTO_BLOB,
        };
        assert_eq!(constant, p.id(), "{p}");
    }
}

/// docs/protocols.md.
fn protocols_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocols.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `(id, name)` pairs of the region-header table row
/// `| … | protocol id: 1 = queue, 2 = log, … |`.
fn doc_table_ids(doc: &str) -> Vec<(u32, String)> {
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with('|') && l.contains("protocol id:"))
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "one table row lists the protocol ids: {rows:?}"
    );
    let (_, list) = rows[0].split_once("protocol id:").unwrap();
    let list = list.trim().trim_end_matches('|').trim();
    list.split(',')
        .map(|pair| {
            let (id, name) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("not `id = name`: {pair:?}"));
            let id = id.trim().parse().unwrap_or_else(|e| panic!("{id:?}: {e}"));
            (id, name.trim().to_string())
        })
        .collect()
}

/// The `(id, name)` pairs of the section headings `## 3. Queue (protocol id 1, version 2)`,
/// the name lower-cased.
fn doc_heading_ids(doc: &str) -> Vec<(u32, String)> {
    doc.lines()
        .filter(|l| l.starts_with("## "))
        .filter_map(|l| {
            let (title, rest) = l.split_once("(protocol id ")?;
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let id = id.parse().unwrap_or_else(|e| panic!("{l:?}: {e}"));
            // "## 3. Queue " → "queue"
            let (_, name) = title.trim().split_once(". ").unwrap_or(("", title.trim()));
            Some((id, name.trim().to_ascii_lowercase()))
        })
        .collect()
}

#[test]
fn protocols_md_names_the_manifest_ids() {
    let doc = protocols_md();
    let table = doc_table_ids(&doc);
    let headings = doc_heading_ids(&doc);
    assert_eq!(table.len(), Protocol::ALL.len(), "table row: {table:?}");
    assert_eq!(
        headings.len(),
        Protocol::ALL.len(),
        "headings: {headings:?}"
    );
    for p in Protocol::ALL {
        let want = (p.id(), p.as_str().to_string());
        assert!(table.contains(&want), "table row {table:?} lacks {want:?}");
        assert!(
            headings.contains(&want),
            "headings {headings:?} lack {want:?}"
        );
    }
}
