//! APGD: the exact checkpoints, the step-size rule against a scalar re-implementation of
//! Croce & Hein's Algorithm 1, feasibility, determinism, strength against FGSM and PGD, and
//! typed errors. (Closed forms on linear models: `margin_closed_form.rs`.)

mod common;

use common::{Recording, head, labels, linear_net, normal, small_mlp, trained_mlp, uniform, vals};
use specreg_attacks::NetworkInMode;
use specreg_attacks::{
    ApgdConfig, AttackError, AttackLoss, Classifier, ClipRange, LogitGradient, LossGradient,
    PgdConfig, apgd, apgd_checkpoints, fgsm, per_sample_loss, pgd,
};
use specreg_nn::{BatchNorm1d, Linear, Mode, Network, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor};

#[test]
fn checkpoints_follow_the_paper_exactly() {
    assert_eq!(
        apgd_checkpoints(100),
        vec![0, 22, 41, 57, 70, 80, 87, 93, 99]
    );
    assert_eq!(
        apgd_checkpoints(1000),
        vec![0, 220, 410, 570, 700, 800, 870, 930, 990]
    );
    // ⌈2.2⌉ = 3, ⌈4.1⌉ = 5, ⌈5.7⌉ = 6, 7, 8, ⌈8.7⌉ = 9, ⌈9.3⌉ = 10, ⌈9.9⌉ = 10 (dropped).
    assert_eq!(apgd_checkpoints(10), vec![0, 3, 5, 6, 7, 8, 9, 10]);
    assert_eq!(apgd_checkpoints(1), vec![0, 1]);
    assert_eq!(ApgdConfig::dlr(0.1).checkpoints(), apgd_checkpoints(100));
}

/// One pixel per image and two classes: `z = [0, −|x − c_i|]`, so the margin `z_1 − z_0`
/// peaks (at 0, never fooled) at `c_i`, which may lie inside or outside the ball.
struct Tent {
    centres: Vec<f64>,
}

impl Tent {
    fn z(&self, x: &[f64]) -> Tensor {
        let v: Vec<f64> = x
            .iter()
            .zip(&self.centres)
            .flat_map(|(&x, &c)| [0.0, -(x - c).abs()])
            .collect();
        Tensor::from_vec(v, &[x.len(), 2], &Device::Cpu).unwrap()
    }

    /// `∂L/∂x` from `∂L/∂z` (only `z_1 = −|x − c|` depends on `x`).
    fn input_gradient(&self, x: &[f64], gz: &[f64]) -> specreg_attacks::Result<Tensor> {
        let g: Vec<f64> = (0..x.len())
            .map(|i| {
                let d = x[i] - self.centres[i];
                let dz1 = if d > 0.0 {
                    -1.0
                } else if d < 0.0 {
                    1.0
                } else {
                    0.0
                };
                gz[2 * i + 1] * dz1
            })
            .collect();
        Ok(Tensor::from_vec(g, &[x.len(), 1], &Device::Cpu)?)
    }
}

impl Classifier for Tent {
    fn input_size(&self) -> usize {
        1
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        Ok(self.z(&x.to_vec::<f64>()?))
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        let xs = x.to_vec::<f64>()?;
        let z = self.z(&xs);
        let lg = per_sample_loss(&z, labels)?;
        let grad = self.input_gradient(&xs, &lg.grad_logits.to_vec::<f64>()?)?;
        LossGradient::new(&z, lg, grad)
    }
    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> specreg_attacks::Result<LogitGradient>,
    ) -> specreg_attacks::Result<LossGradient> {
        let xs = x.to_vec::<f64>()?;
        let z = self.z(&xs);
        let lg = loss(&z)?;
        let grad = self.input_gradient(&xs, &lg.grad_logits.to_vec::<f64>()?)?;
        LossGradient::new(&z, lg, grad)
    }
}

