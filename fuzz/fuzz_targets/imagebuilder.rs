//! The ImageBuilder importer on arbitrary text: diagnostics, never a panic, every span inside
//! the text; an import without errors gives a description the staticbus reader accepts as
//! TOML and against its schema (the files a configuration names are assumed, 1 MiB each).
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_config::desc::{read_description, Overrides};
use staticbus_diag::{Location, Sources};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = Sources::new();
    let file = sources.add_text("fuzz.cfg", text.to_string());
    let opts = staticbus_import::Options {
        root: "/nonexistent".into(),
        out_dir: "/nonexistent".into(),
        load_cmd: None,
        name: "fuzz".into(),
        xen: None,
        assume_size: Some(1 << 20),
    };
    let im = staticbus_import::import(&sources, file, text, &opts);
    for d in &im.diags {
        if let Location::Span { span } = d.location {
            assert!(span.range().end <= text.len());
            assert!(text.is_char_boundary(span.range().start) && text.is_char_boundary(span.range().end));
        }
    }
    assert!(!(im.diags.has_errors() && im.toml.is_some()));
    if let Some(toml) = im.toml {
        let tf = sources.add_text("fuzz.toml", toml.clone());
        let (_, d) = read_description(tf, &toml, "fuzz", Path::new("/nonexistent"), &Overrides::default());
        assert!(!d.has_code("SB0501"), "the importer wrote TOML the reader refuses:\n{toml}");
    }
});
