//! The domain sandbox launcher of `staticbus run` (see `staticbus_emu_runner::sandbox`):
//! `staticbus-sandbox [--uid N] -- PROGRAM [ARGS…]`.

fn main() {
    staticbus_emu_runner::sandbox::launcher_main()
}
