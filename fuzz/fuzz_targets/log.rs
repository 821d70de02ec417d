#![no_main]
//! Placeholder: the hostile-peer fuzz target for `log` is being written.
use libfuzzer_sys::fuzz_target;
fuzz_target!(|_data: &[u8]| {});
