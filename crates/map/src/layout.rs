//! Pure geometry: the segmented address scale, lanes for overlapping ranges and label
//! placement. Nothing here knows about SVG.

/// Height of the shortest segment, in pixels; at least one label line, so that every
/// boundary address on an axis has room for its label.
pub const MIN_SEGMENT: f64 = 14.0;
/// Extra pixels per doubling of a segment's size above 4 KiB.
pub const PER_OCTAVE: f64 = 3.0;
/// Height of a gap (an address span that nothing on the map covers), drawn cut short.
pub const GAP: f64 = 16.0;

/// One piece of a [`Scale`]: the addresses `start..end` drawn from `y` to `y + h`.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// First address.
    pub start: u64,
    /// One past the last address (`u128` so that a range ending at 2^64 fits).
    pub end: u128,
    /// Top of the segment.
    pub y: f64,
    /// Height (always > 0).
    pub h: f64,
    /// True if nothing on the map covers this span (drawn cut short, with a break mark).
    pub gap: bool,
}

/// A segmented, compressed address scale. A memory map spans many orders of magnitude (a
/// 4 KiB window next to a 2 GiB bank), so the axis is cut at every start and end of a
/// drawn range; each span between two boundaries gets a height that grows with the
/// logarithm of its size ([`MIN_SEGMENT`] + [`PER_OCTAVE`] per doubling above 4 KiB), and
/// spans nothing covers get the fixed height [`GAP`]. Addresses grow downward; inside a
/// segment the scale is linear, so it is strictly monotonic over the whole axis.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scale {
    /// The segments, in address order, touching each other.
    pub segments: Vec<Segment>,
}

/// The height of a covered segment of `size` bytes.
pub fn segment_height(size: u128) -> f64 {
    let pages = (size as f64 / 4096.0).max(1.0);
    MIN_SEGMENT + PER_OCTAVE * pages.log2()
}

impl Scale {
    /// The scale for these ranges (`(base, size)`; empty ranges only add a boundary).
    pub fn new(ranges: &[(u64, u64)]) -> Scale {
        let span = |&(b, s): &(u64, u64)| (b as u128, b as u128 + s as u128);
        let mut bounds: Vec<u128> = ranges.iter().map(span).flat_map(|(a, b)| [a, b]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        // Covered spans, merged, to tell gaps from drawn memory.
        let mut spans: Vec<(u128, u128)> = ranges.iter().map(span).filter(|(a, b)| b > a).collect();
        spans.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let covered = |a: u128| {
            let i = merged.partition_point(|&(s, _)| s <= a);
            i > 0 && a < merged[i - 1].1
        };
        let mut y = 0.0;
        let segments = bounds
            .windows(2)
            .map(|w| {
                let gap = !covered(w[0]);
                let h = if gap {
                    GAP
                } else {
                    segment_height(w[1] - w[0])
                };
                let s = Segment {
                    start: w[0] as u64,
                    end: w[1],
                    y,
                    h,
                    gap,
                };
                y += h;
                s
            })
            .collect();
        Scale { segments }
    }

    /// Total height.
    pub fn height(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.y + s.h)
    }

    /// The y of an address (clamped to the axis).
    pub fn y(&self, addr: u128) -> f64 {
        let i = self
            .segments
            .partition_point(|s| (s.start as u128) <= addr)
            .saturating_sub(1);
        let Some(s) = self.segments.get(i) else {
            return 0.0;
        };
        if addr <= s.start as u128 {
            return s.y;
        }
        if addr >= s.end {
            return s.y + s.h;
        }
        let f = (addr - s.start as u128) as f64 / (s.end - s.start as u128) as f64;
        s.y + s.h * f
    }

    /// The y of a range's top and bottom.
    pub fn span(&self, base: u64, size: u64) -> (f64, f64) {
        (self.y(base as u128), self.y(base as u128 + size as u128))
    }

    /// Every boundary: the address and its y.
    pub fn boundaries(&self) -> Vec<(u128, f64)> {
        let mut v: Vec<(u128, f64)> = self
            .segments
            .iter()
            .map(|s| (s.start as u128, s.y))
            .collect();
        if let Some(s) = self.segments.last() {
            v.push((s.end, s.y + s.h));
        }
        v
    }
}

/// Lanes for ranges drawn side by side: ranges that share a byte never share a lane, so an
/// overlap shows as two boxes next to each other. Greedy interval partitioning by start
/// address (optimal: as many lanes as the deepest overlap).
pub fn lanes(ranges: &[(u64, u64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].0, std::cmp::Reverse(ranges[i].1)));
    let mut ends: Vec<u128> = Vec::new();
    let mut lane = vec![0; ranges.len()];
    for i in order {
        let (b, s) = ranges[i];
        let (b, e) = (b as u128, b as u128 + s.max(1) as u128);
        match ends.iter().position(|&end| end <= b) {
            Some(l) => {
                ends[l] = e;
                lane[i] = l;
            }
            None => {
                lane[i] = ends.len();
                ends.push(e);
            }
        }
    }
    lane
}

/// Places labels of height `line` as close below their wanted y as they can be without
/// overlapping: sorted by wanted y, each is pushed down below the one before. Returns the
/// placed y of each label (the top of its line), in input order.
pub fn place_labels(wanted: &[f64], line: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by(|&a, &b| wanted[a].total_cmp(&wanted[b]).then(a.cmp(&b)));
    let mut out = vec![0.0; wanted.len()];
    let mut next = f64::NEG_INFINITY;
    for i in order {
        let y = wanted[i].max(next);
        out[i] = y;
        next = y + line;
    }
    out
}

