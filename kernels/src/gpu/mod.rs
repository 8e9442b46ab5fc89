//! The GPU backend: the fused batch backtest as a wgpu compute shader (WGSL in `shaders/`).
//! This is the only module that knows wgpu.
//!
//! One invocation runs one param set in one window (full run, or a walk-forward IS / OOS
//! window): an independent account simulated bar by bar, symbols in order, exactly as
//! [`crate::reference::run_windows`] + [`crate::engine::simulate`] (docs/SEMANTICS.md §2). The
//! spec's rules are compiled to WGSL ([`codegen`]); SMA, EMA and RSI indicators read at lag 0
//! or 1 are streamed in the shader ([`streams`], from the first bar of the data, so
//! walk-forward windows see them warmed); every other indicator is computed on the CPU with
//! TA-Lib once per distinct parameter tuple of a dispatch and uploaded. The shader folds the
//! per-bar equity into the sums of [`crate::engine::MetricsAcc`] and the host finishes them
//! with the same code as the reference.
//!
//! Host flow ([`run_with_options`]): device setup ([`GpuContext::new`]) is separate from
//! running; the plan ([`plan::plan_dispatches`], [`plan::fit_sets`], [`plan::plan_chunks`])
//! is plain data; static tables are uploaded once. The sets go in dispatch groups (as many as
//! the device's bindings hold, split further instead of refusing); each group's tables are
//! packed on the CPU while the previous group runs (at most two in flight), then the group
//! runs as one dispatch per chunk of bars, its accounts persisting in GPU buffers between
//! chunks, so no invocation exceeds the loop budget of the adapter (lavapipe: 65,535 loop
//! iterations; hardware: a watchdog). Output buffers are pre-filled with a sentinel and every
//! row's `status` is checked on read-back. A failed dispatch or a lost device sends the
//! remaining sets to the CPU (SIMD) backend; finished groups keep their GPU results
//! ([`GpuReport`] says how many). [`GpuOptions`] overrides the planner (chunk length, binding
//! limit, group size) and injects a failure, for tests.
//!
//! Precision: f32 by default; f64 when asked and the adapter has `SHADER_F64`. Tolerances per
//! metric: docs/SEMANTICS.md §5.

pub mod codegen;
pub mod layout;
pub mod pair;
pub mod plan;
pub mod shaders;
pub mod streams;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::batch::{self, Backend, BatchInput};
use crate::engine::Metrics;
use crate::spec::{ParamSet, ResolveError};
use layout::{
    Real, SENTINEL_BYTE, STATUS_IN_PROGRESS, STATUS_LOOP_BUDGET, STATUS_NOT_STARTED, STATUS_WRITTEN,
};
use plan::{BatchTables, PlanLimits, SetBytes, Statics, WORKGROUP_SIZE};

/// Float precision of the shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats (every adapter).
    #[default]
    F32,
    /// 64-bit floats (adapters with `SHADER_F64`).
    F64,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// `Vulkan`, `Metal`, `Dx12`, ...
    pub backend: String,
    pub driver: String,
    /// A real GPU (not a software rasteriser such as lavapipe).
    pub is_hardware: bool,
    /// The adapter runs f64 shaders (`--precision f64`).
    pub has_f64: bool,
}

