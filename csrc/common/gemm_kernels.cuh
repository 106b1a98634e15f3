// A hand-written shared-memory tiled GEMM for the CUDA kernels (compiled by nvcc for
// pyseg._C and by g++ for the emulator): for each of `batches` independent problems,
//
//   C[m, n] (= or +=) sum_k A[m, k] * B[k, n]  (+ row_bias[m])
//
// with every operand read through strides, so transposed operands and the (N, C, H, W)
// layouts of activations are used in place. An index i of a matrix dimension maps to
//
//   (i / run) * run_stride + (i % run) * stride
//
// which covers a plain strided dimension (run = "infinite") and a dimension that runs over
// (image, pixel) pairs, e.g. the columns of an im2col matrix against the output tensor
// (column b * P + p lives at b * C_out * P + p).
//
// A block owns a 64x64 tile of C; its 256 threads each accumulate a 4x4 sub-tile (rows
// ty + 16 i, columns tx + 16 j) in at::opmath_type (float for half/bfloat16, double for
// double) while 16-deep slices of A and B are staged in shared memory. Each C element is
// written by one thread after a fixed-order sum over k, so results are deterministic and
// the += form can accumulate over successive launches without atomics. The grid is 3-D
// (n tiles, m tiles, problems), each dimension a grid-stride loop, so any launcher cap works.
#pragma once

#include <ATen/OpMathType.h>

#include "common/cuda_compat.h"

namespace pyseg {

constexpr int kGemmTileM = 64;
constexpr int kGemmTileN = 64;
constexpr int kGemmTileK = 16;
constexpr int kGemmThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each
constexpr int kGemmSlots = kGemmTileK * kGemmTileM / kGemmThreads;  // staged elements per thread
static_assert(kGemmTileM == kGemmTileN && kGemmTileM == 16 * 4 && kGemmSlots == 4,
              "the staging and the 4x4 sub-tiles assume 64x64 tiles of 256 threads");

// Where index i of one matrix dimension lives, relative to the matrix's base pointer.
struct GemmIndex {
  int64_t stride;      // step between consecutive indices of a run
  int64_t run;         // indices come in runs of this length (> 0)
  int64_t run_stride;  // step from the start of one run to the next
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    return (i / run) * run_stride + (i % run) * stride;
  }
};

// A (or B): element (f, k), where f is the row m of A (the column n of B) and k the summed
// index, of problem z sits at data[z * batch_stride + fixed.offset(f) + depth.offset(k)].
template <typename scalar_t>
struct GemmOperand {
  const scalar_t* data;
  int64_t batch_stride;
  GemmIndex fixed, depth;
};

// C: element (m, n) of problem z at data[z * batch_stride + rows.offset(m) + cols.offset(n)].
template <typename scalar_t>
struct GemmResult {
  scalar_t* data;
  int64_t batch_stride;
  GemmIndex rows, cols;
  const scalar_t* row_bias;  // may be null; row m of problem z adds row_bias[z * bias_batch_stride + m]
  int64_t bias_batch_stride;
  bool accumulate;  // C += A B instead of C = A B
};

namespace detail {

// One thread's share of staging a kGemmTileK x 64 slice of an operand into shared memory.
// The slots a thread loads are the same for every k slice, so the f part of their offsets is
// computed once per tile and the k part is advanced incrementally (no division per load).
template <typename scalar_t>
struct GemmStager {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* base;
  GemmIndex depth;
  int64_t fixed_offset[kGemmSlots];
  int64_t outer[kGemmSlots], inner[kGemmSlots];  // k = outer * run + inner for this slot
  int slot_f[kGemmSlots], slot_k[kGemmSlots];
  bool f_ok[kGemmSlots];

