//! Every diagnostic code the compiler emits, with the Xen behaviour each one prevents.
//!
//! Ranges: SB00xx device-tree syntax (crate `staticbus-dt`), SB01xx static event channels,
//! SB02xx static shared memory, SB03xx `xen,enhanced`, SB04xx domains, modules and memory,
//! SB05xx the system description, SB06xx allocation, SB07xx input/output, SB09xx the
//! `qemu-ivshmem` platform (SB08xx are `staticbus-import`'s).

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
    // ---- static event channels (spec §1) ----
    EVTCHN_NO_PROPERTY = "SB0101", Error,
        "event-channel endpoint has no `xen,evtchn` property",
        "`xen,evtchn property should not be empty.` then panic `Could not set up domains evtchn`";
    EVTCHN_SHORT_PROPERTY = "SB0102", Error,
        "`xen,evtchn` is shorter than two cells",
        "`xen,evtchn property value is not valid.` then panic `Could not set up domains evtchn`";
    EVTCHN_EXTRA_CELLS = "SB0103", Warning,
        "`xen,evtchn` has more than two cells",
        "accepted; cells after the second are silently ignored";
    EVTCHN_PEER_NOT_FOUND = "SB0104", Error,
        "the peer phandle of an event-channel endpoint matches no node",
        "`evtchn: could not find remote evtchn phandle` then panic `Could not set up domains evtchn`";
    EVTCHN_NOT_MUTUAL = "SB0105", Error,
        "event-channel endpoints do not point at each other",
        "`xen,evtchn property is not setup correctly.` then panic `Could not set up domains evtchn`";
    EVTCHN_PEER_NOT_ENDPOINT = "SB0106", Error,
        "the peer of an event-channel endpoint is not a `xen,evtchn-v1` node",
        "Xen reads the peer's `xen,evtchn` anyway: usually `xen,evtchn property should not be empty.` and a panic";
    EVTCHN_NO_DOMAIN = "SB0107", Error,
        "event-channel endpoint belongs to no domain (a `/chosen`-level endpoint without dom0)",
        "`evtchn: could not find domains` then panic; as a first end the node is silently ignored";
    EVTCHN_BAD_PLACEMENT = "SB0108", Error,
        "event-channel endpoint is not a direct child of a domain node (or of `/chosen` for dom0)",
        "as the peer of a bound endpoint: `evtchn: could not find domains` then panic `Could not set up domains evtchn` (without dom0); Xen never looks at it as a first end";
    EVTCHN_PORT_ZERO = "SB0109", Error,
        "event-channel port 0 is reserved",
        "first end: `evtchn_bind_interdomain() failure (Error -22)` and a panic; second end: Xen picks an unpredictable free port silently";
    EVTCHN_PORT_RANGE = "SB0110", Error,
        "event-channel port out of range (domU 1..1023, dom0 1..4095)",
        "`evtchn_alloc_unbound() failure (Error -28)` / `evtchn_bind_interdomain() failure (Error -28)` then panic";
    EVTCHN_PORT_DUPLICATE = "SB0111", Error,
        "event-channel port used twice in one domain",
        "`evtchn_alloc_unbound() failure (Error -16)` / `evtchn_bind_interdomain() failure (Error -16)` then panic";
    EVTCHN_PORT_XENSTORE = "SB0112", Error,
        "event-channel port 1 in a domain with xenstore (Xen gives port 1 to xenstore first)",
        "`evtchn_alloc_unbound() failure (Error -16)` then panic";
    EVTCHN_LOOPBACK = "SB0113", Warning,
        "both ends of an event channel are in the same domain",
        "accepted: a loopback channel inside one domain";
    EVTCHN_DISABLED = "SB0114", Warning,
        "static event channels present but the Xen build has CONFIG_STATIC_EVTCHN off",
        "every xen,evtchn-v1 node is silently ignored: Xen boots and binds none of the channels";
    EVTCHN_SELF_PEER = "SB0115", Error,
        "event-channel endpoint names itself as its peer",
        "the bind fails with -EBUSY (`evtchn_bind_interdomain() failure (Error -16)`) then panic";
    EVTCHN_COMPAT_PROSE = "SB0116", Warning,
        "node uses compatible `xen,evtchn` (the documentation's spelling) instead of `xen,evtchn-v1`",
        "the node is silently ignored (Xen's code only matches xen,evtchn-v1): the channel is never bound and the guests find its ports closed";
    EVTCHN_NO_PHANDLE = "SB0117", Error,
        "event-channel endpoint has no phandle, so its peer cannot point at it",
        "the peer's back reference never matches it: `xen,evtchn property is not setup correctly.` then panic `Could not set up domains evtchn`";

    // ---- static shared memory (spec §2) ----
    SHM_DISABLED = "SB0201", Error,
        "static shared memory needs a Xen built with CONFIG_STATIC_SHM",
        "4.17/4.18: the early scan stops at the node, so every later module and node is missing (e.g. `Missing kernel boot module?` then panic `Could not set up domain …`); 4.19+: panic `Early FDT parsing failed (-22)` before the console is up";
    SHM_BAD_PLACEMENT = "SB0202", Error,
        "shared-memory node is not a direct child of a domain node (or of `/chosen` for dom0)",
        "parsed at boot, then accepted silently: no domain maps it (a /chosen-level node without dom0), so its guests find no region";
    SHM_ID_MISSING = "SB0203", Error,
        "shared-memory node has no `xen,shm-id`",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: node … parsing failed, Early FDT parsing failed (-2)); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_ID_EMPTY = "SB0204", Error,
        "`xen,shm-id` is empty",
        "passes the early parse, then a BUG_ON crashes the hypervisor while the domain is built: `Xen BUG at …static-shmem.c`";
    SHM_ID_TOO_LONG = "SB0205", Error,
        "`xen,shm-id` is longer than 15 characters",
        "`fdt: invalid xen,shm-id …, it must be limited to 16 characters` then panic while the host tree is parsed, before the console is up: a build without early printk (Debian's config) prints nothing and never resets";
    SHM_ROLE_INVALID = "SB0206", Error,
        "`role` is neither \"owner\" nor \"borrower\"",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: invalid role property for static shared memory node.); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_MEM_MISSING = "SB0207", Error,
        "shared-memory node has no `xen,shared-mem`",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: node … parsing failed, Early FDT parsing failed (-2)); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_MEM_CELLS = "SB0208", Error,
        "`xen,shared-mem` has the wrong number of cells for the parent's #address-cells/#size-cells",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: invalid xen,shared-mem property.); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_HEAP_FORM_UNSUPPORTED = "SB0209", Error,
        "shared memory without a host address needs Xen 4.19 or later",
        "4.17/4.18: `fdt: host physical address must be chosen by users at the moment.` then panic";
    SHM_HEAP_FORM_DIRECT_MAP = "SB0210", Error,
        "a direct-mapped domain (or dom0) needs host and guest addresses for shared memory",
        "`host and guest physical address must be supplied for direct-mapped domains`; the domain fails to build";
    SHM_UNALIGNED = "SB0211", Error,
        "shared-memory address or size is not 4 KiB aligned",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: physical address … is not suitably aligned. (or guest address, size)); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_SIZE_ZERO = "SB0212", Error,
        "shared-memory size is zero",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: the size for static shared memory region can not be zero); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_OVERFLOW = "SB0213", Error,
        "shared-memory range wraps around the address space",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: static shared memory region … overflow); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_ID_MISMATCH = "SB0214", Error,
        "nodes with the same `xen,shm-id` disagree on size or host address",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: different shared memory region could not share the same shm ID …); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_MIXED_FORMS = "SB0215", Error,
        "nodes with the same `xen,shm-id` mix the host-address and heap forms",
        "host form first: accepted, but the later domain reads its size as its guest address (silent misconfiguration); heap form first, 4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: different shared memory region could not share the same shm ID …); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_SAME_RANGE_OTHER_ID = "SB0216", Error,
        "two different shm ids name the same or overlapping host memory",
        "4.19+: panic while the host tree is parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets (with early printk: fdt: xen,shm-id … does not match for all the nodes using the same region, or Region: … overlapping with bank…); 4.17/4.18 print the message and stop the early scan at the node, so every later node and module is missing";
    SHM_TWO_OWNERS = "SB0217", Error,
        "a shared region has more than one owner",
        "`failed to acquire static memory: -2.` then `Could not set up domain … (rc = -22)`";
    SHM_OWNER_AND_ROLELESS = "SB0218", Error,
        "a shared region has an owner and a roleless (DOMID_IO) node",
        "`shm memory node has already been allocated to a specific owner …` or `failed to acquire static memory`; the domain fails to build";
    SHM_ONLY_BORROWERS = "SB0219", Error,
        "a shared region has only borrowers and no owner",
        "on its own accepted silently: the pages belong to nobody; tearing down a borrower drops references never taken";
    SHM_HOST_NOT_RAM = "SB0220", Error,
        "shared-memory host range is not inside RAM described by /memory",
        "4.17/4.18: invalid physical address; 4.19+: Xen crashes (a Data Abort in unprepare_staticmem_pages) before the console is up: a build without early printk (Debian's) prints nothing and never resets";
    SHM_HOST_RESERVED = "SB0221", Error,
        "shared-memory host range overlaps reserved memory, static memory, a boot module, the DTB or Xen",
        "panic while the host tree is parsed (Region: … overlapping with bank… / mod…), before the console is up: a build without early printk (Debian's) prints nothing and never resets";
    SHM_GUEST_OVERLAP_RAM = "SB0222", Error,
        "shared-memory guest range overlaps the domain's RAM",
        "the mapping replaces that guest RAM: where Xen puts the kernel, panic `Unable to copy the kernel in the hwdom memory` (for any domain); elsewhere accepted silently, and the guest uses the region as RAM";
    SHM_GUEST_OVERLAP_DEVICE = "SB0223", Error,
        "shared-memory guest range overlaps a device or Xen window of the guest",
        "accepted silently: the mapping replaces the GIC, UART, grant-table or magic-page mapping";
    SHM_GUEST_OVERLAP_SHM = "SB0224", Error,
        "two shared regions overlap in one domain's guest address space",
        "accepted silently: the later mapping replaces the earlier one";
    SHM_DIRECT_MAP_MISMATCH = "SB0225", Error,
        "a direct-mapped domain maps shared memory at a guest address different from the host address",
        "4.19+: `physical address … and guest address … are not direct-mapped.`; the domain fails to build";
    SHM_TOO_MANY_REGIONS = "SB0226", Error,
        "too many shared regions for the Xen version's bank tables",
        "4.19+: the early scan fails at the first region that does not fit (its \"Warning: Max number of supported memory regions reached.\" comes before the console) and Xen panics (\"Early FDT parsing failed\") before the console is up: a build without early printk (Debian's) prints nothing and never resets; 4.17/4.18 (regions in the reserved-memory table) ignore the scan's error and miss the nodes after it, or fail at domain build (-ENOMEM)";
    SHM_HEAP_CHUNKS = "SB0227", Error,
        "heap-form regions need more than 32 heap chunks",
        "`Failed to allocate static shared memory from Xen heap`";
    SHM_418_RESERVED_ORDER = "SB0228", Warning,
        "on Xen 4.18 a reserved range parsed before a region shared by several domains makes it overlap itself",
        "`Region: [...) overlapping with bank[…]` then panic (4.18 only)";
    SHM_DUPLICATE_IN_DOMAIN = "SB0229", Error,
        "one domain has two nodes for the same shm id",
        "accepted silently: the region is mapped twice into the domain, extra references are taken and the second mapping replaces the first";

    // ---- xen,enhanced (spec §3) ----
    ENHANCED_NEEDS_DOM0 = "SB0301", Error,
        "`xen,enhanced = \"enabled\"` (or empty) needs dom0 on Xen 4.17–4.20",
        "panic `At the moment, Xenstore support requires dom0 to be present`";
    ENHANCED_UNKNOWN = "SB0302", Warning,
        "unknown `xen,enhanced` value",
        "silently ignored: the guest gets no /hypervisor node and no xenstore";
    ENHANCED_RECOMMENDED = "SB0303", Note,
        "a domain with static event channels has no `xen,enhanced`",
        "accepted, and bare-metal guests use the channel (they need no /hypervisor node); a Linux guest cannot find Xen (no /hypervisor node) and cannot use the channel (SB0304)";
    ENHANCED_LINUX_MISSING = "SB0304", Error,
        "a Linux domain has no `xen,enhanced`",
        "Linux finds no Xen (no `/hypervisor` node): no `/sys/hypervisor`, no event channels, no `/dev/xen/evtchn`; its staticbus programs fail with `Linux does not see Xen`";

    // ---- domains, modules, memory (spec §4) ----
    DOMAIN_NAME_DUPLICATE = "SB0401", Error,
        "two domains have the same name",
        "device-tree source: the nodes are merged into one domain; Xen looks up command lines by name";
    DOMAIN_NAME_TOO_LONG = "SB0402", Error,
        "domain node name is longer than 41 characters",
        "accepted by release builds (debug builds assert), but the module command lines are looked up by the truncated name and not found: the kernel starts with an empty command line";
    DOMAIN_MEMORY = "SB0403", Error,
        "domain `memory` is missing, not 2 cells (KiB), or zero",
        "`Error building DomU: cannot read \"memory\" property` then panic `Could not set up domain …`";
    DOMAIN_CPUS = "SB0404", Error,
        "domain `cpus` is missing or out of range",
        "`Missing property 'cpus' for domain …` or `Error creating domain … (rc = -22)` then panic";
    DOMAIN_NO_KERNEL = "SB0405", Error,
        "domain has no kernel module",
        "`Missing kernel boot module?` then panic";
    MODULE_NOT_MULTIBOOT = "SB0406", Error,
        "module node does not list `multiboot,module` (or has no known kind)",
        "the early scan never registers the blob: `Missing kernel boot module?` then panic";
    MODULE_REG = "SB0407", Error,
        "module `reg` is missing or has the wrong number of cells",
        "no `reg` or too few cells: panic `node … missing `reg' property` / `fdt: node `…': `reg` property length is too short` while the boot modules are parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets; extra cells: only the first pair is read";
    MODULE_OVERLAP = "SB0408", Error,
        "boot module overlaps another module, reserved memory, shared memory, the DTB or Xen",
        "the boot loader writes one image over the other and Xen reads a kernel from the other image's bytes: `Could not set up domain …` then panic (or the guest runs the wrong code)";
    MODULE_NOT_RAM = "SB0409", Error,
        "boot module lies outside RAM",
        "the boot loader cannot place it; Xen finds no kernel image at the address: `Could not set up domain …` then panic";
    BOOTARGS_TOO_LONG = "SB0410", Error,
        "module `bootargs` longer than 1024 bytes",
        "panic `module … command line too long` while the boot modules are parsed, before the console is up: a build without early printk (Debian's) prints nothing and never resets";
    TOO_MANY_MODULES = "SB0411", Error,
        "more than 30 boot modules (Xen keeps 32, two of them for its own image and the host DTB)",
        "later modules are dropped while the tree is parsed (Ignoring … boot module … (too many), printed before the console is up); a domain whose kernel was dropped: `Missing kernel boot module?` then panic `Could not set up domain …`";
    STATIC_MEM_SIZE = "SB0412", Error,
        "`memory` does not equal the sum of the `xen,static-mem` banks",
        "`Size of \"memory\" property doesn't match up with the sum-up of \"xen,static-mem\"` then panic";
    DIRECT_MAP_WITHOUT_STATIC_MEM = "SB0413", Error,
        "`direct-map` without `xen,static-mem`",
        "`direct-map is not valid for domain … without static allocation.` then panic";
    STATIC_MEM_DISABLED = "SB0414", Error,
        "`xen,static-mem` needs a Xen built with CONFIG_STATIC_MEMORY",
        "`Device tree generation failed (-2).` then panic `Could not set up domain …` (Debian's 4.17)";
    NO_DOMAINS = "SB0415", Error,
        "no domain has a kernel (neither dom0 nor any domU)",
        "Xen builds dom0 without a kernel: `Missing kernel boot module?` then panic `Could not set up DOM0 guest OS`";
    MEMORY_EXCEEDS_RAM = "SB0416", Warning,
        "domains ask for more memory than the platform has",
        "panic `Failed to allocate requested domain memory. …KB unallocated` while the domain is built";
    STATIC_MEM_OVERLAP = "SB0417", Error,
        "`xen,static-mem` bank overlaps another reserved range, module or region, or lies outside RAM",
        "outside RAM or over another reserved range: Xen fails while the host tree is parsed (Region: … overlapping with …), before the console is up: a build without early printk (Debian's) prints nothing and never resets; memory Xen cannot take for the domain: `Failed to allocate requested static memory` then panic";
    NODE_NAME_INVALID = "SB0418", Error,
        "invalid device-tree node name",
        "dtc rejects the name, or Xen cannot match the node";
    VCPU_AFFINITY_IGNORED = "SB0419", Warning,
        "`xen,vcpu` affinity nodes need Xen 4.21",
        "4.17–4.20 ignore the node silently: every vCPU keeps the default affinity (any pCPU)";
    STATIC_HEAP_INVALID = "SB0420", Error,
        "`xen,static-heap` bank outside RAM or not 64 KiB aligned",
        "Xen hands the banks to its boot allocator unchecked: outside RAM it crashes before the console is up (a build without early printk, Debian's, prints nothing and never resets); booting.txt requires 64 KiB alignment";
    FIRST_BANK_TOO_SMALL = "SB0421", Error,
        "kernel, DTB and initrd do not fit in the domain's first memory bank",
        "`Not enough memory in the first bank for the kernel+dtb+initrd` or `Unable to find suitable location for dtb+initrd` then panic";
    MODULE_OUTSIDE_DOMAIN = "SB0422", Error,
        "boot module inside a /chosen node that is not a domain node",
        "the early scan registers it as one of dom0's modules: a kernel there becomes dom0's kernel and Xen boots a dom0 nobody declared";
    GRANT_FRAMES_OVERFLOW = "SB0423", Error,
        "`max_grant_frames` or `max_maptrack_frames` above 2^31-1",
        "4.18+: panic `max_grant_frames (…) overflow` / `max_maptrack_frames (…) overflow` while the domain is created; 4.17 ignores both properties";
    SVE_DISABLED = "SB0424", Error,
        "`sve` needs a Xen built with CONFIG_ARM64_SVE",
        "4.18+: panic `'sve' property found, but CONFIG_ARM64_SVE not selected` (Debian's builds have no CONFIG_ARM64_SVE, which needs CONFIG_UNSUPPORTED); 4.17 ignores the property";

    // ---- the system description (TOML) ----
    DESC_SYNTAX = "SB0501", Error,
        "the system description is not valid TOML or does not match the schema",
        "nothing is generated";
    DESC_UNKNOWN_DOMAIN = "SB0502", Error,
        "reference to a domain that is not declared",
        "nothing is generated";
    DESC_BAD_VALUE = "SB0503", Error,
        "a value in the system description is out of range or malformed",
        "nothing is generated";
    CHANNEL_DUPLICATE = "SB0504", Error,
        "two channels have the same name",
        "guests could not tell the channels apart";
    CHANNEL_ARITY = "SB0505", Error,
        "the channel's protocol does not allow this many writers or readers",
        "the protocol would be used outside its guarantees (e.g. two producers on one queue corrupt it)";
    CHANNEL_SELF = "SB0506", Error,
        "a channel connects a domain to itself",
        "nothing is generated";
    CHANNEL_SIZE = "SB0507", Error,
        "channel size is zero, not a multiple of 4 KiB, or too small for the protocol with its declared parameters",
        "Xen requires 4 KiB-aligned sizes (`fdt: size … is not suitably aligned`); a region too small for its protocol makes the endpoints fail to attach";
    DESC_MODULE_SIZE = "SB0508", Error,
        "a module has neither a readable file nor an explicit size",
        "the boot loader cannot know how much to load";
    DESC_DUPLICATE_DOM0 = "SB0509", Error,
        "more than one hardware domain",
        "nothing is generated";
    VIRTIO_DUPLICATE = "SB0510", Error,
        "two virtio devices, or a virtio device and a channel, have the same name",
        "guests could not tell them apart";
    VIRTIO_DEVICE = "SB0511", Error,
        "unknown virtio device type, or a queue count the type does not have",
        "the frontend's driver would not find the queues it expects (virtio-drivers fails the queue setup)";
    VIRTIO_SIZE = "SB0512", Error,
        "a virtio region too small for its queues and buffers, not a multiple of 4 KiB, or a queue size that is not a power of two up to 32768",
        "the frontend runs out of DMA pages or the device side refuses the queue (DEVICE_NEEDS_RESET at start)";
    VIRTIO_BACKEND = "SB0513", Error,
        "a virtio device's `serve` is not exactly one of a built-in device or a vhost-user program, names a built-in device staticbus does not have, or its backend is its frontend",
        "nothing is generated";
    EMULATE_LIMIT = "SB0514", Error,
        "an emulator resource limit (`emulate = { limits = { … } }`) is out of range",
        "not a Xen setting: `staticbus run` could not start the domain's program under it (too little memory, processes or descriptors to start) or the kernel refuses it (cpu.max)";

    // ---- allocation ----
    ALLOC_NO_POOL = "SB0601", Error,
        "a shared region needs a host address but there is no shm pool and the target cannot allocate from the heap",
        "nothing is generated";
    ALLOC_POOL_FULL = "SB0602", Error,
        "the shm pool has no free range large enough",
        "nothing is generated";
    ALLOC_GUEST_FULL = "SB0603", Error,
        "no free guest-physical range for a shared region",
        "nothing is generated";
    ALLOC_PORTS_FULL = "SB0604", Error,
        "a domain has run out of event-channel ports",
        "nothing is generated";
    ALLOC_POOL_INVALID = "SB0605", Error,
        "the shm pool is not inside RAM, overlaps reserved memory, or is not 4 KiB aligned",
        "regions allocated from it would fail as SB0220/SB0221";
    ALLOC_NO_MODULE_SPACE = "SB0606", Error,
        "no free RAM range to place a boot module",
        "nothing is generated";

    // ---- input / output ----
    IO_ERROR = "SB0701", Error,
        "a file could not be read or written",
        "nothing is generated";
    INPUT_KIND = "SB0702", Error,
        "the input file kind is not recognised",
        "nothing is generated";
    BASE_TREE = "SB0703", Error,
        "the base device tree cannot be used",
        "nothing is generated";

    // ---- hypervisor = "qemu-ivshmem" (docs/adr/0005-ivshmem-platform.md) ----
    IVSHMEM_REGION_OUTSIDE = "SB0901", Error,
        "a region lies outside the ivshmem shared object (BAR2 minus its control page)",
        "the VM refuses the region at start (`region …: unusable`) and the program fails opening its channel";
    IVSHMEM_REGION_SPLIT = "SB0902", Error,
        "a region has different guest addresses in its members, but the ivshmem shared object is one",
        "each VM would see a different window of the object: the peers read and write each other's unrelated bytes";
    IVSHMEM_PORT_NOT_VECTOR = "SB0903", Error,
        "an event-channel port is not a doorbell vector (1..64)",
        "the device has no such vector (or vector 0 is the server's leave notice): the doorbell is dropped and the waiter sleeps for good";
    IVSHMEM_REGION_OVERLAP = "SB0904", Error,
        "two regions overlap in the ivshmem shared object",
        "every VM maps the one object, so the two channels share bytes: each protocol reads the other's writes as a hostile peer's and fails or loses data";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_sorted_and_well_formed() {
        let ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted, "codes must be unique and in numeric order");
        for c in ALL {
            assert!(c.id.len() == 6 && c.id.starts_with("SB"), "{}", c.id);
            assert!(c.id[2..].chars().all(|ch| ch.is_ascii_digit()), "{}", c.id);
            assert!(!c.title.is_empty() && !c.xen.is_empty(), "{}", c.id);
        }
    }
}
