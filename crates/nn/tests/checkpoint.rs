//! Model and optimiser checkpoints: bit-exact round trips, PyTorch names and shapes,
//! typed errors, atomic writes, and resuming training exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use specreg_nn::{
    Adam, AdamConfig, BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, NnError, Relu,
    Sequential, Tanh, checkpoint_bytes, load_checkpoint, load_checkpoint_bytes, load_optimizer,
    optimizer_bytes, save_checkpoint, save_optimizer,
};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// A fresh, empty folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "specreg-nn-checkpoint-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mlp(hidden: usize, dtype: DType, seed: u64) -> Sequential {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    Sequential::new()
        .with(Linear::new(6, hidden, dtype, &dev, &mut rng).unwrap())
        .with(BatchNorm1d::new(hidden, dtype, &dev).unwrap())
        .with(Tanh::new())
        .with(Linear::new(hidden, 3, dtype, &dev, &mut rng).unwrap())
}

fn cnn(seed: u64) -> Sequential {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    Sequential::new()
        .with(Conv2d::new(1, 4, (3, 3), DType::F32, &dev, &mut rng).unwrap())
        .with(Relu::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(36, 3, DType::F32, &dev, &mut rng).unwrap())
}

fn batch(shape: &[usize], dtype: DType, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let x = Tensor::randn(shape, 0.0, 1.0, dtype, &mut rng, &Device::Cpu).unwrap();
    let labels = (0..shape[0]).map(|i| (i * 7 + 1) % 3).collect();
    (x, labels)
}

/// One Adam step on the cross-entropy (BatchNorm updates its running statistics).
fn train_step(net: &mut Sequential, adam: &mut Adam, x: &Tensor, labels: &[usize]) {
    net.zero_grad();
    let z = net.forward(x, Mode::Train).unwrap();
    let (_, gz) = specreg_nn::loss::softmax_cross_entropy(&z, labels).unwrap();
    net.backward(&gz).unwrap();
    adam.step(&mut net.params_mut()).unwrap();
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .to_vec::<f64>()
        .unwrap()
        .into_iter()
        .map(f64::to_bits)
        .collect()
}

