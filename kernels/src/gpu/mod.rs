//! The GPU backend: the fused batch backtest as a wgpu compute shader (WGSL in `shaders/`).
//! This is the only module that knows wgpu.
//!
//! One invocation runs one param set in one window (full run, or a walk-forward IS / OOS
//! window): an independent account simulated bar by bar, symbols in order, exactly as
//! [`crate::reference::run_windows`] + [`crate::engine::simulate`] (docs/SEMANTICS.md §2). The
//! spec's rules are compiled to WGSL ([`codegen`]); indicators are computed on the CPU with
//! TA-Lib once per distinct parameter tuple of a dispatch and uploaded. The shader folds the
//! per-bar equity into the sums of [`crate::engine::MetricsAcc`] and the host finishes them
//! with the same code as the reference.
//!
//! Host flow ([`run_with`]): device setup ([`GpuContext::new`]) is separate from running; the
//! dispatch plan ([`plan::plan_dispatches`]) is plain data; static tables are uploaded once;
//! each dispatch's tables are packed on the CPU while the previous dispatch runs (at most two
//! in flight); output buffers are pre-filled with a sentinel and every row's `status` is
//! checked on read-back. A failed dispatch or a lost device sends the remaining sets to the
//! CPU backend; finished dispatches keep their GPU results ([`GpuReport`] says how many).
//!
//! Precision: f32 by default; f64 when asked and the adapter has `SHADER_F64`. Tolerances per
//! metric: docs/SEMANTICS.md §5.

pub mod codegen;
pub mod layout;
pub mod plan;
pub mod shaders;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::batch::{self, Backend, BatchInput};
use crate::engine::Metrics;
use crate::spec::{ParamSet, ResolveError};
use layout::{Real, SENTINEL_BYTE, STATUS_WRITTEN};
use plan::{BatchTables, PlanLimits, Statics, WORKGROUP_SIZE};

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
    #[error("param set {index}: {source}")]
    Resolve {
        index: usize,
        #[source]
        source: ResolveError,
    },
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
}

/// How a GPU run went.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReport {
    pub adapter: AdapterInfo,
    pub precision: Precision,
    pub dispatches: usize,
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
        Ok(GpuContext {
            device,
            queue,
            info,
            precision,
            lost,
        })
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// The planner's view of the device limits.
    pub fn plan_limits(&self) -> PlanLimits {
        let limits = self.device.limits();
        PlanLimits {
            max_workgroups: limits.max_compute_workgroups_per_dimension,
            max_binding_bytes: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            target_sets: 65_536,
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
    let n_windows = input.windows.len();
    let expected = sets.len() * n_windows;
    if out.len() != expected {
        return Err(GpuError::OutputLength {
            expected,
            found: out.len(),
        });
    }
    match context.precision {
        Precision::F32 => run_typed::<f32>(context, input, sets, out, progress),
        Precision::F64 => run_typed::<f64>(context, input, sets, out, progress),
    }
}

/// The full WGSL of the backtest shader for `input`'s spec and market at precision `R`.
pub fn backtest_source(input: &BatchInput<'_>, real: &'static str) -> Result<String, GpuError> {
    let rules = codegen::rules_wgsl(input.spec);
    Ok(shaders::assemble(
        "backtest.wgsl",
        real,
        input.market.symbols.len().max(1),
        &rules,
    )?)
}

/// A dispatch submitted and not yet read back.
struct InFlight {
    range: std::ops::Range<usize>,
    staging: wgpu::Buffer,
    mapped: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    // Kept alive until read back.
    _buffers: Vec<wgpu::Buffer>,
}

struct Pipeline {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
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

fn scope_error(device: &wgpu::Device, scope: wgpu::ErrorScopeGuard) -> Result<(), GpuError> {
    let _ = device;
    match pollster::block_on(scope.pop()) {
        None => Ok(()),
        Some(e) => Err(GpuError::Dispatch(e.to_string())),
    }
}

fn create_pipeline(context: &GpuContext, source: &str) -> Result<Pipeline, GpuError> {
    let device = &context.device;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("shaders/backtest.wgsl"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for binding in 1..=5 {
        entries.push(storage_entry(binding, true));
    }
    entries.push(storage_entry(6, false));
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
    scope_error(device, scope)?;
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
            "{what} needs {bytes} bytes, the device binds at most {}",
            limits.max_binding_bytes
        )));
    }
    Ok(())
}

