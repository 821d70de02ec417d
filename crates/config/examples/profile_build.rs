//! Times each stage of check + build on the synthetic 256-domain system (a quick profile;
//! the benchmark of record is `cargo bench --bench pipeline`).
//!
//! `profile_build --dump DIR` instead writes every output of `build_outputs` for that
//! system under `DIR` (to compare outputs byte for byte before and after a change).
//! `profile_build --stage NAME [N]` runs only one stage `N` times (default 20), for
//! `perf record` or `perf stat` of that stage alone; NAME is one of `read`, `validate`, `host_tree`,
//! `print_dts`, `write_dtb`, `manifests`, `json`, `rust`, `c`, `dt`, `build`.

use staticbus_config::compile::build_outputs;
use staticbus_config::desc::{read_description, Overrides};
use staticbus_config::{emit, gen, manifest, synth, validate, System};
use staticbus_diag::Sources;
use std::path::Path;
use std::time::Instant;

fn system() -> System {
    let text = synth::description(256, 8192);
    let mut sources = Sources::new();
    let file = sources.add_text("synth.toml", text.clone());
    let (sys, _) = read_description(file, &text, "s", Path::new("."), &Overrides::default());
    sys.expect("reads")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--dump") => dump(Path::new(args.get(1).expect("--dump DIR"))),
        Some("--stage") => {
            let n = args.get(2).map_or(20, |n| n.parse().expect("a count"));
            stage(args.get(1).expect("--stage NAME"), n);
        }
        _ => profile(),
    }
}

fn dump(dir: &Path) {
    let sys = system();
    for f in build_outputs(&sys, None) {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, &f.bytes).expect("write");
    }
}

fn stage(name: &str, n: usize) {
    let sys = system();
    let tree = gen::host_tree(&sys, None);
    let ms = manifest::manifests(&sys);
    let t = Instant::now();
    let mut bytes = 0usize;
    let text = synth::description(256, 8192);
    for _ in 0..n {
        bytes += match name {
            "read" => {
                let mut sources = Sources::new();
                let file = sources.add_text("synth.toml", text.clone());
                let (sys, d) =
                    read_description(file, &text, "s", Path::new("."), &Overrides::default());
                sys.map_or(0, |s| s.domains.len()) + d.len()
            }
            "validate" => validate(&sys).len(),
            "host_tree" => gen::host_tree(&sys, None).root.children.len(),
            "print_dts" => staticbus_dt::print_dts(&tree).len(),
            "write_dtb" => staticbus_dt::write_dtb(&tree).len(),
            "manifests" => manifest::manifests(&sys).len(),
            "json" => ms.iter().map(|m| emit::to_json(m).len()).sum(),
            "rust" => ms.iter().map(|m| emit::to_rust(m).len()).sum(),
            "c" => ms.iter().map(|m| emit::to_c_header(m).len()).sum(),
            "dt" => ms.iter().map(|m| emit::to_dt_source(m).len()).sum(),
            "build" => build_outputs(&sys, None).len(),
            _ => panic!("unknown stage {name}"),
        };
    }
    println!(
        "{name} x{n}: {:?} per run ({bytes})",
        t.elapsed() / n.max(1) as u32
    );
}

fn profile() {
    let text = synth::description(256, 8192);
    let t = Instant::now();
    let mut sources = Sources::new();
    let file = sources.add_text("synth.toml", text.clone());
    let (sys, _) = read_description(file, &text, "s", Path::new("."), &Overrides::default());
    let sys = sys.expect("reads");
    println!("read+allocate   {:?}", t.elapsed());
    let t = Instant::now();
    let d = validate(&sys);
    println!(
        "validate        {:?} ({} diagnostics)",
        t.elapsed(),
        d.len()
    );
    let t = Instant::now();
    let tree = gen::host_tree(&sys, None);
    println!("host_tree       {:?}", t.elapsed());
    resolve_only(&tree);
    let t = Instant::now();
    let dts = staticbus_dt::print_dts(&tree);
    println!("print_dts       {:?} ({} bytes)", t.elapsed(), dts.len());
    let t = Instant::now();
    let dtb = staticbus_dt::write_dtb(&tree);
    println!("write_dtb       {:?} ({} bytes)", t.elapsed(), dtb.len());
    let t = Instant::now();
    let ms = manifest::manifests(&sys);
    println!("manifests       {:?}", t.elapsed());
    for (name, f) in [
        (
            "json",
            emit::to_json as fn(&manifest::DomainManifest) -> String,
        ),
        ("rust", emit::to_rust),
        ("c", emit::to_c_header),
        ("dt", emit::to_dt_source),
    ] {
        let t = Instant::now();
        let n: usize = ms.iter().map(|m| f(m).len()).sum();
        println!("emit {name:<10} {:?} ({n} bytes)", t.elapsed());
    }
    let t = Instant::now();
    let n = build_outputs(&sys, None).len();
    println!("build_outputs   {:?} ({n} files, all cores)", t.elapsed());
}

/// Resolves references of a copy of the tree again, to see what resolution costs.
fn resolve_only(tree: &staticbus_dt::Tree) {
    let mut t2 = tree.clone();
    let t = Instant::now();
    let _ = staticbus_dt::resolve_references(&mut t2);
    println!("resolve (again) {:?}", t.elapsed());
}
