// deform_conv2d's CUDA kernels on CUDA: deform_conv_launch.h with the real launcher.
#include <torch/library.h>

#include <c10/cuda/CUDAGuard.h>

#include "common/cuda_launcher.cuh"
#include "ops/deform_conv/deform_conv_launch.h"

namespace pyseg::deform_conv {
namespace {

at::Tensor deform_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& bias, int64_t stride_h, int64_t stride_w,
                             int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                             int64_t groups, int64_t offset_groups, bool use_mask) {
  c10::cuda::CUDAGuard guard(input.device());
  return forward(CudaLauncher{}, input, weight, offset, mask, bias,
                 Params{stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups,
                        use_mask});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t offset_groups, bool use_mask) {
  c10::cuda::CUDAGuard guard(input.device());
  return backward(CudaLauncher{}, grad, input, weight, offset, mask, bias,
                  Params{stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups,
                         use_mask});
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("deform_conv2d", &deform_conv2d_cuda);
  m.impl("_deform_conv2d_backward", &deform_conv2d_backward_cuda);
}

}  // namespace pyseg::deform_conv
