//! Per-sample bookkeeping that stays on the device: labels and indices as tensors, one-hot
//! rows, per-row picks, maxima, masks, and the rows of the batch still being attacked.
//!
//! Indices travel as whole numbers in `f64` tensors (exact below 2⁵³). Host data (labels,
//! row positions) only ever goes host → device; nothing here reads a tensor back.

use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::error::invalid_data;

/// A 1-D `f64` tensor of `values` on `device`.
pub(crate) fn f64_vector(values: &[f64], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values.to_vec(), &[values.len()], device)?)
}

/// Class labels as a `[B]` `f64` tensor.
pub(crate) fn label_tensor(labels: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<f64> = labels.iter().map(|&y| y as f64).collect();
    f64_vector(&v, device)
}

/// `[B, K]` rows `e_{labels[i]}` in `dtype`.
pub(crate) fn one_hot(labels: &[usize], k: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut v = vec![0.0f64; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y] = 1.0;
    }
    Ok(Tensor::from_vec(v, &[labels.len(), k], device)?.to_dtype(dtype)?)
}

/// The `[B]` offsets `i · K` of each row's first element in a flattened `[B, K]` tensor, in
/// `f64`.
pub(crate) fn row_offsets(b: usize, k: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f64> = (0..b).map(|i| (i * k) as f64).collect();
    f64_vector(&v, device)
}

/// `z[i, idx[i]]` for a `[B, K]` `f64` tensor `z` and `[B]` column indices `idx` (`f64`),
/// given [`row_offsets`]: an exact copy of one element per row.
pub(crate) fn pick(z: &Tensor, idx: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    let n = z.elem_count();
    Ok(z.reshape(&[n])?.gather(&idx.add(offsets)?)?)
}

/// `[B, K]` rows `e_{idx[i]}` (`f64`) for `[B]` column indices `idx` (`f64`).
pub(crate) fn one_hot_at(idx: &Tensor, offsets: &Tensor, b: usize, k: usize) -> Result<Tensor> {
    let ones = idx.full_like(1.0, &[b])?;
    Ok(ones.scatter(&idx.add(offsets)?, b * k)?.reshape(&[b, k])?)
}

/// The largest element of `t` (any shape, at least one element) as a `[1]` tensor in its
/// dtype on its device, or NaN if `t` holds a NaN or an infinity of each sign. Exact (a
/// maximum does not round).
pub(crate) fn max_all_in_dtype(t: &Tensor) -> Result<Tensor> {
    let (n, dtype) = (t.elem_count(), t.dtype());
    // Indices as floats are exact below 2²⁴ in f32; larger tensors are searched in f64.
    let t = if dtype == DType::F32 && n >= 1 << 24 {
        t.to_dtype(DType::F64)?
    } else {
        t.clone()
    };
    let idx = t.reshape(&[1, n])?.row_argmax()?;
    let m = t.reshape(&[n])?.gather(&idx)?.to_dtype(dtype)?;
    // The argmax skips NaNs: add 0 · Σ t, which is 0 exactly when every value is finite.
    let nan = t
        .scale(0.0)?
        .sum_all_f64()?
        .to_dtype(dtype)?
        .reshape(&[1])?;
    Ok(m.add(&nan)?)
}

/// [`max_all_in_dtype`] in `f64`.
pub(crate) fn max_all(t: &Tensor) -> Result<Tensor> {
    Ok(max_all_in_dtype(t)?.to_dtype(DType::F64)?)
}

/// Per row of a `[B, …]` tensor, `0` when the row's sum is finite (so when every value is,
/// barring an overflowing sum) and NaN otherwise, as `[B]` `f64`: `0 · Σ_j t_ij`.
pub(crate) fn nonfinite_rows(t: &Tensor) -> Result<Tensor> {
    let sums = t.flatten_from_1()?.sum_axis(1)?;
    Ok(sums.scale(0.0)?.to_dtype(DType::F64)?)
}

/// `1 − [a = b]` elementwise: 1 where two whole-number tensors differ.
pub(crate) fn differ(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let same = a.equal(b)?;
    Ok(same.full_like(1.0, same.shape())?.sub(&same)?)
}

/// The rows of the current iterate and the samples of the batch they belong to: all of
/// them, or after PGD's early exit a subset (row `r` is sample `active[r]`).
#[derive(Debug, Clone)]
pub(crate) struct ActiveRows {
    batch: usize,
    active: Vec<usize>,
    /// For a strict subset: for each sample, the row holding it (0 for samples no longer
    /// attacked), and a `[B]` `f64` mask of the samples still attacked.
    expansion: Option<(Vec<usize>, Tensor)>,
}

impl ActiveRows {
    /// Every sample of a batch of `batch`, row `i` being sample `i`.
    pub(crate) fn all(batch: usize) -> Self {
        Self {
            batch,
            active: (0..batch).collect(),
            expansion: None,
        }
    }

    /// Keeps only the rows `keep` (indices into the current rows, ascending).
    pub(crate) fn keep(&mut self, keep: &[usize], device: &Device) -> Result<()> {
        self.active = keep.iter().map(|&r| self.active[r]).collect();
        let mut pos = vec![0usize; self.batch];
        let mut mask = vec![0.0f64; self.batch];
        for (r, &i) in self.active.iter().enumerate() {
            pos[i] = r;
            mask[i] = 1.0;
        }
        self.expansion = Some((pos, f64_vector(&mask, device)?));
        Ok(())
    }

    /// `t: [rows, …]` laid out by sample, `[B, …]`, and the `[B]` mask of the rows that
    /// hold a current value (`None`: all of them). Rows of samples no longer attacked hold
    /// copies of another row and must be masked out.
    pub(crate) fn expand(&self, t: &Tensor) -> Result<(Tensor, Option<&Tensor>)> {
        if t.shape().first() != Some(&self.active.len()) {
            return Err(invalid_data(
                "attack rows",
                format!(
                    "{} rows expected, got a tensor of shape {:?}",
                    self.active.len(),
                    t.shape()
                ),
            ));
        }
        Ok(match &self.expansion {
            None => (t.clone(), None),
            Some((pos, mask)) => (t.index_select_rows(pos)?, Some(mask)),
        })
    }
}
