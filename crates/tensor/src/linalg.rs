//! Dense linear algebra on ndarray views, for `f32` and `f64`.
//!
//! These are the kernels behind the CPU tensor ops, exposed so another numerics project can
//! call them on its own arrays. Inputs may have any strides (transposed or sliced views are
//! fine). By default they run on faer; with the `openblas` feature, GEMM goes through
//! ndarray's BLAS (system OpenBLAS) and the factorisations through LAPACK
//! (`?syevd` through lapack-sys; `?potrf`, `?trtrs` via ndarray-linalg).
//!
//! | routine | faer (default) | `openblas` feature |
//! |---|---|---|
//! | [`matmul`] | `faer::linalg::matmul::matmul` | `sgemm` / `dgemm` |
//! | [`gram`] | `faer::linalg::matmul::triangular::matmul`, lower half | `sgemm` / `dgemm` |
//! | [`symmetric_eigen`] | `self_adjoint_eigen` | `?syevd` (divide and conquer) |
//! | [`cholesky`] | `llt` | `?potrf` |
//! | [`solve_triangular`] | `solve_{lower,upper}_triangular_in_place` | `?trtrs` |

use ndarray::{Array1, Array2, ArrayView2};

use crate::{Element, Error, Result};

pub use crate::sparse_matmul::reference_matmul as sparse_reference_matmul;

/// The backend these routines were built on: `"openblas"` with the `openblas` feature,
/// else `"faer"`. A bench that labels its results with it names what actually ran, however
/// the feature was turned on (this crate's own or a dependent's).
pub const BACKEND: &str = if cfg!(feature = "openblas") {
    "openblas"
} else {
    "faer"
};

/// The CPU kernels these routines run on this machine: [`BACKEND`], the architecture and the
/// instruction-set extensions that faer, its GEMM and this crate's sparse product choose
/// between at run time, e.g. `faer x86_64+avx2+fma` or
/// `faer x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma`.
///
/// Results are the same bits on two machines only if this string is the same: the AVX-512
/// kernels add in another order than the AVX2 ones (OpenBLAS, with the `openblas`
/// feature, also picks its kernels by CPU model, which this string does not name).
///
/// Detected once per process (the features cannot change while it runs).
pub fn cpu_kernels() -> &'static str {
    static KERNELS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KERNELS.get_or_init(|| {
        let mut s = format!("{BACKEND} {}", std::env::consts::ARCH);
        for feature in detected_dispatch_features() {
            s.push('+');
            s.push_str(feature);
        }
        s
    })
}

#[cfg(target_arch = "x86_64")]
fn detected_dispatch_features() -> Vec<&'static str> {
    // The features pulp's x86-v4 / x86-v3 levels and private-gemm-x86 test for, in the
    // order they are listed above (AVX-512 first).
    let mut found = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => {
            $(if is_x86_feature_detected!($f) {
                found.push($f);
            })*
        };
    }
    probe!(
        "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma"
    );
    found
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_dispatch_features() -> Vec<&'static str> {
    Vec::new()
}

/// Which triangle of a triangular matrix holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triangle {
    /// Lower triangular (`L`).
    Lower,
    /// Upper triangular (`U`).
    Upper,
}

/// Which side of the unknown a triangular factor stands on in a solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `op(T) X = B`.
    Left,
    /// `X op(T) = B`.
    Right,
}

/// `a · b` for 2-D views of any layout (pass `x.t()` for a transposed operand).
///
/// For `f32` on a CPU with AVX2 and FMA, a large product whose operand is at most 35%
/// non-zero (MNIST's pixels, about 19%) multiplies only that operand's non-zeros, in one
/// fixed order per entry ([`sparse_reference_matmul`] states it); the result then differs
/// from the dense GEMM's by rounding. Everything else runs on the backend below.
///
/// # Panics
/// If the inner dimensions differ (a broken contract; the tensor layer checks first).
#[track_caller]
pub fn matmul<T: Element>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let k = a.ncols();
    let k2 = b.nrows();
    assert_eq!(k, k2, "matmul: inner dimensions {k} and {k2} differ");
    if let Some(c) = T::sparse_matmul(a, b) {
        return c;
    }
    imp::matmul(a, b)
}

