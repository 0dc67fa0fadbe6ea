//! # specreg-nn
//!
//! Layers for the experiments of Nassar et al. (NeurIPS 2020), "On 1/n neural
//! representation and robustness": MLPs and small CNNs on MNIST trained with spectral and
//! Jacobian regularisers.
//!
//! Every [`Layer`] has four passes: `forward`, `backward` (input gradient, parameter
//! gradients accumulated in [`Param::grad`]), and Pearlmutter's R-operator along an input
//! direction, `forward_tangent` and `backward_tangent` (tangent parameter gradients in
//! [`Param::grad_tangent`]). The tangent passes give the *exact* weight gradient of the
//! Jacobian regulariser `(β/B) Σ_n ‖∂L_n/∂x_n‖²` in one extra pass — see [`Layer`]; the
//! penalty itself is built on them in the regularizers crate, which this crate does not
//! know about. Training ([`train_epoch`]) makes one host read per step; regularisers plug
//! in through [`TrainHook`].
//!
//! Layers: [`Linear`], [`Conv2d`], [`MaxPool2d`], [`Flatten`], [`BatchNorm1d`], [`Tanh`],
//! [`Relu`], [`Sigmoid`]; the loss is in [`loss`]. Layer math uses only
//! [`specreg_tensor::Tensor`] operations, so it runs on any device the tensor crate
//! supports, in `f32` or `f64`.
//!
//! ```
//! use specreg_nn::{Layer, Linear, Mode, Sequential, Tanh};
//! use specreg_tensor::{DType, Device, Rng, Tensor};
//!
//! # fn main() -> specreg_nn::Result<()> {
//! let dev = Device::Cpu;
//! let mut rng = Rng::new(0);
//! let mut net = Sequential::new()
//!     .with(Linear::new(4, 8, DType::F64, &dev, &mut rng)?)
//!     .with(Tanh::new())
//!     .with(Linear::new(8, 3, DType::F64, &dev, &mut rng)?);
//! let x = Tensor::randn(&[5, 4], 0.0, 1.0, DType::F64, &mut rng, &dev)?;
//! let labels = [0, 2, 1, 1, 0];
//!
//! // Mean cross-entropy (on the device) and its parameter gradients.
//! net.zero_grad();
//! let z = net.forward(&x, Mode::Train)?;
//! let (loss, gz) = specreg_nn::loss::softmax_cross_entropy(&z, &labels)?;
//! let gx = net.backward(&gz)?;
//! assert!(loss.to_scalar()? > 0.0);
//! assert_eq!(gx.shape(), &[5, 4]);
//! for p in net.params() {
//!     assert_eq!(p.grad.as_ref().unwrap().shape(), p.value.shape());
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod checkpoint;
mod error;
mod layer;
pub mod layers;
pub mod loss;
pub mod model;
mod optim;
mod sequential;
pub mod train;

pub use checkpoint::{
    checkpoint_bytes, load_checkpoint, load_checkpoint_bytes, load_optimizer, load_optimizer_bytes,
    optimizer_bytes, save_checkpoint, save_optimizer,
};
pub use error::{NnError, NonFiniteQuantity, Result};
pub use layer::{Layer, Mode, Param};
pub use layers::{BatchNorm1d, Conv2d, Flatten, Linear, MaxPool2d, Relu, Sigmoid, Tanh};
pub use model::{ForwardPass, Network};
pub use optim::{Adam, AdamConfig};
pub use sequential::Sequential;
pub use train::{
    EpochStats, HookOutput, NoHook, StepLoss, TrainHook, evaluate, to_input, train_epoch,
    train_epoch_with,
};
