//! Initialisation, BatchNorm statistics, call-order and shape errors, f32.

mod common;

use common::{assert_close, randn, tensor, vals};
use specreg_nn::{
    BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, NnError, Param, Relu, Sequential,
    Tanh,
};
use specreg_tensor::{DType, Device, Rng};

const CPU: Device = Device::Cpu;

#[test]
fn pytorch_default_init_bounds_and_seeding() {
    let lin = Linear::new(16, 5, DType::F64, &CPU, &mut Rng::new(1)).unwrap();
    let w = vals(&lin.weight().value);
    let b = vals(&lin.bias().value);
    assert_eq!((lin.in_features(), lin.out_features()), (16, 5));
    assert_eq!((w.len(), b.len()), (80, 5));
    assert!(w.iter().chain(&b).all(|v| v.abs() <= 0.25));
    assert!(w.iter().any(|v| v.abs() > 0.2), "uses the whole range");
    let again = Linear::new(16, 5, DType::F64, &CPU, &mut Rng::new(1)).unwrap();
    assert_eq!(vals(&again.weight().value), w);
    let other = Linear::new(16, 5, DType::F64, &CPU, &mut Rng::new(2)).unwrap();
    assert_ne!(vals(&other.weight().value), w);

    let conv = Conv2d::new(4, 3, (3, 3), DType::F32, &CPU, &mut Rng::new(1)).unwrap();
    assert_eq!(conv.weight().value.shape(), &[3, 4, 3, 3]);
    assert_eq!(conv.bias().value.dtype(), DType::F32);
    let bound = 1.0 / 36f64.sqrt();
    let cw = conv.weight().value.to_vec::<f32>().unwrap();
    assert!(cw.iter().all(|v| (v.abs() as f64) <= bound));
    assert!(Linear::new(0, 3, DType::F64, &CPU, &mut Rng::new(0)).is_err());
}

#[test]
fn batch_norm_statistics_follow_pytorch() {
    let mut bn = BatchNorm1d::new(2, DType::F64, &CPU).unwrap();
    let x = tensor(vec![1.0, 2.0, 3.0, 6.0, 5.0, 10.0], &[3, 2]);
    let y = bn.forward(&x, Mode::Train).unwrap();
    // Batch mean [3, 6], biased variance [8/3, 32/3], unbiased [4, 16].
    let eps = BatchNorm1d::EPS;
    let (s0, s1) = ((8.0 / 3.0 + eps).sqrt(), (32.0 / 3.0 + eps).sqrt());
    let want = [-2.0 / s0, -4.0 / s1, 0.0, 0.0, 2.0 / s0, 4.0 / s1];
    assert_close("train output", &vals(&y), &want);
    assert_close("running mean", &vals(bn.running_mean()), &[0.3, 0.6]);
    assert_close("running var", &vals(bn.running_var()), &[1.3, 2.5]);
    assert_eq!(bn.num_batches_tracked(), 1);

    let y = bn.forward(&x, Mode::Eval).unwrap();
    let (r0, r1) = ((1.3f64 + eps).sqrt(), (2.5f64 + eps).sqrt());
    let want = [0.7 / r0, 1.4 / r1, 2.7 / r0, 5.4 / r1, 4.7 / r0, 9.4 / r1];
    assert_close("eval output", &vals(&y), &want);
    assert_eq!(
        bn.num_batches_tracked(),
        1,
        "eval leaves the statistics alone"
    );

    let one = tensor(vec![1.0, 2.0], &[1, 2]);
    assert!(matches!(
        bn.forward(&one, Mode::Train),
        Err(NnError::InvalidArgument { .. })
    ));
    assert!(bn.forward(&one, Mode::Eval).is_ok());
}

#[test]
fn passes_out_of_order_are_errors() {
    let mut rng = Rng::new(3);
    let mut lin = Linear::new(3, 2, DType::F64, &CPU, &mut rng).unwrap();
    let g = randn(&[4, 2], &mut rng);
    let err = lin.backward(&g).unwrap_err();
    assert!(matches!(err, NnError::BackwardBeforeForward { .. }));
    assert!(err.to_string().contains("linear"), "{err}");

    let x = randn(&[4, 3], &mut rng);
    lin.forward(&x, Mode::Train).unwrap();
    lin.forward_tangent(&x).unwrap();
    let err = lin.backward_tangent(&g).unwrap_err();
    assert!(
        matches!(
            err,
            NnError::OutOfOrder {
                needs: "backward",
                ..
            }
        ),
        "{err}"
    );

    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Tanh::new()),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::new()),
        Box::new(Flatten::new()),
        Box::new(BatchNorm1d::new(2, DType::F64, &CPU).unwrap()),
    ];
    for mut l in layers {
        let x = if l.name() == "max_pool2d" || l.name() == "flatten" {
            randn(&[2, 1, 2, 2], &mut rng)
        } else {
            randn(&[3, 2], &mut rng)
        };
        assert!(l.backward(&x).is_err(), "{} backward first", l.name());
        assert!(l.forward_tangent(&x).is_err(), "{} tangent first", l.name());
        let y = l.forward(&x, Mode::Train).unwrap();
        let err = l.backward_tangent(&y).unwrap_err();
        assert!(
            matches!(err, NnError::OutOfOrder { .. }),
            "{}: {err}",
            l.name()
        );
    }
}

#[test]
fn shape_errors_name_the_layer() {
    let mut rng = Rng::new(4);
    let mut lin = Linear::new(3, 2, DType::F64, &CPU, &mut rng).unwrap();
    let err = lin
        .forward(&randn(&[4, 5], &mut rng), Mode::Eval)
        .unwrap_err();
    assert!(matches!(err, NnError::ShapeMismatch { .. }));
    assert!(err.to_string().contains("[B, 3]"), "{err}");
    let mut conv = Conv2d::new(2, 1, (3, 3), DType::F64, &CPU, &mut rng).unwrap();
    assert!(
        conv.forward(&randn(&[1, 2, 2, 5], &mut rng), Mode::Eval)
            .is_err()
    );
    assert!(
        conv.forward(&randn(&[1, 3, 4, 4], &mut rng), Mode::Eval)
            .is_err()
    );
    let mut p = Param::new("w", randn(&[2, 2], &mut rng));
    assert!(p.accumulate_grad(randn(&[2, 3], &mut rng)).is_err());
    let mut bn = BatchNorm1d::new(2, DType::F64, &CPU).unwrap();
    assert!(bn.forward(&randn(&[4, 3], &mut rng), Mode::Eval).is_err());
    assert!(
        bn.set_running_stats(randn(&[3], &mut rng), randn(&[2], &mut rng), 0)
            .is_err()
    );
}

#[test]
fn empty_sequential_is_the_identity() {
    let mut net = Sequential::new();
    assert!(net.is_empty());
    let x = randn(&[2, 3], &mut Rng::new(0));
    assert_eq!(vals(&net.forward(&x, Mode::Train).unwrap()), vals(&x));
    assert_eq!(vals(&net.backward(&x).unwrap()), vals(&x));
    assert!(net.params().is_empty());
}
