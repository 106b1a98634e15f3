// upsample2d / bed_of_nails host code for the CUDA kernels, written once against a Launcher
// (real CUDA in upsample_cuda.cu, the CPU emulator in upsample_emu.cpp).
//
// The per-axis tables are small (a few entries per output row/column): table kernels build
// them on the device from the sizes and scales (no host-to-device copy), with the formulas
// the CPU kernels' host tables use.
#pragma once

#include <optional>
#include <type_traits>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "common/launch_utils.h"
#include "ops/upsample/upsample.h"
#include "ops/upsample/upsample_kernels.cuh"

namespace pyseg::upsample {

// One axis of a resampling, as the host knows it before any table exists.
struct AxisSpec {
  enum Kind { Forward, Backward, Nails, NailsBackward } kind;
  Mode mode = Mode::Nearest;  // Forward / Backward
  int64_t in = 0, out = 0;    // upsample's input and output extent of the axis (Nails: in, s)
  bool align_corners = false;
  std::optional<double> scale;
};

// A per-axis table in device memory, built there by the table kernels (upsample_kernels.cuh):
// the op copies nothing from the host and never waits for the device.
template <typename T, typename index_t>
struct DeviceTable {
  at::Tensor offsets, index, weight;
  DeviceTable(int64_t entries, int64_t taps, const at::TensorOptions& like)
      : offsets(at::empty({entries + 1}, like.dtype(c10::CppTypeToScalarType<index_t>::value))),
        index(at::empty({std::max<int64_t>(taps, 1)}, offsets.options())),
        weight(at::empty({std::max<int64_t>(taps, 1)},
                         like.dtype(c10::CppTypeToScalarType<T>::value))) {}
  AxisTable<T, index_t> view() const {
    return {offsets.const_data_ptr<index_t>(), index.const_data_ptr<index_t>(),
            weight.const_data_ptr<T>()};
  }
};

template <typename T>
TapRule<T> tap_rule(const AxisSpec& a) {
  const TapMode mode = a.mode == Mode::Nearest    ? TapMode::Nearest
                       : a.mode == Mode::Bilinear ? TapMode::Bilinear
                                                  : TapMode::Bicubic;
  return {mode, a.in, a.out, a.align_corners,
          area_pixel_compute_scale<T>(a.in, a.out, a.align_corners, a.scale),
          compute_scales_value<float>(a.scale, a.in, a.out)};
}

template <typename T, typename index_t, class Launcher>
DeviceTable<T, index_t> build_table(const Launcher& launch, const AxisSpec& a,
                                    const at::TensorOptions& like) {
  const dim3 block(kThreadsPerBlock);
  if (a.kind == AxisSpec::Nails || a.kind == AxisSpec::NailsBackward) {
    const bool backward = a.kind == AxisSpec::NailsBackward;
    const int64_t entries = backward ? a.in : a.in * a.out;  // out holds the scale here
    DeviceTable<T, index_t> t(entries, a.in, like);
    launch(nails_table_kernel<T, index_t>, grid_for(launch, entries + 1), block, 0, a.in, a.out,
           backward, t.offsets.template data_ptr<index_t>(), t.index.template data_ptr<index_t>(),
           t.weight.template data_ptr<T>());
    return t;
  }
  const int64_t taps = a.mode == Mode::Nearest ? 1 : a.mode == Mode::Bilinear ? 2 : 4;
  DeviceTable<T, index_t> f(a.out, a.out * taps, like);
  launch(forward_table_kernel<T, index_t>, grid_for(launch, a.out + 1), block, 0, tap_rule<T>(a),
         f.offsets.template data_ptr<index_t>(), f.index.template data_ptr<index_t>(),
         f.weight.template data_ptr<T>());
  if (a.kind == AxisSpec::Forward) return f;
  // At most out * taps (output, input) pairs in all (each output's taps are one range).
  DeviceTable<T, index_t> t(a.in, a.out * taps, like);
  launch(transpose_table_kernel<T, index_t>, grid_for(launch, a.in + 1), block, 0, f.view(),
         a.out, a.in, t.offsets.template data_ptr<index_t>(),
         t.index.template data_ptr<index_t>(), t.weight.template data_ptr<T>());
  return t;
}

template <class Launcher>
at::Tensor run_device(const Launcher& launch, const at::Tensor& src_, int64_t N, int64_t C,
                      int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                      bool channels_last, const AxisSpec& ah, const AxisSpec& aw) {
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor src = src_.contiguous(format);
  at::Tensor dst = at::empty({N, C, dst_h, dst_w}, src.options().memory_format(format));
  const int64_t numel = dst.numel();
  if (numel == 0) return dst;
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  // The tables' entries are below numel + 1 too (an axis extent, or a tap count of at most
  // 4 per output index), so one test covers element offsets and table offsets.
  const int64_t largest = std::max({numel, src.numel(), 4 * std::max(dst_h, dst_w) + 1,
                                    4 * std::max(src_h, src_w) + 1});
  const bool narrow = fits_int32(launch, grid, block, largest);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample2d", [&] {
    using T = at::opmath_type<scalar_t>;
    auto run = [&]<typename index_t>() {
      const auto th = build_table<T, index_t>(launch, ah, src.options());
      const auto tw = build_table<T, index_t>(launch, aw, src.options());
      const index_t c = channels_last ? C : 1;
      const KernelGeometry<index_t> g{c, static_cast<index_t>(dst_h), static_cast<index_t>(dst_w),
                                      static_cast<index_t>(src_w * c),
                                      static_cast<index_t>(src_h * src_w * c)};
      launch(resample_kernel<scalar_t, T, index_t>, grid, block, 0,
             src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), th.view(), tw.view(), g,
             static_cast<index_t>(numel));
    };
    if (narrow) run.template operator()<int32_t>();
    else run.template operator()<int64_t>();
  });
  return dst;
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input, at::IntArrayRef output_size,
                   c10::string_view mode, bool align_corners, std::optional<double> scale_h,
                   std::optional<double> scale_w) {
  const Mode m = parse_mode(mode);
  const Shape s = check_forward(input, output_size);
  return run_device(
      launch, input, s.batch, s.channels, s.in_h, s.in_w, s.out_h, s.out_w, s.channels_last,
      AxisSpec{AxisSpec::Forward, m, s.in_h, s.out_h, align_corners, scale_h},
      AxisSpec{AxisSpec::Forward, m, s.in_w, s.out_w, align_corners, scale_w});
}