/// Algorithm 1 of Croce & Hein for one pixel with loss `−|x − c|`, written out directly:
/// every iterate `x⁽⁰⁾ … x⁽ᴺ⁾` it evaluates, and how many times the step size halved.
fn reference_apgd(x0: f64, c: f64, eps: f64, n: usize) -> (Vec<f64>, usize) {
    let (lo, hi) = ((x0 - eps).max(0.0), (x0 + eps).min(1.0));
    let f = |x: f64| -(x - c).abs();
    let sign = |g: f64| {
        if g > 0.0 {
            1.0
        } else if g < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let grad = |x: f64| -sign(x - c);
    let w = [0, 7, 13, 18, 21, 24, 27, 28, 30];
    assert_eq!(n, 30);
    let mut eta = 2.0 * eps;
    let mut seen = vec![x0];
    let (mut prev, mut cur) = (x0, x0);
    let (mut f_cur, mut f_max, mut x_max) = (f(x0), f(x0), x0);
    let (mut ups, mut f_max_at_check, mut halved_at_check, mut halvings) = (0, f(x0), false, 0);
    let mut last = 0;
    for k in 0..n {
        let z = (cur + eta * sign(grad(cur))).clamp(lo, hi);
        let next = if k == 0 {
            z
        } else {
            (cur + 0.75 * (z - cur) + 0.25 * (cur - prev)).clamp(lo, hi)
        };
        prev = cur;
        cur = next;
        seen.push(cur);
        let t = k + 1;
        if f(cur) > f_cur {
            ups += 1;
        }
        f_cur = f(cur);
        if f(cur) > f_max {
            f_max = f(cur);
            x_max = cur;
        }
        if t < n && w.contains(&t) {
            let few = (ups as f64) < 0.75 * (t - last) as f64;
            let stalled = !halved_at_check && f_max <= f_max_at_check;
            halved_at_check = few || stalled;
            if halved_at_check {
                eta /= 2.0;
                cur = x_max;
                f_cur = f_max;
                halvings += 1;
            }
            f_max_at_check = f_max;
            ups = 0;
            last = t;
        }
    }
    (seen, halvings)
}

#[test]
fn apgd_step_size_rule_matches_a_scalar_reimplementation_of_algorithm_1() {
    let x0 = [0.5, 0.5, 0.3, 0.95, 0.05, 0.6];
    let offsets = [0.031, -0.077, 0.3, 0.02, 0.013, -0.0042];
    let centres: Vec<f64> = x0.iter().zip(offsets).map(|(x, o)| x + o).collect();
    let eps = 0.1;
    let mut tent = Tent {
        centres: centres.clone(),
    };
    let cfg = ApgdConfig {
        loss: AttackLoss::CwMargin,
        steps: 30,
        ..ApgdConfig::ce(eps)
    };
    assert_eq!(cfg.checkpoints(), vec![0, 7, 13, 18, 21, 24, 27, 28, 30]);
    let x = Tensor::from_vec(x0.to_vec(), &[x0.len(), 1], &Device::Cpu).unwrap();
    // Record every batch the attack evaluates.
    let mut seen: Vec<Vec<f64>> = Vec::new();
    let out = {
        let mut rec = Rec {
            inner: &mut tent,
            seen: &mut seen,
        };
        apgd(&mut rec, &x, &[0; 6], &cfg).unwrap()
    };
    assert_eq!(seen.len(), 31, "N gradients and one last forward pass");
    let mut total_halvings = 0;
    for (i, (&x0, &c)) in x0.iter().zip(&centres).enumerate() {
        let (want, halvings) = reference_apgd(x0, c, eps, 30);
        total_halvings += halvings;
        for (t, it) in seen.iter().enumerate() {
            assert!(
                (it[i] - want[t]).abs() < 1e-12,
                "sample {i}, iterate {t}: {} vs {}",
                it[i],
                want[t]
            );
        }
        // The kept point is the best iterate: the highest margin seen.
        let best = want
            .iter()
            .map(|&v| -(v - c).abs())
            .fold(f64::MIN, f64::max);
        assert!((out.losses[i] - best).abs() < 1e-15);
    }
    assert!(
        total_halvings >= 6,
        "the rule must be exercised: {total_halvings}"
    );
}

/// Records the inputs of every evaluation of a [`Tent`].
struct Rec<'a> {
    inner: &'a mut Tent,
    seen: &'a mut Vec<Vec<f64>>,
}

impl Classifier for Rec<'_> {
    fn input_size(&self) -> usize {
        1
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        self.seen.push(x.to_vec::<f64>()?);
        self.inner.logits(x)
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        self.inner.loss_and_input_gradient(x, labels)
    }
    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> specreg_attacks::Result<LogitGradient>,
    ) -> specreg_attacks::Result<LossGradient> {
        self.seen.push(x.to_vec::<f64>()?);
        self.inner.loss_and_input_gradient_with(x, loss)
    }
}

