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
  // deform_conv2d: torchvision's schema (groups from the weight, offset groups from offset).
  m.def("deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor", tags);
  m.def("_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
        "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
        "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
        "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)", tags);
}

}  // namespace pyseg
