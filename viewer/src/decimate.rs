//! Per-pixel-column min/max decimation: a chart of 210,000 bars draws at most two points per
//! pixel column, so pan and zoom cost O(visible bars) with no allocation per bar.

/// The lowest and highest finite value of `y` per pixel column, for the bars whose index
/// falls in each of `columns` equal slices of the view `[start, end)` (fractional bar
/// indices). `None` for a column with no finite value.
pub fn min_max_columns(y: &[f64], start: f64, end: f64, columns: usize) -> Vec<Option<(f64, f64)>> {
    let mut out = vec![None; columns];
    if columns == 0 || end <= start || y.is_empty() {
        return out;
    }
    let per_column = (end - start) / columns as f64;
    let first = start.floor().max(0.0) as usize;
    let last = (end.ceil() as usize).min(y.len());
    for (i, &v) in y.iter().enumerate().take(last).skip(first) {
        if !v.is_finite() {
            continue;
        }
        let c = ((i as f64 - start) / per_column).floor();
        if c < 0.0 || c >= columns as f64 {
            continue;
        }
        let slot = &mut out[c as usize];
        *slot = Some(match *slot {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
    out
}

/// The finite range of `y` over bars `[start, end)`.
pub fn range(y: &[f64], start: f64, end: f64) -> Option<(f64, f64)> {
    let first = start.floor().max(0.0) as usize;
    let last = (end.ceil().max(0.0) as usize).min(y.len());
    y.get(first..last)?
        .iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(y: &[f64], start: f64, end: f64, columns: usize, expect: &[Option<(f64, f64)>]) {
        assert_eq!(min_max_columns(y, start, end, columns), expect);
    }

    #[test]
    fn columns_hold_min_and_max() {
        let y = [1.0, 5.0, 2.0, 8.0, -1.0, f64::NAN, 3.0, 4.0];
        check(
            &y,
            0.0,
            8.0,
            4,
            &[
                Some((1.0, 5.0)),
                Some((2.0, 8.0)),
                Some((-1.0, -1.0)),
                Some((3.0, 4.0)),
            ],
        );
        check(&y, 0.0, 8.0, 1, &[Some((-1.0, 8.0))]);
        // A view of bars 2..6 over two columns.
        check(&y, 2.0, 6.0, 2, &[Some((2.0, 8.0)), Some((-1.0, -1.0))]);
        // More columns than bars: empty columns in between.
        check(
            &[1.0, 2.0],
            0.0,
            2.0,
            4,
            &[Some((1.0, 1.0)), None, Some((2.0, 2.0)), None],
        );
        check(&[f64::NAN; 3], 0.0, 3.0, 1, &[None]);
    }

    #[test]
    fn many_bars_keep_every_extreme() {
        // 210,000 bars with one spike up and one down: both survive decimation to 800 columns.
        let mut y: Vec<f64> = (0..210_000).map(|i| (f64::from(i) * 0.001).sin()).collect();
        y[123_457] = 50.0;
        y[7] = -50.0;
        let cols = min_max_columns(&y, 0.0, y.len() as f64, 800);
        let hi = cols.iter().flatten().map(|c| c.1).fold(f64::MIN, f64::max);
        let lo = cols.iter().flatten().map(|c| c.0).fold(f64::MAX, f64::min);
        assert_eq!((lo, hi), (-50.0, 50.0));
        assert!(cols.iter().all(Option::is_some));
        assert_eq!(range(&y, 100_000.0, 130_000.0).unwrap().1, 50.0);
    }
}
