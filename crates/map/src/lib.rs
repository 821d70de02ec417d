//! `staticbus map`: a dom0less system as a picture, drawn from the same model `build` uses.
//!
//! One drawing has four parts: the host physical map (RAM, reserved ranges, Xen, the DTB,
//! every module, every shared region with its owner and borrowers, the shm pool and what is
//! left of it), each domain's guest-physical map (RAM, the device and Xen windows of
//! `staticbus_abi::guest`, each shared region's window and its channel), the channel graph
//! (domains, channels with protocol, size and event-channel ports, standalone regions and
//! pairs), and the problems of the check, each drawn on the objects its locations point at
//! (an overlap is also drawn as a hatched band where the ranges overlap).
//!
//! That is a Xen system's picture. A `hypervisor = "qemu-ivshmem"` system has no host map
//! shared between domains (each is its own QEMU VM): its first map is the ivshmem shared
//! object at its offsets (each channel's window, what is free, the server's control page),
//! each VM's map is the runtime's (RAM, the BARs, the channels), and the graph labels
//! doorbells with peer ids and vectors (`ivshmem`, docs/map.md).
//!
//! [`svg()`](fn@svg) gives a standalone SVG (problems listed at its bottom); [`html`](fn@html) one
//! self-contained page (no network resources) with the SVG inline, zoom and highlight in a
//! few lines of script, and the problems as an HTML list with anchors.
//!
//! Address axes are segmented and compressed ([`layout::Scale`]): a memory map spans many
//! orders of magnitude, so lengths are not proportional to sizes; every boundary is
//! labelled with its address.

#![deny(unsafe_code)]

pub mod draw;
mod ivshmem;
pub mod layout;
pub mod objects;

use staticbus_config::model::{Hypervisor, System};
use staticbus_diag::{Diagnostic, Diagnostics, Location, Sources};
use std::path::Path;

/// What to draw: the model (when the input could be read) and the check's diagnostics.
pub struct Input<'a> {
    /// The model; `None` draws only the problems.
    pub system: Option<&'a System>,
    /// The diagnostics of `compile::check`.
    pub diags: &'a Diagnostics,
    /// The sources the diagnostics point into.
    pub sources: &'a Sources,
    /// The input's name (shown in the title).
    pub file: String,
}

/// The output format, from the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A standalone SVG.
    Svg,
    /// A self-contained HTML page.
    Html,
}

impl Format {
    /// `.svg` or `.html`/`.htm`; `None` otherwise.
    pub fn from_path(p: &Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "svg" => Some(Format::Svg),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }
}

/// A diagnostic as the map shows it.
#[derive(Clone, Debug)]
pub struct Problem {
    /// `SB0216`.
    pub code: &'static str,
    /// `error`, `warning` or `note`.
    pub severity: &'static str,
    /// The message.
    pub message: String,
    /// `file:line:col`, or the node path of a DTB.
    pub location: String,
    /// The help line.
    pub help: Option<String>,
    /// The notes.
    pub notes: Vec<String>,
    /// The rule's title.
    pub title: &'static str,
    /// What happens when the rule is broken (Xen's reaction for Xen's rules, the
    /// platform's for qemu-ivshmem's).
    pub xen: &'static str,
    /// Names of the drawn objects it is shown on.
    pub drawn_on: Vec<String>,
}

/// `file:line:col` of a location.
pub fn describe(sources: &Sources, loc: &Location) -> String {
    let name = |f| {
        sources
            .try_get(f)
            .map_or_else(|| "?".to_string(), |s| s.name.clone())
    };
    match loc {
        Location::Span { span } => match sources.try_get(span.file) {
            Some(f) => {
                let (l, c) = f.line_col(span.start as usize);
                format!("{}:{l}:{c}", f.name)
            }
            None => "?".into(),
        },
        Location::Node {
            file,
            path,
            property,
        } => match property {
            Some(p) => format!("{} {path} ({p})", name(*file)),
            None => format!("{} {path}", name(*file)),
        },
        Location::File { file } => name(*file),
        Location::None => "(no location)".into(),
    }
}

/// A finished drawing.
#[derive(Clone, Debug)]
pub struct Drawing {
    /// The SVG document.
    pub svg: String,
    /// Every label's box, in picture coordinates (for layout tests).
    pub labels: Vec<layout::Rect>,
    /// The problems, in the order they are numbered (`#p1` is the first).
    pub problems: Vec<Problem>,
    /// Height of the picture (its width is [`draw::WIDTH`]).
    pub height: f64,
}

fn severity(d: &Diagnostic) -> &'static str {
    match d.severity {
        staticbus_diag::Severity::Error => "error",
        staticbus_diag::Severity::Warning => "warning",
        staticbus_diag::Severity::Note => "note",
    }
}

