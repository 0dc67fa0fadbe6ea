//! Model and optimiser checkpoints as [safetensors] files.
//!
//! A model checkpoint holds [`Sequential::state_dict`] under PyTorch's `nn.Sequential`
//! names (`0.weight`, `0.bias`, `2.running_mean`, `2.num_batches_tracked`, …) with
//! PyTorch's layouts (Linear `[out, in]`, Conv2d `[O, C, KH, KW]`, BatchNorm vectors
//! `[F]`), little-endian `F32`/`F64` as the model holds them, and `num_batches_tracked` as
//! an `I64` scalar, PyTorch's dtype. So `safetensors.torch.load_file(path)` gives a dict
//! that `model.load_state_dict` of the PyTorch model with the same layers accepts as is.
//! Free-form metadata (seed, commit, …) goes in the header.
//!
//! An optimiser checkpoint ([`save_optimizer`]) holds [`Adam::state_tensors`] (the step
//! counts as `I64` scalars) with [`Adam::state_metadata`] (the config) in the header.
//!
//! Writes are atomic: the file is written as `{path}.tmp` next to `path`, synced, and
//! renamed over `path`.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use specreg_nn::{BatchNorm1d, Linear, Sequential, Tanh, load_checkpoint, save_checkpoint};
//! use specreg_tensor::{DType, Device, Rng};
//!
//! # fn main() -> specreg_nn::Result<()> {
//! let net = |seed| -> specreg_nn::Result<Sequential> {
//!     let (dev, mut rng) = (Device::Cpu, Rng::new(seed));
//!     Ok(Sequential::new()
//!         .with(Linear::new(4, 8, DType::F32, &dev, &mut rng)?)
//!         .with(BatchNorm1d::new(8, DType::F32, &dev)?)
//!         .with(Tanh::new())
//!         .with(Linear::new(8, 3, DType::F32, &dev, &mut rng)?))
//! };
//! let path = std::env::temp_dir().join(format!("specreg-doc-{}.safetensors", std::process::id()));
//! let meta = BTreeMap::from([("seed".to_string(), "1".to_string())]);
//! save_checkpoint(&path, &net(1)?, &meta)?;
//! let mut restored = net(2)?;
//! assert_eq!(load_checkpoint(&path, &mut restored)?, meta);
//! let names: Vec<String> = restored.state_dict().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
//!                    "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"]);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use specreg_tensor::{DType, Device, Tensor};

use crate::{Adam, NnError, Result, Sequential};

/// Tensors by name.
type NamedTensors = Vec<(String, Tensor)>;

/// Whether a model tensor is stored as `I64` (PyTorch's dtype for this buffer).
fn model_int(name: &str) -> bool {
    name.ends_with(".num_batches_tracked") || name == "num_batches_tracked"
}

/// Whether an optimiser tensor is stored as `I64`.
fn optim_int(name: &str) -> bool {
    name.ends_with(".step")
}

