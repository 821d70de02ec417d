//! ImageBuilder configurations written from its documented variables, imported and then
//! checked by the staticbus compiler against the board tree they name:
//!
//! - `tests/good/*.cfg` import without errors or warnings, and the description they give
//!   passes `check` cleanly, with what each configuration says;
//! - `tests/examples/sbNNNN_*.cfg` trigger their code on the line `src/examples.rs` says
//!   (or on the whole file), and their `.fixed.cfg` counterparts import and check cleanly.
//!   `staticbus explain SBNNNN` shows the same two files, compiled in from that table.
//!
//! Every file a configuration names is created (1.1 MiB of zeros, so each takes one 2 MiB
//! slot) in a scratch folder next to the board tree, except paths under `missing/`.

use staticbus_config::compile::{check, Options as CheckOptions};
use staticbus_config::model::{Enhanced, System};
use staticbus_diag::{Diagnostics, Severity, Sources};
use staticbus_import::{import, lex, Options};
use std::path::{Path, PathBuf};

const HERE: &str = env!("CARGO_MANIFEST_DIR");
const FILE_SIZE: usize = 0x11_0000;
const FILE_VARS: &[&str] = &[
    "XEN",
    "DOM0_KERNEL",
    "DOM0_RAMDISK",
    "DOMU_KERNEL",
    "DOMU_RAMDISK",
    "DOMU_PASSTHROUGH_DTB",
];

fn board() -> PathBuf {
    Path::new(HERE).join("../../examples/boards/qemu-virt-gicv3-2g.dtb")
}

/// A scratch folder with the board tree as `virt.dtb` and every file `text` names.
fn stage(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    std::fs::copy(board(), dir.path().join("virt.dtb")).unwrap();
    let (assigns, _) = lex::lex(staticbus_diag::FileId(0), text);
    for a in assigns {
        if FILE_VARS.contains(&a.name.as_str()) && !a.value.starts_with("missing/") {
            let p = dir.path().join(&a.value);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![0u8; FILE_SIZE]).unwrap();
        }
    }
    dir
}

/// `# options: -t X` of a configuration.
fn load_option(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# options: -t "))
        .map(|s| s.trim().to_string())
}

struct Run {
    sources: Sources,
    diags: Diagnostics,
    toml: Option<String>,
    dir: tempfile::TempDir,
}

fn run(name: &str, text: &str) -> Run {
    let dir = stage(name, text);
    let mut sources = Sources::new();
    let file = sources.add_text(name, text);
    let opts = Options {
        root: dir.path().to_path_buf(),
        out_dir: dir.path().to_path_buf(),
        load_cmd: load_option(text),
        name: name.trim_end_matches(".cfg").replace('.', "-"),
        xen: None,
        assume_size: None,
    };
    let im = import(&sources, file, text, &opts);
    Run {
        sources,
        diags: im.diags,
        toml: im.toml,
        dir,
    }
}

fn dump(sources: &Sources, d: &Diagnostics) -> String {
    staticbus_diag::render_human(sources, d, staticbus_diag::ColorChoice::Never)
}

/// Writes the description next to the staged files and checks it against the board.
fn check_description(r: &Run) -> System {
    let toml = r.toml.as_ref().expect("a description");
    let path = r.dir.path().join("system.toml");
    std::fs::write(&path, toml).unwrap();
    let mut sources = Sources::new();
    let c = check(
        &mut sources,
        &path,
        // The board tree comes from the description's `[platform] base`.
        &CheckOptions::default(),
    );
    let bad: Diagnostics = c
        .diags
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .cloned()
        .collect();
    assert!(
        bad.is_empty() && c.system.is_some(),
        "the imported description does not check cleanly:\n{}\n{toml}",
        dump(&sources, &bad)
    );
    assert!(c.base.is_some(), "the board tree was read");
    c.system.unwrap()
}

