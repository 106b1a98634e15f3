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
// Core: a block owns a 128 x 64 tile of C; its 256 threads (16 x 16) each accumulate an 8 x 4
// sub-tile (rows 4 ty + i and 64 + 4 ty + i, columns 4 tx + j) in at::opmath_type (float for
// half/bfloat16, double for double), 32 FMAs per three 128-bit shared loads. 8-deep k slices
// of A and B are staged in shared memory as [k][m] and [k][n] rows padded by 4 elements: the
// rows stay 16-byte aligned for the vector loads, and a warp's staging stores (8 k x 4 f when
// k is the unit-stride index) fall on 32 different banks (bank = 4 k + f mod 32). Two buffers
// alternate: while the block computes on one slice the next one is in flight, through
// cp.async (float, sm_80+: global -> shared without registers; two barriers per slice) or
// through registers (the loads are issued before the FMAs and stored after them; one
// barrier per slice).
//
// Epilogue: after the k loop C goes through shared memory (the slice buffers' bytes, 64 rows
// per pass) and leaves with consecutive lanes on consecutive elements of C's unit-stride
// dimension (columns, or rows when C is a column vector: gemm_store_rows), so a warp's store
// covers 128 contiguous bytes of float, not every 4th float of two 256-byte rows. The sums
// themselves are untouched: each element is still sum + bias (+ old C), in that order.
//
// Split-K: the z grid dimension runs over (problem, split) pairs; split s sums k in
// [s * split_len, (s + 1) * split_len) and writes its partial product to its own slice of
// C (split_stride apart), so a long-K small-output product (a weight gradient) fills the
// device; gemm_sum_splits_kernel then adds the slices in split order. Each element is
// written by one thread after a fixed-order sum over k, so results are deterministic and the
// += form can accumulate over successive launches without atomics. The grid is 3-D
// (n tiles, m tiles, problem x split); the kernel numbers the tiles in one index and strides
// over it by the grid's block count (GemmTiles), so any launcher cap works.
//
// Two kernels share all of this: gemm_kernel (SIMT FMAs, every dtype and arch) and
// gemm_tc_kernel (tensor cores through nvcuda::wmma on sm_80+: half / bfloat16, and float
// rounded to TF32 when torch allows it; see its comment). launch_gemm (gemm_launch.h) picks.
#pragma once

#include <ATen/OpMathType.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <limits>

#include "common/cuda_compat.h"

namespace pyseg {

constexpr int kGemmTileM = 128;
constexpr int kGemmTileN = 64;
constexpr int kGemmTileK = 8;
constexpr int kGemmThreads = 256;  // 16 x 16 threads, 8 x 4 outputs each
constexpr int kGemmPad = 4;        // keeps 16-byte rows and conflict-free staging stores
constexpr int kGemmLdA = kGemmTileM + kGemmPad;
constexpr int kGemmLdB = kGemmTileN + kGemmPad;
// C leaves through shared memory in passes of 64 rows (rows padded like B's, so they stay
// 16-byte aligned for the vector stores that fill them).
constexpr int kGemmStoreRows = 64;
constexpr int kGemmLdC = kGemmTileN + kGemmPad;
static_assert(kGemmTileM == 16 * 8 && kGemmTileN == 16 * 4 && kGemmThreads == 256 &&
                  kGemmTileK * kGemmTileM % kGemmThreads == 0 &&
                  kGemmTileK * kGemmTileN % kGemmThreads == 0,
              "the staging and the 8x4 sub-tiles assume 128x64 tiles of 256 threads");

// Where index i of one matrix dimension lives, relative to the matrix's base pointer.
// Indices and runs are below 2^31 (gemm_sizes_fit checks it on the host: offsets are 64-bit,
// but the division by the run is a 32-bit one, inline, instead of a 64-bit division
// subroutine whose calls make ptxas save registers around them).
struct GemmIndex {
  int64_t stride;      // step between consecutive indices of a run
  int64_t run;         // indices come in runs of this length (0 < run <= INT32_MAX)
  int64_t run_stride;  // step from the start of one run to the next
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    const uint32_t q = static_cast<uint32_t>(i) / static_cast<uint32_t>(run);
    const uint32_t r = static_cast<uint32_t>(i) - q * static_cast<uint32_t>(run);
    return static_cast<int64_t>(q) * run_stride + static_cast<int64_t>(r) * stride;
  }
  __device__ __forceinline__ int64_t remainder(int64_t i) const {
    return static_cast<uint32_t>(i) % static_cast<uint32_t>(run);
  }
};

// A plain strided dimension (one run longer than any index).
inline GemmIndex gemm_dense_index(int64_t stride) {
  return GemmIndex{stride, std::numeric_limits<int32_t>::max(), 0};
}

// Whether a product fits the kernel's 32-bit index arithmetic: every index (and every grid
// stride step past it) below 2^31, every run at most INT32_MAX, and fewer than 2^30 tiles
// (so the tile counter plus one grid's worth of blocks stays below 2^31).
inline bool gemm_sizes_fit(int64_t batches_x_splits, int64_t M, int64_t N, int64_t K,
                           std::initializer_list<GemmIndex> indices) {
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max() - 2 * kGemmTileM;
  bool ok = batches_x_splits < kLimit && M < kLimit && N < kLimit && K < kLimit;
  const int64_t tiles_mn =
      ((M + kGemmTileM - 1) / kGemmTileM) * ((N + kGemmTileN - 1) / kGemmTileN);
  ok = ok && tiles_mn <= ((int64_t{1} << 30) - 1) / std::max<int64_t>(batches_x_splits, 1);
  for (const GemmIndex& idx : indices)
    ok = ok && idx.run > 0 && idx.run <= std::numeric_limits<int32_t>::max();
  return ok;
}

