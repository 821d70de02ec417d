//! The failing and fixed example of every code, the files `tests/configs.rs` checks
//! (`tests/examples/`), for `staticbus explain`.

use staticbus_diag::Example;

macro_rules! example {
    ($code:literal, $name:literal, $line:literal) => {
        (
            Example {
                code: $code,
                path: concat!("crates/import/tests/examples/", $name, ".cfg"),
                failing: include_str!(concat!("../tests/examples/", $name, ".cfg")),
                fixed: Some(include_str!(concat!(
                    "../tests/examples/",
                    $name,
                    ".fixed.cfg"
                ))),
                fixed_by: None,
            },
            $line,
        )
    };
}

/// One example per code of [`crate::codes::ALL`], in code order.
pub const ALL: &[Example] = &{
    let mut out = [EXPECTED[0].0; EXPECTED.len()];
    let mut i = 0;
    while i < EXPECTED.len() {
        out[i] = EXPECTED[i].0;
        i += 1;
    }
    out
};

/// Each example and the line its code is reported on (`0`: on the whole file), which
/// `tests/configs.rs` checks.
pub const EXPECTED: &[(Example, usize)] = &[
    example!("SB0801", "sb0801_not_an_assignment", 7),
    example!("SB0802", "sb0802_shell_construct", 7),
    example!("SB0803", "sb0803_bad_value", 9),
    example!("SB0804", "sb0804_unsupported", 9),
    example!("SB0805", "sb0805_unknown_variable", 9),
    example!("SB0806", "sb0806_assigned_twice", 9),
    example!("SB0807", "sb0807_missing", 0),
    example!("SB0808", "sb0808_index_range", 9),
    example!("SB0809", "sb0809_file_unreadable", 8),
    example!("SB0810", "sb0810_shm_mismatch", 11),
    example!("SB0811", "sb0811_not_booted", 11),
    example!("SB0812", "sb0812_evtchn_mismatch", 9),
];
