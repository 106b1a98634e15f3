// grid_sample's float / double CPU kernels, vectorized with at::vec::Vectorized and compiled
// once per CPU capability (setup.py wraps this file; see common/cpu_capability.h).
//
// Points are processed in blocks of up to kMaxBlock output points. For a block, the
// coordinates are computed a vector of points at a time, with the same operations in the same
// order as the scalar code in grid_sample_math.h (unnormalize, padding, the int-range guard,
// floor / round, cubic weights), into a tap table: per tap (1 nearest, 4 bilinear, 8
// trilinear, 16 bicubic) and point, the offset in the input plane, an in-bounds mask and the
// combined weight (0 outside). The table (about 12 KB) stays in L1 while the channels are
// sampled, in the loop order the layout asks for:
// - channels strided (NCHW): channel outer, points inner: a masked gather per tap and vector
//   of points, contiguous stores along the output row;
// - channels contiguous (channels_last): point outer, channels inner: each tap is a
//   contiguous run of C values, read (and, in the backward, accumulated) with vector loads.
//
// Backward: grad_grid is a gather (each point sums over its channels and taps); grad_input is
// a scatter into the zeroed block of its (image, chunk), visiting the chunk's points in
// increasing blocks, in a fixed order inside a block. The operations and their order depend
// only on the shapes and the capability variant, never on the number of threads.
// g++ 12 reports its own AVX-512 intrinsics (their "undefined" pass-through operand) as
// maybe-uninitialized when inlined here: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "ops/grid_sample/grid_sample_cpu_kernel.h"

