//! Type-checking and compilation of a parsed expression to a flat postfix program.

use std::collections::BTreeSet;

use super::parse::{BinaryOp, Expr, ExprKind, Func};
use super::{ExprError, ExprErrorKind, MAX_LITERAL_LAG_BARS, MAX_STACK_DEPTH, NameResolver, parse};
use crate::series::Series;
use crate::spec::ParamValue;

/// The two expression types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// A number (series or scalar).
    Number,
    /// A condition (true/false).
    Condition,
}

impl ValueType {
    fn noun(self) -> &'static str {
        match self {
            ValueType::Number => "a number",
            ValueType::Condition => "a condition",
        }
    }
}

/// What a name resolves to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A bar series.
    Series(Series),
    /// An indicator output column, by flat output slot.
    Indicator {
        /// Index into the indicator output columns given at evaluation.
        slot: usize,
    },
    /// A param, by index into the param set.
    Param {
        /// Index into the param set.
        index: usize,
        /// Its value type.
        kind: ParamKind,
    },
}

/// The value kind of a param as expressions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Integer values; `min_value` is the smallest value its domain allows.
    Int {
        /// Smallest value in the param's domain.
        min_value: i64,
    },
    /// Float values.
    Float,
    /// Boolean values (a condition).
    Bool,
}

/// A look-back in bars: a constant plus the values of some integer params.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lag {
    /// Constant part, in bars.
    pub bars: u64,
    /// Param indices whose values add to the look-back.
    pub params: Vec<usize>,
}

impl Lag {
    fn plus(&self, bars: u64, param: Option<usize>) -> Lag {
        let mut params = self.params.clone();
        params.extend(param);
        params.sort_unstable();
        Lag {
            bars: self.bars + bars,
            params,
        }
    }
}

/// What a rule reads: the engine computes only these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// Series read, sorted.
    pub series: Vec<Series>,
    /// Indicator output slots read, sorted.
    pub indicator_slots: Vec<usize>,
    /// Param indices read (values and `prev` lags), sorted.
    pub params: Vec<usize>,
}

pub(super) type LagId = usize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Source {
    Series(Series),
    Indicator(usize),
    Number(f64),
    Bool(bool),
    Param { index: usize, condition: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Op {
    Load { source: Source, lag: LagId },
    Neg,
    Not,
    Binary(BinaryOp),
    Cross { above: bool, lag: LagId },
    PrevGuard { lag: LagId, condition: bool },
}

/// What a [`OpView::Load`] pushes (a read-only view of the compiled program).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceView {
    /// A bar series.
    Series(Series),
    /// An indicator output slot.
    Indicator(usize),
    /// A number literal.
    Number(f64),
    /// A boolean literal.
    Bool(bool),
    /// A param by index; `condition` when it is a boolean.
    Param {
        /// Index into the param set.
        index: usize,
        /// Whether the param is a condition.
        condition: bool,
    },
}

/// One postfix op, as [`Rule::ops_view`] shows it. Semantics: `BoundRule::eval_into`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpView {
    /// Push a value read `lag` bars back (`lag` indexes [`Rule::lags`]).
    Load {
        /// What is read.
        source: SourceView,
        /// Look-back id.
        lag: usize,
    },
    /// Negate the top number.
    Neg,
    /// Negate the top condition.
    Not,
    /// Pop two, push one.
    Binary(BinaryOp),
    /// Pop `a_now, b_now, a_prev, b_prev`, push the cross condition.
    Cross {
        /// `cross_above` (else `cross_below`).
        above: bool,
        /// Look-back id of the previous values.
        lag: usize,
    },
    /// `prev` guard: before the look-back the top becomes NaN (number) or false (condition).
    PrevGuard {
        /// Look-back id.
        lag: usize,
        /// Whether the value is a condition.
        condition: bool,
    },
}

/// A type-checked rule: a postfix program over slot indices, not yet bound to params.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    source_text: String,
    ops: Vec<Op>,
    lags: Vec<Lag>,
    reads: Reads,
    max_stack: usize,
}

impl Rule {
    /// The expression text it was compiled from.
    pub fn source_text(&self) -> &str {
        &self.source_text
    }

    /// What the rule reads.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// All distinct look-backs of the rule (the first is zero); the largest under one param
    /// set is [`BoundRule::lookback_bars`].
    pub fn lags(&self) -> &[Lag] {
        &self.lags
    }

    /// Number of postfix ops (for diagnostics).
    pub fn op_count(&self) -> usize {
        self.ops.len()
    }

