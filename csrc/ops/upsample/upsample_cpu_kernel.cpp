// The resampling loops of upsample / interpolate and bed_of_nails on the CPU, compiled once
// per CPU capability (setup.py wraps this file; see common/cpu_capability.h), called through
// the stubs of upsample_cpu_kernel.h by upsample_cpu.cpp, which checks the arguments, builds
// the tap tables and allocates.
//
// Everything is one separable resampling driven by per-axis tap tables (upsample.h):
// forward uses the taps of each output index, backward the transposed tables, so the
// backward is a gather (deterministic, no atomics) with the same code and parallelism.
//
// Work is split over (image or plane, destination row) pairs. Each 2-D resampling is a
// horizontal pass (gather of the column taps) and a vertical pass (a contiguous,
// vectorizable blend of whole rows), accumulated in the op-math type; `resample` explains
// which runs first. For NCHW a "row" is one plane's row (C = 1 below); for channels_last it
// is a whole NHWC row, and the horizontal pass runs over C contiguous channels per tap, so
// both layouts share the code and channels_last vectorizes over C. For NCHW with an integer
// ratio the horizontal taps repeat and run as vectorized fixed-shape loops (`Periodic`).
// For bicubic scale 2 this costs about 2 + 4 multiply-adds per output instead of 16.
//
// The loops are plain C++ that g++ vectorizes (-O3); per capability they run 4 (baseline
// SSE2), 8 (AVX2) or 16 (AVX-512) floats wide, which is what channels_last's blends over C
// contiguous channels need at U-Net's small images. Multiply-adds are not contracted into
// FMAs (fp-contract=off below), so every variant computes the same roundings in the same
// order as the baseline one: the results are bitwise the same on every machine.
#pragma GCC optimize("fp-contract=off")
// g++ 12 reports its own AVX-512 intrinsics (their "undefined" pass-through operand, in the
// half conversions) as maybe-uninitialized when inlined here: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "ops/upsample/upsample_cpu_kernel.h"

