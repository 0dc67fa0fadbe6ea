//! `Network`: shapes of the paper's networks, injected gradients and input gradients
//! against central differences (f64), and layer insertion.

mod common;

use std::sync::{Arc, Mutex};

use common::{assert_close_tol, fd_grad, randn, randn_on, tol, uniform_on, vals};
use specreg_nn::loss::softmax_cross_entropy;
use specreg_nn::{
    BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Network, NnError, Result,
    Sequential, Tanh,
};
use specreg_tensor::{DType, Device, Rng, Tensor, test_device};

test_device!(
    injected_gradients_match_central_differences_mlp_with_batchnorm,
    injected_gradients_match_central_differences_cnn,
    injected_gradients_match_central_differences_after_insertion,
    input_gradient_matches_central_differences_and_keeps_parameter_gradients
);

type Builder = fn(&mut Rng, DType, &Device) -> Result<Network>;

fn labels(b: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    (0..b).map(|_| rng.below(k as u64) as usize).collect()
}

#[test]
fn paper_networks_have_the_reference_shapes() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    let x = Tensor::rand_uniform(&[3, 784], 0.0, 1.0, DType::F32, &mut rng, &dev).unwrap();
    let cases: [(Builder, &[(&str, usize)]); 3] = [
        (Network::shallow, &[("hidden", 2000)]),
        (Network::mlp, &[("fc1", 1000), ("fc2", 1000), ("fc3", 1000)]),
        (
            Network::cnn,
            &[("conv1", 2704), ("conv2", 800), ("fc1", 1000)],
        ),
    ];
    for (build, reps) in cases {
        let mut net = build(&mut rng, DType::F32, &dev).unwrap();
        let names: Vec<&str> = reps.iter().map(|(n, _)| *n).collect();
        assert_eq!(net.hidden_names(), names);
        let pass = net.forward(&x, Mode::Train).unwrap();
        assert_eq!(pass.logits.shape(), &[3, 10]);
        assert_eq!(pass.hidden.len(), reps.len());
        for ((name, width), (got_name, h)) in reps.iter().zip(&pass.hidden) {
            assert_eq!(name, got_name);
            assert_eq!(h.shape(), &[3, *width], "{name}");
            assert_eq!(pass.get(name).unwrap().shape(), &[3, *width]);
        }
        // The input gradient comes back in the input's shape.
        let (_, gz) = softmax_cross_entropy(&pass.logits, &[0, 1, 2]).unwrap();
        assert_eq!(net.backward(&gz, &[]).unwrap().shape(), &[3, 784]);
    }
}

#[test]
fn paper_networks_have_the_reference_parameter_counts() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(2);
    let count =
        |net: &Network| -> usize { net.params().iter().map(|p| p.value.elem_count()).sum() };
    let shallow = Network::shallow(&mut rng, DType::F32, &dev).unwrap();
    assert_eq!(
        count(&shallow),
        784 * 2000 + 2000 + 2 * 2000 + 2000 * 10 + 10
    );
    let mlp = Network::mlp(&mut rng, DType::F32, &dev).unwrap();
    assert_eq!(count(&mlp), 785 * 1000 + 2 * 1001 * 1000 + 1001 * 10);
    let cnn = Network::cnn(&mut rng, DType::F32, &dev).unwrap();
    assert_eq!(
        count(&cnn),
        16 * 9 + 16 + 32 * 16 * 9 + 32 + 801 * 1000 + 1001 * 10
    );
}

