//! Properties every correct attack has: iterates inside the ball and the pixel range,
//! PGD at least as strong as FGSM, restarts and early exit that cannot weaken it, and a
//! model whose state the attack never changes.

mod common;

use common::{Recording, head, labels, small_mlp, trained_mlp, uniform, vals};
use proptest::prelude::*;
use specreg_attacks::{
    Attack, Classifier, ClipRange, EvalOptions, Norm, PgdConfig, StepSize, fgsm, pgd,
    robustness_curve,
};
use specreg_nn::{BatchNorm1d, Linear, Mode, Network, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor};

proptest! {
    // A fixed seed, so CI runs the same cases every time (400 random cases passed).
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20201213),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every image PGD evaluates (every iterate, every restart) lies in the ε-ball around
    /// its clean image and in [0, 1].
    #[test]
    fn every_pgd_iterate_is_feasible(
        seed in 0u64..1000,
        eps in 0.0f64..0.6,
        l2 in any::<bool>(),
        random_start in any::<bool>(),
        restarts in 1usize..3,
        steps in 1usize..8,
        eta in 0.005f64..0.3,
    ) {
        let (b, d) = (6, 10);
        let mut net = small_mlp(d, 12, 3, DType::F64, seed);
        let mut rng = Rng::new(seed);
        let x = Tensor::from_array(uniform(b, d, 0.0, 1.0, &mut rng));
        let y: Vec<usize> = (0..b).map(|i| i % 3).collect();
        let cfg = PgdConfig {
            norm: if l2 { Norm::L2 } else { Norm::Linf },
            epsilon: eps,
            steps,
            step_size: StepSize::Absolute(eta),
            random_start,
            restarts: if random_start { restarts } else { 1 },
            early_exit: false,
            clip: ClipRange::default(),
            seed,
            loss: Default::default(),
        };
        let mut rec = Recording { inner: &mut net, seen: Vec::new() };
        let out = pgd(&mut rec, &x, &y, &cfg).unwrap();
        let runs = cfg.restarts;
        let calls = if eps == 0.0 { 1 } else { runs * (steps + 1) };
        prop_assert_eq!(rec.seen.len(), calls);
        let x0 = vals(&x);
        for it in rec.seen.iter().chain(std::iter::once(&out.adversarial)) {
            let v = vals(it);
            for i in 0..b {
                let row = &v[i * d..(i + 1) * d];
                let clean = &x0[i * d..(i + 1) * d];
                prop_assert!(row.iter().all(|p| (0.0..=1.0).contains(p)));
                let size = if l2 {
                    row.iter().zip(clean).map(|(a, c)| (a - c).powi(2)).sum::<f64>().sqrt()
                } else {
                    row.iter().zip(clean).map(|(a, c)| (a - c).abs()).fold(0.0, f64::max)
                };
                prop_assert!(size <= eps + 1e-12, "‖δ‖ = {} > ε = {}", size, eps);
            }
        }
        prop_assert!(out.max_ball_violation <= 1e-12);
        prop_assert_eq!(out.max_clip_violation, 0.0);
    }

    /// Restart 0 is the single run, and each sample keeps its worst iterate: more restarts
    /// never fool fewer samples, nor lower the loss of a sample whose outcome is unchanged.
    #[test]
    fn restarts_never_lower_success(seed in 0u64..1000, eps in 0.05f64..0.5, k in 2usize..5) {
        let (b, d) = (8, 10);
        let mut net = small_mlp(d, 12, 3, DType::F64, seed);
        let mut rng = Rng::new(seed + 7);
        let x = Tensor::from_array(uniform(b, d, 0.0, 1.0, &mut rng));
        let y = net.logits(&x).unwrap().argmax_rows().unwrap();
        let one = PgdConfig { random_start: true, steps: 5, seed, ..PgdConfig::linf(eps) };
        let many = PgdConfig { restarts: k, ..one };
        let a = pgd(&mut net, &x, &y, &one).unwrap();
        let m = pgd(&mut net, &x, &y, &many).unwrap();
        let (fa, fm) = (a.fooled(&y), m.fooled(&y));
        for i in 0..b {
            prop_assert!(fm[i] || !fa[i], "sample {} fooled by 1 restart, not by {}", i, k);
            if fm[i] == fa[i] {
                prop_assert!(m.losses[i] >= a.losses[i]);
            }
        }
    }
}