/// The Gram matrix `aᵀ a` (`[n, n]` for `a: [m, n]`): the covariance's product.
///
/// On faer only the lower triangle is multiplied, half of a GEMM's work, then mirrored.
/// faer forms each entry of that triangle exactly as its full product does, and its full
/// `aᵀ a` is exactly symmetric, so the result has the same bits as
/// [`matmul`]`(a.t(), a)` (the tests check it). An operand sparse enough for
/// [`matmul`]'s sparse path takes that path, and the `openblas` feature runs the full
/// `?gemm`, so there too the bits are [`matmul`]'s.
pub fn gram<T: Element>(a: ArrayView2<T>) -> Array2<T> {
    if let Some(c) = T::sparse_matmul(a.t(), a) {
        return c;
    }
    imp::gram(a)
}

/// Symmetric eigendecomposition `a = V diag(λ) Vᵀ`, reading only the lower triangle of `a`.
///
/// Eigenvalues are returned in **descending** order (λ₁ ≥ λ₂ ≥ …, the paper's convention),
/// eigenvector `k` is column `k` of `V`, and each eigenvector's sign is fixed so that its
/// entry of largest magnitude is positive (so results agree across backends).
pub fn symmetric_eigen<T: Element>(a: ArrayView2<T>) -> Result<(Array1<T>, Array2<T>)> {
    let n = square(a, "symmetric_eigen")?;
    if n == 0 {
        return Ok((Array1::zeros(0), Array2::zeros((0, 0))));
    }
    imp::eigh_descending(a)
}

/// The descending, sign-fixed pairs of [`symmetric_eigen`] from a solver's ascending ones,
/// where `column(j)` is the eigenvector of `vals_asc[j]` (column `j` of a column-major `V`).
///
/// Each sign comes from the first entry of largest magnitude (NaNs never win), then the
/// columns are written reversed into the row-major result tile by tile, in parallel: one
/// read of `V` for the signs and one transposing copy, where reversing, flipping and
/// copying as separate strided passes took 41 ms at `n = 2000` (f32, 2 threads).
fn descending_signed<'a, T: Element>(
    vals_asc: &[T],
    column: impl Fn(usize) -> &'a [T] + Sync,
) -> (Array1<T>, Array2<T>) {
    use rayon::prelude::*;

    const LANES: usize = 16;
    const TILE: usize = 64;
    let n = vals_asc.len();
    let big_is_negative = |col: &[T]| {
        let mut lanes = [T::zero(); LANES];
        let mut blocks = col.chunks_exact(LANES);
        for b in &mut blocks {
            for (m, &x) in lanes.iter_mut().zip(b) {
                *m = m.max(x.abs());
            }
        }
        let big = blocks
            .remainder()
            .iter()
            .fold(lanes.iter().fold(T::zero(), |m, &x| m.max(x)), |m, &x| {
                m.max(x.abs())
            });
        big > T::zero()
            && col
                .iter()
                .find(|x| x.abs() == big)
                .is_some_and(|&x| x < T::zero())
    };
    let flip: Vec<bool> = (0..n)
        .into_par_iter()
        .map(|k| big_is_negative(column(n - 1 - k)))
        .collect();
    let mut out = vec![T::zero(); n * n];
    let tile_rows = |(t, rows): (usize, &mut [T])| {
        let i0 = t * TILE;
        let h = rows.len() / n;
        for k in 0..n {
            let col = &column(n - 1 - k)[i0..i0 + h];
            for (r, &x) in col.iter().enumerate() {
                rows[r * n + k] = if flip[k] { -x } else { x };
            }
        }
    };
    if n * n >= crate::cpu::PAR_MIN {
        out.par_chunks_mut(TILE * n).enumerate().for_each(tile_rows);
    } else {
        out.chunks_mut(TILE * n).enumerate().for_each(tile_rows);
    }
    let vals = vals_asc.iter().rev().copied().collect();
    let vecs = Array2::from_shape_vec((n, n), out).expect("n·n elements for an n × n array");
    (vals, vecs)
}

