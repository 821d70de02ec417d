//! The system description's tables, as serde types: what a `.toml` file may contain.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A size in bytes: an integer, or a string such as `"64KiB"`, `"16 MiB"`, `"0x1000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

/// An address: an integer (TOML allows `0x4000_0000`) or a string such as `"0x40000000"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr(pub u64);

pub(super) fn parse_int(s: &str) -> Option<u64> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// Parses `"64KiB"`, `"64 KiB"`, `"16M"`, `"2GiB"`, `"4096"`, `"0x1000"`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && !t.starts_with("0x") && !t.starts_with("0X"))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    parse_int(num)?.checked_mul(mult)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"64KiB\", \"16MiB\", \"0x1000\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a size (write e.g. \"64KiB\", \"16MiB\", \"2GiB\" or a number of bytes)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Addr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an address: an integer such as 0x4000_0000 or a string such as \"0x40000000\"",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Addr, E> {
                u64::try_from(v)
                    .map(Addr)
                    .map_err(|_| E::custom("an address cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Addr, E> {
                Ok(Addr(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Addr, E> {
                parse_int(v)
                    .map(Addr)
                    .ok_or_else(|| E::custom(format!("`{v}` is not an address")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (`to = "a"` or `to = ["a", "b"]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One.
    One(T),
    /// Several.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub(super) fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[system]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDesc {
    /// System name.
    pub name: Option<String>,
}

/// `[target]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetDesc {
    /// `"xen"` (default) or `"qemu-ivshmem"`.
    pub hypervisor: Option<Spanned<String>>,
    /// `"4.17"` … `"4.20"`.
    pub xen: Option<Spanned<String>>,
    /// CONFIG_STATIC_SHM.
    pub static_shm: Option<bool>,
    /// CONFIG_STATIC_MEMORY.
    pub static_memory: Option<bool>,
    /// CONFIG_STATIC_EVTCHN.
    pub static_evtchn: Option<bool>,
    /// `"v2"` or `"v3"`.
    pub gic: Option<Spanned<String>>,
}

/// A `{ base, size }` range.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeDesc {
    /// Start.
    pub base: Addr,
    /// Size.
    pub size: Size,
    /// Optional name (reserved ranges).
    pub name: Option<String>,
}

/// `[platform]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlatformDesc {
    /// RAM banks.
    #[serde(default)]
    pub ram: Vec<Spanned<RangeDesc>>,
    /// Reserved ranges.
    #[serde(default)]
    pub reserved: Vec<Spanned<RangeDesc>>,
    /// Host pool for shared regions.
    pub shm_pool: Option<Spanned<RangeDesc>>,
    /// Where the DTB is placed.
    pub dtb: Option<Spanned<RangeDesc>>,
    /// Where the Xen image is placed.
    pub xen: Option<Spanned<RangeDesc>>,
    /// Guest window for shared regions.
    pub guest_shm_window: Option<Spanned<RangeDesc>>,
    /// The board's device tree, relative to the description: what `--base` gives (which
    /// overrides it). Read by `compile::check` before the description itself.
    pub base: Option<Spanned<String>>,
}

/// `[xen]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XenDesc {
    /// Xen's command line.
    pub bootargs: Option<String>,
}

/// `[uboot]`: how the script of `staticbus build --uboot` loads the files.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UbootDesc {
    /// The U-Boot command that loads a file to an address (default `tftpb`).
    pub load: Option<Spanned<String>>,
    /// The Xen image's file name, as the load command reads it (default `xen`).
    pub xen: Option<Spanned<String>>,
}

/// A module: `{ file, cargo, addr, size }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDesc {
    /// Image file (relative to the description).
    pub file: Option<String>,
    /// The image is a binary of this Cargo workspace, built by `staticbus boot`.
    pub cargo: Option<CargoDesc>,
    /// Load address (allocated when absent).
    pub addr: Option<Addr>,
    /// Size (the file's size when absent).
    pub size: Option<Size>,
}

/// `cargo = { package, bin }`: a module image built from a Cargo binary target for
/// `aarch64-unknown-none` with the domain manifests compiled in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoDesc {
    /// Package (default: the one that has the binary).
    pub package: Option<String>,
    /// Binary target.
    pub bin: String,
}

/// `xen,enhanced`: a string, or `false` for absent / `true` for `"enabled"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum EnhancedDesc {
    /// `true` / `false`.
    Bool(bool),
    /// A value.
    Str(String),
}

/// `[domain.emulate]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulateDesc {
    /// Program.
    pub program: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Resource limits of the domain's processes.
    pub limits: Option<LimitsDesc>,
}

