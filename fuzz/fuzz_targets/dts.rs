//! DTS parser on arbitrary text, with `/include/` served from memory (including cycles):
//! must return a tree or diagnostics, never panic or hang; a tree it returns must
//! serialise, print, and re-parse to the same DTB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_diag::Sources;
use staticbus_dt::{parse_dts, print_dts, write_dtb, DtsOptions, FileLoader};
use std::path::Path;

struct Mem<'a>(&'a str);

impl FileLoader for Mem<'_> {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("self.dtsi") => Ok(self.0.to_string()),
            Some("a.dtsi") => Ok("/ { a = <1>; };\n/include/ \"b.dtsi\"\n".into()),
            Some("b.dtsi") => Ok("/ { b = \"x\"; };\n/include/ \"a.dtsi\"\n".into()),
            _ => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = Sources::new();
    let (tree, _diags) = parse_dts(&mut sources, "fuzz.dts", text.to_string(), &DtsOptions::default(), &Mem(text));
    if let Some(tree) = tree {
        let blob = write_dtb(&tree);
        let printed = print_dts(&tree);
        let mut s2 = Sources::new();
        let (again, d2) = parse_dts(&mut s2, "printed.dts", printed.clone(), &DtsOptions::default(), &Mem(""));
        let again = again.unwrap_or_else(|| panic!("printed DTS does not parse: {d2:?}\n{printed}"));
        assert_eq!(write_dtb(&again), blob, "print/parse round trip changed the blob");
    }
});
