//! TA-Lib by name through its abstract interface: any function, its own parameter names
//! (normalised as in [`crate::indicator`]), outputs aligned to the input bars.
//!
//! Inputs must hold no NaN (TA-Lib does not skip them). Outputs are written aligned to the
//! input index: the first `lookback` bars are NaN, then TA-Lib's values.

use std::ffi::{CStr, CString, c_char};
use std::ptr;
use std::sync::Once;

use ta_lib_sys as sys;

use crate::indicator::{
    ArgInfo, ArgRange, FunctionInfo, InputInfo, InputKind, OutputInfo, normalise_arg_name,
    normalise_output_names,
};
use crate::series::{BarColumns, Series};

/// A TA-Lib call that cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TalibError {
    /// No TA-Lib function has this name.
    #[error("unknown TA-Lib function `{0}`")]
    UnknownFunction(String),
    /// The function has no parameter with this (normalised) name.
    #[error("{function} has no parameter `{name}`")]
    UnknownArg {
        /// Function name.
        function: String,
        /// Parameter name.
        name: String,
    },
    /// A parameter value is outside TA-Lib's declared range.
    #[error("{function} {name} = {value} is outside TA-Lib's range {range}")]
    ArgOutOfRange {
        /// Function name.
        function: String,
        /// Parameter name.
        name: String,
        /// The value.
        value: f64,
        /// The accepted range.
        range: String,
    },
    /// Wrong number of real inputs, outputs, or lengths that differ.
    #[error("{function}: {message}")]
    Shape {
        /// Function name.
        function: String,
        /// What does not fit.
        message: String,
    },
    /// The function needs an input kind this wrapper cannot supply.
    #[error("{function}: unsupported input `{input}`")]
    UnsupportedInput {
        /// Function name.
        function: String,
        /// TA-Lib's input name.
        input: String,
    },
    /// TA-Lib returned an error code.
    #[error("TA-Lib {call} failed for {function}: {code}")]
    Call {
        /// Function name.
        function: String,
        /// Which TA-Lib call.
        call: &'static str,
        /// The return code, as debug text.
        code: String,
    },
}

static INIT: Once = Once::new();

fn initialise() {
    INIT.call_once(|| {
        // SAFETY: TA_Initialize takes no arguments and is called exactly once, before any
        // other TA-Lib call made by this module.
        let code = unsafe { sys::Initialize() };
        assert!(
            code == sys::RetCode::SUCCESS,
            "TA_Initialize failed: {code:?}"
        );
    });
}

/// TA-Lib's version string (`0.4.0 (Jan  1 2000 00:00:00)`), for provenance.
pub fn version() -> String {
    initialise();
    // SAFETY: TA_GetVersionString returns a pointer to a static NUL-terminated string.
    unsafe { c_text(sys::GetVersionString()) }
}

/// Copies a C string owned by TA-Lib; null reads as empty.
///
/// # Safety
/// `text` must be null or point to a NUL-terminated string that lives for the call.
unsafe fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

fn check(code: sys::RetCode, function: &str, call: &'static str) -> Result<(), TalibError> {
    if code == sys::RetCode::SUCCESS {
        Ok(())
    } else {
        Err(TalibError::Call {
            function: function.to_string(),
            call,
            code: format!("{code:?}"),
        })
    }
}

fn func_handle(name: &str) -> Result<*const sys::FuncHandle, TalibError> {
    initialise();
    let upper = name.to_ascii_uppercase();
    let unknown = || TalibError::UnknownFunction(name.to_string());
    let c_name = CString::new(upper).map_err(|_| unknown())?;
    let mut handle: *const sys::FuncHandle = ptr::null();
    // SAFETY: c_name is a valid NUL-terminated string and handle a valid out-pointer.
    let code = unsafe { sys::GetFuncHandle(c_name.as_ptr(), &mut handle) };
    if code != sys::RetCode::SUCCESS || handle.is_null() {
        return Err(unknown());
    }
    Ok(handle)
}

fn price_series(flags: i32) -> Result<Vec<Series>, String> {
    let flags = flags as u32;
    if flags & (sys::IN_PRICE_OPENINTEREST | sys::IN_PRICE_TIMESTAMP) != 0 {
        return Err("open interest / timestamp".to_string());
    }
    Ok([
        (sys::IN_PRICE_OPEN, Series::Open),
        (sys::IN_PRICE_HIGH, Series::High),
        (sys::IN_PRICE_LOW, Series::Low),
        (sys::IN_PRICE_CLOSE, Series::Close),
        (sys::IN_PRICE_VOLUME, Series::Volume),
    ]
    .into_iter()
    .filter(|&(bit, _)| flags & bit != 0)
    .map(|(_, series)| series)
    .collect())
}