// A position along a GemmIndex that moves forward without dividing: start() divides once,
// step() adds and wraps (a loop bounded by d / run + 1). Divisions are 64-bit subroutine
// calls on the GPU, and every register live across one is saved around it.
struct GemmCursor {
  int64_t offset;  // idx.offset(i) of the current i
  uint32_t inner;  // i % idx.run (run <= INT32_MAX, so inner + d below fits)
  __device__ __forceinline__ void start(const GemmIndex& idx, int64_t i) {
    offset = idx.offset(i);
    inner = static_cast<uint32_t>(idx.remainder(i));
  }
  __device__ __forceinline__ void step(const GemmIndex& idx, int d) {
    const uint32_t run = static_cast<uint32_t>(idx.run);
    inner += d;
    offset += d * idx.stride;
    while (inner >= run) {
      inner -= run;
      offset += idx.run_stride - idx.run * idx.stride;
    }
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

// C: element (m, n) of problem z at data[z * batch_stride + rows.offset(m) + cols.offset(n)]
// (+ s * split_stride for split s). With split_k > 1 each split writes its partial sum
// (accumulate and row_bias must then be off: gemm_sum_splits_kernel applies them).
template <typename out_t>
struct GemmResult {
  out_t* data;
  int64_t batch_stride;
  GemmIndex rows, cols;
  const out_t* row_bias;  // may be null; row m of problem z adds row_bias[z * bias_batch_stride + m]
  int64_t bias_batch_stride;
  bool accumulate;  // C += A B instead of C = A B
  int64_t split_k = 1;       // splits of the k range
  int64_t split_len = 0;     // k per split, a multiple of kGemmTileK (split_k > 1)
  int64_t split_stride = 0;  // from one split's C to the next
};

// ---- Implicit im2col operands: a convolution's input read in place ----
//
// One matrix dimension of such an operand: index i = (q, a, b) with a < na, b < nb (b
// fastest). It moves the element by q * q_stride and puts it at the 2-D position
// (h0 + a * dh, w0 + b * dw) of a plane. Element (f, k) of a GemmConvOperand (f its row of
// A or column of B, k the summed index) adds both dimensions' parts: it is
//
//   data[z * batch_stride + q_f * fixed.q_stride + q_k * depth.q_stride + h * ld_h + w * ld_w]
//
// with (h, w) = position(f) + position(k), and zero when (h, w) falls outside
// [0, lim_h) x [0, lim_w). E.g. conv2d's im2col of x: k = (channel, kh, kw) at
// (kh * dil - pad, kw * dil - pad), f = output pixel (oh, ow) at (oh * stride, ow * stride).
// All of na * nb, the positions and their sums are below 2^31 (gemm_conv_fits).
struct GemmConvAxis {
  int32_t na, nb;
  int64_t q_stride;
  int32_t h0, dh, w0, dw;
};

template <typename scalar_t>
struct GemmConvOperand {
  const scalar_t* data;
  int64_t batch_stride;
  GemmConvAxis fixed, depth;
  int64_t ld_h, ld_w;
  int32_t lim_h, lim_w;
};

// Whether a GemmConvAxis of `extent` indices keeps the 32-bit arithmetic of the cursor: na * nb
// and every position (with the other axis's added) within +-2^30.
inline bool gemm_conv_axis_fits(const GemmConvAxis& ax, int64_t extent) {
  constexpr int64_t kLimit = int64_t{1} << 30;
  auto span = [](int64_t start, int64_t n, int64_t step) {
    return std::max<int64_t>(std::abs(start), std::abs(start + (n > 0 ? n - 1 : 0) * step));
  };
  return ax.na > 0 && ax.nb > 0 && int64_t{ax.na} * ax.nb < kLimit &&
         extent + 2 * kGemmTileM < (int64_t{1} << 31) && span(ax.h0, ax.na, ax.dh) < kLimit &&
         span(ax.w0, ax.nb, ax.dw) < kLimit;
}

// The position of an index along a GemmConvAxis, moving forward without dividing: start()
// divides once (32-bit), step() adds and wraps (loops bounded by d / nb + 1).
struct GemmConvCursor {
  int64_t q_off;  // q * q_stride
  int32_t a, b, h, w;
  __device__ __forceinline__ void start(const GemmConvAxis& ax, int64_t i) {
    const uint32_t per_q = static_cast<uint32_t>(ax.na) * static_cast<uint32_t>(ax.nb);
    const uint32_t q = static_cast<uint32_t>(i) / per_q, r = static_cast<uint32_t>(i) - q * per_q;
    a = static_cast<int32_t>(r / static_cast<uint32_t>(ax.nb));
    b = static_cast<int32_t>(r) - a * ax.nb;
    q_off = static_cast<int64_t>(q) * ax.q_stride;
    h = ax.h0 + a * ax.dh;
    w = ax.w0 + b * ax.dw;
  }
  // Moves (a, b, h, w) d indices on and returns what q_off gains (q_off itself is left as it
  // was: GemmConvStager keeps that part in its pointers).
  __device__ __forceinline__ int64_t step_position(const GemmConvAxis& ax, int d) {
    int64_t dq = 0;
    b += d;
    w += d * ax.dw;
    while (b >= ax.nb) {
      b -= ax.nb;
      w -= ax.nb * ax.dw;
      h += ax.dh;
      if (++a == ax.na) {
        a = 0;
        h -= ax.na * ax.dh;
        dq += ax.q_stride;
      }
    }
    return dq;
  }
  __device__ __forceinline__ void step(const GemmConvAxis& ax, int d) {
    q_off += step_position(ax, d);
  }
  // Offset of this index's part of the element (its q and its position).
  template <typename scalar_t>
  __device__ __forceinline__ int64_t offset(const GemmConvOperand<scalar_t>& op) const {
    return q_off + position_offset(op);
  }
  template <typename scalar_t>
  __device__ __forceinline__ int64_t position_offset(const GemmConvOperand<scalar_t>& op) const {
    return h * op.ld_h + w * op.ld_w;
  }
};

namespace detail {

// One thread's share of staging a kGemmTileK x kWidth slice of an operand. Thread t loads
// one k and the f's fb + 32 i of that k: k = t % 8, fb = t / 8 when k is the unit-stride
// index (a row of W, a pixel run of grad_output: 8 lanes read 32 contiguous bytes), else
// k = t / 32, fb = t % 32 (a warp reads 32 consecutive f). All slots share k, so one step
// along k moves every slot's pointer by the same amount: computed with divisions once per
// tile and then advanced by kGemmTileK per slice with additions and a bounded wrap loop (no
// division in the k loop). The k offset lives in the pointers themselves rather than in a
// separate 64-bit offset: two registers fewer across the k loop.
template <typename scalar_t, int kWidth>
struct GemmStager {
  using acc_t = at::opmath_type<scalar_t>;
  static constexpr int kSlots = kGemmTileK * kWidth / kGemmThreads;
  static_assert(kSlots * 32 == kWidth, "slots are 32 apart along f");
  const scalar_t* row[kSlots];  // the slot's element at the current k
  uint32_t k_inner;             // the current k % depth.run
  int k, fb;                    // the thread's k in the slice, its first f
  unsigned f_ok;                // bit i: slot i's f is inside the matrix

  __device__ __forceinline__ void init(const GemmOperand<scalar_t>& op, int64_t z, int64_t f0,
                                       int64_t F, int k_begin) {
    const bool k_fastest = op.depth.stride == 1;
    const int t = static_cast<int>(threadIdx.x);
    k = k_fastest ? t % kGemmTileK : t / 32;
    fb = k_fastest ? t / kGemmTileK : t % 32;
    GemmCursor depth;
    depth.start(op.depth, k_begin + k);
    k_inner = depth.inner;
    f_ok = 0;
    const scalar_t* base = op.data + z * op.batch_stride + depth.offset;
    GemmCursor f;
    f.start(op.fixed, f0 + fb);
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      if (f0 + fb + 32 * i < F) f_ok |= 1u << i;
      row[i] = base + f.offset;  // (not read when f is outside the matrix)
      if (i + 1 < kSlots) f.step(op.fixed, 32);
    }
  }

  __device__ __forceinline__ bool valid(int i, int k0, int k_end) const {
    return ((f_ok >> i) & 1u) && k0 + k < k_end;
  }

  // The slice at k0 (zeros outside the matrix) into registers, as T (the accumulator type
  // for the FMA kernel, scalar_t for the tensor-core one).
  template <typename T>
  __device__ __forceinline__ void load(const GemmOperand<scalar_t>&, T (&regs)[kSlots], int k0,
                                       int k_end) const {
#pragma unroll
    for (int i = 0; i < kSlots; ++i)
      regs[i] = valid(i, k0, k_end) ? static_cast<T>(*row[i]) : T(0);
  }

  template <int kLd, typename T>
  __device__ __forceinline__ void store(T* tile, const T (&regs)[kSlots]) const {
#pragma unroll
    for (int i = 0; i < kSlots; ++i) tile[k * kLd + fb + 32 * i] = regs[i];
  }

  // The slice at k0 straight into shared memory (scalar_t == acc_t == float).
  template <int kLd>
  __device__ __forceinline__ void copy_async(const GemmOperand<scalar_t>&, acc_t* tile, int k0,
                                             int k_end) const {
#pragma unroll
    for (int i = 0; i < kSlots; ++i)
      cp_async_4(tile + k * kLd + fb + 32 * i, row[i], valid(i, k0, k_end));
  }

  // Steps kGemmTileK further along k (GemmCursor::step's arithmetic, applied to the
  // pointers). `op` is the kernel parameter, read in place (constant memory) rather than
  // copied into registers.
  __device__ __forceinline__ void advance(const GemmOperand<scalar_t>& op) {
    const uint32_t run = static_cast<uint32_t>(op.depth.run);
    int64_t delta = kGemmTileK * op.depth.stride;
    k_inner += kGemmTileK;
    while (k_inner >= run) {
      k_inner -= run;
      delta += op.depth.run_stride - op.depth.run * op.depth.stride;
    }
#pragma unroll
    for (int i = 0; i < kSlots; ++i) row[i] += delta;
  }
};

// GemmStager's twin for a GemmConvOperand: the same slots, slice order and interface; each
// slot also keeps its f's position, and an element is read only when that position plus the
// current k's lies inside the plane (zero otherwise: the convolution's padding).
template <typename scalar_t, int kWidth>
struct GemmConvStager {
  using acc_t = at::opmath_type<scalar_t>;
  using Operand = GemmConvOperand<scalar_t>;
  static constexpr int kSlots = kGemmTileK * kWidth / kGemmThreads;
  static_assert(kSlots * 32 == kWidth, "slots are 32 apart along f");
  const scalar_t* row[kSlots];     // the slot's f part of the address and the current k's q part
  int32_t fh[kSlots], fw[kSlots];  // the slot's f position
  GemmConvCursor depth;            // the current k (its q_off is in row[] instead)
  int k, fb;
  unsigned f_ok;
  // (The limits, strides and the k part of the address are recomputed from the kernel
  // parameter, in constant memory, per slice: registers are what the 128 budget lacks.)

  __device__ __forceinline__ void init(const Operand& op, int64_t z, int64_t f0, int64_t F,
                                       int k_begin) {
    // k unit-stride in memory (either direction): 8 lanes read 8 neighbouring elements.
    const int64_t k_step = op.depth.dw * op.ld_w;
    const bool k_fastest = op.depth.nb > 1 && (k_step == 1 || k_step == -1);
    const int t = static_cast<int>(threadIdx.x);
    k = k_fastest ? t % kGemmTileK : t / 32;
    fb = k_fastest ? t / kGemmTileK : t % 32;
    depth.start(op.depth, k_begin + k);
    f_ok = 0;
    const scalar_t* base = op.data + z * op.batch_stride + depth.q_off;
    GemmConvCursor f;
    f.start(op.fixed, f0 + fb);
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      if (f0 + fb + 32 * i < F) f_ok |= 1u << i;
      row[i] = base + f.offset(op);  // (not read when f is outside the matrix)
      fh[i] = f.h;
      fw[i] = f.w;
      if (i + 1 < kSlots) f.step(op.fixed, 32);
    }
  }

  __device__ __forceinline__ bool valid(const Operand& op, int i, int k0, int k_end) const {
    return ((f_ok >> i) & 1u) && k0 + k < k_end &&
           static_cast<uint32_t>(fh[i] + depth.h) < static_cast<uint32_t>(op.lim_h) &&
           static_cast<uint32_t>(fw[i] + depth.w) < static_cast<uint32_t>(op.lim_w);
  }

  template <typename T>
  __device__ __forceinline__ void load(const Operand& op, T (&regs)[kSlots], int k0,
                                       int k_end) const {
    const int64_t k_off = depth.position_offset(op);
#pragma unroll
    for (int i = 0; i < kSlots; ++i)
      regs[i] = valid(op, i, k0, k_end) ? static_cast<T>(row[i][k_off]) : T(0);
  }

  template <int kLd, typename T>
  __device__ __forceinline__ void store(T* tile, const T (&regs)[kSlots]) const {
#pragma unroll
    for (int i = 0; i < kSlots; ++i) tile[k * kLd + fb + 32 * i] = regs[i];
  }

  template <int kLd>
  __device__ __forceinline__ void copy_async(const Operand& op, acc_t* tile, int k0,
                                             int k_end) const {
    const int64_t k_off = depth.position_offset(op);
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      const bool ok = valid(op, i, k0, k_end);
      cp_async_4(tile + k * kLd + fb + 32 * i, ok ? row[i] + k_off : row[i], ok);
    }
  }

