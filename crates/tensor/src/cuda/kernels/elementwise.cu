// Elementwise maps, broadcasts, casts, masked choice, materialised permutations and the
// fused Adam update.
//
// The op codes of `unary_*` and `binary_*` are the positions of `UnaryOp` and `BinaryOp` in
// `cuda/elementwise.rs` (`unary_code`, `binary_code`). Each formula is the CPU kernel's
// (`cpu/elementwise.rs`), operation for operation; the module is compiled with
// `--fmad=false`, so +, −, ×, ÷ and √ round exactly as on the CPU, and only the
// transcendental functions (exp, log, f64 tanh) may differ from the host's libm by an ulp.

// The CPU's f32 tanh (`dtype::tanh_f32`): x·P(x²)/Q(x²) on x clamped to ±7.905311, with
// Eigen's minimax coefficients. Same constants, same operation order: same bits.
__device__ __forceinline__ float k_tanh(float x) {
  const float c = 7.905311f;
  if (x < -c) x = -c;
  if (x > c) x = c;
  const float x2 = x * x;
  float p = -2.7607685e-16f;
  p = p * x2 + 2.000188e-13f;
  p = p * x2 + -8.604672e-11f;
  p = p * x2 + 5.122297e-8f;
  p = p * x2 + 1.4857224e-5f;
  p = p * x2 + 6.3726193e-4f;
  p = p * x2 + 4.8935246e-3f;
  p = p * x;
  float q = 1.1982584e-6f;
  q = q * x2 + 1.185347e-4f;
  q = q * x2 + 2.2684346e-3f;
  q = q * x2 + 4.893525e-3f;
  return p / q;
}
__device__ __forceinline__ double k_tanh(double x) { return tanh(x); }

template <typename T> __device__ __forceinline__ T unary_apply(int op, T x) {
  const T zero = (T)0, one = (T)1;
  switch (op) {
    case 0: return -x;                                  // Neg
    case 1: return k_exp(x);                            // Exp
    case 2: return k_log(x);                            // Log
    case 3: return k_sqrt(x);                           // Sqrt
    case 4: return x * x;                               // Sqr
    case 5: return k_abs(x);                            // Abs
    case 6: return one / x;                             // Recip
    case 7: return k_tanh(x);                           // Tanh
    case 8: return x > zero ? x : zero;                 // Relu (NaN → 0, as on the CPU)
    case 9: return one / (one + k_exp(-x));             // Sigmoid
    case 10: return x > zero ? one : (x < zero ? -one : x);  // Sign (±0 and NaN stay)
    default: return k_nan<T>();
  }
}

template <typename T> __device__ __forceinline__ T binary_apply(int op, T a, T b) {
  const T zero = (T)0, one = (T)1;
  switch (op) {
    case 0: return a + b;                               // Add
    case 1: return a - b;                               // Sub
    case 2: return a * b;                               // Mul
    case 3: return a / b;                               // Div
    case 4: return (k_isnan(a) || a >= b) ? a : b;      // Maximum (NaN in a propagates)
    case 5: return (k_isnan(a) || a <= b) ? a : b;      // Minimum
    case 6: return b * (one - a * a);                   // TanhBackward: a = y, b = grad
    case 7: return b * a * (one - a);                   // SigmoidBackward: a = y, b = grad
    case 8: return a > zero ? b : zero;                 // ReluBackward: a = x, b = grad
    case 9: return a > b ? one : zero;                  // Greater (NaN → 0)
    case 10: return a == b ? one : zero;                // Equal (NaN → 0)
    default: return k_nan<T>();
  }
}

template <typename T> __device__ void unary_impl(const T* x, T* out, u64 n, int op) {
  GRID_STRIDE(i, n) out[i] = unary_apply<T>(op, x[i]);
}

template <typename T> __device__ void binary_impl(const T* a, const T* b, T* out, u64 n, int op) {
  GRID_STRIDE(i, n) out[i] = binary_apply<T>(op, a[i], b[i]);
}

// out = a op v, with the 1-D v of length `len` running along an axis whose trailing
// extent (the product of the later dimensions) is `inner`.
template <typename T>
__device__ void broadcast_impl(const T* a, const T* v, T* out, u64 n, u64 inner, u64 len, int op) {
  GRID_STRIDE(i, n) out[i] = binary_apply<T>(op, a[i], v[(i / inner) % len]);
}

template <typename T> __device__ void affine_impl(const T* x, T* out, u64 n, T mul, T add) {
  GRID_STRIDE(i, n) out[i] = x[i] * mul + add;
}

