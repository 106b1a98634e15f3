// The taps (source index, weight) of one output index along one axis, for every resampling
// mode, written once for the host tables (upsample.h, CPU kernels) and the device table
// kernel (upsample_kernels.cuh). Every formula follows ATen's, in the same type and
// operation order, so that float32 tables match torch's bit for bit:
//   * nearest:        nearest_idx (float scale, exact shortcuts for scale 1 and 2), which
//                     upsample_nearest2d uses; upsample_nearest1d / 3d take
//                     floor(o * scale) in the op-math type without shortcuts (NearestFloor);
//   * nearest-exact:  nearest_neighbor_exact_compute_source_index, floor((o + 0.5) * scale);
//   * linear / cubic: area_pixel_compute_source_index, guard_index_and_lambda, Keys' cubic
//                     with A = -0.75 and border-clamped neighbours (duplicates kept);
//   * area:           adaptive average pooling, window [floor(o * in / out),
//                     ceil((o + 1) * in / out)) with weight 1 / length;
//   * antialias:      _compute_weights_aa (UpSampleKernel.cpp): a triangle (linear) or
//                     Keys' cubic with A = -0.5 (as PIL), stretched by the scale when
//                     downsampling, over the in-bounds window, normalized to sum 1.
// Each output index stores exactly `taps` entries; unused ones repeat the last index with
// weight 0, so tap indices stay monotone in the output index (upsample.h's `transpose`).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace pyseg::upsample {

enum class TapMode : int {
  Nearest, NearestFloor, NearestExact, Linear, Cubic, Area, LinearAA, CubicAA
};

// Everything output_taps needs about one axis, computed on the host (upsample.h's make_rule)
// and passed to kernels by value.
template <typename T>
struct TapRule {
  TapMode mode;
  int64_t in, out;
  bool align_corners;
  T ratio;              // area_pixel_compute_scale in the op-math type (NearestFloor too)
  float nearest_scale;  // compute_scales_value<float> (nearest, nearest-exact)
  T support;            // antialias: half-width of the filter in input pixels
  int taps;             // entries stored per output index
};

template <typename T>
PYSEG_INLINE T keys_cubic1(T x, T A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
template <typename T>
PYSEG_INLINE T keys_cubic2(T x, T A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

template <typename T>
PYSEG_INLINE T aa_filter(TapMode mode, T x) {
  x = x < T(0) ? -x : x;
  if (mode == TapMode::LinearAA) return x < T(1) ? T(1) - x : T(0);
  const T A = -0.5;
  if (x < T(1)) return keys_cubic1(x, A);
  if (x < T(2)) return keys_cubic2(x, A);
  return T(0);
}

// Writes the r.taps taps of output index o to idx[0..taps) and w[0..taps).
template <typename T, typename I>
PYSEG_INLINE void output_taps(const TapRule<T>& r, int64_t o, I* idx, T* w) {
  const int64_t in = r.in;
  int n = 0;  // taps written
  switch (r.mode) {
    case TapMode::Nearest:
    case TapMode::NearestFloor:
    case TapMode::NearestExact: {
      int64_t i;
      if (r.mode == TapMode::NearestFloor) {
        i = static_cast<int64_t>(floorf(r.ratio * o));
      } else if (r.mode == TapMode::NearestExact) {
        i = static_cast<int64_t>(floorf((o + 0.5) * r.nearest_scale));
      } else if (r.out == in) {
        i = o;
      } else if (r.out == 2 * in) {
        i = o >> 1;
      } else {
        i = static_cast<int64_t>(floorf(o * r.nearest_scale));
      }
      idx[0] = static_cast<I>(i < in - 1 ? i : in - 1);
      w[0] = T(1);
      n = 1;
      break;
    }
    case TapMode::Area: {
      const int64_t start = (o * in) / r.out, end = ((o + 1) * in + r.out - 1) / r.out;
      const T weight = T(1) / static_cast<T>(end - start);
      for (int64_t i = start; i < end; ++i, ++n) {
        idx[n] = static_cast<I>(i);
        w[n] = weight;
      }
      break;
    }
    case TapMode::LinearAA:
    case TapMode::CubicAA: {
      const T center = r.ratio * (o + 0.5);
      const T invscale = r.ratio >= T(1) ? static_cast<T>(1.0 / r.ratio) : T(1);
      int64_t xmin = static_cast<int64_t>(center - r.support + 0.5);
      xmin = xmin > 0 ? xmin : 0;
      int64_t xmax = static_cast<int64_t>(center + r.support + 0.5);
      xmax = xmax < in ? xmax : in;
      int64_t size = xmax - xmin;
      size = size < 0 ? 0 : (size > r.taps ? r.taps : size);
      T total = T(0);
      for (int64_t j = 0; j < size; ++j) {
        const T x = static_cast<T>((j + xmin - center + 0.5) * invscale);
        w[j] = aa_filter(r.mode, x);
        idx[j] = static_cast<I>(xmin + j);
        total += w[j];
      }
      if (total != T(0))
        for (int64_t j = 0; j < size; ++j) w[j] /= total;
      n = static_cast<int>(size);
      if (n == 0) {  // cannot happen for a positive support; keep the table well formed
        idx[0] = static_cast<I>(xmin < in - 1 ? xmin : in - 1);
        w[0] = T(0);
        n = 1;
      }
      break;
    }
    case TapMode::Linear:
    case TapMode::Cubic: {
      const bool cubic = r.mode == TapMode::Cubic;
      if (!cubic && r.out == in) {  // ATen copies when the axis keeps its size
        idx[0] = idx[1] = static_cast<I>(o);
        w[0] = T(1);
        w[1] = T(0);
        n = 2;
        break;
      }
      T real;
      if (r.align_corners) {
        real = r.ratio * o;
      } else {
        real = r.ratio * (o + static_cast<T>(0.5)) - static_cast<T>(0.5);
        // Linear clamps a negative coordinate to 0; cubic keeps it (its weights depend on it).
        if (!cubic && real < static_cast<T>(0)) real = T(0);
      }
      int64_t i0 = static_cast<int64_t>(floorf(real));  // floorf as in ATen, also for double
      i0 = i0 < in - 1 ? i0 : in - 1;
      T lambda = real - static_cast<T>(i0);
      lambda = lambda > static_cast<T>(0) ? lambda : static_cast<T>(0);
      lambda = lambda < static_cast<T>(1) ? lambda : static_cast<T>(1);
      if (!cubic) {
        idx[0] = static_cast<I>(i0);
        idx[1] = static_cast<I>(i0 + (i0 < in - 1 ? 1 : 0));
        w[0] = T(1) - lambda;
        w[1] = lambda;
        n = 2;
        break;
      }
      const T A = -0.75;
      const T x1 = lambda, x2 = T(1.0) - lambda;
      w[0] = keys_cubic2(x1 + T(1.0), A);
      w[1] = keys_cubic1(x1, A);
      w[2] = keys_cubic1(x2, A);
      w[3] = keys_cubic2(x2 + T(1.0), A);
      for (int k = 0; k < 4; ++k) {
        const int64_t i = i0 + k - 1;  // neighbours outside the input read the border
        idx[k] = static_cast<I>(i < 0 ? 0 : (i > in - 1 ? in - 1 : i));
      }
      n = 4;
      break;
    }
  }
  for (int k = n; k < r.taps; ++k) {  // padding: last index, no weight
    idx[k] = idx[n - 1];
    w[k] = T(0);
  }
}

}  // namespace pyseg::upsample
