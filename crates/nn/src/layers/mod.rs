//! The layers: each implements [`Layer`](crate::Layer) with all four passes.

mod activation;
mod batchnorm;
mod conv;
mod flatten;
mod linear;
mod pool;

pub use activation::{Relu, Sigmoid, Tanh};
pub use batchnorm::BatchNorm1d;
pub use conv::Conv2d;
pub use flatten::Flatten;
pub use linear::Linear;
pub use pool::MaxPool2d;