namespace pyseg::cpu::CPU_CAPABILITY {
namespace {

using ::pyseg::upsample::Table;

struct Geometry {
  int64_t groups;  // N * C for NCHW, N for channels_last
  int64_t C;       // 1 for NCHW, channels for channels_last
  int64_t src_h, src_w, dst_h, dst_w;
};

template <typename T>
int64_t fixed_taps(const Table<T>& t) {
  const int64_t n = t.size();
  const int64_t k = n > 0 ? t.offsets[1] - t.offsets[0] : 0;
  for (int64_t j = 0; j < n; ++j)
    if (t.offsets[j + 1] - t.offsets[j] != k) return -1;
  return k;
}

// Generic horizontal gather for C == 1 over destination columns [o0, o1):
// out[ow] = sum_b w[b] * line[idx[b]]. `fixed` is the common tap count or -1.
template <typename S, typename D, typename T>
inline void gather_columns(const S* line, D* out, int64_t o0, int64_t o1, const int64_t* off,
                           const int64_t* idx, const T* w, int64_t fixed) {
  if (fixed == 1) {
    for (int64_t ow = o0; ow < o1; ++ow)
      out[ow] = static_cast<D>(w[ow] * static_cast<T>(line[idx[ow]]));
  } else if (fixed == 2) {
    for (int64_t ow = o0; ow < o1; ++ow) {
      const int64_t b = 2 * ow;
      out[ow] = static_cast<D>(w[b] * static_cast<T>(line[idx[b]]) +
                               w[b + 1] * static_cast<T>(line[idx[b + 1]]));
    }
  } else if (fixed == 4) {
    for (int64_t ow = o0; ow < o1; ++ow) {
      const int64_t b = 4 * ow;
      out[ow] = static_cast<D>(w[b] * static_cast<T>(line[idx[b]]) +
                               w[b + 1] * static_cast<T>(line[idx[b + 1]]) +
                               w[b + 2] * static_cast<T>(line[idx[b + 2]]) +
                               w[b + 3] * static_cast<T>(line[idx[b + 3]]));
    }
  } else {
    for (int64_t ow = o0; ow < o1; ++ow) {
      T acc = 0;
      for (int64_t b = off[ow]; b < off[ow + 1]; ++b) acc += w[b] * static_cast<T>(line[idx[b]]);
      out[ow] = static_cast<D>(acc);
    }
  }
}

// Integer ratios (scale 2 or 4 up, and the transposed tables of their backward) give tables
// that repeat away from the borders: destination column po * j + q reads the k consecutive
// source columns pi * j + first[q] + t with the same weights w[q][t] for every block j in
// [j0, j1). The generic gather loads an index and a weight per tap and does not vectorize;
// with po, pi and k as compile-time constants every tap is a load at a fixed offset that is
// contiguous (po > 1) or strided by pi (backward) in j, and the compiler vectorizes the loop
// over j, interleaving the po phases. The pattern is read off the table itself (exact
// comparison) and the sums are taken in the same order as the gather, so results are
// bit-identical to it; border blocks (clamped taps) keep using the gather.
template <typename T>
struct Periodic {
  int64_t po = 0, pi = 0, k = 0;  // destination / source columns per block, taps per column
  int64_t j0 = 0, j1 = 0;         // blocks following the pattern (none if j0 == j1)
  std::vector<int64_t> first;     // po: offset of the first tap of phase q from pi * j
  std::vector<T> weight;          // po * k weights
};

template <typename T>
Periodic<T> find_periodic(const Table<T>& t, int64_t src_n) {
  Periodic<T> p;
  const int64_t n = t.size();
  if (n == 0 || src_n == 0) return p;
  if (n % src_n == 0) {
    p.po = n / src_n;
    p.pi = 1;
  } else if (src_n % n == 0) {
    p.po = 1;
    p.pi = src_n / n;
  } else {
    return p;
  }
  const int64_t blocks = n / p.po, mid = blocks / 2;
  p.k = t.offsets[mid * p.po + 1] - t.offsets[mid * p.po];
  if (p.k == 0) return Periodic<T>{};
  for (int64_t q = 0; q < p.po; ++q) {
    const int64_t b = t.offsets[mid * p.po + q];
    p.first.push_back(t.index[b] - p.pi * mid);
    p.weight.insert(p.weight.end(), t.weight.begin() + b, t.weight.begin() + b + p.k);
  }
  // Block j follows the pattern if each of its columns has k consecutive taps starting at
  // pi * j + first[q] with the pattern's weights.
  auto matches = [&](int64_t j) {
    for (int64_t q = 0; q < p.po; ++q) {
      const int64_t o = j * p.po + q;
      if (t.offsets[o + 1] - t.offsets[o] != p.k) return false;
      for (int64_t s = 0; s < p.k; ++s) {
        const int64_t b = t.offsets[o] + s;
        if (t.index[b] != p.pi * j + p.first[q] + s || t.weight[b] != p.weight[q * p.k + s])
          return false;
      }
    }
    return true;
  };
  if (!matches(mid)) return Periodic<T>{};
  p.j0 = mid;
  p.j1 = mid + 1;
  while (p.j0 > 0 && matches(p.j0 - 1)) --p.j0;
  while (p.j1 < blocks && matches(p.j1)) ++p.j1;
  return p;
}

template <int PO, int PI, int K, typename S, typename D, typename T>
void periodic_columns(const S* line, D* out, const Periodic<T>& p) {
  const S* base[PO];
  T w[PO][K];
  for (int q = 0; q < PO; ++q) {
    base[q] = line + p.first[q];
    for (int s = 0; s < K; ++s) w[q][s] = p.weight[q * K + s];
  }
  for (int64_t j = p.j0; j < p.j1; ++j) {
    for (int q = 0; q < PO; ++q) {
      const S* l = base[q] + PI * j;  // in bounds: the table itself reads these columns
      T acc = w[q][0] * static_cast<T>(l[0]);
      for (int s = 1; s < K; ++s) acc += w[q][s] * static_cast<T>(l[s]);
      out[PO * j + q] = static_cast<D>(acc);
    }
  }
}

template <typename S, typename D, typename T>
using PeriodicFn = void (*)(const S*, D*, const Periodic<T>&);

// The instantiated shapes: scale 2 and 4 forward (nearest 1 tap, bilinear 2, bicubic 4) and
// backward (s, 2s and 4s taps). Any other pattern uses the gather.
template <typename S, typename D, typename T>
PeriodicFn<S, D, T> periodic_kernel(const Periodic<T>& p) {
  if (p.j0 == p.j1) return nullptr;
  auto is = [&](int64_t po, int64_t pi, int64_t k) { return p.po == po && p.pi == pi && p.k == k; };
  if (is(2, 1, 1)) return periodic_columns<2, 1, 1, S, D, T>;
  if (is(2, 1, 2)) return periodic_columns<2, 1, 2, S, D, T>;
  if (is(2, 1, 4)) return periodic_columns<2, 1, 4, S, D, T>;
  if (is(4, 1, 1)) return periodic_columns<4, 1, 1, S, D, T>;
  if (is(4, 1, 2)) return periodic_columns<4, 1, 2, S, D, T>;
  if (is(4, 1, 4)) return periodic_columns<4, 1, 4, S, D, T>;
  if (is(1, 2, 2)) return periodic_columns<1, 2, 2, S, D, T>;
  if (is(1, 2, 4)) return periodic_columns<1, 2, 4, S, D, T>;
  if (is(1, 2, 8)) return periodic_columns<1, 2, 8, S, D, T>;
  if (is(1, 4, 4)) return periodic_columns<1, 4, 4, S, D, T>;
  if (is(1, 4, 8)) return periodic_columns<1, 4, 8, S, D, T>;
  if (is(1, 4, 16)) return periodic_columns<1, 4, 16, S, D, T>;
  return nullptr;
}

// Horizontal taps of one axis, ready for `horizontal`.
template <typename S, typename D, typename T>
struct Columns {
  const int64_t* off;
  const int64_t* idx;
  const T* w;
  int64_t fixed;          // common tap count or -1
  Periodic<T> periodic;   // used when `kernel` is set (C == 1 only)
  PeriodicFn<S, D, T> kernel;

