//! Columnar evaluation of a bound rule: one `bool` per bar into a caller-provided slice.

use super::compile::{BoundOp, BoundRule, BoundSource};
use super::{BinaryOp, MAX_STACK_DEPTH};
use crate::series::BarColumns;

/// The columns a rule reads: bars and indicator outputs by flat output slot.
#[derive(Clone, Copy, Debug)]
pub struct RuleInputs<'a> {
    /// OHLCV columns.
    pub bars: BarColumns<'a>,
    /// Indicator output columns, indexed by output slot (see `Spec::output_slot`).
    pub indicators: &'a [&'a [f64]],
}

/// Columns that do not fit a rule; checked before the per-bar loop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The five bar columns differ in length.
    #[error("bar columns differ in length")]
    RaggedBars,
    /// The output slice length differs from the bar count.
    #[error("output holds {output_len} values for {bar_count} bars")]
    OutputLength {
        /// Output length.
        output_len: usize,
        /// Bar count.
        bar_count: usize,
    },
    /// An indicator slot read by the rule is missing or has the wrong length.
    #[error("indicator slot {slot} is missing or not {bar_count} values long")]
    IndicatorColumn {
        /// The slot.
        slot: usize,
        /// Bar count.
        bar_count: usize,
    },
}

#[inline]
fn truth(flag: bool) -> f64 {
    if flag { 1.0 } else { 0.0 }
}

/// `lhs[i] = lhs[i] op rhs[i]`, with the op chosen once per block.
fn binary_columns(op: BinaryOp, lhs: &mut [f64], rhs: &[f64]) {
    #[inline(always)]
    fn apply(lhs: &mut [f64], rhs: &[f64], f: impl Fn(f64, f64) -> f64) {
        for (l, &r) in lhs.iter_mut().zip(rhs) {
            *l = f(*l, r);
        }
    }
    match op {
        BinaryOp::Add => apply(lhs, rhs, |l, r| l + r),
        BinaryOp::Sub => apply(lhs, rhs, |l, r| l - r),
        BinaryOp::Mul => apply(lhs, rhs, |l, r| l * r),
        BinaryOp::Div => apply(lhs, rhs, |l, r| l / r),
        BinaryOp::Lt => apply(lhs, rhs, |l, r| truth(l < r)),
        BinaryOp::Le => apply(lhs, rhs, |l, r| truth(l <= r)),
        BinaryOp::Gt => apply(lhs, rhs, |l, r| truth(l > r)),
        BinaryOp::Ge => apply(lhs, rhs, |l, r| truth(l >= r)),
        BinaryOp::Eq => apply(lhs, rhs, |l, r| truth(l == r)),
        BinaryOp::Ne => apply(lhs, rhs, |l, r| truth(!l.is_nan() && !r.is_nan() && l != r)),
        BinaryOp::And => apply(lhs, rhs, |l, r| truth(l != 0.0 && r != 0.0)),
        BinaryOp::Or => apply(lhs, rhs, |l, r| truth(l != 0.0 || r != 0.0)),
    }
}

/// Bars per block of [`BoundRule::eval_columns`].
pub const COLUMN_BLOCK: usize = 256;

impl BoundRule {
    fn check_columns(&self, inputs: &RuleInputs<'_>, out: &[bool]) -> Result<usize, EvalError> {
        let bar_count = inputs.bars.bar_count().ok_or(EvalError::RaggedBars)?;
        if out.len() != bar_count {
            return Err(EvalError::OutputLength {
                output_len: out.len(),
                bar_count,
            });
        }
        for &slot in &self.reads.indicator_slots {
            if inputs.indicators.get(slot).map(|column| column.len()) != Some(bar_count) {
                return Err(EvalError::IndicatorColumn { slot, bar_count });
            }
        }
        Ok(bar_count)
    }

    /// [`BoundRule::eval_into`] column by column: each op runs over a block of
    /// [`COLUMN_BLOCK`] bars before the next, so the op dispatch is paid once per block, not
    /// once per bar. The per-value arithmetic is [`BoundRule::eval_into`]'s, in the same
    /// order, so the results are identical. `stack` is scratch space (resized here, reused
    /// across calls).
    pub fn eval_columns(
        &self,
        inputs: &RuleInputs<'_>,
        out: &mut [bool],
        stack: &mut Vec<f64>,
    ) -> Result<(), EvalError> {
        let bar_count = self.check_columns(inputs, out)?;
        const B: usize = COLUMN_BLOCK;
        stack.clear();
        stack.resize(MAX_STACK_DEPTH * B, 0.0);
        let mut start = 0;
        while start < bar_count {
            let len = B.min(bar_count - start);
            let mut top = 0usize;
            for op in &self.ops {
                match *op {
                    BoundOp::Load { source, lag_bars } => {
                        let dst = &mut stack[top * B..top * B + len];
                        match source {
                            BoundSource::Const { value, condition } => {
                                let missing = if condition { 0.0 } else { f64::NAN };
                                for (i, d) in dst.iter_mut().enumerate() {
                                    *d = if start + i >= lag_bars {
                                        value
                                    } else {
                                        missing
                                    };
                                }
                            }
                            BoundSource::Series(_) | BoundSource::Indicator(_) => {
                                let column = match source {
                                    BoundSource::Series(series) => inputs.bars.get(series),
                                    BoundSource::Indicator(slot) => inputs.indicators[slot],
                                    BoundSource::Const { .. } => &[],
                                };
                                // Bars before the lag read NaN; the rest read `lag_bars` back.
                                let first = lag_bars.saturating_sub(start).min(len);
                                dst[..first].fill(f64::NAN);
                                if first < len {
                                    let from = start + first - lag_bars;
                                    dst[first..].copy_from_slice(&column[from..from + len - first]);
                                }
                            }
                        }
                        top += 1;
                    }
                    BoundOp::Neg => {
                        for x in &mut stack[(top - 1) * B..(top - 1) * B + len] {
                            *x = -*x;
                        }
                    }
                    BoundOp::Not => {
                        for x in &mut stack[(top - 1) * B..(top - 1) * B + len] {
                            *x = 1.0 - *x;
                        }
                    }
                    BoundOp::PrevGuard {
                        lag_bars,
                        condition,
                    } => {
                        let guarded = lag_bars.saturating_sub(start).min(len);
                        let missing = if condition { 0.0 } else { f64::NAN };
                        stack[(top - 1) * B..(top - 1) * B + guarded].fill(missing);
                    }
                    BoundOp::Binary(op) => {
                        let (lower, upper) = stack.split_at_mut((top - 1) * B);
                        let lhs = &mut lower[(top - 2) * B..(top - 2) * B + len];
                        let rhs = &upper[..len];
                        binary_columns(op, lhs, rhs);
                        top -= 1;
                    }
                    BoundOp::Cross { above, lag_bars } => {
                        let base = (top - 4) * B;
                        let (dst, rest) = stack[base..].split_at_mut(B);
                        let (b_now, rest) = rest.split_at(B);
                        let (a_prev, b_prev) = rest.split_at(B);
                        for i in 0..len {
                            let (a_now, b_now, a_prev, b_prev) =
                                (dst[i], b_now[i], a_prev[i], b_prev[i]);
                            let crossed = if above {
                                a_now > b_now && a_prev <= b_prev
                            } else {
                                a_now < b_now && a_prev >= b_prev
                            };
                            dst[i] = truth(start + i >= lag_bars && crossed);
                        }
                        top -= 3;
                    }
                }
            }
            for (o, v) in out[start..start + len].iter_mut().zip(&stack[..len]) {
                *o = *v != 0.0;
            }
            start += len;
        }
        Ok(())
    }

