// Host-side argument checks and shapes for conv_transpose3d, shared by the CPU kernels, the
// CUDA launcher and the emulator, so every device accepts and rejects the same inputs with
// the same messages (torch's F.conv_transpose3d wording, as conv_transpose2d does).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include "ops/conv_transpose/conv_transpose.h"
#include "ops/conv_transpose3d/conv_transpose3d_index.h"

namespace pyseg::conv_transpose3d {

// Every size a kernel needs. A 4-D unbatched input is handled as a batch of one; `batched`
// says which shape to hand back.
struct Params {
  int64_t batch = 1, in_channels = 0, out_channels = 0;
  int64_t groups = 1, in_per_group = 0, out_per_group = 0;
  std::array<int64_t, 3> in{}, out{}, kernel{}, stride{}, pad{}, out_pad{}, dil{};
  bool batched = true;
  bool channels_last = false;

  int64_t in_volume() const { return in[0] * in[1] * in[2]; }
  int64_t out_volume() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_volume() const { return kernel[0] * kernel[1] * kernel[2]; }

  std::vector<int64_t> output_sizes() const {
    std::vector<int64_t> s{batch, out_channels, out[0], out[1], out[2]};
    if (!batched) s.erase(s.begin());
    return s;
  }
  std::vector<int64_t> weight_sizes() const {
    return {in_channels, out_per_group, kernel[0], kernel[1], kernel[2]};
  }
  // (index_t = int32_t only when the launch checked that every index fits: index_bound)
  template <typename index_t = int64_t>
  Geometry<index_t> geometry() const {
    Geometry<index_t> g;
    for (int d = 0; d < 3; ++d) {
      g.in[d] = static_cast<index_t>(in[d]);
      g.out[d] = static_cast<index_t>(out[d]);
      g.kernel[d] = static_cast<index_t>(kernel[d]);
      g.stride[d] = static_cast<index_t>(stride[d]);
      g.pad[d] = static_cast<index_t>(pad[d]);
      g.dil[d] = static_cast<index_t>(dil[d]);
    }
    g.out_per_group = static_cast<index_t>(out_per_group);
    return g;
  }
};

// Type names, per-axis argument checks and the output-extent arithmetic are conv_transpose2d's.
using conv_transpose::tensor_type_name;

inline void check_triple(at::IntArrayRef v, const char* name) {
  conv_transpose::check_per_axis(v, 3, name);
}

inline int64_t output_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                             int64_t dil, int64_t out_pad) {
  return conv_transpose::output_extent(in, kernel, stride, pad, dil, out_pad, "conv_transpose3d");
}

