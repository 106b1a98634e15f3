// conv_transpose2d on CUDA: conv_transpose_launch.h with the real launcher (its twin, conv_transpose_emu.cpp,
// registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/conv_transpose/conv_transpose_launch.h"

namespace pyseg::conv_transpose {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("conv_transpose2d", with_launcher<CudaLauncher, &forward<CudaLauncher>>);
  m.impl("conv_transpose2d_backward", with_launcher<CudaLauncher, &backward<CudaLauncher>>);
}

}  // namespace pyseg::conv_transpose