/// Small f64 networks: an MLP with BatchNorm (train mode) and a CNN whose first
/// representation is 4-D.
fn small_mlp(dev: &Device, rng: &mut Rng) -> Network {
    let mut bn = BatchNorm1d::new(5, DType::F64, dev).unwrap();
    bn.params_mut()[0].value = uniform_on(dev, &[5], 0.5, 2.0, rng);
    bn.params_mut()[1].value = randn_on(dev, &[5], rng);
    let seq = Sequential::new()
        .with(Linear::new(6, 5, DType::F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(bn)
        .with(Linear::new(5, 4, DType::F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(4, 3, DType::F64, dev, rng).unwrap());
    Network::new(seq, vec![("h2".into(), 4), ("h1".into(), 2)], &[6]).unwrap()
}

fn small_cnn(dev: &Device, rng: &mut Rng) -> Network {
    let seq = Sequential::new()
        .with(Conv2d::new(1, 2, (3, 3), DType::F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(8, 5, DType::F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(5, 3, DType::F64, dev, rng).unwrap());
    let hidden = vec![("c1".into(), 2), ("f1".into(), 5)];
    Network::new(seq, hidden, &[1, 6, 6]).unwrap()
}

/// `f = CE(logits) + Σ_reps ⟨C_r, H_r⟩`; checks `backward` with the `C_r` injected against
/// central differences of `f` in every parameter and in the input.
fn check_injection(net: &mut Network, x: &Tensor, y: &[usize], rng: &mut Rng) {
    let rtol = tol(&x.device());
    let pass = net.forward(x, Mode::Train).unwrap();
    let cs: Vec<(String, Tensor)> = pass
        .hidden
        .iter()
        .map(|(n, h)| (n.clone(), randn_on(&x.device(), h.shape(), rng)))
        .collect();
    let objective = |net: &mut Network, x: &Tensor| -> f64 {
        let pass = net.forward(x, Mode::Train).unwrap();
        let ce = softmax_cross_entropy(&pass.logits, y)
            .unwrap()
            .0
            .to_scalar()
            .unwrap();
        let inner: f64 = cs
            .iter()
            .map(|(n, c)| c.mul(pass.get(n).unwrap()).unwrap().sum_all().unwrap())
            .sum();
        ce + inner
    };

    net.zero_grad();
    let pass = net.forward(x, Mode::Train).unwrap();
    let (_, gz) = softmax_cross_entropy(&pass.logits, y).unwrap();
    let gx = net.backward(&gz, &cs).unwrap();
    assert_eq!(gx.shape(), x.shape());
    let analytic: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();

    // The input-only pass gives the same ∂f/∂x and leaves every parameter gradient alone.
    net.forward(x, Mode::Train).unwrap();
    let gx_only = net.backward_input(&gz, &cs).unwrap();
    assert_eq!(vals(&gx_only), vals(&gx));
    for (p, want) in net.params().iter().zip(&analytic) {
        assert_eq!(
            &vals(p.grad.as_ref().unwrap()),
            want,
            "backward_input touched {}",
            p.name
        );
    }

    let fd_x = fd_grad(x, |xp| objective(net, xp));
    assert_close_tol("∂f/∂x", &vals(&gx), &fd_x, rtol);
    for (k, want) in analytic.iter().enumerate() {
        let value = net.params()[k].value.clone();
        let fd = fd_grad(&value, |v| {
            net.params_mut()[k].value = v.clone();
            objective(net, x)
        });
        net.params_mut()[k].value = value;
        assert_close_tol(&format!("∂f/∂θ[{k}]"), want, &fd, rtol);
    }
}

fn injected_gradients_match_central_differences_mlp_with_batchnorm(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(3);
    let mut net = small_mlp(dev, &mut rng);
    assert_eq!(net.hidden_names(), ["h1", "h2"], "sorted by layer");
    let x = randn_on(dev, &[4, 6], &mut rng);
    let y = labels(4, 3, &mut rng);
    check_injection(&mut net, &x, &y, &mut rng);
    Ok(())
}

fn injected_gradients_match_central_differences_cnn(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(4);
    let mut net = small_cnn(dev, &mut rng);
    // A flat [B, 36] input is viewed as [B, 1, 6, 6]; the 4-D rep c1 is reported [B, 8].
    let x = uniform_on(dev, &[3, 36], 0.0, 1.0, &mut rng);
    let y = labels(3, 3, &mut rng);
    let pass = net.forward(&x, Mode::Train).unwrap();
    assert_eq!(pass.get("c1").unwrap().shape(), &[3, 8]);
    check_injection(&mut net, &x, &y, &mut rng);
    Ok(())
}

fn injected_gradients_match_central_differences_after_insertion(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(5);
    let mut net = small_cnn(dev, &mut rng);
    // A linear layer after the 4-D representation sees it as [B, 8].
    let extra = Linear::new(8, 8, DType::F64, dev, &mut rng).unwrap();
    net.insert_after("c1", Box::new(extra)).unwrap();
    let x = uniform_on(dev, &[3, 1, 6, 6], 0.0, 1.0, &mut rng);
    let y = labels(3, 3, &mut rng);
    check_injection(&mut net, &x, &y, &mut rng);
    Ok(())
}

#[test]
fn injections_are_validated() {
    let mut rng = Rng::new(6);
    let mut net = small_mlp(&Device::Cpu, &mut rng);
    let x = randn(&[4, 6], &mut rng);
    let gz = randn(&[4, 3], &mut rng);
    assert!(matches!(
        net.backward(&gz, &[]),
        Err(NnError::BackwardBeforeForward { .. })
    ));
    net.forward(&x, Mode::Train).unwrap();
    let err = net
        .backward(&gz, &[("nope".into(), randn(&[4, 5], &mut rng))])
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("nope") && msg.contains("h1, h2"), "{msg}");
    net.forward(&x, Mode::Train).unwrap();
    let err = net
        .backward(&gz, &[("h1".into(), randn(&[4, 4], &mut rng))])
        .unwrap_err();
    assert!(matches!(err, NnError::ShapeMismatch { .. }), "{err}");
    let wrong_input = randn(&[4, 5], &mut rng);
    assert!(net.forward(&wrong_input, Mode::Train).is_err());
}

#[test]
fn constructor_rejects_bad_representations() {
    let seq = || {
        Sequential::new()
            .with(Linear::new(2, 2, DType::F64, &Device::Cpu, &mut Rng::new(0)).unwrap())
    };
    assert!(Network::new(seq(), vec![("a".into(), 1)], &[2]).is_err());
    assert!(Network::new(seq(), vec![("a".into(), 0), ("a".into(), 0)], &[2]).is_err());
    assert!(Network::new(seq(), vec![], &[]).is_err());
}

/// Records the input shape it sees and doubles its input.
#[derive(Debug)]
struct Spy(Arc<Mutex<Vec<Vec<usize>>>>);

impl Layer for Spy {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.0.lock().unwrap().push(x.shape().to_vec());
        Ok(x.scale(2.0)?)
    }
    fn backward(&mut self, g: &Tensor) -> Result<Tensor> {
        Ok(g.scale(2.0)?)
    }
    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        Ok(dx.scale(2.0)?)
    }
    fn backward_tangent(&mut self, dg: &Tensor) -> Result<Tensor> {
        Ok(dg.scale(2.0)?)
    }
    fn name(&self) -> &str {
        "spy"
    }
}

#[test]
fn insertion_goes_right_after_the_named_representation() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(8);
    let x = Tensor::rand_uniform(&[2, 784], 0.0, 1.0, DType::F32, &mut rng, &dev).unwrap();

    // MLP: after fc2 (the tanh at index 3) comes the spy at index 4.
    let mut mlp = Network::mlp(&mut rng, DType::F32, &dev).unwrap();
    let before = mlp.forward(&x, Mode::Eval).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    mlp.insert_after("fc2", Box::new(Spy(seen.clone())))
        .unwrap();
    let names: Vec<&str> = mlp.sequential().layers().iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        [
            "linear", "tanh", "linear", "tanh", "spy", "linear", "tanh", "linear"
        ]
    );
    assert_eq!(mlp.hidden_layer_index("fc2").unwrap(), 3);
    assert_eq!(mlp.hidden_layer_index("fc3").unwrap(), 6);
    let after = mlp.forward(&x, Mode::Eval).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), [vec![2, 1000]]);
    // fc1, fc2 (the spy's input) are unchanged; fc3 and the logits see the doubled fc2.
    for name in ["fc1", "fc2"] {
        assert_eq!(
            vals(&before.get(name).unwrap().to_dtype(DType::F64).unwrap()),
            vals(&after.get(name).unwrap().to_dtype(DType::F64).unwrap()),
        );
    }
    assert_ne!(
        vals(&before.get("fc3").unwrap().to_dtype(DType::F64).unwrap()),
        vals(&after.get("fc3").unwrap().to_dtype(DType::F64).unwrap()),
    );
    assert_eq!(mlp.params().len(), 8);

    // CNN: conv2 is the flattened second block, so the inserted layer sees [B, 800]; after
    // the 4-D conv1 it sees [B, 2704].
    let mut cnn = Network::cnn(&mut rng, DType::F32, &dev).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    cnn.insert_after("conv2", Box::new(Spy(seen.clone())))
        .unwrap();
    cnn.insert_after("conv1", Box::new(Spy(seen.clone())))
        .unwrap();
    let pass = cnn.forward(&x, Mode::Eval).unwrap();
    assert_eq!(pass.logits.shape(), &[2, 10]);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [vec![2, 2704], vec![2, 800]]
    );
    let names: Vec<&str> = cnn.sequential().layers().iter().map(|l| l.name()).collect();
    assert_eq!(names[3], "spy");
    assert_eq!(names[8], "spy");
    let (_, gz) = softmax_cross_entropy(&pass.logits, &[1, 2]).unwrap();
    assert_eq!(cnn.backward(&gz, &[]).unwrap().shape(), &[2, 784]);

    // Unknown names list the valid ones.
    let err = cnn
        .insert_after("conv3", Box::new(Spy(seen.clone())))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("conv3") && msg.contains("conv1, conv2, fc1"),
        "{msg}"
    );
}