fn good(name: &str) -> (Run, System) {
    let text = std::fs::read_to_string(Path::new(HERE).join("tests/good").join(name)).unwrap();
    let r = run(name, &text);
    let loud: Diagnostics = r
        .diags
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .cloned()
        .collect();
    assert!(loud.is_empty(), "{name}:\n{}", dump(&r.sources, &loud));
    let sys = check_description(&r);
    (r, sys)
}

fn module_addrs(sys: &System) -> Vec<u64> {
    sys.domains
        .iter()
        .flat_map(|d| d.modules.iter().map(|m| m.addr))
        .collect()
}

#[test]
fn readme_configuration() {
    let (r, sys) = good("readme.cfg");
    let names: Vec<&str> = sys.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["dom0", "domU0", "domU1"]);
    // uboot-script-gen's order and 2 MiB steps: dom0 kernel, ramdisk; domU0 kernel,
    // ramdisk, passthrough tree; domU1 kernel, ramdisk; then Xen and the tree.
    // The first slot, at MEMORY_START + 2 MiB, is the script's.
    let want: Vec<u64> = (2..=8).map(|i| 0x4000_0000 + i * 0x20_0000).collect();
    assert_eq!(module_addrs(&sys), want);
    assert_eq!(sys.platform.xen_image.as_ref().unwrap().base, 0x4120_0000);
    assert_eq!(sys.platform.dtb.as_ref().unwrap().base, 0x4140_0000);
    // With dom0, DOMU_ENHANCED defaults to "enabled"; DOMU_MEM to 512 MiB.
    assert!(sys.domains[1..]
        .iter()
        .all(|d| d.enhanced == Enhanced::Enabled));
    assert_eq!(sys.domains[1].memory_kib, Some(512 * 1024));
    // DOM0_CMD has no root=: ImageBuilder adds root=/dev/ram0.
    let dom0_args = sys.domains[0].modules[0].bootargs.as_deref().unwrap();
    assert!(
        dom0_args.ends_with("clk_ignore_unused root=/dev/ram0"),
        "{dom0_args}"
    );
    assert!(sys.xen_bootargs.as_deref().unwrap().contains("dom0_mem=1G"));
    assert_eq!(sys.uboot.load.as_deref(), Some("tftpb"));
    // Every line of the configuration is accounted for in the description's comments.
    let toml = r.toml.unwrap();
    for line in [10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 22, 23, 24] {
        assert!(
            toml.contains(&format!("(line {line})")),
            "line {line}:\n{toml}"
        );
    }
}

#[test]
fn defaults_and_the_load_option() {
    let (_, sys) = good("dom0less-defaults.cfg");
    let d = &sys.domains[0];
    assert_eq!(d.name, "domU0");
    assert_eq!(d.memory_kib, Some(512 * 1024));
    assert_eq!(d.vcpus, Some(1));
    assert_eq!(d.enhanced, Enhanced::Absent, "no dom0: no xen,enhanced");
    assert_eq!(d.modules[0].bootargs.as_deref(), Some("console=ttyAMA0"));
    assert_eq!(sys.uboot.load.as_deref(), Some("tftpb"), "-t tftp expanded");
    assert!(sys
        .xen_bootargs
        .as_deref()
        .unwrap()
        .starts_with("console=dtuart dtuart=serial0 dom0_mem=1024M dom0_max_vcpus=1"));
}

#[test]
fn static_memory() {
    let (_, sys) = good("static-mem.cfg");
    assert!(sys.target.static_memory);
    let (a, b) = (&sys.domains[0], &sys.domains[1]);
    assert_eq!(a.static_mem.len(), 2);
    assert_eq!(a.memory_kib, Some(256 * 1024), "the sum of the banks");
    assert!(a.direct_map, "direct-mapped by default");
    assert_eq!(b.static_mem[0].base, 0x8000_0000);
    assert!(!b.direct_map);
    assert_eq!(sys.uboot.load.as_deref(), Some("load mmc 0:1"));
}

