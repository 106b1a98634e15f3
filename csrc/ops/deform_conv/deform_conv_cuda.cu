// deform_conv2d on CUDA: deform_conv_launch.h with the real launcher (its twin, deform_conv_emu.cpp,
// registers the same launch code with the emulator's).
#include <torch/library.h>

#include "common/cuda_launcher.cuh"
#include "ops/deform_conv/deform_conv_launch.h"

namespace pyseg::deform_conv {

TORCH_LIBRARY_IMPL(pyseg, CUDA, m) {
  m.impl("deform_conv2d", with_launcher<CudaLauncher, &forward_op<CudaLauncher>>);
  m.impl("_deform_conv2d_backward", with_launcher<CudaLauncher, &backward_op<CudaLauncher>>);
}

}  // namespace pyseg::deform_conv