fn input_gradient_matches_central_differences_and_keeps_parameter_gradients(
    dev: &Device,
) -> Result<()> {
    let mut rng = Rng::new(9);
    for mode in [Mode::Train, Mode::Eval] {
        let mut net = small_cnn(dev, &mut rng);
        let x = uniform_on(dev, &[3, 1, 6, 6], 0.0, 1.0, &mut rng);
        let y = labels(3, 3, &mut rng);
        // Some gradients already accumulated must survive untouched.
        net.zero_grad();
        let pass = net.forward(&x, mode).unwrap();
        let (_, gz) = softmax_cross_entropy(&pass.logits, &y).unwrap();
        net.backward(&gz.scale(3.0).unwrap(), &[]).unwrap();
        let before: Vec<Vec<f64>> = net
            .params()
            .iter()
            .map(|p| vals(p.grad.as_ref().unwrap()))
            .collect();

        let (loss, gx) = net.input_gradient(&x, &y, mode).unwrap();
        let loss = loss.to_scalar().unwrap();
        let want_loss = {
            let pass = net.forward(&x, mode).unwrap();
            softmax_cross_entropy(&pass.logits, &y)
                .unwrap()
                .0
                .to_scalar()
                .unwrap()
        };
        assert!((loss - want_loss).abs() < 1e-12);
        let fd = fd_grad(&x, |xp| {
            let pass = net.forward(xp, mode).unwrap();
            softmax_cross_entropy(&pass.logits, &y)
                .unwrap()
                .0
                .to_scalar()
                .unwrap()
        });
        assert_close_tol("∂L/∂x", &vals(&gx), &fd, tol(dev));
        let after: Vec<Vec<f64>> = net
            .params()
            .iter()
            .map(|p| vals(p.grad.as_ref().unwrap()))
            .collect();
        assert_eq!(before, after);
    }
    Ok(())
}

