//! Static shared memory: one backing object per region (a sealed Linux memfd by default),
//! with Xen's ownership and reference counting (spec §2.4–2.6).
//!
//! # Ownership, as Xen builds it
//!
//! Domains are processed in creation order (dom0 first, then the domUs in DT order), and
//! each domain's nodes in DT order (`process_shm`):
//!
//! * `role = "owner"`: the region is assigned to this domain. If it is already assigned
//!   to anyone (a second owner, or `DOMID_IO` because a roleless node came first), Xen
//!   fails with `failed to acquire static memory` and panics: [`ShmError::Ownership`].
//! * no role: the owner is `DOMID_IO`. If the region already belongs to a specific domain,
//!   Xen prints `shm memory node has already been allocated to a specific owner` and
//!   fails: [`ShmError::Ownership`].
//! * `role = "borrower"`: nothing is assigned.
//!
//! # References (§2.6)
//!
//! Every roleless or borrower node holds one reference (Xen pre-charges them to the owner
//! and the borrower's P2M teardown puts them back); the owner holds the allocation
//! reference. `DOMID_IO` is never destroyed, so a roleless region lives as long as the
//! [`Regions`] (the hypervisor). A region with an explicit owner is freed, and its backing
//! dropped, when the owner **and** every borrower have been destroyed; until then borrowers
//! keep their access after the owner is gone.
//!
//! A region whose nodes are all `borrower` (no owner at all) is accepted by Xen without
//! error although nobody owns the pages (the validator rejects it); the emulator keeps its
//! memory while at least one borrower holds it.
//!
//! # Beyond Xen
//!
//! [`Regions::regrant`] (used by [`crate::Hypervisor::restart`]) gives a re-created domain
//! its regions again: the same memory, contents kept, if the region is still alive; a fresh
//! zero-filled backing if it had been freed (a restarted owner whose borrowers are all
//! gone too). Xen has no way to re-create or re-share a region after boot.

use crate::spec::{BootSpec, ShmRole};
use crate::DomId;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{MemfdFlags, SealFlags};
use staticbus_abi::dt::MAX_SHM_ID_LENGTH;
use staticbus_abi::PAGE_SIZE;
use std::fmt;
use std::io;
use std::sync::Arc;

/// Memory backing one shared region.
pub trait Backing: Send + Sync + fmt::Debug {
    /// The file descriptor a domain process maps (`mmap(MAP_SHARED)` of the region size),
    /// if this backing has one. Test backings may have none.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

/// A Linux memfd of the region's size, sealed against shrinking and growing so that no
/// domain process holding it can truncate it under its peers (which would make their
/// accesses fault with `SIGBUS`).
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
    size: u64,
}

impl Memfd {
    /// `memfd_create("staticbus-shm:<id>", MFD_CLOEXEC | MFD_ALLOW_SEALING)`,
    /// `ftruncate(size)`, then seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`. The
    /// memory is zero-filled and only allocated when touched.
    pub fn create(id: &str, size: u64) -> io::Result<Memfd> {
        let name = format!("staticbus-shm:{id}");
        let fd = rustix::fs::memfd_create(
            name.as_str(),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, size)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Ok(Memfd { fd, size })
    }

    /// The region size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Backing for Memfd {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

/// Creates the backing of a region from its id and size.
pub type Factory = Box<dyn Fn(&str, u64) -> io::Result<Arc<dyn Backing>> + Send + Sync>;

/// The default factory: [`Memfd::create`].
pub fn memfd_factory() -> Factory {
    Box::new(|id, size| Ok(Arc::new(Memfd::create(id, size)?) as Arc<dyn Backing>))
}

/// Who owns a region's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A domain (`role = "owner"`).
    Domain(DomId),
    /// `DOMID_IO` (roleless nodes): never destroyed.
    DomIo,
    /// Nobody: every node is `borrower` (accepted by Xen, rejected by the validator).
    Nobody,
}

/// One domain's view of a region.
#[derive(Clone, Debug)]
struct Node {
    dom: DomId,
    guest: u64,
    role: Option<ShmRole>,
    /// The domain currently has it mapped (the domain exists).
    mapped: bool,
}

impl Node {
    /// Roleless and borrower nodes hold a page reference each; the owner's node does not
    /// (the owner holds the allocation reference instead).
    fn holds_ref(&self) -> bool {
        self.mapped && self.role != Some(ShmRole::Owner)
    }
}

