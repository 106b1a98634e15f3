// The per-sample loops of deform_conv2d on the CPU (deform_conv_cpu_kernel.cpp, compiled once
// per CPU capability; see common/cpu_capability.h), called through stubs by
// deform_conv_cpu.cpp, which builds the sampling tables and runs the GEMMs.
//
// Both loops work pixel-major: the image is read channels-last (xh[pos * C + c]) and the
// columns are stored one row of taps x channels per output pixel, so the four corners of a
// sample are four contiguous runs of channels, read (and in the backward, accumulated) a
// vector at a time with plain loads instead of a gather per corner.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/cpu_capability.h"

namespace pyseg::deform_conv {

// One bilinear sample (tap k, pixel t) of a tile's sampling table.
template <typename T>
struct Sample {
  int32_t idx[4];  // positions of the corners (y0,x0) (y0,x1) (y1,x0) (y1,x1) in the plane, -1 outside
  T w[4];          // bilinear weights (zero for corners outside the image or cut off)
  T ly, lx;        // fractional parts, for the coordinate weights of the offset gradient
  T m;             // mask value (1 without mask)
  uint32_t valid;  // bit i: corner i lies inside the image (for the coordinate weights)
  uint32_t use;    // bit i: corner i enters the bilinear value (valid and not cut off)
};

// A run of channels that shares one offset group and one weight group: channel c0 + j sits at
// x[pos * x_stride + x_first + j] in the channels-last image and at
// cols[t * ld + col_first + k * tap_stride + j] in the column row of pixel t, tap k.
struct ChannelRun {
  int64_t count;       // channels in the run
  int64_t x_first;     // first channel's index within a pixel of the image
  int64_t x_stride;    // channels per pixel of the image
  int64_t col_first;   // first channel's index within a column row (tap 0)
  int64_t tap_stride;  // distance between taps within a column row
};

// The samples of a tile: table[k * ld + t] for taps k < taps and pixels t < len.
template <typename T>
struct SampleTable {
  const Sample<T>* samples;
  int64_t ld, taps, len;
};

// Forward columns: cols[t * ld + col_first + k * tap_stride + j] = sum over the used corners
// i (in order 0..3, from zero) of (m * w[i]) * x[corner i][j], for the run's channels j.
template <typename T>
using FillColumnsFn = void (*)(T* cols, int64_t ld, const SampleTable<T>& table, const T* x,
                               const ChannelRun& run);

// Backward, from the column gradient gcols (laid out like cols): adds the input gradient
// (w[i] * (m * g) into gx at each used corner, gx laid out like x) and, per sample, the
// run's contribution to the offset gradient (acc_y, acc_x: m * coordinate weight * g) and to
// the mask gradient (acc_m: g * bilinear value), acc_*[k * table.ld + t]. The sums over a
// run's channels are taken in 16 (float) or 8 (double) lanes, channel j in lane j mod lanes,
// then the lanes in a fixed tree: the same roundings in every variant.
template <typename T>
using SampleGradFn = void (*)(const T* gcols, int64_t ld, const SampleTable<T>& table,
                              const T* x, T* gx, const ChannelRun& run, T* acc_y, T* acc_x,
                              T* acc_m);

extern cpu::CpuStub<FillColumnsFn<float>> fill_columns_f32_stub;
extern cpu::CpuStub<FillColumnsFn<double>> fill_columns_f64_stub;
extern cpu::CpuStub<SampleGradFn<float>> sample_grad_f32_stub;
extern cpu::CpuStub<SampleGradFn<double>> sample_grad_f64_stub;

template <typename T>
auto& fill_columns_stub() {
  if constexpr (std::is_same_v<T, float>) return fill_columns_f32_stub;
  else return fill_columns_f64_stub;
}

template <typename T>
auto& sample_grad_stub() {
  if constexpr (std::is_same_v<T, float>) return sample_grad_f32_stub;
  else return sample_grad_f64_stub;
}

}  // namespace pyseg::deform_conv