  explicit Columns(const Table<T>& t, int64_t src_n)
      : off(t.offsets.data()), idx(t.index.data()), w(t.weight.data()), fixed(fixed_taps(t)),
        periodic(find_periodic(t, src_n)), kernel(periodic_kernel<S, D, T>(periodic)) {}
};

// Horizontal pass over one row: out[ow, c] = sum_b w[b] * line[idx[b], c] for every output
// column (C contiguous channels per column). S / D: source and destination element types
// (op-math accumulation in T either way).
template <typename S, typename D, typename T>
inline void horizontal(const S* line, D* out, int64_t C, int64_t dst_w,
                       const Columns<S, D, T>& cols) {
  const int64_t* off = cols.off;
  const int64_t* idx = cols.idx;
  const T* w = cols.w;
  if (C == 1) {
    if (cols.kernel) {
      const Periodic<T>& p = cols.periodic;
      gather_columns(line, out, 0, p.po * p.j0, off, idx, w, cols.fixed);
      cols.kernel(line, out, p);
      gather_columns(line, out, p.po * p.j1, dst_w, off, idx, w, cols.fixed);
    } else {
      gather_columns(line, out, 0, dst_w, off, idx, w, cols.fixed);
    }
    return;
  }
  // channels_last: each tap is a contiguous run of C channels (vectorizes over C).
  for (int64_t ow = 0; ow < dst_w; ++ow) {
    D* o = out + ow * C;
    const int64_t b0 = off[ow], b1 = off[ow + 1];
    if (b1 - b0 == 1) {
      const S* l0 = line + idx[b0] * C;
      const T v0 = w[b0];
      for (int64_t c = 0; c < C; ++c) o[c] = static_cast<D>(v0 * static_cast<T>(l0[c]));
    } else if (b1 - b0 == 2) {
      const S* l0 = line + idx[b0] * C;
      const S* l1 = line + idx[b0 + 1] * C;
      const T v0 = w[b0], v1 = w[b0 + 1];
      for (int64_t c = 0; c < C; ++c)
        o[c] = static_cast<D>(v0 * static_cast<T>(l0[c]) + v1 * static_cast<T>(l1[c]));
    } else if (b1 - b0 == 4) {
      const S* l0 = line + idx[b0] * C;
      const S* l1 = line + idx[b0 + 1] * C;
      const S* l2 = line + idx[b0 + 2] * C;
      const S* l3 = line + idx[b0 + 3] * C;
      const T v0 = w[b0], v1 = w[b0 + 1], v2 = w[b0 + 2], v3 = w[b0 + 3];
      for (int64_t c = 0; c < C; ++c)
        o[c] = static_cast<D>(v0 * static_cast<T>(l0[c]) + v1 * static_cast<T>(l1[c]) +
                              v2 * static_cast<T>(l2[c]) + v3 * static_cast<T>(l3[c]));
    } else if (b0 == b1) {
      std::fill(o, o + C, D(0));
    } else if constexpr (std::is_same_v<D, T>) {
      // Accumulate in the output row itself (same type, no rounding in between).
      const S* l = line + idx[b0] * C;
      const T v = w[b0];
      for (int64_t c = 0; c < C; ++c) o[c] = v * static_cast<T>(l[c]);
      for (int64_t b = b0 + 1; b < b1; ++b) {
        const S* lb = line + idx[b] * C;
        const T vb = w[b];
        for (int64_t c = 0; c < C; ++c) o[c] += vb * static_cast<T>(lb[c]);
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        T acc = 0;
        for (int64_t b = b0; b < b1; ++b) acc += w[b] * static_cast<T>(line[idx[b] * C + c]);
        o[c] = static_cast<D>(acc);
      }
    }
  }
}

// Vertical pass: out[j] = sum_a w[a] * rows[a][j] over a contiguous row of n elements.
template <typename S, typename D, typename T, class RowOf>
inline void vertical(D* out, int64_t n, int64_t a0, int64_t a1, const T* w, const RowOf& row_of) {
  if (a0 == a1) {
    std::fill(out, out + n, D(0));
  } else if (a1 - a0 == 1) {
    const S* s0 = row_of(a0);
    const T w0 = w[a0];
    for (int64_t j = 0; j < n; ++j) out[j] = static_cast<D>(w0 * static_cast<T>(s0[j]));
  } else if (a1 - a0 == 2) {
    const S* s0 = row_of(a0);
    const S* s1 = row_of(a0 + 1);
    const T w0 = w[a0], w1 = w[a0 + 1];
    for (int64_t j = 0; j < n; ++j)
      out[j] = static_cast<D>(w0 * static_cast<T>(s0[j]) + w1 * static_cast<T>(s1[j]));
  } else if (a1 - a0 == 4) {
    const S* s0 = row_of(a0);
    const S* s1 = row_of(a0 + 1);
    const S* s2 = row_of(a0 + 2);
    const S* s3 = row_of(a0 + 3);
    const T w0 = w[a0], w1 = w[a0 + 1], w2 = w[a0 + 2], w3 = w[a0 + 3];
    for (int64_t j = 0; j < n; ++j)
      out[j] = static_cast<D>(w0 * static_cast<T>(s0[j]) + w1 * static_cast<T>(s1[j]) +
                              w2 * static_cast<T>(s2[j]) + w3 * static_cast<T>(s3[j]));
  } else if constexpr (std::is_same_v<D, T>) {
    const S* s0 = row_of(a0);
    const T w0 = w[a0];
    for (int64_t j = 0; j < n; ++j) out[j] = w0 * static_cast<T>(s0[j]);
    for (int64_t a = a0 + 1; a < a1; ++a) {
      const S* sa = row_of(a);
      const T wa = w[a];
      for (int64_t j = 0; j < n; ++j) out[j] += wa * static_cast<T>(sa[j]);
    }
  } else {
    // Rare (many taps into a reduced-precision output): accumulate in a T row first.
    std::vector<T> acc(n, T(0));
    for (int64_t a = a0; a < a1; ++a) {
      const S* sa = row_of(a);
      const T wa = w[a];
      for (int64_t j = 0; j < n; ++j) acc[j] += wa * static_cast<T>(sa[j]);
    }
    for (int64_t j = 0; j < n; ++j) out[j] = static_cast<D>(acc[j]);
  }
}

// dst[g, oh, ow, c] = sum_a th.weight[a] * sum_b tw.weight[b] * src[g, th.index[a], tw.index[b], c]
//
// Two orders, both skipping source rows nobody reads:
//  * horizontal first: each source row that is read is resampled horizontally once and kept
//    in a small cache while the destination rows that need it are produced by a contiguous
//    vertical blend; the source is streamed once, in order;
//  * vertical first: per destination row, its source rows are blended into one temporary
//    row, which is then resampled horizontally.
// For an integer scale on both axes they cost the same arithmetic, forward and backward;
// they differ in memory traffic. NCHW rows are short (the cache stays in L1), so streaming
// the source once wins where the horizontal pass is vectorized (bilinear scale-2 backward,
// (8,64,256,256) gradient: 26 against 37 ms on one thread), and vertical first where it is
// a gather (see below). A channels_last row is a whole W x C image row; when rows
// are reduced (downsampling, the backward of upsampling) `max_taps` cached destination rows
// outgrow the single temporary source row, and vertical first measured slightly faster.
//
// S / D: source and destination element types (the N-d driver below also resamples from and
// into op-math buffers); the arithmetic is in T either way.
// The horizontal taps in both forms `resample` may use, built once per table (per-plane
// callers resample many planes with the same tables).
template <typename S, typename D, typename T>
struct HorizontalTaps {
  Columns<S, T, T> in;     // horizontal first: straight from the source rows
  Columns<T, D, T> blend;  // vertical first: from a blended op-math row
  HorizontalTaps(const Table<T>& tw, int64_t src_w) : in(tw, src_w), blend(tw, src_w) {}
};

template <typename S, typename D, typename T>
void resample(const S* src, D* dst, const Geometry& g, const Table<T>& th,
              const HorizontalTaps<S, D, T>& taps) {
  const int64_t C = g.C;
  const int64_t src_row = g.src_w * C, dst_row = g.dst_w * C;
  const int64_t rows = g.groups * g.dst_h;
  // Aim for tasks of ~32k source+destination elements so small planes still parallelize.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, src_row + dst_row));
  const int64_t* h_off = th.offsets.data();
  const int64_t* h_idx = th.index.data();
  const T* h_w = th.weight.data();
  // Source rows are resampled horizontally straight from the input (horizontal first) or
  // from a vertically blended op-math row (vertical first); only one is used per call.
  const Columns<S, T, T>& cols_in = taps.in;
  const Columns<T, D, T>& cols_blend = taps.blend;
  // NCHW reduces rows with the source streamed once when its horizontal taps repeat (the
  // vectorized `Periodic` kernels); with a gather per tap (antialiased downsampling: ~14
  // taps per output at scale 0.3) vertical first runs the gather on the dst_h blended rows
  // instead of all src_h source rows, and the blend itself vectorizes (bicubic-aa x0.3 on
  // (8,64,128,128): 1.44x torch's time horizontal first).
  const bool horizontal_first = g.dst_h >= g.src_h || (C == 1 && cols_in.kernel != nullptr);
  const int64_t slots = std::max<int64_t>(1, th.max_taps());

  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    if (horizontal_first) {
      // Cache of horizontally resampled source rows, keyed by (group, source row). Tap rows
      // of consecutive destination rows form windows that only move forward and hold at
      // most `slots` distinct rows, so evicting the smallest key never drops a row the
      // current destination row still needs.
      std::vector<T> cache(slots * dst_row);
      std::vector<int64_t> key(slots, -1);
      int64_t grp = 0;
      auto row_of = [&](int64_t a) -> const T* {
        const int64_t k = grp * g.src_h + h_idx[a];
        int64_t victim = 0;
        for (int64_t s = 0; s < slots; ++s) {
          if (key[s] == k) return &cache[s * dst_row];
          if (key[s] < key[victim]) victim = s;
        }
        T* line = &cache[victim * dst_row];
        horizontal(src + k * src_row, line, C, g.dst_w, cols_in);
        key[victim] = k;
        return line;
      };
      for (int64_t r = begin; r < end; ++r) {
        grp = r / g.dst_h;
        const int64_t oh = r % g.dst_h;
        const int64_t a0 = h_off[oh], a1 = h_off[oh + 1];
        // Bilinear upsampling: the next destination row usually blends the same two cached
        // rows with other weights. For channels_last the cached rows are whole W x C rows
        // living in L2, and producing both destination rows in one pass reads them once
        // (same sums as `vertical`, so the same results; ~10 % faster at (8,64,128,128)
        // scale 2). NCHW rows are in L1 anyway and measured slower this way.
        if (C > 1 && a1 - a0 == 2 && r + 1 < end && oh + 1 < g.dst_h && h_off[oh + 2] - a1 == 2 &&
            h_idx[a1] == h_idx[a0] && h_idx[a1 + 1] == h_idx[a0 + 1]) {
          const T* s0 = row_of(a0);
          const T* s1 = row_of(a0 + 1);
          const T u0 = h_w[a0], u1 = h_w[a0 + 1], v0 = h_w[a1], v1 = h_w[a1 + 1];
          D* o0 = dst + r * dst_row;
          D* o1 = o0 + dst_row;
          for (int64_t j = 0; j < dst_row; ++j) {
            o0[j] = static_cast<D>(u0 * s0[j] + u1 * s1[j]);
            o1[j] = static_cast<D>(v0 * s0[j] + v1 * s1[j]);
          }
          ++r;
          continue;
        }
        vertical<T, D, T>(dst + r * dst_row, dst_row, a0, a1, h_w, row_of);
      }
    } else {
      std::vector<T> buffer(src_row);
      T* tmp = buffer.data();
      for (int64_t r = begin; r < end; ++r) {
        const int64_t grp = r / g.dst_h, oh = r % g.dst_h;
        const S* base = src + grp * g.src_h * src_row;
        auto row_of = [&](int64_t a) -> const S* { return base + h_idx[a] * src_row; };
        vertical<S, T, T>(tmp, src_row, h_off[oh], h_off[oh + 1], h_w, row_of);
        horizontal(tmp, dst + r * dst_row, C, g.dst_w, cols_blend);
      }
    }
  });
}

