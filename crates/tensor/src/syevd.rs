//! LAPACK's divide-and-conquer symmetric eigensolver (`ssyevd` / `dsyevd`), the `openblas`
//! feature's `eigh`.
//!
//! ndarray-linalg's `Eigh` calls the QR-iteration driver `?syev`, which measured 6.5 s at
//! N = 2000 (f32, 2 threads) against 0.57 s for `?syevd` and 0.65 s for faer in the same
//! sitting (2026-12-05); so this file calls `?syevd` through lapack-sys directly.

use std::os::raw::{c_char, c_int};

use ndarray::{Array1, Array2, ShapeBuilder};

use crate::{Error, Result};

/// The two LAPACK precisions.
pub(crate) trait Syevd: Copy + Default {
    /// `?syevd` with `jobz = 'V'`, `uplo = 'L'` on the column-major n × n `a` (leading
    /// dimension n); `lwork = liwork = −1` is LAPACK's workspace query. Returns `info`.
    fn syevd(
        n: c_int,
        a: &mut [Self],
        w: &mut [Self],
        work: &mut [Self],
        iwork: &mut [c_int],
    ) -> c_int;
    /// A workspace size LAPACK reported in a floating-point slot.
    fn workspace_len(self) -> usize;
}

macro_rules! syevd_impl {
    ($t:ty, $f:ident) => {
        impl Syevd for $t {
            fn syevd(
                n: c_int,
                a: &mut [Self],
                w: &mut [Self],
                work: &mut [Self],
                iwork: &mut [c_int],
            ) -> c_int {
                let (jobz, uplo, mut info) = (b'V' as c_char, b'L' as c_char, 0);
                let query = work.len() == 1 && iwork.len() == 1;
                let lwork = if query { -1 } else { work.len() as c_int };
                let liwork = if query { -1 } else { iwork.len() as c_int };
                debug_assert!(a.len() == (n as usize).pow(2) && w.len() == n as usize);
                // SAFETY: `a` holds n × n values with leading dimension n and `w` n values;
                // the workspaces are as long as `lwork`/`liwork` say (a query writes one
                // element to each).
                unsafe {
                    lapack_sys::$f(
                        &jobz,
                        &uplo,
                        &n,
                        a.as_mut_ptr(),
                        &n,
                        w.as_mut_ptr(),
                        work.as_mut_ptr(),
                        &lwork,
                        iwork.as_mut_ptr(),
                        &liwork,
                        &mut info,
                    )
                };
                info
            }
            fn workspace_len(self) -> usize {
                // LAPACK rounds the size into the float; `ceil` guards against it landing
                // one below an integer.
                self.ceil() as usize
            }
        }
    };
}
syevd_impl!(f32, ssyevd_);
syevd_impl!(f64, dsyevd_);

fn failure(info: c_int, n: usize) -> Error {
    if info > 0 {
        // `?syevd`: "the algorithm failed to compute an eigenvalue while working on the
        // submatrix lying in rows and columns info/(n+1) through mod(info, n+1)".
        Error::EigenNoConvergence { n }
    } else {
        Error::Lapack {
            routine: "syevd",
            message: format!("argument {} had an illegal value", -info),
        }
    }
}

/// Eigenvalues in ascending order and the eigenvectors as columns, reading the lower
/// triangle of the square `a` (consumed: a column-major `a` becomes the eigenvectors
/// without a copy).
pub(crate) fn eigh_ascending<S: Syevd>(a: Array2<S>) -> Result<(Array1<S>, Array2<S>)> {
    let n = a.nrows();
    let too_big = || Error::InvalidArgument {
        op: "symmetric_eigen",
        reason: format!("n = {n} is beyond LAPACK's 32-bit indices"),
    };
    let ni = c_int::try_from(n).map_err(|_| too_big())?;
    // Column-major, so LAPACK's "lower" is our lower triangle; it becomes the eigenvectors.
    let mut v = if a.t().is_standard_layout() {
        a
    } else {
        let mut f = Array2::<S>::default((n, n).f());
        f.assign(&a);
        f
    };
    let mut w = vec![S::default(); n];
    let a = v
        .as_slice_memory_order_mut()
        .expect("column-major and contiguous");
    let (mut work_q, mut iwork_q) = ([S::default()], [0 as c_int]);
    let info = S::syevd(ni, a, &mut w, &mut work_q, &mut iwork_q);
    if info != 0 {
        return Err(failure(info, n));
    }
    // At least 2 each, so a real call never looks like a query to `Syevd::syevd`.
    let lwork = work_q[0].workspace_len().max(2);
    let liwork = usize::try_from(iwork_q[0]).unwrap_or(0).max(2);
    if c_int::try_from(lwork.max(liwork)).is_err() {
        return Err(too_big());
    }
    let mut work = vec![S::default(); lwork];
    let mut iwork = vec![0 as c_int; liwork];
    let info = S::syevd(ni, a, &mut w, &mut work, &mut iwork);
    if info != 0 {
        return Err(failure(info, n));
    }
    Ok((Array1::from(w), v))
}
