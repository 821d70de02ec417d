//! `linux-init`: the `/init` of a Linux domU's initramfs (see
//! `staticbus_linux_domains::init`): mounts, loads the modules, starts the domain's
//! program, powers off.

fn main() {
    staticbus_linux_domains::init::main(std::path::Path::new("/"))
}
