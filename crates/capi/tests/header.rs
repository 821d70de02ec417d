//! `include/staticbus.h` is cbindgen's output for this crate, and every function it
//! declares compiles in C (`-Wall -Wextra -Werror`) and links against the static
//! library, so the header and the library cannot drift apart.

use std::path::{Path, PathBuf};
use std::process::Command;

const UPDATE: &str = "STATICBUS_UPDATE_HEADER";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("include/staticbus.h")
}

fn generate() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn checked_in_header_is_cbindgens_output() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os(UPDATE).is_some_and(|v| v == "1") {
        let tmp = path.with_extension("h.tmp");
        std::fs::write(&tmp, &fresh).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if old != fresh {
        let line = old
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(old.lines().count().min(fresh.lines().count()) + 1, |i| {
                i + 1
            });
        panic!(
            "{} is not what cbindgen makes of crates/capi (first difference at line {line}).\n\
             help: regenerate it with `{UPDATE}=1 cargo test -p staticbus-capi --test header` \
             and commit it",
            path.display()
        );
    }
}

/// The functions the header declares (`sb_main`, which the program defines, aside), each
/// with the macro of the `#if defined(…)` block it sits in, if any.
fn declared_functions(header: &str) -> Vec<(String, Option<String>)> {
    let mut names: Vec<(String, Option<String>)> = Vec::new();
    let mut guard = None;
    for line in header.lines() {
        let l = line.trim_start();
        if let Some(m) = l.strip_prefix("#if defined(") {
            guard = Some(m.trim_end_matches(')').to_string());
            continue;
        }
        if l.starts_with("#endif") {
            guard = None;
            continue;
        }
        if l.starts_with("//")
            || l.starts_with("/*")
            || l.starts_with('*')
            || l.starts_with("typedef")
        {
            continue;
        }
        if let Some(open) = l.find('(') {
            let head = &l[..open];
            if let Some(name) = head
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
            {
                if name.starts_with("sb_")
                    && name != "sb_main"
                    && !names.iter().any(|n| n.0 == name)
                {
                    names.push((name.to_string(), guard.clone()));
                }
            }
        }
    }
    names
}

/// The declarations a build with `platform` (`STATICBUS_EMU` or `STATICBUS_XEN`) has.
fn functions_for(platform: &str) -> Vec<String> {
    let header = std::fs::read_to_string(header_path()).unwrap();
    declared_functions(&header)
        .into_iter()
        .filter(|(_, g)| g.as_deref().is_none_or(|g| g == platform))
        .map(|(n, _)| n)
        .collect()
}

/// The directory cargo put this crate's static library in (`target/<profile>`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A C file that takes the address of every function in `names`, for `platform`; `entry`
/// is the program's entry point (`main`, or `sb_main` on bare metal).
fn take_all(dir: &Path, platform: &str, entry: &str, names: &[String]) -> PathBuf {
    let mut c = format!(
        "#define {platform} 1\n#include \"staticbus.h\"\n\n\
         typedef void (*sb_any_fn)(void);\n\nstatic const sb_any_fn every_function[] = {{\n"
    );
    for n in names {
        c.push_str(&format!("\t(sb_any_fn){n},\n"));
    }
    c.push_str(&format!(
        "}};\n\nint{} {entry}(void)\n{{\n\tsize_t n = 0;\n\tfor (size_t i = 0; i < sizeof every_function / sizeof every_function[0]; i++)\n\t\tn += every_function[i] != 0;\n",
        if entry == "main" { "" } else { "32_t" }
    ));
    c.push_str(&format!("\treturn n == {} ? 0 : 1;\n}}\n", names.len()));
    let path = dir.join("every_function.c");
    std::fs::write(&path, c).unwrap();
    path
}

#[test]
fn every_declaration_compiles_and_links() {
    let names = functions_for("STATICBUS_EMU");
    // The API's families are all there (a parse that finds nothing would pass vacuously).
    for must in [
        "sb_domain_init",
        "sb_emu_init",
        "sb_link_wait",
        "sb_queue_send_in_place",
        "sb_queue_recv_in_place",
        "sb_log_read",
        "sb_latest_publish",
        "sb_blob_read_changed",
        "sb_strerror",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found in {names:?}"
        );
    }
    let lib = lib_dir().join("libstaticbus_capi.a");
    assert!(lib.is_file(), "{} was not built", lib.display());
    let dir = tempfile::tempdir().unwrap();
    let src = take_all(dir.path(), "STATICBUS_EMU", "main", &names);
    let exe = dir.path().join("every_function");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg(&lib)
        .args([
            "-lpthread",
            "-ldl",
            "-lm",
            "-lrt",
            "-lutil",
            "-lgcc_s",
            "-lc",
            "-o",
        ])
        .arg(&exe)
        .output()
        .expect("run cc (install gcc)");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Command::new(&exe).status().unwrap();
    assert!(st.success(), "every_function reported a null function");
}

/// The bare-metal side: every declaration of a `STATICBUS_XEN` build compiles
/// freestanding with Debian's cross compiler and links, with the runtime's linker script,
/// against the library built for `aarch64-unknown-none` (an image whose `sb_main` takes
/// the address of every function).
#[test]
fn every_declaration_links_freestanding_for_bare_metal() {
    let required = std::env::var_os("STATICBUS_XEN_TESTS").is_some_and(|v| v == "1");
    let skip = |what: &str| {
        assert!(!required, "STATICBUS_XEN_TESTS=1 but {what}");
        eprintln!("skipped: {what} (set STATICBUS_XEN_TESTS=1 to require it)");
    };
    let cc = "aarch64-linux-gnu-gcc";
    if Command::new(cc).arg("--version").output().is_err() {
        return skip("aarch64-linux-gnu-gcc is missing (apt-get install gcc-aarch64-linux-gnu)");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "-p",
            "staticbus-capi",
            "--target",
            "aarch64-unknown-none",
            "--no-default-features",
            "--features",
            "xen",
            "--release",
        ])
        .current_dir(crate_dir())
        .output()
        .unwrap();
    if !built.status.success() {
        let err = String::from_utf8_lossy(&built.stderr);
        if err.contains("target may not be installed") {
            return skip("the aarch64-unknown-none target is missing (rustup target add aarch64-unknown-none)");
        }
        panic!("building the bare-metal library failed:\n{err}");
    }
    let lib = lib_dir()
        .parent()
        .unwrap()
        .join("aarch64-unknown-none/release/libstaticbus_capi.a");
    let names = functions_for("STATICBUS_XEN");
    for must in [
        "sb_xen_init",
        "sb_xen_transport",
        "sb_domain_init",
        "sb_queue_send",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "sb_emu_init"), "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    let src = take_all(dir.path(), "STATICBUS_XEN", "sb_main", &names);
    let out = Command::new(cc)
        .args([
            "-std=c11",
            "-ffreestanding",
            "-nostdlib",
            "-static",
            "-fno-pic",
            "-fno-pie",
            "-no-pie",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-I",
        ])
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg(&lib)
        .arg("-lgcc")
        .arg(format!(
            "-Wl,-T,{}",
            crate_dir().join("../guest-xen-aarch64/link.ld").display()
        ))
        .args(["-Wl,--no-warn-rwx-segments", "-o"])
        .arg(dir.path().join("every_function.elf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