#[test]
fn apgd_iterates_stay_feasible_and_runs_are_seeded() {
    let (b, d) = (6, 10);
    let mut net = small_mlp(d, 12, 3, DType::F64, 3);
    let mut rng = Rng::new(3);
    let x = Tensor::from_array(uniform(b, d, 0.0, 1.0, &mut rng));
    let y: Vec<usize> = (0..b).map(|i| i % 3).collect();
    let eps = 0.2;
    let cfg = ApgdConfig {
        steps: 12,
        restarts: 2,
        random_start: true,
        seed: 11,
        ..ApgdConfig::ce(eps)
    };
    let mut rec = Recording {
        inner: &mut net,
        seen: Vec::new(),
    };
    let out = apgd(&mut rec, &x, &y, &cfg).unwrap();
    assert_eq!(rec.seen.len(), 2 * 13);
    let x0 = vals(&x);
    for it in rec.seen.iter().chain(std::iter::once(&out.adversarial)) {
        for (v, c) in vals(it).iter().zip(&x0) {
            assert!((0.0..=1.0).contains(v));
            assert!((v - c).abs() <= eps + 1e-12);
        }
    }
    assert!(out.max_ball_violation <= 1e-12 && out.max_clip_violation == 0.0);
    let first_start = vals(&rec.seen[0]);
    // Same seed, same result; another seed, other starts.
    let again = apgd(&mut net, &x, &y, &cfg).unwrap();
    assert_eq!(vals(&again.adversarial), vals(&out.adversarial));
    assert_eq!(again.losses, out.losses);
    // Another seed starts elsewhere (the runs may still end on the same vertices).
    let mut rec = Recording {
        inner: &mut net,
        seen: Vec::new(),
    };
    apgd(&mut rec, &x, &y, &ApgdConfig { seed: 12, ..cfg }).unwrap();
    assert_ne!(vals(&rec.seen[0]), first_start);
    // More restarts never fool fewer samples (restart 0 is the single run).
    let one = apgd(&mut net, &x, &y, &ApgdConfig { restarts: 1, ..cfg }).unwrap();
    for i in 0..b {
        assert!(out.fooled(&y)[i] || !one.fooled(&y)[i]);
        if out.fooled(&y)[i] == one.fooled(&y)[i] {
            assert!(out.losses[i] >= one.losses[i]);
        }
    }
    // ε = 0 changes nothing.
    let zero = apgd(&mut net, &x, &y, &cfg.with_epsilon(0.0)).unwrap();
    assert_eq!(vals(&zero.adversarial), x0);
    // APGD-DLR is seeded too, and feasible.
    let dlr = ApgdConfig {
        loss: AttackLoss::Dlr,
        ..cfg
    };
    let a = apgd(&mut net, &x, &y, &dlr).unwrap();
    let b2 = apgd(&mut net, &x, &y, &dlr).unwrap();
    assert_eq!(vals(&a.adversarial), vals(&b2.adversarial));
    assert_eq!(a.losses, b2.losses);
    for (v, c) in vals(&a.adversarial).iter().zip(&x0) {
        assert!((0.0..=1.0).contains(v) && (v - c).abs() <= eps + 1e-12);
    }
}

