// Row-wise log-softmax and softmax cross-entropy, 2×2 max-pooling (forward, backward,
// gather) and the im2col / col2im maps of the convolution.
//
// Formulas and summation orders are the CPU kernels' (`cpu/elementwise.rs`, `cpu/pool.rs`):
// one thread per row for the softmax (rows are short: the classes), one thread per output
// for the rest. Pool argmax entries are checked as the CPU checks them (codes of
// `BadIndex` in `cuda/device.rs`).

template <typename T> __device__ __forceinline__ void row_max_logsum(const T* row, u64 cols, T* mx, T* ls) {
  T m = -k_inf<T>();
  for (u64 j = 0; j < cols; ++j) m = row[j] > m ? row[j] : m;
  T s = (T)0;
  for (u64 j = 0; j < cols; ++j) s += k_exp(row[j] - m);
  *mx = m;
  *ls = k_log(s);
}

template <typename T> __device__ void log_softmax_impl(const T* x, T* out, u64 rows, u64 cols) {
  GRID_STRIDE(r, rows) {
    const T* row = x + r * cols;
    T m, ls;
    row_max_logsum<T>(row, cols, &m, &ls);
    for (u64 j = 0; j < cols; ++j) out[r * cols + j] = (row[j] - m) - ls;
  }
}

// loss[r] = −log softmax(x_r)[y_r]; grad[r, j] = softmax(x_r)[j] − [j = y_r].
template <typename T>
__device__ void cross_entropy_impl(const T* x, const u64* labels, T* loss, T* grad, u64 rows, u64 cols) {
  GRID_STRIDE(r, rows) {
    const T* row = x + r * cols;
    T m, ls;
    row_max_logsum<T>(row, cols, &m, &ls);
    const u64 y = labels[r];
    for (u64 j = 0; j < cols; ++j) {
      const T logp = (row[j] - m) - ls;
      T g = k_exp(logp);
      if (j == y) {
        g -= (T)1;
        loss[r] = -logp;
      }
      grad[r * cols + j] = g;
    }
  }
}

// y, arg: [planes, oh, ow] from x: [planes, h, w]; a later window element replaces the
// maximum when it is greater or NaN (PyTorch's rule), arg = 2·dy + dx.
template <typename T>
__device__ void max_pool_impl(const T* x, T* y, T* arg, u64 planes, u64 h, u64 w, u64 oh, u64 ow) {
  GRID_STRIDE(o, planes * oh * ow) {
    const u64 p = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
    const T* base = x + p * h * w + 2 * i * w + 2 * j;
    const T v[4] = {base[0], base[1], base[w], base[w + 1]};
    T best = v[0];
    int a = 0;
    for (int k = 1; k < 4; ++k) {
      if (v[k] > best || k_isnan(v[k])) {
        best = v[k];
        a = k;
      }
    }
    y[o] = best;
    arg[o] = (T)a;
  }
}

// The window offset stored in an argmax entry, or −1 when it is not 0, 1, 2 or 3.
template <typename T> __device__ __forceinline__ int window_offset(T a) {
  const double v = (double)a;
  if (!(v >= 0.0) || v >= 4.0) return -1;
  const int k = (int)v;
  return (double)k == v ? k : -1;
}

// dx: [planes, in_h, in_w], zero-filled by the caller; g, arg: [planes, oh, ow].
template <typename T>
__device__ void max_pool_backward_impl(const T* g, const T* arg, T* dx, u64 planes, u64 oh, u64 ow,
                                       u64 in_h, u64 in_w, u64* flag, u64 code) {
  GRID_STRIDE(o, planes * oh * ow) {
    const int k = window_offset<T>(arg[o]);
    if (k < 0) {
      report_bad_index(flag, code, (double)arg[o], 4);
      continue;
    }
    const u64 p = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
    dx[p * in_h * in_w + (2 * i + k / 2) * in_w + 2 * j + k % 2] = g[o];
  }
}

// y[o] = t at the window offset of arg[o]; t: [planes, h, w], y, arg: [planes, oh, ow].
template <typename T>
__device__ void max_pool_gather_impl(const T* t, const T* arg, T* y, u64 planes, u64 h, u64 w, u64 oh,
                                     u64 ow, u64* flag, u64 code) {
  GRID_STRIDE(o, planes * oh * ow) {
    const int k = window_offset<T>(arg[o]);
    if (k < 0) {
      y[o] = k_nan<T>();
      report_bad_index(flag, code, (double)arg[o], 4);
      continue;
    }
    const u64 p = o / (oh * ow), r = o % (oh * ow), i = r / ow, j = r % ow;
    y[o] = t[p * h * w + (2 * i + k / 2) * w + 2 * j + k % 2];
  }
}

