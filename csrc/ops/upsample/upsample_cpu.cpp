// upsample / interpolate (every mode, 3-D to 5-D input) and bed_of_nails on the CPU: argument
// checks, the per-axis tap tables (upsample.h) and the output; the resampling itself is
// upsample_cpu_kernel.cpp, compiled once per CPU capability and called through its stubs.
//
// Forward uses the taps of each output index, backward the transposed tables, so the
// backward is a gather (deterministic, no atomics) with the same code and parallelism.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <utility>
#include <vector>

#include "ops/upsample/upsample.h"
#include "ops/upsample/upsample_cpu_kernel.h"

namespace pyseg::upsample {

cpu::CpuStub<ResampleFn<float>> resample_f32_stub;
cpu::CpuStub<ResampleFn<double>> resample_f64_stub;
cpu::CpuStub<ResampleFn<at::Half>> resample_f16_stub;
cpu::CpuStub<ResampleFn<at::BFloat16>> resample_bf16_stub;

namespace {

// Resamples `src` (N, C, src_h, src_w) into a new (N, C, dst_h, dst_w) tensor in
// the layout given by `channels_last`, with tables built by `make_tables.template
// operator()<T>()`.
template <class MakeTables>
at::Tensor run(const at::Tensor& src_, int64_t N, int64_t C, int64_t src_h, int64_t src_w,
               int64_t dst_h, int64_t dst_w, bool channels_last, const MakeTables& make_tables) {
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor src = src_.contiguous(format);
  at::Tensor dst = at::empty({N, C, dst_h, dst_w}, src.options().memory_format(format));
  if (dst.numel() == 0) return dst;
  const int64_t src_dhw[3] = {1, src_h, src_w}, dst_dhw[3] = {1, dst_h, dst_w};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample2d", [&] {
    using T = at::opmath_type<scalar_t>;
    Tables<T> hw = make_tables.template operator()<T>();
    const std::array<Table<T>, 3> t{Table<T>{}, std::move(hw.h), std::move(hw.w)};
    resample_stub<scalar_t>()()(src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(),
                                channels_last ? N : N * C, channels_last ? C : 1, src_dhw, dst_dhw,
                                t);
  });
  return dst;
}

at::Tensor upsample2d_cpu(const at::Tensor& input, at::IntArrayRef output_size,
                          c10::string_view mode, bool align_corners,
                          std::optional<double> scale_h, std::optional<double> scale_w) {
  const TapMode m = parse_mode(mode);
  const Shape s = check_forward(input, output_size);
  return run(input, s.batch, s.channels, s.in_h, s.in_w, s.out_h, s.out_w, s.channels_last,
             [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, false); });
}

at::Tensor upsample2d_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                   c10::string_view mode, bool align_corners,
                                   std::optional<double> scale_h, std::optional<double> scale_w) {
  const TapMode m = parse_mode(mode);
  const Shape s = check_backward(grad_output, input_size);
  return run(grad_output, s.batch, s.channels, s.out_h, s.out_w, s.in_h, s.in_w, s.channels_last,
             [&]<typename T>() { return upsample_tables<T>(m, s, align_corners, scale_h, scale_w, true); });
}

at::Tensor bed_of_nails_cpu(const at::Tensor& input, at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(input, scale_factor, false);
  return run(input, s.batch, s.channels, s.in_h, s.in_w, s.in_h * s.s_h, s.in_w * s.s_w,
             s.channels_last,
             [&]<typename T>() {
               return Tables<T>{nails_table<T>(s.in_h, s.s_h), nails_table<T>(s.in_w, s.s_w)};
             });
}

at::Tensor bed_of_nails_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef scale_factor) {
  const NailsShape s = check_nails(grad_output, scale_factor, true);
  return run(grad_output, s.batch, s.channels, s.in_h * s.s_h, s.in_w * s.s_w, s.in_h, s.in_w,
             s.channels_last,
             [&]<typename T>() {
               return Tables<T>{nails_backward_table<T>(s.in_h, s.s_h),
                                nails_backward_table<T>(s.in_w, s.s_w)};
             });
}

// The N-d op: `src` (grad_output for the backward) resampled into a new tensor of `dst_sizes`
// in the layout of `s`, with the tables `make_tables.template operator()<T>()`.
template <class MakeTables>
at::Tensor run_nd(const at::Tensor& src_, const NdShape& s, bool backward,
                  const MakeTables& make_tables) {
  at::Tensor src = src_.contiguous(s.format);
  const int64_t* src_dhw = backward ? s.out : s.in;
  const int64_t* dst_dhw = backward ? s.in : s.out;
  std::vector<int64_t> dst_sizes{s.batch, s.channels};
  for (int64_t a = 3 - s.rank; a < 3; ++a) dst_sizes.push_back(dst_dhw[a]);
  at::Tensor dst = at::empty(dst_sizes, src.options().memory_format(s.format));
  if (dst.numel() == 0) return dst;
  if (src.numel() == 0) return dst.zero_();  // the backward of an empty output
  const int64_t groups = s.channels_last() ? s.batch : s.batch * s.channels;
  const int64_t C = s.channels_last() ? s.channels : 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "upsample", [&] {
    using T = at::opmath_type<scalar_t>;
    const std::array<Table<T>, 3> t = make_tables.template operator()<T>();
    resample_stub<scalar_t>()()(src.const_data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), groups,
                                C, src_dhw, dst_dhw, t);
  });
  return dst;
}

at::Tensor upsample_cpu(const at::Tensor& input, at::IntArrayRef output_size,
                        c10::string_view mode, bool align_corners, bool antialias,
                        std::optional<at::ArrayRef<double>> scales) {
  const TapMode m = parse_nd_mode(mode, antialias, input.dim() - 2);
  const NdShape s = check_nd_forward(input, output_size, m);
  check_nd_scales(s, scales);
  return run_nd(input, s, false, [&]<typename T>() {
    return nd_tables<T>(m, s, align_corners, scales, false);
  });
}

at::Tensor upsample_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                 c10::string_view mode, bool align_corners, bool antialias,
                                 std::optional<at::ArrayRef<double>> scales) {
  const TapMode m = parse_nd_mode(mode, antialias, grad_output.dim() - 2);
  const NdShape s = check_nd_backward(grad_output, input_size, m);
  check_nd_scales(s, scales);
  return run_nd(grad_output, s, true, [&]<typename T>() {
    return nd_tables<T>(m, s, align_corners, scales, true);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("upsample", &upsample_cpu);
  m.impl("upsample_backward", &upsample_backward_cpu);
  m.impl("upsample2d", &upsample2d_cpu);
  m.impl("upsample2d_backward", &upsample2d_backward_cpu);
  m.impl("bed_of_nails", &bed_of_nails_cpu);
  m.impl("bed_of_nails_backward", &bed_of_nails_backward_cpu);
}

}  // namespace pyseg::upsample
