// conv_transpose2d CUDA kernels (compiled by nvcc for pyseg._C and by g++ for the emulator).
//
// The passes run on the common GEMM core (common/gemm_kernels.cuh, see
// conv_transpose_launch.h). What is here: the int64 fallback for sizes whose indices do not
// fit that core's 32-bit arithmetic, its slice reduction, and the bias gradient.
//
// The int64 fallback: one shared-memory tiled implicit-GEMM kernel serves the forward,
// grad_input and grad_weight:
// C[m, n] = sum_k A(m, k) * B(k, n) over a batch of independent problems, where a "problem"
// struct says how to read A and B straight from the tensors (no im2col buffer) and where to
// write C. A block owns a 32x32 tile of C; 256 threads each accumulate a 2x2 sub-tile in
// at::opmath_type (float for half/bfloat16) while 16-deep slices of A and B are staged in
// shared memory. Every C element is written by one thread after a fixed-order reduction over
// k, so all three passes are deterministic (no atomics anywhere).
//
// Forward uses the sub-pixel (phase) decomposition: the outputs with oh = ph (mod stride_h),
// ow = pw (mod stride_w) form a phase that reads only the taps kh = kh0 + i * step_h (and the
// same along w), each at a fixed input offset, so one problem per (image, group, phase) is a
// dense GEMM with no multiply-by-zero taps. grad_input is an ordinary conv2d of grad_output
// (M = C_in/groups, N = input pixels, K = C_out/groups * kH * kW); grad_weight is a
// correlation split along K into fixed slices whose partial sums a second kernel adds in a
// fixed order.
#pragma once

#include <ATen/OpMathType.h>

#include "common/cuda_compat.h"

