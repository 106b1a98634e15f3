// Host-side argument checks and shapes for max_unpool2d and max_unpool3d, shared by the CPU
// kernel, the CUDA launcher and the emulator so that every device accepts and rejects the
// same inputs with the same messages (worded like torch's, so code that matches on them
// keeps working). The kernels see only (batch, channels, input plane, output plane) and the
// memory format: a 3-D volume is a plane of D*H*W cells, so one set of kernels serves both.
#pragma once

#include <cstdint>
#include <sstream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace pyseg::max_unpool {

struct Shape {
  int64_t batch = 1, channels = 0;
  std::vector<int64_t> in_size, out_size;  // spatial sizes: (H, W) or (D, H, W)
  int64_t in_plane = 0, out_plane = 0;     // their products
  bool batched = false;
  bool channels_last = false;  // memory format of the (contiguous-ified) input and output

  std::vector<int64_t> output_sizes() const {
    std::vector<int64_t> sizes;
    if (batched) sizes.push_back(batch);
    sizes.push_back(channels);
    sizes.insert(sizes.end(), out_size.begin(), out_size.end());
    return sizes;
  }
};

// The names torch uses in its messages for 2-D and 3-D unpooling.
struct Names {
  const char* op;        // "max_unpool2d"
  const char* torch_op;  // "max_unpooling2d"
  const char* dims;      // "3d or 4d"
  const char* elements;  // "exactly two elements (height, width)"
};

inline Names names(int64_t spatial) {
  if (spatial == 3)
    return {"max_unpool3d", "max_unpooling3d", "4d or 5d",
            "exactly three elements (depth, height, width)"};
  return {"max_unpool2d", "max_unpooling2d", "3d or 4d", "exactly two elements (height, width)"};
}

inline bool suggests_channels_last(const at::Tensor& t, int64_t spatial) {
  const auto format = t.suggest_memory_format();
  return spatial == 3 ? format == at::MemoryFormat::ChannelsLast3d
                      : format == at::MemoryFormat::ChannelsLast;
}

inline Shape check_forward(const at::Tensor& self, const at::Tensor& indices,
                           at::IntArrayRef output_size, int64_t spatial = 2) {
  const Names n = names(spatial);
  TORCH_CHECK(indices.scalar_type() == at::kLong,
              "elements in indices should be type int64 but got: ", indices.scalar_type());
  TORCH_CHECK(static_cast<int64_t>(output_size.size()) == spatial, "There should be ", n.elements,
              " in output_size, but got ", output_size.size(), " elements.");
  TORCH_CHECK(self.dim() == spatial + 1 || self.dim() == spatial + 2, "Input to ", n.torch_op,
              " should be a ", n.dims, " Tensor, but got a tensor with ", self.dim(),
              " dimensions.");
  TORCH_CHECK(self.sizes() == indices.sizes(),
              "Expected shape of indices to be same as that of the input tensor (", self.sizes(),
              ") but got indices tensor with shape: ", indices.sizes());
  TORCH_CHECK(self.device() == indices.device(), n.op,
              ": expected input and indices on the same device, but input is on ",
              self.device(), " and indices on ", indices.device());
  for (int64_t d = 1; d < self.dim(); ++d) {
    TORCH_CHECK(self.size(d) > 0, n.torch_op,
                "_forward(): Expected input to have non-zero size for non-batch "
                "dimensions, but got ", self.sizes(), " with dimension ", d, " being empty.");
  }
  for (const int64_t size : output_size)
    TORCH_CHECK(size >= 0, n.op, ": output_size must be non-negative, but got ", output_size);
  // Output elements (and the output plane, the index range) in int64; the Python fake kernel
  // raises the same ValueError (pyseg.ops._library.checked_shape).
  const bool batched = self.dim() == spatial + 2;
  int64_t numel = batched ? self.size(0) * self.size(1) : self.size(0);
  int64_t plane = 1, in_plane = 1;
  for (int64_t d = 0; d < spatial; ++d) {
    TORCH_CHECK_VALUE(!c10::mul_overflows(plane, output_size[d], &plane) &&
                          !c10::mul_overflows(numel, output_size[d], &numel),
                      n.op, ": the output shape does not fit in int64 (output_size too large, got ",
                      output_size, ")");
    in_plane *= self.size(self.dim() - spatial + d);
  }
  TORCH_CHECK(in_plane < (int64_t{1} << 31), n.op,
              ": input planes of 2^31 or more elements are not supported, got ",
              self.sizes().slice(self.dim() - spatial));
  Shape s;
  s.batched = batched;
  s.batch = batched ? self.size(0) : 1;
  s.channels = self.size(-spatial - 1);
  s.in_size = self.sizes().slice(self.dim() - spatial).vec();
  s.out_size = output_size.vec();
  s.in_plane = in_plane;
  s.out_plane = plane;
  s.channels_last = batched && suggests_channels_last(self, spatial);
  return s;
}

