//! Build script: links the bare-metal images with the runtime's linker script, which the
//! runtime crate hands over as `links` metadata (`DEP_STATICBUS_IVSHMEM_GUEST_LINK_SCRIPT`).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "none" && arch == "aarch64" {
        let script = std::env::var("DEP_STATICBUS_IVSHMEM_GUEST_LINK_SCRIPT")
            .expect("staticbus-guest-ivshmem-aarch64 names its linker script (links metadata)");
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
