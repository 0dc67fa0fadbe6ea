// Definitions shared by every kernel module; the backend prepends this file to each module's
// source before compiling it with NVRTC (which has no system headers: no <stdint.h>, no NAN
// or INFINITY macros).
//
// Conventions: every element count and index is a 64-bit `u64`; elementwise kernels loop
// with a grid stride over any launch size; reductions use blocks of exactly RED_THREADS
// threads and add in a fixed tree (no atomics), so equal inputs give equal bits.

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;

#define RED_THREADS 256

#define GRID_STRIDE(i, n)                                                         \
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n);          \
       i += (u64)blockDim.x * gridDim.x)

template <typename T> __device__ __forceinline__ T k_nan();
template <> __device__ __forceinline__ float k_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double k_nan<double>() {
  return __longlong_as_double(0x7ff8000000000000LL);
}
template <typename T> __device__ __forceinline__ T k_inf();
template <> __device__ __forceinline__ float k_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double k_inf<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ float k_exp(float x) { return expf(x); }
__device__ __forceinline__ double k_exp(double x) { return exp(x); }
__device__ __forceinline__ float k_log(float x) { return logf(x); }
__device__ __forceinline__ double k_log(double x) { return log(x); }
__device__ __forceinline__ float k_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double k_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float k_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double k_abs(double x) { return fabs(x); }
template <typename T> __device__ __forceinline__ bool k_isnan(T x) { return x != x; }

// Up to eight dimensions or strides, passed by value (a Rust `[u64; 8]`).
struct Dims8 {
  u64 v[8];
};

// Records the first bad index of this launch sequence in the calling thread's error flag
// `flag = [code, value bits, bound]`; the host reports it at its next read of device data.
__device__ __forceinline__ void report_bad_index(u64* flag, u64 code, double value, u64 bound) {
  if (atomicCAS(flag, 0ULL, code) == 0ULL) {
    flag[1] = (u64)__double_as_longlong(value);
    flag[2] = bound;
  }
}

// A whole number in [0, bound) stored as a float, as the CPU's `index_of` accepts.
__device__ __forceinline__ bool whole_below(double f, u64 bound) {
  return f >= 0.0 && floor(f) == f && f < (double)bound;
}