#[test]
fn shared_memory_and_event_channels() {
    let (_, sys) = good("shared-mem.cfg");
    assert!(sys.target.static_shm);
    let ring: Vec<_> = sys.shm.iter().filter(|s| s.id == "ring").collect();
    assert_eq!(ring.len(), 2);
    assert!(ring.iter().all(|s| s.host == Some(0x7000_0000)
        && s.guest == 0x800_0000
        && s.size == 0x10_0000
        && s.role.is_none()));
    let heap: Vec<_> = sys.shm.iter().filter(|s| s.id == "heap").collect();
    assert_eq!(heap.len(), 1);
    assert_eq!(heap[0].host, None, "no HPA: Xen's heap");
    assert_eq!(sys.evtchns.len(), 2, "each pair once");
}

#[test]
fn enhanced_vpl011_and_noboot() {
    let (r, sys) = good("enhanced.cfg");
    let names: Vec<&str> = sys.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["dom0", "domU0", "domU1", "domU2", "domU3"],
        "domU4 is not booted"
    );
    let e: Vec<&Enhanced> = sys.domains[1..].iter().map(|d| &d.enhanced).collect();
    assert_eq!(
        e,
        [
            &Enhanced::Enabled,
            &Enhanced::Absent,
            &Enhanced::NoXenstore,
            &Enhanced::Enabled
        ]
    );
    assert!(!sys.domains[4].vpl011);
    assert!(
        sys.domains[4].modules[0].bootargs.is_none(),
        "no console=ttyAMA0 without vPL011"
    );
    assert!(sys
        .xen_bootargs
        .as_deref()
        .unwrap()
        .contains("dom0_mem=512M"));
    assert!(r.diags.has_code("SB0811"));
    // One kernel file for four domains: loaded four times, one file.
    let toml = r.toml.unwrap();
    assert_eq!(toml.matches("file = \"domu/Image\"").count(), 4);
}

