//! The rows of `cargo xtask bench-vs-pytorch`: which PyTorch case and which criterion bench
//! each compares, and the floating-point work of one step of ours (one multiply-add is two
//! FLOPs; GEMMs and convolutions only, the passes our code runs).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// The row's name (what `--only` matches).
    pub name: &'static str,
    /// The anchor's `case`, and the field holding its time in ms.
    pub torch: (&'static str, &'static str),
    /// The criterion full id of our bench.
    pub bench: &'static str,
    /// Our FLOPs per step.
    pub flops: f64,
}

/// `x Wᵀ` of a `[b, input]` batch with an `[output, input]` weight.
fn dense(b: usize, input: usize, output: usize) -> f64 {
    2.0 * (b * input * output) as f64
}

/// A 3 × 3 valid convolution of a `[b, cin, s, s]` batch to `[b, cout, s − 2, s − 2]`.
fn conv3(b: usize, cin: usize, cout: usize, s: usize) -> f64 {
    2.0 * (b * cin * 9 * cout * (s - 2) * (s - 2)) as f64
}

/// A dense layer trained: forward, weight gradient and (unless it is the first layer,
/// whose input gradient training never needs) the input gradient.
fn trained(flops: f64, first: bool) -> f64 {
    flops * if first { 2.0 } else { 3.0 }
}

/// Projected SpecReg on a `[b, n]` representation: `P = H_c V` and `∂R/∂H = (P ⊙ w) Vᵀ`.
fn spec(b: usize, n: usize) -> f64 {
    2.0 * dense(b, n, n)
}

const MLP: [(usize, usize); 4] = [(784, 1000), (1000, 1000), (1000, 1000), (1000, 10)];

fn mlp_layers(b: usize) -> impl Iterator<Item = (bool, f64)> {
    MLP.iter()
        .enumerate()
        .map(move |(i, &(input, output))| (i == 0, dense(b, input, output)))
}

fn shallow(b: usize) -> f64 {
    trained(dense(b, 784, 2000), true) + trained(dense(b, 2000, 10), false)
}

fn mlp(b: usize) -> f64 {
    mlp_layers(b).map(|(first, f)| trained(f, first)).sum()
}

/// The logit-Jacobian step: a trained layer (forward, then the cross-entropy's backward,
/// which also carries the penalty's tangent), plus `u = Jᵀv` (every layer's input gradient),
/// the tangent forward and the tangent's own weight-gradient GEMM `gᵀR{x}`.
fn mlp_jacobian(b: usize) -> f64 {
    mlp_layers(b)
        .map(|(first, f)| 3.0 * f + trained(f, first))
        .sum()
}

fn cnn(b: usize) -> f64 {
    trained(conv3(b, 1, 16, 28), true)
        + trained(conv3(b, 16, 32, 13), false)
        + trained(dense(b, 800, 1000), false)
        + trained(dense(b, 1000, 10), false)
}

/// Symmetric eigendecomposition with eigenvectors: the Householder tridiagonal reduction
/// (4/3 N³) and applying its reflectors to the tridiagonal solver's vectors (2 N³); the
/// solver itself is left out, so this is a lower bound.
fn eigh(n: usize) -> f64 {
    (4.0 / 3.0 + 2.0) * (n as f64).powi(3)
}

