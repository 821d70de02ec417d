//! The failing and fixed example of every code, the files `tests/configs.rs` checks
//! (`tests/examples/`), for `staticbus explain`.

use staticbus_diag::Example;

macro_rules! example {
    ($code:literal, $name:literal) => {
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
        }
    };
}

/// One example per code of [`crate::codes::ALL`], in code order.
pub const ALL: &[Example] = &[
    example!("SB0801", "sb0801_not_an_assignment"),
    example!("SB0802", "sb0802_shell_construct"),
    example!("SB0803", "sb0803_bad_value"),
    example!("SB0804", "sb0804_unsupported"),
    example!("SB0805", "sb0805_unknown_variable"),
    example!("SB0806", "sb0806_assigned_twice"),
    example!("SB0807", "sb0807_missing"),
    example!("SB0808", "sb0808_index_range"),
    example!("SB0809", "sb0809_file_unreadable"),
    example!("SB0810", "sb0810_shm_mismatch"),
    example!("SB0811", "sb0811_not_booted"),
    example!("SB0812", "sb0812_evtchn_mismatch"),
];
