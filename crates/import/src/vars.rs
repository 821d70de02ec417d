//! Every variable ImageBuilder's `uboot-script-gen` reads (README and script of
//! gitlab.com/xen-project/imagebuilder, including the static-memory, shared-memory,
//! enhanced and static-event-channel additions), and what the importer does with it. This
//! table is the one list: the importer looks variables up here, and a test checks that
//! docs/imagebuilder.md lists every one of them.

/// What becomes of a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Imported: the text says into what.
    Mapped(&'static str),
    /// Reported as unsupported (SB0804): the text says why.
    Unsupported(&'static str),
}

/// One ImageBuilder variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    /// Its name.
    pub name: &'static str,
    /// Per domain: written `NAME[n]`.
    pub indexed: bool,
    /// What the importer does with it.
    pub handling: Handling,
}

use Handling::{Mapped, Unsupported};

macro_rules! vars {
    ($( $name:literal $(, $idx:ident)? => $h:expr; )*) => {
        /// Every variable, in the README's order.
        pub const VARIABLES: &[Var] = &[$(Var { name: $name, indexed: vars!(@idx $($idx)?), handling: $h }),*];
    };
    (@idx indexed) => { true };
    (@idx) => { false };
}

vars! {
    "MEMORY_START" => Mapped("[platform] ram: the RAM bank's base (required)");
    "MEMORY_END" => Mapped("[platform] ram: the RAM bank's end (required)");
    "LOAD_CMD" => Mapped("[uboot] load: the command the U-Boot script loads files with (tftp, sd, scsi, usb shorthands expanded; default tftpb)");
    "BOOT_CMD" => Mapped("booti is what `build --uboot` starts Xen with; bootm, bootefi and none are reported as unsupported");
    "DEVICE_TREE" => Mapped("[platform] base: the board tree `check` and `build` merge the configuration into; its placement is [platform] dtb, 2 MiB after Xen");
    "XEN" => Mapped("[uboot] xen (the file the script loads) and [platform] xen (where: after the domain modules, like uboot-script-gen)");
    "XEN_CMD" => Mapped("[xen] bootargs (ImageBuilder's default when unset)");
    "XEN_LOAD" => Mapped("same as LOAD_CMD when equal to it; a different command per image is unsupported");
    "XEN_STATIC_HEAP" => Unsupported("xen,static-heap is not modelled");
    "XEN_COLORS" => Unsupported("cache colouring is not modelled");
    "XEN_POLICY" => Unsupported("an XSM policy module is not modelled");
    "XEN_PASSTHROUGH_PATHS" => Unsupported("device passthrough needs edits of the board tree that staticbus does not make");
    "PASSTHROUGH_DTS_REPO" => Unsupported("device passthrough needs edits of the board tree that staticbus does not make");
    "DOM0_KERNEL" => Mapped("[dom0] kernel");
    "DOM0_RAMDISK" => Mapped("[dom0] ramdisk");
    "DOM0_CMD" => Mapped("[dom0] bootargs (ImageBuilder's default, with root=/dev/ram0 added when no root= is given)");
    "DOM0_MEM" => Mapped("dom0_mem= of the default XEN_CMD (ignored, with a warning, when XEN_CMD is set)");
    "DOM0_VCPUS" => Mapped("dom0_max_vcpus= of the default XEN_CMD (ignored, with a warning, when XEN_CMD is set)");
    "DOM0_LOAD" => Mapped("same as LOAD_CMD when equal to it; a different command per image is unsupported");
    "DOM0_COLORS" => Unsupported("cache colouring is not modelled");
    "DOM0_ROOTFS" => Unsupported("a disk_image setting; the import boots dom0 from its ramdisk");
    "NUM_DT_OVERLAY" => Unsupported("apply the overlays to DEVICE_TREE before the import (fdtoverlay)");
    "DT_OVERLAY", indexed => Unsupported("apply the overlays to DEVICE_TREE before the import (fdtoverlay)");
    "LOPPER_PATH" => Unsupported("device passthrough needs edits of the board tree that staticbus does not make");
    "LOPPER_CMD" => Unsupported("device passthrough needs edits of the board tree that staticbus does not make");
    "NUM_DOMUS" => Mapped("the number of [[domain]] tables, named domU0, domU1, … like ImageBuilder's /chosen nodes");
    "DOMU_KERNEL", indexed => Mapped("[[domain]] kernel (required for a booted domain)");
    "DOMU_CMD", indexed => Mapped("[[domain]] bootargs (default console=ttyAMA0 unless DOMU_VPL011 is 0)");
    "DOMU_RAMDISK", indexed => Mapped("[[domain]] ramdisk");
    "DOMU_PASSTHROUGH_DTB", indexed => Mapped("[[domain]] dtb (the multiboot,device-tree module)");
    "DOMU_PASSTHROUGH_PATHS", indexed => Unsupported("device passthrough needs edits of the board tree that staticbus does not make");
    "DOMU_MEM", indexed => Mapped("[[domain]] memory, in MiB (default 512; the sum of DOMU_STATIC_MEM's banks when those are given)");
    "DOMU_VCPUS", indexed => Mapped("[[domain]] vcpus (default 1)");
    "DOMU_VPL011", indexed => Mapped("[[domain]] vpl011 (0 turns it off)");
    "DOMU_COLORS", indexed => Unsupported("cache colouring is not modelled");
    "DOMU_LOAD", indexed => Mapped("same as LOAD_CMD when equal to it; a different command per image is unsupported");
    "DOMU_NOBOOT", indexed => Mapped("the domain is left out, as uboot-script-gen leaves it out of /chosen (SB0811)");
    "DOMU_ROOTFS", indexed => Mapped("the domain is left out, as uboot-script-gen skips dom0less domains with a disk rootfs (SB0811)");
    "DOMU_STATIC_MEM", indexed => Mapped("[[domain]] static-mem banks (\"base size …\" pairs); [target] static-memory");
    "DOMU_DIRECT_MAP", indexed => Mapped("[[domain]] direct-map (default 1 with static memory)");
    "DOMU_ENHANCED", indexed => Mapped("[[domain]] enhanced: 1 \"enabled\", 2 \"no-xenstore\", 0 absent (default \"enabled\" with dom0, else absent)");
    "DOMU_SHARED_MEM", indexed => Mapped("[[shm]]: \"ID [HPA] GPA size\", one region per domain, the domains of one ID its users (DOMID_IO owns it); [target] static-shm");
    "DOMU_STATIC_EVTCHNS", indexed => Mapped("[[evtchn]]: \"local_port remote_index remote_port; …\", each pair once, both ends must declare it");
    "DOMU_CPUPOOL", indexed => Unsupported("cpupools are not modelled");
    "DOMU_VCPU_HARD_AFFINITY", indexed => Unsupported("vCPU affinity is not modelled");
    "DOMU_DRIVER_DOMAIN", indexed => Unsupported("a disk_image setting (xl configuration for dom0)");
    "CPUPOOL", indexed => Unsupported("cpupools are not modelled");
    "NUM_CPUPOOLS" => Unsupported("cpupools are not modelled");
    "LINUX" => Unsupported("booting Linux without Xen is not a dom0less system");
    "LINUX_CMD" => Unsupported("booting Linux without Xen is not a dom0less system");
    "LINUX_RAMDISK" => Unsupported("booting Linux without Xen is not a dom0less system");
    "LINUX_ROOTFS" => Unsupported("booting Linux without Xen is not a dom0less system");
    "BITSTREAM" => Unsupported("FPGA programming from U-Boot is not modelled");
    "NUM_BOOT_AUX_FILE" => Unsupported("a disk_image setting");
    "BOOT_AUX_FILE", indexed => Unsupported("a disk_image setting");
    "UBOOT_SOURCE" => Mapped("`build --uboot` writes boot.source; another name is reported");
    "UBOOT_SCRIPT" => Mapped("`build --uboot` writes boot.scr; another name is reported");
    "APPEND_EXTRA_CMDS" => Unsupported("extra U-Boot commands are not added to the script");
    "FDTEDIT" => Unsupported("staticbus writes the whole host tree itself (build's host.dtb)");
    "FIT" => Unsupported("FIT images are not written");
    "FIT_ENC_KEY_DIR" => Unsupported("FIT images are not written");
    "FIT_ENC_UB_DTB" => Unsupported("FIT images are not written");
    "EFI" => Unsupported("an EFI boot is not written; the script starts Xen with booti");
    "PREPEND_PATH" => Unsupported("the script loads paths as the description gives them");
    "GPT" => Unsupported("a disk_image setting");
}

/// The variable called `name`.
pub fn lookup(name: &str) -> Option<&'static Var> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// The known variable closest to `name`, if one is close enough to be a likely typo.
pub fn closest(name: &str) -> Option<&'static str> {
    VARIABLES
        .iter()
        .map(|v| (strsim::damerau_levenshtein(name, v.name), v.name))
        .filter(|&(d, n)| d <= 3 && d < n.len() / 2)
        .min()
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_upper_case() {
        let mut seen = std::collections::BTreeSet::new();
        for v in VARIABLES {
            assert!(seen.insert(v.name), "{} twice", v.name);
            assert!(v
                .name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn typos_find_the_variable() {
        assert_eq!(closest("DOMU_MEMS"), Some("DOMU_MEM"));
        assert_eq!(closest("DOMU_KERNAL"), Some("DOMU_KERNEL"));
        assert_eq!(closest("NUM_DOMU"), Some("NUM_DOMUS"));
        assert_eq!(closest("TOTALLY_ELSE"), None);
    }
}
