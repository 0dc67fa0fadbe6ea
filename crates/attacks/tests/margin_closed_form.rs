//! PGD on the Carlini–Wagner margin and APGD on a linear model, against the closed-form
//! L∞ maximiser of a linear margin.

mod common;

use common::{linear_net, normal, uniform, vals};
use ndarray::Array2;
use specreg_attacks::{ApgdConfig, AttackLoss, PgdConfig, StepSize, apgd, pgd};
use specreg_tensor::{Rng, Tensor};

const D: usize = 12;
const K: usize = 4;
const B: usize = 10;

/// A linear model whose best other class is class 1 for every image labelled 0 anywhere
/// in a small ball (bias 10 on class 0, 5 on class 1, 0 on the rest), with the images.
fn dominated_case(seed: u64) -> (Array2<f64>, Vec<f64>, Array2<f64>) {
    let mut rng = Rng::new(seed);
    let w = normal(K, D, &mut rng);
    let b = vec![10.0, 5.0, 0.0, 0.0];
    let x = uniform(B, D, 0.0, 1.0, &mut rng);
    (w, b, x)
}

/// The L∞ maximiser of the margin `z_1 − z_0` over the box: each pixel at the end of its
/// box that `sign(w_1 − w_0)` points to.
fn margin_corner(w: &Array2<f64>, x: &Array2<f64>, eps: f64) -> Array2<f64> {
    Array2::from_shape_fn(x.dim(), |(i, j)| {
        let v = x[[i, j]];
        let dir = w[[1, j]] - w[[0, j]];
        if dir > 0.0 {
            (v + eps).clamp(0.0, 1.0)
        } else {
            (v - eps).clamp(0.0, 1.0)
        }
    })
}

fn margins(w: &Array2<f64>, b: &[f64], x: &Array2<f64>) -> Vec<f64> {
    let z = x.dot(&w.t()) + &ndarray::Array1::from(b.to_vec());
    z.rows().into_iter().map(|r| r[1] - r[0]).collect()
}

#[test]
fn cw_pgd_and_apgd_reach_the_closed_form_optimum_of_a_linear_margin() {
    let (w, b, x) = dominated_case(1);
    let mut net = linear_net(&w, &b);
    let xt = Tensor::from_array(x.clone());
    let y = vec![0; B];
    let eps = 0.1;
    let want = margin_corner(&w, &x, eps);
    let best = margins(&w, &b, &want);
    assert!(best.iter().all(|&m| m < 0.0), "the case must stay correct");
    // 10 steps of ε/4: every pixel reaches its corner and stays there.
    let cfg = PgdConfig {
        steps: 10,
        step_size: StepSize::Absolute(eps / 4.0),
        ..PgdConfig::linf_cw(eps)
    };
    let p = pgd(&mut net, &xt, &y, &cfg).unwrap();
    // (The crate forms the box edge x ± ε its own way: allow an ulp.)
    let close = |got: &[f64]| {
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-15, "{g} vs {w}");
        }
    };
    close(&vals(&p.adversarial));
    for (got, m) in p.losses.iter().zip(&best) {
        assert!((got - m).abs() < 1e-12, "{got} vs {m}");
    }
    // APGD's first step of 2ε lands on the corner already.
    let a = apgd(
        &mut net,
        &xt,
        &y,
        &ApgdConfig {
            loss: AttackLoss::CwMargin,
            ..ApgdConfig::ce(eps)
        },
    )
    .unwrap();
    close(&vals(&a.adversarial));
    assert!(
        a.found_at_step.iter().all(|&s| s == 1),
        "{:?}",
        a.found_at_step
    );
    for (got, m) in a.losses.iter().zip(&best) {
        assert!((got - m).abs() < 1e-12, "{got} vs {m}");
    }
    assert_eq!(a.max_clip_violation, 0.0);
    assert!(a.max_ball_violation <= 1e-15);
}

#[test]
fn binary_cw_pgd_moves_against_the_sign_of_w_y_minus_w_j() {
    // Two classes: the optimum is x − ε sign(w_y − w_j), clipped, for the other class j.
    let mut rng = Rng::new(2);
    let w = normal(2, D, &mut rng);
    let mut net = linear_net(&w, &[0.0, 0.0]);
    let x = uniform(B, D, 0.2, 0.8, &mut rng);
    let xt = Tensor::from_array(x.clone());
    let y: Vec<usize> = (0..B).map(|i| i % 2).collect();
    let eps = 0.15;
    let cfg = PgdConfig {
        steps: 3,
        step_size: StepSize::Absolute(eps / 2.0),
        ..PgdConfig::linf_cw(eps)
    };
    let p = pgd(&mut net, &xt, &y, &cfg).unwrap();
    let adv = vals(&p.adversarial);
    for i in 0..B {
        let j = 1 - y[i];
        for c in 0..D {
            let want = x[[i, c]] - eps * (w[[y[i], c]] - w[[j, c]]).signum();
            assert!((adv[i * D + c] - want).abs() < 1e-15, "({i}, {c})");
        }
    }
}