/// The GPU backend could not run (or could not finish: see [`GpuReport`] for fallbacks).
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter: {0} (on Linux without a GPU, install Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)"
    )]
    NoAdapter(String),
    #[error("GPU device could not be opened on {adapter}: {detail}")]
    Device { adapter: String, detail: String },
    #[error("--precision f64 needs an adapter with SHADER_F64; {0} has none")]
    NoF64(String),
    /// The message includes the resolve error's, so it is not also chained as a `source`.
    #[error("param set {index}: {error}")]
    Resolve { index: usize, error: ResolveError },
    #[error("{0}")]
    Input(String),
    #[error("the GPU kernel does not support this input: {0}")]
    Unsupported(String),
    #[error("batch too large for the GPU tables: {0}")]
    TooLarge(String),
    #[error(transparent)]
    Shader(#[from] shaders::ShaderError),
    #[error("GPU dispatch failed: {0}")]
    Dispatch(String),
    #[error("result table holds {found} rows, the batch needs {expected} (sets x windows)")]
    OutputLength { expected: usize, found: usize },
    #[error("CPU fallback failed: {0}")]
    Fallback(String),
    /// The f32 shader's compensated sums are not exact on this adapter (its shader compiler
    /// reassociates `(a + b) - a`): f32 results would drift past the f32 policy.
    #[error(
        "{adapter}: the f32 shader's compensated arithmetic is not exact on this adapter ({failed} of {cases} self-check cases wrong; first: {first}); its f32 results would drift: run with --precision f64, or on the CPU (--backend simd)"
    )]
    Compensation {
        adapter: String,
        failed: usize,
        cases: usize,
        first: String,
    },
}

/// How a GPU run is planned, beyond what the device says. `GpuOptions::default()` is what
/// [`run`] and [`run_with`] use; the other fields exist so that tests (and a user who knows
/// their GPU) can exercise the planner and the fallback without special hardware.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Bars per dispatch. Default: as many as keep one invocation within the adapter's loop
    /// budget ([`plan::SOFTWARE_LOOP_BUDGET`] on a software adapter such as lavapipe,
    /// [`plan::HARDWARE_LOOP_BUDGET`] on a GPU) by [`plan::loop_iterations_per_bar`]. A value
    /// too large for lavapipe is detected by the shader's canary loop and fails the group.
    pub bars_per_chunk: Option<usize>,
    /// Warm-up bars per dispatch (streamed indicators only, before a window's first bar).
    /// Default: as many as the same loop budget allows ([`plan::warm_bars_per_chunk`]).
    pub warm_bars_per_chunk: Option<usize>,
    /// Caps the largest storage binding the planner assumes (bytes), below the device's: a
    /// small GPU's limits on a big one.
    pub max_binding_bytes: Option<u64>,
    /// Sets per dispatch group when nothing else limits them (default: [`TARGET_ROWS`]
    /// (set, window) rows).
    pub target_sets: Option<usize>,
    /// Fault injection: after this many dispatch groups have been read back, the next one
    /// fails at read-back as a lost device would, so the sets from it on go to the CPU.
    /// `None` (the default) in every real run.
    pub fail_after_dispatches: Option<usize>,
}

/// (set, window) rows per dispatch group when nothing else limits them: 2^20 invocations,
/// enough to fill a big GPU (an H100 keeps about 270,000 threads resident) several times
/// over, while a second group's tables are packed on the CPU during the first.
pub const TARGET_ROWS: usize = 1 << 20;

/// How a GPU run went.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReport {
    pub adapter: AdapterInfo,
    pub precision: Precision,
    /// Dispatch groups (ranges of sets) read back from the GPU.
    pub groups: usize,
    /// Dispatches (bar chunks) per group.
    pub chunks_per_group: usize,
    /// Bars per chunk.
    pub bars_per_chunk: usize,
    /// Sets whose results came from the GPU.
    pub gpu_sets: usize,
    /// Sets computed on the CPU after a GPU failure, and why.
    pub cpu_fallback_sets: usize,
    pub fallback_reason: Option<String>,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapter_info(adapter: &wgpu::Adapter) -> AdapterInfo {
    let info = adapter.get_info();
    AdapterInfo {
        name: info.name,
        device_type: format!("{:?}", info.device_type),
        backend: format!("{:?}", info.backend),
        driver: info.driver,
        is_hardware: matches!(
            info.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        ),
        has_f64: adapter.features().contains(wgpu::Features::SHADER_F64),
    }
}

fn request_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, GpuError> {
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|e| GpuError::NoAdapter(e.to_string()))
}