#[test]
fn pgd_loss_is_at_least_fgsm_loss_on_most_samples_of_a_trained_mlp() {
    let (mut net, x, y) = trained_mlp(11);
    let n = 256;
    let xt = head(x.view(), n);
    let yl = labels(&y[..n]);
    let eps = 0.1;
    let f = fgsm(&mut net, &xt, &yl, eps, ClipRange::default()).unwrap();
    let p = pgd(&mut net, &xt, &yl, &PgdConfig::linf(eps)).unwrap();
    let ge = f
        .losses
        .iter()
        .zip(&p.losses)
        .filter(|(f, p)| p >= f)
        .count();
    let share = ge as f64 / n as f64;
    println!("PGD loss ≥ FGSM loss on {ge}/{n} samples");
    assert!(
        share >= 0.95,
        "PGD loss ≥ FGSM loss on only {share:.3} of samples"
    );
    assert!(p.correct(&yl) <= f.correct(&yl));
    // The model is not trivially broken: it was trained and is accurate on clean data.
    let clean = net.logits(&xt).unwrap().argmax_rows().unwrap();
    let acc = clean.iter().zip(&yl).filter(|(a, b)| a == b).count() as f64 / n as f64;
    assert!(acc > 0.95, "clean accuracy {acc}");
}

#[test]
fn early_exit_fools_exactly_the_same_samples() {
    let (mut net, x, y) = trained_mlp(12);
    let n = 256;
    let xt = head(x.view(), n);
    let yl = labels(&y[..n]);
    for base in [
        PgdConfig::linf(0.1),
        PgdConfig {
            random_start: true,
            restarts: 3,
            seed: 5,
            ..PgdConfig::linf(0.08)
        },
        PgdConfig::l2(1.0),
    ] {
        let full = pgd(&mut net, &xt, &yl, &base).unwrap();
        let fast = pgd(
            &mut net,
            &xt,
            &yl,
            &PgdConfig {
                early_exit: true,
                ..base
            },
        )
        .unwrap();
        assert_eq!(full.fooled(&yl), fast.fooled(&yl), "{base:?}");
        let fooled = full.fooled(&yl).iter().filter(|&&f| f).count();
        println!(
            "{} fooled {fooled}/{n} with and without early exit",
            base.norm
        );
        assert!(
            fooled > 0 && fooled < n,
            "the comparison needs both outcomes: {fooled}"
        );
        let runs = (base.steps * base.restarts) as u64;
        assert_eq!(full.gradient_evaluations, n as u64 * runs);
        assert!(fast.gradient_evaluations < full.gradient_evaluations);
        // With early exit a fooled sample stops at its first fooling iterate.
        for i in 0..n {
            if fast.fooled(&yl)[i] {
                assert!(fast.found_at_step[i] <= full.found_at_step[i]);
            }
        }
    }
    // The same holds for whole curves.
    let grid = [0.0, 0.05, 0.1, 0.2];
    let opts = EvalOptions {
        batch_size: 100,
        subset: Some(n),
        ..EvalOptions::default()
    };
    let a = robustness_curve(&mut net, x.view(), &y, &Attack::pgd(), &grid, &opts).unwrap();
    let fast = Attack::Pgd(PgdConfig {
        early_exit: true,
        ..PgdConfig::linf(0.0)
    });
    let b = robustness_curve(&mut net, x.view(), &y, &fast, &grid, &opts).unwrap();
    assert_eq!(a.accuracies(), b.accuracies());
    for (p, q) in a.points.iter().zip(&b.points) {
        let full = if p.strength == 0.0 {
            0
        } else {
            (n * 40) as u64
        };
        assert_eq!(p.gradient_evaluations, full, "ε = {}", p.strength);
        assert!(q.gradient_evaluations <= full, "ε = {}", p.strength);
    }
    assert!(
        a.flags.is_empty() && b.flags.is_empty(),
        "{:?} {:?}",
        a.flags,
        b.flags
    );
}

