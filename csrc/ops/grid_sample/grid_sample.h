// Host-side argument checks and geometry for grid_sample, shared by the CPU kernels, the CUDA
// launcher and the emulator, so every device accepts and rejects the same inputs with the
// same messages (worded like ATen's grid_sampler checks).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "ops/grid_sample/grid_sample_math.h"

namespace pyseg::grid_sample {

inline void check_inputs(const at::Tensor& input, const at::Tensor& grid, int64_t mode,
                         int64_t padding_mode) {
  TORCH_CHECK(input.device() == grid.device(),
              "grid_sampler(): expected input and grid to be on same device, but input is on ",
              input.device(), " and grid is on ", grid.device());
  TORCH_CHECK(input.layout() == at::kStrided && grid.layout() == at::kStrided,
              "grid_sampler(): expected input and grid to have torch.strided layout, but input "
              "has ", input.layout(), " and grid has ", grid.layout());
  TORCH_CHECK(input.dim() == grid.dim() && (input.dim() == 4 || input.dim() == 5),
              "grid_sampler(): expected 4D or 5D input and grid with same number of "
              "dimensions, but got input with sizes ", input.sizes(), " and grid with sizes ",
              grid.sizes());
  TORCH_CHECK(input.size(0) == grid.size(0),
              "grid_sampler(): expected grid and input to have same batch size, but got input "
              "with sizes ", input.sizes(), " and grid with sizes ", grid.sizes());
  TORCH_CHECK(grid.size(-1) == input.dim() - 2, "grid_sampler(): expected grid to have size ",
              input.dim() - 2, " in last dimension, but got grid with sizes ", grid.sizes());
  for (int64_t i = 2; i < input.dim(); ++i) {
    TORCH_CHECK(input.size(i) > 0,
                "grid_sampler(): expected input to have non-empty spatial dimensions, but "
                "input has sizes ", input.sizes(), " with dimension ", i, " being empty");
  }
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "grid_sampler(): expected input to have a floating point dtype, but got ",
              input.scalar_type());
  TORCH_CHECK(input.scalar_type() == grid.scalar_type(),
              "grid_sampler(): expected input and grid to have the same dtype, but input has ",
              input.scalar_type(), " and grid has ", grid.scalar_type());
  TORCH_CHECK_VALUE(mode >= 0 && mode <= 2,
                    "grid_sampler(): mode must be 0 (bilinear), 1 (nearest) or 2 (bicubic), "
                    "but got ", mode);
  TORCH_CHECK_VALUE(padding_mode >= 0 && padding_mode <= 2,
                    "grid_sampler(): padding_mode must be 0 (zeros), 1 (border) or 2 "
                    "(reflection), but got ", padding_mode);
  TORCH_CHECK(!(mode == 2 && input.dim() == 5),
              "grid_sampler(): bicubic interpolation only supports 4D input");
}

// The memory format the output (and grad_input) is produced in: the input's.
inline at::MemoryFormat output_format(const at::Tensor& input) {
  return input.suggest_memory_format();
}

inline std::vector<int64_t> output_sizes(const at::Tensor& input, const at::Tensor& grid) {
  std::vector<int64_t> sizes{input.size(0), input.size(1)};
  for (int64_t i = 1; i < grid.dim() - 1; ++i) sizes.push_back(grid.size(i));
  return sizes;
}

// Geometry of a (N, C, [D,] H, W) input with its own strides, a grid viewed as
// (N, points, D) and an output / grad_output viewed as (N, C, points), any strides.
template <int D>
Geometry<D> make_geometry(const at::Tensor& input, const at::Tensor& flat_grid,
                          const at::Tensor& flat_out, int64_t mode, int64_t padding_mode,
                          bool align_corners) {
  Geometry<D> g{};
  for (int a = 0; a < D; ++a) {
    g.in_size[a] = input.size(input.dim() - 1 - a);
    g.in_stride[a] = input.stride(input.dim() - 1 - a);
  }
  g.in_stride_n = input.stride(0);
  g.in_stride_c = input.stride(1);
  g.channels = input.size(1);
  g.points = flat_grid.size(1);
  g.out_stride_n = flat_out.stride(0);
  g.out_stride_c = flat_out.stride(1);
  g.out_stride_p = flat_out.stride(2);
  g.grid_stride_n = flat_grid.stride(0);
  g.grid_stride_p = flat_grid.stride(1);
  g.grid_stride_k = flat_grid.stride(2);
  g.mode = static_cast<Mode>(mode);
  g.padding = static_cast<Padding>(padding_mode);
  g.align_corners = align_corners;
  return g;
}

// A tensor contiguous in some memory format, viewed as (N, C, points).
inline at::Tensor flat_view(const at::Tensor& t) {
  int64_t points = 1;
  for (int64_t i = 2; i < t.dim(); ++i) points *= t.size(i);
  return t.view({t.size(0), t.size(1), points});
}

// The grid viewed as (N, points, D) (a copy only when no such view exists).
inline at::Tensor flat_grid(const at::Tensor& grid) {
  int64_t points = 1;
  for (int64_t i = 1; i < grid.dim() - 1; ++i) points *= grid.size(i);
  return grid.reshape({grid.size(0), points, grid.size(-1)});
}

}  // namespace pyseg::grid_sample