    /// The postfix program, read-only, for code generators (the GPU kernel compiles it to
    /// WGSL). `lag` fields index [`Rule::lags`].
    pub fn ops_view(&self) -> impl Iterator<Item = OpView> + '_ {
        self.ops.iter().map(|op| match *op {
            Op::Load { source, lag } => OpView::Load {
                source: match source {
                    Source::Series(series) => SourceView::Series(series),
                    Source::Indicator(slot) => SourceView::Indicator(slot),
                    Source::Number(value) => SourceView::Number(value),
                    Source::Bool(flag) => SourceView::Bool(flag),
                    Source::Param { index, condition } => SourceView::Param { index, condition },
                },
                lag,
            },
            Op::Neg => OpView::Neg,
            Op::Not => OpView::Not,
            Op::Binary(op) => OpView::Binary(op),
            Op::Cross { above, lag } => OpView::Cross { above, lag },
            Op::PrevGuard { lag, condition } => OpView::PrevGuard { lag, condition },
        })
    }

    /// Inlines one param set (indexed as the param space) and resolves look-backs.
    pub fn bind(&self, params: &[ParamValue]) -> Result<BoundRule, BindError> {
        let param_number = |index: usize| -> Result<f64, BindError> {
            params
                .get(index)
                .and_then(ParamValue::as_f64)
                .ok_or(BindError::ParamNotNumeric { index })
        };
        let mut lag_bars = Vec::with_capacity(self.lags.len());
        for lag in &self.lags {
            let mut total = lag.bars;
            for &index in &lag.params {
                let bars = match params.get(index) {
                    Some(&ParamValue::Int(value)) if value >= 0 => value as u64,
                    _ => return Err(BindError::LagNotNonNegativeInt { index }),
                };
                total = total.saturating_add(bars);
            }
            lag_bars.push(usize::try_from(total).unwrap_or(usize::MAX));
        }
        let mut ops = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            ops.push(match *op {
                Op::Load { source, lag } => {
                    let source = match source {
                        Source::Series(series) => BoundSource::Series(series),
                        Source::Indicator(slot) => BoundSource::Indicator(slot),
                        Source::Number(value) => BoundSource::Const {
                            value,
                            condition: false,
                        },
                        Source::Bool(flag) => BoundSource::Const {
                            value: f64::from(u8::from(flag)),
                            condition: true,
                        },
                        Source::Param { index, condition } => {
                            let value = if condition {
                                match params.get(index) {
                                    Some(&ParamValue::Bool(flag)) => f64::from(u8::from(flag)),
                                    _ => return Err(BindError::ParamNotBool { index }),
                                }
                            } else {
                                param_number(index)?
                            };
                            BoundSource::Const { value, condition }
                        }
                    };
                    BoundOp::Load {
                        source,
                        lag_bars: lag_bars[lag],
                    }
                }
                Op::Neg => BoundOp::Neg,
                Op::Not => BoundOp::Not,
                Op::Binary(op) => BoundOp::Binary(op),
                Op::Cross { above, lag } => BoundOp::Cross {
                    above,
                    lag_bars: lag_bars[lag],
                },
                Op::PrevGuard { lag, condition } => BoundOp::PrevGuard {
                    lag_bars: lag_bars[lag],
                    condition,
                },
            });
        }
        Ok(BoundRule {
            ops,
            lookback_bars: lag_bars.iter().copied().max().unwrap_or(0),
            reads: self.reads.clone(),
        })
    }
}