  __device__ __forceinline__ void advance(const Operand& op) {
    const int64_t dq = depth.step_position(op.depth, kGemmTileK);
#pragma unroll
    for (int i = 0; i < kSlots; ++i) row[i] += dq;
  }
};

// The stager of an operand type.
template <class Operand, int kWidth>
struct StagerFor;
template <typename scalar_t, int kWidth>
struct StagerFor<GemmOperand<scalar_t>, kWidth> {
  using type = GemmStager<scalar_t, kWidth>;
};
template <typename scalar_t, int kWidth>
struct StagerFor<GemmConvOperand<scalar_t>, kWidth> {
  using type = GemmConvStager<scalar_t, kWidth>;
};

// Four consecutive elements of a shared-memory row (16-byte aligned for float).
template <typename acc_t>
__device__ __forceinline__ void load4(const acc_t* p, acc_t (&v)[4]) {
  if constexpr (std::is_same_v<acc_t, float>) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    const double2 q0 = *reinterpret_cast<const double2*>(p);
    const double2 q1 = *reinterpret_cast<const double2*>(p + 2);
    v[0] = q0.x, v[1] = q0.y, v[2] = q1.x, v[3] = q1.y;
  }
}

// One 128-bit store (STS.128 for shared memory). g++ splits a copy of a local float4 /
// double2 into its scalar fields, so the emulator copies with __builtin_memcpy instead, which
// it keeps as one 16-byte access: the sanitizer counts what the GPU instruction does.
template <typename V, typename T>
__device__ __forceinline__ void store16(T* p, const V& v) {
  static_assert(sizeof(V) == 16, "a 128-bit vector");
#ifdef PYSEG_EMULATOR
  __builtin_memcpy(p, &v, sizeof(V));
#else
  *reinterpret_cast<V*>(p) = v;
#endif
}

