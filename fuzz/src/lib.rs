//! Shared by the fuzz targets: each target calls the same entry function the program calls
//! on a file's bytes or text, and checks what an accepted input must satisfy.

use std::cell::RefCell;
use std::path::Path;

use specreg_nn::{Adam, AdamConfig, Network, checkpoint_bytes, load_checkpoint_bytes};
use specreg_nn::{load_optimizer_bytes, optimizer_bytes};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// The networks a model checkpoint is loaded into.
#[derive(Debug, Clone, Copy)]
pub enum Arch {
    /// Experiment 1's shallow network, with BatchNorm.
    Shallow,
    /// The 3-hidden-layer MLP.
    Mlp,
    /// The CNN.
    Cnn,
}

fn build(arch: Arch) -> Network {
    let (mut rng, dev) = (Rng::new(0), Device::Cpu);
    match arch {
        Arch::Shallow => Network::shallow(&mut rng, DType::F32, &dev),
        Arch::Mlp => Network::mlp(&mut rng, DType::F32, &dev),
        Arch::Cnn => Network::cnn(&mut rng, DType::F32, &dev),
    }
    .expect("the network builds")
}

thread_local! {
    /// One network per architecture, built once: a successful load replaces every tensor,
    /// so what an earlier input loaded never shows in the next result.
    static NETS: RefCell<[Option<Network>; 3]> = const { RefCell::new([None, None, None]) };
}

/// The bits of every value of every tensor, by name.
fn bits(tensors: Vec<(String, Tensor)>) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    tensors
        .into_iter()
        .map(|(n, t)| {
            let v = t.to_dtype(DType::F64).and_then(|t| t.to_vec::<f64>());
            let v = v.expect("a CPU tensor reads back");
            (
                n,
                t.shape().to_vec(),
                v.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

/// Loads `data` as a model checkpoint into `arch`. An accepted file holds only finite
/// values, and saving and loading it again gives the same tensors and metadata.
pub fn checkpoint(arch: Arch, data: &[u8]) {
    NETS.with(|nets| {
        let mut nets = nets.borrow_mut();
        let net = nets[arch as usize].get_or_insert_with(|| build(arch));
        let seq = net.sequential_mut();
        let Ok(meta) = load_checkpoint_bytes(data, "fuzz.safetensors", seq) else {
            return;
        };
        let loaded = bits(seq.state_dict());
        for (name, _, values) in &loaded {
            let finite = values.iter().all(|&b| f64::from_bits(b).is_finite());
            assert!(finite, "{name}: a non-finite value was accepted");
        }
        let again = checkpoint_bytes("re-saved", seq, &meta).expect("an accepted model saves");
        let meta2 = load_checkpoint_bytes(&again, "re-saved", seq).expect("re-saved bytes load");
        assert_eq!(meta2, meta);
        assert!(
            bits(seq.state_dict()) == loaded,
            "the round trip changed a tensor"
        );
    });
}

/// Loads `data` as an optimiser state. An accepted state saves and loads again to the
/// same tensors and metadata.
pub fn optimizer(data: &[u8]) {
    let mut adam = Adam::new(AdamConfig::new(1e-3)).expect("the default config is valid");
    if load_optimizer_bytes(data, "fuzz.safetensors", &mut adam).is_err() {
        return;
    }
    let bytes = optimizer_bytes("re-saved", &adam).expect("an accepted state saves");
    let mut again = Adam::new(AdamConfig::new(1e-3)).expect("the default config is valid");
    load_optimizer_bytes(&bytes, "re-saved", &mut again).expect("re-saved bytes load");
    assert_eq!(again.state_metadata(), adam.state_metadata());
    assert!(bits(again.state_tensors()) == bits(adam.state_tensors()));
}

/// `data` as UTF-8 text, as `std::fs::read_to_string` requires of every text file.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The repository's `configs/` folder (the fuzz crate is built from inside the checkout).
pub fn configs_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
}
