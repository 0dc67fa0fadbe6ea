//! What a run costs: counts of work from its config (training steps, eigenvector
//! refreshes, attack gradient evaluations, spectra) priced by unit costs.
//!
//! Unit costs come from this machine's calibration ([`crate::calibrate`]) for wall-time
//! estimates, or from [`reference_units`], a fixed model of the 2-core machine of
//! DESIGN.md's performance anchors. The reference model depends on the config alone, so
//! every machine computes the same shard partition from it ([`crate::shard`]).
//!
//! One run, with `E` epochs left, batch size `B`, `n` training and `m` test images:
//! - training: `E · (⌈n/B⌉ · step + refresh + m · forward)`, where `refresh` (projected
//!   SpecReg only) is one forward pass over the `n` images for all regularised layers
//!   together, plus `Σ_l (n · covariance_l + fixed_l + eigh_l)` over them;
//! - evaluation: `m · (gradients · gradient + forwards · forward)` for the attacks, plus
//!   the spectra of every hidden layer and the sensitivity maps of the last one (a pass
//!   of its own per layer: `images · (forward + covariance_l) + fixed_l + eigh_l`).

use serde::{Deserialize, Serialize};

use specreg_nn::Mode;

use crate::config::{Config, EigenModeName, JacobianKindName, ModelKind};

/// The cost of one hidden layer's spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCost {
    /// Representation name (`hidden`, `fc3`, `conv1`, …).
    pub name: String,
    /// Seconds per image to accumulate the layer's covariance, beyond the forward pass
    /// that produces it ([`UnitCosts::forward_per_image`]).
    pub covariance_per_image: f64,
    /// Seconds per covariance pass that do not grow with its images (finishing the
    /// N × N covariance).
    pub covariance_fixed: f64,
    /// Seconds to eigendecompose the layer's covariance.
    pub eigh: f64,
}

/// Seconds of each unit of work for one config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitCosts {
    /// One training step (forward, backward with the regulariser, Adam) at the config's
    /// batch size.
    pub step: f64,
    /// Forward pass (eval mode) per image.
    pub forward_per_image: f64,
    /// One attack gradient evaluation (forward and backward to the input) per image.
    pub gradient_per_image: f64,
    /// Every hidden layer, in network order.
    pub layers: Vec<LayerCost>,
}

/// The estimated cost of one run (or of the part of it that is left).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RunEstimate {
    /// Training epochs.
    pub epochs: usize,
    /// Seconds of training.
    pub train_seconds: f64,
    /// Attack gradient evaluations, summed over images (image-gradients).
    pub attack_gradients: u64,
    /// Seconds of evaluation.
    pub eval_seconds: f64,
}

impl RunEstimate {
    /// Training and evaluation seconds.
    pub fn total(&self) -> f64 {
        self.train_seconds + self.eval_seconds
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &RunEstimate) {
        self.epochs += other.epochs;
        self.train_seconds += other.train_seconds;
        self.attack_gradients += other.attack_gradients;
        self.eval_seconds += other.eval_seconds;
    }
}

/// Gradient and forward evaluations per test image of a run's attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttackWork {
    /// Attack gradient evaluations per image (grid points × steps, every attack).
    pub gradients: u64,
    /// Forward passes per image (clean logits and one per grid point, every curve).
    pub forwards: u64,
    /// The part of `gradients` that early exit can skip: the iterative attacks (PGD,
    /// PGD-CW, APGD) where early exit is on and the network attacked treats its images
    /// independently.
    pub exiting: u64,
}

/// The share of a gradient attack's planned gradient evaluations that early exit is
/// expected to leave, for the time estimate. Measured per curve (PGD, PGD-CW, APGD-CE,
/// APGD-DLR on the paper's grids, 2 000 test images): 0.19–0.28 for a vanilla MLP and
/// 0.29–0.36 for an every-layer SpecReg MLP trained 4 epochs on all of MNIST, 0.31–0.36
/// for a vanilla CNN trained 2. 0.4 leaves room for networks that resist longer; a run's
/// note and `summary.json` give its own.
pub const EARLY_EXIT_SHARE: f64 = 0.4;

