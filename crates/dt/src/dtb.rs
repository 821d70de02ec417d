//! DTB (flattened device tree) reader and writer. (Stub: being implemented.)

use crate::Tree;
use staticbus_diag::{Code, Diagnostics, FileId};

/// Every code this module emits.
pub const CODES: &[Code] = &[];

/// Writes a tree as a DTB (version 17), byte-identical to `dtc -I dts -O dtb` for the same
/// tree.
pub fn write_dtb(tree: &Tree) -> Vec<u8> {
    let _ = tree;
    Vec::new()
}

/// Reads a DTB. `file` is the id under which the caller registered the blob in its
/// `Sources` (diagnostics point at it).
pub fn read_dtb(bytes: &[u8], file: FileId) -> Result<Tree, Diagnostics> {
    let _ = (bytes, file);
    Err(Diagnostics::new())
}
