// max_unpool2d on CUDA: max_unpool_launch.h with the real launcher.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/max_unpool/max_unpool_launch.h"

namespace pyseg::max_unpool {
namespace {

at::Tensor max_unpool2d_cuda(const at::Tensor& self, const at::Tensor& indices,
                             at::IntArrayRef output_size) {
  c10::cuda::CUDAGuard guard(self.device());
  return forward(CudaLauncher{}, self, indices, output_size);
}

at::Tensor max_unpool2d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices) {
  c10::cuda::CUDAGuard guard(grad_output.device());
  return backward(CudaLauncher{}, grad_output, indices);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("max_unpool2d", &max_unpool2d_cuda);
  m.impl("max_unpool2d_backward", &max_unpool2d_backward_cuda);
}

}  // namespace pyseg::max_unpool
