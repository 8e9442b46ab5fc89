//! Hand-written lexer and recursive-descent parser for rule expressions.

use std::ops::Range;

use super::{ExprError, ExprErrorKind, MAX_EXPR_NESTING, MAX_EXPR_TOKENS};

/// A parsed expression node with its byte span inside the expression text.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Byte range of the node inside the expression text.
    pub span: Range<usize>,
}

/// The kinds of expression nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number literal.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A series, indicator or param name, with an optional `.field` (indicator output).
    Name {
        /// The name before the dot.
        name: String,
        /// The output name after the dot, if any.
        field: Option<String>,
    },
    /// Unary minus.
    Neg(Box<Expr>),
    /// Logical `not`.
    Not(Box<Expr>),
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// A built-in function call.
    Call {
        /// The function.
        func: Func,
        /// Its arguments.
        args: Vec<Expr>,
    },
}

/// Binary operators, loosest binding first: `or`, `and`, comparisons, `+ -`, `* /`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }

    /// True for `< <= > >= == !=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne
        )
    }
}

/// Built-in functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `cross_above(a, b)`: `a[t] > b[t] and a[t-1] <= b[t-1]`.
    CrossAbove,
    /// `cross_below(a, b)`: `a[t] < b[t] and a[t-1] >= b[t-1]`.
    CrossBelow,
    /// `prev(x, n)`: `x` as of `n` bars ago.
    Prev,
}

impl Func {
    /// The function name as written.
    pub fn name(self) -> &'static str {
        match self {
            Func::CrossAbove => "cross_above",
            Func::CrossBelow => "cross_below",
            Func::Prev => "prev",
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        match name {
            "cross_above" => Some(Func::CrossAbove),
            "cross_below" => Some(Func::CrossBelow),
            "prev" => Some(Func::Prev),
            _ => None,
        }
    }
}

/// Words that cannot name a series, indicator or param.
pub const RESERVED_WORDS: [&str; 8] = [
    "and",
    "or",
    "not",
    "true",
    "false",
    "cross_above",
    "cross_below",
    "prev",
];

/// True for `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(BinaryOp),
    Not,
    LParen,
    RParen,
    Comma,
    Dot,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(value) => format!("number {value}"),
            Token::Ident(name) => format!("`{name}`"),
            Token::Op(op) => format!("`{}`", op.symbol()),
            Token::Not => "`not`".to_string(),
            Token::LParen => "`(`".to_string(),
            Token::RParen => "`)`".to_string(),
            Token::Comma => "`,`".to_string(),
            Token::Dot => "`.`".to_string(),
            Token::End => "end of expression".to_string(),
        }
    }
}

fn syntax(span: Range<usize>, message: String) -> ExprError {
    ExprError {
        span,
        kind: ExprErrorKind::Syntax,
        message,
    }
}