#[test]
fn apgd_is_at_least_as_strong_as_fgsm_and_pgd_on_a_trained_mlp() {
    let (mut net, x, y) = trained_mlp(21);
    let n = 256;
    let xt = head(x.view(), n);
    let yl = labels(&y[..n]);
    let eps = 0.1;
    let f = fgsm(&mut net, &xt, &yl, eps, ClipRange::default()).unwrap();
    let p = pgd(&mut net, &xt, &yl, &PgdConfig::linf(eps)).unwrap();
    let a = apgd(&mut net, &xt, &yl, &ApgdConfig::ce(eps)).unwrap();
    let dlr = apgd(&mut net, &xt, &yl, &ApgdConfig::dlr(eps)).unwrap();
    let cw = pgd(&mut net, &xt, &yl, &PgdConfig::linf_cw(eps)).unwrap();
    println!(
        "correct of {n}: FGSM {}, PGD {}, APGD-CE {}, APGD-DLR {}, PGD-CW {}",
        f.correct(&yl),
        p.correct(&yl),
        a.correct(&yl),
        dlr.correct(&yl),
        cw.correct(&yl),
    );
    // APGD's first iterate, P(x + 2ε sign ∇L), is FGSM's image exactly, and every sample
    // keeps its worst iterate: APGD-CE is never weaker than FGSM, sample by sample.
    let (ff, fa, fp) = (f.fooled(&yl), a.fooled(&yl), p.fooled(&yl));
    for i in 0..n {
        assert!(fa[i] || !ff[i], "sample {i}");
        if fa[i] == ff[i] {
            assert!(a.losses[i] >= f.losses[i], "sample {i}");
        }
    }
    // Against PGD: no higher robust accuracy, and at least PGD's loss on nearly every
    // sample neither attack fools, up to f32 rounding (a sign step into a vertex can stop
    // at a local one).
    assert!(a.correct(&yl) <= p.correct(&yl));
    let survivors: Vec<usize> = (0..n).filter(|&i| !fa[i] && !fp[i]).collect();
    let ge = survivors
        .iter()
        .filter(|&&i| a.losses[i] >= p.losses[i] - 1e-5)
        .count();
    println!(
        "APGD-CE loss ≥ PGD loss on {ge} of {} survivors",
        survivors.len()
    );
    assert!(survivors.len() > 50, "the comparison needs survivors");
    assert!(ge as f64 >= 0.95 * survivors.len() as f64);
    for out in [&a, &dlr, &cw] {
        assert!(out.max_ball_violation <= 1e-6 && out.max_clip_violation == 0.0);
        assert_eq!(out.zero_gradient_rows, 0);
        assert!(out.correct(&yl) <= f.correct(&yl));
    }
}

#[test]
fn apgd_early_exit_fools_exactly_the_same_samples() {
    let (mut net, x, y) = trained_mlp(22);
    let n = 256;
    let xt = head(x.view(), n);
    let yl = labels(&y[..n]);
    for base in [
        ApgdConfig::ce(0.1),
        ApgdConfig::dlr(0.08),
        ApgdConfig {
            random_start: true,
            restarts: 2,
            seed: 9,
            steps: 30,
            ..ApgdConfig::ce(0.06)
        },
    ] {
        let full = apgd(&mut net, &xt, &yl, &base).unwrap();
        let fast = apgd(
            &mut net,
            &xt,
            &yl,
            &ApgdConfig {
                early_exit: true,
                ..base
            },
        )
        .unwrap();
        let (ff, fe) = (full.fooled(&yl), fast.fooled(&yl));
        assert_eq!(ff, fe, "{base:?}");
        let fooled = ff.iter().filter(|&&f| f).count();
        println!(
            "APGD-{} fooled {fooled}/{n} with and without early exit",
            base.loss
        );
        assert!(
            fooled > 0 && fooled < n,
            "the comparison needs both outcomes: {fooled}"
        );
        for (i, &fooled) in ff.iter().enumerate() {
            if fooled {
                // A fooled sample stops at its first fooling iterate.
                assert!(fast.found_at_step[i] <= full.found_at_step[i], "sample {i}");
            } else {
                // A survivor ran every step, through the same per-sample step-size rule.
                let (a, b) = (full.losses[i], fast.losses[i]);
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "sample {i}: {a} vs {b}"
                );
                assert_eq!(full.found_at_step[i], fast.found_at_step[i], "sample {i}");
            }
        }
        assert!(fast.max_ball_violation <= 1e-6 && fast.max_clip_violation == 0.0);
        assert_eq!(fast.zero_gradient_rows, full.zero_gradient_rows);
        // N gradients per run and sample (at iterates 0 … N − 1) without early exit; a
        // sample first fooled at iterate s leaves after s + 1 of them.
        let runs = (base.steps * base.restarts) as u64;
        assert_eq!(full.gradient_evaluations, n as u64 * runs);
        assert!(fast.gradient_evaluations < full.gradient_evaluations);
        if base.restarts == 1 {
            let saved: u64 = (0..n)
                .filter(|&i| fe[i])
                .map(|i| (base.steps - (fast.found_at_step[i] + 1).min(base.steps)) as u64)
                .sum();
            assert_eq!(fast.gradient_evaluations, full.gradient_evaluations - saved);
        }
    }
}