/// An axis-aligned rectangle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// True if the two rectangles share interior points.
    pub fn intersects(&self, o: &Rect) -> bool {
        const E: f64 = 0.01;
        self.x + E < o.x + o.w
            && o.x + E < self.x + self.w
            && self.y + E < o.y + o.h
            && o.y + E < self.y + self.h
    }
}

/// Pairs of rectangles that intersect (indices), by a sweep over x.
pub fn intersecting(rects: &[Rect]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..rects.len()).collect();
    order.sort_by(|&a, &b| rects[a].x.total_cmp(&rects[b].x));
    let mut out = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        for &j in &order[k + 1..] {
            if rects[j].x >= rects[i].x + rects[i].w {
                break;
            }
            if rects[i].intersects(&rects[j]) {
                out.push((i.min(j), i.max(j)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_strictly_monotonic_and_compressed() {
        let ranges = [
            (0x0300_1000, 0x1000),
            (0x0800_0000, 0x4_0000),
            (0x4000_0000, 0x8000_0000),
            (0x2_0000_0000, 0x1_0000_0000),
            (0xFFFF_FFFF_FFFF_0000, 0x1_0000),
        ];
        let s = Scale::new(&ranges);
        let mut addrs: Vec<u128> = vec![0, 1, 0x0300_1000, 0x0300_1800, 0x0800_0000];
        addrs.extend([0x4000_0000, 0x6000_0000, 0xC000_0000, 0x1_0000_0000]);
        addrs.extend([0x2_0000_0000, 0x3_0000_0000, 0xFFFF_FFFF_FFFF_0000, 1 << 64]);
        let ys: Vec<f64> = addrs.iter().map(|&a| s.y(a)).collect();
        for w in ys.windows(2).skip(2) {
            assert!(w[0] < w[1], "{ys:?}");
        }
        // A 2 GiB bank is not drawn 500 000 times taller than a 4 KiB window.
        let small = s.span(0x0300_1000, 0x1000);
        let big = s.span(0x4000_0000, 0x8000_0000);
        assert!(small.1 - small.0 >= MIN_SEGMENT);
        assert!(big.1 - big.0 < 10.0 * (small.1 - small.0));
        // Gaps are cut short.
        let gaps: Vec<&Segment> = s.segments.iter().filter(|g| g.gap).collect();
        assert!(gaps.iter().all(|g| g.h == GAP));
        assert_eq!(gaps.len(), 4, "{:?}", s.segments);
        // Every boundary has room for a label line.
        for w in s.boundaries().windows(2) {
            assert!(w[1].1 - w[0].1 >= MIN_SEGMENT.min(GAP));
        }
    }

    #[test]
    fn scale_is_monotonic_on_random_points() {
        let ranges: Vec<(u64, u64)> = (0..40u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20, (i + 1) << 12))
            .collect();
        let s = Scale::new(&ranges);
        let mut pts: Vec<u128> = (0..2000u64)
            .map(|i| (i.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 19) as u128)
            .collect();
        pts.sort_unstable();
        pts.dedup();
        let lo = s.segments[0].start as u128;
        let hi = s.segments.last().unwrap().end;
        let inside: Vec<u128> = pts.into_iter().filter(|&p| p >= lo && p <= hi).collect();
        assert!(inside.len() > 100);
        for w in inside.windows(2) {
            assert!(s.y(w[0]) < s.y(w[1]), "{:#x} {:#x}", w[0], w[1]);
        }
    }

    #[test]
    fn empty_scale() {
        let s = Scale::new(&[]);
        assert_eq!(s.height(), 0.0);
        assert_eq!(s.y(5), 0.0);
    }

    #[test]
    fn overlapping_ranges_get_different_lanes() {
        let r = [(0, 10), (5, 10), (10, 5), (20, 1), (0, 30)];
        let l = lanes(&r);
        for i in 0..r.len() {
            for j in i + 1..r.len() {
                let (a, b) = (r[i], r[j]);
                if a.0 < b.0 + b.1 && b.0 < a.0 + a.1 {
                    assert_ne!(l[i], l[j], "{a:?} {b:?}");
                }
            }
        }
        assert_eq!(l.iter().max(), Some(&2));
    }

    #[test]
    fn labels_never_overlap_and_never_move_up() {
        let wanted = [5.0, 5.0, 3.0, 40.0, 41.0, 0.0];
        let y = place_labels(&wanted, 12.0);
        for i in 0..y.len() {
            assert!(y[i] >= wanted[i]);
            for j in i + 1..y.len() {
                assert!((y[i] - y[j]).abs() >= 12.0 - 1e-9, "{y:?}");
            }
        }
    }

    #[test]
    fn intersection_sweep() {
        let r = [
            Rect {
                x: 0.0,
                y: 0.0,
                w: 10.0,
                h: 10.0,
            },
            Rect {
                x: 10.0,
                y: 0.0,
                w: 10.0,
                h: 10.0,
            },
            Rect {
                x: 5.0,
                y: 5.0,
                w: 10.0,
                h: 10.0,
            },
        ];
        assert_eq!(intersecting(&r), vec![(0, 2), (1, 2)]);
    }
}
