//! Manifest emitters (placeholder until the emitters land: JSON only).

use crate::manifest::DomainManifest;

/// JSON.
pub fn to_json(m: &DomainManifest) -> String {
    let mut s = serde_json::to_string_pretty(m).unwrap_or_default();
    s.push('\n');
    s
}

/// Rust source.
pub fn to_rust(_m: &DomainManifest) -> String {
    String::new()
}

/// C header.
pub fn to_c_header(_m: &DomainManifest) -> String {
    String::new()
}

/// DT fragment source.
pub fn to_dt_source(_m: &DomainManifest) -> String {
    String::new()
}
