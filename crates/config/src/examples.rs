//! The failing and fixed example of every rule that has one in its test: the fixtures of
//! `tests/rules.rs` (`tests/fixtures/rules/NAME.EXT` and `NAME.fixed.EXT`, which that test
//! checks to be the fixture with the case's fix), compiled in by `build.rs` for
//! `staticbus explain`.

use staticbus_diag::Example;

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// The examples of `code`, descriptions first.
pub fn of(code: &str) -> impl Iterator<Item = &'static Example> + '_ {
    ALL.iter().filter(move |e| e.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_for_a_code_of_this_crate() {
        assert!(ALL.len() > 50, "the fixtures were found");
        for e in ALL {
            assert!(
                crate::codes::ALL.iter().any(|c| c.id == e.code),
                "{}",
                e.code
            );
            assert_ne!(Some(e.failing), e.fixed, "{}", e.path);
        }
        let first = of("SB0110").next().unwrap();
        assert!(first.path.ends_with("sb0110_evtchn_port_range.toml"));
        assert!(
            first.failing.contains("sensor:1024") && first.fixed.unwrap().contains("sensor:1023")
        );
    }
}
