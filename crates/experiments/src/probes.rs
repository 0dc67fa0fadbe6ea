//! The timed probes of [`crate::calibrate`]: one training step, a forward pass, an FGSM
//! gradient, covariance passes and an eigendecomposition, on synthetic images.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, ArrayView2, s};
use specreg_attacks::{Attack, EvalOptions};
use specreg_nn::{Adam, AdamConfig, NoHook, evaluate, train_epoch};
use specreg_regularizers::{CovarianceAccumulator, Spectrum};
use specreg_tensor::{Device, Rng, Tensor};

use crate::calibrate::NetworkTimes;
use crate::config::Config;
use crate::runner::{Regularizer, build_network, regularizer};

/// Images of the covariance and forward timings (fewer when a config uses fewer).
pub(crate) const SAMPLE_IMAGES: usize = 1000;

/// Deterministic synthetic images in [0, 1) and labels 0–9.
pub(crate) fn synthetic(rows: usize) -> (Array2<f32>, Vec<u8>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let x = Array2::from_shape_fn((rows, 784), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    });
    let y = (0..rows).map(|i| ((i * 7) % 10) as u8).collect();
    (x, y)
}

fn seconds<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    let v = f()?;
    Ok((start.elapsed().as_secs_f64(), v))
}

/// Largest batch a step is timed at; a larger batch's step is priced linearly from it
/// (every per-step cost of these networks is linear in the batch, except exact-mode
/// SpecReg's per-batch eigendecomposition, which is timed at the full batch).
pub(crate) const STEP_SAMPLE: usize = 1500;

/// Times one training step of `config` at its batch size (after a warm-up step on at most
/// 256 images, and, for projected SpecReg, an eigenvector refresh that is not timed).
pub(crate) fn time_step(
    config: &Config,
    x: ArrayView2<'_, f32>,
    y: &[u8],
    device: &Device,
) -> Result<f64> {
    let mut rng = Rng::new(0);
    let mut net = build_network(config, &mut rng, device)?;
    let mut adam = Adam::new(AdamConfig::new(config.train.lr))?;
    let mut reg = regularizer(config)?;
    let exact = config
        .spectral
        .as_ref()
        .is_some_and(|sp| sp.mode == crate::config::EigenModeName::Exact);
    let full = config.train.batch_size;
    let b = if exact { full } else { full.min(STEP_SAMPLE) }.min(x.nrows());
    let warm = b.min(256);
    if let Regularizer::Spectral(spec) = &mut reg {
        spec.refresh(
            &mut net,
            x.slice(s![..warm.max(64), ..]),
            config.train.chunk,
        )?;
    }
    let mut step = |n: usize, epoch: usize| -> Result<f64> {
        let batches = vec![(0..n).collect::<Vec<usize>>()];
        let (xs, ys) = (x.slice(s![..n, ..]), &y[..n]);
        let start = Instant::now();
        match &mut reg {
            Regularizer::None => {
                train_epoch(&mut net, &mut adam, xs, ys, &batches, epoch, &mut NoHook)?
            }
            Regularizer::Spectral(spec) => {
                train_epoch(&mut net, &mut adam, xs, ys, &batches, epoch, spec.as_mut())?
            }
            Regularizer::Jacobian(jac) => {
                jac.train_epoch(&mut net, &mut adam, xs, ys, &batches, epoch, &mut rng)?
            }
        };
        Ok(start.elapsed().as_secs_f64())
    };
    step(warm, 0)?;
    Ok(step(b, 1)? * full as f64 / b as f64)
}

