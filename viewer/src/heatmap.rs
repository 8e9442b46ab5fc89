//! Parameter heatmaps: two params binned into a grid, one metric aggregated per cell.
//! A param with few distinct values gets one bin per value; otherwise equal-width bins.

/// How a heatmap axis splits a param's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Bins {
    /// One bin per distinct value, ascending.
    Distinct(Vec<f64>),
    /// `n` equal-width bins over `[lo, hi]`.
    Ranges { lo: f64, hi: f64, n: usize },
}

impl Bins {
    /// Bins for the finite `values` of `rows`, at most `max_bins`.
    pub fn of(values: &[f64], rows: &[u32], max_bins: usize) -> Bins {
        let mut distinct: Vec<f64> = Vec::new();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &r in rows {
            let v = values[r as usize];
            if !v.is_finite() {
                continue;
            }
            lo = lo.min(v);
            hi = hi.max(v);
            if distinct.len() <= max_bins && !distinct.contains(&v) {
                distinct.push(v);
            }
        }
        if distinct.len() <= max_bins {
            distinct.sort_by(f64::total_cmp);
            Bins::Distinct(distinct)
        } else {
            Bins::Ranges {
                lo,
                hi,
                n: max_bins.max(1),
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Bins::Distinct(v) => v.len(),
            Bins::Ranges { n, .. } => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bin of `v`, if any.
    pub fn bin(&self, v: f64) -> Option<usize> {
        if !v.is_finite() {
            return None;
        }
        match self {
            Bins::Distinct(values) => values.binary_search_by(|x| x.total_cmp(&v)).ok(),
            Bins::Ranges { lo, hi, n } => {
                if v < *lo || v > *hi {
                    return None;
                }
                let width = (hi - lo) / *n as f64;
                if width <= 0.0 {
                    return Some(0);
                }
                Some((((v - lo) / width) as usize).min(n - 1))
            }
        }
    }

    /// The value (distinct) or the centre (range) of bin `k`.
    pub fn center(&self, k: usize) -> f64 {
        match self {
            Bins::Distinct(v) => v[k],
            Bins::Ranges { lo, hi, n } => lo + (hi - lo) * (k as f64 + 0.5) / *n as f64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Mean,
    Max,
    Min,
    Count,
}

impl Agg {
    pub const ALL: [Agg; 4] = [Agg::Mean, Agg::Max, Agg::Min, Agg::Count];

    pub fn name(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Max => "max",
            Agg::Min => "min",
            Agg::Count => "count",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub x: Bins,
    pub y: Bins,
    /// Row-major by y then x: `cells[iy * x.len() + ix]`; NaN where no trial falls.
    pub cells: Vec<f64>,
    pub counts: Vec<u32>,
}

impl Heatmap {
    pub fn cell(&self, ix: usize, iy: usize) -> f64 {
        self.cells[iy * self.x.len() + ix]
    }

    /// The finite range of the cells.
    pub fn range(&self) -> Option<(f64, f64)> {
        let mut it = self.cells.iter().copied().filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }
}

/// Aggregates `z` over the cells of params `x` and `y` for `rows`. Trials whose z is not
/// finite count in `Count` only.
pub fn heatmap(
    x: &[f64],
    y: &[f64],
    z: &[f64],
    rows: &[u32],
    max_bins: usize,
    agg: Agg,
) -> Heatmap {
    let bx = Bins::of(x, rows, max_bins);
    let by = Bins::of(y, rows, max_bins);
    let n = bx.len() * by.len();
    let mut acc = vec![f64::NAN; n];
    let mut counts = vec![0u32; n];
    for &r in rows {
        let r = r as usize;
        let (Some(ix), Some(iy)) = (bx.bin(x[r]), by.bin(y[r])) else {
            continue;
        };
        let k = iy * bx.len() + ix;
        let v = z[r];
        if agg == Agg::Count {
            counts[k] += 1;
            acc[k] = f64::from(counts[k]);
            continue;
        }
        if !v.is_finite() {
            continue;
        }
        counts[k] += 1;
        acc[k] = match (agg, acc[k].is_nan()) {
            (_, true) => v,
            (Agg::Mean, false) => acc[k] + v,
            (Agg::Max, false) => acc[k].max(v),
            (Agg::Min, false) => acc[k].min(v),
            (Agg::Count, false) => unreachable!("count handled above"),
        };
    }
    if agg == Agg::Mean {
        for (a, &c) in acc.iter_mut().zip(&counts) {
            if c > 0 {
                *a /= f64::from(c);
            }
        }
    }
    Heatmap {
        x: bx,
        y: by,
        cells: acc,
        counts,
    }
}

/// Stops of the colour scale (viridis, sampled): low values dark purple, high values yellow.
const SCALE: [[u8; 3]; 5] = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
];

/// The colour of `t` in `[0, 1]` (clamped; NaN is the lowest colour).
pub fn color_of(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (SCALE.len() - 1) as f64;
    let k = (x.floor() as usize).min(SCALE.len() - 2);
    let f = x - k as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (SCALE[k], SCALE[k + 1]);
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cells(h: &Heatmap, expect: &[f64]) {
        assert_eq!(h.cells.len(), expect.len());
        for (k, (a, e)) in h.cells.iter().zip(expect).enumerate() {
            assert!(
                (a.is_nan() && e.is_nan()) || (a - e).abs() < 1e-12,
                "cell {k}: {a} != {e} in {:?}",
                h.cells
            );
        }
    }

    #[test]
    fn distinct_grid() {
        // x in {1, 2}, y in {10, 20}; z: (1,10)=1 and 3, (2,10)=5, (1,20)=NaN, (2,20)=-1.
        let x = [1.0, 1.0, 2.0, 1.0, 2.0];
        let y = [10.0, 10.0, 10.0, 20.0, 20.0];
        let z = [1.0, 3.0, 5.0, f64::NAN, -1.0];
        let rows: Vec<u32> = (0..5).collect();
        let h = heatmap(&x, &y, &z, &rows, 10, Agg::Mean);
        assert_eq!(h.x, Bins::Distinct(vec![1.0, 2.0]));
        check_cells(&h, &[2.0, 5.0, f64::NAN, -1.0]);
        check_cells(
            &heatmap(&x, &y, &z, &rows, 10, Agg::Max),
            &[3.0, 5.0, f64::NAN, -1.0],
        );
        check_cells(
            &heatmap(&x, &y, &z, &rows, 10, Agg::Min),
            &[1.0, 5.0, f64::NAN, -1.0],
        );
        check_cells(
            &heatmap(&x, &y, &z, &rows, 10, Agg::Count),
            &[2.0, 1.0, 1.0, 1.0],
        );
        // Only the filtered rows count.
        check_cells(
            &heatmap(&x, &y, &z, &[0, 4], 10, Agg::Mean),
            &[1.0, f64::NAN, f64::NAN, -1.0],
        );
        assert_eq!(h.range(), Some((-1.0, 5.0)));
    }

    #[test]
    fn colours() {
        assert_eq!(color_of(0.0), [68, 1, 84]);
        assert_eq!(color_of(1.0), [253, 231, 37]);
        assert_eq!(color_of(0.5), [33, 145, 140]);
        assert_eq!(color_of(0.125), [64, 42, 112]);
        assert_eq!(color_of(7.0), [253, 231, 37]);
    }

    #[test]
    fn ranges() {
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        let rows: Vec<u32> = (0..100).collect();
        let b = Bins::of(&x, &rows, 4);
        assert_eq!(
            b,
            Bins::Ranges {
                lo: 0.0,
                hi: 99.0,
                n: 4
            }
        );
        assert_eq!(b.bin(0.0), Some(0));
        assert_eq!(b.bin(24.0), Some(0));
        assert_eq!(b.bin(25.0), Some(1));
        assert_eq!(b.bin(99.0), Some(3));
        assert_eq!(b.bin(100.0), None);
        assert_eq!(b.bin(f64::NAN), None);
        assert!((b.center(0) - 12.375).abs() < 1e-12);
    }
}
