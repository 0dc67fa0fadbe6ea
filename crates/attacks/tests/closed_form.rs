//! Known answers on a linear softmax model `z = x Wᵀ + b`, whose per-sample input gradient
//! is closed-form: `∂L_i/∂x_i = Wᵀ(p_i − e_{y_i})`.

mod common;

use common::{linear_net, normal, uniform, vals};
use ndarray::Array2;
use specreg_attacks::{
    Attack, Classifier, ClipRange, EvalOptions, Norm, PgdConfig, SanityFlag, StepSize, fgsm, pgd,
    robustness_curve, white_noise,
};
use specreg_tensor::{Rng, Tensor};

const D: usize = 12;
const K: usize = 4;
const B: usize = 16;

struct Case {
    w: Array2<f64>,
    b: Vec<f64>,
    x: Array2<f64>,
    y: Vec<usize>,
}

fn case(seed: u64, lo: f64, hi: f64) -> Case {
    let mut rng = Rng::new(seed);
    let w = normal(K, D, &mut rng);
    let b: Vec<f64> = (0..K).map(|_| 0.1 * rng.normal()).collect();
    let x = uniform(B, D, lo, hi, &mut rng);
    let y = (0..B).map(|i| (i * 7 + 3) % K).collect();
    Case { w, b, x, y }
}

