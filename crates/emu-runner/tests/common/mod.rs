//! What the runner's integration tests share: a two-domain system built as `staticbus
//! build` builds it, domain programs that are shell commands, an output that keeps lines.

#![allow(dead_code)]

use staticbus_config::compile::{self, Options};
use staticbus_diag::Sources;
use staticbus_emu_runner::{DomainProgram, Output};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DESC: &str = r#"
[target]
xen = "4.20"
static-shm = true

[platform]
ram = [{ base = 0x4000_0000, size = "2GiB" }]
shm-pool = { base = 0x7000_0000, size = "64MiB" }

[[domain]]
name = "sensor"
memory = "16MiB"
kernel = { size = "2MiB" }

[[domain]]
name = "aggregator"
memory = "16MiB"
kernel = { size = "2MiB" }

[[evtchn]]
a = "aggregator:12"
b = "sensor:10"

[[shm]]
id = "raw"
size = "64KiB"
users = [
  { domain = "sensor", guest = 0x0a00_0000, role = "owner" },
  { domain = "aggregator", guest = 0x0a00_0000, role = "borrower" },
]
"#;

/// Builds [`DESC`] into `dir` as `staticbus build` does; returns the description's model.
pub fn build(dir: &Path) -> staticbus_config::System {
    let desc = dir.join("system.toml");
    std::fs::write(&desc, DESC).unwrap();
    let mut sources = Sources::new();
    let c = compile::check(&mut sources, &desc, &Options::default());
    assert!(!c.diags.has_errors(), "{:?}", c.diags);
    let sys = c.system.unwrap();
    for f in compile::build_outputs(&sys, c.base) {
        let p = dir.join(&f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f.bytes).unwrap();
    }
    sys
}

#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl Output for Lines {
    fn line(&self, domain: &str, line: &str) {
        self.0.lock().unwrap().push(format!("[{domain}] {line}"));
    }
}

pub fn programs(dir: &Path, script: &str) -> Vec<DomainProgram> {
    ["sensor", "aggregator"]
        .into_iter()
        .map(|name| DomainProgram {
            name: name.into(),
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            manifest: dir.join("domains").join(name).join("manifest.json"),
            limits: Default::default(),
        })
        .collect()
}

/// One program per domain: `sensor` runs `sensor`, `aggregator` runs `aggregator` (shell
/// commands).
pub fn scripts(dir: &Path, sensor: &str, aggregator: &str) -> Vec<DomainProgram> {
    let mut p = programs(dir, sensor);
    p[1].args[1] = aggregator.into();
    p
}

/// The lines of one domain.
pub fn of(lines: &[String], dom: &str) -> Vec<String> {
    let prefix = format!("[{dom}] ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

pub fn sandbox() -> staticbus_emu_runner::sandbox::Sandbox {
    staticbus_emu_runner::sandbox::Sandbox {
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_staticbus-sandbox")),
        uid_base: rustix::process::geteuid()
            .is_root()
            .then_some(staticbus_emu_runner::sandbox::UID_BASE),
    }
}