template <typename S, typename D, typename T>
void resample(const S* src, D* dst, const Geometry& g, const Table<T>& th, const Table<T>& tw) {
  resample(src, dst, g, th, HorizontalTaps<S, D, T>(tw, g.src_w));
}

// Blend along the depth axis: dst[g, od] = sum_a td.weight[a] * src[g, td.index[a]] over
// whole (H, W, C) planes of `plane` elements, split into chunks so that few deep planes
// still parallelize; each chunk is one contiguous `vertical` blend.
template <typename S, typename D, typename T>
void blend_planes(const S* src, D* dst, int64_t groups, int64_t src_d, int64_t dst_d,
                  int64_t plane, const Table<T>& td) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (plane + kChunk - 1) / kChunk;
  const int64_t* off = td.offsets.data();
  const int64_t* idx = td.index.data();
  const T* w = td.weight.data();
  at::parallel_for(0, groups * dst_d * chunks, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t q = r / chunks, c0 = (r - q * chunks) * kChunk;
      const int64_t grp = q / dst_d, od = q - grp * dst_d;
      const S* base = src + grp * src_d * plane + c0;
      auto row_of = [&](int64_t a) -> const S* { return base + idx[a] * plane; };
      vertical<S, D, T>(dst + q * plane + c0, std::min(kChunk, plane - c0), off[od], off[od + 1],
                        w, row_of);
    }
  });
}

