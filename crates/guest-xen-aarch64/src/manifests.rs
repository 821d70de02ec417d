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
