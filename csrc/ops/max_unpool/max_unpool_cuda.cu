// max_unpool2d on CUDA: max_unpool_launch.h with the real launcher (its twin, max_unpool_emu.cpp,
// registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/max_unpool/max_unpool_launch.h"

namespace pyseg::max_unpool {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("max_unpool2d", with_launcher<CudaLauncher, &forward<CudaLauncher>>);
  m.impl("max_unpool2d_backward", with_launcher<CudaLauncher, &backward<CudaLauncher>>);
  m.impl("max_unpool3d", with_launcher<CudaLauncher, &forward3d<CudaLauncher>>);
  m.impl("max_unpool3d_backward", with_launcher<CudaLauncher, &backward3d<CudaLauncher>>);
}

}  // namespace pyseg::max_unpool