namespace pyseg::cpu::CPU_CAPABILITY {
namespace {

using ::pyseg::grid_sample::BackwardArgs;
using ::pyseg::grid_sample::ForwardArgs;
using ::pyseg::grid_sample::Geometry;
using ::pyseg::grid_sample::Mode;
using ::pyseg::grid_sample::Padding;
using at::vec::Vectorized;
template <typename T>
using Int = at::vec::int_same_size_t<T>;

// The hot loops inline everything they call, at::vec's small members included (g++ otherwise
// leaves some of them as calls, through the PLT in this shared library).
#define GRID_SAMPLE_FLATTEN __attribute__((flatten))

constexpr int kTapSlots = 1024;  // taps x points of one block's table
constexpr int kMaxBlock = 256;   // points of one block

int taps_per_axis(Mode m) { return m == Mode::Nearest ? 1 : (m == Mode::Bilinear ? 2 : 4); }

template <int D>
int taps_per_point(Mode m) {
  int k = 1;
  for (int a = 0; a < D; ++a) k *= taps_per_axis(m);
  return k;
}

// Points per block: the table holds kTapSlots taps; a whole number of vectors.
template <int D>
int block_points(Mode m) { return std::min(kMaxBlock, kTapSlots / taps_per_point<D>(m)); }

// ---- coordinates, a vector of points at a time (mirrors grid_sample_math.h) ---------------

// (x / 2 is computed as x * 0.5: the same value, exactly, without a division.)
template <typename T>
Vectorized<T> unnormalize(const Vectorized<T>& coord, int64_t size, bool align_corners,
                          T* grad) {
  using Vec = Vectorized<T>;
  const Vec half(static_cast<T>(0.5));
  if (align_corners) {
    *grad = static_cast<T>(size - 1) / 2;
    return ((coord + Vec(1)) * half) * Vec(static_cast<T>(size - 1));
  }
  *grad = static_cast<T>(size) / 2;
  return ((coord + Vec(1)) * Vec(static_cast<T>(size)) - Vec(1)) * half;
}

template <typename T>
Vectorized<T> clip(const Vectorized<T>& x, int64_t size, Vectorized<T>* grad) {
  using Vec = Vectorized<T>;
  const Vec hi(static_cast<T>(size - 1));
  const Vec low = x <= Vec(0), high = x >= hi;
  *grad = Vec::blendv(Vec(1), Vec(0), low | high);
  return Vec::blendv(Vec::blendv(x, hi, high), Vec(0), low);
}

template <typename T>
Vectorized<T> reflect(const Vectorized<T>& x, int64_t twice_low, int64_t twice_high,
                      Vectorized<T>* grad) {
  using Vec = Vectorized<T>;
  if (twice_low == twice_high) {
    *grad = Vec(0);
    return Vec(0);
  }
  const Vec lo(static_cast<T>(twice_low) / 2);
  const Vec span(static_cast<T>(twice_high - twice_low) / 2);
  Vec in = x - lo;
  const Vec negative = in < Vec(0);
  const Vec sign = Vec::blendv(Vec(1), Vec(-1), negative);
  in = Vec::blendv(in, in.neg(), negative);
  const Vec extra = in.fmod(span);
  const Vec even = (in / span).floor().fmod(Vec(2)) == Vec(0);
  *grad = Vec::blendv(sign.neg(), sign, even);
  return Vec::blendv(span - extra + lo, extra + lo, even);
}

template <typename T>
Vectorized<T> apply_padding(Vectorized<T> x, int64_t size, Padding padding, bool align_corners,
                            Vectorized<T>* grad) {
  *grad = Vectorized<T>(1);
  if (padding == Padding::Border) {
    x = clip(x, size, grad);
  } else if (padding == Padding::Reflection) {
    Vectorized<T> g_reflect, g_clip;
    x = align_corners ? reflect(x, 0, 2 * (size - 1), &g_reflect)
                      : reflect(x, -1, 2 * size - 1, &g_reflect);
    x = clip(x, size, &g_clip);
    *grad = g_reflect * g_clip;
  }
  // The scalar code maps non-finite and out-of-int-range coordinates to -100 here, outside
  // every input (ATen's safe_downgrade_to_int_range), before converting to an integer. The
  // vector code decides inside / outside on the floating-point value (set_tap), where such
  // coordinates are outside already, and converts only inside values: the same taps, without
  // the guard.
  return x;
}

// One axis' taps for a vector of points.
template <typename T>
struct AxisTaps {
  Vectorized<T> valid[4];        // all ones where the tap lies inside the input
  Vectorized<Int<T>> offset[4];  // source index * the axis' stride, 0 outside (no overflow)
  Vectorized<T> weight[4], dweight[4];
  Vectorized<T> mult;            // d coordinate / d grid value
};

// Tap k at coordinate p. The scalar code converts with a truncating cast, then bounds-checks;
// p is integral (a floor or a rounding) except after a bicubic tap's reflection.
template <typename T>
void set_tap(AxisTaps<T>& a, int k, Vectorized<T> p, int64_t size, int64_t stride,
             bool integral) {
  using Vec = Vectorized<T>;
  if (!integral) p = p.trunc();
  a.valid[k] = (p >= Vec(0)) & (p <= Vec(static_cast<T>(size - 1)));
  a.offset[k] = at::vec::convert_to_int_of_same_size(Vec::blendv(Vec(0), p, a.valid[k])) *
                Vectorized<Int<T>>(static_cast<Int<T>>(stride));
}

template <typename T>
void axis_taps(AxisTaps<T>& a, const Vectorized<T>& coord, int64_t size, int64_t stride,
               Mode mode, Padding padding, bool align_corners) {
  using Vec = Vectorized<T>;
  T g_unnorm;
  if (mode == Mode::Bicubic) {
    const Vec x = unnormalize(coord, size, align_corners, &g_unnorm);
    a.mult = Vec(g_unnorm);
    const Vec x0 = x.floor();
    const Vec tx = x - x0;
    const Vec A(static_cast<T>(-0.75)), one(1), two(2), three(3), five(5), eight(8), ten(10);
    auto cubic1 = [&](const Vec& v) { return ((A + two) * v - (A + three)) * v * v + one; };
    auto cubic2 = [&](const Vec& v) {
      return ((A * v - five * A) * v + eight * A) * v - Vec(4) * A;
    };
    a.weight[0] = cubic2(tx + one);
    a.weight[1] = cubic1(tx);
    a.weight[2] = cubic1(one - tx);
    a.weight[3] = cubic2(two - tx);
    Vec u = Vec(-1) - tx;
    a.dweight[0] = ((Vec(-3) * A * u - ten * A) * u - eight * A).neg();
    u = tx.neg();
    a.dweight[1] = ((Vec(-3) * (A + two) * u - two * (A + three)) * u).neg();
    u = one - tx;
    a.dweight[2] = ((three * (A + two) * u - two * (A + three)) * u).neg();
    u = two - tx;
    a.dweight[3] = ((three * A * u - ten * A) * u + eight * A).neg();
    for (int k = 0; k < 4; ++k) {
      Vec unused;
      set_tap(a, k,
              apply_padding(x0 - one + Vec(static_cast<T>(k)), size, padding, align_corners,
                            &unused),
              size, stride, padding != Padding::Reflection);
    }
    return;
  }
  Vec g_pad;
  Vec x = unnormalize(coord, size, align_corners, &g_unnorm);
  x = apply_padding(x, size, padding, align_corners, &g_pad);
  a.mult = Vec(g_unnorm) * g_pad;
  if (mode == Mode::Nearest) {
    set_tap(a, 0, x.round(), size, stride, true);  // round half to even, as nearbyint
    a.weight[0] = Vec(1);
    a.dweight[0] = Vec(0);
    return;
  }
  const Vec x0 = x.floor();
  set_tap(a, 0, x0, size, stride, true);
  set_tap(a, 1, x0 + Vec(1), size, stride, true);
  a.weight[0] = (x0 + Vec(1)) - x;
  a.weight[1] = x - x0;
  a.dweight[0] = Vec(-1);
  a.dweight[1] = Vec(1);
}

// ---- the tap table of a block -----------------------------------------------------------

template <int D, typename T>
struct TapTable {
  int taps = 0;    // per point
  int stride = 0;  // points per tap row (the block capacity)
  alignas(64) Int<T> offset[kTapSlots];  // [tap * stride + point]
  alignas(64) Int<T> mask[kTapSlots];    // all ones inside the input
  alignas(64) T weight[kTapSlots];       // 0 outside
  alignas(64) T dweight[D][kTapSlots];   // backward: d weight / d coordinate_a, 0 outside
  alignas(64) T mult[D][kMaxBlock];
};

// Fills the table for points [p0, p0 + count) of image n (lanes up to the next whole vector
// sample the point (0, 0...) and are never stored).
template <int D, typename T>
GRID_SAMPLE_FLATTEN void fill_table(TapTable<D, T>& t, const Geometry<D>& g, const T* grid, int64_t n, int64_t p0,
                int count, bool with_grad) {
  using Vec = Vectorized<T>;
  using IVec = Vectorized<Int<T>>;
  constexpr int V = Vec::size();
  const int padded = (count + V - 1) / V * V;
  alignas(64) T coord[D][kMaxBlock];
  const T* gp = grid + n * g.grid_stride_n + p0 * g.grid_stride_p;
  // A contiguous 2-D grid is split into x and y a vector at a time; other grids point by point.
  const bool interleaved = D == 2 && g.grid_stride_k == 1 && g.grid_stride_p == 2;
  if (interleaved) {
    for (int i = 0; i < padded; i += V) {
      const int n2 = std::clamp(2 * (count - i), 0, 2 * V);
      const auto xy = at::vec::deinterleave2(Vec::loadu(gp + 2 * i, std::min(n2, V)),
                                             Vec::loadu(gp + 2 * i + V, std::max(n2 - V, 0)));
      xy.first.store(coord[0] + i);
      xy.second.store(coord[D - 1] + i);
    }
  } else {
    for (int i = 0; i < count; ++i)
      for (int a = 0; a < D; ++a) coord[a][i] = gp[i * g.grid_stride_p + a * g.grid_stride_k];
    for (int i = count; i < padded; ++i)
      for (int a = 0; a < D; ++a) coord[a][i] = 0;
  }
  const int per_axis = taps_per_axis(g.mode);
  const int kz = D == 3 ? per_axis : 1;
  for (int i = 0; i < padded; i += V) {
    AxisTaps<T> ax[D];
    for (int a = 0; a < D; ++a)
      axis_taps(ax[a], Vec::loadu(coord[a] + i), g.in_size[a], g.in_stride[a], g.mode,
                g.padding, g.align_corners);
    int k = 0;
    for (int z = 0; z < kz; ++z) {
      for (int y = 0; y < per_axis; ++y) {
        for (int x = 0; x < per_axis; ++x, ++k) {
          Vec valid = ax[0].valid[x] & ax[1].valid[y];
          IVec off = ax[0].offset[x] + ax[1].offset[y];
          Vec w = ax[0].weight[x] * ax[1].weight[y];
          Vec d0 = ax[0].dweight[x] * ax[1].weight[y];
          Vec d1 = ax[0].weight[x] * ax[1].dweight[y];
          Vec d2(0);
          if constexpr (D == 3) {
            valid = valid & ax[2].valid[z];
            off = off + ax[2].offset[z];
            d2 = w * ax[2].dweight[z];
            w = w * ax[2].weight[z];
            d0 = d0 * ax[2].weight[z];
            d1 = d1 * ax[2].weight[z];
          }
          const int at = k * t.stride + i;
          off.store(t.offset + at);
          valid.store(t.mask + at);
          Vec::blendv(Vec(0), w, valid).store(t.weight + at);
          if (with_grad) {
            const Vec d[3] = {d0, d1, d2};
            for (int a = 0; a < D; ++a) Vec::blendv(Vec(0), d[a], valid).store(t.dweight[a] + at);
          }
        }
      }
    }
    if (with_grad)
      for (int a = 0; a < D; ++a) ax[a].mult.store(t.mult[a] + i);
  }
}

// The input's channels (and the output's) are contiguous and fill a vector: loop channels
// innermost. (Fewer channels are gathered like planes, whatever their stride.)
template <int D, typename T>
bool channels_inner(const Geometry<D>& g) {
  return g.channels >= Vectorized<T>::size() && g.in_stride_c == 1 && g.out_stride_c == 1;
}

// ---- forward ----------------------------------------------------------------------------

// base[index] where `valid` is all ones, 0 elsewhere (nothing is read there).
template <typename T>
Vectorized<T> gather_inside(const T* base, const Vectorized<Int<T>>& index,
                            const Vectorized<T>& valid) {
#if defined(CPU_CAPABILITY_AVX512)
  // (at::vec's AVX-512 mask_gather tests the mask with an ordered float compare, which an
  // all-ones mask, a NaN, never passes: the mask is taken from the sign bits here.)
  if constexpr (sizeof(T) == 4) {
    const __mmask16 m = _mm512_movepi32_mask(_mm512_castps_si512(valid));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, base, 4);
  } else {
    const __mmask8 m = _mm512_movepi64_mask(_mm512_castpd_si512(valid));
    return _mm512_mask_i64gather_pd(_mm512_setzero_pd(), m, index, base, 8);
  }
#else
  Vectorized<T> mask = valid;
  return at::vec::mask_gather<sizeof(T)>(Vectorized<T>(0), base, index, mask);
#endif
}

template <int D, typename T>
GRID_SAMPLE_FLATTEN void forward_channels_outer(const TapTable<D, T>& t, const Geometry<D>& g, const T* in_n,
                            T* out_np, int count) {
  using Vec = Vectorized<T>;
  using IVec = Vectorized<Int<T>>;
  constexpr int V = Vec::size();
  for (int64_t c = 0; c < g.channels; ++c) {
    const T* plane = in_n + c * g.in_stride_c;
    T* row = out_np + c * g.out_stride_c;
    for (int i = 0; i < count; i += V) {
      Vec acc(0);
      for (int k = 0; k < t.taps; ++k) {
        const int at = k * t.stride + i;
        const Vec v =
            gather_inside(plane, IVec::loadu(t.offset + at), Vec::loadu(t.mask + at));
        acc = at::vec::fmadd(Vec::loadu(t.weight + at), v, acc);
      }
      const int n = std::min(V, count - i);
      if (g.out_stride_p == 1) {
        acc.store(row + i, n);
      } else {
        alignas(64) T tmp[V];
        acc.store(tmp);
        for (int j = 0; j < n; ++j) row[(i + j) * g.out_stride_p] = tmp[j];
      }
    }
  }
}

template <int D, typename T>
GRID_SAMPLE_FLATTEN void forward_channels_inner(const TapTable<D, T>& t, const Geometry<D>& g, const T* in_n,
                            T* out_np, int count) {
  using Vec = Vectorized<T>;
  constexpr int V = Vec::size();
  const int64_t C = g.channels;
  for (int i = 0; i < count; ++i) {
    const T* src[16];
    T w[16];
    int live = 0;
    for (int k = 0; k < t.taps; ++k) {
      const int at = k * t.stride + i;
      if (!t.mask[at]) continue;
      src[live] = in_n + t.offset[at];
      w[live++] = t.weight[at];
    }
    T* out = out_np + i * g.out_stride_p;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      Vec acc(0);
      for (int j = 0; j < live; ++j) acc = at::vec::fmadd(Vec(w[j]), Vec::loadu(src[j] + c), acc);
      acc.store(out + c);
    }
    for (; c < C; ++c) {
      T acc = 0;
      for (int j = 0; j < live; ++j) acc += w[j] * src[j][c];
      out[c] = acc;
    }
  }
}

