//! Build script: the linker script for the bare-metal images, handed to the image crate as
//! `links` metadata (`DEP_STATICBUS_IVSHMEM_GUEST_LINK_SCRIPT`).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let script = crate_dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:link_script={}", script.display());
}
