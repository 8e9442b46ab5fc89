//! The adapter's check of the f32 shader's compensated arithmetic (`shaders/shared/pair.wgsl`):
//! a probe shader built from that file evaluates `two_sum` and `pair_add` on adversarial
//! inputs, and the host compares each result with the same f32 steps on the CPU (IEEE, in
//! the written order) and checks that `hi + lo` is the exact sum.
//!
//! Why: two-sum's error term `(a - (hi - (hi - a))) + (b - (hi - a))` is zero to a compiler
//! that treats float addition as associative (`(a + b) - a` = `b`); WGSL does not forbid
//! that (docs/SEMANTICS.md §5), and naga marks nothing `NoContraction` in the SPIR-V it emits.

use super::{GpuContext, GpuError, scope_error, storage_buffer, storage_entry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc;

/// The probe: per case `(a, b, lo, x)`, writes `two_sum(a, b)` and `pair_add(a, lo, x)`.
const PROBE_ENTRY: &str = "
@group(0) @binding(0) var<storage, read> probe_in: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> probe_out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> probe_one: u32;

@compute @workgroup_size(64)
fn pair_probe(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&probe_in)) {
        return;
    }
    pair_one = f32(probe_one);
    let v = probe_in[i];
    let s = two_sum(v.x, v.y);
    let p = pair_add(v.x, v.z, v.w);
    probe_out[i] = vec4<f32>(s.hi, s.lo, p.hi, p.lo);
}
";

/// The probe shader's WGSL: `shaders/shared/pair.wgsl` at f32, then the entry point.
pub fn probe_source() -> Result<String, GpuError> {
    let pair = super::shaders::SHADER_FILES
        .iter()
        .find(|(name, _)| *name == "shared/pair.wgsl")
        .map(|(_, text)| *text)
        .ok_or_else(|| super::shaders::ShaderError::Missing("shared/pair.wgsl".to_string()))?;
    Ok(format!("alias real = f32;\n{pair}\n{PROBE_ENTRY}"))
}

/// One probe case: `two_sum(a, b)` and `pair_add(a, lo, x)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairCase {
    pub a: f32,
    pub b: f32,
    pub lo: f32,
    pub x: f32,
}

/// What the probe (or [`emulate`]) computed for a case: `two_sum(a, b)` and
/// `pair_add(a, lo, x)` as `(hi, lo)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairResult {
    pub two_sum: (f32, f32),
    pub pair_add: (f32, f32),
}

fn two_sum(a: f32, b: f32) -> (f32, f32) {
    let hi = a + b;
    let bv = hi - a;
    let av = hi - bv;
    (hi, (a - av) + (b - bv))
}

/// The probe's f32 steps on the CPU, in the written order.
pub fn emulate(case: &PairCase) -> PairResult {
    let s = two_sum(case.a, case.x);
    PairResult {
        two_sum: two_sum(case.a, case.b),
        pair_add: two_sum(s.0, s.1 + case.lo),
    }
}

