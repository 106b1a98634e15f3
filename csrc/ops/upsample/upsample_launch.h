// upsample2d / bed_of_nails host code for the CUDA kernels, written once against a Launcher
// (real CUDA in upsample_cuda.cu, the CPU emulator in upsample_emu.cpp).
//
// The per-axis tables are small (a few entries per output row/column): table kernels build
// them on the device from the sizes and scales (no host-to-device copy), with the formulas
// the CPU kernels' host tables use.
#pragma once

#include <algorithm>
#include <optional>
#include <vector>
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
  TapMode mode = TapMode::Nearest;  // Forward / Backward
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
  return make_rule<T>(a.mode, a.in, a.out, a.align_corners, a.scale);
}

// Entries of the widest table of an axis (the int32 decision of run_device).
inline int64_t table_entries(const AxisSpec& a) {
  if (a.kind == AxisSpec::Nails || a.kind == AxisSpec::NailsBackward) return a.in * a.out + 1;
  return a.out * static_cast<int64_t>(tap_rule<double>(a).taps) + std::max(a.in, a.out) + 1;
}

// The identity axis of extent 1 (the depth of 3-D and 4-D inputs, the height of 3-D ones).
inline AxisSpec unit_axis() { return AxisSpec{AxisSpec::Forward, TapMode::Nearest, 1, 1}; }

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
  const TapRule<T> rule = tap_rule<T>(a);
  const int64_t taps = rule.taps;
  DeviceTable<T, index_t> f(a.out, a.out * taps, like);
  launch(forward_table_kernel<T, index_t>, grid_for(launch, a.out + 1), block, 0, rule,
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

// `src` resampled into a new tensor of `dst_sizes` in `format`; src_dhw / dst_dhw are the
// (D, H, W) extents (1 for the axes a 3-D or 4-D tensor lacks) and ad / ah / aw their axes.
template <class Launcher>
at::Tensor run_device(const Launcher& launch, const at::Tensor& src_, at::IntArrayRef dst_sizes,
                      at::MemoryFormat format, const int64_t* src_dhw, const int64_t* dst_dhw,
                      const AxisSpec& ad, const AxisSpec& ah, const AxisSpec& aw) {
  at::Tensor src = src_.contiguous(format);
  at::Tensor dst = at::empty(dst_sizes, src.options().memory_format(format));
  const int64_t numel = dst.numel();
  if (numel == 0) return dst;
  if (src.numel() == 0) return dst.zero_();  // the backward of an empty output
  const bool channels_last = format != at::MemoryFormat::Contiguous;
  const int64_t C = channels_last ? dst_sizes[1] : 1;
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  // One test covers element offsets and every table's offsets.
  const int64_t largest = std::max({numel, src.numel(), table_entries(ad), table_entries(ah),
                                    table_entries(aw)});
  const bool narrow = fits_int32(launch, grid, block, largest);
  const bool depth = src_dhw[0] != 1 || dst_dhw[0] != 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample", [&] {
    using T = at::opmath_type<scalar_t>;
    auto run = [&]<typename index_t>() {
      const auto td = build_table<T, index_t>(launch, depth ? ad : unit_axis(), src.options());
      const auto th = build_table<T, index_t>(launch, ah, src.options());
      const auto tw = build_table<T, index_t>(launch, aw, src.options());
      const int64_t row = src_dhw[2] * C, plane = src_dhw[1] * row;
      const KernelGeometry<index_t> g{static_cast<index_t>(C),
                                      static_cast<index_t>(dst_dhw[0]),
                                      static_cast<index_t>(dst_dhw[1]),
                                      static_cast<index_t>(dst_dhw[2]),
                                      static_cast<index_t>(row),
                                      static_cast<index_t>(plane),
                                      static_cast<index_t>(src_dhw[0] * plane)};
      auto kernel = depth ? &resample_kernel<true, scalar_t, T, index_t>
                          : &resample_kernel<false, scalar_t, T, index_t>;
      launch(kernel, grid, block, 0, src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(),
             td.view(), th.view(), tw.view(), g, static_cast<index_t>(numel));
    };
    if (narrow) run.template operator()<int32_t>();
    else run.template operator()<int64_t>();
  });
  return dst;
}

