// pyseg's CPU GEMM: C (m x n) = A (m x k) * B (k x n) [+ C], float32 and float64.
//
// BLIS's design. The operands are copied into panels: A into panels of MR rows (k-major,
// MR values per k), B into panels of NR columns (NR values per k), zero-padded at the edges.
// A row-major A (unit column stride) is the exception: the micro-kernel reads its MR rows in
// place, because packing A transposes every element and costs about as much as the GEMM when
// B is only a few panels wide; unless its rows are a multiple of 4 KB apart, where MR rows
// share one L1 set and every read misses (then A is packed). Read in place and marked
// cold_rows, the next tile's rows are prefetched into L2 while a tile computes.
// A register-blocked micro-kernel computes an MR x NR tile of C over the whole k range:
// per k it loads NR/W vectors of B, broadcasts MR values of A and issues MR*NR/W FMAs into
// accumulators that live in registers (AVX-512 float32: 14 x 32, 28 accumulators of 32
// zmm registers; AVX2: 6 x 16; double halves NR). A tile cut by the edge of C runs a
// micro-kernel of its own rows and vectors, not the full one on zero padding. Its loads are sequential streams, light
// enough (about 13 bytes per cycle at full FMA rate) that the L2 and the prefetchers keep up.
// k runs in fixed blocks of 256 (a B micro-panel then stays in L1), each block adding into C,
// in order; the block length is a constant, not a cache size, so results never depend on the
// machine.
//
// Parallel over tiles of C (at::parallel_for); inside a parallel region it runs inline. Each
// C element is produced by one micro-kernel call summing k in order 0..k-1 (with one FMA per
// term): the result is the same for any thread count and any tiling (deterministic). It
// differs from at::mm only by rounding (BLAS may split or reorder k).
//
// Strides are arbitrary (element (i, j) of A is a.data[i * a.row_stride + j * a.col_stride]),
// so transposes cost nothing extra. An operand may also be a gathered view (MatrixView's
// offset tables): a stride-1 conv then multiplies its zero-bordered input, shifted per tap,
// without building a column matrix (an implicit GEMM). An operand used by many GEMMs (a conv's weight) can be
// packed once with pack_a / pack_b and passed packed. Packed layouts depend on the capability:
// a PackedMatrix remembers the one it was made for and gemm() refuses a mismatch.
//
// PYSEG_GEMM=aten routes gemm() through at::mm instead (for comparison).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cpu_capability.h"
#include "common/scratch.h"

namespace pyseg::cpu {

// Element (i, j) is data[i * row_stride + j * col_stride], or with offset tables
// data[row_offsets[i] + j * col_stride] / data[i * row_stride + col_offsets[j]] (a gathered
// view: a conv's input read through per-tap shifts instead of an im2col copy). The tables
// must outlive the GEMM. A left operand may have col_offsets (read in place, in runs of
// consecutive offsets), a right operand row_offsets (gathered while it is packed).
template <typename T>
struct MatrixView {
  const T* data = nullptr;
  int64_t rows = 0, cols = 0, row_stride = 0, col_stride = 1;
  const int64_t* row_offsets = nullptr;
  const int64_t* col_offsets = nullptr;
  // A hint for a left operand read in place: its rows are probably not in cache (a large
  // image streamed once), so the micro-kernel prefetches the next tile's rows. Speed only.
  bool cold_rows = false;
  MatrixView() = default;
  MatrixView(const T* d, int64_t r, int64_t c, int64_t rs, int64_t cs = 1)
      : data(d), rows(r), cols(c), row_stride(rs), col_stride(cs) {}
  MatrixView transposed() const {
    MatrixView t(data, cols, rows, col_stride, row_stride);
    t.row_offsets = col_offsets;
    t.col_offsets = row_offsets;
    return t;
  }
  int64_t offset(int64_t i, int64_t j) const {
    return (row_offsets ? row_offsets[i] : i * row_stride) +
           (col_offsets ? col_offsets[j] : j * col_stride);
  }
  bool gathered() const { return row_offsets || col_offsets; }
};

// Micro-kernel tile of one capability and type.
struct GemmTile {
  int64_t mr, nr;
};

template <typename T>
struct PackedMatrix {
  std::vector<T, AlignedAllocator<T>> data;  // panels start on cache lines (scratch.h)
  int64_t rows = 0, cols = 0;
  bool is_a = true;
  Capability capability = Capability::Default;
  MatrixView<T> source;  // what was packed (read directly under PYSEG_GEMM=aten; must outlive this)
  int64_t step = 0;      // panel width: MR (A) or NR (B); 0 for a row-major copy (PYSEG_GEMM=aten)

