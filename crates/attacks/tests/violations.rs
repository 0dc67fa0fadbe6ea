//! The ball and clip-range violations an attack reports equal those of checking every
//! image it evaluated on its own, bit for bit (the attacks keep elementwise extremes on the
//! device and reduce them once).

mod common;

use common::{Recording, head, labels, trained_mlp};
use specreg_attacks::{ApgdConfig, ClipRange, Norm, PgdConfig, apgd, pgd};
use specreg_tensor::Tensor;

/// `max(0, max_i size(x_i − x) − ε)` and `max(0, max |x_i − mid| − half)` over the images
/// `seen`, the straightforward way (a host read per image).
fn naive(seen: &[Tensor], x: &Tensor, norm: Norm, eps: f64, clip: ClipRange) -> (f64, f64) {
    let (mid, half) = (0.5 * (clip.lo + clip.hi), 0.5 * (clip.hi - clip.lo));
    let (mut ball, mut out) = (0.0f64, 0.0f64);
    for s in seen {
        let d = s.sub(x).unwrap();
        let size = match norm {
            Norm::Linf => d.max_abs().unwrap(),
            Norm::L2 => d
                .row_norms()
                .unwrap()
                .to_vec::<f64>()
                .unwrap()
                .into_iter()
                .fold(0.0, f64::max),
        };
        ball = ball.max((size - eps).max(0.0));
        out = out.max((s.add_scalar(-mid).unwrap().max_abs().unwrap() - half).max(0.0));
    }
    (ball, out)
}

#[test]
fn pgd_and_apgd_violations_equal_a_check_of_every_iterate() {
    let (mut net, x, y) = trained_mlp(31);
    let xt = head(x.view(), 48);
    let yl = labels(&y[..48]);
    for norm in [Norm::Linf, Norm::L2] {
        let eps = if norm == Norm::Linf { 0.1 } else { 1.0 };
        let cfg = PgdConfig {
            norm,
            steps: 7,
            random_start: true,
            restarts: 2,
            ..PgdConfig::linf(eps)
        };
        let mut rec = Recording {
            inner: &mut net,
            seen: Vec::new(),
        };
        let out = pgd(&mut rec, &xt, &yl, &cfg).unwrap();
        // Every image PGD evaluated (each start and iterate once per restart).
        assert_eq!(rec.seen.len(), 2 * (7 + 1));
        let (ball, clip) = naive(&rec.seen, &xt, norm, eps, cfg.clip);
        assert_eq!(out.max_ball_violation, ball, "{norm}");
        if norm == Norm::Linf {
            // f32 rounding of x ± ε reaches a few 1e-8 beyond ε: the check is not 0 = 0.
            assert!(ball > 0.0);
        }
        assert_eq!(out.max_clip_violation, clip, "{norm}");
    }
    let cfg = ApgdConfig {
        steps: 9,
        random_start: true,
        ..ApgdConfig::ce(0.1)
    };
    let mut rec = Recording {
        inner: &mut net,
        seen: Vec::new(),
    };
    let out = apgd(&mut rec, &xt, &yl, &cfg).unwrap();
    let (ball, clip) = naive(&rec.seen, &xt, Norm::Linf, 0.1, cfg.clip);
    assert_eq!(out.max_ball_violation, ball);
    assert_eq!(out.max_clip_violation, clip);
}