// Checks everything F.conv_transpose3d checks and computes the output shape.
inline Params check_forward(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef output_padding,
                            int64_t groups, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 4 || input.dim() == 5,
              "Expected 4D (unbatched) or 5D (batched) input to conv_transpose3d, but got "
              "input of size: ", input.sizes());
  check_triple(stride, "stride");
  check_triple(padding, "padding");
  check_triple(output_padding, "output_padding");
  check_triple(dilation, "dilation");
  TORCH_CHECK(weight.dim() == 5, "Expected 5-dimensional weight for conv_transpose3d, but got ",
              weight.dim(), "-dimensional weight of size ", weight.sizes(), " instead");
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0 && weight.size(4) > 0,
              "kernel size should be greater than zero, but got kernel_depth: ", weight.size(2),
              " kernel_height: ", weight.size(3), " kernel_width: ", weight.size(4));
  TORCH_CHECK(weight.numel() > 0, "non-empty 5D weight tensor expected, but got: ",
              weight.sizes());
  TORCH_CHECK(input.device() == weight.device(), "Expected weight on ", input.device(),
              " like input, but got weight on ", weight.device());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "Input type (",
              tensor_type_name(input), ") and weight type (", tensor_type_name(weight),
              ") should be the same or input should be a MKLDNN tensor and weight is a dense "
              "tensor");
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(stride[d] > 0, "non-positive stride is not supported");
    TORCH_CHECK(padding[d] >= 0, "negative padding is not supported");
    TORCH_CHECK(output_padding[d] >= 0, "negative output_padding is not supported");
    TORCH_CHECK(dilation[d] > 0, "dilation should be greater than zero, but got dilation_depth: ",
                dilation[0], " dilation_height: ", dilation[1], " dilation_width: ", dilation[2]);
  }
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
  TORCH_CHECK(weight.size(0) >= groups, "Given groups=", groups,
              ", expected weight to be at least ", groups,
              " at dimension 0, but got weight of size ", weight.sizes(), " instead");
  TORCH_CHECK(weight.size(0) % groups == 0, "Given groups=", groups,
              ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size [", weight.sizes(), "] instead");
  std::vector<int64_t> in5 = input.sizes().vec();
  if (input.dim() == 4) in5.insert(in5.begin(), 1);
  TORCH_CHECK(in5[1] == weight.size(0), "Given transposed=1, weight of size ", weight.sizes(),
              ", expected input", at::IntArrayRef(in5), " to have ", weight.size(0),
              " channels, but got ", in5[1], " channels instead");
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(1) * groups,
                "Given transposed=1, weight of size ", weight.sizes(),
                ", expected bias to be 1-dimensional with ", weight.size(1) * groups,
                " elements, but got bias of size ", bias->sizes(), " instead");
    TORCH_CHECK(bias->scalar_type() == input.scalar_type(), "Input type (",
                tensor_type_name(input), ") and bias type (", tensor_type_name(*bias),
                ") should be the same or input should be a MKLDNN tensor and bias is a dense "
                "tensor");
    TORCH_CHECK(bias->device() == input.device(), "Expected bias on ", input.device(),
                " like input, but got bias on ", bias->device());
  }
  bool small_padding = true;
  for (int d = 0; d < 3; ++d)
    small_padding &= output_padding[d] < stride[d] || output_padding[d] < dilation[d];
  TORCH_CHECK(small_padding,
              "output padding must be smaller than either stride or dilation, but got "
              "output_padding_depth: ", output_padding[0], " output_padding_height: ",
              output_padding[1], " output_padding_width: ", output_padding[2],
              " stride_depth: ", stride[0], " stride_height: ", stride[1], " stride_width: ",
              stride[2], " dilation_depth: ", dilation[0], " dilation_height: ", dilation[1],
              " dilation_width: ", dilation[2]);
  TORCH_CHECK(in5[2] > 0 && in5[3] > 0 && in5[4] > 0,
              "Only zero batch or zero channel inputs are supported, but got input shape: ",
              input.sizes());
  Params p;
  p.batched = input.dim() == 5;
  p.batch = in5[0];
  p.in_channels = in5[1];
  p.groups = groups;
  p.in_per_group = p.in_channels / groups;
  p.out_per_group = weight.size(1);
  p.out_channels = p.out_per_group * groups;
  for (int d = 0; d < 3; ++d) {
    p.in[d] = in5[2 + d];
    p.kernel[d] = weight.size(2 + d);
    p.stride[d] = stride[d];
    p.pad[d] = padding[d];
    p.out_pad[d] = output_padding[d];
    p.dil[d] = dilation[d];
    p.out[d] = output_extent(p.in[d], p.kernel[d], p.stride[d], p.pad[d], p.dil[d], p.out_pad[d]);
  }
  const bool positive = p.out[0] > 0 && p.out[1] > 0 && p.out[2] > 0;
  int64_t numel = p.batch * p.out_channels;
  TORCH_CHECK_VALUE(!positive || (!c10::mul_overflows(numel, p.out[0], &numel) &&
                                  !c10::mul_overflows(numel, p.out[1], &numel) &&
                                  !c10::mul_overflows(numel, p.out[2], &numel)),
                    "conv_transpose3d: the output shape does not fit in int64 (stride, "
                    "dilation, kernel size or output_padding too large)");
  TORCH_CHECK(positive, "Given input size per channel: (", p.in[0], " x ", p.in[1], " x ",
              p.in[2], "). Calculated output size per channel: (", p.out[0], " x ", p.out[1],
              " x ", p.out[2], "). Output size is too small");
  // The columns of one image, (C_out / groups * kernel volume) x input volume per group.
  int64_t cols = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(p.out_channels * p.kernel_volume(), p.in_volume(), &cols),
                    "conv_transpose3d: the intermediate columns do not fit in int64");
  p.channels_last =
      p.batched && (input.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d ||
                    weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d);
  return p;
}

// The backward takes the forward's arguments plus grad_output, whose shape must be the
// forward output's.
inline Params check_backward(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& weight, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef output_padding,
                             int64_t groups, at::IntArrayRef dilation) {
  Params p = check_forward(input, weight, std::nullopt, stride, padding, output_padding, groups,
                           dilation);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(p.output_sizes()),
              "conv_transpose3d_backward: expected grad_output of size ",
              at::IntArrayRef(p.output_sizes()), " but got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type() &&
                  grad_output.device() == input.device(),
              "conv_transpose3d_backward: expected grad_output with the dtype and device of "
              "input (", input.scalar_type(), ", ", input.device(), ") but got ",
              grad_output.scalar_type(), ", ", grad_output.device());
  return p;
}

// The kernels work on contiguous NCDHW tensors in the compute type (float for half and
// bfloat16: float32 accumulation throughout, one rounding at the end).
inline at::Tensor as_compute(const at::Tensor& t, bool batched) {
  at::Tensor x = batched ? t : t.unsqueeze(0);
  const auto type = t.scalar_type();
  if (type == at::kHalf || type == at::kBFloat16) x = x.to(at::kFloat);
  return x.contiguous();
}

inline at::Tensor weight_as_compute(const at::Tensor& w) {
  const auto type = w.scalar_type();
  if (type == at::kHalf || type == at::kBFloat16) return w.to(at::kFloat).contiguous();
  return w.contiguous();
}

// Back to the caller's dtype, shape and memory format.
inline at::Tensor finish(const at::Tensor& t, const Params& p, at::ScalarType type,
                         bool activation = true) {
  at::Tensor r = t;
  if (activation && !p.batched) r = r.squeeze(0);
  if (activation && p.channels_last) r = r.contiguous(at::MemoryFormat::ChannelsLast3d);
  return r.scalar_type() == type ? r : r.to(type);
}

}  // namespace pyseg::conv_transpose3d
