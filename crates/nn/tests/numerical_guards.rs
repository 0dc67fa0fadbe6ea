//! The training loop's numerical guards: each case injects a real fault (a NaN weight, a
//! NaN input, an overflowing input scale or learning rate, a NaN or infinite regulariser
//! term or injected gradient) and checks that training stops before the optimiser step
//! with the error naming the epoch, batch and global step, the quantity and the layer.

use ndarray::Array2;
use specreg_nn::{
    Adam, AdamConfig, ForwardPass, HookOutput, Linear, Mode, Network, NnError, NonFiniteQuantity,
    Relu, Result, Sequential, Tanh, train_epoch,
};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// `6 → 5, tanh, 5 → 4, tanh, 4 → 3` in `dtype`; representations `h1` (layer 1) and `h2`
/// (layer 3). With `relu`, ReLU replaces tanh.
fn net(seed: u64, dtype: DType, relu: bool) -> Network {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let mut seq = Sequential::new().with(Linear::new(6, 5, dtype, &dev, &mut rng).unwrap());
    let act = |seq: Sequential| {
        if relu {
            seq.with(Relu::new())
        } else {
            seq.with(Tanh::new())
        }
    };
    seq = act(seq).with(Linear::new(5, 4, dtype, &dev, &mut rng).unwrap());
    seq = act(seq).with(Linear::new(4, 3, dtype, &dev, &mut rng).unwrap());
    Network::new(seq, vec![("h1".into(), 1), ("h2".into(), 3)], &[6]).unwrap()
}

fn images(rows: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, 6), |_| rng.uniform(0.0, 1.0) as f32)
}

fn labels(rows: usize) -> Vec<u8> {
    (0..rows).map(|i| (i % 3) as u8).collect()
}

/// Every parameter's bits (NaN-safe equality).
fn bits(net: &Network) -> Vec<Vec<u64>> {
    net.params()
        .iter()
        .map(|p| {
            let v = p
                .value
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec::<f64>()
                .unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        })
        .collect()
}

/// The fields of a [`NnError::NonFinite`], or a panic naming what came instead.
fn non_finite(err: &NnError) -> (usize, usize, u64, &NonFiniteQuantity, Option<&str>) {
    match err {
        NnError::NonFinite {
            epoch,
            batch,
            step,
            quantity,
            seen,
        } => (*epoch, *batch, *step, quantity, seen.as_deref()),
        other => panic!("expected NonFinite, got {other}"),
    }
}

const TWO_BATCHES: [[usize; 4]; 2] = [[0, 1, 2, 3], [4, 5, 6, 7]];

fn batches() -> Vec<Vec<usize>> {
    TWO_BATCHES.iter().map(|b| b.to_vec()).collect()
}

#[test]
fn a_nan_weight_names_the_first_layer_whose_output_is_not_finite() {
    let mut net = net(1, DType::F64, false);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let (x, y) = (images(8, 2), labels(8));
    // One clean epoch (steps 0 and 1), then a NaN in the second linear layer's weight.
    let mut hook = specreg_nn::NoHook;
    train_epoch(&mut net, &mut adam, x.view(), &y, &batches(), 0, &mut hook).unwrap();
    let mut w = net.params()[2].value.to_vec::<f64>().unwrap();
    w[0] = f64::NAN; // row 0 of [4, 5]: output unit 0 of layer 2 for every sample
    net.params_mut()[2].value = Tensor::from_vec(w, &[4, 5], &Device::Cpu).unwrap();
    let before = bits(&net);
    let err = train_epoch(&mut net, &mut adam, x.view(), &y, &batches(), 1, &mut hook).unwrap_err();
    let (epoch, batch, step, quantity, seen) = non_finite(&err);
    assert_eq!((epoch, batch, step), (1, 0, 2), "{err}");
    assert_eq!(
        quantity,
        &NonFiniteQuantity::Activation {
            layer: "2.linear (before h2)".into(),
            count: 4,
            of: 16,
        }
    );
    assert_eq!(seen, Some("the cross-entropy is NaN"));
    assert_eq!(
        err.to_string(),
        "training stopped at epoch 1, batch 0 (step 2): output of layer 2.linear (before h2) \
         has 4 non-finite values of 16 (the first layer whose output is not finite); the \
         step saw the cross-entropy is NaN"
    );
    assert_eq!(bits(&net), before, "no optimiser step after the failure");
    assert_eq!(adam.steps_taken(), 2);
    assert!(err.is_numerical());
}

