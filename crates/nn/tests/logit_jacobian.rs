//! The logit-Jacobian regulariser of the public reference code (Hoffman et al. 2019) from the
//! same passes: with `g = Jᵀv = ∂(vᵀf)/∂x`, the exact weight gradient of `½‖Jᵀv‖²` is the
//! tangent gradient `R{∇_θ vᵀf}` along `dx = Jᵀv` (the upstream `v` is constant, so its
//! tangent is zero). Checked against f64 central differences of `½‖Jᵀv‖²` over every
//! parameter, for an MLP and a small CNN.

mod common;

use common::{assert_close_tol, fd_grad, randn_on, tol, vals};
use specreg_nn::{Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Sequential, Tanh};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

test_device!(
    logit_jacobian_penalty_gradient_is_exact_for_an_mlp,
    logit_jacobian_penalty_gradient_is_exact_for_a_cnn
);

const F64: DType = DType::F64;

/// `½‖Jᵀv‖²` for the current parameters.
fn penalty(net: &mut Sequential, x: &Tensor, v: &Tensor) -> f64 {
    net.forward(x, Mode::Train).unwrap();
    let g = net.backward(v).unwrap();
    net.zero_grad();
    0.5 * g.sqr().unwrap().sum_all().unwrap()
}

fn check(mut net: Sequential, x: Tensor, k: usize, rng: &mut Rng) {
    let dev = x.device();
    let b = x.shape()[0];
    let v = randn_on(&dev, &[b, k], rng);
    // One backward pass for Jᵀv, one tangent pass for its weight gradient.
    net.zero_grad();
    net.forward(&x, Mode::Train).unwrap();
    let jtv = net.backward(&v).unwrap();
    net.forward_tangent(&jtv).unwrap();
    let zero = Tensor::zeros(&[b, k], F64, &dev).unwrap();
    net.backward_tangent(&zero).unwrap();
    let exact: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| {
            vals(
                p.grad_tangent
                    .as_ref()
                    .expect("every parameter gets a tangent gradient"),
            )
        })
        .collect();

    for (i, exact) in exact.iter().enumerate() {
        let value = net.params()[i].value.clone();
        let fd = fd_grad(&value, |t| {
            net.params_mut()[i].value = t.clone();
            let p = penalty(&mut net, &x, &v);
            net.params_mut()[i].value = value.clone();
            p
        });
        assert_close_tol(
            &format!("d½‖Jᵀv‖²/d{}", net.params()[i].name),
            exact,
            &fd,
            tol(&dev),
        );
    }
}

fn logit_jacobian_penalty_gradient_is_exact_for_an_mlp(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(11);
    let net = Sequential::new()
        .with(Linear::new(5, 7, F64, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(7, 6, F64, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(6, 3, F64, dev, &mut rng).unwrap());
    let x = randn_on(dev, &[4, 5], &mut rng);
    check(net, x, 3, &mut rng);
    Ok(())
}

fn logit_jacobian_penalty_gradient_is_exact_for_a_cnn(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(12);
    let net = Sequential::new()
        .with(Conv2d::new(2, 3, (3, 3), F64, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(3 * 2 * 2, 4, F64, dev, &mut rng).unwrap());
    // 6×6 inputs spaced so that no pooling window is near a tie.
    let x = Tensor::from_vec(
        (0..2 * 2 * 36)
            .map(|i| ((i * 37 % 71) as f64) / 20.0 - 1.7)
            .collect(),
        &[2, 2, 6, 6],
        dev,
    )
    .unwrap();
    check(net, x, 4, &mut rng);
    Ok(())
}
