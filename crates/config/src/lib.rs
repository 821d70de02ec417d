//! The staticbus compiler: system description (TOML) or Xen host device tree (DTS/DTB) →
//! verified dom0less configuration.
//!
//! - [`desc`] reads the TOML system description and allocates what it leaves open;
//! - [`from_dt`] reads a Xen host device tree the way Xen walks it;
//! - [`validate`] checks Xen's rules on the resulting [`model::System`];
//! - [`gen`] writes the host device tree; [`manifest`] the per-domain manifests.

#![deny(unsafe_code)]

pub mod codes;
pub mod desc;
pub mod emit;
pub mod examples;
pub mod from_dt;
pub mod gen;
pub mod ivshmem;
pub mod manifest;
pub mod model;
pub mod synth;
pub mod uboot;
pub mod validate;

pub use model::System;
pub use validate::validate;
pub mod compile;