/// `limits = { memory, processes, files, file-size, cpu }` of an `emulate` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsDesc {
    /// Private memory per process and, with cgroups, of the whole domain.
    pub memory: Option<Spanned<Size>>,
    /// Processes and threads of the domain.
    pub processes: Option<Spanned<i64>>,
    /// Open descriptors per process.
    pub files: Option<Spanned<i64>>,
    /// The size one file may grow to.
    pub file_size: Option<Spanned<Size>>,
    /// CPUs (`0.5`: half of one CPU), with cgroups only.
    pub cpu: Option<Spanned<f64>>,
}

/// `[[domain]]` and `[dom0]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DomainDesc {
    /// Name.
    pub name: Option<Spanned<String>>,
    /// RAM size.
    pub memory: Option<Spanned<Size>>,
    /// vCPUs (default 1).
    pub vcpus: Option<Spanned<u32>>,
    /// Kernel.
    pub kernel: Option<Spanned<ModuleDesc>>,
    /// Ramdisk.
    pub ramdisk: Option<Spanned<ModuleDesc>>,
    /// Passthrough DT.
    pub dtb: Option<Spanned<ModuleDesc>>,
    /// Command line.
    pub bootargs: Option<Spanned<String>>,
    /// vPL011 (default true).
    pub vpl011: Option<bool>,
    /// `xen,enhanced` (default "no-xenstore").
    pub enhanced: Option<Spanned<EnhancedDesc>>,
    /// Static memory banks.
    #[serde(default)]
    pub static_mem: Vec<Spanned<RangeDesc>>,
    /// Direct map.
    pub direct_map: Option<Spanned<bool>>,
    /// Emulator settings.
    pub emulate: Option<EmulateDesc>,
    /// A Linux domU (kernel, initramfs programs): instead of `kernel` and `ramdisk`.
    pub linux: Option<Spanned<LinuxDesc>>,
}

/// `linux = { kernel, programs, kernel-size, initramfs-size }` of a `[[domain]]`: a Linux
/// domU whose kernel `staticbus boot` finds and whose initramfs it makes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinuxDesc {
    /// `"debian"` (the default: Debian's arm64 kernel from the cache of
    /// `scripts/linux/fetch-kernel.sh`) or the path of an arm64 Image.
    pub kernel: Option<String>,
    /// Programs for the initramfs's `/bin`: Cargo binaries built for
    /// `aarch64-unknown-linux-musl`.
    #[serde(default)]
    pub programs: Vec<CargoDesc>,
    /// Room reserved for the kernel (default 64 MiB).
    pub kernel_size: Option<Size>,
    /// Room reserved for the initramfs (default 16 MiB).
    pub initramfs_size: Option<Size>,
}

/// `[[evtchn]]`: `a = "dom:port"`, `b = "dom:port"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvtchnDesc {
    /// One end.
    pub a: Spanned<String>,
    /// The other end.
    pub b: Spanned<String>,
}

/// One user of a low-level region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShmUserDesc {
    /// Domain name.
    pub domain: Spanned<String>,
    /// Guest address (allocated when absent).
    pub guest: Option<Spanned<Addr>>,
    /// `"owner"` or `"borrower"` (absent: DOMID_IO owns the region).
    pub role: Option<Spanned<String>>,
}

/// `[[shm]]`: a low-level static shared region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShmDesc {
    /// `xen,shm-id`.
    pub id: Spanned<String>,
    /// Size.
    pub size: Spanned<Size>,
    /// Host address (allocated from the pool, or the heap form on 4.19+, when absent).
    pub host: Option<Spanned<Addr>>,
    /// Users.
    pub users: Vec<Spanned<ShmUserDesc>>,
}

