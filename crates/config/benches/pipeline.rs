//! check + build of a generated system (256 domains, 8,192 channels), and its parts.
//!
//! `cargo bench -p staticbus-config --bench pipeline`

// criterion_group!/criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use staticbus_config::compile::build_outputs;
use staticbus_config::desc::{read_description, Overrides};
use staticbus_config::{synth, validate};
use staticbus_diag::Sources;
use std::hint::black_box;
use std::path::Path;

fn check(text: &str) -> (staticbus_config::System, usize) {
    let mut sources = Sources::new();
    let file = sources.add_text("synth.toml", text.to_string());
    let (sys, diags) = read_description(file, text, "synth", Path::new("."), &Overrides::default());
    let sys = sys.expect("the synthetic description reads");
    let n = diags.len() + validate(&sys).len();
    (sys, n)
}

fn bench(c: &mut Criterion) {
    let text = synth::description(256, 8192);
    let mut g = c.benchmark_group("256 domains, 8192 channels");
    g.sample_size(20);
    g.bench_function("check (read + allocate + validate)", |b| {
        b.iter(|| black_box(check(black_box(&text))))
    });
    let (sys, _) = check(&text);
    g.bench_function("build (DT + DTB + 4 manifests per domain)", |b| {
        b.iter(|| black_box(build_outputs(black_box(&sys), None)))
    });
    g.bench_function("check + build", |b| {
        b.iter(|| {
            let (sys, _) = check(black_box(&text));
            black_box(build_outputs(&sys, None))
        })
    });
    // Reference, same run: dtc compiling the host DTS we generate for this system (one
    // process, DTS text in, DTB out; the staticbus numbers above include that work and all
    // the manifests).
    let dts = build_outputs(&sys, None)
        .into_iter()
        .find(|f| f.path == "host.dts")
        .expect("host.dts is an output");
    let dir = std::env::temp_dir().join(format!("staticbus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("host.dts");
    std::fs::write(&input, &dts.bytes).expect("write host.dts");
    let dtc_ok = std::process::Command::new("dtc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if dtc_ok {
        g.bench_function("reference: dtc -I dts -O dtb host.dts", |b| {
            b.iter(|| {
                let o = std::process::Command::new("dtc")
                    .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
                    .arg(dir.join("host.dtb"))
                    .arg(&input)
                    .output()
                    .expect("run dtc");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        });
    } else {
        eprintln!("dtc not found: skipping the reference measurement");
    }
    let _ = std::fs::remove_dir_all(&dir);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
