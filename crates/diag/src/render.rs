//! Rendering diagnostics for people (rustc-like, via codespan-reporting) and for machines
//! (JSON).

use crate::{Diagnostic, FileId, Location, Severity, Sources};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term::{self, termcolor};
use serde::Serialize;

/// Whether human output uses ANSI colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colours.
    Always,
    /// Plain text.
    Never,
}

impl<'a> Files<'a> for Sources {
    type FileId = FileId;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        Ok(self
            .try_get(id)
            .ok_or(FilesError::FileMissing)?
            .name
            .as_str())
    }

    fn source(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        Ok(self
            .try_get(id)
            .ok_or(FilesError::FileMissing)?
            .text
            .as_deref()
            .unwrap_or(""))
    }

    fn line_index(&'a self, id: FileId, byte_index: usize) -> Result<usize, FilesError> {
        let f = self.try_get(id).ok_or(FilesError::FileMissing)?;
        Ok(f.line_col(byte_index).0 - 1)
    }

    fn line_range(
        &'a self,
        id: FileId,
        line_index: usize,
    ) -> Result<std::ops::Range<usize>, FilesError> {
        let f = self.try_get(id).ok_or(FilesError::FileMissing)?;
        let text = f.text.as_deref().unwrap_or("");
        // The line starts computed once when the file was added (rescanning the text for
        // every line of every diagnostic made rendering quadratic in big files).
        let starts = f.line_starts();
        let start = *starts.get(line_index).ok_or(FilesError::LineTooLarge {
            given: line_index,
            max: starts.len().saturating_sub(1),
        })?;
        let end = starts.get(line_index + 1).copied().unwrap_or(text.len());
        Ok(start..end)
    }
}

fn severity(s: Severity) -> cs::Severity {
    match s {
        Severity::Note => cs::Severity::Note,
        Severity::Warning => cs::Severity::Warning,
        Severity::Error => cs::Severity::Error,
    }
}

/// A one-line description of a non-text location, e.g.
/// `system.dtb: /chosen/domU1/evtchn@1 (property xen,evtchn)`.
pub(crate) fn describe(sources: &Sources, loc: &Location) -> Option<String> {
    let name = |f: FileId| {
        sources
            .try_get(f)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "<unknown>".into())
    };
    match loc {
        Location::Span { span } => {
            let f = sources.try_get(span.file)?;
            let (l, c) = f.line_col(span.start as usize);
            Some(format!("{}:{l}:{c}", f.name))
        }
        Location::Node {
            file,
            path,
            property,
        } => Some(match property {
            Some(p) => format!("{}: {path} (property {p})", name(*file)),
            None => format!("{}: {path}", name(*file)),
        }),
        Location::File { file } => Some(name(*file)),
        Location::None => None,
    }
}

fn to_codespan(sources: &Sources, d: &Diagnostic) -> cs::Diagnostic<FileId> {
    let mut labels = Vec::new();
    let mut notes = Vec::new();
    match &d.location {
        Location::Span { span } if sources.try_get(span.file).is_some() => {
            let mut l = cs::Label::primary(span.file, span.range());
            if let Some(m) = &d.label {
                l = l.with_message(m.clone());
            }
            labels.push(l);
        }
        other => {
            if let Some(at) = describe(sources, other) {
                match &d.label {
                    Some(m) => notes.push(format!("at {at}: {m}")),
                    None => notes.push(format!("at {at}")),
                }
            }
        }
    }
    for s in &d.secondary {
        match &s.location {
            Location::Span { span } if sources.try_get(span.file).is_some() => {
                labels.push(
                    cs::Label::secondary(span.file, span.range()).with_message(s.message.clone()),
                );
            }
            other => {
                if let Some(at) = describe(sources, other) {
                    notes.push(format!("{at}: {}", s.message));
                }
            }
        }
    }
    notes.extend(d.notes.iter().cloned());
    if let Some(h) = &d.help {
        notes.push(format!("help: {h}"));
    }
    cs::Diagnostic::new(severity(d.severity))
        .with_code(d.code.id)
        .with_message(d.message.clone())
        .with_labels(labels)
        .with_notes(notes)
}

