//! Layout tests on the examples and on a 64-domain system.

use super::*;
use staticbus_config::compile::{check, Options};
use std::path::PathBuf;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| {
            let p = e.ok()?.path().join("system.toml");
            p.exists().then_some(p)
        })
        .collect();
    v.sort();
    assert!(v.len() >= 10, "{v:?}");
    v
}

fn draw_file(path: &Path) -> (Drawing, System) {
    let mut sources = Sources::new();
    let c = check(&mut sources, path, &Options::default());
    let sys = c.system.expect("the example reads");
    let input = Input {
        system: Some(&sys),
        diags: &c.diags,
        sources: &sources,
        file: path.display().to_string(),
    };
    (drawing(&input, true), sys)
}

fn draw_text(name: &str, text: &str) -> (Drawing, System, Diagnostics) {
    let dir = std::env::temp_dir().join(format!("staticbus-map-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let mut sources = Sources::new();
    let c = check(&mut sources, &path, &Options::default());
    let sys = c.system.expect("the description reads");
    let input = Input {
        system: Some(&sys),
        diags: &c.diags,
        sources: &sources,
        file: name.into(),
    };
    (drawing(&input, true), sys, c.diags)
}

fn assert_no_label_overlaps(d: &Drawing, what: &str) {
    let bad = layout::intersecting(&d.labels);
    assert!(
        bad.is_empty(),
        "{what}: {} overlapping labels, e.g. {:?} and {:?}",
        bad.len(),
        d.labels[bad[0].0],
        d.labels[bad[0].1]
    );
    for r in &d.labels {
        assert!(
            r.x >= 0.0 && r.x + r.w <= draw::WIDTH + 0.5,
            "{what}: label outside: {r:?}"
        );
    }
}

fn assert_everything_present(d: &Drawing, sys: &System, what: &str) {
    for dom in &sys.domains {
        assert!(d.svg.contains(&dom.name), "{what}: domain {}", dom.name);
    }
    for c in &sys.channels {
        assert!(d.svg.contains(&c.name), "{what}: channel {}", c.name);
    }
    for n in &sys.shm {
        assert!(
            d.svg.contains(&format!("shm {}", n.id))
                || sys.channels.iter().any(|c| c.shm_id == n.id),
            "{what}: region {}",
            n.id
        );
        assert!(
            d.svg.contains(&format!("`{}`", n.id)),
            "{what}: region {} in a tooltip",
            n.id
        );
    }
    for p in &sys.evtchns {
        let a = format!("{}:{}", sys.domains[p.first.domain].name, p.first.port);
        let b = format!("{}:{}", sys.domains[p.second.domain].name, p.second.port);
        assert!(
            d.svg.contains(&format!("{a} ↔ {b}"))
                || sys.channels.iter().any(|c| c.evtchns.len() > 4),
            "{what}: pair {a} {b}"
        );
    }
    for m in sys.modules() {
        assert!(
            d.svg.contains(&objects::addr(m.1.addr as u128)),
            "{what}: module at {:#x}",
            m.1.addr
        );
    }
}

#[test]
fn every_example_is_drawn_without_overlapping_labels() {
    for p in examples() {
        let (d, sys) = draw_file(&p);
        let what = p.display().to_string();
        assert!(d.svg.starts_with("<svg"), "{what}");
        assert_no_label_overlaps(&d, &what);
        assert_everything_present(&d, &sys, &what);
    }
}

/// 64 domains in a ring of queues, with a log every domain reads: still laid out, still
/// no overlapping labels.
#[test]
fn sixty_four_domains() {
    let mut t = String::from(
        "[target]\nxen = \"4.20\"\nstatic-shm = true\n[platform]\nram = [{ base = 0x4000_0000, size = \"4GiB\" }]\nshm-pool = { base = 0x1_0000_0000, size = \"256MiB\" }\n",
    );
    for i in 0..64 {
        t.push_str(&format!(
            "[[domain]]\nname = \"dom{i:02}\"\nmemory = \"16MiB\"\nkernel = {{ file = \"k.bin\", size = \"1MiB\" }}\n"
        ));
    }
    for i in 0..64 {
        t.push_str(&format!(
            "[[channel]]\nname = \"q{i:02}\"\nprotocol = \"queue\"\nfrom = \"dom{i:02}\"\nto = \"dom{:02}\"\nsize = \"64KiB\"\n",
            (i + 1) % 64
        ));
    }
    let (d, sys, diags) = draw_text("big.toml", &t);
    // Xen itself stops at 32 boot modules and 32 regions: the map draws the errors too.
    for c in diags.codes() {
        assert!(["SB0411", "SB0226"].contains(&c), "{:?}", diags.codes());
    }
    assert_eq!(sys.domains.len(), 64);
    assert_no_label_overlaps(&d, "64 domains");
    assert_everything_present(&d, &sys, "64 domains");
    // Usable: not absurdly tall.
    assert!(d.height < 40_000.0, "{}", d.height);
}

#[test]
fn an_overlap_is_drawn_as_an_overlap_and_linked_to_its_problem() {
    let t = r#"
[target]
static-shm = true
[platform]
ram = [{ base = 0x4000_0000, size = "1GiB" }]
[[domain]]
name = "a"
memory = "16MiB"
kernel = { file = "k", size = "1MiB" }
[[domain]]
name = "b"
memory = "16MiB"
kernel = { file = "k", size = "1MiB" }
[[shm]]
id = "one"
size = "1MiB"
host = 0x5000_0000
users = [{ domain = "a", role = "owner" }, { domain = "b", role = "borrower" }]
[[shm]]
id = "two"
size = "1MiB"
host = 0x5008_0000
users = [{ domain = "a", role = "owner" }, { domain = "b", role = "borrower" }]
"#;
    let (d, _, diags) = draw_text("overlap.toml", t);
    assert!(diags.has_code("SB0216"), "{:?}", diags.codes());
    assert!(d.svg.contains("class=\"overlap\""), "no overlap band");
    assert!(
        d.svg.contains("overlap: shm one"),
        "the band names the regions"
    );
    let p = d
        .problems
        .iter()
        .position(|p| p.code == "SB0216")
        .expect("listed");
    assert!(
        d.problems[p].drawn_on.iter().any(|o| o.contains("shm one"))
            && d.problems[p].drawn_on.iter().any(|o| o.contains("shm two")),
        "{:?}",
        d.problems[p].drawn_on
    );
    assert!(d.svg.contains(&format!("href=\"#p{}\"", p + 1)));
    assert!(d.svg.contains(&format!("id=\"p{}\"", p + 1)));
    assert_no_label_overlaps(&d, "overlap");
}

#[test]
fn text_from_the_description_is_escaped() {
    let t = r#"
[system]
name = "<script>alert(1)</script>"
[target]
static-shm = true
[platform]
ram = [{ base = 0x4000_0000, size = "1GiB" }]
[[domain]]
name = "a"
memory = "16MiB"
kernel = { file = "k\"<i>", size = "1MiB" }
[[domain]]
name = "b"
memory = "16MiB"
kernel = { file = "k", size = "1MiB" }
[[shm]]
id = "x<&>\"'y"
size = "1MiB"
host = 0x5000_0000
users = [{ domain = "a", role = "owner" }, { domain = "b", role = "borrower" }]
"#;
    let (d, _, _) = draw_text("esc.toml", t);
    assert!(!d.svg.contains("<script>"));
    assert!(!d.svg.contains("x<&>"));
    assert!(!d.svg.contains("k\"<i>"));
    let dir = std::env::temp_dir().join(format!("staticbus-map-test-{}", std::process::id()));
    let mut sources = Sources::new();
    let c = check(&mut sources, &dir.join("esc.toml"), &Options::default());
    let input = Input {
        system: c.system.as_ref(),
        diags: &c.diags,
        sources: &sources,
        file: "esc.toml".into(),
    };
    let h = html(&input);
    assert_eq!(
        h.matches("<script>").count(),
        2,
        "only the page's own scripts"
    );
    assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn a_system_that_cannot_be_read_still_gives_a_page_with_its_problems() {
    let mut sources = Sources::new();
    let dir = std::env::temp_dir().join(format!("staticbus-map-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("broken.toml");
    std::fs::write(&p, "[[domain]\nname = 1\n").unwrap();
    let c = check(&mut sources, &p, &Options::default());
    assert!(c.diags.has_errors());
    let input = Input {
        system: c.system.as_ref(),
        diags: &c.diags,
        sources: &sources,
        file: "broken.toml".into(),
    };
    let h = html(&input);
    assert!(h.contains("SB0501"), "{h}");
    assert!(svg(&input).contains("SB0501"));
}

#[test]
fn formats_by_extension() {
    assert_eq!(Format::from_path(Path::new("a/map.svg")), Some(Format::Svg));
    assert_eq!(Format::from_path(Path::new("map.HTML")), Some(Format::Html));
    assert_eq!(Format::from_path(Path::new("map.png")), None);
    assert_eq!(Format::from_path(Path::new("map")), None);
}