template <int D, typename T>
void forward(const ForwardArgs<D, T>& args) {
  const Geometry<D> g = args.g;
  const int64_t P = g.points;
  const int L = block_points<D>(g.mode);
  const int64_t blocks = (P + L - 1) / L;
  const bool inner = channels_inner<D, T>(g);
  at::parallel_for(0, args.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    TapTable<D, T> t;
    t.taps = taps_per_point<D>(g.mode);
    t.stride = L;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, p0 = (task - n * blocks) * L;
      const int count = static_cast<int>(std::min<int64_t>(L, P - p0));
      fill_table(t, g, args.grid, n, p0, count, false);
      const T* in_n = args.input + n * g.in_stride_n;
      T* out_np = args.output + n * g.out_stride_n + p0 * g.out_stride_p;
      if (inner)
        forward_channels_inner(t, g, in_n, out_np, count);
      else
        forward_channels_outer(t, g, in_n, out_np, count);
    }
  });
}

// ---- backward ---------------------------------------------------------------------------

template <int D, typename T>
GRID_SAMPLE_FLATTEN void backward_channels_outer(const TapTable<D, T>& t, const Geometry<D>& g, const T* in_n,
                             const T* go_np, T* gi, int count, bool need_input,
                             bool need_grid, T (*grad)[kMaxBlock]) {
  using Vec = Vectorized<T>;
  using IVec = Vectorized<Int<T>>;
  constexpr int V = Vec::size();
  const bool grid_terms = need_grid && g.mode != Mode::Nearest;
  for (int64_t c = 0; c < g.channels; ++c) {
    const T* plane = in_n + c * g.in_stride_c;
    T* gplane = gi + c * g.in_stride_c;
    const T* go_row = go_np + c * g.out_stride_c;
    for (int i = 0; i < count; i += V) {
      const int n = std::min(V, count - i);
      Vec go;
      if (g.out_stride_p == 1) {
        go = Vec::loadu(go_row + i, n);
      } else {
        alignas(64) T tmp[V] = {};
        for (int j = 0; j < n; ++j) tmp[j] = go_row[(i + j) * g.out_stride_p];
        go = Vec::loadu(tmp);
      }
      Vec acc[3];
      if (grid_terms)
        for (int a = 0; a < D; ++a) acc[a] = Vec::loadu(grad[a] + i);
      for (int k = 0; k < t.taps; ++k) {
        const int at = k * t.stride + i;
        if (grid_terms) {
          const Vec v =
              gather_inside(plane, IVec::loadu(t.offset + at), Vec::loadu(t.mask + at)) * go;
          for (int a = 0; a < D; ++a) acc[a] = at::vec::fmadd(v, Vec::loadu(t.dweight[a] + at), acc[a]);
        }
        if (need_input) {
          alignas(64) T add[V];
          (Vec::loadu(t.weight + at) * go).store(add);
          for (int j = 0; j < n; ++j)
            if (t.mask[at + j]) gplane[t.offset[at + j]] += add[j];
        }
      }
      if (grid_terms)
        for (int a = 0; a < D; ++a) acc[a].store(grad[a] + i);
    }
  }
}