/// Per-domain values: one for all domains, or a table by domain name.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PerDomain<T> {
    /// The same for every member.
    All(T),
    /// By domain name.
    By(BTreeMap<String, T>),
}

/// `[[channel]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelDesc {
    /// Name.
    pub name: Spanned<String>,
    /// `queue | log | latest | blob`.
    pub protocol: Spanned<String>,
    /// Writer(s).
    pub from: Spanned<OneOrMany<String>>,
    /// Reader(s).
    pub to: Spanned<OneOrMany<String>>,
    /// Region size.
    pub size: Spanned<Size>,
    /// A log's slot size (required for `log`, refused for the other protocols).
    pub slot_size: Option<Spanned<Size>>,
    /// A latest channel's value size (required for `latest`, refused for the others).
    pub value_size: Option<Spanned<Size>>,
    /// shm id (allocated when absent).
    pub shm_id: Option<Spanned<String>>,
    /// Host address.
    pub host: Option<Spanned<Addr>>,
    /// Guest address(es).
    pub guest: Option<Spanned<PerDomain<Addr>>>,
    /// Event-channel ports by domain (a list when the domain has several pairs).
    pub ports: Option<Spanned<BTreeMap<String, OneOrMany<u32>>>>,
    /// Owner domain (absent: DOMID_IO).
    pub owner: Option<Spanned<String>>,
}

/// `[[virtio]]`: a virtio device one domain (the backend) serves to another (the
/// frontend) over its own region and event-channel pair (docs/virtio.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VirtioDesc {
    /// Name (unique among channels and virtio devices).
    pub name: Spanned<String>,
    /// Device type: `blk`, `console`, `rng`, `net`, … (`staticbus_virtio_msg::devices`).
    pub device: Spanned<String>,
    /// The domain that drives the device.
    pub frontend: Spanned<String>,
    /// The domain that serves it.
    pub backend: Spanned<String>,
    /// Number of virtqueues (default: the device type's fewest).
    pub queues: Option<Spanned<u32>>,
    /// Entries per queue, a power of two (default 16).
    pub queue_size: Option<Spanned<u32>>,
    /// Region size.
    pub size: Spanned<Size>,
    /// How the backend serves it.
    pub serve: Spanned<ServeDesc>,
    /// shm id (`virtio-NAME` when absent).
    pub shm_id: Option<Spanned<String>>,
}

/// `serve = { builtin = true }` or `serve = { vhost-user = "program", args = [...] }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeDesc {
    /// staticbus's built-in `no_std` device.
    pub builtin: Option<bool>,
    /// A vhost-user backend program, driven by the bridge in the backend domain.
    pub vhost_user: Option<String>,
    /// The program's arguments.
    pub args: Option<Vec<String>>,
}

/// The whole description.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// `[system]`.
    #[serde(default)]
    pub system: SystemDesc,
    /// `[target]`.
    pub target: Option<Spanned<TargetDesc>>,
    /// `[platform]`.
    #[serde(default)]
    pub platform: PlatformDesc,
    /// `[xen]`.
    #[serde(default)]
    pub xen: XenDesc,
    /// `[uboot]`.
    #[serde(default)]
    pub uboot: UbootDesc,
    /// `[dom0]`.
    pub dom0: Option<Spanned<DomainDesc>>,
    /// `[[domain]]`.
    #[serde(default)]
    pub domain: Vec<Spanned<DomainDesc>>,
    /// `[[evtchn]]`.
    #[serde(default)]
    pub evtchn: Vec<Spanned<EvtchnDesc>>,
    /// `[[shm]]`.
    #[serde(default)]
    pub shm: Vec<Spanned<ShmDesc>>,
    /// `[[channel]]`.
    #[serde(default)]
    pub channel: Vec<Spanned<ChannelDesc>>,
    /// `[[virtio]]`.
    #[serde(default)]
    pub virtio: Vec<Spanned<VirtioDesc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("64 KiB"), Some(65536));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }
}
