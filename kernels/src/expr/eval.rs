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

/// Where a stack entry of [`BoundRule::eval_columns`] lives for the current block: written
/// into the stack's scratch rows, still in its source column (a load with the whole block
/// past its lag), or one value for every bar of the block (a constant, or an op on two). Loads
/// are not copied: a binary op reads its operands where they are and writes the result into
/// the lower entry's stack row.
#[derive(Clone, Copy)]
enum Entry<'c> {
    Stack,
    Column(&'c [f64]),
    Scalar(f64),
}

/// An operand of [`apply`]: the destination row itself, a column, or one value.
trait Operand: Copy {
    fn at(self, dst: &[f64], i: usize) -> f64;
}

#[derive(Clone, Copy)]
struct InPlace;

impl Operand for InPlace {
    #[inline(always)]
    fn at(self, dst: &[f64], i: usize) -> f64 {
        dst[i]
    }
}

impl Operand for &[f64] {
    #[inline(always)]
    fn at(self, _: &[f64], i: usize) -> f64 {
        self[i]
    }
}

impl Operand for f64 {
    #[inline(always)]
    fn at(self, _: &[f64], _: usize) -> f64 {
        self
    }
}

/// `dst[i] = f(lhs[i], rhs[i])` for every bar of the block.
#[inline(always)]
fn apply(dst: &mut [f64], lhs: impl Operand, rhs: impl Operand, f: impl Fn(f64, f64) -> f64) {
    for i in 0..dst.len() {
        dst[i] = f(lhs.at(dst, i), rhs.at(dst, i));
    }
}

/// The value of one binary op; [`BoundRule::eval_bar`] computes the same.
#[inline(always)]
fn binary_value(op: BinaryOp, l: f64, r: f64) -> f64 {
    match op {
        BinaryOp::Add => l + r,
        BinaryOp::Sub => l - r,
        BinaryOp::Mul => l * r,
        BinaryOp::Div => l / r,
        BinaryOp::Lt => truth(l < r),
        BinaryOp::Le => truth(l <= r),
        BinaryOp::Gt => truth(l > r),
        BinaryOp::Ge => truth(l >= r),
        BinaryOp::Eq => truth(l == r),
        BinaryOp::Ne => truth(!l.is_nan() && !r.is_nan() && l != r),
        BinaryOp::And => truth(l != 0.0 && r != 0.0),
        BinaryOp::Or => truth(l != 0.0 || r != 0.0),
    }
}

/// `dst = lhs op rhs` over a block, with the op chosen once per block (each arm is its own
/// loop, which the compiler vectorises).
#[inline(always)]
fn binary_block(op: BinaryOp, dst: &mut [f64], lhs: impl Operand, rhs: impl Operand) {
    match op {
        BinaryOp::Add => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Add, l, r)),
        BinaryOp::Sub => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Sub, l, r)),
        BinaryOp::Mul => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Mul, l, r)),
        BinaryOp::Div => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Div, l, r)),
        BinaryOp::Lt => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Lt, l, r)),
        BinaryOp::Le => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Le, l, r)),
        BinaryOp::Gt => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Gt, l, r)),
        BinaryOp::Ge => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Ge, l, r)),
        BinaryOp::Eq => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Eq, l, r)),
        BinaryOp::Ne => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Ne, l, r)),
        BinaryOp::And => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::And, l, r)),
        BinaryOp::Or => apply(dst, lhs, rhs, |l, r| binary_value(BinaryOp::Or, l, r)),
    }
}

