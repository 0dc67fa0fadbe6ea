//! Adam against the closed form of `torch.optim.Adam`, computed by hand in `f64`.
//!
//! The expected numbers come from the update in `specreg_nn::Adam`'s docs, evaluated in
//! Python floats. This PyTorch snippet reproduces them (to the last printed digit):
//!
//! ```python
//! import torch
//! torch.set_default_dtype(torch.float64)
//! a = torch.tensor([1.0, -2.0], requires_grad=True)
//! b = torch.tensor([0.5], requires_grad=True)
//! opt = torch.optim.Adam([a, b], lr=0.1, amsgrad=True)   # amsgrad=False / weight_decay=0.1
//! grads = [([1.0, -2.0], [0.3]), ([0.01, 0.5], [-0.2]), ([0.001, -3.0], [0.0])]
//! for ga, gb in grads:
//!     a.grad, b.grad = torch.tensor(ga), torch.tensor(gb)
//!     opt.step()
//!     print(a.tolist(), b.tolist())
//! ```

use specreg_nn::{Adam, AdamConfig, Layer, Linear, Mode, NnError, Param, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor};

const GRADS: [([f64; 2], [f64; 1]); 3] = [
    ([1.0, -2.0], [0.3]),
    ([0.01, 0.5], [-0.2]),
    ([0.001, -3.0], [0.0]),
];

/// `[a0, a1, b0]` after steps 1, 2, 3 with amsgrad (lr 0.1, PyTorch's other defaults).
const AMSGRAD: [[f64; 3]; 3] = [
    [0.900000001, -1.9000000005, 0.4000000033333332],
    [0.8322835510128204, -1.8530531837013349, 0.3855479509285968],
    [0.7799008367689837, -1.7798487394007878, 0.37438205976781797],
];

/// The same without amsgrad: the first coordinate's second moment falls at step 2 and the
/// second parameter's at step 3, so those differ from [`AMSGRAD`].
const PLAIN: [[f64; 3]; 3] = [
    [0.900000001, -1.9000000005, 0.4000000033333332],
    [0.832253058026447, -1.8530531837013349, 0.3855479509285968],
    [0.779820559085047, -1.7798487394007878, 0.37437647263180446],
];

/// amsgrad with `weight_decay = 0.1`.
const WEIGHT_DECAY: [[f64; 3]; 3] = [
    [0.9000000009090909, -1.9000000004545454, 0.40000000285714277],
    [0.8265291876063311, -1.8440383758493375, 0.37001620534575724],
    [0.7650694699030356, -1.766895355784006, 0.34082578184909146],
];

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

fn problem(dtype: DType) -> Vec<Param> {
    vec![
        Param::new("a", t64(&[1.0, -2.0], &[2]).to_dtype(dtype).unwrap()),
        Param::new("b", t64(&[0.5], &[1]).to_dtype(dtype).unwrap()),
    ]
}

fn set_grads(ps: &mut [Param], step: usize) {
    let dtype = ps[0].value.dtype();
    let (ga, gb) = GRADS[step];
    ps[0].grad = Some(t64(&ga, &[2]).to_dtype(dtype).unwrap());
    ps[1].grad = Some(t64(&gb, &[1]).to_dtype(dtype).unwrap());
}

fn values(ps: &[Param]) -> Vec<f64> {
    ps.iter()
        .flat_map(|p| {
            p.value
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec::<f64>()
                .unwrap()
        })
        .collect()
}

fn run(config: AdamConfig, dtype: DType) -> Vec<Vec<f64>> {
    let mut ps = problem(dtype);
    let mut adam = Adam::new(config).unwrap();
    let mut out = Vec::new();
    for s in 0..3 {
        set_grads(&mut ps, s);
        adam.step(&mut ps.iter_mut().collect::<Vec<_>>()).unwrap();
        out.push(values(&ps));
    }
    assert_eq!(adam.steps_taken(), 3);
    out
}

fn assert_trajectory(got: &[Vec<f64>], want: &[[f64; 3]; 3], tol: f64) {
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "step {}, coordinate {k}: got {a}, want {b}",
                s + 1
            );
        }
    }
}

#[test]
fn amsgrad_matches_closed_form() {
    assert_trajectory(&run(AdamConfig::new(0.1), DType::F64), &AMSGRAD, 1e-14);
}

#[test]
fn plain_adam_matches_closed_form_and_amsgrad_matters() {
    let config = AdamConfig {
        amsgrad: false,
        ..AdamConfig::new(0.1)
    };
    let got = run(config, DType::F64);
    assert_trajectory(&got, &PLAIN, 1e-14);
    // The maximum of the second moment changed the update where it fell.
    assert!((AMSGRAD[1][0] - PLAIN[1][0]).abs() > 1e-5);
    assert!((AMSGRAD[2][2] - PLAIN[2][2]).abs() > 1e-6);
}

#[test]
fn weight_decay_matches_closed_form() {
    let config = AdamConfig {
        weight_decay: 0.1,
        ..AdamConfig::new(0.1)
    };
    assert_trajectory(&run(config, DType::F64), &WEIGHT_DECAY, 1e-14);
}

#[test]
fn f32_follows_the_same_trajectory() {
    assert_trajectory(&run(AdamConfig::new(0.1), DType::F32), &AMSGRAD, 1e-6);
    for p in problem(DType::F32) {
        assert_eq!(p.value.dtype(), DType::F32);
    }
}

