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

impl BoundRule {
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