namespace pyseg::conv_transpose {

constexpr int kTileM = 32;
constexpr int kTileN = 32;
constexpr int kTileK = 16;
constexpr int kTileThreads = 256;  // 16 x 16 threads, 2 x 2 outputs each

struct Geometry {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, out_h, out_w;
  int64_t groups, in_per_group, out_per_group;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t step_h, step_w;  // spacing of the taps of one phase: stride / gcd(stride, dilation)
};

template <typename scalar_t, class Problem>
__global__ void __launch_bounds__(kTileThreads)
    implicit_gemm_kernel(Problem prob, int64_t problems, int64_t tiles_m, int64_t tiles_n) {
  using acc_t = at::opmath_type<scalar_t>;
  // +1 column: the inner loop reads rows of these, the loads write columns.
  __shared__ acc_t a_tile[kTileK][kTileM + 1];
  __shared__ acc_t b_tile[kTileK][kTileN + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t per_problem = tiles_m * tiles_n;
  const int64_t total = problems * per_problem;
  for (int64_t tile = blockIdx.x; tile < total; tile += gridDim.x) {
    const int64_t index = tile / per_problem;
    const int64_t m0 = ((tile % per_problem) / tiles_n) * kTileM;
    const int64_t n0 = (tile % tiles_n) * kTileN;
    const typename Problem::Context ctx = prob.context(index);
    const int64_t M = prob.m_size(ctx), N = prob.n_size(ctx), K = prob.k_size(ctx);
    if (m0 >= M || n0 >= N) continue;  // the same for every thread of the block
    acc_t acc[2][2] = {{acc_t(0), acc_t(0)}, {acc_t(0), acc_t(0)}};
    for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
      for (int e = threadIdx.x; e < kTileK * kTileM; e += kTileThreads) {
        const int kk = e / kTileM, mm = e % kTileM;
        const int64_t m = m0 + mm, k = k0 + kk;
        a_tile[kk][mm] = (m < M && k < K) ? prob.a(ctx, m, k) : acc_t(0);
      }
      for (int e = threadIdx.x; e < kTileK * kTileN; e += kTileThreads) {
        const int kk = e / kTileN, nn = e % kTileN;
        const int64_t n = n0 + nn, k = k0 + kk;
        b_tile[kk][nn] = (n < N && k < K) ? prob.b(ctx, k, n) : acc_t(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kTileK; ++kk) {
        const acc_t a0 = a_tile[kk][ty], a1 = a_tile[kk][ty + 16];
        const acc_t b0 = b_tile[kk][tx], b1 = b_tile[kk][tx + 16];
        acc[0][0] += a0 * b0;
        acc[0][1] += a0 * b1;
        acc[1][0] += a1 * b0;
        acc[1][1] += a1 * b1;
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
        if (m < M && n < N) prob.store(ctx, m, n, acc[i][j]);
      }
    }
  }
}

// Forward, one problem per (image, group, phase): M = C_out/groups, N = the phase's outputs,
// K = C_in/groups * (taps of the phase).
template <typename scalar_t>
struct ForwardProblem {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  const scalar_t* w;
  const scalar_t* bias;  // may be null
  scalar_t* y;
  Geometry g;

  struct Context {
    int64_t n, grp, ph, pw, kh0, kw0, taps_h, taps_w, jh, jw;
  };

  __device__ Context context(int64_t index) const {
    Context c;
    const int64_t phases = g.stride_h * g.stride_w;
    const int64_t phase = index % phases;
    c.grp = (index / phases) % g.groups;
    c.n = index / (phases * g.groups);
    c.ph = phase / g.stride_w;
    c.pw = phase % g.stride_w;
    c.kh0 = first_tap(c.ph, g.stride_h, g.pad_h, g.dil_h, g.kernel_h);
    c.kw0 = first_tap(c.pw, g.stride_w, g.pad_w, g.dil_w, g.kernel_w);
    c.taps_h = c.kh0 < g.kernel_h ? (g.kernel_h - 1 - c.kh0) / g.step_h + 1 : 0;
    c.taps_w = c.kw0 < g.kernel_w ? (g.kernel_w - 1 - c.kw0) / g.step_w + 1 : 0;
    c.jh = c.ph < g.out_h ? (g.out_h - c.ph + g.stride_h - 1) / g.stride_h : 0;
    c.jw = c.pw < g.out_w ? (g.out_w - c.pw + g.stride_w - 1) / g.stride_w : 0;
    return c;
  }
  // Smallest k with (phase + pad - k * dil) divisible by stride, or `kernel` if none.
  __device__ static int64_t first_tap(int64_t phase, int64_t stride, int64_t pad, int64_t dil,
                                      int64_t kernel) {
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t t = phase + pad - k * dil;
      if (((t % stride) + stride) % stride == 0) return k;
    }
    return kernel;
  }
  __device__ int64_t m_size(const Context&) const { return g.out_per_group; }
  __device__ int64_t n_size(const Context& c) const { return c.jh * c.jw; }
  __device__ int64_t k_size(const Context& c) const {
    return g.in_per_group * c.taps_h * c.taps_w;
  }
  __device__ acc_t a(const Context& c, int64_t co, int64_t k) const {
    const int64_t taps = c.taps_h * c.taps_w, ci = k / taps, t = k % taps;
    const int64_t kh = c.kh0 + (t / c.taps_w) * g.step_h, kw = c.kw0 + (t % c.taps_w) * g.step_w;
    return static_cast<acc_t>(
        w[(((c.grp * g.in_per_group + ci) * g.out_per_group + co) * g.kernel_h + kh) * g.kernel_w + kw]);
  }
  __device__ acc_t b(const Context& c, int64_t k, int64_t j) const {
    const int64_t taps = c.taps_h * c.taps_w, ci = k / taps, t = k % taps;
    const int64_t kh = c.kh0 + (t / c.taps_w) * g.step_h, kw = c.kw0 + (t % c.taps_w) * g.step_w;
    // Exact divisions: the tap was chosen so that the numerators are multiples of the stride.
    const int64_t ih = j / c.jw + (c.ph + g.pad_h - kh * g.dil_h) / g.stride_h;
    const int64_t iw = j % c.jw + (c.pw + g.pad_w - kw * g.dil_w) / g.stride_w;
    if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) return acc_t(0);
    return static_cast<acc_t>(
        x[((c.n * g.in_channels + c.grp * g.in_per_group + ci) * g.in_h + ih) * g.in_w + iw]);
  }
  __device__ void store(const Context& c, int64_t co, int64_t j, acc_t v) const {
    const int64_t oc = c.grp * g.out_per_group + co;
    if (bias != nullptr) v += static_cast<acc_t>(bias[oc]);
    const int64_t oh = c.ph + g.stride_h * (j / c.jw), ow = c.pw + g.stride_w * (j % c.jw);
    y[((c.n * g.out_channels + oc) * g.out_h + oh) * g.out_w + ow] = static_cast<scalar_t>(v);
  }
};

// Element (co, kh, kw) x (input pixel) of the conv2d im2col of grad_output, read in place.
template <typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> grad_output_tap(
    const scalar_t* gy, const Geometry& g, int64_t n, int64_t grp, int64_t k, int64_t pix) {
  const int64_t khw = g.kernel_h * g.kernel_w;
  const int64_t co = k / khw, kh = (k % khw) / g.kernel_w, kw = k % g.kernel_w;
  const int64_t oh = (pix / g.in_w) * g.stride_h - g.pad_h + kh * g.dil_h;
  const int64_t ow = (pix % g.in_w) * g.stride_w - g.pad_w + kw * g.dil_w;
  if (oh < 0 || oh >= g.out_h || ow < 0 || ow >= g.out_w) return 0;
  return static_cast<at::opmath_type<scalar_t>>(
      gy[((n * g.out_channels + grp * g.out_per_group + co) * g.out_h + oh) * g.out_w + ow]);
}

