// max_unpool2d host code for the CUDA kernels, written once against a Launcher (real CUDA
// in max_unpool_cuda.cu, the CPU emulator in max_unpool_emu.cpp).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/full.h>
#include <ATen/ops/empty.h>

#include "common/launch_utils.h"
#include "ops/max_unpool/max_unpool.h"
#include "ops/max_unpool/max_unpool_kernels.cuh"

namespace pyseg::max_unpool {

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& self_, const at::Tensor& indices_,
                   at::IntArrayRef output_size) {
  const Shape s = check_forward(self_, indices_, output_size);
  const auto format = memory_format(s);
  at::Tensor self = self_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  // (at::zeros has no memory-format argument and drops the one in the options)
  at::Tensor output = at::empty(s.output_sizes(), self.options().memory_format(format)).zero_();
  if (output.numel() == 0 || self.numel() == 0) return output;

  const Geometry g{s.channels, s.in_h * s.in_w, s.out_h * s.out_w};
  const int64_t numel = self.numel();
  at::Tensor owner = at::full({s.batch * s.channels * g.out_plane}, -1,
                              self.options().dtype(at::kInt));
  at::Tensor error = new_error_slot(self);
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  if (s.channels_last)
    launch(claim_kernel<true>, grid, block, 0, idx, owner.data_ptr<int32_t>(),
           error.data_ptr<int64_t>(), g, numel);
  else
    launch(claim_kernel<false>, grid, block, 0, idx, owner.data_ptr<int32_t>(),
           error.data_ptr<int64_t>(), g, numel);
  const int64_t bad = read_error_slot(error);
  if (bad >= 0) throw_invalid_index(indices, s, bad);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "max_unpool2d", [&] {
    if (s.channels_last)
      launch(write_kernel<scalar_t, true>, grid, block, 0, self.const_data_ptr<scalar_t>(), idx,
             owner.const_data_ptr<int32_t>(), output.data_ptr<scalar_t>(), g, numel);
    else
      launch(write_kernel<scalar_t, false>, grid, block, 0, self.const_data_ptr<scalar_t>(), idx,
             owner.const_data_ptr<int32_t>(), output.data_ptr<scalar_t>(), g, numel);
  });
  return output;
}

template <class Launcher>
at::Tensor backward(const Launcher& launch, const at::Tensor& grad_output_,
                    const at::Tensor& indices_) {
  const Shape s = check_backward(grad_output_, indices_);
  const auto format = memory_format(s);
  at::Tensor grad_output = grad_output_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  at::Tensor grad_input = at::empty(indices.sizes(), grad_output.options().memory_format(format));
  const int64_t numel = indices.numel();
  if (numel == 0) return grad_input;

  const Geometry g{s.channels, s.in_h * s.in_w, s.out_h * s.out_w};
  at::Tensor error = new_error_slot(indices);
  const dim3 grid = grid_for(launch, numel), block(kThreadsPerBlock);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "max_unpool2d_backward", [&] {
    if (s.channels_last)
      launch(gather_kernel<scalar_t, true>, grid, block, 0, grad_output.const_data_ptr<scalar_t>(),
             indices.const_data_ptr<int64_t>(), grad_input.data_ptr<scalar_t>(),
             error.data_ptr<int64_t>(), g, numel);
    else
      launch(gather_kernel<scalar_t, false>, grid, block, 0, grad_output.const_data_ptr<scalar_t>(),
             indices.const_data_ptr<int64_t>(), grad_input.data_ptr<scalar_t>(),
             error.data_ptr<int64_t>(), g, numel);
  });
  const int64_t bad = read_error_slot(error);
  if (bad >= 0) throw_invalid_index(indices, s, bad);
  return grad_input;
}

}  // namespace pyseg::max_unpool
