//! The scene as SVG, through the `svg` crate (which escapes every text node and attribute
//! value). Text from the description only ever goes into text nodes.

use crate::layout::{lanes, place_labels, Rect, Scale};
use crate::objects::{addr, size, Item, Kind, Scene, XEN_LEGEND};
use crate::Problem;
use svg::node::element::{
    Anchor, Definitions, Group, Line, Marker, Path, Pattern, Rectangle, Style, Text, Title,
};
use svg::Node;

/// Width of the whole picture.
pub const WIDTH: f64 = 1400.0;
/// Width of a monospace character, as a fraction of the font size (DejaVu Sans Mono and
/// most monospace fonts: 0.602).
const CHAR: f64 = 0.62;

const CSS: &str = "
text { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: 11px; fill: #222; }
text.h1 { font-size: 18px; font-weight: bold; }
text.h2 { font-size: 14px; font-weight: bold; }
text.small, text.axis { font-size: 10px; fill: #555; }
text.note { fill: #555; }
text.bad { fill: #c62828; font-weight: bold; }
rect { stroke: #37474f; stroke-width: 0.6; }
rect.ram { fill: #e3f2fd; } rect.pool { fill: #fff8e1; } rect.free { fill: url(#free); }
rect.reserved { fill: #9e9e9e; } rect.xen { fill: #7e57c2; } rect.dtb { fill: #8d6e63; }
rect.kernel { fill: #42a5f5; } rect.ramdisk { fill: #26c6da; } rect.staticmem { fill: #ab47bc; }
rect.queue { fill: #43a047; } rect.log { fill: #fb8c00; } rect.latest { fill: #1e88e5; }
rect.blob { fill: #8e24aa; } rect.shm { fill: #607d8b; } rect.evtchn { fill: #eceff1; }
rect.window { fill: #cfd8dc; } rect.dom { fill: #fafafa; } rect.card { fill: none; stroke: #b0bec5; }
rect.link { fill-opacity: 0.18; }
rect.overlap { fill: url(#overlap); stroke: #c62828; stroke-width: 1; }
.bad > rect, rect.bad { stroke: #c62828; stroke-width: 2.5; }
path.edge { fill: none; stroke-width: 1.4; stroke: #78909c; }
path.edge.queue { stroke: #43a047; } path.edge.log { stroke: #fb8c00; }
path.edge.latest { stroke: #1e88e5; } path.edge.blob { stroke: #8e24aa; }
path.edge.shm { stroke-dasharray: 2 3; } path.edge.evtchn { stroke-dasharray: 6 3; }
path.gap { fill: none; stroke: #90a4ae; stroke-width: 1; }
line.lead { stroke: #b0bec5; stroke-width: 0.6; } line.tick { stroke: #90a4ae; stroke-width: 0.6; }
.hl > rect, rect.hl { stroke: #000; stroke-width: 2.5; } path.hl { stroke-width: 3.5; }
";

/// The style sheet. A qemu-ivshmem picture calls the class of a pair of no channel
/// `doorbell` (there are no event channels on that platform); the rules are the same.
fn css(scene: Option<&Scene>) -> String {
    match scene.map(|s| s.hypervisor) {
        Some(staticbus_config::model::Hypervisor::QemuIvshmem) => CSS.replace("evtchn", "doorbell"),
        _ => CSS.to_string(),
    }
}

/// The drawing under construction: the SVG group and every label's box (for the
/// no-overlap test).
pub struct Canvas {
    root: Group,
    /// Every label placed, as the box its text occupies.
    pub labels: Vec<Rect>,
}

fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Shortens `s` to `max` characters (an ellipsis marks the cut).
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Characters of a `font`-pixel monospace font that fit in `w` pixels.
pub fn chars(w: f64, font: f64) -> usize {
    (w / (font * CHAR)).floor().max(1.0) as usize
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            root: Group::new(),
            labels: Vec::new(),
        }
    }

    fn add(&mut self, n: impl Into<Box<dyn Node>>) {
        self.root.append(n);
    }

    /// A one-line label with its top-left at (x, y), cut to `max` characters; returns the
    /// element, not yet added (so that it can be wrapped in a link).
    fn text(&mut self, x: f64, y: f64, s: &str, max: usize, font: f64, class: &str) -> Text {
        let s = fit(s, max);
        let n = s.chars().count() as f64;
        self.labels.push(Rect {
            x,
            y,
            w: n * font * CHAR,
            h: font + 2.0,
        });
        let mut t = Text::new(s).set("x", r1(x)).set("y", r1(y + font * 0.85));
        if !class.is_empty() {
            t = t.set("class", class);
        }
        t
    }

    fn label(&mut self, x: f64, y: f64, s: &str, max: usize, font: f64, class: &str) {
        let t = self.text(x, y, s, max, font, class);
        self.add(t);
    }
}

fn rect(x: f64, y: f64, w: f64, h: f64, class: &str) -> Rectangle {
    Rectangle::new()
        .set("x", r1(x))
        .set("y", r1(y))
        .set("width", r1(w.max(0.5)))
        .set("height", r1(h.max(1.0)))
        .set("class", class)
}

fn keyed(g: Group, keys: &[String]) -> Group {
    if keys.is_empty() {
        g
    } else {
        g.set("data-k", keys.join(" "))
    }
}

/// The label of an object with its problems: ` ⚠ SB0216 SB0221` appended.
fn with_problems(label: &str, problems: &[usize], all: &[Problem]) -> String {
    if problems.is_empty() {
        return label.to_string();
    }
    let mut codes: Vec<&str> = problems.iter().map(|&p| all[p].code).collect();
    codes.dedup();
    format!("{label} ⚠ {}", codes.join(" "))
}

fn tip_with_problems(tip: &str, problems: &[usize], all: &[Problem]) -> String {
    let mut t = tip.to_string();
    for &p in problems {
        t.push_str(&format!(
            "\n⚠ [{}] {}: {}",
            p + 1,
            all[p].code,
            all[p].message
        ));
    }
    t
}

/// A link to the problem list entry of the first problem, around `node`.
fn link_problem(node: impl Into<Box<dyn Node>>, problems: &[usize]) -> Box<dyn Node> {
    match problems.first() {
        Some(p) => Box::new(Anchor::new().set("href", format!("#p{}", p + 1)).add(node)),
        None => node.into(),
    }
}

/// Geometry of one memory-map column.
struct Column {
    x: f64,
    width: f64,
    font: f64,
    /// Width of the address axis.
    axis: f64,
    /// Width of a background lane and of an occupant lane.
    bg_lane: f64,
    lane: f64,
}

/// Draws a memory map at (col.x, y0); returns its height.
fn memory_map(
    c: &mut Canvas,
    col: &Column,
    y0: f64,
    items: &[Item],
    scene: &Scene,
    problems: &[Problem],
) -> f64 {
    let ranges: Vec<(u64, u64)> = items.iter().map(|i| (i.base, i.size)).collect();
    let scale = Scale::new(&ranges);
    // Background lanes: one per container kind, in order of first appearance.
    let mut bg: Vec<Kind> = Vec::new();
    for i in items.iter().filter(|i| i.kind.is_container()) {
        let k = if i.kind == Kind::PoolFree {
            Kind::Pool
        } else {
            i.kind
        };
        if !bg.contains(&k) {
            bg.push(k);
        }
    }
    let occ: Vec<usize> = (0..items.len())
        .filter(|&i| !items[i].kind.is_container())
        .collect();
    let occ_lane = lanes(&occ.iter().map(|&i| ranges[i]).collect::<Vec<_>>());
    let n_lanes = occ_lane.iter().max().map_or(1, |m| m + 1);
    let x_bg = col.x + col.axis + 4.0;
    let x_occ = x_bg + bg.len() as f64 * (col.bg_lane + 2.0);
    let x_end = x_occ + n_lanes as f64 * col.lane;
    let x_label = x_end + 16.0;
    let max = chars(col.x + col.width - x_label - 4.0, col.font);
    // Axis: every boundary address.
    for (a, y) in scale.boundaries() {
        let s = addr(a);
        let w = s.chars().count() as f64 * (col.font - 1.0) * CHAR;
        c.label(
            x_bg - 6.0 - w,
            y0 + y - (col.font - 1.0) / 2.0 - 1.0,
            &s,
            40,
            col.font - 1.0,
            "axis",
        );
        c.add(
            Line::new()
                .set("x1", r1(x_bg - 4.0))
                .set("x2", r1(x_end))
                .set("y1", r1(y0 + y))
                .set("y2", r1(y0 + y))
                .set("class", "tick"),
        );
    }
    // Gaps: a break mark across the lanes.
    for s in scale.segments.iter().filter(|s| s.gap) {
        let ym = y0 + s.y + s.h / 2.0;
        let mut d = format!("M{} {}", r1(x_bg), r1(ym));
        let mut x = x_bg;
        let mut up = true;
        while x < x_end {
            x += 4.0;
            d.push_str(&format!(
                " L{} {}",
                r1(x),
                r1(ym + if up { -3.0 } else { 3.0 })
            ));
            up = !up;
        }
        c.add(
            Path::new()
                .set("d", d)
                .set("class", "gap")
                .add(Title::new(format!(
                    "{} not used by anything on this map (axis cut)",
                    size((s.end - s.start as u128).min(u64::MAX as u128) as u64)
                ))),
        );
    }
    // Boxes.
    let mut oi = 0;
    let mut label_wanted = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let (ya, yb) = scale.span(it.base, it.size);
        let (x, w) = if it.kind.is_container() {
            let k = if it.kind == Kind::PoolFree {
                Kind::Pool
            } else {
                it.kind
            };
            let l = bg.iter().position(|&b| b == k).unwrap_or(0);
            (x_bg + l as f64 * (col.bg_lane + 2.0), col.bg_lane)
        } else {
            let l = occ_lane[oi];
            oi += 1;
            (x_occ + l as f64 * col.lane, col.lane - 2.0)
        };
        let probs = &scene.objs[it.obj].problems;
        let mut g = keyed(Group::new().set("class", "o"), &it.keys);
        if !probs.is_empty() {
            g = g.set("class", "o bad");
        }
        g = g
            .add(rect(x, y0 + ya, w, yb - ya, it.kind.class()))
            .add(Title::new(tip_with_problems(&it.tip, probs, problems)));
        c.add(link_problem(g, probs));
        let top = y0 + ya;
        let wanted = (top + (yb - ya) / 2.0 - col.font / 2.0).min(top + 14.0);
        label_wanted.push((i, wanted, x + w));
    }
    // Overlaps between occupants: a hatched band across the lanes.
    let mut sorted: Vec<usize> = occ.clone();
    sorted.sort_by_key(|&i| items[i].base);
    for (k, &a) in sorted.iter().enumerate() {
        let ia = &items[a];
        let a_end = ia.base as u128 + ia.size as u128;
        for &b in &sorted[k + 1..] {
            let ib = &items[b];
            if ib.base as u128 >= a_end {
                break;
            }
            if ib.size == 0 || ia.size == 0 {
                continue;
            }
            let lo = ib.base;
            let hi = a_end.min(ib.base as u128 + ib.size as u128);
            let (ya, yb) = (scale.y(lo as u128), scale.y(hi));
            c.add(
                rect(
                    x_occ - 2.0,
                    y0 + ya,
                    x_end - x_occ + 4.0,
                    yb - ya,
                    "overlap",
                )
                .add(Title::new(format!(
                    "overlap: {} and {} share {}..{}",
                    ia.label,
                    ib.label,
                    addr(lo as u128),
                    addr(hi)
                ))),
            );
        }
    }
    // Labels, pushed apart, with leader lines.
    let line = col.font + 3.0;
    let wanted: Vec<f64> = label_wanted.iter().map(|w| w.1).collect();
    let placed = place_labels(&wanted, line);
    let mut bottom = y0 + scale.height();
    for (k, &(i, want, from_x)) in label_wanted.iter().enumerate() {
        let it = &items[i];
        let y = placed[k];
        let probs = &scene.objs[it.obj].problems;
        c.add(
            Line::new()
                .set("x1", r1(from_x))
                .set("y1", r1(want + col.font / 2.0))
                .set("x2", r1(x_label - 2.0))
                .set("y2", r1(y + col.font / 2.0))
                .set("class", "lead"),
        );
        let text = with_problems(&it.label, probs, problems);
        let class = if probs.is_empty() { "" } else { "bad" };
        let t = c
            .text(x_label, y, &text, max, col.font, class)
            .add(Title::new(tip_with_problems(&it.tip, probs, problems)));
        c.add(link_problem(keyed(Group::new(), &it.keys).add(t), probs));
        bottom = bottom.max(y + line);
    }
    bottom - y0
}

/// Draws the whole scene; `problems_text` adds the problem list at the bottom (the HTML
/// lists them in HTML instead). Returns the document and every label box.
pub fn draw(
    title: &str,
    subtitle: &str,
    scene: Option<&Scene>,
    problems: &[Problem],
    problems_text: bool,
) -> (String, Vec<Rect>, f64) {
    let mut c = Canvas::new();
    let max = chars(WIDTH - 20.0, 11.0);
    c.label(10.0, 8.0, title, chars(WIDTH - 20.0, 18.0), 18.0, "h1");
    c.label(10.0, 32.0, subtitle, max, 11.0, "note");
    c.label(
        10.0,
        47.0,
        "Address axes are segmented: cut at every start and end of a range; each span is drawn with a height that grows with the log of its size, unused spans are cut short (zigzag). Addresses grow downward.",
        max,
        10.0,
        "small",
    );
    // Legend.
    let legend = scene.map_or(XEN_LEGEND, |s| s.legend.as_slice());
    let mut x = 10.0;
    for &(class, name) in legend {
        c.add(rect(x, 63.0, 10.0, 10.0, class));
        c.label(x + 13.0, 62.0, name, 20, 10.0, "small");
        x += 13.0 + name.chars().count() as f64 * 10.0 * CHAR + 12.0;
    }
    let mut y = 90.0;
    if let Some(scene) = scene {
        // Row 1: host map (left), channel graph (right).
        c.label(10.0, y, &scene.host_title, 60, 14.0, "h2");
        let host_col = Column {
            x: 10.0,
            width: 700.0,
            font: 11.0,
            axis: 100.0,
            bg_lane: 14.0,
            lane: 22.0,
        };
        let mut h = if scene.host.is_empty() {
            c.label(20.0, y + 26.0, "(no host ranges known)", 60, 11.0, "note");
            30.0
        } else {
            memory_map(&mut c, &host_col, y + 26.0, &scene.host, scene, problems) + 26.0
        };
        // Lines under the map start clear of its last axis label (which reaches 6 px below
        // the map's end).
        let under = 10.0;
        for (label, o) in &scene.heap_regions {
            let probs = &scene.objs[*o].problems;
            let t = c.text(
                20.0,
                y + h + under,
                &with_problems(label, probs, problems),
                chars(680.0, 11.0),
                11.0,
                if probs.is_empty() { "note" } else { "bad" },
            );
            c.add(link_problem(t, probs));
            h += 15.0;
        }
        let gh = graph(&mut c, 730.0, y, scene, problems);
        y += h.max(gh) + 24.0;
        // Row 2: guest maps, four per row.
        c.label(10.0, y, &scene.guests_title, 80, 14.0, "h2");
        y += 24.0;
        let per_row = 4;
        let card_w = (WIDTH - 20.0) / per_row as f64;
        for row in scene.guests.chunks(per_row).enumerate() {
            let (ri, maps) = row;
            let mut row_h: f64 = 0.0;
            for (k, gm) in maps.iter().enumerate() {
                let di = ri * per_row + k;
                let x = 10.0 + k as f64 * card_w;
                let dobj = scene.domain_objs[di];
                let probs = &scene.objs[dobj].problems;
                let t = c.text(
                    x + 6.0,
                    y + 4.0,
                    &with_problems(&gm.title, probs, problems),
                    chars(card_w - 14.0, 11.0),
                    11.0,
                    if probs.is_empty() { "h3" } else { "bad" },
                );
                c.add(link_problem(
                    keyed(Group::new(), &[format!("d{di}")]).add(t),
                    probs,
                ));
                let mut top = y + 20.0;
                if let Some(n) = &gm.note {
                    c.label(x + 6.0, top, n, chars(card_w - 14.0, 10.0), 10.0, "small");
                    top += 14.0;
                }
                let col = Column {
                    x: x + 2.0,
                    width: card_w - 6.0,
                    font: 10.0,
                    axis: 80.0,
                    bg_lane: 8.0,
                    lane: 16.0,
                };
                let mh = memory_map(&mut c, &col, top + 6.0, &gm.items, scene, problems);
                let ch = top + 6.0 + mh + 8.0 - y;
                row_h = row_h.max(ch);
            }
            for k in 0..maps.len() {
                let x = 10.0 + k as f64 * card_w;
                c.add(rect(x, y - 2.0, card_w - 6.0, row_h, "card"));
            }
            y += row_h + 12.0;
        }
    } else {
        c.label(
            10.0,
            y,
            "The input could not be read into a system model: nothing to draw but the problems.",
            max,
            11.0,
            "bad",
        );
        y += 24.0;
    }
    if problems_text {
        y += 6.0;
        c.label(
            10.0,
            y,
            &format!("Problems ({})", problems.len()),
            40,
            14.0,
            "h2",
        );
        y += 22.0;
        if problems.is_empty() {
            c.label(20.0, y, "none: the check is clean", 60, 11.0, "note");
            y += 16.0;
        }
        for (i, p) in problems.iter().enumerate() {
            let head = format!(
                "[{}] {}[{}] {}: {}",
                i + 1,
                p.severity,
                p.code,
                p.location,
                p.message
            );
            let t = c
                .text(20.0, y, &head, max, 11.0, "bad")
                .set("id", format!("p{}", i + 1));
            c.add(t);
            y += 15.0;
            if let Some(h) = &p.help {
                c.label(44.0, y, &format!("help: {h}"), max - 4, 11.0, "note");
                y += 15.0;
            }
        }
    }
    let height = (y + 10.0).ceil();
    let defs = Definitions::new()
        .add(
            Pattern::new()
                .set("id", "overlap")
                .set("width", 6)
                .set("height", 6)
                .set("patternUnits", "userSpaceOnUse")
                .set("patternTransform", "rotate(45)")
                .add(
                    rect(0.0, 0.0, 6.0, 6.0, "")
                        .set("fill", "#ffcdd2")
                        .set("stroke", "none"),
                )
                .add(
                    Line::new()
                        .set("x1", 0)
                        .set("y1", 0)
                        .set("x2", 0)
                        .set("y2", 6)
                        .set("stroke", "#c62828")
                        .set("stroke-width", 3),
                ),
        )
        .add(
            Pattern::new()
                .set("id", "free")
                .set("width", 5)
                .set("height", 5)
                .set("patternUnits", "userSpaceOnUse")
                .set("patternTransform", "rotate(45)")
                .add(
                    rect(0.0, 0.0, 5.0, 5.0, "")
                        .set("fill", "#f1f8e9")
                        .set("stroke", "none"),
                )
                .add(
                    Line::new()
                        .set("x1", 0)
                        .set("y1", 0)
                        .set("x2", 0)
                        .set("y2", 5)
                        .set("stroke", "#9ccc65")
                        .set("stroke-width", 1.5),
                ),
        )
        .add(
            Marker::new()
                .set("id", "arrow")
                .set("viewBox", "0 0 10 10")
                .set("refX", 9)
                .set("refY", 5)
                .set("markerWidth", 7)
                .set("markerHeight", 7)
                .set("orient", "auto-start-reverse")
                .add(
                    Path::new()
                        .set("d", "M0 0 L10 5 L0 10 z")
                        .set("fill", "#546e7a"),
                ),
        );
    let doc = svg::Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", format!("0 0 {WIDTH} {height}"))
        .set("font-family", "monospace")
        .add(Style::new(css(scene)))
        .add(defs)
        .add(
            rect(0.0, 0.0, WIDTH, height, "")
                .set("fill", "#ffffff")
                .set("stroke", "none"),
        )
        .add(c.root);
    (doc.to_string(), c.labels, height)
}

/// The channel graph at (x0, y0): domains on the left, links (channels, regions, event
/// channels) on the right, ordered by the mean position of their domains so that edges
/// cross little. Returns its height.
fn graph(c: &mut Canvas, x0: f64, y0: f64, scene: &Scene, problems: &[Problem]) -> f64 {
    c.label(x0, y0, &scene.graph_title, 40, 14.0, "h2");
    let top = y0 + 28.0;
    let n = scene.domain_labels.len();
    if n == 0 {
        c.label(x0, top, "(no domains)", 40, 11.0, "note");
        return 50.0;
    }
    let (dw, dh, dstep) = (180.0, 20.0, 28.0);
    let (lx, lw, line) = (x0 + 330.0, WIDTH - 10.0 - x0 - 330.0, 13.0);
    let link_h = |l: &crate::objects::Link| 8.0 + line * l.lines.len() as f64;
    // Order links by the barycentre of their domains.
    let mut order: Vec<usize> = (0..scene.links.len()).collect();
    let bary = |l: &crate::objects::Link| {
        let s: usize = l.edges.iter().map(|e| e.0).sum();
        s as f64 / l.edges.len().max(1) as f64
    };
    order.sort_by(|&a, &b| bary(&scene.links[a]).total_cmp(&bary(&scene.links[b])));
    let links_h: f64 = order.iter().map(|&i| link_h(&scene.links[i]) + 10.0).sum();
    let doms_h = n as f64 * dstep;
    let d_top = top + ((links_h - doms_h) / 2.0).max(0.0);
    let l_top = top + ((doms_h - links_h) / 2.0).max(0.0);
    let dom_y = |d: usize| d_top + d as f64 * dstep;
    // Links and edges.
    let mut y = l_top;
    for &li in &order {
        let l = &scene.links[li];
        let h = link_h(l);
        let ly = y + h / 2.0;
        for &(d, writes, reads) in &l.edges {
            if d >= n {
                continue;
            }
            let (ax, ay) = (x0 + dw, dom_y(d) + dh / 2.0);
            let bx = lx;
            let mid = (ax + bx) / 2.0;
            let curve = |from: (f64, f64), to: (f64, f64)| {
                format!(
                    "M{} {} C{} {} {} {} {} {}",
                    r1(from.0),
                    r1(from.1),
                    r1(mid),
                    r1(from.1),
                    r1(mid),
                    r1(to.1),
                    r1(to.0),
                    r1(to.1)
                )
            };
            let keys = [format!("d{d}"), l.keys[0].clone()];
            let class = format!("edge {}", l.class);
            let mut paths = Vec::new();
            if writes {
                paths.push((curve((ax, ay), (bx, ly)), true));
            }
            if reads {
                paths.push((curve((bx, ly + 3.0), (ax, ay + 3.0)), true));
            }
            if !writes && !reads {
                paths.push((curve((ax, ay), (bx, ly)), false));
            }
            for (d_, arrow) in paths {
                let mut p = Path::new()
                    .set("d", d_)
                    .set("class", class.clone())
                    .set("data-k", keys.join(" "));
                if arrow {
                    p = p.set("marker-end", "url(#arrow)");
                }
                c.add(p);
            }
        }
        let probs = &scene.objs[l.obj].problems;
        let mut g = keyed(Group::new().set("class", "o"), &l.keys);
        if !probs.is_empty() {
            g = g.set("class", "o bad");
        }
        g = g.add(rect(lx, y, lw, h, &format!("link {}", l.class)));
        g = g.add(Title::new(tip_with_problems(
            &l.lines.join("\n"),
            probs,
            problems,
        )));
        for (k, s) in l.lines.iter().enumerate() {
            let s = if k == 0 {
                with_problems(s, probs, problems)
            } else {
                s.clone()
            };
            let class = match (k, probs.is_empty()) {
                (0, false) => "bad",
                (0, true) => "",
                _ => "small",
            };
            let font = if k == 0 { 11.0 } else { 10.0 };
            g = g.add(c.text(
                lx + 6.0,
                y + 4.0 + k as f64 * line,
                &s,
                chars(lw - 12.0, font),
                font,
                class,
            ));
        }
        c.add(link_problem(g, probs));
        y += h + 10.0;
    }
    // Domains.
    for d in 0..n {
        let o = scene.domain_objs[d];
        let probs = &scene.objs[o].problems;
        let label = with_problems(&scene.domain_labels[d], probs, problems);
        let mut g = keyed(Group::new().set("class", "o"), &[format!("d{d}")]);
        if !probs.is_empty() {
            g = g.set("class", "o bad");
        }
        let t = c.text(
            x0 + 6.0,
            dom_y(d) + 4.0,
            &label,
            chars(dw - 12.0, 11.0),
            11.0,
            if probs.is_empty() { "" } else { "bad" },
        );
        g = g
            .add(rect(x0, dom_y(d), dw, dh, "dom"))
            .add(Title::new(tip_with_problems(&label, probs, problems)))
            .add(t);
        c.add(link_problem(g, probs));
    }
    (doms_h.max(links_h) + 28.0).max(y - y0)
}