// The 4-D entry points (upsample2d, bed_of_nails): depth 1.
template <class Launcher>
at::Tensor run_device_2d(const Launcher& launch, const at::Tensor& src, int64_t N, int64_t C,
                         int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                         bool channels_last, const AxisSpec& ah, const AxisSpec& aw) {
  const int64_t src_dhw[3] = {1, src_h, src_w}, dst_dhw[3] = {1, dst_h, dst_w};
  return run_device(launch, src, {N, C, dst_h, dst_w},
                    channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous,
                    src_dhw, dst_dhw, unit_axis(), ah, aw);
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input, at::IntArrayRef output_size,
                   c10::string_view mode, bool align_corners, std::optional<double> scale_h,
                   std::optional<double> scale_w) {
  const TapMode m = parse_mode(mode);
  const Shape s = check_forward(input, output_size);
  return run_device_2d(
      launch, input, s.batch, s.channels, s.in_h, s.in_w, s.out_h, s.out_w, s.channels_last,
      AxisSpec{AxisSpec::Forward, m, s.in_h, s.out_h, align_corners, scale_h},
      AxisSpec{AxisSpec::Forward, m, s.in_w, s.out_w, align_corners, scale_w});
}

template <class Launcher>
at::Tensor backward(const Launcher& launch, const at::Tensor& grad_output,
                    at::IntArrayRef input_size, c10::string_view mode, bool align_corners,
                    std::optional<double> scale_h, std::optional<double> scale_w) {
  const TapMode m = parse_mode(mode);
  const Shape s = check_backward(grad_output, input_size);
  return run_device_2d(
      launch, grad_output, s.batch, s.channels, s.out_h, s.out_w, s.in_h, s.in_w, s.channels_last,
      AxisSpec{AxisSpec::Backward, m, s.in_h, s.out_h, align_corners, scale_h},
      AxisSpec{AxisSpec::Backward, m, s.in_w, s.out_w, align_corners, scale_w});
}

template <class Launcher>
at::Tensor nails_forward(const Launcher& launch, const at::Tensor& input,
                         at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(input, scale_factor, false);
  return run_device_2d(
      launch, input, s.batch, s.channels, s.in_h, s.in_w, s.in_h * s.s_h, s.in_w * s.s_w,
      s.channels_last, AxisSpec{AxisSpec::Nails, TapMode::Nearest, s.in_h, s.s_h},
      AxisSpec{AxisSpec::Nails, TapMode::Nearest, s.in_w, s.s_w});
}

template <class Launcher>
at::Tensor nails_backward(const Launcher& launch, const at::Tensor& grad_output,
                          at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(grad_output, scale_factor, true);
  return run_device_2d(
      launch, grad_output, s.batch, s.channels, s.in_h * s.s_h, s.in_w * s.s_w, s.in_h, s.in_w,
      s.channels_last, AxisSpec{AxisSpec::NailsBackward, TapMode::Nearest, s.in_h, s.s_h},
      AxisSpec{AxisSpec::NailsBackward, TapMode::Nearest, s.in_w, s.s_w});
}

// The N-d op (every interpolate mode on 3-D, 4-D and 5-D tensors). Axes missing from the
// tensor are identities of extent 1.
template <class Launcher>
at::Tensor run_nd(const Launcher& launch, const at::Tensor& src, const NdShape& s, TapMode m,
                  bool align_corners, std::optional<at::ArrayRef<double>> scales, bool backward) {
  check_nd_scales(s, scales);
  AxisSpec axes[3] = {unit_axis(), unit_axis(), unit_axis()};
  const int64_t k = 3 - s.rank;
  for (int64_t a = k; a < 3; ++a) {
    std::optional<double> scale;
    if (scales.has_value()) scale = (*scales)[a - k];
    axes[a] = AxisSpec{backward ? AxisSpec::Backward : AxisSpec::Forward, m, s.in[a], s.out[a],
                       align_corners, scale};
  }
  const int64_t* src_dhw = backward ? s.out : s.in;
  const int64_t* dst_dhw = backward ? s.in : s.out;
  std::vector<int64_t> dst_sizes{s.batch, s.channels};
  for (int64_t a = k; a < 3; ++a) dst_sizes.push_back(dst_dhw[a]);
  return run_device(launch, src, dst_sizes, s.format, src_dhw, dst_dhw, axes[0], axes[1], axes[2]);
}

template <class Launcher>
at::Tensor nd_forward(const Launcher& launch, const at::Tensor& input,
                      at::IntArrayRef output_size, c10::string_view mode, bool align_corners,
                      bool antialias, std::optional<at::ArrayRef<double>> scales) {
  const TapMode m = parse_nd_mode(mode, antialias, input.dim() - 2);
  const NdShape s = check_nd_forward(input, output_size, m);
  return run_nd(launch, input, s, m, align_corners, scales, false);
}

template <class Launcher>
at::Tensor nd_backward(const Launcher& launch, const at::Tensor& grad_output,
                       at::IntArrayRef input_size, c10::string_view mode, bool align_corners,
                       bool antialias, std::optional<at::ArrayRef<double>> scales) {
  const TapMode m = parse_nd_mode(mode, antialias, grad_output.dim() - 2);
  const NdShape s = check_nd_backward(grad_output, input_size, m);
  return run_nd(launch, grad_output, s, m, align_corners, scales, true);
}

}  // namespace pyseg::upsample
