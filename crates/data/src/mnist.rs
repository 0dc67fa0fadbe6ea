//! MNIST-format datasets: validation, conversion to `f32`, mini-batch gathering.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, ArrayView4, ArrayViewMut2, Axis};

use super::error::DataError;
use super::idx::{IN_MEMORY, IdxArray, read_idx};
use super::kind::{DataFile, DatasetKind};
use super::locate::locate;

/// Side of an image in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image (28 × 28 = 784).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes; labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// A dataset in MNIST format (MNIST or Fashion-MNIST): 60 000 training and 10 000 test
/// samples for the standard files.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// The training split (`train-*` files).
    pub train: Split,
    /// The test split (`t10k-*` files).
    pub test: Split,
}

impl Mnist {
    /// Loads the four standard files from `dir`, each as `<stem>` or `<stem>.gz`.
    ///
    /// # Errors
    /// [`DataError::MissingDatasetFile`] if a file is absent, any IDX error of
    /// [`crate::read_idx`], and the validation errors of [`Split`]: [`DataError::BadShape`],
    /// [`DataError::CountMismatch`], [`DataError::LabelOutOfRange`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        Ok(Mnist {
            train: Split::load(dir, DataFile::TrainImages, DataFile::TrainLabels)?,
            test: Split::load(dir, DataFile::TestImages, DataFile::TestLabels)?,
        })
    }
}

/// Finds `kind` with [`locate`] and loads it with [`Mnist::load`].
///
/// # Errors
/// [`DataError::NotFound`] and the errors of [`Mnist::load`].
pub fn load(kind: DatasetKind, explicit: Option<&Path>) -> Result<Mnist, DataError> {
    Mnist::load(locate(kind, explicit)?)
}

/// One split: `N` images as rows of an `N × 784` matrix of pixel / 255 in `[0, 1]`, and
/// `N` labels in `0..=9`.
///
/// The invariants (784 columns, standard row-major layout, as many labels as images, labels
/// at most 9) are enforced by every constructor; the fields are therefore private.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    images: Array2<f32>,
    labels: Vec<u8>,
}

impl Split {
    /// Builds a split from in-memory data.
    ///
    /// # Errors
    /// [`DataError::BadShape`] if `images` does not have 784 columns,
    /// [`DataError::CountMismatch`] if the row count differs from `labels.len()`,
    /// [`DataError::LabelOutOfRange`] if a label exceeds 9. Errors name the file
    /// `<in-memory>`.
    pub fn new(images: Array2<f32>, labels: Vec<u8>) -> Result<Self, DataError> {
        let mem = Path::new(IN_MEMORY);
        if images.ncols() != IMAGE_PIXELS {
            return Err(DataError::BadShape {
                file: mem.into(),
                expected: "an N × 784 image matrix",
                dims: images.shape().to_vec(),
            });
        }
        check_labels(images.nrows(), &labels, mem, mem)?;
        let images = if images.is_standard_layout() {
            images
        } else {
            images.as_standard_layout().into_owned()
        };
        Ok(Split { images, labels })
    }

    fn load(dir: &Path, images: DataFile, labels: DataFile) -> Result<Self, DataError> {
        let (ipath, lpath) = (images.require_in(dir)?, labels.require_in(dir)?);
        Self::from_idx(read_idx(&ipath)?, read_idx(&lpath)?, &ipath, &lpath)
    }

    /// Builds a split from decoded IDX arrays; the paths name the files in errors.
    ///
    /// # Errors
    /// [`DataError::BadShape`] unless images are `N × 28 × 28` and labels 1-d,
    /// [`DataError::CountMismatch`], [`DataError::LabelOutOfRange`].
    pub fn from_idx(
        images: IdxArray,
        labels: IdxArray,
        images_path: &Path,
        labels_path: &Path,
    ) -> Result<Self, DataError> {
        let n = match images.dims.as_slice() {
            &[n, IMAGE_SIDE, IMAGE_SIDE] => n,
            dims => {
                return Err(DataError::BadShape {
                    file: images_path.into(),
                    expected: "3-d N × 28 × 28 images",
                    dims: dims.to_vec(),
                });
            }
        };
        if labels.rank() != 1 {
            return Err(DataError::BadShape {
                file: labels_path.into(),
                expected: "1-d labels",
                dims: labels.dims,
            });
        }
        check_labels(n, &labels.data, images_path, labels_path)?;
        let pixels: Vec<f32> = images.data.iter().map(|&b| f32::from(b) / 255.0).collect();
        let images =
            Array2::from_shape_vec((n, IMAGE_PIXELS), pixels).map_err(|_| DataError::BadShape {
                file: images_path.into(),
                expected: "3-d N × 28 × 28 images",
                dims: images.dims,
            })?;
        Ok(Split {
            images,
            labels: labels.data,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `N × 784` image matrix, pixel / 255 in `[0, 1]`.
    pub fn images(&self) -> ArrayView2<'_, f32> {
        self.images.view()
    }

    /// Mutable view of the image matrix (e.g. to standardise pixels in place); its shape
    /// cannot be changed through the view.
    pub fn images_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        self.images.view_mut()
    }

    /// The labels, `0..=9`.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The images as an `N × 1 × 28 × 28` (NCHW) view of the same memory, no copy.
    pub fn images_nchw(&self) -> ArrayView4<'_, f32> {
        let shape = (self.len(), 1, IMAGE_SIDE, IMAGE_SIDE);
        // Cannot fail: every constructor stores a standard-layout N × 784 matrix and
        // `images_mut` only hands out a view that cannot change shape or layout.
        self.images
            .view()
            .into_shape_with_order(shape)
            .expect("invariant: images are a standard-layout N × 784 matrix")
    }

