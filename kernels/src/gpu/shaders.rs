//! The WGSL sources of `shaders/`, embedded at build time, and the small preprocessor that
//! assembles a shader variant.
//!
//! # Mechanism
//! * A line `//#include shared/NAME.wgsl` is replaced by that file's text (paths relative to
//!   `shaders/`; each file is included once, later includes of it are dropped).
//! * The line `//#generated rules` is replaced by the rule functions compiled from the spec
//!   ([`super::codegen`]).
//! * A generated header goes first: `alias real = f32;` (or `f64`), `const N_SYMBOLS: u32 =
//!   ...;` and the run's settings that steer branches in every bar as `const` bools
//!   (`FILL_CLOSE`, `CROSS_MARGIN`, `FUNDING_CONSTANT`; see [`Variant`]), so the compiler drops
//!   the branches a run never takes; `MONEY_RESCALE` is true in f32 (the account's money
//!   exponent of `shaders/shared/sim.wgsl`, docs/SEMANTICS.md §5.3).
//!
//! Every file of `shaders/` is listed in `shaders/SHADERS.txt`; a test checks the folder, that
//! list and [`SHADER_FILES`] agree, and validates every entry-point file with naga.

use std::collections::BTreeSet;

/// Every WGSL file, by path relative to `shaders/`, with its text.
pub const SHADER_FILES: &[(&str, &str)] = &[
    (
        "backtest.wgsl",
        include_str!("../../../shaders/backtest.wgsl"),
    ),
    (
        "shared/brackets.wgsl",
        include_str!("../../../shaders/shared/brackets.wgsl"),
    ),
    (
        "shared/indicators.wgsl",
        include_str!("../../../shaders/shared/indicators.wgsl"),
    ),
    (
        "shared/layout.wgsl",
        include_str!("../../../shaders/shared/layout.wgsl"),
    ),
    (
        "shared/metrics.wgsl",
        include_str!("../../../shaders/shared/metrics.wgsl"),
    ),
    (
        "shared/pair.wgsl",
        include_str!("../../../shaders/shared/pair.wgsl"),
    ),
    (
        "shared/sim.wgsl",
        include_str!("../../../shaders/shared/sim.wgsl"),
    ),
    (
        "shared/state.wgsl",
        include_str!("../../../shaders/shared/state.wgsl"),
    ),
];

/// The committed list of shader files (`shaders/SHADERS.txt`).
pub const SHADER_LIST: &str = include_str!("../../../shaders/SHADERS.txt");

/// Entry-point files (one entry point each) and the entry point's name.
pub const ENTRY_POINTS: &[(&str, &str)] = &[("backtest.wgsl", "backtest")];

const INCLUDE: &str = "//#include ";
const GENERATED_RULES: &str = "//#generated rules";

/// A shader could not be assembled or does not validate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShaderError {
    #[error("shaders/{0}: no such shader file")]
    Missing(String),
    #[error("shaders/{file}: line {line}: `{GENERATED_RULES}` is missing")]
    NoRulesMarker { file: String, line: usize },
    #[error("shaders/{file} ({precision}): WGSL does not parse: {message}")]
    Parse {
        file: String,
        precision: &'static str,
        message: String,
    },
    #[error("shaders/{file} ({precision}): WGSL does not validate: {message}")]
    Validate {
        file: String,
        precision: &'static str,
        message: String,
    },
}

fn source_of(path: &str) -> Result<&'static str, ShaderError> {
    SHADER_FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, text)| *text)
        .ok_or_else(|| ShaderError::Missing(path.to_string()))
}

fn expand(
    path: &str,
    rules: &str,
    seen: &mut BTreeSet<String>,
    out: &mut String,
    rules_done: &mut bool,
) -> Result<(), ShaderError> {
    let text = source_of(path)?;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(include) = trimmed.strip_prefix(INCLUDE) {
            let include = include.trim();
            if seen.insert(include.to_string()) {
                out.push_str(&format!("// ---- shaders/{include}\n"));
                expand(include, rules, seen, out, rules_done)?;
            }
        } else if trimmed == GENERATED_RULES {
            out.push_str("// ---- generated rules\n");
            out.push_str(rules);
            *rules_done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

/// The compile-time constants of a shader variant (its generated header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// `real`: "f32" or "f64".
    pub real: &'static str,
    /// `N_SYMBOLS`.
    pub n_symbols: usize,
    /// `FILL_CLOSE`: orders fill at the signal bar's close, else at the next open.
    pub fill_close: bool,
    /// `CROSS_MARGIN`: cross margin, else isolated.
    pub cross_margin: bool,
    /// `FUNDING_CONSTANT`: a constant rate per 8 h from each set's settings, else the data's
    /// funding rates.
    pub funding_constant: bool,
}

impl Variant {
    /// The variant at precision `real` for `n_symbols` symbols with every switch off.
    pub fn new(real: &'static str, n_symbols: usize) -> Variant {
        Variant {
            real,
            n_symbols,
            fill_close: false,
            cross_margin: false,
            funding_constant: false,
        }
    }

    fn header(&self) -> String {
        format!(
            "// generated header\nalias real = {};\nconst N_SYMBOLS: u32 = {}u;\n\
             const FILL_CLOSE: bool = {};\nconst CROSS_MARGIN: bool = {};\n\
             const FUNDING_CONSTANT: bool = {};\nconst MONEY_RESCALE: bool = {};\n",
            self.real,
            self.n_symbols.max(1),
            self.fill_close,
            self.cross_margin,
            self.funding_constant,
            self.real == "f32"
        )
    }
}

/// Assembles entry-point file `path` as `variant`, with `rules` (WGSL from
/// [`super::codegen::rules_wgsl`]).
pub fn assemble(path: &str, variant: &Variant, rules: &str) -> Result<String, ShaderError> {
    let mut out = variant.header();
    let mut seen = BTreeSet::from([path.to_string()]);
    let mut rules_done = false;
    expand(path, rules, &mut seen, &mut out, &mut rules_done)?;
    if !rules_done {
        return Err(ShaderError::NoRulesMarker {
            file: path.to_string(),
            line: source_of(path)?.lines().count(),
        });
    }
    Ok(out)
}

/// Parses and validates `source` with naga (all capabilities a compute shader may use here,
/// f64 included), returning the module for layout checks.
pub fn validate(
    file: &str,
    precision: &'static str,
    source: &str,
) -> Result<naga::Module, ShaderError> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| ShaderError::Parse {
        file: file.to_string(),
        precision,
        message: e.emit_to_string(source),
    })?;
    let mut capabilities = naga::valid::Capabilities::empty();
    if precision == "f64" {
        capabilities |= naga::valid::Capabilities::FLOAT64;
    }
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| ShaderError::Validate {
            file: file.to_string(),
            precision,
            message: e.emit_to_string(source),
        })?;
    Ok(module)
}

/// Size and member offsets of struct `name` in `module`, as naga lays it out.
pub fn wgsl_layout(module: &naga::Module, name: &str) -> Option<(u32, Vec<(String, u32)>)> {
    module.types.iter().find_map(|(_, ty)| {
        if ty.name.as_deref() != Some(name) {
            return None;
        }
        match &ty.inner {
            naga::TypeInner::Struct { members, span } => Some((
                *span,
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect(),
            )),
            _ => None,
        }
    })
}
