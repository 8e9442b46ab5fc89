//! The research sections of a spec: `[walk_forward]` (in-sample / out-of-sample splits) and
//! `[objective]` (what a sweep or an optimisation ranks by, and which trials it discards).
//!
//! ```toml
//! [walk_forward]
//! mode = "rolling"          # or "anchored": every in-sample window starts at the first bar
//! windows = 4               # number of (IS, OOS) pairs
//! in_sample = "180d"        # durations: <n>m, <n>h, <n>d or <n>w
//! out_of_sample = "60d"
//! gap = "0d"                # optional, between each IS and its OOS
//!
//! [objective]
//! name = "risk_adjusted"    # "calmar", "risk_adjusted" or "robust"
//! min_trades = 10           # fewer trades in any scored window discards the trial
//! # drawdown caps per leverage (a conservative liquidation proxy): a trial at leverage L is
//! # discarded when its max drawdown exceeds the cap of the largest key <= L.
//! max_drawdown_by_leverage = { 1 = 0.5, 5 = 0.3, 10 = 0.15, 20 = 0.075 }
//! ```
//!
//! Window placement on the bars is done by the batch kernel's planner
//! (`batch::WindowPlan`); this module only parses and checks the section.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::toml_walk::{Number, Source, entries};
use super::{SpecError, SpecErrorKind};

/// Rolling or anchored in-sample windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkForwardMode {
    /// Window `k`'s in-sample span starts `k x out_of_sample` after the first bar.
    Rolling,
    /// Every in-sample span starts at the first bar and grows by `out_of_sample` per window.
    Anchored,
}

impl WalkForwardMode {
    pub fn name(self) -> &'static str {
        match self {
            WalkForwardMode::Rolling => "rolling",
            WalkForwardMode::Anchored => "anchored",
        }
    }
}

/// `[walk_forward]`: durations in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct WalkForwardSpec {
    pub mode: WalkForwardMode,
    pub windows: u32,
    pub in_sample_ms: i64,
    pub out_of_sample_ms: i64,
    pub gap_ms: i64,
}

/// The objectives by name (docs/SEMANTICS.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveName {
    /// Annualised log return over max drawdown (named `calmar` before: the stored metric
    /// `calmar` is CAGR over max drawdown).
    ReturnOverDrawdown,
    /// The same over max drawdown x the leverage used.
    RiskAdjusted,
    /// The signed square of the annualised log return, over drawdown x leverage^2, scaled by
    /// the win rate.
    Robust,
}

impl ObjectiveName {
    pub const ALL: [(&'static str, ObjectiveName); 3] = [
        ("return_over_drawdown", ObjectiveName::ReturnOverDrawdown),
        ("risk_adjusted", ObjectiveName::RiskAdjusted),
        ("robust", ObjectiveName::Robust),
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectiveName::ReturnOverDrawdown => "return_over_drawdown",
            ObjectiveName::RiskAdjusted => "risk_adjusted",
            ObjectiveName::Robust => "robust",
        }
    }

    pub fn from_name(name: &str) -> Option<ObjectiveName> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
    }
}

/// `[objective]`, with defaults when the section is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveSpec {
    pub name: ObjectiveName,
    /// A trial with fewer trades (in the full run, or in any scored window) is discarded.
    pub min_trades: u64,
    /// `(leverage, max drawdown)` sorted by leverage; the cap of a trial at leverage `L` is the
    /// one of the largest key `<= L`.
    pub max_drawdown_by_leverage: Vec<(f64, f64)>,
}

/// The default drawdown caps: `min(0.5, 1.5 / L)` at the usual leverage steps.
pub const DEFAULT_DRAWDOWN_CAPS: [(f64, f64); 7] = [
    (1.0, 0.5),
    (2.0, 0.5),
    (3.0, 0.5),
    (5.0, 0.3),
    (10.0, 0.15),
    (15.0, 0.1),
    (20.0, 0.075),
];

impl Default for ObjectiveSpec {
    fn default() -> Self {
        ObjectiveSpec {
            name: ObjectiveName::RiskAdjusted,
            min_trades: 1,
            max_drawdown_by_leverage: DEFAULT_DRAWDOWN_CAPS.to_vec(),
        }
    }
}

impl ObjectiveSpec {
    /// The drawdown cap for `leverage` (infinity below the smallest key).
    pub fn drawdown_cap(&self, leverage: f64) -> f64 {
        self.max_drawdown_by_leverage
            .iter()
            .rev()
            .find(|(key, _)| *key <= leverage)
            .map_or(f64::INFINITY, |(_, cap)| *cap)
    }
}

/// Parses a duration such as `90d`, `12h`, `2w`, `30m` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    let count: i64 = digits.parse().ok()?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    count.checked_mul(unit_ms)
}

