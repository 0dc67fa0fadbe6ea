//! Numerical guards of the regularisers in training: a whitening Cholesky factorisation
//! that fails on a rank-deficient batch, an eigendecomposition of a NaN covariance, a dead
//! layer whose anchor eigenvalue `λ_τ` is 0, a non-finite penalty term and an overflowing
//! Jacobian penalty. Each stops training before the optimiser step with an error naming the
//! layer, the step and the quantity, and counts as a numerical failure of the run.

use ndarray::Array2;
use specreg_nn::{
    Adam, AdamConfig, Layer, Linear, Network, NnError, NonFiniteQuantity, Sequential, Tanh,
    TrainHook, train_epoch,
};
use specreg_regularizers::{
    EigenMode, JacobianKind, JacobianRegularizer, RegularizerError, SpectralLayer,
    SpectralRegularizer, Whitening, is_numerical_failure,
};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// `5 → 7, tanh, 7 → 3` in `f64`; representation `h` is the tanh output.
fn tiny_net(seed: u64) -> Network {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let seq = Sequential::new()
        .with(Linear::new(5, 7, DType::F64, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(7, 3, DType::F64, &dev, &mut rng).unwrap());
    Network::new(seq, vec![("h".into(), 1)], &[5]).unwrap()
}

fn images(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.normal() as f32)
}

fn labels(rows: usize) -> Vec<u8> {
    (0..rows).map(|i| (i % 3) as u8).collect()
}

fn bits(net: &Network) -> Vec<Vec<u64>> {
    net.params()
        .iter()
        .map(|p| {
            p.value
                .to_vec::<f64>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}

fn set(net: &mut Network, k: usize, value: f64) {
    let p = &mut net.params_mut()[k];
    p.value = p.value.full_like(value, p.value.shape()).unwrap();
}

/// The step and the error under an [`NnError::AtStep`].
fn at_step(err: &NnError) -> ((usize, usize, u64), &NnError) {
    match err {
        NnError::AtStep {
            epoch,
            batch,
            step,
            source,
        } => ((*epoch, *batch, *step), source),
        other => panic!("expected AtStep, got {other}"),
    }
}

fn regularizer_error(e: &NnError) -> &RegularizerError {
    let NnError::Hook(inner) = e else {
        panic!("not a hook error: {e}");
    };
    inner
        .downcast_ref::<RegularizerError>()
        .unwrap_or_else(|| panic!("not a regulariser error: {e}"))
}

#[test]
fn whitening_a_rank_deficient_batch_names_the_layer_pivot_and_step() {
    // `h = (x0, x0, x1)`: two equal columns. Over this batch x0 has mean 0 and unbiased
    // variance exactly 1, so the covariance's leading 2×2 block is all ones; with ε below
    // half an ulp of 1 the second pivot is (1 + ε) − 1 = 0 exactly.
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    let mut first = Linear::new(2, 3, DType::F64, &dev, &mut rng).unwrap();
    first.params_mut()[0].value =
        Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0], &[3, 2], &dev).unwrap();
    first.params_mut()[1].value = Tensor::zeros(&[3], DType::F64, &dev).unwrap();
    let seq = Sequential::new()
        .with(first)
        .with(Tanh::new())
        .with(Linear::new(3, 3, DType::F64, &dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("h".into(), 0)], &[2]).unwrap();
    let w = Whitening::new("h", 3, 1e-20)
        .unwrap()
        .on(DType::F64, &dev)
        .unwrap();
    net.insert_after("h", Box::new(w)).unwrap();
    let x = Array2::from_shape_vec(
        (5, 2),
        vec![1.0, 0.5, -1.0, 0.25, 1.0, -0.5, -1.0, 0.0, 0.0, -0.25],
    )
    .unwrap();
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let before = bits(&net);
    let err = train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(5),
        &[vec![0, 1, 2, 3, 4]],
        2,
        &mut specreg_nn::NoHook,
    )
    .unwrap_err();
    let (at, source) = at_step(&err);
    assert_eq!(at, (2, 0, 0), "{err}");
    match source {
        NnError::NotPositiveDefinite { layer, pivot } => {
            assert_eq!(layer, "whitening of h");
            assert_eq!(*pivot, 1);
        }
        other => panic!("expected NotPositiveDefinite, got {other}"),
    }
    assert!(
        err.to_string().starts_with(
            "training stopped at epoch 2, batch 0 (step 0): whitening of h: covariance is not \
             positive definite (Cholesky failed at pivot 1)"
        ),
        "{err}"
    );
    assert!(is_numerical_failure(&err));
    assert_eq!(bits(&net), before);
    assert_eq!(adam.steps_taken(), 0);
}

