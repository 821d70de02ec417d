//! DTS (device-tree source) parser with dtc's semantics.
//!
//! The pipeline mirrors dtc: a lexer with dtc's start conditions and lexical `/include/`
//! ([`lexer`]), a recursive-descent parser following dtc's grammar and semantic actions
//! ([`parser`]) that builds dtc's "live tree" with deleted markers ([`live`]), dtc's
//! error-level structural checks, conversion to a [`Tree`], then reference resolution and
//! phandle assignment ([`crate::refs`]) and `/omit-if-no-ref/` pruning.
//!
//! Differences from dtc: `/plugin/` and `/incbin/` are rejected; all problems are reported
//! (dtc stops at the first syntax error or failing check); an out-of-range cell value is an
//! error as in dtc 1.6 (dtc 1.7 only warns); label-relative path references
//! (`&{label/child}`) are accepted as in dtc 1.7.

pub(crate) mod codes;
mod lexer;
mod live;
mod parser;

use crate::refs;
use crate::Tree;
use staticbus_diag::{Code, Diagnostic, Diagnostics, Location, Sources};
use std::path::{Path, PathBuf};

/// Diagnostics after which the parser stops looking for more.
pub(crate) const MAX_ERRORS: usize = 200;

/// Every code this module emits.
pub const CODES: &[Code] = codes::ALL;

/// Reads files named by `/include/`.
pub trait FileLoader {
    /// Loads the file at `path` as text.
    fn load(&self, path: &Path) -> std::io::Result<String>;
}

/// Loads `/include/` files from the file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsLoader;

impl FileLoader for FsLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Options for [`parse_dts`].
#[derive(Clone, Debug)]
pub struct DtsOptions {
    /// Directories searched for `/include/` files after the including file's directory.
    pub include_dirs: Vec<PathBuf>,
    /// Maximum `/include/` nesting.
    pub max_include_depth: usize,
}

impl Default for DtsOptions {
    fn default() -> Self {
        DtsOptions {
            include_dirs: Vec::new(),
            max_include_depth: 32,
        }
    }
}

/// Parses DTS text named `name` (a path; `/include/` is resolved relative to its directory).
/// The text is added to `sources`; spans in the tree and diagnostics refer to it.
/// Returns the tree (with phandle references resolved as dtc does) when there were no
/// errors, and all diagnostics (errors and warnings).
pub fn parse_dts(
    sources: &mut Sources,
    name: &str,
    text: String,
    opts: &DtsOptions,
    loader: &dyn FileLoader,
) -> (Option<Tree>, Diagnostics) {
    let mut diags = Diagnostics::new();
    let recording = lexer::scan(sources, name, text, opts, loader, &mut diags);
    let parsed = parser::parse(lexer::Lexer::replay(recording, opts, loader), &mut diags);
    if diags.has_errors() {
        return (None, diags);
    }
    let mut live = parsed.live;
    let boot_cpuid = live.boot_cpuid();
    live.check(&mut diags);
    let (root, omit) = live.take_tree();
    drop(live);
    let mut tree = Tree {
        memreserve: parsed.memreserve,
        boot_cpuid,
        root,
    };
    let (rd, referenced) = refs::resolve_impl(&mut tree, false);
    diags.extend(rd);
    if omit_unreferenced(&mut tree, &omit, &referenced) {
        let d = Diagnostic::new(
            codes::ROOT_DELETED,
            tree.root.span.map_or(Location::None, Location::span),
            "the root node is marked /omit-if-no-ref/ and nothing references it",
        )
        .label("dtc would omit the whole tree")
        .help("remove the /omit-if-no-ref/ of the root");
        diags.push(d);
    }
    if diags.has_errors() {
        (None, diags)
    } else {
        (Some(tree), diags)
    }
}

/// dtc's `omit_unused_nodes`: deletes nodes marked `/omit-if-no-ref/` that no reference
/// points at. `omit` and `referenced` are indexed in tree order. Returns true if the root
/// itself was omitted.
fn omit_unreferenced(tree: &mut Tree, omit: &[bool], referenced: &[bool]) -> bool {
    if !omit.iter().any(|&o| o) {
        return false;
    }
    // Index paths of the nodes to delete, in tree order.
    let mut doomed: Vec<Vec<usize>> = Vec::new();
    let mut counter = 0usize;
    fn walk(
        n: &crate::Node,
        path: &mut Vec<usize>,
        counter: &mut usize,
        omit: &[bool],
        referenced: &[bool],
        doomed: &mut Vec<Vec<usize>>,
    ) {
        let i = *counter;
        *counter += 1;
        if omit.get(i).copied().unwrap_or(false) && !referenced.get(i).copied().unwrap_or(false) {
            doomed.push(path.clone());
        }
        for (k, c) in n.children.iter().enumerate() {
            path.push(k);
            walk(c, path, counter, omit, referenced, doomed);
            path.pop();
        }
    }
    walk(
        &tree.root,
        &mut Vec::new(),
        &mut counter,
        omit,
        referenced,
        &mut doomed,
    );
    // Later nodes first, so earlier index paths stay valid.
    let mut root_omitted = false;
    for path in doomed.iter().rev() {
        match path.split_last() {
            None => {
                tree.root.props.clear();
                tree.root.children.clear();
                root_omitted = true;
            }
            Some((&last, parents)) => {
                let mut n = &mut tree.root;
                for &k in parents {
                    n = &mut n.children[k];
                }
                n.children.remove(last);
            }
        }
    }
    root_omitted
}
