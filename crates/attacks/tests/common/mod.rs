//! Models and data shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array2, ArrayView2};
use specreg_attacks::{Attack, Classifier, CurvePoint, LossGradient, Result, RobustnessCurve};
use specreg_nn::{Adam, AdamConfig, Linear, Network, NoHook, Sequential, Tanh, train_epoch};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// A linear softmax model `z = x Wᵀ + b` (f64) from `W: [K, D]` and `b: [K]`.
pub fn linear_net(w: &Array2<f64>, b: &[f64]) -> Network {
    let lin = Linear::from_tensors(
        Tensor::from_array(w.clone()),
        Tensor::from_vec(b.to_vec(), &[b.len()], &Device::Cpu).unwrap(),
    )
    .unwrap();
    Network::new(Sequential::new().with(lin), vec![], &[w.ncols()]).unwrap()
}

/// A random `[rows, cols]` matrix with entries in `[lo, hi)`.
pub fn uniform(rows: usize, cols: usize, lo: f64, hi: f64, rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(lo, hi))
}

/// A random standard-normal `[rows, cols]` matrix.
pub fn normal(rows: usize, cols: usize, rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |_| rng.normal())
}

/// `D → hidden → hidden → K` tanh MLP with representations `h1`, `h2`, on the CPU.
pub fn small_mlp(d: usize, hidden: usize, k: usize, dtype: DType, seed: u64) -> Network {
    small_mlp_on(&Device::Cpu, d, hidden, k, dtype, seed)
}

/// [`small_mlp`] on `dev` (the same weights on every device).
pub fn small_mlp_on(
    dev: &Device,
    d: usize,
    hidden: usize,
    k: usize,
    dtype: DType,
    seed: u64,
) -> Network {
    let mut rng = Rng::new(seed);
    let seq = Sequential::new()
        .with(Linear::new(d, hidden, dtype, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(hidden, hidden, dtype, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(hidden, k, dtype, dev, &mut rng).unwrap());
    Network::new(seq, vec![("h1".into(), 1), ("h2".into(), 3)], &[d]).unwrap()
}

/// A synthetic classification set in `[0, 1]^d`: `k` class templates plus noise, clipped.
pub fn blobs(n: usize, d: usize, k: usize, noise: f64, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let centres = uniform(k, d, 0.15, 0.85, &mut rng);
    let mut x = Array2::<f32>::zeros((n, d));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % k;
        for j in 0..d {
            x[[i, j]] = (centres[[c, j]] + noise * rng.normal()).clamp(0.0, 1.0) as f32;
        }
        y.push(c as u8);
    }
    (x, y)
}

/// A small MLP trained on [`blobs`] (`f32`), with its training data.
pub fn trained_mlp(seed: u64) -> (Network, Array2<f32>, Vec<u8>) {
    let (d, k) = (32, 4);
    let (x, y) = blobs(512, d, k, 0.2, seed);
    let mut net = small_mlp(d, 48, k, DType::F32, seed + 1);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    for epoch in 0..30 {
        let batches: Vec<Vec<usize>> = (0..8).map(|b| (b * 64..(b + 1) * 64).collect()).collect();
        train_epoch(
            &mut net,
            &mut adam,
            x.view(),
            &y,
            &batches,
            epoch,
            &mut NoHook,
        )
        .unwrap();
    }
    (net, x, y)
}

/// Rows `0..n` of `x` as an `f32` tensor.
pub fn head(x: ArrayView2<'_, f32>, n: usize) -> Tensor {
    Tensor::from_array(x.slice(ndarray::s![0..n, ..]).to_owned())
}

/// Labels as `usize`.
pub fn labels(y: &[u8]) -> Vec<usize> {
    y.iter().map(|&v| usize::from(v)).collect()
}

/// A classifier wrapper that records every batch an attack asks about.
pub struct Recording<'a> {
    pub inner: &'a mut Network,
    pub seen: Vec<Tensor>,
}

impl Classifier for Recording<'_> {
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn dtype(&self) -> DType {
        Classifier::dtype(&*self.inner)
    }
    fn device(&self) -> Device {
        Classifier::device(&*self.inner)
    }
    fn logits(&mut self, x: &Tensor) -> Result<Tensor> {
        self.seen.push(x.clone());
        self.inner.logits(x)
    }
    fn loss_and_input_gradient(&mut self, x: &Tensor, labels: &[usize]) -> Result<LossGradient> {
        self.seen.push(x.clone());
        self.inner.loss_and_input_gradient(x, labels)
    }
}

/// The values of an `f64` or `f32` tensor as `f64`, row-major.
pub fn vals(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DType::F64 => t.to_vec::<f64>().unwrap(),
    }
}

/// A hand-made curve: point `i` at strength `0.1 i` with `correct[i]` of `n` images right.
pub fn curve(attack: Attack, correct: &[usize], n: usize) -> RobustnessCurve {
    RobustnessCurve {
        attack,
        points: correct
            .iter()
            .enumerate()
            .map(|(i, &c)| CurvePoint {
                strength: 0.1 * i as f64,
                correct: c,
                accuracy: c as f64 / n as f64,
                mean_loss: 0.0,
                max_ball_violation: 0.0,
                max_clip_violation: 0.0,
                zero_gradient_rows: 0,
                gradient_evaluations: 0,
            })
            .collect(),
        num_images: n,
        clean_correct: correct[0],
        clean_accuracy: correct[0] as f64 / n as f64,
        batch_size: n,
        dtype: DType::F32,
        flags: Vec::new(),
    }
}