#[test]
fn insertion_keeps_batchnorm_buffers_in_the_state_dict() {
    let mut rng = Rng::new(3);
    let mut net = specreg_nn::Network::shallow(&mut rng, DType::F32, &Device::Cpu).unwrap();
    let names = |n: &specreg_nn::Network| -> Vec<String> {
        n.sequential()
            .state_dict()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    let before = names(&net);
    assert!(before.contains(&"2.running_mean".to_string()), "{before:?}");
    net.insert_after("hidden", Box::new(specreg_nn::Tanh::new()))
        .unwrap();
    let after = names(&net);
    // BatchNorm stays at index 2 (the new layer goes after it), and its buffers survive the
    // wrapping that insertion does; the final Linear moves from index 3 to 4.
    assert!(after.contains(&"2.running_var".to_string()), "{after:?}");
    assert!(
        after.contains(&"2.num_batches_tracked".to_string()),
        "{after:?}"
    );
    assert!(after.contains(&"4.weight".to_string()), "{after:?}");
    assert_eq!(before.len(), after.len());
}

#[test]
fn backward_params_gives_backwards_parameter_gradients_bit_for_bit() {
    // Training's backward skips the first layer's input gradient; every parameter
    // gradient must be exactly what the full backward gives, injections included.
    let dev = Device::Cpu;
    for build in [small_mlp, small_cnn] {
        let mut rng = Rng::new(3);
        let mut net = build(&dev, &mut rng);
        let per: usize = net.input_shape().iter().product();
        let x = Tensor::rand_uniform(&[5, per], 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap();
        let k = net.forward(&x, Mode::Train).unwrap().logits.shape()[1];
        let y = labels(5, k, &mut rng);
        let grads = |net: &mut Network, full: bool| -> Vec<Vec<f64>> {
            net.zero_grad();
            let pass = net.forward(&x, Mode::Train).unwrap();
            let (_, gz) = softmax_cross_entropy(&pass.logits, &y).unwrap();
            let (name, h) = &pass.hidden[0];
            let inj = vec![(name.clone(), h.scale(0.5).unwrap())];
            if full {
                net.backward(&gz, &inj).unwrap();
            } else {
                net.backward_params(&gz, &inj).unwrap();
            }
            net.params()
                .iter()
                .map(|p| p.grad.as_ref().unwrap().to_vec::<f64>().unwrap())
                .collect()
        };
        let full = grads(&mut net, true);
        let params_only = grads(&mut net, false);
        assert_eq!(full, params_only);
    }
}

#[test]
fn backward_tangent_params_gives_backward_tangents_parameter_tangents_bit_for_bit() {
    // The Jacobian regulariser skips the first layer's R{∂L/∂x}; every parameter tangent
    // must be exactly what the full tangent backward gives.
    let dev = Device::Cpu;
    for build in [small_mlp, small_cnn] {
        let mut rng = Rng::new(4);
        let mut net = build(&dev, &mut rng);
        let per: usize = net.input_shape().iter().product();
        let mut shape = vec![5];
        shape.extend_from_slice(net.input_shape());
        let x = Tensor::rand_uniform(&shape, 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap();
        let dx = Tensor::randn(&shape, 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap();
        assert_eq!(dx.elem_count(), 5 * per);
        let tangents = |net: &mut Network, full: bool| -> Vec<Vec<f64>> {
            let seq = net.sequential_mut();
            for p in seq.params_mut() {
                p.grad_tangent = None;
            }
            let z = seq.forward(&x, Mode::Train).unwrap();
            let k = z.shape()[1];
            let y: Vec<usize> = (0..5).map(|i| i % k).collect();
            let (_, gz) = softmax_cross_entropy(&z, &y).unwrap();
            seq.backward(&gz).unwrap();
            let rz = seq.forward_tangent(&dx).unwrap();
            if full {
                seq.backward_tangent(&rz).unwrap();
            } else {
                seq.backward_tangent_params(&rz).unwrap();
            }
            seq.params()
                .iter()
                .map(|p| p.grad_tangent.as_ref().unwrap().to_vec::<f64>().unwrap())
                .collect()
        };
        let full = tangents(&mut net, true);
        let params_only = tangents(&mut net, false);
        assert!(!full.is_empty());
        assert_eq!(full, params_only);
    }
}

#[test]
fn backward_merged_is_the_backward_plus_s_times_the_tangent_backward() {
    // With m = g + s·r: the input gradient must be ∂/∂x(g) + s R{∂/∂x}(r) and every
    // parameter gradient ∂/∂θ(g) + s R{∂/∂θ}(r), where the tangent runs along dx through
    // the upstream gradient u of the preceding backward pass. Dense, tanh and conv layers
    // have their own merged passes; BatchNorm, max-pooling and flatten the default.
    let dev = Device::Cpu;
    let s = 0.37;
    for build in [small_mlp, small_cnn] {
        let mut rng = Rng::new(11);
        let mut net = build(&dev, &mut rng);
        let mut shape = vec![5];
        shape.extend_from_slice(net.input_shape());
        let x = Tensor::rand_uniform(&shape, 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap();
        let dx = Tensor::randn(&shape, 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap();
        let seq = net.sequential_mut();
        let k = seq.forward(&x, Mode::Train).unwrap().shape()[1];
        let [u, g, r] =
            [0; 3].map(|_| Tensor::randn(&[5, k], 0.0, 1.0, DType::F64, &mut rng, &dev).unwrap());
        let grads = |seq: &Sequential| -> Vec<Vec<f64>> {
            seq.params()
                .iter()
                .map(|p| p.grad.as_ref().unwrap().to_vec::<f64>().unwrap())
                .collect()
        };

        // Separately: the tangent backward of r, then the backward of g.
        seq.zero_grad();
        seq.forward(&x, Mode::Train).unwrap();
        seq.backward_input(&u).unwrap();
        seq.forward_tangent(&dx).unwrap();
        let r_in = vals(&seq.backward_tangent(&r).unwrap());
        let tangents: Vec<Vec<f64>> = seq
            .params()
            .iter()
            .map(|p| p.grad_tangent.as_ref().unwrap().to_vec::<f64>().unwrap())
            .collect();
        let g_in = vals(&seq.backward(&g).unwrap());
        let want_in: Vec<f64> = g_in.iter().zip(&r_in).map(|(a, b)| a + s * b).collect();
        let want: Vec<Vec<f64>> = grads(seq)
            .iter()
            .zip(&tangents)
            .map(|(a, t)| a.iter().zip(t).map(|(a, t)| a + s * t).collect())
            .collect();

        for params_only in [false, true] {
            seq.zero_grad();
            seq.forward(&x, Mode::Train).unwrap();
            seq.backward_input(&u).unwrap();
            seq.forward_tangent(&dx).unwrap();
            let m = g.add(&r.scale(s).unwrap()).unwrap();
            if params_only {
                seq.backward_merged_params(&m, s).unwrap();
            } else {
                let got_in = vals(&seq.backward_merged(&m, s).unwrap());
                assert_close_tol("merged ∂/∂x", &got_in, &want_in, 1e-12);
            }
            assert!(seq.params().iter().all(|p| p.grad_tangent.is_none()));
            for (i, (got, want)) in grads(seq).iter().zip(&want).enumerate() {
                assert_close_tol(&format!("merged ∂/∂θ[{i}]"), got, want, 1e-12);
            }
        }
    }
}
