// The launcher that <op>_launch.h is instantiated with in <op>_cuda.cu: a real <<<>>> launch
// on the current stream, checked right away.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/with_launcher.h"

namespace pyseg {

struct CudaLauncher {
  // Makes the device of the op's first tensor argument current (with_launcher.h).
  struct OpGuard {
    c10::cuda::OptionalCUDAGuard guard;
    bool set = false;
    template <class... Args>
    explicit OpGuard(const Args&... args) {
      (use(args), ...);
    }
    void use(const at::Tensor& t) {
      if (!set && t.defined()) guard.set_device(t.device()), set = true;
    }
    void use(const std::optional<at::Tensor>& t) {
      if (t.has_value()) use(*t);
    }
    template <class T>
    void use(const T&) {}
  };

  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  int64_t max_blocks() const { return (int64_t{1} << 31) - 1; }
  // Whether the stream is being captured into a CUDA graph (no host reads allowed).
  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    return status != cudaStreamCaptureStatusNone;
  }

  // 32-bit index kernels whenever the sizes allow (launch_utils.h: fits_int32).
  bool force_int64() const { return false; }

  // The current device's major * 10 + minor (kernels chosen by architecture).
  int compute_capability() const {
    const int device = c10::cuda::current_device();
    int major = 0, minor = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  }

  template <class... KernelArgs, class... Args>
  void operator()(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                  Args&&... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    kernel<<<grid, block, shared_bytes, stream>>>(static_cast<KernelArgs>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace pyseg