/// `(losses, gradients)` by the closed form, in f64.
fn closed_form(c: &Case) -> (Vec<f64>, Array2<f64>) {
    let z = c.x.dot(&c.w.t()) + &ndarray::Array1::from(c.b.clone());
    let mut g = Array2::zeros((B, D));
    let mut losses = Vec::new();
    for i in 0..B {
        let m = z.row(i).fold(f64::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f64> = z.row(i).iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mut r = ndarray::Array1::<f64>::zeros(K);
        for k in 0..K {
            r[k] = e[k] / s - if k == c.y[i] { 1.0 } else { 0.0 };
        }
        losses.push(-(e[c.y[i]] / s).ln());
        g.row_mut(i).assign(&c.w.t().dot(&r));
    }
    (losses, g)
}

#[test]
fn per_sample_loss_and_gradient_match_the_closed_form() {
    let c = case(1, 0.0, 1.0);
    let mut net = linear_net(&c.w, &c.b);
    let lg = net
        .loss_and_input_gradient(&Tensor::from_array(c.x.clone()), &c.y)
        .unwrap();
    let (losses, g) = closed_form(&c);
    for (a, b) in vals(&lg.losses).iter().zip(&losses) {
        assert!((a - b).abs() < 1e-12, "loss {a} vs {b}");
    }
    for (a, b) in vals(&lg.grad).iter().zip(g.iter()) {
        assert!((a - b).abs() < 1e-12, "gradient {a} vs {b}");
    }
}

#[test]
fn fgsm_perturbation_is_exactly_eps_sign_of_wt_p_minus_y() {
    // Pixels in [0.3, 0.7] and ε = 0.1: nothing is clipped.
    let c = case(2, 0.3, 0.7);
    let (_, g) = closed_form(&c);
    let mut net = linear_net(&c.w, &c.b);
    let eps = 0.1;
    let out = fgsm(
        &mut net,
        &Tensor::from_array(c.x.clone()),
        &c.y,
        eps,
        ClipRange::default(),
    )
    .unwrap();
    let adv = vals(&out.adversarial);
    for (idx, (&xv, &gv)) in c.x.iter().zip(g.iter()).enumerate() {
        assert!(gv.abs() > 1e-9, "test needs nonzero gradients");
        let want = xv + eps * gv.signum();
        assert_eq!(adv[idx], want, "pixel {idx}");
        assert!((adv[idx] - xv).abs() - eps <= 1e-15);
    }
    // (x + ε) − x can exceed ε by an ulp: the violation is rounding, no more.
    assert!(
        out.max_ball_violation <= 1e-15,
        "{}",
        out.max_ball_violation
    );
    assert_eq!(out.max_clip_violation, 0.0);
    // The reported losses are those of the adversarial images.
    let adv_case = Case {
        x: Array2::from_shape_vec((B, D), adv).unwrap(),
        w: c.w.clone(),
        b: c.b.clone(),
        y: c.y.clone(),
    };
    let (adv_losses, _) = closed_form(&adv_case);
    for (a, b) in out.losses.iter().zip(&adv_losses) {
        assert!((a - b).abs() < 1e-12);
    }
    // A linear softmax loss is convex in x and the step has gᵀδ = ε‖g‖₁ > 0: loss rises.
    let (clean_losses, _) = closed_form(&c);
    assert!(out.losses.iter().zip(&clean_losses).all(|(a, b)| a > b));
}

#[test]
fn fgsm_clips_to_the_pixel_range() {
    let mut c = case(3, 0.0, 1.0);
    // Put pixels on and near the edges.
    for (i, v) in c.x.iter_mut().enumerate() {
        *v = [0.0, 1.0, 0.03, 0.98, 0.5][i % 5];
    }
    let (_, g) = closed_form(&c);
    let mut net = linear_net(&c.w, &c.b);
    let eps = 0.1;
    let out = fgsm(
        &mut net,
        &Tensor::from_array(c.x.clone()),
        &c.y,
        eps,
        ClipRange::default(),
    )
    .unwrap();
    for ((&xv, &gv), a) in c.x.iter().zip(g.iter()).zip(vals(&out.adversarial)) {
        assert_eq!(a, (xv + eps * gv.signum()).clamp(0.0, 1.0));
    }
}

#[test]
fn one_pgd_step_of_size_eps_is_fgsm() {
    let c = case(4, 0.0, 1.0);
    let mut net = linear_net(&c.w, &c.b);
    let x = Tensor::from_array(c.x.clone());
    // Label every image with its clean prediction, so the step (which raises the loss of a
    // convex model) is the worst iterate of every sample.
    let y = net.logits(&x).unwrap().argmax_rows().unwrap();
    let eps = 0.15;
    let f = fgsm(&mut net, &x, &y, eps, ClipRange::default()).unwrap();
    let cfg = PgdConfig {
        steps: 1,
        step_size: StepSize::Absolute(eps),
        ..PgdConfig::linf(eps)
    };
    let p = pgd(&mut net, &x, &y, &cfg).unwrap();
    assert_eq!(vals(&p.adversarial), vals(&f.adversarial));
    assert_eq!(p.predictions, f.predictions);
    assert_eq!(p.losses, f.losses);
    assert!(p.found_at_step.iter().all(|&s| s == 1));
}

#[test]
fn one_l2_step_moves_eps_along_the_normalised_gradient() {
    let c = case(5, 0.3, 0.7);
    let mut net = linear_net(&c.w, &c.b);
    let x = Tensor::from_array(c.x.clone());
    let y = net.logits(&x).unwrap().argmax_rows().unwrap();
    let eps = 0.2;
    let cfg = PgdConfig {
        steps: 1,
        step_size: StepSize::Absolute(eps),
        ..PgdConfig::l2(eps)
    };
    let c2 = Case { y: y.clone(), ..c };
    let (_, g2) = closed_form(&c2);
    let p = pgd(&mut net, &x, &y, &cfg).unwrap();
    let adv = vals(&p.adversarial);
    for i in 0..B {
        let norm = g2.row(i).dot(&g2.row(i)).sqrt();
        let mut moved = 0.0;
        for j in 0..D {
            let want = c2.x[[i, j]] + eps * g2[[i, j]] / norm;
            let got = adv[i * D + j];
            assert!((got - want).abs() < 1e-12, "({i}, {j}): {got} vs {want}");
            moved += (got - c2.x[[i, j]]).powi(2);
        }
        assert!((moved.sqrt() - eps).abs() < 1e-12);
    }
    assert!(p.max_ball_violation < 1e-12);
}

#[test]
fn l2_projection_keeps_the_ball_over_many_steps() {
    let c = case(6, 0.0, 1.0);
    let mut net = linear_net(&c.w, &c.b);
    let x = Tensor::from_array(c.x.clone());
    let eps = 0.5;
    let cfg = PgdConfig {
        random_start: true,
        restarts: 2,
        ..PgdConfig::l2(eps)
    };
    let p = pgd(&mut net, &x, &c.y, &cfg).unwrap();
    let adv = vals(&p.adversarial);
    for i in 0..B {
        let d2: f64 = (0..D).map(|j| (adv[i * D + j] - c.x[[i, j]]).powi(2)).sum();
        assert!(d2.sqrt() <= eps + 1e-12, "row {i}: ‖δ‖ = {}", d2.sqrt());
    }
    assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(p.max_ball_violation < 1e-12 && p.max_clip_violation == 0.0);
}

#[test]
fn zero_budget_changes_nothing() {
    let c = case(7, 0.0, 1.0);
    let mut net = linear_net(&c.w, &c.b);
    let x = Tensor::from_array(c.x.clone());
    let clean = vals(&x);
    let f = fgsm(&mut net, &x, &c.y, 0.0, ClipRange::default()).unwrap();
    assert_eq!(vals(&f.adversarial), clean);
    for norm in [Norm::Linf, Norm::L2] {
        let cfg = PgdConfig {
            norm,
            random_start: true,
            restarts: 3,
            step_size: StepSize::Absolute(0.01),
            ..PgdConfig::linf(0.0)
        };
        let p = pgd(&mut net, &x, &c.y, &cfg).unwrap();
        assert_eq!(vals(&p.adversarial), clean, "{norm}");
    }
    let n = white_noise(&x, 0.0, ClipRange::default(), &mut Rng::new(1)).unwrap();
    assert_eq!(vals(&n), clean);

    // Curves: the point at strength 0 is the clean accuracy, and nothing is flagged.
    let images = c.x.mapv(|v| v as f32);
    let y8: Vec<u8> = c.y.iter().map(|&v| v as u8).collect();
    let opts = EvalOptions {
        batch_size: 5,
        ..EvalOptions::default()
    };
    let mut net32 = linear_net(&c.w, &c.b);
    for attack in [
        Attack::fgsm(),
        Attack::pgd(),
        Attack::Pgd(PgdConfig {
            random_start: true,
            restarts: 2,
            early_exit: true,
            ..PgdConfig::l2(0.0)
        }),
        Attack::white_noise(3),
    ] {
        let curve =
            robustness_curve(&mut net32, images.view(), &y8, &attack, &[0.0], &opts).unwrap();
        assert_eq!(
            curve.points[0].correct,
            curve.clean_correct,
            "{}",
            attack.name()
        );
        assert!(
            curve.flags.is_empty(),
            "{}: {:?}",
            attack.name(),
            curve.flags
        );
        assert_eq!(curve.num_images, B);
    }
}

#[test]
fn white_noise_is_seeded_and_has_the_asked_for_spread() {
    let x = Tensor::full(
        0.5,
        &[200, 50],
        specreg_tensor::DType::F64,
        &specreg_tensor::Device::Cpu,
    )
    .unwrap();
    let a = white_noise(&x, 0.1, ClipRange::default(), &mut Rng::new(9)).unwrap();
    let b = white_noise(&x, 0.1, ClipRange::default(), &mut Rng::new(9)).unwrap();
    assert_eq!(vals(&a), vals(&b));
    let v = vals(&a);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    assert!((sd - 0.1).abs() < 0.005, "sd {sd}");
    // Large noise is clipped to the range.
    let big = white_noise(&x, 5.0, ClipRange::default(), &mut Rng::new(9)).unwrap();
    assert!(vals(&big).iter().all(|t| (0.0..=1.0).contains(t)));
}

#[test]
fn pgd_that_cannot_reach_its_budget_is_flagged() {
    let c = case(8, 0.0, 1.0);
    let mut net = linear_net(&c.w, &c.b);
    let images = c.x.mapv(|v| v as f32);
    let y8: Vec<u8> = c.y.iter().map(|&v| v as u8).collect();
    // 40 · 0.01 = 0.4 < 0.5.
    let curve = robustness_curve(
        &mut net,
        images.view(),
        &y8,
        &Attack::pgd(),
        &[0.3, 0.5],
        &EvalOptions::default(),
    )
    .unwrap();
    let reach: Vec<&SanityFlag> = curve
        .flags
        .iter()
        .filter(|f| matches!(f, SanityFlag::StepsCannotReachBudget { .. }))
        .collect();
    assert_eq!(reach.len(), 1, "{:?}", curve.flags);
    assert!(
        matches!(reach[0], SanityFlag::StepsCannotReachBudget { epsilon, .. } if *epsilon == 0.5)
    );
}