/// Cholesky factor `L` (lower triangular, `a = L Lᵀ`), reading only the lower triangle.
///
/// A non-positive pivot is [`Error::NotPositiveDefinite`] with its zero-based index.
pub fn cholesky<T: Element>(a: ArrayView2<T>) -> Result<Array2<T>> {
    square(a, "cholesky")?;
    let mut l = imp::cholesky(a)?;
    // Both backends leave the strict upper triangle unspecified: make it exactly zero.
    for ((i, j), x) in l.indexed_iter_mut() {
        if j > i {
            *x = T::zero();
        }
    }
    Ok(l)
}

/// Solves `op(T) X = B` for `X`, where `T` is triangular (`tri` says which triangle holds
/// the data; the other is ignored) and `op(T)` is `T` or, with `transpose`, `Tᵀ`.
pub fn solve_triangular<T: Element>(
    t: ArrayView2<T>,
    b: ArrayView2<T>,
    tri: Triangle,
    transpose: bool,
) -> Result<Array2<T>> {
    let n = square(t, "solve_triangular")?;
    if b.nrows() != n {
        return Err(Error::ShapeMismatch {
            op: "solve_triangular",
            lhs: vec![n, n],
            rhs: b.shape().to_vec(),
        });
    }
    // op(T) is lower triangular exactly when (tri == Lower) != transpose.
    let (view, lower) = if transpose {
        (t.t(), tri == Triangle::Upper)
    } else {
        (t, tri == Triangle::Lower)
    };
    imp::solve_triangular(view, b, lower)
}

fn square<T>(a: ArrayView2<T>, op: &'static str) -> Result<usize> {
    let (r, c) = a.dim();
    if r != c {
        return Err(Error::InvalidArgument {
            op,
            reason: format!("matrix is {r}x{c}, not square"),
        });
    }
    Ok(r)
}

