//! Data for `specreg`: an IDX reader, MNIST / Fashion-MNIST loading (with digest-checked
//! download) and seeded mini-batching.
//!
//! * [`read_idx`] / [`parse_idx`] decode IDX files of unsigned bytes, raw or gzip (detected
//!   by the magic bytes `1f 8b`, not the file name), with every malformed input reported as
//!   a [`DataError`] naming the file.
//! * [`Mnist::load`] reads the four standard files (`train-images-idx3-ubyte`,
//!   `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each
//!   raw or `.gz`) into two [`Split`]s of `N × 784` `f32` pixels in `[0, 1]` and labels
//!   `0..=9`.
//! * [`locate`] finds the data: explicit path, then `$SPECREG_DATA` (or
//!   `$SPECREG_FASHION_DATA`), then the per-user cache `$XDG_CACHE_HOME/specreg/<kind>` or
//!   `~/.cache/specreg/<kind>`, then system packages; see [`candidate_dirs`].
//! * `download` (feature `download`, on by default) fetches the files from the public
//!   mirrors, checks their md5 and writes them atomically; [`verify`] checks files on disk.
//! * [`testing`] finds MNIST for tests when they are built, so that a missing dataset shows
//!   up as ignored tests; [`test_mnist_dir!`] hands the directory to a test.
//! * [`batch_indices`] / [`Batches`] split `0..n` into mini-batches, shuffled by a seeded
//!   SplitMix64 Fisher–Yates: the same seed always gives the same order.
//!
//! # Example
//!
//! ```
//! use specreg_data::{IdxArray, Split, batch_indices, encode_idx, parse_idx};
//!
//! # fn main() -> Result<(), specreg_data::DataError> {
//! // Two 28×28 images and their labels, encoded as IDX and decoded again.
//! let images = IdxArray { dims: vec![2, 28, 28], data: vec![255; 2 * 784] };
//! let labels = IdxArray { dims: vec![2], data: vec![7, 3] };
//! let images = parse_idx(&encode_idx(&images)?, "images")?;
//! let labels = parse_idx(&encode_idx(&labels)?, "labels")?;
//! let split = Split::from_idx(images, labels, "images".as_ref(), "labels".as_ref())?;
//! assert_eq!(split.images_nchw().shape(), &[2, 1, 28, 28]);
//! assert_eq!(split.images()[[1, 0]], 1.0);
//!
//! // Seeded mini-batches; the last, partial batch is kept.
//! for batch in batch_indices(split.len(), 64, Some(42))? {
//!     let (x, y) = split.gather(&batch)?;
//!     assert_eq!((x.nrows(), y.len()), (2, 2));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The real data, found like the `specreg` binary finds it (downloaded into the per-user
//! cache if it is nowhere on disk):
//!
//! ```no_run
//! # fn main() -> Result<(), specreg_data::DataError> {
//! use specreg_data::{DatasetKind, load_or_download};
//! let mnist = load_or_download(DatasetKind::Mnist, None)?;
//! assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
//! # Ok(())
//! # }
//! ```
//!
//! `build.rs` compiles this file as a module of the build script (see [`testing`]): inside
//! the crate, paths therefore start with `super::`, never `crate::`.

#![warn(missing_docs)]

mod batch;
mod digest;
#[cfg(feature = "download")]
mod download;
mod error;
mod idx;
mod kind;
mod locate;
mod mnist;
pub mod testing;

pub use batch::{Batches, SplitMix64, batch_indices, permutation, shuffle};
pub use digest::{CheckOutcome, FileCheck, check_bytes, check_file, md5_hex, verify};
#[cfg(feature = "download")]
pub use download::{DownloadTimeouts, download, download_from, download_with, load_or_download};
pub use error::{DataError, DownloadAttempt, SearchedDir};
pub use idx::{
    IDX_DTYPE_U8, IdxArray, MAX_IDX_ELEMENTS, encode_idx, is_gzip, parse_idx, read_idx, write_idx,
};
pub use kind::{DataFile, DatasetKind, ExpectedDigest};
pub use locate::{DATA_ENV, FASHION_DATA_ENV, cache_dir, candidate_dirs, has_dataset, locate};
pub use mnist::{IMAGE_PIXELS, IMAGE_SIDE, Mnist, NUM_CLASSES, Split, load};
