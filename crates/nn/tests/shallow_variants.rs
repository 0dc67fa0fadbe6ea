//! The shallow network without BatchNorm (the reference's exp-1 vanilla net and the
//! paper's appendix variant).

use specreg_nn::{Mode, Network};
use specreg_tensor::{DType, Device, Rng, Tensor};

#[test]
fn shallow_without_batchnorm_shares_the_linear_layers_of_the_same_seed() {
    let dev = Device::Cpu;
    let with = Network::shallow(&mut Rng::new(7), DType::F32, &dev).unwrap();
    let without = Network::shallow_without_batchnorm(&mut Rng::new(7), DType::F32, &dev).unwrap();
    let count =
        |net: &Network| -> usize { net.params().iter().map(|p| p.value.elem_count()).sum() };
    assert_eq!(count(&without), 784 * 2000 + 2000 + 2000 * 10 + 10);
    assert_eq!(count(&with) - count(&without), 2 * 2000);
    // First and last linear layers: identical values.
    let (pw, pwo) = (with.params(), without.params());
    assert_eq!(
        pw[0].value.to_vec::<f32>().unwrap(),
        pwo[0].value.to_vec::<f32>().unwrap()
    );
    assert_eq!(
        pw[pw.len() - 2].value.to_vec::<f32>().unwrap(),
        pwo[pwo.len() - 2].value.to_vec::<f32>().unwrap()
    );
    assert_eq!(without.hidden_names(), ["hidden"]);
}

#[test]
fn shallow_without_batchnorm_hidden_is_tanh_of_the_first_layer() {
    let dev = Device::Cpu;
    let mut net = Network::shallow_without_batchnorm(&mut Rng::new(3), DType::F64, &dev).unwrap();
    let x = Tensor::from_array(ndarray::Array2::<f64>::from_shape_fn((3, 784), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f64 / 10.0
    }));
    let pass = net.forward(&x, Mode::Eval).unwrap();
    let h = pass.get("hidden").unwrap().to_vec::<f64>().unwrap();
    let p = net.params();
    let (w, b) = (
        p[0].value.to_vec::<f64>().unwrap(),
        p[1].value.to_vec::<f64>().unwrap(),
    );
    let xs = x.to_vec::<f64>().unwrap();
    // Naive reference for one unit of each sample; the weight is [out, in] (PyTorch layout).
    for i in 0..3 {
        for unit in [0usize, 999, 1999] {
            let z: f64 = (0..784)
                .map(|k| xs[i * 784 + k] * w[unit * 784 + k])
                .sum::<f64>()
                + b[unit];
            assert!((h[i * 2000 + unit] - z.tanh()).abs() < 1e-12);
        }
    }
    assert_eq!(pass.logits.shape(), &[3, 10]);
}
