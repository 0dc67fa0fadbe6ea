//! Finite-difference helpers shared by the integration tests (all in `f64`).
//!
//! Gradient checks are written once as `fn case(dev: &Device) -> Result<…>` and stamped out
//! for the CPU and CUDA by `specreg_tensor::test_device!`. The tensors under test live on
//! `dev`; the finite differences are formed on the host from values read back, in `f64`.
#![allow(dead_code)]

use specreg_nn::{Layer, Mode};
use specreg_tensor::{DType, Device, Rng, Tensor, testing::scaled_tol};

/// Central-difference step.
pub const H: f64 = 1e-6;
/// Tolerance: `|got − want| ≤ TOL · max(0.01, |want|)` on the CPU.
pub const TOL: f64 = 1e-6;
/// How much looser [`TOL`] is on a GPU, whose sums add in other orders and whose `exp`,
/// `log` and `tanh` come from libdevice: a few ulps more in each evaluation, divided by `2H`.
pub const GPU_FACTOR: f64 = 10.0;

/// The finite-difference tolerance on `dev`.
pub fn tol(dev: &Device) -> f64 {
    scaled_tol(dev, TOL, GPU_FACTOR)
}

/// A standard-normal `f64` tensor on the CPU.
pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    randn_on(&Device::Cpu, shape, rng)
}

/// A standard-normal `f64` tensor on `dev` (the same values on every device).
pub fn randn_on(dev: &Device, shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F64, rng, dev).unwrap()
}

/// A uniform `f64` tensor on `[lo, hi)` on the CPU.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor {
    uniform_on(&Device::Cpu, shape, lo, hi, rng)
}

/// A uniform `f64` tensor on `[lo, hi)` on `dev` (the same values on every device).
pub fn uniform_on(dev: &Device, shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, DType::F64, rng, dev).unwrap()
}

/// The row-major values.
pub fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

/// A tensor from row-major values on the CPU.
pub fn tensor(v: Vec<f64>, shape: &[usize]) -> Tensor {
    tensor_on(&Device::Cpu, v, shape)
}

/// A tensor from row-major values on `dev`.
pub fn tensor_on(dev: &Device, v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, dev).unwrap()
}

/// `t` with element `i` moved by `delta`, on `t`'s device.
pub fn bump(t: &Tensor, i: usize, delta: f64) -> Tensor {
    let mut v = vals(t);
    v[i] += delta;
    tensor_on(&t.device(), v, t.shape())
}

/// `t + s·d`.
pub fn axpy(t: &Tensor, s: f64, d: &Tensor) -> Tensor {
    t.add(&d.scale(s).unwrap()).unwrap()
}

/// Central difference of a vector-valued function along a direction.
pub fn fd_dir(mut f: impl FnMut(f64) -> Vec<f64>) -> Vec<f64> {
    let (p, m) = (f(H), f(-H));
    p.iter().zip(&m).map(|(a, b)| (a - b) / (2.0 * H)).collect()
}

/// Central differences of a scalar function with respect to every element of `t`.
pub fn fd_grad(t: &Tensor, mut f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    (0..t.elem_count())
        .map(|i| (f(&bump(t, i, H)) - f(&bump(t, i, -H))) / (2.0 * H))
        .collect()
}

/// Asserts elementwise agreement within [`TOL`] relative (absolute `1e-8` below 0.01).
pub fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_close_tol(what, got, want, TOL);
}

/// Asserts elementwise agreement within `rtol` relative (absolute `rtol / 100` below 0.01).
pub fn assert_close_tol(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs().max(1e-2);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, finite difference {w} (|diff| {:e})",
            (g - w).abs()
        );
    }
}

/// The probe loss `ℓ(y) = Σ c ⊙ y + ½ Σ d ⊙ y²`: its gradient `c + d ⊙ y` depends on `y`, so
/// the tangent of the upstream gradient, `d ⊙ R{y}`, is not zero.
pub struct Probe {
    pub c: Tensor,
    pub d: Tensor,
}