// Stores four consecutive elements into a shared-memory row (16-byte aligned for float).
template <typename acc_t>
__device__ __forceinline__ void store4(acc_t* p, const acc_t (&v)[4]) {
  if constexpr (std::is_same_v<acc_t, float>) {
    float4 q;
    q.x = v[0], q.y = v[1], q.z = v[2], q.w = v[3];
    store16(p, q);
  } else {
    double2 q0, q1;
    q0.x = v[0], q0.y = v[1], q1.x = v[2], q1.y = v[3];
    store16(p, q0);
    store16(p + 2, q1);
  }
}

// Whether consecutive lanes store consecutive rows of C: when the rows are its unit-stride
// dimension (a column vector such as a bias gradient); otherwise consecutive columns.
template <typename out_t>
__device__ __forceinline__ bool gemm_store_along_m(const GemmResult<out_t>& c, int64_t N) {
  return c.rows.stride == 1 && (c.cols.stride != 1 || N == 1);
}

// The epilogue of both kernels: rows [m0, m0 + 64) x columns [n0, n0 + 64) of C (clipped to
// M x N) from the shared staging tile `rows` (row r at rows + r * kGemmLdC, the finished sums),
// plus the bias and, with c.accumulate, C's old value. Thread t takes index t % 64 along the
// dimension consecutive lanes follow (kAlongM: rows, else columns) and t / 64 + 4 q along the
// other, so one store instruction of a warp writes 32 neighbouring elements of C. (kAlongM
// reads the tile down its columns, 4-way bank conflicts at this padding: the layout is kept
// for the row-wise case, which every matrix-shaped C takes.)
template <bool kAlongM, typename acc_t, typename out_t>
__device__ __forceinline__ void gemm_store_rows(const GemmResult<out_t>& c, out_t* out,
                                                const acc_t* rows, int64_t z, int64_t m0,
                                                int64_t n0, int64_t M, int64_t N) {
  static_assert(kGemmStoreRows == kGemmTileN, "a pass is square: the lanes' index is t % 64");
  constexpr int kStep = kGemmThreads / kGemmStoreRows;
  const int lane_i = static_cast<int>(threadIdx.x) % kGemmStoreRows;
  const int first = static_cast<int>(threadIdx.x) / kGemmStoreRows;
  const GemmIndex& lane_idx = kAlongM ? c.rows : c.cols;
  const GemmIndex& loop_idx = kAlongM ? c.cols : c.rows;
  const int64_t lane_pos = (kAlongM ? m0 : n0) + lane_i;
  if (lane_pos >= (kAlongM ? M : N)) return;
  const int64_t lane_off = lane_idx.offset(lane_pos);
  const int64_t loop0 = kAlongM ? n0 : m0, loop_end = kAlongM ? N : M;
  GemmCursor cur;
  cur.start(loop_idx, loop0 + first);
#pragma unroll 4
  for (int s = first; s < kGemmStoreRows; s += kStep) {
    const int64_t pos = loop0 + s, off = cur.offset;
    if (pos >= loop_end) break;
    if (s + kStep < kGemmStoreRows) cur.step(loop_idx, kStep);
    const int64_t m = kAlongM ? lane_pos : pos;
    acc_t v = kAlongM ? rows[lane_i * kGemmLdC + s] : rows[s * kGemmLdC + lane_i];
    if (c.row_bias != nullptr) v += static_cast<acc_t>(c.row_bias[z * c.bias_batch_stride + m]);
    out_t* dst = out + lane_off + off;
    if (c.accumulate) v = static_cast<acc_t>(*dst) + v;
    *dst = static_cast<out_t>(v);
  }
}

