//! `etrading bench samplers SPEC`: search quality of the samplers on a fixed budget. Every grid
//! point of the spec is evaluated once (one batch through the SIMD kernel, scored with the
//! spec's objective and filters), then each sampler searches that table for `--budget` trials
//! asked in batches of `--batch`, over `--seeds` seeds: our TPE (multivariate and
//! independent, kernels::search), the `tpe` crate (one univariate optimiser per param, as the
//! crate is built) and random search. Printed per sampler: mean and median best objective,
//! mean regret to the grid's optimum, and how often it beat random search on the same seed.
//!
//! The `tpe` crate is used only here (cli), as a yardstick: our samplers stay in kernels,
//! which keep one rand version and batched ask/tell.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use etrading_kernels::batch;
use etrading_kernels::engine::Metrics;
use etrading_kernels::search::{
    Dim, Observation, Sampler, SamplerKind, SearchSpace, TpeConfig, score_trial,
};
use etrading_kernels::spec::{ParamSet, Spec};
use rand_tpe::SeedableRng as _;

use crate::research::{BackendArg, PrecisionArg, Research, ResearchArgs};

#[derive(Debug, Args)]
pub struct BenchSamplersArgs {
    /// Boxed: the research flags would make `bench`'s subcommand enum large.
    #[command(flatten)]
    pub research: Box<ResearchArgs>,
    /// Trials per search.
    #[arg(long, default_value_t = 100)]
    pub budget: usize,
    /// Trials asked per batch (told together after the batch is evaluated).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Seeds per sampler (0..N).
    #[arg(long, default_value_t = 16)]
    pub seeds: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The samplers compared, in report order.
const SAMPLERS: [&str; 5] = [
    "tpe",
    "tpe-independent",
    "tpe-crate",
    "tpe-crate-redraw",
    "random",
];

/// One sampler's results over the seeds.
#[derive(Debug)]
struct Outcome {
    name: &'static str,
    /// Best objective per seed (NEG_INFINITY when no trial passed the filters).
    best: Vec<f64>,
    /// Proposals that repeated a grid point already proposed (wasted budget).
    repeats: usize,
    seconds: f64,
}

pub fn run(args: &BenchSamplersArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.budget == 0 || args.batch == 0 || args.seeds == 0 {
        bail!("--budget, --batch and --seeds must be at least 1");
    }
    let research = Research::load(&args.research)?;
    let spec = &research.spec;
    let grid = research.grid()?;
    let search = SearchSpace::new(&spec.params);
    if !search.is_discrete() {
        bail!(
            "{}: the sampler benchmark evaluates the whole grid first; every param needs a finite domain (a list or a range with a step)",
            spec.file
        );
    }
    let started = Instant::now();
    let table = objective_table(&research, grid.total)?;
    let table_seconds = started.elapsed().as_secs_f64();
    let valid: Vec<f64> = table.iter().flatten().copied().collect();
    if valid.is_empty() {
        bail!("{}: no grid point passes the filters", spec.file);
    }
    let optimum = valid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut outcomes = Vec::new();
    for name in SAMPLERS {
        let started = Instant::now();
        let mut best = Vec::new();
        let mut repeats = 0;
        for seed in 0..args.seeds {
            let (b, r) = match name {
                "tpe-crate" => search_tpe_crate(&search, spec, &table, seed, 1, args)?,
                "tpe-crate-redraw" => {
                    search_tpe_crate(&search, spec, &table, seed, REDRAWS_PER_POINT, args)?
                }
                _ => {
                    let (kind, multivariate) = match name {
                        "tpe" => (SamplerKind::Tpe, true),
                        "tpe-independent" => (SamplerKind::Tpe, false),
                        _ => (SamplerKind::Random, false),
                    };
                    let config = TpeConfig {
                        multivariate,
                        ..TpeConfig::default()
                    };
                    search_ours(&search, spec, &table, kind, config, seed, args)?
                }
            };
            best.push(b);
            repeats += r;
        }
        outcomes.push(Outcome {
            name,
            best,
            repeats,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let random = outcomes
        .iter()
        .find(|o| o.name == "random")
        .map(|o| o.best.clone())
        .unwrap_or_default();
    let stats: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let mean = o.best.iter().sum::<f64>() / o.best.len() as f64;
            let wins = o.best.iter().zip(&random).filter(|(a, b)| a > b).count();
            (o, mean, median(&o.best), optimum - mean, wins)
        })
        .collect();
    if args.json {
        let doc = json!({
            "schema": "etrading.bench-samplers/1",
            "spec": spec.strategy.id,
            "objective": spec.objective.name.name(),
            "grid_points": table.len(),
            "passing_filters": valid.len(),
            "optimum": optimum,
            "budget": args.budget,
            "batch": args.batch,
            "seeds": args.seeds,
            "table_seconds": table_seconds,
            "samplers": stats.iter().map(|(o, mean, median, regret, wins)| json!({
                "name": o.name,
                "mean_best": mean,
                "median_best": median,
                "mean_regret": regret,
                "seeds_better_than_random": wins,
                "repeated_proposals": o.repeats,
                "seconds": o.seconds,
                "best_per_seed": o.best.iter().map(|&b| serde_json::Number::from_f64(b).map_or(serde_json::Value::Null, serde_json::Value::Number)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "sampler bench: {} ({}), {} grid points ({} pass the filters, optimum {optimum:.4}) evaluated in {table_seconds:.2} s; {} trials in batches of {}, seeds 0..{}",
        spec.strategy.id,
        spec.objective.name.name(),
        table.len(),
        valid.len(),
        args.budget,
        args.batch,
        args.seeds
    )?;
    writeln!(
        out,
        "{:<16} {:>10} {:>12} {:>12} {:>14} {:>9} {:>8}",
        "sampler", "mean best", "median best", "mean regret", "beats random", "repeats", "time"
    )?;
    for (o, mean, median, regret, wins) in &stats {
        writeln!(
            out,
            "{:<16} {mean:>10.4} {median:>12.4} {regret:>12.4} {:>14} {:>9} {:>7.2}s",
            o.name,
            format!("{wins}/{}", args.seeds),
            o.repeats,
            o.seconds
        )?;
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The objective of every grid point (None when a filter discards it), by grid index.
fn objective_table(research: &Research, total: u64) -> anyhow::Result<Vec<Option<f64>>> {
    let spec = &research.spec;
    let sets: Vec<ParamSet> = (0..total)
        .map(|i| spec.params.decode(i).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    let nw = research.windows.windows().len();
    let mut rows = vec![Metrics::default(); sets.len() * nw];
    let (backend, _) = BackendArg::Simd.pick(PrecisionArg::Auto)?;
    let market = research.market();
    let input = research.input(&market);
    batch::run(&input, &sets, backend, &mut rows, &|_| {})
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    Ok(sets
        .iter()
        .enumerate()
        .map(|(k, set)| {
            let lev = spec.leverage_used(set);
            score_trial(
                &spec.objective,
                &research.windows,
                &rows[k * nw..(k + 1) * nw],
                lev,
            )
            .value
            .ok()
        })
        .collect())
}

/// The best objective one of our samplers finds (kernels::search, batched ask/tell).
fn search_ours(
    search: &SearchSpace,
    spec: &Spec,
    table: &[Option<f64>],
    kind: SamplerKind,
    config: TpeConfig,
    seed: u64,
    args: &BenchSamplersArgs,
) -> anyhow::Result<(f64, usize)> {
    let mut sampler = Sampler::new(kind, &spec.params, seed, config, &[])
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let mut history: Vec<Observation> = Vec::new();
    let budget = args.budget.min(table.len());
    while history.len() < budget {
        let sets = sampler.ask(&history, args.batch.min(budget - history.len()));
        if sets.is_empty() {
            break;
        }
        for set in sets {
            let index = search
                .grid_index(&set)
                .context("a sampler proposed a point off the grid")?;
            history.push(Observation {
                set,
                value: table[index as usize],
            });
        }
    }
    let best = history
        .iter()
        .filter_map(|o| o.value)
        .fold(f64::NEG_INFINITY, f64::max);
    // Ours never repeat a grid point.
    Ok((best, 0))
}

/// One `tpe` crate optimiser per param that varies: a histogram over the choices of a list, a
/// Parzen estimator over the index coordinate of a stepped range.
enum CrateDim {
    Fixed,
    Choice(tpe::TpeOptimizer),
    Steps(tpe::TpeOptimizer, u64),
}

/// Draws per proposal before `tpe-crate-redraw` accepts a grid point already proposed (as our
/// samplers, which never repeat a point on a finite grid, draw up to 32).
const REDRAWS_PER_POINT: usize = 32;

/// The best objective the `tpe` crate finds, drawing up to `draws` times per proposal until it
/// gets a grid point not proposed before: the first `TpeConfig::default().n_startup`
/// trials at random (as the crate's docs advise), then one optimiser per param (it minimises,
/// so it is told `-objective`, and `+inf` for a discarded trial); a batch is asked in full
/// before it is told. The crate may propose a grid point again: such a proposal uses budget,
/// as it would in a real run, and is counted.
fn search_tpe_crate(
    search: &SearchSpace,
    spec: &Spec,
    table: &[Option<f64>],
    seed: u64,
    draws: usize,
    args: &BenchSamplersArgs,
) -> anyhow::Result<(f64, usize)> {
    let mut dims: Vec<CrateDim> = Vec::with_capacity(search.dims.len());
    for (d, dim) in search.dims.iter().enumerate() {
        let n = search.cardinality(d).unwrap_or(1);
        dims.push(match dim {
            Dim::Fixed(_) => CrateDim::Fixed,
            _ if n <= 1 => CrateDim::Fixed,
            Dim::Choice(_) => CrateDim::Choice(tpe::TpeOptimizer::new(
                tpe::histogram_estimator(),
                tpe::categorical_range(n as usize).context("tpe crate range")?,
            )),
            _ => CrateDim::Steps(
                tpe::TpeOptimizer::new(
                    tpe::parzen_estimator(),
                    tpe::range(-0.5, n as f64 - 0.5).context("tpe crate range")?,
                ),
                n,
            ),
        });
    }
    let mut rng = rand_tpe::rngs::StdRng::seed_from_u64(seed);
    let mut random = Sampler::new(
        SamplerKind::Random,
        &spec.params,
        seed,
        TpeConfig::default(),
        &[],
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let n_startup = TpeConfig::default().n_startup;
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    let mut best = f64::NEG_INFINITY;
    let mut done = 0;
    let mut startup: Vec<Observation> = Vec::new();
    while done < args.budget {
        let n = args.batch.min(args.budget - done);
        // Each proposal: the raw coordinate per dimension (told back) and the grid index.
        let mut proposals: Vec<(Vec<f64>, u64)> = Vec::with_capacity(n);
        if done < n_startup {
            for set in random.ask(&startup, n) {
                let index = search
                    .grid_index(&set)
                    .context("random search proposed a point off the grid")?;
                let coords = (0..dims.len())
                    .map(|d| search.coordinate_of(d, &set.values[d]).unwrap_or(0.0))
                    .collect();
                startup.push(Observation {
                    set,
                    value: table[index as usize],
                });
                proposals.push((coords, index));
            }
        } else {
            for _ in 0..n {
                let mut proposal = None;
                for _ in 0..draws.max(1) {
                    let (coords, index) = ask_tpe_crate(&mut dims, search, &mut rng)?;
                    let fresh =
                        !seen.contains(&index) && !proposals.iter().any(|(_, i)| *i == index);
                    proposal = Some((coords, index));
                    if fresh {
                        break;
                    }
                }
                proposals.extend(proposal);
            }
        }
        for (coords, index) in proposals {
            if !seen.insert(index) {
                repeats += 1;
            }
            let value = table[index as usize];
            if let Some(v) = value {
                best = best.max(v);
            }
            let told = value.map_or(f64::INFINITY, |v| -v);
            for (dim, &x) in dims.iter_mut().zip(&coords) {
                match dim {
                    CrateDim::Fixed => {}
                    CrateDim::Choice(opt) | CrateDim::Steps(opt, _) => {
                        opt.tell(x, told).context("tpe crate tell")?
                    }
                }
            }
            done += 1;
        }
    }
    Ok((best, repeats))
}

/// One proposal of the `tpe` crate's optimisers: the raw coordinate per dimension (what they
/// are told) and the grid index of the point.
fn ask_tpe_crate(
    dims: &mut [CrateDim],
    search: &SearchSpace,
    rng: &mut rand_tpe::rngs::StdRng,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let mut coords = Vec::with_capacity(dims.len());
    let mut values = Vec::with_capacity(dims.len());
    for (d, dim) in dims.iter_mut().enumerate() {
        let (coord, i) = match dim {
            CrateDim::Fixed => (0.0, 0),
            CrateDim::Choice(opt) => {
                let x = opt.ask(rng).context("tpe crate ask")?;
                (x, x as u64)
            }
            CrateDim::Steps(opt, n) => {
                let x = opt.ask(rng).context("tpe crate ask")?;
                (x, (x.round().max(0.0) as u64).min(*n - 1))
            }
        };
        coords.push(coord);
        values.push(search.value_at_index(d, i));
    }
    let index = search
        .grid_index(&ParamSet { values })
        .context("the tpe crate proposed a point off the grid")?;
    Ok((coords, index))
}
