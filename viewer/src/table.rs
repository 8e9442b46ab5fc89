//! Tables as numeric columns (labels for coded columns such as states and categoricals),
//! sorted and filtered through a permutation of row indices: a million rows are never copied.

/// How a column's numbers are shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Int,
    /// Significant digits.
    Num(usize),
    /// A code into these labels.
    Label(Vec<String>),
    /// Unix milliseconds, shown as UTC date and time.
    Time,
}

#[derive(Debug, Clone)]
pub struct TableColumn {
    pub name: String,
    pub values: Vec<f64>,
    pub format: Format,
}

impl TableColumn {
    pub fn text(&self, row: usize) -> String {
        let v = self.values[row];
        if v.is_nan() {
            return String::new();
        }
        match &self.format {
            Format::Int => format!("{v:.0}"),
            Format::Num(digits) => format_num(v, *digits),
            Format::Label(labels) => labels
                .get(v as usize)
                .cloned()
                .unwrap_or_else(|| format!("{v}")),
            Format::Time => crate::axis::format_time(v as i64, true),
        }
    }
}

/// `v` with `digits` significant digits, without trailing zeros.
pub fn format_num(v: f64, digits: usize) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-5..=9).contains(&magnitude) {
        return format!("{:.*e}", digits.saturating_sub(1), v);
    }
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Sorts `rows` by `values` (NaN last in both directions; ties by row index). Each row gets
/// an integer key in the order of `f64::total_cmp` (reversed when descending), so the sort
/// compares plain `(u64, u32)` pairs: about 5x faster than a comparator over floats.
pub fn sort_rows(rows: &mut [u32], values: &[f64], descending: bool) {
    let mut keyed: Vec<(u64, u32)> = rows
        .iter()
        .map(|&r| (sort_key(values[r as usize], descending), r))
        .collect();
    keyed.sort_unstable();
    for (slot, (_, r)) in rows.iter_mut().zip(keyed) {
        *slot = r;
    }
}

/// `x`'s place in `f64::total_cmp` order as an integer (negatives: all bits flipped;
/// positives: the sign bit set), reversed when `descending`; NaN is `u64::MAX` (no number
/// maps there: only NaN bit patterns would).
fn sort_key(x: f64, descending: bool) -> u64 {
    if x.is_nan() {
        return u64::MAX;
    }
    let b = x.to_bits();
    let k = if b >> 63 == 1 { !b } else { b | 1 << 63 };
    if descending { !k } else { k }
}

/// The tallest scroll area a virtualised table makes, CSS px. Browsers cap an element's
/// height (about 17.9M px in Firefox, 33.5M px in Chromium) and a million rows of 22 px need
/// 22M px: beyond this height the scroll position maps proportionally onto the first row.
pub const MAX_SCROLL_PX: f64 = 4_000_000.0;

/// A virtualised table's scrolling: for `total` rows of `row_h` px under a header of one row,
/// `shown` rows drawn, the viewport scrolled by `scroll_top` with `client_height` visible, the
/// spacer's height, the first row to show and where the drawn rows go (px from the top of the
/// scroll area). Up to [`MAX_SCROLL_PX`] a row is at its natural place; beyond, the rows stay
/// under the header and the scroll fraction picks the first, so the top shows row 0 and the
/// bottom the last `shown` rows.
pub fn scroll_window(
    total: usize,
    scroll_top: f64,
    client_height: f64,
    row_h: f64,
    shown: usize,
) -> (f64, usize, f64) {
    let natural = total as f64 * row_h;
    let scroll = scroll_top.max(0.0);
    if natural <= MAX_SCROLL_PX {
        let first = ((scroll / row_h).floor() as usize).min(total.saturating_sub(1));
        return (natural, first, row_h + first as f64 * row_h);
    }
    let height = MAX_SCROLL_PX;
    let max_scroll = (height + row_h - client_height).max(1.0);
    let last_first = total.saturating_sub(shown) as f64;
    let first = ((scroll / max_scroll).min(1.0) * last_first).round() as usize;
    (height, first, row_h + scroll.min(max_scroll))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, x: f64, y: f64) -> bool {
        match self {
            Op::Lt => x < y,
            Op::Le => x <= y,
            Op::Gt => x > y,
            Op::Ge => x >= y,
            Op::Eq => x == y,
            Op::Ne => x != y,
        }
    }
}