template <typename acc_t, typename out_t>
__device__ __forceinline__ void gemm_store_rows(const GemmResult<out_t>& c, bool along_m,
                                                out_t* out, const acc_t* rows, int64_t z,
                                                int64_t m0, int64_t n0, int64_t M, int64_t N) {
  if (along_m)
    gemm_store_rows<true>(c, out, rows, z, m0, n0, M, N);
  else
    gemm_store_rows<false>(c, out, rows, z, m0, n0, M, N);
}

}  // namespace detail

// cp.async staging applies when the operand is already float (no conversion on the way).
template <typename scalar_t>
constexpr bool gemm_can_copy_async = std::is_same_v<scalar_t, float>;

// Two blocks per SM (at most 128 registers) for float accumulators; double accumulators
// need twice the registers for the same sub-tile, so one block.
template <typename scalar_t>
constexpr int gemm_min_blocks = sizeof(at::opmath_type<scalar_t>) == 8 ? 1 : 2;

namespace detail {

// The tiles of a launch: (problem x split, m tile, n tile), n fastest, numbered in one 32-bit
// index below 2^30 (gemm_sizes_fit). Block b of the grid (linearised, x fastest) takes tiles
// b, b + blocks, ...: one counter live across the kernel's outer loop instead of three nested
// grid-stride loops, a few registers that the k loop gets instead. With a grid that covers
// every tile (the launch code's grid unless a dimension hits the launcher's cap), block
// (x, y, z) takes n tile x, m tile y and problem x split z, as before.
struct GemmTiles {
  int tiles_n, tiles_m, splits, count;
  int64_t split_len;
  template <typename out_t>
  __device__ __forceinline__ GemmTiles(const GemmResult<out_t>& c, int64_t batches, int64_t M,
                                       int64_t N, int64_t K)
      : tiles_n(static_cast<int>((N + kGemmTileN - 1) / kGemmTileN)),
        tiles_m(static_cast<int>((M + kGemmTileM - 1) / kGemmTileM)),
        splits(static_cast<int>(c.split_k)),
        count(static_cast<int>(batches) * splits * tiles_m * tiles_n),
        split_len(splits > 1 ? c.split_len : K) {}
  __device__ __forceinline__ static int first() {
    return static_cast<int>(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  }
  __device__ __forceinline__ static int step() {
    return static_cast<int>(gridDim.x * gridDim.y * gridDim.z);
  }
};

// One tile's coordinates: its problem z, split, k range and first row and column of C.
struct GemmTile {
  int z, split, k_begin, k_end;
  int64_t m0, n0;
  __device__ __forceinline__ GemmTile(const GemmTiles& t, int tile, int64_t K) {
    const int tn = tile % t.tiles_n, rest = tile / t.tiles_n;
    const int tm = rest % t.tiles_m, zs = rest / t.tiles_m;
    z = zs / t.splits;
    split = zs - z * t.splits;
    // k positions are 32-bit (K < 2^31 - 2 kGemmTileM, gemm_sizes_fit), so k0 + kGemmTileK
    // cannot overflow.
    k_begin = static_cast<int>(split * t.split_len);
    k_end = static_cast<int>(K < k_begin + t.split_len ? K : k_begin + t.split_len);
    m0 = int64_t{tm} * kGemmTileM;
    n0 = int64_t{tn} * kGemmTileN;
  }
};

// The FMA kernel's body, for a B operand of type OperandB (GemmOperand, or GemmConvOperand:
// gemm_conv_kernel).
template <typename scalar_t, typename out_t, bool kAsync, class OperandB>
__device__ __forceinline__ void gemm_fma_body(const GemmOperand<scalar_t>& a,
                                              const OperandB& b, const GemmResult<out_t>& c,
                                              int64_t batches, int64_t M, int64_t N, int64_t K) {
  using acc_t = at::opmath_type<scalar_t>;
  static_assert(!kAsync || gemm_can_copy_async<scalar_t>, "cp.async copies float operands");
  static_assert(std::is_same_v<out_t, scalar_t> || std::is_same_v<out_t, acc_t>,
                "C holds the operands' type or the accumulator's (split-K partial sums)");
  using StagerA = GemmStager<scalar_t, kGemmTileM>;
  using StagerB = typename StagerFor<OperandB, kGemmTileN>::type;
  // The two A and B slice buffers; after the k loop their bytes hold 64 rows of C at a time.
  constexpr int kSliceA = kGemmTileK * kGemmLdA, kSliceB = kGemmTileK * kGemmLdB;
  constexpr int kStaging = 2 * (kSliceA + kSliceB), kCTile = kGemmStoreRows * kGemmLdC;
  alignas(16) __shared__ acc_t smem[kStaging > kCTile ? kStaging : kCTile];
  auto a_tile = [&](int buf) { return smem + buf * kSliceA; };
  auto b_tile = [&](int buf) { return smem + 2 * kSliceA + buf * kSliceB; };
  acc_t* const c_tile = smem;  // [kGemmStoreRows][kGemmLdC]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  // Every loop bound below is the same for all threads of the block, so they all reach the
  // same __syncthreads.
  const GemmTiles tiles(c, batches, M, N, K);
  for (int tile = GemmTiles::first(); tile < tiles.count; tile += GemmTiles::step()) {
    const GemmTile at(tiles, tile, K);
    const int z = at.z, split = at.split, k_begin = at.k_begin, k_end = at.k_end;
    const int64_t m0 = at.m0, n0 = at.n0;
    StagerA sa;
    StagerB sb;
    sa.init(a, z, m0, M, k_begin);
    sb.init(b, z, n0, N, k_begin);
    acc_t acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = acc_t(0);
    }
    acc_t ra[StagerA::kSlots], rb[StagerB::kSlots];  // the register-staged next slice
    // Slice 0 into buffer 0 (the previous tile's readers are past its closing barrier).
    if (k_begin >= k_end) {
      // Nothing to sum (K == 0): C = bias, and no copy left in flight.
    } else if constexpr (kAsync) {
      sa.template copy_async<kGemmLdA>(a, a_tile(0), k_begin, k_end);
      sb.template copy_async<kGemmLdB>(b, b_tile(0), k_begin, k_end);
      cp_async_commit();
    } else {
      sa.load(a, ra, k_begin, k_end);
      sb.load(b, rb, k_begin, k_end);
      sa.template store<kGemmLdA>(a_tile(0), ra);
      sb.template store<kGemmLdB>(b_tile(0), rb);
    }
    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += kGemmTileK) {
      const bool more = k0 + kGemmTileK < k_end;
      if (more) {
        sa.advance(a);
        sb.advance(b);
      }
      if constexpr (kAsync) {
        // The other buffer was last read before the previous slice's closing barrier.
        if (more) {
          sa.template copy_async<kGemmLdA>(a, a_tile(cur ^ 1), k0 + kGemmTileK, k_end);
          sb.template copy_async<kGemmLdB>(b, b_tile(cur ^ 1), k0 + kGemmTileK, k_end);
          cp_async_commit();
          cp_async_wait<1>();  // this slice's group has landed, the next may fly
        } else {
          cp_async_wait<0>();
        }
        __syncthreads();
      } else {
        __syncthreads();  // this slice's stores are visible
        if (more) {
          sa.load(a, ra, k0 + kGemmTileK, k_end);  // in flight during the FMAs below
          sb.load(b, rb, k0 + kGemmTileK, k_end);
        }
      }
      const acc_t* at_ = a_tile(cur);
      const acc_t* bt_ = b_tile(cur);
#pragma unroll
      for (int kk = 0; kk < kGemmTileK; ++kk) {
        acc_t lo[4], hi[4], bv[4];
        load4(at_ + kk * kGemmLdA + 4 * ty, lo);
        load4(at_ + kk * kGemmLdA + 64 + 4 * ty, hi);
        load4(bt_ + kk * kGemmLdB + 4 * tx, bv);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            acc[i][j] += lo[i] * bv[j];
            acc[4 + i][j] += hi[i] * bv[j];
          }
        }
      }
      if constexpr (kAsync) {
        __syncthreads();  // the next copy into this buffer waits for every reader
      } else if (more) {
        // The other buffer's readers finished before this slice's opening barrier.
        sa.template store<kGemmLdA>(a_tile(cur ^ 1), ra);
        sb.template store<kGemmLdB>(b_tile(cur ^ 1), rb);
      }
      cur ^= 1;
    }
    // C through shared memory, 64 rows (acc rows 4 h + i) per pass, then out to global
    // memory with consecutive lanes on consecutive elements (gemm_store_rows).
    out_t* out = c.data + z * c.batch_stride + split * c.split_stride;
    const bool along_m = gemm_store_along_m(c, N);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // The slices' last readers (cp.async: the k loop's closing barrier did it), then
      // the previous pass's readers, are done.
      if (!kAsync || h > 0) __syncthreads();