fn meta() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("seed".to_string(), "1".to_string()),
        ("commit".to_string(), "abc123".to_string()),
    ])
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn mlp_with_batchnorm_round_trips_bit_for_bit() {
    let dir = scratch("mlp");
    let path = dir.join("model.safetensors");
    let mut net = mlp(8, DType::F32, 1);
    let mut adam = Adam::new(AdamConfig::new(0.01)).unwrap();
    let (x, labels) = batch(&[16, 6], DType::F32, 3);
    for _ in 0..3 {
        train_step(&mut net, &mut adam, &x, &labels);
    }
    save_checkpoint(&path, &net, &meta()).unwrap();
    assert_eq!(names(&dir), ["model.safetensors"], "no .tmp left behind");

    let mut fresh = mlp(8, DType::F32, 99);
    let (probe, _) = batch(&[5, 6], DType::F32, 4);
    let want = net.forward(&probe, Mode::Eval).unwrap();
    assert_ne!(
        bits(&fresh.forward(&probe, Mode::Eval).unwrap()),
        bits(&want)
    );
    let got_meta = load_checkpoint(&path, &mut fresh).unwrap();
    assert_eq!(got_meta, meta());
    assert_eq!(
        bits(&fresh.forward(&probe, Mode::Eval).unwrap()),
        bits(&want)
    );
    for ((n1, a), (n2, b)) in net.state_dict().iter().zip(fresh.state_dict().iter()) {
        assert_eq!(n1, n2);
        assert_eq!(bits(a), bits(b), "{n1}");
    }
    assert_eq!(fresh.buffers()[2].0, "1.num_batches_tracked");
    assert_eq!(fresh.buffers()[2].1.to_scalar().unwrap(), 3.0);

    // Overwriting an existing checkpoint is fine and still leaves no .tmp.
    save_checkpoint(&path, &fresh, &BTreeMap::new()).unwrap();
    assert_eq!(names(&dir), ["model.safetensors"]);
    assert!(load_checkpoint(&path, &mut net).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_cnn_round_trips_bit_for_bit() {
    let dir = scratch("cnn");
    let path = dir.join("cnn.safetensors");
    let mut net = cnn(1);
    let mut adam = Adam::new(AdamConfig::new(0.01)).unwrap();
    let (x, labels) = batch(&[4, 1, 8, 8], DType::F32, 5);
    for _ in 0..2 {
        train_step(&mut net, &mut adam, &x, &labels);
    }
    save_checkpoint(&path, &net, &meta()).unwrap();
    let mut fresh = cnn(2);
    let want = net.forward(&x, Mode::Eval).unwrap();
    assert_ne!(bits(&fresh.forward(&x, Mode::Eval).unwrap()), bits(&want));
    load_checkpoint(&path, &mut fresh).unwrap();
    assert_eq!(bits(&fresh.forward(&x, Mode::Eval).unwrap()), bits(&want));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_has_exactly_pytorchs_names_shapes_and_dtypes() {
    let dir = scratch("names");
    let path = dir.join("m.safetensors");
    save_checkpoint(&path, &mlp(8, DType::F32, 1), &meta()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut got: Vec<(String, Vec<usize>, Dtype)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.dtype()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    let want: Vec<(String, Vec<usize>, Dtype)> = [
        ("0.bias", vec![8], Dtype::F32),
        ("0.weight", vec![8, 6], Dtype::F32),
        ("1.bias", vec![8], Dtype::F32),
        ("1.num_batches_tracked", vec![], Dtype::I64),
        ("1.running_mean", vec![8], Dtype::F32),
        ("1.running_var", vec![8], Dtype::F32),
        ("1.weight", vec![8], Dtype::F32),
        ("3.bias", vec![3], Dtype::F32),
        ("3.weight", vec![3, 8], Dtype::F32),
    ]
    .into_iter()
    .map(|(n, s, d)| (n.to_string(), s, d))
    .collect();
    assert_eq!(got, want);
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let m = header.metadata().as_ref().unwrap();
    assert_eq!(m.get("commit").map(String::as_str), Some("abc123"));
    // The BatchNorm count is the little-endian int64 0 of a fresh layer.
    assert_eq!(st.tensor("1.num_batches_tracked").unwrap().data(), [0u8; 8]);

    // A CNN: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    // nn.Linear(36, 3)).
    let names: Vec<(String, Vec<usize>)> = cnn(1)
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let want = [
        ("0.weight", vec![4, 1, 3, 3]),
        ("0.bias", vec![4]),
        ("4.weight", vec![3, 36]),
        ("4.bias", vec![3]),
    ]
    .map(|(n, s)| (n.to_string(), s));
    assert_eq!(names, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_into_another_architecture_names_the_tensor() {
    let dir = scratch("shape");
    let path = dir.join("m.safetensors");
    save_checkpoint(&path, &mlp(8, DType::F32, 1), &meta()).unwrap();

    let mut wider = mlp(9, DType::F32, 2);
    let before = wider.state_dict();
    let err = load_checkpoint(&path, &mut wider).unwrap_err();
    match &err {
        NnError::TensorShape {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "0.weight");
            assert_eq!(expected, &[9, 6]);
            assert_eq!(found, &[8, 6]);
        }
        e => panic!("expected a shape error, got {e}"),
    }
    assert!(err.to_string().contains("0.weight"), "{err}");
    for ((_, a), (_, b)) in before.iter().zip(wider.state_dict().iter()) {
        assert_eq!(bits(a), bits(b), "the model is unchanged");
    }

    let mut longer = mlp(8, DType::F32, 2)
        .with(Linear::new(3, 2, DType::F32, &Device::Cpu, &mut Rng::new(0)).unwrap());
    let err = load_checkpoint(&path, &mut longer).unwrap_err();
    assert!(
        matches!(&err, NnError::MissingTensor { name } if name == "4.weight"),
        "{err}"
    );

    let dev = Device::Cpu;
    let mut shorter = Sequential::new()
        .with(Linear::new(6, 8, DType::F32, &dev, &mut Rng::new(0)).unwrap())
        .with(BatchNorm1d::new(8, DType::F32, &dev).unwrap());
    let err = load_checkpoint(&path, &mut shorter).unwrap_err();
    assert!(
        matches!(&err, NnError::UnexpectedTensor { name } if name == "3.bias"),
        "{err}"
    );

    let mut double = mlp(8, DType::F64, 2);
    let err = load_checkpoint(&path, &mut double).unwrap_err();
    assert!(
        matches!(&err, NnError::TensorDType { name, expected, found }
            if name == "0.weight" && expected == "F64" && found == "F32"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_truncated_and_missing_files_are_typed_errors() {
    let dir = scratch("corrupt");
    let path = dir.join("m.safetensors");
    save_checkpoint(&path, &mlp(8, DType::F32, 1), &meta()).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not a safetensors file").unwrap();
    let tiny = dir.join("tiny.safetensors");
    std::fs::write(&tiny, b"\x01\x02").unwrap();
    let mut header = bytes.clone();
    header[10] = b'#';
    let bad_json = dir.join("bad_json.safetensors");
    std::fs::write(&bad_json, &header).unwrap();

    for p in [&truncated, &garbage, &tiny, &bad_json] {
        let mut net = mlp(8, DType::F32, 2);
        let err = load_checkpoint(p, &mut net).unwrap_err();
        assert!(matches!(err, NnError::CorruptFile { .. }), "{p:?}: {err}");
        let file = p.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(file), "{err}");
        let err = load_optimizer(p, &mut Adam::new(AdamConfig::new(0.1)).unwrap()).unwrap_err();
        assert!(matches!(err, NnError::CorruptFile { .. }), "{p:?}: {err}");
    }

    let missing = dir.join("missing.safetensors");
    let err = load_checkpoint(&missing, &mut mlp(8, DType::F32, 2)).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");

    // Saving into a folder that does not exist fails cleanly.
    let nowhere = dir.join("no/such/dir/m.safetensors");
    let err = save_checkpoint(&nowhere, &mlp(8, DType::F32, 1), &meta()).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_from_model_and_optimizer_checkpoints_is_bit_exact() {
    let dir = scratch("resume");
    let model_path = dir.join("model.safetensors");
    let optim_path = dir.join("optim.safetensors");
    let (x, labels) = batch(&[16, 6], DType::F32, 3);

    let mut net = mlp(8, DType::F32, 1);
    let mut adam = Adam::new(AdamConfig::new(0.01)).unwrap();
    for _ in 0..3 {
        train_step(&mut net, &mut adam, &x, &labels);
    }
    save_checkpoint(&model_path, &net, &meta()).unwrap();
    save_optimizer(&optim_path, &adam).unwrap();
    assert_eq!(names(&dir), ["model.safetensors", "optim.safetensors"]);

    // A fresh model (another seed) and a fresh optimiser (another config).
    let mut net2 = mlp(8, DType::F32, 42);
    let mut adam2 = Adam::new(AdamConfig {
        amsgrad: false,
        ..AdamConfig::new(0.5)
    })
    .unwrap();
    load_checkpoint(&model_path, &mut net2).unwrap();
    load_optimizer(&optim_path, &mut adam2).unwrap();
    assert_eq!(adam2.config(), adam.config());
    assert_eq!(adam2.steps_taken(), 3);
    assert_eq!(adam2.param_step(0), 3);

    for _ in 0..2 {
        train_step(&mut net, &mut adam, &x, &labels);
        train_step(&mut net2, &mut adam2, &x, &labels);
    }
    let (a, b) = (net.state_dict(), net2.state_dict());
    assert_eq!(a.len(), b.len());
    for ((name, t1), (_, t2)) in a.iter().zip(b.iter()) {
        assert_eq!(bits(t1), bits(t2), "{name} differs after resuming");
    }
    assert_eq!(adam2.steps_taken(), 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The header's metadata goes in sorted, so the same state always gives the same bytes
/// (safetensors alone writes it in a `HashMap`'s per-process random order).
#[test]
fn the_same_state_gives_the_same_file_bytes() {
    let (x, labels) = batch(&[16, 6], DType::F32, 3);
    let mut net = mlp(8, DType::F32, 1);
    let mut adam = Adam::new(AdamConfig::new(0.01)).unwrap();
    train_step(&mut net, &mut adam, &x, &labels);
    let mut many = meta();
    for i in 0..12 {
        many.insert(format!("key {i} \"quoted\" \\ é"), format!("value {i}\n"));
    }
    let model = checkpoint_bytes("model", &net, &many).unwrap();
    let optim = optimizer_bytes("optim", &adam).unwrap();
    for _ in 0..8 {
        assert!(checkpoint_bytes("model", &net, &many).unwrap() == model);
        assert!(optimizer_bytes("optim", &adam).unwrap() == optim);
    }
    // The spliced header is what safetensors reads back, metadata and tensors alike.
    let (len, header) = SafeTensors::read_metadata(&model).unwrap();
    assert_eq!(len % 8, 0);
    let stored: BTreeMap<String, String> = header.metadata().clone().unwrap().into_iter().collect();
    assert_eq!(stored, many);
    let mut net2 = mlp(8, DType::F32, 42);
    assert_eq!(
        load_checkpoint_bytes(&model, "model", &mut net2).unwrap(),
        many
    );
    for ((name, t1), (_, t2)) in net.state_dict().iter().zip(net2.state_dict().iter()) {
        assert_eq!(bits(t1), bits(t2), "{name} differs after the round trip");
    }
    let text = std::str::from_utf8(&model[8..8 + len]).unwrap();
    let keys: Vec<usize> = many
        .keys()
        .map(|k| text.find(&serde_json::to_string(k).unwrap()).unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "metadata keys not in sorted order"
    );
}

#[test]
fn optimizer_file_layout_and_state_checks() {
    let dir = scratch("optim");
    let path = dir.join("optim.safetensors");
    let mut net = mlp(4, DType::F32, 1);
    let mut adam = Adam::new(AdamConfig::new(0.01)).unwrap();

    // An optimiser that has not stepped yet round-trips too.
    save_optimizer(&path, &adam).unwrap();
    let mut other = Adam::new(AdamConfig::new(0.3)).unwrap();
    load_optimizer(&path, &mut other).unwrap();
    assert_eq!(other.config(), adam.config());
    assert_eq!(other.steps_taken(), 0);

    let (x, labels) = batch(&[8, 6], DType::F32, 3);
    train_step(&mut net, &mut adam, &x, &labels);
    save_optimizer(&path, &adam).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut got: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    got.sort();
    let mut want = Vec::new();
    for i in 0..6 {
        for kind in ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"] {
            want.push(format!("{i}.{kind}"));
        }
    }
    want.sort();
    assert_eq!(got, want);
    assert_eq!(st.tensor("0.step").unwrap().dtype(), Dtype::I64);
    assert_eq!(st.tensor("0.step").unwrap().data(), 1i64.to_le_bytes());
    assert_eq!(st.tensor("0.exp_avg").unwrap().shape(), [4, 6]);
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let m = header.metadata().as_ref().unwrap();
    assert_eq!(m["lr"], "0.01");
    assert_eq!(m["amsgrad"], "true");
    assert_eq!(m["num_params"], "6");

    // In-memory state checks: an unknown tensor, a missing one, and bad metadata.
    let meta = adam.state_metadata();
    let mut tensors = adam.state_tensors();
    let mut fresh = Adam::new(AdamConfig::new(0.1)).unwrap();
    tensors.push(("9.exp_avg".to_string(), tensors[0].1.clone()));
    let err = fresh.load_state(&meta, tensors.clone()).unwrap_err();
    assert!(
        matches!(&err, NnError::UnexpectedTensor { name } if name == "9.exp_avg"),
        "{err}"
    );
    tensors.pop();
    tensors.retain(|(n, _)| n != "2.max_exp_avg_sq");
    let err = fresh.load_state(&meta, tensors.clone()).unwrap_err();
    assert!(
        matches!(&err, NnError::MissingTensor { name } if name == "2.max_exp_avg_sq"),
        "{err}"
    );
    let mut bad = meta.clone();
    bad.insert("beta1".into(), "1.5".into());
    let err = fresh.load_state(&bad, adam.state_tensors()).unwrap_err();
    assert!(err.to_string().contains("beta1"), "{err}");
    assert_eq!(fresh.config(), &AdamConfig::new(0.1), "unchanged on error");

    // A restored state refuses a parameter list of another length.
    fresh.load_state(&meta, adam.state_tensors()).unwrap();
    let mut params = net.params_mut();
    params.pop();
    assert!(fresh.step(&mut params).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
