// grid_sample on CUDA: grid_sample_launch.h with the real launcher (its twin, grid_sample_emu.cpp,
// registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/grid_sample/grid_sample_launch.h"

namespace pyseg::grid_sample {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("grid_sample", with_launcher<CudaLauncher, &forward<CudaLauncher>>);
  m.impl("grid_sample_backward", with_launcher<CudaLauncher, &backward<CudaLauncher>>);
}

}  // namespace pyseg::grid_sample