pub(super) fn parse_walk_forward(
    source: &Source<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
) -> Result<WalkForwardSpec, SpecError> {
    const SECTION: &str = "[walk_forward]";
    source.check_keys(
        table,
        &["mode", "windows", "in_sample", "out_of_sample", "gap"],
        SECTION,
    )?;
    let mode = match table.get("mode") {
        None => WalkForwardMode::Rolling,
        Some(value) => match source.string(value, "mode")? {
            "rolling" => WalkForwardMode::Rolling,
            "anchored" => WalkForwardMode::Anchored,
            other => {
                return Err(source.at(
                    &value.span(),
                    SpecErrorKind::Invalid,
                    format!("mode must be \"rolling\" or \"anchored\", found {other:?}"),
                ));
            }
        },
    };
    let windows_value = source.required(table, span, "windows", SECTION)?;
    let windows = match source.number(windows_value, "windows")? {
        Number::Int(n) if (1..=64).contains(&n) => n as u32,
        _ => {
            return Err(source.at(
                &windows_value.span(),
                SpecErrorKind::OutOfRange,
                "windows must be an integer from 1 to 64".to_string(),
            ));
        }
    };
    let duration = |key: &str, required: bool| -> Result<i64, SpecError> {
        let value = match table.get(key) {
            Some(value) => value,
            None if required => {
                return Err(source.at(
                    span,
                    SpecErrorKind::MissingKey,
                    format!("missing key `{key}` in {SECTION}"),
                ));
            }
            None => return Ok(0),
        };
        let text = source.string(value, key)?;
        parse_duration_ms(text)
            .filter(|ms| *ms > 0 || (!required && *ms == 0))
            .ok_or_else(|| {
                source.at(
                    &value.span(),
                    SpecErrorKind::Invalid,
                    format!(
                        "{key} must be a duration such as \"180d\", \"12h\", \"4w\" or \"30m\"{}, found {text:?}",
                        if required { " (above zero)" } else { "" }
                    ),
                )
            })
    };
    Ok(WalkForwardSpec {
        mode,
        windows,
        in_sample_ms: duration("in_sample", true)?,
        out_of_sample_ms: duration("out_of_sample", true)?,
        gap_ms: duration("gap", false)?,
    })
}

pub(super) fn parse_objective(
    source: &Source<'_>,
    table: &DeTable<'_>,
) -> Result<ObjectiveSpec, SpecError> {
    const SECTION: &str = "[objective]";
    source.check_keys(
        table,
        &["name", "min_trades", "max_drawdown_by_leverage"],
        SECTION,
    )?;
    let mut spec = ObjectiveSpec::default();
    if let Some(value) = table.get("name") {
        let text = source.string(value, "objective name")?;
        spec.name = ObjectiveName::from_name(text).ok_or_else(|| {
            let hint = if text == "calmar" {
                " (the objective `calmar` is now `return_over_drawdown`: annualised log return over max drawdown; `calmar` is the stored metric CAGR / max drawdown)"
            } else {
                ""
            };
            source.at(
                &value.span(),
                SpecErrorKind::Invalid,
                format!(
                    "objective name must be \"return_over_drawdown\", \"risk_adjusted\" or \"robust\", found {text:?}{hint}"
                ),
            )
        })?;
    }
    if let Some(value) = table.get("min_trades") {
        spec.min_trades = match source.number(value, "min_trades")? {
            Number::Int(n) if n >= 0 => n as u64,
            _ => {
                return Err(source.at(
                    &value.span(),
                    SpecErrorKind::OutOfRange,
                    "min_trades must be a non-negative integer".to_string(),
                ));
            }
        };
    }
    if let Some(value) = table.get("max_drawdown_by_leverage") {
        let DeValue::Table(caps) = value.get_ref() else {
            return Err(source.wrong_type(
                value,
                "max_drawdown_by_leverage",
                "a table of leverage = max drawdown",
            ));
        };
        let mut parsed = Vec::new();
        for (key, cap) in entries(caps) {
            let leverage: f64 = key
                .get_ref()
                .parse()
                .ok()
                .filter(|l: &f64| (1.0..=125.0).contains(l))
                .ok_or_else(|| {
                    source.at(
                        &key.span(),
                        SpecErrorKind::Invalid,
                        format!(
                            "max_drawdown_by_leverage keys must be leverages from 1 to 125, found {:?}",
                            key.get_ref()
                        ),
                    )
                })?;
            let cap_value = source.number(cap, "a drawdown cap")?.as_f64();
            if !(cap_value > 0.0 && cap_value <= 1.0) {
                return Err(source.at(
                    &cap.span(),
                    SpecErrorKind::OutOfRange,
                    format!("a drawdown cap must be in (0, 1], found {cap_value}"),
                ));
            }
            parsed.push((leverage, cap_value));
        }
        if parsed.is_empty() {
            return Err(source.at(
                &value.span(),
                SpecErrorKind::Invalid,
                "max_drawdown_by_leverage must list at least one leverage".to_string(),
            ));
        }
        parsed.sort_by(|a, b| a.0.total_cmp(&b.0));
        spec.max_drawdown_by_leverage = parsed;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, expect: Option<i64>| assert_eq!(parse_duration_ms(text), expect);
        check("90d", Some(90 * 86_400_000));
        check("12h", Some(12 * 3_600_000));
        check("2w", Some(14 * 86_400_000));
        check("30m", Some(1_800_000));
        check("0d", Some(0));
        check("d", None);
        check("10y", None);
        check("1.5d", None);
    }

    #[test]
    fn drawdown_cap_is_a_step_function() {
        let spec = ObjectiveSpec::default();
        let check = |leverage: f64, cap: f64| assert_eq!(spec.drawdown_cap(leverage), cap);
        check(1.0, 0.5);
        check(4.0, 0.5);
        check(5.0, 0.3);
        check(12.0, 0.15);
        check(20.0, 0.075);
        check(0.5, f64::INFINITY);
    }
}
