//! DTS printer. (Stub: being implemented.)

use crate::Tree;

/// Prints a tree as DTS.
pub fn print_dts(tree: &Tree) -> String {
    let _ = tree;
    String::new()
}
