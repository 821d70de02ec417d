//! The QEMU machine `staticbus boot` emulates (virt, Xen at EL2), its RAM, running QEMU to
//! completion (the board-tree dump) and the QEMU of the boot itself, stopped when dropped.

use super::{setup, SetupError};
use staticbus_config::model::{GicVersion, System};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// QEMU virt's RAM base.
pub(super) const VIRT_RAM_BASE: u64 = 0x4000_0000;

/// The QEMU machine: Xen enters at EL2 (`virtualization=on`).
pub(super) fn machine_args(gic: GicVersion, smp: u32, mem_mib: u64) -> Vec<String> {
    let gic = match gic {
        GicVersion::V2 => 2,
        GicVersion::V3 => 3,
    };
    vec![
        "-machine".into(),
        format!("virt,gic-version={gic},virtualization=on"),
        "-cpu".into(),
        "cortex-a57".into(),
        "-smp".into(),
        smp.to_string(),
        "-m".into(),
        mem_mib.to_string(),
    ]
}

/// RAM for `-m`: the description's one bank at virt's RAM base, or 2 GiB.
pub(super) fn memory_mib(sys: &System) -> Result<u64, SetupError> {
    match sys.platform.ram.as_slice() {
        [] => Ok(2048),
        [r] if r.base == VIRT_RAM_BASE && r.size % (1 << 20) == 0 => Ok(r.size >> 20),
        _ => Err(setup(
            "`staticbus boot` emulates QEMU's virt board: `[platform] ram` must be one bank at \
             0x4000_0000 whose size is a whole number of MiB",
        )
        .hint("write `ram = [{ base = 0x4000_0000, size = \"2GiB\" }]`")),
    }
}

/// Runs a command to completion within `limit`, killing it after that.
pub(super) fn run_bounded(
    cmd: &mut Command,
    limit: Duration,
    what: &str,
) -> Result<(), SetupError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| setup(format!("cannot start {what}: {e}")))?;
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(setup(format!("{what} failed ({st})"))),
            Ok(None) if Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(setup(format!("{what} did not finish in {limit:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(setup(format!("{what}: {e}"))),
        }
    }
}

/// The QEMU this command started; dropping it stops it.
pub(super) struct Qemu(pub(super) Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticbus_config::model::SourceKind;

    #[test]
    fn memory_comes_from_the_one_virt_bank() {
        use staticbus_config::model::Range;
        let mut sys = System::new("t", SourceKind::Description);
        assert_eq!(memory_mib(&sys).ok(), Some(2048));
        sys.platform.ram = vec![Range::new(VIRT_RAM_BASE, 1 << 30)];
        assert_eq!(memory_mib(&sys).ok(), Some(1024));
        sys.platform.ram = vec![Range::new(0x8000_0000, 1 << 30)];
        assert!(memory_mib(&sys).is_err());
    }
}
