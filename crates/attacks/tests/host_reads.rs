//! How many device → host reads each attack makes, counted with [`HostReads`] on the CPU
//! exactly as they would happen on a GPU. Every step of PGD, APGD and the sensitivity
//! pass stays on the device; an attack on a batch reads its results once, plus the input
//! check of the public entry points, plus one read per step with early exit (PGD and APGD).

mod common;

use common::{blobs, small_mlp};
use ndarray::Array2;
use specreg_attacks::{
    ApgdConfig, Attack, AttackLoss, ClipRange, EvalOptions, Norm, PgdConfig, SensitivityOptions,
    apgd, fgsm, pgd, robustness_curve, sensitivity_maps,
};
use specreg_nn::{Mode, Network};
use specreg_tensor::{DType, HostReads, Tensor};

const D: usize = 12;
const K: usize = 4;
const B: usize = 10;

/// An f32 tanh MLP, a batch of images in [0, 1] and, as labels, the network's own
/// predictions (so that every sample starts out correctly classified).
fn setup() -> (Network, Array2<f32>, Tensor, Vec<usize>) {
    let mut net = small_mlp(D, 16, K, DType::F32, 3);
    let (images, _) = blobs(B, D, K, 0.2, 4);
    let x = Tensor::from_array(images.clone());
    let labels = net
        .forward(&x, Mode::Eval)
        .unwrap()
        .logits
        .argmax_rows()
        .unwrap();
    (net, images, x, labels)
}

/// Runs `f` and returns the host reads it made, with their operations.
fn reads<T>(f: impl FnOnce() -> T) -> (u64, Vec<&'static str>) {
    let counter = HostReads::start();
    let _ = f();
    (counter.count(), counter.ops())
}

fn pgd_config(norm: Norm, loss: AttackLoss, steps: usize) -> PgdConfig {
    PgdConfig {
        norm,
        loss,
        steps,
        random_start: true,
        ..PgdConfig::linf(0.1)
    }
}

/// PGD reads the input check and its packed results, whatever the number of steps: no
/// read per step.
fn check_pgd(norm: Norm, loss: AttackLoss) {
    let (mut net, _, x, y) = setup();
    for steps in [1, 4, 9] {
        let cfg = pgd_config(norm, loss, steps);
        let (n, ops) = reads(|| pgd(&mut net, &x, &y, &cfg).unwrap());
        assert_eq!(n, 2, "PGD {norm} {loss}, {steps} steps: {ops:?}");
    }
}

#[test]
fn host_reads_pgd_linf_cross_entropy_make_none_per_step() {
    check_pgd(Norm::Linf, AttackLoss::CrossEntropy);
}

#[test]
fn host_reads_pgd_l2_cross_entropy_make_none_per_step() {
    check_pgd(Norm::L2, AttackLoss::CrossEntropy);
}

#[test]
fn host_reads_pgd_linf_cw_make_none_per_step() {
    check_pgd(Norm::Linf, AttackLoss::CwMargin);
}

#[test]
fn host_reads_pgd_l2_cw_make_none_per_step() {
    check_pgd(Norm::L2, AttackLoss::CwMargin);
}

#[test]
fn host_reads_pgd_with_early_exit_make_one_per_step() {
    let (mut net, _, x, y) = setup();
    for (norm, loss) in [
        (Norm::Linf, AttackLoss::CrossEntropy),
        (Norm::L2, AttackLoss::CwMargin),
    ] {
        for steps in [1, 5] {
            // A budget too small to fool anyone: every sample stays in the batch.
            let cfg = PgdConfig {
                early_exit: true,
                epsilon: 1e-6,
                ..pgd_config(norm, loss, steps)
            };
            let (n, ops) = reads(|| pgd(&mut net, &x, &y, &cfg).unwrap());
            assert_eq!(n, 2 + steps as u64, "{norm} {loss}, {steps} steps: {ops:?}");
        }
    }
}

#[test]
fn host_reads_apgd_make_none_per_step() {
    let (mut net, _, x, y) = setup();
    for (cfg, steps) in [(ApgdConfig::ce(0.1), 3), (ApgdConfig::dlr(0.1), 12)] {
        let cfg = ApgdConfig { steps, ..cfg };
        let (n, ops) = reads(|| apgd(&mut net, &x, &y, &cfg).unwrap());
        assert_eq!(n, 2, "APGD-{}: {ops:?}", cfg.loss);
    }
}

#[test]
fn host_reads_apgd_with_early_exit_make_one_per_step() {
    let (mut net, _, x, y) = setup();
    for steps in [1, 3, 12] {
        // A budget too small to fool anyone: every sample stays in the batch.
        let cfg = ApgdConfig {
            steps,
            early_exit: true,
            ..ApgdConfig::dlr(1e-6)
        };
        let (n, ops) = reads(|| apgd(&mut net, &x, &y, &cfg).unwrap());
        assert_eq!(n, 2 + steps as u64, "{steps} steps: {ops:?}");
    }
}

#[test]
fn host_reads_fgsm_call_makes_two() {
    let (mut net, _, x, y) = setup();
    let (n, ops) = reads(|| fgsm(&mut net, &x, &y, 0.1, ClipRange::default()).unwrap());
    assert_eq!(n, 2, "{ops:?}");
}

/// A curve reads per batch the input check and the clean predictions, then one result read
/// per grid point (an FGSM call or a noise evaluation).
#[test]
fn host_reads_per_fgsm_and_noise_evaluation_in_a_curve() {
    let (mut net, images, _, y) = setup();
    let y8: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    let opts = EvalOptions {
        batch_size: 4, // batches of 4, 4 and 2
        ..EvalOptions::default()
    };
    let grid = [0.0, 0.1, 0.2];
    for attack in [Attack::fgsm(), Attack::white_noise(5)] {
        let (n, ops) = reads(|| {
            robustness_curve(&mut net, images.view(), &y8, &attack, &grid, &opts).unwrap()
        });
        assert_eq!(n, 3 * (2 + 3), "{}: {ops:?}", attack.name());
    }
}

/// The sensitivity maps read the covariance's finiteness check, the eigenvalues and the
/// maps: nothing per batch.
#[test]
fn host_reads_sensitivity_make_none_per_batch() {
    let (mut net, images, _, _) = setup();
    for batch_size in [10, 3, 2] {
        let opts = SensitivityOptions {
            batch_size,
            image_shape: (3, 4),
            ..SensitivityOptions::default()
        };
        let (n, ops) =
            reads(|| sensitivity_maps(&mut net, images.view(), "h2", &[1, 3], &opts).unwrap());
        assert_eq!(n, 3, "batch size {batch_size}: {ops:?}");
    }
}
