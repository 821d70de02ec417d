//! Build script: the linker script for bare-metal images, handed to the image crates as
//! `links` metadata. (The compiled-in manifests are `staticbus-baremetal-aarch64`'s.)

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));

    // The images link at 0x40000000 with this layout (Image header first).
    let script = crate_dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    // For the image crates (`links` metadata): their build scripts read it as
    // DEP_STATICBUS_XEN_GUEST_LINK_SCRIPT and pass it to their linker.
    println!("cargo:link_script={}", script.display());
}