#[derive(Debug)]
struct Region {
    id: String,
    size: u64,
    host: Option<u64>,
    owner: Owner,
    /// The explicit owner exists and holds the allocation reference.
    owner_ref: bool,
    nodes: Vec<Node>,
    /// `None` once freed.
    backing: Option<Arc<dyn Backing>>,
    /// How many times a backing was created for the region (1 after boot).
    generation: u32,
}

impl Region {
    fn borrower_refs(&self) -> usize {
        self.nodes.iter().filter(|n| n.holds_ref()).count()
    }

    fn referenced(&self) -> bool {
        self.owner == Owner::DomIo || self.owner_ref || self.borrower_refs() > 0
    }
}

/// A region's reference state ([`Regions::refs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionRefs {
    /// Who owns the pages.
    pub owner: Owner,
    /// The explicit owner still exists (always `false` for `DOMID_IO` and nobody).
    pub owner_ref: bool,
    /// References held by roleless and borrower nodes of existing domains.
    pub borrower_refs: usize,
    /// The memory is allocated (not freed).
    pub live: bool,
    /// Backings created so far: 1 after boot, more if a restart had to re-create a freed
    /// region.
    pub generation: u32,
}

/// What a domain is granted of a region: pass `backing`'s fd to the domain process and
/// map it at `guest` (its size is `size`). Holding a grant keeps the backing object open:
/// drop grants once the fd has been handed over, or freeing a region will not close it.
#[derive(Clone, Debug)]
pub struct ShmGrant {
    /// `xen,shm-id`.
    pub id: String,
    /// Guest-physical address in this domain.
    pub guest: u64,
    /// Size in bytes.
    pub size: u64,
    /// This domain's role (`None`: roleless, owned by `DOMID_IO`).
    pub role: Option<ShmRole>,
    /// The memory.
    pub backing: Arc<dyn Backing>,
}

impl ShmGrant {
    /// The backing's file descriptor, if it has one.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.backing.fd()
    }
}

/// Why the regions of a system cannot be set up (Xen would panic at boot).
#[derive(Debug)]
pub enum ShmError {
    /// The system has shm nodes but its Xen is built without `CONFIG_STATIC_SHM`: Xen
    /// panics with `Early FDT parsing failed (-22)`.
    Disabled,
    /// A node names a domain index that does not exist.
    NoDomain {
        /// Index of the node in `System::shm`.
        node: usize,
    },
    /// `xen,shm-id` empty or longer than 15 characters.
    InvalidId {
        /// The id.
        id: String,
    },
    /// Size zero, or an address or size not 4 KiB aligned, or `host + size` overflows.
    Invalid {
        /// The id.
        id: String,
        /// What is wrong.
        what: &'static str,
    },
    /// Nodes of one id disagree on size or host address (Xen: `different shared memory
    /// region could not share the same shm ID`).
    Mismatch {
        /// The id.
        id: String,
    },
    /// Two ids name overlapping host ranges.
    Overlap {
        /// One id.
        a: String,
        /// The other.
        b: String,
    },
    /// A second owner, or an owner mixed with roleless nodes.
    Ownership {
        /// The id.
        id: String,
        /// The domain whose node failed.
        dom: DomId,
        /// Xen's message.
        what: &'static str,
    },
    /// The backing could not be created.
    Io {
        /// The id.
        id: String,
        /// The error.
        err: io::Error,
    },
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::Disabled => f.write_str(
                "static shared memory needs a Xen built with CONFIG_STATIC_SHM (Xen panics: Early FDT parsing failed (-22))",
            ),
            ShmError::NoDomain { node } => write!(f, "shm node {node} names no domain"),
            ShmError::InvalidId { id } => write!(f, "invalid xen,shm-id {id:?}: 1 to 15 characters"),
            ShmError::Invalid { id, what } => write!(f, "shm region {id}: {what}"),
            ShmError::Mismatch { id } => write!(
                f,
                "different shared memory region could not share the same shm ID {id}"
            ),
            ShmError::Overlap { a, b } => write!(f, "shm regions {a} and {b} overlap in host memory"),
            ShmError::Ownership { id, dom, what } => write!(f, "d{dom}: shm region {id}: {what}"),
            ShmError::Io { id, err } => write!(f, "shm region {id}: cannot create its memory: {err}"),
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShmError::Io { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// Every static shared region of a system, with its backing and references.
pub struct Regions {
    regions: Vec<Region>,
    factory: Factory,
}

impl fmt::Debug for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Regions")
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            regions: Vec::new(),
            factory: memfd_factory(),
        }
    }
}