/// A param set that does not fit a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// A param used as a number holds no number (or is missing).
    #[error("param #{index} is used as a number but holds no number")]
    ParamNotNumeric {
        /// Param index.
        index: usize,
    },
    /// A param used as a condition holds no boolean.
    #[error("param #{index} is used as a condition but holds no boolean")]
    ParamNotBool {
        /// Param index.
        index: usize,
    },
    /// A param used as a `prev` look-back is not a non-negative integer.
    #[error("param #{index} is a prev() look-back but is not a non-negative integer")]
    LagNotNonNegativeInt {
        /// Param index.
        index: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum BoundSource {
    Series(Series),
    Indicator(usize),
    Const { value: f64, condition: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum BoundOp {
    Load {
        source: BoundSource,
        lag_bars: usize,
    },
    Neg,
    Not,
    Binary(BinaryOp),
    Cross {
        above: bool,
        lag_bars: usize,
    },
    PrevGuard {
        lag_bars: usize,
        condition: bool,
    },
}

/// A rule with params inlined: ready for [`BoundRule::eval_into`].
#[derive(Clone, Debug, PartialEq)]
pub struct BoundRule {
    pub(super) ops: Vec<BoundOp>,
    pub(super) lookback_bars: usize,
    pub(super) reads: Reads,
}

impl BoundRule {
    /// The largest look-back of any `prev`/cross, in bars: the rule is false before it.
    pub fn lookback_bars(&self) -> usize {
        self.lookback_bars
    }

    /// What the rule reads.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }
}

/// Parses and type-checks `text` against `names`, compiling a rule that must be a condition.
pub fn compile(text: &str, names: &dyn NameResolver) -> Result<Rule, ExprError> {
    let expr = parse(text)?;
    let mut compiler = Compiler {
        names,
        ops: Vec::new(),
        lags: vec![Lag::default()],
        series: BTreeSet::new(),
        slots: BTreeSet::new(),
        params: BTreeSet::new(),
        depth: 0,
        max_stack: 0,
    };
    let value_type = compiler.emit(&expr, 0)?;
    if value_type != ValueType::Condition {
        return Err(type_error(
            &expr,
            "a rule must be a condition (true/false), found a number; compare it, e.g. `x > 0`"
                .to_string(),
        ));
    }
    Ok(Rule {
        source_text: text.to_string(),
        ops: compiler.ops,
        lags: compiler.lags,
        reads: Reads {
            series: compiler.series.into_iter().collect(),
            indicator_slots: compiler.slots.into_iter().collect(),
            params: compiler.params.into_iter().collect(),
        },
        max_stack: compiler.max_stack,
    })
}

fn type_error(expr: &Expr, message: String) -> ExprError {
    ExprError {
        span: expr.span.clone(),
        kind: ExprErrorKind::Type,
        message,
    }
}

struct Compiler<'n> {
    names: &'n dyn NameResolver,
    ops: Vec<Op>,
    lags: Vec<Lag>,
    series: BTreeSet<Series>,
    slots: BTreeSet<usize>,
    params: BTreeSet<usize>,
    depth: usize,
    max_stack: usize,
}

impl Compiler<'_> {
    fn lag_id(&mut self, lag: Lag) -> LagId {
        if let Some(id) = self.lags.iter().position(|known| *known == lag) {
            return id;
        }
        self.lags.push(lag);
        self.lags.len() - 1
    }

    fn push(&mut self, op: Op, expr: &Expr) -> Result<(), ExprError> {
        let pops = match op {
            Op::Load { .. } => 0,
            Op::Neg | Op::Not | Op::PrevGuard { .. } => 1,
            Op::Binary(_) => 2,
            Op::Cross { .. } => 4,
        };
        self.depth = self.depth + 1 - pops;
        self.max_stack = self.max_stack.max(self.depth);
        if self.max_stack > MAX_STACK_DEPTH {
            return Err(ExprError {
                span: expr.span.clone(),
                kind: ExprErrorKind::TooDeep,
                message: format!(
                    "expression needs more than {MAX_STACK_DEPTH} stack slots; split it into simpler rules"
                ),
            });
        }
        self.ops.push(op);
        Ok(())
    }

    fn expect(
        &mut self,
        expr: &Expr,
        lag: LagId,
        want: ValueType,
        what: &str,
    ) -> Result<(), ExprError> {
        let found = self.emit(expr, lag)?;
        if found == want {
            Ok(())
        } else {
            Err(type_error(
                expr,
                format!("{what} needs {}, found {}", want.noun(), found.noun()),
            ))
        }
    }

    fn emit(&mut self, expr: &Expr, lag: LagId) -> Result<ValueType, ExprError> {
        match &expr.kind {
            ExprKind::Number(value) => {
                self.push(
                    Op::Load {
                        source: Source::Number(*value),
                        lag,
                    },
                    expr,
                )?;
                Ok(ValueType::Number)
            }
            ExprKind::Bool(flag) => {
                self.push(
                    Op::Load {
                        source: Source::Bool(*flag),
                        lag,
                    },
                    expr,
                )?;
                Ok(ValueType::Condition)
            }
            ExprKind::Name { name, field } => {
                let operand =
                    self.names
                        .resolve(name, field.as_deref())
                        .map_err(|(kind, message)| ExprError {
                            span: expr.span.clone(),
                            kind,
                            message,
                        })?;
                let (source, value_type) = match operand {
                    Operand::Series(series) => {
                        self.series.insert(series);
                        (Source::Series(series), ValueType::Number)
                    }
                    Operand::Indicator { slot } => {
                        self.slots.insert(slot);
                        (Source::Indicator(slot), ValueType::Number)
                    }
                    Operand::Param { index, kind } => {
                        self.params.insert(index);
                        let condition = kind == ParamKind::Bool;
                        let value_type = if condition {
                            ValueType::Condition
                        } else {
                            ValueType::Number
                        };
                        (Source::Param { index, condition }, value_type)
                    }
                };
                self.push(Op::Load { source, lag }, expr)?;
                Ok(value_type)
            }
            ExprKind::Neg(inner) => {
                self.expect(inner, lag, ValueType::Number, "unary `-`")?;
                self.push(Op::Neg, expr)?;
                Ok(ValueType::Number)
            }
            ExprKind::Not(inner) => {
                self.expect(inner, lag, ValueType::Condition, "`not`")?;
                self.push(Op::Not, expr)?;
                Ok(ValueType::Condition)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let result = match op {
                    BinaryOp::And | BinaryOp::Or => {
                        let what = format!("`{}`", op.symbol());
                        self.expect(lhs, lag, ValueType::Condition, &what)?;
                        self.expect(rhs, lag, ValueType::Condition, &what)?;
                        ValueType::Condition
                    }
                    BinaryOp::Eq | BinaryOp::Ne => {
                        let left = self.emit(lhs, lag)?;
                        let right = self.emit(rhs, lag)?;
                        if left != right {
                            return Err(type_error(
                                rhs,
                                format!(
                                    "`{}` compares like with like: the left side is {}, the right side is {}",
                                    op.symbol(),
                                    left.noun(),
                                    right.noun()
                                ),
                            ));
                        }
                        ValueType::Condition
                    }
                    BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                        let what = format!("`{}`", op.symbol());
                        self.expect(lhs, lag, ValueType::Number, &what)?;
                        self.expect(rhs, lag, ValueType::Number, &what)?;
                        ValueType::Condition
                    }
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                        let what = format!("`{}`", op.symbol());
                        self.expect(lhs, lag, ValueType::Number, &what)?;
                        self.expect(rhs, lag, ValueType::Number, &what)?;
                        ValueType::Number
                    }
                };
                self.push(Op::Binary(*op), expr)?;
                Ok(result)
            }
            ExprKind::Call { func, args } => {
                if args.len() != 2 {
                    return Err(type_error(
                        expr,
                        format!("{}() takes 2 arguments, found {}", func.name(), args.len()),
                    ));
                }
                match func {
                    Func::CrossAbove | Func::CrossBelow => {
                        let previous = self.lags[lag].plus(1, None);
                        let previous = self.lag_id(previous);
                        for (position, arg) in args.iter().enumerate() {
                            let what = format!("{}() argument {}", func.name(), position + 1);
                            self.expect(arg, lag, ValueType::Number, &what)?;
                        }
                        for arg in args {
                            self.emit(arg, previous)?;
                        }
                        self.push(
                            Op::Cross {
                                above: *func == Func::CrossAbove,
                                lag: previous,
                            },
                            expr,
                        )?;
                        Ok(ValueType::Condition)
                    }
                    Func::Prev => {
                        let shifted = self.prev_lag(&args[1], lag)?;
                        let value_type = self.emit(&args[0], shifted)?;
                        self.push(
                            Op::PrevGuard {
                                lag: shifted,
                                condition: value_type == ValueType::Condition,
                            },
                            expr,
                        )?;
                        Ok(value_type)
                    }
                }
            }
        }
    }

    fn prev_lag(&mut self, count: &Expr, lag: LagId) -> Result<LagId, ExprError> {
        let bad = || {
            type_error(
                count,
                "prev() look-back must be a non-negative integer literal or an integer param"
                    .to_string(),
            )
        };
        let shifted = match &count.kind {
            ExprKind::Number(value) => {
                if value.fract() != 0.0 || *value < 0.0 || *value > MAX_LITERAL_LAG_BARS as f64 {
                    return Err(bad());
                }
                self.lags[lag].plus(*value as u64, None)
            }
            ExprKind::Name { name, field: None } => {
                let operand =
                    self.names
                        .resolve(name, None)
                        .map_err(|(kind, message)| ExprError {
                            span: count.span.clone(),
                            kind,
                            message,
                        })?;
                match operand {
                    Operand::Param {
                        index,
                        kind: ParamKind::Int { min_value },
                    } if min_value >= 0 => {
                        self.params.insert(index);
                        self.lags[lag].plus(0, Some(index))
                    }
                    _ => return Err(bad()),
                }
            }
            _ => return Err(bad()),
        };
        Ok(self.lag_id(shifted))
    }
}
