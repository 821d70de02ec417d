//! DTB reader on arbitrary bytes: must return a tree or diagnostics, never panic, hang or
//! allocate absurdly; a tree it returns must write back to a blob that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_diag::FileId;
use staticbus_dt::{read_dtb, write_dtb};

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = read_dtb(data, FileId(0)) {
        let blob = write_dtb(&tree);
        let again = read_dtb(&blob, FileId(0)).expect("our own blob reads");
        assert_eq!(again, tree, "write/read round trip changed the tree");
        // And the whole checker must cope with whatever the tree says.
        let (sys, _) = staticbus_config::from_dt::system_from_tree(
            &tree,
            FileId(0),
            "fuzz",
            staticbus_config::model::SourceKind::Dtb,
            Default::default(),
        );
        let _ = staticbus_config::validate(&sys);
    }
});