/// Whether `config`'s network, attacked in `mode`, treats every image on its own, as early
/// exit needs: no BatchNorm (only the shallow net has it) or whitening on batch statistics
/// in batch-statistics mode, and no whitening on batch statistics in eval mode. This is
/// what `Network::samples_independent` says of the network the run builds (a test checks
/// the two agree).
pub fn samples_independent(config: &Config, mode: Mode) -> bool {
    match mode {
        Mode::Eval => !config.whitens_with_batch_statistics(),
        _ => {
            let batchnorm = config.model.kind == ModelKind::Shallow && config.model.batchnorm;
            !batchnorm && config.whitening.is_none()
        }
    }
}

/// The attacks of [`crate::evaluation`] with `config`'s settings: every planned gradient
/// evaluation, and the part of them early exit applies to (see [`expected_gradients`]).
pub fn attack_work(config: &Config) -> AttackWork {
    let eval = &config.eval;
    let mut w = AttackWork::default();
    // `iterative`: PGD, PGD-CW or APGD, which exit early when asked to and the network
    // treats its images independently in the `mode` it is attacked in.
    let mut curve = |points: usize, steps: usize, iterative: bool, mode: Mode| {
        w.gradients += (points * steps) as u64;
        w.forwards += 1 + points as u64;
        if iterative && eval.early_exit && samples_independent(config, mode) {
            w.exiting += (points * steps) as u64;
        }
    };
    let fgsm = eval.fgsm_eps.len();
    let pgd = eval.pgd_eps.len();
    curve(fgsm, 1, false, Mode::Eval);
    curve(pgd, eval.pgd_steps, true, Mode::Eval);
    curve(eval.noise_sigma.len(), 0, false, Mode::Eval);
    if !eval.strong_eps.is_empty() {
        let n = eval.strong_eps.len();
        curve(n, eval.pgd_steps, true, Mode::Eval); // PGD on the CW margin
        curve(n, eval.apgd_steps, true, Mode::Eval); // APGD-CE
        curve(n, eval.apgd_steps, true, Mode::Eval); // APGD-DLR
    }
    if eval.bn_batch_statistics {
        curve(fgsm, 1, false, Mode::BatchStatistics);
        curve(pgd, eval.pgd_steps, true, Mode::BatchStatistics);
    }
    w
}

/// The gradient evaluations per image `config`'s attacks are expected to make: those
/// without early exit in full, the rest scaled by [`EARLY_EXIT_SHARE`].
pub fn expected_gradients(config: &Config) -> f64 {
    let w = attack_work(config);
    (w.gradients - w.exiting) as f64 + EARLY_EXIT_SHARE * w.exiting as f64
}

/// Training steps per epoch (the last partial batch is kept).
pub fn steps_per_epoch(config: &Config) -> u64 {
    config
        .train_images()
        .div_ceil(config.train.batch_size.max(1)) as u64
}

/// Images the evaluation's spectra use.
fn spectrum_images(config: &Config) -> usize {
    config
        .eval
        .spectrum_images
        .unwrap_or(config.train_images())
        .min(60_000)
}

/// Images the sensitivity maps use.
fn sensitivity_images(config: &Config) -> usize {
    config
        .eval
        .sensitivity_images
        .or(config.eval.spectrum_images)
        .unwrap_or(config.train_images())
        .min(60_000)
}

/// The layers whose eigenvectors are refreshed every epoch (projected SpecReg).
fn refreshed_layers(config: &Config) -> Vec<String> {
    match &config.spectral {
        Some(s) if s.mode == EigenModeName::Projected => s.layer_names(config.model.kind),
        _ => Vec::new(),
    }
}

/// A layer's covariance over `images` and its eigendecomposition, beyond the forward
/// pass that produces the representation.
fn layer_seconds(units: &UnitCosts, name: &str, images: usize) -> f64 {
    layer(units, name).map_or(0.0, |l| {
        images as f64 * l.covariance_per_image + l.covariance_fixed + l.eigh
    })
}

fn layer<'a>(units: &'a UnitCosts, name: &str) -> Option<&'a LayerCost> {
    units.layers.iter().find(|l| l.name == name)
}

