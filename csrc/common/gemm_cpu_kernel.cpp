// The GEMM's per-capability part: packing, micro-kernel and the tiled driver (see gemm.h).
// Compiled once per capability through the wrappers setup.py generates (cpu_capability.h);
// do not add this file to a build by itself.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "common/gemm.h"
#include "common/scratch.h"

namespace pyseg::cpu::CPU_CAPABILITY {
namespace {

// Micro-kernel tile: MR rows of A broadcast, NV vectors (NR = NV * lanes columns) of B.
// MR * NV accumulators + NV B vectors + 1 broadcast must fit the register file.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kMR = 14, kNV = 2;  // 28 + 2 + 1 of 32 zmm
#elif defined(CPU_CAPABILITY_AVX2)
constexpr int kMR = 6, kNV = 2;  // 12 + 2 + 1 of 16 ymm
#else
constexpr int kMR = 4, kNV = 1;  // portable code; the compiler maps it to SSE2
#endif

// Length of a k block: a B micro-panel (kKC x NR, 32 KB in float32 at AVX-512) fits L1.
// A constant, so that results do not depend on the machine's cache sizes.
constexpr int64_t kKC = 256;

template <typename T>
using Vec = at::vec::Vectorized<T>;
template <typename T>
constexpr int64_t kNR = kNV * Vec<T>::size();

// c[0:R, 0:NV*W] (=|+=) sum_p a[p, 0:R]^T b[p, 0:NV*W], k in order. B is a packed panel
// (NR values per k); A is a packed panel (kRowsA false: the values of step p at a + p * MR)
// or R rows of a row-major matrix read in place (kRowsA: row r at a + r * lda, step p at
// + p). Both read the same values in the same order, so the results are bitwise the same.
// The full tile is R = MR, NV = kNV; an edge tile runs with only the rows and vectors it
// has (a 16-column C on a 32-column tile would otherwise spend half its FMAs on padding).
// How a micro-kernel reads A: a packed panel, rows in place, or rows in place with the next
// tile's rows prefetched (MatrixView::cold_rows).
enum ARead : int { kPackedA = 0, kRowsInPlace = 1, kRowsPrefetched = 2 };

template <typename T, int kA, int R, int NV>
void micro_kernel(int64_t k, const T* __restrict a, int64_t lda, const T* __restrict b,
                  T* __restrict c, int64_t ldc, bool accumulate) {
  constexpr bool kRowsA = kA != kPackedA;
  constexpr int W = Vec<T>::size();
  Vec<T> acc[R][NV];
#pragma GCC unroll 32
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = Vec<T>(T(0));
  auto step = [&]() __attribute__((always_inline)) {
    Vec<T> bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = Vec<T>::loadu(b + j * W);
#pragma GCC unroll 32
    for (int i = 0; i < R; ++i) {
      const Vec<T> av(kRowsA ? a[i * lda] : a[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = at::vec::fmadd(av, bv[j], acc[i][j]);
    }
    a += kRowsA ? 1 : kMR;
    b += kNR<T>;
  };
  if constexpr (kA == kRowsPrefetched) {
    // Fetch the next tile's rows (the R rows after these, same k) into L2 while this one
    // computes, a line per row every 64 bytes of k. Streamed from beyond L2, a tile's rows
    // otherwise stall on memory: a 14-row tile ran at half its in-L2 speed, 73% with this
    // (benchmarks/microkernel_peak.cpp). Only for operands that are likely out of cache: on
    // rows that are in L2 already the extra instructions cost 5-25% (DeconvNet's 512-channel
    // implicit GEMMs).
    constexpr int64_t kLine = 64 / sizeof(T);
    for (int64_t p0 = 0; p0 < k; p0 += kLine) {
#pragma GCC unroll 32
      for (int i = 0; i < R; ++i) __builtin_prefetch(a + (R + i) * lda, 0, 2);
      const int64_t p1 = std::min(k, p0 + kLine);
      for (int64_t p = p0; p < p1; ++p) step();
    }
  } else {
    for (int64_t p = 0; p < k; ++p) step();
  }
#pragma GCC unroll 32
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      T* d = c + i * ldc + j * W;
      Vec<T> v = acc[i][j];
      if (accumulate) v = v + Vec<T>::loadu(d);
      v.store(d);
    }
  }
}

template <typename T, int kA>
using MicroKernel = void (*)(int64_t, const T*, int64_t, const T*, T*, int64_t, bool);

// kernels[r - 1][nv - 1]: the micro-kernel for r rows and nv vectors.
template <typename T, int kA, int... Rs>
constexpr auto micro_kernels(std::integer_sequence<int, Rs...>) {
  static_assert(kNV <= 2, "the table below lists one or two vectors");
  std::array<std::array<MicroKernel<T, kA>, kNV>, sizeof...(Rs)> table{};
  ((table[Rs][0] = &micro_kernel<T, kA, Rs + 1, 1>), ...);
  if constexpr (kNV == 2) ((table[Rs][1] = &micro_kernel<T, kA, Rs + 1, kNV>), ...);
  return table;
}

// A tile of C that may be cut by the matrix edge. It runs the micro-kernel of its own rows
// and vectors; when its columns end inside a vector, through a small buffer (the packed B
// panel is zero-padded, so the padding lanes compute zeros that are not copied out).
// (kA != kPackedA: a holds the tile's rows of a row-major A, lda apart; see micro_kernel.)
template <typename T, int kA = kPackedA>
void tile(int64_t k, const T* a, int64_t lda, const T* b, T* c, int64_t ldc, int64_t rows,
          int64_t cols, bool accumulate) {
  constexpr int64_t NR = kNR<T>;
  constexpr int64_t W = Vec<T>::size();
  if (rows == kMR && cols == NR) {
    micro_kernel<T, kA, kMR, kNV>(k, a, lda, b, c, ldc, accumulate);
    return;
  }
  static constexpr auto kernels = micro_kernels<T, kA>(std::make_integer_sequence<int, kMR>{});
  const int64_t nv = (cols + W - 1) / W;
  const auto kernel = kernels[rows - 1][nv - 1];
  if (cols == nv * W) {
    kernel(k, a, lda, b, c, ldc, accumulate);
    return;
  }
  alignas(64) T buf[kMR * NR];
  if (accumulate)
    for (int64_t i = 0; i < rows; ++i) std::memcpy(buf + i * NR, c + i * ldc, cols * sizeof(T));
  kernel(k, a, lda, b, buf, NR, accumulate);
  for (int64_t i = 0; i < rows; ++i) std::memcpy(c + i * ldc, buf + i * NR, cols * sizeof(T));
}

// Panel of MR rows of A starting at row i0: out[p * MR + r] = A[i0 + r, p] (0 past the edge).
template <typename T>
void pack_a_panel(const MatrixView<T>& a, int64_t i0, T* out) {
  const int64_t k = a.cols, rows = std::min<int64_t>(kMR, a.rows - i0);
  if (rows < kMR) std::fill(out, out + k * kMR, T(0));
  if (a.gathered()) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t p = 0; p < k; ++p) out[p * kMR + r] = a.data[a.offset(i0 + r, p)];
  } else if (a.col_stride == 1) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = a.data + (i0 + r) * a.row_stride;
      for (int64_t p = 0; p < k; ++p) out[p * kMR + r] = src[p];
    }
  } else {
    for (int64_t p = 0; p < k; ++p) {
      const T* src = a.data + i0 * a.row_stride + p * a.col_stride;
      for (int64_t r = 0; r < rows; ++r) out[p * kMR + r] = src[r * a.row_stride];
    }
  }
}