inline Shape check_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                            int64_t spatial = 2) {
  const Names n = names(spatial);
  TORCH_CHECK(indices.scalar_type() == at::kLong,
              "elements in indices should be type int64 but got: ", indices.scalar_type());
  TORCH_CHECK(grad_output.dim() == spatial + 1 || grad_output.dim() == spatial + 2, n.op,
              "_backward: grad_output should be a ", n.dims, " Tensor, but got ",
              grad_output.dim(), " dimensions");
  TORCH_CHECK(indices.dim() == grad_output.dim() &&
                  indices.sizes().slice(0, indices.dim() - spatial) ==
                      grad_output.sizes().slice(0, grad_output.dim() - spatial),
              n.op, "_backward: indices ", indices.sizes(), " and grad_output ",
              grad_output.sizes(), " must agree in all but the last ", spatial, " dimensions");
  TORCH_CHECK(grad_output.device() == indices.device(), n.op,
              "_backward: expected grad_output and indices on the same device");
  Shape s;
  s.batched = indices.dim() == spatial + 2;
  s.batch = s.batched ? indices.size(0) : 1;
  s.channels = indices.size(-spatial - 1);
  s.in_size = indices.sizes().slice(indices.dim() - spatial).vec();
  s.out_size = grad_output.sizes().slice(grad_output.dim() - spatial).vec();
  s.in_plane = 1;
  s.out_plane = 1;
  for (int64_t d = 0; d < spatial; ++d) {
    s.in_plane *= s.in_size[d];
    s.out_plane *= s.out_size[d];
  }
  s.channels_last = s.batched && suggests_channels_last(indices, spatial);
  return s;
}

inline at::MemoryFormat memory_format(const Shape& s) {
  if (!s.channels_last) return at::MemoryFormat::Contiguous;
  return s.in_size.size() == 3 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
}

// Raises torch's error for the invalid index found at memory offset `offset` of `indices`
// (already contiguous in the layout described by `s`).
[[noreturn]] inline void throw_invalid_index(const at::Tensor& indices, const Shape& s,
                                             int64_t offset) {
  const int64_t value =
      indices.as_strided({1}, {1}, indices.storage_offset() + offset).item<int64_t>();
  int64_t c, pos;
  if (s.channels_last) {
    c = offset % s.channels;
    pos = (offset / s.channels) % s.in_plane;
  } else {
    pos = offset % s.in_plane;
    c = (offset / s.in_plane) % s.channels;
  }
  const int64_t n = offset / (s.in_plane * s.channels);
  std::vector<int64_t> coords(s.in_size.size());
  for (int64_t d = static_cast<int64_t>(s.in_size.size()) - 1; d >= 0; --d) {
    coords[d] = pos % s.in_size[d];
    pos /= s.in_size[d];
  }
  std::ostringstream where, volume;
  where << "[";
  if (s.batched) where << n << ", ";
  where << c;
  for (const int64_t x : coords) where << ", " << x;
  where << "]";
  for (size_t d = 0; d < s.out_size.size(); ++d) volume << (d ? "x" : "") << s.out_size[d];
  TORCH_CHECK(false, "Found an invalid max index: ", value, " (output volumes are of size ",
              volume.str(), "); it is at position ", where.str(),
              " of indices, and indices must lie in [0, ", s.out_plane, ")");
}

}  // namespace pyseg::max_unpool
