//! The spec's rules compiled to WGSL from the same postfix program the CPU evaluates
//! ([`crate::expr::Rule::ops_view`]; CPU twin: `BoundRule::eval_bar` in
//! kernels/src/expr/eval.rs).
//!
//! Each rule becomes `fn rule_<name>(set_id: u32, s: u32, t: u32, bar: u32) -> bool`, where `t`
//! is the market bar and `bar = t - first bar of the symbol's data` (the CPU evaluates rules
//! on that span). The postfix stack becomes SSA temporaries: each value `vK` carries a flag
//! `kK` that is false exactly where the CPU value is NaN, so no NaN is ever produced or
//! compared on the GPU (WGSL lets implementations assume finite floats). The NaN policy of
//! kernels/src/expr/mod.rs maps as: arithmetic propagates the flag (and `0 / 0` clears it),
//! every comparison with a cleared flag is false, `prev` before its look-back clears the flag
//! of a number and gives false for a condition. Not mirrored: NaN made by infinite
//! intermediates (`inf - inf`, `0 x inf`), which finite bar data and TA-Lib outputs do not
//! produce unless a rule divides a non-zero value by exactly zero and then combines it so.

use std::fmt::Write as _;

use super::streams::{Stream, plan_streams, stream_of, streams_wgsl};
use crate::expr::{BinaryOp, OpView, Rule, SourceView};
use crate::series::Series;
use crate::spec::Spec;

/// Rule names in the order the simulation reads them.
pub const RULE_NAMES: [&str; 4] = ["long_entry", "long_exit", "short_entry", "short_exit"];

/// WGSL of the four rule functions of `spec` (a missing rule is always false), preceded by
/// the streamed indicators' code ([`super::streams`]).
pub fn rules_wgsl(spec: &Spec) -> String {
    let streams = plan_streams(spec);
    let rules = [
        &spec.rules.long_entry,
        &spec.rules.long_exit,
        &spec.rules.short_entry,
        &spec.rules.short_exit,
    ];
    let mut out = streams_wgsl(&streams);
    for (name, rule) in RULE_NAMES.iter().zip(rules) {
        out.push_str(&rule_wgsl_streamed(name, rule.as_ref(), &streams));
    }
    out
}

/// The WGSL constant naming a bar column.
pub(super) fn series_column(series: Series) -> &'static str {
    match series {
        Series::Open => "COL_OPEN",
        Series::High => "COL_HIGH",
        Series::Low => "COL_LOW",
        Series::Close => "COL_CLOSE",
        Series::Volume => "COL_VOLUME",
    }
}

