//! The manifests of the system this image was built for.
//!
//! `build.rs` reads `STATICBUS_MANIFEST_DIR` (the output directory of
//! `staticbus build -o DIR`, or its `domains/` subdirectory) at build time and compiles in
//! every `domains/<name>/manifest.rs` it finds: the Rust manifests staticbus generates,
//! typed against `staticbus-manifest`. One image then serves every domain of the system;
//! at boot the runtime picks the domain's manifest by the `staticbus.domain=<name>`
//! argument of its command line ([`crate::bootargs::DOMAIN_KEY`]), which the description
//! sets as the kernel module's `bootargs`.
//!
//! Without `STATICBUS_MANIFEST_DIR` the table is empty (host builds, CI).

use staticbus_manifest::Manifest;

include!(concat!(env!("OUT_DIR"), "/manifests.rs"));

/// Every compiled-in manifest, in domain-name order.
pub fn all() -> &'static [&'static Manifest] {
    MANIFESTS
}

/// The manifest of domain `name`.
pub fn find(name: &str) -> Option<&'static Manifest> {
    MANIFESTS.iter().copied().find(|m| m.domain == name)
}

/// The manifest named by `staticbus.domain=<name>` on the command line `bootargs`.
pub fn for_bootargs(bootargs: &str) -> Option<&'static Manifest> {
    find(crate::bootargs::value(
        bootargs,
        crate::bootargs::DOMAIN_KEY,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_match_by_domain_name() {
        // Host test builds normally have no STATICBUS_MANIFEST_DIR: an empty table.
        for m in all() {
            assert_eq!(find(m.domain), Some(*m));
            let args = std::format!("x=1 staticbus.domain={} y", m.domain);
            assert_eq!(for_bootargs(&args), Some(*m));
        }
        assert_eq!(find("no such domain, surely"), None);
        assert_eq!(for_bootargs("role=ping"), None);
    }
}
