// upsample2d / bed_of_nails host code for the CUDA kernels, written once against a Launcher
// (real CUDA in upsample_cuda.cu, the CPU emulator in upsample_emu.cpp).
//
// The per-axis tables are small (a few entries per output row/column): they are built on the
// host exactly as the CPU kernels build them and copied to the device, so every device
// samples the same coordinates with the same weights.
#pragma once

#include <cstring>
#include <type_traits>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>

#include "common/launch_utils.h"
#include "ops/upsample/upsample.h"
#include "ops/upsample/upsample_kernels.cuh"

namespace pyseg::upsample {

template <typename V>
at::Tensor to_device(const std::vector<V>& v, at::ScalarType dtype, const at::Device& device) {
  at::Tensor host = at::empty({static_cast<int64_t>(std::max<size_t>(v.size(), 1))},
                              at::TensorOptions().dtype(dtype));
  if (!v.empty()) std::memcpy(host.data_ptr(), v.data(), v.size() * sizeof(V));
  return host.to(device);
}

template <typename T>
struct DeviceTable {
  at::Tensor offsets, index, weight;
  DeviceTable(const Table<T>& t, const at::Device& device)
      : offsets(to_device(t.offsets, at::kLong, device)),
        index(to_device(t.index, at::kLong, device)),
        weight(to_device(t.weight, std::is_same_v<T, double> ? at::kDouble : at::kFloat, device)) {}
  AxisTable<T> view() const {
    return {offsets.const_data_ptr<int64_t>(), index.const_data_ptr<int64_t>(),
            weight.const_data_ptr<T>()};
  }
};

template <class Launcher, class MakeTables>
at::Tensor run_device(const Launcher& launch, const at::Tensor& src_, int64_t N, int64_t C,
                      int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                      bool channels_last, const MakeTables& make_tables) {
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor src = src_.contiguous(format);
  at::Tensor dst = at::empty({N, C, dst_h, dst_w}, src.options().memory_format(format));
  const int64_t numel = dst.numel();
  if (numel == 0) return dst;
  const KernelGeometry g{channels_last ? C : 1, src_h, src_w, dst_h, dst_w};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample2d", [&] {
    using T = at::opmath_type<scalar_t>;
    const Tables<T> t = make_tables.template operator()<T>();
    const DeviceTable<T> th(t.h, src.device()), tw(t.w, src.device());
    launch(resample_kernel<scalar_t, T>, grid_for(launch, numel), dim3(kThreadsPerBlock), 0,
           src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), th.view(), tw.view(), g,
           numel);
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
      [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, false); });
}

template <class Launcher>
at::Tensor backward(const Launcher& launch, const at::Tensor& grad_output,
                    at::IntArrayRef input_size, c10::string_view mode, bool align_corners,
                    std::optional<double> scale_h, std::optional<double> scale_w) {
  const Mode m = parse_mode(mode);
  const Shape s = check_backward(grad_output, input_size);
  return run_device(
      launch, grad_output, s.batch, s.channels, s.out_h, s.out_w, s.in_h, s.in_w, s.channels_last,
      [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, true); });
}

template <class Launcher>
at::Tensor nails_forward(const Launcher& launch, const at::Tensor& input,
                         at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(input, scale_factor, false);
  return run_device(
      launch, input, s.batch, s.channels, s.in_h, s.in_w, s.in_h * s.s_h, s.in_w * s.s_w,
      s.channels_last,
      [&]<typename T>() {
        return Tables<T>{nails_table<T>(s.in_h, s.s_h), nails_table<T>(s.in_w, s.s_w)};
      });
}

template <class Launcher>
at::Tensor nails_backward(const Launcher& launch, const at::Tensor& grad_output,
                          at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(grad_output, scale_factor, true);
  return run_device(
      launch, grad_output, s.batch, s.channels, s.in_h * s.s_h, s.in_w * s.s_w, s.in_h, s.in_w,
      s.channels_last,
      [&]<typename T>() {
        return Tables<T>{nails_backward_table<T>(s.in_h, s.s_h),
                         nails_backward_table<T>(s.in_w, s.s_w)};
      });
}

}  // namespace pyseg::upsample