/// Writes entry `index` into its stack row (`row`), if it is not there yet.
fn materialize(entries: &mut [Entry<'_>], index: usize, row: &mut [f64]) {
    match entries[index] {
        Entry::Stack => {}
        Entry::Column(column) => row.copy_from_slice(column),
        Entry::Scalar(value) => row.fill(value),
    }
    entries[index] = Entry::Stack;
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
        let mut entries = [Entry::Stack; MAX_STACK_DEPTH];
        let mut start = 0;
        while start < bar_count {
            let len = B.min(bar_count - start);
            let row = |k: usize| k * B..k * B + len;
            let mut top = 0usize;
            for op in &self.ops {
                match *op {
                    BoundOp::Load { source, lag_bars } => {
                        entries[top] = match source {
                            BoundSource::Const { value, .. } if start >= lag_bars => {
                                Entry::Scalar(value)
                            }
                            BoundSource::Const { value, condition } => {
                                let missing = if condition { 0.0 } else { f64::NAN };
                                let dst = &mut stack[top * B..top * B + len];
                                for (i, d) in dst.iter_mut().enumerate() {
                                    *d = if start + i >= lag_bars {
                                        value
                                    } else {
                                        missing
                                    };
                                }
                                Entry::Stack
                            }
                            BoundSource::Series(_) | BoundSource::Indicator(_) => {
                                let column = match source {
                                    BoundSource::Series(series) => inputs.bars.get(series),
                                    BoundSource::Indicator(slot) => inputs.indicators[slot],
                                    BoundSource::Const { .. } => &[],
                                };
                                if start >= lag_bars {
                                    let from = start - lag_bars;
                                    Entry::Column(&column[from..from + len])
                                } else {
                                    // Bars before the lag read NaN; the rest read `lag_bars`
                                    // back.
                                    let dst = &mut stack[top * B..top * B + len];
                                    let first = (lag_bars - start).min(len);
                                    dst[..first].fill(f64::NAN);
                                    if first < len {
                                        let from = start + first - lag_bars;
                                        dst[first..]
                                            .copy_from_slice(&column[from..from + len - first]);
                                    }
                                    Entry::Stack
                                }
                            }
                        };
                        top += 1;
                    }
                    BoundOp::Neg => {
                        let r = row(top - 1);
                        materialize(&mut entries, top - 1, &mut stack[r.clone()]);
                        for x in &mut stack[r] {
                            *x = -*x;
                        }
                    }
                    BoundOp::Not => {
                        let r = row(top - 1);
                        materialize(&mut entries, top - 1, &mut stack[r.clone()]);
                        for x in &mut stack[r] {
                            *x = 1.0 - *x;
                        }
                    }
                    BoundOp::PrevGuard {
                        lag_bars,
                        condition,
                    } => {
                        let guarded = lag_bars.saturating_sub(start).min(len);
                        if guarded > 0 {
                            let r = row(top - 1);
                            materialize(&mut entries, top - 1, &mut stack[r.clone()]);
                            let missing = if condition { 0.0 } else { f64::NAN };
                            stack[r.start..r.start + guarded].fill(missing);
                        }
                    }
                    BoundOp::Binary(op) => {
                        let (lower, upper) = stack.split_at_mut((top - 1) * B);
                        let dst = &mut lower[(top - 2) * B..(top - 2) * B + len];
                        let rhs = &upper[..len];
                        entries[top - 2] = match (entries[top - 2], entries[top - 1]) {
                            (Entry::Scalar(l), Entry::Scalar(r)) => {
                                Entry::Scalar(binary_value(op, l, r))
                            }
                            (Entry::Stack, Entry::Stack) => {
                                binary_block(op, dst, InPlace, rhs);
                                Entry::Stack
                            }
                            (Entry::Stack, Entry::Column(r)) => {
                                binary_block(op, dst, InPlace, r);
                                Entry::Stack
                            }
                            (Entry::Stack, Entry::Scalar(r)) => {
                                binary_block(op, dst, InPlace, r);
                                Entry::Stack
                            }
                            (Entry::Column(l), Entry::Stack) => {
                                binary_block(op, dst, l, rhs);
                                Entry::Stack
                            }
                            (Entry::Column(l), Entry::Column(r)) => {
                                binary_block(op, dst, l, r);
                                Entry::Stack
                            }
                            (Entry::Column(l), Entry::Scalar(r)) => {
                                binary_block(op, dst, l, r);
                                Entry::Stack
                            }
                            (Entry::Scalar(l), Entry::Stack) => {
                                binary_block(op, dst, l, rhs);
                                Entry::Stack
                            }
                            (Entry::Scalar(l), Entry::Column(r)) => {
                                binary_block(op, dst, l, r);
                                Entry::Stack
                            }
                        };
                        top -= 1;
                    }
                    BoundOp::Cross { above, lag_bars } => {
                        for k in top - 4..top {
                            let r = row(k);
                            materialize(&mut entries, k, &mut stack[r]);
                        }
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
            let dst = &mut out[start..start + len];
            match entries[0] {
                Entry::Stack => {
                    for (o, v) in dst.iter_mut().zip(&stack[..len]) {
                        *o = *v != 0.0;
                    }
                }
                Entry::Column(column) => {
                    for (o, v) in dst.iter_mut().zip(column) {
                        *o = *v != 0.0;
                    }
                }
                Entry::Scalar(value) => dst.fill(value != 0.0),
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

    /// Evaluates the rule at bar `bar` of the columns only (the streaming signal engine:
    /// the columns hold the last bars, `bar` the newest), by the same per-bar code as
    /// [`BoundRule::eval_into`].
    pub fn eval_at(&self, inputs: &RuleInputs<'_>, bar: usize) -> Result<bool, EvalError> {
        let bar_count = inputs.bars.bar_count().ok_or(EvalError::RaggedBars)?;
        if bar >= bar_count {
            return Err(EvalError::OutputLength {
                output_len: bar + 1,
                bar_count,
            });
        }
        for &slot in &self.reads.indicator_slots {
            if inputs.indicators.get(slot).map(|column| column.len()) != Some(bar_count) {
                return Err(EvalError::IndicatorColumn { slot, bar_count });
            }
        }
        Ok(self.eval_bar(inputs, bar))
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
                    stack[top - 1] = binary_value(op, lhs, rhs);
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
