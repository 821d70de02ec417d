//! Hostile input: mutated and random blobs must give `Ok` or `Err`, never a panic or a
//! hang, and any tree that is read must serialise and read back to itself.

#[path = "fixtures/dtb/trees.rs"]
mod trees;

use proptest::prelude::*;
use staticbus_diag::FileId;
use staticbus_dt::{read_dtb, write_dtb};

const F: FileId = FileId(0);

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v: Vec<Vec<u8>> = trees::all()
            .iter()
            .map(|(name, _)| trees::fixture(&format!("{name}.dtb")))
            .collect();
        v.push(trees::fixture("v16_values.dtb"));
        v
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    SetByte(usize, u8),
    /// Overwrite a big-endian word: a header field or a token.
    SetWord(usize, u32),
    /// Nudge a header field by a small amount.
    NudgeHeader(usize, i32),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(4),
        Just(9),
        Just(u32::MAX),
        Just(0x8000_0000),
        any::<u32>(),
        0u32..4096,
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::SetByte(i, x)),
        (any::<usize>(), word).prop_map(|(i, w)| Mutation::SetWord(i, w)),
        (0usize..10, -64i32..64).prop_map(|(i, d)| Mutation::NudgeHeader(i, d)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let len = b.len().max(1);
    match m {
        Mutation::Truncate(n) => b.truncate(n % len),
        Mutation::Flip(i, x) => {
            if let Some(v) = b.get_mut(i % len) {
                *v ^= x;
            }
        }
        Mutation::SetByte(i, x) => {
            if let Some(v) = b.get_mut(i % len) {
                *v = *x;
            }
        }
        Mutation::SetWord(i, w) => {
            let i = (i % len) & !3;
            if i + 4 <= b.len() {
                b[i..i + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        Mutation::NudgeHeader(f, d) => {
            let i = f * 4;
            if i + 4 <= b.len() {
                let v = u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
                b[i..i + 4].copy_from_slice(&v.wrapping_add(*d as u32).to_be_bytes());
            }
        }
        Mutation::Insert(i, bytes) => {
            let i = i % (b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = i % len;
            let j = (i + n).min(b.len());
            if i < j {
                b.drain(i..j);
            }
        }
    }
}

fn check(blob: &[u8]) {
    match read_dtb(blob, F) {
        Ok(tree) => {
            let again = write_dtb(&tree);
            let back = read_dtb(&again, F).expect("a tree that was read re-serialises");
            assert_eq!(back, tree);
            assert_eq!(write_dtb(&back), again);
        }
        Err(ds) => {
            assert!(!ds.is_empty() && ds.has_errors());
            assert!(ds.iter().all(|d| d.code.id.starts_with("SB00")));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_blobs_never_panic(
        seed in 0usize..9,
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut b = seeds[seed % seeds.len()].clone();
        for m in &muts {
            apply(&mut b, m);
        }
        check(&b);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        words in proptest::collection::vec(
            prop_oneof![0u32..5, Just(9), Just(0x6100_0000), any::<u32>()],
            0..100,
        ),
        off_struct in 40u32..120,
        off_strings in 40u32..440,
        size_strings in 0u32..400,
        size_struct in 0u32..400,
        version in 15u32..18,
    ) {
        let mut b = vec![0u8; 40];
        b.extend_from_slice(&[0u8; 16]);
        b.extend(words.iter().flat_map(|w| w.to_be_bytes()));
        let total = b.len() as u32;
        let header = [
            0xd00d_feed, total, off_struct & !3, off_strings, 40, version, 16, 0,
            size_strings, size_struct,
        ];
        for (i, v) in header.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        check(&b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&b);
        let mut m = 0xd00d_feedu32.to_be_bytes().to_vec();
        m.extend_from_slice(&b);
        check(&m);
    }
}

#[test]
fn every_truncation_of_every_seed_is_handled() {
    for seed in seeds() {
        for n in 0..seed.len() {
            let r = read_dtb(&seed[..n], F);
            assert!(r.is_err(), "a blob cut to {n} bytes must be rejected");
        }
        check(seed);
    }
}

#[test]
fn single_byte_flips_of_the_xen_tree_are_handled() {
    let seed = trees::fixture("xen_dom0less.dtb");
    for i in 0..seed.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut b = seed.clone();
            b[i] ^= x;
            check(&b);
        }
    }
}

#[test]
fn huge_sizes_do_not_allocate() {
    // totalsize and block sizes near 4 GiB in a tiny buffer are rejected at once.
    let mut b = trees::fixture("empty.dtb");
    for field in [1usize, 8, 9] {
        let mut c = b.clone();
        c[field * 4..field * 4 + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_dtb(&c, F).is_err());
    }
    // A property claiming 4 GiB of value.
    let s = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    b.splice(
        s + 8..s + 8,
        [0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
    );
    assert!(read_dtb(&b, F).is_err());
}