template <int D, typename T>
GRID_SAMPLE_FLATTEN void backward_channels_inner(const TapTable<D, T>& t, const Geometry<D>& g, const T* in_n,
                             const T* go_np, T* gi, int count, bool need_input,
                             bool need_grid, T (*grad)[kMaxBlock]) {
  using Vec = Vectorized<T>;
  constexpr int V = Vec::size();
  const int64_t C = g.channels;
  const bool grid_terms = need_grid && g.mode != Mode::Nearest;
  for (int i = 0; i < count; ++i) {
    const T* go = go_np + i * g.out_stride_p;
    T sum[3] = {0, 0, 0};
    for (int k = 0; k < t.taps; ++k) {
      const int at = k * t.stride + i;
      if (!t.mask[at]) continue;
      const T* x = in_n + t.offset[at];
      T* gx = gi + t.offset[at];
      const Vec w(t.weight[at]);
      Vec dot(0);
      int64_t c = 0;
      for (; c + V <= C; c += V) {
        const Vec gov = Vec::loadu(go + c);
        if (need_input) at::vec::fmadd(w, gov, Vec::loadu(gx + c)).store(gx + c);
        if (grid_terms) dot = at::vec::fmadd(Vec::loadu(x + c), gov, dot);
      }
      T dot_s = grid_terms ? at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, dot)
                           : T(0);
      for (; c < C; ++c) {
        if (need_input) gx[c] += t.weight[at] * go[c];
        if (grid_terms) dot_s += x[c] * go[c];
      }
      if (grid_terms)
        for (int a = 0; a < D; ++a) sum[a] += dot_s * t.dweight[a][at];
    }
    for (int a = 0; a < D; ++a) grad[a][i] = sum[a];
  }
}

