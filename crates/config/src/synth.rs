//! Synthetic system descriptions for benchmarks and stress tests.

use std::fmt::Write;

/// A description with `domains` domUs and `channels` queue channels spread evenly: channel
/// `k` goes from domain `k mod domains` to a different domain. Module addresses, ports, shm
/// ids, host and guest ranges are all left to the allocator. Past 32 regions the system
/// exceeds Xen's shared-memory bank tables, which the check reports (SB0226).
pub fn description(domains: usize, channels: usize) -> String {
    let mut s = String::new();
    let ram_gib = (domains * 18).div_ceil(1024) + 1;
    let pool_mib = (channels * 4).div_ceil(1024) + 1;
    let _ = write!(
        s,
        "[system]\nname = \"synth-{domains}-{channels}\"\n\n\
         [target]\nxen = \"4.20\"\nstatic-shm = true\ngic = \"v3\"\n\n\
         [platform]\nram = [{{ base = 0x4000_0000, size = \"{ram_gib}GiB\" }}]\n\
         shm-pool = {{ base = 0x4000_0000, size = \"{pool_mib}MiB\" }}\n\n"
    );
    // Put the pool at the top of RAM, clear of the modules placed from the bottom.
    let top = 0x4000_0000u64 + (ram_gib as u64) * (1 << 30) - (pool_mib as u64) * (1 << 20);
    s = s.replace(
        "shm-pool = { base = 0x4000_0000",
        &format!("shm-pool = {{ base = {top:#x}"),
    );
    for d in 0..domains {
        let _ = write!(
            s,
            "[[domain]]\nname = \"d{d}\"\nmemory = \"16MiB\"\nkernel = {{ size = \"2MiB\" }}\n\n"
        );
    }
    for k in 0..channels {
        let from = k % domains;
        let to = (from + 1 + (k / domains) % (domains - 1).max(1)) % domains;
        let _ = write!(
            s,
            "[[channel]]\nname = \"c{k}\"\nprotocol = \"queue\"\nfrom = \"d{from}\"\nto = \"d{to}\"\nsize = \"4KiB\"\n\n"
        );
    }
    s
}