// Panel of NR columns of B starting at column j0: out[p * NR + c] = B[p, j0 + c]. Rows given
// by row_offsets are gathered here (an implicit GEMM's shifted input rows).
template <typename T>
void pack_b_panel(const MatrixView<T>& b, int64_t j0, T* out) {
  constexpr int64_t NR = kNR<T>;
  const int64_t k = b.rows, cols = std::min<int64_t>(NR, b.cols - j0);
  if (cols < NR) std::fill(out, out + k * NR, T(0));
  // Column offsets that are one run (a conv tap's channels) gather like unit strides.
  bool run = b.col_offsets != nullptr;
  for (int64_t c = 1; run && c < cols; ++c) run = b.col_offsets[j0 + c] == b.col_offsets[j0] + c;
  if (run) {
    for (int64_t p = 0; p < k; ++p)
      std::memcpy(out + p * NR, b.data + b.offset(p, j0), cols * sizeof(T));
  } else if (b.col_offsets) {
    for (int64_t p = 0; p < k; ++p)
      for (int64_t c = 0; c < cols; ++c) out[p * NR + c] = b.data[b.offset(p, j0 + c)];
  } else if (b.col_stride == 1) {
    for (int64_t p = 0; p < k; ++p)
      std::memcpy(out + p * NR, b.data + b.offset(p, j0), cols * sizeof(T));
  } else {
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t p = 0; p < k; ++p) out[p * NR + c] = b.data[b.offset(p, j0 + c)];
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
void pack_a_all(const MatrixView<T>& a, T* out) {
  const int64_t panels = ceil_div(a.rows, kMR);
  at::parallel_for(0, panels, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, a.cols)),
                   [&](int64_t b, int64_t e) {
                     for (int64_t i = b; i < e; ++i) pack_a_panel(a, i * kMR, out + i * kMR * a.cols);
                   });
}

