//! A U-Boot script that loads Xen, the host device tree and every boot module at the
//! addresses the configuration was checked with, then starts Xen (`booti`): what
//! ImageBuilder's `uboot-script-gen` does, from the checked model.
//!
//! Two outputs: `boot.source` (the script, readable) and `boot.scr` (the same script as a
//! legacy U-Boot image of type "script", what `mkimage -A arm64 -O linux -T script -C none`
//! makes, ready for U-Boot's `source` command).

use crate::model::{ModuleKind, System};
use std::fmt::Write;

/// File name, relative to where U-Boot loads from, under which Xen is expected.
pub const XEN_FILE: &str = "xen";
/// File name of the host device tree.
pub const DTB_FILE: &str = "host.dtb";

/// One file the script loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptLoad {
    /// File name the script loads (relative to U-Boot's load source).
    pub file: String,
    /// Load address.
    pub addr: u64,
    /// Room reserved for it (0: unknown).
    pub size: u64,
    /// What it is, for the script's comments and messages.
    pub what: String,
    /// Where the bytes come from (the description's path, the cargo binary, …): two loads
    /// under one file name must come from the same place.
    pub source: String,
}

/// Why no script can be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// What is missing.
    pub msg: String,
    /// How to fix it.
    pub help: String,
}

/// The file name the script loads a module image under: its `file` as the description
/// gives it when that is a relative path (so `dom1/Image` and `dom2/Image` stay two files,
/// as in ImageBuilder's configurations), else the basename of `file`, or
/// `<bin>.bin` for an image built by cargo, or `<domain>-<kind>` when neither is known.
pub fn module_file(
    domain: &str,
    kind: ModuleKind,
    path: Option<&str>,
    bin: Option<&str>,
) -> String {
    if let Some(b) = bin {
        return format!("{b}.bin");
    }
    if let Some(p) = path {
        return script_path(p);
    }
    format!("{domain}-{}", kind.as_str())
}

/// The name the script loads a file of the description under: a relative path as it is,
/// resolved lexically, with `..` above the start dropped (the files of `../dom1/Image` and
/// `../dom2/Image` stay apart as `dom1/Image` and `dom2/Image`); else the basename.
pub fn script_path(p: &str) -> String {
    let pp = std::path::Path::new(p);
    let mut parts: Vec<&str> = Vec::new();
    let mut plain = !pp.is_absolute();
    for c in pp.components() {
        match c {
            std::path::Component::Normal(n) => match n.to_str() {
                Some(n) => parts.push(n),
                None => plain = false,
            },
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            _ => plain = false,
        }
    }
    if plain && !parts.is_empty() {
        return parts.join("/");
    }
    pp.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(p)
        .to_string()
}

/// The file name the script loads Xen from: `[uboot] xen` (as [`script_path`] names it),
/// default [`XEN_FILE`].
pub fn xen_file(sys: &System) -> String {
    sys.uboot
        .xen_file
        .as_deref()
        .map(script_path)
        .unwrap_or_else(|| XEN_FILE.to_string())
}

/// The command the script loads files with: `[uboot] load`, default `tftpb`.
pub fn load_command(sys: &System) -> &str {
    sys.uboot.load.as_deref().unwrap_or("tftpb")
}

/// True if U-Boot's shell reads `name` as one plain word.
fn plain_word(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '$' | '#' | '\\' | '{' | '}')
        })
}

/// Every file the script loads, in load order: Xen, the device tree, then each domain's
/// modules.
pub fn loads(sys: &System) -> Result<Vec<ScriptLoad>, ScriptError> {
    let (Some(xen), Some(dtb)) = (&sys.platform.xen_image, &sys.platform.dtb) else {
        return Err(ScriptError {
            msg: "a U-Boot script needs to know where Xen and the device tree are loaded".into(),
            help: "give both in the description: `[platform] xen = { base = …, size = … }` and \
                   `dtb = { base = …, size = … }`"
                .into(),
        });
    };
    let mut v = vec![
        ScriptLoad {
            file: xen_file(sys),
            addr: xen.base,
            size: xen.size,
            what: "Xen".into(),
            source: "the Xen image".into(),
        },
        ScriptLoad {
            file: DTB_FILE.into(),
            addr: dtb.base,
            size: dtb.size,
            what: "host device tree".into(),
            source: "the host device tree".into(),
        },
    ];
    for d in &sys.domains {
        for m in &d.modules {
            v.push(ScriptLoad {
                file: module_file(
                    &d.name,
                    m.kind,
                    m.path.as_deref(),
                    m.cargo.as_ref().map(|c| c.bin.as_str()),
                ),
                addr: m.addr,
                size: m.size,
                what: format!("{} {}", d.name, m.kind.as_str()),
                source: match (&m.cargo, &m.path) {
                    (Some(c), _) => {
                        format!("cargo:{}:{}", c.package.as_deref().unwrap_or(""), c.bin)
                    }
                    (None, Some(p)) => format!("file:{p}"),
                    (None, None) => format!("{}:{}", d.name, m.kind.as_str()),
                },
            });
        }
    }
    // One name, one file: two different images under one name would load the same bytes
    // twice; a name U-Boot's shell splits or expands would load the wrong file.
    let mut seen: std::collections::BTreeMap<&str, &ScriptLoad> = std::collections::BTreeMap::new();
    for l in &v {
        if !plain_word(&l.file) {
            return Err(ScriptError {
                msg: format!(
                    "the {} is loaded as `{}`, which U-Boot's shell does not read as one file name",
                    l.what, l.file
                ),
                help: "name the file without spaces, quotes, ;, $, # or braces".into(),
            });
        }
        if let Some(prev) = seen.insert(&l.file, l) {
            if prev.source != l.source {
                return Err(ScriptError {
                    msg: format!(
                        "the {} and the {} would both be loaded from `{}`",
                        prev.what, l.what, l.file
                    ),
                    help: "give the images different file names (or put them in different folders)"
                        .into(),
                });
            }
        }
    }
    Ok(v)
}

