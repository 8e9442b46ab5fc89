//! Walking a spanned TOML document: typed getters that report `file:line:col` errors.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{SpecError, SpecErrorKind};

/// A TOML number as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Number::Int(value) => value as f64,
            Number::Float(value) => value,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The source being walked: file display name and text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Source<'t> {
    pub(super) file: &'t str,
    pub(super) text: &'t str,
}

pub(super) type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

impl Source<'_> {
    pub(super) fn error(&self, offset: usize, kind: SpecErrorKind, message: String) -> SpecError {
        let (line, column) = line_col(self.text, offset);
        SpecError {
            file: self.file.to_string(),
            line,
            column,
            kind,
            message,
        }
    }

    pub(super) fn at(
        &self,
        span: &Range<usize>,
        kind: SpecErrorKind,
        message: String,
    ) -> SpecError {
        self.error(span.start, kind, message)
    }

    pub(super) fn wrong_type(
        &self,
        value: &Spanned<DeValue<'_>>,
        what: &str,
        expected: &str,
    ) -> SpecError {
        self.at(
            &value.span(),
            SpecErrorKind::WrongType,
            format!(
                "{what} must be {expected}, found {}",
                type_name(value.get_ref())
            ),
        )
    }

    pub(super) fn table<'a, 'i>(
        &self,
        value: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Result<&'a DeTable<'i>, SpecError> {
        match value.get_ref() {
            DeValue::Table(table) => Ok(table),
            _ => Err(self.wrong_type(value, what, "a table")),
        }
    }

    pub(super) fn string<'a>(
        &self,
        value: &'a Spanned<DeValue<'_>>,
        what: &str,
    ) -> Result<&'a str, SpecError> {
        match value.get_ref() {
            DeValue::String(text) => Ok(text),
            _ => Err(self.wrong_type(value, what, "a string")),
        }
    }

    pub(super) fn number(
        &self,
        value: &Spanned<DeValue<'_>>,
        what: &str,
    ) -> Result<Number, SpecError> {
        number(value.get_ref())
            .ok_or_else(|| self.wrong_type(value, what, "a number"))
            .and_then(|number| match number {
                Number::Float(float) if !float.is_finite() => Err(self.at(
                    &value.span(),
                    SpecErrorKind::OutOfRange,
                    format!("{what} must be finite, found {float}"),
                )),
                _ => Ok(number),
            })
    }

    /// Fails on the first key not in `allowed`.
    pub(super) fn check_keys(
        &self,
        table: &DeTable<'_>,
        allowed: &[&str],
        section: &str,
    ) -> Result<(), SpecError> {
        for (key, _) in entries(table) {
            if !allowed.contains(&key.get_ref().as_ref()) {
                return Err(self.at(
                    &key.span(),
                    SpecErrorKind::UnknownKey,
                    format!(
                        "unknown key `{}` in {section}; expected one of: {}",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn required<'a, 'i>(
        &self,
        table: &'a DeTable<'i>,
        table_span: &Range<usize>,
        key: &str,
        section: &str,
    ) -> Result<&'a Spanned<DeValue<'i>>, SpecError> {
        table.get(key).ok_or_else(|| {
            self.at(
                table_span,
                SpecErrorKind::MissingKey,
                format!("missing key `{key}` in {section}"),
            )
        })
    }
}

/// Table entries in file order.
pub(super) fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<Entry<'a, 'i>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

pub(super) fn number(value: &DeValue<'_>) -> Option<Number> {
    match value {
        DeValue::Integer(integer) => {
            let digits = integer.as_str().replace('_', "");
            i64::from_str_radix(&digits, integer.radix())
                .ok()
                .map(Number::Int)
        }
        DeValue::Float(float) => float
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .map(Number::Float),
        _ => None,
    }
}

pub(super) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Byte offset of a string value's first content character (after its opening quotes).
pub(super) fn string_content_start(text: &str, span: &Range<usize>) -> usize {
    let rest = text.get(span.start..).unwrap_or("");
    if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
        let after = span.start + 3;
        let tail = text.get(after..).unwrap_or("");
        if tail.starts_with("\r\n") {
            after + 2
        } else if tail.starts_with('\n') {
            after + 1
        } else {
            after
        }
    } else {
        span.start + 1
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    fn check(text: &str, offset: usize, expected: (usize, usize)) {
        assert_eq!(line_col(text, offset), expected, "{text:?} @ {offset}");
    }

    #[test]
    fn line_col_is_one_based_in_characters() {
        check("abc", 0, (1, 1));
        check("abc\ndef", 5, (2, 2));
        check("é = 1\nx", 3, (1, 3));
        check("a\n", 99, (2, 1));
    }
}