// dst[g, od, oh, ow, c] = sum of the separable D, H and W taps of src[g, ., ., ., c]. An
// identity depth (3-D and 4-D inputs) is the 2-D resampling of groups * D planes; otherwise
// the depth blend and the 2-D resampling run one after the other through an op-math
// buffer, in the order that keeps that buffer smaller.
template <typename scalar_t, typename T>
void resample_nd(const scalar_t* src, scalar_t* dst, int64_t groups, int64_t C,
                 const int64_t* src_dhw, const int64_t* dst_dhw, const std::array<Table<T>, 3>& t) {
  const int64_t sd = src_dhw[0], sh = src_dhw[1], sw = src_dhw[2];
  const int64_t dd = dst_dhw[0], dh = dst_dhw[1], dw = dst_dhw[2];
  if (sd == 1 && dd == 1) {
    resample<scalar_t, scalar_t, T>(src, dst, Geometry{groups, C, sh, sw, dh, dw}, t[1], t[2]);
    return;
  }
  if (sh == dh && sw == dw && sh * sw == 1) {
    blend_planes<scalar_t, scalar_t, T>(src, dst, groups, sd, dd, C, t[0]);
    return;
  }
  const int64_t depth_first = groups * dd * sh * sw * C, planes_first = groups * sd * dh * dw * C;
  // One destination plane at a time when there are planes for every thread and each is big
  // enough to outweigh a 2-D resampling call's set-up (with 32 x 32 to 64 x 64 planes the
  // buffered forms below measured 8-20% faster).
  const bool per_plane = groups * dd >= 2 * at::get_num_threads() && (sh * sw + dh * dw) * C >= 16384;
  const int64_t src_plane = sh * sw * C, dst_plane = dh * dw * C;
  const int64_t* off = t[0].offsets.data();
  const int64_t* idx = t[0].index.data();
  const T* w = t[0].weight.data();
  if (depth_first <= planes_first && per_plane) {
    // Depth first, one destination plane at a time: its depth taps blended into an op-math
    // plane that stays in cache, then resampled in 2-D straight into dst. The same sums as
    // the buffered form below, without its buffer of groups * dd source-sized planes (67 MB
    // for nearest x2 on (2,32,32,64,64), written, then read back). A plane whose depth taps
    // are the previous plane's (nearest and integer scales repeat them) is a copy of it.
    auto same_taps = [&](int64_t od) {
      const int64_t a0 = off[od - 1], n = off[od] - a0, b0 = off[od];
      if (off[od + 1] - b0 != n) return false;
      for (int64_t a = 0; a < n; ++a)
        if (idx[a0 + a] != idx[b0 + a] || w[a0 + a] != w[b0 + a]) return false;
      return true;
    };
    const HorizontalTaps<T, scalar_t, T> taps(t[2], sw);
    at::parallel_for(0, groups * dd, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> blended(src_plane);
      for (int64_t q = begin; q < end; ++q) {
        const int64_t grp = q / dd, od = q - grp * dd;
        scalar_t* out = dst + q * dst_plane;
        if (q > begin && od > 0 && same_taps(od)) {
          std::copy(out - dst_plane, out, out);
          continue;
        }
        const scalar_t* base = src + grp * sd * src_plane;
        auto row_of = [&](int64_t a) -> const scalar_t* { return base + idx[a] * src_plane; };
        vertical<scalar_t, T, T>(blended.data(), src_plane, off[od], off[od + 1], w, row_of);
        resample<T, scalar_t, T>(blended.data(), out, Geometry{1, C, sh, sw, dh, dw}, t[1], taps);
      }
    });
  } else if (depth_first > planes_first && per_plane) {
    // Planes first, one destination plane at a time: the source planes its depth taps read are
    // resampled in 2-D into a small cache of op-math planes (consecutive destination planes
    // share them), then blended straight into dst. The same sums as the buffered form below,
    // without its buffer of groups * sd destination-sized planes.
    const int64_t slots = std::max<int64_t>(1, t[0].max_taps());
    const HorizontalTaps<scalar_t, T, T> taps(t[2], sw);
    at::parallel_for(0, groups * dd, 1, [&](int64_t begin, int64_t end) {
      // Keyed by (group, source plane); the tap windows only move forward and hold at most
      // `slots` planes, so evicting the smallest key never drops a plane still needed (as
      // resample's row cache).
      std::vector<T> cache(slots * dst_plane);
      std::vector<int64_t> key(slots, -1);
      int64_t grp = 0;
      auto plane_of = [&](int64_t a) -> const T* {
        const int64_t k = grp * sd + idx[a];
        int64_t victim = 0;
        for (int64_t s = 0; s < slots; ++s) {
          if (key[s] == k) return &cache[s * dst_plane];
          if (key[s] < key[victim]) victim = s;
        }
        T* plane = &cache[victim * dst_plane];
        resample<scalar_t, T, T>(src + k * src_plane, plane, Geometry{1, C, sh, sw, dh, dw}, t[1],
                                 taps);
        key[victim] = k;
        return plane;
      };
      for (int64_t q = begin; q < end; ++q) {
        grp = q / dd;
        const int64_t od = q - grp * dd;
        vertical<T, scalar_t, T>(dst + q * dst_plane, dst_plane, off[od], off[od + 1], w, plane_of);
      }
    });
  } else if (depth_first <= planes_first) {
    std::vector<T> buffer(depth_first);
    blend_planes<scalar_t, T, T>(src, buffer.data(), groups, sd, dd, src_plane, t[0]);
    resample<T, scalar_t, T>(buffer.data(), dst, Geometry{groups * dd, C, sh, sw, dh, dw}, t[1],
                             t[2]);
  } else {
    std::vector<T> buffer(planes_first);
    resample<scalar_t, T, T>(src, buffer.data(), Geometry{groups * sd, C, sh, sw, dh, dw}, t[1],
                             t[2]);
    blend_planes<T, scalar_t, T>(buffer.data(), dst, groups, sd, dd, dst_plane, t[0]);
  }
}

}  // namespace

PYSEG_REGISTER_CPU_KERNEL(::pyseg::upsample::resample_f32_stub, (&resample_nd<float, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::upsample::resample_f64_stub, (&resample_nd<double, double>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::upsample::resample_f16_stub, (&resample_nd<at::Half, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::upsample::resample_bf16_stub,
                          (&resample_nd<at::BFloat16, float>));

}  // namespace pyseg::cpu::CPU_CAPABILITY
