//! A boot through U-Boot: the TFTP directory its generated script loads from, and the
//! command line that fetches and runs the script.

use super::images::Load;
use super::qemu::VIRT_RAM_BASE;
use super::{setup, SetupError};
use crate::write_outputs;
use staticbus_config::compile;
use staticbus_config::model::System;
use std::path::{Path, PathBuf};

/// Lays out the TFTP directory for a boot through U-Boot: Xen, the tree and every module
/// under the names the generated script loads, plus `boot.scr`; returns it and the U-Boot
/// command line that fetches and runs the script.
pub(super) fn uboot_tree(
    sys: &System,
    xen: &Path,
    loads: &[Load],
    out: &Path,
) -> Result<(PathBuf, String), SetupError> {
    use staticbus_config::uboot;
    let err = |e: uboot::ScriptError| setup(e.msg).hint(e.help);
    let files = compile::uboot_outputs(sys).map_err(err)?;
    let tftp = out.join("tftp");
    let _ = std::fs::remove_dir_all(&tftp);
    let io = |e: std::io::Error| setup(format!("cannot write to `{}`: {e}", tftp.display()));
    std::fs::create_dir_all(&tftp).map_err(io)?;
    write_outputs(out, &files).map_err(io)?;
    std::fs::copy(out.join("boot.scr"), tftp.join("boot.scr")).map_err(io)?;
    // The script's file names may be paths (`dom1/Image`): their folders come first.
    let copy = |from: &Path, name: &str| -> std::io::Result<u64> {
        let to = tftp.join(name);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from, to)
    };
    copy(xen, &uboot::xen_file(sys)).map_err(io)?;
    copy(&out.join("host.dtb"), uboot::DTB_FILE).map_err(io)?;
    for l in loads {
        copy(&l.file, &l.script_name).map_err(io)?;
    }
    let script_loads = uboot::loads(sys).map_err(err)?;
    // The script itself goes above everything it loads, 2 MiB aligned.
    let end = script_loads
        .iter()
        .map(|l| l.addr.saturating_add(l.size))
        .max()
        .unwrap_or(VIRT_RAM_BASE);
    let at = end.div_ceil(2 << 20) * (2 << 20);
    Ok((
        tftp,
        format!(
            "setenv ipaddr 10.0.2.15; setenv serverip 10.0.2.2; tftpb {at:#x} boot.scr; source {at:#x}"
        ),
    ))
}
