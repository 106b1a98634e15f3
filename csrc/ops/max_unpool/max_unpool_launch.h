// max_unpool2d / max_unpool3d host code for the CUDA kernels, written once against a Launcher (real CUDA
// in max_unpool_cuda.cu, the CPU emulator in max_unpool_emu.cpp).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/full.h>
#include <ATen/ops/empty.h>

#include "common/launch_utils.h"
#include "ops/max_unpool/max_unpool.h"
#include "ops/max_unpool/max_unpool_kernels.cuh"

namespace pyseg::max_unpool {

// Calls fn.template operator()<index_t>() with int32_t when every offset below `largest`
// (and a grid-stride step past it) fits, int64_t otherwise.
template <class Launcher, class Fn>
void with_index_type(const Launcher& launch, dim3 grid, int64_t largest, const Fn& fn) {
  if (fits_int32(launch, grid, dim3(kThreadsPerBlock), largest)) fn.template operator()<int32_t>();
  else fn.template operator()<int64_t>();
}

template <typename index_t>
Geometry<index_t> geometry(const Shape& s) {
  return {static_cast<index_t>(s.channels), static_cast<index_t>(s.in_plane),
          static_cast<index_t>(s.out_plane)};
}

template <class Launcher>
at::Tensor forward_nd(const Launcher& launch, const at::Tensor& self_, const at::Tensor& indices_,
                      at::IntArrayRef output_size, int64_t spatial) {
  const Shape s = check_forward(self_, indices_, output_size, spatial);
  const auto format = memory_format(s);
  at::Tensor self = self_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  // (at::zeros has no memory-format argument and drops the one in the options)
  at::Tensor output = at::empty(s.output_sizes(), self.options().memory_format(format)).zero_();
  if (output.numel() == 0 || self.numel() == 0) return output;

  const int64_t numel = self.numel();
  at::Tensor owner = at::full({s.batch * s.channels * s.out_plane}, -1,
                              self.options().dtype(at::kInt));
  at::Tensor error = new_error_slot(self);
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  // Bad indices are skipped by both kernels and checked once, after the last launch: the
  // stream never waits between kernels (see read_error_slot).
  with_index_type(launch, grid, std::max(numel, output.numel()), [&]<typename index_t>() {
    const Geometry<index_t> g = geometry<index_t>(s);
    const auto n = static_cast<index_t>(numel);
    if (s.channels_last)
      launch(claim_kernel<true, index_t>, grid, block, 0, idx, owner.data_ptr<int32_t>(),
             error.data_ptr<int64_t>(), g, n);
    else
      launch(claim_kernel<false, index_t>, grid, block, 0, idx, owner.data_ptr<int32_t>(),
             error.data_ptr<int64_t>(), g, n);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "max_unpool2d", [&] {
      if (s.channels_last)
        launch(write_kernel<scalar_t, true, index_t>, grid, block, 0,
               self.const_data_ptr<scalar_t>(), idx, owner.const_data_ptr<int32_t>(),
               output.data_ptr<scalar_t>(), g, n);
      else
        launch(write_kernel<scalar_t, false, index_t>, grid, block, 0,
               self.const_data_ptr<scalar_t>(), idx, owner.const_data_ptr<int32_t>(),
               output.data_ptr<scalar_t>(), g, n);
    });
  });
  const int64_t bad = final_error_check(launch, error);
  if (bad >= 0) throw_invalid_index(indices, s, bad);
  return output;
}

template <class Launcher>
at::Tensor backward_nd(const Launcher& launch, const at::Tensor& grad_output_,
                       const at::Tensor& indices_, int64_t spatial) {
  const Shape s = check_backward(grad_output_, indices_, spatial);
  const auto format = memory_format(s);
  at::Tensor grad_output = grad_output_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  at::Tensor grad_input = at::empty(indices.sizes(), grad_output.options().memory_format(format));
  const int64_t numel = indices.numel();
  if (numel == 0) return grad_input;

  at::Tensor error = new_error_slot(indices);
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  with_index_type(launch, grid, std::max(numel, grad_output.numel()), [&]<typename index_t>() {
    const Geometry<index_t> g = geometry<index_t>(s);
    const auto n = static_cast<index_t>(numel);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                    "max_unpool2d_backward", [&] {
      if (s.channels_last)
        launch(gather_kernel<scalar_t, true, index_t>, grid, block, 0,
               grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
               grad_input.data_ptr<scalar_t>(), error.data_ptr<int64_t>(), g, n);
      else
        launch(gather_kernel<scalar_t, false, index_t>, grid, block, 0,
               grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
               grad_input.data_ptr<scalar_t>(), error.data_ptr<int64_t>(), g, n);
    });
  });
  const int64_t bad = final_error_check(launch, error);
  if (bad >= 0) throw_invalid_index(indices, s, bad);
  return grad_input;
}

// The registered signatures: one per dimensionality.
template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& self, const at::Tensor& indices,
                   at::IntArrayRef output_size) {
  return forward_nd(launch, self, indices, output_size, 2);
}

template <class Launcher>
at::Tensor backward(const Launcher& launch, const at::Tensor& grad_output,
                    const at::Tensor& indices) {
  return backward_nd(launch, grad_output, indices, 2);
}

template <class Launcher>
at::Tensor forward3d(const Launcher& launch, const at::Tensor& self, const at::Tensor& indices,
                     at::IntArrayRef output_size) {
  return forward_nd(launch, self, indices, output_size, 3);
}

template <class Launcher>
at::Tensor backward3d(const Launcher& launch, const at::Tensor& grad_output,
                      const at::Tensor& indices) {
  return backward_nd(launch, grad_output, indices, 3);
}

}  // namespace pyseg::max_unpool
