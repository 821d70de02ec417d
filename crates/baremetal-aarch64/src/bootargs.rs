//! The guest command line (`/chosen/bootargs`, the kernel module's `bootargs` in the host
//! device tree): whitespace-separated words, `key=value` or bare flags.

/// The argument that names the domain, so the runtime can pick its manifest.
pub const DOMAIN_KEY: &str = "staticbus.domain";

/// The value of the last `key=value` word for `key` (`Some("")` for `key=`), or `None`.
pub fn value<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .next_back()
}

/// True if `flag` appears as a bare word or as `flag=...`.
pub fn has(bootargs: &str, flag: &str) -> bool {
    bootargs
        .split_ascii_whitespace()
        .any(|word| word == flag || word.split_once('=').is_some_and(|(k, _)| k == flag))
}

/// The value of `key` parsed as a decimal `u32`, or `None` if absent or not a number.
pub fn value_u32(bootargs: &str, key: &str) -> Option<u32> {
    value(bootargs, key)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_flags() {
        let a = "staticbus.domain=ping  role=ping rounds=1000 quiet x= rounds=20";
        assert_eq!(value(a, DOMAIN_KEY), Some("ping"));
        assert_eq!(value(a, "role"), Some("ping"));
        assert_eq!(value(a, "rounds"), Some("20"), "the last one wins");
        assert_eq!(value_u32(a, "rounds"), Some(20));
        assert_eq!(value_u32(a, "role"), None);
        assert_eq!(value(a, "x"), Some(""));
        assert_eq!(value(a, "quiet"), None);
        assert!(has(a, "quiet"));
        assert!(has(a, "role"));
        assert!(!has(a, "rol"));
        assert_eq!(value("", "a"), None);
    }
}