template <class Launcher>
at::Tensor backward(const Launcher& launch, const at::Tensor& grad_output,
                    at::IntArrayRef input_size, c10::string_view mode, bool align_corners,
                    std::optional<double> scale_h, std::optional<double> scale_w) {
  const Mode m = parse_mode(mode);
  const Shape s = check_backward(grad_output, input_size);
  return run_device(
      launch, grad_output, s.batch, s.channels, s.out_h, s.out_w, s.in_h, s.in_w, s.channels_last,
      AxisSpec{AxisSpec::Backward, m, s.in_h, s.out_h, align_corners, scale_h},
      AxisSpec{AxisSpec::Backward, m, s.in_w, s.out_w, align_corners, scale_w});
}

template <class Launcher>
at::Tensor nails_forward(const Launcher& launch, const at::Tensor& input,
                         at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(input, scale_factor, false);
  return run_device(
      launch, input, s.batch, s.channels, s.in_h, s.in_w, s.in_h * s.s_h, s.in_w * s.s_w,
      s.channels_last, AxisSpec{AxisSpec::Nails, Mode::Nearest, s.in_h, s.s_h},
      AxisSpec{AxisSpec::Nails, Mode::Nearest, s.in_w, s.s_w});
}

template <class Launcher>
at::Tensor nails_backward(const Launcher& launch, const at::Tensor& grad_output,
                          at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(grad_output, scale_factor, true);
  return run_device(
      launch, grad_output, s.batch, s.channels, s.in_h * s.s_h, s.in_w * s.s_w, s.in_h, s.in_w,
      s.channels_last, AxisSpec{AxisSpec::NailsBackward, Mode::Nearest, s.in_h, s.s_h},
      AxisSpec{AxisSpec::NailsBackward, Mode::Nearest, s.in_w, s.s_w});
}

}  // namespace pyseg::upsample