template <typename T>
void pack_b_all(const MatrixView<T>& b, T* out) {
  constexpr int64_t NR = kNR<T>;
  const int64_t panels = ceil_div(b.cols, NR);
  at::parallel_for(0, panels, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, b.rows)),
                   [&](int64_t s, int64_t e) {
                     for (int64_t j = s; j < e; ++j) pack_b_panel(b, j * NR, out + j * NR * b.rows);
                   });
}

// Rows of A up to which a GEMM with B row-contiguous and unpacked streams B instead of
// packing it: each B row is read once for all rows of A (a matrix-vector product, such as a
// transposed conv on a 1x1 input, is bound by reading B, which packing would triple).
constexpr int64_t kSkinnyRows = 4;

// C[0:m, j0:j1] for m <= kSkinnyRows, B read in place. The same arithmetic as the packed
// path, term for term: per k block of kKC, a sum from zero with one FMA per term in k order,
// then added to C. So the result is bitwise the packed path's.
template <typename T>
void skinny_columns(const GemmArgs<T>& g, int64_t j0, int64_t j1) {
  constexpr int64_t W = Vec<T>::size();
  const int64_t m = g.m, k = g.k;
  for (int64_t j = j0; j < j1; j += W) {
    const int64_t cols = std::min<int64_t>(W, j1 - j);
    for (int64_t p0 = 0; p0 < k; p0 += kKC) {
      const int64_t p1 = std::min(k, p0 + kKC);
      Vec<T> acc[kSkinnyRows];
      for (int64_t i = 0; i < m; ++i) acc[i] = Vec<T>(T(0));
      for (int64_t p = p0; p < p1; ++p) {
        const T* brow = g.b.data + p * g.b.row_stride + j;
        const Vec<T> bv = cols == W ? Vec<T>::loadu(brow) : Vec<T>::loadu(brow, cols);
        for (int64_t i = 0; i < m; ++i) {
          const Vec<T> av(g.a.data[i * g.a.row_stride + p * g.a.col_stride]);
          acc[i] = at::vec::fmadd(av, bv, acc[i]);
        }
      }
      for (int64_t i = 0; i < m; ++i) {
        T* d = g.c + i * g.ldc + j;
        Vec<T> v = acc[i];
        if (g.accumulate || p0 > 0) v = v + (cols == W ? Vec<T>::loadu(d) : Vec<T>::loadu(d, cols));
        if (cols == W) {
          v.store(d);
        } else {
          v.store(d, cols);
        }
      }
    }
  }
}

// Whether kMR rows `stride_bytes` apart crowd more lines into one L1 set than an 8-way L1
// holds (sets of 64-byte lines, 4 KB per way).
bool rows_alias_in_l1(int64_t stride_bytes) {
  int count[64] = {};
  int most = 0;
  for (int64_t r = 0; r < kMR; ++r) most = std::max(most, ++count[((r * stride_bytes) >> 6) & 63]);
  return most > 8;
}