/// The adapter [`run`] would use (a high-performance one when there are several).
pub fn probe() -> Result<AdapterInfo, GpuError> {
    Ok(adapter_info(&request_adapter(&instance())?))
}

/// An open device, ready for batches.
#[derive(Debug)]
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: AdapterInfo,
    precision: Precision,
    lost: Arc<Mutex<Option<String>>>,
    /// Compiled pipelines by shader source: a context runs a spec's later batches without
    /// compiling again (lavapipe takes seconds to compile the backtest shader).
    pipelines: Mutex<HashMap<String, Arc<Pipeline>>>,
}

impl GpuContext {
    /// Opens the adapter's device with its own limits, and `SHADER_F64` for [`Precision::F64`].
    pub fn new(precision: Precision) -> Result<GpuContext, GpuError> {
        let adapter = request_adapter(&instance())?;
        let info = adapter_info(&adapter);
        let mut features = wgpu::Features::empty();
        if precision == Precision::F64 {
            if !info.has_f64 {
                return Err(GpuError::NoF64(info.name));
            }
            features |= wgpu::Features::SHADER_F64;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("etrading batch"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device {
            adapter: info.name.clone(),
            detail: e.to_string(),
        })?;
        let lost = Arc::new(Mutex::new(None));
        let flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = flag.lock() {
                *slot = Some(format!("device lost ({reason:?}): {message}"));
            }
        });
        let context = GpuContext {
            device,
            queue,
            info,
            precision,
            lost,
            pipelines: Mutex::new(HashMap::new()),
        };
        // The f32 path's EMA, RSI and SMA state is compensated (two-sum pairs), which only
        // works where the adapter's compiler keeps `(a + b) - a` as written: checked on every
        // new f32 context (a few milliseconds), never assumed.
        if precision == Precision::F32 {
            context.self_check()?;
        }
        Ok(context)
    }

    /// Runs the compensated-arithmetic probe ([`pair`]) on [`pair::SELF_CHECK_CASES`] and
    /// refuses the adapter when one case is wrong ([`GpuError::Compensation`]).
    pub fn self_check(&self) -> Result<(), GpuError> {
        let cases = pair::adversarial_cases(pair::SELF_CHECK_CASES, pair::SELF_CHECK_SEED);
        let got = self.eval_pairs(&cases)?;
        pair::check_results(&self.info.name, &cases, &got)
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// The planner's view of the device limits for `n_windows` windows per set, capped by
    /// `options`.
    pub fn plan_limits(&self, options: &GpuOptions, n_windows: usize) -> PlanLimits {
        let limits = self.device.limits();
        let device_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        PlanLimits {
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            max_binding_bytes: options
                .max_binding_bytes
                .map_or(device_bytes, |cap| cap.min(device_bytes)),
            target_sets: options
                .target_sets
                .unwrap_or(TARGET_ROWS / n_windows.max(1))
                .max(1),
        }
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Runs `sets` on a fresh GPU context at `precision`, filling `out` like
/// [`crate::batch::run`] (set-major).
pub fn run(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    precision: Precision,
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GpuReport, GpuError> {
    let context = GpuContext::new(precision)?;
    run_with(&context, input, sets, out, progress)
}

/// Runs `sets` on `context`.
pub fn run_with(
    context: &GpuContext,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GpuReport, GpuError> {
    run_with_options(context, input, sets, &GpuOptions::default(), out, progress)
}

/// Runs `sets` on `context`, planned with `options`.
pub fn run_with_options(
    context: &GpuContext,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    options: &GpuOptions,
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GpuReport, GpuError> {
    let n_windows = input.windows.len();
    let expected = sets.len() * n_windows;
    if out.len() != expected {
        return Err(GpuError::OutputLength {
            expected,
            found: out.len(),
        });
    }
    match context.precision {
        Precision::F32 => run_typed::<f32>(context, input, sets, options, out, progress),
        Precision::F64 => run_typed::<f64>(context, input, sets, options, out, progress),
    }
}

/// The full WGSL of the backtest shader for `input`'s spec and market at precision `real`,
/// with the fill, margin and funding settings of `dims` compiled in.
pub fn backtest_source(
    input: &BatchInput<'_>,
    real: &'static str,
    dims: &layout::Dims,
) -> Result<String, GpuError> {
    let rules = codegen::rules_wgsl(input.spec);
    let variant = shaders::Variant {
        real,
        n_symbols: input.market.symbols.len().max(1),
        fill_close: dims.fill_close == 1,
        cross_margin: dims.cross_margin == 1,
        funding_constant: dims.funding_constant == 1,
    };
    Ok(shaders::assemble("backtest.wgsl", &variant, &rules)?)
}

/// A dispatch group submitted (all its bar chunks) and not yet read back.
struct InFlight {
    range: std::ops::Range<usize>,
    staging: wgpu::Buffer,
    mapped: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    // Kept alive until read back.
    _buffers: Vec<wgpu::Buffer>,
}

#[derive(Debug)]
struct Pipeline {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

/// What every dispatch group of a run shares: the pipeline, the static tables, the number
/// of dispatches per group and the bars each advances, the injected failure.
struct Shared {
    pipeline: Arc<Pipeline>,
    statics_real: wgpu::Buffer,
    statics_u32: wgpu::Buffer,
    n_chunks: usize,
    bars_per_chunk: usize,
    fail_after_dispatches: Option<usize>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn scope_error(scope: wgpu::ErrorScopeGuard) -> Result<(), GpuError> {
    match pollster::block_on(scope.pop()) {
        None => Ok(()),
        Some(e) => Err(GpuError::Dispatch(e.to_string())),
    }
}

/// Bindings: 0 `dims`, 1-5 read-only tables, 6 `out`, 7 `state` (read-write): 8 storage
/// buffers, within every adapter's default limits. `dims` is a storage buffer, not a uniform:
/// lavapipe inlines uniform values that steer branches and recompiles the shader whenever they
/// change (measured: about 65 ms per dispatch).
fn create_pipeline(context: &GpuContext, source: &str) -> Result<Pipeline, GpuError> {
    let device = &context.device;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("shaders/backtest.wgsl"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..=7)
        .map(|binding| storage_entry(binding, binding <= 5))
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("backtest bindings"),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("backtest layout"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("backtest"),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("backtest"),
        compilation_options: Default::default(),
        cache: None,
    });
    scope_error(scope)?;
    Ok(Pipeline { layout, pipeline })
}

fn storage_buffer(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

fn check_binding(what: &str, bytes: usize, limits: &PlanLimits) -> Result<(), GpuError> {
    if bytes as u64 > limits.max_binding_bytes {
        return Err(GpuError::TooLarge(format!(
            "{what} needs {bytes} bytes, the device binds at most {} bytes",
            limits.max_binding_bytes
        )));
    }
    Ok(())
}

/// The pipeline and the static tables of a run.
fn create_shared<R: Real>(
    context: &GpuContext,
    source: &str,
    statics: &Statics<R>,
    n_chunks: usize,
    bars_per_chunk: usize,
    fail_after_dispatches: Option<usize>,
) -> Result<Shared, GpuError> {
    // Held while compiling: runs that need the same shader wait for one compile.
    let mut cache = context
        .pipelines
        .lock()
        .map_err(|_| GpuError::Dispatch("the pipeline cache is poisoned".to_string()))?;
    let pipeline = match cache.get(source) {
        Some(pipeline) => Arc::clone(pipeline),
        None => {
            let pipeline = Arc::new(create_pipeline(context, source)?);
            cache.insert(source.to_string(), Arc::clone(&pipeline));
            pipeline
        }
    };
    drop(cache);
    let device = &context.device;
    Ok(Shared {
        pipeline,
        statics_real: storage_buffer(device, "statics_real", bytemuck::cast_slice(&statics.real)),
        statics_u32: storage_buffer(device, "statics_u32", bytemuck::cast_slice(&statics.u32s)),
        n_chunks,
        bars_per_chunk,
        fail_after_dispatches,
    })
}

/// Uploads one dispatch group's tables and submits its dispatches (each advances every row by
/// one bar chunk), then the copy of the results to a staging buffer.
fn submit<R: Real>(
    context: &GpuContext,
    shared: &Shared,
    tables: &BatchTables<R>,
    range: std::ops::Range<usize>,
    limits: &PlanLimits,
) -> Result<InFlight, GpuError> {
    let device = &context.device;
    let rows = tables.sets.len() * tables.dims.n_windows as usize;
    let n_symbols = (tables.dims.n_symbols as usize).max(1);
    let out_bytes = rows * size_of::<R::Accum>();
    let state_bytes = rows * R::state_bytes(n_symbols, tables.dims.n_streams as usize);
    // The planner keeps every buffer within a binding; these checks guard its arithmetic.
    for (what, bytes) in [
        ("batch_real", tables.real.len() * size_of::<R>()),
        ("batch_u32", tables.u32s.len() * 4),
        ("sets", tables.sets.len() * size_of::<R::SetParams>()),
        ("out", out_bytes),
        ("state", state_bytes),
    ] {
        check_binding(what, bytes, limits)?;
    }
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dims"),
        contents: bytemuck::bytes_of(&tables.dims),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let batch_real = storage_buffer(device, "batch_real", bytemuck::cast_slice(&tables.real));
    let batch_u32 = storage_buffer(device, "batch_u32", bytemuck::cast_slice(&tables.u32s));
    let sets = storage_buffer(device, "sets", bytemuck::cast_slice(&tables.sets));
    // Pre-filled with the sentinel: a row no dispatch started reads status 0xFFFFFFFF (the
    // first dispatch starts the rows it finds so).
    let out = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("out"),
        contents: &vec![SENTINEL_BYTE; out_bytes],
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    });
    // Written by a row's first dispatch before any dispatch reads it.
    let state = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("state"),
        size: state_bytes as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("out staging"),
        size: out_bytes as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let entries = [
        (0, &dims),
        (1, &shared.statics_real),
        (2, &shared.statics_u32),
        (3, &batch_real),
        (4, &batch_u32),
        (5, &sets),
        (6, &out),
        (7, &state),
    ]
    .map(|(binding, buffer)| wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("backtest"),
        layout: &shared.pipeline.layout,
        entries: &entries,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("backtest"),
    });
    let groups = (rows as u32).div_ceil(WORKGROUP_SIZE);
    // One pass per chunk: wgpu orders the passes' read-write accesses to the state buffers.
    for _ in 0..shared.n_chunks {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("backtest chunk"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&shared.pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&out, 0, &staging, 0, out_bytes as u64);
    context.queue.submit([encoder.finish()]);
    let (tx, rx) = mpsc::channel();
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |result| {
            let _ = tx.send(result);
        });
    scope_error(oom)?;
    scope_error(scope)?;
    Ok(InFlight {
        range,
        staging,
        mapped: rx,
        _buffers: vec![dims, batch_real, batch_u32, sets, out, state],
    })
}

/// Waits for a dispatch group and writes its metrics; every row must carry the written status.
fn read_back<R: Real>(
    context: &GpuContext,
    shared: &Shared,
    flight: InFlight,
    input: &BatchInput<'_>,
    out: &mut [Metrics],
) -> Result<(), GpuError> {
    context
        .device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Dispatch(e.to_string()))?;
    let mapped = flight
        .mapped
        .recv()
        .map_err(|_| GpuError::Dispatch("read-back was never mapped".to_string()))?;
    mapped.map_err(|e| GpuError::Dispatch(format!("read-back failed: {e}")))?;
    if let Some(lost) = context.lost() {
        return Err(GpuError::Dispatch(lost));
    }
    let n_windows = input.windows.len();
    let view = flight
        .staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| GpuError::Dispatch(format!("read-back not mapped: {e}")))?;
    let rows: &[R::Accum] = bytemuck::cast_slice(&view);
    let target = &mut out[flight.range.start * n_windows..flight.range.end * n_windows];
    if rows.len() != target.len() {
        return Err(GpuError::Dispatch(format!(
            "read back {} rows, expected {}",
            rows.len(),
            target.len()
        )));
    }
    for (i, (slot, row)) in target.iter_mut().zip(rows).enumerate() {
        let row = R::accum(row);
        if row.status != STATUS_WRITTEN {
            let what = match row.status {
                STATUS_LOOP_BUDGET => format!(
                    "the invocation ran out of the adapter's loop budget ({} bars per chunk are too many; lavapipe ends every loop after 65,535 iterations per invocation)",
                    shared.bars_per_chunk
                ),
                STATUS_IN_PROGRESS => {
                    "the window never reached its last bar (a dispatch of its group did not run)"
                        .to_string()
                }
                STATUS_NOT_STARTED => {
                    "no dispatch ran the row (it still holds the sentinel)".to_string()
                }
                status => format!("the shader did not write its row (status {status:#x})"),
            };
            return Err(GpuError::Dispatch(format!(
                "set {} window {}: {what}",
                flight.range.start + i / n_windows,
                i % n_windows,
            )));
        }
        let w = input.windows.windows()[i % n_windows];
        let span = crate::engine::span_ms(
            &input.market.open_time[w.start..w.end],
            input.market.interval_ms,
        );
        *slot = plan::finish_metrics(&row, input.initial_capital, span);
    }
    Ok(())
}

/// Resolves the sets of `range`, keeps as many as one group's tables hold ([`plan::fit_sets`]),
/// packs them (indicators on the CPU) and submits them. Returns the submission and the
/// number of sets it took.
fn prepare_and_submit<R: Real>(
    context: &GpuContext,
    shared: &Shared,
    statics: &Statics<R>,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    range: std::ops::Range<usize>,
    limits: &PlanLimits,
) -> Result<(Result<InFlight, GpuError>, usize), GpuError> {
    // Input errors (a set that does not resolve, TA-Lib refusing an argument, a set whose
    // tables cannot fit any binding) are the caller's and are returned as such; only GPU
    // failures go to the CPU fallback.
    let resolved = plan::resolve_sets(input, sets, range.clone())?;
    let taken = plan::fit_sets::<R>(input, statics, &resolved, limits.max_binding_bytes)?;
    let tables = plan::pack_batch::<R>(input, statics, &resolved[..taken])?;
    let range = range.start..range.start + taken;
    Ok((submit(context, shared, &tables, range, limits), taken))
}

/// Reads back `flight` into `out`, or fails it as [`GpuOptions::fail_after_dispatches`] asks.
fn finish_group<R: Real>(
    context: &GpuContext,
    shared: &Shared,
    report: &mut GpuReport,
    flight: InFlight,
    input: &BatchInput<'_>,
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), (usize, String)> {
    let start = flight.range.start;
    let done = flight.range.len();
    if shared.fail_after_dispatches == Some(report.groups) {
        return Err((
            start,
            format!(
                "GPU dispatch failed: injected failure of dispatch group {} (GpuOptions::fail_after_dispatches)",
                report.groups
            ),
        ));
    }
    read_back::<R>(context, shared, flight, input, out).map_err(|e| (start, e.to_string()))?;
    report.groups += 1;
    report.gpu_sets += done;
    progress(done);
    Ok(())
}

fn run_typed<R: Real>(
    context: &GpuContext,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    options: &GpuOptions,
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GpuReport, GpuError> {
    let mut report = GpuReport {
        adapter: context.info.clone(),
        precision: context.precision,
        groups: 0,
        chunks_per_group: 0,
        bars_per_chunk: 0,
        gpu_sets: 0,
        cpu_fallback_sets: 0,
        fallback_reason: None,
    };
    if sets.is_empty() {
        return Ok(report);
    }
    let n_windows = input.windows.len();
    let first = plan::resolve_sets(input, sets, 0..1)?;
    let mut statics = plan::pack_statics::<R>(input, &first[0])?;
    let limits = context.plan_limits(options, n_windows);
    check_binding(
        "statics_real (market columns, bracket tiers, funding rates)",
        statics.real.len() * size_of::<R>(),
        &limits,
    )?;
    check_binding(
        "statics_u32 (validity masks, bracket and funding indices, windows)",
        statics.u32s.len() * 4,
        &limits,
    )?;
    let per_set = SetBytes::of::<R>(n_windows, &statics.dims);
    let dispatches = plan::plan_dispatches(sets.len(), n_windows, &per_set, &limits)?;
    let budget = if context.info.is_hardware {
        plan::HARDWARE_LOOP_BUDGET
    } else {
        plan::SOFTWARE_LOOP_BUDGET
    };
    let bars_per_chunk = options
        .bars_per_chunk
        .unwrap_or_else(|| {
            plan::bars_per_chunk(
                budget,
                input.market.symbols.len(),
                statics.max_tiers,
                statics.max_events_per_bar,
                statics.streams.len(),
            )
        })
        .max(1);
    let warm_bars_per_chunk = options
        .warm_bars_per_chunk
        .unwrap_or_else(|| {
            plan::warm_bars_per_chunk(budget, input.market.symbols.len(), statics.streams.len())
        })
        .max(1);
    let work = plan::window_work(
        &input.windows.ranges(),
        statics.dims.warm_from as usize,
        statics.streams.len(),
    );
    let n_chunks = plan::dispatches_with_warm_up(&work, bars_per_chunk, warm_bars_per_chunk);
    statics.dims.bars_per_chunk = u32::try_from(bars_per_chunk).unwrap_or(u32::MAX);
    statics.dims.warm_bars_per_chunk = u32::try_from(warm_bars_per_chunk).unwrap_or(u32::MAX);
    report.chunks_per_group = n_chunks;
    report.bars_per_chunk = bars_per_chunk;
    let source = backtest_source(input, R::WGSL, &statics.dims)?;
    // First set not yet safely on the GPU; everything from it on goes to the CPU on failure.
    let mut failed: Option<(usize, String)> = None;
    match create_shared(
        context,
        &source,
        &statics,
        n_chunks,
        bars_per_chunk,
        options.fail_after_dispatches,
    ) {
        Err(e) => failed = Some((0, e.to_string())),
        Ok(shared) => {
            let mut pending: Option<InFlight> = None;
            let mut start = 0usize;
            while start < sets.len() {
                let end = (start + dispatches.max_sets).min(sets.len());
                let (next, taken) = prepare_and_submit(
                    context,
                    &shared,
                    &statics,
                    input,
                    sets,
                    start..end,
                    &limits,
                )?;
                if let Some(flight) = pending.take()
                    && let Err(e) = finish_group::<R>(
                        context,
                        &shared,
                        &mut report,
                        flight,
                        input,
                        out,
                        progress,
                    )
                {
                    failed = Some(e);
                    break;
                }
                match next {
                    Ok(flight) => pending = Some(flight),
                    Err(e) => {
                        failed = Some((start, e.to_string()));
                        break;
                    }
                }
                start += taken;
            }
            if failed.is_none()
                && let Some(flight) = pending.take()
                && let Err(e) =
                    finish_group::<R>(context, &shared, &mut report, flight, input, out, progress)
            {
                failed = Some(e);
            }
        }
    }
    if let Some((start, reason)) = failed {
        let rest = &sets[start..];
        let rows = &mut out[start * n_windows..];
        batch::run(input, rest, Backend::Simd(Precision::F64), rows, progress)
            .map_err(|e| GpuError::Fallback(e.to_string()))?;
        report.cpu_fallback_sets = rest.len();
        report.fallback_reason = Some(reason);
    }
    Ok(report)
}
