// Host-side argument checks and shapes for max_unpool2d, shared by the CPU kernel, the CUDA
// launcher and the emulator so that every device accepts and rejects the same inputs with
// the same messages (worded like torch's, so code that matches on them keeps working).
#pragma once

#include <cstdint>
#include <sstream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace pyseg::max_unpool {

struct Shape {
  int64_t batch = 1, channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  bool batched = false;
  bool channels_last = false;  // memory format of the (contiguous-ified) input and output

  std::vector<int64_t> output_sizes() const {
    if (batched) return {batch, channels, out_h, out_w};
    return {channels, out_h, out_w};
  }
};

inline Shape check_forward(const at::Tensor& self, const at::Tensor& indices,
                           at::IntArrayRef output_size) {
  TORCH_CHECK(indices.scalar_type() == at::kLong,
              "elements in indices should be type int64 but got: ", indices.scalar_type());
  TORCH_CHECK(output_size.size() == 2,
              "There should be exactly two elements (height, width) in output_size, but got ",
              output_size.size(), " elements.");
  TORCH_CHECK(self.dim() == 3 || self.dim() == 4,
              "Input to max_unpooling2d should be a 3d or 4d Tensor, but got a tensor with ",
              self.dim(), " dimensions.");
  TORCH_CHECK(self.sizes() == indices.sizes(),
              "Expected shape of indices to be same as that of the input tensor (", self.sizes(),
              ") but got indices tensor with shape: ", indices.sizes());
  TORCH_CHECK(self.device() == indices.device(),
              "max_unpool2d: expected input and indices on the same device, but input is on ",
              self.device(), " and indices on ", indices.device());
  for (int64_t d = 1; d < self.dim(); ++d) {
    TORCH_CHECK(self.size(d) > 0,
                "max_unpooling2d_forward(): Expected input to have non-zero size for non-batch "
                "dimensions, but got ", self.sizes(), " with dimension ", d, " being empty.");
  }
  TORCH_CHECK(output_size[0] >= 0 && output_size[1] >= 0,
              "max_unpool2d: output_size must be non-negative, but got ", output_size);
  // Output elements (and out_h * out_w, the index range) in int64; the Python fake kernel
  // raises the same ValueError (pyseg.ops._library.checked_shape).
  const int64_t planes = self.dim() == 4 ? self.size(0) * self.size(1) : self.size(0);
  int64_t plane = 0, numel = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(output_size[0], output_size[1], &plane) &&
                        !c10::mul_overflows(plane, planes, &numel),
                    "max_unpool2d: the output shape does not fit in int64 (output_size too "
                    "large, got ", output_size, ")");
  TORCH_CHECK(self.size(-1) * self.size(-2) < (int64_t{1} << 31),
              "max_unpool2d: input planes of 2^31 or more elements are not supported, got ",
              self.size(-2), "x", self.size(-1));
  Shape s;
  s.batched = self.dim() == 4;
  s.batch = s.batched ? self.size(0) : 1;
  s.channels = self.size(-3);
  s.in_h = self.size(-2);
  s.in_w = self.size(-1);
  s.out_h = output_size[0];
  s.out_w = output_size[1];
  s.channels_last = s.batched && self.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return s;
}

inline Shape check_backward(const at::Tensor& grad_output, const at::Tensor& indices) {
  TORCH_CHECK(indices.scalar_type() == at::kLong,
              "elements in indices should be type int64 but got: ", indices.scalar_type());
  TORCH_CHECK(grad_output.dim() == 3 || grad_output.dim() == 4,
              "max_unpool2d_backward: grad_output should be a 3d or 4d Tensor, but got ",
              grad_output.dim(), " dimensions");
  TORCH_CHECK(indices.dim() == grad_output.dim() &&
                  indices.sizes().slice(0, indices.dim() - 2) ==
                      grad_output.sizes().slice(0, grad_output.dim() - 2),
              "max_unpool2d_backward: indices ", indices.sizes(),
              " and grad_output ", grad_output.sizes(), " must agree in all but the last two dimensions");
  TORCH_CHECK(grad_output.device() == indices.device(),
              "max_unpool2d_backward: expected grad_output and indices on the same device");
  Shape s;
  s.batched = indices.dim() == 4;
  s.batch = s.batched ? indices.size(0) : 1;
  s.channels = indices.size(-3);
  s.in_h = indices.size(-2);
  s.in_w = indices.size(-1);
  s.out_h = grad_output.size(-2);
  s.out_w = grad_output.size(-1);
  s.channels_last = s.batched && indices.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return s;
}

inline at::MemoryFormat memory_format(const Shape& s) {
  return s.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Raises torch's error for the invalid index found at memory offset `offset` of `indices`
// (already contiguous in the layout described by `s`).
[[noreturn]] inline void throw_invalid_index(const at::Tensor& indices, const Shape& s,
                                             int64_t offset) {
  const int64_t value =
      indices.as_strided({1}, {1}, indices.storage_offset() + offset).item<int64_t>();
  int64_t n, c, h, w;
  if (s.channels_last) {
    c = offset % s.channels;
    w = (offset / s.channels) % s.in_w;
    h = (offset / (s.channels * s.in_w)) % s.in_h;
    n = offset / (s.channels * s.in_w * s.in_h);
  } else {
    w = offset % s.in_w;
    h = (offset / s.in_w) % s.in_h;
    c = (offset / (s.in_w * s.in_h)) % s.channels;
    n = offset / (s.in_w * s.in_h * s.channels);
  }
  std::ostringstream where;
  where << "[";
  if (s.batched) where << n << ", ";
  where << c << ", " << h << ", " << w << "]";
  TORCH_CHECK(false, "Found an invalid max index: ", value, " (output volumes are of size ",
              s.out_h, "x", s.out_w, "); it is at position ", where.str(),
              " of indices, and indices must lie in [0, ", s.out_h * s.out_w, ")");
}

}  // namespace pyseg::max_unpool