/// Lays the picture out and draws it; `problems_text` lists the problems inside the SVG.
pub fn drawing(input: &Input, problems_text: bool) -> Drawing {
    let diags: Vec<&Diagnostic> = input.diags.iter().collect();
    let mut scene = input.system.map(objects::scene);
    let hits = match &mut scene {
        Some(s) => objects::attach(&mut s.objs, &diags),
        None => vec![Vec::new(); diags.len()],
    };
    let problems: Vec<Problem> = diags
        .iter()
        .zip(&hits)
        .map(|(d, h)| Problem {
            code: d.code.id,
            severity: severity(d),
            message: d.message.clone(),
            location: describe(input.sources, &d.location),
            help: d.help.clone(),
            notes: d.notes.clone(),
            title: d.code.title,
            xen: d.code.xen,
            drawn_on: h
                .iter()
                .filter_map(|&o| scene.as_ref().map(|s| s.objs[o].name.clone()))
                .collect(),
        })
        .collect();
    let (errors, warnings) = (input.diags.errors(), input.diags.warnings());
    let subtitle = match input.system {
        Some(s) if s.target.hypervisor == Hypervisor::QemuIvshmem => {
            let lay = staticbus_config::ivshmem::layout(s);
            format!(
                "{} · qemu-ivshmem (a QEMU virt VM per domain, no hypervisor) · {} VMs · {} channels · {} doorbell pairs · object {}, {} vectors · {errors} errors, {warnings} warnings",
                input.file,
                s.domains.iter().filter(|d| !d.dom0).count(),
                s.channels.len(),
                s.evtchns.len(),
                objects::size(lay.object),
                lay.vectors
            )
        }
        Some(s) => format!(
            "{} · Xen {}{} · {} domains · {} channels · {} event channels · {} shared-memory nodes · {errors} errors, {warnings} warnings",
            input.file,
            s.target.xen,
            if s.target.static_shm { " (CONFIG_STATIC_SHM)" } else { "" },
            s.domains.len(),
            s.channels.len(),
            s.evtchns.len(),
            s.shm.len()
        ),
        None => format!("{} · {errors} errors, {warnings} warnings", input.file),
    };
    let title = format!(
        "staticbus map: {}",
        input
            .system
            .map_or(input.file.as_str(), |s| s.name.as_str())
    );
    let (svg, labels, height) =
        draw::draw(&title, &subtitle, scene.as_ref(), &problems, problems_text);
    Drawing {
        svg,
        labels,
        problems,
        height,
    }
}

