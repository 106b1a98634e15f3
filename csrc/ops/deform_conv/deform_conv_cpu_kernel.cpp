// deform_conv2d's per-sample loops (the forward's column fill, the backward's input, offset
// and mask gradients), compiled once per CPU capability (setup.py wraps this file; see
// common/cpu_capability.h) and called through the stubs of deform_conv_cpu_kernel.h.
//
// Pixel-major, channels innermost: per (pixel, tap) the sample's corners are contiguous runs
// of channels in the channels-last image, so a vector of channels is one plain load per corner
// (a gather per corner of a vector of pixels, the channels-first alternative, is several times
// slower: it is bound by the gathers' element loads). The sample's weights are broadcast.
//
// Every variant computes the same roundings in the same order, so results are bitwise the
// same in all of them: multiply-adds are not contracted into FMAs (fp-contract=off), each
// lane does what the scalar loop does for its channel, and the sums over channels of the
// backward go into a fixed number of lanes (16 float, 8 double: whole vectors on every
// capability) reduced in a fixed tree.
#pragma GCC optimize("fp-contract=off")
// g++ 12 reports its own AVX-512 intrinsics (their "undefined" pass-through operand) as
// maybe-uninitialized when inlined here: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "ops/deform_conv/deform_conv_cpu_kernel.h"