/// True if `[a, a+asz)` and `[b, b+bsz)` share a byte (empty ranges overlap nothing).
fn overlaps(a: u64, asz: u64, b: u64, bsz: u64) -> bool {
    asz != 0 && bsz != 0 && a < b.saturating_add(bsz) && b < a.saturating_add(asz)
}

fn aligned(x: u64) -> bool {
    x % PAGE_SIZE == 0
}

impl Regions {
    /// The regions of `sys`, each backed by a [`Memfd`].
    pub fn from_spec(sys: &BootSpec) -> Result<Regions, ShmError> {
        Regions::from_spec_with(sys, memfd_factory())
    }

    /// The regions of `sys`, with backings made by `factory` (tests use backings without
    /// file descriptors to watch the reference counting).
    pub fn from_spec_with(sys: &BootSpec, factory: Factory) -> Result<Regions, ShmError> {
        if !sys.shm.is_empty() && !sys.static_shm {
            return Err(ShmError::Disabled);
        }
        let mut regions: Vec<Region> = Vec::new();
        // Early parse: per node, then per id.
        for (i, n) in sys.shm.iter().enumerate() {
            let dom = sys
                .domain(n.domid)
                .ok_or(ShmError::NoDomain { node: i })?
                .domid;
            if n.id.is_empty() || n.id.len() >= MAX_SHM_ID_LENGTH || n.id.contains('\0') {
                return Err(ShmError::InvalidId { id: n.id.clone() });
            }
            let bad = |what| ShmError::Invalid {
                id: n.id.clone(),
                what,
            };
            if n.size == 0 {
                return Err(bad("the size can not be zero"));
            }
            if !aligned(n.size) {
                return Err(bad("size is not suitably aligned"));
            }
            if !aligned(n.guest) || n.guest.checked_add(n.size).is_none() {
                return Err(bad("guest address is not suitably aligned"));
            }
            if let Some(h) = n.host {
                if !aligned(h) {
                    return Err(bad("physical address is not suitably aligned"));
                }
                if h.checked_add(n.size).is_none() {
                    return Err(bad("region overflows"));
                }
            }
            let node = Node {
                dom,
                guest: n.guest,
                role: n.role,
                mapped: true,
            };
            match regions.iter_mut().find(|r| r.id == n.id) {
                Some(r) => {
                    if r.size != n.size || r.host != n.host {
                        return Err(ShmError::Mismatch { id: n.id.clone() });
                    }
                    r.nodes.push(node);
                }
                None => regions.push(Region {
                    id: n.id.clone(),
                    size: n.size,
                    host: n.host,
                    owner: Owner::Nobody,
                    owner_ref: false,
                    nodes: vec![node],
                    backing: None,
                    generation: 0,
                }),
            }
        }
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if let (Some(ha), Some(hb)) = (a.host, b.host) {
                    if overlaps(ha, a.size, hb, b.size) {
                        return Err(ShmError::Overlap {
                            a: a.id.clone(),
                            b: b.id.clone(),
                        });
                    }
                }
            }
        }
        // Domain build: ownership, in domain creation order.
        for d in &sys.domains {
            for n in sys.shm.iter().filter(|n| n.domid == d.domid) {
                let r = regions
                    .iter_mut()
                    .find(|r| r.id == n.id)
                    .expect("every id was recorded above");
                let fail = |what| ShmError::Ownership {
                    id: n.id.clone(),
                    dom: d.domid,
                    what,
                };
                match n.role {
                    Some(ShmRole::Owner) => {
                        if r.owner != Owner::Nobody {
                            return Err(fail("failed to acquire static memory"));
                        }
                        r.owner = Owner::Domain(d.domid);
                        r.owner_ref = true;
                    }
                    None => {
                        match r.owner {
                            Owner::Domain(_) => return Err(fail(
                                "shm memory node has already been allocated to a specific owner",
                            )),
                            Owner::DomIo => {}
                            Owner::Nobody => r.owner = Owner::DomIo,
                        }
                    }
                    Some(ShmRole::Borrower) => {}
                }
            }
        }
        for r in &mut regions {
            r.backing = Some((factory)(&r.id, r.size).map_err(|err| ShmError::Io {
                id: r.id.clone(),
                err,
            })?);
            r.generation = 1;
        }
        Ok(Regions { regions, factory })
    }

    /// Region ids, in order of first appearance.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(|r| r.id.as_str())
    }

    /// True if there is no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The region's size.
    pub fn size(&self, id: &str) -> Option<u64> {
        self.find(id).map(|r| r.size)
    }

    fn find(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id == id)
    }

    /// The reference state of a region.
    pub fn refs(&self, id: &str) -> Option<RegionRefs> {
        self.find(id).map(|r| RegionRefs {
            owner: r.owner,
            owner_ref: r.owner_ref,
            borrower_refs: r.borrower_refs(),
            live: r.backing.is_some(),
            generation: r.generation,
        })
    }

    /// The backing of a live region (whatever domain maps it).
    pub fn backing(&self, id: &str) -> Option<Arc<dyn Backing>> {
        self.find(id).and_then(|r| r.backing.clone())
    }

    /// The regions `dom` has mapped, as `(shm id, guest address, size, fd)`: only those its
    /// own nodes list (nothing else is reachable), and only while the domain exists.
    /// Backings without a file descriptor are left out.
    pub fn handles_for(&self, dom: DomId) -> Vec<(&str, u64, u64, BorrowedFd<'_>)> {
        let mut v = Vec::new();
        for r in &self.regions {
            let Some(b) = &r.backing else { continue };
            for n in r.nodes.iter().filter(|n| n.dom == dom && n.mapped) {
                if let Some(fd) = b.fd() {
                    v.push((r.id.as_str(), n.guest, r.size, fd));
                }
            }
        }
        v
    }

    /// The regions `dom` has mapped, as owned grants (one per node of the domain).
    pub fn grants_for(&self, dom: DomId) -> Vec<ShmGrant> {
        let mut v = Vec::new();
        for r in &self.regions {
            let Some(b) = &r.backing else { continue };
            for n in r.nodes.iter().filter(|n| n.dom == dom && n.mapped) {
                v.push(ShmGrant {
                    id: r.id.clone(),
                    guest: n.guest,
                    size: r.size,
                    role: n.role,
                    backing: b.clone(),
                });
            }
        }
        v
    }

    /// Domain destroy: `dom`'s mappings put their references back, an owner drops its
    /// allocation reference, and every region nobody references any more is freed.
    pub fn release(&mut self, dom: DomId) {
        for r in &mut self.regions {
            let mut touched = false;
            for n in r.nodes.iter_mut().filter(|n| n.dom == dom) {
                n.mapped = false;
                touched = true;
            }
            if r.owner == Owner::Domain(dom) {
                r.owner_ref = false;
                touched = true;
            }
            if touched && !r.referenced() {
                r.backing = None;
            }
        }
    }

    /// Beyond Xen: a re-created `dom` maps its regions again (same memory if the region is
    /// alive, fresh zero-filled memory if it had been freed) and an owner takes its
    /// allocation reference back.
    pub fn regrant(&mut self, dom: DomId) -> Result<(), ShmError> {
        for r in &mut self.regions {
            if !r.nodes.iter().any(|n| n.dom == dom) {
                continue;
            }
            if r.backing.is_none() {
                r.backing = Some((self.factory)(&r.id, r.size).map_err(|err| ShmError::Io {
                    id: r.id.clone(),
                    err,
                })?);
                r.generation += 1;
            }
            for n in r.nodes.iter_mut().filter(|n| n.dom == dom) {
                n.mapped = true;
            }
            if r.owner == Owner::Domain(dom) {
                r.owner_ref = true;
            }
        }
        Ok(())
    }

    /// Checks the reference state against the set of existing domains: mappings and
    /// owner references exactly for existing domains, memory live exactly when referenced.
    pub fn check(&self, exists: impl Fn(DomId) -> bool) -> Result<(), String> {
        for r in &self.regions {
            for n in &r.nodes {
                if n.mapped != exists(n.dom) {
                    return Err(format!("region {}: d{} mapped={}", r.id, n.dom, n.mapped));
                }
            }
            if let Owner::Domain(o) = r.owner {
                if r.owner_ref != exists(o) {
                    return Err(format!("region {}: owner d{o} ref={}", r.id, r.owner_ref));
                }
            } else if r.owner_ref {
                return Err(format!("region {}: owner ref without an owner", r.id));
            }
            if r.backing.is_some() != r.referenced() {
                return Err(format!(
                    "region {}: live={} but referenced={}",
                    r.id,
                    r.backing.is_some(),
                    r.referenced()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BootDomain, BootShm};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backing without fd whose drops are counted.
    #[derive(Debug)]
    struct Fake(Arc<AtomicUsize>);
    impl Backing for Fake {
        fn fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
    }
    impl Drop for Fake {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Four domUs (domids 1–4) and one 4 KiB node per `(domain index, id, role)`.
    fn sys(nodes: &[(usize, &str, Option<ShmRole>)]) -> BootSpec {
        let mut s = BootSpec {
            static_shm: true,
            ..BootSpec::default()
        };
        for i in 0..4u16 {
            s.domains.push(BootDomain {
                domid: i + 1,
                name: format!("d{}", i + 1),
                dom0: false,
                xenstore: false,
                max_port: 1023,
            });
        }
        for (k, (d, id, role)) in nodes.iter().enumerate() {
            s.shm.push(BootShm {
                domid: *d as u16 + 1,
                id: id.to_string(),
                host: None,
                guest: 0x800_0000 + 0x10_0000 * k as u64,
                size: 0x1000,
                role: *role,
            });
        }
        s
    }

    fn fake(drops: &Arc<AtomicUsize>) -> Factory {
        let d = drops.clone();
        Box::new(move |_, _| Ok(Arc::new(Fake(d.clone())) as Arc<dyn Backing>))
    }

    const O: Option<ShmRole> = Some(ShmRole::Owner);
    const B: Option<ShmRole> = Some(ShmRole::Borrower);

    #[test]
    fn owner_gone_borrowers_keep_it_last_one_frees_it() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r =
            Regions::from_spec_with(&sys(&[(0, "r", O), (1, "r", B), (2, "r", B)]), fake(&drops))
                .unwrap();
        let refs = r.refs("r").unwrap();
        assert_eq!(refs.owner, Owner::Domain(1));
        assert!(refs.owner_ref && refs.live);
        assert_eq!(refs.borrower_refs, 2);
        r.release(1);
        assert!(r.refs("r").unwrap().live);
        assert_eq!(r.grants_for(2).len(), 1, "a borrower keeps access");
        assert!(r.grants_for(1).is_empty());
        r.release(2);
        assert!(r.refs("r").unwrap().live);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        r.release(3);
        let refs = r.refs("r").unwrap();
        assert!(!refs.live && !refs.owner_ref && refs.borrower_refs == 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the backing is dropped");
        r.check(|_| false).unwrap();
    }

    #[test]
    fn borrowers_gone_owner_keeps_it() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r =
            Regions::from_spec_with(&sys(&[(0, "r", O), (1, "r", B)]), fake(&drops)).unwrap();
        r.release(2);
        assert!(r.refs("r").unwrap().live);
        r.release(1);
        assert!(!r.refs("r").unwrap().live);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dom_io_regions_live_until_the_regions_are_dropped() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r = Regions::from_spec_with(
            &sys(&[(0, "r", None), (1, "r", None), (2, "r", B)]),
            fake(&drops),
        )
        .unwrap();
        assert_eq!(r.refs("r").unwrap().owner, Owner::DomIo);
        assert_eq!(r.refs("r").unwrap().borrower_refs, 3);
        for d in 1..=3 {
            r.release(d);
        }
        let refs = r.refs("r").unwrap();
        assert!(refs.live);
        assert_eq!(refs.borrower_refs, 0);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(r);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn regrant_keeps_live_memory_and_recreates_freed_memory() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r =
            Regions::from_spec_with(&sys(&[(0, "r", O), (1, "r", B)]), fake(&drops)).unwrap();
        let before = r.backing("r").unwrap();
        r.release(1);
        r.regrant(1).unwrap();
        assert!(
            Arc::ptr_eq(&before, &r.backing("r").unwrap()),
            "same memory"
        );
        assert_eq!(r.refs("r").unwrap().generation, 1);
        drop(before);
        r.release(1);
        r.release(2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        r.regrant(2).unwrap();
        let refs = r.refs("r").unwrap();
        assert!(refs.live && !refs.owner_ref);
        assert_eq!(refs.generation, 2);
        r.check(|d| d == 2).unwrap();
    }

    #[test]
    fn isolation_only_own_nodes() {
        let drops = Arc::new(AtomicUsize::new(0));
        let r = Regions::from_spec_with(
            &sys(&[(0, "a", None), (1, "a", None), (1, "b", O), (2, "b", B)]),
            fake(&drops),
        )
        .unwrap();
        let ids = |d| {
            r.grants_for(d)
                .into_iter()
                .map(|g| g.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ["a"]);
        assert_eq!(ids(2), ["a", "b"]);
        assert_eq!(ids(3), ["b"]);
        assert!(ids(4).is_empty());
        assert!(ids(9).is_empty());
    }

    #[test]
    fn ownership_conflicts_fail_like_xen() {
        let drops = Arc::new(AtomicUsize::new(0));
        let err = |nodes: &[(usize, &str, Option<ShmRole>)]| {
            Regions::from_spec_with(&sys(nodes), fake(&drops)).unwrap_err()
        };
        match err(&[(0, "r", O), (1, "r", O)]) {
            ShmError::Ownership { dom: 2, what, .. } => {
                assert_eq!(what, "failed to acquire static memory")
            }
            e => panic!("{e:?}"),
        }
        match err(&[(0, "r", O), (1, "r", None)]) {
            ShmError::Ownership { dom: 2, what, .. } => assert!(what.contains("specific owner")),
            e => panic!("{e:?}"),
        }
        // Roleless first (DOMID_IO takes it), then an owner: the owner fails.
        match err(&[(0, "r", None), (1, "r", O)]) {
            ShmError::Ownership { dom: 2, what, .. } => {
                assert_eq!(what, "failed to acquire static memory")
            }
            e => panic!("{e:?}"),
        }
        // Domain order, not node order, decides who fails.
        match err(&[(1, "r", None), (0, "r", O)]) {
            ShmError::Ownership { dom: 2, .. } => {}
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn only_borrowers_is_accepted_and_lives_while_borrowed() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut r =
            Regions::from_spec_with(&sys(&[(0, "r", B), (1, "r", B)]), fake(&drops)).unwrap();
        assert_eq!(r.refs("r").unwrap().owner, Owner::Nobody);
        r.release(1);
        assert!(r.refs("r").unwrap().live);
        r.release(2);
        assert!(!r.refs("r").unwrap().live);
    }

    #[test]
    fn parse_rules() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut s = sys(&[(0, "r", None), (1, "r", None)]);
        s.shm[1].size = 0x2000;
        assert!(matches!(
            Regions::from_spec_with(&s, fake(&drops)),
            Err(ShmError::Mismatch { .. })
        ));
        let mut s = sys(&[(0, "0123456789abcdef", None)]);
        assert!(matches!(
            Regions::from_spec_with(&s, fake(&drops)),
            Err(ShmError::InvalidId { .. })
        ));
        s.shm[0].id = "ok".into();
        s.shm[0].guest += 1;
        assert!(matches!(
            Regions::from_spec_with(&s, fake(&drops)),
            Err(ShmError::Invalid { .. })
        ));
        let mut s = sys(&[(0, "r", None)]);
        s.static_shm = false;
        assert!(matches!(
            Regions::from_spec_with(&s, fake(&drops)),
            Err(ShmError::Disabled)
        ));
        let mut s = sys(&[(0, "a", None), (1, "b", None)]);
        s.shm[0].host = Some(0x7000_0000);
        s.shm[1].host = Some(0x7000_0000);
        assert!(matches!(
            Regions::from_spec_with(&s, fake(&drops)),
            Err(ShmError::Overlap { .. })
        ));
    }

    #[test]
    fn memfd_backing_is_sized_sealed_and_shared() {
        let r = Regions::from_spec(&sys(&[(0, "r", O), (1, "r", B)])).unwrap();
        let h1 = r.handles_for(1);
        let h2 = r.handles_for(2);
        assert_eq!(h1.len(), 1);
        assert_eq!((h1[0].0, h1[0].2), ("r", 0x1000));
        let st = rustix::fs::fstat(h1[0].3).unwrap();
        assert_eq!(st.st_size, 0x1000);
        // Sealed: nobody can shrink it under the peers.
        assert!(rustix::fs::ftruncate(h1[0].3, 0).is_err());
        rustix::io::pwrite(h1[0].3, b"hello", 16).unwrap();
        let mut buf = [0u8; 5];
        rustix::io::pread(h2[0].3, &mut buf, 16).unwrap();
        assert_eq!(&buf, b"hello");
    }
}
