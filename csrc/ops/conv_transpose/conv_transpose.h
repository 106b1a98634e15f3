// Host-side argument checks and shapes for conv_transpose2d, shared by the CPU kernels, the
// CUDA launcher and the emulator, so every device accepts and rejects the same inputs with
// the same messages. The messages are torch's (F.conv_transpose2d), so code that matches on
// them keeps working.
#pragma once

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace pyseg::conv_transpose {

// Every size a kernel needs. Inputs are handled as 4-D (a 3-D unbatched input is viewed
// as a batch of one); `batched` says which shape to hand back.
struct Params {
  int64_t batch = 1, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, out_h = 0, out_w = 0;
  int64_t groups = 1, in_per_group = 0, out_per_group = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t out_pad_h = 0, out_pad_w = 0, dil_h = 1, dil_w = 1;
  bool batched = true;
  bool channels_last = false;
  // CPU: strides of the weight w[ci][co][tap] (tap = kh * kW + kw) along co and tap; the ci
  // stride is out_per_group * kH * kW in both layouts the kernels read as stored
  // (contiguous: kH * kW and 1; channels_last: 1 and out_per_group).
  int64_t w_co_stride = 0, w_tap_stride = 1;

  std::vector<int64_t> output_sizes() const {
    if (batched) return {batch, out_channels, out_h, out_w};
    return {out_channels, out_h, out_w};
  }
  std::vector<int64_t> input_sizes() const {
    if (batched) return {batch, in_channels, in_h, in_w};
    return {in_channels, in_h, in_w};
  }
  std::vector<int64_t> weight_sizes() const {
    return {in_channels, out_per_group, kernel_h, kernel_w};
  }
};

// grad_weight's layout on every device: channels_last when the op computes in channels_last
// and the weight is stored channels_last (as torch returns it), contiguous otherwise. The
// fake kernel (pyseg/ops/conv_transpose.py) applies the same rule.
inline bool grad_weight_channels_last(const Params& p, const at::Tensor& weight) {
  return p.channels_last && weight.dim() == 4 &&
         weight.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline std::string tensor_type_name(const at::Tensor& t) {
  std::string s = "torch.";
  if (t.is_cuda()) s += "cuda.";
  s += c10::toString(t.scalar_type());
  s += "Tensor";
  return s;
}

// torch's check that a per-axis argument has one value per spatial dimension.
inline void check_per_axis(at::IntArrayRef v, size_t dims, const char* name) {
  TORCH_CHECK(v.size() == dims, "expected ", name, " to be a single integer value or a list of ",
              dims, " values to match the convolution dimensions, but got ", name, "=", v);
}

inline void check_pair(at::IntArrayRef v, const char* name) { check_per_axis(v, 2, name); }

// (in - 1) * stride - 2 * pad + dil * (kernel - 1) + out_pad + 1 (all arguments checked
// non-negative before), or a ValueError when it does not fit in int64, as the Python fake
// kernel raises (pyseg.ops._library.checked_shape).
// (Shared with conv_transpose3d, which passes its own name for the message.)
inline int64_t output_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                             int64_t dil, int64_t out_pad, const char* op = "conv_transpose2d") {
  int64_t span = 0, reach = 0, out = 0;
  const bool overflow = c10::mul_overflows(in - 1, stride, &span) ||
                        c10::mul_overflows(dil, kernel - 1, &reach) ||
                        c10::add_overflows(span, reach, &out) ||
                        c10::add_overflows(out, out_pad, &out) ||
                        c10::add_overflows(out, int64_t{1}, &out);
  TORCH_CHECK_VALUE(!overflow, op, ": the output shape does not fit in int64 "
                    "(stride, dilation, kernel size or output_padding too large)");
  // out - 2 * pad; below INT64_MIN only when far too small, then the "too small" error.
  int64_t result = 0;
  if (__builtin_sub_overflow(out, pad, &result) || __builtin_sub_overflow(result, pad, &result))
    return std::numeric_limits<int64_t>::min();
  return result;
}

// Checks everything F.conv_transpose2d checks and computes the output shape.
inline Params check_forward(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef output_padding,
                            int64_t groups, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 3 || input.dim() == 4,
              "Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got "
              "input of size: ", input.sizes());
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(output_padding, "output_padding");
  check_pair(dilation, "dilation");
  TORCH_CHECK(weight.dim() == 4, "Expected 4-dimensional weight for conv_transpose2d, but got ",
              weight.dim(), "-dimensional weight of size ", weight.sizes(), " instead");
  // torch's words for a degenerate weight (a 0xK kernel, no output channels).
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0,
              "kernel size should be greater than zero, but got kernel_height: ",
              weight.size(2), " kernel_width: ", weight.size(3));
  TORCH_CHECK(weight.numel() > 0, "non-empty 2D or 4D weight tensor expected, but got: ",
              weight.sizes());
  TORCH_CHECK(input.device() == weight.device(), "Expected weight on ", input.device(),
              " like input, but got weight on ", weight.device());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "expected scalar type ",
              input.scalar_type(), " but found ", weight.scalar_type());
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, "non-positive stride is not supported");
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, "negative padding is not supported");
  TORCH_CHECK(output_padding[0] >= 0 && output_padding[1] >= 0,
              "negative output_padding is not supported");
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0,
              "dilation should be greater than zero, but got dilation_height: ", dilation[0],
              " dilation_width: ", dilation[1]);
  TORCH_CHECK(groups > 0, "non-positive groups is not supported");
  TORCH_CHECK(weight.size(0) >= groups, "Given groups=", groups,
              ", expected weight to be at least ", groups,
              " at dimension 0, but got weight of size ", weight.sizes(), " instead");
  TORCH_CHECK(weight.size(0) % groups == 0, "Given groups=", groups,
              ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size [", weight.sizes(), "] instead");
  const std::vector<int64_t> in4 =
      input.dim() == 4 ? input.sizes().vec()
                       : std::vector<int64_t>{1, input.size(0), input.size(1), input.size(2)};
  TORCH_CHECK(in4[1] == weight.size(0), "Given transposed=1, weight of size ", weight.sizes(),
              ", expected input", at::IntArrayRef(in4), " to have ", weight.size(0),
              " channels, but got ", in4[1], " channels instead");
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
  TORCH_CHECK((output_padding[0] < stride[0] || output_padding[0] < dilation[0]) &&
                  (output_padding[1] < stride[1] || output_padding[1] < dilation[1]),
              "output padding must be smaller than either stride or dilation, but got "
              "output_padding_height: ", output_padding[0], " output_padding_width: ",
              output_padding[1], " stride_height: ", stride[0], " stride_width: ", stride[1],
              " dilation_height: ", dilation[0], " dilation_width: ", dilation[1]);
  TORCH_CHECK(in4[2] > 0 && in4[3] > 0,
              "Only zero batch or zero channel inputs are supported, but got input shape: ",
              input.sizes());
  Params p;
  p.batched = input.dim() == 4;
  p.batch = in4[0];
  p.in_channels = in4[1];
  p.in_h = in4[2];
  p.in_w = in4[3];
  p.groups = groups;
  p.in_per_group = p.in_channels / groups;
  p.out_per_group = weight.size(1);
  p.out_channels = p.out_per_group * groups;
  p.kernel_h = weight.size(2);
  p.kernel_w = weight.size(3);
  p.stride_h = stride[0];
  p.stride_w = stride[1];
  p.pad_h = padding[0];
  p.pad_w = padding[1];
  p.out_pad_h = output_padding[0];
  p.out_pad_w = output_padding[1];
  p.dil_h = dilation[0];
  p.dil_w = dilation[1];
  p.out_h = output_extent(p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dil_h, p.out_pad_h);
  p.out_w = output_extent(p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dil_w, p.out_pad_w);
  int64_t numel = 0;
  TORCH_CHECK_VALUE(p.out_h <= 0 || p.out_w <= 0 ||
                        (!c10::mul_overflows(p.out_h, p.out_w, &numel) &&
                         !c10::mul_overflows(numel, p.batch * p.out_channels, &numel)),
                    "conv_transpose2d: the output shape does not fit in int64 (stride, "
                    "dilation, kernel size or output_padding too large)");
  TORCH_CHECK(p.out_h > 0 && p.out_w > 0, "Given input size per channel: (", p.in_h, " x ",
              p.in_w, "). Calculated output size per channel: (", p.out_h, " x ", p.out_w,
              "). Output size is too small");
  // torch picks channels_last when the input or the weight suggests it.
  p.channels_last = p.batched && (input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                                  weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast);
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
              "conv_transpose2d_backward: expected grad_output of size ",
              at::IntArrayRef(p.output_sizes()), " but got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type() &&
                  grad_output.device() == input.device(),
              "conv_transpose2d_backward: expected grad_output with the dtype and device of "
              "input (", input.scalar_type(), ", ", input.device(), ") but got ",
              grad_output.scalar_type(), ", ", grad_output.device());
  return p;
}

inline at::MemoryFormat memory_format(const Params& p) {
  return p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// A 4-D contiguous (NCHW) view of a 3-D or 4-D tensor.
inline at::Tensor as_nchw(const at::Tensor& t) {
  return (t.dim() == 3 ? t.unsqueeze(0) : t).contiguous();
}

// Gives `t` (4-D NCHW result) the shape and memory format the caller expects.
inline at::Tensor finish(const at::Tensor& t, const Params& p) {
  if (!p.batched) return t.squeeze(0);
  return p.channels_last ? t.contiguous(at::MemoryFormat::ChannelsLast) : t;
}

}  // namespace pyseg::conv_transpose