template <typename T> __device__ void clamp_impl(const T* x, T* out, u64 n, T lo, T hi) {
  GRID_STRIDE(i, n) {
    const T v = x[i];
    out[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

// mask ≠ 0 ? t : f; the mask has one entry per `row_len` elements (1: elementwise).
template <typename T>
__device__ void where_impl(const T* mask, const T* t, const T* f, T* out, u64 n, u64 row_len) {
  GRID_STRIDE(i, n) out[i] = mask[i / row_len] != (T)0 ? t[i] : f[i];
}

// out (row-major over `dims`) = x read with `strides` (the input strides of the permuted axes).
template <typename T>
__device__ void permute_impl(const T* x, T* out, u64 n, int rank, Dims8 dims, Dims8 strides) {
  GRID_STRIDE(i, n) {
    u64 rem = i, off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const u64 c = rem % dims.v[d];
      rem /= dims.v[d];
      off += c * strides.v[d];
    }
    out[i] = x[off];
  }
}

// One Adam update per element, the CPU's `cpu/optim.rs` operation for operation (the `+ 0`
// terms included). mode 0: Adam; 1: AMSGrad with the running maximum `vmax`; 2: AMSGrad's
// first step (`vmax` is not read). `ovmax` is written in modes 1 and 2 only.
template <typename T>
__device__ void adam_impl(const T* th, const T* g, const T* m, const T* v, const T* vmax, T* oth,
                          T* om, T* ov, T* ovmax, u64 n, int mode, int decay, T b1, T omb1,
                          T b2, T omb2, T eps, T wd, T step, T inv_sqrt_bias2) {
  const T zero = (T)0;
  GRID_STRIDE(i, n) {
    const T theta = th[i];
    const T gi = decay ? g[i] + (theta * wd + zero) : g[i];
    const T mi = (m[i] * b1 + zero) + (gi * omb1 + zero);
    const T vi = (v[i] * b2 + zero) + ((gi * gi) * omb2 + zero);
    T vhat = vi;
    if (mode == 1) {
      const T p = vmax[i];
      vhat = (k_isnan(p) || p >= vi) ? p : vi;
    }
    const T denom = (k_sqrt(vhat) * inv_sqrt_bias2 + zero) + eps;
    oth[i] = theta - ((mi / denom) * step + zero);
    om[i] = mi;
    ov[i] = vi;
    if (mode != 0) ovmax[i] = vhat;
  }
}

#define ELEMENTWISE(S, T)                                                                     \
  extern "C" __global__ void unary_##S(const T* x, T* out, u64 n, int op) {                   \
    unary_impl<T>(x, out, n, op);                                                             \
  }                                                                                           \
  extern "C" __global__ void binary_##S(const T* a, const T* b, T* out, u64 n, int op) {      \
    binary_impl<T>(a, b, out, n, op);                                                         \
  }                                                                                           \
  extern "C" __global__ void broadcast_##S(const T* a, const T* v, T* out, u64 n, u64 inner,  \
                                           u64 len, int op) {                                 \
    broadcast_impl<T>(a, v, out, n, inner, len, op);                                          \
  }                                                                                           \
  extern "C" __global__ void affine_##S(const T* x, T* out, u64 n, T mul, T add) {            \
    affine_impl<T>(x, out, n, mul, add);                                                      \
  }                                                                                           \
  extern "C" __global__ void clamp_##S(const T* x, T* out, u64 n, T lo, T hi) {               \
    clamp_impl<T>(x, out, n, lo, hi);                                                         \
  }                                                                                           \
  extern "C" __global__ void where_##S(const T* m, const T* t, const T* f, T* out, u64 n,     \
                                       u64 row_len) {                                         \
    where_impl<T>(m, t, f, out, n, row_len);                                                  \
  }                                                                                           \
  extern "C" __global__ void permute_##S(const T* x, T* out, u64 n, int rank, Dims8 dims,     \
                                         Dims8 strides) {                                     \
    permute_impl<T>(x, out, n, rank, dims, strides);                                          \
  }                                                                                           \
  extern "C" __global__ void adam_##S(const T* th, const T* g, const T* m, const T* v,        \
                                      const T* vmax, T* oth, T* om, T* ov, T* ovmax, u64 n,   \
                                      int mode, int decay, T b1, T omb1, T b2, T omb2, T eps, \
                                      T wd, T step, T inv_sqrt_bias2) {                       \
    adam_impl<T>(th, g, m, v, vmax, oth, om, ov, ovmax, n, mode, decay, b1, omb1, b2, omb2,  \
                 eps, wd, step, inv_sqrt_bias2);                                              \
  }

ELEMENTWISE(f32, float)
ELEMENTWISE(f64, double)

extern "C" __global__ void cast_f32_f64(const float* x, double* out, u64 n) {
  GRID_STRIDE(i, n) out[i] = (double)x[i];
}

extern "C" __global__ void cast_f64_f32(const double* x, float* out, u64 n) {
  GRID_STRIDE(i, n) out[i] = (float)x[i];
}