#[test]
fn defaults_are_pytorchs_with_amsgrad() {
    let c = AdamConfig::new(1e-3);
    assert_eq!(
        c,
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: true
        }
    );
    assert_eq!(Adam::new(c).unwrap().config(), &c);
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let base = AdamConfig::new(0.1);
    let cases = [
        ("lr", AdamConfig { lr: 0.0, ..base }),
        ("lr", AdamConfig { lr: -1.0, ..base }),
        (
            "lr",
            AdamConfig {
                lr: f64::NAN,
                ..base
            },
        ),
        (
            "lr",
            AdamConfig {
                lr: f64::INFINITY,
                ..base
            },
        ),
        ("beta1", AdamConfig { beta1: 1.0, ..base }),
        (
            "beta1",
            AdamConfig {
                beta1: -0.1,
                ..base
            },
        ),
        ("beta2", AdamConfig { beta2: 1.5, ..base }),
        (
            "beta2",
            AdamConfig {
                beta2: f64::NAN,
                ..base
            },
        ),
        ("eps", AdamConfig { eps: 0.0, ..base }),
        ("eps", AdamConfig { eps: -1e-8, ..base }),
        (
            "weight_decay",
            AdamConfig {
                weight_decay: -0.1,
                ..base
            },
        ),
    ];
    for (field, c) in cases {
        let err = Adam::new(c).unwrap_err();
        assert!(
            matches!(&err, NnError::InvalidArgument { what, .. } if what.ends_with(field)),
            "{c:?}: {err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
    // The boundary values PyTorch accepts are fine.
    Adam::new(AdamConfig {
        beta1: 0.0,
        beta2: 0.0,
        ..base
    })
    .unwrap();
}

#[test]
fn a_parameter_without_gradient_is_skipped() {
    let mut ps = problem(DType::F64);
    let mut adam = Adam::new(AdamConfig::new(0.1)).unwrap();
    ps[0].grad = Some(t64(&GRADS[0].0, &[2]));
    adam.step(&mut ps.iter_mut().collect::<Vec<_>>()).unwrap();
    assert_eq!(values(&ps)[2], 0.5, "b had no gradient");
    assert_eq!((adam.param_step(0), adam.param_step(1)), (1, 0));
    // b's first update is then a step-1 update (its own bias correction), as in PyTorch.
    ps[0].grad = None;
    ps[1].grad = Some(t64(&GRADS[0].1, &[1]));
    adam.step(&mut ps.iter_mut().collect::<Vec<_>>()).unwrap();
    assert_eq!((adam.param_step(0), adam.param_step(1)), (1, 1));
    let v = values(&ps);
    assert!((v[2] - AMSGRAD[0][2]).abs() < 1e-14);
    assert!((v[0] - AMSGRAD[0][0]).abs() < 1e-14);
    assert_eq!(adam.steps_taken(), 2);
}

#[test]
fn changing_the_parameters_between_steps_is_an_error() {
    let mut ps = problem(DType::F64);
    let mut adam = Adam::new(AdamConfig::new(0.1)).unwrap();
    set_grads(&mut ps, 0);
    adam.step(&mut ps.iter_mut().collect::<Vec<_>>()).unwrap();

    // One parameter fewer.
    let err = adam.step(&mut [&mut ps[0]]).unwrap_err();
    assert!(matches!(err, NnError::OptimizerState { .. }), "{err}");

    // A parameter of another shape: the error names it, nothing changes.
    let before = values(&ps);
    let mut other = problem(DType::F64);
    other[1] = Param::new("b_wide", t64(&[0.5, 0.5], &[2]));
    other[1].grad = Some(t64(&[1.0, 1.0], &[2]));
    other[0].grad = Some(t64(&[1.0, 1.0], &[2]));
    let err = adam
        .step(&mut other.iter_mut().collect::<Vec<_>>())
        .unwrap_err();
    assert!(err.to_string().contains("b_wide"), "{err}");
    assert_eq!(values(&other)[..2], [1.0, -2.0], "no partial update");
    assert_eq!(adam.steps_taken(), 1);

    // A gradient of the wrong shape names the parameter too.
    ps[0].grad = Some(t64(&[1.0], &[1]));
    let err = adam
        .step(&mut ps.iter_mut().collect::<Vec<_>>())
        .unwrap_err();
    assert!(err.to_string().contains("(a)"), "{err}");
    assert_eq!(values(&ps), before);

    // The original parameters still step, continuing the trajectory.
    set_grads(&mut ps, 1);
    adam.step(&mut ps.iter_mut().collect::<Vec<_>>()).unwrap();
    for (g, w) in values(&ps).iter().zip(AMSGRAD[1]) {
        assert!((g - w).abs() < 1e-14, "got {g}, want {w}");
    }
}

#[test]
fn trains_a_sequential_through_params_mut() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(7);
    let mut net = Sequential::new()
        .with(Linear::new(4, 16, DType::F32, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(16, 3, DType::F32, &dev, &mut rng).unwrap());
    let x = Tensor::randn(&[24, 4], 0.0, 1.0, DType::F32, &mut rng, &dev).unwrap();
    let labels: Vec<usize> = (0..24).map(|i| i % 3).collect();
    let mut adam = Adam::new(AdamConfig::new(0.05)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..50 {
        net.zero_grad();
        let z = net.forward(&x, Mode::Train).unwrap();
        let (loss, gz) = specreg_nn::loss::softmax_cross_entropy(&z, &labels).unwrap();
        net.backward(&gz).unwrap();
        losses.push(loss.to_scalar().unwrap());
        adam.step(&mut net.params_mut()).unwrap();
    }
    assert!(losses[49] < 0.5 * losses[0], "{losses:?}");
    assert_eq!(adam.param_step(3), 50);
}
