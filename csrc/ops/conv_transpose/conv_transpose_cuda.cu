// conv_transpose2d on CUDA: conv_transpose_launch.h with the real launcher.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/conv_transpose/conv_transpose_launch.h"

namespace pyseg::conv_transpose {
namespace {

at::Tensor conv_transpose2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding,
                                 int64_t groups, at::IntArrayRef dilation) {
  c10::cuda::CUDAGuard guard(input.device());
  return forward(CudaLauncher{}, input, weight, bias, stride, padding, output_padding, groups,
                 dilation);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  c10::cuda::CUDAGuard guard(input.device());
  return backward(CudaLauncher{}, grad_output, input, weight, stride, padding, output_padding,
                  groups, dilation, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cuda);
  m.impl("conv_transpose2d_backward", &conv_transpose2d_backward_cuda);
}

}  // namespace pyseg::conv_transpose