/// Largest integer every `f64` below which is exact.
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// One tensor ready to serialise.
struct Encoded {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn encode(name: String, t: &Tensor, int: bool) -> Result<Encoded> {
    let shape = t.shape().to_vec();
    let (dtype, bytes) = if int {
        let v = t.to_dtype(DType::F64)?.to_vec::<f64>()?;
        let mut bytes = Vec::with_capacity(v.len() * 8);
        for x in v {
            if !(x.fract() == 0.0 && x.abs() <= EXACT_F64_INT) {
                return Err(NnError::InvalidArgument {
                    what: format!("saving {name}"),
                    reason: format!("{x} is not an integer"),
                });
            }
            bytes.extend_from_slice(&(x as i64).to_le_bytes());
        }
        (Dtype::I64, bytes)
    } else {
        match t.dtype() {
            DType::F32 => (
                Dtype::F32,
                t.to_vec::<f32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            DType::F64 => (
                Dtype::F64,
                t.to_vec::<f64>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
        }
    };
    Ok(Encoded {
        name,
        dtype,
        shape,
        bytes,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io {
        file: path.display().to_string(),
        source,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Writes `bytes` to `path` atomically: `{path}.tmp`, fsync, rename, fsync of the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    // Make the rename itself durable where the platform allows syncing a folder.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Serialises named tensors and string metadata to safetensors bytes. Tensors whose name
/// satisfies `int` are written as `I64` (they must hold integers); `what` names the
/// destination in errors.
fn encode_safetensors(
    what: &str,
    tensors: NamedTensors,
    metadata: &BTreeMap<String, String>,
    int: fn(&str) -> bool,
) -> Result<Vec<u8>> {
    let encoded = tensors
        .into_iter()
        .map(|(name, t)| {
            let is_int = int(&name);
            encode(name, &t, is_int)
        })
        .collect::<Result<Vec<_>>>()?;
    let views = encoded
        .iter()
        .map(|e| {
            TensorView::new(e.dtype, e.shape.clone(), &e.bytes)
                .map(|v| (e.name.clone(), v))
                .map_err(|err| NnError::InvalidArgument {
                    what: format!("saving {}", e.name),
                    reason: err.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let failed = |reason: String| NnError::InvalidArgument {
        what: format!("saving {what}"),
        reason,
    };
    let plain = safetensors::serialize(views, None).map_err(|err| failed(err.to_string()))?;
    with_sorted_metadata(plain, metadata).map_err(failed)
}

/// Puts `metadata` into the header of safetensors bytes written without it, keys sorted.
///
/// safetensors takes the header's metadata as a `HashMap` and writes it in that map's
/// iteration order, which is random per process: the same state saved twice would give
/// files that differ byte for byte. Splicing a sorted object in keeps a checkpoint a pure
/// function of what it stores. The tensors' data offsets count from the end of the header,
/// so they stay valid whatever its length.
fn with_sorted_metadata(
    plain: Vec<u8>,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    if metadata.is_empty() {
        return Ok(plain);
    }
    let unexpected = || "safetensors wrote a header this code does not recognise".to_string();
    let len_bytes: [u8; 8] = plain
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(unexpected)?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| unexpected())?;
    let header = plain.get(8..8 + len).ok_or_else(unexpected)?;
    let header = std::str::from_utf8(header).map_err(|_| unexpected())?;
    let entries = header
        .trim_end_matches(' ')
        .strip_prefix('{')
        .ok_or_else(unexpected)?;
    let sorted = serde_json::to_string(metadata).map_err(|err| err.to_string())?;
    let mut spliced = format!("{{\"__metadata__\":{sorted}");
    if entries != "}" {
        spliced.push(',');
    }
    spliced.push_str(entries);
    // safetensors aligns the data to 8 bytes by padding the header with spaces.
    let padded = spliced.len().next_multiple_of(8);
    let mut out = Vec::with_capacity(8 + padded + plain.len() - 8 - len);
    out.extend_from_slice(&(padded as u64).to_le_bytes());
    out.extend_from_slice(spliced.as_bytes());
    out.resize(8 + padded, b' ');
    out.extend_from_slice(&plain[8 + len..]);
    Ok(out)
}

fn decode_le<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// Decodes the bytes of a safetensors file (`origin` names it in errors) into CPU tensors
/// (sorted by name) and its metadata. Tensors whose name satisfies `int` must be `I64` and
/// come back as `f64` tensors; every other tensor must be `F32` or `F64` and hold only
/// finite values.
fn decode_safetensors(
    bytes: &[u8],
    origin: &Path,
    int: fn(&str) -> bool,
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let file = || origin.display().to_string();
    let corrupt = |err: safetensors::SafeTensorError| NnError::CorruptFile {
        file: file(),
        reason: err.to_string(),
    };
    // `deserialize` validates the header (its length against the input, every offset
    // against the buffer) before any tensor is touched, so nothing is sized from it.
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let st = SafeTensors::deserialize(bytes).map_err(corrupt)?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let cpu = Device::Cpu;
    let mut out = Vec::with_capacity(views.len());
    for (name, view) in views {
        let shape = view.shape().to_vec();
        let data = view.data();
        let dtype_err = |expected: &str| NnError::TensorDType {
            name: name.clone(),
            expected: expected.to_string(),
            found: format!("{:?}", view.dtype()),
        };
        let t = if int(&name) {
            if view.dtype() != Dtype::I64 {
                return Err(dtype_err("I64"));
            }
            let ints = decode_le(data, i64::from_le_bytes);
            let mut vals = Vec::with_capacity(ints.len());
            for i in ints {
                if (i as f64).abs() > EXACT_F64_INT {
                    return Err(NnError::CorruptFile {
                        file: file(),
                        reason: format!("{name}: count {i} is out of range"),
                    });
                }
                vals.push(i as f64);
            }
            Tensor::from_vec(vals, &shape, &cpu)?
        } else {
            let (t, bad, total) = match view.dtype() {
                Dtype::F32 => {
                    let v = decode_le(data, f32::from_le_bytes);
                    let bad = v.iter().filter(|x| !x.is_finite()).count();
                    let total = v.len();
                    (Tensor::from_vec(v, &shape, &cpu)?, bad, total)
                }
                Dtype::F64 => {
                    let v = decode_le(data, f64::from_le_bytes);
                    let bad = v.iter().filter(|x| !x.is_finite()).count();
                    let total = v.len();
                    (Tensor::from_vec(v, &shape, &cpu)?, bad, total)
                }
                _ => return Err(dtype_err("F32 or F64")),
            };
            if bad > 0 {
                return Err(NnError::CorruptFile {
                    file: file(),
                    reason: format!(
                        "tensor {name}: {bad} of {total} values are not finite (NaN or infinite)"
                    ),
                });
            }
            t
        };
        out.push((name, t));
    }
    Ok((out, metadata))
}

/// Writes `net`'s [`Sequential::state_dict`] and `metadata` to the safetensors file
/// `path`, atomically (via `{path}.tmp` in the same folder; nothing is left behind).
///
/// The file loads in PyTorch without any renaming or reshaping:
///
/// ```python
/// from safetensors.torch import load_file
/// model.load_state_dict(load_file("model.safetensors"))  # the same nn.Sequential layers
/// ```
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    net: &Sequential,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &checkpoint_bytes(path, net, metadata)?)
}

/// The bytes [`save_checkpoint`] writes (`what` names the destination in errors).
pub fn checkpoint_bytes(
    what: impl AsRef<Path>,
    net: &Sequential,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let what = what.as_ref().display().to_string();
    encode_safetensors(&what, net.state_dict(), metadata, model_int)
}

/// Loads a checkpoint written by [`save_checkpoint`] (or by PyTorch's
/// `safetensors.torch.save_file(model.state_dict(), …)` for the same layers) into `net`,
/// returning the header metadata.
///
/// Errors, leaving `net` unchanged: [`NnError::Io`] if the file cannot be read,
/// [`NnError::CorruptFile`] (naming the file) if it is not valid safetensors (e.g.
/// truncated), and, naming the tensor, [`NnError::MissingTensor`],
/// [`NnError::UnexpectedTensor`], [`NnError::TensorShape`] (with both shapes) or
/// [`NnError::TensorDType`]; [`NnError::CorruptFile`] naming the tensor and the count if
/// a weight or buffer holds NaN or infinite values.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    net: &mut Sequential,
) -> Result<BTreeMap<String, String>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    load_checkpoint_bytes(&bytes, path, net)
}

/// [`load_checkpoint`] of the file's bytes, already read; `origin` names the file in
/// errors.
///
/// # Errors
/// As [`load_checkpoint`], apart from I/O.
pub fn load_checkpoint_bytes(
    bytes: &[u8],
    origin: impl AsRef<Path>,
    net: &mut Sequential,
) -> Result<BTreeMap<String, String>> {
    let (tensors, metadata) = decode_safetensors(bytes, origin.as_ref(), model_int)?;
    net.load_state_dict(tensors)?;
    Ok(metadata)
}

/// Writes `adam`'s state ([`Adam::state_tensors`], step counts as `I64`) with its config
/// and counters ([`Adam::state_metadata`]) in the header, atomically.
pub fn save_optimizer(path: impl AsRef<Path>, adam: &Adam) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &optimizer_bytes(path, adam)?)
}

/// The bytes [`save_optimizer`] writes (`what` names the destination in errors).
pub fn optimizer_bytes(what: impl AsRef<Path>, adam: &Adam) -> Result<Vec<u8>> {
    let what = what.as_ref().display().to_string();
    encode_safetensors(
        &what,
        adam.state_tensors(),
        &adam.state_metadata(),
        optim_int,
    )
}

/// Replaces `adam`'s config and state with those saved by [`save_optimizer`]. The state
/// moves to the parameters' device and dtype at the next [`Adam::step`].
///
/// Errors, leaving `adam` unchanged, like [`load_checkpoint`] and [`Adam::load_state`].
pub fn load_optimizer(path: impl AsRef<Path>, adam: &mut Adam) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    load_optimizer_bytes(&bytes, path, adam)
}

/// [`load_optimizer`] of the file's bytes, already read; `origin` names the file in
/// errors.
///
/// # Errors
/// As [`load_optimizer`], apart from I/O.
pub fn load_optimizer_bytes(bytes: &[u8], origin: impl AsRef<Path>, adam: &mut Adam) -> Result<()> {
    let (tensors, metadata) = decode_safetensors(bytes, origin.as_ref(), optim_int)?;
    adam.load_state(&metadata, tensors)
}