#pragma unroll
      for (int i = 0; i < 4; ++i)
        store4(c_tile + (4 * ty + i) * kGemmLdC + 4 * tx, acc[4 * h + i]);
      __syncthreads();
      gemm_store_rows(c, along_m, out, c_tile, z, m0 + kGemmStoreRows * h, n0, M, N);
    }
    __syncthreads();  // the C tile is read before the next tile stages into its bytes
  }
}

}  // namespace detail

template <typename scalar_t, typename out_t, bool kAsync>
__global__ void __launch_bounds__(kGemmThreads, gemm_min_blocks<scalar_t>)
    gemm_kernel(GemmOperand<scalar_t> a, GemmOperand<scalar_t> b, GemmResult<out_t> c,
                int64_t batches, int64_t M, int64_t N, int64_t K) {
  detail::gemm_fma_body<scalar_t, out_t, kAsync>(a, b, c, batches, M, N, K);
}

// The same with B read as an implicit im2col (GemmConvOperand).
template <typename scalar_t, typename out_t, bool kAsync>
__global__ void __launch_bounds__(kGemmThreads, gemm_min_blocks<scalar_t>)
    gemm_conv_kernel(GemmOperand<scalar_t> a, GemmConvOperand<scalar_t> b, GemmResult<out_t> c,
                     int64_t batches, int64_t M, int64_t N, int64_t K) {
  detail::gemm_fma_body<scalar_t, out_t, kAsync>(a, b, c, batches, M, N, K);
}


