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

/// The functions the header declares (`sb_main`, which the program defines, aside).
fn declared_functions(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in header.lines() {
        let l = line.trim_start();
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
                if name.starts_with("sb_") && name != "sb_main" && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// The directory cargo put this crate's static library in (`target/<profile>`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn take_all(dir: &Path, names: &[String]) -> PathBuf {
    let mut c = String::from(
        "#define STATICBUS_EMU 1\n#include \"staticbus.h\"\n\n\
         typedef void (*sb_any_fn)(void);\n\nstatic const sb_any_fn every_function[] = {\n",
    );
    for n in names {
        c.push_str(&format!("\t(sb_any_fn){n},\n"));
    }
    c.push_str("};\n\nint main(void)\n{\n\tsize_t n = 0;\n\tfor (size_t i = 0; i < sizeof every_function / sizeof every_function[0]; i++)\n\t\tn += every_function[i] != 0;\n");
    c.push_str(&format!("\treturn n == {} ? 0 : 1;\n}}\n", names.len()));
    let path = dir.join("every_function.c");
    std::fs::write(&path, c).unwrap();
    path
}

#[test]
fn every_declaration_compiles_and_links() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let names = declared_functions(&header);
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
    let src = take_all(dir.path(), &names);
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

#[test]
fn header_compiles_freestanding_for_bare_metal() {
    let cc = "aarch64-linux-gnu-gcc";
    if Command::new(cc).arg("--version").output().is_err() {
        if std::env::var_os("STATICBUS_XEN_TESTS").is_some() {
            panic!("{cc} is missing (apt-get install gcc-aarch64-linux-gnu)");
        }
        eprintln!("skipped: {cc} is not installed (apt-get install gcc-aarch64-linux-gnu)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bare.c");
    std::fs::write(
        &src,
        "#define STATICBUS_XEN 1\n#include \"staticbus.h\"\n\
         int32_t sb_main(void) { static struct sb_domain d; return sb_domain_init(&d, 0, 0) == SB_ERR_INVALID ? 0 : 1; }\n",
    )
    .unwrap();
    let out = Command::new(cc)
        .args([
            "-std=c11",
            "-ffreestanding",
            "-nostdlib",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "-I",
        ])
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(dir.path().join("bare.o"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
