//! A param set from its JSON form `{name: value}` (what `active_configs.params` and the
//! promotion's exports hold), typed by the spec's params.

use etrading_kernels::spec::{ParamDomain, ParamSet, ParamType, ParamValue, Spec};
use serde_json::Value;

/// A JSON param set that does not fit the spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    #[error("params must be a JSON object {{name: value}}, found {0}")]
    NotAnObject(String),
    #[error("params: `{0}` is not a param of the spec")]
    Unknown(String),
    #[error("params: `{0}` has no value (the spec gives it more than one)")]
    Missing(String),
    #[error("params: `{name}` = {value} is not {expected}")]
    WrongType {
        name: String,
        value: String,
        expected: &'static str,
    },
}

/// The spec's param set from `{name: value}`: every param by name, typed as the spec types
/// it (an integer param needs a whole number); a param with one value may be left out.
pub fn params_from_json(spec: &Spec, params: &Value) -> Result<ParamSet, ParamsError> {
    let Value::Object(map) = params else {
        return Err(ParamsError::NotAnObject(params.to_string()));
    };
    if let Some(name) = map.keys().find(|k| spec.params.index_of(k).is_none()) {
        return Err(ParamsError::Unknown(name.clone()));
    }
    let mut values = Vec::with_capacity(spec.params.params.len());
    for p in &spec.params.params {
        let Some(value) = map.get(&p.name) else {
            match &p.domain {
                ParamDomain::Fixed(v) => {
                    values.push(v.clone());
                    continue;
                }
                _ => return Err(ParamsError::Missing(p.name.clone())),
            }
        };
        let wrong = |expected| ParamsError::WrongType {
            name: p.name.clone(),
            value: value.to_string(),
            expected,
        };
        let typed = match p.value_type {
            ParamType::Int => match (value.as_i64(), value.as_f64()) {
                (Some(i), _) => ParamValue::Int(i),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    ParamValue::Int(f as i64)
                }
                _ => return Err(wrong("an integer")),
            },
            ParamType::Float => ParamValue::Float(value.as_f64().ok_or_else(|| wrong("a number"))?),
            ParamType::Bool => ParamValue::Bool(value.as_bool().ok_or_else(|| wrong("a boolean"))?),
            ParamType::Str => {
                ParamValue::Str(value.as_str().ok_or_else(|| wrong("a string"))?.to_string())
            }
        };
        values.push(typed);
    }
    Ok(ParamSet { values })
}