  // Element (e, l) -- e the row of A or the column of B, l the index along k -- lives at
  // data[edge_offset(e) + l * k_stride()]. Code that fills an operand made by packed_zeros
  // uses these to write it in whatever order reads its source best.
  int64_t edge_offset(int64_t e) const {
    if (step == 0) return is_a ? e * cols : e;
    return (e / step) * step * (is_a ? cols : rows) + e % step;
  }
  int64_t k_stride() const { return step == 0 ? (is_a ? 1 : cols) : step; }
};

// What a kernel variant receives. Exactly one of (a, a_packed) and of (b, b_packed) is used.
template <typename T>
struct GemmArgs {
  int64_t m, n, k;
  MatrixView<T> a;
  const T* a_packed;  // pack_a layout for the tile of this capability, or nullptr
  MatrixView<T> b;
  const T* b_packed;
  T* c;
  int64_t ldc;
  bool accumulate;  // C += A * B instead of C = A * B
};

template <typename T>
using GemmFn = void (*)(const GemmArgs<T>&);
template <typename T>
using PackFn = void (*)(const MatrixView<T>&, T*);
using TileFn = GemmTile (*)();

extern CpuStub<GemmFn<float>> gemm_f32_stub;
extern CpuStub<GemmFn<double>> gemm_f64_stub;
extern CpuStub<PackFn<float>> pack_a_f32_stub, pack_b_f32_stub;
extern CpuStub<PackFn<double>> pack_a_f64_stub, pack_b_f64_stub;
extern CpuStub<TileFn> tile_f32_stub, tile_f64_stub;
// Peak FMA probe for benchmarks: returns the flops done, writes a checksum.
extern CpuStub<double (*)(int64_t, float*)> fma_probe_stub;

// An operand: a strided view or a matrix packed for this capability.
template <typename T>
struct GemmOperand {
  MatrixView<T> view;
  const PackedMatrix<T>* packed = nullptr;
  GemmOperand(const MatrixView<T>& v) : view(v) {}  // NOLINT: implicit on purpose
  GemmOperand(const PackedMatrix<T>& p) : packed(&p) {}  // NOLINT
  int64_t rows() const { return packed ? packed->rows : view.rows; }
  int64_t cols() const { return packed ? packed->cols : view.cols; }
};

// C (ldc row stride, unit column stride) = A * B, or += with accumulate.
template <typename T>
void gemm(const GemmOperand<T>& a, const GemmOperand<T>& b, T* c, int64_t ldc,
          bool accumulate = false);
template <typename T>
PackedMatrix<T> pack_a(const MatrixView<T>& a);
template <typename T>
PackedMatrix<T> pack_b(const MatrixView<T>& b);
// The micro-kernel tile in use for T.
template <typename T>
GemmTile gemm_tile();
// Whether PYSEG_GEMM=aten asks for at::mm.
bool gemm_uses_aten();

// A zero rows x cols operand in the packed layout of this capability (A: is_a), for the
// caller to fill through edge_offset / k_stride (rows of A or columns of B past the matrix
// edge stay zero, as pack_a / pack_b leave them). Under PYSEG_GEMM=aten it is a row-major
// matrix that at::mm reads. zero = false leaves it uninitialized, for a caller that writes
// every element, the zero padding past the edge included (no extra pass over a large weight).
template <typename T>
PackedMatrix<T> packed_zeros(int64_t rows, int64_t cols, bool is_a, bool zero = true) {
  PackedMatrix<T> p;
  p.rows = rows;
  p.cols = cols;
  p.is_a = is_a;
  if (gemm_uses_aten()) {
    zero ? p.data.assign(rows * cols, T(0)) : p.data.resize(rows * cols);
    p.source = MatrixView<T>(p.data.data(), rows, cols, cols);
    return p;
  }
  p.capability = active_capability();
  const GemmTile t = gemm_tile<T>();
  p.step = is_a ? t.mr : t.nr;
  const int64_t edge = is_a ? rows : cols, k = is_a ? cols : rows;
  const int64_t n = (edge + p.step - 1) / p.step * p.step * k;
  zero ? p.data.assign(n, T(0)) : p.data.resize(n);
  return p;
}

}  // namespace pyseg::cpu
