// grid_sample's per-point arithmetic, shared by the CPU kernels (g++), the CUDA kernels
// (nvcc) and the emulator (g++ with the CUDA shim). It follows ATen's GridSampler.cuh step
// by step (unnormalize, padding, safe_downgrade_to_int_range, per-tap padding for bicubic,
// the same cubic coefficients with A = -0.75), so that pyseg samples the same points with
// the same weights as torch on every device.
//
// A point is sampled through per-axis tap lists: for axis a (x, y, z: the order of the grid's
// last dimension), `index[a][k]` is the source index of tap k (or -1 when it lies outside
// the input, which reads as zero), `weight[a][k]` its weight and `dweight[a][k]` the
// derivative of that weight with respect to the unnormalized coordinate; `mult[a]` is the
// derivative of the unnormalized coordinate with respect to the grid value. Nearest has one
// tap per axis, bilinear two, bicubic four; a point reads the products of its axes' taps.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace pyseg::grid_sample {

// torch's integer codes (GridSamplerInterpolation / GridSamplerPadding).
enum class Mode : int { Bilinear = 0, Nearest = 1, Bicubic = 2 };
enum class Padding : int { Zeros = 0, Border = 1, Reflection = 2 };

// Explicit float / double overloads: the same functions exist on the host and the device.
PYSEG_INLINE float floor_of(float x) { return floorf(x); }
PYSEG_INLINE double floor_of(double x) { return floor(x); }
PYSEG_INLINE float round_even(float x) { return nearbyintf(x); }
PYSEG_INLINE double round_even(double x) { return nearbyint(x); }
PYSEG_INLINE float abs_of(float x) { return fabsf(x); }
PYSEG_INLINE double abs_of(double x) { return fabs(x); }
PYSEG_INLINE float fmod_of(float x, float y) { return fmodf(x, y); }
PYSEG_INLINE double fmod_of(double x, double y) { return fmod(x, y); }
PYSEG_INLINE bool is_finite(float x) { return abs_of(x) <= 3.402823466e38f; }
PYSEG_INLINE bool is_finite(double x) { return abs_of(x) <= 1.7976931348623157e308; }

// grid value in [-1, 1] -> pixel coordinate; *grad = d(result) / d(coord).
template <typename T>
PYSEG_INLINE T unnormalize(T coord, int64_t size, bool align_corners, T* grad) {
  if (align_corners) {
    *grad = static_cast<T>(size - 1) / 2;
    return ((coord + 1) / 2) * (size - 1);
  }
  *grad = static_cast<T>(size) / 2;
  return ((coord + 1) * size - 1) / 2;
}

template <typename T>
PYSEG_INLINE T clip(T in, int64_t size, T* grad) {
  if (in <= static_cast<T>(0)) {
    *grad = 0;
    return 0;
  }
  const T hi = static_cast<T>(size - 1);
  if (in >= hi) {
    *grad = 0;
    return hi;
  }
  *grad = 1;
  return in;
}

// Reflects `in` into [twice_low / 2, twice_high / 2] (ATen's reflect_coordinates_set_grad).
template <typename T>
PYSEG_INLINE T reflect(T in, int64_t twice_low, int64_t twice_high, T* grad) {
  if (twice_low == twice_high) {
    *grad = 0;
    return 0;
  }
  const T lo = static_cast<T>(twice_low) / 2;
  const T span = static_cast<T>(twice_high - twice_low) / 2;
  in = in - lo;
  T sign = 1;
  if (in < static_cast<T>(0)) {
    sign = -1;
    in = -in;
  }
  const T extra = fmod_of(in, span);
  // Parity of the number of flips, without converting a possibly huge float to an int.
  const T flips = floor_of(in / span);
  if (fmod_of(flips, static_cast<T>(2)) == static_cast<T>(0)) {
    *grad = sign;
    return extra + lo;
  }
  *grad = -sign;
  return span - extra + lo;
}

// Padding applied to an unnormalized coordinate; out-of-int-range and non-finite
// coordinates become -100 (outside every input, as ATen's safe_downgrade_to_int_range).
template <typename T>
PYSEG_INLINE T apply_padding(T coord, int64_t size, Padding padding, bool align_corners, T* grad) {
  *grad = 1;
  if (padding == Padding::Border) {
    coord = clip(coord, size, grad);
  } else if (padding == Padding::Reflection) {
    T g_reflect, g_clip;
    coord = align_corners ? reflect(coord, 0, 2 * (size - 1), &g_reflect)
                          : reflect(coord, -1, 2 * size - 1, &g_reflect);
    coord = clip(coord, size, &g_clip);
    *grad = g_reflect * g_clip;
  }
  if (!is_finite(coord) || coord > static_cast<T>(2147483646.0) ||
      coord < static_cast<T>(-2147483648.0))
    return static_cast<T>(-100);
  return coord;
}