/// The examples `staticbus explain` shows: (code, failing file, fixed file).
fn examples() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = Path::new(HERE).join("tests/examples");
    let mut v: Vec<(String, PathBuf, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(".cfg") && !n.ends_with(".fixed.cfg")
        })
        .map(|p| {
            let n = p.file_name().unwrap().to_str().unwrap().to_string();
            let code = n[..6].to_ascii_uppercase();
            let fixed = p.with_file_name(n.replace(".cfg", ".fixed.cfg"));
            (code, p, fixed)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_code_has_a_failing_and_a_fixed_example() {
    let codes: Vec<String> = examples().into_iter().map(|e| e.0).collect();
    let all: Vec<String> = staticbus_import::codes::ALL
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(codes, all);
    // The table `staticbus explain` shows is these files.
    let table: Vec<(String, String)> = staticbus_import::examples::ALL
        .iter()
        .map(|e| (e.code.to_string(), e.path.to_string()))
        .collect();
    let files: Vec<(String, String)> = examples()
        .into_iter()
        .map(|(c, p, _)| {
            let n = p.file_name().unwrap().to_str().unwrap().to_string();
            (c, format!("crates/import/tests/examples/{n}"))
        })
        .collect();
    assert_eq!(
        table, files,
        "src/examples.rs lists every example of tests/examples/"
    );
    for e in staticbus_import::examples::ALL {
        assert!(e.fixed.is_some(), "{}: a fixed example", e.code);
    }
}

#[test]
fn examples_fail_where_they_say_and_their_fixes_are_clean() {
    let mut failures = Vec::new();
    for (e, line) in staticbus_import::examples::EXPECTED {
        let code = e.code;
        let name = e.path.rsplit('/').next().unwrap().to_string();
        let r = run(&name, e.failing);
        let hits: Vec<_> = r.diags.iter().filter(|d| d.code.id == code).collect();
        let ok = hits.iter().any(|d| match &d.location {
            staticbus_diag::Location::Span { span } => {
                *line > 0 && r.sources.get(span.file).line_col(span.start as usize).0 == *line
            }
            staticbus_diag::Location::File { .. } => *line == 0,
            _ => false,
        });
        if !ok {
            failures.push(format!(
                "{name}: expected {code} {}, got:\n{}",
                if *line == 0 {
                    "on the file".to_string()
                } else {
                    format!("on line {line}")
                },
                dump(&r.sources, &r.diags)
            ));
            continue;
        }
        // The rest of the diagnostic must be useful: a help line.
        for d in &hits {
            assert!(d.help.is_some(), "{name}: {code} without help");
        }
        let fixed = e.fixed.expect("a fixed example");
        let fr = run(&name, fixed);
        let loud: Diagnostics = fr
            .diags
            .iter()
            .filter(|d| d.severity >= Severity::Warning || d.code.id == code)
            .cloned()
            .collect();
        if !loud.is_empty() {
            failures.push(format!(
                "{name} (fixed): not clean:\n{}",
                dump(&fr.sources, &loud)
            ));
            continue;
        }
        check_description(&fr);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errors_write_no_description_and_warnings_do() {
    let bad = "MEMORY_START=0x40000000\nMEMORY_END=0x30000000\n";
    let r = run("bad.cfg", bad);
    assert!(r.diags.has_errors());
    assert!(r.toml.is_none());
    let text =
        std::fs::read_to_string(Path::new(HERE).join("tests/examples/sb0804_unsupported.cfg"))
            .unwrap();
    let r = run("warn.cfg", &text);
    assert!(!r.diags.has_errors());
    let toml = r.toml.unwrap();
    assert!(toml.contains("# Not imported"), "{toml}");
    assert!(
        toml.contains("DOMU_COLORS[0] (line 9): cache colouring is not modelled"),
        "{toml}"
    );
}

/// docs/imagebuilder.md's table of variables is `vars::VARIABLES`, rendered.
#[test]
fn the_docs_list_every_variable() {
    use staticbus_import::vars::{Handling, VARIABLES};
    let mut table = String::from("| variable | | what the import does |\n|---|---|---|\n");
    for v in VARIABLES {
        let name = if v.indexed {
            format!("`{}[n]`", v.name)
        } else {
            format!("`{}`", v.name)
        };
        let (kind, what) = match v.handling {
            Handling::Mapped(w) => ("imported", w),
            Handling::Unsupported(w) => ("reported (SB0804)", w),
        };
        table.push_str(&format!("| {name} | {kind} | {what} |\n"));
    }
    let doc = std::fs::read_to_string(Path::new(HERE).join("../../docs/imagebuilder.md")).unwrap();
    assert!(
        doc.contains(&table),
        "docs/imagebuilder.md's table is stale; it should read:\n{table}"
    );
}

#[test]
fn without_the_images_sizes_can_be_assumed() {
    let text = std::fs::read_to_string(Path::new(HERE).join("tests/good/readme.cfg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(board(), dir.path().join("virt.dtb")).unwrap();
    let mut sources = Sources::new();
    let file = sources.add_text("readme.cfg", text.clone());
    let mut opts = Options {
        root: dir.path().to_path_buf(),
        out_dir: dir.path().to_path_buf(),
        load_cmd: None,
        name: "readme".into(),
        xen: None,
        assume_size: None,
    };
    let im = import(&sources, file, &text, &opts);
    assert_eq!(
        im.diags.iter().filter(|d| d.code.id == "SB0809").count(),
        8,
        "every image is missing (dom0: 2, domU0: 3, domU1: 2, Xen)"
    );
    opts.assume_size = Some(8 << 20);
    let im = import(&sources, file, &text, &opts);
    assert!(!im.diags.has_errors(), "{}", dump(&sources, &im.diags));
    let r = Run {
        sources,
        diags: im.diags,
        toml: im.toml,
        dir,
    };
    let sys = check_description(&r);
    // Each image gets the assumed 8 MiB, placed 8 MiB apart.
    let want: Vec<u64> = (0..7).map(|i| 0x4040_0000 + i * 0x80_0000).collect();
    assert_eq!(module_addrs(&sys), want);
    assert!(sys
        .domains
        .iter()
        .all(|d| d.modules.iter().all(|m| m.size == 8 << 20)));
}