#[cfg(not(feature = "openblas"))]
mod imp {
    use faer::{Accum, MatMut, MatRef, Par, Side};
    use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};

    use crate::{Element, Error, Result};

    pub(super) fn faer_ref<T: Element>(a: ArrayView2<'_, T>) -> MatRef<'_, T> {
        let (m, n) = a.dim();
        let s = a.strides();
        // SAFETY: the view guarantees `m × n` elements reachable with these strides, alive
        // for the view's lifetime; faer only reads through the returned reference.
        unsafe { MatRef::from_raw_parts(a.as_ptr(), m, n, s[0], s[1]) }
    }

    pub(super) fn faer_mut<T: Element>(mut a: ArrayViewMut2<'_, T>) -> MatMut<'_, T> {
        let (m, n) = a.dim();
        let (s0, s1) = (a.strides()[0], a.strides()[1]);
        // SAFETY: as above, and the mutable view gives exclusive access.
        unsafe { MatMut::from_raw_parts_mut(a.as_mut_ptr(), m, n, s0, s1) }
    }

    pub(super) fn matmul<T: Element>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
        let (m, n) = (a.nrows(), b.ncols());
        if a.ncols() == 0 || m == 0 || n == 0 {
            return Array2::zeros((m, n));
        }
        // No zero fill: with `Accum::Replace` faer writes every entry of the destination
        // and reads none (its documented contract), so the product lands in fresh memory.
        let mut c = Array2::<T>::uninit((m, n));
        let (s0, s1) = (c.strides()[0], c.strides()[1]);
        // SAFETY: `c` owns `m × n` elements at these strides; faer only writes through the
        // raw pointer (no reference to an uninitialised `T` is formed).
        let dst = unsafe { MatMut::from_raw_parts_mut(c.as_mut_ptr().cast::<T>(), m, n, s0, s1) };
        faer::linalg::matmul::matmul(
            dst,
            Accum::Replace,
            faer_ref(a),
            faer_ref(b),
            T::one(),
            Par::rayon(0),
        );
        // SAFETY: `Accum::Replace` has written all `m × n` entries.
        unsafe { c.assume_init() }
    }

    /// Copies the strict lower triangle of the square, row-major `c` onto its upper one, in
    /// square tiles so that the column-wise reads stay within a few cache lines per row.
    ///
    /// Row tiles go to separate threads: tile `i0` writes only entries `(i, j)` with `j > i`
    /// of its own rows and reads only entries `(j, i)` with `j > i`, which nobody writes.
    fn mirror_lower<T: Element>(c: &mut Array2<T>) {
        use rayon::prelude::*;

        /// The array's buffer, shared by the row tiles under the rule above.
        struct Buffer<T>(*mut T);
        // SAFETY: the tiles touch disjoint entries for writing and only never-written
        // entries for reading (see above), so sharing the pointer cannot race.
        unsafe impl<T: Send> Sync for Buffer<T> {}

        const TILE: usize = 64;
        let n = c.nrows();
        assert!(c.is_standard_layout() && c.ncols() == n);
        let buf = Buffer(c.as_mut_ptr());
        let tile = |i0: usize| {
            let p = &buf;
            for j0 in (i0..n).step_by(TILE) {
                for i in i0..(i0 + TILE).min(n) {
                    for j in j0.max(i + 1)..(j0 + TILE).min(n) {
                        // SAFETY: `i, j < n` index the `n × n` row-major buffer; the write
                        // is to the strict upper triangle of this tile's rows, the read
                        // from the strict lower triangle.
                        unsafe { *p.0.add(i * n + j) = *p.0.add(j * n + i) };
                    }
                }
            }
        };
        if n * n >= crate::cpu::PAR_MIN {
            (0..n).into_par_iter().step_by(TILE).for_each(tile);
        } else {
            (0..n).step_by(TILE).for_each(tile);
        }
    }

    pub(super) fn gram<T: Element>(a: ArrayView2<T>) -> Array2<T> {
        use faer::linalg::matmul::triangular::{BlockStructure, matmul};
        let n = a.ncols();
        let mut c = Array2::<T>::zeros((n, n));
        if a.nrows() == 0 || n == 0 {
            return c;
        }
        matmul(
            faer_mut(c.view_mut()),
            BlockStructure::TriangularLower,
            Accum::Replace,
            faer_ref(a.t()),
            BlockStructure::Rectangular,
            faer_ref(a),
            BlockStructure::Rectangular,
            T::one(),
            Par::rayon(0),
        );
        mirror_lower(&mut c);
        c
    }

    pub(super) fn eigh_descending<T: Element>(a: ArrayView2<T>) -> Result<(Array1<T>, Array2<T>)> {
        let n = a.nrows();
        let evd = faer_ref(a)
            .self_adjoint_eigen(Side::Lower)
            .map_err(|_| Error::EigenNoConvergence { n })?;
        let s = evd.S();
        let vals: Vec<T> = (0..n).map(|i| s[i]).collect();
        let u = evd.U();
        Ok(super::descending_signed(&vals, |j| {
            u.col(j)
                .try_as_col_major()
                .expect("faer returns its eigenvectors as a column-major Mat")
                .as_slice()
        }))
    }

    pub(super) fn cholesky<T: Element>(a: ArrayView2<T>) -> Result<Array2<T>> {
        let n = a.nrows();
        let llt = faer_ref(a).llt(Side::Lower).map_err(|e| match e {
            faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                Error::NotPositiveDefinite {
                    op: "cholesky",
                    pivot: index,
                }
            }
        })?;
        let l = llt.L();
        Ok(Array2::from_shape_fn((n, n), |(i, j)| l[(i, j)]))
    }

    pub(super) fn solve_triangular<T: Element>(
        t: ArrayView2<T>,
        b: ArrayView2<T>,
        lower: bool,
    ) -> Result<Array2<T>> {
        let mut x = b.to_owned();
        if x.is_empty() {
            return Ok(x);
        }
        let (tf, xf) = (faer_ref(t), faer_mut(x.view_mut()));
        if lower {
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(tf, xf, Par::rayon(0));
        } else {
            faer::linalg::triangular_solve::solve_upper_triangular_in_place(tf, xf, Par::rayon(0));
        }
        Ok(x)
    }
}

#[cfg(feature = "openblas")]
mod imp {
    use ndarray::{Array1, Array2, ArrayView2};
    use ndarray_linalg::{Cholesky, Diag, SolveTriangular, UPLO};

    use crate::{DType, Element, Error, Result};