template <int D, typename T>
void backward(const BackwardArgs<D, T>& args) {
  const Geometry<D> g = args.g;
  const int64_t P = g.points, chunks = args.chunks;
  const int L = block_points<D>(g.mode);
  const bool inner = channels_inner<D, T>(g);
  const bool grid_terms = args.need_grid && g.mode != Mode::Nearest;  // nearest: grad_grid = 0
  // One task per (image, chunk); inside, the chunk's points in increasing blocks.
  at::parallel_for(0, args.batch * chunks, 1, [&](int64_t begin, int64_t end) {
    TapTable<D, T> t;
    t.taps = taps_per_point<D>(g.mode);
    t.stride = L;
    alignas(64) T grad[D][kMaxBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, k = task - n * chunks;
      const int64_t first = k * P / chunks, last = (k + 1) * P / chunks;
      const T* in_n = args.input + n * g.in_stride_n;
      T* gi = args.need_input ? args.grad_input + task * args.block_stride : nullptr;
      for (int64_t p0 = first; p0 < last; p0 += L) {
        const int count = static_cast<int>(std::min<int64_t>(L, last - p0));
        fill_table(t, g, args.grid, n, p0, count, grid_terms);
        for (int a = 0; a < D; ++a) std::fill(grad[a], grad[a] + kMaxBlock, T(0));
        const T* go_np = args.grad_output + n * g.out_stride_n + p0 * g.out_stride_p;
        if (inner)
          backward_channels_inner(t, g, in_n, go_np, gi, count, args.need_input, args.need_grid,
                                  grad);
        else
          backward_channels_outer(t, g, in_n, go_np, gi, count, args.need_input, args.need_grid,
                                  grad);
        if (args.need_grid) {
          T* gg = args.grad_grid + (n * P + p0) * D;
          for (int i = 0; i < count; ++i)
            for (int a = 0; a < D; ++a) gg[i * D + a] = grid_terms ? grad[a][i] * t.mult[a][i] : T(0);
        }
      }
    }
  });
}

}  // namespace

PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::forward_2d_f32_stub, (&forward<2, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::forward_2d_f64_stub, (&forward<2, double>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::forward_3d_f32_stub, (&forward<3, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::forward_3d_f64_stub, (&forward<3, double>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::backward_2d_f32_stub, (&backward<2, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::backward_2d_f64_stub, (&backward<2, double>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::backward_3d_f32_stub, (&backward<3, float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::grid_sample::backward_3d_f64_stub, (&backward<3, double>));

}  // namespace pyseg::cpu::CPU_CAPABILITY
