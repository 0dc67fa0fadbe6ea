// Post-processing of the cuSOLVER factorisations (column-major on the device, row-major in
// the tensor): eigenvalues to descending order with the CPU's sign convention, and the
// strict upper triangle of a Cholesky factor set to zero.

// sign[k] = −1 when the first entry of largest magnitude of column k of the column-major
// n×n matrix v is negative, else +1 (`linalg::symmetric_eigen`'s rule).
template <typename T> __device__ void eigen_signs_impl(const T* v, T* sign, u64 n) {
  GRID_STRIDE(k, n) {
    const T* col = v + k * n;
    T big = (T)0;
    for (u64 i = 0; i < n; ++i)
      if (k_abs(col[i]) > k_abs(big)) big = col[i];
    sign[k] = big < (T)0 ? (T)-1 : (T)1;
  }
}

// Row-major vecs[i, j] = sign[n−1−j] · v[i, n−1−j] (v column-major, ascending) and
// vals[j] = w[n−1−j]: descending order, eigenvector j in column j.
template <typename T>
__device__ void eigen_finish_impl(const T* v, const T* w, const T* sign, T* vecs, T* vals, u64 n) {
  GRID_STRIDE(e, n * n) {
    const u64 i = e / n, j = e % n, src = n - 1 - j;
    vecs[e] = sign[src] * v[src * n + i];
    if (i == 0) vals[j] = w[src];
  }
}

// a[i, j] = 0 for j > i in the row-major n×n matrix a.
template <typename T> __device__ void zero_upper_impl(T* a, u64 n) {
  GRID_STRIDE(e, n * n) {
    if (e % n > e / n) a[e] = (T)0;
  }
}

#define LINALG(S, T)                                                                          \
  extern "C" __global__ void eigen_signs_##S(const T* v, T* sign, u64 n) {                    \
    eigen_signs_impl<T>(v, sign, n);                                                          \
  }                                                                                           \
  extern "C" __global__ void eigen_finish_##S(const T* v, const T* w, const T* sign, T* vecs, \
                                              T* vals, u64 n) {                               \
    eigen_finish_impl<T>(v, w, sign, vecs, vals, n);                                          \
  }                                                                                           \
  extern "C" __global__ void zero_upper_##S(T* a, u64 n) { zero_upper_impl<T>(a, n); }

LINALG(f32, float)
LINALG(f64, double)