#[test]
fn curves_do_not_depend_on_the_batch_size() {
    let (mut net, x, y) = trained_mlp(13);
    let grid = [0.0, 0.1, 0.2];
    for attack in [
        Attack::fgsm(),
        Attack::Pgd(PgdConfig {
            random_start: true,
            restarts: 2,
            steps: 10,
            seed: 3,
            ..PgdConfig::linf(0.0)
        }),
        Attack::white_noise(4),
    ] {
        let run = |net: &mut Network, bs| {
            let opts = EvalOptions {
                batch_size: bs,
                subset: Some(200),
                ..EvalOptions::default()
            };
            robustness_curve(net, x.view(), &y, &attack, &grid, &opts).unwrap()
        };
        let a = run(&mut net, 200);
        let b = run(&mut net, 37);
        let (ca, cb): (Vec<usize>, Vec<usize>) = (
            a.points.iter().map(|p| p.correct).collect(),
            b.points.iter().map(|p| p.correct).collect(),
        );
        // Same draws per image; only the last bits of the matrix products may differ.
        for (u, v) in ca.iter().zip(&cb) {
            assert!(u.abs_diff(*v) <= 1, "{}: {ca:?} vs {cb:?}", attack.name());
        }
        assert_eq!(a.num_images, 200);
        assert_eq!(a.clean_correct, b.clean_correct);
    }
}