/// Renders diagnostics as rustc-style text: each with its code, `file:line:col` (or the node
/// path for binary device trees), the source line with the span underlined, secondary
/// labels, notes and help. Ends with a summary line when there is anything to report.
pub fn render_human<'a>(
    sources: &Sources,
    diags: impl IntoIterator<Item = &'a Diagnostic>,
    color: ColorChoice,
) -> String {
    let mut buf = match color {
        ColorChoice::Always => termcolor::Buffer::ansi(),
        ColorChoice::Never => termcolor::Buffer::no_color(),
    };
    let config = term::Config::default();
    let (mut errors, mut warnings) = (0usize, 0usize);
    for d in diags {
        match d.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
            Severity::Note => {}
        }
        let cd = to_codespan(sources, d);
        if term::emit_to_write_style(&mut buf, &config, sources, &cd).is_err() {
            // A span outside its file: fall back to a plain line rather than lose it.
            let at = describe(sources, &d.location).unwrap_or_default();
            let line = format!("{:?}[{}]: {} ({at})\n", d.severity, d.code.id, d.message);
            let _ = std::io::Write::write_all(&mut buf, line.as_bytes());
        }
    }
    let mut out = String::from_utf8_lossy(buf.as_slice()).into_owned();
    if errors + warnings > 0 {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "{}, {}\n",
            plural(errors, "error"),
            plural(warnings, "warning")
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonLoc {
    file: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    byte_start: Option<u32>,
    byte_end: Option<u32>,
    node: Option<String>,
    property: Option<String>,
}

fn json_loc(sources: &Sources, loc: &Location) -> JsonLoc {
    let mut j = JsonLoc {
        file: loc
            .file()
            .and_then(|f| sources.try_get(f))
            .map(|f| f.name.clone()),
        line: None,
        column: None,
        end_line: None,
        end_column: None,
        byte_start: None,
        byte_end: None,
        node: None,
        property: None,
    };
    match loc {
        Location::Span { span } => {
            if let Some(f) = sources.try_get(span.file) {
                let (l, c) = f.line_col(span.start as usize);
                let (el, ec) = f.line_col(span.end as usize);
                j.line = Some(l);
                j.column = Some(c);
                j.end_line = Some(el);
                j.end_column = Some(ec);
            }
            j.byte_start = Some(span.start);
            j.byte_end = Some(span.end);
        }
        Location::Node { path, property, .. } => {
            j.node = Some(path.clone());
            j.property = property.clone();
        }
        _ => {}
    }
    j
}

#[derive(Serialize)]
struct JsonLabel {
    location: JsonLoc,
    message: String,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    code: &'static str,
    severity: Severity,
    title: &'static str,
    message: &'a str,
    location: JsonLoc,
    label: Option<&'a str>,
    secondary: Vec<JsonLabel>,
    notes: &'a [String],
    help: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiag<'a>>,
}

/// Renders diagnostics as one JSON document:
/// `{"errors": N, "warnings": N, "diagnostics": [{code, severity, title, message,
/// location: {file, line, column, end_line, end_column, byte_start, byte_end, node,
/// property}, label, secondary, notes, help}]}`.
pub fn render_json<'a>(
    sources: &Sources,
    diags: impl IntoIterator<Item = &'a Diagnostic>,
) -> String {
    let diagnostics: Vec<JsonDiag<'a>> = diags
        .into_iter()
        .map(|d| JsonDiag {
            code: d.code.id,
            severity: d.severity,
            title: d.code.title,
            message: &d.message,
            location: json_loc(sources, &d.location),
            label: d.label.as_deref(),
            secondary: d
                .secondary
                .iter()
                .map(|s| JsonLabel {
                    location: json_loc(sources, &s.location),
                    message: s.message.clone(),
                })
                .collect(),
            notes: &d.notes,
            help: d.help.as_deref(),
        })
        .collect();
    let report = JsonReport {
        errors: diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count(),
        warnings: diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count(),
        diagnostics,
    };
    let mut s = serde_json::to_string_pretty(&report).unwrap_or_else(|e| {
        format!("{{\"errors\":1,\"diagnostics\":[],\"internal_error\":\"{e}\"}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Code, Diagnostic, Span};

    const T: Code = Code {
        id: "SB9999",
        severity: Severity::Error,
        title: "test rule",
        xen: "nothing",
    };

    #[test]
    fn human_output_has_code_position_label_and_help() {
        let mut s = Sources::new();
        let f = s.add_text("a.dts", "/ {\n  x = <1>;\n};\n");
        let d = Diagnostic::new(T, Span::new(f, 6, 7), "bad x")
            .label("this one")
            .help("fix it");
        let out = render_human(&s, [&d], ColorChoice::Never);
        assert!(out.contains("error[SB9999]: bad x"), "{out}");
        assert!(out.contains("a.dts:2:3"), "{out}");
        assert!(out.contains("this one"), "{out}");
        assert!(out.contains("help: fix it"), "{out}");
        assert!(out.ends_with("1 error, 0 warnings\n"), "{out}");
    }

    #[test]
    fn node_locations_name_the_path() {
        let mut s = Sources::new();
        let f = s.add_binary("sys.dtb");
        let d = Diagnostic::new(
            T,
            Location::Node {
                file: f,
                path: "/chosen/d1".into(),
                property: Some("memory".into()),
            },
            "bad",
        );
        let out = render_human(&s, [&d], ColorChoice::Never);
        assert!(
            out.contains("sys.dtb: /chosen/d1 (property memory)"),
            "{out}"
        );
        let js: serde_json::Value = serde_json::from_str(&render_json(&s, [&d])).unwrap();
        assert_eq!(js["diagnostics"][0]["location"]["node"], "/chosen/d1");
        assert_eq!(js["errors"], 1);
    }

    #[test]
    fn json_has_line_and_column() {
        let mut s = Sources::new();
        let f = s.add_text("a.toml", "x = 1\ny = é2\n");
        let d = Diagnostic::new(T, Span::new(f, 12, 13), "bad");
        let js: serde_json::Value = serde_json::from_str(&render_json(&s, [&d])).unwrap();
        assert_eq!(js["diagnostics"][0]["location"]["line"], 2);
        assert_eq!(js["diagnostics"][0]["location"]["column"], 6);
    }
}
