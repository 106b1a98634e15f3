// conv_transpose3d on CUDA: conv_transpose3d_launch.h with the real launcher (its twin,
// conv_transpose3d_emu.cpp, registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/conv_transpose3d/conv_transpose3d_launch.h"

namespace pyseg::conv_transpose3d {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("conv_transpose3d", with_launcher<CudaLauncher, &forward<CudaLauncher>>);
  m.impl("conv_transpose3d_backward", with_launcher<CudaLauncher, &backward<CudaLauncher>>);
}

}  // namespace pyseg::conv_transpose3d
