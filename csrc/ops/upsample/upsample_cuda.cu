// upsample2d / bed_of_nails on CUDA: upsample_launch.h with the real launcher.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/upsample/upsample_launch.h"

namespace pyseg::upsample {
namespace {

at::Tensor upsample2d_cuda(const at::Tensor& input, at::IntArrayRef output_size,
                           c10::string_view mode, bool align_corners,
                           std::optional<double> scale_h, std::optional<double> scale_w) {
  c10::cuda::CUDAGuard guard(input.device());
  return forward(CudaLauncher{}, input, output_size, mode, align_corners, scale_h, scale_w);
}

at::Tensor upsample2d_backward_cuda(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                    c10::string_view mode, bool align_corners,
                                    std::optional<double> scale_h, std::optional<double> scale_w) {
  c10::cuda::CUDAGuard guard(grad_output.device());
  return backward(CudaLauncher{}, grad_output, input_size, mode, align_corners, scale_h, scale_w);
}

at::Tensor bed_of_nails_cuda(const at::Tensor& input, at::IntArrayRef scale_factor) {
  c10::cuda::CUDAGuard guard(input.device());
  return nails_forward(CudaLauncher{}, input, scale_factor);
}

at::Tensor bed_of_nails_backward_cuda(const at::Tensor& grad_output, at::IntArrayRef scale_factor) {
  c10::cuda::CUDAGuard guard(grad_output.device());
  return nails_backward(CudaLauncher{}, grad_output, scale_factor);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("upsample2d", &upsample2d_cuda);
  m.impl("upsample2d_backward", &upsample2d_backward_cuda);
  m.impl("bed_of_nails", &bed_of_nails_cuda);
  m.impl("bed_of_nails_backward", &bed_of_nails_backward_cuda);
}

}  // namespace pyseg::upsample