/// The script text (`boot.source`).
pub fn script(sys: &System) -> Result<String, ScriptError> {
    let loads = loads(sys)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# U-Boot script for the staticbus system \"{}\" (Xen {}), written by `staticbus build --uboot`.",
        sys.name, sys.target.xen
    );
    s.push_str(
        "#\n\
         # Loads Xen, the host device tree and every boot module at the addresses the\n\
         # configuration was checked with, then starts Xen. Files are read with the command in\n\
         # ${sb_load} (its default below comes from the description's `[uboot] load`; e.g.\n\
         # `setenv sb_load \"load mmc 0:1\"` first to override it). The files, relative to\n\
         # where that command reads:\n",
    );
    for l in &loads {
        let _ = writeln!(
            s,
            "#   {:<24} {} at {:#x} (room: {:#x} bytes)",
            l.file, l.what, l.addr, l.size
        );
    }
    s.push_str(
        "# boot.scr is this script as a U-Boot image (`source` it); `mkimage -A arm64 -O linux\n\
         # -T script -C none -d boot.source boot.scr` makes the same from this file.\n\n",
    );
    let _ = writeln!(
        s,
        "if test -z \"${{sb_load}}\"; then setenv sb_load {}; fi",
        load_command(sys)
    );
    for l in &loads {
        let _ = writeln!(s, "echo \"staticbus: {} <- {}\"", l.what, l.file);
        let _ = writeln!(
            s,
            "if ${{sb_load}} {:#x} {}; then true; else echo \"staticbus: cannot load {}\"; exit; fi",
            l.addr, l.file, l.file
        );
    }
    // Keep the tree where it was checked: U-Boot would otherwise move it to high memory.
    s.push_str("setenv fdt_high 0xffffffffffffffff\n");
    let (xen, dtb) = (&loads[0], &loads[1]);
    let _ = writeln!(s, "fdt addr {:#x}", dtb.addr);
    let _ = writeln!(s, "echo \"staticbus: starting Xen\"");
    let _ = writeln!(s, "booti {:#x} - {:#x}", xen.addr, dtb.addr);
    Ok(s)
}

/// Legacy U-Boot image magic.
const IH_MAGIC: u32 = 0x2705_1956;
/// `IH_OS_LINUX`.
const IH_OS_LINUX: u8 = 5;
/// `IH_ARCH_ARM64`.
const IH_ARCH_ARM64: u8 = 22;
/// `IH_TYPE_SCRIPT`.
const IH_TYPE_SCRIPT: u8 = 6;
/// `IH_COMP_NONE`.
const IH_COMP_NONE: u8 = 0;
/// Size of the legacy image header.
pub const HEADER_LEN: usize = 64;