/// Reads a function's signature from TA-Lib's abstract interface.
pub fn function_info(name: &str) -> Result<FunctionInfo, TalibError> {
    let handle = func_handle(name)?;
    let mut info: *const sys::FuncInfo = ptr::null();
    // SAFETY: handle came from TA_GetFuncHandle; info is a valid out-pointer.
    let code = unsafe { sys::GetFuncInfo(handle, &mut info) };
    check(code, name, "GetFuncInfo")?;
    // SAFETY: on success TA-Lib points info at its static, immutable function table entry.
    let info = unsafe { *info };
    // SAFETY: info.name is a static NUL-terminated string from TA-Lib's table.
    let function = unsafe { c_text(info.name) };

    let mut inputs = Vec::new();
    for index in 0..info.nbInput {
        let mut input: *const sys::InputParameterInfo = ptr::null();
        // SAFETY: index < nbInput for this handle; input is a valid out-pointer.
        let code = unsafe { sys::GetInputParameterInfo(handle, index, &mut input) };
        check(code, name, "GetInputParameterInfo")?;
        // SAFETY: on success input points at TA-Lib's static parameter description.
        let input = unsafe { *input };
        // SAFETY: paramName is a static NUL-terminated string.
        let ta_name = unsafe { c_text(input.paramName) };
        let kind = match input.type_ {
            sys::InputParameterType::Input_Price => {
                InputKind::Price(price_series(input.flags).map_err(|_| {
                    TalibError::UnsupportedInput {
                        function: function.clone(),
                        input: ta_name.clone(),
                    }
                })?)
            }
            sys::InputParameterType::Input_Real => InputKind::Real,
            sys::InputParameterType::Input_Integer => InputKind::Integer,
        };
        inputs.push(InputInfo { ta_name, kind });
    }

    let mut args = Vec::new();
    for index in 0..info.nbOptInput {
        let mut arg: *const sys::OptInputParameterInfo = ptr::null();
        // SAFETY: index < nbOptInput for this handle; arg is a valid out-pointer.
        let code = unsafe { sys::GetOptInputParameterInfo(handle, index, &mut arg) };
        check(code, name, "GetOptInputParameterInfo")?;
        // SAFETY: on success arg points at TA-Lib's static parameter description.
        let arg = unsafe { *arg };
        // SAFETY: paramName is a static NUL-terminated string.
        let ta_name = unsafe { c_text(arg.paramName) };
        // SAFETY: dataSet is null or points at the static range/list matching type_.
        let range = unsafe { arg_range(arg.type_, arg.dataSet) };
        args.push(ArgInfo {
            name: normalise_arg_name(&ta_name),
            ta_name,
            range,
            default_value: arg.defaultValue,
        });
    }

    let mut ta_outputs = Vec::new();
    for index in 0..info.nbOutput {
        let mut output: *const sys::OutputParameterInfo = ptr::null();
        // SAFETY: index < nbOutput for this handle; output is a valid out-pointer.
        let code = unsafe { sys::GetOutputParameterInfo(handle, index, &mut output) };
        check(code, name, "GetOutputParameterInfo")?;
        // SAFETY: on success output points at TA-Lib's static parameter description.
        let output = unsafe { *output };
        // SAFETY: paramName is a static NUL-terminated string.
        let ta_name = unsafe { c_text(output.paramName) };
        ta_outputs.push((
            ta_name,
            output.type_ == sys::OutputParameterType::Output_Integer,
        ));
    }
    let ta_names: Vec<&str> = ta_outputs
        .iter()
        .map(|(ta_name, _)| ta_name.as_str())
        .collect();
    let names = normalise_output_names(&ta_names);
    let outputs = ta_outputs
        .iter()
        .zip(names)
        .map(|((ta_name, is_integer), name)| OutputInfo {
            ta_name: ta_name.clone(),
            name,
            is_integer: *is_integer,
        })
        .collect();
    Ok(FunctionInfo {
        name: function,
        inputs,
        args,
        outputs,
    })
}