template <typename T>
void gemm(const GemmArgs<T>& g) {
  constexpr int64_t MR = kMR, NR = kNR<T>;
  const int64_t m = g.m, n = g.n, k = g.k;
  if (m <= 0 || n <= 0) return;
  if (k == 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + n, T(0));
    return;
  }
  if (m <= kSkinnyRows && !g.a_packed && !g.b_packed && g.b.col_stride == 1 && !g.a.gathered() &&
      !g.b.gathered()) {
    const bool parallel = !at::in_parallel_region() && m * n * k >= (int64_t(1) << 18);
    // Column chunks of whole vectors, so every thread streams its own part of B.
    constexpr int64_t chunk = 64 * Vec<T>::size();
    at::parallel_for(0, ceil_div(n, chunk), parallel ? 1 : ceil_div(n, chunk),
                     [&](int64_t b, int64_t e) {
                       skinny_columns(g, b * chunk, std::min(n, e * chunk));
                     });
    return;
  }
  const int64_t mp = ceil_div(m, MR), np = ceil_div(n, NR);
  // A row-major A is read in place by the micro-kernel: packing it would transpose every element, which costs about as
  // much as the GEMM itself when B is a few panels wide (a conv's im2col rows times a weight
  // of 64 output channels). One operand is packed whole (once); the tasks pack their share
  // of the other.
  // (A gathered view with column offsets is read in place too, run by run.)
  // Not when its rows alias in L1, though: MR rows a multiple of 4 KB apart (a 1024-float
  // row) fall into one set of the L1 (4 KB per way on every x86 core: 32 KB 8-way, 48 KB
  // 12-way), which holds 8 or 12 lines, so every broadcast misses (square 1024 float32 on a
  // Zen 4 core: 78 GFLOP/s in place, 93 packed). Reading in place or packed gives the same
  // bits; only the speed differs.
  const bool a_rows = !g.a_packed && !g.a.row_offsets && (g.a.col_stride == 1 || g.a.col_offsets) &&
                      !rows_alias_in_l1(g.a.row_stride * int64_t(sizeof(T)));
  // The k blocks: kKC long, and for a gathered A also cut where its column offsets jump (each
  // block then is a contiguous stretch of every row). Fixed by k and the offsets alone.
  std::vector<std::pair<int64_t, int64_t>> kblocks;  // (p0, length)
  for (int64_t p0 = 0; p0 < k;) {
    int64_t kc = std::min(kKC, k - p0);
    if (a_rows && g.a.col_offsets) {
      const int64_t* off = g.a.col_offsets;
      int64_t run = 1;
      while (run < kc && off[p0 + run] == off[p0] + run) ++run;
      kc = run;
    }
    kblocks.emplace_back(p0, kc);
    p0 += kc;
  }
  const T* ap = g.a_packed;
  const T* bp = g.b_packed;
  // An A read in place: its rows prefetched a tile ahead when the caller says they are cold.
  const auto in_place_tile = g.a.cold_rows ? &tile<T, kRowsPrefetched> : &tile<T, kRowsInPlace>;
  // Tasks: a grid of (M block, N block). Tiling never changes the result, only the speed.
  const bool parallel = !at::in_parallel_region() && m * n * k >= (int64_t(1) << 18);
  const int64_t target = parallel ? 4 * at::get_num_threads() : 1;
  // With A read in place and B wide enough for every task, the tasks split N only and each
  // packs its own B panels, few enough to stay in its half of the L2; packing all of B first
  // would send it through memory twice more (256 x 2500 x 512: 5 MB written, read back).
  const int64_t b_bytes = np * NR * k * int64_t(sizeof(T));
  const bool b_by_task = a_rows && !ap && !bp && np >= target;
  if (!ap && !bp && !b_by_task) {
    if (a_rows) {
      T* whole = thread_scratch<T, 10>(np * NR * k);
      pack_b_all(g.b, whole);
      bp = whole;
    } else if (mp * MR <= np * NR) {
      T* whole = thread_scratch<T, 10>(mp * MR * k);
      pack_a_all(g.a, whole);
      ap = whole;
    } else {
      T* whole = thread_scratch<T, 10>(np * NR * k);
      pack_b_all(g.b, whole);
      bp = whole;
    }
  }
  // Split the dimension whose operand is already packed first (no repacking), then the other.
  int64_t tm, tn;
  if (b_by_task) {
    tm = 1;
    tn = std::min(np, std::max(target, ceil_div(b_bytes, l2_cache_bytes() / 2)));
  } else if (ap) {
    tn = std::min(np, target);
    tm = std::min(mp, ceil_div(target, tn));
  } else {
    tm = std::min(mp, target);
    tn = std::min(np, ceil_div(target, tm));
  }
  const int64_t mb = ceil_div(mp, tm), nb = ceil_div(np, tn);
  // Panels of one k block that fill half the L2.
  const int64_t l2_panels_a = std::max<int64_t>(1, l2_cache_bytes() / 2 / (MR * kKC * int64_t(sizeof(T))));
  const int64_t l2_panels_b = std::max<int64_t>(1, l2_cache_bytes() / 2 / (NR * kKC * int64_t(sizeof(T))));
  tm = ceil_div(mp, mb);
  tn = ceil_div(np, nb);
  at::parallel_for(0, tm * tn, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t ib = t / tn, jb = t % tn;
      const int64_t i_lo = ib * mb, i_hi = std::min(mp, i_lo + mb);
      const int64_t j_lo = jb * nb, j_hi = std::min(np, j_lo + nb);
      const T* a_blk;  // panels i_lo.. of A
      const T* b_blk;  // panels j_lo.. of B
      if (ap) {
        a_blk = ap + i_lo * MR * k;
      } else if (a_rows) {
        a_blk = nullptr;  // read in place, the last partial panel included
      } else {
        T* buf = thread_scratch<T, 11>((i_hi - i_lo) * MR * k);
        for (int64_t i = i_lo; i < i_hi; ++i) pack_a_panel(g.a, i * MR, buf + (i - i_lo) * MR * k);
        a_blk = buf;
      }
      if (bp) {
        b_blk = bp + j_lo * NR * k;
      } else {
        T* buf = thread_scratch<T, 11>((j_hi - j_lo) * NR * k);
        for (int64_t j = j_lo; j < j_hi; ++j) pack_b_panel(g.b, j * NR, buf + (j - j_lo) * NR * k);
        b_blk = buf;
      }
      // BLIS loop order: k in blocks of kKC (a B micro-panel of kKC x NR stays in L1); the
      // operand the task packed is walked panel by panel against a block of the other
      // that stays in L2. The k blocks run in order: the sum never depends on the tiling.
      for (const auto& [p0, kc] : kblocks) {
        const bool acc = g.accumulate || p0 > 0;
        const int64_t a_col = g.a.col_offsets ? g.a.col_offsets[p0] : p0;
        auto run = [&](int64_t i, int64_t j) {
          const T* b_tile = b_blk + (j - j_lo) * NR * k + p0 * NR;
          T* c_tile = g.c + i * MR * g.ldc + j * NR;
          const int64_t rows = std::min(MR, m - i * MR), cols = std::min(NR, n - j * NR);
          if (a_rows) {
            in_place_tile(kc, g.a.data + i * MR * g.a.row_stride + a_col, g.a.row_stride, b_tile,
                          c_tile, g.ldc, rows, cols, acc);
          } else {
            tile<T>(kc, a_blk + (i - i_lo) * MR * k + p0 * MR, 0, b_tile, c_tile, g.ldc, rows,
                    cols, acc);
          }
        };
        if (ap) {
          for (int64_t i0 = i_lo; i0 < i_hi; i0 += l2_panels_a)
            for (int64_t j = j_lo; j < j_hi; ++j)
              for (int64_t i = i0; i < std::min(i_hi, i0 + l2_panels_a); ++i) run(i, j);
        } else {
          for (int64_t j0 = j_lo; j0 < j_hi; j0 += l2_panels_b)
            for (int64_t i = i_lo; i < i_hi; ++i)
              for (int64_t j = j0; j < std::min(j_hi, j0 + l2_panels_b); ++j) run(i, j);
        }
      }
    }
  });
}