fn lex(text: &str) -> Result<Vec<(Token, Range<usize>)>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let byte = bytes[pos];
        let token = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                pos += 1;
                continue;
            }
            b'0'..=b'9' => {
                while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                    pos += 1;
                }
                if pos + 1 < bytes.len() && bytes[pos] == b'.' && bytes[pos + 1].is_ascii_digit() {
                    pos += 1;
                    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                        pos += 1;
                    }
                }
                if pos < bytes.len() && matches!(bytes[pos], b'e' | b'E') {
                    let mut exp = pos + 1;
                    if exp < bytes.len() && matches!(bytes[exp], b'+' | b'-') {
                        exp += 1;
                    }
                    if exp < bytes.len() && bytes[exp].is_ascii_digit() {
                        pos = exp;
                        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                            pos += 1;
                        }
                    }
                }
                let literal = &text[start..pos];
                let value = literal
                    .parse::<f64>()
                    .map_err(|_| syntax(start..pos, format!("invalid number `{literal}`")))?;
                Token::Number(value)
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while pos < bytes.len()
                    && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_')
                {
                    pos += 1;
                }
                match &text[start..pos] {
                    "and" => Token::Op(BinaryOp::And),
                    "or" => Token::Op(BinaryOp::Or),
                    "not" => Token::Not,
                    word => Token::Ident(word.to_string()),
                }
            }
            _ => {
                let next = bytes.get(pos + 1).copied();
                let (token, width) = match (byte, next) {
                    (b'<', Some(b'=')) => (Token::Op(BinaryOp::Le), 2),
                    (b'>', Some(b'=')) => (Token::Op(BinaryOp::Ge), 2),
                    (b'=', Some(b'=')) => (Token::Op(BinaryOp::Eq), 2),
                    (b'!', Some(b'=')) => (Token::Op(BinaryOp::Ne), 2),
                    (b'<', _) => (Token::Op(BinaryOp::Lt), 1),
                    (b'>', _) => (Token::Op(BinaryOp::Gt), 1),
                    (b'+', _) => (Token::Op(BinaryOp::Add), 1),
                    (b'-', _) => (Token::Op(BinaryOp::Sub), 1),
                    (b'*', _) => (Token::Op(BinaryOp::Mul), 1),
                    (b'/', _) => (Token::Op(BinaryOp::Div), 1),
                    (b'(', _) => (Token::LParen, 1),
                    (b')', _) => (Token::RParen, 1),
                    (b',', _) => (Token::Comma, 1),
                    (b'.', _) => (Token::Dot, 1),
                    (b'=', _) => {
                        return Err(syntax(
                            start..start + 1,
                            "unexpected `=`; expected `==` for equality".to_string(),
                        ));
                    }
                    _ => {
                        let found = text[start..].chars().next().unwrap_or(' ');
                        return Err(syntax(
                            start..start + found.len_utf8(),
                            format!("unexpected character `{found}`"),
                        ));
                    }
                };
                pos += width;
                token
            }
        };
        tokens.push((token, start..pos));
    }
    tokens.push((Token::End, text.len()..text.len()));
    Ok(tokens)
}