  __device__ void init(const GemmOperand<scalar_t>& op, int64_t z, int64_t f0, int64_t F) {
    base = op.data + z * op.batch_stride;
    depth = op.depth;
    // Consecutive threads take consecutive addresses: along k when k is the unit-stride
    // index (a row of W, a pixel run of grad_output), along f otherwise.
    const bool k_fastest = depth.stride == 1;
#pragma unroll
    for (int i = 0; i < kGemmSlots; ++i) {
      const int e = static_cast<int>(threadIdx.x) + i * kGemmThreads;
      slot_k[i] = k_fastest ? e % kGemmTileK : e / kGemmTileM;
      slot_f[i] = k_fastest ? e / kGemmTileK : e % kGemmTileM;
      const int64_t f = f0 + slot_f[i];
      f_ok[i] = f < F;
      fixed_offset[i] = f_ok[i] ? op.fixed.offset(f) : 0;
      outer[i] = slot_k[i] / depth.run;
      inner[i] = slot_k[i] % depth.run;
    }
  }

  // Stages the slice starting at k0 (zeros outside the matrix), then steps to the next one.
  __device__ void stage(acc_t (*tile)[kGemmTileM + 1], int64_t k0, int64_t K) {
#pragma unroll
    for (int i = 0; i < kGemmSlots; ++i) {
      const bool ok = f_ok[i] && k0 + slot_k[i] < K;
      tile[slot_k[i]][slot_f[i]] =
          ok ? static_cast<acc_t>(
                   base[fixed_offset[i] + outer[i] * depth.run_stride + inner[i] * depth.stride])
             : acc_t(0);
      inner[i] += kGemmTileK;
      if (inner[i] >= depth.run) {
        outer[i] += inner[i] / depth.run;
        inner[i] %= depth.run;
      }
    }
  }
};

}  // namespace detail

template <typename scalar_t>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(GemmOperand<scalar_t> a, GemmOperand<scalar_t> b, GemmResult<scalar_t> c,
                int64_t batches, int64_t M, int64_t N, int64_t K) {
  using acc_t = at::opmath_type<scalar_t>;
  // +1 column: the loads of a k-fastest operand write down a column of these.
  __shared__ acc_t a_tile[kGemmTileK][kGemmTileM + 1];
  __shared__ acc_t b_tile[kGemmTileK][kGemmTileN + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t tiles_m = (M + kGemmTileM - 1) / kGemmTileM;
  const int64_t tiles_n = (N + kGemmTileN - 1) / kGemmTileN;
  // Every loop bound below is the same for all threads of the block, so they all reach the
  // same __syncthreads.
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      for (int64_t tn = blockIdx.x; tn < tiles_n; tn += gridDim.x) {
        const int64_t m0 = tm * kGemmTileM, n0 = tn * kGemmTileN;
        detail::GemmStager<scalar_t> sa, sb;
        sa.init(a, z, m0, M);
        sb.init(b, z, n0, N);
        acc_t acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = acc_t(0);
        }
        for (int64_t k0 = 0; k0 < K; k0 += kGemmTileK) {
          sa.stage(a_tile, k0, K);
          sb.stage(b_tile, k0, K);
          __syncthreads();
#pragma unroll
          for (int kk = 0; kk < kGemmTileK; ++kk) {
            acc_t av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              av[i] = a_tile[kk][ty + 16 * i];
              bv[i] = b_tile[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
              for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
            }
          }
          __syncthreads();  // the tiles are overwritten by the next slice
        }
        scalar_t* out = c.data + z * c.batch_stride;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t m = m0 + ty + 16 * i;
          if (m >= M) continue;
          const int64_t row = c.rows.offset(m);
          const acc_t bias = c.row_bias != nullptr
                                 ? static_cast<acc_t>(c.row_bias[z * c.bias_batch_stride + m])
                                 : acc_t(0);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tx + 16 * j;
            if (n >= N) continue;
            scalar_t* dst = out + row + c.cols.offset(n);
            acc_t v = acc[i][j] + bias;
            if (c.accumulate) v = static_cast<acc_t>(*dst) + v;
            *dst = static_cast<scalar_t>(v);
          }
        }
      }
    }
  }
}

}  // namespace pyseg
