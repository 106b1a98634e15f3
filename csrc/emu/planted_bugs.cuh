// Kernels with one planted bug each, for tests/emu/test_sanitizer.py: they prove that
// memcheck, racecheck and the counters see what they claim to. Test-only: no op uses them.
#pragma once

#include "common/cuda_compat.h"

namespace pyseg::emu_selftest {

// memcheck: reads one element past the end of x.
__global__ void read_past_end(const float* x, float* y, int64_t n) {
  PYSEG_KERNEL_LOOP(i, n) { y[i] = x[i + 1]; }
}

// memcheck: a 4-byte load from an address that is not a multiple of 4.
__global__ void misaligned_load(const float* x, float* y, int64_t n) {
  PYSEG_KERNEL_LOOP(i, n) {
    const char* bytes = reinterpret_cast<const char*>(x + i);
    y[i] = *reinterpret_cast<const float*>(bytes + (i == n - 1 ? 2 : 0));
  }
}

// memcheck: writes one element past the block's dynamic shared memory (blockDim.x floats).
__global__ void shared_past_end(const float* x, float* y, int64_t n) {
  PYSEG_DYNAMIC_SHARED(float, buf);
  const int t = threadIdx.x;
  buf[t + 1] = x[t];
  __syncthreads();
  if (t < n) y[t] = buf[t];
}

// racecheck: each thread reads its neighbour's shared slot without a __syncthreads between
// the write and the read.
__global__ void missing_barrier(const float* x, float* y, int64_t n) {
  __shared__ float buf[256];
  const int t = threadIdx.x;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + t;
  buf[t] = i < n ? x[i] : 0.f;
  const float right = buf[(t + 1) % blockDim.x];  // __syncthreads() missing before this read
  if (i < n) y[i] = right;
}

// racecheck: a tensor-core fragment is loaded from a tile the block is still writing (the
// fragment load is collective, but its reads are the lanes' own: the race is reported).
__global__ void wmma_missing_barrier(const float* x, float* y, int64_t n) {
  alignas(32) __shared__ float tile[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) tile[i] = i < n ? x[i] : 0.f;
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f;
  nvcuda::wmma::load_matrix_sync(f, tile, 16, nvcuda::wmma::mem_row_major);  // no barrier
  nvcuda::wmma::store_matrix_sync(y + 256 * (threadIdx.x / 32), f, 16, nvcuda::wmma::mem_row_major);
}

// racecheck: every block writes the same output element (no atomics).
__global__ void blocks_write_one_output(float* y) {
  if (threadIdx.x == 0) y[0] = static_cast<float>(blockIdx.x);
}

// racecheck: block b writes y[b] and reads y[b + 1], which the next block writes.
__global__ void block_reads_neighbour(float* y, int64_t n) {
  if (threadIdx.x != 0) return;
  const int64_t b = blockIdx.x;
  y[b] = 1.f;
  if (b + 1 < n) y[b] += y[b + 1];
}

// Counters: thread i reads x[i * stride] -- each lane of a warp touches its own sector.
__global__ void strided_load(const float* x, float* y, int64_t n, int64_t stride) {
  PYSEG_KERNEL_LOOP(i, n) { y[i] = x[i * stride]; }
}

// Counters: the threads of a warp read shared column `t` of a 32 x (32 + pad) tile, i.e.
// words 32 + pad apart: 32-way bank conflicts without padding, none with pad = 1.
__global__ void shared_column_read(const float* x, float* y, int pad) {
  __shared__ float tile[32 * 33];
  const int t = threadIdx.x;  // one warp
  const int pitch = 32 + pad;
  for (int r = 0; r < 32; ++r) tile[r * pitch + t] = x[r * 32 + t];
  __syncthreads();
  float s = 0.f;
  for (int c = 0; c < 32; ++c) s += tile[t * pitch + c];
  y[t] = s;
}

}  // namespace pyseg::emu_selftest
