//! Row selection, masked choice, identity and triangle masks, row norms: the bookkeeping
//! that lets attacks and regularisers stay on the device.

use ndarray::{Array2, ArrayD, IxDyn};

use crate::{BinaryOp, DType, Device, Error, Result, Tensor};

impl Tensor {
    /// Rows `rows` of a tensor of rank ≥ 1 (indices along axis 0, in any order, repeats
    /// allowed), on its device. The indices travel host → device; nothing is read back.
    pub fn index_select_rows(&self, rows: &[usize]) -> Result<Tensor> {
        let n = *self.shape().first().ok_or(Error::RankMismatch {
            op: "index_select_rows",
            expected: 1,
            got: vec![],
        })?;
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::InvalidArgument {
                op: "index_select_rows",
                reason: format!("row {bad} is out of range for shape {:?}", self.shape()),
            });
        }
        Ok(Tensor::from_storage(self.storage.index_select(rows)?))
    }

    /// The sum of every element, accumulated in `f64` in a fixed order (the same as
    /// [`Tensor::sum_all`]), as a 0-D `f64` tensor that stays on the device.
    pub fn sum_all_f64(&self) -> Result<Tensor> {
        Ok(Tensor::from_storage(self.storage.sum_all_f64()?))
    }

    /// The indices of a 1-D tensor's elements by descending value, as whole numbers in its
    /// dtype, on its device. Stable (ties keep index order); NaN sorts first.
    pub fn argsort_descending(&self) -> Result<Tensor> {
        self.expect_rank("argsort_descending", 1)?;
        Ok(Tensor::from_storage(self.storage.argsort_descending()?))
    }

    /// `out[k] = self[idx[k]]` for a 1-D `self` and a 1-D `idx` of whole numbers below
    /// `self`'s length (e.g. from [`Tensor::argsort_descending`]).
    pub fn gather(&self, idx: &Tensor) -> Result<Tensor> {
        self.expect_rank("gather", 1)?;
        idx.expect_rank("gather", 1)?;
        Ok(Tensor::from_storage(self.storage.gather(&idx.storage)?))
    }

    /// `out[idx[k]] = self[k]` into a 1-D tensor of `len` zeros (the inverse of
    /// [`Tensor::gather`] for a permutation). A later `k` wins on repeated indices.
    pub fn scatter(&self, idx: &Tensor, len: usize) -> Result<Tensor> {
        self.expect_rank("scatter", 1)?;
        self.expect_same_shape("scatter", idx)?;
        Ok(Tensor::from_storage(
            self.storage.scatter(&idx.storage, len)?,
        ))
    }

    /// 1-D tensors (or 0-D scalars) of one dtype and device, one after another: to pack
    /// several per-step scalars into one tensor and read them in one host read.
    pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
        let flat = parts
            .iter()
            .map(|p| p.reshape(&[p.elem_count()]))
            .collect::<Result<Vec<_>>>()?;
        let storages: Vec<&crate::storage::Storage> = flat.iter().map(|t| &t.storage).collect();
        Ok(Tensor::from_storage(crate::storage::Storage::concat(
            &storages,
        )?))
    }

    /// `mask ≠ 0 ? on_true : on_false` elementwise, with `self` the mask. The mask has the
    /// operands' shape, or is 1-D with one entry per row (axis 0) to choose whole rows. A
    /// NaN mask entry counts as true (it is not 0).
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        on_true.expect_same_shape("where_cond", on_false)?;
        let per_row = self.rank() == 1 && on_true.shape().first() == Some(&self.shape()[0]);
        if self.shape() != on_true.shape() && !per_row {
            return Err(Error::ShapeMismatch {
                op: "where_cond",
                lhs: self.shape().to_vec(),
                rhs: on_true.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(
            self.storage
                .where_cond(&on_true.storage, &on_false.storage)?,
        ))
    }

    /// The `n × n` identity, built on the host and uploaded once (cache it).
    pub fn eye(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::tril_mask(n, 1.0, 0.0, dtype, device)
    }

    /// An `n × n` matrix with `diagonal` on the diagonal, `below` strictly below it and 0
    /// above: `tril_mask(n, 1, 1, …)` is the lower-triangle mask, `tril_mask(n, 0.5, 1, …)`
    /// the mask of the Cholesky backward's `Φ`, `tril_mask(n, 1, 0, …)` the identity. Built
    /// on the host and uploaded once (cache it).
    pub fn tril_mask(
        n: usize,
        diagonal: f64,
        below: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let m = Array2::<f64>::from_shape_fn((n, n), |(i, j)| match i.cmp(&j) {
            std::cmp::Ordering::Greater => below,
            std::cmp::Ordering::Equal => diagonal,
            std::cmp::Ordering::Less => 0.0,
        });
        Tensor::from_array(m).to_dtype(dtype)?.upload(device)
    }

    /// The Euclidean norm of each row of a tensor `[B, …]` (over every axis after the
    /// first), as a `[B]` tensor in `f64` on the same device. The squares are summed in
    /// the tensor's own dtype and the root is taken in `f64`, so that the divisions and
    /// comparisons attacks make with these norms are exact functions of the sums.
    pub fn row_norms(&self) -> Result<Tensor> {
        self.flatten_from_1()?
            .sqr()?
            .sum_axis(1)?
            .to_dtype(DType::F64)?
            .sqrt()
    }

    /// Row `i` times `factors[i]`, for a 1-D `factors` of any dtype (cast to this one).
    pub fn scale_rows(&self, factors: &Tensor) -> Result<Tensor> {
        self.broadcast_along(&factors.to_dtype(self.dtype())?, 0, BinaryOp::Mul)
    }

    /// A tensor of `shape` with every element `value`, in this tensor's dtype and on its
    /// device (a constant to combine with it elementwise).
    pub fn full_like(&self, value: f64, shape: &[usize]) -> Result<Tensor> {
        let t = match self.dtype() {
            DType::F32 => Tensor::from_array(ArrayD::from_elem(IxDyn(shape), value as f32)),
            DType::F64 => Tensor::from_array(ArrayD::from_elem(IxDyn(shape), value)),
        };
        t.upload(&self.device())
    }
}