/// One `column op value` condition, resolved against a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub column: usize,
    pub op: Op,
    pub value: f64,
}

/// Parses a filter such as `sharpe > 1, leverage<=5 state=COMPLETE` (clauses separated by
/// spaces, commas or `and`; a labelled column compares by label). Empty text is no filter.
pub fn parse_filter(text: &str, columns: &[TableColumn]) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let word = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len()
            && (chars[*i].is_alphanumeric() || matches!(chars[*i], '_' | '.' | '-' | '+'))
        {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    let skip = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        if i >= chars.len() {
            break;
        }
        let name = word(&mut i);
        if name.is_empty() {
            return Err(format!(
                "filter: expected a column name at `{}`",
                rest(&chars, i)
            ));
        }
        if name.eq_ignore_ascii_case("and") {
            continue;
        }
        skip(&mut i);
        let op_text: String = chars[i..]
            .iter()
            .take_while(|c| matches!(c, '<' | '>' | '=' | '!'))
            .collect();
        i += op_text.chars().count();
        let op = match op_text.as_str() {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            other => {
                return Err(format!(
                    "filter: after `{name}` expected one of < <= > >= = != (found `{other}`)"
                ));
            }
        };
        skip(&mut i);
        let value_text = word(&mut i);
        if value_text.is_empty() {
            return Err(format!("filter: `{name} {op_text}` needs a value"));
        }
        let column = columns.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            format!("filter: no column `{name}` (columns: {})", names.join(", "))
        })?;
        let value = match &columns[column].format {
            Format::Label(labels) => match labels.iter().position(|l| *l == value_text) {
                Some(k) => k as f64,
                None => value_text.parse().map_err(|_| {
                    format!(
                        "filter: `{name}` is one of {} (found `{value_text}`)",
                        labels.join(", ")
                    )
                })?,
            },
            _ => value_text.parse().map_err(|_| {
                format!("filter: `{name} {op_text}` expects a number, found `{value_text}`")
            })?,
        };
        clauses.push(Clause { column, op, value });
    }
    Ok(clauses)
}

fn rest(chars: &[char], i: usize) -> String {
    chars[i..].iter().take(20).collect()
}