/// The map as a standalone SVG document.
pub fn svg(input: &Input) -> String {
    let mut s = drawing(input, true).svg;
    s.push('\n');
    s
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const PAGE_CSS: &str = "
body { margin: 0; font: 14px 'DejaVu Sans', sans-serif; color: #222; background: #f5f7f8; }
header { position: sticky; top: 0; z-index: 2; background: #263238; color: #fff; padding: 6px 12px;
  display: flex; gap: 12px; align-items: center; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header button { font: inherit; padding: 1px 9px; }
header .hint { color: #b0bec5; font-size: 12px; }
header a { color: #ffcdd2; }
#view { overflow: auto; height: calc(100vh - 42px); }
#canvas { transform-origin: 0 0; width: max-content; background: #fff; }
#problems { padding: 8px 16px 24px; background: #fff; border-top: 3px solid #c62828; }
#problems h2 { font-size: 16px; }
#problems li { margin: 0 0 10px; }
#problems li:target { background: #fff3e0; outline: 2px solid #fb8c00; }
#problems .code { font-weight: bold; font-family: monospace; }
#problems .error .code { color: #c62828; } #problems .warning .code { color: #ef6c00; }
#problems .where, #problems .drawn { font-family: monospace; font-size: 12px; color: #555; }
#problems .help { color: #1b5e20; } #problems .xen { color: #555; font-size: 12px; }
";

/// The zoom, highlight and error-report script (no network, no external state).
const PAGE_JS: &str = r#"
(function () {
  var view = document.getElementById('view'), canvas = document.getElementById('canvas');
  var svg = canvas.querySelector('svg');
  var W = +svg.getAttribute('width'), H = +svg.getAttribute('height'), z = 1;
  function zoom(n) {
    z = Math.min(8, Math.max(0.05, n));
    svg.setAttribute('width', W * z); svg.setAttribute('height', H * z);
    document.getElementById('zl').textContent = Math.round(z * 100) + '%';
  }
  document.getElementById('zin').onclick = function () { zoom(z * 1.25); };
  document.getElementById('zout').onclick = function () { zoom(z / 1.25); };
  document.getElementById('zfit').onclick = function () { zoom(view.clientWidth / W); };
  document.getElementById('z1').onclick = function () { zoom(1); };
  view.addEventListener('wheel', function (e) {
    if (!e.ctrlKey) return;
    e.preventDefault(); zoom(z * (e.deltaY < 0 ? 1.1 : 1 / 1.1));
  }, { passive: false });
  document.addEventListener('keydown', function (e) {
    if (e.key === '+' || e.key === '=') zoom(z * 1.25);
    else if (e.key === '-') zoom(z / 1.25);
    else if (e.key === '0') zoom(1);
  });
  var lit = [];
  svg.addEventListener('mouseover', function (e) {
    var el = e.target.closest('[data-k]');
    lit.forEach(function (x) { x.classList.remove('hl'); }); lit = [];
    if (!el) return;
    var keys = el.getAttribute('data-k').split(' '), own = keys[0];
    svg.querySelectorAll('[data-k]').forEach(function (x) {
      var k = x.getAttribute('data-k').split(' ');
      if (k.indexOf(own) >= 0 || keys.indexOf(k[0]) >= 0) { x.classList.add('hl'); lit.push(x); }
    });
  });
  document.body.setAttribute('data-ready', 'ok');
})();
"#;

/// The map as one self-contained HTML page: the SVG inline, a toolbar (zoom in and out, fit,
/// 100 %; Ctrl+wheel and the + - 0 keys), hover highlighting of everything that belongs to
/// the same domain, region or channel, and the problems as a list with anchors (`#p1` …)
/// that the drawing links to. A Content-Security-Policy forbids every network load; a
/// script error is reported in the page title (`map error: …`).
pub fn html(input: &Input) -> String {
    let d = drawing(input, false);
    // A rule's consequence is Xen's on a Xen system, the platform's otherwise.
    let what = match input.system.map(|s| s.target.hypervisor) {
        Some(Hypervisor::QemuIvshmem) => "what happens",
        _ => "what Xen does",
    };
    let name = input
        .system
        .map_or(input.file.as_str(), |s| s.name.as_str());
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width\">\n");
    o.push_str(&format!(
        "<title>staticbus map: {}</title>\n",
        escape_html(name)
    ));
    o.push_str("<script>window.addEventListener('error', function (e) { document.title = 'map error: ' + e.message; });</script>\n");
    o.push_str(&format!("<style>{PAGE_CSS}</style>\n</head>\n<body>\n"));
    let n = d.problems.len();
    o.push_str(&format!(
        "<header><h1>staticbus map: {}</h1><button id=\"zout\" title=\"zoom out (-)\">−</button><span id=\"zl\">100%</span><button id=\"zin\" title=\"zoom in (+)\">+</button><button id=\"zfit\">fit width</button><button id=\"z1\" title=\"100% (0)\">1:1</button><span class=\"hint\">Ctrl+wheel zooms · hover highlights a domain, region or channel</span>{}</header>\n",
        escape_html(name),
        if n > 0 {
            format!("<a href=\"#problems\">{n} problem{}</a>", if n == 1 { "" } else { "s" })
        } else {
            "<span class=\"hint\">no problems</span>".into()
        }
    ));
    o.push_str("<div id=\"view\"><div id=\"canvas\">\n");
    o.push_str(&d.svg);
    o.push_str("\n</div>\n");
    o.push_str(&format!(
        "<section id=\"problems\"><h2>Problems ({n})</h2>\n"
    ));
    if n == 0 {
        o.push_str("<p>None: the check is clean.</p>\n");
    } else {
        o.push_str("<ol>\n");
        for (i, p) in d.problems.iter().enumerate() {
            o.push_str(&format!(
                "<li id=\"p{}\" class=\"{}\"><span class=\"code\">{}</span> {}: {} <span class=\"xen\">({})</span>\n<div class=\"where\">{}</div>\n",
                i + 1,
                p.severity,
                p.code,
                p.severity,
                escape_html(&p.message),
                escape_html(p.title),
                escape_html(&p.location)
            ));
            for note in &p.notes {
                o.push_str(&format!(
                    "<div class=\"note\">note: {}</div>\n",
                    escape_html(note)
                ));
            }
            if let Some(h) = &p.help {
                o.push_str(&format!(
                    "<div class=\"help\">help: {}</div>\n",
                    escape_html(h)
                ));
            }
            o.push_str(&format!(
                "<div class=\"xen\">{what}: {}</div>\n",
                escape_html(p.xen)
            ));
            let on = if p.drawn_on.is_empty() {
                "not tied to anything drawn".to_string()
            } else {
                format!("drawn on: {}", p.drawn_on.join("; "))
            };
            o.push_str(&format!(
                "<div class=\"drawn\">{}</div></li>\n",
                escape_html(&on)
            ));
        }
        o.push_str("</ol>\n");
    }
    o.push_str("</section>\n</div>\n");
    o.push_str(&format!("<script>{PAGE_JS}</script>\n</body>\n</html>\n"));
    o
}

#[cfg(test)]
mod tests;