#[test]
fn the_exact_eigendecomposition_of_a_nan_covariance_is_traced_to_its_layer() {
    let mut net = tiny_net(3);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let layer = SpectralLayer {
        tau: 2,
        ..SpectralLayer::new("h", 1.0)
    };
    let mut spec = SpectralRegularizer::new(vec![layer], EigenMode::Exact).unwrap();
    let x = images(12, 5, 4);
    let batches = vec![(0..6).collect::<Vec<_>>(), (6..12).collect()];
    train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(12),
        &batches,
        0,
        &mut spec,
    )
    .unwrap();
    // A NaN first-layer bias: every entry of h, so of its batch covariance, is NaN.
    set(&mut net, 1, f64::NAN);
    let before = bits(&net);
    // The CPU eigensolver returns NaN eigenpairs for a NaN matrix rather than failing: the
    // penalty's λ_τ is NaN, which on its own would only say that `h` is not finite.
    let h = Tensor::from_array(x.slice(ndarray::s![0..6, ..]).mapv(f64::from));
    let pass = net.forward(&h, specreg_nn::Mode::Train).unwrap();
    let value = specreg_regularizers::exact_penalty(pass.get("h").unwrap(), 1.0, 2).unwrap();
    assert!(value.lambda_tau.to_vec::<f64>().unwrap()[0].is_nan());
    // Training names the layer where the NaN starts, at its step.
    let err = train_epoch(
        &mut net,
        &mut adam,
        x.view(),
        &labels(12),
        &batches,
        1,
        &mut spec,
    )
    .unwrap_err();
    match &err {
        NnError::NonFinite {
            epoch: 1,
            batch: 0,
            step: 2,
            quantity: NonFiniteQuantity::Activation { layer, count, of },
            seen: Some(seen),
        } => {
            assert_eq!(layer, "0.linear (before h)");
            assert_eq!((*count, *of), (42, 42));
            assert_eq!(seen, "the cross-entropy is NaN");
        }
        other => panic!("expected a non-finite layer output, got {other}"),
    }
    assert!(is_numerical_failure(&err));
    assert_eq!(bits(&net), before);
}

#[test]
fn a_failed_eigendecomposition_is_a_numerical_failure_naming_layer_and_matrix() {
    // What a solver that does not converge (cuSOLVER's `syevd` with info > 0) becomes.
    let e = RegularizerError::EigenFailed {
        layer: "fc3".into(),
        matrix: "batch covariance",
        n: 1000,
    };
    let err = NnError::from(e).at_step(4, 17, 177);
    assert_eq!(
        err.to_string(),
        "training stopped at epoch 4, batch 17 (step 177): fc3: the eigendecomposition of the \
         batch covariance (1000×1000) failed to converge"
    );
    assert!(is_numerical_failure(&err));
    let misuse = NnError::from(RegularizerError::RefreshRequired {
        layer: "fc3".into(),
    });
    assert!(!is_numerical_failure(&misuse.at_step(0, 0, 0)));
}

#[test]
fn a_refresh_over_a_nan_representation_names_the_layer_and_the_epoch() {
    let mut net = tiny_net(5);
    set(&mut net, 0, f64::NAN);
    let mut spec =
        SpectralRegularizer::new(vec![SpectralLayer::new("h", 1.0)], EigenMode::Projected).unwrap();
    let err = spec
        .refresh(&mut net, images(20, 5, 6).view(), 10)
        .unwrap_err();
    assert!(
        matches!(&err, RegularizerError::NonFiniteCovariance { representation } if representation == "h"),
        "{err}"
    );
    // What the runner makes of it: the epoch it was preparing and the steps taken so far.
    let err = NnError::from(err).before_epoch(3, 120);
    assert_eq!(
        err.to_string(),
        "training stopped before epoch 3 (step 120): covariance of h: the representation holds \
         NaN or infinite values"
    );
    assert!(is_numerical_failure(&err));
}