// grad_input, one problem per (image, group): gx = W_g (C_in/g x K) @ im2col(gy) (K x H*W).
template <typename scalar_t>
struct GradInputProblem {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gy;
  const scalar_t* w;
  scalar_t* gx;
  Geometry g;

  struct Context {
    int64_t n, grp;
  };
  __device__ Context context(int64_t index) const { return {index / g.groups, index % g.groups}; }
  __device__ int64_t m_size(const Context&) const { return g.in_per_group; }
  __device__ int64_t n_size(const Context&) const { return g.in_h * g.in_w; }
  __device__ int64_t k_size(const Context&) const {
    return g.out_per_group * g.kernel_h * g.kernel_w;
  }
  __device__ acc_t a(const Context& c, int64_t ci, int64_t k) const {
    return static_cast<acc_t>(w[(c.grp * g.in_per_group + ci) * k_size(c) + k]);
  }
  __device__ acc_t b(const Context& c, int64_t k, int64_t pix) const {
    return grad_output_tap(gy, g, c.n, c.grp, k, pix);
  }
  __device__ void store(const Context& c, int64_t ci, int64_t pix, acc_t v) const {
    gx[(c.n * g.in_channels + c.grp * g.in_per_group + ci) * g.in_h * g.in_w + pix] =
        static_cast<scalar_t>(v);
  }
};

// grad_weight, one problem per (group, K slice): partial[slice, ci, (co, kh, kw)] =
// sum over the slice's (image, pixel) of x * im2col(gy). K = batch * H * W.
template <typename scalar_t>
struct GradWeightProblem {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  const scalar_t* gy;
  acc_t* partial;  // (slices, C_in, C_out/groups * kH * kW)
  Geometry g;
  int64_t slices, slice_len;

  struct Context {
    int64_t grp, slice, k_begin, k_len;
  };
  __device__ Context context(int64_t index) const {
    Context c;
    c.grp = index / slices;
    c.slice = index % slices;
    c.k_begin = c.slice * slice_len;
    const int64_t K = g.batch * g.in_h * g.in_w;
    c.k_len = max_of<int64_t>(0, min_of<int64_t>(slice_len, K - c.k_begin));
    return c;
  }
  __device__ int64_t m_size(const Context&) const { return g.in_per_group; }
  __device__ int64_t n_size(const Context&) const {
    return g.out_per_group * g.kernel_h * g.kernel_w;
  }
  __device__ int64_t k_size(const Context& c) const { return c.k_len; }
  __device__ acc_t a(const Context& c, int64_t ci, int64_t k) const {
    const int64_t kk = c.k_begin + k, plane = g.in_h * g.in_w;
    const int64_t n = kk / plane, pix = kk % plane;
    return static_cast<acc_t>(
        x[(n * g.in_channels + c.grp * g.in_per_group + ci) * plane + pix]);
  }
  __device__ acc_t b(const Context& c, int64_t k, int64_t col) const {
    const int64_t kk = c.k_begin + k, plane = g.in_h * g.in_w;
    return grad_output_tap(gy, g, kk / plane, c.grp, col, kk % plane);
  }
  __device__ void store(const Context& c, int64_t ci, int64_t col, acc_t v) const {
    const int64_t cols = n_size(c);
    partial[(c.slice * g.in_channels + c.grp * g.in_per_group + ci) * cols + col] = v;
  }
};

// gw[i] = sum over slices of partial[slice, i], in slice order.
template <typename scalar_t>
__global__ void reduce_slices_kernel(const at::opmath_type<scalar_t>* __restrict__ partial,
                                     scalar_t* __restrict__ out, int64_t slices, int64_t numel) {
  PYSEG_KERNEL_LOOP(i, numel) {
    at::opmath_type<scalar_t> s = partial[i];
    for (int64_t k = 1; k < slices; ++k) s += partial[k * numel + i];
    out[i] = static_cast<scalar_t>(s);
  }
}

// grad_bias[c] = sum of grad_output over images and pixels of channel c: one block per
// channel, fixed per-thread strides and a fixed tree, so the sum is deterministic. The loops
// walk (image, pixel) without splitting a flat index: no division at all.
template <typename scalar_t>
__global__ void __launch_bounds__(kTileThreads)
    bias_grad_kernel(const scalar_t* __restrict__ gy, scalar_t* __restrict__ gb, int64_t batch,
                     int64_t channels, int64_t plane) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kTileThreads];
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    acc_t s = 0;
    for (int64_t n = 0; n < batch; ++n) {
      const scalar_t* row = gy + (n * channels + c) * plane;
      for (int64_t e = threadIdx.x; e < plane; e += kTileThreads) s += static_cast<acc_t>(row[e]);
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int width = kTileThreads / 2; width > 0; width /= 2) {
      if (static_cast<int>(threadIdx.x) < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) gb[c] = static_cast<scalar_t>(partial[0]);
    __syncthreads();  // partial[0] is read before the next channel overwrites it
  }
}

}  // namespace pyseg::conv_transpose
