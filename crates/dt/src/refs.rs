//! Phandle and path reference resolution. (Stub: being implemented.)

use crate::Tree;
use staticbus_diag::{Code, Diagnostics};

/// Every code this module emits.
pub const CODES: &[Code] = &[];

/// Resolves every `&label` / `&{/path}` reference in the tree the way dtc does.
pub fn resolve_references(tree: &mut Tree) -> Diagnostics {
    let _ = tree;
    Diagnostics::new()
}