// col: [s, K, P] with K = (c, p, q) over C×KH×KW and P = (i, j) over OH×OW:
// col[s, (c,p,q), (i,j)] = x[s, c, i+p, j+q].
template <typename T>
__device__ void im2col_impl(const T* x, T* col, u64 samples, u64 c, u64 h, u64 w, u64 kh, u64 kw,
                            u64 oh, u64 ow) {
  const u64 np = oh * ow, nk = c * kh * kw;
  GRID_STRIDE(e, samples * nk * np) {
    const u64 s = e / (nk * np), rest = e % (nk * np), k = rest / np, pos = rest % np;
    const u64 ci = k / (kh * kw), pq = k % (kh * kw), p = pq / kw, q = pq % kw;
    const u64 i = pos / ow, j = pos % ow;
    col[e] = x[((s * c + ci) * h + i + p) * w + j + q];
  }
}

// The adjoint of im2col: dx[s, c, r, t] = Σ_{p,q} dcol[s, (c,p,q), (r−p, t−q)] over the
// in-range terms, added in (p, q) order from zero (the CPU's col2im order).
template <typename T>
__device__ void col2im_impl(const T* dcol, T* dx, u64 samples, u64 c, u64 h, u64 w, u64 kh, u64 kw,
                            u64 oh, u64 ow) {
  const u64 np = oh * ow, nk = c * kh * kw;
  GRID_STRIDE(e, samples * c * h * w) {
    const u64 s = e / (c * h * w), rest = e % (c * h * w);
    const u64 ci = rest / (h * w), r = (rest / w) % h, t = rest % w;
    T acc = (T)0;
    for (u64 p = 0; p < kh; ++p) {
      if (r < p || r - p >= oh) continue;
      for (u64 q = 0; q < kw; ++q) {
        if (t < q || t - q >= ow) continue;
        acc += dcol[(s * nk + (ci * kh + p) * kw + q) * np + (r - p) * ow + (t - q)];
      }
    }
    dx[e] = acc;
  }
}

#define NN(S, T)                                                                              \
  extern "C" __global__ void log_softmax_##S(const T* x, T* out, u64 rows, u64 cols) {        \
    log_softmax_impl<T>(x, out, rows, cols);                                                  \
  }                                                                                           \
  extern "C" __global__ void cross_entropy_##S(const T* x, const u64* labels, T* loss,        \
                                               T* grad, u64 rows, u64 cols) {                 \
    cross_entropy_impl<T>(x, labels, loss, grad, rows, cols);                                 \
  }                                                                                           \
  extern "C" __global__ void max_pool_##S(const T* x, T* y, T* arg, u64 planes, u64 h, u64 w, \
                                          u64 oh, u64 ow) {                                   \
    max_pool_impl<T>(x, y, arg, planes, h, w, oh, ow);                                        \
  }                                                                                           \
  extern "C" __global__ void max_pool_backward_##S(const T* g, const T* arg, T* dx,           \
                                                   u64 planes, u64 oh, u64 ow, u64 in_h,      \
                                                   u64 in_w, u64* flag, u64 code) {           \
    max_pool_backward_impl<T>(g, arg, dx, planes, oh, ow, in_h, in_w, flag, code);            \
  }                                                                                           \
  extern "C" __global__ void max_pool_gather_##S(const T* t, const T* arg, T* y, u64 planes,  \
                                                 u64 h, u64 w, u64 oh, u64 ow, u64* flag,     \
                                                 u64 code) {                                  \
    max_pool_gather_impl<T>(t, arg, y, planes, h, w, oh, ow, flag, code);                     \
  }                                                                                           \
  extern "C" __global__ void im2col_##S(const T* x, T* col, u64 samples, u64 c, u64 h, u64 w, \
                                        u64 kh, u64 kw, u64 oh, u64 ow) {                     \
    im2col_impl<T>(x, col, samples, c, h, w, kh, kw, oh, ow);                                 \
  }                                                                                           \
  extern "C" __global__ void col2im_##S(const T* dcol, T* dx, u64 samples, u64 c, u64 h,      \
                                        u64 w, u64 kh, u64 kw, u64 oh, u64 ow) {              \
    col2im_impl<T>(dcol, dx, samples, c, h, w, kh, kw, oh, ow);                               \
  }

NN(f32, float)
NN(f64, double)
