//! Which robustness curves a run's evaluation computes, with every parameter in words.

use specreg_attacks::{ApgdConfig, Attack, AttackLoss, PgdConfig, StepSize};
use specreg_nn::Mode;

use crate::config::Config;

/// One robustness curve to evaluate.
pub(crate) struct AttackSpec {
    /// The curve's name in the results (`fgsm`, `pgd`, `pgd-cw`, …).
    pub name: &'static str,
    pub attack: Attack,
    pub grid: Vec<f64>,
    /// Gradient evaluations per image, for the progress bar.
    pub cost: u64,
    /// Every parameter, in words.
    pub params: String,
    /// The mode the network is attacked in.
    pub mode: Mode,
}

/// How an attack treats a fooled image, in words.
fn exit_words(early_exit: bool) -> &'static str {
    if early_exit {
        "an image leaves the batch at its first misclassified iterate"
    } else {
        "no early exit"
    }
}

fn pgd_words(pgd: &PgdConfig, loss: &str) -> String {
    format!(
        "PGD (eqs. 7-8) on the {loss}, L∞, {} steps of η = {}, {}, worst iterate kept, 1 \
         restart, {}, pixels clipped to [0, 1], seed {}",
        pgd.steps,
        match pgd.step_size {
            StepSize::Absolute(e) => e.to_string(),
            StepSize::RelativeToEpsilon(r) => format!("{r}·ε"),
        },
        if pgd.random_start {
            "uniform random start"
        } else {
            "started at the clean image"
        },
        exit_words(pgd.early_exit),
        pgd.seed
    )
}

/// Every curve of `config`'s evaluation, in the order they are run. `independent` says
/// whether the network's samples are independent in a mode (no batch statistics), which
/// early exit needs.
pub(crate) fn attack_specs(
    config: &Config,
    seed: u64,
    independent: impl Fn(Mode) -> bool,
) -> Vec<AttackSpec> {
    let e = &config.eval;
    let pgd = PgdConfig {
        early_exit: e.early_exit && independent(Mode::Eval),
        ..pgd_config(config)
    };
    let fgsm_words = "FGSM (eq. 6), L∞, pixels clipped to [0, 1], one signed-gradient step";
    let mut specs = vec![
        AttackSpec {
            name: "fgsm",
            attack: Attack::fgsm(),
            grid: e.fgsm_eps.clone(),
            cost: e.fgsm_eps.len() as u64,
            params: fgsm_words.into(),
            mode: Mode::Eval,
        },
        AttackSpec {
            name: "pgd",
            attack: Attack::Pgd(pgd),
            grid: e.pgd_eps.clone(),
            cost: (e.pgd_eps.len() * e.pgd_steps) as u64,
            params: pgd_words(&pgd, "cross-entropy"),
            mode: Mode::Eval,
        },
        AttackSpec {
            name: "noise",
            attack: Attack::white_noise(seed),
            grid: e.noise_sigma.clone(),
            cost: e.noise_sigma.len() as u64,
            params: format!(
                "white Gaussian noise N(0, σ²), pixels clipped to [0, 1], noise seed {seed}"
            ),
            mode: Mode::Eval,
        },
    ];
    if !e.strong_eps.is_empty() {
        let n = e.strong_eps.len() as u64;
        let cw = PgdConfig {
            loss: AttackLoss::CwMargin,
            ..pgd
        };
        specs.push(AttackSpec {
            name: "pgd-cw",
            attack: Attack::Pgd(cw),
            grid: e.strong_eps.clone(),
            cost: n * e.pgd_steps as u64,
            params: pgd_words(&cw, "Carlini–Wagner margin max_{j≠y} z_j − z_y"),
            mode: Mode::Eval,
        });
        for (name, base, loss) in [
            ("apgd-ce", ApgdConfig::ce(0.0), "cross-entropy"),
            ("apgd-dlr", ApgdConfig::dlr(0.0), "DLR loss"),
        ] {
            let apgd = ApgdConfig {
                steps: e.apgd_steps,
                early_exit: pgd.early_exit,
                ..base
            };
            specs.push(AttackSpec {
                name,
                attack: Attack::Apgd(apgd),
                grid: e.strong_eps.clone(),
                cost: n * e.apgd_steps as u64,
                params: format!(
                    "APGD (Croce & Hein 2020) on the {loss}, L∞, {} iterations, step size from \
                     2ε halved at the checkpoints, momentum {}, ρ = {}, started at the clean \
                     image, 1 run, best point kept, {}, pixels clipped to [0, 1]",
                    apgd.steps,
                    apgd.momentum,
                    apgd.rho,
                    exit_words(apgd.early_exit)
                ),
                mode: Mode::Eval,
            });
        }
    }
    if e.bn_batch_statistics {
        let pgd = PgdConfig {
            early_exit: e.early_exit && independent(Mode::BatchStatistics),
            ..pgd
        };
        let batch_words = |w: &str| {
            format!(
                "{w}; BatchNorm and whitening on the attacked batch's statistics (fixed \
                 batches of {} in test-set order, gradients through the statistics)",
                e.batch_size.min(config.test_images())
            )
        };
        specs.push(AttackSpec {
            name: "fgsm-bn-batch",
            attack: Attack::fgsm(),
            grid: e.fgsm_eps.clone(),
            cost: e.fgsm_eps.len() as u64,
            params: batch_words(fgsm_words),
            mode: Mode::BatchStatistics,
        });
        specs.push(AttackSpec {
            name: "pgd-bn-batch",
            attack: Attack::Pgd(pgd),
            grid: e.pgd_eps.clone(),
            cost: (e.pgd_eps.len() * e.pgd_steps) as u64,
            params: batch_words(&pgd_words(&pgd, "cross-entropy")),
            mode: Mode::BatchStatistics,
        });
    }
    specs
}

/// The PGD configuration of `config`'s evaluation, without early exit (which depends on
/// the network as well as the config).
pub fn pgd_config(config: &Config) -> PgdConfig {
    PgdConfig {
        steps: config.eval.pgd_steps,
        step_size: StepSize::Absolute(config.eval.pgd_step_size),
        random_start: config.eval.pgd_random_start,
        ..PgdConfig::linf(0.0)
    }
}
