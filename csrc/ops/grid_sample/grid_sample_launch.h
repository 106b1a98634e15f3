// grid_sample host code for the CUDA kernels, written once against a Launcher (real CUDA in
// grid_sample_cuda.cu, the CPU emulator in grid_sample_emu.cpp).
#pragma once

#include <array>
#include <tuple>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "common/launch_utils.h"
#include "ops/grid_sample/grid_sample.h"
#include "ops/grid_sample/grid_sample_kernels.cuh"

namespace pyseg::grid_sample {

template <int D, class Launcher>
at::Tensor forward_dim(const Launcher& launch, const at::Tensor& input, const at::Tensor& grid,
                       int64_t mode, int64_t padding_mode, bool align_corners) {
  at::Tensor output =
      at::empty(output_sizes(input, grid), input.options().memory_format(output_format(input)));
  if (output.numel() == 0) return output;
  at::Tensor fgrid = flat_grid(grid), fout = flat_view(output);
  const Geometry<D> g = make_geometry<D>(input, fgrid, fout, mode, padding_mode, align_corners);
  const int64_t total = input.size(0) * g.points;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "grid_sample", [&] {
    using T = at::opmath_type<scalar_t>;
    launch(forward_kernel<D, scalar_t, T>, grid_for(launch, total), dim3(kThreadsPerBlock), 0,
           input.const_data_ptr<scalar_t>(), fgrid.const_data_ptr<scalar_t>(),
           fout.data_ptr<scalar_t>(), g, total);
  });
  return output;
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input, const at::Tensor& grid,
                   int64_t mode, int64_t padding_mode, bool align_corners) {
  check_inputs(input, grid, mode, padding_mode);
  return input.dim() == 4 ? forward_dim<2>(launch, input, grid, mode, padding_mode, align_corners)
                          : forward_dim<3>(launch, input, grid, mode, padding_mode, align_corners);
}

template <int D, class Launcher>
std::tuple<at::Tensor, at::Tensor> backward_dim(const Launcher& launch,
                                                const at::Tensor& grad_output,
                                                const at::Tensor& input_, const at::Tensor& grid,
                                                int64_t mode, int64_t padding_mode,
                                                bool align_corners, bool need_input,
                                                bool need_grid) {
  const auto format = output_format(input_);
  const at::Tensor input = input_.contiguous();  // planes addressed by contiguous offset
  at::Tensor grad_input = need_input
                              ? at::empty(input_.sizes(), input_.options().memory_format(format))
                              : at::empty({0}, input_.options());
  at::Tensor fgrid = flat_grid(grid).contiguous();
  at::Tensor grad_grid = need_grid ? at::empty(grid.sizes(), grid.options())
                                   : at::empty({0}, grid.options());
  const int64_t N = input.size(0), C = input.size(1);
  const int64_t P = fgrid.size(1);
  if (N * P == 0 || C == 0) {
    if (need_input) grad_input.zero_();
    if (need_grid) grad_grid.zero_();
    return {grad_input, grad_grid};
  }
  const int64_t plane = input.numel() / (N * C);
  at::Tensor fgo = flat_view(grad_output.contiguous(format));
  const Geometry<D> g = make_geometry<D>(input, fgrid, fgo, mode, padding_mode, align_corners);
  const auto acc_type = at::toOpMathType(input.scalar_type());
  // max |grad_output| on the device (no host synchronization): it sets the fixed-point scale.
  at::Tensor amax = need_input ? fgo.abs().amax().to(acc_type) : at::empty({1}, input.options().dtype(acc_type));
  at::Tensor accumulator = need_input ? at::zeros({N, C, plane}, input.options().dtype(at::kLong))
                                      : at::empty({1}, input.options().dtype(at::kLong));
  const int64_t total = N * P;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "grid_sample_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    launch(backward_kernel<D, scalar_t, T>, grid_for(launch, total), dim3(kThreadsPerBlock), 0,
           fgo.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
           fgrid.const_data_ptr<scalar_t>(),
           reinterpret_cast<unsigned long long*>(accumulator.data_ptr<int64_t>()),
           need_grid ? grad_grid.data_ptr<scalar_t>() : nullptr, amax.const_data_ptr<T>(), g,
           plane, total, need_input, need_grid);
    if (need_input) {
      at::Tensor fgi = flat_view(grad_input);
      const int64_t count = N * C * plane;
      const dim3 blocks = grid_for(launch, count);
      // grad_input is dense (NC(D)HW or channels_last): every offset is below count.
      const auto finalize = [&]<typename index_t>() {
        launch(finalize_kernel<D, scalar_t, T, index_t>, blocks, dim3(kThreadsPerBlock), 0,
               reinterpret_cast<const long long*>(accumulator.const_data_ptr<int64_t>()),
               fgi.data_ptr<scalar_t>(), amax.const_data_ptr<T>(), g,
               static_cast<index_t>(C), static_cast<index_t>(plane),
               static_cast<index_t>(fgi.stride(0)), static_cast<index_t>(fgi.stride(1)),
               static_cast<index_t>(fgi.stride(2)), static_cast<index_t>(count));
      };
      if (fits_int32(launch, blocks, dim3(kThreadsPerBlock), count))
        finalize.template operator()<int32_t>();
      else
        finalize.template operator()<int64_t>();
    }
  });
  return {grad_input, grad_grid};
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor> backward(const Launcher& launch, const at::Tensor& grad_output,
                                            const at::Tensor& input, const at::Tensor& grid,
                                            int64_t mode, int64_t padding_mode,
                                            bool align_corners, std::array<bool, 2> output_mask) {
  check_inputs(input, grid, mode, padding_mode);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(output_sizes(input, grid)),
              "grid_sampler_backward(): expected grad_output of sizes ", output_sizes(input, grid),
              ", but got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "grid_sampler_backward(): expected grad_output of dtype ", input.scalar_type(),
              ", but got ", grad_output.scalar_type());
  return input.dim() == 4
             ? backward_dim<2>(launch, grad_output, input, grid, mode, padding_mode,
                               align_corners, output_mask[0], output_mask[1])
             : backward_dim<3>(launch, grad_output, input, grid, mode, padding_mode,
                               align_corners, output_mask[0], output_mask[1]);
}

}  // namespace pyseg::grid_sample