/// Uploads one dispatch's tables and submits the shader and the copy to a staging buffer.
fn submit<R: Real>(
    context: &GpuContext,
    pipeline: &Pipeline,
    statics: &(wgpu::Buffer, wgpu::Buffer),
    tables: &BatchTables<R>,
    range: std::ops::Range<usize>,
) -> Result<InFlight, GpuError> {
    let device = &context.device;
    let limits = context.plan_limits();
    let rows = tables.sets.len() * tables.dims.n_windows as usize;
    let out_bytes = rows * size_of::<R::Accum>();
    check_binding(
        "indicator columns",
        tables.real.len() * size_of::<R>(),
        &limits,
    )?;
    check_binding("batch u32 table", tables.u32s.len() * 4, &limits)?;
    check_binding("result rows", out_bytes, &limits)?;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dims"),
        contents: bytemuck::bytes_of(&tables.dims),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let batch_real = storage_buffer(device, "batch_real", bytemuck::cast_slice(&tables.real));
    let batch_u32 = storage_buffer(device, "batch_u32", bytemuck::cast_slice(&tables.u32s));
    let sets = storage_buffer(device, "sets", bytemuck::cast_slice(&tables.sets));
    // Pre-filled with the sentinel: a row the shader never wrote reads status 0xFFFFFFFF.
    let out = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("out"),
        contents: &vec![SENTINEL_BYTE; out_bytes],
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("out staging"),
        size: out_bytes as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("backtest"),
        layout: &pipeline.layout,
        entries: &[
            (0, &dims),
            (1, &statics.0),
            (2, &statics.1),
            (3, &batch_real),
            (4, &batch_u32),
            (5, &sets),
            (6, &out),
        ]
        .map(|(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        }),
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("backtest"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("backtest"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        let groups = (rows as u32).div_ceil(WORKGROUP_SIZE);
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
    scope_error(device, oom)?;
    scope_error(device, scope)?;
    Ok(InFlight {
        range,
        staging,
        mapped: rx,
        _buffers: vec![dims, batch_real, batch_u32, sets, out],
    })
}

/// Waits for a dispatch and writes its metrics; every row must carry the written status.
fn read_back<R: Real>(
    context: &GpuContext,
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
    for (i, (slot, row)) in target.iter_mut().zip(rows).enumerate() {
        let row = R::accum(row);
        if row.status != STATUS_WRITTEN {
            return Err(GpuError::Dispatch(format!(
                "set {} window {}: the shader did not write its row (status {:#x})",
                flight.range.start + i / n_windows,
                i % n_windows,
                row.status
            )));
        }
        *slot = plan::finish_metrics(&row, input.initial_capital, input.market.interval_ms);
    }
    if rows.len() != target.len() {
        return Err(GpuError::Dispatch(format!(
            "read back {} rows, expected {}",
            rows.len(),
            target.len()
        )));
    }
    Ok(())
}

/// Packs and submits dispatch `range` (resolve, indicators, upload).
fn prepare_and_submit<R: Real>(
    context: &GpuContext,
    pipeline: &Pipeline,
    statics_buffers: &(wgpu::Buffer, wgpu::Buffer),
    statics: &Statics<R>,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    range: std::ops::Range<usize>,
) -> Result<Result<InFlight, GpuError>, GpuError> {
    // Input errors (a set that does not resolve, TA-Lib refusing an argument) are the
    // caller's and are returned as such; only GPU failures go to the CPU fallback.
    let resolved = plan::resolve_sets(input, sets, range.clone())?;
    let tables = plan::pack_batch::<R>(input, statics, &resolved)?;
    Ok(submit(context, pipeline, statics_buffers, &tables, range))
}

fn run_typed<R: Real>(
    context: &GpuContext,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GpuReport, GpuError> {
    let mut report = GpuReport {
        adapter: context.info.clone(),
        precision: context.precision,
        dispatches: 0,
        gpu_sets: 0,
        cpu_fallback_sets: 0,
        fallback_reason: None,
    };
    if sets.is_empty() {
        return Ok(report);
    }
    let first = plan::resolve_sets(input, sets, 0..1)?;
    let statics = plan::pack_statics::<R>(input, &first[0])?;
    let limits = context.plan_limits();
    check_binding(
        "market tables",
        statics.real.len() * size_of::<R>(),
        &limits,
    )?;
    let dispatches = plan::plan_dispatches(
        sets.len(),
        input.windows.len(),
        size_of::<R::Accum>(),
        &limits,
    );
    let source = backtest_source(input, R::WGSL)?;
    let gpu = create_pipeline(context, &source).map(|pipeline| {
        let statics_buffers = (
            storage_buffer(
                &context.device,
                "statics_real",
                bytemuck::cast_slice(&statics.real),
            ),
            storage_buffer(
                &context.device,
                "statics_u32",
                bytemuck::cast_slice(&statics.u32s),
            ),
        );
        (pipeline, statics_buffers)
    });
    // First set not yet safely on the GPU; everything from it on goes to the CPU on failure.
    let mut failed: Option<(usize, String)> = None;
    match gpu {
        Err(e) => failed = Some((0, e.to_string())),
        Ok((pipeline, statics_buffers)) => {
            let mut pending: Option<InFlight> = None;
            for range in dispatches.batches {
                let next = prepare_and_submit(
                    context,
                    &pipeline,
                    &statics_buffers,
                    &statics,
                    input,
                    sets,
                    range.clone(),
                )?;
                if let Some(flight) = pending.take() {
                    let start = flight.range.start;
                    let done = flight.range.len();
                    match read_back::<R>(context, flight, input, out) {
                        Ok(()) => {
                            report.dispatches += 1;
                            report.gpu_sets += done;
                            progress(done);
                        }
                        Err(e) => {
                            failed = Some((start, e.to_string()));
                            break;
                        }
                    }
                }
                match next {
                    Ok(flight) => pending = Some(flight),
                    Err(e) => {
                        failed = Some((range.start, e.to_string()));
                        break;
                    }
                }
            }
            if failed.is_none()
                && let Some(flight) = pending.take()
            {
                let start = flight.range.start;
                let done = flight.range.len();
                match read_back::<R>(context, flight, input, out) {
                    Ok(()) => {
                        report.dispatches += 1;
                        report.gpu_sets += done;
                        progress(done);
                    }
                    Err(e) => failed = Some((start, e.to_string())),
                }
            }
        }
    }
    if let Some((start, reason)) = failed {
        let n_windows = input.windows.len();
        let rest = &sets[start..];
        let rows = &mut out[start * n_windows..];
        batch::run(input, rest, Backend::Scalar, rows, progress)
            .map_err(|e| GpuError::Fallback(e.to_string()))?;
        report.cpu_fallback_sets = rest.len();
        report.fallback_reason = Some(reason);
    }
    Ok(report)
}
