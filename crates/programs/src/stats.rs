//! Figures without an allocator: durations kept in a fixed array for percentiles, and
//! human-readable durations and rates.

use core::fmt;

/// Round-trip (or any duration) samples: min, max, total and count over every sample,
/// percentiles over the first `N`.
#[derive(Clone, Debug)]
pub struct Samples<const N: usize> {
    kept: [u64; N],
    count: u64,
    min: u64,
    max: u64,
    total: u64,
}

impl<const N: usize> Default for Samples<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Samples<N> {
    /// No samples yet.
    pub const fn new() -> Self {
        Samples {
            kept: [0; N],
            count: 0,
            min: u64::MAX,
            max: 0,
            total: 0,
        }
    }

    /// Records a duration in nanoseconds.
    pub fn add(&mut self, ns: u64) {
        if let Some(slot) = usize::try_from(self.count)
            .ok()
            .and_then(|i| self.kept.get_mut(i))
        {
            *slot = ns;
        }
        self.count += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.total = self.total.saturating_add(ns);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sorts the kept samples and returns the summary.
    pub fn summary(&mut self) -> Summary {
        let n = usize::try_from(self.count).map_or(N, |c| c.min(N));
        let kept = &mut self.kept[..n];
        kept.sort_unstable();
        let pct = |p: usize| kept.get((n.saturating_sub(1)) * p / 100).copied();
        Summary {
            count: self.count,
            min: if self.count == 0 { 0 } else { self.min },
            p50: pct(50).unwrap_or(0),
            p90: pct(90).unwrap_or(0),
            p99: pct(99).unwrap_or(0),
            max: self.max,
            total: self.total,
        }
    }
}

/// What [`Samples::summary`] returns (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median of the kept samples.
    pub p50: u64,
    /// 90th percentile of the kept samples.
    pub p90: u64,
    /// 99th percentile of the kept samples.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Sum of all.
    pub total: u64,
}

impl fmt::Display for Summary {
    /// `min=… p50=… p90=… p99=… max=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min={} p50={} p90={} p99={} max={}",
            Nanos(self.min),
            Nanos(self.p50),
            Nanos(self.p90),
            Nanos(self.p99),
            Nanos(self.max)
        )
    }
}

/// A duration in nanoseconds, shown as `812ns`, `12.3us`, `45.6ms` or `1.234s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nanos(pub u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns >= 1_000_000_000 {
            write!(f, "{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000)
        } else if ns >= 1_000_000 {
            write!(f, "{}.{}ms", ns / 1_000_000, ns / 100_000 % 10)
        } else if ns >= 1_000 {
            write!(f, "{}.{}us", ns / 1000, ns / 100 % 10)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

/// `count` events in `ns` nanoseconds as a rate per second (0 for an empty interval).
pub fn per_second(count: u64, ns: u64) -> u64 {
    if ns == 0 {
        return 0;
    }
    u64::try_from(u128::from(count) * 1_000_000_000 / u128::from(ns)).unwrap_or(u64::MAX)
}

/// A number with a k/M suffix and one decimal (`12.3k`, `4.5M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Si(pub u64);

impl fmt::Display for Si {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v >= 1_000_000 {
            write!(f, "{}.{}M", v / 1_000_000, v / 100_000 % 10)
        } else if v >= 1_000 {
            write!(f, "{}.{}k", v / 1_000, v / 100 % 10)
        } else {
            write!(f, "{v}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn summary_and_formatting() {
        let mut s = Samples::<4>::new();
        assert_eq!(s.summary().p50, 0);
        for v in [40, 10, 30, 20, 1000] {
            s.add(v);
        }
        let sum = s.summary();
        assert_eq!(
            (sum.count, sum.min, sum.max, sum.total),
            (5, 10, 1000, 1100)
        );
        assert_eq!((sum.p50, sum.p90, sum.p99), (20, 30, 30));
        assert_eq!(format!("{}", Nanos(812)), "812ns");
        assert_eq!(format!("{}", Nanos(12_345)), "12.3us");
        assert_eq!(format!("{}", Nanos(45_678_000)), "45.6ms");
        assert_eq!(format!("{}", Nanos(1_234_000_000)), "1.234s");
        assert_eq!(per_second(10, 2_000_000_000), 5);
        assert_eq!(per_second(1, 0), 0);
        assert_eq!(
            format!("{} {} {}", Si(999), Si(12_345), Si(4_560_000)),
            "999 12.3k 4.5M"
        );
    }
}