PYSEG_INLINE int64_t bounded(int64_t i, int64_t size) { return (i >= 0 && i < size) ? i : -1; }

template <typename T>
PYSEG_INLINE T cubic1(T x, T A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
template <typename T>
PYSEG_INLINE T cubic2(T x, T A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

template <int D, typename T>
struct Taps {
  int count;  // taps per axis
  int64_t index[D][4];
  T weight[D][4];
  T dweight[D][4];
  T mult[D];
};

// The taps of one axis for grid value `coord` over an input extent `size`.
template <int D, typename T>
PYSEG_INLINE void axis_taps(Taps<D, T>& t, int a, T coord, int64_t size, Mode mode,
                            Padding padding, bool align_corners) {
  if (mode == Mode::Bicubic) {
    // Unnormalize only; every tap is padded on its own (ATen's get_value_bounded).
    const T x = unnormalize(coord, size, align_corners, &t.mult[a]);
    const T x0 = floor_of(x);
    const T tx = x - x0;
    const T A = static_cast<T>(-0.75);
    t.weight[a][0] = cubic2(tx + 1, A);
    t.weight[a][1] = cubic1(tx, A);
    t.weight[a][2] = cubic1(1 - tx, A);
    t.weight[a][3] = cubic2(2 - tx, A);
    // d weight / d tx (ATen's get_cubic_coefficients_grad holds the negatives).
    T u = -1 - tx;
    t.dweight[a][0] = -((-3 * A * u - 10 * A) * u - 8 * A);
    u = -tx;
    t.dweight[a][1] = -((-3 * (A + 2) * u - 2 * (A + 3)) * u);
    u = 1 - tx;
    t.dweight[a][2] = -((3 * (A + 2) * u - 2 * (A + 3)) * u);
    u = 2 - tx;
    t.dweight[a][3] = -((3 * A * u - 10 * A) * u + 8 * A);
    for (int k = 0; k < 4; ++k) {
      T unused;
      const T p = apply_padding(x0 - 1 + k, size, padding, align_corners, &unused);
      // p is finite and in int range here (else -100): the cast is defined.
      t.index[a][k] = bounded(static_cast<int64_t>(p), size);
    }
    return;
  }
  T g_unnorm, g_pad;
  T x = unnormalize(coord, size, align_corners, &g_unnorm);
  x = apply_padding(x, size, padding, align_corners, &g_pad);
  t.mult[a] = g_unnorm * g_pad;
  if (mode == Mode::Nearest) {
    t.index[a][0] = bounded(static_cast<int64_t>(round_even(x)), size);
    t.weight[a][0] = 1;
    t.dweight[a][0] = 0;
    return;
  }
  const T x0 = floor_of(x);
  const int64_t i0 = static_cast<int64_t>(x0);
  t.index[a][0] = bounded(i0, size);
  t.index[a][1] = bounded(i0 + 1, size);
  t.weight[a][0] = (x0 + 1) - x;
  t.weight[a][1] = x - x0;
  t.dweight[a][0] = -1;
  t.dweight[a][1] = 1;
}

template <int D>
struct Geometry {
  int64_t in_size[D];     // x, y, z extents (W, H, D)
  int64_t in_stride[D];   // their strides in `input`, in elements
  int64_t in_stride_n, in_stride_c;
  int64_t channels;
  int64_t points;         // output points per image (H_out * W_out [* D_out])
  int64_t out_stride_n, out_stride_c, out_stride_p;  // output / grad_output, in elements
  int64_t grid_stride_n, grid_stride_p, grid_stride_k;  // grid (N, points, D), in elements
  Mode mode;
  Padding padding;
  bool align_corners;
};

template <int D, typename T, typename scalar_t>
PYSEG_INLINE Taps<D, T> point_taps(const Geometry<D>& g, const scalar_t* grid, int64_t n,
                                   int64_t p) {
  Taps<D, T> t;
  t.count = g.mode == Mode::Nearest ? 1 : (g.mode == Mode::Bilinear ? 2 : 4);
  const scalar_t* gp = grid + n * g.grid_stride_n + p * g.grid_stride_p;
  for (int a = 0; a < D; ++a)
    axis_taps<D, T>(t, a, static_cast<T>(gp[a * g.grid_stride_k]), g.in_size[a], g.mode,
                    g.padding, g.align_corners);
  return t;
}

// Visits every in-bounds tap combination of a point: fn(offset in the plane, weight,
// d weight / d x_a for each axis a, before the per-axis `mult`). x is the innermost loop
// (ATen's summation order: nw, ne, sw, se).
template <int D, typename T, typename Fn>
PYSEG_INLINE void for_each_tap(const Taps<D, T>& t, const Geometry<D>& g, Fn&& fn) {
  const int kz = D == 3 ? t.count : 1;
  for (int z = 0; z < kz; ++z) {
    const int64_t iz = D == 3 ? t.index[D - 1][z] : 0;
    if (iz < 0) continue;
    const T wz = D == 3 ? t.weight[D - 1][z] : T(1);
    const T dz = D == 3 ? t.dweight[D - 1][z] : T(0);
    const int64_t oz = D == 3 ? iz * g.in_stride[D - 1] : 0;
    for (int y = 0; y < t.count; ++y) {
      const int64_t iy = t.index[1][y];
      if (iy < 0) continue;
      const T wy = t.weight[1][y], dy = t.dweight[1][y];
      const int64_t oy = oz + iy * g.in_stride[1];
      for (int x = 0; x < t.count; ++x) {
        const int64_t ix = t.index[0][x];
        if (ix < 0) continue;
        const T wx = t.weight[0][x], dx = t.dweight[0][x];
        T d[3];
        d[0] = dx * wy * wz;
        d[1] = wx * dy * wz;
        d[2] = wx * wy * dz;
        fn(oy + ix * g.in_stride[0], wx * wy * wz, d);
      }
    }
  }
}

// Forward value of one channel: the separable sum (along x first, as ATen's bicubic).
template <int D, typename T, typename scalar_t>
PYSEG_INLINE T sample(const Taps<D, T>& t, const Geometry<D>& g, const scalar_t* plane) {
  const int kz = D == 3 ? t.count : 1;
  T out = 0;
  for (int z = 0; z < kz; ++z) {
    const int64_t iz = D == 3 ? t.index[D - 1][z] : 0;
    if (iz < 0) continue;
    const int64_t oz = D == 3 ? iz * g.in_stride[D - 1] : 0;
    T slice = 0;
    for (int y = 0; y < t.count; ++y) {
      const int64_t iy = t.index[1][y];
      if (iy < 0) continue;
      const scalar_t* row = plane + oz + iy * g.in_stride[1];
      T line = 0;
      for (int x = 0; x < t.count; ++x) {
        const int64_t ix = t.index[0][x];
        if (ix < 0) continue;
        line += t.weight[0][x] * static_cast<T>(row[ix * g.in_stride[0]]);
      }
      slice += t.weight[1][y] * line;
    }
    out += (D == 3 ? t.weight[D - 1][z] : T(1)) * slice;
  }
  return out;
}

// Backward of one point: adds w * grad to the input through add(c, offset in plane, value)
// and returns d loss / d grid in grad_grid[0..D).
template <int D, typename T, typename scalar_t, typename Add>
PYSEG_INLINE void backward_point(const Taps<D, T>& t, const Geometry<D>& g,
                                 const scalar_t* input_n, const scalar_t* grad_out_np,
                                 bool need_input, bool need_grid, T* grad_grid, Add&& add) {
  T acc[3] = {0, 0, 0};
  for (int64_t c = 0; c < g.channels; ++c) {
    const T go = static_cast<T>(grad_out_np[c * g.out_stride_c]);
    const scalar_t* plane = input_n + c * g.in_stride_c;
    for_each_tap<D, T>(t, g, [&](int64_t off, T w, const T* d) {
      if (need_input) add(c, off, w * go);
      if (need_grid && g.mode != Mode::Nearest) {
        const T v = static_cast<T>(plane[off]) * go;
        for (int a = 0; a < D; ++a) acc[a] += v * d[a];
      }
    });
  }
  for (int a = 0; a < D; ++a) grad_grid[a] = g.mode == Mode::Nearest ? T(0) : acc[a] * t.mult[a];
}

}  // namespace pyseg::grid_sample