/// Converts TA-Lib's range description.
///
/// # Safety
/// `data` must be null or point to the TA-Lib struct that `kind` names.
unsafe fn arg_range(kind: sys::OptInputParameterType, data: *const std::ffi::c_void) -> ArgRange {
    use sys::OptInputParameterType as Kind;
    if data.is_null() {
        return match kind {
            Kind::OptInput_IntegerRange | Kind::OptInput_IntegerList => ArgRange::Integer {
                min: i64::from(i32::MIN),
                max: i64::from(i32::MAX),
            },
            Kind::OptInput_RealRange | Kind::OptInput_RealList => ArgRange::Real {
                min: f64::MIN,
                max: f64::MAX,
            },
        };
    }
    match kind {
        Kind::OptInput_IntegerRange => {
            // SAFETY: the caller guarantees data points at an IntegerRange.
            let range = unsafe { *data.cast::<sys::IntegerRange>() };
            ArgRange::Integer {
                min: i64::from(range.min),
                max: i64::from(range.max),
            }
        }
        Kind::OptInput_RealRange => {
            // SAFETY: the caller guarantees data points at a RealRange.
            let range = unsafe { *data.cast::<sys::RealRange>() };
            ArgRange::Real {
                min: range.min,
                max: range.max,
            }
        }
        Kind::OptInput_IntegerList => {
            // SAFETY: the caller guarantees data points at an IntegerList whose data holds
            // nbElement pairs.
            let values = unsafe {
                let list = *data.cast::<sys::IntegerList>();
                std::slice::from_raw_parts(list.data, list.nbElement as usize)
            };
            ArgRange::IntegerList(values.iter().map(|pair| i64::from(pair.value)).collect())
        }
        Kind::OptInput_RealList => {
            // SAFETY: the caller guarantees data points at a RealList whose data holds
            // nbElement pairs.
            let values = unsafe {
                let list = *data.cast::<sys::RealList>();
                std::slice::from_raw_parts(list.data, list.nbElement as usize)
            };
            ArgRange::RealList(values.iter().map(|pair| pair.value).collect())
        }
    }
}

/// Frees a TA-Lib param holder on every path.
struct ParamHolder(*mut sys::ParamHolder);

impl Drop for ParamHolder {
    fn drop(&mut self) {
        // SAFETY: self.0 came from TA_ParamHolderAlloc and is freed exactly once, here.
        unsafe { sys::ParamHolderFree(self.0) };
    }
}

/// Computes `function` over the bars into `outputs` (one slice per output, each as long as the
/// bars), aligned to the bar index with NaN for the look-back bars.
///
/// `args` are `(spec name, value)` pairs; parameters not given take TA-Lib's defaults.
/// `real_inputs` selects the series for each real input (e.g. `[Close]` for RSI); price
/// inputs (ATR's high/low/close) are wired from `bars` automatically.
pub fn compute(
    function: &str,
    args: &[(&str, f64)],
    real_inputs: &[Series],
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), TalibError> {
    let info = function_info(function)?;
    let shape = |message: String| TalibError::Shape {
        function: info.name.clone(),
        message,
    };
    let bar_count = bars
        .bar_count()
        .ok_or_else(|| shape("bar columns differ in length".to_string()))?;
    let end_index = i32::try_from(bar_count)
        .map_err(|_| shape(format!("{bar_count} bars exceed TA-Lib's i32 index")))?;
    if real_inputs.len() != info.real_input_count() {
        return Err(shape(format!(
            "takes {} real input(s), got {}",
            info.real_input_count(),
            real_inputs.len()
        )));
    }
    if outputs.len() != info.outputs.len() || outputs.iter().any(|output| output.len() != bar_count)
    {
        return Err(shape(format!(
            "needs {} output slices of {bar_count} values",
            info.outputs.len()
        )));
    }
    for (name, _) in args {
        if info.arg(name).is_none() {
            return Err(TalibError::UnknownArg {
                function: info.name.clone(),
                name: (*name).to_string(),
            });
        }
    }
    if bar_count == 0 {
        return Ok(());
    }

    let handle = func_handle(&info.name)?;
    let mut raw: *mut sys::ParamHolder = ptr::null_mut();
    // SAFETY: handle is valid; raw is a valid out-pointer.
    let code = unsafe { sys::ParamHolderAlloc(handle, &mut raw) };
    check(code, &info.name, "ParamHolderAlloc")?;
    let holder = ParamHolder(raw);

    let mut real_inputs = real_inputs.iter();
    for (index, input) in (0_u32..).zip(&info.inputs) {
        let code = match &input.kind {
            InputKind::Price(needed) => {
                let pointer = |series: Series| {
                    if needed.contains(&series) {
                        bars.get(series).as_ptr()
                    } else {
                        ptr::null()
                    }
                };
                // SAFETY: every non-null pointer addresses bar_count values that outlive the
                // TA_CallFunc below; TA-Lib only reads the series its flags name.
                unsafe {
                    sys::SetInputParamPricePtr(
                        holder.0,
                        index,
                        pointer(Series::Open),
                        pointer(Series::High),
                        pointer(Series::Low),
                        pointer(Series::Close),
                        pointer(Series::Volume),
                        ptr::null(),
                    )
                }
            }
            InputKind::Real => {
                let series = *real_inputs.next().unwrap_or(&Series::Close);
                // SAFETY: the column holds bar_count values that outlive TA_CallFunc.
                unsafe { sys::SetInputParamRealPtr(holder.0, index, bars.get(series).as_ptr()) }
            }
            InputKind::Integer => {
                return Err(TalibError::UnsupportedInput {
                    function: info.name.clone(),
                    input: input.ta_name.clone(),
                });
            }
        };
        check(code, &info.name, "SetInputParam")?;
    }

    set_args(&info, &holder, args)?;

    let mut integer_outputs: Vec<Vec<i32>> = Vec::new();
    for ((index, output), column) in (0_u32..).zip(&info.outputs).zip(outputs.iter_mut()) {
        let code = if output.is_integer {
            integer_outputs.push(vec![0; bar_count]);
            let buffer = integer_outputs
                .last_mut()
                .map_or(ptr::null_mut(), |buffer| buffer.as_mut_ptr());
            // SAFETY: buffer holds bar_count i32 values and lives until after TA_CallFunc.
            unsafe { sys::SetOutputParamIntegerPtr(holder.0, index, buffer) }
        } else {
            // SAFETY: column holds bar_count f64 values and lives until after TA_CallFunc.
            unsafe { sys::SetOutputParamRealPtr(holder.0, index, column.as_mut_ptr()) }
        };
        check(code, &info.name, "SetOutputParam")?;
    }

    let mut begin_index = 0_i32;
    let mut element_count = 0_i32;
    // SAFETY: all inputs and outputs are set, each addressing bar_count values; the range
    // 0..=end_index-1 lies inside them; the out-pointers are valid.
    let code = unsafe {
        sys::CallFunc(
            holder.0,
            0,
            end_index - 1,
            &mut begin_index,
            &mut element_count,
        )
    };
    check(code, &info.name, "CallFunc")?;
    let begin = usize::try_from(begin_index).unwrap_or(0).min(bar_count);
    let count = usize::try_from(element_count)
        .unwrap_or(0)
        .min(bar_count - begin);

    let mut integer_buffers = integer_outputs.iter();
    for (output, column) in info.outputs.iter().zip(outputs.iter_mut()) {
        if output.is_integer {
            let buffer = integer_buffers.next().map_or(&[][..], Vec::as_slice);
            for (target, &value) in column[begin..begin + count]
                .iter_mut()
                .zip(&buffer[..count])
            {
                *target = f64::from(value);
            }
        } else {
            column.copy_within(0..count, begin);
        }
        column[..begin].fill(f64::NAN);
        column[begin + count..].fill(f64::NAN);
    }
    Ok(())
}