namespace pyseg::cpu::CPU_CAPABILITY {
namespace {

using ::pyseg::deform_conv::ChannelRun;
using ::pyseg::deform_conv::Sample;
using ::pyseg::deform_conv::SampleTable;
using at::vec::Vectorized;

// Lanes of the backward's channel sums: a multiple of every variant's vector length.
template <typename T>
constexpr int64_t kLanes = std::is_same_v<T, float> ? 16 : 8;

template <typename T>
inline Vectorized<T> load(const T* p, int64_t n) {
  return n == Vectorized<T>::size() ? Vectorized<T>::loadu(p) : Vectorized<T>::loadu(p, n);
}

template <typename T>
inline void store(const Vectorized<T>& v, T* p, int64_t n) {
  if (n == Vectorized<T>::size()) v.store(p);
  else v.store(p, static_cast<int>(n));
}

template <typename T>
__attribute__((flatten)) void fill_columns(T* cols, int64_t ld, const SampleTable<T>& tab,
                                           const T* x, const ChannelRun& run) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const int64_t C = run.count;
  for (int64_t t = 0; t < tab.len; ++t) {
    T* row = cols + t * ld + run.col_first;
    for (int64_t k = 0; k < tab.taps; ++k) {
      const Sample<T>& a = tab.samples[k * tab.ld + t];
      T* dst = row + k * run.tap_stride;
      // The used corners only: an unused one is never read (an Inf or NaN there must not
      // reach the output), and adding its zero would change nothing.
      const T* src[4];
      T wm[4];
      int used = 0;
      for (int i = 0; i < 4; ++i) {
        if ((a.use >> i) & 1u) {
          src[used] = x + int64_t(a.idx[i]) * run.x_stride + run.x_first;
          wm[used] = a.m * a.w[i];
          ++used;
        }
      }
      for (int64_t j = 0; j < C; j += V) {
        const int64_t n = std::min(V, C - j);
        Vec v(T(0));
        for (int u = 0; u < used; ++u) v = v + Vec(wm[u]) * load(src[u] + j, n);
        store(v, dst + j, n);
      }
    }
  }
}

// lanes[0] + ... + lanes[L - 1] in a fixed tree (halves added lane by lane).
template <typename T, int64_t L>
inline T reduce_lanes(T* lanes) {
  for (int64_t w = L / 2; w >= 1; w /= 2)
    for (int64_t l = 0; l < w; ++l) lanes[l] = lanes[l] + lanes[l + w];
  return lanes[0];
}

template <typename T>
__attribute__((flatten)) void sample_grad(const T* gcols, int64_t ld, const SampleTable<T>& tab,
                                          const T* x, T* gx, const ChannelRun& run, T* acc_y,
                                          T* acc_x, T* acc_m) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size(), L = kLanes<T>, B = L / V;
  static_assert(L % V == 0, "the lanes must be whole vectors");
  const int64_t C = run.count;
  for (int64_t t = 0; t < tab.len; ++t) {
    const T* grow = gcols + t * ld + run.col_first;
    for (int64_t k = 0; k < tab.taps; ++k) {
      const Sample<T>& a = tab.samples[k * tab.ld + t];
      if (!a.valid) continue;  // no corner in the image: every gradient is zero
      const T* g = grow + k * run.tap_stride;
      const T* xv[4];
      T* gxv[4];
      for (int i = 0; i < 4; ++i) {
        const int64_t at = int64_t(a.idx[i]) * run.x_stride + run.x_first;
        xv[i] = (a.valid >> i) & 1u ? x + at : nullptr;
        gxv[i] = (a.use >> i) & 1u ? gx + at : nullptr;
      }
      const Vec m(a.m), lx(a.lx), ly(a.ly), hx(T(1) - a.lx), hy(T(1) - a.ly);
      Vec sy[B], sx[B], sm[B];
      for (int64_t b = 0; b < B; ++b) sy[b] = sx[b] = sm[b] = Vec(T(0));
      for (int64_t j0 = 0; j0 < C; j0 += L) {
        for (int64_t b = 0; b < B && j0 + b * V < C; ++b) {
          const int64_t j = j0 + b * V, n = std::min(V, C - j);
          const Vec gv = load(g + j, n);
          const Vec gm = m * gv;
          Vec v[4];
          for (int i = 0; i < 4; ++i) v[i] = xv[i] ? load(xv[i] + j, n) : Vec(T(0));
          Vec val(T(0));
          for (int i = 0; i < 4; ++i) {
            if (!gxv[i]) continue;
            // Input gradient: the transpose of the bilinear sample (used corners only).
            const Vec w(a.w[i]);
            store(load(gxv[i] + j, n) + w * gm, gxv[i] + j, n);
            val = val + w * v[i];
          }
          // torchvision's coordinate weights (in-image corners, no cut-off).
          const Vec cy = lx * (v[3] - v[1]) + hx * (v[2] - v[0]);
          const Vec cx = ly * (v[3] - v[2]) + hy * (v[1] - v[0]);
          Vec ty = (m * cy) * gv, tx = (m * cx) * gv, tm = gv * val;
          if (n < V) {
            // Lanes past the run add exactly zero (an infinite mask times their zero
            // gradient would be NaN), as on a variant whose vectors end at the run's end.
            ty = Vec::set(Vec(T(0)), ty, n);
            tx = Vec::set(Vec(T(0)), tx, n);
            tm = Vec::set(Vec(T(0)), tm, n);
          }
          sy[b] = sy[b] + ty;
          sx[b] = sx[b] + tx;
          sm[b] = sm[b] + tm;
        }
      }
      T lanes[L];
      const int64_t at = k * tab.ld + t;
      for (int64_t b = 0; b < B; ++b) sy[b].store(lanes + b * V);
      acc_y[at] = acc_y[at] + reduce_lanes<T, L>(lanes);
      for (int64_t b = 0; b < B; ++b) sx[b].store(lanes + b * V);
      acc_x[at] = acc_x[at] + reduce_lanes<T, L>(lanes);
      for (int64_t b = 0; b < B; ++b) sm[b].store(lanes + b * V);
      acc_m[at] = acc_m[at] + reduce_lanes<T, L>(lanes);
    }
  }
}

}  // namespace

PYSEG_REGISTER_CPU_KERNEL(::pyseg::deform_conv::fill_columns_f32_stub, (&fill_columns<float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::deform_conv::fill_columns_f64_stub, (&fill_columns<double>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::deform_conv::sample_grad_f32_stub, (&sample_grad<float>));
PYSEG_REGISTER_CPU_KERNEL(::pyseg::deform_conv::sample_grad_f64_stub, (&sample_grad<double>));

}  // namespace pyseg::cpu::CPU_CAPABILITY