/// A WGSL abstract-float literal of `value` (exact for f64; rounded once to f32 like the
/// host's other f32 inputs).
fn literal(value: f64) -> String {
    let text = format!("{value:?}");
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// WGSL of one rule function, every indicator read from its uploaded column.
pub fn rule_wgsl(name: &str, rule: Option<&Rule>) -> String {
    rule_wgsl_streamed(name, rule, &[])
}

/// WGSL of one rule function; indicators in `streams` are read from the shader's streams
/// (`stream_out` / `stream_ok` of shaders/shared/indicators.wgsl, lag 0 or 1), the others
/// from their uploaded columns.
pub fn rule_wgsl_streamed(name: &str, rule: Option<&Rule>, streams: &[Stream]) -> String {
    let mut f = String::new();
    let _ = writeln!(
        f,
        "fn rule_{name}(set_id: u32, s: u32, t: u32, bar: u32) -> bool {{"
    );
    let Some(rule) = rule else {
        f.push_str("    return false;\n}\n\n");
        return f;
    };
    let _ = writeln!(f, "    // {}", rule.source_text().replace('\n', " "));
    for (id, lag) in rule.lags().iter().enumerate() {
        let mut expr = format!("{}u", lag.bars);
        for index in &lag.params {
            let _ = write!(expr, " + u32(rule_param(set_id, {index}u))");
        }
        let _ = writeln!(f, "    let lag{id}: u32 = {expr};");
    }
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let mut fresh = || {
        next += 1;
        next - 1
    };
    for op in rule.ops_view() {
        match op {
            OpView::Load { source, lag } => {
                let k = fresh();
                let _ = writeln!(f, "    var v{k}: real = 0.0;\n    var k{k} = false;");
                let (value, ok, condition) = match source {
                    SourceView::Series(series) => (
                        format!("bar_value({}, s, t - lag{lag})", series_column(series)),
                        "true".to_string(),
                        false,
                    ),
                    SourceView::Indicator(slot) if let Some(j) = stream_of(streams, slot) => {
                        // plan_streams streams only indicators read at a constant lag of 0 or 1.
                        let bars = rule.lags().get(lag).map_or(0, |l| l.bars);
                        (
                            format!("stream_out({j}u, s, {bars}u)"),
                            format!("stream_ok({j}u, s, {bars}u)"),
                            false,
                        )
                    }
                    SourceView::Indicator(slot) => {
                        let _ = writeln!(f, "    let c{k} = set_col(set_id, {slot}u);");
                        (
                            format!("indicator_value(c{k}, s, t - lag{lag})"),
                            format!("indicator_valid(c{k}, s, t - lag{lag})"),
                            false,
                        )
                    }
                    SourceView::Number(value) => {
                        (format!("real({})", literal(value)), "true".into(), false)
                    }
                    SourceView::Bool(flag) => (
                        if flag { "real(1.0)" } else { "real(0.0)" }.to_string(),
                        "true".into(),
                        true,
                    ),
                    SourceView::Param { index, condition } => (
                        format!("rule_param(set_id, {index}u)"),
                        "true".into(),
                        condition,
                    ),
                };
                let _ = writeln!(
                    f,
                    "    if (bar >= lag{lag}) {{\n        v{k} = {value};\n        k{k} = {ok};\n    }}"
                );
                if condition {
                    // A condition before its look-back is false, not NaN.
                    let _ = writeln!(f, "    else {{\n        k{k} = true;\n    }}");
                }
                stack.push(k);
            }
            OpView::Neg => {
                let a = stack.pop().unwrap_or_default();
                let k = fresh();
                let _ = writeln!(f, "    let v{k} = -v{a};\n    let k{k} = k{a};");
                stack.push(k);
            }
            OpView::Not => {
                let a = stack.pop().unwrap_or_default();
                let k = fresh();
                let _ = writeln!(f, "    let v{k} = 1.0 - v{a};\n    let k{k} = true;");
                stack.push(k);
            }
            OpView::PrevGuard { lag, condition } => {
                let a = stack.pop().unwrap_or_default();
                let k = fresh();
                let _ = writeln!(f, "    var v{k} = v{a};\n    var k{k} = k{a};");
                if condition {
                    let _ = writeln!(
                        f,
                        "    if (bar < lag{lag}) {{\n        v{k} = 0.0;\n        k{k} = true;\n    }}"
                    );
                } else {
                    let _ = writeln!(
                        f,
                        "    if (bar < lag{lag}) {{\n        k{k} = false;\n    }}"
                    );
                }
                stack.push(k);
            }
            OpView::Binary(op) => {
                let b = stack.pop().unwrap_or_default();
                let a = stack.pop().unwrap_or_default();
                let k = fresh();
                let both = format!("k{a} && k{b}");
                let compare = |symbol: &str| {
                    format!(
                        "    let v{k} = select(real(0.0), real(1.0), {both} && v{a} {symbol} v{b});\n    let k{k} = true;\n"
                    )
                };
                let arith = |symbol: &str| {
                    format!("    let v{k} = v{a} {symbol} v{b};\n    let k{k} = {both};\n")
                };
                let logic = |symbol: &str| {
                    format!(
                        "    let v{k} = select(real(0.0), real(1.0), v{a} != 0.0 {symbol} v{b} != 0.0);\n    let k{k} = true;\n"
                    )
                };
                f.push_str(&match op {
                    BinaryOp::Add => arith("+"),
                    BinaryOp::Sub => arith("-"),
                    BinaryOp::Mul => arith("*"),
                    BinaryOp::Div => format!(
                        "    let v{k} = v{a} / v{b};\n    let k{k} = {both} && !(v{a} == 0.0 && v{b} == 0.0);\n"
                    ),
                    BinaryOp::Lt => compare("<"),
                    BinaryOp::Le => compare("<="),
                    BinaryOp::Gt => compare(">"),
                    BinaryOp::Ge => compare(">="),
                    BinaryOp::Eq => compare("=="),
                    BinaryOp::Ne => compare("!="),
                    BinaryOp::And => logic("&&"),
                    BinaryOp::Or => logic("||"),
                });
                stack.push(k);
            }
            OpView::Cross { above, lag } => {
                let b_prev = stack.pop().unwrap_or_default();
                let a_prev = stack.pop().unwrap_or_default();
                let b_now = stack.pop().unwrap_or_default();
                let a_now = stack.pop().unwrap_or_default();
                let k = fresh();
                let (now, before) = if above { (">", "<=") } else { ("<", ">=") };
                let _ = writeln!(
                    f,
                    "    let x{k} = k{a_now} && k{b_now} && k{a_prev} && k{b_prev} && v{a_now} {now} v{b_now} && v{a_prev} {before} v{b_prev};\n    let v{k} = select(real(0.0), real(1.0), bar >= lag{lag} && x{k});\n    let k{k} = true;"
                );
                stack.push(k);
            }
        }
    }
    let top = stack.pop().unwrap_or_default();
    let _ = writeln!(f, "    return v{top} != 0.0;\n}}\n");
    f
}
