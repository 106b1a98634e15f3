// Every operator schema, in one place. csrc/pyseg.cpp defines them in the `pyseg`
// namespace (CPU and CUDA kernels) and csrc/emu/module.cpp in `pyseg_emu` (the CUDA kernels
// run by the CPU emulator), so the two can never drift apart. Python (pyseg/ops) computes
// shapes and defaults and registers autograd and fake kernels for both namespaces.
#pragma once

#include <torch/library.h>

namespace pyseg {

inline void define_schemas(torch::Library& m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  // max_unpool2d: scatter `self` into planes of `output_size` at `indices` (int64).
  m.def("max_unpool2d(Tensor self, Tensor indices, SymInt[2] output_size) -> Tensor", tags);
  m.def("max_unpool2d_backward(Tensor grad_output, Tensor indices) -> Tensor", tags);
  // conv_transpose2d: torch.nn.functional.conv_transpose2d; weight is (C_in, C_out/groups, kH, kW).
  // The backward returns (grad_input, grad_weight, grad_bias); an entry whose output_mask is
  // false comes back as an empty (0-element) tensor.
  m.def("conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, SymInt[2] stride, "
        "SymInt[2] padding, SymInt[2] output_padding, SymInt groups, SymInt[2] dilation) -> Tensor",
        tags);
  m.def("conv_transpose2d_backward(Tensor grad_output, Tensor input, Tensor weight, "
        "SymInt[2] stride, SymInt[2] padding, SymInt[2] output_padding, SymInt groups, "
        "SymInt[2] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
        tags);
  // upsample2d: nearest / bilinear / bicubic resampling of (N, C, H, W) to output_size; the
  // scales are torch's scale_factors (None: derived from the sizes), see pyseg/ops/upsample.py.
  m.def("upsample2d(Tensor input, SymInt[2] output_size, str mode, bool align_corners, "
        "float? scale_h, float? scale_w) -> Tensor", tags);
  m.def("upsample2d_backward(Tensor grad_output, SymInt[4] input_size, str mode, "
        "bool align_corners, float? scale_h, float? scale_w) -> Tensor", tags);
  // bed_of_nails: each value at the top-left of its scale_factor cell, zeros elsewhere.
  m.def("bed_of_nails(Tensor input, int[2] scale_factor) -> Tensor", tags);
  m.def("bed_of_nails_backward(Tensor grad_output, int[2] scale_factor) -> Tensor", tags);
  // deform_conv2d: torchvision's schema (groups from the weight, offset groups from offset).
  m.def("deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor", tags);
  m.def("_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
        "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
        "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
        "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)", tags);
  // upsample: every torch.nn.functional.interpolate mode on (N, C, W), (N, C, H, W) and
  // (N, C, D, H, W); mode is torch's name, scales one per spatial dimension or None (derived
  // from the sizes), see pyseg/ops/upsample.py.
  m.def("upsample(Tensor input, SymInt[] output_size, str mode, bool align_corners, "
        "bool antialias, float[]? scales) -> Tensor", tags);
  m.def("upsample_backward(Tensor grad_output, SymInt[] input_size, str mode, "
        "bool align_corners, bool antialias, float[]? scales) -> Tensor", tags);
  // max_unpool3d and conv_transpose3d: the 3-D forms of max_unpool2d and conv_transpose2d,
  // same conventions (conv_transpose3d's weight is (C_in, C_out/groups, kD, kH, kW)). The 1-D
  // ops are the 2-D ones with a unit axis (pyseg/ops).
  m.def("max_unpool3d(Tensor self, Tensor indices, SymInt[3] output_size) -> Tensor", tags);
  m.def("max_unpool3d_backward(Tensor grad_output, Tensor indices) -> Tensor", tags);
  m.def("conv_transpose3d(Tensor input, Tensor weight, Tensor? bias, SymInt[3] stride, "
        "SymInt[3] padding, SymInt[3] output_padding, SymInt groups, SymInt[3] dilation) -> Tensor",
        tags);
  m.def("conv_transpose3d_backward(Tensor grad_output, Tensor input, Tensor weight, "
        "SymInt[3] stride, SymInt[3] padding, SymInt[3] output_padding, SymInt groups, "
        "SymInt[3] dilation, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
        tags);
  // grid_sample: torch.grid_sampler on 4-D / 5-D input with torch's integer codes (mode 0
  // bilinear, 1 nearest, 2 bicubic; padding_mode 0 zeros, 1 border, 2 reflection). The
  // backward returns (grad_input, grad_grid); an entry whose output_mask is false comes back
  // as an empty (0-element) tensor.
  m.def("grid_sample(Tensor input, Tensor grid, int mode, int padding_mode, "
        "bool align_corners) -> Tensor", tags);
  m.def("grid_sample_backward(Tensor grad_output, Tensor input, Tensor grid, int mode, "
        "int padding_mode, bool align_corners, bool[2] output_mask) -> (Tensor, Tensor)", tags);
}

}  // namespace pyseg
