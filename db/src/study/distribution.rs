//! Optuna's `distribution_json` and the internal representation of param values
//! (`trial_params.param_value`): ints as floats, floats as themselves, a categorical as the
//! index of its choice.

use etrading_kernels::search::same;
use etrading_kernels::spec::{Distribution, ParamSpace, ParamValue};

use super::pyjson::JsonValue;

/// Optuna's JSON for `distribution`, byte for byte as `optuna.distributions.distribution_to_json`
/// writes it (Python dict order of each class's attributes).
pub fn distribution_json(distribution: &Distribution) -> String {
    let (name, attributes) = match distribution {
        Distribution::Int {
            low,
            high,
            step,
            log,
        } => (
            "IntDistribution",
            vec![
                ("log", JsonValue::Bool(*log)),
                ("step", JsonValue::Int(*step)),
                ("low", JsonValue::Int(*low)),
                ("high", JsonValue::Int(*high)),
            ],
        ),
        Distribution::Float {
            low,
            high,
            step,
            log,
        } => (
            "FloatDistribution",
            vec![
                ("step", step.map_or(JsonValue::Null, JsonValue::Float)),
                ("low", JsonValue::Float(*low)),
                ("high", JsonValue::Float(*high)),
                ("log", JsonValue::Bool(*log)),
            ],
        ),
        Distribution::Categorical { choices } => (
            "CategoricalDistribution",
            vec![(
                "choices",
                JsonValue::Array(choices.iter().map(param_json).collect()),
            )],
        ),
    };
    JsonValue::Object(vec![
        ("name".to_string(), JsonValue::Str(name.to_string())),
        (
            "attributes".to_string(),
            JsonValue::Object(
                attributes
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ),
        ),
    ])
    .dumps()
}

/// A param value as JSON (an int stays an int, a float a float).
pub fn param_json(value: &ParamValue) -> JsonValue {
    match value {
        ParamValue::Int(i) => JsonValue::Int(*i),
        ParamValue::Float(x) => JsonValue::Float(*x),
        ParamValue::Bool(b) => JsonValue::Bool(*b),
        ParamValue::Str(s) => JsonValue::Str(s.clone()),
    }
}

/// Parses `distribution_json`: Optuna 3+ classes and the older ones a study made by Optuna 2
/// may still hold (`UniformDistribution`, `LogUniformDistribution`,
/// `DiscreteUniformDistribution`, `IntUniformDistribution`, `IntLogUniformDistribution`).
pub fn parse_distribution(text: &str) -> Result<Distribution, String> {
    let json = JsonValue::parse(text)?;
    let name = json
        .get("name")
        .and_then(JsonValue::as_str)
        .ok_or("no \"name\"")?;
    let attrs = json.get("attributes").ok_or("no \"attributes\"")?;
    let num = |key: &str| -> Result<f64, String> {
        attrs
            .get(key)
            .and_then(JsonValue::as_f64)
            .ok_or_else(|| format!("{name}: attribute {key:?} is not a number"))
    };
    let flag = |key: &str| -> bool { matches!(attrs.get(key), Some(JsonValue::Bool(true))) };
    let int = |key: &str| -> Result<i64, String> {
        match attrs.get(key) {
            Some(JsonValue::Int(i)) => Ok(*i),
            Some(JsonValue::Float(x)) if x.fract() == 0.0 => Ok(*x as i64),
            _ => Err(format!("{name}: attribute {key:?} is not an integer")),
        }
    };
    Ok(match name {
        "IntDistribution" => Distribution::Int {
            low: int("low")?,
            high: int("high")?,
            step: int("step")?,
            log: flag("log"),
        },
        "IntUniformDistribution" => Distribution::Int {
            low: int("low")?,
            high: int("high")?,
            step: int("step").unwrap_or(1),
            log: false,
        },
        "IntLogUniformDistribution" => Distribution::Int {
            low: int("low")?,
            high: int("high")?,
            step: 1,
            log: true,
        },
        "FloatDistribution" => Distribution::Float {
            low: num("low")?,
            high: num("high")?,
            step: match attrs.get("step") {
                None | Some(JsonValue::Null) => None,
                Some(_) => Some(num("step")?),
            },
            log: flag("log"),
        },
        "UniformDistribution" | "LogUniformDistribution" => Distribution::Float {
            low: num("low")?,
            high: num("high")?,
            step: None,
            log: name == "LogUniformDistribution",
        },
        "DiscreteUniformDistribution" => Distribution::Float {
            low: num("low")?,
            high: num("high")?,
            step: Some(num("q")?),
            log: false,
        },
        "CategoricalDistribution" => {
            let Some(JsonValue::Array(items)) = attrs.get("choices") else {
                return Err(format!("{name}: attribute \"choices\" is not a list"));
            };
            let choices = items
                .iter()
                .map(|item| match item {
                    JsonValue::Int(i) => Ok(ParamValue::Int(*i)),
                    JsonValue::Float(x) => Ok(ParamValue::Float(*x)),
                    JsonValue::Bool(b) => Ok(ParamValue::Bool(*b)),
                    JsonValue::Str(s) => Ok(ParamValue::Str(s.clone())),
                    other => Err(format!(
                        "{name}: choice {other} is not a number, boolean or string"
                    )),
                })
                .collect::<Result<Vec<_>, String>>()?;
            Distribution::Categorical { choices }
        }
        other => return Err(format!("unknown distribution {other:?}")),
    })
}

