//! The fuzz targets' entry functions (`fuzz/fuzz_targets/checkpoint_*.rs`, `optimizer.rs`):
//! each accepts a real file, and every input kept under `tests/fuzz_regressions/<target>/`
//! (one that once panicked or allocated without bound) is now a typed error.

use std::path::{Path, PathBuf};

use specreg_nn::{Adam, AdamConfig, Layer, Mode, Network, NnError, checkpoint_bytes};
use specreg_nn::{load_checkpoint_bytes, load_optimizer_bytes, optimizer_bytes};
use specreg_tensor::{DType, Device, Rng, Tensor};

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn networks() -> Vec<(&'static str, Network)> {
    let dev = Device::Cpu;
    vec![
        (
            "shallow",
            Network::shallow(&mut Rng::new(1), DType::F32, &dev).unwrap(),
        ),
        (
            "mlp",
            Network::mlp(&mut Rng::new(2), DType::F32, &dev).unwrap(),
        ),
        (
            "cnn",
            Network::cnn(&mut Rng::new(3), DType::F32, &dev).unwrap(),
        ),
    ]
}

#[test]
fn each_network_loads_a_real_checkpoint() {
    for (name, net) in networks() {
        let meta = [("specreg".to_string(), format!("{{\"net\":\"{name}\"}}"))].into();
        let bytes = checkpoint_bytes(name, net.sequential(), &meta).unwrap();
        let mut other = networks().into_iter().find(|(n, _)| *n == name).unwrap().1;
        let mut fresh = Network::shallow(&mut Rng::new(9), DType::F32, &Device::Cpu).unwrap();
        let got = load_checkpoint_bytes(&bytes, "real.safetensors", other.sequential_mut());
        assert_eq!(got.unwrap(), meta, "{name}");
        let want = net.sequential().state_dict();
        for ((n, a), (_, b)) in want.iter().zip(other.sequential().state_dict()) {
            assert_eq!(a.to_vec::<f32>().ok(), b.to_vec::<f32>().ok(), "{name} {n}");
        }
        if name != "shallow" {
            let err = load_checkpoint_bytes(&bytes, "real.safetensors", fresh.sequential_mut());
            assert!(err.is_err(), "{name} loaded into the shallow network");
        }
    }
}

#[test]
fn a_real_optimizer_state_loads() {
    let (_, mut net) = networks().remove(1);
    let mut adam = Adam::new(AdamConfig::new(1e-3)).unwrap();
    let x = Tensor::randn(
        &[4, 784],
        0.0,
        1.0,
        DType::F32,
        &mut Rng::new(5),
        &Device::Cpu,
    );
    let seq = net.sequential_mut();
    seq.zero_grad();
    let z = seq.forward(&x.unwrap(), Mode::Train).unwrap();
    let (_, gz) = specreg_nn::loss::softmax_cross_entropy(&z, &[0, 1, 2, 3]).unwrap();
    seq.backward(&gz).unwrap();
    adam.step(&mut seq.params_mut()).unwrap();
    let bytes = optimizer_bytes("real", &adam).unwrap();
    let mut again = Adam::new(AdamConfig::new(0.5)).unwrap();
    load_optimizer_bytes(&bytes, "real.safetensors", &mut again).unwrap();
    assert_eq!(again.state_metadata(), adam.state_metadata());
    assert_eq!(again.param_step(0), 1);
}

#[test]
fn huge_num_params_is_refused_before_anything_is_sized_from_it() {
    let file = &regressions("optimizer")[0];
    assert!(file.ends_with("huge-num-params.safetensors"));
    let mut adam = Adam::new(AdamConfig::new(1e-3)).unwrap();
    // Once a `vec![None; num_params]` of 10^15 slots: an abort, not an error.
    let err = load_optimizer_bytes(&std::fs::read(file).unwrap(), file, &mut adam).unwrap_err();
    assert!(matches!(&err, NnError::OptimizerState { param, .. } if param == "num_params"));
    assert!(
        err.to_string()
            .contains("1000000000000000 exceeds the limit of 65536"),
        "{err}"
    );
    assert_eq!(
        adam.state_metadata().get("num_params"),
        None,
        "adam changed"
    );
}

#[test]
fn non_canonical_index_is_an_unexpected_tensor() {
    let file = &regressions("optimizer")[1];
    assert!(file.ends_with("non-canonical-index.safetensors"));
    let mut adam = Adam::new(AdamConfig::new(1e-3)).unwrap();
    let err = load_optimizer_bytes(&std::fs::read(file).unwrap(), file, &mut adam).unwrap_err();
    assert!(
        matches!(&err, NnError::UnexpectedTensor { name } if name == "+0.exp_avg"),
        "{err}"
    );
}