#[test]
fn a_nan_input_is_named_as_the_input_at_its_batch() {
    let mut net = net(3, DType::F64, false);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let mut x = images(8, 4);
    x[[5, 2]] = f32::NAN;
    x[[6, 0]] = f32::INFINITY;
    let err = train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(8),
        &batches(),
        0,
        &mut specreg_nn::NoHook,
    )
    .unwrap_err();
    let (epoch, batch, step, quantity, _) = non_finite(&err);
    assert_eq!((epoch, batch, step), (0, 1, 1), "{err}");
    assert_eq!(quantity, &NonFiniteQuantity::Input { count: 2, of: 24 });
    assert_eq!(adam.steps_taken(), 1, "the first batch's step was taken");
}

#[test]
fn an_overflowing_input_scale_names_the_first_layer_that_overflows() {
    let mut net = net(5, DType::F32, true);
    let mut adam = Adam::new(AdamConfig::new(1e-3)).unwrap();
    // Inputs near f32::MAX / 2, and a first-layer unit whose weights sum to 3: its
    // pre-activation overflows for every sample (other units may too).
    let x = images(8, 6).mapv(|v| (v + 1.0) * 0.85e38);
    let mut w = net.params()[0].value.to_vec::<f32>().unwrap();
    w[..6].iter_mut().for_each(|v| *v = 0.5);
    net.params_mut()[0].value = Tensor::from_vec(w, &[5, 6], &Device::Cpu).unwrap();
    // The first batch forwarded layer by layer, independently: the first output with a
    // NaN or an infinity, and how many it holds.
    let mut h = Tensor::from_array(x.slice(ndarray::s![0..4, ..]).to_owned());
    let mut expected = None;
    for (i, layer) in net.sequential_mut().layers_mut().iter_mut().enumerate() {
        h = layer.forward(&h, Mode::Train).unwrap();
        let v = h.to_vec::<f32>().unwrap();
        let count = v.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            expected = Some((i, count, v.len()));
            break;
        }
    }
    let (index, count, of) = expected.expect("the scale must overflow in some layer");
    let names = [
        "0.linear (before h1)",
        "1.relu (h1)",
        "2.linear (before h2)",
        "3.relu (h2)",
        "4.linear (logits)",
    ];
    assert!(
        names[index].contains("linear"),
        "an overflow starts in a sum"
    );
    let before = bits(&net);
    let err = train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(8),
        &batches(),
        0,
        &mut specreg_nn::NoHook,
    )
    .unwrap_err();
    let (epoch, batch, step, quantity, seen) = non_finite(&err);
    assert_eq!((epoch, batch, step), (0, 0, 0), "{err}");
    assert_eq!(
        quantity,
        &NonFiniteQuantity::Activation {
            layer: names[index].into(),
            count,
            of,
        }
    );
    assert!(seen.is_some(), "{err}");
    assert_eq!(bits(&net), before);
}

#[test]
fn a_huge_learning_rate_stops_at_the_step_that_overflows() {
    let mut net = net(7, DType::F32, true);
    let mut adam = Adam::new(AdamConfig::new(1e37)).unwrap();
    let x = images(16, 8);
    let batches: Vec<Vec<usize>> = (0..4).map(|b| (4 * b..4 * b + 4).collect()).collect();
    let err = train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(16),
        &batches,
        0,
        &mut specreg_nn::NoHook,
    )
    .unwrap_err();
    let (epoch, batch, step, quantity, seen) = non_finite(&err);
    // The first step is finite (Adam moves each weight by about lr); a later one is not.
    assert!(batch >= 1, "{err}");
    assert_eq!((epoch, step), (0, batch as u64), "{err}");
    assert_eq!(adam.steps_taken(), batch as u64);
    match quantity {
        NonFiniteQuantity::Activation { layer, count, of } => {
            assert!(layer.contains("linear"), "{err}");
            assert!(*count > 0 && count <= of, "{err}");
            assert!(seen.is_some(), "{err}");
        }
        other => panic!("expected a layer output, got {other}"),
    }
}

#[test]
fn a_nan_injected_gradient_names_the_first_parameter_it_reaches() {
    let mut net = net(9, DType::F64, false);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let before = bits(&net);
    let mut hook = |pass: &ForwardPass, _: &[usize]| -> Result<HookOutput> {
        let h = pass.get("h1").unwrap();
        Ok(HookOutput {
            extra: Some(Tensor::zeros(&[], DType::F64, &Device::Cpu)?),
            injections: vec![("h1".into(), h.full_like(f64::NAN, h.shape())?)],
            scalars: Vec::new(),
        })
    };
    let err = train_epoch(
        &mut net,
        &mut adam,
        images(8, 10).view(),
        &labels(8),
        &batches(),
        3,
        &mut hook,
    )
    .unwrap_err();
    let (epoch, batch, step, quantity, seen) = non_finite(&err);
    assert_eq!((epoch, batch, step), (3, 0, 0));
    // ∂R/∂h1 reaches layer 0 only; its weight [5, 6] comes first in network order.
    assert_eq!(
        quantity,
        &NonFiniteQuantity::Gradient {
            parameter: "0.weight".into(),
            layer: "0.linear (before h1)".into(),
            count: 30,
            of: 30,
        }
    );
    assert_eq!(seen, None, "every activation is finite");
    assert!(
        err.to_string().ends_with(
            "(step 0): gradient of 0.weight (layer 0.linear (before h1)) has 30 non-finite \
             values of 30"
        ),
        "{err}"
    );
    assert_eq!(bits(&net), before);
}