/// The value a param's internal representation stands for.
pub fn external_value(distribution: &Distribution, internal: f64) -> Result<ParamValue, String> {
    match distribution {
        Distribution::Int { .. } => Ok(ParamValue::Int(internal.round() as i64)),
        Distribution::Float { .. } => Ok(ParamValue::Float(internal)),
        Distribution::Categorical { choices } => {
            let index = internal as usize;
            if internal < 0.0 || internal.fract() != 0.0 || index >= choices.len() {
                return Err(format!(
                    "categorical index {internal} is out of range for {} choices",
                    choices.len()
                ));
            }
            Ok(choices[index].clone())
        }
    }
}

/// The internal representation of `value` under `distribution`.
pub fn internal_value(distribution: &Distribution, value: &ParamValue) -> Result<f64, String> {
    match distribution {
        Distribution::Int { .. } | Distribution::Float { .. } => value
            .as_f64()
            .ok_or_else(|| format!("value {value} is not a number")),
        Distribution::Categorical { choices } => choices
            .iter()
            .position(|c| same(c, value))
            .map(|i| i as f64)
            .ok_or_else(|| format!("value {value} is not one of the choices")),
    }
}

/// The distribution of each param of `space`, with its name, in space order (what a study of
/// this spec records; a fixed value is a categorical of one choice, as in Optuna).
pub fn space_distributions(space: &ParamSpace) -> Vec<(String, Distribution)> {
    space
        .params
        .iter()
        .map(|p| (p.name.clone(), p.domain.distribution()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_optuna_byte_for_byte() {
        let check = |d: Distribution, expect: &str| {
            assert_eq!(distribution_json(&d), expect);
            assert_eq!(parse_distribution(expect), Ok(d));
        };
        check(
            Distribution::Int {
                low: 7,
                high: 28,
                step: 1,
                log: false,
            },
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 7, "high": 28}}"#,
        );
        check(
            Distribution::Float {
                low: 20.0,
                high: 35.0,
                step: Some(1.0),
                log: false,
            },
            r#"{"name": "FloatDistribution", "attributes": {"step": 1.0, "low": 20.0, "high": 35.0, "log": false}}"#,
        );
        check(
            Distribution::Float {
                low: 0.001,
                high: 0.1,
                step: None,
                log: true,
            },
            r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.001, "high": 0.1, "log": true}}"#,
        );
        check(
            Distribution::Categorical {
                choices: vec![
                    ParamValue::Str("long".into()),
                    ParamValue::Str("short".into()),
                    ParamValue::Str("both".into()),
                ],
            },
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": ["long", "short", "both"]}}"#,
        );
    }
}
