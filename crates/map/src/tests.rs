//! Layout tests on the examples and on a 64-domain system.

use super::*;
use staticbus_config::compile::{check, Options};
use staticbus_config::model::Hypervisor;
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
                || sys.channels.iter().any(|c| c.shm_id == n.id)
                || sys.virtio.iter().any(|v| {
                    v.shm_id == n.id && d.svg.contains(&format!("virtio-{} {}", v.device, v.name))
                }),
            "{what}: region {}",
            n.id
        );
        assert!(
            d.svg.contains(&format!("`{}`", n.id)),
            "{what}: region {} in a tooltip",
            n.id
        );
    }
    let ivshmem = sys.target.hypervisor == Hypervisor::QemuIvshmem;
    for p in sys.evtchns.iter().filter(|_| ivshmem) {
        let (a, b) = (&sys.domains[p.first.domain], &sys.domains[p.second.domain]);
        for (from, to, port) in [(a, b, p.second.port), (b, a, p.first.port)] {
            let line = format!(
                "{} rings {}: peer {} vector {port}",
                from.name, to.name, to.domid
            );
            assert!(
                d.svg.contains(&line) || sys.channels.iter().any(|c| c.evtchns.len() > 4),
                "{what}: doorbell `{line}`"
            );
        }
    }
    if ivshmem {
        // Each VM loads its own kernel: nothing to place on a shared map.
        return;
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

/// Words that belong to Xen's picture only: a qemu-ivshmem system has no hypervisor, no
/// event channels, no `DOMID_IO`, no Xen heap and no domids (its VMs have peer ids).
const XEN_ONLY: &[&str] = &[
    "Xen",
    "DOMID_IO",
    "evtchn",
    "event channel",
    "heap",
    "domid",
    "Host physical",
];

/// The qemu-ivshmem examples are drawn as VMs around one shared object: each channel's
/// window at the offset and with the size the model gives it (its guest address minus the
/// BAR2 base), the object as `staticbus boot` sizes it with its control page, each VM's
/// RAM and BAR2 where the runtime maps them, doorbells as peer ids and vectors, none of
/// Xen's words, and no overlap for the kernels every VM loads at its own address 0.
#[test]
fn ivshmem_examples_are_drawn_as_vms_around_the_shared_object() {
    use staticbus_abi::ivshmem as iv;
    let mut seen = 0;
    for p in examples() {
        let (d, sys) = draw_file(&p);
        if sys.target.hypervisor != Hypervisor::QemuIvshmem {
            continue;
        }
        seen += 1;
        let what = p.display().to_string();
        assert!(d.problems.is_empty(), "{what}: {:?}", d.problems);
        let mut sources = Sources::new();
        let c = check(&mut sources, &p, &Options::default());
        let input = Input {
            system: Some(&sys),
            diags: &c.diags,
            sources: &sources,
            file: what.clone(),
        };
        let page = html(&input);
        for w in XEN_ONLY {
            assert!(!d.svg.contains(w), "{what}: the SVG says `{w}`");
            assert!(!page.contains(w), "{what}: the page says `{w}`");
        }
        // Only the legend's swatch: no overlap band anywhere.
        assert_eq!(d.svg.matches("class=\"overlap\"").count(), 1, "{what}");
        for (_, m) in sys.modules() {
            assert!(m.addr == 0, "{what}: the model places no modules here");
        }
        assert!(!d.svg.contains(" kernel 2 MiB"), "{what}: kernels on a map");

        let lay = staticbus_config::ivshmem::layout(&sys);
        let scene = objects::scene(&sys);
        assert!(d.svg.contains(&format!(
            "ivshmem shared object ({}, BAR2 of every VM)",
            objects::size(lay.object)
        )));
        // The object map: the object, its control page, and one window per channel.
        let obj = scene
            .host
            .iter()
            .find(|i| i.kind == objects::Kind::Pool)
            .expect("the object");
        assert_eq!((obj.base, obj.size), (0, lay.object), "{what}");
        let ctl = scene
            .host
            .iter()
            .find(|i| i.kind == objects::Kind::Reserved)
            .expect("the control page");
        assert_eq!(
            (ctl.base, ctl.size),
            (lay.object - iv::CONTROL_PAGE, iv::CONTROL_PAGE)
        );
        assert!(d.svg.contains(&objects::addr(ctl.base as u128)), "{what}");
        for ch in &sys.channels {
            let n = &sys.shm[ch.shm[0]];
            let off = n.guest - iv::SHM_BASE;
            let win: Vec<_> = scene
                .host
                .iter()
                .filter(|i| i.kind == objects::Kind::Shm(Some(ch.protocol)))
                .filter(|i| i.label.starts_with(&format!("{} (", ch.name)))
                .collect();
            assert_eq!(win.len(), 1, "{what}: {}", ch.name);
            assert_eq!((win[0].base, win[0].size), (off, ch.size), "{what}");
            let tail = format!(
                "{} at offset {}",
                objects::size(ch.size),
                objects::addr(off as u128)
            );
            assert!(win[0].label.ends_with(&tail), "{what}: {}", win[0].label);
            assert!(d.svg.contains(&tail), "{what}: {tail}");
            assert!(
                d.svg.contains(&format!(
                    "{} · {} · {} · offset {}",
                    ch.name,
                    ch.protocol.as_str(),
                    objects::size(ch.size),
                    objects::addr(off as u128)
                )),
                "{what}: the graph's {}",
                ch.name
            );
            // In every member's map, at its guest address.
            for &m in &ch.shm {
                let n = &sys.shm[m];
                let g = &scene.guests[n.domain];
                assert!(
                    g.items.iter().any(|i| i.base == n.guest
                        && i.size == n.size
                        && i.label.starts_with(&ch.name)),
                    "{what}: {} in {}",
                    ch.name,
                    sys.domains[n.domain].name
                );
            }
        }
        // Free space: what the windows and the control page leave, to the byte.
        let mut ids: Vec<(&str, u64)> = sys.shm.iter().map(|n| (n.id.as_str(), n.size)).collect();
        ids.sort_unstable();
        ids.dedup();
        let used: u64 = ids.iter().map(|r| r.1).sum::<u64>() + iv::CONTROL_PAGE;
        let free: u64 = scene
            .host
            .iter()
            .filter(|i| i.kind == objects::Kind::PoolFree)
            .map(|i| i.size)
            .sum();
        assert_eq!(free + used, lay.object, "{what}");
        // Each VM: RAM where QEMU's virt machine has it, BAR2 where the runtime maps it.
        for (di, dom) in sys.domains.iter().enumerate() {
            let g = &scene.guests[di];
            assert!(
                g.title.contains(&format!("peer id {}", dom.domid)),
                "{what}"
            );
            let mib = staticbus_config::ivshmem::vm_memory_mib(dom);
            assert!(g.items.iter().any(|i| i.kind == objects::Kind::GuestRam
                && (i.base, i.size) == (iv::RAM_BASE, mib << 20)));
            assert!(g.items.iter().any(|i| i.kind == objects::Kind::ShmWindow
                && (i.base, i.size) == (iv::SHM_BASE, lay.object)));
            assert!(scene.domain_labels[di].contains(&format!("peer id {}", dom.domid)));
        }
        assert_no_label_overlaps(&d, &what);
        assert_everything_present(&d, &sys, &what);
    }
    assert!(seen >= 3, "only {seen} qemu-ivshmem examples");
}

/// The platform's own problems are drawn where they are: a region outside the object
/// (SB0901) on the VMs' maps and under the object, a region at two addresses (SB0902) as
/// two windows of the object, a port that is no vector (SB0903) on its channel; two
/// regions that share bytes of the object are drawn as an overlap.
#[test]
fn ivshmem_problems_are_drawn_on_what_they_concern() {
    let t = r#"
[target]
hypervisor = "qemu-ivshmem"
[[domain]]
name = "a"
memory = "32MiB"
kernel = { file = "k", size = "1MiB" }
[[domain]]
name = "b"
memory = "32MiB"
kernel = { file = "k", size = "1MiB" }
[[channel]]
name = "q"
protocol = "queue"
from = "a"
to = "b"
size = "64KiB"
guest = 0x2000_0000
ports = { a = 0, b = 1 }
[[shm]]
id = "over"
size = "64KiB"
users = [{ domain = "a", guest = 0x2000_8000 }, { domain = "b", guest = 0x2000_8000 }]
[[shm]]
id = "out"
size = "4KiB"
users = [{ domain = "a", guest = 0x1000_0000 }, { domain = "b", guest = 0x1000_0000 }]
[[shm]]
id = "split"
size = "4KiB"
users = [{ domain = "a", guest = 0x2008_0000 }, { domain = "b", guest = 0x2009_0000 }]
"#;
    let (d, _, diags) = draw_text("ivshmem-bad.toml", t);
    for code in ["SB0901", "SB0902", "SB0903"] {
        assert!(diags.has_code(code), "{code}: {:?}", diags.codes());
    }
    let on = |code: &str| -> Vec<String> {
        d.problems
            .iter()
            .filter(|p| p.code == code)
            .flat_map(|p| p.drawn_on.clone())
            .collect()
    };
    let out = on("SB0901");
    assert!(out.iter().any(|o| o == "shm out"), "{out:?}");
    assert!(out.iter().any(|o| o == "a: shm out"), "{out:?}");
    assert!(d
        .svg
        .contains("shm out · a, b · 4 KiB at guest 0x1000_0000: not in the shared object"));
    let split = on("SB0902");
    assert!(
        split.iter().any(|o| o.contains("as a place it"))
            && split.iter().any(|o| o.contains("as b place it")),
        "{split:?}"
    );
    assert!(
        on("SB0903").iter().any(|o| o == "channel q"),
        "{:?}",
        on("SB0903")
    );
    assert!(
        d.svg.contains("overlap: q (queue) · a → b"),
        "no overlap band"
    );
    let dir = std::env::temp_dir().join(format!("staticbus-map-test-{}", std::process::id()));
    let mut sources = Sources::new();
    let c = check(
        &mut sources,
        &dir.join("ivshmem-bad.toml"),
        &Options::default(),
    );
    let input = Input {
        system: c.system.as_ref(),
        diags: &c.diags,
        sources: &sources,
        file: "ivshmem-bad.toml".into(),
    };
    let page = html(&input);
    assert!(
        page.contains("what happens: "),
        "the platform's consequence"
    );
    for w in XEN_ONLY {
        assert!(!d.svg.contains(w), "the SVG says `{w}`");
        assert!(!page.contains(w), "the page says `{w}`");
    }
    assert_no_label_overlaps(&d, "ivshmem problems");
}

/// A qemu-ivshmem system with a virtio device, a region and a pair of no channel: each is
/// drawn in the object and the graph, named for what it is, without overlapping labels.
#[test]
fn ivshmem_virtio_regions_and_pairs_are_drawn() {
    let t = r#"
[target]
hypervisor = "qemu-ivshmem"
[[domain]]
name = "frontend"
memory = "32MiB"
kernel = { file = "k", size = "2MiB" }
[[domain]]
name = "backend"
memory = "64MiB"
kernel = { file = "k", size = "2MiB" }
[[virtio]]
name = "disk"
device = "blk"
frontend = "frontend"
backend = "backend"
size = "1MiB"
serve = { builtin = true }
[[channel]]
name = "stats"
protocol = "log"
from = "backend"
to = ["frontend"]
size = "64KiB"
slot-size = "64B"
[[shm]]
id = "raw"
size = "4KiB"
users = [{ domain = "frontend" }, { domain = "backend" }]
[[evtchn]]
a = "frontend:10"
b = "backend:10"
"#;
    let (d, sys, diags) = draw_text("ivshmem-virtio.toml", t);
    assert!(!diags.has_errors(), "{:?}", diags.codes());
    assert_eq!(sys.virtio.len(), 1);
    assert!(d
        .svg
        .contains("virtio-blk disk · frontend, backend · 1 MiB at offset"));
    assert!(d.svg.contains("doorbell pair of virtio-blk disk"));
    assert!(d
        .svg
        .contains("shm raw · frontend, backend · 4 KiB at offset"));
    assert!(d.svg.contains("frontend rings backend: peer 2 vector 10"));
    for w in XEN_ONLY {
        assert!(!d.svg.contains(w), "the SVG says `{w}`");
    }
    assert_no_label_overlaps(&d, "ivshmem virtio");
    assert_everything_present(&d, &sys, "ivshmem virtio");
}

/// A region Xen allocates from its heap (4.19+, no host address) is listed under the host
/// map, clear of the map's last address label.
#[test]
fn heap_regions_are_listed_under_the_host_map_without_overlap() {
    let t = r#"
[target]
xen = "4.20"
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
id = "heaped"
size = "1MiB"
users = [{ domain = "a", role = "owner" }, { domain = "b", role = "borrower" }]
"#;
    let (d, sys, diags) = draw_text("heap.toml", t);
    assert!(!diags.has_errors(), "{:?}", diags.codes());
    assert!(sys.shm.iter().all(|n| n.host.is_none()), "heap form");
    assert!(d.svg.contains("1 MiB from Xen's heap"));
    assert_no_label_overlaps(&d, "heap form");
}
