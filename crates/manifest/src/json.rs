//! Reading and writing a domain's JSON manifest (`domains/<name>/manifest.json`, as
//! `staticbus build` writes it; feature `json`). The JSON is the `serde` form of
//! [`owned::Manifest`]: one schema for the compiler that writes it and the processes that
//! read it.
//!
//! [`load`] leaks the result into the `'static` borrowed form guests use: a process loads its
//! manifest once. The domain processes of `staticbus run` load theirs through this, and so
//! does the runner, which checks them against what the host tree binds.

use crate::owned;
use std::format;
use std::string::String;

/// The manifest as `staticbus build` writes it: pretty-printed JSON and a final newline.
pub fn to_string(m: &owned::Manifest) -> String {
    // Strings, integers, booleans and options always serialise.
    let mut s = serde_json::to_string_pretty(m).expect("a manifest always serialises");
    s.push('\n');
    s
}

/// Parses a JSON manifest (another `format`, or a layout version other than
/// [`crate::FORMAT_VERSION`], is refused).
pub fn parse(text: &str) -> Result<owned::Manifest, String> {
    /// The `format` field alone (serde reads an internal tag of a struct without checking
    /// its value).
    #[derive(serde::Deserialize)]
    struct Format {
        format: Option<String>,
    }
    let f: Format = serde_json::from_str(text).map_err(|e| format!("manifest: {e}"))?;
    if f.format.as_deref() != Some(owned::FORMAT) {
        return Err(format!(
            "not a manifest: `format` is {}, want \"{}\"",
            f.format.map_or("missing".into(), |v| format!("{v:?}")),
            owned::FORMAT
        ));
    }
    let m: owned::Manifest = serde_json::from_str(text).map_err(|e| format!("manifest: {e}"))?;
    if m.format_version != crate::FORMAT_VERSION {
        return Err(format!(
            "manifest format {} version {} is not supported (want {} {})",
            owned::FORMAT,
            m.format_version,
            owned::FORMAT,
            crate::FORMAT_VERSION
        ));
    }
    Ok(m)
}

/// Parses a JSON manifest and leaks it as `'static` data.
pub fn load(text: &str) -> Result<&'static crate::Manifest, String> {
    parse(text).map(owned::Manifest::leak)
}