/// Adversarial cases: the textbook ones (`1 + 1e-8`, `2^24 + 1`, cancellation, mixed
/// signs), then `n_random` seeded ones whose exponents differ by at most 28 (so `a + b` is
/// exact in f64) and whose `lo` is a residual of `a` (at most half a unit of `a`'s last place).
/// Every value is normal and far from overflow.
pub fn adversarial_cases(n_random: usize, seed: u64) -> Vec<PairCase> {
    let case = |a: f32, b: f32, lo: f32, x: f32| PairCase { a, b, lo, x };
    let mut cases = vec![
        case(1.0, 1e-8, 1e-8, 1e-8),
        case(16_777_216.0, 1.0, 0.5, 1.0),
        case(16_777_216.0, -1.0, -0.25, 3.0),
        case(1.0, -0.999_999_94, 2e-8, -1.0),
        case(3.0e4, 1.2345678e-3, -6.0e-4, 7.654321e-4),
        case(-1.0e6, 1.0e-2, 3.0e-2, -1.0e-2),
        case(0.1, 0.2, 7.45e-10, 0.3),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..n_random {
        let ea: i32 = rng.random_range(-20..20);
        let eb = ea - rng.random_range(0..=28);
        let elo = ea - 25 - rng.random_range(0..=3);
        let ex = ea - rng.random_range(0..=28);
        let mut value = |exponent: i32| {
            let mantissa: f32 = rng.random_range(1.0..2.0);
            let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            sign * mantissa * 2f32.powi(exponent)
        };
        let (a, b, lo, x) = (value(ea), value(eb), value(elo), value(ex));
        cases.push(case(a, b, lo, x));
    }
    cases
}

/// Why the probe's result for case `index` is wrong, or `None`: it must equal [`emulate`]
/// exactly, and `two_sum`'s `hi + lo` must be `a + b` exactly (in f64) with `hi = fl(a + b)`.
pub fn case_error(index: usize, case: &PairCase, got: &PairResult) -> Option<String> {
    let want = emulate(case);
    let exact = f64::from(case.a) + f64::from(case.b);
    let (hi, lo) = got.two_sum;
    if hi != case.a + case.b || f64::from(hi) + f64::from(lo) != exact {
        return Some(format!(
            "case {index}: two_sum({:e}, {:e}) = ({hi:e}, {lo:e}); hi + lo = {:e}, the exact \
             sum is {exact:e} = ({:e}, {:e})",
            case.a,
            case.b,
            f64::from(hi) + f64::from(lo),
            want.two_sum.0,
            want.two_sum.1
        ));
    }
    if got.pair_add != want.pair_add {
        return Some(format!(
            "case {index}: pair_add({:e}, {:e}, {:e}) = ({:e}, {:e}), IEEE f32 in the written \
             order gives ({:e}, {:e})",
            case.a,
            case.lo,
            case.x,
            got.pair_add.0,
            got.pair_add.1,
            want.pair_add.0,
            want.pair_add.1
        ));
    }
    None
}

/// Random cases of the self-check every new f32 [`GpuContext`] runs (beside the textbook
/// ones); the test suite runs 4,096.
pub const SELF_CHECK_CASES: usize = 256;
/// Its seed.
pub const SELF_CHECK_SEED: u64 = 0x7570;

/// `Ok` when every probe result in `got` is right for its case ([`case_error`]), else
/// [`GpuError::Compensation`] naming `adapter`, how many were wrong and the first.
pub fn check_results(
    adapter: &str,
    cases: &[PairCase],
    got: &[PairResult],
) -> Result<(), GpuError> {
    let mut errors = cases
        .iter()
        .zip(got)
        .enumerate()
        .filter_map(|(i, (case, got))| case_error(i, case, got));
    let first = errors.next();
    let failed = usize::from(first.is_some()) + errors.count();
    let missing = cases.len().saturating_sub(got.len());
    match first {
        None if missing == 0 => Ok(()),
        first => Err(GpuError::Compensation {
            adapter: adapter.to_string(),
            failed: failed + missing,
            cases: cases.len(),
            first: first.unwrap_or_else(|| format!("{missing} results missing")),
        }),
    }
}

impl GpuContext {
    /// Runs the probe shader on `cases`.
    pub fn eval_pairs(&self, cases: &[PairCase]) -> Result<Vec<PairResult>, GpuError> {
        if cases.is_empty() {
            return Ok(Vec::new());
        }
        let device = &self.device;
        let source = probe_source()?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("pair probe"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("pair probe bindings"),
            entries: &[
                storage_entry(0, true),
                storage_entry(1, false),
                storage_entry(2, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("pair probe layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("pair probe"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("pair_probe"),
            compilation_options: Default::default(),
            cache: None,
        });
        let input: Vec<[f32; 4]> = cases.iter().map(|c| [c.a, c.b, c.lo, c.x]).collect();
        let bytes = (input.len() * 16) as u64;
        let input = storage_buffer(device, "pair probe in", bytemuck::cast_slice(&input));
        let one = storage_buffer(device, "pair probe one", bytemuck::bytes_of(&1u32));
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pair probe out"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pair probe staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pair probe"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: input.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: output.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: one.as_entire_binding(),
                },
            ],
        });
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("pair probe"),
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pair probe"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups((cases.len() as u32).div_ceil(64), 1, 1);
        }
        encoder.copy_buffer_to_buffer(&output, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        scope_error(scope)?;
        let (tx, rx) = mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = tx.send(result);
            });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Dispatch(e.to_string()))?;
        rx.recv()
            .map_err(|_| GpuError::Dispatch("pair probe was never mapped".to_string()))?
            .map_err(|e| GpuError::Dispatch(format!("pair probe read-back failed: {e}")))?;
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| GpuError::Dispatch(format!("pair probe not mapped: {e}")))?;
        let rows: &[[f32; 4]] = bytemuck::cast_slice(&view);
        Ok(rows
            .iter()
            .map(|r| PairResult {
                two_sum: (r[0], r[1]),
                pair_add: (r[2], r[3]),
            })
            .collect())
    }
}
