//! The TOML system description reader, allocator, validator and build on arbitrary text:
//! diagnostics, never a panic; a description that passes the check must build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_config::compile::build_outputs;
use staticbus_config::desc::{read_description, Overrides};
use staticbus_config::validate;
use staticbus_diag::Sources;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = Sources::new();
    let file = sources.add_text("fuzz.toml", text.to_string());
    let (sys, _) = read_description(file, text, "fuzz", Path::new("/nonexistent"), &Overrides::default());
    if let Some(sys) = sys {
        let diags = validate(&sys);
        if !diags.has_errors() {
            let _ = build_outputs(&sys, None);
        }
    }
});