#[test]
fn a_dead_layer_with_zero_anchor_eigenvalue_names_the_layer_and_step() {
    for mode in [EigenMode::Projected, EigenMode::Exact] {
        let mut net = tiny_net(7);
        let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
        let layer = SpectralLayer {
            tau: 2,
            ..SpectralLayer::new("h", 1.0)
        };
        let mut spec = SpectralRegularizer::new(vec![layer], mode).unwrap();
        let x = images(18, 5, 8);
        let batches: Vec<Vec<usize>> = (0..3).map(|b| (6 * b..6 * b + 6).collect()).collect();
        spec.refresh(&mut net, x.view(), 18).unwrap();
        train_epoch(
            &mut net,
            &mut adam,
            x.view(),
            &labels(18),
            &batches,
            0,
            &mut spec,
        )
        .unwrap();
        // Zero weights and biases: h = tanh(0) = 0 for every sample, every eigenvalue 0.
        set(&mut net, 0, 0.0);
        set(&mut net, 1, 0.0);
        spec.refresh(&mut net, x.view(), 18).unwrap();
        let before = bits(&net);
        let err = train_epoch(
            &mut net,
            &mut adam,
            x.view(),
            &labels(18),
            &batches,
            1,
            &mut spec,
        )
        .unwrap_err();
        let (at, source) = at_step(&err);
        assert_eq!(at, (1, 0, 3), "{mode:?}: {err}");
        assert!(
            matches!(
                regularizer_error(source),
                RegularizerError::RankBelowTau { layer, tau: 2, lambda_tau }
                    if layer == "h" && *lambda_tau == 0.0
            ),
            "{mode:?}: {err}"
        );
        assert!(
            err.to_string().starts_with(
                "training stopped at epoch 1, batch 0 (step 3): spectral regulariser of h: \
                 λ_τ = λ_2 = 0 is not positive"
            ),
            "{mode:?}: {err}"
        );
        assert!(is_numerical_failure(&err));
        assert_eq!(bits(&net), before, "{mode:?}");
        assert_eq!(adam.steps_taken(), 3, "{mode:?}");
    }
}

#[test]
fn a_non_finite_penalty_with_a_valid_anchor_is_named() {
    let mut net = tiny_net(9);
    let layer = SpectralLayer {
        tau: 2,
        ..SpectralLayer::new("h", 1.0)
    };
    let mut spec = SpectralRegularizer::new(vec![layer], EigenMode::Projected)
        .unwrap()
        .with_diagnostic(false);
    let x = images(20, 5, 10);
    spec.refresh(&mut net, x.view(), 20).unwrap();
    let input = Tensor::from_array(x.mapv(f64::from));
    let pass = net.forward(&input, specreg_nn::Mode::Train).unwrap();
    let out = spec.regularize(&pass, &[]).unwrap();
    assert_eq!(out.scalars.len(), 2, "R and λ_τ");
    // A valid λ_τ with an infinite R (as an overflowing ratio λ_n/γ_n gives).
    let err = spec.observe(&[f64::INFINITY, 0.25]).unwrap_err();
    assert!(
        matches!(
            regularizer_error(&err),
            RegularizerError::NonFiniteTerm { layer, value, step: 0 }
                if layer == "h" && *value == f64::INFINITY
        ),
        "{err}"
    );
    assert!(is_numerical_failure(&err.at_step(0, 0, 0)));
}

#[test]
fn an_overflowing_jacobian_penalty_is_named_as_the_jacobian_penalty() {
    let mut net = tiny_net(11);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    // β B overflows to ∞, so P = ∞ while the cross-entropy stays finite.
    let jac = JacobianRegularizer::new(JacobianKind::InputLoss { beta: f64::MAX }).unwrap();
    let before = bits(&net);
    let err = jac
        .train_epoch(
            &mut net,
            &mut adam,
            images(8, 5, 12).view(),
            &labels(8),
            &[(0..4).collect(), (4..8).collect()],
            5,
            &mut Rng::new(0),
        )
        .unwrap_err();
    let err = NnError::from(err);
    match &err {
        NnError::NonFinite {
            epoch: 5,
            batch: 0,
            step: 0,
            quantity: NonFiniteQuantity::Loss { term, value },
            seen: None,
        } => {
            assert_eq!(term, "the Jacobian penalty");
            assert_eq!(*value, f64::INFINITY);
        }
        other => panic!("expected a non-finite Jacobian penalty, got {other}"),
    }
    assert!(is_numerical_failure(&err));
    assert_eq!(bits(&net), before);
}

#[test]
fn a_nan_weight_under_the_jacobian_penalty_names_the_layer() {
    let mut net = tiny_net(13);
    set(&mut net, 2, f64::NAN); // the last layer's weight
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let jac = JacobianRegularizer::new(JacobianKind::InputLoss { beta: 0.01 }).unwrap();
    let err = jac
        .train_epoch(
            &mut net,
            &mut adam,
            images(8, 5, 14).view(),
            &labels(8),
            &[(0..8).collect()],
            0,
            &mut Rng::new(0),
        )
        .unwrap_err();
    let err = NnError::from(err);
    match &err {
        NnError::NonFinite {
            quantity: NonFiniteQuantity::Activation { layer, count, of },
            seen: Some(seen),
            ..
        } => {
            assert_eq!(layer, "2.linear (logits)");
            assert_eq!((*count, *of), (24, 24));
            assert_eq!(seen, "the cross-entropy is NaN");
        }
        other => panic!("expected a non-finite layer output, got {other}"),
    }
}
