//! Program arguments: whitespace-separated words, `key=value` or bare flags, as on a
//! kernel command line. The emulator wrappers join `argv` with spaces; the Xen wrappers
//! pass the domain's `bootargs` (which also carries `staticbus.domain=…` and anything
//! else the program ignores).

use core::fmt;

/// A program's arguments.
#[derive(Clone, Copy, Debug, Default)]
pub struct Args<'a> {
    line: &'a str,
}

/// An argument that is present but not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgError<'a> {
    /// The key.
    pub key: &'a str,
    /// Its value.
    pub value: &'a str,
    /// What was expected.
    pub expected: &'static str,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {}={:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl<'a> Args<'a> {
    /// The arguments in `line`.
    pub const fn new(line: &'a str) -> Self {
        Args { line }
    }

    /// The words, in order.
    pub fn words(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.line.split_ascii_whitespace()
    }

    /// The value of the last `key=value` word (`Some("")` for `key=`), or `None`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// The value of `key` as a decimal number, `default` if absent.
    pub fn u64_or(&self, key: &'a str, default: u64) -> Result<u64, ArgError<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ArgError {
                key,
                value: v,
                expected: "a decimal number",
            }),
        }
    }

    /// The value of `key`, `default` if absent.
    pub fn str_or(&self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let a = Args::new("staticbus.domain=ping role=ping rounds=10 x= rounds=20 quiet");
        assert_eq!(a.get("role"), Some("ping"));
        assert_eq!(a.get("rounds"), Some("20"), "the last one wins");
        assert_eq!(a.u64_or("rounds", 1), Ok(20));
        assert_eq!(a.u64_or("absent", 7), Ok(7));
        assert_eq!(a.get("x"), Some(""));
        assert_eq!(a.get("quiet"), None);
        assert_eq!(a.str_or("channel", "pingpong"), "pingpong");
        let e = a.u64_or("role", 0).unwrap_err();
        assert_eq!(
            std::format!("{e}"),
            "argument role=\"ping\": expected a decimal number"
        );
    }
}