/// The rows, in table order.
pub fn rows() -> &'static [Row] {
    static ROWS: std::sync::OnceLock<Vec<Row>> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| {
        let step = "step_ms_median";
        let train = |name, torch, id, flops| Row {
            name,
            torch: (torch, step),
            bench: id,
            flops,
        };
        vec![
            train(
                "shallow_vanilla_b3500",
                "shallow/none/B3500",
                "train_step/cpu/f32/shallow_vanilla_b3500",
                shallow(3500),
            ),
            train(
                "shallow_spec_b3500",
                "shallow/spec/B3500",
                "train_step/cpu/f32/shallow_spec_b3500",
                shallow(3500) + spec(3500, 2000),
            ),
            train(
                "mlp_vanilla_b1500",
                "mlp/none/B1500",
                "train_step/cpu/f32/mlp_vanilla_b1500",
                mlp(1500),
            ),
            train(
                "mlp_spec_b1500",
                "mlp/spec/B1500",
                "train_step/cpu/f32/mlp_spec_b1500",
                mlp(1500) + 3.0 * spec(1500, 1000),
            ),
            train(
                "mlp_jac_b1500",
                "mlp/jac/B1500",
                "train_step/cpu/f32/mlp_jac_b1500",
                mlp_jacobian(1500),
            ),
            train(
                "cnn_vanilla_b6000",
                "cnn/none/B6000",
                "train_step/cpu/f32/cnn_vanilla_b6000",
                cnn(6000),
            ),
            train(
                "cnn_spec_b6000",
                "cnn/spec/B6000",
                "train_step/cpu/f32/cnn_spec_b6000",
                cnn(6000) + spec(6000, 2704) + spec(6000, 800) + spec(6000, 1000),
            ),
            Row {
                name: "eigh_N1000",
                torch: ("eigh/N1000", "eigh_ms"),
                bench: "regularizer_cost/anchor/eigh_N1000_f32",
                flops: eigh(1000),
            },
            Row {
                name: "eigh_N2000",
                torch: ("eigh/N2000", "eigh_ms"),
                bench: "regularizer_cost/anchor/eigh_N2000_f32",
                flops: eigh(2000),
            },
            Row {
                name: "projection_N1000_B3500",
                torch: ("eigh/N1000", "projected_ms"),
                bench: "regularizer_cost/anchor/projection_N1000_B3500",
                flops: dense(3500, 1000, 1000),
            },
            Row {
                name: "projection_N2000_B3500",
                torch: ("eigh/N2000", "projected_ms"),
                bench: "regularizer_cost/anchor/projection_N2000_B3500",
                flops: dense(3500, 2000, 2000),
            },
            Row {
                name: "pgd40_mlp_b1000",
                torch: ("pgd40/mlp/B1000", "ms"),
                bench: "pgd/linf_40_steps_mlp_b1000_cpu",
                flops: 40.0 * 2.0 * mlp_layers(1000).map(|(_, f)| f).sum::<f64>(),
            },
        ]
    })
}

/// The anchor's `--only` for the rows `only` selects, when they are training cases of one
/// network and regulariser (else the whole anchor runs: its eigh and PGD cases run only
/// then).
pub fn torch_filter(only: &str) -> Option<String> {
    let picked: Vec<&Row> = rows().iter().filter(|r| r.name.contains(only)).collect();
    if picked.iter().any(|r| r.torch.1 != "step_ms_median") {
        return None;
    }
    let kinds: Vec<&str> = picked
        .iter()
        .map(|r| r.torch.0.rsplit_once('/').map_or(r.torch.0, |(k, _)| k))
        .collect();
    match kinds.as_slice() {
        [one] => Some(one.to_string()),
        [first, rest @ ..] => {
            let net = first.split('/').next().unwrap_or(first);
            rest.iter()
                .all(|k| k.starts_with(&format!("{net}/")))
                .then(|| format!("{net}/"))
        }
        [] => None,
    }
}

/// GEMM shapes of our `gemm` bench (and of the PyTorch GEMM the command times).
const GEMMS: [(usize, usize, usize); 3] =
    [(3500, 784, 2000), (1500, 1000, 1000), (6000, 800, 1000)];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The markdown table of one sitting.