/// One forward pass over `images` feeding the covariances of `names`, and their
/// eigendecompositions (nothing without layers).
fn pass_seconds<S: AsRef<str>>(units: &UnitCosts, names: &[S], images: usize) -> f64 {
    if names.is_empty() {
        return 0.0;
    }
    images as f64 * units.forward_per_image
        + names
            .iter()
            .map(|l| layer_seconds(units, l.as_ref(), images))
            .sum::<f64>()
}

/// The cost of `epochs_left` more epochs of `config` and, when `evaluate`, of its
/// evaluation.
pub fn estimate(
    config: &Config,
    units: &UnitCosts,
    epochs_left: usize,
    evaluate: bool,
) -> RunEstimate {
    let n = config.train_images();
    let m = config.test_images() as f64;
    // One forward pass feeds every refreshed layer's covariance.
    let refresh = pass_seconds(units, &refreshed_layers(config), n);
    let epoch = steps_per_epoch(config) as f64 * units.step + refresh + m * units.forward_per_image;
    let mut e = RunEstimate {
        epochs: epochs_left,
        train_seconds: epochs_left as f64 * epoch,
        ..RunEstimate::default()
    };
    if evaluate {
        let w = attack_work(config);
        let attacks = m
            * (expected_gradients(config) * units.gradient_per_image
                + w.forwards as f64 * units.forward_per_image);
        // One pass for every hidden layer's spectrum; the sensitivity maps reuse its
        // covariance when they are over the same images, else make a pass of their own.
        let names: Vec<&str> = units.layers.iter().map(|l| l.name.as_str()).collect();
        let (ms, ns) = (spectrum_images(config), sensitivity_images(config));
        let spectra = pass_seconds(units, &names, ms);
        let last = config.model.kind.last_hidden();
        let statistics = if ns == ms {
            layer(units, last).map_or(0.0, |l| l.eigh)
        } else {
            pass_seconds(units, &[last], ns)
        };
        let sensitivity = statistics
            + (config.eval.sensitivity_ranks.len() * ns) as f64 * units.gradient_per_image;
        e.attack_gradients = w.gradients * config.test_images() as u64;
        e.eval_seconds = attacks + spectra + sensitivity;
    }
    e
}

/// Seconds per image of a plain training step on the reference machine (DESIGN.md: the
/// shallow net 449 ms at B = 3500, the MLP 220 ms at B = 1500, the CNN 1915 ms at B = 6000).
fn reference_step_per_image(kind: ModelKind) -> f64 {
    match kind {
        ModelKind::Shallow => 0.449 / 3500.0,
        ModelKind::Mlp => 0.220 / 1500.0,
        ModelKind::Cnn => 1.915 / 6000.0,
    }
}

/// Eigendecomposition of an N×N covariance on the reference machine (907 ms at N = 2000).
fn reference_eigh(width: usize) -> f64 {
    0.907 * (width as f64 / 2000.0).powi(3)
}

/// The reference machine's unit costs for `config`: a fixed model of its work, the same
/// on every machine.
pub fn reference_units(config: &Config) -> UnitCosts {
    let kind = config.model.kind;
    let per_image = reference_step_per_image(kind);
    let mut multiplier = 1.0;
    let mut per_step_extra = 0.0;
    if let Some(s) = &config.spectral {
        for name in s.layer_names(kind) {
            let width = kind.width(&name).unwrap_or(1000) as f64;
            multiplier += 0.5 * width / 2000.0;
            if s.mode == EigenModeName::Exact {
                per_step_extra += reference_eigh(width as usize);
            }
        }
    }
    if config.whitening.is_some() {
        multiplier += 0.1;
    }
    if let Some(j) = &config.jacobian {
        multiplier += match j.kind {
            JacobianKindName::Logit => 0.5 * j.projections as f64,
            JacobianKindName::InputLoss => 1.0,
        };
    }
    let forward = per_image / 3.0;
    UnitCosts {
        step: per_image * config.train.batch_size as f64 * multiplier + per_step_extra,
        forward_per_image: forward,
        gradient_per_image: 0.75 * per_image,
        layers: kind
            .hidden_layers()
            .iter()
            .map(|&(ref name, width)| LayerCost {
                name: name.clone(),
                // 2N² flops per image at 150 GFLOP/s, after the forward pass.
                covariance_per_image: 2.0 * (width * width) as f64 / 1.5e11,
                covariance_fixed: 0.0,
                eigh: reference_eigh(width),
            })
            .collect(),
    }
}

