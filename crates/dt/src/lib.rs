//! Device trees for staticbus.
//!
//! - [`parse_dts`]: a DTS parser with source spans and dtc's semantics (labels, `&label`
//!   and `&{/path}` references, phandles, `/bits/`, strings, byte strings, `/include/`,
//!   `/delete-node/`, `/delete-property/`, merged root blocks).
//! - [`read_dtb`] / [`write_dtb`]: the flattened (binary) form, byte-identical to what
//!   `dtc -I dts -O dtb` produces for the same tree.
//! - [`print_dts`]: readable DTS in tree order, labels and references kept.
//!
//! Nothing here panics on bad input: problems are returned as
//! [`staticbus_diag::Diagnostics`].

#![deny(unsafe_code)]

pub mod dtb;
pub mod dts;
pub mod print;
pub mod refs;
pub mod tree;

pub use dtb::{check_blob_tree, read_dtb, write_dtb};
pub use dts::{parse_dts, DtsOptions, FileLoader, FsLoader};
pub use print::print_dts;
pub use refs::resolve_references;
pub use tree::{CellValue, Chunk, ChunkKind, Elem, MemReserve, Node, Property, Tree};

/// Every diagnostic code this crate can emit.
pub fn codes() -> Vec<staticbus_diag::Code> {
    let mut v = dts::CODES.to_vec();
    v.extend_from_slice(dtb::CODES);
    v.extend_from_slice(refs::CODES);
    v
}
