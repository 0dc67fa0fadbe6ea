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
    /// Calls `?syevd` with the raw LAPACK arguments.
    ///
    /// # Safety
    /// The pointers must satisfy LAPACK's contract for `?syevd`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn syevd(
        jobz: *const c_char,
        uplo: *const c_char,
        n: *const c_int,
        a: *mut Self,
        lda: *const c_int,
        w: *mut Self,
        work: *mut Self,
        lwork: *const c_int,
        iwork: *mut c_int,
        liwork: *const c_int,
        info: *mut c_int,
    );
    /// A workspace size LAPACK reported in a floating-point slot.
    fn workspace_len(self) -> usize;
}

macro_rules! syevd_impl {
    ($t:ty, $f:ident) => {
        impl Syevd for $t {
            unsafe fn syevd(
                jobz: *const c_char,
                uplo: *const c_char,
                n: *const c_int,
                a: *mut Self,
                lda: *const c_int,
                w: *mut Self,
                work: *mut Self,
                lwork: *const c_int,
                iwork: *mut c_int,
                liwork: *const c_int,
                info: *mut c_int,
            ) {
                // SAFETY: forwarded from the caller's contract.
                unsafe {
                    lapack_sys::$f(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info)
                }
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
    let (jobz, uplo) = (b'V' as c_char, b'L' as c_char);
    let mut info: c_int = 0;

    // Workspace query (lwork = liwork = −1).
    let (mut work_q, mut iwork_q, query) = (S::default(), 0 as c_int, -1 as c_int);
    // SAFETY: `v` is n × n column-major with leading dimension n, `w` holds n values, and
    // a query writes one element to each workspace pointer.
    unsafe {
        S::syevd(
            &jobz,
            &uplo,
            &ni,
            v.as_mut_ptr(),
            &ni,
            w.as_mut_ptr(),
            &mut work_q,
            &query,
            &mut iwork_q,
            &query,
            &mut info,
        );
    }
    if info != 0 {
        return Err(failure(info, n));
    }
    let lwork = work_q.workspace_len().max(1);
    let liwork = usize::try_from(iwork_q).unwrap_or(0).max(1);
    let (lwork_i, liwork_i) = (
        c_int::try_from(lwork).map_err(|_| too_big())?,
        c_int::try_from(liwork).map_err(|_| too_big())?,
    );
    let mut work = vec![S::default(); lwork];
    let mut iwork = vec![0 as c_int; liwork];
    // SAFETY: as above, with workspaces of the sizes LAPACK asked for.
    unsafe {
        S::syevd(
            &jobz,
            &uplo,
            &ni,
            v.as_mut_ptr(),
            &ni,
            w.as_mut_ptr(),
            work.as_mut_ptr(),
            &lwork_i,
            iwork.as_mut_ptr(),
            &liwork_i,
            &mut info,
        );
    }
    if info != 0 {
        return Err(failure(info, n));
    }
    Ok((Array1::from(w), v))
}
