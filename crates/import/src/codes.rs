//! The diagnostic codes of the ImageBuilder importer (SB08xx). For these, "what Xen does"
//! is what `uboot-script-gen` (which runs `source` on the file with bash) and then Xen do
//! with the same configuration.

use staticbus_diag::{Code, Severity};

macro_rules! codes {
    ($( $name:ident = $id:literal, $sev:ident, $title:literal, $xen:literal; )*) => {
        $(
            #[doc = concat!("`", $id, "`: ", $title)]
            pub const $name: Code = Code {
                id: $id,
                severity: Severity::$sev,
                title: $title,
                xen: $xen,
            };
        )*
        /// Every code of this crate, in numeric order.
        pub const ALL: &[Code] = &[$($name),*];
    };
}

codes! {
    SYNTAX = "SB0801", Error,
        "ImageBuilder configuration line is not a variable assignment",
        "bash runs the line as a command when uboot-script-gen sources the file: usually `command not found`, and the variable is never set";
    SHELL_CONSTRUCT = "SB0802", Error,
        "shell construct the importer does not evaluate (command substitution, unknown variable, array list, `+=`)",
        "bash evaluates it while sourcing the file, so the value depends on the machine and environment uboot-script-gen runs on";
    BAD_VALUE = "SB0803", Error,
        "bad value for an ImageBuilder variable",
        "uboot-script-gen passes the text on unchecked: bash arithmetic fails (`value too great for base`, `syntax error in expression`) or a malformed property ends up in the tree and Xen panics at boot";
    UNSUPPORTED = "SB0804", Warning,
        "ImageBuilder variable that staticbus does not model (reported, not imported)",
        "uboot-script-gen acts on it (cache colouring, cpupools, passthrough, FIT images, overlays, …); the imported description boots without it";
    UNKNOWN_VARIABLE = "SB0805", Warning,
        "not an ImageBuilder variable",
        "uboot-script-gen never reads it: a typo (`DOMU_MEMORY[0]`) silently leaves the default in place";
    ASSIGNED_TWICE = "SB0806", Warning,
        "variable assigned more than once (the last assignment wins)",
        "bash keeps the last value; the earlier one is silently lost";
    MISSING = "SB0807", Error,
        "a variable ImageBuilder needs is not set",
        "uboot-script-gen stops (`File  doesn't exist, exiting`) or writes a script that loads nothing at that address";
    INDEX_RANGE = "SB0808", Warning,
        "per-domain variable for an index outside 0..NUM_DOMUS",
        "uboot-script-gen loops over 0..NUM_DOMUS only: the setting is silently ignored";
    FILE_UNREADABLE = "SB0809", Error,
        "cannot read a file the configuration names",
        "uboot-script-gen stops with `File … doesn't exist, exiting`";
    SHM_MISMATCH = "SB0810", Error,
        "domains declare the same shared-memory id with different host ranges or sizes",
        "uboot-script-gen writes both nodes; Xen panics at boot: `fdt: different shared memory region could not share the same shm ID …` (as SB0214)";
    NOT_BOOTED = "SB0811", Note,
        "domain not started at boot (DOMU_NOBOOT or DOMU_ROOTFS) is left out",
        "uboot-script-gen skips it: no node under /chosen, nothing loaded";
    EVTCHN_MISMATCH = "SB0812", Error,
        "static event channel declared by one domain only, or differently by its two ends",
        "uboot-script-gen has no remote endpoint to point at, or writes two endpoints that do not point at each other: Xen panics at boot (`xen,evtchn property is not setup correctly.`, as SB0105)";
}