#[test]
fn attacks_leave_batchnorm_statistics_and_gradients_alone() {
    let mut rng = Rng::new(3);
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(10, 16, DType::F64, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(BatchNorm1d::new(16, DType::F64, &dev).unwrap())
        .with(Linear::new(16, 3, DType::F64, &dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("hidden".into(), 2)], &[10]).unwrap();
    // Give BatchNorm non-trivial running statistics.
    let warm = Tensor::from_array(uniform(32, 10, 0.0, 1.0, &mut rng));
    for _ in 0..3 {
        net.forward(&warm, Mode::Train).unwrap();
    }
    let buffers = |net: &Network| -> Vec<Vec<f64>> {
        net.sequential()
            .layers()
            .iter()
            .flat_map(|l| l.buffers())
            .map(|(_, t)| vals(&t))
            .collect()
    };
    let before = buffers(&net);
    assert!(!before.is_empty());
    let x = Tensor::from_array(uniform(8, 10, 0.0, 1.0, &mut rng));
    let y: Vec<usize> = (0..8).map(|i| i % 3).collect();
    fgsm(&mut net, &x, &y, 0.1, ClipRange::default()).unwrap();
    pgd(
        &mut net,
        &x,
        &y,
        &PgdConfig {
            random_start: true,
            restarts: 2,
            early_exit: true,
            ..PgdConfig::linf(0.1)
        },
    )
    .unwrap();
    assert_eq!(buffers(&net), before);
    assert!(net.params().iter().all(|p| p.grad.is_none()));
    // In eval mode samples are independent: attacking one image alone gives the same answer.
    let single = Tensor::from_array(
        vals(&x)[..10]
            .to_vec()
            .into_iter()
            .collect::<ndarray::Array1<f64>>()
            .into_shape_with_order((1, 10))
            .unwrap(),
    );
    let all = pgd(&mut net, &x, &y, &PgdConfig::linf(0.1)).unwrap();
    let one = pgd(&mut net, &single, &y[..1], &PgdConfig::linf(0.1)).unwrap();
    let diff = vals(&all.adversarial)[..10]
        .iter()
        .zip(vals(&one.adversarial))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff < 1e-12,
        "batch and single-image attacks differ by {diff}"
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut net = small_mlp(10, 12, 3, DType::F64, 1);
    let mut rng = Rng::new(1);
    let x = Tensor::from_array(uniform(4, 10, 0.0, 1.0, &mut rng));
    let y = vec![0, 1, 2, 0];
    let msg = |e: specreg_attacks::AttackError| e.to_string();
    assert!(msg(fgsm(&mut net, &x, &y, -0.1, ClipRange::default()).unwrap_err()).contains("ε"));
    assert!(
        msg(fgsm(&mut net, &x, &y[..3], 0.1, ClipRange::default()).unwrap_err()).contains("labels")
    );
    let outside = x.scale(2.0).unwrap();
    assert!(
        msg(fgsm(&mut net, &outside, &y, 0.1, ClipRange::default()).unwrap_err())
            .contains("clip range")
    );
    let wide = Tensor::from_array(uniform(4, 11, 0.0, 1.0, &mut rng));
    assert!(
        msg(fgsm(&mut net, &wide, &y, 0.1, ClipRange::default()).unwrap_err())
            .contains("[B > 0, 10]")
    );
    assert!(
        msg(pgd(
            &mut net,
            &x,
            &y,
            &PgdConfig {
                steps: 0,
                ..PgdConfig::linf(0.1)
            }
        )
        .unwrap_err())
        .contains("steps")
    );
    assert!(
        msg(pgd(
            &mut net,
            &x,
            &y,
            &PgdConfig {
                restarts: 2,
                ..PgdConfig::linf(0.1)
            }
        )
        .unwrap_err())
        .contains("random_start")
    );
    assert!(
        msg(pgd(
            &mut net,
            &x,
            &y,
            &PgdConfig {
                step_size: StepSize::Absolute(f64::NAN),
                ..PgdConfig::linf(0.1)
            }
        )
        .unwrap_err())
        .contains("step_size")
    );
    assert!(
        msg(pgd(
            &mut net,
            &x,
            &y,
            &PgdConfig {
                clip: ClipRange { lo: 1.0, hi: 0.0 },
                ..PgdConfig::linf(0.1)
            }
        )
        .unwrap_err())
        .contains("clip")
    );
    assert!(
        msg(fgsm(&mut net, &x, &[0, 1, 5, 0], 0.1, ClipRange::default()).unwrap_err())
            .contains("label")
    );
    let images = ndarray::Array2::<f32>::zeros((4, 10));
    let l8 = [0u8, 1, 2, 0];
    let curve = |opts: EvalOptions, grid: &[f64], net: &mut Network| {
        robustness_curve(net, images.view(), &l8, &Attack::fgsm(), grid, &opts)
            .unwrap_err()
            .to_string()
    };
    assert!(curve(EvalOptions::default(), &[], &mut net).contains("grid"));
    assert!(curve(EvalOptions::default(), &[f64::NAN], &mut net).contains("ε"));
    assert!(
        curve(
            EvalOptions {
                batch_size: 0,
                ..EvalOptions::default()
            },
            &[0.1],
            &mut net
        )
        .contains("batch_size")
    );
    assert!(
        curve(
            EvalOptions {
                subset: Some(5),
                ..EvalOptions::default()
            },
            &[0.1],
            &mut net
        )
        .contains("subset")
    );
    let mut nan_net = small_mlp(10, 12, 3, DType::F64, 1);
    for p in nan_net.params_mut() {
        p.value = p.value.scale(f64::NAN).unwrap();
    }
    assert!(
        msg(fgsm(&mut nan_net, &x, &y, 0.1, ClipRange::default()).unwrap_err())
            .contains("non-finite")
    );
}

/// The network's own trait implementation runs in f32 too, and in f32 the only
/// violations are rounding.
#[test]
fn f32_attacks_stay_feasible_up_to_rounding() {
    let (mut net, x, y) = trained_mlp(14);
    let xt = head(x.view(), 64);
    let yl = labels(&y[..64]);
    let out = pgd(
        &mut net,
        &xt,
        &yl,
        &PgdConfig {
            random_start: true,
            ..PgdConfig::linf(0.1)
        },
    )
    .unwrap();
    assert_eq!(out.adversarial.dtype(), DType::F32);
    assert!(
        out.max_ball_violation <= 4.0 * f64::from(f32::EPSILON),
        "{}",
        out.max_ball_violation
    );
    assert_eq!(out.max_clip_violation, 0.0);
}