/// The whole run on the reference machine: the cost shards are balanced by.
pub fn reference_cost(config: &Config) -> RunEstimate {
    estimate(config, &reference_units(config), config.train.epochs, true)
}

/// Floats per image held while training `kind` (activations and their gradients).
fn activation_floats(kind: ModelKind) -> usize {
    match kind {
        ModelKind::Shallow => 784 + 3 * 2000 + 10,
        ModelKind::Mlp => 784 + 6 * 1000 + 10,
        ModelKind::Cnn => 784 + 2 * 10_816 + 2704 + 2 * 3872 + 800 + 2 * 1000 + 10,
    }
}

/// Parameters of `kind`.
fn parameters(kind: ModelKind) -> usize {
    match kind {
        ModelKind::Shallow => 785 * 2000 + 2001 * 10 + 4 * 2000,
        ModelKind::Mlp => 785 * 1000 + 2 * 1001 * 1000 + 1001 * 10,
        ModelKind::Cnn => 160 + 4640 + 801 * 1000 + 1001 * 10,
    }
}

/// A generous upper bound of a run's resident memory in MiB: MNIST as f32, the batch's
/// activations and gradients (four copies), parameters with Adam's moments, and f64
/// covariances and eigenvectors of every hidden layer, plus half again.
pub fn memory_mib(config: &Config) -> u64 {
    let kind = config.model.kind;
    let batch = config.train.batch_size.max(config.eval.batch_size);
    let data = 70_000 * 784 * 4;
    let activations = batch * activation_floats(kind) * 4 * 4;
    let params = parameters(kind) * 4 * 4;
    let covariances: usize = kind
        .hidden_layers()
        .iter()
        .map(|&(_, w)| 3 * w * w * 8)
        .sum();
    let bytes = 300 * 1024 * 1024 + data + activations + params + covariances;
    (bytes as f64 * 1.5 / (1024.0 * 1024.0)).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use specreg_tensor::Device;

    fn config(extra: &str, kind: &str, batch: usize) -> Config {
        let text = format!(
            "experiment = \"exp2\"\nvariant = \"t\"\nseeds = [0]\n[model]\nkind = \"{kind}\"\n\
             [train]\nepochs = 4\nbatch_size = {batch}\nlr = 1e-4\ntrain_subset = 10000\n\
             min_batch_ratio = 0.0\n[eval]\ntest_subset = 1000\n{extra}"
        );
        Config::from_toml_str(&text, "test").unwrap()
    }

    /// The shallow net without its BatchNorm, with `eval` in its `[eval]` table.
    fn no_batchnorm(eval: &str) -> Config {
        let text = format!(
            "experiment = \"exp1\"\nvariant = \"t\"\nseeds = [0]\n[model]\nkind = \"shallow\"\n\
             batchnorm = false\n[train]\nepochs = 4\nbatch_size = 500\nlr = 1e-4\n\
             train_subset = 10000\nmin_batch_ratio = 0.0\n[eval]\ntest_subset = 1000\n{eval}"
        );
        Config::from_toml_str(&text, "test").unwrap()
    }

    #[test]
    fn early_exit_work_is_what_the_evaluation_plans_on_the_built_network() {
        let grids = "fgsm_eps = [0.0, 0.1]\npgd_eps = [0.0, 0.1, 0.2]\npgd_steps = 5\n\
                     noise_sigma = [0.0]\nstrong_eps = [0.1]\napgd_steps = 7\n\
                     bn_batch_statistics = true\n";
        let whiten = |statistics: &str| {
            format!("{grids}[whitening]\nlayer = \"fc2\"\nstatistics = \"{statistics}\"\n")
        };
        let configs = [
            config(grids, "shallow", 500),
            no_batchnorm(grids),
            config(grids, "mlp", 500),
            config(grids, "cnn", 500),
            config(&whiten("batch"), "mlp", 1250),
            config(&whiten("running"), "mlp", 1250),
            config(&format!("{grids}early_exit = false\n"), "mlp", 500),
        ];
        for c in &configs {
            let net =
                crate::runner::build_network(c, &mut specreg_tensor::Rng::new(0), &Device::Cpu)
                    .unwrap();
            for mode in [Mode::Eval, Mode::BatchStatistics] {
                assert_eq!(
                    samples_independent(c, mode),
                    net.samples_independent(mode),
                    "{} {mode:?}",
                    c.id()
                );
            }
            let specs = crate::attack_plan::attack_specs(c, 0, |m| net.samples_independent(m));
            let w = attack_work(c);
            let exiting: u64 = specs
                .iter()
                .filter(|s| s.attack.early_exit())
                .map(|s| s.cost)
                .sum();
            assert_eq!(w.exiting, exiting, "{}", c.id());
            assert_eq!(
                w.gradients,
                // The noise curve's progress-bar cost counts forward passes.
                specs
                    .iter()
                    .filter(|s| !matches!(s.attack, specreg_attacks::Attack::WhiteNoise { .. }))
                    .map(|s| s.cost)
                    .sum::<u64>(),
                "{}",
                c.id()
            );
        }
    }

    #[test]
    fn counts_attack_work_from_the_grids() {
        let c = config(
            "fgsm_eps = [0.0, 0.1]\npgd_eps = [0.0, 0.1, 0.2]\npgd_steps = 5\n\
             noise_sigma = [0.0]\nstrong_eps = [0.1]\napgd_steps = 7\n",
            "mlp",
            500,
        );
        let w = attack_work(&c);
        // FGSM 2, PGD 3 × 5, PGD-CW 1 × 5, APGD 2 × 7.
        assert_eq!(w.gradients, 2 + 15 + 5 + 14);
        // (1 + points) per curve: 3 + 4 + 2 + 2 + 2 + 2.
        assert_eq!(w.forwards, 15);
        let e = estimate(&c, &reference_units(&c), 4, true);
        assert_eq!(e.attack_gradients, 36 * 1000);
        assert_eq!(e.epochs, 4);
    }

    #[test]
    fn early_exit_discounts_the_iterative_attacks_only() {
        let grids = "fgsm_eps = [0.0, 0.1]\npgd_eps = [0.0, 0.1, 0.2]\npgd_steps = 5\n\
                     noise_sigma = [0.0]\nstrong_eps = [0.1]\napgd_steps = 7\n";
        let on = config(grids, "mlp", 500);
        let off = config(&format!("{grids}early_exit = false\n"), "mlp", 500);
        // FGSM's 2 in full, PGD's 15, PGD-CW's 5 and APGD's 14 scaled.
        assert_eq!(attack_work(&on).exiting, 34);
        assert_eq!(attack_work(&off).exiting, 0);
        assert_eq!(expected_gradients(&off), 36.0);
        assert_eq!(expected_gradients(&on), 2.0 + EARLY_EXIT_SHARE * 34.0);
        // The curves on batch statistics: the MLP has no BatchNorm, so their PGD exits
        // too; the shallow net's BatchNorm mixes the batch, so they are attacked in full.
        let bn = format!(
            "{grids}bn_batch_statistics = true
"
        );
        let mlp = config(&bn, "mlp", 500);
        assert_eq!(
            expected_gradients(&mlp),
            2.0 + 2.0 + EARLY_EXIT_SHARE * (34.0 + 15.0)
        );
        let shallow = config(&bn, "shallow", 500);
        assert_eq!(
            expected_gradients(&shallow),
            2.0 + 2.0 + 15.0 + EARLY_EXIT_SHARE * 34.0
        );
        assert_eq!(attack_work(&no_batchnorm(&bn)).exiting, 34 + 15);
        // Whitening on batch statistics mixes the images of a batch: no early exit.
        let whitened = config(
            &format!("{grids}[whitening]\nlayer = \"fc2\"\n"),
            "mlp",
            1250,
        );
        assert_eq!(attack_work(&whitened).exiting, 0);
        assert_eq!(expected_gradients(&whitened), 36.0);
        let running = config(
            &format!("{grids}[whitening]\nlayer = \"fc2\"\nstatistics = \"running\"\n"),
            "mlp",
            1250,
        );
        assert_eq!(attack_work(&running).exiting, 34);
        // The estimate prices the expected work and counts the planned.
        let mut units = reference_units(&on);
        units.forward_per_image = 0.0;
        units.layers.clear();
        units.gradient_per_image = 1e-3;
        let (a, b) = (
            estimate(&on, &units, 0, true),
            estimate(&off, &units, 0, true),
        );
        assert_eq!(a.attack_gradients, b.attack_gradients);
        let sens = (on.eval.sensitivity_ranks.len() * 10_000) as f64 * 1e-3;
        assert!(
            (b.eval_seconds - sens - 36.0).abs() < 1e-9,
            "{}",
            b.eval_seconds
        );
        let expected = sens + 2.0 + EARLY_EXIT_SHARE * 34.0;
        assert!(
            (a.eval_seconds - expected).abs() < 1e-9,
            "{}",
            a.eval_seconds
        );
    }

    #[test]
    fn prices_steps_refreshes_and_evaluation() {
        let c = config("[spectral]\nlayers = [\"fc3\"]\nbeta = 2.0\n", "mlp", 3000);
        let units = UnitCosts {
            step: 1.0,
            forward_per_image: 0.0,
            gradient_per_image: 0.0,
            layers: vec![
                LayerCost {
                    name: "fc1".into(),
                    covariance_per_image: 0.0,
                    covariance_fixed: 0.0,
                    eigh: 100.0,
                },
                LayerCost {
                    name: "fc3".into(),
                    covariance_per_image: 0.001,
                    covariance_fixed: 0.0,
                    eigh: 2.0,
                },
            ],
        };
        // ⌈10000 / 3000⌉ = 4 steps, refresh of fc3 over 10 000 images: 2 + 10 s.
        let e = estimate(&c, &units, 3, false);
        assert_eq!(e.train_seconds, 3.0 * (4.0 + 12.0));
        assert_eq!(e.eval_seconds, 0.0);
        assert_eq!(e.attack_gradients, 0);
        let none = estimate(&c, &units, 0, false);
        assert_eq!(none.total(), 0.0);
    }

    #[test]
    fn a_refresh_of_several_layers_runs_one_forward_pass() {
        let c = config("[spectral]\nlayers = \"all\"\nbeta = 2.0\n", "mlp", 3000);
        let layer = |name: &str| LayerCost {
            name: name.into(),
            covariance_per_image: 1e-4,
            covariance_fixed: 0.5,
            eigh: 2.0,
        };
        let units = UnitCosts {
            step: 0.0,
            forward_per_image: 1e-4,
            gradient_per_image: 0.0,
            layers: vec![layer("fc1"), layer("fc2"), layer("fc3")],
        };
        // Over 10 000 images: one forward (1 s), then per layer 1 s of accumulation,
        // 0.5 s to finish and 2 s of eigh; and the 1000 test images' forward (0.1 s).
        let e = estimate(&c, &units, 1, false);
        assert!(
            (e.train_seconds - (1.0 + 3.0 * 3.5 + 0.1)).abs() < 1e-9,
            "{e:?}"
        );
        // The evaluation's spectra: one pass over the 10 000 images for all three layers;
        // the sensitivity maps reuse it and only eigendecompose the last layer again.
        let eval = estimate(&c, &units, 0, true).eval_seconds;
        let attacks = 1000.0 * attack_work(&c).forwards as f64 * 1e-4;
        let (spectra, sensitivity) = (1.0 + 3.0 * 3.5, 2.0);
        assert!(
            (eval - (attacks + spectra + sensitivity)).abs() < 1e-9,
            "{eval} vs {attacks} + {spectra} + {sensitivity}"
        );
    }

    #[test]
    fn reference_cost_grows_with_the_regulariser_and_the_network() {
        let vanilla = reference_cost(&config("", "mlp", 1500));
        let spec = reference_cost(&config(
            "[spectral]\nlayers = \"all\"\nbeta = 2.0\n",
            "mlp",
            1500,
        ));
        let cnn = reference_cost(&config("", "cnn", 1500));
        assert!(spec.train_seconds > vanilla.train_seconds);
        assert!(cnn.total() > vanilla.total());
        assert!(memory_mib(&config("", "cnn", 6000)) > memory_mib(&config("", "mlp", 250)));
    }
}
