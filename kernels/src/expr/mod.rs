//! Rule expressions: parse, type-check against the spec's names, compile to a flat postfix
//! program, and evaluate it over bar columns.
//!
//! # Language
//! Numbers (`30`, `0.5`, `1e-3`), `true`/`false`, the series `open high low close volume`,
//! indicator outputs (`rsi` for a single-output indicator, `bbands.upper`, `macd.hist`,
//! `stoch.slowk` for multi-output ones), params, `+ - * /`, unary `-`, comparisons
//! `< <= > >= == !=`, `and or not`, parentheses, `cross_above(a, b)`, `cross_below(a, b)` and
//! `prev(x, n)` where `n` is a non-negative integer literal or an integer param.
//! Precedence, loosest first: `or` < `and` < `not` < comparison < `+ -` < `* /` < unary `-`.
//! Comparisons do not chain (`a < b < c` is an error). Types: number (series or scalar) and
//! condition (boolean); a rule must be a condition. An expression holds at most
//! [`MAX_EXPR_TOKENS`] tokens, nests at most [`MAX_EXPR_NESTING`] levels and needs at most
//! [`MAX_STACK_DEPTH`] evaluation stack slots.
//!
//! # NaN policy
//! * Arithmetic propagates NaN (IEEE 754).
//! * Every comparison involving NaN is false, `!=` included, so warm-up bars (indicator NaN)
//!   give no signal. `not` of such a comparison is true: write `not (x < y)` knowingly.
//! * `cross_above(a, b)` at bar `t` is `a[t] > b[t] and a[t-1] <= b[t-1]`; it is false at
//!   `t = 0` (more generally when `t` is below its look-back) or when any of the four is NaN.
//!   `cross_below` mirrors it with `<` and `>=`.
//! * `prev(x, n)` at `t < n` is NaN for a number and false for a condition.
//!
//! # Evaluation
//! [`Rule`] is the checked program over slot indices; [`Rule::bind`] inlines one param set and
//! resolves `prev` lags, giving a [`BoundRule`] whose [`BoundRule::eval_into`] fills one
//! `bool` per bar into a caller-provided slice. The per-bar loop allocates nothing and never
//! fails: column lengths are checked before it.

mod compile;
mod eval;
mod parse;

use std::ops::Range;

pub use compile::{
    BindError, BoundRule, Lag, OpView, Operand, ParamKind, Reads, Rule, SourceView, ValueType,
    compile,
};
pub use eval::{COLUMN_BLOCK, EvalError, RuleInputs};
pub use parse::{BinaryOp, Expr, ExprKind, Func, RESERVED_WORDS, is_identifier, parse};

/// The most values a program may hold on its evaluation stack at once.
pub const MAX_STACK_DEPTH: usize = 32;

/// The most tokens one expression may hold. Real rules hold a few dozen; the bound keeps the
/// tree, and so the compiler's and the tree's drop's recursion, a few hundred levels deep at
/// most, whatever the text.
pub const MAX_EXPR_TOKENS: usize = 512;

/// The deepest the parser may recurse: parentheses, call arguments, unary `-` and `not`, each
/// one level. Real rules nest a few levels; without the bound a rule of 2,000 nested
/// parentheses overflowed the stack and aborted the process.
pub const MAX_EXPR_NESTING: usize = 64;

/// The largest `prev` look-back accepted as a literal, in bars.
pub const MAX_LITERAL_LAG_BARS: u64 = 1_000_000;

/// What went wrong in an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The text does not parse.
    Syntax,
    /// A name is neither a series, an indicator output nor a param.
    UnknownName,
    /// An operand has the wrong type (number vs condition), or a call the wrong arity.
    Type,
    /// The expression is nested too deeply for the evaluation stack or for the parser
    /// ([`MAX_EXPR_NESTING`]), or holds more than [`MAX_EXPR_TOKENS`] tokens.
    TooDeep,
}

/// An expression error, located by byte range inside the expression text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte range inside the expression text.
    pub span: Range<usize>,
    /// The kind of error.
    pub kind: ExprErrorKind,
    /// Human-readable message, without location.
    pub message: String,
}

/// Resolves names met in an expression; the spec implements it over its series, indicators
/// and params.
pub trait NameResolver {
    /// Resolves `name` or `name.field`; the error is a kind and a message without location.
    fn resolve(&self, name: &str, field: Option<&str>) -> Result<Operand, (ExprErrorKind, String)>;
}