pub fn table(
    torch: &BTreeMap<String, Value>,
    ours: &BTreeMap<String, f64>,
    only: Option<&str>,
    threads: usize,
    backend: &str,
) -> Result<String> {
    let mut ours_rate = Vec::new();
    let mut torch_rate = Vec::new();
    for (m, k, n) in GEMMS {
        let f = dense(m, k, n);
        let id = format!("gemm/{backend}/cpu/f32/{m}x{k}x{n}");
        let ms = ours
            .get(&id)
            .with_context(|| format!("our GEMM bench {id} has no result"))?;
        ours_rate.push(f / ms / 1e6);
        let case = format!("gemm/{m}x{k}x{n}");
        let t = torch
            .get(&case)
            .and_then(|v| v["ms"].as_f64())
            .with_context(|| format!("PyTorch printed no {case}"))?;
        torch_rate.push(f / t / 1e6);
    }
    let gemm = median(ours_rate.clone());
    let mut s = String::new();
    s.push_str(
        "| case | PyTorch ms | ours ms | ours / PyTorch | our GFLOP | our GFLOP/s | of our GEMM rate |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows()
        .iter()
        .filter(|r| only.is_none_or(|o| r.name.contains(o)))
    {
        let t = torch
            .get(r.torch.0)
            .and_then(|v| v[r.torch.1].as_f64())
            .with_context(|| format!("PyTorch printed no {} for {}", r.torch.1, r.torch.0))?;
        let o = *ours
            .get(r.bench)
            .with_context(|| format!("our bench {} has no result", r.bench))?;
        let rate = r.flops / o / 1e6;
        s.push_str(&format!(
            "| {} | {t:.1} | {o:.1} | {:.2} | {:.1} | {rate:.0} | {:.0}% |\n",
            r.name,
            o / t,
            r.flops / 1e9,
            100.0 * rate / gemm,
        ));
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    s.push_str(&format!(
        "\nGEMM rate in this sitting, f32, {threads} threads, shapes {}: ours ({backend}) {} GFLOP/s \
         (median {gemm:.0}), PyTorch {} GFLOP/s (median {:.0}).\n\
         PyTorch: training rows are the median of the anchor's timed steps; eigh and the \
         projection the best of 3; PGD-40 one run (the anchor's choices). Ours: criterion \
         medians. FLOPs count GEMMs and convolutions only (eigh: a lower bound).\n",
        GEMMS
            .iter()
            .map(|(m, k, n)| format!("{m}×{k}×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        list(&ours_rate),
        list(&torch_rate),
        median(torch_rate.clone()),
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_of_the_shallow_step_by_hand() {
        // 784 → 2000 forward and weight gradient, 2000 → 10 three passes, at B = 3500.
        let hand = 2.0 * 2.0 * 3500.0 * 784.0 * 2000.0 + 3.0 * 2.0 * 3500.0 * 2000.0 * 10.0;
        assert_eq!(shallow(3500), hand);
        assert_eq!(conv3(1, 1, 16, 28), 2.0 * 9.0 * 16.0 * 26.0 * 26.0);
    }

    #[test]
    fn only_narrows_the_anchor_to_one_network_or_runs_it_all() {
        assert_eq!(torch_filter("mlp_spec").as_deref(), Some("mlp/spec"));
        assert_eq!(torch_filter("cnn").as_deref(), Some("cnn/"));
        assert_eq!(torch_filter("vanilla"), None);
        assert_eq!(torch_filter("eigh"), None);
        assert_eq!(torch_filter("pgd"), None);
    }

    #[test]
    fn every_row_has_a_distinct_name_and_bench() {
        let names: std::collections::BTreeSet<_> = rows().iter().map(|r| r.name).collect();
        let benches: std::collections::BTreeSet<_> = rows().iter().map(|r| r.bench).collect();
        assert_eq!(names.len(), rows().len());
        assert_eq!(benches.len(), rows().len());
    }

    #[test]
    fn the_table_reads_the_named_backends_gemm_and_says_which() {
        let mut torch = BTreeMap::new();
        let mut ours = BTreeMap::new();
        for (m, k, n) in GEMMS {
            // 1 ms each side: 2mkn/1e6 GFLOP/s.
            torch.insert(format!("gemm/{m}x{k}x{n}"), serde_json::json!({"ms": 1.0}));
            ours.insert(format!("gemm/openblas/cpu/f32/{m}x{k}x{n}"), 1.0);
        }
        let r = &rows()[0];
        torch.insert(r.torch.0.to_string(), serde_json::json!({ r.torch.1: 4.0 }));
        ours.insert(r.bench.to_string(), 2.0);
        let t = table(&torch, &ours, Some(r.name), 2, "openblas").unwrap();
        assert!(
            t.contains(&format!("| {} | 4.0 | 2.0 | 0.50 |", r.name)),
            "{t}"
        );
        assert!(t.contains("ours (openblas)"), "{t}");
        let e = table(&torch, &ours, Some(r.name), 2, "faer").unwrap_err();
        assert!(e.to_string().contains("gemm/faer/cpu/f32/"), "{e}");
    }
}