/// TA-Lib's look-back (bars of NaN before the first output) for `function` with `args`.
pub fn lookback(function: &str, args: &[(&str, f64)]) -> Result<usize, TalibError> {
    let info = function_info(function)?;
    let handle = func_handle(&info.name)?;
    let mut raw: *mut sys::ParamHolder = ptr::null_mut();
    // SAFETY: handle is valid; raw is a valid out-pointer.
    let code = unsafe { sys::ParamHolderAlloc(handle, &mut raw) };
    check(code, &info.name, "ParamHolderAlloc")?;
    let holder = ParamHolder(raw);
    set_args(&info, &holder, args)?;
    let mut bars = 0_i32;
    // SAFETY: holder is live with every optional input set; bars is a valid out-pointer.
    let code = unsafe { sys::GetLookback(holder.0, &mut bars) };
    check(code, &info.name, "GetLookback")?;
    Ok(usize::try_from(bars).unwrap_or(0))
}

/// Sets every optional input of `holder`: the value in `args` or TA-Lib's default, range-checked.
fn set_args(
    info: &FunctionInfo,
    holder: &ParamHolder,
    args: &[(&str, f64)],
) -> Result<(), TalibError> {
    for (index, arg) in (0_u32..).zip(&info.args) {
        let value = args
            .iter()
            .find(|(name, _)| *name == arg.name)
            .map_or(arg.default_value, |&(_, value)| value);
        if !arg.range.contains(value) {
            return Err(TalibError::ArgOutOfRange {
                function: info.name.clone(),
                name: arg.name.clone(),
                value,
                range: arg.range.describe(),
            });
        }
        let code = if arg.range.is_integer() {
            // SAFETY: holder is a live param holder and index < nbOptInput.
            unsafe { sys::SetOptInputParamInteger(holder.0, index, value as i32) }
        } else {
            // SAFETY: holder is a live param holder and index < nbOptInput.
            unsafe { sys::SetOptInputParamReal(holder.0, index, value) }
        };
        check(code, &info.name, "SetOptInputParam")?;
    }

    Ok(())
}
