//! The runner boots from the host DTB a build wrote, and checks it against the manifests
//! of the same build; the domain programs here are plain shell commands.

mod common;

use common::{build, programs, sandbox, Lines};
use staticbus_emu::{BootPair, Hypervisor, PageMem, Policy, PortState, Quiet};
use staticbus_emu_runner::{check, read_host_dtb, run, DomainProgram, RunError, RunOptions};
use staticbus_manifest as m;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn manifest(dir: &Path, name: &str) -> &'static m::Manifest {
    let p = dir.join("domains").join(name).join("manifest.json");
    m::json::load(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn the_tree_binds_the_earlier_domain_first_as_xen_does() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let host = read_host_dtb(&dir.path().join("host.dtb"), &sys.target).unwrap();
    // The description says `a = aggregator`, but sensor's node comes first in /chosen.
    assert_eq!(
        host.spec.evtchns,
        [BootPair {
            first: staticbus_emu::BootEnd { domid: 1, port: 10 },
            second: staticbus_emu::BootEnd { domid: 2, port: 12 },
        }]
    );
    let hv = Hypervisor::new(Policy::Silo, Arc::new(Quiet), Arc::new(Quiet));
    let pages: Vec<Arc<staticbus_emu::HeapPage>> = (0..2)
        .map(|_| Arc::new(staticbus_emu::HeapPage::new()))
        .collect();
    hv.boot(
        &host.spec,
        pages
            .iter()
            .map(|p| p.clone() as Arc<dyn PageMem>)
            .collect(),
    )
    .unwrap();
    assert!(pages[1].shared_info().is_pending(12));
    assert!(!pages[0].shared_info().is_pending(10));
    assert_eq!(hv.shm_grants(1)[0].id, "raw");
    assert_eq!(hv.shm_grants(2)[0].size, 0x10000);
    let pending = |d: u16, p: u32| pages[usize::from(d) - 1].shared_info().is_pending(p);
    let expected = [
        check::Expected {
            domain: "sensor",
            manifest: manifest(dir.path(), "sensor"),
        },
        check::Expected {
            domain: "aggregator",
            manifest: manifest(dir.path(), "aggregator"),
        },
    ];
    assert_eq!(
        check::against_manifests(&hv, &host.spec, pending, &expected),
        Vec::<String>::new()
    );
}

#[test]
fn a_swapped_pair_is_caught_by_the_pending_bits() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let mut spec = read_host_dtb(&dir.path().join("host.dtb"), &sys.target)
        .unwrap()
        .spec;
    let p = &mut spec.evtchns[0];
    std::mem::swap(&mut p.first, &mut p.second);
    let hv = Hypervisor::new(Policy::Silo, Arc::new(Quiet), Arc::new(Quiet));
    let pages: Vec<Arc<staticbus_emu::HeapPage>> = (0..2)
        .map(|_| Arc::new(staticbus_emu::HeapPage::new()))
        .collect();
    hv.boot(
        &spec,
        pages
            .iter()
            .map(|p| p.clone() as Arc<dyn PageMem>)
            .collect(),
    )
    .unwrap();
    // Bound both ways the same: only which end starts pending differs.
    assert_eq!(
        hv.port_state(1, 10),
        Some(PortState::Interdomain {
            remote_dom: 2,
            remote_port: 12
        })
    );
    let pending = |d: u16, p: u32| pages[usize::from(d) - 1].shared_info().is_pending(p);
    let expected = [
        check::Expected {
            domain: "sensor",
            manifest: manifest(dir.path(), "sensor"),
        },
        check::Expected {
            domain: "aggregator",
            manifest: manifest(dir.path(), "aggregator"),
        },
    ];
    assert_eq!(
        check::against_manifests(&hv, &spec, pending, &expected),
        [
            "`sensor` port 10: starts pending (the host tree binds this end second), but its \
             manifest says the other end does",
            "`aggregator` port 12: its manifest says it starts pending, but the host tree binds \
             this end first (pair order swapped?)",
        ]
    );
}

#[test]
fn run_starts_every_domain_with_its_memory_and_reports_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let host = read_host_dtb(&dir.path().join("host.dtb"), &sys.target).unwrap();
    // Each process sees its memfd, its one region and its manifest path.
    let script = "echo fd=${STATICBUS_EMU_FD:+set} regions=${STATICBUS_EMU_REGIONS%%=*} \
                  manifest=${STATICBUS_MANIFEST##*/domains/}; exit 0";
    let out = Arc::new(Lines::default());
    let report = run(
        &host.spec,
        &programs(dir.path(), script),
        &RunOptions::default(),
        out.clone(),
    )
    .unwrap();
    assert_eq!(report.exit_code(), 0);
    let mut lines = out.0.lock().unwrap().clone();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[aggregator] fd=set regions=raw manifest=aggregator/manifest.json",
            "[sensor] fd=set regions=raw manifest=sensor/manifest.json",
        ]
    );
    assert!(report
        .domains
        .iter()
        .all(|d| d.ok && d.status == "exited 0"));

    // A failing domain, restarted twice, then left failed.
    let opts = RunOptions {
        restart_on_crash: true,
        max_restarts: 2,
        ..RunOptions::default()
    };
    let report = run(
        &host.spec,
        &programs(dir.path(), "exit 3"),
        &opts,
        Arc::new(Lines::default()),
    )
    .unwrap();
    assert_eq!(report.exit_code(), 1);
    for d in &report.domains {
        assert_eq!(
            (d.restarts, d.status.as_str(), d.ok),
            (2, "exited 3", false)
        );
    }
}

