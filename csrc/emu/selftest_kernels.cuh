// Small kernels that exercise the emulator itself (tests/emu/test_emulator.py). They are
// written as ordinary CUDA code; nothing here knows it runs on a CPU.
#pragma once

#include "common/cuda_compat.h"

namespace pyseg::emu_selftest {

// Sum of each block's slice through a shared-memory tree with barriers.
// Block size must be a power of two (<= 1024).
template <typename T>
__global__ void block_sum(const T* x, T* partial, int64_t n) {
  __shared__ T buf[1024];
  const int t = threadIdx.x;
  T v = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + t; i < n; i += int64_t(blockDim.x) * gridDim.x)
    v += x[i];
  buf[t] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) buf[t] += buf[t + stride];
    __syncthreads();
  }
  if (t == 0) partial[blockIdx.x] = buf[0];
}

// Sum with warp shuffles, then one value per warp through shared memory. Works for any
// block size: the last warp's mask names only the lanes that exist.
template <typename T>
__global__ void warp_sum(const T* x, T* partial, int64_t n) {
  __shared__ T per_warp[32];
  const int t = threadIdx.x, lane = t % warpSize, warp = t / warpSize;
  const int warps = (blockDim.x + warpSize - 1) / warpSize;
  const int lanes_here = pyseg::min_of<int>(warpSize, int(blockDim.x) - warp * warpSize);
  const unsigned mask = lanes_here == 32 ? 0xffffffffu : ((1u << lanes_here) - 1u);
  T v = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + t; i < n; i += int64_t(blockDim.x) * gridDim.x)
    v += x[i];
  for (int offset = 16; offset > 0; offset /= 2) {
    T other = __shfl_down_sync(mask, v, offset);
    if (lane + offset < lanes_here) v += other;
  }
  if (lane == 0) per_warp[warp] = v;
  __syncthreads();
  if (t == 0) {
    T s = 0;
    for (int w = 0; w < warps; ++w) s += per_warp[w];
    partial[blockIdx.x] = s;
  }
}

// out[i] += x[i] and out[n - 1 - i] += x[i] through the indexed atomic_add (the packed
// 32-bit path for half / bfloat16, the scalar one at the buffer's ends): neighbouring
// elements are updated by different threads, each element twice.
template <typename T>
__global__ void atomic_scatter(const T* x, T* out, int64_t n) {
  PYSEG_KERNEL_LOOP(i, n) {
    pyseg::atomic_add(out, i, n, x[i]);
    pyseg::atomic_add(out, n - 1 - i, n, x[i]);
  }
}

// Every element added into one cell with atomics (float, double, half, bfloat16).
template <typename T>
__global__ void atomic_sum(const T* x, T* out, int64_t n) {
  PYSEG_KERNEL_LOOP(i, n) { pyseg::atomic_add(out, x[i]); }
}

// Reverses each block's slice through dynamic (extern) shared memory.
template <typename T>
__global__ void block_reverse(const T* x, T* y, int64_t n) {
  PYSEG_DYNAMIC_SHARED(T, buf);
  const int t = threadIdx.x;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + t;
  if (i < n) buf[t] = x[i];
  __syncthreads();
  const int64_t start = blockIdx.x * int64_t(blockDim.x);
  const int64_t len = n - start < blockDim.x ? n - start : blockDim.x;
  if (t < len) y[start + t] = buf[len - 1 - t];
}

// Per warp: inclusive scan with __shfl_up_sync, butterfly sum with __shfl_xor_sync,
// broadcast of lane 3 with __shfl_sync, and a ballot of odd values. Full warps only.
__global__ void warp_collectives(const int* x, int* scan, int* xor_sum, int* bcast, unsigned* ballot) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = threadIdx.x % 32;
  int v = x[i];
  int s = v;
  for (int d = 1; d < 32; d *= 2) {
    int up = __shfl_up_sync(0xffffffffu, s, d);
    if (lane >= d) s += up;
  }
  scan[i] = s;
  int b = v;
  for (int m = 16; m > 0; m /= 2) b += __shfl_xor_sync(0xffffffffu, b, m);
  xor_sum[i] = b;
  bcast[i] = __shfl_sync(0xffffffffu, v, 3);
  ballot[i] = __ballot_sync(0xffffffffu, v % 2 != 0);
}

// Barrier inside a branch that only some threads take: must be reported, not hang.
__global__ void divergent_barrier(int* y) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
    y[threadIdx.x] = 1;
  } else {
    __syncthreads();
    y[threadIdx.x] = 2;
  }
}

// 2-D blocks and grids: every thread writes its global (y, x) coordinates.
__global__ void coordinates(int* out, int width) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  out[y * width + x] = y * 1000 + x;
}

// The wmma input type and pointer type of a matrix of T (tf32 for float).
template <typename T>
struct WmmaOf {
  using frag_t = T;
  static constexpr int kK = 16;
};
template <>
struct WmmaOf<float> {
  using frag_t = nvcuda::wmma::precision::tf32;
  static constexpr int kK = 8;
};

// One warp per block: d (16 x 16, row-major) = a b + c through wmma fragments, with a
// (16 x 16) loaded row_major, b (16 x 16) col_major from its transpose bt, c read with
// mem_col_major (so the result adds c's transpose), every accumulator element scaled by
// `scale` after the fill, and float inputs rounded with __float_to_tf32 (two k8 steps).
// `mode` 1: only lanes 0..15 load (divergence); 2: every lane passes its own pointer.
template <typename T>
__global__ void wmma_mma(const T* a, const T* bt, const float* c, float* d, float scale,
                         int mode) {
  namespace wmma = nvcuda::wmma;
  using frag_t = typename WmmaOf<T>::frag_t;
  constexpr int kK = WmmaOf<T>::kK;
  wmma::fragment<wmma::matrix_a, 16, 16, kK, frag_t, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, kK, frag_t, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, kK, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  for (int t = 0; t < acc.num_elements; ++t) acc.x[t] *= scale;  // all elements: `scale`
  wmma::fragment<wmma::accumulator, 16, 16, kK, float> cf;
  wmma::load_matrix_sync(cf, c, 16, wmma::mem_col_major);
  for (int k0 = 0; k0 < 16; k0 += kK) {
    if (mode == 1 && threadIdx.x >= 16) break;
    const T* ap = a + k0 + (mode == 2 ? 32 * (threadIdx.x % 2) : 0);
    wmma::load_matrix_sync(fa, ap, 16);
    wmma::load_matrix_sync(fb, bt + k0, 16);
    if constexpr (std::is_same_v<T, float>) {
      for (int t = 0; t < fa.num_elements; ++t) fa.x[t] = wmma::__float_to_tf32(fa.x[t]);
      for (int t = 0; t < fb.num_elements; ++t) fb.x[t] = wmma::__float_to_tf32(fb.x[t]);
    }
    wmma::mma_sync(acc, fa, fb, acc);
  }
  for (int t = 0; t < acc.num_elements; ++t) acc.x[t] += cf.x[t];
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// TF32 rounding of each element (the emulator's __float_to_tf32 against Python's).
__global__ void float_to_tf32(const float* x, float* y, int64_t n) {
  PYSEG_KERNEL_LOOP(i, n) { y[i] = nvcuda::wmma::__float_to_tf32(x[i]); }
}

}  // namespace pyseg::emu_selftest