    fn lapack(routine: &'static str, e: ndarray_linalg::error::LinalgError) -> Error {
        match e {
            ndarray_linalg::error::LinalgError::Lapack(
                lax::error::Error::LapackComputationalFailure { return_code },
            ) if routine == "potrf" && return_code > 0 => Error::NotPositiveDefinite {
                op: "cholesky",
                pivot: (return_code - 1) as usize,
            },
            other => Error::Lapack {
                routine,
                message: other.to_string(),
            },
        }
    }

    // ndarray-linalg is generic over its own `Scalar` trait, so go through f64/f32 casts of
    // the owned arrays: `T` is exactly one of them (the `Element` trait is sealed).
    fn cast<T: Element, U: Element>(a: Array2<T>) -> Array2<U> {
        a.mapv(|x| U::of_f64(x.as_f64()))
    }
    /// A column-major copy: ndarray-linalg hands row-major buffers to LAPACK without
    /// swapping `UPLO`, so "lower" would silently read the upper triangle.
    fn fortran<T: Element, U: Element>(a: ArrayView2<T>) -> Array2<U> {
        use ndarray::ShapeBuilder;
        let mut m = Array2::<U>::zeros(a.dim().f());
        m.zip_mut_with(&a, |d, &s| *d = U::of_f64(s.as_f64()));
        m
    }
    fn cast1<T: Element, U: Element>(a: Array1<T>) -> Array1<U> {
        a.mapv(|x| U::of_f64(x.as_f64()))
    }

    pub(super) fn matmul<T: Element>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
        // ndarray's `dot` calls cblas ?gemm for BLAS-compatible layouts when `blas` is on.
        a.dot(&b)
    }

    pub(super) fn gram<T: Element>(a: ArrayView2<T>) -> Array2<T> {
        matmul(a.t(), a)
    }

    pub(super) fn eigh_descending<T: Element>(a: ArrayView2<T>) -> Result<(Array1<T>, Array2<T>)> {
        fn pairs<S: crate::syevd::Syevd + Element>(a: Array2<S>) -> Result<(Array1<S>, Array2<S>)> {
            let n = a.nrows();
            let (vals, vecs) = crate::syevd::eigh_ascending(a)?;
            let cols = vecs
                .as_slice_memory_order()
                .expect("syevd returns its eigenvectors column-major and contiguous");
            let vals = vals.as_slice().expect("a fresh 1-D array is contiguous");
            Ok(super::descending_signed(vals, |j| {
                &cols[j * n..(j + 1) * n]
            }))
        }
        match T::DTYPE {
            DType::F32 => {
                let (v, u) = pairs(fortran::<T, f32>(a))?;
                Ok((cast1(v), cast(u)))
            }
            DType::F64 => {
                let (v, u) = pairs(fortran::<T, f64>(a))?;
                Ok((cast1(v), cast(u)))
            }
        }
    }

    pub(super) fn cholesky<T: Element>(a: ArrayView2<T>) -> Result<Array2<T>> {
        match T::DTYPE {
            DType::F32 => {
                let m: Array2<f32> = fortran(a);
                Ok(cast(
                    m.cholesky(UPLO::Lower).map_err(|e| lapack("potrf", e))?,
                ))
            }
            DType::F64 => {
                let m: Array2<f64> = fortran(a);
                Ok(cast(
                    m.cholesky(UPLO::Lower).map_err(|e| lapack("potrf", e))?,
                ))
            }
        }
    }

    pub(super) fn solve_triangular<T: Element>(
        t: ArrayView2<T>,
        b: ArrayView2<T>,
        lower: bool,
    ) -> Result<Array2<T>> {
        let uplo = if lower { UPLO::Lower } else { UPLO::Upper };
        let err = |e| lapack("trtrs", e);
        match T::DTYPE {
            DType::F32 => {
                let tt: Array2<f32> = fortran(t);
                let bb: Array2<f32> = cast(b.to_owned());
                Ok(cast(
                    tt.solve_triangular(uplo, Diag::NonUnit, &bb).map_err(err)?,
                ))
            }
            DType::F64 => {
                let tt: Array2<f64> = fortran(t);
                let bb: Array2<f64> = cast(b.to_owned());
                Ok(cast(
                    tt.solve_triangular(uplo, Diag::NonUnit, &bb).map_err(err)?,
                ))
            }
        }
    }
}
