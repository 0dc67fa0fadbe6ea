// Deterministic reductions: no atomics, a fixed tree per block, a fixed launch shape that
// depends only on the element count. Every kernel here runs with blocks of RED_THREADS.
//
// * `sum_partial_*` / `max_abs_partial_*`: pass 1 over a fixed number of blocks; each thread
//   accumulates a grid-stride share in f64, the block folds its threads' values in a tree
//   and writes one partial. `sum_final` / `max_abs_final` (one block) fold the partials
//   the same way. The sum accumulates in f64 (as the CPU's `sum_all` does); the max of
//   |x| propagates NaN (a NaN wins every comparison; `fmax` would drop it).
// * `sum_axis_*`: x viewed as [outer, len, inner]; one thread per output adds its `len`
//   terms in index order in the element type (as the CPU's `sum_axis` does).
// * `sum_rows_*`: the case inner = 1 with long rows; one block per row, a fixed tree.

__device__ __forceinline__ double nan_max(double m, double v) {
  return (k_isnan(v) || v > m) ? v : m;
}

// Folds s[0..RED_THREADS) into s[0] with COMBINE, in a fixed tree.
#define BLOCK_TREE(s, COMBINE)                                                      \
  __syncthreads();                                                                  \
  for (u32 w = RED_THREADS / 2; w > 0; w >>= 1) {                                   \
    if (threadIdx.x < w) s[threadIdx.x] = COMBINE(s[threadIdx.x], s[threadIdx.x + w]); \
    __syncthreads();                                                                \
  }

__device__ __forceinline__ double add_f64(double a, double b) { return a + b; }
__device__ __forceinline__ double max_f64(double a, double b) { return nan_max(a, b); }

template <typename T> __device__ void sum_partial_impl(const T* x, u64 n, double* partial) {
  __shared__ double s[RED_THREADS];
  double acc = 0.0;
  GRID_STRIDE(i, n) acc += (double)x[i];
  s[threadIdx.x] = acc;
  BLOCK_TREE(s, add_f64)
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

template <typename T> __device__ void max_abs_partial_impl(const T* x, u64 n, double* partial) {
  __shared__ double s[RED_THREADS];
  double acc = 0.0;
  GRID_STRIDE(i, n) acc = nan_max(acc, k_abs((double)x[i]));
  s[threadIdx.x] = acc;
  BLOCK_TREE(s, max_f64)
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

extern "C" __global__ void sum_final(const double* partial, u64 g, double* out) {
  __shared__ double s[RED_THREADS];
  double acc = 0.0;
  for (u64 i = threadIdx.x; i < g; i += RED_THREADS) acc += partial[i];
  s[threadIdx.x] = acc;
  BLOCK_TREE(s, add_f64)
  if (threadIdx.x == 0) out[0] = s[0];
}

extern "C" __global__ void max_abs_final(const double* partial, u64 g, double* out) {
  __shared__ double s[RED_THREADS];
  double acc = 0.0;
  for (u64 i = threadIdx.x; i < g; i += RED_THREADS) acc = nan_max(acc, partial[i]);
  s[threadIdx.x] = acc;
  BLOCK_TREE(s, max_f64)
  if (threadIdx.x == 0) out[0] = s[0];
}

template <typename T>
__device__ void sum_axis_impl(const T* x, T* out, u64 outer, u64 len, u64 inner) {
  GRID_STRIDE(o, outer * inner) {
    const u64 a = o / inner, b = o % inner;
    const T* p = x + a * len * inner + b;
    T acc = (T)0;
    for (u64 k = 0; k < len; ++k) acc += p[k * inner];
    out[o] = acc;
  }
}

template <typename T> __device__ __forceinline__ T add_t(T a, T b) { return a + b; }

template <typename T> __device__ void sum_rows_impl(const T* x, T* out, u64 rows, u64 len) {
  __shared__ T s[RED_THREADS];
  for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * len;
    T acc = (T)0;
    for (u64 k = threadIdx.x; k < len; k += RED_THREADS) acc += row[k];
    s[threadIdx.x] = acc;
    BLOCK_TREE(s, add_t<T>)
    if (threadIdx.x == 0) out[r] = s[0];
    __syncthreads();
  }
}

#define REDUCE(S, T)                                                                    \
  extern "C" __global__ void sum_partial_##S(const T* x, u64 n, double* partial) {      \
    sum_partial_impl<T>(x, n, partial);                                                 \
  }                                                                                     \
  extern "C" __global__ void max_abs_partial_##S(const T* x, u64 n, double* partial) {  \
    max_abs_partial_impl<T>(x, n, partial);                                             \
  }                                                                                     \
  extern "C" __global__ void sum_axis_##S(const T* x, T* out, u64 outer, u64 len,       \
                                          u64 inner) {                                  \
    sum_axis_impl<T>(x, out, outer, len, inner);                                        \
  }                                                                                     \
  extern "C" __global__ void sum_rows_##S(const T* x, T* out, u64 rows, u64 len) {      \
    sum_rows_impl<T>(x, out, rows, len);                                                \
  }

REDUCE(f32, float)
REDUCE(f64, double)
