//! `[eval]`: what is measured on a trained network, and the paper's grids.

use serde::{Deserialize, Serialize};

/// `[eval]`: robustness, spectrum and sensitivity evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate on the first `test_subset` test images (default: all 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    /// Images per forward pass during evaluation (default 2000). Batches are taken in
    /// test-set order; where a network normalises with batch statistics at evaluation
    /// (batch-statistics whitening, the `*-bn-batch` curves) every batch must have this
    /// size, so it must divide the number of test images.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// FGSM radii ε (L∞, pixels in [0, 1]; default the paper's grid, 0 to 0.3 by 0.025).
    #[serde(default = "paper_eps_grid")]
    pub fgsm_eps: Vec<f64>,
    /// PGD radii ε (default the paper's grid).
    #[serde(default = "paper_eps_grid")]
    pub pgd_eps: Vec<f64>,
    /// PGD steps (paper: 40).
    #[serde(default = "default_pgd_steps")]
    pub pgd_steps: usize,
    /// PGD step size η (paper: 0.01).
    #[serde(default = "default_pgd_step")]
    pub pgd_step_size: f64,
    /// Drop an image from the gradient attacks (PGD, PGD-CW, APGD) at its first
    /// misclassified iterate (default `true`). Each image keeps its worst iterate, so which
    /// images are fooled, and the robust accuracy, are the same as without; a fooled image's
    /// loss in `mean_loss` is then that of its first fooling iterate, not of the whole run.
    /// Networks that normalise with batch statistics at evaluation (the reference's
    /// whitening, the `*-bn-batch` curves) are attacked without it: there removing an image
    /// would change the others' outputs.
    #[serde(default = "super::schema::yes")]
    pub early_exit: bool,
    /// Start PGD from a uniform random point of the ε-ball (default `true`, as the
    /// reference's PGD and the authors' Foolbox evaluation; the worst iterate is kept, so
    /// the attack is at least as strong as from the image itself).
    #[serde(default = "super::schema::yes")]
    pub pgd_random_start: bool,
    /// Standard deviations σ of the white Gaussian noise (default 0 to 1 by 0.1).
    #[serde(default = "paper_sigma_grid")]
    pub noise_sigma: Vec<f64>,
    /// Training images the spectra are computed over (default: the training set used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum_images: Option<usize>,
    /// Eigenvalue ranks (1-based) of the last hidden layer whose sensitivity maps are drawn.
    #[serde(default = "default_ranks")]
    pub sensitivity_ranks: Vec<usize>,
    /// Images the sensitivity maps are computed over (default: the spectrum images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity_images: Option<usize>,
    /// The 1-based inclusive rank range of the power-law fit (default `[11, 500]`, the
    /// paper's text; Stringer et al.'s code fits ranks 12–500). The upper end is cut to the
    /// width, the number of images − 1 and the last positive eigenvalue.
    #[serde(default = "default_fit_ranks")]
    pub fit_ranks: [usize; 2],
    /// Also attack with BatchNorm (and whitening) normalising by the attacked batch's
    /// statistics, as a network left in PyTorch's train mode is attacked: extra curves
    /// `fgsm-bn-batch` and `pgd-bn-batch` (default `false`).
    #[serde(default)]
    pub bn_batch_statistics: bool,
    /// ε grid of the stronger attacks, PGD with the Carlini–Wagner margin loss, APGD-CE and
    /// APGD-DLR (default `[0.05, 0.1, 0.2]`; empty: none).
    #[serde(default = "default_strong_eps")]
    pub strong_eps: Vec<f64>,
    /// APGD iterations (default 100, Croce & Hein's).
    #[serde(default = "default_apgd_steps")]
    pub apgd_steps: usize,
}

fn default_fit_ranks() -> [usize; 2] {
    [11, 500]
}

fn default_strong_eps() -> Vec<f64> {
    vec![0.05, 0.1, 0.2]
}

fn default_apgd_steps() -> usize {
    100
}

fn default_eval_batch() -> usize {
    2000
}

fn default_pgd_steps() -> usize {
    40
}

fn default_pgd_step() -> f64 {
    0.01
}

fn default_ranks() -> Vec<usize> {
    vec![1, 2, 3, 4, 5, 10, 20, 50]
}

/// The paper's ε grid: 0 to 0.3 in steps of 0.025 (each point the double nearest
/// `k/40`, so it prints as written: 0.075, not 0.07500000000000001).
pub fn paper_eps_grid() -> Vec<f64> {
    (0..=12).map(|k| k as f64 / 40.0).collect()
}

/// The paper's σ grid: 0 to 1 in steps of 0.1.
pub fn paper_sigma_grid() -> Vec<f64> {
    (0..=10).map(|k| k as f64 / 10.0).collect()
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            test_subset: None,
            batch_size: default_eval_batch(),
            fgsm_eps: paper_eps_grid(),
            pgd_eps: paper_eps_grid(),
            pgd_steps: default_pgd_steps(),
            pgd_step_size: default_pgd_step(),
            early_exit: true,
            pgd_random_start: true,
            noise_sigma: paper_sigma_grid(),
            spectrum_images: None,
            sensitivity_ranks: default_ranks(),
            sensitivity_images: None,
            fit_ranks: default_fit_ranks(),
            bn_batch_statistics: false,
            strong_eps: default_strong_eps(),
            apgd_steps: default_apgd_steps(),
        }
    }
}