/// Times the forward pass, one FGSM gradient and every hidden layer's covariance pass of
/// `config`'s network (without whitening or regulariser).
pub(crate) fn time_network(
    config: &Config,
    x: ArrayView2<'_, f32>,
    y: &[u8],
    device: &Device,
) -> Result<NetworkTimes> {
    let mut plain = config.clone();
    plain.whitening = None;
    let mut rng = Rng::new(0);
    let mut net = build_network(&plain, &mut rng, device)?;
    let n = SAMPLE_IMAGES
        .min(config.eval.batch_size.max(64))
        .min(x.nrows());
    let (xs, ys) = (x.slice(s![..n, ..]), &y[..n]);
    evaluate(
        &mut net,
        xs.slice(s![..n.min(64), ..]),
        &ys[..n.min(64)],
        64,
    )?;
    // Forward and gradient: the faster of two timings (a busy machine slows one down).
    let mut forward = f64::INFINITY;
    for _ in 0..2 {
        let (t, _) = seconds(|| Ok(evaluate(&mut net, xs, ys, n)?))?;
        forward = forward.min(t / n as f64);
    }
    let options = EvalOptions {
        batch_size: n,
        subset: None,
        monotone_tolerance: 1,
    };
    let mut t_fgsm = f64::INFINITY;
    for _ in 0..2 {
        let (t, _) = seconds(|| {
            Ok(specreg_attacks::robustness_curve(
                &mut net,
                xs,
                ys,
                &Attack::fgsm(),
                &[0.1],
                &options,
            )?)
        })?;
        t_fgsm = t_fgsm.min(t);
    }
    // The FGSM curve runs the clean logits, the gradient and the attacked logits.
    let gradient = (t_fgsm / n as f64 - 2.0 * forward).max(forward);
    // A covariance pass is a forward pass (priced above), an accumulation per chunk and a
    // fixed part (finishing the N × N covariance). The last two are timed on their own, on
    // a chunk of the pass's size: timing a whole 1000-image pass and dividing by 1000
    // would charge the fixed part once per 1000 images, 60 times over a 60 000-image
    // refresh, and the forward pass once per layer where one pass serves them all.
    let (dtype, dev) = net.dtype_device();
    let rows = config.train.chunk.clamp(2, 2 * SAMPLE_IMAGES);
    let mut covariance_per_image = BTreeMap::new();
    let mut covariance_fixed = BTreeMap::new();
    for (name, width) in config.model.kind.hidden_layers() {
        let h = Tensor::randn(&[rows, *width], 0.0, 1.0, dtype, &mut rng, &dev)?.tanh()?;
        let (mut push, mut finish) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..2 {
            let mut acc = CovarianceAccumulator::new(name.as_str(), *width);
            let (t, _) = seconds(|| Ok(acc.push(&h)?))?;
            push = push.min(t);
            let (t, _) = seconds(|| Ok(acc.finish()?))?;
            finish = finish.min(t);
        }
        covariance_per_image.insert(name.clone(), push / rows as f64);
        covariance_fixed.insert(name.clone(), finish);
    }
    Ok(NetworkTimes {
        forward_per_image: forward,
        gradient_per_image: gradient,
        covariance_per_image,
        covariance_fixed,
    })
}

/// Times the eigendecomposition of a random symmetric, diagonally dominant `width`×`width`
/// matrix (the cost of a covariance's, without computing one).
pub(crate) fn time_eigh(width: usize) -> Result<f64> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut a = Array2::<f64>::from_shape_fn((width, width), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    });
    let t = a.t().to_owned();
    a += &t;
    for i in 0..width {
        a[[i, i]] += width as f64;
    }
    let a = specreg_tensor::Tensor::from_array(a);
    let (secs, _) = seconds(|| Ok(Spectrum::of_covariance(&a)?))?;
    Ok(secs)
}

/// The batch an exact-mode SpecReg config is timed at (its own), else 0.
pub(crate) fn exact_batch(config: &Config) -> usize {
    match &config.spectral {
        Some(sp) if sp.mode == crate::config::EigenModeName::Exact => config.train.batch_size,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_images_are_deterministic_pixels() {
        let (a, ya) = synthetic(50);
        let (b, _) = synthetic(50);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(ya.iter().all(|&l| l < 10));
        // Not constant: the kernels see varied data.
        assert!(a.iter().any(|&v| v > 0.5) && a.iter().any(|&v| v < 0.5));
    }
}
