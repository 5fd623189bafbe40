//! A small interleaved benchmark harness shared by the bench binaries.
//!
//! Every comparison runs its baseline and its candidates in the same process, in rounds: each
//! round times a batch of iterations of every variant, in an order that alternates from round
//! to round. A ratio is computed per round (candidate time / baseline time of that round) and
//! the median of those ratios is reported. On a small shared machine, load from other work
//! comes and goes within seconds; timing the variants back to back and taking per-round ratios
//! cancels most of it, which timing one benchmark after another does not.
//!
//! `cargo bench` passes `--bench`: then the full measurement runs. `cargo test --all-targets`
//! runs bench targets without it: then each variant runs a few iterations only, as a smoke test.

#![allow(dead_code)] // each bench binary uses its own subset

use std::time::{Duration, Instant};

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Number of interleaved rounds.
    pub rounds: usize,
    /// Wall time each variant should take per round (the iteration count is calibrated to it).
    pub per_round: Duration,
    /// `false` under `cargo test`: run a few iterations only and print less.
    pub full: bool,
}

impl Plan {
    /// The full plan under `cargo bench`, a smoke test otherwise. `BENCH_ROUNDS` overrides the
    /// number of rounds.
    pub fn from_args(rounds: usize, per_round: Duration) -> Self {
        let full = std::env::args().any(|a| a == "--bench");
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(rounds);
        if full {
            Self {
                rounds,
                per_round,
                full,
            }
        } else {
            Self {
                rounds: 1,
                per_round: Duration::from_millis(1),
                full,
            }
        }
    }
}

/// One thing to time: runs `n` iterations per call.
pub struct Variant<'a> {
    /// Shown in the output.
    pub name: &'static str,
    run: Box<dyn FnMut(u64) + 'a>,
}

impl<'a> Variant<'a> {
    /// A variant whose closure runs `n` iterations.
    pub fn new(name: &'static str, run: impl FnMut(u64) + 'a) -> Self {
        Self {
            name,
            run: Box::new(run),
        }
    }
}

/// The measurements of one variant.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The variant's name.
    pub name: &'static str,
    /// Median time per iteration over the rounds.
    pub per_iter: Duration,
    /// Median of the per-round ratios to the baseline (1.0 for the baseline itself).
    pub ratio: f64,
    /// The lowest and highest per-round ratio.
    pub ratio_range: (f64, f64),
}

/// Times `variants` (the first is the baseline) in interleaved rounds and prints one line per
/// variant. Returns the measurements.
///
/// `BENCH_ONLY=<text>` runs only the variants whose name contains it (to profile one); the
/// ratios are then to the first variant that runs.
pub fn compare(title: &str, plan: Plan, mut variants: Vec<Variant<'_>>) -> Vec<Measured> {
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        variants.retain(|v| v.name.contains(only.as_str()));
        if variants.is_empty() {
            return Vec::new();
        }
    }
    assert!(!variants.is_empty());
    // Warm up and calibrate: how many iterations fill `per_round` for the slowest variant.
    let mut iters = 1u64;
    loop {
        let slowest = variants
            .iter_mut()
            .map(|v| time(&mut v.run, iters))
            .max()
            .unwrap_or_default();
        if slowest >= plan.per_round / 4 || iters >= 1 << 30 {
            let scale = plan.per_round.as_secs_f64() / slowest.as_secs_f64().max(1e-9);
            iters = ((iters as f64 * scale) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    if !plan.full {
        iters = iters.min(3);
    }
    let mut per_round: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..plan.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..variants.len()).collect()
        } else {
            (0..variants.len()).rev().collect()
        };
        for i in order {
            per_round[i].push(time(&mut variants[i].run, iters));
        }
    }
    let baseline = per_round[0].clone();
    let results: Vec<Measured> = variants
        .iter()
        .zip(&per_round)
        .map(|(variant, times)| {
            let mut ratios: Vec<f64> = times
                .iter()
                .zip(&baseline)
                .map(|(t, b)| t.as_secs_f64() / b.as_secs_f64().max(1e-12))
                .collect();
            ratios.sort_by(f64::total_cmp);
            let mut sorted = times.clone();
            sorted.sort();
            Measured {
                name: variant.name,
                per_iter: sorted[sorted.len() / 2] / u32::try_from(iters).unwrap_or(u32::MAX),
                ratio: median(&ratios),
                ratio_range: (ratios[0], ratios[ratios.len() - 1]),
            }
        })
        .collect();
    if plan.full {
        println!(
            "\n## {title}\n({} rounds x {iters} iterations per variant, interleaved)",
            plan.rounds
        );
        for m in &results {
            println!(
                "  {:<58} {:>12}/op  {:>9.0} op/s  ratio {:.3} (range {:.3}..{:.3})",
                m.name,
                format_duration(m.per_iter),
                1.0 / m.per_iter.as_secs_f64().max(1e-12),
                m.ratio,
                m.ratio_range.0,
                m.ratio_range.1
            );
        }
    } else {
        println!("{title}: smoke test passed ({} variants)", results.len());
    }
    results
}

fn time(run: &mut dyn FnMut(u64), iters: u64) -> Duration {
    let start = Instant::now();
    run(iters);
    start.elapsed()
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `1.23 µs`, `456 ns`, `7.89 ms`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