    /// Evaluates the rule at every bar into `out` (one value per bar).
    pub fn eval_into(&self, inputs: &RuleInputs<'_>, out: &mut [bool]) -> Result<(), EvalError> {
        let bar_count = inputs.bars.bar_count().ok_or(EvalError::RaggedBars)?;
        if out.len() != bar_count {
            return Err(EvalError::OutputLength {
                output_len: out.len(),
                bar_count,
            });
        }
        for &slot in &self.reads.indicator_slots {
            if inputs.indicators.get(slot).map(|column| column.len()) != Some(bar_count) {
                return Err(EvalError::IndicatorColumn { slot, bar_count });
            }
        }
        for (bar, signal) in out.iter_mut().enumerate() {
            *signal = self.eval_bar(inputs, bar);
        }
        Ok(())
    }

    /// Evaluates the rule at one bar; columns must have been checked by the caller.
    #[inline]
    fn eval_bar(&self, inputs: &RuleInputs<'_>, bar: usize) -> bool {
        let mut stack = [0.0_f64; MAX_STACK_DEPTH];
        let mut top = 0_usize;
        for op in &self.ops {
            match *op {
                BoundOp::Load { source, lag_bars } => {
                    let value = match source {
                        BoundSource::Const { value, condition } => {
                            if bar >= lag_bars {
                                value
                            } else if condition {
                                0.0
                            } else {
                                f64::NAN
                            }
                        }
                        BoundSource::Series(series) => match bar.checked_sub(lag_bars) {
                            Some(at) => inputs.bars.get(series)[at],
                            None => f64::NAN,
                        },
                        BoundSource::Indicator(slot) => match bar.checked_sub(lag_bars) {
                            Some(at) => inputs.indicators[slot][at],
                            None => f64::NAN,
                        },
                    };
                    stack[top] = value;
                    top += 1;
                }
                BoundOp::Neg => stack[top - 1] = -stack[top - 1],
                BoundOp::Not => stack[top - 1] = 1.0 - stack[top - 1],
                BoundOp::PrevGuard {
                    lag_bars,
                    condition,
                } => {
                    if bar < lag_bars {
                        stack[top - 1] = if condition { 0.0 } else { f64::NAN };
                    }
                }
                BoundOp::Binary(op) => {
                    let rhs = stack[top - 1];
                    let lhs = stack[top - 2];
                    top -= 1;
                    stack[top - 1] = match op {
                        BinaryOp::Add => lhs + rhs,
                        BinaryOp::Sub => lhs - rhs,
                        BinaryOp::Mul => lhs * rhs,
                        BinaryOp::Div => lhs / rhs,
                        BinaryOp::Lt => truth(lhs < rhs),
                        BinaryOp::Le => truth(lhs <= rhs),
                        BinaryOp::Gt => truth(lhs > rhs),
                        BinaryOp::Ge => truth(lhs >= rhs),
                        BinaryOp::Eq => truth(lhs == rhs),
                        BinaryOp::Ne => truth(!lhs.is_nan() && !rhs.is_nan() && lhs != rhs),
                        BinaryOp::And => truth(lhs != 0.0 && rhs != 0.0),
                        BinaryOp::Or => truth(lhs != 0.0 || rhs != 0.0),
                    };
                }
                BoundOp::Cross { above, lag_bars } => {
                    let (a_now, b_now, a_prev, b_prev) = (
                        stack[top - 4],
                        stack[top - 3],
                        stack[top - 2],
                        stack[top - 1],
                    );
                    top -= 3;
                    let crossed = if above {
                        a_now > b_now && a_prev <= b_prev
                    } else {
                        a_now < b_now && a_prev >= b_prev
                    };
                    stack[top - 1] = truth(bar >= lag_bars && crossed);
                }
            }
        }
        stack[0] != 0.0
    }
}
