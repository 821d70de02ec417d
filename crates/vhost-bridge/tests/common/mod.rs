//! What the daemon tests share: finding the daemons, a seeded generator.

#![allow(dead_code)]

use std::path::PathBuf;

/// `STATICBUS_REQUIRE_VHOST_DAEMONS=1` (set by CI) turns a missing daemon into a failure.
pub fn require_daemons() -> bool {
    std::env::var_os("STATICBUS_REQUIRE_VHOST_DAEMONS").is_some_and(|v| v == "1")
}

/// The daemon program: `$env_var` if set, else `name` on PATH. `None` (after saying why)
/// when it is genuinely missing and CI does not require it.
pub fn find_daemon(name: &str, env_var: &str, how_to_get: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file", p.display());
        return Some(p);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{name} not found ({env_var} unset, not on PATH); {how_to_get}");
        assert!(
            !require_daemons(),
            "STATICBUS_REQUIRE_VHOST_DAEMONS=1: {msg}"
        );
        eprintln!("SKIPPED: {msg}");
    }
    found
}

pub fn qemu_storage_daemon() -> Option<PathBuf> {
    find_daemon(
        "qemu-storage-daemon",
        "STATICBUS_QEMU_STORAGE_DAEMON",
        "install Debian's qemu-system-common (apt-get install qemu-system-common)",
    )
}

pub fn vhost_device(kind: &str) -> Option<PathBuf> {
    find_daemon(
        &format!("vhost-device-{kind}"),
        &format!("STATICBUS_VHOST_DEVICE_{}", kind.to_uppercase()),
        &format!("install it with scripts/virtio/install-vhost-device.sh {kind} and set STATICBUS_VHOST_DEVICE_{} to the path it prints", kind.to_uppercase()),
    )
}

/// splitmix64: a small seeded generator for offsets and contents.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A qemu-storage-daemon command exporting `image` (raw) as vhost-user-blk on `socket`.
pub fn qsd_command(
    qsd: &std::path::Path,
    image: &std::path::Path,
    socket: &std::path::Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(qsd);
    cmd.arg("--blockdev")
        .arg(format!("driver=file,node-name=disk,filename={}", image.display()))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=export0,node-name=disk,addr.type=unix,addr.path={},writable=on,num-queues=1",
            socket.display()
        ));
    cmd
}

/// Runs `f` on its own thread and fails the test if it has not returned within `limit`
/// (virtio-drivers' blocking calls spin forever on a device that never answers; this turns
/// such a hang into a failure naming `what`).
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}