    /// Copies the samples at `indices` (in that order, repeats allowed) into a mini-batch:
    /// a `len × 784` matrix and the matching labels.
    ///
    /// # Errors
    /// [`DataError::IndexOutOfRange`] if an index is `>= self.len()`.
    pub fn gather(&self, indices: &[usize]) -> Result<(Array2<f32>, Vec<u8>), DataError> {
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            match self.labels.get(index) {
                Some(&l) => labels.push(l),
                None => {
                    return Err(DataError::IndexOutOfRange {
                        index,
                        len: self.len(),
                    });
                }
            }
        }
        Ok((self.images.select(Axis(0), indices), labels))
    }

    /// The first `min(n, len)` samples, like [`Iterator::take`].
    pub fn subset(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images.slice(ndarray::s![..n, ..]).to_owned(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// How many samples of each class `0..=9` the split holds.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }

    /// Splits into the image matrix and the labels.
    pub fn into_parts(self) -> (Array2<f32>, Vec<u8>) {
        (self.images, self.labels)
    }
}

fn check_labels(
    n_images: usize,
    labels: &[u8],
    images_path: &Path,
    labels_path: &Path,
) -> Result<(), DataError> {
    if n_images != labels.len() {
        return Err(DataError::CountMismatch {
            images: PathBuf::from(images_path),
            labels: PathBuf::from(labels_path),
            n_images,
            n_labels: labels.len(),
        });
    }
    match labels.iter().position(|&l| usize::from(l) >= NUM_CLASSES) {
        Some(index) => Err(DataError::LabelOutOfRange {
            file: labels_path.into(),
            index,
            value: labels[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Split {
        let images = Array2::from_shape_fn((3, IMAGE_PIXELS), |(i, j)| (i * 1000 + j) as f32);
        Split::new(images, vec![3, 1, 4]).unwrap()
    }

    #[test]
    fn nchw_is_zero_copy() {
        let s = tiny();
        let v = s.images_nchw();
        assert_eq!(v.shape(), &[3, 1, 28, 28]);
        assert_eq!(v[[2, 0, 1, 2]], 2000.0 + 30.0);
        assert_eq!(v.as_ptr(), s.images().as_ptr());
    }

    #[test]
    fn non_standard_layout_is_normalised() {
        let t = Array2::<f32>::zeros((IMAGE_PIXELS, 2)).reversed_axes();
        let s = Split::new(t, vec![0, 9]).unwrap();
        assert_eq!(s.images_nchw().shape(), &[2, 1, 28, 28]);
    }

    #[test]
    fn gather_subset_counts() {
        let s = tiny();
        let (x, y) = s.gather(&[2, 0, 2]).unwrap();
        assert_eq!(y, vec![4, 3, 4]);
        assert_eq!(x[[1, 5]], 5.0);
        assert_eq!(x[[0, 5]], 2005.0);
        assert!(matches!(
            s.gather(&[3]),
            Err(DataError::IndexOutOfRange { index: 3, len: 3 })
        ));
        assert_eq!(s.subset(2).labels(), &[3, 1]);
        assert_eq!(s.subset(10).len(), 3);
        assert_eq!(s.class_counts(), [0, 1, 0, 1, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn new_validates() {
        let bad = Split::new(Array2::zeros((2, 10)), vec![0, 0]);
        assert!(matches!(bad, Err(DataError::BadShape { .. })));
        let bad = Split::new(Array2::zeros((2, IMAGE_PIXELS)), vec![0]);
        assert!(matches!(bad, Err(DataError::CountMismatch { .. })));
        let bad = Split::new(Array2::zeros((2, IMAGE_PIXELS)), vec![0, 10]);
        assert!(matches!(
            bad,
            Err(DataError::LabelOutOfRange {
                index: 1,
                value: 10,
                ..
            })
        ));
    }
}