// ---- Tensor cores (sm_80+): half / bfloat16 inputs, or float inputs rounded to TF32 ----
//
// The same 128 x 64 tiles, grid, split-K and epilogue contract as gemm_kernel, computed with
// nvcuda::wmma fragments: the block's 8 warps form a 4 x 2 grid, each owning a 32 x 32
// sub-tile of C as 2 x 2 float accumulator fragments of 16 x 16. Stages of 16 k rows (two
// 8-row slices of the GemmStager, so operand reads, their bounds and the zero padding of
// M, N, K edges are those of the FMA kernel) are kept in shared memory in the operand's own
// type, A as [k][m] (a col_major matrix_a) and B as [k][n] (a row_major matrix_b), rows
// padded by 16 bytes (ldm a multiple of 16 bytes, every fragment pointer 32-byte aligned).
// half / bfloat16 use m16n16k16 (one mma k-step per stage), staged through registers;
// float uses m16n16k8 precision::tf32 (two k-steps), staged with cp.async, each loaded
// fragment element rounded with __float_to_tf32. Global reads stay scalar (strided operands
// have no alignment guarantee). After the k loop the accumulators go through shared memory
// (the stage buffers' bytes, reused: all 128 rows at once) to gemm_store_rows, the epilogue
// of gemm_kernel. Same fixed summation order per launch: deterministic.
constexpr int kGemmTcStageK = 2 * kGemmTileK;  // k rows per shared stage

template <typename scalar_t>
constexpr bool gemm_has_tensor_cores = std::is_same_v<scalar_t, c10::Half> ||
                                       std::is_same_v<scalar_t, c10::BFloat16> ||
                                       std::is_same_v<scalar_t, float>;

namespace detail {

// Shared-memory layout of the tensor-core kernel for operands of type scalar_t.
template <typename scalar_t>
struct GemmTcLayout {
  static constexpr int kPad = 16 / static_cast<int>(sizeof(scalar_t));
  static constexpr int kLdA = kGemmTileM + kPad, kLdB = kGemmTileN + kPad;
  static constexpr int kStageA = kGemmTcStageK * kLdA, kStageB = kGemmTcStageK * kLdB;
  static constexpr int kStageBytes =
      2 * (kStageA + kStageB) * static_cast<int>(sizeof(scalar_t));
  static constexpr int kCBytes = kGemmTileM * kGemmLdC * static_cast<int>(sizeof(float));
  static constexpr int kBytes = kStageBytes > kCBytes ? kStageBytes : kCBytes;
  // The k depth of one mma: 16 for 16-bit inputs, 8 for tf32.
  static constexpr int kMmaK = sizeof(scalar_t) == 2 ? 16 : 8;
  static_assert(kStageA * sizeof(scalar_t) % 32 == 0 && kStageB * sizeof(scalar_t) % 32 == 0 &&
                    kMmaK * kLdA * sizeof(scalar_t) % 32 == 0 &&
                    kMmaK * kLdB * sizeof(scalar_t) % 32 == 0 &&
                    16 * kGemmLdC * sizeof(float) % 32 == 0 && kGemmLdC % 4 == 0,
                "wmma pointers 32-byte aligned, ldm a multiple of 16 bytes");
};

#if defined(PYSEG_EMULATOR) || !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
// The wmma input type and the pointer type it loads from, per operand type.
template <typename scalar_t>
struct WmmaInput;
template <>
struct WmmaInput<c10::Half> {
  using frag_t = __half;
  using ptr_t = __half;
};
template <>
struct WmmaInput<c10::BFloat16> {
  using frag_t = __nv_bfloat16;
  using ptr_t = __nv_bfloat16;
};
template <>
struct WmmaInput<float> {
  using frag_t = nvcuda::wmma::precision::tf32;
  using ptr_t = float;
};
#endif

}  // namespace detail