// Peak probe (benchmarks/gemm_peak.py): each of at::get_num_threads() tasks runs `iters`
// rounds of 24 independent float32 FMA chains (enough to cover latency x FMA units).
// Returns the floating-point operations done; the values feed a checksum so nothing is
// optimized away.
double fma_probe(int64_t iters, float* checksum) {
  constexpr int kChains = 24;
  const int64_t tasks = at::get_num_threads();
  std::vector<float> sums(tasks);
  at::parallel_for(0, tasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      Vec<float> acc[kChains];
#pragma GCC unroll 32
      for (int i = 0; i < kChains; ++i) acc[i] = Vec<float>(float(i) * 1e-3f);
      const Vec<float> x(0.999999f), y(1e-7f);
      for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 32
        for (int i = 0; i < kChains; ++i) acc[i] = at::vec::fmadd(acc[i], x, y);
      }
      float s = 0;
      for (int i = 0; i < kChains; ++i) {
        float lanes[Vec<float>::size()];
        acc[i].store(lanes);
        for (float v : lanes) s += v;
      }
      sums[t] = s;
    }
  });
  float s = 0;
  for (float v : sums) s += v;
  *checksum = s;
  return double(tasks) * iters * kChains * Vec<float>::size() * 2;
}

template <typename T>
GemmTile tile_of() {
  return {kMR, kNR<T>};
}

}  // namespace

PYSEG_REGISTER_CPU_KERNEL(gemm_f32_stub, &gemm<float>);
PYSEG_REGISTER_CPU_KERNEL(gemm_f64_stub, &gemm<double>);
PYSEG_REGISTER_CPU_KERNEL(pack_a_f32_stub, &pack_a_all<float>);
PYSEG_REGISTER_CPU_KERNEL(pack_b_f32_stub, &pack_b_all<float>);
PYSEG_REGISTER_CPU_KERNEL(pack_a_f64_stub, &pack_a_all<double>);
PYSEG_REGISTER_CPU_KERNEL(pack_b_f64_stub, &pack_b_all<double>);
PYSEG_REGISTER_CPU_KERNEL(tile_f32_stub, &tile_of<float>);
PYSEG_REGISTER_CPU_KERNEL(tile_f64_stub, &tile_of<double>);
PYSEG_REGISTER_CPU_KERNEL(fma_probe_stub, &fma_probe);

}  // namespace pyseg::cpu::CPU_CAPABILITY