impl Probe {
    pub fn new(shape: &[usize], rng: &mut Rng) -> Self {
        Self::on(&Device::Cpu, shape, rng)
    }
    pub fn on(dev: &Device, shape: &[usize], rng: &mut Rng) -> Self {
        Self {
            c: randn_on(dev, shape, rng),
            d: randn_on(dev, shape, rng),
        }
    }
    pub fn loss(&self, y: &Tensor) -> f64 {
        let lin = self.c.mul(y).unwrap().sum_all().unwrap();
        let quad = self.d.mul(&y.sqr().unwrap()).unwrap().sum_all().unwrap();
        lin + 0.5 * quad
    }
    pub fn grad(&self, y: &Tensor) -> Tensor {
        self.c.add(&self.d.mul(y).unwrap()).unwrap()
    }
}

/// Runs forward and backward from the probe loss; returns `∂ℓ/∂x` and every `∂ℓ/∂θ`.
pub fn grads(layer: &mut dyn Layer, x: &Tensor, probe: &Probe, mode: Mode) -> Vec<Vec<f64>> {
    layer.zero_grad();
    let y = layer.forward(x, mode).unwrap();
    let gx = layer.backward(&probe.grad(&y)).unwrap();
    let mut out = vec![vals(&gx)];
    out.extend(
        layer
            .params()
            .iter()
            .map(|p| vals(p.grad.as_ref().unwrap())),
    );
    out
}

/// Checks every pass of `layer` at `x` against central differences:
/// (a) the input gradient, (b) every parameter gradient, (c) `forward_tangent` and
/// (d) `backward_tangent`'s input and parameter outputs. Everything runs on `x`'s device;
/// the tolerance is [`tol`] of it.
pub fn check_layer(layer: &mut dyn Layer, x: &Tensor, mode: Mode, rng: &mut Rng) {
    let dev = x.device();
    let rtol = tol(&dev);
    let assert_close = |what: &str, got: &[f64], want: &[f64]| {
        assert_close_tol(what, got, want, rtol);
    };
    let name = layer.name().to_string();
    let y = layer.forward(x, mode).unwrap();
    let probe = Probe::on(&dev, y.shape(), rng);
    let dx = randn_on(&dev, x.shape(), rng);
    let analytic = grads(layer, x, &probe, mode);

    // (a) input gradient.
    let loss_at = |l: &mut dyn Layer, x: &Tensor| probe.loss(&l.forward(x, mode).unwrap());
    let fd_x = fd_grad(x, |xp| loss_at(layer, xp));
    assert_close(&format!("{name} ∂ℓ/∂x"), &analytic[0], &fd_x);

    // (b) parameter gradients.
    let n_params = layer.params().len();
    for k in 0..n_params {
        let value = layer.params()[k].value.clone();
        let fd = fd_grad(&value, |v| {
            layer.params_mut()[k].value = v.clone();
            loss_at(layer, x)
        });
        layer.params_mut()[k].value = value;
        let pname = layer.params()[k].name.clone();
        assert_close(&format!("{name} ∂ℓ/∂{pname}"), &analytic[1 + k], &fd);
    }

    // (c) forward tangent.
    layer.forward(x, mode).unwrap();
    let ry = layer.forward_tangent(&dx).unwrap();
    let fd_ry = fd_dir(|s| vals(&layer.forward(&axpy(x, s, &dx), mode).unwrap()));
    assert_close(&format!("{name} R{{y}}"), &vals(&ry), &fd_ry);

    // (d) backward tangent: R{g} = d ⊙ R{y} for the probe loss.
    layer.zero_grad();
    let y = layer.forward(x, mode).unwrap();
    layer.backward(&probe.grad(&y)).unwrap();
    let ry = layer.forward_tangent(&dx).unwrap();
    let rgx = layer.backward_tangent(&probe.d.mul(&ry).unwrap()).unwrap();
    let mut tangents = vec![vals(&rgx)];
    tangents.extend(
        layer
            .params()
            .iter()
            .map(|p| vals(p.grad_tangent.as_ref().unwrap())),
    );
    let plus = grads(layer, &axpy(x, H, &dx), &probe, mode);
    let minus = grads(layer, &axpy(x, -H, &dx), &probe, mode);
    for (k, got) in tangents.iter().enumerate() {
        let fd: Vec<f64> = plus[k]
            .iter()
            .zip(&minus[k])
            .map(|(p, m)| (p - m) / (2.0 * H))
            .collect();
        assert_close(&format!("{name} R{{∂ℓ/∂·}}[{k}]"), got, &fd);
    }
}
