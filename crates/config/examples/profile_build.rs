//! Times each stage of check + build on the synthetic 256-domain system (a quick profile;
//! the benchmark of record is `cargo bench --bench pipeline`).

use staticbus_config::desc::{read_description, Overrides};
use staticbus_config::{emit, gen, manifest, synth, validate};
use staticbus_diag::Sources;
use std::path::Path;
use std::time::Instant;

fn main() {
    let text = synth::description(256, 8192);
    let t = Instant::now();
    let mut sources = Sources::new();
    let file = sources.add_text("synth.toml", text.clone());
    let (sys, _) = read_description(file, &text, "s", Path::new("."), &Overrides::default());
    let sys = sys.expect("reads");
    println!("read+allocate   {:?}", t.elapsed());
    let t = Instant::now();
    let d = validate(&sys);
    println!("validate        {:?} ({} diagnostics)", t.elapsed(), d.len());
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
        ("json", emit::to_json as fn(&manifest::DomainManifest) -> String),
        ("rust", emit::to_rust),
        ("c", emit::to_c_header),
        ("dt", emit::to_dt_source),
    ] {
        let t = Instant::now();
        let n: usize = ms.iter().map(|m| f(m).len()).sum();
        println!("emit {name:<10} {:?} ({n} bytes)", t.elapsed());
    }
}

#[allow(dead_code)]
fn resolve_only(tree: &staticbus_dt::Tree) {
    let mut t2 = tree.clone();
    let t = Instant::now();
    let _ = staticbus_dt::resolve_references(&mut t2);
    println!("resolve (again) {:?}", t.elapsed());
}
