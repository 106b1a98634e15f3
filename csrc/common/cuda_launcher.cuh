// The launcher that <op>_launch.h is instantiated with in <op>_cuda.cu: a real <<<>>> launch
// on the current stream, checked right away.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

namespace pyseg {

struct CudaLauncher {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  int64_t max_blocks() const { return (int64_t{1} << 31) - 1; }

  template <class... KernelArgs, class... Args>
  void operator()(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                  Args&&... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    kernel<<<grid, block, shared_bytes, stream>>>(static_cast<KernelArgs>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace pyseg