namespace detail {

#if defined(PYSEG_EMULATOR) || !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <typename scalar_t, typename out_t, class OperandB>
__device__ __forceinline__ void gemm_tc_body(const GemmOperand<scalar_t>& a, const OperandB& b,
                                             const GemmResult<out_t>& c, int64_t batches,
                                             int64_t M, int64_t N, int64_t K) {
  namespace wmma = nvcuda::wmma;
  static_assert(gemm_has_tensor_cores<scalar_t>, "half, bfloat16 or float (tf32) operands");
  static_assert(std::is_same_v<out_t, scalar_t> || std::is_same_v<out_t, float>,
                "C holds the operands' type or float (split-K partial sums)");
  using Layout = GemmTcLayout<scalar_t>;
  using In = WmmaInput<scalar_t>;
  using ptr_t = typename In::ptr_t;
  constexpr bool kAsync = gemm_can_copy_async<scalar_t>;  // float: cp.async, else registers
  constexpr int kLdA = Layout::kLdA, kLdB = Layout::kLdB, kMmaK = Layout::kMmaK;
  using StagerA = GemmStager<scalar_t, kGemmTileM>;
  using StagerB = typename StagerFor<OperandB, kGemmTileN>::type;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, kMmaK, typename In::frag_t, wmma::col_major>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, kMmaK, typename In::frag_t, wmma::row_major>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, kMmaK, float>;
  alignas(128) __shared__ unsigned char smem[Layout::kBytes];
  scalar_t* const a_stage = reinterpret_cast<scalar_t*>(smem);  // [2][kStageA]
  scalar_t* const b_stage = a_stage + 2 * Layout::kStageA;      // [2][kStageB]
  float* const c_tile = reinterpret_cast<float*>(smem);         // [kGemmTileM][kGemmLdC]
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int warp_m = 32 * (warp % 4), warp_n = 32 * (warp / 4);
  const GemmTiles tiles(c, batches, M, N, K);
  for (int tile = GemmTiles::first(); tile < tiles.count; tile += GemmTiles::step()) {
    const GemmTile at(tiles, tile, K);
    const int z = at.z, split = at.split, k_begin = at.k_begin, k_end = at.k_end;
    const int64_t m0 = at.m0, n0 = at.n0;
    StagerA sa;
    StagerB sb;
    sa.init(a, z, m0, M, k_begin);
    sb.init(b, z, n0, N, k_begin);
    FragC acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    }
    // The register-staged next stage (16-bit operands): two 8-row slices per operand.
    scalar_t ra[2][StagerA::kSlots], rb[2][StagerB::kSlots];
    // Stage s's two slices at k0 (each stager's cursor is at k0, and moves past them).
    auto copy_stage = [&](int s, int k0) {
      if constexpr (kAsync) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          sa.template copy_async<kLdA>(a, a_stage + s * Layout::kStageA + h * kGemmTileK * kLdA,
                                       k0 + h * kGemmTileK, k_end);
          sb.template copy_async<kLdB>(b, b_stage + s * Layout::kStageB + h * kGemmTileK * kLdB,
                                       k0 + h * kGemmTileK, k_end);
          sa.advance(a);
          sb.advance(b);
        }
        cp_async_commit();
      }
    };
    auto load_stage = [&](int k0) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        sa.load(a, ra[h], k0 + h * kGemmTileK, k_end);
        sb.load(b, rb[h], k0 + h * kGemmTileK, k_end);
        sa.advance(a);
        sb.advance(b);
      }
    };
    auto store_stage = [&](int s) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        sa.template store<kLdA>(a_stage + s * Layout::kStageA + h * kGemmTileK * kLdA, ra[h]);
        sb.template store<kLdB>(b_stage + s * Layout::kStageB + h * kGemmTileK * kLdB, rb[h]);
      }
    };
    if (k_begin < k_end) {  // (K == 0: C = bias, nothing staged)
      if constexpr (kAsync) {
        copy_stage(0, k_begin);
      } else {
        load_stage(k_begin);
        store_stage(0);
      }
    }
    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += kGemmTcStageK) {
      const bool more = k0 + kGemmTcStageK < k_end;
      if constexpr (kAsync) {
        // The other stage was last read before the previous stage's closing barrier.
        if (more) {
          copy_stage(cur ^ 1, k0 + kGemmTcStageK);
          cp_async_wait<1>();  // this stage's group has landed, the next may fly
        } else {
          cp_async_wait<0>();
        }
        __syncthreads();
      } else {
        __syncthreads();  // this stage's stores are visible
        if (more) load_stage(k0 + kGemmTcStageK);  // in flight during the mmas below
      }
      const scalar_t* at_ = a_stage + cur * Layout::kStageA;
      const scalar_t* bt_ = b_stage + cur * Layout::kStageB;
#pragma unroll
      for (int kk = 0; kk < kGemmTcStageK; kk += kMmaK) {
        FragA fa[2];
        FragB fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          wmma::load_matrix_sync(
              fa[i], reinterpret_cast<const ptr_t*>(at_ + kk * kLdA + warp_m + 16 * i), kLdA);
          wmma::load_matrix_sync(
              fb[i], reinterpret_cast<const ptr_t*>(bt_ + kk * kLdB + warp_n + 16 * i), kLdB);
          if constexpr (std::is_same_v<scalar_t, float>) {
#pragma unroll
            for (int t = 0; t < fa[i].num_elements; ++t)
              fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
#pragma unroll
            for (int t = 0; t < fb[i].num_elements; ++t)
              fb[i].x[t] = wmma::__float_to_tf32(fb[i].x[t]);
          }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
      }
      if constexpr (kAsync) {
        __syncthreads();  // the next copy into this stage waits for every reader
      } else if (more) {
        store_stage(cur ^ 1);  // its readers finished before this stage's opening barrier
      }
      cur ^= 1;
    }
    __syncthreads();  // the stages' last readers are done: their bytes become c_tile
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(c_tile + (warp_m + 16 * i) * kGemmLdC + warp_n + 16 * j,
                                acc[i][j], kGemmLdC, wmma::mem_row_major);
    }
    __syncthreads();
    out_t* out = c.data + z * c.batch_stride + split * c.split_stride;
    const bool along_m = gemm_store_along_m(c, N);
#pragma unroll
    for (int h = 0; h < kGemmTileM / kGemmStoreRows; ++h)
      gemm_store_rows(c, along_m, out, c_tile + kGemmStoreRows * h * kGemmLdC, z,
                      m0 + kGemmStoreRows * h, n0, M, N);
    __syncthreads();  // c_tile is read before the next tile stages into its bytes
  }
}
#endif

}  // namespace detail

template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kGemmThreads, 2)
    gemm_tc_kernel(GemmOperand<scalar_t> a, GemmOperand<scalar_t> b, GemmResult<out_t> c,
                   int64_t batches, int64_t M, int64_t N, int64_t K) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800 && !defined(PYSEG_EMULATOR)
  __trap();  // never launched below sm_80 (launch_gemm picks gemm_kernel there)
#else
  detail::gemm_tc_body(a, b, c, batches, M, N, K);
#endif
}

// The same with B read as an implicit im2col (GemmConvOperand).
template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kGemmThreads, 2)
    gemm_tc_conv_kernel(GemmOperand<scalar_t> a, GemmConvOperand<scalar_t> b,
                        GemmResult<out_t> c, int64_t batches, int64_t M, int64_t N, int64_t K) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800 && !defined(PYSEG_EMULATOR)
  __trap();
#else
  detail::gemm_tc_body(a, b, c, batches, M, N, K);
#endif
}

// out[i] (= or +=) sum over s of partial[s * numel + i], s in increasing order (the split-K
// reduction: fixed order, no atomics). out is contiguous.
template <typename scalar_t, typename acc_t>
__global__ void gemm_sum_splits_kernel(const acc_t* __restrict__ partial,
                                       scalar_t* __restrict__ out, int64_t splits, int64_t numel,
                                       bool accumulate) {
  PYSEG_KERNEL_LOOP(i, numel) {
    acc_t v = accumulate ? static_cast<acc_t>(out[i]) : acc_t(0);
    for (int64_t s = 0; s < splits; ++s) v += partial[s * numel + i];
    out[i] = static_cast<scalar_t>(v);
  }
}

}  // namespace pyseg
