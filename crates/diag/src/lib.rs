//! Diagnostics for staticbus: every problem found in an input is a [`Diagnostic`] with a
//! stable code, a [`Location`] (a byte span in a source file, or a node path in a binary
//! device tree), labels, notes and a help line.
//!
//! Parsers and validators never print and never panic on input; they push diagnostics into a
//! [`Diagnostics`] list. The CLI renders the list for humans ([`render_human`]) or as JSON
//! ([`render_json`]).

#![deny(unsafe_code)]

mod render;
mod source;

pub use render::{render_human, render_json, ColorChoice};
pub use source::{FileId, SourceFile, Sources};

use serde::Serialize;

/// A half-open byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    /// The file the range belongs to.
    pub file: FileId,
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span `start..end` in `file`. Offsets above `u32::MAX` are clamped.
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span {
            file,
            start: clamp(start),
            end: clamp(end.max(start)),
        }
    }

    /// The smallest span covering both `self` and `other` (same file assumed; if the files
    /// differ, `self` is returned).
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Byte range as `usize`.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where a diagnostic points.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// A byte range in a text file (DTS, TOML).
    Span {
        /// The range.
        span: Span,
    },
    /// A node (and optionally one of its properties) in a binary device tree, which has no
    /// text positions.
    Node {
        /// The DTB file.
        file: FileId,
        /// Full node path, e.g. `/chosen/domU1/evtchn@1`.
        path: String,
        /// Property name, when the problem is in one property.
        property: Option<String>,
    },
    /// A whole file (e.g. an I/O error or a problem with no finer position).
    File {
        /// The file.
        file: FileId,
    },
    /// No location (command-line problems).
    None,
}

impl Location {
    /// The location of a span.
    pub fn span(span: Span) -> Location {
        Location::Span { span }
    }

    /// The span, if this location has one.
    pub fn as_span(&self) -> Option<Span> {
        match self {
            Location::Span { span } => Some(*span),
            _ => None,
        }
    }

    /// The file this location is in, if any.
    pub fn file(&self) -> Option<FileId> {
        match self {
            Location::Span { span } => Some(span.file),
            Location::Node { file, .. } | Location::File { file } => Some(*file),
            Location::None => None,
        }
    }
}

impl From<Span> for Location {
    fn from(span: Span) -> Location {
        Location::Span { span }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Advice; never fails a run.
    Note,
    /// Legal for Xen but likely wrong; fails only with `--deny-warnings`.
    Warning,
    /// Xen would refuse, crash, or silently misbehave.
    Error,
}

/// A stable diagnostic code and what it is about. Codes are `SB` followed by four digits
/// and never change meaning once published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code {
    /// The code, e.g. `"SB0101"`.
    pub id: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One-line summary of the rule.
    pub title: &'static str,
    /// What Xen does when the rule is broken (its message, or the silent failure).
    pub xen: &'static str,
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id)
    }
}

/// A failing input for a code and its fixed counterpart, from the rule's own test: what
/// `staticbus explain CODE` shows under the rule (the test reads the same files, so the
/// example cannot drift from what is checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Example {
    /// The code the failing input triggers.
    pub code: &'static str,
    /// Where the failing input lives in the repository (for people who want to run it).
    pub path: &'static str,
    /// The failing input.
    pub failing: &'static str,
    /// The fixed input (`None` when the fix is not in the text, see `fixed_by`).
    pub fixed: Option<&'static str>,
    /// How the failing input is fixed when the text stays the same (e.g. a check option).
    pub fixed_by: Option<&'static str>,
}

/// A secondary label: another place that matters for the diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Where.
    pub location: Location,
    /// What is there.
    pub message: String,
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The rule.
    pub code: Code,
    /// Severity (usually the code's default).
    pub severity: Severity,
    /// The main message.
    pub message: String,
    /// The primary location.
    pub location: Location,
    /// The label on the primary location.
    pub label: Option<String>,
    /// Other relevant places.
    pub secondary: Vec<Label>,
    /// Extra facts, one per line.
    pub notes: Vec<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic for `code` at `location` with the code's default severity.
    pub fn new(code: Code, location: impl Into<Location>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity,
            message: message.into(),
            location: location.into(),
            label: None,
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// Sets the label on the primary location.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a secondary label.
    pub fn with(mut self, location: impl Into<Location>, message: impl Into<String>) -> Self {
        let location = location.into();
        if location != Location::None {
            self.secondary.push(Label {
                location,
                message: message.into(),
            });
        }
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Overrides the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// An ordered collection of diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.list.extend(other.list);
    }

    /// All diagnostics, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.list.iter()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// True if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    fn count(&self, s: Severity) -> usize {
        self.list.iter().filter(|d| d.severity == s).count()
    }

    /// True if some diagnostic has this code.
    pub fn has_code(&self, id: &str) -> bool {
        self.list.iter().any(|d| d.code.id == id)
    }

    /// The codes of all diagnostics, in order (handy in tests).
    pub fn codes(&self) -> Vec<&'static str> {
        self.list.iter().map(|d| d.code.id).collect()
    }

    /// Sorts by file, then position, keeping the discovery order for equal positions, so
    /// output is stable.
    pub fn sort(&mut self) {
        self.list.sort_by_key(|d| match &d.location {
            Location::Span { span } => (span.file.0, 0, span.start, String::new()),
            Location::Node { file, path, .. } => (file.0, 1, 0, path.clone()),
            Location::File { file } => (file.0, 2, 0, String::new()),
            Location::None => (u32::MAX, 3, 0, String::new()),
        });
    }

    /// Consumes the list.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<T: IntoIterator<Item = Diagnostic>>(iter: T) -> Self {
        Diagnostics {
            list: iter.into_iter().collect(),
        }
    }
}