/// The script as a legacy U-Boot image of type "script" (`boot.scr`): a 64-byte big-endian
/// header (magic, header CRC-32, time 0 for reproducible output, data size, load and entry
/// 0, data CRC-32, OS Linux, arch arm64, type script, no compression, name), then the data:
/// the list of part lengths (one part) ended by a zero word, then the script.
pub fn scr(name: &str, script: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(script.len() + 8);
    data.extend_from_slice(&(script.len() as u32).to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script.as_bytes());
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&IH_MAGIC.to_be_bytes());
    h[12..16].copy_from_slice(&(data.len() as u32).to_be_bytes());
    h[24..28].copy_from_slice(&crc32fast::hash(&data).to_be_bytes());
    h[28] = IH_OS_LINUX;
    h[29] = IH_ARCH_ARM64;
    h[30] = IH_TYPE_SCRIPT;
    h[31] = IH_COMP_NONE;
    let n = name.len().min(31);
    h[32..32 + n].copy_from_slice(&name.as_bytes()[..n]);
    let hcrc = crc32fast::hash(&h);
    h[4..8].copy_from_slice(&hcrc.to_be_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CargoImage, Domain, Module, Range, SourceKind};
    use staticbus_diag::Location;

    fn system() -> System {
        let mut sys = System::new("demo", SourceKind::Description);
        sys.platform.xen_image = Some(Range::new(0x4020_0000, 0x20_0000));
        sys.platform.dtb = Some(Range::new(0x4800_0000, 0x20_0000));
        let mut d = Domain::new("ping", 1, Location::None);
        d.modules.push(Module {
            kind: ModuleKind::Kernel,
            addr: 0x4040_0000,
            size: 0x20_0000,
            path: None,
            cargo: Some(CargoImage {
                package: None,
                bin: "xen-ping-pong".into(),
            }),
            bootargs: None,
            bootargs_loc: Location::None,
            loc: Location::None,
        });
        d.modules.push(Module {
            kind: ModuleKind::Ramdisk,
            addr: 0x4060_0000,
            size: 0x1000,
            path: Some("images/initrd.cpio".into()),
            cargo: None,
            bootargs: None,
            bootargs_loc: Location::None,
            loc: Location::None,
        });
        sys.domains.push(d);
        sys
    }

    #[test]
    fn loads_every_file_at_its_checked_address_then_boots_xen() {
        let s = script(&system()).unwrap();
        let cmds: Vec<&str> = s.lines().filter(|l| !l.starts_with('#')).collect();
        let loads: Vec<&str> = cmds
            .iter()
            .filter(|l| l.starts_with("if ${sb_load}"))
            .copied()
            .collect();
        assert_eq!(
            loads,
            [
                "if ${sb_load} 0x40200000 xen; then true; else echo \"staticbus: cannot load xen\"; exit; fi",
                "if ${sb_load} 0x48000000 host.dtb; then true; else echo \"staticbus: cannot load host.dtb\"; exit; fi",
                "if ${sb_load} 0x40400000 xen-ping-pong.bin; then true; else echo \"staticbus: cannot load xen-ping-pong.bin\"; exit; fi",
                "if ${sb_load} 0x40600000 images/initrd.cpio; then true; else echo \"staticbus: cannot load images/initrd.cpio\"; exit; fi",
            ]
        );
        assert_eq!(cmds.last(), Some(&"booti 0x40200000 - 0x48000000"));
        assert!(cmds.contains(&"setenv fdt_high 0xffffffffffffffff"));
    }

    #[test]
    fn paths_stay_paths_and_the_description_names_the_load_command_and_xen() {
        let mut sys = system();
        sys.domains[0].modules[1].path = Some("../boot/./dom1/Image".into());
        let mut d2 = sys.domains[0].clone();
        d2.name = "pong".into();
        d2.modules.truncate(1);
        d2.modules[0].cargo = None;
        d2.modules[0].path = Some("dom2/Image".into());
        sys.domains.push(d2);
        sys.uboot.load = Some("load mmc 0:1".into());
        sys.uboot.xen_file = Some("../boot/xen-4.20".into());
        let s = script(&sys).unwrap();
        assert!(
            s.contains("if test -z \"${sb_load}\"; then setenv sb_load load mmc 0:1; fi"),
            "{s}"
        );
        assert!(
            s.contains("if ${sb_load} 0x40200000 boot/xen-4.20; then"),
            "{s}"
        );
        assert!(s.contains(" boot/dom1/Image; then"), "{s}");
        assert!(s.contains(" dom2/Image; then"), "{s}");
        // Absolute paths fall back to their basename; two images under one name are refused.
        sys.domains[0].modules[1].path = Some("/srv/a/Image".into());
        sys.domains[1].modules[0].path = Some("/srv/b/Image".into());
        let e = script(&sys).unwrap_err();
        assert!(e.msg.contains("both be loaded from `Image`"), "{e:?}");
        // The same file for two domains is one file.
        sys.domains[1].modules[0].path = Some("/srv/a/Image".into());
        assert!(script(&sys).is_ok());
        // A name the shell would split is refused.
        sys.domains[1].modules[0].path = Some("my image".into());
        assert!(script(&sys).unwrap_err().msg.contains("one file name"));
    }

    #[test]
    fn needs_xen_and_dtb_placement() {
        let mut sys = system();
        sys.platform.dtb = None;
        let e = script(&sys).unwrap_err();
        assert!(e.help.contains("dtb = {"), "{e:?}");
    }

    #[test]
    fn scr_is_a_legacy_script_image() {
        let img = scr("staticbus demo", "echo hi\n");
        assert_eq!(&img[0..4], &[0x27, 0x05, 0x19, 0x56]);
        let data = &img[HEADER_LEN..];
        assert_eq!(
            u32::from_be_bytes(img[12..16].try_into().unwrap()) as usize,
            data.len()
        );
        assert_eq!(&data[0..8], &[0, 0, 0, 8, 0, 0, 0, 0]);
        assert_eq!(&data[8..], b"echo hi\n");
        // Both CRCs check out (the header's is computed with its own field zeroed).
        let mut h = img[..HEADER_LEN].to_vec();
        let hcrc = u32::from_be_bytes(h[4..8].try_into().unwrap());
        h[4..8].fill(0);
        assert_eq!(crc32fast::hash(&h), hcrc);
        assert_eq!(
            u32::from_be_bytes(img[24..28].try_into().unwrap()),
            crc32fast::hash(data)
        );
        assert_eq!((img[28], img[29], img[30], img[31]), (5, 22, 6, 0));
        assert_eq!(&img[32..46], b"staticbus demo");
    }
}
