// Row argmax, row selection, gather / scatter through float-valued indices, and the stable
// descending argsort.
//
// Index arguments stored as floats are checked as the CPU checks them (a whole number below
// the bound); a bad one is recorded with `report_bad_index` and the host turns it into
// `Error::InvalidArgument` at its next read of device data. The error codes are the
// `BadIndex` codes of `cuda/device.rs`.

template <typename T> __device__ void argmax_rows_impl(const T* x, T* out, u64 rows, u64 cols) {
  GRID_STRIDE(r, rows) {
    const T* row = x + r * cols;
    u64 best = 0;
    for (u64 j = 1; j < cols; ++j)
      if (row[j] > row[best]) best = j;  // first maximum wins; NaN is never greater
    out[r] = (T)best;
  }
}

template <typename T>
__device__ void index_select_impl(const T* x, const u64* idx, T* out, u64 n, u64 row_len) {
  GRID_STRIDE(i, n) out[i] = x[idx[i / row_len] * row_len + i % row_len];
}

template <typename T>
__device__ void gather_impl(const T* x, const T* idx, T* out, u64 n, u64 len, u64* flag, u64 code) {
  GRID_STRIDE(k, n) {
    const double f = (double)idx[k];
    if (whole_below(f, len)) {
      out[k] = x[(u64)f];
    } else {
      out[k] = k_nan<T>();
      report_bad_index(flag, code, f, len);
    }
  }
}

// Scatter, pass 1: winner[j] = 1 + the largest k with idx[k] = j (a max is independent of
// the order the atomics land in, so the result is deterministic).
template <typename T>
__device__ void scatter_claim_impl(const T* idx, u64 n, u64 len, u64* winner, u64* flag, u64 code) {
  GRID_STRIDE(k, n) {
    const double f = (double)idx[k];
    if (whole_below(f, len)) {
      atomicMax(winner + (u64)f, k + 1);
    } else {
      report_bad_index(flag, code, f, len);
    }
  }
}

// Scatter, pass 2: out[j] = x[k] for the winning k of each claimed j (a later k wins).
template <typename T>
__device__ void scatter_write_impl(const T* x, const T* idx, T* out, u64 n, u64 len,
                                   const u64* winner) {
  GRID_STRIDE(k, n) {
    const double f = (double)idx[k];
    if (whole_below(f, len) && winner[(u64)f] == k + 1) out[(u64)f] = x[k];
  }
}

// Keys whose signed order is Rust's `total_cmp` order (−NaN < −∞ < … < −0 < +0 < … < +∞ < NaN).
__device__ __forceinline__ i64 order_key(float v) {
  int b = __float_as_int(v);
  b ^= (int)(((unsigned)(b >> 31)) >> 1);
  return (i64)b;
}
__device__ __forceinline__ i64 order_key(double v) {
  i64 b = __double_as_longlong(v);
  b ^= (i64)(((u64)(b >> 63)) >> 1);
  return b;
}

// Stable descending argsort by rank counting: element i goes to position
// #{j : key_j > key_i or (key_j = key_i and j < i)}. O(n²) work in shared-memory tiles, for
// the vectors of at most a few thousand entries it is used on. Launch with
// ceil(n / RED_THREADS) blocks of RED_THREADS threads.
template <typename T> __device__ void argsort_desc_impl(const T* x, T* out, u64 n) {
  __shared__ i64 tile[RED_THREADS];
  const u64 i = (u64)blockIdx.x * RED_THREADS + threadIdx.x;
  const bool active = i < n;
  const i64 ki = active ? order_key(x[i]) : 0;
  u64 rank = 0;
  for (u64 base = 0; base < n; base += RED_THREADS) {
    const u64 j = base + threadIdx.x;
    tile[threadIdx.x] = j < n ? order_key(x[j]) : 0;
    __syncthreads();
    const u64 m = (n - base) < RED_THREADS ? (n - base) : RED_THREADS;
    if (active) {
      for (u64 t = 0; t < m; ++t) {
        const i64 kj = tile[t];
        rank += (kj > ki || (kj == ki && base + t < i)) ? 1 : 0;
      }
    }
    __syncthreads();
  }
  if (active) out[rank] = (T)i;
}

#define SELECT(S, T)                                                                          \
  extern "C" __global__ void argmax_rows_##S(const T* x, T* out, u64 rows, u64 cols) {        \
    argmax_rows_impl<T>(x, out, rows, cols);                                                  \
  }                                                                                           \
  extern "C" __global__ void index_select_##S(const T* x, const u64* idx, T* out, u64 n,      \
                                              u64 row_len) {                                  \
    index_select_impl<T>(x, idx, out, n, row_len);                                            \
  }                                                                                           \
  extern "C" __global__ void gather_##S(const T* x, const T* idx, T* out, u64 n, u64 len,     \
                                        u64* flag, u64 code) {                                \
    gather_impl<T>(x, idx, out, n, len, flag, code);                                          \
  }                                                                                           \
  extern "C" __global__ void scatter_claim_##S(const T* idx, u64 n, u64 len, u64* winner,     \
                                               u64* flag, u64 code) {                         \
    scatter_claim_impl<T>(idx, n, len, winner, flag, code);                                   \
  }                                                                                           \
  extern "C" __global__ void scatter_write_##S(const T* x, const T* idx, T* out, u64 n,       \
                                               u64 len, const u64* winner) {                  \
    scatter_write_impl<T>(x, idx, out, n, len, winner);                                       \
  }                                                                                           \
  extern "C" __global__ void argsort_desc_##S(const T* x, T* out, u64 n) {                    \
    argsort_desc_impl<T>(x, out, n);                                                          \
  }

SELECT(f32, float)
SELECT(f64, double)
