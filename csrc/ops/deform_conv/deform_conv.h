// Host-side argument checks and shapes for deform_conv2d, shared by the CPU kernels, the CUDA
// launcher and the emulator so that every device accepts and rejects the same inputs with the
// same messages (worded like torchvision's, so code that matches on them keeps working).
//
// Layouts (torchvision's): input (N, C, H, W); weight (O, C / groups, kh, kw); offset
// (N, 2 * offset_groups * kh * kw, Ho, Wo) with channel (g * kh * kw + tap) * 2 + {0: dy, 1: dx};
// mask (N, offset_groups * kh * kw, Ho, Wo) with channel g * kh * kw + tap.
#pragma once

#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace pyseg::deform_conv {

struct Params {
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups;
  bool use_mask;
};

struct Shape {
  int64_t batch, channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w, out_h, out_w;
  int64_t groups, offset_groups;

  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t in_plane() const { return in_h * in_w; }
  int64_t out_plane() const { return out_h * out_w; }
  int64_t channels_per_group() const { return channels / groups; }
  int64_t out_channels_per_group() const { return out_channels / groups; }
  int64_t channels_per_offset_group() const { return channels / offset_groups; }
};

// (in + 2 * pad - (dil * (kernel - 1) + 1)) / stride + 1 for non-negative pad and positive
// kernel, dil, stride; a ValueError when an intermediate does not fit in int64, as the
// Python fake kernel raises (pyseg.ops._library.checked_shape).
inline int64_t output_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                             int64_t dil) {
  int64_t reach = 0, padded = 0;
  const bool overflow = c10::mul_overflows(dil, kernel - 1, &reach) ||
                        c10::add_overflows(in, pad, &padded) ||
                        c10::add_overflows(padded, pad, &padded);
  TORCH_CHECK_VALUE(!overflow, "deform_conv2d: the output shape does not fit in int64 "
                    "(padding, dilation or kernel size too large)");
  // padded - reach - 1 >= -reach - 1 > INT64_MIN: no overflow; C++ division truncates
  // toward zero like the reference implementation's.
  return (padded - reach - 1) / stride + 1;
}

inline Shape check(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                   const at::Tensor& mask, const at::Tensor& bias, const Params& p) {
  TORCH_CHECK(input.dim() == 4, "deform_conv2d: input must be a 4-D tensor (N, C, H, W), got ",
              input.dim(), " dimensions");
  TORCH_CHECK(offset.dim() == 4, "deform_conv2d: offset must be a 4-D tensor, got ",
              offset.dim(), " dimensions");
  TORCH_CHECK(!p.use_mask || mask.dim() == 4, "deform_conv2d: mask must be a 4-D tensor, got ",
              mask.dim(), " dimensions");
  TORCH_CHECK(weight.dim() == 4, "deform_conv2d: weight must be a 4-D tensor, got ",
              weight.dim(), " dimensions");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
              "deform_conv2d: bias must be a 1-D tensor of out_channels = ", weight.size(0),
              " elements, got shape ", bias.sizes());
  for (const auto* t : {&weight, &offset, &mask, &bias}) {
    TORCH_CHECK(t->device() == input.device(),
                "deform_conv2d: expected input, weight, offset, mask and bias on one device, "
                "but input is on ", input.device(), " and another argument on ", t->device());
    TORCH_CHECK(t->scalar_type() == input.scalar_type(),
                "deform_conv2d: expected input, weight, offset, mask and bias of one dtype, "
                "but input is ", input.scalar_type(), " and another argument ", t->scalar_type());
  }
  Shape s;
  s.batch = input.size(0);
  s.channels = input.size(1);
  s.in_h = input.size(2);
  s.in_w = input.size(3);
  s.out_channels = weight.size(0);
  s.kernel_h = weight.size(2);
  s.kernel_w = weight.size(3);
  s.groups = p.groups;
  s.offset_groups = p.offset_groups;
  TORCH_CHECK(s.kernel_h > 0 && s.kernel_w > 0, "weight_h: ", s.kernel_h,
              " weight_w: ", s.kernel_w);
  TORCH_CHECK(p.stride_h > 0 && p.stride_w > 0, "stride_h: ", p.stride_h,
              " stride_w: ", p.stride_w);
  TORCH_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "pad_h: ", p.pad_h, " pad_w: ", p.pad_w);
  TORCH_CHECK(p.dil_h > 0 && p.dil_w > 0, "dilation_h: ", p.dil_h, " dilation_w: ", p.dil_w);
  TORCH_CHECK(p.groups > 0 && p.offset_groups > 0,
              "deform_conv2d: groups and offset_groups must be positive, got ", p.groups,
              " and ", p.offset_groups);
  TORCH_CHECK(weight.size(1) * p.groups == s.channels,
              "deform_conv2d: weight.shape[1] * groups must equal in_channels: ", weight.size(1),
              " * ", p.groups, " != ", s.channels);
  TORCH_CHECK(s.out_channels % p.groups == 0,
              "deform_conv2d: out_channels (weight.shape[0] = ", s.out_channels,
              ") must be divisible by groups = ", p.groups);
  TORCH_CHECK(offset.size(1) == p.offset_groups * 2 * s.taps(),
              "offset.shape[1] is not valid: got: ", offset.size(1),
              " expected: ", p.offset_groups * 2 * s.taps());
  TORCH_CHECK(!p.use_mask || mask.size(1) == p.offset_groups * s.taps(),
              "mask.shape[1] is not valid: got: ", mask.size(1),
              " expected: ", p.offset_groups * s.taps());
  TORCH_CHECK(s.channels % p.offset_groups == 0,
              "deform_conv2d: in_channels = ", s.channels,
              " must be divisible by offset_groups = ", p.offset_groups);
  TORCH_CHECK(offset.size(0) == s.batch, "invalid batch size of offset");
  s.out_h = output_extent(s.in_h, s.kernel_h, p.stride_h, p.pad_h, p.dil_h);
  s.out_w = output_extent(s.in_w, s.kernel_w, p.stride_w, p.pad_w, p.dil_w);
  TORCH_CHECK(offset.size(2) == s.out_h && offset.size(3) == s.out_w, "offset output dims: (",
              offset.size(2), ", ", offset.size(3), ") - computed output height and width: (",
              s.out_h, ", ", s.out_w, ")");
  TORCH_CHECK(mask.size(0) == s.batch, "invalid batch size of mask");
  TORCH_CHECK(!p.use_mask || (mask.size(2) == s.out_h && mask.size(3) == s.out_w),
              "mask output dims: (", mask.size(2), ", ", mask.size(3),
              ") - computed output height and width: (", s.out_h, ", ", s.out_w, ")");
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0, "Calculated output size too small - out_h: ", s.out_h,
              " out_w: ", s.out_w);
  // Positions inside one plane are int32 in the CPU sampling tables.
  TORCH_CHECK(s.in_plane() < (int64_t{1} << 31) && s.out_plane() < (int64_t{1} << 31),
              "deform_conv2d: input and output planes of 2^31 or more elements are not "
              "supported, got ", s.in_h, "x", s.in_w, " and ", s.out_h, "x", s.out_w);
  return s;
}

inline void check_grad(const at::Tensor& grad, const Shape& s) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == s.batch && grad.size(1) == s.out_channels &&
                  grad.size(2) == s.out_h && grad.size(3) == s.out_w,
              "deform_conv2d_backward: grad must have shape (", s.batch, ", ", s.out_channels,
              ", ", s.out_h, ", ", s.out_w, "), got ", grad.sizes());
}

}  // namespace pyseg::deform_conv