#[test]
fn an_infinite_regulariser_term_is_named_with_its_value() {
    let mut net = net(11, DType::F64, false);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let mut calls = 0;
    let mut hook = |_: &ForwardPass, _: &[usize]| -> Result<HookOutput> {
        calls += 1;
        let v = if calls == 2 { f64::INFINITY } else { 0.5 };
        Ok(HookOutput {
            extra: Some(Tensor::full(v, &[], DType::F64, &Device::Cpu)?),
            ..HookOutput::default()
        })
    };
    let err = train_epoch(
        &mut net,
        &mut adam,
        images(8, 12).view(),
        &labels(8),
        &batches(),
        7,
        &mut hook,
    )
    .unwrap_err();
    let (epoch, batch, step, quantity, seen) = non_finite(&err);
    assert_eq!((epoch, batch, step), (7, 1, 1));
    assert_eq!(
        quantity,
        &NonFiniteQuantity::Loss {
            term: "the regulariser loss".into(),
            value: f64::INFINITY,
        }
    );
    assert_eq!(seen, None);
    assert!(
        err.to_string().ends_with("the regulariser loss is inf"),
        "{err}"
    );
    assert_eq!(adam.steps_taken(), 1);
}

#[derive(Debug, thiserror::Error)]
#[error("the hook refused batch {0}")]
struct Refused(usize);

#[test]
fn an_error_inside_a_step_comes_back_with_the_step() {
    let mut net = net(13, DType::F64, false);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let mut calls = 0;
    let mut hook = |_: &ForwardPass, _: &[usize]| -> Result<HookOutput> {
        calls += 1;
        if calls == 2 {
            return Err(NnError::Hook(Box::new(Refused(calls))));
        }
        Ok(HookOutput::default())
    };
    let err = train_epoch(
        &mut net,
        &mut adam,
        images(8, 14).view(),
        &labels(8),
        &batches(),
        4,
        &mut hook,
    )
    .unwrap_err();
    match &err {
        NnError::AtStep {
            epoch: 4,
            batch: 1,
            step: 1,
            source,
        } => assert_eq!(source.to_string(), "the hook refused batch 2"),
        other => panic!("expected AtStep, got {other}"),
    }
    assert_eq!(
        err.to_string(),
        "training stopped at epoch 4, batch 1 (step 1): the hook refused batch 2"
    );
    let NnError::Hook(inner) = err.innermost() else {
        panic!("innermost is not the hook's error: {err}");
    };
    assert_eq!(inner.downcast_ref::<Refused>().map(|r| r.0), Some(2));
    assert!(
        !err.is_numerical(),
        "a hook's own error is the hook's to classify"
    );
}

#[test]
fn wrappers_keep_their_step_and_tell_numerical_failures() {
    let pd = NnError::NotPositiveDefinite {
        layer: "whitening of fc2".into(),
        pivot: 3,
    };
    let at = pd.at_step(2, 5, 37);
    assert_eq!(
        at.to_string(),
        "training stopped at epoch 2, batch 5 (step 37): whitening of fc2: covariance is not \
         positive definite (Cholesky failed at pivot 3)"
    );
    assert!(at.is_numerical());
    // A second wrapping keeps the first step.
    let again = at.at_step(9, 9, 99).before_epoch(9, 99);
    assert!(
        again
            .to_string()
            .starts_with("training stopped at epoch 2, batch 5 (step 37)")
    );
    let eig =
        NnError::Tensor(specreg_tensor::Error::EigenNoConvergence { n: 4 }).before_epoch(3, 12);
    assert!(
        eig.to_string()
            .starts_with("training stopped before epoch 3 (step 12): "),
        "{eig}"
    );
    assert!(eig.is_numerical());
    let shape = NnError::InvalidArgument {
        what: "x".into(),
        reason: "y".into(),
    }
    .at_step(0, 0, 0);
    assert!(!shape.is_numerical());
    assert!(matches!(shape.innermost(), NnError::InvalidArgument { .. }));
}