#[test]
fn early_exit_refuses_a_classifier_that_mixes_samples() {
    // BatchNorm on the attacked batch's statistics: one sample's logits depend on the
    // others, so dropping fooled samples would change the survivors' attack.
    let mut rng = Rng::new(4);
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(10, 16, DType::F64, &dev, &mut rng).unwrap())
        .with(BatchNorm1d::new(16, DType::F64, &dev).unwrap())
        .with(Tanh::new())
        .with(Linear::new(16, 3, DType::F64, &dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("hidden".into(), 2)], &[10]).unwrap();
    let x = Tensor::from_array(uniform(8, 10, 0.0, 1.0, &mut rng));
    let y: Vec<usize> = (0..8).map(|i| i % 3).collect();
    // In eval mode BatchNorm uses its running statistics: samples are independent.
    assert!(Classifier::samples_independent(&net));
    let mut mixed = NetworkInMode::new(&mut net, Mode::BatchStatistics).unwrap();
    assert!(!mixed.samples_independent());
    let a = ApgdConfig {
        early_exit: true,
        ..ApgdConfig::ce(0.1)
    };
    let p = PgdConfig {
        early_exit: true,
        ..PgdConfig::linf(0.1)
    };
    for (err, field) in [
        (
            apgd(&mut mixed, &x, &y, &a).unwrap_err(),
            "ApgdConfig.early_exit",
        ),
        (
            pgd(&mut mixed, &x, &y, &p).unwrap_err(),
            "PgdConfig.early_exit",
        ),
    ] {
        assert!(
            matches!(err, AttackError::InvalidArgument { ref what, .. } if what == field),
            "{err}"
        );
    }
    // Without early exit the same attack runs; with it, the network in eval mode runs.
    apgd(&mut mixed, &x, &y, &ApgdConfig::ce(0.1)).unwrap();
    apgd(&mut net, &x, &y, &a).unwrap();
}

#[test]
fn bad_apgd_configurations_are_typed_errors() {
    let mut rng = Rng::new(1);
    let mut net = linear_net(&normal(3, 4, &mut rng), &[0.0; 3]);
    let x = Tensor::from_array(uniform(2, 4, 0.0, 1.0, &mut rng));
    let base = ApgdConfig::ce(0.1);
    for (cfg, field) in [
        (ApgdConfig { steps: 0, ..base }, "steps"),
        (base.with_epsilon(-0.1), "epsilon"),
        (base.with_epsilon(f64::NAN), "epsilon"),
        (base.with_epsilon(f64::INFINITY), "epsilon"),
        (
            ApgdConfig {
                restarts: 0,
                ..base
            },
            "restarts",
        ),
        (
            ApgdConfig {
                restarts: 2,
                ..base
            },
            "restarts",
        ),
        (
            ApgdConfig {
                momentum: 0.0,
                ..base
            },
            "momentum",
        ),
        (
            ApgdConfig {
                momentum: 1.5,
                ..base
            },
            "momentum",
        ),
        (
            ApgdConfig {
                rho: f64::NAN,
                ..base
            },
            "rho",
        ),
        (
            ApgdConfig {
                clip: ClipRange { lo: 1.0, hi: 0.0 },
                ..base
            },
            "clip",
        ),
    ] {
        let err = apgd(&mut net, &x, &[0, 1], &cfg).unwrap_err();
        match &err {
            AttackError::InvalidArgument { what, .. } => {
                assert!(what.contains(field), "{field}: {err}")
            }
            e => panic!("{field}: {e}"),
        }
    }
    // Pixels outside the range, and DLR on two classes.
    let bad = Tensor::from_vec(vec![2.0; 4], &[1, 4], &Device::Cpu).unwrap();
    assert!(matches!(
        apgd(&mut net, &bad, &[0], &base),
        Err(AttackError::InvalidData { .. })
    ));
    let mut two = linear_net(&normal(2, 4, &mut rng), &[0.0; 2]);
    let err = apgd(&mut two, &x, &[0, 1], &ApgdConfig::dlr(0.1)).unwrap_err();
    assert!(err.to_string().contains("at least 3 classes"), "{err}");
}