/// The rows (ascending) where every clause holds; a missing value fails every clause.
pub fn filter_rows(columns: &[TableColumn], clauses: &[Clause], n_rows: usize) -> Vec<u32> {
    (0..n_rows as u32)
        .filter(|&r| {
            clauses.iter().all(|c| {
                let x = columns[c.column].values[r as usize];
                !x.is_nan() && c.op.holds(x, c.value)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<TableColumn> {
        vec![
            TableColumn {
                name: "number".into(),
                values: vec![0.0, 1.0, 2.0, 3.0],
                format: Format::Int,
            },
            TableColumn {
                name: "state".into(),
                values: vec![2.0, 2.0, 4.0, 2.0],
                format: Format::Label(vec![
                    "RUNNING".into(),
                    "WAITING".into(),
                    "COMPLETE".into(),
                    "PRUNED".into(),
                    "FAIL".into(),
                ]),
            },
            TableColumn {
                name: "sharpe".into(),
                values: vec![0.5, 1.5, f64::NAN, 1.5],
                format: Format::Num(4),
            },
        ]
    }

    fn check_filter(text: &str, expect: &[u32]) {
        let c = cols();
        let clauses = parse_filter(text, &c).unwrap();
        assert_eq!(filter_rows(&c, &clauses, 4), expect, "{text}");
    }

    fn check_sort(values: &[f64], descending: bool, expect: &[u32]) {
        let mut rows: Vec<u32> = (0..values.len() as u32).collect();
        sort_rows(&mut rows, values, descending);
        assert_eq!(rows, expect);
    }

    #[test]
    fn filters() {
        check_filter("", &[0, 1, 2, 3]);
        check_filter("sharpe > 1", &[1, 3]);
        check_filter("sharpe>=0.5, number!=3", &[0, 1]);
        check_filter("state=COMPLETE and number < 3", &[0, 1]);
        check_filter("state != FAIL", &[0, 1, 3]);
        check_filter("sharpe < 100", &[0, 1, 3]);
        check_filter("sharpe > -1e9", &[0, 1, 3]);
    }

    #[test]
    fn filter_errors() {
        let c = cols();
        let e = parse_filter("calmar > 1", &c).unwrap_err();
        assert!(e.contains("no column `calmar`"), "{e}");
        let e = parse_filter("sharpe ~ 1", &c).unwrap_err();
        assert!(e.contains("expected one of"), "{e}");
        let e = parse_filter("state = DONE", &c).unwrap_err();
        assert!(e.contains("is one of RUNNING"), "{e}");
        let e = parse_filter("sharpe >", &c).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
    }

    #[test]
    fn sorting() {
        let v = [0.5, 1.5, f64::NAN, 1.5, -2.0];
        check_sort(&v, false, &[4, 0, 1, 3, 2]);
        check_sort(&v, true, &[1, 3, 0, 4, 2]);
        check_sort(&[f64::INFINITY, f64::NEG_INFINITY, 0.0], true, &[0, 2, 1]);
        check_sort(
            &[0.0, -0.0, -1e-300, 1e-300, f64::NAN, 2.0],
            false,
            &[2, 1, 0, 3, 5, 4],
        );
        check_sort(
            &[0.0, -0.0, -1e-300, 1e-300, f64::NAN, 2.0],
            true,
            &[5, 3, 0, 1, 2, 4],
        );
        check_sort(&[3.0, f64::NAN, 3.0, f64::NAN], true, &[0, 2, 1, 3]);
    }

    fn check_scroll(total: usize, scroll_top: f64, expect: (f64, usize, f64)) {
        // The trials table: 22 px rows, 20 shown, a viewport of 462 px (header + 20 rows).
        assert_eq!(
            scroll_window(total, scroll_top, 462.0, 22.0, 20),
            expect,
            "{total} rows at {scroll_top}"
        );
    }

    #[test]
    fn scrolling() {
        // 20,000 rows: natural places (440,000 px); row 1000 at 22,000 px.
        check_scroll(20_000, 0.0, (440_000.0, 0, 22.0));
        check_scroll(20_000, 22_000.0, (440_000.0, 1000, 22_022.0));
        check_scroll(20_000, 22_010.0, (440_000.0, 1000, 22_022.0));
        // A million rows: 4,000,000 px, scrolled to at most 4,000,000 + 22 - 462 px, which
        // shows the last 20 rows; half way is row (1,000,000 - 20) / 2.
        let max = 4_000_000.0 + 22.0 - 462.0;
        check_scroll(1_000_000, 0.0, (4_000_000.0, 0, 22.0));
        check_scroll(1_000_000, max, (4_000_000.0, 999_980, max + 22.0));
        check_scroll(1_000_000, max + 50.0, (4_000_000.0, 999_980, max + 22.0));
        check_scroll(
            1_000_000,
            max / 2.0,
            (4_000_000.0, 499_990, max / 2.0 + 22.0),
        );
        check_scroll(0, 0.0, (0.0, 0, 22.0));
    }

    #[test]
    fn sorting_a_million_rows_is_a_permutation() {
        let n = 1_000_000u32;
        let values: Vec<f64> = (0..n)
            .map(|i| ((i as f64) * 0.618_033_988_749_895).fract())
            .collect();
        let mut rows: Vec<u32> = (0..n).collect();
        sort_rows(&mut rows, &values, true);
        assert!(
            rows.windows(2)
                .all(|w| values[w[0] as usize] >= values[w[1] as usize])
        );
        let mut seen = vec![false; n as usize];
        rows.iter().for_each(|&r| seen[r as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn texts() {
        let c = cols();
        assert_eq!(c[1].text(2), "FAIL");
        assert_eq!(c[2].text(2), "");
        assert_eq!(format_num(1.234_567, 4), "1.235");
        assert_eq!(format_num(12_345.678, 4), "12346");
        assert_eq!(format_num(0.000_123_45, 3), "0.000123");
        assert_eq!(format_num(2.0, 4), "2");
        assert_eq!(format_num(f64::NEG_INFINITY, 4), "-inf");
        assert_eq!(format_num(1.5e12, 3), "1.50e12");
    }
}