/// Parses one expression. Precedence, loosest first:
/// `or` < `and` < `not` < comparisons < `+ -` < `* /` < unary minus. Comparisons do not chain.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let tokens = lex(text)?;
    // The last token is `End`.
    if tokens.len() > MAX_EXPR_TOKENS + 1 {
        return Err(ExprError {
            span: tokens[MAX_EXPR_TOKENS].1.start..text.len(),
            kind: ExprErrorKind::TooDeep,
            message: format!(
                "expression holds more than {MAX_EXPR_TOKENS} tokens; split it into simpler rules"
            ),
        });
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        nesting: 0,
    };
    let expr = parser.or_expr()?;
    let (token, span) = parser.peek();
    if *token != Token::End {
        return Err(syntax(
            span.clone(),
            format!(
                "unexpected {}; expected an operator or end of expression",
                token.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<(Token, Range<usize>)>,
    pos: usize,
    /// How many nested parentheses, call argument lists, `-` and `not` enclose the position.
    nesting: usize,
}

impl Parser {
    /// Parses with `inner` one nesting level deeper, refusing past [`MAX_EXPR_NESTING`].
    fn nested(
        &mut self,
        span: &Range<usize>,
        inner: fn(&mut Parser) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        if self.nesting == MAX_EXPR_NESTING {
            return Err(ExprError {
                span: span.clone(),
                kind: ExprErrorKind::TooDeep,
                message: format!(
                    "expression nests more than {MAX_EXPR_NESTING} levels deep (parentheses, \
                     calls, `-` and `not`); split it into simpler rules"
                ),
            });
        }
        self.nesting += 1;
        let result = inner(self);
        self.nesting -= 1;
        result
    }

    fn peek(&self) -> &(Token, Range<usize>) {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> (Token, Range<usize>) {
        let item = self.tokens[self.pos].clone();
        if item.0 != Token::End {
            self.pos += 1;
        }
        item
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<Range<usize>, ExprError> {
        let (token, span) = self.next();
        if token == want {
            Ok(span)
        } else {
            Err(syntax(
                span,
                format!("expected {what}, found {}", token.describe()),
            ))
        }
    }

    fn binary_level(
        &mut self,
        ops: &[BinaryOp],
        next: fn(&mut Parser) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut lhs = next(self)?;
        while let Token::Op(op) = self.peek().0 {
            if !ops.contains(&op) {
                break;
            }
            self.next();
            let rhs = next(self)?;
            let span = lhs.span.start..rhs.span.end;
            lhs = Expr {
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            };
        }
        Ok(lhs)
    }

    fn or_expr(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&[BinaryOp::Or], Parser::and_expr)
    }

    fn and_expr(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&[BinaryOp::And], Parser::not_expr)
    }

    fn not_expr(&mut self) -> Result<Expr, ExprError> {
        if self.peek().0 == Token::Not {
            let (_, span) = self.next();
            let inner = self.nested(&span, Parser::not_expr)?;
            let span = span.start..inner.span.end;
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.additive()?;
        let op = match self.peek().0 {
            Token::Op(op) if op.is_comparison() => op,
            _ => return Ok(lhs),
        };
        self.next();
        let rhs = self.additive()?;
        if let (Token::Op(next), span) = self.peek()
            && next.is_comparison()
        {
            return Err(syntax(
                span.clone(),
                "comparisons do not chain; join them with `and`".to_string(),
            ));
        }
        let span = lhs.span.start..rhs.span.end;
        Ok(Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            },
            span,
        })
    }

    fn additive(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&[BinaryOp::Add, BinaryOp::Sub], Parser::multiplicative)
    }

    fn multiplicative(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&[BinaryOp::Mul, BinaryOp::Div], Parser::unary)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek().0 == Token::Op(BinaryOp::Sub) {
            let (_, span) = self.next();
            let inner = self.nested(&span, Parser::unary)?;
            let span = span.start..inner.span.end;
            return Ok(Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                span,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let (token, span) = self.next();
        match token {
            Token::Number(value) => Ok(Expr {
                kind: ExprKind::Number(value),
                span,
            }),
            Token::LParen => {
                let inner = self.nested(&span, Parser::or_expr)?;
                let close = self.expect(Token::RParen, "`)`")?;
                Ok(Expr {
                    kind: inner.kind,
                    span: span.start..close.end,
                })
            }
            Token::Ident(name) if name == "true" || name == "false" => Ok(Expr {
                kind: ExprKind::Bool(name == "true"),
                span,
            }),
            Token::Ident(name) => {
                if self.peek().0 == Token::LParen {
                    let Some(func) = Func::from_name(&name) else {
                        return Err(ExprError {
                            span,
                            kind: ExprErrorKind::UnknownName,
                            message: format!(
                                "unknown function `{name}`; expected cross_above, cross_below or prev"
                            ),
                        });
                    };
                    self.next();
                    let mut args = Vec::new();
                    if self.peek().0 != Token::RParen {
                        loop {
                            args.push(self.nested(&span, Parser::or_expr)?);
                            if self.peek().0 == Token::Comma {
                                self.next();
                            } else {
                                break;
                            }
                        }
                    }
                    let close = self.expect(Token::RParen, "`,` or `)`")?;
                    return Ok(Expr {
                        kind: ExprKind::Call { func, args },
                        span: span.start..close.end,
                    });
                }
                if self.peek().0 == Token::Dot {
                    self.next();
                    let (field, field_span) = self.next();
                    let Token::Ident(field) = field else {
                        return Err(syntax(
                            field_span,
                            format!(
                                "expected an output name after `.`, found {}",
                                field.describe()
                            ),
                        ));
                    };
                    return Ok(Expr {
                        kind: ExprKind::Name {
                            name,
                            field: Some(field),
                        },
                        span: span.start..field_span.end,
                    });
                }
                Ok(Expr {
                    kind: ExprKind::Name { name, field: None },
                    span,
                })
            }
            other => Err(syntax(
                span,
                format!(
                    "expected a number, name, `(` or `-`, found {}",
                    other.describe()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Expr, ExprKind, parse};
    use crate::expr::{ExprErrorKind, MAX_EXPR_NESTING, MAX_EXPR_TOKENS};

    /// Renders the tree fully parenthesised.
    fn render(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Number(value) => value.to_string(),
            ExprKind::Bool(flag) => flag.to_string(),
            ExprKind::Name { name, field: None } => name.clone(),
            ExprKind::Name {
                name,
                field: Some(field),
            } => format!("{name}.{field}"),
            ExprKind::Neg(inner) => format!("(-{})", render(inner)),
            ExprKind::Not(inner) => format!("(not {})", render(inner)),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", render(lhs), op.symbol(), render(rhs))
            }
            ExprKind::Call { func, args } => {
                let args: Vec<String> = args.iter().map(render).collect();
                format!("{}({})", func.name(), args.join(", "))
            }
        }
    }

    #[test]
    fn long_and_deeply_nested_expressions_are_refused_not_a_stack_overflow() {
        // Found by the fuzzer (fuzz/corpus/expr/deep-nesting-2008-parens.txt, now refused by
        // the token bound): 2,000 nested parentheses overflowed the stack. 64 levels parse; 65
        // are an error at the 65th.
        let nested = |depth: usize| format!("{}close{} > 0", "(".repeat(depth), ")".repeat(depth));
        let deep = [
            nested(MAX_EXPR_NESTING),
            "-".repeat(MAX_EXPR_NESTING) + "1 > 0",
            "not ".repeat(MAX_EXPR_NESTING) + "true",
            "prev(".repeat(MAX_EXPR_NESTING) + "close" + &", 1)".repeat(MAX_EXPR_NESTING) + " > 0",
        ];
        for text in &deep {
            assert!(parse(text).is_ok(), "{text}");
        }
        for (text, at) in [
            (nested(MAX_EXPR_NESTING + 1), MAX_EXPR_NESTING),
            ("-".repeat(MAX_EXPR_NESTING + 1) + "1 > 0", MAX_EXPR_NESTING),
            (
                "not ".repeat(MAX_EXPR_NESTING + 1) + "true",
                4 * MAX_EXPR_NESTING,
            ),
            // Within the token bound (before the nesting bound, 254 levels in 511 tokens
            // overflowed a test thread's 2 MiB stack in a debug build).
            (nested(200), MAX_EXPR_NESTING),
        ] {
            let error = parse(&text).unwrap_err();
            assert_eq!(error.kind, ExprErrorKind::TooDeep, "{}", error.message);
            assert!(
                error.message.contains("nests more than 64 levels deep"),
                "{}",
                error.message
            );
            assert_eq!(error.span.start, at, "{}", error.message);
        }
        // 512 tokens parse; one more is an error at the 513th, however flat.
        let chain = |terms: usize| "1 + ".repeat(terms - 1) + "1 > 0";
        assert!(parse(&chain(MAX_EXPR_TOKENS / 2 - 1)).is_ok());
        for text in [
            chain(MAX_EXPR_TOKENS / 2),
            chain(50_000),
            "- ".repeat(50_000),
        ] {
            let error = parse(&text).unwrap_err();
            assert_eq!(error.kind, ExprErrorKind::TooDeep, "{}", error.message);
            assert!(
                error.message.contains("more than 512 tokens"),
                "{}",
                error.message
            );
            assert_eq!(error.span.start, 2 * MAX_EXPR_TOKENS, "{}", error.message);
        }
    }

    fn check(text: &str, expected: &str) {
        let expr = parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(render(&expr), expected, "{text}");
    }

    #[test]
    fn precedence_tree() {
        check("a or b and c", "(a or (b and c))");
        check("not a < b and c", "((not (a < b)) and c)");
        check("a + b * c - d", "((a + (b * c)) - d)");
        check("-a * b", "((-a) * b)");
        check("x.upper >= prev(y, 2) / 2", "(x.upper >= (prev(y, 2) / 2))");
        check(
            "cross_above(a, b) or not not c",
            "(cross_above(a, b) or (not (not c)))",
        );
    }
}