#[test]
fn run_refuses_programs_that_do_not_match_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let host = read_host_dtb(&dir.path().join("host.dtb"), &sys.target).unwrap();
    let mut progs = programs(dir.path(), "exit 0");
    progs.pop();
    let e = run(
        &host.spec,
        &progs,
        &RunOptions::default(),
        Arc::new(Lines::default()),
    )
    .unwrap_err();
    assert!(
        matches!(&e, RunError::Config(s) if s.contains("`aggregator` (d2), but no program")),
        "{e}"
    );
    let mut progs = programs(dir.path(), "exit 0");
    progs[1].manifest = dir.path().join("nowhere.json");
    let e = run(
        &host.spec,
        &progs,
        &RunOptions::default(),
        Arc::new(Lines::default()),
    )
    .unwrap_err();
    assert!(
        matches!(&e, RunError::Manifest(s) if s.contains("nowhere.json")),
        "{e}"
    );
}

#[test]
fn sandboxed_domains_get_their_memory_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let host = read_host_dtb(&dir.path().join("host.dtb"), &sys.target).unwrap();
    let opts = RunOptions {
        sandbox: Some(sandbox()),
        ..RunOptions::default()
    };
    // The honest path: the domain's memfd and region are there, as without the sandbox,
    // and direct delivery's (docs/adr/0009): its outbox to the peer, the peer's outbox to
    // it opened read-only, its inbox state. Each memfd the shell holds, by name, with the
    // access mode of its descriptor; a read-only one is also opened again for writing
    // through /proc (`+reopened` if that worked: the runner's fchmod 0 must stop it).
    let script = "memfds=$(for f in /proc/$$/fd/*; do t=$(/bin/readlink $f); case $t in \
                  /memfd:*) n=${t#/memfd:}; n=${n% (deleted)}; \
                  fl=$(/bin/sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/${f##*/}); \
                  case $fl in *0|*4) m=ro; (: >>$f) 2>/dev/null && m=ro+reopened;; \
                  *1|*5) m=wo;; *) m=rw;; esac; echo $n:$m;; \
                  esac; done | /bin/sort | /bin/paste -sd, -); \
                  echo fd=${STATICBUS_EMU_FD:+set} regions=${STATICBUS_EMU_REGIONS%%=*} \
                  pid=$$ memfds=$memfds; exit 0";
    let out = Arc::new(Lines::default());
    let report = run(
        &host.spec,
        &programs(dir.path(), script),
        &opts,
        out.clone(),
    )
    .unwrap();
    assert_eq!(report.exit_code(), 0, "{:?}", out.0.lock().unwrap());
    let mut lines = out.0.lock().unwrap().clone();
    lines.sort();
    // pid 2 of its own namespace, holding exactly: its own memory, its one region, its
    // outbox to the peer (read-write), the peer's outbox to it (read-only, and no way to
    // make it writable) and its inbox state.
    assert_eq!(
        lines,
        [
            "[aggregator] fd=set regions=raw pid=2 memfds=staticbus-aggregator:rw,\
             staticbus-inbox-d2:rw,staticbus-outbox-d1-d2:ro,staticbus-outbox-d2-d1:rw,\
             staticbus-shm:raw:rw",
            "[sensor] fd=set regions=raw pid=2 memfds=staticbus-inbox-d1:rw,\
             staticbus-outbox-d1-d2:rw,staticbus-outbox-d2-d1:ro,staticbus-sensor:rw,\
             staticbus-shm:raw:rw",
        ]
    );

    // A domain killed by a signal is reported so, through the launcher.
    let report = run(
        &host.spec,
        &programs(dir.path(), "kill -9 $$"),
        &opts,
        Arc::new(Lines::default()),
    )
    .unwrap();
    for d in &report.domains {
        assert_eq!((d.status.as_str(), d.ok), ("killed by signal 9", false));
    }
}

#[test]
fn hostile_domains_cannot_reach_the_runner_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let sys = build(dir.path());
    let host = read_host_dtb(&dir.path().join("host.dtb"), &sys.target).unwrap();
    // A file only root may read (as root, the domains run under uids of their own).
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "runner's").unwrap();
    std::fs::set_permissions(
        &secret,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let me = std::process::id().to_string();
    let mut args = vec![me];
    if rustix::process::geteuid().is_root() {
        args.push(secret.display().to_string());
    }
    let progs: Vec<DomainProgram> = ["sensor", "aggregator"]
        .into_iter()
        .map(|name| DomainProgram {
            name: name.into(),
            program: PathBuf::from(env!("CARGO_BIN_EXE_sandbox-probe")),
            args: args.clone(),
            manifest: dir.path().join("domains").join(name).join("manifest.json"),
            limits: Default::default(),
        })
        .collect();
    let opts = RunOptions {
        sandbox: Some(sandbox()),
        timeout: Some(std::time::Duration::from_secs(30)),
        ..RunOptions::default()
    };
    let out = Arc::new(Lines::default());
    let report = run(&host.spec, &progs, &opts, out.clone()).unwrap();
    let lines = out.0.lock().unwrap().clone();
    assert_eq!(report.exit_code(), 0, "{}", lines.join("\n"));
    for dom in ["sensor", "aggregator"] {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("[{dom}]")))
            .collect();
        assert!(
            mine.iter()
                .any(|l| l.ends_with("RESULT PASS every way out was blocked")),
            "{mine:?}"
        );
        assert!(!mine.iter().any(|l| l.contains("] OPEN ")), "{mine:?}");
        // Every attempt was made and reported.
        assert!(mine.len() >= 11, "{mine:?}");
    }
}
